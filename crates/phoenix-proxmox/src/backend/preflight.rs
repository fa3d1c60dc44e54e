//! Checks made before anything changes: the Proxmox version, the credentials' privileges, the
//! node channel, and — for each guest to create — its storages (with the content types it
//! needs), its bridge and its template (on the storage, or in the appliance index to be
//! downloaded), and for a clone its template's bridges and storages. Proxmox lists to a token
//! only the bridges and storages it holds privileges on, so the privileges on them are checked
//! before they are looked for: a missing one is said as such, not as a bridge or storage the
//! node lacks. What the cluster lists is read once per run.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::PoisonError;

use phoenix_backend::fields::canonical;
use phoenix_backend::{
    BackendError, CreateRequest, CreateSource, Delivery, Field, GuestConfig, GuestId, GuestKind, MountSource,
};
use serde_json::Value;

use super::ProxmoxBackend;
use crate::transport::endpoint::Call;

/// Privileges Phoenix needs, by ACL path.
pub const NEEDED: &[(&str, &[&str])] = &[
    (
        "/vms",
        &[
            "VM.Allocate",
            "VM.Audit",
            "VM.Clone",
            "VM.Config.CPU",
            "VM.Config.Disk",
            "VM.Config.Memory",
            "VM.Config.Network",
            "VM.Config.Options",
            "VM.PowerMgmt",
            "VM.Snapshot",
        ],
    ),
    ("/storage", &["Datastore.AllocateSpace", "Datastore.Audit"]),
];

/// The privileges that apply on `path` in an answer of `GET /access/permissions`, as
/// pve-access-control's `roles` compiles them: those listed on `path` itself, whatever their
/// value, else those of the most specific path listed above it that propagate. The value is
/// only whether a privilege propagates (`0` for an ACL set with `--propagate 0`, and always for
/// privileges that come from a pool): one that does not applies on its own path only, and a
/// path whose privileges all do not leaves those above it in force below it.
pub fn privileges_on<'a>(permissions: &'a Value, path: &str) -> BTreeSet<&'a str> {
    let propagates = |v: &Value| v.as_u64() == Some(1) || v.as_bool() == Some(true);
    let mut at = path.to_string();
    loop {
        if let Some(privs) = permissions.get(&at).and_then(Value::as_object) {
            let applying: BTreeSet<&str> =
                privs.iter().filter(|(_, v)| at == path || propagates(v)).map(|(p, _)| p.as_str()).collect();
            if !applying.is_empty() {
                return applying;
            }
        }
        if at == "/" {
            return BTreeSet::new();
        }
        at = match at.rsplit_once('/') {
            Some(("", _)) | None => "/".to_string(),
            Some((parent, _)) => parent.to_string(),
        };
    }
}

/// Storage types whose container volumes take snapshots (pve-storage's `volume_has_feature`:
/// ZFS, LVM-thin, Ceph RBD, Btrfs). A directory, NFS or CIFS storage snapshots only qcow2
/// images, which containers do not use, and plain LVM none: there Proxmox's snapshot task dies
/// with "snapshot feature is not available".
const NO_CONTAINER_SNAPSHOTS: &[&str] =
    &["dir", "nfs", "cifs", "glusterfs", "cephfs", "lvm", "iscsi", "iscsidirect", "pbs", "esxi"];

/// The storages the guest's disks are allocated on: its root disk's and its volume mounts'.
fn disk_storages(request: &CreateRequest) -> Vec<&str> {
    config_storages(&request.config)
}

/// The storages a guest configured so has disks on: its root disk's and its volume mounts'.
fn config_storages(config: &GuestConfig) -> Vec<&str> {
    let mut disks: Vec<&str> = config.text(&Field::Storage).into_iter().collect();
    disks.extend(config.mounts().filter_map(|(_, m)| match &m.source {
        MountSource::Volume { storage, .. } => Some(storage.as_str()),
        MountSource::Bind(_) => None,
    }));
    disks.sort_unstable();
    disks.dedup();
    disks
}

