//! The loader: reads the three CSV exports, validates every row, and resolves ownership rows
//! against the customers file and the snapshot.
//!
//! Owns everything about CSV (header remapping, delimiters, BOM, quoting, UTF-8). Rows are read
//! one at a time into a reused buffer, so memory grows with the number of distinct entities, not
//! with file size. A bad row is never an error here: it becomes a [`Reject`] and, where the row
//! still names its entity, that entity is *held* — the differ leaves it and its assignments as
//! they are. Fatal problems (unreadable file, missing required column) are [`Error`]s.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::map::Entry;

use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::{CustomerColumns, DeviceColumns, OwnershipColumns};
use crate::error::Error;
use crate::model::{
    CustomerRecord, DeviceIdent, DeviceRecord, Email, KeyMap, Owners, Properties, SortedMap, UNIT_SEPARATOR,
    push_json_str,
};
use crate::snapshot::SnapshotData;

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
}

/// A row left out of the plan, and why.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Reject {
    pub file: Arc<str>,
    pub line: u64,
    /// The header of the offending column, where one column is at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    pub reason: String,
    /// The row as read (fields re-joined with the file's delimiter; invalid UTF-8 replaced).
    pub record: String,
}

/// Something worth saying about the input that changes nothing (an identical duplicate row).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Warning {
    pub file: Arc<str>,
    pub line: u64,
    pub message: String,
}

/// One input file as read: for reports and for refusing a stale saved plan.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct InputInfo {
    pub kind: String,
    pub path: String,
    pub sha256: String,
    pub rows: u64,
}

/// A customer row as kept: its record and the line it came from.
#[derive(Debug, Clone)]
pub struct CustomerEntry {
    pub line: u64,
    pub record: CustomerRecord,
}

#[derive(Debug, Clone)]
pub struct DeviceEntry {
    pub line: u64,
    pub record: DeviceRecord,
}

/// The customers file, validated.
#[derive(Debug, Default)]
pub struct Customers {
    pub entries: KeyMap<Email, CustomerEntry>,
    /// Which optional columns the file has. A field whose column is missing is not managed by
    /// the export: its stored value is kept, where an empty cell clears it.
    pub present: PresentFields,
    /// Customers with a rejected row: left unchanged, with their assignments.
    pub held: FxHashSet<Email>,
    by_source_id: FxHashMap<Box<str>, SourceId>,
}

/// Which of a customer's optional fields the customers file carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PresentFields {
    pub name: bool,
    pub phone: bool,
    pub address: bool,
    pub customer_id: bool,
}

impl PresentFields {
    pub const ALL: PresentFields = PresentFields { name: true, phone: true, address: true, customer_id: true };

    /// The record the export asks for, given what is stored: fields the file does not carry
    /// keep their stored value.
    pub fn merge(&self, export: &CustomerRecord, stored: &CustomerRecord) -> CustomerRecord {
        CustomerRecord::new(
            if self.name { export.name() } else { stored.name() },
            if self.phone { export.phone() } else { stored.phone() },
            if self.address { export.address() } else { stored.address() },
            if self.customer_id { export.source_id() } else { stored.source_id() },
        )
    }

    /// Whether the export changes a Telemetron field of `stored` (without building the merge).
    pub fn changes_api_fields(&self, export: &CustomerRecord, stored: &CustomerRecord) -> bool {
        if self.name && self.phone && self.address {
            return export.api_fields() != stored.api_fields();
        }
        (self.name && export.name() != stored.name())
            || (self.phone && export.phone() != stored.phone())
            || (self.address && export.address() != stored.address())
    }
}

#[derive(Debug)]
enum SourceId {
    /// The email, and the line that gave it the id.
    One(Email, u64),
    Ambiguous(u64, u64),
}

/// The devices file, validated.
#[derive(Debug, Default)]
pub struct Devices {
    pub entries: KeyMap<DeviceIdent, DeviceEntry>,
    /// Devices with a rejected row: left unchanged, with their assignments.
    pub held: FxHashSet<DeviceIdent>,
    /// Rows with an empty type, kept as read in case the device turns out to be new.
    untyped_records: FxHashMap<DeviceIdent, String>,
}

/// How an ownership row names its customer.
#[derive(Debug, Clone)]
enum CustomerRef {
    Email(Email),
    SourceId(Box<str>),
}

impl CustomerRef {
    fn as_str(&self) -> &str {
        match self {
            CustomerRef::Email(e) => e.as_str(),
            CustomerRef::SourceId(id) => id,
        }
    }
}

#[derive(Debug)]
struct OwnershipRow {
    line: u64,
    device: DeviceIdent,
    customer: CustomerRef,
}

/// The ownership file: before resolution, its rows; after, the desired owners of each device.
#[derive(Debug, Default)]
pub struct Ownership {
    rows: Vec<OwnershipRow>,
    /// Desired owners per device (sorted, unique), from rows that resolved, in device order.
    pub owners: SortedMap<DeviceIdent, Owners>,
    /// Devices whose assignments stay as they are (an ownership row of theirs was rejected).
    pub held_devices: FxHashSet<DeviceIdent>,
    /// Customers whose assignments stay as they are.
    pub held_customers: FxHashSet<Email>,
    /// Lines of rejected rows that name no device or customer we could read. While there are
    /// any, no assignment is removed: one of them may be the row that keeps it.
    pub unattributed: Vec<u64>,
    /// Rows not applied because their device or customer is held.
    pub held_rows: u64,
}

/// The three exports, read and validated.
#[derive(Debug, Default)]
pub struct Export {
    pub customers: Option<Customers>,
    pub devices: Option<Devices>,
    pub ownership: Option<Ownership>,
    pub rejects: Vec<Reject>,
    pub warnings: Vec<Warning>,
    pub inputs: Vec<InputInfo>,
}

