//! `history`: the runs recorded in the snapshot, newest first.

use crate::cli::{HistoryArgs, ReportFormat};
use crate::error::Error;
use crate::exit;
use crate::settings::state_path;
use crate::snapshot;

pub fn run(args: &HistoryArgs) -> Result<i32, Error> {
    let path = state_path(&args.state);
    let runs = snapshot::runs(&path, args.limit)?;
    super::stdout_write(|out| match args.format {
        ReportFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, &runs).map_err(std::io::Error::from)?;
            writeln!(out)
        }
        ReportFormat::Text => {
            if runs.is_empty() {
                return writeln!(out, "no runs recorded in {}", path.display());
            }
            writeln!(
                out,
                "{:>5}  {:<9} {:<21} {:<21} {:<14} summary",
                "run", "kind", "started", "finished", "outcome"
            )?;
            for r in &runs {
                writeln!(
                    out,
                    "{:>5}  {:<9} {:<21} {:<21} {:<14} {}",
                    r.id,
                    r.kind,
                    r.started_at,
                    r.finished_at.as_deref().unwrap_or("-"),
                    r.outcome.as_deref().unwrap_or("unfinished"),
                    r.summary.as_ref().map(|s| s.to_string()).unwrap_or_default()
                )?;
            }
            Ok(())
        }
    })?;
    Ok(exit::SUCCESS)
}
