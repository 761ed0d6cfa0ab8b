//! The loader: reads the three CSV exports, validates every row, and resolves ownership rows
//! against the customers file and the snapshot.
//!
//! Owns everything about CSV (header remapping, delimiters, BOM, quoting, UTF-8). Rows are read
//! one at a time into a reused buffer, so memory grows with the number of distinct entities, not
//! with file size. A bad row is never an error here: it becomes a [`Reject`] and, where the row
//! still names its entity, that entity is *held* — the differ leaves it and its assignments as
//! they are. Fatal problems (unreadable file, missing required column) are [`Error`]s.

use std::path::PathBuf;
use std::sync::Arc;

use indexmap::map::Entry;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::config::{CustomerColumns, DeviceColumns, OwnershipColumns};
use crate::error::Error;
use crate::model::{
    CustomerEntry, CustomerRef, Customers, DeviceEntry, Devices, Export, InputInfo, Ownership, OwnershipRow,
    PresentFields, Reject, RowRef, SnapshotData, Warning,
};
use crate::model::{CustomerRecord, DeviceIdent, DeviceRecord, Email, Owners, Properties, SortedMap, push_json_str};

mod csv_file;
pub mod source;

use csv_file::{CsvFile, Multiline, RowEvent, raw_text};
pub use source::sha256_file;

/// Where one export file is and how to read it.
#[derive(Debug, Clone)]
pub struct FileSpec<C> {
    pub path: PathBuf,
    pub delimiter: u8,
    pub columns: C,
}

/// The devices file also names columns to read past.
#[derive(Debug, Clone)]
pub struct DeviceFileSpec {
    pub file: FileSpec<DeviceColumns>,
    pub ignore_columns: Vec<String>,
}

/// Which inputs to read; `None` means that entity class is not reconciled at all.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub customers: Option<FileSpec<CustomerColumns>>,
    pub devices: Option<DeviceFileSpec>,
    pub ownership: Option<FileSpec<OwnershipColumns>>,
}

#[derive(Debug)]
enum SourceId<'a> {
    /// The email, and the line that gave it the id.
    One(&'a Email, u64),
    Ambiguous(u64, u64),
}

/// The customers by their `customer_id`, built when an ownership row names one.
fn by_source_id(customers: &Customers) -> FxHashMap<&str, SourceId<'_>> {
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

/// Reads every given file. Fatal problems are errors; bad rows are collected in the result.
/// Call [`resolve`] with the snapshot before diffing.
pub fn read(sources: &Sources) -> Result<Export, Error> {
    let mut export = read_part(sources, Part::Customers)?;
    export.join(read_part(sources, Part::Devices)?);
    export.join(read_part(sources, Part::Ownership)?);
    Ok(export)
}

/// One of the three exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Customers,
    Devices,
    Ownership,
}

/// Reads one file (nothing if it is not given) into an export of its own, so that the files
/// can be read on different threads; [`Export::join`] puts the parts together.
pub fn read_part(sources: &Sources, part: Part) -> Result<Export, Error> {
    let mut export = Export::default();
    let t = std::time::Instant::now();
    match part {
        Part::Customers => {
            if let Some(spec) = &sources.customers {
                export.customers = Some(read_customers(spec, &mut export)?);
            }
        }
        Part::Devices => {
            if let Some(spec) = &sources.devices {
                export.devices = Some(read_devices(spec, &mut export)?);
            }
        }
        Part::Ownership => {
            if let Some(spec) = &sources.ownership {
                export.ownership = Some(read_ownership(spec, &mut export)?);
            }
        }
    }
    tracing::debug!(elapsed_ms = t.elapsed().as_millis() as u64, file = ?part, "export read");
    Ok(export)
}

/// Finds keys in one of the snapshot's sorted maps: by binary search while few are asked for,
/// through a hash set once many are (an ownership file whose devices or customers file was not
/// given looks up every row in the snapshot).
struct SnapshotKeys<'a, K, V> {
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
pub fn resolve(export: &mut Export, snap: &SnapshotData) {
    resolve_devices(export, snap);
    if let Some(own) = export.ownership.take() {
        let resolved = resolve_ownership(own, export, snap);
        resolved.put_into(export);
    }
}

