//! One module per subcommand; [`run`] dispatches and returns the exit code.
//!
//! Commands turn parsed arguments into settings, call the library stages, and write results to
//! stdout. The shared front half — read exports and snapshot, resolve, diff — is [`prepare`].

use crate::cli::exit::Ended;
use crate::cli::settings::{ApplySettings, CommandFlags, InputSettings, PlanSettings, Settings};
use crate::cli::{Cli, Command};
use crate::error::Error;

mod adhoc;
mod apply;
mod baseline;
mod emulator;
mod event;
mod explain;
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
        Command::Apply(args) => apply::run(&ApplySettings::resolve(s, args)?),
        Command::Verify(args) => verify::run(args, s),
        Command::Event(args) => {
            crate::cli::settings::check_event(args)?;
            event::run(args, s)
        }
        Command::Undo(args) => undo::run(args, s),
        Command::Plan(args) => plan::run(&PlanSettings::resolve(s, args)?),
        Command::Baseline(args) => baseline::run(&InputSettings::resolve(s, &args.inputs, None, true)?),
        Command::History(args) => history::run(args, s),
        Command::Explain(args) => explain::run(&crate::cli::settings::ExplainSettings::resolve(s, args)?),
        Command::Snapshot(cmd) => snapshot_cmd::run(cmd, s),
        Command::Customer(cmd) => adhoc::customer(cmd, s),
        Command::Device(cmd) => adhoc::device(cmd, s),
        Command::Assign(args) => adhoc::assign(args, s),
        Command::Unassign(args) => adhoc::unassign(args, s),
        Command::Ticket(cmd) => adhoc::ticket(cmd, s),
        Command::Emulator(args) => emulator::run(args.listen, crate::cli::settings::emulator_config(args)?),
        Command::Completions { shell } => {
            stdout_write(|out| crate::cli::shell::completions(*shell, out))?;
            Ok(Ended::done())
        }
        Command::Man => {
            stdout_write(crate::cli::shell::man)?;
            Ok(Ended::done())
        }
    }
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

pub use crate::front::plan_for;
pub(crate) use crate::front::{plan_doc, prepare, prepare_beside};
pub(crate) use crate::mem::{return_freed_memory, rss_mib};

pub(crate) use crate::cli::output::stdout_write;

/// Ends the life of the big in-memory values of a command that is about to exit. Freeing
/// millions of small allocations one by one takes about a second per million entities; the
/// process exit returns the memory at once.
pub(crate) fn release<T>(value: T) {
    std::mem::forget(value);
}

pub(crate) use crate::sync::{runtime, shutdown_signal, stop_on_signal};

/// Writes what became of the records run `run_id` did not get confirmed (refused, failed after
/// its retries, not sent for a failure it waited on, quarantined) into the snapshot's sync log,
/// which `history RUN` and `explain` show; keeps the log and the undo plans of the newest `keep`
/// runs. A log that cannot be written is said, not an error: the run is done.
pub(crate) fn log_outcomes(
    state: &std::path::Path,
    run_id: i64,
    failures: &[crate::execute::Failure],
    quarantined: &[crate::plan::quarantine::Quarantined],
    keep: u32,
) {
    use crate::snapshot::LogEntry;
    let failed = failures.iter().map(|f| LogEntry {
        kind: f.kind.to_string(),
        key: f.key.clone(),
        outcome: match (f.refused, f.error.starts_with("not sent")) {
            (true, _) => "refused",
            (false, true) => "not_sent",
            (false, false) => "failed",
        }
        .into(),
        // The outcome says it: the message is what follows.
        message: ["refused by Telemetron: ", "not sent: "]
            .iter()
            .find_map(|p| f.error.strip_prefix(p))
            .unwrap_or(&f.error)
            .to_string(),
        source: f.source.clone(),
    });
    let held = quarantined.iter().map(|q| LogEntry {
        kind: q.record.as_str().to_string(),
        key: q.key.clone(),
        outcome: "quarantined".into(),
        message: match &q.waits_for {
            Some(first) => format!("waits for {first}, which is quarantined"),
            None => {
                format!("refused in {} run(s) in a row; not sent until its export row changes: {}", q.runs, q.message)
            }
        },
        source: q.source.clone(),
    });
    let entries: Vec<LogEntry> = failed.chain(held).collect();
    let written = crate::snapshot::Store::open(state).and_then(|mut s| match entries.is_empty() {
        // What the run's own writes logged (removals, settled calls) is pruned here too.
        true => s.keep_runs(keep),
        false => s.log_outcomes(run_id, &entries, keep),
    });
    if let Err(e) = written {
        tracing::warn!("the sync log could not be written ({e}); the run's summary has its counts");
    }
}

/// Names the export rows that the refused records and the quarantined ones came from
/// (`file:line`), by reading the files again: only when there are any. A file that cannot be
/// read again names none; the run's outcome stands.
pub(crate) fn locate(
    sources: &crate::load::Sources,
    failures: &mut [crate::execute::Failure],
    quarantined: &mut [crate::plan::quarantine::Quarantined],
) {
    use crate::model::RecordKind;
    let wanted: Vec<(RecordKind, &str)> = failures
        .iter()
        .filter(|f| f.refused)
        .filter_map(|f| Some((RecordKind::of_operation(f.kind)?, f.key.as_str())))
        .chain(quarantined.iter().map(|q| (q.record, q.key.as_str())))
        .collect();
    if wanted.is_empty() {
        return;
    }
    let found = match crate::load::lines_of(sources, &wanted) {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!("the refused records' export rows could not be found again: {e}");
            return;
        }
    };
    for f in failures.iter_mut().filter(|f| f.refused) {
        if let Some(kind) = RecordKind::of_operation(f.kind) {
            f.source = found.get(&(kind, f.key.clone())).cloned();
        }
    }
    for q in quarantined {
        q.source = found.get(&(q.record, q.key.clone())).cloned();
    }
}
