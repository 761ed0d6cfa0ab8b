//! Text from outside (a server's message, an export's cell) made inert before it reaches a
//! terminal or a file someone opens: its control characters shown, not obeyed.

use std::borrow::Cow;

/// Whether `c` is escaped: a control character (C0 and C1, DEL) other than a line feed or a
/// tab. An escape sequence starts with one (ESC, or the 8-bit CSI U+009B), and a carriage
/// return or a backspace can overwrite what a terminal showed.
pub fn is_escaped(c: char) -> bool {
    c.is_control() && c != '\n' && c != '\t'
}

/// `s` with every escaped character written as `\u{1b}`.
pub fn inert(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_escaped) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_escaped(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A writer that passes text through [`inert`]'s rule byte by byte: stdout's, so that nothing
/// the tool prints (its own output has no control characters but line feeds and tabs) can
/// carry an escape sequence to a terminal. Bytes that are not UTF-8 pass as they are.
pub struct Inert<W: std::io::Write> {
    inner: W,
    /// A 0xC2 at the end of the last write: the first byte of a C1 control, perhaps.
    pending: bool,
}

impl<W: std::io::Write> Inert<W> {
    pub fn new(inner: W) -> Self {
        Inert { inner, pending: false }
    }
}

impl<W: std::io::Write> std::io::Write for Inert<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !self.pending && !needs_escaping(buf) {
            // Nearly always: a plan of millions of operations passes at memory speed.
            self.inner.write_all(buf)?;
            return Ok(buf.len());
        }
        let mut out = Vec::with_capacity(buf.len() + 16);
        let mut bytes = buf.iter().copied().peekable();
        if std::mem::take(&mut self.pending) {
            match bytes.peek() {
                Some(&b @ 0x80..=0x9f) => {
                    bytes.next();
                    escape(&mut out, b);
                }
                _ => out.push(0xc2),
            }
        }
        while let Some(b) = bytes.next() {
            match b {
                b'\n' | b'\t' => out.push(b),
                0x00..=0x1f | 0x7f => escape(&mut out, b),
                0xc2 => match bytes.peek() {
                    Some(&c @ 0x80..=0x9f) => {
                        bytes.next();
                        escape(&mut out, c);
                    }
                    None => self.pending = true,
                    Some(_) => out.push(b),
                },
                _ => out.push(b),
            }
        }
        self.inner.write_all(&out)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if std::mem::take(&mut self.pending) {
            self.inner.write_all(&[0xc2])?;
        }
        self.inner.flush()
    }
}

/// The control character `c` (its code point: one byte, or a C1's second byte) as `\u{..}`.
fn escape(out: &mut Vec<u8>, c: u8) {
    out.extend(format!("\\u{{{c:x}}}").bytes());
}

/// Whether `buf` holds a byte [`Inert`] changes: looked for 64 bytes at a time without an early
/// exit, so that the compiler turns it into vector instructions.
fn needs_escaping(buf: &[u8]) -> bool {
    buf.chunks(64).any(|chunk| {
        chunk.iter().fold(false, |hit, &b| hit | ((b < 0x20) & (b != b'\n') & (b != b'\t')) | (b == 0x7f) | (b == 0xc2))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn escapes_show_and_text_stays() {
        assert_eq!(inert("a\u{1b}]0;x\u{7}b\nc\td\u{9b}2J"), "a\\u{1b}]0;x\\u{7}b\nc\td\\u{9b}2J");
        assert!(matches!(inert("plain: é ü\n"), Cow::Borrowed(_)));
        let text = "ok \u{1b}[2J é\u{9b}1m\r\n";
        for split in 0..text.len() {
            let mut w = Inert::new(Vec::new());
            w.write_all(&text.as_bytes()[..split]).unwrap();
            w.write_all(&text.as_bytes()[split..]).unwrap();
            w.flush().unwrap();
            assert_eq!(String::from_utf8(w.inner).unwrap(), inert(text), "split at {split}");
        }
    }
}
