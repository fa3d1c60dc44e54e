//! QEMU VMs on the Proxmox backend: observed and normalised into Phoenix's VM fields, created
//! from a cloud image (the boot disk imported with `import-from`, a cloud-init drive, a serial
//! console, the guest agent enabled) or cloned from a snapshot and configured, updated with the
//! configuration's `digest`, started and shut down, snapshotted, destroyed with purge. Commands
//! and files inside a VM go through the QEMU guest agent (`agent/exec` and `agent/exec-status`,
//! `agent/file-write`, `agent/file-read`), which answers only once the VM has booted: the first
//! call after a start waits for `agent/ping`, for a bounded time.
//!
//! The VM's password reaches Proxmox only here: the plan carries the fingerprint of the hash as
//! the configuration gives it (field `ci.password`), the backend is given the hash or the secret
//! reference itself ([`ProxmoxBackend::with_vm_passwords`]) and resolves a reference when it sets
//! `cipassword`. Proxmox shows `cipassword` masked, so the fingerprint is kept in the VM's
//! description, next to the managed mark.
//!
//! It uses the backend's shared parts ([`super`]), never the containers' module.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use phoenix_backend::fields::canonical;
use phoenix_backend::{
    BackendError, ChangeEffect, CreateRequest, CreateSource, Delivery, ExecOutput, ExecRequest, Field, FieldChange,
    FilePush, GuestConfig, GuestId, GuestKind, ObserveScope, ObservedGuest, Value as PhoenixValue,
};
use serde_json::Value;

use super::{GuestOps, ProxmoxBackend};
use crate::propstring::{Property, Startup, parse_pairs};
use crate::record::MANAGED_MARK;
use crate::transport::decode::{text, truthy};
use crate::transport::endpoint::{Agent, Call, Guest, Power};
use crate::transport::upid::Upid;

/// How long the first agent call after a start waits for the agent, unless set.
pub const AGENT_WAIT: Duration = Duration::from_secs(300);

/// The most a `file-write` carries: its `content` is at most 61440 characters of base64.
pub const FILE_WRITE_CHUNK: usize = 61440 / 4 * 3;

/// The line of a VM's description that holds the fingerprint of its password.
const PASSWORD_LINE: &str = "Phoenix ci.password: ";

/// What the backend knows of VMs between calls: their passwords, the resolver of secret
/// references, and which VMs' agents answered since their last start.
#[derive(Default)]
pub struct VmState {
    passwords: BTreeMap<GuestId, String>,
    agent_ready: Mutex<BTreeSet<GuestId>>,
    agent_wait: Option<Duration>,
    resolver: Option<Resolver>,
    /// Held while a cloud image is looked for and downloaded, so that two VMs made from one
    /// image download it once (Proxmox refuses to download over an existing file).
    downloads: Mutex<()>,
}

/// Everything but the passwords (only which VMs have one).
impl std::fmt::Debug for VmState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VmState")
            .field("passwords for", &self.passwords.keys().collect::<Vec<_>>())
            .field("agent_ready", &self.agent_ready)
            .field("agent_wait", &self.agent_wait)
            .finish_non_exhaustive()
    }
}

/// The resolver of secret references the backend was given.
#[derive(Clone)]
struct Resolver(Arc<SecretResolver>);

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver")
    }
}

/// What `sshkeys` percent-encodes: every byte but the ASCII letters and digits and
/// `-_.!~*'()` (JavaScript's `encodeURIComponent`, as Proxmox's own web interface sends it). The
/// API's `urlencoded` format also lets `%` through unencoded, but a literal `%` is encoded here so
/// that the keys read back as they were.
const SSHKEYS: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// `sshkeys` as the API takes it (format `urlencoded`): every byte outside
/// `[a-zA-Z0-9-_.!~*'()]` percent-encoded.
pub fn encode_sshkeys(keys: &str) -> String {
    utf8_percent_encode(keys, SSHKEYS).to_string()
}

/// Percent-decodes `sshkeys` as Proxmox shows it.
pub fn decode_sshkeys(text: &str) -> String {
    percent_decode_str(text).decode_utf8_lossy().into_owned()
}

/// A QEMU `net[n]` as Phoenix reads it: the model and its MAC (`virtio=BC:24:11:..`), the bridge
/// and the firewall flag; other sub-keys are kept as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VmNet {
    /// Card model (`virtio`).
    pub model: String,
    /// MAC address.
    pub mac: Option<String>,
    /// Bridge.
    pub bridge: Option<String>,
    /// Whether the firewall filters it.
    pub firewall: Option<bool>,
    /// The other sub-keys, as given.
    pub rest: Vec<(String, String)>,
}

impl VmNet {
    /// Parses `net[n]` as Proxmox shows it.
    pub fn parse(value: &str) -> Option<VmNet> {
        let pairs = parse_pairs(value, "net", Some("model")).ok()?;
        let mut net = VmNet::default();
        for (k, v) in pairs {
            match k.as_str() {
                "model" => net.model = v,
                "macaddr" => net.mac = Some(v),
                "bridge" => net.bridge = Some(v),
                "firewall" => net.firewall = Some(v == "1"),
                _ if net.model.is_empty()
                    && net.mac.is_none()
                    && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                    && v.contains(':') =>
                {
                    net.model = k;
                    net.mac = Some(v);
                }
                _ => net.rest.push((k, v)),
            }
        }
        (!net.model.is_empty()).then_some(net)
    }

    /// Prints it as Proxmox stores it: `<model>[=<MAC>]` first.
    pub fn print(&self) -> String {
        let mut parts = vec![match &self.mac {
            Some(mac) => format!("{}={}", self.model, mac.to_ascii_uppercase()),
            None => self.model.clone(),
        }];
        if let Some(b) = &self.bridge {
            parts.push(format!("bridge={b}"));
        }
        if let Some(f) = self.firewall {
            parts.push(format!("firewall={}", u8::from(f)));
        }
        parts.extend(self.rest.iter().map(|(k, v)| format!("{k}={v}")));
        parts.join(",")
    }
}

/// The boot disk of a VM's configuration: the first disk of its boot order, else `scsi0` or
/// `virtio0`.
fn boot_disk(config: &serde_json::Map<String, Value>) -> Option<String> {
    let order = config.get("boot").and_then(text).unwrap_or_default();
    let listed = order
        .split(',')
        .find_map(|p| p.strip_prefix("order="))
        .unwrap_or_default()
        .split(';')
        .map(str::to_string)
        .collect::<Vec<_>>();
    let is_disk =
        |k: &str| config.get(k).and_then(text).is_some_and(|v| !v.contains("media=cdrom") && !v.contains("cloudinit"));
    listed.into_iter().chain(["scsi0".to_string(), "virtio0".to_string()]).find(|k| is_disk(k))
}

/// Whether a cloud image is given as the URL to download it from (what a bare image name such
/// as `noble-server-cloudimg-amd64.img` becomes in the desired state).
pub fn is_image_url(image: &str) -> bool {
    image.starts_with("https://") || image.starts_with("http://")
}

