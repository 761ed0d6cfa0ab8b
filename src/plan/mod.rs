//! The planner: turns a [`Diff`] into the operations to run and the API calls they need, and
//! defines the plan document (`plan --format json`, `plan --out`).
//!
//! Pure, like the differ. The calls come in six phases, run in this order — what routes
//! telemetry first, what only describes after it:
//! 1. customers: one `createOrUpdateCustomer` per new customer — unless the customer has nothing
//!    but an email and one assign call creates it (Telemetron names an auto-created customer
//!    after its email, as it does a customer created without a name);
//! 2. devices: one `POST /device` per type change, and per new device that no single assign call
//!    can create (type and properties in the same call);
//! 3. unassignments: `unassignDevicesFromOwner` per customer, `batch_size` devices a call;
//! 4. assignments: the new (device, customer) pairs grouped into the fewest calls. Each call
//!    covers pairs of one customer (`assignDevicesToOwner`) or of one device
//!    (`assignDeviceToOwners`), so the fewest calls is a minimum vertex cover of the bipartite
//!    graph of new pairs, computed exactly (`cover`). A new device that one call covers alone is
//!    created by it (`autoCreateDevice(s)` with its type; one type per call, and a call that
//!    creates devices holds no others); one in several calls was created in phase 2, so that no
//!    two calls race to create it;
//! 5. customer details: one `createOrUpdateCustomer` per changed customer;
//! 6. properties: `bulk-metadata`, `metadata_batch_size` devices a call (at most 1,000): changed
//!    properties of existing devices and the properties of devices created in phase 4, each
//!    with its full set (the endpoint replaces, it does not merge).
//!
//! With `optimize` off, every new customer and device gets its own create call and every
//! assignment goes per customer: the plain, obviously-correct plan, kept for comparison.
//!
//! `calls` is the planner, `undo` the inverse of a plan, `guard` the safety guard that judges
//! one, `cover` the minimum vertex cover the planner groups by.

pub mod cover;
pub mod guard;
pub mod quarantine;

mod calls;
pub use calls::*;
mod undo;
pub use undo::*;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::diff::{
    Assignment, Change, CustomerCreate, CustomerUpdate, DeviceCreate, DeviceUpdate, Diff, Move, PropertyDelta,
    RemovalsWithheld,
};
use crate::model::{CustomerRecord, DeviceIdent, Email, Properties, TelemetronId};
use crate::model::{Export, InputInfo, Refused, Reject, SnapshotVersion, Warning};

/// One change, as the plan document lists it, in execution order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Operation {
    CreateCustomer(CustomerCreate),
    // The updates are boxed: they are three times the size of the other operations, and a
    // migration holds millions of those.
    UpdateCustomer(Box<CustomerUpdateDoc>),
    CreateDevice(DeviceCreate),
    UpdateDevice(Box<DeviceUpdateDoc>),
    Unassign(Assignment),
    Assign(Assignment),
}

/// A customer update as written in the plan: the fields that change and the record after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerUpdateDoc {
    pub email: Email,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub telemetron_id: Option<TelemetronId>,
    pub changes: BTreeMap<String, Change<Option<String>>>,
    pub after: CustomerRecord,
}

impl From<&CustomerUpdate> for CustomerUpdateDoc {
    fn from(u: &CustomerUpdate) -> Self {
        CustomerUpdateDoc {
            email: u.email.clone(),
            telemetron_id: u.telemetron_id.clone(),
            changes: u
                .changes()
                .into_iter()
                .map(|(k, c)| {
                    (k.to_string(), Change { before: c.before.map(Into::into), after: c.after.map(Into::into) })
                })
                .collect(),
            after: u.after.clone(),
        }
    }
}

/// A device update as written in the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceUpdateDoc {
    pub identifier: DeviceIdent,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub telemetron_id: Option<TelemetronId>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none", default)]
    pub device_type: Option<Change<Option<Arc<str>>>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub properties: Option<PropertyDelta>,
    /// The full property set after the change (bulk-metadata replaces wholesale).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub properties_after: Option<Properties>,
}

impl From<&DeviceUpdate> for DeviceUpdateDoc {
    fn from(u: &DeviceUpdate) -> Self {
        DeviceUpdateDoc {
            identifier: u.identifier.clone(),
            telemetron_id: u.telemetron_id.clone(),
            device_type: u.device_type.clone(),
            properties: u.properties.as_ref().map(|c| PropertyDelta::between(&c.before, &c.after)),
            properties_after: u.properties.as_ref().map(|c| c.after.clone()),
        }
    }
}

/// The `summary` object. Its keys are a stable interface: add, never rename.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub customers_to_create: usize,
    pub customers_to_update: usize,
    pub devices_to_create: usize,
    pub devices_to_update: usize,
    pub assignments_to_add: usize,
    pub assignments_to_remove: usize,
    pub api_calls: usize,
    pub rejected_rows: usize,
    /// No grouping of these operations can need fewer calls.
    pub api_calls_lower_bound: usize,
    pub devices_moved: usize,
    pub customers_not_in_export: usize,
    pub devices_not_in_export: usize,
    pub assignment_removals_withheld: usize,
    pub warnings: usize,
    /// How long `apply` takes to send `api_calls` at the rate in `estimate` (latency aside: the
    /// rate limiter, not the answers, sets the pace), in whole seconds.
    #[serde(default)]
    pub estimated_seconds: u64,
    /// Records held back: refused by Telemetron run after run ([`quarantine`]), or waiting for
    /// one that was. Not in the operations, nor in the counts above.
    #[serde(default)]
    pub quarantined: usize,
}