impl Export {
    /// Adds a part read by [`read_part`]; parts joined in the order customers, devices,
    /// ownership give what [`read`] gives.
    pub fn join(&mut self, part: Export) {
        let Export { customers, devices, ownership, rejects, warnings, inputs } = part;
        self.customers = self.customers.take().or(customers);
        self.devices = self.devices.take().or(devices);
        self.ownership = self.ownership.take().or(ownership);
        self.rejects.extend(rejects);
        self.warnings.extend(warnings);
        self.inputs.extend(inputs);
    }

    /// Adds rows rejected after reading, keeping every reject in file and line order.
    fn add_rejects(&mut self, late: Vec<Reject>) {
        self.rejects.extend(late);
        self.rejects.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    }

    pub fn is_held_customer(&self, e: &Email) -> bool {
        self.customers.as_ref().is_some_and(|c| c.held.contains(e))
    }

    pub fn is_held_device(&self, d: &DeviceIdent) -> bool {
        self.devices.as_ref().is_some_and(|c| c.held.contains(d))
    }
}

/// Reads every given file. Fatal problems are errors; bad rows are collected in the result.
/// Call [`resolve`] with the snapshot before diffing.
pub fn read(sources: &Sources) -> Result<Export, Error> {
    let mut export = read_part(sources, Part::Customers)?;
    export.join(read_part(sources, Part::Devices)?);
    export.join(read_part(sources, Part::Ownership)?);
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
    let mut export = Export::default();
    let t = std::time::Instant::now();
    match part {
        Part::Customers => {
            if let Some(spec) = &sources.customers {
                let source_ids = sources.ownership.as_ref().is_some_and(names_customer_ids);
                export.customers = Some(read_customers(spec, source_ids, &mut export)?);
            }
        }
        Part::Devices => {
            if let Some(spec) = &sources.devices {
                export.devices = Some(read_devices(spec, &mut export)?);
            }
        }
        Part::Ownership => {
            if let Some(spec) = &sources.ownership {
                export.ownership = Some(read_ownership(spec, &mut export)?);
            }
        }
    }
    tracing::debug!(elapsed_ms = t.elapsed().as_millis() as u64, file = ?part, "export read");
    Ok(export)
}

/// Finds keys in one of the snapshot's sorted maps: by binary search while few are asked for,
/// through a hash set once many are (an ownership file whose devices or customers file was not
/// given looks up every row in the snapshot).
struct SnapshotKeys<'a, K, V> {
    map: &'a SortedMap<K, V>,
    searches: u32,
    set: Option<FxHashSet<&'a K>>,
}

impl<'a, K: Ord + std::hash::Hash, V> SnapshotKeys<'a, K, V> {
    /// Binary searches before building the set: a few are cheaper than hashing every key.
    const SEARCHES: u32 = 256;

    fn new(map: &'a SortedMap<K, V>) -> Self {
        SnapshotKeys { map, searches: 0, set: None }
    }

    fn contains(&mut self, key: &K) -> bool {
        if self.set.is_none() && self.searches >= Self::SEARCHES {
            self.set = Some(self.map.keys().collect());
        }
        match &self.set {
            Some(set) => set.contains(key),
            None => {
                self.searches += 1;
                self.map.contains_key(key)
            }
        }
    }
}

/// Whether the ownership file has a customer_id column (it may name customers by their id). A
/// header that cannot be read counts as yes: reading the file will report it.
fn names_customer_ids(spec: &FileSpec<OwnershipColumns>) -> bool {
    CsvFile::open(&spec.path, spec.delimiter)
        .and_then(|f| f.column(&spec.columns.customer_id))
        .map_or(true, |c| c.is_some())
}

/// Checks what can only be checked against the snapshot — a new device needs a type, an
/// ownership row must name a known device and customer — and builds the desired owners.
/// [`resolve_devices`] then [`resolve_ownership`]; `prepare` runs the second beside the entity
/// diff, which needs only the first.
pub fn resolve(export: &mut Export, snap: &SnapshotData) {
    resolve_devices(export, snap);
    if let Some(own) = export.ownership.take() {
        let resolved = resolve_ownership(own, export, snap);
        resolved.put_into(export);
    }
}

/// Rejects a new device whose type is empty (only the snapshot tells a new device from a known
/// one): it is held, with its assignments.
pub fn resolve_devices(export: &mut Export, snap: &SnapshotData) {
    let devices_file = export.inputs.iter().find(|i| i.kind == "devices").map(|i| Arc::<str>::from(i.path.as_str()));
    let (Some(devices), Some(file)) = (export.devices.as_mut(), devices_file) else { return };
    let untyped = std::mem::take(&mut devices.untyped_records);
    let mut untyped: Vec<_> = untyped.into_iter().collect();
    untyped.sort_by(|a, b| a.0.cmp(&b.0));
    let mut late = Vec::new();
    for (ident, record) in untyped {
        if snap.devices.contains_key(&ident) || devices.held.contains(&ident) {
            continue;
        }
        let line = devices.entries.get(&ident).map_or(0, |e| e.line);
        devices.entries.swap_remove(&ident);
        devices.held.insert(ident.clone());
        late.push(Reject {
            file: file.clone(),
            line,
            column: None,
            reason: format!("device {ident} is new and its type is empty; a new device needs a type"),
            record,
        });
    }
    export.add_rejects(late);
}

/// The ownership file resolved: the desired owners, and the rows it rejected or warned about.
#[derive(Debug)]
pub struct ResolvedOwnership {
    ownership: Ownership,
    rejects: Vec<Reject>,
    warnings: Vec<Warning>,
}

