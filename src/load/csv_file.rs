//! One export file as CSV rows: the header checked against the config, and every row either
//! handed on well-formed or rejected here for its shape, with the physical line it starts on.
//!
//! Shape is what can be judged without knowing what a column means: the field count, quotes
//! that swallowed the rows after them, a file cut off in its last line, invalid UTF-8, control
//! characters. A row rejected for its shape says which keys it (and every row it swallowed)
//! might name, so the caller can hold them; whether it can be attributed at all is the caller's
//! call. The validators of the three files live in the parent module.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::source::{OpenError, OverLimit, Source, count_line_breaks};
use super::{Export, InputInfo, Limits, Reject};
use crate::config::Column;
use crate::error::Error;
use crate::model::Capped;

/// An open export with its header read.
pub(super) struct CsvFile {
    pub path: PathBuf,
    pub name: Arc<str>,
    pub delimiter: u8,
    reader: csv::Reader<Source>,
    pub headers: Vec<String>,
    rows: u64,
    /// How many of its rejected rows and warnings are kept in full ([`Limits::rejects_kept`]).
    pub rejects_kept: usize,
}

/// A file's name and headers, as [`CsvFile::walk`] hands them on.
pub(super) struct Named {
    pub name: Arc<str>,
    pub headers: Vec<String>,
}

/// One well-formed data row: its line, and its fields as UTF-8.
pub(super) struct Row<'a> {
    pub line: u64,
    pub rec: &'a csv::StringRecord,
}

impl Row<'_> {
    pub fn field(&self, i: usize) -> &str {
        self.rec.get(i).unwrap_or("")
    }

    /// The trimmed cell in column `col`, if the file has that column and the cell is not empty.
    pub fn cell(&self, col: Option<usize>) -> Option<&str> {
        let v = self.rec.get(col?)?.trim();
        (!v.is_empty()).then_some(v)
    }
}

/// A row rejected for its shape (already in the rejects).
pub(super) struct BadRow<'a> {
    pub line: u64,
    rec: &'a csv::ByteRecord,
    delimiter: u8,
    /// The row cannot be trusted to say what it names: its fields are not where the header
    /// says (field count, a stray quote, a cut), so rows it hides may name anything.
    pub structural: bool,
    /// The file may end inside this row: it was cut, or a quote opened in it never closed.
    /// Whatever came after it is lost, so every assignment removal is withheld.
    pub cut: bool,
}

/// What is wrong with a record's shape.
struct Problem {
    column: Option<usize>,
    reason: String,
    structural: bool,
    cut: bool,
}

impl Problem {
    fn new(column: Option<usize>, reason: String) -> Problem {
        Problem { column, reason, structural: true, cut: false }
    }
}

