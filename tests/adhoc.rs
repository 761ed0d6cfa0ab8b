//! The ad-hoc commands end to end: the real binary against the emulator over loopback, as a new
//! user would run them with TELEMETRON_BASE_URL pointing at the emulator.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use serde_json::json;

use crate::util::{Emu, KEY, Workdir};

#[test]
fn customer_upsert_turns_a_409_into_an_update() {
    let (w, emu) = (Workdir::new(), Emu::start());
    let created =
        w.run_api(&emu, &["customer", "upsert", "--email", "Ann@Example.com", "--name", "Ann"]).expect(0).json();
    assert_eq!(created["message"], "Customer created successfully");
    let updated = w
        .run_api(&emu, &["-v", "customer", "upsert", "--email", "ann@example.com", "--phone", "+1 555 0100"])
        .expect(0);
    assert_eq!(updated.json()["message"], "Customer updated successfully");
    assert_eq!(updated.json()["telemetronCustomerId"], created["telemetronCustomerId"]);
    assert!(updated.stderr.contains("the email exists (409); updating that customer"), "{}", updated.stderr);
    let got = w.run_api(&emu, &["customer", "query", "ANN@example.com"]).expect(0).json();
    assert_eq!((got["name"].as_str(), got["phone"].as_str()), (Some("Ann"), Some("+1 555 0100")));
    let id = got["id"].as_str().unwrap();
    assert_eq!(w.run_api(&emu, &["customer", "get", id]).expect(0).json()["email"], "ann@example.com");
    let missing = w.run_api(&emu, &["customer", "query", "nobody@example.com"]).expect(1);
    assert!(missing.stderr.contains("error: queryCustomer: 404: Customer not found"), "{}", missing.stderr);
    assert!(missing.stdout.is_empty());
}

#[test]
fn devices_assignments_and_an_unassign_that_is_explained() {
    let (w, emu) = (Workdir::new(), Emu::start());
    w.run_api(&emu, &["device", "upsert", "--identifier", "SN-1", "--type", "thermostat", "--property", "fw=1.0"])
        .expect(0);
    let meta = w
        .run_api(
            &emu,
            &["device", "metadata", "--identifier", "SN-1", "--property", "fw=2.0", "--property", "room=hall"],
        )
        .expect(0);
    assert_eq!(meta.json()["updated"], 1);
    let assigned = w
        .run_api(&emu, &["assign", "--device", "SN-1", "--customer", "a@x.io", "--customer", "b@x.io"])
        .expect(0)
        .json();
    assert_eq!(assigned["assignedCustomers"][1]["wasCreated"], true);
    w.run_api(
        &emu,
        &["assign", "--device", "SN-2", "--customer", "a@x.io", "--auto-create-device", "--device-type", "lock"],
    )
    .expect(0);
    let removed = w.run_api(&emu, &["unassign", "--device", "SN-1", "--customer", "a@x.io"]).expect(0).json();
    assert_eq!(removed["devicesRemaining"], json!(["SN-2"]));
    let again = w.run_api(&emu, &["unassign", "--device", "SN-1", "--customer", "a@x.io"]).expect(1);
    assert!(
        again
            .stderr
            .contains("Device is not assigned to this customer; nothing to unassign: this customer's devices are SN-2"),
        "{}",
        again.stderr
    );
    let unknown = w.run_api(&emu, &["assign", "--device", "SN-9", "--customer", "a@x.io"]).expect(1);
    assert!(unknown.stderr.contains("404") && unknown.stderr.contains("autoCreateDevice"), "{}", unknown.stderr);

    let org = emu.org();
    let sn1 = &org["devices"][0];
    assert_eq!((sn1["identifier"].as_str(), &sn1["properties"]), (Some("SN-1"), &json!({"fw": "2.0", "room": "hall"})));
    assert_eq!(sn1["owners"], json!(["b@x.io"]));
    assert_eq!(org["devices"][1]["type"], "lock");
}