/// The file name a downloaded cloud image gets in a storage's `import` directory: its own name,
/// with Ubuntu's `.img` (a qcow2 image) as `.qcow2`, since Proxmox takes `import` content only
/// as `.ova`, `.qcow2`, `.raw` or `.vmdk`, named with `[a-zA-Z0-9-.+=_]`. `None` for another
/// kind of file.
pub fn import_name(url: &str) -> Option<String> {
    let file = url.rsplit('/').next()?;
    let safe = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.+=_".contains(&b));
    let name = match file.strip_suffix(".img") {
        Some(stem) => format!("{stem}.qcow2"),
        None => file.to_string(),
    };
    let (stem, ext) = name.rsplit_once('.')?;
    (safe(stem) && ["qcow2", "raw", "vmdk", "ova"].contains(&ext)).then_some(name)
}

/// Whether this Proxmox VE version downloads disk images into a storage's `import` directory
/// through the API (`download-url` with `content=import`, 8.4 and later).
pub fn downloads_images(version: &str) -> bool {
    let mut parts = version.split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (8, 4)
}

/// A VM's cloud image as its node has it: the volume it is imported from, on which storage, and
/// the URL to download it from first when the storage does not hold it yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CloudImage {
    volume: String,
    storage: String,
    download: Option<String>,
}

/// Whether a VM made a template still has a disk (not a CD-ROM or cloud-init drive) under its
/// own `vm-<id>-disk-` name: Proxmox renames each to a `base-` volume as it converts it.
pub fn disks_to_convert(config: &serde_json::Map<String, Value>, id: GuestId) -> bool {
    let own = format!("vm-{id}-disk-");
    config
        .iter()
        .filter(|(k, _)| super::is_drive(k))
        .filter_map(|(_, v)| text(v))
        .filter(|v| !v.contains("media=cdrom"))
        .any(|v| v.split(',').next().is_some_and(|volume| volume.contains(&own)))
}

/// Proxmox's configuration of a VM as Phoenix's fields.
pub fn normalize(config: &serde_json::Map<String, Value>) -> GuestConfig {
    let mut out = GuestConfig::default();
    let get = |k: &str| config.get(k).and_then(text);
    for (from, to) in
        [("name", Field::Hostname), ("cores", Field::Cores), ("onboot", Field::Onboot), ("ciuser", Field::CiUser)]
    {
        // A value Proxmox would not hold is left out: the configuration's then shows as a change.
        if let Some(v) = get(from).and_then(|v| to.parse(&v).ok()) {
            out.set(to, v);
        }
    }
    if let Some(m) = get("memory") {
        let current = m.split(',').find_map(|p| p.strip_prefix("current=").or((!p.contains('=')).then_some(p)));
        if let Some(c) = current.and_then(|c| c.trim().parse::<u64>().ok()) {
            out.set(Field::MemoryMb, c);
        }
    }
    if let Some(disk) = boot_disk(config).and_then(|k| get(&k)) {
        let file = disk.split(',').next().unwrap_or_default();
        if let Some((storage, _)) = file.split_once(':') {
            out.set(Field::Storage, storage);
        }
        if let Some(size) =
            disk.split(',').find_map(|p| p.strip_prefix("size=")).and_then(crate::transport::decode::gib)
        {
            out.set(Field::DiskGb, size);
        }
    }
    if let Some(net) = get("net0").and_then(|n| VmNet::parse(&n)) {
        // The interface's half of `firewall`; observing completes it with the guest's option.
        out.set(Field::Firewall, net.firewall == Some(true));
        if let Some(b) = net.bridge {
            out.set(Field::NetBridge, b);
        }
        if let Some(m) = net.mac {
            out.set(Field::NetMac, PhoenixValue::mac(&m));
        }
    }
    if let Some(ip) = get("ipconfig0") {
        for part in ip.split(',') {
            if let Some(v) = part.strip_prefix("ip=") {
                out.set(Field::NetIp, v);
            } else if let Some(v) = part.strip_prefix("gw=") {
                out.set(Field::NetGw, v);
            }
        }
    }
    if let Some(ns) = get("nameserver") {
        let servers = ns.split([' ', ',', ';']).filter(|s| !s.is_empty()).map(str::to_string).collect();
        out.set(Field::NetNameservers, PhoenixValue::Nameservers(servers));
    }
    if let Some(keys) = get("sshkeys") {
        let keys = decode_sshkeys(&keys);
        let keys: Vec<String> = keys.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect();
        if !keys.is_empty() {
            out.set(Field::CiSshkeys, PhoenixValue::Lines(keys));
        }
    }
    if get("cipassword").is_some()
        && let Some(fp) =
            get("description").and_then(|d| d.lines().find_map(|l| l.strip_prefix(PASSWORD_LINE).map(str::to_string)))
    {
        out.set(Field::CiPassword, fp.trim());
    }
    if let Some(s) = get("startup").and_then(|s| Startup::parse(&s).ok()) {
        out.set(Field::Startup, phoenix_backend::fields::Startup { order: s.order, up: s.up });
    }
    if let Some(t) = get("tags") {
        out.set(Field::Tags, PhoenixValue::tags(t.split([';', ',', ' '])));
    }
    out
}

/// How a change of a VM's field takes effect while it runs. CPU and memory changes wait in
/// Proxmox's pending configuration for the next start (no CPU or memory hotplug by default);
/// what cloud-init applies (user, keys, password, address, gateway, DNS, host name) is read by
/// cloud-init at the next boot; the interface, the disk size, firewall, start-up options and
/// tags change at once.
pub fn change_effect(field: &Field) -> ChangeEffect {
    match field {
        Field::NetBridge
        | Field::NetMac
        | Field::DiskGb
        | Field::Firewall
        | Field::FirewallRules
        | Field::Onboot
        | Field::Startup
        | Field::Tags => ChangeEffect::Live,
        Field::Storage => ChangeEffect::Recreate,
        Field::Hostname
        | Field::Cores
        | Field::MemoryMb
        | Field::NetIp
        | Field::NetGw
        | Field::NetNameservers
        | Field::CiUser
        | Field::CiSshkeys
        | Field::CiPassword => ChangeEffect::Restart,
        // Containers' fields: should a plan ever carry one for a VM, a restart is the safe answer.
        Field::SwapMb
        | Field::Unprivileged
        | Field::NetName
        | Field::Flags
        | Field::Idmap
        | Field::Gpus
        | Field::LxcRaw
        | Field::Apparmor
        | Field::Mount(_) => ChangeEffect::Restart,
    }
}

/// Resolves a secret reference to its value, or says why it cannot (never quoting a secret): the
/// error's message what went wrong, its detail how to fix it.
pub type SecretResolver = dyn Fn(&str) -> Result<String, BackendError> + Send + Sync;

