//! The records: a customer's packed fields, a device's type and canonical-JSON properties.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// What the export says of a customer, apart from its email: name, phone, address, and the
/// source system's own key. An empty cell is `None`.
///
/// Packed in one string, the four values separated by U+001F (the ASCII unit separator, which
/// the loader refuses inside a cell): a customer costs one allocation and 16 bytes, not four
/// and 64 — it matters with millions of them held twice (export and snapshot). Shared, not
/// copied, by a clone: a migration's diff, operations and calls all name the export's records.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CustomerRecord(Arc<str>);

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

    /// Whether the two are one shared value (then they are equal without reading either).
    pub fn is_shared_with(&self, other: &CustomerRecord) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// Whether this record holds exactly these fields (as [`CustomerRecord::new`] would pack
    /// them), without packing them.
    pub fn is(&self, fields: [Option<&str>; 4]) -> bool {
        let mut mine = self.0.split(UNIT_SEPARATOR);
        fields.iter().all(|f| mine.next() == Some(f.unwrap_or(""))) && mine.next().is_none()
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
        // One pass over the packed fields (a plan writes millions of records).
        let mut it = self.0.split(UNIT_SEPARATOR).map(|v| (!v.is_empty()).then_some(Cow::Borrowed(v)));
        let mut next = || it.next().flatten();
        CustomerFields { name: next(), phone: next(), address: next(), source_id: next() }.serialize(s)
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
/// Two properties are equal exactly when their canonical JSON encodings are (a JSON object
/// with keys sorted, no whitespace, strings escaped as [`push_json_str`] does), whichever way
/// each is held:
/// - read from a devices file, as the row's values only, against the file's sorted property
///   columns ([`PropertyKeys`]): every device repeats the same keys, and holding them once
///   roughly halves what a million devices' properties cost;
/// - otherwise (the snapshot, a saved plan, an event) as the canonical JSON itself.
///
/// Either way one allocation, shared by every clone (the creates and bulk-metadata calls of a
/// migration hold them all).
#[derive(Clone)]
pub struct Properties {
    /// With keys, `text` is the values in their order (see [`PropertyKeys`]); without, `text`
    /// is the canonical JSON.
    keys: Option<Arc<PropertyKeys>>,
    text: Arc<str>,
}

/// The property columns of one devices file, sorted by key. A device's properties read from
/// that file are its cells in this order, each JSON-escaped (without its quotes), joined by
/// U+001F — which escaping never leaves raw in a value — with an empty cell for a property
/// the device does not have (a cell left empty is no property).
#[derive(Debug)]
pub struct PropertyKeys {
    /// What comes before each value in the JSON when it is the first: `{"name":"`.
    first: Vec<Box<str>>,
    /// What comes before each value after another: `","name":"`.
    then: Vec<Box<str>>,
    /// Each key as it is.
    plain: Vec<Box<str>>,
}

/// The separator of the values of a [`Properties`] read against [`PropertyKeys`].
const VALUE_SEPARATOR: u8 = 0x1f;

impl PropertyKeys {
    /// For the property columns `keys`, which must be sorted and unique.
    pub fn new(keys: Vec<String>) -> Arc<PropertyKeys> {
        debug_assert!(keys.windows(2).all(|w| w[0] < w[1]), "property keys sorted and unique");
        let before = |lead: &str, k: &str| {
            let mut j = String::with_capacity(k.len() + 5);
            j.push_str(lead);
            push_json_str(&mut j, k);
            j.push_str(":\"");
            j.into_boxed_str()
        };
        Arc::new(PropertyKeys {
            first: keys.iter().map(|k| before("{", k)).collect(),
            then: keys.iter().map(|k| before("\",", k)).collect(),
            plain: keys.into_iter().map(String::into_boxed_str).collect(),
        })
    }

    pub fn len(&self) -> usize {
        self.plain.len()
    }

    pub fn is_empty(&self) -> bool {
        self.plain.is_empty()
    }
}

/// Builds the [`Properties`] of a devices file's rows: each row's values pushed in key order.
pub struct PropertyValues {
    keys: Arc<PropertyKeys>,
    text: String,
    pushed: usize,
}

impl PropertyValues {
    pub fn new(keys: &Arc<PropertyKeys>) -> PropertyValues {
        PropertyValues { keys: keys.clone(), text: String::with_capacity(64), pushed: 0 }
    }

    /// Starts another row.
    pub fn clear(&mut self) {
        self.text.clear();
        self.pushed = 0;
    }

    /// The value of the next key; an empty one is no property.
    pub fn push(&mut self, value: &str) {
        if self.pushed > 0 {
            self.text.push(VALUE_SEPARATOR as char);
        }
        push_json_escaped(&mut self.text, value);
        self.pushed += 1;
    }

    /// The properties of the row, once each key has had its value.
    pub fn properties(&self) -> Properties {
        debug_assert_eq!(self.pushed, self.keys.len(), "one value per key");
        Properties { keys: Some(self.keys.clone()), text: self.text.as_str().into() }
    }
}

impl PartialEq for Properties {
    fn eq(&self, other: &Properties) -> bool {
        match (&self.keys, &other.keys) {
            (None, None) => self.text == other.text,
            (Some(a), Some(b)) if Arc::ptr_eq(a, b) => self.text == other.text,
            (None, Some(_)) => other.is_json(&self.text),
            (Some(_), None) => self.is_json(&other.text),
            (Some(_), Some(_)) => self.is_json(&other.json()),
        }
    }
}

impl Eq for Properties {}

impl std::hash::Hash for Properties {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.json().hash(h);
    }
}

