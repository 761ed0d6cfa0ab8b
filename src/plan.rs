//! The planner: turns a [`Diff`] into the operations to run and the API calls they need, and
//! defines the plan document (`plan --format json`, `plan --out`).
//!
//! Pure, like the differ. The calls come in five phases, run in this order:
//! 1. customers: one `createOrUpdateCustomer` per changed customer, and per new customer — unless
//!    the customer has nothing but an email and one assign call creates it (Telemetron names an
//!    auto-created customer after its email, as it does a customer created without a name);
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
//! 5. properties: `bulk-metadata`, `metadata_batch_size` devices a call (at most 1,000): changed
//!    properties of existing devices and the properties of devices created in phase 4, each
//!    with its full set (the endpoint replaces, it does not merge).
//!
//! With `optimize` off, every new customer and device gets its own create call and every
//! assignment goes per customer: the plain, obviously-correct plan, kept for comparison.

use std::collections::BTreeMap;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::diff::{
    Assignment, Change, CustomerCreate, CustomerUpdate, DeviceCreate, DeviceUpdate, Diff, Move, PropertyDelta,
    RemovalsWithheld,
};
use crate::model::{CustomerRecord, DeviceIdent, Email, Properties, TelemetronId};
use crate::model::{Export, InputInfo, Reject, SnapshotVersion, Warning};

/// The API's cap on entries in one bulk-metadata request.
pub const METADATA_CAP: usize = 1000;

/// How calls are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// Devices (or customers) per assign or unassign call.
    pub batch_size: usize,
    /// Devices per bulk-metadata call (at most [`METADATA_CAP`]).
    pub metadata_batch_size: usize,
    /// Fold creates into assign calls and group assignments by minimum vertex cover.
    pub optimize: bool,
}

impl Default for Batching {
    fn default() -> Self {
        Batching { batch_size: 1000, metadata_batch_size: METADATA_CAP, optimize: true }
    }
}

/// One HTTP call the plan needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiCall {
    CreateCustomer {
        email: Email,
        record: CustomerRecord,
    },
    UpdateCustomer {
        email: Email,
        telemetron_id: Option<TelemetronId>,
        record: CustomerRecord,
    },
    /// `POST /device`: a create (with its properties) or a type change.
    UpsertDevice {
        identifier: DeviceIdent,
        device_type: Arc<str>,
        properties: Option<Properties>,
        create: bool,
    },
    UnassignDevicesFromOwner {
        customer: Email,
        devices: Vec<DeviceIdent>,
    },
    /// `assignDevicesToOwner`; `create` names the type and the devices this call creates, and
    /// `create_customer` the customer's record when this call creates the customer.
    AssignDevicesToOwner {
        customer: Email,
        devices: Vec<DeviceIdent>,
        create: Option<(Arc<str>, Vec<DeviceIdent>)>,
        create_customer: Option<CustomerRecord>,
    },
    /// `assignDeviceToOwners`; `create` is the type when this call creates the device, and
    /// `create_customers` the customers it creates.
    AssignDeviceToOwners {
        device: DeviceIdent,
        customers: Vec<Email>,
        create: Option<Arc<str>>,
        create_customers: Vec<(Email, CustomerRecord)>,
    },
    BulkMetadata {
        devices: Vec<(DeviceIdent, Properties)>,
    },
}

/// The calls of a plan, by phase, in execution order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
///
/// What routes telemetry (who owns which device) goes first; what only describes (customers'
/// details, devices' properties) after it, since no assignment depends on it.
pub struct Calls {
    /// Customer creates: an assignment to a named customer needs it.
    pub customers: Vec<ApiCall>,
    pub devices: Vec<ApiCall>,
    pub unassign: Vec<ApiCall>,
    pub assign: Vec<ApiCall>,
    /// Updates of existing customers' details.
    pub customer_updates: Vec<ApiCall>,
    pub properties: Vec<ApiCall>,
}

