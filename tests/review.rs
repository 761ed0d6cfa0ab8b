//! Reports people review: `plan --format markdown` of the sample day 2 in full, cut to a size,
//! and with hostile values; the duration estimate in every report and in `apply`'s first line.

use std::path::Path;

use crate::util::{Emu, Workdir, repo};

const DAY2: [&str; 6] =
    ["--config", "sample-data/config.toml", "--input-dir", "sample-data/day2", "--state", "state.db"];

fn day1_recorded() -> Workdir {
    let w = Workdir::new();
    w.copy_dir(&repo().join("sample-data"), "sample-data");
    w.run(&["baseline", "--config", "sample-data/config.toml", "--state", "state.db"]).expect(0);
    w
}

fn plan(w: &Workdir, extra: &[&str]) -> String {
    let mut args = vec!["plan"];
    args.extend(DAY2);
    args.extend(extra);
    w.run(&args).expect(0).stdout
}

/// Compares `actual` with the text file `expected` (relative to the repo); `UPDATE_EXPECT=1`
/// rewrites it.
#[track_caller]
fn assert_text_file(actual: &str, expected: &Path) {
    let path = repo().join(expected);
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_EXPECT=1 writes it)", path.display()));
    assert!(actual == want, "{} differs (UPDATE_EXPECT=1 rewrites it)\n--- actual\n{actual}", path.display());
}

/// The lines of `md` outside fenced code blocks.
fn outside_fences(md: &str) -> Vec<&str> {
    let mut fence: Option<String> = None;
    let mut out = Vec::new();
    for line in md.lines() {
        let ticks: String = line.chars().take_while(|c| *c == '`').collect();
        match &fence {
            Some(f) if ticks.len() >= f.len() && line.trim_start_matches('`').trim().is_empty() => fence = None,
            Some(_) => {}
            None if ticks.len() >= 3 => fence = Some(ticks),
            None => out.push(line),
        }
    }
    assert!(fence.is_none(), "a fence is left open:\n{md}");
    out
}

#[test]
fn markdown_of_the_sample_day2_is_the_expected_document() {
    let w = day1_recorded();
    let md = plan(&w, &["--format", "markdown"]);
    assert_text_file(&md, Path::new("fixtures/sample-day2-plan.md"));
    assert!(md.contains("| **API calls** | **"), "{md}");
    assert!(md.contains("| estimated duration | "), "{md}");
    assert!(md.contains("<details><summary>Devices moved"), "{md}");
    assert!(md.contains("Rejected rows"), "{md}");
    // To a file instead, private.
    w.run(&[
        "plan",
        "--format",
        "markdown",
        "--out-report",
        "plan.md",
        "--config",
        "sample-data/config.toml",
        "--input-dir",
        "sample-data/day2",
        "--state",
        "state.db",
    ])
    .expect(0);
    assert_eq!(w.read("plan.md"), md);
}

#[test]
fn a_long_markdown_report_is_cut_to_its_size_with_a_count_of_what_was_left_out() {
    let w = day1_recorded();
    let full = plan(&w, &["--format", "markdown"]);
    let entries = |md: &str| fenced(md).into_iter().filter(|l| !l.starts_with("... and ")).count();
    assert!(!full.contains("Cut to fit"));
    let mut partly = false;
    for size in [2000, 2500, 3000, 3500, 4000] {
        let cut = plan(&w, &["--format", "markdown", "--max-report-size", &size.to_string()]);
        assert!(cut.len() <= size, "{} characters for {size}", cut.len());
        let hidden = entries(&full) - entries(&cut);
        assert!(cut.contains(&format!("{hidden} line(s) not shown")), "{hidden} hidden of {}:\n{cut}", entries(&full));
        partly |= cut.contains("\n... and ");
        // The summary and the guard are never cut.
        assert!(cut.contains("| **API calls** |") && cut.contains("Safety guard"), "{cut}");
        outside_fences(&cut);
    }
    assert!(partly, "some size cuts a section in the middle, with its own count");
}

