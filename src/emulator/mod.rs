//! A local emulator of Telemetron's ext-v1 API, for tests and for trying the tool without an
//! account.
//!
//! An axum server with in-memory state: one organization per API key. It follows every behaviour
//! the reference documents (its section 15: 401, 400 validation with the documented messages,
//! 409 on creating an existing email with the existing id, 404s, customers auto-created and named
//! after the email's local part, multi-owner devices, the assigned/alreadyAssigned/skipped
//! buckets, the 1,000-entry bulk-metadata cap, full-replacement metadata, case-insensitive email
//! lookup). Faults are injected deterministically from a seed: latency and jitter, 500s (some
//! returned *after* the write was applied, as a lost response looks to a client), and a rate
//! limit answered with 429 and `Retry-After`.
//!
//! Admin routes outside the API path: `GET /_emulator/state` (every organization's customers,
//! devices with their owners, tickets) and `GET /_emulator/requests` (the request log: time,
//! method, path, status) read; `POST /_emulator/drift` changes a record behind the API's back,
//! as a dashboard edit or another integration would, for rehearsing `verify` and drift. Every
//! route, these included, needs a key the emulator accepts (`x-api-key`), checked before a body
//! is read. The request log keeps the newest [`REQUEST_LOG`] requests (its answer's
//! `x-requests-dropped` header counts those let go).
//!
//! # Choices where the reference is silent ([UNDOC])
//!
//! - Device identifiers are matched exactly (case-sensitive) and not trimmed, except the keys of
//!   bulk-metadata, which the reference says are trimmed. Duplicate keys after trimming are
//!   applied in order (the last wins); each still gets its own result.
//! - Emails are trimmed and lower-cased everywhere, so the 409 check, lookups and unassign are
//!   case-insensitive.
//! - Customer update: omitted fields are kept, `""` clears phone and address (`--empty-on-update
//!   kept` keeps them, [`EmptyOnUpdate::Kept`]), `""` for the name is ignored; the email may change
//!   unless another customer has it (409 with that customer's id). `name` defaults to the email's
//!   local part on create only.
//! - The 409 on create compares emails trimmed and lower-cased; `--email-match fold-accents`
//!   ([`EmailMatch::FoldAccents`]) also ignores accents, and names the other customer's id.
//! - Unset phone and address are left out of customer objects (not `null`, not `""`).
//! - `POST /device` on an existing device *replaces* its properties when `properties` is sent
//!   (`--device-properties merge` merges at the top level instead); `type` is changed when sent.
//! - `assignDeviceToOwners` lists every valid email in `assignedCustomers`, already-assigned ones
//!   included; it does not change the type of an existing device.
//! - `assignDevicesToOwner` whose identifiers are all unknown (without auto-create) answers 200 with
//!   all of them in `skipped` (`--all-unknown-assign bad-request` answers 400 "No valid devices
//!   found" instead, without creating the customer). Duplicate identifiers count once; blank ones
//!   are skipped.
//! - No array-length limit besides bulk-metadata's 1,000.
//! - `getCustomer` with an unknown id of any format is a 404.
//! - `unassignDeviceFromOwner` of an identifier that does not exist is the same 400 "not assigned".
//! - `createTicket` with both `customerId` and `customerEmail` uses `customerId`. A missing
//!   description is made from the messages; a missing category is stored as `null`.
//! - 500s from `--fail-rate`: half are returned before the request is applied, half after.
//! - Faults on one endpoint's writes, set while it runs ([`Emulator::fault_writes`], for tests
//!   of calls whose answer is lost): each request to it is applied, then answered 500
//!   ([`WriteFault::Fail`]) or held unanswered ([`WriteFault::Stall`], counted by
//!   [`Emulator::stalled`]) until the client gives up or dies, or answered 200 with a body
//!   that confirms nothing, applied or not ([`WriteFault::Answer`]).
//! - `--rate-limit N` allows N API requests in any one second (a sliding window, as many real
//!   gateways count); the rest get 429 with `Retry-After: 1` and do not count. Admin routes are neither limited, failed, delayed nor logged.
//! - Records the server refuses (`--refuse KEY`, [`Config::refuse`]): a write that names one of
//!   them anywhere (an identifier, an email, a bulk-metadata key) is a 400 "invalid device
//!   identifier or email", and the rest of its request is not applied either.
//! - A documented request field of the wrong JSON type is a 400 `Invalid field F: expected T`
//!   (`null` counts as absent). `getCustomer`'s id is percent-decoded. A body over 8 MiB
//!   ([`MAX_BODY`]) is a 413 with the usual `{"error": …}` shape.

