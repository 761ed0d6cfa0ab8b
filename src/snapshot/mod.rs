//! The snapshot: a SQLite file holding what Telemetron has been told — customers (with their
//! Telemetron ids when known), devices, assignments — and tables of runs, undo plans and
//! intents.
//!
//! The only module that knows SQL. Reading gives a plain [`SnapshotData`](crate::model::SnapshotData)
//! value that the loader and the differ use without touching the database. `plan` reads through
//! [`read`], which opens the file read-only and treats a missing file as an empty snapshot;
//! commands that write open a [`Store`], which creates the file and runs the migrations. Every
//! write of what Telemetron holds bumps a generation counter, so a saved plan can tell whether
//! the snapshot moved under it. [`Writer::record`] maps each of Telemetron's confirmations to its
//! write.

/// How many runs' undo plans and sync log are kept unless configured otherwise (`--keep-runs`).
pub const KEEP_RUNS: u32 = 30;

mod about;
mod integrity;
mod lock;
mod pages;
mod read;
mod runs;
mod schema;
mod store;
mod writer;

pub use about::{About, LogRow, RunRef, about};
pub use integrity::{Checked, check};
pub use lock::Lock;
pub use pages::{Scan, register as check_pages, scan};
pub use read::{Reading, Share, open, read, refusals, version_and_totals};
pub use runs::{RunRecord, run, run_log, runs, settled_rate, undo_plan, undone_by};
pub use schema::{SCHEMA_VERSION, new_snapshot_id};
pub use store::{LogEntry, Store, UnsettledIntent};
pub use writer::Writer;

#[cfg(test)]
mod tests;
