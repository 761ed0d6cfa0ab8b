//! How a writing run ended: its verdict, recorded in the snapshot's history, and handed back
//! to the command that shows it.

use crate::error::Error;
use crate::execute::Outcome;
use crate::snapshot::Store;

use super::{Ended, Figures, How, Spec};

/// How a run ended besides its outcome: how many calls it planned, why the recorder failed,
/// if it did, and whether the cron window closed.
pub(super) struct Ending {
    pub planned: u64,
    pub recorder: Option<String>,
    pub out_of_time: bool,
}

/// A writing run that ran to its end (or was refused before any call).
#[derive(Debug)]
pub struct Ran {
    pub run_id: i64,
    pub outcome: Outcome,
    /// Calls planned, and planned but not sent.
    pub planned: u64,
    pub left: u64,
    /// Rows the front rejected (left out of the work).
    pub rejected: usize,
    /// Records the quarantine held back (left out of the work).
    pub quarantined: usize,
    pub how: How,
    /// One sentence: how the run ended and what happens next.
    pub verdict: String,
    /// The word recorded in the run's history.
    pub word: &'static str,
}

impl Ran {
    /// Refused by the safety guard: nothing was sent, and the caller records it.
    pub(super) fn refused(spec: &Spec<'_>, why: &str) -> Ran {
        let verdict = format!(
            "refusing to {}: the plan is over the safety guard's limits: {why}. Nothing was sent. A truncated, \
             partial or mis-mapped export looks like this; check it. If the changes are right, run again with \
             --force, or raise --max-unassign / --max-changes",
            spec.kind
        );
        Ran {
            run_id: spec.run_id,
            outcome: Outcome::default(),
            planned: 0,
            left: 0,
            rejected: spec.rejected,
            quarantined: spec.quarantined,
            how: How::Refused(verdict.clone()),
            verdict,
            word: "refused",
        }
    }

    /// What the command returns, with the warnings of its front.
    pub fn ended(&self, warnings: u64) -> Ended {
        let o = &self.outcome;
        let figures = Figures {
            run_id: Some(self.run_id),
            operations: o.operations.iter().map(|(k, c)| (k.to_string(), c.clone())).collect(),
            calls: o.calls,
            retries: o.retries,
            failed_operations: o.failed(),
            rejected_rows: self.rejected as u64,
            warnings,
            calls_left: self.left,
            refused_operations: o.refused(),
            quarantined: self.quarantined as u64,
            drifted: None,
            records_failing: None,
        };
        Ended::with(self.how.clone(), figures)
    }
}

/// Records the run, and says how it ended.
pub(super) fn conclude(
    store: &mut Store,
    run_id: i64,
    outcome: Outcome,
    spec: &Spec<'_>,
    ending: &Ending,
) -> Result<Ran, Error> {
    let failed = outcome.failed();
    let sent = outcome.planned_calls_sent;
    let left = ending.planned.saturating_sub(sent);
    let how = match (&ending.recorder, &outcome.stopped) {
        (Some(why), _) => How::Stopped(format!(
            "stopped: the snapshot can no longer be written ({why}). {sent} of {} planned calls were sent; the snapshot holds what was committed before the failure, and the next run repeats the rest (harmlessly). Free space or fix the snapshot's folder, then run again",
            ending.planned
        )),
        (None, Some(_)) if ending.out_of_time => How::OutOfTime(format!(
            "--max-duration reached: stopped at a checkpoint with {left} of {} planned calls left; what was confirmed is recorded, and the next run continues",
            ending.planned
        )),
        (None, Some(why)) => How::Stopped(format!(
            "stopped early: {why}; {sent} of {} planned calls were sent, {left} left; the next run continues",
            ending.planned
        )),
        (None, None) if failed > 0 || spec.rejected > 0 || spec.quarantined > 0 => How::Partial,
        (None, None) => How::Done,
    };
    if let How::OutOfTime(why) = &how {
        tracing::warn!("{why}");
    }
    let verdict = match &how {
        How::Stopped(why) | How::OutOfTime(why) => why.clone(),
        How::Partial => {
            let mut parts = Vec::new();
            let refused = outcome.refused();
            if failed > refused {
                parts.push(format!("{} failed operation(s), which the next run retries", failed - refused));
            }
            if refused > 0 {
                parts.push(format!(
                    "{refused} operation(s) refused by Telemetron record by record (named above with its words), which the next run sends again; fix the export rows"
                ));
            }
            if spec.quarantined > 0 {
                parts.push(format!(
                    "{} quarantined record(s), refused by Telemetron run after run and not sent until their export rows change (listed above; --retry-quarantined sends them)",
                    spec.quarantined
                ));
            }
            if spec.rejected > 0 {
                parts.push(format!(
                    "{} rejected row(s), which stay left out until the export is fixed (the rows are listed with file:line above; --rejects FILE writes them all)",
                    spec.rejected
                ));
            }
            format!("finished with {}", parts.join(" and "))
        }
        _ => match spec.undoes {
            Some(run) => format!("finished: what run {run} changed is put back, as far as it could be (see above)"),
            None => "finished: Telemetron has everything the exports say".to_string(),
        },
    };
    // A run whose snapshot could not be written is recorded as failed, not merely stopped.
    let word = if ending.recorder.is_some() { "failed" } else { how.word() };
    let mut summary = serde_json::to_value(&outcome).expect("an outcome serializes");
    if let Some(map) = summary.as_object_mut() {
        map.remove("failures");
        map.insert("failed_operations".into(), failed.into());
        map.insert("rejected_rows".into(), spec.rejected.into());
        map.insert("calls_left".into(), left.into());
        if spec.quarantined > 0 {
            map.insert("quarantined".into(), spec.quarantined.into());
        }
    }
    let ran = Ran {
        run_id,
        outcome,
        planned: ending.planned,
        left,
        rejected: spec.rejected,
        quarantined: spec.quarantined,
        how,
        verdict,
        word,
    };
    // A run that made enough calls to learn the limit keeps what it found for the next one.
    if let (Some(rate), true) = (ran.outcome.settled_rate, ran.outcome.calls >= 50 && ending.recorder.is_none()) {
        store.set_auto_rate(rate)?;
    }
    record_summary(store, spec.state, &ran, &summary)?;
    Ok(ran)
}

/// Records a run's summary in its history. After a recorder failure, the store that failed may
/// fail again: a fresh connection gets one more try, and failing that the next run marks this
/// one interrupted.
fn record_summary(
    store: &mut Store,
    state: &std::path::Path,
    ran: &Ran,
    summary: &serde_json::Value,
) -> Result<(), Error> {
    match store.finish_run(ran.run_id, ran.word, summary) {
        Ok(()) => Ok(()),
        Err(e) if ran.word == "failed" => {
            if let Err(again) = Store::open(state).and_then(|mut s| s.finish_run(ran.run_id, ran.word, summary)) {
                tracing::warn!(
                    "the run could not be marked failed in the snapshot ({e}; {again}); the next run marks it interrupted"
                );
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}
