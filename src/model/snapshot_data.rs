//! The snapshot's contents as read: what Telemetron has been told, by key, and which state of
//! which file it came from. Defined here, not in `snapshot`, so that the loader's resolution and
//! the differ take it without importing the store.

use rustc_hash::FxHashMap;
use serde::Serialize;

use super::{CustomerRecord, DeviceIdent, DeviceRecord, Devices, Email, Owners, Properties, SortedMap, TelemetronId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCustomer {
    pub telemetron_id: Option<TelemetronId>,
    pub record: CustomerRecord,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDevice {
    pub telemetron_id: Option<TelemetronId>,
    pub record: DeviceRecord,
    /// The device's owners, sorted. Kept here rather than in a map of their own: one entry and
    /// one copy of the identifier per device.
    pub owners: Owners,
}

impl StoredDevice {
    pub(crate) fn placeholder() -> StoredDevice {
        StoredDevice {
            telemetron_id: None,
            record: DeviceRecord { device_type: None, properties: Properties::empty() },
            owners: Owners::new(),
        }
    }
}

/// Which snapshot, and which state of it, a value was read from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SnapshotVersion {
    /// Random id given to the file when it was created; `None` when there is no file yet. A
    /// saved plan made while the file was missing holds the id the file will get when that
    /// plan creates it (with `missing` set).
    pub id: Option<String>,
    /// The file did not exist when the plan was made.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub missing: bool,
    /// Bumped by every write.
    pub generation: u64,
    pub schema: i64,
}

/// Everything in the snapshot, in memory, each map sorted by key — or, read beside the export
/// (`front::prepare`), everything but the rows equal to the export's, which are only marked
/// ([`SameCustomers`], [`SameDevices`]).
#[derive(Debug, Default)]
pub struct SnapshotData {
    /// The customers, or those a shared read found not equal to the export's.
    pub customers: SortedMap<Email, StoredCustomer>,
    /// The devices with their owners, or those a shared read found not equal to the export's.
    pub devices: SortedMap<DeviceIdent, StoredDevice>,
    pub version: SnapshotVersion,
    /// The customers a shared read found equal to the export's (empty after a plain read).
    pub same_customers: SameCustomers,
    /// The devices a shared read found equal to the export's, with their owners.
    pub same_devices: SameDevices,
}

impl SnapshotData {
    /// The source ids of the customers held in full. (A customer equal to the export's has the
    /// export's id, which the customers file answers for first.)
    pub fn customers_by_source_id(&self) -> FxHashMap<&str, &Email> {
        self.customers.iter().filter_map(|(e, c)| Some((c.record.source_id()?, e))).collect()
    }

    pub fn assignment_count(&self) -> usize {
        self.devices.values().map(|d| d.owners.len()).sum::<usize>() + self.same_devices.owner_count()
    }

    /// How many customers, devices and assignments the snapshot holds: the guard's bases.
    pub fn totals(&self) -> Totals {
        Totals {
            customers: (self.customers.len() + self.same_customers.len()) as u64,
            devices: (self.devices.len() + self.same_devices.len()) as u64,
            assignments: self.assignment_count() as u64,
        }
    }

    /// The owners of `device` as a plain read (`snapshot::read`) has them (none for an unknown
    /// device).
    pub fn owners_of(&self, device: &DeviceIdent) -> &[Email] {
        debug_assert!(self.same_devices.is_empty(), "owners_of on a read that shared with the export");
        self.devices.get(device).map_or(&[], |d| d.owners.as_slice())
    }

    /// Whether the snapshot has `device`, held in full or marked equal to its entry in
    /// `export` (the devices file it was read beside).
    pub fn has_device(&self, device: &DeviceIdent, export: Option<&Devices>) -> bool {
        self.devices.contains_key(device)
            || (!self.same_devices.is_empty()
                && export.and_then(|d| d.entries.get_index_of(device)).is_some_and(|i| self.same_devices.contains(i)))
    }
}

/// The customers a read beside the export found equal to it — the same email and the same
/// record — marked by their index in the export's map instead of held: on a day 2 nearly all of
/// them, and the differ has nothing to change on any. Their Telemetron ids are not kept:
/// nothing a plan makes needs the id of an unchanged customer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SameCustomers {
    /// By the export's index.
    marked: Vec<bool>,
    count: usize,
}

impl SameCustomers {
    /// For an export of `n` customers, none marked yet.
    pub(crate) fn new(n: usize) -> SameCustomers {
        SameCustomers { marked: vec![false; n], count: 0 }
    }

