//! Benchmarks of the engine, printing figures (they never fail on time):
//! - planning 1,000 guests, against an empty backend and against one where everything exists;
//! - applying a 200-guest graph against the in-memory backend with a fixed latency per call,
//!   against the lower bound: the longest chain of work along clone and dependency edges, the
//!   total work divided by the job limit, and the clones of one template made one at a time
//!   once the template is done.
//!
//! `cargo bench -p phoenix-engine --bench engine [-- LATENCY_MS JOBS]`

#![allow(clippy::print_stdout)] // A benchmark prints its figures.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use phoenix_backend::{Backend, GuestId};
use phoenix_engine::customize::{Feature, FeatureLibrary, FeatureManifest};
use phoenix_engine::health::AlwaysUp;
use phoenix_engine::planner::{Planner, Validated};
use phoenix_engine::retry::RetryPolicy;
use phoenix_engine::{ApplyOptions, Engine, Silent};
use phoenix_plan::plan;
use phoenix_testkit::memory::MemoryBackend;

fn library() -> FeatureLibrary {
    FeatureLibrary::new(["base_setup", "ollama"].map(|n| Feature {
        manifest: FeatureManifest { name: n.into(), ..FeatureManifest::default() },
        script: format!("#!/bin/sh\n# {n}\n").into_bytes(),
    }))
}

fn load(dir: &Path, files: &[(&str, String)], lib: &FeatureLibrary) -> Planner {
    for (name, text) in files {
        std::fs::write(dir.join(name), text).expect("write");
    }
    let validated = Validated::read(dir, &dir.join("features"));
    if let Err(e) = validated.estate() {
        panic!("{e}: {:#?}", validated.validation.reports.first());
    }
    validated.prepare(lib, &[]).expect("prepare")
}

fn options(jobs: usize) -> ApplyOptions {
    ApplyOptions {
        jobs,
        per_node: jobs,
        retry: RetryPolicy { attempts: 3, base: Duration::from_millis(1), max: Duration::from_millis(2) },
        ..ApplyOptions::default()
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn bench_plan(lib: &FeatureLibrary) {
    let dir = tempfile::tempdir().expect("tmp");
    let mut planner = load(dir.path(), &phoenix_testkit::synthetic_estate(1000), lib);
    let backend = MemoryBackend::new();
    let empty = planner.observe(&backend).expect("observe");
    let d = planner.desired();
    let times: Vec<Duration> = (0..20)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(plan(d, &empty.observation, &empty.markers, &|f| backend.change_effect(f)));
            t.elapsed()
        })
        .collect();
    println!("plan 1000 guests, nothing exists:      median {:.2} ms", median(times).as_secs_f64() * 1e3);
    let cancel = AtomicBool::new(false);
    let engine = Engine { backend: &backend, prober: &AlwaysUp, reporter: &Silent, cancel: &cancel };
    let first = planner.plan(&backend, &AlwaysUp).expect("observe").plan;
    engine.apply(planner.desired(), &first, planner.jobs(), &options(8));
    let full = planner.observe(&backend).expect("observe");
    let d = planner.desired();
    let times: Vec<Duration> = (0..20)
        .map(|_| {
            let t = Instant::now();
            let p = plan(d, &full.observation, &full.markers, &|f| backend.change_effect(f));
            assert!(p.is_empty());
            std::hint::black_box(p);
            t.elapsed()
        })
        .collect();
    println!("plan 1000 guests, everything in place: median {:.2} ms (empty plan)", median(times).as_secs_f64() * 1e3);
}

