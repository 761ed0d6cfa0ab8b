//! One export as a byte stream read exactly once: opened from a path or `-` (standard input),
//! decompressed when it is gzip or zstd (told by its first bytes), hashed as it is read, and
//! able to say which physical line any byte it handed out is on.
//!
//! Reading once is what makes pipes, FIFOs, `/dev/stdin` and process substitution work at any
//! size, and what makes the hash saved in a plan the hash of the bytes that were planned. Line
//! numbers are counted here, not by the CSV parser: LF, CRLF and CR-only files all count a line
//! per line break, so a reject points at the line an editor shows. This module knows bytes and
//! lines, not CSV.

use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::Limits;

use sha2::{Digest, Sha256};

/// How the bytes of a file were stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    None,
    Gzip,
    Zstd,
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Where an error opening or reading a source came from, for the caller's message.
#[derive(Debug)]
pub enum OpenError {
    Io(io::Error),
    /// The name promises a compression the bytes do not have.
    NotCompressed(&'static str),
}

/// A [`Limits`] an input went past: the message says which, and how to raise it.
#[derive(Debug)]
pub struct OverLimit(pub String);

impl std::fmt::Display for OverLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OverLimit {}

fn over_limit(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, OverLimit(message))
}

/// An open input: a reader over its (decompressed) bytes that tracks lines and the file's end.
pub struct Source {
    inner: Box<dyn Read + Send>,
    hasher: Arc<Mutex<Sha256>>,
    /// The file's size when it is a plain regular file (not a pipe, not compressed): the bound
    /// for any memory reserved up front.
    pub size: Option<u64>,
    /// Bytes handed out from `window_start` on; trimmed as the cursor passes them.
    window: Vec<u8>,
    window_start: u64,
    /// Every byte before `cursor` has been counted: `breaks` line breaks, the last of them `prev`.
    cursor: u64,
    breaks: u64,
    prev: u8,
    total: u64,
    last: Option<u8>,
    /// The longest record allowed ([`Limits::record`]).
    max_record: u64,
}

impl Source {
    /// Opens `path` (`-` is standard input), to be read within `limits`.
    pub fn open(path: &Path, limits: &Limits) -> Result<Source, OpenError> {
        let hasher = Arc::new(Mutex::new(Sha256::new()));
        let (inner, size, compression) = decompressed(path, hasher.clone(), Some(limits))?;
        let size = size.filter(|_| compression == Compression::None);
        Ok(Source {
            inner,
            hasher,
            size,
            window: Vec::new(),
            window_start: 0,
            cursor: 0,
            breaks: 0,
            prev: 0,
            total: 0,
            last: None,
            max_record: limits.record,
        })
    }

    /// The SHA-256 of the bytes read from the file so far (as stored: compressed if it is).
    pub fn sha256(&self) -> String {
        let hasher = self.hasher.lock().unwrap_or_else(|p| p.into_inner()).clone();
        hex(&hasher.finalize())
    }

    /// Whether the data handed out so far ends with a line break (or is empty).
    pub fn ends_with_line_break(&self) -> bool {
        self.last.is_none_or(|b| b == b'\n' || b == b'\r')
    }

    /// The first bytes of the data, while nothing past them has been counted.
    pub fn head(&self) -> &[u8] {
        if self.window_start == 0 { &self.window[..self.window.len().min(8)] } else { &[] }
    }

    /// Whether the data from `pos` (the start of the last record) to the end leaves a quoted
    /// field open: the quote never closed, and the parser read everything after it into the
    /// field. Only for a record whose bytes are still in the window (the last one read).
    pub fn ends_inside_quote(&self, pos: u64, delimiter: u8) -> bool {
        let from = pos.max(self.window_start) - self.window_start;
        let bytes = &self.window[(from as usize).min(self.window.len())..];
        let (mut quoted, mut field_start) = (false, true);
        let mut it = bytes.iter().skip_while(|b| matches!(b, b'\n' | b'\r')).peekable();
        while let Some(&b) = it.next() {
            if quoted {
                if b == b'"' {
                    if it.peek() == Some(&&b'"') {
                        it.next();
                    } else {
                        quoted = false;
                    }
                }
            } else if field_start && b == b'"' {
                quoted = true;
                field_start = false;
            } else {
                field_start = b == delimiter || b == b'\n' || b == b'\r';
            }
        }
        quoted
    }

