//! The command line, as clap structs. Doc comments are the help text.
//!
//! Nothing here is interpreted: [`super::settings`] turns these into validated settings, and
//! nothing below the CLI sees clap.

use std::path::PathBuf;

use clap::builder::PossibleValue;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::emulator::{AllUnknownAssign, EmailMatch, EmptyOnUpdate, PropertiesOnUpdate};

/// Keeps Telemetron's device ownership in step with your CSV exports.
#[derive(Debug, Parser)]
#[command(name = "telemetron-sync", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes, anywhere on the command line.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// More log output on stderr: -v adds progress and info lines (the default for apply,
    /// verify and undo), -vv debug, -vvv trace
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors on stderr
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Log line format on stderr; with json every line is one JSON object
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// TOML config file: snapshot path, input files and columns, API, rate and guard settings
    #[arg(long, value_name = "FILE", env = super::env::CONFIG, global = true)]
    pub config: Option<PathBuf>,
    /// Write the run's figures to this file in the Prometheus text format (for
    /// node_exporter's textfile collector)
    #[arg(long, value_name = "FILE", global = true)]
    pub metrics_file: Option<PathBuf>,
    /// Whether log lines on stderr may name customers by email, name, phone and address; with
    /// false they carry a short stable token instead (stdout is unchanged) [config: log_pii]
    #[arg(long, value_name = "BOOL", global = true, action = clap::ArgAction::Set)]
    pub log_pii: Option<bool>,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what a sync would change, without changing anything (a dry run)
    Plan(PlanArgs),
    /// Record the exports in the snapshot as already present in Telemetron, without calling it
    Baseline(BaselineArgs),
    /// Compute the plan and execute it against Telemetron (or execute a saved plan)
    Apply(ApplyArgs),
    /// Read customers back from Telemetron and report where they drifted from the snapshot
    Verify(VerifyArgs),
    /// Apply one change right away (a registration, a transfer...) and record it in the snapshot
    Event(EventArgs),
    /// Show how to put back what an apply run changed, and with --apply, do it
    Undo(UndoArgs),
    /// List the runs recorded in the snapshot
    History(HistoryArgs),
    /// Tell everything known of one customer or device: its export rows, the snapshot's record
    /// and the run that confirmed it, what the next plan does for it (or why nothing), its log
    Explain(ExplainArgs),
    /// Snapshot maintenance
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Customers in Telemetron: create or update, look up
    #[command(subcommand)]
    Customer(CustomerCommand),
    /// Devices in Telemetron: create or update, replace properties
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Assign one device to one or more customers (assignDeviceToOwners; additive)
    Assign(AssignArgs),
    /// Unassign one device from one customer (unassignDeviceFromOwner)
    Unassign(UnassignArgs),
    /// Support tickets
    #[command(subcommand)]
    Ticket(TicketCommand),
    /// Run a local emulator of the ext-v1 API (for tests and trying the tool)
    Emulator(EmulatorArgs),
    /// Print a completion script for a shell: `telemetron-sync completions bash >
    /// /etc/bash_completion.d/telemetron-sync` (zsh: a `_telemetron-sync` file on $fpath)
    Completions {
        /// The shell the script is for
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `telemetron-sync man > /usr/local/share/man/man1/telemetron-sync.1`
    Man,
}

impl Command {
    /// The command's name, as `run_finished` and the metrics file give it.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Plan(_) => "plan",
            Command::Baseline(_) => "baseline",
            Command::Apply(_) => "apply",
            Command::Verify(_) => "verify",
            Command::Event(_) => "event",
            Command::Undo(_) => "undo",
            Command::History(_) => "history",
            Command::Explain(_) => "explain",
            Command::Snapshot(_) => "snapshot",
            Command::Customer(_) => "customer",
            Command::Device(_) => "device",
            Command::Assign(_) => "assign",
            Command::Unassign(_) => "unassign",
            Command::Ticket(_) => "ticket",
            Command::Emulator(_) => "emulator",
            Command::Completions { .. } => "completions",
            Command::Man => "man",
        }
    }
}

