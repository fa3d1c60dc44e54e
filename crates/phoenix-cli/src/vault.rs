//! `vault:<mount>/<path>#<field>` secret references, read from HashiCorp Vault or OpenBao (the same
//! API) with the settings Vault's own command line takes from the environment: `VAULT_ADDR`,
//! `VAULT_TOKEN` (else the token file `~/.vault-token` that `vault login` writes), `VAULT_CACERT`
//! and `VAULT_NAMESPACE`.
//!
//! As `vault kv get` does, the mount holding the path and its KV version are asked for first
//! (`GET /v1/sys/internal/ui/mounts/<path>`), so mounts of several segments (`kv/team-a`) and both
//! versions work: version 2 reads `GET /v1/<mount>/data/<rest>` (the fields under `data.data`),
//! version 1 `GET /v1/<mount>/<rest>` (under `data`). Each secret is read once per run. Errors
//! name the path, the field and the fields that exist, never a value or the token.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use phoenix_config::server_url::{self, ServerUrl};
use phoenix_http::{Endpoint, TlsVerify, percent_encode};
use serde_json::{Map, Value};

use crate::secrets::SecretError;

/// Vault's default address, used when `VAULT_ADDR` is not set (as Vault's command line does).
pub const DEFAULT_ADDR: &str = "https://127.0.0.1:8200";

/// The system's CA certificates, used when `VAULT_CACERT` is not set.
pub const SYSTEM_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Settings of Vault's command line that Phoenix does not take; when set, errors say so.
const NOT_HONOURED: [&str; 2] = ["VAULT_SKIP_VERIFY", "VAULT_CAPATH"];

/// A Vault token. It is never shown: its `Debug` form hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// A token; surrounding white space (a token file's newline) is dropped. It is registered
    /// with [`crate::redact`], so that no output of the process shows it.
    pub fn new(token: &str) -> Token {
        let token = token.trim();
        crate::redact::register(token);
        Token(token.to_string())
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(hidden)")
    }
}

/// Where Vault is and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultSettings {
    /// Vault's address (`VAULT_ADDR`): `https://host[:port][/prefix]`, or `http://` to this machine.
    pub addr: String,
    /// `VAULT_ADDR` was not set and `addr` is Vault's default.
    pub addr_defaulted: bool,
    /// The token (`VAULT_TOKEN`, else `~/.vault-token`), if there is one.
    pub token: Option<Token>,
    /// The PEM file of the CA that signed Vault's certificate (`VAULT_CACERT`); without it, the
    /// system's CA certificates.
    pub ca_file: Option<PathBuf>,
    /// The namespace (`VAULT_NAMESPACE`), sent as `X-Vault-Namespace`.
    pub namespace: Option<String>,
    /// Settings of Vault's command line that were set but are not honoured (named in errors).
    pub not_honoured: Vec<&'static str>,
}

impl VaultSettings {
    /// The settings an environment gives: `env` looks a variable up (the process's environment
    /// in the binary, a map in tests). Empty variables count as unset.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> VaultSettings {
        let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let token = var("VAULT_TOKEN").or_else(|| {
            let home = var("HOME")?;
            std::fs::read_to_string(PathBuf::from(home).join(".vault-token")).ok()
        });
        VaultSettings {
            addr: var("VAULT_ADDR").unwrap_or_else(|| DEFAULT_ADDR.to_string()),
            addr_defaulted: var("VAULT_ADDR").is_none(),
            token: token.map(|t| Token::new(&t)).filter(|t| !t.0.is_empty()),
            ca_file: var("VAULT_CACERT").map(PathBuf::from),
            namespace: var("VAULT_NAMESPACE").map(|n| n.trim().trim_matches('/').to_string()).filter(|n| !n.is_empty()),
            not_honoured: NOT_HONOURED.into_iter().filter(|n| var(n).is_some()).collect(),
        }
    }
}

