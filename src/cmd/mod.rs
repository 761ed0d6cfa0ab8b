//! One module per subcommand; [`run`] dispatches and returns the exit code.
//!
//! Commands turn parsed arguments into settings, call the library stages, and write results to
//! stdout. The shared front half — read exports and snapshot, resolve, diff — is [`prepare`].

use crate::cli::exit::Ended;
use crate::cli::report;
use crate::cli::settings::{CommandFlags, InputSettings, Settings};
use crate::cli::{Cli, Command};
use crate::diff::{self, Diff};
use crate::error::Error;
use crate::load;
use crate::model::{Export, SnapshotData};
use crate::snapshot;

mod adhoc;
mod apply;
mod baseline;
mod emulator;
mod event;
mod history;
mod plan;
mod snapshot_cmd;
mod undo;
mod verify;

/// Runs one command with its settings, resolved once for all commands; also says where the
/// run's metrics go (the config's `metrics_file` when the settings resolved, else the flag, so
/// that a broken config still shows as a failed run).
pub fn run(cli: &Cli) -> (Result<Ended, Error>, Option<std::path::PathBuf>) {
    match Settings::resolve(&cli.global, CommandFlags::of(&cli.command)) {
        Ok(s) => (run_with(cli, &s), s.metrics_file.clone()),
        Err(e) => (Err(e), cli.global.metrics_file.clone()),
    }
}

fn run_with(cli: &Cli, s: &Settings) -> Result<Ended, Error> {
    match &cli.command {
        Command::Apply(args) => apply::run(args, s),
        Command::Verify(args) => verify::run(args, s),
        Command::Event(args) => event::run(args, s),
        Command::Undo(args) => undo::run(args, s),
        Command::Plan(args) => plan::run(args, s),
        Command::Baseline(args) => baseline::run(args, s),
        Command::History(args) => history::run(args, s),
        Command::Snapshot(cmd) => snapshot_cmd::run(cmd, s),
        Command::Customer(cmd) => adhoc::customer(cmd, s),
        Command::Device(cmd) => adhoc::device(cmd, s),
        Command::Assign(args) => adhoc::assign(args, s),
        Command::Unassign(args) => adhoc::unassign(args, s),
        Command::Ticket(cmd) => adhoc::ticket(cmd, s),
        Command::Emulator(args) => emulator::run(args),
    }
}

/// The snapshot path of a command that only reads an existing snapshot (`verify`, `history`,
/// `undo`): a path that does not exist is an error, not an empty snapshot — a mistyped
/// `--state` must not pass as "no drift" or "no runs".
pub(crate) fn existing_state(s: &Settings) -> Result<&std::path::Path, Error> {
    if s.state.exists() {
        return Ok(&s.state);
    }
    Err(Error::Usage(format!(
        "the snapshot {} does not exist; check --state (or the config's state, or {}). `apply` or `baseline` creates it",
        s.state.display(),
        crate::cli::env::STATE
    )))
}

pub(crate) use crate::sync::{begin_run, end_run};

/// `path` made absolute, with its folder's links resolved; the file itself need not exist (a
/// snapshot a plan will create).
pub(crate) fn absolute_path(path: &std::path::Path) -> std::path::PathBuf {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| std::env::current_dir().unwrap_or_default().join(dir));
    match path.file_name() {
        Some(name) => dir.join(name),
        None => dir,
    }
}

/// The exports, the snapshot they were compared with, and the difference.
pub(crate) struct Prepared {
    pub export: Export,
    pub snap: SnapshotData,
    pub diff: Diff,
}

/// The plan `plan` would print for these settings, with the guard's verdict: the whole front
/// (read, resolve, diff, plan) as one library call, for tests that plan many inputs.
pub fn plan_for(settings: &InputSettings, limits: &crate::plan::guard::Limits) -> Result<crate::plan::Plan, Error> {
    Ok(plan_doc(&mut prepare(settings)?, settings, limits))
}

/// The plan document of a prepared front (whose diff it takes), with the guard's verdict on it.
pub(crate) fn plan_doc(
    p: &mut Prepared,
    settings: &InputSettings,
    limits: &crate::plan::guard::Limits,
) -> crate::plan::Plan {
    let mut doc = crate::plan::build(std::mem::take(&mut p.diff), &p.export, settings.batching);
    doc.guard = Some(crate::plan::guard::check(&doc.operations, p.snap.totals(), limits));
    doc
}

pub(crate) use crate::mem::{return_freed_memory, rss_mib};

/// How many bad rows go to stderr before the rest are only counted.
const STDERR_REJECTS: usize = 100;

