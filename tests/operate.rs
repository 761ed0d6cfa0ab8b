//! Operating the tool from cron (issue 12): one settings resolution for every command, JSON
//! logs a pipeline can parse to the last line, a metrics file a Prometheus parser reads, a cron
//! window, saved plans bound to their snapshot, and honest words on missing state.

use crate::apply::{assert_converged, big_org, recorded, remote, sample};
use crate::util::{Emu, KEY, Run, Workdir};

const CONFIG: &str = "sample-data/config.toml";

/// A config that names the snapshot (in a folder of its own) besides the sample's mapping.
fn config_with_state(w: &Workdir) -> &'static str {
    let text = format!("state = \"../var/sync.db\"\n{}", w.read(CONFIG));
    std::fs::create_dir_all(w.join("var")).unwrap();
    w.write("sample-data/ops.toml", text);
    "sample-data/ops.toml"
}

/// Every stderr line as a JSON object; a line that is not one fails the test.
fn json_lines(run: &Run) -> Vec<serde_json::Value> {
    run.stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("stderr line is not JSON ({e}): {l:?}")))
        .collect()
}

#[test]
fn every_command_honours_the_configs_state() {
    let (w, emu) = (sample(), Emu::start());
    let cfg = config_with_state(&w);
    let fast = ["--rate", "500", "--concurrency", "8"];
    w.run_api(&emu, &[&["apply", "--config", cfg][..], &fast].concat()).expect(0);
    // The README's line: heal from Telemetron, then apply, on the snapshot the config names.
    w.run_api(&emu, &[&["verify", "--all", "--heal", "--config", cfg][..], &fast].concat()).expect(0);
    w.run_api(&emu, &["apply", "--config", cfg, "--rate", "500"]).expect(0);
    w.run_api(&emu, &["event", "--config", cfg, "customer", "--email", "walk.in@example.com", "--name", "Walk In"])
        .expect(0);
    let history = w.run(&["history", "--config", cfg, "--format", "json"]).expect(0).json();
    let kinds: Vec<&str> = history.as_array().unwrap().iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["event", "apply", "verify", "apply"], "newest first");
    let undo = w.run(&["undo", "1", "--config", cfg, "--format", "json"]).expect(0).json();
    assert!(!undo["operations"].as_array().unwrap().is_empty(), "run 1's undo plan is in var/sync.db");
    let migrated = w.run(&["snapshot", "migrate", "--config", cfg]).expect(0);
    assert!(migrated.stdout.contains("var/sync.db"), "{}", migrated.stdout);
    // The flag still beats the config.
    let other = w.run(&["history", "--config", cfg, "--state", "other.db"]).expect(64);
    assert!(other.stderr.contains("other.db does not exist"), "{}", other.stderr);
    assert!(!w.join("telemetron-state.db").exists(), "no command fell back to the default path");
    assert_eq!(remote(&emu).0.len(), recorded(&w.join("var/sync.db")).0.len());
}

#[test]
fn global_flags_are_taken_anywhere_on_the_line() {
    let (w, emu) = (Workdir::new(), Emu::start());
    // API flags after the subcommand's own name (a usage error before).
    let out = w
        .command(&["event", "--state", "s.db", "customer", "--email", "ann@x.io", "--base-url", &emu.base_url, "-v"])
        .env("TELEMETRON_API_KEY", KEY)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let help = w.run(&["apply", "--help"]).expect(0);
    let heading = help.stdout.find("Global options:").expect("a heading of its own");
    for flag in ["--base-url", "--api-key-file", "--config", "--log-format", "--metrics-file", "--verbose"] {
        assert!(help.stdout[heading..].contains(flag), "{flag} under Global options:\n{}", help.stdout);
    }
}