/// Reads a password given as a secret reference (through `resolver` where there is one, else
/// `env:` and `file:` here); a crypt hash is itself. Messages never quote the value.
fn resolve_password(id: GuestId, source: &str, resolver: Option<&SecretResolver>) -> Result<String, BackendError> {
    let refuse = |m: String| BackendError::permanent(Delivery::NotSent, m);
    let reference = ["env:", "file:", "vault:"].iter().any(|p| source.starts_with(p));
    let value = if let (true, Some(resolve)) = (reference, resolver) {
        resolve(source)
            .map_err(|e| BackendError { message: format!("VM {id}: its password hash: {}", e.message), ..e })?
    } else if let Some(name) = source.strip_prefix("env:") {
        std::env::var(name).map_err(|_| {
            refuse(format!("VM {id}: the environment variable {name} (its password hash reference) is not set"))
        })?
    } else if let Some(path) = source.strip_prefix("file:") {
        std::fs::read_to_string(path)
            .map_err(|e| refuse(format!("VM {id}: cannot read its password hash file {path}: {e}")))?
            .trim_end_matches(['\n', '\r'])
            .to_string()
    } else if source.starts_with("vault:") {
        return Err(BackendError::unsupported(format!(
            "VM {id}: Vault secret references are not supported yet; use env: or file:"
        )));
    } else {
        source.to_string()
    };
    // qemu-server keeps a value as it is only when it looks like one of these crypt hashes
    // (`$1$`, `$5$`, `$6$`, `$2a$`, `$2y$`); anything else it hashes again, as a password.
    let kept = ["$1$", "$5$", "$6$", "$2a$", "$2y$"].iter().any(|p| value.starts_with(p))
        && value.split('$').filter(|s| !s.is_empty()).count() >= 3;
    if !kept {
        return Err(refuse(format!(
            "VM {id}: its password hash is not a crypt hash Proxmox keeps as it is ($6$, $5$, $1$, $2a$ or $2y$)"
        ))
        .with_detail(
            "Proxmox would take it for a password and hash it again: give a SHA-512 crypt hash (`mkpasswd -m sha-512`)",
        ));
    }
    Ok(value)
}

/// The description of a managed VM: the mark, and the fingerprint of its password if it has one.
fn description(fingerprint: Option<&str>) -> String {
    crate::record::fresh(&match fingerprint {
        Some(fp) => format!("{MANAGED_MARK}\n{PASSWORD_LINE}{fp}"),
        None => MANAGED_MARK.to_string(),
    })
}

impl ProxmoxBackend {
    /// The password hashes of VMs (a crypt hash, or a secret reference resolved when it is set),
    /// as the configuration gives them; the plan carries only their fingerprints (see
    /// [`phoenix_backend::fields::VM`]).
    pub fn with_vm_passwords(mut self, passwords: BTreeMap<GuestId, String>) -> ProxmoxBackend {
        self.vms.passwords = passwords;
        self
    }

    /// Resolves VMs' password references with `resolver` (the command line's, which reads Vault
    /// too) when they are set.
    pub fn with_secret_resolver(mut self, resolver: Arc<SecretResolver>) -> ProxmoxBackend {
        self.vms.resolver = Some(Resolver(resolver));
        self
    }

    /// How long the first guest-agent call after a VM starts waits for the agent (five minutes
    /// unless set).
    pub fn with_agent_wait(mut self, wait: Duration) -> ProxmoxBackend {
        self.vms.agent_wait = Some(wait);
        self
    }

    fn set_running(&self, id: GuestId, running: bool) {
        if let Some(s) = self.seen.lock().unwrap_or_else(PoisonError::into_inner).get_mut(&id) {
            s.running = running;
        }
        self.vms.agent_ready.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
    }

    /// The node a VM is on and whether it runs (see [`ProxmoxBackend::locate`]).
    fn vm_locate(&self, id: GuestId) -> Result<Option<(String, bool)>, BackendError> {
        self.locate(id, GuestKind::Vm)
    }

    fn vm_existing(&self, id: GuestId) -> Result<(String, bool), BackendError> {
        self.vm_locate(id)?.ok_or_else(|| BackendError::not_found(format!("VM {id} does not exist")))
    }

    /// The node of a VM, as this run saw it or asked.
    fn vm_node(&self, id: GuestId) -> Result<String, BackendError> {
        self.node_seen(id, GuestKind::Vm)?.ok_or_else(|| BackendError::not_found(format!("VM {id} does not exist")))
    }

    fn vm_config(&self, node: &str, id: GuestId) -> Result<serde_json::Map<String, Value>, BackendError> {
        self.config_of(Guest::qemu(node, id))
    }

    fn vm_unlocked_config(&self, node: &str, id: GuestId) -> Result<serde_json::Map<String, Value>, BackendError> {
        self.unlocked_config_of(Guest::qemu(node, id))
    }

    /// The volume ID of a cloud image: as given, or for a host path the `import` volume of the
    /// directory storage that holds it (`<path>/import/<file>` becomes `<storage>:import/<file>`).
    /// An absolute path itself is for `root@pam` only, so it is never sent.
    fn image_volume(&self, node: &str, image: &str) -> Result<String, BackendError> {
        if !image.starts_with('/') {
            return Ok(image.to_string());
        }
        self.volume_of_path(node, image, "import", "import")?.ok_or_else(|| {
                BackendError::permanent(Delivery::NotSent, format!("no storage of node {node} holds the cloud image {image}"))
                    .with_detail("Proxmox imports a disk from a volume, not a path, for an API token: put the image in the `import` directory of a storage with content `import` (<storage path>/import/NAME, e.g. with `download-url`), or give its volume ID (storage:import/NAME)")
            })
    }

    /// Whether `storage` of `node` lists the volume among its `import` content.
    fn image_present(&self, node: &str, storage: &str, volume: &str) -> Result<bool, BackendError> {
        let present = self.api.call(&Call::StorageContent { node, storage }, &[("content", "import".into())])?;
        Ok(present.as_array().into_iter().flatten().any(|v| v["volid"] == volume))
    }

    /// The storage of `node` that cloud images are downloaded to: a directory storage with
    /// content `import` (`download-url` writes files), the VM's disk storage when it is one, else
    /// the first by name.
    fn import_storage(&self, node: &str, disk_storage: Option<&str>) -> Result<String, BackendError> {
        // The node's storages with content `import` that have a directory (the configuration's
        // `path`: the node's list shows none).
        let storages = self.cached_get(Call::Storages { node })?;
        let paths = self.storage_paths(node)?;
        let mut fit: Vec<&str> = storages
            .as_array()
            .into_iter()
            .flatten()
            .filter(|st| st["content"].as_str().is_some_and(|c| c.split(',').any(|c| c == "import")))
            .filter_map(|st| st["storage"].as_str())
            .filter(|st| paths.contains_key(*st))
            .collect();
        fit.sort_unstable();
        match disk_storage.filter(|d| fit.contains(d)).or(fit.first().copied()) {
            Some(storage) => Ok(storage.to_string()),
            None => Err(BackendError::permanent(
                Delivery::NotSent,
                format!("no storage of node {node} takes downloaded cloud images (a directory storage with content `import`)"),
            )
            .with_detail("add `import` to the content types of a directory storage (Datacenter → Storage, or `pvesm set <storage> --content <types>,import`)")),
        }
    }

