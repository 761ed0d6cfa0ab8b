//! The snapshot opened for writing: creation and migration, the runs table, undo plans, the
//! journal's intents.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

use super::Writer;
use super::read::load;
use super::schema::{MIGRATIONS, SCHEMA_VERSION, new_snapshot_id, schema_version, sealed};
use super::{integrity, pages};
use crate::error::Error;
use crate::model::{CustomerRecord, DeviceIdent, Email, SnapshotData, StoredCustomer, TelemetronId};

/// How long a writer waits for readers to let go of the file.
const WRITER_BUSY: std::time::Duration = std::time::Duration::from_secs(5);

/// How long a bulk write and a reader wait for each other: in the rollback journal a reader
/// keeps the writer from writing and the writer keeps readers out (a minute for 10 M devices).
pub(super) const BULK_BUSY: std::time::Duration = std::time::Duration::from_secs(600);

/// Opens the snapshot for writing, with the settings every writer uses.
fn connect(path: &Path) -> Result<Connection, Error> {
    let conn = Connection::open(path).map_err(|e| Error::snapshot(path, format!("cannot open: {e}")))?;
    let err = |e: rusqlite::Error| Error::snapshot(path, e);
    conn.busy_timeout(WRITER_BUSY).map_err(err)?;
    // Takes effect only on a file that has no pages yet: a new snapshot. A quarter as many
    // pages to write and balance in a bulk write (`baseline` at 10 M: 37.3 -> 35.9 s).
    conn.pragma_update(None, "page_size", 16384).map_err(err)?;
    let pages_now: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0)).map_err(err)?;
    if pages_now == 0 {
        // A new file: its pages have room for checksums from the first.
        pages::reserve(&conn).map_err(err)?;
    }
    conn.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
    conn.pragma_update(None, "synchronous", "NORMAL").map_err(err)?;
    Ok(conn)
}

/// Gives a snapshot from before page checksums its checksums: copied whole (`VACUUM INTO`) into
/// a new private file beside it whose pages have room for them, which then takes its place. A
/// kill at any moment leaves the old file or the new one. Once, at the first write of a newer
/// build; the caller holds the lock.
fn seal(conn: Connection, path: &Path) -> Result<Connection, Error> {
    let err = |e: rusqlite::Error| Error::snapshot(path, e);
    // Out of WAL first: a WAL left beside the file would be read into the new one.
    let mode: String = conn.query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0)).map_err(err)?;
    if !mode.eq_ignore_ascii_case("delete") {
        return Err(Error::snapshot(
            path,
            "another process has the snapshot open, and its pages are being given checksums (once, by this version); run again when it is done",
        ));
    }
    let tmp = crate::files::temp_beside(path);
    let copied = (|| {
        crate::private::create_new(&tmp).map_err(|e| Error::snapshot(&tmp, format!("cannot create: {e}")))?;
        pages::seal_from_the_start(&tmp);
        pages::reserve(&conn).map_err(err)?;
        let to = tmp.to_str().ok_or_else(|| Error::snapshot(path, "the snapshot's folder is not valid UTF-8"))?;
        conn.execute("VACUUM INTO ?1", [to]).map_err(err)?;
        match pages::scan(&tmp) {
            Ok(pages::Scan::Intact { .. }) => {}
            other => {
                return Err(Error::snapshot(
                    path,
                    format!("its copy with page checksums did not check out ({other:?})"),
                ));
            }
        }
        std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| Error::snapshot(&tmp, e))?;
        drop(conn);
        std::fs::rename(&tmp, path).map_err(|e| Error::snapshot(path, format!("cannot replace: {e}")))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
        }
        Ok(())
    })();
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    tracing::info!(snapshot = %path.display(), "the snapshot's pages now carry checksums");
    connect(path)
}

/// What became of one record in a run, for the sync log (see `snapshot::run_log`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LogEntry {
    /// The kind of change (`customers_created`, `assignments_added`, ...).
    pub kind: String,
    /// The record: an email, an identifier, or `device -> customer`.
    pub key: String,
    /// `confirmed` (a removal: what leaves no row), `refused` (by Telemetron, on its own),
    /// `failed` (no answer that confirms it, after the retries), `not_sent` (what it waited on
    /// failed), `quarantined` (held back), `settled` (an unknown outcome, read back),
    /// `not_found` (Telemetron does not have it: forgotten), `read_back` (`verify --heal`).
    pub outcome: String,
    /// Telemetron's message, or why it was held back.
    pub message: String,
    /// The export's `file:line` it comes from, when one gives it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// One unsettled intent: a pair an assign or unassign call was sent for, outcome unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsettledIntent {
    pub id: i64,
    pub run_id: i64,
    pub assign: bool,
    pub device: DeviceIdent,
    pub customer: Email,
}

