//! The errors that stop a command. `cli::exit::code` maps each to its exit code.
//!
//! Bad rows are not errors: they are data (`load::Reject`) and only become one with `--strict`.
//! Every message says what was wrong, where, and what to do.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line or settings are wrong: exit 64.
    #[error("{0}")]
    Usage(String),

    /// What the command names is not what the snapshot or the plan holds: a run `history` does
    /// not list, a customer the snapshot lacks, a plan made for another snapshot. Exit 64, as a
    /// usage error: the command, not the data, is what to change.
    #[error("{0}")]
    NotHeld(String),

    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("config file {path}: {message}")]
    Config { path: PathBuf, message: String },

    #[error(
        "{path}: missing column {wanted}; the header has {found} \
         Rename the column in the export or map it in the config file ([{section}.columns] {key} = \"...\")"
    )]
    MissingColumn {
        path: PathBuf,
        wanted: String,
        /// The headers found, then the closest one or the delimiter the header seems to use.
        found: String,
        section: &'static str,
        key: &'static str,
    },

    #[error("{path}: {message}")]
    BadFile { path: PathBuf, message: String },

    #[error("snapshot {path}: {message}")]
    Snapshot { path: PathBuf, message: String },

    /// The snapshot is damaged; nothing is written into it.
    #[error(
        "snapshot {path} is damaged ({what}); nothing was written into it. Restore it from a backup; or move it aside, record the current exports in a fresh one with `telemetron-sync baseline`, then read back what Telemetron really holds with `telemetron-sync verify --all --heal`. `telemetron-sync snapshot check` examines it"
    )]
    Damaged { path: PathBuf, what: String },

    /// Another run holds the snapshot's lock: exit 75, so a wrapper can try again later.
    #[error(
        "snapshot {path} is in use by {holder}; wait for it to finish (or stop it) and run again. Two runs on one snapshot would each send the same changes"
    )]
    InUse { path: PathBuf, holder: String },

    /// Something the command needs is missing or unusable (no API key, say): exit 1.
    #[error("{0}")]
    Setup(String),

    /// The check before a writing run: Telemetron refused the API key (401). Exit 1; the run's
    /// outcome is "refused_key".
    #[error("{0}")]
    KeyRefused(String),

    /// The check before a writing run: nothing answered at the base URL, or what answered is
    /// not the API. Exit 1; the run's outcome is "unreachable".
    #[error("{0}")]
    Unreachable(String),

    /// Telemetron refused or did not answer a call a command needed (its message says which).
    #[error("{0}")]
    Api(String),

    #[error(
        "{count} bad row(s) and --strict is set; nothing was done. Fix the rows listed above or drop --strict to leave them out"
    )]
    Strict { count: usize },
}

impl Error {
    /// A snapshot error; one that says the file is damaged (a page's checksum or SQLite's own
    /// structure does not match) becomes [`Error::Damaged`].
    pub(crate) fn snapshot(path: &std::path::Path, e: impl std::fmt::Display + 'static) -> Error {
        let any: &dyn std::any::Any = &e;
        if let Some(e) = any.downcast_ref::<rusqlite::Error>()
            && let Some(what) = damage(e)
        {
            return Error::Damaged { path: path.to_owned(), what };
        }
        Error::Snapshot { path: path.to_owned(), message: e.to_string() }
    }
}

/// What an error of SQLite's says of damage, if it says the file is damaged: a page that does
/// not match its checksum (see `snapshot::pages`), or a structure SQLite cannot read.
pub fn damage(e: &rusqlite::Error) -> Option<String> {
    let rusqlite::Error::SqliteFailure(f, _) = e else { return None };
    if f.extended_code == rusqlite::ffi::SQLITE_IOERR_DATA {
        Some("a page does not match its checksum".into())
    } else if f.code == rusqlite::ErrorCode::DatabaseCorrupt {
        Some(format!("SQLite: {e}"))
    } else {
        None
    }
}
