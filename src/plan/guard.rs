//! The safety guard: what a plan may do to an organisation without `--force`.
//!
//! A truncated, partial or mis-mapped export looks like a plan that removes or wipes a lot at
//! once. The guard counts, per kind, the operations that take something away — assignments
//! removed, devices that lose property keys, customers whose fields are cleared, devices whose
//! type changes — and compares each with a limit taken from the snapshot's size. `plan` shows
//! the verdict; `apply` (and `undo --apply`) refuse, before any call, when a count is over
//! its limit. Pure: operations and counts in, a verdict out.
//!
//! The default limit for each kind is `max(ceil(10% of N), min(10, N / 4))`, N being the
//! snapshot's count of that kind (assignments, devices, customers). Ten percent lets ordinary
//! nightly churn through (typically well under 1%); the second term lets a small organisation
//! make a few changes at once, but never a quarter of what it has: an 89-assignment
//! organisation may lose 10 assignments in a run, not 44.

use serde::Serialize;

use crate::plan::Operation;

pub use crate::model::Totals;

/// The limits as given (`--max-unassign`, `--max-changes`): a number, a percentage, or the
/// default rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    pub max_unassign: Option<Limit>,
    pub max_changes: Option<Limit>,
    /// Apply whatever the counts.
    pub force: bool,
}

/// One limit: a count, or a percentage of the snapshot's count of that kind.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    Count(u64),
    Percent(f64),
}

impl Eq for Limit {}

impl Limit {
    /// Reads `50` or `10%` (a percentage from 0 to 100); `None` for anything else (the
    /// command line says which flag it was).
    pub fn parse(s: &str) -> Option<Limit> {
        let s = s.trim();
        match s.strip_suffix('%') {
            Some(p) => p.trim().parse().ok().filter(|p| (0.0..=100.0).contains(p)).map(Limit::Percent),
            None => s.parse().ok().map(Limit::Count),
        }
    }

    fn of(limit: Option<Limit>, total: u64) -> u64 {
        match limit {
            None => default_limit(total),
            Some(Limit::Count(n)) => n,
            Some(Limit::Percent(p)) => (total as f64 * p / 100.0).floor() as u64,
        }
    }

    fn describe(limit: Option<Limit>, flag: &str, total: u64, what: &str) -> String {
        match limit {
            None => {
                format!("the default: 10% of the {total} {what} in the snapshot, or up to 10 and a quarter of them")
            }
            Some(Limit::Count(n)) => format!("{flag} {n}"),
            Some(Limit::Percent(p)) => format!("{flag} {p}% of the {total} {what} in the snapshot"),
        }
    }
}

/// The default limit for a snapshot holding `total` entities of a kind (see the module doc).
pub fn default_limit(total: u64) -> u64 {
    total.div_ceil(10).max((total / 4).min(10))
}

/// One kind of taking-away, counted and judged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub kind: &'static str,
    pub count: u64,
    pub limit: u64,
    /// How the limit was chosen, for the message.
    pub rule: String,
    pub over: bool,
}

/// The guard's verdict on a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub checks: Vec<Check>,
    /// Whether `apply` refuses this plan (a count over its limit, and no `--force`).
    pub refused: bool,
    pub forced: bool,
}