impl BadRow<'_> {
    /// The cells in column `col` that this row and the rows it swallowed hold, trimmed and
    /// without quotes, as far as they can be read: the keys a caller may hold.
    pub fn cells(&self, col: usize) -> Vec<String> {
        let text = |b: &[u8]| -> Option<String> {
            let s = std::str::from_utf8(b).ok()?.trim().trim_matches('"').trim();
            (!s.is_empty()).then(|| s.to_string())
        };
        let mut out: Vec<String> = self.rec.get(col).and_then(text).into_iter().collect();
        // Each line inside a field, after its first, began a row of its own: split it again.
        let fields: Vec<&[u8]> = self.rec.iter().collect();
        for (j, field) in fields.iter().enumerate() {
            if count_line_breaks(field) == 0 {
                continue;
            }
            let pieces: Vec<&[u8]> = field.split(|b| *b == b'\n' || *b == b'\r').filter(|p| !p.is_empty()).collect();
            for (k, piece) in pieces.iter().enumerate().skip(usize::from(!field.starts_with(b"\n"))) {
                let mut cells: Vec<&[u8]> = piece.split(|b| *b == self.delimiter).collect();
                if k + 1 == pieces.len() {
                    // The last line of the field goes on in the row's later fields.
                    cells.extend(fields[j + 1..].iter().copied());
                }
                if let Some(c) = cells.get(col).copied().and_then(text) {
                    out.push(c);
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

/// What [`CsvFile::for_each_row`] hands the per-file code.
pub(super) enum RowEvent<'a> {
    Row(Row<'a>),
    Bad(BadRow<'a>),
    /// About how many more rows the file holds, once that can be told (regular files only,
    /// never more than its size allows): for sizing maps up front.
    Reserve(usize),
}

/// Which columns may hold a line break: a key never does, so a line break there is a quote
/// left open.
#[derive(Clone, Copy)]
pub(super) enum Multiline<'a> {
    /// Only these free-text columns may; `key` is the key column and whether a cell is a key
    /// of this file, to tell a line of a row swallowed by a stray quote from a line of text.
    Only { free: &'a [usize], key: usize, is_key: fn(&str) -> bool },
    /// None may (the ownership file is all keys).
    Never,
}

/// Rows after which the reader estimates how many rows the file holds.
const ESTIMATE_AFTER: u64 = 1024;

/// The fewest bytes of file one reserved row may stand for: a map entry takes more than this,
/// so what is reserved up front stays within a small multiple of the file's size, whatever
/// the file's first rows look like (short rows, then megabytes of blank lines, say).
const MIN_BYTES_PER_RESERVED_ROW: u64 = 32;

/// About how many more rows a `size`-byte file holds when `rows` rows took its first `pos`
/// bytes: extrapolated from rows actually read, and never past what the bytes left can hold.
fn estimate_rows(size: u64, pos: u64, rows: u64) -> usize {
    let left = size.saturating_sub(pos);
    let per_row = (pos as f64 / rows.max(1) as f64).max(1.0);
    let estimate = (left as f64 / per_row * 1.02) as u64;
    estimate.min(left / MIN_BYTES_PER_RESERVED_ROW) as usize
}

impl CsvFile {
    pub fn open(path: &Path, delimiter: u8, limits: &Limits) -> Result<CsvFile, Error> {
        let source = Source::open(path, limits).map_err(|e| match e {
            OpenError::Io(source) => Error::Io { what: "open", path: path.to_owned(), source },
            OpenError::NotCompressed(kind) => Error::BadFile {
                path: path.to_owned(),
                message: format!(
                    "the name says {kind}-compressed but the file does not start like a {kind} stream; rename it or compress it"
                ),
            },
        })?;
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .flexible(true)
            .has_headers(false)
            .buffer_capacity(1 << 16)
            .from_reader(source);
        let mut header = csv::ByteRecord::new();
        let got = reader.read_byte_record(&mut header).map_err(|e| csv_fatal(path, e))?;
        if let Some(message) = utf16(reader.get_ref().head()) {
            return Err(Error::BadFile { path: path.to_owned(), message });
        }
        if !got {
            return Err(Error::BadFile {
                path: path.to_owned(),
                message: "the file is empty; expected a header row".into(),
            });
        }
        let mut headers = Vec::with_capacity(header.len());
        for (i, h) in header.iter().enumerate() {
            let h = std::str::from_utf8(h).map_err(|_| Error::BadFile {
                path: path.to_owned(),
                message: format!("line 1, column {}: the header is not valid UTF-8; save the export as UTF-8", i + 1),
            })?;
            let h = if i == 0 { h.trim_start_matches('\u{feff}') } else { h };
            if count_line_breaks(h.as_bytes()) > 0 {
                return Err(Error::BadFile {
                    path: path.to_owned(),
                    message: format!(
                        "line 1, column {}: a quoted header name runs over several lines; close the quote",
                        i + 1
                    ),
                });
            }
            headers.push(h.trim().to_string());
        }
        let name: Arc<str> = path.display().to_string().into();
        Ok(CsvFile {
            path: path.to_owned(),
            name,
            delimiter,
            reader,
            headers,
            rows: 0,
            rejects_kept: limits.rejects_kept,
        })
    }

    /// The index of the column named `name` (case-insensitive), if the header has it once.
    fn find(&self, name: &str) -> Result<Option<usize>, Error> {
        let mut found = self.headers.iter().enumerate().filter(|(_, h)| h.eq_ignore_ascii_case(name.trim()));
        let first = found.next().map(|(i, _)| i);
        if let Some((j, _)) = found.next() {
            return Err(Error::BadFile {
                path: self.path.clone(),
                message: format!(
                    "the header names column {name:?} twice (columns {} and {}); rename one of them",
                    first.unwrap_or(0) + 1,
                    j + 1
                ),
            });
        }
        Ok(first)
    }

    /// An optional column: absent is fine where the config did not name it; a column the
    /// config maps must be there.
    pub fn column(&self, col: &Column, section: &'static str, key: &'static str) -> Result<Option<usize>, Error> {
        match self.find(&col.name)? {
            Some(i) => Ok(Some(i)),
            None if col.mapped => Err(self.missing(&format!("{:?}", col.name), &[&col.name], section, key)),
            None => Ok(None),
        }
    }

    /// A column the file must have, mapped or not.
    pub fn required(&self, col: &Column, section: &'static str, key: &'static str) -> Result<usize, Error> {
        self.find(&col.name)?.ok_or_else(|| self.missing(&format!("{:?}", col.name), &[&col.name], section, key))
    }

    /// The error for a missing column: the headers found, the closest of them, and a hint
    /// when the header looks split by another delimiter.
    pub fn missing(&self, wanted: &str, names: &[&str], section: &'static str, key: &'static str) -> Error {
        let mut hint = String::new();
        if let Some(d) = self.other_delimiter() {
            let shown = if d == '\t' { "tab".to_string() } else { d.to_string() };
            hint = format!(
                " The header looks separated by {shown:?}, not {:?}: set delimiter = {shown:?} in the config file (or its [{section}] section), or pass --delimiter {shown:?}.",
                (self.delimiter as char).to_string()
            );
        } else if let Some(close) = names.iter().filter_map(|n| closest(n, &self.headers)).next() {
            hint = format!(" Did you mean {close:?}?");
        }
        Error::MissingColumn {
            path: self.path.clone(),
            wanted: wanted.into(),
            found: format!("{}.{hint}", self.found_headers()),
            section,
            key,
        }
    }

    /// The delimiter the header seems to use when it is not ours: one header cell that holds
    /// another common delimiter.
    fn other_delimiter(&self) -> Option<char> {
        if self.headers.len() != 1 {
            return None;
        }
        [';', '\t', '|', ','].into_iter().find(|c| *c != self.delimiter as char && self.headers[0].contains(*c))
    }

    fn found_headers(&self) -> String {
        if self.headers.is_empty() {
            "no columns".into()
        } else {
            self.headers.iter().map(|h| format!("{h:?}")).collect::<Vec<_>>().join(", ")
        }
    }

    /// Calls `f` for every row: well-formed ones as [`RowEvent::Row`], and ones rejected here
    /// for their shape as [`RowEvent::Bad`] (their reject is already in `rejects`). Rows are
    /// read one ahead, so that the last one is known to be the last: a file that does not end
    /// with a line break may have been cut in that row.
    /// Calls `f` with each well-formed row, keeping no rejects (the file is read again, after
    /// the loader has judged it), and the file's name and headers.
    pub fn walk(&mut self, multiline: Multiline<'_>, mut f: impl FnMut(&Named, &Row<'_>)) -> Result<(), Error> {
        let named = Named { name: self.name.clone(), headers: self.headers.clone() };
        self.for_each_row(multiline, &mut Capped::new(0), |event, _| {
            if let RowEvent::Row(row) = event {
                f(&named, &row);
            }
            None
        })
    }

    pub fn for_each_row(
        &mut self,
        multiline: Multiline<'_>,
        rejects: &mut Capped<Reject>,
        mut f: impl FnMut(RowEvent<'_>, &dyn Fn(Option<usize>, String) -> Reject) -> Option<Reject>,
    ) -> Result<(), Error> {
        let mut cur = csv::ByteRecord::new();
        let mut next = csv::ByteRecord::new();
        let Some((mut cur_line, mut cur_pos)) = self.read(&mut cur)? else { return Ok(()) };
        loop {
            let next_at = self.read(&mut next)?;
            self.rows += 1;
            let last = next_at.is_none();
            let problem = self.shape(&cur, (cur_line, cur_pos), last, multiline);
            let (name, headers, delimiter) = (&self.name, &self.headers, self.delimiter);
            let reject_for = |rec: &csv::ByteRecord, column: Option<usize>, reason: String| Reject {
                file: name.clone(),
                line: cur_line,
                column: column.map(|c| headers.get(c).cloned().unwrap_or_else(|| format!("#{}", c + 1))),
                reason,
                record: raw_text(rec, delimiter),
            };
            if self.rows == ESTIMATE_AFTER
                && let (Some(size), Some((_, pos))) = (self.reader.get_ref().size, next_at)
            {
                f(RowEvent::Reserve(estimate_rows(size, pos, self.rows + 1)), &|c, r| reject_for(&cur, c, r));
            }
            match problem {
                Some(Problem { column, reason, structural, cut }) => {
                    rejects.push(reject_for(&cur, column, reason));
                    let bad = BadRow { line: cur_line, rec: &cur, delimiter, structural, cut };
                    f(RowEvent::Bad(bad), &|c, r| reject_for(&cur, c, r));
                }
                None => match csv::StringRecord::from_byte_record(std::mem::take(&mut cur)) {
                    Ok(srec) => {
                        let make = |c, r| reject_for(srec.as_byte_record(), c, r);
                        if let Some(r) = f(RowEvent::Row(Row { line: cur_line, rec: &srec }), &make) {
                            rejects.push(r);
                        }
                        cur = srec.into_byte_record();
                    }
                    Err(e) => {
                        let field = e.utf8_error().field();
                        cur = e.into_byte_record();
                        rejects.push(reject_for(
                            &cur,
                            Some(field),
                            "the field is not valid UTF-8; save the export as UTF-8".into(),
                        ));
                        // In a file of keys only, broken bytes are broken structure.
                        let structural = matches!(multiline, Multiline::Never);
                        let bad = BadRow { line: cur_line, rec: &cur, delimiter, structural, cut: false };
                        f(RowEvent::Bad(bad), &|c, r| reject_for(&cur, c, r));
                    }
                },
            }
            match next_at {
                Some(at) => {
                    std::mem::swap(&mut cur, &mut next);
                    (cur_line, cur_pos) = at;
                }
                None => break,
            }
        }
        Ok(())
    }

    /// Reads one record: the physical line it starts on and the byte the parser started it
    /// at; `None` at the end of the file.
    fn read(&mut self, rec: &mut csv::ByteRecord) -> Result<Option<(u64, u64)>, Error> {
        match self.reader.read_byte_record(rec) {
            Ok(true) => {
                let pos = rec.position().map_or(0, |p| p.byte());
                Ok(Some((self.reader.get_mut().line_of_record_at(pos), pos)))
            }
            Ok(false) => Ok(None),
            Err(e) => Err(csv_fatal(&self.path, e)),
        }
    }

    /// What is wrong with a record's shape, if anything.
    fn shape(
        &self,
        rec: &csv::ByteRecord,
        (line, pos): (u64, u64),
        last: bool,
        multiline: Multiline<'_>,
    ) -> Option<Problem> {
        let width = self.headers.len();
        let source = self.reader.get_ref();
        let breaks = count_line_breaks(rec.as_slice());
        // Where the first field with a line break starts: a quote opened there.
        let opened = || {
            let mut at = line;
            for (i, f) in rec.iter().enumerate() {
                if count_line_breaks(f) > 0 {
                    return (i, at);
                }
                at += count_line_breaks(f);
            }
            (0, at)
        };
        let end = line + breaks;
        const FIX_QUOTE: &str = "close the quote, or write a quote inside a field as \"\"";
        if last && source.ends_inside_quote(pos, self.delimiter) {
            let (_, from) = opened();
            let reason = format!(
                "unterminated quote: a quoted field opened on line {from} runs on to the end of the file, reading every line after it into this row; {FIX_QUOTE}"
            );
            return Some(Problem { cut: true, ..Problem::new(None, reason) });
        }
        if rec.len() != width {
            let reason = if breaks > 0 {
                let (_, from) = opened();
                format!(
                    "stray quote: a quoted field opened on line {from} runs on to line {end}, so the rows in between were read into this one ({} fields, the header has {width}); {FIX_QUOTE}",
                    rec.len()
                )
            } else if last && !source.ends_with_line_break() {
                let reason = format!(
                    "the file may be truncated: its last line has {} fields (the header has {width}) and no line break at its end. Check that the export was written completely",
                    rec.len()
                );
                return Some(Problem { cut: true, ..Problem::new(None, reason) });
            } else {
                format!("wrong number of fields: {} (the header has {width})", rec.len())
            };
            return Some(Problem::new(None, reason));
        }
        if last && !source.ends_with_line_break() {
            let reason = "the file may be truncated: its last line has no line break at its end, so it may have been cut. Check that the export was written completely; if it was, end the file with a line break".into();
            return Some(Problem { cut: true, ..Problem::new(None, reason) });
        }
        if breaks > 0 {
            let (field, from) = opened();
            let (free, key) = match multiline {
                Multiline::Only { free, key, is_key } => (free, Some((key, is_key))),
                Multiline::Never => (&[][..], None),
            };
            for (i, f) in rec.iter().enumerate() {
                if count_line_breaks(f) == 0 {
                    continue;
                }
                if !free.contains(&i) {
                    let reason = format!(
                        "stray quote: this field never holds a line break, but a quoted field opened on line {from} runs on to line {end}, so the rows in between were read into it; {FIX_QUOTE}"
                    );
                    return Some(Problem::new(Some(i), reason));
                }
                // Free text may span lines, but not lines that look like rows of this file: as
                // many fields as the header (the field's last line goes on in the row's later
                // fields), the first of them a key of this file.
                let pieces: Vec<&[u8]> = f.split(|b| *b == b'\n' || *b == b'\r').collect();
                let row_shaped = width > 1
                    && pieces.iter().enumerate().skip(1).any(|(k, piece)| {
                        let later = if k + 1 == pieces.len() { rec.len() - i - 1 } else { 0 };
                        let fields = piece.iter().filter(|b| **b == self.delimiter).count() + 1 + later;
                        let keyed = key.is_some_and(|(col, is_key)| {
                            let cells: Vec<&[u8]> = piece.split(|b| *b == self.delimiter).collect();
                            // Past the line's own cells, the row goes on in the record's later fields.
                            let cell = match cells.get(col) {
                                Some(c) => Some(*c),
                                None if later > 0 => rec.get(i + 1 + col - cells.len()),
                                None => None,
                            };
                            cell.and_then(|c| std::str::from_utf8(c).ok()).is_some_and(is_key)
                        });
                        fields >= width && keyed
                    });
                if row_shaped {
                    let reason = format!(
                        "likely stray quote: the field opened on line {from} runs on to line {end} and holds lines shaped like rows of this file; {FIX_QUOTE}"
                    );
                    return Some(Problem::new(Some(field), reason));
                }
            }
        }
        // No field may pass a control character on to Telemetron. A branch-free pass (which the
        // compiler vectorises) over every byte finds the rows worth a closer look: C0 controls
        // but tab and line breaks, DEL, and 0xC2, which begins the C1 controls' encoding.
        let suspect = rec.as_slice().iter().fold(false, |acc, &b| {
            acc | ((b < 0x20) & (b != b'\t') & (b != b'\n') & (b != b'\r')) | (b == 0x7f) | (b == 0xc2)
        });
        if suspect {
            for (i, f) in rec.iter().enumerate() {
                let Ok(s) = std::str::from_utf8(f) else { continue };
                if let Some((at, c)) = crate::model::first_control_char(s) {
                    let reason = format!(
                        "the cell contains {} at character {at}; remove it (control characters are never sent to Telemetron)",
                        crate::model::describe_char(c)
                    );
                    return Some(Problem { structural: false, ..Problem::new(Some(i), reason) });
                }
            }
        }
        None
    }

    pub fn finish(self, kind: &str, export: &mut Export) {
        let sha256 = self.reader.get_ref().sha256();
        export.inputs.push(InputInfo { kind: kind.into(), path: self.name.to_string(), sha256, rows: self.rows });
    }
}

/// Names a UTF-16 file from its first bytes, with or without a byte order mark.
fn utf16(head: &[u8]) -> Option<String> {
    let order = match head {
        [0xff, 0xfe, ..] => "little-endian, with a byte order mark",
        [0xfe, 0xff, ..] => "big-endian, with a byte order mark",
        [a, 0, b, 0, ..] if *a != 0 && *b != 0 => "little-endian, without a byte order mark",
        [0, a, 0, b, ..] if *a != 0 && *b != 0 => "big-endian, without a byte order mark",
        _ => return None,
    };
    Some(format!(
        "the file is UTF-16 ({order}); save the export as UTF-8 (in Excel: \"CSV UTF-8\"), or convert it with `iconv -f UTF-16 -t UTF-8`"
    ))
}

/// The header closest to `wanted` (case-insensitive edit distance), if one is close enough to
/// be a likely rename or typo.
fn closest<'a>(wanted: &str, headers: &'a [String]) -> Option<&'a str> {
    let w = wanted.trim().to_lowercase();
    headers
        .iter()
        .map(|h| (edit_distance(&w, &h.to_lowercase()), h))
        .filter(|(d, h)| *d <= (w.chars().count().max(h.chars().count()) / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, h)| h.as_str())
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let up = row[j + 1];
            row[j + 1] = (diag + usize::from(ca != *cb)).min(up + 1).min(row[j] + 1);
            diag = up;
        }
    }
    row[b.len()]
}

fn csv_fatal(path: &Path, e: csv::Error) -> Error {
    match e.into_kind() {
        // A limit the file went past: refused with what to do, not as a read error.
        csv::ErrorKind::Io(source) if source.get_ref().is_some_and(|e| e.is::<OverLimit>()) => {
            Error::BadFile { path: path.to_owned(), message: format!("refused: {source}") }
        }
        csv::ErrorKind::Io(source) => Error::Io { what: "read", path: path.to_owned(), source },
        other => Error::BadFile { path: path.to_owned(), message: format!("{other:?}") },
    }
}

pub(super) fn raw_text(rec: &csv::ByteRecord, delimiter: u8) -> String {
    let mut out = String::new();
    for (i, f) in rec.iter().enumerate() {
        if i > 0 {
            out.push(delimiter as char);
        }
        out.push_str(&String::from_utf8_lossy(f));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_header() {
        let headers = vec!["Serial Number".to_string(), "Modell".to_string(), "firmware".to_string()];
        assert_eq!(closest("Model", &headers), Some("Modell"));
        assert_eq!(closest("serial number", &headers), Some("Serial Number"));
        assert_eq!(closest("owner", &headers), None);
    }

    #[test]
    fn reserving_is_bounded_by_the_bytes_left() {
        // A million short rows' worth of blank lines after 1,024 rows of 4 bytes.
        assert_eq!(estimate_rows(4 * 1025 + 32_000_000, 4 * 1025, 1025), 1_000_000);
        assert!(estimate_rows(10_000_000, 100_000, 1025) > 100_000, "ordinary rows are estimated");
        assert_eq!(estimate_rows(1000, 2000, 1025), 0);
    }

    #[test]
    fn utf16_is_named() {
        assert!(utf16(b"e\0m\0a\0").unwrap().contains("little-endian, without"));
        assert!(utf16(b"\xff\xfee\0").unwrap().contains("little-endian, with a"));
        assert!(utf16(b"\0e\0m").unwrap().contains("big-endian"));
        assert_eq!(utf16(b"email"), None);
    }
}