    pub(crate) fn mark(&mut self, index: usize) {
        if let Some(m) = self.marked.get_mut(index).filter(|m| !**m) {
            *m = true;
            self.count += 1;
        }
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether the export's customer at `index` is one of them.
    pub fn contains(&self, index: usize) -> bool {
        self.marked.get(index).copied().unwrap_or(false)
    }

    /// One flag per export entry (`len` of them): set for the customers marked.
    pub(crate) fn flags(&self, len: usize) -> Vec<bool> {
        let mut f = self.marked.clone();
        f.resize(len, false);
        f
    }
}

/// The devices a read beside the export found equal to it (identifier, type and properties),
/// marked by their index in the export's map, in key order, with their owners: about 12 bytes
/// per device and, per owner, its email's local part and the number of its domain (a few dozen
/// domains serve a million customers), instead of an entry, a record and an allocation per
/// owner. As with [`SameCustomers`], their Telemetron ids are not kept.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SameDevices {
    /// By the export's index.
    marked: Vec<bool>,
    /// The export indices of the devices marked, in key order.
    order: Vec<u32>,
    /// Per device of `order`, where its owners start in `owner_ends`; one more at the end.
    owner_start: Vec<u32>,
    /// The owners' emails' local parts (the whole email where its domain has no number) one
    /// after the other, in chunks of [`SameDevices::CHUNK`] bytes that are filled and never
    /// grown (a string grown by doubling left its earlier, copied buffers resident: 25 MB at
    /// 1 M devices); where each one ends, counting each chunk as `CHUNK` long; and the number
    /// of its domain.
    owner_text: Vec<String>,
    owner_ends: Vec<u32>,
    owner_domains: Vec<u16>,
    /// The domains, by number, and (while owners are pushed) their numbers.
    domains: Vec<Box<str>>,
    domain_numbers: rustc_hash::FxHashMap<Box<str>, u16>,
}

/// An owner of a marked device, as [`SameDevices::owners`] gives it. (Not `PartialEq`: one
/// email may be held split or whole; [`OwnerEmail::is`] compares the email.)
#[derive(Debug, Clone, Copy)]
pub struct OwnerEmail<'a> {
    pub(super) local: &'a str,
    /// Empty when `local` is the whole email.
    pub(super) domain: &'a str,
}

impl OwnerEmail<'_> {
    /// Whether this is the email `s`.
    pub fn is(&self, s: &str) -> bool {
        if self.domain.is_empty() {
            return self.local == s;
        }
        s.len() == self.local.len() + 1 + self.domain.len()
            && s.starts_with(self.local)
            && s.as_bytes()[self.local.len()] == b'@'
            && s.ends_with(self.domain)
    }

    pub fn to_email(self) -> Email {
        if self.domain.is_empty() {
            return Email::from_trusted(self.local);
        }
        Email::from_trusted(&format!("{}@{}", self.local, self.domain))
    }
}

impl std::fmt::Display for OwnerEmail<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.domain {
            "" => f.write_str(self.local),
            domain => write!(f, "{}@{domain}", self.local),
        }
    }
}

impl SameDevices {
    /// The number of no domain: the owner's text is its whole email.
    const NO_DOMAIN: u16 = u16::MAX;
    /// The size of a chunk of `owner_text`.
    const CHUNK: usize = 1 << 20;

    /// For an export of `n` devices, none marked yet, and room for `devices` devices and
    /// `owners` owners (the snapshot's counts: no vector grows by doubling).
    pub(crate) fn new(n: usize, devices: usize, owners: usize) -> SameDevices {
        let mut same = SameDevices { marked: vec![false; n], ..SameDevices::default() };
        if n > 0 {
            let devices = devices.min(n);
            same.order.reserve_exact(devices);
            same.owner_start.reserve_exact(devices + 1);
            same.owner_ends.reserve_exact(owners);
            same.owner_domains.reserve_exact(owners);
        }
        same
    }

    /// Marks the export's device at `index`, the next in key order; its owners follow (see
    /// [`SameDevices::push_owner`]). `false` if it is no index of the export, or a count outgrew
    /// `u32` (then read without sharing).
    pub(crate) fn push(&mut self, index: usize) -> bool {
        let Some(m) = self.marked.get_mut(index).filter(|m| !**m) else { return false };
        let Ok(i) = u32::try_from(index) else { return false };
        *m = true;
        self.order.push(i);
        true
    }

