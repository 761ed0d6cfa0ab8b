//! `apply`: compute the plan (or read a saved one) and execute it against Telemetron, recording
//! each confirmed operation in the snapshot.
//!
//! Order of a run: take the snapshot's lock; read and plan; refuse, before any call, a plan that
//! removes more assignments than the safety guard allows; execute; while executing, a recorder
//! thread commits confirmations to the snapshot at least every second, so `kill -9` loses at
//! most the last second of confirmations — the next run repeats those calls harmlessly.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::cli::exit::{Ended, How};
use crate::cli::settings::ApplySettings;
use crate::error::Error;
use crate::execute;
use crate::plan::quarantine::Quarantined;
use crate::plan::{self, Operation};
use crate::snapshot::{self, Lock, Store};
use crate::sync::{self, Ran, Work};

pub fn run(a: &ApplySettings) -> Result<Ended, Error> {
    let (api, client) = (&a.api, a.api.client()?);
    let mut settings = a.inputs.clone();
    // A saved plan names its snapshot: it is the one used, and no other.
    let saved = a.plan.as_ref().map(|path| read_saved(path).map(|doc| (path, doc))).transpose()?;
    // The plan as its reports name it: the file's hash, and when it was made.
    let plan_file = match &saved {
        Some((path, doc)) => Some(
            plan::SavedAs {
                path: path.display().to_string(),
                sha256: crate::load::sha256_file(path).map_err(|source| Error::Io {
                    what: "read the plan",
                    path: path.to_path_buf(),
                    source,
                })?,
                created_at: doc.created_at.as_deref().map(str::to_string),
            }
            .describe(),
        ),
        None => None,
    };
    if let Some((path, doc)) = &saved {
        settings.state = plan_state(doc, path, &settings.state, a.state_named)?;
    }

    // Held until the process ends; released by the OS even on kill -9.
    let _lock = Lock::acquire(&settings.state)?;
    let saved = saved.map(|(path, doc)| saved_plan(doc, path, &settings.state)).transpose()?;
    // What an earlier run sent without learning the outcome is read back before planning.
    sync::writing_run(&settings.state, "apply", &client, &a.opts, |run_id, settled| {
        let (operations, rejected, warnings, mut quarantined) = match saved {
            Some(_) if settled => {
                return Err(Error::Setup(format!(
                    "the snapshot {} changed since the plan was made: calls of an earlier run whose outcome was unknown were just read back from Telemetron; nothing was sent. Run `plan --out` again and review it",
                    settings.state.display()
                )));
            }
            Some((operations, rejected, quarantined)) => (operations, rejected, 0, quarantined),
            None => {
                let mut p = super::prepare(&settings)?;
                let t = Instant::now();
                // The plan needs the diff and what was rejected, not the export's maps nor the
                // snapshot's rows: they are freed first, so that the operations take their
                // place instead of adding to them (at 10 M devices, 2 GiB).
                let diff = std::mem::take(&mut p.diff);
                let kept = crate::model::Export {
                    rejects: std::mem::take(&mut p.export.rejects),
                    rejects_unlisted: std::mem::take(&mut p.export.rejects_unlisted),
                    warnings: std::mem::take(&mut p.export.warnings),
                    warnings_unlisted: p.export.warnings_unlisted,
                    ..Default::default()
                };
                let refused = std::mem::take(&mut p.refused);
                drop(p);
                super::return_freed_memory();
                tracing::debug!(elapsed_ms = t.elapsed().as_millis() as u64, rss_mib = super::rss_mib(), "front freed");
                let held = plan::Held { refused: &refused, rule: settings.quarantine };
                let doc = plan::build_uncounted(diff, &kept, held);
                tracing::debug!(elapsed_ms = t.elapsed().as_millis() as u64, rss_mib = super::rss_mib(), "plan built");
                (doc.operations, kept.rejected_rows(), kept.warning_count(), doc.quarantined)
            }
        };
        let progress = crate::cli::progress::for_stderr(a.quiet);
        let spec = sync::Spec {
            kind: "apply",
            run_id,
            state: &settings.state,
            batching: settings.batching,
            opts: a.opts.clone(),
            client: client.clone(),
            guard: Some(a.guard.clone()),
            deadline: a.deadline,
            keep_undo: Some(a.keep_runs),
            undoes: None,
            plan_file: plan_file.clone(),
            rejected,
            quarantined: quarantined.len(),
            progress: progress.as_ref(),
        };
        let mut ran = sync::run(&spec, Work::Operations(operations))?;
        super::locate(&settings.sources, &mut ran.outcome.failures, &mut quarantined);
        super::log_outcomes(&settings.state, run_id, &ran.outcome.failures, &quarantined, a.keep_runs);
        show(&ran, &spec, &api.base_url, a.report.as_deref(), &quarantined)?;
        let mut ended = ran.ended(warnings as u64);
        ended.figures.records_failing = snapshot::refusals(&settings.state).ok().map(|r| r.len() as u64);
        Ok(ended)
    })
}

