//! Connecting to the backend the configuration names.

use phoenix_backend::Backend;
use phoenix_config::Estate;
use phoenix_config::model::Backend as BackendSection;

/// Why no backend could be reached.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The configuration has no `backend` section.
    #[error("the configuration has no `backend` section, so Phoenix does not know where guests live")]
    Missing,
    /// This kind of backend is not built yet.
    #[error("the {0} backend is not implemented yet; nothing was done")]
    NotImplemented(&'static str),
    /// The backend refused or could not be reached.
    #[error("{0}")]
    Failed(String),
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
    match &estate.hypervisor.backend {
        None => Err(ConnectError::Missing),
        Some(BackendSection::Lxc(settings)) => match phoenix_lxc::LxcBackend::open(settings) {
            Ok((backend, notes)) => Ok(Connected { backend: Box::new(backend), notes }),
            Err(phoenix_lxc::OpenError(message, hint)) => Err(ConnectError::Failed(match hint {
                Some(h) => format!("{message}\n  hint: {h}"),
                None => message,
            })),
        },
        Some(BackendSection::Proxmox(p)) => {
            let backend = proxmox(p)?;
            let version = backend
                .preflight()
                .map_err(|e| ConnectError::Failed(format!("cannot use the Proxmox API at {}: {e}", p.api_url)))?;
            Ok(Connected { backend: Box::new(backend), notes: vec![format!("Proxmox VE {version} at {}", p.api_url)] })
        }
    }
}

/// Reads a secret reference: `env:NAME` or `file:/path`. The value is never printed.
pub fn resolve_secret(reference: &str) -> Result<String, ConnectError> {
    use phoenix_config::secret::{SecretSource, parse_reference};
    let fail = |m: String| ConnectError::Failed(m);
    match parse_reference(reference).map_err(|e| fail(format!("a secret reference {}", e.message)))? {
        SecretSource::Env(name) => std::env::var(name)
            .map_err(|_| fail(format!("the environment variable {name} (a secret reference) is not set"))),
        SecretSource::File(path) => std::fs::read_to_string(path)
            .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
            .map_err(|e| fail(format!("cannot read the secret file {path}: {e}"))),
        SecretSource::Vault { .. } => {
            Err(fail("Vault secret references are not supported yet; use env: or file:".into()))
        }
    }
}

fn proxmox(
    p: &phoenix_config::model::ProxmoxBackend,
) -> Result<phoenix_proxmox::backend::ProxmoxBackend, ConnectError> {
    use phoenix_config::model::ApiRoute;
    use phoenix_proxmox::api::{ApiClient, Auth, TlsVerify};
    if p.via == ApiRoute::Pvesh {
        return Err(ConnectError::NotImplemented("Proxmox VE (through pvesh)"));
    }
    let rest = p
        .api_url
        .strip_prefix("https://")
        .ok_or_else(|| ConnectError::Failed(format!("{} is not an https:// URL", p.api_url)))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, port)) => {
            (h.to_string(), port.parse().map_err(|_| ConnectError::Failed(format!("bad port in {}", p.api_url)))?)
        }
        None => (authority.to_string(), 8006),
    };
    let token = p.token.as_ref().ok_or_else(|| ConnectError::Failed("the Proxmox backend needs `token`".into()))?;
    let auth = Auth::Token { id: token.id.clone(), secret: resolve_secret(&token.secret.0)? };
    let root_auth = match &p.root_ticket {
        Some(t) => Some(Auth::Password { user: "root@pam".into(), password: resolve_secret(&t.password.0)? }),
        None => None,
    };
    let tls = match &p.tls {
        Some(t) if t.insecure => TlsVerify::Insecure,
        Some(t) if t.fingerprint.is_some() => TlsVerify::fingerprint(t.fingerprint.as_deref().unwrap_or_default())
            .ok_or_else(|| ConnectError::Failed("bad TLS fingerprint".into()))?,
        Some(t) if t.ca_file.is_some() => {
            let path = t.ca_file.as_deref().unwrap_or_default();
            TlsVerify::Ca(
                std::fs::read(path)
                    .map_err(|e| ConnectError::Failed(format!("cannot read the CA file {path}: {e}")))?,
            )
        }
        _ => TlsVerify::Ca(std::fs::read("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default()),
    };
    let api = ApiClient::new(&host, port, auth, tls.clone()).map_err(ConnectError::Failed)?;
    let root = match root_auth {
        Some(auth) => Some(ApiClient::new(&host, port, auth, tls).map_err(ConnectError::Failed)?),
        None => None,
    };
    let channel = p.ssh.as_ref().map(|ssh| -> std::sync::Arc<dyn phoenix_proxmox::channel::NodeChannel> {
        let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
        std::sync::Arc::new(phoenix_proxmox::channel::SshNodes {
            settings: phoenix_proxmox::channel::SshTarget {
                host: p.node.clone(),
                port: ssh.port.and_then(|port| u16::try_from(port).ok()).unwrap_or(22),
                user: ssh.user.clone().unwrap_or_else(|| "root".into()),
                identity: ssh.identity_file.clone().map(Into::into),
                known_hosts: ssh.known_hosts_file.clone().unwrap_or_else(|| format!("{home}/.ssh/known_hosts")).into(),
                control_dir: std::env::temp_dir(),
            },
            hosts: ssh.hosts.clone(),
        })
    });
    let backend = phoenix_proxmox::backend::ProxmoxBackend::new(api, &p.node, channel);
    Ok(match root {
        Some(root) => backend.with_root_api(root),
        None => backend,
    })
}

/// The name of the apply lock of the configuration's backend: one apply at a time per backend.
pub fn lock_name(estate: &Estate) -> String {
    let target = match &estate.hypervisor.backend {
        Some(BackendSection::Lxc(l)) => format!("lxc-{}", l.lxc_path.as_deref().unwrap_or("/var/lib/lxc")),
        Some(BackendSection::Proxmox(p)) => format!("proxmox-{}", p.api_url),
        None => "none".to_string(),
    };
    let safe: String =
        target.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' }).collect();
    format!("{safe}.lock")
}
