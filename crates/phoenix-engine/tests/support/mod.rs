//! Shared helpers of the engine tests: a configuration written to a directory, then validated,
//! prepared, observed and planned by the [`Planner`] as `phoenix plan` does, and applied against
//! the in-memory backend.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use phoenix_backend::{Backend, GuestId};
use phoenix_engine::customize::{Feature, FeatureLibrary, FeatureManifest};
pub use phoenix_engine::health::AlwaysUp;
use phoenix_engine::planner::{Planned, Planner, Validated};
use phoenix_engine::retry::RetryPolicy;
use phoenix_engine::{ApplyOptions, ApplyReport, Engine, GuestOutcome, Reporter};
use phoenix_plan::{LifecycleState, Plan, Step};
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

/// The planner of the configuration (validated against the built-in features), with features
/// from `library`.
pub fn prepare_run(config: &Config, library: &FeatureLibrary) -> Planner {
    let validated = Validated::read(config.path(), &config.path().join("features"));
    if let Err(e) = validated.estate() {
        panic!("invalid test configuration: {e}: {:#?}", validated.validation.reports);
    }
    validated.prepare(library, &[]).expect("prepare")
}

/// The plan as `phoenix plan` makes it, every service taken as healthy. Each plan starts from
/// the prepared configuration, as each run of `phoenix` does.
pub fn make_plan(backend: &dyn Backend, p: &Planner) -> Plan {
    p.clone().plan(backend, &AlwaysUp).expect("observe").plan
}

/// Plans as [`make_plan`] does and applies the plan, which must have no issue.
pub fn run_apply(
    backend: &dyn Backend,
    p: &Planner,
    reporter: &dyn Reporter,
    opts: &ApplyOptions,
) -> (Plan, ApplyReport) {
    let mut planner = p.clone();
    let Planned { plan, .. } = planner.plan(backend, &AlwaysUp).expect("observe");
    assert!(plan.issues.is_empty(), "{:#?}", plan.issues);
    let cancel = AtomicBool::new(false);
    let engine = Engine { backend, prober: &AlwaysUp, reporter, cancel: &cancel };
    let report = engine.apply(planner.desired(), &plan, planner.jobs(), opts);
    (plan, report)
}

pub fn mutating(backend: &MemoryBackend) -> Vec<String> {
    backend.mutating_calls().iter().map(|c| format!("{:?} {:?} {}", c.method, c.guest, c.detail)).collect()
}

pub fn ids(v: &[GuestId]) -> BTreeSet<GuestId> {
    v.iter().copied().collect()
}
