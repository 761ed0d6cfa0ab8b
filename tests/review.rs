//! Reports people review: `plan --format markdown` of the sample day 2 in full, cut to a size,
//! and with hostile values; the duration estimate in every report and in `apply`'s first line.

use std::path::Path;

use crate::util::{Emu, Workdir, repo};

const DAY2: [&str; 6] =
    ["--config", "sample-data/config.toml", "--input-dir", "sample-data/day2", "--state", "state.db"];

fn day1_recorded() -> Workdir {
    let w = Workdir::new();
    w.copy_dir(&repo().join("sample-data"), "sample-data");
    w.run(&["baseline", "--config", "sample-data/config.toml", "--state", "state.db"]).expect(0);
    w
}

fn plan(w: &Workdir, extra: &[&str]) -> String {
    let mut args = vec!["plan"];
    args.extend(DAY2);
    args.extend(extra);
    w.run(&args).expect(0).stdout
}

/// Compares `actual` with the text file `expected` (relative to the repo); `UPDATE_EXPECT=1`
/// rewrites it.
#[track_caller]
fn assert_text_file(actual: &str, expected: &Path) {
    let path = repo().join(expected);
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_EXPECT=1 writes it)", path.display()));
    assert!(actual == want, "{} differs (UPDATE_EXPECT=1 rewrites it)\n--- actual\n{actual}", path.display());
}

/// The lines of `md` outside fenced code blocks.
fn outside_fences(md: &str) -> Vec<&str> {
    let mut fence: Option<String> = None;
    let mut out = Vec::new();
    for line in md.lines() {
        let ticks: String = line.chars().take_while(|c| *c == '`').collect();
        match &fence {
            Some(f) if ticks.len() >= f.len() && line.trim_start_matches('`').trim().is_empty() => fence = None,
            Some(_) => {}
            None if ticks.len() >= 3 => fence = Some(ticks),
            None => out.push(line),
        }
    }
    assert!(fence.is_none(), "a fence is left open:\n{md}");
    out
}

#[test]
fn markdown_of_the_sample_day2_is_the_expected_document() {
    let w = day1_recorded();
    let md = plan(&w, &["--format", "markdown"]);
    assert_text_file(&md, Path::new("fixtures/sample-day2-plan.md"));
    assert!(md.contains("| **API calls** | **"), "{md}");
    assert!(md.contains("| estimated duration | "), "{md}");
    assert!(md.contains("<details><summary>Devices moved"), "{md}");
    assert!(md.contains("Rejected rows"), "{md}");
    // To a file instead, private.
    w.run(&[
        "plan",
        "--format",
        "markdown",
        "--out-report",
        "plan.md",
        "--config",
        "sample-data/config.toml",
        "--input-dir",
        "sample-data/day2",
        "--state",
        "state.db",
    ])
    .expect(0);
    assert_eq!(w.read("plan.md"), md);
}

#[test]
fn a_long_markdown_report_is_cut_to_its_size_with_a_count_of_what_was_left_out() {
    let w = day1_recorded();
    let full = plan(&w, &["--format", "markdown"]);
    let entries = |md: &str| fenced(md).into_iter().filter(|l| !l.starts_with("... and ")).count();
    assert!(!full.contains("Cut to fit"));
    let mut partly = false;
    for size in [2000, 2500, 3000, 3500, 4000] {
        let cut = plan(&w, &["--format", "markdown", "--max-report-size", &size.to_string()]);
        assert!(cut.len() <= size, "{} characters for {size}", cut.len());
        let hidden = entries(&full) - entries(&cut);
        assert!(cut.contains(&format!("{hidden} line(s) not shown")), "{hidden} hidden of {}:\n{cut}", entries(&full));
        partly |= cut.contains("\n... and ");
        // The summary and the guard are never cut.
        assert!(cut.contains("| **API calls** |") && cut.contains("Safety guard"), "{cut}");
        outside_fences(&cut);
    }
    assert!(partly, "some size cuts a section in the middle, with its own count");
}

/// The lines of `md` inside fenced code blocks.
fn fenced(md: &str) -> Vec<&str> {
    let outside = outside_fences(md);
    md.lines().filter(|l| !outside.contains(l) && !l.starts_with("```")).collect()
}

