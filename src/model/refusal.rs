//! Records Telemetron refused on their own, and how the snapshot remembers them: a record
//! refused run after run with the same content is quarantined (`plan::quarantine`) until its
//! export row changes. Defined here so that the executor, the snapshot and the planner share
//! one key and one fingerprint.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{CustomerRecord, DeviceIdent, Email, Properties};

/// What kind of record was refused: the unit a call can be split down to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// A customer's create or update (`createOrUpdateCustomer`), by email.
    Customer,
    /// A device's create or type change (`POST /device`), by identifier.
    Device,
    /// A device's properties (`bulk-metadata`), by identifier.
    Properties,
    /// A new (device, customer) pair, as `device -> customer`.
    Assignment,
    /// A pair to remove, as `device -> customer`.
    Unassignment,
}

impl RecordKind {
    pub const ALL: [RecordKind; 5] =
        [Self::Customer, Self::Device, Self::Properties, Self::Assignment, Self::Unassignment];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Device => "device",
            Self::Properties => "properties",
            Self::Assignment => "assignment",
            Self::Unassignment => "unassignment",
        }
    }

    pub fn parse(s: &str) -> Option<RecordKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The record an operation of this kind (as the run's counts name it) sends.
    pub fn of_operation(kind: &str) -> Option<RecordKind> {
        Some(match kind {
            "customers_created" | "customers_updated" => Self::Customer,
            "devices_created" | "device_types_changed" => Self::Device,
            "properties_replaced" => Self::Properties,
            "assignments_added" => Self::Assignment,
            "assignments_removed" => Self::Unassignment,
            _ => return None,
        })
    }
}

/// The key of a pair, as failures and refusals name it.
pub fn pair_key(device: &DeviceIdent, customer: &Email) -> String {
    format!("{device} -> {customer}")
}

/// A record Telemetron refused on its own in this run: what the executor hands the snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub record: RecordKind,
    pub key: String,
    /// What was sent, hashed ([`Fingerprint`]): a changed export row sends something else.
    pub fingerprint: String,
    /// Telemetron's answer.
    pub message: String,
}

/// A refused record as the snapshot holds it: refused in `runs` consecutive runs with this
/// fingerprint, the last one `last_run`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    pub record: RecordKind,
    pub key: String,
    pub fingerprint: String,
    pub runs: u32,
    pub last_run: i64,
    pub message: String,
}

/// The fingerprint of what a call sends for one record: the first 16 hex digits of a SHA-256
/// over its fields, stable across versions and platforms.
pub struct Fingerprint;

impl Fingerprint {
    fn of(parts: &[Option<&str>]) -> String {
        let mut h = Sha256::new();
        for p in parts {
            match p {
                // Present fields are length-prefixed, so that no two lists hash alike.
                Some(s) => {
                    h.update([1]);
                    h.update((s.len() as u64).to_le_bytes());
                    h.update(s.as_bytes());
                }
                None => h.update([0]),
            }
        }
        h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
    }

    /// A customer's create or update.
    pub fn customer(record: &CustomerRecord) -> String {
        Self::of(&[record.name(), record.phone(), record.address(), record.source_id()])
    }

    /// A `POST /device`: its type, and its properties when it creates the device.
    pub fn device(device_type: &str, properties: Option<&Properties>) -> String {
        let json = properties.map(|p| p.json());
        Self::of(&[Some(device_type), json.as_deref()])
    }

    /// A device's full properties, as bulk-metadata sends them.
    pub fn properties(properties: &Properties) -> String {
        Self::of(&[Some(&properties.json())])
    }

    /// A pair: the pair is the whole record.
    pub fn pair() -> String {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_tell_contents_apart_and_stay_put() {
        let a = CustomerRecord::new(Some("Ann"), None, None, None);
        let b = CustomerRecord::new(None, Some("Ann"), None, None);
        assert_ne!(Fingerprint::customer(&a), Fingerprint::customer(&b));
        assert_eq!(Fingerprint::customer(&a), Fingerprint::customer(&a.clone()));
        let p = Properties::from_map(&[("fw".to_string(), "1.2".to_string())].into());
        assert_ne!(Fingerprint::device("gw", None), Fingerprint::device("gw", Some(&p)));
        assert_ne!(Fingerprint::device("gw", Some(&Properties::empty())), Fingerprint::device("gw", None));
        // Stable: a snapshot written by one build is read by the next.
        assert_eq!(Fingerprint::properties(&p), "95430a8471d049f9");
        for k in RecordKind::ALL {
            assert_eq!(RecordKind::parse(k.as_str()), Some(k));
        }
    }
}
