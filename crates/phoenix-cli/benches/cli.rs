//! Benchmark of the real `phoenix` binary on a synthetic estate (the one the `validate` and
//! `engine` benches use): the wall time of `phoenix validate` and of `phoenix plan` against a
//! local LXC backend with nothing created yet (an empty LXC path), each run whole, process start
//! and printing included. Prints figures; never fails on time. `plan` needs the `lxc` tools and a
//! bridge on this machine (the first one found stands for the estate's); without them only
//! `validate` is timed.
//!
//! `cargo bench -p phoenix-cli --bench cli [-- GUESTS RUNS]`; with `PHOENIX_BENCH_DIR=<dir>` the
//! estate is written there and kept, to profile one command on it.

#![allow(clippy::print_stdout)] // A benchmark prints its figures.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let guests = args.first().copied().unwrap_or(1000);
    let runs = args.get(1).copied().unwrap_or(21);
    let temporary = tempfile::tempdir().expect("tmp");
    let kept = std::env::var_os("PHOENIX_BENCH_DIR").map(std::path::PathBuf::from);
    let dir = kept.as_deref().unwrap_or(temporary.path());
    let lxc_path = dir.join("lxc");
    std::fs::create_dir_all(&lxc_path).expect("mkdir");
    let bridge = first_bridge();
    for (name, text) in phoenix_testkit::synthetic_estate(guests) {
        // Containers go to an empty LXC path and storages of the benchmark's own, on a bridge that
        // exists.
        let mut text =
            text.replacen("\"type\": \"lxc\",", &format!("\"type\": \"lxc\", \"lxc_path\": {lxc_path:?},"), 1);
        let storage = dir.join("storage");
        text = text.replace("/var/lib/phoenix/storage", storage.to_str().expect("utf-8"));
        if let Some(b) = &bridge {
            text = text.replace("\"phxbr0\"", &format!("{b:?}"));
        }
        std::fs::write(dir.join(name), text).expect("write");
    }
    // The OS template the estate names: only its existence is checked by a plan.
    let cache = dir.join("storage/local/template/cache");
    std::fs::create_dir_all(&cache).expect("mkdir");
    std::fs::write(cache.join("debian-12-standard_12.7-1_amd64.tar.zst"), b"").expect("write");
    let has_lxc = Path::new("/usr/bin/lxc-ls").exists() && bridge.is_some();
    println!("phoenix binary, {guests} guests, {runs} runs each (wall time, process start and output included)");
    for (what, args) in [("validate", vec!["validate"]), ("plan", vec!["plan", "--no-progress"])] {
        if what == "plan" && !has_lxc {
            println!("  plan: skipped, the lxc tools are not installed or this machine has no bridge");
            continue;
        }
        let mut times: Vec<Duration> = (0..runs).map(|_| time(dir, &args)).collect();
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "  {what:<8} min {:.1} ms  median {:.1} ms  max {:.1} ms",
            ms(times[0]),
            ms(times[times.len() / 2]),
            ms(times[times.len() - 1])
        );
    }
}

/// One run of the binary on the configuration directory; it must succeed.
fn time(config_dir: &Path, args: &[&str]) -> Duration {
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_phoenix"))
        .arg("-c")
        .arg(config_dir)
        .args(["--color", "never", "--lock-dir"])
        .arg(config_dir.join("locks"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run phoenix");
    let took = start.elapsed();
    assert!(out.status.success(), "phoenix {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    took
}

/// The name of a bridge on this machine.
fn first_bridge() -> Option<String> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.path().join("bridge").is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names.into_iter().next()
}
