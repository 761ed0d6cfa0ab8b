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
use crate::error::Error;
use crate::execute::{self, Confirmed, Intent, Options, Outcome};
use crate::exit;
use crate::load::InputInfo;
use crate::model::DeviceRecord;
use crate::plan::{self, Operation};
use crate::settings::{ApiSettings, InputSettings};
use crate::snapshot::{self, Lock, SnapshotVersion, Store};

/// How often confirmations are committed, at the longest.
const COMMIT_EVERY: Duration = Duration::from_secs(1);

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

pub fn run(args: &ApplyArgs, quiet: bool) -> Result<i32, Error> {
    let settings = InputSettings::resolve_with(&args.inputs, args.plan.is_none())?;
    let api = ApiSettings::resolve(&args.api)?;
    let opts = args.exec.options(settings.batching)?;
    let client = api.client()?;

    // Held until the process ends; released by the OS even on kill -9.
    let _lock = Lock::acquire(&settings.state)?;
    let saved = args.plan.as_ref().map(|path| saved_plan(path, &settings.state)).transpose()?;
    // What an earlier run sent without learning the outcome is read back before planning.
    let settled = super::settle::journal(&settings.state, &client, &opts)?;

    let (operations, rejected) = match saved {
        Some(_) if settled => {
            return Err(Error::Setup(format!(
                "the snapshot {} changed since the plan was made: calls of an earlier run whose outcome was unknown were just read back from Telemetron; nothing was sent. Run `plan --out` again and review it",
                settings.state.display()
            )));
        }
        Some(saved) => saved,
        None => {
            let p = super::prepare(&settings)?;
            let doc = plan::build(&p.diff, &p.export, settings.batching);
            let rejected = p.export.rejects.len();
            super::release(p);
            (doc.operations, rejected)
        }
    };

    let spec = RunSpec {
        kind: "apply",
        state: &settings.state,
        batching: settings.batching,
        opts,
        client,
        base_url: api.base_url.clone(),
        rejected,
        guard: args.guard.limits()?,
        report: args.report.clone(),
        quiet,
        keep_undo: Some(args.keep_undo),
        undoes: None,
    };
    run_operations(&spec, operations)
}

/// Everything a run of operations needs besides the operations: `apply` and `undo --apply`.
pub(super) struct RunSpec<'a> {
    pub kind: &'static str,
    pub state: &'a Path,
    pub batching: plan::Batching,
    pub opts: Options,
    pub client: crate::client::Client,
    pub base_url: String,
    pub rejected: usize,
    pub guard: crate::guard::Limits,
    pub report: Option<std::path::PathBuf>,
    pub quiet: bool,
    /// Store the inverse of the operations with the run, for `undo`, keeping this many runs'.
    pub keep_undo: Option<u32>,
    /// The run this one undoes (`undo --apply`).
    pub undoes: Option<i64>,
}

