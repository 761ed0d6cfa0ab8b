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
