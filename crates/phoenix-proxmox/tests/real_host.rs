//! The opt-in suite against a real Proxmox VE host: the scenario of `support/scenario.rs` (which
//! CI runs against the test double) run on a real node, with IDs no guest has and everything it
//! made destroyed at the end, whether it passed or not. It is built only with the `real-pve`
//! feature, so CI never builds it; without its settings it is skipped with a message saying
//! which are missing.
//!
//! ```text
//! PHOENIX_PVE_API_URL=https://pve1.lab.example:8006 PHOENIX_PVE_NODE=pve1 \
//! PHOENIX_PVE_TOKEN_ID='phoenix@pve!test' PHOENIX_PVE_TOKEN_SECRET=... \
//! PHOENIX_PVE_FINGERPRINT=AB:CD:... PHOENIX_PVE_SSH_HOST=pve1.lab.example \
//! cargo test -p phoenix-proxmox --features real-pve --test real_host -- --nocapture
//! ```
//!
//! The README lists every setting and its default.

mod support;

use std::sync::Arc;

use phoenix_proxmox::backend::ProxmoxBackend;
use phoenix_proxmox::node::channel::{NodeChannel, SshNodes, SshTarget};
use phoenix_proxmox::transport::api::{ApiClient, Auth, TlsVerify};
use support::scenario::{Site, VmSite, free_ids, lifecycle, vm_lifecycle};

/// A setting from the environment, or its default.
fn var(name: &str, default: &str) -> String {
    std::env::var(name).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_string())
}

/// The real host the environment names: a backend for it (after its preflight), the
/// configuration's backend section for it, and the first ID the scenarios may take; `None`
/// (skipped, saying why) when settings are missing outside CI.
#[allow(clippy::print_stderr, reason = "the person running the opt-in suite reads what it used")]
fn real_host(extra_required: &[&str]) -> Option<(ProxmoxBackend, String, u32)> {
    let mut required = vec![
        "PHOENIX_PVE_API_URL",
        "PHOENIX_PVE_NODE",
        "PHOENIX_PVE_TOKEN_ID",
        "PHOENIX_PVE_TOKEN_SECRET",
        "PHOENIX_PVE_SSH_HOST",
    ];
    required.extend_from_slice(extra_required);
    let missing: Vec<&str> = required.iter().copied().filter(|v| var(v, "").is_empty()).collect();
    let why = (!missing.is_empty()).then(|| format!("{} not set (see the README)", missing.join(", ")));
    if !phoenix_testkit::real_component("the suite against a real Proxmox host", why) {
        return None;
    }
    let url = var("PHOENIX_PVE_API_URL", "");
    let node = var("PHOENIX_PVE_NODE", "");
    let authority = url.trim_start_matches("https://").split('/').next().unwrap_or_default().to_string();
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().expect("PHOENIX_PVE_API_URL: a port number")),
        None => (authority.clone(), 8006),
    };
    let fingerprint = var("PHOENIX_PVE_FINGERPRINT", "");
    let ca_file = var("PHOENIX_PVE_CA_FILE", "");
    let tls = if !fingerprint.is_empty() {
        TlsVerify::fingerprint(&fingerprint).expect("PHOENIX_PVE_FINGERPRINT: AB:CD:... (32 bytes)")
    } else {
        let ca = if ca_file.is_empty() { "/etc/ssl/certs/ca-certificates.crt" } else { ca_file.as_str() };
        TlsVerify::Ca(std::fs::read(ca).expect("the CA file"))
    };
    let token_id = var("PHOENIX_PVE_TOKEN_ID", "");
    let token = Auth::Token { id: token_id.clone(), secret: var("PHOENIX_PVE_TOKEN_SECRET", "") };
    let api = ApiClient::new(&host, port, token, tls.clone()).expect("API client");
    let home = var("HOME", "/root");
    let ssh = SshTarget {
        host: var("PHOENIX_PVE_SSH_HOST", ""),
        port: var("PHOENIX_PVE_SSH_PORT", "22").parse().expect("PHOENIX_PVE_SSH_PORT"),
        user: var("PHOENIX_PVE_SSH_USER", "root"),
        identity: std::env::var("PHOENIX_PVE_SSH_IDENTITY").ok().map(Into::into),
        known_hosts: var("PHOENIX_PVE_SSH_KNOWN_HOSTS", &format!("{home}/.ssh/known_hosts")).into(),
        control_dir: std::env::temp_dir(),
    };
    let hosts = [(node.clone(), ssh.host.clone())].into();
    let channel: Arc<dyn NodeChannel> = Arc::new(SshNodes { settings: ssh, hosts });
    let mut backend = ProxmoxBackend::new(api, &node, Some(channel));
    let root_password = var("PHOENIX_PVE_ROOT_PASSWORD", "");
    if !root_password.is_empty() {
        let root = Auth::Password { user: "root@pam".into(), password: root_password };
        backend = backend.with_root_api(ApiClient::new(&host, port, root, tls).expect("root client"));
    }
    let version = backend.preflight().expect("preflight");
    eprintln!("Proxmox VE {version} at {url}, node {node}");
    let tls_json = if !fingerprint.is_empty() {
        format!(r#", "tls": {{"fingerprint": "{fingerprint}"}}"#)
    } else if !ca_file.is_empty() {
        format!(r#", "tls": {{"ca_file": "{ca_file}"}}"#)
    } else {
        String::new()
    };
    let backend_json = format!(
        r#"{{"type": "proxmox", "api_url": "{url}", "node": "{node}",
             "token": {{"id": "{token_id}", "secret": "env:PHOENIX_PVE_TOKEN_SECRET"}} {tls_json}}}"#
    );
    let first: u32 = var("PHOENIX_PVE_FIRST_ID", "99000").parse().expect("PHOENIX_PVE_FIRST_ID");
    Some((backend, backend_json, first))
}

