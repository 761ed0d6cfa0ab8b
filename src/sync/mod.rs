//! The one engine of a writing run. `apply`, `undo --apply`, `event` (each event of a stream)
//! hand it their work — a plan's operations, or calls made by hand — and get back how the run
//! went: it judges the work by the safety guard, makes the calls on a thread of their own,
//! sends them through the executor, journals every assign and unassign before it is sent,
//! and records each confirmation through a recorder thread (`Writer::record`, the one mapping),
//! while it watches for signals and the cron window. Before a writing run plans, [`settle`]
//! reads back what an earlier run sent without learning the outcome.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Instant;

use crate::client::Client;
use crate::error::Error;
use crate::execute::{self, Confirmed, Options, Outcome, Progress};
use crate::plan::{self, Batching, Calls, Operation};
use crate::snapshot::{self, Store};

mod conclude;
mod ended;
mod event;
mod planner;
pub mod preflight;
mod recorder;
pub mod settle;
mod signals;

pub use conclude::Ran;
pub use ended::{Ended, Figures, How};
pub use event::{Checked, Event, event_result};
pub use settle::{ReadBack, read_back};
pub use signals::{runtime, shutdown_signal, stop_on_signal, stop_on_signals};

use planner::Planner;
use recorder::Record;

/// What a writing run sends.
pub enum Work {
    /// A plan's operations (`apply`, `undo --apply`): judged by the guard, planned into calls.
    Operations(Vec<Operation>),
    /// Calls made by hand (`event`): sent as they are, in their phases.
    Calls(Calls),
}

/// Everything a writing run needs besides its work.
pub struct Spec<'a> {
    pub kind: &'static str,
    /// The run, begun by the caller ([`begin_run`]), who holds the snapshot's lock.
    pub run_id: i64,
    pub state: &'a Path,
    pub batching: Batching,
    pub opts: Options,
    pub client: Client,
    /// The safety guard's limits; `None` for work that names its changes one by one (`event`).
    pub guard: Option<plan::guard::Limits>,
    /// `--max-duration`: when to stop sending, at the latest.
    pub deadline: Option<Instant>,
    /// Store the inverse of the operations with the run, for `undo`, keeping this many runs'.
    pub keep_undo: Option<u32>,
    /// The run this one undoes (`undo --apply`).
    pub undoes: Option<i64>,
    /// The saved plan it runs (`apply --plan`), as its opening line names it.
    pub plan_file: Option<String>,
    /// Rows the front rejected: the run is partial if any were.
    pub rejected: usize,
    /// Records the quarantine held back: the run is partial if any were.
    pub quarantined: usize,
    pub progress: &'a dyn Progress,
}

/// The snapshot's number of the run under way (0: none yet); every log line carries it.
static RUN_ID: AtomicI64 = AtomicI64::new(0);

/// The run under way, if one was begun.
pub fn current_run() -> Option<i64> {
    Some(RUN_ID.load(Ordering::Relaxed)).filter(|&id| id > 0)
}

/// Begins a recorded run in the snapshot (creating it if need be); every log line from here
/// on carries the run's id. The caller holds the lock, and ends the run with [`end_run`].
pub fn begin_run(state: &Path, kind: &str) -> Result<i64, Error> {
    let (mut store, migrated) = Store::open_migrating(state, None)?;
    let id = store.begin_run(kind)?;
    RUN_ID.store(id, Ordering::Relaxed);
    if let Some(from) = migrated {
        tracing::info!(snapshot = %state.display(), from, to = snapshot::SCHEMA_VERSION, "snapshot schema migrated");
    }
    Ok(id)
}

/// Records how a run ended when it did not reach its own summary: an error, or the guard's
/// refusal. Any other result was recorded where it was made.
pub fn end_run(state: &Path, run_id: i64, result: Result<Ended, Error>) -> Result<Ended, Error> {
    let (word, why) = match &result {
        // Nothing is written into a damaged snapshot, not even how the run ended.
        Err(Error::Damaged { .. }) => return result,
        Err(Error::KeyRefused(m)) => ("refused_key", m.clone()),
        Err(Error::Unreachable(m)) => ("unreachable", m.clone()),
        Err(e) => ("failed", e.to_string()),
        Ok(Ended { how: How::Refused(why), .. }) => ("refused", why.clone()),
        Ok(_) => return result,
    };
    let summary = serde_json::json!({ "error": why });
    if let Err(e) = Store::open(state).and_then(|mut s| s.finish_run(run_id, word, &summary)) {
        tracing::warn!("the run's outcome could not be recorded ({e}); the next run marks it interrupted");
    }
    result
}

