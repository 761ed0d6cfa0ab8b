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
        run.stderr.contains("Telemetron stopped answering at ") && run.stderr.contains("4 attempts in a row"),
        "{}",
        run.stderr
    );
    // Told once, with counts that agree: the calls it names are the calls sent.
    let last = run.stderr.lines().rfind(|l| l.starts_with("error: ")).unwrap_or_default();
    assert_eq!(last.matches("the next run continues").count(), 1, "{last}");
    assert_eq!(last.matches("planned calls were sent").count(), 1, "{last}");
    assert!(!run.stderr.contains("Check --base-url"), "a slow server is not a wrong URL: {}", run.stderr);
    // Four unanswered attempts at a 1 s timeout, two at a time: a few seconds, not minutes.
    assert!(took < std::time::Duration::from_secs(15), "held the run {took:?}");
    let conn = crate::util::open_snapshot(w.join("s.db"));
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

/// A field the export empties reaches Telemetron: the name becomes what Telemetron names a
/// customer without one (the email's local part), phone and address are sent empty. What
/// Telemetron holds afterwards is read back and recorded: where it kept a value, the snapshot
/// holds that value (warned once, with the count), never one Telemetron does not have.
#[test]
fn clearing_a_field_reaches_telemetron_or_is_recorded_as_kept() {
    use telemetron_sync::emulator::EmptyOnUpdate;
    for mode in [EmptyOnUpdate::Clears, EmptyOnUpdate::Kept] {
        let (w, emu) = (Workdir::new(), Emu::with(|c| c.empty_on_update = mode));
        w.write("in/customers.csv", "email,name,phone,address\na@x.io,Ann,+1 1,Street 1\nb@x.io,Bob,+1 2,\n");
        let args = ["apply", "--input-dir", "in", "--state", "s.db"];
        w.run_api(&emu, &args).expect(0);
        w.write("in/customers.csv", "email,name,phone,address\na@x.io,,,\nb@x.io,Bob,+1 2,\n");
        let run = w.run_api(&emu, &args).expect(0);
        let org = emu.org();
        let ann = org["customers"].as_array().unwrap().iter().find(|c| c["email"] == "a@x.io").unwrap().clone();
        assert_eq!(ann["name"], "a", "{mode:?}: the name Telemetron gives a customer without one");
        let snap = telemetron_sync::snapshot::read(&w.join("s.db")).unwrap();
        let stored = &snap.customers.iter().find(|(e, _)| e.as_str() == "a@x.io").unwrap().1.record;
        assert_eq!(stored.name(), None, "{mode:?}");
        match mode {
            EmptyOnUpdate::Clears => {
                assert!(ann.get("phone").is_none() && ann.get("address").is_none(), "{ann}");
                assert_eq!((stored.phone(), stored.address()), (None, None));
                assert!(!run.stderr.contains("kept"), "{}", run.stderr);
            }
            EmptyOnUpdate::Kept => {
                assert_eq!((ann["phone"].as_str(), ann["address"].as_str()), (Some("+1 1"), Some("Street 1")));
                assert_eq!(
                    (stored.phone(), stored.address()),
                    (Some("+1 1"), Some("Street 1")),
                    "what Telemetron kept"
                );
                assert_eq!(run.stderr.matches("kept a name, phone or address").count(), 1, "{}", run.stderr);
                assert!(run.stderr.contains("1 customer(s)"), "{}", run.stderr);
            }
        }
        // The snapshot and Telemetron agree: verify finds no drift the tool made itself.
        let verify = w.run_api(&emu, &["verify", "--state", "s.db", "--all", "--format", "json"]).expect(0).json();
        assert_eq!(verify["summary"]["drifted"], 0, "{mode:?}: {verify}");
    }

    // A customer named after its local part in the export, whose phone is emptied, keeps that
    // name in the snapshot: nothing is warned, and the next night has nothing to send.
    let (w, emu) = (Workdir::new(), Emu::start());
    w.write("in/customers.csv", "email,name,phone\nd@x.io,d,+1 4\n");
    let args = ["apply", "--input-dir", "in", "--state", "s.db"];
    w.run_api(&emu, &args).expect(0);
    w.write("in/customers.csv", "email,name,phone\nd@x.io,d,\n");
    let run = w.run_api(&emu, &args).expect(0);
    assert!(!run.stderr.contains("kept a name"), "{}", run.stderr);
    let plan = w.run(&["plan", "--input-dir", "in", "--state", "s.db", "--format", "json"]).expect(0).json();
    assert_eq!(plan["summary"]["api_calls"], 0, "{}", plan["operations"]);

    // `undo` follows the same rule: a customer that had no name gets its default name back.
    let (w, emu) = (Workdir::new(), Emu::start());
    w.write(
        "in/customers.csv",
        "email,name
c@x.io,
",
    );
    let args = ["apply", "--input-dir", "in", "--state", "s.db"];
    w.run_api(&emu, &args).expect(0);
    w.write(
        "in/customers.csv",
        "email,name
c@x.io,Carol
",
    );
    w.run_api(&emu, &args).expect(0);
    assert_eq!(emu.org()["customers"][0]["name"], "Carol");
    let history = w.run(&["history", "--state", "s.db", "--format", "json"]).expect(0).json();
    let renamed = history.as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).max().unwrap().to_string();
    w.run_api(&emu, &["undo", renamed.as_str(), "--state", "s.db", "--apply"]).expect(0);
    assert_eq!(emu.org()["customers"][0]["name"], "c", "the undo names it as Telemetron names a customer without one");
}

