//! Reading without writing: the whole snapshot into memory, or its version and size.

use std::path::Path;
use std::sync::Arc;

use rusqlite::Connection;
use rustc_hash::FxHashMap;

use super::schema::{SCHEMA_VERSION, open_read_only, read_version};
use crate::error::Error;
use crate::model::{
    CustomerRecord, DeviceIdent, DeviceRecord, Email, Owners, Properties, SnapshotData, SnapshotVersion, SortedMap,
    StoredCustomer, StoredDevice, TelemetronId,
};

/// Reads the snapshot without writing anything. A missing file is an empty snapshot.
pub fn read(path: &Path) -> Result<SnapshotData, Error> {
    if !path.exists() {
        return Ok(SnapshotData::default());
    }
    let (conn, version) = open_read_only(path)?;
    if version == 0 {
        // Created, but killed before its schema committed: nothing is in it yet.
        tracing::warn!(snapshot = %path.display(), "the snapshot has no schema yet (a first run was stopped early); read as empty");
        return Ok(SnapshotData::default());
    }
    if version < SCHEMA_VERSION {
        // The data tables have not changed since version 1; the next writing command migrates.
        tracing::info!(
            snapshot = %path.display(),
            version,
            "the snapshot's schema is older than this build's {SCHEMA_VERSION}; the next writing command migrates it"
        );
    }
    load(&conn, path)
}

pub(super) fn load(conn: &Connection, path: &Path) -> Result<SnapshotData, Error> {
    let err = |e: rusqlite::Error| Error::snapshot(path, e);
    let count = |table: &str| -> Result<usize, Error> {
        conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get::<_, i64>(0))
            .map(|n| n as usize)
            .map_err(err)
    };
    let mut data = SnapshotData {
        version: read_version(conn).map_err(err)?,
        customers: SortedMap::with_capacity(count("customers")?),
        devices: SortedMap::with_capacity(count("devices")?),
    };

    // Every table is read in primary-key order (SQLite's BINARY collation is the byte order of
    // `str`), so the maps are built by appending.
    let mut stmt = conn
        .prepare("SELECT email, telemetron_id, name, phone, address, source_id FROM customers ORDER BY email")
        .map_err(err)?;
    let mut rows = stmt.query([]).map_err(err)?;
    while let Some(row) = rows.next().map_err(err)? {
        let text = |i: usize| -> Result<Option<&str>, Error> {
            row.get_ref(i).map_err(err)?.as_str_or_null().map_err(|e| err(e.into()))
        };
        let email = Email::from_trusted(text(0)?.unwrap_or_default());
        let customer = StoredCustomer {
            telemetron_id: text(1)?.map(TelemetronId::new),
            record: CustomerRecord::new(text(2)?, text(3)?, text(4)?, text(5)?),
        };
        data.customers.push(email, customer);
    }
    data.customers.finish();

    let mut types: FxHashMap<String, Arc<str>> = FxHashMap::default();
    let mut stmt = conn
        .prepare("SELECT identifier, telemetron_id, type, properties FROM devices ORDER BY identifier")
        .map_err(err)?;
    let mut rows = stmt.query([]).map_err(err)?;
    while let Some(row) = rows.next().map_err(err)? {
        let s = |i: usize| -> Result<Option<&str>, Error> {
            row.get_ref(i).map_err(err)?.as_str_or_null().map_err(|e| err(e.into()))
        };
        let device_type = s(2)?.map(|t| match types.get(t) {
            Some(a) => a.clone(),
            None => types.entry(t.to_string()).or_insert_with(|| t.into()).clone(),
        });
        let device = StoredDevice {
            telemetron_id: s(1)?.map(TelemetronId::new),
            record: DeviceRecord { device_type, properties: Properties::from_canonical(s(3)?.unwrap_or("{}")) },
            owners: Owners::new(),
        };
        data.devices.push(DeviceIdent::from_trusted(s(0)?.unwrap_or_default()), device);
    }

    // Assignments in device order too, so a cursor walking the devices finds each one's device
    // without a search, and each device's owners arrive sorted. An assignment whose device has
    // no row still names a device Telemetron has: it gets one, with no type or properties.
    let mut stmt = conn.prepare("SELECT device, customer FROM assignments ORDER BY device, customer").map_err(err)?;
    let mut rows = stmt.query([]).map_err(err)?;
    let mut cursor = 0usize;
    let mut orphans: Vec<(DeviceIdent, StoredDevice)> = Vec::new();
    while let Some(row) = rows.next().map_err(err)? {
        let text =
            |i: usize| -> Result<&str, Error> { row.get_ref(i).map_err(err)?.as_str().map_err(|e| err(e.into())) };
        let (device, customer) = (text(0)?, Email::from_trusted(text(1)?));
        let devices = data.devices.as_slice();
        while cursor < devices.len() && devices[cursor].0.as_str() < device {
            cursor += 1;
        }
        if devices.get(cursor).is_some_and(|(d, _)| d.as_str() == device) {
            data.devices.value_at_mut(cursor).owners.push(customer);
        } else if let Some((_, orphan)) = orphans.last_mut().filter(|(d, _)| d.as_str() == device) {
            orphan.owners.push(customer);
        } else {
            let mut orphan = StoredDevice::placeholder();
            orphan.owners.push(customer);
            orphans.push((DeviceIdent::from_trusted(device), orphan));
        }
    }
    for (ident, orphan) in orphans {
        data.devices.push(ident, orphan);
    }
    data.devices.finish();
    Ok(data)
}

/// The snapshot's version and how many assignments it holds, without loading it. A missing
/// file is version 0 with none.
pub fn version_and_totals(path: &Path) -> Result<(SnapshotVersion, crate::model::Totals), Error> {
    if !path.exists() {
        return Ok(Default::default());
    }
    let (conn, version) = open_read_only(path)?;
    if version == 0 {
        return Ok(Default::default());
    }
    let err = |e: rusqlite::Error| Error::snapshot(path, e);
    let version = read_version(&conn).map_err(err)?;
    let count = |table: &str| -> Result<u64, Error> {
        let n: i64 = conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)).map_err(err)?;
        Ok(n as u64)
    };
    let totals = crate::model::Totals {
        customers: count("customers")?,
        devices: count("devices")?,
        assignments: count("assignments")?,
    };
    Ok((version, totals))
}
