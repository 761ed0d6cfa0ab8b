//! Record-level trust (issue 38): what a nightly job against production meets one record or
//! one night at a time — a key revoked on a quiet night, a server that stops answering, an
//! answer that confirms nothing — through the real binary against the emulator.

use crate::apply::sample;
use crate::util::{Emu, KEY, Workdir};

const DAY1: [&str; 6] = ["--config", "sample-data/config.toml", "--input-dir", "sample-data/day1", "--state", "s.db"];

fn last_outcome(w: &Workdir) -> String {
    let history = w.run(&["history", "--state", "s.db", "--format", "json"]).expect(0).json();
    let runs = history.as_array().unwrap();
    let last = runs.iter().max_by_key(|r| r["id"].as_i64()).unwrap();
    last["outcome"].as_str().unwrap_or_default().to_string()
}

/// A key regenerated in the dashboard is revoked at once: the nightly job with nothing to send
/// finds out that night — exit 1, the 401 advice once, outcome `refused_key` in the history and
/// the metrics — and an event finds out the same way.
#[test]
fn a_revoked_key_is_found_on_a_quiet_night() {
    let (w, emu) = (sample(), Emu::start());
    w.run_api(&emu, &[&["apply"][..], &DAY1].concat()).expect(0);
    let plan = w.run(&[&["plan", "--format", "json"][..], &DAY1].concat()).expect(0).json();
    assert_eq!(plan["summary"]["api_calls"], 0, "a quiet night: nothing to send");

    let writes = emu.writes().len();
    let quiet = [&["apply", "--metrics-file", "m.prom"][..], &DAY1].concat();
    let run = w.run_at(&emu.base_url, "tlm_regenerated_since", &quiet);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.stderr.matches("the API key was refused (401)").count(), 1, "told once:\n{}", run.stderr);
    assert!(run.stderr.contains("Settings > Integrations") && !run.stderr.contains("next run"), "{}", run.stderr);
    assert!(!run.stderr.contains("tlm_regenerated_since"), "the key never shows");
    assert_eq!(last_outcome(&w), "refused_key");
    let metrics = w.read("m.prom");
    assert!(metrics.contains("last_run_outcome{command=\"apply\",outcome=\"refused_key\"} 1"), "{metrics}");
    assert!(metrics.contains("last_run_success{command=\"apply\"} 0"), "{metrics}");

    let event = ["event", "--state", "s.db", "release", "--device", "TH-2025221", "--customer", "x@example.com"];
    let run = w.run_at(&emu.base_url, "tlm_regenerated_since", &event);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.stderr.matches("the API key was refused (401)").count(), 1, "{}", run.stderr);
    assert_eq!(last_outcome(&w), "refused_key");
    assert_eq!(emu.writes().len(), writes, "nothing was sent");

    // The right key again: the quiet night is a quiet night.
    w.run_at(&emu.base_url, KEY, &[&["apply"][..], &DAY1].concat()).expect(0);
    assert_eq!(last_outcome(&w), "ok");
}

/// A base URL where nothing listens is one error, told once, outcome `unreachable`, with the
/// cause ("connection refused") rather than a stopped apply the next run "continues".
#[test]
fn an_unreachable_base_url_is_one_error_told_once() {
    let w = sample();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        format!("http://127.0.0.1:{port}/api/ext-v1")
    };
    let run = w.run_at(&closed, KEY, &[&["apply", "--metrics-file", "m.prom"][..], &DAY1].concat());
    assert_eq!(run.code, 1, "{}", run.stderr);
    let errors: Vec<&str> = run.stderr.lines().filter(|l| l.contains("connection refused")).collect();
    assert_eq!(errors.len(), 1, "told once:\n{}", run.stderr);
    assert!(!run.stderr.contains("calls") && !run.stderr.contains("continues"), "no figures: {}", run.stderr);
    assert_eq!(last_outcome(&w), "unreachable");
    assert!(w.read("m.prom").contains("outcome=\"unreachable\"} 1"));
}

