//! The records: a customer's packed fields, a device's type and canonical-JSON properties.

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
/// property sets are equal exactly when their encodings are, and a device costs one allocation,
/// shared by every clone (the creates and bulk-metadata calls of a migration hold them all).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Properties(Arc<str>);

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

/// Written as the JSON object it holds, read pair by pair from the canonical encoding (keys
/// already sorted, strings borrowed unless escaped) rather than through a `BTreeMap` of copies.
impl Serialize for Properties {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        // The encoding is always a valid JSON object of strings (see `to_map`).
        let pairs: Pairs<'_> = serde_json::from_str(&self.0).unwrap_or_default();
        let mut map = s.serialize_map(Some(pairs.0.len()))?;
        for (k, v) in &pairs.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
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
