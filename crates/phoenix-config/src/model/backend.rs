//! The `backend` section: where guests are created and how Phoenix reaches it.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::SecretRef;

/// Where guests are created: a Proxmox VE node or cluster, or local LXC on this machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Backend {
    /// A Proxmox VE node or cluster, through its REST API and a node channel.
    Proxmox(Box<ProxmoxBackend>),
    /// LXC containers on the machine Phoenix runs on (no Proxmox needed).
    Lxc(LxcBackend),
}

/// How Phoenix reaches Proxmox VE.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProxmoxBackend {
    /// API base URL, e.g. `https://pve1.lab.example:8006`; needed with `via: "api"` (the default),
    /// not used with `via: "pvesh"`.
    pub api_url: Option<String>,
    /// The node guests are placed on unless they name their own `node`.
    pub node: String,
    /// `api` (default): HTTPS requests to `api_url`; `pvesh`: Phoenix runs on the node and sends
    /// the same requests through `pvesh` as `root@pam`, without a token or TLS.
    #[serde(default)]
    pub via: ApiRoute,
    /// An API token, for everything an API token may do (needed with `via: "api"`).
    pub token: Option<ApiToken>,
    /// A `root@pam` ticket, only for what Proxmox reserves to `root@pam` (device passthrough,
    /// bind mounts, feature flags other than nesting). Without it, those go through `pct set` on
    /// the node channel.
    pub root_ticket: Option<RootTicket>,
    /// How the API's TLS certificate is verified.
    pub tls: Option<TlsSettings>,
    /// The SSH node channel (`pct exec`, `pct push`, raw `lxc.*` lines), when Phoenix is not on the
    /// node; with `via: "pvesh"`, the channel to the cluster's other nodes.
    pub ssh: Option<SshSettings>,
}

/// How requests reach the Proxmox API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ApiRoute {
    /// HTTPS to `api_url`.
    #[default]
    Api,
    /// `pvesh` on the node itself, as `root@pam`.
    Pvesh,
}

/// A Proxmox API token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    /// Token ID: `user@realm!name`, e.g. `phoenix@pve!automation`.
    #[schemars(regex(pattern = r"^[^\s@!:]+@[A-Za-z][A-Za-z0-9._-]*![A-Za-z][A-Za-z0-9._-]*$"))]
    pub id: String,
    /// The token's secret, as a reference.
    pub secret: SecretRef,
}

/// Credentials for a `root@pam` ticket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RootTicket {
    /// The `root@pam` password, as a reference.
    pub password: SecretRef,
}

/// TLS verification of the API: a CA file or a pinned certificate fingerprint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM file of the CA that signed the API certificate (for example the cluster's `pve-root-ca.pem`).
    pub ca_file: Option<String>,
    /// SHA-256 fingerprint of the API certificate, as Proxmox shows it (`AB:CD:...`, 32 bytes).
    #[schemars(regex(pattern = r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){31}$"))]
    pub fingerprint: Option<String>,
    /// Turn certificate verification off. Anyone on the path can then read the token; Phoenix warns on every run.
    #[serde(default)]
    pub insecure: bool,
}

/// The SSH node channel.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SshSettings {
    /// Remote user (default `root`).
    pub user: Option<String>,
    /// Port (default 22).
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u32>,
    /// Private key file (default: the SSH agent and `~/.ssh`).
    pub identity_file: Option<String>,
    /// Known-hosts file used to verify the nodes' host keys (default `~/.ssh/known_hosts`); unknown keys are refused.
    pub known_hosts_file: Option<String>,
    /// Address of each node, by node name, where it is not the node name itself.
    #[serde(default)]
    pub hosts: BTreeMap<String, String>,
}

/// The local LXC backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LxcBackend {
    /// Where containers live (default `/var/lib/lxc`).
    pub lxc_path: Option<String>,
    /// The bridges guests name in `network_config.bridge`, each mapped to a bridge on this machine.
    pub bridges: BTreeMap<String, LocalBridge>,
    /// Storage IDs guests name (`storage_pool`, `volumes[].pool`, the storage of a template volume ID), each mapped to a directory.
    pub storage: BTreeMap<String, String>,
}

/// A bridge on this machine for the local LXC backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LocalBridge {
    /// Name of the bridge on this machine (default: the same name): at most 15 letters, digits,
    /// `_`, `.` or `-`.
    #[schemars(regex(pattern = r"^[A-Za-z0-9_.-]{1,15}$"))]
    pub host_bridge: Option<String>,
    /// The host's address on the bridge with prefix length, e.g. `10.77.0.1/24`; it defines the subnet.
    pub address: String,
    /// Masquerade the subnet's traffic out of the host (default false).
    #[serde(default)]
    pub nat: bool,
}
