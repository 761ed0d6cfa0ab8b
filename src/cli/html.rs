//! `plan --format html`: one self-contained file to open from disk — no network, no external
//! script, style or font — with the Markdown report's content, a chart of the changes by kind,
//! and tables that a search box filters by email or identifier.
//!
//! It stays usable at a million-device migration: each table's rows travel as one string
//! (fields split by U+001F, rows by U+001E) in a `<script type="application/json">` block,
//! written as the plan is walked, never built whole; the page finds rows by offset, searches the
//! string with `indexOf`, and draws one page of 100 rows at a time. Values reach the page only
//! through `textContent`, and `<` inside the data is written `\u003c`, so no export value can
//! end the block or become markup.

use std::io::{self, Write};
use std::path::Path;

use super::markdown::thousands;
use super::report::{customer_change, device_change, estimate_lines, props_inline, summary_rows, warning_line};
use crate::model::{InputInfo, SnapshotVersion};
use crate::plan::{Operation, Plan};

const FIELD: char = '\u{1f}';
const ROW: char = '\u{1e}';

/// One table of the report: its summary key, heading and column names.
struct Table {
    id: &'static str,
    title: &'static str,
    columns: &'static [&'static str],
}

const TABLES: [Table; 11] = [
    Table { id: "customers_to_create", title: "Customers to create", columns: &["email", "name", "phone", "address"] },
    Table { id: "customers_to_update", title: "Customers to update", columns: &["email", "change (before -> after)"] },
    Table { id: "devices_to_create", title: "Devices to create", columns: &["identifier", "type", "properties"] },
    Table { id: "devices_to_update", title: "Devices to update", columns: &["identifier", "change (before -> after)"] },
    Table { id: "devices_moved", title: "Devices moved", columns: &["device", "old owner", "new owner"] },
    Table { id: "assignments_to_remove", title: "Assignments to remove", columns: &["device", "customer"] },
    Table { id: "assignments_to_add", title: "Assignments to add", columns: &["device", "customer"] },
    Table { id: "customers_not_in_export", title: "Customers no longer in the export", columns: &["email"] },
    Table { id: "devices_not_in_export", title: "Devices no longer in the export", columns: &["identifier"] },
    Table { id: "rejected_rows", title: "Rejected rows", columns: &["file:line", "column", "reason"] },
    Table { id: "warnings", title: "Warnings", columns: &["file:line", "message"] },
];

