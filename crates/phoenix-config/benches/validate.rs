//! Benchmark: validating a configuration of 1,000 guests (parse, schema check, typed model,
//! semantic checks, cycle search, placing diagnostics). Prints figures; never fails on time.
//!
//! `cargo bench -p phoenix-config --bench validate [-- GUESTS ITERATIONS]`

#![allow(clippy::print_stdout)] // A benchmark prints its figures.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use phoenix_config::{Filesystem, load, validate};

struct MemFs(BTreeMap<PathBuf, String>);

impl Filesystem for MemFs {
    fn read_to_string(&self, path: &Path) -> io::Result<String> {
        self.0.get(path).cloned().ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
    fn is_file(&self, path: &Path) -> bool {
        self.0.contains_key(path)
    }
    fn is_dir(&self, path: &Path) -> bool {
        path == Path::new("/cfg")
    }
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let guests = args.first().copied().unwrap_or(1000);
    let iterations = args.get(1).copied().unwrap_or(50);
    let files = phoenix_testkit::synthetic_estate(guests);
    let bytes: usize = files.iter().map(|(_, t)| t.len()).sum();
    let fs = MemFs(files.into_iter().map(|(name, text)| (Path::new("/cfg").join(name), text)).collect());

    // The first run also builds the schemas, once per process.
    let start = Instant::now();
    let (sources, early) = load(Path::new("/cfg"), &fs);
    let first = validate(&sources, early, &fs);
    let first_time = start.elapsed();
    assert_eq!(first.errors(), 0, "the synthetic configuration must be valid: {:#?}", first.reports.first());

    let mut times: Vec<Duration> = (0..iterations)
        .map(|_| {
            let start = Instant::now();
            let (sources, early) = load(Path::new("/cfg"), &fs);
            let v = validate(&sources, early, &fs);
            std::hint::black_box(&v);
            start.elapsed()
        })
        .collect();
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mean = times.iter().map(|d| ms(*d)).sum::<f64>() / times.len() as f64;
    println!("validate: {guests} guests, {:.1} KiB of JSON, {iterations} runs", bytes as f64 / 1024.0);
    println!("  first run (builds schemas): {:.2} ms", ms(first_time));
    println!(
        "  min {:.2} ms  median {:.2} ms  mean {:.2} ms  max {:.2} ms",
        ms(times[0]),
        ms(times[times.len() / 2]),
        mean,
        ms(times[times.len() - 1])
    );
}
