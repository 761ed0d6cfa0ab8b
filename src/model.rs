//! The domain values every stage shares: validated keys (emails, device identifiers, Telemetron
//! ids) and the records we keep for customers and devices.
//!
//! Validation lives in the constructors, so a value of these types is always well-formed. Nothing
//! here does IO or knows where a value came from (CSV, SQLite or JSON).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

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
    /// equal keys.
    pub fn finish(&mut self) {
        if std::mem::take(&mut self.unsorted) {
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

/// The text of a key (email, device identifier, Telemetron id). Keys up to 24 bytes — most of
/// them — live inline, without an allocation of their own: millions fewer allocations at a
/// migration, and a map lookup compares the key without following a pointer. Hashes, compares
/// and orders exactly as `str`.
type SmallStr = compact_str::CompactString;

/// A device's owners: almost always one, so kept inline without an allocation.
pub type Owners = smallvec::SmallVec<[Email; 1]>;

/// A customer's email, trimmed and lower-cased: the customer's key in Telemetron.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(SmallStr);

impl Email {
    /// Trims, lower-cases and checks the shape `local@domain.tld`.
    pub fn parse(raw: &str) -> Result<Email, String> {
        let s = raw.trim();
        if s.is_empty() {
            return Err("email is empty".into());
        }
        check_key_chars(s, "email")?;
        // Most addresses are already lower-case ASCII: check them in place, without a copy.
        if s.bytes().any(|b| b.is_ascii_uppercase() || !b.is_ascii()) {
            let lower = s.to_lowercase();
            check_email(&lower)?;
            return Ok(Email(lower.into()));
        }
        check_email(s)?;
        Ok(Email(s.into()))
    }

    /// For values this program wrote itself (the snapshot), already normalised and checked.
    pub(crate) fn from_trusted(s: &str) -> Email {
        Email(s.into())
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The local part, which Telemetron uses as the name of a customer created without one.
    pub fn local_part(&self) -> &str {
        self.0.split('@').next().unwrap_or("")
    }
}

/// Refuses the characters no key may hold: quotes, control characters, and the invisible format
/// characters (a byte order mark, a zero-width space, a direction mark) that copy and paste
/// and some exports leave in a cell. A key with one would be a different customer or device.
pub fn check_key_chars(s: &str, what: &str) -> Result<(), String> {
    // No key holds a quote: one there is a quote left over from a broken quoted field.
    if let Some(i) = s.chars().position(|c| c == '"') {
        return Err(format!(
            "{what} contains a quote (\") at character {}: most likely a stray quote; remove it",
            i + 1
        ));
    }
    let suspect = if s.is_ascii() { s.bytes().any(|b| b.is_ascii_control()) } else { true };
    if !suspect {
        return Ok(());
    }
    match s.chars().enumerate().find(|(_, c)| c.is_control() || is_format_char(*c)) {
        Some((i, c)) => Err(format!("{what} contains {} at character {}; remove it", describe_char(c), i + 1)),
        None => Ok(()),
    }
}

/// The first control character in free text (a name, an address, a property), with its
/// 1-based character position; tabs and line breaks are text there.
pub fn first_control_char(s: &str) -> Option<(usize, char)> {
    let suspect = s.bytes().any(|b| (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r')) || b == 0x7f || b == 0xc2);
    if !suspect {
        return None;
    }
    s.chars().enumerate().find(|(_, c)| c.is_control() && !matches!(c, '\t' | '\n' | '\r')).map(|(i, c)| (i + 1, c))
}

/// A character as an error message names it: its code point, and what it is where that helps.
pub fn describe_char(c: char) -> String {
    let what = match c {
        '\0' => "NUL, a control character",
        '\u{feff}' => "a byte order mark",
        '\u{200b}' => "a zero-width space",
        '\u{200c}' => "a zero-width non-joiner",
        '\u{200d}' => "a zero-width joiner",
        '\u{200e}' | '\u{200f}' => "a direction mark",
        '\u{00ad}' => "a soft hyphen",
        '\u{2060}' => "a word joiner",
        c if c.is_control() => "a control character",
        _ => "an invisible format character",
    };
    format!("U+{:04X} ({what})", c as u32)
}

/// Unicode's format characters (general category Cf), which render as nothing.
fn is_format_char(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x0600..=0x0605 | 0x061C | 0x06DD | 0x070F | 0x0890..=0x0891 | 0x08E2 | 0x180E
        | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF
        | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD | 0x13430..=0x1343F | 0x1BCA0..=0x1BCA3
        | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F)
}

fn check_email(s: &str) -> Result<(), String> {
    if s.len() > 254 {
        return Err("email is longer than 254 characters".into());
    }
    if !s.is_ascii()
        && let Some(c) = s.chars().find(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!("email contains {c:?}"));
    }
    let mut at = None;
    for (i, b) in s.bytes().enumerate() {
        match b {
            b'@' if at.is_some() => return Err("email has more than one '@'".into()),
            b'@' => at = Some(i),
            b if b.is_ascii_whitespace() || b.is_ascii_control() => {
                return Err(format!("email contains {:?}", b as char));
            }
            b'"' | b',' | b'<' | b'>' | b'(' | b')' | b'[' | b']' | b';' | b':' | b'\\' => {
                return Err("email contains a character that is not allowed in an address".into());
            }
            _ => {}
        }
    }
    let Some(at) = at else {
        return Err("email has no '@'".into());
    };
    let (local, domain) = (&s[..at], &s[at + 1..]);
    if local.is_empty() {
        return Err("email has nothing before the '@'".into());
    }
    if local.len() > 64 {
        return Err("email's local part is longer than 64 characters".into());
    }
    if !domain.contains('.') || domain.split('.').any(str::is_empty) {
        return Err("email's domain is not of the form name.tld".into());
    }
    Ok(())
}

impl TryFrom<String> for Email {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Email::parse(&s)
    }
}

impl From<Email> for String {
    fn from(e: Email) -> String {
        e.0.into_string()
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// A device identifier (serial number, MAC, ...): trimmed, case kept, never empty.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeviceIdent(SmallStr);

impl DeviceIdent {
    pub fn parse(raw: &str) -> Result<DeviceIdent, String> {
        let s = raw.trim();
        if s.is_empty() {
            return Err("device identifier is empty".into());
        }
        check_key_chars(s, "device identifier")?;
        Ok(DeviceIdent(s.into()))
    }

    pub(crate) fn from_trusted(s: &str) -> DeviceIdent {
        DeviceIdent(s.into())
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

/// Lets maps keyed by identifier be searched with a `&str` (the hash is the same: `SmallStr`
/// hashes as `str`).
impl std::borrow::Borrow<str> for DeviceIdent {
    fn borrow(&self) -> &str {
        self.0.as_str()
    }
}

impl TryFrom<String> for DeviceIdent {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        DeviceIdent::parse(&s)
    }
}

impl From<DeviceIdent> for String {
    fn from(d: DeviceIdent) -> String {
        d.0.into_string()
    }
}

impl fmt::Display for DeviceIdent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DeviceIdent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// An id Telemetron gave a record (`telemetronCustomerId`, `deviceId`). Opaque: the reference's
/// examples and notes disagree on its format.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TelemetronId(SmallStr);

impl TelemetronId {
    pub fn new(s: &str) -> TelemetronId {
        TelemetronId(s.into())
    }
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Display for TelemetronId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the export says of a customer, apart from its email: name, phone, address, and the
/// source system's own key. An empty cell is `None`.
///
/// Packed in one string, the four values separated by U+001F (the ASCII unit separator, which
/// the loader refuses inside a cell): a customer costs one allocation and 16 bytes, not four
/// and 64 — it matters with millions of them held twice (export and snapshot).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CustomerRecord(Box<str>);

/// The separator inside a packed [`CustomerRecord`].
pub const UNIT_SEPARATOR: char = '\u{1f}';

impl Default for CustomerRecord {
    fn default() -> Self {
        CustomerRecord::new(None, None, None, None)
    }
}

impl CustomerRecord {
    /// Empty strings count as `None`; callers keep U+001F out of the values (the loader rejects
    /// such a cell).
    pub fn new(name: Option<&str>, phone: Option<&str>, address: Option<&str>, source_id: Option<&str>) -> Self {
        let parts = [name, phone, address, source_id].map(|v| v.unwrap_or(""));
        let mut s = String::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                s.push(UNIT_SEPARATOR);
            }
            s.push_str(p);
        }
        CustomerRecord(s.into())
    }

    fn field(&self, i: usize) -> Option<&str> {
        self.0.split(UNIT_SEPARATOR).nth(i).filter(|v| !v.is_empty())
    }

    pub fn name(&self) -> Option<&str> {
        self.field(0)
    }
    pub fn phone(&self) -> Option<&str> {
        self.field(1)
    }
    pub fn address(&self) -> Option<&str> {
        self.field(2)
    }
    /// The source system's own customer key (`customer_id`); never sent to Telemetron.
    pub fn source_id(&self) -> Option<&str> {
        self.field(3)
    }

    /// The fields Telemetron holds, by name, for diffing and reports.
    pub fn api_fields(&self) -> [(&'static str, Option<&str>); 3] {
        let mut it = self.0.split(UNIT_SEPARATOR).map(|v| (!v.is_empty()).then_some(v));
        let mut next = || it.next().flatten();
        [("name", next()), ("phone", next()), ("address", next())]
    }
}

impl fmt::Debug for CustomerRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CustomerRecord")
            .field("name", &self.name())
            .field("phone", &self.phone())
            .field("address", &self.address())
            .field("source_id", &self.source_id())
            .finish()
    }
}

/// How a [`CustomerRecord`] reads and writes in JSON: its fields by name.
#[derive(Serialize, Deserialize)]
struct CustomerFields<'a> {
    #[serde(borrow)]
    name: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    phone: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    address: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    source_id: Option<std::borrow::Cow<'a, str>>,
}

impl Serialize for CustomerRecord {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        CustomerFields {
            name: self.name().map(Into::into),
            phone: self.phone().map(Into::into),
            address: self.address().map(Into::into),
            source_id: self.source_id().map(Into::into),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for CustomerRecord {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let f = CustomerFields::deserialize(d)?;
        let fields = [&f.name, &f.phone, &f.address, &f.source_id];
        if fields.iter().any(|v| v.as_deref().is_some_and(|v| v.contains(UNIT_SEPARATOR))) {
            return Err(serde::de::Error::custom("a customer field contains the control character U+001F"));
        }
        Ok(CustomerRecord::new(f.name.as_deref(), f.phone.as_deref(), f.address.as_deref(), f.source_id.as_deref()))
    }
}

/// What the export says of a device, apart from its identifier.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DeviceRecord {
    /// `None` only for a device whose type the export leaves empty; a new device needs one.
    pub device_type: Option<Arc<str>>,
    pub properties: Properties,
}

/// A device's properties (Telemetron's `deviceMetadata`): string values by key.
///
/// Held in one canonical encoding — a JSON object with keys sorted, no whitespace — so that two
/// property sets are equal exactly when their encodings are, and a device costs one allocation.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Properties(Box<str>);

impl Properties {
    pub fn empty() -> Properties {
        Properties("{}".into())
    }

    pub fn from_map(map: &BTreeMap<String, String>) -> Properties {
        let mut out = String::with_capacity(2 + map.len() * 16);
        out.push('{');
        for (i, (k, v)) in map.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_json_str(&mut out, k);
            out.push(':');
            push_json_str(&mut out, v);
        }
        out.push('}');
        Properties(out.into())
    }

    /// Reads an encoding this program wrote (the snapshot) or any JSON object of strings; the
    /// result is canonical either way.
    pub fn from_json(s: &str) -> Result<Properties, String> {
        if is_canonical_hint(s) {
            return Ok(Properties(s.into()));
        }
        let map: BTreeMap<String, String> =
            serde_json::from_str(s).map_err(|e| format!("properties are not a JSON object of strings: {e}"))?;
        Ok(Properties::from_map(&map))
    }

    /// For an encoding the caller built canonically (the loader writes keys in sorted order).
    pub(crate) fn from_canonical(s: &str) -> Properties {
        Properties(s.into())
    }

    pub fn as_json(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        &*self.0 == "{}"
    }

    pub fn to_map(&self) -> BTreeMap<String, String> {
        // The encoding is always a valid JSON object of strings: it is only built by `from_map`
        // and the canonical writer in the loader.
        serde_json::from_str(&self.0).unwrap_or_default()
    }
}

/// `from_json` trusts only the empty object without parsing; everything else is re-encoded.
fn is_canonical_hint(s: &str) -> bool {
    s == "{}"
}

impl fmt::Debug for Properties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Properties {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_map().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Properties {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<String, String>::deserialize(d)?;
        Ok(Properties::from_map(&map))
    }
}

/// Appends `s` as a JSON string literal.
pub(crate) fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sorted_map_keeps_key_order_whatever_the_appends() {
        let mut m = SortedMap::default();
        for (k, v) in [("b", 1), ("d", 2), ("a", 3), ("d", 4), ("c", 5)] {
            m.push(k.to_string(), v);
        }
        m.finish();
        let got: Vec<(&str, i32)> = m.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(got, [("a", 3), ("b", 1), ("c", 5), ("d", 4)], "sorted, the last of equal keys kept");
        assert_eq!(m.get("c"), Some(&5));
        assert!(!m.contains_key("e"));
        assert_eq!(m.insert("bb".into(), 6), None);
        assert_eq!(m.insert("a".into(), 7), Some(3));
        assert_eq!(m.keys().map(String::as_str).collect::<Vec<_>>(), ["a", "b", "bb", "c", "d"]);
    }

    #[test]
    fn long_keys_are_kept_whole() {
        let long = format!("{}@example.com", "x".repeat(60));
        assert_eq!(Email::parse(&long).unwrap().as_str(), long);
        let id = "SN-".repeat(20);
        assert_eq!(DeviceIdent::parse(&id).unwrap().as_str(), id);
    }

    #[test]
    fn emails_are_trimmed_and_lowercased() {
        assert_eq!(Email::parse("  Bob@Example.COM ").unwrap().as_str(), "bob@example.com");
    }

    #[test]
    fn bad_emails_are_refused_with_a_reason() {
        for bad in ["", "bob", "bob@", "@x.com", "bob@x", "a@b@c.com", "bo b@x.com", "bob@x..com", "b,ob@x.com"] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(Email::parse("bob").unwrap_err(), "email has no '@'");
    }

    #[test]
    fn local_part() {
        assert_eq!(Email::parse("jane.doe@x.io").unwrap().local_part(), "jane.doe");
    }

    #[test]
    fn identifiers_keep_case_and_refuse_empty() {
        assert_eq!(DeviceIdent::parse(" SN-aB1 ").unwrap().as_str(), "SN-aB1");
        assert!(DeviceIdent::parse("   ").is_err());
    }

    #[test]
    fn customer_records_pack_and_unpack() {
        let r = CustomerRecord::new(Some("Ann"), None, Some("1 Main St"), Some("C1"));
        assert_eq!(r.api_fields(), [("name", Some("Ann")), ("phone", None), ("address", Some("1 Main St"))]);
        assert_eq!(r.source_id(), Some("C1"));
        assert_eq!(CustomerRecord::new(Some(""), None, None, None), CustomerRecord::default());
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, r#"{"name":"Ann","phone":null,"address":"1 Main St","source_id":"C1"}"#);
        assert_eq!(serde_json::from_str::<CustomerRecord>(&json).unwrap(), r);
    }

    #[test]
    fn properties_are_canonical() {
        let a = Properties::from_json(r#"{"b":"2", "a":"1"}"#).unwrap();
        let mut m = BTreeMap::new();
        m.insert("a".to_string(), "1".to_string());
        m.insert("b".to_string(), "2".to_string());
        assert_eq!(a, Properties::from_map(&m));
        assert_eq!(a.as_json(), r#"{"a":"1","b":"2"}"#);
        assert_eq!(a.to_map(), m);
    }

    #[test]
    fn properties_escape_like_serde_json() {
        let mut m = BTreeMap::new();
        m.insert("k\"ey".to_string(), "line\nbreak\u{1}é".to_string());
        let p = Properties::from_map(&m);
        assert_eq!(p.as_json(), serde_json::to_string(&m).unwrap());
    }
}
