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

pub mod drift;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::model::{CustomerRecord, DeviceIdent, Email, Properties, TelemetronId};
use crate::model::{
    Devices, Export, OwnershipRow, RowRef, SameDevices, SnapshotData, StoredDevice, sort_by_unique_str_key,
};

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
    /// The properties this delta was taken from, given the ones it leads to:
    /// `between(a, b).taken_back(b) == a`.
    pub fn taken_back(&self, after: &Properties) -> BTreeMap<String, String> {
        let mut before = after.to_map();
        for k in self.added.keys() {
            before.remove(k);
        }
        for (k, v) in &self.removed {
            before.insert(k.clone(), v.clone());
        }
        for (k, c) in &self.changed {
            before.insert(k.clone(), c.before.clone());
        }
        before
    }

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

pub use crate::model::Assignment;

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
    /// The rejected rows that cannot be attributed (or that may end a cut file).
    pub rows: Vec<RowRef>,
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
        let a = s.spawn(|| assignments(export, snap));
        let d = entities(export, snap);
        (d, a.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
    });
    d.set_assignments(assignments);
    d
}

/// The assignment half of a [`Diff`].
#[derive(Debug, Default)]
pub struct AssignmentDiff {
    remove: Vec<Assignment>,
    add: Vec<Assignment>,
    moves: Vec<Move>,
    withheld: usize,
    removals_withheld: Option<RemovalsWithheld>,
}

impl Diff {
    /// Completes an entity diff ([`entities`]) with its assignment half ([`assignments`]).
    pub fn set_assignments(&mut self, a: AssignmentDiff) {
        (self.assignments_to_remove, self.assignments_to_add, self.moves, self.removals_withheld) =
            (a.remove, a.add, a.moves, a.removals_withheld);
    }
}

/// The customers and devices to create or update, and those the exports no longer list; needs
/// `load::resolve_devices`, not the ownership half of the resolution.
pub fn entities(export: &Export, snap: &SnapshotData) -> Diff {
    let mut d = Diff::default();
    diff_customers(export, snap, &mut d);
    diff_devices(export, snap, &mut d);
    d
}

