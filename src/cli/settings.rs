//! Merges flags, environment variables and the config file into validated settings.
//!
//! The one place where precedence is decided, for every command: a flag beats its environment
//! variable, which beats the config file, which beats the defaults. Paths in the config file
//! are relative to the file's folder.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::args::{
    Command, EventArgs, ExecArgs, GlobalArgs, GuardArgs, InputArgs, MAX_QUARANTINE_AFTER, PlanningArgs, WindowArgs,
};
use super::env;
use crate::config::{ConfigFile, parse_delimiter};
use crate::error::Error;
use crate::load::{DeviceFileSpec, FileSpec, Sources};
use crate::plan::Batching;

/// The snapshot path when none is given.
pub const DEFAULT_STATE: &str = "telemetron-state.db";
/// File names looked for in `--input-dir`.
pub const DEFAULT_NAMES: [&str; 3] = ["customers.csv", "devices.csv", "ownership.csv"];
/// Requests per second when neither `--rate` nor the config sets one.
pub const DEFAULT_RATE: f64 = 10.0;
/// `--rate auto`: where a first run starts, and the ceiling unless `--max-rate` sets one.
pub const AUTO_START: f64 = 10.0;
pub const DEFAULT_MAX_RATE: f64 = 1000.0;
pub const DEFAULT_CONCURRENCY: u16 = 4;
pub const DEFAULT_MAX_RETRIES: u32 = 5;
pub const DEFAULT_BACKOFF_MS: u64 = 250;
pub const DEFAULT_TIMEOUT_SECS: f64 = 30.0;

/// Everything every command may need, resolved once from the command line, the environment and
/// the config file. The API key is read only when a command asks for it ([`Settings::api`]).
#[derive(Debug, Clone)]
pub struct Settings {
    config_path: Option<PathBuf>,
    config: std::sync::Arc<ConfigFile>,
    /// The config file's folder: the base of the paths in it.
    base: PathBuf,
    pub state: PathBuf,
    /// The state was named (a flag, the environment or the config), not the default.
    pub state_named: bool,
    pub metrics_file: Option<PathBuf>,
    base_url: String,
    key_file: Option<PathBuf>,
    pub timeout: Duration,
    /// The fixed rate, or with `rate_auto` the rate a first run starts at.
    pub rate: f64,
    /// `--rate auto`: find the API's limit, up to `max_rate`.
    pub rate_auto: bool,
    pub max_rate: f64,
    pub concurrency: u16,
    pub max_retries: u32,
    pub backoff: Duration,
    pub max_duration: Option<Duration>,
    pub guard: crate::plan::guard::Limits,
    /// `run.quarantine_after`, checked.
    quarantine_after: Option<u32>,
    /// How many runs' undo plans and sync log are kept: `--keep-runs`, `run.keep_runs`, 30.
    pub keep_runs: u32,
    pub quiet: bool,
}

/// The flags of one command that [`Settings::resolve`] merges; what a command does not take
/// stays `None`.
#[derive(Debug, Default, Clone, Copy)]
pub struct CommandFlags<'a> {
    pub state: Option<&'a PathBuf>,
    pub exec: Option<&'a ExecArgs>,
    pub rate: Option<super::args::RateFlag>,
    pub window: Option<&'a WindowArgs>,
    pub guard: Option<&'a GuardArgs>,
    pub keep_runs: Option<u32>,
}

