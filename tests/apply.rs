//! `apply` through the binary against the emulator over loopback, each test checking the
//! emulator's full final state: Telemetron (the emulator) must hold exactly what the snapshot
//! says it was told, and a new `plan` must find nothing left to do.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use telemetron_sync::model::{Email, Properties};

use crate::util::{Emu, KEY, Run, Workdir, repo};

const CONFIG: &str = "sample-data/config.toml";
const FAST: [&str; 8] = ["--rate", "500", "--concurrency", "8", "--backoff-ms", "5", "--state", "state.db"];

pub(crate) fn sample() -> Workdir {
    let w = Workdir::new();
    w.copy_dir(&repo().join("sample-data"), "sample-data");
    w
}

fn apply(w: &Workdir, emu: &Emu, day: &str, extra: &[&str]) -> Run {
    let mut args = vec!["apply", "--config", CONFIG, "--input-dir", day];
    args.extend(FAST);
    args.extend(extra);
    w.run_api(emu, &args)
}

pub(crate) type CustomerView = (String, Option<String>, Option<String>);
pub(crate) type DeviceView = (Option<String>, BTreeMap<String, String>, Vec<String>);

/// The emulator's customers and devices in a comparable form.
pub(crate) fn remote(emu: &Emu) -> (BTreeMap<String, CustomerView>, BTreeMap<String, DeviceView>) {
    let org = emu.org();
    let s = |v: &Value| v.as_str().map(str::to_string);
    let customers = org["customers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["email"].as_str().unwrap().to_string(), (s(&c["name"]).unwrap(), s(&c["phone"]), s(&c["address"]))))
        .collect();
    let devices = org["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let props = d["properties"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            let owners = d["owners"].as_array().unwrap().iter().map(|o| o.as_str().unwrap().to_string()).collect();
            (d["identifier"].as_str().unwrap().to_string(), (s(&d["type"]), props, owners))
        })
        .collect();
    (customers, devices)
}

/// The snapshot in the same form (a customer created without a name is named after its email).
pub(crate) fn recorded(path: &Path) -> (BTreeMap<String, CustomerView>, BTreeMap<String, DeviceView>) {
    let snap = telemetron_sync::snapshot::read(path).unwrap();
    let customers = snap
        .customers
        .iter()
        .map(|(e, c): (&Email, _)| {
            let r = &c.record;
            let name = r.name().map_or_else(|| e.local_part().to_string(), str::to_string);
            (e.to_string(), (name, r.phone().map(Into::into), r.address().map(Into::into)))
        })
        .collect();
    let devices = snap
        .devices
        .iter()
        .map(|(d, s)| {
            let props: BTreeMap<String, String> = Properties::to_map(&s.record.properties).into_iter().collect();
            let owners = s.owners.iter().map(|o| o.to_string()).collect();
            (d.to_string(), (s.record.device_type.as_deref().map(Into::into), props, owners))
        })
        .collect();
    (customers, devices)
}

/// Telemetron holds what the snapshot says, and the plan for `day` is empty.
#[track_caller]
pub(crate) fn assert_converged(w: &Workdir, emu: &Emu, day: &str) {
    assert_eq!(remote(emu), recorded(&w.join("state.db")), "the emulator's state differs from the snapshot");
    let plan =
        w.run(&["plan", "--config", CONFIG, "--input-dir", day, "--state", "state.db", "--format", "json"]).expect(0);
    let s = &plan.json()["summary"];
    assert_eq!(s["api_calls"], 0, "work left after apply: {s}");
}

