//! Exit codes, usage errors and messages of the command line itself.

use crate::util::Workdir;

const CUSTOMERS: &str = "email,name\nalice@example.com,Alice\n";

#[test]
fn usage_errors_exit_64() {
    let w = Workdir::new();
    w.write("c.csv", CUSTOMERS);
    for args in [
        vec![],
        vec!["plan", "--no-such-flag"],
        vec!["plan"],
        vec!["plan", "--customers", "c.csv", "--format", "xml"],
        vec!["plan", "--customers", "c.csv", "--batch-size", "0"],
        vec!["plan", "--input-dir", "missing"],
        vec!["frobnicate"],
    ] {
        let run = w.run(&args);
        assert_eq!(run.code, 64, "{args:?}: {}", run.stderr);
        assert!(!run.stderr.is_empty(), "{args:?} says why");
    }
}

/// Issue 11, case 10: `--rate 1e10` panicked in the limiter (exit 101).
#[test]
fn a_rate_the_limiter_cannot_pace_is_a_usage_error() {
    let w = Workdir::new();
    w.write("c.csv", CUSTOMERS);
    for rate in ["1e10", "0", "-1", "NaN", "inf", "0.001"] {
        let flag = format!("--rate={rate}");
        let out = w
            .command(&["apply", "--customers", "c.csv", "--state", "s.db", &flag])
            .env("TELEMETRON_API_KEY", crate::util::KEY)
            .env("TELEMETRON_BASE_URL", "http://127.0.0.1:9/api/ext-v1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "--rate {rate}: {stderr}");
        assert!(stderr.contains("--rate must be a number of requests per second from 0.01 to 10000"), "{stderr}");
    }
}

#[test]
fn help_and_version_exit_0() {
    let w = Workdir::new();
    let help = w.run(&["--help"]).expect(0);
    for cmd in ["plan", "baseline", "history", "snapshot"] {
        assert!(help.stdout.contains(cmd), "help lists {cmd}");
    }
    let v = w.run(&["--version"]).expect(0);
    assert!(v.stdout.starts_with("telemetron-sync "), "{}", v.stdout);
}

#[test]
fn a_missing_input_file_is_an_error_naming_it() {
    let w = Workdir::new();
    let run = w.run(&["plan", "--customers", "nope.csv", "--state", "s.db"]).expect(1);
    assert!(run.stderr.contains("error: cannot open nope.csv"), "{}", run.stderr);
}

#[test]
fn an_empty_file_is_an_error() {
    let w = Workdir::new();
    w.write("c.csv", "");
    let run = w.run(&["plan", "--customers", "c.csv", "--state", "s.db"]).expect(1);
    assert!(run.stderr.contains("c.csv: the file is empty; expected a header row"), "{}", run.stderr);
}

#[test]
fn a_config_typo_is_an_error_naming_the_key() {
    let w = Workdir::new();
    w.write("c.csv", CUSTOMERS).write("cfg.toml", "[customers.columns]\nemial = \"E-mail\"\n");
    let run = w.run(&["plan", "--config", "cfg.toml", "--customers", "c.csv"]).expect(1);
    assert!(run.stderr.contains("config file cfg.toml") && run.stderr.contains("emial"), "{}", run.stderr);
}

#[test]
fn config_paths_are_relative_to_the_config_file() {
    let w = Workdir::new();
    w.write("conf/data/c.csv", CUSTOMERS).write("conf/cfg.toml", "[customers]\npath = \"data/c.csv\"\n");
    let run = w.run(&["plan", "--config", "conf/cfg.toml", "--state", "s.db", "--format", "json"]).expect(0);
    assert_eq!(run.json()["summary"]["customers_to_create"], 1);
}

#[test]
fn a_snapshot_that_is_not_sqlite_is_an_error() {
    let w = Workdir::new();
    w.write("c.csv", CUSTOMERS).write("s.db", "this is not a database, it is a long enough text file to be read");
    let run = w.run(&["plan", "--customers", "c.csv", "--state", "s.db"]).expect(1);
    assert!(run.stderr.contains("snapshot s.db"), "{}", run.stderr);
}

#[test]
fn state_comes_from_the_environment_too() {
    let w = Workdir::new();
    w.write("c.csv", CUSTOMERS);
    let out = w.command(&["baseline", "--customers", "c.csv"]).env("TELEMETRON_STATE", "env.db").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(w.join("env.db").exists());
    let run = w.run(&["history", "--state", "env.db"]).expect(0);
    assert!(run.stdout.contains("baseline"), "{}", run.stdout);
}

#[test]
fn snapshot_migrate_creates_an_empty_snapshot() {
    let w = Workdir::new();
    let run = w.run(&["snapshot", "migrate", "--state", "s.db"]).expect(0);
    let want = format!("s.db: schema version {}", telemetron_sync::snapshot::SCHEMA_VERSION);
    assert!(run.stdout.contains(&want), "{}", run.stdout);
    let run = w.run(&["history", "--state", "s.db"]).expect(0);
    assert!(run.stdout.contains("no runs recorded"), "{}", run.stdout);
}

#[test]
fn json_logs_on_request() {
    let w = Workdir::new();
    w.write("c.csv", "email,name\nnot-an-email,X\nann@x.io,Ann\n");
    let run = w.run(&["--log-format", "json", "plan", "--customers", "c.csv", "--state", "s.db"]).expect(0);
    let line = run.stderr.lines().next().expect("a log line");
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(v["level"], "WARN");
    assert!(v["message"].as_str().unwrap().contains("c.csv:2: column \"email\""), "{v}");
}

/// Issue 12, item 9: every flag of every command has help text (`--device`, `--from`, `--to`,
/// `--email`, `--identifier` had none).
#[test]
fn every_flag_has_help_text() {
    use clap::CommandFactory;
    fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            if arg.get_help().is_none() && !matches!(arg.get_id().as_str(), "help" | "version") {
                missing.push(format!("{path} --{}", arg.get_long().unwrap_or(arg.get_id().as_str())));
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, &format!("{path} {}", sub.get_name()), missing);
        }
    }
    let mut missing = Vec::new();
    walk(&telemetron_sync::cli::Cli::command(), "telemetron-sync", &mut missing);
    assert!(missing.is_empty(), "flags without help: {missing:#?}");
}