/// The storage of each volume of a guest of `kind` configured as `config` (a container's root
/// disk and volume mount points, a VM's disks; no CD-ROM or cloud-init drive), in key order.
fn volume_storages(kind: GuestKind, config: &serde_json::Map<String, Value>) -> Vec<String> {
    let volume = |k: &str| match kind {
        GuestKind::Lxc => k == "rootfs" || super::numbered(k, "mp"),
        GuestKind::Vm => super::is_drive(k),
    };
    config
        .iter()
        .filter(|(k, _)| volume(k))
        .filter_map(|(_, v)| v.as_str())
        .filter(|v| !v.contains("media=cdrom") && !v.contains("-cloudinit"))
        .filter_map(|v| v.split(',').next()?.split_once(':').map(|(sid, _)| sid.to_string()))
        .collect()
}

impl ProxmoxBackend {
    /// Checks, before anything else, that the API answers with these credentials and is a
    /// version Phoenix knows (8.x or 9.x), that the credentials hold the privileges Phoenix
    /// needs, and that the node channel (where configured) reaches the node. Returns the version.
    pub fn preflight(&self) -> Result<String, BackendError> {
        let v = self.cached_get(Call::Version)?;
        let version = v["version"].as_str().unwrap_or_default().to_string();
        if !matches!(version.split('.').next(), Some("8" | "9")) {
            return Err(BackendError::permanent(
                Delivery::NotSent,
                format!("Proxmox VE {version} is not a version Phoenix supports (8.x, 9.x)"),
            ));
        }
        let permissions = self.cached_get(Call::Permissions)?;
        let mut missing = Vec::new();
        for (path, needed) in NEEDED {
            let have = privileges_on(&permissions, path);
            missing.extend(needed.iter().filter(|p| !have.contains(**p)).map(|p| format!("{p} on {path}")));
        }
        if !missing.is_empty() {
            return Err(BackendError::permanent(
                Delivery::NotSent,
                format!("the API credentials lack {}", missing.join(", ")),
            )
            .with_detail("grant them, e.g. `pveum acl modify / --tokens 'USER@REALM!NAME' --roles PVEAdmin` (or a role with exactly these)"));
        }
        if let Some(root) = &self.root {
            root.call(&Call::Version, &[]).map_err(|e| {
                BackendError::permanent(Delivery::NotSent, format!("the root@pam ticket: {}", e.message))
                    .with_detail(e.detail.unwrap_or_default())
            })?;
        }
        if self.channel.is_some() {
            self.on_node(&self.node, &["true".to_string()], None).map_err(|e| {
                BackendError::permanent(
                    Delivery::NotSent,
                    format!("the node channel does not reach {}: {e}", self.node),
                )
            })?;
        }
        Ok(version)
    }

    /// A node other than the backend's that a guest to create names: in the cluster, online, and
    /// reached by the node channel where there is one. Checked once per node and run.
    pub(crate) fn check_node(&self, node: &str) -> Result<(), BackendError> {
        if self.reached.lock().unwrap_or_else(PoisonError::into_inner).contains(node) {
            return Ok(());
        }
        let nodes = self.cached_get(Call::Nodes)?;
        let listed: Vec<&str> = nodes.as_array().into_iter().flatten().filter_map(|n| n["node"].as_str()).collect();
        let refuse = |m: String| Err(BackendError::permanent(Delivery::NotSent, m));
        match nodes.as_array().into_iter().flatten().find(|n| n["node"] == node) {
            None => return refuse(format!("node {node} is not in the cluster (its nodes: {})", listed.join(", "))),
            Some(n) if n["status"] != "online" => {
                return refuse(format!("node {node} is {}", n["status"].as_str().unwrap_or("not online")));
            }
            Some(_) => {}
        }
        if self.channel.is_some() {
            self.on_node(node, &["true".to_string()], None).map_err(|e| {
                BackendError::permanent(Delivery::NotSent, format!("the node channel does not reach {node}: {e}"))
            })?;
        }
        self.reached.lock().unwrap_or_else(PoisonError::into_inner).insert(node.to_string());
        Ok(())
    }

    /// What the guest to create needs from its node: storages with the right content, its
    /// bridge, its template, and the privileges on each. Returns the template's volume ID when
    /// it must be downloaded first.
    pub(crate) fn check_needs(&self, request: &CreateRequest) -> Result<Option<String>, BackendError> {
        let download = self.check_inventory(request)?;
        self.check_guest_privileges(request, download.as_deref())?;
        Ok(download)
    }

