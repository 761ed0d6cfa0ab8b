//! The collections: `KeyMap` for the export (file order), `SortedMap` for the snapshot (key
//! order), `Owners` for a device's owners.

use super::Email;

/// The map for millions of keyed entities. Entries live in one exactly-sized vector with a
/// small index table beside it, which takes about half the memory of a hash map holding the
/// entries in its buckets (a power of two, at most 7/8 full).
pub type KeyMap<K, V> = indexmap::IndexMap<K, V, rustc_hash::FxBuildHasher>;

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