    /// Appends an owner of the device at `position` in key order; owners come in device order.
    /// `false` if the text outgrew `u32`.
    pub(crate) fn push_owner(&mut self, position: usize, email: &str) -> bool {
        let Ok(at) = u32::try_from(self.owner_ends.len()) else { return false };
        while self.owner_start.len() <= position {
            self.owner_start.push(at);
        }
        let (text, domain) = match email.rsplit_once('@') {
            Some((local, domain)) => match self.domain_number(domain) {
                Some(n) => (local, n),
                None => (email, Self::NO_DOMAIN),
            },
            None => (email, Self::NO_DOMAIN),
        };
        if text.len() > Self::CHUNK {
            return false;
        }
        if self.owner_text.last().is_none_or(|c| c.len() + text.len() > Self::CHUNK) {
            self.owner_text.push(String::with_capacity(Self::CHUNK));
        }
        let chunks = self.owner_text.len() - 1;
        let Some(chunk) = self.owner_text.last_mut() else { return false };
        chunk.push_str(text);
        let Ok(end) = u32::try_from(chunks * Self::CHUNK + chunk.len()) else { return false };
        self.owner_ends.push(end);
        self.owner_domains.push(domain);
        true
    }

    /// The number of `domain`, given it if it has none; `None` once the numbers ran out.
    fn domain_number(&mut self, domain: &str) -> Option<u16> {
        if let Some(&n) = self.domain_numbers.get(domain) {
            return Some(n);
        }
        let n = u16::try_from(self.domains.len()).ok().filter(|&n| n != Self::NO_DOMAIN)?;
        self.domains.push(domain.into());
        self.domain_numbers.insert(domain.into(), n);
        Some(n)
    }

    /// Closes the owner lists once every owner is in. `false` if a count outgrew `u32`.
    pub(crate) fn finish(&mut self) -> bool {
        let Ok(at) = u32::try_from(self.owner_ends.len()) else { return false };
        while self.owner_start.len() <= self.order.len() {
            self.owner_start.push(at);
        }
        self.domain_numbers = Default::default();
        true
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    pub fn owner_count(&self) -> usize {
        self.owner_ends.len()
    }

    /// Whether the export's device at `index` is one of them.
    pub fn contains(&self, index: usize) -> bool {
        self.marked.get(index).copied().unwrap_or(false)
    }

    /// One flag per export entry (`len` of them): set for the devices marked.
    pub(crate) fn flags(&self, len: usize) -> Vec<bool> {
        let mut f = self.marked.clone();
        f.resize(len, false);
        f
    }

    /// The export indices of the devices, in key order.
    pub fn order(&self) -> &[u32] {
        &self.order
    }

    /// The owners of the device at `position` in key order, sorted.
    pub fn owners(&self, position: usize) -> impl ExactSizeIterator<Item = OwnerEmail<'_>> + Clone + '_ {
        let at = |k: usize| self.owner_start.get(k).map_or(self.owner_ends.len(), |&s| s as usize);
        let (from, to) = (at(position), at(position + 1));
        (from..to.max(from)).map(move |j| {
            // An owner lies in one chunk: where the one before it ends, or that chunk's start.
            let end = self.owner_ends[j] as usize;
            let chunk = end.saturating_sub(1) / Self::CHUNK;
            let at = chunk * Self::CHUNK;
            let start = if j == 0 { 0 } else { self.owner_ends[j - 1] as usize }.max(at);
            let text = self.owner_text.get(chunk).and_then(|c| c.get(start - at..end - at)).unwrap_or_default();
            match self.domains.get(self.owner_domains[j] as usize) {
                Some(domain) => OwnerEmail { local: text, domain },
                None => OwnerEmail { local: text, domain: "" },
            }
        })
    }

    /// After the export's map moved its entry at `from` to `to` (`swap_remove` of the entry at
    /// `to`, which is not one of them): follows it. `key(i)` is the key now at index `i`.
    pub(crate) fn moved<'k>(&mut self, from: usize, to: usize, key: impl Fn(usize) -> &'k str) {
        let was = self.contains(from);
        if let Some(m) = self.marked.get_mut(to) {
            *m = was;
        }
        self.marked.truncate(from.min(self.marked.len()));
        if !was {
            return;
        }
        let moved = key(to);
        // The order is by key: find the entry by the key it has, now at `to`.
        let k = |i: u32| if i as usize == from { moved } else { key(i as usize) };
        if let Ok(p) = self.order.binary_search_by(|&i| k(i).cmp(moved)) {
            self.order[p] = to as u32;
        }
    }
}

/// What the snapshot holds: the bases of the guard's limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub customers: u64,
    pub devices: u64,
    pub assignments: u64,
}