impl Properties {
    pub fn empty() -> Properties {
        Properties { keys: None, text: "{}".into() }
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
        Properties { keys: None, text: out.into() }
    }

    /// Reads an encoding this program wrote (the snapshot) or any JSON object of strings; the
    /// result is canonical either way.
    pub fn from_json(s: &str) -> Result<Properties, String> {
        if is_canonical_hint(s) {
            return Ok(Properties::from_canonical(s));
        }
        let map: BTreeMap<String, String> =
            serde_json::from_str(s).map_err(|e| format!("properties are not a JSON object of strings: {e}"))?;
        Ok(Properties::from_map(&map))
    }

    /// For an encoding the caller built canonically (the snapshot holds only such).
    pub(crate) fn from_canonical(s: &str) -> Properties {
        Properties { keys: None, text: s.into() }
    }

    /// Calls `piece` with the canonical JSON, piece by piece, while it answers `true`; whether
    /// every piece was taken. The values are split on their separator byte by byte: they are
    /// short, and a `memchr` call per value cost more than the scan.
    fn each_piece(&self, mut piece: impl FnMut(&[u8]) -> bool) -> bool {
        let Some(keys) = &self.keys else { return piece(self.text.as_bytes()) };
        let mut first = true;
        let values = self.text.as_bytes().split(|&b| b == VALUE_SEPARATOR);
        for ((opening, after), value) in keys.first.iter().zip(&keys.then).zip(values) {
            if value.is_empty() {
                continue;
            }
            let before = if first { opening } else { after };
            if !piece(before.as_bytes()) || !piece(value) {
                return false;
            }
            first = false;
        }
        piece(if first { b"{}" } else { b"\"}" })
    }

    /// Whether `json` is this value's canonical JSON, without building it.
    pub fn is_json(&self, json: &str) -> bool {
        let mut rest = json.as_bytes();
        self.each_piece(|p| match rest.split_at_checked(p.len()) {
            Some((head, tail)) if head == p => {
                rest = tail;
                true
            }
            _ => false,
        }) && rest.is_empty()
    }

