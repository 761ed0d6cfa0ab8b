//! The `telemetron-sync` binary: parse, set up logging, run, map the result to an exit code.

use std::process::ExitCode;

/// mimalloc: the loader and the snapshot make millions of small allocations (keys, cells);
/// it roughly halves the time they take against the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use clap::error::ErrorKind;
use telemetron_sync::cli::{Cli, Command, exit, metrics, output};

/// mimalloc's `mi_option_purge_delay` (the v3 header's `mi_option_e`, which the crate builds by
/// default): how long freed memory waits before it is returned to the system.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> ExitCode {
    // A write past a file-size limit (`ulimit -f`) would kill the process by SIGXFSZ, silently
    // and with a temp file left behind; ignored, the write fails with EFBIG and the command
    // reports it naming the file, and removes the temp file.
    #[cfg(unix)]
    // SAFETY: sets the disposition of one signal to "ignore" before any thread starts.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match Cli::try_parse_from(&argv) {
        Ok(cli) => cli,
        Err(e) => {
            let code = match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => exit::SUCCESS,
                _ => exit::USAGE,
            };
            if code == exit::USAGE && output::json_requested(&argv) {
                output::usage_error_json(&e.to_string());
            } else {
                let _ = e.print();
            }
            return ExitCode::from(code as u8);
        }
    };
    // A command that reads, compares and writes never returns freed memory to the system: the
    // run is short, and its peak is what it needs. Returned pages come back zeroed by the
    // kernel at the next use — at 10 M devices that re-zeroing was a sixth of the plan's time.
    // One that sends calls keeps mimalloc's default: it runs for hours, and what its front
    // freed is not what its calls allocate (kept, a 10 M migration's `apply` held 11.0 GiB
    // where it needed 8.3).
    if !matches!(cli.command, Command::Apply(_) | Command::Undo(_)) {
        // SAFETY: sets a process-wide allocator option; any value is valid for it.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
    let chatty = matches!(cli.command, Command::Apply(_) | Command::Verify(_) | Command::Undo(_))
        || matches!(&cli.command, Command::Plan(p) if p.out.is_some());
    output::init(&cli.global, chatty);
    let started = metrics::now();
    let (result, metrics_file) = telemetron_sync::cmd::run(&cli);
    if let Some(path) = metrics_file {
        metrics::write(&path, cli.command.name(), started, &result);
    }
    let code = output::finished(cli.command.name(), &result);
    ExitCode::from(code as u8)
}