#[test]
fn initial_migration_then_day2_leave_exactly_the_exported_state() {
    let (w, emu) = (sample(), Emu::start());
    let run = apply(&w, &emu, "sample-data/day1", &[]).expect(0);
    assert!(run.stdout.contains("finished: Telemetron has everything the exports say"), "{}", run.stdout);
    assert_converged(&w, &emu, "sample-data/day1");
    let (customers, devices) = remote(&emu);
    assert_eq!((customers.len(), devices.len()), (56, 86));
    assert_eq!(customers["nancy.miller@example.com"].1.as_deref(), Some("+1 410 555 9133"));
    assert_eq!(devices["LK-2024185"].2, ["ashley.nguyen@mail.example.com"]);

    // Day 2: one bad row, so exit 3; everything else applied.
    let run = apply(&w, &emu, "sample-data/day2", &[]).expect(3);
    assert!(run.stdout.contains("1 rejected row(s)"), "{}", run.stdout);
    assert!(run.stderr.contains("ownership.csv:97"), "{}", run.stderr);
    assert_converged(&w, &emu, "sample-data/day2");
    let (customers, devices) = remote(&emu);
    assert_eq!(customers["nancy.miller@example.com"].1.as_deref(), Some("+1 503 555 0142"));
    assert_eq!(devices["LK-2024185"].2, ["donna.gonzalez@mail.example.com"], "transferred");
    assert_eq!(devices["TH-2024555"].0.as_deref(), Some("gateway"), "type changed");
    assert!(!devices["GW-2024259"].1.contains_key("location"), "property removed");
    assert_eq!(
        devices["TH-2026220"].2,
        ["nancy.miller@example.com"],
        "the device of the rejected row keeps its day-1 owner"
    );
    assert!(customers.contains_key("cynthia.gonzalez@example.org"), "no delete in ext-v1: the customer stays");
    assert_eq!(customers.len(), 59);

    let history = w.run(&["history", "--state", "state.db", "--format", "json"]).expect(0).json();
    let outcomes: Vec<&str> = history.as_array().unwrap().iter().map(|r| r["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["partial", "ok"]);
}

#[test]
fn customers_that_already_exist_remotely_are_updated_not_duplicated() {
    let (w, emu) = (sample(), Emu::start());
    for email in ["daniel.martinez@mail.example.com", "susan.williams@example.com"] {
        w.run_api(&emu, &["customer", "upsert", "--email", email, "--name", "Someone Else", "--phone", "000"])
            .expect(0);
    }
    let run = apply(&w, &emu, "sample-data/day1", &[]).expect(0);
    assert!(run.stdout.contains("customers created      done       56"), "{}", run.stdout);
    assert_converged(&w, &emu, "sample-data/day1");
    let (customers, _) = remote(&emu);
    assert_eq!(customers.len(), 56, "no duplicates");
    assert_eq!(customers["susan.williams@example.com"].0, "Susan Williams");
    let conflicts = emu.writes().iter().filter(|r| r.status == 409).count();
    assert_eq!(conflicts, 2, "each existing customer met one 409, then was updated");
}

#[test]
fn injected_500s_lost_responses_and_429s_converge() {
    let (w, emu) = (
        sample(),
        Emu::with(|c| {
            c.fail_rate = 0.2;
            c.rate_limit = Some(150);
            c.seed = 11;
        }),
    );
    let mut code = apply(&w, &emu, "sample-data/day1", &["--max-retries", "10"]).code;
    if code == 3 {
        // Retries ran out for some calls: the next run finishes them.
        code = apply(&w, &emu, "sample-data/day1", &["--max-retries", "10"]).code;
    }
    assert_eq!(code, 0);
    assert_converged(&w, &emu, "sample-data/day1");
    let log = emu.writes();
    assert!(log.iter().any(|r| r.status == 500), "failures were injected");
    assert!(log.iter().any(|r| r.status == 429), "the rate limit was hit");
    let (customers, devices) = remote(&emu);
    assert_eq!((customers.len(), devices.len()), (56, 86), "lost responses made no duplicates");
}

/// Starts the binary in the background against `emu` with the test key, output piped.
pub(crate) fn spawn_api(w: &Workdir, emu: &Emu, args: &[&str]) -> std::process::Child {
    w.command(args)
        .env("TELEMETRON_BASE_URL", &emu.base_url)
        .env("TELEMETRON_API_KEY", KEY)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Starts a slow `apply` of day 1 in the background (10 ms latency, 100 calls/s, 2 in flight) and
/// returns once the emulator has answered `calls` requests; also returns the plan's total.
fn slow_apply_until(w: &Workdir, emu: &Emu, calls: usize) -> (std::process::Child, u64) {
    let plan = w.run(&["plan", "--config", CONFIG, "--state", "state.db", "--format", "json"]).expect(0);
    let total = plan.json()["summary"]["api_calls"].as_u64().unwrap();
    assert!(total > calls as u64 + 10, "the plan is long enough to stop in the middle ({total} calls)");
    let child =
        spawn_api(w, emu, &["apply", "--config", CONFIG, "--state", "state.db", "--rate", "100", "--concurrency", "2"]);
    let start = Instant::now();
    while emu.writes().len() < calls && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, total)
}

#[test]
fn kill_9_mid_run_then_a_rerun_converges() {
    let (w, emu) = (sample(), Emu::with(|c| c.latency = Duration::from_millis(10)));
    // 125 calls at 100/s: a quarter second past the first commit, so the recorder has committed at least once.
    let (mut child, total) = slow_apply_until(&w, &emu, 125);
    child.kill().unwrap();
    child.wait().unwrap();
    let sent = emu.writes().len() as u64;
    assert!(sent < total, "killed before the end ({sent} of {total} calls)");
    let partial = telemetron_sync::snapshot::read(&w.join("state.db")).unwrap();
    assert!(!partial.customers.is_empty(), "confirmations were committed while running");

    apply(&w, &emu, "sample-data/day1", &[]).expect(0);
    assert_converged(&w, &emu, "sample-data/day1");
    assert_eq!(remote(&emu).0.len(), 56, "no duplicates after the rerun");
}

/// Issue 11, case 8: a first apply killed while it creates the snapshot used to leave schema 0
/// or 1 or a hot journal, and every later apply failed until `snapshot migrate`. Killed at
/// several moments of its first run, each fresh snapshot is used by the next apply without
/// help, which converges.
#[test]
fn a_first_apply_killed_at_any_moment_leaves_a_usable_snapshot() {
    for ms in [0, 3, 8, 15, 30, 60, 120] {
        let (w, emu) = (sample(), Emu::start());
        let mut child = spawn_api(&w, &emu, &["apply", "--config", CONFIG, "--state", "state.db", "--rate", "500"]);
        std::thread::sleep(Duration::from_millis(ms));
        child.kill().unwrap();
        child.wait().unwrap();
        let rerun = apply(&w, &emu, "sample-data/day1", &[]);
        assert_eq!(rerun.code, 0, "killed after {ms} ms:\n{}\n{}", rerun.stdout, rerun.stderr);
        assert_converged(&w, &emu, "sample-data/day1");
    }
}

#[test]
fn sigterm_finishes_what_is_in_flight_and_exits_non_zero() {
    let (w, emu) = (sample(), Emu::with(|c| c.latency = Duration::from_millis(10)));
    let (child, total) = slow_apply_until(&w, &emu, 50);
    let status = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("interrupted by a signal"), "{stderr}");
    let sent = emu.writes().len() as u64;
    assert!(sent < total, "it stopped sending");
    // Progress counts the calls made, not the calls a stop skipped: each phase's last line
    // says no more than was sent, and the one it stopped in says it did not finish.
    let ended: Vec<(u64, u64)> =
        stderr.lines().filter(|l| l.contains("phase ended")).map(|l| (field(l, "done"), field(l, "total"))).collect();
    assert!(!ended.is_empty(), "{stderr}");
    assert!(ended.iter().map(|(done, _)| done).sum::<u64>() <= sent, "{ended:?} against {sent} requests:\n{stderr}");
    assert!(ended.last().is_some_and(|(done, total)| done < total), "{ended:?}\n{stderr}");
    // What Telemetron confirmed was committed before exiting.
    assert_eq!(remote(&emu).0.len(), telemetron_sync::snapshot::read(&w.join("state.db")).unwrap().customers.len());
    let history = w.run(&["history", "--state", "state.db", "--format", "json"]).expect(0).json();
    assert_eq!(history[0]["outcome"], "stopped");
    apply(&w, &emu, "sample-data/day1", &[]).expect(0);
    assert_converged(&w, &emu, "sample-data/day1");
}

/// The number after `name=` in a log line.
fn field(line: &str, name: &str) -> u64 {
    let at = line.find(&format!("{name}=")).unwrap_or_else(|| panic!("no {name} in {line}")) + name.len() + 1;
    line[at..].split(|c: char| !c.is_ascii_digit()).next().and_then(|n| n.parse().ok()).unwrap()
}

/// Issue 11, case 1: the most common first run adopts an organisation whose devices already
/// exist in Telemetron (they send telemetry) with another type. The plan creates them inside
/// assign calls; Telemetron answers wasCreated=false and keeps the old type. The snapshot must
/// not record the planned type as if it were there: the executor sets the type with POST
/// /device first, and Telemetron ends up exactly as the snapshot says.
#[test]
fn adopting_devices_that_already_exist_sets_their_type() {
    let (w, emu) = (sample(), Emu::start());
    let devices = w.read("sample-data/day1/devices.csv");
    let existing: Vec<&str> = devices.lines().skip(1).step_by(4).map(|l| l.split(',').next().unwrap()).collect();
    assert!(existing.len() > 10);
    for d in &existing {
        w.run_api(&emu, &["device", "upsert", "--identifier", d, "--type", "legacy-model"]).expect(0);
    }
    let run = apply(&w, &emu, "sample-data/day1", &[]).expect(0);
    let (_, remote_devices) = remote(&emu);
    for d in &existing {
        let t = remote_devices[*d].0.as_deref();
        assert!(t.is_some_and(|t| t != "legacy-model"), "{d} kept the old type {t:?}:\n{}", run.stdout);
    }
    assert_converged(&w, &emu, "sample-data/day1");
}

/// Issue 11, case 2: a device the snapshot has but Telemetron lost, given a new owner beside a
/// new device of another type, used to ride along in the call that auto-creates the new one,
/// and was created with the other device's type. Now it is skipped, reported, forgotten by the
/// snapshot, and created with its own type by the next run.
#[test]
fn a_device_telemetron_lost_is_not_auto_created_with_another_type() {
    let (w, emu) = (sample(), Emu::start());
    apply(&w, &emu, "sample-data/day1", &[]).expect(0);
    let devices = w.read("sample-data/day1/devices.csv");
    let lost_row = devices.lines().find(|l| l.starts_with("TH-")).unwrap().to_string();
    let lost = lost_row.split(',').next().unwrap().to_string();
    let lost_type = lost_row.split(',').nth(1).unwrap().to_string();
    emu.emulator.drift(&serde_json::from_value(serde_json::json!({"delete_devices": [lost]})).unwrap()).unwrap();
    // Day 1 again, plus a new gateway for a customer, who is also given the lost thermostat.
    let owner = "susan.williams@example.com";
    w.copy_dir(&w.join("sample-data/day1"), "next");
    w.write("next/devices.csv", format!("{devices}GW-NEW-0001,gateway,1.0.0,Attic,2030-01-01\r\n"));
    let own = w.read("sample-data/day1/ownership.csv");
    w.write("next/ownership.csv", format!("{own}GW-NEW-0001,{owner},\r\n{lost},{owner},\r\n"));
    let first = apply(&w, &emu, "next", &[]).expect(3);
    assert!(first.stdout.contains("Telemetron does not have this device"), "{}", first.stdout);
    let (_, remote_devices) = remote(&emu);
    assert!(
        !remote_devices.contains_key(&lost),
        "not created with the gateway's type: {:?}",
        remote_devices.get(&lost)
    );
    assert_eq!(remote_devices["GW-NEW-0001"].0.as_deref(), Some("gateway"));
    let snap = telemetron_sync::snapshot::read(&w.join("state.db")).unwrap();
    assert!(!snap.devices.contains_key(lost.as_str()), "the snapshot forgot the lost device");

    apply(&w, &emu, "next", &[]).expect(0);
    assert_eq!(remote(&emu).1[&lost].0.as_deref(), Some(lost_type.as_str()), "created with its own type");
    assert_converged(&w, &emu, "next");
}

/// 3,000 devices over 700 customers, in `dir` (default headers): a migration of ~1,400 calls.
pub(crate) fn big_org(w: &Workdir, dir: &str) {
    let mut c = String::from("email,name\n");
    let (mut d, mut o) = (String::from("identifier,type\n"), String::from("device_identifier,customer_email\n"));
    for i in 0..700 {
        c += &format!("customer.number{i}@example-{}.com,Customer {i}\n", i % 13);
    }
    for i in 0..3000u64 {
        let ident = format!("SN-{:08X}", i.wrapping_mul(2_654_435_761) % 0xFFFF_FFFF);
        d += &format!("{ident},sensor\n");
        o += &format!("{ident},customer.number{}@example-{}.com\n", i % 700, (i % 700) % 13);
    }
    w.write(&format!("{dir}/customers.csv"), c).write(&format!("{dir}/devices.csv"), d);
    w.write(&format!("{dir}/ownership.csv"), o);
}

/// Intents no run has settled yet.
pub(crate) fn unsettled(w: &Workdir) -> i64 {
    let conn = crate::util::open_snapshot(w.join("state.db"));
    conn.query_row("SELECT count(*) FROM intents", [], |r| r.get(0)).unwrap()
}

/// The (device, customer) pairs of a state.
pub(crate) fn pairs(devices: &BTreeMap<String, DeviceView>) -> std::collections::BTreeSet<(String, String)> {
    devices.iter().flat_map(|(d, (_, _, owners))| owners.iter().map(move |o| (d.clone(), o.clone()))).collect()
}

/// Issue 11, case 3: with half of the emulator's 500s coming after the write and no retries,
/// assignments land in Telemetron while the snapshot stays without them. The journal keeps
/// those calls' intents; the next run reads them back before planning, so an export that no
/// longer lists those devices unassigns them, and Telemetron ends exactly as the export says.
#[test]
fn a_call_whose_outcome_is_unknown_is_read_back_before_the_next_plan() {
    let (w, emu) = (
        sample(),
        Emu::with(|c| {
            c.fail_rate = 0.5;
            c.seed = 7;
        }),
    );
    let first = apply(&w, &emu, "sample-data/day1", &["--max-retries", "0"]);
    assert_eq!(first.code, 3, "{}\n{}", first.stdout, first.stderr);
    assert!(unsettled(&w) > 0, "some calls' outcome is unknown");
    let lost: Vec<_> = pairs(&remote(&emu).1).difference(&pairs(&recorded(&w.join("state.db")).1)).cloned().collect();
    assert!(!lost.is_empty(), "Telemetron has assignments the snapshot was never told of");

    // The next export lists only the first half of the ownership rows.
    w.copy_dir(&w.join("sample-data/day1"), "half");
    let own = w.read("sample-data/day1/ownership.csv");
    let lines: Vec<&str> = own.lines().collect();
    w.write("half/ownership.csv", lines[..lines.len() / 2].iter().map(|l| format!("{l}\r\n")).collect::<String>());
    let second = apply(&w, &emu, "half", &["--max-retries", "30", "--force"]);
    assert_eq!(second.code, 0, "{}\n{}", second.stdout, second.stderr);
    assert!(second.stderr.contains("settled the earlier run's calls"), "{}", second.stderr);
    assert_eq!(unsettled(&w), 0);
    // Telemetron equals the snapshot, and the plan of the half export is empty: every lost
    // pair the export dropped was unassigned, every one it kept is known.
    assert_converged(&w, &emu, "half");
}

/// Issue 11, "done when": SIGKILL at ten moments of a 3,000-device migration — the first
/// within the first 40 ms, while the first run creates the snapshot — with a fifth of the
/// calls failing (half of those after the write). Every run picks up where the last one
/// stopped; the end is exact and no intent is left unsettled.
#[test]
fn a_kill_storm_during_a_migration_ends_exact_with_no_unsettled_intent() {
    let (w, emu) = (
        Workdir::new(),
        Emu::with(|c| {
            c.fail_rate = 0.2;
            c.latency = Duration::from_millis(2);
            c.seed = 11;
        }),
    );
    big_org(&w, "in");
    let args = ["apply", "--input-dir", "in", "--state", "state.db", "--rate", "500", "--concurrency", "4"];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut kills = Vec::new();
    for i in 0..10 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let at = if i == 0 { Duration::from_millis(x % 40) } else { Duration::from_millis(100 + x % 1400) };
        let mut child = spawn_api(&w, &emu, &[&args[..], &["--backoff-ms", "5", "--max-retries", "3"]].concat());
        std::thread::sleep(at);
        child.kill().unwrap();
        let status = child.wait().unwrap();
        kills.push((at, status.code()));
    }
    let mut last = None;
    for _ in 0..5 {
        let run = w.run_api(&emu, &[&args[..], &["--backoff-ms", "5", "--max-retries", "30"]].concat());
        let done = run.code == 0;
        last = Some(run);
        if done {
            break;
        }
    }
    let last = last.unwrap();
    assert_eq!(last.code, 0, "after kills at {kills:?}:\n{}\n{}", last.stdout, last.stderr);
    assert_eq!(unsettled(&w), 0, "no intent is left unsettled");
    assert_eq!(remote(&emu), recorded(&w.join("state.db")), "Telemetron and the snapshot agree");
    let plan = w.run(&["plan", "--input-dir", "in", "--state", "state.db", "--format", "json"]).expect(0);
    assert_eq!(plan.json()["summary"]["api_calls"], 0, "nothing left to do");
    assert_eq!(remote(&emu).1.len(), 3000);
}

