//! Exit codes, as documented in the README. Chosen in one place: `main` maps results to these.

/// Success; with `--detailed-exitcode`, also "no changes".
pub const SUCCESS: i32 = 0;
/// An error stopped the command (bad config, unreadable file, missing column, `--strict` bad row).
pub const ERROR: i32 = 1;
/// `plan --detailed-exitcode`: there are changes to apply.
pub const CHANGES: i32 = 2;
/// Finished, but some rows were rejected or some operations failed.
pub const PARTIAL: i32 = 3;
/// Refused by the safety guard.
pub const GUARD: i32 = 4;
/// The command line was wrong (sysexits' EX_USAGE).
pub const USAGE: i32 = 64;
/// The snapshot is in use by another run; try again later (sysexits' EX_TEMPFAIL).
pub const IN_USE: i32 = 75;
