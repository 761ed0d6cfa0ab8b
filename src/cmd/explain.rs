//! `explain KEY…`: everything known of one customer or device, put together — the export rows
//! that name it, the snapshot's record and the run that last confirmed it, what the next plan
//! does for it (or why it does nothing), and its sync-log entries, newest first. Offline: it
//! reads what `plan` reads. `--remote` adds one read of what Telemetron holds now.

use std::collections::BTreeSet;

use crate::cli::ReportFormat;
use crate::cli::exit::Ended;
use crate::cli::explain::{Document, Explained, ExportRow, FORMAT, Next, Remote, RemoteRead, write_text};
use crate::cli::settings::ExplainSettings;
use crate::error::Error;
use crate::load::NamedRow;
use crate::model::{DeviceIdent, Email, Reject};
use crate::plan::Operation;
use crate::plan::quarantine::Quarantined;
use crate::snapshot::About;

pub fn run(args: &ExplainSettings) -> Result<Ended, Error> {
    let settings = &args.inputs;
    let mut p = super::prepare(settings)?;
    let mut doc = super::plan_doc(&mut p, settings, &args.guard);
    super::locate(&settings.sources, &mut [], &mut doc.quarantined);
    let rows = crate::load::rows_naming(&settings.sources, &args.keys)?;
    let mut records = Vec::with_capacity(args.keys.len());
    for key in &args.keys {
        let snapshot = crate::snapshot::about(&settings.state, key)?;
        let names = Names::of(key);
        let export: Vec<ExportRow> = rows
            .iter()
            .filter(|r| r.key == *key)
            .map(|r| ExportRow { rejected: rejection(&p.export.rejects, r), row: r.clone() })
            .collect();
        let rejected_rows = p
            .export
            .rejects
            .iter()
            .filter(|j| !export.iter().any(|r| *r.row.file == *j.file && r.row.line == j.line))
            .filter(|j| names.in_text(&j.record))
            .cloned()
            .collect();
        let next = next(&names, &doc, &p.export, &export, &snapshot);
        records.push(Explained { key: key.clone(), export, rejected_rows, snapshot, next, remote: None });
    }
    super::release(p);
    if let Some((api, opts)) = &args.remote {
        remote(api, opts, &mut records)?;
    }
    let document = Document { format: FORMAT, records };
    super::stdout_write(|out| match args.format {
        ReportFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, &document).map_err(std::io::Error::from)?;
            writeln!(out)
        }
        ReportFormat::Text => document.records.iter().try_for_each(|e| write_text(out, e)),
    })?;
    Ok(Ended::done())
}

/// The forms a key takes: as an email and as a device identifier, where it reads as either.
struct Names {
    raw: String,
    email: Option<Email>,
    device: Option<DeviceIdent>,
}

impl Names {
    fn of(key: &str) -> Names {
        Names { raw: key.trim().to_lowercase(), email: Email::parse(key).ok(), device: DeviceIdent::parse(key).ok() }
    }

    fn customer(&self, e: &Email) -> bool {
        self.email.as_ref() == Some(e)
    }

    fn device(&self, d: &DeviceIdent) -> bool {
        self.device.as_ref() == Some(d)
    }

    /// Whether a record key (an email, an identifier, or `device -> customer`) names it.
    fn record_key(&self, key: &str) -> bool {
        let (a, b) = key.split_once(" -> ").unwrap_or((key, key));
        let is = |s: &str| {
            self.email.as_ref().is_some_and(|e| e.as_str() == s)
                || self.device.as_ref().is_some_and(|d| d.as_str() == s)
        };
        is(a) || is(b)
    }

    /// Whether a rejected row's text names it (as a whole cell, any case).
    fn in_text(&self, record: &str) -> bool {
        let forms: Vec<String> =
            [self.email.as_ref().map(|e| e.to_string()), self.device.as_ref().map(|d| d.to_string())]
                .into_iter()
                .flatten()
                .map(|s| s.to_lowercase())
                .chain([self.raw.clone()])
                .collect();
        let lower = record.to_lowercase();
        lower.split([',', ';', '\t', '|', '"']).any(|cell| forms.iter().any(|f| cell.trim() == f))
    }

    fn operation(&self, op: &Operation) -> bool {
        match op {
            Operation::CreateCustomer(c) => self.customer(&c.email),
            Operation::UpdateCustomer(u) => self.customer(&u.email),
            Operation::CreateDevice(d) => self.device(&d.identifier),
            Operation::UpdateDevice(u) => self.device(&u.identifier),
            Operation::Assign(a) | Operation::Unassign(a) => self.device(&a.device) || self.customer(&a.customer),
        }
    }
}

/// Why the loader rejected `row`, if it did.
fn rejection(rejects: &[Reject], row: &NamedRow) -> Option<String> {
    rejects.iter().find(|j| *j.file == *row.file && j.line == row.line).map(|j| match &j.column {
        Some(column) => format!("{column}: {}", j.reason),
        None => j.reason.clone(),
    })
}

