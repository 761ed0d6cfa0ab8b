//! The planner proper: operations into the fewest calls, by phase, and the lower bound.

use std::collections::BTreeMap;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::*;
use crate::diff::{Assignment, Change, CustomerCreate, DeviceCreate};
use crate::model::{CustomerRecord, DeviceIdent, Email, Properties, TelemetronId};

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
    customer_updates: Vec<(&'a Email, Option<&'a TelemetronId>, &'a CustomerRecord)>,
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
    calls_of(ops, batching, Named::Include)
}

/// The creates of customers with details beyond an email, which no assign call can make
/// (`autoCreateOwners` creates an email and nothing else): known without the grouping, so
/// `apply` sends them while [`calls_but_named_creates`] makes the rest. In the operations' order,
/// each made as it is asked for (a migration has millions, and they go out over hours), from
/// operations the iterator holds.
pub fn named_creates(ops: Arc<Vec<Operation>>) -> impl Iterator<Item = ApiCall> + Send {
    (0..ops.len()).filter_map(move |i| named_create(&ops[i]))
}

/// How many calls [`named_creates`] makes.
pub fn named_create_count(ops: &[Operation]) -> usize {
    ops.iter().filter(|op| named_create_of(op).is_some()).count()
}

fn named_create_of(op: &Operation) -> Option<&CustomerCreate> {
    match op {
        Operation::CreateCustomer(c) if !email_only(&c.email, &c.record) => Some(c),
        _ => None,
    }
}

fn named_create(op: &Operation) -> Option<ApiCall> {
    named_create_of(op).map(|c| ApiCall::CreateCustomer { email: c.email.clone(), record: c.record.clone() })
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
    let (metadata, grouping) = build_calls(&p, batching, graph.as_ref(), calls);
    // The assign calls are made once the lists they were grouped from and what the graph held
    // only for the grouping are freed, the properties calls once the rest of it is: at a
    // migration the graph is a gigabyte, the assign calls millions, the properties ten million.
    drop(p);
    calls.late(grouping.as_ref().map_or(0, Grouping::call_count), metadata.len().div_ceil(metadata_chunk(batching)));
    if let (Some(graph), Some(grouping)) = (graph, grouping) {
        let PairGraph { customers, devices, new, new_customer, .. } = { graph };
        assign_calls(
            Keys { customers: &customers, devices: &devices, new: &new, new_customer: &new_customer },
            grouping,
            calls,
        );
    }
    properties_calls(metadata, batching, calls);
}

/// Which of the two phases [`staged_calls`] streams a call is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Late {
    Assign,
    Properties,
}

/// The calls of a plan, for `apply`: those of [`calls_but_named_creates`] (of [`calls`] when
/// `named`), the assign and properties calls one at a time. At a migration those two phases
/// are millions of calls, gigabytes beside the operations, and go out last, after hours of
/// creates: `first` is given the rest (the two phases empty) with how many calls each of the
/// two will have, before any of them is made; then `send` is given each assign call, then each
/// properties call, as they are made. `send` may wait (a bounded channel, read as the phases
/// run); once it answers false (nobody reads them any more), nothing more is made.
pub fn staged_calls(
    ops: &[Operation],
    batching: Batching,
    named: bool,
    first: impl FnOnce(Calls, usize, usize),
    send: impl FnMut(Late, ApiCall) -> bool,
) {
    let named = if named { Named::Include } else { Named::Leave };
    let mut staging = Staging { calls: Calls::default(), first: Some(first), send, gone: false };
    calls_into(ops, batching, named, &mut staging);
}

/// The sink of [`staged_calls`]: keeps the calls until [`Sink::late`], then streams.
struct Staging<F, S> {
    calls: Calls,
    /// `None` once the rest has been handed to it: from then on the assign and properties
    /// calls are sent.
    first: Option<F>,
    send: S,
    /// `send` answered false.
    gone: bool,
}

impl<F: FnOnce(Calls, usize, usize), S: FnMut(Late, ApiCall) -> bool> Sink for Staging<F, S> {
    const ORDERED: bool = true;

    fn push(&mut self, phase: Phase, call: impl FnOnce() -> ApiCall) {
        let late = match phase {
            Phase::Assign => Late::Assign,
            Phase::Properties => Late::Properties,
            _ => return self.calls.push(phase, call),
        };
        if self.first.is_some() {
            // Only the assign calls made without a grouping come before `late`.
            self.calls.push(phase, call);
        } else if !self.gone {
            self.gone = !(self.send)(late, call());
        }
    }

