//! The front of every command that reads the exports: read the three files and the snapshot (on
//! two threads), resolve, report the bad rows, and diff — `prepare`, or `prepare_beside` for a
//! command that can use the entity diff while the ownership file is still being read
//! (`baseline` writes it). Below the commands: settings in (`InputSettings`, resolved by
//! `cli::settings`), a `Prepared` or an error out.

use std::path::PathBuf;

use crate::diff::{self, Diff};
use crate::error::Error;
use crate::load;
use crate::model::{Export, SnapshotData};
use crate::plan::Batching;

mod read;
use read::{Reads, read_all};

/// Everything a command that reads the exports needs.
#[derive(Debug, Clone)]
pub struct InputSettings {
    pub sources: load::Sources,
    pub state: PathBuf,
    pub strict: bool,
    pub rejects: Option<PathBuf>,
    pub batching: Batching,
    /// When a record Telemetron refused run after run is held back.
    pub quarantine: crate::plan::quarantine::Rule,
    /// Kinds whose file may be header-only although the snapshot holds entities of the kind.
    pub allow_empty: Vec<&'static str>,
    /// Files the input folder was expected to hold and does not: their kind is not reconciled.
    pub missing: Vec<(&'static str, PathBuf)>,
}

/// The exports, the snapshot they were compared with, and the difference.
pub struct Prepared {
    pub export: Export,
    pub snap: SnapshotData,
    pub diff: Diff,
    /// The records Telemetron refused, as the snapshot counts them.
    pub refused: Vec<crate::model::Refused>,
}

impl Prepared {
    /// What the plan holds back of this diff, by `settings`' rule.
    pub fn held<'a>(&'a self, settings: &InputSettings) -> crate::plan::Held<'a> {
        crate::plan::Held { refused: &self.refused, rule: settings.quarantine }
    }
}

/// The plan `plan` would print for these settings, with the guard's verdict: the whole front
/// (read, resolve, diff, plan) as one library call, for tests that plan many inputs.
pub fn plan_for(settings: &InputSettings, limits: &crate::plan::guard::Limits) -> Result<crate::plan::Plan, Error> {
    Ok(plan_doc(&mut prepare(settings)?, settings, limits))
}

/// The plan document of a prepared front (whose diff it takes), with the guard's verdict on it.
pub fn plan_doc(p: &mut Prepared, settings: &InputSettings, limits: &crate::plan::guard::Limits) -> crate::plan::Plan {
    let diff = std::mem::take(&mut p.diff);
    let mut doc = crate::plan::build(diff, &p.export, p.held(settings), settings.batching);
    doc.guard = Some(crate::plan::guard::check(&doc.operations, p.snap.totals(), limits));
    doc
}

/// How many bad rows go to stderr before the rest are only counted.
const STDERR_REJECTS: usize = 100;

/// Reads the exports and the snapshot (in parallel: they are independent), resolves, reports bad
/// rows, and diffs. With `--strict`, any bad row is an error here, before anything is written.
pub fn prepare(settings: &InputSettings) -> Result<Prepared, Error> {
    let started = std::time::Instant::now();
    let Reads { customers, devices, ownership, snap } = read_all(settings, true);
    let mut export = customers?;
    export.join(devices?);
    export.join(ownership?);
    let mut snap = snap?;
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        rss_mib = crate::mem::rss_mib(),
        "inputs and snapshot read"
    );
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
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            rss_mib = crate::mem::rss_mib(),
            "entities compared"
        );
        (d, resolved.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
    });
    if let Some(resolved) = ownership {
        resolved.put_into(&mut export);
    }
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        rss_mib = crate::mem::rss_mib(),
        "ownership resolved"
    );
    report_rows(&export, settings)?;
    diff.set_assignments(diff::assignments(&export, &snap));
    release_wanted(&mut export);
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        rss_mib = crate::mem::rss_mib(),
        "diff computed"
    );
    let refused = crate::snapshot::refusals(&settings.state)?;
    Ok(Prepared { export, snap, diff, refused })
}