impl<'a> CommandFlags<'a> {
    /// The flags `command` takes.
    pub fn of(command: &'a Command) -> CommandFlags<'a> {
        use super::args::SnapshotCommand;
        let none = CommandFlags::default();
        match command {
            Command::Plan(a) => {
                CommandFlags { state: a.inputs.state.state.as_ref(), guard: Some(&a.guard), rate: a.rate, ..none }
            }
            Command::Baseline(a) => CommandFlags { state: a.inputs.state.state.as_ref(), ..none },
            Command::Apply(a) => CommandFlags {
                state: a.inputs.state.state.as_ref(),
                exec: Some(&a.exec),
                window: Some(&a.window),
                guard: Some(&a.guard),
                keep_runs: a.keep_runs,
                ..none
            },
            Command::Verify(a) => CommandFlags { state: a.state.state.as_ref(), exec: Some(&a.exec), ..none },
            Command::Event(EventArgs { state, rate, .. }) => {
                CommandFlags { state: state.as_ref(), rate: rate.map(super::args::RateFlag::Fixed), ..none }
            }
            Command::Undo(a) => CommandFlags {
                state: a.state.state.as_ref(),
                exec: Some(&a.exec),
                window: Some(&a.window),
                guard: Some(&a.guard),
                ..none
            },
            Command::History(a) => CommandFlags { state: a.state.state.as_ref(), ..none },
            Command::Explain(a) => CommandFlags { state: a.inputs.state.state.as_ref(), guard: Some(&a.guard), ..none },
            Command::Snapshot(SnapshotCommand::Migrate { state } | SnapshotCommand::Check { state }) => {
                CommandFlags { state: state.state.as_ref(), ..none }
            }
            _ => none,
        }
    }
}

impl Settings {
    /// Reads the config file (if any) and merges it with the flags. Everything but the API key
    /// and the base URL is checked here, so a wrong value stops the command before it starts.
    pub fn resolve(global: &GlobalArgs, flags: CommandFlags<'_>) -> Result<Settings, Error> {
        let (config, base) = match &global.config {
            Some(path) => (ConfigFile::read(path)?, path.parent().map(Path::to_path_buf).unwrap_or_default()),
            None => (ConfigFile::default(), PathBuf::new()),
        };
        // Before anything else can log: the flag wins, else the config says.
        crate::pii::set_allowed(global.log_pii.or(config.log_pii).unwrap_or(true));
        let in_config = |p: &Option<PathBuf>| p.as_ref().map(|p| base.join(p));
        let config_error = |message: String| Error::Config { path: global.config.clone().unwrap_or_default(), message };
        let exec = flags.exec.cloned().unwrap_or_default();
        let run = &config.run;

        use super::args::RateFlag;
        let flag_rate = flags.rate.or(exec.rate);
        let cfg_rate = match &run.rate {
            None => None,
            Some(crate::config::RateValue::Number(n)) => Some(RateFlag::Fixed(*n)),
            Some(crate::config::RateValue::Text(t)) if t == "auto" => Some(RateFlag::Auto),
            Some(crate::config::RateValue::Text(_)) => {
                return Err(config_error("run.rate must be a number of requests per second or \"auto\"".into()));
            }
        };
        let (rate, rate_auto) = match flag_rate.or(cfg_rate).unwrap_or(RateFlag::Fixed(DEFAULT_RATE)) {
            RateFlag::Fixed(r) => (check_rate(r, "rate", flag_rate.is_some(), &config_error)?, false),
            RateFlag::Auto => (AUTO_START, true),
        };
        let max_rate = match exec.max_rate.or(run.max_rate) {
            None => DEFAULT_MAX_RATE,
            Some(m) => check_rate(m, "max_rate", exec.max_rate.is_some(), &config_error)?,
        };
        let timeout = match global.api.timeout.or(config.api.timeout) {
            None => Duration::from_secs_f64(DEFAULT_TIMEOUT_SECS),
            Some(t) if t.is_finite() && t > 0.0 && t <= 86_400.0 => Duration::from_secs_f64(t),
            Some(t) if global.api.timeout.is_some() => {
                return Err(Error::Usage(format!("--timeout must be a positive number of seconds, not {t}")));
            }
            Some(t) => return Err(config_error(format!("api.timeout must be a positive number of seconds, not {t}"))),
        };
        let concurrency = exec.concurrency.or(run.concurrency).unwrap_or(DEFAULT_CONCURRENCY);
        if !(1..=1024).contains(&concurrency) {
            return Err(config_error(format!("run.concurrency must be from 1 to 1024, not {concurrency}")));
        }
        let max_duration = match (flags.window.and_then(|w| w.max_duration.as_deref()), &run.max_duration) {
            (Some(flag), _) => {
                Some(parse_duration(flag).map_err(|m| Error::Usage(format!("--max-duration {flag:?}: {m}")))?)
            }
            (None, Some(cfg)) if flags.window.is_some() => Some(parse_duration(cfg).map_err(|_| {
                config_error(format!(
                    "run.max_duration must be a duration such as \"90m\", \"2h\" or \"1h30m\", of at most {} days",
                    MAX_DURATION.as_secs() / 86_400
                ))
            })?),
            _ => None,
        };
        let guard = guard_limits(flags.guard, &config, &config_error)?;
        let quarantine_after = match run.quarantine_after {
            Some(n) if !(1..=MAX_QUARANTINE_AFTER).contains(&n) => {
                return Err(config_error(format!(
                    "run.quarantine_after must be a number of runs from 1 to {MAX_QUARANTINE_AFTER}, not {n}"
                )));
            }
            n => n,
        };
        let keep_runs = match flags.keep_runs.or(run.keep_runs) {
            Some(0) => return Err(config_error("run.keep_runs must be 1 or more".into())),
            n => n.unwrap_or(crate::snapshot::KEEP_RUNS),
        };
        Ok(Settings {
            quarantine_after,
            keep_runs,
            state: flags.state.cloned().or_else(|| in_config(&config.state)).unwrap_or_else(|| DEFAULT_STATE.into()),
            state_named: flags.state.is_some() || config.state.is_some(),
            metrics_file: global.metrics_file.clone().or_else(|| in_config(&config.metrics_file)),
            base_url: global
                .api
                .base_url
                .clone()
                .or_else(|| config.api.base_url.clone())
                .unwrap_or_else(|| crate::api::DEFAULT_BASE_URL.into()),
            key_file: global.api.api_key_file.clone().or_else(|| in_config(&config.api.api_key_file)),
            timeout,
            rate,
            rate_auto,
            max_rate,
            concurrency,
            max_retries: exec.max_retries.or(run.max_retries).unwrap_or(DEFAULT_MAX_RETRIES),
            backoff: Duration::from_millis(exec.backoff_ms.or(run.backoff_ms).unwrap_or(DEFAULT_BACKOFF_MS)),
            max_duration,
            guard,
            quiet: global.quiet,
            config_path: global.config.clone(),
            config: std::sync::Arc::new(config),
            base,
        })
    }