    fn late(&mut self, assign: usize, properties: usize) {
        let made = std::mem::take(&mut self.calls.assign);
        debug_assert!(self.calls.properties.is_empty());
        if let Some(first) = self.first.take() {
            first(std::mem::take(&mut self.calls), made.len() + assign, properties);
        }
        for call in made {
            if self.gone {
                break;
            }
            self.gone = !(self.send)(Late::Assign, call);
        }
    }
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
        let (metadata, grouping) = build_calls(&p, batching, batching.optimize.then_some(&graph), &mut count);
        if let Some(grouping) = grouping {
            assign_calls(Keys::of(&graph), grouping, &mut count);
        }
        properties_calls(metadata, batching, &mut count);
        (count.0, bound.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
    })
}

/// The new (customer, device) pairs as a bipartite graph by index, with a minimum vertex cover
/// of the pairs that are not a shared new device's.
///
/// A new device with several new owners costs a call of its own whatever the cover says: it is
/// created by the one call that holds it or by a `POST /device` before the calls that do. So
/// its pairs are left out of the cover, and it goes in one device call holding them all — or,
/// when every owner has a call anyway, is created by `POST /device` (properties and all) and
/// rides in those.
struct PairGraph<'a> {
    customers: Vec<&'a Email>,
    devices: Vec<&'a DeviceIdent>,
    /// Per customer create (as in `Parts::customer_creates`): its customer, if a new pair
    /// names it. The keys are long: each is looked up once, here.
    customer_create_at: Vec<Option<u32>>,
    /// Per device create (as in `Parts::device_creates`): its device, if a new pair names it.
    device_create_at: Vec<Option<u32>>,
    edges: Vec<(u32, u32)>,
    /// Per device: how many new pairs name it.
    degree: Vec<u32>,
    /// Per device: its create, when this run creates it (looked up once by index: the keys are
    /// long, and asked for often).
    new: Vec<Option<&'a DeviceCreate>>,
    /// Per customer: its record, when this run creates it.
    new_customer: Vec<Option<&'a CustomerRecord>>,
    /// Per device: a new device with two or more new pairs.
    shared_new: Vec<bool>,
    /// Per device: a shared new device whose pairs all go in its device call.
    by_device: Vec<bool>,
    cover_customers: Vec<bool>,
    cover_size: usize,
}

impl<'a> PairGraph<'a> {
    fn new(p: &Parts<'a>) -> PairGraph<'a> {
        let (assign, device_creates) = (&p.assign, &p.device_creates);
        // Both sides at once: the keys are long and scattered over the heap, and indexing them
        // was most of the planner's time at a migration.
        let ((customers, customer_create_at), (devices, device_create_at)) = std::thread::scope(|s| {
            let customers = s.spawn(|| {
                let f = FirstSeen::of(assign.iter().map(|a| &a.customer), p.customer_creates.len());
                let creates = f.find_all(p.customer_creates.iter().map(|(e, _)| *e));
                (f, creates)
            });
            let f = FirstSeen::of(assign.iter().map(|a| &a.device), device_creates.len());
            let creates = f.find_all(device_creates.iter().map(|c| &c.identifier));
            (customers.join().unwrap_or_else(|e| std::panic::resume_unwind(e)), (f, creates))
        });
        let mut g = PairGraph {
            customers: Vec::new(),
            devices: Vec::new(),
            customer_create_at,
            device_create_at,
            edges: customers.at.iter().copied().zip(devices.at.iter().copied()).collect(),
            degree: Vec::new(),
            new: Vec::new(),
            new_customer: Vec::new(),
            shared_new: Vec::new(),
            by_device: Vec::new(),
            cover_customers: Vec::new(),
            cover_size: 0,
        };
        g.customers = customers.keys;
        g.devices = devices.keys;
        g.degree = vec![0; g.devices.len()];
        for &(_, d) in &g.edges {
            g.degree[d as usize] += 1;
        }
        g.new = vec![None; g.devices.len()];
        for (c, d) in device_creates.iter().zip(&g.device_create_at) {
            if let Some(d) = d {
                g.new[*d as usize] = Some(*c);
            }
        }
        g.new_customer = vec![None; g.customers.len()];
        for ((_, record), c) in p.customer_creates.iter().zip(&g.customer_create_at) {
            if let Some(c) = c {
                g.new_customer[*c as usize] = Some(*record);
            }
        }
        g.shared_new = g.new.iter().zip(&g.degree).map(|(new, degree)| new.is_some() && *degree >= 2).collect();
        let rest: Vec<(u32, u32)>;
        let covered = if g.shared_new.contains(&true) {
            rest = g.edges.iter().copied().filter(|&(_, d)| !g.shared_new[d as usize]).collect();
            &rest
        } else {
            &g.edges
        };
        let (cover_c, cover_d) = crate::plan::cover::min_vertex_cover(g.customers.len(), g.devices.len(), covered);
        g.cover_size = cover_c.iter().chain(&cover_d).filter(|x| **x).count();
        // A shared new device whose owners all have calls anyway rides in those (created
        // before them by a `POST /device`, which carries its properties too); any other goes
        // in a device call of its own.
        let mut owners_with_calls = vec![0u32; g.devices.len()];
        for &(c, d) in &g.edges {
            if g.shared_new[d as usize] && cover_c[c as usize] {
                owners_with_calls[d as usize] += 1;
            }
        }
        g.by_device = (0..g.devices.len()).map(|d| g.shared_new[d] && owners_with_calls[d] < g.degree[d]).collect();
        g.cover_customers = cover_c;
        g
    }
}

/// The distinct keys of a list, numbered in the order they first come, and each item's number.
///
/// A plan's assignments are sorted by device, so equal devices are neighbours: while the keys
/// come in order, a comparison with the last one numbers them, and a merge finds a list of
/// keys among them; once one comes out of order (the customers, or a plan edited by hand), a
/// hash map takes over.
struct FirstSeen<'a, K> {
    keys: Vec<&'a K>,
    at: Vec<u32>,
    /// `None` while the keys came in order (`keys` is then sorted and without repeats).
    map: Option<FxHashMap<&'a K, usize>>,
}

