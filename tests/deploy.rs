//! The files a nightly job is deployed with (`deploy/`, issue 41): the systemd units pass
//! systemd's own checks and their command runs; the crontab line runs as cron runs it, mailing
//! nothing on success or on a busy snapshot and one line otherwise; the CronJob's command runs
//! and it keeps its promises (one run at a time, the key from a Secret file, a persistent
//! snapshot).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{Emu, KEY, Workdir, repo};

/// `name` on PATH. Without it a local run skips (saying so); under `CI=true` it fails.
fn tool(name: &str, install: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .and_then(|p| p.to_str().map(str::to_string))
        .and_then(|p| p.split(':').map(|d| Path::new(d).join(name)).find(|p| p.is_file()));
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "no {name} on PATH: .ci/run installs it ({install}); CI needs it"
        );
        let _ =
            std::io::Write::write_all(&mut std::io::stderr(), format!("SKIPPED: no {name} ({install})\n").as_bytes());
    }
    found
}

fn deploy(file: &str) -> String {
    std::fs::read_to_string(repo().join("deploy").join(file)).unwrap()
}

const BIN: &str = env!("CARGO_BIN_EXE_telemetron-sync");

/// A config for the sample's day 1, with its snapshot at `state`.
fn sample_config(w: &Workdir, state: &Path) -> PathBuf {
    w.copy_dir(&repo().join("sample-data/day1"), "day1");
    let config = std::fs::read_to_string(repo().join("sample-data/config.toml")).unwrap();
    w.write("config.toml", format!("state = {:?}\n{config}", state.display().to_string()));
    w.join("config.toml")
}

/// The words of the unit's `ExecStart=`, with systemd's `${…}` made paths.
fn exec_start(unit: &str, vars: &[(&str, &Path)]) -> Vec<String> {
    let line = unit.lines().find_map(|l| l.strip_prefix("ExecStart=")).expect("ExecStart=");
    let mut line = line.to_string();
    for (var, path) in vars {
        line = line.replace(&format!("${{{var}}}"), &path.display().to_string());
    }
    line.split_whitespace().map(str::to_string).collect()
}