    /// The physical line (1-based) of the first byte at or after `pos` that is not a line
    /// break: where a record the CSV parser says starts at `pos` really starts, since the
    /// parser passes over blank lines and the `\n` of a CRLF before a record. Positions must
    /// not go backwards.
    pub fn line_of_record_at(&mut self, pos: u64) -> u64 {
        let mut at = pos.max(self.cursor);
        while at < self.total {
            match self.window[(at - self.window_start) as usize] {
                b'\n' | b'\r' => at += 1,
                _ => break,
            }
        }
        self.advance_to(at);
        self.breaks + 1
    }

    fn advance_to(&mut self, to: u64) {
        if to <= self.cursor {
            return;
        }
        let from = (self.cursor - self.window_start) as usize;
        let end = (to.min(self.total) - self.window_start) as usize;
        let bytes = &self.window[from..end];
        self.breaks += breaks_after(self.prev, bytes);
        if let Some(&last) = bytes.last() {
            self.prev = last;
        }
        self.cursor = self.window_start + end as u64;
        // Keep the window small: drop what the cursor passed once it is a good chunk.
        if from > 1 << 18 {
            let drop = (self.cursor - self.window_start) as usize;
            self.window.drain(..drop);
            self.window_start = self.cursor;
        }
    }
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Every byte from the start of the last record read on is held (here and by the CSV
        // parser): a record that does not end is refused before it costs more than the limit.
        if self.total - self.cursor > self.max_record {
            return Err(over_limit(format!(
                "a record starting on line {} or the one after it runs past {} KiB without ending (a real row is far shorter): the file is damaged, or a quote was left open. If the export really holds such rows, raise [limits] max_record_kib",
                self.breaks + 1,
                self.max_record >> 10
            )));
        }
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.window.extend_from_slice(&buf[..n]);
            self.total += n as u64;
            self.last = Some(buf[n - 1]);
        }
        Ok(n)
    }
}

/// Counts line breaks (`\n`, `\r\n`, lone `\r`) in text, as [`Source`] counts them.
pub fn count_line_breaks(bytes: &[u8]) -> u64 {
    breaks_after(0, bytes)
}

/// Line breaks in `bytes`, the byte before them being `prev`: every `\r`, and every `\n` not
/// right after a `\r`. Found with memchr, which looks at many bytes at a time: this runs over
/// every byte of every input.
fn breaks_after(prev: u8, bytes: &[u8]) -> u64 {
    let mut n = 0;
    for i in memchr::memchr2_iter(b'\n', b'\r', bytes) {
        let before = if i == 0 { prev } else { bytes[i - 1] };
        if bytes[i] == b'\r' || before != b'\r' {
            n += 1;
        }
    }
    n
}

