//! Files written whole (saved plans, rejects files, reports, the metrics file): written beside
//! their final name and renamed into place, so that a reader — a later `apply --plan`, a
//! metrics scraper — never sees half of one, and a failed write leaves the old file as it was.
//! The ones that hold customer data are [`Access::Private`]: the new file is its owner's alone,
//! whatever mode the one it replaces had.

use std::io::{self, BufWriter, Write};
use std::path::Path;

/// Who may read a file the tool writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Holds customer data: mode 0600 (see [`crate::private`]).
    Private,
    /// Holds none (the metrics file, which a collector running as another user reads): the
    /// umask decides.
    Shared,
}

/// The most a shared file's mode gives: its owner writes, everyone reads (the umask may narrow it).
pub const SHARED_MODE: u32 = 0o644;

/// 64 bits no other process can predict: std's hasher keys come from the OS's random source.
fn unguessable() -> u64 {
    use std::hash::BuildHasher;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    std::collections::hash_map::RandomState::new().hash_one(nanos)
}

/// A name beside `path` that no one can guess, for a file made to be renamed onto it.
pub fn temp_beside(path: &Path) -> std::path::PathBuf {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "file".into());
    dir.join(format!(".{name}.{}.{:016x}.tmp", std::process::id(), unguessable()))
}

/// Writes `path` through `write`, all or nothing.
pub fn replace(path: &Path, access: Access, write: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> io::Result<()> {
    // A name no one can guess, created only if nothing is there (a link planted under it is
    // not followed: the create fails).
    let tmp = temp_beside(path);
    let written = (|| {
        let file = match access {
            Access::Private => crate::private::create_new(&tmp)?,
            Access::Shared => crate::private::create_new_with(&tmp, SHARED_MODE)?,
        };
        let mut out = BufWriter::with_capacity(1 << 20, file);
        write(&mut out)?;
        let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
        file.sync_all()
    })();
    written.and_then(|()| std::fs::rename(&tmp, path)).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