impl ResolvedOwnership {
    /// Puts the ownership back into the export it was taken from, with its rejects and warnings.
    pub fn put_into(self, export: &mut Export) {
        export.ownership = Some(self.ownership);
        export.warnings.extend(self.warnings);
        export.add_rejects(self.rejects);
    }
}

/// Resolves the rows of `own` (taken out of `export`, which must have been through
/// [`resolve_devices`]): each must name a device and a customer known to the exports or the
/// snapshot, and not a held one.
pub fn resolve_ownership(mut own: Ownership, export: &Export, snap: &SnapshotData) -> ResolvedOwnership {
    let mut late: Vec<Reject> = Vec::new();
    let mut warnings: Vec<Warning> = Vec::new();
    let file = export
        .inputs
        .iter()
        .find(|i| i.kind == "ownership")
        .map_or_else(|| Arc::<str>::from("ownership"), |i| Arc::<str>::from(i.path.as_str()));
    let mut rows = std::mem::take(&mut own.rows);
    let mut snap_source_ids: Option<FxHashMap<&str, &Email>> = None;
    let (mut snap_devices, mut snap_customers) = (SnapshotKeys::new(&snap.devices), SnapshotKeys::new(&snap.customers));
    // Ownership rows usually list devices in the devices file's order: try the entry after the
    // last one found before hashing.
    let mut next_device = 0usize;
    // Resolved in place: a row that stays names its customer by email.
    rows.retain_mut(|OwnershipRow { line, device, customer }| {
        let (line, device) = (*line, &*device);
        let reject = |own: &mut Ownership, late: &mut Vec<Reject>, reason: String, customer: &str| {
            own.held_devices.insert(device.clone());
            late.push(Reject {
                file: file.clone(),
                line,
                column: None,
                reason,
                record: format!("{device},{customer}"),
            });
        };
        if let CustomerRef::SourceId(id) = customer {
            let from_file = export.customers.as_ref().and_then(|c| c.by_source_id.get(&*id));
            let email = match from_file {
                Some(SourceId::One(e, _)) => e.clone(),
                Some(SourceId::Ambiguous(a, b)) => {
                    let reason = format!(
                        "customer_id {id} is ambiguous: the customers file gives it to two emails (lines {a} and {b})"
                    );
                    reject(&mut own, &mut late, reason, id);
                    return false;
                }
                None => {
                    let map = snap_source_ids.get_or_insert_with(|| snap.customers_by_source_id());
                    match map.get(&**id) {
                        Some(e) => (*e).clone(),
                        None => {
                            let reason = format!("customer_id {id} is in neither the customers file nor the snapshot");
                            reject(&mut own, &mut late, reason, id);
                            return false;
                        }
                    }
                }
            };
            *customer = CustomerRef::Email(email);
        }
        let CustomerRef::Email(email) = &*customer else { return false };
        if export.is_held_device(device) || export.is_held_customer(email) {
            own.held_rows += 1;
            return false;
        }
        let in_file = export.devices.as_ref().is_some_and(|d| {
            let at = |i: usize| d.entries.get_index(i).is_some_and(|(k, _)| k == device);
            if at(next_device) {
                next_device += 1;
                true
            } else if next_device > 0 && at(next_device - 1) {
                true
            } else if let Some(i) = d.entries.get_index_of(device) {
                next_device = i + 1;
                true
            } else {
                false
            }
        });
        if !in_file && !snap_devices.contains(device) {
            let reason = format!("device {} is in neither the devices file nor the snapshot", device);
            reject(&mut own, &mut late, reason, email.as_str());
            return false;
        }
        let customer_known =
            export.customers.as_ref().is_some_and(|c| c.entries.contains_key(email)) || snap_customers.contains(email);
        if !customer_known {
            let reason = format!("customer {email} is in neither the customers file nor the snapshot");
            reject(&mut own, &mut late, reason, email.as_str());
            return false;
        }
        true
    });
    // Sorted by device, customer and line: each device's owners come together, sorted, and a
    // pair given twice is merged into its first line. An export listed in device order needs
    // only each device's few rows sorted.
    let by_owner =
        |a: &OwnershipRow, b: &OwnershipRow| (a.customer.as_str(), a.line).cmp(&(b.customer.as_str(), b.line));
    if rows.is_sorted_by(|a, b| a.device <= b.device) {
        for group in rows.chunk_by_mut(|a, b| a.device == b.device) {
            group.sort_unstable_by(by_owner);
        }
    } else {
        rows.sort_unstable_by(|a, b| a.device.cmp(&b.device).then_with(|| by_owner(a, b)));
    }
    let mut repeats = Vec::new();
    let mut owners = SortedMap::with_capacity(rows.len());
    let mut current: Option<(DeviceIdent, Owners)> = None;
    for OwnershipRow { line, device, customer } in rows {
        let CustomerRef::Email(email) = customer else { continue };
        // A device held by a rejected row keeps its assignments: drop what other rows said.
        if own.held_devices.contains(&device) || own.held_customers.contains(&email) {
            continue;
        }
        match &mut current {
            Some((d, list)) if *d == device => {
                if list.last() == Some(&email) {
                    repeats.push(Warning {
                        file: file.clone(),
                        line,
                        message: format!("device {device} is assigned to {email} again; the rows were merged"),
                    });
                    continue;
                }
                list.push(email);
            }
            _ => {
                if let Some((d, list)) = current.replace((device, Owners::new())) {
                    owners.push(d, list);
                }
                if let Some((_, list)) = &mut current {
                    list.push(email);
                }
            }
        }
    }
    if let Some((d, list)) = current {
        owners.push(d, list);
    }
    owners.finish();
    own.owners = owners;
    repeats.sort_by_key(|w| w.line);
    warnings.extend(repeats);
    ResolvedOwnership { ownership: own, rejects: late, warnings }
}

