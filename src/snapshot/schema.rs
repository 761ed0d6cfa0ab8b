//! The schema: its migrations, its version, and the snapshot's identity.

use std::path::Path;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::error::Error;
use crate::model::SnapshotVersion;

/// Schema migrations, in order; `PRAGMA user_version` counts how many have run.
pub(super) const MIGRATIONS: &[&str] = &[
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
    // 5: records Telemetron refused on their own, with how many runs in a row refused the same
    // content (the quarantine; see `plan::quarantine`). A confirmation of the record clears it.
    "CREATE TABLE refusals (
         record TEXT NOT NULL,
         key TEXT NOT NULL,
         fingerprint TEXT NOT NULL,
         runs INTEGER NOT NULL,
         last_run INTEGER NOT NULL,
         message TEXT NOT NULL,
         PRIMARY KEY (record, key)
     ) WITHOUT ROWID;",
    // 6: every page carries a checksum (`pages`); an older file is sealed (copied into a file
    // with room for them) before this runs. From here on a file without room is damaged.
    "INSERT OR REPLACE INTO meta (key, value) VALUES ('pages', 'sealed');",
    // 7: the sync log: what became of each record a run did not get confirmed (refused, failed,
    // quarantined), with Telemetron's message and the export row; `history RUN` reads it. Kept
    // for as many runs as the undo plans.
    "CREATE TABLE sync_log (
         run_id INTEGER NOT NULL,
         seq INTEGER NOT NULL,
         kind TEXT NOT NULL,
         key TEXT NOT NULL,
         outcome TEXT NOT NULL,
         message TEXT NOT NULL,
         source TEXT,
         PRIMARY KEY (run_id, seq)
     ) WITHOUT ROWID;",
    // 8: each record row names the run whose confirmation (or baseline) last wrote it; the
    // sync log also holds what leaves no row (a removal, a record Telemetron no longer has, a
    // call settled by reading back), with the time of each entry. `explain` reads both.
    "ALTER TABLE customers ADD COLUMN confirmed_by INTEGER;
     ALTER TABLE devices ADD COLUMN confirmed_by INTEGER;
     ALTER TABLE assignments ADD COLUMN confirmed_by INTEGER;
     ALTER TABLE sync_log ADD COLUMN at TEXT;",
];

/// The schema version from which every page of the file is sealed.
pub(super) const SEALED_SINCE: i64 = 6;

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Opens an existing snapshot read-only; returns the connection and its schema version.
pub(super) fn open_read_only(path: &Path) -> Result<(Connection, i64), Error> {
    crate::private::warn_if_snapshot_open(path);
    super::pages::register();
    let open = |flags: OpenFlags| {
        let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(|e| Error::snapshot(path, format!("cannot open: {e}")))?;
        // A bulk write in the rollback journal keeps readers out while it writes.
        conn.busy_timeout(super::store::BULK_BUSY).map_err(|e| Error::snapshot(path, e))?;
        Ok::<_, Error>(conn)
    };
    let mut conn = open(OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let first = conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0));
    if matches!(first, Err(rusqlite::Error::SqliteFailure(e, _)) if e.extended_code == rusqlite::ffi::SQLITE_READONLY_ROLLBACK)
    {
        // A bulk write was killed and left its hot journal, which a read-only connection
        // cannot roll back. Rolling it back restores the last committed state: what a reader
        // would have read anyway.
        drop(conn);
        tracing::info!(snapshot = %path.display(), "rolling back the journal a stopped write left");
        schema_version(&open(OpenFlags::SQLITE_OPEN_READ_WRITE)?, path)?;
        conn = open(OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    }
    let version = schema_version(&conn, path)?;
    sealed(&conn, path, version)?;
    Ok((conn, version))
}

/// Whether the file `conn` has open reserves room for page checksums; a file of a schema that
/// always does, and does not, is damaged (its header lost the reserve, and with it every check).
pub(super) fn sealed(conn: &Connection, path: &Path, version: i64) -> Result<bool, Error> {
    let sealed = super::pages::reserved(conn).map_err(|e| Error::snapshot(path, e))?;
    if !sealed && version >= SEALED_SINCE {
        let what = "its header no longer reserves room for page checksums".into();
        return Err(Error::Damaged { path: path.to_owned(), what });
    }
    Ok(sealed)
}

pub(super) fn schema_version(conn: &Connection, path: &Path) -> Result<i64, Error> {
    let v: i64 =
        conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| match crate::error::damage(&e) {
            Some(what) => Error::Damaged { path: path.to_owned(), what },
            None => Error::snapshot(path, format!("not a readable SQLite file ({e}); point --state at a snapshot")),
        })?;
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

pub(super) fn read_version(conn: &Connection) -> rusqlite::Result<SnapshotVersion> {
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

pub fn new_snapshot_id() -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(crate::time::now_rfc3339().as_bytes());
    h.update(std::process::id().to_le_bytes());
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    h.update(nanos.to_le_bytes());
    h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}
