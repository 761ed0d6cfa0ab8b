//! A write transaction: what Telemetron holds, changed one record at a time.

use std::path::PathBuf;

use rusqlite::params;

use crate::error::Error;
use crate::model::{
    Assignment, Confirmed, CustomerRecord, DeviceIdent, DeviceRecord, Email, Properties, Refusal, TelemetronId,
    pair_key,
};

// Every statement that writes a record row names the run that wrote it (`confirmed_by`): what
// `explain` tells as the run that last confirmed the record.
const PUT_CUSTOMER: &str = "INSERT INTO customers (email, telemetron_id, name, phone, address, source_id, confirmed_by)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
    ON CONFLICT (email) DO UPDATE SET
        telemetron_id = coalesce(excluded.telemetron_id, telemetron_id),
        name = excluded.name, phone = excluded.phone, address = excluded.address,
        source_id = coalesce(excluded.source_id, source_id), confirmed_by = excluded.confirmed_by";
const PUT_DEVICE: &str = "INSERT INTO devices (identifier, telemetron_id, type, properties, confirmed_by)
    VALUES (?1, ?2, ?3, ?4, ?5)
    ON CONFLICT (identifier) DO UPDATE SET
        telemetron_id = coalesce(excluded.telemetron_id, telemetron_id),
        type = excluded.type, properties = excluded.properties, confirmed_by = excluded.confirmed_by";
const ASSIGN: &str = "INSERT INTO assignments (device, customer, confirmed_by) VALUES (?1, ?2, ?3)
    ON CONFLICT (device, customer) DO UPDATE SET confirmed_by = excluded.confirmed_by";
/// [`ASSIGN`] of pairs the snapshot does not hold (a baseline's): no conflict to update.
const ASSIGN_NEW: &str = "INSERT OR IGNORE INTO assignments (device, customer, confirmed_by) VALUES (?1, ?2, ?3)";

/// How many rows one statement of [`Writer::put_many`] inserts (256 wrote no faster at 1 M).
const ROWS_AT_ONCE: usize = 64;

/// `sql`, a one-row `INSERT ... VALUES (?1, .., ?width) ...`, made to insert `rows` rows: its
/// values' parentheses repeated, the placeholders numbered on through them.
fn rows_at_once(sql: &str, width: usize, rows: usize) -> String {
    let start = sql.find("VALUES (").map_or(0, |i| i + "VALUES ".len());
    let end = sql[start..].find(')').map_or(start, |i| start + i + 1);
    let values = (0..rows)
        .map(|r| {
            let row = (1..=width).map(|j| format!("?{}", r * width + j)).collect::<Vec<_>>();
            format!("({})", row.join(", "))
        })
        .collect::<Vec<_>>();
    format!("{}{}{}", &sql[..start], values.join(", "), &sql[end..])
}

