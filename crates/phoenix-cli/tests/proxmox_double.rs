//! `plan`, `apply`, `status` and `destroy` through the command line's real backend connection,
//! against the PVE test double over HTTPS (the token read from a `file:` secret reference, the
//! certificate pinned by fingerprint); and the token read from Vault (a stand-in) instead.

mod support;
mod vault_double;

use std::time::Duration;

use phoenix_cli::Connect;
use phoenix_cli::secrets::Secrets;
use phoenix_pve_double::{Credentials, PveDouble, PveVersion};

fn phoenix(dir: &std::path::Path, args: &[&str]) -> (u8, String, String) {
    phoenix_with(dir, args, &phoenix_cli::backends::connect)
}

fn phoenix_with(dir: &std::path::Path, args: &[&str], connect: &Connect) -> (u8, String, String) {
    support::phoenix_in(dir, args, connect)
}

/// A double that accepts the token `phoenix@pve!ci` with `secret` (and `root_password` for
/// tickets), with short tasks.
fn start(version: PveVersion, secret: &str, root_password: &str) -> PveDouble {
    let double = PveDouble::start(
        version,
        Credentials { token: ("phoenix@pve!ci".into(), secret.into()), root_password: root_password.into() },
    );
    double.set_task_duration(Duration::from_millis(10));
    double
}

/// Writes the hypervisor file into `dir`: the backend at the double, pinned to its certificate,
/// with the token's secret given as `secret` (a reference), `backend_extra` added to the backend
/// section and `extra` to the file.
fn write_hypervisor(dir: &std::path::Path, double: &PveDouble, secret: &str, backend_extra: &str, extra: &str) {
    let hv = format!(
        r#"{{"backend": {{"type": "proxmox", "api_url": "https://127.0.0.1:{}", "node": "pve1",
             "token": {{"id": "phoenix@pve!ci", "secret": "{secret}"}}, "tls": {{"fingerprint": "{}"}} {backend_extra}}}
            {extra}}}"#,
        double.addr.port(),
        double.fingerprint
    );
    std::fs::write(dir.join("phoenix_hypervisor_config.json"), hv).expect("write");
}

#[test]
fn the_cli_builds_keeps_and_removes_containers_on_proxmox() {
    let secret = "0f9e8d7c-6b5a-4321-9abc-def012345678";
    for version in PveVersion::ALL {
        drive(version, secret);
    }
}

