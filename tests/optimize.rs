//! The optimized plan (creates folded into assign calls, assignments grouped by minimum vertex
//! cover) must leave Telemetron exactly as the plain plan does, in fewer calls.

use crate::apply::remote;
use crate::util::{Emu, Workdir, repo};

/// Applies `days` in order into a fresh emulator and snapshot; returns the emulator and the
/// number of calls it received.
fn run(w: &Workdir, config: &str, days: &[&str], extra: &[&str], state: &str) -> (Emu, usize) {
    let emu = Emu::start();
    for day in days {
        let mut args = vec!["apply", "--config", config, "--input-dir", day, "--state", state, "--rate", "1000"];
        args.extend(extra);
        let run = w.run_api(&emu, &args);
        assert!(run.code == 0 || run.code == 3, "{}\n{}", run.stdout, run.stderr);
        assert!(!run.stdout.contains("failed      1"), "{}", run.stdout);
    }
    let calls = emu.writes().len();
    (emu, calls)
}

fn assert_same(w: &Workdir, config: &str, days: &[&str]) -> (usize, usize) {
    let (plain, plain_calls) = run(w, config, days, &["--no-optimize"], "plain.db");
    let (opt, opt_calls) = run(w, config, days, &[], "opt.db");
    assert_eq!(remote(&opt), remote(&plain), "the optimized plan left a different state");
    assert!(opt_calls <= plain_calls, "{opt_calls} calls optimized, {plain_calls} plain");
    (opt_calls, plain_calls)
}

#[test]
fn sample_day1_and_day2_end_the_same_in_fewer_calls() {
    let w = Workdir::new();
    w.copy_dir(&repo().join("sample-data"), "sample-data");
    let (opt, plain) = assert_same(&w, "sample-data/config.toml", &["sample-data/day1", "sample-data/day2"]);
    assert!(opt < plain, "{opt} vs {plain}");
}

#[test]
fn shared_devices_email_only_customers_and_mixed_types() {
    let w = Workdir::new();
    w.write("cfg.toml", "");
    // e1..e4 have only an email (foldable); named ones need their own create. D-SH is shared by
    // three new owners (a device call); e1 gets devices of two types (two customer calls).
    w.write(
        "day1/customers.csv",
        "email,name,phone\ne1@x.io,,\ne2@x.io,,\ne3@x.io,e3,\ne4@x.io,,\nnamed@x.io,Named Person,+1 555\n",
    );
    w.write(
        "day1/devices.csv",
        "identifier,type,fw\nT-1,thermo,1\nT-2,thermo,\nL-1,lock,2\nD-SH,hub,3\nSOLO,hub,4\nN-1,thermo,5\n",
    );
    w.write(
        "day1/ownership.csv",
        "device_identifier,customer_email\nT-1,e1@x.io\nL-1,e1@x.io\nT-2,e1@x.io\nD-SH,e2@x.io\nD-SH,e3@x.io\nD-SH,e4@x.io\nN-1,named@x.io\n",
    );
    // Day 2: a transfer, a new shared owner, property edits, a new email-only customer.
    w.write("day2/customers.csv", w.read("day1/customers.csv") + "e5@x.io,,\n");
    w.write("day2/devices.csv", w.read("day1/devices.csv").replace("T-2,thermo,", "T-2,thermo,9") + "T-3,thermo,1\n");
    w.write(
        "day2/ownership.csv",
        "device_identifier,customer_email\nT-1,e5@x.io\nL-1,e1@x.io\nT-2,e1@x.io\nD-SH,e2@x.io\nD-SH,e3@x.io\nD-SH,e4@x.io\nD-SH,e5@x.io\nN-1,named@x.io\nT-3,e5@x.io\n",
    );
    let plan = w
        .run(&["plan", "--config", "cfg.toml", "--input-dir", "day1", "--state", "none.db", "--format", "json"])
        .expect(0);
    let s = plan.json()["summary"].clone();
    // The lower bound: named's create, SOLO's POST (no owner), D-SH (a shared new device: a call
    // of its own), the (customer, type) pairs (e1, thermo), (e1, lock), (named, thermo), and one
    // bulk-metadata = 7. Seven calls can do it: POST L-1, then one call to e1 creating the
    // thermostats with L-1 riding along (e1 auto-created by it). The plan: e1's devices are of two
    // types, so two calls, and e1, in two calls, is created on its own rather than raced = 8.
    assert_eq!((s["api_calls_lower_bound"].as_u64(), s["api_calls"].as_u64()), (Some(7), Some(8)), "{s}");
    let plain = w
        .run(&[
            "plan",
            "--config",
            "cfg.toml",
            "--input-dir",
            "day1",
            "--state",
            "none.db",
            "--format",
            "json",
            "--no-optimize",
        ])
        .expect(0);
    assert!(plain.json()["summary"]["api_calls"].as_u64() > s["api_calls"].as_u64());
    let (_, _) = assert_same(&w, "cfg.toml", &["day1", "day2"]);
    let (opt, _) = run(&w, "cfg.toml", &["day1"], &[], "again.db");
    let paths: Vec<String> = opt.writes().iter().map(|r| r.path.clone()).collect();
    assert!(paths.iter().any(|p| p.ends_with("assignDeviceToOwners")), "the shared device went by device: {paths:?}");
    let posts = paths.iter().filter(|p| p.ends_with("/device")).count();
    assert_eq!(posts, 1, "only SOLO, which no one owns, needs POST /device: {paths:?}");
}

