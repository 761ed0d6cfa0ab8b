//! `undo RUN_ID`: show the undo plan an `apply` run stored — built from the before-images of
//! what it changed — and, with `--apply`, send it like any plan (same guard, executor and
//! recording). Creations are listed as not undoable: ext-v1 cannot delete.

use crate::cli::{ReportFormat, UndoArgs};
use crate::error::Error;
use crate::exit;
use crate::plan::{self, Batching, UndoPlan};
use crate::settings::{ApiSettings, state_path};
use crate::snapshot::{self, Lock};

pub fn run(args: &UndoArgs, quiet: bool) -> Result<i32, Error> {
    let state = state_path(&args.state);
    let undo = load(&state, args.run)?;
    if !args.apply {
        return show(args, &undo);
    }
    let api = ApiSettings::resolve(&args.api)?;
    let opts = args.exec.options(Batching::default())?;
    let _lock = Lock::acquire(&state)?;
    let client = api.client()?;
    // As for apply: an earlier run's calls of unknown outcome are read back first.
    super::settle::journal(&state, &client, &opts)?;
    for n in &undo.not_undoable {
        tracing::warn!("not undoable: {} {}: {}", n.op, n.key, n.reason);
    }
    let spec = super::apply::RunSpec {
        kind: "undo",
        state: &state,
        batching: Batching::default(),
        opts,
        client,
        base_url: api.base_url.clone(),
        rejected: 0,
        guard: args.guard.limits()?,
        report: None,
        quiet,
        record_undo: false,
    };
    super::apply::run_operations(&spec, undo.operations)
}

fn load(state: &std::path::Path, run: i64) -> Result<UndoPlan, Error> {
    match snapshot::undo_plan(state, run)? {
        None => Err(Error::Usage(format!("no run {run} in {}; `history` lists the runs", state.display()))),
        Some((kind, serde_json::Value::Null)) => {
            Err(Error::Usage(format!("run {run} ({kind}) has no undo plan; only apply runs store one")))
        }
        Some((_, plan)) => serde_json::from_value(plan)
            .map_err(|e| Error::snapshot(state, format!("the undo plan of run {run} is unreadable: {e}"))),
    }
}

fn show(args: &UndoArgs, undo: &UndoPlan) -> Result<i32, Error> {
    let calls = plan::calls(&undo.operations, Batching::default()).len();
    super::stdout_write(|out| match args.format {
        ReportFormat::Json => {
            let doc = serde_json::json!({
                "run": args.run,
                "api_calls": calls,
                "operations": undo.operations,
                "not_undoable": undo.not_undoable,
            });
            serde_json::to_writer_pretty(&mut *out, &doc).map_err(std::io::Error::from)?;
            writeln!(out)
        }
        ReportFormat::Text => {
            writeln!(
                out,
                "Undo of run {} (shown only; --apply sends it): {} operations, {calls} API calls",
                args.run,
                undo.operations.len()
            )?;
            for op in &undo.operations {
                writeln!(out, "  {}", describe(op))?;
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
    Ok(exit::SUCCESS)
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
                parts.push(format!("properties -> {}", p.as_json()));
            }
            format!("~ device {}  {}", u.identifier, parts.join("; "))
        }
        Unassign(a) => format!("- {} from {}", a.device, a.customer),
        Assign(a) => format!("+ {} to {}", a.device, a.customer),
        CreateCustomer(c) => format!("+ customer {}", c.email),
        CreateDevice(c) => format!("+ device {}", c.identifier),
    }
}
