//! Containers on the Proxmox backend: observed and normalised into Phoenix's fields, created
//! from a template or cloned from a snapshot and configured, updated with the configuration's
//! `digest`, started and shut down, snapshotted, made templates, destroyed with purge; commands
//! and files inside them through the node channel (`pct exec`). What the API token may not set
//! (device passthrough, bind mounts, feature flags) goes through a `root@pam` ticket or `pct set`
//! on the node, and raw `lxc.*` lines through the conf file on the node.
//!
//! It uses the backend's shared parts ([`super`]), never the VMs' module.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use phoenix_backend::Value as PhoenixValue;
use phoenix_backend::fields::{IdRange, canonical};
use phoenix_backend::{
    BackendError, ChangeEffect, CreateRequest, CreateSource, Delivery, ExecOutput, ExecRequest, Field, FieldChange,
    FilePush, GuestConfig, GuestId, GuestKind, Mount, MountSource, NoRoute, ObserveScope, ObservedGuest,
};
use serde_json::Value;

use super::{GuestOps, ID_BASE, ProxmoxBackend, numbered};
use crate::node::channel::pct_exec;
use crate::node::commands;
use crate::node::conf::ConfFile;
use crate::propstring::{Device, MountPoint, Net, Property, Startup};
use crate::record::MANAGED_MARK;
use crate::transport::decode::text;
use crate::transport::endpoint::{Call, Guest, Power};

/// The fields of the interface's property string (`net0`), which is sent whole.
const INTERFACE: &[Field] = &[Field::NetName, Field::NetBridge, Field::NetIp, Field::NetGw, Field::NetMac];

/// Fields kept as raw `lxc.*` lines in the container's conf file: the API has no keys for them.
const RAW_FIELDS: &[Field] = &[Field::LxcRaw, Field::Apparmor, Field::Idmap];

/// API parameters: names and values.
type Params = Vec<(String, String)>;

/// Whether Proxmox lets only `root@pam` set this: device passthrough, bind and device mount
/// points, feature flags other than `nesting`, and any feature flag of a `privileged` container.
pub fn reserved_to_root(key: &str, value: &str, privileged: bool) -> bool {
    numbered(key, "dev")
        || ((numbered(key, "mp") || key == "rootfs") && value.split(',').next().is_some_and(|v| v.starts_with('/')))
        || (key == "features" && (privileged || value.split(',').any(|f| !f.is_empty() && !f.starts_with("nesting="))))
}

/// Whether a container's configuration (as Proxmox shows it) makes it privileged.
fn privileged(config: &serde_json::Map<String, Value>) -> bool {
    config.get("unprivileged").and_then(text).as_deref() != Some("1")
}

/// Proxmox's configuration of a container as Phoenix's fields.
pub fn normalize(config: &serde_json::Map<String, Value>) -> GuestConfig {
    let mut out = GuestConfig::default();
    let get = |k: &str| config.get(k).and_then(text);
    for (from, to) in [
        ("hostname", Field::Hostname),
        ("cores", Field::Cores),
        ("memory", Field::MemoryMb),
        ("swap", Field::SwapMb),
        ("unprivileged", Field::Unprivileged),
        ("onboot", Field::Onboot),
    ] {
        // A value Proxmox would not hold is left out: the configuration's then shows as a change.
        if let Some(v) = get(from).and_then(|v| to.parse(&v).ok()) {
            out.set(to, v);
        }
    }
    if let Some(root) = get("rootfs").and_then(|r| MountPoint::parse(&r).ok()) {
        if let Some((storage, _)) = root.volume.split_once(':') {
            out.set(Field::Storage, storage);
        }
        if let Some(size) = root.size.as_deref().and_then(crate::transport::decode::gib) {
            out.set(Field::DiskGb, size);
        }
    }
    if let Some(net) = get("net0").and_then(|n| Net::parse(&n).ok()) {
        out.set(Field::NetName, net.name);
        // The interface's half of `firewall`; observing completes it with the guest's option.
        out.set(Field::Firewall, net.firewall == Some(true));
        for (field, value) in [(Field::NetBridge, net.bridge), (Field::NetIp, net.ip), (Field::NetGw, net.gw)] {
            if let Some(v) = value {
                out.set(field, v);
            }
        }
        if let Some(mac) = net.hwaddr.as_deref() {
            out.set(Field::NetMac, PhoenixValue::mac(mac));
        }
    }
    if let Some(ns) = get("nameserver") {
        out.set(Field::NetNameservers, PhoenixValue::Nameservers(ns.split_whitespace().map(str::to_string).collect()));
    }
    if let Some(f) = get("features") {
        out.set(Field::Flags, PhoenixValue::flags(f.split(',')));
    }
    if let Some(s) = get("startup").and_then(|s| Startup::parse(&s).ok()) {
        out.set(Field::Startup, phoenix_backend::fields::Startup { order: s.order, up: s.up });
    }
    if let Some(t) = get("tags") {
        out.set(Field::Tags, PhoenixValue::tags(t.split([';', ',', ' '])));
    }
    let mut gpus: Vec<u64> = config
        .iter()
        .filter(|(k, _)| numbered(k, "dev"))
        .filter_map(|(_, v)| text(v).and_then(|d| Device::parse(&d).ok()))
        .filter_map(|d| d.path.strip_prefix("/dev/nvidia").and_then(|n| n.parse().ok()))
        .collect();
    gpus.sort_unstable();
    if !gpus.is_empty() {
        out.set(Field::Gpus, PhoenixValue::Gpus(gpus.iter().map(u64::to_string).collect()));
    }
    let raw: Vec<(String, String)> = config
        .get("lxc")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|pair| Some((pair.get(0)?.as_str()?.to_string(), pair.get(1).and_then(text)?)))
        .collect();
    for (field, value) in raw_fields(&raw) {
        out.set(field, value);
    }
    for (k, v) in config {
        let is_mp = numbered(k, "mp");
        let Some(m) = is_mp.then(|| text(v)).flatten().and_then(|m| MountPoint::parse(&m).ok()) else { continue };
        let Some(inside) = m.mp.clone() else { continue };
        let mount = if m.is_bind() {
            let mut bind = Mount::bind(&m.volume);
            bind.read_only = m.ro == Some(true);
            bind
        } else {
            let storage = m.volume.split(':').next().unwrap_or_default();
            Mount::volume(storage, m.size.as_deref().and_then(crate::transport::decode::gib).unwrap_or(0))
        };
        out.set(Field::mount(&inside), mount);
    }
    out
}