/// Reads the exports and the snapshot (in parallel: they are independent), resolves, reports bad
/// rows, and diffs. With `--strict`, any bad row is an error here, before anything is written.
pub(crate) fn prepare(settings: &InputSettings) -> Result<Prepared, Error> {
    let started = std::time::Instant::now();
    let Reads { customers, devices, ownership, snap } = read_all(settings, true);
    let mut export = customers?;
    export.join(devices?);
    export.join(ownership?);
    let mut snap = snap?;
    tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, rss_mib = rss_mib(), "inputs and snapshot read");
    add_missing_warnings(&mut export, settings);
    refuse_empty_files(&export, &snap, settings)?;
    refuse_all_rejected(&export)?;
    // The entity diff needs only the device half of the resolution: the ownership half runs
    // beside it, then the assignment diff, which needs both.
    load::resolve_devices(&mut export, &mut snap);
    let ownership = export.ownership.take();
    let (mut diff, ownership) = std::thread::scope(|s| {
        let resolved = s.spawn(|| ownership.map(|own| load::resolve_ownership(own, &export, &snap)));
        let d = diff::entities(&export, &snap);
        tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, rss_mib = rss_mib(), "entities compared");
        (d, resolved.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
    });
    if let Some(resolved) = ownership {
        resolved.put_into(&mut export);
    }
    tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, rss_mib = rss_mib(), "ownership resolved");
    report_rows(&export, settings)?;
    diff.set_assignments(diff::assignments(&export, &snap));
    release_wanted(&mut export);
    tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, rss_mib = rss_mib(), "diff computed");
    Ok(Prepared { export, snap, diff })
}

/// Once the assignments are diffed, nothing reads the wanted rows again: the plan built next
/// takes their room (at 10 M devices, 10.5 M rows of 56 bytes) instead of adding to the peak.
fn release_wanted(export: &mut Export) {
    if let Some(own) = export.ownership.as_mut() {
        own.owners.release();
    }
}

/// What [`prepare_beside`]'s second thread is handed once this one has it.
pub(crate) struct Later<'a, T> {
    cell: &'a std::sync::OnceLock<T>,
    ready: std::sync::mpsc::Receiver<()>,
}

impl<'a, T> Later<'a, T> {
    /// Waits for the value; `None` when preparing failed before it was known.
    pub(crate) fn wait(self) -> Option<&'a T> {
        self.ready.recv().ok().and_then(|()| self.cell.get())
    }
}

/// As [`prepare`], with the same checks and the same result, for a command that can use the
/// entity diff before the ownership file is even read (`baseline` writes it). The customers
/// and devices files and the snapshot are read, then the entity diff made; from then on
/// `beside` runs on a thread of its own with that diff, while this one reads and resolves the
/// ownership file and diffs the assignments, which `beside` is handed when they are known.
/// If preparing fails, `beside` is handed nothing — whatever it did must then be undone — and
/// the error is this function's.
pub(crate) fn prepare_beside<T: Send>(
    settings: &InputSettings,
    beside: impl FnOnce(&Diff, &SnapshotData, Later<'_, diff::AssignmentDiff>) -> T + Send,
) -> Result<(Prepared, T), Error> {
    let started = std::time::Instant::now();
    let Reads { customers, devices, ownership: _, snap } = read_all(settings, false);
    let mut export = customers?;
    export.join(devices?);
    let mut snap = snap?;
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        rss_mib = rss_mib(),
        "entities and snapshot read"
    );
    add_missing_warnings(&mut export, settings);
    refuse_empty_files(&export, &snap, settings)?;
    refuse_all_rejected(&export)?;
    load::resolve_devices(&mut export, &mut snap);
    // Nothing else is running yet: the customers and the devices are compared side by side.
    let mut diff = diff::entities_on_two_threads(&export, &snap);
    tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, rss_mib = rss_mib(), "entities compared");
    let assigned = std::sync::OnceLock::new();
    let (outcome, beside) = std::thread::scope(|s| {
        // Made here, so that the sender is dropped (and `beside` stops waiting) on any way out.
        let (ready, later) = std::sync::mpsc::channel();
        let (d, sn, cell) = (&diff, &snap, &assigned);
        let beside = s.spawn(move || beside(d, sn, Later { cell, ready: later }));
        let outcome = (|| {
            // The checks the other files passed, now for this one, before its rows join theirs
            // (its rows rejected later, against the others, are not counted).
            let ownership =
                load::read_ownership_beside(&settings.sources, export.customers.as_ref(), export.devices.as_ref())?;
            refuse_empty_files(&ownership, &snap, settings)?;
            refuse_all_rejected(&ownership)?;
            export.join(ownership);
            tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, rss_mib = rss_mib(), "inputs read");
            if let Some(own) = export.ownership.take() {
                load::resolve_ownership(own, &export, &snap).put_into(&mut export);
            }
            tracing::debug!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                rss_mib = rss_mib(),
                "ownership resolved"
            );
            report_rows(&export, settings)?;
            let _ = assigned.set(diff::assignments(&export, &snap));
            release_wanted(&mut export);
            let _ = ready.send(());
            tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, rss_mib = rss_mib(), "diff computed");
            Ok::<_, Error>(())
        })();
        drop(ready);
        (outcome, beside.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
    });
    outcome?;
    if let Some(a) = assigned.into_inner() {
        diff.set_assignments(a);
    }
    Ok((Prepared { export, snap, diff }, beside))
}