/// The lines of `md` inside fenced code blocks.
fn fenced(md: &str) -> Vec<&str> {
    let outside = outside_fences(md);
    md.lines().filter(|l| !outside.contains(l) && !l.starts_with("```")).collect()
}

#[test]
fn hostile_values_stay_text_in_markdown() {
    let w = Workdir::new();
    w.write("cfg.toml", "");
    let name = "<script>alert(1)</script> | **bold** ``` `x` \u{202e}evil\u{202c} שלום";
    w.write("in/customers.csv", format!("email,name\n\"a@x.io\",\"{name}\"\n"));
    w.write("in/devices.csv", "identifier,type,note\nD-1,\"<img src=x onerror=alert(1)>\",\"]]></details>\"\n");
    w.write("in/ownership.csv", "device_identifier,customer_email\nD-1,a@x.io\n");
    let md = w
        .run(&["plan", "--config", "cfg.toml", "--input-dir", "in", "--state", "none.db", "--format", "markdown"])
        .expect(0)
        .stdout;
    // Shown as text inside a code block; the direction overrides escaped, so they cannot turn
    // the line around.
    assert!(md.contains("<script>alert(1)</script> | **bold** ``` `x` \\u{202e}evil\\u{202c} שלום"), "{md}");
    assert!(!md.contains('\u{202e}'), "{md}");
    for line in outside_fences(&md) {
        for tag in ["<script", "<img", "</details>]", "**bold**"] {
            assert!(!line.contains(tag), "{tag:?} outside a code block: {line:?}\n{md}");
        }
        let html: Vec<&str> = line.match_indices('<').map(|(i, _)| &line[i..]).collect();
        for h in html {
            assert!(
                ["<details>", "</details>", "<summary>", "</summary>", "<sub>", "</sub>"]
                    .iter()
                    .any(|t| h.starts_with(t)),
                "only our own tags outside code: {line:?}"
            );
        }
    }
}

#[test]
fn every_report_carries_the_duration_estimate_and_apply_opens_with_it() {
    let w = day1_recorded();
    let json: serde_json::Value = serde_json::from_str(&plan(&w, &["--format", "json", "--rate", "2"])).unwrap();
    let calls = json["summary"]["api_calls"].as_u64().unwrap();
    assert_eq!(json["summary"]["estimated_seconds"].as_u64(), Some(calls.div_ceil(2)), "{}", json["summary"]);
    assert_eq!(json["estimate"]["rate"], 2.0);
    assert_eq!(json["estimate"]["basis"], "fixed");
    let text = plan(&w, &["--rate", "2"]);
    assert!(text.contains(&format!("estimated duration             {} s at 2/s", calls.div_ceil(2))), "{text}");
    assert!(plan(&w, &["--format", "markdown", "--rate", "2"]).contains("| estimated duration | "));

    let emu = Emu::start();
    let mut args = vec!["apply"];
    args.extend(DAY2);
    args.extend(["--rate", "50"]);
    let run = w.run_api(&emu, &args);
    assert_eq!(run.code, 3, "the bad row: {}", run.stderr);
    let first =
        run.stderr.lines().find(|l| l.contains("calls, at 50/s: about")).unwrap_or_else(|| panic!("{}", run.stderr));
    assert!(first.contains(&format!("{calls} calls")), "{first}");
}

