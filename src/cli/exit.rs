//! How a command ended, and the exit code for it: commands return an [`Ended`] (or an
//! [`Error`]), and [`code`] is the one place that turns either into the documented code.

use std::collections::BTreeMap;

use crate::error::Error;

/// Success; with `--detailed-exitcode`, also "no changes".
pub const SUCCESS: i32 = 0;
/// An error stopped the command (bad config, unreadable file, missing column, `--strict` bad row).
pub const ERROR: i32 = 1;
/// `plan --detailed-exitcode`, `verify`: there are changes to apply, or drift.
pub const CHANGES: i32 = 2;
/// Finished, but some rows were rejected, some operations failed, or `--max-duration` was
/// reached: the next run continues.
pub const PARTIAL: i32 = 3;
/// Refused by the safety guard.
pub const GUARD: i32 = 4;
/// The command line was wrong (sysexits' EX_USAGE).
pub const USAGE: i32 = 64;
/// The snapshot is in use by another run; try again later (sysexits' EX_TEMPFAIL).
pub const IN_USE: i32 = 75;

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
    /// `verify`: customers whose read-back differed from the snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drifted: Option<u64>,
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

/// The exit code of a command's result: the one mapping from outcomes to codes.
pub fn code(result: &Result<Ended, Error>) -> i32 {
    match result {
        Ok(ended) => match ended.how {
            How::Done => SUCCESS,
            How::Changes => CHANGES,
            How::Partial | How::OutOfTime(_) => PARTIAL,
            How::Refused(_) => GUARD,
            How::Stopped(_) => ERROR,
        },
        Err(Error::Usage(_)) => USAGE,
        Err(Error::InUse { .. }) => IN_USE,
        Err(_) => ERROR,
    }
}

/// The final error line of a result, if it has one.
pub fn final_error(result: &Result<Ended, Error>) -> Option<String> {
    match result {
        Ok(Ended { how: How::Refused(why) | How::Stopped(why), .. }) => Some(why.clone()),
        Ok(_) => None,
        Err(e) => Some(e.to_string()),
    }
}

/// The word for a result in `run_finished`, the metrics file and `history`.
pub fn outcome_word(result: &Result<Ended, Error>) -> &'static str {
    match result {
        Ok(ended) => ended.how.word(),
        Err(Error::InUse { .. }) => "in_use",
        Err(_) => "failed",
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
