//! One change the moment it happens — a registration, a transfer, a release, a customer's
//! details — as the calls it needs, made by hand and sent by the engine like any other run's:
//! every assign and unassign journalled before it is sent, every confirmation recorded through
//! `Writer::record`.

use std::sync::Arc;

use crate::error::Error;
use crate::model::{CustomerRecord, DeviceIdent, Email, Properties};
use crate::plan::{ApiCall, Calls};
use crate::snapshot::Store;

/// One change, as a JSON line (`{"event": "register", ...}`) or the command line gives it.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(tag = "event", rename_all = "snake_case", deny_unknown_fields)]
pub enum Event {
    /// A customer registered a device: assign it (creating the device with --device-type)
    Register {
        device: String,
        customer: String,
        #[serde(default)]
        device_type: Option<String>,
        /// key=value pairs; they replace the stored ones
        #[serde(default)]
        properties: Vec<String>,
    },
    /// A device changed hands: unassign the old owner, then assign the new one
    Transfer { device: String, from: String, to: String },
    /// A customer gave a device up: unassign it
    Release { device: String, customer: String },
    /// A customer signed up or changed their details: create or update them
    Customer {
        email: String,
        #[serde(default)]
        name: Option<String>,
        /// An empty value clears it
        #[serde(default)]
        phone: Option<String>,
        /// An empty value clears it
        #[serde(default)]
        address: Option<String>,
    },
}

/// An event whose values were checked: its keys parsed, its properties read.
#[derive(Debug, Clone)]
pub enum Checked {
    Register { device: DeviceIdent, customer: Email, device_type: Option<Arc<str>>, properties: Option<Properties> },
    Transfer { device: DeviceIdent, from: Email, to: Email },
    Release { device: DeviceIdent, customer: Email },
    Customer { email: Email, name: Option<String>, phone: Option<String>, address: Option<String> },
}

impl Event {
    /// The event's name, as its result says it.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Register { .. } => "register",
            Event::Transfer { .. } => "transfer",
            Event::Release { .. } => "release",
            Event::Customer { .. } => "customer",
        }
    }

    /// Checks the event's values; the message says which is wrong. Nothing is sent for an
    /// event that fails here, and no run is recorded.
    pub fn check(&self) -> Result<Checked, String> {
        Ok(match self {
            Event::Register { device: d, customer, device_type, properties } => Checked::Register {
                device: device(d)?,
                customer: email(customer)?,
                device_type: device_type.as_deref().map(Arc::from),
                properties: if properties.is_empty() {
                    None
                } else {
                    Some(Properties::from_map(&crate::model::key_values(properties)?))
                },
            },
            Event::Transfer { device: d, from, to } => {
                Checked::Transfer { device: device(d)?, from: email(from)?, to: email(to)? }
            }
            Event::Release { device: d, customer } => {
                Checked::Release { device: device(d)?, customer: email(customer)? }
            }
            Event::Customer { email: raw, name, phone, address } => Checked::Customer {
                email: email(raw)?,
                name: name.clone(),
                phone: phone.clone(),
                address: address.clone(),
            },
        })
    }
}

fn email(raw: &str) -> Result<Email, String> {
    Email::parse(raw).map_err(|why| format!("{raw:?}: {why}"))
}

fn device(raw: &str) -> Result<DeviceIdent, String> {
    DeviceIdent::parse(raw).map_err(|why| format!("{raw:?}: {why}"))
}

