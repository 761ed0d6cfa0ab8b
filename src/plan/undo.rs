//! Undo beside the plan it inverts: the undo plan from the operations' before-images, and that
//! plan checked against the snapshot as it is now.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::*;
use crate::diff::{Change, PropertyDelta};
use crate::model::{CustomerRecord, DeviceIdent, Email, Properties};

/// An operation `undo` cannot reverse: ext-v1 has no delete. (A migration has one per create:
/// the operation's name, the usual reasons and the key are shared, not a copy each.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotUndoable {
    pub op: std::borrow::Cow<'static, str>,
    pub key: smol_str::SmolStr,
    pub reason: std::borrow::Cow<'static, str>,
}

/// The undo plan of a run: the operations that put back what it changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StoredUndoPlan")]
pub struct UndoPlan {
    pub operations: Vec<Operation>,
    pub not_undoable: Vec<NotUndoable>,
}

/// An undo plan as stored ([`Inverse`] writes it): what cannot be undone in runs of one
/// operation and reason, each with its keys, in the operations' order — a migration's creates
/// are two runs of keys, not one object per create repeating the same two strings (two thirds
/// of the JSON). Earlier versions stored `not_undoable`, one object each; both are read.
#[derive(Deserialize)]
struct StoredUndoPlan {
    operations: Vec<Operation>,
    #[serde(default)]
    not_undoable: Vec<NotUndoable>,
    #[serde(default)]
    not_undoable_runs: Vec<NotUndoableRun>,
}

#[derive(Deserialize)]
struct NotUndoableRun {
    op: std::borrow::Cow<'static, str>,
    reason: std::borrow::Cow<'static, str>,
    keys: Vec<smol_str::SmolStr>,
}

impl From<StoredUndoPlan> for UndoPlan {
    fn from(s: StoredUndoPlan) -> UndoPlan {
        let mut not_undoable = s.not_undoable;
        for run in s.not_undoable_runs {
            not_undoable.extend(run.keys.into_iter().map(|key| NotUndoable {
                op: run.op.clone(),
                key,
                reason: run.reason.clone(),
            }));
        }
        UndoPlan { operations: s.operations, not_undoable }
    }
}

/// The inverse of a plan's operations, from the before-images they carry: previous field
/// values, previous type and properties, previous owners. Each inverse is harmless where the
/// original did not happen (it restores what is already there), so the whole plan can be undone
/// whichever of its operations succeeded. Creations cannot be undone.
pub fn inverse(ops: &[Operation]) -> UndoPlan {
    let view = Inverse(ops);
    UndoPlan { operations: view.operations().collect(), not_undoable: view.not_undoable().collect() }
}

/// [`inverse`] without building it: serializes as the [`UndoPlan`] it stands for is stored (see
/// `StoredUndoPlan`), making one inverse at a time (a migration's undo plan is as long as the
/// migration).
#[derive(Debug, Clone, Copy)]
pub struct Inverse<'a>(pub &'a [Operation]);

impl<'a> Inverse<'a> {
    /// The inverse operations, in the order they are to run: field updates; then removals of
    /// what the run added; then what it removed, assigned again — after the additions are
    /// undone, so that a transfer goes back the documented way too (unassign the new owner,
    /// then assign the old).
    pub fn operations(self) -> impl Iterator<Item = Operation> + 'a {
        let ops = self.0;
        let updates = ops.iter().filter_map(inverse_update);
        let unassign = ops.iter().filter_map(|op| match op {
            Operation::Assign(a) => Some(Operation::Unassign(a.clone())),
            _ => None,
        });
        let assign = ops.iter().filter_map(|op| match op {
            Operation::Unassign(a) => Some(Operation::Assign(a.clone())),
            _ => None,
        });
        updates.chain(unassign).chain(assign)
    }

    /// What cannot be undone, in the operations' order.
    pub fn not_undoable(self) -> impl Iterator<Item = NotUndoable> + 'a {
        self.0.iter().filter_map(cannot_undo).map(|(op, key, reason)| NotUndoable {
            op: op.into(),
            key: key.shared(),
            reason: reason.into(),
        })
    }
}

/// The key an operation that cannot be undone names.
enum Key<'a> {
    Customer(&'a Email),
    Device(&'a DeviceIdent),
}

impl<'a> Key<'a> {
    fn as_str(&self) -> &'a str {
        match self {
            Key::Customer(e) => e.as_str(),
            Key::Device(d) => d.as_str(),
        }
    }

    fn shared(&self) -> smol_str::SmolStr {
        match self {
            Key::Customer(e) => e.shared_text(),
            Key::Device(d) => d.shared_text(),
        }
    }
}