/// Where Telemetron is and how to authenticate. The key comes from TELEMETRON_API_KEY or
/// --api-key-file, never from the command line (where `ps` would show it).
#[derive(Debug, Args, Clone, Default)]
pub struct ApiArgs {
    /// The ext-v1 base URL [default: https://admin.telemetron.ai/api/ext-v1]
    #[arg(long, value_name = "URL", env = super::env::BASE_URL, global = true)]
    pub base_url: Option<String>,
    /// Read the API key from this file (first line) instead of TELEMETRON_API_KEY
    #[arg(long, value_name = "FILE", global = true)]
    pub api_key_file: Option<PathBuf>,
    /// Per-request timeout in seconds [default: 30]
    #[arg(long, value_name = "SECS", global = true)]
    pub timeout: Option<f64>,
}

/// A customer's details, as `customer upsert` and `event customer` take them.
#[derive(Debug, Args, Clone)]
pub struct CustomerFields {
    /// The customer's email (their key in Telemetron)
    #[arg(long, value_parser = parse_email)]
    pub email: crate::model::Email,
    /// The customer's name
    #[arg(long)]
    pub name: Option<String>,
    /// The customer's phone number (an empty value clears it)
    #[arg(long)]
    pub phone: Option<String>,
    /// The customer's address (an empty value clears it)
    #[arg(long)]
    pub address: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum CustomerCommand {
    /// Create a customer; if the email exists (409), update that customer instead
    Upsert {
        #[command(flatten)]
        fields: CustomerFields,
        /// Update the customer with this Telemetron id (skips the create attempt)
        #[arg(long, value_name = "TELEMETRON_ID")]
        id: Option<String>,
    },
    /// Look a customer up by email (case-insensitive), with their devices
    Query {
        /// The customer's email (matched case-insensitively)
        #[arg(value_parser = parse_email)]
        email: crate::model::Email,
    },
    /// Look a customer up by Telemetron id
    Get {
        /// The customer's Telemetron id (as `customer query` shows it)
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Create a device or update its type/properties (POST /device)
    Upsert {
        /// The device's identifier (serial number, MAC, …)
        #[arg(long, value_parser = parse_device)]
        identifier: crate::model::DeviceIdent,
        /// The device type (needed to create)
        #[arg(long = "type", value_name = "TYPE")]
        device_type: Option<String>,
        /// A property, as key=value (repeatable)
        #[arg(long = "property", value_name = "KEY=VALUE", value_parser = parse_property)]
        properties: Vec<(String, String)>,
    },
    /// Replace devices' properties wholesale (bulk-metadata), from flags or a devices CSV
    Metadata {
        /// The device whose properties to replace
        #[arg(long, required_unless_present = "from", conflicts_with = "from", value_parser = parse_device)]
        identifier: Option<crate::model::DeviceIdent>,
        /// A property, as key=value (repeatable); none clears all properties
        #[arg(long = "property", value_name = "KEY=VALUE", value_parser = parse_property, conflicts_with = "from")]
        properties: Vec<(String, String)>,
        /// Every device of this devices export (1,000 per call; columns as the config maps them)
        #[arg(long, value_name = "devices.csv")]
        from: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct AssignArgs {
    /// The device identifier
    #[arg(long, value_parser = parse_device)]
    pub device: crate::model::DeviceIdent,
    /// A customer email (repeatable); unknown customers are created
    #[arg(long = "customer", value_name = "EMAIL", required = true, value_parser = parse_email)]
    pub customers: Vec<crate::model::Email>,
    /// Create the device if Telemetron does not have it (needs --device-type)
    #[arg(long, requires = "device_type")]
    pub auto_create_device: bool,
    /// The device's type
    #[arg(long, value_name = "TYPE")]
    pub device_type: Option<String>,
}

#[derive(Debug, Args)]
pub struct UnassignArgs {
    /// The device's identifier (serial number, MAC, …)
    #[arg(long, value_parser = parse_device)]
    pub device: crate::model::DeviceIdent,
    /// The customer's email
    #[arg(long, value_name = "EMAIL", value_parser = parse_email)]
    pub customer: crate::model::Email,
}

#[derive(Debug, Subcommand)]
pub enum TicketCommand {
    /// Open a support ticket for a customer
    Create(TicketArgs),
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("who").required(true).args(["customer_email", "customer_id"])))]
pub struct TicketArgs {
    /// At most 255 characters
    #[arg(long)]
    pub title: String,
    /// Made from the messages when left out
    #[arg(long)]
    pub description: Option<String>,
    /// low, medium (the default), high or urgent
    #[arg(long)]
    pub priority: Option<String>,
    /// The customer's email (an unknown email creates the customer)
    #[arg(long, value_name = "EMAIL", value_parser = parse_email)]
    pub customer_email: Option<crate::model::Email>,
    /// The customer's Telemetron id
    #[arg(long, value_name = "TELEMETRON_ID")]
    pub customer_id: Option<String>,
    /// An existing category of your organization; Telemetron picks one when left out
    #[arg(long)]
    pub category: Option<String>,
    /// A message of the conversation, as role:content with role customer, agent or bot (repeatable)
    #[arg(long = "message", value_name = "ROLE:CONTENT", value_parser = parse_message)]
    pub messages: Vec<crate::api::TicketMessage>,
}

#[derive(Debug, Args)]
pub struct EmulatorArgs {
    /// Address to listen on (port 0 picks a free port; the address is printed)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// An API key the emulator accepts, one organization each (repeatable; visible to `ps`:
    /// prefer --api-key-file or $TELEMETRON_API_KEY)
    #[arg(long = "api-key", value_name = "KEY")]
    pub api_keys: Vec<String>,
    /// Read the keys the emulator accepts from this file, one per line (one organization each)
    #[arg(long, value_name = "FILE")]
    pub api_key_file: Option<PathBuf>,
    /// Close a connection that takes longer than this to send a request's headers, or stays idle
    /// this long between requests
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout: u64,
    /// How many requests the request log (GET /_emulator/requests) keeps, the newest
    #[arg(long, value_name = "N", default_value_t = crate::emulator::REQUEST_LOG)]
    pub request_log: usize,
    /// Delay before every answer, in milliseconds
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub latency_ms: u64,
    /// Extra random delay of up to this many milliseconds
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub jitter_ms: u64,
    /// Fraction of requests answered 500, half of them after the write was applied
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_fraction)]
    pub fail_rate: f64,
    /// API requests allowed in any one second (sliding window); the rest get 429 with Retry-After
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit: Option<u32>,
    /// Seed for jitter and injected failures
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// How POST /device treats properties of an existing device [UNDOC in ext-v1]
    #[arg(long, value_enum, default_value_t = PropertiesOnUpdate::Replace)]
    pub device_properties: PropertiesOnUpdate,
    /// What assignDevicesToOwner answers when every identifier is unknown [UNDOC in ext-v1]
    #[arg(long, value_enum, default_value_t = AllUnknownAssign::Ok)]
    pub all_unknown_assign: AllUnknownAssign,
    /// How creating a customer matches emails for its 409 [UNDOC in ext-v1]
    #[arg(long, value_enum, default_value_t = EmailMatch::Exact)]
    pub email_match: EmailMatch,
    /// What a customer update does with an empty phone or address [UNDOC in ext-v1]
    #[arg(long, value_enum, default_value_t = EmptyOnUpdate::Clears)]
    pub empty_on_update: EmptyOnUpdate,
    /// Refuse (400) every write that names this device identifier or email (repeatable), as a
    /// server that finds one record invalid would
    #[arg(long, value_name = "KEY")]
    pub refuse: Vec<String>,
}

