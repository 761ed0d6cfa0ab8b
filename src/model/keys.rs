//! The validated keys: `Email`, `DeviceIdent`, `TelemetronId`, and the character checks they
//! share with the loader.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The text of a key (email, device identifier, Telemetron id). Keys up to 23 bytes live
/// inline, without an allocation of their own, and a map lookup compares them without following
/// a pointer; a longer one (most real emails, UUID-like identifiers) is one shared allocation,
/// so that a clone — the diff, the operations and the calls each hold the keys they name, a
/// migration millions of them — is a count increment, not a copy. Hashes, compares and orders
/// exactly as `str`.
type SmallStr = smol_str::SmolStr;

/// The longest key held inline, without an allocation of its own (`SmolStr`'s inline size).
pub(crate) const INLINE_KEY_BYTES: usize = 23;

/// A customer's email, trimmed and lower-cased: the customer's key in Telemetron.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct Email(SmallStr);

/// Written as its text, without the clone and the `String` that `serde(into)` would make.
impl Serialize for Email {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}

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

    /// Whether [`Email::parse`] takes `s` as it is: trimmed, lower-case ASCII, of the right
    /// shape. Checks in place, without a copy.
    pub(crate) fn is_plain(s: &str) -> bool {
        !s.is_empty()
            && s.len() == s.trim().len()
            && s.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase())
            && check_key_chars(s, "email").is_ok()
            && check_email(s).is_ok()
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The text as a value of its own that shares this key's allocation.
    pub fn shared_text(&self) -> smol_str::SmolStr {
        self.0.clone()
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
/// A key as a damaged copy of it may still be recognised: without control or invisible format
/// characters and surrounding space, lower-cased. Two keys with the same loose form may be one
/// entity, so a rejected row holds every entity its damaged key loosely equals.
pub fn loose_key(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() && !is_format_char(*c))
        .flat_map(char::to_lowercase)
        .collect::<String>()
        .trim()
        .to_string()
}

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

/// Lets maps keyed by email be searched with a `&str` (the hash is the same: `SmallStr` hashes
/// as `str`).
impl std::borrow::Borrow<str> for Email {
    fn borrow(&self) -> &str {
        self.0.as_str()
    }
}

impl TryFrom<String> for Email {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Email::parse(&s)
    }
}

impl From<Email> for String {
    fn from(e: Email) -> String {
        e.0.into()
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
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct DeviceIdent(SmallStr);

/// Written as its text, without the clone and the `String` that `serde(into)` would make.
impl Serialize for DeviceIdent {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}

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

    /// Whether [`DeviceIdent::parse`] takes `s` as it is (trimmed, and valid).
    pub(crate) fn is_plain(s: &str) -> bool {
        !s.is_empty() && s.len() == s.trim().len() && check_key_chars(s, "device identifier").is_ok()
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The text as a value of its own that shares this key's allocation.
    pub fn shared_text(&self) -> smol_str::SmolStr {
        self.0.clone()
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
        d.0.into()
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
