//! Page checksums. SQLite keeps none, so a damaged page can be read as valid rows (4 KiB of
//! zeros in a devices page made `plan` propose 44 spurious updates). Every page of a snapshot
//! carries, in its last 8 bytes (the page's reserved space, `RESERVE`), a CRC-32 of its number
//! and content and a 4-byte mark. A VFS shim under SQLite, registered as the default VFS by
//! [`register`], seals each page of a main database file as SQLite writes it and checks it as
//! SQLite reads it: a mismatch is `SQLITE_IOERR_DATA`, which the snapshot reports as damage.
//!
//! Only main database files are sealed (the WAL has checksums of its own; the checkpoint
//! writes its pages into the main file, sealed there), and only files whose header reserves
//! exactly `RESERVE` bytes per page: a file made by another program reads and writes as usual.
//! [`scan`] checks every page of a file without SQLite, before a writing command opens it, so
//! that nothing is written into a damaged file.

use std::ffi::{c_char, c_int, c_void};
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Mutex, Once};

use rusqlite::ffi;

/// Bytes reserved at the end of each page for its seal.
pub(super) const RESERVE: u8 = 8;
/// The second half of a seal: says the seal is ours (and catches a zeroed tail).
const MARK: [u8; 4] = *b"tsc1";
/// The name the shim is registered under.
const NAME: &[u8] = b"telemetron-sealed\0";

/// The VFS the shim sends everything to (the platform's default).
static UNDER: AtomicPtr<ffi::sqlite3_vfs> = AtomicPtr::new(std::ptr::null_mut());

/// Files to seal from their first page (see [`seal_from_the_start`]), by full path.
static TO_SEAL: Mutex<Vec<std::ffi::CString>> = Mutex::new(Vec::new());

/// Has every page of the file at `path` sealed from the first one written, whatever order
/// SQLite writes them in: a new file has no header yet to say so, and a large transaction
/// spills pages before it writes page 1. For the files a writer creates; the caller makes sure
/// the file exists.
pub(super) fn seal_from_the_start(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(full) = std::fs::canonicalize(path) else { return };
    let Ok(name) = std::ffi::CString::new(full.as_os_str().as_bytes()) else { return };
    let mut to_seal = TO_SEAL.lock().unwrap_or_else(|p| p.into_inner());
    if !to_seal.contains(&name) {
        to_seal.push(name);
    }
}

/// The seal of page `pgno` (1-based) whose bytes are `page`, written into its last 8 bytes.
fn seal_of(page: &[u8], pgno: u32) -> [u8; 8] {
    let body = &page[..page.len() - RESERVE as usize];
    let mut h = crc32fast::Hasher::new();
    h.update(&pgno.to_le_bytes());
    h.update(body);
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&h.finalize().to_le_bytes());
    out[4..].copy_from_slice(&MARK);
    out
}

/// Whether page `pgno` carries its seal.
pub(super) fn intact(page: &[u8], pgno: u32) -> bool {
    page.len() > RESERVE as usize && page[page.len() - RESERVE as usize..] == seal_of(page, pgno)
}

/// A read or write of `amount` bytes at `offset` is a whole page: its 1-based number.
fn page_number(amount: c_int, offset: i64) -> Option<u32> {
    let amount = i64::from(amount);
    let whole = (512..=65536).contains(&amount) && amount & (amount - 1) == 0 && offset % amount == 0;
    whole.then(|| u32::try_from(offset / amount + 1).ok()).flatten()
}

/// What a database header (the first 100 bytes of page 1) says of seals: `Some(true)` when it
/// reserves our 8 bytes per page, `None` when the bytes are not a header.
fn header_sealed(bytes: &[u8]) -> Option<bool> {
    (bytes.len() >= 100 && bytes.starts_with(b"SQLite format 3\0")).then(|| bytes[20] == RESERVE)
}

/// A file the shim opened: the platform's file follows it in the same allocation.
#[repr(C)]
struct Sealed {
    base: ffi::sqlite3_file,
    /// Whether the file's pages are sealed: its header reserves room for seals, or a writer
    /// made it to be sealed. Once set, never cleared (the reserve never shrinks).
    sealed: bool,
}

