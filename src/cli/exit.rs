//! How a command ended, and the exit code for it: commands return an [`Ended`] (or an
//! [`Error`]), and [`code`] is the one place that turns either into the documented code.

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

pub use crate::sync::{Ended, Figures, How};

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
        Err(Error::Usage(_) | Error::NotHeld(_)) => USAGE,
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
        Err(Error::KeyRefused(_)) => "refused_key",
        Err(Error::Unreachable(_)) => "unreachable",
        Err(_) => "failed",
    }
}
