//! The executor: runs a plan's operations against ext-v1 — rate-limited, a bounded number in
//! flight, retrying what may succeed on a second try — and reports each confirmed operation so
//! that the snapshot records only what Telemetron acknowledged.
//!
//! Phases run in order, each concurrent inside: customer creates → devices → unassignments →
//! assignments → customer details → property updates, so that what routes telemetry lands
//! before what only describes. Nothing is sent for an entity before what it depends on has
//! succeeded: an assignment waits for its customer and device, and a moved device's new owner
//! waits for the old owner's removal (the documented transfer recipe). Every call is chosen so
//! that repeating it after a lost response is harmless: a create that meets 409 becomes an
//! update, `POST /device` is an upsert, the bulk (un)assign endpoints report what was already
//! done, and bulk-metadata replaces. A device in `skipped` is a failed assignment, never a
//! success.
//!
//! Owns concurrency, the one rate limiter, and retries with capped exponential backoff and
//! jitter (honouring `Retry-After`). Knows nothing of SQL or CSV: confirmations leave through a
//! channel.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;

use crate::api;
use crate::client::{ApiError, Client, Rejection};
use crate::diff::Assignment;
use crate::model::{CustomerRecord, DeviceIdent, Email, Properties, TelemetronId};
use crate::plan::{ApiCall, Batching, Calls};

/// How the executor talks to the API.
#[derive(Debug, Clone)]
pub struct Options {
    /// Requests per second, never exceeded in any one-second window.
    pub rate: f64,
    /// Requests in flight at most.
    pub concurrency: usize,
    /// Retries of one call after a retryable failure.
    pub max_retries: u32,
    /// First backoff; it doubles per retry, with jitter, up to `backoff_max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub batching: Batching,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            rate: 10.0,
            concurrency: 4,
            max_retries: 5,
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            batching: Batching::default(),
        }
    }
}

/// A customer to create or update.
#[derive(Debug, Clone)]
pub struct CustomerWork {
    pub email: Email,
    pub telemetron_id: Option<TelemetronId>,
    pub record: CustomerRecord,
    pub create: bool,
}

/// A device to create, or whose type to change.
#[derive(Debug, Clone)]
pub struct DeviceWork {
    pub identifier: DeviceIdent,
    pub device_type: Arc<str>,
    /// Set on create: the properties go in the same call.
    pub properties: Option<Properties>,
    pub create: bool,
}

pub use crate::model::{Confirmed, Intent};

/// The write-ahead journal of the calls whose outcome no later plan could see (assignments;
/// ARCHITECTURE.md, "The journal of intents"). Before an assign or unassign call is sent its
/// pairs are made durable; once its outcome is known — confirmed, or refused — they are
/// settled, after the confirmations. A call whose outcome stays unknown (a timeout or a 5xx
/// after the last retry, a stop during a retry, a kill in flight) leaves them for the next run
/// to read back from Telemetron.
pub trait Journal: Sync {
    /// Resolves once the intents are durable, with their ids; `None` if they cannot be
    /// written, and then the call must not be sent.
    fn intend(&self, intents: Vec<Intent>) -> futures::future::BoxFuture<'_, Option<Vec<i64>>>;
    /// The outcome of these intents is known and its confirmations were handed on.
    fn settle(&self, ids: Vec<i64>);
}

/// One operation that did not happen, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub kind: &'static str,
    /// The entity: an email, an identifier, or `device -> customer`.
    pub key: String,
    pub error: String,
}

/// The kinds of operation, in execution order.
pub const KINDS: [&str; 7] = [
    "customers_created",
    "customers_updated",
    "devices_created",
    "device_types_changed",
    "assignments_removed",
    "assignments_added",
    "properties_replaced",
];

/// Counts of one kind of operation.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    pub done: u64,
    pub failed: u64,
}

/// How a run went.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Outcome {
    /// By kind: customers_created, customers_updated, devices_created, device_types_changed,
    /// assignments_removed, assignments_added, properties_replaced.
    pub operations: BTreeMap<&'static str, Counts>,
    pub calls: u64,
    pub retries: u64,
    pub elapsed_seconds: f64,
    /// The achieved average.
    pub calls_per_second: f64,
    /// The most calls sent in any one-second window.
    pub busiest_second: u64,
    /// Set when the run stopped early: the key was refused, or a signal asked it to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    pub failures: Vec<Failure>,
}

impl Outcome {
    pub fn failed(&self) -> u64 {
        self.operations.values().map(|c| c.failed).sum()
    }
    pub fn done(&self) -> u64 {
        self.operations.values().map(|c| c.done).sum()
    }
}

