//! The collections: `SortedMap` for the snapshot (key order), `Owners` for a device's owners
//! (`KeyMap`, for the export in file order, has its own file).

use super::Email;

/// A map kept as one vector sorted by key: what the snapshot reads, in its primary-key order.
/// Built by appending, with no hashing and no index table beside the entries; found by binary
/// search. The differ walks it in order and looks each key up in the export's hash maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortedMap<K, V> {
    entries: Vec<(K, V)>,
    /// Whether an append came out of order, so that [`SortedMap::finish`] must sort.
    unsorted: bool,
}

impl<K, V> Default for SortedMap<K, V> {
    fn default() -> Self {
        SortedMap { entries: Vec::new(), unsorted: false }
    }
}

impl<K: Ord, V> SortedMap<K, V> {
    pub fn with_capacity(n: usize) -> Self {
        SortedMap { entries: Vec::with_capacity(n), unsorted: false }
    }

    /// Appends an entry read in key order. One out of order is kept too, and sorted by
    /// [`SortedMap::finish`], which must be called after the last append.
    pub fn push(&mut self, key: K, value: V) {
        if self.entries.last().is_some_and(|(last, _)| *last >= key) {
            self.unsorted = true;
        }
        self.entries.push((key, value));
    }

    /// Restores the order after appends: sorts if one came out of order, keeping the last of
    /// equal keys. Says whether it had to (positions taken while appending are then stale).
    pub fn finish(&mut self) -> bool {
        let reorder = std::mem::take(&mut self.unsorted);
        if reorder {
            self.entries.sort_by(|a, b| a.0.cmp(&b.0));
            let mut out: Vec<(K, V)> = Vec::with_capacity(self.entries.len());
            for e in self.entries.drain(..) {
                match out.last_mut() {
                    Some(last) if last.0 == e.0 => *last = e,
                    _ => out.push(e),
                }
            }
            self.entries = out;
        }
        self.entries.shrink_to_fit();
        reorder
    }

    /// Inserts or replaces one entry, keeping the order: O(n), for single changes.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.entries.binary_search_by(|(k, _)| k.cmp(&key)) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                self.entries.insert(i, (key, value));
                None
            }
        }
    }

    fn position<Q: Ord + ?Sized>(&self, key: &Q) -> Option<usize>
    where
        K: std::borrow::Borrow<Q>,
    {
        self.entries.binary_search_by(|(k, _)| k.borrow().cmp(key)).ok()
    }

    pub fn get<Q: Ord + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: std::borrow::Borrow<Q>,
    {
        self.position(key).map(|i| &self.entries[i].1)
    }

    pub fn get_key_value<Q: Ord + ?Sized>(&self, key: &Q) -> Option<(&K, &V)>
    where
        K: std::borrow::Borrow<Q>,
    {
        self.position(key).map(|i| (&self.entries[i].0, &self.entries[i].1))
    }

    pub fn contains_key<Q: Ord + ?Sized>(&self, key: &Q) -> bool
    where
        K: std::borrow::Borrow<Q>,
    {
        self.position(key).is_some()
    }
}

impl<K, V> SortedMap<K, V> {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries in key order.
    pub fn as_slice(&self) -> &[(K, V)] {
        &self.entries
    }

    /// The value of the entry at `index` in key order (the key stays as it is).
    pub fn value_at_mut(&mut self, index: usize) -> &mut V {
        &mut self.entries[index].1
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&K, &V)> + Clone {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl ExactSizeIterator<Item = &K> + Clone {
        self.entries.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl ExactSizeIterator<Item = &V> + Clone {
        self.entries.iter().map(|(_, v)| v)
    }
}

impl<'a, K, V> IntoIterator for &'a SortedMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = std::iter::Map<std::slice::Iter<'a, (K, V)>, fn(&'a (K, V)) -> (&'a K, &'a V)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(|(k, v)| (k, v))
    }
}

impl<K: Ord + std::borrow::Borrow<Q>, V, Q: Ord + ?Sized> std::ops::Index<&Q> for SortedMap<K, V> {
    type Output = V;
    fn index(&self, key: &Q) -> &V {
        self.get(key).expect("no entry for the key")
    }
}

/// A device's owners: almost always one, so kept inline without an allocation.
pub type Owners = smallvec::SmallVec<[Email; 1]>;

/// Sorts `items` as `items.sort_by(|a, b| key(a).cmp(key(b)).then_with(|| then(a, b)))` would
/// (stable), comparing first the key's first 16 bytes, held beside each item: a key longer than
/// inline — most realistic emails and identifiers — is then followed through its pointer only
/// to break a tie of those bytes, instead of at every one of the sort's comparisons.
pub fn sort_by_str_key<T>(items: &mut [T], key: impl Fn(&T) -> &str, then: impl Fn(&T, &T) -> std::cmp::Ordering) {
    let full = |a: &T, b: &T| key(a).cmp(key(b)).then_with(|| then(a, b));
    if items.len() < 64 || u32::try_from(items.len()).is_err() {
        items.sort_by(full);
        return;
    }
    // Zero-padded big-endian: a prefix that orders before another belongs to a key that does.
    let prefix = |s: &str| {
        let mut b = [0u8; 16];
        let n = s.len().min(16);
        b[..n].copy_from_slice(&s.as_bytes()[..n]);
        u128::from_be_bytes(b)
    };
    let mut order: Vec<(u128, u32)> = items.iter().enumerate().map(|(i, t)| (prefix(key(t)), i as u32)).collect();
    order.sort_unstable_by(|a, b| {
        a.0.cmp(&b.0).then_with(|| full(&items[a.1 as usize], &items[b.1 as usize])).then_with(|| a.1.cmp(&b.1))
    });
    // Put item `order[k]` at `k`, cycle by cycle, marking each place done.
    let mut from: Vec<u32> = order.into_iter().map(|(_, i)| i).collect();
    for start in 0..from.len() {
        let mut at = start;
        loop {
            let next = from[at] as usize;
            from[at] = at as u32;
            if next == start {
                break;
            }
            items.swap(at, next);
            at = next;
        }
    }
}