impl<'a, K: Ord + std::hash::Hash> FirstSeen<'a, K> {
    /// `distinct` is a guess of how many keys there are, to size the map.
    fn of(list: impl ExactSizeIterator<Item = &'a K>, distinct: usize) -> FirstSeen<'a, K> {
        let mut f = FirstSeen { keys: Vec::new(), at: Vec::with_capacity(list.len()), map: None };
        for k in list {
            let in_order = f.map.is_none() && f.keys.last().is_none_or(|last| *last <= k);
            let i = if in_order {
                if f.keys.last() != Some(&k) {
                    f.keys.push(k);
                }
                f.keys.len() - 1
            } else {
                let keys = &mut f.keys;
                let map = f.map.get_or_insert_with(|| {
                    let mut map = FxHashMap::with_capacity_and_hasher(distinct.max(keys.len()), Default::default());
                    map.extend(keys.iter().enumerate().map(|(i, k)| (*k, i)));
                    map
                });
                *map.entry(k).or_insert_with(|| {
                    keys.push(k);
                    keys.len() - 1
                })
            };
            f.at.push(i as u32);
        }
        f
    }

    /// The number of each of these keys, if it is among them.
    fn find_all<'k>(&self, wanted: impl Iterator<Item = &'k K>) -> Vec<Option<u32>>
    where
        K: 'k,
    {
        match &self.map {
            Some(map) => wanted.map(|k| map.get(k).map(|&i| i as u32)).collect(),
            // Sorted keys: a merge (galloping) while the wanted ones come in order; back to
            // the start when one does not.
            None => {
                let (mut from, mut last) = (0, None);
                wanted
                    .map(|k| {
                        if last.is_some_and(|l| k < l) {
                            from = 0;
                        }
                        last = Some(k);
                        from += below(&self.keys[from..], k);
                        self.keys.get(from).is_some_and(|x| *x == k).then_some(from as u32)
                    })
                    .collect()
            }
        }
    }
}

/// How many of these sorted keys are below `k`, found from the front in O(log of the answer).
fn below<K: Ord>(keys: &[&K], k: &K) -> usize {
    let mut hi = 1;
    while hi < keys.len() && keys[hi - 1] < k {
        hi *= 2;
    }
    let lo = hi / 2;
    lo + keys[lo..hi.min(keys.len())].partition_point(|x| *x < k)
}

/// The indices `0..n`, in the order of their keys when the sink keeps the calls (a count
/// needs no order, nor the keys' list).
fn in_key_order<'k, S: Sink>(n: usize, key: impl Fn(usize) -> &'k str) -> impl Iterator<Item = u32> {
    let order: Vec<u32> = if S::ORDERED {
        let mut keyed: Vec<(&str, u32)> = (0..n).map(|i| (key(i), i as u32)).collect();
        sort_for::<S, _>(&mut keyed, |(k, _)| k);
        keyed.into_iter().map(|(_, i)| i).collect()
    } else {
        (0..n as u32).collect()
    };
    order.into_iter()
}

/// Lists of items by group, flat (a group is a range of one list), in the order they came.
struct Groups {
    start: Vec<u32>,
    items: Vec<u32>,
}

