//! `phoenix adopt` through the command line's own code, against the in-memory backend: the
//! refusals and their exit codes, a dry run that changes nothing, and adoption followed by a plan
//! that shows only what really differs.

mod support;

use std::path::Path;
use std::sync::Arc;

use phoenix_testkit::memory::{MemoryBackend, Method};

struct Setup {
    dir: tempfile::TempDir,
    backend: Arc<MemoryBackend>,
}

impl Setup {
    /// Three containers, built by `phoenix apply` and then made foreign (as the shell version
    /// left them: no Phoenix mark, no markers): 300 as configured, 301 with less memory than
    /// configured and an application script, 302 with its features. 303 is configured but does
    /// not exist.
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
                    "template": "local:vztmpl/x.tar.zst",
                    "network_config": {{"name": "eth0", "bridge": "vmbr0", "ip": "{ip}", "gw": "10.9.0.1"}}, "unprivileged": true {extra}}}"#
            )
        };
        let lxc = format!(
            r#"{{"lxc_configs": {{"300": {}, "301": {}, "302": {}}}}}"#,
            c("same", "10.9.0.10/24", r#", "features": ["base_setup"]"#),
            c("differs", "10.9.0.11/24", r#", "application_script": "app.sh""#),
            c("probed", "10.9.0.12/24", r#", "features": ["base_setup", "ollama"]"#),
        );
        std::fs::write(p.join("phoenix_lxc_configs.json"), lxc).expect("write");
        std::fs::write(p.join("app.sh"), "#!/bin/sh\necho app\n").expect("write");
        for f in ["base_setup", "ollama"] {
            std::fs::create_dir_all(p.join("features").join(f)).expect("mkdir");
            std::fs::write(p.join("features").join(f).join("feature.json"), format!(r#"{{"name": "{f}"}}"#))
                .expect("write");
            std::fs::write(p.join("features").join(f).join("install.sh"), "#!/bin/sh\ntrue\n").expect("write");
        }
        let s = Setup { dir, backend: Arc::new(MemoryBackend::new()) };
        let (code, out, err) = s.run(&["apply"]);
        assert_eq!(code, 0, "{out}{err}");
        for id in [300, 301, 302] {
            let mut g = s.backend.guest(id).expect("built").observed;
            g.managed = false;
            if id == 301 {
                g.config.set(phoenix_backend::Field::MemoryMb, 512u64);
            }
            // Inserted again without files: no markers.
            s.backend.insert(g);
        }
        // `ollama` is not installed in 302.
        s.backend.set_command_status("command -v ollama", 1);
        s.add_missing_guest();
        s.backend.clear_calls();
        s
    }

    /// 303: configured, never built.
    fn add_missing_guest(&self) {
        let p = self.path().join("phoenix_lxc_configs.json");
        let text = std::fs::read_to_string(&p).expect("read");
        let extra = r#", "303": {"name": "missing", "memory_mb": 1024, "cores": 1, "storage_pool": "local", "storage_size_gb": 10,
            "template": "local:vztmpl/x.tar.zst",
            "network_config": {"name": "eth0", "bridge": "vmbr0", "ip": "10.9.0.13/24", "gw": "10.9.0.1"}, "unprivileged": true}}}"#;
        std::fs::write(&p, text.trim_end().strip_suffix("}}").expect("object").to_string() + extra).expect("write");
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn run(&self, args: &[&str]) -> (u8, String, String) {
        support::phoenix_memory(self.path(), args, &self.backend)
    }

    /// Calls that wrote, marked, started, stopped, created or destroyed something (the probes,
    /// which only look, left out).
    fn writes(&self) -> Vec<String> {
        self.backend
            .mutating_calls()
            .iter()
            .filter(|c| c.method != Method::Exec || !c.detail.contains("phoenix-probe"))
            .map(|c| format!("{:?} {:?} {}", c.method, c.guest, c.detail))
            .collect()
    }

    fn managed(&self, id: u32) -> bool {
        self.backend.guest(id).expect("exists").observed.managed
    }
}

#[test]
fn ids_that_cannot_be_adopted_are_refused_and_nothing_is_adopted() {
    let s = Setup::new();
    let (code, out, err) = s.run(&["adopt", "999"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("error: 999 is not in the configuration"), "{err}");
    assert!(err.contains("hint: adoption takes over guests the configuration describes"), "{err}");
    assert!(err.contains("Nothing was adopted."), "{err}");

    let (code, _, err) = s.run(&["adopt", "303"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("error: 303 (missing) does not exist on the backend"), "{err}");
    assert!(err.contains("hint: there is nothing to adopt: `phoenix apply` creates it"), "{err}");

    // One bad ID among good ones: none is adopted.
    let (code, _, err) = s.run(&["adopt", "300", "999"]);
    assert_eq!(code, 1, "{err}");
    assert!(!s.managed(300), "300 was adopted although the command was refused");
    assert!(s.writes().is_empty(), "{:?}", s.writes());

    // Already Phoenix's: said, and not an error.
    let (code, out, err) = s.run(&["adopt", "300"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = s.run(&["adopt", "300"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("300 (same) is Phoenix's already: nothing to adopt."), "{out}");
    assert!(!out.contains("mark as Phoenix's"), "{out}");

    // A command line without a valid ID is a usage error.
    let (code, _, err) = s.run(&["adopt", "web-1"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn a_dry_run_shows_everything_and_changes_nothing() {
    let s = Setup::new();
    let (code, out, err) = s.run(&["adopt", "--dry-run"]);
    assert_eq!(code, 0, "{out}{err}");
    for line in [
        "~ 300 same (container, running): adopt",
        "> record feature:base_setup — base_setup is done in every guest that runs",
        "then: nothing to do, it matches its configuration",
        "~ 301 differs (container, running): adopt",
        "> not recorded: script — an application script leaves nothing to check; it runs on the next apply (--assume-customized records it)",
        "~ memory_mb: 512 → 1024 (live)",
        "> snapshot before the update — script run(s) on a guest that exists already",
        "> run script — never run",
        "> not recorded: feature:ollama — `command -v ollama` exited with status 1 inside the guest; it runs on the next apply",
        "> mark as Phoenix's — nothing else changes: not recreated, stopped or restarted",
        "Adopt: 3 guest(s).",
    ] {
        assert!(out.contains(line), "no {line:?} in\n{out}");
    }
    assert!(err.contains("dry run: nothing was changed"), "{err}");
    assert!(s.writes().is_empty(), "a dry run changed {:?}", s.writes());
    assert!(!s.managed(300) && !s.managed(301) && !s.managed(302));
    // Still foreign: the plan refuses them, and says how to adopt them.
    let (code, _, err) = s.run(&["plan"]);
    assert_eq!(code, 1);
    assert!(err.contains("300 exists but was not created by Phoenix") && err.contains("`phoenix adopt 300`"), "{err}");

    // In JSON: the same survey, for programs.
    let (code, out, _) = s.run(&["--output", "json", "adopt", "--dry-run", "301"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["adopted"], serde_json::json!([]));
    assert_eq!(v["adopt"][0]["id"], 301);
    assert_eq!(v["adopt"][0]["changes"][0]["field"], "memory_mb");
    assert_eq!(v["adopt"][0]["customizations"][0]["verdict"], "not_recorded");
    assert!(s.writes().is_empty());
}

#[test]
fn adopted_guests_plan_as_their_real_differences_only() {
    let s = Setup::new();
    let (code, out, err) = s.run(&["adopt"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Adopted 3 guest(s): 300 (same), 301 (differs), 302 (probed)."), "{out}");
    assert!(s.managed(300) && s.managed(301) && s.managed(302));
    // Markers where the guest showed the feature ran, and the marks: nothing else.
    let mut writes = s.writes();
    writes.sort();
    assert_eq!(
        writes,
        [
            "Adopt Some(300) ",
            "Adopt Some(301) ",
            "Adopt Some(302) ",
            "PushFile Some(300) /var/lib/phoenix/markers.json",
            "PushFile Some(302) /var/lib/phoenix/markers.json",
        ]
    );
    let (code, out, err) = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.contains("~ 301 differs (container)") && out.contains("~ memory_mb: 512 → 1024 (live)"), "{out}");
    assert!(out.contains("~ 302 probed (container)") && out.contains("> run feature:ollama — never run"), "{out}");
    assert!(!out.contains("300 same"), "{out}");
    assert!(out.contains("Plan: 1 to create, 2 to change, 1 unchanged."), "the missing 303 is created: {out}");
    // Applied, nothing is left to do; no adopted guest was recreated or restarted.
    let (code, out, err) = s.run(&["apply"]);
    assert_eq!(code, 0, "{out}{err}");
    let writes = s.writes();
    let touched: Vec<&String> =
        writes.iter().filter(|w| ["Some(300)", "Some(301)", "Some(302)"].iter().any(|id| w.contains(id))).collect();
    assert!(
        touched.iter().all(|w| !["Create", "Destroy", "Stop", "Start"].iter().any(|m| w.starts_with(m))),
        "{touched:?}"
    );
    let (code, out, _) = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn assumed_customizations_are_recorded_without_probing() {
    let s = Setup::new();
    let (code, out, err) = s.run(&["adopt", "--assume-customized", "301", "302"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("> record script — assumed done (--assume-customized)"), "{out}");
    assert!(s.backend.calls().iter().all(|c| c.method != Method::Exec), "a probe ran");
    let (code, out, _) = s.run(&["plan", "--detailed-exitcode", "--target", "301", "--target", "302"]);
    assert_eq!(code, 2, "{out}");
    assert!(!out.contains("> run"), "everything was recorded as done: {out}");
}

#[test]
fn the_help_explains_adoption() {
    let s = Setup::new();
    let (code, out, _) = s.run(&["adopt", "--help"]);
    assert_eq!(code, 0);
    for words in ["--assume-customized", "--dry-run", "without recreating, stopping", "command -v nvidia-smi"] {
        assert!(out.contains(words), "no {words:?} in\n{out}");
    }
}
