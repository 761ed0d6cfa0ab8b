//! A write transaction: what Telemetron holds, changed one record at a time.

use std::path::PathBuf;

use rusqlite::params;

use crate::error::Error;
use crate::model::{Assignment, Confirmed, CustomerRecord, DeviceIdent, DeviceRecord, Email, Properties, TelemetronId};

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

/// A write transaction on the snapshot. Dropped without `commit`, it writes nothing.
pub struct Writer<'a> {
    pub(super) tx: rusqlite::Transaction<'a>,
    pub(super) path: PathBuf,
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

    /// [`put_customer`](Self::put_customer) for many customers, keeping their Telemetron ids:
    /// one statement for all (a cached statement's lookup hashes its SQL on every row).
    pub fn put_customers<'r>(
        &mut self,
        rows: impl IntoIterator<Item = (&'r Email, &'r CustomerRecord)>,
    ) -> Result<(), Error> {
        let mut st = self.tx.prepare_cached(PUT_CUSTOMER).map_err(|e| self.err(e))?;
        for (email, r) in rows {
            st.execute(params![email.as_str(), None::<&str>, r.name(), r.phone(), r.address(), r.source_id()])
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// [`put_device`](Self::put_device) for many devices, keeping their Telemetron ids.
    pub fn put_devices<'r>(
        &mut self,
        rows: impl IntoIterator<Item = (&'r DeviceIdent, Option<&'r str>, &'r Properties)>,
    ) -> Result<(), Error> {
        let mut st = self.tx.prepare_cached(PUT_DEVICE).map_err(|e| self.err(e))?;
        let mut json = Vec::new();
        for (ident, device_type, properties) in rows {
            st.execute(params![ident.as_str(), None::<&str>, device_type, properties.json_in(&mut json)])
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// [`assign`](Self::assign) for many pairs.
    pub fn assign_all<'r>(&mut self, pairs: impl IntoIterator<Item = &'r Assignment>) -> Result<(), Error> {
        let mut st = self.tx.prepare_cached(ASSIGN).map_err(|e| self.err(e))?;
        for a in pairs {
            st.execute(params![a.device.as_str(), a.customer.as_str()]).map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// Records one of Telemetron's confirmations: the one mapping from what Telemetron
    /// answered to what the snapshot says.
    pub fn record(&mut self, c: &Confirmed) -> Result<(), Error> {
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
        }
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