/// The fields `lxc.raw`, `apparmor` and `idmap` of a container's raw `lxc.*` lines.
pub fn raw_fields(raw: &[(String, String)]) -> Vec<(Field, PhoenixValue)> {
    let mut out = Vec::new();
    let mut ranges: Vec<IdRange> = Vec::new();
    let mut rest = Vec::new();
    for (k, v) in raw {
        match k.as_str() {
            "lxc.apparmor.profile" => out.push((Field::Apparmor, PhoenixValue::Text(v.clone()))),
            "lxc.idmap" => match canonical::idmap_line(v) {
                Some(range) => ranges.push(range),
                None => rest.push(format!("{k}: {v}")),
            },
            _ => rest.push(format!("{k}: {v}")),
        }
    }
    if let Some(idmap) = canonical::idmap_configured(&ranges, ID_BASE) {
        out.push((Field::Idmap, idmap));
    }
    if !rest.is_empty() {
        out.push((Field::LxcRaw, PhoenixValue::Lines(rest)));
    }
    out
}

/// The configured ID ranges of a container's `idmap` field (none without one).
pub(super) fn configured_ranges(fields: &GuestConfig) -> &[IdRange] {
    fields.get(&Field::Idmap).and_then(PhoenixValue::as_idmap).unwrap_or_default()
}

/// The raw `lxc.*` lines for the fields `lxc.raw`, `apparmor` and `idmap`.
pub fn raw_lines(fields: &GuestConfig) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if fields.has(&Field::Idmap) {
        for (kind, inside, host, size) in canonical::idmap_ranges(configured_ranges(fields), ID_BASE) {
            out.push(("lxc.idmap".to_string(), format!("{kind} {inside} {host} {size}")));
        }
    }
    if let Some(profile) = fields.text(&Field::Apparmor) {
        out.push(("lxc.apparmor.profile".to_string(), profile.to_string()));
    }
    for line in fields.get(&Field::LxcRaw).map(PhoenixValue::items).unwrap_or_default() {
        if let Some((k, v)) = line.split_once(':') {
            out.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    out
}

/// The addresses of `GET /nodes/{node}/lxc/{vmid}/interfaces` (`inet` and `inet6` with their
/// prefix length), loopback excluded.
pub fn interface_addresses(list: &Value) -> Vec<std::net::IpAddr> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["name"] != "lo")
        .flat_map(|i| [text(&i["inet"]), text(&i["inet6"])])
        .flatten()
        .filter_map(|a| a.split('/').next().and_then(|a| a.parse::<std::net::IpAddr>().ok()))
        .filter(|a| !a.is_loopback())
        .collect()
}

/// The host directories of the bind mounts among `fields`, each with the owner it gets when
/// Phoenix creates it: `host-owner=` as given; `owner=` (IDs inside the container) mapped through
/// the ID map of `container` (its `unprivileged` and `idmap` fields); else the container's root.
pub fn bind_dirs(fields: &GuestConfig, container: &GuestConfig) -> Vec<(String, String)> {
    let unprivileged = container.flag(&Field::Unprivileged) != Some(false);
    let ranges = canonical::idmap_ranges(configured_ranges(container), ID_BASE);
    let host_id = |kind: char, id: u64| -> u64 {
        if !unprivileged {
            return id;
        }
        ranges
            .iter()
            .find(|(k, inside, _, size)| *k == kind && id >= *inside && id < inside + size)
            .map_or(id, |(_, inside, host, _)| host + (id - inside))
    };
    let mut out = Vec::new();
    for (_, mount) in fields.mounts() {
        let Some(path) = mount.host_path() else { continue };
        let owner = match (&mount.host_owner, mount.owner) {
            (Some(o), _) => o.clone(),
            (None, Some((u, g))) => format!("{}:{}", host_id('u', u.into()), host_id('g', g.into())),
            (None, None) => format!("{}:{}", host_id('u', 0), host_id('g', 0)),
        };
        out.push((path.to_string(), owner));
    }
    out
}

/// The API parameters for fields; `observed` keeps what Proxmox chose where the configuration
/// says nothing (a generated MAC), and numbers mount points after the existing ones.
pub fn to_params(desired: &GuestConfig, observed: Option<&GuestConfig>, creating: bool) -> Vec<(String, String)> {
    let mut p = Vec::new();
    let want = |k: Field| desired.get(&k).map(ToString::to_string);
    for (field, param) in [
        (Field::Hostname, "hostname"),
        (Field::Cores, "cores"),
        (Field::MemoryMb, "memory"),
        (Field::SwapMb, "swap"),
        (Field::Onboot, "onboot"),
        (Field::Startup, "startup"),
        (Field::Tags, "tags"),
        (Field::Flags, "features"),
        (Field::NetNameservers, "nameserver"),
    ] {
        if let Some(v) = want(field) {
            p.push((param.to_string(), v));
        }
    }
    if creating {
        if let Some(u) = want(Field::Unprivileged) {
            p.push(("unprivileged".into(), u));
        }
        if let (Some(storage), Some(size)) = (want(Field::Storage), want(Field::DiskGb)) {
            p.push(("rootfs".into(), format!("{storage}:{size}")));
        }
    }
    if let Some(name) = want(Field::NetName) {
        let kept = |field: Field| desired.get(&field).or_else(|| observed.and_then(|o| o.get(&field))).cloned();
        let net = Net {
            name,
            bridge: want(Field::NetBridge),
            ip: want(Field::NetIp),
            gw: want(Field::NetGw),
            hwaddr: kept(Field::NetMac).map(|m| m.to_string().to_ascii_uppercase()),
            kind: Some("veth".into()),
            firewall: kept(Field::Firewall).and_then(|f| f.as_flag()).filter(|on| *on),
            ..Net::default()
        };
        p.push(("net0".into(), net.print()));
    }
    for (i, (inside, mount)) in desired.mounts().enumerate() {
        let ro = mount.read_only.then_some(true);
        let volume = match &mount.source {
            MountSource::Bind(host) => host.clone(),
            MountSource::Volume { storage, gib } => format!("{storage}:{gib}"),
        };
        let m = MountPoint { volume, mp: Some(inside.to_string()), ro, ..MountPoint::default() };
        p.push((format!("mp{i}"), m.print()));
    }
    p
}

