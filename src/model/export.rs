//! The exports as the loader hands them on: validated entities by key, the rows it held or
//! rejected, and what it read. Defined here, not in `load`, so that the differ and the planner
//! take them without importing the loader.

use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;

use super::{CustomerRecord, DeviceIdent, DeviceRecord, Email, KeyMap};

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
        // A snapshot read beside the export shares every record equal to the export's.
        if export.is_shared_with(stored) {
            return false;
        }
        if self.name && self.phone && self.address {
            return export.api_fields() != stored.api_fields();
        }
        (self.name && export.name() != stored.name())
            || (self.phone && export.phone() != stored.phone())
            || (self.address && export.address() != stored.address())
    }
}

/// The devices file, validated.
#[derive(Debug, Default)]
pub struct Devices {
    pub entries: KeyMap<DeviceIdent, DeviceEntry>,
    /// Devices with a rejected row: left unchanged, with their assignments.
    pub held: FxHashSet<DeviceIdent>,
    /// Rows with an empty type, kept as read in case the device turns out to be new.
    pub(crate) untyped_records: FxHashMap<DeviceIdent, String>,
}

/// The assignments the ownership file wants: one row per device and customer, sorted by device
/// then customer, each naming its customer by email — the resolved rows themselves (56 bytes
/// each), not a map of devices to owner lists built beside them.
#[derive(Debug, Default)]
pub struct Wanted(Vec<OwnershipRow>);

impl Wanted {
    /// From rows sorted by device then customer, unique, each naming its customer by email.
    pub(crate) fn from_sorted(rows: Vec<OwnershipRow>) -> Wanted {
        debug_assert!(
            rows.windows(2).all(|w| (&w[0].device, w[0].customer.as_str()) < (&w[1].device, w[1].customer.as_str()))
        );
        Wanted(rows)
    }

    pub(crate) fn as_slice(&self) -> &[OwnershipRow] {
        &self.0
    }

    /// How many assignments.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Frees the rows' room for what is built after the assignment diff, their last reader.
    /// Their keys are left where they are, uncounted: most are the export's own, shared, and a
    /// count dropped for each of 10 M rows is a cache miss each (the run's end leaves the rest
    /// in the same way; see `cmd::release`).
    pub fn release(&mut self) {
        std::mem::take(&mut self.0).into_iter().for_each(std::mem::forget);
    }

    /// Each device with its owners, in device order.
    pub fn by_device(&self) -> impl Iterator<Item = (&DeviceIdent, Vec<&Email>)> {
        self.0
            .chunk_by(|a, b| a.device == b.device)
            .map(|rows| (&rows[0].device, rows.iter().filter_map(|r| r.customer.email()).collect()))
    }
}

/// How an ownership row names its customer.
#[derive(Debug, Clone)]
pub(crate) enum CustomerRef {
    Email(Email),
    /// An email the customers file has: its key there (found as the row was read, so that the
    /// resolution need not look it up again).
    InFile(Email),
    SourceId(Box<str>),
}

impl CustomerRef {
    pub(crate) fn as_str(&self) -> &str {
        match self {
            CustomerRef::Email(e) | CustomerRef::InFile(e) => e.as_str(),
            CustomerRef::SourceId(id) => id,
        }
    }

    pub(crate) fn email(&self) -> Option<&Email> {
        match self {
            CustomerRef::Email(e) | CustomerRef::InFile(e) => Some(e),
            CustomerRef::SourceId(_) => None,
        }
    }
}

#[derive(Debug)]
pub(crate) struct OwnershipRow {
    pub(crate) line: u64,
    pub(crate) device: DeviceIdent,
    pub(crate) customer: CustomerRef,
}

/// The ownership file: before resolution, its rows; after, the desired owners of each device.
#[derive(Debug, Default)]
pub struct Ownership {
    pub(crate) rows: Vec<OwnershipRow>,
    /// The desired owners, from rows that resolved: the rows themselves, kept in place.
    pub owners: Wanted,
    /// Devices whose assignments stay as they are (an ownership row of theirs was rejected).
    pub held_devices: FxHashSet<DeviceIdent>,
    /// Customers whose assignments stay as they are.
    pub held_customers: FxHashSet<Email>,
    /// Rows not applied because their device or customer is held.
    pub held_rows: u64,
    /// Rejected rows whose keys could not be read as they are: resolution holds every entity
    /// each could plausibly mean, and a row that means none withholds every removal.
    pub(crate) damaged: Vec<DamagedRow>,
}

