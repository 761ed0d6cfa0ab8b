//! No flag value ends a command with a panic (exit 101): every number, duration and limit a
//! command takes, given values a typo, a script or an attacker could put there, is refused with
//! a usage error or used, through the real binary against the emulator.

use crate::apply::sample;
use crate::util::{Emu, Workdir};

/// The values every numeric flag is tried with, then a seeded mix of random ones.
const EDGES: [&str; 22] = [
    "0",
    "-1",
    "1",
    "0.5",
    "1e20",
    "1e400",
    "-1e400",
    "NaN",
    "inf",
    "-inf",
    "18446744073709551615",
    "18446744073709551616",
    "9223372036854775807",
    "4294967296",
    "65536",
    "",
    " ",
    "abc",
    "3000000000000000h",
    "99999999999999999999s",
    "1h1h",
    "%",
];

/// A small seeded generator (splitmix64): the same values on every run.
struct Seeded(u64);

impl Seeded {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value shaped like a number, a duration or a percentage, often out of range.
    fn value(&mut self) -> String {
        let n = self.next();
        let big = self.next() >> (self.next() % 64);
        match n % 7 {
            0 => big.to_string(),
            1 => format!("-{big}"),
            2 => format!("{}e{}", big % 1000, self.next() % 400),
            3 => format!("{big}{}", ["h", "m", "s", "ms", "d"][(n as usize / 7) % 5]),
            4 => format!("{}%", big % 300),
            5 => format!("{}.{}", big, self.next() % 1000),
            _ => format!("0x{big:x}"),
        }
    }
}

/// Runs `args` and fails on a panic or an exit of 101.
fn no_panic(w: &Workdir, emu: &Emu, args: &[&str]) {
    let run = w.run_api(emu, args);
    assert!(
        run.code != 101 && !run.stderr.contains("panicked"),
        "{args:?} ended with exit {} and a panic:\n{}",
        run.code,
        run.stderr
    );
    assert!(run.code != -1, "{args:?} died by a signal:\n{}", run.stderr);
}

#[test]
fn no_numeric_flag_value_panics() {
    let (w, emu) = (sample(), Emu::start());
    let day = ["--config", "sample-data/config.toml", "--input-dir", "sample-data/day1", "--state", "s.db"];
    // A snapshot with a run in it, so that undo, history and verify have something to read.
    let mut first = vec!["apply"];
    first.extend(day);
    w.run_api(&emu, &first).expect(0);

    let plan: Vec<&str> = [&["plan"][..], &day].concat();
    let apply: Vec<&str> = [&["apply"][..], &day, &["--max-retries", "0"]].concat();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (plan.clone(), "--timeout"),
        (plan.clone(), "--batch-size"),
        (plan.clone(), "--quarantine-after"),
        (apply.clone(), "--quarantine-after"),
        (plan.clone(), "--max-report-size"),
        (plan.clone(), "--rate"),
        (plan.clone(), "--max-unassign"),
        (plan.clone(), "--max-changes"),
        (apply.clone(), "--timeout"),
        (apply.clone(), "--rate"),
        (apply.clone(), "--max-rate"),
        (apply.clone(), "--concurrency"),
        (apply.clone(), "--backoff-ms"),
        (apply.clone(), "--max-duration"),
        (apply.clone(), "--keep-undo"),
        ([&["apply"][..], &day].concat(), "--max-retries"),
        (vec!["verify", "--state", "s.db"], "--sample"),
        (vec!["verify", "--state", "s.db", "--sample", "2"], "--seed"),
        (vec!["history", "--state", "s.db"], "--limit"),
        (vec!["undo", "--state", "s.db"], ""),
        (vec!["event", "--state", "s.db", "release", "--device", "X", "--customer", "a@x.io"], "--rate"),
        (vec!["emulator", "--listen", "192.0.2.1:0", "--rate-limit", "1"], "--seed"),
        (vec!["emulator", "--listen", "192.0.2.1:0"], "--fail-rate"),
        (vec!["emulator", "--listen", "192.0.2.1:0"], "--rate-limit"),
    ];
    let mut rng = Seeded(0x7e1e_3e70);
    for (command, flag) in &cases {
        let mut values: Vec<String> = EDGES.iter().map(|s| s.to_string()).collect();
        values.extend((0..8).map(|_| rng.value()));
        for v in &values {
            let mut args = command.clone();
            if flag.is_empty() {
                args.push(v); // a positional number (undo's run id)
            } else {
                args.extend([*flag, v.as_str()]);
            }
            if command[0] == "emulator" && !flag.is_empty() && flag != &"--fail-rate" {
                // The emulator would serve on; a valid value is checked by the other cases.
                args.extend(["--latency-ms", v.as_str()]);
            }
            no_panic(&w, &emu, &args);
        }
    }
}

/// Under a file-size limit (`ulimit -f`), a file the tool writes past it is an error naming the
/// file — not a silent death by SIGXFSZ — and no temp file is left behind.
#[cfg(unix)]
#[test]
fn a_write_over_the_file_size_limit_is_an_error_naming_the_file() {
    let w = sample();
    let day = "--config sample-data/config.toml --input-dir sample-data/day2 --state s.db";
    for (args, file, code) in [
        ("plan --out p.json.gz", "p.json.gz", 1),
        ("plan --format html --out-report r.html", "r.html", 1),
        ("plan --format json --metrics-file m.prom", "m.prom", 0),
    ] {
        let script = format!("ulimit -f 1; exec \"$0\" {args} {day}");
        let out = std::process::Command::new("sh")
            .args(["-c", &script, env!("CARGO_BIN_EXE_telemetron-sync")])
            .current_dir(w.path())
            .env_remove("TELEMETRON_STATE")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args}: {stderr}");
        assert!(stderr.contains(file) && stderr.contains("File too large"), "{args}: {stderr}");
        let left: Vec<_> = std::fs::read_dir(w.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "{args}: temp files left: {left:?}");
    }
}
