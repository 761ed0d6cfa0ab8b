//! `snapshot migrate`: create the snapshot or bring its schema up to date. `snapshot check`:
//! look for damage (every page's checksum, then SQLite's integrity check), changing nothing.

use crate::cli::SnapshotCommand;
use crate::cli::exit::Ended;
use crate::cli::settings::Settings;
use crate::error::Error;
use crate::snapshot::{self, Lock, SCHEMA_VERSION, Scan, Store};

pub fn run(cmd: &SnapshotCommand, s: &Settings) -> Result<Ended, Error> {
    let path = &s.state;
    match cmd {
        SnapshotCommand::Migrate { .. } => {
            let _lock = Lock::acquire(path)?;
            Store::open(path)?;
            super::stdout_write(|out| writeln!(out, "{}: schema version {SCHEMA_VERSION}", path.display()))?;
            Ok(Ended::done())
        }
        SnapshotCommand::Check { .. } => {
            if !path.exists() {
                return Err(Error::snapshot(path, "does not exist; nothing to check"));
            }
            let checked = snapshot::check(path)?;
            let seals = match &checked.seals {
                Scan::Empty => "no pages yet".to_string(),
                Scan::Unsealed => {
                    "its pages carry no checksums (written before this version; the next writing run adds them)".into()
                }
                Scan::Intact { pages } => format!("{pages} pages, every checksum matches"),
                Scan::Damaged { page, pages } => format!("page {page} of {pages} does not match its checksum"),
            };
            super::stdout_write(|out| {
                writeln!(out, "{}", crate::text::inert(&path.display().to_string()))?;
                writeln!(out, "  checksums: {seals}")?;
                for line in &checked.integrity {
                    writeln!(out, "  integrity: {}", crate::text::inert(line))?;
                }
                Ok(())
            })?;
            if checked.ok() {
                return Ok(Ended::done());
            }
            let what = match checked.seals {
                Scan::Damaged { .. } => seals,
                _ => "SQLite's integrity check failed".into(),
            };
            Err(Error::Damaged { path: path.clone(), what })
        }
    }
}
