use std::path::PathBuf;

use super::*;
use crate::model::{CustomerRecord, DeviceIdent, DeviceRecord, Email, Properties, TelemetronId};

fn rec(name: &str) -> CustomerRecord {
    CustomerRecord::new(Some(name), None, None, None)
}

#[test]
fn missing_file_is_empty_and_not_created() {
    let dir = tempdir();
    let path = dir.join("none.db");
    let data = read(&path).unwrap();
    assert!(data.customers.is_empty() && data.version.id.is_none());
    assert!(!path.exists());
}

#[test]
fn assignments_find_their_devices_and_devices_without_rows_get_one() {
    let dir = tempdir();
    let path = dir.join("s.db");
    let mut store = Store::open(&path).unwrap();
    let (a, b) = (Email::parse("a@b.co").unwrap(), Email::parse("b@b.co").unwrap());
    let dev = |s: &str| DeviceIdent::parse(s).unwrap();
    let typed = DeviceRecord { device_type: Some("t".into()), properties: Properties::empty() };
    let mut w = store.writer().unwrap();
    // Rows for B and D only; assignments of A (before every row), C (between) and E (after).
    for d in ["D", "B"] {
        w.put_device(&dev(d), None, &typed).unwrap();
    }
    for (d, e) in [("E", &a), ("C", &b), ("A", &a), ("B", &b), ("C", &a), ("B", &a), ("A", &b)] {
        w.assign(&dev(d), e).unwrap();
    }
    w.commit().unwrap();
    drop(store);
    let data = read(&path).unwrap();
    let keys: Vec<&str> = data.devices.keys().map(DeviceIdent::as_str).collect();
    assert_eq!(keys, ["A", "B", "C", "D", "E"]);
    for (d, owners) in [("A", vec![&a, &b]), ("B", vec![&a, &b]), ("C", vec![&a, &b]), ("D", vec![]), ("E", vec![&a])] {
        let got: Vec<&Email> = data.owners_of(&dev(d)).iter().collect();
        assert_eq!(got, owners, "owners of {d}");
    }
    assert!(data.devices[&dev("A")].record.device_type.is_none(), "a device without a row has no type");
    assert_eq!(data.devices[&dev("B")].record, typed);
    assert_eq!(data.assignment_count(), 7);
}

#[test]
fn writes_round_trip_and_bump_the_generation() {
    let dir = tempdir();
    let path = dir.join("s.db");
    let mut store = Store::open(&path).unwrap();
    let e = Email::parse("a@b.co").unwrap();
    let d = DeviceIdent::parse("SN1").unwrap();
    let mut w = store.writer().unwrap();
    w.put_customer(&e, Some(&TelemetronId::new("cust_1")), &rec("A")).unwrap();
    w.put_device(&d, None, &DeviceRecord { device_type: Some("t".into()), properties: Properties::empty() }).unwrap();
    w.assign(&d, &e).unwrap();
    w.commit().unwrap();
    let mut w = store.writer().unwrap();
    // A later write without an id keeps the stored one.
    w.put_customer(&e, None, &rec("B")).unwrap();
    w.commit().unwrap();
    drop(store);
    let data = read(&path).unwrap();
    let c = &data.customers[&e];
    assert_eq!(c.telemetron_id.as_ref().unwrap().as_str(), "cust_1");
    assert_eq!(c.record.name(), Some("B"));
    assert_eq!(data.owners_of(&d), &[e]);
    assert_eq!(data.version.generation, 2);
    assert_eq!(data.version.schema, SCHEMA_VERSION);
    assert!(data.version.id.is_some());
}

