//! Reads the emulator's request log (`GET /_emulator/requests`, JSON on stdin) and prints what
//! the rate benchmark checks: requests, achieved rate, the busiest one-second window (sliding,
//! and aligned to whole seconds), and the status codes.
//!
//! ```text
//! curl -s http://127.0.0.1:PORT/_emulator/requests | cargo run --release --example request_log_stats -- --limit 200
//! ```

use std::collections::BTreeMap;
use std::io::Read;

fn main() {
    let mut limit: Option<f64> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--limit" {
            limit = args.next().and_then(|v| v.parse().ok());
        }
    }
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).expect("read stdin");
    let log: Vec<serde_json::Value> = serde_json::from_str(&input).expect("a JSON array (the emulator's request log)");
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