#[test]
fn the_systemd_units_verify_are_hardened_and_their_command_runs() {
    let unit = deploy("systemd/telemetron-sync.service");
    for line in [
        "DynamicUser=yes",
        "StateDirectory=telemetron-sync",
        "LoadCredential=api-key:/etc/telemetron-sync/api-key",
        "ProtectSystem=strict",
        "SuccessExitStatus=75",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line} not in the unit");
    }
    // Nothing writable but the state folder: no ReadWritePaths, no other directory.
    assert!(!unit.contains("ReadWritePaths") && !unit.contains("LogsDirectory") && !unit.contains("CacheDirectory"));

    // Its command, with the state folder and the credential where systemd would put them,
    // against the emulator: the sample's day 1 goes through, the metrics land in the state
    // folder, and nothing else is written.
    let (w, emu) = (Workdir::new(), Emu::start());
    let state_dir = w.join("state");
    let creds = w.join("creds");
    std::fs::create_dir_all(&state_dir).unwrap();
    w.write("creds/api-key", format!("{KEY}\n"));
    let config = sample_config(&w, &state_dir.join("ignored.db"));
    let words = exec_start(&unit, &[("STATE_DIRECTORY", &state_dir), ("CREDENTIALS_DIRECTORY", &creds)]);
    assert_eq!(words[0], "/usr/local/bin/telemetron-sync");
    let out = Command::new(BIN)
        .args(&words[1..])
        .current_dir(w.path())
        .env("TELEMETRON_CONFIG", &config)
        .env("TELEMETRON_BASE_URL", &emu.base_url)
        .env_remove("TELEMETRON_API_KEY")
        .env_remove("TELEMETRON_STATE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let mut written: Vec<String> =
        std::fs::read_dir(&state_dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    written.sort();
    assert_eq!(written, ["state.db", "state.db-shm", "state.db-wal", "state.db.lock", "telemetron_sync.prom"]);
    assert!(!emu.org()["devices"].as_array().unwrap().is_empty());

    let Some(analyze) = tool("systemd-analyze", "apt-get install systemd") else { return };
    let dir = Workdir::new();
    dir.write("telemetron-sync.service", unit.replace("/usr/local/bin/telemetron-sync", BIN));
    dir.write("telemetron-sync.timer", deploy("systemd/telemetron-sync.timer"));
    let verify = Command::new(&analyze)
        .args(["verify", "./telemetron-sync.service", "./telemetron-sync.timer"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&verify.stderr).into_owned() + &String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success() && said.trim().is_empty(), "systemd-analyze verify:\n{said}");
    // systemd's own exposure score, offline, of the unit as written: 1.5 ("OK") today, and
    // no looser (one capability given back makes it 1.8).
    let security = Command::new(&analyze)
        .args(["security", "--offline=yes", "--threshold=15", "./telemetron-sync.service"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&security.stdout);
    assert!(security.status.success(), "exposure over 1.5:\n{report}");
}

/// The crontab line, run by `sh -c` as cron runs it: silent when the run succeeds and when
/// another run holds the snapshot (exit 75: nothing done, nothing to mail); one line to mail
/// when it fails.
#[test]
fn the_crontab_line_mails_only_what_needs_a_person() {
    let cron = deploy("crontab");
    let entry = cron.lines().find(|l| l.starts_with("0 3 * * * ")).expect("a nightly entry");
    assert!(!entry.contains("flock"), "the tool locks the snapshot itself");
    let (w, emu) = (Workdir::new(), Emu::start());
    let config = sample_config(&w, &w.join("s.db"));
    w.write("api-key", format!("{KEY}\n"));
    let command = entry["0 3 * * * ".len()..]
        .replacen("telemetron-sync ", &format!("{BIN} "), 1)
        .replace("/etc/telemetron-sync/config.toml", &config.display().to_string())
        .replace("/etc/telemetron-sync/api-key", &w.join("api-key").display().to_string())
        .replace("/var/lib/node_exporter/textfile/", &format!("{}/", w.path().display()))
        .replace("/var/log/telemetron-sync/", &format!("{}/", w.path().display()));
    let run = || {
        let out = Command::new("sh")
            .args(["-c", &command])
            .current_dir(w.path())
            .env("TELEMETRON_BASE_URL", &emu.base_url)
            .env_remove("TELEMETRON_API_KEY")
            .env_remove("TELEMETRON_STATE")
            .output()
            .unwrap();
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    assert_eq!(run(), (String::new(), String::new()), "a good night mails nothing");
    assert!(w.read("apply.log").contains("run_finished"));
    assert!(w.join("telemetron_sync.prom").is_file());

    // Another run holds the snapshot: exit 75, nothing done, nothing mailed.
    let lock = std::fs::File::open(w.join("s.db.lock")).unwrap();
    lock.try_lock().unwrap();
    let before = emu.emulator.requests().len();
    assert_eq!(run(), (String::new(), String::new()), "a busy snapshot mails nothing");
    assert_eq!(emu.emulator.requests().len(), before);
    assert!(w.read("apply.log").contains("\"exit_code\":75"));
    drop(lock);

    // A key that is gone: one line, for cron to mail.
    std::fs::remove_file(w.join("api-key")).unwrap();
    let (stdout, _) = run();
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [format!("telemetron-sync apply exited 1; see {}/apply.log", w.path().display())]
    );
}

/// The CronJob: one run at a time, the snapshot on a persistent volume, the key read from the
/// Secret's file; its container's arguments are ones the tool takes.
#[test]
fn the_cronjob_runs_one_at_a_time_with_the_key_from_a_secret_file() {
    let job = deploy("kubernetes/cronjob.yaml");
    for line in [
        "  concurrencyPolicy: Forbid",
        "                - --api-key-file=/run/secrets/telemetron/api-key",
        "                  mountPath: /run/secrets/telemetron",
        "                secretName: telemetron-sync-key",
        "                - --state=/state/state.db",
        "                  mountPath: /state",
        "                claimName: telemetron-sync-state",
        "                readOnlyRootFilesystem: true",
    ] {
        assert!(job.lines().any(|l| l == line), "{line:?} not in the CronJob");
    }
    assert!(!job.contains("TELEMETRON_API_KEY"), "the key comes from a file, never the environment");
    // The container's arguments, run with the paths the pod would mount made local.
    let args: Vec<String> = job
        .lines()
        .skip_while(|l| l.trim() != "args:")
        .skip(1)
        .take_while(|l| l.trim_start().starts_with("- "))
        .map(|l| l.trim_start()[2..].to_string())
        .collect();
    assert_eq!(args[2], "apply", "{args:?}");
    let (w, emu) = (Workdir::new(), Emu::start());
    let config = sample_config(&w, &w.join("ignored.db"));
    w.write("secret/api-key", KEY);
    std::fs::create_dir_all(w.join("state")).unwrap();
    let local: Vec<String> = args
        .iter()
        .map(|a| {
            a.replace("/run/secrets/telemetron/", &format!("{}/secret/", w.path().display()))
                .replace("=/state/", &format!("={}/state/", w.path().display()))
        })
        .collect();
    let out = Command::new(BIN)
        .args(&local)
        .env("TELEMETRON_CONFIG", &config)
        .env("TELEMETRON_BASE_URL", &emu.base_url)
        .env_remove("TELEMETRON_API_KEY")
        .env_remove("TELEMETRON_STATE")
        .current_dir(w.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(w.join("state/state.db").is_file() && w.join("state/telemetron_sync.prom").is_file());
}
