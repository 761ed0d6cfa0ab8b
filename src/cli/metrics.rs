//! `--metrics-file`: the run's figures in the Prometheus text exposition format, for
//! node_exporter's textfile collector (or anything that reads it).
//!
//! Every sample carries a `command` label, and a run replaces only its own command's samples,
//! so `apply` and `verify` can share one file. The file is written beside its final name and
//! renamed over it, so the collector never reads half a file. "Success" is a run that reached
//! its end (exit 0, 2 or 3 with rejected rows or failed operations); the last success's time is
//! carried over from the previous file when this run did not succeed.

use std::collections::BTreeMap;
use std::path::Path;

use super::exit::{Ended, How};
use crate::error::Error;

/// Metric families: name, help, type.
const FAMILIES: &[(&str, &str, &str)] = &[
    ("last_run_start_timestamp_seconds", "When the last run started (Unix time).", "gauge"),
    ("last_run_end_timestamp_seconds", "When the last run ended (Unix time).", "gauge"),
    ("last_run_duration_seconds", "How long the last run took.", "gauge"),
    ("last_run_exit_code", "The exit code of the last run.", "gauge"),
    ("last_run_outcome", "The outcome of the last run (1 for the outcome it had).", "gauge"),
    ("last_run_success", "1 when the last run reached its end, 0 otherwise.", "gauge"),
    ("last_success_timestamp_seconds", "When a run last reached its end (Unix time).", "gauge"),
    ("last_run_calls", "API calls the last run sent, retries included.", "gauge"),
    ("last_run_retries", "Retries in the last run.", "gauge"),
    ("last_run_failed_operations", "Operations that failed in the last run (the next run retries them).", "gauge"),
    ("last_run_rejected_rows", "Export rows the last run rejected (they need fixing in the export).", "gauge"),
    (
        "last_run_refused_operations",
        "Operations Telemetron refused record by record in the last run (among the failed ones; the export rows need fixing).",
        "gauge",
    ),
    (
        "last_run_quarantined_records",
        "Records the last run held back: refused by Telemetron run after run, not sent until their export rows change.",
        "gauge",
    ),
    (
        "records_failing",
        "Records Telemetron refused in their latest attempt and has not confirmed since (after apply; alert when it stays above 0 for nights).",
        "gauge",
    ),
    ("last_run_calls_left", "Planned calls the last run did not send (a stop or --max-duration).", "gauge"),
    ("last_run_drifted_customers", "verify: customers whose read-back differed from the snapshot.", "gauge"),
];

const PREFIX: &str = "telemetron_sync_";
const OUTCOMES: &[&str] = &[
    "ok",
    "changes",
    "partial",
    "out_of_time",
    "refused",
    "stopped",
    "in_use",
    "refused_key",
    "unreachable",
    "failed",
];

/// Writes the figures of `result` for `command`; a failure to write is logged, never fatal
/// (the run's own outcome matters more than its metrics).
pub fn write(path: &Path, command: &str, started: f64, result: &Result<Ended, Error>) {
    if let Err(e) = try_write(path, command, started, result) {
        tracing::warn!(file = %path.display(), "cannot write the metrics file: {e}");
    }
}