    /// Where a VM's cloud image is on `node`: for a URL (a bare image name), the volume it gets
    /// in the `import` directory of the storage cloud images go to, to be downloaded unless
    /// the storage lists it already (Proxmox VE 8.4 or later); for a volume ID or a path, that
    /// volume, which the storage must hold.
    fn locate_image(&self, node: &str, image: &str, disk_storage: Option<&str>) -> Result<CloudImage, BackendError> {
        let refuse =
            |m: String, hint: &str| Err(BackendError::permanent(Delivery::NotSent, m).with_detail(hint.to_string()));
        if is_image_url(image) {
            let version = self.cached_get(Call::Version)?;
            let version = version["version"].as_str().unwrap_or_default();
            if !downloads_images(version) {
                return refuse(
                    format!(
                        "Proxmox VE {version} does not download cloud images into a storage (`download-url` with content `import` needs 8.4 or later): {image}"
                    ),
                    "download the image into the `import` directory of a storage yourself, and give its volume ID (storage:import/NAME.qcow2) as `template_image`",
                );
            }
            let Some(file) = import_name(image) else {
                return refuse(
                    format!("{image} is not a disk image Proxmox stores (.img, .qcow2, .raw, .vmdk)"),
                    "give another image",
                );
            };
            let storage = self.import_storage(node, disk_storage)?;
            let volume = format!("{storage}:import/{file}");
            let download = (!self.image_present(node, &storage, &volume)?).then(|| image.to_string());
            return Ok(CloudImage { volume, storage, download });
        }
        let volume = self.image_volume(node, image)?;
        let storage = volume.split(':').next().unwrap_or_default().to_string();
        if !self.storage_contents(node)?.contains_key(&storage) {
            self.check_storage_seen(&storage, &volume)?;
            return refuse(
                format!("node {node} has no storage {storage} (for the cloud image {volume})"),
                "name a storage `pvesm status` lists",
            );
        }
        if !self.image_present(node, &storage, &volume)? {
            return refuse(
                format!("the cloud image {volume} is not on storage {storage}"),
                "download it onto the storage (`download-url` with `content=import`), or name an image the storage holds",
            );
        }
        Ok(CloudImage { volume, storage, download: None })
    }

    /// Downloads a cloud image into its storage's `import` directory (`download-url`, a task)
    /// unless the storage lists it by now: one download at a time, so that VMs made from one
    /// image at once download it once.
    fn download_image(&self, node: &str, image: &CloudImage, url: &str) -> Result<(), BackendError> {
        let _one = self.vms.downloads.lock().unwrap_or_else(PoisonError::into_inner);
        if self.image_present(node, &image.storage, &image.volume)? {
            return Ok(());
        }
        let file = image.volume.split_once(":import/").map(|(_, f)| f.to_string()).unwrap_or_default();
        self.task(
            Call::DownloadUrl { node, storage: &image.storage },
            &[("content", "import".into()), ("filename", file), ("url", url.to_string())],
        )
    }

    /// Checks what creating the VM needs (see [`ProxmoxBackend::vm_check_create`]) and returns
    /// its cloud image, where it is created from one.
    fn vm_needs(&self, request: &CreateRequest) -> Result<Option<CloudImage>, BackendError> {
        let node = request.node.as_deref().unwrap_or(&self.node);
        let id = request.id;
        let disk_storage = request.config.text(&Field::Storage);
        self.check_disks_and_bridge(
            node,
            id,
            &disk_storage.into_iter().collect::<Vec<_>>(),
            ("images", "VM disks"),
            request.config.text(&Field::NetBridge),
        )?;
        let image = match &request.source {
            CreateSource::Template(image) => Some(self.locate_image(node, image, disk_storage)?),
            CreateSource::Clone { .. } => None,
        };
        if self.api_is_root() {
            return Ok(image);
        }
        let version = self.cached_get(Call::Version)?;
        let nine = version["version"].as_str().is_some_and(|v| v.starts_with('9'));
        let mut needed: Vec<(String, String, String)> = vec![
            ("VM.Config.Cloudinit".into(), format!("/vms/{id}"), format!("for the cloud-init settings of {id}")),
            ("VM.Config.HWType".into(), format!("/vms/{id}"), format!("for the serial console of {id}")),
            (
                if nine { "VM.GuestAgent.Unrestricted" } else { "VM.Monitor" }.into(),
                format!("/vms/{id}"),
                format!("to run commands in {id} through its guest agent"),
            ),
        ];
        if let Some(image) = &image {
            needed.push((
                "Datastore.Audit".into(),
                format!("/storage/{}", image.storage),
                format!("to import the disk of {id}"),
            ));
        }
        // Downloading needs what a container template's download needs, and (the URL probes the
        // node's network) Sys.Audit and Sys.Modify on / or Sys.AccessNetwork on the node.
        if let Some(image) = image.as_ref().filter(|i| i.download.is_some()) {
            needed.push((
                "Datastore.AllocateTemplate".into(),
                format!("/storage/{}", image.storage),
                format!("to download {} for {id}", image.volume),
            ));
            let permissions = self.cached_get(Call::Permissions)?;
            let on_root = super::preflight::privileges_on(&permissions, "/");
            let on_node = super::preflight::privileges_on(&permissions, &format!("/nodes/{node}"));
            let network = (on_root.contains("Sys.Audit") && on_root.contains("Sys.Modify"))
                || on_node.contains("Sys.AccessNetwork");
            if !network {
                needed.push((
                    "Sys.AccessNetwork".into(),
                    format!("/nodes/{node}"),
                    format!("to download {} (or Sys.Audit and Sys.Modify on /)", image.volume),
                ));
            }
        }
        if let CreateSource::Clone { source, .. } = &request.source {
            needed.push(("VM.Clone".into(), format!("/vms/{source}"), format!("to clone {source} into {id}")));
        }
        self.require(&needed)?;
        Ok(image)
    }

    /// The configured password of a VM, resolved, checked against the fingerprint the plan has.
    fn vm_password(&self, id: GuestId, fingerprint: &str) -> Result<String, BackendError> {
        let source = self.vms.passwords.get(&id).ok_or_else(|| {
            BackendError::permanent(Delivery::NotSent, format!("VM {id}: no password hash was given to the backend"))
        })?;
        if canonical::fingerprint(source) != fingerprint {
            return Err(BackendError::permanent(
                Delivery::NotSent,
                format!("VM {id}: its password hash changed since the plan was made; plan again"),
            ));
        }
        resolve_password(id, source, self.vms.resolver.as_ref().map(|r| &*r.0))
    }

