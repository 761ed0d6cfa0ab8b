//! The new pairs as a bipartite graph by index, its minimum vertex cover, and the keys'
//! numbering the graph is built with.

use super::*;

/// The new (customer, device) pairs as a bipartite graph by index, with a minimum vertex cover
/// of the pairs that are not a shared new device's.
///
/// A new device with several new owners costs a call of its own whatever the cover says: it is
/// created by the one call that holds it or by a `POST /device` before the calls that do. So
/// its pairs are left out of the cover, and it goes in one device call holding them all — or,
/// when every owner has a call anyway, is created by `POST /device` (properties and all) and
/// rides in those.
pub(super) struct PairGraph<'a> {
    pub(super) customers: Vec<&'a Email>,
    pub(super) devices: Vec<&'a DeviceIdent>,
    /// Per customer create (as in `Parts::customer_creates`): its customer, if a new pair
    /// names it. The keys are long: each is looked up once, here.
    pub(super) customer_create_at: Vec<Option<u32>>,
    /// Per device create (as in `Parts::device_creates`): its device, if a new pair names it.
    pub(super) device_create_at: Vec<Option<u32>>,
    pub(super) edges: Vec<(u32, u32)>,
    /// Per device: how many new pairs name it.
    pub(super) degree: Vec<u32>,
    /// Per device: its create, when this run creates it (looked up once by index: the keys are
    /// long, and asked for often).
    pub(super) new: Vec<Option<&'a DeviceCreate>>,
    /// Per customer: its record, when this run creates it.
    pub(super) new_customer: Vec<Option<&'a CustomerRecord>>,
    /// Per device: a new device with two or more new pairs.
    pub(super) shared_new: Vec<bool>,
    /// Per device: a shared new device whose pairs all go in its device call.
    pub(super) by_device: Vec<bool>,
    pub(super) cover_customers: Vec<bool>,
    pub(super) cover_size: usize,
}

impl<'a> PairGraph<'a> {
    pub(super) fn new(p: &Parts<'a>) -> PairGraph<'a> {
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
pub(super) struct FirstSeen<'a, K> {
    pub(super) keys: Vec<&'a K>,
    pub(super) at: Vec<u32>,
    /// `None` while the keys came in order (`keys` is then sorted and without repeats).
    pub(super) map: Option<FxHashMap<&'a K, usize>>,
}

impl<'a, K: Ord + std::hash::Hash> FirstSeen<'a, K> {
    /// `distinct` is a guess of how many keys there are, to size the map.
    pub(super) fn of(list: impl ExactSizeIterator<Item = &'a K>, distinct: usize) -> FirstSeen<'a, K> {
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
    pub(super) fn find_all<'k>(&self, wanted: impl Iterator<Item = &'k K>) -> Vec<Option<u32>>
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
pub(super) fn below<K: Ord>(keys: &[&K], k: &K) -> usize {
    let mut hi = 1;
    while hi < keys.len() && keys[hi - 1] < k {
        hi *= 2;
    }
    let lo = hi / 2;
    lo + keys[lo..hi.min(keys.len())].partition_point(|x| *x < k)
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