/// What the next plan does for the key, and why nothing when it does nothing.
fn next(
    names: &Names,
    doc: &crate::plan::Plan,
    export: &crate::model::Export,
    rows: &[ExportRow],
    snap: &About,
) -> Next {
    let operations: Vec<Operation> = doc.operations.iter().filter(|op| names.operation(op)).cloned().collect();
    let quarantined: Vec<Quarantined> = doc.quarantined.iter().filter(|q| names.record_key(&q.key)).cloned().collect();
    let mut why = Vec::new();
    let held_customer = names.email.as_ref().is_some_and(|e| {
        export.is_held_customer(e) || export.ownership.as_ref().is_some_and(|o| o.held_customers.contains(e))
    });
    let held_device = names.device.as_ref().is_some_and(|d| {
        export.is_held_device(d) || export.ownership.as_ref().is_some_and(|o| o.held_devices.contains(d))
    });
    let rejected: Vec<String> =
        rows.iter().filter_map(|r| Some(format!("{}:{} ({})", r.row.file, r.row.line, r.rejected.as_ref()?))).collect();
    let taken = rows.iter().any(|r| r.rejected.is_none());
    let in_snapshot = snap.customer.is_some() || snap.device.is_some() || !snap.assignments.is_empty();
    let guard = doc.guard.as_ref().filter(|g| g.refused);
    let state = if !operations.is_empty() {
        let n = operations.len();
        match guard {
            Some(g) => {
                why.push(format!(
                    "the plan has {n} change(s) for it, but apply refuses the whole plan: {}; review the plan, then raise the limit or apply with --force",
                    g.explain()
                ));
                "withheld_by_guard"
            }
            None => {
                why.push(format!("the next apply sends {n} change(s) for it (listed under operations)"));
                "will_change"
            }
        }
    } else if let Some(q) = quarantined.iter().find(|q| q.waits_for.is_none()) {
        why.push(format!(
            "quarantined: Telemetron refused its {} {} in {} run(s) in a row (last: run {}): {}; it is not sent again until its export row changes",
            q.record.as_str(),
            q.key,
            q.runs,
            q.last_run.map_or_else(|| "?".into(), |r| r.to_string()),
            q.message
        ));
        "quarantined"
    } else if let Some(q) = quarantined.first() {
        let first = q.waits_for.as_deref().unwrap_or("another record");
        why.push(format!("its {} {} waits for {first}, which is quarantined", q.record.as_str(), q.key));
        "waiting"
    } else if held_customer || held_device {
        let at = if rejected.is_empty() { "a rejected row of the export".to_string() } else { rejected.join(", ") };
        why.push(format!(
            "held by a rejected row: {at} names it, so its record and assignments stay as they are until the row is fixed"
        ));
        "held_by_rejected_row"
    } else if taken && in_snapshot {
        why.push("the export and the snapshot agree: nothing to send".into());
        "in_step"
    } else if taken {
        why.push("the export names it, and the plan has nothing for it".into());
        "in_step"
    } else if in_snapshot {
        why.push(
            "not in the export: Telemetron keeps it (ext-v1 has no delete); only its assignments follow the ownership file"
                .into(),
        );
        "not_in_export"
    } else {
        why.push("neither the exports nor the snapshot name it".into());
        "unknown"
    };
    if !matches!(state, "quarantined" | "waiting") {
        for q in &quarantined {
            let line = crate::cli::report::quarantine_line(q);
            why.push(format!("held back by the quarantine: {line}"));
        }
    }
    if !rejected.is_empty() && state != "held_by_rejected_row" {
        why.push(format!("rejected rows name it: {}", rejected.join(", ")));
    }
    if let Some(w) = &doc.removals_withheld
        && !snap.assignments.is_empty()
    {
        let rows: Vec<String> = w.rows.iter().map(|r| format!("{}:{}", r.file, r.line)).collect();
        why.push(format!(
            "assignment removals are withheld this run ({} in all) while rows that cannot be attributed are rejected: {}",
            w.count,
            rows.join(", ")
        ));
    }
    Next { state, why, operations, quarantined }
}

/// Reads back what Telemetron holds: the customer, or each owner of a device that the export
/// or the snapshot names (ext-v1 has no read of a device).
fn remote(
    api: &crate::cli::settings::ApiSettings,
    opts: &crate::execute::Options,
    records: &mut [Explained],
) -> Result<(), Error> {
    let client = api.client()?;
    let mut wanted: BTreeSet<Email> = BTreeSet::new();
    let customers_of = |e: &Explained| -> BTreeSet<Email> {
        let names = Names::of(&e.key);
        let mut out = BTreeSet::new();
        out.extend(names.email.clone());
        if names.device.is_some() {
            for a in &e.snapshot.assignments {
                out.extend(Email::parse(&a.customer).ok());
            }
            for r in e.export.iter().filter(|r| r.row.kind == "ownership") {
                for c in &r.row.cells {
                    out.extend(Email::parse(&c.value).ok());
                }
            }
            // Its earlier owners too: a removal the log tells can be checked.
            for l in &e.snapshot.log {
                out.extend(l.key.split_once(" -> ").and_then(|(_, c)| Email::parse(c).ok()));
            }
        }
        out
    };
    for e in records.iter() {
        wanted.extend(customers_of(e));
    }
    let stop = std::sync::atomic::AtomicBool::new(false);
    let answers = super::runtime()?.block_on(async {
        let caller = crate::execute::Caller::new(opts, &stop);
        crate::sync::read_back(&client, &caller, opts.concurrency, &wanted, &crate::execute::Silent).await
    });
    let reads: Vec<RemoteRead> = answers.into_iter().map(|(email, answer)| RemoteRead::new(email, answer)).collect();
    for e in records.iter_mut() {
        let names = Names::of(&e.key);
        let want = customers_of(e);
        let mine: Vec<RemoteRead> =
            reads.iter().filter(|r| Email::parse(&r.customer).is_ok_and(|c| want.contains(&c))).cloned().collect();
        let device = names.device.as_ref().map(DeviceIdent::as_str);
        let differences = mine.iter().flat_map(|r| r.differences(&e.snapshot, device)).collect();
        e.remote = Some(Remote { reads: mine, differences });
    }
    Ok(())
}