mod handlers;
mod state;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde::Serialize;
use serde_json::{Value, json};

pub use state::{OrgState, StateDump};

/// Where the emulator serves the API, as the real base URL does.
pub const API_PREFIX: &str = "/api/ext-v1";

/// How `POST /device` treats `properties` on an existing device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PropertiesOnUpdate {
    #[default]
    Replace,
    Merge,
}

/// What `assignDevicesToOwner` answers when every identifier is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AllUnknownAssign {
    /// 200 with every identifier in `skipped`.
    #[default]
    Ok,
    /// 400 "No valid devices found".
    BadRequest,
}

/// How creating a customer matches its email against the existing ones (the 409 check).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EmailMatch {
    /// Trimmed and lower-cased, otherwise exact.
    #[default]
    Exact,
    /// Also ignoring accents (`muller@x.io` matches `müller@x.io`), as a server comparing
    /// with an accent-insensitive collation would: the 409 names the other customer's id.
    FoldAccents,
}

/// What a customer update does with `""` for phone or address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EmptyOnUpdate {
    /// Clears the field.
    #[default]
    Clears,
    /// Keeps the old value, as a server that treats an empty string as "not given" would.
    Kept,
}

/// What happens to a request once it is applied, on the endpoint [`Emulator::fault_writes`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteFault {
    /// Answered 500, as a lost response looks to a client.
    Fail,
    /// Held unanswered for an hour: the client times out, or is killed while it waits.
    Stall,
    /// Answered 200 with this body, which confirms nothing (`{}`, `{"success": false, …}`):
    /// after applying the request when `applied`, without touching anything otherwise.
    Answer { applied: bool, body: &'static str },
}

/// Everything the emulator can be told.
#[derive(Clone, Default)]
pub struct Config {
    /// One organization per key.
    pub api_keys: Vec<String>,
    pub latency: Duration,
    pub jitter: Duration,
    /// Fraction of API requests answered 500 (0..=1).
    pub fail_rate: f64,
    /// API requests allowed in any one second (sliding); `None` is unlimited.
    pub rate_limit: Option<u32>,
    pub seed: u64,
    pub properties_on_update: PropertiesOnUpdate,
    pub all_unknown_assign: AllUnknownAssign,
    pub email_match: EmailMatch,
    pub empty_on_update: EmptyOnUpdate,
    /// Identifiers and emails the server refuses: any write naming one of them, alone or in a
    /// bulk request, is a 400 "invalid device identifier or email" and changes nothing.
    pub refuse: Vec<String>,
    /// How long a connection may take to send a request's headers, and may stay idle between
    /// requests, before it is closed; `None`: [`HEADER_TIMEOUT`].
    pub header_timeout: Option<Duration>,
    /// How many requests the request log keeps (the newest); `None`: [`REQUEST_LOG`].
    pub request_log: Option<usize>,
}

/// How long a connection may take to send a request's headers or stay idle, unless configured.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// How many requests the request log keeps unless configured (about 30 MB of them).
pub const REQUEST_LOG: usize = 200_000;

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("api_keys", &format_args!("[{} redacted]", self.api_keys.len()))
            .field("latency", &self.latency)
            .field("jitter", &self.jitter)
            .field("fail_rate", &self.fail_rate)
            .field("rate_limit", &self.rate_limit)
            .field("seed", &self.seed)
            .field("properties_on_update", &self.properties_on_update)
            .field("all_unknown_assign", &self.all_unknown_assign)
            .field("email_match", &self.email_match)
            .field("empty_on_update", &self.empty_on_update)
            .field("refuse", &self.refuse)
            .field("header_timeout", &self.header_timeout)
            .field("request_log", &self.request_log)
            .finish()
    }
}

/// One line of the request log.
#[derive(Debug, Clone, Serialize)]
pub struct LoggedRequest {
    /// Wall-clock time the request arrived (RFC 3339, UTC).
    pub time: String,
    /// Milliseconds since the emulator started, when the request arrived.
    pub t_ms: f64,
    pub method: String,
    pub path: String,
    pub status: u16,
}