/// Writes the report.
pub fn write(
    out: &mut dyn Write,
    plan: &Plan,
    inputs: &[InputInfo],
    state: &Path,
    snapshot: &SnapshotVersion,
) -> io::Result<()> {
    let sum = &plan.summary;
    out.write_all(b"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n")?;
    out.write_all(b"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n")?;
    // No fetch of any kind is allowed, whatever a value might try; only our own style and
    // script run (by their hashes: an injected one would not), no form posts, no <base>.
    writeln!(
        out,
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src '{}'; script-src '{}'; img-src data:; form-action 'none'; base-uri 'none'\">",
        csp_hash(STYLE),
        csp_hash(SCRIPT)
    )?;
    out.write_all(b"<title>telemetron-sync plan</title>\n<style>")?;
    out.write_all(STYLE.as_bytes())?;
    out.write_all(b"</style></head><body>\n<h1>telemetron-sync plan</h1>\n")?;
    let snap = match &snapshot.id {
        None => "no snapshot yet: everything is new".to_string(),
        Some(_) => format!("generation {}", snapshot.generation),
    };
    writeln!(
        out,
        "<p>Dry run: nothing was sent to Telemetron. Snapshot <code>{}</code> ({}).</p>",
        esc(&state.display().to_string()),
        esc(&snap)
    )?;
    if let Some(saved) = &plan.saved_as {
        let made = saved.created_at.as_deref().map(|t| format!(", made {t}")).unwrap_or_default();
        writeln!(
            out,
            "<p>Saved as <code>{}</code> (sha256 <code>{}</code>{}): <code>apply --plan</code> runs exactly this plan.</p>",
            esc(&saved.path),
            esc(&saved.sha256),
            esc(&made)
        )?;
    }
    out.write_all(b"<ul>\n")?;
    for i in inputs {
        writeln!(
            out,
            "<li>{}: <code>{}</code> ({} rows)</li>",
            esc(&i.kind),
            esc(&i.path),
            thousands(i.rows as usize)
        )?;
    }
    out.write_all(b"</ul>\n<div class=\"top\"><table class=\"summary\"><tbody>\n")?;
    for (label, n) in summary_rows(sum) {
        writeln!(
            out,
            "<tr><th>{label}</th><td class=\"n\" data-count=\"{}\">{}</td></tr>",
            label.replace(' ', "_"),
            thousands(n)
        )?;
    }
    writeln!(
        out,
        "<tr class=\"calls\"><th>API calls</th><td class=\"n\" data-count=\"api_calls\">{}</td></tr><tr><th>lower bound</th><td class=\"n\">{}</td></tr>",
        thousands(sum.api_calls),
        thousands(sum.api_calls_lower_bound)
    )?;
    for (label, value) in estimate_lines(plan) {
        writeln!(out, "<tr><th>{}</th><td>{}</td></tr>", esc(label.trim()), esc(&value))?;
    }
    out.write_all(b"</tbody></table>\n")?;
    chart(out, plan)?;
    out.write_all(b"</div>\n")?;
    guard(out, plan)?;
    if let Some(w) = &plan.removals_withheld {
        let rows: Vec<String> = w.rows.iter().map(|r| format!("{}:{}", r.file, r.line)).collect();
        writeln!(
            out,
            "<p class=\"warn\"><b>Assignment removals withheld:</b> {} removal(s) not planned, because rejected row(s) at {} cannot be attributed and may be the row that keeps an assignment.</p>",
            thousands(w.count),
            esc(&rows.join(", "))
        )?;
    }
    let held = plan.quarantined.iter().map(super::report::quarantine_line).collect();
    let failing = plan.failing.iter().map(super::report::failing_line).collect();
    for (title, lines) in [(super::report::QUARANTINE_TITLE, held), (super::report::FAILING_TITLE, failing)] {
        let lines: Vec<String> = lines;
        if !lines.is_empty() {
            writeln!(
                out,
                "<p class=\"warn\"><b>{} ({}):</b></p><ul>{}</ul>",
                esc(title),
                thousands(lines.len()),
                lines.iter().map(|l| format!("<li>{}</li>", esc(l))).collect::<String>()
            )?;
        }
    }
    out.write_all(
        b"<p class=\"search\"><label>Search every table by email or identifier: <input id=\"q\" type=\"search\" placeholder=\"ann@example.com, SN-0042...\" autofocus></label> <span id=\"matches\"></span></p>\n",
    )?;
    for table in &TABLES {
        let rows = rows_of(plan, table.id);
        if rows == 0 {
            continue;
        }
        writeln!(
            out,
            "<section data-kind=\"{id}\" data-rows=\"{rows}\"><h2>{title} (<span class=\"shown\">{n}</span>)</h2>",
            id = table.id,
            title = table.title,
            n = thousands(rows)
        )?;
        out.write_all(b"<table class=\"rows\"><thead><tr>")?;
        for c in table.columns {
            write!(out, "<th>{}</th>", esc(c))?;
        }
        writeln!(out, "</tr></thead><tbody></tbody></table><div class=\"pager\"></div>")?;
        write!(out, "<script type=\"application/json\" id=\"d-{}\">\"", table.id)?;
        let mut data = JsonString(&mut *out);
        data_of(plan, table.id, &mut data)?;
        out.write_all(b"\"</script></section>\n")?;
    }
    if plan.operations.is_empty() && plan.summary.rejected_rows == 0 {
        out.write_all(b"<p>Nothing to change: Telemetron is in step with the exports.</p>\n")?;
    }
    out.write_all(b"<script>")?;
    out.write_all(SCRIPT.as_bytes())?;
    out.write_all(b"</script>\n</body></html>\n")
}

/// How many rows a table has.
fn rows_of(plan: &Plan, id: &str) -> usize {
    let s = &plan.summary;
    match id {
        "customers_to_create" => s.customers_to_create,
        "customers_to_update" => s.customers_to_update,
        "devices_to_create" => s.devices_to_create,
        "devices_to_update" => s.devices_to_update,
        "devices_moved" => plan.moves.len(),
        "assignments_to_remove" => s.assignments_to_remove,
        "assignments_to_add" => s.assignments_to_add,
        "customers_not_in_export" => plan.not_in_export.customers.len(),
        "devices_not_in_export" => plan.not_in_export.devices.len(),
        "rejected_rows" => plan.summary.rejected_rows,
        _ => plan.summary.warnings,
    }
}