    /// The canonical JSON: borrowed where that is how it is held.
    pub fn json(&self) -> Cow<'_, str> {
        if self.keys.is_none() {
            return Cow::Borrowed(&self.text);
        }
        let mut out = Vec::with_capacity(self.text.len() * 2 + 2);
        self.push_json(&mut out);
        // Pieces of `str`s cut at an ASCII byte: always UTF-8.
        Cow::Owned(String::from_utf8(out).unwrap_or_default())
    }

    /// The canonical JSON, built in `buf` where it is not held as such: one buffer for many
    /// rows instead of an allocation for each.
    pub fn json_in<'a>(&'a self, buf: &'a mut Vec<u8>) -> &'a str {
        if self.keys.is_none() {
            return &self.text;
        }
        buf.clear();
        self.push_json(buf);
        std::str::from_utf8(buf).unwrap_or_default()
    }

    fn push_json(&self, out: &mut Vec<u8>) {
        self.each_piece(|p| {
            out.extend_from_slice(p);
            true
        });
    }

    pub fn is_empty(&self) -> bool {
        match &self.keys {
            None => &*self.text == "{}",
            Some(_) => self.text.bytes().all(|b| b == VALUE_SEPARATOR),
        }
    }

    /// Each key with its value, in key order (borrowed where they hold no escape).
    fn pairs(&self) -> Vec<(Cow<'_, str>, Cow<'_, str>)> {
        match &self.keys {
            // The encoding is always a valid JSON object of strings: it is only built by
            // `from_map`, or read from the snapshot, which holds only what this type wrote.
            None => serde_json::from_str::<Pairs<'_>>(&self.text).unwrap_or_default().0,
            Some(keys) => self.row_pairs(keys).map(|(k, v)| (Cow::Borrowed(k), v)).collect(),
        }
    }

    /// The pairs of a value held as a devices file's row: each key with its value, skipping
    /// the empty ones, straight from the row (nothing collected).
    fn row_pairs<'s>(&'s self, keys: &'s PropertyKeys) -> impl Iterator<Item = (&'s str, Cow<'s, str>)> {
        keys.plain
            .iter()
            .zip(self.text.split(VALUE_SEPARATOR as char))
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (&**k, unescape_json(v)))
    }

    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.pairs().into_iter().map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
    }
}

/// `from_json` trusts only the empty object without parsing; everything else is re-encoded.
fn is_canonical_hint(s: &str) -> bool {
    s == "{}"
}

impl fmt::Debug for Properties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.json())
    }
}

/// Written as the JSON object it is, pair by pair in key order (strings borrowed unless
/// escaped) rather than through a `BTreeMap` of copies.
impl Serialize for Properties {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match &self.keys {
            // Straight from the row's values, without collecting the pairs first.
            Some(keys) => {
                let mut map = s.serialize_map(None)?;
                for (k, v) in self.row_pairs(keys) {
                    map.serialize_entry(k, &v)?;
                }
                map.end()
            }
            None => {
                let pairs = self.pairs();
                let mut map = s.serialize_map(Some(pairs.len()))?;
                for (k, v) in &pairs {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

/// A JSON object of strings, in the order written.
#[derive(Default)]
struct Pairs<'a>(Vec<(std::borrow::Cow<'a, str>, std::borrow::Cow<'a, str>)>);

impl<'de> Deserialize<'de> for Pairs<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Pairs<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object of strings")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Pairs<'de>, A::Error> {
                let mut out = Vec::with_capacity(m.size_hint().unwrap_or(0));
                while let Some((k, v)) = m.next_entry::<CowStr<'de>, CowStr<'de>>()? {
                    out.push((k.0, v.0));
                }
                Ok(Pairs(out))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// A string borrowed from the input where it holds no escape.
struct CowStr<'a>(std::borrow::Cow<'a, str>);

impl<'de> Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<CowStr<'de>, E> {
                Ok(CowStr(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<CowStr<'de>, E> {
                Ok(CowStr(std::borrow::Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<CowStr<'de>, E> {
                Ok(CowStr(std::borrow::Cow::Owned(v)))
            }
        }
        d.deserialize_str(Visit)
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
    push_json_escaped(out, s);
    out.push('"');
}

/// Appends `s` escaped as inside a JSON string literal: no control character stays raw.
fn push_json_escaped(out: &mut String, s: &str) {
    // Most values need no escape: copied whole.
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.push_str(s);
        return;
    }
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
}

/// The text [`push_json_escaped`] escaped (borrowed when it holds no escape).
fn unescape_json(s: &str) -> Cow<'_, str> {
    // Values are short: a plain scan beats `memchr`'s setup.
    if !s.bytes().any(|b| b == b'\\') {
        return Cow::Borrowed(s);
    }
    let literal = format!("\"{s}\"");
    Cow::Owned(serde_json::from_str::<String>(&literal).unwrap_or_default())
}
