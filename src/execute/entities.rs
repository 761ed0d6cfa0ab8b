//! What the executor does for each call besides assignments: customers, devices, properties,
//! and the bookkeeping every call shares (counts, failures, the journal). Each confirmation is
//! derived from Telemetron's answer, never from the plan.

use std::sync::Arc;

use futures::StreamExt;

use crate::api;
use crate::model::{CustomerRecord, DeviceIdent, Email, Fingerprint, Properties, RecordKind, Refusal, TelemetronId};
use crate::plan::ApiCall;

use super::*;

impl Exec<'_> {
    pub(super) async fn run(&self, call: ApiCall) {
        // After a stop a call left in its phase is neither sent nor counted as made.
        if self.caller.stopping() {
            return;
        }
        let sent = super::caller::SENT
            .scope(std::cell::Cell::new(false), async {
                self.dispatch(call).await;
                super::caller::SENT.with(std::cell::Cell::get)
            })
            .await;
        if sent {
            self.made.fetch_add(1, Ordering::Relaxed);
        }
    }

    async fn dispatch(&self, call: ApiCall) {
        match call {
            ApiCall::CreateCustomer { email, record } => {
                self.customer(CustomerWork { email, telemetron_id: None, record, create: true, clears: false }).await
            }
            ApiCall::UpdateCustomer { email, telemetron_id, record, clears } => {
                self.customer(CustomerWork { email, telemetron_id, record, create: false, clears }).await
            }
            ApiCall::UpsertDevice { identifier, device_type, properties, create } => {
                self.device(DeviceWork { identifier, device_type, properties, create }).await
            }
            ApiCall::UnassignDevicesFromOwner { customer, devices } => self.unassign(customer, devices).await,
            ApiCall::AssignDevicesToOwner { customer, devices, create, create_customer } => {
                self.assign_to_customer(customer, devices, create, create_customer).await
            }
            ApiCall::AssignDeviceToOwners { device, customers, create, create_customers } => {
                self.assign_device(device, customers, create, create_customers).await
            }
            ApiCall::BulkMetadata { devices } => self.properties(devices).await,
        }
    }

    /// Journals the pairs of a call about to be sent; `None` when it must not be sent (the run
    /// is stopping, or the journal cannot be written).
    pub(super) async fn intend(
        &self,
        assign: bool,
        pairs: impl Iterator<Item = (DeviceIdent, Email)>,
    ) -> Option<Vec<i64>> {
        if self.caller.stopping() {
            return None;
        }
        let intents = pairs.map(|(device, customer)| Intent { assign, device, customer }).collect();
        self.journal.intend(intents).await
    }

    /// Settles a call's intents unless its outcome is unknown (see [`outcome_unknown`]).
    pub(super) fn settle(&self, ids: Vec<i64>, unknown: bool) {
        if !unknown {
            self.journal.settle(ids);
        }
    }

    /// Counts a call in the phase's progress once it has an outcome (`None`: never sent).
    pub(super) fn answered<T>(&self, result: &Option<T>) {
        if result.is_some() {
            self.progress.advance(1);
        }
    }

    pub(super) fn done(&self, kind: &'static str, n: u64) {
        lock(&self.counts).entry(kind).or_default().done += n;
    }

    /// A record Telemetron refused on its own (a 4xx for a request naming it alone, after a
    /// refused bulk call was split down to it): failed, and counted as refused.
    pub(super) fn refuse(&self, kind: &'static str, refusal: Refusal) {
        let key = refusal.key.clone();
        let error = self.note_refusal(kind, refusal);
        self.record_failure(Failure { kind, key, error, refused: true, source: None }, None);
    }

    /// Counts a refusal and hands it to the snapshot (which counts the runs in a row that
    /// refused the record); returns the failure's words.
    fn note_refusal(&self, kind: &'static str, refusal: Refusal) -> String {
        lock(&self.counts).entry(kind).or_default().refused += 1;
        let error = format!("refused by Telemetron: {}", refusal.message);
        (self.confirm)(Confirmed::Refused(refusal));
        error
    }

    pub(super) fn fail(&self, kind: &'static str, key: String, error: String) {
        self.record_failure(Failure { kind, key, error, refused: false, source: None }, None);
    }

    /// [`fail`](Self::fail) for a customer's own call: an error that echoes the record's name,
    /// phone or address logs them as tokens with `--log-pii=false` (the failure kept for the
    /// report keeps them).
    fn fail_customer(&self, kind: &'static str, w: &CustomerWork, error: String, refused: bool) {
        let record = &w.record;
        let fields = [("name", record.name()), ("phone", record.phone()), ("address", record.address())];
        let logged = crate::pii::scrub_values(&error, &fields).into_owned();
        let failure = Failure { kind, key: w.email.to_string(), error, refused, source: None };
        self.record_failure(failure, Some(&logged));
    }

    /// Every failure is counted, logged (as `logged` when its error must not be shown as it
    /// is) and kept for the report here.
    fn record_failure(&self, failure: Failure, logged: Option<&str>) {
        lock(&self.counts).entry(failure.kind).or_default().failed += 1;
        tracing::warn!(kind = failure.kind, key = %failure.key, "failed: {}", logged.unwrap_or(&failure.error));
        lock(&self.failures).push(failure);
    }

    pub(super) async fn customer(&self, w: CustomerWork) {
        let kind = if w.create { "customers_created" } else { "customers_updated" };
        let result = self.caller.upsert_customer(self.client, &w).await;
        self.answered(&result);
        match result {
            None => {}
            Some(Ok(upserted)) if w.clears && !upserted.recreated => {
                let record = self.held_record(&w).await.unwrap_or(w.record);
                self.customer_upserted(kind, w.email, upserted, record)
            }
            Some(Ok(upserted)) => self.customer_upserted(kind, w.email, upserted, w.record),
            Some(Err(e)) => {
                lock(&self.failed_customers).insert(w.email.clone());
                let refused = e.is_refused();
                let error = match refused {
                    true => self.note_refusal(
                        kind,
                        Refusal {
                            record: RecordKind::Customer,
                            key: w.email.to_string(),
                            fingerprint: Fingerprint::customer(&w.record),
                            message: e.to_string(),
                        },
                    ),
                    false => e.to_string(),
                };
                self.fail_customer(kind, &w, error, refused);
            }
        }
    }

    /// The customer's details as Telemetron holds them after an update that emptied a field
    /// (read back: the update's answer does not show them), counted when a field was kept. The
    /// name Telemetron gives a customer without one (its email's local part) reads as none.
    /// `None` when the read-back failed: the update's own record stands, as before.
    async fn held_record(&self, w: &CustomerWork) -> Option<CustomerRecord> {
        let c = match self.caller.call(|| self.client.query_customer(w.email.as_str())).await? {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(customer = %w.email, "the update emptied a field, and reading the customer back failed ({e}); the snapshot records the export's value");
                return None;
            }
        };
        let some = |v: Option<String>| v.filter(|s| !s.is_empty());
        // The export's own name, even when it is the local part; else the local part reads as
        // none (what an emptied name is sent as).
        let name = match some(c.name) {
            Some(n) if Some(n.as_str()) == w.record.name() => Some(n),
            other => other.filter(|n| n != w.email.local_part()),
        };
        let held = CustomerRecord::new(
            name.as_deref(),
            some(c.phone).as_deref(),
            some(c.address).as_deref(),
            w.record.source_id(),
        );
        if held != w.record {
            self.kept.fetch_add(1, Ordering::Relaxed);
        }
        Some(held)
    }

    /// Records a customer Telemetron confirmed. One it had lost and that was created again has
    /// none of the assignments the snapshot holds for it: the snapshot forgets them first, so
    /// that the next run assigns its devices again from the export.
    fn customer_upserted(
        &self,
        kind: &'static str,
        email: Email,
        upserted: super::caller::Upserted,
        record: CustomerRecord,
    ) {
        if upserted.recreated {
            (self.confirm)(Confirmed::CustomerMissing(email.clone()));
        }
        (self.confirm)(Confirmed::Customer { email, id: upserted.id, record });
        self.done(kind, 1);
    }

    pub(super) async fn device(&self, w: DeviceWork) {
        let kind = if w.create { "devices_created" } else { "device_types_changed" };
        let req = api::DeviceUpsert {
            identifier: w.identifier.to_string(),
            device_type: Some(w.device_type.to_string()),
            properties: w.properties.as_ref().filter(|p| !p.is_empty()).map(properties_json),
        };
        let result = self.caller.call(|| self.client.upsert_device(&req)).await;
        self.answered(&result);
        match result {
            None => {}
            Some(Ok(r)) => {
                let id = r.device_id.map(|i| TelemetronId::new(&i));
                (self.confirm)(match w.properties {
                    Some(properties) if w.create => Confirmed::DeviceCreated {
                        identifier: w.identifier,
                        id,
                        device_type: w.device_type,
                        properties,
                    },
                    _ => Confirmed::DeviceType { identifier: w.identifier, device_type: w.device_type },
                });
                self.done(kind, 1);
            }
            Some(Err(e)) if e.is_refused() => {
                lock(&self.failed_devices).insert(w.identifier.clone());
                let fingerprint = Fingerprint::device(&w.device_type, w.properties.as_ref().filter(|_| w.create));
                let key = w.identifier.to_string();
                self.refuse(kind, Refusal { record: RecordKind::Device, key, fingerprint, message: e.to_string() });
            }
            Some(Err(e)) => {
                lock(&self.failed_devices).insert(w.identifier.clone());
                self.fail(kind, w.identifier.to_string(), e.to_string());
            }
        }
    }

    /// A device this call was to create is there: record it (its properties follow in phase 5).
    pub(super) fn device_created(&self, device: &DeviceIdent, id: Option<&str>, device_type: &Arc<str>) {
        (self.confirm)(Confirmed::DeviceCreated {
            identifier: device.clone(),
            id: id.filter(|i| !i.is_empty()).map(TelemetronId::new),
            device_type: device_type.clone(),
            properties: Properties::empty(),
        });
        self.done("devices_created", 1);
    }

    pub(super) fn customer_created(&self, email: &Email, id: Option<&str>, record: CustomerRecord) {
        (self.confirm)(Confirmed::Customer { email: email.clone(), id: id.map(TelemetronId::new), record });
        self.done("customers_created", 1);
    }

    /// What an assign call's answer says of its customer, recorded as it says it. A customer
    /// this call was to create (`planned`) that already existed is updated to the export's
    /// fields before it is recorded; one the call created without being asked to (Telemetron had
    /// lost it) is recorded as Telemetron names it, so the next run updates it.
    pub(super) async fn customer_answered(
        &self,
        email: &Email,
        id: Option<&str>,
        was_created: bool,
        planned: Option<CustomerRecord>,
    ) {
        match planned {
            Some(record) if was_created => self.customer_created(email, id, record),
            Some(record) => {
                let w = CustomerWork {
                    email: email.clone(),
                    telemetron_id: id.map(TelemetronId::new),
                    record,
                    create: false,
                    clears: false,
                };
                match self.caller.upsert_customer(self.client, &w).await {
                    None => {}
                    Some(Ok(upserted)) => self.customer_upserted("customers_created", w.email, upserted, w.record),
                    Some(Err(e)) => self.fail_customer(
                        "customers_created",
                        &w,
                        format!("it existed already, and updating it to the export's fields failed: {e}"),
                        false,
                    ),
                }
            }
            None if was_created => {
                // Not planned: a customer named only by an event, or one Telemetron lost (drift).
                tracing::info!(customer = %email, "the assign call created this customer in Telemetron");
                let record = CustomerRecord::new(Some(email.local_part()), None, None, None);
                self.customer_created(email, id, record);
            }
            None => {}
        }
    }

    /// Devices an assign call was to create that Telemetron already had, perhaps with another
    /// type (an organisation that already sends telemetry): their type is set with `POST
    /// /device` before the snapshot records them; their properties follow in phase 5.
    pub(super) async fn set_types_of_existing(&self, existed: Vec<(DeviceIdent, Option<&str>, Arc<str>)>) {
        let n = self.concurrency;
        futures::stream::iter(existed)
            .for_each_concurrent(n, |(d, id, t)| async move {
                let req =
                    api::DeviceUpsert { identifier: d.to_string(), device_type: Some(t.to_string()), properties: None };
                match self.caller.call(|| self.client.upsert_device(&req)).await {
                    None => {}
                    Some(Ok(r)) => self.device_created(&d, r.device_id.as_deref().or(id), &t),
                    Some(Err(e)) => {
                        lock(&self.failed_devices).insert(d.clone());
                        self.fail(
                            "devices_created",
                            d.to_string(),
                            format!("it existed already, and setting its type failed: {e}"),
                        );
                    }
                }
            })
            .await;
    }

    pub(super) async fn properties(&self, batch: Vec<(DeviceIdent, Properties)>) {
        let kind = "properties_replaced";
        let (batch, blocked): (Vec<_>, Vec<_>) = {
            let failed = lock(&self.failed_devices);
            batch.into_iter().partition(|(d, _)| !failed.contains(d))
        };
        for (d, _) in blocked {
            self.fail(kind, d.to_string(), "not sent: creating the device failed".into());
        }
        if batch.is_empty() {
            self.progress.advance(1);
            return;
        }
        let req =
            api::BulkMetadata { devices: batch.iter().map(|(d, p)| (d.to_string(), properties_json(p))).collect() };
        let result = self.caller.call(|| self.client.bulk_metadata(&req)).await;
        self.answered(&result);
        match result {
            None => {}
            Some(Ok(r)) => {
                let status: std::collections::HashMap<&str, api::BulkMetadataStatus> =
                    r.results.iter().map(|x| (x.identifier.as_str(), x.status)).collect();
                for (d, p) in batch {
                    match status.get(d.as_str()) {
                        Some(api::BulkMetadataStatus::Updated) => {
                            (self.confirm)(Confirmed::DeviceProperties { identifier: d, properties: p });
                            self.done(kind, 1);
                        }
                        Some(api::BulkMetadataStatus::NotFound) => {
                            (self.confirm)(Confirmed::DeviceMissing(d.clone()));
                            self.fail(
                                kind,
                                d.to_string(),
                                "bulk-metadata: Telemetron does not have this device (not_found); the snapshot forgets it and the next run creates it".into(),
                            )
                        }
                        _ => {
                            self.fail(kind, d.to_string(), "bulk-metadata did not report this device as updated".into())
                        }
                    }
                }
            }
            Some(Err(e)) if e.is_refused() && batch.len() > 1 => {
                // Bulk-metadata runs as one statement: nothing was applied. Halves go out
                // again, down to single devices, so that every other device is updated.
                tracing::info!(
                    devices = batch.len(),
                    "bulk-metadata refused ({e}); sending it in halves to find the refused record"
                );
                let mut a = batch;
                let b = a.split_off(a.len() / 2);
                Box::pin(self.properties(a)).await;
                Box::pin(self.properties(b)).await;
            }
            Some(Err(e)) => {
                let refused = e.is_refused();
                for (d, p) in batch {
                    match refused {
                        true => self.refuse(
                            kind,
                            Refusal {
                                record: RecordKind::Properties,
                                key: d.to_string(),
                                fingerprint: Fingerprint::properties(&p),
                                message: e.to_string(),
                            },
                        ),
                        false => self.fail(kind, d.to_string(), e.to_string()),
                    }
                }
            }
        }
    }
}
