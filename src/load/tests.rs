use super::*;
use crate::config::{CustomerColumns, DeviceColumns, OwnershipColumns};
use crate::model::{CustomerRef, DeviceIdent, Email, RowRef, SnapshotData};

struct Files(tempfile::TempDir);

impl Files {
    fn new(files: &[(&str, &[u8])]) -> Files {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        Files(dir)
    }

    fn sources(&self) -> Sources {
        let p = |n: &str| {
            let path = self.0.path().join(n);
            path.exists().then_some(path)
        };
        Sources {
            customers: p("c.csv").map(|path| FileSpec { path, delimiter: b',', columns: CustomerColumns::default() }),
            devices: p("d.csv").map(|path| DeviceFileSpec {
                file: FileSpec { path, delimiter: b',', columns: DeviceColumns::default() },
                ignore_columns: vec!["notes".into()],
            }),
            ownership: p("o.csv").map(|path| FileSpec { path, delimiter: b',', columns: OwnershipColumns::default() }),
            limits: Limits::default(),
        }
    }

    fn load(&self) -> Export {
        let mut e = read(&self.sources()).unwrap();
        resolve(&mut e, &mut SnapshotData::default());
        e
    }
}

/// Each bad row: (file content, expected line, expected reason fragment).
#[test]
fn bad_customer_rows() {
    let cases: &[(&[u8], u64, &str)] = &[
        (b"email,name\nnope,A\n", 2, "invalid email \"nope\": email has no '@'"),
        (b"email,name\na@x.io,A,extra\n", 2, "wrong number of fields: 3 (the header has 2)"),
        (b"email,name\na@x.io,A\nb@x.io,\"B\n", 3, "unterminated quote"),
        (b"email,name\na@x.io,\xff\n", 2, "not valid UTF-8"),
        (b"email,name\na@x.io,A\nA@X.IO,B\n", 3, "already on line 2 with a different name"),
    ];
    for (content, line, reason) in cases {
        let e = Files::new(&[("c.csv", content)]).load();
        assert_eq!(e.rejects.len(), 1, "{:?}: {:?}", String::from_utf8_lossy(content), e.rejects);
        assert_eq!(e.rejects[0].line, *line);
        assert!(e.rejects[0].reason.contains(reason), "{:?} lacks {reason:?}", e.rejects[0].reason);
    }
}

#[test]
fn a_customer_id_two_emails_share_is_ambiguous() {
    let e = Files::new(&[
        ("c.csv", b"email,customer_id\na@x.io,C1\nb@x.io,C1\nc@x.io,C2\n"),
        ("d.csv", b"identifier,type\nD1,t\nD2,t\n"),
        ("o.csv", b"device_identifier,customer_id\nD1,C1\nD2,C2\n"),
    ])
    .load();
    assert_eq!(e.rejects.len(), 1, "{:?}", e.rejects);
    assert_eq!(e.rejects[0].line, 2);
    assert!(e.rejects[0].reason.contains("ambiguous") && e.rejects[0].reason.contains("lines 2 and 3"));
    let owners: Vec<_> = e.ownership.as_ref().unwrap().owners.by_device().collect();
    assert_eq!(owners, [(&DeviceIdent::parse("D2").unwrap(), vec![&Email::parse("c@x.io").unwrap()])]);
}

#[test]
fn ownership_in_any_row_order_gives_the_same_owners_and_warnings() {
    let customers: &[u8] = b"email\na@x.io\nb@x.io\n";
    let devices: &[u8] = b"identifier,type\nD1,t\nD2,t\n";
    let sorted: &[u8] = b"device_identifier,customer_email\nD1,b@x.io\nD1,a@x.io\nD1,b@x.io\nD2,a@x.io\n";
    let shuffled: &[u8] = b"device_identifier,customer_email\nD2,a@x.io\nD1,b@x.io\nD1,a@x.io\nD1,b@x.io\n";
    let load = |own| {
        let e = Files::new(&[("c.csv", customers), ("d.csv", devices), ("o.csv", own)]).load();
        let owners: Vec<(String, Vec<String>)> = e
            .ownership
            .unwrap()
            .owners
            .by_device()
            .map(|(d, o)| (d.to_string(), o.iter().map(|e| e.to_string()).collect()))
            .collect();
        (owners, e.warnings.into_iter().map(|w| (w.line, w.message)).collect::<Vec<_>>())
    };
    let (owners, warnings) = load(sorted);
    assert_eq!(owners, [("D1".into(), vec!["a@x.io".into(), "b@x.io".into()]), ("D2".into(), vec!["a@x.io".into()])]);
    assert_eq!(warnings, [(4, "device D1 is assigned to b@x.io again; the rows were merged".to_string())]);
    let (owners_too, warnings_too) = load(shuffled);
    assert_eq!(owners_too, owners);
    assert_eq!(warnings_too, [(5, "device D1 is assigned to b@x.io again; the rows were merged".to_string())]);
}

