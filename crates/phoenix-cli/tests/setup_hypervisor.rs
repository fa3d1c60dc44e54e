//! `phoenix setup-hypervisor` on a temporary root (`--root`): the plan with reasons, a dry run
//! that leaves every file as it was, an apply after which the plan is empty, and secrets never
//! printed.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SMB_PASSWORD: &str = "not-to-be-printed-3141";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for e in fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            fs::copy(e.path(), target).expect("copy");
        }
    }
}

/// Every file and link below a directory, with its content or target.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            let meta = fs::symlink_metadata(&p).expect("meta");
            if meta.is_dir() {
                out.insert(p.clone(), "<dir>".into());
                todo.push(p);
            } else if meta.file_type().is_symlink() {
                out.insert(p.clone(), format!("-> {}", fs::read_link(&p).expect("link").display()));
            } else {
                out.insert(p.clone(), fs::read_to_string(&p).unwrap_or_default());
            }
        }
    }
    out
}

struct Setup {
    _dir: tempfile::TempDir,
    config: PathBuf,
    root: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("config");
    copy_tree(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart"), &config);
    let file = config.join("phoenix_hypervisor_config.json");
    let mut json: serde_json::Value = serde_json::from_str(&fs::read_to_string(&file).expect("read")).expect("json");
    json["timezone"] = "Europe/Berlin".into();
    json["samba"] = serde_json::json!({
        "user": "phoenix",
        "password": "env:PHOENIX_TEST_SMB_PASSWORD",
        "shares": [{ "name": "data", "path": "/srv/data", "options": { "read only": "no" } }]
    });
    fs::write(&file, serde_json::to_string_pretty(&json).expect("json")).expect("write");
    let root = dir.path().join("root");
    for (path, content) in [
        ("usr/share/zoneinfo/Europe/Berlin", "TZif"),
        ("etc/timezone", "UTC\n"),
        ("etc/subuid", "root:100000:65536\n"),
        ("etc/subgid", "root:100000:65536\n"),
        ("etc/samba/smb.conf", "[global]\n   workgroup = WORKGROUP\n"),
    ] {
        let at = root.join(path);
        fs::create_dir_all(at.parent().expect("parent")).expect("mkdir");
        fs::write(at, content).expect("write");
    }
    Setup { _dir: dir, config, root }
}

fn phoenix(s: &Setup, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_phoenix"))
        .args(["--color", "never", "-c", s.config.to_str().expect("utf-8"), "setup-hypervisor"])
        .args(args)
        .args(["--root", s.root.to_str().expect("utf-8")])
        .env("PHOENIX_TEST_SMB_PASSWORD", SMB_PASSWORD)
        .env_remove("PHOENIX_CONFIG_DIR")
        .output()
        .expect("run phoenix")
}

#[test]
fn a_dry_run_shows_the_plan_with_reasons_and_changes_no_file() {
    let s = setup();
    let before = snapshot(&s.root);
    let out = phoenix(&s, &["apply", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let plan = text(&out.stdout);
    assert!(
        plan.contains(
            "~ timezone\n    > link /etc/localtime → /usr/share/zoneinfo/Europe/Berlin — /etc/localtime is missing\n"
        ),
        "{plan}"
    );
    assert!(plan.contains("> write /etc/samba/smb.conf (mode 0644), checked with `testparm -s <new file>`, original kept as /etc/samba/smb.conf.phoenix-orig"), "{plan}");
    assert!(plan.contains("\nPlan: "), "{plan}");
    assert_eq!(snapshot(&s.root), before, "the dry run changed files");
    assert!(!plan.contains(SMB_PASSWORD) && !text(&out.stderr).contains(SMB_PASSWORD));

    let out = phoenix(&s, &["plan", "--detailed-exitcode", "--output", "json"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    // The root is no Debian host: repositories plans nothing and says why.
    assert_eq!(json["modules"][0]["module"], "repositories");
    assert_eq!(json["modules"][0]["steps"], serde_json::json!([]));
    assert_eq!(json["modules"][1]["module"], "timezone");
    assert_eq!(json["modules"][1]["steps"][0]["action"], "symlink");
    assert!(!text(&out.stdout).contains(SMB_PASSWORD));
    assert_eq!(snapshot(&s.root), before, "plan changed files");
}

#[test]
fn apply_of_one_module_then_its_plan_is_empty() {
    let s = setup();
    let out = phoenix(&s, &["apply", "--only", "timezone"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("timezone: 2 step(s) applied"), "{}", text(&out.stderr));
    assert_eq!(fs::read_to_string(s.root.join("etc/timezone")).expect("tz"), "Europe/Berlin\n");
    assert_eq!(
        fs::read_link(s.root.join("etc/localtime")).expect("link"),
        Path::new("/usr/share/zoneinfo/Europe/Berlin")
    );
    let out = phoenix(&s, &["plan", "--only", "timezone", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(text(&out.stdout).starts_with("No changes: the host matches the configuration (1 module(s) checked)."));
    // Samba was not touched by --only timezone.
    assert!(!s.root.join("etc/samba/phoenix-shares.conf").exists());
}

#[test]
fn an_unreadable_secret_is_named_never_shown_and_stops_before_any_change() {
    let s = setup();
    let file = s.config.join("phoenix_hypervisor_config.json");
    let mut json: serde_json::Value = serde_json::from_str(&fs::read_to_string(&file).expect("read")).expect("json");
    json["users"] = serde_json::json!({ "username": "ops", "password_hash": "env:PHOENIX_TEST_UNSET_HASH" });
    fs::write(&file, serde_json::to_string_pretty(&json).expect("json")).expect("write");
    fs::write(s.root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n").expect("passwd");
    let before = snapshot(&s.root);
    let out = phoenix(&s, &["apply"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(
            "users: user ops: the environment variable PHOENIX_TEST_UNSET_HASH (a secret reference) is not set"
        ),
        "{err}"
    );
    assert_eq!(snapshot(&s.root), before);
}