/// Issue 11, case 4: a snapshot that can no longer be written stops the run at once. The
/// fault is real: the apply runs under a file-size limit (`ulimit -f`, SIGXFSZ ignored), so
/// SQLite's writes fail once the write-ahead log outgrows it, part way through a migration of
/// 3,000 devices. The run stops sending, says why and what was left, exits 1; the next run
/// (without the limit) marks the failed one and converges.
#[test]
fn a_snapshot_that_cannot_be_written_stops_the_run_at_once() {
    let (w, emu) = (Workdir::new(), Emu::start());
    big_org(&w, "in");
    let bin = env!("CARGO_BIN_EXE_telemetron-sync");
    let script = format!(
        "trap '' XFSZ; ulimit -f 740; exec {bin} apply --input-dir in --state state.db --rate 300 --concurrency 4"
    );
    let out = std::process::Command::new("bash")
        .args(["-c", &script])
        .current_dir(w.path())
        .env_remove("TELEMETRON_STATE")
        .env_remove("TELEMETRON_LOG")
        .env("TELEMETRON_BASE_URL", &emu.base_url)
        .env("TELEMETRON_API_KEY", KEY)
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("stopped: the snapshot can no longer be written"), "{stdout}");
    let planned: u64 = stdout.split(" of ").nth(1).and_then(|t| t.split(' ').next()).unwrap().parse().unwrap();
    let sent = emu.writes().len() as u64;
    assert!(sent < planned, "it stopped sending: {sent} of {planned} calls");
    assert!(stderr.contains("error: stopped: the snapshot can no longer be written (snapshot state.db:"), "{stderr}");

    let rerun =
        w.run_api(&emu, &["apply", "--input-dir", "in", "--state", "state.db", "--rate", "500", "--concurrency", "8"]);
    rerun.expect(0);
    assert_eq!(remote(&emu), recorded(&w.join("state.db")), "Telemetron and the snapshot agree after the rerun");
    let history = w.run(&["history", "--state", "state.db", "--format", "json"]).expect(0).json();
    let first = history.as_array().unwrap().iter().find(|r| r["id"] == 1).unwrap();
    assert!(first["outcome"] == "failed" || first["outcome"] == "interrupted", "{first}");
}

