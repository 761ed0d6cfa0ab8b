//! Reading without writing: the whole snapshot into memory (sharing what equals the export), or
//! its version and size.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::Connection;
use rustc_hash::FxHashMap;

use super::schema::{SCHEMA_VERSION, open_read_only, read_version};
use crate::error::Error;
use crate::model::{
    CustomerRecord, Customers, DeviceIdent, DeviceRecord, Devices, Email, KeyMap, LOOKUP_BATCH, Owners, Properties,
    SameCustomers, SameDevices, SnapshotData, SnapshotVersion, SortedMap, StoredCustomer, StoredDevice, TelemetronId,
};

/// Reads the snapshot without writing anything. A missing file is an empty snapshot.
pub fn read(path: &Path) -> Result<SnapshotData, Error> {
    match open(path)? {
        Some(reading) => reading.all(Share::default()),
        None => Ok(SnapshotData::default()),
    }
}

/// What a read may share with the export: a row equal to the export's (key and record) is only
/// marked, by its index there ([`SameCustomers`], [`SameDevices`]), and one that differs takes
/// the export's key where it has it. On a day 2 nearly every row of the snapshot equals its
/// export row, so the snapshot costs little more than the rows that differ and the owners.
#[derive(Debug, Clone, Copy, Default)]
pub struct Share<'a> {
    pub customers: Option<&'a Customers>,
    pub devices: Option<&'a Devices>,
}

/// A snapshot opened for reading, in one read transaction: whatever is read through it is one
/// state of the file.
pub struct Reading {
    conn: Connection,
    path: PathBuf,
    version: SnapshotVersion,
}

/// Opens the snapshot for reading; `None` when there is none yet (no file, or one killed
/// before its schema committed).
pub fn open(path: &Path) -> Result<Option<Reading>, Error> {
    if !path.exists() {
        return Ok(None);
    }
    let (conn, version) = open_read_only(path)?;
    if version == 0 {
        // Created, but killed before its schema committed: nothing is in it yet.
        tracing::warn!(snapshot = %path.display(), "the snapshot has no schema yet (a first run was stopped early); read as empty");
        return Ok(None);
    }
    if version < SCHEMA_VERSION {
        // The data tables have not changed since version 1; the next writing command migrates.
        tracing::info!(
            snapshot = %path.display(),
            version,
            "the snapshot's schema is older than this build's {SCHEMA_VERSION}; the next writing command migrates it"
        );
    }
    Reading::begin(conn, path).map(Some)
}

impl Reading {
    fn begin(conn: Connection, path: &Path) -> Result<Reading, Error> {
        let err = |e: rusqlite::Error| Error::snapshot(path, e);
        conn.execute_batch("BEGIN").map_err(err)?;
        let version = read_version(&conn).map_err(err)?;
        Ok(Reading { conn, path: path.to_owned(), version })
    }

    /// A second reader of the same file, for another thread. A writer may commit between the
    /// two: compare their versions.
    pub fn another(&self) -> Result<Reading, Error> {
        let (conn, _) = open_read_only(&self.path)?;
        Reading::begin(conn, &self.path)
    }

    /// The version of the state this reader sees.
    pub fn version(&self) -> &SnapshotVersion {
        &self.version
    }

    /// Everything, on this thread.
    pub fn all(&self, share: Share<'_>) -> Result<SnapshotData, Error> {
        let (customers, same_customers) = self.customers(share.customers)?;
        let (devices, same_devices) = self.devices(share.devices)?;
        Ok(SnapshotData { customers, devices, version: self.version.clone(), same_customers, same_devices })
    }

    /// The customers; those equal to `share`'s only marked (see [`SameCustomers`]).
    pub fn customers(
        &self,
        share: Option<&Customers>,
    ) -> Result<(SortedMap<Email, StoredCustomer>, SameCustomers), Error> {
        customers(&self.conn, &self.path, share)
    }

    /// The devices with their owners; those equal to `share`'s only marked, with their owners.
    pub fn devices(&self, share: Option<&Devices>) -> Result<DevicesRead, Error> {
        devices(&self.conn, &self.path, share)
    }
}

