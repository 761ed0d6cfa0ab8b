//! `snapshot migrate`: create the snapshot or bring its schema up to date.

use crate::cli::SnapshotCommand;
use crate::cli::exit::Ended;
use crate::cli::settings::Settings;
use crate::error::Error;
use crate::snapshot::{Lock, SCHEMA_VERSION, Store};

pub fn run(cmd: &SnapshotCommand, s: &Settings) -> Result<Ended, Error> {
    match cmd {
        SnapshotCommand::Migrate { .. } => {
            let path = &s.state;
            let _lock = Lock::acquire(path)?;
            Store::open(path)?;
            super::stdout_write(|out| writeln!(out, "{}: schema version {SCHEMA_VERSION}", path.display()))?;
            Ok(Ended::done())
        }
    }
}