    /// Where Telemetron is and the key to it: read now, for the commands that call it.
    pub fn api(&self) -> Result<ApiSettings, Error> {
        use crate::client::{ApiKey, check_base_url};
        let base_url = check_base_url(&self.base_url).map_err(Error::Usage)?;
        let key = match &self.key_file {
            Some(path) => {
                let key = ApiKey::from_file(path).map_err(Error::Setup)?;
                crate::private::warn_if_open(
                    path,
                    "the Telemetron API key",
                    &format!("chmod 600 {}", crate::private::shell_quote(&path.display().to_string())),
                );
                key
            }
            None => match std::env::var(env::API_KEY) {
                Ok(v) => ApiKey::new(&v).map_err(|e| Error::Setup(format!("{}: {e}", env::API_KEY)))?,
                Err(_) => {
                    return Err(Error::Setup(format!(
                        "no API key: set {} or pass --api-key-file FILE. An admin finds the key in Telemetron under Settings > Integrations > Developer",
                        env::API_KEY
                    )));
                }
            },
        };
        Ok(ApiSettings { base_url, key, timeout: self.timeout })
    }

    /// The executor's options.
    pub fn options(&self, batching: Batching) -> crate::execute::Options {
        crate::execute::Options {
            rate: self.rate,
            auto_max: self.rate_auto.then_some(self.max_rate),
            concurrency: self.concurrency as usize,
            max_retries: self.max_retries,
            backoff_base: self.backoff,
            backoff_max: Duration::from_secs(30),
            batching,
        }
    }