/// Where a secret lives: its mount, its path inside the mount, and the mount's KV version.
struct Located {
    mount: String,
    rest: String,
    version: u8,
}

impl Located {
    /// The API path of the secret (below `/v1/`).
    fn api_path(&self) -> String {
        match self.version {
            2 => format!("{}/data/{}", self.mount, self.rest),
            _ => format!("{}/{}", self.mount, self.rest),
        }
    }
}

/// A Vault client for one run: it reads each secret once.
pub struct VaultClient {
    endpoint: Endpoint,
    /// The path of `VAULT_ADDR` before `/v1` (empty unless Vault sits below a path).
    prefix: String,
    settings: VaultSettings,
    token: Token,
    /// Secrets read so far: path → fields.
    cache: Mutex<HashMap<String, Map<String, Value>>>,
}

impl std::fmt::Debug for VaultClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VaultClient({})", self.settings.addr)
    }
}

fn fail(message: impl Into<String>, hint: impl Into<String>) -> SecretError {
    SecretError { message: message.into(), hint: Some(hint.into()) }
}

/// The messages of a Vault error answer (`{"errors": [...]}`), joined.
fn vault_errors(json: &Value) -> String {
    let errors: Vec<&str> =
        json["errors"].as_array().map(|e| e.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    errors.join("; ")
}

impl VaultClient {
    /// A client for these settings. Nothing is sent yet; a plain `http://` address to another
    /// machine, a missing token or an unreadable CA file are refused here.
    pub fn new(settings: &VaultSettings) -> Result<VaultClient, SecretError> {
        let addr = settings.addr.trim_end_matches('/');
        let bad_addr = |why: &str| {
            fail(
                format!("VAULT_ADDR {} {why}", server_url::quoted(addr)),
                "give Vault's address as https://host:port (plain http:// only to this machine, e.g. a Vault Agent on 127.0.0.1)",
            )
        };
        let url = ServerUrl::parse(addr, true).map_err(|e| bad_addr(&e.to_string()))?;
        let (tls, host, prefix) = (url.https, url.host.as_str(), url.path);
        let port = url.port.unwrap_or(if tls { 443 } else { 80 });
        let endpoint = if tls {
            let ca_file = settings.ca_file.clone().unwrap_or_else(|| SYSTEM_CA_FILE.into());
            let pem = std::fs::read(&ca_file).map_err(|e| {
                fail(
                    format!("cannot read the CA file {}: {e}", ca_file.display()),
                    "set VAULT_CACERT to the PEM file of the CA that signed Vault's certificate",
                )
            })?;
            Endpoint::https(host, port, TlsVerify::Ca(pem)).map_err(|e| {
                fail(
                    format!("cannot use {} to check Vault's certificate: {e}", ca_file.display()),
                    "set VAULT_CACERT to a PEM file of CA certificates",
                )
            })?
        } else {
            Endpoint::plain_local(host, port).map_err(|e| {
                fail(
                    format!("VAULT_ADDR {addr}: {e}"),
                    "use https:// (plain http:// only to this machine, e.g. a Vault Agent on 127.0.0.1)",
                )
            })?
        };
        let token = settings.token.clone().ok_or_else(|| {
            fail(
                "no Vault token: VAULT_TOKEN is not set and there is no ~/.vault-token",
                "set VAULT_TOKEN, or log in with `vault login` (which writes ~/.vault-token)",
            )
        })?;
        let settings = VaultSettings { addr: addr.to_string(), ..settings.clone() };
        Ok(VaultClient {
            endpoint,
            prefix: prefix.trim_end_matches('/').to_string(),
            settings,
            token,
            cache: Mutex::default(),
        })
    }

    /// The text of a field of a KV secret: `path` is `<mount>/<path>` as a reference writes it.
    /// Strings are returned as they are, numbers as text; anything else is refused.
    pub fn read(&self, path: &str, field: &str) -> Result<String, SecretError> {
        let fields = self.secret(path)?;
        match fields.get(field) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(Value::Number(n)) => Ok(n.to_string()),
            Some(other) => {
                let kind = match other {
                    Value::Object(_) => "an object",
                    Value::Array(_) => "a list",
                    Value::Bool(_) => "a boolean",
                    _ => "null",
                };
                Err(fail(
                    format!("the field `{field}` of the Vault secret `{path}` is {kind}, not text"),
                    "a secret reference needs a field holding a string (or a number)",
                ))
            }
            None => {
                let names: Vec<&str> = fields.keys().map(String::as_str).collect();
                let hint = if names.is_empty() {
                    "the secret has no fields".to_string()
                } else {
                    format!("its fields are: {}", names.join(", "))
                };
                Err(fail(format!("the Vault secret `{path}` has no field `{field}`"), hint))
            }
        }
    }

    /// The fields of the secret at `path`, read from Vault the first time.
    fn secret(&self, path: &str) -> Result<Map<String, Value>, SecretError> {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(fields) = cache.get(path) {
            return Ok(fields.clone());
        }
        if path.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
            return Err(fail(
                format!("`{path}` is not a Vault secret path"),
                "write `vault:<mount>/<path>#<field>`, without empty, `.` or `..` segments",
            ));
        }
        let place = self.locate(path)?;
        let api = place.api_path();
        let (status, json) = self.get(&api)?;
        let fields = match (status, json.pointer(if place.version == 2 { "/data/data" } else { "/data" })) {
            (200, Some(Value::Object(fields))) => fields.clone(),
            (200, _) => {
                return Err(SecretError {
                    message: format!("Vault's answer for `{path}` ({api}) holds no KV secret"),
                    hint: None,
                });
            }
            (404, _) => {
                return Err(fail(
                    format!(
                        "Vault has no secret at `{path}` (KV version {} mount `{}`{})",
                        place.version,
                        place.mount,
                        self.in_namespace()
                    ),
                    format!(
                        "check the path with `vault kv get -mount={} {}`; a secret whose latest version is deleted reads as missing too",
                        place.mount, place.rest
                    ),
                ));
            }
            (403, _) => return Err(self.denied(path, &format!("`read` on `{api}`"))),
            _ => return Err(self.unexpected(path, status, &json)),
        };
        cache.insert(path.to_string(), fields.clone());
        Ok(fields)
    }

    /// Asks Vault which mount holds `path` and its KV version, as `vault kv get` does.
    fn locate(&self, path: &str) -> Result<Located, SecretError> {
        let (status, json) = self.get(&format!("sys/internal/ui/mounts/{path}"))?;
        match status {
            200 => {}
            // A Vault older than the endpoint: its KV mounts are version 1, read at the path itself.
            404 => {
                let (mount, rest) = path.split_once('/').unwrap_or((path, ""));
                return Ok(Located { mount: mount.to_string(), rest: rest.to_string(), version: 1 });
            }
            403 => {
                // The mount is not known yet: name the API paths for the likely one, the first segment.
                let (mount, rest) = path.split_once('/').unwrap_or((path, ""));
                let needed = format!(
                    "`read` on `{mount}/data/{rest}` (KV version 2 mounted at `{mount}`) or on `{path}` (KV version 1)"
                );
                return Err(self.denied(path, &needed));
            }
            _ => return Err(self.unexpected(path, status, &json)),
        }
        let data = &json["data"];
        let named = data["path"].as_str().unwrap_or_default().trim_end_matches('/');
        if let Some(kind) = data["type"].as_str().filter(|t| !matches!(*t, "kv" | "generic")) {
            return Err(fail(
                format!("`{path}` is in the mount `{named}`, a `{kind}` secrets engine, not a KV store"),
                "vault: references read KV secrets (version 1 or 2)",
            ));
        }
        let version = if data["options"]["version"].as_str() == Some("2") { 2 } else { 1 };
        // In a namespace the mount is named with the namespace in front (`team-a/secret/`) while
        // the path starts at the mount: drop leading segments until the path starts with it.
        let mut mount = named;
        while !mount.is_empty() {
            if let Some(rest) = path.strip_prefix(mount).and_then(|r| r.strip_prefix('/')).filter(|r| !r.is_empty()) {
                return Ok(Located { mount: mount.to_string(), rest: rest.to_string(), version });
            }
            mount = mount.split_once('/').map_or("", |(_, r)| r);
        }
        Err(fail(
            format!("`{path}` names no secret inside the Vault mount `{named}`"),
            "write `vault:<mount>/<path>#<field>`, with the secret's path after the mount's",
        ))
    }

    /// `GET /v1/<api_path>`: the status and the JSON body.
    fn get(&self, api_path: &str) -> Result<(u16, Value), SecretError> {
        let target =
            format!("{}/v1/{}", self.prefix, api_path.split('/').map(percent_encode).collect::<Vec<_>>().join("/"));
        let mut headers = vec![("X-Vault-Token", self.token.0.as_str()), ("X-Vault-Request", "true")];
        if let Some(ns) = &self.settings.namespace {
            headers.push(("X-Vault-Namespace", ns.as_str()));
        }
        let addr = &self.settings.addr;
        let response = self.endpoint.exchange("GET", &target, &headers, b"").map_err(|e| match e {
            phoenix_http::Error::Unreachable(m) => fail(
                format!("cannot reach Vault at {addr}: {m}"),
                if self.settings.addr_defaulted {
                    format!("VAULT_ADDR is not set, so Vault's default {DEFAULT_ADDR} was tried; set VAULT_ADDR")
                } else {
                    "check VAULT_ADDR and that Vault is running".to_string()
                },
            ),
            phoenix_http::Error::Tls(m) => fail(format!("Vault at {addr}: {m}"), self.tls_hint()),
            phoenix_http::Error::NoAnswer(m) => {
                SecretError { message: format!("Vault at {addr} gave no answer: {m}"), hint: None }
            }
            phoenix_http::Error::Invalid(m) => SecretError { message: format!("cannot ask Vault: {m}"), hint: None },
        })?;
        Ok((response.status, serde_json::from_slice(&response.body).unwrap_or_default()))
    }

    fn in_namespace(&self) -> String {
        self.settings.namespace.as_ref().map(|ns| format!(", namespace `{ns}`")).unwrap_or_default()
    }

    fn tls_hint(&self) -> String {
        let checked = match &self.settings.ca_file {
            Some(f) => format!("the CA in VAULT_CACERT ({})", f.display()),
            None => format!("the system's CA certificates ({SYSTEM_CA_FILE})"),
        };
        let mut hint = format!(
            "Vault's certificate was checked against {checked}; set VAULT_CACERT to the PEM file of the CA that signed it"
        );
        if !self.settings.not_honoured.is_empty() {
            hint.push_str(&format!(" ({} is not honoured by Phoenix)", self.settings.not_honoured.join(" and ")));
        }
        hint
    }

    /// A 403: the token is not valid, or its policies do not allow the read.
    fn denied(&self, path: &str, needed: &str) -> SecretError {
        fail(
            format!("Vault refused to read `{path}`{}: permission denied (403)", self.in_namespace()),
            format!(
                "the token (VAULT_TOKEN or ~/.vault-token) is invalid or expired, or its policies do not grant {needed}; `vault token lookup` and `vault token capabilities` tell which"
            ),
        )
    }

    fn unexpected(&self, path: &str, status: u16, json: &Value) -> SecretError {
        let errors = vault_errors(json);
        let said = if errors.is_empty() { String::new() } else { format!(": {errors}") };
        SecretError { message: format!("Vault answered {status} for `{path}`{said}"), hint: None }
    }
}
