//! One writer per snapshot file: an OS lock beside its canonical path.

use std::path::{Path, PathBuf};

use crate::error::Error;

/// An exclusive hold on a snapshot, for the commands that call Telemetron and write what it
/// confirmed. An OS file lock on `STATE.lock`: released when the holder exits, however it exits
/// (`kill -9` included), so there is never a stale lock to clear by hand.
#[derive(Debug)]
pub struct Lock {
    _file: std::fs::File,
    path: PathBuf,
}

impl Lock {
    /// Takes the lock of the snapshot at `state`: the lock file sits beside the real file, so
    /// every path to one snapshot (a symlink, `./x` and `x`, `..` through another folder)
    /// takes the same lock.
    pub fn acquire(state: &Path) -> Result<Lock, Error> {
        match Self::try_acquire(state)? {
            Ok(lock) => Ok(lock),
            Err(holder) => Err(Error::InUse { path: state.to_owned(), holder }),
        }
    }

    /// Like [`acquire`](Self::acquire), but a lock another process holds is `Ok(Err(who))`.
    pub fn try_acquire(state: &Path) -> Result<Result<Lock, String>, Error> {
        use std::io::{Read, Seek, Write};
        let path = PathBuf::from(format!("{}.lock", canonical(state).display()));
        let mut file = crate::private::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|source| Error::Io { what: "open the lock file", path: path.clone(), source })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let who = if holder.is_empty() { "another process".to_string() } else { holder.to_string() };
                return Ok(Err(who));
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(Error::Io { what: "lock", path, source });
            }
        }
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = writeln!(file, "process {} (since {})", std::process::id(), crate::time::now_rfc3339());
        let _ = file.flush();
        Ok(Ok(Lock { _file: file, path }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The file a snapshot path names, symlinks and `..` resolved; for a file not created yet, its
/// folder resolved and its name kept (a dangling symlink resolves to its target's name).
pub(super) fn canonical(state: &Path) -> PathBuf {
    if let Ok(p) = std::fs::canonicalize(state) {
        return p;
    }
    let target = std::fs::read_link(state).map_or_else(
        |_| state.to_owned(),
        |t| if t.is_absolute() { t } else { state.parent().unwrap_or(Path::new("")).join(t) },
    );
    let (dir, name) = (target.parent().filter(|d| !d.as_os_str().is_empty()), target.file_name());
    match (std::fs::canonicalize(dir.unwrap_or(Path::new("."))), name) {
        (Ok(dir), Some(name)) => dir.join(name),
        _ => target,
    }
}