/// Issue 11, case 9: a wrong base URL looked transient (exit 3, "retried by the next run"), so
/// cron never said anything was misconfigured. Each of these stops at once (or after 5 s of
/// nothing answering) with exit 1 and the hint to check --base-url.
#[test]
fn a_wrong_base_url_is_fatal_and_fast() {
    let (w, emu) = (sample(), Emu::start());
    let root = emu.base_url.trim_end_matches("/api/ext-v1").to_string();
    let tls = emu.base_url.replacen("http://", "https://", 1);
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        format!("http://127.0.0.1:{port}/api/ext-v1")
    };
    for (base, says, within) in [
        (root.as_str(), "404 with a body that is not the API's JSON error", 5),
        (tls.as_str(), "the TLS handshake failed", 5),
        (closed.as_str(), "nothing listens there (connection refused)", 5),
    ] {
        let started = Instant::now();
        let out = w
            .command(&["apply", "--config", CONFIG, "--state", "state.db", "--rate", "100"])
            .env("TELEMETRON_BASE_URL", base)
            .env("TELEMETRON_API_KEY", KEY)
            .output()
            .unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(1), "{base}:\n{stdout}\n{stderr}");
        assert!(stderr.contains(says) && stderr.contains("Check --base-url"), "{base}:\n{stderr}");
        assert!(started.elapsed() < Duration::from_secs(within), "{base}: took {:?}", started.elapsed());
    }
    assert!(remote(&emu).0.is_empty(), "nothing reached the API");
}

