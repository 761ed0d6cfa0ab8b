//! Resolution: ownership rows against the exports and the snapshot, and the snapshot's
//! records of the devices the export names.

use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::model::{
    CustomerRef, Customers, DamagedRow, Export, Ownership, OwnershipRow, Reject, RowRef, SnapshotData, Warning,
};
use crate::model::{DeviceIdent, Email, SortedMap, Wanted, loose_key};

#[derive(Debug)]
pub(super) enum SourceId<'a> {
    /// The email, and the line that gave it the id.
    One(&'a Email, u64),
    Ambiguous(u64, u64),
}

/// The customers by their `customer_id`, built when an ownership row names one.
pub(super) fn by_source_id(customers: &Customers) -> FxHashMap<&str, SourceId<'_>> {
    {
        let mut map: FxHashMap<&str, SourceId<'_>> = FxHashMap::default();
        for (email, entry) in &customers.entries {
            let Some(id) = entry.record.source_id() else { continue };
            map.entry(id)
                .and_modify(|slot| {
                    if let SourceId::One(_, first) = *slot {
                        *slot = SourceId::Ambiguous(first.min(entry.line), first.max(entry.line));
                    }
                })
                .or_insert(SourceId::One(email, entry.line));
        }
        map
    }
}

/// Finds keys in one of the snapshot's sorted maps: by binary search while few are asked for,
/// through a hash set once many are (an ownership file whose devices or customers file was not
/// given looks up every row in the snapshot).
pub(super) struct SnapshotKeys<'a, K, V> {
    map: &'a SortedMap<K, V>,
    searches: u32,
    set: Option<FxHashSet<&'a K>>,
}

impl<'a, K: Ord + std::hash::Hash, V> SnapshotKeys<'a, K, V> {
    /// Binary searches before building the set: a few are cheaper than hashing every key.
    const SEARCHES: u32 = 256;

    fn new(map: &'a SortedMap<K, V>) -> Self {
        SnapshotKeys { map, searches: 0, set: None }
    }

    fn contains(&mut self, key: &K) -> bool {
        if self.set.is_none() && self.searches >= Self::SEARCHES {
            self.set = Some(self.map.keys().collect());
        }
        match &self.set {
            Some(set) => set.contains(key),
            None => {
                self.searches += 1;
                self.map.contains_key(key)
            }
        }
    }
}

/// Checks what can only be checked against the snapshot — a new device needs a type, an
/// ownership row must name a known device and customer — and builds the desired owners.
/// [`resolve_devices`] then [`resolve_ownership`]; `prepare` runs the second beside the entity
/// diff, which needs only the first.
pub fn resolve(export: &mut Export, snap: &mut SnapshotData) {
    resolve_devices(export, snap);
    if let Some(own) = export.ownership.take() {
        let resolved = resolve_ownership(own, export, snap);
        resolved.put_into(export);
    }
}

/// Rejects a new device whose type is empty (only the snapshot tells a new device from a known
/// one): it is held, with its assignments. The snapshot's marks follow the entry moved into
/// its place.
pub fn resolve_devices(export: &mut Export, snap: &mut SnapshotData) {
    let devices_file = export.inputs.iter().find(|i| i.kind == "devices").map(|i| Arc::<str>::from(i.path.as_str()));
    let (Some(devices), Some(file)) = (export.devices.as_mut(), devices_file) else { return };
    let untyped = std::mem::take(&mut devices.untyped_records);
    let mut untyped: Vec<_> = untyped.into_iter().collect();
    untyped.sort_by(|a, b| a.0.cmp(&b.0));
    let mut late = Vec::new();
    for (ident, record) in untyped {
        if snap.has_device(&ident, Some(&*devices)) || devices.held.contains(&ident) {
            continue;
        }
        let line = devices.entries.get(&ident).map_or(0, |e| e.line);
        if let Some((at, _, _)) = devices.entries.swap_remove_full(&ident) {
            let entries = &devices.entries;
            let key = |i: usize| entries.get_index(i).map_or("", |(k, _)| k.as_str());
            snap.same_devices.moved(entries.len(), at, key);
        }
        devices.held.insert(ident.clone());
        late.push(Reject {
            file: file.clone(),
            line,
            column: None,
            reason: format!("device {ident} is new and its type is empty; a new device needs a type"),
            record,
        });
    }
    export.add_rejects(late);
}

/// The ownership file resolved: the desired owners, and the rows it rejected or warned about.
#[derive(Debug)]
pub struct ResolvedOwnership {
    ownership: Ownership,
    rejects: Vec<Reject>,
    warnings: Vec<Warning>,
    /// Rejected rows that could mean no known entity: they withhold every removal.
    unattributed: Vec<RowRef>,
}

