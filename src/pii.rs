//! `--log-pii=false`: log lines name customers by a token instead of their email, name, phone
//! or address.
//!
//! A token is `kind#` and eight hex digits of a SHA-256 of the value (emails lowercased), the
//! same in every run, so an operator can follow one customer through a run and across runs. It
//! is a pseudonym, not encryption: whoever holds a candidate email can compute its token.
//!
//! The one event formatter ([`crate::cli::output`]) passes every message and field through
//! [`scrub`], which replaces whatever looks like an email. Values that no pattern finds — a
//! name, a phone, an address quoted in a rejected row's reason or echoed in an API error — are
//! replaced where the log line is made, by [`scrub_quoted`] and [`scrub_values`]. Standard
//! output (plans, reports) is never scrubbed: it is the result the operator asked for.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};

use sha2::{Digest, Sha256};

static LOG_PII: AtomicBool = AtomicBool::new(true);

/// Whether log lines may carry personal data (the default).
pub fn allowed() -> bool {
    LOG_PII.load(Ordering::Relaxed)
}

pub fn set_allowed(on: bool) {
    LOG_PII.store(on, Ordering::Relaxed);
}

/// The token for `value`: `email#1a2b3c4d`.
pub fn token(kind: &str, value: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"telemetron-sync log token\0");
    if kind == "email" {
        h.update(value.trim().to_lowercase().as_bytes());
    } else {
        h.update(value.trim().as_bytes());
    }
    let digest = h.finalize();
    let hex: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("{kind}#{hex}")
}

/// Characters that end an email-like word.
fn ends_word(c: char) -> bool {
    c.is_whitespace() || "\"'`<>()[]{},;:=|\\/".contains(c)
}

/// `text` with every email-like word (something, `@`, something) replaced by its token, when
/// log lines may not carry personal data.
pub fn scrub(text: &str) -> Cow<'_, str> {
    if allowed() || !text.contains('@') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('@') {
        let start = rest[..at].rfind(ends_word).map_or(0, |i| i + rest[i..].chars().next().map_or(1, char::len_utf8));
        let word_end = rest[at + 1..].find(ends_word).map_or(rest.len(), |i| at + 1 + i);
        // A trailing full stop ends the sentence, not the domain.
        let end = at + 1 + rest[at + 1..word_end].trim_end_matches('.').len();
        if start < at && end > at + 1 {
            out.push_str(&rest[..start]);
            out.push_str(&token("email", &rest[start..end]));
            rest = &rest[end..];
        } else {
            out.push_str(&rest[..at + 1]);
            rest = &rest[at + 1..];
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// `text` with every double-quoted string in it (as `{:?}` writes one) replaced by the token of
/// what it quotes: rejected rows' reasons quote the cell they reject.
pub fn scrub_quoted(text: &str) -> Cow<'_, str> {
    if allowed() || !text.contains('"') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.char_indices().peekable();
    let mut last = 0;
    while let Some((i, c)) = chars.next() {
        if c != '"' {
            continue;
        }
        let mut value = String::new();
        let mut closed = None;
        while let Some((j, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, e)) = chars.next() {
                        value.push(e);
                    }
                }
                '"' => {
                    closed = Some(j);
                    break;
                }
                c => value.push(c),
            }
        }
        let Some(j) = closed else { break };
        out.push_str(&text[last..i]);
        let kind = if value.contains('@') { "email" } else { "value" };
        out.push_str(&token(kind, &value));
        last = j + 1;
    }
    out.push_str(&text[last..]);
    Cow::Owned(out)
}

/// `text` with each of `values` (a customer's name, phone, address) replaced by its token.
pub fn scrub_values<'a>(text: &'a str, values: &[(&str, Option<&str>)]) -> Cow<'a, str> {
    if allowed() {
        return Cow::Borrowed(text);
    }
    let mut out = Cow::Borrowed(text);
    for (kind, value) in values {
        if let Some(v) = value.map(str::trim).filter(|v| !v.is_empty())
            && out.contains(v)
        {
            out = Cow::Owned(out.replace(v, &token(kind, v)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The switch is process-wide; these tests turn it off and never on again, and nothing
    /// else in the unit tests depends on it.
    #[test]
    fn emails_quoted_values_and_named_values_become_stable_tokens() {
        set_allowed(false);
        let a = scrub("failed: customer Ann.Lee+home@Example.co.uk. is gone; key=ann.lee+home@example.co.uk");
        let t = token("email", "ann.lee+home@example.co.uk");
        assert_eq!(a, format!("failed: customer {t}. is gone; key={t}"));
        assert_eq!(scrub("no at sign here"), "no at sign here");
        assert_eq!(scrub("a lone @ stays"), "a lone @ stays");
        assert_eq!(scrub("(jörg@exämple.de)"), format!("({})", token("email", "jörg@exämple.de")));
        let q = scrub_quoted(r#"invalid email "Ann \"A\" Lee": no @"#);
        assert_eq!(q, format!("invalid email {}: no @", token("value", r#"Ann "A" Lee"#)));
        assert_eq!(scrub_quoted(r#"cut "open"#), r#"cut "open"#);
        let v = scrub_values("400: name Ann Lee too long", &[("name", Some("Ann Lee")), ("phone", None)]);
        assert_eq!(v, format!("400: name {} too long", token("name", "Ann Lee")));
        assert_ne!(token("email", "a@x.io"), token("email", "b@x.io"));
    }
}
