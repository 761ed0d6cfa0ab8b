//! Deterministic generator of day-1 and day-2 exports, for benchmarks and rehearsals.
//!
//! ```text
//! cargo run --release --example gen_exports -- --devices 1000000 --churn 0.01 --seed 1 --out bench-data/1m
//! ```
//!
//! Writes `OUT/day1/{customers,devices,ownership}.csv` and `OUT/day2/...` in the default column
//! names. About 0.6 customers per device, 5% of devices shared by two owners (so ≈1.05 ownership
//! rows per device), three device types with three properties. Day 2 applies `--churn` (a
//! fraction) to day 1: property edits, transfers, releases and new devices, each a quarter of the
//! churn or less; phone changes and new customers. Same arguments, same bytes.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// splitmix64: a fast, well-mixed hash of the seed and an index, so every row is independent.
fn mix(seed: u64, stream: u64, i: u64) -> u64 {
    let mut z = seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn unit(seed: u64, stream: u64, i: u64) -> f64 {
    (mix(seed, stream, i) >> 11) as f64 / (1u64 << 53) as f64
}

struct Args {
    devices: u64,
    churn: f64,
    seed: u64,
    out: PathBuf,
}

fn parse_args() -> Args {
    let mut a = Args { devices: 10_000, churn: 0.01, seed: 1, out: PathBuf::from("bench-data") };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--devices" => a.devices = val().parse().unwrap_or_else(|_| usage("--devices takes a whole number")),
            "--churn" => a.churn = val().parse().unwrap_or_else(|_| usage("--churn takes a fraction, e.g. 0.01")),
            "--seed" => a.seed = val().parse().unwrap_or_else(|_| usage("--seed takes a whole number")),
            "--out" => a.out = PathBuf::from(val()),
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    if !(0.0..=1.0).contains(&a.churn) {
        usage("--churn must be between 0 and 1");
    }
    a
}

fn usage(msg: &str) -> ! {
    if !msg.is_empty() {
        eprintln!("error: {msg}");
    }
    eprintln!("usage: gen_exports --devices N --churn F --seed S --out DIR");
    std::process::exit(if msg.is_empty() { 0 } else { 64 });
}

const TYPES: [&str; 3] = ["thermostat", "gateway", "smart-lock"];
const ROOMS: [&str; 8] = ["kitchen", "hallway", "garage", "office", "basement", "attic", "bedroom", "porch"];

/// Streams for `mix`, one per decision, so changing one decision does not move the others.
const S_OWNER: u64 = 1;
const S_SECOND: u64 = 2;
const S_PROPS: u64 = 3;
const S_CHURN: u64 = 4;
const S_CUST: u64 = 5;
const S_NEW_OWNER: u64 = 6;

struct World {
    a: Args,
    customers: u64,
}

impl World {
    fn owner(&self, i: u64) -> u64 {
        mix(self.a.seed, S_OWNER, i) % self.customers
    }
    fn second_owner(&self, i: u64) -> Option<u64> {
        (i % 20 == 7).then(|| mix(self.a.seed, S_SECOND, i) % self.customers)
    }
    /// Day-2 fate of an existing device: 0 same, 1 property edit, 2 transfer, 3 released.
    fn fate(&self, i: u64) -> u8 {
        let r = unit(self.a.seed, S_CHURN, i);
        let f = self.a.churn;
        if r < f / 4.0 {
            1
        } else if r < f / 2.0 {
            2
        } else if r < f / 2.0 + f / 20.0 {
            3
        } else {
            0
        }
    }
    fn new_devices(&self) -> u64 {
        (self.a.devices as f64 * self.a.churn / 4.0).round() as u64
    }
    fn new_customers(&self) -> u64 {
        (self.customers as f64 * self.a.churn / 4.0).round() as u64
    }
}

fn create(path: &Path) -> BufWriter<File> {
    BufWriter::with_capacity(1 << 20, File::create(path).unwrap_or_else(|e| usage(&format!("{}: {e}", path.display()))))
}

fn write_day(w: &World, dir: &Path, day2: bool) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    let seed = w.a.seed;
    let mut c = create(&dir.join("customers.csv"));
    writeln!(c, "email,name,phone,address,customer_id")?;
    let total_customers = w.customers + if day2 { w.new_customers() } else { 0 };
    for j in 0..total_customers {
        let h = mix(seed, S_CUST, j);
        let phone_bump = u64::from(day2 && unit(seed, S_CUST + 100, j) < w.a.churn / 2.0);
        writeln!(
            c,
            "user{j}@example.com,User {j},+1 555 {:04} {:04},\"{} Main St, Springfield\",C{j}",
            h % 10_000,
            (h >> 16) % 10_000 + phone_bump,
            (h >> 32) % 9_999 + 1,
        )?;
    }
    c.flush()?;

    let mut d = create(&dir.join("devices.csv"));
    let mut o = create(&dir.join("ownership.csv"));
    writeln!(d, "identifier,type,firmware,location,hw_rev")?;
    writeln!(o, "device_identifier,customer_email")?;
    let total_devices = w.a.devices + if day2 { w.new_devices() } else { 0 };
    for i in 0..total_devices {
        let is_new = i >= w.a.devices;
        let fate = if day2 && !is_new { w.fate(i) } else { 0 };
        let h = mix(seed, S_PROPS, i);
        let fw_minor = (h % 5) + u64::from(fate == 1);
        writeln!(
            d,
            "SN{i:09},{},{}.{fw_minor}.0,{},r{}",
            TYPES[(i % 3) as usize],
            (h >> 8) % 4 + 1,
            ROOMS[((h >> 16) % 8) as usize],
            (h >> 24) % 3
        )?;
        if fate == 3 {
            continue;
        }
        let owner = if is_new {
            // Half the new devices go to new customers, half to existing ones.
            let k = mix(seed, S_NEW_OWNER, i);
            if k.is_multiple_of(2) && w.new_customers() > 0 {
                w.customers + (k >> 1) % w.new_customers()
            } else {
                (k >> 1) % w.customers
            }
        } else if fate == 2 {
            (w.owner(i) + 1 + mix(seed, S_NEW_OWNER, i) % (w.customers - 1).max(1)) % w.customers
        } else {
            w.owner(i)
        };
        writeln!(o, "SN{i:09},user{owner}@example.com")?;
        if let Some(second) = w.second_owner(i).filter(|s| *s != owner && !is_new) {
            writeln!(o, "SN{i:09},user{second}@example.com")?;
        }
    }
    d.flush()?;
    o.flush()
}

fn main() {
    let a = parse_args();
    let customers = ((a.devices as f64) * 0.6).round().max(1.0) as u64;
    let out = a.out.clone();
    let w = World { a, customers };
    let started = std::time::Instant::now();
    for (day, dir) in [(false, out.join("day1")), (true, out.join("day2"))] {
        if let Err(e) = write_day(&w, &dir, day) {
            eprintln!("error: writing {}: {e}", dir.display());
            std::process::exit(1);
        }
    }
    eprintln!(
        "wrote {} ({} devices, {} customers, churn {}) in {:.1}s",
        out.display(),
        w.a.devices,
        w.customers,
        w.a.churn,
        started.elapsed().as_secs_f64()
    );
}
