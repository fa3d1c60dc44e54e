//! The `phoenix` binary as a user runs it: help, exit codes, output formats, the commands that
//! are not implemented yet, and proof that `validate` reads only.

use std::collections::BTreeMap;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

mod support;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn phoenix(args: &[&str], cwd: &Path) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_phoenix"))
        .args(args)
        .current_dir(cwd)
        .env_remove("PHOENIX_CONFIG_DIR")
        .env_remove("NO_COLOR")
        .output()
        .expect("run phoenix");
    support::assert_no_known_secret(args, &text(&out.stdout), &text(&out.stderr));
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Every path under `dir` with its content and modification time.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).expect("read dir") {
            let p = e.expect("entry").path();
            let meta = fs::metadata(&p).expect("metadata");
            if meta.is_dir() {
                stack.push(p.clone());
                out.insert(p, (Vec::new(), meta.modified().expect("mtime")));
            } else {
                out.insert(p.clone(), (fs::read(&p).expect("read"), meta.modified().expect("mtime")));
            }
        }
    }
    out
}

#[test]
fn help_lists_every_command_and_the_exit_codes() {
    let out = phoenix(&["--help"], Path::new("."));
    assert!(out.status.success());
    let help = text(&out.stdout);
    for cmd in [
        "validate",
        "plan",
        "apply",
        "status",
        "destroy",
        "adopt",
        "graph",
        "setup-hypervisor",
        "schema",
        "completions",
    ] {
        assert!(help.contains(&format!("  {cmd}")), "`{cmd}` missing from:\n{help}");
    }
    for flag in ["--config-dir", "--verbose", "--quiet", "--color", "--no-progress", "--output", "PHOENIX_CONFIG_DIR"] {
        assert!(help.contains(flag), "`{flag}` missing from:\n{help}");
    }
    assert!(help.contains("Exit codes: 0 success; 1 invalid configuration"));
    let validate_help = text(&phoenix(&["validate", "--help"], Path::new(".")).stdout);
    assert!(validate_help.contains("Never contacts a backend and never writes a file"), "{validate_help}");
}

#[test]
fn an_unknown_host_module_is_a_usage_error_and_missing_secrets_stop_everything() {
    let dir = examples().join("quickstart");
    let out =
        phoenix(&["-c", dir.to_str().expect("utf-8"), "setup-hypervisor", "apply", "--only", "nvidai"], Path::new("."));
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = text(&out.stderr);
    assert!(err.contains("invalid value 'nvidai' for '--only <MODULE>'") && err.contains("nvidia"), "{err}");
    // The Proxmox example names its token by an environment variable; without it, nothing runs.
    let proxmox = examples().join("ai-stack");
    let out = Command::new(env!("CARGO_BIN_EXE_phoenix"))
        .args(["-c", proxmox.to_str().expect("utf-8"), "plan"])
        .env_remove("PVE_TOKEN_SECRET")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = text(&out.stderr);
    assert!(err.contains("the environment variable PVE_TOKEN_SECRET (a secret reference) is not set"), "{err}");
}

#[test]
fn the_examples_validate_and_the_config_dir_comes_from_the_environment() {
    for example in ["quickstart", "ai-stack"] {
        let out = Command::new(env!("CARGO_BIN_EXE_phoenix"))
            .args(["--color", "never", "validate"])
            .env("PHOENIX_CONFIG_DIR", examples().join(example))
            .output()
            .expect("run");
        assert!(out.status.success(), "{example}: {}", text(&out.stderr));
        assert!(text(&out.stdout).starts_with("ok: the configuration is valid"), "{}", text(&out.stdout));
    }
}

#[test]
fn a_missing_config_dir_points_at_the_option() {
    let tmp = tempfile::tempdir().expect("tmp");
    let missing = tmp.path().join("nowhere");
    let out = phoenix(&["--color", "never", "-c", missing.to_str().expect("utf-8"), "validate"], tmp.path());
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("does not exist") && err.contains("PHOENIX_CONFIG_DIR"), "{err}");
}

#[test]
fn json_output_is_one_document_on_stdout() {
    let dir = examples().join("ai-stack");
    let out = phoenix(&["-c", dir.to_str().expect("utf-8"), "--output", "json", "validate"], Path::new("."));
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["valid"], true);
    assert_eq!(v["guests"], 11);
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
}

