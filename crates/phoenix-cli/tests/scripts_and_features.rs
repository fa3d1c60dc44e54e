//! Where application scripts and features come from, as the command line sees them: the shell
//! version's directory layout, and the user's feature library shared by `validate` and `plan`.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use phoenix_testkit::memory::MemoryBackend;

const HV: &str = r#"{"backend": {"type": "lxc", "bridges": {"vmbr0": {"address": "10.9.0.1/24"}}, "storage": {"local": "/srv/local"}}}"#;

/// A container with the fields every test needs, and `extra` members.
fn container(name: &str, ip: &str, extra: &str) -> String {
    format!(
        r#"{{"name": "{name}", "memory_mb": 1024, "cores": 1, "storage_pool": "local", "storage_size_gb": 10,
            "template": "local:vztmpl/x.tar.zst", "unprivileged": true,
            "network_config": {{"name": "eth0", "bridge": "vmbr0", "ip": "{ip}", "gw": "10.9.0.1"}} {extra}}}"#
    )
}

/// A base directory laid out as the shell version's: the configuration in `etc/`.
fn shell_base(lxc: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tmp");
    let etc = tmp.path().join("etc");
    std::fs::create_dir_all(&etc).expect("mkdir");
    std::fs::write(etc.join("phoenix_hypervisor_config.json"), HV).expect("write");
    std::fs::write(etc.join("phoenix_lxc_configs.json"), lxc).expect("write");
    (tmp, etc)
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

/// Runs the command line in-process against an in-memory backend; exit code, stdout, stderr.
fn phoenix(config_dir: &Path, args: &[&str]) -> (u8, String, String) {
    support::phoenix_memory(config_dir, args, &Arc::new(MemoryBackend::new()))
}

fn script_950() -> String {
    format!(
        r#"{{"lxc_configs": {{"950": {}}}}}"#,
        container("vllm-qwen", "10.9.0.50/24", r#", "application_script": "phoenix_hypervisor_lxc_950.sh""#)
    )
}

#[test]
fn the_shell_layout_validates_and_plans_with_the_script_from_bin() {
    let (tmp, etc) = shell_base(&script_950());
    write(&tmp.path().join("bin/phoenix_hypervisor_lxc_950.sh"), "#!/bin/sh\necho 950\n");
    let (code, out, err) = phoenix(&etc, &["validate"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("ok: the configuration is valid: 1 container(s)"), "{out}");
    let (code, out, err) = phoenix(&etc, &["plan"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("run script"), "{out}");
}

#[test]
fn a_missing_script_lists_every_place_looked_in_validate_and_plan() {
    let (tmp, etc) = shell_base(&script_950());
    let places = ["etc/", "bin/", "bin/lxc_setup/"]
        .map(|d| tmp.path().join(d).join("phoenix_hypervisor_lxc_950.sh").display().to_string());
    let (code, _, err) = phoenix(&etc, &["validate"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("error[file-not-found]: application script \"phoenix_hypervisor_lxc_950.sh\" does not exist"));
    for p in &places {
        assert!(err.contains(p.as_str()), "{p} missing from:\n{err}");
    }
    let (code, _, err) = phoenix(&etc, &["plan"]);
    assert_eq!(code, 1, "{err}");
    assert!(places.iter().all(|p| err.contains(p.as_str())), "{err}");
}

fn lab_ca_950() -> String {
    format!(
        r#"{{"lxc_configs": {{"950": {}}}}}"#,
        container("ca-client", "10.9.0.50/24", r#", "features": ["base_setup", "lab_ca"]"#)
    )
}

#[test]
fn a_users_feature_directory_is_known_to_validate_and_plan_alike() {
    let (_tmp, etc) = shell_base(&lab_ca_950());
    // Without it, both refuse, naming the feature.
    let (code, _, err) = phoenix(&etc, &["validate"]);
    assert_eq!(code, 1);
    assert!(err.contains("error[unknown-feature]: no feature library provides `lab_ca`"), "{err}");
    let (code, _, err) = phoenix(&etc, &["plan"]);
    assert_eq!(code, 1);
    assert!(err.contains("no feature library provides `lab_ca`"), "{err}");

    write(&etc.join("features/lab_ca/feature.json"), r#"{"name": "lab_ca", "requires": ["base_setup"]}"#);
    write(&etc.join("features/lab_ca/install.sh"), "#!/bin/sh\necho ca\n");
    let (code, out, err) = phoenix(&etc, &["validate"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = phoenix(&etc, &["plan"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("run feature:lab_ca"), "{out}");
    // base_setup is built in, without a script in this build: the plan says so.
    assert!(out.contains("note: 950: feature `base_setup` has no install script yet in this build"), "{out}");
    assert!(!out.contains("feature `lab_ca` has no install script"), "{out}");
}

#[test]
fn features_dir_is_taken_by_validate_as_by_plan() {
    let (tmp, etc) = shell_base(&lab_ca_950());
    let elsewhere = tmp.path().join("lib/features");
    write(&elsewhere.join("lab_ca/feature.json"), r#"{"name": "lab_ca"}"#);
    write(&elsewhere.join("lab_ca/install.sh"), "#!/bin/sh\n");
    let dir = elsewhere.to_str().expect("utf-8");
    let (code, out, err) = phoenix(&etc, &["validate", "--features-dir", dir]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = phoenix(&etc, &["plan", "--features-dir", dir]);
    assert_eq!(code, 0, "{out}{err}");
    // The default directory does not have it.
    assert_eq!(phoenix(&etc, &["validate"]).0, 1);
}

#[test]
fn a_typed_parameter_of_the_wrong_type_is_reported_at_the_guests_key() {
    let lxc = format!(
        r#"{{"lxc_configs": {{"950": {}}}}}"#,
        container("ca-client", "10.9.0.50/24", r#", "features": ["lab_ca"]"#)
    );
    let (_tmp, etc) = shell_base(&lxc);
    write(
        &etc.join("features/lab_ca/feature.json"),
        r#"{"name": "lab_ca", "parameters": [{"name": "cores", "type": "string"}]}"#,
    );
    write(&etc.join("features/lab_ca/install.sh"), "#!/bin/sh\n");
    let (code, _, err) = phoenix(&etc, &["validate"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("error[wrong-type]: `cores` is an integer, but feature `lab_ca` takes a string"), "{err}");
    assert!(err.contains("at $.lxc_configs[\"950\"].cores"), "{err}");
    assert!(err.contains("hint: feature `lab_ca` declares `cores` as string in its feature.json"), "{err}");
}
