//! The runs as `history` and `undo` read them.

use std::path::Path;

use rusqlite::OptionalExtension;
use serde::Serialize;

use super::schema::{SCHEMA_VERSION, open_read_only};
use crate::error::Error;

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

/// The rate an earlier `--rate auto` run settled at, read without writing (`None` without a
/// snapshot).
pub fn settled_rate(path: &Path) -> Result<Option<f64>, Error> {
    if !path.exists() {
        return Ok(None);
    }
    let (conn, version) = open_read_only(path)?;
    if version == 0 {
        return Ok(None);
    }
    auto_rate_in(&conn, path)
}

/// The stored `--rate auto` rate of the snapshot `conn` has open (at `path`, for errors).
pub(super) fn auto_rate_in(conn: &rusqlite::Connection, path: &Path) -> Result<Option<f64>, Error> {
    let v: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = 'auto_rate'", [], |r| r.get(0))
        .optional()
        .map_err(|e| Error::snapshot(path, e))?;
    Ok(v.and_then(|v| v.parse().ok()).filter(|r: &f64| r.is_finite() && *r > 0.0))
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

/// A run's kind and its undo plan (`None` when the run has none), read without writing, as a
/// `T` straight from the stored text (a 10 M-device migration's plan is never held as a JSON
/// tree). A stored plan that does not read as one is an error, not a run without a plan.
pub fn undo_plan<T: serde::de::DeserializeOwned>(
    path: &Path,
    run_id: i64,
) -> Result<Option<(String, Option<T>)>, Error> {
    if !path.exists() {
        return Ok(None);
    }
    let (conn, version) = open_read_only(path)?;
    if version < SCHEMA_VERSION {
        return Ok(conn
            .query_row("SELECT kind FROM runs WHERE id = ?1", [run_id], |r| r.get::<_, String>(0))
            .optional()
            .map_err(|e| Error::snapshot(path, e))?
            .map(|kind| (kind, None)));
    }
    let row = conn
        .query_row(
            "SELECT runs.kind, undo.plan FROM runs LEFT JOIN undo ON undo.run_id = runs.id WHERE runs.id = ?1",
            [run_id],
            |r| Ok((r.get::<_, String>(0)?, stored_plan::<T>(r.get_ref(1)?))),
        )
        .optional()
        .map_err(|e| Error::snapshot(path, e))?;
    let Some((kind, plan)) = row else { return Ok(None) };
    let plan = plan.map_err(|e| {
        Error::snapshot(
            path,
            format!("the undo plan of run {run_id} ({kind}) is unreadable ({e}); the run cannot be undone from it"),
        )
    })?;
    Ok(Some((kind, plan)))
}

/// An undo plan as stored: gzip-compressed JSON, or the plain JSON text of earlier versions;
/// `None` when there is none.
fn stored_plan<T: serde::de::DeserializeOwned>(
    value: rusqlite::types::ValueRef<'_>,
) -> Result<Option<T>, serde_json::Error> {
    use rusqlite::types::ValueRef;
    match value {
        ValueRef::Null => Ok(None),
        ValueRef::Text(t) => serde_json::from_slice(t).map(Some),
        // serde_json reads a reader a byte at a time: the decoder is read in blocks.
        ValueRef::Blob(b) => {
            serde_json::from_reader(std::io::BufReader::with_capacity(1 << 16, flate2::read::GzDecoder::new(b)))
                .map(Some)
        }
        ValueRef::Integer(_) | ValueRef::Real(_) => {
            Err(serde::de::Error::custom("a number where the plan's JSON was expected"))
        }
    }
}

/// Runs recorded in the snapshot, newest first. A missing file has none.
pub fn runs(path: &Path, limit: usize) -> Result<Vec<RunRecord>, Error> {
    runs_where(path, "ORDER BY id DESC LIMIT ?1", limit as i64)
}

/// One run, if the snapshot has it.
pub fn run(path: &Path, run_id: i64) -> Result<Option<RunRecord>, Error> {
    Ok(runs_where(path, "WHERE id = ?1", run_id)?.pop())
}

/// The runs `tail` (an SQL clause taking one parameter, `arg`) picks.
fn runs_where(path: &Path, tail: &str, arg: i64) -> Result<Vec<RunRecord>, Error> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let (conn, _) = open_read_only(path)?;
    let err = |e: rusqlite::Error| Error::snapshot(path, e);
    let mut stmt = conn
        .prepare(&format!("SELECT id, kind, started_at, finished_at, outcome, summary FROM runs {tail}"))
        .map_err(err)?;
    let rows = stmt
        .query_map([arg], |r| {
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

/// Run `run_id`'s part of the sync log, in the order it was written, up to `limit` entries
/// after the first `skip`; and how many it has in all.
pub fn run_log(path: &Path, run_id: i64, skip: usize, limit: usize) -> Result<(Vec<super::LogEntry>, usize), Error> {
    let (conn, version) = open_read_only(path)?;
    if version < 7 {
        return Ok((Vec::new(), 0));
    }
    let err = |e| Error::snapshot(path, e);
    let total: i64 =
        conn.query_row("SELECT count(*) FROM sync_log WHERE run_id = ?1", [run_id], |r| r.get(0)).map_err(err)?;
    let mut stmt = conn
        .prepare(
            "SELECT kind, key, outcome, message, source FROM sync_log WHERE run_id = ?1
             ORDER BY seq LIMIT ?2 OFFSET ?3",
        )
        .map_err(err)?;
    let rows = stmt
        .query_map(rusqlite::params![run_id, limit as i64, skip as i64], |r| {
            Ok(super::LogEntry {
                kind: r.get(0)?,
                key: r.get(1)?,
                outcome: r.get(2)?,
                message: r.get(3)?,
                source: r.get(4)?,
            })
        })
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(err)?;
    Ok((rows, total as usize))
}