/// Where the exports and the snapshot are.
#[derive(Debug, Args, Clone, Default)]
pub struct InputArgs {
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
    #[command(flatten)]
    pub state: StateArgs,
    /// Field delimiter of every input file (one character, or "tab"); beats the config file
    #[arg(long, value_name = "CHAR")]
    pub delimiter: Option<String>,
    /// Accept a file of this kind with a header and no rows although the snapshot holds
    /// entities of that kind (otherwise an error: an empty export is usually a failed one)
    #[arg(long, value_name = "KIND", value_enum)]
    pub allow_empty: Vec<EmptyKind>,
    /// Treat any bad row as a fatal error (exit 1) instead of leaving it out
    #[arg(long)]
    pub strict: bool,
    /// Write the rejected rows, with a reason column, to this CSV file
    #[arg(long, value_name = "FILE")]
    pub rejects: Option<PathBuf>,
}

/// How the difference is grouped into calls: `plan` and `apply`.
#[derive(Debug, Args, Clone, Default)]
pub struct PlanningArgs {
    /// Devices per assign/unassign and bulk-metadata call [default: 1000]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: Option<u32>,
    /// Plan one create call per new customer and device and assignments per customer, instead
    /// of folding creates into assign calls and grouping by minimum vertex cover
    #[arg(long)]
    pub no_optimize: bool,
    /// Hold back a record Telemetron refused in this many runs in a row, until its export row
    /// changes [default: 3; config: run.quarantine_after]
    #[arg(long, value_name = "RUNS", value_parser = clap::value_parser!(u32).range(1..=MAX_QUARANTINE_AFTER as i64))]
    pub quarantine_after: Option<u32>,
    /// Send the quarantined records again (they are still counted, and cleared once confirmed)
    #[arg(long)]
    pub retry_quarantined: bool,
}

