//! `phoenix adopt` against the PVE test double: containers and a VM made directly through the
//! API, as the shell version made them (no Phoenix mark), are surveyed by a dry run that sends no
//! request that changes anything, then adopted — only their description changes — and planned
//! again as nothing, or as exactly the field that differs.

mod support;

use std::time::Duration;

use phoenix_cli::{Connect, ConnectError, Connected};
use phoenix_proxmox::transport::api::{ApiClient, Auth, TlsVerify};
use phoenix_proxmox::transport::task::Poll;
use phoenix_pve_double::{Credentials, PveDouble, PveVersion};
use serde_json::Value;

const TOKEN: (&str, &str) = ("phoenix@pve!ci", "0f9e8d7c-6b5a-4321-9abc-def012345678");
const TEMPLATE: &str = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst";
const IMAGE: &str = "images:import/noble-server-cloudimg-amd64.img";
/// The same image as the configuration names it: its path in the storage's `import` directory.
const IMAGE_PATH: &str = "/var/lib/images/import/noble-server-cloudimg-amd64.img";

fn client(double: &PveDouble) -> ApiClient {
    ApiClient::new(
        "127.0.0.1",
        double.addr.port(),
        Auth::Token { id: TOKEN.0.into(), secret: TOKEN.1.into() },
        TlsVerify::fingerprint(&double.fingerprint).expect("pin"),
    )
    .expect("client")
}

fn connect(double: &PveDouble) -> impl Fn(&phoenix_config::Estate) -> Result<Connected, ConnectError> + use<> {
    support::double_connect(double, TOKEN)
}

fn phoenix(dir: &std::path::Path, connect: &Connect, args: &[&str]) -> (u8, String, String) {
    support::phoenix_in(dir, args, connect)
}

/// A call that starts a task, waited for.
fn task(api: &ApiClient, method: &str, path: &str, params: &[(&str, String)]) {
    let data = api.request(method, path, params).unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    if let Some(upid) = data.as_str() {
        let upid: phoenix_proxmox::transport::upid::Upid = upid.parse().expect("UPID");
        let poll = Poll { first: Duration::from_millis(5), max: Duration::from_millis(20) };
        phoenix_proxmox::transport::task::wait(api, &upid, poll, Duration::from_secs(10)).expect("task");
    }
}

/// A container as the shell version made it: `pct create` with the configuration's settings,
/// its own description, started.
fn shell_container(api: &ApiClient, id: u32, name: &str, memory: u32, ip: &str) {
    task(
        api,
        "POST",
        "/nodes/pve1/lxc",
        &[
            ("vmid", id.to_string()),
            ("ostemplate", TEMPLATE.into()),
            ("hostname", name.into()),
            ("memory", memory.to_string()),
            ("cores", "2".into()),
            ("rootfs", "local-zfs:10".into()),
            ("net0", format!("name=eth0,bridge=vmbr0,ip={ip}/24,gw=10.0.0.1")),
            ("unprivileged", "1".into()),
            ("description", "built by phoenix_orchestrator.sh".into()),
        ],
    );
    task(api, "POST", &format!("/nodes/pve1/lxc/{id}/status/start"), &[]);
}

/// A VM as the shell version made it: from the cloud image, its disk grown, started.
fn shell_vm(api: &ApiClient, id: u32) {
    task(
        api,
        "POST",
        "/nodes/pve1/qemu",
        &[
            ("vmid", id.to_string()),
            ("name", "app-vm".into()),
            ("cores", "2".into()),
            ("memory", "2048".into()),
            ("scsihw", "virtio-scsi-single".into()),
            ("scsi0", format!("local-zfs:0,import-from={IMAGE}")),
            ("ide2", "local-zfs:cloudinit".into()),
            ("agent", "enabled=1".into()),
            ("net0", "virtio,bridge=vmbr0".into()),
            ("ipconfig0", "ip=10.0.0.99/24,gw=10.0.0.1".into()),
        ],
    );
    task(api, "PUT", &format!("/nodes/pve1/qemu/{id}/resize"), &[("disk", "scsi0".into()), ("size", "16G".into())]);
    task(api, "POST", &format!("/nodes/pve1/qemu/{id}/status/start"), &[]);
}