#[test]
fn device_metadata_from_a_devices_export() {
    let (w, emu) = (Workdir::new(), Emu::start());
    for id in ["SN-1", "SN-2"] {
        w.run_api(&emu, &["device", "upsert", "--identifier", id, "--type", "t"]).expect(0);
    }
    w.write("cfg.toml", "[devices.columns]\nidentifier = \"Serial\"\n");
    w.write("devices.csv", "Serial,type,fw\nSN-1,t,9\nSN-2,t,8\nSN-3,t,7\n");
    let run = w.run_api(&emu, &["device", "metadata", "--from", "devices.csv", "--config", "cfg.toml"]).expect(3);
    assert_eq!(run.json()["notFound"], 1);
    assert!(
        run.stderr.contains("1 device(s) not found, so not updated") && run.stderr.contains("SN-3"),
        "{}",
        run.stderr
    );
    assert_eq!(emu.org()["devices"][1]["properties"], json!({"fw": "8"}));
}

#[test]
fn tickets_and_the_servers_word_on_a_bad_priority() {
    let (w, emu) = (Workdir::new(), Emu::start());
    let ok = w
        .run_api(
            &emu,
            &[
                "ticket",
                "create",
                "--title",
                "Gateway offline",
                "--customer-email",
                "c@x.io",
                "--priority",
                "high",
                "--message",
                "customer:It blinks red",
                "--message",
                "agent:Rebooting it",
            ],
        )
        .expect(0);
    assert_eq!(ok.json()["message"], "Ticket created successfully");
    let bad = w
        .run_api(&emu, &["ticket", "create", "--title", "X", "--customer-email", "c@x.io", "--priority", "asap"])
        .expect(1);
    assert!(
        bad.stderr.contains("error: createTicket: 400: Invalid priority. Must be one of: low, medium, high, urgent"),
        "{}",
        bad.stderr
    );
    let usage = w.run_api(&emu, &["ticket", "create", "--title", "X"]).expect(64);
    assert!(usage.stderr.contains("--customer-email"), "{}", usage.stderr);
    let tickets = emu.org()["tickets"].clone();
    assert_eq!(tickets.as_array().unwrap().len(), 1);
    assert_eq!(tickets[0]["messages"][1], json!({"role": "agent", "content": "Rebooting it"}));
}

#[test]
fn a_missing_key_says_where_to_put_it() {
    let (w, emu) = (Workdir::new(), Emu::start());
    let out = w.command(&["customer", "query", "a@x.io"]).env("TELEMETRON_BASE_URL", &emu.base_url).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("no API key: set TELEMETRON_API_KEY or pass --api-key-file FILE"), "{stderr}");
    w.write("key.txt", format!("{KEY}\n"));
    let out = w
        .command(&["customer", "upsert", "--email", "a@x.io", "--api-key-file", "key.txt"])
        .env("TELEMETRON_BASE_URL", &emu.base_url)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn plain_http_to_a_remote_host_is_refused() {
    let w = Workdir::new();
    let out = w
        .command(&["customer", "query", "a@x.io", "--base-url", "http://telemetron.example.com/api/ext-v1"])
        .env("TELEMETRON_API_KEY", KEY)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("use https"));
}