impl Calls {
    pub fn len(&self) -> usize {
        self.customers.len()
            + self.devices.len()
            + self.unassign.len()
            + self.assign.len()
            + self.customer_updates.len()
            + self.properties.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What the operations of a plan say, sorted into what the planner needs.
struct Parts<'a> {
    customer_creates: Vec<(&'a Email, &'a CustomerRecord)>,
    customer_updates: Vec<(&'a Email, Option<&'a TelemetronId>, &'a CustomerRecord)>,
    device_creates: Vec<&'a DeviceCreate>,
    type_changes: Vec<(&'a DeviceIdent, &'a Arc<str>)>,
    property_changes: Vec<(&'a DeviceIdent, &'a Properties)>,
    unassign: Vec<&'a Assignment>,
    assign: Vec<&'a Assignment>,
}

fn parts(ops: &[Operation]) -> Parts<'_> {
    let mut p = Parts {
        customer_creates: Vec::new(),
        customer_updates: Vec::new(),
        device_creates: Vec::new(),
        type_changes: Vec::new(),
        property_changes: Vec::new(),
        unassign: Vec::new(),
        assign: Vec::new(),
    };
    for op in ops {
        match op {
            Operation::CreateCustomer(c) => p.customer_creates.push((&c.email, &c.record)),
            Operation::UpdateCustomer(u) => p.customer_updates.push((&u.email, u.telemetron_id.as_ref(), &u.after)),
            Operation::CreateDevice(c) => p.device_creates.push(c),
            Operation::UpdateDevice(u) => {
                if let Some(Change { after: Some(t), .. }) = &u.device_type {
                    p.type_changes.push((&u.identifier, t));
                }
                if let Some(props) = &u.properties_after {
                    p.property_changes.push((&u.identifier, props));
                }
            }
            Operation::Unassign(a) => p.unassign.push(a),
            Operation::Assign(a) => p.assign.push(a),
        }
    }
    p
}

/// Whether an assign call's auto-create gives this customer exactly what a create would: it has
/// nothing but an email (and perhaps the source system's key, which Telemetron never sees).
fn email_only(email: &Email, record: &CustomerRecord) -> bool {
    record.name().is_none_or(|n| n == email.local_part()) && record.phone().is_none() && record.address().is_none()
}

/// The calls for a plan's operations, by phase.
pub fn calls(ops: &[Operation], batching: Batching) -> Calls {
    let p = parts(ops);
    let graph = batching.optimize.then(|| PairGraph::new(&p.assign));
    build_calls(&p, batching, graph.as_ref())
}

/// The calls and their lower bound together, from one pass over the operations and one cover.
pub fn calls_and_lower_bound(ops: &[Operation], batching: Batching) -> (Calls, usize) {
    let p = parts(ops);
    let graph = PairGraph::new(&p.assign);
    let calls = build_calls(&p, batching, batching.optimize.then_some(&graph));
    (calls, lower_bound(&p, batching, &graph))
}

/// The new (customer, device) pairs as a bipartite graph by index, with a minimum vertex cover.
struct PairGraph<'a> {
    customers: Vec<&'a Email>,
    devices: Vec<&'a DeviceIdent>,
    customer_ix: FxHashMap<&'a Email, u32>,
    device_ix: FxHashMap<&'a DeviceIdent, u32>,
    edges: Vec<(u32, u32)>,
    cover_customers: Vec<bool>,
    cover_size: usize,
}