fn drive(version: PveVersion, secret: &str) {
    let double = start(version, secret, "root-pw");
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path();
    std::fs::write(p.join("token"), format!("{secret}\n")).expect("token");
    write_hypervisor(p, &double, &format!("file:{}", p.join("token").display()), "", "");
    let c = |id: u32, name: &str, extra: &str| {
        format!(
            r#""{id}": {{"name": "{name}", "memory_mb": 1024, "cores": 1, "storage_pool": "local-zfs", "storage_size_gb": 10,
                "network_config": {{"name": "eth0", "bridge": "vmbr0", "ip": "10.0.0.{}/24", "gw": "10.0.0.1"}}, "unprivileged": true {extra}}}"#,
            id - 890
        )
    };
    let lxc = format!(
        r#"{{"lxc_configs": {{ {}, {} }}}}"#,
        c(
            900,
            "tpl",
            r#", "template": "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst", "template_snapshot_name": "ready""#
        ),
        c(901, "web-1", r#", "clone_from_ctid": "900""#)
    );
    std::fs::write(p.join("phoenix_lxc_configs.json"), lxc).expect("write");

    let (code, out, err) = phoenix(p, &["plan", "--detailed-exitcode"]);
    assert_eq!(code, 2, "{out}{err}");
    let shown = if version == PveVersion::V8 { "8.4.5" } else { "9.2.3" };
    assert!(err.contains(&format!("note: Proxmox VE {shown} at https://127.0.0.1:")), "{err}");
    assert!(out.contains("Plan: 2 to create, 0 to change, 0 unchanged."), "{out}");
    // A dry run reads and changes nothing: no request but GETs reaches the API.
    let (code, out, err) = phoenix(p, &["apply", "--dry-run"]);
    assert_eq!(code, 0, "{out}{err}");
    let writes: Vec<String> =
        double.requests().iter().filter(|r| r.method != "GET").map(|r| format!("{} {}", r.method, r.path)).collect();
    assert!(writes.is_empty(), "a dry run sent {writes:?}");
    assert!(double.node_channel().commands().is_empty(), "a dry run ran commands on the node");
    let (code, out, err) = phoenix(p, &["apply"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Apply complete: 2 created"), "{out}");
    let (code, out, _) = phoenix(p, &["plan", "--detailed-exitcode"]);
    assert_eq!(code, 0, "{out}");
    let (_, out, _) = phoenix(p, &["status"]);
    assert_eq!(out.lines().filter(|l| l.contains("completed") && l.contains("pve1")).count(), 2, "{out}");
    // The running clone's address, as it reports it on its interfaces.
    assert!(out.lines().any(|l| l.contains("web-1") && l.contains("10.0.0.11")), "{out}");
    let (code, _, err) = phoenix(p, &["destroy", "--yes"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        double.requests().iter().all(|r| r.status == 200),
        "{:?}",
        double.requests().iter().find(|r| r.status != 200)
    );
    assert!(!format!("{out}{err}").contains(secret), "the token was printed");
    let (_, out, _) = phoenix(p, &["status"]);
    assert_eq!(out.lines().filter(|l| l.contains("defined")).count(), 2, "{out}");

    // A wrong token is refused before anything is planned.
    std::fs::write(p.join("token"), "wrong\n").expect("token");
    let (code, out, err) = phoenix(p, &["plan"]);
    assert_eq!(code, 1);
    assert!(out.is_empty() && err.contains("cannot use the Proxmox API") && err.contains("401"), "{err}");
}

#[test]
fn a_root_ticket_carries_root_only_settings_and_a_wrong_password_stops_before_any_change() {
    let (secret, password) = ("0f9e8d7c-6b5a-4321-9abc-def012345678", "root-pw-3f9a");
    let double = start(PveVersion::V9, secret, password);
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path();
    std::fs::write(p.join("token"), secret).expect("token");
    let write_config = |root_password: &str| {
        std::fs::write(p.join("root"), root_password).expect("root password");
        write_hypervisor(
            p,
            &double,
            &format!("file:{}", p.join("token").display()),
            &format!(r#", "root_ticket": {{"password": "file:{}"}}"#, p.join("root").display()),
            r#", "shared_volumes": {"models": {"host_path": "/srv/models", "mounts": {"901": "/models"}}}"#,
        );
    };
    let lxc = r#"{"lxc_configs": {"901": {"name": "web-1", "memory_mb": 1024, "cores": 1, "storage_pool": "local-zfs",
        "storage_size_gb": 10, "template": "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
        "network_config": {"name": "eth0", "bridge": "vmbr0", "ip": "10.0.0.11/24", "gw": "10.0.0.1"}, "unprivileged": true}}}"#;
    std::fs::write(p.join("phoenix_lxc_configs.json"), lxc).expect("write");

    write_config("not-the-password");
    let (code, out, err) = phoenix(p, &["apply"]);
    assert_ne!(code, 0, "{out}{err}");
    assert!(err.contains("the root@pam ticket: logging in as root@pam failed: 401"), "{err}");
    assert!(!out.contains("not-the-password") && !err.contains("not-the-password"));
    assert!(double.requests().iter().all(|r| r.method == "GET" || r.path == "/access/ticket"), "nothing changed");

    write_config(password);
    double.add_host_dir("/srv/models");
    let (code, out, err) = phoenix(p, &["plan"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(format!("{out}{err}").contains("the root@pam ticket"), "the plan names the route: {out}{err}");
    let (code, out, err) = phoenix(p, &["apply"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(double.conf_file(901).expect("created").contains("mp0: /srv/models,mp=/models\n"));
    assert!(!format!("{out}{err}").contains(password), "the password is never shown");
}

#[test]
fn the_proxmox_token_can_come_from_vault() {
    let (secret, vault_token) = ("5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d", "hvs.CAESIPq7Zt2vKx9");
    let double = start(PveVersion::V9, secret, "root-pw");
    let vault = vault_double::VaultDouble::start(vault_token);
    vault.mount("", "secret", 2);
    vault.put("", "secret", "proxmox/pve1", serde_json::json!({ "token_secret": secret }));
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path();
    std::fs::write(p.join("vault-ca.pem"), &vault.ca_pem).expect("CA");
    write_hypervisor(p, &double, "vault:secret/proxmox/pve1#token_secret", "", "");
    let lxc = r#"{"lxc_configs": {"901": {"name": "web-1", "memory_mb": 1024, "cores": 1, "storage_pool": "local-zfs",
        "storage_size_gb": 10, "template": "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
        "network_config": {"name": "eth0", "bridge": "vmbr0", "ip": "10.0.0.11/24", "gw": "10.0.0.1"}, "unprivileged": true}}}"#;
    std::fs::write(p.join("phoenix_lxc_configs.json"), lxc).expect("write");
    let environment = |token: &str| {
        let vars = [
            ("VAULT_ADDR".to_string(), vault.addr.clone()),
            ("VAULT_TOKEN".to_string(), token.to_string()),
            ("VAULT_CACERT".to_string(), p.join("vault-ca.pem").display().to_string()),
        ];
        let map: std::collections::HashMap<String, String> = vars.into_iter().collect();
        std::sync::Arc::new(Secrets::new(move |name| map.get(name).cloned()))
    };

    let secrets = environment(vault_token);
    let (code, out, err) = phoenix_with(p, &["plan", "--detailed-exitcode"], &move |estate| {
        phoenix_cli::backends::connect_with_secrets(estate, phoenix_cli::backends::PVESH, &secrets)
    });
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.contains("Plan: 1 to create, 0 to change, 0 unchanged."), "{out}");
    assert!(double.requests().iter().all(|r| r.status == 200), "the token from Vault was accepted");
    let shown = format!("{out}{err}");
    assert!(!shown.contains(secret) && !shown.contains(vault_token), "no secret is shown");
    assert_eq!(vault.requests().iter().filter(|r| r.path == "secret/data/proxmox/pve1").count(), 1);

    // A Vault token without access stops the run before Proxmox is asked anything.
    let asked = double.requests().len();
    let secrets = environment("hvs.revoked");
    let (code, out, err) = phoenix_with(p, &["plan"], &move |estate| {
        phoenix_cli::backends::connect_with_secrets(estate, phoenix_cli::backends::PVESH, &secrets)
    });
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("`backend.token.secret` (vault:secret/proxmox/pve1#token_secret): Vault refused to read `secret/proxmox/pve1`"),
        "{err}"
    );
    assert!(err.contains("hint:") && !err.contains("hvs.revoked") && !err.contains(secret), "{err}");
    assert_eq!(double.requests().len(), asked, "nothing was sent to Proxmox");
}

