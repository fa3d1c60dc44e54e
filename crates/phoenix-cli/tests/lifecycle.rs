//! `plan`, `apply`, `status` and `destroy` through the command line's own code, against the
//! in-memory backend (passed in as the backend to connect to; the binary has no way to choose it).

mod support;

use std::path::Path;
use std::sync::Arc;

use phoenix_testkit::memory::MemoryBackend;

struct Setup {
    dir: tempfile::TempDir,
    backend: Arc<MemoryBackend>,
}

impl Setup {
    /// A template, two clones, and a guest depending on them; features from a directory.
    fn new() -> Setup {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path();
        std::fs::write(
            p.join("phoenix_hypervisor_config.json"),
            r#"{"backend": {"type": "lxc", "bridges": {"vmbr0": {"address": "10.9.0.1/24"}}, "storage": {"local": "/srv/local"}}}"#,
        )
        .expect("write");
        let c = |name: &str, ip: &str, extra: &str| {
            format!(
                r#"{{"name": "{name}", "memory_mb": 1024, "cores": 1, "storage_pool": "local", "storage_size_gb": 10,
                    "network_config": {{"name": "eth0", "bridge": "vmbr0", "ip": "{ip}", "gw": "10.9.0.1"}}, "unprivileged": true,
                    "health_check": {{"command": "true"}} {extra}}}"#
            )
        };
        let lxc = format!(
            r#"{{"lxc_configs": {{"300": {}, "301": {}, "302": {}, "310": {}}}}}"#,
            c(
                "tpl",
                "10.9.0.10/24",
                r#", "template": "local:vztmpl/x.tar.zst", "features": ["base_setup"], "template_snapshot_name": "ready""#
            ),
            c("web-1", "10.9.0.11/24", r#", "clone_from_ctid": "300", "application_script": "app.sh""#),
            c("web-2", "10.9.0.12/24", r#", "clone_from_ctid": "300", "application_script": "app.sh""#),
            c("agg", "10.9.0.20/24", r#", "clone_from_ctid": "300", "dependencies": ["301", "302"]"#),
        );
        std::fs::write(p.join("phoenix_lxc_configs.json"), lxc).expect("write");
        std::fs::write(p.join("app.sh"), "#!/bin/sh\necho app\n").expect("write");
        std::fs::create_dir_all(p.join("features/base_setup")).expect("mkdir");
        std::fs::write(p.join("features/base_setup/feature.json"), r#"{"name": "base_setup", "description": "base"}"#)
            .expect("write");
        std::fs::write(p.join("features/base_setup/install.sh"), "#!/bin/sh\napt-get install -y curl\n")
            .expect("write");
        Setup { dir, backend: Arc::new(MemoryBackend::new()) }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn run(&self, args: &[&str]) -> (u8, String, String) {
        support::phoenix_memory(self.path(), args, &self.backend)
    }

    fn mutating(&self) -> usize {
        self.backend.mutating_calls().len()
    }
}

#[test]
fn plan_apply_and_reapply() {
    let s = Setup::new();
    let (code, out, err) = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.contains("+ 300 tpl (container): defined → completed"), "{out}");
    assert!(out.contains("> clone 300 at snapshot ready"), "{out}");
    assert!(out.contains("> run feature:base_setup — never run"), "{out}");
    assert!(out.contains("Plan: 4 to create, 0 to change, 0 unchanged."), "{out}");
    assert_eq!(s.mutating(), 0, "plan changed something");

    let (code, out, err) = s.run(&["apply", "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("dry run: nothing was changed") && out.contains("Plan: 4 to create"), "{out}{err}");
    assert_eq!(s.mutating(), 0, "a dry run changed something");

    let (code, out, err) = s.run(&["apply"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Apply complete: 4 created, 0 changed, 0 unchanged, 0 failed"), "{out}");

    let (code, out, _) = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(code, 0);
    assert!(out.contains("No changes: all 4 guest(s) match the configuration."), "{out}");
    s.backend.clear_calls();
    let (code, _, _) = s.run(&["apply"]);
    assert_eq!(code, 0);
    assert_eq!(s.mutating(), 0, "a second apply changed something");

    let (code, out, _) = s.run(&["status"]);
    assert_eq!(code, 0);
    assert!(out.lines().next().is_some_and(|l| l.starts_with("ID")), "{out}");
    assert_eq!(out.lines().filter(|l| l.contains("completed")).count(), 4, "{out}");

    // A changed script shows as one step of the guests that run it.
    std::fs::write(s.path().join("app.sh"), "#!/bin/sh\necho app v2\n").expect("write");
    let (code, out, _) = s.run(&["--output", "json", "plan", "--detailed-exitcode"]);
    assert_eq!(code, 2);
    let plan: serde_json::Value = serde_json::from_str(&out).expect("json");
    let busy: Vec<u64> = plan["guests"]
        .as_array()
        .expect("guests")
        .iter()
        .filter(|g| !g["steps"].as_array().is_some_and(Vec::is_empty))
        .map(|g| g["id"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(busy, vec![301, 302]);
}

#[test]
fn target_limits_the_plan_to_a_guest_and_what_it_needs() {
    let s = Setup::new();
    let (_, out, _) = s.run(&["--output", "json", "plan", "--target", "301"]);
    let plan: serde_json::Value = serde_json::from_str(&out).expect("json");
    let ids: Vec<u64> =
        plan["guests"].as_array().expect("guests").iter().map(|g| g["id"].as_u64().unwrap_or(0)).collect();
    assert_eq!(ids, vec![300, 301]);
    let (code, _, err) = s.run(&["plan", "--target", "999"]);
    assert_eq!(code, 1);
    assert!(err.contains("--target 999: no guest has this ID"), "{err}");
}

#[test]
fn a_second_apply_on_the_same_backend_is_refused_naming_the_holder() {
    let s = Setup::new();
    let lock_path = s.path().join("locks").join("lxc-_var_lib_lxc.lock");
    let _held = phoenix_engine::lock::ApplyLock::acquire(&lock_path, std::time::Duration::ZERO).expect("lock");
    let (code, _, err) = s.run(&["apply"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("another phoenix run holds the lock") && err.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    assert_eq!(s.mutating(), 0);
}

#[test]
fn destroy_asks_refuses_templates_in_use_and_goes_in_reverse_order() {
    let s = Setup::new();
    assert_eq!(s.run(&["apply"]).0, 0);
    let (code, _, err) = s.run(&["destroy"]);
    assert_eq!(code, 1);
    assert!(err.contains("pass --yes to confirm"), "{err}");
    let (code, _, err) = s.run(&["destroy", "--yes", "300"]);
    assert_eq!(code, 1);
    assert!(err.contains("300 is a template that 301, 302, 310 were cloned from"), "{err}");
    let (code, out, _) = s.run(&["destroy", "--dry-run"]);
    assert_eq!(code, 0);
    assert!(out.contains("Destroy, in this order: 310 (agg), 302 (web-2), 301 (web-1), 300 (tpl)"), "{out}");
    s.backend.clear_calls();
    let (code, _, _) = s.run(&["destroy", "--dry-run", "--yes"]);
    assert_eq!(code, 0);
    assert_eq!(s.mutating(), 0, "a dry run destroyed something");
    assert!(s.backend.guest(300).is_some());
    let (code, _, err) = s.run(&["destroy", "--yes"]);
    assert_eq!(code, 0, "{err}");
    assert!([300, 301, 302, 310].iter().all(|id| s.backend.guest(*id).is_none()));
    let destroyed: Vec<u32> = s
        .backend
        .calls()
        .iter()
        .filter(|c| c.method == phoenix_testkit::memory::Method::Destroy)
        .filter_map(|c| c.guest)
        .collect();
    assert_eq!(destroyed, vec![310, 302, 301, 300]);
}

#[test]
fn a_failure_is_reported_with_guest_step_and_output() {
    let s = Setup::new();
    s.backend.set_exec_status("phoenix-script-", 4, "E: Unable to locate package nginx");
    let (code, out, err) = s.run(&["apply", "--keep-going"]);
    assert_eq!(code, 1);
    assert!(out.contains("Apply failed: 1 created, 0 changed, 0 unchanged, 2 failed, 1 skipped"), "{out}");
    assert!(
        err.contains("guest 301 (web-1), step `run script`: `/tmp/phoenix-script-")
            && err.contains("--phoenix-contract 1 --params")
            && err.contains("exited with status 4")
            && err.contains("Unable to locate package nginx"),
        "{err}"
    );
}

#[test]
fn an_update_is_guarded_by_a_snapshot_in_the_plan_the_dry_run_and_the_apply() {
    let s = Setup::new();
    assert_eq!(s.run(&["apply"]).0, 0);
    std::fs::write(s.path().join("app.sh"), "#!/bin/sh\necho app v2\n").expect("write");
    let guard = "> snapshot before the update — script run(s) on a guest that exists already: a snapshot \
                 phoenix-pre-<time> is taken first";
    for args in [&["plan"][..], &["apply", "--dry-run"][..]] {
        let (_, out, _) = s.run(args);
        assert_eq!(out.matches(guard).count(), 2, "{args:?}: {out}");
    }
    let (_, out, _) = s.run(&["--output", "json", "plan"]);
    let plan: serde_json::Value = serde_json::from_str(&out).expect("json");
    let first = &plan["guests"].as_array().expect("guests").iter().find(|g| g["id"] == 301).expect("301")["steps"][0];
    assert_eq!((&first["action"], &first["keep"]), (&serde_json::json!("update_snapshot"), &serde_json::json!(0)));

    // The new script fails in 301: it is rolled back, and the summary says so.
    s.backend.set_exec_status("phoenix-script-", 2, "boom");
    let (code, out, err) = s.run(&["apply", "--keep-going"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("0 changed, 1 unchanged, 2 failed, 1 skipped"), "{out}");
    let left = s.backend.guest(301).expect("301").observed.snapshots;
    let name = left.iter().find(|n| n.starts_with("phoenix-pre-")).expect("kept after the rollback");
    assert!(
        err.contains(&format!(
            "error: guest 301 (web-1): script failed; the guest was rolled back to snapshot {name} taken before the update"
        )),
        "{err}"
    );
    let (_, out, _) = s.run(&["--output", "json", "apply"]);
    let report: serde_json::Value = serde_json::from_str(&out).expect("json");
    let row = report["guests"].as_array().expect("guests").iter().find(|g| g["id"] == 301).cloned().expect("301");
    assert_eq!(row["outcome"], "rolled-back", "{report:#}");
}
