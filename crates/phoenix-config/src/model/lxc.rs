//! `phoenix_lxc_configs.json`: the containers.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{FeatureSettings, GuestFirewall, GuestRef, HealthCheck, OneOrMany, Service};

/// The container file, `phoenix_lxc_configs.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Phoenix containers (phoenix_lxc_configs.json)")]
pub struct LxcFile {
    /// The JSON Schema this file follows (for editors; ignored by Phoenix).
    #[serde(rename = "$schema")]
    pub schema: Option<String>,
    /// The NVIDIA driver version the host runs, as dot-separated numbers such as `580.76.05`;
    /// containers get the same user-space libraries.
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+){1,2}$"))]
    pub nvidia_driver_version: Option<String>,
    /// Base URL of the CUDA apt repository used inside containers.
    pub nvidia_repo_url: Option<String>,
    /// URL of the NVIDIA driver `.run` file installed in containers (without the kernel module).
    pub nvidia_runfile_url: Option<String>,
    /// The containers, keyed by container ID (a string of digits, 100 to 999999999).
    #[serde(default)]
    pub lxc_configs: BTreeMap<String, LxcConfig>,
}

/// One LXC container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LxcConfig {
    /// Host name of the container (a DNS name).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Memory limit in MiB (Proxmox's range: 16 and up).
    #[schemars(range(min = 16))]
    pub memory_mb: u32,
    /// Swap limit in MiB (default 0 on Proxmox: no swap).
    pub swap_mb: Option<u32>,
    /// CPU cores (Proxmox's range: 1 to 8192).
    #[schemars(range(min = 1, max = 8192))]
    pub cores: u32,
    /// OS template: a host path to a rootfs tarball (`.tar.gz`, `.tar.xz`, `.tar.zst`) or a storage
    /// volume ID such as `local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst`. Used when there is no `clone_from_ctid`.
    pub template: Option<String>,
    /// Storage ID for the root disk.
    pub storage_pool: String,
    /// Root disk size in GiB (any positive size); grown, never shrunk.
    #[schemars(range(min = 1))]
    pub storage_size_gb: u32,
    /// The container's network interface.
    pub network_config: NetworkConfig,
    /// Fixed MAC address (`xx:xx:xx:xx:xx:xx`); without it the backend generates one and keeps it.
    #[schemars(regex(pattern = r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$"))]
    pub mac_address: Option<String>,
    /// Features installed inside the container, in order (`base_setup`, `docker`, `nvidia`, `vllm`, `ollama`).
    #[serde(default)]
    pub features: Vec<String>,
    /// GPUs passed to the container: `"none"` or host GPU indices such as `"0,1"`.
    pub gpu_assignment: Option<String>,
    /// What the `docker` feature deploys of Portainer.
    pub portainer_role: Option<PortainerRole>,
    /// Whether the container runs unprivileged (with a user-namespace ID map). Required, except
    /// for a clone, which keeps its source's setting when it gives none (as `pct clone` does).
    pub unprivileged: Option<bool>,
    /// Make the container a Proxmox template once customized; clones of it are made from the
    /// template itself (no snapshot needed).
    #[serde(default)]
    pub is_template: bool,
    /// Marks a template: after customization a snapshot with this name is taken, and clones use it.
    /// A letter, then letters, digits, `_` or `-`; 2 to 40 characters.
    #[schemars(regex(pattern = r"^[A-Za-z][A-Za-z0-9_-]{1,39}$"))]
    pub template_snapshot_name: Option<String>,
    /// Create this container as a clone of that container (its ID, in digits) at its `template_snapshot_name`.
    #[schemars(regex(pattern = r"^[0-9]+$"))]
    pub clone_from_ctid: Option<String>,
    /// Script run inside the container after the features: an absolute path, or a name looked up
    /// in the configuration directory, then `../bin/` and `../bin/lxc_setup/` beside it (where the
    /// shell version kept its scripts). It gets the container's whole block in its parameters.
    pub application_script: Option<String>,
    /// Container feature flags such as `nesting=1`, `keyctl=1`, `fuse=1`, `mknod=1`, `mount=nfs;cifs`.
    #[serde(default)]
    pub pct_options: Vec<String>,
    /// Service ports as `"host:container"`, used by application scripts and the gateway.
    #[serde(default)]
    pub ports: Vec<String>,
    /// How to tell the container is healthy; dependents wait for it.
    pub health_check: Option<HealthCheck>,
    /// The container's own firewall.
    pub firewall: Option<GuestFirewall>,
    /// Guests (container or VM IDs) that must be completed and healthy before this one starts.
    #[serde(default)]
    pub dependencies: Vec<GuestRef>,
    /// Start the container when the host boots.
    pub start_at_boot: Option<bool>,
    /// Start-up order (lower starts first).
    pub boot_order: Option<u32>,
    /// Seconds to wait after starting this container before the next one.
    pub boot_delay: Option<u32>,
    /// Raw `lxc.*` configuration lines (an escape hatch), e.g. `lxc.cgroup2.devices.allow: c 195:* rwm`.
    #[serde(default)]
    pub lxc_options: Vec<String>,
    /// Extra disks mounted in the container.
    #[serde(default)]
    pub volumes: Vec<Volume>,
    /// Extra disks on ZFS storages mounted in the container (same fields as `volumes`).
    #[serde(default)]
    pub zfs_volumes: Vec<Volume>,
    /// Host directories bind-mounted into the container.
    #[serde(default)]
    pub mount_points: Vec<MountPoint>,
    /// User-namespace ID ranges mapped one-to-one to host IDs (unprivileged containers only).
    #[serde(default)]
    pub id_maps: Vec<IdMap>,
    /// AppArmor profile name, or `unconfined`.
    pub apparmor_profile: Option<String>,
    /// The container may nest (run Docker, systemd sandboxes): the same as the feature flag
    /// `nesting=1`, which Proxmox writes as `lxc.apparmor.allow_nesting` and the nesting include.
    pub apparmor_manages_nesting: Option<bool>,
    /// Cluster node the container lives on (Proxmox backend; default: the backend's node).
    pub node: Option<String>,
    /// Services exposed through the gateway.
    #[serde(default)]
    pub services: Vec<Service>,
    /// Tags shown in Proxmox.
    #[serde(default)]
    pub tags: Vec<String>,
    /// vLLM: the model to serve (a Hugging Face ID or a path in the container).
    pub vllm_model: Option<String>,
    /// vLLM: the model name clients use.
    pub vllm_served_model_name: Option<String>,
    /// vLLM: the port of the OpenAI-compatible server.
    #[schemars(range(min = 1, max = 65535))]
    pub vllm_port: Option<u32>,
    /// vLLM: extra command-line arguments, one per element.
    #[serde(default)]
    pub vllm_args: Vec<String>,
    /// vLLM: tensor parallel size (at most the number of assigned GPUs).
    #[schemars(range(min = 1, max = 64))]
    pub vllm_tensor_parallel_size: Option<u32>,
    /// vLLM: fraction of GPU memory to use, above 0 and at most 1.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub vllm_gpu_memory_utilization: Option<f64>,
    /// vLLM: maximum model context length.
    #[schemars(range(min = 1))]
    pub vllm_max_model_len: Option<u32>,
    /// vLLM engine settings by section; each key becomes a `--kebab-case` argument.
    pub vllm_engine_config: Option<VllmEngineConfig>,
    /// Settings of this container's features, over those of the hypervisor file's
    /// `feature_settings` (Phoenix's addition).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub feature_settings: FeatureSettings,
}

