//! The TOML config file (`--config`): the snapshot, input paths, column remapping and
//! delimiters, and the API, run and guard settings every command shares.
//!
//! This module only describes and reads the file. Merging it with flags and environment
//! variables happens in `settings`; nothing else reads the config.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::Error;

/// The whole config file. Unknown keys are refused so that a typo does not pass silently.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Field delimiter for every file unless a file sets its own (one ASCII character).
    pub delimiter: Option<String>,
    /// Folder holding `customers.csv`, `devices.csv` and `ownership.csv` (or the file names below).
    pub input_dir: Option<PathBuf>,
    /// The snapshot file.
    pub state: Option<PathBuf>,
    /// Where to write the run's figures in the Prometheus text format.
    pub metrics_file: Option<PathBuf>,
    /// `false`: log lines name customers by token, not by their personal data (`--log-pii`).
    pub log_pii: Option<bool>,
    #[serde(default)]
    pub api: ApiSection,
    #[serde(default)]
    pub run: RunSection,
    #[serde(default)]
    pub guard: GuardSection,
    #[serde(default)]
    pub customers: FileSection<CustomerColumns>,
    #[serde(default)]
    pub devices: DeviceSection,
    #[serde(default)]
    pub ownership: FileSection<OwnershipColumns>,
    #[serde(default)]
    pub limits: LimitsSection,
}

/// `[limits]`: what one input may cost before it is refused (see `load::Limits`; the defaults
/// are far above a real export's needs).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// The longest record (a row), in KiB (default 1024).
    pub max_record_kib: Option<u64>,
    /// How many times its stored size a compressed file may expand to (default 1000).
    pub max_expansion: Option<u64>,
    /// The most a compressed file may expand to, in GiB (default 64).
    pub max_decompressed_gib: Option<u64>,
    /// Rejected rows (and warnings) of each file kept in full and listed; the rest are counted
    /// (default 10000).
    pub rejects_kept: Option<usize>,
}

/// `[api]`: where Telemetron is and how long to wait for it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    pub base_url: Option<String>,
    pub api_key_file: Option<PathBuf>,
    /// Per-request timeout in seconds.
    pub timeout: Option<f64>,
}

/// `[run]`: how fast and how long `apply`, `verify` and `undo --apply` call Telemetron.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSection {
    /// A number of requests per second, or "auto".
    pub rate: Option<RateValue>,
    /// With `rate = "auto"`, the rate never to go above.
    pub max_rate: Option<f64>,
    pub concurrency: Option<u16>,
    pub max_retries: Option<u32>,
    pub backoff_ms: Option<u64>,
    /// As `--max-duration`: "90m", "2h", "45s".
    pub max_duration: Option<String>,
    /// As `--quarantine-after`: runs in a row a record must be refused in to be held back.
    pub quarantine_after: Option<u32>,
    /// As `--keep-runs`: how many runs' undo plans and sync log are kept.
    pub keep_runs: Option<u32>,
}

/// `run.rate` in the config: a number, or `"auto"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RateValue {
    Number(f64),
    Text(String),
}

/// `[guard]`: the safety guard's limits, as `--max-unassign` / `--max-changes` take them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardSection {
    pub max_unassign: Option<LimitValue>,
    pub max_changes: Option<LimitValue>,
}

/// A guard limit in the config: a number (`50`) or a string (`"5%"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum LimitValue {
    Number(u64),
    Text(String),
}

impl LimitValue {
    pub fn as_text(&self) -> String {
        match self {
            LimitValue::Number(n) => n.to_string(),
            LimitValue::Text(s) => s.clone(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSection<C> {
    pub path: Option<PathBuf>,
    pub delimiter: Option<String>,
    #[serde(default)]
    pub columns: C,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSection {
    pub path: Option<PathBuf>,
    pub delimiter: Option<String>,
    #[serde(default)]
    pub columns: DeviceColumns,
    /// Columns that are neither key, type nor property: they are read past.
    #[serde(default)]
    pub ignore_columns: Vec<String>,
}

/// A header name, and whether the config file named it. A column the config maps must be in
/// the file (a renamed header is an error, not a silently unmanaged field); a default name may
/// be absent where the field is optional.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub mapped: bool,
}

impl Column {
    /// The name used when the config does not map the field.
    pub fn default_name(name: &str) -> Column {
        Column { name: name.into(), mapped: false }
    }
}

impl<'de> Deserialize<'de> for Column {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        if name.trim().is_empty() {
            return Err(serde::de::Error::custom("a column name cannot be empty"));
        }
        Ok(Column { name, mapped: true })
    }
}

/// Header names in the customers file, by the field they hold.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CustomerColumns {
    pub email: Column,
    pub name: Column,
    pub phone: Column,
    pub address: Column,
    pub customer_id: Column,
}

impl Default for CustomerColumns {
    fn default() -> Self {
        CustomerColumns {
            email: Column::default_name("email"),
            name: Column::default_name("name"),
            phone: Column::default_name("phone"),
            address: Column::default_name("address"),
            customer_id: Column::default_name("customer_id"),
        }
    }
}

/// Header names in the devices file. Every other column is a property.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeviceColumns {
    pub identifier: Column,
    #[serde(rename = "type")]
    pub device_type: Column,
}

impl Default for DeviceColumns {
    fn default() -> Self {
        DeviceColumns { identifier: Column::default_name("identifier"), device_type: Column::default_name("type") }
    }
}

/// Header names in the ownership file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OwnershipColumns {
    pub device_identifier: Column,
    pub customer_email: Column,
    pub customer_id: Column,
}

