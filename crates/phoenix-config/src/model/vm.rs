//! `phoenix_vm_configs.json`: the VMs (older files keep them in the hypervisor file).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{GuestFirewall, GuestRef, HealthCheck, OneOrMany, PasswordHash, Service};

/// The VM file, `phoenix_vm_configs.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Phoenix VMs (phoenix_vm_configs.json)")]
pub struct VmFile {
    /// The JSON Schema this file follows (for editors; ignored by Phoenix).
    #[serde(rename = "$schema")]
    pub schema: Option<String>,
    /// Defaults for every VM.
    pub vm_defaults: Option<VmDefaults>,
    /// The VMs.
    #[serde(default)]
    pub vms: Vec<VmConfig>,
}

/// Defaults for every VM; a VM's own value wins.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VmDefaults {
    /// Cloud image or template used when a VM gives none.
    pub template: Option<String>,
    /// Ubuntu release (`noble`, `jammy`, ...) whose cloud images a bare `template_image` name
    /// such as `noble-server-cloudimg-amd64.img` is downloaded from.
    pub ubuntu_release: Option<String>,
    /// CPU cores.
    #[schemars(range(min = 1))]
    pub cores: Option<u32>,
    /// Memory in MiB (Proxmox's range: 16 and up).
    #[schemars(range(min = 16))]
    pub memory_mb: Option<u32>,
    /// Boot disk size in GiB.
    #[schemars(range(min = 1, max = 65536))]
    pub disk_size_gb: Option<u32>,
    /// Storage ID for disks.
    pub storage_pool: Option<String>,
    /// Host bridge.
    pub network_bridge: Option<String>,
}

/// One VM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VmConfig {
    /// VM ID (100 to 999999999). Required: the shell version took the first free ID from 9000
    /// at each run, which names another VM when anything changed; give the ID the VM has (`qm
    /// list` shows it), or the one it should get.
    #[schemars(range(min = 100, max = 999_999_999))]
    pub vmid: u32,
    /// VM name (a DNS name).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Make this VM a Proxmox template once customized; clones of it are made from the template
    /// itself (no snapshot needed).
    #[serde(default)]
    pub is_template: bool,
    /// Create this VM as a clone of that VM: of its `template_snapshot_name`, or of the VM itself
    /// when it `is_template`.
    pub clone_from_vmid: Option<u32>,
    /// Cloud image the VM's disk is imported from: a file on the host, a storage volume, or a
    /// bare Ubuntu cloud-image name (`noble-server-cloudimg-amd64.img`) that is downloaded from
    /// `cloud-images.ubuntu.com`.
    pub template_image: Option<String>,
    /// Snapshot taken after customization; clones use it. A letter, then letters, digits, `_` or
    /// `-`; 2 to 40 characters.
    #[schemars(regex(pattern = r"^[A-Za-z][A-Za-z0-9_-]{1,39}$"))]
    pub template_snapshot_name: Option<String>,
    /// CPU cores (default from `vm_defaults`).
    #[schemars(range(min = 1))]
    pub cores: Option<u32>,
    /// Memory in MiB, 16 and up (default from `vm_defaults`).
    #[schemars(range(min = 16))]
    pub memory_mb: Option<u32>,
    /// Boot disk size in GiB (default from `vm_defaults`); grown, never shrunk.
    #[schemars(range(min = 1, max = 65536))]
    pub disk_size_gb: Option<u32>,
    /// Storage ID for disks (default from `vm_defaults`).
    pub storage_pool: Option<String>,
    /// Host bridge (default from `vm_defaults`).
    pub network_bridge: Option<String>,
    /// Fixed MAC address (`xx:xx:xx:xx:xx:xx`).
    #[schemars(regex(pattern = r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$"))]
    pub mac_address: Option<String>,
    /// Network settings given to cloud-init.
    pub network_config: Option<VmNetworkConfig>,
    /// The user cloud-init creates.
    pub user_config: Option<VmUserConfig>,
    /// Features installed in the VM, in order.
    #[serde(default)]
    pub features: Vec<String>,
    /// Settings of this VM's features, over those of the hypervisor file's `feature_settings`
    /// (Phoenix's addition).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub feature_settings: super::common::FeatureSettings,
    /// Start the VM when the host boots.
    pub start_at_boot: Option<bool>,
    /// Start-up order (lower starts first).
    pub boot_order: Option<u32>,
    /// Seconds to wait after starting this VM before the next one.
    pub boot_delay: Option<u32>,
    /// The VM's own firewall.
    pub firewall: Option<GuestFirewall>,
    /// Guests (container or VM IDs) that must be completed and healthy before this one starts.
    #[serde(default)]
    pub dependencies: Vec<GuestRef>,
    /// How to tell the VM is healthy.
    pub health_check: Option<HealthCheck>,
    /// Cluster node the VM lives on (default: the backend's node).
    pub node: Option<String>,
    /// Services exposed through the gateway.
    #[serde(default)]
    pub services: Vec<Service>,
    /// Tags shown in Proxmox.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// A VM's network settings, applied by cloud-init.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VmNetworkConfig {
    /// IPv4 address with prefix length, or `dhcp`. Leave out to take one from `ip_pool`.
    pub ip: Option<String>,
    /// Take the address from this pool of `ip_pools`.
    pub ip_pool: Option<String>,
    /// Default gateway (IPv4); needed with a static `ip`.
    pub gw: Option<String>,
    /// DNS server(s).
    pub nameserver: Option<OneOrMany<String>>,
}

/// The user cloud-init creates in the VM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VmUserConfig {
    /// User name.
    pub username: String,
    /// A crypt(3) hash (`$6$...`), `NOT_SET` for no password, or a secret reference to one.
    pub password_hash: Option<PasswordHash>,
    /// An SSH public key for the user.
    pub ssh_public_key: Option<String>,
}
