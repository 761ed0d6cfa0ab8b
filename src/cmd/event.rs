//! `event`: apply one change right away — a registration, a transfer, a release, a customer's
//! details — through the same client and rate limit as `apply`, and record it in the snapshot, so
//! that the nightly run finds nothing left to do. `event --stdin` takes a stream of JSON lines
//! (for a registration system to pipe into) and answers one JSON line per event; a bad line gets
//! an error result and the stream goes on. An event holds the snapshot's lock, as `apply` does;
//! a stream takes it for each event and lets it go, waiting while another run holds it, so a
//! nightly `apply` and a stream that never ends can take turns.

use std::io::BufRead;
use std::sync::atomic::AtomicBool;

use serde_json::{Value, json};

use crate::api;
use crate::cli::exit::{Ended, Figures, How};
use crate::cli::settings::Settings;
use crate::cli::{EventArgs, EventCommand};
use crate::client::{Client, Rejection};
use crate::error::Error;
use crate::execute::{Caller, CustomerWork, Options};
use crate::model::{CustomerRecord, DeviceIdent, Email, Properties, TelemetronId};
use crate::snapshot::{Lock, Store};

/// One change, as a JSON line (`{"event": "register", ...}`) or the command line gives it.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(tag = "event", rename_all = "snake_case", deny_unknown_fields)]
pub enum Event {
    /// A customer registered a device: assign it (creating the device with --device-type)
    Register {
        /// The device's identifier (serial number, MAC, …)
        device: String,
        /// The customer's email
        customer: String,
        /// Create the device with this type if Telemetron does not have it
        #[serde(default)]
        device_type: Option<String>,
        /// The device's properties, as key=value (repeatable); they replace the stored ones
        #[serde(default)]
        properties: Vec<String>,
    },
    /// A device changed hands: unassign the old owner, then assign the new one
    Transfer {
        /// The device's identifier (serial number, MAC, …)
        device: String,
        /// The email of the customer who had the device
        from: String,
        /// The email of the customer who has it now
        to: String,
    },
    /// A customer gave a device up: unassign it
    Release {
        /// The device's identifier (serial number, MAC, …)
        device: String,
        /// The customer's email
        customer: String,
    },
    /// A customer signed up or changed their details: create or update them
    Customer {
        /// The customer's email (their key in Telemetron)
        email: String,
        /// The customer's name
        #[serde(default)]
        name: Option<String>,
        /// The customer's phone number (an empty value clears it)
        #[serde(default)]
        phone: Option<String>,
        /// The customer's address (an empty value clears it)
        #[serde(default)]
        address: Option<String>,
    },
}

impl From<&EventCommand> for Event {
    fn from(c: &EventCommand) -> Event {
        match c.clone() {
            EventCommand::Register { device, customer, device_type, properties } => {
                Event::Register { device, customer, device_type, properties }
            }
            EventCommand::Transfer { device, from, to } => Event::Transfer { device, from, to },
            EventCommand::Release { device, customer } => Event::Release { device, customer },
            EventCommand::Customer { fields: crate::cli::CustomerFields { email, name, phone, address } } => {
                Event::Customer { email, name, phone, address }
            }
        }
    }
}

pub fn run(args: &EventArgs, s: &Settings) -> Result<Ended, Error> {
    if args.event.is_some() == args.stdin {
        return Err(Error::Usage("give one event (register, transfer, release, customer) or --stdin".into()));
    }
    let client = s.api()?.client()?;
    let state = s.state.clone();
    let opts = Options { rate: s.rate, concurrency: 1, ..Options::default() };
    let stop = AtomicBool::new(false);
    let caller = Caller::new(&opts, &stop);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Setup(format!("cannot start the async runtime: {e}")))?;

    if let Some(event) = &args.event {
        let _lock = Lock::acquire(&state)?;
        let mut store = Store::open(&state)?;
        let result = recorded(&mut store, |store| rt.block_on(apply(&event.into(), &client, &caller, store)))?;
        let ok = result["ok"] == true;
        super::stdout_write(|out| {
            serde_json::to_writer_pretty(&mut *out, &result).map_err(std::io::Error::from)?;
            writeln!(out)
        })?;
        if caller.stopped().is_some() || !ok {
            let why = result["error"].as_str().unwrap_or("the event failed").to_string();
            return Ok(Ended::with(How::Stopped(why), Figures { failed_operations: 1, ..Figures::default() }));
        }
        return Ok(Ended::done());
    }

    let mut failed = 0usize;
    let stdin = std::io::stdin();
    for (i, line) in stdin.lock().lines().enumerate() {
        let n = i + 1;
        let line = line.map_err(|source| Error::Io { what: "read", path: "stdin".into(), source })?;
        if line.trim().is_empty() {
            continue;
        }
        let mut result = match serde_json::from_str::<Event>(&line) {
            Ok(event) => {
                let _lock = wait_for_lock(&state)?;
                let mut store = Store::open(&state)?;
                recorded(&mut store, |store| rt.block_on(apply(&event, &client, &caller, store)))?
            }
            Err(e) => json!({"ok": false, "error": format!("not an event: {e}")}),
        };
        result["line"] = n.into();
        if result["ok"] != true {
            failed += 1;
        }
        // One line per event, flushed at once: a registration system reads the answers as
        // they come. A closed stdout does not stop the stream.
        let _ = super::stdout_write(|out| writeln!(out, "{result}"));
        if let Some(why) = caller.stopped() {
            let figures = Figures { failed_operations: failed as u64, ..Figures::default() };
            return Ok(Ended::with(How::Stopped(why.to_string()), figures));
        }
    }
    Ok(Ended::counted(Figures { failed_operations: failed as u64, ..Figures::default() }))
}

