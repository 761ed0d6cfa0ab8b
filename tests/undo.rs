//! `undo` against the emulator: undoing a day-2 run restores the day-1 remote state, except for
//! what day 2 created (ext-v1 cannot delete).

use crate::apply::remote;
use crate::util::{Emu, Workdir, repo};

const CONFIG: &str = "sample-data/config.toml";

#[test]
fn undo_of_a_day2_run_restores_day1_except_creations() {
    let (w, emu) = (Workdir::new(), Emu::start());
    w.copy_dir(&repo().join("sample-data"), "sample-data");
    let apply = |day: &str| {
        w.run_api(&emu, &["apply", "--config", CONFIG, "--input-dir", day, "--state", "state.db", "--rate", "500"])
    };
    apply("sample-data/day1").expect(0);
    let (day1_customers, day1_devices) = remote(&emu);
    apply("sample-data/day2").expect(3);
    assert_ne!(remote(&emu).1, day1_devices);

    let shown = w.run_api(&emu, &["undo", "2", "--state", "state.db"]).expect(0);
    assert!(shown.stdout.contains("Undo of run 2"), "{}", shown.stdout);
    assert!(shown.stdout.contains("+ LK-2024185 to ashley.nguyen@mail.example.com"), "{}", shown.stdout);
    assert!(
        shown.stdout.contains("create_customer olivia.bennett@example.com: ext-v1 has no way to delete a customer"),
        "{}",
        shown.stdout
    );
    let json = w.run_api(&emu, &["undo", "2", "--state", "state.db", "--format", "json"]).expect(0).json();
    assert_eq!(json["not_undoable"].as_array().unwrap().len(), 7, "3 customers and 4 devices were created");

    w.run_api(&emu, &["undo", "2", "--apply", "--state", "state.db", "--rate", "500"]).expect(0);
    let (customers, devices) = remote(&emu);
    for (email, c) in &day1_customers {
        assert_eq!(customers.get(email), Some(c), "customer {email} is back to day 1");
    }
    for (id, d) in &day1_devices {
        assert_eq!(devices.get(id), Some(d), "device {id} is back to day 1");
    }
    for created in ["TH-2031001", "GW-2031002", "LK-2031003", "TH-2031004"] {
        assert!(devices[created].2.is_empty(), "{created} stays (no delete), unassigned");
    }
    let history = w.run(&["history", "--state", "state.db", "--format", "json"]).expect(0).json();
    assert_eq!(history[0]["kind"], "undo");
    let again = w.run_api(&emu, &["undo", "3", "--state", "state.db"]).expect(64);
    assert!(again.stderr.contains("run 3 (undo) has no undo plan"), "{}", again.stderr);
    let missing = w.run_api(&emu, &["undo", "99", "--state", "state.db"]).expect(64);
    assert!(missing.stderr.contains("no run 99"), "{}", missing.stderr);
}