/// 200 guests: a base template, three templates cloned from it, and 196 guests cloned from those
/// in layers of 20, each depending on one guest of the layer before.
fn graph_200() -> Vec<(&'static str, String)> {
    let hv = r#"{"backend": {"type": "lxc", "bridges": {"vmbr0": {"address": "10.100.0.1/16"}}, "storage": {"local": "/srv/local"}}}"#.to_string();
    let mut entries = Vec::new();
    for i in 0..200usize {
        let mut extra = String::new();
        if i == 0 {
            extra.push_str(r#", "template": "local:vztmpl/debian.tar.zst", "template_snapshot_name": "base", "features": ["base_setup"]"#);
        } else if i <= 3 {
            extra.push_str(&format!(
                r#", "clone_from_ctid": "1000", "template_snapshot_name": "t{i}", "features": ["ollama"]"#
            ));
        } else {
            extra.push_str(&format!(r#", "clone_from_ctid": "{}""#, 1000 + 1 + i % 3));
            if i >= 24 {
                extra.push_str(&format!(r#", "dependencies": ["{}"]"#, 1000 + i - 20));
            }
        }
        entries.push(format!(
            r#""{}": {{"name": "g{i}", "memory_mb": 1024, "cores": 1, "storage_pool": "local", "storage_size_gb": 10,
                "network_config": {{"name": "eth0", "bridge": "vmbr0", "ip": "10.100.{}.{}/16", "gw": "10.100.0.1"}},
                "unprivileged": true, "health_check": {{"tcp": {{"port": 22}}}} {extra}}}"#,
            1000 + i,
            1 + i / 250,
            1 + i % 250
        ));
    }
    vec![
        ("phoenix_hypervisor_config.json", hv),
        ("phoenix_lxc_configs.json", format!("{{\"lxc_configs\": {{{}}}}}", entries.join(",\n"))),
    ]
}

fn bench_apply(lib: &FeatureLibrary, latency: Duration, jobs: usize) {
    let dir = tempfile::tempdir().expect("tmp");
    let mut planner = load(dir.path(), &graph_200(), lib);
    let backend = MemoryBackend::new().with_latency(latency);
    let p = planner.plan(&backend, &AlwaysUp).expect("observe").plan;
    let d = planner.desired();
    backend.clear_calls();
    let cancel = AtomicBool::new(false);
    let engine = Engine { backend: &backend, prober: &AlwaysUp, reporter: &Silent, cancel: &cancel };
    let t = Instant::now();
    let report = engine.apply(d, &p, planner.jobs(), &options(jobs));
    let took = t.elapsed();
    assert!(!report.failed(), "{report:#?}");

    // Work per guest: its calls, one after another.
    let calls = backend.calls();
    let mut work: BTreeMap<GuestId, Duration> = BTreeMap::new();
    let mut creates: BTreeMap<GuestId, u32> = BTreeMap::new();
    for c in &calls {
        if let Some(id) = c.guest {
            *work.entry(id).or_default() += latency;
        }
    }
    for g in d.guests.values() {
        if let phoenix_backend::CreateSource::Clone { source, .. } = g.source {
            *creates.entry(source).or_default() += 1;
        }
    }
    let mut finish: BTreeMap<GuestId, Duration> = BTreeMap::new();
    for id in &d.order {
        let start = d.guests[id].needs.iter().map(|n| finish[n]).max().unwrap_or_default();
        finish.insert(*id, start + work.get(id).copied().unwrap_or_default());
    }
    let chain = finish.values().max().copied().unwrap_or_default();
    // Clones of one template are created one at a time, only once the template is done, and the
    // last one created still has to start.
    let clones = creates.iter().map(|(src, n)| finish[src] + latency * (*n + 1)).max().unwrap_or_default();
    let total: Duration = work.values().sum();
    let by_jobs = total / jobs as u32;
    let bound = chain.max(by_jobs).max(clones);
    println!(
        "apply 200 guests, {} calls, {:?} per call, --jobs {jobs}: {:.3} s; lower bound {:.3} s (longest chain {:.3} s, work/jobs {:.3} s, clones of one template, after it {:.3} s); {:.1} % above the bound",
        calls.len(),
        latency,
        took.as_secs_f64(),
        bound.as_secs_f64(),
        chain.as_secs_f64(),
        by_jobs.as_secs_f64(),
        clones.as_secs_f64(),
        (took.as_secs_f64() / bound.as_secs_f64() - 1.0) * 100.0
    );
}

fn main() {
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let latency = Duration::from_millis(args.first().copied().unwrap_or(5));
    let jobs = args.get(1).copied().unwrap_or(8) as usize;
    let lib = library();
    bench_plan(&lib);
    bench_apply(&lib, latency, jobs);
}