/// The `mp[n]` key of each mount point of a container's configuration, by its path inside.
fn mount_slots(current: &serde_json::Map<String, Value>) -> BTreeMap<String, String> {
    current
        .iter()
        .filter(|(k, _)| numbered(k, "mp"))
        .filter_map(|(k, v)| {
            let inside = MountPoint::parse(&text(v)?).ok()?.mp?;
            Some((inside.trim_end_matches('/').to_string(), k.clone()))
        })
        .collect()
}

/// Puts the mount points of `params` (numbered from 0 by [`to_params`]) in the container's
/// slots: a path it already mounts keeps its `mp[n]`, a new one takes a slot no mount point of
/// the container holds (Proxmox refuses to set a key it is deleting in the same request).
fn place_mounts(params: Params, current: &serde_json::Map<String, Value>) -> Params {
    let slots = mount_slots(current);
    let mut free = (0u32..).map(|n| format!("mp{n}")).filter(|k| !current.contains_key(k));
    params
        .into_iter()
        .map(|(k, v)| {
            if !numbered(&k, "mp") {
                return (k, v);
            }
            let inside = MountPoint::parse(&v).ok().and_then(|m| m.mp).unwrap_or_default();
            let key = slots.get(inside.trim_end_matches('/')).cloned().or_else(|| free.next()).unwrap_or(k);
            (key, v)
        })
        .collect()
}

/// Keeps the volumes of mount points already in place: `STORAGE:SIZE` in a slot whose volume is
/// on that storage would make Proxmox allocate a new, empty volume there (and detach the old
/// one as `unused[n]`), so the slot's own volume ID is sent instead, with the settings asked for.
/// Also gives the slots to grow (`resize`, Proxmox never shrinks) and their new size in GiB.
fn keep_volumes(params: Params, current: &serde_json::Map<String, Value>) -> (Params, Vec<(String, u64)>) {
    let mut grow = Vec::new();
    let params = params
        .into_iter()
        .map(|(k, v)| {
            let existing = current.get(&k).and_then(text).and_then(|c| MountPoint::parse(&c).ok());
            let (Some(old), Ok(new)) = (existing.filter(|o| !o.is_bind()), MountPoint::parse(&v)) else {
                return (k, v);
            };
            let Some((storage, size)) = new.volume.split_once(':').filter(|(_, s)| s.parse::<u64>().is_ok()) else {
                return (k, v);
            };
            if old.volume.split(':').next() != Some(storage) {
                return (k, v);
            }
            let want: u64 = size.parse().unwrap_or_default();
            let has = old.size.as_deref().and_then(crate::transport::decode::gib).unwrap_or_default();
            if want > has {
                grow.push((k.clone(), want));
            }
            let kept = MountPoint { mp: new.mp, ro: new.ro, size: Some(format!("{}G", want.max(has))), ..old };
            (k, kept.print())
        })
        .collect();
    (params, grow)
}

/// Whether a `dev[n]` entry passes an NVIDIA device (a GPU's or the shared ones).
fn nvidia_slot(key: &str, value: &Value) -> bool {
    numbered(key, "dev")
        && text(value).and_then(|d| Device::parse(&d).ok()).is_some_and(|d| d.path.starts_with("/dev/nvidia"))
}

/// What removing these fields deletes through `delete`: the `mp[n]` of each removed mount
/// (located by its path inside; a volume becomes `unused[n]`, its data kept), `tags` and
/// `nameserver`. GPUs and raw lines are removed apart (`dev[n]` slots, the conf file).
fn deletes_for(removed: &BTreeSet<Field>, current: &serde_json::Map<String, Value>) -> Vec<String> {
    let slots = mount_slots(current);
    let mut delete: Vec<String> = removed
        .iter()
        .filter_map(|f| match f {
            Field::Tags => Some("tags".to_string()),
            Field::NetNameservers => Some("nameserver".to_string()),
            f => slots.get(f.mount_path()?).cloned(),
        })
        .filter(|k| current.contains_key(k))
        .collect();
    delete.sort();
    delete
}

/// When a change of a container's field takes effect.
pub fn change_effect(field: &Field) -> ChangeEffect {
    match field {
        Field::Cores
        | Field::MemoryMb
        | Field::SwapMb
        | Field::Onboot
        | Field::Startup
        | Field::Tags
        | Field::DiskGb
        | Field::NetIp
        | Field::NetGw
        | Field::NetBridge
        | Field::Firewall
        | Field::FirewallRules => ChangeEffect::Live,
        // Device passthrough and raw lines take effect at the next start; so does a running
        // container's nameserver (Proxmox keeps it pending and writes resolv.conf at start), and
        // a change of the interface's name or MAC address, or of a mount point (pending too).
        Field::Gpus
        | Field::LxcRaw
        | Field::Apparmor
        | Field::Idmap
        | Field::NetNameservers
        | Field::Hostname
        | Field::NetName
        | Field::NetMac
        | Field::Flags
        | Field::Mount(_) => ChangeEffect::Restart,
        Field::Unprivileged | Field::Storage => ChangeEffect::Recreate,
        // Not a container's: should a plan ever carry one, a restart is the safe answer.
        Field::CiUser | Field::CiSshkeys | Field::CiPassword => ChangeEffect::Restart,
    }
}

/// What the backend knows of containers between calls.
#[derive(Debug, Default)]
pub struct ContainerState {
    /// NVIDIA device nodes of each node, listed once.
    devices: Mutex<BTreeMap<String, Vec<String>>>,
}

/// The container operations: a view of the backend for a guest known to be a container.
pub(crate) struct Containers<'a>(pub(crate) &'a ProxmoxBackend);

impl std::ops::Deref for Containers<'_> {
    type Target = ProxmoxBackend;

    fn deref(&self) -> &ProxmoxBackend {
        self.0
    }
}

