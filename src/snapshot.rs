//! The snapshot: a SQLite file holding what Telemetron has been told — customers (with their
//! Telemetron ids when known), devices, assignments — and a table of runs.
//!
//! The only module that knows SQL. Reading gives a plain [`SnapshotData`] value that the loader
//! and the differ use without touching the database. `plan` reads through [`read`], which opens the
//! file read-only and treats a missing file as an empty snapshot; commands that write open a
//! [`Store`], which creates the file and runs the migrations. Every write transaction bumps a
//! generation counter, so a saved plan can tell whether the snapshot moved under it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::error::Error;
use crate::model::{
    CustomerRecord, DeviceIdent, DeviceRecord, Email, Owners, Properties, SnapshotData, SnapshotVersion, SortedMap,
    StoredCustomer, StoredDevice, TelemetronId,
};

/// Schema migrations, in order; `PRAGMA user_version` counts how many have run.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
     CREATE TABLE customers (
         email TEXT PRIMARY KEY,
         telemetron_id TEXT,
         name TEXT,
         phone TEXT,
         address TEXT,
         source_id TEXT
     ) WITHOUT ROWID;
     CREATE TABLE devices (
         identifier TEXT PRIMARY KEY,
         telemetron_id TEXT,
         type TEXT,
         properties TEXT NOT NULL DEFAULT '{}'
     ) WITHOUT ROWID;
     CREATE TABLE assignments (
         device TEXT NOT NULL,
         customer TEXT NOT NULL,
         PRIMARY KEY (device, customer)
     ) WITHOUT ROWID;
     CREATE TABLE runs (
         id INTEGER PRIMARY KEY AUTOINCREMENT,
         kind TEXT NOT NULL,
         started_at TEXT NOT NULL,
         finished_at TEXT,
         outcome TEXT,
         summary TEXT
     );",
    // 2: each apply's undo plan, built from the before-images of what it changes.
    "CREATE TABLE undo (run_id INTEGER PRIMARY KEY REFERENCES runs (id), plan TEXT NOT NULL);",
    // 3: the write-ahead journal: (device, customer) pairs an assign or unassign call was sent
    // for and whose outcome is not known yet (see ARCHITECTURE.md, "The journal of intents").
    "CREATE TABLE intents (
         id INTEGER PRIMARY KEY,
         run_id INTEGER NOT NULL,
         kind TEXT NOT NULL CHECK (kind IN ('assign', 'unassign')),
         device TEXT NOT NULL,
         customer TEXT NOT NULL
     );",
    // 4: an undo run names the run it undoes, so a second undo of it can be refused.
    "ALTER TABLE runs ADD COLUMN undoes INTEGER;",
];

/// How many runs' undo plans are kept unless configured otherwise (`--keep-undo`).
pub const KEEP_UNDO: u32 = 30;

/// One unsettled intent: a pair an assign or unassign call was sent for, outcome unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsettledIntent {
    pub id: i64,
    pub run_id: i64,
    pub assign: bool,
    pub device: DeviceIdent,
    pub customer: Email,
}

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// One past run, as `history` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub id: i64,
    pub kind: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub outcome: Option<String>,
    pub summary: Option<serde_json::Value>,
}

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

/// Opens an existing snapshot read-only; returns the connection and its schema version.
fn open_read_only(path: &Path) -> Result<(Connection, i64), Error> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| Error::snapshot(path, format!("cannot open: {e}")))?;
    let version = schema_version(&conn, path)?;
    Ok((conn, version))
}

fn schema_version(conn: &Connection, path: &Path) -> Result<i64, Error> {
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| Error::snapshot(path, format!("not a readable SQLite file ({e}); point --state at a snapshot")))?;
    if v > SCHEMA_VERSION {
        return Err(Error::snapshot(
            path,
            format!(
                "schema version {v} was written by a newer telemetron-sync (this one reads {SCHEMA_VERSION}); upgrade"
            ),
        ));
    }
    Ok(v)
}