#[test]
fn assignments_find_their_devices_in_order_and_keep_those_without_a_row() {
    let dir = tempdir();
    let path = dir.join("s.db");
    let mut store = Store::open(&path).unwrap();
    let d = |s: &str| DeviceIdent::parse(s).unwrap();
    let e = |s: &str| Email::parse(s).unwrap();
    let mut w = store.writer().unwrap();
    for id in ["B", "D"] {
        w.put_device(&d(id), None, &DeviceRecord { device_type: Some("t".into()), properties: Properties::empty() })
            .unwrap();
    }
    for (dev, who) in [("A", "a@x.io"), ("B", "b@x.io"), ("B", "c@x.io"), ("C", "c@x.io"), ("D", "d@x.io")] {
        w.assign(&d(dev), &e(who)).unwrap();
    }
    w.commit().unwrap();
    drop(store);
    let data = read(&path).unwrap();
    assert_eq!(data.owners_of(&d("A")), &[e("a@x.io")]);
    assert_eq!(data.owners_of(&d("B")), &[e("b@x.io"), e("c@x.io")]);
    assert_eq!(data.owners_of(&d("C")), &[e("c@x.io")]);
    assert_eq!(data.owners_of(&d("D")), &[e("d@x.io")]);
    assert_eq!(data.devices[&d("B")].record.device_type.as_deref(), Some("t"));
    assert_eq!(data.devices[&d("C")].record.device_type, None, "a placeholder for a device without a row");
    assert_eq!(data.assignment_count(), 5);
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tsync-snap-{}-{}", std::process::id(), new_snapshot_id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Issue 11, case 7: the same snapshot through a symlink, a `..` path, or a symlink made
/// before the file exists is locked once.
#[test]
fn every_path_to_one_snapshot_takes_the_same_lock() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.db");
    let early = dir.path().join("early.db");
    std::os::unix::fs::symlink(&state, &early).unwrap();
    let held = Lock::acquire(&early).unwrap();
    assert!(Lock::acquire(&state).is_err(), "a symlink made before the file exists");
    drop(held);
    std::fs::write(&state, b"").unwrap();
    let link = dir.path().join("link.db");
    std::os::unix::fs::symlink(&state, &link).unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let dotted = dir.path().join("sub/../state.db");
    let held = Lock::acquire(&state).unwrap();
    for other in [&link, &dotted] {
        let err = Lock::acquire(other).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("is in use by process"), "{}: {err}", other.display());
    }
    assert_eq!(held.path(), dir.path().canonicalize().unwrap().join("state.db.lock"));
}

/// A read beside the export holds exactly what a plain read holds — whatever it shares — and
/// says where the export has each entry.
#[test]
fn a_read_sharing_with_the_export_is_the_plain_read() {
    use crate::model::{CustomerEntry, Customers, DeviceEntry, Devices, NOT_IN_EXPORT};
    let dir = tempdir();
    let path = dir.join("s.db");
    let mut store = Store::open(&path).unwrap();
    let email = |s: &str| Email::parse(s).unwrap();
    let dev = |s: &str| DeviceIdent::parse(s).unwrap();
    let props = |v: &str| Properties::from_map(&[("fw".to_string(), v.to_string())].into());
    let device = |t: &str, v: &str| DeviceRecord { device_type: Some(t.into()), properties: props(v) };
    let long = "a-customer-with-a-long-address@example.org";
    let mut w = store.writer().unwrap();
    for (e, name) in [("a@b.co", "A"), (long, "Long"), ("gone@b.co", "Gone")] {
        w.put_customer(&email(e), None, &rec(name)).unwrap();
    }
    for (d, t, v) in [("D1", "t", "1"), ("UUID-0f8e4c2a-6b1d-4e5f-9a7b-3c2d1e0f9a8b", "t", "2"), ("D3", "u", "3")] {
        w.put_device(&dev(d), None, &device(t, v)).unwrap();
    }
    w.assign(&dev("D1"), &email(long)).unwrap();
    w.assign(&dev("ORPHAN"), &email("a@b.co")).unwrap();
    w.commit().unwrap();
    drop(store);

    // The export, in no key order: one customer equal, one changed, one new; devices likewise,
    // and one whose type changed.
    let mut customers = Customers::default();
    for (line, (e, name)) in [("new@b.co", "New"), (long, "Long"), ("a@b.co", "A, changed")].into_iter().enumerate() {
        customers.entries.insert(email(e), CustomerEntry { line: line as u64 + 2, record: rec(name) });
    }
    let mut devices = Devices::default();
    let uuid = "UUID-0f8e4c2a-6b1d-4e5f-9a7b-3c2d1e0f9a8b";
    for (line, (d, t, v)) in
        [("N1", "t", "9"), ("D3", "t", "3"), (uuid, "t", "2"), ("D1", "t", "1, changed")].into_iter().enumerate()
    {
        devices.entries.insert(dev(d), DeviceEntry { line: line as u64 + 2, record: device(t, v) });
    }
    let share = Share { customers: Some(&customers), devices: Some(&devices) };
    let shared = open(&path).unwrap().unwrap().all(share).unwrap();
    let plain = read(&path).unwrap();
    assert_eq!(shared.customers, plain.customers);
    assert_eq!(shared.devices, plain.devices);
    assert_eq!(shared.version, plain.version);
    assert!(plain.customers_at.is_empty() && plain.devices_at.is_empty(), "a plain read does not look");

    // Where the export has each entry, in the snapshot's key order.
    assert_eq!(
        shared.customers.keys().map(Email::as_str).collect::<Vec<_>>(),
        ["a-customer-with-a-long-address@example.org", "a@b.co", "gone@b.co"]
    );
    assert_eq!(shared.customers_at, [1, 2, NOT_IN_EXPORT]);
    // D1, D3, ORPHAN, the UUID: the orphan sorts in between, and `finish` drops the positions
    // it would have shifted.
    assert!(shared.devices_at.is_empty(), "{:?}", shared.devices_at);

    // What is equal is the export's own allocation; what differs is the snapshot's.
    let (stored, export) = (&shared.devices[&dev(uuid)].record, &devices.entries[&dev(uuid)].record);
    assert!(std::ptr::eq(stored.properties.as_json(), export.properties.as_json()), "equal properties are shared");
    let (stored, export) = (&shared.devices[&dev("D1")].record, &devices.entries[&dev("D1")].record);
    assert!(!std::ptr::eq(stored.properties.as_json(), export.properties.as_json()));
    assert_eq!(stored.properties, props("1"), "the snapshot's own value, not the export's");
    let d3 = &shared.devices[&dev("D3")].record;
    assert_eq!(d3.device_type.as_deref(), Some("u"), "a changed type stays the snapshot's");
}

