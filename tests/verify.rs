//! `verify` against the emulator: drift made through the API (as support staff or another
//! integration would) is found, named, and healed by `verify --heal` followed by `apply`.

use crate::apply::remote;
use crate::util::{Emu, Workdir, repo};

const CONFIG: &str = "sample-data/config.toml";

#[test]
fn drift_is_found_named_and_healed() {
    let (w, emu) = (Workdir::new(), Emu::start());
    w.copy_dir(&repo().join("sample-data"), "sample-data");
    let apply = ["apply", "--config", CONFIG, "--state", "state.db", "--rate", "500", "--concurrency", "8"];
    w.run_api(&emu, &apply).expect(0);
    let exported = remote(&emu);
    let verify = ["verify", "--all", "--state", "state.db", "--rate", "500", "--concurrency", "8"];
    let clean = w.run_api(&emu, &verify).expect(0);
    assert!(clean.stdout.contains("56 customers read back, 0 drifted"), "{}", clean.stdout);

    // Drift, made the way people make it: a phone edited in the dashboard, a device assigned by
    // another integration, a device unassigned by hand.
    w.run_api(&emu, &["customer", "upsert", "--email", "nancy.miller@example.com", "--phone", "+1 000 000 0000"])
        .expect(0);
    w.run_api(&emu, &["assign", "--device", "GW-2024037", "--customer", "betty.scott@example.net"]).expect(0);
    w.run_api(&emu, &["unassign", "--device", "LK-2024185", "--customer", "ashley.nguyen@mail.example.com"]).expect(0);

    let mut json_args = verify.to_vec();
    json_args.extend(["--format", "json"]);
    let found = w.run_api(&emu, &json_args).expect(2);
    let report = found.json();
    assert_eq!(report["summary"]["drifted"], 3, "{report}");
    let by_email = |e: &str| report["customers"].as_array().unwrap().iter().find(|c| c["email"] == e).cloned().unwrap();
    assert_eq!(by_email("nancy.miller@example.com")["fields"][0]["remote"], "+1 000 000 0000");
    assert_eq!(by_email("betty.scott@example.net")["devices_only_remote"], serde_json::json!(["GW-2024037"]));
    assert_eq!(
        by_email("ashley.nguyen@mail.example.com")["devices_only_in_snapshot"],
        serde_json::json!(["LK-2024185"])
    );
    let text = w.run_api(&emu, &verify).expect(2);
    assert!(
        text.stdout.contains("phone: snapshot \"+1 410 555 9133\" / Telemetron \"+1 000 000 0000\""),
        "{}",
        text.stdout
    );

    // A plan against the snapshot cannot see the drift ...
    let blind = w.run(&["plan", "--config", CONFIG, "--state", "state.db", "--format", "json"]).expect(0);
    assert_eq!(blind.json()["summary"]["api_calls"], 0);
    // ... until verify --heal writes what Telemetron holds into the snapshot; then apply repairs.
    let mut heal = verify.to_vec();
    heal.push("--heal");
    let healed = w.run_api(&emu, &heal).expect(0);
    assert!(healed.stdout.contains("healed"), "{}", healed.stdout);
    let repairs = w.run(&["plan", "--config", CONFIG, "--state", "state.db", "--format", "json"]).expect(0).json();
    let s = &repairs["summary"];
    assert_eq!(
        (s["customers_to_update"].as_u64(), s["assignments_to_add"].as_u64(), s["assignments_to_remove"].as_u64()),
        (Some(1), Some(1), Some(1)),
        "{s}"
    );
    w.run_api(&emu, &apply).expect(0);
    assert_eq!(remote(&emu), exported, "Telemetron is back to the exports");
    w.run_api(&emu, &verify).expect(0);

    let sample = w
        .run_api(&emu, &["verify", "--sample", "5", "--seed", "3", "--state", "state.db", "--format", "json"])
        .expect(0);
    assert_eq!(sample.json()["summary"]["checked"], 5);
    let one = w.run_api(&emu, &["verify", "--customer", "Nancy.Miller@example.com", "--state", "state.db"]).expect(0);
    assert!(one.stdout.contains("1 customers read back, 0 drifted"), "{}", one.stdout);
    let unknown = w.run_api(&emu, &["verify", "--customer", "nobody@example.com", "--state", "state.db"]).expect(64);
    assert!(unknown.stderr.contains("not in the snapshot"), "{}", unknown.stderr);
}

/// The README's chain, `verify --all --heal … && apply …`, run by a shell: `verify --heal`
/// exits 0 once what it found is healed, so `apply` runs and repairs Telemetron.
#[test]
fn the_readme_heal_then_apply_chain_repairs_drift() {
    let (w, emu) = (Workdir::new(), Emu::start());
    w.copy_dir(&repo().join("sample-data"), "sample-data");
    let bin = env!("CARGO_BIN_EXE_telemetron-sync");
    w.run_api(&emu, &["apply", "--config", CONFIG, "--state", "state.db", "--rate", "500"]).expect(0);
    let exported = remote(&emu);
    w.run_api(&emu, &["unassign", "--device", "LK-2024185", "--customer", "ashley.nguyen@mail.example.com"]).expect(0);
    w.run_api(&emu, &["customer", "upsert", "--email", "nancy.miller@example.com", "--phone", "+1 000 000 0000"])
        .expect(0);
    assert_ne!(remote(&emu), exported);
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let chain = readme.lines().find(|l| l.contains("verify --all --heal") && l.contains("&&")).expect("the chain");
    let chain = chain
        .replace("telemetron-sync ", &format!("{bin} "))
        .replace("--config exports.toml", &format!("--config {CONFIG} --state state.db --rate 500"));
    let out = std::process::Command::new("sh")
        .args(["-c", &chain])
        .current_dir(w.path())
        .env("TELEMETRON_BASE_URL", &emu.base_url)
        .env("TELEMETRON_API_KEY", crate::util::KEY)
        .output()
        .unwrap();
    assert!(out.status.success(), "{chain}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("healed"));
    assert_eq!(remote(&emu), exported, "the chain repaired Telemetron");
}

#[test]
fn a_customer_missing_remotely_is_reported_and_recreated_after_heal() {
    let (w, emu) = (Workdir::new(), Emu::start());
    w.copy_dir(&repo().join("sample-data"), "sample-data");
    // The snapshot believes day 1 was synced (baseline), but Telemetron has nothing.
    w.run(&["baseline", "--config", CONFIG, "--state", "state.db"]).expect(0);
    let one = ["verify", "--customer", "nancy.miller@example.com", "--state", "state.db"];
    let run = w.run_api(&emu, &one).expect(2);
    assert!(run.stdout.contains("nancy.miller@example.com: missing in Telemetron"), "{}", run.stdout);
    let mut heal = one.to_vec();
    heal.push("--heal");
    w.run_api(&emu, &heal).expect(0);
    let plan = w.run(&["plan", "--config", CONFIG, "--state", "state.db", "--format", "json"]).expect(0).json();
    assert_eq!(plan["summary"]["customers_to_create"], 1, "{}", plan["summary"]);
}
