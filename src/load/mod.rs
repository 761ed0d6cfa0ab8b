//! The loader: reads the three CSV exports, validates every row, and resolves ownership rows
//! against the customers file and the snapshot.
//!
//! Owns everything about CSV (header remapping, delimiters, BOM, quoting, UTF-8). Rows are read
//! one at a time into a reused buffer, so memory grows with the number of distinct entities, not
//! with file size. A bad row is never an error here: it becomes a [`Reject`] and, where the row
//! still names its entity, that entity is *held* — the differ leaves it and its assignments as
//! they are. Fatal problems (unreadable file, missing required column) are [`Error`]s.
//!
//! `source` reads an input's bytes, `csv_file` its rows, `validate` the three kinds of row,
//! `resolve` the ownership rows against the exports and the snapshot.

mod csv_file;
pub mod source;
pub use source::sha256_file;

mod lines;
pub use lines::{Cell, NamedRow, lines_of, rows_naming};
mod rejects;
mod resolve;
mod validate;

pub use rejects::{ROWS, reject_line, reject_line_for_log, warning_line, write_rejects};
pub use resolve::{ResolvedOwnership, resolve, resolve_devices, resolve_ownership};
use validate::{read_customers, read_devices, read_ownership};

use std::path::PathBuf;

use crate::config::{CustomerColumns, DeviceColumns, OwnershipColumns};
use crate::error::Error;
use crate::model::{Customers, Devices, Export, InputInfo, Reject};

/// Where one export file is and how to read it.
#[derive(Debug, Clone)]
pub struct FileSpec<C> {
    pub path: PathBuf,
    pub delimiter: u8,
    pub columns: C,
}

/// The devices file also names columns to read past.
#[derive(Debug, Clone)]
pub struct DeviceFileSpec {
    pub file: FileSpec<DeviceColumns>,
    pub ignore_columns: Vec<String>,
}

/// Which inputs to read; `None` means that entity class is not reconciled at all.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub customers: Option<FileSpec<CustomerColumns>>,
    pub devices: Option<DeviceFileSpec>,
    pub ownership: Option<FileSpec<OwnershipColumns>>,
    pub limits: Limits,
}

/// What one input may cost, so that a hostile or broken file cannot take the machine's memory
/// or hours of its time. Past the first three the file is refused (an error naming the line or
/// the sizes, and the `[limits]` setting that raises it); past the last, rejected rows and
/// warnings are counted instead of kept. Each is far above what a real export needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The longest record (a row, with any line breaks quoted in it), in bytes.
    pub record: u64,
    /// How many times its stored size a compressed file may expand to, past the first
    /// [`EXPANSION_FREE`] bytes (CSV compresses 5 to 20 times; a bomb, thousands of times).
    pub expansion: u64,
    /// The most bytes a compressed file may expand to.
    pub decompressed: u64,
    /// Rejected rows (and warnings) of one file kept in full: listed, logged, written to the
    /// rejects file. The rest are counted.
    pub rejects_kept: usize,
}

/// How many bytes any compressed file may expand to before its ratio is looked at.
pub const EXPANSION_FREE: u64 = 64 << 20;

impl Default for Limits {
    fn default() -> Limits {
        Limits { record: 1 << 20, expansion: 1000, decompressed: 64 << 30, rejects_kept: 10_000 }
    }
}

/// Reads every given file. Fatal problems are errors; bad rows are collected in the result.
/// Call [`resolve`] with the snapshot before diffing.
pub fn read(sources: &Sources) -> Result<Export, Error> {
    let mut export = read_part(sources, Part::Customers)?;
    export.join(read_part(sources, Part::Devices)?);
    let ownership = read_ownership_beside(sources, export.customers.as_ref(), export.devices.as_ref())?;
    export.join(ownership);
    Ok(export)
}

/// One of the three exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Customers,
    Devices,
    Ownership,
}

/// Reads one file (nothing if it is not given) into an export of its own, so that the files
/// can be read on different threads; [`Export::join`] puts the parts together.
pub fn read_part(sources: &Sources, part: Part) -> Result<Export, Error> {
    read_part_beside(sources, part, None, None)
}

/// Reads the ownership file (nothing if it is not given) as [`read_part`] does, naming each
/// customer the customers file has by that file's own key, and each device of the devices file
/// whose identifier is too long to be held inline by that file's key (one allocation for
/// both), instead of a copy.
pub fn read_ownership_beside(
    sources: &Sources,
    customers: Option<&Customers>,
    devices: Option<&Devices>,
) -> Result<Export, Error> {
    read_part_beside(sources, Part::Ownership, customers, devices)
}

fn read_part_beside(
    sources: &Sources,
    part: Part,
    customers: Option<&Customers>,
    devices: Option<&Devices>,
) -> Result<Export, Error> {
    let mut export = Export::default();
    let t = std::time::Instant::now();
    match part {
        Part::Customers => {
            if let Some(spec) = &sources.customers {
                export.customers = Some(read_customers(spec, &sources.limits, &mut export)?);
            }
        }
        Part::Devices => {
            if let Some(spec) = &sources.devices {
                export.devices = Some(read_devices(spec, &sources.limits, &mut export)?);
            }
        }
        Part::Ownership => {
            if let Some(spec) = &sources.ownership {
                export.ownership = Some(read_ownership(spec, &sources.limits, &mut export, customers, devices)?);
            }
        }
    }
    tracing::debug!(elapsed_ms = t.elapsed().as_millis() as u64, rss_mib = crate::mem::rss_mib(), file = ?part, "export read");
    Ok(export)
}

#[cfg(test)]
mod tests;