impl Verdict {
    /// The checks over their limits, as one sentence.
    pub fn explain(&self) -> String {
        self.checks
            .iter()
            .filter(|c| c.over)
            .map(|c| format!("{} {} (limit {}: {})", c.count, c.kind, c.limit, c.rule))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Counts what the operations take away and judges each count against its limit.
pub fn check(ops: &[Operation], totals: Totals, limits: &Limits) -> Verdict {
    let (mut unassign, mut keys_removed, mut cleared, mut type_changes) = (0u64, 0u64, 0u64, 0u64);
    for op in ops {
        match op {
            Operation::Unassign(_) => unassign += 1,
            Operation::UpdateDevice(u) => {
                if u.properties.as_ref().is_some_and(|d| !d.removed.is_empty()) {
                    keys_removed += 1;
                }
                // A type replaced; setting the type of a device the snapshot holds without one
                // (recorded when an earlier run's unknown outcome was read back) takes nothing.
                if u.device_type.as_ref().is_some_and(|c| c.before.is_some()) {
                    type_changes += 1;
                }
            }
            Operation::UpdateCustomer(u) if u.changes.values().any(|c| c.before.is_some() && c.after.is_none()) => {
                cleared += 1;
            }
            _ => {}
        }
    }
    // (kind, count, the snapshot's total, the limit given, its flag, what the total counts)
    type Kind<'a> = (&'static str, u64, u64, Option<Limit>, &'a str, &'a str);
    let kinds: [Kind<'_>; 4] = [
        ("assignments removed", unassign, totals.assignments, limits.max_unassign, "--max-unassign", "assignments"),
        ("devices losing property keys", keys_removed, totals.devices, limits.max_changes, "--max-changes", "devices"),
        ("customers with fields cleared", cleared, totals.customers, limits.max_changes, "--max-changes", "customers"),
        ("device type changes", type_changes, totals.devices, limits.max_changes, "--max-changes", "devices"),
    ];
    let checks: Vec<Check> = kinds
        .into_iter()
        .map(|(kind, count, total, limit, flag, what)| {
            let max = Limit::of(limit, total);
            Check { kind, count, limit: max, rule: Limit::describe(limit, flag, total, what), over: count > max }
        })
        .collect();
    let over = checks.iter().any(|c| c.over);
    Verdict { checks, refused: over && !limits.force, forced: over && limits.force }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::Assignment;
    use crate::model::{DeviceIdent, Email};

    #[test]
    fn the_default_refuses_half_of_a_small_organisation_and_passes_churn() {
        assert_eq!(default_limit(89), 10);
        assert_eq!(default_limit(0), 0);
        assert_eq!(default_limit(8), 2);
        assert_eq!(default_limit(1_000), 100);
        assert_eq!(default_limit(1_000_000), 100_000);
        let unassign = |n: usize| -> Vec<Operation> {
            (0..n)
                .map(|i| {
                    Operation::Unassign(Assignment {
                        device: DeviceIdent::parse(&format!("D{i}")).unwrap(),
                        customer: Email::parse("a@x.io").unwrap(),
                    })
                })
                .collect()
        };
        let totals = Totals { customers: 50, devices: 80, assignments: 89 };
        assert!(check(&unassign(44), totals, &Limits::default()).refused);
        assert!(!check(&unassign(3), totals, &Limits::default()).refused);
        let forced = check(&unassign(44), totals, &Limits { force: true, ..Limits::default() });
        assert!(!forced.refused && forced.forced);
        let five = Limits { max_unassign: Some(Limit::parse("5%").unwrap()), ..Limits::default() };
        assert_eq!(check(&unassign(5), totals, &five).checks[0].limit, 4);
    }

    #[test]
    fn setting_an_unknown_type_is_not_a_type_change() {
        let update = |before: Option<&str>| {
            Operation::UpdateDevice(Box::new(crate::plan::DeviceUpdateDoc {
                identifier: DeviceIdent::parse("D1").unwrap(),
                telemetron_id: None,
                device_type: Some(crate::diff::Change { before: before.map(Into::into), after: Some("b".into()) }),
                properties: None,
                properties_after: None,
            }))
        };
        let totals = Totals { customers: 1, devices: 1, assignments: 0 };
        let limits = Limits { max_changes: Some(Limit::Count(0)), ..Limits::default() };
        assert!(check(&[update(Some("a"))], totals, &limits).refused, "a replaced type counts");
        assert!(!check(&[update(None)], totals, &limits).refused, "a type where none was known takes nothing");
    }

    #[test]
    fn limits_parse() {
        assert_eq!(Limit::parse("50"), Some(Limit::Count(50)));
        assert_eq!(Limit::parse(" 10% "), Some(Limit::Percent(10.0)));
        assert_eq!(Limit::parse("120%"), None);
        assert_eq!(Limit::parse("lots"), None);
    }
}
