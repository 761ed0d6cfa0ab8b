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
        let mut file = match crate::private::options().read(true).write(true).create_new(true).open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => open_existing(&path)?,
            Err(source) => return Err(Error::Io { what: "create the lock file", path, source }),
        };
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
        // Written over the start, never truncated: always the same width, so that a longer
        // holder line of an earlier run leaves nothing behind.
        let holder = format!("process {} (since {})", std::process::id(), crate::time::now_rfc3339());
        let _ = file.rewind();
        let _ = writeln!(file, "{holder:<HOLDER_WIDTH$}");
        let _ = file.flush();
        Ok(Ok(Lock { _file: file, path }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The width of the holder line a lock file holds.
const HOLDER_WIDTH: usize = 72;

/// Opens a lock file that is there already, if it is one: a regular file of one name, not a
/// link (which is not followed). Anything else was planted, and is refused by name.
fn open_existing(path: &Path) -> Result<std::fs::File, Error> {
    let refuse = |what: &str| {
        Error::Setup(format!(
            "the lock file {} is {what}, not a file this tool made; nothing was changed. Remove it (the tool makes its own), and check who could write to that folder",
            path.display()
        ))
    };
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NOFOLLOW | libc::O_NONBLOCK);
    let file = match options.open(path) {
        Ok(file) => file,
        #[cfg(unix)]
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(refuse("a symbolic link")),
        Err(source) => return Err(Error::Io { what: "open the lock file", path: path.to_owned(), source }),
    };
    let meta =
        file.metadata().map_err(|source| Error::Io { what: "read the lock file", path: path.to_owned(), source })?;
    if !meta.is_file() {
        return Err(refuse("not a regular file"));
    }
    #[cfg(unix)]
    if std::os::unix::fs::MetadataExt::nlink(&meta) > 1 {
        return Err(refuse("a file with other names (hard links)"));
    }
    Ok(file)
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