/// As [`entities`], with the customers and the devices compared on two threads: for a caller
/// that has nothing else to run meanwhile.
pub fn entities_on_two_threads(export: &Export, snap: &SnapshotData) -> Diff {
    let (mut d, devices) = std::thread::scope(|s| {
        let devices = s.spawn(|| {
            let mut d = Diff::default();
            diff_devices(export, snap, &mut d);
            d
        });
        let mut d = Diff::default();
        diff_customers(export, snap, &mut d);
        (d, devices.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
    });
    (d.devices_to_create, d.devices_to_update, d.devices_not_in_export) =
        (devices.devices_to_create, devices.devices_to_update, devices.devices_not_in_export);
    d
}

/// Walks the snapshot's customers held in full and finds each in the export's map; the export
/// entries neither such a row found nor the read marked equal are the new ones. The lists
/// come out sorted by email.
fn diff_customers(export: &Export, snap: &SnapshotData, d: &mut Diff) {
    if let Some(customers) = &export.customers {
        let mut found = snap.same_customers.flags(customers.entries.len());
        for (email, stored) in snap.customers.iter() {
            match customers.entries.get_full(email) {
                Some((i, _, entry)) => {
                    found[i] = true;
                    if customers.present.changes_api_fields(&entry.record, &stored.record) {
                        d.customers_to_update.push(CustomerUpdate {
                            email: email.clone(),
                            telemetron_id: stored.telemetron_id.clone(),
                            before: stored.record.clone(),
                            after: customers.present.merge(&entry.record, &stored.record),
                        });
                    }
                }
                None if !customers.held.contains(email) => d.customers_not_in_export.push(email.clone()),
                None => {}
            }
        }
        for ((email, entry), _) in customers.entries.iter().zip(&found).filter(|(_, found)| !**found) {
            d.customers_to_create.push(CustomerCreate { email: email.clone(), record: entry.record.clone() });
        }
    }
    sort_by_unique_str_key(&mut d.customers_to_create, |c| c.email.as_str());
    sort_by_unique_str_key(&mut d.customers_to_update, |c| c.email.as_str());
    sort_by_unique_str_key(&mut d.customers_not_in_export, Email::as_str);
}

/// As [`diff_customers`], for the devices, sorted by identifier.
fn diff_devices(export: &Export, snap: &SnapshotData, d: &mut Diff) {
    if let Some(devices) = &export.devices {
        let mut found = snap.same_devices.flags(devices.entries.len());
        for (ident, stored) in snap.devices.iter() {
            let Some((i, _, entry)) = devices.entries.get_full(ident) else {
                if !devices.held.contains(ident) {
                    d.devices_not_in_export.push(ident.clone());
                }
                continue;
            };
            found[i] = true;
            let (old, new) = (&stored.record, &entry.record);
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
        for ((ident, entry), _) in devices.entries.iter().zip(&found).filter(|(_, found)| !**found) {
            // `load::resolve_devices` rejects a new device without a type.
            if let Some(t) = &entry.record.device_type {
                d.devices_to_create.push(DeviceCreate {
                    identifier: ident.clone(),
                    device_type: t.clone(),
                    properties: entry.record.properties.clone(),
                });
            }
        }
    }
    sort_by_unique_str_key(&mut d.devices_to_create, |c| c.identifier.as_str());
    sort_by_unique_str_key(&mut d.devices_to_update, |c| c.identifier.as_str());
    sort_by_unique_str_key(&mut d.devices_not_in_export, DeviceIdent::as_str);
}

/// Assignments to add and remove; needs the export through `load::resolve`. Devices the
/// ownership file lists and devices only the snapshot has are compared on two threads.
pub fn assignments(export: &Export, snap: &SnapshotData) -> AssignmentDiff {
    let Some(own) = &export.ownership else { return AssignmentDiff::default() };
    // Three lists sorted by device — the snapshot's devices held in full, those it marked equal
    // to the export's, the wanted owners — merged in two halves split at one key, one per thread.
    let have = Have { held: snap.devices.as_slice(), same: &snap.same_devices, export: export.devices.as_ref() };
    let want = own.owners.as_slice();
    let same_n = have.same.len();
    let middle = [
        (have.held.len(), have.held.get(have.held.len() / 2).map(|(k, _)| k)),
        (same_n, have.same_key(same_n / 2)),
        (want.len(), want.get(want.len() / 2).map(|r| &r.device)),
    ];
    let split = middle.iter().max_by_key(|(n, _)| *n).and_then(|(_, k)| *k);
    let (held_at, same_at, want_at) = match split {
        Some(key) => (
            have.held.partition_point(|(d, _)| d < key),
            have.same.order().partition_point(|&i| have.key_at(i).is_some_and(|d| d < key)),
            want.partition_point(|r| r.device < *key),
        ),
        None => (have.held.len(), same_n, want.len()),
    };
    let (want_first, want_second) = want.split_at(want_at);
    let (held_first, held_second) = have.held.split_at(held_at);
    let (mut d, rest) = std::thread::scope(|s| {
        let rest = s.spawn(|| AssignmentDiff::merge(export, &have, held_second, same_at..same_n, want_second));
        (
            AssignmentDiff::merge(export, &have, held_first, 0..same_at, want_first),
            rest.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
        )
    });
    d.remove.extend(rest.remove);
    d.add.extend(rest.add);
    d.moves.extend(rest.moves);
    d.withheld += rest.withheld;
    if !export.unattributed.is_empty() {
        let mut rows = export.unattributed.clone();
        rows.sort();
        d.removals_withheld = Some(RemovalsWithheld { rows, count: d.withheld });
    }
    d.remove.sort();
    d.add.sort();
    d.moves.sort_by(|a, b| a.device.cmp(&b.device));
    d
}

/// The snapshot's devices with their owners: those held in full, and those marked equal to the
/// export's (their keys are the export's, at the index marked).
struct Have<'a> {
    held: &'a [(DeviceIdent, StoredDevice)],
    same: &'a SameDevices,
    export: Option<&'a Devices>,
}

impl<'a> Have<'a> {
    /// The key of the export's device at `index`.
    fn key_at(&self, index: u32) -> Option<&'a DeviceIdent> {
        self.export?.entries.get_index(index as usize).map(|(k, _)| k)
    }

    /// The key of the device marked `position`th in key order.
    fn same_key(&self, position: usize) -> Option<&'a DeviceIdent> {
        self.key_at(*self.same.order().get(position)?)
    }
}

