//! `explain` (issue 40): one record's story, told from the export, the snapshot, the next plan
//! and the sync log — through the real binary against the emulator, night after night.

use crate::util::{Emu, Workdir, assert_json_file};

/// Three nights of exports: day 2 moves D01 from Ann to Cy, changes D02's firmware (a change
/// Telemetron refuses), damages D07's ownership row and adds N1, which Ann registered the
/// moment she bought it; day 3 drops D20's ownership row (a removal).
fn story_days(w: &Workdir) {
    let customers = "email,name\na@x.io,Ann\nb@x.io,Bob\nc@x.io,Cy\n";
    let devices = |d02: &str, extra: &str| {
        let mut s = String::from("identifier,type,fw\n");
        for i in 1..=20 {
            s += &format!("D{i:02},lock,{}\n", if i == 2 { d02 } else { "1" });
        }
        s + extra
    };
    let owner = |i: usize| ["a@x.io", "b@x.io", "c@x.io"][(i - 1) / 7];
    let own = |skip: &[usize], rows: &mut String| {
        for i in (1..=20).filter(|i| !skip.contains(i)) {
            *rows += &format!("D{i:02},{}\n", owner(i));
        }
    };
    let header = "device_identifier,customer_email\n";
    let mut own1 = String::from(header);
    own(&[], &mut own1);
    let mut own2 = String::from(header);
    own(&[1, 7], &mut own2);
    own2 += "D01,c@x.io\nD07,a@x\nN1,a@x.io\n";
    let own3 = own2.replace("D20,c@x.io\n", "");
    w.write("day1/customers.csv", customers)
        .write("day1/devices.csv", devices("1", ""))
        .write("day1/ownership.csv", own1);
    w.write("day2/customers.csv", customers)
        .write("day2/devices.csv", devices("2", "N1,cam,1\n"))
        .write("day2/ownership.csv", &own2);
    w.write("day3/customers.csv", customers)
        .write("day3/devices.csv", devices("2", "N1,cam,1\n"))
        .write("day3/ownership.csv", own3);
}

/// The volatile parts of an `explain` document (times, Telemetron's ids) as placeholders.
fn steady(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if matches!(k.as_str(), "at" | "started_at" | "telemetron_id") && v.is_string() {
                    *v = serde_json::Value::String(format!("<{k}>"));
                } else {
                    steady(v);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(steady),
        _ => {}
    }
}