/// The most runs `--quarantine-after` and `run.quarantine_after` take.
pub const MAX_QUARANTINE_AFTER: u32 = 1000;

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub inputs: InputArgs,
    #[command(flatten)]
    pub planning: PlanningArgs,
    /// Report format: text for a terminal, json for machines, markdown for a change ticket or
    /// a pull-request comment, html for a page to search (with --out-report FILE)
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
    /// Write the report to this file (private: it names customers) instead of stdout
    #[arg(long, value_name = "FILE")]
    pub out_report: Option<PathBuf>,
    /// List every change in the text report, not only the first few of each kind
    #[arg(long)]
    pub full: bool,
    /// The most characters of a markdown report; longer sections are cut, with a count of what
    /// was left out [default: 60000, for a GitHub comment's 65,536]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(2000..))]
    pub max_report_size: Option<u64>,
    /// Also save the plan, with the input hashes and snapshot version, to this file (gzip-compressed JSON)
    #[arg(long, value_name = "PLAN.json")]
    pub out: Option<PathBuf>,
    /// Exit 2 when there are changes, 0 when there are none
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// The rate apply will run at, for the duration estimate: requests per second, or auto
    /// (the rate the last auto run settled at) [default: the config's run.rate, else 10]
    #[arg(long, value_name = "N|auto", value_parser = parse_rate)]
    pub rate: Option<RateFlag>,
    #[command(flatten)]
    pub guard: GuardArgs,
}

/// How fast and how hard to call Telemetron: `apply`, `verify`, `undo --apply`.
#[derive(Debug, Args, Clone, Default)]
pub struct ExecArgs {
    /// Requests per second, never exceeded in any one-second window; or auto, to find
    /// Telemetron's limit (from a low start, up to --max-rate) [default: 10]
    #[arg(long, value_name = "N|auto", value_parser = parse_rate)]
    pub rate: Option<RateFlag>,
    /// With --rate auto, the rate never to go above [default: 1000]
    #[arg(long, value_name = "N")]
    pub max_rate: Option<f64>,
    /// Requests in flight at most [default: 4]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: Option<u16>,
    /// Retries of a call after a retryable failure (timeouts, 408, 429, 5xx) [default: 5]
    #[arg(long, value_name = "N")]
    pub max_retries: Option<u32>,
    /// First retry delay in milliseconds; it doubles per retry (with jitter), up to 30 s
    /// [default: 250]
    #[arg(long, value_name = "MS")]
    pub backoff_ms: Option<u64>,
}