impl LxcConfig {
    /// The model vLLM serves: `vllm_model`, or `vllm_engine_config.ModelConfig.model` (the form
    /// later files use).
    pub fn vllm_model(&self) -> Option<&str> {
        self.vllm_model.as_deref().or_else(|| {
            self.vllm_engine_config.as_ref().and_then(|e| e.model_config.get("model")).and_then(|m| m.as_str())
        })
    }
}

/// The container's network interface.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// Interface name inside the container, e.g. `eth0`: at most 15 letters, digits, `_`, `.` or `-`.
    #[schemars(regex(pattern = r"^[A-Za-z0-9_.-]{1,15}$"))]
    pub name: String,
    /// Host bridge, e.g. `vmbr0`.
    pub bridge: String,
    /// IPv4 address with prefix length (`10.0.0.50/24`), or `dhcp`. Leave out to take one from `ip_pool`.
    pub ip: Option<String>,
    /// Take the address from this pool of `ip_pools` (instead of `ip`).
    pub ip_pool: Option<String>,
    /// Default gateway (IPv4); needed with a static `ip`.
    pub gw: Option<String>,
    /// DNS servers: one address, or a list.
    pub nameservers: Option<OneOrMany<String>>,
}

/// What the `docker` feature deploys of Portainer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PortainerRole {
    /// The Portainer server.
    Server,
    /// A Portainer agent.
    Agent,
    /// Nothing of Portainer.
    None,
    /// Infrastructure services, no Portainer.
    Infrastructure,
}

/// A new disk mounted in the guest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Volume {
    /// Volume name.
    pub name: String,
    /// Storage ID the disk is allocated on.
    pub pool: String,
    /// Size in GiB; grown, never shrunk.
    #[schemars(range(min = 1, max = 65536))]
    pub size_gb: u32,
    /// Absolute path inside the guest.
    pub mount_point: String,
}

/// A host directory bind-mounted into the container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MountPoint {
    /// Absolute path on the host.
    pub host_path: String,
    /// Absolute path inside the container.
    pub container_path: String,
    /// Owner of the host directory, as seen inside the container (default: the container's root).
    pub owner_uid: Option<u32>,
    /// Group of the host directory, as seen inside the container (default: the container's root group).
    pub owner_gid: Option<u32>,
    /// Mount read-only (default false).
    #[serde(default)]
    pub read_only: bool,
}

/// A user-namespace range mapped one-to-one onto host IDs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdMap {
    /// `uid` or `gid`.
    #[serde(rename = "type")]
    pub kind: IdKind,
    /// First ID on the host.
    pub host_id: u32,
    /// First ID inside the container.
    pub container_id: u32,
    /// Number of IDs mapped.
    #[schemars(range(min = 1))]
    pub size: u32,
}

/// User or group IDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum IdKind {
    /// User IDs.
    Uid,
    /// Group IDs.
    Gid,
}

/// vLLM engine settings by section; each key becomes a `--kebab-case` argument of `vllm serve`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VllmEngineConfig {
    /// Model settings (`max_model_len`, `dtype`, ...).
    #[serde(rename = "ModelConfig", default)]
    pub model_config: BTreeMap<String, serde_json::Value>,
    /// Cache settings (`gpu_memory_utilization`, `kv_cache_dtype`, ...).
    #[serde(rename = "CacheConfig", default)]
    pub cache_config: BTreeMap<String, serde_json::Value>,
    /// Parallelism settings (`tensor_parallel_size`, ...).
    #[serde(rename = "ParallelConfig", default)]
    pub parallel_config: BTreeMap<String, serde_json::Value>,
    /// Server settings (`host`, `port`, ...).
    #[serde(rename = "ServerConfig", default)]
    pub server_config: BTreeMap<String, serde_json::Value>,
}
