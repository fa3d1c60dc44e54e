//! `phoenix_hypervisor_config.json`: the host, and Phoenix's own sections.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::backend::Backend;
use super::common::{FeatureSettings, FirewallAction, FirewallRule, GuestRef, OneOrMany, PasswordHash, SecretRef};
use super::vm::{VmConfig, VmDefaults};

/// The hypervisor file, `phoenix_hypervisor_config.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Phoenix hypervisor (phoenix_hypervisor_config.json)")]
pub struct HypervisorFile {
    /// The JSON Schema this file follows (for editors; ignored by Phoenix).
    #[serde(rename = "$schema")]
    pub schema: Option<String>,
    /// Informational.
    pub version: Option<Informational>,
    /// Informational.
    pub author: Option<String>,
    /// Host time zone, e.g. `Europe/Berlin`.
    pub timezone: Option<String>,
    /// NTP servers the host's chrony uses besides those of its own configuration, by host name
    /// or address, e.g. `["0.de.pool.ntp.org", "192.0.2.1"]` (Phoenix's addition).
    pub ntp_servers: Option<Vec<String>>,
    /// The admin user(s) created on the host.
    pub users: Option<OneOrMany<AdminUser>>,
    /// Paths of other files the shell version used.
    pub core_paths: Option<CorePaths>,
    /// Host networking.
    pub network: Option<HostNetwork>,
    /// Docker and Portainer images.
    pub docker: Option<DockerSettings>,
    /// NFS exports on the host.
    pub nfs: Option<Nfs>,
    /// Samba shares on the host.
    pub samba: Option<Samba>,
    /// ZFS pools and datasets.
    pub zfs: Option<Zfs>,
    /// Storage IDs used elsewhere: a list, or names mapped to storage IDs.
    pub proxmox_storage_ids: Option<StorageIds>,
    /// Where Proxmox mounts directory storages (`/mnt/pve`).
    pub mount_point_base: Option<String>,
    /// Defaults for containers.
    pub proxmox_defaults: Option<ProxmoxDefaults>,
    /// VM defaults (older files; newer ones use `phoenix_vm_configs.json`).
    pub vm_defaults: Option<VmDefaults>,
    /// VMs (older files; newer ones use `phoenix_vm_configs.json`).
    pub vms: Option<Vec<VmConfig>>,
    /// The host's NVIDIA driver.
    pub nvidia_driver: Option<NvidiaDriver>,
    /// How Phoenix behaves on failure.
    pub behavior: Option<Behavior>,
    /// Settings of features for every guest that runs them (each guest's own `feature_settings`
    /// win): download sources, an apt proxy, ... (Phoenix's addition).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub feature_settings: FeatureSettings,
    /// Host directories shared between containers, by name.
    #[serde(default)]
    pub shared_volumes: BTreeMap<String, SharedVolume>,
    /// The host's and cluster's firewall.
    pub firewall: Option<HostFirewall>,
    /// Where guests are created and how Phoenix reaches it.
    pub backend: Option<Backend>,
    /// Address pools guests take an address from when they give `ip_pool` instead of `ip`.
    #[serde(default)]
    pub ip_pools: BTreeMap<String, IpPool>,
    /// The NGINX gateway in front of the guests' `services`.
    pub gateway: Option<Gateway>,
}

/// An informational value written as text or a number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Informational {
    /// `"1.2"`
    Text(String),
    /// `1.2`
    Number(f64),
}

/// An admin user on the host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminUser {
    /// User name, e.g. `phoenix_admin`: lowercase letters, digits, `_` and `-`, starting with a
    /// letter or `_`; at most 32 characters.
    #[schemars(regex(pattern = r"^[a-z_][a-z0-9_-]{0,31}$"))]
    pub username: String,
    /// A crypt(3) hash, `NOT_SET` for no password, or a secret reference; never a plain password.
    pub password_hash: Option<PasswordHash>,
    /// Give the user sudo.
    #[serde(default)]
    pub sudo_access: bool,
    /// An SSH public key for the user.
    pub ssh_public_key: Option<String>,
}

/// Paths of files the shell version read; Phoenix reads its files from the configuration directory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CorePaths {
    /// The hypervisor file.
    pub hypervisor_config_file: Option<String>,
    /// The container file.
    pub lxc_config_file: Option<String>,
    /// The VM file.
    pub vm_config_file: Option<String>,
    /// Schema of the hypervisor file.
    pub hypervisor_config_schema_file: Option<String>,
    /// Schema of the container file.
    pub lxc_config_schema_file: Option<String>,
    /// Schema of the VM file.
    pub vm_config_schema_file: Option<String>,
    /// File holding the Hugging Face token.
    pub hf_token_file: Option<String>,
    /// File holding the Docker registry token.
    pub docker_token_file: Option<String>,
}