/// Writes a table's rows, fields split by U+001F and rows by U+001E.
fn data_of(plan: &Plan, id: &str, out: &mut JsonString<'_>) -> io::Result<()> {
    let mut first = true;
    let mut row = |out: &mut JsonString<'_>, fields: &[&str]| -> io::Result<()> {
        if !first {
            out.push(ROW)?;
        }
        first = false;
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                out.push(FIELD)?;
            }
            out.text(f)?;
        }
        Ok(())
    };
    let join = |list: &[crate::model::Email]| list.iter().map(|e| e.as_str()).collect::<Vec<_>>().join(", ");
    match id {
        "devices_moved" => {
            for m in &plan.moves {
                row(out, &[m.device.as_str(), &join(&m.from), &join(&m.to)])?;
            }
        }
        "customers_not_in_export" => {
            for e in &plan.not_in_export.customers {
                row(out, &[e.as_str()])?;
            }
        }
        "devices_not_in_export" => {
            for d in &plan.not_in_export.devices {
                row(out, &[d.as_str()])?;
            }
        }
        "rejected_rows" => {
            for r in &plan.rejected {
                row(out, &[&format!("{}:{}", r.file, r.line), r.column.as_deref().unwrap_or(""), &r.reason])?;
            }
        }
        "warnings" => {
            for w in &plan.warnings {
                let line = warning_line(w);
                let (at, message) = line.split_once(": ").unwrap_or(("", &line));
                row(out, &[at, message])?;
            }
        }
        _ => {
            for op in &plan.operations {
                match (id, op) {
                    ("customers_to_create", Operation::CreateCustomer(c)) => {
                        let [name, phone, address] = c.record.api_fields().map(|(_, v)| v.unwrap_or(""));
                        row(out, &[c.email.as_str(), name, phone, address])?;
                    }
                    ("customers_to_update", Operation::UpdateCustomer(u)) => {
                        row(out, &[u.email.as_str(), &customer_change(u)])?
                    }
                    ("devices_to_create", Operation::CreateDevice(c)) => {
                        row(out, &[c.identifier.as_str(), &c.device_type, props_inline(&c.properties).trim()])?
                    }
                    ("devices_to_update", Operation::UpdateDevice(u)) => {
                        row(out, &[u.identifier.as_str(), &device_change(u)])?
                    }
                    ("assignments_to_remove", Operation::Unassign(a))
                    | ("assignments_to_add", Operation::Assign(a)) => {
                        row(out, &[a.device.as_str(), a.customer.as_str()])?
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

/// The change counts by kind as bars (inline SVG: the labels are ours, the counts numbers).
fn chart(out: &mut dyn Write, plan: &Plan) -> io::Result<()> {
    let bars: Vec<(&str, usize)> = TABLES[..7].iter().map(|t| (t.title, rows_of(plan, t.id))).collect();
    let max = bars.iter().map(|b| b.1).max().unwrap_or(0).max(1);
    let (width, row) = (520usize, 26usize);
    writeln!(
        out,
        "<svg class=\"chart\" role=\"img\" aria-label=\"changes by kind\" width=\"{width}\" height=\"{}\" viewBox=\"0 0 {width} {}\">",
        row * bars.len() + 8,
        row * bars.len() + 8
    )?;
    for (i, (label, n)) in bars.iter().enumerate() {
        let y = 4 + i * row;
        let w = if *n == 0 { 0 } else { (n * 280 / max).max(2) };
        writeln!(
            out,
            "<text x=\"0\" y=\"{}\" class=\"label\">{label}</text><rect x=\"170\" y=\"{}\" width=\"{w}\" height=\"18\" class=\"bar\"><title>{label}: {n}</title></rect><text x=\"{}\" y=\"{}\" class=\"value\" data-bar=\"{}\">{}</text>",
            y + 14,
            y,
            176 + w,
            y + 14,
            TABLES[i].id,
            thousands(*n)
        )?;
    }
    out.write_all(b"</svg>\n")
}

fn guard(out: &mut dyn Write, plan: &Plan) -> io::Result<()> {
    let Some(v) = &plan.guard else { return Ok(()) };
    let (class, verdict) = if v.refused {
        ("refused", "Safety guard: apply would refuse this plan (exit 4) and send nothing.")
    } else if v.forced {
        ("refused", "Safety guard: over its limits; apply would go ahead because of --force.")
    } else {
        ("ok", "Safety guard: within its limits; apply would go ahead.")
    };
    writeln!(out, "<p class=\"guard {class}\"><b>{verdict}</b></p>")?;
    if v.checks.is_empty() {
        return Ok(());
    }
    out.write_all(b"<table class=\"checks\"><thead><tr><th>check</th><th>count</th><th>limit</th><th>rule</th><th></th></tr></thead><tbody>\n")?;
    for c in &v.checks {
        writeln!(
            out,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
            esc(c.kind),
            thousands(c.count as usize),
            thousands(c.limit as usize),
            esc(&c.rule),
            if c.over { "over" } else { "ok" }
        )?;
    }
    out.write_all(b"</tbody></table>\n")
}

/// HTML text: nothing in it is markup.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        push_escaped(&mut out, c);
    }
    out
}

/// `c` as HTML text (also what Markdown passes through as HTML).
pub(super) fn push_escaped(out: &mut String, c: char) {
    match c {
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        '&' => out.push_str("&amp;"),
        '"' => out.push_str("&quot;"),
        '\'' => out.push_str("&#39;"),
        c => out.push(c),
    }
}

/// The inside of a JSON string literal in a `<script>` block, written as it comes: quotes,
/// backslashes and control characters escaped, `<` as `\u003c` (so that no `</script>` or
/// `<!--` can appear), and the separators U+001E/U+001F kept out of values.
struct JsonString<'a>(&'a mut dyn Write);

impl JsonString<'_> {
    fn push(&mut self, separator: char) -> io::Result<()> {
        write!(self.0, "\\u{:04x}", separator as u32)
    }

    fn text(&mut self, s: &str) -> io::Result<()> {
        let bytes = s.as_bytes();
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let escape: Option<&[u8]> = match b {
                b'"' => Some(b"\\\""),
                b'\\' => Some(b"\\\\"),
                b'<' => Some(b"\\u003c"),
                0x1e | 0x1f => Some(b"\\ufffd"),
                b if b < 0x20 => None,
                _ => continue,
            };
            self.0.write_all(&bytes[start..i])?;
            match escape {
                Some(e) => self.0.write_all(e)?,
                None => write!(self.0, "\\u{b:04x}")?,
            }
            start = i + 1;
        }
        self.0.write_all(&bytes[start..])
    }
}