/// The story of the issue: a registration by `event`, a transfer, a record Telemetron refuses
/// three nights running, a rejected export row and a removal the guard withholds — each told
/// right by `explain`, in text and in JSON (its shape pinned by a fixture).
#[test]
fn explain_tells_each_record_its_story() {
    let (w, emu) = (Workdir::new(), Emu::start());
    story_days(&w);
    let apply = |day: &str, extra: &[&str]| {
        let args = [&["apply", "--input-dir", day, "--state", "s.db", "--rate", "500", "--max-retries", "0"], extra];
        w.run_api(&emu, &args.concat())
    };
    apply("day1", &[]).expect(0); // run 1
    w.run_api(
        &emu,
        &["event", "register", "--state", "s.db", "--device", "N1", "--customer", "a@x.io", "--device-type", "cam"],
    )
    .expect(0); // run 2
    emu.emulator.refuse(&["D02"]);
    for _ in 0..3 {
        apply("day2", &[]).expect(3); // runs 3, 4, 5
    }
    // Day 3's removal is over the limit the operator set: the whole run is refused.
    let refused = apply("day3", &["--max-unassign", "0"]);
    assert_eq!(refused.code, 4, "{}", refused.stderr);

    let keys = ["N1", "D01", "D02", "D07", "D20", "nobody@x.io"];
    let explain = |format: &str| {
        let args = [
            &["explain", "--input-dir", "day3", "--state", "s.db", "--max-unassign", "0", "--format", format],
            &keys[..],
        ];
        w.run(&args.concat()).expect(0)
    };
    let doc = explain("json").json();
    let records = doc["records"].as_array().unwrap();
    let of = |key: &str| records.iter().find(|r| r["key"] == key).unwrap_or_else(|| panic!("{key} not in {doc}"));
    let state = |key: &str| of(key)["next"]["state"].as_str().unwrap().to_string();

    // The registration: assigned by the event; its properties (which the event did not send)
    // by night 2's run; in step with the export that lists it now.
    let n1 = of("N1");
    assert_eq!(state("N1"), "in_step", "{n1}");
    assert_eq!(n1["snapshot"]["device"]["confirmed_by"]["id"], 3, "{n1}");
    let pair = &n1["snapshot"]["assignments"][0];
    assert_eq!((pair["customer"].as_str(), pair["confirmed_by"]["kind"].as_str()), (Some("a@x.io"), Some("event")));

    // The transfer: the new owner's assignment by night 2's run, the old one's removal logged.
    let d01 = of("D01");
    assert_eq!(state("D01"), "in_step", "{d01}");
    let owners: Vec<_> =
        d01["snapshot"]["assignments"].as_array().unwrap().iter().map(|a| a["customer"].clone()).collect();
    assert_eq!(owners, ["c@x.io"], "{d01}");
    assert_eq!(d01["snapshot"]["assignments"][0]["confirmed_by"]["id"], 3, "{d01}");
    let removed = &d01["snapshot"]["log"][0];
    assert_eq!(
        (removed["kind"].as_str(), removed["key"].as_str(), removed["outcome"].as_str(), removed["run"].as_i64()),
        (Some("assignments_removed"), Some("D01 -> a@x.io"), Some("confirmed"), Some(3)),
        "{d01}"
    );

    // Refused three nights running: quarantined, with Telemetron's words, newest night first.
    let d02 = of("D02");
    assert_eq!(state("D02"), "quarantined", "{d02}");
    assert!(d02["next"]["why"][0].as_str().unwrap().contains("in 3 run(s) in a row"), "{d02}");
    let refusals: Vec<i64> = d02["snapshot"]["log"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["key"] == "D02" && l["outcome"] == "refused")
        .map(|l| l["run"].as_i64().unwrap())
        .collect();
    assert_eq!(refusals, [5, 4, 3], "{d02}");
    // Newest first: night 4's plan held it back (the guard then refused that run whole).
    let log = &d02["snapshot"]["log"];
    assert_eq!((log[0]["run"].as_i64(), log[0]["outcome"].as_str()), (Some(6), Some("quarantined")), "{d02}");
    assert!(log[1]["message"].as_str().unwrap().contains("invalid device identifier"), "{d02}");
    assert_eq!(log[1]["source"], "day2/devices.csv:3", "{d02}");
    assert_eq!(d02["next"]["operations"].as_array().map(Vec::len), Some(0), "{d02}");

    // The rejected row: named with its line and reason; the device's assignment held.
    let d07 = of("D07");
    assert_eq!(state("D07"), "held_by_rejected_row", "{d07}");
    let row = d07["export"].as_array().unwrap().iter().find(|r| r["kind"] == "ownership").unwrap();
    assert_eq!(row["line"], 20, "{d07}");
    assert!(row["rejected"].as_str().unwrap().contains("invalid email"), "{d07}");
    assert_eq!(d07["snapshot"]["assignments"][0]["customer"], "a@x.io", "{d07}");

    // The removal the guard withholds: in the plan, refused with the rest of it.
    let d20 = of("D20");
    assert_eq!(state("D20"), "withheld_by_guard", "{d20}");
    assert_eq!(d20["next"]["operations"][0]["op"], "unassign", "{d20}");
    assert!(d20["next"]["why"][0].as_str().unwrap().contains("--force"), "{d20}");

    assert_eq!(state("nobody@x.io"), "unknown");

    let mut pinned = doc.clone();
    steady(&mut pinned);
    assert_json_file(&pinned, std::path::Path::new("fixtures/explain-story.json"));

    // The same story in text.
    let text = explain("text").stdout;
    for line in [
        "  next plan: quarantined",
        "  next plan: held by rejected row",
        "  next plan: withheld by guard",
        "    day3/ownership.csv:20  device_identifier=\"D07\", customer_email=\"a@x\"",
        "      REJECTED: ",
        "assignments_removed D01 -> a@x.io  confirmed",
    ] {
        assert!(text.contains(line), "{line:?} not in\n{text}");
    }
    assert!(text.contains("assigned N1 -> a@x.io; by run 2 (event, "), "{text}");
}

/// `--remote` reads what Telemetron holds now and says where it differs from the snapshot: an
/// assignment taken away behind the snapshot's back (an ad-hoc call) is named.
#[test]
fn explain_remote_names_what_telemetron_holds_that_the_snapshot_does_not() {
    let (w, emu) = (Workdir::new(), Emu::start());
    story_days(&w);
    w.run_api(&emu, &["apply", "--input-dir", "day1", "--state", "s.db", "--rate", "500"]).expect(0);
    w.run_api(&emu, &["unassign", "--device", "D03", "--customer", "a@x.io"]).expect(0);
    let args = ["explain", "--input-dir", "day1", "--state", "s.db", "--remote", "--format", "json", "D03", "b@x.io"];
    let doc = w.run_api(&emu, &args).expect(0).json();
    let d03 = &doc["records"][0];
    assert_eq!(
        d03["remote"]["differences"],
        serde_json::json!(["D03 -> a@x.io: assigned in the snapshot, not in Telemetron"]),
        "{d03}"
    );
    assert_eq!(d03["remote"]["reads"][0]["customer"], "a@x.io", "{d03}");
    let bob = &doc["records"][1];
    assert_eq!(bob["remote"]["differences"], serde_json::json!([]), "{bob}");
    assert_eq!(bob["remote"]["reads"][0]["devices"].as_array().map(Vec::len), Some(7), "{bob}");
    // Offline by default: no read at all.
    let before = emu.emulator.requests().len();
    w.run(&["explain", "--input-dir", "day1", "--state", "s.db", "D03"]).expect(0);
    assert_eq!(emu.emulator.requests().len(), before);
}
