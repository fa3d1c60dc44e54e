//! A HashiCorp Vault stand-in for the tests of `vault:` secret references, served over HTTPS on
//! loopback with a certificate made at start. It answers as Vault's HTTP API does for what Phoenix
//! asks:
//!
//! - `GET /v1/sys/internal/ui/mounts/<path>`: the mount holding the path — `path` (named with
//!   the namespace in front inside a namespace, as Vault Enterprise names it), `type`,
//!   `options.version` — or 403 `preflight capability check returned 403, ...` when no mount
//!   holds it;
//! - KV version 2: `GET /v1/<mount>/data/<path>` → `data.data` (fields) and `data.metadata`;
//! - KV version 1: `GET /v1/<mount>/<path>` → `data` (fields);
//! - a missing secret: 404 `{"errors":[]}`; a wrong token: 403 `{"errors":["permission denied"]}`;
//!   a path under no mount: 404 `no handler for route`;
//! - `X-Vault-Namespace` selects the namespace the mounts are looked up in.
//!
//! Every request is recorded (without the token).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use phoenix_http::percent_decode;
use phoenix_http::test_server::{Reply, Served, TestServer};
use serde_json::{Value, json};

/// A request the stand-in received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The path below `/v1/`, decoded.
    pub path: String,
    /// The `X-Vault-Namespace` header.
    pub namespace: Option<String>,
    /// Whether `X-Vault-Token` held the right token.
    pub token_ok: bool,
    /// The status answered.
    pub status: u16,
}

/// A KV mount.
#[derive(Debug, Clone)]
struct Mount {
    namespace: String,
    path: String,
    version: u8,
    kind: String,
    secrets: BTreeMap<String, Value>,
}

#[derive(Debug, Default)]
struct State {
    token: String,
    mounts: Vec<Mount>,
    seen: Vec<Seen>,
}

/// A running stand-in.
pub struct VaultDouble {
    /// `https://127.0.0.1:<port>`, what `VAULT_ADDR` holds.
    pub addr: String,
    /// PEM of the CA that signed its certificate, what the `VAULT_CACERT` file holds.
    pub ca_pem: String,
    state: Arc<Mutex<State>>,
    _server: TestServer,
}

fn error(status: u16, reason: &str, errors: &[&str]) -> (u16, String, Value) {
    (status, reason.to_string(), json!({ "errors": errors }))
}

/// Vault's envelope around `data`.
fn envelope(data: Value, lease_duration: u64) -> Value {
    json!({
        "request_id": "8a1c5f0e-8f44-4c43-b7a5-3f0b1d2e4c6a",
        "lease_id": "",
        "renewable": false,
        "lease_duration": lease_duration,
        "data": data,
        "wrap_info": null,
        "warnings": null,
        "auth": null
    })
}

impl State {
    /// The mount of the namespace holding `path` (the longest match).
    fn mount_of(&self, namespace: &str, path: &str) -> Option<(usize, String)> {
        self.mounts
            .iter()
            .enumerate()
            .filter(|(_, m)| m.namespace == namespace)
            .filter_map(|(i, m)| {
                let rest = path.strip_prefix(&m.path)?;
                (rest.is_empty() || rest.starts_with('/')).then(|| (i, rest.trim_start_matches('/').to_string()))
            })
            .max_by_key(|(i, _)| self.mounts[*i].path.len())
    }

