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
}

impl InputSettings {
    pub fn resolve(args: &InputArgs) -> Result<InputSettings, Error> {
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
        if customers.is_none() && devices.is_none() && ownership.is_none() {
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
        Ok(InputSettings {
            sources: Sources { customers, devices, ownership },
            state,
            strict: args.strict,
            rejects: args.rejects.clone(),
            batching,
        })
    }
}

/// The snapshot path for commands that take only `--state`.
pub fn state_path(flag: &Option<PathBuf>) -> PathBuf {
    flag.clone().unwrap_or_else(|| DEFAULT_STATE.into())
}
