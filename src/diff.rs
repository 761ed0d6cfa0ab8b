//! The differ: what must change in Telemetron for it to match the exports, given what the
//! snapshot says it has been told.
//!
//! Pure: values in, values out, no IO, no failure, deterministic order (every list sorted by key).
//! Rules that keep a bad export from doing harm live here:
//! - an entity class whose file was not given is not reconciled at all;
//! - a held entity (one with a rejected row) is left as it is, with its assignments;
//! - ext-v1 has no delete, so an entity missing from its file is only reported;
//! - assignments are removed only where a given ownership file no longer lists them, and not at
//!   all while the ownership file has a rejected row that names neither device nor customer.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::load::Export;
use crate::model::{CustomerRecord, DeviceIdent, Email, Properties, TelemetronId};
use crate::snapshot::SnapshotData;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerCreate {
    pub email: Email,
    #[serde(flatten)]
    pub record: CustomerRecord,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerUpdate {
    pub email: Email,
    pub telemetron_id: Option<TelemetronId>,
    pub before: CustomerRecord,
    pub after: CustomerRecord,
}

/// One field's old and new value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change<T> {
    pub before: T,
    pub after: T,
}

impl CustomerUpdate {
    /// The Telemetron fields that differ, in field order.
    pub fn changes(&self) -> Vec<(&'static str, Change<Option<&str>>)> {
        self.before
            .api_fields()
            .into_iter()
            .zip(self.after.api_fields())
            .filter(|((_, b), (_, a))| b != a)
            .map(|((name, before), (_, after))| (name, Change { before, after }))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCreate {
    pub identifier: DeviceIdent,
    #[serde(rename = "type")]
    pub device_type: Arc<str>,
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceUpdate {
    pub identifier: DeviceIdent,
    pub telemetron_id: Option<TelemetronId>,
    /// Set when the type changes.
    pub device_type: Option<Change<Option<Arc<str>>>>,
    /// Set when the properties change; bulk-metadata replaces them wholesale with `after`.
    pub properties: Option<Change<Properties>>,
}

/// Key-level detail of a property change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PropertyDelta {
    pub added: BTreeMap<String, String>,
    pub changed: BTreeMap<String, Change<String>>,
    pub removed: BTreeMap<String, String>,
}

impl PropertyDelta {
    pub fn between(before: &Properties, after: &Properties) -> PropertyDelta {
        let (b, a) = (before.to_map(), after.to_map());
        let mut d = PropertyDelta::default();
        for (k, v) in &a {
            match b.get(k) {
                None => {
                    d.added.insert(k.clone(), v.clone());
                }
                Some(old) if old != v => {
                    d.changed.insert(k.clone(), Change { before: old.clone(), after: v.clone() });
                }
                Some(_) => {}
            }
        }
        for (k, v) in b {
            if !a.contains_key(&k) {
                d.removed.insert(k, v);
            }
        }
        d
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Assignment {
    pub device: DeviceIdent,
    pub customer: Email,
}

/// A device whose owners change: some removed, some added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Move {
    pub device: DeviceIdent,
    pub from: Vec<Email>,
    pub to: Vec<Email>,
}

/// Why assignment removals were held back, when they were.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemovalsWithheld {
    /// Lines of ownership rows that were rejected without naming a device or customer.
    pub lines: Vec<u64>,
    /// How many removals the ownership file would otherwise cause.
    pub count: usize,
}

/// Everything that differs, each list sorted by key.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Diff {
    pub customers_to_create: Vec<CustomerCreate>,
    pub customers_to_update: Vec<CustomerUpdate>,
    pub devices_to_create: Vec<DeviceCreate>,
    pub devices_to_update: Vec<DeviceUpdate>,
    pub assignments_to_remove: Vec<Assignment>,
    pub assignments_to_add: Vec<Assignment>,
    pub moves: Vec<Move>,
    pub customers_not_in_export: Vec<Email>,
    pub devices_not_in_export: Vec<DeviceIdent>,
    pub removals_withheld: Option<RemovalsWithheld>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.customers_to_create.is_empty()
            && self.customers_to_update.is_empty()
            && self.devices_to_create.is_empty()
            && self.devices_to_update.is_empty()
            && self.assignments_to_remove.is_empty()
            && self.assignments_to_add.is_empty()
    }
}