/// Day 1 and day 2 of an export where day 2 changes every device's properties, moves four
/// devices from a to c and gives b six new devices; `bad` names the records Telemetron refuses.
fn isolation_days(w: &Workdir) {
    let devices = |fw: &str, extra: &[&str]| {
        let mut s = String::from("identifier,type,fw\n");
        for i in 1..=30 {
            s += &format!("D{i:02},lock,{fw}\n");
        }
        for d in extra {
            s += &format!("{d},cam,{fw}\n");
        }
        s
    };
    let customers = "email,name\na@x.io,Ann\nb@x.io,Bob\nc@x.io,Cy\n";
    let mut own1 = String::from("device_identifier,customer_email\nD05,b@x.io\n");
    for i in 1..=30 {
        own1 += &format!("D{i:02},{}\n", ["a@x.io", "b@x.io", "c@x.io"][(i - 1) / 10]);
    }
    let mut own2 = own1.replace("D01,a@x.io", "D01,c@x.io").replace("D02,a@x.io", "D02,c@x.io");
    own2 = own2.replace("D03,a@x.io", "D03,c@x.io").replace("D04,a@x.io", "D04,c@x.io");
    let new = ["N01", "N02", "N03", "N04", "N05", "BAD1"];
    for d in new {
        own2 += &format!("{d},b@x.io\n");
    }
    w.write("day1/customers.csv", customers)
        .write("day1/devices.csv", devices("1", &[]))
        .write("day1/ownership.csv", own1);
    w.write("day2/customers.csv", customers)
        .write("day2/devices.csv", devices("2", &new))
        .write("day2/ownership.csv", own2);
}

fn apply_day(w: &Workdir, emu: &Emu, day: &str) -> crate::util::Run {
    w.run_api(emu, &["apply", "--input-dir", day, "--state", "s.db", "--rate", "500", "--max-retries", "0"])
}

