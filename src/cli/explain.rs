//! `explain`'s document: what it tells of each key, as JSON (its shape is pinned by
//! `fixtures/explain-story.json`) and as text for a terminal.

use std::collections::BTreeSet;
use std::io::Write;

use serde::Serialize;

use crate::load::NamedRow;
use crate::model::Reject;
use crate::plan::Operation;
use crate::plan::quarantine::Quarantined;
use crate::snapshot::About;
use crate::text::inert;

/// The JSON document's `format`: bumped when a field changes meaning or goes.
pub const FORMAT: &str = "telemetron-sync.explain/1";

#[derive(Debug, Serialize)]
pub struct Document {
    pub format: &'static str,
    pub records: Vec<Explained>,
}

/// One key, explained.
#[derive(Debug, Serialize)]
pub struct Explained {
    pub key: String,
    /// The export rows that name it, each with why it was rejected, if it was.
    pub export: Vec<ExportRow>,
    /// Rejected rows that name it but could not be read as rows (their shape is broken).
    pub rejected_rows: Vec<Reject>,
    pub snapshot: About,
    pub next: Next,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<Remote>,
}

#[derive(Debug, Serialize)]
pub struct ExportRow {
    #[serde(flatten)]
    pub row: NamedRow,
    /// Why the loader rejected the row; `None` when it was taken.
    pub rejected: Option<String>,
}

/// What the next `plan` (and so `apply`) does for the key.
#[derive(Debug, Serialize)]
pub struct Next {
    /// `will_change`, `withheld_by_guard`, `quarantined`, `waiting`, `held_by_rejected_row`,
    /// `in_step`, `not_in_export` or `unknown`.
    pub state: &'static str,
    /// The reasons, in words, most telling first.
    pub why: Vec<String>,
    /// The plan's operations for it, as `plan --format json` lists them.
    pub operations: Vec<Operation>,
    /// What the quarantine holds back of it.
    pub quarantined: Vec<Quarantined>,
}