/// Progress reporting, one phase at a time.
pub trait Progress: Send + Sync {
    fn phase(&self, name: &'static str, calls: u64);
    fn advance(&self, calls: u64);
    fn finish(&self);
}

/// No progress output.
pub struct Silent;
impl Progress for Silent {
    fn phase(&self, _: &'static str, _: u64) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}

type Limiter = governor::DefaultDirectRateLimiter;

/// The slowest rate the limiter paces (one call every 100 s).
pub const MIN_RATE: f64 = 0.01;
/// The fastest: the limiter's period stays far above its nanosecond clock, and no real API
/// takes more from one client.
pub const MAX_RATE: f64 = 10_000.0;

/// Sends calls under the one rate limit, retrying what may succeed on a second try. Shared by
/// `apply` (through [`execute`]) and by `verify`.
pub struct Caller<'a> {
    opts: &'a Options,
    limiter: Limiter,
    stop: &'a AtomicBool,
    fatal: Mutex<Option<String>>,
    calls: AtomicU64,
    retries: AtomicU64,
    jitter_state: AtomicU64,
    /// Whether anything has answered at all (any HTTP status).
    answered: AtomicBool,
    /// When the first call went unanswered, while nothing has answered yet.
    unanswered_since: Mutex<Option<Instant>>,
    /// The send times of the last second, and the most any one-second window held.
    window: Mutex<(std::collections::VecDeque<Instant>, u64)>,
}

/// How long calls may go unanswered, with nothing ever answering, before the run stops as
/// misconfigured (a wrong host or port, a firewall) instead of retrying for minutes.
pub const UNREACHABLE_FOR: Duration = Duration::from_secs(5);

impl<'a> Caller<'a> {
    pub fn new(opts: &'a Options, stop: &'a AtomicBool) -> Caller<'a> {
        let seed =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
        Caller {
            opts,
            limiter: limiter(opts.rate),
            stop,
            fatal: Mutex::new(None),
            calls: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            jitter_state: AtomicU64::new(seed | 1),
            answered: AtomicBool::new(false),
            unanswered_since: Mutex::new(None),
            window: Mutex::new((std::collections::VecDeque::new(), 0)),
        }
    }

    /// The most calls sent in any one-second window so far.
    pub fn busiest_second(&self) -> u64 {
        lock(&self.window).1
    }

