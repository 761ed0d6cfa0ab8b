//! A damaged snapshot is refused before anything is written into it: every page is sealed
//! ([`super::pages`]); a writing command checks every seal of the file before it opens it
//! ([`before_writing`]), a reading one has each page checked as SQLite reads it. A run that
//! meets damage records nothing of itself (`sync::end_run`). `snapshot check` ([`check`])
//! adds SQLite's full `integrity_check`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::pages::{self, Scan};
use crate::error::Error;

/// The files whose pages this process checked and found intact.
static CHECKED: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);

fn key(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned())
}

/// Before a writing command opens the snapshot: checks every page's seal, the first time in
/// this process (a writer trusts what it wrote itself after that).
pub(super) fn before_writing(path: &Path) -> Result<(), Error> {
    let key = key(path);
    if CHECKED.lock().is_ok_and(|c| c.as_ref().is_some_and(|c| c.contains(&key))) {
        return Ok(());
    }
    match pages::scan(path) {
        Ok(Scan::Damaged { page, pages }) => {
            let what = format!("page {page} of {pages} does not match its checksum");
            return Err(Error::Damaged { path: path.to_owned(), what });
        }
        Ok(_) => {}
        // SQLite says what is wrong when it opens it.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::snapshot(path, format!("cannot read: {e}"))),
    }
    if let Ok(mut checked) = CHECKED.lock() {
        checked.get_or_insert_with(HashSet::new).insert(key);
    }
    Ok(())
}

/// What `snapshot check` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// What the seals say.
    pub seals: Scan,
    /// SQLite's `integrity_check`, line by line: `["ok"]` when nothing is wrong.
    pub integrity: Vec<String>,
}

impl Checked {
    pub fn ok(&self) -> bool {
        matches!(self.seals, Scan::Intact { .. } | Scan::Unsealed | Scan::Empty) && self.integrity == ["ok"]
    }
}

/// Every seal, then SQLite's full `integrity_check` (read-only; minutes at 10 M devices).
pub fn check(path: &Path) -> Result<Checked, Error> {
    let seals = pages::scan(path).map_err(|e| Error::snapshot(path, format!("cannot read: {e}")))?;
    // Through the platform's VFS, without the seals' checks: the integrity check reports every
    // problem, not only the first page it meets.
    let conn = rusqlite::Connection::open_with_flags_and_vfs(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY, c"unix")
        .map_err(|e| Error::snapshot(path, format!("cannot open: {e}")))?;
    let integrity = conn
        .prepare("PRAGMA integrity_check")
        .and_then(|mut s| s.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>());
    let integrity = match integrity {
        Ok(lines) => lines,
        Err(e) => vec![crate::error::damage(&e).unwrap_or_else(|| e.to_string())],
    };
    Ok(Checked { seals, integrity })
}