/// [`sort_by_str_key`] for keys that are unique, where nothing breaks a tie.
pub fn sort_by_unique_str_key<T>(items: &mut [T], key: impl Fn(&T) -> &str) {
    sort_by_str_key(items, key, |_, _| std::cmp::Ordering::Equal);
}

/// How many rows a reader looks up in the export's maps at once: independent lookups, whose
/// cache misses overlap instead of following one another.
pub(crate) const LOOKUP_BATCH: usize = 32;

/// Whether this process may run on one CPU only (`taskset`, a container's limit): work split
/// over two threads then only takes turns.
pub fn one_cpu() -> bool {
    std::thread::available_parallelism().is_ok_and(|n| n.get() == 1)
}

/// Sorts `items` by `cmp` (unstably) in place, on two threads when there are many: split once
/// around the median of a sample, each side sorted on its own thread. No buffer beside the
/// items, where a merge sort would need one as large as they are.
pub fn sort_unstable_on_two_threads<T: Send>(items: &mut [T], cmp: impl Fn(&T, &T) -> std::cmp::Ordering + Sync) {
    const ON_ONE: usize = 1 << 16;
    let n = items.len();
    if n < ON_ONE {
        items.sort_unstable_by(&cmp);
        return;
    }
    let mut sample: Vec<usize> = (0..63).map(|k| k * (n - 1) / 62).collect();
    sample.sort_unstable_by(|&a, &b| cmp(&items[a], &items[b]));
    items.swap(sample[31], n - 1);
    let Some((pivot, rest)) = items.split_last_mut() else { return };
    let mut mid = 0;
    for i in 0..rest.len() {
        if cmp(&rest[i], pivot) == std::cmp::Ordering::Less {
            rest.swap(i, mid);
            mid += 1;
        }
    }
    items.swap(mid, n - 1);
    let (before, from_pivot) = items.split_at_mut(mid);
    let after = &mut from_pivot[1..];
    std::thread::scope(|s| {
        let first = s.spawn(|| before.sort_unstable_by(&cmp));
        after.sort_unstable_by(&cmp);
        first.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
    });
}

#[cfg(test)]
mod sort_tests {
    use super::sort_by_str_key;

    /// Against the standard sort, at sizes on both sides of the split, with repeated keys and
    /// keys already in order or reversed.
    #[test]
    fn sorting_on_two_threads_sorts_as_one_thread_does() {
        let mut next = crate::model::seeded(0x2545_f491_4f6c_dd1du64);
        for (n, spread) in [(0usize, 1u64), (1, 1), (1000, 10), (65_535, 1 << 40), (65_536, 3), (200_000, 1 << 40)] {
            for shape in 0..3 {
                let mut items: Vec<(u64, String)> =
                    (0..n).map(|_| (next() % spread, format!("{}", next() % 5))).collect();
                match shape {
                    1 => items.sort(),
                    2 => items.sort_by(|a, b| b.cmp(a)),
                    _ => {}
                }
                let mut want = items.clone();
                want.sort();
                super::sort_unstable_on_two_threads(&mut items, |a, b| a.cmp(b));
                assert_eq!(items, want, "n {n}, spread {spread}, shape {shape}");
            }
        }
    }

    /// Against the standard stable sort, on keys built to tie in their first 16 bytes, to be
    /// prefixes of each other, to repeat, and of every length around the cut.
    #[test]
    fn sorts_as_the_standard_sort_does() {
        let mut next = crate::model::seeded(0x9e37_79b9_7f4a_7c15u64);
        for n in [0usize, 1, 63, 64, 65, 500, 5000] {
            let stems = ["", "a", "aal-sayed1014", "aal-sayed101415@web.d", "UUID-0f8e4c2a-6b1d", "ß", "zz"];
            let items: Vec<(String, u64)> = (0..n)
                .map(|i| {
                    let stem = stems[(next() % stems.len() as u64) as usize];
                    let tail: String = (0..next() % 20).map(|_| (b'a' + (next() % 3) as u8) as char).collect();
                    (format!("{stem}{tail}"), (next() % 4) ^ (i as u64 % 2))
                })
                .collect();
            let mut want = items.clone();
            want.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
            let mut got = items.clone();
            sort_by_str_key(&mut got, |t| t.0.as_str(), |a, b| a.1.cmp(&b.1));
            assert_eq!(got, want, "n = {n}");
            // Stable where `then` says equal, as `sort_by` is.
            let tagged: Vec<(String, usize)> = items.iter().enumerate().map(|(i, t)| (t.0.clone(), i)).collect();
            let mut want = tagged.clone();
            want.sort_by(|a, b| a.0.cmp(&b.0));
            let mut got = tagged;
            sort_by_str_key(&mut got, |t| t.0.as_str(), |_, _| std::cmp::Ordering::Equal);
            assert_eq!(got, want, "stable, n = {n}");
        }
    }
}
