//! `event` against the emulator: single changes applied at once and recorded, so that the
//! nightly plan on exports that include them finds nothing to do; a JSON-lines stream with a bad
//! line in it.

use crate::apply::remote;
use crate::util::{Emu, Workdir, repo};

const CONFIG: &str = "sample-data/config.toml";

/// `event --stdin` in the background against `emu`, its standard streams piped.
fn event_stream(w: &Workdir, emu: &Emu) -> std::process::Child {
    event_stream_with(w, emu, &["--rate", "100"])
}

type Results = std::io::Lines<std::io::BufReader<std::process::ChildStdout>>;

/// An [`event_stream`] that has answered one event (Ann signing up): the child, its stdin and
/// its answers' lines.
fn stream_past_a_first_event(w: &Workdir, emu: &Emu) -> (std::process::Child, std::process::ChildStdin, Results) {
    use std::io::{BufRead, Write};
    let mut child = event_stream(w, emu);
    let mut stdin = child.stdin.take().unwrap();
    let mut results = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    writeln!(stdin, r#"{{"event": "customer", "email": "ann@x.io", "name": "Ann"}}"#).unwrap();
    let first: serde_json::Value = serde_json::from_str(&results.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["ok"], true, "{first}");
    (child, stdin, results)
}

/// [`event_stream`] with these flags.
pub(crate) fn event_stream_with(w: &Workdir, emu: &Emu, flags: &[&str]) -> std::process::Child {
    w.command(&[&["event", "--stdin", "--state", "state.db"][..], flags].concat())
        .env("TELEMETRON_BASE_URL", &emu.base_url)
        .env("TELEMETRON_API_KEY", crate::util::KEY)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn events_round_trip_with_the_nightly_plan() {
    let (w, emu) = (Workdir::new(), Emu::start());
    w.copy_dir(&repo().join("sample-data"), "sample-data");
    w.run_api(&emu, &["apply", "--config", CONFIG, "--state", "state.db", "--rate", "500"]).expect(0);

    let ev = |args: &[&str]| {
        let mut a = vec!["event", "--state", "state.db"];
        a.extend(args);
        w.run_api(&emu, &a)
    };
    let c = ev(&[
        "customer",
        "--email",
        "olivia.bennett@example.com",
        "--name",
        "Olivia Bennett",
        "--phone",
        "+1 720 555 0199",
        "--address",
        "12 Aspen Ct, Denver, CO 80205",
    ])
    .expect(0);
    assert_eq!(c.json()["ok"], true);
    let r = ev(&[
        "register",
        "--device",
        "TH-2031001",
        "--customer",
        "olivia.bennett@example.com",
        "--device-type",
        "thermostat",
        "--property",
        "firmware=4.2.1",
        "--property",
        "location=Bedroom",
        "--property",
        "warranty_until=2029-11-01",
    ])
    .expect(0)
    .json();
    assert_eq!((r["device_created"].as_bool(), r["properties_set"].as_bool()), (Some(true), Some(true)), "{r}");
    ev(&[
        "transfer",
        "--device",
        "LK-2024185",
        "--from",
        "ashley.nguyen@mail.example.com",
        "--to",
        "donna.gonzalez@mail.example.com",
    ])
    .expect(0);
    ev(&["release", "--device", "TH-2025221", "--customer", "kenneth.smith@example.org"]).expect(0);

    // The exports of the next night include those changes.
    let edit = |file: &str, f: &dyn Fn(String) -> String| {
        let path = format!("sample-data/day1/{file}");
        w.write(&path, f(w.read(&path)));
    };
    edit("customers.csv", &|s| {
        s + "C20001,olivia.bennett@example.com,Olivia Bennett,+1 720 555 0199,\"12 Aspen Ct, Denver, CO 80205\"\n"
    });
    edit("devices.csv", &|s| s + "TH-2031001,thermostat,4.2.1,Bedroom,2029-11-01\n");
    edit("ownership.csv", &|s| {
        let kept: String = s.lines().filter(|l| !l.starts_with("TH-2025221,")).map(|l| format!("{l}\n")).collect();
        kept.replace("LK-2024185,ashley.nguyen@mail.example.com,", "LK-2024185,donna.gonzalez@mail.example.com,")
            + "TH-2031001,olivia.bennett@example.com,\n"
    });
    let plan = w.run(&["plan", "--config", CONFIG, "--state", "state.db", "--format", "json"]).expect(0).json();
    assert_eq!(plan["summary"]["api_calls"], 0, "the nightly run finds nothing left: {}", plan["operations"]);
    assert_eq!(plan["summary"]["rejected_rows"], 0);
    let before = emu.writes().len();
    w.run_api(&emu, &["apply", "--config", CONFIG, "--state", "state.db"]).expect(0);
    assert_eq!(emu.writes().len(), before, "and apply touches nothing");
    let (customers, devices) = remote(&emu);
    assert_eq!(customers["olivia.bennett@example.com"].0, "Olivia Bennett");
    assert_eq!(devices["TH-2031001"].2, ["olivia.bennett@example.com"]);
    assert_eq!(devices["LK-2024185"].2, ["donna.gonzalez@mail.example.com"]);
    assert!(devices["TH-2025221"].2.is_empty());
}

#[test]
fn a_stream_with_a_bad_line_answers_every_line_and_goes_on() {
    let (w, emu) = (Workdir::new(), Emu::start());
    let input = [
        r#"{"event": "customer", "email": "ann@x.io", "name": "Ann"}"#,
        r#"{"event": "register", "device": "D1", "customer": "ann@x.io", "device_type": "lock"}"#,
        r#"this is not json"#,
        r#"{"event": "teleport", "device": "D1"}"#,
        r#"{"event": "register", "device": "D2", "customer": "not-an-email"}"#,
        "",
        r#"{"event": "transfer", "device": "D1", "from": "ann@x.io", "to": "bob@x.io"}"#,
        r#"{"event": "release", "device": "D1", "customer": "bob@x.io"}"#,
    ]
    .join("\n");
    let mut child = event_stream(&w, &emu);
    use std::io::Write;
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let results: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let summary: Vec<(u64, bool)> = results.iter().map(|r| (r["line"].as_u64().unwrap(), r["ok"] == true)).collect();
    assert_eq!(summary, [(1, true), (2, true), (3, false), (4, false), (5, false), (7, true), (8, true)]);
    assert!(results[2]["error"].as_str().unwrap().starts_with("not an event"), "{}", results[2]);
    assert!(results[4]["error"].as_str().unwrap().contains("not-an-email"), "{}", results[4]);
    let (customers, devices) = remote(&emu);
    assert!(customers.contains_key("bob@x.io"));
    assert!(devices["D1"].2.is_empty(), "transferred, then released");
    let snap = telemetron_sync::snapshot::read(&w.join("state.db")).unwrap();
    assert_eq!(snap.assignment_count(), 0);
    assert_eq!(snap.customers[&telemetron_sync::model::Email::parse("ann@x.io").unwrap()].record.name(), Some("Ann"));
}

/// Issue 11, case 10: `event --stdin` held the snapshot's lock for the whole stream, so a
/// registration system's never-ending stream locked the nightly apply out. Now the stream takes
/// the lock per event: apply runs while the stream is open, and an event that comes while apply
/// holds the lock waits for it.
#[test]
fn an_event_stream_and_apply_take_turns_with_the_lock() {
    use std::io::Write;
    let (w, emu) = (Workdir::new(), Emu::start());
    w.copy_dir(&repo().join("sample-data"), "sample-data");
    let (mut child, mut stdin, mut results) = stream_past_a_first_event(&w, &emu);

    // The stream is open and idle: apply gets the lock.
    w.run_api(&emu, &["apply", "--config", CONFIG, "--state", "state.db", "--rate", "500"]).expect(0);

    // An event sent while a lock is held waits for it, then goes through.
    let lock = telemetron_sync::snapshot::Lock::acquire(&w.join("state.db")).unwrap();
    writeln!(stdin, r#"{{"event": "register", "device": "D9", "customer": "ann@x.io", "device_type": "lock"}}"#)
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(!remote(&emu).1.contains_key("D9"), "the event waits while the lock is held");
    drop(lock);
    let second: serde_json::Value = serde_json::from_str(&results.next().unwrap().unwrap()).unwrap();
    assert_eq!(second["ok"], true, "{second}");
    drop(stdin);
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert_eq!(remote(&emu).1["D9"].2, vec!["ann@x.io".to_string()]);
}

/// A stream waiting for its next line ends on SIGTERM, as a service manager stops it: once an
/// event's run has listened for signals, the process no longer dies of one by itself, so the
/// stream must see it between events too.
#[test]
fn an_idle_stream_ends_on_sigterm() {
    let (w, emu) = (Workdir::new(), Emu::start());
    let (mut child, stdin, _results) = stream_past_a_first_event(&w, &emu);
    let signalled = std::time::Instant::now();
    std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    assert!(signalled.elapsed() < std::time::Duration::from_secs(5), "took {:?}", signalled.elapsed());
    assert_eq!(status.code(), Some(1), "stopped by the signal, stdin still open");
    drop(stdin);
}

/// One event that Telemetron refuses, or whose values are wrong, fails the command (exit 1,
/// as any refused call), with its error in the result; nothing is recorded for it.
#[test]
fn a_single_event_that_fails_exits_1() {
    let (w, emu) = (Workdir::new(), Emu::start());
    // A transfer of a device Telemetron does not have: the assign skips it.
    let run = w
        .run_api(
            &emu,
            &["event", "--state", "state.db", "transfer", "--device", "NOPE", "--from", "a@x.io", "--to", "b@x.io"],
        )
        .expect(1);
    let result = run.json();
    assert_eq!(result["ok"], false, "{result}");
    assert!(result["error"].as_str().unwrap().contains("NOPE"), "{result}");
    assert!(run.stderr.contains("error:"), "{}", run.stderr);
    let bad =
        w.run_api(&emu, &["event", "--state", "state.db", "release", "--device", "D1", "--customer", "nope"]).expect(1);
    assert!(bad.json()["error"].as_str().unwrap().contains("nope"), "{}", bad.stdout);
}

/// Registering a device Telemetron does not have, without a type to create it with, fails as
/// the API says (404) and names the flag that fixes it (issue 41, item 6).
#[test]
fn registering_an_unknown_device_without_a_type_names_device_type() {
    let (w, emu) = (Workdir::new(), Emu::start());
    let register = ["event", "register", "--state", "s.db", "--device", "NEW-1", "--customer", "a@x.io"];
    let run = w.run_api(&emu, &register).expect(1);
    let result = run.json();
    let error = result["error"].as_str().unwrap_or_default();
    assert!(error.contains("register it with --device-type TYPE"), "{result}");
    assert!(run.stderr.contains("--device-type"), "{}", run.stderr);
    let typed = w.run_api(&emu, &[&register[..], &["--device-type", "lock"]].concat()).expect(0);
    assert_eq!(typed.json()["device_created"], true, "{}", typed.stdout);
}
