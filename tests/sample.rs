//! The bundled sample data, as a new user meets it: baseline day 1, then plan day 2.

use std::path::Path;

use crate::util::{Workdir, assert_json_file, repo};

/// A work dir holding `sample-data/` and a snapshot with day 1 recorded.
fn day1_recorded() -> Workdir {
    let w = Workdir::new();
    w.copy_dir(&repo().join("sample-data"), "sample-data");
    let run = w.run(&["baseline", "--config", "sample-data/config.toml", "--state", "state.db"]).expect(0);
    assert!(run.stdout.contains("56 customers, 86 devices, 94 assignments added"), "{}", run.stdout);
    w
}

const DAY2: [&str; 6] =
    ["--config", "sample-data/config.toml", "--input-dir", "sample-data/day2", "--state", "state.db"];

fn args<'a>(first: &[&'a str], rest: &[&'a str]) -> Vec<&'a str> {
    first.iter().chain(rest).copied().collect()
}

#[test]
fn day2_plan_json_is_exactly_the_expected_changes() {
    let w = day1_recorded();
    let run = w.run(&args(&["plan", "--format", "json"], &DAY2)).expect(0);
    assert_json_file(&run.json(), Path::new("fixtures/sample-day2-plan.json"));
    let summary = &run.json()["summary"];
    for key in [
        "customers_to_create",
        "customers_to_update",
        "devices_to_create",
        "devices_to_update",
        "assignments_to_add",
        "assignments_to_remove",
        "api_calls",
        "rejected_rows",
    ] {
        assert!(summary[key].is_u64(), "summary.{key} is an integer");
    }
    assert_eq!(summary["rejected_rows"], 1);
    assert!(
        run.stderr.contains("sample-data/day2/ownership.csv:97: column \"Owner E-mail\": invalid email"),
        "{}",
        run.stderr
    );
}

#[test]
fn day2_text_report_names_changes_and_the_bad_row() {
    let w = day1_recorded();
    let run = w.run(&args(&["plan"], &DAY2)).expect(0);
    for want in [
        "Plan (dry run: nothing was sent to Telemetron)",
        "customers to create                    3",
        "assignments to remove                  5",
        "~ nancy.miller@example.com  phone: \"+1 410 555 9133\" -> \"+1 503 555 0142\"",
        "~ TH-2024555  type: \"thermostat\" -> \"gateway\"",
        "~ GW-2024259  -location (was \"Front door\")",
        "LK-2024185: ashley.nguyen@mail.example.com -> donna.gonzalez@mail.example.com",
        "cynthia.gonzalez@example.org",
        "sample-data/day2/ownership.csv:97: column \"Owner E-mail\": invalid email \"ashley.king@example\"",
    ] {
        assert!(run.stdout.contains(want), "report lacks {want:?}:\n{}", run.stdout);
    }
}

/// The text plan gives the safety guard's verdict beside the summary, before any list of
/// changes: within limits with each count, or the refusal (issue 41, item 4).
#[test]
fn the_text_plan_tells_the_guard_with_the_summary() {
    let w = day1_recorded();
    let first_list = |text: &str| text.find("\nCustomers to create (").unwrap_or_else(|| panic!("{text}"));
    let ok = w.run(&args(&["plan"], &DAY2)).expect(0).stdout;
    let verdict = ok.find("Safety guard: within limits, apply would go ahead: 5 assignments removed (limit ");
    assert!(verdict.is_some_and(|at| at > ok.find("API calls").unwrap() && at < first_list(&ok)), "{ok}");
    let refused = w.run(&args(&["plan", "--max-unassign", "2"], &DAY2)).expect(0).stdout;
    let verdict =
        refused.find("Safety guard: apply would refuse this plan (exit 4) and send nothing: 5 assignments removed");
    assert!(verdict.is_some_and(|at| at < first_list(&refused)), "{refused}");
    assert_eq!(refused.matches("Safety guard").count(), 1, "{refused}");
}

#[test]
fn a_short_report_points_to_full() {
    let w = Workdir::new();
    w.copy_dir(&repo().join("sample-data"), "sample-data");
    // No snapshot: day 1 is all new, more than fit in the short report.
    let run = w.run(&["plan", "--config", "sample-data/config.toml", "--state", "none.db"]).expect(0);
    assert!(run.stdout.contains("... and 76 more (--full lists them all)"), "{}", run.stdout);
    let full = w.run(&["plan", "--config", "sample-data/config.toml", "--state", "none.db", "--full"]).expect(0);
    assert!(!full.stdout.contains("more (--full"));
    assert!(full.stdout.contains("+ TH-2027108 (thermostat)"), "{}", full.stdout);
    assert!(!w.join("none.db").exists(), "plan never creates the snapshot");
}

#[test]
fn detailed_exitcode_tells_changes_from_none() {
    let w = day1_recorded();
    w.run(&args(&["plan", "--detailed-exitcode"], &DAY2)).expect(2);
    let day1 = ["plan", "--detailed-exitcode", "--config", "sample-data/config.toml", "--state", "state.db"];
    let run = w.run(&day1).expect(0);
    assert!(run.stdout.contains("Nothing to change"), "{}", run.stdout);
}

#[test]
fn plan_never_writes_the_snapshot() {
    let w = day1_recorded();
    let before = std::fs::read(w.join("state.db")).unwrap();
    w.run(&args(&["plan"], &DAY2)).expect(0);
    assert_eq!(before, std::fs::read(w.join("state.db")).unwrap());
    let history = w.run(&["history", "--state", "state.db", "--format", "json"]).expect(0);
    let runs = history.json();
    assert_eq!(runs.as_array().unwrap().len(), 1, "only the baseline is a run");
    assert_eq!(runs[0]["kind"], "baseline");
    assert_eq!(runs[0]["outcome"], "ok");
}

#[test]
fn baseline_of_day2_then_plan_is_empty_but_for_the_held_row() {
    let w = day1_recorded();
    // The bad row makes baseline exit 3: finished, some rows rejected.
    w.run(&args(&["baseline"], &DAY2)).expect(3);
    let run = w.run(&args(&["plan", "--format", "json"], &DAY2)).expect(0);
    let s = &run.json()["summary"];
    assert_eq!(s["api_calls"], 0, "{s}");
    assert_eq!(s["rejected_rows"], 1);
}

#[test]
fn out_saves_the_plan_with_input_hashes_and_snapshot_version() {
    let w = day1_recorded();
    let run = w.run(&args(&["plan", "--format", "json", "--out", "plan.json"], &DAY2)).expect(0);
    let saved = w.read_plan("plan.json");
    assert_eq!(saved["summary"], run.json()["summary"]);
    assert_eq!(saved["operations"], run.json()["operations"]);
    let inputs = saved["inputs"].as_array().unwrap();
    assert_eq!(inputs.len(), 3);
    for i in inputs {
        assert_eq!(i["sha256"].as_str().unwrap().len(), 64, "{i}");
    }
    assert_eq!(inputs[2]["kind"], "ownership");
    assert_eq!(inputs[2]["rows"], 96);
    assert_eq!(saved["snapshot"]["generation"], 1);
    assert!(saved["snapshot"]["id"].is_string());
}

#[test]
fn rejects_file_lists_each_bad_row_with_its_reason() {
    let w = day1_recorded();
    w.run(&args(&["plan", "--rejects", "rejects.csv"], &DAY2)).expect(0);
    let text = w.read("rejects.csv");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("file,line,column,reason,record"));
    let row = lines.next().unwrap();
    assert!(
        row.starts_with(r#"sample-data/day2/ownership.csv,97,Owner E-mail,"invalid email ""ashley.king@example"""#),
        "{row}"
    );
    assert!(row.ends_with(",\"TH-2026220,ashley.king@example,\""), "{row}");
    assert_eq!(lines.next(), None);
}