/// Host networking.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HostNetwork {
    /// The host's bridge(s); each one's `address` defines the subnet of guests on it.
    pub interfaces: Option<OneOrMany<HostInterface>>,
    /// Default subnet of guests, e.g. `10.0.0.0/24`.
    pub default_subnet: Option<String>,
    /// Address of the NFS server guests mount from.
    pub nfs_server: Option<String>,
    /// Address of the Portainer server.
    pub portainer_server_ip: Option<String>,
    /// Port of the Portainer server.
    #[schemars(range(min = 1, max = 65535))]
    pub portainer_server_port: Option<u32>,
    /// Port of Portainer agents.
    #[schemars(range(min = 1, max = 65535))]
    pub portainer_agent_port: Option<u32>,
    /// A container registry guests pull from.
    pub external_registry_url: Option<String>,
}

/// A host bridge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HostInterface {
    /// Bridge name, e.g. `vmbr0`: at most 15 letters, digits, `_`, `.` or `-`.
    #[schemars(regex(pattern = r"^[A-Za-z0-9_.-]{1,15}$"))]
    pub name: String,
    /// The host's address on it with prefix length, e.g. `10.0.0.13/24`.
    pub address: String,
    /// The subnet's gateway.
    pub gateway: Option<String>,
    /// DNS servers: a string (older files, space- or comma-separated) or a list.
    pub dns_nameservers: Option<OneOrMany<String>>,
}

/// Docker and Portainer images.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DockerSettings {
    /// Portainer server image.
    pub portainer_server_image: Option<String>,
    /// Portainer agent image.
    pub portainer_agent_image: Option<String>,
}

/// NFS exports, kept in a file Phoenix owns, `/etc/exports.d/phoenix.exports` (`/etc/exports` is never touched).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Nfs {
    /// The exports.
    #[serde(default)]
    pub exports: Vec<NfsExport>,
}

/// One NFS export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NfsExport {
    /// Absolute path exported.
    pub path: String,
    /// Clients: addresses, CIDRs, host names or `*`.
    #[schemars(length(min = 1))]
    pub clients: Vec<String>,
    /// Export options, e.g. `rw`, `sync`, `no_subtree_check`.
    #[serde(default)]
    pub options: Vec<String>,
}

/// Samba shares, kept in a file Phoenix owns, included from `smb.conf` by one line in a marked block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Samba {
    /// The Samba user.
    pub user: Option<String>,
    /// The Samba user's password, as a reference.
    pub password: Option<SecretRef>,
    /// The shares.
    #[serde(default)]
    pub shares: Vec<SambaShare>,
}

/// One Samba share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SambaShare {
    /// Share name.
    pub name: String,
    /// Absolute path shared.
    pub path: String,
    /// `smb.conf` options of the share, e.g. `{"browseable": "yes", "read only": "no"}`.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Users allowed.
    #[serde(default)]
    pub valid_users: Vec<String>,
}

/// ZFS pools and datasets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Zfs {
    /// Maximum ARC size in GiB.
    #[schemars(range(min = 1, max = 4096))]
    pub arc_max_gb: Option<u32>,
    /// Pools.
    #[serde(default)]
    pub pools: Vec<ZfsPool>,
    /// Datasets.
    #[serde(default)]
    pub datasets: Vec<ZfsDataset>,
}

/// A ZFS pool. Creating one on disks that hold data needs an explicit flag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ZfsPool {
    /// Pool name.
    pub name: String,
    /// Layout.
    pub raid_level: RaidLevel,
    /// Disks, by stable path (`/dev/disk/by-id/...`).
    #[schemars(length(min = 1))]
    pub disks: Vec<String>,
}

/// A ZFS pool layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RaidLevel {
    /// One disk, no redundancy.
    #[serde(rename = "single")]
    Single,
    /// Mirrored disks (at least 2).
    #[serde(rename = "mirror")]
    Mirror,
    /// Single parity (at least 3 disks).
    #[serde(rename = "RAIDZ1")]
    Raidz1,
    /// Double parity (at least 4 disks).
    #[serde(rename = "RAIDZ2")]
    Raidz2,
    /// Triple parity (at least 5 disks).
    #[serde(rename = "RAIDZ3")]
    Raidz3,
}

/// A ZFS dataset, optionally registered as a Proxmox storage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ZfsDataset {
    /// Dataset name inside its pool.
    pub name: String,
    /// The pool it lives in.
    pub pool: String,
    /// ZFS properties as `key=value,key=value`.
    pub properties: Option<String>,
    /// Register it as this kind of Proxmox storage.
    pub proxmox_storage_type: Option<StorageType>,
    /// Proxmox content types, e.g. `images,rootdir`.
    pub proxmox_content_type: Option<String>,
}