impl ProxmoxBackend {
    /// Whether the setting `key=value` must go another way than this API connection: what
    /// Proxmox reserves to `root@pam`, when the connection does not act as `root@pam`.
    fn beyond_api(&self, key: &str, value: &str, privileged: bool) -> bool {
        !self.api_is_root() && reserved_to_root(key, value, privileged)
    }

    /// Grows the root disk to `gib` GiB (Proxmox refuses to shrink it), and waits for the task.
    fn grow_rootfs(&self, node: &str, id: GuestId, gib: u64) -> Result<(), BackendError> {
        let guest = Guest::lxc(node, id);
        self.unlocked_task(guest, Call::Resize(guest), &[("disk", "rootfs".into()), ("size", format!("{gib}G"))])
    }

    /// The mount points of `params` with the volumes they already have kept (see
    /// [`keep_volumes`]), those asked to be larger grown first (`PUT .../resize disk=mp[n]`).
    fn keep_mount_volumes(
        &self,
        node: &str,
        id: GuestId,
        params: Params,
        current: &serde_json::Map<String, Value>,
    ) -> Result<Params, BackendError> {
        let (params, grow) = keep_volumes(params, current);
        let guest = Guest::lxc(node, id);
        for (slot, gib) in grow {
            self.unlocked_task(guest, Call::Resize(guest), &[("disk", slot), ("size", format!("{gib}G"))])?;
        }
        Ok(params)
    }

    /// The node a container is on and whether it runs (see [`ProxmoxBackend::locate`]).
    fn node_of(&self, id: GuestId) -> Result<Option<(String, bool)>, BackendError> {
        self.locate(id, GuestKind::Lxc)
    }

    /// The node a container is on and whether it runs; an error if there is no such container.
    fn existing(&self, id: GuestId) -> Result<(String, bool), BackendError> {
        self.node_of(id)?.ok_or_else(|| BackendError::not_found(format!("container {id} does not exist")))
    }

    /// The node to run commands inside a container on: where this run saw it, else asked.
    fn node_for_commands(&self, id: GuestId) -> Result<String, BackendError> {
        Ok(self.node_seen(id, GuestKind::Lxc)?.unwrap_or_else(|| self.node.clone()))
    }

    /// A container's configuration as Proxmox shows it.
    fn config(&self, node: &str, id: GuestId) -> Result<serde_json::Map<String, Value>, BackendError> {
        self.config_of(Guest::lxc(node, id))
    }

    /// Sets configuration keys (and removes `delete`): what the API connection may set through
    /// the API with the configuration's `digest` (everything, when it acts as `root@pam`); what
    /// Proxmox reserves to `root@pam` otherwise through the root@pam ticket where there is one,
    /// else with `pct set` on the node.
    /// `privileged`: the container is privileged (its feature flags are then root's alone).
    fn put(
        &self,
        node: &str,
        id: GuestId,
        params: Vec<(String, String)>,
        delete: Vec<String>,
        privileged: bool,
    ) -> Result<(), BackendError> {
        let (root, token): (Vec<_>, Vec<_>) = params.into_iter().partition(|(k, v)| self.beyond_api(k, v, privileged));
        let (root_delete, token_delete): (Vec<_>, Vec<_>) =
            delete.into_iter().partition(|k| self.beyond_api(k, "", privileged));
        self.put_config(&self.api, Guest::lxc(node, id), &token, &token_delete)?;
        if root.is_empty() && root_delete.is_empty() {
            return Ok(());
        }
        match &self.root {
            Some(api) => self.put_config(api, Guest::lxc(node, id), &root, &root_delete),
            None => self.on_node(node, &commands::pct_set(id, &root, &root_delete), None).map(|_| ()),
        }
    }

    /// The NVIDIA device nodes `node` has (listed once per run).
    fn nvidia_devices(&self, node: &str) -> Result<Vec<String>, BackendError> {
        if let Some(list) = self.containers.devices.lock().unwrap_or_else(PoisonError::into_inner).get(node) {
            return Ok(list.clone());
        }
        let out = self.on_node(node, &commands::list_nvidia_devices(), None)?;
        let list: Vec<String> = String::from_utf8_lossy(&out).lines().map(str::to_string).collect();
        self.containers.devices.lock().unwrap_or_else(PoisonError::into_inner).insert(node.to_string(), list.clone());
        Ok(list)
    }

    /// `dev[n]` settings for the GPUs `gpus` (`0,1`), in the slots the container's other devices
    /// leave free, and the slots of NVIDIA devices it no longer needs.
    fn gpu_params(
        &self,
        node: &str,
        gpus: &PhoenixValue,
        current: &serde_json::Map<String, Value>,
    ) -> Result<(Params, Vec<String>), BackendError> {
        let present = self.nvidia_devices(node)?;
        let indices: Vec<u32> = gpus.items().iter().filter_map(|g| g.trim().parse().ok()).collect();
        let missing: Vec<String> =
            indices.iter().filter(|g| !present.contains(&format!("/dev/nvidia{g}"))).map(u32::to_string).collect();
        if !missing.is_empty() {
            return Err(BackendError::permanent(
                Delivery::NotSent,
                format!("GPU {} is not on node {node} (no /dev/nvidia{})", missing.join(", "), missing[0]),
            )
            .with_detail(format!(
                "the node has: {}",
                if present.is_empty() {
                    "no NVIDIA devices (is the driver loaded?)".to_string()
                } else {
                    present.join(" ")
                }
            )));
        }
        let taken: BTreeSet<u32> = current
            .iter()
            .filter(|(k, v)| numbered(k, "dev") && !nvidia_slot(k, v))
            .filter_map(|(k, _)| k[3..].parse().ok())
            .collect();
        let mut slots = (0u32..).filter(|n| !taken.contains(n));
        let mut params = Vec::new();
        for path in commands::gpu_devices(&indices, &present) {
            let slot = slots.next().unwrap_or_default();
            let dev = Device { path, mode: Some("0666".into()), ..Device::default() };
            params.push((format!("dev{slot}"), dev.print()));
        }
        let delete = current
            .iter()
            .filter(|(k, v)| nvidia_slot(k, v) && !params.iter().any(|(p, _)| p == *k))
            .map(|(k, _)| k.clone())
            .collect();
        Ok((params, delete))
    }