/// Issue 11, case 5: apply moves a device a → b, an event then moves it b → c, and undo of the
/// apply used to leave it owned by a *and* c. Undo now compares with the present: the device
/// changed since the run, so its inverse is skipped and listed; the rest of the run is undone.
/// Undoing the same run again is refused, naming the run that undid it.
#[test]
fn undo_skips_what_changed_since_and_refuses_a_second_undo() {
    let (w, emu) = (Workdir::new(), Emu::start());
    w.copy_dir(&repo().join("sample-data"), "sample-data");
    let day1 = "sample-data/day1";
    w.run_api(&emu, &["apply", "--config", CONFIG, "--input-dir", day1, "--state", "state.db", "--rate", "500"])
        .expect(0);
    // Day 1 again, with one transfer (a → b) and one customer's phone changed.
    w.copy_dir(&w.join(day1), "moved");
    let own = w.read("sample-data/day1/ownership.csv");
    let first = own.lines().nth(1).unwrap();
    let device = first.split(',').next().unwrap().to_string();
    let a = first.split(',').nth(1).unwrap().to_string();
    let b = "susan.williams@example.com";
    assert_ne!(a, b);
    w.write("moved/ownership.csv", own.replacen(first, &format!("{device},{b},"), 1));
    let cust = w.read("sample-data/day1/customers.csv");
    let phone_row = cust.lines().nth(2).unwrap();
    let old_phone = phone_row.split(',').nth(3).unwrap();
    w.write("moved/customers.csv", cust.replacen(phone_row, &phone_row.replacen(old_phone, "+1 000 555 0000", 1), 1));
    w.run_api(&emu, &["apply", "--config", CONFIG, "--input-dir", "moved", "--state", "state.db", "--rate", "500"])
        .expect(0);
    let c = cust
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().to_lowercase())
        .find(|e| *e != a && e != b && *e != phone_row.split(',').nth(1).unwrap().to_lowercase())
        .unwrap();
    let c = c.as_str();
    w.run_api(&emu, &["event", "--state", "state.db", "transfer", "--device", &device, "--from", b, "--to", c])
        .expect(0);

    let shown = w.run_api(&emu, &["undo", "2", "--state", "state.db", "--format", "json"]).expect(0).json();
    let conflicts: Vec<String> =
        shown["conflicts"].as_array().unwrap().iter().map(|c| c["key"].as_str().unwrap().to_string()).collect();
    assert!(conflicts.iter().all(|k| k.starts_with(&format!("{device} -> "))) && conflicts.len() == 2, "{conflicts:?}");

    let undone = w.run_api(&emu, &["undo", "2", "--apply", "--state", "state.db", "--rate", "500"]).expect(0);
    assert!(undone.stdout.contains("2 skipped as changed since"), "{}", undone.stdout);
    let (customers, devices) = remote(&emu);
    assert_eq!(devices[&device].2, vec![c.to_string()], "the transfer since the run is left as it is");
    let (email, phone) = (phone_row.split(',').nth(1).unwrap().to_lowercase(), old_phone.to_string());
    assert_eq!(customers[&email].1.as_deref(), Some(phone.as_str()), "the rest of the run is undone");

    // Runs: 1 and 2 apply, 3 the event (events are runs in the history), 4 the undo.
    let again = w.run_api(&emu, &["undo", "2", "--apply", "--state", "state.db"]).expect(1);
    assert!(again.stderr.contains("run 2 was already undone by run 4"), "{}", again.stderr);
}

/// Undo data is pruned to the newest --keep-undo runs.
#[test]
fn undo_plans_are_pruned_to_the_newest_runs() {
    let (w, emu) = (Workdir::new(), Emu::start());
    w.copy_dir(&repo().join("sample-data"), "sample-data");
    for day in ["sample-data/day1", "sample-data/day2", "sample-data/day1"] {
        let args = ["apply", "--config", CONFIG, "--input-dir", day, "--state", "state.db", "--rate", "500"];
        w.run_api(&emu, &[&args[..], &["--keep-undo", "2", "--force"]].concat());
    }
    let gone = w.run_api(&emu, &["undo", "1", "--state", "state.db"]).expect(64);
    assert!(gone.stderr.contains("has no undo plan"), "{}", gone.stderr);
    w.run_api(&emu, &["undo", "3", "--state", "state.db"]).expect(0);
}

/// A stored undo plan damaged on disk (cut short, or its bytes garbled) stops `undo` with an
/// error naming the run — never "has no undo plan", never a partial undo — and sends nothing;
/// the other runs' plans still read.
#[test]
fn a_damaged_undo_plan_stops_undo_and_sends_nothing() {
    let (w, emu) = (Workdir::new(), Emu::start());
    w.copy_dir(&repo().join("sample-data"), "sample-data");
    for day in ["sample-data/day1", "sample-data/day2"] {
        let args = ["apply", "--config", CONFIG, "--input-dir", day, "--state", "state.db", "--rate", "500"];
        w.run_api(&emu, &args).expect(if day.ends_with('1') { 0 } else { 3 });
    }
    let conn = crate::util::open_snapshot(w.join("state.db"));
    let stored: Vec<u8> = conn.query_row("SELECT plan FROM undo WHERE run_id = 2", [], |r| r.get(0)).unwrap();
    let mut garbled = stored.clone();
    let mid = garbled.len() / 2;
    garbled[mid] ^= 0x55;
    for damaged in [stored[..stored.len() * 2 / 3].to_vec(), garbled] {
        conn.execute("UPDATE undo SET plan = ?1 WHERE run_id = 2", [&damaged]).unwrap();
        let before = emu.emulator.requests().len();
        for args in [&["undo", "2", "--state", "state.db"][..], &["undo", "2", "--apply", "--state", "state.db"]] {
            let run = w.run_api(&emu, args).expect(1);
            assert!(run.stderr.contains("the undo plan of run 2 (apply) is unreadable"), "{args:?}: {}", run.stderr);
            assert!(!run.stderr.contains("has no undo plan"), "{}", run.stderr);
        }
        assert_eq!(emu.emulator.requests().len(), before, "nothing was sent");
    }
    w.run_api(&emu, &["undo", "1", "--state", "state.db"]).expect(0);
}
