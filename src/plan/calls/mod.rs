//! The planner proper: operations into the fewest calls, by phase, and the lower bound.

use std::collections::BTreeMap;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::*;

mod bound;
mod graph;
mod grouping;
mod staging;

use crate::diff::{Assignment, Change, CustomerCreate, DeviceCreate};
use crate::model::{CustomerRecord, DeviceIdent, Email, Properties, TelemetronId};
use bound::*;
use graph::*;
use grouping::*;
pub use staging::{Late, named_create_count, named_creates, staged_calls};

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
        /// The update empties a field the snapshot holds: what Telemetron keeps is read back.
        clears: bool,
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
        create: Option<DeviceCreates>,
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

/// The devices an `assignDevicesToOwner` call creates: of one type, and all of the call's
/// devices unless `only` lists some of them (a migration's calls create every device they
/// hold, and need no second list for it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCreates {
    pub device_type: Arc<str>,
    pub only: Option<Vec<DeviceIdent>>,
}

impl DeviceCreates {
    /// The devices created, of the call's `devices`.
    pub fn of<'a>(&'a self, devices: &'a [DeviceIdent]) -> &'a [DeviceIdent] {
        self.only.as_deref().unwrap_or(devices)
    }
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

/// The six phases of a plan's calls, in execution order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Customers,
    Devices,
    Unassign,
    Assign,
    CustomerUpdates,
    Properties,
}

/// Where the planner puts each call it makes: [`Calls`] keeps them, [`CallCount`] only counts
/// them (`plan` needs the number, not the calls: a migration's are a million values).
trait Sink {
    /// Whether the order of the calls matters: a count is the same in any order, so the
    /// sorts that make the calls deterministic are left out for it.
    const ORDERED: bool;
    fn push(&mut self, phase: Phase, call: impl FnOnce() -> ApiCall);
    /// Every call but the assign calls a grouping makes and the properties calls has been
    /// pushed; these follow, `assign` and `properties` of them.
    fn late(&mut self, _assign: usize, _properties: usize) {}
}

/// Sorts by `key` when the sink keeps the calls (stable, as `sort_by` is).
fn sort_for<S: Sink, T>(items: &mut [T], key: impl Fn(&T) -> &str) {
    if S::ORDERED {
        crate::model::sort_by_str_key(items, key, |_, _| std::cmp::Ordering::Equal);
    }
}

impl Sink for Calls {
    const ORDERED: bool = true;
    fn push(&mut self, phase: Phase, call: impl FnOnce() -> ApiCall) {
        let list = match phase {
            Phase::Customers => &mut self.customers,
            Phase::Devices => &mut self.devices,
            Phase::Unassign => &mut self.unassign,
            Phase::Assign => &mut self.assign,
            Phase::CustomerUpdates => &mut self.customer_updates,
            Phase::Properties => &mut self.properties,
        };
        list.push(call());
    }
}

/// Counts the calls without making them.
#[derive(Debug, Default)]
struct CallCount(usize);

impl Sink for CallCount {
    const ORDERED: bool = false;
    fn push(&mut self, _: Phase, _: impl FnOnce() -> ApiCall) {
        self.0 += 1;
    }
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
    customer_updates: Vec<(&'a Email, Option<&'a TelemetronId>, &'a CustomerRecord, bool)>,
    device_creates: Vec<&'a DeviceCreate>,
    type_changes: Vec<(&'a DeviceIdent, &'a Arc<str>)>,
    property_changes: Vec<(&'a DeviceIdent, &'a Properties)>,
    unassign: Vec<&'a Assignment>,
    assign: Vec<&'a Assignment>,
    /// The named customer creates are sent apart ([`named_creates`]): no call is made for them.
    named_left_out: bool,
}

impl Parts<'_> {
    /// Whether a `CreateCustomer` call is made for this create.
    fn sends_create(&self, email: &Email, record: &CustomerRecord) -> bool {
        !self.named_left_out || email_only(email, record)
    }
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
        named_left_out: false,
    };
    for op in ops {
        match op {
            Operation::CreateCustomer(c) => p.customer_creates.push((&c.email, &c.record)),
            Operation::UpdateCustomer(u) => {
                let clears = u.changes.values().any(|c| c.before.is_some() && c.after.is_none());
                p.customer_updates.push((&u.email, u.telemetron_id.as_ref(), &u.after, clears))
            }
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
    calls_of(ops, batching, Named::Include)
}

/// [`calls`] less [`named_creates`]: the two together are the plan's calls, the named creates
/// in the customers phase.
pub fn calls_but_named_creates(ops: &[Operation], batching: Batching) -> Calls {
    calls_of(ops, batching, Named::Leave)
}

/// Whether the calls made include the named customer creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Named {
    Include,
    Leave,
}

