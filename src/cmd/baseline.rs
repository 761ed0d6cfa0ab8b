//! `baseline`: record the exports in the snapshot as if Telemetron already had them, without
//! calling it — for teams that synced by other means and want diffs from now on.

use crate::cli::exit::{Ended, Figures};
use crate::cli::settings::InputSettings;
use crate::error::Error;
use crate::model::DeviceRecord;
use crate::snapshot::{Lock, Store};

pub fn run(settings: &InputSettings) -> Result<Ended, Error> {
    // The same lock as apply: a baseline written under a running apply would be lost or clash.
    let _lock = Lock::acquire(&settings.state)?;
    let run_id = super::begin_run(&settings.state, "baseline")?;
    let result = (|| {
        // The customers and devices are written while the ownership file is still read and
        // resolved, inside the one transaction the assignments then close: preparing that
        // fails rolls it all back, so nothing of a refused export is recorded.
        let (p, written) = super::prepare_beside(settings, |d, snap, assigned| {
            let started = std::time::Instant::now();
            let mut store = Store::open(&settings.state)?;
            store.write_in_bulk(|w| {
                w.put_customers(d.customers_to_create.iter().map(|c| (&c.email, &c.record)))?;
                w.put_customers(d.customers_to_update.iter().map(|u| (&u.email, &u.after)))?;
                tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "customers written");
                w.put_devices(
                    d.devices_to_create.iter().map(|c| (&c.identifier, Some(&*c.device_type), &c.properties)),
                )?;
                for u in &d.devices_to_update {
                    let Some(old) = snap.devices.get(&u.identifier) else { continue };
                    let record = DeviceRecord {
                        device_type: u
                            .device_type
                            .as_ref()
                            .map_or_else(|| old.record.device_type.clone(), |c| c.after.clone()),
                        properties: u
                            .properties
                            .as_ref()
                            .map_or_else(|| old.record.properties.clone(), |c| c.after.clone()),
                    };
                    w.put_device(&u.identifier, None, &record)?;
                }
                tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "devices written");
                let Some(a) = assigned.wait() else {
                    // Preparing failed, and says why: the error here only rolls back.
                    return Err(Error::Setup("the baseline was not prepared".into()));
                };
                for pair in a.to_remove() {
                    w.unassign(&pair.device, &pair.customer)?;
                }
                w.assign_all(a.to_add())?;
                tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "assignments written");
                Ok(())
            })?;
            Ok::<_, Error>((store, started))
        })?;
        let (mut store, started) = written?;
        let d = &p.diff;
        let summary = serde_json::json!({
            "customers_recorded": d.customers_to_create.len() + d.customers_to_update.len(),
            "devices_recorded": d.devices_to_create.len() + d.devices_to_update.len(),
            "assignments_added": d.assignments_to_add.len(),
            "assignments_removed": d.assignments_to_remove.len(),
            "rejected_rows": p.export.rejected_rows(),
        });
        let outcome = if p.export.rejected_rows() == 0 { "ok" } else { "partial" };
        store.finish_run(run_id, outcome, &summary)?;
        tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "snapshot written");
        super::stdout_write(|out| {
            writeln!(
                out,
                "baseline recorded in {} (run {run_id}): {} customers, {} devices, {} assignments added, {} removed; {} rejected rows",
                settings.state.display(),
                summary["customers_recorded"],
                summary["devices_recorded"],
                summary["assignments_added"],
                summary["assignments_removed"],
                summary["rejected_rows"],
            )
        })?;
        let figures = Figures {
            run_id: Some(run_id),
            rejected_rows: p.export.rejected_rows() as u64,
            warnings: p.export.warning_count() as u64,
            ..Figures::default()
        };
        super::release(p);
        Ok(Ended::counted(figures))
    })();
    super::end_run(&settings.state, run_id, result)
}