impl Checked {
    /// The calls that make the change, in the executor's phases: a transfer's unassign before
    /// its assign (the documented recipe; the assign waits for it), a registration's properties
    /// after its assignment (bulk-metadata replaces them, as documented).
    pub fn calls(&self, store: &Store) -> Result<Calls, Error> {
        let mut calls = Calls::default();
        match self {
            Checked::Register { device, customer, device_type, properties } => {
                calls.assign.push(ApiCall::AssignDeviceToOwners {
                    device: device.clone(),
                    customers: vec![customer.clone()],
                    create: device_type.clone(),
                    create_customers: vec![],
                });
                if let Some(p) = properties {
                    calls.properties.push(ApiCall::BulkMetadata { devices: vec![(device.clone(), p.clone())] });
                }
            }
            Checked::Transfer { device, from, to } => {
                calls.unassign.push(unassign(device, from));
                calls.assign.push(ApiCall::AssignDevicesToOwner {
                    customer: to.clone(),
                    devices: vec![device.clone()],
                    create: None,
                    create_customer: None,
                });
            }
            Checked::Release { device, customer } => calls.unassign.push(unassign(device, customer)),
            Checked::Customer { email, name, phone, address } => {
                let stored = store.customer(email)?;
                let old = stored.as_ref().map(|s| s.record.clone()).unwrap_or_default();
                // Fields the event leaves out keep what the snapshot has.
                let record = CustomerRecord::new(
                    name.as_deref().or(old.name()),
                    phone.as_deref().or(old.phone()),
                    address.as_deref().or(old.address()),
                    old.source_id(),
                );
                match stored {
                    Some(s) => calls.customer_updates.push(ApiCall::UpdateCustomer {
                        email: email.clone(),
                        telemetron_id: s.telemetron_id,
                        clears: [(phone, old.phone()), (address, old.address())]
                            .iter()
                            .any(|(new, before)| new.as_deref() == Some("") && before.is_some()),
                        record,
                    }),
                    None => calls.customers.push(ApiCall::CreateCustomer { email: email.clone(), record }),
                }
            }
        }
        Ok(calls)
    }
}

/// `unassignDevicesFromOwner` for one device: idempotent, unlike the single unassign.
fn unassign(device: &DeviceIdent, customer: &Email) -> ApiCall {
    ApiCall::UnassignDevicesFromOwner { customer: customer.clone(), devices: vec![device.clone()] }
}

/// What an event's run did, as the JSON line `event` answers with: `ok` when Telemetron
/// confirmed every call; otherwise `error` says what failed, and the next run settles any call
/// whose outcome is unknown.
pub fn event_result(name: &str, event: &Checked, ran: &super::Ran, store: &Store) -> Result<serde_json::Value, Error> {
    use serde_json::json;
    let o = &ran.outcome;
    let done = |kind: &str| o.operations.get(kind).is_some_and(|c| c.done > 0);
    let mut result = match event {
        Checked::Register { device, customer, properties, .. } => {
            let mut r = json!({
                "event": name, "device": device, "customer": customer,
                "device_created": done("devices_created"),
                "customer_created": done("customers_created"),
            });
            if properties.is_some() {
                r["properties_set"] = done("properties_replaced").into();
            }
            r
        }
        Checked::Transfer { device, from, to } => json!({"event": name, "device": device, "from": from, "to": to}),
        Checked::Release { device, customer } => json!({"event": name, "device": device, "customer": customer}),
        Checked::Customer { email, .. } => {
            let id = store.customer(email)?.and_then(|c| c.telemetron_id);
            json!({"event": name, "email": email, "telemetron_id": id})
        }
    };
    let mut errors: Vec<String> = o.failures.iter().map(|f| format!("{} {}: {}", f.kind, f.key, f.error)).collect();
    // A registration of a device Telemetron does not have, without a type to create it with:
    // the documented 404 asks for autoCreateDevice, which is our --device-type.
    if let Checked::Register { device, device_type: None, .. } = event
        && o.failures.iter().any(|f| f.error.contains(": 404"))
    {
        errors.push(format!(
            "Telemetron does not have the device {device}: register it with --device-type TYPE (\"device_type\" on --stdin) to create it"
        ));
    }
    if let Some(why) = &o.stopped {
        errors.push(format!("stopped: {why}"));
    }
    result["ok"] = errors.is_empty().into();
    if !errors.is_empty() {
        result["error"] = errors.join("; ").into();
    }
    Ok(result)
}
