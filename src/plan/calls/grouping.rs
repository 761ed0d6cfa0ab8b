//! The calls of the operations, phase by phase: the creates and updates, the assignments
//! grouped by the cover (the fewest calls), and the properties.

use super::graph::*;
use super::*;

/// The indices `0..n`, in the order of their keys when the sink keeps the calls (a count
/// needs no order, nor the keys' list).
pub(super) fn in_key_order<'k, S: Sink>(n: usize, key: impl Fn(usize) -> &'k str) -> impl Iterator<Item = u32> {
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
pub(super) struct Groups {
    pub(super) start: Vec<u32>,
    pub(super) items: Vec<u32>,
}

impl Groups {
    /// From (group, item) pairs, each group below `groups`.
    pub(super) fn new(groups: usize, pairs: impl Iterator<Item = (u32, u32)> + Clone) -> Groups {
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

    pub(super) fn of(&self, g: u32) -> &[u32] {
        &self.items[self.start[g as usize] as usize..self.start[g as usize + 1] as usize]
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &[u32]> {
        self.start.windows(2).map(|w| &self.items[w[0] as usize..w[1] as usize])
    }
}

/// `graph` is `Some` exactly when `batching.optimize` is set. Makes every call but the
/// properties' and, with a graph, the assign calls: returns the devices whose properties
/// [`properties_calls`] sends, and the grouping [`assign_calls`] makes the assign calls of.
pub(super) fn build_calls<'a, S: Sink>(
    p: &Parts<'a>,
    batching: Batching,
    graph: Option<&PairGraph<'a>>,
    calls: &mut S,
) -> (Vec<(&'a DeviceIdent, &'a Properties)>, Option<Grouping>) {
    let batch = batching.batch_size.max(1);
    for (email, id, record, clears) in &p.customer_updates {
        calls.push(Phase::CustomerUpdates, || ApiCall::UpdateCustomer {
            email: (*email).clone(),
            telemetron_id: id.cloned(),
            record: (*record).clone(),
            clears: *clears,
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
pub(super) fn metadata_chunk(batching: Batching) -> usize {
    batching.metadata_batch_size.clamp(1, METADATA_CAP)
}

/// The bulk-metadata calls for these devices' properties, in device order.
pub(super) fn properties_calls<S: Sink>(
    mut metadata: Vec<(&DeviceIdent, &Properties)>,
    batching: Batching,
    calls: &mut S,
) {
    sort_for::<S, _>(&mut metadata, |(d, _)| d.as_str());
    for chunk in metadata.chunks(metadata_chunk(batching)) {
        calls.push(Phase::Properties, || ApiCall::BulkMetadata {
            devices: chunk.iter().map(|(d, props)| ((*d).clone(), (*props).clone())).collect(),
        });
    }
}

pub(super) fn create_device_call(c: &DeviceCreate) -> ApiCall {
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
pub(super) fn group_assignments<'a, S: Sink>(
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
pub(super) struct CustomerCall {
    pub(super) devices: std::ops::Range<u32>,
    /// The type of the devices it creates (those of its devices that are folded).
    pub(super) create: Option<Arc<str>>,
}

/// How the new pairs go into assign calls, by index into the graph's keys: all that
/// [`assign_calls`] needs besides them.
pub(super) struct Grouping {
    pub(super) batch: usize,
    /// The customers' calls, those of customer `c` at `calls_of_customer[c]..[c + 1]`, each a
    /// range of `call_devices`.
    pub(super) customer_calls: Vec<CustomerCall>,
    pub(super) call_devices: Vec<u32>,
    pub(super) calls_of_customer: Vec<u32>,
    /// Per device, the customers of its device calls.
    pub(super) device_groups: Groups,
    /// Per device and per customer, how many calls hold it.
    pub(super) appearances: Vec<u32>,
    pub(super) customer_appearances: Vec<u32>,
}

impl Grouping {
    /// How many calls [`assign_calls`] makes of it: one per customer call, and a device's
    /// customers in `batch` chunks.
    pub(super) fn call_count(&self) -> usize {
        self.customer_calls.len() + self.device_groups.iter().map(|g| g.len().div_ceil(self.batch)).sum::<usize>()
    }
}

/// What the assign calls are made from: the graph's keys and what this run creates.
pub(super) struct Keys<'g, 'a> {
    pub(super) customers: &'g [&'a Email],
    pub(super) devices: &'g [&'a DeviceIdent],
    pub(super) new: &'g [Option<&'a DeviceCreate>],
    pub(super) new_customer: &'g [Option<&'a CustomerRecord>],
}

impl<'g, 'a> Keys<'g, 'a> {
    pub(super) fn of(graph: &'g PairGraph<'a>) -> Keys<'g, 'a> {
        Keys {
            customers: &graph.customers,
            devices: &graph.devices,
            new: &graph.new,
            new_customer: &graph.new_customer,
        }
    }
}

/// The assign calls of a grouping: the customers' then the devices', each in key order.
pub(super) fn assign_calls<S: Sink>(keys: Keys<'_, '_>, g: Grouping, calls: &mut S) {
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
