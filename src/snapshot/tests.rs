use std::path::PathBuf;

use super::*;
use crate::model::{
    Assignment, CustomerRecord, Customers, DeviceIdent, DeviceRecord, Devices, Email, Properties, SnapshotData,
    TelemetronId,
};

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

/// The plain read a read beside the export stands for: its rows held in full, and the rows it
/// marked equal, rebuilt from the export (Telemetron ids are not kept for those: `None`).
fn expanded(shared: &SnapshotData, customers: &Customers, devices: &Devices) -> SnapshotData {
    use crate::model::{Owners, StoredCustomer, StoredDevice};
    let mut out = SnapshotData { version: shared.version.clone(), ..SnapshotData::default() };
    out.customers = shared.customers.clone();
    for (i, (email, entry)) in customers.entries.iter().enumerate() {
        if shared.same_customers.contains(i) {
            out.customers.insert(email.clone(), StoredCustomer { telemetron_id: None, record: entry.record.clone() });
        }
    }
    out.devices = shared.devices.clone();
    for (position, &i) in shared.same_devices.order().iter().enumerate() {
        let (ident, entry) = devices.entries.get_index(i as usize).unwrap();
        let owners: Owners = shared.same_devices.owners(position).map(|o| o.to_email()).collect();
        out.devices.insert(ident.clone(), StoredDevice { telemetron_id: None, record: entry.record.clone(), owners });
    }
    out
}

/// A read beside the export holds what differs from it, marks what equals it, and the two are
/// exactly what a plain read holds.
#[test]
fn a_read_sharing_with_the_export_is_the_plain_read() {
    use crate::model::{CustomerEntry, DeviceEntry};
    let dir = tempdir();
    let path = dir.join("s.db");
    let mut store = Store::open(&path).unwrap();
    let email = |s: &str| Email::parse(s).unwrap();
    let dev = |s: &str| DeviceIdent::parse(s).unwrap();
    let props = |v: &str| Properties::from_map(&[("fw".to_string(), v.to_string())].into());
    let device = |t: &str, v: &str| DeviceRecord { device_type: Some(t.into()), properties: props(v) };
    let long = "a-customer-with-a-long-address@example.org";
    let uuid = "UUID-0f8e4c2a-6b1d-4e5f-9a7b-3c2d1e0f9a8b";
    let mut w = store.writer().unwrap();
    for (e, name) in [("a@b.co", "A"), (long, "Long"), ("gone@b.co", "Gone")] {
        w.put_customer(&email(e), None, &rec(name)).unwrap();
    }
    for (d, t, v) in [("D1", "t", "1"), (uuid, "t", "2"), ("D3", "u", "3"), ("D4", "t", "4")] {
        w.put_device(&dev(d), None, &device(t, v)).unwrap();
    }
    w.assign(&dev("D1"), &email(long)).unwrap();
    w.assign(&dev(uuid), &email(long)).unwrap();
    w.assign(&dev(uuid), &email("a@b.co")).unwrap();
    w.assign(&dev("ORPHAN"), &email("a@b.co")).unwrap();
    w.assign(&dev("D4"), &email("a@b.co")).unwrap();
    w.commit().unwrap();
    drop(store);

    // The export, in no key order: one customer equal, one changed, one new; devices likewise,
    // and one whose type changed.
    let mut customers = Customers::default();
    for (line, (e, name)) in [("new@b.co", "New"), (long, "Long"), ("a@b.co", "A, changed")].into_iter().enumerate() {
        customers.entries.insert(email(e), CustomerEntry { line: line as u64 + 2, record: rec(name) });
    }
    let mut devices = Devices::default();
    for (line, (d, t, v)) in
        [("N1", "t", "9"), ("D3", "t", "3"), ("D4", "t", "4"), (uuid, "t", "2"), ("D1", "t", "1, changed")]
            .into_iter()
            .enumerate()
    {
        devices.entries.insert(dev(d), DeviceEntry { line: line as u64 + 2, record: device(t, v) });
    }
    let share = Share { customers: Some(&customers), devices: Some(&devices) };
    let shared = open(&path).unwrap().unwrap().all(share).unwrap();
    let plain = read(&path).unwrap();
    assert!(plain.same_customers.is_empty() && plain.same_devices.is_empty(), "a plain read marks nothing");
    assert_eq!(shared.totals(), plain.totals());
    let whole = expanded(&shared, &customers, &devices);
    assert_eq!(whole.customers, plain.customers);
    assert_eq!(whole.devices, plain.devices);
    assert_eq!(shared.version, plain.version);

    // Held: what differs or the export lacks; marked: what is equal, with its owners.
    let held: Vec<&str> = shared.customers.keys().map(Email::as_str).collect();
    assert_eq!(held, ["a@b.co", "gone@b.co"]);
    assert!(shared.same_customers.contains(1) && shared.same_customers.len() == 1);
    let held: Vec<&str> = shared.devices.keys().map(DeviceIdent::as_str).collect();
    assert_eq!(held, ["D1", "D3", "ORPHAN"]);
    assert_eq!(shared.same_devices.order(), [2, 3], "D4 and the UUID, in key order");
    let owners = |position| shared.same_devices.owners(position).map(|o| o.to_string()).collect::<Vec<_>>();
    assert_eq!(owners(0), ["a@b.co"]);
    assert_eq!(owners(1), [long, "a@b.co"]);
    // What differs keeps its own record.
    assert_eq!(shared.devices[&dev("D1")].record.properties, props("1"), "the snapshot's own value");
    assert_eq!(shared.devices[&dev("D3")].record.device_type.as_deref(), Some("u"), "a changed type stays");
}