/// A file the input folder lacks is a warning of the plan: its kind is not reconciled.
fn add_missing_warnings(export: &mut Export, settings: &InputSettings) {
    let missing = settings.missing.iter().map(|(kind, path)| crate::model::Warning {
        file: path.display().to_string().into(),
        line: 0,
        message: format!(
            "not in the input folder: {} are not reconciled",
            if *kind == "ownership" { "assignments" } else { kind }
        ),
    });
    export.warnings.splice(0..0, missing);
}

/// Logs the rejected rows and the warnings, writes `--rejects`, and refuses under `--strict`.
fn report_rows(export: &Export, settings: &InputSettings) -> Result<(), Error> {
    for r in export.rejects.iter().take(STDERR_REJECTS) {
        tracing::warn!(
            target: crate::cli::output::ROWS,
            file = &*r.file,
            line = r.line,
            column = r.column.as_deref(),
            reason = &*crate::pii::scrub_quoted(&r.reason),
            "rejected {}",
            report::reject_line_for_log(r)
        );
    }
    if export.rejects.len() > STDERR_REJECTS {
        tracing::warn!(
            "... and {} more rejected rows (--rejects FILE writes them all)",
            export.rejects.len() - STDERR_REJECTS
        );
    }
    for w in export.warnings.iter().take(STDERR_REJECTS) {
        tracing::warn!(
            target: crate::cli::output::ROWS,
            file = &*w.file,
            line = w.line,
            reason = w.message.as_str(),
            "{}",
            report::warning_line(w)
        );
    }
    if let Some(path) = &settings.rejects {
        report::write_rejects(path, &export.rejects)?;
    }
    if settings.strict && !export.rejects.is_empty() {
        return Err(Error::Strict { count: export.rejects.len() });
    }
    Ok(())
}