    /// Sets the raw-line fields (`lxc.raw`, `apparmor`, `idmap`) given in `fields` and removes
    /// those in `removed`, keeping the file's others, in the live section of
    /// `/etc/pve/lxc/<id>.conf`: read, edited (never a snapshot's section), written only if nobody
    /// changed the file meanwhile, and read back to verify.
    fn set_raw_lines(
        &self,
        node: &str,
        id: GuestId,
        fields: &GuestConfig,
        removed: &BTreeSet<Field>,
    ) -> Result<(), BackendError> {
        let read = || -> Result<(String, ConfFile), BackendError> {
            let text = String::from_utf8_lossy(&self.on_node(node, &commands::read_conf(id), None)?).into_owned();
            let conf = ConfFile::parse(&text).map_err(|e| {
                BackendError::permanent(Delivery::NotSent, format!("{} does not parse: {e}", commands::conf_path(id)))
            })?;
            Ok((text, conf))
        };
        let as_pairs = |c: &ConfFile| -> Vec<(String, String)> {
            c.live_raw().into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let (text, mut conf) = read()?;
        let mut all = GuestConfig::default();
        for (field, value) in raw_fields(&as_pairs(&conf)) {
            all.set(field, value);
        }
        for f in RAW_FIELDS {
            if let Some(v) = fields.get(f) {
                all.set(f.clone(), v.clone());
            } else if removed.contains(f) {
                all.remove(f);
            }
        }
        let want = raw_lines(&all);
        if as_pairs(&conf) == want {
            return Ok(());
        }
        let before = conf.clone();
        conf.set_live_raw(&want);
        let new = conf.to_string();
        self.on_node(node, &commands::write_conf(id, &commands::content_hash(text.as_bytes())), Some(new.as_bytes()))?;
        let (_, back) = read()?;
        if as_pairs(&back) != want || !back.same_sections_after_live(&before) {
            return Err(BackendError::permanent(
                Delivery::MaybeApplied,
                format!("{} does not read back as written", commands::conf_path(id)),
            ));
        }
        Ok(())
    }

    /// Creates on the node the missing host directories of the bind mounts among `want`, for the
    /// container configured as `container` (without a node channel they must exist already).
    fn make_bind_dirs(&self, node: &str, want: &GuestConfig, container: &GuestConfig) -> Result<(), BackendError> {
        let dirs = bind_dirs(want, container);
        if dirs.is_empty() || self.channel.is_none() {
            return Ok(());
        }
        self.on_node(node, &commands::make_host_dirs(&dirs), None).map(|_| ())
    }

    /// What needs more than the API token after the container exists: GPUs (`dev[n]` with
    /// `pct set`) and raw `lxc.*` lines (the conf file), from the desired fields `want`, and the
    /// removal of those in `removed` (a removed GPU assignment deletes every NVIDIA `dev[n]`).
    fn configure_beyond_api(
        &self,
        node: &str,
        id: GuestId,
        want: &GuestConfig,
        removed: &BTreeSet<Field>,
    ) -> Result<(), BackendError> {
        if let Some(gpus) = want.get(&Field::Gpus) {
            let current = self.config(node, id)?;
            let (params, delete) = self.gpu_params(node, gpus, &current)?;
            self.put(node, id, params, delete, privileged(&current))?;
        } else if removed.contains(&Field::Gpus) {
            let current = self.config(node, id)?;
            let delete: Vec<String> =
                current.iter().filter(|(k, v)| nvidia_slot(k, v)).map(|(k, _)| k.clone()).collect();
            self.put(node, id, Vec::new(), delete, privileged(&current))?;
        }
        if RAW_FIELDS.iter().any(|f| want.has(f) || removed.contains(f)) {
            self.set_raw_lines(node, id, want, removed)?;
        }
        Ok(())
    }

    /// How a setting goes that the API connection may not make (see
    /// [`phoenix_backend::Backend::route`]); the fields concerned (GPUs, bind mounts, feature
    /// flags, raw lines) are containers' alone. `None` where it goes through the API.
    pub(super) fn container_route(
        &self,
        field: &Field,
        value: Option<&PhoenixValue>,
        guest: &GuestConfig,
    ) -> Result<Option<String>, NoRoute> {
        const WHY: &str = "Proxmox reserves device passthrough, bind mounts, feature flags other than nesting and \
                           every feature flag of a privileged container to root@pam";
        const SSH: &str = "`backend.ssh`";
        let bind = value.and_then(PhoenixValue::as_mount).is_some_and(|m| m.host_path().is_some());
        let privileged = guest.flag(&Field::Unprivileged) == Some(false);
        let flags = *field == Field::Flags
            && (privileged || value.is_some_and(|v| v.items().iter().any(|f| !f.starts_with("nesting="))));
        let gpus = *field == Field::Gpus;
        if (gpus || bind || flags) && self.api_is_root() {
            // GPUs are looked up on the node (its /dev/nvidia* devices) whichever way they are set.
            if gpus && self.channel.is_none() {
                return Err(NoRoute::NoNodeChannel { how: "a listing of the node's GPUs".into(), setting: SSH });
            }
            return Ok(Some(format!("the API as root@pam (`pvesh` on the node; {WHY})")));
        }
        let needs_channel = |how: String| match self.channel {
            Some(_) => Ok(Some(how)),
            None => Err(NoRoute::NoNodeChannel { how, setting: SSH }),
        };
        match (self.root.is_some(), gpus) {
            (true, true) => {
                needs_channel(format!("the root@pam ticket, with the node's NVIDIA devices listed on the node ({WHY})"))
            }
            (true, _) if bind && self.channel.is_none() => Ok(Some(format!(
                "the root@pam ticket ({WHY}); without a node channel the host directory must exist on the node"
            ))),
            (true, _) if bind || flags => Ok(Some(format!("the root@pam ticket ({WHY})"))),
            (false, true) => needs_channel(format!("`pct set` on the node ({WHY})")),
            (false, _) if bind || flags => match self.channel {
                Some(_) => Ok(Some(format!("`pct set` on the node ({WHY})"))),
                None => Err(NoRoute::Reserved {
                    why: WHY,
                    settings: "a root@pam ticket (`backend.root_ticket`) nor a node channel (`backend.ssh`)",
                }),
            },
            _ if RAW_FIELDS.contains(field) => {
                needs_channel("an edit of /etc/pve/lxc/<id>.conf on the node (the API has no raw lxc.* keys)".into())
            }
            _ => Ok(None),
        }
    }
}

impl GuestOps for Containers<'_> {
    /// One container as the backend shows it: its configuration, normalised, and what `scope`
    /// asks of it.
    fn observe(
        &self,
        node: &str,
        id: GuestId,
        running: bool,
        scope: &ObserveScope,
    ) -> Result<ObservedGuest, BackendError> {
        let config = self.config(node, id)?;
        self.observed(Guest::lxc(node, id), &config, normalize(&config), running, scope)
    }