pub(super) fn load(conn: &Connection, path: &Path) -> Result<SnapshotData, Error> {
    Ok(SnapshotData {
        version: read_version(conn).map_err(|e| Error::snapshot(path, e))?,
        customers: customers(conn, path, None)?.0,
        devices: devices(conn, path, None)?.0,
        ..SnapshotData::default()
    })
}

fn count(conn: &Connection, path: &Path, table: &str) -> Result<usize, Error> {
    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get::<_, i64>(0))
        .map(|n| n as usize)
        .map_err(|e| Error::snapshot(path, e))
}

// Every table is read in primary-key order (SQLite's BINARY collation is the byte order of
// `str`), so the maps are built by appending.

/// The customers; with `share`, those equal to the export's only marked.
fn customers(
    conn: &Connection,
    path: &Path,
    share: Option<&Customers>,
) -> Result<(SortedMap<Email, StoredCustomer>, SameCustomers), Error> {
    let err = |e: rusqlite::Error| Error::snapshot(path, e);
    let n = count(conn, path, "customers")?;
    let mut same = SameCustomers::new(share.map_or(0, |c| c.entries.len()));
    // With a share, only the rows that differ are held: a few, as a rule.
    let mut out = SortedMap::with_capacity(if share.is_some() { 0 } else { n });
    let mut stmt = conn
        .prepare("SELECT email, telemetron_id, name, phone, address, source_id FROM customers ORDER BY email")
        .map_err(err)?;
    let mut rows = stmt.query([]).map_err(err)?;
    // As the devices: a batch of rows at a time, looked up together (see `devices_read`).
    let mut batch: Vec<RowCopy<6>> = Vec::new();
    let mut found = Vec::with_capacity(LOOKUP_BATCH);
    loop {
        let n = next_batch(&mut rows, &mut batch, path, share.map(|c| &c.entries), &mut found)?;
        if n == 0 {
            break;
        }
        for (r, found) in batch[..n].iter().zip(found.drain(..)) {
            let fields = [r.get(2), r.get(3), r.get(4), r.get(5)];
            if let Some((i, _, entry)) = found
                && entry.record.is(fields)
            {
                same.mark(i);
                continue;
            }
            let record = CustomerRecord::new(fields[0], fields[1], fields[2], fields[3]);
            let email =
                found.map_or_else(|| Email::from_trusted(r.get(0).unwrap_or_default()), |(_, key, _)| key.clone());
            out.push(email, StoredCustomer { telemetron_id: r.get(1).map(TelemetronId::new), record });
        }
    }
    out.finish();
    Ok((out, same))
}

/// The devices with their owners; with `share`, those equal to the export's only marked, with
/// their owners. Falls back to a plain read in the cases a mark cannot be made (rows out of key
/// order, counts past `u32`).
fn devices(conn: &Connection, path: &Path, share: Option<&Devices>) -> Result<DevicesRead, Error> {
    match devices_read(conn, path, share)? {
        Some(read) => Ok(read),
        None => devices_read(conn, path, None).map(|r| r.unwrap_or_default()),
    }
}

/// The devices held in full, and those marked.
pub type DevicesRead = (SortedMap<DeviceIdent, StoredDevice>, SameDevices);