/// Why `op` cannot be undone, if it cannot: the operation's name, its key, the reason.
fn cannot_undo(op: &Operation) -> Option<(&'static str, Key<'_>, &'static str)> {
    match op {
        Operation::CreateCustomer(c) => {
            Some(("create_customer", Key::Customer(&c.email), "ext-v1 has no way to delete a customer"))
        }
        Operation::CreateDevice(c) => {
            Some(("create_device", Key::Device(&c.identifier), "ext-v1 has no way to delete a device"))
        }
        Operation::UpdateDevice(u) => match &u.device_type {
            Some(Change { before: None, .. }) => Some((
                "update_device",
                Key::Device(&u.identifier),
                "the device had no type before, and ext-v1 cannot clear one",
            )),
            _ => None,
        },
        _ => None,
    }
}

/// The stored form's `not_undoable_runs`, made as it is serialized: the runs' names, reasons and
/// lengths first (a few), then each run's keys taken from one pass over the operations.
struct Runs<'a>(&'a [Operation]);

impl Serialize for Runs<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        /// The next `.1` keys of the shared pass, as a sequence.
        struct Take<'r, I>(&'r std::cell::RefCell<I>, usize);
        impl<'r, 'k, I: Iterator<Item = &'k str>> Serialize for Take<'r, I> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_seq(self.0.borrow_mut().by_ref().take(self.1))
            }
        }
        /// One run: its fields in `NotUndoableRun`'s order.
        struct Run<'r, I>(&'static str, &'static str, Take<'r, I>);
        impl<'r, 'k, I: Iterator<Item = &'k str>> Serialize for Run<'r, I> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut run = serializer.serialize_struct("NotUndoableRun", 3)?;
                run.serialize_field("op", self.0)?;
                run.serialize_field("reason", self.1)?;
                run.serialize_field("keys", &self.2)?;
                run.end()
            }
        }
        let mut runs: Vec<(&'static str, &'static str, usize)> = Vec::new();
        for (op, _, reason) in self.0.iter().filter_map(cannot_undo) {
            match runs.last_mut() {
                Some((o, r, n)) if *o == op && *r == reason => *n += 1,
                _ => runs.push((op, reason, 1)),
            }
        }
        let keys = std::cell::RefCell::new(self.0.iter().filter_map(cannot_undo).map(|(_, key, _)| key.as_str()));
        serializer.collect_seq(runs.iter().map(|&(op, reason, n)| Run(op, reason, Take(&keys, n))))
    }
}

impl Serialize for Inverse<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        /// A sequence serialized from an iterator made when it is serialized.
        struct Lazy<F>(F);
        impl<F: Fn() -> I, I: Iterator<Item = T>, T: Serialize> Serialize for Lazy<F> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_seq((self.0)())
            }
        }
        let view = *self;
        let mut doc = serializer.serialize_struct("UndoPlan", 2)?;
        doc.serialize_field("operations", &Lazy(|| view.operations()))?;
        doc.serialize_field("not_undoable_runs", &Runs(view.0))?;
        doc.end()
    }
}

/// The inverse of a field update (of a customer, or a device's type and properties), if it
/// changes anything that can be put back.
fn inverse_update(op: &Operation) -> Option<Operation> {
    match op {
        Operation::UpdateCustomer(u) => {
            let field = |name: &str, now: Option<&str>| -> Option<String> {
                match u.changes.get(name) {
                    Some(c) => c.before.clone(),
                    None => now.map(Into::into),
                }
            };
            let before = CustomerRecord::new(
                field("name", u.after.name()).as_deref(),
                field("phone", u.after.phone()).as_deref(),
                field("address", u.after.address()).as_deref(),
                u.after.source_id(),
            );
            let changes = u
                .changes
                .iter()
                .map(|(k, c)| (k.clone(), Change { before: c.after.clone(), after: c.before.clone() }))
                .collect();
            Some(Operation::UpdateCustomer(Box::new(CustomerUpdateDoc {
                email: u.email.clone(),
                telemetron_id: u.telemetron_id.clone(),
                changes,
                after: before,
            })))
        }
        Operation::UpdateDevice(u) => {
            // A type set where there was none cannot be put back (see `not_undoable`).
            let device_type = u
                .device_type
                .as_ref()
                .filter(|c| c.before.is_some())
                .map(|c| Change { before: c.after.clone(), after: c.before.clone() });
            let (properties, properties_after) = match (&u.properties, &u.properties_after) {
                (Some(delta), Some(after)) => {
                    let before = Properties::from_map(&delta.taken_back(after));
                    (Some(PropertyDelta::between(after, &before)), Some(before))
                }
                _ => (None, None),
            };
            (device_type.is_some() || properties.is_some()).then(|| {
                Operation::UpdateDevice(Box::new(DeviceUpdateDoc {
                    identifier: u.identifier.clone(),
                    telemetron_id: u.telemetron_id.clone(),
                    device_type,
                    properties,
                    properties_after,
                }))
            })
        }
        _ => None,
    }
}