/// Kind of Proxmox storage a dataset is registered as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StorageType {
    /// A `zfspool` storage (guest disks as zvols/datasets).
    Zfspool,
    /// A `dir` storage on the dataset's mount point.
    Dir,
}

/// Storage IDs: a list, or names mapped to storage IDs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum StorageIds {
    /// `["local-zfs", "fastData"]`
    List(Vec<String>),
    /// `{"fast": "fastData"}`
    Map(BTreeMap<String, String>),
}

/// Defaults for containers: `swap_mb`, `nameservers`, `unprivileged`, `start_at_boot` and
/// `template` apply to the containers that leave them out. The others are accepted and warned
/// about: every container gives its own cores, memory, root storage and size, and bridge.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProxmoxDefaults {
    /// CPU cores (not used: every container gives its own).
    #[schemars(range(min = 1, max = 8192))]
    pub cores: Option<u32>,
    /// Memory in MiB (not used: every container gives its own).
    #[schemars(range(min = 16))]
    pub memory_mb: Option<u32>,
    /// Swap in MiB, for containers that give none.
    pub swap_mb: Option<u32>,
    /// Storage ID for root disks (not used: every container gives its own).
    pub storage_pool: Option<String>,
    /// Root disk size in GiB (not used: every container gives its own).
    #[schemars(range(min = 1))]
    pub storage_size_gb: Option<u32>,
    /// Bridge (not used: every container gives its own `network_config.bridge`).
    pub network_bridge: Option<String>,
    /// DNS servers, for containers whose `network_config` gives none.
    pub nameservers: Option<OneOrMany<String>>,
    /// Unprivileged containers, for containers (and their clone sources) that do not say.
    pub unprivileged: Option<bool>,
    /// Start at boot, for containers that do not say.
    pub start_at_boot: Option<bool>,
    /// OS template for containers that give neither `template` nor `clone_from_ctid`.
    pub template: Option<String>,
}

/// The host's NVIDIA driver.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NvidiaDriver {
    /// Install the driver on the host.
    #[serde(default)]
    pub install: bool,
    /// Driver version, as dot-separated numbers such as `580.76.05`.
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+){1,2}$"))]
    pub version: Option<String>,
    /// URL of the driver's `.run` file.
    pub runfile_url: Option<String>,
    /// CUDA version, e.g. `12.8`.
    pub cuda_version: Option<String>,
    /// Install the libraries vLLM needs.
    #[serde(default)]
    pub install_vllm_libs: bool,
}

/// How Phoenix behaves on failure.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Behavior {
    /// Destroy guests this run created when their steps fail.
    #[serde(default)]
    pub rollback_on_failure: bool,
    /// Log every command Phoenix runs (secrets are still hidden).
    #[serde(default)]
    pub debug_mode: bool,
    /// How many of the snapshots Phoenix takes before running a feature or the application
    /// script again on an existing guest (`phoenix-pre-<time>`) are kept once the update
    /// succeeded, newest first; older ones beyond this number are deleted, and snapshots with
    /// other names are never touched. With 0 (the default) none is kept. A guest rolled back
    /// after a failed update keeps its snapshot until the next successful update.
    #[serde(default)]
    pub update_snapshots_kept: u32,
}

/// A host directory shared between containers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SharedVolume {
    /// Absolute path on the host.
    pub host_path: String,
    /// Owner on the host: `UID:GID` (numbers) or `user:group`. Default: the containers' mapped root.
    pub owner: Option<String>,
    /// Where it is mounted: container ID → absolute path inside that container.
    pub mounts: BTreeMap<String, String>,
}

/// The host's and cluster's firewall.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HostFirewall {
    /// Whether the firewall is on.
    pub enabled: bool,
    /// Policy for incoming traffic no rule matches.
    pub default_input_policy: Option<FirewallAction>,
    /// Policy for outgoing traffic no rule matches.
    pub default_output_policy: Option<FirewallAction>,
    /// Cluster-wide rules.
    #[serde(default)]
    pub global_firewall_rules: Vec<FirewallRule>,
}

/// A pool of addresses handed to guests that give `ip_pool` instead of `ip`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IpPool {
    /// The subnet, e.g. `10.0.0.0/24`.
    pub cidr: String,
    /// The addresses handed out, `first-last`, e.g. `10.0.0.100-10.0.0.199`; inside `cidr`.
    pub range: String,
    /// The subnet's gateway.
    pub gateway: Option<String>,
}

/// The NGINX gateway in front of the guests' `services`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Gateway {
    /// The container that runs NGINX.
    pub guest: GuestRef,
    /// Default server name.
    pub server_name: Option<String>,
    /// PEM certificate file on the host, for services with `tls`.
    pub tls_certificate_file: Option<String>,
    /// The certificate's private key, as a reference.
    pub tls_key: Option<SecretRef>,
}