impl Default for OwnershipColumns {
    fn default() -> Self {
        OwnershipColumns {
            device_identifier: Column::default_name("device_identifier"),
            customer_email: Column::default_name("customer_email"),
            customer_id: Column::default_name("customer_id"),
        }
    }
}

impl ConfigFile {
    pub fn read(path: &Path) -> Result<ConfigFile, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            what: "read the config file",
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| Error::Config { path: path.to_owned(), message: toml_message(&text, &e) })
    }
}

/// A TOML error as it may be shown: where (line and column) and what, without the line itself
/// and with every value the parser quotes left out — an API key put under a mistyped name must
/// not reach a log.
fn toml_message(text: &str, e: &toml::de::Error) -> String {
    let at = e.span().and_then(|span| text.get(..span.start)).map(|before| {
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        format!("line {line}, column {column}: ")
    });
    // Quoted values: `"..."` and `'...'` (keys and expectations are named in backticks).
    let mut message = String::new();
    let mut quote = None;
    for c in e.message().trim_end().chars() {
        match quote {
            Some(q) if c == q => {
                message.push('…');
                message.push(c);
                quote = None;
            }
            Some(_) => {}
            None => {
                message.push(c);
                if c == '"' || c == '\'' {
                    quote = Some(c);
                }
            }
        }
    }
    if quote.is_some() {
        message.push('…');
    }
    format!("{}{message}", at.unwrap_or_default())
}

/// Parses a delimiter setting: one ASCII character, or `\t` / `tab`.
pub fn parse_delimiter(s: &str) -> Result<u8, String> {
    match s {
        "\\t" | "tab" | "\t" => Ok(b'\t'),
        _ if s.len() == 1 && s.is_ascii() && s != "\"" && s != "\n" && s != "\r" => Ok(s.as_bytes()[0]),
        _ => Err(format!("delimiter must be one ASCII character (or \"tab\"), not {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaps_and_defaults() {
        let c: ConfigFile = toml::from_str(
            r#"
            delimiter = ";"
            [customers.columns]
            email = "E-mail"
            [devices]
            ignore_columns = ["Notes"]
            [devices.columns]
            identifier = "Serial Number"
            "#,
        )
        .unwrap();
        assert_eq!(c.customers.columns.email, Column { name: "E-mail".into(), mapped: true });
        assert_eq!(c.customers.columns.name, Column::default_name("name"));
        assert_eq!(c.devices.columns.identifier, Column { name: "Serial Number".into(), mapped: true });
        assert_eq!(c.devices.columns.device_type, Column::default_name("type"));
        assert_eq!(c.devices.ignore_columns, vec!["Notes".to_string()]);
        assert_eq!(c.ownership.columns.customer_email, Column::default_name("customer_email"));
    }

    #[test]
    fn typos_are_refused() {
        let err = toml::from_str::<ConfigFile>("[customers.columns]\nemial = \"x\"").unwrap_err();
        assert!(err.to_string().contains("emial"), "{err}");
    }

    #[test]
    fn errors_name_the_place_not_the_value() {
        for (text, place) in [
            ("[api]\napi_kye = \"tlm_live_SECRET\"\n", "line 2, column 1"),
            ("[api]\ntimeout = \"tlm_live_SECRET\"\n", "line 2, column 11"),
            ("[run]\nconcurrency = 'tlm_live_SECRET'\n", "line 2, column 15"),
            ("[api]\nbase_url = \"tlm_live_SECRET\n", "line 2"),
        ] {
            let e = toml::from_str::<ConfigFile>(text).unwrap_err();
            let m = toml_message(text, &e);
            assert!(!m.contains("SECRET") && m.starts_with(place), "{text:?}: {m}");
        }
    }

    #[test]
    fn delimiters() {
        assert_eq!(parse_delimiter(";"), Ok(b';'));
        assert_eq!(parse_delimiter("tab"), Ok(b'\t'));
        assert!(parse_delimiter(";;").is_err());
        assert!(parse_delimiter("\"").is_err());
    }
}
