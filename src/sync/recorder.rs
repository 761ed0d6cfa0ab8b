//! The recorder: a thread that owns the snapshot while the executor runs, and commits what it
//! is handed — confirmations through `Writer::record`, the journal's intents at once (their call
//! waits for them), settled intents in order after their call's confirmations.

use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::execute::{self, Confirmed, Intent};
use crate::snapshot::Store;

/// How often confirmations are committed, at the longest.
const COMMIT_EVERY: Duration = Duration::from_secs(1);

/// What the executor hands the recorder, in the order it happened.
pub(super) enum Record {
    Confirmed(Confirmed),
    /// Intents to make durable before their call is sent: committed at once, with whatever
    /// else is waiting (a group commit), and answered with their ids.
    Intend(Vec<Intent>, tokio::sync::oneshot::Sender<Vec<i64>>),
    Settle(Vec<i64>),
}

/// The journal, kept by the recorder thread in the snapshot.
pub(super) struct RecorderJournal {
    pub(super) tx: Mutex<mpsc::Sender<Record>>,
}

impl RecorderJournal {
    /// Hands a record to the recorder; false once it has stopped.
    pub(super) fn send(&self, r: Record) -> bool {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).send(r).is_ok()
    }
}

impl execute::Journal for RecorderJournal {
    fn intend(&self, intents: Vec<Intent>) -> futures::future::BoxFuture<'_, Option<Vec<i64>>> {
        let (reply, ids) = tokio::sync::oneshot::channel();
        let sent = self.send(Record::Intend(intents, reply));
        Box::pin(async move { if sent { ids.await.ok() } else { None } })
    }

    fn settle(&self, ids: Vec<i64>) {
        if !ids.is_empty() {
            self.send(Record::Settle(ids));
        }
    }
}

/// Commits what the executor hands on: confirmations and settled intents in batches, at
/// least every [`COMMIT_EVERY`]; intents at once, since their call waits for them. Runs until
/// the channel closes. A commit that fails sets `failure` and `stop`, and the rest is dropped:
/// the run stops sending at once (a call whose intents were not written is not sent), and the
/// next run repeats what was not recorded.
pub(super) fn record(
    mut store: Store,
    run_id: i64,
    rx: mpsc::Receiver<Record>,
    stop: &AtomicBool,
    failure: &Mutex<Option<String>>,
) -> Store {
    let mut pending: Vec<Record> = Vec::new();
    let mut deadline = Instant::now() + COMMIT_EVERY;
    // The time spent writing, for `-vv`: what the snapshot costs a run.
    let (mut busy, mut commits) = (Duration::ZERO, 0u64);
    let mut write = |store: &mut Store, batch: Vec<Record>| {
        let t = Instant::now();
        let written = write(store, run_id, batch);
        busy += t.elapsed();
        commits += 1;
        written
    };
    let fail = |e: Error| {
        tracing::error!("the snapshot can no longer be written: {e}; stopping the run");
        *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    };
    loop {
        let wait = deadline.saturating_duration_since(Instant::now());
        let mut now = false;
        match rx.recv_timeout(wait) {
            Ok(r) => {
                now = matches!(r, Record::Intend(..));
                pending.push(r);
                if now {
                    pending.extend(rx.try_iter());
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if now || Instant::now() >= deadline {
            if !pending.is_empty()
                && let Err(e) = write(&mut store, std::mem::take(&mut pending))
            {
                fail(e);
                return store;
            }
            deadline = Instant::now() + COMMIT_EVERY;
        }
    }
    if !pending.is_empty()
        && let Err(e) = write(&mut store, pending)
    {
        fail(e);
    }
    tracing::debug!(commits, busy_ms = busy.as_millis() as u64, "the recorder has written everything it was handed");
    store
}

/// Writes a batch in one transaction; intents are answered with their ids once it commits.
fn write(store: &mut Store, run_id: i64, batch: Vec<Record>) -> Result<(), Error> {
    let mut w = store.writer()?;
    let (mut replies, mut confirmed) = (Vec::new(), 0usize);
    for r in batch {
        let c = match r {
            Record::Confirmed(c) => c,
            Record::Settle(ids) => {
                for id in ids {
                    w.settle_intent(id)?;
                }
                continue;
            }
            Record::Intend(intents, reply) => {
                let ids = intents
                    .iter()
                    .map(|i| w.add_intent(run_id, i.assign, &i.device, &i.customer))
                    .collect::<Result<Vec<_>, _>>()?;
                replies.push((reply, ids));
                continue;
            }
        };
        confirmed += 1;
        w.record(&c)?;
    }
    w.commit()?;
    tracing::debug!(confirmations = confirmed, intents = replies.len(), "committed to the snapshot");
    for (reply, ids) in replies {
        let _ = reply.send(ids);
    }
    Ok(())
}
