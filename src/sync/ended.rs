//! How a run ended: what every command returns when it did not fail outright, and its
//! figures. The exit code for it is chosen in one place above, `cli::exit::code`.

use std::collections::BTreeMap;

/// How a command that ran to its end went.
#[derive(Debug, Clone, PartialEq)]
pub enum How {
    /// Everything it set out to do was done.
    Done,
    /// `plan --detailed-exitcode` found changes; `verify` found drift.
    Changes,
    /// Done, except for rejected rows or failed operations (both are in the figures).
    Partial,
    /// `--max-duration` was reached at a checkpoint; the message says what is left.
    OutOfTime(String),
    /// The safety guard refused the plan; the message says why. Nothing was sent.
    Refused(String),
    /// Stopped before its end (a signal, a refused key, an unwritable snapshot); the message
    /// says why and what happens next.
    Stopped(String),
}

/// A run's figures, for the `run_finished` event and the metrics file.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Figures {
    /// The run's number in the snapshot's `runs` table, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<i64>,
    /// Operations by kind: done and failed.
    pub operations: BTreeMap<String, crate::execute::Counts>,
    pub calls: u64,
    pub retries: u64,
    pub failed_operations: u64,
    pub rejected_rows: u64,
    pub warnings: u64,
    /// Calls planned and not sent (a stop, the time window).
    pub calls_left: u64,
    /// Operations Telemetron refused record by record (among the failed ones).
    pub refused_operations: u64,
    /// Records the quarantine held back (refused run after run, or waiting for one that was).
    pub quarantined: u64,
    /// `verify`: customers whose read-back differed from the snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drifted: Option<u64>,
    /// `apply`: records Telemetron refused in their latest attempt and has not confirmed since,
    /// in this run or an earlier one (the snapshot's refusals).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records_failing: Option<u64>,
}

/// What a command returns when it did not fail outright.
#[derive(Debug, Clone)]
pub struct Ended {
    pub how: How,
    pub figures: Figures,
}

impl Ended {
    pub fn done() -> Ended {
        Ended { how: How::Done, figures: Figures::default() }
    }
    pub fn with(how: How, figures: Figures) -> Ended {
        Ended { how, figures }
    }
    /// `Done`, or `Partial` when something was rejected or failed.
    pub fn counted(figures: Figures) -> Ended {
        let how = if figures.failed_operations > 0 || figures.rejected_rows > 0 { How::Partial } else { How::Done };
        Ended { how, figures }
    }
}

impl How {
    /// The word for this ending, as `history` and the metrics give it.
    pub fn word(&self) -> &'static str {
        match self {
            How::Done => "ok",
            How::Changes => "changes",
            How::Partial => "partial",
            How::OutOfTime(_) => "out_of_time",
            How::Refused(_) => "refused",
            How::Stopped(_) => "stopped",
        }
    }
}