    /// The privileges creating this guest needs beyond those every run needs ([`NEEDED`]) and
    /// those on its storages and bridge ([`ProxmoxBackend::check_disks_and_bridge`]): the clone
    /// of its source, a template download, and on 9.x `Sys.Modify` on `/` for a privileged
    /// container. A `root@pam` connection has them all.
    fn check_guest_privileges(&self, request: &CreateRequest, download: Option<&str>) -> Result<(), BackendError> {
        if self.api.is_root() {
            return Ok(());
        }
        let id = request.id;
        let mut needed: Vec<(String, String, String)> = Vec::new();
        let mut need = |privilege: &str, path: String, why: String| needed.push((privilege.into(), path, why));
        if let CreateSource::Clone { source, .. } = &request.source {
            need("VM.Clone", format!("/vms/{source}"), format!("to clone {source} into {id}"));
        }
        if let Some(volume) = download {
            let storage = volume.split(':').next().unwrap_or_default();
            need("Datastore.AllocateTemplate", format!("/storage/{storage}"), format!("to download {volume}"));
        }
        let version = self.cached_get(Call::Version)?;
        let nine = version["version"].as_str().is_some_and(|v| v.starts_with('9'));
        if nine
            && request.config.flag(&Field::Unprivileged) == Some(false)
            && matches!(request.source, CreateSource::Template(_))
        {
            need("Sys.Modify", "/".into(), format!("to create the privileged container {id} (Proxmox VE 9)"));
        }
        self.require(&needed)
    }

    /// Refuses, naming each with its path and why, the privileges of `needed` (privilege, ACL
    /// path, why) the credentials lack.
    pub(crate) fn require(&self, needed: &[(String, String, String)]) -> Result<(), BackendError> {
        let permissions = self.cached_get(Call::Permissions)?;
        let missing: Vec<String> = needed
            .iter()
            .filter(|(privilege, path, _)| !privileges_on(&permissions, path).contains(privilege.as_str()))
            .map(|(privilege, path, why)| format!("{privilege} on {path} ({why})"))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(BackendError::permanent(Delivery::NotSent, format!("the API credentials lack {}", missing.join(", ")))
            .with_detail(
                "grant them to the token, e.g. `pveum acl modify PATH --tokens 'USER@REALM!NAME' --roles ROLE`",
            ))
    }

    /// Refuses, as the missing privilege it is, a `storage` the node's listing lacks because the
    /// credentials hold neither `Datastore.Audit` nor `Datastore.AllocateSpace` on it (Proxmox
    /// lists a storage, and shows its content, only with one of them), naming `Datastore.Audit`
    /// to read `volume` from it. `Ok` when the storage is missing for another reason.
    pub(crate) fn check_storage_seen(&self, storage: &str, volume: &str) -> Result<(), BackendError> {
        if self.api.is_root() {
            return Ok(());
        }
        let permissions = self.cached_get(Call::Permissions)?;
        let path = format!("/storage/{storage}");
        let have = privileges_on(&permissions, &path);
        if have.contains("Datastore.Audit") || have.contains("Datastore.AllocateSpace") {
            return Ok(());
        }
        self.require(&[("Datastore.Audit".into(), path, format!("to read {volume}, or Datastore.AllocateSpace"))])
    }