/// An undo plan checked against the snapshot as it is now: what may still be put back, and
/// what changed since the run (by a later run or an event), which is left alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UndoNow {
    pub operations: Vec<Operation>,
    pub conflicts: Vec<NotUndoable>,
}

/// Keeps the inverse operations whose entity is still as the run left it. An inverse field
/// update's `changes[k].before` is what the run set; an inverse unassign is a pair the run
/// added and an inverse assign one it removed, so a device is put back only while its owners
/// still hold every pair the run added and none it removed (a transfer since then is left as
/// it is, whole). Pure: the present is the snapshot, read by the caller.
pub fn undo_against(undo: &UndoPlan, snap: &crate::model::SnapshotData) -> UndoNow {
    let mut added: BTreeMap<&DeviceIdent, Vec<&Email>> = BTreeMap::new();
    let mut removed: BTreeMap<&DeviceIdent, Vec<&Email>> = BTreeMap::new();
    for op in &undo.operations {
        match op {
            Operation::Unassign(a) => added.entry(&a.device).or_default().push(&a.customer),
            Operation::Assign(a) => removed.entry(&a.device).or_default().push(&a.customer),
            _ => {}
        }
    }
    let untouched = |d: &DeviceIdent| {
        let owners = snap.owners_of(d);
        added.get(d).is_none_or(|l| l.iter().all(|c| owners.contains(c)))
            && removed.get(d).is_none_or(|l| l.iter().all(|c| !owners.contains(c)))
    };
    let conflict = |op: &str, key: String, reason: String| NotUndoable {
        op: op.to_owned().into(),
        key: key.into(),
        reason: reason.into(),
    };
    let mut now = UndoNow::default();
    for op in &undo.operations {
        let skip = match op {
            Operation::UpdateCustomer(u) => {
                let present = snap.customers.get(&u.email).map(|c| &c.record);
                let field = |r: &CustomerRecord, k: &str| match k {
                    "name" => r.name().map(str::to_string),
                    "phone" => r.phone().map(str::to_string),
                    _ => r.address().map(str::to_string),
                };
                let same = present.is_some_and(|r| u.changes.iter().all(|(k, c)| field(r, k) == c.before));
                (!same).then(|| {
                    conflict("update_customer", u.email.to_string(), "its fields changed since the run".into())
                })
            }
            Operation::UpdateDevice(u) => {
                let present = snap.devices.get(&u.identifier).map(|d| &d.record);
                let type_same =
                    u.device_type.as_ref().is_none_or(|c| present.is_some_and(|r| r.device_type == c.before));
                let props_same = match (&u.properties, &u.properties_after) {
                    (Some(delta), Some(before)) => {
                        // What the run left: the inverse's target with its delta taken back.
                        present.is_some_and(|r| r.properties.to_map() == delta.taken_back(before))
                    }
                    _ => true,
                };
                (!(type_same && props_same)).then(|| {
                    conflict(
                        "update_device",
                        u.identifier.to_string(),
                        "its type or properties changed since the run".into(),
                    )
                })
            }
            Operation::Assign(a) | Operation::Unassign(a) => (!untouched(&a.device)).then(|| {
                let kind = if matches!(op, Operation::Assign(_)) { "assign" } else { "unassign" };
                conflict(
                    kind,
                    format!("{} -> {}", a.device, a.customer),
                    "the device's owners changed since the run".into(),
                )
            }),
            Operation::CreateCustomer(_) | Operation::CreateDevice(_) => None,
        };
        match skip {
            Some(c) => now.conflicts.push(c),
            None => now.operations.push(op.clone()),
        }
    }
    now
}