#[test]
fn conflicting_rows_hold_the_customer() {
    let e = Files::new(&[("c.csv", b"email,name\na@x.io,A\nb@x.io,B\na@x.io,Z\n")]).load();
    let c = e.customers.unwrap();
    assert!(c.held.contains(&Email::parse("a@x.io").unwrap()));
    assert!(!c.entries.contains_key(&Email::parse("a@x.io").unwrap()), "a held customer is not planned");
    assert_eq!(c.entries.len(), 1);
}

#[test]
fn device_properties_come_from_every_other_column() {
    let e = Files::new(&[("d.csv", b"identifier,notes,type,zeta,alpha\n SN1 ,x,t, z ,\n")]).load();
    let d = &e.devices.unwrap().entries[&DeviceIdent::parse("SN1").unwrap()];
    assert_eq!(d.record.device_type.as_deref(), Some("t"));
    assert_eq!(d.record.properties.json(), r#"{"zeta":"z"}"#, "empty cells are absent, ignored columns skipped");
}

#[test]
fn ownership_rows_that_name_nothing_known_are_rejected_and_hold_their_device() {
    let e = Files::new(&[
        ("c.csv", b"email\na@x.io\n"),
        ("d.csv", b"identifier,type\nD1,t\n"),
        ("o.csv", b"device_identifier,customer_email\nD1,a@x.io\nD1,b@x.io\nD9,a@x.io\n"),
    ])
    .load();
    let reasons: Vec<(u64, &str)> = e.rejects.iter().map(|r| (r.line, r.reason.as_str())).collect();
    assert_eq!(
        reasons,
        vec![
            (3, "customer b@x.io is in neither the customers file nor the snapshot"),
            (4, "device D9 is in neither the devices file nor the snapshot"),
        ]
    );
    let own = e.ownership.unwrap();
    assert!(own.held_devices.contains(&DeviceIdent::parse("D1").unwrap()));
    assert!(own.owners.is_empty(), "a held device's rows are not applied");
}

#[test]
fn an_ownership_row_with_invalid_utf8_withholds_removals() {
    let e = Files::new(&[("o.csv", b"device_identifier,customer_email\nD1,a@x.io\nD2,b\xff@x.io\n")]).load();
    // Line 3 for its bytes; line 2 too, since with no devices file and no snapshot its device
    // and customer are unknown: a rejected row that can mean no known entity withholds.
    let file: std::sync::Arc<str> = e.inputs[0].path.as_str().into();
    assert_eq!(e.unattributed, vec![RowRef { file: file.clone(), line: 3 }, RowRef { file, line: 2 }]);
    assert!(e.ownership.unwrap().held_devices.contains(&DeviceIdent::parse("D2").unwrap()));
}

#[test]
fn a_multi_line_ownership_row_is_unattributed() {
    let e = Files::new(&[("o.csv", b"device_identifier,customer_email\n\"D1\nD2\",a@x.io\n")]).load();
    assert_eq!(e.unattributed, vec![RowRef { file: e.inputs[0].path.as_str().into(), line: 2 }]);
}

#[test]
fn inputs_are_hashed_and_counted() {
    let e = Files::new(&[("c.csv", b"email\na@x.io\nb@x.io\n")]).load();
    assert_eq!(e.inputs[0].rows, 2);
    assert_eq!(
        e.inputs[0].sha256, "ee90e3e78f191628a2ecbf755c4ee4cc0dcfb364f13cd6d11c01c6d0dcf3f3d2",
        "sha256 of the bytes as read"
    );
}

/// The bad row starts on physical line 6 whatever the line endings: after a blank line
/// and an address quoted over two lines.
#[test]
fn line_numbers_are_physical_lines_in_lf_crlf_and_cr_files() {
    let lf = "email,name,address\na@x.io,A,\"1 Main St\nBoise\"\n\nb@x.io,B,x\nnope,C,y\nc@x.io,D,z\n";
    for (ending, eol) in [("LF", "\n"), ("CRLF", "\r\n"), ("CR", "\r")] {
        let text = lf.replace('\n', eol);
        let e = Files::new(&[("c.csv", text.as_bytes())]).load();
        let lines: Vec<u64> = e.rejects.iter().map(|r| r.line).collect();
        assert_eq!(lines, [6], "{ending}: {:?}", e.rejects);
        let c = e.customers.unwrap();
        assert_eq!(c.entries.len(), 3, "{ending}");
        assert_eq!(c.entries[&Email::parse("c@x.io").unwrap()].line, 7, "{ending}");
        assert_eq!(
            c.entries[&Email::parse("a@x.io").unwrap()].record.address(),
            Some(format!("1 Main St{eol}Boise").as_str()),
            "{ending}: a free-text field may span lines"
        );
    }
}

#[test]
fn a_last_row_without_a_line_break_may_be_truncated() {
    let e = Files::new(&[
        ("d.csv", b"identifier,type\nD1,t\nD2,t\n"),
        ("c.csv", b"email\na@x.io\nb@x.io\n"),
        ("o.csv", b"device_identifier,customer_email\nD1,a@x.io\nD2,b@x.i"),
    ])
    .load();
    assert_eq!(e.rejects.len(), 1, "{:?}", e.rejects);
    assert_eq!(e.rejects[0].line, 3);
    assert!(e.rejects[0].reason.contains("may be truncated"), "{}", e.rejects[0].reason);
    assert_eq!(e.unattributed.len(), 1, "a cut file withholds every removal");
}

#[test]
fn gzip_and_zstd_read_as_the_plain_file() {
    use std::io::Write;
    let plain: &[u8] = b"email,name\na@x.io,A\nb@x.io,B\n";
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(plain).unwrap();
    let gz = gz.finish().unwrap();
    let zst = ruzstd::encoding::compress_to_vec(plain, ruzstd::encoding::CompressionLevel::Fastest);
    for content in [gz, zst] {
        let e = Files::new(&[("c.csv", &content)]).load();
        assert!(e.rejects.is_empty(), "{:?}", e.rejects);
        assert_eq!(e.customers.unwrap().entries.len(), 2);
        assert_eq!(
            e.inputs[0].sha256,
            source::sha256_file(&Files::new(&[("x", &content)]).0.path().join("x")).unwrap()
        );
    }
}

/// The ownership rows no check can reject are looked up in batches, the others one at a time:
/// whatever the mix and wherever a batch ends, every row is read as it would be alone — in file
/// order, its customer named by the customers file's own key (the same allocation) exactly when
/// the cell is that key, and every row a check refuses rejected on its own line.
#[test]
fn ownership_rows_read_in_batches_are_read_as_one_at_a_time() {
    let mut next = crate::model::seeded(0x0b5e_55ed);
    let long = |i: u64| format!("a-long-customer-address-{i}@example.org");
    let long_device = |i: u64| format!("SERIAL-NUMBER-LONG-{i:08}");
    let mut customers = String::from("email\n");
    let mut devices = String::from("identifier,type\n");
    for i in 0..40 {
        customers.push_str(&format!("{}\nc{i}@x.io\n", long(i)));
        devices.push_str(&format!("{},t\nD{i},t\n", long_device(i)));
    }
    for seed in 0..20 {
        let mut own = String::from("device_identifier,customer_email\n");
        // (line, device, customer, named by the customers file's key), or a reject on the line.
        let mut want: Vec<(u64, String, String, bool)> = Vec::new();
        let mut refused = Vec::new();
        let rows = 20 + next() % 200 + seed;
        for line in 2..rows + 2 {
            let i = next() % 50;
            let device = match next() % 3 {
                0 => long_device(i),
                _ => format!("D{i}"),
            };
            let (cell, email, in_file, ok) = match next() % 8 {
                0 => (long(i).to_uppercase(), long(i), false, true),
                1 => (format!("  {}  ", long(i)), long(i), i < 40, true),
                2 => ("not-an-email".to_string(), String::new(), false, false),
                3 => (format!("new{i}@y.io"), format!("new{i}@y.io"), false, true),
                4 => (format!("c{i}@x.io"), format!("c{i}@x.io"), i < 40, true),
                _ => (long(i), long(i), i < 40, true),
            };
            let device_cell = if next().is_multiple_of(25) { String::new() } else { device.clone() };
            own.push_str(&format!("{device_cell},\"{cell}\"\n"));
            if ok && !device_cell.is_empty() {
                want.push((line, device, email, in_file));
            } else {
                refused.push(line);
            }
        }
        let files =
            Files::new(&[("c.csv", customers.as_bytes()), ("d.csv", devices.as_bytes()), ("o.csv", own.as_bytes())]);
        let e = read(&files.sources()).unwrap();
        let keys = &e.customers.as_ref().unwrap().entries;
        let device_keys = &e.devices.as_ref().unwrap().entries;
        let got: Vec<(u64, String, String, bool)> = e
            .ownership
            .as_ref()
            .unwrap()
            .rows
            .iter()
            .map(|r| {
                let shared = match &r.customer {
                    CustomerRef::InFile(k) => {
                        let (key, _) = keys.get_key_value(k.as_str()).expect("named by a key it has");
                        if key.as_str().len() > crate::model::INLINE_KEY_BYTES {
                            assert_eq!(
                                key.as_str().as_ptr(),
                                k.as_str().as_ptr(),
                                "line {}: a copy of the key",
                                r.line
                            );
                        }
                        true
                    }
                    _ => false,
                };
                if let Some((key, _)) = device_keys.get_key_value(r.device.as_str())
                    && key.as_str().len() > crate::model::INLINE_KEY_BYTES
                {
                    assert_eq!(
                        key.as_str().as_ptr(),
                        r.device.as_str().as_ptr(),
                        "line {}: a copy of the device",
                        r.line
                    );
                }
                (r.line, r.device.to_string(), r.customer.as_str().to_string(), shared)
            })
            .collect();
        assert_eq!(got, want, "seed {seed}");
        let lines: Vec<u64> = e.rejects.iter().map(|r| r.line).collect();
        assert_eq!(lines, refused, "seed {seed}");
    }
}