fn load(conn: &Connection, path: &Path) -> Result<SnapshotData, Error> {
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

fn read_version(conn: &Connection) -> rusqlite::Result<SnapshotVersion> {
    let get = |key: &str| -> rusqlite::Result<Option<String>> {
        conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0)).optional()
    };
    Ok(SnapshotVersion {
        id: get("snapshot_id")?,
        generation: get("generation")?.and_then(|g| g.parse().ok()).unwrap_or(0),
        schema: conn.query_row("PRAGMA user_version", [], |r| r.get(0))?,
        missing: false,
    })
}

/// A snapshot opened for writing.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens the snapshot, creating it if missing, and runs pending migrations.
    pub fn open(path: &Path) -> Result<Store, Error> {
        Store::open_as(path, None)
    }

    /// Like [`open`](Self::open); a snapshot created now gets the identity `id` (the one a
    /// plan made while it was missing set aside for it) instead of a fresh one.
    pub fn open_as(path: &Path, id: Option<&str>) -> Result<Store, Error> {
        let (store, from) = Store::open_migrating(path, id)?;
        if let Some(from) = from {
            tracing::info!(snapshot = %path.display(), from, to = SCHEMA_VERSION, "snapshot schema migrated");
        }
        Ok(store)
    }

    /// Opens (creating and migrating) without saying so; returns the schema migrated from, for
    /// the caller to log once it can say which run did it.
    pub fn open_migrating(path: &Path, id: Option<&str>) -> Result<(Store, Option<i64>), Error> {
        let mut conn = Connection::open(path).map_err(|e| Error::snapshot(path, format!("cannot open: {e}")))?;
        let err = |e: rusqlite::Error| Error::snapshot(path, e);
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(err)?;
        let version = schema_version(&conn, path)?;
        if version < SCHEMA_VERSION {
            // Every pending migration in one transaction: a kill at any moment leaves the old
            // schema or the new one, never a half-made file that the next run cannot use.
            let tx = conn.transaction().map_err(err)?;
            for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
                tx.execute_batch(sql).map_err(err)?;
                if i == 0 {
                    let id = id.map_or_else(new_snapshot_id, str::to_string);
                    tx.execute("INSERT INTO meta (key, value) VALUES ('snapshot_id', ?1)", [id]).map_err(err)?;
                    tx.execute("INSERT INTO meta (key, value) VALUES ('generation', '0')", []).map_err(err)?;
                }
            }
            tx.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(err)?;
            tx.commit().map_err(err)?;
            return Ok((Store { conn, path: path.to_owned() }, Some(version)));
        }
        Ok((Store { conn, path: path.to_owned() }, None))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn load(&self) -> Result<SnapshotData, Error> {
        load(&self.conn, &self.path)
    }

    /// One customer as the snapshot has it.
    pub fn customer(&self, email: &Email) -> Result<Option<StoredCustomer>, Error> {
        self.conn
            .query_row(
                "SELECT telemetron_id, name, phone, address, source_id FROM customers WHERE email = ?1",
                [email.as_str()],
                |r| {
                    let t = |i| r.get::<_, Option<String>>(i);
                    Ok(StoredCustomer {
                        telemetron_id: t(0)?.as_deref().map(TelemetronId::new),
                        record: CustomerRecord::new(
                            t(1)?.as_deref(),
                            t(2)?.as_deref(),
                            t(3)?.as_deref(),
                            t(4)?.as_deref(),
                        ),
                    })
                },
            )
            .optional()
            .map_err(|e| Error::snapshot(&self.path, e))
    }

    /// Starts a write transaction; its changes land together on [`Writer::commit`].
    pub fn writer(&mut self) -> Result<Writer<'_>, Error> {
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(|e| Error::snapshot(&path, e))?;
        Ok(Writer { tx, path })
    }

    /// The intents no run settled, oldest first.
    pub fn unsettled_intents(&self) -> Result<Vec<UnsettledIntent>, Error> {
        let err = |e| Error::snapshot(&self.path, e);
        let mut stmt =
            self.conn.prepare("SELECT id, run_id, kind, device, customer FROM intents ORDER BY id").map_err(err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(UnsettledIntent {
                    id: r.get(0)?,
                    run_id: r.get(1)?,
                    assign: r.get::<_, String>(2)? == "assign",
                    device: DeviceIdent::from_trusted(&r.get::<_, String>(3)?),
                    customer: Email::from_trusted(&r.get::<_, String>(4)?),
                })
            })
            .map_err(err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(err)
    }

    /// Records the start of a run and returns its id. Runs that never got an outcome (killed, or unable to write
    /// it) are marked `interrupted` first: the caller holds the lock, so none is still going.
    pub fn begin_run(&mut self, kind: &str) -> Result<i64, Error> {
        let err = |e| Error::snapshot(&self.path, e);
        self.conn.execute("UPDATE runs SET outcome = 'interrupted' WHERE outcome IS NULL", []).map_err(err)?;
        self.conn
            .execute("INSERT INTO runs (kind, started_at) VALUES (?1, ?2)", params![kind, crate::time::now_rfc3339()])
            .map_err(err)?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Stores the undo plan of a run (compact JSON), and drops all but the newest `keep`
    /// (killed runs' plans included: they are stored before the first call).
    pub fn put_undo(&mut self, run_id: i64, plan: &serde_json::Value, keep: u32) -> Result<(), Error> {
        let err = |e| Error::snapshot(&self.path, e);
        self.conn
            .execute("INSERT OR REPLACE INTO undo (run_id, plan) VALUES (?1, ?2)", params![run_id, plan.to_string()])
            .map_err(err)?;
        self.conn
            .execute(
                "DELETE FROM undo WHERE run_id IN (SELECT run_id FROM undo ORDER BY run_id DESC LIMIT -1 OFFSET ?1)",
                [keep.max(1)],
            )
            .map_err(err)?;
        Ok(())
    }

    /// Marks run `id` as the undo of run `target`.
    pub fn set_undoes(&mut self, id: i64, target: i64) -> Result<(), Error> {
        self.conn
            .execute("UPDATE runs SET undoes = ?2 WHERE id = ?1", [id, target])
            .map_err(|e| Error::snapshot(&self.path, e))?;
        Ok(())
    }

    pub fn finish_run(&mut self, id: i64, outcome: &str, summary: &serde_json::Value) -> Result<(), Error> {
        self.conn
            .execute(
                "UPDATE runs SET finished_at = ?2, outcome = ?3, summary = ?4 WHERE id = ?1",
                params![id, crate::time::now_rfc3339(), outcome, summary.to_string()],
            )
            .map_err(|e| Error::snapshot(&self.path, e))?;
        Ok(())
    }
}