// ---------------------------------------------------------------------------------------------
// Reading one file

/// The SHA-256 of a file, as `InputInfo::sha256` gives it.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut r = HashingReader { inner: File::open(path)?, hasher: Sha256::new() };
    io::copy(&mut r, &mut io::sink())?;
    Ok(hex(&r.hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A reader that hashes what passes through it, so a file is read once.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// An open export with its header read.
struct CsvFile {
    path: PathBuf,
    name: Arc<str>,
    delimiter: u8,
    reader: csv::Reader<HashingReader<File>>,
    headers: Vec<String>,
    rows: u64,
    /// The file's size in bytes, to tell a record that ran to the end of the file.
    len: u64,
    /// Whether the file's last character (before any final line break) is a quote. A record
    /// with a line break in a field that runs to the end of a file that does not end in a quote
    /// was never closed.
    ends_with_quote: bool,
}

/// One data row: its line, and its fields as UTF-8.
struct Row<'a> {
    line: u64,
    rec: &'a csv::StringRecord,
    /// A quoted field of this row holds a line break.
    spans_lines: bool,
}

impl Row<'_> {
    fn field(&self, i: usize) -> &str {
        self.rec.get(i).unwrap_or("")
    }

    /// The trimmed cell in column `col`, if the file has that column and the cell is not empty.
    fn cell(&self, col: Option<usize>) -> Option<&str> {
        let v = self.rec.get(col?)?.trim();
        (!v.is_empty()).then_some(v)
    }
}

/// What `for_each_row` hands the per-file code.
enum RowEvent<'a> {
    Row(Row<'a>),
    /// A row already rejected for its shape (width, UTF-8); `key` is its key cell if readable.
    Malformed {
        line: u64,
        key: Option<&'a str>,
        spans_lines: bool,
    },
}

impl CsvFile {
    fn open(path: &Path, delimiter: u8) -> Result<CsvFile, Error> {
        let file = File::open(path).map_err(|source| Error::Io { what: "open", path: path.to_owned(), source })?;
        let len = file.metadata().map_or(u64::MAX, |m| m.len());
        let ends_with_quote = last_char_is_quote(path, len);
        let hashing = HashingReader { inner: file, hasher: Sha256::new() };
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .flexible(true)
            .has_headers(false)
            .buffer_capacity(1 << 16)
            .from_reader(hashing);
        let mut header = csv::ByteRecord::new();
        let got = reader.read_byte_record(&mut header).map_err(|e| csv_fatal(path, e))?;
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
            headers.push(h.trim().to_string());
        }
        Ok(CsvFile {
            path: path.to_owned(),
            name: path.display().to_string().into(),
            delimiter,
            reader,
            headers,
            rows: 0,
            len,
            ends_with_quote,
        })
    }

    /// The index of the column named `name` (case-insensitive), if the header has it once.
    fn column(&self, name: &str) -> Result<Option<usize>, Error> {
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

    fn required(&self, name: &str, section: &'static str, key: &'static str) -> Result<usize, Error> {
        self.column(name)?.ok_or_else(|| Error::MissingColumn {
            path: self.path.clone(),
            wanted: format!("{name:?}"),
            found: self.found_headers(),
            section,
            key,
        })
    }

    fn found_headers(&self) -> String {
        if self.headers.is_empty() {
            "no columns".into()
        } else {
            self.headers.iter().map(|h| format!("{h:?}")).collect::<Vec<_>>().join(", ")
        }
    }

    /// Calls `f` for every row: well-formed ones as [`RowEvent::Row`], and ones already rejected
    /// here for their shape as [`RowEvent::Malformed`]. `key_col` is the column that names the
    /// entity, so that a malformed row can still hold it.
    fn for_each_row(
        &mut self,
        key_col: usize,
        rejects: &mut Vec<Reject>,
        mut f: impl FnMut(RowEvent<'_>, &dyn Fn(Option<usize>, String) -> Reject) -> Option<Reject>,
    ) -> Result<(), Error> {
        let mut rec = csv::ByteRecord::new();
        let width = self.headers.len();
        loop {
            match self.reader.read_byte_record(&mut rec) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => return Err(csv_fatal(&self.path, e)),
            }
            self.rows += 1;
            let line = rec.position().map_or(0, |p| p.line());
            let (name, headers, delimiter) = (&self.name, &self.headers, self.delimiter);
            let reject_for = |rec: &csv::ByteRecord, column: Option<usize>, reason: String| Reject {
                file: name.clone(),
                line,
                column: column.map(|c| headers.get(c).cloned().unwrap_or_else(|| format!("#{}", c + 1))),
                reason,
                record: raw_text(rec, delimiter),
            };
            // A line break inside a field is legal in a quoted field, and is also what an
            // unterminated quote looks like: the rows after it are swallowed into this one.
            let spans_lines = rec.as_slice().contains(&b'\n');
            let unterminated = spans_lines && self.reader.position().byte() >= self.len && !self.ends_with_quote;
            if rec.len() != width || unterminated {
                let reason = if spans_lines {
                    let to = if self.reader.position().byte() >= self.len {
                        "the end of the file".to_string()
                    } else {
                        format!("line {}", self.reader.position().line().saturating_sub(1).max(line + 1))
                    };
                    format!(
                        "unterminated quote: a quoted field opened on this line runs on to {to} ({} fields, the header has {width}); close the quote, or write a quote inside a field as \"\"",
                        rec.len()
                    )
                } else {
                    format!("wrong number of fields: {} (the header has {width})", rec.len())
                };
                rejects.push(reject_for(&rec, None, reason));
                let key = rec.get(key_col).and_then(|k| std::str::from_utf8(k).ok());
                f(RowEvent::Malformed { line, key, spans_lines }, &|c, r| reject_for(&rec, c, r));
                continue;
            }
            match csv::StringRecord::from_byte_record(std::mem::take(&mut rec)) {
                Ok(srec) => {
                    let make = |c, r| reject_for(srec.as_byte_record(), c, r);
                    if let Some(r) = f(RowEvent::Row(Row { line, rec: &srec, spans_lines }), &make) {
                        rejects.push(r);
                    }
                    rec = srec.into_byte_record();
                }
                Err(e) => {
                    let field = e.utf8_error().field();
                    rec = e.into_byte_record();
                    rejects.push(reject_for(
                        &rec,
                        Some(field),
                        "the field is not valid UTF-8; save the export as UTF-8".into(),
                    ));
                    let key = if field == key_col {
                        None
                    } else {
                        rec.get(key_col).and_then(|k| std::str::from_utf8(k).ok())
                    };
                    f(RowEvent::Malformed { line, key, spans_lines: false }, &|c, r| reject_for(&rec, c, r));
                }
            }
        }
        Ok(())
    }

    /// Rows the file probably holds, from the length of the lines in its first 64 KiB; for
    /// sizing maps up front instead of growing them.
    fn estimated_rows(&self) -> usize {
        use std::io::Read as _;
        let mut buf = vec![0u8; 1 << 16];
        let n = File::open(&self.path).and_then(|mut f| f.read(&mut buf)).unwrap_or(0);
        let lines = buf[..n].iter().filter(|b| **b == b'\n').count();
        if lines < 2 || self.len == u64::MAX {
            return 0;
        }
        (self.len as f64 / (n as f64 / lines as f64) * 1.02) as usize
    }

    fn finish(self, kind: &str, export: &mut Export) {
        let sha256 = hex(&self.reader.into_inner().hasher.finalize());
        export.inputs.push(InputInfo { kind: kind.into(), path: self.name.to_string(), sha256, rows: self.rows });
    }
}

