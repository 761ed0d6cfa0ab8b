//! The domain values every stage shares: validated keys (emails, device identifiers, Telemetron
//! ids), the records we keep for customers and devices, and the collections that hold millions of
//! them; and the values that flow between stages: the exports as read ([`Export`]) and the
//! snapshot's contents ([`SnapshotData`]).
//!
//! Validation lives in the constructors, so a value of these types is always well-formed. Nothing
//! here does IO or knows where a value came from (CSV, SQLite or JSON).

mod maps;
pub use maps::*;
pub mod keymap;
pub use keymap::KeyMap;
mod keys;
pub use keys::*;
mod records;
pub use records::*;
mod export;
pub use export::*;
mod snapshot_data;
pub use snapshot_data::*;
mod confirmed;
pub use confirmed::*;
mod refusal;
pub use refusal::*;

#[cfg(test)]
mod tests;

/// A seeded xorshift generator, for tests that draw their cases: the same seed, the same
/// cases.
#[cfg(test)]
pub(crate) fn seeded(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}

/// `key=value` pairs (from `--property`) as a map; the key is trimmed and must not be empty.
pub fn key_values(pairs: &[String]) -> Result<std::collections::BTreeMap<String, String>, String> {
    let mut map = std::collections::BTreeMap::new();
    for p in pairs {
        let (k, v) = p.split_once('=').ok_or_else(|| format!("property {p:?}: write it as key=value"))?;
        if k.trim().is_empty() {
            return Err(format!("property {p:?}: the key is empty"));
        }
        map.insert(k.trim().to_string(), v.to_string());
    }
    Ok(map)
}