#[test]
fn json_logs_are_json_to_the_last_line_which_says_how_the_run_ended() {
    let (w, emu) = (sample(), Emu::with(|c| c.fail_rate = 0.3));
    let mut customers = w.read("sample-data/day1/customers.csv");
    customers.push_str("not-an-email,Broken Row,,,C77777\n");
    w.write("sample-data/day1/customers.csv", customers);
    let run = w.run_api(
        &emu,
        &[
            "apply",
            "--config",
            CONFIG,
            "--state",
            "state.db",
            "--rate",
            "500",
            "--max-retries",
            "0",
            "--log-format",
            "json",
        ],
    );
    let run = run.expect(3);
    let lines = json_lines(&run);
    let reject = lines.iter().find(|l| l["reason"].is_string()).expect("a reject line");
    assert!(reject["file"].as_str().unwrap().ends_with("customers.csv"), "{reject}");
    assert!(reject["line"].as_u64().unwrap() > 1 && reject["column"] == "E-mail", "{reject}");
    let run_id = lines.last().unwrap()["run_id"].as_i64().expect("the run's id");
    assert!(lines.iter().all(|l| l["run_id"] == run_id), "every line carries the run id:\n{}", run.stderr);
    let last = lines.last().unwrap();
    assert_eq!(last["event"], "run_finished", "{last}");
    assert_eq!((last["outcome"].as_str(), last["exit_code"].as_i64()), (Some("partial"), Some(3)), "{last}");
    assert_eq!(last["rejected_rows"], 1, "{last}");
    assert!(last["failed_operations"].as_u64().unwrap() > 0 && last["calls"].as_u64().unwrap() > 0, "{last}");
    assert!(last["operations"]["assignments_added"]["done"].is_u64(), "counts by kind: {last}");
    assert!(last["elapsed_seconds"].is_f64() && last["retries"] == 0, "{last}");
    assert!(run.stdout.contains("calls/s on average, at most"), "the rate says what it is: {}", run.stdout);

    // A fatal error, a bad config and a usage error are JSON too.
    w.write("bad.toml", "[customers.columns]\nemial = \"x\"\n");
    for (args, code) in [
        (vec!["plan", "--config", "bad.toml", "--log-format", "json"], 1),
        (vec!["plan", "--customers", "missing.csv", "--log-format=json"], 1),
        (vec!["--log-format", "json", "plan", "--no-such-flag"], 64),
    ] {
        let run = w.run(&args).expect(code);
        let lines = json_lines(&run);
        assert!(lines.iter().any(|l| l["level"] == "ERROR" && l["message"].is_string()), "{args:?}: {}", run.stderr);
        assert_eq!(lines.last().unwrap()["event"], "run_finished", "{args:?}");
        assert_eq!(lines.last().unwrap()["exit_code"], code, "{args:?}");
    }
}

