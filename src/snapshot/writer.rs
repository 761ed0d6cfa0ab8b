//! A write transaction: what Telemetron holds, changed one record at a time.

use std::path::PathBuf;

use rusqlite::params;

use crate::error::Error;
use crate::model::{
    Assignment, Confirmed, CustomerRecord, DeviceIdent, DeviceRecord, Email, Properties, RecordKind, Refusal,
    TelemetronId, pair_key,
};

const PUT_CUSTOMER: &str = "INSERT INTO customers (email, telemetron_id, name, phone, address, source_id)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6)
    ON CONFLICT (email) DO UPDATE SET
        telemetron_id = coalesce(excluded.telemetron_id, telemetron_id),
        name = excluded.name, phone = excluded.phone, address = excluded.address,
        source_id = coalesce(excluded.source_id, source_id)";
const PUT_DEVICE: &str = "INSERT INTO devices (identifier, telemetron_id, type, properties) VALUES (?1, ?2, ?3, ?4)
    ON CONFLICT (identifier) DO UPDATE SET
        telemetron_id = coalesce(excluded.telemetron_id, telemetron_id),
        type = excluded.type, properties = excluded.properties";
const ASSIGN: &str = "INSERT OR IGNORE INTO assignments (device, customer) VALUES (?1, ?2)";

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
            PUT_CUSTOMER,
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
            PUT_DEVICE,
            params![
                ident.as_str(),
                id.map(TelemetronId::as_str),
                record.device_type.as_deref(),
                &*record.properties.json(),
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
            params![ident.as_str(), &*properties.json()],
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
        self.exec(ASSIGN, params![device.as_str(), customer.as_str()])
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
        self.put_many(PUT_CUSTOMER, 6, rows, |st, at, (email, r)| {
            st.raw_bind_parameter(at + 1, email.as_str())?;
            st.raw_bind_parameter(at + 2, None::<&str>)?;
            st.raw_bind_parameter(at + 3, r.name())?;
            st.raw_bind_parameter(at + 4, r.phone())?;
            st.raw_bind_parameter(at + 5, r.address())?;
            st.raw_bind_parameter(at + 6, r.source_id())
        })
    }

    /// [`put_device`](Self::put_device) for many devices, keeping their Telemetron ids.
    pub fn put_devices<'r>(
        &mut self,
        rows: impl IntoIterator<Item = (&'r DeviceIdent, Option<&'r str>, &'r Properties)>,
    ) -> Result<(), Error> {
        let mut json = Vec::new();
        self.put_many(PUT_DEVICE, 4, rows, |st, at, (ident, device_type, properties)| {
            st.raw_bind_parameter(at + 1, ident.as_str())?;
            st.raw_bind_parameter(at + 2, None::<&str>)?;
            st.raw_bind_parameter(at + 3, device_type)?;
            // Bound texts are copied: the buffer is free again for the next row.
            st.raw_bind_parameter(at + 4, properties.json_in(&mut json))
        })
    }

    /// [`assign`](Self::assign) for many pairs.
    pub fn assign_all<'r>(&mut self, pairs: impl IntoIterator<Item = &'r Assignment>) -> Result<(), Error> {
        self.put_many(ASSIGN, 2, pairs, |st, at, a| {
            st.raw_bind_parameter(at + 1, a.device.as_str())?;
            st.raw_bind_parameter(at + 2, a.customer.as_str())
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
            Confirmed::Unassigned(a) => self.unassign(&a.device, &a.customer),
            Confirmed::DeviceMissing(d) => self.remove_device(d),
            Confirmed::CustomerMissing(e) => self.remove_customer(e),
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
        let (record, key) = match c {
            Confirmed::Customer { email, .. } => (RecordKind::Customer, email.to_string()),
            Confirmed::DeviceCreated { identifier, .. } | Confirmed::DeviceType { identifier, .. } => {
                (RecordKind::Device, identifier.to_string())
            }
            Confirmed::DeviceProperties { identifier, .. } => (RecordKind::Properties, identifier.to_string()),
            Confirmed::Assigned(a) => (RecordKind::Assignment, pair_key(&a.device, &a.customer)),
            Confirmed::Unassigned(a) => (RecordKind::Unassignment, pair_key(&a.device, &a.customer)),
            Confirmed::DeviceMissing(_) | Confirmed::CustomerMissing(_) | Confirmed::Refused(_) => return Ok(()),
        };
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