    /// When a record Telemetron refused run after run is held back: each flag beats the
    /// config's `run.quarantine_after`.
    pub fn quarantine(&self, args: Option<&PlanningArgs>) -> crate::plan::quarantine::Rule {
        use crate::plan::quarantine::{DEFAULT_AFTER, Rule};
        Rule {
            after: args.and_then(|a| a.quarantine_after).or(self.quarantine_after).unwrap_or(DEFAULT_AFTER),
            retry: args.is_some_and(|a| a.retry_quarantined),
        }
    }

    /// How the difference is grouped into calls.
    pub fn batching(&self, args: Option<&PlanningArgs>) -> Batching {
        let mut batching = Batching::default();
        if let Some(args) = args {
            if let Some(n) = args.batch_size {
                batching.batch_size = n as usize;
                // Bulk-metadata honours it too, up to its documented 1,000 a call.
                batching.metadata_batch_size = n as usize;
            }
            batching.optimize = !args.no_optimize;
        }
        batching
    }
}

/// Checks a request rate given by `--{name}` (`from_flag`) or the config's `run.{name}`.
fn check_rate(rate: f64, name: &str, from_flag: bool, config_error: &dyn Fn(String) -> Error) -> Result<f64, Error> {
    use crate::execute::{MAX_RATE, MIN_RATE};
    if rate.is_finite() && (MIN_RATE..=MAX_RATE).contains(&rate) {
        return Ok(rate);
    }
    let what = format!("must be a number of requests per second from {MIN_RATE} to {MAX_RATE}, not {rate}");
    Err(if from_flag {
        Error::Usage(format!("--{} {what}", name.replace('_', "-")))
    } else {
        config_error(format!("run.{name} {what}"))
    })
}

/// The guard's limits: each flag beats the config's `[guard]`.
fn guard_limits(
    flags: Option<&GuardArgs>,
    config: &ConfigFile,
    config_error: &dyn Fn(String) -> Error,
) -> Result<crate::plan::guard::Limits, Error> {
    use crate::plan::guard::Limit;
    let parse = |s: &str, name: &str| {
        Limit::parse(s).ok_or_else(|| format!("{name} {s:?}: give a number (50) or a percentage (10%)"))
    };
    let pick = |flag: Option<&String>, cfg: &Option<crate::config::LimitValue>, name: &str, key: &str| match (flag, cfg)
    {
        (Some(v), _) => parse(v, name).map(Some).map_err(Error::Usage),
        // A config error names the key, not its value (config errors never echo values).
        (None, Some(v)) => Limit::parse(&v.as_text())
            .map(Some)
            .ok_or_else(|| config_error(format!("{key} must be a number (50) or a percentage (10%)"))),
        (None, None) => Ok(None),
    };
    Ok(crate::plan::guard::Limits {
        max_unassign: pick(
            flags.and_then(|g| g.max_unassign.as_ref()),
            &config.guard.max_unassign,
            "--max-unassign",
            "guard.max_unassign",
        )?,
        max_changes: pick(
            flags.and_then(|g| g.max_changes.as_ref()),
            &config.guard.max_changes,
            "--max-changes",
            "guard.max_changes",
        )?,
        force: flags.is_some_and(|g| g.force),
    })
}

/// The longest `--max-duration`: a migration of millions at a low rate takes days; a larger
/// value is a typo, and would overflow the clock.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

/// Parses a duration such as `90m`, `2h`, `1h30m`, `45s`, of at most [`MAX_DURATION`].
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || "give a duration such as 90m, 2h, 1h30m or 45s".to_string();
    let (mut total, mut digits, mut any) = (0u64, String::new(), false);
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        total = n.checked_mul(unit).and_then(|v| total.checked_add(v)).ok_or_else(bad)?;
        digits.clear();
        any = true;
    }
    if !digits.is_empty() || !any {
        return Err(bad());
    }
    if total == 0 {
        return Err("the duration must be more than zero".into());
    }
    if total > MAX_DURATION.as_secs() {
        return Err(format!("the duration must be at most {}h (30 days)", MAX_DURATION.as_secs() / 3600));
    }
    Ok(Duration::from_secs(total))
}

