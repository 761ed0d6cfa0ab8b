//! `verify`: read customers back through queryCustomer, rate-limited like `apply`, and report
//! how Telemetron drifted from the snapshot; with `--heal`, write what was read into the
//! snapshot so that the next `plan`/`apply` repairs Telemetron toward the exports.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use rustc_hash::FxHashMap;

use crate::api;
use crate::cli::exit::{Ended, Figures, How};
use crate::cli::settings::Settings;
use crate::cli::{ReportFormat, VerifyArgs};
use crate::diff::drift::{self, CustomerDrift};
use crate::error::Error;
use crate::execute::Caller;
use crate::model::{Assignment, Confirmed, DeviceIdent, Email, TelemetronId};
use crate::snapshot::{self, Lock, Store};

pub fn run(args: &VerifyArgs, s: &Settings) -> Result<Ended, Error> {
    let state = s.existing_state()?.to_path_buf();
    let client = s.api()?.client()?;
    let _lock = if args.heal { Some(Lock::acquire(&state)?) } else { None };
    let snap = snapshot::read(&state)?;

    // Which customers, and the devices the snapshot says each has.
    let mut devices_of: FxHashMap<&Email, Vec<&DeviceIdent>> = FxHashMap::default();
    for (d, stored) in &snap.devices {
        for owner in &stored.owners {
            devices_of.entry(owner).or_default().push(d);
        }
    }
    let mut chosen: Vec<&Email> = if args.all {
        snap.customers.keys().collect()
    } else if let Some(n) = args.sample {
        let mut all: Vec<&Email> = snap.customers.keys().collect();
        all.sort_by_key(|e| (drift::sample_key(args.seed, e), e.as_str()));
        all.truncate(n);
        all
    } else {
        let mut list = Vec::new();
        for e in &args.customers {
            match snap.customers.get_key_value(e) {
                Some((key, _)) => list.push(key),
                None => return Err(Error::NotHeld(format!("--customer {e}: not in the snapshot {}", state.display()))),
            }
        }
        list
    };
    chosen.sort();

    let opts = s.options(crate::plan::Batching::default());
    let stop = Arc::new(AtomicBool::new(false));
    let rt = super::runtime()?;
    let progress = crate::cli::progress::for_stderr(s.quiet);
    let (results, stopped, calls) = rt.block_on(async {
        let signals = super::stop_on_signal(stop.clone());
        let caller = Caller::new(&opts, &stop);
        progress.phase("verify", chosen.len() as u64);
        let results =
            crate::sync::read_back(&client, &caller, opts.concurrency, chosen.iter().copied(), progress.as_ref()).await;
        progress.finish();
        signals.abort();
        (results, caller.stopped(), caller.calls())
    });

    let mut drifts: Vec<CustomerDrift> = Vec::new();
    let mut errors: Vec<(String, String)> = Vec::new();
    let mut read: Vec<(&Email, Option<api::Customer>)> = Vec::new();
    for (email, r) in results {
        match r {
            None => {}
            Some(Err(e)) => errors.push((email.to_string(), e.to_string())),
            Some(Ok(remote)) => {
                let stored = &snap.customers[email];
                let devices = devices_of.get(email).map_or(&[][..], Vec::as_slice);
                if let Some(d) = drift::compare(email, &stored.record, devices, remote.as_ref().map(as_remote)) {
                    drifts.push(d);
                }
                read.push((email, remote));
            }
        }
    }
    drifts.sort_by(|a, b| a.email.cmp(&b.email));
    errors.sort();

    let mut healed = false;
    if args.heal && !read.is_empty() {
        // What was read, as the facts it is, recorded like any run's confirmations.
        let mut facts = Vec::new();
        for (email, remote) in &read {
            let Some(r) = remote else {
                facts.push(Confirmed::CustomerMissing((*email).clone()));
                continue;
            };
            let record = drift::remote_record(as_remote(r), &snap.customers[*email].record);
            facts.push(Confirmed::Customer { email: (*email).clone(), id: Some(TelemetronId::new(&r.id)), record });
            let ours = devices_of.get(email).map_or(&[][..], Vec::as_slice);
            for d in ours.iter().filter(|d| !r.devices.iter().any(|x| x == d.as_str())) {
                facts.push(Confirmed::Unassigned(Assignment { device: (*d).clone(), customer: (*email).clone() }));
            }
            for ident in r.devices.iter().filter_map(|d| DeviceIdent::parse(d).ok()) {
                if !ours.contains(&&ident) {
                    facts.push(Confirmed::Assigned(Assignment { device: ident, customer: (*email).clone() }));
                }
            }
        }
        let summary = serde_json::json!({"checked": read.len(), "drifted": drifts.len(), "healed": drifts.len()});
        let word = if drifts.is_empty() { "ok" } else { "healed" };
        crate::sync::writing_run(&state, "verify", &client, &opts, |run_id, _| {
            crate::sync::record_facts(&state, &facts)?;
            Store::open(&state)?.finish_run(run_id, word, &summary)?;
            Ok(Ended::done())
        })?;
        healed = true;
    }

    let summary = serde_json::json!({
        "checked": read.len(),
        "drifted": drifts.len(),
        "missing_remotely": drifts.iter().filter(|d| d.missing_remotely).count(),
        "errors": errors.len(),
        "calls": calls,
        "healed": healed && !drifts.is_empty(),
    });
    super::stdout_write(|out| match args.format {
        ReportFormat::Json => {
            let doc = serde_json::json!({
                "summary": summary,
                "customers": drifts,
                "errors": errors.iter().map(|(e, m)| serde_json::json!({"email": e, "error": m})).collect::<Vec<_>>(),
            });
            serde_json::to_writer_pretty(&mut *out, &doc).map_err(std::io::Error::from)?;
            writeln!(out)
        }
        ReportFormat::Text => {
            writeln!(
                out,
                "verify: {} customers read back, {} drifted, {} errors",
                read.len(),
                drifts.len(),
                errors.len()
            )?;
            for d in &drifts {
                if d.missing_remotely {
                    writeln!(out, "  {}: missing in Telemetron", d.email)?;
                    continue;
                }
                writeln!(out, "  {}:", d.email)?;
                for f in &d.fields {
                    let show = |v: &Option<String>| v.as_deref().map_or("(empty)".to_string(), |s| format!("{s:?}"));
                    writeln!(out, "    {}: snapshot {} / Telemetron {}", f.field, show(&f.snapshot), show(&f.remote))?;
                }
                if !d.devices_only_remote.is_empty() {
                    writeln!(out, "    assigned in Telemetron only: {}", d.devices_only_remote.join(", "))?;
                }
                if !d.devices_only_in_snapshot.is_empty() {
                    writeln!(out, "    not assigned in Telemetron: {}", d.devices_only_in_snapshot.join(", "))?;
                }
            }
            for (e, m) in &errors {
                writeln!(out, "  {e}: not read: {m}")?;
            }
            if healed && !drifts.is_empty() {
                writeln!(
                    out,
                    "healed: the snapshot now holds what Telemetron has; `plan` shows the repairs, `apply` makes them"
                )?;
            }
            Ok(())
        }
    })?;
    let figures = Figures {
        calls,
        failed_operations: errors.len() as u64,
        drifted: Some(drifts.len() as u64),
        ..Figures::default()
    };
    let how = if let Some(why) = stopped {
        How::Stopped(why)
    } else if !errors.is_empty() {
        How::Stopped(format!(
            "{} customer(s) could not be read back (listed above); the drift check is incomplete. Run verify again",
            errors.len()
        ))
    } else if drifts.is_empty() || healed {
        // Healed: the snapshot holds all that was found, and the next apply repairs it.
        How::Done
    } else {
        How::Changes
    };
    Ok(Ended::with(how, figures))
}

/// A customer read back, as the drift check compares it.
fn as_remote(c: &crate::api::Customer) -> drift::Remote<'_> {
    drift::Remote {
        id: &c.id,
        name: c.name.as_deref(),
        phone: c.phone.as_deref(),
        address: c.address.as_deref(),
        devices: &c.devices,
    }
}