/// A writing run from its beginning to its end: begins it, checks the key and the base URL
/// ([`preflight`]), settles the journal (reads back
/// what earlier runs sent without learning the outcome), runs `f` with the run's id and
/// whether anything was settled, and records how it ended. The caller holds the lock.
pub fn writing_run(
    state: &Path,
    kind: &str,
    client: &Client,
    opts: &Options,
    f: impl FnOnce(i64, bool) -> Result<Ended, Error>,
) -> Result<Ended, Error> {
    let run_id = begin_run(state, kind)?;
    let result = preflight::check(client)
        .and_then(|()| settle::journal(state, client, opts))
        .and_then(|settled| f(run_id, settled));
    end_run(state, run_id, result)
}

/// Records facts read back from Telemetron (`verify --heal`) in one transaction, through
/// `Writer::record` like every confirmation. The caller holds the lock and has begun a run.
pub fn record_facts(state: &Path, facts: &[Confirmed]) -> Result<(), Error> {
    let mut store = Store::open(state)?;
    let mut w = store.writer()?;
    w.confirms = "read_back";
    for fact in facts {
        w.record(fact)?;
        // A removal and a record Telemetron does not have are logged by `record`.
        if let Some((kind, key)) = fact.record_key().filter(|(k, _)| *k != crate::model::RecordKind::Unassignment) {
            w.log(kind.as_str(), &key, "read_back", "verify --heal recorded what Telemetron holds")?;
        }
    }
    w.commit()
}

