//! Deterministic generator of day-1 and day-2 exports, for benchmarks and rehearsals.
//!
//! ```text
//! cargo run --release --example gen_exports -- --devices 1000000 --churn 0.01 --seed 1 --out bench-data/1m
//! ```
//!
//! Writes `OUT/day1/{customers,devices,ownership}.csv` and `OUT/day2/...` in the default column
//! names. About 0.6 customers per device, 5% of devices shared by two owners (so ≈1.05 ownership
//! rows per device). Day 2 applies `--churn` (a fraction) to day 1: property edits, transfers,
//! releases and new devices, each a quarter of the churn or less; phone changes and new
//! customers; with the realistic shape also property removals. Same arguments, same bytes.
//!
//! `--shape realistic` (the default) looks like real exports: emails of mixed shapes and lengths
//! (most 20–45 bytes) over many domains, some with `+tags`, dots and digits; identifiers that are
//! serials, MAC addresses, UUIDs or prefixed numbers, in no order; names in many scripts;
//! addresses with commas and quotes; six property columns of varied lengths, three to six of them
//! set; customers in an order unrelated to the devices. `--shuffle-ownership` writes the
//! ownership file in another order than the devices file. `--shape simple` is the earlier shape
//! (`user{j}@example.com`, `SN000000001` ascending, ASCII), kept so that old figures compare.

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
    realistic: bool,
    shuffle_ownership: bool,
}

fn parse_args() -> Args {
    let mut a = Args {
        devices: 10_000,
        churn: 0.01,
        seed: 1,
        out: PathBuf::from("bench-data"),
        realistic: true,
        shuffle_ownership: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--devices" => a.devices = val().parse().unwrap_or_else(|_| usage("--devices takes a whole number")),
            "--churn" => a.churn = val().parse().unwrap_or_else(|_| usage("--churn takes a fraction, e.g. 0.01")),
            "--seed" => a.seed = val().parse().unwrap_or_else(|_| usage("--seed takes a whole number")),
            "--out" => a.out = PathBuf::from(val()),
            "--shape" => {
                a.realistic = match val().as_str() {
                    "realistic" => true,
                    "simple" => false,
                    _ => usage("--shape is realistic or simple"),
                }
            }
            "--shuffle-ownership" => a.shuffle_ownership = true,
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    if !(0.0..=1.0).contains(&a.churn) {
        usage("--churn must be between 0 and 1");
    }
    a
}

const HELP: &str = "Writes deterministic day-1 and day-2 exports (customers.csv, devices.csv, ownership.csv in
the default column names) to OUT/day1 and OUT/day2, for benchmarks and rehearsals. The same
arguments always write the same bytes.

Usage: gen_exports [--devices N] [--churn F] [--seed S] [--out DIR] [--shape realistic|simple] [--shuffle-ownership]

Options:
  --devices N           Devices on day 1 [default: 10000]. About 0.6 customers per device;
                        5% of devices are shared by two owners (≈1.05 ownership rows each).
  --churn F             The fraction of day 1 that day 2 changes, 0 to 1 [default: 0.01]:
                        property edits, transfers, releases and new devices (each a quarter of
                        it or less), phone changes and new customers; with the realistic shape
                        also property removals.
  --seed S              The seed every row is drawn from [default: 1].
  --out DIR             Where day1/ and day2/ go [default: bench-data].
  --shape realistic     Like real exports (the default): emails of mixed shapes and lengths
                        over many domains, identifiers of several kinds in no order, names in
                        many scripts, addresses with commas and quotes, six property columns.
  --shape simple        The earlier shape (user{j}@example.com, SN000000001 ascending, ASCII),
                        kept so that old figures compare.
  --shuffle-ownership   Write the ownership file in another order than the devices file.
  -h, --help            Print this help.";