#[test]
fn hostile_values_stay_text_in_markdown() {
    let w = Workdir::new();
    w.write("cfg.toml", "");
    let name = "<script>alert(1)</script> | **bold** ``` `x` \u{202e}evil\u{202c} שלום";
    w.write("in/customers.csv", format!("email,name\n\"a@x.io\",\"{name}\"\n"));
    w.write("in/devices.csv", "identifier,type,note\nD-1,\"<img src=x onerror=alert(1)>\",\"]]></details>\"\n");
    w.write("in/ownership.csv", "device_identifier,customer_email\nD-1,a@x.io\n");
    let md = w
        .run(&["plan", "--config", "cfg.toml", "--input-dir", "in", "--state", "none.db", "--format", "markdown"])
        .expect(0)
        .stdout;
    // Shown as text inside a code block; the direction overrides escaped, so they cannot turn
    // the line around.
    assert!(md.contains("<script>alert(1)</script> | **bold** ``` `x` \\u{202e}evil\\u{202c} שלום"), "{md}");
    assert!(!md.contains('\u{202e}'), "{md}");
    for line in outside_fences(&md) {
        for tag in ["<script", "<img", "</details>]", "**bold**"] {
            assert!(!line.contains(tag), "{tag:?} outside a code block: {line:?}\n{md}");
        }
        let html: Vec<&str> = line.match_indices('<').map(|(i, _)| &line[i..]).collect();
        for h in html {
            assert!(
                ["<details>", "</details>", "<summary>", "</summary>", "<sub>", "</sub>"]
                    .iter()
                    .any(|t| h.starts_with(t)),
                "only our own tags outside code: {line:?}"
            );
        }
    }
}

#[test]
fn every_report_carries_the_duration_estimate_and_apply_opens_with_it() {
    let w = day1_recorded();
    let json: serde_json::Value = serde_json::from_str(&plan(&w, &["--format", "json", "--rate", "2"])).unwrap();
    let calls = json["summary"]["api_calls"].as_u64().unwrap();
    assert_eq!(json["summary"]["estimated_seconds"].as_u64(), Some(calls.div_ceil(2)), "{}", json["summary"]);
    assert_eq!(json["estimate"]["rate"], 2.0);
    assert_eq!(json["estimate"]["basis"], "fixed");
    let text = plan(&w, &["--rate", "2"]);
    assert!(text.contains(&format!("estimated duration             {} s at 2/s", calls.div_ceil(2))), "{text}");
    assert!(plan(&w, &["--format", "markdown", "--rate", "2"]).contains("| estimated duration | "));

    let emu = Emu::start();
    let mut args = vec!["apply"];
    args.extend(DAY2);
    args.extend(["--rate", "50"]);
    let run = w.run_api(&emu, &args);
    assert_eq!(run.code, 3, "the bad row: {}", run.stderr);
    let first =
        run.stderr.lines().find(|l| l.contains("calls, at 50/s: about")).unwrap_or_else(|| panic!("{}", run.stderr));
    assert!(first.contains(&format!("{calls} calls")), "{first}");
}

#[test]
fn with_rate_auto_the_estimate_uses_the_rate_the_last_run_settled_at() {
    let w = day1_recorded();
    let json: serde_json::Value = serde_json::from_str(&plan(&w, &["--format", "json", "--rate", "auto"])).unwrap();
    assert_eq!(json["estimate"]["basis"], "auto_start", "no auto run yet");
    // A settled rate, as an auto run stores it.
    let conn = rusqlite::Connection::open(w.join("state.db")).unwrap();
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('auto_rate', '250')", []).unwrap();
    drop(conn);
    let json: serde_json::Value = serde_json::from_str(&plan(&w, &["--format", "json", "--rate", "auto"])).unwrap();
    assert_eq!(
        (json["estimate"]["basis"].as_str(), json["estimate"]["rate"].as_f64()),
        (Some("auto_settled"), Some(250.0))
    );
    let fixed: serde_json::Value = serde_json::from_str(&plan(&w, &["--format", "json", "--rate", "5"])).unwrap();
    assert_eq!(fixed["estimate"]["settled_rate"], 250.0, "{}", fixed["estimate"]);
    let md = plan(&w, &["--format", "markdown", "--rate", "5"]);
    assert!(md.contains("at --rate auto's last rate"), "{md}");
}
