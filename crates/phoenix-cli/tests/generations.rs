//! Users' files of every generation of the format (August 2025 to November 2025), written in the
//! shapes the shell version's users have: each rule of reading them, by exit code and message;
//! and a September-2025-style stack, laid out as the shell kept it, validated and planned
//! against the PVE test double.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use phoenix_pve_double::{Credentials, PveDouble, PveVersion};

/// The hypervisor file of most cases: one bridge, nothing else.
const HV: &str = r#"{"network": {"interfaces": {"name": "vmbr0", "address": "10.0.0.13/24", "gateway": "10.0.0.1"}}}"#;

/// A container in the shape every generation shares, with `extra` members added.
fn ct(name: &str, ip: &str, extra: &str) -> String {
    format!(
        r#"{{"name": "{name}", "memory_mb": 2048, "cores": 2, "storage_pool": "local-zfs", "storage_size_gb": 16,
            "network_config": {{"name": "eth0", "bridge": "vmbr0", "ip": "10.0.0.{ip}/24", "gw": "10.0.0.1"}} {extra}}}"#
    )
}

/// A base template every clone below comes from.
fn base(extra: &str) -> String {
    ct(
        "base",
        "200",
        &format!(
            r#", "unprivileged": true, "template": "local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst",
                "template_snapshot_name": "base" {extra}"#
        ),
    )
}

/// Runs the command line in-process on a configuration directory.
fn phoenix(dir: &Path, args: &[&str]) -> (u8, String, String) {
    support::phoenix_in(dir, args, &phoenix_cli::backends::connect)
}

/// Writes the files and validates them.
fn validate(files: &[(&str, &str)]) -> (u8, String, String) {
    let dir = tempfile::tempdir().expect("tmp");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write");
    }
    phoenix(dir.path(), &["validate"])
}

