//! `plan --format markdown`: the plan as a reviewer reads it in a change ticket or a pull
//! request — a summary table, the safety guard's verdict, then one collapsible section per kind
//! of change — cut to fit a comment.
//!
//! Values from the exports never reach Markdown or HTML as such: change lines sit in fenced
//! code blocks (whose fence is longer than any run of backticks inside), and the rest of the
//! text is escaped.

use std::fmt::Write as _;
use std::path::Path;

use super::report::{Section, change_sections, estimate_lines, summary_rows};
use crate::model::{InputInfo, SnapshotVersion};
use crate::plan::Plan;

/// The most characters (bytes) the document has by default: GitHub's limit on a comment is
/// 65,536 characters; this leaves room for a bot's own header and footer. `--max-report-size`
/// sets another (Jira's default comment limit is 32,767).
pub const LIMIT: usize = 60_000;

/// The Markdown document for `plan`, at most `limit` characters (never less than its summary).
pub fn render(plan: &Plan, inputs: &[InputInfo], state: &Path, snapshot: &SnapshotVersion, limit: usize) -> String {
    let mut head = String::new();
    let _ = writeln!(head, "## telemetron-sync plan\n");
    let snap = match &snapshot.id {
        None => "no snapshot yet: everything is new".to_string(),
        Some(_) => format!("generation {}", snapshot.generation),
    };
    let _ = writeln!(
        head,
        "Dry run: nothing was sent to Telemetron. Snapshot `{}` ({snap}).\n",
        code(&state.display().to_string())
    );
    if let Some(saved) = &plan.saved_as {
        let made = saved.created_at.as_deref().map(|t| format!(", made {t}")).unwrap_or_default();
        let _ = writeln!(
            head,
            "Saved as `{}` (sha256 `{}`{made}): `apply --plan` runs exactly this plan.\n",
            code(&saved.path),
            saved.sha256
        );
    }
    for i in inputs {
        let rows = if i.rows == 1 { "row" } else { "rows" };
        let _ = writeln!(head, "- {}: `{}` ({} {rows})", i.kind, code(&i.path), i.rows);
    }
    for kind in ["customers", "devices", "ownership"].into_iter().filter(|k| !inputs.iter().any(|i| i.kind == *k)) {
        let _ = writeln!(head, "- {kind}: not reconciled (no file)");
    }

    let sum = &plan.summary;
    let _ = writeln!(head, "\n| change | count |\n|---|---:|");
    for (label, n) in summary_rows(sum) {
        let _ = writeln!(head, "| {label} | {} |", thousands(n));
    }
    let _ = writeln!(
        head,
        "| **API calls** | **{}** (lower bound {}) |",
        thousands(sum.api_calls),
        thousands(sum.api_calls_lower_bound)
    );
    for (label, value) in estimate_lines(plan) {
        let _ = writeln!(head, "| {} | {} |", text(label.trim()), text(&value));
    }
    head.push('\n');
    head.push_str(&guard(plan));
    if let Some(w) = &plan.removals_withheld {
        let rows: Vec<String> = w.rows.iter().map(|r| format!("{}:{}", r.file, r.line)).collect();
        let _ = writeln!(
            head,
            "\n**Assignment removals withheld:** {} removal(s) not planned, because rejected row(s) at {} cannot be attributed to a device or customer and may be the row that keeps an assignment. Fix those rows and plan again.",
            thousands(w.count),
            text(&rows.join(", "))
        );
    }

    let mut sections: Vec<Section> = change_sections(plan).into_iter().filter(|s| !s.lines.is_empty()).collect();
    let rejected: Vec<String> = super::report::rejected_lines(plan);
    if !rejected.is_empty() {
        sections.push(Section {
            id: "rejected_rows",
            title: "Rejected rows (left out of this plan; their entities are left unchanged)".into(),
            lines: rejected,
        });
    }
    let warnings: Vec<String> = super::report::warning_lines(plan);
    if !warnings.is_empty() {
        sections.push(Section { id: "warnings", title: "Warnings".into(), lines: warnings });
    }

    let mut out = head;
    if plan.operations.is_empty() && plan.summary.rejected_rows == 0 {
        out.push_str("\nNothing to change: Telemetron is in step with the exports.\n");
    }
    // What the sections may take: the limit less the head and the closing note's room. Each
    // section gets an equal share of what is left when its turn comes, so a long first kind
    // cannot crowd out the rejected rows.
    const NOTE_ROOM: usize = 700;
    let mut left = limit.saturating_sub(out.len() + NOTE_ROOM);
    let (mut cut, mut omitted) = (0usize, Vec::new());
    let count = sections.len();
    for (i, sec) in sections.iter().enumerate() {
        let share = left / (count - i);
        match details(sec, share) {
            Some((block, shown)) => {
                cut += sec.lines.len() - shown;
                left = left.saturating_sub(block.len());
                out.push_str(&block);
            }
            None => {
                cut += sec.lines.len();
                omitted.push(format!("{} {}", sec.id.replace('_', " "), thousands(sec.lines.len())));
            }
        }
    }
    if cut > 0 {
        let _ = write!(out, "\n<sub>Cut to fit {} characters: {} line(s) not shown", thousands(limit), thousands(cut));
        if !omitted.is_empty() {
            let _ = write!(out, " (sections left out: {})", text(&omitted.join(", ")));
        }
        let _ = writeln!(out, ". `plan --format json` lists every change.</sub>");
    }
    out
}