#[test]
#[allow(clippy::print_stderr, reason = "the person running the opt-in suite reads what it used")]
fn the_lifecycle_runs_on_a_real_proxmox_host() {
    let Some((backend, backend_json, first)) = real_host(&[]) else { return };
    let ips = var("PHOENIX_PVE_IPS", "");
    let addresses = match ips.split(',').collect::<Vec<_>>().as_slice() {
        [a, b, gw] => Some((a.to_string(), b.to_string(), gw.to_string())),
        [""] => None,
        _ => panic!(
            "PHOENIX_PVE_IPS: two addresses with prefix and the gateway, e.g. 10.0.0.50/24,10.0.0.51/24,10.0.0.1"
        ),
    };
    let site = Site {
        storage: var("PHOENIX_PVE_STORAGE", "local-lvm"),
        template: var("PHOENIX_PVE_TEMPLATE", "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"),
        bridge: var("PHOENIX_PVE_BRIDGE", "vmbr0"),
        addresses,
    };
    let ids = free_ids(&backend, first);
    eprintln!("containers: using IDs {} and {}", ids.0, ids.1);
    let dir = tempfile::tempdir().expect("tmp");
    lifecycle(&backend, &site, ids, dir.path(), &|dir, lxc| support::estate_with(dir, &backend_json, "", lxc));
}

#[test]
#[allow(clippy::print_stderr, reason = "the person running the opt-in suite reads what it used")]
fn the_vm_lifecycle_runs_on_a_real_proxmox_host() {
    let Some((backend, backend_json, first)) = real_host(&["PHOENIX_PVE_VM_IMAGE"]) else { return };
    let site = VmSite {
        storage: var("PHOENIX_PVE_STORAGE", "local-lvm"),
        bridge: var("PHOENIX_PVE_BRIDGE", "vmbr0"),
        image: var("PHOENIX_PVE_VM_IMAGE", ""),
    };
    // Apart from the containers' IDs, should both tests run at once.
    let ids = free_ids(&backend, first + 100);
    eprintln!("VMs: using IDs {} and {}", ids.0, ids.1);
    let dir = tempfile::tempdir().expect("tmp");
    vm_lifecycle(&backend, &site, ids, dir.path(), &|dir, lxc| support::estate_with(dir, &backend_json, "", lxc));
}