/// `--rate`: a number of requests per second, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RateFlag {
    Fixed(f64),
    Auto,
}

/// An email as Telemetron keys customers (trimmed, lower-cased).
fn parse_email(s: &str) -> Result<crate::model::Email, String> {
    crate::model::Email::parse(s).map_err(|why| why.to_string())
}

/// A device identifier as the loader keys devices (trimmed, case kept).
fn parse_device(s: &str) -> Result<crate::model::DeviceIdent, String> {
    crate::model::DeviceIdent::parse(s)
}

/// `key=value`, the key trimmed and not empty; the value as given.
fn parse_property(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("write the property {s:?} as key=value"))?;
    if k.trim().is_empty() {
        return Err(format!("the property {s:?} has an empty key"));
    }
    Ok((k.trim().to_string(), v.to_string()))
}

/// `role:content`, as a ticket's message; the role goes to Telemetron as given (trimmed), so that
/// a wrong one is refused in its words.
fn parse_message(s: &str) -> Result<crate::api::TicketMessage, String> {
    match s.split_once(':') {
        Some((role, content)) => {
            Ok(crate::api::TicketMessage { role: role.trim().to_string(), content: content.to_string() })
        }
        None => Err(format!("write {s:?} as role:content (role customer, agent or bot)")),
    }
}

/// A fraction from 0 to 1.
fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!("give a number between 0 and 1, not {s:?}")),
    }
}

fn parse_rate(s: &str) -> Result<RateFlag, String> {
    match s.trim() {
        "auto" => Ok(RateFlag::Auto),
        t => t.parse().map(RateFlag::Fixed).map_err(|_| "give requests per second (10) or auto".to_string()),
    }
}

/// A cron window: `apply` and `undo --apply`.
#[derive(Debug, Args, Clone, Default)]
pub struct WindowArgs {
    /// Stop cleanly when this much time has passed (e.g. 90m, 2h, 45s): what was confirmed is
    /// kept, the run exits 3, and the next run continues
    #[arg(long, value_name = "DURATION")]
    pub max_duration: Option<String>,
}

/// The snapshot file, for every command that keeps one.
#[derive(Debug, Args, Clone, Default)]
pub struct StateArgs {
    /// The snapshot file [default: the config's state, or ./telemetron-state.db]
    #[arg(long, value_name = "PATH", env = super::env::STATE)]
    pub state: Option<PathBuf>,
}

/// `baseline`: the exports, without the planning flags it would ignore.
#[derive(Debug, Args)]
pub struct BaselineArgs {
    #[command(flatten)]
    pub inputs: InputArgs,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub inputs: InputArgs,
    #[command(flatten)]
    pub planning: PlanningArgs,
    /// Execute this saved plan (from `plan --out`) exactly; refused if the inputs or the snapshot
    /// changed since it was made
    #[arg(long, value_name = "PLAN.json", conflicts_with_all = ["input_dir", "customers", "devices", "ownership", "strict", "rejects", "batch_size", "quarantine_after", "retry_quarantined"])]
    pub plan: Option<PathBuf>,
    #[command(flatten)]
    pub exec: ExecArgs,
    #[command(flatten)]
    pub window: WindowArgs,
    #[command(flatten)]
    pub guard: GuardArgs,
    /// Keep the undo plans and the sync log of this many runs, the newest (older ones are
    /// dropped) [default: the config's run.keep_runs, else 30]
    #[arg(long, alias = "keep-undo", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_runs: Option<u32>,
    /// Write the run's summary, with every failed operation and its error, to this JSON file
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["all", "sample", "customers"])))]
pub struct VerifyArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// Read back every customer in the snapshot
    #[arg(long)]
    pub all: bool,
    /// Read back N customers chosen at random (repeatable with --seed)
    #[arg(long, value_name = "N")]
    pub sample: Option<usize>,
    /// Seed for --sample
    #[arg(long, default_value_t = 0, requires = "sample")]
    pub seed: u64,
    /// Read back these customers (repeatable)
    #[arg(long = "customer", value_name = "EMAIL", value_parser = parse_email)]
    pub customers: Vec<crate::model::Email>,
    /// Write what was read into the snapshot, so that the next plan/apply repairs Telemetron
    /// toward the exports
    #[arg(long)]
    pub heal: bool,
    /// Report format on stdout
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
    #[command(flatten)]
    pub exec: ExecArgs,
}