    /// The API parameters for VM fields. `observed` completes what is sent as one value
    /// (`net0`, `ipconfig0`) and keeps what Proxmox chose (a generated MAC).
    fn vm_params(
        &self,
        id: GuestId,
        want: &GuestConfig,
        observed: Option<&GuestConfig>,
    ) -> Result<Vec<(String, String)>, BackendError> {
        let mut p = Vec::new();
        let get = |k: &Field| want.get(k).map(ToString::to_string);
        let either = |k: &Field| want.get(k).or_else(|| observed.and_then(|o| o.get(k))).cloned();
        for (field, param) in [
            (Field::Hostname, "name"),
            (Field::Cores, "cores"),
            (Field::MemoryMb, "memory"),
            (Field::Onboot, "onboot"),
            (Field::Startup, "startup"),
            (Field::Tags, "tags"),
            (Field::CiUser, "ciuser"),
            (Field::NetNameservers, "nameserver"),
        ] {
            if let Some(v) = get(&field) {
                p.push((param.to_string(), v));
            }
        }
        if let Some(keys) = get(&Field::CiSshkeys) {
            p.push(("sshkeys".into(), encode_sshkeys(&keys)));
        }
        if want.has(&Field::NetIp) || want.has(&Field::NetGw) {
            let mut parts = Vec::new();
            if let Some(gw) = either(&Field::NetGw) {
                parts.push(format!("gw={gw}"));
            }
            if let Some(ip) = either(&Field::NetIp) {
                parts.push(format!("ip={ip}"));
            }
            p.push(("ipconfig0".into(), parts.join(",")));
        }
        if [Field::NetBridge, Field::NetMac, Field::Firewall].iter().any(|k| want.has(k)) {
            let net = VmNet {
                model: "virtio".into(),
                mac: either(&Field::NetMac).map(|m| m.to_string()),
                bridge: either(&Field::NetBridge).map(|b| b.to_string()),
                firewall: either(&Field::Firewall).and_then(|f| f.as_flag()).filter(|on| *on),
                rest: Vec::new(),
            };
            p.push(("net0".into(), net.print()));
        }
        if let Some(fp) = want.text(&Field::CiPassword) {
            p.push(("cipassword".into(), self.vm_password(id, fp)?));
            p.push(("description".into(), description(Some(fp))));
        }
        Ok(p)
    }

    /// `PUT config` with the configuration's current `digest` (nothing when nothing changes).
    fn vm_put(
        &self,
        node: &str,
        id: GuestId,
        params: Vec<(String, String)>,
        delete: Vec<String>,
    ) -> Result<(), BackendError> {
        self.put_config(&self.api, Guest::qemu(node, id), &params, &delete)
    }

    /// Grows the boot disk to `want` GiB when it is smaller (Proxmox refuses to shrink it).
    fn vm_grow(&self, node: &str, id: GuestId, want: Option<u64>) -> Result<(), BackendError> {
        let Some(want) = want else { return Ok(()) };
        let config = self.vm_unlocked_config(node, id)?;
        let Some(disk) = boot_disk(&config) else { return Ok(()) };
        let have = normalize(&config).number(&Field::DiskGb).unwrap_or(0);
        if want <= have {
            return Ok(());
        }
        self.vm_task(Call::Resize(Guest::qemu(node, id)), &[("disk", disk), ("size", format!("{want}G"))])
    }

    /// A call that starts a task, or (config `POST`) answers null when it finished at once.
    fn vm_task(&self, call: Call<'_>, params: &[(&str, String)]) -> Result<(), BackendError> {
        let data = self.api.call(&call, params)?;
        if data.is_null() {
            return Ok(());
        }
        let upid: Upid = data.as_str().and_then(|u| u.parse().ok()).ok_or_else(|| {
            BackendError::permanent(
                Delivery::MaybeApplied,
                format!("{} {}: no task ID in the answer", call.method(), call.path()),
            )
        })?;
        crate::transport::task::wait(&self.api, &upid, self.poll, crate::transport::task::timeout_for(&upid.kind))
            .map(|_| ())
    }

