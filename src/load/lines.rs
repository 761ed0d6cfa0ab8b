//! Where a record came from: the export's `file:line` of the rows Telemetron refused, found by
//! reading the files again once a run has ended (a refused record is rare; its line is not
//! worth holding for every row of a migration). Only the rows asked for are looked up; the
//! rest of each file is read past.

use rustc_hash::{FxHashMap, FxHashSet};

use super::Sources;
use super::csv_file::{CsvFile, Multiline, Named, Row};
use crate::error::Error;
use crate::model::{DeviceIdent, Email, RecordKind};

/// The `file:line` of each record asked for that an export row gives: a customer's row, a
/// device's (its type and its properties), an assignment's ownership row (by device, and by
/// email where the row has one). A removal has no row: nothing is found for it. The first row
/// wins, as in the loader.
pub fn lines_of(
    sources: &Sources,
    wanted: &[(RecordKind, &str)],
) -> Result<FxHashMap<(RecordKind, String), String>, Error> {
    let mut customers = FxHashSet::default();
    let mut devices = FxHashSet::default();
    let mut pairs: FxHashMap<String, Vec<String>> = FxHashMap::default();
    for (kind, key) in wanted {
        match kind {
            RecordKind::Customer => {
                customers.insert(key.to_string());
            }
            RecordKind::Device | RecordKind::Properties => {
                devices.insert(key.to_string());
            }
            RecordKind::Assignment => {
                if let Some((device, customer)) = key.split_once(" -> ") {
                    pairs.entry(device.to_string()).or_default().push(customer.to_string());
                }
            }
            RecordKind::Unassignment => {}
        }
    }
    let mut out = FxHashMap::default();
    let mut put = |kinds: &[RecordKind], key: String, at: String| {
        for k in kinds {
            out.entry((*k, key.clone())).or_insert_with(|| at.clone());
        }
    };
    if !customers.is_empty() {
        customer_rows(sources, |file, row, email| {
            if customers.contains(email.as_str()) {
                put(&[RecordKind::Customer], email.to_string(), format!("{}:{}", file.name, row.line));
            }
        })?;
    }
    if !devices.is_empty() {
        device_rows(sources, |file, row, ident| {
            if devices.contains(ident.as_str()) {
                let at = format!("{}:{}", file.name, row.line);
                put(&[RecordKind::Device, RecordKind::Properties], ident.to_string(), at);
            }
        })?;
    }
    if !pairs.is_empty() {
        ownership_rows(sources, |file, row, device, email| {
            let Some(device) = device else { return };
            let Some(customers) = pairs.get(device.as_str()) else { return };
            // A row keyed by customer_id alone names no email: it is the device's row.
            for c in customers.iter().filter(|c| email.is_none_or(|e| e.as_str() == c.as_str())) {
                put(&[RecordKind::Assignment], format!("{device} -> {c}"), format!("{}:{}", file.name, row.line));
            }
        })?;
    }
    Ok(out)
}

