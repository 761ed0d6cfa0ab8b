//! The quarantine: a record Telemetron refused in `after` runs in a row, with the same content
//! each time, is not sent again until its export row changes (its fingerprint with it) or
//! `--retry-quarantined`. Its operations leave the plan and are listed instead; so are the
//! operations that wait for it: the assignments of a customer or device whose create is held,
//! and a transfer's assign whose unassign is held (it unassigns first, so that the device is
//! never with both owners). Pure: the refusals come from the snapshot, read by the command.

use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};

use super::{Operation, Summary};
use crate::model::{DeviceIdent, Email, Fingerprint, RecordKind, Refused, pair_key};

/// When a refused record is held back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Runs in a row a record must be refused in to be quarantined.
    pub after: u32,
    /// Send quarantined records anyway (`--retry-quarantined`).
    pub retry: bool,
}

/// The default of `--quarantine-after`.
pub const DEFAULT_AFTER: u32 = 3;

impl Default for Rule {
    fn default() -> Self {
        Rule { after: DEFAULT_AFTER, retry: false }
    }
}

/// A record held back, as the plan lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantined {
    pub record: RecordKind,
    pub key: String,
    /// Runs in a row Telemetron refused it in (0: not refused itself, it waits for `waits_for`).
    pub runs: u32,
    /// The last run that sent it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub last_run: Option<i64>,
    /// Telemetron's last answer to it.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub message: String,
    /// The quarantined record this one needs first (`customer a@x.io`, `device D1`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub waits_for: Option<String>,
    /// The export's `file:line` it comes from (set by the command, which reads the files).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub source: Option<String>,
}

/// A record Telemetron refused in its last attempt that the plan sends again: failing, not
/// (yet) quarantined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failing {
    pub record: RecordKind,
    pub key: String,
    /// Runs in a row Telemetron refused it in (with this content or another).
    pub runs: u32,
    pub last_run: i64,
    /// Telemetron's last answer to it.
    pub message: String,
}

/// The refused records that `operations` (the plan, after [`hold`]) sends again. With no
/// refusal (nearly always) it looks at nothing.
pub fn failing(operations: &[Operation], refused: &[Refused]) -> Vec<Failing> {
    if refused.is_empty() {
        return Vec::new();
    }
    let by_key: FxHashMap<(RecordKind, &str), &Refused> =
        refused.iter().map(|r| ((r.record, r.key.as_str()), r)).collect();
    let mut sent: Vec<&Refused> = Vec::new();
    let mut look = |record: RecordKind, key: &str| sent.extend(by_key.get(&(record, key)).copied());
    for op in operations {
        match op {
            Operation::CreateCustomer(c) => look(RecordKind::Customer, c.email.as_str()),
            Operation::UpdateCustomer(u) => look(RecordKind::Customer, u.email.as_str()),
            Operation::CreateDevice(d) => look(RecordKind::Device, d.identifier.as_str()),
            Operation::UpdateDevice(u) => {
                if u.device_type.is_some() {
                    look(RecordKind::Device, u.identifier.as_str());
                }
                if u.properties_after.is_some() {
                    look(RecordKind::Properties, u.identifier.as_str());
                }
            }
            Operation::Unassign(a) => look(RecordKind::Unassignment, &pair_key(&a.device, &a.customer)),
            Operation::Assign(a) => look(RecordKind::Assignment, &pair_key(&a.device, &a.customer)),
        }
    }
    sent.into_iter()
        .map(|r| Failing {
            record: r.record,
            key: r.key.clone(),
            runs: r.runs,
            last_run: r.last_run,
            message: r.message.clone(),
        })
        .collect()
}