/// The rate the duration estimate assumes, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Estimate {
    /// Requests per second.
    pub rate: f64,
    /// `fixed` (`--rate`, `run.rate` or the default), `auto_settled` (`--rate auto`: where
    /// the last run settled) or `auto_start` (`--rate auto`, no run has settled yet).
    pub basis: &'static str,
    pub seconds: u64,
    /// The rate an earlier `--rate auto` run settled at, when the snapshot has one and the
    /// estimate is not already at it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settled_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds_at_settled_rate: Option<u64>,
}

/// Seconds to send `calls` at `rate` requests per second, rounded up.
pub fn seconds_at(calls: usize, rate: f64) -> u64 {
    if calls == 0 || !(rate.is_finite() && rate > 0.0) {
        return 0;
    }
    (calls as f64 / rate).ceil() as u64
}

/// A duration as people say it: `45 s`, `12 min`, `2 h 05 min`, `3 d 04 h`.
pub fn human_duration(seconds: u64) -> String {
    match seconds {
        s if s < 90 => format!("{s} s"),
        s if s < 3600 => format!("{} min", s.div_ceil(60)),
        s if s < 86_400 => {
            let m = s.div_ceil(60);
            format!("{} h {:02} min", m / 60, m % 60)
        }
        s => {
            let h = s.div_ceil(3600);
            format!("{} d {:02} h", h / 24, h % 24)
        }
    }
}

/// Entities the export no longer lists; they stay in Telemetron.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NotInExport {
    pub customers: Vec<Email>,
    pub devices: Vec<DeviceIdent>,
}

/// The plan document.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub format: &'static str,
    pub summary: Summary,
    pub operations: Vec<Operation>,
    pub moves: Vec<Move>,
    pub not_in_export: NotInExport,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removals_withheld: Option<RemovalsWithheld>,
    pub rejected: Vec<Reject>,
    pub warnings: Vec<Warning>,
    /// What the quarantine held back ([`quarantine::hold`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub quarantined: Vec<quarantine::Quarantined>,
    /// Records Telemetron refused in their last attempt that this plan sends again, not (yet)
    /// quarantined ([`quarantine::failing`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failing: Vec<quarantine::Failing>,
    /// What the safety guard says of this plan (set by the command, which knows the limits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guard: Option<crate::plan::guard::Verdict>,
    /// The duration estimate's rate (set by the command, which knows the rate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimate: Option<Estimate>,
    /// Where `plan --out` saved this plan (set by the command once it is written): what ties
    /// a report to the plan `apply --plan` runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saved_as: Option<SavedAs>,
}

/// A saved plan file, as the reports and `apply --plan` name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SavedAs {
    pub path: String,
    /// The SHA-256 of the file's bytes, in hex.
    pub sha256: String,
    /// When `plan --out` made it (absent from the plans of earlier versions).
    pub created_at: Option<String>,
}

impl SavedAs {
    /// `day2.plan (sha256 1a2b3c4d5e6f, made 2026-12-08T03:00:00Z)`.
    pub fn describe(&self) -> String {
        let made = self.created_at.as_deref().map(|t| format!(", made {t}")).unwrap_or_default();
        format!("{} (sha256 {}{made})", self.path, &self.sha256[..self.sha256.len().min(12)])
    }
}

impl Plan {
    /// Sets the duration estimate: at `rate`, and also at `settled` (where an earlier `--rate
    /// auto` run settled) when that differs.
    pub fn set_estimate(&mut self, rate: f64, basis: &'static str, settled: Option<f64>) {
        let calls = self.summary.api_calls;
        let seconds = seconds_at(calls, rate);
        let settled = settled.filter(|r| basis != "auto_settled" && (*r - rate).abs() > f64::EPSILON);
        self.summary.estimated_seconds = seconds;
        self.estimate = Some(Estimate {
            rate,
            basis,
            seconds,
            settled_rate: settled,
            seconds_at_settled_rate: settled.map(|r| seconds_at(calls, r)),
        });
    }
}

/// A saved plan (`plan --out`): the plan, and what a later `apply --plan` checks it against so
/// as to refuse a stale one. One layout both ways: `plan --out` writes a `SavedPlan<&Plan>`,
/// `apply --plan` reads back a `SavedPlan<Applied>`, the part of the plan it needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedPlan<'a, P> {
    #[serde(flatten)]
    pub plan: P,
    pub inputs: Cow<'a, [InputInfo]>,
    pub snapshot: Cow<'a, SnapshotVersion>,
    /// The snapshot's absolute path: `apply --plan` uses it, and refuses another. Absent from
    /// the plans of earlier versions.
    #[serde(default)]
    pub state: Option<Cow<'a, str>>,
    /// When the plan was made (absent from the plans of earlier versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Cow<'a, str>>,
}