/// Issue 12, item 6: a file whose every row was rejected said "Nothing to change: Telemetron is
/// in step with the exports", exit 0. It is an error now; and a plan that has nothing to change
/// but rejected rows says they need fixing.
#[test]
fn a_file_whose_rows_were_all_rejected_is_an_error_and_rejects_are_not_in_step() {
    let w = Workdir::new();
    w.write("bad/customers.csv", "email,name\nnope,Ann\nalso-nope,Bob\n");
    let run = w.run(&["plan", "--input-dir", "bad", "--state", "s.db"]).expect(1);
    assert!(run.stderr.contains("every one of its 2 row(s) was rejected"), "{}", run.stderr);
    assert!(run.stdout.is_empty());
    w.write("some/customers.csv", "email,name\nnope,Ann\nbob@x.io,Bob\n");
    w.run(&["baseline", "--input-dir", "some", "--state", "s.db"]).expect(3);
    let run = w.run(&["plan", "--input-dir", "some", "--state", "s.db"]).expect(0);
    assert!(run.stdout.contains("1 rejected row(s) were left out: fix them"), "{}", run.stdout);
    assert!(!run.stdout.contains("in step with the exports."), "{}", run.stdout);
}

/// Completions and the man page come from the command line's own definition (issue 41, item
/// 8): bash completes the commands and flags there are, every shell gets a script, the man page
/// is roff that `man` renders, and a closed pipe is an error, never a panic.
#[test]
fn completions_complete_and_the_man_page_renders() {
    let w = Workdir::new();
    let bash = w.run(&["completions", "bash"]).expect(0).stdout;
    w.write("complete.bash", &bash);
    let complete = |line: &str| -> Vec<String> {
        let words: Vec<&str> = line.split(' ').collect();
        let script = format!(
            "source ./complete.bash; COMP_WORDS=({}); COMP_CWORD={}; COMP_LINE='{line}'; COMP_POINT={}; _telemetron__sync telemetron-sync '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            words.iter().map(|w| format!("'{w}'")).collect::<Vec<_>>().join(" "),
            words.len() - 1,
            line.len(),
            words[words.len() - 1],
            words[words.len() - 2],
        );
        let out = std::process::Command::new("bash").args(["-c", &script]).current_dir(w.path()).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
    };
    assert_eq!(complete("telemetron-sync expl"), ["explain"]);
    assert!(complete("telemetron-sync apply --keep").contains(&"--keep-runs".to_string()));
    assert!(complete("telemetron-sync plan --format ").contains(&"markdown".to_string()));
    for shell in ["zsh", "fish", "powershell", "elvish"] {
        let script = w.run(&["completions", shell]).expect(0).stdout;
        assert!(script.contains("explain") && script.contains("max-unassign"), "{shell}: {script}");
    }
    assert_eq!(w.run(&["completions", "tcsh"]).code, 64);

    let man = w.run(&["man"]).expect(0).stdout;
    assert!(man.contains(".TH telemetron-sync 1") && man.contains(".SH NAME"), "{man}");
    for command in ["plan", "apply", "explain", "completions"] {
        assert!(man.contains(&format!("telemetron\\-sync\\-{command}(1)")) || man.contains(command), "{command}");
    }
    // Rendered by man where it is installed: no roff warnings.
    if std::path::Path::new("/usr/bin/groff").exists() {
        w.write("telemetron-sync.1", &man);
        let out = std::process::Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "telemetron-sync.1"])
            .current_dir(w.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(text.contains("telemetron-sync") && text.contains("explain"), "{text}");
    }

    // A reader that goes away early: an error exit, not a panic.
    let mut child = w.command(&["completions", "bash"]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"), "{}", String::from_utf8_lossy(&out.stderr));
}