impl ResolvedOwnership {
    /// Puts the ownership back into the export it was taken from, with its rejects and warnings.
    pub fn put_into(self, export: &mut Export) {
        export.ownership = Some(self.ownership);
        export.warnings.extend(self.warnings);
        export.unattributed.extend(self.unattributed);
        export.add_rejects(self.rejects);
    }
}

/// Resolves the rows of `own` (taken out of `export`, which must have been through
/// [`resolve_devices`]): each must name a device and a customer known to the exports or the
/// snapshot, and not a held one.
pub fn resolve_ownership(mut own: Ownership, export: &Export, snap: &SnapshotData) -> ResolvedOwnership {
    let mut late: Vec<Reject> = Vec::new();
    let mut warnings: Vec<Warning> = Vec::new();
    let file = export
        .inputs
        .iter()
        .find(|i| i.kind == "ownership")
        .map_or_else(|| Arc::<str>::from("ownership"), |i| Arc::<str>::from(i.path.as_str()));
    let mut rows = std::mem::take(&mut own.rows);
    let mut snap_source_ids: Option<FxHashMap<&str, &Email>> = None;
    let mut file_source_ids: Option<FxHashMap<&str, SourceId<'_>>> = None;
    let (mut snap_devices, mut snap_customers) = (SnapshotKeys::new(&snap.devices), SnapshotKeys::new(&snap.customers));
    // Ownership rows usually list devices in the devices file's order: try the entry after the
    // last one found before hashing.
    let mut next_device = 0usize;
    // Resolved in place: a row that stays names its customer by email.
    rows.retain_mut(|OwnershipRow { line, device, customer }| {
        let (line, device) = (*line, &*device);
        // A rejected row holds every entity it names: the device keeps its owners, and so
        // does every device of the customer, on both sides of a transfer.
        let reject = |own: &mut Ownership, late: &mut Vec<Reject>, reason: String, customer: &str| {
            own.held_devices.insert(device.clone());
            if let Ok(e) = Email::parse(customer) {
                own.held_customers.insert(e);
            }
            // The names it gives may be damaged copies of known ones (`d2` for `D2`).
            let is_email = customer.contains('@');
            own.damaged.push(DamagedRow {
                line,
                device: Some(device.to_string()),
                email: is_email.then(|| customer.to_string()),
                customer_id: (!is_email).then(|| customer.to_string()),
            });
            late.push(Reject {
                file: file.clone(),
                line,
                column: None,
                reason,
                record: format!("{device},{customer}"),
            });
        };
        if let CustomerRef::SourceId(id) = customer {
            let from_file = export
                .customers
                .as_ref()
                .and_then(|c| file_source_ids.get_or_insert_with(|| by_source_id(c)).get(&**id));
            *customer = match from_file {
                Some(SourceId::One(e, _)) => CustomerRef::InFile((*e).clone()),
                Some(SourceId::Ambiguous(a, b)) => {
                    let reason = format!(
                        "customer_id {id} is ambiguous: the customers file gives it to two emails (lines {a} and {b})"
                    );
                    reject(&mut own, &mut late, reason, id);
                    return false;
                }
                None => {
                    let map = snap_source_ids.get_or_insert_with(|| snap.customers_by_source_id());
                    match map.get(&**id) {
                        Some(e) => CustomerRef::Email((*e).clone()),
                        None => {
                            let reason = format!("customer_id {id} is in neither the customers file nor the snapshot");
                            reject(&mut own, &mut late, reason, id);
                            return false;
                        }
                    }
                }
            };
        }
        let (email, in_customers_file) = match &*customer {
            CustomerRef::InFile(e) => (e, true),
            CustomerRef::Email(e) => (e, false),
            CustomerRef::SourceId(_) => return false,
        };
        if export.is_held_device(device) || export.is_held_customer(email) {
            // The row's device keeps the owners it has: a move to a held customer is no
            // bare unassign.
            own.held_devices.insert(device.clone());
            own.held_rows += 1;
            return false;
        }
        let in_file = export.devices.as_ref().is_some_and(|d| {
            let at = |i: usize| d.entries.get_index(i).is_some_and(|(k, _)| k == device);
            if at(next_device) {
                next_device += 1;
                true
            } else if next_device > 0 && at(next_device - 1) {
                true
            } else if let Some(i) = d.entries.get_index_of(device) {
                next_device = i + 1;
                true
            } else {
                false
            }
        });
        if !in_file && !snap_devices.contains(device) {
            let reason = format!("device {} is in neither the devices file nor the snapshot", device);
            reject(&mut own, &mut late, reason, email.as_str());
            return false;
        }
        let customer_known = in_customers_file
            || export.customers.as_ref().is_some_and(|c| c.entries.contains_key(email))
            || snap_customers.contains(email);
        if !customer_known {
            let reason = format!("customer {email} is in neither the customers file nor the snapshot");
            reject(&mut own, &mut late, reason, email.as_str());
            return false;
        }
        true
    });
    let unattributed = hold_what_damaged_rows_mean(&mut own, export, snap, &file);
    // Sorted by device, customer and line: each device's owners come together, sorted, and a
    // pair given twice is merged into its first line. An export listed in device order needs
    // only each device's few rows sorted.
    let by_owner =
        |a: &OwnershipRow, b: &OwnershipRow| (a.customer.as_str(), a.line).cmp(&(b.customer.as_str(), b.line));
    if rows.is_sorted_by(|a, b| a.device <= b.device) {
        for group in rows.chunk_by_mut(|a, b| a.device == b.device) {
            group.sort_unstable_by(by_owner);
        }
    } else {
        // In place: a buffer of sort keys beside the rows would be the front's peak. The other
        // core has only the entity diff to do meanwhile.
        crate::model::sort_unstable_on_two_threads(&mut rows, |a, b| {
            a.device.cmp(&b.device).then_with(|| by_owner(a, b))
        });
    }
    // The rows that stay are the wanted owners, compacted in place.
    let mut repeats = Vec::new();
    let mut kept = 0usize;
    for i in 0..rows.len() {
        let OwnershipRow { line, device, customer } = &rows[i];
        let Some(email) = customer.email() else { continue };
        // A device held by a rejected row keeps its assignments: drop what other rows said.
        // So does a device a row gives to a held customer.
        if own.held_customers.contains(email) {
            own.held_devices.insert(device.clone());
            continue;
        }
        if own.held_devices.contains(device) {
            continue;
        }
        if let Some(last) = kept.checked_sub(1).map(|k| &rows[k])
            && last.device == *device
            && last.customer.as_str() == email.as_str()
        {
            repeats.push(Warning {
                file: file.clone(),
                line: *line,
                message: format!("device {device} is assigned to {email} again; the rows were merged"),
            });
            continue;
        }
        rows.swap(kept, i);
        kept += 1;
    }
    rows.truncate(kept);
    own.owners = Wanted::from_sorted(rows);
    repeats.sort_by_key(|w| w.line);
    warnings.extend(repeats);
    ResolvedOwnership { ownership: own, rejects: late, warnings, unattributed }
}

