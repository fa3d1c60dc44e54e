//! Benchmark on real containers (root, the lxc tools, busybox-static and the bridge `phxtest0`
//! with 10.79.0.1/24): provisioning a template and 10 clones of it with `--jobs 1` and
//! `--jobs 4`, split into the time spent inside the host tools (`lxc-*`, `tar`, `cp`) and the
//! rest, the engine's own overhead. Prints figures; skips with the reason on a host without LXC.
//!
//! `cargo bench -p phoenix-lxc --bench provision`

#![allow(clippy::print_stdout)] // A benchmark prints its figures.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use phoenix_backend::Backend;
use phoenix_engine::customize::FeatureLibrary;
use phoenix_engine::health::NetProber;
use phoenix_engine::planner::{Planner, Validated};
use phoenix_engine::{ApplyOptions, Engine, Silent};
use phoenix_lxc::LxcBackend;

fn skip_reason() -> Option<String> {
    let uid = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    if uid != "0" {
        return Some("needs root".into());
    }
    if !Path::new("/sys/class/net/phxtest0/bridge").is_dir() {
        return Some("needs the bridge phxtest0 (scripts/lxc-host.sh phxtest0 10.79.0.1/24)".into());
    }
    if !Path::new("/bin/busybox").is_file() {
        return Some("needs busybox-static".into());
    }
    None
}

fn config(root: &Path, lxc: &str) -> Planner {
    let cfg = root.join(format!("config-{lxc}"));
    std::fs::create_dir_all(&cfg).expect("mkdir");
    let hv = format!(
        r#"{{"backend": {{"type": "lxc", "lxc_path": "{}", "bridges": {{"vmbr0": {{"host_bridge": "phxtest0", "address": "10.79.0.1/24"}}}}, "storage": {{"local": "{}"}}}}}}"#,
        root.join(lxc).display(),
        root.join("storage").display()
    );
    std::fs::write(cfg.join("phoenix_hypervisor_config.json"), hv).expect("write");
    std::fs::write(cfg.join("app.sh"), "#!/bin/sh\necho ready > /srv/ready\n").expect("write");
    let c = |id: u32, extra: &str| {
        format!(
            r#""{id}": {{"name": "b{id}", "memory_mb": 512, "cores": 1, "storage_pool": "local", "storage_size_gb": 10,
                "network_config": {{"name": "eth0", "bridge": "vmbr0", "ip": "10.79.0.{}/24", "gw": "10.79.0.1"}}, "unprivileged": true {extra}}}"#,
            id - 450
        )
    };
    let mut entries = vec![c(
        600,
        r#", "template": "local:vztmpl/busybox.tar.gz", "application_script": "app.sh", "template_snapshot_name": "ready""#,
    )];
    entries.extend((601..=610).map(|id| c(id, r#", "clone_from_ctid": "600", "application_script": "app.sh""#)));
    std::fs::write(cfg.join("phoenix_lxc_configs.json"), format!("{{\"lxc_configs\": {{{}}}}}", entries.join(",")))
        .expect("write");
    let validated = Validated::read(&cfg, &cfg.join("features"));
    if let Err(e) = validated.estate() {
        panic!("{e}: {:#?}", validated.validation.reports);
    }
    validated.prepare(&FeatureLibrary::default(), &[]).expect("prepare")
}

fn main() {
    if let Some(why) = skip_reason() {
        println!("provision benchmark skipped: {why}");
        return;
    }
    let tmp = tempfile::Builder::new().prefix("phoenix-bench-").tempdir_in("/var/tmp").expect("tmp");
    let root = tmp.path();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    phoenix_lxc::template::build_busybox(
        Path::new("/bin/busybox"),
        &root.join("storage/template/cache/busybox.tar.gz"),
    )
    .expect("template");
    for jobs in [1usize, 4] {
        let lxc = format!("lxc-jobs{jobs}");
        let mut planner = config(root, &lxc);
        let Some(phoenix_config::model::Backend::Lxc(settings)) = &planner.estate().hypervisor.backend else {
            unreachable!("an lxc backend")
        };
        let (backend, _) = LxcBackend::open(settings).expect("open");
        let plan = planner.plan(&backend, &NetProber).expect("observe").plan;
        assert!(plan.issues.is_empty(), "{:#?}", plan.issues);
        let cancel = AtomicBool::new(false);
        let engine = Engine { backend: &backend, prober: &NetProber, reporter: &Silent, cancel: &cancel };
        let before = backend.tool_time();
        let t = Instant::now();
        let report = engine.apply(
            planner.desired(),
            &plan,
            planner.jobs(),
            &ApplyOptions { jobs, per_node: jobs, ..ApplyOptions::default() },
        );
        let wall = t.elapsed();
        let tools = backend.tool_time() - before;
        assert!(!report.failed(), "{report:#?}");
        let overhead = if jobs == 1 {
            format!("{:.3} s", wall.saturating_sub(tools).as_secs_f64())
        } else {
            "(tools overlap; see --jobs 1)".into()
        };
        println!(
            "provision 1 template + 10 clones, --jobs {jobs}: {:.3} s in all; {:.3} s inside the LXC tools (summed over calls); engine overhead {overhead}",
            wall.as_secs_f64(),
            tools.as_secs_f64()
        );
        let order =
            phoenix_engine::destroy::plan_destroy(planner.desired(), &backend.observe().expect("observe"), &[], true)
                .expect("order");
        engine.destroy(&order, &ApplyOptions::default()).expect("destroy");
    }
}
