//! Connecting to the backend the configuration names.

use phoenix_backend::Backend;
use phoenix_config::Estate;
use phoenix_config::model::Backend as BackendSection;
use phoenix_config::model::{ApiRoute, ProxmoxBackend as ProxmoxSection, SecretRef};
use phoenix_config::server_url::{self, ServerUrl};

use crate::secrets::Secrets;

/// Why no backend could be reached; [`ConnectError::hint`] says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The configuration has no `backend` section.
    #[error("the configuration has no `backend` section, so Phoenix does not know where guests live")]
    Missing,
    /// This kind of backend is not built yet.
    #[error("the {0} backend is not implemented yet; nothing was done")]
    NotImplemented(&'static str),
    /// The backend refused or could not be reached.
    #[error("{message}")]
    Failed {
        /// What went wrong.
        message: String,
        /// How to fix it, or the backend's own detail, when there is one.
        hint: Option<String>,
    },
}

impl ConnectError {
    /// The backend refused or could not be reached, for this reason (no hint).
    pub fn failed(message: impl std::fmt::Display) -> ConnectError {
        ConnectError::Failed { message: message.to_string(), hint: None }
    }

    /// What to do about it, when something is known.
    pub fn hint(&self) -> Option<&str> {
        match self {
            ConnectError::Missing => {
                Some("add a `backend` section to phoenix_hypervisor_config.json (see docs/configuration.md)")
            }
            ConnectError::NotImplemented(_) => {
                Some("`phoenix validate` and `phoenix graph` work with every backend today")
            }
            ConnectError::Failed { hint, .. } => hint.as_deref(),
        }
    }
}

/// A backend, and what connecting to it changed on the host (for the user to read).
pub struct Connected {
    /// The backend.
    pub backend: Box<dyn Backend>,
    /// Changes made while connecting, e.g. a subordinate ID range added.
    pub notes: Vec<String>,
}

/// How commands get a backend: the real one in the binary, a test double in tests.
pub type Connect = dyn Fn(&Estate) -> Result<Connected, ConnectError>;

/// Connects to the backend of the configuration.
pub fn connect(estate: &Estate) -> Result<Connected, ConnectError> {
    connect_with(estate, PVESH)
}

/// Connects to the backend of the configuration, running `pvesh` as the `pvesh` program where
/// it says `via: "pvesh"`, with secret references resolved in the process's environment.
pub fn connect_with(estate: &Estate, pvesh: &str) -> Result<Connected, ConnectError> {
    connect_with_secrets(estate, pvesh, &std::sync::Arc::new(Secrets::from_process_env()))
}

/// Connects to the backend of the configuration, running `pvesh` as the `pvesh` program where
/// it says `via: "pvesh"`, and resolving secret references with `secrets`.
pub fn connect_with_secrets(
    estate: &Estate,
    pvesh: &str,
    secrets: &std::sync::Arc<Secrets>,
) -> Result<Connected, ConnectError> {
    match &estate.hypervisor.backend {
        None => Err(ConnectError::Missing),
        Some(BackendSection::Lxc(settings)) => match phoenix_lxc::LxcBackend::open(settings) {
            Ok((backend, notes)) => Ok(Connected { backend: Box::new(backend), notes }),
            Err(e) => Err(ConnectError::Failed { message: e.to_string(), hint: e.hint() }),
        },
        Some(BackendSection::Proxmox(p)) => {
            // VMs' password hashes (or references to them) go to the backend apart from the plan,
            // which carries only their fingerprints.
            let resolver = secrets.clone();
            let backend = proxmox(p, pvesh, secrets)?
                .with_vm_passwords(phoenix_plan::vm_passwords(estate))
                .with_secret_resolver(std::sync::Arc::new(move |reference: &str| {
                    resolver.resolve(reference).map_err(|e| phoenix_backend::BackendError {
                        detail: e.hint,
                        ..phoenix_backend::BackendError::permanent(phoenix_backend::Delivery::NotSent, e.message)
                    })
                }));
            let at = api_name(p);
            let version = backend.preflight().map_err(|e| ConnectError::Failed {
                message: format!("cannot use the Proxmox API {at}: {e}"),
                hint: e.detail.clone(),
            })?;
            Ok(Connected { backend: Box::new(backend), notes: vec![format!("Proxmox VE {version} {at}")] })
        }
    }
}

/// Reads the secret of a setting (named in errors, e.g. `backend.token.secret`, with the
/// reference — unless it is not one, and so might be the secret itself). The value is never printed.
fn secret(secrets: &Secrets, setting: &str, reference: &SecretRef) -> Result<String, ConnectError> {
    secrets.resolve(&reference.0).map_err(|e| {
        let named = match phoenix_config::secret::parse_reference(&reference.0) {
            Ok(_) => format!("`{setting}` ({})", reference.0),
            Err(_) => format!("`{setting}`"),
        };
        ConnectError::Failed { message: format!("{named}: {}", e.message), hint: e.hint }
    })
}