    fn create(&self, request: &CreateRequest) -> Result<(), BackendError> {
        let node = request.node.clone().unwrap_or_else(|| self.node.clone());
        let id = request.id;
        self.remember_created(id, GuestKind::Lxc, &node);
        match &request.source {
            CreateSource::Template(t) => {
                let volume = if t.starts_with('/') { self.template_volume(&node, t)? } else { t.clone() };
                if let Some(missing) = self.check_needs(request)? {
                    self.download_template(&node, &missing)?;
                }
                let mut params: Vec<(&str, String)> = vec![
                    ("vmid", id.to_string()),
                    ("ostemplate", volume),
                    ("description", crate::record::fresh(MANAGED_MARK)),
                ];
                let privileged = request.config.flag(&Field::Unprivileged) != Some(true);
                let (root, token): (Vec<_>, Vec<_>) = to_params(&request.config, None, true)
                    .into_iter()
                    .partition(|(k, v)| self.beyond_api(k, v, privileged));
                params.extend(token.iter().map(|(k, v)| (k.as_str(), v.clone())));
                self.make_bind_dirs(&node, &request.config, &request.config)?;
                self.task(Call::Create { node: &node, kind: GuestKind::Lxc }, &params)?;
                self.put(&node, id, root, Vec::new(), privileged)?;
                self.configure_beyond_api(&node, id, &request.config, &BTreeSet::new())?;
                crate::firewall::apply(&self.api, Guest::lxc(&node, id), &request.config)
            }
            CreateSource::Clone { source, snapshot } => {
                let (src_node, _) = self.node_of(*source)?.ok_or_else(|| {
                    BackendError::permanent(Delivery::NotSent, format!("clone source {source} does not exist"))
                })?;
                // A template is cloned as it is (it has no snapshots), in full: Proxmox would
                // make a linked clone of a template by default, which ties the clone to it.
                let mut params: Vec<(&str, String)> = vec![("newid", id.to_string())];
                if !snapshot.is_empty() {
                    params.push(("snapname", snapshot.clone()));
                }
                params.push(("full", "1".into()));
                if let Some(h) = request.config.text(&Field::Hostname) {
                    params.push(("hostname", h.to_string()));
                }
                if src_node != node {
                    params.push(("target", node.clone()));
                }
                // Proxmox locks the source (`disk`) while it clones it: another clone of the same
                // template is waited for rather than refused.
                let source_config = self.unlocked_config_of(Guest::lxc(&src_node, *source))?;
                let named = self.clone_storage(request, *source, &src_node, &source_config)?;
                self.check_clone_source(request, (*source, &src_node), &source_config, named.as_deref())?;
                if let Some(storage) = named {
                    params.push(("storage", storage));
                }
                // Proxmox's snapshots keep no description, and a clone gets one only from this
                // parameter: the mark goes with the call, below what the source's says.
                let old = source_config.get("description").and_then(text);
                params.push((
                    "description",
                    self.clone_description(Guest::lxc(&src_node, *source), old.as_deref(), snapshot)?,
                ));
                // A token's clone copies device passthrough too (`clone_vm` checks no root-only
                // setting): only setting `dev[n]` is root@pam's.
                self.task(Call::Clone(Guest::lxc(&src_node, *source)), &params)?;
                // The clone has its template's configuration: make it this guest's.
                let current = self.config(&node, id)?;
                let observed = normalize(&current);
                let mut want = request.config.clone();
                want.retain(|k, v| !matches!(k, Field::Unprivileged | Field::Storage) && observed.get(k) != Some(v));
                if want.fields().any(|k| INTERFACE.contains(k) || *k == Field::Firewall) {
                    for k in INTERFACE {
                        if let Some(v) = request.config.get(k) {
                            want.set(k.clone(), v.clone());
                        }
                    }
                }
                // A clone has its template's disk: grow it to the configured size.
                if let Some(size) = want
                    .remove(&Field::DiskGb)
                    .and_then(|s| s.as_number())
                    .filter(|s| Some(*s) > observed.number(&Field::DiskGb))
                {
                    self.grow_rootfs(&node, id, size)?;
                }
                self.make_bind_dirs(&node, &want, &request.config)?;
                let params = place_mounts(to_params(&want, Some(&observed), false), &current);
                let params = self.keep_mount_volumes(&node, id, params, &current)?;
                self.put(&node, id, params, Vec::new(), privileged(&current))?;
                self.configure_beyond_api(&node, id, &want, &BTreeSet::new())?;
                crate::firewall::apply(&self.api, Guest::lxc(&node, id), &request.config)
            }
        }
    }

