//! The one way a call is sent: the rate limiter, retries with capped exponential backoff and
//! jitter (honouring `Retry-After`), the stop flag, and the signs of a base URL that is not the
//! API. Shared by `apply` (through the executor), `verify` and the journal's read-back.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::api;
use crate::client::{ApiError, Client, Rejection};
use crate::model::TelemetronId;

use super::adaptive::Adaptive;
use super::{CustomerWork, Options, lock};

tokio::task_local! {
    /// Set once the planned call under way sent a request ([`Exec::run`](super::Exec)): the
    /// calls a run made of those it planned, whatever follow-ups, halves and retries it took.
    pub(super) static SENT: std::cell::Cell<bool>;
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
    pace: Pace,
    stop: &'a AtomicBool,
    fatal: Mutex<Option<String>>,
    calls: AtomicU64,
    retries: AtomicU64,
    jitter_state: AtomicU64,
    /// Whether anything has answered at all (any HTTP status).
    answered: AtomicBool,
    /// When the first call went unanswered, while nothing has answered yet.
    unanswered_since: Mutex<Option<Instant>>,
    /// Attempts in a row that got no answer (a timeout, a connection failure) since the last
    /// answer of any kind: at [`Caller::dead_after`], the server has stopped answering.
    unanswered_streak: AtomicU64,
    /// The send times of the last second, and the most any one-second window held.
    window: Mutex<(std::collections::VecDeque<Instant>, u64)>,
}