/// The safety guard, then the calls, with confirmations recorded as they come. The caller holds
/// the snapshot's lock and has begun the run; a refusal is left for it to record.
pub fn run(spec: &Spec<'_>, work: Work) -> Result<Ran, Error> {
    if let Some(limits) = &spec.guard {
        let (_, totals) = snapshot::version_and_totals(spec.state)?;
        let verdict = plan::guard::check(planner::operations(&work), totals, limits);
        if verdict.refused {
            return Ok(Ran::refused(spec, &verdict.explain()));
        }
        if verdict.forced {
            tracing::warn!("over the safety guard's limits, going ahead because of --force: {}", verdict.explain());
        }
    }
    let mut store = Store::open(spec.state)?;
    let run_id = spec.run_id;
    // `--rate auto` starts a little under where the last run settled.
    let mut opts = spec.opts.clone();
    if opts.auto_max.is_some()
        && let Some(settled) = store.auto_rate()?
    {
        opts.rate = (settled * 0.9).clamp(execute::MIN_RATE, opts.auto_max.unwrap_or(settled));
        tracing::info!(start = opts.rate, "rate auto: starting near the rate the last run settled at");
    }
    if let Some(target) = spec.undoes {
        store.set_undoes(run_id, target)?;
    }
    let t = Instant::now();
    let started = planner::start(work, spec, &mut store, t)?;
    let apart = started.apart();
    let announce = |planned: u64| {
        if planned > 0 {
            let seconds = plan::seconds_at(planned as usize, opts.rate);
            let pace = if opts.auto_max.is_some() { "--rate auto, starting at" } else { "at" };
            tracing::info!(
                calls = planned,
                rate = opts.rate,
                estimated_seconds = seconds,
                "{} (run {run_id}){}: {} calls, {pace} {}/s: about {}",
                spec.kind,
                spec.plan_file.as_deref().map(|p| format!(" of the plan {p}")).unwrap_or_default(),
                plan::thousands(planned as usize),
                opts.rate,
                plan::human_duration(seconds)
            );
        }
    };
    // Without early calls there is nothing to send before the calls are made: they are waited
    // for here (and a run with none ends here).
    // `made`: the calls, or where they will come from.
    let Planner { early, made: made_rx, count: count_rx, thread: planner } = started;
    let early_calls = early.0;
    let (mut planned, made) = if apart {
        (0, Err(made_rx))
    } else {
        let Ok((calls, feeds)) = made_rx.blocking_recv() else {
            // The planner's thread ended without making them: it panicked.
            let panic = planner.join().err().unwrap_or_else(|| Box::new("the planner ended without calls"));
            std::panic::resume_unwind(panic);
        };
        let planned = calls.len() as u64 + feeds.len();
        announce(planned);
        if planned == 0 {
            let outcome = Outcome::default();
            return conclude::conclude(
                &mut store,
                run_id,
                outcome,
                spec,
                &conclude::Ending { planned, recorder: None, out_of_time: false },
            );
        }
        (planned, Ok((calls, feeds)))
    };

    // The recorder owns the store while the executor runs. If it cannot commit, it says why
    // and stops the executor: calls whose answers cannot be recorded must not go on.
    let stop = Arc::new(AtomicBool::new(false));
    let failure: Arc<Mutex<Option<String>>> = Arc::default();
    let (tx, rx) = mpsc::channel::<Record>();
    let recorder = {
        let (stop, failure) = (stop.clone(), failure.clone());
        std::thread::spawn(move || recorder::record(store, run_id, rx, &stop, &failure))
    };

    let rt = runtime()?;
    let out_of_time = Arc::new(AtomicBool::new(false));
    let (outcome, counted, abandoned) = rt.block_on(async {
        let now = Arc::new(tokio::sync::Notify::new());
        let signals = stop_on_signals(stop.clone(), now.clone());
        // The cron window: when it closes, the run stops as on a first signal — nothing new
        // is sent, the calls in flight finish and are recorded.
        let window = spec.deadline.map(|deadline| {
            let (stop, out_of_time) = (stop.clone(), out_of_time.clone());
            tokio::spawn(async move {
                tokio::time::sleep_until(deadline.into()).await;
                out_of_time.store(true, std::sync::atomic::Ordering::Relaxed);
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
            })
        });
        let journal = recorder::RecorderJournal { tx: Mutex::new(tx) };
        let confirm = |c: Confirmed| {
            journal.send(Record::Confirmed(c));
        };
        // The calls made on the planner's thread (it sends them once, and feeds the rest).
        let rest = async {
            let (calls, feeds) = match made {
                Ok(made) => made,
                Err(rx) => {
                    // Nothing only if the planner's thread panicked, which is raised once the run ends.
                    let Ok((calls, feeds)) = rx.await else { return Default::default() };
                    announce(early_calls + calls.len() as u64 + feeds.len());
                    (calls, feeds)
                }
            };
            (calls, Some(feeds))
        };
        let run = execute::execute(&spec.client, early, rest, &opts, &confirm, &journal, spec.progress, &stop);
        let mut abandoned = false;
        let outcome = tokio::select! {
            outcome = run => outcome,
            () = now.notified() => {
                abandoned = true;
                Outcome {
                    stopped: Some(
                        "interrupted twice: the calls in flight were abandoned; their outcome is unknown, and the next run reads them back before planning"
                            .into(),
                    ),
                    ..Outcome::default()
                }
            }
        };
        // The calls left are counted from the planner's count: a run stopped while the calls
        // were still being made waits for it, unless a second signal says not to.
        let counted = if !apart || abandoned {
            None
        } else {
            let stopping = stop.load(std::sync::atomic::Ordering::Relaxed);
            if stopping && !planner.is_finished() {
                tracing::info!("stopped while the calls were being made: counting them, for the calls left");
            }
            tokio::select! {
                made = count_rx => made.ok(),
                () = now.notified() => None,
            }
        };
        signals.abort();
        if let Some(w) = window {
            w.abort();
        }
        (outcome, counted, abandoned)
    });
    let mut store = recorder.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
    let recorder_failure = failure.lock().unwrap_or_else(|p| p.into_inner()).take();
    let out_of_time = out_of_time.load(std::sync::atomic::Ordering::Relaxed);
    if apart {
        // Abandoned by a second signal before they were made, the calls known are the early ones.
        planned = early_calls + counted.unwrap_or(0);
    }
    // A panic of the planner's thread is raised, not lost (a feed it stopped feeding ended its
    // phase early). It ends at once: nobody reads its calls any more. Not waited for after a
    // second signal, which wants out now.
    if (!abandoned || planner.is_finished())
        && let Err(panic) = planner.join()
    {
        std::panic::resume_unwind(panic);
    }
    conclude::conclude(
        &mut store,
        run_id,
        outcome,
        spec,
        &conclude::Ending { planned, recorder: recorder_failure, out_of_time },
    )
}