#[test]
fn the_cli_builds_and_keeps_vms_on_proxmox() {
    let secret = "0f9e8d7c-6b5a-4321-9abc-def012345678";
    let double = start(PveVersion::V9, secret, "root-pw");
    double.add_dir_storage("images", "/var/lib/images", "iso,vztmpl,import");
    double.add_image("images:import/noble-server-cloudimg-amd64.img", 2_361_393_152);
    double.set_agent_delay(Duration::from_millis(20));
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path();
    std::fs::write(p.join("token"), secret).expect("token");
    let hash = "$6$salt$Cli.Vm.Hash.Never.Shown";
    std::fs::write(p.join("admin.hash"), hash).expect("hash");
    write_hypervisor(p, &double, &format!("file:{}", p.join("token").display()), "", "");
    let vms = format!(
        r#"{{"vm_defaults": {{"cores": 2, "memory_mb": 2048, "disk_size_gb": 16, "storage_pool": "local-zfs", "network_bridge": "vmbr0"}},
            "vms": [
              {{"vmid": 8000, "name": "vm-template", "is_template": true,
                "template_image": "/var/lib/images/import/noble-server-cloudimg-amd64.img", "template_snapshot_name": "ready",
                "network_config": {{"ip": "dhcp"}},
                "user_config": {{"username": "admin", "password_hash": "file:{}"}}}},
              {{"vmid": 8001, "name": "app-vm", "clone_from_vmid": 8000, "memory_mb": 4096,
                "network_config": {{"ip": "10.0.0.99/24", "gw": "10.0.0.1"}}}}
            ]}}"#,
        p.join("admin.hash").display()
    );
    std::fs::write(p.join("phoenix_vm_configs.json"), vms).expect("write");

    let (code, out, err) = phoenix(p, &["plan", "--detailed-exitcode"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.contains("Plan: 2 to create"), "{out}");
    let (code, out, err) = phoenix(p, &["apply"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Apply complete: 2 created"), "{out}");
    let (code, out, err) = phoenix(p, &["--output", "json", "plan", "--detailed-exitcode"]);
    assert_eq!(code, 0, "planned again: {out}{err}");
    assert_eq!(double.vm_config(8000).expect("template")["cipassword"], hash);
    assert_eq!(double.vm_config(8001).expect("clone")["memory"], "4096");
    let (_, status, _) = phoenix(p, &["status"]);
    assert!(status.lines().any(|l| l.contains("app-vm") && l.contains("VM") && l.contains("10.0.0.99")), "{status}");
    let (code, _, err) = phoenix(p, &["destroy", "--yes"]);
    assert_eq!(code, 0, "{err}");
    assert!(double.vm_config(8000).is_none() && double.vm_config(8001).is_none());
    let everything = format!("{out}{err}{status}");
    assert!(!everything.contains("Cli.Vm.Hash") && !everything.contains(secret), "a secret was printed");
}