pub use crate::front::InputSettings;

/// The config's `[limits]`, over the defaults.
fn limits(section: &crate::config::LimitsSection) -> crate::load::Limits {
    let d = crate::load::Limits::default();
    crate::load::Limits {
        record: section.max_record_kib.map_or(d.record, |k| k.saturating_mul(1 << 10).max(1)),
        expansion: section.max_expansion.map_or(d.expansion, |x| x.max(1)),
        decompressed: section.max_decompressed_gib.map_or(d.decompressed, |g| g.saturating_mul(1 << 30).max(1)),
        rejects_kept: section.rejects_kept.unwrap_or(d.rejects_kept),
    }
}

impl InputSettings {
    /// The export files and how to read them: flags beat the config's sections. Without
    /// `require_inputs` no file is needed (`apply --plan` takes its operations from the plan).
    pub fn resolve(
        settings: &Settings,
        args: &InputArgs,
        planning: Option<&PlanningArgs>,
        require_inputs: bool,
    ) -> Result<InputSettings, Error> {
        let (config, base) = (&*settings.config, &settings.base);
        let cfg_path = |p: &Option<PathBuf>| p.as_ref().map(|p| base.join(p));
        let input_dir = args.input_dir.clone().or_else(|| cfg_path(&config.input_dir));
        if let Some(dir) = &input_dir
            && !dir.is_dir()
        {
            return Err(Error::Usage(format!("--input-dir {}: no such folder", dir.display())));
        }
        let mut missing = Vec::new();
        let mut pick = |flag: &Option<PathBuf>, configured: &Option<PathBuf>, kind: usize| -> Option<PathBuf> {
            flag.clone().or_else(|| cfg_path(configured)).or_else(|| {
                let p = input_dir.as_ref()?.join(DEFAULT_NAMES[kind]);
                if p.exists() {
                    Some(p)
                } else {
                    missing.push((["customers", "devices", "ownership"][kind], p));
                    None
                }
            })
        };
        let delimiter = |own: &Option<String>| -> Result<u8, Error> {
            if let Some(flag) = &args.delimiter {
                return parse_delimiter(flag).map_err(|m| Error::Usage(format!("--delimiter: {m}")));
            }
            let s = own.as_ref().or(config.delimiter.as_ref());
            match s {
                None => Ok(b','),
                Some(s) => parse_delimiter(s).map_err(|message| Error::Config {
                    path: settings.config_path.clone().unwrap_or_default(),
                    message,
                }),
            }
        };

        let customers = match pick(&args.customers, &config.customers.path, 0) {
            Some(path) => Some(FileSpec {
                path,
                delimiter: delimiter(&config.customers.delimiter)?,
                columns: config.customers.columns.clone(),
            }),
            None => None,
        };
        let devices = match pick(&args.devices, &config.devices.path, 1) {
            Some(path) => Some(DeviceFileSpec {
                file: FileSpec {
                    path,
                    delimiter: delimiter(&config.devices.delimiter)?,
                    columns: config.devices.columns.clone(),
                },
                ignore_columns: config.devices.ignore_columns.clone(),
            }),
            None => None,
        };
        let ownership = match pick(&args.ownership, &config.ownership.path, 2) {
            Some(path) => Some(FileSpec {
                path,
                delimiter: delimiter(&config.ownership.delimiter)?,
                columns: config.ownership.columns.clone(),
            }),
            None => None,
        };
        if require_inputs && customers.is_none() && devices.is_none() && ownership.is_none() {
            return Err(Error::Usage(
                "no input: give --customers, --devices and/or --ownership, an --input-dir, or a --config that names them"
                    .into(),
            ));
        }
        Ok(InputSettings {
            sources: Sources { customers, devices, ownership, limits: limits(&config.limits) },
            state: settings.state.clone(),
            strict: args.strict,
            rejects: args.rejects.clone(),
            batching: settings.batching(planning),
            quarantine: settings.quarantine(planning),
            allow_empty: args.allow_empty.iter().map(|k| k.name()).collect(),
            missing,
        })
    }
}

