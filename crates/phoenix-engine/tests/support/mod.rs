//! Shared helpers of the engine tests: a configuration built in memory, validated, prepared,
//! observed, planned and applied against the in-memory backend.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use phoenix_backend::{Backend, GuestId};
use phoenix_config::estate::Estate;
use phoenix_engine::customize::{Feature, FeatureLibrary, FeatureManifest, Job, customizations, prepare};
pub use phoenix_engine::health::AlwaysUp;
use phoenix_engine::observe::observe;
use phoenix_engine::retry::RetryPolicy;
use phoenix_engine::{ApplyOptions, ApplyReport, Engine, GuestOutcome, Reporter};
use phoenix_plan::{Desired, LifecycleState, Plan, Step, desired, guard_updates, plan};
use phoenix_testkit::memory::MemoryBackend;

/// A configuration directory on disk (application scripts are read from it).
pub struct Config {
    pub dir: tempfile::TempDir,
}

impl Config {
    /// Writes the hypervisor file (local backend, bridge 10.9.0.1/16) and the container file
    /// holding `containers` (a JSON object keyed by ID), plus scripts `name → content`.
    pub fn new(containers: &str, scripts: &[(&str, &str)]) -> Config {
        let dir = tempfile::tempdir().expect("tempdir");
        let hv = r#"{"backend": {"type": "lxc", "bridges": {"vmbr0": {"address": "10.9.0.1/16"}}, "storage": {"local": "/srv/local"}}}"#;
        std::fs::write(dir.path().join("phoenix_hypervisor_config.json"), hv).expect("write");
        std::fs::write(dir.path().join("phoenix_lxc_configs.json"), format!(r#"{{"lxc_configs": {containers}}}"#))
            .expect("write");
        for (name, content) in scripts {
            let p = dir.path().join(name);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, content).expect("write");
        }
        Config { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn estate(&self) -> Estate {
        let fs = phoenix_config::RealFilesystem;
        let (sources, early) = phoenix_config::load(self.path(), &fs);
        let v = phoenix_config::validate(&sources, early, &fs);
        v.estate.unwrap_or_else(|| panic!("invalid test configuration: {:#?}", v.reports))
    }
}

/// A container definition with the fields every test needs.
pub fn container(name: &str, ip: &str, extra: &str) -> String {
    format!(
        r#"{{"name": "{name}", "memory_mb": 1024, "cores": 1, "storage_pool": "local", "storage_size_gb": 10,
            "network_config": {{"name": "eth0", "bridge": "vmbr0", "ip": "{ip}", "gw": "10.9.0.1"}},
            "unprivileged": true {extra}}}"#
    )
}

/// The features the tests use: each a tiny script with its manifest.
pub fn library(versions: &BTreeMap<&str, &str>) -> FeatureLibrary {
    let names = ["base_setup", "docker", "nvidia", "vllm", "ollama"];
    FeatureLibrary::new(names.iter().map(|n| Feature {
        manifest: FeatureManifest {
            name: (*n).to_string(),
            description: String::new(),
            params: if *n == "vllm" { vec!["vllm_model".into(), "vllm_port".into()] } else { Vec::new() },
            ..FeatureManifest::default()
        },
        script: format!("#!/bin/sh\n# {n} {}\n", versions.get(n).copied().unwrap_or("v1")).into_bytes(),
    }))
}

/// Records what the engine reports, with times.
#[derive(Default)]
pub struct Recorder {
    pub events: Mutex<Vec<(Instant, GuestId, String)>>,
}

impl Reporter for Recorder {
    fn state(&self, guest: GuestId, state: LifecycleState, step: Option<&Step>) {
        let what = step.map_or_else(|| state.to_string(), |s| format!("{state}: {:?}", s.action));
        self.events.lock().expect("lock").push((Instant::now(), guest, what));
    }
    fn finished(&self, guest: GuestId, outcome: &GuestOutcome, _: Duration) {
        self.events.lock().expect("lock").push((Instant::now(), guest, format!("finished: {outcome:?}")));
    }
    fn note(&self, guest: GuestId, message: &str) {
        self.events.lock().expect("lock").push((Instant::now(), guest, format!("note: {message}")));
    }
}

/// Fast options for tests.
pub fn options() -> ApplyOptions {
    ApplyOptions {
        retry: RetryPolicy { attempts: 4, base: Duration::from_millis(1), max: Duration::from_millis(5) },
        health_interval_scale: 0.001,
        ..ApplyOptions::default()
    }
}

/// Everything needed for one run: the desired state, the prepared jobs, and how many update
/// snapshots stay (`behavior.update_snapshots_kept`).
pub struct Prepared {
    pub desired: Desired,
    pub jobs: BTreeMap<GuestId, Vec<Job>>,
    pub keep: u32,
}

pub fn prepare_run(config: &Config, library: &FeatureLibrary) -> Prepared {
    let estate = config.estate();
    let jobs = prepare(&estate, library, config.path()).expect("prepare");
    let desired = desired(&estate, &|g| customizations(&jobs, g));
    let keep = estate.hypervisor.behavior.as_ref().map_or(0, |b| b.update_snapshots_kept);
    Prepared { desired, jobs, keep }
}

/// The plan as `phoenix plan` makes it: updates of existing guests guarded by a snapshot where
/// the backend takes them.
pub fn make_plan(backend: &dyn Backend, p: &Prepared) -> Plan {
    let observed = observe(backend, &p.desired, 4).expect("observe");
    let mut plan = plan(&p.desired, &observed.observation, &observed.markers, &|f| backend.change_effect(f));
    guard_updates(&mut plan, &p.desired, backend.capabilities().snapshots, p.keep);
    plan
}

pub fn run_apply(
    backend: &dyn Backend,
    p: &Prepared,
    reporter: &dyn Reporter,
    opts: &ApplyOptions,
) -> (Plan, ApplyReport) {
    let plan = make_plan(backend, p);
    assert!(plan.issues.is_empty(), "{:#?}", plan.issues);
    let cancel = AtomicBool::new(false);
    let engine = Engine { backend, prober: &AlwaysUp, reporter, cancel: &cancel };
    let report = engine.apply(&p.desired, &plan, &p.jobs, opts);
    (plan, report)
}

pub fn mutating(backend: &MemoryBackend) -> Vec<String> {
    backend.mutating_calls().iter().map(|c| format!("{:?} {:?} {}", c.method, c.guest, c.detail)).collect()
}

pub fn ids(v: &[GuestId]) -> BTreeSet<GuestId> {
    v.iter().copied().collect()
}
