//! The command line, as clap structs. Doc comments are the help text.
//!
//! Nothing here is interpreted: `settings` turns these into validated settings, and nothing
//! below the CLI sees clap.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Keeps Telemetron's device ownership in step with your CSV exports.
#[derive(Debug, Parser)]
#[command(name = "telemetron-sync", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// More log output on stderr (-v info, -vv debug, -vvv trace)
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors on stderr
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Log line format on stderr
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what a sync would change, without changing anything (a dry run)
    Plan(PlanArgs),
    /// Record the exports in the snapshot as already present in Telemetron, without calling it
    Baseline(InputArgs),
    /// List the runs recorded in the snapshot
    History(HistoryArgs),
    /// Snapshot maintenance
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
}

/// Where the exports and the snapshot are.
#[derive(Debug, Args, Clone, Default)]
pub struct InputArgs {
    /// TOML config file: column names, delimiters, input paths
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Folder holding customers.csv, devices.csv and ownership.csv (each optional)
    #[arg(long, value_name = "DIR")]
    pub input_dir: Option<PathBuf>,
    /// Customers export; omit to leave customers unreconciled
    #[arg(long, value_name = "FILE")]
    pub customers: Option<PathBuf>,
    /// Devices export; omit to leave devices unreconciled
    #[arg(long, value_name = "FILE")]
    pub devices: Option<PathBuf>,
    /// Ownership export; omit to leave assignments unreconciled
    #[arg(long, value_name = "FILE")]
    pub ownership: Option<PathBuf>,
    /// The snapshot file [default: ./telemetron-state.db]
    #[arg(long, value_name = "PATH", env = crate::settings::ENV_STATE)]
    pub state: Option<PathBuf>,
    /// Treat any bad row as a fatal error (exit 1) instead of leaving it out
    #[arg(long)]
    pub strict: bool,
    /// Write the rejected rows, with a reason column, to this CSV file
    #[arg(long, value_name = "FILE")]
    pub rejects: Option<PathBuf>,
    /// Devices per assign/unassign call [default: 1000]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: Option<u32>,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub inputs: InputArgs,
    /// Report format on stdout
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
    /// List every change in the text report, not only the first few of each kind
    #[arg(long)]
    pub full: bool,
    /// Also save the plan, with the input hashes and snapshot version, to this JSON file
    #[arg(long, value_name = "PLAN.json")]
    pub out: Option<PathBuf>,
    /// Exit 2 when there are changes, 0 when there are none
    #[arg(long)]
    pub detailed_exitcode: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The snapshot file [default: ./telemetron-state.db]
    #[arg(long, value_name = "PATH", env = crate::settings::ENV_STATE)]
    pub state: Option<PathBuf>,
    /// How many runs to show, newest first
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Output format
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Create the snapshot if missing and bring its schema up to date
    Migrate {
        /// The snapshot file [default: ./telemetron-state.db]
        #[arg(long, value_name = "PATH", env = crate::settings::ENV_STATE)]
        state: Option<PathBuf>,
    },
}