#[test]
fn with_rate_auto_the_estimate_uses_the_rate_the_last_run_settled_at() {
    let w = day1_recorded();
    let json: serde_json::Value = serde_json::from_str(&plan(&w, &["--format", "json", "--rate", "auto"])).unwrap();
    assert_eq!(json["estimate"]["basis"], "auto_start", "no auto run yet");
    // A settled rate, as an auto run stores it.
    let conn = crate::util::open_snapshot(w.join("state.db"));
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('auto_rate', '250')", []).unwrap();
    drop(conn);
    let json: serde_json::Value = serde_json::from_str(&plan(&w, &["--format", "json", "--rate", "auto"])).unwrap();
    assert_eq!(
        (json["estimate"]["basis"].as_str(), json["estimate"]["rate"].as_f64()),
        (Some("auto_settled"), Some(250.0))
    );
    let fixed: serde_json::Value = serde_json::from_str(&plan(&w, &["--format", "json", "--rate", "5"])).unwrap();
    assert_eq!(fixed["estimate"]["settled_rate"], 250.0, "{}", fixed["estimate"]);
    let md = plan(&w, &["--format", "markdown", "--rate", "5"]);
    assert!(md.contains("at --rate auto's last rate"), "{md}");
}

/// A headless Chromium to open HTML reports with: `TELEMETRON_TEST_BROWSER`, else the Debian
/// packages' names on PATH. Without one a local run skips (saying so); under `CI=true` it fails.
fn browser() -> Option<std::path::PathBuf> {
    if let Some(b) = std::env::var_os("TELEMETRON_TEST_BROWSER") {
        return Some(b.into());
    }
    let found = ["chromium-headless-shell", "chromium", "chromium-browser"].iter().find_map(|name| {
        std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(name)).find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "no headless Chromium on PATH: .ci/run installs chromium-headless-shell (Debian); CI needs it"
        );
        // Straight to stderr, past the test harness's capture, so that a passing run still says it.
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"SKIPPED: no headless Chromium to open the HTML report (apt-get install chromium-headless-shell)\n",
        );
    }
    found
}

/// The page's DOM once its script has run, as the browser serializes it.
fn dom(browser: &Path, file: &Path, hash: &str) -> String {
    let url = format!("file://{}{hash}", file.display());
    let out = std::process::Command::new(browser)
        // Virtual time runs the search box's debounce before the DOM is taken.
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--virtual-time-budget=3000"])
        .args(["--dump-dom", &url])
        .output()
        .expect("run the browser");
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        dom.contains("data-ready-ms="),
        "the page's script ran to its end: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dom
}

/// The rows the page drew in `kind`'s table.
fn drawn<'a>(dom: &'a str, kind: &str) -> Vec<&'a str> {
    let Some(start) = dom.find(&format!("data-kind=\"{kind}\"")) else { return Vec::new() };
    let section = &dom[start..start + dom[start..].find("</section>").unwrap()];
    let body = &section[section.find("<tbody>").unwrap() + 7..section.find("</tbody>").unwrap()];
    body.split("<tr>").skip(1).collect()
}

fn shown<'a>(dom: &'a str, kind: &str) -> &'a str {
    let start = dom.find(&format!("data-kind=\"{kind}\"")).unwrap_or_else(|| panic!("no {kind} section"));
    let at = start + dom[start..].find("class=\"shown\">").unwrap() + 14;
    &dom[at..at + dom[at..].find('<').unwrap()]
}

