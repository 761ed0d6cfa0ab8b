//! Drift: how a customer as Telemetron holds it differs from what the snapshot says Telemetron
//! was told. Pure: the `verify` command reads customers back and hands them here.
//!
//! The snapshot is what Telemetron has been *told*; support staff editing in the dashboard, other
//! integrations, or a migration done by hand make it differ from what Telemetron *holds*. ext-v1
//! offers no listing, so drift is found customer by customer (queryCustomer gives a customer's
//! fields and the identifiers of its devices).

use serde::Serialize;

use crate::model::{CustomerRecord, DeviceIdent, Email};

/// A customer as Telemetron holds it, read back: the fields drift compares (the client's wire
/// type is mapped to this where it is called).
#[derive(Debug, Clone, Copy)]
pub struct Remote<'a> {
    pub id: &'a str,
    pub name: Option<&'a str>,
    pub phone: Option<&'a str>,
    pub address: Option<&'a str>,
    /// The identifiers of its devices.
    pub devices: &'a [String],
}

/// One field that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldDrift {
    pub field: &'static str,
    pub snapshot: Option<String>,
    pub remote: Option<String>,
}

/// How one customer drifted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CustomerDrift {
    pub email: Email,
    /// Telemetron's id for the customer, when it has the customer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub telemetron_id: Option<String>,
    /// Telemetron has no customer with this email.
    pub missing_remotely: bool,
    pub fields: Vec<FieldDrift>,
    /// Assigned in Telemetron, not in the snapshot.
    pub devices_only_remote: Vec<String>,
    /// In the snapshot, not assigned in Telemetron.
    pub devices_only_in_snapshot: Vec<String>,
}

/// Compares a customer as the snapshot has it with what Telemetron returned (`None`: 404).
/// `None` when they agree.
pub fn compare(
    email: &Email,
    stored: &CustomerRecord,
    stored_devices: &[&DeviceIdent],
    remote: Option<Remote<'_>>,
) -> Option<CustomerDrift> {
    let mut drift = CustomerDrift {
        email: email.clone(),
        telemetron_id: remote.map(|r| r.id.to_string()),
        missing_remotely: remote.is_none(),
        fields: Vec::new(),
        devices_only_remote: Vec::new(),
        devices_only_in_snapshot: Vec::new(),
    };
    let Some(remote) = remote else {
        drift.devices_only_in_snapshot = stored_devices.iter().map(|d| d.to_string()).collect();
        return Some(drift);
    };
    // A customer created without a name is named after its email by Telemetron.
    let expected_name = stored.name().unwrap_or(email.local_part());
    if clean(remote.name) != Some(expected_name) {
        drift.fields.push(FieldDrift {
            field: "name",
            snapshot: stored.name().map(Into::into),
            remote: clean(remote.name).map(Into::into),
        });
    }
    for (field, ours, theirs) in
        [("phone", stored.phone(), remote.phone), ("address", stored.address(), remote.address)]
    {
        if ours != clean(theirs) {
            drift.fields.push(FieldDrift {
                field,
                snapshot: ours.map(Into::into),
                remote: clean(theirs).map(Into::into),
            });
        }
    }
    let ours: std::collections::BTreeSet<&str> = stored_devices.iter().map(|d| d.as_str()).collect();
    let theirs: std::collections::BTreeSet<&str> = remote.devices.iter().map(String::as_str).collect();
    drift.devices_only_remote = theirs.difference(&ours).map(|s| s.to_string()).collect();
    drift.devices_only_in_snapshot = ours.difference(&theirs).map(|s| s.to_string()).collect();
    let drifted =
        !drift.fields.is_empty() || !drift.devices_only_remote.is_empty() || !drift.devices_only_in_snapshot.is_empty();
    drifted.then_some(drift)
}

/// A customer's record as Telemetron holds it, keeping our own source key.
pub fn remote_record(remote: Remote<'_>, stored: &CustomerRecord) -> CustomerRecord {
    CustomerRecord::new(clean(remote.name), clean(remote.phone), clean(remote.address), stored.source_id())
}

/// A field as Telemetron returned it: absent, `null` and blank are all "no value".
fn clean(v: Option<&str>) -> Option<&str> {
    v.map(str::trim).filter(|s| !s.is_empty())
}

/// Where a customer falls in a seeded sample: sort by this and take the first N.
pub fn sample_key(seed: u64, email: &Email) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in email.as_str().bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote<'a>(name: &'a str, phone: Option<&'a str>, devices: &'a [String]) -> Remote<'a> {
        Remote { id: "cust_1", name: Some(name), phone, address: None, devices }
    }

    fn idents(ds: &[&str]) -> Vec<String> {
        ds.iter().map(|d| d.to_string()).collect()
    }

    #[test]
    fn agreement_is_no_drift() {
        let e = Email::parse("ann@x.io").unwrap();
        let d = DeviceIdent::parse("D1").unwrap();
        let stored = CustomerRecord::new(None, Some("1"), None, None);
        assert_eq!(compare(&e, &stored, &[&d], Some(remote("ann", Some("1"), &idents(&["D1"])))), None);
    }

    #[test]
    fn fields_devices_and_missing_customers_are_drift() {
        let e = Email::parse("ann@x.io").unwrap();
        let (d1, d2) = (DeviceIdent::parse("D1").unwrap(), DeviceIdent::parse("D2").unwrap());
        let stored = CustomerRecord::new(Some("Ann"), Some("1"), None, None);
        let drift = compare(&e, &stored, &[&d1, &d2], Some(remote("Ann", Some("2"), &idents(&["D1", "D3"])))).unwrap();
        assert_eq!(
            drift.fields,
            vec![FieldDrift { field: "phone", snapshot: Some("1".into()), remote: Some("2".into()) }]
        );
        assert_eq!((drift.devices_only_remote, drift.devices_only_in_snapshot), (vec!["D3".into()], vec!["D2".into()]));
        let missing = compare(&e, &stored, &[&d1], None).unwrap();
        assert!(missing.missing_remotely);
        assert_eq!(missing.devices_only_in_snapshot, ["D1"]);
    }

    #[test]
    fn samples_are_stable() {
        let e = Email::parse("ann@x.io").unwrap();
        assert_eq!(sample_key(1, &e), sample_key(1, &e));
        assert_ne!(sample_key(1, &e), sample_key(2, &e));
    }
}