impl<'a> PairGraph<'a> {
    fn new(assign: &[&'a Assignment]) -> PairGraph<'a> {
        let mut g = PairGraph {
            customers: Vec::new(),
            devices: Vec::new(),
            customer_ix: FxHashMap::default(),
            device_ix: FxHashMap::default(),
            edges: Vec::with_capacity(assign.len()),
            cover_customers: Vec::new(),
            cover_size: 0,
        };
        for a in assign {
            let c = *g.customer_ix.entry(&a.customer).or_insert_with(|| {
                g.customers.push(&a.customer);
                (g.customers.len() - 1) as u32
            });
            let d = *g.device_ix.entry(&a.device).or_insert_with(|| {
                g.devices.push(&a.device);
                (g.devices.len() - 1) as u32
            });
            g.edges.push((c, d));
        }
        let (cover_c, cover_d) = crate::cover::min_vertex_cover(g.customers.len(), g.devices.len(), &g.edges);
        g.cover_size = cover_c.iter().chain(&cover_d).filter(|x| **x).count();
        g.cover_customers = cover_c;
        g
    }
}

/// `graph` is `Some` exactly when `batching.optimize` is set.
fn build_calls(p: &Parts<'_>, batching: Batching, graph: Option<&PairGraph<'_>>) -> Calls {
    let batch = batching.batch_size.max(1);
    let mut calls = Calls::default();
    for (email, id, record) in &p.customer_updates {
        calls.customer_updates.push(ApiCall::UpdateCustomer {
            email: (*email).clone(),
            telemetron_id: id.cloned(),
            record: (*record).clone(),
        });
    }
    for (ident, t) in &p.type_changes {
        calls.devices.push(ApiCall::UpsertDevice {
            identifier: (*ident).clone(),
            device_type: (*t).clone(),
            properties: None,
            create: false,
        });
    }
    for (customer, devices) in by_customer(&p.unassign) {
        for chunk in devices.chunks(batch) {
            calls
                .unassign
                .push(ApiCall::UnassignDevicesFromOwner { customer: customer.clone(), devices: chunk.to_vec() });
        }
    }
    let mut metadata: Vec<(DeviceIdent, Properties)> =
        p.property_changes.iter().map(|(d, props)| ((*d).clone(), (*props).clone())).collect();

    if let Some(graph) = graph {
        plan_assignments(p, graph, batch, &mut calls, &mut metadata);
    } else {
        for (email, record) in &p.customer_creates {
            calls.customers.push(ApiCall::CreateCustomer { email: (*email).clone(), record: (*record).clone() });
        }
        for c in &p.device_creates {
            calls.devices.push(create_device_call(c));
        }
        for (customer, devices) in by_customer(&p.assign) {
            for chunk in devices.chunks(batch) {
                calls.assign.push(ApiCall::AssignDevicesToOwner {
                    customer: customer.clone(),
                    devices: chunk.to_vec(),
                    create: None,
                    create_customer: None,
                });
            }
        }
    }
    metadata.sort_by(|a, b| a.0.cmp(&b.0));
    for chunk in metadata.chunks(batching.metadata_batch_size.clamp(1, METADATA_CAP)) {
        calls.properties.push(ApiCall::BulkMetadata { devices: chunk.to_vec() });
    }
    calls
}

fn create_device_call(c: &DeviceCreate) -> ApiCall {
    ApiCall::UpsertDevice {
        identifier: c.identifier.clone(),
        device_type: c.device_type.clone(),
        properties: Some(c.properties.clone()),
        create: true,
    }
}

/// Phase 4 by minimum vertex cover, folding creates into the assign calls where one call
/// covers the entity alone. Adds the creates it cannot fold to phases 1 and 2, and the
/// properties of folded devices to `metadata`.
fn plan_assignments(
    p: &Parts<'_>,
    graph: &PairGraph<'_>,
    batch: usize,
    calls: &mut Calls,
    metadata: &mut Vec<(DeviceIdent, Properties)>,
) {
    let PairGraph { customers, devices, customer_ix, device_ix, edges, cover_customers: cover_c, .. } = graph;
    // Each pair goes to its customer's call when the customer is in the cover, else its device's.
    let mut customer_groups: Vec<Vec<u32>> = vec![Vec::new(); customers.len()];
    let mut device_groups: Vec<Vec<u32>> = vec![Vec::new(); devices.len()];
    for &(c, d) in edges {
        if cover_c[c as usize] {
            customer_groups[c as usize].push(d);
        } else {
            device_groups[d as usize].push(c);
        }
    }

    // A new device is created by an assign call when exactly one call holds it.
    let new_devices: FxHashMap<&DeviceIdent, &DeviceCreate> =
        p.device_creates.iter().map(|c| (&c.identifier, *c)).collect();
    let mut appearances = vec![0usize; devices.len()];
    for group in &customer_groups {
        for &d in group {
            appearances[d as usize] += 1;
        }
    }
    for (d, group) in device_groups.iter().enumerate() {
        appearances[d] += group.len().div_ceil(batch);
    }
    let folded_device = |d: u32| appearances[d as usize] == 1 && new_devices.contains_key(devices[d as usize]);
    let device_type = |d: u32| new_devices[devices[d as usize]].device_type.clone();

    // Customer calls: the devices this call creates grouped by type (one type per call); then
    // chunks. Devices this run creates in phase 2 ride along with the first group (they exist
    // by phase 4); devices that existed before go in calls of their own, since a call sent with
    // autoCreateDevices would create one Telemetron lost with this group's type instead of
    // reporting it as skipped.
    struct CustomerCall {
        devices: Vec<u32>,
        create: Option<(Arc<str>, Vec<u32>)>,
    }
    let mut customer_calls: Vec<Vec<CustomerCall>> = Vec::with_capacity(customers.len());
    for group in &customer_groups {
        let mut by_type: BTreeMap<Arc<str>, Vec<u32>> = BTreeMap::new();
        let (mut fresh, mut existing) = (Vec::new(), Vec::new());
        for &d in group {
            if folded_device(d) {
                by_type.entry(device_type(d)).or_default().push(d);
            } else if new_devices.contains_key(devices[d as usize]) {
                fresh.push(d);
            } else {
                existing.push(d);
            }
        }
        let mut out = Vec::new();
        let mut sets: Vec<(Option<Arc<str>>, Vec<u32>)> = by_type.into_iter().map(|(t, v)| (Some(t), v)).collect();
        match sets.first_mut() {
            Some((_, first)) => first.extend(fresh),
            None => existing.extend(fresh),
        }
        if !existing.is_empty() {
            sets.push((None, existing));
        }
        for (t, mut set) in sets {
            set.sort_by(|a, b| devices[*a as usize].cmp(devices[*b as usize]));
            for chunk in set.chunks(batch) {
                let create = t.clone().map(|t| (t, chunk.iter().copied().filter(|d| folded_device(*d)).collect()));
                out.push(CustomerCall { devices: chunk.to_vec(), create });
            }
        }
        customer_calls.push(out);
    }

    // A new customer with only an email is created by an assign call when exactly one call holds it.
    let new_customers: FxHashMap<&Email, &CustomerRecord> = p.customer_creates.iter().copied().collect();
    let mut customer_appearances: Vec<usize> = customer_calls.iter().map(Vec::len).collect();
    for group in &device_groups {
        for chunk in group.chunks(batch) {
            for &c in chunk {
                customer_appearances[c as usize] += 1;
            }
        }
    }
    let folded_customer = |c: u32| {
        let email = customers[c as usize];
        customer_appearances[c as usize] == 1 && new_customers.get(email).is_some_and(|r| email_only(email, r))
    };

    // Creates that no assign call makes.
    for (email, record) in &p.customer_creates {
        let folded = customer_ix.get(email).is_some_and(|c| folded_customer(*c));
        if !folded {
            calls.customers.push(ApiCall::CreateCustomer { email: (*email).clone(), record: (*record).clone() });
        }
    }
    for c in &p.device_creates {
        match device_ix.get(&c.identifier) {
            Some(&d) if folded_device(d) => {
                if !c.properties.is_empty() {
                    metadata.push((c.identifier.clone(), c.properties.clone()));
                }
            }
            _ => calls.devices.push(create_device_call(c)),
        }
    }

    // The assign calls, customers' then devices', each in key order.
    let mut order: Vec<u32> = (0..customers.len() as u32).collect();
    order.sort_by(|a, b| customers[*a as usize].cmp(customers[*b as usize]));
    for c in order {
        let email = customers[c as usize];
        for call in &customer_calls[c as usize] {
            calls.assign.push(ApiCall::AssignDevicesToOwner {
                customer: email.clone(),
                devices: call.devices.iter().map(|d| devices[*d as usize].clone()).collect(),
                create: call
                    .create
                    .as_ref()
                    .map(|(t, list)| (t.clone(), list.iter().map(|d| devices[*d as usize].clone()).collect())),
                create_customer: folded_customer(c).then(|| new_customers[email].clone()),
            });
        }
    }
    let mut order: Vec<u32> = (0..devices.len() as u32).filter(|d| !device_groups[*d as usize].is_empty()).collect();
    order.sort_by(|a, b| devices[*a as usize].cmp(devices[*b as usize]));
    for d in order {
        let mut group = device_groups[d as usize].clone();
        group.sort_by(|a, b| customers[*a as usize].cmp(customers[*b as usize]));
        for chunk in group.chunks(batch) {
            calls.assign.push(ApiCall::AssignDeviceToOwners {
                device: devices[d as usize].clone(),
                customers: chunk.iter().map(|c| customers[*c as usize].clone()).collect(),
                create: folded_device(d).then(|| device_type(d)),
                create_customers: chunk
                    .iter()
                    .filter(|c| folded_customer(**c))
                    .map(|c| (customers[*c as usize].clone(), new_customers[customers[*c as usize]].clone()))
                    .collect(),
            });
        }
    }
}

/// A lower bound on the calls any grouping of these operations needs: every changed or
/// non-foldable customer and type change is a call of its own, removals go per customer, new
/// devices that no assignment names need `POST /device`, new pairs need at least a minimum
/// vertex cover of calls, and properties at least one call per 1,000 devices.
fn lower_bound(p: &Parts<'_>, batching: Batching, graph: &PairGraph<'_>) -> usize {
    let batch = batching.batch_size.max(1);
    let customers = p.customer_updates.len() + p.customer_creates.iter().filter(|(e, r)| !email_only(e, r)).count();
    let lonely_devices = p.device_creates.iter().filter(|c| !graph.device_ix.contains_key(&c.identifier)).count();
    let unassign: usize = by_customer(&p.unassign).values().map(|d| d.len().div_ceil(batch)).sum();
    let props = p.property_changes.len()
        + p.device_creates
            .iter()
            .filter(|c| graph.device_ix.contains_key(&c.identifier) && !c.properties.is_empty())
            .count();
    customers + p.type_changes.len() + lonely_devices + unassign + graph.cover_size + props.div_ceil(METADATA_CAP)
}

fn by_customer<'a>(list: &[&'a Assignment]) -> BTreeMap<&'a Email, Vec<DeviceIdent>> {
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
    /// No grouping of these operations can need fewer calls.
    pub api_calls_lower_bound: usize,
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
    /// What the safety guard says of this plan (set by the command, which knows the limits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guard: Option<crate::guard::Verdict>,
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
    let (calls, lower_bound) = calls_and_lower_bound(&operations, batching);
    let summary = Summary {
        customers_to_create: diff.customers_to_create.len(),
        customers_to_update: diff.customers_to_update.len(),
        devices_to_create: diff.devices_to_create.len(),
        devices_to_update: diff.devices_to_update.len(),
        assignments_to_add: diff.assignments_to_add.len(),
        assignments_to_remove: diff.assignments_to_remove.len(),
        api_calls: calls.len(),
        api_calls_lower_bound: lower_bound,
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
        guard: None,
    }
}