/// The emulator's shared state: cheap to clone, one per server.
#[derive(Clone)]
pub struct Emulator {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    started: Instant,
    orgs: Mutex<Vec<OrgState>>,
    /// The newest requests (at most `Config::request_log`), and how many older ones were let go.
    log: Mutex<std::collections::VecDeque<LoggedRequest>>,
    dropped: AtomicU64,
    counter: AtomicU64,
    /// When the requests of the last second were admitted (for the rate limit).
    window: Mutex<std::collections::VecDeque<std::time::Instant>>,
    /// The endpoint (the end of its path) whose writes meet a fault, and the fault.
    write_fault: Mutex<Option<(String, WriteFault)>>,
    /// Records every write naming one of them is refused (set from [`Config::refuse`], changed
    /// by [`Emulator::refuse`]).
    refused: Mutex<Vec<String>>,
    /// Requests applied and then held unanswered.
    stalled: AtomicU64,
}

impl Emulator {
    pub fn new(config: Config) -> Emulator {
        let orgs = (0..config.api_keys.len()).map(|i| OrgState::new(format!("org_{:06}", i + 1))).collect();
        let refused = Mutex::new(config.refuse.clone());
        Emulator {
            inner: Arc::new(Inner {
                refused,
                config,
                started: Instant::now(),
                orgs: Mutex::new(orgs),
                log: Mutex::new(std::collections::VecDeque::new()),
                dropped: AtomicU64::new(0),
                counter: AtomicU64::new(0),
                window: Mutex::new(std::collections::VecDeque::new()),
                write_fault: Mutex::new(None),
                stalled: AtomicU64::new(0),
            }),
        }
    }

    /// From now on, every request whose path ends with `endpoint` (`/assignDevicesToOwner`,
    /// say) is applied and then meets `fault`; `None` ends it.
    pub fn fault_writes(&self, fault: Option<(&str, WriteFault)>) {
        *self.inner.write_fault.lock().unwrap_or_else(|p| p.into_inner()) = fault.map(|(e, f)| (e.to_string(), f));
    }

    /// From now on, every write naming one of `keys` (an identifier or an email) is refused
    /// with a 400, and changes nothing; an empty list ends it.
    pub fn refuse(&self, keys: &[&str]) {
        *self.inner.refused.lock().unwrap_or_else(|p| p.into_inner()) = keys.iter().map(|k| k.to_string()).collect();
    }

    /// How many requests were applied and then held unanswered ([`WriteFault::Stall`]).
    pub fn stalled(&self) -> u64 {
        self.inner.stalled.load(Ordering::Relaxed)
    }

    /// Every organization's records, as `GET /_emulator/state` shows them.
    pub fn state(&self) -> StateDump {
        let orgs = self.inner.orgs.lock().unwrap_or_else(|p| p.into_inner());
        StateDump { organizations: orgs.iter().map(OrgState::dump).collect() }
    }

    /// The request log, as `GET /_emulator/requests` shows it.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.inner.log.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect()
    }

    /// How many requests the log let go to stay within its bound.
    pub fn requests_dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Adds a request to the log, letting the oldest go past its bound.
    fn log(&self, entry: LoggedRequest) {
        let max = self.inner.config.request_log.unwrap_or(REQUEST_LOG);
        let mut log = self.inner.log.lock().unwrap_or_else(|p| p.into_inner());
        log.push_back(entry);
        while log.len() > max {
            log.pop_front();
            self.inner.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A deterministic draw in [0, 1) for the `n`th request and purpose `salt`.
    fn draw(&self, n: u64, salt: u64) -> f64 {
        let mut z =
            self.inner.config.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt.wrapping_mul(0xD1B5_4A32_D192_ED03);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Counts a request against the rate limit; false when over it.
    fn admit(&self) -> bool {
        let Some(limit) = self.inner.config.rate_limit else { return true };
        let now = std::time::Instant::now();
        let mut w = self.inner.window.lock().unwrap_or_else(|p| p.into_inner());
        while w.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1)) {
            w.pop_front();
        }
        if w.len() >= limit as usize {
            return false;
        }
        w.push_back(now);
        true
    }
}