/// Once the assignments are diffed, nothing reads the wanted rows again: the plan built next
/// takes their room (at 10 M devices, 10.5 M rows of 56 bytes) instead of adding to the peak.
fn release_wanted(export: &mut Export) {
    if let Some(own) = export.ownership.as_mut() {
        own.owners.release();
    }
}

/// What [`prepare_beside`]'s second thread is handed once this one has it.
pub struct Later<'a, T> {
    cell: &'a std::sync::OnceLock<T>,
    ready: std::sync::mpsc::Receiver<()>,
}

impl<'a, T> Later<'a, T> {
    /// Waits for the value; `None` when preparing failed before it was known.
    pub fn wait(self) -> Option<&'a T> {
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
pub fn prepare_beside<T: Send>(
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
        rss_mib = crate::mem::rss_mib(),
        "entities and snapshot read"
    );
    add_missing_warnings(&mut export, settings);
    refuse_empty_files(&export, &snap, settings)?;
    refuse_all_rejected(&export)?;
    load::resolve_devices(&mut export, &mut snap);
    // Nothing else is running yet: the customers and the devices are compared side by side.
    let mut diff = diff::entities_on_two_threads(&export, &snap);
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        rss_mib = crate::mem::rss_mib(),
        "entities compared"
    );
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
            tracing::debug!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                rss_mib = crate::mem::rss_mib(),
                "inputs read"
            );
            if let Some(own) = export.ownership.take() {
                load::resolve_ownership(own, &export, &snap).put_into(&mut export);
            }
            tracing::debug!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                rss_mib = crate::mem::rss_mib(),
                "ownership resolved"
            );
            report_rows(&export, settings)?;
            let _ = assigned.set(diff::assignments(&export, &snap));
            release_wanted(&mut export);
            let _ = ready.send(());
            tracing::debug!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                rss_mib = crate::mem::rss_mib(),
                "diff computed"
            );
            Ok::<_, Error>(())
        })();
        drop(ready);
        (outcome, beside.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
    });
    outcome?;
    if let Some(a) = assigned.into_inner() {
        diff.set_assignments(a);
    }
    Ok((Prepared { export, snap, diff, refused: Vec::new() }, beside))
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
            target: load::ROWS,
            file = &*r.file,
            line = r.line,
            column = r.column.as_deref(),
            reason = &*crate::pii::scrub_quoted(&r.reason),
            "rejected {}",
            load::reject_line_for_log(r)
        );
    }
    if export.rejected_rows() > STDERR_REJECTS {
        let all = if export.rejects_unlisted.is_empty() {
            "them all"
        } else {
            "the first of each file: [limits] rejects_kept"
        };
        tracing::warn!(
            "... and {} more rejected rows (--rejects FILE writes {all})",
            export.rejected_rows() - STDERR_REJECTS
        );
    }
    for w in export.warnings.iter().take(STDERR_REJECTS) {
        tracing::warn!(
            target: load::ROWS,
            file = &*w.file,
            line = w.line,
            reason = w.message.as_str(),
            "{}",
            load::warning_line(w)
        );
    }
    if export.warning_count() > STDERR_REJECTS {
        tracing::warn!(
            "... and {} more warnings (the plan's reports list them)",
            export.warning_count() - STDERR_REJECTS
        );
    }
    if let Some(path) = &settings.rejects {
        crate::files::replace(path, crate::files::Access::Private, |out| load::write_rejects(out, &export.rejects))
            .map_err(|source| Error::Io { what: "write the rejects file", path: path.clone(), source })?;
    }
    if settings.strict && export.rejected_rows() > 0 {
        return Err(Error::Strict { count: export.rejected_rows() });
    }
    Ok(())
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
        if (lines.len() + export.unlisted_rejects_of(&input.path)) as u64 >= input.rows {
            let first = export.rejects.iter().find(|r| *r.file == *input.path).map(load::reject_line_for_log);
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
