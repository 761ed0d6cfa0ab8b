//! Reads the emulator's request log (`GET /_emulator/requests`, JSON on stdin) and prints what
//! the rate benchmark checks: requests, achieved rate, the busiest one-second window (sliding,
//! and aligned to whole seconds), and the status codes.
//!
//! ```text
//! curl -s http://127.0.0.1:PORT/_emulator/requests | cargo run --release --example request_log_stats -- --limit 200
//! ```
//!
//! With `--hidden-limit N` (the emulator's `--rate-limit`, unknown to the client: `--rate
//! auto`), it prints instead what the adaptive benchmark checks: the successful answers of each
//! second, when they first reached 90% of N, the share of N they held from then on, and the
//! share of 429s.

use std::collections::BTreeMap;
use std::io::Read;

fn main() {
    let (mut limit, mut hidden): (Option<f64>, Option<f64>) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--limit" {
            limit = args.next().and_then(|v| v.parse().ok());
        } else if a == "--hidden-limit" {
            hidden = args.next().and_then(|v| v.parse().ok());
        }
    }
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).expect("read stdin");
    let log: Vec<serde_json::Value> = serde_json::from_str(&input).expect("a JSON array (the emulator's request log)");
    if let Some(h) = hidden {
        adaptive(&log, h);
        return;
    }
    let mut t: Vec<f64> = log.iter().filter_map(|r| r["t_ms"].as_f64()).collect();
    t.sort_by(f64::total_cmp);
    if t.len() < 2 {
        println!("requests: {}", t.len());
        return;
    }
    let span = (t[t.len() - 1] - t[0]) / 1000.0;
    let rate = (t.len() - 1) as f64 / span;
    // Sliding: every window [t_i, t_i + 1 s).
    let (mut max_sliding, mut j) = (0usize, 0usize);
    for i in 0..t.len() {
        while j < t.len() && t[j] < t[i] + 1000.0 {
            j += 1;
        }
        max_sliding = max_sliding.max(j - i);
    }
    let mut fixed: BTreeMap<u64, usize> = BTreeMap::new();
    for x in &t {
        *fixed.entry((*x / 1000.0) as u64).or_default() += 1;
    }
    let max_fixed = fixed.values().copied().max().unwrap_or(0);
    let mut statuses: BTreeMap<u64, usize> = BTreeMap::new();
    for r in &log {
        *statuses.entry(r["status"].as_u64().unwrap_or(0)).or_default() += 1;
    }
    println!("requests: {}", t.len());
    println!("span: {span:.2} s");
    println!("achieved rate: {rate:.1} req/s");
    if let Some(l) = limit {
        println!("achieved / limit: {:.1}%", 100.0 * rate / l);
    }
    println!("busiest sliding 1 s window: {max_sliding}");
    println!("busiest whole-second window: {max_fixed}");
    println!("statuses: {statuses:?}");
    if let Some(l) = limit {
        let ok = max_sliding as f64 <= l;
        println!("no window above the limit: {}", if ok { "yes" } else { "NO" });
    }
}

/// The adaptive-rate figures against a limit the client was not told.
fn adaptive(log: &[serde_json::Value], limit: f64) {
    let start = log.iter().filter_map(|r| r["t_ms"].as_f64()).fold(f64::INFINITY, f64::min);
    let mut ok: BTreeMap<u64, u64> = BTreeMap::new();
    let (mut total, mut throttled) = (0u64, 0u64);
    for r in log {
        let (Some(t), Some(status)) = (r["t_ms"].as_f64(), r["status"].as_u64()) else { continue };
        total += 1;
        if status == 429 {
            throttled += 1;
        } else {
            *ok.entry(((t - start) / 1000.0) as u64).or_default() += 1;
        }
    }
    let last = ok.keys().max().copied().unwrap_or(0);
    // The last second is partial: left out.
    let seconds: Vec<(u64, u64)> = (0..last).map(|s| (s, ok.get(&s).copied().unwrap_or(0))).collect();
    println!("successful answers per second: {:?}", seconds.iter().map(|(_, n)| *n).collect::<Vec<_>>());
    let reached = seconds.iter().find(|(_, n)| *n as f64 >= 0.9 * limit).map(|(s, _)| *s);
    match reached {
        Some(s) => {
            let after: Vec<u64> = seconds.iter().filter(|(t, _)| *t >= s).map(|(_, n)| *n).collect();
            let mean = after.iter().sum::<u64>() as f64 / after.len().max(1) as f64;
            println!("reached 90% of the limit in second: {s}");
            println!("held from then on: {:.1}% of the limit ({} s)", 100.0 * mean / limit, after.len());
        }
        None => println!("reached 90% of the limit: never"),
    }
    println!("requests: {total}, 429s: {throttled} ({:.2}%)", 100.0 * throttled as f64 / total.max(1) as f64);
}