/// The router: the API under [`API_PREFIX`] and the admin routes. Tests can call it without a
/// socket.
pub fn app(emulator: Emulator) -> Router {
    Router::new()
        .route("/_emulator/state", get(admin_state))
        .route("/_emulator/requests", get(admin_requests))
        .route("/_emulator/drift", axum::routing::post(admin_drift))
        .route("/api/ext-v1/{*rest}", any(api))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(emulator.clone(), require_key))
        .with_state(emulator)
}

/// Every route, the admin routes included, answers 401 to a request without a key it accepts,
/// before anything reads its body. An API request refused so is logged like any other.
/// The organization whose key a request carries (set by [`require_key`]).
#[derive(Debug, Clone, Copy)]
struct Org(usize);

async fn require_key(
    State(emu): State<Emulator>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let key = request.headers().get(crate::api::KEY_HEADER).and_then(|v| v.to_str().ok());
    if let Some(org) = key.and_then(|k| emu.inner.config.api_keys.iter().position(|known| known == k)) {
        let mut request = request;
        request.extensions_mut().insert(Org(org));
        return next.run(request).await;
    }
    if request.uri().path().starts_with(API_PREFIX) {
        emu.log(LoggedRequest {
            time: crate::time::now_rfc3339(),
            t_ms: emu.inner.started.elapsed().as_secs_f64() * 1000.0,
            method: request.method().to_string(),
            path: request.uri().path().to_string(),
            status: StatusCode::UNAUTHORIZED.as_u16(),
        });
    }
    (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "Unauthorized: invalid or missing API key"}))).into_response()
}

/// Serves on `listener` until `shutdown` completes, then finishes the requests in flight. A
/// connection that takes longer than the header timeout to send a request's headers, or stays
/// idle that long between requests, is closed (a server that waited for ever could be held
/// open by anyone who can connect).
pub async fn serve(
    listener: tokio::net::TcpListener,
    emulator: Emulator,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    let timeout = emulator.inner.config.header_timeout.unwrap_or(HEADER_TIMEOUT);
    let app = app(emulator);
    let (stop, stopped) = tokio::sync::watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of file descriptors, say: the connections open go on; try again shortly.
                Err(e) => {
                    tracing::debug!("emulator: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let mut stopped = stopped.clone();
        connections.spawn(async move {
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder.http1().timer(TokioTimer::new()).header_read_timeout(timeout);
            let mut connection = std::pin::pin!(builder.serve_connection_with_upgrades(TokioIo::new(stream), service));
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = stopped.changed() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = stop.send(());
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Binds `addr` and serves in the background; returns the bound address (useful with port 0)
/// and a handle that stops the server when dropped or told to.
pub async fn spawn(addr: SocketAddr, emulator: Emulator) -> std::io::Result<Running> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, emulator, async {
        let _ = rx.await;
    }));
    Ok(Running { addr, stop: Some(tx), task })
}

/// A server started by [`spawn`].
pub struct Running {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// The API's base URL on this server.
    pub fn base_url(&self) -> String {
        format!("http://{}{API_PREFIX}", self.addr)
    }

    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        (&mut self.task).await.unwrap_or(Ok(()))
    }
}

async fn admin_state(State(emu): State<Emulator>) -> impl IntoResponse {
    axum::Json(emu.state())
}

async fn admin_requests(State(emu): State<Emulator>) -> impl IntoResponse {
    let dropped = emu.requests_dropped().to_string();
    ([("x-requests-dropped", dropped)], axum::Json(emu.requests()))
}

/// A change made behind the API's back (`POST /_emulator/drift`), in the first organization
/// unless `org` says otherwise: set or clear a customer's field, assign or unassign a device
/// (an existing one), delete a customer, or delete devices outright (`delete_devices`, with
/// their assignments; `customer` may then be left out).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Drift {
    #[serde(default)]
    pub org: usize,
    #[serde(default)]
    pub customer: String,
    #[serde(default)]
    pub set: std::collections::BTreeMap<String, Option<String>>,
    #[serde(default)]
    pub assign: Vec<String>,
    #[serde(default)]
    pub unassign: Vec<String>,
    #[serde(default)]
    pub delete: bool,
    #[serde(default)]
    pub delete_devices: Vec<String>,
}