/// The safety guard, then the calls, with confirmations recorded as they come. The caller holds
/// the snapshot's lock.
pub(super) fn run_operations(spec: &RunSpec<'_>, operations: Vec<Operation>) -> Result<i32, Error> {
    let (_, totals) = snapshot::version_and_totals(spec.state)?;
    let verdict = crate::guard::check(&operations, totals, &spec.guard);
    if verdict.refused {
        eprintln!(
            "error: refusing to {}: the plan is over the safety guard's limits: {}. Nothing was sent. A truncated, \
             partial or mis-mapped export looks like this; check it. If the changes are right, run again with \
             --force, or raise --max-unassign / --max-changes",
            spec.kind,
            verdict.explain()
        );
        return Ok(exit::GUARD);
    }
    if verdict.forced {
        tracing::warn!("over the safety guard's limits, going ahead because of --force: {}", verdict.explain());
    }

    let calls = plan::calls(&operations, spec.batching);
    let planned = calls.len() as u64;
    let mut store = Store::open(spec.state)?;
    let run_id = store.begin_run(spec.kind)?;
    if let Some(target) = spec.undoes {
        store.set_undoes(run_id, target)?;
    }
    if let (Some(keep), false) = (spec.keep_undo, operations.is_empty()) {
        let inverse = serde_json::to_value(plan::inverse(&operations)).expect("an undo plan serializes");
        store.put_undo(run_id, &inverse, keep)?;
    }
    drop(operations);
    if calls.is_empty() {
        let outcome = Outcome::default();
        return finish(&mut store, run_id, &outcome, spec, &Ending { planned, recorder: None });
    }

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
    let progress = crate::progress::for_stderr(spec.quiet);
    let outcome = rt.block_on(async {
        let now = Arc::new(tokio::sync::Notify::new());
        let signals = super::stop_on_signals(stop.clone(), now.clone());
        let journal = RecorderJournal { tx: Mutex::new(tx) };
        let confirm = |c: Confirmed| {
            journal.send(Record::Confirmed(c));
        };
        let run = execute::execute(&spec.client, calls, &spec.opts, &confirm, &journal, progress.as_ref(), &stop);
        let outcome = tokio::select! {
            outcome = run => outcome,
            () = now.notified() => Outcome {
                stopped: Some(
                    "interrupted twice: the calls in flight were abandoned; their outcome is unknown, and the next run reads them back before planning"
                        .into(),
                ),
                ..Outcome::default()
            },
        };
        signals.abort();
        outcome
    });
    let mut store = recorder.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
    let recorder_failure = failure.lock().unwrap_or_else(|p| p.into_inner()).take();
    finish(&mut store, run_id, &outcome, spec, &Ending { planned, recorder: recorder_failure })
}

/// How a run ended besides its outcome: how many calls it planned, and why the recorder
/// failed, if it did.
struct Ending {
    planned: u64,
    recorder: Option<String>,
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
        match &c {
            Confirmed::Customer { email, id, record } => w.put_customer(email, id.as_ref(), record)?,
            Confirmed::DeviceCreated { identifier, id, device_type, properties } => {
                let record = DeviceRecord { device_type: Some(device_type.clone()), properties: properties.clone() };
                w.put_device(identifier, id.as_ref(), &record)?
            }
            Confirmed::DeviceType { identifier, device_type } => w.set_device_type(identifier, device_type)?,
            Confirmed::DeviceProperties { identifier, properties } => {
                w.set_device_properties(identifier, properties)?
            }
            Confirmed::Assigned(a) => w.assign(&a.device, &a.customer)?,
            Confirmed::Unassigned(a) => w.unassign(&a.device, &a.customer)?,
            Confirmed::DeviceMissing(d) => w.remove_device(d)?,
        }
    }
    w.commit()?;
    tracing::debug!(confirmations = confirmed, intents = replies.len(), "committed to the snapshot");
    for (reply, ids) in replies {
        let _ = reply.send(ids);
    }
    Ok(())
}