/// One record Telemetron refuses holds back no other: a refused bulk call is split in the same
/// run until the refused records are found; every other change of the night goes through (the
/// other transfers, the new devices, every other device's properties), the refused ones are
/// failed with Telemetron's words, counted as refused, and sent again the next night.
#[test]
fn one_refused_record_holds_back_no_other() {
    // The same night without a refused record, for the calls it makes.
    let (clean_w, clean) = (Workdir::new(), Emu::start());
    isolation_days(&clean_w);
    apply_day(&clean_w, &clean, "day1").expect(0);
    let before = clean.writes().len();
    apply_day(&clean_w, &clean, "day2").expect(0);
    let clean_calls = clean.writes().len() - before;

    let (w, emu) = (Workdir::new(), Emu::start());
    isolation_days(&w);
    apply_day(&w, &emu, "day1").expect(0);
    emu.emulator.refuse(&["D02", "BAD1"]);
    let before = emu.writes().len();
    let run = apply_day(&w, &emu, "day2");
    let calls = emu.writes().len() - before;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("refused by Telemetron: ") && run.stderr.contains("invalid device identifier or email"),
        "{}",
        run.stderr
    );
    assert!(
        run.stdout.contains("refused by Telemetron record by record")
            || run.stderr.contains("refused by Telemetron record by record"),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    // Each refused record is named with the export row it came from (a removal has none).
    for line in [
        "failed properties replaced D02 (day2/devices.csv:3): refused by Telemetron",
        "failed assignments added BAD1 -> b@x.io (day2/ownership.csv:38): refused by Telemetron",
        "failed assignments removed D02 -> a@x.io: refused by Telemetron",
    ] {
        assert!(run.stdout.contains(line), "{line:?} not in\n{}", run.stdout);
    }
    eprintln!(
        "day 2 calls: {clean_calls} without a refused record, {calls} with two (D02 in a transfer and the properties, BAD1 new)"
    );
    // Each refused record costs at most two calls per halving of each call it is in.
    assert!(calls <= clean_calls + 4 * 2 * 6, "{calls} calls against {clean_calls}");

    let (remote, recorded) = (crate::apply::remote(&emu), crate::apply::recorded(&w.join("s.db")));
    assert_eq!(remote, recorded, "the snapshot holds exactly what Telemetron confirmed");
    let (_, devices) = remote;
    for (ident, (_, props, owners)) in &devices {
        let want_fw = if ident == "D02" { "1" } else { "2" };
        assert_eq!(props.get("fw").map(String::as_str), Some(want_fw), "{ident}");
        let want: &[&str] = match ident.as_str() {
            "D01" | "D03" | "D04" => &["c@x.io"],
            "D02" => &["a@x.io"],
            "D05" => &["a@x.io", "b@x.io"],
            "N01" | "N02" | "N03" | "N04" | "N05" => &["b@x.io"],
            _ => continue,
        };
        assert_eq!(owners, want, "{ident}");
    }
    assert!(!devices.contains_key("BAD1"));

    // The next night sends the refused records again (and only them), alone.
    let before = emu.writes().len();
    apply_day(&w, &emu, "day2").expect(3);
    let again = emu.writes().len() - before;
    assert!(again <= 6, "only the refused records are sent again: {again} calls");
    emu.emulator.refuse(&[]);
    apply_day(&w, &emu, "day2").expect(0);
    assert_eq!(crate::apply::remote(&emu), crate::apply::remote(&clean), "the same end as the clean night");
}

/// A rejected ownership row holds everything it could name: its customer by `customer_id`, and
/// every device its damaged identifier may mean (case and control or invisible characters set
/// aside); a row that can mean nothing withholds every removal. The inputs of issue 38.
#[test]
fn a_rejected_ownership_row_keyed_by_customer_id_removes_nothing() {
    let w = Workdir::new();
    for day in ["d1", "d2"] {
        w.write(&format!("{day}/customers.csv"), "email,name,customer_id\na@x.io,Ann,K1\nb@x.io,Bob,K2\n");
        w.write(&format!("{day}/devices.csv"), "identifier,type\nD1,t\nD2,t\n");
    }
    w.write("d1/ownership.csv", "device_identifier,customer_email,customer_id\nD1,,K1\nD2,,K2\n");
    w.run(&["baseline", "--input-dir", "d1", "--state", "s.db"]).expect(0);
    for damaged in ["D2\0,,K2", "\x1fD2,,K2", "d2,,k2", "d2,b@x,", "d2,,K2", "D2\u{200b},,K2", "\0,,K9", "\0\0,,"] {
        w.write("d2/ownership.csv", format!("device_identifier,customer_email,customer_id\nD1,,K1\n{damaged}\n"));
        let plan = w.run(&["plan", "--input-dir", "d2", "--state", "s.db", "--format", "json"]).expect(0).json();
        assert_eq!(plan["operations"], serde_json::json!([]), "{damaged:?}: {}", plan["operations"]);
        assert_eq!(plan["rejected"].as_array().unwrap().len(), 1, "{damaged:?}");
    }
}

