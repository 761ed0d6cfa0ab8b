//! Inputs read once, from anything: pipes, FIFOs, standard input and compressed files give
//! the plan the plain file gives (issue 10, case 6: a second open of a pipe lost its first
//! 64 KiB and planned 1,972 of 5,000 assignments for removal).

use std::io::Write;
use std::process::Stdio;

use crate::util::Workdir;

/// 5,000 devices over 700 customers: an ownership file of ~170 KiB, past any read buffer.
fn org(w: &Workdir) -> Vec<u8> {
    let mut c = String::from("email,name\n");
    for i in 0..700 {
        c += &format!("customer.number{i}@example-{}.com,Customer {i}\n", i % 13);
    }
    let mut d = String::from("identifier,type\n");
    let mut o = String::from("device_identifier,customer_email\n");
    for i in 0..5000u64 {
        let ident = format!("SN-{:08X}", i.wrapping_mul(2_654_435_761) % 0xFFFF_FFFF);
        d += &format!("{ident},sensor\n");
        o += &format!("{ident},customer.number{}@example-{}.com\n", i % 700, (i % 700) % 13);
    }
    w.write("customers.csv", &c).write("devices.csv", &d).write("ownership.csv", &o);
    o.into_bytes()
}

fn plan(w: &Workdir, ownership: &str, stdin: Option<&[u8]>) -> String {
    let mut cmd = w.command(&[
        "plan",
        "--customers",
        "customers.csv",
        "--devices",
        "devices.csv",
        "--ownership",
        ownership,
        "--state",
        "state.db",
        "--format",
        "json",
    ]);
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(bytes) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        let bytes = bytes.to_vec();
        std::thread::spawn(move || pipe.write_all(&bytes));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{ownership}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn pipes_fifos_stdin_and_compressed_files_give_the_plain_files_plan() {
    let w = Workdir::new();
    let own = org(&w);
    assert!(own.len() > 128 * 1024);
    let plain = plan(&w, "ownership.csv", None);
    let v: serde_json::Value = serde_json::from_str(&plain).unwrap();
    assert_eq!(v["summary"]["assignments_to_add"], 5000);
    assert_eq!(v["summary"]["rejected_rows"], 0);

    assert_eq!(plan(&w, "-", Some(&own)), plain, "--ownership - (standard input)");
    assert_eq!(plan(&w, "/dev/stdin", Some(&own)), plain, "--ownership /dev/stdin");

    let fifo = w.join("ownership.fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let writer = {
        let (fifo, own) = (fifo.clone(), own.clone());
        std::thread::spawn(move || std::fs::OpenOptions::new().write(true).open(fifo).unwrap().write_all(&own))
    };
    assert_eq!(plan(&w, "ownership.fifo", None), plain, "a FIFO, as <(zcat ownership.csv.gz) gives");
    writer.join().unwrap().unwrap();

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&own).unwrap();
    w.write("ownership.csv.gz", gz.finish().unwrap());
    assert_eq!(plan(&w, "ownership.csv.gz", None), plain, ".csv.gz");
    w.write(
        "ownership.csv.zst",
        ruzstd::encoding::compress_to_vec(&own[..], ruzstd::encoding::CompressionLevel::Fastest),
    );
    assert_eq!(plan(&w, "ownership.csv.zst", None), plain, ".csv.zst");
    // Compressed, but named as plain: told by its first bytes.
    w.write("renamed.csv", std::fs::read(w.join("ownership.csv.gz")).unwrap());
    assert_eq!(plan(&w, "renamed.csv", None), plain, "gzip named .csv");
}

#[test]
fn a_file_named_gz_that_is_not_gzip_is_refused() {
    let w = Workdir::new();
    org(&w);
    std::fs::copy(w.join("ownership.csv"), w.join("ownership.csv.gz")).unwrap();
    let run = w.run(&["plan", "--ownership", "ownership.csv.gz", "--state", "state.db"]).expect(1);
    assert!(run.stderr.contains("does not start like a gzip stream"), "{}", run.stderr);
}
