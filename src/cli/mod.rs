//! The command line: argument structs ([`args`]), settings resolution ([`settings`]), exit codes
//! ([`exit`]), and everything written besides results: stderr ([`output`], [`progress`]) and
//! the metrics file ([`metrics`]), and files written whole ([`files`]).
//!
//! Nothing here calls Telemetron or touches the snapshot: `cmd` does, with what this module
//! resolved. Nothing below `cmd` sees clap.

pub mod args;
pub mod env;
pub mod exit;
pub mod explain;
pub use crate::files;
pub mod html;
pub mod json;
pub mod markdown;
pub mod metrics;
pub mod output;
pub mod progress;
pub mod report;
pub mod settings;
pub mod shell;

pub use args::*;

#[cfg(test)]
mod tests;