fn last_char_is_quote(path: &Path, len: u64) -> bool {
    use std::io::{Read as _, Seek, SeekFrom};
    let tail = len.min(64);
    let mut buf = vec![0u8; tail as usize];
    let read = File::open(path).and_then(|mut f| {
        f.seek(SeekFrom::Start(len - tail))?;
        f.read_exact(&mut buf)
    });
    read.is_ok() && buf.iter().rev().find(|b| !matches!(b, b'\n' | b'\r')) == Some(&b'"')
}

fn csv_fatal(path: &Path, e: csv::Error) -> Error {
    match e.into_kind() {
        csv::ErrorKind::Io(source) => Error::Io { what: "read", path: path.to_owned(), source },
        other => Error::BadFile { path: path.to_owned(), message: format!("{other:?}") },
    }
}

fn raw_text(rec: &csv::ByteRecord, delimiter: u8) -> String {
    let mut out = String::new();
    for (i, f) in rec.iter().enumerate() {
        if i > 0 {
            out.push(delimiter as char);
        }
        out.push_str(&String::from_utf8_lossy(f));
    }
    out
}

fn describe_difference(a: &CustomerRecord, b: &CustomerRecord) -> String {
    let mut fields = Vec::new();
    for ((name, x), (_, y)) in a.api_fields().into_iter().zip(b.api_fields()) {
        if x != y {
            fields.push(name);
        }
    }
    if a.source_id() != b.source_id() {
        fields.push("customer_id");
    }
    fields.join(", ")
}

// ---------------------------------------------------------------------------------------------
// The three files

/// `source_ids`: whether to index customers by `customer_id`, which only an ownership file with
/// a customer_id column needs (600 k map entries saved at a million devices otherwise).
fn read_customers(spec: &FileSpec<CustomerColumns>, source_ids: bool, export: &mut Export) -> Result<Customers, Error> {
    let cols = &spec.columns;
    let mut file = CsvFile::open(&spec.path, spec.delimiter)?;
    let email_col = file.required(&cols.email, "customers", "email")?;
    let name_col = file.column(&cols.name)?;
    let phone_col = file.column(&cols.phone)?;
    let address_col = file.column(&cols.address)?;
    let id_col = file.column(&cols.customer_id)?;

    let mut out = Customers::default();
    out.entries.reserve(file.estimated_rows());
    out.present = PresentFields {
        name: name_col.is_some(),
        phone: phone_col.is_some(),
        address: address_col.is_some(),
        customer_id: id_col.is_some(),
    };
    let mut held = FxHashSet::default();
    let mut warnings = Vec::new();
    let mut rejects = Vec::new();
    let name = file.name.clone();
    file.for_each_row(
        email_col,
        &mut rejects,
        |event, reject| {
            let row = match event {
                RowEvent::Row(row) => row,
                RowEvent::Malformed { key, .. } => {
                    if let Some(e) = key.and_then(|k| Email::parse(k).ok()) {
                        held.insert(e);
                    }
                    return None;
                }
            };
            let email = match Email::parse(row.field(email_col)) {
                Ok(e) => e,
                Err(why) => {
                    return Some(reject(Some(email_col), format!("invalid email {:?}: {why}", row.field(email_col).trim())));
                }
            };
            let cells = [name_col, phone_col, address_col, id_col].map(|c| row.cell(c));
            if let Some(i) = cells.iter().position(|c| c.is_some_and(|v| v.contains(UNIT_SEPARATOR))) {
                let col = [name_col, phone_col, address_col, id_col][i];
                return Some(reject(col, "the cell contains the control character U+001F; remove it".into()));
            }
            let record = CustomerRecord::new(cells[0], cells[1], cells[2], cells[3]);
            let entry = out.entries.entry(email);
            if let Entry::Occupied(prev) = &entry {
                let (email, prev) = (prev.key(), prev.get());
                if prev.record == record {
                    warnings.push(Warning {
                        file: name.clone(),
                        line: row.line,
                        message: format!("customer {email} repeats line {} exactly; the rows were merged", prev.line),
                    });
                    return None;
                }
                let what = describe_difference(&prev.record, &record);
                let r = reject(
                    None,
                    format!(
                        "customer {email} is already on line {} with a different {what}; the customer is left unchanged until the export agrees with itself",
                        prev.line
                    ),
                );
                held.insert(email.clone());
                return Some(r);
            }
            if let Some(id) = record.source_id().filter(|_| source_ids) {
                match out.by_source_id.get_mut(id) {
                    None => {
                        out.by_source_id.insert(id.into(), SourceId::One(entry.key().clone(), row.line));
                    }
                    Some(slot) => {
                        if let SourceId::One(_, first) = *slot {
                            *slot = SourceId::Ambiguous(first, row.line);
                        }
                    }
                }
            }
            entry.or_insert(CustomerEntry { line: row.line, record });
            None
        },
    )?;
    out.held = held;
    for e in &out.held {
        out.entries.swap_remove(e);
    }
    export.warnings.extend(warnings);
    export.rejects.extend(rejects);
    file.finish("customers", export);
    Ok(out)
}

