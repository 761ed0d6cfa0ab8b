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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rustc_hash::FxHashSet;
use serde::Serialize;

use crate::client::{ApiError, Client};
use crate::model::{CustomerRecord, DeviceIdent, Email, Properties, TelemetronId};
use crate::plan::{ApiCall, Batching, Calls};

mod adaptive;
mod assign;
mod caller;
mod entities;

pub use caller::{Caller, MAX_RATE, MIN_RATE, UNREACHABLE_FOR};

/// How the executor talks to the API.
#[derive(Debug, Clone)]
pub struct Options {
    /// Requests per second, never exceeded in any one-second window (with `auto_max`, the
    /// rate to start at).
    pub rate: f64,
    /// `--rate auto`: find the API's limit, never going above this.
    pub auto_max: Option<f64>,
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
            auto_max: None,
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
    /// The update empties a field the snapshot holds: Telemetron's answer does not show what
    /// it kept, so the customer is read back before it is recorded.
    pub clears: bool,
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
    /// Telemetron refused the record on its own: sending it again cannot help.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub refused: bool,
    /// The export's `file:line` it came from, when one gives it (found after the run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
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
    /// Every failure, the refused ones included.
    pub failed: u64,
    /// Failures Telemetron refused as invalid, record by record: retrying the same request
    /// cannot help, the export row (or Telemetron) must change.
    #[serde(skip_serializing_if = "is_zero")]
    pub refused: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// How a run went.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Outcome {
    /// By kind: customers_created, customers_updated, devices_created, device_types_changed,
    /// assignments_removed, assignments_added, properties_replaced.
    pub operations: BTreeMap<&'static str, Counts>,
    /// HTTP requests, retries and follow-ups (a read-back, a split call's halves) included.
    pub calls: u64,
    pub retries: u64,
    /// The planned calls that were sent: the calls a stop or the cron window left are the
    /// planned ones less these.
    pub planned_calls_sent: u64,
    pub elapsed_seconds: f64,
    /// The achieved average.
    pub calls_per_second: f64,
    /// The most calls sent in any one-second window.
    pub busiest_second: u64,
    /// `--rate auto`: the rate the run settled at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settled_rate: Option<f64>,
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
    pub fn refused(&self) -> u64 {
        self.operations.values().map(|c| c.refused).sum()
    }
}