/// An exclusive hold on a snapshot, for the commands that call Telemetron and write what it
/// confirmed. An OS file lock on `STATE.lock`: released when the holder exits, however it exits
/// (`kill -9` included), so there is never a stale lock to clear by hand.
#[derive(Debug)]
pub struct Lock {
    _file: std::fs::File,
    path: PathBuf,
}

impl Lock {
    /// Takes the lock of the snapshot at `state`: the lock file sits beside the real file, so
    /// every path to one snapshot (a symlink, `./x` and `x`, `..` through another folder)
    /// takes the same lock.
    pub fn acquire(state: &Path) -> Result<Lock, Error> {
        match Self::try_acquire(state)? {
            Ok(lock) => Ok(lock),
            Err(holder) => Err(Error::InUse { path: state.to_owned(), holder }),
        }
    }

    /// Like [`acquire`](Self::acquire), but a lock another process holds is `Ok(Err(who))`.
    pub fn try_acquire(state: &Path) -> Result<Result<Lock, String>, Error> {
        use std::io::{Read, Seek, Write};
        let path = PathBuf::from(format!("{}.lock", canonical(state).display()));
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|source| Error::Io { what: "open the lock file", path: path.clone(), source })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let who = if holder.is_empty() { "another process".to_string() } else { holder.to_string() };
                return Ok(Err(who));
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(Error::Io { what: "lock", path, source });
            }
        }
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = writeln!(file, "process {} (since {})", std::process::id(), crate::time::now_rfc3339());
        let _ = file.flush();
        Ok(Ok(Lock { _file: file, path }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The file a snapshot path names, symlinks and `..` resolved; for a file not created yet, its
/// folder resolved and its name kept (a dangling symlink resolves to its target's name).
fn canonical(state: &Path) -> PathBuf {
    if let Ok(p) = std::fs::canonicalize(state) {
        return p;
    }
    let target = std::fs::read_link(state).map_or_else(
        |_| state.to_owned(),
        |t| if t.is_absolute() { t } else { state.parent().unwrap_or(Path::new("")).join(t) },
    );
    let (dir, name) = (target.parent().filter(|d| !d.as_os_str().is_empty()), target.file_name());
    match (std::fs::canonicalize(dir.unwrap_or(Path::new("."))), name) {
        (Ok(dir), Some(name)) => dir.join(name),
        _ => target,
    }
}

/// The snapshot's version and how many assignments it holds, without loading it. A missing
/// file is version 0 with none.
pub fn version_and_totals(path: &Path) -> Result<(SnapshotVersion, crate::guard::Totals), Error> {
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
    let totals = crate::guard::Totals {
        customers: count("customers")?,
        devices: count("devices")?,
        assignments: count("assignments")?,
    };
    Ok((version, totals))
}

/// The run that undid run `target` (finished `ok` or `partial`), if one did.
pub fn undone_by(path: &Path, target: i64) -> Result<Option<i64>, Error> {
    if !path.exists() {
        return Ok(None);
    }
    let (conn, version) = open_read_only(path)?;
    if version < 4 {
        return Ok(None);
    }
    conn.query_row(
        "SELECT id FROM runs WHERE undoes = ?1 AND outcome IN ('ok', 'partial') ORDER BY id LIMIT 1",
        [target],
        |r| r.get(0),
    )
    .optional()
    .map_err(|e| Error::snapshot(path, e))
}

/// A run's kind and its undo plan (`Null` when the run has none), read without writing.
pub fn undo_plan(path: &Path, run_id: i64) -> Result<Option<(String, serde_json::Value)>, Error> {
    if !path.exists() {
        return Ok(None);
    }
    let (conn, version) = open_read_only(path)?;
    if version < SCHEMA_VERSION {
        return Ok(conn
            .query_row("SELECT kind FROM runs WHERE id = ?1", [run_id], |r| r.get::<_, String>(0))
            .optional()
            .map_err(|e| Error::snapshot(path, e))?
            .map(|kind| (kind, serde_json::Value::Null)));
    }
    let row: Option<(String, Option<String>)> = conn
        .query_row(
            "SELECT runs.kind, undo.plan FROM runs LEFT JOIN undo ON undo.run_id = runs.id WHERE runs.id = ?1",
            [run_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(|e| Error::snapshot(path, e))?;
    Ok(row.map(|(kind, plan)| (kind, plan.and_then(|p| serde_json::from_str(&p).ok()).unwrap_or_default())))
}

/// Runs recorded in the snapshot, newest first. A missing file has none.
pub fn runs(path: &Path, limit: usize) -> Result<Vec<RunRecord>, Error> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let (conn, _) = open_read_only(path)?;
    let err = |e: rusqlite::Error| Error::snapshot(path, e);
    let mut stmt = conn
        .prepare("SELECT id, kind, started_at, finished_at, outcome, summary FROM runs ORDER BY id DESC LIMIT ?1")
        .map_err(err)?;
    let rows = stmt
        .query_map([limit as i64], |r| {
            let summary: Option<String> = r.get(5)?;
            Ok(RunRecord {
                id: r.get(0)?,
                kind: r.get(1)?,
                started_at: r.get(2)?,
                finished_at: r.get(3)?,
                outcome: r.get(4)?,
                summary: summary.and_then(|s| serde_json::from_str(&s).ok()),
            })
        })
        .map_err(err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(err)
}

/// A write transaction on the snapshot. Dropped without `commit`, it writes nothing.
pub struct Writer<'a> {
    tx: rusqlite::Transaction<'a>,
    path: PathBuf,
}

impl Writer<'_> {
    fn err(&self, e: rusqlite::Error) -> Error {
        Error::snapshot(&self.path, e)
    }

    /// Runs one statement of the transaction (prepared once, then cached).
    fn exec(&mut self, sql: &str, params: impl rusqlite::Params) -> Result<(), Error> {
        self.tx.prepare_cached(sql).and_then(|mut s| s.execute(params)).map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Records a customer as Telemetron now has it. A `None` id keeps the id already stored.
    pub fn put_customer(
        &mut self,
        email: &Email,
        id: Option<&TelemetronId>,
        record: &CustomerRecord,
    ) -> Result<(), Error> {
        self.exec(
            "INSERT INTO customers (email, telemetron_id, name, phone, address, source_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (email) DO UPDATE SET
                     telemetron_id = coalesce(excluded.telemetron_id, telemetron_id),
                     name = excluded.name, phone = excluded.phone, address = excluded.address,
                     source_id = coalesce(excluded.source_id, source_id)",
            params![
                email.as_str(),
                id.map(TelemetronId::as_str),
                record.name(),
                record.phone(),
                record.address(),
                record.source_id(),
            ],
        )
    }

    /// Records a device as Telemetron now has it. A `None` id keeps the id already stored.
    pub fn put_device(
        &mut self,
        ident: &DeviceIdent,
        id: Option<&TelemetronId>,
        record: &DeviceRecord,
    ) -> Result<(), Error> {
        self.exec(
            "INSERT INTO devices (identifier, telemetron_id, type, properties) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (identifier) DO UPDATE SET
                     telemetron_id = coalesce(excluded.telemetron_id, telemetron_id),
                     type = excluded.type, properties = excluded.properties",
            params![
                ident.as_str(),
                id.map(TelemetronId::as_str),
                record.device_type.as_deref(),
                record.properties.as_json(),
            ],
        )
    }

    /// Records a device's new type, keeping the rest of its row.
    pub fn set_device_type(&mut self, ident: &DeviceIdent, device_type: &str) -> Result<(), Error> {
        self.exec(
            "INSERT INTO devices (identifier, type) VALUES (?1, ?2)
                 ON CONFLICT (identifier) DO UPDATE SET type = excluded.type",
            params![ident.as_str(), device_type],
        )
    }

    /// Records a device's new (complete) properties, keeping the rest of its row.
    pub fn set_device_properties(&mut self, ident: &DeviceIdent, properties: &Properties) -> Result<(), Error> {
        self.exec(
            "INSERT INTO devices (identifier, properties) VALUES (?1, ?2)
                 ON CONFLICT (identifier) DO UPDATE SET properties = excluded.properties",
            params![ident.as_str(), properties.as_json()],
        )
    }

    /// Records that Telemetron has this customer, keeping what the snapshot already says of it
    /// (only a missing Telemetron id is filled in).
    pub fn ensure_customer(&mut self, email: &Email, id: Option<&TelemetronId>) -> Result<(), Error> {
        self.exec(
            "INSERT INTO customers (email, telemetron_id) VALUES (?1, ?2)
                 ON CONFLICT (email) DO UPDATE SET telemetron_id = coalesce(telemetron_id, excluded.telemetron_id)",
            params![email.as_str(), id.map(TelemetronId::as_str)],
        )
    }

    /// Records that Telemetron has this device, keeping what the snapshot already says of it.
    pub fn ensure_device(&mut self, ident: &DeviceIdent, device_type: Option<&str>) -> Result<(), Error> {
        self.exec(
            "INSERT INTO devices (identifier, type) VALUES (?1, ?2)
                 ON CONFLICT (identifier) DO UPDATE SET type = coalesce(type, excluded.type)",
            params![ident.as_str(), device_type],
        )
    }

    /// Forgets a customer and its assignments (Telemetron does not have it: the next plan
    /// creates it again).
    pub fn remove_customer(&mut self, email: &Email) -> Result<(), Error> {
        for sql in ["DELETE FROM assignments WHERE customer = ?1", "DELETE FROM customers WHERE email = ?1"] {
            self.exec(sql, [email.as_str()])?;
        }
        Ok(())
    }

    /// Forgets a device and its assignments (Telemetron does not have it: the next plan
    /// creates it again, with the export's type).
    pub fn remove_device(&mut self, ident: &DeviceIdent) -> Result<(), Error> {
        for sql in ["DELETE FROM assignments WHERE device = ?1", "DELETE FROM devices WHERE identifier = ?1"] {
            self.exec(sql, [ident.as_str()])?;
        }
        Ok(())
    }

    pub fn assign(&mut self, device: &DeviceIdent, customer: &Email) -> Result<(), Error> {
        self.exec(
            "INSERT OR IGNORE INTO assignments (device, customer) VALUES (?1, ?2)",
            params![device.as_str(), customer.as_str()],
        )
    }

    pub fn unassign(&mut self, device: &DeviceIdent, customer: &Email) -> Result<(), Error> {
        self.exec(
            "DELETE FROM assignments WHERE device = ?1 AND customer = ?2",
            params![device.as_str(), customer.as_str()],
        )
    }

    /// Journals that a call for (device, customer) is about to be sent; returns its id.
    pub fn add_intent(
        &mut self,
        run_id: i64,
        assign: bool,
        device: &DeviceIdent,
        customer: &Email,
    ) -> Result<i64, Error> {
        self.exec(
            "INSERT INTO intents (run_id, kind, device, customer) VALUES (?1, ?2, ?3, ?4)",
            params![run_id, if assign { "assign" } else { "unassign" }, device.as_str(), customer.as_str()],
        )?;
        Ok(self.tx.last_insert_rowid())
    }

    /// The outcome of these intents is known (and recorded in this transaction or before).
    pub fn settle_intent(&mut self, id: i64) -> Result<(), Error> {
        self.exec("DELETE FROM intents WHERE id = ?1", [id])
    }

    /// Commits everything written, bumping the generation.
    pub fn commit(self) -> Result<(), Error> {
        let path = self.path.clone();
        let err = |e| Error::snapshot(&path, e);
        self.tx
            .execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'", [])
            .map_err(err)?;
        self.tx.commit().map_err(err)
    }
}

pub fn new_snapshot_id() -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(crate::time::now_rfc3339().as_bytes());
    h.update(std::process::id().to_le_bytes());
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    h.update(nanos.to_le_bytes());
    h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str) -> CustomerRecord {
        CustomerRecord::new(Some(name), None, None, None)
    }

    #[test]
    fn missing_file_is_empty_and_not_created() {
        let dir = tempdir();
        let path = dir.join("none.db");
        let data = read(&path).unwrap();
        assert!(data.customers.is_empty() && data.version.id.is_none());
        assert!(!path.exists());
    }

    #[test]
    fn assignments_find_their_devices_and_devices_without_rows_get_one() {
        let dir = tempdir();
        let path = dir.join("s.db");
        let mut store = Store::open(&path).unwrap();
        let (a, b) = (Email::parse("a@b.co").unwrap(), Email::parse("b@b.co").unwrap());
        let dev = |s: &str| DeviceIdent::parse(s).unwrap();
        let typed = DeviceRecord { device_type: Some("t".into()), properties: Properties::empty() };
        let mut w = store.writer().unwrap();
        // Rows for B and D only; assignments of A (before every row), C (between) and E (after).
        for d in ["D", "B"] {
            w.put_device(&dev(d), None, &typed).unwrap();
        }
        for (d, e) in [("E", &a), ("C", &b), ("A", &a), ("B", &b), ("C", &a), ("B", &a), ("A", &b)] {
            w.assign(&dev(d), e).unwrap();
        }
        w.commit().unwrap();
        drop(store);
        let data = read(&path).unwrap();
        let keys: Vec<&str> = data.devices.keys().map(DeviceIdent::as_str).collect();
        assert_eq!(keys, ["A", "B", "C", "D", "E"]);
        for (d, owners) in
            [("A", vec![&a, &b]), ("B", vec![&a, &b]), ("C", vec![&a, &b]), ("D", vec![]), ("E", vec![&a])]
        {
            let got: Vec<&Email> = data.owners_of(&dev(d)).iter().collect();
            assert_eq!(got, owners, "owners of {d}");
        }
        assert!(data.devices[&dev("A")].record.device_type.is_none(), "a device without a row has no type");
        assert_eq!(data.devices[&dev("B")].record, typed);
        assert_eq!(data.assignment_count(), 7);
    }

    #[test]
    fn writes_round_trip_and_bump_the_generation() {
        let dir = tempdir();
        let path = dir.join("s.db");
        let mut store = Store::open(&path).unwrap();
        let e = Email::parse("a@b.co").unwrap();
        let d = DeviceIdent::parse("SN1").unwrap();
        let mut w = store.writer().unwrap();
        w.put_customer(&e, Some(&TelemetronId::new("cust_1")), &rec("A")).unwrap();
        w.put_device(&d, None, &DeviceRecord { device_type: Some("t".into()), properties: Properties::empty() })
            .unwrap();
        w.assign(&d, &e).unwrap();
        w.commit().unwrap();
        let mut w = store.writer().unwrap();
        // A later write without an id keeps the stored one.
        w.put_customer(&e, None, &rec("B")).unwrap();
        w.commit().unwrap();
        drop(store);
        let data = read(&path).unwrap();
        let c = &data.customers[&e];
        assert_eq!(c.telemetron_id.as_ref().unwrap().as_str(), "cust_1");
        assert_eq!(c.record.name(), Some("B"));
        assert_eq!(data.owners_of(&d), &[e]);
        assert_eq!(data.version.generation, 2);
        assert_eq!(data.version.schema, SCHEMA_VERSION);
        assert!(data.version.id.is_some());
    }

    #[test]
    fn assignments_find_their_devices_in_order_and_keep_those_without_a_row() {
        let dir = tempdir();
        let path = dir.join("s.db");
        let mut store = Store::open(&path).unwrap();
        let d = |s: &str| DeviceIdent::parse(s).unwrap();
        let e = |s: &str| Email::parse(s).unwrap();
        let mut w = store.writer().unwrap();
        for id in ["B", "D"] {
            w.put_device(
                &d(id),
                None,
                &DeviceRecord { device_type: Some("t".into()), properties: Properties::empty() },
            )
            .unwrap();
        }
        for (dev, who) in [("A", "a@x.io"), ("B", "b@x.io"), ("B", "c@x.io"), ("C", "c@x.io"), ("D", "d@x.io")] {
            w.assign(&d(dev), &e(who)).unwrap();
        }
        w.commit().unwrap();
        drop(store);
        let data = read(&path).unwrap();
        assert_eq!(data.owners_of(&d("A")), &[e("a@x.io")]);
        assert_eq!(data.owners_of(&d("B")), &[e("b@x.io"), e("c@x.io")]);
        assert_eq!(data.owners_of(&d("C")), &[e("c@x.io")]);
        assert_eq!(data.owners_of(&d("D")), &[e("d@x.io")]);
        assert_eq!(data.devices[&d("B")].record.device_type.as_deref(), Some("t"));
        assert_eq!(data.devices[&d("C")].record.device_type, None, "a placeholder for a device without a row");
        assert_eq!(data.assignment_count(), 5);
    }

    fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tsync-snap-{}-{}", std::process::id(), new_snapshot_id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Issue 11, case 7: the same snapshot through a symlink, a `..` path, or a symlink made
    /// before the file exists is locked once.
    #[test]
    fn every_path_to_one_snapshot_takes_the_same_lock() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.db");
        let early = dir.path().join("early.db");
        std::os::unix::fs::symlink(&state, &early).unwrap();
        let held = Lock::acquire(&early).unwrap();
        assert!(Lock::acquire(&state).is_err(), "a symlink made before the file exists");
        drop(held);
        std::fs::write(&state, b"").unwrap();
        let link = dir.path().join("link.db");
        std::os::unix::fs::symlink(&state, &link).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let dotted = dir.path().join("sub/../state.db");
        let held = Lock::acquire(&state).unwrap();
        for other in [&link, &dotted] {
            let err = Lock::acquire(other).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains("is in use by process"), "{}: {err}", other.display());
        }
        assert_eq!(held.path(), dir.path().canonicalize().unwrap().join("state.db.lock"));
    }
}