/// The platform's file behind `f`.
unsafe fn under(f: *mut ffi::sqlite3_file) -> *mut ffi::sqlite3_file {
    // SAFETY: `open` gave every `Sealed` room for the platform's file right after it.
    unsafe { (f as *mut Sealed).add(1) as *mut ffi::sqlite3_file }
}

/// The platform's method `$m` of file `$f`, called with the rest of the arguments; `$none`
/// when the platform has no such method.
macro_rules! forward {
    ($f:expr, $m:ident, $none:expr $(, $arg:expr)*) => {{
        let real = unsafe { under($f) };
        match unsafe { (*(*real).pMethods).$m } {
            Some(m) => unsafe { m(real $(, $arg)*) },
            None => $none,
        }
    }};
}

unsafe extern "C" fn close(f: *mut ffi::sqlite3_file) -> c_int {
    forward!(f, xClose, ffi::SQLITE_OK)
}

unsafe extern "C" fn read(f: *mut ffi::sqlite3_file, buf: *mut c_void, amount: c_int, offset: i64) -> c_int {
    let rc = forward!(f, xRead, ffi::SQLITE_IOERR_READ, buf, amount, offset);
    if rc != ffi::SQLITE_OK || amount <= 0 {
        return rc;
    }
    // SAFETY: SQLite gave `amount` bytes at `buf`, which the read filled.
    let bytes = unsafe { std::slice::from_raw_parts(buf as *const u8, amount as usize) };
    let file = f as *mut Sealed;
    if offset == 0 && header_sealed(bytes) == Some(true) {
        unsafe { (*file).sealed = true };
    }
    if unsafe { (*file).sealed }
        && let Some(pgno) = page_number(amount, offset)
        && !intact(bytes, pgno)
    {
        return ffi::SQLITE_IOERR_DATA;
    }
    rc
}

thread_local! {
    /// A page being sealed: SQLite's own buffer is not ours to change.
    static PAGE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

unsafe extern "C" fn write(f: *mut ffi::sqlite3_file, buf: *const c_void, amount: c_int, offset: i64) -> c_int {
    let file = f as *mut Sealed;
    if amount > 0 {
        // SAFETY: SQLite gives `amount` bytes at `buf` to write.
        let bytes = unsafe { std::slice::from_raw_parts(buf as *const u8, amount as usize) };
        if offset == 0 && header_sealed(bytes) == Some(true) {
            unsafe { (*file).sealed = true };
        }
        if unsafe { (*file).sealed }
            && let Some(pgno) = page_number(amount, offset)
        {
            return PAGE.with_borrow_mut(|page| {
                page.clear();
                page.extend_from_slice(bytes);
                let seal = seal_of(page, pgno);
                let n = page.len();
                page[n - RESERVE as usize..].copy_from_slice(&seal);
                forward!(f, xWrite, ffi::SQLITE_IOERR_WRITE, page.as_ptr() as *const c_void, amount, offset)
            });
        }
    }
    forward!(f, xWrite, ffi::SQLITE_IOERR_WRITE, buf, amount, offset)
}

unsafe extern "C" fn truncate(f: *mut ffi::sqlite3_file, size: i64) -> c_int {
    forward!(f, xTruncate, ffi::SQLITE_IOERR_TRUNCATE, size)
}
unsafe extern "C" fn sync(f: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    forward!(f, xSync, ffi::SQLITE_IOERR_FSYNC, flags)
}
unsafe extern "C" fn file_size(f: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    forward!(f, xFileSize, ffi::SQLITE_IOERR_FSTAT, size)
}
unsafe extern "C" fn lock(f: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    forward!(f, xLock, ffi::SQLITE_IOERR_LOCK, level)
}
unsafe extern "C" fn unlock(f: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    forward!(f, xUnlock, ffi::SQLITE_IOERR_UNLOCK, level)
}
unsafe extern "C" fn check_reserved_lock(f: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    forward!(f, xCheckReservedLock, ffi::SQLITE_IOERR_CHECKRESERVEDLOCK, out)
}
unsafe extern "C" fn file_control(f: *mut ffi::sqlite3_file, op: c_int, arg: *mut c_void) -> c_int {
    forward!(f, xFileControl, ffi::SQLITE_NOTFOUND, op, arg)
}
unsafe extern "C" fn sector_size(f: *mut ffi::sqlite3_file) -> c_int {
    forward!(f, xSectorSize, 4096)
}
unsafe extern "C" fn device_characteristics(f: *mut ffi::sqlite3_file) -> c_int {
    // A read of part of a page could not be checked: SQLite reads whole pages.
    forward!(f, xDeviceCharacteristics, 0) & !ffi::SQLITE_IOCAP_SUBPAGE_READ
}
unsafe extern "C" fn shm_map(
    f: *mut ffi::sqlite3_file,
    pg: c_int,
    size: c_int,
    extend: c_int,
    pp: *mut *mut c_void,
) -> c_int {
    forward!(f, xShmMap, ffi::SQLITE_IOERR_SHMMAP, pg, size, extend, pp)
}
unsafe extern "C" fn shm_lock(f: *mut ffi::sqlite3_file, offset: c_int, n: c_int, flags: c_int) -> c_int {
    forward!(f, xShmLock, ffi::SQLITE_IOERR_SHMLOCK, offset, n, flags)
}
unsafe extern "C" fn shm_barrier(f: *mut ffi::sqlite3_file) {
    forward!(f, xShmBarrier, ())
}
unsafe extern "C" fn shm_unmap(f: *mut ffi::sqlite3_file, delete: c_int) -> c_int {
    forward!(f, xShmUnmap, ffi::SQLITE_OK, delete)
}
unsafe extern "C" fn fetch(_: *mut ffi::sqlite3_file, _: i64, _: c_int, pp: *mut *mut c_void) -> c_int {
    // No memory-mapped pages: each read goes through `read` and its check.
    unsafe { *pp = std::ptr::null_mut() };
    ffi::SQLITE_OK
}
unsafe extern "C" fn unfetch(_: *mut ffi::sqlite3_file, _: i64, _: *mut c_void) -> c_int {
    ffi::SQLITE_OK
}

static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: Some(shm_map),
    xShmLock: Some(shm_lock),
    xShmBarrier: Some(shm_barrier),
    xShmUnmap: Some(shm_unmap),
    xFetch: Some(fetch),
    xUnfetch: Some(unfetch),
};