fn try_write(path: &Path, command: &str, started: f64, result: &Result<Ended, Error>) -> std::io::Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    // (family, labels) → value, for every command; this command's samples are replaced.
    let mut samples: BTreeMap<(String, String), String> = parse(&old);
    let label = format!("command=\"{}\"", escape(command));
    let previous_success = samples.get(&("last_success_timestamp_seconds".into(), label.clone())).cloned();
    samples.retain(|(_, labels), _| !labels.split(',').any(|l| l == label));

    let ended = now();
    let code = super::exit::code(result);
    let word = super::exit::outcome_word(result);
    let success = matches!(result, Ok(Ended { how: How::Done | How::Changes | How::Partial, .. }));
    let mut put = |family: &str, labels: &str, value: String| {
        samples.insert((family.to_string(), labels.to_string()), value);
    };
    put("last_run_start_timestamp_seconds", &label, fmt_f(started));
    put("last_run_end_timestamp_seconds", &label, fmt_f(ended));
    put("last_run_duration_seconds", &label, fmt_f(ended - started));
    put("last_run_exit_code", &label, code.to_string());
    for o in OUTCOMES {
        put("last_run_outcome", &format!("{label},outcome=\"{o}\""), u8::from(*o == word).to_string());
    }
    put("last_run_success", &label, u8::from(success).to_string());
    match (success, previous_success) {
        (true, _) => put("last_success_timestamp_seconds", &label, fmt_f(ended)),
        (false, Some(v)) => put("last_success_timestamp_seconds", &label, v),
        (false, None) => {}
    }
    let f = result.as_ref().map(|e| e.figures.clone()).unwrap_or_default();
    put("last_run_calls", &label, f.calls.to_string());
    put("last_run_retries", &label, f.retries.to_string());
    put("last_run_failed_operations", &label, f.failed_operations.to_string());
    put("last_run_rejected_rows", &label, f.rejected_rows.to_string());
    put("last_run_calls_left", &label, f.calls_left.to_string());
    put("last_run_refused_operations", &label, f.refused_operations.to_string());
    put("last_run_quarantined_records", &label, f.quarantined.to_string());
    if let Some(d) = f.drifted {
        put("last_run_drifted_customers", &label, d.to_string());
    }
    if let Some(n) = f.records_failing {
        put("records_failing", &label, n.to_string());
    }

    let mut text = String::new();
    for (family, help, kind) in FAMILIES {
        let rows: Vec<_> = samples.iter().filter(|((f, _), _)| f == family).collect();
        if rows.is_empty() {
            continue;
        }
        text.push_str(&format!("# HELP {PREFIX}{family} {help}\n# TYPE {PREFIX}{family} {kind}\n"));
        for ((_, labels), value) in rows {
            text.push_str(&format!("{PREFIX}{family}{{{labels}}} {value}\n"));
        }
    }
    super::files::replace(path, super::files::Access::Shared, |out| out.write_all(text.as_bytes()))
}

/// The samples of a file this module wrote (other lines are dropped).
fn parse(text: &str) -> BTreeMap<(String, String), String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(PREFIX) else { continue };
        let (Some(open), Some(close)) = (rest.find('{'), rest.rfind('}')) else { continue };
        if close < open {
            continue;
        }
        let family = &rest[..open];
        if !FAMILIES.iter().any(|(f, ..)| *f == family) {
            continue;
        }
        let value = rest[close + 1..].trim();
        if value.is_empty() {
            continue;
        }
        out.insert((family.to_string(), rest[open + 1..close].to_string()), value.to_string());
    }
    out
}

/// A label value escaped as the text format asks.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Seconds since the Unix epoch.
pub fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

fn fmt_f(v: f64) -> String {
    format!("{:.3}", v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::exit::Figures;

    #[test]
    fn a_failed_run_keeps_the_last_success_and_other_commands_samples() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sync.prom");
        write(&path, "apply", 100.0, &Ok(Ended::with(How::Done, Figures { calls: 7, ..Figures::default() })));
        write(&path, "verify", 100.0, &Ok(Ended::with(How::Changes, Figures::default())));
        let first = std::fs::read_to_string(&path).unwrap();
        let success = |text: &str| {
            text.lines()
                .find(|l| l.starts_with("telemetron_sync_last_success_timestamp_seconds{command=\"apply\"}"))
                .map(str::to_string)
        };
        let before = success(&first).expect("a success time after a success");
        write(&path, "apply", 200.0, &Err(Error::Setup("no key".into())));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(success(&text), Some(before));
        assert!(text.contains("telemetron_sync_last_run_success{command=\"apply\"} 0"), "{text}");
        assert!(text.contains("telemetron_sync_last_run_outcome{command=\"apply\",outcome=\"failed\"} 1"), "{text}");
        assert!(text.contains("telemetron_sync_last_run_success{command=\"verify\"} 1"), "{text}");
        // One HELP and TYPE per family, its samples together.
        assert_eq!(text.matches("# TYPE telemetron_sync_last_run_success gauge").count(), 1);
    }
}
