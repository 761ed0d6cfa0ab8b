//! The planner: turns a [`Diff`] into the operations to run and the API calls they need, and
//! defines the plan document (`plan --format json`, `plan --out`).
//!
//! Pure, like the differ. Grouping rules for [`ApiCall`]s, in execution order:
//! 1. one `createOrUpdateCustomer` per new customer and per changed customer;
//! 2. one `POST /device` per new device (type and properties in the same call) and per type change;
//! 3. `unassignDevicesFromOwner` per customer, up to `batch_size` devices a call;
//! 4. `assignDevicesToOwner` per customer, up to `batch_size` devices a call;
//! 5. property changes of existing devices through `bulk-metadata`, up to `metadata_batch_size`
//!    (at most 1,000, the API's cap) devices a call, each with its full new property set.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::diff::{
    Assignment, Change, CustomerCreate, CustomerUpdate, DeviceCreate, DeviceUpdate, Diff, Move, PropertyDelta,
    RemovalsWithheld,
};
use crate::load::{Export, InputInfo, Reject, Warning};
use crate::model::{CustomerRecord, DeviceIdent, Email, Properties, TelemetronId};
use crate::snapshot::SnapshotVersion;

/// The API's cap on entries in one bulk-metadata request.
pub const METADATA_CAP: usize = 1000;

/// How calls are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// Devices per assign or unassign call.
    pub batch_size: usize,
    /// Devices per bulk-metadata call (at most [`METADATA_CAP`]).
    pub metadata_batch_size: usize,
}

impl Default for Batching {
    fn default() -> Self {
        Batching { batch_size: 1000, metadata_batch_size: METADATA_CAP }
    }
}

/// One HTTP call the plan needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiCall {
    CreateCustomer { email: Email, record: CustomerRecord },
    UpdateCustomer { email: Email, telemetron_id: Option<TelemetronId>, record: CustomerRecord },
    UpsertDevice { identifier: DeviceIdent, device_type: Arc<str>, properties: Option<Properties> },
    UnassignDevicesFromOwner { customer: Email, devices: Vec<DeviceIdent> },
    AssignDevicesToOwner { customer: Email, devices: Vec<DeviceIdent> },
    BulkMetadata { devices: Vec<(DeviceIdent, Properties)> },
}

/// The calls for `diff`, in execution order.
pub fn api_calls(diff: &Diff, batching: Batching) -> Vec<ApiCall> {
    let mut calls = Vec::new();
    for c in &diff.customers_to_create {
        calls.push(ApiCall::CreateCustomer { email: c.email.clone(), record: c.record.clone() });
    }
    for u in &diff.customers_to_update {
        calls.push(ApiCall::UpdateCustomer {
            email: u.email.clone(),
            telemetron_id: u.telemetron_id.clone(),
            record: u.after.clone(),
        });
    }
    for c in &diff.devices_to_create {
        calls.push(ApiCall::UpsertDevice {
            identifier: c.identifier.clone(),
            device_type: c.device_type.clone(),
            properties: (!c.properties.is_empty()).then(|| c.properties.clone()),
        });
    }
    for u in &diff.devices_to_update {
        if let Some(Change { after: Some(t), .. }) = &u.device_type {
            calls.push(ApiCall::UpsertDevice {
                identifier: u.identifier.clone(),
                device_type: t.clone(),
                properties: None,
            });
        }
    }
    for (customer, devices) in by_customer(&diff.assignments_to_remove) {
        for chunk in devices.chunks(batching.batch_size.max(1)) {
            calls.push(ApiCall::UnassignDevicesFromOwner { customer: customer.clone(), devices: chunk.to_vec() });
        }
    }
    for (customer, devices) in by_customer(&diff.assignments_to_add) {
        for chunk in devices.chunks(batching.batch_size.max(1)) {
            calls.push(ApiCall::AssignDevicesToOwner { customer: customer.clone(), devices: chunk.to_vec() });
        }
    }
    let props: Vec<(DeviceIdent, Properties)> = diff
        .devices_to_update
        .iter()
        .filter_map(|u| Some((u.identifier.clone(), u.properties.as_ref()?.after.clone())))
        .collect();
    for chunk in props.chunks(batching.metadata_batch_size.clamp(1, METADATA_CAP)) {
        calls.push(ApiCall::BulkMetadata { devices: chunk.to_vec() });
    }
    calls
}

