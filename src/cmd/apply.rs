//! `apply`: compute the plan (or read a saved one) and execute it against Telemetron, recording
//! each confirmed operation in the snapshot.
//!
//! Order of a run: take the snapshot's lock; read and plan; refuse, before any call, a plan that
//! removes more assignments than the safety guard allows; execute; while executing, a recorder
//! thread commits confirmations to the snapshot at least every second, so `kill -9` loses at
//! most the last second of confirmations — the next run repeats those calls harmlessly.

use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::cli::ApplyArgs;
use crate::cli::exit::{Ended, Figures, How};
use crate::cli::settings::{InputSettings, Settings};
use crate::error::Error;
use crate::execute::{self, Confirmed, Intent, Options, Outcome};
use crate::model::{InputInfo, SnapshotVersion};
use crate::plan::{self, Operation};
use crate::snapshot::{self, Lock, Store};

/// How often confirmations are committed, at the longest.
const COMMIT_EVERY: Duration = Duration::from_secs(1);
/// How many assign or properties calls the planner makes ahead of the executor.
const FED_AHEAD: usize = 4096;

/// What a saved plan holds that `apply --plan` needs.
#[derive(Debug, Deserialize)]
struct SavedPlanDoc {
    format: String,
    operations: Vec<Operation>,
    #[serde(default)]
    rejected: Vec<serde_json::Value>,
    inputs: Vec<InputInfo>,
    snapshot: SnapshotVersion,
}

pub fn run(args: &ApplyArgs, s: &Settings) -> Result<Ended, Error> {
    // The cron window counts from the start: reading and planning use it up too.
    let deadline = s.max_duration.map(|d| Instant::now() + d);
    let settings = InputSettings::resolve(s, &args.inputs, Some(&args.planning), args.plan.is_none())?;
    let api = s.api()?;
    let opts = s.options(settings.batching);
    let client = api.client()?;

    // Held until the process ends; released by the OS even on kill -9.
    let _lock = Lock::acquire(&settings.state)?;
    let saved = args.plan.as_ref().map(|path| saved_plan(path, &settings.state)).transpose()?;
    let run_id = super::begin_run(&settings.state, "apply")?;
    let result = (|| {
        // What an earlier run sent without learning the outcome is read back before planning.
        let settled = super::settle::journal(&settings.state, &client, &opts)?;
        let (operations, rejected, warnings) = match saved {
            Some(_) if settled => {
                return Err(Error::Setup(format!(
                    "the snapshot {} changed since the plan was made: calls of an earlier run whose outcome was unknown were just read back from Telemetron; nothing was sent. Run `plan --out` again and review it",
                    settings.state.display()
                )));
            }
            Some((operations, rejected)) => (operations, rejected, 0),
            None => {
                let mut p = super::prepare(&settings)?;
                let t = Instant::now();
                // The plan needs the diff and what was rejected, not the export's maps nor the
                // snapshot's rows: they are freed first, so that the operations take their
                // place instead of adding to them (at 10 M devices, 2 GiB).
                let diff = std::mem::take(&mut p.diff);
                let kept = crate::model::Export {
                    rejects: std::mem::take(&mut p.export.rejects),
                    warnings: std::mem::take(&mut p.export.warnings),
                    ..Default::default()
                };
                drop(p);
                super::return_freed_memory();
                tracing::debug!(elapsed_ms = t.elapsed().as_millis() as u64, rss_mib = super::rss_mib(), "front freed");
                let doc = plan::build_uncounted(diff, &kept);
                tracing::debug!(elapsed_ms = t.elapsed().as_millis() as u64, rss_mib = super::rss_mib(), "plan built");
                (doc.operations, kept.rejects.len(), kept.warnings.len())
            }
        };
        let spec = RunSpec {
            kind: "apply",
            run_id,
            state: &settings.state,
            batching: settings.batching,
            opts,
            client,
            base_url: api.base_url.clone(),
            rejected,
            warnings,
            guard: s.guard.clone(),
            report: args.report.clone(),
            quiet: s.quiet,
            deadline,
            keep_undo: Some(args.keep_undo),
            undoes: None,
        };
        run_operations(&spec, operations)
    })();
    super::end_run(&settings.state, run_id, result)
}

