//! The check before a writing run's work: one cheap read (`queryCustomer` of an address no
//! organization is expected to hold) tells a refused key or a base URL that is not the API
//! before anything is planned or sent — also on a quiet night with nothing to send, since a
//! regenerated key is revoked at once and for good (facts §1.2).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::client::{ApiError, Client, TransportKind};
use crate::error::Error;

/// The address the check asks for; any answer from the API but a 401 means the key works.
pub const ADDRESS: &str = "telemetron-sync-check@example.com";

/// How many times an unanswered check is tried, and the wait after the first miss (it doubles).
const TRIES: u32 = 3;
const FIRST_WAIT: Duration = Duration::from_millis(500);

/// The key and base URL were accepted once in this process: an event stream checks once, and
/// a key revoked later shows as its own calls' 401.
static PASSED: AtomicBool = AtomicBool::new(false);

/// Checks the key and the base URL. `Err(Error::KeyRefused)` for a 401,
/// `Err(Error::Unreachable)` when nothing answered (after [`TRIES`]) or what answered is not
/// the API (a redirect, a 404 page); any other answer — the customer, a 404 "not found", even a
/// 5xx or a 429 — lets the run go on (the server and the key are there; the run's own calls
/// retry what is transient).
pub fn check(client: &Client) -> Result<(), Error> {
    if PASSED.load(Ordering::Relaxed) {
        return Ok(());
    }
    let rt = super::runtime()?;
    let mut wait = FIRST_WAIT;
    for attempt in 1..=TRIES {
        let e = match rt.block_on(client.query_customer(ADDRESS)) {
            Ok(_) => break,
            Err(e) => e,
        };
        match &e {
            ApiError::Unauthorized { .. } => {
                return Err(Error::KeyRefused(format!("nothing was planned or sent: {e}")));
            }
            ApiError::Misconfigured { .. } | ApiError::Redirected { .. } => {
                return Err(Error::Unreachable(format!("nothing was planned or sent: {e}")));
            }
            ApiError::Transport { .. } | ApiError::Timeout { .. } if attempt < TRIES => {
                tracing::debug!(attempt, "the check before the run got no answer ({e}); trying again");
                std::thread::sleep(wait);
                wait *= 2;
            }
            ApiError::Transport { kind, .. } => {
                let what = match kind {
                    TransportKind::Refused => "nothing listens there (connection refused)",
                    TransportKind::Dns => "the host name does not resolve",
                    TransportKind::Tls => "the TLS handshake failed",
                    TransportKind::Other => "the connection failed",
                };
                return Err(Error::Unreachable(format!(
                    "Telemetron at {} cannot be reached: {what}, {TRIES} tries ({e}). Nothing was planned or sent. Check --base-url (or TELEMETRON_BASE_URL) and the network. The next run tries again",
                    client.base_url()
                )));
            }
            ApiError::Timeout { timeout, .. } => {
                return Err(Error::Unreachable(format!(
                    "Telemetron at {} gave no answer within the timeout ({}s), {TRIES} tries. Nothing was planned or sent; the server may be down or the network slow (--timeout). The next run tries again",
                    client.base_url(),
                    timeout.as_secs_f64()
                )));
            }
            _ => {
                tracing::debug!("the check before the run was answered ({e}); the key and the base URL work");
                break;
            }
        }
    }
    PASSED.store(true, Ordering::Relaxed);
    Ok(())
}
