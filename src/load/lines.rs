//! Where a record came from: the export's `file:line` of the rows Telemetron refused, found by
//! reading the files again once a run has ended (a refused record is rare; its line is not
//! worth holding for every row of a migration). Only the rows asked for are looked up; the
//! rest of each file is read past.

use rustc_hash::{FxHashMap, FxHashSet};

use super::Sources;
use super::csv_file::{CsvFile, Multiline, RowEvent};
use crate::error::Error;
use crate::model::{Capped, DeviceIdent, Email, RecordKind};

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
    if let Some(spec) = sources.customers.as_ref().filter(|_| !customers.is_empty()) {
        let mut file = CsvFile::open(&spec.path, spec.delimiter, &sources.limits)?;
        let col = file.required(&spec.columns.email, "customers", "email")?;
        let free: Vec<usize> = (0..file.headers.len()).filter(|c| *c != col).collect();
        let multiline = Multiline::Only { free: &free, key: col, is_key: |s| Email::parse(s).is_ok() };
        let name = file.name.clone();
        file.for_each_row(multiline, &mut Capped::new(0), |event, _| {
            if let RowEvent::Row(row) = event
                && let Ok(email) = Email::parse(row.field(col))
                && customers.contains(email.as_str())
            {
                put(&[RecordKind::Customer], email.to_string(), format!("{name}:{}", row.line));
            }
            None
        })?;
    }
    if let Some(spec) = sources.devices.as_ref().map(|d| &d.file).filter(|_| !devices.is_empty()) {
        let mut file = CsvFile::open(&spec.path, spec.delimiter, &sources.limits)?;
        let col = file.required(&spec.columns.identifier, "devices", "identifier")?;
        let free: Vec<usize> = (0..file.headers.len()).filter(|c| *c != col).collect();
        let is_key = |s: &str| DeviceIdent::parse(s.trim_matches('"')).is_ok();
        let multiline = Multiline::Only { free: &free, key: col, is_key };
        let name = file.name.clone();
        file.for_each_row(multiline, &mut Capped::new(0), |event, _| {
            if let RowEvent::Row(row) = event
                && let Ok(ident) = DeviceIdent::parse(row.field(col))
                && devices.contains(ident.as_str())
            {
                let at = format!("{name}:{}", row.line);
                put(&[RecordKind::Device, RecordKind::Properties], ident.to_string(), at);
            }
            None
        })?;
    }
    if let Some(spec) = sources.ownership.as_ref().filter(|_| !pairs.is_empty()) {
        let mut file = CsvFile::open(&spec.path, spec.delimiter, &sources.limits)?;
        let device_col = file.required(&spec.columns.device_identifier, "ownership", "device_identifier")?;
        let email_col = file.column(&spec.columns.customer_email, "ownership", "customer_email")?;
        let name = file.name.clone();
        file.for_each_row(Multiline::Never, &mut Capped::new(0), |event, _| {
            let RowEvent::Row(row) = event else { return None };
            let Ok(device) = DeviceIdent::parse(row.field(device_col)) else { return None };
            let customers = pairs.get(device.as_str())?;
            // A row keyed by customer_id alone names no email: it is the device's row.
            let email = row.cell(email_col).and_then(|e| Email::parse(e).ok());
            for c in customers.iter().filter(|c| email.as_ref().is_none_or(|e| e.as_str() == c.as_str())) {
                put(&[RecordKind::Assignment], format!("{device} -> {c}"), format!("{name}:{}", row.line));
            }
            None
        })?;
    }
    Ok(out)
}
