//! `KeyMap`: the export's entities by key, in file order.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;

/// The map for millions of keyed entities, in insertion order: the entries in one vector and,
/// beside it, a hash table of their positions (`u32`). Per entry that is the entry itself and
/// about 6 bytes of table, where a hash map holding the entries in its buckets (a power of
/// two, at most 7/8 full) takes up to twice the entry, and `indexmap` a stored hash and an
/// 8-byte position more: 228 MB at 10 M devices and 6 M customers.
///
/// Positions are `u32`: a map holds at most `u32::MAX` entries, which at 48 bytes or more each
/// is far past any machine this runs on. A key's hash is computed again when the table grows
/// (sized up front by [`KeyMap::reserve`], it seldom does).
pub struct KeyMap<K, V> {
    entries: Vec<(K, V)>,
    positions: HashTable<u32>,
}

fn hash_of<Q: Hash + ?Sized>(key: &Q) -> u64 {
    FxBuildHasher.hash_one(key)
}

/// A position as the table holds it.
fn position(i: usize) -> u32 {
    u32::try_from(i).expect("a KeyMap holds at most u32::MAX entries")
}

impl<K, V> Default for KeyMap<K, V> {
    fn default() -> Self {
        KeyMap { entries: Vec::new(), positions: HashTable::new() }
    }
}

impl<K: std::fmt::Debug, V: std::fmt::Debug> std::fmt::Debug for KeyMap<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K, V> KeyMap<K, V> {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry at `index` in insertion order.
    pub fn get_index(&self, index: usize) -> Option<(&K, &V)> {
        self.entries.get(index).map(|(k, v)| (k, v))
    }

    /// The entries in insertion order.
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

impl<K: Hash + Eq, V> KeyMap<K, V> {
    /// Room for `additional` more entries, exactly: the vector is not rounded up.
    pub fn reserve(&mut self, additional: usize) {
        self.entries.reserve_exact(additional);
        let entries = &self.entries;
        self.positions.reserve(additional, |&i| hash_of(&entries[i as usize].0));
    }

    /// The position of `key`'s entry in the table of positions.
    fn find<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<usize>
    where
        K: Borrow<Q>,
    {
        let entries = &self.entries;
        self.positions.find(hash_of(key), |&i| entries[i as usize].0.borrow() == key).map(|&i| i as usize)
    }

    /// `key`'s entry with its position.
    pub fn get_full<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<(usize, &K, &V)>
    where
        K: Borrow<Q>,
    {
        self.find(key).map(|i| (i, &self.entries[i].0, &self.entries[i].1))
    }

    pub fn get_index_of<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<usize>
    where
        K: Borrow<Q>,
    {
        self.find(key)
    }

    pub fn get<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.find(key).map(|i| &self.entries[i].1)
    }

    pub fn get_key_value<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<(&K, &V)>
    where
        K: Borrow<Q>,
    {
        self.find(key).map(|i| (&self.entries[i].0, &self.entries[i].1))
    }

    pub fn contains_key<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.find(key).is_some()
    }

    /// `key`'s entry, to read or to fill, found with one probe of the table.
    pub fn entry(&mut self, key: K) -> Entry<'_, K, V> {
        let KeyMap { entries, positions } = self;
        let found =
            positions.entry(hash_of(&key), |&i| entries[i as usize].0 == key, |&i| hash_of(&entries[i as usize].0));
        match found {
            hashbrown::hash_table::Entry::Occupied(at) => {
                Entry::Occupied(OccupiedEntry { index: *at.get() as usize, entries })
            }
            hashbrown::hash_table::Entry::Vacant(slot) => Entry::Vacant(VacantEntry { slot, entries, key }),
        }
    }

    /// Inserts `value` under `key`; an entry already there keeps its key and its position and
    /// takes the value, and the old value is returned.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.entry(key) {
            Entry::Occupied(at) => Some(std::mem::replace(&mut at.entries[at.index].1, value)),
            Entry::Vacant(slot) => {
                slot.insert(value);
                None
            }
        }
    }

    /// Removes `key`'s entry, putting the last entry in its place.
    pub fn swap_remove<Q: Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.swap_remove_full(key).map(|(_, _, v)| v)
    }

    /// Removes `key`'s entry, putting the last entry in its place: the removed entry with the
    /// position it had.
    pub fn swap_remove_full<Q: Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<(usize, K, V)>
    where
        K: Borrow<Q>,
    {
        let entries = &self.entries;
        let found = self.positions.find_entry(hash_of(key), |&i| entries[i as usize].0.borrow() == key).ok()?;
        let at = *found.get() as usize;
        found.remove();
        let (k, v) = self.entries.swap_remove(at);
        if at < self.entries.len() {
            // The last entry moved to `at`: its slot in the table says so.
            let last = position(self.entries.len());
            let moved = self.positions.find_mut(hash_of(&self.entries[at].0), |&i| i == last);
            *moved.expect("every entry has its position in the table") = position(at);
        }
        Some((at, k, v))
    }
}