#[derive(Debug, Args)]
pub struct EventArgs {
    /// The snapshot file [default: the config's state, or ./telemetron-state.db]
    #[arg(long, value_name = "PATH", env = super::env::STATE, global = true)]
    pub state: Option<PathBuf>,
    /// Read events as JSON lines from standard input and write one JSON result line per event
    #[arg(long)]
    pub stdin: bool,
    /// Requests per second for --stdin, never exceeded in any one-second window [default: 10]
    #[arg(long, value_name = "N", global = true)]
    pub rate: Option<f64>,
    #[command(subcommand)]
    pub event: Option<EventCommand>,
}

/// One change, as the command line gives it (`event --stdin` reads the same as JSON lines).
#[derive(Debug, Clone, Subcommand)]
pub enum EventCommand {
    /// A customer registered a device: assign it (creating the device with --device-type)
    Register {
        /// The device's identifier (serial number, MAC, …)
        #[arg(long)]
        device: String,
        /// The customer's email
        #[arg(long, value_name = "EMAIL")]
        customer: String,
        /// Create the device with this type if Telemetron does not have it
        #[arg(long, value_name = "TYPE")]
        device_type: Option<String>,
        /// The device's properties, as key=value (repeatable); they replace the stored ones
        #[arg(long = "property", value_name = "KEY=VALUE")]
        properties: Vec<String>,
    },
    /// A device changed hands: unassign the old owner, then assign the new one
    Transfer {
        /// The device's identifier (serial number, MAC, …)
        #[arg(long)]
        device: String,
        /// The email of the customer who had the device
        #[arg(long, value_name = "EMAIL")]
        from: String,
        /// The email of the customer who has it now
        #[arg(long, value_name = "EMAIL")]
        to: String,
    },
    /// A customer gave a device up: unassign it
    Release {
        /// The device's identifier (serial number, MAC, …)
        #[arg(long)]
        device: String,
        /// The customer's email
        #[arg(long, value_name = "EMAIL")]
        customer: String,
    },
    /// A customer signed up or changed their details: create or update them
    Customer {
        #[command(flatten)]
        fields: CustomerFields,
    },
}

#[derive(Debug, Args)]
pub struct UndoArgs {
    /// The run to undo (see `history`)
    pub run: i64,
    #[command(flatten)]
    pub state: StateArgs,
    /// Send the undo plan to Telemetron (without it, the plan is only shown)
    #[arg(long)]
    pub apply: bool,
    /// Report format on stdout when showing the plan
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
    #[command(flatten)]
    pub exec: ExecArgs,
    #[command(flatten)]
    pub window: WindowArgs,
    #[command(flatten)]
    pub guard: GuardArgs,
}

/// The safety guard: how much a run may take away without `--force` (`apply`, `undo
/// --apply`; `plan` shows the verdict).
#[derive(Debug, Args, Clone)]
pub struct GuardArgs {
    /// Refuse (exit 4) when the plan removes more assignments than this: a number, or a
    /// percentage of the snapshot's assignments [default: 10%, or up to 10 and a quarter of
    /// them in a small organisation]
    #[arg(long, value_name = "N|P%")]
    pub max_unassign: Option<String>,
    /// Refuse (exit 4) when more devices lose property keys, more customers have fields
    /// cleared, or more devices change type than this: a number, or a percentage of the
    /// snapshot's devices or customers [default: as for --max-unassign]
    #[arg(long, value_name = "N|P%")]
    pub max_changes: Option<String>,
    /// Go ahead even when the plan is over a guard limit
    #[arg(long)]
    pub force: bool,
}