impl Groups {
    /// From (group, item) pairs, each group below `groups`.
    fn new(groups: usize, pairs: impl Iterator<Item = (u32, u32)> + Clone) -> Groups {
        let mut start = vec![0u32; groups + 1];
        for (g, _) in pairs.clone() {
            start[g as usize + 1] += 1;
        }
        for g in 0..groups {
            start[g + 1] += start[g];
        }
        let mut items = vec![0u32; start[groups] as usize];
        let mut next = start.clone();
        for (g, item) in pairs {
            items[next[g as usize] as usize] = item;
            next[g as usize] += 1;
        }
        Groups { start, items }
    }

    fn of(&self, g: u32) -> &[u32] {
        &self.items[self.start[g as usize] as usize..self.start[g as usize + 1] as usize]
    }

    fn iter(&self) -> impl Iterator<Item = &[u32]> {
        self.start.windows(2).map(|w| &self.items[w[0] as usize..w[1] as usize])
    }
}

/// `graph` is `Some` exactly when `batching.optimize` is set. Makes every call but the
/// properties' and, with a graph, the assign calls: returns the devices whose properties
/// [`properties_calls`] sends, and the grouping [`assign_calls`] makes the assign calls of.
fn build_calls<'a, S: Sink>(
    p: &Parts<'a>,
    batching: Batching,
    graph: Option<&PairGraph<'a>>,
    calls: &mut S,
) -> (Vec<(&'a DeviceIdent, &'a Properties)>, Option<Grouping>) {
    let batch = batching.batch_size.max(1);
    for (email, id, record) in &p.customer_updates {
        calls.push(Phase::CustomerUpdates, || ApiCall::UpdateCustomer {
            email: (*email).clone(),
            telemetron_id: id.cloned(),
            record: (*record).clone(),
        });
    }
    for (ident, t) in &p.type_changes {
        calls.push(Phase::Devices, || ApiCall::UpsertDevice {
            identifier: (*ident).clone(),
            device_type: (*t).clone(),
            properties: None,
            create: false,
        });
    }
    for (customer, devices) in by_customer(&p.unassign) {
        for chunk in devices.chunks(batch) {
            calls.push(Phase::Unassign, || ApiCall::UnassignDevicesFromOwner {
                customer: customer.clone(),
                devices: chunk.iter().map(|d| (*d).clone()).collect(),
            });
        }
    }
    let mut metadata: Vec<(&DeviceIdent, &Properties)> = p.property_changes.clone();
    let mut grouping = None;

    if let Some(graph) = graph {
        grouping = Some(group_assignments(p, graph, batch, calls, &mut metadata));
    } else {
        for (email, record) in p.customer_creates.iter().filter(|(e, r)| p.sends_create(e, r)) {
            calls.push(Phase::Customers, || ApiCall::CreateCustomer {
                email: (*email).clone(),
                record: (*record).clone(),
            });
        }
        for c in &p.device_creates {
            calls.push(Phase::Devices, || create_device_call(c));
        }
        for (customer, devices) in by_customer(&p.assign) {
            for chunk in devices.chunks(batch) {
                calls.push(Phase::Assign, || ApiCall::AssignDevicesToOwner {
                    customer: customer.clone(),
                    devices: chunk.iter().map(|d| (*d).clone()).collect(),
                    create: None,
                    create_customer: None,
                });
            }
        }
    }
    (metadata, grouping)
}

/// Devices per bulk-metadata call.
fn metadata_chunk(batching: Batching) -> usize {
    batching.metadata_batch_size.clamp(1, METADATA_CAP)
}