/// Holds every entity a rejected row's damaged keys could mean — a known device, email or
/// customer_id equal to it once control and invisible characters and case are set aside — and
/// gives back the rows that could mean none: they withhold every removal.
fn hold_what_damaged_rows_mean(
    own: &mut Ownership,
    export: &Export,
    snap: &SnapshotData,
    file: &Arc<str>,
) -> Vec<RowRef> {
    let damaged = std::mem::take(&mut own.damaged);
    if damaged.is_empty() {
        return Vec::new();
    }
    let mut devices: FxHashMap<String, Vec<DeviceIdent>> = FxHashMap::default();
    let file_devices = export.devices.iter().flat_map(|d| d.entries.keys());
    for d in file_devices.chain(snap.devices.keys()) {
        devices.entry(loose_key(d.as_str())).or_default().push(d.clone());
    }
    let (mut emails, mut ids): (FxHashMap<String, Vec<Email>>, FxHashMap<String, Vec<Email>>) = Default::default();
    let file_customers =
        export.customers.iter().flat_map(|c| c.entries.iter().map(|(e, entry)| (e, entry.record.source_id())));
    let snap_customers = snap.customers.iter().map(|(e, c)| (e, c.record.source_id()));
    for (e, id) in file_customers.chain(snap_customers) {
        emails.entry(loose_key(e.as_str())).or_default().push(e.clone());
        if let Some(id) = id {
            ids.entry(loose_key(id)).or_default().push(e.clone());
        }
    }
    let mut unattributed = Vec::new();
    for row in damaged {
        let mut named = false;
        let mut hold = |map: &FxHashMap<String, Vec<Email>>, key: &Option<String>, own: &mut Ownership| {
            for e in key.as_deref().and_then(|k| map.get(&loose_key(k))).into_iter().flatten() {
                own.held_customers.insert(e.clone());
                named = true;
            }
        };
        hold(&emails, &row.email, own);
        hold(&ids, &row.customer_id, own);
        for d in row.device.as_deref().and_then(|k| devices.get(&loose_key(k))).into_iter().flatten() {
            own.held_devices.insert(d.clone());
            named = true;
        }
        if !named {
            unattributed.push(RowRef { file: file.clone(), line: row.line });
        }
    }
    unattributed
}