/// The promise the marks must keep: whatever the snapshot and the export hold — equal rows,
/// changed ones, rows only one side has, untyped devices the resolution removes (moving others
/// in the export's map), orphan assignments, held entities, owners by source id — resolving and
/// diffing against a read beside the export gives what it gives against a plain read.
#[test]
fn the_diff_against_a_shared_read_is_the_diff_against_a_plain_read() {
    use crate::model::{CustomerEntry, CustomerRef, DeviceEntry, Export, InputInfo, Ownership, OwnershipRow};
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let email = |i: u64| {
        let s =
            if i.is_multiple_of(3) { format!("a-rather-long-customer-{i}@example.org") } else { format!("c{i}@x.io") };
        Email::parse(&s).unwrap()
    };
    let dev = |i: u64| {
        let s = if i.is_multiple_of(4) { format!("UUID-0f8e4c2a-6b1d-4e5f-9a7b-{i:012}") } else { format!("D{i}") };
        DeviceIdent::parse(&s).unwrap()
    };
    for round in 0..300 {
        let (nc, nd) = (1 + next(12), 1 + next(16));
        let mut draw = |n: u64| next(n);
        let customer = |v: u64, w: u64| {
            let name = ["A", "B", "Ç"][v as usize % 3];
            let source = w.is_multiple_of(3).then(|| format!("s{}", w % 5));
            CustomerRecord::new(Some(name), w.is_multiple_of(2).then_some("1"), None, source.as_deref())
        };
        // Properties held both ways: as JSON, and as a devices file's values against its keys.
        let keys = crate::model::PropertyKeys::new(vec!["fw".to_string(), "loc".to_string()]);
        let device = |v: u64| DeviceRecord {
            device_type: [None, Some("t".into()), Some("u".into())][v as usize % 3].clone(),
            properties: if v % 4 < 2 {
                Properties::from_map(&[("fw".to_string(), (v % 2).to_string())].into())
            } else {
                let mut values = crate::model::PropertyValues::new(&keys);
                values.push(&(v % 2).to_string());
                values.push("");
                values.properties()
            },
        };
        // The snapshot.
        let dir = tempdir();
        let path = dir.join("s.db");
        let mut store = Store::open(&path).unwrap();
        let mut w = store.writer().unwrap();
        let mut snap_customers = Vec::new();
        for c in 0..nc {
            if draw(10) < 7 {
                let (v, x) = (draw(3), draw(6));
                let id = (draw(2) == 0).then(|| TelemetronId::new(&format!("cus_{c}")));
                w.put_customer(&email(c), id.as_ref(), &customer(v, x)).unwrap();
                snap_customers.push((c, v, x));
            }
        }
        let mut snap_devices = Vec::new();
        for d in 0..nd {
            if draw(10) < 7 {
                let v = draw(6);
                w.put_device(&dev(d), None, &device(v)).unwrap();
                snap_devices.push((d, v));
            }
        }
        for _ in 0..draw(2 * nd) {
            w.assign(&dev(draw(nd + 2)), &email(draw(nc + 2))).unwrap();
        }
        w.commit().unwrap();
        drop(store);

        // The export, built twice from the same draws.
        let export_draws: Vec<u64> = (0..4 * (nc + nd) + 64).map(|_| next(1 << 20)).collect();
        let build = || {
            let mut r = export_draws.iter().copied();
            let mut pick = |n: u64| r.next().unwrap_or(0) % n;
            let mut customers = Customers { present: crate::model::PresentFields::ALL, ..Customers::default() };
            let mut order: Vec<u64> = (0..nc).collect();
            order.rotate_left(pick(nc) as usize);
            for c in order {
                if pick(10) < 8 {
                    let same = snap_customers.iter().find(|s| s.0 == c).filter(|_| pick(10) < 7);
                    let (v, x) = same.map_or_else(|| (pick(3), pick(6)), |s| (s.1, s.2));
                    customers.entries.insert(email(c), CustomerEntry { line: c + 2, record: customer(v, x) });
                    if pick(20) == 0 {
                        customers.held.insert(email(c));
                    }
                }
            }
            let mut devices = Devices::default();
            let mut order: Vec<u64> = (0..nd).collect();
            order.rotate_left(pick(nd) as usize);
            if pick(2) == 0 {
                order.reverse();
            }
            for d in order {
                if pick(10) < 8 {
                    let same = snap_devices.iter().find(|s| s.0 == d).filter(|_| pick(10) < 7);
                    let record = device(same.map_or_else(|| pick(6), |s| s.1));
                    if record.device_type.is_none() {
                        devices.untyped_records.insert(dev(d), format!("{},,", dev(d)));
                    }
                    devices.entries.insert(dev(d), DeviceEntry { line: d + 2, record });
                    if pick(25) == 0 {
                        devices.held.insert(dev(d));
                    }
                }
            }
            let mut own = Ownership::default();
            for line in 0..pick(3 * nd) {
                let customer = if pick(6) == 0 {
                    CustomerRef::SourceId(format!("s{}", pick(5)).into())
                } else {
                    CustomerRef::Email(email(pick(nc + 1)))
                };
                own.rows.push(OwnershipRow { line: line + 2, device: dev(pick(nd + 1)), customer });
            }
            let info = |kind: &str| InputInfo {
                kind: kind.into(),
                path: format!("{kind}.csv"),
                sha256: String::new(),
                rows: 1,
            };
            Export {
                customers: Some(customers),
                devices: Some(devices),
                ownership: Some(own),
                inputs: vec![info("customers"), info("devices"), info("ownership")],
                ..Export::default()
            }
        };
        let (mut plain_export, mut shared_export) = (build(), build());
        let mut plain = read(&path).unwrap();
        let share = Share { customers: shared_export.customers.as_ref(), devices: shared_export.devices.as_ref() };
        let mut shared = open(&path).unwrap().unwrap().all(share).unwrap();
        assert_eq!(shared.totals(), plain.totals(), "round {round}");
        crate::load::resolve(&mut plain_export, &mut plain);
        crate::load::resolve(&mut shared_export, &mut shared);
        assert_eq!(shared_export.rejects, plain_export.rejects, "round {round}");
        let (want, got) = (crate::diff::diff(&plain_export, &plain), crate::diff::diff(&shared_export, &shared));
        assert_eq!(got, want, "round {round}");
        let (c, d) = (shared_export.customers.as_ref().unwrap(), shared_export.devices.as_ref().unwrap());
        let whole = expanded(&shared, c, d);
        let strip = |m: &crate::model::SortedMap<Email, crate::model::StoredCustomer>| -> Vec<(Email, CustomerRecord)> {
            m.iter().map(|(e, c)| (e.clone(), c.record.clone())).collect()
        };
        assert_eq!(strip(&whole.customers), strip(&plain.customers), "round {round}");
        let devices = |m: &crate::model::SortedMap<DeviceIdent, crate::model::StoredDevice>| {
            m.iter().map(|(k, v)| (k.clone(), v.record.clone(), v.owners.clone())).collect::<Vec<_>>()
        };
        assert_eq!(
            devices(&whole.devices),
            devices(&plain.devices),
            "round {round}: the marks follow the resolution's moves"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A new snapshot with one apply run and its undo plan: the path, the plan, the run, the plan's
/// bytes as stored, and the store, still open.
fn one_stored_undo_plan() -> (PathBuf, serde_json::Value, i64, Vec<u8>, Store) {
    let path = tempdir().join("s.db");
    let mut store = Store::open(&path).unwrap();
    let plan = serde_json::json!({"operations": [{"op": "unassign", "device": "D1", "customer": "a@b.co"}], "not_undoable": []});
    let run = store.begin_run("apply").unwrap();
    store.put_undo(run, &plan, 30).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let stored: Vec<u8> = conn.query_row("SELECT plan FROM undo WHERE run_id = ?1", [run], |r| r.get(0)).unwrap();
    (path, plan, run, stored, store)
}

/// Undo plans are stored compressed; one stored as plain JSON text by an earlier version reads
/// the same.
#[test]
fn undo_plans_read_back_compressed_or_as_earlier_plain_text() {
    let (path, plan, new, stored, mut store) = one_stored_undo_plan();
    let old = store.begin_run("apply").unwrap();
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    assert_eq!(&stored[..2], &[0x1f, 0x8b], "gzip-compressed");
    conn.execute("INSERT INTO undo (run_id, plan) VALUES (?1, ?2)", rusqlite::params![old, plan.to_string()]).unwrap();
    drop(conn);
    for run in [new, old] {
        let (kind, read) = undo_plan::<serde_json::Value>(&path, run).unwrap().unwrap();
        assert_eq!((kind.as_str(), read.as_ref()), ("apply", Some(&plan)), "run {run}");
    }
}

/// A stored undo plan that is damaged (cut, not gzip, not JSON, not a plan) is an error that
/// says so, never a run without an undo plan; a run that stored none is one.
#[test]
fn a_damaged_undo_plan_is_an_error_not_a_missing_one() {
    let (path, _, good, stored, mut store) = one_stored_undo_plan();
    let none = store.begin_run("apply").unwrap();
    let damaged: Vec<i64> = (0..5).map(|_| store.begin_run("apply").unwrap()).collect();
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let values: [rusqlite::types::Value; 5] = [
        stored[..stored.len() / 2].to_vec().into(),
        b"not gzip".to_vec().into(),
        "{\"operations\": [".to_string().into(),
        "{\"operations\": 7}".to_string().into(),
        rusqlite::types::Value::Integer(3),
    ];
    for (run, value) in damaged.iter().zip(values) {
        conn.execute("INSERT INTO undo (run_id, plan) VALUES (?1, ?2)", rusqlite::params![run, value]).unwrap();
    }
    drop(conn);
    assert!(matches!(undo_plan::<crate::plan::UndoPlan>(&path, good), Ok(Some((_, Some(_))))));
    assert!(matches!(undo_plan::<crate::plan::UndoPlan>(&path, none), Ok(Some((_, None)))));
    for run in damaged {
        let e = undo_plan::<crate::plan::UndoPlan>(&path, run).unwrap_err().to_string();
        assert!(e.contains(&format!("the undo plan of run {run} (apply) is unreadable")), "run {run}: {e}");
    }
}

/// Every table of the snapshot at `path`, each row as text, in key order.
fn dump(path: &std::path::Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut rows = Vec::new();
    for sql in [
        "SELECT email || '|' || coalesce(telemetron_id, '-') || '|' || coalesce(name, '-') FROM customers ORDER BY email",
        "SELECT identifier || '|' || coalesce(telemetron_id, '-') || '|' || coalesce(type, '-') || '|' || properties
             FROM devices ORDER BY identifier",
        "SELECT device || '|' || customer FROM assignments ORDER BY device, customer",
    ] {
        let mut st = conn.prepare(sql).unwrap();
        rows.extend(st.query_map([], |r| r.get::<_, String>(0)).unwrap().map(Result::unwrap));
    }
    rows
}

#[test]
fn bulk_writes_of_any_length_write_what_row_by_row_writes() {
    let dir = tempdir();
    // Around the rows one statement carries (64): none, fewer, one statement, one and a rest.
    for n in [0usize, 1, 2, 63, 64, 65, 128, 130, 200] {
        let email = |i: usize| Email::parse(&format!("c{:03}@x.io", i % (n / 2).max(1))).unwrap();
        let dev = |i: usize| DeviceIdent::parse(&format!("SN-{:03}", (i * 7) % n.max(1))).unwrap();
        // Keys repeat within a statement (a later row updates, a repeated pair is ignored).
        let customers: Vec<(Email, CustomerRecord)> = (0..n).map(|i| (email(i), rec(&format!("N{i}")))).collect();
        let props: Vec<Properties> =
            (0..n).map(|i| Properties::from_json(&format!(r#"{{"fw":"1.{i}","ü":"{i}"}}"#)).unwrap()).collect();
        let devices: Vec<(DeviceIdent, String)> = (0..n).map(|i| (dev(i), format!("t{}", i % 3))).collect();
        let pairs: Vec<Assignment> =
            (0..n).map(|i| Assignment { device: dev(i / 2), customer: email(i % 5) }).collect();
        let paths = [dir.join(format!("bulk-{n}.db")), dir.join(format!("one-{n}.db"))];
        for (k, path) in paths.iter().enumerate() {
            let mut store = Store::open(path).unwrap();
            // A stored id the writes without one keep.
            let mut w = store.writer().unwrap();
            w.put_customer(&email(0), Some(&TelemetronId::new("cust_0")), &rec("old")).unwrap();
            w.commit().unwrap();
            let mut w = store.writer().unwrap();
            if k == 0 {
                w.put_customers(customers.iter().map(|(e, r)| (e, r))).unwrap();
                w.put_devices(devices.iter().zip(&props).map(|((d, t), p)| (d, Some(t.as_str()), p))).unwrap();
                w.assign_all(&pairs).unwrap();
            } else {
                for (e, r) in &customers {
                    w.put_customer(e, None, r).unwrap();
                }
                for ((d, t), p) in devices.iter().zip(&props) {
                    w.put_device(
                        d,
                        None,
                        &DeviceRecord { device_type: Some(t.as_str().into()), properties: p.clone() },
                    )
                    .unwrap();
                }
                for a in &pairs {
                    w.assign(&a.device, &a.customer).unwrap();
                }
            }
            w.commit().unwrap();
        }
        let (bulk, one) = (dump(&paths[0]), dump(&paths[1]));
        assert_eq!(bulk, one, "{n} rows");
        assert!(n == 0 || bulk.iter().any(|r| r.starts_with("c000@x.io|cust_0|")), "{n} rows: the stored id kept");
    }
}

/// A snapshot of `n` devices, closed: its path.
fn devices_snapshot(n: usize) -> PathBuf {
    let path = tempdir().join("s.db");
    let mut store = Store::open(&path).unwrap();
    let mut w = store.writer().unwrap();
    for i in 0..n {
        let props = Properties::from_json(&format!(r#"{{"fw":"1.{i}","site":"Zürich-{i:05}"}}"#)).unwrap();
        let record = DeviceRecord { device_type: Some("thermostat".into()), properties: props };
        w.put_device(&DeviceIdent::parse(&format!("SN-{:08}", (i * 7919) % 100_003)).unwrap(), None, &record).unwrap();
    }
    w.commit().unwrap();
    drop(store);
    path
}

/// The page size and the number of pages of the file at `path`.
fn pages_of(path: &std::path::Path) -> (usize, usize) {
    let bytes = std::fs::read(path).unwrap();
    let size = u16::from_be_bytes([bytes[16], bytes[17]]) as usize;
    (size, bytes.len() / size)
}

#[test]
fn every_page_of_a_new_snapshot_is_sealed() {
    let path = devices_snapshot(3000);
    let (_, pages) = pages_of(&path);
    assert!(pages > 3, "{pages} pages");
    assert_eq!(scan(&path).unwrap(), Scan::Intact { pages: pages as u64 });
}

/// The damage the issue found: 4 KiB of zeros in the middle of a devices page was read as
/// rows. Now reading refuses, naming the damage, and a writer refuses before writing a byte.
#[test]
fn a_zeroed_stretch_of_a_page_is_refused_by_readers_and_writers_alike() {
    let path = devices_snapshot(3000);
    let (size, pages) = pages_of(&path);
    let mut bytes = std::fs::read(&path).unwrap();
    let page = pages / 2;
    let at = page * size + size / 2 - 2048;
    bytes[at..at + 4096].fill(0);
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(scan(&path).unwrap(), Scan::Damaged { page: page as u64 + 1, pages: pages as u64 });

    let e = read(&path).unwrap_err().to_string();
    assert!(e.contains("is damaged") && e.contains("verify --all --heal"), "{e}");
    let e = Store::open(&path).unwrap_err().to_string();
    assert!(e.contains(&format!("page {} of {pages}", page + 1)), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "the file is left exactly as it was");
    let checked = check(&path).unwrap();
    assert!(!checked.ok(), "{checked:?}");
}

/// A snapshot written before page checksums (schema 5, no room reserved) is sealed at its first
/// write by this version: its rows unchanged, every page checked from then on.
#[test]
fn a_snapshot_from_before_checksums_is_sealed_at_its_first_write() {
    let path = tempdir().join("old.db");
    let conn = rusqlite::Connection::open_with_flags_and_vfs(
        &path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_CREATE,
        c"unix",
    )
    .unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    for sql in &super::schema::MIGRATIONS[..5] {
        conn.execute_batch(sql).unwrap();
    }
    conn.execute_batch(
        "INSERT INTO meta VALUES ('snapshot_id', 'old'), ('generation', '4');
         INSERT INTO devices (identifier, type) VALUES ('D1', 'thermostat');
         INSERT INTO assignments VALUES ('D1', 'a@b.co');
         PRAGMA user_version = 5;",
    )
    .unwrap();
    drop(conn);
    assert_eq!(scan(&path).unwrap(), Scan::Unsealed);
    let before = read(&path).unwrap();
    Store::open(&path).unwrap();
    assert!(matches!(scan(&path).unwrap(), Scan::Intact { .. }), "{:?}", scan(&path));
    let after = read(&path).unwrap();
    assert_eq!((after.version.id.as_deref(), after.version.generation), (Some("old"), 4));
    assert_eq!(format!("{:?}", after.devices), format!("{:?}", before.devices));
    assert!(check(&path).unwrap().ok());
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
}

/// A header that no longer reserves room for checksums would turn every check off: a snapshot
/// of a version that seals its pages is refused instead.
#[test]
fn a_header_that_lost_its_reserved_bytes_is_refused() {
    let path = devices_snapshot(10);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[20] = 0;
    std::fs::write(&path, &bytes).unwrap();
    for e in [read(&path).unwrap_err().to_string(), Store::open(&path).unwrap_err().to_string()] {
        // In this process the file is known to be sealed, so page 1 fails its check; a process
        // that did not make it finds the header without room (both are damage).
        assert!(e.contains("is damaged ("), "{e}");
    }
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

/// Every write of a record row names the run under way; what leaves no row (a removal, a
/// device Telemetron does not have) is in the run's log, newest first; and only the newest
/// `keep` runs keep their log and their undo plan.
#[test]
fn a_row_names_the_run_that_wrote_it_and_the_log_keeps_what_leaves_none() {
    use crate::model::Confirmed;
    let path = tempdir().join("s.db");
    let mut store = Store::open(&path).unwrap();
    let (e, d1, d2) =
        (Email::parse("a@b.co").unwrap(), DeviceIdent::parse("D1").unwrap(), DeviceIdent::parse("D2").unwrap());
    let pair = |d: &DeviceIdent| Assignment { device: d.clone(), customer: e.clone() };
    let first = store.begin_run("apply").unwrap();
    let mut w = store.writer().unwrap();
    w.record(&Confirmed::Customer { email: e.clone(), id: None, record: rec("A") }).unwrap();
    w.record(&Confirmed::Assigned(pair(&d1))).unwrap();
    w.record(&Confirmed::Assigned(pair(&d2))).unwrap();
    w.commit().unwrap();
    let second = store.begin_run("event").unwrap();
    let mut w = store.writer().unwrap();
    w.record(&Confirmed::Assigned(pair(&d1))).unwrap();
    w.record(&Confirmed::Unassigned(pair(&d2))).unwrap();
    w.record(&Confirmed::DeviceMissing(d1.clone())).unwrap();
    w.commit().unwrap();
    let about_e = about(&path, "a@b.co").unwrap();
    let by = about_e.customer.as_ref().and_then(|c| c.confirmed_by.clone()).unwrap();
    assert_eq!((by.id, by.kind.as_deref()), (first, Some("apply")));
    let log: Vec<(i64, &str, &str, &str)> =
        about_e.log.iter().map(|l| (l.run, l.kind.as_str(), l.key.as_str(), l.outcome.as_str())).collect();
    assert_eq!(log, [(second, "assignments_removed", "D2 -> a@b.co", "confirmed")]);
    let about_d1 = about(&path, "D1").unwrap();
    assert!(about_d1.device.is_none() && about_d1.assignments.is_empty(), "{about_d1:?}");
    assert_eq!(about_d1.log[0].outcome, "not_found");
    assert!(about_d1.log[0].at.is_some());

    // The log and the undo plans of the newest `keep` runs only.
    for _ in 0..3 {
        let run = store.begin_run("apply").unwrap();
        store.put_undo(run, &serde_json::json!({"run": run}), 30).unwrap();
        let mut w = store.writer().unwrap();
        w.log("assignments_removed", "D9 -> a@b.co", "confirmed", "").unwrap();
        w.commit().unwrap();
    }
    store.keep_runs(2).unwrap();
    let runs: Vec<i64> = about(&path, "D9").unwrap().log.iter().map(|l| l.run).collect();
    assert_eq!(runs, [second + 3, second + 2]);
    let plan = |run| undo_plan::<serde_json::Value>(&path, run).unwrap().and_then(|(_, p)| p);
    assert!(plan(second + 1).is_none());
    assert_eq!(plan(second + 2), Some(serde_json::json!({"run": second + 2})));
    assert!(about(&path, "D2").unwrap().log.is_empty(), "the pruned run's log is gone");
}