/// Progress reporting, one phase at a time.
pub trait Progress: Send + Sync {
    fn phase(&self, name: &'static str, calls: u64);
    /// The phase under way has this many calls more than it was started with.
    fn more(&self, _calls: u64) {}
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

/// One run of the executor: the state its tasks share.
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
    /// Customers whose update emptied a field Telemetron kept (read back).
    kept: AtomicU64,
    /// Planned calls that were sent (at least their first request).
    made: AtomicU64,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The calls of a phase handed over one at a time as they are made ([`crate::plan::staged_calls`]
/// on a thread of its own), and how many there are.
#[derive(Debug)]
pub struct Feed {
    pub len: u64,
    pub calls: tokio::sync::mpsc::Receiver<ApiCall>,
}

/// The two phases a migration has millions of calls in, fed instead of made beforehand.
#[derive(Debug)]
pub struct Feeds {
    pub assign: Feed,
    pub properties: Feed,
}

impl Feeds {
    pub fn len(&self) -> u64 {
        self.assign.len + self.properties.len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A phase's calls: made, or fed as they are made.
enum PhaseCalls {
    Made(Vec<ApiCall>),
    Fed(Feed),
}

/// Runs the plan's calls, phase after phase: `early` (how many, and the calls, made as they are
/// sent) at once, as the start of the customers phase (customer creates only), and `rest` when
/// it resolves — the planner may still be making them. `confirm` is called once per
/// acknowledged operation, from the executor's tasks. `stop` is checked before every call:
/// once set, nothing new is sent, the calls in flight finish, and `rest` is no longer waited for.
/// `rest` may leave its assign and properties calls to be fed ([`Feeds`]).
#[allow(clippy::too_many_arguments)]
pub async fn execute(
    client: &Client,
    early: (u64, impl Iterator<Item = ApiCall>),
    rest: impl std::future::Future<Output = (Calls, Option<Feeds>)>,
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
        kept: AtomicU64::new(0),
        made: AtomicU64::new(0),
    };
    let n = opts.concurrency.max(1);
    // Early calls open the customers phase; the rest of it follows once the rest is made.
    let (early_len, early) = early;
    let opened = early_len > 0;
    let (calls, feeds) = if opened {
        progress.phase("customers", early_len);
        futures::stream::iter(early).for_each_concurrent(n, |call| ex.run(call)).await;
        match ex.unless_stopping(rest).await {
            Some((mut calls, feeds)) => {
                progress.more(calls.customers.len() as u64);
                let customers = std::mem::take(&mut calls.customers);
                futures::stream::iter(customers).for_each_concurrent(n, |call| ex.run(call)).await;
                (calls, feeds)
            }
            None => (Calls::default(), None),
        }
    } else {
        // Nothing to make, but what it holds (the operations) is not kept for the run.
        drop(early);
        rest.await
    };
    let (assign, properties) = match feeds {
        Some(Feeds { assign, properties }) => (PhaseCalls::Fed(assign), PhaseCalls::Fed(properties)),
        None => (PhaseCalls::Made(calls.assign), PhaseCalls::Made(calls.properties)),
    };
    let phases = [
        ("customers", PhaseCalls::Made(calls.customers)),
        ("devices", PhaseCalls::Made(calls.devices)),
        ("unassignments", PhaseCalls::Made(calls.unassign)),
        ("assignments", assign),
        ("customer details", PhaseCalls::Made(calls.customer_updates)),
        ("properties", properties),
    ];
    for (name, list) in phases {
        // After a stop nothing more is sent: the phases left are not started (their bars
        // would show calls that never happen).
        if ex.caller.stopping() {
            break;
        }
        if opened && name == "customers" {
            continue;
        }
        match list {
            PhaseCalls::Made(list) => {
                progress.phase(name, list.len() as u64);
                futures::stream::iter(list).for_each_concurrent(n, |call| ex.run(call)).await;
            }
            PhaseCalls::Fed(Feed { len, calls }) => {
                progress.phase(name, len);
                // Read until a stop, not to the end: the rest would be made only to be dropped.
                let fed =
                    futures::stream::unfold(
                        calls,
                        |mut calls| async move { calls.recv().await.map(|call| (call, calls)) },
                    );
                fed.take_while(|_| std::future::ready(!ex.caller.stopping()))
                    .for_each_concurrent(n, |call| ex.run(call))
                    .await;
            }
        }
    }
    progress.finish();
    let kept = ex.kept.load(Ordering::Relaxed);
    if kept > 0 {
        tracing::warn!(
            customers = kept,
            "{kept} customer(s) kept a name, phone or address the export emptied: Telemetron did not clear it, and the snapshot records the value it kept"
        );
    }

    let elapsed = started.elapsed().as_secs_f64();
    let calls = ex.caller.calls();
    let stopped = ex.caller.stopped();
    Outcome {
        operations: std::mem::take(&mut *lock(&ex.counts)),
        calls,
        retries: ex.caller.retries(),
        planned_calls_sent: ex.made.load(Ordering::Relaxed),
        elapsed_seconds: elapsed,
        calls_per_second: if elapsed > 0.0 { calls as f64 / elapsed } else { 0.0 },
        busiest_second: ex.caller.busiest_second(),
        settled_rate: ex.caller.settled_rate(),
        stopped,
        failures: std::mem::take(&mut *lock(&ex.failures)),
    }
}

impl Exec<'_> {
    /// `work`'s output, or `None` once the run is stopping (looked at every 100 ms): a stop
    /// does not wait for what it would no longer use.
    async fn unless_stopping<T>(&self, work: impl std::future::Future<Output = T>) -> Option<T> {
        let mut work = std::pin::pin!(work);
        loop {
            if self.caller.stopping() {
                return None;
            }
            tokio::select! {
                out = &mut work => return Some(out),
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    }
}

/// Whether a call's outcome is unknown: never sent, answered, or refused are known; an error
/// worth a retry, after the last one, is not (the call may have been applied).
pub(super) fn outcome_unknown<T>(result: &Option<Result<T, ApiError>>) -> bool {
    matches!(result, Some(Err(e)) if e.is_retryable())
}

pub(super) fn properties_json(p: &Properties) -> serde_json::Map<String, serde_json::Value> {
    p.to_map().into_iter().map(|(k, v)| (k, v.into())).collect()
}