/// A 409 whose customer is not the email sent (a server matching emails without accents) is
/// never updated: the row fails naming both emails, the other customer keeps its details, the
/// snapshot records nothing for it, and every other row goes through.
#[test]
fn a_409_naming_another_customer_never_updates_it() {
    let w = Workdir::new();
    let emu = Emu::with(|c| c.email_match = telemetron_sync::emulator::EmailMatch::FoldAccents);
    w.run_api(&emu, &["customer", "upsert", "--email", "müller@x.io", "--name", "Jürgen Müller", "--phone", "+49 1"])
        .expect(0);
    // The ad-hoc upsert refuses the same way.
    let adhoc = w.run_api(&emu, &["customer", "upsert", "--email", "muller@x.io", "--name", "Jurgen"]).expect(1);
    assert!(adhoc.stderr.contains("müller@x.io") && adhoc.stderr.contains("muller@x.io"), "{}", adhoc.stderr);

    w.write("customers.csv", "email,name,phone\nmuller@x.io,Jurgen Muller,+1 2\nb@x.io,Bob,\n");
    let args = ["apply", "--customers", "customers.csv", "--state", "s.db"];
    for night in 1..=2 {
        let run = w.run_api(&emu, &args);
        assert_eq!(run.code, 3, "night {night}: {}", run.stderr);
        assert!(
            run.stderr.contains("muller@x.io")
                && run.stderr.contains("\"müller@x.io\"")
                && run.stderr.contains("not updated"),
            "night {night}: {}",
            run.stderr
        );
        let org = emu.org();
        let customers = org["customers"].as_array().unwrap();
        let muller = customers.iter().find(|c| c["email"] == "müller@x.io").unwrap();
        assert_eq!((muller["name"].as_str(), muller["phone"].as_str()), (Some("Jürgen Müller"), Some("+49 1")));
        assert!(customers.iter().any(|c| c["email"] == "b@x.io"), "the other row went through");
        assert_eq!(customers.len(), 2);
        let snap = telemetron_sync::snapshot::read(&w.join("s.db")).unwrap();
        let emails: Vec<&str> = snap.customers.keys().map(|e| e.as_str()).collect();
        assert_eq!(emails, ["b@x.io"], "nothing recorded for the refused row");
    }
}

/// Writes a small export: two customers, three devices, four assignments.
fn small_export(w: &Workdir) {
    w.write("in/customers.csv", "email,name,phone\na@x.io,Ann,+1 1\nb@x.io,Bob,+1 2\n");
    w.write("in/devices.csv", "identifier,type,fw\nD1,lock,1\nD2,lock,1\nD3,cam,2\n");
    w.write("in/ownership.csv", "device_identifier,customer_email\nD1,a@x.io\nD2,a@x.io\nD3,b@x.io\nD1,b@x.io\n");
}

const SMALL: [&str; 9] = ["apply", "--input-dir", "in", "--state", "s.db", "--max-retries", "1", "--backoff-ms", "1"];

/// Telemetron (the emulator) as comparable text: customers with their details, devices with
/// type, properties and owners.
fn remote_text(emu: &Emu) -> String {
    let org = emu.org();
    let mut out: Vec<String> = Vec::new();
    for c in org["customers"].as_array().unwrap() {
        out.push(format!("customer {} {} {}", c["email"], c["name"], c["phone"]));
    }
    for d in org["devices"].as_array().unwrap() {
        out.push(format!("device {} {} {} {}", d["identifier"], d["type"], d["properties"], d["owners"]));
    }
    out.sort();
    out.join("\n")
}