/// The part of a saved plan's [`Plan`] that `apply --plan` reads back.
#[derive(Debug, Deserialize)]
pub struct Applied {
    pub format: String,
    pub operations: Vec<Operation>,
    /// The rejected rows listed (only counted here).
    #[serde(default)]
    pub rejected: Vec<serde::de::IgnoredAny>,
    #[serde(default)]
    pub summary: AppliedSummary,
    /// What the quarantine held back when the plan was made.
    #[serde(default)]
    pub quarantined: Vec<quarantine::Quarantined>,
}

/// The counts of a saved plan's summary that `apply --plan` reads back.
#[derive(Debug, Default, Deserialize)]
pub struct AppliedSummary {
    /// Every rejected row, listed or only counted (absent from earlier versions' plans).
    #[serde(default)]
    pub rejected_rows: usize,
}

/// Reads a saved plan back from its (decompressed) bytes, as it streams: what `apply --plan`
/// needs of it.
pub fn read_saved(stream: impl std::io::Read) -> serde_json::Result<SavedPlan<'static, Applied>> {
    serde_json::from_reader(std::io::BufReader::with_capacity(1 << 20, stream))
}

impl Applied {
    /// The rows the plan's inputs had rejected.
    pub fn rejected_rows(&self) -> usize {
        self.rejected.len().max(self.summary.rejected_rows)
    }
}

pub const FORMAT: &str = "telemetron-sync-plan/1";

/// What the snapshot says Telemetron refused, and when that holds a record back.
#[derive(Debug, Clone, Copy, Default)]
pub struct Held<'a> {
    pub refused: &'a [Refused],
    pub rule: quarantine::Rule,
}

/// Builds the plan document, with the calls it needs and their lower bound counted.
pub fn build(diff: Diff, export: &Export, held: Held<'_>, batching: Batching) -> Plan {
    let mut plan = build_uncounted(diff, export, held);
    let (api_calls, lower_bound) = call_count_and_lower_bound(&plan.operations, batching);
    plan.summary.api_calls = api_calls;
    plan.summary.api_calls_lower_bound = lower_bound;
    plan
}

/// [`build`] without counting the calls (`summary.api_calls` and the bound are 0): for `apply`,
/// which makes the calls themselves next, and would otherwise group a migration twice.
pub fn build_uncounted(diff: Diff, export: &Export, held: Held<'_>) -> Plan {
    // The diff is taken, not borrowed: its entries move into the operations instead of being
    // copied (a migration has millions).
    let Diff {
        customers_to_create,
        customers_to_update,
        devices_to_create,
        devices_to_update,
        assignments_to_remove,
        assignments_to_add,
        moves,
        customers_not_in_export,
        devices_not_in_export,
        removals_withheld,
    } = diff;
    let mut summary = Summary {
        customers_to_create: customers_to_create.len(),
        customers_to_update: customers_to_update.len(),
        devices_to_create: devices_to_create.len(),
        devices_to_update: devices_to_update.len(),
        assignments_to_add: assignments_to_add.len(),
        assignments_to_remove: assignments_to_remove.len(),
        api_calls: 0,
        api_calls_lower_bound: 0,
        rejected_rows: export.rejected_rows(),
        devices_moved: moves.len(),
        customers_not_in_export: customers_not_in_export.len(),
        devices_not_in_export: devices_not_in_export.len(),
        assignment_removals_withheld: removals_withheld.as_ref().map_or(0, |w| w.count),
        warnings: export.warning_count(),
        estimated_seconds: 0,
        quarantined: 0,
    };
    let mut operations = Vec::with_capacity(
        customers_to_create.len()
            + customers_to_update.len()
            + devices_to_create.len()
            + devices_to_update.len()
            + assignments_to_remove.len()
            + assignments_to_add.len(),
    );
    operations.extend(customers_to_create.into_iter().map(Operation::CreateCustomer));
    operations.extend(customers_to_update.iter().map(|u| Operation::UpdateCustomer(Box::new(u.into()))));
    operations.extend(devices_to_create.into_iter().map(Operation::CreateDevice));
    operations.extend(devices_to_update.iter().map(|u| Operation::UpdateDevice(Box::new(u.into()))));
    operations.extend(assignments_to_remove.into_iter().map(Operation::Unassign));
    operations.extend(assignments_to_add.into_iter().map(Operation::Assign));
    let quarantined = quarantine::hold(&mut operations, &mut summary, held.refused, held.rule);
    let failing = quarantine::failing(&operations, held.refused);
    Plan {
        format: FORMAT,
        summary,
        operations,
        moves,
        not_in_export: NotInExport { customers: customers_not_in_export, devices: devices_not_in_export },
        removals_withheld,
        rejected: export.rejects.clone(),
        warnings: export.warnings.clone(),
        quarantined,
        failing,
        guard: None,
        estimate: None,
        saved_as: None,
    }
}

#[cfg(test)]
mod tests;

/// `1234567` as `1,234,567`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