/// Rejects a new device whose type is empty (only the snapshot tells a new device from a known
/// one): it is held, with its assignments.
pub fn resolve_devices(export: &mut Export, snap: &SnapshotData) {
    let devices_file = export.inputs.iter().find(|i| i.kind == "devices").map(|i| Arc::<str>::from(i.path.as_str()));
    let (Some(devices), Some(file)) = (export.devices.as_mut(), devices_file) else { return };
    let untyped = std::mem::take(&mut devices.untyped_records);
    let mut untyped: Vec<_> = untyped.into_iter().collect();
    untyped.sort_by(|a, b| a.0.cmp(&b.0));
    let mut late = Vec::new();
    for (ident, record) in untyped {
        if snap.devices.contains_key(&ident) || devices.held.contains(&ident) {
            continue;
        }
        let line = devices.entries.get(&ident).map_or(0, |e| e.line);
        devices.entries.swap_remove(&ident);
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
}

impl ResolvedOwnership {
    /// Puts the ownership back into the export it was taken from, with its rejects and warnings.
    pub fn put_into(self, export: &mut Export) {
        export.ownership = Some(self.ownership);
        export.warnings.extend(self.warnings);
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
            let email = match from_file {
                Some(SourceId::One(e, _)) => (*e).clone(),
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
                        Some(e) => (*e).clone(),
                        None => {
                            let reason = format!("customer_id {id} is in neither the customers file nor the snapshot");
                            reject(&mut own, &mut late, reason, id);
                            return false;
                        }
                    }
                }
            };
            *customer = CustomerRef::Email(email);
        }
        let CustomerRef::Email(email) = &*customer else { return false };
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
        let customer_known =
            export.customers.as_ref().is_some_and(|c| c.entries.contains_key(email)) || snap_customers.contains(email);
        if !customer_known {
            let reason = format!("customer {email} is in neither the customers file nor the snapshot");
            reject(&mut own, &mut late, reason, email.as_str());
            return false;
        }
        true
    });
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
        rows.sort_unstable_by(|a, b| a.device.cmp(&b.device).then_with(|| by_owner(a, b)));
    }
    let mut repeats = Vec::new();
    let mut owners = SortedMap::with_capacity(rows.len());
    let mut current: Option<(DeviceIdent, Owners)> = None;
    for OwnershipRow { line, device, customer } in rows {
        let CustomerRef::Email(email) = customer else { continue };
        // A device held by a rejected row keeps its assignments: drop what other rows said.
        // So does a device a row gives to a held customer.
        if own.held_customers.contains(&email) {
            own.held_devices.insert(device);
            continue;
        }
        if own.held_devices.contains(&device) {
            continue;
        }
        match &mut current {
            Some((d, list)) if *d == device => {
                if list.last() == Some(&email) {
                    repeats.push(Warning {
                        file: file.clone(),
                        line,
                        message: format!("device {device} is assigned to {email} again; the rows were merged"),
                    });
                    continue;
                }
                list.push(email);
            }
            _ => {
                if let Some((d, list)) = current.replace((device, Owners::new())) {
                    owners.push(d, list);
                }
                if let Some((_, list)) = &mut current {
                    list.push(email);
                }
            }
        }
    }
    if let Some((d, list)) = current {
        owners.push(d, list);
    }
    owners.finish();
    own.owners = owners;
    repeats.sort_by_key(|w| w.line);
    warnings.extend(repeats);
    ResolvedOwnership { ownership: own, rejects: late, warnings }
}

// ---------------------------------------------------------------------------------------------
// The three files

fn describe_difference(a: &CustomerRecord, b: &CustomerRecord) -> String {
    let mut fields = Vec::new();
    for ((name, x), (_, y)) in a.api_fields().into_iter().zip(b.api_fields()) {
        if x != y {
            fields.push(name);
        }
    }
    if a.source_id() != b.source_id() {
        fields.push("customer_id");
    }
    fields.join(", ")
}

