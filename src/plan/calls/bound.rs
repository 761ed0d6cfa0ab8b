//! The lower bound: no grouping of the operations can need fewer calls.

use super::graph::*;
use super::*;

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
pub(super) fn lower_bound(p: &Parts<'_>, batching: Batching, graph: &PairGraph<'_>) -> usize {
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
pub(super) struct PrivateCreates {
    /// The distinct (customer, device type) pairs among the new devices one new pair names.
    pub(super) pairs: usize,
    /// The new devices with properties whose `POST /device` could be a call the bound counts
    /// already and whose pairs could ride in counted calls.
    pub(super) could_carry_properties: usize,
}

pub(super) fn private_creates(graph: &PairGraph<'_>) -> PrivateCreates {
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

pub(super) fn by_customer<'a>(list: &[&'a Assignment]) -> BTreeMap<&'a Email, Vec<&'a DeviceIdent>> {
    let mut map: BTreeMap<&Email, Vec<&DeviceIdent>> = BTreeMap::new();
    for a in list {
        map.entry(&a.customer).or_default().push(&a.device);
    }
    map
}