/// Without an orphan out of order, the devices' positions are kept.
#[test]
fn a_read_sharing_with_the_export_keeps_the_devices_positions() {
    use crate::model::{DeviceEntry, Devices, NOT_IN_EXPORT};
    let dir = tempdir();
    let path = dir.join("s.db");
    let mut store = Store::open(&path).unwrap();
    let dev = |s: &str| DeviceIdent::parse(s).unwrap();
    let typed = DeviceRecord { device_type: Some("t".into()), properties: Properties::empty() };
    let mut w = store.writer().unwrap();
    for d in ["A", "B", "C"] {
        w.put_device(&dev(d), None, &typed).unwrap();
    }
    w.commit().unwrap();
    drop(store);
    let mut devices = Devices::default();
    for d in ["C", "X", "A"] {
        devices.entries.insert(dev(d), DeviceEntry { line: 2, record: typed.clone() });
    }
    let shared = open(&path).unwrap().unwrap().all(Share { customers: None, devices: Some(&devices) }).unwrap();
    assert_eq!(shared.devices_at, [2, NOT_IN_EXPORT, 0]);
    assert!(shared.customers_at.is_empty());
}

/// Undo plans are stored compressed; one stored as plain JSON text by an earlier version reads
/// the same.
#[test]
fn undo_plans_read_back_compressed_or_as_earlier_plain_text() {
    let dir = tempdir();
    let path = dir.join("s.db");
    let mut store = Store::open(&path).unwrap();
    let plan = serde_json::json!({"operations": [{"op": "unassign", "device": "D1", "customer": "a@b.co"}], "not_undoable": []});
    let (new, old) = (store.begin_run("apply").unwrap(), store.begin_run("apply").unwrap());
    store.put_undo(new, &plan, 30).unwrap();
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let stored: Vec<u8> = conn.query_row("SELECT plan FROM undo WHERE run_id = ?1", [new], |r| r.get(0)).unwrap();
    assert_eq!(&stored[..2], &[0x1f, 0x8b], "gzip-compressed");
    conn.execute("INSERT INTO undo (run_id, plan) VALUES (?1, ?2)", rusqlite::params![old, plan.to_string()]).unwrap();
    drop(conn);
    for run in [new, old] {
        let (kind, read) = undo_plan(&path, run).unwrap().unwrap();
        assert_eq!((kind.as_str(), &read), ("apply", &plan), "run {run}");
    }
}