/// How sends are spaced: a fixed rate, or `--rate auto`.
enum Pace {
    Fixed(Limiter),
    Auto(Adaptive),
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
            pace: match opts.auto_max {
                None => Pace::Fixed(limiter(opts.rate)),
                Some(max) => Pace::Auto(Adaptive::new(opts.rate, max)),
            },
            stop,
            fatal: Mutex::new(None),
            calls: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            jitter_state: AtomicU64::new(seed | 1),
            answered: AtomicBool::new(false),
            unanswered_since: Mutex::new(None),
            unanswered_streak: AtomicU64::new(0),
            window: Mutex::new((std::collections::VecDeque::new(), 0)),
        }
    }

    /// With `--rate auto`, the rate the run settled at.
    pub fn settled_rate(&self) -> Option<f64> {
        match &self.pace {
            Pace::Auto(a) => Some(a.settled()),
            Pace::Fixed(_) => None,
        }
    }

    /// The most calls sent in any one-second window so far.
    pub fn busiest_second(&self) -> u64 {
        lock(&self.window).1
    }

    fn count_send(&self) {
        let _ = SENT.try_with(|sent| sent.set(true));
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

    /// How many attempts in a row may go unanswered before the run stops: twice the calls in
    /// flight, so that every one of them has timed out twice with no answer between.
    pub fn dead_after(&self) -> u64 {
        2 * self.opts.concurrency.max(1) as u64
    }

    /// Counts an unanswered attempt; at [`Caller::dead_after`] in a row, stops the run (the
    /// calls in flight keep their journalled intents for the next run's read-back).
    fn count_unanswered(&self, e: &ApiError) {
        let streak = self.unanswered_streak.fetch_add(1, Ordering::Relaxed) + 1;
        if streak < self.dead_after() {
            return;
        }
        let mut fatal = lock(&self.fatal);
        if fatal.is_none() {
            let now = crate::time::now_rfc3339();
            let hhmm = now.get(11..16).unwrap_or(&now);
            *fatal = Some(format!(
                "Telemetron stopped answering at {hhmm} UTC ({streak} attempts in a row got no answer; the last: {e})"
            ));
        }
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
            // A slow server is not a wrong URL: timeouts are the dead-server breaker's to judge.
            ApiError::Timeout { .. } => return e,
            _ => {
                let since = *lock(&self.unanswered_since).get_or_insert_with(Instant::now);
                if since.elapsed() < UNREACHABLE_FOR {
                    return e;
                }
                // The threshold, not the moment this call noticed it: the same words every time.
                match &e {
                    ApiError::Transport { kind: TransportKind::Refused, .. } => format!(
                        "nothing listens there: every connection was refused for {} s ({e})",
                        UNREACHABLE_FOR.as_secs()
                    ),
                    _ => format!("nothing has answered for {} s ({e})", UNREACHABLE_FOR.as_secs()),
                }
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
    /// Telemetron does not know turns into the create path). Says the customer's id, and
    /// whether it was created again: Telemetron had lost the customer the snapshot knew, and
    /// with it every assignment the snapshot holds for it.
    pub async fn upsert_customer(&self, client: &Client, w: &CustomerWork) -> Option<Result<Upserted, ApiError>> {
        let update = |id: &str| api::CustomerUpsert {
            email: w.email.to_string(),
            // A customer without a name is named after its email's local part, as Telemetron
            // names one created without a name; leaving the name out would keep the old one.
            name: Some(w.record.name().unwrap_or(w.email.local_part()).into()),
            // An empty string clears a field on update; leaving it out would keep the old value.
            phone: Some(w.record.phone().unwrap_or("").into()),
            address: Some(w.record.address().unwrap_or("").into()),
            telemetron_customer_id: Some(id.to_string()),
        };
        let mut lost = false;
        if let Some(id) = &w.telemetron_id {
            let req = update(id.as_str());
            match self.call(|| client.create_or_update_customer(&req)).await? {
                Ok(r) => {
                    let id = r.telemetron_customer_id.map(|i| TelemetronId::new(&i)).or(Some(id.clone()));
                    return Some(Ok(Upserted { id, recreated: false }));
                }
                Err(e) if e.rejection() == Some(&Rejection::NotFound) => {
                    tracing::warn!(
                        customer = %w.email,
                        "Telemetron no longer has this customer (404 on its update); creating it again, and its devices are assigned again"
                    );
                    lost = true;
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
            Ok(r) => {
                let id = r.telemetron_customer_id.map(|i| TelemetronId::new(&i));
                Some(Ok(Upserted { id, recreated: lost }))
            }
            Err(ApiError::Rejected { rejection: Rejection::AlreadyExists { telemetron_customer_id }, .. }) => {
                // Not an upsert: the customer exists (perhaps created by our own earlier attempt
                // whose answer was lost). Update it, so that it ends up as the export says —
                // once it is read back as this email's customer: a server that matches emails
                // loosely (accents, say) may name another customer, who is never overwritten.
                let found = match &telemetron_customer_id {
                    Some(id) => self.call(|| client.get_customer(id)).await?,
                    None => self.call(|| client.query_customer(w.email.as_str())).await?,
                };
                let id = match found {
                    Ok(c) => match crate::client::same_customer(w.email.as_str(), &c) {
                        Ok(()) => c.id,
                        Err(e) => return Some(Err(e)),
                    },
                    Err(e) => return Some(Err(e)),
                };
                let req = update(&id);
                match self.call(|| client.create_or_update_customer(&req)).await? {
                    // Lost by its stored id, yet found by its email: its assignments are not
                    // known either way, so they are sent again.
                    Ok(_) => Some(Ok(Upserted { id: Some(TelemetronId::new(&id)), recreated: lost })),
                    Err(e) => Some(Err(e)),
                }
            }
            Err(e) => Some(Err(e)),
        }
    }

    /// One API call with the rate limit and retries. `None` when the run is stopping and the
    /// call was never sent; a call stopped between its retries is its last error (its outcome
    /// may be unknown: it must not read as never sent).
    pub async fn call<T, F, Fut>(&self, f: F) -> Option<Result<T, ApiError>>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, ApiError>>,
    {
        let mut attempt = 0u32;
        let mut last: Option<ApiError> = None;
        loop {
            if self.stopping() {
                return last.map(Err);
            }
            match &self.pace {
                Pace::Fixed(l) => l.until_ready().await,
                Pace::Auto(a) => a.until_ready().await,
            }
            if self.stopping() {
                return last.map(Err);
            }
            // A retry is counted when it is sent: one a stop kept back is neither a call nor a
            // retry, so that calls less retries is the calls sent, whoever counts.
            if attempt > 0 {
                self.retries.fetch_add(1, Ordering::Relaxed);
            }
            self.count_send();
            let sent = Instant::now();
            let result = f().await;
            if let Pace::Auto(a) = &self.pace {
                match &result {
                    Err(e) if e.is_unanswered() => {}
                    Err(ApiError::RateLimited { .. }) => a.answered(sent.elapsed(), true),
                    _ => a.answered(sent.elapsed(), false),
                }
            }
            let result = match result {
                Err(e) if e.is_unanswered() => {
                    self.count_unanswered(&e);
                    Err(self.unreachable(e))
                }
                other => {
                    self.answered.store(true, Ordering::Relaxed);
                    self.unanswered_streak.store(0, Ordering::Relaxed);
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
                    last = Some(e);
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// A customer created or updated: its Telemetron id, and whether it was created again because
/// Telemetron had lost it.
pub struct Upserted {
    pub id: Option<TelemetronId>,
    pub recreated: bool,
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
pub(super) fn limiter(rate: f64) -> Limiter {
    let burst = 1 + (rate / 100.0).floor().max(0.0) as u32;
    let paced = if burst == 1 { rate * 0.99 } else { rate - f64::from(burst + 1) - rate / 100.0 };
    let period = Duration::from_secs_f64(1.0 / paced.max(0.001));
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    let quota = governor::Quota::with_period(period).expect("a positive period").allow_burst(burst);
    governor::RateLimiter::direct(quota)
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