/// Holds every entity a row rejected for its shape names in `col`, in the row and in the rows
/// it swallowed, as far as they can be read.
fn hold_cells<K: std::hash::Hash + Eq>(
    bad: &csv_file::BadRow<'_>,
    col: usize,
    parse: impl Fn(&str) -> Result<K, String>,
    held: &mut FxHashSet<K>,
) {
    for cell in bad.cells(col) {
        if let Ok(k) = parse(&cell) {
            held.insert(k);
        }
    }
}

/// What the customers and devices readers do with every event but a well-formed row: size
/// the map, or hold what a bad row names (noting a row that may end a cut file). Gives the
/// row back when it is one.
fn keyed_row<'a, K: std::hash::Hash + Eq>(
    event: RowEvent<'a>,
    key_col: usize,
    parse: impl Fn(&str) -> Result<K, String>,
    held: &mut FxHashSet<K>,
    cut: &mut Vec<u64>,
    reserve: impl FnOnce(usize),
) -> Option<csv_file::Row<'a>> {
    match event {
        RowEvent::Row(row) => Some(row),
        RowEvent::Reserve(n) => {
            reserve(n);
            None
        }
        RowEvent::Bad(bad) => {
            hold_cells(&bad, key_col, parse, held);
            if bad.cut {
                cut.push(bad.line);
            }
            None
        }
    }
}

fn read_customers(spec: &FileSpec<CustomerColumns>, export: &mut Export) -> Result<Customers, Error> {
    let cols = &spec.columns;
    let mut file = CsvFile::open(&spec.path, spec.delimiter)?;
    let email_col = file.required(&cols.email, "customers", "email")?;
    let name_col = file.column(&cols.name, "customers", "name")?;
    let phone_col = file.column(&cols.phone, "customers", "phone")?;
    let address_col = file.column(&cols.address, "customers", "address")?;
    let id_col = file.column(&cols.customer_id, "customers", "customer_id")?;

    let present = PresentFields {
        name: name_col.is_some(),
        phone: phone_col.is_some(),
        address: address_col.is_some(),
        customer_id: id_col.is_some(),
    };
    let mut out = Customers { present, ..Customers::default() };
    let mut held = FxHashSet::default();
    let mut warnings = Vec::new();
    let mut rejects = Vec::new();
    let mut truncated = Vec::new();
    let name = file.name.clone();
    let free_text: Vec<usize> = [name_col, phone_col, address_col].into_iter().flatten().collect();
    let multiline = Multiline::Only { free: &free_text, key: email_col, is_key: |s| Email::parse(s).is_ok() };
    file.for_each_row(multiline, &mut rejects, |event, reject| {
        let reserve = |n| out.entries.reserve(n);
        let row = keyed_row(event, email_col, Email::parse, &mut held, &mut truncated, reserve)?;
        let email = match Email::parse(row.field(email_col)) {
            Ok(e) => e,
            Err(why) => {
                return Some(reject(Some(email_col), format!("invalid email {:?}: {why}", row.field(email_col).trim())));
            }
        };
        let id = row.cell(id_col);
        if let Some(Err(why)) = id.map(|id| crate::model::check_key_chars(id, "customer_id")) {
            held.insert(email);
            return Some(reject(id_col, why));
        }
        let record = CustomerRecord::new(row.cell(name_col), row.cell(phone_col), row.cell(address_col), id);
        let entry = out.entries.entry(email);
        if let Entry::Occupied(prev) = &entry {
            let (email, prev) = (prev.key(), prev.get());
            if prev.record == record {
                warnings.push(Warning {
                    file: name.clone(),
                    line: row.line,
                    message: format!("customer {email} repeats line {} exactly; the rows were merged", prev.line),
                });
                return None;
            }
            let what = describe_difference(&prev.record, &record);
            let r = reject(
                None,
                format!(
                    "customer {email} is already on line {} with a different {what}; the customer is left unchanged until the export agrees with itself",
                    prev.line
                ),
            );
            held.insert(email.clone());
            return Some(r);
        }
        entry.or_insert(CustomerEntry { line: row.line, record });
        None
    })?;
    out.held = held;
    for e in &out.held {
        out.entries.swap_remove(e);
    }
    export.unattributed.extend(truncated.into_iter().map(|line| RowRef { file: name.clone(), line }));
    export.warnings.extend(warnings);
    export.rejects.extend(rejects);
    file.finish("customers", export);
    Ok(out)
}

