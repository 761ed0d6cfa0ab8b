//! The snapshot's contents as read: what Telemetron has been told, by key, and which state of
//! which file it came from. Defined here, not in `snapshot`, so that the loader's resolution and
//! the differ take it without importing the store.

use rustc_hash::FxHashMap;
use serde::Serialize;

use super::{CustomerRecord, DeviceIdent, DeviceRecord, Email, Owners, Properties, SortedMap, TelemetronId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCustomer {
    pub telemetron_id: Option<TelemetronId>,
    pub record: CustomerRecord,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDevice {
    pub telemetron_id: Option<TelemetronId>,
    pub record: DeviceRecord,
    /// The device's owners, sorted. Kept here rather than in a map of their own: one entry and
    /// one copy of the identifier per device.
    pub owners: Owners,
}

impl StoredDevice {
    pub(crate) fn placeholder() -> StoredDevice {
        StoredDevice {
            telemetron_id: None,
            record: DeviceRecord { device_type: None, properties: Properties::empty() },
            owners: Owners::new(),
        }
    }
}

/// Which snapshot, and which state of it, a value was read from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SnapshotVersion {
    /// Random id given to the file when it was created; `None` when there is no file yet. A
    /// saved plan made while the file was missing holds the id the file will get when that
    /// plan creates it (with `missing` set).
    pub id: Option<String>,
    /// The file did not exist when the plan was made.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub missing: bool,
    /// Bumped by every write.
    pub generation: u64,
    pub schema: i64,
}

/// Everything in the snapshot, in memory, each map sorted by key.
#[derive(Debug, Default)]
pub struct SnapshotData {
    pub customers: SortedMap<Email, StoredCustomer>,
    pub devices: SortedMap<DeviceIdent, StoredDevice>,
    pub version: SnapshotVersion,
    /// Where a read that shared with the export found each entry there: per entry, in key
    /// order, its index in the export's map or [`NOT_IN_EXPORT`]; empty when the read did not
    /// look. The differ checks the key at the index before it trusts one (the loader's
    /// resolution may move entries), so that it need not search the export again.
    pub customers_at: Vec<u32>,
    pub devices_at: Vec<u32>,
}

/// In [`SnapshotData::customers_at`] and `devices_at`: the export had no such entry when the
/// snapshot was read (and entries are only ever removed from it after).
pub const NOT_IN_EXPORT: u32 = u32::MAX;

impl SnapshotData {
    pub fn customers_by_source_id(&self) -> FxHashMap<&str, &Email> {
        self.customers.iter().filter_map(|(e, c)| Some((c.record.source_id()?, e))).collect()
    }

    pub fn assignment_count(&self) -> usize {
        self.devices.values().map(|d| d.owners.len()).sum()
    }

    /// How many customers, devices and assignments the snapshot holds: the guard's bases.
    pub fn totals(&self) -> Totals {
        Totals {
            customers: self.customers.len() as u64,
            devices: self.devices.len() as u64,
            assignments: self.assignment_count() as u64,
        }
    }

    /// The owners of `device` as the snapshot has them (none for an unknown device).
    pub fn owners_of(&self, device: &DeviceIdent) -> &[Email] {
        self.devices.get(device).map_or(&[], |d| d.owners.as_slice())
    }
}

/// What the snapshot holds: the bases of the guard's limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub customers: u64,
    pub devices: u64,
    pub assignments: u64,
}