fn lxc(containers: &[(&str, String)]) -> String {
    let body: Vec<String> = containers.iter().map(|(id, c)| format!("\"{id}\": {c}")).collect();
    format!(r#"{{"lxc_configs": {{ {} }}}}"#, body.join(", "))
}

/// The number of diagnostics of a code in the text output.
fn count(err: &str, code: &str) -> usize {
    err.matches(&format!("[{code}]")).count()
}

#[test]
fn august_2025_v0_containers_read_in_the_current_form() {
    // v0: `features` held the container's feature flags, `static_ip` repeated the address, and
    // clones named their source `clone_from_template_ctid`.
    let files = lxc(&[
        ("900", base(r#", "features": "nesting=1,keyctl=1", "static_ip": "10.0.0.200/24""#)),
        ("901", ct("clone", "201", r#", "unprivileged": true, "clone_from_template_ctid": "900""#)),
    ]);
    let (code, out, err) = validate(&[("phoenix_hypervisor_config.json", HV), ("phoenix_lxc_configs.json", &files)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("`features` written as a string (the v0 format) holds container feature flags"), "{err}");
    assert!(err.contains(r#"read as `pct_options` ["nesting=1","keyctl=1"]"#), "{err}");
    assert!(err.contains("`static_ip` (the v0 format) repeats `network_config.ip`"), "{err}");
    assert!(err.contains("`clone_from_template_ctid` (an older name) is read as `clone_from_ctid`"), "{err}");
    assert_eq!(count(&err, "legacy-form"), 3, "{err}");
}

#[test]
fn a_v0_static_ip_that_differs_from_the_interface_is_refused() {
    let files = lxc(&[("900", base(r#", "static_ip": "10.0.0.201/24""#))]);
    let (code, _, err) = validate(&[("phoenix_hypervisor_config.json", HV), ("phoenix_lxc_configs.json", &files)]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("error[conflict]: `static_ip` (the v0 format) differs from `network_config.ip`"), "{err}");
}

#[test]
fn keys_of_older_generations_are_warnings_that_say_what_phoenix_does() {
    let files = lxc(&[(
        "900",
        base(
            r#", "apparmor_manages_nesting": true, "enable_lifecycle_snapshots": true,
               "traefik_service": {"name": "base", "port": 80}, "vllm_parameters": {"dtype": "auto"}"#,
        ),
    )]);
    let hv = r#"{"network": {"interfaces": {"name": "vmbr0", "address": "10.0.0.13/24"}, "fallback_dns": "8.8.8.8"},
                 "core_paths": {"hypervisor_marker": "/usr/local/phoenix_hypervisor/lib/.initialized"},
                 "proxmox_defaults": {"zfs_lxc_pool": "tank/lxc-disks", "lxc": {"cores": 2}},
                 "domain_name": "internal.example", "tests": {"smoke": []}}"#;
    let (code, out, err) = validate(&[("phoenix_hypervisor_config.json", hv), ("phoenix_lxc_configs.json", &files)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains(
            "`enable_lifecycle_snapshots` (Oct–Nov 2025 format) is accepted, not used by Phoenix: Phoenix takes no \
             lifecycle snapshots"
        ),
        "{err}"
    );
    assert!(err.contains("`traefik_service` (Oct–Nov 2025 format) is accepted, not used by Phoenix"), "{err}");
    assert!(err.contains("`vllm_parameters` (Sept 2025 format) is ignored: no version of the shell read it"), "{err}");
    assert!(err.contains("`tests` (Sept 2025 format) is ignored"), "{err}");
    for key in ["fallback_dns", "hypervisor_marker", "zfs_lxc_pool", "`lxc`", "domain_name"] {
        assert!(err.contains(key), "{key} missing: {err}");
    }
    assert_eq!(count(&err, "legacy-key"), 9, "{err}");
    assert!(!err.contains("unknown-key"), "{err}");
}

#[test]
fn a_key_of_no_generation_is_an_error_and_masks_no_other_check() {
    // `vllm_modle` is a typo; the same container's duplicate address and bad GPU list are still
    // reported in the same run.
    let files = lxc(&[
        ("900", base("")),
        ("950", ct("serve", "200", r#", "clone_from_ctid": "900", "vllm_modle": "x", "gpu_assignment": "0;1""#)),
    ]);
    let (code, _, err) = validate(&[("phoenix_hypervisor_config.json", HV), ("phoenix_lxc_configs.json", &files)]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("error[unknown-key]: unknown key `vllm_modle` in container 950"), "{err}");
    assert!(err.contains("hint: did you mean `vllm_model`?"), "{err}");
    assert_eq!(count(&err, "duplicate-ip"), 1, "{err}");
    assert_eq!(count(&err, "gpu-assignment"), 1, "{err}");
    assert!(!err.contains("belongs to no version"), "{err}");
}

#[test]
fn september_2025_host_sections_read_as_the_shell_read_them() {
    let hv = r#"{"network": {"interfaces": {"name": "vmbr0", "address": "10.0.0.13/24"}},
        "users": {"username": "phoenix_admin", "password_hash": "NOT_SET", "sudo_access": true, "ssh_public_key": ""},
        "samba": {"user": "lab", "password": "env:SAMBA_PASSWORD",
                  "shares": [{"name": "data", "path": "tank/data", "options": "browseable=yes writable=yes", "valid_users": ["lab"]}]},
        "zfs": {"pools": [{"name": "tank", "raid_level": "single", "disks": ["/dev/disk/by-id/a"]}],
                "datasets": [{"name": "data", "pool": "tank", "properties": ""}]},
        "shared_volumes": {"firewall": {"enabled": true, "default_input_policy": "DROP",
                           "global_firewall_rules": [{"type": "in", "action": "ACCEPT", "proto": "tcp", "port": "2049", "iface": "vmbr0"}]}}}"#;
    let (code, out, err) = validate(&[("phoenix_hypervisor_config.json", hv)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains(r#"share path "tank/data" is read as "/tank/data""#), "{err}");
    assert!(err.contains("read as smb.conf options: browseable = yes, writable = yes"), "{err}");
    assert!(err.contains("`firewall` inside `shared_volumes` is read as the host firewall"), "{err}");
    // An empty SSH key and empty ZFS properties mean none: nothing to say.
    assert!(!err.contains("ssh_public_key") && !err.contains("properties"), "{err}");
}

#[test]
fn clones_inherit_unprivileged_and_nesting_from_their_source() {
    let files = lxc(&[
        ("900", base(r#", "pct_options": ["nesting=1"]"#)),
        (
            "902",
            ct(
                "docker",
                "202",
                r#", "clone_from_ctid": "900", "features": ["docker"], "template_snapshot_name": "docker""#,
            ),
        ),
        (
            "999",
            ct("portainer", "99", r#", "clone_from_ctid": "902", "features": ["docker"], "portainer_role": "server""#),
        ),
    ]);
    let (code, out, err) = validate(&[("phoenix_hypervisor_config.json", HV), ("phoenix_lxc_configs.json", &files)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!err.contains("nesting") && !err.contains("unprivileged"), "{err}");
}

#[test]
fn apparmor_manages_nesting_is_the_nesting_flag() {
    let files = lxc(&[("900", base(r#", "apparmor_manages_nesting": true, "features": ["docker"]"#))]);
    let (code, out, err) = validate(&[("phoenix_hypervisor_config.json", HV), ("phoenix_lxc_configs.json", &files)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!err.contains("nesting"), "{err}");
}

#[test]
fn docker_without_any_nesting_setting_turns_it_on_with_a_warning() {
    let files = lxc(&[("900", base(r#", "features": ["docker"]"#))]);
    let (code, out, err) = validate(&[("phoenix_hypervisor_config.json", HV), ("phoenix_lxc_configs.json", &files)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("warning[feature-requirement]: feature `docker` needs the container's `nesting` flag"),
        "{err}"
    );
    assert!(err.contains("Phoenix turns it on (as the shell version did)"), "{err}");
}

#[test]
fn a_container_that_is_no_clone_must_say_whether_it_is_unprivileged() {
    let files =
        lxc(&[("900", ct("lone", "200", r#", "template": "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst""#))]);
    let (code, _, err) = validate(&[("phoenix_hypervisor_config.json", HV), ("phoenix_lxc_configs.json", &files)]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("error[missing-field]: missing required field `unprivileged` in container 900"), "{err}");
    assert!(err.contains("only clones may leave it out"), "{err}");
}

#[test]
fn the_vllm_model_may_come_from_the_engine_config_and_templates_need_none() {
    let files = lxc(&[
        ("900", base(r#", "gpu_assignment": "0", "features": ["nvidia", "vllm"], "vllm_model": null"#)),
        (
            "950",
            ct(
                "serve",
                "150",
                r#", "clone_from_ctid": "900", "gpu_assignment": "0", "features": ["vllm"],
                   "vllm_engine_config": {"ModelConfig": {"model": "Qwen/Qwen2.5-7B-Instruct-AWQ", "max_model_len": 4096},
                                          "ServerConfig": {"port": 8000}}"#,
            ),
        ),
        (
            "951",
            ct("install-only", "151", r#", "clone_from_ctid": "900", "gpu_assignment": "0", "features": ["vllm"]"#),
        ),
    ]);
    let (code, out, err) = validate(&[("phoenix_hypervisor_config.json", HV), ("phoenix_lxc_configs.json", &files)]);
    assert_eq!(code, 0, "{out}{err}");
    // Only the guest that neither is a template nor names a model is told it serves nothing.
    assert_eq!(count(&err, "missing-field"), 1, "{err}");
    assert!(err.contains(r#"at $.lxc_configs["951"]"#), "{err}");
    assert!(err.contains("feature `vllm` has no model to serve: it installs vLLM and serves nothing"), "{err}");
}

#[test]
fn proxmox_ranges_apply_not_the_old_schema_advice() {
    let files = lxc(&[(
        "900",
        ct(
            "small",
            "200",
            r#", "unprivileged": true, "template": "local:vztmpl/x.tar.zst", "memory_mb": 64, "cores": 64, "storage_size_gb": 4"#,
        ),
    )]);
    // `memory_mb` and `cores` are given twice above; JSON keeps the last, and says so.
    let files =
        files.replacen(r#""memory_mb": 2048, "cores": 2, "#, "", 1).replacen(r#""storage_size_gb": 16,"#, "", 1);
    let (code, out, err) = validate(&[("phoenix_hypervisor_config.json", HV), ("phoenix_lxc_configs.json", &files)]);
    assert_eq!(code, 0, "{out}{err}");
    let files = files.replace(r#""memory_mb": 64"#, r#""memory_mb": 8"#);
    let (code, _, err) = validate(&[("phoenix_hypervisor_config.json", HV), ("phoenix_lxc_configs.json", &files)]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("`memory_mb` is 8, below the minimum of 16"), "{err}");
}

#[test]
fn late_2025_vms_template_clones_bare_images_and_split_defaults() {
    // The hypervisor file's `vm_defaults` holds only `ubuntu_release`; the VM file has the rest.
    let hv = r#"{"network": {"interfaces": {"name": "vmbr0", "address": "10.0.0.13/24"}},
                 "vm_defaults": {"ubuntu_release": "noble"}}"#;
    let vms = r#"{"vm_defaults": {"template": "ubuntu-24.04-standard", "cores": 2, "memory_mb": 4096, "disk_size_gb": 50,
                                   "storage_pool": "local-zfs", "network_bridge": "vmbr0"},
        "vms": [
          {"vmid": 8000, "name": "ubuntu-2404-cloud-template", "is_template": true,
           "template_image": "noble-server-cloudimg-amd64.img", "network_config": {"ip": "dhcp"},
           "user_config": {"username": "phoenix_user"}},
          {"vmid": 8001, "name": "dr-phoenix", "clone_from_vmid": 8000, "features": ["base_setup", "docker"],
           "network_config": {"ip": "10.0.0.101/24", "gw": "10.0.0.1"}, "user_config": {"username": "phoenix_user"},
           "snapshots": {"pre_features": "a"}, "qm_options": ["--vga qxl"], "portainer_role": "agent",
           "volumes": [{"type": "nfs", "name": "persistent", "path": "/tank/vm/8001", "mount_point": "/persistent", "server": "10.0.0.13"}],
           "docker_stacks": ["qdrant"]}
        ]}"#;
    let (code, out, err) = validate(&[("phoenix_hypervisor_config.json", hv), ("phoenix_vm_configs.json", vms)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!err.contains("conflict") && !err.contains("clone-source") && !err.contains("file-not-found"), "{err}");
    assert_eq!(count(&err, "legacy-key"), 5, "{err}");

    // A setting given in both files with different values is a real overlap.
    let hv = hv.replace(r#""ubuntu_release": "noble""#, r#""ubuntu_release": "noble", "cores": 4"#);
    let (code, _, err) = validate(&[("phoenix_hypervisor_config.json", &hv), ("phoenix_vm_configs.json", vms)]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("`vm_defaults.cores` is 2 here and 4 in the hypervisor file"), "{err}");

    // A bare name that is no known cloud image, and no file, is explained.
    let vms = vms.replace("noble-server-cloudimg-amd64.img", "my-golden-image.img");
    let (code, _, err) = validate(&[("phoenix_hypervisor_config.json", HV), ("phoenix_vm_configs.json", &vms)]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(r#"cloud image "my-golden-image.img" does not exist"#), "{err}");
}

#[test]
fn inline_secrets_under_older_keys_are_found_and_masked() {
    let password = "NewKick@2025-secret";
    let hv = format!(
        r#"{{"network": {{"interfaces": {{"name": "vmbr0", "address": "10.0.0.13/24"}}}},
            "portainer_api": {{"admin_user": "admin", "admin_password": "{password}", "portainer_hostname": "p.example"}}}}"#
    );
    let vms = format!(
        r#"{{"vms": [{{"vmid": 8001, "name": "vm", "template_image": "noble-server-cloudimg-amd64.img", "cores": 1,
            "memory_mb": 1024, "storage_pool": "local-zfs", "network_bridge": "vmbr0",
            "portainer_admin_user": "admin", "portainer_admin_password": "{password}"}}]}}"#
    );
    let (code, out, err) = validate(&[("phoenix_hypervisor_config.json", &hv), ("phoenix_vm_configs.json", &vms)]);
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(count(&err, "inline-secret"), 2, "{err}");
    assert!(err.contains("`admin_password` holds a secret written inline"), "{err}");
    assert!(err.contains("`portainer_admin_password` holds a secret written inline"), "{err}");
    assert!(!format!("{out}{err}").contains(password), "the password was shown: {err}");
    assert!(err.contains(r#""admin_password": "********""#), "{err}");
}

/// The September 2025 stack of `tests/generations/sept-2025`, laid out as the shell kept it
/// (`etc/` for the files, `bin/` for the application scripts).
fn sept_2025() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/generations/sept-2025")
}

#[test]
fn a_stack_of_each_generation_validates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/generations");
    for (dir, summary) in [
        ("aug-2025-v0", "2 container(s), 0 VM(s)"),
        ("sept-2025/etc", "7 container(s), 0 VM(s)"),
        ("late-2025/etc", "5 container(s), 2 VM(s)"),
    ] {
        let (code, out, err) = phoenix(&root.join(dir), &["validate"]);
        assert_eq!(code, 0, "{dir}: {out}{err}");
        assert!(out.contains(&format!("ok: the configuration is valid: {summary}")), "{dir}: {out}");
        assert!(!err.contains("error"), "{dir}: {err}");
    }
}

#[test]
fn a_september_2025_stack_validates_and_plans_against_the_double() {
    // The files with a `backend` section with a `backend` section for the double added, as a user adds one.
    let tmp = tempfile::tempdir().expect("tmp");
    phoenix_testkit::copy_tree(&sept_2025(), tmp.path());
    let etc = tmp.path().join("etc");
    let double = PveDouble::start(
        PveVersion::V9,
        Credentials { token: ("phoenix@pve!ci".into(), "s3cret".into()), root_password: "root-pw".into() },
    );
    double.set_task_duration(Duration::from_millis(10));
    double.add_dir_storage("fastData", "/fastData/shared-iso", "iso,vztmpl");
    // The users' container disks are on their ZFS pool (`tank`): a storage that takes the
    // templates' snapshots.
    double.add_storage("tank-lxc-disks", "zfspool", "images,rootdir");
    double.set_devices("pve1", &["/dev/nvidia0", "/dev/nvidia1", "/dev/nvidiactl", "/dev/nvidia-uvm"]);
    let hv_path = etc.join("phoenix_hypervisor_config.json");
    let mut hv: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&hv_path).expect("read")).expect("json");
    hv["backend"] = serde_json::json!({
        "type": "proxmox", "api_url": format!("https://127.0.0.1:{}", double.addr.port()), "node": "pve1",
        "token": {"id": "phoenix@pve!ci", "secret": "env:PVE_TOKEN_SECRET"},
        "tls": {"fingerprint": double.fingerprint},
        "ssh": {"user": "root"}
    });
    std::fs::write(&hv_path, serde_json::to_string_pretty(&hv).expect("json")).expect("write");
    let connect = support::double_connect(&double, ("phoenix@pve!ci", "s3cret"));
    let (code, out, err) = support::phoenix_in(&etc, &["plan", "--detailed-exitcode"], &connect);
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.contains("Plan: 7 to create, 0 to change, 0 unchanged."), "{out}{err}");
    // Nesting inherited from the base template is not written again on the docker clones.
    assert!(double.requests().iter().all(|r| r.method == "GET"), "plan only reads");
}

#[test]
fn config_upgrade_shows_the_diff_then_rewrites_losing_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    phoenix_testkit::copy_tree(&sept_2025(), tmp.path());
    let etc = tmp.path().join("etc");
    let hv_path = etc.join("phoenix_hypervisor_config.json");
    let original = std::fs::read_to_string(&hv_path).expect("read");

    // A dry run shows the diff and changes nothing.
    let (code, out, err) = phoenix(&etc, &["config", "upgrade", "--dry-run"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("-                \"path\": \"tank/shared-data\","), "{out}");
    assert!(out.contains("+                \"path\": \"/tank/shared-data\","), "{out}");
    assert!(out.contains("+    \"firewall\": {"), "{out}");
    assert_eq!(std::fs::read_to_string(&hv_path).expect("read"), original);
    // Nobody at a terminal and no --yes: refused, nothing changed.
    let (code, _, err) = phoenix(&etc, &["config", "upgrade"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("refusing to rewrite the configuration without confirmation"), "{err}");
    assert_eq!(std::fs::read_to_string(&hv_path).expect("read"), original);

    let (code, out, err) = phoenix(&etc, &["config", "upgrade", "--yes"]);
    assert_eq!(code, 0, "{out}{err}");
    let backups: Vec<PathBuf> = std::fs::read_dir(&etc)
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "bak"))
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(std::fs::read_to_string(&backups[0]).expect("read"), original, "the original is kept");
    let upgraded = std::fs::read_to_string(&hv_path).expect("read");
    // Keys of older generations are kept, only the forms changed.
    for kept in ["hypervisor_marker", "zfs_lxc_pool", "\"iface\": \"vmbr0\""] {
        assert!(upgraded.contains(kept), "{kept} was lost");
    }
    let (code, out, err) = phoenix(&etc, &["validate"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!err.contains("legacy-form"), "{err}");
    let (code, out, _) = phoenix(&etc, &["config", "upgrade", "--dry-run"]);
    assert_eq!(code, 0);
    assert!(out.contains("Every file is in the current form; nothing to upgrade."), "{out}");
}

#[test]
fn a_vm_of_the_older_hypervisor_file_without_an_id_is_refused_with_why() {
    // September 2025 kept VMs in the hypervisor file, found by name; the shell numbered them.
    let hv = r#"{"network": {"interfaces": {"name": "vmbr0", "address": "10.0.0.13/24"}},
                 "vms": [{"name": "webserver-vm", "cores": 2, "memory_mb": 2048, "disk_size_gb": 32,
                          "storage_pool": "local-zfs", "network_bridge": "vmbr0",
                          "template_image": "noble-server-cloudimg-amd64.img", "post_create_scripts": ["setup.sh"]}]}"#;
    let (code, _, err) = validate(&[("phoenix_hypervisor_config.json", hv)]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("error[missing-field]: missing required field `vmid` in `vms[0]`"), "{err}");
    assert!(err.contains("the shell version took the first free ID from 9000 at each run"), "{err}");
    assert_eq!(count(&err, "legacy-key"), 1, "{err}");
}