unsafe extern "C" fn open(
    _: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    f: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let vfs = UNDER.load(Ordering::Acquire);
    // SAFETY: `register` stored the platform's VFS, which lives as long as the process.
    let Some(open_under) = (unsafe { (*vfs).xOpen }) else { return ffi::SQLITE_CANTOPEN };
    if flags & ffi::SQLITE_OPEN_MAIN_DB == 0 {
        return unsafe { open_under(vfs, name, f, flags, out_flags) };
    }
    // SAFETY: SQLite allocated `szOsFile` bytes at `f`: a `Sealed`, then the platform's file.
    unsafe {
        std::ptr::write(
            f as *mut Sealed,
            Sealed { base: ffi::sqlite3_file { pMethods: std::ptr::null() }, sealed: false },
        );
        let rc = open_under(vfs, name, under(f), flags, out_flags);
        if rc == ffi::SQLITE_OK {
            (*f).pMethods = &METHODS;
            // Sealed when its header says so (read here: a page SQLite reads or writes before
            // page 1 is checked or sealed too), or when a writer made it to be sealed.
            let mut header = [0u8; 100];
            let real = under(f);
            let read = (*(*real).pMethods).xRead.map(|r| r(real, header.as_mut_ptr() as *mut c_void, 100, 0));
            let by_name = !name.is_null() && {
                let name = std::ffi::CStr::from_ptr(name);
                TO_SEAL.lock().is_ok_and(|s| s.iter().any(|n| n.as_c_str() == name))
            };
            (*(f as *mut Sealed)).sealed =
                (read == Some(ffi::SQLITE_OK) && header_sealed(&header) == Some(true)) || by_name;
        }
        rc
    }
}

