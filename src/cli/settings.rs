//! Merges flags, environment variables and the config file into validated settings.
//!
//! The one place where precedence is decided: a flag beats the config file, which beats the
//! defaults. Paths in the config file are relative to the file's folder.

use std::path::{Path, PathBuf};

use crate::cli::InputArgs;
use crate::config::{ConfigFile, parse_delimiter};
use crate::error::Error;
use crate::load::{DeviceFileSpec, FileSpec, Sources};
use crate::plan::Batching;

/// Environment variable for the snapshot path (`--state`).
pub const ENV_STATE: &str = "TELEMETRON_STATE";
/// The snapshot path when none is given.
pub const DEFAULT_STATE: &str = "telemetron-state.db";
/// File names looked for in `--input-dir`.
pub const DEFAULT_NAMES: [&str; 3] = ["customers.csv", "devices.csv", "ownership.csv"];

/// Everything a command that reads the exports needs.
#[derive(Debug, Clone)]
pub struct InputSettings {
    pub sources: Sources,
    pub state: PathBuf,
    pub strict: bool,
    pub rejects: Option<PathBuf>,
    pub batching: Batching,
    /// Kinds whose file may be header-only although the snapshot holds entities of the kind.
    pub allow_empty: Vec<&'static str>,
}

impl InputSettings {
    pub fn resolve(args: &InputArgs) -> Result<InputSettings, Error> {
        Self::resolve_with(args, true)
    }

    /// Like [`resolve`](Self::resolve), but without requiring an export (for `apply --plan`,
    /// which takes its operations from the plan file).
    pub fn resolve_with(args: &InputArgs, require_inputs: bool) -> Result<InputSettings, Error> {
        let (config, base) = match &args.config {
            Some(path) => (ConfigFile::read(path)?, path.parent().map(Path::to_path_buf).unwrap_or_default()),
            None => (ConfigFile::default(), PathBuf::new()),
        };
        let cfg_path = |p: &Option<PathBuf>| p.as_ref().map(|p| base.join(p));
        let input_dir = args.input_dir.clone().or_else(|| cfg_path(&config.input_dir));
        if let Some(dir) = &input_dir
            && !dir.is_dir()
        {
            return Err(Error::Usage(format!("--input-dir {}: no such folder", dir.display())));
        }
        let pick = |flag: &Option<PathBuf>, configured: &Option<PathBuf>, default_name: &str| -> Option<PathBuf> {
            flag.clone().or_else(|| cfg_path(configured)).or_else(|| {
                let p = input_dir.as_ref()?.join(default_name);
                if p.exists() {
                    Some(p)
                } else {
                    tracing::warn!(file = %p.display(), "not in the input folder; that entity class is not reconciled");
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
                Some(s) => parse_delimiter(s)
                    .map_err(|message| Error::Config { path: args.config.clone().unwrap_or_default(), message }),
            }
        };

        let customers = match pick(&args.customers, &config.customers.path, DEFAULT_NAMES[0]) {
            Some(path) => Some(FileSpec {
                path,
                delimiter: delimiter(&config.customers.delimiter)?,
                columns: config.customers.columns.clone(),
            }),
            None => None,
        };
        let devices = match pick(&args.devices, &config.devices.path, DEFAULT_NAMES[1]) {
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
        let ownership = match pick(&args.ownership, &config.ownership.path, DEFAULT_NAMES[2]) {
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
        let state = args.state.clone().or_else(|| cfg_path(&config.state)).unwrap_or_else(|| DEFAULT_STATE.into());
        let mut batching = Batching::default();
        if let Some(n) = args.batch_size {
            batching.batch_size = n as usize;
        }
        batching.optimize = !args.no_optimize;
        Ok(InputSettings {
            sources: Sources { customers, devices, ownership },
            state,
            strict: args.strict,
            rejects: args.rejects.clone(),
            batching,
            allow_empty: args.allow_empty.iter().map(|k| k.name()).collect(),
        })
    }
}

/// The snapshot path for commands that take only `--state`.
pub fn state_path(flag: &Option<PathBuf>) -> PathBuf {
    flag.clone().unwrap_or_else(|| DEFAULT_STATE.into())
}

/// What a command that calls Telemetron needs: where, with which key, how long to wait.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub base_url: String,
    pub key: crate::client::ApiKey,
    pub timeout: std::time::Duration,
}

impl ApiSettings {
    pub fn resolve(args: &crate::cli::ApiArgs) -> Result<ApiSettings, Error> {
        use crate::client::{ApiKey, ENV_API_KEY, check_base_url};
        let base_url =
            check_base_url(args.base_url.as_deref().unwrap_or(crate::api::DEFAULT_BASE_URL)).map_err(Error::Usage)?;
        let key = match &args.api_key_file {
            Some(path) => ApiKey::from_file(path).map_err(Error::Setup)?,
            None => match std::env::var(ENV_API_KEY) {
                Ok(v) => ApiKey::new(&v).map_err(|e| Error::Setup(format!("{ENV_API_KEY}: {e}")))?,
                Err(_) => {
                    return Err(Error::Setup(format!(
                        "no API key: set {ENV_API_KEY} or pass --api-key-file FILE. An admin finds the key in Telemetron under Settings > Integrations > Developer"
                    )));
                }
            },
        };
        if !(args.timeout.is_finite() && args.timeout > 0.0) {
            return Err(Error::Usage(format!("--timeout must be a positive number of seconds, not {}", args.timeout)));
        }
        Ok(ApiSettings { base_url, key, timeout: std::time::Duration::from_secs_f64(args.timeout) })
    }

    pub fn client(&self) -> Result<crate::client::Client, Error> {
        crate::client::Client::new(&self.base_url, &self.key, self.timeout).map_err(Error::Setup)
    }
}

impl crate::cli::GuardArgs {
    /// The guard's limits, checked.
    pub fn limits(&self) -> Result<crate::guard::Limits, Error> {
        use crate::guard::Limit;
        let parse = |v: &Option<String>, flag: &str| v.as_deref().map(|s| Limit::parse(s, flag)).transpose();
        Ok(crate::guard::Limits {
            max_unassign: parse(&self.max_unassign, "--max-unassign")?,
            max_changes: parse(&self.max_changes, "--max-changes")?,
            force: self.force,
        })
    }
}

impl crate::cli::ExecArgs {
    /// The executor's options, checked.
    pub fn options(&self, batching: Batching) -> Result<crate::execute::Options, Error> {
        use crate::execute::{MAX_RATE, MIN_RATE};
        if !(self.rate.is_finite() && (MIN_RATE..=MAX_RATE).contains(&self.rate)) {
            return Err(Error::Usage(format!(
                "--rate must be a number of requests per second from {MIN_RATE} to {MAX_RATE}, not {}",
                self.rate
            )));
        }
        Ok(crate::execute::Options {
            rate: self.rate,
            concurrency: self.concurrency as usize,
            max_retries: self.max_retries,
            backoff_base: std::time::Duration::from_millis(self.backoff_ms),
            backoff_max: std::time::Duration::from_secs(30),
            batching,
        })
    }
}
