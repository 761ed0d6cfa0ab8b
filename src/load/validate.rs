//! The three validators: one row at a time into entities, a bad row into a reject that holds
//! what it names.

use std::sync::Arc;

use crate::model::keymap::Entry;

use rustc_hash::{FxHashMap, FxHashSet};

use super::csv_file::{CsvFile, Multiline, RowEvent, raw_text};
use super::*;
use crate::config::{CustomerColumns, OwnershipColumns};
use crate::error::Error;
use crate::model::{Capped, CustomerRecord, DeviceIdent, DeviceRecord, Email, PropertyKeys, PropertyValues};
use crate::model::{
    CustomerEntry, CustomerRef, Customers, DamagedRow, DeviceEntry, Devices, Export, Ownership, OwnershipRow,
    PresentFields, RowRef, Warning,
};

pub(super) fn describe_difference(a: &CustomerRecord, b: &CustomerRecord) -> String {
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
pub(super) fn hold_cells<K: std::hash::Hash + Eq>(
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
pub(super) fn keyed_row<'a, K: std::hash::Hash + Eq>(
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

pub(super) fn read_customers(
    spec: &FileSpec<CustomerColumns>,
    limits: &Limits,
    export: &mut Export,
) -> Result<Customers, Error> {
    let cols = &spec.columns;
    let mut file = CsvFile::open(&spec.path, spec.delimiter, limits)?;
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
    let mut warnings = Capped::new(file.rejects_kept);
    let mut rejects = Capped::new(file.rejects_kept);
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
    export.add_capped(&name, rejects, warnings);
    file.finish("customers", export);
    Ok(out)
}

pub(super) fn read_devices(spec: &DeviceFileSpec, limits: &Limits, export: &mut Export) -> Result<Devices, Error> {
    let cols = &spec.file.columns;
    let mut file = CsvFile::open(&spec.file.path, spec.file.delimiter, limits)?;
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
    // Each row's properties are its values against these keys, held once for the file.
    let keys = PropertyKeys::new(props.iter().map(|(k, _)| k.clone()).collect());
    let mut values = PropertyValues::new(&keys);

    let mut types: FxHashMap<Box<str>, Arc<str>> = FxHashMap::default();
    let mut out = Devices::default();
    let mut held = FxHashSet::default();
    let mut warnings = Capped::new(file.rejects_kept);
    let mut rejects = Capped::new(file.rejects_kept);
    let mut truncated = Vec::new();
    let name = file.name.clone();
    let delimiter = file.delimiter;
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
        values.clear();
        for &i in &free_text {
            values.push(row.field(i).trim());
        }
        let record = DeviceRecord { device_type, properties: values.properties() };
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
    export.add_capped(&name, rejects, warnings);
    file.finish("devices", export);
    Ok(out)
}

/// With `customers`, an email that is one of its keys is that key (no copy, and no check: it
/// was checked there); with `devices`, likewise an identifier too long to be held inline.
pub(super) fn read_ownership(
    spec: &FileSpec<OwnershipColumns>,
    limits: &Limits,
    export: &mut Export,
    customers: Option<&Customers>,
    devices: Option<&Devices>,
) -> Result<Ownership, Error> {
    let cols = &spec.columns;
    let mut file = CsvFile::open(&spec.path, spec.delimiter, limits)?;
    let device_col = file.required(&cols.device_identifier, "ownership", "device_identifier")?;
    let email_col = file.column(&cols.customer_email, "ownership", "customer_email")?;
    let id_col = file.column(&cols.customer_id, "ownership", "customer_id")?;
    if email_col.is_none() && id_col.is_none() {
        let wanted = format!("{:?} or {:?}", cols.customer_email.name, cols.customer_id.name);
        let names = [cols.customer_email.name.as_str(), cols.customer_id.name.as_str()];
        return Err(file.missing(&wanted, &names, "ownership", "customer_email"));
    }
    let mut out = Ownership::default();
    let mut rejects = Capped::new(file.rejects_kept);
    let mut held_devices = FxHashSet::default();
    let mut held_customers = FxHashSet::default();
    let mut unattributed = Vec::new();
    let mut damaged = Vec::new();
    let mut rows = Vec::new();
    let mut pending = Pending::default();
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
                } else {
                    // Resolution holds what its damaged keys may mean, or withholds removals.
                    let first = |col: Option<usize>| {
                        col.and_then(|c| bad.cells(c).into_iter().map(|s| s.trim().to_string()).find(|s| !s.is_empty()))
                    };
                    damaged.push(DamagedRow {
                        line: bad.line,
                        device: device_cells.first().map(|s| s.to_string()),
                        email: first(email_col),
                        customer_id: first(id_col),
                    });
                }
                return None;
            }
        };
        let cell = row.field(device_col).trim();
        let email_cell = email_col.map(|c| row.field(c).trim()).filter(|s| !s.is_empty());
        // A row that cannot be rejected waits for its batch; any other is taken as it comes,
        // after the rows before it.
        if let Some(e) = email_cell
            && DeviceIdent::is_plain(cell)
            && Email::is_plain(e)
        {
            if pending.push(row.line, cell, e) {
                pending.flush(customers, devices, &mut rows);
            }
            return None;
        }
        pending.flush(customers, devices, &mut rows);
        let shared = devices.filter(|_| cell.len() > crate::model::INLINE_KEY_BYTES);
        let device = match shared.and_then(|d| d.entries.get_key_value(cell)) {
            Some((key, _)) => Ok(key.clone()),
            None => DeviceIdent::parse(cell),
        };
        let id_cell = id_col.map(|c| row.field(c).trim()).filter(|s| !s.is_empty());
        let known = |e: &str| customers.and_then(|c| c.entries.get_key_value(e)).map(|(key, _)| key.clone());
        let customer = match (email_cell, id_cell) {
            (Some(e), _) => match known(e) {
                Some(key) => Ok(CustomerRef::InFile(key)),
                None => Email::parse(e)
                    .map(CustomerRef::Email)
                    .map_err(|why| (email_col, format!("invalid email {e:?}: {why}"))),
            },
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
                // The customer it meant keeps its devices too, if it can be told.
                damaged.push(DamagedRow {
                    line: row.line,
                    device: Some(cell.to_string()),
                    email: email_cell.map(str::to_string),
                    customer_id: id_cell.map(str::to_string),
                });
                Some(reject(col, why))
            }
            (Err(why), customer) => {
                if let Ok(CustomerRef::Email(e) | CustomerRef::InFile(e)) = &customer {
                    held_customers.insert(e.clone());
                }
                // Resolution holds every device the damaged identifier may mean, and the
                // customer an id names; a row that means nothing withholds every removal.
                damaged.push(DamagedRow {
                    line: row.line,
                    device: Some(cell.to_string()),
                    email: email_cell.map(str::to_string),
                    customer_id: id_cell.map(str::to_string),
                });
                Some(reject(Some(device_col), why))
            }
        }
    })?;
    pending.flush(customers, devices, &mut rows);
    out.rows = rows;
    out.held_devices = held_devices;
    out.held_customers = held_customers;
    out.damaged = damaged;
    export.unattributed.extend(unattributed);
    export.add_capped(&name, rejects, Capped::new(0));
    file.finish("ownership", export);
    Ok(out)
}