fn read_devices(spec: &DeviceFileSpec, export: &mut Export) -> Result<Devices, Error> {
    let cols = &spec.file.columns;
    let mut file = CsvFile::open(&spec.file.path, spec.file.delimiter)?;
    let ident_col = file.required(&cols.identifier, "devices", "identifier")?;
    let type_col = file.column(&cols.device_type)?;
    for ignored in &spec.ignore_columns {
        if file.column(ignored)?.is_none() {
            tracing::warn!(file = %file.name, column = %ignored, "ignore_columns names a column the header does not have");
        }
    }
    // Property columns, sorted by key as the canonical encoding wants, with each key already
    // written as JSON.
    let mut props: Vec<(String, usize)> = Vec::new();
    let mut seen = FxHashSet::default();
    for (i, h) in file.headers.iter().enumerate() {
        if i == ident_col || Some(i) == type_col || spec.ignore_columns.iter().any(|c| c.trim().eq_ignore_ascii_case(h))
        {
            continue;
        }
        if h.is_empty() {
            return Err(Error::BadFile {
                path: file.path.clone(),
                message: format!("column {} has an empty header; name it or list it in ignore_columns", i + 1),
            });
        }
        if !seen.insert(h.clone()) {
            return Err(Error::BadFile {
                path: file.path.clone(),
                message: format!("the header names property column {h:?} twice; rename one of them"),
            });
        }
        props.push((h.clone(), i));
    }
    props.sort();
    let props: Vec<(String, usize)> = props
        .into_iter()
        .map(|(k, i)| {
            let mut key = String::new();
            push_json_str(&mut key, &k);
            key.push(':');
            (key, i)
        })
        .collect();

    let mut types: FxHashMap<Box<str>, Arc<str>> = FxHashMap::default();
    let mut out = Devices::default();
    out.entries.reserve(file.estimated_rows());
    let mut held = FxHashSet::default();
    let mut warnings = Vec::new();
    let mut rejects = Vec::new();
    let name = file.name.clone();
    let delimiter = file.delimiter;
    let mut buf = String::new();
    file.for_each_row(
        ident_col,
        &mut rejects,
        |event, reject| {
            let row = match event {
                RowEvent::Row(row) => row,
                RowEvent::Malformed { key, .. } => {
                    if let Some(d) = key.and_then(|k| DeviceIdent::parse(k).ok()) {
                        held.insert(d);
                    }
                    return None;
                }
            };
            let ident = match DeviceIdent::parse(row.field(ident_col)) {
                Ok(d) => d,
                Err(why) => return Some(reject(Some(ident_col), why)),
            };
            let device_type = type_col.and_then(|c| {
                let t = row.field(c).trim();
                if t.is_empty() {
                    return None;
                }
                // Looked up before inserting: a handful of types over a million rows.
                Some(match types.get(t) {
                    Some(a) => a.clone(),
                    None => types.entry(t.into()).or_insert_with(|| t.into()).clone(),
                })
            });
            buf.clear();
            buf.push('{');
            for (key, i) in &props {
                let v = row.field(*i).trim();
                if v.is_empty() {
                    continue;
                }
                if buf.len() > 1 {
                    buf.push(',');
                }
                buf.push_str(key);
                push_json_str(&mut buf, v);
            }
            buf.push('}');
            let record = DeviceRecord { device_type, properties: Properties::from_canonical(&buf) };
            let entry = out.entries.entry(ident);
            if let Entry::Occupied(prev) = &entry {
                let (ident, prev) = (prev.key(), prev.get());
                if prev.record == record {
                    warnings.push(Warning {
                        file: name.clone(),
                        line: row.line,
                        message: format!("device {ident} repeats line {} exactly; the rows were merged", prev.line),
                    });
                    return None;
                }
                let r = reject(
                    None,
                    format!(
                        "device {ident} is already on line {} with different values; the device is left unchanged until the export agrees with itself",
                        prev.line
                    ),
                );
                held.insert(ident.clone());
                return Some(r);
            }
            if record.device_type.is_none() {
                out.untyped_records.insert(entry.key().clone(), raw_text(row.rec.as_byte_record(), delimiter));
            }
            entry.or_insert(DeviceEntry { line: row.line, record });
            None
        },
    )?;
    out.held = held;
    for d in &out.held {
        out.entries.swap_remove(d);
        out.untyped_records.remove(d);
    }
    export.warnings.extend(warnings);
    export.rejects.extend(rejects);
    file.finish("devices", export);
    Ok(out)
}