/// Compares the exports with the snapshot. `export` must have been through `load::resolve`.
///
/// The assignment half runs on a second thread while the entity half runs on this one: they read
/// the same values and write disjoint parts of the result.
pub fn diff(export: &Export, snap: &SnapshotData) -> Diff {
    let (mut d, assignments) = std::thread::scope(|s| {
        let assignments = s.spawn(|| diff_assignments(export, snap));
        let d = diff_entities(export, snap);
        (d, assignments.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
    });
    (d.assignments_to_remove, d.assignments_to_add, d.moves, d.removals_withheld) = assignments;
    d.customers_to_create.sort_by(|a, b| a.email.cmp(&b.email));
    d.customers_to_update.sort_by(|a, b| a.email.cmp(&b.email));
    d.devices_to_create.sort_by(|a, b| a.identifier.cmp(&b.identifier));
    d.devices_to_update.sort_by(|a, b| a.identifier.cmp(&b.identifier));
    d.customers_not_in_export.sort();
    d.devices_not_in_export.sort();
    d
}

type AssignmentDiff = (Vec<Assignment>, Vec<Assignment>, Vec<Move>, Option<RemovalsWithheld>);

fn diff_entities(export: &Export, snap: &SnapshotData) -> Diff {
    let mut d = Diff::default();

    if let Some(customers) = &export.customers {
        for (email, entry) in &customers.entries {
            match snap.customers.get(email) {
                None => d.customers_to_create.push(CustomerCreate { email: email.clone(), record: entry.record.clone() }),
                Some(stored) if stored.record.api_fields() != entry.record.api_fields() => {
                    d.customers_to_update.push(CustomerUpdate {
                        email: email.clone(),
                        telemetron_id: stored.telemetron_id.clone(),
                        before: stored.record.clone(),
                        after: entry.record.clone(),
                    });
                }
                Some(_) => {}
            }
        }
        d.customers_not_in_export = snap
            .customers
            .keys()
            .filter(|e| !customers.entries.contains_key(*e) && !customers.held.contains(*e))
            .cloned()
            .collect();
    }

    if let Some(devices) = &export.devices {
        for (ident, entry) in &devices.entries {
            let new = &entry.record;
            match snap.devices.get(ident) {
                None => {
                    // `load::resolve` rejects a new device without a type.
                    if let Some(t) = &new.device_type {
                        d.devices_to_create.push(DeviceCreate {
                            identifier: ident.clone(),
                            device_type: t.clone(),
                            properties: new.properties.clone(),
                        });
                    }
                }
                Some(stored) => {
                    let old = &stored.record;
                    // An empty type cell keeps the stored type: ext-v1 does not say it can be cleared.
                    let device_type = match &new.device_type {
                        Some(t) if old.device_type.as_ref() != Some(t) => {
                            Some(Change { before: old.device_type.clone(), after: Some(t.clone()) })
                        }
                        _ => None,
                    };
                    let properties = (old.properties != new.properties)
                        .then(|| Change { before: old.properties.clone(), after: new.properties.clone() });
                    if device_type.is_some() || properties.is_some() {
                        d.devices_to_update.push(DeviceUpdate {
                            identifier: ident.clone(),
                            telemetron_id: stored.telemetron_id.clone(),
                            device_type,
                            properties,
                        });
                    }
                }
            }
        }
        d.devices_not_in_export = snap
            .devices
            .keys()
            .filter(|k| !devices.entries.contains_key(*k) && !devices.held.contains(*k))
            .cloned()
            .collect();
    }

    d
}

fn diff_assignments(export: &Export, snap: &SnapshotData) -> AssignmentDiff {
    let mut d = Diff::default();
    if let Some(own) = &export.ownership {
        let held_device = |dev: &DeviceIdent| export.is_held_device(dev) || own.held_devices.contains(dev);
        let held_customer = |e: &Email| export.is_held_customer(e) || own.held_customers.contains(e);
        let mut withheld = 0usize;
        let empty: &[Email] = &[];
        let mut visit = |device: &DeviceIdent, want: &[Email], have: &[Email]| {
            if held_device(device) {
                return;
            }
            let adds: Vec<Email> = want.iter().filter(|e| !have.contains(e)).cloned().collect();
            let mut removes: Vec<Email> =
                have.iter().filter(|e| !want.contains(e) && !held_customer(e)).cloned().collect();
            if !own.unattributed.is_empty() {
                withheld += removes.len();
                removes.clear();
            }
            if !adds.is_empty() && !removes.is_empty() {
                d.moves.push(Move { device: device.clone(), from: removes.clone(), to: adds.clone() });
            }
            for customer in removes {
                d.assignments_to_remove.push(Assignment { device: device.clone(), customer });
            }
            for customer in adds {
                d.assignments_to_add.push(Assignment { device: device.clone(), customer });
            }
        };
        for (device, want) in &own.owners {
            visit(device, want, snap.owners.get(device).map_or(empty, |o| o.as_slice()));
        }
        for (device, have) in &snap.owners {
            if !own.owners.contains_key(device) {
                visit(device, empty, have);
            }
        }
        if !own.unattributed.is_empty() {
            d.removals_withheld = Some(RemovalsWithheld { lines: own.unattributed.clone(), count: withheld });
        }
    }

    d.assignments_to_remove.sort();
    d.assignments_to_add.sort();
    d.moves.sort_by(|a, b| a.device.cmp(&b.device));
    (d.assignments_to_remove, d.assignments_to_add, d.moves, d.removals_withheld)
}