/// The metrics file is read with the Prometheus client library's own parser.
#[test]
fn the_metrics_file_parses_as_prometheus_text() {
    let (w, emu) = (sample(), Emu::start());
    let fast = ["--state", "state.db", "--rate", "500", "--metrics-file", "sync.prom"];
    w.run_api(&emu, &[&["apply", "--config", CONFIG][..], &fast].concat()).expect(0);
    w.run_api(&emu, &["verify", "--all", "--state", "state.db", "--metrics-file", "sync.prom"]).expect(0);
    // A failed run (no key) keeps the last success's time.
    w.run(&["apply", "--config", CONFIG, "--state", "state.db", "--metrics-file", "sync.prom"]).expect(1);
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(open(sys.argv[1]).read()):
    for s in family.samples:
        out[s.name + json.dumps(s.labels, sort_keys=True)] = s.value
print(json.dumps(out))
"#;
    let parsed = std::process::Command::new("python3").arg("-c").arg(script).arg(w.join("sync.prom")).output();
    let parsed = match parsed {
        Ok(o) if o.status.success() => o,
        other => {
            let why = format!("{other:?}");
            assert!(std::env::var_os("CI").is_none(), "CI needs python3 with prometheus_client: {why}");
            eprintln!("SKIPPED: python3 with prometheus_client is not installed ({why}); .ci/run installs it");
            return;
        }
    };
    let m: serde_json::Value = serde_json::from_slice(&parsed.stdout).unwrap();
    let get = |name: &str, labels: &str| m[format!("telemetron_sync_{name}{labels}")].as_f64();
    let apply = r#"{"command": "apply"}"#;
    assert_eq!(get("last_run_success", apply), Some(0.0), "{m}");
    assert_eq!(get("last_run_exit_code", apply), Some(1.0));
    assert_eq!(get("last_run_outcome", r#"{"command": "apply", "outcome": "failed"}"#), Some(1.0));
    let success = get("last_success_timestamp_seconds", apply).expect("kept from the first apply");
    assert!(success <= get("last_run_start_timestamp_seconds", apply).unwrap(), "{m}");
    assert_eq!(get("last_run_drifted_customers", r#"{"command": "verify"}"#), Some(0.0), "{m}");
    assert!(get("last_run_calls", r#"{"command": "verify"}"#).unwrap() > 0.0, "{m}");
}

#[test]
fn max_duration_stops_at_a_checkpoint_and_the_next_run_finishes() {
    let (w, emu) = (Workdir::new(), Emu::start());
    big_org(&w, "in");
    let started = std::time::Instant::now();
    let cut = w
        .run_api(&emu, &["apply", "--input-dir", "in", "--state", "state.db", "--rate", "100", "--max-duration", "2s"]);
    let cut = cut.expect(3);
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "it stopped when the time was up");
    assert!(cut.stdout.contains("--max-duration reached"), "{}", cut.stdout);
    let left: u64 = cut.stdout.split("calls left").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    assert!(left > 0, "{}", cut.stdout);
    assert!(cut.stderr.contains("the next run continues"), "{}", cut.stderr);
    let sent = emu.emulator.requests().len();
    w.run_api(&emu, &["apply", "--input-dir", "in", "--state", "state.db", "--rate", "500"]).expect(0);
    assert!(emu.emulator.requests().len() > sent, "the next run sent the rest");
    assert_eq!(remote(&emu), recorded(&w.join("state.db")));
    let bad = w.run(&["apply", "--input-dir", "in", "--state", "state.db", "--max-duration", "90"]).expect(64);
    assert!(bad.stderr.contains("90m, 2h"), "{}", bad.stderr);
}

#[test]
fn a_saved_plan_applies_only_to_its_own_snapshot() {
    let (w, emu) = (sample(), Emu::start());
    // Made while the snapshot is missing: only the snapshot this plan creates is its own.
    w.run(&["plan", "--config", CONFIG, "--state", "a.db", "--out", "p.json"]).expect(0);
    w.run(&["baseline", "--config", CONFIG, "--state", "a.db"]).expect(0);
    let other = w.run_api(&emu, &["apply", "--plan", "p.json", "--state", "a.db", "--rate", "500"]).expect(1);
    assert!(other.stderr.contains("made against another snapshot"), "{}", other.stderr);
    assert!(!other.stderr.contains("changed since"), "{}", other.stderr);
    assert!(emu.emulator.requests().is_empty());

    // Inputs are found relative to the plan file, wherever `apply` runs: the day's folder,
    // plan included, is moved before it is applied.
    w.run(&["plan", "--config", CONFIG, "--state", "b.db", "--out", "sample-data/day1/p.json"]).expect(0);
    std::fs::rename(w.join("sample-data/day1"), w.join("reviewed")).unwrap();
    let state = w.join("b.db").display().to_string();
    let out = w
        .command(&["apply", "--plan", "p.json", "--state", &state, "--rate", "500"])
        .current_dir(w.join("reviewed"))
        .env("TELEMETRON_API_KEY", KEY)
        .env("TELEMETRON_BASE_URL", &emu.base_url)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::rename(w.join("reviewed"), w.join("sample-data/day1")).unwrap();
    std::fs::copy(w.join("b.db"), w.join("state.db")).unwrap();
    assert_converged(&w, &emu, "sample-data/day1");
    // A plan of one existing snapshot is refused by another.
    w.run(&["plan", "--config", CONFIG, "--state", "b.db", "--out", "q.json"]).expect(0);
    let other = w.run_api(&emu, &["apply", "--plan", "q.json", "--state", "a.db"]).expect(64);
    let (a, b) = (w.join("a.db").canonicalize().unwrap(), w.join("b.db").canonicalize().unwrap());
    assert!(
        other.stderr.contains(&format!("made against the snapshot {}, not {}", b.display(), a.display())),
        "{}",
        other.stderr
    );
}

/// Issue 37: `apply --plan` from another folder silently made `./telemetron-state.db` and
/// migrated into it; a plan made while its snapshot was missing applied to a second fresh path
/// too (its calls sent twice, two snapshots with one identity). The plan names its snapshot's
/// absolute path: without `--state` that one is used, and any other is refused.
#[test]
fn a_saved_plan_names_its_snapshot_and_applies_to_it_from_anywhere() {
    let (w, emu) = (sample(), Emu::start());
    std::fs::create_dir_all(w.join("work")).unwrap();
    std::fs::create_dir_all(w.join("elsewhere")).unwrap();
    let made = w.run(&["plan", "--config", CONFIG, "--state", "work/big.db", "--out", "big-plan.json"]).expect(0);
    // It says how to apply it: the exact command, with the plan's absolute path.
    let plan_path = w.join("big-plan.json").canonicalize().unwrap();
    assert!(made.stderr.contains(&format!("telemetron-sync apply --plan {}", plan_path.display())), "{}", made.stderr);
    let apply_from = |dir: &str, extra: &[&str]| {
        let out = w
            .command(&[&["apply", "--plan", plan_path.to_str().unwrap(), "--rate", "500"][..], extra].concat())
            .current_dir(w.join(dir))
            .env("TELEMETRON_API_KEY", KEY)
            .env("TELEMETRON_BASE_URL", &emu.base_url)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    // Another fresh path is refused, naming both, and nothing is sent or created.
    let (code, stderr) = apply_from("elsewhere", &["--state", "fresh.db"]);
    assert_eq!(code, Some(64), "{stderr}");
    let big = w.join("work").canonicalize().unwrap().join("big.db");
    assert!(stderr.contains(&big.display().to_string()) && stderr.contains("fresh.db"), "{stderr}");
    assert!(!w.join("elsewhere/fresh.db").exists() && emu.emulator.requests().is_empty());
    // Without --state, from another folder: the plan's own snapshot, not ./telemetron-state.db.
    let (code, stderr) = apply_from("elsewhere", &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(big.exists(), "the plan's snapshot was created");
    assert!(!w.join("elsewhere/telemetron-state.db").exists(), "no snapshot where apply ran");
    let sent = emu.emulator.requests().len();
    // Applied once; a second time it is stale, and nothing is sent twice.
    let (code, stderr) = apply_from("elsewhere", &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("changed since the plan was made"), "{stderr}");
    assert_eq!(emu.emulator.requests().len(), sent);
    std::fs::copy(&big, w.join("state.db")).unwrap();
    assert_converged(&w, &emu, "sample-data/day1");
}

#[test]
fn commands_that_read_a_snapshot_refuse_a_missing_one() {
    let (w, emu) = (Workdir::new(), Emu::start());
    for args in [
        vec!["verify", "--all", "--state", "mistyped.db"],
        vec!["history", "--state", "mistyped.db"],
        vec!["undo", "1", "--state", "mistyped.db"],
    ] {
        let run = w.run_api(&emu, &args).expect(64);
        assert!(run.stderr.contains("mistyped.db does not exist"), "{args:?}: {}", run.stderr);
    }
    assert!(!w.join("mistyped.db").exists());
}

#[test]
fn a_file_missing_from_the_input_folder_is_a_warning_of_the_plan() {
    let w = Workdir::new();
    w.write("in/customers.csv", "email,name\nann@x.io,Ann\n");
    let plan = w.run(&["plan", "--input-dir", "in", "--state", "s.db"]).expect(0);
    assert!(plan.stdout.contains("devices    not reconciled"), "{}", plan.stdout);
    assert!(plan.stdout.contains("ownership  not reconciled"), "{}", plan.stdout);
    let warnings = plan.stdout.lines().find(|l| l.trim_start().starts_with("warnings")).unwrap();
    assert!(warnings.trim_end().ends_with(" 2"), "{warnings}");
}

/// What routes telemetry lands first: an assignment is sent before a customer's new details.
#[test]
fn assignments_go_before_customer_details() {
    let (w, emu) = (Workdir::new(), Emu::start());
    w.write("in/customers.csv", "email,name\nann@x.io,Ann\nbob@x.io,Bob\n");
    w.write("in/devices.csv", "identifier,type\nD1,sensor\nD2,sensor\n");
    w.write("in/ownership.csv", "device_identifier,customer_email\nD1,ann@x.io\n");
    w.run_api(&emu, &["apply", "--input-dir", "in", "--state", "s.db", "--rate", "500"]).expect(0);
    let before = emu.emulator.requests().len();
    w.write("in/customers.csv", "email,name\nann@x.io,Ann Lee\nbob@x.io,Bob\n");
    w.write("in/ownership.csv", "device_identifier,customer_email\nD1,ann@x.io\nD2,bob@x.io\n");
    w.run_api(&emu, &["apply", "--input-dir", "in", "--state", "s.db", "--rate", "500"]).expect(0);
    let paths: Vec<String> = emu.emulator.requests()[before..].iter().map(|r| r.path.clone()).collect();
    let assign = paths.iter().position(|p| p.contains("assign")).expect("an assign call");
    let update = paths.iter().position(|p| p.contains("createOrUpdateCustomer")).expect("an update");
    assert!(assign < update, "{paths:?}");
}

/// `--rate auto` against a limit the client is not told: the run converges, says where it
/// settled, and keeps it for the next run. (How close it gets, and how fast, is measured by
/// scripts/bench-rate-auto.sh, not here.)
#[test]
fn rate_auto_settles_under_a_hidden_limit_and_keeps_it() {
    let (w, emu) = (Workdir::new(), Emu::with(|c| c.rate_limit = Some(200)));
    big_org(&w, "in");
    let args = ["apply", "--input-dir", "in", "--state", "state.db", "--rate", "auto", "--concurrency", "16"];
    let run = w.run_api(&emu, &[&args[..], &["--backoff-ms", "50"]].concat()).expect(0);
    let settled: f64 = run
        .stdout
        .split("rate auto: settled at ")
        .nth(1)
        .and_then(|t| t.split('/').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("{}", run.stdout));
    assert!(settled > 10.0 && settled <= 210.0, "it rose from its start and stayed near the limit: {settled}");
    assert_eq!(remote(&emu), recorded(&w.join("state.db")));
    let conn = crate::util::open_snapshot(w.join("state.db"));
    let kept: String = conn.query_row("SELECT value FROM meta WHERE key = 'auto_rate'", [], |r| r.get(0)).unwrap();
    assert_eq!(kept.parse::<f64>().unwrap(), settled);
    // The next run starts near it (and says so).
    w.write("in/customers.csv", w.read("in/customers.csv") + "late.one@example-1.com,Late\n");
    let next = w.run_api(&emu, &[&args[..], &["-v"]].concat()).expect(0);
    assert!(next.stderr.contains("rate auto: starting near the rate the last run settled at"), "{}", next.stderr);
}

/// `n` devices over `n / 2` customers in `dir`, with long keys and properties so that a
/// baseline's write spills SQLite's page cache into the file. A later `day` shifts some owners,
/// names and firmware, as a next day's export would, and brings `n` new devices.
fn bulk_org(w: &Workdir, dir: &str, n: u64, day: u64) {
    let (mut c, mut d, mut o) = (
        String::from("email,name,address\n"),
        String::from("identifier,type,firmware,location\n"),
        String::from("device_identifier,customer_email\n"),
    );
    let email = |i: u64| format!("customer.number.{i:06}+tag{}@mail-{}.example.com", i % 7, i % 97);
    for i in 0..n / 2 {
        let renamed = if day > 0 && i % 11 == 0 { " (renamed)" } else { "" };
        c += &format!("{},Customer Nº {i}{renamed},\"{} Old Mill Rd, Apt {}\"\n", email(i), i % 900, i % 40);
    }
    for i in 0..if day > 0 { 2 * n } else { n } {
        let ident = format!("SN-{:012X}-{:04}", i.wrapping_mul(2_654_435_761) % 0xFFFF_FFFF_FFFF, i % 9973);
        let fw = if day > 0 && i % 13 == 0 { "2.0.0" } else { "1.4.7" };
        d += &format!("{ident},sensor,{fw},Küche {}\n", i % 17);
        o += &format!("{ident},{}\n", email((i + day * (i % 5)) % (n / 2)));
    }
    w.write(&format!("{dir}/customers.csv"), c).write(&format!("{dir}/devices.csv"), d);
    w.write(&format!("{dir}/ownership.csv"), o);
}

/// Two days of [`bulk_org`] (30,000 devices, then 60,000), day 1 baselined into `state.db`.
fn bulk_days() -> Workdir {
    bulk_days_of(30_000)
}

/// [`bulk_days`] of `n` devices on day 1.
fn bulk_days_of(n: u64) -> Workdir {
    let w = Workdir::new();
    bulk_org(&w, "day1", n, 0);
    bulk_org(&w, "day2", n, 1);
    w.run(&["baseline", "-q", "--input-dir", "day1", "--state", "state.db"]).expect(0);
    w
}

/// Waits until `ready` (true) or until `child` has exited (false).
fn wait_until(child: &mut std::process::Child, ready: impl Fn() -> bool) -> bool {
    loop {
        if ready() {
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// `baseline` writes through SQLite's rollback journal (`Store::write_in_bulk`), not the WAL.
/// Killed at many moments of that write — its journal on disk, pages of the new state already
/// spilled into the file — it changes nothing: `plan`, which opens the snapshot read-only,
/// rolls back the journal the kill left and plans exactly as before the baseline; the
/// baseline run again records everything.
#[test]
fn a_baseline_killed_while_it_writes_changes_nothing() {
    // Big enough that the write outlasts the early kills on a fast machine.
    let w = bulk_days_of(90_000);
    let plan = |w: &Workdir| {
        w.run(&["plan", "-v", "--input-dir", "day2", "--state", "state.db", "--format", "json"]).expect(0)
    };
    let before = plan(&w).json();
    assert!(before["summary"]["api_calls"].as_u64().unwrap() > 1000, "day 2 changes things: {}", before["summary"]);
    let journal = w.join("state.db-journal");
    let mut rolled_back = 0;
    // Dense early: on a fast machine the write after the first spill lasts only tens of ms.
    for ms in [0, 2, 5, 10, 20, 30, 45, 60, 120, 180, 260, 400] {
        let mut child = w.command(&["baseline", "-q", "--input-dir", "day2", "--state", "state.db"]).spawn().unwrap();
        assert!(wait_until(&mut child, || journal.exists()), "the baseline wrote through the rollback journal");
        // Pages of the new state reach the file once SQLite's cache spills: from then on there
        // is something to roll back (before, the file is as it was).
        let modified = || std::fs::metadata(w.join("state.db")).and_then(|m| m.modified()).ok();
        let before_spill = modified();
        if wait_until(&mut child, || modified() != before_spill) {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        child.kill().unwrap();
        let status = child.wait().unwrap();
        if status.success() {
            // Done before the kill: nothing left to test at this moment, or later.
            break;
        }
        #[cfg(unix)]
        if let Ok(meta) = std::fs::metadata(&journal) {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(meta.permissions().mode() & 0o777, 0o600, "the journal holds customer data");
        }
        let after = plan(&w);
        let read = after.json();
        if read != before {
            // Killed after the write committed, before the process ended: all of it, then.
            assert_eq!(
                read["summary"]["api_calls"], 0,
                "killed {ms} ms into the write, a mixed state:\n{}",
                after.stderr
            );
            break;
        }
        rolled_back += usize::from(after.stderr.contains("rolling back the journal a stopped write left"));
    }
    assert!(rolled_back >= 3, "only {rolled_back} kills left a journal to roll back");
    w.run(&["baseline", "-q", "--input-dir", "day2", "--state", "state.db"]).expect(0);
    let last = plan(&w).json();
    assert_eq!(last["summary"]["api_calls"], 0, "{}", last["summary"]);
    let conn = crate::util::open_snapshot(w.join("state.db"));
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal", "the snapshot is back in WAL mode for apply's readers");
}

/// `baseline` writes the customers and devices while it still reads the ownership file, in the
/// transaction the assignments close. An ownership file refused after that write began — a
/// fatal header, every row rejected, an empty file where the snapshot has owners, one bad
/// row under `--strict` — must roll all of it back: every table as before, byte for byte.
#[test]
fn a_baseline_refused_for_its_ownership_file_records_nothing() {
    let w = bulk_days();
    let tables = |w: &Workdir| {
        let conn = crate::util::open_snapshot(w.join("state.db"));
        ["customers", "devices", "assignments"].map(|t| {
            let mut st = conn.prepare(&format!("SELECT * FROM {t} ORDER BY 1, 2")).unwrap();
            let n = st.column_count();
            let rows = st.query_map([], |r| {
                (0..n).map(|i| r.get_ref(i).map(|v| format!("{v:?}"))).collect::<Result<Vec<_>, _>>()
            });
            rows.unwrap().collect::<Result<Vec<_>, _>>().unwrap()
        })
    };
    let before = tables(&w);
    let good = w.read("day2/ownership.csv");
    let lines: Vec<&str> = good.lines().collect();
    let damaged = [
        ("a header without the customer column", "device_identifier,owner\nSN-1,a@b.example\n".to_string(), &[][..]),
        ("every row rejected", lines[0].to_string() + "\n" + &lines[1..].join("\n").replace('@', "") + "\n", &[]),
        ("a header and no rows", format!("{}\n", lines[0]), &[]),
        ("one bad row under --strict", format!("{good}not a device,not an email\n"), &["--strict"][..]),
    ];
    for (what, ownership, flags) in damaged {
        w.write("day2/ownership.csv", ownership);
        let args = [&["baseline", "-q", "--input-dir", "day2", "--state", "state.db"][..], flags].concat();
        let run = w.run(&args);
        assert_ne!(run.code, 0, "{what}: the baseline was refused\n{}", run.stderr);
        assert!(tables(&w) == before, "{what}: the refused baseline changed the snapshot\n{}", run.stderr);
    }
    // The same day with its ownership file intact is recorded: the write itself works.
    w.write("day2/ownership.csv", good);
    w.run(&["baseline", "-q", "--input-dir", "day2", "--state", "state.db"]).expect(0);
    assert!(tables(&w) != before, "the intact day 2 was recorded");
}

/// A `plan` started while a baseline writes (and holds the file, in the rollback journal)
/// waits for it instead of failing with "database is locked", and reads one state whole:
/// all of the baseline's or none of it.
#[test]
fn a_plan_during_a_baseline_waits_and_reads_one_state() {
    let w = bulk_days();
    let plan =
        |w: &Workdir| w.run(&["plan", "--input-dir", "day2", "--state", "state.db", "--format", "json"]).expect(0);
    let before = plan(&w).json();
    let mut child = w.command(&["baseline", "-q", "--input-dir", "day2", "--state", "state.db"]).spawn().unwrap();
    assert!(wait_until(&mut child, || w.join("state.db-journal").exists()));
    let during = plan(&w).json();
    assert!(child.wait().unwrap().success());
    let after = plan(&w).json();
    assert_eq!(after["summary"]["api_calls"], 0, "{}", after["summary"]);
    assert!(during == before || during == after, "a mixed state: {}", during["summary"]);
}

/// On one CPU the reader threads run one after the other instead of side by side: the plan is
/// the same, byte for byte — on a clean day 2, and on one whose ownership file has bad rows and
/// whose snapshot is missing. Needs `taskset` (util-linux); skipped where there is none.
#[test]
fn a_plan_on_one_cpu_is_the_plan_on_two() {
    if std::process::Command::new("taskset").arg("-c").arg("0").arg("true").status().is_err() {
        eprintln!("no taskset: skipped");
        return;
    }
    let w = bulk_days_of(3_000);
    let o = w.read("day2/ownership.csv");
    w.copy_dir(&w.join("day2"), "bad");
    w.write("bad/ownership.csv", o.replacen('\n', "\nnot a device,\"broken\n", 40));
    for (dir, state) in [("day2", "state.db"), ("bad", "state.db"), ("day2", "none.db")] {
        let args = ["plan", "--input-dir", dir, "--state", state, "--format", "json"];
        let two = w.run(&args);
        let cmd = w.command(&args);
        let mut pinned = std::process::Command::new("taskset");
        pinned.args(["-c", "0"]).arg(cmd.get_program()).args(cmd.get_args()).current_dir(w.path());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => pinned.env(k, v),
                None => pinned.env_remove(k),
            };
        }
        let out = pinned.output().unwrap();
        assert_eq!(out.status.code(), Some(two.code), "{dir}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout), two.stdout, "{dir} against {state}");
    }
}
