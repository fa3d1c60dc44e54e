//! The desired state of users' files of older generations (`tests/generations/`): what the
//! shell did, Phoenix does — clones keep their source's `unprivileged` and feature flags,
//! `apparmor_manages_nesting` is the nesting flag, a v0 `features` string is feature flags.

use std::path::Path;

use phoenix_plan::{Desired, desired};

fn desired_of(generation: &str) -> Desired {
    let fs = phoenix_config::RealFilesystem;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/generations").join(generation);
    let (sources, early) = phoenix_config::load(&dir, &fs);
    let v = phoenix_config::validate(&sources, early, &fs);
    let estate = v.estate.unwrap_or_else(|| panic!("{generation} is valid: {:#?}", v.reports));
    desired(&estate, &|_| Vec::new())
}

fn field(d: &Desired, id: u32, name: &str) -> Option<String> {
    let field = phoenix_backend::Field::from_name(name).expect("a field");
    d.guests[&id].config.get(&field).map(ToString::to_string)
}

#[test]
fn september_2025_clones_keep_their_sources_settings() {
    let d = desired_of("sept-2025/etc");
    assert_eq!(field(&d, 900, "flags").as_deref(), Some("nesting=1"));
    // 902 (docker) and 999 (docker, cloned from 902) give no flags: they keep 900's.
    for id in [902, 999] {
        assert_eq!(field(&d, id, "flags").as_deref(), None, "{id}");
    }
    // 902 and 999 give no `unprivileged`: they are unprivileged like 900.
    assert_eq!(field(&d, 902, "unprivileged").as_deref(), Some("1"));
    assert_eq!(field(&d, 999, "unprivileged").as_deref(), Some("1"));
}

#[test]
fn late_2025_apparmor_manages_nesting_is_the_nesting_flag() {
    let d = desired_of("late-2025/etc");
    for id in [900, 901, 910, 801, 102] {
        assert_eq!(field(&d, id, "flags").as_deref(), Some("nesting=1"), "{id}");
    }
    // 910 gives no `unprivileged`: it keeps 901's.
    assert_eq!(field(&d, 910, "unprivileged").as_deref(), Some("1"));
}

#[test]
fn august_2025_feature_strings_are_the_containers_feature_flags() {
    let d = desired_of("aug-2025-v0");
    assert_eq!(field(&d, 900, "flags").as_deref(), Some("keyctl=1,nesting=1"));
    assert_eq!(field(&d, 999, "flags").as_deref(), Some("nesting=1"));
    assert_eq!(field(&d, 900, "net.ip").as_deref(), Some("10.0.0.110/24"));
    assert!(d.guests[&900].customizations.is_empty(), "a v0 feature string names no features to install");
}

#[test]
fn a_clone_that_sets_a_flag_keeps_those_of_its_template() {
    let fs = phoenix_config::RealFilesystem;
    let dir = tempfile_dir();
    let ct = |name: &str, ip: &str, extra: &str| {
        format!(
            r#"{{"name": "{name}", "memory_mb": 1024, "cores": 1, "storage_pool": "local", "storage_size_gb": 8,
                "network_config": {{"name": "eth0", "bridge": "vmbr0", "ip": "10.9.0.{ip}/24", "gw": "10.9.0.1"}} {extra}}}"#
        )
    };
    let lxc = format!(
        r#"{{"lxc_configs": {{"900": {}, "901": {}, "902": {}}}}}"#,
        ct(
            "tpl",
            "10",
            r#", "unprivileged": true, "template": "local:vztmpl/x.tar.zst", "template_snapshot_name": "tpl", "pct_options": ["nesting=1", "keyctl=1"]"#
        ),
        ct("fuse", "11", r#", "clone_from_ctid": "900", "pct_options": ["fuse=1", "keyctl=0"]"#),
        ct("docker", "12", r#", "unprivileged": true, "template": "local:vztmpl/x.tar.zst", "features": ["docker"]"#),
    );
    std::fs::write(dir.join("phoenix_hypervisor_config.json"), "{}").expect("write");
    std::fs::write(dir.join("phoenix_lxc_configs.json"), lxc).expect("write");
    let (sources, early) = phoenix_config::load(&dir, &fs);
    let v = phoenix_config::validate(&sources, early, &fs);
    let estate = v.estate.unwrap_or_else(|| panic!("{:#?}", v.reports));
    let d = desired(&estate, &|_| Vec::new());
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(field(&d, 901, "flags").as_deref(), Some("fuse=1,keyctl=0,nesting=1"));
    // Docker with nothing said of nesting: turned on, as the shell version did.
    assert_eq!(field(&d, 902, "flags").as_deref(), Some("nesting=1"));
}

/// A fresh directory under the system's temporary directory.
fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("phoenix-plan-generations-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir
}

#[test]
fn proxmox_defaults_fill_what_containers_leave_out_and_the_rest_is_said_to_be_unused() {
    let fs = phoenix_config::RealFilesystem;
    let dir = std::env::temp_dir().join(format!("phoenix-plan-defaults-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let ct = |name: &str, ip: &str, extra: &str| {
        format!(
            r#"{{"name": "{name}", "memory_mb": 1024, "cores": 1, "storage_pool": "local", "storage_size_gb": 8,
                "network_config": {{"name": "eth0", "bridge": "vmbr0", "ip": "10.9.0.{ip}/24", "gw": "10.9.0.1" {extra}}}"#
        )
    };
    let hv = r#"{"proxmox_defaults": {"swap_mb": 256, "nameservers": ["10.9.0.1"], "unprivileged": false,
                  "start_at_boot": true, "cores": 2, "network_bridge": "vmbr1",
                  "template": "local:vztmpl/x.tar.zst"}}"#;
    let lxc = format!(
        r#"{{"lxc_configs": {{"900": {}, "901": {}}}}}"#,
        ct("plain", "10", "}"),
        ct("own", "11", r#", "nameservers": ["1.1.1.1"]}, "swap_mb": 0, "unprivileged": true, "start_at_boot": false"#),
    );
    std::fs::write(dir.join("phoenix_hypervisor_config.json"), hv).expect("write");
    std::fs::write(dir.join("phoenix_lxc_configs.json"), lxc).expect("write");
    let (sources, early) = phoenix_config::load(&dir, &fs);
    let v = phoenix_config::validate(&sources, early, &fs);
    std::fs::remove_dir_all(&dir).ok();
    let estate = v.estate.clone().unwrap_or_else(|| panic!("{:#?}", v.reports));
    let d = desired(&estate, &|_| Vec::new());
    // 900 says none of them: the defaults.
    for (name, want) in [("swap_mb", "256"), ("net.nameservers", "10.9.0.1"), ("unprivileged", "0"), ("onboot", "1")] {
        assert_eq!(field(&d, 900, name).as_deref(), Some(want), "900 {name}");
    }
    // 901 says its own: kept.
    for (name, want) in [("swap_mb", "0"), ("net.nameservers", "1.1.1.1"), ("unprivileged", "1"), ("onboot", "0")] {
        assert_eq!(field(&d, 901, name).as_deref(), Some(want), "901 {name}");
    }
    assert_eq!(field(&d, 900, "cores").as_deref(), Some("1"));
    // Defaults no container can take are warned about, each at its key.
    let warned: Vec<String> = v
        .reports
        .iter()
        .filter(|r| r.message.starts_with("not used: every container gives its own"))
        .filter_map(|r| r.location.as_ref().map(|l| l.path.clone()))
        .collect();
    assert_eq!(warned, ["$.proxmox_defaults.cores", "$.proxmox_defaults.network_bridge"]);
}