/// One device's owners as the snapshot has them.
enum HaveOwners<'a> {
    Held(&'a [Email]),
    /// The owners of the device marked at this position.
    Same(&'a SameDevices, usize),
}

impl HaveOwners<'_> {
    /// Whether these are the owners the rows `want` name.
    fn is(&self, want: &[OwnershipRow]) -> bool {
        let wanted = want.iter().map(|r| r.customer.as_str());
        match self {
            HaveOwners::Held(have) => have.len() == want.len() && have.iter().map(Email::as_str).eq(wanted),
            HaveOwners::Same(same, at) => {
                let have = same.owners(*at);
                have.len() == want.len() && have.zip(wanted).all(|(h, w)| h.is(w))
            }
        }
    }

    fn to_vec(&self) -> Vec<Email> {
        match self {
            HaveOwners::Held(have) => have.to_vec(),
            HaveOwners::Same(same, at) => same.owners(*at).map(|o| o.to_email()).collect(),
        }
    }
}

/// The rows of the first device of `rows` (which is not empty).
fn device_rows(rows: &[OwnershipRow]) -> &[OwnershipRow] {
    let n = rows.iter().take_while(|r| r.device == rows[0].device).count();
    &rows[..n]
}

impl AssignmentDiff {
    /// The pairs to remove, as [`Diff::assignments_to_remove`] will hold them.
    pub fn to_remove(&self) -> &[Assignment] {
        &self.remove
    }

    /// The pairs to add, as [`Diff::assignments_to_add`] will hold them.
    pub fn to_add(&self) -> &[Assignment] {
        &self.add
    }