/// A 200 that confirms nothing is not a confirmation: a create answered `success: false` with
/// nothing applied is not recorded (the next run sends it again), and an assign answered `{}`
/// after it was applied stays an unknown outcome that the next run reads back — Telemetron,
/// the snapshot and the export end equal, with no ghost.
#[test]
fn a_200_that_confirms_nothing_is_never_recorded_as_done() {
    use telemetron_sync::emulator::WriteFault;
    let (w, emu) = (Workdir::new(), Emu::start());
    small_export(&w);
    let unconfirmed = [
        ("/customer/createOrUpdateCustomer", false, r#"{"success": false, "error": "database busy"}"#),
        ("/customer/createOrUpdateCustomer", false, "{}"),
        ("/device", false, r#"{"success": true}"#),
        ("/deviceAssignment/assignDevicesToOwner", true, "{}"),
        ("/deviceAssignment/assignDevicesToOwner", false, r#"{"success": true, "assignedDevices": "all"}"#),
        ("/device/bulk-metadata", false, r#"{"success": true, "updated": 3}"#),
    ];
    for (endpoint, applied, body) in unconfirmed {
        let (w, emu) = (Workdir::new(), Emu::start());
        small_export(&w);
        emu.emulator.fault_writes(Some((endpoint, WriteFault::Answer { applied, body })));
        let run = w.run_api(&emu, &SMALL);
        assert_eq!(run.code, 3, "{endpoint} {body}: {}", run.stderr);
        assert!(run.stderr.contains("confirms nothing"), "{endpoint} {body}: {}", run.stderr);
        // Nothing the server did not confirm is in the snapshot: the next plan still sends it.
        let plan = w.run(&["plan", "--input-dir", "in", "--state", "s.db", "--format", "json"]).expect(0).json();
        assert!(plan["summary"]["api_calls"].as_u64().unwrap() > 0, "{endpoint} {body}: nothing left to send");
        emu.emulator.fault_writes(None);
        w.run_api(&emu, &SMALL).expect(0);
        let plan = w.run(&["plan", "--input-dir", "in", "--state", "s.db", "--format", "json"]).expect(0).json();
        assert_eq!(plan["summary"]["api_calls"], 0, "{endpoint} {body}: {}", plan["operations"]);
        let snap = telemetron_sync::snapshot::read(&w.join("s.db")).unwrap();
        let owners: usize = snap.devices.values().map(|d| d.owners.len()).sum();
        assert_eq!(owners, 4, "{endpoint} {body}");
        let org = emu.org();
        let remote_owners: usize =
            org["devices"].as_array().unwrap().iter().map(|d| d["owners"].as_array().unwrap().len()).sum();
        assert_eq!(remote_owners, 4, "{endpoint} {body}: {}", remote_text(&emu));
    }
    // A read-back whose customer has no `devices` says nothing of them: the unknown outcome of
    // an assign answered 500 after it was applied stays unknown until a full answer comes.
    let (w2, emu2) = (Workdir::new(), Emu::start());
    small_export(&w2);
    emu2.emulator.fault_writes(Some(("/deviceAssignment/assignDevicesToOwner", WriteFault::Fail)));
    w2.run_api(&emu2, &SMALL).expect(3);
    let no_devices = WriteFault::Answer { applied: true, body: r#"{"id": "c", "email": "a@x.io", "name": "Ann"}"# };
    emu2.emulator.fault_writes(Some(("/customer/queryCustomer", no_devices)));
    let run = w2.run_api(&emu2, &SMALL).expect(1);
    assert!(run.stderr.contains("lacks devices") && run.stderr.contains("nothing was planned"), "{}", run.stderr);
    emu2.emulator.fault_writes(None);
    w2.run_api(&emu2, &SMALL).expect(0);
    let snap = telemetron_sync::snapshot::read(&w2.join("s.db")).unwrap();
    assert_eq!(snap.devices.values().map(|d| d.owners.len()).sum::<usize>(), 4);

    // An event answered `{}` with nothing applied fails (exit 1) and records nothing.
    w.run_api(&emu, &SMALL).expect(0);
    let before = remote_text(&emu);
    emu.emulator.fault_writes(Some((
        "/deviceAssignment/assignDeviceToOwners",
        WriteFault::Answer { applied: false, body: "{}" },
    )));
    let event = w.run_api(&emu, &["event", "--state", "s.db", "register", "--device", "D3", "--customer", "a@x.io"]);
    assert_eq!(event.code, 1, "{}", event.stderr);
    emu.emulator.fault_writes(None);
    assert_eq!(remote_text(&emu), before);
    let snap = telemetron_sync::snapshot::read(&w.join("s.db")).unwrap();
    let d3 = snap.devices.iter().find(|(k, _)| k.as_str() == "D3").unwrap().1;
    assert_eq!(d3.owners.iter().map(|e| e.as_str()).collect::<Vec<_>>(), ["b@x.io"], "the event recorded nothing");
}

/// A server that stops answering in the middle of the night stops the run: after twice the
/// concurrency of attempts in a row with no answer, exit 1 naming when and after how many
/// calls, the calls in flight kept as unknown outcomes; the next run reads them back and ends
/// exact.
#[test]
fn a_server_that_stops_answering_stops_the_run() {
    use telemetron_sync::emulator::WriteFault;
    let (w, emu) = (sample(), Emu::start());
    // Customers and devices are answered; from the first assignment on, nothing is.
    emu.emulator.fault_writes(Some(("/deviceAssignment/assignDevicesToOwner", WriteFault::Stall)));
    let args = [&DAY1[..], &["--timeout", "1", "--concurrency", "2", "--backoff-ms", "10", "--rate", "200"]].concat();
    let started = std::time::Instant::now();
    let run = w.run_api(&emu, &[&["apply"][..], &args].concat());
    let took = started.elapsed();
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("Telemetron stopped answering at ") && run.stderr.contains("4 in a row"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("Check --base-url"), "a slow server is not a wrong URL: {}", run.stderr);
    // Four unanswered attempts at a 1 s timeout, two at a time: a few seconds, not minutes.
    assert!(took < std::time::Duration::from_secs(15), "held the run {took:?}");
    let conn = rusqlite::Connection::open(w.join("s.db")).unwrap();
    let open: i64 = conn.query_row("SELECT count(*) FROM intents", [], |r| r.get(0)).unwrap();
    assert!(open > 0, "the calls in flight stay unknown outcomes");
    assert_eq!(last_outcome(&w), "stopped");

    emu.emulator.fault_writes(None);
    w.run_api(&emu, &[&["apply"][..], &args].concat()).expect(0);
    let plan = w.run(&[&["plan", "--format", "json"][..], &DAY1].concat()).expect(0).json();
    assert_eq!(plan["summary"]["api_calls"], 0, "{}", plan["operations"]);
    let (remote, recorded) = (crate::apply::remote(&emu), crate::apply::recorded(&w.join("s.db")));
    assert_eq!(remote, recorded, "Telemetron and the snapshot agree");
}

/// A customer Telemetron lost (deleted behind the tool's back) comes back whole: the update's
/// 404 creates it again, the snapshot forgets the assignments Telemetron lost with it, and its
/// devices are assigned again by the next run at the latest.
#[test]
fn a_lost_customer_comes_back_with_its_devices() {
    let (w, emu) = (Workdir::new(), Emu::start());
    small_export(&w);
    w.run_api(&emu, &SMALL).expect(0);
    let whole = remote_text(&emu);
    let drift = telemetron_sync::emulator::Drift {
        org: 0,
        customer: "a@x.io".into(),
        set: Default::default(),
        assign: vec![],
        unassign: vec![],
        delete: true,
        delete_devices: vec![],
    };
    emu.emulator.drift(&drift).unwrap();
    // A changed name, so that the night's work sends the customer's update.
    w.write("in/customers.csv", "email,name,phone\na@x.io,Ann Smith,+1 1\nb@x.io,Bob,+1 2\n");
    let run = w.run_api(&emu, &SMALL).expect(0);
    assert!(run.stderr.contains("no longer has this customer"), "{}", run.stderr);
    w.run_api(&emu, &SMALL).expect(0);
    assert_eq!(remote_text(&emu), whole.replace("\"Ann\"", "\"Ann Smith\""), "Telemetron is exact again");
    let plan = w.run(&["plan", "--input-dir", "in", "--state", "s.db", "--format", "json"]).expect(0).json();
    assert_eq!(plan["summary"]["api_calls"], 0, "{}", plan["operations"]);
}