#[test]
fn graph_draws_clone_and_dependency_edges() {
    let dir = examples().join("quickstart");
    let dir = dir.to_str().expect("utf-8");
    let mermaid = text(&phoenix(&["-c", dir, "graph"], Path::new(".")).stdout);
    assert!(mermaid.starts_with("flowchart BT\n"), "{mermaid}");
    assert!(mermaid.contains("g901 -- clone --> g900"), "{mermaid}");
    assert!(mermaid.contains("g910 -. depends on .-> g903"), "{mermaid}");
    let dot = text(&phoenix(&["-c", dir, "graph", "--format", "dot"], Path::new(".")).stdout);
    assert!(
        dot.starts_with("digraph phoenix {") && dot.contains("g910 -> g901 [label=\"depends on\", style=dashed];"),
        "{dot}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&phoenix(&["-c", dir, "--output", "json", "graph"], Path::new(".")).stdout)
            .expect("JSON");
    assert_eq!(json["nodes"].as_array().map(Vec::len), Some(5));
    assert_eq!(json["order"][0], 900);
    assert_eq!(json["order"][4], 910);
}

#[test]
fn colour_follows_the_option() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().to_str().expect("utf-8");
    let always = phoenix(&["--color", "always", "-c", dir, "validate"], tmp.path());
    assert!(text(&always.stderr).contains("\u{1b}["), "no colour with --color always");
    let never = phoenix(&["--color", "never", "-c", dir, "validate"], tmp.path());
    assert!(!text(&never.stderr).contains("\u{1b}["), "colour with --color never");
}

#[test]
fn completions_are_generated_for_bash() {
    let out = phoenix(&["completions", "bash"], Path::new("."));
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("_phoenix()"));
}

#[test]
fn schema_prints_the_committed_schema() {
    let out = phoenix(&["schema", "lxc"], Path::new("."));
    let committed =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schema/phoenix_lxc_configs.schema.json"))
            .expect("committed schema");
    assert_eq!(text(&out.stdout), committed);
}

/// `validate` (and `graph`, which validates first) neither writes a file nor contacts the
/// backend: the backend's address is a listening socket that must see no connection, and the
/// directory and the working directory are unchanged to the byte and the second.
#[test]
fn validate_never_writes_and_never_contacts_the_backend() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let tmp = tempfile::tempdir().expect("tmp");
    let cfg = tmp.path().join("cfg");
    phoenix_testkit::copy_tree(&examples().join("ai-stack"), &cfg);
    let hv = cfg.join("phoenix_hypervisor_config.json");
    let text_hv = fs::read_to_string(&hv)
        .expect("read")
        .replace("https://pve1.lab.example:8006", &format!("https://127.0.0.1:{port}"));
    fs::write(&hv, text_hv).expect("write");
    let before = snapshot(tmp.path());
    for args in [&["validate"][..], &["--output", "json", "validate"], &["graph"], &["-v", "validate"]] {
        let mut full = vec!["-c", cfg.to_str().expect("utf-8")];
        full.extend_from_slice(args);
        let out = phoenix(&full, tmp.path());
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    }
    assert_eq!(snapshot(tmp.path()), before, "validate changed the file system");
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the backend was contacted: {other:?}"),
    }
}

#[test]
fn plan_and_status_on_the_lxc_backend_never_write() {
    // Opening the backend checks the tools and that the backend's bridges exist: any bridge
    // of this machine will do (CI has one).
    let bridge = fs::read_dir("/sys/class/net")
        .into_iter()
        .flatten()
        .flatten()
        .find(|e| e.path().join("bridge").is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned());
    let missing = if Command::new("lxc-start").arg("--version").output().is_err() {
        Some("the lxc tools are not installed (apt-get install lxc)".to_string())
    } else if bridge.is_none() {
        Some("this machine has no bridge (scripts/lxc-host.sh makes one)".to_string())
    } else {
        None
    };
    if !phoenix_testkit::real_component("plan and status on the LXC backend", missing) {
        return;
    }
    let bridge = bridge.unwrap_or_default();
    let tmp = tempfile::tempdir().expect("tmp");
    let cfg = tmp.path().join("cfg");
    fs::create_dir_all(&cfg).expect("mkdir");
    fs::write(cfg.join("phoenix_lxc_configs.json"), r#"{"lxc_configs": {}}"#).expect("write");
    let ids = || ["/etc/subuid", "/etc/subgid"].map(|f| fs::read(f).ok());
    let ids_before = ids();
    let private = tmp.path().join("private");
    fs::create_dir(&private).expect("mkdir");
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).expect("chmod");
    for lxc_path in [tmp.path().join("absent"), private.clone()] {
        let hv = format!(
            r#"{{"backend": {{"type": "lxc", "lxc_path": "{}", "bridges": {{"vmbr0": {{"host_bridge": "{bridge}", "address": "10.79.0.1/24"}}}}, "storage": {{}}}}}}"#,
            lxc_path.display()
        );
        fs::write(cfg.join("phoenix_hypervisor_config.json"), hv).expect("write");
        let locks = tmp.path().join("locks");
        for args in [&["plan"][..], &["status"], &["--output", "json", "plan"]] {
            let mut full = vec!["-c", cfg.to_str().expect("utf-8"), "--lock-dir", locks.to_str().expect("utf-8")];
            full.extend_from_slice(args);
            let out = phoenix(&full, tmp.path());
            assert!(out.status.success(), "{args:?} on {}: {}", lxc_path.display(), text(&out.stderr));
        }
    }
    assert!(!tmp.path().join("absent").exists(), "plan or status created a missing lxc_path");
    assert_eq!(fs::metadata(&private).expect("stat").permissions().mode() & 0o7777, 0o700, "plan changed the mode");
    assert_eq!(ids(), ids_before, "plan or status wrote /etc/subuid or /etc/subgid");
}