/// Runs one event as a run of its own in the snapshot's history (kind `event`, the result as
/// its summary), so that `history` shows what events changed between nightly runs.
fn recorded(store: &mut Store, f: impl FnOnce(&mut Store) -> Result<Value, Error>) -> Result<Value, Error> {
    let run_id = store.begin_run("event")?;
    crate::cli::output::set_run_id(run_id);
    let mut result = f(store)?;
    let outcome = if result["ok"] == true { "ok" } else { "failed" };
    store.finish_run(run_id, outcome, &result)?;
    result["run"] = run_id.into();
    Ok(result)
}

/// Takes the snapshot's lock, waiting (and saying so once) while another run holds it.
fn wait_for_lock(state: &std::path::Path) -> Result<Lock, Error> {
    let mut said = false;
    loop {
        match Lock::try_acquire(state)? {
            Ok(lock) => return Ok(lock),
            Err(who) => {
                if !said {
                    tracing::info!(snapshot = %state.display(), "the snapshot is in use by {who}; the event waits for it");
                    said = true;
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        }
    }
}

fn failure(name: &str, error: impl std::fmt::Display) -> Value {
    json!({"ok": false, "event": name, "error": error.to_string()})
}

fn email(raw: &str) -> Result<Email, String> {
    Email::parse(raw).map_err(|why| format!("{raw:?}: {why}"))
}

fn device(raw: &str) -> Result<DeviceIdent, String> {
    DeviceIdent::parse(raw).map_err(|why| format!("{raw:?}: {why}"))
}

/// Sends one event and records what Telemetron confirmed. API failures are results; only a
/// snapshot failure is an error.
async fn apply(event: &Event, client: &Client, caller: &Caller<'_>, store: &mut Store) -> Result<Value, Error> {
    match event {
        Event::Register { device: d, customer, device_type, properties } => {
            let name = "register";
            let (d, c) = match (device(d), email(customer)) {
                (Ok(d), Ok(c)) => (d, c),
                (Err(e), _) | (_, Err(e)) => return Ok(failure(name, e)),
            };
            let props = match parse_properties(properties) {
                Ok(p) => p,
                Err(e) => return Ok(failure(name, e)),
            };
            let req = api::AssignDeviceToOwners {
                device_identifier: d.to_string(),
                customer_emails: vec![c.to_string()],
                auto_create_device: device_type.is_some(),
                device_type: device_type.clone(),
            };
            let r = match caller.call(|| client.assign_device_to_owners(&req)).await {
                Some(Ok(r)) => r,
                Some(Err(e)) => return Ok(failure(name, e)),
                None => return Ok(failure(name, "not sent: the run is stopping")),
            };
            let customer_id =
                r.assigned_customers.first().and_then(|a| a.customer_id.as_deref()).map(TelemetronId::new);
            let mut w = store.writer()?;
            w.ensure_device(&d, device_type.as_deref())?;
            w.ensure_customer(&c, customer_id.as_ref())?;
            w.assign(&d, &c)?;
            w.commit()?;
            let mut result = json!({
                "ok": true, "event": name, "device": d, "customer": c,
                "device_created": r.device_was_created,
                "customer_created": r.assigned_customers.first().is_some_and(|a| a.was_created),
            });
            if let Some(props) = props {
                // bulk-metadata replaces the properties: documented, unlike POST /device's.
                let mut devices = std::collections::BTreeMap::new();
                devices.insert(d.to_string(), props.to_map().into_iter().map(|(k, v)| (k, v.into())).collect());
                let req = api::BulkMetadata { devices };
                match caller.call(|| client.bulk_metadata(&req)).await {
                    Some(Ok(m)) if m.results.iter().any(|x| x.status == api::BulkMetadataStatus::Updated) => {
                        let mut w = store.writer()?;
                        w.set_device_properties(&d, &props)?;
                        w.commit()?;
                        result["properties_set"] = true.into();
                    }
                    Some(Ok(_)) => return Ok(failure(name, "assigned, but bulk-metadata did not update the device")),
                    Some(Err(e)) => return Ok(failure(name, format!("assigned, but setting properties failed: {e}"))),
                    None => return Ok(failure(name, "assigned; properties not sent: the run is stopping")),
                }
            }
            Ok(result)
        }
        Event::Transfer { device: d, from, to } => {
            let name = "transfer";
            let (d, from, to) = match (device(d), email(from), email(to)) {
                (Ok(d), Ok(f), Ok(t)) => (d, f, t),
                (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return Ok(failure(name, e)),
            };
            // The documented recipe: unassign the old owner, then assign the new one.
            if let Err(e) = unassign(client, caller, store, &d, &from).await? {
                return Ok(failure(name, e));
            }
            let req = api::AssignDevicesToOwner {
                customer_email: to.to_string(),
                device_identifiers: vec![d.to_string()],
                ..Default::default()
            };
            let r = match caller.call(|| client.assign_devices_to_owner(&req)).await {
                Some(Ok(r)) => r,
                Some(Err(e)) => return Ok(failure(name, format!("unassigned from {from}, but assigning failed: {e}"))),
                None => return Ok(failure(name, "unassigned; the assignment was not sent: the run is stopping")),
            };
            if !r.skipped.is_empty() {
                return Ok(failure(
                    name,
                    format!("unassigned from {from}, but Telemetron does not have device {d} (skipped)"),
                ));
            }
            let mut w = store.writer()?;
            w.ensure_customer(&to, r.customer_id.as_deref().map(TelemetronId::new).as_ref())?;
            w.assign(&d, &to)?;
            w.commit()?;
            Ok(json!({"ok": true, "event": name, "device": d, "from": from, "to": to}))
        }
        Event::Release { device: d, customer } => {
            let name = "release";
            let (d, c) = match (device(d), email(customer)) {
                (Ok(d), Ok(c)) => (d, c),
                (Err(e), _) | (_, Err(e)) => return Ok(failure(name, e)),
            };
            Ok(match unassign(client, caller, store, &d, &c).await? {
                Ok(()) => json!({"ok": true, "event": name, "device": d, "customer": c}),
                Err(e) => failure(name, e),
            })
        }
        Event::Customer { email: raw, name: n, phone, address } => {
            let name = "customer";
            let e = match email(raw) {
                Ok(e) => e,
                Err(why) => return Ok(failure(name, why)),
            };
            let stored = store.customer(&e)?;
            let old = stored.as_ref().map(|s| s.record.clone()).unwrap_or_default();
            // Fields the event leaves out keep what the snapshot has.
            let record = CustomerRecord::new(
                n.as_deref().or(old.name()),
                phone.as_deref().or(old.phone()),
                address.as_deref().or(old.address()),
                old.source_id(),
            );
            let work = CustomerWork {
                email: e.clone(),
                telemetron_id: stored.and_then(|s| s.telemetron_id),
                record: record.clone(),
                create: false,
            };
            let id = match caller.upsert_customer(client, &work).await {
                Some(Ok(id)) => id,
                Some(Err(err)) => return Ok(failure(name, err)),
                None => return Ok(failure(name, "not sent: the run is stopping")),
            };
            let mut w = store.writer()?;
            w.put_customer(&e, id.as_ref(), &record)?;
            w.commit()?;
            Ok(json!({"ok": true, "event": name, "email": e, "telemetron_id": id}))
        }
    }
}

/// unassignDevicesFromOwner for one device (idempotent, unlike the single unassign), recorded.
async fn unassign(
    client: &Client,
    caller: &Caller<'_>,
    store: &mut Store,
    d: &DeviceIdent,
    c: &Email,
) -> Result<Result<(), String>, Error> {
    let req = api::UnassignDevicesFromOwner { customer_email: c.to_string(), device_identifiers: vec![d.to_string()] };
    match caller.call(|| client.unassign_devices_from_owner(&req)).await {
        Some(Ok(_)) => {}
        // Telemetron has no such customer: nothing is assigned to it.
        Some(Err(e)) if e.rejection() == Some(&Rejection::NotFound) => {}
        Some(Err(e)) => return Ok(Err(e.to_string())),
        None => return Ok(Err("not sent: the run is stopping".into())),
    }
    let mut w = store.writer()?;
    w.unassign(d, c)?;
    w.commit()?;
    Ok(Ok(()))
}

fn parse_properties(pairs: &[String]) -> Result<Option<Properties>, String> {
    if pairs.is_empty() {
        return Ok(None);
    }
    Ok(Some(Properties::from_map(&super::key_values(pairs)?)))
}