impl<K, V> IntoIterator for KeyMap<K, V> {
    type Item = (K, V);
    type IntoIter = std::vec::IntoIter<(K, V)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl<'a, K, V> IntoIterator for &'a KeyMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = std::iter::Map<std::slice::Iter<'a, (K, V)>, fn(&'a (K, V)) -> (&'a K, &'a V)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(|(k, v)| (k, v))
    }
}

impl<K: Hash + Eq + Borrow<Q>, V, Q: Hash + Eq + ?Sized> std::ops::Index<&Q> for KeyMap<K, V> {
    type Output = V;
    fn index(&self, key: &Q) -> &V {
        self.get(key).expect("no entry for the key")
    }
}

/// A key's place in a [`KeyMap`]: its entry, or room for one.
pub enum Entry<'a, K, V> {
    Occupied(OccupiedEntry<'a, K, V>),
    Vacant(VacantEntry<'a, K, V>),
}

impl<'a, K, V> Entry<'a, K, V> {
    pub fn key(&self) -> &K {
        match self {
            Entry::Occupied(at) => at.key(),
            Entry::Vacant(slot) => &slot.key,
        }
    }

    /// The entry's value, `value` inserted first if there is none.
    pub fn or_insert(self, value: V) -> &'a mut V {
        match self {
            Entry::Occupied(at) => &mut at.entries[at.index].1,
            Entry::Vacant(slot) => slot.insert(value),
        }
    }
}

pub struct OccupiedEntry<'a, K, V> {
    index: usize,
    entries: &'a mut Vec<(K, V)>,
}

impl<K, V> OccupiedEntry<'_, K, V> {
    pub fn key(&self) -> &K {
        &self.entries[self.index].0
    }

    pub fn get(&self) -> &V {
        &self.entries[self.index].1
    }

    /// The entry's position in insertion order.
    pub fn index(&self) -> usize {
        self.index
    }
}

pub struct VacantEntry<'a, K, V> {
    slot: hashbrown::hash_table::VacantEntry<'a, u32>,
    entries: &'a mut Vec<(K, V)>,
    key: K,
}

impl<'a, K, V> VacantEntry<'a, K, V> {
    pub fn insert(self, value: V) -> &'a mut V {
        let at = self.entries.len();
        self.slot.insert(position(at));
        self.entries.push((self.key, value));
        &mut self.entries[at].1
    }
}

#[cfg(test)]
mod tests {
    use super::{Entry, KeyMap};

    /// Against `indexmap` (the map this replaces), through inserts, entry probes and swap
    /// removals drawn from a seed over few keys (so that each step often finds its key), with
    /// reservations between: the same entries in the same order, found at the same positions.
    #[test]
    fn acts_as_indexmap_does() {
        let mut next = crate::model::seeded(0x853c_49e6_748f_ea9bu64);
        for keys in [1u64, 7, 200, 5000] {
            let mut ours: KeyMap<String, u64> = KeyMap::default();
            let mut want: indexmap::IndexMap<String, u64> = indexmap::IndexMap::default();
            for step in 0..20_000u64 {
                let key = format!("key-{}", next() % keys);
                match next() % 8 {
                    0..=2 => assert_eq!(ours.insert(key.clone(), step), want.insert(key, step)),
                    3 | 4 => match (ours.entry(key.clone()), want.entry(key.clone())) {
                        (Entry::Occupied(a), indexmap::map::Entry::Occupied(b)) => {
                            assert_eq!((a.key(), a.get(), a.index()), (b.key(), b.get(), b.index()));
                        }
                        (Entry::Vacant(a), indexmap::map::Entry::Vacant(b)) => {
                            assert_eq!(a.key, *b.key());
                            assert_eq!(*a.insert(step), *b.insert(step));
                        }
                        _ => panic!("{key}: found in one map and not the other"),
                    },
                    5 | 6 => assert_eq!(ours.swap_remove_full(key.as_str()), want.swap_remove_full(key.as_str())),
                    _ => {
                        let n = (next() % 64) as usize;
                        ours.reserve(n);
                        want.reserve(n);
                    }
                }
                assert_eq!(ours.len(), want.len());
            }
            assert!(ours.iter().eq(want.iter()), "{keys} keys: the entries differ");
            for i in 0..keys {
                let key = format!("key-{i}");
                assert_eq!(ours.get_full(key.as_str()), want.get_full(key.as_str()));
                assert_eq!(ours.get_index_of(&key), want.get_index_of(&key));
                assert_eq!(ours.contains_key(&key), want.contains_key(&key));
            }
        }
    }
}