fn read_devices(spec: &DeviceFileSpec, export: &mut Export) -> Result<Devices, Error> {
    let cols = &spec.file.columns;
    let mut file = CsvFile::open(&spec.file.path, spec.file.delimiter)?;
    let ident_col = file.required(&cols.identifier, "devices", "identifier")?;
    let type_col = file.column(&cols.device_type, "devices", "type")?;
    for ignored in &spec.ignore_columns {
        if !file.headers.iter().any(|h| h.eq_ignore_ascii_case(ignored.trim())) {
            tracing::warn!(file = %file.name, column = %ignored, "ignore_columns names a column the header does not have");
        }
    }
    // Property columns, sorted by key as the canonical encoding wants, with each key already
    // written as JSON.
    let mut props: Vec<(String, usize)> = Vec::new();
    let mut seen = FxHashSet::default();
    for (i, h) in file.headers.iter().enumerate() {
        if i == ident_col || Some(i) == type_col || spec.ignore_columns.iter().any(|c| c.trim().eq_ignore_ascii_case(h))
        {
            continue;
        }
        if h.is_empty() {
            return Err(Error::BadFile {
                path: file.path.clone(),
                message: format!("column {} has an empty header; name it or list it in ignore_columns", i + 1),
            });
        }
        if !seen.insert(h.clone()) {
            return Err(Error::BadFile {
                path: file.path.clone(),
                message: format!("the header names property column {h:?} twice; rename one of them"),
            });
        }
        props.push((h.clone(), i));
    }
    props.sort();
    let free_text: Vec<usize> = props.iter().map(|(_, i)| *i).collect();
    let props: Vec<(String, usize)> = props
        .into_iter()
        .map(|(k, i)| {
            let mut key = String::new();
            push_json_str(&mut key, &k);
            key.push(':');
            (key, i)
        })
        .collect();

    let mut types: FxHashMap<Box<str>, Arc<str>> = FxHashMap::default();
    let mut out = Devices::default();
    let mut held = FxHashSet::default();
    let mut warnings = Vec::new();
    let mut rejects = Vec::new();
    let mut truncated = Vec::new();
    let name = file.name.clone();
    let delimiter = file.delimiter;
    let mut buf = String::new();
    let multiline = Multiline::Only {
        free: &free_text,
        key: ident_col,
        is_key: |s| DeviceIdent::parse(s.trim_matches('"')).is_ok(),
    };
    file.for_each_row(multiline, &mut rejects, |event, reject| {
        let reserve = |n| out.entries.reserve(n);
        let row = keyed_row(event, ident_col, DeviceIdent::parse, &mut held, &mut truncated, reserve)?;
        let ident = match DeviceIdent::parse(row.field(ident_col)) {
            Ok(d) => d,
            Err(why) => return Some(reject(Some(ident_col), why)),
        };
        let device_type = match type_col.map(|c| row.field(c).trim()).filter(|t| !t.is_empty()) {
            None => None,
            Some(t) => {
                if let Err(why) = crate::model::check_key_chars(t, "device type") {
                    held.insert(ident);
                    return Some(reject(type_col, why));
                }
                // Looked up before inserting: a handful of types over a million rows.
                Some(match types.get(t) {
                    Some(a) => a.clone(),
                    None => types.entry(t.into()).or_insert_with(|| t.into()).clone(),
                })
            }
        };
        buf.clear();
        buf.push('{');
        for (key, i) in &props {
            let v = row.field(*i).trim();
            if v.is_empty() {
                continue;
            }
            if buf.len() > 1 {
                buf.push(',');
            }
            buf.push_str(key);
            push_json_str(&mut buf, v);
        }
        buf.push('}');
        let record = DeviceRecord { device_type, properties: Properties::from_canonical(&buf) };
        let entry = out.entries.entry(ident);
        if let Entry::Occupied(prev) = &entry {
            let (ident, prev) = (prev.key(), prev.get());
            if prev.record == record {
                warnings.push(Warning {
                    file: name.clone(),
                    line: row.line,
                    message: format!("device {ident} repeats line {} exactly; the rows were merged", prev.line),
                });
                return None;
            }
            let r = reject(
                None,
                format!(
                    "device {ident} is already on line {} with different values; the device is left unchanged until the export agrees with itself",
                    prev.line
                ),
            );
            held.insert(ident.clone());
            return Some(r);
        }
        if record.device_type.is_none() {
            out.untyped_records.insert(entry.key().clone(), raw_text(row.rec.as_byte_record(), delimiter));
        }
        entry.or_insert(DeviceEntry { line: row.line, record });
        None
    })?;
    out.held = held;
    for d in &out.held {
        out.entries.swap_remove(d);
        out.untyped_records.remove(d);
    }
    export.unattributed.extend(truncated.into_iter().map(|line| RowRef { file: name.clone(), line }));
    export.warnings.extend(warnings);
    export.rejects.extend(rejects);
    file.finish("devices", export);
    Ok(out)
}