    /// The content types of each storage of `node`.
    pub(crate) fn storage_contents(&self, node: &str) -> Result<BTreeMap<String, Vec<String>>, BackendError> {
        let storages = self.cached_get(Call::Storages { node })?;
        Ok(storages
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| {
                let content = s["content"].as_str().unwrap_or_default().split(',').map(str::to_string).collect();
                Some((s["storage"].as_str()?.to_string(), content))
            })
            .collect())
    }

    /// The bridges and SDN VNets of `node` (`type=any_bridge`: without it Proxmox lists no
    /// VNets), read once per run.
    fn bridges(&self, node: &str) -> Result<Value, BackendError> {
        self.cached_query(Call::Network { node }, &[("type", "any_bridge".to_string())])
    }

    /// The ACL path of `bridge` on `node`, as Proxmox checks `SDN.Use` on it
    /// (`check_vnet_access`): `/sdn/zones/<zone>/<bridge>` for a VNet the node lists, else
    /// `/sdn/zones/localnetwork/<bridge>`.
    fn bridge_path(&self, node: &str, bridge: &str) -> Result<String, BackendError> {
        let list = self.bridges(node)?;
        let zone = list
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["iface"] == bridge && i["type"] == "vnet")
            .and_then(|i| i["zone"].as_str())
            .unwrap_or("localnetwork");
        Ok(format!("/sdn/zones/{zone}/{bridge}"))
    }

    /// Checks, on `node`, that the credentials may allocate space on each of `disks` and use
    /// `bridge` for the guest `id` (first: Proxmox does not list to a token what it holds no
    /// privilege on), that each of `disks` is a storage holding `content` (`rootdir` for
    /// container disks, `images` for VM disks; `what` names them), and that `bridge` exists.
    /// Returns the node's storages and their content types.
    pub(crate) fn check_disks_and_bridge(
        &self,
        node: &str,
        id: GuestId,
        disks: &[&str],
        (content, what): (&str, &str),
        bridge: Option<&str>,
    ) -> Result<BTreeMap<String, Vec<String>>, BackendError> {
        if !self.api.is_root() {
            let mut needed: Vec<(String, String, String)> = disks
                .iter()
                .map(|s| ("Datastore.AllocateSpace".into(), format!("/storage/{s}"), format!("for the disks of {id}")))
                .collect();
            if let Some(bridge) = bridge {
                needed.push(("SDN.Use".into(), self.bridge_path(node, bridge)?, format!("to attach {id} to {bridge}")));
            }
            self.require(&needed)?;
        }
        let refuse = |m: String, hint: String| Err(BackendError::permanent(Delivery::NotSent, m).with_detail(hint));
        let storages = self.storage_contents(node)?;
        for storage in disks {
            match storages.get(*storage) {
                None => {
                    return refuse(
                        format!("node {node} has no storage {storage}"),
                        "name a storage `pvesm status` lists".into(),
                    );
                }
                Some(c) if !c.iter().any(|c| c == content) => {
                    return refuse(
                        format!("storage {storage} on node {node} does not hold {what} (content: {})", c.join(",")),
                        format!("add `{content}` to its content types, or use another storage"),
                    );
                }
                Some(_) => {}
            }
        }
        if let Some(bridge) = bridge {
            let list = self.bridges(node)?;
            if !list.as_array().into_iter().flatten().any(|i| i["iface"] == bridge) {
                return refuse(
                    format!("node {node} has no bridge {bridge}"),
                    "create it, or name one of the node's bridges".into(),
                );
            }
        }
        Ok(storages)
    }

    /// Storages, bridge and template of the guest to create, on its node.
    fn check_inventory(&self, request: &CreateRequest) -> Result<Option<String>, BackendError> {
        let node = request.node.as_deref().unwrap_or(&self.node);
        let refuse =
            |m: String, hint: &str| Err(BackendError::permanent(Delivery::NotSent, m).with_detail(hint.to_string()));
        let storages = self.check_disks_and_bridge(
            node,
            request.id,
            &disk_storages(request),
            ("rootdir", "container disks"),
            request.config.text(&Field::NetBridge),
        )?;
        let CreateSource::Template(template) = &request.source else { return Ok(None) };
        let volume = if template.starts_with('/') { self.template_volume(node, template)? } else { template.clone() };
        let (storage, file) = match volume.split_once(":vztmpl/") {
            Some((s, f)) => (s.to_string(), f.to_string()),
            None => return Ok(None),
        };
        if !storages.contains_key(&storage) {
            self.check_storage_seen(&storage, &volume)?;
            return refuse(
                format!("node {node} has no storage {storage} (for the template {volume})"),
                "name a storage `pvesm status` lists",
            );
        }
        let present = self.cached_get(Call::StorageContent { node, storage: &storage })?;
        if present.as_array().into_iter().flatten().any(|v| v["volid"] == volume.as_str()) {
            return Ok(None);
        }
        let index = self.cached_get(Call::Appliances { node })?;
        if index.as_array().into_iter().flatten().any(|t| t["template"] == file.as_str()) {
            return Ok(Some(volume));
        }
        refuse(
            format!("the template {volume} is neither on storage {storage} nor in Proxmox's appliance index"),
            "download it (`pveam download`), or name one that `pveam available` lists",
        )
    }

    /// Whether Proxmox can snapshot a container configured as `config`: every mount point must
    /// take one (pve-guest-common's `__snapshot_prepare`), so a bind mount (a host directory)
    /// cannot, nor a volume on a storage whose type (in `GET /storage`) takes no snapshots of
    /// container volumes. The error is [`phoenix_backend::ErrorKind::Unsupported`], naming what
    /// is in the way.
    pub(crate) fn check_container_snapshot(&self, config: &GuestConfig) -> Result<(), BackendError> {
        let binds: Vec<&str> =
            config.mounts().filter(|(_, m)| m.host_path().is_some()).map(|(inside, _)| inside).collect();
        if !binds.is_empty() {
            return Err(BackendError::unsupported(format!(
                "Proxmox snapshots no bind mount (a host directory), and it has {}",
                binds.join(", ")
            )));
        }
        let storages = self.cached_get(Call::StorageConfig)?;
        let kind_of = |name: &str| {
            storages.as_array().into_iter().flatten().find(|s| s["storage"] == name).and_then(|s| s["type"].as_str())
        };
        let without: Vec<String> = config_storages(config)
            .into_iter()
            .filter_map(|s| kind_of(s).filter(|k| NO_CONTAINER_SNAPSHOTS.contains(k)).map(|k| format!("{s} ({k})")))
            .collect();
        if without.is_empty() {
            return Ok(());
        }
        Err(BackendError::unsupported(format!(
            "its disks are on storage that takes no snapshots of containers: {} (snapshots need ZFS, LVM-thin, \
             Ceph RBD or Btrfs)",
            without.join(", ")
        )))
    }

    /// The privileges Proxmox's `clone_vm` checks on the clone's source `source` (configured as
    /// `source_config`) beyond `VM.Clone`: `SDN.Use` on the bridge of each of its interfaces, and
    /// `Datastore.AllocateSpace` on each storage its volumes are on, unless the clone names its
    /// own storage (`named`, the `storage` the clone is asked for with), which Proxmox checks
    /// instead (and [`ProxmoxBackend::check_disks_and_bridge`] does). A `root@pam` connection
    /// has them all.
    pub(crate) fn check_clone_source(
        &self,
        request: &CreateRequest,
        (source, src_node): (GuestId, &str),
        source_config: &serde_json::Map<String, Value>,
        named: Option<&str>,
    ) -> Result<(), BackendError> {
        if self.api.is_root() {
            return Ok(());
        }
        let mut needed: Vec<(String, String, String)> = Vec::new();
        if named.is_none() {
            let mut storages = volume_storages(request.kind, source_config);
            storages.sort_unstable();
            storages.dedup();
            needed.extend(storages.into_iter().map(|s| {
                let why = format!("to clone {source}, which has disks on {s}");
                ("Datastore.AllocateSpace".to_string(), format!("/storage/{s}"), why)
            }));
        }
        // With a VLAN tag, Proxmox checks the tag's path below the bridge's.
        let mut bridges: Vec<(&str, Option<&str>)> = source_config
            .iter()
            .filter(|(k, _)| super::numbered(k, "net"))
            .filter_map(|(_, v)| {
                let field = |key: &str| v.as_str()?.split(',').find_map(|kv| kv.strip_prefix(key));
                Some((field("bridge=")?, field("tag=")))
            })
            .collect();
        bridges.sort_unstable();
        bridges.dedup();
        for (bridge, tag) in bridges {
            let why = format!("to clone {source}, which is attached to {bridge}");
            let path = self.bridge_path(src_node, bridge)?;
            needed.push(("SDN.Use".into(), tag.map_or(path.clone(), |t| format!("{path}/{t}")), why));
        }
        self.require(&needed)
    }

    /// Where Proxmox puts the clone of `source` (on `src_node`, configured as `source_config`)
    /// that `request` asks for, checked before the clone is asked for: a full clone stays on
    /// its source's storages unless the call names one, so the storage to name is returned when
    /// the clone's (`storage`) differs from its source's. A clone to another node is refused
    /// unless each of its volumes (a container's root and mount points, a VM's disks) lands on
    /// shared storage (pve-container's and qemu-server's `clone_vm`: "can't clone CT to node ...
    /// (CT uses local storage)"), said with the ways around it.
    pub(crate) fn clone_storage(
        &self,
        request: &CreateRequest,
        source: GuestId,
        src_node: &str,
        source_config: &serde_json::Map<String, Value>,
    ) -> Result<Option<String>, BackendError> {
        let volumes = volume_storages(request.kind, source_config);
        let storage = request.config.text(&Field::Storage).filter(|s| {
            source_config.get("rootfs").and_then(Value::as_str).and_then(|r| r.split_once(':')).map(|(sid, _)| sid)
                != Some(*s)
        });
        let node = request.node.as_deref().unwrap_or(&self.node);
        if node == src_node {
            return Ok(storage.map(str::to_string));
        }
        let listed = self.cached_get(Call::Storages { node: src_node })?;
        let shared = |name: &str| {
            listed
                .as_array()
                .into_iter()
                .flatten()
                .any(|s| s["storage"] == name && matches!(s["shared"].as_u64(), Some(1)))
        };
        let mut local: Vec<&str> = match storage {
            Some(s) => vec![s],
            None => volumes.iter().map(String::as_str).collect(),
        };
        local.retain(|s| !shared(s));
        local.sort_unstable();
        local.dedup();
        if local.is_empty() {
            return Ok(storage.map(str::to_string));
        }
        Err(BackendError::permanent(
            Delivery::NotSent,
            format!(
                "cannot clone {source} to node {node}: Proxmox clones to another node only onto shared storage, and {} \
                 is local to {src_node}",
                local.join(", ")
            ),
        )
        .with_detail(format!(
            "clone it on {src_node} (`\"node\": \"{src_node}\"`) and migrate it afterwards (`{} {} {node}{}`), or \
             give it a storage_pool on shared storage (Ceph RBD, NFS, or a storage configured `shared 1`)",
            if request.kind == GuestKind::Vm { "qm migrate" } else { "pct migrate" },
            request.id,
            if request.kind == GuestKind::Vm { " --online" } else { " --restart" },
        )))
    }

    /// Checks that root may map, on `node`, every host ID range of the container's ID map
    /// (`idmap`, the `lxc.idmap` lines written for it): LXC maps them with `newuidmap` and
    /// `newgidmap`, which allow only ranges one of root's lines of `/etc/subuid` and
    /// `/etc/subgid` holds, so a container without them never starts. The two files are read
    /// over the node channel (without one, the ID map cannot be written, and the plan says so
    /// already). The error names the lines to add.
    pub(crate) fn check_subids(&self, node: &str, config: &GuestConfig) -> Result<(), BackendError> {
        if !config.has(&Field::Idmap) || self.channel.is_none() {
            return Ok(());
        }
        let ranges = canonical::idmap_ranges(super::containers::configured_ranges(config), super::ID_BASE);
        let mut missing = Vec::new();
        for (kind, file) in [('u', "/etc/subuid"), ('g', "/etc/subgid")] {
            let text = self.node_file(node, file)?;
            let root: Vec<(u64, u64)> = text
                .lines()
                .filter_map(|l| match l.trim().split(':').collect::<Vec<_>>()[..] {
                    ["root" | "0", start, count] => Some((start.parse().ok()?, count.parse().ok()?)),
                    _ => None,
                })
                .collect();
            for (_, _, host, size) in ranges.iter().filter(|r| r.0 == kind) {
                if !root.iter().any(|(start, count)| start <= host && host + size <= start + count) {
                    missing.push(format!("{file} lacks root:{host}:{size}"));
                }
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        Err(BackendError::permanent(
            Delivery::NotSent,
            format!(
                "root may not map the host IDs of its ID map on node {node}, so it would not start: {}",
                missing.join(", ")
            ),
        )
        .with_detail(format!(
            "run `phoenix setup-hypervisor apply --only subids` on node {node}, which adds them, or add these lines \
             there by hand"
        )))
    }

    /// A file of `node` (`cat` over the node channel), read once per run; a file the node does
    /// not have reads as empty.
    fn node_file(&self, node: &str, path: &str) -> Result<String, BackendError> {
        let key = (node.to_string(), path.to_string());
        if let Some(text) = self.node_files.lock().unwrap_or_else(PoisonError::into_inner).get(&key) {
            return Ok(text.clone());
        }
        let text = match self.on_node(node, &["cat".to_string(), path.to_string()], None) {
            Ok(out) => String::from_utf8_lossy(&out).into_owned(),
            Err(e) if e.message.contains("No such file or directory") => String::new(),
            Err(e) => return Err(e),
        };
        self.node_files.lock().unwrap_or_else(PoisonError::into_inner).insert(key, text.clone());
        Ok(text)
    }

    /// Downloads a template from the appliance index onto its storage (a task).
    pub(crate) fn download_template(&self, node: &str, volume: &str) -> Result<(), BackendError> {
        let (storage, file) = volume.split_once(":vztmpl/").unwrap_or((volume, ""));
        self.task(
            Call::DownloadAppliance { node },
            &[("storage", storage.to_string()), ("template", file.to_string())],
        )?;
        self.forget(Call::StorageContent { node, storage });
        Ok(())
    }
}
