//! The TOML config file (`--config`): column remapping, delimiters and input paths.
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
    #[serde(default)]
    pub customers: FileSection<CustomerColumns>,
    #[serde(default)]
    pub devices: DeviceSection,
    #[serde(default)]
    pub ownership: FileSection<OwnershipColumns>,
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

/// Header names in the customers file, by the field they hold.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CustomerColumns {
    pub email: String,
    pub name: String,
    pub phone: String,
    pub address: String,
    pub customer_id: String,
}

impl Default for CustomerColumns {
    fn default() -> Self {
        CustomerColumns {
            email: "email".into(),
            name: "name".into(),
            phone: "phone".into(),
            address: "address".into(),
            customer_id: "customer_id".into(),
        }
    }
}

/// Header names in the devices file. Every other column is a property.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeviceColumns {
    pub identifier: String,
    #[serde(rename = "type")]
    pub device_type: String,
}

impl Default for DeviceColumns {
    fn default() -> Self {
        DeviceColumns { identifier: "identifier".into(), device_type: "type".into() }
    }
}

/// Header names in the ownership file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OwnershipColumns {
    pub device_identifier: String,
    pub customer_email: String,
    pub customer_id: String,
}

impl Default for OwnershipColumns {
    fn default() -> Self {
        OwnershipColumns {
            device_identifier: "device_identifier".into(),
            customer_email: "customer_email".into(),
            customer_id: "customer_id".into(),
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
        toml::from_str(&text)
            .map_err(|e| Error::Config { path: path.to_owned(), message: e.to_string().trim_end().to_string() })
    }
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
        assert_eq!(c.customers.columns.email, "E-mail");
        assert_eq!(c.customers.columns.name, "name");
        assert_eq!(c.devices.columns.identifier, "Serial Number");
        assert_eq!(c.devices.columns.device_type, "type");
        assert_eq!(c.devices.ignore_columns, vec!["Notes".to_string()]);
        assert_eq!(c.ownership.columns.customer_email, "customer_email");
    }

    #[test]
    fn typos_are_refused() {
        let err = toml::from_str::<ConfigFile>("[customers.columns]\nemial = \"x\"").unwrap_err();
        assert!(err.to_string().contains("emial"), "{err}");
    }

    #[test]
    fn delimiters() {
        assert_eq!(parse_delimiter(";"), Ok(b';'));
        assert_eq!(parse_delimiter("tab"), Ok(b'\t'));
        assert!(parse_delimiter(";;").is_err());
        assert!(parse_delimiter("\"").is_err());
    }
}