fn read_ownership(spec: &FileSpec<OwnershipColumns>, export: &mut Export) -> Result<Ownership, Error> {
    let cols = &spec.columns;
    let mut file = CsvFile::open(&spec.path, spec.delimiter)?;
    let device_col = file.required(&cols.device_identifier, "ownership", "device_identifier")?;
    let email_col = file.column(&cols.customer_email, "ownership", "customer_email")?;
    let id_col = file.column(&cols.customer_id, "ownership", "customer_id")?;
    if email_col.is_none() && id_col.is_none() {
        let wanted = format!("{:?} or {:?}", cols.customer_email.name, cols.customer_id.name);
        let names = [cols.customer_email.name.as_str(), cols.customer_id.name.as_str()];
        return Err(file.missing(&wanted, &names, "ownership", "customer_email"));
    }
    let mut out = Ownership::default();
    let mut rejects = Vec::new();
    let mut held_devices = FxHashSet::default();
    let mut held_customers = FxHashSet::default();
    let mut unattributed = Vec::new();
    let mut rows = Vec::new();
    let name = file.name.clone();
    file.for_each_row(Multiline::Never, &mut rejects, |event, reject| {
        let row = match event {
            RowEvent::Row(row) => row,
            RowEvent::Reserve(n) => {
                rows.reserve(n);
                return None;
            }
            RowEvent::Bad(bad) => {
                // Whatever it names is held; a row whose structure is broken may hide any
                // assignment, so it withholds every removal.
                let device_cells = bad.cells(device_col);
                held_devices.extend(device_cells.iter().filter_map(|c| DeviceIdent::parse(c).ok()));
                if let Some(c) = email_col {
                    hold_cells(&bad, c, Email::parse, &mut held_customers);
                }
                let names_nothing = device_cells.is_empty();
                if bad.structural || names_nothing {
                    unattributed.push(RowRef { file: name.clone(), line: bad.line });
                }
                return None;
            }
        };
        let device = DeviceIdent::parse(row.field(device_col));
        let email_cell = email_col.map(|c| row.field(c).trim()).filter(|s| !s.is_empty());
        let id_cell = id_col.map(|c| row.field(c).trim()).filter(|s| !s.is_empty());
        let customer = match (email_cell, id_cell) {
            (Some(e), _) => Email::parse(e)
                .map(CustomerRef::Email)
                .map_err(|why| (email_col, format!("invalid email {e:?}: {why}"))),
            (None, Some(id)) => crate::model::check_key_chars(id, "customer_id")
                .map(|()| CustomerRef::SourceId(id.into()))
                .map_err(|why| (id_col, why)),
            (None, None) => {
                Err((None, "the row names no customer: both customer_email and customer_id are empty".to_string()))
            }
        };
        match (device, customer) {
            (Ok(device), Ok(customer)) => {
                rows.push(OwnershipRow { line: row.line, device, customer });
                None
            }
            (Ok(device), Err((col, why))) => {
                held_devices.insert(device);
                Some(reject(col, why))
            }
            (Err(why), customer) => {
                match customer {
                    Ok(CustomerRef::Email(e)) => {
                        held_customers.insert(e);
                    }
                    _ => unattributed.push(RowRef { file: name.clone(), line: row.line }),
                }
                Some(reject(Some(device_col), why))
            }
        }
    })?;
    out.rows = rows;
    out.held_devices = held_devices;
    out.held_customers = held_customers;
    export.unattributed.extend(unattributed);
    export.rejects.extend(rejects);
    file.finish("ownership", export);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CustomerColumns, DeviceColumns, OwnershipColumns};

    struct Files(tempfile::TempDir);

    impl Files {
        fn new(files: &[(&str, &[u8])]) -> Files {
            let dir = tempfile::tempdir().unwrap();
            for (name, content) in files {
                std::fs::write(dir.path().join(name), content).unwrap();
            }
            Files(dir)
        }

        fn sources(&self) -> Sources {
            let p = |n: &str| {
                let path = self.0.path().join(n);
                path.exists().then_some(path)
            };
            Sources {
                customers: p("c.csv").map(|path| FileSpec {
                    path,
                    delimiter: b',',
                    columns: CustomerColumns::default(),
                }),
                devices: p("d.csv").map(|path| DeviceFileSpec {
                    file: FileSpec { path, delimiter: b',', columns: DeviceColumns::default() },
                    ignore_columns: vec!["notes".into()],
                }),
                ownership: p("o.csv").map(|path| FileSpec {
                    path,
                    delimiter: b',',
                    columns: OwnershipColumns::default(),
                }),
            }
        }

        fn load(&self) -> Export {
            let mut e = read(&self.sources()).unwrap();
            resolve(&mut e, &SnapshotData::default());
            e
        }
    }

    /// Each bad row: (file content, expected line, expected reason fragment).
    #[test]
    fn bad_customer_rows() {
        let cases: &[(&[u8], u64, &str)] = &[
            (b"email,name\nnope,A\n", 2, "invalid email \"nope\": email has no '@'"),
            (b"email,name\na@x.io,A,extra\n", 2, "wrong number of fields: 3 (the header has 2)"),
            (b"email,name\na@x.io,A\nb@x.io,\"B\n", 3, "unterminated quote"),
            (b"email,name\na@x.io,\xff\n", 2, "not valid UTF-8"),
            (b"email,name\na@x.io,A\nA@X.IO,B\n", 3, "already on line 2 with a different name"),
        ];
        for (content, line, reason) in cases {
            let e = Files::new(&[("c.csv", content)]).load();
            assert_eq!(e.rejects.len(), 1, "{:?}: {:?}", String::from_utf8_lossy(content), e.rejects);
            assert_eq!(e.rejects[0].line, *line);
            assert!(e.rejects[0].reason.contains(reason), "{:?} lacks {reason:?}", e.rejects[0].reason);
        }
    }

    #[test]
    fn a_customer_id_two_emails_share_is_ambiguous() {
        let e = Files::new(&[
            ("c.csv", b"email,customer_id\na@x.io,C1\nb@x.io,C1\nc@x.io,C2\n"),
            ("d.csv", b"identifier,type\nD1,t\nD2,t\n"),
            ("o.csv", b"device_identifier,customer_id\nD1,C1\nD2,C2\n"),
        ])
        .load();
        assert_eq!(e.rejects.len(), 1, "{:?}", e.rejects);
        assert_eq!(e.rejects[0].line, 2);
        assert!(e.rejects[0].reason.contains("ambiguous") && e.rejects[0].reason.contains("lines 2 and 3"));
        let owners = &e.ownership.unwrap().owners;
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[&DeviceIdent::parse("D2").unwrap()].as_slice(), [Email::parse("c@x.io").unwrap()]);
    }

    #[test]
    fn ownership_in_any_row_order_gives_the_same_owners_and_warnings() {
        let customers: &[u8] = b"email\na@x.io\nb@x.io\n";
        let devices: &[u8] = b"identifier,type\nD1,t\nD2,t\n";
        let sorted: &[u8] = b"device_identifier,customer_email\nD1,b@x.io\nD1,a@x.io\nD1,b@x.io\nD2,a@x.io\n";
        let shuffled: &[u8] = b"device_identifier,customer_email\nD2,a@x.io\nD1,b@x.io\nD1,a@x.io\nD1,b@x.io\n";
        let load = |own| {
            let e = Files::new(&[("c.csv", customers), ("d.csv", devices), ("o.csv", own)]).load();
            let owners: Vec<(String, Vec<String>)> = e
                .ownership
                .unwrap()
                .owners
                .iter()
                .map(|(d, o)| (d.to_string(), o.iter().map(Email::to_string).collect()))
                .collect();
            (owners, e.warnings.into_iter().map(|w| (w.line, w.message)).collect::<Vec<_>>())
        };
        let (owners, warnings) = load(sorted);
        assert_eq!(
            owners,
            [("D1".into(), vec!["a@x.io".into(), "b@x.io".into()]), ("D2".into(), vec!["a@x.io".into()])]
        );
        assert_eq!(warnings, [(4, "device D1 is assigned to b@x.io again; the rows were merged".to_string())]);
        let (owners_too, warnings_too) = load(shuffled);
        assert_eq!(owners_too, owners);
        assert_eq!(warnings_too, [(5, "device D1 is assigned to b@x.io again; the rows were merged".to_string())]);
    }

    #[test]
    fn conflicting_rows_hold_the_customer() {
        let e = Files::new(&[("c.csv", b"email,name\na@x.io,A\nb@x.io,B\na@x.io,Z\n")]).load();
        let c = e.customers.unwrap();
        assert!(c.held.contains(&Email::parse("a@x.io").unwrap()));
        assert!(!c.entries.contains_key(&Email::parse("a@x.io").unwrap()), "a held customer is not planned");
        assert_eq!(c.entries.len(), 1);
    }

    #[test]
    fn device_properties_come_from_every_other_column() {
        let e = Files::new(&[("d.csv", b"identifier,notes,type,zeta,alpha\n SN1 ,x,t, z ,\n")]).load();
        let d = &e.devices.unwrap().entries[&DeviceIdent::parse("SN1").unwrap()];
        assert_eq!(d.record.device_type.as_deref(), Some("t"));
        assert_eq!(d.record.properties.as_json(), r#"{"zeta":"z"}"#, "empty cells are absent, ignored columns skipped");
    }

    #[test]
    fn ownership_rows_that_name_nothing_known_are_rejected_and_hold_their_device() {
        let e = Files::new(&[
            ("c.csv", b"email\na@x.io\n"),
            ("d.csv", b"identifier,type\nD1,t\n"),
            ("o.csv", b"device_identifier,customer_email\nD1,a@x.io\nD1,b@x.io\nD9,a@x.io\n"),
        ])
        .load();
        let reasons: Vec<(u64, &str)> = e.rejects.iter().map(|r| (r.line, r.reason.as_str())).collect();
        assert_eq!(
            reasons,
            vec![
                (3, "customer b@x.io is in neither the customers file nor the snapshot"),
                (4, "device D9 is in neither the devices file nor the snapshot"),
            ]
        );
        let own = e.ownership.unwrap();
        assert!(own.held_devices.contains(&DeviceIdent::parse("D1").unwrap()));
        assert!(own.owners.is_empty(), "a held device's rows are not applied");
    }

    #[test]
    fn an_ownership_row_with_invalid_utf8_withholds_removals() {
        let e = Files::new(&[("o.csv", b"device_identifier,customer_email\nD1,a@x.io\nD2,b\xff@x.io\n")]).load();
        assert_eq!(e.unattributed, vec![RowRef { file: e.inputs[0].path.as_str().into(), line: 3 }]);
        assert!(e.ownership.unwrap().held_devices.contains(&DeviceIdent::parse("D2").unwrap()));
    }

    #[test]
    fn a_multi_line_ownership_row_is_unattributed() {
        let e = Files::new(&[("o.csv", b"device_identifier,customer_email\n\"D1\nD2\",a@x.io\n")]).load();
        assert_eq!(e.unattributed, vec![RowRef { file: e.inputs[0].path.as_str().into(), line: 2 }]);
    }

    #[test]
    fn inputs_are_hashed_and_counted() {
        let e = Files::new(&[("c.csv", b"email\na@x.io\nb@x.io\n")]).load();
        assert_eq!(e.inputs[0].rows, 2);
        assert_eq!(
            e.inputs[0].sha256, "ee90e3e78f191628a2ecbf755c4ee4cc0dcfb364f13cd6d11c01c6d0dcf3f3d2",
            "sha256 of the bytes as read"
        );
    }

    /// The bad row starts on physical line 6 whatever the line endings: after a blank line
    /// and an address quoted over two lines.
    #[test]
    fn line_numbers_are_physical_lines_in_lf_crlf_and_cr_files() {
        let lf = "email,name,address\na@x.io,A,\"1 Main St\nBoise\"\n\nb@x.io,B,x\nnope,C,y\nc@x.io,D,z\n";
        for (ending, eol) in [("LF", "\n"), ("CRLF", "\r\n"), ("CR", "\r")] {
            let text = lf.replace('\n', eol);
            let e = Files::new(&[("c.csv", text.as_bytes())]).load();
            let lines: Vec<u64> = e.rejects.iter().map(|r| r.line).collect();
            assert_eq!(lines, [6], "{ending}: {:?}", e.rejects);
            let c = e.customers.unwrap();
            assert_eq!(c.entries.len(), 3, "{ending}");
            assert_eq!(c.entries[&Email::parse("c@x.io").unwrap()].line, 7, "{ending}");
            assert_eq!(
                c.entries[&Email::parse("a@x.io").unwrap()].record.address(),
                Some(format!("1 Main St{eol}Boise").as_str()),
                "{ending}: a free-text field may span lines"
            );
        }
    }

    #[test]
    fn a_last_row_without_a_line_break_may_be_truncated() {
        let e = Files::new(&[
            ("d.csv", b"identifier,type\nD1,t\nD2,t\n"),
            ("c.csv", b"email\na@x.io\nb@x.io\n"),
            ("o.csv", b"device_identifier,customer_email\nD1,a@x.io\nD2,b@x.i"),
        ])
        .load();
        assert_eq!(e.rejects.len(), 1, "{:?}", e.rejects);
        assert_eq!(e.rejects[0].line, 3);
        assert!(e.rejects[0].reason.contains("may be truncated"), "{}", e.rejects[0].reason);
        assert_eq!(e.unattributed.len(), 1, "a cut file withholds every removal");
    }

    #[test]
    fn gzip_and_zstd_read_as_the_plain_file() {
        use std::io::Write;
        let plain: &[u8] = b"email,name\na@x.io,A\nb@x.io,B\n";
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(plain).unwrap();
        let gz = gz.finish().unwrap();
        let zst = ruzstd::encoding::compress_to_vec(plain, ruzstd::encoding::CompressionLevel::Fastest);
        for content in [gz, zst] {
            let e = Files::new(&[("c.csv", &content)]).load();
            assert!(e.rejects.is_empty(), "{:?}", e.rejects);
            assert_eq!(e.customers.unwrap().entries.len(), 2);
            assert_eq!(
                e.inputs[0].sha256,
                source::sha256_file(&Files::new(&[("x", &content)]).0.path().join("x")).unwrap()
            );
        }
    }
}