    fn count_send(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut w = lock(&self.window);
        let (sent, busiest) = &mut *w;
        while sent.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1)) {
            sent.pop_front();
        }
        sent.push_back(now);
        *busiest = (*busiest).max(sent.len() as u64);
    }

    /// Calls sent so far (every attempt counts).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// Why the run stops early, if it does: the key was refused, or a signal came.
    pub fn stopped(&self) -> Option<String> {
        lock(&self.fatal)
            .clone()
            .or_else(|| self.stop.load(Ordering::Relaxed).then(|| "interrupted by a signal".to_string()))
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || lock(&self.fatal).is_some()
    }

    /// An unanswered call's error, or, while nothing has ever answered, a fatal one when the
    /// failure cannot be transient (TLS, an unknown host) or has lasted [`UNREACHABLE_FOR`].
    fn unreachable(&self, e: ApiError) -> ApiError {
        use crate::client::TransportKind;
        if self.answered.load(Ordering::Relaxed) {
            return e;
        }
        let endpoint = match &e {
            ApiError::Transport { endpoint, .. } | ApiError::Timeout { endpoint, .. } => *endpoint,
            _ => return e,
        };
        let why = match &e {
            ApiError::Transport { kind: TransportKind::Tls, message, .. } => {
                format!("the TLS handshake failed ({message})")
            }
            ApiError::Transport { kind: TransportKind::Dns, message, .. } => {
                format!("the host name does not resolve ({message})")
            }
            _ => {
                let since = *lock(&self.unanswered_since).get_or_insert_with(Instant::now);
                if since.elapsed() < UNREACHABLE_FOR {
                    return e;
                }
                format!("nothing has answered for {} s ({e})", since.elapsed().as_secs())
            }
        };
        ApiError::Misconfigured { endpoint, why, base: None }
    }

    /// Full jitter in [d/2, d].
    fn jitter(&self, d: Duration) -> Duration {
        let mut x = self.jitter_state.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        let f = 0.5 + 0.5 * ((x >> 11) as f64 / (1u64 << 53) as f64);
        d.mul_f64(f)
    }

    /// Create (a 409 turns into an update of the existing customer) or update by id (an id
    /// Telemetron does not know turns into the create path).
    pub async fn upsert_customer(
        &self,
        client: &Client,
        w: &CustomerWork,
    ) -> Option<Result<Option<TelemetronId>, ApiError>> {
        let update = |id: &str| api::CustomerUpsert {
            email: w.email.to_string(),
            name: w.record.name().map(Into::into),
            // An empty string clears a field on update; leaving it out would keep the old value.
            phone: Some(w.record.phone().unwrap_or("").into()),
            address: Some(w.record.address().unwrap_or("").into()),
            telemetron_customer_id: Some(id.to_string()),
        };
        if let Some(id) = &w.telemetron_id {
            let req = update(id.as_str());
            match self.call(|| client.create_or_update_customer(&req)).await? {
                Ok(r) => return Some(Ok(r.telemetron_customer_id.map(|i| TelemetronId::new(&i)).or(Some(id.clone())))),
                Err(e) if e.rejection() == Some(&Rejection::NotFound) => {
                    tracing::info!(customer = %w.email, "the stored Telemetron id is unknown there; creating by email");
                }
                Err(e) => return Some(Err(e)),
            }
        }
        let create = api::CustomerUpsert {
            email: w.email.to_string(),
            name: w.record.name().map(Into::into),
            phone: w.record.phone().map(Into::into),
            address: w.record.address().map(Into::into),
            telemetron_customer_id: None,
        };
        match self.call(|| client.create_or_update_customer(&create)).await? {
            Ok(r) => Some(Ok(r.telemetron_customer_id.map(|i| TelemetronId::new(&i)))),
            Err(ApiError::Rejected { rejection: Rejection::AlreadyExists { telemetron_customer_id }, .. }) => {
                // Not an upsert: the customer exists (perhaps created by our own earlier attempt
                // whose answer was lost). Update it, so that it ends up as the export says.
                let id = match telemetron_customer_id {
                    Some(id) => id,
                    None => match self.call(|| client.query_customer(w.email.as_str())).await? {
                        Ok(c) => c.id,
                        Err(e) => return Some(Err(e)),
                    },
                };
                let req = update(&id);
                match self.call(|| client.create_or_update_customer(&req)).await? {
                    Ok(_) => Some(Ok(Some(TelemetronId::new(&id)))),
                    Err(e) => Some(Err(e)),
                }
            }
            Err(e) => Some(Err(e)),
        }
    }

    /// One API call with the rate limit and retries. `None` when the run is stopping and the
    /// call was never sent.
    pub async fn call<T, F, Fut>(&self, f: F) -> Option<Result<T, ApiError>>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, ApiError>>,
    {
        let mut attempt = 0u32;
        loop {
            if self.stopping() {
                return None;
            }
            self.limiter.until_ready().await;
            if self.stopping() {
                return None;
            }
            self.count_send();
            let result = match f().await {
                Err(e) if e.is_unanswered() => Err(self.unreachable(e)),
                other => {
                    self.answered.store(true, Ordering::Relaxed);
                    other
                }
            };
            match result {
                Ok(v) => return Some(Ok(v)),
                Err(e) if e.is_fatal() => {
                    let mut fatal = lock(&self.fatal);
                    if fatal.is_none() {
                        *fatal = Some(e.to_string());
                    }
                    return Some(Err(e));
                }
                Err(e) if e.is_retryable() && attempt < self.opts.max_retries => {
                    attempt += 1;
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    let backoff =
                        self.opts.backoff_base.saturating_mul(1 << (attempt - 1).min(20)).min(self.opts.backoff_max);
                    let wait = self.jitter(backoff).max(e.retry_after().unwrap_or_default().min(self.opts.backoff_max));
                    tracing::debug!(attempt, wait_ms = wait.as_millis() as u64, "retrying: {e}");
                    // The wait ends early on a stop: the call counts as failed with its last
                    // error, as it would after its last retry.
                    let until = tokio::time::Instant::now() + wait;
                    while tokio::time::Instant::now() < until {
                        if self.stopping() {
                            return Some(Err(e));
                        }
                        tokio::time::sleep_until(until.min(tokio::time::Instant::now() + STOP_CHECK)).await;
                    }
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

struct Exec<'a> {
    client: &'a Client,
    caller: Caller<'a>,
    concurrency: usize,
    confirm: &'a (dyn Fn(Confirmed) + Sync),
    journal: &'a dyn Journal,
    progress: &'a dyn Progress,
    counts: Mutex<BTreeMap<&'static str, Counts>>,
    failures: Mutex<Vec<Failure>>,
    failed_customers: Mutex<FxHashSet<Email>>,
    failed_devices: Mutex<FxHashSet<DeviceIdent>>,
    failed_unassign: Mutex<FxHashSet<DeviceIdent>>,
}

/// How often a retry's wait looks at the stop flag.
const STOP_CHECK: Duration = Duration::from_millis(50);

/// The one rate limiter: no one-second window may hold more than `rate` requests.
///
/// A strict spacing of `1/rate` (no burst) would guarantee that at the sender, but every late
/// timer wake-up pushes the whole schedule back, and a run falls a few percent short of the rate.
/// So the limiter allows a small burst `b` (1% of the rate, at least 1) to catch up after late
/// wake-ups, and paces at `rate - b - 1 - rate/100`: a catch-up burst cannot then put more than
/// `rate` requests in a window, with 1% to spare for the network and the server's scheduling,
/// which bunch requests together on arrival (the server counts arrivals). Measured in
/// BENCHMARKS.md: 97–98% of the rate, no window over it.
fn limiter(rate: f64) -> Limiter {
    let burst = 1 + (rate / 100.0).floor().max(0.0) as u32;
    let paced = if burst == 1 { rate * 0.99 } else { rate - f64::from(burst + 1) - rate / 100.0 };
    let period = Duration::from_secs_f64(1.0 / paced.max(0.001));
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    let quota = governor::Quota::with_period(period).expect("a positive period").allow_burst(burst);
    governor::RateLimiter::direct(quota)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs the plan's calls, phase after phase. `confirm` is called once per acknowledged
/// operation, from the executor's tasks. `stop` is checked before every call: once set, nothing
/// new is sent and the calls in flight finish.
pub async fn execute(
    client: &Client,
    calls: Calls,
    opts: &Options,
    confirm: &(dyn Fn(Confirmed) + Sync),
    journal: &dyn Journal,
    progress: &dyn Progress,
    stop: &AtomicBool,
) -> Outcome {
    let started = Instant::now();
    let ex = Exec {
        client,
        caller: Caller::new(opts, stop),
        concurrency: opts.concurrency.max(1),
        confirm,
        journal,
        progress,
        counts: Mutex::new(BTreeMap::new()),
        failures: Mutex::new(Vec::new()),
        failed_customers: Mutex::new(FxHashSet::default()),
        failed_devices: Mutex::new(FxHashSet::default()),
        failed_unassign: Mutex::new(FxHashSet::default()),
    };
    let n = opts.concurrency.max(1);
    let phases = [
        ("customers", calls.customers),
        ("devices", calls.devices),
        ("unassignments", calls.unassign),
        ("assignments", calls.assign),
        ("customer details", calls.customer_updates),
        ("properties", calls.properties),
    ];
    for (name, list) in phases {
        // After a stop nothing more is sent: the phases left are not started (their bars
        // would show calls that never happen).
        if ex.caller.stopping() {
            break;
        }
        progress.phase(name, list.len() as u64);
        futures::stream::iter(list).for_each_concurrent(n, |call| ex.run(call)).await;
    }
    progress.finish();

    let elapsed = started.elapsed().as_secs_f64();
    let calls = ex.caller.calls();
    let stopped = ex.caller.stopped();
    Outcome {
        operations: std::mem::take(&mut *lock(&ex.counts)),
        calls,
        retries: ex.caller.retries(),
        elapsed_seconds: elapsed,
        calls_per_second: if elapsed > 0.0 { calls as f64 / elapsed } else { 0.0 },
        busiest_second: ex.caller.busiest_second(),
        stopped,
        failures: std::mem::take(&mut *lock(&ex.failures)),
    }
}

impl Exec<'_> {
    async fn run(&self, call: ApiCall) {
        match call {
            ApiCall::CreateCustomer { email, record } => {
                self.customer(CustomerWork { email, telemetron_id: None, record, create: true }).await
            }
            ApiCall::UpdateCustomer { email, telemetron_id, record } => {
                self.customer(CustomerWork { email, telemetron_id, record, create: false }).await
            }
            ApiCall::UpsertDevice { identifier, device_type, properties, create } => {
                self.device(DeviceWork { identifier, device_type, properties, create }).await
            }
            ApiCall::UnassignDevicesFromOwner { customer, devices } => self.unassign(customer, devices).await,
            ApiCall::AssignDevicesToOwner { customer, devices, create, create_customer } => {
                self.assign_to_customer(customer, devices, create, create_customer).await
            }
            ApiCall::AssignDeviceToOwners { device, customers, create, create_customers } => {
                self.assign_device(device, customers, create, create_customers).await
            }
            ApiCall::BulkMetadata { devices } => self.properties(devices).await,
        }
    }

    /// Journals the pairs of a call about to be sent; `None` when it must not be sent (the run
    /// is stopping, or the journal cannot be written).
    async fn intend(&self, assign: bool, pairs: impl Iterator<Item = (DeviceIdent, Email)>) -> Option<Vec<i64>> {
        if self.caller.stopping() {
            return None;
        }
        let intents = pairs.map(|(device, customer)| Intent { assign, device, customer }).collect();
        self.journal.intend(intents).await
    }

    /// Settles a call's intents unless its outcome is unknown (see [`outcome_unknown`]).
    fn settle(&self, ids: Vec<i64>, unknown: bool) {
        if !unknown {
            self.journal.settle(ids);
        }
    }

    fn done(&self, kind: &'static str, n: u64) {
        lock(&self.counts).entry(kind).or_default().done += n;
    }

    fn fail(&self, kind: &'static str, key: String, error: String) {
        lock(&self.counts).entry(kind).or_default().failed += 1;
        tracing::warn!(kind, key = %key, "failed: {error}");
        lock(&self.failures).push(Failure { kind, key, error });
    }

    async fn customer(&self, w: CustomerWork) {
        let kind = if w.create { "customers_created" } else { "customers_updated" };
        let result = self.caller.upsert_customer(self.client, &w).await;
        self.progress.advance(1);
        match result {
            None => {}
            Some(Ok(id)) => {
                (self.confirm)(Confirmed::Customer { email: w.email, id, record: w.record });
                self.done(kind, 1);
            }
            Some(Err(e)) => {
                lock(&self.failed_customers).insert(w.email.clone());
                self.fail(kind, w.email.to_string(), e.to_string());
            }
        }
    }

    async fn device(&self, w: DeviceWork) {
        let kind = if w.create { "devices_created" } else { "device_types_changed" };
        let req = api::DeviceUpsert {
            identifier: w.identifier.to_string(),
            device_type: Some(w.device_type.to_string()),
            properties: w.properties.as_ref().filter(|p| !p.is_empty()).map(properties_json),
        };
        let result = self.caller.call(|| self.client.upsert_device(&req)).await;
        self.progress.advance(1);
        match result {
            None => {}
            Some(Ok(r)) => {
                let id = r.device_id.map(|i| TelemetronId::new(&i));
                (self.confirm)(match w.properties {
                    Some(properties) if w.create => Confirmed::DeviceCreated {
                        identifier: w.identifier,
                        id,
                        device_type: w.device_type,
                        properties,
                    },
                    _ => Confirmed::DeviceType { identifier: w.identifier, device_type: w.device_type },
                });
                self.done(kind, 1);
            }
            Some(Err(e)) => {
                lock(&self.failed_devices).insert(w.identifier.clone());
                self.fail(kind, w.identifier.to_string(), e.to_string());
            }
        }
    }

    async fn unassign(&self, customer: Email, devices: Vec<DeviceIdent>) {
        let kind = "assignments_removed";
        let req = api::UnassignDevicesFromOwner {
            customer_email: customer.to_string(),
            device_identifiers: devices.iter().map(|d| d.to_string()).collect(),
        };
        let Some(ids) = self.intend(false, devices.iter().map(|d| (d.clone(), customer.clone()))).await else { return };
        let result = self.caller.call(|| self.client.unassign_devices_from_owner(&req)).await;
        let unknown = outcome_unknown(&result);
        self.progress.advance(1);
        let fail_all = |error: String| {
            let mut failed = lock(&self.failed_unassign);
            for d in &devices {
                failed.insert(d.clone());
            }
            drop(failed);
            for d in &devices {
                self.fail(kind, format!("{d} -> {customer}"), error.clone());
            }
        };
        match result {
            None => {}
            Some(Ok(r)) => {
                // `skipped` means "was not assigned": the wanted state holds either way.
                let gone: FxHashSet<&str> = r.unassigned_devices.iter().chain(&r.skipped).map(String::as_str).collect();
                for d in &devices {
                    if gone.contains(d.as_str()) {
                        (self.confirm)(Confirmed::Unassigned(Assignment {
                            device: d.clone(),
                            customer: customer.clone(),
                        }));
                        self.done(kind, 1);
                    } else {
                        lock(&self.failed_unassign).insert(d.clone());
                        self.fail(
                            kind,
                            format!("{d} -> {customer}"),
                            "not in the answer of unassignDevicesFromOwner".into(),
                        );
                    }
                }
            }
            Some(Err(e)) if e.rejection() == Some(&Rejection::NotFound) => {
                // No such customer in Telemetron: it holds no device, so none is assigned to it.
                tracing::warn!(customer = %customer, "Telemetron does not know this customer; its assignments are gone already");
                for d in &devices {
                    (self.confirm)(Confirmed::Unassigned(Assignment { device: d.clone(), customer: customer.clone() }));
                }
                self.done(kind, devices.len() as u64);
            }
            Some(Err(e)) => fail_all(e.to_string()),
        }
        self.settle(ids, unknown);
    }

    /// Why an assignment must wait for the next run, if it must: what it depends on failed.
    fn blocked(&self, device: &DeviceIdent, customer: &Email) -> Option<&'static str> {
        if lock(&self.failed_customers).contains(customer) {
            Some("not sent: creating or updating the customer failed")
        } else if lock(&self.failed_devices).contains(device) {
            Some("not sent: creating the device failed")
        } else if lock(&self.failed_unassign).contains(device) {
            Some("not sent: removing the device's previous owner failed (a transfer unassigns first)")
        } else {
            None
        }
    }

    fn assigned(&self, device: &DeviceIdent, customer: &Email) {
        (self.confirm)(Confirmed::Assigned(Assignment { device: device.clone(), customer: customer.clone() }));
        self.done("assignments_added", 1);
    }

    /// A device this call was to create is there: record it (its properties follow in phase 5).
    fn device_created(&self, device: &DeviceIdent, id: Option<&str>, device_type: &Arc<str>) {
        (self.confirm)(Confirmed::DeviceCreated {
            identifier: device.clone(),
            id: id.filter(|i| !i.is_empty()).map(TelemetronId::new),
            device_type: device_type.clone(),
            properties: Properties::empty(),
        });
        self.done("devices_created", 1);
    }

    fn customer_created(&self, email: &Email, id: Option<&str>, record: CustomerRecord) {
        (self.confirm)(Confirmed::Customer { email: email.clone(), id: id.map(TelemetronId::new), record });
        self.done("customers_created", 1);
    }

    /// What an assign call's answer says of its customer, recorded as it says it. A customer
    /// this call was to create (`planned`) that already existed is updated to the export's
    /// fields before it is recorded; one the call created without being asked to (Telemetron had
    /// lost it) is recorded as Telemetron names it, so the next run updates it.
    async fn customer_answered(
        &self,
        email: &Email,
        id: Option<&str>,
        was_created: bool,
        planned: Option<CustomerRecord>,
    ) {
        match planned {
            Some(record) if was_created => self.customer_created(email, id, record),
            Some(record) => {
                let w = CustomerWork {
                    email: email.clone(),
                    telemetron_id: id.map(TelemetronId::new),
                    record,
                    create: false,
                };
                match self.caller.upsert_customer(self.client, &w).await {
                    None => {}
                    Some(Ok(id)) => {
                        (self.confirm)(Confirmed::Customer { email: w.email, id, record: w.record });
                        self.done("customers_created", 1);
                    }
                    Some(Err(e)) => self.fail(
                        "customers_created",
                        email.to_string(),
                        format!("it existed already, and updating it to the export's fields failed: {e}"),
                    ),
                }
            }
            None if was_created => {
                tracing::warn!(customer = %email, "Telemetron did not have this customer and auto-created it (drift)");
                let record = CustomerRecord::new(Some(email.local_part()), None, None, None);
                (self.confirm)(Confirmed::Customer { email: email.clone(), id: id.map(TelemetronId::new), record });
            }
            None => {}
        }
    }

    /// Devices an assign call was to create that Telemetron already had, perhaps with another
    /// type (an organisation that already sends telemetry): their type is set with `POST
    /// /device` before the snapshot records them; their properties follow in phase 5.
    async fn set_types_of_existing(&self, existed: Vec<(DeviceIdent, Option<&str>, Arc<str>)>) {
        let n = self.concurrency;
        futures::stream::iter(existed)
            .for_each_concurrent(n, |(d, id, t)| async move {
                let req =
                    api::DeviceUpsert { identifier: d.to_string(), device_type: Some(t.to_string()), properties: None };
                match self.caller.call(|| self.client.upsert_device(&req)).await {
                    None => {}
                    Some(Ok(r)) => self.device_created(&d, r.device_id.as_deref().or(id), &t),
                    Some(Err(e)) => {
                        lock(&self.failed_devices).insert(d.clone());
                        self.fail(
                            "devices_created",
                            d.to_string(),
                            format!("it existed already, and setting its type failed: {e}"),
                        );
                    }
                }
            })
            .await;
    }

    /// `assignDevicesToOwner`: one customer, many devices; perhaps creating some devices (one
    /// type) and the customer.
    async fn assign_to_customer(
        &self,
        customer: Email,
        devices: Vec<DeviceIdent>,
        create: Option<(Arc<str>, Vec<DeviceIdent>)>,
        create_customer: Option<CustomerRecord>,
    ) {
        let kind = "assignments_added";
        let creating: FxHashSet<&DeviceIdent> = create.as_ref().map(|(_, l)| l.iter().collect()).unwrap_or_default();
        let mut send = Vec::with_capacity(devices.len());
        for d in devices {
            match self.blocked(&d, &customer) {
                Some(why) => {
                    if creating.contains(&d) {
                        lock(&self.failed_devices).insert(d.clone());
                        self.fail("devices_created", d.to_string(), why.into());
                    }
                    self.fail(kind, format!("{d} -> {customer}"), why.into())
                }
                None => send.push(d),
            }
        }
        let fail_creates = |error: &str| {
            // Devices of this call that it was to create (the blocked ones are already failed).
            for d in send.iter().filter(|d| creating.contains(d)) {
                lock(&self.failed_devices).insert(d.clone());
                self.fail("devices_created", d.to_string(), error.to_string());
            }
            if create_customer.is_some() {
                lock(&self.failed_customers).insert(customer.clone());
                self.fail("customers_created", customer.to_string(), error.to_string());
            }
        };
        if send.is_empty() {
            self.progress.advance(1);
            fail_creates("not sent: nothing left to assign in this call");
            return;
        }
        let req = api::AssignDevicesToOwner {
            customer_email: customer.to_string(),
            device_identifiers: send.iter().map(|d| d.to_string()).collect(),
            auto_create_devices: create.is_some(),
            device_type: create.as_ref().map(|(t, _)| t.to_string()),
        };
        let Some(ids) = self.intend(true, send.iter().map(|d| (d.clone(), customer.clone()))).await else { return };
        let result = self.caller.call(|| self.client.assign_devices_to_owner(&req)).await;
        let unknown = outcome_unknown(&result);
        self.progress.advance(1);
        match result {
            None => self.journal.settle(ids),
            Some(Ok(r)) => {
                self.customer_answered(&customer, r.customer_id.as_deref(), r.customer_was_created, create_customer)
                    .await;
                let ok: FxHashMap<&str, (Option<&str>, bool)> = r
                    .assigned_devices
                    .iter()
                    .chain(&r.already_assigned)
                    .map(|d| (d.identifier.as_str(), (d.device_id.as_deref(), d.was_created)))
                    .collect();
                let skipped: FxHashSet<&str> = r.skipped.iter().map(String::as_str).collect();
                let mut existed = Vec::new();
                for d in &send {
                    match ok.get(d.as_str()) {
                        Some(&(id, was_created)) => {
                            if let (true, Some((t, _))) = (creating.contains(d), &create) {
                                if was_created {
                                    self.device_created(d, id, t);
                                } else {
                                    existed.push((d.clone(), id, t.clone()));
                                }
                            }
                            self.assigned(d, &customer);
                        }
                        None => {
                            if creating.contains(d) {
                                lock(&self.failed_devices).insert(d.clone());
                                self.fail(
                                    "devices_created",
                                    d.to_string(),
                                    "not created by assignDevicesToOwner".into(),
                                );
                            }
                            let why = if skipped.contains(d.as_str()) {
                                if !creating.contains(d) {
                                    (self.confirm)(Confirmed::DeviceMissing(d.clone()));
                                }
                                "skipped by assignDevicesToOwner: Telemetron does not have this device (drift); the snapshot forgets it and the next run creates it"
                            } else {
                                "not in the answer of assignDevicesToOwner"
                            };
                            self.fail(kind, format!("{d} -> {customer}"), why.into());
                        }
                    }
                }
                self.settle(ids, unknown);
                self.set_types_of_existing(existed).await;
            }
            Some(Err(e)) => {
                let error = e.to_string();
                fail_creates(&error);
                for d in &send {
                    self.fail(kind, format!("{d} -> {customer}"), error.clone());
                }
                self.settle(ids, unknown);
            }
        }
    }

    /// `assignDeviceToOwners`: one device, many customers; perhaps creating the device and some
    /// of the customers.
    async fn assign_device(
        &self,
        device: DeviceIdent,
        customers: Vec<Email>,
        create: Option<Arc<str>>,
        create_customers: Vec<(Email, CustomerRecord)>,
    ) {
        let kind = "assignments_added";
        let mut send = Vec::with_capacity(customers.len());
        for c in customers {
            match self.blocked(&device, &c) {
                Some(why) => self.fail(kind, format!("{device} -> {c}"), why.into()),
                None => send.push(c),
            }
        }
        let mut creating: BTreeMap<Email, CustomerRecord> = create_customers.into_iter().collect();
        let fail_creates = |creating: &BTreeMap<Email, CustomerRecord>, error: &str| {
            if create.is_some() {
                lock(&self.failed_devices).insert(device.clone());
                self.fail("devices_created", device.to_string(), error.to_string());
            }
            for c in creating.keys() {
                lock(&self.failed_customers).insert(c.clone());
                self.fail("customers_created", c.to_string(), error.to_string());
            }
        };
        if send.is_empty() {
            self.progress.advance(1);
            fail_creates(&creating, "not sent: nothing left to assign in this call");
            return;
        }
        let req = api::AssignDeviceToOwners {
            device_identifier: device.to_string(),
            customer_emails: send.iter().map(|c| c.to_string()).collect(),
            auto_create_device: create.is_some(),
            device_type: create.as_ref().map(|t| t.to_string()),
        };
        let Some(ids) = self.intend(true, send.iter().map(|c| (device.clone(), c.clone()))).await else { return };
        let result = self.caller.call(|| self.client.assign_device_to_owners(&req)).await;
        let unknown = outcome_unknown(&result);
        self.progress.advance(1);
        match result {
            None => self.journal.settle(ids),
            Some(Ok(r)) => {
                let existed = match &create {
                    Some(t) if r.device_was_created => {
                        self.device_created(&device, r.device_id.as_deref(), t);
                        vec![]
                    }
                    Some(t) => vec![(device.clone(), r.device_id.as_deref(), t.clone())],
                    None => vec![],
                };
                let ok: FxHashMap<String, (Option<&str>, bool)> = r
                    .assigned_customers
                    .iter()
                    .map(|a| (a.email.trim().to_lowercase(), (a.customer_id.as_deref(), a.was_created)))
                    .collect();
                for c in &send {
                    match ok.get(c.as_str()) {
                        Some(&(id, was_created)) => {
                            self.customer_answered(c, id, was_created, creating.remove(c)).await;
                            self.assigned(&device, c);
                        }
                        None => self.fail(
                            kind,
                            format!("{device} -> {c}"),
                            "not in the answer of assignDeviceToOwners".into(),
                        ),
                    }
                }
                for c in creating.keys() {
                    lock(&self.failed_customers).insert(c.clone());
                    self.fail("customers_created", c.to_string(), "not created by assignDeviceToOwners".into());
                }
                self.settle(ids, unknown);
                self.set_types_of_existing(existed).await;
            }
            Some(Err(e)) => {
                if create.is_none() && e.rejection() == Some(&Rejection::NotFound) {
                    // Sent without autoCreateDevice: Telemetron does not have the device.
                    (self.confirm)(Confirmed::DeviceMissing(device.clone()));
                }
                let error = e.to_string();
                fail_creates(&creating, &error);
                for c in &send {
                    self.fail(kind, format!("{device} -> {c}"), error.clone());
                }
                self.settle(ids, unknown);
            }
        }
    }

    async fn properties(&self, batch: Vec<(DeviceIdent, Properties)>) {
        let kind = "properties_replaced";
        let (batch, blocked): (Vec<_>, Vec<_>) = {
            let failed = lock(&self.failed_devices);
            batch.into_iter().partition(|(d, _)| !failed.contains(d))
        };
        for (d, _) in blocked {
            self.fail(kind, d.to_string(), "not sent: creating the device failed".into());
        }
        if batch.is_empty() {
            self.progress.advance(1);
            return;
        }
        let req =
            api::BulkMetadata { devices: batch.iter().map(|(d, p)| (d.to_string(), properties_json(p))).collect() };
        let result = self.caller.call(|| self.client.bulk_metadata(&req)).await;
        self.progress.advance(1);
        match result {
            None => {}
            Some(Ok(r)) => {
                let status: std::collections::HashMap<&str, api::BulkMetadataStatus> =
                    r.results.iter().map(|x| (x.identifier.as_str(), x.status)).collect();
                for (d, p) in batch {
                    match status.get(d.as_str()) {
                        Some(api::BulkMetadataStatus::Updated) => {
                            (self.confirm)(Confirmed::DeviceProperties { identifier: d, properties: p });
                            self.done(kind, 1);
                        }
                        Some(api::BulkMetadataStatus::NotFound) => {
                            (self.confirm)(Confirmed::DeviceMissing(d.clone()));
                            self.fail(
                                kind,
                                d.to_string(),
                                "bulk-metadata: Telemetron does not have this device (not_found); the snapshot forgets it and the next run creates it".into(),
                            )
                        }
                        _ => {
                            self.fail(kind, d.to_string(), "bulk-metadata did not report this device as updated".into())
                        }
                    }
                }
            }
            Some(Err(e)) => {
                for (d, _) in batch {
                    self.fail(kind, d.to_string(), e.to_string());
                }
            }
        }
    }
}

/// Whether a call's outcome is unknown: never sent, answered, or refused are known; an error
/// worth a retry, after the last one, is not (the call may have been applied).
fn outcome_unknown<T>(result: &Option<Result<T, ApiError>>) -> bool {
    matches!(result, Some(Err(e)) if e.is_retryable())
}

fn properties_json(p: &Properties) -> serde_json::Map<String, serde_json::Value> {
    p.to_map().into_iter().map(|(k, v)| (k, v.into())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How many requests the limiter lets through at once, after being idle.
    fn burst(rate: f64) -> u32 {
        let l = limiter(rate);
        let mut n = 0;
        while l.check().is_ok() {
            n += 1;
        }
        n
    }

    #[test]
    fn the_burst_is_one_percent_of_the_rate() {
        assert_eq!(burst(10.0), 1);
        assert_eq!(burst(200.0), 3);
        assert_eq!(burst(500.0), 6);
    }
}