    /// Waits until the VM's guest agent answers `agent/ping`, for at most the agent wait.
    fn wait_agent(&self, node: &str, id: GuestId) -> Result<(), BackendError> {
        if self.vms.agent_ready.lock().unwrap_or_else(PoisonError::into_inner).contains(&id) {
            return Ok(());
        }
        let limit = self.vms.agent_wait.unwrap_or(AGENT_WAIT);
        let started = Instant::now();
        let mut pause = self.poll.first;
        let ping = Call::Agent(Guest::qemu(node, id), Agent::Ping);
        loop {
            match self.api.call(&ping, &[]) {
                Ok(_) => {
                    self.vms.agent_ready.lock().unwrap_or_else(PoisonError::into_inner).insert(id);
                    return Ok(());
                }
                Err(e) if started.elapsed() >= limit => {
                    return Err(BackendError::permanent(
                        Delivery::NotSent,
                        format!(
                            "VM {id}: its QEMU guest agent did not answer within {} s ({})",
                            limit.as_secs_f64(),
                            e.message
                        ),
                    )
                    .with_detail("commands and files inside a VM go through the guest agent: the image must run `qemu-guest-agent` (install it into the cloud image), and the VM must have booted"));
                }
                Err(_) => {}
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(self.poll.max);
        }
    }

    /// The node of a running VM whose agent answers; a stopped VM is [`BackendError::unsupported`].
    fn agent_node(&self, id: GuestId) -> Result<String, BackendError> {
        let (node, running) = match self.last_seen(id) {
            Some(s) => (s.node, s.running),
            None => self.vm_existing(id)?,
        };
        if !running {
            return Err(BackendError::unsupported(format!(
                "VM {id} is stopped: commands and files inside it go through its guest agent"
            )));
        }
        self.wait_agent(&node, id)?;
        Ok(node)
    }

    /// Runs a command through the guest agent: argv as it is, polled until it exits or its
    /// timeout (status -1).
    fn vm_exec(&self, id: GuestId, request: &ExecRequest) -> Result<ExecOutput, BackendError> {
        let node = self.agent_node(id)?;
        let guest = Guest::qemu(&node, id);
        let params: Vec<(&str, String)> = request.argv.iter().map(|a| ("command", a.clone())).collect();
        let started = self.api.call(&Call::Agent(guest, Agent::Exec), &params)?;
        let pid = started["pid"].as_i64().or_else(|| started["pid"].as_str().and_then(|p| p.parse().ok())).ok_or_else(
            || BackendError::permanent(Delivery::MaybeApplied, format!("VM {id}: agent/exec gave no pid")),
        )?;
        let begun = Instant::now();
        let mut pause = self.poll.first;
        loop {
            let status = self.api.call(&Call::Agent(guest, Agent::ExecStatus), &[("pid", pid.to_string())])?;
            if truthy(&status["exited"]) {
                let out = |k: &str| status[k].as_str().unwrap_or_default().as_bytes().to_vec();
                let code = status["exitcode"].as_i64().and_then(|c| i32::try_from(c).ok());
                return Ok(ExecOutput { status: code.unwrap_or(-1), stdout: out("out-data"), stderr: out("err-data") });
            }
            if begun.elapsed() >= request.timeout {
                return Ok(ExecOutput {
                    status: -1,
                    stdout: Vec::new(),
                    stderr: format!("still running after {} s", request.timeout.as_secs()).into_bytes(),
                });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(self.poll.max);
        }
    }

    /// Runs a command through the agent; a non-zero exit is an error saying what it was for.
    fn vm_run(&self, id: GuestId, argv: Vec<String>, what: &str) -> Result<(), BackendError> {
        let out = self.vm_exec(id, &ExecRequest { argv, timeout: Duration::from_secs(120) })?;
        if out.success() {
            return Ok(());
        }
        Err(BackendError::permanent(
            Delivery::MaybeApplied,
            format!(
                "VM {id}: {what} failed with status {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ))
    }
}

/// The VM operations: a view of the backend for a guest known to be a VM.
pub(crate) struct Vms<'a>(pub(crate) &'a ProxmoxBackend);

impl std::ops::Deref for Vms<'_> {
    type Target = ProxmoxBackend;

    fn deref(&self) -> &ProxmoxBackend {
        self.0
    }
}

impl GuestOps for Vms<'_> {
    /// One VM as the backend shows it.
    fn observe(
        &self,
        node: &str,
        id: GuestId,
        running: bool,
        scope: &ObserveScope,
    ) -> Result<ObservedGuest, BackendError> {
        let config = self.vm_config(node, id)?;
        self.observed(Guest::qemu(node, id), &config, normalize(&config), running, scope)
    }

    /// Creates a VM from a cloud image, or clones a VM's snapshot, and configures it.
    fn create(&self, request: &CreateRequest) -> Result<(), BackendError> {
        let node = request.node.clone().unwrap_or_else(|| self.node.clone());
        let id = request.id;
        let image = self.vm_needs(request)?;
        self.remember_created(id, GuestKind::Vm, &node);
        let want = &request.config;
        match &request.source {
            CreateSource::Template(given) => {
                let image = image.ok_or_else(|| {
                    BackendError::permanent(Delivery::NotSent, format!("VM {id}: no cloud image found for {given}"))
                })?;
                if let Some(url) = &image.download {
                    self.download_image(&node, &image, url)?;
                }
                let volume = image.volume;
                let storage = want.text(&Field::Storage).ok_or_else(|| {
                    BackendError::permanent(Delivery::NotSent, format!("VM {id} has no storage for its disk"))
                })?;
                let mut params: Vec<(String, String)> = vec![
                    ("vmid".into(), id.to_string()),
                    ("description".into(), description(None)),
                    ("ostype".into(), "l26".into()),
                    ("scsihw".into(), "virtio-scsi-single".into()),
                    ("scsi0".into(), format!("{storage}:0,import-from={volume}")),
                    ("ide2".into(), format!("{storage}:cloudinit")),
                    ("serial0".into(), "socket".into()),
                    ("vga".into(), "serial0".into()),
                    ("agent".into(), "enabled=1".into()),
                    ("boot".into(), "order=scsi0".into()),
                ];
                for (k, v) in self.vm_params(id, want, None)? {
                    match params.iter_mut().find(|(p, _)| *p == k) {
                        Some(slot) => slot.1 = v,
                        None => params.push((k, v)),
                    }
                }
                let params: Vec<(&str, String)> = params.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
                self.vm_task(Call::Create { node: &node, kind: GuestKind::Vm }, &params)?;
                self.vm_grow(&node, id, want.number(&Field::DiskGb))?;
            }
            CreateSource::Clone { source, snapshot } => {
                let (src_node, _) = self.vm_locate(*source)?.ok_or_else(|| {
                    BackendError::permanent(Delivery::NotSent, format!("clone source {source} does not exist"))
                })?;
                // A template is cloned as it is (it has no snapshots), in full: Proxmox would
                // make a linked clone of a template by default, which ties the clone to it.
                let mut params: Vec<(&str, String)> = vec![("newid", id.to_string())];
                if !snapshot.is_empty() {
                    params.push(("snapname", snapshot.clone()));
                }
                params.push(("full", "1".into()));
                if let Some(name) = want.text(&Field::Hostname) {
                    params.push(("name", name.to_string()));
                }
                if let Some(storage) = want.text(&Field::Storage) {
                    params.push(("storage", storage.to_string()));
                }
                if src_node != node {
                    params.push(("target", node.clone()));
                }
                let source_config = self.vm_config(&src_node, *source)?;
                self.clone_storage(request, *source, &src_node, &source_config)?;
                self.check_clone_source(request, (*source, &src_node), &source_config, want.text(&Field::Storage))?;
                // Proxmox's snapshots keep no description, and a clone gets one only from this
                // parameter: the mark, below what the source's says (less its password line: the
                // clone's password is compared, and set, on its own).
                let old = source_config
                    .get("description")
                    .and_then(text)
                    .map(|d| d.lines().filter(|l| !l.starts_with(PASSWORD_LINE)).collect::<Vec<_>>().join("\n"));
                params.push((
                    "description",
                    self.clone_description(Guest::qemu(&src_node, *source), old.as_deref(), snapshot)?,
                ));
                self.vm_task(Call::Clone(Guest::qemu(&src_node, *source)), &params)?;
                // The clone has its template's configuration: make it this VM's.
                let current = self.vm_unlocked_config(&node, id)?;
                let observed = normalize(&current);
                let mut changes = want.clone();
                changes.retain(|k, v| !matches!(k, Field::Storage | Field::DiskGb) && observed.get(k) != Some(v));
                self.vm_grow(&node, id, want.number(&Field::DiskGb))?;
                self.vm_put(&node, id, self.vm_params(id, &changes, Some(&observed))?, Vec::new())?;
            }
        }
        crate::firewall::apply(&self.api, Guest::qemu(&node, id), want)
    }

    /// What creating the VM needs from its node: its disk storage (content `images`), its bridge,
    /// its cloud image, and with a token the privileges on each, the guest agent's included.
    fn check_create(&self, request: &CreateRequest) -> Result<(), BackendError> {
        // A source made in the same run is checked when the clone is asked for.
        if let CreateSource::Clone { source, .. } = &request.source
            && let Some((src_node, _)) = self.vm_locate(*source)?
        {
            let source_config = self.vm_config(&src_node, *source)?;
            self.clone_storage(request, *source, &src_node, &source_config)?;
            self.check_clone_source(
                request,
                (*source, &src_node),
                &source_config,
                request.config.text(&Field::Storage),
            )?;
        }
        self.vm_needs(request).map(|_| ())
    }

    /// Changes a VM's fields; removed `tags` and DNS servers are deleted.
    fn update(&self, id: GuestId, changes: &[FieldChange]) -> Result<(), BackendError> {
        let (node, _) = self.vm_existing(id)?;
        let observed = normalize(&self.vm_config(&node, id)?);
        let mut want = GuestConfig::default();
        let mut delete = Vec::new();
        for c in changes {
            match (&c.new, &c.field) {
                (Some(v), _) => want.set(c.field.clone(), v.clone()),
                (None, Field::Tags) => delete.push("tags".to_string()),
                (None, Field::NetNameservers) => delete.push("nameserver".to_string()),
                (None, _) => {}
            }
        }
        if let Some(size) = want.remove(&Field::DiskGb).and_then(|s| s.as_number()) {
            self.vm_grow(&node, id, Some(size))?;
        }
        self.vm_put(&node, id, self.vm_params(id, &want, Some(&observed))?, delete)?;
        crate::firewall::apply(&self.api, Guest::qemu(&node, id), &want)
    }

    fn start(&self, id: GuestId) -> Result<(), BackendError> {
        let (node, _) = self.vm_existing(id)?;
        self.vm_task(Call::Power(Guest::qemu(&node, id), Power::Start), &[])?;
        self.set_running(id, true);
        Ok(())
    }

    /// Shuts the VM down (ACPI, through the agent where it runs), stopping it after a minute.
    fn stop(&self, id: GuestId) -> Result<(), BackendError> {
        let (node, _) = self.vm_existing(id)?;
        self.vm_task(
            Call::Power(Guest::qemu(&node, id), Power::Shutdown),
            &[("timeout", "60".into()), ("forceStop", "1".into())],
        )?;
        self.set_running(id, false);
        Ok(())
    }

    fn snapshot(&self, id: GuestId, name: &str) -> Result<(), BackendError> {
        let (node, _) = self.vm_existing(id)?;
        self.take_snapshot(Guest::qemu(&node, id), name)
    }

    /// Rolls a VM back to a snapshot; Proxmox stops it for that, and starts it again (`start`)
    /// when it ran.
    fn rollback(&self, id: GuestId, name: &str) -> Result<(), BackendError> {
        let (node, running) = self.vm_existing(id)?;
        let params: Vec<(&str, String)> = if running { vec![("start", "1".into())] } else { Vec::new() };
        self.vm_task(Call::Rollback(Guest::qemu(&node, id), name), &params)?;
        self.restore_record(Guest::qemu(&node, id), name)?;
        // Started again (or left stopped): its guest agent answers only once it has booted.
        self.set_running(id, running);
        Ok(())
    }

    /// Deletes a snapshot of a VM.
    fn delete_snapshot(&self, id: GuestId, name: &str) -> Result<(), BackendError> {
        let (node, _) = self.vm_existing(id)?;
        self.vm_task(Call::DeleteSnapshot(Guest::qemu(&node, id), name), &[])
    }

    /// Makes a stopped VM a template and waits until its disks are converted.
    fn make_template(&self, id: GuestId) -> Result<(), BackendError> {
        let (node, running) = self.vm_existing(id)?;
        if running {
            return Err(BackendError::permanent(
                Delivery::NotSent,
                format!("VM {id} runs: only a stopped VM becomes a template"),
            ));
        }
        self.convert_to_template(Guest::qemu(&node, id), |config| disks_to_convert(config, id))
    }

    /// Stops the VM if it runs and destroys it with its disks, purged from jobs and HA.
    fn destroy(&self, id: GuestId) -> Result<(), BackendError> {
        let (node, running) = self.vm_existing(id)?;
        if running {
            self.vm_task(Call::Power(Guest::qemu(&node, id), Power::Stop), &[])?;
        }
        self.vm_task(
            Call::Destroy(Guest::qemu(&node, id)),
            &[("purge", "1".into()), ("destroy-unreferenced-disks", "1".into())],
        )?;
        self.seen.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
        Ok(())
    }

    /// Reads a file through the agent (`None` when it does not exist).
    fn read_file(&self, id: GuestId, path: &str) -> Result<Option<Vec<u8>>, BackendError> {
        let node = self.agent_node(id)?;
        match self.api.call(&Call::Agent(Guest::qemu(&node, id), Agent::FileRead), &[("file", path.to_string())]) {
            Ok(v) if truthy(&v["truncated"]) => Err(BackendError::permanent(
                Delivery::NotSent,
                format!("VM {id}: {path} is larger than the guest agent reads at once"),
            )),
            Ok(v) => Ok(Some(v["content"].as_str().unwrap_or_default().as_bytes().to_vec())),
            Err(e) if e.message.contains("No such file or directory") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes a file through the agent: made empty with mode 0600 (its directory created), written
    /// in `file-write` chunks (joined inside the VM when there are several), then given its mode
    /// and owner.
    fn push_file(&self, id: GuestId, file: &FilePush) -> Result<(), BackendError> {
        let node = self.agent_node(id)?;
        let strings = |v: &[&str]| v.iter().map(|s| (*s).to_string()).collect::<Vec<String>>();
        let path = file.path.clone();
        self.vm_run(
            id,
            [
                strings(&[
                    "/bin/sh",
                    "-c",
                    "umask 077; mkdir -p -- \"${1%/*}\" && : > \"$1\" && chmod 600 \"$1\"",
                    "phoenix-prepare",
                ]),
                vec![path.clone()],
            ]
            .concat(),
            &format!("preparing {path}"),
        )?;
        let chunks: Vec<&[u8]> =
            if file.content.is_empty() { vec![&[][..]] } else { file.content.chunks(FILE_WRITE_CHUNK).collect() };
        let write = |target: &str, bytes: &[u8]| {
            self.api
                .call(
                    &Call::Agent(Guest::qemu(&node, id), Agent::FileWrite),
                    &[("file", target.to_string()), ("content", BASE64.encode(bytes)), ("encode", "0".into())],
                )
                .map(|_| ())
        };
        if chunks.len() == 1 {
            write(&path, chunks[0])?;
        } else {
            let parts: Vec<String> = (0..chunks.len()).map(|i| format!("{path}.phoenix-part-{i:04}")).collect();
            for (part, bytes) in parts.iter().zip(&chunks) {
                write(part, bytes)?;
            }
            let join = "out=$1; shift; cat -- \"$@\" > \"$out\" && rm -f -- \"$@\"";
            self.vm_run(
                id,
                [strings(&["/bin/sh", "-c", join, "phoenix-join"]), vec![path.clone()], parts].concat(),
                &format!("writing {path}"),
            )?;
        }
        self.vm_run(
            id,
            [
                strings(&["/bin/sh", "-c", "chmod \"$2\" \"$1\" && chown \"$3:$4\" \"$1\"", "phoenix-own"]),
                vec![path.clone(), format!("{:o}", file.mode), file.uid.to_string(), file.gid.to_string()],
            ]
            .concat(),
            &format!("setting the mode and owner of {path}"),
        )
    }

    /// The addresses a running VM's agent reports (none while it does not answer).
    fn addresses(&self, id: GuestId) -> Result<Vec<std::net::IpAddr>, BackendError> {
        let node = self.vm_node(id)?;
        let Ok(list) = self.api.call(&Call::Agent(Guest::qemu(&node, id), Agent::Interfaces), &[]) else {
            return Ok(Vec::new());
        };
        Ok(list["result"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|i| i["name"] != "lo")
            .flat_map(|i| i["ip-addresses"].as_array().cloned().unwrap_or_default())
            .filter_map(|a| a["ip-address"].as_str().and_then(|s| s.parse::<std::net::IpAddr>().ok()))
            .filter(|a| {
                !a.is_loopback() && !matches!(a, std::net::IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80)
            })
            .collect())
    }
    /// Marks a VM Phoenix did not create as Phoenix's (its description; nothing else).
    fn adopt(&self, id: GuestId) -> Result<(), BackendError> {
        let node = self.vm_node(id)?;
        self.mark_managed(Guest::qemu(&node, id))
    }

    fn exec(&self, id: GuestId, request: &ExecRequest) -> Result<ExecOutput, BackendError> {
        self.vm_exec(id, request)
    }

    /// VMs are not checked.
    fn check_snapshot(&self, _config: &GuestConfig) -> Result<(), BackendError> {
        Ok(())
    }

    fn change_effect(&self, field: &Field) -> ChangeEffect {
        change_effect(field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sshkeys_are_percent_encoded_as_the_api_wants_and_read_back() {
        let keys = "ssh-ed25519 AAAAC3Nza+C1/lZD= admin@ws\nssh-rsa AAAB3 x@y";
        let encoded = encode_sshkeys(keys);
        assert_eq!(encoded, "ssh-ed25519%20AAAAC3Nza%2BC1%2FlZD%3D%20admin%40ws%0Assh-rsa%20AAAB3%20x%40y");
        assert!(encoded.chars().all(|c| c.is_ascii_alphanumeric() || "-%_.!~*'()".contains(c)));
        assert_eq!(decode_sshkeys(&encoded), keys);
    }

    #[test]
    fn a_literal_percent_in_a_key_reads_back_as_itself() {
        let keys = "ssh-ed25519 AAAA 100%@ws";
        let encoded = encode_sshkeys(keys);
        assert_eq!(encoded, "ssh-ed25519%20AAAA%20100%25%40ws");
        assert_eq!(decode_sshkeys(&encoded), keys);
    }

    #[test]
    fn a_file_write_chunk_fits_the_api_as_base64() {
        assert_eq!(BASE64.encode(vec![0u8; FILE_WRITE_CHUNK]).len(), 61440);
        assert_eq!(BASE64.encode(b"hello"), "aGVsbG8=");
    }

    #[test]
    fn what_proxmox_shows_of_a_vm_normalises_to_phoenix_fields() {
        let shown: serde_json::Map<String, Value> = serde_json::from_str(
            r#"{"name": "web-vm", "cores": 4, "memory": "8192", "onboot": 1, "ciuser": "admin",
                "boot": "order=scsi0;ide2;net0", "scsi0": "local-zfs:vm-8001-disk-0,discard=on,size=64G",
                "ide2": "local-zfs:vm-8001-cloudinit,media=cdrom",
                "net0": "virtio=BC:24:11:AA:BB:CC,bridge=vmbr0,firewall=1",
                "ipconfig0": "ip=10.0.0.99/24,gw=10.0.0.1", "nameserver": "10.0.0.1 10.0.0.2",
                "sshkeys": "ssh-ed25519%20AAAA%20a%40b%0A", "cipassword": "**********",
                "description": "Managed by Phoenix.\nPhoenix ci.password: sha256:0011223344556677",
                "startup": "order=1,up=5", "tags": "B;a", "digest": "x"}"#,
        )
        .expect("json");
        let c = normalize(&shown);
        let expected = [
            ("hostname", "web-vm"),
            ("cores", "4"),
            ("memory_mb", "8192"),
            ("onboot", "1"),
            ("ci.user", "admin"),
            ("storage", "local-zfs"),
            ("disk_gb", "64"),
            ("firewall", "1"),
            ("net.bridge", "vmbr0"),
            ("net.mac", "bc:24:11:aa:bb:cc"),
            ("net.ip", "10.0.0.99/24"),
            ("net.gw", "10.0.0.1"),
            ("net.nameservers", "10.0.0.1 10.0.0.2"),
            ("ci.sshkeys", "ssh-ed25519 AAAA a@b"),
            ("ci.password", "sha256:0011223344556677"),
            ("startup", "order=1,up=5"),
            ("tags", "a;b"),
        ];
        for (k, v) in expected {
            assert_eq!(c.spelled(k).as_deref(), Some(v), "{k}");
        }
        assert_eq!(c.len(), expected.len(), "{c:?}");
        assert_eq!(
            VmNet::parse("virtio=BC:24:11:AA:BB:CC,bridge=vmbr0,firewall=1").map(|n| n.print()).as_deref(),
            Some("virtio=BC:24:11:AA:BB:CC,bridge=vmbr0,firewall=1")
        );
        assert_eq!(VmNet::parse("virtio,bridge=vmbr0").map(|n| n.mac), Some(None));
    }

    #[test]
    fn cloud_init_and_cpu_changes_wait_for_the_next_boot() {
        for f in [
            "cores",
            "memory_mb",
            "ci.user",
            "ci.sshkeys",
            "ci.password",
            "net.ip",
            "net.gw",
            "net.nameservers",
            "hostname",
        ] {
            assert_eq!(change_effect(&Field::from_name(f).expect("field")), ChangeEffect::Restart, "{f}");
        }
        for f in ["net.bridge", "disk_gb", "tags", "onboot", "firewall.rules"] {
            assert_eq!(change_effect(&Field::from_name(f).expect("field")), ChangeEffect::Live, "{f}");
        }
        assert_eq!(change_effect(&Field::Storage), ChangeEffect::Recreate);
    }

    #[test]
    fn only_crypt_hashes_proxmox_keeps_are_sent_and_messages_never_quote_them() {
        assert!(resolve_password(8000, "$6$salt$abcdef", None).is_ok());
        let e = resolve_password(8000, "$y$j9T$salt$hash", None).expect_err("yescrypt would be hashed again");
        assert!(!e.message.contains("j9T"), "{}", e.message);
        let e = resolve_password(8000, "env:PHOENIX_SURELY_UNSET_VARIABLE", None).expect_err("unset");
        assert!(e.message.contains("PHOENIX_SURELY_UNSET_VARIABLE"));
        // References go through the resolver the backend was given (the command line's reads Vault).
        let vault = |r: &str| match r {
            "vault:kv/vms#hash" => Ok("$6$salt$abcdef".to_string()),
            _ => Err(BackendError::permanent(Delivery::NotSent, "the secret kv/vms/other has no field hash")
                .with_detail("its fields: password")),
        };
        assert_eq!(resolve_password(8000, "vault:kv/vms#hash", Some(&vault)).expect("resolved"), "$6$salt$abcdef");
        let e = resolve_password(8000, "vault:kv/vms/other#hash", Some(&vault)).expect_err("no field");
        assert_eq!(e.message, "VM 8000: its password hash: the secret kv/vms/other has no field hash");
        assert_eq!(e.detail.as_deref(), Some("its fields: password"), "the hint is kept");
        assert!(resolve_password(8000, "vault:kv/vms#hash", None).is_err(), "no resolver, no Vault");
    }

    #[test]
    fn downloaded_images_get_a_name_proxmox_stores_on_the_versions_that_download_them() {
        let url = "https://cloud-images.ubuntu.com/noble/current/noble-server-cloudimg-amd64.img";
        assert!(is_image_url(url) && !is_image_url("local:import/noble.qcow2") && !is_image_url("/var/lib/vz/x.img"));
        assert_eq!(import_name(url).as_deref(), Some("noble-server-cloudimg-amd64.qcow2"));
        assert_eq!(
            import_name("https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2")
                .as_deref(),
            Some("debian-12-genericcloud-amd64.qcow2")
        );
        assert_eq!(import_name("https://example.org/disk.vhdx"), None);
        assert_eq!(import_name("https://example.org/a b.img"), None);
        assert!(downloads_images("8.4.5") && downloads_images("9.2.3") && downloads_images("8.10.0"));
        assert!(!downloads_images("8.3.2") && !downloads_images("8.0") && !downloads_images("7.4-3"));
    }
}