impl Emulator {
    /// Applies a [`Drift`]; the error says what was wrong with it.
    pub fn drift(&self, d: &Drift) -> Result<(), String> {
        let mut orgs = self.inner.orgs.lock().unwrap_or_else(|p| p.into_inner());
        let org = orgs.get_mut(d.org).ok_or_else(|| format!("no organization {}", d.org))?;
        org.drift(d)
    }
}

async fn admin_drift(State(emu): State<Emulator>, axum::Json(d): axum::Json<Drift>) -> Response {
    match emu.drift(&d) {
        Ok(()) => (StatusCode::OK, axum::Json(json!({"success": true}))).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, axum::Json(json!({"error": e}))).into_response(),
    }
}

/// The largest request body the emulator reads (the reference names none; bulk-metadata's
/// 1,000 devices fit many times over).
pub const MAX_BODY: usize = 8 << 20;

async fn api(
    State(emu): State<Emulator>,
    method: Method,
    uri: Uri,
    axum::Extension(Org(org)): axum::Extension<Org>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    // A body it cannot read (too large, say) gets the API's error shape, not plain text.
    let body = match body {
        Ok(b) => b,
        Err(r) => return (r.status(), axum::Json(json!({"error": r.body_text()}))).into_response(),
    };
    let arrived = emu.inner.started.elapsed();
    let time = crate::time::now_rfc3339();
    let n = emu.inner.counter.fetch_add(1, Ordering::Relaxed);
    let path = uri.path().to_string();
    let cfg = &emu.inner.config;

    let delay = cfg.latency + cfg.jitter.mul_f64(emu.draw(n, 1));
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let fault = emu.inner.write_fault.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let (status, body, extra_headers) = match &fault {
        Some((endpoint, WriteFault::Answer { applied: false, body })) if path.ends_with(endpoint.as_str()) => {
            (StatusCode::OK, serde_json::from_str(body).unwrap_or(Value::Null), vec![])
        }
        _ => handle(&emu, n, org, &method, &path, &body),
    };
    let (status, body) = match fault {
        // Only a request that was applied meets the fault (not a 401, a 429 or a 400).
        Some((endpoint, fault)) if path.ends_with(&endpoint) && status.is_success() => match fault {
            WriteFault::Fail => (
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": "Internal server error (injected after the write)"}),
            ),
            WriteFault::Stall => {
                emu.inner.stalled.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_secs(3600)).await;
                (StatusCode::GATEWAY_TIMEOUT, json!({"error": "stalled (injected after the write)"}))
            }
            WriteFault::Answer { body, .. } => (StatusCode::OK, serde_json::from_str(body).unwrap_or(Value::Null)),
        },
        _ => (status, body),
    };
    emu.log(LoggedRequest {
        time,
        t_ms: arrived.as_secs_f64() * 1000.0,
        method: method.to_string(),
        path,
        status: status.as_u16(),
    });
    let mut response = (status, axum::Json(body)).into_response();
    for (k, v) in extra_headers {
        response.headers_mut().insert(k, v);
    }
    response
}

type Answer = (StatusCode, Value, Vec<(&'static str, HeaderValue)>);

/// Answers an API request of organization `org` (its key was checked by [`require_key`]).
fn handle(emu: &Emulator, n: u64, org: usize, method: &Method, path: &str, body: &[u8]) -> Answer {
    let cfg = &emu.inner.config;
    if !emu.admit() {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            json!({"error": "Too many requests"}),
            vec![("retry-after", HeaderValue::from_static("1"))],
        );
    }
    let fail = emu.draw(n, 2) < cfg.fail_rate;
    let after_write = emu.draw(n, 3) < 0.5;
    if fail && !after_write {
        return (StatusCode::INTERNAL_SERVER_ERROR, json!({"error": "Internal server error (injected)"}), vec![]);
    }
    let rest = path.strip_prefix(API_PREFIX).unwrap_or(path);
    let refused = emu.inner.refused.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if let Some((status, value)) = handlers::refused(&refused, rest, body) {
        return (status, value, vec![]);
    }
    let (status, value) = {
        let mut orgs = emu.inner.orgs.lock().unwrap_or_else(|p| p.into_inner());
        handlers::dispatch(&mut orgs[org], cfg, method, rest, body)
    };
    if fail {
        // The write happened; the client never hears of it.
        return (StatusCode::INTERNAL_SERVER_ERROR, json!({"error": "Internal server error (injected)"}), vec![]);
    }
    (status, value, vec![])
}