/// Everything a run of operations needs besides the operations: `apply` and `undo --apply`.
pub(super) struct RunSpec<'a> {
    pub kind: &'static str,
    /// The run, begun by the caller (see [`super::begin_run`]).
    pub run_id: i64,
    pub state: &'a Path,
    pub batching: plan::Batching,
    pub opts: Options,
    pub client: crate::client::Client,
    pub base_url: String,
    pub rejected: usize,
    /// Warnings of the front half (a file missing from the input folder).
    pub warnings: usize,
    pub guard: crate::plan::guard::Limits,
    pub report: Option<std::path::PathBuf>,
    pub quiet: bool,
    /// `--max-duration`: when to stop sending, at the latest.
    pub deadline: Option<Instant>,
    /// Store the inverse of the operations with the run, for `undo`, keeping this many runs'.
    pub keep_undo: Option<u32>,
    /// The run this one undoes (`undo --apply`).
    pub undoes: Option<i64>,
}

/// The safety guard, then the calls, with confirmations recorded as they come. The caller holds
/// the snapshot's lock and has begun the run; a refusal is left for it to record.
pub(super) fn run_operations(spec: &RunSpec<'_>, operations: Vec<Operation>) -> Result<Ended, Error> {
    let (_, totals) = snapshot::version_and_totals(spec.state)?;
    let verdict = crate::plan::guard::check(&operations, totals, &spec.guard);
    if verdict.refused {
        let why = format!(
            "refusing to {}: the plan is over the safety guard's limits: {}. Nothing was sent. A truncated, \
             partial or mis-mapped export looks like this; check it. If the changes are right, run again with \
             --force, or raise --max-unassign / --max-changes",
            spec.kind,
            verdict.explain()
        );
        let figures = Figures { rejected_rows: spec.rejected as u64, ..Figures::default() };
        return Ok(Ended::with(How::Refused(why), figures));
    }
    if verdict.forced {
        tracing::warn!("over the safety guard's limits, going ahead because of --force: {}", verdict.explain());
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
    // The calls are made on a thread of its own while the undo plan is stored — before any
    // call is sent, serialized one inverse at a time from the operations, never built whole.
    // Customers with details beyond an email need a create call whatever the grouping says:
    // those go out first, and the rest follows when it is made (a migration's grouping takes
    // as long as its reading).
    let t = Instant::now();
    let early_calls = plan::named_create_count(&operations) as u64;
    let apart = early_calls > 0;
    let operations = Arc::new(operations);
    // Made as they are sent, from the operations, which they keep until the last is made.
    let early = (early_calls, plan::named_creates(operations.clone()));
    let (made_tx, made_rx) = tokio::sync::oneshot::channel::<(plan::Calls, execute::Feeds)>();
    let (count_tx, count_rx) = tokio::sync::oneshot::channel::<u64>();
    let planner = {
        let (operations, batching) = (operations.clone(), spec.batching);
        std::thread::spawn(move || {
            // The assign and properties calls are made as the executor reads them, a few
            // thousand ahead: at a migration they are gigabytes, and wanted only after hours.
            let (assign_tx, assign_rx) = tokio::sync::mpsc::channel(FED_AHEAD);
            let (properties_tx, properties_rx) = tokio::sync::mpsc::channel(FED_AHEAD);
            let mut made = 0;
            plan::staged_calls(
                &operations,
                batching,
                !apart,
                |calls, assign, properties| {
                    tracing::debug!(
                        elapsed_ms = t.elapsed().as_millis() as u64,
                        customers = calls.customers.len(),
                        devices = calls.devices.len(),
                        unassign = calls.unassign.len(),
                        assign,
                        customer_updates = calls.customer_updates.len(),
                        properties,
                        rss_mib = super::rss_mib(),
                        "calls made, but the assign and properties calls, made as they are sent"
                    );
                    made = (calls.len() + assign + properties) as u64;
                    let feeds = execute::Feeds {
                        assign: execute::Feed { len: assign as u64, calls: assign_rx },
                        properties: execute::Feed { len: properties as u64, calls: properties_rx },
                    };
                    // Unheard only when the run ended before the calls were made.
                    let _ = made_tx.send((calls, feeds));
                    let _ = count_tx.send(made);
                },
                // False once the executor is gone: nothing more is made.
                |late, call| match late {
                    plan::Late::Assign => assign_tx.blocking_send(call).is_ok(),
                    plan::Late::Properties => properties_tx.blocking_send(call).is_ok(),
                },
            );
            made
        })
    };
    if let (Some(keep), false) = (spec.keep_undo, operations.is_empty()) {
        store.put_undo(run_id, &plan::Inverse(&operations), keep)?;
        tracing::debug!(elapsed_ms = t.elapsed().as_millis() as u64, rss_mib = super::rss_mib(), "undo plan stored");
    }
    drop(operations);
    let announce = |planned: u64| {
        if planned > 0 {
            let seconds = plan::seconds_at(planned as usize, opts.rate);
            let pace = if opts.auto_max.is_some() { "--rate auto, starting at" } else { "at" };
            tracing::info!(
                calls = planned,
                rate = opts.rate,
                estimated_seconds = seconds,
                "{} (run {run_id}): {} calls, {pace} {}/s: about {}",
                spec.kind,
                crate::cli::markdown::thousands(planned as usize),
                opts.rate,
                plan::human_duration(seconds)
            );
        }
    };
    // Without early calls there is nothing to send before the calls are made: they are waited
    // for here (and a run with none ends here).
    // `made`: the calls, or where they will come from.
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
            return finish(&mut store, run_id, &outcome, spec, &Ending { planned, recorder: None, out_of_time: false });
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
        std::thread::spawn(move || record(store, run_id, rx, &stop, &failure))
    };

    let rt = super::runtime()?;
    let progress = crate::cli::progress::for_stderr(spec.quiet);
    let out_of_time = Arc::new(AtomicBool::new(false));
    let (outcome, counted, abandoned) = rt.block_on(async {
        let now = Arc::new(tokio::sync::Notify::new());
        let signals = super::stop_on_signals(stop.clone(), now.clone());
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
        let journal = RecorderJournal { tx: Mutex::new(tx) };
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
        let run = execute::execute(&spec.client, early, rest, &opts, &confirm, &journal, progress.as_ref(), &stop);
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
    finish(&mut store, run_id, &outcome, spec, &Ending { planned, recorder: recorder_failure, out_of_time })
}

/// How a run ended besides its outcome: how many calls it planned, why the recorder failed,
/// if it did, and whether the cron window closed.
struct Ending {
    planned: u64,
    recorder: Option<String>,
    out_of_time: bool,
}

/// What the executor hands the recorder, in the order it happened.
enum Record {
    Confirmed(Confirmed),
    /// Intents to make durable before their call is sent: committed at once, with whatever
    /// else is waiting (a group commit), and answered with their ids.
    Intend(Vec<Intent>, tokio::sync::oneshot::Sender<Vec<i64>>),
    Settle(Vec<i64>),
}

/// The journal, kept by the recorder thread in the snapshot.
struct RecorderJournal {
    tx: Mutex<mpsc::Sender<Record>>,
}

impl RecorderJournal {
    /// Hands a record to the recorder; false once it has stopped.
    fn send(&self, r: Record) -> bool {
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
fn record(
    mut store: Store,
    run_id: i64,
    rx: mpsc::Receiver<Record>,
    stop: &AtomicBool,
    failure: &Mutex<Option<String>>,
) -> Store {
    let mut pending: Vec<Record> = Vec::new();
    let mut deadline = Instant::now() + COMMIT_EVERY;
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
                && let Err(e) = write(&mut store, run_id, std::mem::take(&mut pending))
            {
                fail(e);
                return store;
            }
            deadline = Instant::now() + COMMIT_EVERY;
        }
    }
    if !pending.is_empty()
        && let Err(e) = write(&mut store, run_id, pending)
    {
        fail(e);
    }
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

/// Records the run, prints the summary, writes the report, and says how the run ended.
fn finish(
    store: &mut Store,
    run_id: i64,
    outcome: &Outcome,
    spec: &RunSpec<'_>,
    ending: &Ending,
) -> Result<Ended, Error> {
    let (rejected, base_url) = (spec.rejected, spec.base_url.as_str());
    let failed = outcome.failed();
    let sent = outcome.calls.saturating_sub(outcome.retries);
    let left = ending.planned.saturating_sub(sent);
    let how = match (&ending.recorder, &outcome.stopped) {
        (Some(why), _) => How::Stopped(format!(
            "stopped: the snapshot can no longer be written ({why}). {sent} of {} planned calls were sent; the snapshot holds what was committed before the failure, and the next run repeats the rest (harmlessly). Free space or fix the snapshot's folder, then run again",
            ending.planned
        )),
        (None, Some(_)) if ending.out_of_time => How::OutOfTime(format!(
            "--max-duration reached: stopped at a checkpoint with {left} of {} planned calls left; what was confirmed is recorded, and the next run continues",
            ending.planned
        )),
        (None, Some(why)) => How::Stopped(format!(
            "stopped early: {why}; {sent} of {} planned calls were sent, {left} left; the next run continues",
            ending.planned
        )),
        (None, None) if failed > 0 || rejected > 0 => How::Partial,
        (None, None) => How::Done,
    };
    if let How::OutOfTime(why) = &how {
        tracing::warn!("{why}");
    }
    let verdict = match &how {
        How::Stopped(why) | How::OutOfTime(why) => why.clone(),
        How::Partial => {
            let mut parts = Vec::new();
            if failed > 0 {
                parts.push(format!("{failed} failed operation(s), which the next run retries"));
            }
            if rejected > 0 {
                parts.push(format!(
                    "{rejected} rejected row(s), which stay left out until the export is fixed (the rows are listed with file:line above; --rejects FILE writes them all)"
                ));
            }
            format!("finished with {}", parts.join(" and "))
        }
        _ => match spec.undoes {
            Some(run) => format!("finished: what run {run} changed is put back, as far as it could be (see above)"),
            None => "finished: Telemetron has everything the exports say".to_string(),
        },
    };
    // A run whose snapshot could not be written is recorded as failed, not merely stopped.
    let outcome_word = if ending.recorder.is_some() { "failed" } else { how.word() };
    let mut summary = serde_json::to_value(outcome).expect("an outcome serializes");
    if let Some(map) = summary.as_object_mut() {
        map.remove("failures");
        map.insert("failed_operations".into(), failed.into());
        map.insert("rejected_rows".into(), rejected.into());
        map.insert("calls_left".into(), left.into());
    }
    // A run that made enough calls to learn the limit keeps what it found for the next one.
    if let (Some(rate), true) = (outcome.settled_rate, outcome.calls >= 50 && ending.recorder.is_none()) {
        store.set_auto_rate(rate)?;
    }
    match store.finish_run(run_id, outcome_word, &summary) {
        Ok(()) => {}
        // The store that failed may fail again; a fresh connection gets one more try. Failing
        // that, the next run marks this one interrupted.
        Err(e) if ending.recorder.is_some() => {
            if let Err(again) = Store::open(spec.state).and_then(|mut s| s.finish_run(run_id, outcome_word, &summary)) {
                tracing::warn!(
                    "the run could not be marked failed in the snapshot ({e}; {again}); the next run marks it interrupted"
                );
            }
        }
        Err(e) => return Err(e),
    }
    if let Some(path) = &spec.report {
        let report = serde_json::json!({
            "run": run_id,
            "outcome": outcome_word,
            "verdict": verdict,
            "base_url": base_url,
            "rejected_rows": rejected,
            "calls_left": left,
            "summary": outcome,
        });
        crate::cli::files::replace(path, crate::cli::files::Access::Private, |out| {
            serde_json::to_writer_pretty(&mut *out, &report)?;
            out.write_all(b"\n")
        })
        .map_err(|source| Error::Io { what: "write the report to", path: path.clone(), source })?;
    }
    super::stdout_write(|out| {
        writeln!(
            out,
            "{} (run {run_id}): {} calls, {} retries, {:.1} s; {:.1} calls/s on average, at most {} in any one second ({})",
            spec.kind,
            outcome.calls,
            outcome.retries,
            outcome.elapsed_seconds,
            outcome.calls_per_second,
            outcome.busiest_second,
            match (outcome.settled_rate, spec.opts.auto_max) {
                (Some(r), Some(max)) => format!("rate auto: settled at {r}/s, at most {max}/s"),
                _ => format!("limit {}/s", spec.opts.rate),
            }
        )?;
        for kind in execute::KINDS {
            if let Some(c) = outcome.operations.get(kind) {
                writeln!(out, "  {:<22} done {:>8}   failed {:>6}", kind.replace('_', " "), c.done, c.failed)?;
            }
        }
        if rejected > 0 {
            writeln!(out, "  {:<22} {rejected:>13}", "rejected rows")?;
        }
        if left > 0 {
            writeln!(out, "  {:<22} {left:>13}", "calls left")?;
        }
        for f in outcome.failures.iter().take(20) {
            writeln!(out, "  failed {} {}: {}", f.kind.replace('_', " "), f.key, f.error)?;
        }
        if outcome.failures.len() > 20 {
            writeln!(out, "  ... and {} more failures (--report FILE lists them all)", outcome.failures.len() - 20)?;
        }
        writeln!(out, "{verdict}")
    })?;
    let figures = Figures {
        run_id: Some(run_id),
        operations: outcome.operations.iter().map(|(k, c)| (k.to_string(), c.clone())).collect(),
        calls: outcome.calls,
        retries: outcome.retries,
        failed_operations: failed,
        rejected_rows: rejected as u64,
        warnings: spec.warnings as u64,
        calls_left: left,
        drifted: None,
    };
    Ok(Ended::with(how, figures))
}

/// Reads a saved plan as it streams from the file: gzip-compressed JSON as `plan --out` writes
/// it, or the plain JSON of earlier versions.
fn read_saved(path: &Path) -> Result<SavedPlanDoc, Error> {
    use std::io::{BufRead, BufReader};
    let io = |source| Error::Io { what: "read the plan", path: path.to_owned(), source };
    let mut file = BufReader::with_capacity(1 << 20, std::fs::File::open(path).map_err(io)?);
    let gzip = file.fill_buf().map_err(io)?.starts_with(&[0x1f, 0x8b]);
    let parsed = if gzip {
        serde_json::from_reader(BufReader::with_capacity(1 << 20, flate2::bufread::MultiGzDecoder::new(file)))
    } else {
        serde_json::from_reader(file)
    };
    parsed.map_err(|e| Error::BadFile {
        path: path.to_owned(),
        message: if e.is_io() || e.is_eof() {
            format!("cannot be read to the end ({e}); a file cut short or damaged. Make the plan again")
        } else {
            format!("not a plan saved by `plan --out` ({e})")
        },
    })
}

/// Reads a saved plan and checks it is still the plan the inputs and the snapshot give.
fn saved_plan(path: &Path, state: &Path) -> Result<(Vec<Operation>, usize), Error> {
    let doc = read_saved(path)?;
    if doc.format != plan::FORMAT {
        return Err(Error::BadFile {
            path: path.to_owned(),
            message: format!(
                "plan format {:?}; this build applies {:?}. Make the plan again",
                doc.format,
                plan::FORMAT
            ),
        });
    }
    // An input path in the plan is absolute, or relative to the plan file's folder.
    let plan_dir = path.parent().unwrap_or(Path::new(""));
    for input in &doc.inputs {
        let input_path = plan_dir.join(&input.path);
        let now = crate::load::sha256_file(&input_path).map_err(|source| Error::Io {
            what: "read the plan's input",
            path: input_path.clone(),
            source,
        })?;
        if now != input.sha256 {
            return Err(Error::Setup(format!(
                "the {} export {} changed since the plan was made; nothing was sent. Run `plan --out` again and review it",
                input.kind,
                input_path.display()
            )));
        }
    }
    let (version, _) = snapshot::version_and_totals(state)?;
    let plan_id = doc.snapshot.id.as_deref().unwrap_or("none");
    let other = |now: String| {
        Error::Setup(format!(
            "the plan was made against another snapshot (snapshot {plan_id}{}); {} {now}. Nothing was sent. Apply it with the --state it was made with, or run `plan --out` again against this one",
            if doc.snapshot.missing { ", to be created by this plan" } else { "" },
            state.display()
        ))
    };
    match (&version.id, &doc.snapshot.id) {
        // Made while the snapshot was missing, and it still is: this plan creates it.
        (None, Some(id)) if doc.snapshot.missing => {
            Store::open_as(state, Some(id))?;
            return Ok((doc.operations, doc.rejected.len()));
        }
        (None, _) => return Err(other("does not exist".into())),
        (Some(now), Some(then)) if now == then => {}
        (Some(now), _) => return Err(other(format!("is snapshot {now}"))),
    }
    if version.generation != doc.snapshot.generation {
        return Err(Error::Setup(format!(
            "the snapshot {} changed since the plan was made (generation {} then, {} now); nothing was sent. Run `plan --out` again and review it",
            state.display(),
            doc.snapshot.generation,
            version.generation
        )));
    }
    Ok((doc.operations, doc.rejected.len()))
}