/// The bulk-metadata calls for these devices' properties, in device order.
fn properties_calls<S: Sink>(mut metadata: Vec<(&DeviceIdent, &Properties)>, batching: Batching, calls: &mut S) {
    sort_for::<S, _>(&mut metadata, |(d, _)| d.as_str());
    for chunk in metadata.chunks(metadata_chunk(batching)) {
        calls.push(Phase::Properties, || ApiCall::BulkMetadata {
            devices: chunk.iter().map(|(d, props)| ((*d).clone(), (*props).clone())).collect(),
        });
    }
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
/// covers the entity alone: the grouping, by index into the graph's keys, from which
/// [`assign_calls`] makes the calls. Adds the creates it cannot fold to phases 1 and 2, and the
/// properties of folded devices to `metadata`.
fn group_assignments<'a, S: Sink>(
    p: &Parts<'a>,
    graph: &PairGraph<'a>,
    batch: usize,
    calls: &mut S,
    metadata: &mut Vec<(&'a DeviceIdent, &'a Properties)>,
) -> Grouping {
    let PairGraph { customers, devices, edges, by_device, cover_customers: cover_c, .. } = graph;
    // Each pair goes to its customer's call when the customer is in the cover, else its
    // device's; a shared new device's pairs go to its device's unless all its owners have calls.
    let to_customer = |c: u32, d: u32| cover_c[c as usize] && !by_device[d as usize];
    let customer_groups = Groups::new(customers.len(), edges.iter().filter(|&&(c, d)| to_customer(c, d)).copied());
    let device_groups =
        Groups::new(devices.len(), edges.iter().filter(|&&(c, d)| !to_customer(c, d)).map(|&(c, d)| (d, c)));

    // A new device is created by an assign call when exactly one call holds it.
    let mut appearances = vec![0u32; devices.len()];
    for &d in &customer_groups.items {
        appearances[d as usize] += 1;
    }
    for (d, group) in device_groups.iter().enumerate() {
        appearances[d] += group.len().div_ceil(batch) as u32;
    }
    let new_of = &graph.new;
    let folded_device = |d: u32| appearances[d as usize] == 1 && new_of[d as usize].is_some();
    let device_type = |d: u32| new_of[d as usize].map(|c| c.device_type.clone()).unwrap_or_default();

    // Customer calls: the devices this call creates grouped by type (one type per call); then
    // chunks. Devices this run creates in phase 2 ride along with the first group (they exist
    // by phase 4); devices that existed before go in calls of their own, since a call sent with
    // autoCreateDevices would create one Telemetron lost with this group's type instead of
    // reporting it as skipped.
    // One flat list of calls (a customer's are a range of it), each a range of one flat list of
    // devices: a migration has a million customers, and none needs an allocation of its own.
    let mut customer_calls: Vec<CustomerCall> = Vec::new();
    let mut call_devices: Vec<u32> = Vec::with_capacity(customer_groups.items.len());
    let mut calls_of_customer: Vec<u32> = Vec::with_capacity(customers.len() + 1);
    calls_of_customer.push(0);
    let (mut folded, mut fresh, mut existing) = (Vec::new(), Vec::new(), Vec::new());
    for group in customer_groups.iter() {
        folded.clear();
        fresh.clear();
        existing.clear();
        for &d in group {
            if folded_device(d) {
                folded.push(d);
            } else if new_of[d as usize].is_some() {
                fresh.push(d);
            } else {
                existing.push(d);
            }
        }
        // One set per type, in type order, each in the order of the pairs (a stable sort); the
        // fresh devices join the first, or the existing ones when none is folded. Each set is
        // laid down in `call_devices` and cut into calls there, with no list of its own.
        let type_of = |d: &u32| new_of[*d as usize].map_or("", |c| &*c.device_type);
        folded.sort_by(|a, b| type_of(a).cmp(type_of(b)));
        let mut set = |call_devices: &mut Vec<u32>, t: Option<Arc<str>>, parts: [&[u32]; 2]| {
            let at = call_devices.len();
            parts.iter().for_each(|part| call_devices.extend_from_slice(part));
            if S::ORDERED {
                call_devices[at..].sort_by(|a, b| devices[*a as usize].cmp(devices[*b as usize]));
            }
            for start in (at..call_devices.len()).step_by(batch) {
                let end = (start + batch).min(call_devices.len());
                customer_calls.push(CustomerCall { devices: start as u32..end as u32, create: t.clone() });
            }
        };
        let mut fresh_left: &[u32] = &fresh;
        for run in folded.chunk_by(|a, b| type_of(a) == type_of(b)) {
            set(&mut call_devices, Some(device_type(run[0])), [run, std::mem::take(&mut fresh_left)]);
        }
        if !existing.is_empty() || !fresh_left.is_empty() {
            set(&mut call_devices, None, [&existing, fresh_left]);
        }
        calls_of_customer.push(customer_calls.len() as u32);
    }
    drop(customer_groups);

    // A new customer with only an email is created by an assign call when exactly one call holds it.
    let mut customer_appearances: Vec<u32> = calls_of_customer.windows(2).map(|w| w[1] - w[0]).collect();
    for group in device_groups.iter() {
        for chunk in group.chunks(batch) {
            for &c in chunk {
                customer_appearances[c as usize] += 1;
            }
        }
    }
    let new_customer_of = &graph.new_customer;
    let folded_customer = |c: u32| {
        customer_appearances[c as usize] == 1
            && new_customer_of[c as usize].is_some_and(|r| email_only(customers[c as usize], r))
    };

    // Creates that no assign call makes.
    for ((email, record), at) in p.customer_creates.iter().zip(&graph.customer_create_at) {
        let folded = at.is_some_and(folded_customer);
        if !folded && p.sends_create(email, record) {
            calls.push(Phase::Customers, || ApiCall::CreateCustomer {
                email: (*email).clone(),
                record: (*record).clone(),
            });
        }
    }
    for (c, at) in p.device_creates.iter().zip(&graph.device_create_at) {
        match *at {
            Some(d) if folded_device(d) => {
                if !c.properties.is_empty() {
                    metadata.push((&c.identifier, &c.properties));
                }
            }
            _ => calls.push(Phase::Devices, || create_device_call(c)),
        }
    }

    Grouping {
        batch,
        customer_calls,
        call_devices,
        calls_of_customer,
        device_groups,
        appearances,
        customer_appearances,
    }
}

