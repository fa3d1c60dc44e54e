//! Secret references resolved at run time: `env:NAME`, `file:/path`, `vault:<mount>/<path>#<field>`.
//! Values are returned to the caller and never printed; errors name the reference, never a value.
//!
//! The environment is passed in as a lookup function rather than read from the process, so that
//! tests give their own (environment variables are shared by every thread of a test binary).

use std::sync::OnceLock;

use phoenix_config::secret::{SecretSource, parse_reference};

use crate::vault::{VaultClient, VaultSettings};

/// Why a secret could not be read: what went wrong and how to fix it (never the secret). It
/// shows as its message; the command line prints the hint apart, as it prints every hint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SecretError {
    /// What went wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

impl SecretError {
    /// The error as host setup reports it: the message, and the hint as its detail.
    pub fn into_host_error(self) -> phoenix_host::HostError {
        phoenix_host::HostError { message: self.message, detail: self.hint }
    }
}

/// A variable lookup: the process's environment, or a test's.
pub type Env = dyn Fn(&str) -> Option<String> + Send + Sync;

/// Resolves secret references for one run; a Vault client is made at the first `vault:`
/// reference and reads each secret once.
pub struct Secrets {
    env: Box<Env>,
    vault: OnceLock<Result<VaultClient, SecretError>>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets")
    }
}

impl Secrets {
    /// References resolved with this environment.
    pub fn new(env: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Secrets {
        Secrets { env: Box::new(env), vault: OnceLock::new() }
    }

    /// References resolved with the process's environment.
    pub fn from_process_env() -> Secrets {
        Secrets::new(|name| std::env::var(name).ok())
    }

    /// The secret a reference names. The value is registered with [`crate::redact`], so that
    /// no output of the process shows it, whoever echoes it.
    pub fn resolve(&self, reference: &str) -> Result<String, SecretError> {
        let value = self.read(reference)?;
        crate::redact::register(&value);
        Ok(value)
    }

    fn read(&self, reference: &str) -> Result<String, SecretError> {
        let source = parse_reference(reference)
            .map_err(|e| SecretError { message: format!("the secret reference {}", e.message), hint: Some(e.hint) })?;
        match source {
            SecretSource::Env(name) => (self.env)(name).ok_or_else(|| SecretError {
                message: format!("the environment variable {name} (a secret reference) is not set"),
                hint: None,
            }),
            SecretSource::File(path) => std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|e| SecretError { message: format!("cannot read the secret file {path}: {e}"), hint: None }),
            SecretSource::Vault { path, field } => {
                let client = self.vault.get_or_init(|| VaultClient::new(&VaultSettings::from_env(&*self.env)));
                client.as_ref().map_err(Clone::clone)?.read(path, field)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_and_file_references_and_vault_settings_only_when_needed() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("token");
        std::fs::write(&file, "from-the-file\n").expect("write");
        // A Vault address that would be refused: it matters only once a `vault:` reference is met.
        let s = Secrets::new(|name| match name {
            "PVE_TOKEN" => Some("from-the-env".to_string()),
            "VAULT_ADDR" => Some("http://vault.example.com:8200".to_string()),
            _ => None,
        });
        assert_eq!(s.resolve("env:PVE_TOKEN").expect("env"), "from-the-env");
        assert_eq!(crate::redact::scrub("echoed: from-the-env"), "echoed: *****");
        assert_eq!(s.resolve(&format!("file:{}", file.display())).expect("file"), "from-the-file");
        let e = s.resolve("env:MISSING").expect_err("unset").to_string();
        assert!(e.contains("MISSING") && e.contains("not set"), "{e}");
        let e = s.resolve("plain-text-secret").expect_err("inline").to_string();
        assert!(e.contains("written inline") && !e.contains("plain-text-secret"), "{e}");
        let e = s.resolve("vault:secret/pve#token").expect_err("plain http elsewhere").to_string();
        assert!(e.contains("plain http goes only to this machine"), "{e}");
    }
}
