//! `snapshot migrate`: create the snapshot or bring its schema up to date.

use crate::cli::SnapshotCommand;
use crate::error::Error;
use crate::exit;
use crate::settings::state_path;
use crate::snapshot::{Lock, SCHEMA_VERSION, Store};

pub fn run(cmd: &SnapshotCommand) -> Result<i32, Error> {
    match cmd {
        SnapshotCommand::Migrate { state } => {
            let path = state_path(state);
            let _lock = Lock::acquire(&path)?;
            Store::open(&path)?;
            super::stdout_write(|out| writeln!(out, "{}: schema version {SCHEMA_VERSION}", path.display()))?;
            Ok(exit::SUCCESS)
        }
    }
}