/// A customer call of a [`Grouping`].
struct CustomerCall {
    devices: std::ops::Range<u32>,
    /// The type of the devices it creates (those of its devices that are folded).
    create: Option<Arc<str>>,
}

/// How the new pairs go into assign calls, by index into the graph's keys: all that
/// [`assign_calls`] needs besides them.
struct Grouping {
    batch: usize,
    /// The customers' calls, those of customer `c` at `calls_of_customer[c]..[c + 1]`, each a
    /// range of `call_devices`.
    customer_calls: Vec<CustomerCall>,
    call_devices: Vec<u32>,
    calls_of_customer: Vec<u32>,
    /// Per device, the customers of its device calls.
    device_groups: Groups,
    /// Per device and per customer, how many calls hold it.
    appearances: Vec<u32>,
    customer_appearances: Vec<u32>,
}

impl Grouping {
    /// How many calls [`assign_calls`] makes of it: one per customer call, and a device's
    /// customers in `batch` chunks.
    fn call_count(&self) -> usize {
        self.customer_calls.len() + self.device_groups.iter().map(|g| g.len().div_ceil(self.batch)).sum::<usize>()
    }
}

/// What the assign calls are made from: the graph's keys and what this run creates.
struct Keys<'g, 'a> {
    customers: &'g [&'a Email],
    devices: &'g [&'a DeviceIdent],
    new: &'g [Option<&'a DeviceCreate>],
    new_customer: &'g [Option<&'a CustomerRecord>],
}

impl<'g, 'a> Keys<'g, 'a> {
    fn of(graph: &'g PairGraph<'a>) -> Keys<'g, 'a> {
        Keys {
            customers: &graph.customers,
            devices: &graph.devices,
            new: &graph.new,
            new_customer: &graph.new_customer,
        }
    }
}

/// The assign calls of a grouping: the customers' then the devices', each in key order.
fn assign_calls<S: Sink>(keys: Keys<'_, '_>, g: Grouping, calls: &mut S) {
    let Keys { customers, devices, new: new_of, new_customer: new_customer_of } = keys;
    let Grouping {
        batch,
        customer_calls,
        call_devices,
        calls_of_customer,
        device_groups,
        appearances,
        customer_appearances,
    } = g;
    let folded_device = |d: u32| appearances[d as usize] == 1 && new_of[d as usize].is_some();
    let device_type = |d: u32| new_of[d as usize].map(|c| c.device_type.clone()).unwrap_or_default();
    let folded_customer = |c: u32| {
        customer_appearances[c as usize] == 1
            && new_customer_of[c as usize].is_some_and(|r| email_only(customers[c as usize], r))
    };
    let calls_of =
        |c: u32| &customer_calls[calls_of_customer[c as usize] as usize..calls_of_customer[c as usize + 1] as usize];
    // The assign calls, customers' then devices', each in key order.
    for c in in_key_order::<S>(customers.len(), |c| customers[c].as_str()) {
        let email = customers[c as usize];
        for call in calls_of(c) {
            let held = &call_devices[call.devices.start as usize..call.devices.end as usize];
            calls.push(Phase::Assign, || ApiCall::AssignDevicesToOwner {
                customer: email.clone(),
                devices: held.iter().map(|d| devices[*d as usize].clone()).collect(),
                create: call.create.as_ref().map(|t| {
                    let created = || held.iter().filter(|d| folded_device(**d));
                    let n = created().count();
                    DeviceCreates {
                        device_type: t.clone(),
                        // Sized exactly: collected from a filter, a list of one would take four.
                        only: (n < held.len()).then(|| {
                            let mut list = Vec::with_capacity(n);
                            list.extend(created().map(|d| devices[*d as usize].clone()));
                            list
                        }),
                    }
                }),
                create_customer: folded_customer(c).then(|| new_customer_of[c as usize].cloned()).flatten(),
            });
        }
    }
    // Only the device calls are left: the customer calls' lists go before they are made.
    drop((customer_calls, call_devices, calls_of_customer));
    let grouped: Vec<u32> = (0..devices.len() as u32).filter(|d| !device_groups.of(*d).is_empty()).collect();
    for d in in_key_order::<S>(grouped.len(), |i| devices[grouped[i] as usize].as_str()).map(|i| grouped[i as usize]) {
        let mut group = device_groups.of(d).to_vec();
        if S::ORDERED {
            group.sort_by(|a, b| customers[*a as usize].cmp(customers[*b as usize]));
        }
        for chunk in group.chunks(batch) {
            calls.push(Phase::Assign, || ApiCall::AssignDeviceToOwners {
                device: devices[d as usize].clone(),
                customers: chunk.iter().map(|c| customers[*c as usize].clone()).collect(),
                create: folded_device(d).then(|| device_type(d)),
                create_customers: {
                    // A folded customer is a new one: each of them has its record.
                    let mut list = Vec::with_capacity(chunk.iter().filter(|c| folded_customer(**c)).count());
                    list.extend(
                        chunk.iter().filter(|c| folded_customer(**c)).filter_map(|c| {
                            Some((customers[*c as usize].clone(), new_customer_of[*c as usize]?.clone()))
                        }),
                    );
                    list
                },
            });
        }
    }
}