    /// Compares the owners the snapshot has (`held`, and the devices marked at the positions
    /// `same`) with the wanted owners, all sorted by device.
    fn merge(
        export: &Export,
        have: &Have<'_>,
        held: &[(DeviceIdent, StoredDevice)],
        same: std::ops::Range<usize>,
        want: &[OwnershipRow],
    ) -> AssignmentDiff {
        use std::cmp::Ordering;
        let mut d = AssignmentDiff::default();
        let (mut h, mut s, mut w) = (0usize, same.start, 0usize);
        loop {
            // The snapshot's next device: held in full or marked, whichever sorts first.
            let same_key = if s < same.end { have.same_key(s) } else { None };
            let next: Option<(&DeviceIdent, HaveOwners<'_>)> = match (held.get(h), same_key) {
                (Some((k, stored)), Some(m)) if k < m => Some((k, HaveOwners::Held(&stored.owners))),
                (Some((k, stored)), None) => Some((k, HaveOwners::Held(&stored.owners))),
                (_, Some(m)) => Some((m, HaveOwners::Same(have.same, s))),
                (None, None) => None,
            };
            let order = match (&next, want.get(w)) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some((k, _)), Some(r)) => (*k).cmp(&r.device),
            };
            let advance = |h: &mut usize, s: &mut usize, owners: &HaveOwners<'_>| match owners {
                HaveOwners::Held(_) => *h += 1,
                HaveOwners::Same(..) => *s += 1,
            };
            match order {
                Ordering::Less => {
                    let (device, owners) = next.expect("a next device");
                    advance(&mut h, &mut s, &owners);
                    if !owners.is(&[]) {
                        d.visit(export, device, &[], owners);
                    }
                }
                Ordering::Greater => {
                    let rows = device_rows(&want[w..]);
                    w += rows.len();
                    d.visit(export, &rows[0].device, rows, HaveOwners::Held(&[]));
                }
                Ordering::Equal => {
                    let (device, owners) = next.expect("a next device");
                    advance(&mut h, &mut s, &owners);
                    let rows = device_rows(&want[w..]);
                    w += rows.len();
                    d.visit(export, device, rows, owners);
                }
            }
        }
        d
    }

    /// Compares one device's wanted owners (its rows) with the owners Telemetron has been told.
    fn visit(&mut self, export: &Export, device: &DeviceIdent, want: &[OwnershipRow], have: HaveOwners<'_>) {
        // Nearly every device: nothing to add or remove, whatever holds it.
        if have.is(want) {
            return;
        }
        let have = have.to_vec();
        let want: Vec<Email> = want.iter().filter_map(|r| r.customer.email()).cloned().collect();
        let want = want.as_slice();
        let Some(own) = &export.ownership else { return };
        if export.is_held_device(device) || own.held_devices.contains(device) {
            return;
        }
        // A held customer holds every assignment that names it: a device it owns keeps its
        // owners, on both sides of a transfer.
        let held_customer = |e: &Email| export.is_held_customer(e) || own.held_customers.contains(e);
        if have.iter().chain(want).any(held_customer) {
            return;
        }
        let adds: Vec<Email> = want.iter().filter(|e| !have.contains(e)).cloned().collect();
        let mut removes: Vec<Email> = have.iter().filter(|e| !want.contains(e)).cloned().collect();
        if !export.unattributed.is_empty() {
            self.withheld += removes.len();
            removes.clear();
        }
        if !adds.is_empty() && !removes.is_empty() {
            self.moves.push(Move { device: device.clone(), from: removes.clone(), to: adds.clone() });
        }
        for customer in removes {
            self.remove.push(Assignment { device: device.clone(), customer });
        }
        for customer in adds {
            self.add.push(Assignment { device: device.clone(), customer });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        CustomerEntry, CustomerRef, Customers, DeviceEntry, Devices, Ownership, PresentFields, StoredCustomer,
        StoredDevice, Wanted,
    };
    use crate::model::{DeviceRecord, Owners};

    fn email(s: &str) -> Email {
        Email::parse(s).unwrap()
    }
    fn dev(s: &str) -> DeviceIdent {
        DeviceIdent::parse(s).unwrap()
    }
    fn customer(name: &str, phone: Option<&str>) -> CustomerRecord {
        CustomerRecord::new(Some(name), phone, None, None)
    }
    fn device(t: &str, props: &[(&str, &str)]) -> DeviceRecord {
        let map = props.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        DeviceRecord { device_type: Some(t.into()), properties: Properties::from_map(&map) }
    }
    fn owners(list: &[&str]) -> Owners {
        list.iter().map(|e| email(e)).collect()
    }

    /// A snapshot: a@x.io and b@x.io; D1 owned by a, D2 shared by a and b.
    fn snapshot() -> SnapshotData {
        let mut s = SnapshotData::default();
        for (e, c) in [("a@x.io", customer("A", Some("1"))), ("b@x.io", customer("B", None))] {
            s.customers.insert(email(e), StoredCustomer { telemetron_id: None, record: c });
        }
        let d1 = StoredDevice { telemetron_id: None, record: device("t", &[("fw", "1")]), owners: owners(&["a@x.io"]) };
        let d2 = StoredDevice { telemetron_id: None, record: device("t", &[]), owners: owners(&["a@x.io", "b@x.io"]) };
        s.devices.insert(dev("D1"), d1);
        s.devices.insert(dev("D2"), d2);
        s
    }

    fn customers(list: &[(&str, CustomerRecord)]) -> Customers {
        let mut c = Customers { present: PresentFields::ALL, ..Customers::default() };
        for (e, r) in list {
            c.entries.insert(email(e), CustomerEntry { line: 2, record: r.clone() });
        }
        c
    }

    /// The wanted owners, given sorted by device and owner.
    fn ownership(rows: &[(&str, &[&str])]) -> Ownership {
        let rows = rows.iter().flat_map(|(d, list)| {
            list.iter().map(|e| OwnershipRow { line: 2, device: dev(d), customer: CustomerRef::Email(email(e)) })
        });
        Ownership { owners: Wanted::from_sorted(rows.collect()), ..Ownership::default() }
    }

    #[test]
    fn the_same_state_is_no_change() {
        let export = Export {
            customers: Some(customers(&[("a@x.io", customer("A", Some("1"))), ("b@x.io", customer("B", None))])),
            ownership: Some(ownership(&[("D1", &["a@x.io"]), ("D2", &["a@x.io", "b@x.io"])])),
            ..Default::default()
        };
        let d = diff(&export, &snapshot());
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(d, Diff::default());
    }

    #[test]
    fn customer_creates_updates_and_leavers() {
        let export = Export {
            customers: Some(customers(&[("a@x.io", customer("A", Some("2"))), ("c@x.io", customer("C", None))])),
            ..Default::default()
        };
        let d = diff(&export, &snapshot());
        assert_eq!(d.customers_to_create, vec![CustomerCreate { email: email("c@x.io"), record: customer("C", None) }]);
        assert_eq!(d.customers_to_update.len(), 1);
        let changes = d.customers_to_update[0].changes();
        assert_eq!(changes, vec![("phone", Change { before: Some("1"), after: Some("2") })]);
        assert_eq!(d.customers_not_in_export, vec![email("b@x.io")]);
        assert!(d.assignments_to_remove.is_empty(), "customers leaving removes nothing by itself");
    }

    #[test]
    fn a_missing_column_keeps_the_stored_value() {
        let mut c = customers(&[("a@x.io", customer("A", None))]);
        c.present.phone = false;
        let export = Export { customers: Some(c), ..Default::default() };
        assert!(diff(&export, &snapshot()).customers_to_update.is_empty());
    }

    #[test]
    fn device_type_and_property_changes() {
        let mut devices = Devices::default();
        devices.entries.insert(dev("D1"), DeviceEntry { line: 2, record: device("t", &[("fw", "2"), ("loc", "x")]) });
        let untyped = DeviceRecord { device_type: None, properties: Properties::empty() };
        devices.entries.insert(dev("D2"), DeviceEntry { line: 3, record: untyped });
        devices.entries.insert(dev("D3"), DeviceEntry { line: 4, record: device("u", &[]) });
        let export = Export { devices: Some(devices), ..Default::default() };
        let d = diff(&export, &snapshot());
        assert_eq!(d.devices_to_create.len(), 1);
        assert_eq!(d.devices_to_create[0].identifier, dev("D3"));
        assert_eq!(d.devices_to_update.len(), 1, "an empty type keeps D2's type: {:?}", d.devices_to_update);
        let u = &d.devices_to_update[0];
        assert_eq!(u.identifier, dev("D1"));
        assert!(u.device_type.is_none());
        let delta =
            PropertyDelta::between(&u.properties.as_ref().unwrap().before, &u.properties.as_ref().unwrap().after);
        assert_eq!(delta.changed["fw"], Change { before: "1".into(), after: "2".into() });
        assert_eq!(delta.added["loc"], "x");
        assert!(delta.removed.is_empty());
    }

    #[test]
    fn owner_changes_are_moves() {
        let export = Export {
            ownership: Some(ownership(&[("D1", &["b@x.io"]), ("D2", &["a@x.io", "b@x.io"])])),
            ..Default::default()
        };
        let d = diff(&export, &snapshot());
        assert_eq!(d.assignments_to_remove, vec![Assignment { device: dev("D1"), customer: email("a@x.io") }]);
        assert_eq!(d.assignments_to_add, vec![Assignment { device: dev("D1"), customer: email("b@x.io") }]);
        assert_eq!(d.moves, vec![Move { device: dev("D1"), from: vec![email("a@x.io")], to: vec![email("b@x.io")] }]);
    }

    #[test]
    fn held_entities_and_unattributed_rows_remove_nothing() {
        // D2 is not in the ownership file: removed, unless something holds it.
        let base = || ownership(&[("D1", &["a@x.io"])]);
        let d = diff(&Export { ownership: Some(base()), ..Default::default() }, &snapshot());
        assert_eq!(d.assignments_to_remove.len(), 2);

        let mut held_device = base();
        held_device.held_devices.insert(dev("D2"));
        let d = diff(&Export { ownership: Some(held_device), ..Default::default() }, &snapshot());
        assert!(d.assignments_to_remove.is_empty());

        let mut held_customer = base();
        held_customer.held_customers.insert(email("b@x.io"));
        let d = diff(&Export { ownership: Some(held_customer), ..Default::default() }, &snapshot());
        assert!(d.assignments_to_remove.is_empty(), "D2 is b's: it keeps all its owners, a included");

        let row = RowRef { file: "o.csv".into(), line: 7 };
        let export = Export { ownership: Some(base()), unattributed: vec![row.clone()], ..Default::default() };
        let d = diff(&export, &snapshot());
        assert!(d.assignments_to_remove.is_empty());
        assert_eq!(d.removals_withheld, Some(RemovalsWithheld { rows: vec![row], count: 2 }));
    }

    #[test]
    fn an_omitted_file_reconciles_nothing_of_its_kind() {
        let d = diff(&Export::default(), &snapshot());
        assert_eq!(d, Diff::default());
    }

    #[test]
    fn output_is_sorted_whatever_the_input_order() {
        let mut c = Customers { present: PresentFields::ALL, ..Customers::default() };
        for e in ["z@x.io", "m@x.io", "c@x.io"] {
            c.entries.insert(email(e), CustomerEntry { line: 2, record: customer("N", None) });
        }
        let d = diff(&Export { customers: Some(c), ..Default::default() }, &SnapshotData::default());
        let got: Vec<&str> = d.customers_to_create.iter().map(|c| c.email.as_str()).collect();
        assert_eq!(got, ["c@x.io", "m@x.io", "z@x.io"]);
    }
}