fn write_config(dir: &std::path::Path, double: &PveDouble) {
    std::fs::write(dir.join("token"), TOKEN.1).expect("token");
    std::fs::write(
        dir.join("phoenix_hypervisor_config.json"),
        format!(
            r#"{{"backend": {{"type": "proxmox", "api_url": "https://127.0.0.1:{}", "node": "pve1",
                 "token": {{"id": "{}", "secret": "file:{}"}}, "tls": {{"fingerprint": "{}"}}}}}}"#,
            double.addr.port(),
            TOKEN.0,
            dir.join("token").display(),
            double.fingerprint
        ),
    )
    .expect("write");
    let c = |id: u32, name: &str, ip: &str| {
        format!(
            r#""{id}": {{"name": "{name}", "memory_mb": 1024, "cores": 2, "storage_pool": "local-zfs", "storage_size_gb": 10,
                "template": "{TEMPLATE}", "features": ["base_setup", "ollama"],
                "network_config": {{"name": "eth0", "bridge": "vmbr0", "ip": "{ip}/24", "gw": "10.0.0.1"}}, "unprivileged": true}}"#
        )
    };
    std::fs::write(
        dir.join("phoenix_lxc_configs.json"),
        format!(r#"{{"lxc_configs": {{ {}, {} }}}}"#, c(950, "web", "10.0.0.50"), c(951, "db", "10.0.0.51")),
    )
    .expect("write");
    std::fs::write(
        dir.join("phoenix_vm_configs.json"),
        format!(
            r#"{{"vms": [{{"vmid": 8100, "name": "app-vm", "template_image": "{IMAGE_PATH}", "cores": 2, "memory_mb": 2048,
                 "disk_size_gb": 16, "storage_pool": "local-zfs", "network_bridge": "vmbr0",
                 "network_config": {{"ip": "10.0.0.99/24", "gw": "10.0.0.1"}}, "features": ["base_setup"]}}]}}"#
        ),
    )
    .expect("write");
    for f in ["base_setup", "ollama"] {
        let d = dir.join("features").join(f);
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(d.join("feature.json"), format!(r#"{{"name": "{f}"}}"#)).expect("write");
        std::fs::write(d.join("install.sh"), "#!/bin/sh\ntrue\n").expect("write");
    }
}

/// Requests sent since `from` that are not `GET`s, as `METHOD path`.
fn non_gets(double: &PveDouble, from: usize) -> Vec<String> {
    double.requests()[from..].iter().filter(|r| r.method != "GET").map(|r| format!("{} {}", r.method, r.path)).collect()
}

fn description(api: &ApiClient, path: &str) -> String {
    api.request("GET", path, &[]).expect("config")["description"].as_str().unwrap_or_default().to_string()
}

#[test]
fn guests_the_shell_version_built_are_adopted_as_they_are_on_proxmox() {
    for version in PveVersion::ALL {
        adopt_on(version);
    }
}

fn adopt_on(version: PveVersion) {
    let double = PveDouble::start(
        version,
        Credentials { token: (TOKEN.0.into(), TOKEN.1.into()), root_password: "root-pw".into() },
    );
    double.set_task_duration(Duration::from_millis(10));
    double.add_dir_storage("images", "/var/lib/images", "iso,vztmpl,import");
    double.add_image(IMAGE, 2_361_393_152);
    double.set_agent_delay(Duration::from_millis(20));
    let api = client(&double);
    shell_container(&api, 950, "web", 1024, "10.0.0.50");
    shell_container(&api, 951, "db", 512, "10.0.0.51");
    shell_vm(&api, 8100);
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path();
    write_config(p, &double);
    let connect = connect(&double);

    // Foreign guests block their IDs until they are adopted.
    let (code, _, err) = phoenix(p, &connect, &["plan"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("950 exists but was not created by Phoenix") && err.contains("`phoenix adopt 950`"), "{err}");

    // A dry run: everything shown, no request that changes anything. Only reads and the probes
    // ran inside the guests (`pct exec` on the node; a VM's guest agent answers `ping` and
    // `exec` only as POSTs, though they change nothing).
    let (seen, commands) = (double.requests().len(), double.node_channel().commands().len());
    let (code, out, err) = phoenix(p, &connect, &["adopt", "--dry-run"]);
    assert_eq!(code, 0, "{out}{err}");
    for line in [
        "~ 950 web (container, running): adopt",
        "> record feature:base_setup — base_setup is done in every guest that runs",
        "> record feature:ollama — `command -v ollama` succeeded inside the guest",
        "~ 951 db (container, running): adopt",
        "~ memory_mb: 512 → 1024 (live)",
        "~ 8100 app-vm (VM, running): adopt",
        "Adopt: 3 guest(s).",
    ] {
        assert!(out.contains(line), "no {line:?} in\n{out}");
    }
    assert!(err.contains("dry run: nothing was changed"), "{err}");
    let sent = non_gets(&double, seen);
    assert!(
        sent.iter()
            .all(|r| r.starts_with("POST /nodes/pve1/qemu/8100/agent/")
                && (r.ends_with("/ping") || r.ends_with("/exec"))),
        "a dry run sent {sent:?}"
    );
    // The preflight's check that the node answers (`true`) aside.
    let ran: Vec<String> =
        double.node_channel().commands()[commands..].iter().map(|c| c.argv.join(" ")).filter(|c| c != "true").collect();
    assert!(!ran.is_empty(), "the probes and reads run in a dry run too");
    assert!(
        ran.iter().all(|c| c.starts_with("pct exec ") && (c.contains("phoenix-read") || c.contains("phoenix-probe"))),
        "a dry run ran {ran:?}"
    );
    assert_eq!(description(&api, "/nodes/pve1/lxc/950/config"), "built by phoenix_orchestrator.sh");

    // Adopted: the markers where the guest showed the features ran, then the mark, both in the
    // description; nothing else is sent — no configuration, no start, stop or restart.
    let before = api.request("GET", "/nodes/pve1/lxc/950/config", &[]).expect("config");
    let seen = double.requests().len();
    let (code, out, err) = phoenix(p, &connect, &["adopt", "950", "8100"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Adopted 2 guest(s): 950 (web), 8100 (app-vm)."), "{out}");
    let sent = non_gets(&double, seen);
    let expected = ["PUT /nodes/pve1/lxc/950/config", "PUT /nodes/pve1/qemu/8100/config"];
    assert!(
        sent.iter().all(|r| expected.contains(&r.as_str()) || r.starts_with("POST /nodes/pve1/qemu/8100/agent/")),
        "{sent:?}"
    );
    assert_eq!(sent.iter().filter(|r| expected.contains(&r.as_str())).count(), 4, "{sent:?}");
    let described = description(&api, "/nodes/pve1/lxc/950/config");
    let lines: Vec<&str> = described.lines().collect();
    assert_eq!(lines.len(), 3, "{described}");
    assert_eq!((lines[0], lines[2]), ("Managed by Phoenix.", "built by phoenix_orchestrator.sh"), "{described}");
    assert!(description(&api, "/nodes/pve1/qemu/8100/config").starts_with("Managed by Phoenix."));
    let after = api.request("GET", "/nodes/pve1/lxc/950/config", &[]).expect("config");
    let strip = |v: &Value| {
        let mut m = v.as_object().cloned().unwrap_or_default();
        m.remove("description");
        m.remove("digest");
        m
    };
    assert_eq!(strip(&before), strip(&after), "adoption changed more than the description");
    let markers = phoenix_proxmox::record::read(&described).expect("markers");
    let markers: serde_json::Map<String, Value> = serde_json::from_slice(&markers).expect("json");
    assert_eq!(markers.keys().collect::<Vec<_>>(), ["feature:base_setup", "feature:ollama"]);
    let vm_markers =
        phoenix_proxmox::record::read(&description(&api, "/nodes/pve1/qemu/8100/config")).expect("VM markers");
    assert!(String::from_utf8_lossy(&vm_markers).contains("feature:base_setup"));

    // They match their configuration: nothing to do.
    let (code, out, err) =
        phoenix(p, &connect, &["plan", "--detailed-exitcode", "--target", "950", "--target", "8100"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("No changes"), "{out}");

    // Without IDs, the one left; its one difference is all the next plan shows.
    let (code, out, err) = phoenix(p, &connect, &["adopt"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Adopted 1 guest(s): 951 (db)."), "{out}");
    let (code, out, err) = phoenix(p, &connect, &["plan", "--detailed-exitcode"]);
    assert_eq!(code, 2, "{out}{err}");
    let changes: Vec<&str> = out.lines().filter(|l| l.starts_with("    ~ ") || l.starts_with("    > ")).collect();
    assert_eq!(changes, ["    ~ memory_mb: 512 → 1024 (live)"], "{out}");
    assert!(out.contains("Plan: 0 to create, 1 to change, 2 unchanged."), "{out}");
    let (code, out, err) = phoenix(p, &connect, &["apply"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = phoenix(p, &connect, &["plan", "--detailed-exitcode"]);
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = phoenix(p, &connect, &["adopt", "950"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("950 (web) is Phoenix's already: nothing to adopt."), "{out}");
    // Every request was answered, but reads of the VM's markers before they existed (500 "No such
    // file or directory", as Proxmox answers).
    let refused: Vec<String> = double
        .requests()
        .iter()
        .filter(|r| r.status != 200 && !r.path.ends_with("/agent/file-read"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(refused.is_empty(), "{refused:?}");
}