/// A lower bound on the calls any grouping of these operations needs, under the constraints
/// the API and the planner have: a call auto-creates devices of one type; an auto-creating call
/// holds only devices this run creates (an existing one Telemetron lost would be made anew with
/// a guessed type); an entity a call creates is named by no other call of its phase, since they
/// run at once; properties of an existing device change only by bulk-metadata (whether
/// `POST /device` merges or replaces them is undocumented). Each term counts calls no other
/// term counts:
/// - a call per named customer create, customer update, type change, and new device no
///   assignment names (`POST /device`); removals per customer in `--batch-size` chunks;
/// - one call per shared new device (two or more new owners): a `POST /device`, or the one call
///   that holds all its pairs and so serves no other device;
/// - for the other new pairs, the larger of
///   - a minimum vertex cover of their graph (a call covers one customer's or one device's
///     pairs), and
///   - the (customer, type) pairs of new devices that customer alone owns (each needs an
///     auto-creating call to that customer with that type, a call of one of its devices, or a
///     `POST /device` of one, none shared with another such pair) plus a minimum vertex cover of
///     the pairs of existing devices (which only calls that create nothing can hold);
/// - bulk-metadata at 1,000 devices a call for the changed properties of existing devices and
///   the properties of new devices, less those a `POST /device` counted above could carry at no
///   extra call (its pairs riding in calls counted above): a shared new device whose owners all
///   have other new pairs, and the single device of a (customer, type) pair when that customer
///   has another such pair or existing devices to take.
fn lower_bound(p: &Parts<'_>, batching: Batching, graph: &PairGraph<'_>) -> usize {
    let private = private_creates(graph);
    let shared_new = graph.shared_new.iter().filter(|s| **s).count();
    let existing_cover = if private.pairs == 0 {
        0
    } else {
        let existing: Vec<(u32, u32)> =
            graph.edges.iter().copied().filter(|&(_, d)| graph.new[d as usize].is_none()).collect();
        let (c, d) = crate::plan::cover::min_vertex_cover(graph.customers.len(), graph.devices.len(), &existing);
        c.iter().chain(&d).filter(|x| **x).count()
    };
    let assignments = shared_new + graph.cover_size.max(private.pairs + existing_cover);
    let batch = batching.batch_size.max(1);
    let customers = p.customer_updates.len() + p.customer_creates.iter().filter(|(e, r)| !email_only(e, r)).count();
    let lonely_devices = graph.device_create_at.iter().filter(|at| at.is_none()).count();
    let unassign: usize = by_customer(&p.unassign).values().map(|d| d.len().div_ceil(batch)).sum();
    let new_with_properties = p
        .device_creates
        .iter()
        .zip(&graph.device_create_at)
        .filter(|(c, at)| at.is_some() && !c.properties.is_empty())
        .count();
    let props = p.property_changes.len() + new_with_properties.saturating_sub(private.could_carry_properties);
    customers + p.type_changes.len() + lonely_devices + unassign + assignments + props.div_ceil(METADATA_CAP)
}

/// What the new devices ask of the calls, for the lower bound.
struct PrivateCreates {
    /// The distinct (customer, device type) pairs among the new devices one new pair names.
    pairs: usize,
    /// The new devices with properties whose `POST /device` could be a call the bound counts
    /// already and whose pairs could ride in counted calls.
    could_carry_properties: usize,
}