/// What a command that calls Telemetron needs: where, with which key, how long to wait.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub base_url: String,
    pub key: crate::client::ApiKey,
    pub timeout: std::time::Duration,
}

impl ApiSettings {
    pub fn client(&self) -> Result<crate::client::Client, Error> {
        crate::client::Client::new(&self.base_url, &self.key, self.timeout).map_err(Error::Setup)
    }
}

/// The emulator's configuration from its flags: the keys it accepts are `--api-key` and the lines
/// of `--api-key-file` or, failing both, `TELEMETRON_API_KEY`.
pub fn emulator_config(args: &super::EmulatorArgs) -> Result<crate::emulator::Config, Error> {
    let mut keys = args.api_keys.clone();
    if let Some(file) = &args.api_key_file {
        let text = std::fs::read_to_string(file)
            .map_err(|e| Error::Usage(format!("--api-key-file {}: cannot read: {e}", file.display())))?;
        keys.extend(text.lines().map(str::trim).filter(|k| !k.is_empty()).map(str::to_string));
        if keys.is_empty() {
            return Err(Error::Usage(format!("--api-key-file {}: holds no key", file.display())));
        }
    }
    if keys.is_empty() {
        match std::env::var(super::env::API_KEY) {
            Ok(k) if !k.trim().is_empty() => keys.push(k.trim().to_string()),
            _ => {
                return Err(Error::Usage(
                    "the emulator needs a key to accept: --api-key KEY (or TELEMETRON_API_KEY)".into(),
                ));
            }
        }
    }
    Ok(crate::emulator::Config {
        api_keys: keys,
        latency: Duration::from_millis(args.latency_ms),
        jitter: Duration::from_millis(args.jitter_ms),
        fail_rate: args.fail_rate,
        rate_limit: args.rate_limit,
        seed: args.seed,
        properties_on_update: args.device_properties,
        all_unknown_assign: args.all_unknown_assign,
        email_match: args.email_match,
        empty_on_update: args.empty_on_update,
        header_timeout: Some(Duration::from_secs(args.header_timeout)),
        request_log: Some(args.request_log),
        refuse: args.refuse.clone(),
    })
}

impl Settings {
    /// The snapshot path of a command that only reads an existing snapshot (`verify`, `history`,
    /// `undo`): a path that does not exist is an error, not an empty snapshot — a mistyped
    /// `--state` must not pass as "no drift" or "no runs".
    pub fn existing_state(&self) -> Result<&Path, Error> {
        if self.state.exists() {
            return Ok(&self.state);
        }
        Err(Error::Usage(format!(
            "the snapshot {} does not exist; check --state (or the config's state, or {}). `apply` or `baseline` creates it",
            self.state.display(),
            env::STATE
        )))
    }

    /// How `event` sends: the rate, retries and backoff of every writing command, one call in
    /// flight (an event's calls depend on each other).
    pub fn event_options(&self) -> crate::execute::Options {
        crate::execute::Options { concurrency: 1, ..self.options(Batching::default()) }
    }
}

