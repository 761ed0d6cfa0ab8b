//! What a shell and `man` need, made from the command line's own definition: completion
//! scripts (`completions SHELL`) and the man page (`man`), so that neither can fall behind a
//! flag.

use std::io::Write;

use clap::CommandFactory;

/// The completion script for `shell`. Made in memory first: the generator panics on a write
/// that fails (a closed pipe), where ours is an error.
pub fn completions(shell: clap_complete::Shell, out: &mut dyn Write) -> std::io::Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut super::Cli::command(), "telemetron-sync", &mut script);
    if shell == clap_complete::Shell::Bash {
        // clap_complete 4.6 spells the case arms of a hyphenated name otherwise than the loop
        // that picks one (`telemetron__subcmd__sync__…` against `telemetron__sync__…`), so no
        // subcommand's flags would complete (clap-rs/clap#6421): the arms are spelled as the
        // loop spells them.
        let fixed = String::from_utf8_lossy(&script).replace("telemetron__subcmd__sync__", "telemetron__sync__");
        return out.write_all(fixed.as_bytes());
    }
    out.write_all(&script)
}

/// The man page, in roff: the tool's synopsis, options and commands.
pub fn man(out: &mut dyn Write) -> std::io::Result<()> {
    clap_mangen::Man::new(super::Cli::command()).render(out)
}
