//! One record as the snapshot has it, for `explain`: its row and the run that last wrote it,
//! its assignments, the refusals counted against it, and its sync-log entries.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::schema::open_read_only;
use crate::error::Error;
use crate::model::{DeviceIdent, Email};

/// A run as `explain` names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunRef {
    pub id: i64,
    /// `apply`, `event`, `baseline`, ...; `None` when the run is no longer recorded.
    pub kind: Option<String>,
    pub started_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredCustomerRow {
    pub email: String,
    pub telemetron_id: Option<String>,
    pub name: Option<String>,
    pub phone: Option<String>,
    pub address: Option<String>,
    pub source_id: Option<String>,
    /// The run whose confirmation (or baseline) last wrote the row; `None` for a row written
    /// before the snapshot recorded it (schema 7 and earlier).
    pub confirmed_by: Option<RunRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredDeviceRow {
    pub identifier: String,
    pub telemetron_id: Option<String>,
    #[serde(rename = "type")]
    pub device_type: Option<String>,
    pub properties: serde_json::Value,
    pub confirmed_by: Option<RunRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredAssignmentRow {
    pub device: String,
    pub customer: String,
    pub confirmed_by: Option<RunRef>,
}

/// The runs in a row Telemetron refused a record in, as the quarantine counts them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefusalRow {
    pub record: String,
    pub key: String,
    pub runs: i64,
    pub last_run: i64,
    pub message: String,
}

/// One sync-log entry that names the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogRow {
    pub run: i64,
    pub seq: i64,
    pub at: Option<String>,
    pub kind: String,
    pub key: String,
    pub outcome: String,
    pub message: String,
    pub source: Option<String>,
}

/// What the snapshot holds of one key (an email or a device identifier).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct About {
    pub customer: Option<StoredCustomerRow>,
    pub device: Option<StoredDeviceRow>,
    /// The key's assignments: a device's owners, or a customer's devices.
    pub assignments: Vec<StoredAssignmentRow>,
    pub refusals: Vec<RefusalRow>,
    /// Its sync-log entries, newest first.
    pub log: Vec<LogRow>,
}

/// What the snapshot at `path` holds of `key`; nothing when there is no snapshot.
pub fn about(path: &Path, key: &str) -> Result<About, Error> {
    if !path.exists() {
        return Ok(About::default());
    }
    let (conn, version) = open_read_only(path)?;
    if version == 0 {
        return Ok(About::default());
    }
    let err = |e| Error::snapshot(path, e);
    let run = |id: Option<i64>| -> rusqlite::Result<Option<RunRef>> {
        let Some(id) = id else { return Ok(None) };
        let found = conn
            .query_row("SELECT kind, started_at FROM runs WHERE id = ?1", [id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let (kind, started_at) = found.unzip();
        Ok(Some(RunRef { id, kind, started_at }))
    };
    // Schema 8 added `confirmed_by`; before, no row says.
    let by = if version >= 8 { "confirmed_by" } else { "NULL" };
    let mut out = About::default();
    if let Ok(email) = Email::parse(key) {
        let row = conn
            .query_row(
                &format!("SELECT telemetron_id, name, phone, address, source_id, {by} FROM customers WHERE email = ?1"),
                [email.as_str()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get::<_, Option<i64>>(5)?)),
            )
            .optional()
            .map_err(err)?;
        if let Some((telemetron_id, name, phone, address, source_id, confirmed_by)) = row {
            out.customer = Some(StoredCustomerRow {
                email: email.to_string(),
                telemetron_id,
                name,
                phone,
                address,
                source_id,
                confirmed_by: run(confirmed_by).map_err(err)?,
            });
        }
        // The table is keyed by device first: a customer's devices are a scan.
        out.assignments.extend(assignments(&conn, by, "customer", email.as_str(), &run).map_err(err)?);
    }
    if let Ok(ident) = DeviceIdent::parse(key) {
        let row = conn
            .query_row(
                &format!("SELECT telemetron_id, type, properties, {by} FROM devices WHERE identifier = ?1"),
                [ident.as_str()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, String>(2)?, r.get::<_, Option<i64>>(3)?)),
            )
            .optional()
            .map_err(err)?;
        if let Some((telemetron_id, device_type, properties, confirmed_by)) = row {
            out.device = Some(StoredDeviceRow {
                identifier: ident.to_string(),
                telemetron_id,
                device_type,
                properties: serde_json::from_str(&properties).unwrap_or(serde_json::Value::String(properties)),
                confirmed_by: run(confirmed_by).map_err(err)?,
            });
        }
        out.assignments.extend(assignments(&conn, by, "device", ident.as_str(), &run).map_err(err)?);
    }
    // A record's own key, or either end of a pair's, in either form the key reads as (the
    // same form twice when it reads as one only): one query a table, nothing to merge after.
    let forms = [Email::parse(key).map(|e| e.to_string()).ok(), DeviceIdent::parse(key).map(|d| d.to_string()).ok()];
    let Some(first) = forms.iter().flatten().next().cloned() else { return Ok(out) };
    let second = forms[1].clone().unwrap_or_else(|| first.clone());
    let names = |p: &str| {
        format!(
            "(key = {p} OR substr(key, 1, length({p}) + 4) = {p} || ' -> ' OR substr(key, -length({p}) - 4) = ' -> ' || {p})"
        )
    };
    let names = format!("({} OR {})", names("?1"), names("?2"));
    if version >= 5 {
        let mut stmt = conn
            .prepare(&format!(
                "SELECT record, key, runs, last_run, message FROM refusals WHERE {names} ORDER BY record, key"
            ))
            .map_err(err)?;
        out.refusals = stmt
            .query_map(params![first, second], |r| {
                Ok(RefusalRow {
                    record: r.get(0)?,
                    key: r.get(1)?,
                    runs: r.get(2)?,
                    last_run: r.get(3)?,
                    message: r.get(4)?,
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(err)?;
    }
    if version >= 7 {
        let at = if version >= 8 { "at" } else { "NULL" };
        let mut stmt = conn
            .prepare(&format!(
                "SELECT run_id, {at}, kind, key, outcome, message, source, seq FROM sync_log WHERE {names}
                 ORDER BY run_id DESC, seq DESC"
            ))
            .map_err(err)?;
        out.log = stmt
            .query_map(params![first, second], |r| {
                Ok(LogRow {
                    run: r.get(0)?,
                    at: r.get(1)?,
                    kind: r.get(2)?,
                    key: r.get(3)?,
                    outcome: r.get(4)?,
                    message: r.get(5)?,
                    source: r.get(6)?,
                    seq: r.get(7)?,
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(err)?;
    }
    Ok(out)
}

/// The assignments whose `column` is `key`, in key order.
fn assignments(
    conn: &Connection,
    by: &str,
    column: &str,
    key: &str,
    run: &dyn Fn(Option<i64>) -> rusqlite::Result<Option<RunRef>>,
) -> rusqlite::Result<Vec<StoredAssignmentRow>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT device, customer, {by} FROM assignments WHERE {column} = ?1 ORDER BY device, customer"
    ))?;
    let rows = stmt
        .query_map(params![key], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, Option<i64>>(2)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(|(device, customer, by)| Ok(StoredAssignmentRow { device, customer, confirmed_by: run(by)? }))
        .collect()
}