/// Calls `f` with each well-formed row of the customers file whose email reads.
fn customer_rows(sources: &Sources, mut f: impl FnMut(&Named, &Row<'_>, Email)) -> Result<(), Error> {
    let Some(spec) = sources.customers.as_ref() else { return Ok(()) };
    let mut file = CsvFile::open(&spec.path, spec.delimiter, &sources.limits)?;
    let col = file.required(&spec.columns.email, "customers", "email")?;
    let free: Vec<usize> = (0..file.headers.len()).filter(|c| *c != col).collect();
    let multiline = Multiline::Only { free: &free, key: col, is_key: |s| Email::parse(s).is_ok() };
    file.walk(multiline, |file, row| {
        if let Ok(email) = Email::parse(row.field(col)) {
            f(file, row, email);
        }
    })
}

/// Calls `f` with each well-formed row of the devices file whose identifier reads.
fn device_rows(sources: &Sources, mut f: impl FnMut(&Named, &Row<'_>, DeviceIdent)) -> Result<(), Error> {
    let Some(spec) = sources.devices.as_ref().map(|d| &d.file) else { return Ok(()) };
    let mut file = CsvFile::open(&spec.path, spec.delimiter, &sources.limits)?;
    let col = file.required(&spec.columns.identifier, "devices", "identifier")?;
    let free: Vec<usize> = (0..file.headers.len()).filter(|c| *c != col).collect();
    let is_key = |s: &str| DeviceIdent::parse(s.trim_matches('"')).is_ok();
    file.walk(Multiline::Only { free: &free, key: col, is_key }, |file, row| {
        if let Ok(ident) = DeviceIdent::parse(row.field(col)) {
            f(file, row, ident);
        }
    })
}

/// Calls `f` with each well-formed row of the ownership file, with its device and its email
/// where they read.
fn ownership_rows(
    sources: &Sources,
    mut f: impl FnMut(&Named, &Row<'_>, Option<&DeviceIdent>, Option<&Email>),
) -> Result<(), Error> {
    let Some(spec) = sources.ownership.as_ref() else { return Ok(()) };
    let mut file = CsvFile::open(&spec.path, spec.delimiter, &sources.limits)?;
    let device_col = file.required(&spec.columns.device_identifier, "ownership", "device_identifier")?;
    let email_col = file.column(&spec.columns.customer_email, "ownership", "customer_email")?;
    file.walk(Multiline::Never, |file, row| {
        let device = DeviceIdent::parse(row.field(device_col)).ok();
        let email = row.cell(email_col).and_then(|e| Email::parse(e).ok());
        f(file, row, device.as_ref(), email.as_ref());
    })
}

/// One export row that names a key asked for (`explain`): where it is, and its cells.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NamedRow {
    /// The key asked for that the row names.
    pub key: String,
    /// `customers`, `devices` or `ownership`.
    pub kind: &'static str,
    pub file: std::sync::Arc<str>,
    pub line: u64,
    /// The row's cells, in the file's column order.
    pub cells: Vec<Cell>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Cell {
    pub column: String,
    pub value: String,
}

/// Every well-formed row of the exports whose key column names one of `keys` (an email or a
/// device identifier, compared as the loader reads them): a customer's row, a device's, and
/// the ownership rows of either. A row rejected for its shape is not one of them: the
/// export's rejects list it.
pub fn rows_naming(sources: &Sources, keys: &[String]) -> Result<Vec<NamedRow>, Error> {
    let emails: FxHashMap<String, &str> =
        keys.iter().filter_map(|k| Some((Email::parse(k).ok()?.to_string(), k.as_str()))).collect();
    let devices: FxHashMap<String, &str> =
        keys.iter().filter_map(|k| Some((DeviceIdent::parse(k).ok()?.to_string(), k.as_str()))).collect();
    let mut out = Vec::new();
    let row_of = |kind, file: &Named, row: &Row<'_>, key: &str| {
        let cells = (0..file.headers.len())
            .map(|i| Cell { column: file.headers[i].clone(), value: row.field(i).to_string() })
            .collect();
        NamedRow { key: key.to_string(), kind, file: file.name.clone(), line: row.line, cells }
    };
    if !emails.is_empty() {
        customer_rows(sources, |file, row, email| {
            if let Some(key) = emails.get(email.as_str()) {
                out.push(row_of("customers", file, row, key));
            }
        })?;
    }
    if !devices.is_empty() {
        device_rows(sources, |file, row, ident| {
            if let Some(key) = devices.get(ident.as_str()) {
                out.push(row_of("devices", file, row, key));
            }
        })?;
    }
    ownership_rows(sources, |file, row, device, email| {
        let by_device = device.and_then(|d| devices.get(d.as_str()));
        for key in by_device.into_iter().chain(email.and_then(|e| emails.get(e.as_str()))) {
            out.push(row_of("ownership", file, row, key));
        }
    })?;
    Ok(out)
}
