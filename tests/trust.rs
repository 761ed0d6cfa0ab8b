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