/// Checks what clap cannot: `event` takes one event or `--stdin`.
pub fn check_event(args: &super::EventArgs) -> Result<(), Error> {
    if args.event.is_some() == args.stdin {
        return Err(Error::Usage("give one event (register, transfer, release, customer) or --stdin".into()));
    }
    Ok(())
}

/// What `apply` runs with, resolved once from its flags, the environment and the config.
#[derive(Debug)]
pub struct ApplySettings {
    pub inputs: InputSettings,
    /// The snapshot was named (a flag, the environment or the config), not the default: a
    /// saved plan made against another is refused rather than followed.
    pub state_named: bool,
    /// `--plan`: a saved plan to apply instead of planning.
    pub plan: Option<PathBuf>,
    pub api: ApiSettings,
    pub opts: crate::execute::Options,
    /// `--max-duration`, counted from the start: reading and planning use the window up too.
    pub deadline: Option<std::time::Instant>,
    pub guard: crate::plan::guard::Limits,
    pub keep_runs: u32,
    pub report: Option<PathBuf>,
    pub quiet: bool,
}

impl ApplySettings {
    pub fn resolve(s: &Settings, args: &super::ApplyArgs) -> Result<ApplySettings, Error> {
        let deadline = s.max_duration.map(|d| std::time::Instant::now() + d);
        let inputs = InputSettings::resolve(s, &args.inputs, Some(&args.planning), args.plan.is_none())?;
        Ok(ApplySettings {
            opts: s.options(inputs.batching),
            inputs,
            state_named: s.state_named,
            plan: args.plan.clone(),
            api: s.api()?,
            deadline,
            guard: s.guard.clone(),
            keep_runs: s.keep_runs,
            report: args.report.clone(),
            quiet: s.quiet,
        })
    }
}

/// What `explain` runs with, resolved once.
#[derive(Debug)]
pub struct ExplainSettings {
    pub inputs: InputSettings,
    pub guard: crate::plan::guard::Limits,
    pub keys: Vec<String>,
    pub format: super::ReportFormat,
    /// With `--remote`: where Telemetron is, and how fast to read it.
    pub remote: Option<(ApiSettings, crate::execute::Options)>,
    pub quiet: bool,
}

impl ExplainSettings {
    pub fn resolve(s: &Settings, args: &super::ExplainArgs) -> Result<ExplainSettings, Error> {
        let inputs = InputSettings::resolve(s, &args.inputs, Some(&args.planning), true)?;
        let remote = if args.remote { Some((s.api()?, s.options(inputs.batching))) } else { None };
        Ok(ExplainSettings {
            inputs,
            guard: s.guard.clone(),
            keys: args.keys.clone(),
            format: args.format,
            remote,
            quiet: s.quiet,
        })
    }
}

/// What `plan` runs with, resolved once.
#[derive(Debug)]
pub struct PlanSettings {
    pub inputs: InputSettings,
    pub guard: crate::plan::guard::Limits,
    /// The rate the estimate is at; with `rate_auto`, the rate a first run starts at.
    pub rate: f64,
    pub rate_auto: bool,
    pub format: super::PlanFormat,
    pub full: bool,
    pub max_report_size: Option<u64>,
    pub out: Option<PathBuf>,
    pub out_report: Option<PathBuf>,
    pub detailed_exitcode: bool,
}

impl PlanSettings {
    pub fn resolve(s: &Settings, args: &super::PlanArgs) -> Result<PlanSettings, Error> {
        Ok(PlanSettings {
            inputs: InputSettings::resolve(s, &args.inputs, Some(&args.planning), true)?,
            guard: s.guard.clone(),
            rate: s.rate,
            rate_auto: s.rate_auto,
            format: args.format,
            full: args.full,
            max_report_size: args.max_report_size,
            out: args.out.clone(),
            out_report: args.out_report.clone(),
            detailed_exitcode: args.detailed_exitcode,
        })
    }
}