/// Issue 11, case 10: a retry's backoff used to ignore a stop. With every call failing and 20 s
/// backoffs, SIGTERM ends the run in well under one backoff.
#[test]
fn sigterm_cuts_a_retry_backoff_short() {
    let (w, emu) = (sample(), Emu::with(|c| c.fail_rate = 1.0));
    let child = spawn_api(
        &w,
        &emu,
        &["apply", "--config", CONFIG, "--state", "state.db", "--backoff-ms", "20000", "--max-retries", "5"],
    );
    let start = Instant::now();
    while emu.writes().is_empty() && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let signalled = Instant::now();
    std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(signalled.elapsed() < Duration::from_secs(5), "took {:?} after the signal", signalled.elapsed());
    assert!(stderr.contains("interrupted by a signal"), "{stderr}");
}

/// A stop that came between a call's retries read as "never sent": the call's intents were
/// settled, and an assignment whose first attempt may have landed was forgotten. Every request
/// fails (500, half of them after the write) and the limiter holds the retry half a second;
/// SIGTERM in that wait must leave the call's intents for the next run to read back.
#[test]
fn a_stop_between_retries_keeps_the_calls_intents() {
    let (w, emu) = (Workdir::new(), Emu::with(|c| c.fail_rate = 1.0));
    // Customers without a name: the migration's first calls are assign calls that create them.
    w.write("in/customers.csv", "email\nann@example.com\nbob@example.com\n");
    w.write("in/devices.csv", "identifier,type\nSN-1,sensor\nSN-2,sensor\n");
    w.write("in/ownership.csv", "device_identifier,customer_email\nSN-1,ann@example.com\nSN-2,bob@example.com\n");
    let child = spawn_api(
        &w,
        &emu,
        &["apply", "--input-dir", "in", "--state", "state.db", "--rate", "2", "--concurrency", "1"],
    );
    let start = Instant::now();
    while emu.writes().is_empty() && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(150));
    std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let sent = emu.writes();
    assert_eq!(sent.len(), 1, "stopped in the first call's retry wait: {sent:?}");
    assert!(sent[0].path.contains("assign"), "{sent:?}");
    assert!(unsettled(&w) > 0, "the call's outcome is unknown: its intents stay\n{stderr}");
}

/// Issue 11, case 10: a second signal did nothing; now it abandons the calls in flight (2 s of
/// emulator latency each) and exits at once, with what was confirmed committed. (Abandoned
/// assignment calls stay in the journal: the kill-storm test shows the next run settles them.)
#[test]
fn a_second_signal_exits_at_once() {
    let (w, emu) = (sample(), Emu::with(|c| c.latency = Duration::from_secs(2)));
    let child = spawn_api(
        &w,
        &emu,
        &["apply", "--config", CONFIG, "--state", "state.db", "--rate", "100", "--concurrency", "4"],
    );
    let start = Instant::now();
    while emu.writes().len() < 5 && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let term = || std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    term();
    std::thread::sleep(Duration::from_millis(100));
    let second = Instant::now();
    term();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        second.elapsed() < Duration::from_secs(1),
        "took {:?} after the second signal:\n{stderr}",
        second.elapsed()
    );
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("interrupted twice"), "{stderr}");
    let history = w.run(&["history", "--state", "state.db", "--format", "json"]).expect(0).json();
    assert_eq!(history[0]["outcome"], "stopped");
}