/// The Proxmox API's port when `api_url` gives none.
const PROXMOX_PORT: u16 = 8006;

/// The `pvesh` program `via: "pvesh"` runs: the one on `PATH`, as on a Proxmox VE node.
pub const PVESH: &str = "pvesh";

/// How the API is reached, for messages: `at https://...`, or `through pvesh on <node>`.
fn api_name(p: &ProxmoxSection) -> String {
    match (p.via, &p.api_url) {
        (ApiRoute::Api, Some(url)) => format!("at {url}"),
        (ApiRoute::Api, None) => "(no api_url)".to_string(),
        (ApiRoute::Pvesh, _) => format!("through pvesh on {}", p.node),
    }
}

/// The Proxmox backend of the configuration, not yet checked: over HTTPS with the token, or
/// through the `pvesh` program `pvesh` (`via: "pvesh"`: Phoenix on the node, as root@pam, its
/// commands run here and other nodes reached over SSH where `ssh` is configured). Secret
/// references are resolved with `secrets`.
pub fn proxmox(
    p: &ProxmoxSection,
    pvesh: &str,
    secrets: &Secrets,
) -> Result<phoenix_proxmox::backend::ProxmoxBackend, ConnectError> {
    use phoenix_proxmox::node::channel::{LocalNode, NodeChannel};
    use phoenix_proxmox::transport::api::{ApiClient, Auth, TlsVerify};
    if p.via == ApiRoute::Pvesh {
        let api = ApiClient::pvesh(pvesh).map_err(ConnectError::failed)?;
        let others = ssh_channel(p);
        let channel: std::sync::Arc<dyn NodeChannel> =
            std::sync::Arc::new(LocalNode { node: local_node(&api, &p.node), others });
        return Ok(phoenix_proxmox::backend::ProxmoxBackend::new(api, &p.node, Some(channel)));
    }
    let url = p.api_url.as_deref().ok_or_else(|| {
        ConnectError::failed("the Proxmox backend needs `api_url` (or `via: \"pvesh\"` when Phoenix runs on the node)")
    })?;
    let api = ServerUrl::parse(url, false)
        .map_err(|e| ConnectError::failed(format!("api_url \"{}\" {e}", server_url::quoted(url))))?;
    let (host, port) = (api.host.as_str(), api.port.unwrap_or(PROXMOX_PORT));
    let token = p.token.as_ref().ok_or_else(|| {
        ConnectError::failed(
            "the Proxmox backend needs `token` to reach the API over HTTPS (or `via: \"pvesh\"` when Phoenix runs on the node)",
        )
    })?;
    let auth = Auth::Token { id: token.id.clone(), secret: secret(secrets, "backend.token.secret", &token.secret)? };
    let root_auth = match &p.root_ticket {
        Some(t) => Some(Auth::Password {
            user: "root@pam".into(),
            password: secret(secrets, "backend.root_ticket.password", &t.password)?,
        }),
        None => None,
    };
    let tls = match &p.tls {
        Some(t) if t.insecure => TlsVerify::Insecure,
        Some(t) if t.fingerprint.is_some() => TlsVerify::fingerprint(t.fingerprint.as_deref().unwrap_or_default())
            .ok_or_else(|| ConnectError::failed("bad TLS fingerprint"))?,
        Some(t) if t.ca_file.is_some() => {
            let path = t.ca_file.as_deref().unwrap_or_default();
            TlsVerify::Ca(
                std::fs::read(path)
                    .map_err(|e| ConnectError::failed(format!("cannot read the CA file {path}: {e}")))?,
            )
        }
        _ => TlsVerify::Ca(std::fs::read("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default()),
    };
    let api = ApiClient::new(host, port, auth, tls.clone()).map_err(ConnectError::failed)?;
    let backend = phoenix_proxmox::backend::ProxmoxBackend::new(api, &p.node, ssh_channel(p));
    Ok(match root_auth {
        Some(auth) => backend.with_root_api(ApiClient::new(host, port, auth, tls).map_err(ConnectError::failed)?),
        None => backend,
    })
}

/// The node Phoenix runs on, as the cluster knows it (`local` in `/cluster/status`); the
/// configuration's `node` when that cannot be read (preflight then says why).
fn local_node(api: &phoenix_proxmox::transport::api::ApiClient, configured: &str) -> String {
    api.call(&phoenix_proxmox::transport::endpoint::Call::ClusterStatus, &[])
        .ok()
        .and_then(|list| {
            list.as_array()?
                .iter()
                .find(|e| e["type"] == "node" && (e["local"] == 1 || e["local"] == true))
                .and_then(|e| e["name"].as_str().map(str::to_string))
        })
        .unwrap_or_else(|| configured.to_string())
}

/// The SSH node channel, where `ssh` is configured.
fn ssh_channel(p: &ProxmoxSection) -> Option<std::sync::Arc<dyn phoenix_proxmox::node::channel::NodeChannel>> {
    p.ssh.as_ref().map(|ssh| -> std::sync::Arc<dyn phoenix_proxmox::node::channel::NodeChannel> {
        let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
        std::sync::Arc::new(phoenix_proxmox::node::channel::SshNodes {
            settings: phoenix_proxmox::node::channel::SshTarget {
                host: p.node.clone(),
                port: ssh.port.and_then(|port| u16::try_from(port).ok()).unwrap_or(22),
                user: ssh.user.clone().unwrap_or_else(|| "root".into()),
                identity: ssh.identity_file.clone().map(Into::into),
                known_hosts: ssh.known_hosts_file.clone().unwrap_or_else(|| format!("{home}/.ssh/known_hosts")).into(),
                control_dir: std::env::temp_dir(),
            },
            hosts: ssh.hosts.clone(),
        })
    })
}

/// The name of the apply lock of the configuration's backend: one apply at a time per backend.
pub fn lock_name(estate: &Estate) -> String {
    let target = match &estate.hypervisor.backend {
        // One lock for one directory, however its path is spelled.
        Some(BackendSection::Lxc(l)) => {
            let path =
                phoenix_lxc::canonical_path(std::path::Path::new(l.lxc_path.as_deref().unwrap_or("/var/lib/lxc")));
            format!("lxc-{}", path.display())
        }
        Some(BackendSection::Proxmox(p)) => match (&p.api_url, p.via) {
            (Some(url), ApiRoute::Api) => format!("proxmox-{url}"),
            _ => format!("proxmox-pvesh-{}", p.node),
        },
        None => "none".to_string(),
    };
    let safe: String =
        target.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' }).collect();
    format!("{safe}.lock")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Proxmox backend for this `api_url`, or why not (nothing is sent either way).
    fn connect(api_url: &str) -> Result<(), ConnectError> {
        let section: ProxmoxSection = serde_json::from_value(serde_json::json!({
            "api_url": api_url, "node": "pve1",
            "token": { "id": "phoenix@pve!automation", "secret": "env:PVE_TOKEN" },
            "tls": { "insecure": true }
        }))
        .expect("a Proxmox section");
        let secrets = Secrets::new(|name| (name == "PVE_TOKEN").then(|| "s3cret".to_string()));
        proxmox(&section, PVESH, &secrets).map(|_| ())
    }

    #[test]
    fn api_url_takes_names_and_addresses_ipv6_with_or_without_a_port() {
        for url in [
            "https://pve1.lab.example",
            "https://pve1.lab.example:8006/",
            "https://10.0.0.2:8006/api2/json",
            "https://[fd00::1]",
            "https://[fd00::1]:8006",
        ] {
            assert!(connect(url).is_ok(), "{url}: {:?}", connect(url).err());
        }
    }

    #[test]
    fn a_secret_that_cannot_be_read_is_named_with_its_hint_apart() {
        let section: ProxmoxSection = serde_json::from_value(serde_json::json!({
            "api_url": "https://pve1:8006", "node": "pve1",
            "token": { "id": "phoenix@pve!automation", "secret": "env:PVE_TOKEN" }
        }))
        .expect("a Proxmox section");
        let e = proxmox(&section, PVESH, &Secrets::new(|_| None)).err().expect("no token");
        assert_eq!(
            e.to_string(),
            "`backend.token.secret` (env:PVE_TOKEN): the environment variable PVE_TOKEN (a secret reference) is not set"
        );
        assert_eq!(e.hint(), None);
        let section: ProxmoxSection = serde_json::from_value(serde_json::json!({
            "api_url": "https://pve1:8006", "node": "pve1",
            "token": { "id": "phoenix@pve!automation", "secret": "plain-text-secret" }
        }))
        .expect("a Proxmox section");
        let e = proxmox(&section, PVESH, &Secrets::new(|_| None)).err().expect("inline");
        assert!(e.to_string().starts_with("`backend.token.secret`: the secret reference"), "{e}");
        assert!(!e.to_string().contains("hint") && !e.to_string().contains("plain-text-secret"), "{e}");
        assert!(e.hint().is_some_and(|h| !h.contains("plain-text-secret")), "{:?}", e.hint());
    }

    #[test]
    fn a_broken_api_url_is_named_with_what_is_wrong() {
        let error = |url: &str| connect(url).expect_err(url).to_string();
        assert_eq!(error("http://pve1:8006"), "api_url \"http://pve1:8006\" is not an https:// URL");
        assert_eq!(error("https://[fd00::1"), "api_url \"https://[fd00::1\" is not a URL: invalid IPv6 address");
        assert_eq!(error("https://pve1:port"), "api_url \"https://pve1:port\" is not a URL: invalid port number");
        assert_eq!(
            error("https://root:s3cret@pve1"),
            "api_url \"https://root:***@pve1/\" has a user name or password in it, which a server's address does not take"
        );
    }
}