/// Takes the quarantined records' operations (or the quarantined part of a device update) out
/// of `operations`, keeps `summary`'s counts true, and lists what it held back. With nothing
/// quarantined (nearly always) it touches nothing.
pub fn hold(
    operations: &mut Vec<Operation>,
    summary: &mut Summary,
    refused: &[Refused],
    rule: Rule,
) -> Vec<Quarantined> {
    if rule.retry {
        return Vec::new();
    }
    let held: FxHashMap<(RecordKind, &str), &Refused> =
        refused.iter().filter(|r| r.runs >= rule.after.max(1)).map(|r| ((r.record, r.key.as_str()), r)).collect();
    if held.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let take = |out: &mut Vec<Quarantined>, record: RecordKind, key: &str, fingerprint: &str| -> bool {
        match held.get(&(record, key)) {
            Some(r) if r.fingerprint == fingerprint => {
                out.push(Quarantined {
                    record,
                    key: key.to_string(),
                    runs: r.runs,
                    last_run: Some(r.last_run),
                    message: r.message.clone(),
                    waits_for: None,
                    source: None,
                });
                true
            }
            _ => false,
        }
    };
    let mut customers: FxHashSet<Email> = FxHashSet::default();
    let mut devices: FxHashSet<DeviceIdent> = FxHashSet::default();
    let mut unassigns: FxHashSet<DeviceIdent> = FxHashSet::default();
    operations.retain_mut(|op| match op {
        Operation::CreateCustomer(c) => {
            let hold = take(&mut out, RecordKind::Customer, c.email.as_str(), &Fingerprint::customer(&c.record));
            if hold {
                summary.customers_to_create -= 1;
                customers.insert(c.email.clone());
            }
            !hold
        }
        Operation::UpdateCustomer(u) => {
            let hold = take(&mut out, RecordKind::Customer, u.email.as_str(), &Fingerprint::customer(&u.after));
            summary.customers_to_update -= usize::from(hold);
            !hold
        }
        Operation::CreateDevice(d) => {
            let fingerprint = Fingerprint::device(&d.device_type, Some(&d.properties));
            let hold = take(&mut out, RecordKind::Device, d.identifier.as_str(), &fingerprint);
            if hold {
                summary.devices_to_create -= 1;
                devices.insert(d.identifier.clone());
            }
            !hold
        }
        Operation::UpdateDevice(u) => {
            let key = u.identifier.as_str();
            if let Some(t) = u.device_type.as_ref().and_then(|c| c.after.as_deref())
                && take(&mut out, RecordKind::Device, key, &Fingerprint::device(t, None))
            {
                u.device_type = None;
            }
            if let Some(p) = &u.properties_after
                && take(&mut out, RecordKind::Properties, key, &Fingerprint::properties(p))
            {
                u.properties = None;
                u.properties_after = None;
            }
            let keep = u.device_type.is_some() || u.properties_after.is_some();
            summary.devices_to_update -= usize::from(!keep);
            keep
        }
        Operation::Unassign(a) => {
            let key = pair_key(&a.device, &a.customer);
            let hold = take(&mut out, RecordKind::Unassignment, &key, &Fingerprint::pair());
            if hold {
                summary.assignments_to_remove -= 1;
                unassigns.insert(a.device.clone());
            }
            !hold
        }
        Operation::Assign(a) => {
            let key = pair_key(&a.device, &a.customer);
            let waits_for = if customers.contains(&a.customer) {
                Some(format!("customer {}", a.customer))
            } else if devices.contains(&a.device) {
                Some(format!("device {}", a.device))
            } else if unassigns.contains(&a.device) {
                Some(format!("the unassignment of {} from its previous owner", a.device))
            } else {
                None
            };
            let hold = match waits_for {
                Some(w) => {
                    out.push(Quarantined {
                        record: RecordKind::Assignment,
                        key,
                        runs: 0,
                        last_run: None,
                        message: String::new(),
                        waits_for: Some(w),
                        source: None,
                    });
                    true
                }
                None => take(&mut out, RecordKind::Assignment, &key, &Fingerprint::pair()),
            };
            summary.assignments_to_add -= usize::from(hold);
            !hold
        }
    });
    summary.quarantined = out.len();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::{Assignment, CustomerCreate};
    use crate::model::CustomerRecord;

    fn refused(record: RecordKind, key: &str, fingerprint: String, runs: u32) -> Refused {
        Refused { record, key: key.into(), fingerprint, runs, last_run: 7, message: "bad".into() }
    }

    #[test]
    fn holds_what_was_refused_often_enough_and_what_waits_for_it() {
        let email = Email::parse("a@x.io").unwrap();
        let record = CustomerRecord::new(Some("Ann"), None, None, None);
        let pair = |d: &str, c: &Email| Assignment { device: DeviceIdent::parse(d).unwrap(), customer: c.clone() };
        let other = Email::parse("b@x.io").unwrap();
        let ops = vec![
            Operation::CreateCustomer(CustomerCreate { email: email.clone(), record: record.clone() }),
            Operation::Assign(pair("D1", &email)),
            Operation::Assign(pair("D2", &other)),
            Operation::Assign(pair("D3", &other)),
        ];
        let summary = Summary { customers_to_create: 1, assignments_to_add: 3, ..Summary::default() };
        let list = vec![
            refused(RecordKind::Customer, "a@x.io", Fingerprint::customer(&record), 3),
            refused(RecordKind::Assignment, "D3 -> b@x.io", Fingerprint::pair(), 2),
        ];

        let (mut o, mut s) = (ops.clone(), summary.clone());
        let held = hold(&mut o, &mut s, &list, Rule::default());
        assert_eq!(o, vec![Operation::Assign(pair("D2", &other)), Operation::Assign(pair("D3", &other))]);
        assert_eq!(held.len(), 2);
        assert_eq!(held[1].waits_for.as_deref(), Some("customer a@x.io"));
        assert_eq!((s.customers_to_create, s.assignments_to_add, s.quarantined), (0, 2, 2));

        // Two runs are enough with --quarantine-after 2; --retry-quarantined sends them all.
        let (mut o, mut s) = (ops.clone(), summary.clone());
        assert_eq!(hold(&mut o, &mut s, &list, Rule { after: 2, retry: false }).len(), 3);
        assert_eq!(o.len(), 1);
        let (mut o, mut s) = (ops.clone(), summary.clone());
        assert!(hold(&mut o, &mut s, &list, Rule { after: 2, retry: true }).is_empty());
        assert_eq!((o, s), (ops.clone(), summary.clone()));

        // A changed export row sends something else: it goes out again.
        let changed =
            vec![refused(RecordKind::Customer, "a@x.io", Fingerprint::customer(&CustomerRecord::default()), 5)];
        let (mut o, mut s) = (ops.clone(), summary.clone());
        assert!(hold(&mut o, &mut s, &changed, Rule::default()).is_empty());
        assert_eq!(o, ops);
    }
}