/// Records the run, prints the summary, writes the report, and picks the exit code.
fn finish(
    store: &mut Store,
    run_id: i64,
    outcome: &Outcome,
    spec: &RunSpec<'_>,
    ending: &Ending,
) -> Result<i32, Error> {
    let (rejected, base_url) = (spec.rejected, spec.base_url.as_str());
    let failed = outcome.failed();
    let sent = outcome.calls.saturating_sub(outcome.retries);
    let (code, verdict) = match (&ending.recorder, &outcome.stopped) {
        (Some(why), _) => (
            exit::ERROR,
            format!(
                "stopped: the snapshot can no longer be written ({why}). {sent} of {} planned calls were sent; the snapshot holds what was committed before the failure, and the next run repeats the rest (harmlessly). Free space or fix the snapshot's folder, then run again",
                ending.planned
            ),
        ),
        (None, Some(why)) => (
            exit::ERROR,
            format!(
                "stopped early: {why}; {sent} of {} planned calls were sent, the next run continues",
                ending.planned
            ),
        ),
        (None, None) if failed > 0 || rejected > 0 => {
            let mut parts = Vec::new();
            if failed > 0 {
                parts.push(format!("{failed} failed operation(s), which the next run retries"));
            }
            if rejected > 0 {
                parts.push(format!(
                    "{rejected} rejected row(s), which stay left out until the export is fixed (the rows are listed with file:line above; --rejects FILE writes them all)"
                ));
            }
            (exit::PARTIAL, format!("finished with {}", parts.join(" and ")))
        }
        (None, None) => (exit::SUCCESS, "finished: Telemetron has everything the exports say".to_string()),
    };
    let outcome_word = match code {
        _ if ending.recorder.is_some() => "failed",
        exit::SUCCESS => "ok",
        exit::PARTIAL => "partial",
        _ => "stopped",
    };
    let mut summary = serde_json::to_value(outcome).expect("an outcome serializes");
    if let Some(map) = summary.as_object_mut() {
        map.remove("failures");
        map.insert("failed_operations".into(), failed.into());
        map.insert("rejected_rows".into(), rejected.into());
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
            "summary": outcome,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&report).expect("a report serializes"))
            .map_err(|source| Error::Io { what: "write the report to", path: path.clone(), source })?;
    }
    super::stdout_write(|out| {
        writeln!(
            out,
            "{} (run {run_id}): {} calls, {} retries, {:.1} s, {:.1} calls/s (limit {}/s)",
            spec.kind,
            outcome.calls,
            outcome.retries,
            outcome.elapsed_seconds,
            outcome.calls_per_second,
            spec.opts.rate
        )?;
        for kind in execute::KINDS {
            if let Some(c) = outcome.operations.get(kind) {
                writeln!(out, "  {:<22} done {:>8}   failed {:>6}", kind.replace('_', " "), c.done, c.failed)?;
            }
        }
        if rejected > 0 {
            writeln!(out, "  {:<22} {rejected:>13}", "rejected rows")?;
        }
        for f in outcome.failures.iter().take(20) {
            writeln!(out, "  failed {} {}: {}", f.kind.replace('_', " "), f.key, f.error)?;
        }
        if outcome.failures.len() > 20 {
            writeln!(out, "  ... and {} more failures (--report FILE lists them all)", outcome.failures.len() - 20)?;
        }
        writeln!(out, "{verdict}")
    })?;
    if let Some(why) = ending.recorder.as_ref().or(outcome.stopped.as_ref()) {
        eprintln!("error: {why}");
    }
    Ok(code)
}

/// Reads a saved plan and checks it is still the plan the inputs and the snapshot give.
fn saved_plan(path: &Path, state: &Path) -> Result<(Vec<Operation>, usize), Error> {
    let text =
        std::fs::read(path).map_err(|source| Error::Io { what: "read the plan", path: path.to_owned(), source })?;
    let doc: SavedPlanDoc = serde_json::from_slice(&text).map_err(|e| Error::BadFile {
        path: path.to_owned(),
        message: format!("not a plan saved by `plan --out` ({e})"),
    })?;
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
    for input in &doc.inputs {
        let now = crate::load::sha256_file(Path::new(&input.path)).map_err(|source| Error::Io {
            what: "read the plan's input",
            path: input.path.clone().into(),
            source,
        })?;
        if now != input.sha256 {
            return Err(Error::Setup(format!(
                "the {} export {} changed since the plan was made; nothing was sent. Run `plan --out` again and review it",
                input.kind, input.path
            )));
        }
    }
    let (version, _) = snapshot::version_and_totals(state)?;
    if version.id != doc.snapshot.id || version.generation != doc.snapshot.generation {
        return Err(Error::Setup(format!(
            "the snapshot {} changed since the plan was made (generation {} then, {} now); nothing was sent. Run `plan --out` again and review it",
            state.display(),
            doc.snapshot.generation,
            version.generation
        )));
    }
    Ok((doc.operations, doc.rejected.len()))
}
