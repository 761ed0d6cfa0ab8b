//! Customer data at rest and in logs: every file that can hold it is its owner's alone, whatever
//! the umask; a snapshot or key file others can read is named with the fix; with
//! `--log-pii=false` no email, name, phone or address of the exports reaches stderr.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{Emu, KEY, Run, Workdir, repo};

const CONFIG: &str = "sample-data/config.toml";

fn sample() -> Workdir {
    let w = Workdir::new();
    w.copy_dir(&repo().join("sample-data"), "sample-data");
    w
}

/// The binary under `umask 000` — the most permissive there is — through `sh`.
fn permissive(w: &Workdir, emu: Option<&Emu>, args: &[&str]) -> Command {
    let inner = w.command(args);
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg("umask 000; exec \"$0\" \"$@\"").arg(inner.get_program()).args(inner.get_args());
    cmd.current_dir(w.path()).env_remove("TELEMETRON_STATE").env_remove("TELEMETRON_API_KEY");
    if let Some(emu) = emu {
        cmd.env("TELEMETRON_BASE_URL", &emu.base_url).env("TELEMETRON_API_KEY", KEY);
    }
    cmd
}

fn run(mut cmd: Command) -> Run {
    let out = cmd.output().expect("run the binary");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn mode(w: &Workdir, rel: &str) -> u32 {
    std::fs::metadata(w.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}")).permissions().mode() & 0o777
}

#[test]
fn every_file_with_customer_data_is_0600_under_a_permissive_umask() {
    let w = sample();
    // Control: this umask really is permissive for a file made the ordinary way.
    let touched = Command::new("sh").args(["-c", "umask 000; touch ordinary"]).current_dir(w.path()).status();
    assert!(touched.unwrap().success());
    assert_eq!(mode(&w, "ordinary"), 0o666, "the test's umask is not permissive");

    // plan: the saved plan and the rejects file (day 2 has bad rows).
    let plan = run(permissive(
        &w,
        None,
        &["plan", "--config", CONFIG, "--input-dir", "sample-data/day2", "--state", "none.db", "--out", "p.plan"],
    ));
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let plan = run(permissive(
        &w,
        None,
        &["plan", "--config", CONFIG, "--input-dir", "sample-data/day2", "--state", "none.db", "--rejects", "r.csv"],
    ));
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(w.read("r.csv").lines().count() > 1, "the rejects file has rows");
    // A file that was there, readable by all, is replaced by a private one.
    w.write("old-report.json", "{}");
    std::fs::set_permissions(w.join("old-report.json"), std::fs::Permissions::from_mode(0o644)).unwrap();

    // apply, slowly, so that the snapshot's -wal and -shm can be seen while it runs.
    let emu = Emu::with(|c| c.latency = Duration::from_millis(20));
    let child = permissive(
        &w,
        Some(&emu),
        &[
            "apply",
            "--config",
            CONFIG,
            "--state",
            "s.db",
            "--rate",
            "50",
            "--concurrency",
            "1",
            "--report",
            "old-report.json",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let start = Instant::now();
    let mut seen = None;
    while start.elapsed() < Duration::from_secs(20) {
        if w.join("s.db-wal").exists() && w.join("s.db-shm").exists() {
            seen = Some((mode(&w, "s.db-wal"), mode(&w, "s.db-shm"), mode(&w, "s.db.lock")));
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(seen, Some((0o600, 0o600, 0o600)), "-wal, -shm and lock while apply ran");
    for file in ["p.plan", "r.csv", "s.db", "s.db.lock", "old-report.json"] {
        assert_eq!(mode(&w, file), 0o600, "{file}");
    }
    assert!(w.read("old-report.json").contains("\"outcome\""), "the report was written");
}

#[test]
fn a_snapshot_and_a_key_file_others_can_read_each_warn_once_with_the_fix() {
    let w = sample();
    let emu = Emu::start();
    w.write("key.txt", format!("{KEY}\n"));
    std::fs::set_permissions(w.join("key.txt"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let first = w.run_api(&emu, &["apply", "--config", CONFIG, "--state", "s.db", "--api-key-file", "key.txt"]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let key_warnings: Vec<&str> = first.stderr.lines().filter(|l| l.contains("key.txt")).collect();
    assert_eq!(key_warnings.len(), 1, "{}", first.stderr);
    assert!(
        key_warnings[0].contains("mode 0644") && key_warnings[0].contains("chmod 600 key.txt"),
        "{}",
        key_warnings[0]
    );
    assert!(!first.stderr.contains("s.db can be read"), "a snapshot this run made is private: {}", first.stderr);

    // A snapshot made readable (as an earlier version or a copy with cp would leave it).
    std::fs::set_permissions(w.join("s.db"), std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(w.join("key.txt"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let again = w.run_api(
        &emu,
        &[
            "apply",
            "--config",
            CONFIG,
            "--input-dir",
            "sample-data/day2",
            "--state",
            "s.db",
            "--api-key-file",
            "key.txt",
        ],
    );
    assert!(again.code == 0 || again.code == 3, "{}", again.stderr);
    let snapshot_warnings: Vec<&str> = again.stderr.lines().filter(|l| l.contains("s.db can be read")).collect();
    assert_eq!(
        snapshot_warnings.len(),
        1,
        "one warning, though the snapshot is opened more than once: {}",
        again.stderr
    );
    assert!(snapshot_warnings[0].contains("chmod 600 s.db"), "{}", snapshot_warnings[0]);
    assert!(!again.stderr.contains("key.txt can be read"), "{}", again.stderr);
    // plan only reads it, and says so too.
    let plan = w.run(&["plan", "--config", CONFIG, "--state", "s.db"]);
    assert_eq!(plan.stderr.lines().filter(|l| l.contains("s.db can be read")).count(), 1, "{}", plan.stderr);
}

/// Every email, name, phone and address in the customers files, and every email in the
/// ownership files, of the sample's two days, lowercased.
fn personal_values(w: &Workdir) -> Vec<String> {
    let mut values = Vec::new();
    for day in ["day1", "day2"] {
        for file in ["customers.csv", "ownership.csv"] {
            let path = w.join(&format!("sample-data/{day}/{file}"));
            let mut r = csv::ReaderBuilder::new().flexible(true).from_path(path).unwrap();
            for record in r.records().flatten() {
                for cell in record.iter().map(str::trim) {
                    // Emails anywhere; in the customers file every cell but the customer
                    // number (C10001: the source system's key, not personal data).
                    let key = cell.starts_with('C') && cell[1..].bytes().all(|b| b.is_ascii_digit());
                    if cell.contains('@') || (file == "customers.csv" && !key && cell.len() >= 4) {
                        values.push(cell.to_lowercase());
                    }
                }
            }
        }
    }
    values.sort();
    values.dedup();
    values
}

fn leaked<'a>(values: &'a [String], stderr: &str) -> Vec<&'a String> {
    let stderr = stderr.to_lowercase();
    values.iter().filter(|v| stderr.contains(v.as_str())).collect()
}

#[test]
fn with_log_pii_false_stderr_of_a_failing_run_with_bad_rows_holds_no_personal_data() {
    let w = sample();
    // A bad row that quotes a name, phone and address: the email column holds the name.
    let customers = w.read("sample-data/day2/customers.csv");
    w.write(
        "sample-data/day2/customers.csv",
        format!("{customers}C19999,Zelda Quartermaine,Zelda Quartermaine,+1 555 0100,\"1 Hidden Lane, Nowhere\"\n"),
    );
    let values = personal_values(&w);
    assert!(values.len() > 100 && values.contains(&"zelda quartermaine".to_string()), "{values:?}");
    let emu = Emu::with(|c| c.fail_rate = 0.6);
    let apply = |extra: &[&str]| {
        let mut args = vec!["apply", "--config", CONFIG, "--input-dir", "sample-data/day2"];
        args.extend(["--max-retries", "0", "--rate", "1000", "-vv"]);
        args.extend(extra);
        w.run_api(&emu, &args)
    };
    // Control: without the flag the same run names customers on stderr.
    let control = apply(&["--state", "control.db"]);
    assert_ne!(control.code, 0, "some calls failed");
    let shown = leaked(&values, &control.stderr);
    assert!(
        shown.contains(&&"zelda quartermaine".to_string()) && shown.iter().any(|v| v.contains('@')),
        "the control run shows personal data, or this test sees nothing: {shown:?}"
    );

    for format in ["text", "json"] {
        let state = format!("{format}.db");
        let run = apply(&["--log-pii=false", "--log-format", format, "--state", &state]);
        assert_ne!(run.code, 0, "some calls failed: {}", run.stderr);
        assert!(run.stderr.contains("rejected"), "bad rows were logged: {}", run.stderr);
        assert!(run.stderr.contains("failed"), "failures were logged: {}", run.stderr);
        let shown = leaked(&values, &run.stderr);
        assert!(shown.is_empty(), "{format}: {shown:?} on stderr:\n{}", run.stderr);
        assert!(run.stderr.contains("email#"), "customers are named by token: {}", run.stderr);
        // stdout, the result the operator asked for, is unchanged.
        assert!(!run.stdout.contains("email#"), "{}", run.stdout);
    }
}

#[test]
fn log_pii_in_the_config_and_the_same_token_for_the_same_customer() {
    let w = sample();
    let config = w.read(CONFIG);
    w.write("sample-data/private.toml", format!("log_pii = false\n{config}"));
    let a =
        w.run(&["plan", "--config", "sample-data/private.toml", "--input-dir", "sample-data/day2", "--state", "x.db"]);
    let b =
        w.run(&["plan", "--config", CONFIG, "--input-dir", "sample-data/day2", "--state", "x.db", "--log-pii=false"]);
    assert_eq!(a.code, 0, "{}", a.stderr);
    assert!(!a.stderr.is_empty() && a.stderr.contains("rejected"), "{}", a.stderr);
    assert_eq!(a.stderr, b.stderr, "the config and the flag give the same lines, tokens and all");
    let on = w.run(&[
        "plan",
        "--config",
        "sample-data/private.toml",
        "--input-dir",
        "sample-data/day2",
        "--state",
        "x.db",
        "--log-pii=true",
    ]);
    assert!(on.stderr.contains('@'), "the flag wins over the config: {}", on.stderr);
}