// ---------------------------------------------------------------------------------------------
// Undo

/// An operation `undo` cannot reverse: ext-v1 has no delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotUndoable {
    pub op: String,
    pub key: String,
    pub reason: String,
}

/// The undo plan of a run: the operations that put back what it changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UndoPlan {
    pub operations: Vec<Operation>,
    pub not_undoable: Vec<NotUndoable>,
}

/// The inverse of a plan's operations, from the before-images they carry: previous field
/// values, previous type and properties, previous owners. Each inverse is harmless where the
/// original did not happen (it restores what is already there), so the whole plan can be undone
/// whichever of its operations succeeded. Creations cannot be undone.
pub fn inverse(ops: &[Operation]) -> UndoPlan {
    let mut undo = UndoPlan::default();
    let mut unassign = Vec::new();
    let mut assign = Vec::new();
    for op in ops {
        match op {
            Operation::CreateCustomer(c) => undo.not_undoable.push(NotUndoable {
                op: "create_customer".into(),
                key: c.email.to_string(),
                reason: "ext-v1 has no way to delete a customer".into(),
            }),
            Operation::CreateDevice(c) => undo.not_undoable.push(NotUndoable {
                op: "create_device".into(),
                key: c.identifier.to_string(),
                reason: "ext-v1 has no way to delete a device".into(),
            }),
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
                undo.operations.push(Operation::UpdateCustomer(CustomerUpdateDoc {
                    email: u.email.clone(),
                    telemetron_id: u.telemetron_id.clone(),
                    changes,
                    after: before,
                }));
            }
            Operation::UpdateDevice(u) => {
                let mut device_type = None;
                if let Some(c) = &u.device_type {
                    match &c.before {
                        Some(_) => device_type = Some(Change { before: c.after.clone(), after: c.before.clone() }),
                        None => undo.not_undoable.push(NotUndoable {
                            op: "update_device".into(),
                            key: u.identifier.to_string(),
                            reason: "the device had no type before, and ext-v1 cannot clear one".into(),
                        }),
                    }
                }
                let (properties, properties_after) = match (&u.properties, &u.properties_after) {
                    (Some(delta), Some(after)) => {
                        let before = Properties::from_map(&delta.taken_back(after));
                        (Some(PropertyDelta::between(after, &before)), Some(before))
                    }
                    _ => (None, None),
                };
                if device_type.is_some() || properties.is_some() {
                    undo.operations.push(Operation::UpdateDevice(DeviceUpdateDoc {
                        identifier: u.identifier.clone(),
                        telemetron_id: u.telemetron_id.clone(),
                        device_type,
                        properties,
                        properties_after,
                    }));
                }
            }
            // Removals are undone by assigning again, after the additions are undone, so that a
            // transfer goes back the documented way too: unassign the new owner, then assign the old.
            Operation::Unassign(a) => assign.push(Operation::Assign(a.clone())),
            Operation::Assign(a) => unassign.push(Operation::Unassign(a.clone())),
        }
    }
    undo.operations.extend(unassign);
    undo.operations.extend(assign);
    undo
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
    let conflict = |op: &str, key: String, reason: String| NotUndoable { op: op.into(), key, reason };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> Properties {
        Properties::from_map(&pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn the_inverse_puts_back_the_before_images() {
        let email = Email::parse("a@x.io").unwrap();
        let dev = DeviceIdent::parse("D1").unwrap();
        let update = CustomerUpdate {
            email: email.clone(),
            telemetron_id: None,
            before: CustomerRecord::new(Some("Ann"), Some("1"), None, Some("C1")),
            after: CustomerRecord::new(Some("Ann"), Some("2"), Some("Main St"), Some("C1")),
        };
        let device = DeviceUpdate {
            identifier: dev.clone(),
            telemetron_id: None,
            device_type: Some(Change { before: Some("a".into()), after: Some("b".into()) }),
            properties: Some(Change {
                before: props(&[("fw", "1"), ("gone", "x")]),
                after: props(&[("fw", "2"), ("new", "y")]),
            }),
        };
        let moved = Assignment { device: dev.clone(), customer: Email::parse("b@x.io").unwrap() };
        let old = Assignment { device: dev.clone(), customer: email.clone() };
        let ops = vec![
            Operation::UpdateCustomer((&update).into()),
            Operation::UpdateDevice((&device).into()),
            Operation::Unassign(old.clone()),
            Operation::Assign(moved.clone()),
        ];
        let undo = inverse(&ops);
        let Operation::UpdateCustomer(c) = &undo.operations[0] else { panic!("{:?}", undo.operations) };
        assert_eq!(c.after, update.before);
        let Operation::UpdateDevice(d) = &undo.operations[1] else { panic!() };
        assert_eq!(d.device_type.as_ref().unwrap().after.as_deref(), Some("a"));
        assert_eq!(d.properties_after.as_ref(), Some(&props(&[("fw", "1"), ("gone", "x")])));
        // A transfer goes back the documented way: unassign the new owner, then assign the old.
        assert_eq!(undo.operations[2..], [Operation::Unassign(moved), Operation::Assign(old)]);
        assert!(undo.not_undoable.is_empty());
    }

    #[test]
    fn creations_are_not_undoable() {
        let ops = vec![Operation::CreateCustomer(CustomerCreate {
            email: Email::parse("a@x.io").unwrap(),
            record: CustomerRecord::default(),
        })];
        let undo = inverse(&ops);
        assert!(undo.operations.is_empty());
        assert_eq!(undo.not_undoable[0].op, "create_customer");
    }
}