/// The raw keys of a rejected ownership row, as far as the row has them.
#[derive(Debug, Default, Clone)]
pub(crate) struct DamagedRow {
    pub(crate) line: u64,
    pub(crate) device: Option<String>,
    pub(crate) email: Option<String>,
    pub(crate) customer_id: Option<String>,
}

/// A rejected row that stops every assignment removal of the run: an ownership row that
/// cannot be attributed (its structure is broken, or it names nothing readable), or the cut
/// last row of a file that may be truncated. Any of them may be the row that keeps an
/// assignment.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct RowRef {
    pub file: Arc<str>,
    pub line: u64,
}

/// A list that keeps its first `keep` items in full and counts the rest: a file of millions of
/// bad rows costs what a few thousand do (the rows are in the file; the count says how many).
#[derive(Debug, Clone, Default)]
pub struct Capped<T> {
    pub kept: Vec<T>,
    pub unlisted: usize,
    keep: usize,
}

impl<T> Capped<T> {
    pub fn new(keep: usize) -> Capped<T> {
        Capped { kept: Vec::new(), unlisted: 0, keep }
    }

    pub fn push(&mut self, item: T) {
        if self.kept.len() < self.keep {
            self.kept.push(item);
        } else {
            self.unlisted += 1;
        }
    }
}

/// The three exports, read and validated.
#[derive(Debug, Default)]
pub struct Export {
    pub customers: Option<Customers>,
    pub devices: Option<Devices>,
    pub ownership: Option<Ownership>,
    /// The rejected rows kept in full (see `load::Limits::rejects_kept`), in file and line order.
    pub rejects: Vec<Reject>,
    /// Rejected rows past those kept, by file: counted, not listed.
    pub rejects_unlisted: Vec<(Arc<str>, usize)>,
    pub warnings: Vec<Warning>,
    /// Warnings past those kept.
    pub warnings_unlisted: usize,
    pub inputs: Vec<InputInfo>,
    /// Rows that withhold every assignment removal while they are rejected.
    pub unattributed: Vec<RowRef>,
}

impl Export {
    /// Adds a part read by [`read_part`]; parts joined in the order customers, devices,
    /// ownership give what [`read`] gives.
    pub fn join(&mut self, part: Export) {
        let Export {
            customers,
            devices,
            ownership,
            rejects,
            rejects_unlisted,
            warnings,
            warnings_unlisted,
            inputs,
            unattributed,
        } = part;
        self.customers = self.customers.take().or(customers);
        self.devices = self.devices.take().or(devices);
        self.ownership = self.ownership.take().or(ownership);
        self.rejects.extend(rejects);
        self.rejects_unlisted.extend(rejects_unlisted);
        self.warnings.extend(warnings);
        self.warnings_unlisted += warnings_unlisted;
        self.inputs.extend(inputs);
        self.unattributed.extend(unattributed);
    }

    /// Every rejected row, listed or not.
    pub fn rejected_rows(&self) -> usize {
        self.rejects.len() + self.rejects_unlisted.iter().map(|(_, n)| n).sum::<usize>()
    }

    /// The rejected rows of `file` counted but not listed.
    pub fn unlisted_rejects_of(&self, file: &str) -> usize {
        self.rejects_unlisted.iter().filter(|(f, _)| **f == *file).map(|(_, n)| n).sum()
    }

    /// Every warning, listed or not.
    pub fn warning_count(&self) -> usize {
        self.warnings.len() + self.warnings_unlisted
    }

    /// Adds one file's rejects and warnings, as many as were kept of them.
    pub(crate) fn add_capped(&mut self, file: &Arc<str>, rejects: Capped<Reject>, warnings: Capped<Warning>) {
        self.rejects.extend(rejects.kept);
        if rejects.unlisted > 0 {
            self.rejects_unlisted.push((file.clone(), rejects.unlisted));
        }
        self.warnings.extend(warnings.kept);
        self.warnings_unlisted += warnings.unlisted;
    }

    /// Adds rows rejected after reading, keeping every reject in file and line order.
    pub(crate) fn add_rejects(&mut self, late: Vec<Reject>) {
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