/// One `<details>` section of at most `budget` characters, and how many of its lines it
/// shows; `None` when not even its heading and count fit.
fn details(sec: &Section, budget: usize) -> Option<(String, usize)> {
    let fence = fence(&sec.lines);
    let language = match sec.id {
        "rejected_rows" | "warnings" | "customers_not_in_export" | "devices_not_in_export" => "text",
        _ => "diff",
    };
    let mut block = format!(
        "\n<details><summary>{} ({})</summary>\n\n{fence}{language}\n",
        text(&sec.title),
        thousands(sec.lines.len())
    );
    let closing = format!("{fence}\n\n</details>\n");
    let more_room = 60;
    if block.len() + closing.len() + more_room > budget {
        return None;
    }
    let mut shown = 0;
    for line in &sec.lines {
        let last = shown + 1 == sec.lines.len();
        let need = line.len() + 1 + closing.len() + if last { 0 } else { more_room };
        if block.len() + need > budget {
            break;
        }
        block.push_str(line);
        block.push('\n');
        shown += 1;
    }
    if shown < sec.lines.len() {
        let _ = writeln!(block, "... and {} more", thousands(sec.lines.len() - shown));
    }
    block.push_str(&closing);
    Some((block, shown))
}

/// The safety guard's verdict: what `apply` would do with this plan, and each check.
fn guard(plan: &Plan) -> String {
    let Some(v) = &plan.guard else { return String::new() };
    let mut s = String::new();
    let verdict = if v.refused {
        "**Safety guard: `apply` would refuse this plan** (exit 4) and send nothing. Check the exports; if the changes are right, apply with `--force` or raise `--max-unassign` / `--max-changes`."
    } else if v.forced {
        "**Safety guard: over its limits; `apply` would go ahead because of `--force`.**"
    } else {
        "**Safety guard:** within its limits; `apply` would go ahead."
    };
    let _ = writeln!(s, "{verdict}\n");
    if !v.checks.is_empty() {
        let _ = writeln!(s, "| check | count | limit | rule | |\n|---|---:|---:|---|---|");
        for c in &v.checks {
            let mark = if c.over { "over" } else { "ok" };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {mark} |",
                text(c.kind),
                thousands(c.count as usize),
                thousands(c.limit as usize),
                text(&c.rule)
            );
        }
    }
    s
}

/// A fence longer than any run of backticks in `lines` (at least three).
fn fence(lines: &[String]) -> String {
    let longest = lines.iter().map(|l| l.split(|c| c != '`').map(str::len).max().unwrap_or(0)).max().unwrap_or(0);
    "`".repeat(longest.max(2) + 1)
}

/// Text for a Markdown paragraph or table cell: nothing in it is markup.
fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '|' => out.push_str("\\|"),
            '\n' | '\r' => out.push(' '),
            '\\' | '`' | '*' | '_' | '[' | ']' | '#' | '~' | '!' => {
                out.push('\\');
                out.push(c);
            }
            '"' | '\'' => out.push(c),
            c => super::html::push_escaped(&mut out, c),
        }
    }
    out
}

/// Text for inline code: backticks and line breaks cannot end it early.
fn code(s: &str) -> String {
    s.replace('`', "'").replace(['\n', '\r'], " ")
}

pub use crate::plan::thousands;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fences_outgrow_backticks_and_text_is_not_markup() {
        assert_eq!(fence(&["a ``` b".into(), "c".into()]), "````");
        assert_eq!(fence(&["plain".into()]), "```");
        assert_eq!(text("<script>|*x*"), "&lt;script&gt;\\|\\*x\\*");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
    }
}
