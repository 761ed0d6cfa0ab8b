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

/// Writes `path` through `write`, all or nothing.
pub fn replace(path: &Path, access: Access, write: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "file".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let file = match access {
            Access::Private => {
                // A leftover of a killed process with the same id would keep its mode.
                let _ = std::fs::remove_file(&tmp);
                crate::private::create_new(&tmp)?
            }
            Access::Shared => std::fs::File::create(&tmp)?,
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
