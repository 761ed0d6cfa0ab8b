//! `undo RUN_ID`: show the undo plan an `apply` run stored — built from the before-images of
//! what it changed — checked against the snapshot as it is now, and, with `--apply`, send it
//! like any plan (same guard, executor and recording). What changed since the run (a later
//! run, an event) is skipped and listed as conflicting; creations are listed as not undoable
//! (ext-v1 cannot delete); a run already undone is refused.

use crate::cli::exit::{Ended, How};
use crate::cli::settings::Settings;
use crate::cli::{ReportFormat, UndoArgs};
use crate::error::Error;
use crate::plan::{self, Batching, UndoPlan};
use crate::snapshot::{self, Lock};

pub fn run(args: &UndoArgs, s: &Settings) -> Result<Ended, Error> {
    let deadline = s.max_duration.map(|d| std::time::Instant::now() + d);
    let state = s.existing_state()?.to_path_buf();
    let undo = load(&state, args.run)?;
    if let Some(by) = snapshot::undone_by(&state, args.run)? {
        return Err(Error::Setup(format!(
            "run {} was already undone by run {by} (see `history`); nothing was sent",
            args.run
        )));
    }
    if !args.apply {
        let now = plan::undo_against(&undo, &snapshot::read(&state)?);
        return show(args, &undo, &now);
    }
    let api = s.api()?;
    let opts = s.options(Batching::default());
    let _lock = Lock::acquire(&state)?;
    let client = api.client()?;
    // As for apply: an earlier run's calls of unknown outcome are read back first, then the
    // undo plan is checked against the present.
    crate::sync::writing_run(&state, "undo", &client, &opts, |run_id, _| {
        let now = plan::undo_against(&undo, &snapshot::read(&state)?);
        for n in &undo.not_undoable {
            tracing::warn!("not undoable: {} {}: {}", n.op, n.key, n.reason);
        }
        for c in &now.conflicts {
            tracing::warn!("skipped, changed since run {}: {} {}: {}", args.run, c.op, c.key, c.reason);
        }
        let progress = crate::cli::progress::for_stderr(s.quiet);
        let spec = crate::sync::Spec {
            kind: "undo",
            run_id,
            state: &state,
            batching: Batching::default(),
            opts: opts.clone(),
            client: client.clone(),
            guard: Some(s.guard.clone()),
            deadline,
            keep_undo: None,
            undoes: Some(args.run),
            plan_file: None,
            rejected: 0,
            quarantined: 0,
            progress: progress.as_ref(),
        };
        let sent = now.operations.len();
        let ran = crate::sync::run(&spec, crate::sync::Work::Operations(now.operations))?;
        super::log_outcomes(&state, run_id, &ran.outcome.failures, &[], s.keep_runs);
        super::apply::show(&ran, &spec, &api.base_url, None, &[])?;
        let ended = ran.ended(0);
        if matches!(ended.how, How::Refused(_)) {
            return Ok(ended);
        }
        let restored = ended.figures.operations.values().map(|c| c.done).sum::<u64>();
        super::stdout_write(|out| {
            writeln!(
                out,
                "undo of run {}: {restored} of {sent} operation(s) put back what it changed; {} skipped as changed since, {} not undoable (listed above)",
                args.run,
                now.conflicts.len(),
                undo.not_undoable.len()
            )
        })?;
        Ok(ended)
    })
}

fn load(state: &std::path::Path, run: i64) -> Result<UndoPlan, Error> {
    match snapshot::undo_plan(state, run)? {
        None => Err(Error::NotHeld(format!("no run {run} in {}; `history` lists the runs", state.display()))),
        Some((kind, None)) => {
            Err(Error::NotHeld(format!("run {run} ({kind}) has no undo plan; only apply runs store one")))
        }
        Some((_, Some(plan))) => Ok(plan),
    }
}

fn show(args: &UndoArgs, undo: &UndoPlan, now: &plan::UndoNow) -> Result<Ended, Error> {
    let calls = plan::calls(&now.operations, Batching::default()).len();
    super::stdout_write(|out| match args.format {
        ReportFormat::Json => {
            // Serialized from the operations as they are: a JSON tree of a 10 M-device
            // migration's undo would take many times the memory of the operations themselves.
            #[derive(serde::Serialize)]
            struct Shown<'a> {
                run: i64,
                api_calls: usize,
                operations: &'a [plan::Operation],
                conflicts: &'a [plan::NotUndoable],
                not_undoable: &'a [plan::NotUndoable],
            }
            let doc = Shown {
                run: args.run,
                api_calls: calls,
                operations: &now.operations,
                conflicts: &now.conflicts,
                not_undoable: &undo.not_undoable,
            };
            serde_json::to_writer_pretty(&mut *out, &doc).map_err(std::io::Error::from)?;
            writeln!(out)
        }
        ReportFormat::Text => {
            writeln!(
                out,
                "Undo of run {} (shown only; --apply sends it): {} operations, {calls} API calls",
                args.run,
                now.operations.len()
            )?;
            for op in &now.operations {
                writeln!(out, "  {}", describe(op))?;
            }
            if !now.conflicts.is_empty() {
                writeln!(out, "Skipped: changed since run {} ({}):", args.run, now.conflicts.len())?;
                for c in &now.conflicts {
                    writeln!(out, "  {} {}: {}", c.op, c.key, c.reason)?;
                }
            }
            if !undo.not_undoable.is_empty() {
                writeln!(out, "Not undoable ({}):", undo.not_undoable.len())?;
                for n in &undo.not_undoable {
                    writeln!(out, "  {} {}: {}", n.op, n.key, n.reason)?;
                }
            }
            Ok(())
        }
    })?;
    Ok(Ended::done())
}

fn describe(op: &plan::Operation) -> String {
    use plan::Operation::*;
    match op {
        UpdateCustomer(u) => {
            let fields: Vec<String> = u
                .changes
                .iter()
                .map(|(k, c)| {
                    format!("{k}: {:?} -> {:?}", c.before.as_deref().unwrap_or(""), c.after.as_deref().unwrap_or(""))
                })
                .collect();
            format!("~ customer {}  {}", u.email, fields.join("; "))
        }
        UpdateDevice(u) => {
            let mut parts = Vec::new();
            if let Some(t) = &u.device_type {
                parts.push(format!("type -> {}", t.after.as_deref().unwrap_or("")));
            }
            if let Some(p) = &u.properties_after {
                parts.push(format!("properties -> {}", p.json()));
            }
            format!("~ device {}  {}", u.identifier, parts.join("; "))
        }
        Unassign(a) => format!("- {} from {}", a.device, a.customer),
        Assign(a) => format!("+ {} to {}", a.device, a.customer),
        CreateCustomer(c) => format!("+ customer {}", c.email),
        CreateDevice(c) => format!("+ device {}", c.identifier),
    }
}
