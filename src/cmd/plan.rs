//! `plan`: the dry-run report. Reads, never writes the snapshot, never calls the API.

use crate::cli::{PlanArgs, ReportFormat};
use crate::error::Error;
use crate::exit;
use crate::plan::SavedPlan;
use crate::report;
use crate::settings::InputSettings;

pub fn run(args: &PlanArgs) -> Result<i32, Error> {
    let settings = InputSettings::resolve(&args.inputs)?;
    let p = super::prepare(&settings)?;
    let t = std::time::Instant::now();
    let doc = super::plan_doc(&p, &settings, &args.guard.limits()?);
    tracing::debug!(elapsed_ms = t.elapsed().as_millis() as u64, "plan built");
    if let Some(path) = &args.out {
        let saved = SavedPlan { plan: &doc, inputs: &p.export.inputs, snapshot: &p.snap.version };
        let json = serde_json::to_vec_pretty(&saved).expect("a plan always serializes");
        std::fs::write(path, json).map_err(|source| Error::Io {
            what: "write the plan to",
            path: path.clone(),
            source,
        })?;
    }
    super::stdout_write(|out| match args.format {
        ReportFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, &doc).map_err(std::io::Error::from)?;
            writeln!(out)
        }
        ReportFormat::Text => {
            report::write_plan_text(out, &doc, &p.export.inputs, &settings.state, &p.snap.version, args.full)
        }
    })?;
    tracing::debug!(elapsed_ms = t.elapsed().as_millis() as u64, "plan written");
    let changes = !p.diff.is_empty();
    super::release(p);
    Ok(if args.detailed_exitcode && changes { exit::CHANGES } else { exit::SUCCESS })
}