fn read_ownership(spec: &FileSpec<OwnershipColumns>, export: &mut Export) -> Result<Ownership, Error> {
    let cols = &spec.columns;
    let mut file = CsvFile::open(&spec.path, spec.delimiter)?;
    let device_col = file.required(&cols.device_identifier, "ownership", "device_identifier")?;
    let email_col = file.column(&cols.customer_email)?;
    let id_col = file.column(&cols.customer_id)?;
    if email_col.is_none() && id_col.is_none() {
        return Err(Error::MissingColumn {
            path: file.path.clone(),
            wanted: format!("{:?} or {:?}", cols.customer_email, cols.customer_id),
            found: file.found_headers(),
            section: "ownership",
            key: "customer_email",
        });
    }
    let mut out = Ownership::default();
    let mut rejects = Vec::new();
    let mut held_devices = FxHashSet::default();
    let mut held_customers = FxHashSet::default();
    let mut unattributed = Vec::new();
    let mut rows = Vec::with_capacity(file.estimated_rows());
    file.for_each_row(
        device_col,
        &mut rejects,
        |event, reject| {
            let row = match event {
                RowEvent::Row(row) => row,
                RowEvent::Malformed { line, key, spans_lines } => {
                    // A row that swallowed the rows after it may hide any assignment, whatever its key.
                    match key.and_then(|k| DeviceIdent::parse(k).ok()) {
                        Some(d) if !spans_lines => {
                            held_devices.insert(d);
                        }
                        _ => unattributed.push(line),
                    }
                    return None;
                }
            };
            if row.spans_lines {
                // No device identifier or email holds a line break: this row swallowed others.
                unattributed.push(row.line);
                return Some(reject(
                    None,
                    "a quoted field runs over several lines, so a quote is probably left open on this line and the rows after it were read into it; close the quote".into(),
                ));
            }
            let device = DeviceIdent::parse(row.field(device_col));
            let email_cell = email_col.map(|c| row.field(c).trim()).filter(|s| !s.is_empty());
            let id_cell = id_col.map(|c| row.field(c).trim()).filter(|s| !s.is_empty());
            let customer = match (email_cell, id_cell) {
                (Some(e), _) => Email::parse(e).map(CustomerRef::Email).map_err(|why| (email_col, format!("invalid email {e:?}: {why}"))),
                (None, Some(id)) => Ok(CustomerRef::SourceId(id.into())),
                (None, None) => Err((None, "the row names no customer: both customer_email and customer_id are empty".to_string())),
            };
            match (device, customer) {
                (Ok(device), Ok(customer)) => {
                    rows.push(OwnershipRow { line: row.line, device, customer });
                    None
                }
                (Ok(device), Err((col, why))) => {
                    held_devices.insert(device);
                    Some(reject(col, why))
                }
                (Err(why), customer) => {
                    match customer {
                        Ok(CustomerRef::Email(e)) => {
                            held_customers.insert(e);
                        }
                        _ => unattributed.push(row.line),
                    }
                    Some(reject(Some(device_col), why))
                }
            }
        },
    )?;
    out.rows = rows;
    out.held_devices = held_devices;
    out.held_customers = held_customers;
    out.unattributed = unattributed;
    export.rejects.extend(rejects);
    file.finish("ownership", export);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CustomerColumns, DeviceColumns, OwnershipColumns};

    struct Files(tempfile::TempDir);

    impl Files {
        fn new(files: &[(&str, &[u8])]) -> Files {
            let dir = tempfile::tempdir().unwrap();
            for (name, content) in files {
                std::fs::write(dir.path().join(name), content).unwrap();
            }
            Files(dir)
        }

        fn sources(&self) -> Sources {
            let p = |n: &str| {
                let path = self.0.path().join(n);
                path.exists().then_some(path)
            };
            Sources {
                customers: p("c.csv").map(|path| FileSpec {
                    path,
                    delimiter: b',',
                    columns: CustomerColumns::default(),
                }),
                devices: p("d.csv").map(|path| DeviceFileSpec {
                    file: FileSpec { path, delimiter: b',', columns: DeviceColumns::default() },
                    ignore_columns: vec!["notes".into()],
                }),
                ownership: p("o.csv").map(|path| FileSpec {
                    path,
                    delimiter: b',',
                    columns: OwnershipColumns::default(),
                }),
            }
        }

        fn load(&self) -> Export {
            let mut e = read(&self.sources()).unwrap();
            resolve(&mut e, &SnapshotData::default());
            e
        }
    }

    /// Each bad row: (file content, expected line, expected reason fragment).
    #[test]
    fn bad_customer_rows() {
        let cases: &[(&[u8], u64, &str)] = &[
            (b"email,name\nnope,A\n", 2, "invalid email \"nope\": email has no '@'"),
            (b"email,name\na@x.io,A,extra\n", 2, "wrong number of fields: 3 (the header has 2)"),
            (b"email,name\na@x.io,A\nb@x.io,\"B\n", 3, "unterminated quote"),
            (b"email,name\na@x.io,\xff\n", 2, "not valid UTF-8"),
            (b"email,name\na@x.io,A\nA@X.IO,B\n", 3, "already on line 2 with a different name"),
        ];
        for (content, line, reason) in cases {
            let e = Files::new(&[("c.csv", content)]).load();
            assert_eq!(e.rejects.len(), 1, "{:?}: {:?}", String::from_utf8_lossy(content), e.rejects);
            assert_eq!(e.rejects[0].line, *line);
            assert!(e.rejects[0].reason.contains(reason), "{:?} lacks {reason:?}", e.rejects[0].reason);
        }
    }

    #[test]
    fn a_customer_id_two_emails_share_is_ambiguous() {
        let e = Files::new(&[
            ("c.csv", b"email,customer_id\na@x.io,C1\nb@x.io,C1\nc@x.io,C2\n"),
            ("d.csv", b"identifier,type\nD1,t\nD2,t\n"),
            ("o.csv", b"device_identifier,customer_id\nD1,C1\nD2,C2\n"),
        ])
        .load();
        assert_eq!(e.rejects.len(), 1, "{:?}", e.rejects);
        assert_eq!(e.rejects[0].line, 2);
        assert!(e.rejects[0].reason.contains("ambiguous") && e.rejects[0].reason.contains("lines 2 and 3"));
        let owners = &e.ownership.unwrap().owners;
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[&DeviceIdent::parse("D2").unwrap()].as_slice(), [Email::parse("c@x.io").unwrap()]);
    }

    #[test]
    fn ownership_in_any_row_order_gives_the_same_owners_and_warnings() {
        let customers: &[u8] = b"email\na@x.io\nb@x.io\n";
        let devices: &[u8] = b"identifier,type\nD1,t\nD2,t\n";
        let sorted: &[u8] = b"device_identifier,customer_email\nD1,b@x.io\nD1,a@x.io\nD1,b@x.io\nD2,a@x.io\n";
        let shuffled: &[u8] = b"device_identifier,customer_email\nD2,a@x.io\nD1,b@x.io\nD1,a@x.io\nD1,b@x.io\n";
        let load = |own| {
            let e = Files::new(&[("c.csv", customers), ("d.csv", devices), ("o.csv", own)]).load();
            let owners: Vec<(String, Vec<String>)> = e
                .ownership
                .unwrap()
                .owners
                .iter()
                .map(|(d, o)| (d.to_string(), o.iter().map(Email::to_string).collect()))
                .collect();
            (owners, e.warnings.into_iter().map(|w| (w.line, w.message)).collect::<Vec<_>>())
        };
        let (owners, warnings) = load(sorted);
        assert_eq!(
            owners,
            [("D1".into(), vec!["a@x.io".into(), "b@x.io".into()]), ("D2".into(), vec!["a@x.io".into()])]
        );
        assert_eq!(warnings, [(4, "device D1 is assigned to b@x.io again; the rows were merged".to_string())]);
        let (owners_too, warnings_too) = load(shuffled);
        assert_eq!(owners_too, owners);
        assert_eq!(warnings_too, [(5, "device D1 is assigned to b@x.io again; the rows were merged".to_string())]);
    }

    #[test]
    fn conflicting_rows_hold_the_customer() {
        let e = Files::new(&[("c.csv", b"email,name\na@x.io,A\nb@x.io,B\na@x.io,Z\n")]).load();
        let c = e.customers.unwrap();
        assert!(c.held.contains(&Email::parse("a@x.io").unwrap()));
        assert!(!c.entries.contains_key(&Email::parse("a@x.io").unwrap()), "a held customer is not planned");
        assert_eq!(c.entries.len(), 1);
    }

    #[test]
    fn device_properties_come_from_every_other_column() {
        let e = Files::new(&[("d.csv", b"identifier,notes,type,zeta,alpha\n SN1 ,x,t, z ,\n")]).load();
        let d = &e.devices.unwrap().entries[&DeviceIdent::parse("SN1").unwrap()];
        assert_eq!(d.record.device_type.as_deref(), Some("t"));
        assert_eq!(d.record.properties.as_json(), r#"{"zeta":"z"}"#, "empty cells are absent, ignored columns skipped");
    }

    #[test]
    fn ownership_rows_that_name_nothing_known_are_rejected_and_hold_their_device() {
        let e = Files::new(&[
            ("c.csv", b"email\na@x.io\n"),
            ("d.csv", b"identifier,type\nD1,t\n"),
            ("o.csv", b"device_identifier,customer_email\nD1,a@x.io\nD1,b@x.io\nD9,a@x.io\n"),
        ])
        .load();
        let reasons: Vec<(u64, &str)> = e.rejects.iter().map(|r| (r.line, r.reason.as_str())).collect();
        assert_eq!(
            reasons,
            vec![
                (3, "customer b@x.io is in neither the customers file nor the snapshot"),
                (4, "device D9 is in neither the devices file nor the snapshot"),
            ]
        );
        let own = e.ownership.unwrap();
        assert!(own.held_devices.contains(&DeviceIdent::parse("D1").unwrap()));
        assert!(own.owners.is_empty(), "a held device's rows are not applied");
    }

    #[test]
    fn a_multi_line_ownership_row_is_unattributed() {
        let e = Files::new(&[("o.csv", b"device_identifier,customer_email\n\"D1\nD2\",a@x.io\n")]).load();
        assert_eq!(e.ownership.unwrap().unattributed, vec![2]);
    }

    #[test]
    fn inputs_are_hashed_and_counted() {
        let e = Files::new(&[("c.csv", b"email\na@x.io\nb@x.io\n")]).load();
        assert_eq!(e.inputs[0].rows, 2);
        assert_eq!(
            e.inputs[0].sha256, "ee90e3e78f191628a2ecbf755c4ee4cc0dcfb364f13cd6d11c01c6d0dcf3f3d2",
            "sha256 of the bytes as read"
        );
    }
}