/// The key must appear in no output, log line or error message, even with -vv and trace logs,
/// whether it is accepted or refused — and not in the emulator's own output either.
#[test]
fn the_key_never_appears_in_any_output() {
    let secret = "tlm_CANARY_9f8e7d6c5b4a";
    let w = Workdir::new();
    let mut emulator = w
        .command(&["-vv", "emulator", "--listen", "127.0.0.1:0", "--api-key", secret])
        .env("TELEMETRON_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(emulator.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let base =
        first.split_whitespace().find(|s| s.starts_with("http://")).expect("the emulator prints its URL").to_string();

    let mut outputs = Vec::new();
    for key in [secret, "tlm_CANARY_wrong_key_xyz"] {
        w.write("key.txt", key);
        for args in [
            vec!["-vv", "customer", "upsert", "--email", "a@x.io"],
            vec!["-vv", "customer", "query", "a@x.io"],
            vec![
                "-vv",
                "assign",
                "--device",
                "D",
                "--customer",
                "a@x.io",
                "--auto-create-device",
                "--device-type",
                "t",
            ],
            vec!["-vv", "--log-format", "json", "unassign", "--device", "D", "--customer", "a@x.io"],
            vec!["-vv", "ticket", "create", "--title", "t", "--customer-email", "a@x.io", "--priority", "bad"],
        ] {
            for (how, env_key) in [("env", Some(key)), ("file", None)] {
                let mut cmd = w.command(&args);
                cmd.env("TELEMETRON_BASE_URL", &base).env("TELEMETRON_LOG", "trace");
                match env_key {
                    Some(k) => cmd.env("TELEMETRON_API_KEY", k),
                    None => cmd.args(["--api-key-file", "key.txt"]),
                };
                let out = cmd.output().unwrap();
                outputs.push((format!("{how} {args:?}"), String::from_utf8_lossy(&out.stdout).into_owned()));
                outputs.push((format!("{how} {args:?} stderr"), String::from_utf8_lossy(&out.stderr).into_owned()));
            }
        }
    }
    // The same through a refused base URL and an unreachable one.
    for base in ["http://example.com/api", "http://127.0.0.1:9/api/ext-v1"] {
        let out = w
            .command(&["-vv", "customer", "query", "a@x.io", "--base-url", base])
            .env("TELEMETRON_API_KEY", secret)
            .output()
            .unwrap();
        outputs.push((base.to_string(), String::from_utf8_lossy(&out.stderr).into_owned()));
    }
    emulator.kill().unwrap();
    let out = emulator.wait_with_output().unwrap();
    outputs.push(("emulator stderr".into(), String::from_utf8_lossy(&out.stderr).into_owned()));

    assert!(outputs.iter().any(|(_, o)| o.contains("DEBUG")), "-vv did log");
    assert!(outputs.iter().any(|(_, o)| o.contains("401")), "the wrong key was refused");
    for (what, text) in &outputs {
        assert!(!text.contains("CANARY"), "{what} shows the key:\n{text}");
    }
}

/// The ad-hoc commands key devices and customers as the loader and `event` do: a stray space or
/// a capital reaches the same record, and a malformed key or flag is refused before any call.
#[test]
fn ad_hoc_keys_are_normalised_like_the_exports() {
    let (w, emu) = (Workdir::new(), Emu::start());
    w.run_api(
        &emu,
        &["assign", "--device", "X02", "--customer", "a@x.io", "--auto-create-device", "--device-type", "t"],
    )
    .expect(0);
    w.run_api(&emu, &["assign", "--device", " X02", "--customer", " B@X.io "]).expect(0);
    let removed = w.run_api(&emu, &["unassign", "--device", "X02 ", "--customer", "A@x.io"]).expect(0).json();
    assert_eq!(removed["devicesRemaining"], json!([]));
    w.run_api(&emu, &["device", "metadata", "--identifier", "\tX02", "--property", " fw =2"]).expect(0);
    let org = emu.org();
    assert_eq!(org["devices"][0]["owners"], json!(["b@x.io"]), "{org:#}");
    assert_eq!(org["devices"][0]["properties"], json!({"fw": "2"}));
    assert_eq!(w.run_api(&emu, &["customer", "query", " B@x.IO"]).expect(0).json()["devices"], json!(["X02"]));

    let before = emu.state();
    for bad in [
        &["unassign", "--device", "X\u{200b}02", "--customer", "b@x.io"][..],
        &["assign", "--device", "X02", "--customer", "not-an-email"],
        &["device", "metadata", "--identifier", "X02", "--property", "novalue"],
        &["device", "metadata", "--from", "d.csv", "--property", "a=b"],
        &["ticket", "create", "--title", "t", "--customer-email", "b@x.io", "--message", "no role"],
    ] {
        let run = w.run_api(&emu, bad).expect(64);
        assert!(run.stderr.contains("error"), "{bad:?}: {}", run.stderr);
    }
    assert_eq!(emu.state(), before, "a refused command line sent nothing");
}