/// A new device shared by customers who have calls anyway is created first by `POST /device`
/// (with its properties) and rides in their calls; Telemetron ends as the plain plan leaves it.
#[test]
fn a_shared_new_device_rides_in_its_owners_calls() {
    let w = Workdir::new();
    w.write("cfg.toml", "");
    w.write("day1/customers.csv", "email,name\nann@x.io,Ann Example\nbob@x.io,\n");
    w.write("day1/devices.csv", "identifier,type,fw\nA-1,thermo,1\nB-1,thermo,2\nS-1,hub,3\n");
    w.write(
        "day1/ownership.csv",
        "device_identifier,customer_email\nA-1,ann@x.io\nB-1,bob@x.io\nS-1,ann@x.io\nS-1,bob@x.io\n",
    );
    let plan = w
        .run(&["plan", "--config", "cfg.toml", "--input-dir", "day1", "--state", "none.db", "--format", "json"])
        .expect(0);
    let s = plan.json()["summary"].clone();
    // Ann's create, POST S-1, one call per owner, bulk-metadata for A-1 and B-1.
    assert_eq!((s["api_calls_lower_bound"].as_u64(), s["api_calls"].as_u64()), (Some(5), Some(5)), "{s}");
    assert_same(&w, "cfg.toml", &["day1"]);
    let (opt, calls) = run(&w, "cfg.toml", &["day1"], &[], "again.db");
    assert_eq!(calls, 5);
    let paths: Vec<String> = opt.writes().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths.iter().filter(|p| p.ends_with("/device")).count(), 1, "{paths:?}");
    assert_eq!(paths.iter().filter(|p| p.ends_with("assignDevicesToOwner")).count(), 2, "{paths:?}");
}

/// `apply` sends the creates of named customers while it makes the rest of the calls (the
/// grouping waits for nothing they need): what it announces, what it sends and what `plan`
/// counted are one number, the named creates go first, and Telemetron ends as planned.
#[test]
fn apply_sends_the_calls_plan_counts_named_creates_first() {
    let w = Workdir::new();
    w.copy_dir(&repo().join("sample-data"), "sample-data");
    let config = "sample-data/config.toml";
    let plan = w
        .run(&["plan", "--config", config, "--input-dir", "sample-data/day1", "--state", "p.db", "--format", "json"])
        .expect(0)
        .json();
    let planned = plan["summary"]["api_calls"].as_u64().unwrap() as usize;
    let named = plan["operations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|op| op["op"] == "create_customer" && op["name"].is_string())
        .count();
    assert!(named > 0 && named < planned, "{named} named creates of {planned} calls");

    let emu = Emu::start();
    let args = ["apply", "--config", config, "--input-dir", "sample-data/day1", "--state", "s.db", "--rate", "1000"];
    let run = w.run_api(&emu, &args).expect(0);
    let sent = emu.writes();
    assert_eq!(sent.len(), planned, "{}", run.stderr);
    let announced = format!("apply (run 1): {planned} calls, at 1000/s");
    assert!(run.stderr.contains(&announced), "{announced:?} in\n{}", run.stderr);
    assert!(sent[..named].iter().all(|r| r.path.ends_with("/createOrUpdateCustomer")), "{:?}", &sent[..named]);
    w.run_api(&emu, &args).expect(0);
    assert_eq!(emu.writes().len(), planned, "a second run has nothing to send");
    assert_eq!(remote(&emu), crate::apply::recorded(&w.join("s.db")));
}
