//! Rendering for people and machines: the text plan report, the rejects CSV, and the one-line
//! form of a bad row used on stderr.
//!
//! Takes finished values (a [`Plan`]) and writes them; decides nothing about what changes.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::Path;

use crate::diff::Change;
use crate::error::Error;
use crate::model::Properties;
use crate::model::{InputInfo, Reject, SnapshotVersion};
use crate::plan::{Operation, Plan};

/// How many entries of each kind the text report shows without `--full`.
pub const EXAMPLES: usize = 10;

pub use crate::load::{reject_line, reject_line_for_log, warning_line};

/// Writes the rejected rows to `path` as CSV (`load::write_rejects`), a file of its owner's alone.
pub fn write_rejects(path: &Path, rejects: &[Reject]) -> Result<(), Error> {
    super::files::replace(path, super::files::Access::Private, |out| crate::load::write_rejects(out, rejects))
        .map_err(|source| Error::Io { what: "write the rejects file", path: path.to_owned(), source })
}

/// The human-readable plan.
pub fn write_plan_text(
    out: &mut dyn Write,
    plan: &Plan,
    inputs: &[InputInfo],
    state: &Path,
    snapshot: &SnapshotVersion,
    full: bool,
) -> io::Result<()> {
    let mut s = String::new();
    let _ = writeln!(s, "Plan (dry run: nothing was sent to Telemetron)");
    let snap_desc = match &snapshot.id {
        None => "no snapshot yet: everything is new".to_string(),
        Some(_) => format!("generation {}", snapshot.generation),
    };
    let _ = writeln!(s, "  snapshot   {} ({snap_desc})", state.display());
    if let Some(saved) = &plan.saved_as {
        let _ = writeln!(s, "  saved as   {}", saved.describe());
    }
    for i in inputs {
        let rows = if i.rows == 1 { "row" } else { "rows" };
        let _ = writeln!(s, "  {:<10} {} ({} {rows})", i.kind, i.path, i.rows);
    }
    for kind in ["customers", "devices", "ownership"].into_iter().filter(|k| !inputs.iter().any(|i| i.kind == *k)) {
        let _ = writeln!(s, "  {kind:<10} not reconciled (no file)");
    }
    let sum = &plan.summary;
    let _ = writeln!(s, "\nSummary");
    for (label, n) in summary_rows(sum).into_iter().chain([("API calls", sum.api_calls)]) {
        let _ = writeln!(s, "  {label:<30} {n:>9}");
    }
    for (label, value) in estimate_lines(plan) {
        let _ = writeln!(s, "  {label:<30} {value}");
    }
    // The guard's verdict beside the summary, whatever it is: a reader of a long plan should
    // not have to reach its end to learn that apply would refuse it.
    if let Some(v) = &plan.guard {
        let _ = writeln!(s, "\n{}", guard_line(v));
    }

    let limit = if full { usize::MAX } else { EXAMPLES };
    let section = |s: &mut String, title: &str, lines: Vec<String>| {
        if lines.is_empty() {
            return;
        }
        let _ = writeln!(s, "\n{title} ({})", lines.len());
        for l in lines.iter().take(limit) {
            let _ = writeln!(s, "  {l}");
        }
        if lines.len() > limit {
            let _ = writeln!(s, "  ... and {} more (--full lists them all)", lines.len() - limit);
        }
    };

    for sec in change_sections(plan) {
        section(&mut s, &sec.title, sec.lines);
    }
    if let Some(w) = &plan.removals_withheld {
        let rows: Vec<String> = w.rows.iter().map(|r| format!("{}:{}", r.file, r.line)).collect();
        let _ = writeln!(
            s,
            "\nAssignment removals withheld: {} removal(s) not planned, because rejected row(s) at {} cannot be attributed to a device or customer (a broken row, a stray quote, or a file that may be cut short) and may be the row that keeps an assignment. Fix those rows and plan again",
            w.count,
            rows.join(", ")
        );
    }
    section(&mut s, "Rejected rows (left out of this plan; their entities are left unchanged)", rejected_lines(plan));
    section(&mut s, "Warnings", warning_lines(plan));
    if plan.operations.is_empty() {
        if plan.summary.rejected_rows == 0 {
            let _ = writeln!(s, "\nNothing to change: Telemetron is in step with the exports.");
        } else {
            let _ = writeln!(
                s,
                "\nNothing to change from the rows that were read; {} rejected row(s) were left out: fix them in the export (listed above) for Telemetron to be in step.",
                plan.summary.rejected_rows
            );
        }
    }
    out.write_all(s.as_bytes())
}