/// [`devices`]; `None` when `share` was given and could not be used.
fn devices_read(conn: &Connection, path: &Path, share: Option<&Devices>) -> Result<Option<DevicesRead>, Error> {
    let err = |e: rusqlite::Error| Error::snapshot(path, e);
    let n = count(conn, path, "devices")?;
    let mut out = SortedMap::with_capacity(if share.is_some() { 0 } else { n });
    let owners = if share.is_some() { count(conn, path, "assignments")? } else { 0 };
    let mut same = SameDevices::new(share.map_or(0, |d| d.entries.len()), n, owners);
    let mut types: FxHashMap<String, Arc<str>> = FxHashMap::default();
    let mut stmt = conn
        .prepare("SELECT identifier, telemetron_id, type, properties FROM devices ORDER BY identifier")
        .map_err(err)?;
    let mut rows = stmt.query([]).map_err(err)?;
    // The assignments in device order too, read in step with the devices: each device's owners
    // follow its row, sorted, without a search for the device. An assignment whose device has
    // no row still names a device Telemetron has: it gets one, with no type or properties.
    let mut assigned =
        conn.prepare("SELECT device, customer FROM assignments ORDER BY device, customer").map_err(err)?;
    let mut pairs = assigned.query([]).map_err(err)?;
    let mut pair = Pair::default();
    pair.next(&mut pairs, path)?;
    // The devices marked must come in key order: the last identifier read, to check it.
    let mut last = String::new();
    // Rows are copied out a batch at a time and looked up in the export together: the lookups
    // are independent, so their cache misses overlap instead of following one another.
    let mut batch: Vec<RowCopy<4>> = Vec::new();
    let mut found = Vec::with_capacity(LOOKUP_BATCH);
    loop {
        let n = next_batch(&mut rows, &mut batch, path, share.map(|d| &d.entries), &mut found)?;
        if n == 0 {
            break;
        }
        for (r, found) in batch[..n].iter().zip(found.drain(..)) {
            let (ident, t, props) = (r.get(0).unwrap_or_default(), r.get(2), r.get(3).unwrap_or("{}"));
            if share.is_some() {
                if *ident <= *last {
                    return Ok(None);
                }
                last.clear();
                last.push_str(ident);
            }
            while pair.is_before(ident) {
                pair.orphan(&mut pairs, path, &mut out)?;
            }
            let export = found.map(|(_, _, e)| &e.record);
            if let Some((i, _, e)) = found
                && e.record.device_type.as_deref() == t
                && e.record.properties.is_json(props)
            {
                if !same.push(i) {
                    return Ok(None);
                }
                let position = same.len() - 1;
                while pair.is(ident) {
                    if !same.push_owner(position, &pair.customer) {
                        return Ok(None);
                    }
                    pair.next(&mut pairs, path)?;
                }
                continue;
            }
            let device_type = match (t, export.and_then(|r| r.device_type.as_ref())) {
                (Some(t), Some(theirs)) if **theirs == *t => Some(theirs.clone()),
                (Some(t), _) => Some(match types.get(t) {
                    Some(a) => a.clone(),
                    None => types.entry(t.to_string()).or_insert_with(|| t.into()).clone(),
                }),
                (None, _) => None,
            };
            let properties = match export {
                Some(r) if r.properties.is_json(props) => r.properties.clone(),
                _ => Properties::from_canonical(props),
            };
            let mut device = StoredDevice {
                telemetron_id: r.get(1).map(TelemetronId::new),
                record: DeviceRecord { device_type, properties },
                owners: Owners::new(),
            };
            while pair.is(ident) {
                device.owners.push(Email::from_trusted(&pair.customer));
                pair.next(&mut pairs, path)?;
            }
            let ident = found.map_or_else(|| DeviceIdent::from_trusted(ident), |(_, k, _)| k.clone());
            out.push(ident, device);
        }
    }
    while pair.any {
        pair.orphan(&mut pairs, path, &mut out)?;
    }
    out.finish();
    if !same.finish() {
        return Ok(None);
    }
    Ok(Some((out, same)))
}

/// A row's `N` text columns copied out of SQLite (into buffers kept from one batch to the
/// next), so that a batch of rows can be looked up in the export together.
struct RowCopy<const N: usize>([Option<String>; N]);

impl<const N: usize> Default for RowCopy<N> {
    fn default() -> Self {
        RowCopy(std::array::from_fn(|_| None))
    }
}

impl<const N: usize> RowCopy<N> {
    fn fill(&mut self, row: &rusqlite::Row<'_>, path: &Path) -> Result<(), Error> {
        let err = |e: rusqlite::Error| Error::snapshot(path, e);
        for (i, into) in self.0.iter_mut().enumerate() {
            match row.get_ref(i).map_err(err)?.as_str_or_null().map_err(|e| err(e.into()))? {
                Some(s) => {
                    let buf = into.get_or_insert_with(String::new);
                    buf.clear();
                    buf.push_str(s);
                }
                None => *into = None,
            }
        }
        Ok(())
    }

    /// Column `i`; `None` for NULL.
    fn get(&self, i: usize) -> Option<&str> {
        self.0[i].as_deref()
    }
}

