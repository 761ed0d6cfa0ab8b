//! No answer a server can give ends a command with a panic (exit 101). A server on loopback
//! answers every request with one (status, headers, body) drawn from a seeded mix of what the
//! reference documents and what it leaves open — odd bodies, huge or dated `Retry-After`s,
//! statuses no page lists — and the real binary runs its ad-hoc calls and an `apply` against it.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Response, StatusCode};

use crate::apply::sample;
use crate::util::KEY;

#[derive(Clone)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: Vec<u8>,
}

/// A server that gives every request the answer set last.
pub(crate) struct Hostile {
    pub(crate) base_url: String,
    pub(crate) answer: Arc<Mutex<Answer>>,
    _rt: tokio::runtime::Runtime,
}

pub(crate) fn hostile() -> Hostile {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let answer = Arc::new(Mutex::new(Answer { status: 200, headers: vec![], body: b"{}".to_vec() }));
    let shared = answer.clone();
    let base_url = rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().fallback(move || {
            let a = shared.lock().unwrap().clone();
            async move {
                let mut r = Response::new(Body::from(a.body));
                *r.status_mut() = StatusCode::from_u16(a.status).unwrap();
                for (k, v) in a.headers {
                    if let Ok(v) = HeaderValue::from_str(&v) {
                        r.headers_mut().append(HeaderName::from_static(k), v);
                    }
                }
                r
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/api/ext-v1")
    });
    Hostile { base_url, answer, _rt: rt }
}

const STATUSES: [u16; 16] = [200, 201, 202, 204, 299, 304, 400, 401, 403, 404, 409, 413, 429, 500, 503, 599];

/// Bodies: the documented shapes, the same with fields missing or of the wrong type, and what a
/// proxy or a broken server sends.
fn bodies() -> Vec<Vec<u8>> {
    let mut b: Vec<Vec<u8>> = [
        "{}",
        "{\"success\": true}",
        "{\"success\": false, \"error\": \"nope\"}",
        "{\"error\": \"Customer not found\"}",
        "{\"error\": 5}",
        "{\"success\": \"yes\", \"devices\": 5, \"id\": null, \"telemetronCustomerId\": []}",
        "{\"id\": \"c1\", \"email\": \"a@x.io\", \"devices\": [null, 5, \"D1\"]}",
        "{\"success\": true, \"assignedCustomers\": [{}], \"deviceWasCreated\": null}",
        "{\"success\": true, \"results\": [{\"identifier\": 5}], \"updated\": -1}",
        "{\"success\": true, \"skipped\": \"all\", \"assignedDevices\": null}",
        "{\"error\": \"Customer already exists\", \"telemetronCustomerId\": {\"x\": 1}}",
        "{\"error\": \"Device is not assigned\", \"currentDevices\": \"D1\"}",
        "[]",
        "null",
        "\"text\"",
        "1e999",
        "",
        "<html><body>502 Bad Gateway</body></html>",
        "{\"success\": true",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    b.push(vec![0xff, 0xfe, b'{', 0x80]);
    b.push(format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes());
    b.push(format!("{{\"error\": \"{}\"}}", "x".repeat(2 << 20)).into_bytes());
    b
}

fn headers(pick: u64) -> Vec<(&'static str, String)> {
    let retry = [
        "1e20",
        "-5",
        "NaN",
        "0",
        "1",
        "Wed, 21 Oct 2099 07:28:00 GMT",
        "Wed, 21 Oct 1970 07:28:00 GMT",
        "soon",
        "18446744073709551616",
    ];
    match pick % 4 {
        0 => vec![],
        1 => vec![("retry-after", retry[(pick / 4) as usize % retry.len()].to_string())],
        2 => vec![("location", "http://elsewhere.invalid/x".into()), ("content-type", "text/html".into())],
        _ => vec![("content-type", "application/json; charset=utf-16".into()), ("retry-after", "1e20".into())],
    }
}

#[test]
fn no_server_answer_panics() {
    let (w, h) = (sample(), hostile());
    // No retries: every answer is still read whole (its Retry-After too), without the waits.
    w.write("fast.toml", "[run]\nmax_retries = 0\n");
    let bodies = bodies();
    let commands: [&[&str]; 6] = [
        &["customer", "query", "a@x.io"],
        &["customer", "upsert", "--email", "a@x.io", "--name", "A"],
        &["assign", "--device", "D1", "--customer", "a@x.io"],
        &["device", "metadata", "--identifier", "D1", "--property", "a=b"],
        &[
            "event",
            "--config",
            "fast.toml",
            "--state",
            "e.db",
            "release",
            "--device",
            "D1",
            "--customer",
            "a@x.io",
            "--rate",
            "1000",
        ],
        &[
            "apply",
            "--config",
            "sample-data/config.toml",
            "--input-dir",
            "sample-data/day1",
            "--state",
            "s.db",
            "--rate",
            "1000",
            "--max-retries",
            "0",
            "--backoff-ms",
            "1",
            "--timeout",
            "5",
            "--max-duration",
            "2s",
        ],
    ];
    // Every status with every body once, each with a seeded header set, over the commands in turn.
    let mut n = 0u64;
    for status in STATUSES {
        for body in &bodies {
            n += 1;
            let pick = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 7;
            let answer = Answer { status, headers: headers(pick), body: body.clone() };
            *h.answer.lock().unwrap() = answer.clone();
            let args = commands[(n as usize) % commands.len()];
            let r = w.run_at(&h.base_url, KEY, args);
            assert!(
                r.code != 101 && r.code != -1 && !r.stderr.contains("panicked"),
                "{args:?} against {status} {:?} {:?}: exit {}\n{}",
                answer.headers,
                String::from_utf8_lossy(&body[..body.len().min(200)]),
                r.code,
                r.stderr
            );
        }
    }
}