fn usage(msg: &str) -> ! {
    if msg.is_empty() {
        println!("{HELP}");
        std::process::exit(0);
    }
    eprintln!(
        "error: {msg}\n\nUsage: gen_exports [--devices N] [--churn F] [--seed S] [--out DIR] [--shape realistic|simple] [--shuffle-ownership]\n(--help for what each does)"
    );
    std::process::exit(64);
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
    /// Device `i`'s owner on its day: a new device goes half to new customers, half to existing
    /// ones; a transferred one (fate 2) to another customer.
    fn day_owner(&self, i: u64, is_new: bool, fate: u8) -> u64 {
        let seed = self.a.seed;
        if is_new {
            let k = mix(seed, S_NEW_OWNER, i);
            if k.is_multiple_of(2) && self.new_customers() > 0 {
                self.customers + (k >> 1) % self.new_customers()
            } else {
                (k >> 1) % self.customers
            }
        } else if fate == 2 {
            (self.owner(i) + 1 + mix(seed, S_NEW_OWNER, i) % (self.customers - 1).max(1)) % self.customers
        } else {
            self.owner(i)
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
        let owner = w.day_owner(i, is_new, fate);
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
        let written = if w.a.realistic { realistic::write_day(&w, &dir, day) } else { write_day(&w, &dir, day) };
        if let Err(e) = written {
            eprintln!("error: writing {}: {e}", dir.display());
            std::process::exit(1);
        }
    }
    eprintln!(
        "wrote {} ({} shape, {} devices, {} customers, churn {}) in {:.1}s",
        out.display(),
        if w.a.realistic { "realistic" } else { "simple" },
        w.a.devices,
        w.customers,
        w.a.churn,
        started.elapsed().as_secs_f64()
    );
}

/// The realistic shape.
mod realistic {
    use super::*;

    const FIRST: [&str; 40] = [
        "maria",
        "josé",
        "zoë",
        "łukasz",
        "søren",
        "françois",
        "mohammed",
        "aiko",
        "олег",
        "мария",
        "李伟",
        "王芳",
        "nguyễn",
        "ömer",
        "chloé",
        "björn",
        "priya",
        "arjun",
        "fatima",
        "yusuf",
        "siobhán",
        "íñigo",
        "ana",
        "james",
        "mary",
        "robert",
        "linda",
        "michael",
        "wei",
        "hiroshi",
        "sofía",
        "mateo",
        "ελένη",
        "γιώργος",
        "אבי",
        "noa",
        "kwame",
        "amara",
        "lars",
        "ingrid",
    ];
    const LAST: [&str; 40] = [
        "garcía",
        "müller",
        "nowak",
        "jensen",
        "dubois",
        "al-sayed",
        "tanaka",
        "иванов",
        "петрова",
        "张",
        "李",
        "trần",
        "yılmaz",
        "lefèvre",
        "andersson",
        "sharma",
        "patel",
        "haddad",
        "kaya",
        "o'brien",
        "etxeberria",
        "silva",
        "smith",
        "johnson",
        "williams",
        "brown",
        "chen",
        "sato",
        "rodríguez",
        "fernández",
        "papadopoulos",
        "cohen",
        "mensah",
        "okafor",
        "nilsen",
        "berg",
        "de la cruz",
        "van der berg",
        "mcdonald",
        "kowalczyk",
    ];
    /// ASCII spellings for the email local part (emails are ASCII here, as most are).
    const FIRST_ASCII: [&str; 40] = [
        "maria", "jose", "zoe", "lukasz", "soren", "francois", "mohammed", "aiko", "oleg", "mariya", "liwei",
        "wangfang", "nguyen", "omer", "chloe", "bjorn", "priya", "arjun", "fatima", "yusuf", "siobhan", "inigo", "ana",
        "james", "mary", "robert", "linda", "michael", "wei", "hiroshi", "sofia", "mateo", "eleni", "giorgos", "avi",
        "noa", "kwame", "amara", "lars", "ingrid",
    ];
    const LAST_ASCII: [&str; 40] = [
        "garcia",
        "mueller",
        "nowak",
        "jensen",
        "dubois",
        "al-sayed",
        "tanaka",
        "ivanov",
        "petrova",
        "zhang",
        "li",
        "tran",
        "yilmaz",
        "lefevre",
        "andersson",
        "sharma",
        "patel",
        "haddad",
        "kaya",
        "obrien",
        "etxeberria",
        "silva",
        "smith",
        "johnson",
        "williams",
        "brown",
        "chen",
        "sato",
        "rodriguez",
        "fernandez",
        "papadopoulos",
        "cohen",
        "mensah",
        "okafor",
        "nilsen",
        "berg",
        "delacruz",
        "vanderberg",
        "mcdonald",
        "kowalczyk",
    ];
    const DOMAINS: [&str; 24] = [
        "gmail.com",
        "outlook.com",
        "yahoo.co.uk",
        "hotmail.fr",
        "web.de",
        "gmx.net",
        "icloud.com",
        "proton.me",
        "mail.ru",
        "qq.com",
        "naver.com",
        "t-online.de",
        "orange.fr",
        "libero.it",
        "telenet.be",
        "ziggo.nl",
        "acme-industrial.com",
        "northwind-traders.co.uk",
        "contoso-facilities.de",
        "fabrikam.example.org",
        "müller-haustechnik.de",
        "city-of-springfield.gov",
        "uni-heidelberg.de",
        "kommune.no",
    ];
    const STREETS: [&str; 12] = [
        "Rue de l'Église",
        "Hauptstraße",
        "Calle Mayor",
        "ul. Marszałkowska",
        "Nørrebrogade",
        "Via Roma",
        "Baker Street",
        "Shinjuku-dori",
        "Улица Ленина",
        "Avenida Paulista",
        "Main St",
        "Boulevard Saint-Michel",
    ];
    const CITIES: [&str; 12] = [
        "75001 Paris",
        "10115 Berlin",
        "28013 Madrid",
        "00-001 Warszawa",
        "2200 København",
        "00184 Roma",
        "London NW1 6XE",
        "Tokyo 160-0022",
        "Москва 101000",
        "São Paulo 01310-100",
        "Springfield, IL 62701",
        "75005 Paris",
    ];
    const TAGS: [&str; 6] = ["support", "devices", "home", "iot", "billing", "2024"];
    const TYPES: [&str; 6] = ["thermostat", "gateway", "smart-lock", "heat-pump-controller", "leak-sensor", "camera"];
    const NOTES: [&str; 6] = [
        "installed by partner",
        "replaced unit, see ticket #4411",
        "customer says: \"works fine\"",
        "basement, behind the boiler; needs ladder",
        "firmware pinned, do not auto-update",
        "",
    ];

    /// An affine permutation of 0..n: the rows' order, unrelated to their index.
    fn permute(seed: u64, stream: u64, n: u64, k: u64) -> u64 {
        if n <= 1 {
            return k;
        }
        let mut a = (mix(seed, stream, 0) % n) | 1;
        while gcd(a, n) != 1 {
            a += 2;
        }
        let b = mix(seed, stream, 1) % n;
        ((a as u128 * k as u128 + b as u128) % n as u128) as u64
    }

    fn gcd(mut a: u64, mut b: u64) -> u64 {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    }

    pub(super) fn email(seed: u64, j: u64) -> String {
        let h = mix(seed, 20, j);
        let (f, l) = ((h % 40) as usize, ((h >> 8) % 40) as usize);
        let (first, last) = (FIRST_ASCII[f], LAST_ASCII[l]);
        let domain = DOMAINS[((h >> 16) % DOMAINS.len() as u64) as usize];
        let domain = if domain.is_ascii() { domain } else { "mueller-haustechnik.de" };
        // Every form ends its local part with j (before any +tag), so emails are unique.
        let local = match (h >> 24) % 6 {
            0 => format!("{first}.{last}{j}"),
            1 => format!("{}{last}{j}", &first[..1]),
            2 => format!("{first}_{last}.{j}"),
            3 => format!("{first}{j}+{}", TAGS[((h >> 32) % 6) as usize]),
            4 => format!("{last}.{first}.{j}"),
            _ => format!("{first}.{}.{last}{j}", &last[..1]),
        };
        format!("{local}@{domain}")
    }

    fn name(h: u64) -> String {
        format!("{} {}", title(FIRST[(h % 40) as usize]), title(LAST[((h >> 8) % 40) as usize]))
    }

    fn title(s: &str) -> String {
        let mut c = s.chars();
        c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
    }

    /// A CSV cell, quoted when it must be.
    fn cell(s: &str) -> String {
        if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
    }

    fn identifier(seed: u64, i: u64) -> String {
        let m = mix(seed, 21, i); // a bijection of i: unique
        match m % 5 {
            0 => format!("SN-{}", base32(m, 13)),
            1 => {
                // 48 bits from an affine bijection of i: unique MACs.
                let v = (i.wrapping_mul(0x0005_DEEC_E66D) ^ 0xA5A5_A5A5_A5A5) & 0xFFFF_FFFF_FFFF;
                let b = v.to_be_bytes();
                format!("{:02X}:{:02X}:{:02X}:{:02X}:{:02X}:{:02X}", b[2], b[3], b[4], b[5], b[6], b[7])
            }
            2 => {
                let n = mix(seed, 22, i);
                format!(
                    "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
                    m >> 32,
                    (m >> 16) & 0xFFFF,
                    n & 0xFFF,
                    0x8000 | ((n >> 12) & 0x3FFF),
                    (m & 0xFFFF) << 32 | (n >> 32)
                )
            }
            3 => format!("TH-{}-{i:08}", 2019 + (m >> 8) % 7),
            _ => base32(m, 10 + ((m >> 60) % 4) as usize),
        }
    }

    fn base32(mut v: u64, len: usize) -> String {
        const A: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
        let mut out = vec![b'0'; len];
        for slot in out.iter_mut().rev() {
            *slot = A[(v & 31) as usize];
            v >>= 5;
        }
        // 13 characters hold all 64 bits; shorter forms add the full value's hash to stay unique.
        if len < 13 {
            let mut s = String::from_utf8(out).unwrap_or_default();
            s.push_str(&format!("{:X}", v));
            return s;
        }
        String::from_utf8(out).unwrap_or_default()
    }

    /// Day-2 fate of an existing device: 0 same, 1 property edit, 2 transfer, 3 released,
    /// 4 a property removed.
    fn fate(w: &World, i: u64) -> u8 {
        let f = w.a.churn;
        let r = unit(w.a.seed, S_CHURN, i);
        match w.fate(i) {
            0 if r > 0.99 && unit(w.a.seed, 23, i) < f * 5.0 => 4,
            other => other,
        }
    }

    pub(super) fn write_day(w: &World, dir: &Path, day2: bool) -> std::io::Result<()> {
        fs::create_dir_all(dir)?;
        let seed = w.a.seed;
        let mut c = create(&dir.join("customers.csv"));
        writeln!(c, "email,name,phone,address,customer_id")?;
        let total_customers = w.customers + if day2 { w.new_customers() } else { 0 };
        for k in 0..total_customers {
            let j = permute(seed, 30, total_customers, k);
            let h = mix(seed, S_CUST, j);
            let phone_bump = u64::from(day2 && unit(seed, S_CUST + 100, j) < w.a.churn / 2.0);
            let phone = match h % 4 {
                0 => format!("+1 555 {:04} {:04}", h % 10_000, (h >> 16) % 10_000 + phone_bump),
                1 => format!("+49 30 {:08}", (h >> 16) % 100_000_000 + phone_bump),
                2 => format!("(0{:03}) {:06}", (h >> 8) % 1000, (h >> 24) % 1_000_000 + phone_bump),
                _ if phone_bump == 0 => String::new(),
                _ => format!("+33 6 {:08}", (h >> 20) % 100_000_000),
            };
            let address = match (h >> 40) % 5 {
                0 => format!(
                    "Flat {}, \"The Old Mill\", {} {}, {}",
                    (h >> 48) % 40 + 1,
                    (h >> 32) % 200 + 1,
                    STREETS[((h >> 36) % 12) as usize],
                    CITIES[((h >> 44) % 12) as usize]
                ),
                1 => String::new(),
                _ => format!(
                    "{} {}, {}",
                    (h >> 32) % 999 + 1,
                    STREETS[((h >> 36) % 12) as usize],
                    CITIES[((h >> 44) % 12) as usize]
                ),
            };
            writeln!(
                c,
                "{},{},{},{},CRM-{:06X}{j}",
                email(seed, j),
                cell(&name(mix(seed, 20, j))),
                cell(&phone),
                cell(&address),
                h & 0xFF_FFFF,
            )?;
        }
        c.flush()?;

        let total_devices = w.a.devices + if day2 { w.new_devices() } else { 0 };
        let mut d = create(&dir.join("devices.csv"));
        writeln!(d, "identifier,type,firmware,location,hw_rev,install_date,notes,region")?;
        for k in 0..total_devices {
            let i = permute(seed, 31, total_devices, k);
            let is_new = i >= w.a.devices;
            let fate = if day2 && !is_new { fate(w, i) } else { 0 };
            let h = mix(seed, S_PROPS, i);
            let fw = format!("{}.{}.{}", (h >> 8) % 4 + 1, (h % 5) + u64::from(fate == 1), (h >> 12) % 30);
            let location = if fate == 4 { String::new() } else { ROOMS[((h >> 16) % 8) as usize].to_string() };
            let notes = NOTES[((h >> 28) % 6) as usize];
            let region = ["eu-west", "us-east", "ap-south", ""][((h >> 32) % 4) as usize];
            writeln!(
                d,
                "{},{},{fw},{location},r{},{},{},{region}",
                identifier(seed, i),
                TYPES[((h >> 40) % 6) as usize],
                (h >> 24) % 3,
                if (h >> 36).is_multiple_of(3) {
                    String::new()
                } else {
                    format!("20{:02}-{:02}-{:02}", 18 + (h >> 44) % 8, (h >> 48) % 12 + 1, (h >> 52) % 28 + 1)
                },
                cell(notes),
            )?;
        }
        d.flush()?;

        let mut o = create(&dir.join("ownership.csv"));
        writeln!(o, "device_identifier,customer_email")?;
        // The devices file's order, or (shuffled) another.
        let stream = if w.a.shuffle_ownership { 32 } else { 31 };
        for k in 0..total_devices {
            let i = permute(seed, stream, total_devices, k);
            let is_new = i >= w.a.devices;
            let fate = if day2 && !is_new { w.fate(i) } else { 0 };
            if fate == 3 {
                continue;
            }
            let owner = w.day_owner(i, is_new, fate);
            let ident = identifier(seed, i);
            writeln!(o, "{ident},{}", email(seed, owner))?;
            if let Some(second) = w.second_owner(i).filter(|s| *s != owner && !is_new) {
                writeln!(o, "{ident},{}", email(seed, second))?;
            }
        }
        o.flush()
    }
}