/// The safety guard's verdict in one line: refused, forced, or within limits with each count.
pub fn guard_line(v: &crate::plan::guard::Verdict) -> String {
    if v.refused || v.forced {
        let then = if v.forced {
            "would go ahead because of --force"
        } else {
            "would refuse this plan (exit 4) and send nothing"
        };
        return format!(
            "Safety guard: apply {then}: {}. Check the exports; if the changes are right, apply with --force or raise --max-unassign / --max-changes",
            v.explain()
        );
    }
    let checks: Vec<String> = v.checks.iter().map(|c| format!("{} {} (limit {})", c.count, c.kind, c.limit)).collect();
    format!("Safety guard: within limits, apply would go ahead: {}", checks.join(", "))
}

/// The summary's counts of changes, as the reports label them (the calls apart).
pub fn summary_rows(sum: &crate::plan::Summary) -> [(&'static str, usize); 12] {
    [
        ("customers to create", sum.customers_to_create),
        ("customers to update", sum.customers_to_update),
        ("devices to create", sum.devices_to_create),
        ("devices to update", sum.devices_to_update),
        ("assignments to add", sum.assignments_to_add),
        ("assignments to remove", sum.assignments_to_remove),
        ("devices moved", sum.devices_moved),
        ("customers not in the export", sum.customers_not_in_export),
        ("devices not in the export", sum.devices_not_in_export),
        ("rejected rows", sum.rejected_rows),
        ("warnings", sum.warnings),
        ("quarantined (not sent)", sum.quarantined),
    ]
}

/// The title of the quarantine's section.
pub const QUARANTINE_TITLE: &str =
    "Quarantined: refused by Telemetron run after run, not sent until the export row changes (or --retry-quarantined)";

/// The title of the section of records refused last time that the plan sends again.
pub const FAILING_TITLE: &str = "Failing: refused by Telemetron in their last attempt, sent again by this plan (quarantined once refused in --quarantine-after runs in a row)";

/// One record refused last time that the plan sends again.
pub fn failing_line(f: &crate::plan::quarantine::Failing) -> String {
    format!(
        "{} {}: refused in {} run(s) in a row, last in run {}: {}",
        f.record.as_str(),
        f.key,
        f.runs,
        f.last_run,
        f.message
    )
}

/// One record the quarantine held back, as the reports and `apply` list it.
pub fn quarantine_line(q: &crate::plan::quarantine::Quarantined) -> String {
    let at = q.source.as_ref().map(|s| format!(" ({s})")).unwrap_or_default();
    let line = match &q.waits_for {
        Some(w) => format!("{} {}: waits for the quarantined {w}", q.record.as_str(), q.key),
        None => format!(
            "{} {}: refused in {} run(s) in a row, last in run {}: {}",
            q.record.as_str(),
            q.key,
            q.runs,
            q.last_run.unwrap_or_default(),
            q.message
        ),
    };
    line + &at
}

/// One kind of change, as the reports list it: one line per change, before -> after.
pub struct Section {
    /// The summary key it counts under (`customers_to_create`, `devices_moved`, ...).
    pub id: &'static str,
    pub title: String,
    pub lines: Vec<String>,
}

/// Every kind of change of a plan, in the reports' order (empty ones included).
pub fn change_sections(plan: &Plan) -> Vec<Section> {
    let mut creates_c = Vec::new();
    let mut updates_c = Vec::new();
    let mut creates_d = Vec::new();
    let mut updates_d = Vec::new();
    let mut removes = Vec::new();
    let mut adds = Vec::new();
    for op in &plan.operations {
        match op {
            Operation::CreateCustomer(c) => {
                let mut l = format!("+ {}", c.email);
                for (k, v) in c.record.api_fields() {
                    if let Some(v) = v {
                        let _ = write!(l, "  {k}={v:?}");
                    }
                }
                creates_c.push(l);
            }
            Operation::UpdateCustomer(u) => updates_c.push(format!("~ {}  {}", u.email, customer_change(u))),
            Operation::CreateDevice(c) => {
                creates_d.push(format!("+ {} ({}){}", c.identifier, c.device_type, props_inline(&c.properties)));
            }
            Operation::UpdateDevice(u) => updates_d.push(format!("~ {}  {}", u.identifier, device_change(u))),
            Operation::Unassign(a) => removes.push(format!("- {} from {}", a.device, a.customer)),
            Operation::Assign(a) => adds.push(format!("+ {} to {}", a.device, a.customer)),
        }
    }
    let moves = plan.moves.iter().map(|m| format!("{}: {} -> {}", m.device, join(&m.from), join(&m.to))).collect();
    let nie = &plan.not_in_export;
    let sec = |id, title: &str, lines| Section { id, title: title.to_string(), lines };
    vec![
        sec("customers_to_create", "Customers to create", creates_c),
        sec("customers_to_update", "Customers to update", updates_c),
        sec("devices_to_create", "Devices to create", creates_d),
        sec("devices_to_update", "Devices to update", updates_d),
        sec("devices_moved", "Devices moved (unassign the old owner, then assign the new)", moves),
        sec("assignments_to_remove", "Assignments to remove", removes),
        sec("assignments_to_add", "Assignments to add", adds),
        sec(
            "customers_not_in_export",
            "Customers no longer in the export (they stay in Telemetron: ext-v1 has no delete)",
            nie.customers.iter().map(|e| e.to_string()).collect(),
        ),
        sec(
            "devices_not_in_export",
            "Devices no longer in the export (they stay in Telemetron: ext-v1 has no delete)",
            nie.devices.iter().map(|d| d.to_string()).collect(),
        ),
        sec("quarantined", QUARANTINE_TITLE, plan.quarantined.iter().map(quarantine_line).collect()),
        sec("failing", FAILING_TITLE, plan.failing.iter().map(failing_line).collect()),
    ]
}

/// What changes of a customer, before -> after, field by field.
pub fn customer_change(u: &crate::plan::CustomerUpdateDoc) -> String {
    let parts: Vec<String> =
        u.changes.iter().map(|(k, c)| format!("{k}: {} -> {}", opt(&c.before), opt(&c.after))).collect();
    parts.join("; ")
}

/// What changes of a device: its type, and each property key changed, added or removed.
pub fn device_change(u: &crate::plan::DeviceUpdateDoc) -> String {
    let mut parts = Vec::new();
    if let Some(Change { before, after }) = &u.device_type {
        parts.push(format!("type: {} -> {}", opt(before), opt(after)));
    }
    if let Some(p) = &u.properties {
        for (k, c) in &p.changed {
            parts.push(format!("{k}: {:?} -> {:?}", c.before, c.after));
        }
        for (k, v) in &p.added {
            parts.push(format!("+{k}={v:?}"));
        }
        for (k, v) in &p.removed {
            parts.push(format!("-{k} (was {v:?})"));
        }
    }
    parts.join("; ")
}

/// The duration estimate in words, as (label, value): at the rate it assumes, and at the rate
/// `--rate auto` settled at last when that is another.
pub fn estimate_lines(plan: &Plan) -> Vec<(&'static str, String)> {
    let Some(e) = &plan.estimate else { return Vec::new() };
    let basis = match e.basis {
        "auto_settled" => "--rate auto, where the last run settled",
        "auto_start" => "--rate auto from its start: no run has settled yet",
        _ => "the configured rate",
    };
    let human = crate::plan::human_duration;
    let mut lines = vec![("estimated duration", format!("{} at {}/s ({basis})", human(e.seconds), e.rate))];
    if let (Some(rate), Some(seconds)) = (e.settled_rate, e.seconds_at_settled_rate) {
        lines.push(("  at --rate auto's last rate", format!("{} at {rate:.0}/s", human(seconds))));
    }
    lines
}

fn opt<T: AsRef<str>>(v: &Option<T>) -> String {
    match v {
        Some(v) => format!("{:?}", v.as_ref()),
        None => "(empty)".into(),
    }
}

fn join<T: std::fmt::Display>(list: &[T]) -> String {
    list.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ")
}

pub fn props_inline(p: &Properties) -> String {
    let mut s = String::new();
    for (k, v) in p.to_map() {
        let _ = write!(s, "  {k}={v:?}");
    }
    s
}

/// The rejected rows a plan lists, and a line counting those it only counted (past
/// `[limits] rejects_kept` in a file).
pub fn rejected_lines(plan: &Plan) -> Vec<String> {
    let mut lines: Vec<String> = plan.rejected.iter().map(reject_line).collect();
    let unlisted = plan.summary.rejected_rows.saturating_sub(plan.rejected.len());
    if unlisted > 0 {
        lines.push(format!(
            "... and {} more rejected rows, counted but not listed ([limits] rejects_kept keeps the first of each file)",
            crate::plan::thousands(unlisted)
        ));
    }
    lines
}

/// The warnings a plan lists, and a line counting those it only counted.
pub fn warning_lines(plan: &Plan) -> Vec<String> {
    let mut lines: Vec<String> = plan.warnings.iter().map(warning_line).collect();
    let unlisted = plan.summary.warnings.saturating_sub(plan.warnings.len());
    if unlisted > 0 {
        lines.push(format!("... and {} more warnings, counted but not listed", crate::plan::thousands(unlisted)));
    }
    lines
}
