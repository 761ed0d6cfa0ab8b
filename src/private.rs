//! Files that hold customer data — the snapshot and its `-wal`/`-shm`/`-journal`/lock files,
//! saved plans, rejects files, reports — are created readable and writable by their owner
//! only: mode 0600, narrowed further by the umask. SQLite gives a database's `-wal`, `-shm` and
//! `-journal` files the database file's mode, so creating the snapshot 0600 covers them.
//!
//! A file made by someone else, or by an earlier version, keeps its mode; [`warn_if_open`]
//! names it and the `chmod` that fixes it.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// The mode of a file only its owner may read and write.
pub const MODE: u32 = 0o600;

/// Options that create a file with [`MODE`] (an existing file keeps its own).
pub fn options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, MODE);
    options
}

/// Creates `path`, which must not exist yet, with [`MODE`]. Exclusive: a link at `path`,
/// even one to nothing, makes it fail rather than be followed.
pub fn create_new(path: &Path) -> io::Result<File> {
    create_new_with(path, MODE)
}

/// [`create_new`] with another mode (narrowed by the umask).
pub fn create_new_with(path: &Path, mode: u32) -> io::Result<File> {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    options.write(true).create_new(true).open(path)
}

/// The permission bits of `path` when its group or others have any access to it.
pub fn open_to_others(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
        (mode & 0o077 != 0).then_some(mode)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// Warns, once a process for each file, when `path` exists and its group or others may read
/// or write it: `what` says what it holds, `fix` is the command that closes it.
pub fn warn_if_open(path: &Path, what: &str, fix: &str) -> bool {
    static WARNED: std::sync::Mutex<Vec<std::path::PathBuf>> = std::sync::Mutex::new(Vec::new());
    let Some(mode) = open_to_others(path) else { return false };
    let mut warned = WARNED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if !warned.iter().any(|p| p == path) {
        warned.push(path.to_owned());
        tracing::warn!(
            file = %path.display(),
            mode = format!("{mode:04o}"),
            "{} can be read by users other than its owner (mode {mode:04o}) and holds {what}; fix it with: {fix}",
            path.display()
        );
    }
    true
}

/// [`warn_if_open`] for a snapshot: the fix covers the files beside it that exist.
pub fn warn_if_snapshot_open(path: &Path) -> bool {
    if open_to_others(path).is_none() {
        return false;
    }
    let mut files = vec![path.display().to_string()];
    for suffix in ["-wal", "-shm", "-journal", ".lock"] {
        let beside = format!("{}{suffix}", path.display());
        if Path::new(&beside).exists() {
            files.push(beside);
        }
    }
    let quoted: Vec<String> = files.iter().map(|f| shell_quote(f)).collect();
    warn_if_open(path, "every customer's email, name, phone and address", &format!("chmod 600 {}", quoted.join(" ")))
}

/// `s` as one shell word.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+,:=@".contains(&b)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}