    fn update(&self, id: GuestId, changes: &[FieldChange]) -> Result<(), BackendError> {
        let (node, _) = self.existing(id)?;
        let current = self.config(&node, id)?;
        let observed = normalize(&current);
        let mut want = GuestConfig::default();
        let mut removed = BTreeSet::new();
        for c in changes {
            match &c.new {
                Some(v) => want.set(c.field.clone(), v.clone()),
                None => {
                    removed.insert(c.field.clone());
                }
            }
        }
        // A new ID map root may not map on the node would leave the container unable to start
        // at its next restart: refused before anything is written.
        self.check_subids(&node, &want)?;
        // The interface is one property string (with the firewall's flag): send it whole.
        let nic_flag = |c: &FieldChange| c.field == Field::Firewall && observed.get(&Field::Firewall) != c.new.as_ref();
        if changes.iter().any(|c| INTERFACE.contains(&c.field) || nic_flag(c)) {
            for k in INTERFACE {
                if !want.has(k)
                    && let Some(v) = observed.get(k)
                {
                    want.set(k.clone(), v.clone());
                }
            }
        }
        if let Some(size) = want.remove(&Field::DiskGb).and_then(|s| s.as_number()) {
            self.grow_rootfs(&node, id, size)?;
        }
        let mut container = observed.clone();
        container.extend(want.iter().map(|(k, v)| (k.clone(), v.clone())));
        self.make_bind_dirs(&node, &want, &container)?;
        let params = self.keep_mount_volumes(
            &node,
            id,
            place_mounts(to_params(&want, Some(&observed), false), &current),
            &current,
        )?;
        self.put(&node, id, params, deletes_for(&removed, &current), privileged(&current))?;
        self.configure_beyond_api(&node, id, &want, &removed)?;
        crate::firewall::apply(&self.api, Guest::lxc(&node, id), &want)
    }

    fn start(&self, id: GuestId) -> Result<(), BackendError> {
        let (node, _) = self.existing(id)?;
        let guest = Guest::lxc(&node, id);
        self.unlocked_task(guest, Call::Power(guest, Power::Start), &[])
    }

    fn stop(&self, id: GuestId) -> Result<(), BackendError> {
        let (node, _) = self.existing(id)?;
        let guest = Guest::lxc(&node, id);
        self.unlocked_task(
            guest,
            Call::Power(guest, Power::Shutdown),
            &[("timeout", "60".into()), ("forceStop", "1".into())],
        )
    }

    fn snapshot(&self, id: GuestId, name: &str) -> Result<(), BackendError> {
        let (node, _) = self.existing(id)?;
        self.take_snapshot(Guest::lxc(&node, id), name)
    }

    /// `POST .../snapshot/{snapname}/rollback`, its task waited for. Proxmox stops a running
    /// guest for it; `start` has the task start it again.
    fn rollback(&self, id: GuestId, name: &str) -> Result<(), BackendError> {
        let (node, running) = self.existing(id)?;
        let params: Vec<(&str, String)> = if running { vec![("start", "1".into())] } else { Vec::new() };
        self.task(Call::Rollback(Guest::lxc(&node, id), name), &params)?;
        self.restore_record(Guest::lxc(&node, id), name)
    }

    /// `DELETE .../snapshot/{snapname}`, its task waited for.
    fn delete_snapshot(&self, id: GuestId, name: &str) -> Result<(), BackendError> {
        let (node, _) = self.existing(id)?;
        self.task(Call::DeleteSnapshot(Guest::lxc(&node, id), name), &[])
    }

    fn make_template(&self, id: GuestId) -> Result<(), BackendError> {
        let (node, running) = self.existing(id)?;
        if running {
            return Err(BackendError::permanent(
                Delivery::NotSent,
                format!("container {id} runs: only a stopped container becomes a template"),
            ));
        }
        self.convert_to_template(Guest::lxc(&node, id), |_| false)
    }

    fn exec(&self, id: GuestId, request: &ExecRequest) -> Result<ExecOutput, BackendError> {
        let node = self.node_for_commands(id)?;
        let out = self
            .channel()?
            .run(&node, &pct_exec(id, &request.argv), None, request.timeout)
            .map_err(|e| BackendError::transient(Delivery::MaybeApplied, e.to_string()))?;
        Ok(ExecOutput { status: out.status, stdout: out.stdout, stderr: out.stderr })
    }

    fn read_file(&self, id: GuestId, path: &str) -> Result<Option<Vec<u8>>, BackendError> {
        let argv = phoenix_backend::inside::read_command(path);
        let out = self.exec(id, &ExecRequest { argv, timeout: Duration::from_secs(60) })?;
        // `pct exec` on a stopped container dies with a status taken from errno (3 among them):
        // nothing could be read, which is neither "missing" nor an error of the file.
        if out.status != 0 && self.node_of(id)?.is_some_and(|(_, running)| !running) {
            return Err(BackendError::unsupported(format!("container {id} is not running: {path} cannot be read")));
        }
        phoenix_backend::inside::read_result(path, &out)
            .map_err(|e| BackendError::permanent(Delivery::NotSent, format!("container {id}: {e}")))
    }

    fn push_file(&self, id: GuestId, file: &FilePush) -> Result<(), BackendError> {
        // Written by a shell inside the container (through `pct exec`), so links resolve inside it.
        let argv = phoenix_backend::inside::push_command(file);
        let node = self.node_for_commands(id)?;
        let out = self
            .channel()?
            .run(&node, &pct_exec(id, &argv), Some(&file.content), Duration::from_secs(120))
            .map_err(|e| BackendError::transient(Delivery::MaybeApplied, e.to_string()))?;
        if out.status == 0 {
            Ok(())
        } else {
            Err(BackendError::permanent(
                Delivery::MaybeApplied,
                format!("writing {} in {id} failed with status {}", file.path, out.status),
            ))
        }
    }

    fn destroy(&self, id: GuestId) -> Result<(), BackendError> {
        let (node, running) = self.existing(id)?;
        let guest = Guest::lxc(&node, id);
        if running {
            self.unlocked_task(guest, Call::Power(guest, Power::Stop), &[])?;
        }
        self.unlocked_task(guest, Call::Destroy(guest), &[("purge", "1".into())])
    }

    fn addresses(&self, id: GuestId) -> Result<Vec<std::net::IpAddr>, BackendError> {
        let node = self.node_for_commands(id)?;
        let list = self.api.call(&Call::Interfaces(Guest::lxc(&node, id)), &[])?;
        Ok(interface_addresses(&list))
    }

    /// The `Managed by Phoenix.` mark in the guest's description: the only change.
    fn adopt(&self, id: GuestId) -> Result<(), BackendError> {
        let (node, _) = self.existing(id)?;
        self.mark_managed(Guest::lxc(&node, id))
    }