/// How many calls [`api_calls`] would make, without building them.
pub fn count_api_calls(diff: &Diff, batching: Batching) -> usize {
    let per_customer = |list: &[Assignment]| -> usize {
        by_customer(list).values().map(|d| d.len().div_ceil(batching.batch_size.max(1))).sum()
    };
    let props = diff.devices_to_update.iter().filter(|u| u.properties.is_some()).count();
    diff.customers_to_create.len()
        + diff.customers_to_update.len()
        + diff.devices_to_create.len()
        + diff.devices_to_update.iter().filter(|u| u.device_type.is_some()).count()
        + per_customer(&diff.assignments_to_remove)
        + per_customer(&diff.assignments_to_add)
        + props.div_ceil(batching.metadata_batch_size.clamp(1, METADATA_CAP))
}

fn by_customer(list: &[Assignment]) -> BTreeMap<&Email, Vec<DeviceIdent>> {
    let mut map: BTreeMap<&Email, Vec<DeviceIdent>> = BTreeMap::new();
    for a in list {
        map.entry(&a.customer).or_default().push(a.device.clone());
    }
    map
}

// ---------------------------------------------------------------------------------------------
// The plan document

/// One change, as the plan document lists it, in execution order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Operation {
    CreateCustomer(CustomerCreate),
    UpdateCustomer(CustomerUpdateDoc),
    CreateDevice(DeviceCreate),
    UpdateDevice(DeviceUpdateDoc),
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
    pub devices_moved: usize,
    pub customers_not_in_export: usize,
    pub devices_not_in_export: usize,
    pub assignment_removals_withheld: usize,
    pub warnings: usize,
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
}

/// What `plan --out` adds, so that a later `apply --plan` can refuse a stale plan.
#[derive(Debug, Clone, Serialize)]
pub struct SavedPlan<'a> {
    #[serde(flatten)]
    pub plan: &'a Plan,
    pub inputs: &'a [InputInfo],
    pub snapshot: &'a SnapshotVersion,
}

pub const FORMAT: &str = "telemetron-sync-plan/1";

/// Builds the plan document.
pub fn build(diff: &Diff, export: &Export, batching: Batching) -> Plan {
    let mut operations = Vec::new();
    operations.extend(diff.customers_to_create.iter().cloned().map(Operation::CreateCustomer));
    operations.extend(diff.customers_to_update.iter().map(|u| Operation::UpdateCustomer(u.into())));
    operations.extend(diff.devices_to_create.iter().cloned().map(Operation::CreateDevice));
    operations.extend(diff.devices_to_update.iter().map(|u| Operation::UpdateDevice(u.into())));
    operations.extend(diff.assignments_to_remove.iter().cloned().map(Operation::Unassign));
    operations.extend(diff.assignments_to_add.iter().cloned().map(Operation::Assign));
    let summary = Summary {
        customers_to_create: diff.customers_to_create.len(),
        customers_to_update: diff.customers_to_update.len(),
        devices_to_create: diff.devices_to_create.len(),
        devices_to_update: diff.devices_to_update.len(),
        assignments_to_add: diff.assignments_to_add.len(),
        assignments_to_remove: diff.assignments_to_remove.len(),
        api_calls: count_api_calls(diff, batching),
        rejected_rows: export.rejects.len(),
        devices_moved: diff.moves.len(),
        customers_not_in_export: diff.customers_not_in_export.len(),
        devices_not_in_export: diff.devices_not_in_export.len(),
        assignment_removals_withheld: diff.removals_withheld.as_ref().map_or(0, |w| w.count),
        warnings: export.warnings.len(),
    };
    Plan {
        format: FORMAT,
        summary,
        operations,
        moves: diff.moves.clone(),
        not_in_export: NotInExport {
            customers: diff.customers_not_in_export.clone(),
            devices: diff.devices_not_in_export.clone(),
        },
        removals_withheld: diff.removals_withheld.clone(),
        rejected: export.rejects.clone(),
        warnings: export.warnings.clone(),
    }
}