#[test]
fn a_wrong_key_stops_the_run_at_once() {
    let (w, emu) = (sample(), Emu::start());
    let out = w
        .command(&["apply", "--config", CONFIG, "--state", "state.db", "--concurrency", "4"])
        .env("TELEMETRON_BASE_URL", &emu.base_url)
        .env("TELEMETRON_API_KEY", "tlm_wrong_key")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("the API key was refused (401)") && stderr.contains("TELEMETRON_API_KEY"), "{stderr}");
    assert!(!stderr.contains("tlm_wrong_key"));
    let sent = emu.writes().len();
    assert!(sent <= 4, "stopped after the calls in flight, not after {sent}");
    assert!(remote(&emu).0.is_empty());
}

#[test]
fn the_guard_refuses_a_truncated_ownership_export() {
    let (w, emu) = (sample(), Emu::start());
    apply(&w, &emu, "sample-data/day1", &[]).expect(0);
    let full = w.read("sample-data/day1/ownership.csv");
    let truncated: String = full.lines().take(11).map(|l| format!("{l}\n")).collect();
    w.write("truncated/ownership.csv", truncated);
    let before = emu.writes().len();
    let run =
        w.run_api(&emu, &["apply", "--config", CONFIG, "--input-dir", "truncated", "--state", "state.db"]).expect(4);
    assert!(
        run.stderr.contains("84 assignments removed (limit 10: the default")
            && run.stderr.contains("--force")
            && run.stderr.contains("Nothing was sent"),
        "{}",
        run.stderr
    );
    assert_eq!(emu.writes().len(), before, "no call before the guard");
    let mut args = vec!["apply", "--config", CONFIG, "--input-dir", "truncated", "--force"];
    args.extend(FAST);
    w.run_api(&emu, &args).expect(0);
    assert_converged(&w, &emu, "truncated");
    let limit = w.run_api(&emu, &["apply", "--config", CONFIG, "--state", "state.db", "--max-unassign", "5%"]);
    assert_eq!(limit.code, 0, "re-adding removes nothing: {}", limit.stderr);
}

/// Issue 10, case 5: bulk-metadata replaces properties wholesale, so a devices export that lost
/// its property columns would wipe every device's properties. The guard counts devices losing
/// property keys: refused before any call, then applied with --force.
#[test]
fn the_guard_refuses_an_export_that_wipes_every_devices_properties() {
    let (w, emu) = (sample(), Emu::start());
    apply(&w, &emu, "sample-data/day1", &[]).expect(0);
    for f in ["customers.csv", "ownership.csv"] {
        w.write(&format!("stripped/{f}"), w.read(&format!("sample-data/day1/{f}")));
    }
    let devices: String = w
        .read("sample-data/day1/devices.csv")
        .lines()
        .map(|l| l.split(',').take(2).collect::<Vec<_>>().join(",") + "\r\n")
        .collect();
    w.write("stripped/devices.csv", devices);
    let before = emu.writes().len();
    let plan = w.run(&["plan", "--config", CONFIG, "--input-dir", "stripped", "--state", "state.db"]).expect(0);
    assert!(plan.stdout.contains("Safety guard: apply would refuse this plan"), "{}", plan.stdout);
    let run = apply(&w, &emu, "stripped", &[]).expect(4);
    assert!(
        run.stderr.contains("86 devices losing property keys (limit 10") && run.stderr.contains("Nothing was sent"),
        "{}",
        run.stderr
    );
    assert_eq!(emu.writes().len(), before, "no call before the guard");
    assert!(remote(&emu).1.values().all(|(_, props, _)| !props.is_empty()), "nothing was wiped");
    apply(&w, &emu, "stripped", &["--force"]).expect(0);
    assert_converged(&w, &emu, "stripped");
}

/// Issue 11, case 7: the same snapshot through a symlink was locked twice, and two applies sent
/// the whole plan twice. The lock follows the file, not the path.
#[test]
fn an_apply_through_a_symlink_meets_the_same_lock() {
    let (w, emu) = (sample(), Emu::start());
    apply(&w, &emu, "sample-data/day1", &[]).expect(0);
    std::os::unix::fs::symlink(w.join("state.db"), w.join("link.db")).unwrap();
    let held = telemetron_sync::snapshot::Lock::acquire(&w.join("state.db")).unwrap();
    let before = emu.writes().len();
    let run = w.run_api(&emu, &["apply", "--config", CONFIG, "--state", "link.db", "--rate", "500"]).expect(75);
    assert!(run.stderr.contains("is in use by process"), "{}", run.stderr);
    assert_eq!(emu.writes().len(), before);
    drop(held);
    let migrate = w.run(&["snapshot", "migrate", "--state", "link.db"]).expect(0);
    assert!(migrate.stdout.contains("link.db"), "{}", migrate.stdout);
}

#[test]
fn a_second_apply_on_the_same_snapshot_refuses() {
    let (w, emu) = (sample(), Emu::start());
    let lock =
        std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(w.join("state.db.lock")).unwrap();
    lock.lock().unwrap();
    std::fs::write(w.join("state.db.lock"), "process 4242 (since 2026-11-27T03:00:00Z)\n").unwrap();
    // A distinct exit code (75, sysexits' EX_TEMPFAIL), so a cron wrapper can try again later.
    let run = apply(&w, &emu, "sample-data/day1", &[]).expect(75);
    assert!(run.stderr.contains("is in use by process 4242"), "{}", run.stderr);
    assert!(emu.writes().is_empty());
    drop(lock);
    apply(&w, &emu, "sample-data/day1", &[]).expect(0);
}