/// A Content-Security-Policy source for an inline block: `sha256-` and its digest in base64.
fn csp_hash(block: &str) -> String {
    use sha2::{Digest, Sha256};
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let digest = Sha256::digest(block.as_bytes());
    let mut out = String::from("sha256-");
    for chunk in digest.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

const STYLE: &str = r#"
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#1d2330;max-width:1200px}
h1{font-size:22px;margin:0 0 8px}h2{font-size:17px;margin:28px 0 6px}
code{background:#f2f4f7;padding:1px 4px;border-radius:3px}
.top{display:flex;gap:32px;flex-wrap:wrap;align-items:flex-start}
table{border-collapse:collapse}th,td{padding:3px 10px;text-align:left;vertical-align:top}
.summary th{font-weight:normal;color:#4a5568}.summary .calls th,.summary .calls td{font-weight:bold}
td.n{text-align:right;font-variant-numeric:tabular-nums}
table.rows,table.checks{width:100%;font-size:13px}table.rows thead th,table.checks thead th{background:#eef1f5;border-bottom:1px solid #cfd6df}
table.rows td{border-bottom:1px solid #edf0f3;word-break:break-word;white-space:pre-wrap}
.chart .bar{fill:#3b6fd8}.chart .label{font-size:12px;fill:#4a5568}.chart .value{font-size:12px;fill:#1d2330}
.guard.ok{color:#1f7a3a}.guard.refused,.warn{color:#a61b1b}
.search input{width:340px;padding:5px 8px;font-size:14px}
.pager{margin:6px 0;color:#4a5568}.pager button{margin-right:6px}
section.empty{display:none}
"#;

const SCRIPT: &str = r##"
"use strict";
const PAGE = 100, FS = "\u001f", RS = "\u001e";
const tables = [...document.querySelectorAll("section[data-kind]")].map(section => {
  const raw = JSON.parse(document.getElementById("d-" + section.dataset.kind).textContent);
  const starts = [0];
  for (let i = raw.indexOf(RS); i >= 0; i = raw.indexOf(RS, i + 1)) starts.push(i + 1);
  return {section, raw, lower: null, starts, rows: raw.length ? starts.length : 0, hits: null, page: 0};
});
function rowText(t, r) {
  const end = r + 1 < t.starts.length ? t.starts[r + 1] - 1 : t.raw.length;
  return t.raw.slice(t.starts[r], end);
}
function rowAt(t, pos) {
  let lo = 0, hi = t.starts.length - 1;
  while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (t.starts[mid] <= pos) lo = mid; else hi = mid - 1; }
  return lo;
}
function filter(t, q) {
  if (!q) { t.hits = null; return; }
  if (t.lower === null) t.lower = t.raw.toLowerCase();
  const hits = [];
  let last = -1;
  for (let i = t.lower.indexOf(q); i >= 0; i = t.lower.indexOf(q, i + 1)) {
    const r = rowAt(t, i);
    if (r !== last) { hits.push(r); last = r; }
  }
  t.hits = hits;
}
function draw(t) {
  const count = t.hits ? t.hits.length : t.rows;
  const pages = Math.max(1, Math.ceil(count / PAGE));
  t.page = Math.min(t.page, pages - 1);
  const body = t.section.querySelector("tbody");
  const frag = document.createDocumentFragment();
  for (let k = t.page * PAGE; k < Math.min(count, (t.page + 1) * PAGE); k++) {
    const tr = document.createElement("tr");
    for (const field of rowText(t, t.hits ? t.hits[k] : k).split(FS)) {
      const td = document.createElement("td");
      td.textContent = field;
      tr.appendChild(td);
    }
    frag.appendChild(tr);
  }
  body.replaceChildren(frag);
  t.section.querySelector(".shown").textContent = t.hits ? count.toLocaleString("en") + " of " + t.rows.toLocaleString("en") : t.rows.toLocaleString("en");
  t.section.classList.toggle("empty", count === 0);
  const pager = t.section.querySelector(".pager");
  pager.replaceChildren();
  if (pages > 1) {
    const button = (label, page) => {
      const b = document.createElement("button");
      b.textContent = label;
      b.disabled = page < 0 || page >= pages || page === t.page;
      b.onclick = () => { t.page = page; draw(t); };
      pager.appendChild(b);
    };
    button("first", 0); button("previous", t.page - 1); button("next", t.page + 1); button("last", pages - 1);
    pager.appendChild(document.createTextNode("page " + (t.page + 1).toLocaleString("en") + " of " + pages.toLocaleString("en")));
  }
}
const input = document.getElementById("q");
const matches = document.getElementById("matches");
function search() {
  const q = input.value.trim().toLowerCase();
  let total = 0;
  for (const t of tables) { filter(t, q); t.page = 0; draw(t); total += t.hits ? t.hits.length : 0; }
  matches.textContent = q ? total.toLocaleString("en") + " matching rows" : "";
  history.replaceState(null, "", q ? "#q=" + encodeURIComponent(input.value.trim()) : location.pathname);
}
let timer = 0;
input.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(search, 150); });
function ready() { document.documentElement.dataset.readyMs = Math.round(performance.now()); }
if (location.hash.startsWith("#q=")) {
  // As if typed into the box: the same event, the same handler.
  input.value = decodeURIComponent(location.hash.slice(3));
  input.addEventListener("input", () => setTimeout(ready, 200), {once: true});
  input.dispatchEvent(new Event("input"));
} else {
  search();
  // How long the page took to be ready, for the benchmark and the tests.
  ready();
}
"##;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_cannot_close_its_script_block() {
        let mut buf = Vec::new();
        let mut s = JsonString(&mut buf);
        s.text("</script><!-- \"x\"\\ \n\u{1e}").unwrap();
        s.push(ROW).unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert_eq!(text, r#"\u003c/script>\u003c!-- \"x\"\\ \u000a\ufffd\u001e"#);
        let back: String = serde_json::from_str(&format!("\"{text}\"")).unwrap();
        assert_eq!(back, "</script><!-- \"x\"\\ \n\u{fffd}\u{1e}");
        // The digest of nothing, as a browser writes it in a policy.
        assert_eq!(csp_hash(""), "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
        assert_eq!(esc("<b a=\"1\">&'"), "&lt;b a=&quot;1&quot;&gt;&amp;&#39;");
    }
}