fn calls_of(ops: &[Operation], batching: Batching, named: Named) -> Calls {
    let mut calls = Calls::default();
    calls_into(ops, batching, named, &mut calls);
    calls
}

fn calls_into<S: Sink>(ops: &[Operation], batching: Batching, named: Named, calls: &mut S) {
    let mut p = parts(ops);
    // No named create is folded into an assign call (see `email_only`), so leaving them out
    // changes nothing else.
    p.named_left_out = named == Named::Leave;
    let graph = batching.optimize.then(|| PairGraph::new(&p));
    walk(Held::Owned(p), graph.map(Held::Owned), batching, calls);
}

/// How many calls [`calls`] makes, and their lower bound, from one pass over the operations and
/// one cover, without making the calls.
pub fn call_count_and_lower_bound(ops: &[Operation], batching: Batching) -> (usize, usize) {
    let p = parts(ops);
    let graph = PairGraph::new(&p);
    // Independent reads of the same graph: one on each core.
    std::thread::scope(|s| {
        let bound = s.spawn(|| lower_bound(&p, batching, &graph));
        let mut count = CallCount::default();
        walk(Held::Lent(&p), batching.optimize.then_some(Held::Lent(&graph)), batching, &mut count);
        (count.0, bound.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
    })
}

/// A value a walk owns (and frees when it is done with it) or borrows (another reads it beside).
enum Held<'r, T> {
    Owned(T),
    Lent(&'r T),
}

impl<T> Held<'_, T> {
    fn get(&self) -> &T {
        match self {
            Held::Owned(t) => t,
            Held::Lent(t) => t,
        }
    }
}

/// The one walk from the operations' parts to the calls, into any sink: the calls (`apply`,
/// `undo`), a stream of them ([`staged_calls`]) or their count (`plan`'s `api_calls`), so that
/// what `plan` counts is what `apply` sends by construction. Owned parts and graph are freed as
/// soon as the walk is done with them: the assign calls are made once the lists they were
/// grouped from and what the graph held only for the grouping are freed, the properties calls
/// once the rest of it is (at a migration the graph is a gigabyte, the assign calls millions,
/// the properties ten million).
fn walk<'a, S: Sink>(p: Held<'_, Parts<'a>>, graph: Option<Held<'_, PairGraph<'a>>>, batching: Batching, sink: &mut S) {
    let (metadata, grouping) = build_calls(p.get(), batching, graph.as_ref().map(Held::get), sink);
    drop(p);
    sink.late(grouping.as_ref().map_or(0, Grouping::call_count), metadata.len().div_ceil(metadata_chunk(batching)));
    match (graph, grouping) {
        (Some(Held::Owned(graph)), Some(grouping)) => {
            let PairGraph { customers, devices, new, new_customer, .. } = graph;
            let keys = Keys { customers: &customers, devices: &devices, new: &new, new_customer: &new_customer };
            assign_calls(keys, grouping, sink);
        }
        (Some(Held::Lent(graph)), Some(grouping)) => assign_calls(Keys::of(graph), grouping, sink),
        _ => {}
    }
    properties_calls(metadata, batching, sink);
}
