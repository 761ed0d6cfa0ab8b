//! Log set-up: structured `tracing` events to stderr, as text or JSON lines.
//!
//! Results go to stdout; everything here goes to stderr, so reports stay pipeable.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::cli::{GlobalArgs, LogFormat};

/// Environment variable that overrides the level chosen by `-v`/`-q` (tracing's filter syntax).
pub const ENV_LOG: &str = "TELEMETRON_LOG";

/// `chatty`: the command reports progress in log lines (`apply`), so its default level is info.
pub fn init(args: &GlobalArgs, chatty: bool) {
    let level = match (args.quiet, args.verbose) {
        (true, _) => "error",
        (false, 0) if chatty => "info",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    let filter =
        EnvFilter::try_from_env(ENV_LOG).unwrap_or_else(|_| EnvFilter::new(format!("telemetron_sync={level},warn")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match args.log_format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.compact().without_time().try_init(),
    };
}
