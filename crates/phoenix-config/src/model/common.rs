//! Types shared by the container, VM and hypervisor files.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A reference to a secret, resolved at run time and never stored in plans, logs or guests.
///
/// Forms: `env:NAME` (an environment variable), `file:/absolute/path` (the file's content,
/// without its trailing newline), `vault:<mount>/<path>#<field>` (a field of a HashiCorp Vault or
/// OpenBao KV secret, version 1 or 2, read with the environment's `VAULT_ADDR`, `VAULT_TOKEN` or
/// `~/.vault-token`, `VAULT_CACERT` and `VAULT_NAMESPACE`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretRef(pub String);

impl JsonSchema for SecretRef {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SecretRef".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "format": SECRET_REF_FORMAT,
            "pattern": "^(env:[A-Za-z_][A-Za-z0-9_]*|file:/.+|vault:[^#]+#.+)$",
            "description": "A secret reference, never the secret itself: `env:NAME`, `file:/absolute/path` or `vault:<mount>/<path>#<field>`.",
        })
    }
}

/// The `format` the schema gives secret references; the validator checks such strings itself so
/// that it never quotes a secret written inline.
pub const SECRET_REF_FORMAT: &str = "phoenix-secret-ref";

/// A guest ID: a container or VM number, written as a string of digits or as an integer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum GuestRef {
    /// `"950"`: digits only.
    Text(#[schemars(pattern(r"^[0-9]+$"))] String),
    /// `950`
    Number(u32),
}

impl GuestRef {
    /// The ID as written, as text (`"950"` and `950` both give `950`).
    pub fn as_text(&self) -> String {
        match self {
            GuestRef::Text(s) => s.clone(),
            GuestRef::Number(n) => n.to_string(),
        }
    }
}

/// One value, or a list of values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    /// A single value.
    One(T),
    /// Several values.
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    /// The values as a slice, whichever way they were written.
    pub fn as_slice(&self) -> &[T] {
        match self {
            OneOrMany::One(v) => std::slice::from_ref(v),
            OneOrMany::Many(v) => v,
        }
    }
}

/// A guest's firewall: Proxmox's per-guest firewall, rule by rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GuestFirewall {
    /// Whether the guest's firewall is on.
    pub enabled: bool,
    /// The guest's rules, in order.
    pub rules: Option<Vec<FirewallRule>>,
}

/// One firewall rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FirewallRule {
    /// Direction: `in` or `out`.
    #[serde(rename = "type")]
    pub direction: Direction,
    /// What to do with matching packets.
    pub action: FirewallAction,
    /// Source address, CIDR, range (`a-b`), or alias / IP set (`+name`).
    pub source: Option<String>,
    /// Destination address, CIDR, range, or alias / IP set.
    pub dest: Option<String>,
    /// IP protocol: `tcp`, `udp`, `icmp`, `icmpv6`, ..., or a protocol number.
    pub proto: Option<String>,
    /// Destination port(s): `22`, `8000:8010` or `80,443` (only with `tcp`, `udp`, `udplite`, `sctp`).
    pub port: Option<String>,
    /// Source port(s), same syntax as `port`.
    pub sport: Option<String>,
    /// Free text shown in Proxmox.
    pub comment: Option<String>,
    /// Limit the rule to traffic on this network interface of the guest (`net0`) or host (`vmbr0`).
    #[schemars(regex(pattern = r"^[A-Za-z][A-Za-z0-9_.-]{0,19}$"))]
    pub iface: Option<String>,
    /// Whether the rule is active (default true).
    pub enabled: Option<bool>,
}

/// Traffic direction of a firewall rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Incoming traffic.
    In,
    /// Outgoing traffic.
    Out,
}

/// What a firewall rule or policy does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum FirewallAction {
    /// Let the packet through.
    Accept,
    /// Silently drop the packet.
    Drop,
    /// Drop the packet and tell the sender.
    Reject,
}

/// A health check: exactly one of `command`, `http` or `tcp`, retried until it passes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// A shell command run inside the guest; exit status 0 means healthy.
    pub command: Option<String>,
    /// An HTTP probe, made from the host.
    pub http: Option<HttpProbe>,
    /// A TCP connect probe, made from the host.
    pub tcp: Option<TcpProbe>,
    /// Attempts before the guest is declared unhealthy (default 5).
    #[schemars(range(min = 1, max = 1000))]
    pub retries: Option<u32>,
    /// Seconds between attempts (default 5).
    #[schemars(range(min = 1, max = 3600))]
    pub interval: Option<u32>,
    /// Seconds one attempt may take (default 10).
    #[schemars(range(min = 1, max = 3600))]
    pub timeout: Option<u32>,
}

/// An HTTP health probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpProbe {
    /// Port on the guest's address.
    #[schemars(range(min = 1, max = 65535))]
    pub port: u32,
    /// Path requested (default `/`).
    pub path: Option<String>,
    /// `http` (default) or `https`.
    pub scheme: Option<HttpScheme>,
    /// Expected status code (default: any 2xx).
    #[schemars(range(min = 100, max = 599))]
    pub expect_status: Option<u32>,
}

/// URL scheme of an HTTP probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HttpScheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

/// A TCP health probe: the port accepts a connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TcpProbe {
    /// Port on the guest's address.
    #[schemars(range(min = 1, max = 65535))]
    pub port: u32,
}

/// A service a guest exposes through the NGINX gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Service name, unique within the guest (used in generated NGINX upstream names): lowercase
    /// letters, digits, `_` and `-`, starting with a letter or digit.
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9_-]*$"))]
    pub name: String,
    /// Port the service listens on inside the guest.
    #[schemars(range(min = 1, max = 65535))]
    pub port: u32,
    /// Route by URL path prefix on the gateway, e.g. `/qdrant/`.
    pub path: Option<String>,
    /// Route by host name on the gateway, e.g. `qdrant.lab.example`.
    pub host: Option<String>,
    /// Serve this route over TLS on the gateway (default false).
    #[serde(default)]
    pub tls: bool,
    /// Pass WebSocket upgrades through (default false).
    #[serde(default)]
    pub websocket: bool,
    /// Speak HTTPS to the upstream instead of HTTP (default false).
    #[serde(default)]
    pub upstream_tls: bool,
}

/// A password given as a crypt(3) hash, `NOT_SET`, or a secret reference, never in plain text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PasswordHash(pub String);

impl JsonSchema for PasswordHash {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "PasswordHash".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "format": PASSWORD_HASH_FORMAT,
            "description": "A crypt(3) password hash (`$6$...`, `$y$...`), `NOT_SET` for no password, or a secret reference (`env:`, `file:`, `vault:`). Never a plain-text password.",
        })
    }
}

/// The `format` the schema gives password hashes; checked by the validator without quoting them.
pub const PASSWORD_HASH_FORMAT: &str = "phoenix-password-hash";

/// Settings of features, by feature, then by parameter, e.g.
/// `{"docker": {"docker_source": "distribution"}, "base_setup": {"apt_proxy": "http://10.0.0.1:3142"}}`
/// (Phoenix's addition). Each parameter is one its feature declares in `feature.json`
/// (`phoenix features` lists them) and has the type it declares.
pub type FeatureSettings = std::collections::BTreeMap<String, std::collections::BTreeMap<String, serde_json::Value>>;