/// The reads, on two threads. The snapshot is read after the file of its kind, sharing every
/// key and record equal to the export's instead of holding a copy: this thread reads the
/// customers file, then the snapshot's customers, then (unless `with_ownership` is false: the
/// caller reads it later) the ownership file, once the devices file is read: its long
/// identifiers are shared too; the other the devices file, then the
/// snapshot's devices and assignments, on a second reader this thread opens and hands over.
/// (The owners of the snapshot's devices are not looked up among the customers: a search per
/// assignment on the other thread, the longer one, cost more time than the memory was worth.)
fn read_all(settings: &InputSettings, with_ownership: bool) -> Reads {
    use std::sync::mpsc;
    let state = &settings.state;
    // What the devices thread needs from this one: a reader of its own, of the same state.
    let (hand_over, handed) = mpsc::sync_channel::<Option<snapshot::Reading>>(1);
    // What this thread needs from the other: the devices file, in `devices_file` once `read`
    // says so (or the other thread stopped, and the ownership file is read without it).
    let devices_file = std::sync::OnceLock::<Result<Export, Error>>::new();
    let (devices_read, read) = mpsc::sync_channel::<()>(1);
    let ((customers, snap_customers, ownership), snap_devices) = std::thread::scope(|s| {
        let devices_file = &devices_file;
        let other = s.spawn(move || {
            let devices = devices_file.get_or_init(|| load::read_part(&settings.sources, load::Part::Devices));
            let _ = devices_read.send(());
            // Nothing handed over: this thread stopped before it could; it reports why.
            let Ok(reading) = handed.recv() else { return None };
            let t = std::time::Instant::now();
            let share = devices.as_ref().ok().and_then(|e| e.devices.as_ref());
            let snap = reading.map(|r| r.devices(share).map(|d| (r.version().clone(), d)));
            tracing::debug!(
                elapsed_ms = t.elapsed().as_millis() as u64,
                rss_mib = rss_mib(),
                "snapshot's devices read"
            );
            snap
        });
        // The snapshot is opened first, so that the other thread can read its half whenever
        // it is ready for it.
        let opened = snapshot::open(state).and_then(|reading| {
            let Some(reading) = reading else { return Ok(None) };
            Ok(Some((reading.another()?, reading)))
        });
        let mine = match opened {
            Ok(Some((theirs, mine))) => {
                let _ = hand_over.send(Some(theirs));
                Ok(Some(mine))
            }
            Ok(None) => {
                let _ = hand_over.send(None);
                Ok(None)
            }
            Err(e) => {
                drop(hand_over);
                Err(e)
            }
        };
        // On one CPU the two threads would only take turns, each evicting what the other had
        // in the caches: the other one runs to its end first.
        let mut other = Some(other);
        let mut joined = None;
        if crate::model::one_cpu()
            && let Some(o) = other.take()
        {
            joined = Some(o.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        }
        let customers = load::read_part(&settings.sources, load::Part::Customers);
        let share = customers.as_ref().ok().and_then(|e| e.customers.as_ref());
        let t = std::time::Instant::now();
        let snap = mine.map(|mine| mine.map(|mine| mine.customers(share).map(|c| (mine.version().clone(), c))));
        tracing::debug!(elapsed_ms = t.elapsed().as_millis() as u64, rss_mib = rss_mib(), "snapshot's customers read");
        let ownership = if with_ownership {
            let devices = read.recv().ok().and_then(|()| devices_file.get()).and_then(|d| d.as_ref().ok());
            load::read_ownership_beside(&settings.sources, share, devices.and_then(|e| e.devices.as_ref()))
        } else {
            Ok(Export::default())
        };
        let theirs = match other {
            Some(o) => o.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
            None => joined.flatten(),
        };
        ((customers, snap, ownership), theirs)
    });
    // Set by the other thread before anything else it did (it returned, so it did).
    let devices = devices_file.into_inner().unwrap_or_else(|| Ok(Export::default()));
    let share = snapshot::Share {
        customers: customers.as_ref().ok().and_then(|e| e.customers.as_ref()),
        devices: devices.as_ref().ok().and_then(|e| e.devices.as_ref()),
    };
    let snap = join_halves(state, share, snap_customers, snap_devices);
    Reads { customers, devices, ownership, snap }
}

/// One half of the snapshot as one reader read it, with the version that reader saw.
type Half<K, V, S> = Result<(crate::model::SnapshotVersion, (crate::model::SortedMap<K, V>, S)), Error>;

/// The snapshot from its two halves — when both readers saw one state of the file; otherwise a
/// writer committed between them (an `apply` beside a `plan`), and it is read again on one.
fn join_halves(
    state: &std::path::Path,
    share: snapshot::Share<'_>,
    customers: Result<
        Option<Half<crate::model::Email, crate::model::StoredCustomer, crate::model::SameCustomers>>,
        Error,
    >,
    devices: Option<Half<crate::model::DeviceIdent, crate::model::StoredDevice, crate::model::SameDevices>>,
) -> Result<SnapshotData, Error> {
    match (customers, devices) {
        (Err(e), _) => Err(e),
        (Ok(None), _) => Ok(SnapshotData::default()),
        (Ok(Some(Ok((version, (customers, same_customers))))), Some(Ok((theirs, (devices, same_devices)))))
            if theirs == version =>
        {
            Ok(SnapshotData { customers, devices, version, same_customers, same_devices })
        }
        (Ok(Some(Err(e))), _) | (_, Some(Err(e))) => Err(e),
        (Ok(Some(Ok(_))), _) => {
            tracing::debug!("the snapshot changed between its two readers; read again on one");
            snapshot::open(state).and_then(|r| r.map_or_else(|| Ok(SnapshotData::default()), |r| r.all(share)))
        }
    }
}

/// What [`read_all`] read, each with its own outcome.
struct Reads {
    customers: Result<Export, Error>,
    devices: Result<Export, Error>,
    ownership: Result<Export, Error>,
    snap: Result<SnapshotData, Error>,
}

/// A file with a header and no rows, where the snapshot holds entities of its kind, is an
/// error unless `--allow-empty KIND`: an export that came out empty is far more often a failed
/// export than an organisation that lost everything overnight.
fn refuse_empty_files(export: &Export, snap: &SnapshotData, settings: &InputSettings) -> Result<(), Error> {
    for input in export.inputs.iter().filter(|i| i.rows == 0) {
        let totals = snap.totals();
        let held = match input.kind.as_str() {
            "customers" => (totals.customers, "customers"),
            "devices" => (totals.devices, "devices"),
            _ => (totals.assignments, "assignments"),
        };
        if held.0 > 0 && !settings.allow_empty.contains(&input.kind.as_str()) {
            return Err(Error::BadFile {
                path: input.path.clone().into(),
                message: format!(
                    "the {} file has a header and no rows, but the snapshot holds {} {}; an empty export is usually a failed one. Nothing was planned. If it is meant to be empty, pass --allow-empty {}",
                    input.kind, held.0, held.1, input.kind
                ),
            });
        }
    }
    Ok(())
}

/// A file whose every row was rejected is an error, never a plan that "is in step": it is a
/// broken export (another delimiter, an encoding, a shifted column), and nothing of it can be
/// trusted. (Run after reading; rows rejected later, against the snapshot, are left out.)
fn refuse_all_rejected(export: &Export) -> Result<(), Error> {
    for input in export.inputs.iter().filter(|i| i.rows > 0) {
        let mut lines: Vec<u64> = export.rejects.iter().filter(|r| *r.file == *input.path).map(|r| r.line).collect();
        lines.dedup();
        if lines.len() as u64 >= input.rows {
            let first = export.rejects.iter().find(|r| *r.file == *input.path).map(report::reject_line_for_log);
            return Err(Error::BadFile {
                path: input.path.clone().into(),
                message: format!(
                    "every one of its {} row(s) was rejected, so the file is not usable as it is; nothing was planned. The first: {}",
                    input.rows,
                    first.unwrap_or_default()
                ),
            });
        }
    }
    Ok(())
}

pub(crate) use crate::cli::output::stdout_write;

/// Ends the life of the big in-memory values of a command that is about to exit. Freeing
/// millions of small allocations one by one takes about a second per million entities; the
/// process exit returns the memory at once.
pub(crate) fn release<T>(value: T) {
    std::mem::forget(value);
}

pub(crate) use crate::sync::{runtime, shutdown_signal, stop_on_signal};

pub(crate) use crate::model::key_values;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CustomerRecord, DeviceIdent, DeviceRecord, Email, Properties};

    /// The two readers of `read_all` each see one state; when a write commits between their
    /// openings, the halves are of two states and must not be joined.
    #[test]
    fn halves_read_around_a_commit_are_read_again_as_one_state() {
        let dir =
            std::env::temp_dir().join(format!("tsync-halves-{}-{}", std::process::id(), snapshot::new_snapshot_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.db");
        let (email, dev) = (|s: &str| Email::parse(s).unwrap(), |s: &str| DeviceIdent::parse(s).unwrap());
        let typed = DeviceRecord { device_type: Some("t".into()), properties: Properties::empty() };
        let mut store = snapshot::Store::open(&path).unwrap();
        let mut w = store.writer().unwrap();
        w.put_customer(&email("a@b.co"), None, &CustomerRecord::default()).unwrap();
        w.put_device(&dev("D1"), None, &typed).unwrap();
        w.commit().unwrap();

        let first = snapshot::open(&path).unwrap().unwrap();
        // Another command writes between the two openings.
        let mut w = store.writer().unwrap();
        w.put_customer(&email("b@b.co"), None, &CustomerRecord::default()).unwrap();
        w.put_device(&dev("D2"), None, &typed).unwrap();
        w.commit().unwrap();
        let second = first.another().unwrap();
        assert_ne!(first.version(), second.version(), "the second reader sees the later state");

        let customers = first.customers(None).map(|c| (first.version().clone(), c));
        let devices = second.devices(None).map(|d| (second.version().clone(), d));
        let of_first_state = customers.as_ref().map(|(_, (c, _))| c.len()).unwrap();
        assert_eq!(of_first_state, 1, "the first reader still sees the state it began in");
        let joined = join_halves(&path, snapshot::Share::default(), Ok(Some(customers)), Some(devices)).unwrap();
        let now = snapshot::read(&path).unwrap();
        assert_eq!(joined.version, now.version);
        assert_eq!(joined.customers, now.customers, "not the first reader's customers");
        assert_eq!(joined.devices, now.devices);
        assert_eq!(joined.customers.len(), 2);

        // Readers of one state: their halves, as read.
        let (one, two) = (snapshot::open(&path).unwrap().unwrap(), snapshot::open(&path).unwrap().unwrap());
        let customers = one.customers(None).map(|c| (one.version().clone(), c));
        let devices = two.devices(None).map(|d| (two.version().clone(), d));
        let joined = join_halves(&path, snapshot::Share::default(), Ok(Some(customers)), Some(devices)).unwrap();
        assert_eq!((joined.customers, joined.devices), (now.customers, now.devices));
        let _ = std::fs::remove_dir_all(dir);
    }
}