#[test]
fn a_skipped_device_is_reported_as_a_failure() {
    let (w, emu) = (sample(), Emu::start());
    // The snapshot believes the devices exist; Telemetron has none of them. (A config without
    // input_dir, so that only the files named are read.)
    let config = w.read(CONFIG).replace("input_dir = \"day1\"", "");
    w.write("sample-data/nodir.toml", config);
    let cfg = "sample-data/nodir.toml";
    w.run(&["baseline", "--config", cfg, "--devices", "sample-data/day1/devices.csv", "--state", "state.db"]).expect(0);
    let mut args = vec![
        "apply",
        "--config",
        cfg,
        "--customers",
        "sample-data/day1/customers.csv",
        "--ownership",
        "sample-data/day1/ownership.csv",
        "--report",
        "report.json",
    ];
    args.extend(FAST);
    let run = w.run_api(&emu, &args).expect(3);
    assert!(run.stdout.contains("assignments added      done        0   failed     94"), "{}", run.stdout);
    let report: Value = serde_json::from_str(&w.read("report.json")).unwrap();
    let failures = report["summary"]["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 94);
    assert!(failures[0]["error"].as_str().unwrap().contains("skipped by assignDevicesToOwner"), "{}", failures[0]);
    assert!(
        telemetron_sync::snapshot::read(&w.join("state.db")).unwrap().assignment_count() == 0,
        "nothing recorded as assigned"
    );
}

#[test]
fn a_saved_plan_is_compressed_a_plain_one_still_applies_and_a_cut_one_sends_nothing() {
    let (w, emu) = (sample(), Emu::start());
    w.run(&["plan", "--config", CONFIG, "--state", "state.db", "--out", "p.json"]).expect(0);
    let saved = std::fs::read(w.join("p.json")).unwrap();
    assert_eq!(&saved[..2], &[0x1f, 0x8b], "gzip-compressed");
    let plain = serde_json::to_vec_pretty(&w.read_plan("p.json")).unwrap();
    assert!(saved.len() * 4 < plain.len(), "{} bytes compressed, {} plain", saved.len(), plain.len());
    // Cut anywhere, the plan is refused before anything is sent.
    for cut in [10, saved.len() / 3, saved.len() - 9] {
        w.write("cut.json", &saved[..cut]);
        let mut args = vec!["apply", "--plan", "cut.json"];
        args.extend(FAST);
        let run = w.run_api(&emu, &args).expect(1);
        assert!(run.stderr.contains("cut.json"), "{}", run.stderr);
        assert!(run.stderr.contains("Make the plan again"), "{}", run.stderr);
        assert_eq!(customers(&emu), 0, "nothing sent after a cut at {cut}");
    }
    // A plan saved as plain JSON (earlier versions) applies as well.
    w.write("plain.json", plain);
    let mut args = vec!["apply", "--plan", "plain.json"];
    args.extend(FAST);
    w.run_api(&emu, &args).expect(0);
    assert!(customers(&emu) > 0);
    assert_converged(&w, &emu, "sample-data/day1");
}

fn customers(emu: &Emu) -> usize {
    // No organisation yet, or one without customers: none.
    emu.org()["customers"].as_array().map_or(0, Vec::len)
}

#[test]
fn a_saved_plan_is_applied_exactly_and_refused_when_stale() {
    let (w, emu) = (sample(), Emu::start());
    w.run(&["plan", "--config", CONFIG, "--state", "state.db", "--out", "p.json", "--format", "json"]).expect(0);
    let mut args = vec!["apply", "--plan", "p.json"];
    args.extend(FAST);
    w.run_api(&emu, &args).expect(0);
    assert_converged(&w, &emu, "sample-data/day1");
    // The snapshot moved on: the same plan is now stale.
    let again = w.run_api(&emu, &args).expect(1);
    assert!(again.stderr.contains("/state.db changed since the plan was made"), "{}", again.stderr);
    // An input changed.
    w.run(&["plan", "--config", CONFIG, "--input-dir", "sample-data/day2", "--state", "state.db", "--out", "p2.json"])
        .expect(0);
    let mut edited = w.read("sample-data/day2/customers.csv");
    edited.push_str("late.addition@example.com,Late Addition,,,C99999\n");
    w.write("sample-data/day2/customers.csv", edited);
    let mut args = vec!["apply", "--plan", "p2.json"];
    args.extend(FAST);
    let stale = w.run_api(&emu, &args).expect(1);
    assert!(
        stale.stderr.contains("the customers export sample-data/day2/customers.csv changed since the plan was made"),
        "{}",
        stale.stderr
    );
    let mixed = w.run_api(&emu, &["apply", "--plan", "p2.json", "--customers", "x.csv"]).expect(64);
    assert!(mixed.stderr.contains("cannot be used with"), "{}", mixed.stderr);
}

/// Every report of a saved plan names the file by its SHA-256 and when it was made, and so
/// does the opening line of the `apply --plan` that runs it: a reviewer's report is matched to
/// the plan applied. With the report in a file, stdout says what was saved and how to apply it.
#[test]
fn reports_and_apply_name_the_saved_plan_by_its_hash() {
    use sha2::Digest;
    let (w, emu) = (sample(), Emu::start());
    let sha = |file: &str| -> String {
        sha2::Sha256::digest(std::fs::read(w.join(file)).unwrap()).iter().map(|b| format!("{b:02x}")).collect()
    };
    let plan = ["plan", "--config", CONFIG, "--state", "state.db"];
    let md =
        w.run(&[&plan[..], &["--out", "p.plan", "--format", "markdown", "--out-report", "p.md"]].concat()).expect(0);
    let hash = sha("p.plan");
    let line = md.stdout.lines().collect::<Vec<_>>();
    assert_eq!(line.len(), 1, "{}", md.stdout);
    assert!(line[0].starts_with(&format!("plan saved: p.plan (sha256 {}, made 20", &hash[..12])), "{}", line[0]);
    let abs = w.path().canonicalize().unwrap().join("p.plan");
    assert!(
        line[0].ends_with(&format!("apply it with: telemetron-sync apply --plan {}", abs.display())),
        "{}",
        line[0]
    );
    assert!(w.read("p.md").contains(&format!("(sha256 `{hash}`, made 20")), "{}", w.read("p.md"));

    let json = w.run(&[&plan[..], &["--out", "q.plan", "--format", "json"]].concat()).expect(0).json();
    assert_eq!(json["saved_as"]["sha256"].as_str(), Some(sha("q.plan").as_str()), "{}", json["saved_as"]);
    w.run(&[&plan[..], &["--out", "r.plan", "--format", "html", "--out-report", "r.html"]].concat()).expect(0);
    assert!(w.read("r.html").contains(&format!("sha256 <code>{}</code>", sha("r.plan"))));
    let text = w.run(&[&plan[..], &["--out", "s.plan"]].concat()).expect(0).stdout;
    assert!(text.contains(&format!("  saved as   s.plan (sha256 {}, made 20", &sha("s.plan")[..12])), "{text}");
    // Without --out there is no saved plan to name.
    assert!(w.run(&[&plan[..], &["--format", "json"]].concat()).expect(0).json().get("saved_as").is_none());

    let mut args = vec!["apply", "--plan", "p.plan"];
    args.extend(FAST);
    let applied = w.run_api(&emu, &args).expect(0);
    assert!(
        applied.stderr.contains(&format!("apply (run 1) of the plan p.plan (sha256 {}, made 20", &hash[..12])),
        "{}",
        applied.stderr
    );
}

/// `apply` of a migration sends the named customers' creates while a thread still makes the rest
/// of its calls. A stop in that window waits for their count: the calls left it reports are
/// exact (sent + left = what `plan` counts), and the next run sends the rest and ends where
/// Telemetron is.
#[test]
fn a_stop_while_the_calls_are_being_made_reports_the_calls_left_exactly() {
    let w = Workdir::new();
    let planned = big_export(&w);

    let emu = Emu::start();
    let args = ["apply", "--input-dir", "big", "--state", "s.db", "--rate", "2000", "--concurrency", "8"];
    let child = spawn_api(&w, &emu, &args);
    let start = Instant::now();
    while emu.writes().is_empty() && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    assert_stopped_with_the_rest_exact(&w, &emu, &args, out, planned);
}

/// The assign and properties calls are made as the executor reads them, a bounded channel
/// ahead: a stop in the middle of the assign phase ends the run promptly (the planner's
/// thread, waiting on the channel, does not hold it open), the calls left are counted exactly,
/// and the next run sends exactly the rest.
#[test]
fn a_stop_in_the_middle_of_the_fed_assign_phase_ends_promptly_and_the_rest_follows_exactly() {
    let w = Workdir::new();
    let planned = big_export(&w);
    let emu = Emu::start();
    let args = ["apply", "--input-dir", "big", "--state", "s.db", "--rate", "2000", "--concurrency", "8"];
    let mut child = spawn_api(&w, &emu, &args);
    let assigns = |emu: &Emu| emu.writes().iter().filter(|r| r.path.contains("/assignDevice")).count();
    let start = Instant::now();
    while assigns(&emu) < 100 && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(assigns(&emu) >= 100, "reached the assign phase");
    std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let stopped = Instant::now();
    while child.try_wait().unwrap().is_none() && stopped.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(child.try_wait().unwrap().is_some(), "the run ended after its stop");
    let out = child.wait_with_output().unwrap();
    assert_stopped_with_the_rest_exact(&w, &emu, &args, out, planned);
}

fn assert_stopped_with_the_rest_exact(w: &Workdir, emu: &Emu, args: &[&str], out: std::process::Output, planned: u64) {
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let said = format!("{stdout}{stderr}");
    let tail = said.split("stopped early: ").nth(1).unwrap_or_else(|| panic!("{said}"));
    let words: Vec<&str> = tail.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "planned").unwrap_or_else(|| panic!("{tail}"));
    let number = |s: &str| s.trim_end_matches(',').parse::<u64>().unwrap_or_else(|_| panic!("{s:?} in {tail}"));
    let (sent, of, left) = (number(words[at - 3]), number(words[at - 1]), number(words[at + 4]));
    assert_eq!(of, planned, "the calls planned are counted, not guessed: {tail}");
    assert_eq!(sent + left, planned, "{tail}");
    assert_eq!(sent as usize, emu.writes().len(), "{tail}");
    assert!(left > 0, "stopped early: {tail}");

    w.run_api(emu, args).expect(0);
    assert_eq!(remote(emu), recorded(&w.join("s.db")));
    assert_eq!(emu.writes().len() as u64, planned, "the next run sent exactly the rest");
}