fn private_creates(graph: &PairGraph<'_>) -> PrivateCreates {
    let mut private: FxHashMap<(u32, &str), (u32, u32)> = FxHashMap::default();
    let mut could_carry_properties = 0;
    for &(c, d) in &graph.edges {
        let Some(create) = graph.new[d as usize] else { continue };
        if graph.degree[d as usize] == 1 {
            let (devices, with_properties) = private.entry((c, &*create.device_type)).or_default();
            *devices += 1;
            *with_properties += u32::from(!create.properties.is_empty());
        }
    }
    // A shared new device's `POST /device` carries its properties at no extra call only if its
    // pairs ride in calls counted already: its owners' own, so each owner must have other pairs.
    let mut has_other_pairs = vec![false; graph.customers.len()];
    let mut owners_without = vec![0u32; graph.devices.len()];
    for &(c, d) in &graph.edges {
        if !graph.shared_new[d as usize] {
            has_other_pairs[c as usize] = true;
        }
    }
    for &(c, d) in &graph.edges {
        if graph.shared_new[d as usize] && !has_other_pairs[c as usize] {
            owners_without[d as usize] += 1;
        }
    }
    for (d, create) in graph.new.iter().enumerate() {
        if graph.shared_new[d] && owners_without[d] == 0 && create.is_some_and(|c| !c.properties.is_empty()) {
            could_carry_properties += 1;
        }
    }
    // The single device of a (customer, type) pair: its `POST /device` is that pair's call, and
    // the pair rides in another of the customer's: at most all but one of its pairs' calls, or
    // all when it also has existing devices to take (a call that creates nothing can hold them).
    let mut units = vec![0usize; graph.customers.len()];
    let mut singles = vec![0usize; graph.customers.len()];
    for (&(c, _), &(devices, with_properties)) in &private {
        units[c as usize] += 1;
        singles[c as usize] += usize::from(devices == 1 && with_properties == 1);
    }
    let mut takes_existing = vec![false; graph.customers.len()];
    for &(c, d) in &graph.edges {
        takes_existing[c as usize] |= graph.new[d as usize].is_none();
    }
    for c in 0..graph.customers.len() {
        let others = (units[c] + usize::from(takes_existing[c])).saturating_sub(1);
        could_carry_properties += singles[c].min(others);
    }
    PrivateCreates { pairs: private.len(), could_carry_properties }
}

fn by_customer<'a>(list: &[&'a Assignment]) -> BTreeMap<&'a Email, Vec<&'a DeviceIdent>> {
    let mut map: BTreeMap<&Email, Vec<&DeviceIdent>> = BTreeMap::new();
    for a in list {
        map.entry(&a.customer).or_default().push(&a.device);
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The numbering a hash map gives, and each wanted key's number in it.
    fn oracle(list: &[u32], wanted: &[u32]) -> (Vec<u32>, Vec<u32>, Vec<Option<u32>>) {
        let mut keys = Vec::new();
        let mut ix = std::collections::HashMap::new();
        let at = list
            .iter()
            .map(|k| {
                *ix.entry(*k).or_insert_with(|| {
                    keys.push(*k);
                    (keys.len() - 1) as u32
                })
            })
            .collect();
        (keys, at, wanted.iter().map(|k| ix.get(k).copied()).collect())
    }

    /// Sorted lists, sorted lists broken at one place, shuffled ones; wanted keys in order,
    /// out of order, repeated and missing: the numbers are the hash map's in every case.
    #[test]
    fn first_seen_numbers_keys_as_a_hash_map_would() {
        let mut next = crate::model::seeded(29);
        for case in 0..600 {
            let n = (next() % 60) as usize;
            let span = 1 + next() % 40;
            let mut list: Vec<u32> = (0..n).map(|_| (next() % span) as u32).collect();
            match case % 3 {
                0 => list.sort(),
                1 => {
                    list.sort();
                    if n > 1 {
                        let at = (next() as usize) % n;
                        list[at] = (next() % span) as u32;
                    }
                }
                _ => {}
            }
            let mut wanted: Vec<u32> = (0..next() % 30).map(|_| (next() % (span + 5)) as u32).collect();
            if next().is_multiple_of(2) {
                wanted.sort();
            }
            let f = FirstSeen::of(list.iter(), (next() % 8) as usize);
            let found = f.find_all(wanted.iter());
            let (keys, at, expected) = oracle(&list, &wanted);
            assert_eq!(f.keys.iter().map(|k| **k).collect::<Vec<_>>(), keys, "{list:?}");
            assert_eq!(f.at, at, "{list:?}");
            assert_eq!(found, expected, "{list:?} {wanted:?}");
        }
    }

    #[test]
    fn below_counts_the_smaller_keys() {
        let keys: Vec<u32> = (0..100).map(|i| i * 2).collect();
        let refs: Vec<&u32> = keys.iter().collect();
        for k in 0..210 {
            assert_eq!(below(&refs, &k), keys.iter().filter(|x| **x < k).count(), "{k}");
        }
        assert_eq!(below::<u32>(&[], &3), 0);
    }
}
