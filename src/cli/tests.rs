//! The command line pinned by a table: argument vectors, valid and invalid, and what each
//! resolves to or the error it gets (parse and [`Settings::resolve`] together, as `main` does).

use std::time::Duration;

use clap::Parser;

use super::Cli;
use super::settings::{CommandFlags, Settings};
use crate::plan::guard::Limit;

fn resolve(argv: &[&str]) -> Result<Settings, String> {
    let cli = Cli::try_parse_from(std::iter::once("telemetron-sync").chain(argv.iter().copied()))
        .map_err(|e| e.to_string())?;
    Settings::resolve(&cli.global, CommandFlags::of(&cli.command)).map_err(|e| e.to_string())
}

enum Want {
    Ok(fn(&Settings) -> bool),
    Err(&'static str),
}

#[test]
fn argument_vectors() {
    use Want::*;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sync.toml");
    std::fs::write(
        &config,
        "state = \"state/sync.db\"\nmetrics_file = \"sync.prom\"\n[run]\nrate = 25.0\nmax_duration = \"1h30m\"\n\
         [guard]\nmax_unassign = \"5%\"\nmax_changes = 40\n[api]\ntimeout = 12\n",
    )
    .unwrap();
    let bad_rate = dir.path().join("bad-rate.toml");
    std::fs::write(&bad_rate, "[run]\nrate = 0.0\n").unwrap();
    let auto = dir.path().join("auto.toml");
    std::fs::write(&auto, "[run]\nrate = \"auto\"\nmax_rate = 300.0\n").unwrap();
    let bad_auto = dir.path().join("bad-auto.toml");
    std::fs::write(&bad_auto, "[run]\nrate = \"fast\"\n").unwrap();
    let bad_max = dir.path().join("bad-max.toml");
    std::fs::write(&bad_max, "[run]\nrate = \"auto\"\nmax_rate = 0.0\n").unwrap();
    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "[run]\nrat = 5.0\n").unwrap();
    let (config, bad_rate, typo) = (config.to_str().unwrap(), bad_rate.to_str().unwrap(), typo.to_str().unwrap());
    let (auto, bad_auto, bad_max) = (auto.to_str().unwrap(), bad_auto.to_str().unwrap(), bad_max.to_str().unwrap());
    let table: Vec<(Vec<&str>, Want)> = vec![
        // Defaults.
        (
            vec!["plan", "--customers", "c.csv"],
            Ok(|s| s.state.to_str() == Some("telemetron-state.db") && s.rate == 10.0),
        ),
        (
            vec!["apply", "--customers", "c.csv", "--rate", "50", "--concurrency", "8"],
            Ok(|s| s.rate == 50.0 && s.concurrency == 8),
        ),
        (
            vec!["apply", "--customers", "c.csv", "--max-duration", "90m"],
            Ok(|s| s.max_duration == Some(Duration::from_secs(5400))),
        ),
        (
            vec!["apply", "--customers", "c.csv", "--max-duration", "1h30m15s"],
            Ok(|s| s.max_duration == Some(Duration::from_secs(5415))),
        ),
        // Global flags anywhere: before the command, after it, after a nested subcommand.
        (vec!["event", "customer", "--email", "a@b.io", "--base-url", "http://127.0.0.1:1/api/ext-v1"], Ok(|_| true)),
        (
            vec![
                "--base-url",
                "http://x/api/ext-v1",
                "event",
                "--state",
                "s.db",
                "release",
                "--device",
                "D",
                "--customer",
                "a@b.io",
            ],
            Ok(|s| s.state.to_str() == Some("s.db")),
        ),
        (vec!["history", "-v", "--log-format", "json"], Ok(|_| true)),
        (vec!["snapshot", "migrate", "--state", "m.db", "-q"], Ok(|s| s.state.to_str() == Some("m.db") && s.quiet)),
        (vec!["customer", "query", "a@b.io", "--timeout", "3"], Ok(|s| s.timeout == Duration::from_secs(3))),
        (vec!["emulator", "--device-properties", "merge", "--all-unknown-assign", "bad-request"], Ok(|_| true)),
        // The config file, for every command; paths in it are relative to its folder; flags beat it.
        (vec!["history", "--config", config], Ok(|s| s.state.ends_with("state/sync.db") && s.state.is_absolute())),
        (vec!["verify", "--all", "--config", config], Ok(|s| s.rate == 25.0 && s.timeout == Duration::from_secs(12))),
        (
            vec!["apply", "--config", config],
            Ok(|s| {
                s.max_duration == Some(Duration::from_secs(5400))
                    && s.metrics_file.as_ref().is_some_and(|m| m.ends_with("sync.prom"))
            }),
        ),
        (
            vec!["plan", "--config", config],
            Ok(|s| s.guard.max_unassign == Some(Limit::Percent(5.0)) && s.guard.max_changes == Some(Limit::Count(40))),
        ),
        (
            vec!["plan", "--config", config, "--max-unassign", "7"],
            Ok(|s| s.guard.max_unassign == Some(Limit::Count(7))),
        ),
        (
            vec!["apply", "--config", config, "--state", "mine.db", "--rate", "3"],
            Ok(|s| s.state.to_str() == Some("mine.db") && s.rate == 3.0),
        ),
        // --rate auto: find the limit, from a low start, up to --max-rate.
        (vec!["apply", "--rate", "auto"], Ok(|s| s.rate_auto && s.max_rate == 1000.0 && s.rate == 10.0)),
        (vec!["verify", "--all", "--rate", "auto", "--max-rate", "50"], Ok(|s| s.rate_auto && s.max_rate == 50.0)),
        (vec!["apply", "--rate", "20"], Ok(|s| !s.rate_auto && s.options(Default::default()).auto_max.is_none())),
        (vec!["apply", "--rate", "auto", "--max-rate", "0"], Err("--max-rate must be a number of requests per second")),
        // A window only where a run sends calls.
        (vec!["plan", "--config", config], Ok(|s| s.max_duration.is_none())),
        // Invalid.
        (vec![], Err("Usage:")),
        (vec!["frobnicate"], Err("unrecognized subcommand")),
        (vec!["plan", "--format", "xml"], Err("invalid value 'xml'")),
        (vec!["apply", "--rate", "0"], Err("--rate must be a number of requests per second")),
        (vec!["apply", "--rate", "fast"], Err("give requests per second (10) or auto")),
        (vec!["apply", "--max-duration", "90"], Err("90m, 2h")),
        (vec!["apply", "--max-duration", "0s"], Err("more than zero")),
        (vec!["plan", "--max-unassign", "lots"], Err("--max-unassign \"lots\"")),
        (vec!["verify", "--all", "--timeout=-1"], Err("--timeout must be a positive number")),
        (vec!["verify", "--all", "--timeout", "NaN"], Err("--timeout must be a positive number")),
        (vec!["verify"], Err("the following required arguments were not provided")),
        (vec!["apply", "--plan", "p.json", "--customers", "x.csv"], Err("cannot be used with")),
        (vec!["baseline", "--customers", "c.csv", "--batch-size", "5"], Err("unexpected argument '--batch-size'")),
        (vec!["-q", "-v", "plan"], Err("cannot be used with")),
        (vec!["apply", "--concurrency", "0"], Err("0 is not in 1..=1024")),
        (vec!["apply", "--config", bad_rate], Err("run.rate must be")),
        (vec!["plan", "--config", typo], Err("unknown field `rat`")),
        (vec!["apply", "--config", auto], Ok(|s| s.rate_auto && s.max_rate == 300.0)),
        (vec!["apply", "--config", auto, "--rate", "5"], Ok(|s| !s.rate_auto && s.rate == 5.0)),
        (vec!["apply", "--config", bad_max], Err("run.max_rate must be a number of requests per second")),
        (vec!["apply", "--config", bad_auto], Err("run.rate must be a number")),
        (vec!["plan", "--config", "no/such.toml"], Err("cannot read the config file")),
    ];
    for (argv, want) in table {
        match (resolve(&argv), want) {
            (Result::Ok(s), Ok(check)) => assert!(check(&s), "{argv:?} resolved to {s:?}"),
            (Result::Err(e), Err(wanted)) => assert!(e.contains(wanted), "{argv:?}: wanted {wanted:?} in\n{e}"),
            (Result::Ok(s), Err(wanted)) => panic!("{argv:?} resolved ({s:?}) but should fail with {wanted:?}"),
            (Result::Err(e), Ok(_)) => panic!("{argv:?} failed: {e}"),
        }
    }
}