/// A migration of 4,000 named customers and 24,000 devices in `big/`, a fifth of them shared
/// (more assign calls than the planner makes ahead of the executor): how many calls it plans.
fn big_export(w: &Workdir) -> u64 {
    let (customers, devices) = (4_000, 24_000);
    let mut csv = String::from("email,name,phone,address\n");
    for c in 0..customers {
        csv.push_str(&format!("owner.{c}@example.com,Ówner {c},+1 555 {c:04},\"{c} Main St, Springfield\"\n"));
    }
    w.write("big/customers.csv", csv);
    let (mut devs, mut owners) =
        (String::from("identifier,type,firmware\n"), String::from("device_identifier,customer_email\n"));
    for d in 0..devices {
        devs.push_str(&format!("SN-{:08X},{},1.{}\n", d * 7919 % 1_000_003, ["meter", "hub"][d % 2], d % 9));
        owners.push_str(&format!("SN-{:08X},owner.{}@example.com\n", d * 7919 % 1_000_003, d % customers));
        if d % 5 == 0 {
            owners.push_str(&format!(
                "SN-{:08X},owner.{}@example.com\n",
                d * 7919 % 1_000_003,
                (d / 5 + 1) % customers
            ));
        }
    }
    w.write("big/devices.csv", devs).write("big/ownership.csv", owners);
    let plan = w.run(&["plan", "--input-dir", "big", "--state", "p.db", "--format", "json"]).expect(0).json();
    let planned = plan["summary"]["api_calls"].as_u64().unwrap();
    assert!(planned > customers as u64, "{}", plan["summary"]);
    planned
}