/// A write transaction on the snapshot. Dropped without `commit`, it writes nothing.
pub struct Writer<'a> {
    pub(super) tx: rusqlite::Transaction<'a>,
    pub(super) path: PathBuf,
    /// Whether the snapshot holds refused records, asked once per transaction: a confirmation
    /// clears its record's refusals only when there are any (nearly never), at no cost else.
    pub(super) refusals: Option<bool>,
    /// The run under way (the latest begun: its writer holds the lock), asked once; `None`
    /// inside when the snapshot has no run (a test's writes).
    pub(super) run: Option<Option<i64>>,
    /// The sequence number of the run's last sync-log entry, asked once.
    pub(super) seq: Option<i64>,
    /// What the log calls a confirmation recorded here: `confirmed` (an answer to a call), or
    /// `read_back` (a fact `verify --heal` read).
    pub confirms: &'static str,
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

    /// The run under way: the latest begun (its writer holds the lock).
    fn run(&mut self) -> Result<Option<i64>, Error> {
        if let Some(run) = self.run {
            return Ok(run);
        }
        let run = self.tx.query_row("SELECT max(id) FROM runs", [], |r| r.get(0)).map_err(|e| self.err(e))?;
        Ok(*self.run.insert(run))
    }

    /// Adds an entry to the sync log of the run under way (none without a run).
    pub fn log(&mut self, kind: &str, key: &str, outcome: &str, message: &str) -> Result<(), Error> {
        let Some(run) = self.run()? else { return Ok(()) };
        let seq = match self.seq {
            Some(seq) => seq,
            None => self
                .tx
                .query_row("SELECT coalesce(max(seq), 0) FROM sync_log WHERE run_id = ?1", [run], |r| r.get(0))
                .map_err(|e| self.err(e))?,
        } + 1;
        self.seq = Some(seq);
        self.exec(
            "INSERT INTO sync_log (run_id, seq, kind, key, outcome, message, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![run, seq, kind, key, outcome, message, crate::time::now_rfc3339()],
        )
    }

    /// Records a customer as Telemetron now has it. A `None` id keeps the id already stored.
    pub fn put_customer(
        &mut self,
        email: &Email,
        id: Option<&TelemetronId>,
        record: &CustomerRecord,
    ) -> Result<(), Error> {
        let run = self.run()?;
        self.exec(
            PUT_CUSTOMER,
            params![
                email.as_str(),
                id.map(TelemetronId::as_str),
                record.name(),
                record.phone(),
                record.address(),
                record.source_id(),
                run,
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
        let run = self.run()?;
        self.exec(
            PUT_DEVICE,
            params![
                ident.as_str(),
                id.map(TelemetronId::as_str),
                record.device_type.as_deref(),
                &*record.properties.json(),
                run,
            ],
        )
    }

    /// Records a device's new type, keeping the rest of its row.
    pub fn set_device_type(&mut self, ident: &DeviceIdent, device_type: &str) -> Result<(), Error> {
        let run = self.run()?;
        self.exec(
            "INSERT INTO devices (identifier, type, confirmed_by) VALUES (?1, ?2, ?3)
                 ON CONFLICT (identifier) DO UPDATE SET type = excluded.type, confirmed_by = excluded.confirmed_by",
            params![ident.as_str(), device_type, run],
        )
    }

    /// Records a device's new (complete) properties, keeping the rest of its row.
    pub fn set_device_properties(&mut self, ident: &DeviceIdent, properties: &Properties) -> Result<(), Error> {
        let run = self.run()?;
        self.exec(
            "INSERT INTO devices (identifier, properties, confirmed_by) VALUES (?1, ?2, ?3)
                 ON CONFLICT (identifier) DO UPDATE SET
                     properties = excluded.properties, confirmed_by = excluded.confirmed_by",
            params![ident.as_str(), &*properties.json(), run],
        )
    }

    /// Records that Telemetron has this customer, keeping what the snapshot already says of it
    /// (only a missing Telemetron id is filled in).
    pub fn ensure_customer(&mut self, email: &Email, id: Option<&TelemetronId>) -> Result<(), Error> {
        let run = self.run()?;
        self.exec(
            "INSERT INTO customers (email, telemetron_id, confirmed_by) VALUES (?1, ?2, ?3)
                 ON CONFLICT (email) DO UPDATE SET telemetron_id = coalesce(telemetron_id, excluded.telemetron_id)",
            params![email.as_str(), id.map(TelemetronId::as_str), run],
        )
    }

    /// Records that Telemetron has this device, keeping what the snapshot already says of it.
    pub fn ensure_device(&mut self, ident: &DeviceIdent, device_type: Option<&str>) -> Result<(), Error> {
        let run = self.run()?;
        self.exec(
            "INSERT INTO devices (identifier, type, confirmed_by) VALUES (?1, ?2, ?3)
                 ON CONFLICT (identifier) DO UPDATE SET type = coalesce(type, excluded.type)",
            params![ident.as_str(), device_type, run],
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
        let run = self.run()?;
        self.exec(ASSIGN, params![device.as_str(), customer.as_str(), run])
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

    /// [`put_customer`](Self::put_customer) for many customers, keeping their Telemetron ids.
    pub fn put_customers<'r>(
        &mut self,
        rows: impl IntoIterator<Item = (&'r Email, &'r CustomerRecord)>,
    ) -> Result<(), Error> {
        let run = self.run()?;
        self.put_many(PUT_CUSTOMER, 7, rows, |st, at, (email, r)| {
            st.raw_bind_parameter(at + 1, email.as_str())?;
            st.raw_bind_parameter(at + 2, None::<&str>)?;
            st.raw_bind_parameter(at + 3, r.name())?;
            st.raw_bind_parameter(at + 4, r.phone())?;
            st.raw_bind_parameter(at + 5, r.address())?;
            st.raw_bind_parameter(at + 6, r.source_id())?;
            st.raw_bind_parameter(at + 7, run)
        })
    }

    /// [`put_device`](Self::put_device) for many devices, keeping their Telemetron ids.
    pub fn put_devices<'r>(
        &mut self,
        rows: impl IntoIterator<Item = (&'r DeviceIdent, Option<&'r str>, &'r Properties)>,
    ) -> Result<(), Error> {
        let mut json = Vec::new();
        let run = self.run()?;
        self.put_many(PUT_DEVICE, 5, rows, |st, at, (ident, device_type, properties)| {
            st.raw_bind_parameter(at + 1, ident.as_str())?;
            st.raw_bind_parameter(at + 2, None::<&str>)?;
            st.raw_bind_parameter(at + 3, device_type)?;
            // Bound texts are copied: the buffer is free again for the next row.
            st.raw_bind_parameter(at + 4, properties.json_in(&mut json))?;
            st.raw_bind_parameter(at + 5, run)
        })
    }

    /// [`assign`](Self::assign) for many pairs.
    pub fn assign_all<'r>(&mut self, pairs: impl IntoIterator<Item = &'r Assignment>) -> Result<(), Error> {
        let run = self.run()?;
        self.put_many(ASSIGN_NEW, 3, pairs, |st, at, a| {
            st.raw_bind_parameter(at + 1, a.device.as_str())?;
            st.raw_bind_parameter(at + 2, a.customer.as_str())?;
            st.raw_bind_parameter(at + 3, run)
        })
    }

    /// Runs `sql`, a one-row `INSERT ... VALUES (?1, ..?width) ...`, for every row, [`ROWS_AT_ONCE`]
    /// rows to a statement: one step of SQLite's program per row costs its start, bind and
    /// reset on each; `bind` binds one row's values after the `at` placeholders before it.
    fn put_many<T>(
        &mut self,
        sql: &str,
        width: usize,
        rows: impl IntoIterator<Item = T>,
        mut bind: impl FnMut(&mut rusqlite::Statement<'_>, usize, T) -> rusqlite::Result<()>,
    ) -> Result<(), Error> {
        let many_sql = rows_at_once(sql, width, ROWS_AT_ONCE);
        let mut many = self.tx.prepare(&many_sql).map_err(|e| self.err(e))?;
        let mut one = self.tx.prepare_cached(sql).map_err(|e| self.err(e))?;
        let mut batch = Vec::with_capacity(ROWS_AT_ONCE);
        let mut rows = rows.into_iter();
        loop {
            batch.extend(rows.by_ref().take(ROWS_AT_ONCE));
            if batch.len() < ROWS_AT_ONCE {
                // The last few rows, one statement each.
                for row in batch.drain(..) {
                    bind(&mut one, 0, row).and_then(|()| one.raw_execute()).map_err(|e| self.err(e))?;
                }
                break;
            }
            for (i, row) in batch.drain(..).enumerate() {
                bind(&mut many, i * width, row).map_err(|e| self.err(e))?;
            }
            many.raw_execute().map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// Records one of Telemetron's confirmations: the one mapping from what Telemetron
    /// answered to what the snapshot says.
    pub fn record(&mut self, c: &Confirmed) -> Result<(), Error> {
        self.clear_refusal(c)?;
        match c {
            Confirmed::Customer { email, id, record } => self.put_customer(email, id.as_ref(), record),
            Confirmed::DeviceCreated { identifier, id, device_type, properties } => {
                let record = DeviceRecord { device_type: Some(device_type.clone()), properties: properties.clone() };
                self.put_device(identifier, id.as_ref(), &record)
            }
            Confirmed::DeviceType { identifier, device_type } => self.set_device_type(identifier, device_type),
            Confirmed::DeviceProperties { identifier, properties } => {
                self.set_device_properties(identifier, properties)
            }
            Confirmed::Assigned(a) => self.assign(&a.device, &a.customer),
            // What leaves no row is told by the sync log.
            Confirmed::Unassigned(a) => {
                self.unassign(&a.device, &a.customer)?;
                let outcome = self.confirms;
                self.log("assignments_removed", &pair_key(&a.device, &a.customer), outcome, "")
            }
            Confirmed::DeviceMissing(d) => {
                self.remove_device(d)?;
                let why =
                    "Telemetron does not have this device: forgotten with its assignments, the next plan creates it";
                self.log("device", d.as_str(), "not_found", why)
            }
            Confirmed::CustomerMissing(e) => {
                self.remove_customer(e)?;
                let why = "Telemetron has no customer with this email: forgotten with its assignments, the next plan creates it";
                self.log("customer", e.as_str(), "not_found", why)
            }
            Confirmed::Refused(r) => self.refused(r),
        }
    }

    /// Counts a refusal: one more run in a row when it refused the same content, the first
    /// when the content changed. The run is the one under way: the latest begun (its writer
    /// holds the lock).
    pub fn refused(&mut self, r: &Refusal) -> Result<(), Error> {
        self.refusals = Some(true);
        self.exec(
            "INSERT INTO refusals (record, key, fingerprint, runs, last_run, message)
                 VALUES (?1, ?2, ?3, 1, coalesce((SELECT max(id) FROM runs), 0), ?4)
                 ON CONFLICT (record, key) DO UPDATE SET
                     runs = CASE
                         WHEN fingerprint IS NOT excluded.fingerprint THEN 1
                         WHEN last_run = excluded.last_run THEN runs
                         ELSE runs + 1 END,
                     fingerprint = excluded.fingerprint, last_run = excluded.last_run,
                     message = excluded.message",
            params![r.record.as_str(), r.key, r.fingerprint, r.message],
        )
    }

    /// A record Telemetron confirmed is no longer refused.
    fn clear_refusal(&mut self, c: &Confirmed) -> Result<(), Error> {
        let any = match self.refusals {
            Some(any) => any,
            None => {
                let any = self
                    .tx
                    .query_row("SELECT EXISTS (SELECT 1 FROM refusals)", [], |r| r.get::<_, bool>(0))
                    .map_err(|e| self.err(e))?;
                *self.refusals.insert(any)
            }
        };
        if !any {
            return Ok(());
        }
        let Some((record, key)) = c.record_key() else { return Ok(()) };
        self.exec("DELETE FROM refusals WHERE record = ?1 AND key = ?2", params![record.as_str(), key])
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
