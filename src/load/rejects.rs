//! Rejected rows and warnings as people read them: one line each for the log, and the rejects
//! file (CSV, as the exports are).

use crate::model::{Reject, Warning};

/// The log target of the rejected rows and warnings: their events say everything in their
/// message, and their fields (file, line, column, reason) are for JSON consumers.
pub const ROWS: &str = "telemetron_sync::rows";

/// `file:line: column "c": reason`: one bad row on one line.
pub fn reject_line(r: &Reject) -> String {
    match &r.column {
        Some(c) => format!("{}:{}: column {c:?}: {}", r.file, r.line, r.reason),
        None => format!("{}:{}: {}", r.file, r.line, r.reason),
    }
}

/// [`reject_line`] for a log line: with `--log-pii=false`, the values its reason quotes are
/// tokens (the rejects file and the plan keep them).
pub fn reject_line_for_log(r: &Reject) -> String {
    let reason = crate::pii::scrub_quoted(&r.reason);
    match &r.column {
        Some(c) => format!("{}:{}: column {c:?}: {reason}", r.file, r.line),
        None => format!("{}:{}: {reason}", r.file, r.line),
    }
}

/// A warning as `file:line: message` (`file: message` when it is about the whole file).
pub fn warning_line(w: &Warning) -> String {
    match w.line {
        0 => format!("{}: {}", w.file, w.message),
        line => format!("{}:{line}: {}", w.file, w.message),
    }
}

/// Writes rejected rows as CSV: file, line, column, reason, record (the only CSV written).
/// Every cell goes through [`spreadsheet_safe`]: the file is made to be opened in a spreadsheet,
/// and its cells hold what the export held.
pub fn write_rejects(out: &mut dyn std::io::Write, rejects: &[Reject]) -> std::io::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(["file", "line", "column", "reason", "record"])?;
    for r in rejects {
        let line = r.line.to_string();
        let cells = [&*r.file, &line, r.column.as_deref().unwrap_or(""), &r.reason, &r.record];
        w.write_record(cells.map(spreadsheet_safe).iter().map(|c| c.as_bytes()))?;
    }
    w.flush()
}

/// A cell a spreadsheet shows as text, never runs: one that begins with `=`, `+`, `-`, `@`, a
/// tab or a carriage return (a formula, or one hidden behind white space: OWASP's CSV injection
/// rule) gets a leading `'`; control characters are escaped ([`crate::text::inert`]).
pub fn spreadsheet_safe(cell: &str) -> std::borrow::Cow<'_, str> {
    let inert = crate::text::inert(cell);
    if !cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        return inert;
    }
    std::borrow::Cow::Owned(format!("'{inert}"))
}
