//! Issue 37: `event` goes through the journal like `apply`. An event whose write Telemetron
//! applied but never answered — the process killed while it waits, or a 500 after the write on
//! every try — leaves its pairs in the journal; the next `apply` reads them back, so that the
//! snapshot, Telemetron and the exports end equal, whatever the exports then say of the event.

use std::time::{Duration, Instant};

use telemetron_sync::emulator::WriteFault;

use crate::apply::{pairs, recorded, remote, spawn_api, unsettled};
use crate::event::event_stream_with;
use crate::util::{Emu, Workdir};

const ASSIGN_ONE: &str = "/assignDeviceToOwners";
const ASSIGN_MANY: &str = "/assignDevicesToOwner";
const UNASSIGN: &str = "/unassignDevicesFromOwner";

/// The events, as JSON lines; each names the endpoints of its writes. Every device and
/// customer is in the starting export; D7 is new (created by its registration).
const EVENTS: [(&str, &[&str]); 6] = [
    (r#"{"event": "register", "device": "D5", "customer": "ann@x.io"}"#, &[ASSIGN_ONE]),
    (r#"{"event": "transfer", "device": "D1", "from": "ann@x.io", "to": "bob@x.io"}"#, &[UNASSIGN, ASSIGN_MANY]),
    (r#"{"event": "release", "device": "D2", "customer": "bob@x.io"}"#, &[UNASSIGN]),
    (r#"{"event": "register", "device": "D7", "customer": "cat@x.io", "device_type": "lock"}"#, &[ASSIGN_ONE]),
    (r#"{"event": "transfer", "device": "D3", "from": "cat@x.io", "to": "dan@x.io"}"#, &[UNASSIGN, ASSIGN_MANY]),
    (r#"{"event": "release", "device": "D4", "customer": "dan@x.io"}"#, &[UNASSIGN]),
];

/// The ownership pairs before the events, and each event's pairs removed and added.
const START: [(&str, &str); 4] = [("D1", "ann"), ("D2", "bob"), ("D3", "cat"), ("D4", "dan")];
type Pairs = &'static [(&'static str, &'static str)];
const CHANGES: [(Pairs, Pairs); 6] = [
    (&[], &[("D5", "ann")]),
    (&[("D1", "ann")], &[("D1", "bob")]),
    (&[("D2", "bob")], &[]),
    (&[], &[("D7", "cat")]),
    (&[("D3", "cat")], &[("D3", "dan")]),
    (&[("D4", "dan")], &[]),
];

fn export(w: &Workdir, dir: &str, owned: &[(String, String)]) {
    w.write(&format!("{dir}/customers.csv"), "email,name\nann@x.io,Ann\nbob@x.io,Bob\ncat@x.io,Cat\ndan@x.io,Dan\n");
    let devices: String = (1..=7).map(|i| format!("D{i},lock\n")).collect();
    w.write(&format!("{dir}/devices.csv"), format!("identifier,type\n{devices}"));
    let own: String = owned.iter().map(|(d, c)| format!("{d},{c}@x.io\n")).collect();
    w.write(&format!("{dir}/ownership.csv"), format!("device_identifier,customer_email\n{own}"));
}

/// The exports after the events: each event is kept or undone by `keep` (a registration
/// taken back, a transfer reversed), so the journal must tell the next run what Telemetron
/// holds whichever way the exports go.
fn truth(keep: impl Fn(usize) -> bool) -> Vec<(String, String)> {
    let mut owned: std::collections::BTreeSet<(String, String)> =
        START.iter().map(|(d, c)| (d.to_string(), c.to_string())).collect();
    for (i, (gone, new)) in CHANGES.iter().enumerate() {
        if keep(i) {
            for (d, c) in *gone {
                owned.remove(&(d.to_string(), c.to_string()));
            }
            owned.extend(new.iter().map(|(d, c)| (d.to_string(), c.to_string())));
        }
    }
    owned.into_iter().collect()
}

/// A starting org (D6 and D7's type known, D5 and D6 unowned) applied to the emulator.
fn start(emu: &Emu) -> Workdir {
    let w = Workdir::new();
    let start: Vec<(String, String)> = START.iter().map(|(d, c)| (d.to_string(), c.to_string())).collect();
    export(&w, "day1", &start);
    // Retries are few and quick: a 500 after every write fails in well under a second.
    w.write("fast.toml", "[run]\nmax_retries = 2\nbackoff_ms = 5\n");
    w.run_api(emu, &["apply", "--input-dir", "day1", "--state", "state.db", "--rate", "500"]).expect(0);
    w
}

/// The next night: `apply` of exports that keep the events `keep` says, then every promise.
fn nightly_converges(w: &Workdir, emu: &Emu, keep: impl Fn(usize) -> bool, what: &str) {
    let owned = truth(keep);
    export(w, "day2", &owned);
    let run = w.run_api(emu, &["apply", "--input-dir", "day2", "--state", "state.db", "--rate", "500", "--force"]);
    assert_eq!(run.code, 0, "{what}\n{}\n{}", run.stdout, run.stderr);
    assert_eq!(unsettled(w), 0, "{what}: no intent is left unsettled");
    assert_eq!(remote(emu), recorded(&w.join("state.db")), "{what}: Telemetron and the snapshot agree");
    let want: std::collections::BTreeSet<(String, String)> =
        owned.iter().map(|(d, c)| (d.clone(), format!("{c}@x.io"))).collect();
    assert_eq!(pairs(&remote(emu).1), want, "{what}: Telemetron holds what the exports say");
    let plan = w.run(&["plan", "--input-dir", "day2", "--state", "state.db", "--format", "json"]).expect(0);
    assert_eq!(plan.json()["summary"]["api_calls"], 0, "{what}: nothing left to do");
}

/// Waits until the emulator holds one more write unanswered than `before`.
fn wait_for_stall(emu: &Emu, before: u64) -> bool {
    let start = Instant::now();
    while emu.emulator.stalled() <= before {
        if start.elapsed() > Duration::from_secs(20) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

/// A small xorshift, so that every run of the test draws the same moments.
fn draws(mut x: u64) -> impl FnMut(u64) -> u64 {
    move |n| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    }
}

#[test]
fn an_event_killed_with_its_write_applied_and_unanswered_is_read_back() {
    let mut draw = draws(0x2545_f491_4f6c_dd1d);
    for round in 0..3u64 {
        let emu = Emu::start();
        let w = start(&emu);
        // Each event once, killed at a seeded one of its writes while Telemetron holds it
        // applied and unanswered; the events the kill never reached go on as usual.
        for (i, (line, writes)) in EVENTS.iter().enumerate() {
            let at = writes[draw(writes.len() as u64) as usize];
            emu.emulator.fault_writes(Some((at, WriteFault::Stall)));
            let event: serde_json::Value = serde_json::from_str(line).unwrap();
            let mut args = vec!["event".to_string(), "--state".into(), "state.db".into()];
            args.push(event["event"].as_str().unwrap().into());
            for (k, v) in event.as_object().unwrap().iter().filter(|(k, _)| *k != "event") {
                args.push(format!("--{}", k.replace('_', "-")));
                args.push(v.as_str().unwrap().into());
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let before = emu.emulator.stalled();
            let mut child = spawn_api(&w, &emu, &args);
            assert!(wait_for_stall(&emu, before), "round {round}, event {i}: the write at {at} never came");
            child.kill().unwrap();
            child.wait().unwrap();
            emu.emulator.fault_writes(None);
        }
        assert!(unsettled(&w) > 0, "the killed calls' pairs are in the journal");
        let keep = draw(64);
        nightly_converges(&w, &emu, |i| keep >> i & 1 == 1, &format!("round {round}, kept {keep:06b}"));
    }
}

#[test]
fn a_stream_killed_with_a_write_applied_and_unanswered_is_read_back() {
    use std::io::Write;
    let mut draw = draws(0x9e37_79b9_7f4a_7c15);
    for round in 0..3u64 {
        let emu = Emu::start();
        let w = start(&emu);
        // The stream stalls at the k-th write of a seeded endpoint, and is killed there.
        let endpoint = [ASSIGN_ONE, ASSIGN_MANY, UNASSIGN][draw(3) as usize];
        emu.emulator.fault_writes(Some((endpoint, WriteFault::Stall)));
        let mut child = event_stream_with(&w, &emu, &["--rate", "200"]);
        let mut stdin = child.stdin.take().unwrap();
        for (line, _) in EVENTS {
            writeln!(stdin, "{line}").unwrap();
        }
        assert!(wait_for_stall(&emu, 0), "round {round}: no write at {endpoint}");
        child.kill().unwrap();
        child.wait().unwrap();
        emu.emulator.fault_writes(None);
        assert!(unsettled(&w) > 0, "round {round}: the killed call's pairs are in the journal");
        let keep = draw(64);
        nightly_converges(&w, &emu, |i| keep >> i & 1 == 1, &format!("round {round} at {endpoint}, kept {keep:06b}"));
    }
}

#[test]
fn an_event_answered_500_after_every_write_is_read_back() {
    for keep in [0b000000u64, 0b111111, 0b010101, 0b101010] {
        let emu = Emu::start();
        let w = start(&emu);
        emu.emulator.fault_writes(Some((UNASSIGN, WriteFault::Fail)));
        let stream: String = EVENTS.iter().map(|(l, _)| format!("{l}\n")).collect();
        let mut child = event_stream_with(&w, &emu, &["--config", "fast.toml", "--rate", "500"]);
        {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(stream.as_bytes()).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        let answers: Vec<serde_json::Value> =
            String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let failed: Vec<bool> = answers.iter().map(|r| r["ok"] != true).collect();
        // Every event with an unassign failed (its unassign applied, unanswered); the others
        // went through. A transfer's assign waits for its unassign and is not sent.
        assert_eq!(failed, [false, true, true, false, true, true], "{answers:#?}");
        assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
        emu.emulator.fault_writes(None);
        assert!(unsettled(&w) > 0, "the unassigns' pairs are in the journal");
        // What Telemetron did: every unassign applied; the snapshot was not told.
        nightly_converges(&w, &emu, |i| keep >> i & 1 == 1, &format!("kept {keep:06b}"));
    }
}