    fn check_create(&self, request: &CreateRequest) -> Result<(), BackendError> {
        // A source made in the same run is checked when the clone is asked for.
        if let CreateSource::Clone { source, .. } = &request.source
            && let Some((src_node, _)) = self.node_of(*source)?
        {
            let source_config = self.config(&src_node, *source)?;
            let named = self.clone_storage(request, *source, &src_node, &source_config)?;
            self.check_clone_source(request, (*source, &src_node), &source_config, named.as_deref())?;
        }
        self.check_subids(request.node.as_deref().unwrap_or(&self.node), &request.config)?;
        self.check_needs(request).map(|_| ())
    }

    /// A container's mount points must all take snapshots (see
    /// [`ProxmoxBackend::check_container_snapshot`]).
    fn check_snapshot(&self, config: &GuestConfig) -> Result<(), BackendError> {
        self.check_container_snapshot(config)
    }

    fn change_effect(&self, field: &Field) -> ChangeEffect {
        change_effect(field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_mount_directories_get_the_owner_the_container_sees() {
        let config = |pairs: &[(&str, &str)]| GuestConfig::parse(pairs.iter().copied()).expect("config");
        let mounts = config(&[
            ("mount:/a", "bind:/srv/a"),
            ("mount:/b", "bind:/srv/b;ro;owner=1000:1000"),
            ("mount:/c", "bind:/srv/c;owner=33:33"),
            ("mount:/d", "bind:/srv/d;host-owner=www-data:www-data"),
            ("mount:/e", "volume:local-zfs:8"),
        ]);
        let unprivileged = config(&[("unprivileged", "1"), ("idmap", "u:1000:1000:1 g:1000:1000:1")]);
        assert_eq!(
            bind_dirs(&mounts, &unprivileged),
            [
                ("/srv/a", "100000:100000"),
                ("/srv/b", "1000:1000"),
                ("/srv/c", "100033:100033"),
                ("/srv/d", "www-data:www-data")
            ]
            .map(|(p, o)| (p.to_string(), o.to_string()))
        );
        let privileged = bind_dirs(&mounts, &config(&[("unprivileged", "0")]));
        assert_eq!(privileged[0].1, "0:0");
        assert_eq!(privileged[2].1, "33:33");
    }

    #[test]
    fn what_proxmox_shows_normalises_to_phoenix_fields_and_back() {
        let shown: serde_json::Map<String, Value> = serde_json::from_str(
            r#"{"hostname": "web-1", "cores": 2, "memory": "1024", "swap": 512, "unprivileged": 1, "onboot": 1,
                "rootfs": "local-zfs:subvol-901-disk-0,size=8G", "features": "nesting=1,keyctl=1", "tags": "Web;db",
                "net0": "name=eth0,bridge=vmbr0,gw=10.0.0.1,hwaddr=BC:24:11:2E:5A:01,ip=10.0.0.11/24,type=veth",
                "startup": "order=2,up=30", "mp0": "/srv/data,mp=/data,ro=1", "mp1": "local-zfs:subvol-901-disk-1,mp=/var/lib/db,size=100G",
                "description": "Managed by Phoenix.", "digest": "abc"}"#,
        )
        .expect("json");
        let c = normalize(&shown);
        let expected = [
            ("hostname", "web-1"),
            ("cores", "2"),
            ("memory_mb", "1024"),
            ("swap_mb", "512"),
            ("unprivileged", "1"),
            ("onboot", "1"),
            ("storage", "local-zfs"),
            ("disk_gb", "8"),
            ("flags", "keyctl=1,nesting=1"),
            ("tags", "db;web"),
            ("net.name", "eth0"),
            ("firewall", "0"),
            ("net.bridge", "vmbr0"),
            ("net.gw", "10.0.0.1"),
            ("net.mac", "bc:24:11:2e:5a:01"),
            ("net.ip", "10.0.0.11/24"),
            ("startup", "order=2,up=30"),
            ("mount:/data", "bind:/srv/data;ro"),
            ("mount:/var/lib/db", "volume:local-zfs:100"),
        ];
        for (k, v) in expected {
            assert_eq!(c.spelled(k).as_deref(), Some(v), "{k}");
        }
        assert_eq!(c.len(), expected.len(), "{c:?}");
        let params = to_params(&c, None, false);
        let net = params.iter().find(|(k, _)| k == "net0").map(|(_, v)| v.as_str());
        assert_eq!(net, Some("name=eth0,bridge=vmbr0,gw=10.0.0.1,hwaddr=BC:24:11:2E:5A:01,ip=10.0.0.11/24,type=veth"));
        assert!(params.contains(&("mp0".into(), "/srv/data,mp=/data,ro=1".into())), "{params:?}");
    }

    #[test]
    fn mount_points_keep_their_slots_and_removals_delete_by_path() {
        let current: serde_json::Map<String, Value> = serde_json::from_str(
            r#"{"mp0": "/srv/a,mp=/a", "mp2": "local-zfs:subvol-950-disk-1,mp=/models/,size=8G", "tags": "x",
                "dev0": "/dev/nvidia0,mode=0666", "dev1": "/dev/dri/renderD128", "dev2": "path=/dev/nvidiactl"}"#,
        )
        .expect("json");
        let want = GuestConfig::parse([("mount:/b", "bind:/srv/b"), ("mount:/models", "volume:local-zfs:16")])
            .expect("config");
        let params = place_mounts(to_params(&want, None, false), &current);
        // `/models` stays in mp2; `/b` takes a slot no mount point holds, not mp0.
        assert_eq!(
            params,
            [
                ("mp1".to_string(), "/srv/b,mp=/b".to_string()),
                ("mp2".to_string(), "local-zfs:16,mp=/models".to_string())
            ]
        );
        let removed: BTreeSet<Field> = [
            Field::mount("/a"),
            Field::mount("/models"),
            Field::mount("/gone"),
            Field::Tags,
            Field::NetNameservers,
            Field::Gpus,
        ]
        .into();
        assert_eq!(deletes_for(&removed, &current), ["mp0", "mp2", "tags"]);
        let nvidia: Vec<&String> = current.iter().filter(|(k, v)| nvidia_slot(k, v)).map(|(k, _)| k).collect();
        assert_eq!(nvidia, ["dev0", "dev2"]);
    }
}