/// What Telemetron holds now, read back, and where it differs from the snapshot.
#[derive(Debug, Serialize)]
pub struct Remote {
    pub reads: Vec<RemoteRead>,
    pub differences: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RemoteRead {
    pub customer: String,
    /// `found`, `not_found` or `error`.
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub telemetron_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    pub devices: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl RemoteRead {
    /// What `queryCustomer` answered for `email`.
    pub fn new(email: &crate::model::Email, answer: crate::sync::ReadBack) -> RemoteRead {
        let mut r = RemoteRead {
            customer: email.to_string(),
            outcome: "error",
            telemetron_id: None,
            name: None,
            phone: None,
            address: None,
            devices: Vec::new(),
            error: None,
        };
        match answer {
            Some(Ok(Some(c))) => {
                r.outcome = "found";
                r.telemetron_id = Some(c.id);
                (r.name, r.phone, r.address) = (c.name, c.phone, c.address);
                r.devices = c.devices;
                r.devices.sort();
            }
            Some(Ok(None)) => r.outcome = "not_found",
            Some(Err(e)) => r.error = Some(e.to_string()),
            None => r.error = Some("stopped".into()),
        }
        r
    }

    /// Where this read differs from what the snapshot holds (`snap`), in words; of a device's
    /// owners, only that device's assignments.
    pub fn differences(&self, snap: &About, device: Option<&str>) -> Vec<String> {
        let who = &self.customer;
        let mut out = Vec::new();
        let stored: BTreeSet<&str> =
            snap.assignments.iter().filter(|a| a.customer == *who).map(|a| a.device.as_str()).collect();
        let known = snap.customer.as_ref().filter(|c| c.email == *who);
        match self.outcome {
            "error" => out.push(format!("{who}: could not be read ({})", self.error.as_deref().unwrap_or(""))),
            "not_found" if known.is_some() || !stored.is_empty() => {
                out.push(format!("Telemetron has no customer {who}; the snapshot says it has"));
            }
            "not_found" => {}
            _ => {
                if let Some(c) = known {
                    let fields = [("name", &c.name, &self.name), ("phone", &c.phone, &self.phone)];
                    for (field, stored, held) in fields.into_iter().chain([("address", &c.address, &self.address)]) {
                        let (stored, held) = (stored.as_deref().unwrap_or(""), held.as_deref().unwrap_or(""));
                        if stored != held {
                            out.push(format!(
                                "{who}'s {field}: the snapshot says {stored:?}, Telemetron holds {held:?}"
                            ));
                        }
                    }
                }
                let held: BTreeSet<&str> = self.devices.iter().map(String::as_str).collect();
                let relevant = |d: &&&str| device.is_none_or(|x| x == **d);
                for d in stored.difference(&held).filter(relevant) {
                    out.push(format!("{d} -> {who}: assigned in the snapshot, not in Telemetron"));
                }
                for d in held.difference(&stored).filter(relevant) {
                    out.push(format!("{d} -> {who}: assigned in Telemetron, not in the snapshot"));
                }
            }
        }
        out
    }
}

/// A run as text: `run 5 (apply, 2026-12-07T01:02:03Z)`.
fn run_text(r: &Option<crate::snapshot::RunRef>) -> String {
    match r {
        None => "a run before this version recorded it".into(),
        Some(r) => match (&r.kind, &r.started_at) {
            (Some(kind), Some(at)) => format!("run {} ({kind}, {at})", r.id),
            _ => format!("run {}", r.id),
        },
    }
}

pub fn write_text(out: &mut dyn Write, e: &Explained) -> std::io::Result<()> {
    let opt = |v: &Option<String>| v.as_deref().map_or_else(|| "-".to_string(), |s| format!("{:?}", inert(s)));
    writeln!(out, "{}", inert(&e.key))?;
    writeln!(out, "  export:")?;
    if e.export.is_empty() && e.rejected_rows.is_empty() {
        writeln!(out, "    no row names it")?;
    }
    for r in &e.export {
        let cells: Vec<String> =
            r.row.cells.iter().map(|c| format!("{}={:?}", inert(&c.column), inert(&c.value))).collect();
        writeln!(out, "    {}:{}  {}", inert(&r.row.file), r.row.line, cells.join(", "))?;
        if let Some(why) = &r.rejected {
            writeln!(out, "      REJECTED: {}", inert(why))?;
        }
    }
    for j in &e.rejected_rows {
        writeln!(out, "    {}:{}  REJECTED: {}  ({})", inert(&j.file), j.line, inert(&j.reason), inert(&j.record))?;
    }
    writeln!(out, "  snapshot:")?;
    let s = &e.snapshot;
    if s.customer.is_none() && s.device.is_none() && s.assignments.is_empty() {
        writeln!(out, "    no record")?;
    }
    if let Some(c) = &s.customer {
        writeln!(
            out,
            "    customer {} (Telemetron id {}): name {}, phone {}, address {}; written by {}",
            inert(&c.email),
            c.telemetron_id.as_deref().map_or("unknown".into(), inert),
            opt(&c.name),
            opt(&c.phone),
            opt(&c.address),
            run_text(&c.confirmed_by)
        )?;
    }
    if let Some(d) = &s.device {
        writeln!(
            out,
            "    device {} (Telemetron id {}): type {}, properties {}; written by {}",
            inert(&d.identifier),
            d.telemetron_id.as_deref().map_or("unknown".into(), inert),
            opt(&d.device_type),
            inert(&d.properties.to_string()),
            run_text(&d.confirmed_by)
        )?;
    }
    for a in &s.assignments {
        writeln!(out, "    assigned {} -> {}; by {}", inert(&a.device), inert(&a.customer), run_text(&a.confirmed_by))?;
    }
    for r in &s.refusals {
        writeln!(
            out,
            "    refused: {} {} in {} run(s) in a row, last run {}: {}",
            r.record,
            inert(&r.key),
            r.runs,
            r.last_run,
            inert(&r.message)
        )?;
    }
    writeln!(out, "  next plan: {}", e.next.state.replace('_', " "))?;
    for w in &e.next.why {
        writeln!(out, "    {}", inert(w))?;
    }
    for op in &e.next.operations {
        writeln!(out, "    {}", inert(&serde_json::to_string(op).unwrap_or_default()))?;
    }
    writeln!(out, "  log (newest first):")?;
    if s.log.is_empty() {
        writeln!(out, "    no entries (a confirmed create, update or assignment is told by the record's run above)")?;
    }
    for l in &s.log {
        let message = if l.message.is_empty() { String::new() } else { format!(": {}", inert(&l.message)) };
        let source = l.source.as_deref().map_or_else(String::new, |s| format!(" ({})", inert(s)));
        writeln!(
            out,
            "    run {} {}  {} {}  {}{message}{source}",
            l.run,
            l.at.as_deref().unwrap_or("-"),
            l.kind,
            inert(&l.key),
            l.outcome
        )?;
    }
    if let Some(r) = &e.remote {
        writeln!(out, "  Telemetron now:")?;
        for read in &r.reads {
            match read.outcome {
                "found" => writeln!(
                    out,
                    "    customer {} (id {}): name {}, phone {}, address {}; devices: {}",
                    inert(&read.customer),
                    read.telemetron_id.as_deref().map_or("?".into(), inert),
                    opt(&read.name),
                    opt(&read.phone),
                    opt(&read.address),
                    if read.devices.is_empty() { "none".into() } else { inert(&read.devices.join(", ")).into_owned() }
                )?,
                "not_found" => writeln!(out, "    no customer {}", inert(&read.customer))?,
                _ => writeln!(
                    out,
                    "    {}: not read ({})",
                    inert(&read.customer),
                    inert(read.error.as_deref().unwrap_or(""))
                )?,
            }
        }
        if r.differences.is_empty() {
            writeln!(out, "    the same as the snapshot")?;
        }
        for d in &r.differences {
            writeln!(out, "    differs: {}", inert(d))?;
        }
    }
    writeln!(out)
}