/// Prints a writing run's summary and writes its report: `apply` and `undo --apply`. A run the
/// guard refused shows nothing here (its reason is the final error).
pub(super) fn show(
    ran: &Ran,
    spec: &sync::Spec<'_>,
    base_url: &str,
    report: Option<&Path>,
    quarantined: &[Quarantined],
) -> Result<(), Error> {
    if matches!(ran.how, How::Refused(_)) {
        return Ok(());
    }
    let (run_id, outcome, rejected, left) = (ran.run_id, &ran.outcome, ran.rejected, ran.left);
    if let Some(path) = report {
        let report = serde_json::json!({
            "run": run_id,
            "outcome": ran.word,
            "verdict": ran.verdict,
            "base_url": base_url,
            "rejected_rows": rejected,
            "calls_left": left,
            "quarantined": quarantined,
            "summary": outcome,
        });
        crate::cli::files::replace(path, crate::cli::files::Access::Private, |out| {
            serde_json::to_writer_pretty(&mut *out, &report)?;
            out.write_all(b"\n")
        })
        .map_err(|source| Error::Io { what: "write the report to", path: path.to_owned(), source })?;
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
        if !quarantined.is_empty() {
            writeln!(out, "  {:<22} {:>13}", "quarantined", quarantined.len())?;
        }
        for f in outcome.failures.iter().take(20) {
            let at = f.source.as_ref().map(|s| format!(" ({s})")).unwrap_or_default();
            writeln!(out, "  failed {} {}{at}: {}", f.kind.replace('_', " "), f.key, f.error)?;
        }
        if outcome.failures.len() > 20 {
            writeln!(out, "  ... and {} more failures (--report FILE lists them all)", outcome.failures.len() - 20)?;
        }
        for q in quarantined.iter().take(20) {
            writeln!(out, "  quarantined {}", crate::cli::report::quarantine_line(q))?;
        }
        if quarantined.len() > 20 {
            writeln!(out, "  ... and {} more quarantined (--report FILE lists them all)", quarantined.len() - 20)?;
        }
        writeln!(out, "{}", ran.verdict)
    })
}

/// Reads a saved plan as it streams from the file, through the loader's reader: gzip-compressed
/// JSON as `plan --out` writes it, the plain JSON of earlier versions, or zstd.
fn read_saved(path: &Path) -> Result<plan::SavedPlan<'static, plan::Applied>, Error> {
    use crate::load::source::{OpenError, reader};
    let stream = reader(path).map_err(|e| match e {
        OpenError::Io(source) => Error::Io { what: "read the plan", path: path.to_owned(), source },
        OpenError::NotCompressed(how) => Error::BadFile {
            path: path.to_owned(),
            message: format!("its name says {how}, but it is not; a file cut short or damaged. Make the plan again"),
        },
    })?;
    plan::read_saved(stream).map_err(|e| Error::BadFile {
        path: path.to_owned(),
        message: if e.is_io() || e.is_eof() {
            format!("cannot be read to the end ({e}); a file cut short or damaged. Make the plan again")
        } else {
            format!("not a plan saved by `plan --out` ({e})")
        },
    })
}

/// Reads a saved plan and checks it is still the plan the inputs and the snapshot give.
fn saved_plan(
    doc: plan::SavedPlan<'static, plan::Applied>,
    path: &Path,
    state: &Path,
) -> Result<(Vec<Operation>, usize, Vec<Quarantined>), Error> {
    if doc.plan.format != plan::FORMAT {
        return Err(Error::BadFile {
            path: path.to_owned(),
            message: format!(
                "plan format {:?}; this build applies {:?}. Make the plan again",
                doc.plan.format,
                plan::FORMAT
            ),
        });
    }
    // An input path in the plan is absolute, or relative to the plan file's folder.
    let plan_dir = path.parent().unwrap_or(Path::new(""));
    for input in doc.inputs.iter() {
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
            let rejected = doc.plan.rejected_rows();
            return Ok((doc.plan.operations, rejected, doc.plan.quarantined));
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
    let rejected = doc.plan.rejected_rows();
    Ok((doc.plan.operations, rejected, doc.plan.quarantined))
}

/// The snapshot a saved plan applies to: the one it names, unless `--state` (or the config, or
/// the environment) names another, which is refused. A plan of an earlier version names none,
/// and takes the one given.
fn plan_state(
    doc: &plan::SavedPlan<'static, plan::Applied>,
    path: &Path,
    given: &Path,
    named: bool,
) -> Result<PathBuf, Error> {
    let Some(theirs) = doc.state.as_deref().map(PathBuf::from) else { return Ok(given.to_owned()) };
    if !named || super::absolute_path(given) == theirs {
        return Ok(theirs);
    }
    Err(Error::NotHeld(format!(
        "the plan {} was made against the snapshot {}, not {}; nothing was sent. Leave --state out to apply it to its own snapshot, or run `plan --out` again against this one",
        path.display(),
        theirs.display(),
        super::absolute_path(given).display()
    )))
}
