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
        Some(BackendSection::Proxmox(_)) => Err(ConnectError::NotImplemented("Proxmox VE")),
    }
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