/// The SHA-256 of a file as stored, as [`Source::sha256`] gives it after a whole read.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let hasher = Arc::new(Mutex::new(Sha256::new()));
    let mut r = Hashing { inner: std::fs::File::open(path)?, hasher: hasher.clone(), read: Arc::default() };
    io::copy(&mut r, &mut io::sink())?;
    let h = hasher.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok(hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A reader that hashes what passes through it, and counts it.
struct Hashing<R> {
    inner: R,
    hasher: Arc<Mutex<Sha256>>,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.lock().unwrap_or_else(|p| p.into_inner()).update(&buf[..n]);
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// A decompressed stream held to [`Limits`]: refused once it expands past the total allowed, or
/// (past [`super::EXPANSION_FREE`]) past the ratio allowed to the bytes stored.
struct Bounded<R> {
    inner: R,
    stored: Arc<AtomicU64>,
    out: u64,
    limits: Limits,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out += n as u64;
        let stored = self.stored.load(Ordering::Relaxed).max(1);
        if self.out > self.limits.decompressed {
            return Err(over_limit(format!(
                "it expands past {} GiB when decompressed (the limit); if the export really is that large, raise [limits] max_decompressed_gib",
                self.limits.decompressed >> 30
            )));
        }
        if self.out > super::EXPANSION_FREE && self.out / stored > self.limits.expansion {
            return Err(over_limit(format!(
                "it expands more than {} times its stored size ({stored} bytes stored, {} so far): a compression bomb, or not an export. If it really is an export, raise [limits] max_expansion",
                self.limits.expansion, self.out
            )));
        }
        Ok(n)
    }
}

/// A stream of decompressed bytes, the file's size when it is a plain regular file, and how it
/// was stored.
type Opened = (Box<dyn Read + Send>, Option<u64>, Compression);

/// A file's bytes as a stream, decompressed when they are gzip or zstd (told by the first
/// bytes, not the name), hashed into `hasher` as stored: the one reader of every input the tool
/// takes — the exports, and a saved plan (`apply --plan`). Also says the file's size when it is
/// a plain regular file, and how it was stored.
fn decompressed(path: &Path, hasher: Arc<Mutex<Sha256>>, limits: Option<&Limits>) -> Result<Opened, OpenError> {
    let (raw, size): (Box<dyn Read + Send>, Option<u64>) = if path.as_os_str() == "-" {
        (Box::new(io::stdin()), None)
    } else {
        let file = std::fs::File::open(path).map_err(OpenError::Io)?;
        let size = file.metadata().ok().filter(|m| m.is_file()).map(|m| m.len());
        (Box::new(file), size)
    };
    let stored = Arc::new(AtomicU64::new(0));
    let mut hashing = Hashing { inner: raw, hasher, read: stored.clone() };
    // The first bytes tell the compression; they are read and put back in front.
    let mut head = [0u8; 4];
    let mut got = 0;
    while got < head.len() {
        match hashing.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(OpenError::Io(e)),
        }
    }
    let head = head[..got].to_vec();
    let compression = if head.starts_with(&GZIP_MAGIC) {
        Compression::Gzip
    } else if head.starts_with(&ZSTD_MAGIC) {
        Compression::Zstd
    } else {
        Compression::None
    };
    let name = path.to_string_lossy().to_ascii_lowercase();
    if compression == Compression::None {
        if name.ends_with(".gz") {
            return Err(OpenError::NotCompressed("gzip"));
        }
        if name.ends_with(".zst") {
            return Err(OpenError::NotCompressed("zstd"));
        }
    }
    let stream = io::Cursor::new(head).chain(hashing);
    let inner: Box<dyn Read + Send> = match compression {
        Compression::None => Box::new(stream),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(stream)),
        Compression::Zstd => Box::new(Zstd::new(stream)),
    };
    let inner: Box<dyn Read + Send> = match limits {
        Some(&limits) if compression != Compression::None => Box::new(Bounded { inner, stored, out: 0, limits }),
        _ => inner,
    };
    Ok((inner, size, compression))
}

/// A file's bytes as a stream, decompressed when they are gzip or zstd: [`decompressed`] for a
/// reader that needs neither lines nor a hash (a saved plan).
pub fn reader(path: &Path) -> Result<Box<dyn Read + Send>, OpenError> {
    decompressed(path, Arc::new(Mutex::new(Sha256::new())), None).map(|(inner, _, _)| inner)
}

/// A zstd stream of one or more frames, decoded as it is read.
struct Zstd<R: Read> {
    decoder: Option<ruzstd::decoding::StreamingDecoder<io::BufReader<R>, ruzstd::decoding::FrameDecoder>>,
    source: Option<io::BufReader<R>>,
}

impl<R: Read> Zstd<R> {
    fn new(source: R) -> Self {
        Zstd { decoder: None, source: Some(io::BufReader::new(source)) }
    }
}

impl<R: Read> Read for Zstd<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use io::BufRead;
        loop {
            if self.decoder.is_none() {
                let Some(mut source) = self.source.take() else { return Ok(0) };
                // Another frame follows only where there are more bytes.
                if source.fill_buf()?.is_empty() {
                    return Ok(0);
                }
                let decoder = ruzstd::decoding::StreamingDecoder::new(source)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("not a valid zstd stream: {e}")))?;
                self.decoder = Some(decoder);
            }
            let decoder = self.decoder.as_mut().expect("set above");
            let n = decoder.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            self.source = self.decoder.take().map(|d| d.into_inner());
        }
    }
}