/// A snapshot opened for writing.
pub struct Store {
    pub(super) conn: Connection,
    pub(super) path: PathBuf,
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
        pages::register();
        if !path.exists() {
            if let Ok(target) = std::fs::read_link(path) {
                // SQLite would follow it and create the target with the umask's mode.
                return Err(Error::snapshot(
                    path,
                    format!(
                        "is a symbolic link to {}, which does not exist; nothing was created. Give the real path of the snapshot, or remove the link",
                        target.display()
                    ),
                ));
            }
            // Made here, not by SQLite, so that it is private from its first byte (SQLite
            // gives the -wal and -shm files the same mode). Empty is a valid database.
            match crate::private::create_new(path) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::snapshot(path, format!("cannot create: {e}"))),
            }
        } else {
            crate::private::warn_if_snapshot_open(path);
            // Every page's checksum, before SQLite opens the file: nothing is written into a
            // damaged snapshot, not even this run's record.
            integrity::before_writing(path)?;
        }
        // Nothing in it yet (made now, or by a run stopped before its first commit): every
        // page it gets is sealed, whatever order SQLite writes them in.
        let wal = PathBuf::from(format!("{}-wal", path.display()));
        if std::fs::metadata(path).is_ok_and(|m| m.len() == 0) && std::fs::metadata(&wal).map_or(true, |m| m.len() == 0)
        {
            pages::seal_from_the_start(path);
        }
        let mut conn = connect(path)?;
        let err = |e: rusqlite::Error| Error::snapshot(path, e);
        let version = schema_version(&conn, path)?;
        if !sealed(&conn, path, version)? {
            conn = seal(conn, path)?;
        }
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
        Ok(Writer { tx, path, refusals: None, run: None, seq: None, confirms: "confirmed" })
    }

    /// Runs `write` in one transaction through SQLite's rollback journal instead of the WAL,
    /// then commits it: for writes of millions of rows (`baseline`). The WAL writes each page
    /// twice (to the WAL, then back by the checkpoint) and looks every page read up in its
    /// index; the rollback journal writes a new page once and journals only the pages that
    /// existed before (at 10 M devices: 92 s against 61 s for 26.5 M rows). Crash-safe the
    /// same way: a kill leaves a hot journal that the next opener rolls back (a read-only one
    /// too, see `schema::open_read_only`). Readers wait while the writer holds the file,
    /// instead of reading the state before it: [`BULK_BUSY`] on both sides. Another connection
    /// open when it starts keeps the WAL.
    pub fn write_in_bulk<T>(&mut self, write: impl FnOnce(&mut Writer<'_>) -> Result<T, Error>) -> Result<T, Error> {
        let rollback = self.set_journal_mode("delete");
        if rollback {
            self.conn.busy_timeout(BULK_BUSY).map_err(|e| Error::snapshot(&self.path, e))?;
        }
        let written = self.writer().and_then(|mut w| {
            let t = write(&mut w)?;
            w.commit()?;
            Ok(t)
        });
        if rollback {
            // Not an error if it stays: every opener for writing sets the WAL again.
            self.set_journal_mode("wal");
            let _ = self.conn.busy_timeout(WRITER_BUSY);
        }
        written
    }

    /// Whether the journal is now in `mode`.
    fn set_journal_mode(&self, mode: &str) -> bool {
        match self.conn.pragma_update_and_check(None, "journal_mode", mode, |r| r.get::<_, String>(0)) {
            Ok(now) if now.eq_ignore_ascii_case(mode) => true,
            Ok(now) => {
                tracing::debug!(snapshot = %self.path.display(), now, mode, "journal mode kept (another connection is open)");
                false
            }
            Err(e) => {
                tracing::debug!(snapshot = %self.path.display(), error = %e, mode, "journal mode kept");
                false
            }
        }
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
    /// Stores the undo plan of run `run_id`, keeping the last `keep` runs'. Stored as
    /// gzip-compressed JSON: a migration's names every create it cannot undo, tens of megabytes
    /// of JSON per hundred thousand devices, a tenth of that compressed; [`super::undo_plan`]
    /// also reads the plain JSON of earlier versions.
    pub fn put_undo(&mut self, run_id: i64, plan: &impl serde::Serialize, keep: u32) -> Result<(), Error> {
        let err = |e| Error::snapshot(&self.path, e);
        let unwritable =
            |e: &dyn std::fmt::Display| Error::snapshot(&self.path, format!("cannot write the undo plan: {e}"));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        serde_json::to_writer(std::io::BufWriter::with_capacity(1 << 16, &mut gz), plan).map_err(|e| unwritable(&e))?;
        let blob = gz.finish().map_err(|e| unwritable(&e))?;
        self.conn
            .execute("INSERT OR REPLACE INTO undo (run_id, plan) VALUES (?1, ?2)", params![run_id, blob])
            .map_err(err)?;
        self.conn
            .execute(
                "DELETE FROM undo WHERE run_id IN (SELECT run_id FROM undo ORDER BY run_id DESC LIMIT -1 OFFSET ?1)",
                [keep.max(1)],
            )
            .map_err(err)?;
        Ok(())
    }

    /// Adds `entries` to run `run_id`'s part of the sync log, in one transaction, and keeps the
    /// log and the undo plans of the newest `keep` runs that have them ([`Store::keep_runs`]).
    pub fn log_outcomes(&mut self, run_id: i64, entries: &[LogEntry], keep: u32) -> Result<(), Error> {
        let path = self.path.clone();
        let err = |e| Error::snapshot(&path, e);
        let tx = self.conn.transaction().map_err(err)?;
        {
            let next: i64 = tx
                .query_row("SELECT coalesce(max(seq), 0) FROM sync_log WHERE run_id = ?1", [run_id], |r| r.get(0))
                .map_err(err)?;
            let mut put = tx
                .prepare(
                    "INSERT INTO sync_log (run_id, seq, kind, key, outcome, message, source, at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(err)?;
            let at = crate::time::now_rfc3339();
            for (i, e) in entries.iter().enumerate() {
                put.execute(params![run_id, next + 1 + i as i64, e.kind, e.key, e.outcome, e.message, e.source, at])
                    .map_err(err)?;
            }
            keep_runs(&tx, keep).map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    /// Lets go of the sync log and the undo plans of all but the newest `keep` runs that have
    /// them: a stream of events that all went through does not push last night's log out.
    pub fn keep_runs(&mut self, keep: u32) -> Result<(), Error> {
        keep_runs(&self.conn, keep).map_err(|e| Error::snapshot(&self.path, e))
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

    /// Keeps the rate `--rate auto` settled at, for the next run to start near it. Not a write
    /// of what Telemetron holds: the generation stays.
    pub fn set_auto_rate(&mut self, rate: f64) -> Result<(), Error> {
        self.conn
            .execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('auto_rate', ?1)", [rate.to_string()])
            .map_err(|e| Error::snapshot(&self.path, e))?;
        Ok(())
    }

    /// The rate an earlier `--rate auto` run settled at.
    pub fn auto_rate(&self) -> Result<Option<f64>, Error> {
        super::runs::auto_rate_in(&self.conn, &self.path)
    }
}

/// [`Store::keep_runs`] on an open connection or transaction.
fn keep_runs(conn: &Connection, keep: u32) -> rusqlite::Result<()> {
    // The oldest run kept, found by one seek per run kept: a `DISTINCT` over the log would
    // read all of it after every run (0.13 s per event beside the 1.2 M removals an undo of a
    // migration logs; the seeks, 0.1 ms).
    let mut oldest = i64::MAX;
    let mut before = conn.prepare_cached("SELECT max(run_id) FROM sync_log WHERE run_id < ?1")?;
    for _ in 0..keep.max(1) {
        match before.query_row([oldest], |r| r.get::<_, Option<i64>>(0))? {
            Some(run) => oldest = run,
            None => return prune_undo(conn, keep),
        }
    }
    conn.execute("DELETE FROM sync_log WHERE run_id < ?1", [oldest])?;
    prune_undo(conn, keep)
}

/// Drops all but the newest `keep` undo plans.
fn prune_undo(conn: &Connection, keep: u32) -> rusqlite::Result<()> {
    conn.execute(
        "DELETE FROM undo WHERE run_id IN (SELECT run_id FROM undo ORDER BY run_id DESC LIMIT -1 OFFSET ?1)",
        [keep.max(1)],
    )?;
    Ok(())
}
