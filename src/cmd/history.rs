//! `history`: the runs recorded in the snapshot (apply, undo, baseline, verify --heal, and each
//! event), newest first.

use crate::cli::exit::Ended;
use crate::cli::settings::Settings;
use crate::cli::{HistoryArgs, ReportFormat};
use crate::error::Error;
use crate::snapshot;

pub fn run(args: &HistoryArgs, s: &Settings) -> Result<Ended, Error> {
    let path = s.existing_state()?;
    if let Some(id) = args.run {
        return one_run(args, path, id);
    }
    let runs = snapshot::runs(path, args.limit)?;
    super::stdout_write(|out| match args.format {
        ReportFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, &runs).map_err(std::io::Error::from)?;
            writeln!(out)
        }
        ReportFormat::Text => {
            if runs.is_empty() {
                return writeln!(out, "no runs recorded in {}", path.display());
            }
            writeln!(
                out,
                "{:>5}  {:<9} {:<21} {:<21} {:<14} summary",
                "run", "kind", "started", "finished", "outcome"
            )?;
            for r in &runs {
                writeln!(
                    out,
                    "{:>5}  {:<9} {:<21} {:<21} {:<14} {}",
                    r.id,
                    r.kind,
                    r.started_at,
                    r.finished_at.as_deref().unwrap_or("-"),
                    r.outcome.as_deref().unwrap_or("unfinished"),
                    r.summary.as_ref().map(summary_text).unwrap_or_default()
                )?;
            }
            Ok(())
        }
    })?;
    Ok(Ended::done())
}

/// `history RUN`: the run, and its part of the sync log, a page at a time.
fn one_run(args: &HistoryArgs, path: &std::path::Path, id: i64) -> Result<Ended, Error> {
    let Some(run) = snapshot::run(path, id)? else {
        return Err(Error::NotHeld(format!("{} has no run {id}; `history` lists the runs it has", path.display())));
    };
    let (records, total) = snapshot::run_log(path, id, args.skip, args.limit)?;
    let inert = crate::text::inert;
    super::stdout_write(|out| match args.format {
        ReportFormat::Json => {
            let doc = serde_json::json!({
                "run": run,
                "records": records,
                "records_total": total,
                "skipped": args.skip,
            });
            serde_json::to_writer_pretty(&mut *out, &doc).map_err(std::io::Error::from)?;
            writeln!(out)
        }
        ReportFormat::Text => {
            writeln!(
                out,
                "run {} ({}): {} to {}, {}",
                run.id,
                run.kind,
                run.started_at,
                run.finished_at.as_deref().unwrap_or("-"),
                run.outcome.as_deref().unwrap_or("unfinished")
            )?;
            if let Some(summary) = &run.summary {
                writeln!(out, "  {}", inert(&summary_text(summary)))?;
            }
            if total == 0 {
                return writeln!(
                    out,
                    "  every record it sent was confirmed (nothing removed, refused, failed or quarantined)"
                );
            }
            writeln!(out, "\nSync log ({total}: what it removed, and each record not simply confirmed):")?;
            for r in &records {
                let from = r.source.as_deref().map(|s| format!(" ({s})")).unwrap_or_default();
                let message = if r.message.is_empty() { String::new() } else { format!(": {}", inert(&r.message)) };
                writeln!(out, "  {:<12} {} {}{from}{message}", r.outcome, r.kind, inert(&r.key))?;
            }
            let shown = args.skip + records.len();
            if shown < total {
                writeln!(out, "  ... {} more (--skip {shown})", total - shown)?;
            }
            Ok(())
        }
    })?;
    Ok(Ended::done())
}

/// A run's summary as one readable line: what it did, in words and counts (zeros left out);
/// `--format json` has the whole of it.
fn summary_text(summary: &serde_json::Value) -> String {
    use serde_json::Value;
    let Some(m) = summary.as_object() else { return summary.to_string() };
    // An event: what it was about.
    let mut about: Vec<String> = Vec::new();
    for key in ["event", "device", "customer", "from", "to", "email"] {
        if let Some(v) = m.get(key).and_then(Value::as_str) {
            about.push(if key == "to" { format!("-> {v}") } else { v.to_string() });
        }
    }
    if let Some(e) = m.get("error").and_then(Value::as_str) {
        let cut: String = e.chars().take(120).collect();
        let more = if cut.len() < e.len() { "..." } else { "" };
        about.push(format!("error: {cut}{more}"));
        return about.join(" ");
    }
    let mut parts: Vec<String> = Vec::new();
    if let Some(ops) = m.get("operations").and_then(Value::as_object) {
        for (kind, c) in ops {
            let (done, failed) = (c["done"].as_u64().unwrap_or(0), c["failed"].as_u64().unwrap_or(0));
            let failed = if failed > 0 { format!(" ({failed} failed)") } else { String::new() };
            parts.push(format!("{} {done}{failed}", kind.replace('_', " ")));
        }
    }
    for (key, v) in m {
        if matches!(key.as_str(), "operations" | "calls_per_second" | "busiest_second" | "failed_operations") {
            continue;
        }
        match v {
            Value::Number(n) if n.as_f64() != Some(0.0) => {
                let n = if key == "elapsed_seconds" {
                    format!("{:.1} s", n.as_f64().unwrap_or(0.0))
                } else {
                    n.to_string()
                };
                let name = key.trim_end_matches("_seconds").replace('_', " ");
                parts.push(format!("{name} {n}"));
            }
            Value::String(s) if key == "stopped" => parts.push(format!("stopped: {s}")),
            _ => {}
        }
    }
    match (about.is_empty(), parts.is_empty()) {
        (false, false) => format!("{}: {}", about.join(" "), parts.join(", ")),
        (false, true) => about.join(" "),
        _ => parts.join(", "),
    }
}

#[cfg(test)]
mod tests {
    use super::summary_text;

    #[test]
    fn summaries_read_as_words() {
        let apply = serde_json::json!({
            "operations": {"assignments_added": {"done": 3, "failed": 1}},
            "calls": 4, "retries": 0, "elapsed_seconds": 1.234, "calls_per_second": 3.2,
            "failed_operations": 1, "rejected_rows": 2,
        });
        assert_eq!(summary_text(&apply), "assignments added 3 (1 failed), calls 4, elapsed 1.2 s, rejected rows 2");
        let event =
            serde_json::json!({"ok": true, "event": "transfer", "device": "D1", "from": "a@x.io", "to": "b@x.io"});
        assert_eq!(summary_text(&event), "transfer D1 a@x.io -> b@x.io");
        let failed = serde_json::json!({"error": "no API key"});
        assert_eq!(summary_text(&failed), "error: no API key");
    }
}