/// Reads up to [`LOOKUP_BATCH`] rows into `batch` (growing it as needed) and looks each one's
/// key (its first column) up in `export`, into `found`; how many rows.
fn next_batch<'m, const N: usize, K: std::hash::Hash + Eq + std::borrow::Borrow<str>, V>(
    rows: &mut rusqlite::Rows<'_>,
    batch: &mut Vec<RowCopy<N>>,
    path: &Path,
    export: Option<&'m KeyMap<K, V>>,
    found: &mut Vec<Option<(usize, &'m K, &'m V)>>,
) -> Result<usize, Error> {
    let mut n = 0;
    while n < LOOKUP_BATCH {
        let Some(row) = rows.next().map_err(|e| Error::snapshot(path, e))? else { break };
        if batch.len() == n {
            batch.push(RowCopy::default());
        }
        batch[n].fill(row, path)?;
        n += 1;
    }
    found.clear();
    found.extend(batch[..n].iter().map(|r| export.and_then(|m| m.get_full(r.get(0).unwrap_or_default()))));
    Ok(n)
}

/// The assignment a read of the devices is at: its device and customer, copied out of the row
/// (into buffers kept from one to the next) so that the devices' rows can be stepped beside.
#[derive(Default)]
struct Pair {
    any: bool,
    device: String,
    customer: String,
}

impl Pair {
    /// Steps to the next assignment (`any` is false after the last).
    fn next(&mut self, pairs: &mut rusqlite::Rows<'_>, path: &Path) -> Result<(), Error> {
        let err = |e: rusqlite::Error| Error::snapshot(path, e);
        let Some(row) = pairs.next().map_err(err)? else {
            self.any = false;
            return Ok(());
        };
        let text =
            |i: usize| -> Result<&str, Error> { row.get_ref(i).map_err(err)?.as_str().map_err(|e| err(e.into())) };
        self.device.clear();
        self.device.push_str(text(0)?);
        self.customer.clear();
        self.customer.push_str(text(1)?);
        self.any = true;
        Ok(())
    }

    /// Whether it is an assignment of `device`.
    fn is(&self, device: &str) -> bool {
        self.any && self.device == device
    }

    /// Whether it is an assignment of a device before `device` in key order.
    fn is_before(&self, device: &str) -> bool {
        self.any && *self.device < *device
    }

    /// Its device has no row: gives it one, with this assignment and the ones after it of the
    /// same device.
    fn orphan(
        &mut self,
        pairs: &mut rusqlite::Rows<'_>,
        path: &Path,
        out: &mut SortedMap<DeviceIdent, StoredDevice>,
    ) -> Result<(), Error> {
        let ident = DeviceIdent::from_trusted(&self.device);
        let mut orphan = StoredDevice::placeholder();
        while self.is(ident.as_str()) {
            orphan.owners.push(Email::from_trusted(&self.customer));
            self.next(pairs, path)?;
        }
        out.push(ident, orphan);
        Ok(())
    }
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

/// The records Telemetron refused on their own, as the snapshot counts them (none before the
/// schema had them: the next writing command migrates it).
pub fn refusals(path: &Path) -> Result<Vec<crate::model::Refused>, Error> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let (conn, version) = open_read_only(path)?;
    if version < 5 {
        return Ok(Vec::new());
    }
    let err = |e: rusqlite::Error| Error::snapshot(path, e);
    let mut st = conn
        .prepare("SELECT record, key, fingerprint, runs, last_run, message FROM refusals ORDER BY record, key")
        .map_err(err)?;
    let rows = st
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                crate::model::Refused {
                    record: crate::model::RecordKind::Customer,
                    key: r.get(1)?,
                    fingerprint: r.get(2)?,
                    runs: r.get(3)?,
                    last_run: r.get(4)?,
                    message: r.get(5)?,
                },
            ))
        })
        .map_err(err)?;
    let mut out = Vec::new();
    for row in rows {
        let (kind, mut refused) = row.map_err(err)?;
        // A kind this build does not know (a newer one wrote it) is left for that build.
        if let Some(k) = crate::model::RecordKind::parse(&kind) {
            refused.record = k;
            out.push(refused);
        }
    }
    Ok(out)
}
