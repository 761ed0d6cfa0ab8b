//! The `telemetron-sync` binary: parse, set up logging, run, map the result to an exit code.

use std::process::ExitCode;

/// mimalloc: the loader and the snapshot make millions of small allocations (keys, cells);
/// it roughly halves the time they take against the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use clap::error::ErrorKind;
use telemetron_sync::cli::Cli;
use telemetron_sync::{cmd, exit, logging};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => exit::SUCCESS,
                _ => exit::USAGE,
            };
            let _ = e.print();
            return ExitCode::from(code as u8);
        }
    };
    let chatty = matches!(
        cli.command,
        telemetron_sync::cli::Command::Apply(_)
            | telemetron_sync::cli::Command::Verify(_)
            | telemetron_sync::cli::Command::Undo(_)
    );
    logging::init(&cli.global, chatty);
    let code = match cmd::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    };
    ExitCode::from(code as u8)
}