/// Ownership rows that no check can reject (a valid identifier, an email as
/// [`Email::parse`] takes it), copied out of the file (into buffers kept from one batch to the
/// next) to be looked up together: the lookups are independent, so their cache misses overlap
/// instead of following one another.
#[derive(Default)]
struct Pending {
    rows: Vec<(u64, String, String)>,
    len: usize,
}

impl Pending {
    /// Adds a row; `true` when the batch is full.
    fn push(&mut self, line: u64, device: &str, email: &str) -> bool {
        if self.rows.len() == self.len {
            self.rows.push(Default::default());
        }
        let (l, d, e) = &mut self.rows[self.len];
        *l = line;
        d.clear();
        d.push_str(device);
        e.clear();
        e.push_str(email);
        self.len += 1;
        self.len == crate::model::LOOKUP_BATCH
    }

    /// Resolves the rows waiting, in their order, into `out`: each customer the customers file
    /// has named by that file's key, each device too long to be held inline by the devices
    /// file's (as `read_ownership` does one row at a time).
    fn flush(&mut self, customers: Option<&Customers>, devices: Option<&Devices>, out: &mut Vec<OwnershipRow>) {
        let rows = &self.rows[..self.len];
        let mut known: [Option<&Email>; crate::model::LOOKUP_BATCH] = [None; crate::model::LOOKUP_BATCH];
        if let Some(c) = customers {
            for (k, (_, _, e)) in known.iter_mut().zip(rows) {
                *k = c.entries.get_key_value(e.as_str()).map(|(key, _)| key);
            }
        }
        let mut shared: [Option<&DeviceIdent>; crate::model::LOOKUP_BATCH] = [None; crate::model::LOOKUP_BATCH];
        if let Some(d) = devices {
            for (k, (_, cell, _)) in shared.iter_mut().zip(rows) {
                if cell.len() > crate::model::INLINE_KEY_BYTES {
                    *k = d.entries.get_key_value(cell.as_str()).map(|(key, _)| key);
                }
            }
        }
        for (((line, cell, e), known), shared) in rows.iter().zip(known).zip(shared) {
            let device = shared.cloned().unwrap_or_else(|| DeviceIdent::from_trusted(cell));
            let customer = match known {
                Some(key) => CustomerRef::InFile(key.clone()),
                None => CustomerRef::Email(Email::from_trusted(e)),
            };
            out.push(OwnershipRow { line: *line, device, customer });
        }
        self.len = 0;
    }
}