#[test]
fn the_html_report_opens_in_a_real_browser_shows_the_counts_and_filters_by_email() {
    let Some(browser) = browser() else { return };
    let w = day1_recorded();
    let mut args = vec!["plan"];
    args.extend(DAY2);
    args.extend(["--format", "html", "--out-report", "report.html"]);
    w.run(&args).expect(0);
    let html = w.read("report.html");
    for forbidden in ["http://", "https://", "<link", " src=", "@import", "url("] {
        assert!(!html.contains(forbidden), "self-contained: {forbidden:?} in the page");
    }
    let file = w.join("report.html");
    let all = dom(&browser, &file, "");
    let json: serde_json::Value = serde_json::from_str(&plan(&w, &["--format", "json"])).unwrap();
    let s = &json["summary"];
    for (kind, key) in [
        ("customers_to_create", "customers_to_create"),
        ("customers_to_update", "customers_to_update"),
        ("devices_to_create", "devices_to_create"),
        ("devices_to_update", "devices_to_update"),
        ("devices_moved", "devices_moved"),
        ("assignments_to_remove", "assignments_to_remove"),
        ("assignments_to_add", "assignments_to_add"),
        ("rejected_rows", "rejected_rows"),
    ] {
        let n = s[key].as_u64().unwrap() as usize;
        assert_eq!(shown(&all, kind), n.to_string(), "{kind}");
        assert_eq!(drawn(&all, kind).len(), n, "{kind}: every row drawn (under a page)");
        assert!(
            all.contains(&format!("data-bar=\"{kind}\">{n}<")) || !all.contains(&format!("data-bar=\"{kind}\"")),
            "{kind} bar"
        );
    }
    assert!(all.contains(&format!("data-count=\"api_calls\">{}<", s["api_calls"])), "API calls shown");

    // The search box, as a reviewer types in it: the address's query is put in the box and the
    // box's input event fires.
    let email = "donna.gonzalez@mail.example.com";
    let found = dom(&browser, &file, &format!("#q={email}"));
    assert!(found.contains("matching rows"), "{found}");
    assert_eq!(shown(&found, "assignments_to_add"), "1 of 7");
    assert_eq!(shown(&found, "devices_moved"), "1 of 2");
    for kind in ["assignments_to_add", "devices_moved"] {
        assert!(drawn(&found, kind).iter().all(|r| r.contains(email)), "{kind} filtered: {:?}", drawn(&found, kind));
    }
    assert!(drawn(&found, "customers_to_create").is_empty());
    let serial = dom(&browser, &file, "#q=lk-2024185");
    assert_eq!(shown(&serial, "assignments_to_remove"), "1 of 5", "case-insensitive, by identifier");

    // A screenshot, kept as the test's artefact.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    let shot = dir.join("plan-report-sample-day2.png");
    let status = std::process::Command::new(&browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,1600"])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}#q=LK-2024", file.display()))
        .output()
        .unwrap();
    assert!(status.status.success() && std::fs::metadata(&shot).map(|m| m.len() > 10_000).unwrap_or(false), "{shot:?}");
}

#[test]
fn hostile_values_stay_text_in_the_html_report() {
    let Some(browser) = browser() else { return };
    let w = Workdir::new();
    w.write("cfg.toml", "");
    let name = "</script><script>document.title='pwned'</script> \u{202e}evil";
    w.write("in/customers.csv", format!("email,name\n\"a@x.io\",\"{}\"\n", name.replace('"', "\"\"")));
    w.write(
        "in/devices.csv",
        "identifier,type,note\nD-1,\"<img src=x onerror=document.title='pwned'>\",\"'\"\"><b id=injected>\"\n",
    );
    w.write("in/ownership.csv", "device_identifier,customer_email\nD-1,a@x.io\n");
    w.run(&[
        "plan",
        "--config",
        "cfg.toml",
        "--input-dir",
        "in",
        "--state",
        "none.db",
        "--format",
        "html",
        "--out-report",
        "r.html",
    ])
    .expect(0);
    let page = dom(&browser, &w.join("r.html"), "");
    assert!(page.contains("<title>telemetron-sync plan</title>"), "no script of the export ran");
    assert_eq!(page.matches("<img").count(), 0, "no element came from a value");
    assert!(!page.contains("id=\"injected\"") && page.contains("&lt;b id=injected&gt;"), "{page}");
    let rows = drawn(&page, "customers_to_create");
    assert_eq!(rows.len(), 1);
    assert!(
        rows[0].contains("&lt;/script&gt;&lt;script&gt;document.title='pwned'&lt;/script&gt;"),
        "shown as text: {}",
        rows[0]
    );
    assert!(drawn(&page, "devices_to_create")[0].contains("&lt;img src=x"), "{page}");
}