    fn answer(&self, namespace: &str, path: &str) -> (u16, String, Value) {
        if let Some(asked) = path.strip_prefix("sys/internal/ui/mounts/") {
            let Some((i, _)) = self.mount_of(namespace, asked) else {
                let message = format!(
                    "preflight capability check returned 403, please ensure client's policies grant access to path \"{asked}/\""
                );
                return error(403, "Forbidden", &[&message]);
            };
            let m = &self.mounts[i];
            let named =
                if m.namespace.is_empty() { format!("{}/", m.path) } else { format!("{}/{}/", m.namespace, m.path) };
            let data = json!({
                "accessor": format!("{}_5e6f7a8b", m.kind),
                "config": { "default_lease_ttl": 0, "force_no_cache": false, "max_lease_ttl": 0 },
                "description": "",
                "external_entropy_access": false,
                "local": false,
                "options": { "version": m.version.to_string() },
                "path": named,
                "plugin_version": "",
                "running_plugin_version": "v0.20.0+builtin",
                "seal_wrap": false,
                "type": m.kind,
                "uuid": "1f2e3d4c-5b6a-7980-a1b2-c3d4e5f60718"
            });
            return (200, "OK".into(), envelope(data, 0));
        }
        let Some((i, rest)) = self.mount_of(namespace, path) else {
            let message = format!("no handler for route \"{path}\". route entry not found.");
            return error(404, "Not Found", &[&message]);
        };
        let m = &self.mounts[i];
        let fields = match m.version {
            2 => rest.strip_prefix("data/").and_then(|key| m.secrets.get(key)),
            _ => m.secrets.get(&rest),
        };
        match (fields, m.version) {
            (None, _) => error(404, "Not Found", &[]),
            (Some(f), 2) => {
                let metadata = json!({
                    "created_time": "2025-01-15T09:30:00.123456789Z",
                    "custom_metadata": null,
                    "deletion_time": "",
                    "destroyed": false,
                    "version": 1
                });
                (200, "OK".into(), envelope(json!({ "data": f, "metadata": metadata }), 0))
            }
            (Some(f), _) => (200, "OK".into(), envelope(f.clone(), 2_764_800)),
        }
    }
}

impl VaultDouble {
    /// Starts a stand-in that accepts `token`.
    pub fn start(token: &str) -> VaultDouble {
        let state = Arc::new(Mutex::new(State { token: token.to_string(), ..State::default() }));
        let shared = state.clone();
        let server = TestServer::start(move |request: Served| {
            let mut state = shared.lock().unwrap_or_else(PoisonError::into_inner);
            let (raw, _) = request.path_and_query();
            let path = percent_decode(raw.strip_prefix("/v1/").unwrap_or(raw));
            let namespace = request.header("x-vault-namespace").map(str::to_string);
            let token_ok = request.header("x-vault-token") == Some(state.token.as_str());
            let (status, reason, body) = if !token_ok {
                error(403, "Forbidden", &["permission denied"])
            } else if request.method != "GET" {
                error(405, "Method Not Allowed", &["unsupported operation"])
            } else {
                state.answer(namespace.as_deref().unwrap_or_default().trim_matches('/'), &path)
            };
            state.seen.push(Seen { path, namespace, token_ok, status });
            Some(Reply::new(status, &reason, body))
        });
        VaultDouble {
            addr: format!("https://127.0.0.1:{}", server.addr.port()),
            ca_pem: server.ca_pem.clone(),
            state,
            _server: server,
        }
    }

    /// Mounts a KV store of this version at `path` in `namespace` (`""`: the root namespace).
    pub fn mount(&self, namespace: &str, path: &str, version: u8) {
        self.mount_kind(namespace, path, version, "kv");
    }

    /// Mounts a secrets engine of another type (such as `database`).
    pub fn mount_kind(&self, namespace: &str, path: &str, version: u8, kind: &str) {
        let mount = Mount {
            namespace: namespace.into(),
            path: path.into(),
            version,
            kind: kind.into(),
            secrets: BTreeMap::new(),
        };
        self.state.lock().unwrap_or_else(PoisonError::into_inner).mounts.push(mount);
    }

    /// Writes a secret (its fields, a JSON object) at `path` inside the mount `mount`.
    pub fn put(&self, namespace: &str, mount: &str, path: &str, fields: Value) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let m = state
            .mounts
            .iter_mut()
            .find(|m| m.namespace == namespace && m.path == mount)
            .unwrap_or_else(|| panic!("no mount {mount} in namespace {namespace:?}"));
        m.secrets.insert(path.to_string(), fields);
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Seen> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).seen.clone()
    }
}