/// A record Telemetron refuses night after night is quarantined after three nights (by
/// default): the fourth sends nothing for it, nor for what waits for it (a transfer's assign
/// waits for its unassign), lists it in the plan, the apply summary, the report and the
/// metrics, and the run is partial. A changed export row goes out again at once;
/// `--retry-quarantined` sends the rest, and a confirmation clears them for good.
#[test]
fn a_record_refused_night_after_night_is_quarantined_until_its_row_changes() {
    let (w, emu) = (Workdir::new(), Emu::start());
    isolation_days(&w);
    apply_day(&w, &emu, "day1").expect(0);
    emu.emulator.refuse(&["D02", "BAD1"]);
    for night in 1..=3 {
        let run = apply_day(&w, &emu, "day2");
        assert_eq!(run.code, 3, "night {night}: {}", run.stderr);
        assert!(!run.stdout.contains("quarantined"), "night {night}: {}", run.stdout);
        // Not quarantined yet: every plan report lists it as failing, with Telemetron's words.
        if night < 3 {
            for format in ["text", "markdown", "html"] {
                let report = w.run(&["plan", "--input-dir", "day2", "--state", "s.db", "--format", format]).expect(0);
                let line = format!("properties D02: refused in {night} run(s) in a row, last in run {}: ", night + 1);
                assert!(
                    report.stdout.contains("Failing: refused by Telemetron in their last attempt")
                        && report.stdout.contains(&line)
                        && report.stdout.contains("invalid device identifier or email"),
                    "night {night}, {format}: {}",
                    report.stdout
                );
            }
        }
    }
    let plan = w.run(&["plan", "--input-dir", "day2", "--state", "s.db", "--format", "json"]).expect(0).json();
    assert!(plan.get("failing").is_none(), "quarantined, not failing: {plan}");
    let held: Vec<(String, String, u64)> = plan["quarantined"]
        .as_array()
        .unwrap_or_else(|| panic!("no quarantine in {plan}"))
        .iter()
        .map(|q| {
            (
                q["record"].as_str().unwrap().to_string(),
                q["key"].as_str().unwrap().to_string(),
                q["runs"].as_u64().unwrap(),
            )
        })
        .collect();
    for want in [
        ("properties", "D02", 3),
        ("unassignment", "D02 -> a@x.io", 3),
        ("assignment", "D02 -> c@x.io", 0),
        ("assignment", "BAD1 -> b@x.io", 3),
    ] {
        assert!(held.contains(&(want.0.into(), want.1.into(), want.2)), "{want:?} not in {held:?}");
    }
    assert_eq!(plan["summary"]["quarantined"].as_u64(), Some(held.len() as u64));
    let text = w.run(&["plan", "--input-dir", "day2", "--state", "s.db"]).expect(0).stdout;
    assert!(
        text.contains("Quarantined: refused by Telemetron run after run") && text.contains("D02 -> a@x.io"),
        "{text}"
    );
    assert!(text.contains("assignment BAD1 -> b@x.io: refused in 3 run(s) in a row, last in run 4: "), "{text}");
    assert!(
        text.contains("(day2/ownership.csv:38)") && text.contains("properties D02: refused in 3 run(s) in a row"),
        "{text}"
    );

    // The fourth night: nothing quarantined is sent; only BAD1's create, which no call made
    // alone before, goes out (and is refused: its first night as a device).
    let before = emu.writes().len();
    let run = w.run_api(
        &emu,
        &[
            "apply",
            "--input-dir",
            "day2",
            "--state",
            "s.db",
            "--rate",
            "500",
            "--report",
            "r.json",
            "--metrics-file",
            "m.prom",
        ],
    );
    let sent: Vec<String> = emu.writes()[before..].iter().map(|r| format!("{} {}", r.method, r.path)).collect();
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(sent.len() == 1 && sent[0].ends_with("/device"), "{sent:#?}");
    assert!(
        run.stdout.contains("quarantined unassignment D02 -> a@x.io: refused in 3 run(s) in a row"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("quarantined record(s)") || run.stderr.contains("quarantined record(s)"),
        "{}",
        run.stdout
    );
    let report: serde_json::Value = serde_json::from_str(&w.read("r.json")).unwrap();
    assert_eq!(report["quarantined"].as_array().map(Vec::len), Some(held.len()), "{report}");
    let metrics = w.read("m.prom");
    assert!(
        metrics.contains(&format!("telemetron_sync_last_run_quarantined_records{{command=\"apply\"}} {}", held.len())),
        "{metrics}"
    );
    // Stuck records stay counted night after night, for an alert (D02's properties and
    // unassignment, BAD1's assignment and, refused tonight, its create).
    let failing = metrics
        .lines()
        .find_map(|l| l.strip_prefix("telemetron_sync_records_failing{command=\"apply\"} "))
        .unwrap_or_else(|| panic!("{metrics}"));
    assert_eq!(failing, "4", "{metrics}");

    // D02's properties change in the export: that row goes out again at once.
    let devices = w.read("day2/devices.csv").replace("D02,lock,2", "D02,lock,3");
    w.write("day2/devices.csv", devices);
    emu.emulator.refuse(&["BAD1"]);
    apply_day(&w, &emu, "day2").expect(3);
    let (_, devices) = crate::apply::remote(&emu);
    assert_eq!(devices["D02"].1.get("fw").map(String::as_str), Some("3"));

    // Telemetron takes D02 again: --retry-quarantined sends the transfer, and once confirmed
    // nothing is held any more.
    emu.emulator.refuse(&[]);
    w.run_api(&emu, &["apply", "--input-dir", "day2", "--state", "s.db", "--rate", "500", "--retry-quarantined"])
        .expect(0);
    let plan = w.run(&["plan", "--input-dir", "day2", "--state", "s.db", "--format", "json"]).expect(0).json();
    assert_eq!(plan["operations"], serde_json::json!([]), "{plan}");
    assert!(plan.get("quarantined").is_none(), "{plan}");
    let (remote, recorded) = (crate::apply::remote(&emu), crate::apply::recorded(&w.join("s.db")));
    assert_eq!(remote, recorded);
    assert_eq!(remote.1["D02"].2, ["c@x.io"]);
    assert_eq!(remote.1["BAD1"].2, ["b@x.io"]);
    let db = crate::util::open_snapshot(w.join("s.db"));
    let left: i64 = db.query_row("SELECT count(*) FROM refusals", [], |r| r.get(0)).unwrap();
    assert_eq!(left, 0, "a confirmation clears the record's refusals");
}

/// `history RUN` tells what became of each record a run did not get confirmed (issue 40, item
/// 3): refused by Telemetron, with its words and the export row, night after night; then held
/// back by the quarantine, with why; a page at a time; in text and JSON.
#[test]
fn history_of_one_run_tells_each_record_it_did_not_get_confirmed() {
    let (w, emu) = (Workdir::new(), Emu::start());
    isolation_days(&w);
    apply_day(&w, &emu, "day1").expect(0);
    let clean = w.run(&["history", "1", "--state", "s.db"]).expect(0).stdout;
    assert!(clean.contains("every record it sent was confirmed"), "{clean}");
    emu.emulator.refuse(&["D02", "BAD1"]);
    for _ in 1..=4 {
        apply_day(&w, &emu, "day2").expect(3);
    }
    let night1 = w.run(&["history", "2", "--state", "s.db"]).expect(0).stdout;
    assert!(night1.starts_with("run 2 (apply): ") && night1.contains("Sync log ("), "{night1}");
    assert!(
        night1.lines().any(|l| l.contains("refused")
            && l.contains("properties_replaced D02 (day2/devices.csv:")
            && l.contains("invalid device identifier or email")),
        "{night1}"
    );
    let night4 = w.run(&["history", "5", "--state", "s.db", "--format", "json"]).expect(0).json();
    let records = night4["records"].as_array().unwrap_or_else(|| panic!("{night4}"));
    let held =
        records.iter().find(|r| r["key"] == "D02 -> a@x.io").unwrap_or_else(|| panic!("D02 -> a@x.io not in {night4}"));
    assert_eq!((held["outcome"].as_str(), held["kind"].as_str()), (Some("quarantined"), Some("unassignment")));
    assert!(held["message"].as_str().unwrap().starts_with("refused in 3 run(s) in a row"), "{held}");
    // A removal has no export row; an assignment has its ownership row.
    assert!(held.get("source").is_none(), "{held}");
    let bad = records.iter().find(|r| r["key"] == "BAD1 -> b@x.io").unwrap_or_else(|| panic!("{night4}"));
    assert_eq!(bad["outcome"].as_str(), Some("quarantined"), "{bad}");
    assert!(bad["source"].as_str().is_some_and(|s| s.starts_with("day2/ownership.csv:")), "{bad}");
    assert_eq!(night4["run"]["id"].as_i64(), Some(5));
    assert_eq!(night4["records_total"].as_u64(), Some(records.len() as u64));
    // A page at a time.
    let page = w.run(&["history", "5", "--state", "s.db", "--limit", "1"]).expect(0).stdout;
    assert!(page.contains(&format!("... {} more (--skip 1)", records.len() - 1)), "{page}");
    let none = w.run(&["history", "99", "--state", "s.db"]);
    assert_ne!(none.code, 0);
    assert!(none.stderr.contains("has no run 99"), "{}", none.stderr);
}