/// Registers the shim as SQLite's default VFS, once per process: every connection opened
/// after it seals and checks the pages of files that reserve room for seals.
pub fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: the VFS calls follow SQLite's documented use; the struct is leaked, so it
        // lives as long as SQLite may use it.
        unsafe {
            let platform = ffi::sqlite3_vfs_find(std::ptr::null());
            if platform.is_null() {
                tracing::warn!("SQLite has no default VFS; snapshot pages are not checked");
                return;
            }
            UNDER.store(platform, Ordering::Release);
            let mut ours: ffi::sqlite3_vfs = std::ptr::read(platform);
            ours.szOsFile = (*platform).szOsFile + std::mem::size_of::<Sealed>() as c_int;
            ours.pNext = std::ptr::null_mut();
            ours.zName = NAME.as_ptr() as *const c_char;
            ours.xOpen = Some(open);
            let ours = Box::leak(Box::new(ours));
            let rc = ffi::sqlite3_vfs_register(ours, 1);
            if rc != ffi::SQLITE_OK {
                tracing::warn!(rc, "the page-checking VFS could not be registered; snapshot pages are not checked");
            }
        }
    });
}

/// Asks SQLite to reserve room for seals in `conn`'s main file: applied at once to a file with
/// no pages yet, by the next `VACUUM` to one that has.
pub(super) fn reserve(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    reserve_bytes(conn, c_int::from(RESERVE)).map(drop)
}

/// Whether `conn`'s main file reserves room for seals (asked before any [`reserve`] on it).
pub(super) fn reserved(conn: &rusqlite::Connection) -> rusqlite::Result<bool> {
    reserve_bytes(conn, -1).map(|n| n == c_int::from(RESERVE))
}

/// `SQLITE_FCNTL_RESERVE_BYTES`: asks for `n` bytes reserved per page (a negative `n` asks
/// nothing) and answers how many are reserved or asked for.
fn reserve_bytes(conn: &rusqlite::Connection, mut n: c_int) -> rusqlite::Result<c_int> {
    // SAFETY: a file control on the connection's own handle, with the int it documents.
    let rc = unsafe {
        ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_RESERVE_BYTES,
            &mut n as *mut c_int as *mut c_void,
        )
    };
    if rc == ffi::SQLITE_OK { Ok(n) } else { Err(rusqlite::Error::SqliteFailure(ffi::Error::new(rc), None)) }
}

/// What [`scan`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scan {
    /// No pages yet, or not a SQLite file (SQLite says which when it opens it).
    Empty,
    /// Pages without room for seals: a snapshot from before seals, or another program's file.
    Unsealed,
    /// Every page carries its seal.
    Intact { pages: u64 },
    /// The first page whose seal does not match, and how many pages there are.
    Damaged { page: u64, pages: u64 },
}

/// Checks the seal of every page of the main file at `path`, reading it from start to end
/// without SQLite (a WAL beside it holds newer copies of some pages, with their own checks).
pub fn scan(path: &Path) -> std::io::Result<Scan> {
    let mut file = std::fs::File::open(path)?;
    let mut header = [0u8; 100];
    let mut got = 0;
    while got < header.len() {
        match file.read(&mut header[got..])? {
            0 => break,
            n => got += n,
        }
    }
    match header_sealed(&header[..got]) {
        None => return Ok(Scan::Empty),
        Some(false) => return Ok(Scan::Unsealed),
        Some(true) => {}
    }
    let size = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65536,
        n => usize::from(n),
    };
    if !(512..=65536).contains(&size) || !size.is_power_of_two() {
        return Ok(Scan::Damaged { page: 1, pages: 0 });
    }
    let len = file.metadata()?.len();
    let pages = len / size as u64;
    let mut file = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
    let mut page = vec![0u8; size];
    for pgno in 1..=pages {
        file.read_exact(&mut page)?;
        if !intact(&page, pgno as u32) {
            return Ok(Scan::Damaged { page: pgno, pages });
        }
    }
    Ok(Scan::Intact { pages })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seal_covers_content_and_place() {
        let mut page = vec![7u8; 4096];
        let seal = seal_of(&page, 3);
        page[4088..].copy_from_slice(&seal);
        assert!(intact(&page, 3));
        assert!(!intact(&page, 4), "a page read at another place is not intact");
        page[100] ^= 1;
        assert!(!intact(&page, 3), "a flipped bit breaks the seal");
        assert!(!intact(&vec![0u8; 4096], 1), "a zeroed page is not intact");
    }

    #[test]
    fn only_whole_pages_are_checked() {
        assert_eq!(page_number(4096, 0), Some(1));
        assert_eq!(page_number(16384, 16384 * 9), Some(10));
        assert_eq!(page_number(100, 0), None);
        assert_eq!(page_number(4096, 24), None);
        assert_eq!(page_number(3000, 0), None);
    }
}
