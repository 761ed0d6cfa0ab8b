//! The assignment calls: unassign, and the two bulk assign endpoints with the creates folded
//! into them. An assignment waits for what it depends on; a device in `skipped` is a failure.

use std::collections::BTreeMap;
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::api;
use crate::client::Rejection;
use crate::model::{Assignment, Fingerprint, RecordKind, Refusal, pair_key};
use crate::model::{CustomerRecord, DeviceIdent, Email};
use crate::plan::DeviceCreates;

use super::*;

impl Exec<'_> {
    pub(super) async fn unassign(&self, customer: Email, devices: Vec<DeviceIdent>) {
        let kind = "assignments_removed";
        let req = api::UnassignDevicesFromOwner {
            customer_email: customer.to_string(),
            device_identifiers: devices.iter().map(|d| d.to_string()).collect(),
        };
        let Some(ids) = self.intend(false, devices.iter().map(|d| (d.clone(), customer.clone()))).await else { return };
        let result = self.caller.call(|| self.client.unassign_devices_from_owner(&req)).await;
        let unknown = outcome_unknown(&result);
        self.answered(&result);
        let fail_all = |error: String| {
            let mut failed = lock(&self.failed_unassign);
            for d in &devices {
                failed.insert(d.clone());
            }
            drop(failed);
            for d in &devices {
                self.fail(kind, format!("{d} -> {customer}"), error.clone());
            }
        };
        match result {
            None => {}
            Some(Ok(r)) => {
                // `skipped` means "was not assigned": the wanted state holds either way.
                let gone: FxHashSet<&str> = r.unassigned_devices.iter().chain(&r.skipped).map(String::as_str).collect();
                for d in &devices {
                    if gone.contains(d.as_str()) {
                        (self.confirm)(Confirmed::Unassigned(Assignment {
                            device: d.clone(),
                            customer: customer.clone(),
                        }));
                        self.done(kind, 1);
                    } else {
                        lock(&self.failed_unassign).insert(d.clone());
                        self.fail(
                            kind,
                            format!("{d} -> {customer}"),
                            "not in the answer of unassignDevicesFromOwner".into(),
                        );
                    }
                }
            }
            Some(Err(e)) if e.is_refused() && devices.len() > 1 => {
                // One record may spoil the request: nothing of it was applied. Halves go out
                // again at once, down to single devices, so that every other one goes through.
                self.settle(ids, false);
                let (a, b) = devices.split_at(devices.len() / 2);
                tracing::info!(customer = %customer, devices = devices.len(), "unassignDevicesFromOwner refused ({e}); sending it in halves to find the refused record");
                Box::pin(self.unassign(customer.clone(), a.to_vec())).await;
                Box::pin(self.unassign(customer, b.to_vec())).await;
                return;
            }
            Some(Err(e)) if e.is_refused() => {
                lock(&self.failed_unassign).extend(devices.iter().cloned());
                for d in &devices {
                    self.refuse(kind, pair_refusal(RecordKind::Unassignment, d, &customer, &e));
                }
            }
            Some(Err(e)) if e.rejection() == Some(&Rejection::NotFound) => {
                // No such customer in Telemetron: it holds no device, so none is assigned to it.
                tracing::warn!(customer = %customer, "Telemetron does not know this customer; its assignments are gone already");
                for d in &devices {
                    (self.confirm)(Confirmed::Unassigned(Assignment { device: d.clone(), customer: customer.clone() }));
                }
                self.done(kind, devices.len() as u64);
            }
            Some(Err(e)) => fail_all(e.to_string()),
        }
        self.settle(ids, unknown);
    }

    /// Why an assignment must wait for the next run, if it must: what it depends on failed.
    pub(super) fn blocked(&self, device: &DeviceIdent, customer: &Email) -> Option<&'static str> {
        if lock(&self.failed_customers).contains(customer) {
            Some("not sent: creating or updating the customer failed")
        } else if lock(&self.failed_devices).contains(device) {
            Some("not sent: creating the device failed")
        } else if lock(&self.failed_unassign).contains(device) {
            Some("not sent: removing the device's previous owner failed (a transfer unassigns first)")
        } else {
            None
        }
    }

    pub(super) fn assigned(&self, device: &DeviceIdent, customer: &Email) {
        (self.confirm)(Confirmed::Assigned(Assignment { device: device.clone(), customer: customer.clone() }));
        self.done("assignments_added", 1);
    }

    /// `assignDevicesToOwner`: one customer, many devices; perhaps creating some devices (one
    /// type) and the customer.
    pub(super) async fn assign_to_customer(
        &self,
        customer: Email,
        devices: Vec<DeviceIdent>,
        create: Option<DeviceCreates>,
        create_customer: Option<CustomerRecord>,
    ) {
        let kind = "assignments_added";
        let creating: FxHashSet<&DeviceIdent> =
            create.as_ref().map(|c| c.of(&devices).iter().collect()).unwrap_or_default();
        let mut send = Vec::with_capacity(devices.len());
        for d in &devices {
            match self.blocked(d, &customer) {
                Some(why) => {
                    if creating.contains(d) {
                        lock(&self.failed_devices).insert(d.clone());
                        self.fail("devices_created", d.to_string(), why.into());
                    }
                    self.fail(kind, format!("{d} -> {customer}"), why.into())
                }
                None => send.push(d.clone()),
            }
        }
        let fail_creates = |error: &str| {
            // Devices of this call that it was to create (the blocked ones are already failed).
            for d in send.iter().filter(|d| creating.contains(d)) {
                lock(&self.failed_devices).insert(d.clone());
                self.fail("devices_created", d.to_string(), error.to_string());
            }
            if create_customer.is_some() {
                lock(&self.failed_customers).insert(customer.clone());
                self.fail("customers_created", customer.to_string(), error.to_string());
            }
        };
        if send.is_empty() {
            self.progress.advance(1);
            fail_creates("not sent: nothing left to assign in this call");
            return;
        }
        let req = api::AssignDevicesToOwner {
            customer_email: customer.to_string(),
            device_identifiers: send.iter().map(|d| d.to_string()).collect(),
            auto_create_devices: create.is_some(),
            device_type: create.as_ref().map(|c| c.device_type.to_string()),
        };
        let Some(ids) = self.intend(true, send.iter().map(|d| (d.clone(), customer.clone()))).await else { return };
        let result = self.caller.call(|| self.client.assign_devices_to_owner(&req)).await;
        let unknown = outcome_unknown(&result);
        self.answered(&result);
        match result {
            None => self.journal.settle(ids),
            Some(Ok(r)) => {
                self.customer_answered(&customer, r.customer_id.as_deref(), r.customer_was_created, create_customer)
                    .await;
                let ok: FxHashMap<&str, (Option<&str>, bool)> = r
                    .assigned_devices
                    .iter()
                    .chain(&r.already_assigned)
                    .map(|d| (d.identifier.as_str(), (d.device_id.as_deref(), d.was_created)))
                    .collect();
                let skipped: FxHashSet<&str> = r.skipped.iter().map(String::as_str).collect();
                let mut existed = Vec::new();
                for d in &send {
                    match ok.get(d.as_str()) {
                        Some(&(id, was_created)) => {
                            if let (true, Some(DeviceCreates { device_type: t, .. })) = (creating.contains(d), &create)
                            {
                                if was_created {
                                    self.device_created(d, id, t);
                                } else {
                                    existed.push((d.clone(), id, t.clone()));
                                }
                            }
                            self.assigned(d, &customer);
                        }
                        None => {
                            if creating.contains(d) {
                                lock(&self.failed_devices).insert(d.clone());
                                self.fail(
                                    "devices_created",
                                    d.to_string(),
                                    "not created by assignDevicesToOwner".into(),
                                );
                            }
                            let why = if skipped.contains(d.as_str()) {
                                if !creating.contains(d) {
                                    (self.confirm)(Confirmed::DeviceMissing(d.clone()));
                                }
                                "skipped by assignDevicesToOwner: Telemetron does not have this device (drift); the snapshot forgets it and the next run creates it"
                            } else {
                                "not in the answer of assignDevicesToOwner"
                            };
                            self.fail(kind, format!("{d} -> {customer}"), why.into());
                        }
                    }
                }
                self.settle(ids, unknown);
                self.set_types_of_existing(existed).await;
            }
            Some(Err(e)) if e.is_refused() && send.len() > 1 => {
                // Nothing of it was applied: halves go out again at once, down to single
                // devices, each creating what it holds (the customer is created by whichever
                // goes first, and updated to the export's fields by the other).
                self.settle(ids, false);
                tracing::info!(customer = %customer, devices = send.len(), "assignDevicesToOwner refused ({e}); sending it in halves to find the refused record");
                let (a, b) = send.split_at(send.len() / 2);
                for half in [a, b] {
                    let creates = create.as_ref().and_then(|c| {
                        let of: Vec<DeviceIdent> = half.iter().filter(|d| creating.contains(d)).cloned().collect();
                        (!of.is_empty()).then(|| DeviceCreates { device_type: c.device_type.clone(), only: Some(of) })
                    });
                    Box::pin(self.assign_to_customer(
                        customer.clone(),
                        half.to_vec(),
                        creates,
                        create_customer.clone(),
                    ))
                    .await;
                }
            }
            Some(Err(e)) => {
                let error = e.to_string();
                fail_creates(&error);
                let refused = e.is_refused();
                for d in &send {
                    match refused {
                        true => self.refuse(kind, pair_refusal(RecordKind::Assignment, d, &customer, &e)),
                        false => self.fail(kind, pair_key(d, &customer), error.clone()),
                    }
                }
                self.settle(ids, unknown);
            }
        }
    }

    /// `assignDeviceToOwners`: one device, many customers; perhaps creating the device and some
    /// of the customers.
    pub(super) async fn assign_device(
        &self,
        device: DeviceIdent,
        customers: Vec<Email>,
        create: Option<Arc<str>>,
        create_customers: Vec<(Email, CustomerRecord)>,
    ) {
        let kind = "assignments_added";
        let mut send = Vec::with_capacity(customers.len());
        for c in customers {
            match self.blocked(&device, &c) {
                Some(why) => self.fail(kind, format!("{device} -> {c}"), why.into()),
                None => send.push(c),
            }
        }
        let mut creating: BTreeMap<Email, CustomerRecord> = create_customers.into_iter().collect();
        let fail_creates = |creating: &BTreeMap<Email, CustomerRecord>, error: &str| {
            if create.is_some() {
                lock(&self.failed_devices).insert(device.clone());
                self.fail("devices_created", device.to_string(), error.to_string());
            }
            for c in creating.keys() {
                lock(&self.failed_customers).insert(c.clone());
                self.fail("customers_created", c.to_string(), error.to_string());
            }
        };
        if send.is_empty() {
            self.progress.advance(1);
            fail_creates(&creating, "not sent: nothing left to assign in this call");
            return;
        }
        let req = api::AssignDeviceToOwners {
            device_identifier: device.to_string(),
            customer_emails: send.iter().map(|c| c.to_string()).collect(),
            auto_create_device: create.is_some(),
            device_type: create.as_ref().map(|t| t.to_string()),
        };
        let Some(ids) = self.intend(true, send.iter().map(|c| (device.clone(), c.clone()))).await else { return };
        let result = self.caller.call(|| self.client.assign_device_to_owners(&req)).await;
        let unknown = outcome_unknown(&result);
        self.answered(&result);
        match result {
            None => self.journal.settle(ids),
            Some(Ok(r)) => {
                let existed = match &create {
                    Some(t) if r.device_was_created => {
                        self.device_created(&device, r.device_id.as_deref(), t);
                        vec![]
                    }
                    Some(t) => vec![(device.clone(), r.device_id.as_deref(), t.clone())],
                    None => vec![],
                };
                let ok: FxHashMap<String, (Option<&str>, bool)> = r
                    .assigned_customers
                    .iter()
                    .map(|a| (a.email.trim().to_lowercase(), (a.customer_id.as_deref(), a.was_created)))
                    .collect();
                for c in &send {
                    match ok.get(c.as_str()) {
                        Some(&(id, was_created)) => {
                            self.customer_answered(c, id, was_created, creating.remove(c)).await;
                            self.assigned(&device, c);
                        }
                        None => self.fail(
                            kind,
                            format!("{device} -> {c}"),
                            "not in the answer of assignDeviceToOwners".into(),
                        ),
                    }
                }
                for c in creating.keys() {
                    lock(&self.failed_customers).insert(c.clone());
                    self.fail("customers_created", c.to_string(), "not created by assignDeviceToOwners".into());
                }
                self.settle(ids, unknown);
                self.set_types_of_existing(existed).await;
            }
            Some(Err(e)) if e.is_refused() && send.len() > 1 => {
                // As for assignDevicesToOwner: nothing was applied; halves go out again, down
                // to single customers, each creating the customers it holds (and the device,
                // which the half that goes first creates).
                self.settle(ids, false);
                tracing::info!(device = %device, customers = send.len(), "assignDeviceToOwners refused ({e}); sending it in halves to find the refused record");
                let (a, b) = send.split_at(send.len() / 2);
                for half in [a, b] {
                    let creates = half.iter().filter_map(|c| Some((c.clone(), creating.get(c)?.clone()))).collect();
                    Box::pin(self.assign_device(device.clone(), half.to_vec(), create.clone(), creates)).await;
                }
            }
            Some(Err(e)) => {
                if create.is_none() && e.rejection() == Some(&Rejection::NotFound) {
                    // Sent without autoCreateDevice: Telemetron does not have the device.
                    (self.confirm)(Confirmed::DeviceMissing(device.clone()));
                }
                let error = e.to_string();
                fail_creates(&creating, &error);
                for c in &send {
                    match e.is_refused() {
                        true => self.refuse(kind, pair_refusal(RecordKind::Assignment, &device, c, &e)),
                        false => self.fail(kind, pair_key(&device, c), error.clone()),
                    }
                }
                self.settle(ids, unknown);
            }
        }
    }
}

/// A pair Telemetron refused on its own.
fn pair_refusal(record: RecordKind, device: &DeviceIdent, customer: &Email, e: &crate::client::ApiError) -> Refusal {
    Refusal { record, key: pair_key(device, customer), fingerprint: Fingerprint::pair(), message: e.to_string() }
}