/// An export kind, for `--allow-empty`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EmptyKind {
    Customers,
    Devices,
    Ownership,
}

impl EmptyKind {
    pub fn name(self) -> &'static str {
        match self {
            EmptyKind::Customers => "customers",
            EmptyKind::Devices => "devices",
            EmptyKind::Ownership => "ownership",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
}

/// `plan --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    Text,
    Json,
    Markdown,
    /// One self-contained page (chart, searchable tables); best with --out-report FILE
    Html,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// One run to show whole: its summary, and what became of each record it did not get
    /// confirmed (refused, failed, quarantined), with Telemetron's messages
    #[arg(value_name = "RUN")]
    pub run: Option<i64>,
    #[command(flatten)]
    pub state: StateArgs,
    /// How many runs to show, newest first; with RUN, how many of its records
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// With RUN: leave out its first N records (to page through them)
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub skip: usize,
    /// Output format
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The records to explain: emails or device identifiers
    #[arg(value_name = "KEY", required = true)]
    pub keys: Vec<String>,
    #[command(flatten)]
    pub inputs: InputArgs,
    #[command(flatten)]
    pub planning: PlanningArgs,
    #[command(flatten)]
    pub guard: GuardArgs,
    /// Output format
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
    /// Also read what Telemetron holds now (queryCustomer: the customer; for a device, each
    /// owner the export, the snapshot or the log names) and say where it differs from the snapshot
    #[arg(long)]
    pub remote: bool,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Create the snapshot if missing and bring its schema up to date
    Migrate {
        #[command(flatten)]
        state: StateArgs,
    },
    /// Check the snapshot for damage: every page's checksum, then SQLite's full integrity check
    /// (read-only; exit 1 when damaged)
    Check {
        #[command(flatten)]
        state: StateArgs,
    },
}

// The emulator's choices as flag values; the emulator itself does not know clap.
impl ValueEnum for PropertiesOnUpdate {
    fn value_variants<'a>() -> &'a [Self] {
        &[PropertiesOnUpdate::Replace, PropertiesOnUpdate::Merge]
    }
    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self {
            PropertiesOnUpdate::Replace => PossibleValue::new("replace"),
            PropertiesOnUpdate::Merge => PossibleValue::new("merge"),
        })
    }
}

impl ValueEnum for AllUnknownAssign {
    fn value_variants<'a>() -> &'a [Self] {
        &[AllUnknownAssign::Ok, AllUnknownAssign::BadRequest]
    }
    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self {
            AllUnknownAssign::Ok => PossibleValue::new("ok").help("200 with every identifier in `skipped`"),
            AllUnknownAssign::BadRequest => PossibleValue::new("bad-request").help("400 \"No valid devices found\""),
        })
    }
}

impl ValueEnum for EmailMatch {
    fn value_variants<'a>() -> &'a [Self] {
        &[EmailMatch::Exact, EmailMatch::FoldAccents]
    }
    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self {
            EmailMatch::Exact => PossibleValue::new("exact").help("trimmed and lower-cased"),
            EmailMatch::FoldAccents => {
                PossibleValue::new("fold-accents").help("also ignoring accents: the 409 names the other customer")
            }
        })
    }
}

impl ValueEnum for EmptyOnUpdate {
    fn value_variants<'a>() -> &'a [Self] {
        &[EmptyOnUpdate::Clears, EmptyOnUpdate::Kept]
    }
    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self {
            EmptyOnUpdate::Clears => PossibleValue::new("clears").help("\"\" clears the field"),
            EmptyOnUpdate::Kept => PossibleValue::new("kept").help("\"\" keeps the old value"),
        })
    }
}
