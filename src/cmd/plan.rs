//! `plan`: the dry-run report. Reads, never writes the snapshot, never calls the API.

use crate::cli::PlanFormat;
use crate::cli::exit::{Ended, Figures, How};
use crate::cli::report;
use crate::cli::settings::PlanSettings;
use crate::cli::{html, markdown};
use crate::error::Error;
use crate::plan::SavedPlan;

pub fn run(args: &PlanSettings) -> Result<Ended, Error> {
    let settings = &args.inputs;
    let mut p = super::prepare(settings)?;
    let changes = !p.diff.is_empty();
    let t = std::time::Instant::now();
    let mut doc = super::plan_doc(&mut p, settings, &args.guard);
    super::locate(&settings.sources, &mut [], &mut doc.quarantined);
    let settled = crate::snapshot::settled_rate(&settings.state)?;
    match (args.rate_auto, settled) {
        (true, Some(r)) => doc.set_estimate(r, "auto_settled", None),
        (true, None) => doc.set_estimate(args.rate, "auto_start", None),
        (false, settled) => doc.set_estimate(args.rate, "fixed", settled),
    }
    tracing::debug!(elapsed_ms = t.elapsed().as_millis() as u64, rss_mib = super::rss_mib(), "plan built");
    if let Some(path) = &args.out {
        let inputs = saved_inputs(&p.export.inputs, path);
        // A plan made while the snapshot is missing sets an identity aside for it: `apply
        // --plan` creates the file with it, and any other new snapshot is told apart.
        let mut version = p.snap.version.clone();
        if version.id.is_none() {
            version.id = Some(crate::snapshot::new_snapshot_id());
            version.missing = true;
        }
        let state = super::absolute_path(&settings.state);
        let created_at = crate::time::now_rfc3339();
        let saved = SavedPlan {
            plan: &doc,
            inputs: inputs.into(),
            snapshot: std::borrow::Cow::Borrowed(&version),
            state: Some(state.to_string_lossy()),
            created_at: Some(created_at.as_str().into()),
        };
        let unwritten = |source| Error::Io { what: "write the plan to", path: path.clone(), source };
        write_saved(path, &saved).map_err(unwritten)?;
        let sha256 = crate::load::sha256_file(path).map_err(unwritten)?;
        doc.saved_as =
            Some(crate::plan::SavedAs { path: path.display().to_string(), sha256, created_at: Some(created_at) });
        tracing::info!(
            plan = %path.display(),
            snapshot = %state.display(),
            "plan saved; review it, then apply it (against its snapshot, from any folder) with: telemetron-sync apply --plan {}",
            shell_word(&super::absolute_path(path).to_string_lossy())
        );
    }
    let write = |out: &mut dyn std::io::Write| match args.format {
        PlanFormat::Json => {
            crate::cli::json::write_plan(out, &mut doc)?;
            writeln!(out)
        }
        PlanFormat::Text => {
            report::write_plan_text(out, &doc, &p.export.inputs, &settings.state, &p.snap.version, args.full)
        }
        PlanFormat::Html => html::write(out, &doc, &p.export.inputs, &settings.state, &p.snap.version),
        PlanFormat::Markdown => {
            let limit = args.max_report_size.map_or(markdown::LIMIT, |n| n as usize);
            out.write_all(markdown::render(&doc, &p.export.inputs, &settings.state, &p.snap.version, limit).as_bytes())
        }
    };
    match &args.out_report {
        Some(path) => {
            crate::cli::files::replace(path, crate::cli::files::Access::Private, write)
                .map_err(|source| Error::Io { what: "write the report to", path: path.clone(), source })?;
            // Nothing else on stdout: say what was saved, and how to apply it.
            if let (Some(saved), Some(out)) = (&doc.saved_as, &args.out) {
                let apply = shell_word(&super::absolute_path(out).to_string_lossy());
                let line = format!(
                    "plan saved: {}: {} API calls, {} rejected row(s); report in {}; apply it with: telemetron-sync apply --plan {apply}",
                    saved.describe(),
                    crate::plan::thousands(doc.summary.api_calls),
                    doc.summary.rejected_rows,
                    path.display()
                );
                super::stdout_write(|o| writeln!(o, "{line}"))?;
            }
        }
        None => super::stdout_write(write)?,
    }
    tracing::debug!(elapsed_ms = t.elapsed().as_millis() as u64, rss_mib = super::rss_mib(), "plan written");
    let figures = Figures {
        rejected_rows: p.export.rejected_rows() as u64,
        warnings: p.export.warning_count() as u64,
        quarantined: doc.summary.quarantined as u64,
        ..Figures::default()
    };
    super::release(p);
    super::release(doc);
    Ok(Ended::with(if args.detailed_exitcode && changes { How::Changes } else { How::Done }, figures))
}

/// Writes a saved plan: compact JSON, gzip-compressed as it is written (like Terraform's plan
/// file, it is an artefact for `apply --plan`; `zcat PLAN | jq .` shows it). A migration's
/// operations repeat every export row with its field names; compressed, the plan is under half
/// the size of its inputs instead of three times it, and is never held in memory whole.
fn write_saved(path: &std::path::Path, saved: &SavedPlan<'_, &crate::plan::Plan>) -> std::io::Result<()> {
    crate::cli::files::replace(path, crate::cli::files::Access::Private, |out| {
        // serde_json writes a few bytes at a time; the compressor wants them in blocks.
        let gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
        let mut block = std::io::BufWriter::with_capacity(1 << 16, gz);
        serde_json::to_writer(&mut block, saved)?;
        block.into_inner().map_err(std::io::IntoInnerError::into_error)?.finish()?.flush()
    })
}

/// The inputs as a saved plan records them: relative to the plan file's folder when they are
/// inside it (a folder moved as a whole still applies), absolute otherwise — never relative to
/// where `plan` ran.
fn saved_inputs(inputs: &[crate::model::InputInfo], plan: &std::path::Path) -> Vec<crate::model::InputInfo> {
    let dir = plan.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let dir = std::fs::canonicalize(dir).ok();
    inputs
        .iter()
        .map(|i| {
            let mut i = i.clone();
            if let Ok(abs) = std::fs::canonicalize(&i.path) {
                let rel = dir.as_ref().and_then(|d| abs.strip_prefix(d).ok()).map(std::path::Path::to_path_buf);
                i.path = rel.unwrap_or(abs).to_string_lossy().into_owned();
            }
            i
        })
        .collect()
}

/// A word as a POSIX shell reads it back: as it is when it is plain, else in single quotes.
fn shell_word(s: &str) -> String {
    let plain = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+,:@%=".contains(c));
    if plain { s.to_string() } else { format!("'{}'", s.replace('\'', r"'\''")) }
}
