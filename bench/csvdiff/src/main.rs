//! Times the csv-diff crate on one pair of exports: `csvdiff-bench LEFT RIGHT KEYCOLS`, where
//! KEYCOLS is a comma-separated list of 0-based key columns (customers and devices: 0; ownership:
//! 0,1). Prints the number of differences and the wall time in seconds.

use std::fs::File;
use std::time::Instant;

use csv_diff::csv::Csv;
use csv_diff::csv_diff::CsvByteDiffLocalBuilder;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: csvdiff-bench LEFT.csv RIGHT.csv KEYCOLS");
        std::process::exit(64);
    }
    let keys: Vec<usize> = args[3].split(',').map(|k| k.trim().parse().expect("a column number")).collect();
    let started = Instant::now();
    let diff = CsvByteDiffLocalBuilder::new().primary_key_columns(keys).build().expect("csv-diff set-up");
    let left = File::open(&args[1]).expect("open LEFT");
    let right = File::open(&args[2]).expect("open RIGHT");
    let result = diff.diff(Csv::with_reader_seek(left), Csv::with_reader_seek(right)).expect("diff");
    let n = result.as_slice().len();
    println!("{n} {:.3}", started.elapsed().as_secs_f64());
}
