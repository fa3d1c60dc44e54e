//! The containers the double keeps: created, configured, started and stopped, snapshotted,
//! cloned and destroyed as Proxmox does it — with the configuration as Proxmox shows it (MACs
//! generated, disks allocated), a `digest` that must match on updates, locks that refuse edits,
//! resizes and destroys while a task holds them (starts, stops and snapshots fail in their task,
//! as pve-container checks the lock there: see the server's `container_task_refusal`),
//! snapshots (settings and raw `lxc.*` lines as they were), and the clone rules (the source
//! must have the snapshot, whose settings and raw lines the clone gets; bind and device mount
//! points make a clone fail; a second clone of a locked source times out; a full clone lands on
//! the `storage` it names; one to another node needs shared storage: [`clone_placement_refusal`]).
//! A snapshot keeps no description (nor `unused[n]`), so a clone of one has only the description
//! the clone call gives.
//! A `delete` of a volume mount point keeps its volume as `unused[n]`, and so does setting a new
//! disk (`STORAGE:SIZE`) in a slot that holds one: a new, empty volume is allocated there; deleting `dev[n]` is
//! refused to tokens, and a key may not be set and deleted at once. Templates as pve-container
//! makes them: only of a stopped container without snapshots, once, `template: 1` written by the
//! task after the answer; never started or snapshotted; cloned linked unless `full`.
//! Snapshots as pve-guest-common keeps them: taking one makes it the live configuration's
//! `parent` (the snapshot keeps the previous one); a rollback stops the container, makes the
//! snapshot's settings and raw lines the live ones (the description and `unused[n]` volumes
//! stay), names it `parent`, and starts the container again with `start`; a deletion gives the
//! snapshots and the live configuration that had it as `parent` its own parent. Both hold the
//! container's lock while their task runs, and what their task refuses (a missing snapshot, a
//! lock, a template) fails the task ([`snapshot_task_refusal`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// A snapshot: the configuration and raw `lxc.*` lines the container had when it was taken.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    pub config: BTreeMap<String, String>,
    pub raw: Vec<(String, String)>,
}

/// One container.
#[derive(Debug, Clone)]
pub(crate) struct Guest {
    pub node: String,
    pub config: BTreeMap<String, String>,
    pub running: bool,
    pub snapshots: BTreeMap<String, Snapshot>,
    pub lock: Option<(String, Instant)>,
    /// Raw `lxc.*` lines of the live section, in order (only the node channel writes them).
    pub raw: Vec<(String, String)>,
    pub firewall: crate::firewall::Firewall,
    /// When the conversion into a template (`POST .../template`) finishes: its task converts
    /// the volumes and only then writes `template: 1`, after Proxmox answered.
    pub converting: Option<Instant>,
    /// Changes a running container takes only at its next start (`[pve:pending]`): a value to
    /// set, or `None` to delete the key.
    pub pending: BTreeMap<String, Option<String>>,
}

impl Guest {
    /// Finishes a conversion into a template whose time has come: the volumes become base
    /// volumes, and the configuration says `template: 1`.
    pub(crate) fn settle(&mut self, vmid: u32) {
        if self.converting.is_some_and(|at| at <= Instant::now()) {
            self.converting = None;
            let own = format!("subvol-{vmid}-disk-");
            for (k, v) in self.config.iter_mut().filter(|(k, _)| *k == "rootfs" || numbered(k, "mp")) {
                *v = v.replacen(&own, &format!("basevol-{vmid}-disk-"), 1);
                let _ = k;
            }
            self.config.insert("template".into(), "1".into());
        }
    }

    /// Whether it is a template.
    pub(crate) fn is_template(&self) -> bool {
        self.config.get("template").is_some_and(|t| t == "1")
    }

    /// The configuration with the pending changes in, as `GET config` shows it unless asked
    /// for the `current` one (pve-guest-common's `load_current_config`).
    pub(crate) fn with_pending(&self) -> BTreeMap<String, String> {
        let mut config = self.config.clone();
        for (k, v) in &self.pending {
            match v {
                Some(v) => config.insert(k.clone(), v.clone()),
                None => config.remove(k),
            };
        }
        config
    }

    /// Starts the container: its pending changes are applied first (pve-container's `vm_start`).
    pub(crate) fn start(&mut self) {
        self.config = self.with_pending();
        self.pending.clear();
        self.running = true;
    }

    pub(crate) fn locked(&self) -> Option<&str> {
        self.lock.as_ref().filter(|(_, until)| *until > Instant::now()).map(|(kind, _)| kind.as_str())
    }

    fn digest(&self) -> String {
        let text: String = self
            .config
            .iter()
            .chain(self.raw.iter().map(|(k, v)| (k, v)))
            .map(|(k, v)| format!("{k}: {v}\n"))
            .chain(self.pending.iter().map(|(k, v)| format!("pending {k}: {v:?}\n")))
            .collect();
        Sha256::digest(text.as_bytes()).iter().take(20).map(|b| format!("{b:02x}")).collect()
    }
}

/// Keys a running container takes only at its next start: pve-container's
/// `vmconfig_hotplug_pending` neither writes them at once nor applies them live, so they stay in
/// `[pve:pending]`, set or deleted, until `vm_start` applies them.
const PENDING_WHILE_RUNNING: &[&str] = &["nameserver", "searchdomain"];

fn numbered(key: &str, prefix: &str) -> bool {
    key.strip_prefix(prefix).is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// What a snapshot keeps of a configuration: everything but the description, the lock, the
/// digest and `unused[n]` (pve-guest-common's `__snapshot_copy_config`). A clone of the snapshot
/// therefore has no description unless the clone call gives one.
pub(crate) fn snapshot_config(config: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    config
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "description" | "lock" | "digest") && !numbered(k, "unused"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Storage types whose container volumes take snapshots (pve-storage's `volume_has_feature`:
/// ZFS, LVM-thin, Ceph RBD, Btrfs; a directory, NFS or CIFS storage only for qcow2 images, which
/// containers do not use; plain LVM not at all).
const SNAPSHOT_STORAGES: &[&str] = &["zfspool", "zfs", "lvmthin", "rbd", "btrfs"];

/// Why the task of a snapshot `snapname` of this container fails, as pve-guest-common's
/// `__snapshot_prepare` dies in it: a template, a lock, a name in use, or a mount point that
/// cannot be snapshotted (a host directory, or a volume on a storage whose type `storage_type`
/// gives and that takes none). `None` when it may run.
pub(crate) fn snapshot_refusal(
    g: &Guest,
    snapname: &str,
    storage_type: &dyn Fn(&str) -> Option<String>,
) -> Option<String> {
    if g.is_template() {
        return Some("you can't take a snapshot if it's a template".into());
    }
    if let Some(kind) = g.locked() {
        return Some(format!("CT is locked ({kind})"));
    }
    if g.snapshots.contains_key(snapname) {
        return Some(format!("snapshot name '{snapname}' already used"));
    }
    let snapshots_on = |value: &str| {
        let volume = value.split(',').next().unwrap_or_default().trim_start_matches("volume=");
        volume
            .split_once(':')
            .and_then(|(storage, _)| storage_type(storage))
            .is_some_and(|t| SNAPSHOT_STORAGES.contains(&t.as_str()))
    };
    g.config
        .iter()
        .any(|(k, v)| (k == "rootfs" || numbered(k, "mp")) && !snapshots_on(v))
        .then(|| "snapshot feature is not available".to_string())
}

/// Why the task of a rollback to (`rollback`) or a deletion of the snapshot `snapname` fails for
/// this guest, as pve-guest-common's `snapshot_rollback` and `snapshot_delete` die in their
/// workers: a template, a snapshot it does not have, a lock (`what`: `CT` or `VM`). `None` when
/// the task may run.
pub(crate) fn snapshot_task_refusal(
    what: &str,
    template: bool,
    has_snapshot: bool,
    lock: Option<&str>,
    snapname: &str,
    rollback: bool,
) -> Option<String> {
    if template {
        return Some(
            if rollback {
                "you can't rollback if vm is a template"
            } else {
                "you can't delete a snapshot if vm is a template"
            }
            .to_string(),
        );
    }
    if !has_snapshot {
        return Some(format!("snapshot '{snapname}' does not exist"));
    }
    lock.map(|kind| format!("{what} is locked ({kind})"))
}

/// The configuration a rollback to `snapshot` leaves (pve-guest-common's
/// `__snapshot_apply_config`): the snapshot's, with the live description and `unused[n]`
/// volumes, and the snapshot as `parent`.
pub(crate) fn rolled_back_config(
    live: &BTreeMap<String, String>,
    snapshot: &BTreeMap<String, String>,
    snapname: &str,
) -> BTreeMap<String, String> {
    // The snapshot's own description is its comment, never the guest's.
    let mut config: BTreeMap<String, String> =
        snapshot.iter().filter(|(k, _)| *k != "description").map(|(k, v)| (k.clone(), v.clone())).collect();
    for (k, v) in live.iter().filter(|(k, _)| *k == "description" || numbered(k, "unused")) {
        config.insert(k.clone(), v.clone());
    }
    config.insert("parent".into(), snapname.to_string());
    config
}

/// After the snapshot `snapname` with parent `parent` is deleted: the live configuration and the
/// snapshots that had it as `parent` get its parent (none when it had none).
pub(crate) fn reparent<'a>(
    configs: impl IntoIterator<Item = &'a mut BTreeMap<String, String>>,
    snapname: &str,
    parent: Option<&str>,
) {
    for config in configs {
        if config.get("parent").is_some_and(|p| p == snapname) {
            match parent {
                Some(p) => config.insert("parent".into(), p.to_string()),
                None => config.remove("parent"),
            };
        }
    }
}

/// A container's volumes as a clone of `source` has them: copies of its own (`full`, on the
/// storage `to` when the clone names one), or linked clones of a template's base volumes
/// (`<base>/subvol-<new>-disk-<n>`).
fn cloned_volume(value: &str, source: u32, new: u32, full: bool, to: Option<&str>) -> String {
    let (volume, rest) = value.split_once(',').map_or((value, String::new()), |(v, r)| (v, format!(",{r}")));
    let Some((storage, name)) = volume.split_once(':') else { return value.to_string() };
    let storage = to.unwrap_or(storage);
    let disk = name.rsplit('/').next().unwrap_or(name);
    let n = disk.rsplit('-').next().unwrap_or("0");
    let copy = format!("subvol-{new}-disk-{n}");
    if full { format!("{storage}:{copy}{rest}") } else { format!("{storage}:basevol-{source}-disk-{n}/{copy}{rest}") }
}

/// What pve-container's and qemu-server's `clone_vm` refuse about where the clone of a guest on
/// `node` with configuration `config` (live) and `snapshots` that `ps` asks for goes, before any
/// task: a `storage` that does not exist; with a `target` node (other than the source's own), a
/// `storage` that is not shared, or — every volume counted on `storage` when given, else on its
/// own storage — a volume on a storage that is not. `volume` says which keys are volumes,
/// `what` names the guest (`CT`, `VM`); `shared` says whether a storage is shared (`None`: no
/// such storage). A source with a bind mount is left to the clone itself, which refuses it first.
pub(crate) struct Placement<'a> {
    pub node: &'a str,
    pub config: &'a BTreeMap<String, String>,
    pub snapshots: &'a dyn Fn(&str) -> Option<&'a BTreeMap<String, String>>,
    pub volume: fn(&str) -> bool,
    pub what: &'static str,
}

/// See [`Placement`].
pub(crate) fn clone_placement_refusal(
    source: &Placement<'_>,
    ps: &BTreeMap<String, String>,
    shared: &dyn Fn(&str) -> Option<bool>,
) -> Option<String> {
    let target = ps.get("target").filter(|t| **t != source.node);
    let storage = ps.get("storage").map(String::as_str);
    if let Some(s) = storage {
        match shared(s) {
            None => return Some(format!("storage '{s}' does not exist")),
            Some(false) if target.is_some() => return Some(format!("can't clone to non-shared storage '{s}'")),
            _ => {}
        }
    }
    let target = target?;
    let config = match ps.get("snapname") {
        Some(s) => (source.snapshots)(s)?,
        None => source.config,
    };
    let volumes: Vec<&str> = config
        .iter()
        .filter(|(k, v)| (source.volume)(k) && !v.contains("media=cdrom") && !v.contains("-cloudinit"))
        .map(|(_, v)| v.split(',').next().unwrap_or_default())
        .collect();
    if volumes.iter().any(|v| v.starts_with('/')) {
        return None;
    }
    let local =
        volumes.iter().filter_map(|v| v.split_once(':')).any(|(sid, _)| shared(storage.unwrap_or(sid)) != Some(true));
    let what = source.what;
    local.then(|| format!("can't clone {what} to node '{target}' ({what} uses local storage)"))
}

/// Whether a key of a container's configuration is a volume (`rootfs`, `mp[n]`).
pub(crate) fn container_volume(key: &str) -> bool {
    key == "rootfs" || numbered(key, "mp")
}

/// An answer: status, reason, body.
pub(crate) type Answer = (u16, String, Value);

/// A failure as Proxmox reports it: the message in the status line.
fn fail(message: String) -> Answer {
    (500, message, json!({ "data": null }))
}

fn missing(node: &str, vmid: &str) -> Answer {
    fail(format!("Configuration file 'nodes/{node}/lxc/{vmid}.conf' does not exist"))
}

/// Parameters that are instructions for the create call, not configuration.
const CREATE_ONLY: &[&str] = &[
    "vmid",
    "ostemplate",
    "storage",
    "password",
    "ssh-public-keys",
    "start",
    "restore",
    "force",
    "unique",
    "pool",
    "ignore-unpack-errors",
    "bwlimit",
];

/// A MAC address as Proxmox generates them (its `BC:24:11` prefix).
fn mac(seed: u64) -> String {
    format!("BC:24:11:{:02X}:{:02X}:{:02X}", (seed >> 16) & 0xff, (seed >> 8) & 0xff, seed & 0xff)
}

/// Shows a value as Proxmox stores it: MACs filled in, disks allocated, tags normalised.
fn stored(vmid: &str, key: &str, value: &str, seed: &mut u64) -> String {
    let n = key.trim_start_matches(|c: char| c.is_ascii_alphabetic());
    match key.trim_end_matches(|c: char| c.is_ascii_digit()) {
        "net" if !value.contains("hwaddr=") => {
            *seed += 1;
            format!("{value},hwaddr={}", mac(*seed))
        }
        "rootfs" | "mp" => match value.split(',').next().and_then(|v| v.split_once(':')) {
            Some((storage, size)) if size.parse::<u64>().is_ok() => {
                let disk = if key == "rootfs" { 0 } else { n.parse::<u64>().unwrap_or(0) + 1 };
                let rest: String = value.split(',').skip(1).map(|p| format!(",{p}")).collect();
                format!("{storage}:subvol-{vmid}-disk-{disk}{rest},size={size}G")
            }
            _ => value.to_string(),
        },
        "tags" => {
            let mut t: Vec<String> =
                value.split([';', ',', ' ']).filter(|t| !t.is_empty()).map(str::to_lowercase).collect();
            t.sort();
            t.dedup();
            t.join(";")
        }
        _ => value.to_string(),
    }
}

/// Handles the container endpoints; `None` for a request it does not model. `task` starts a
/// task (worker type, ID) and gives its UPID; `busy` is how long tasks hold their locks.
pub(crate) fn handle(
    guests: &mut BTreeMap<u32, Guest>,
    method: &str,
    segs: &[&str],
    ps: &BTreeMap<String, String>,
    busy: Duration,
    root: bool,
    task: &mut dyn FnMut(&str, &str, &str) -> String,
) -> Option<Answer> {
    let seed = &mut (guests.len() as u64 * 7919 + 17);
    let id = |s: &str| s.parse::<u32>().ok();
    let ok = |v: Value| (200, "OK".to_string(), json!({ "data": v }));
    Some(match (method, segs) {
        ("GET", ["", "cluster", "resources"]) => ok(Value::Array(
            guests
                .iter()
                .map(|(vmid, g)| {
                    json!({ "id": format!("lxc/{vmid}"), "vmid": vmid, "type": "lxc", "node": g.node, "name": g.config.get("hostname"),
                            "status": if g.running { "running" } else { "stopped" }, "template": u8::from(g.config.get("template").is_some_and(|t| t == "1")) })
                })
                .collect(),
        )),
        ("POST", ["", "nodes", node, "lxc"]) => {
            let vmid = ps.get("vmid").cloned().unwrap_or_default();
            let Some(n) = id(&vmid) else { return Some(fail(format!("invalid vmid {vmid}"))) };
            if guests.contains_key(&n) {
                return Some(fail(format!("CT {vmid} already exists on node '{}'", guests[&n].node)));
            }
            let config = ps.iter().filter(|(k, _)| !CREATE_ONLY.contains(&k.as_str())).map(|(k, v)| (k.clone(), stored(&vmid, k, v, seed))).collect();
            guests.insert(n, Guest { node: (*node).to_string(), config, running: false, snapshots: BTreeMap::new(), lock: Some(("create".into(), Instant::now() + busy)), raw: Vec::new(), firewall: Default::default(), converting: None, pending: BTreeMap::new() });
            ok(json!(task(node, "vzcreate", &vmid)))
        }
        (_, ["", "nodes", node, "lxc", vmid, rest @ ..]) => {
            let Some(n) = id(vmid) else { return Some(missing(node, vmid)) };
            let Some(g) = guests.get(&n).filter(|g| g.node == *node) else { return Some(missing(node, vmid)) };
            match (method, rest) {
                ("GET", ["config"]) => {
                    let current = ps.get("current").is_some_and(|c| c == "1" || c == "true");
                    let shown = if current { g.config.clone() } else { g.with_pending() };
                    let mut c: serde_json::Map<String, Value> = shown.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
                    c.insert("digest".into(), json!(g.digest()));
                    if let Some(kind) = g.locked() {
                        c.insert("lock".into(), json!(kind));
                    }
                    if !g.raw.is_empty() {
                        c.insert("lxc".into(), json!(g.raw.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>()));
                    }
                    ok(Value::Object(c))
                }
                ("PUT", ["config"]) => {
                    if let Some(kind) = g.locked() {
                        return Some(fail(format!("CT is locked ({kind})")));
                    }
                    if ps.get("digest").is_some_and(|d| *d != g.digest()) {
                        return Some(fail("detected modified configuration - file changed by other user? Try again.".into()));
                    }
                    let delete: Vec<&str> = ps.get("delete").map(|d| d.split([',', ';', ' ']).filter(|k| !k.is_empty()).collect()).unwrap_or_default();
                    if let Some(both) = delete.iter().find(|k| ps.contains_key(**k)) {
                        return Some((400, "Parameter verification failed.".into(), json!({ "data": null, "errors": { "delete": format!("you can't use '-{both}' and '-delete {both}' at the same time") } })));
                    }
                    // Deleting device passthrough is configuring it: root@pam only.
                    if !root && delete.iter().any(|k| k.strip_prefix("dev").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))) {
                        return Some((403, "Permission check failed (configuring device passthrough is only allowed for root@pam)".into(), json!({ "data": null })));
                    }
                    let g = guests.get_mut(&n)?;
                    let pending = |g: &Guest, k: &str| g.running && PENDING_WHILE_RUNNING.contains(&k);
                    for key in delete {
                        if pending(g, key) {
                            g.pending.insert(key.to_string(), None);
                            continue;
                        }
                        // A volume mount point is detached: its volume stays, as `unused[n]`.
                        if let Some(old) = g.config.remove(key).filter(|_| key.starts_with("mp")) {
                            let volume = old.split(',').next().unwrap_or_default().trim_start_matches("volume=").to_string();
                            if !volume.starts_with('/') && !g.config.values().any(|v| *v == volume) {
                                let free = (0..256).map(|i| format!("unused{i}")).find(|k| !g.config.contains_key(k));
                                if let Some(slot) = free {
                                    g.config.insert(slot, volume);
                                }
                            }
                        }
                    }
                    for (k, v) in ps.iter().filter(|(k, _)| !matches!(k.as_str(), "delete" | "digest" | "node" | "vmid")) {
                        // `STORAGE:SIZE` is a new disk, wherever it is set (pve-container's
                        // `$NEW_DISK_RE`): a volume the slot held is detached as `unused[n]`.
                        let new_disk = v.split(',').next().and_then(|v| v.split_once(':')).is_some_and(|(_, size)| size.parse::<f64>().is_ok());
                        if numbered(k, "mp")
                            && new_disk
                            && let Some(old) = g.config.get(k).and_then(|o| o.split(',').next()).map(|o| o.trim_start_matches("volume=").to_string()).filter(|o| !o.starts_with('/'))
                        {
                            if let Some(slot) = (0..256).map(|i| format!("unused{i}")).find(|k| !g.config.contains_key(k)) {
                                g.config.insert(slot, old);
                            }
                            let taken = |n: u64| g.config.values().any(|v| v.contains(&format!("-{vmid}-disk-{n},")) || v.ends_with(&format!("-{vmid}-disk-{n}")));
                            let disk = (1..).find(|n| !taken(*n)).unwrap_or(1);
                            let (storage, size) = v.split(',').next().and_then(|v| v.split_once(':')).unwrap_or_default();
                            let rest: String = v.split(',').skip(1).map(|p| format!(",{p}")).collect();
                            g.config.insert(k.clone(), format!("{storage}:subvol-{vmid}-disk-{disk}{rest},size={size}G"));
                            continue;
                        }
                        if pending(g, k) {
                            g.pending.insert(k.clone(), Some(v.clone()));
                            continue;
                        }
                        g.config.insert(k.clone(), stored(vmid, k, v, seed));
                    }
                    ok(Value::Null)
                }
                ("PUT", ["resize"]) => {
                    if let Some(kind) = g.locked() {
                        return Some(fail(format!("CT is locked ({kind})")));
                    }
                    let disk = ps.get("disk").cloned().unwrap_or_default();
                    let size = ps.get("size").cloned().unwrap_or_default();
                    let Some(current) = g.config.get(&disk).cloned() else {
                        return Some(fail(format!("unable to parse config '{disk}'")));
                    };
                    let gib = |s: &str| s.trim_start_matches('+').trim_end_matches('G').parse::<u64>().ok();
                    let old = current.split(',').find_map(|p| p.strip_prefix("size=")).and_then(gib).unwrap_or(0);
                    let new = match gib(&size) {
                        Some(n) if size.starts_with('+') => old + n,
                        Some(n) => n,
                        None => return Some(fail(format!("invalid size '{size}'"))),
                    };
                    if new < old {
                        return Some(fail(format!("unable to shrink disk size ({old}G to {new}G)")));
                    }
                    let resized: Vec<String> =
                        current.split(',').map(|p| if p.starts_with("size=") { format!("size={new}G") } else { p.to_string() }).collect();
                    guests.get_mut(&n)?.config.insert(disk, resized.join(","));
                    ok(json!(task(node, "resize", vmid)))
                }
                ("GET", ["status", "current"]) => ok(json!({ "vmid": n, "status": if g.running { "running" } else { "stopped" }, "name": g.config.get("hostname") })),
                ("POST", ["status", action]) => {
                    let g = guests.get_mut(&n)?;
                    if *action == "start" || (*action == "reboot" && g.running) {
                        g.start();
                    } else {
                        g.running = false;
                    }
                    ok(json!(task(node, &format!("vz{action}"), vmid)))
                }
                ("GET", ["interfaces"]) => {
                    if !g.running {
                        return Some(fail(format!("CT {vmid} not running")));
                    }
                    let mut list = vec![json!({ "name": "lo", "hwaddr": "00:00:00:00:00:00", "inet": "127.0.0.1/8", "inet6": "::1/128" })];
                    for v in g.config.iter().filter(|(k, _)| k.starts_with("net")).map(|(_, v)| v) {
                        let sub = |key: &str| v.split(',').find_map(|p| p.strip_prefix(&format!("{key}="))).map(str::to_string);
                        // A DHCP interface gets a lease of its own (the double's DHCP server).
                        let inet = match sub("ip").as_deref() {
                            Some("dhcp") => Some(format!("10.99.{}.{}/24", (n >> 8) & 0xff, n & 0xff)),
                            other => other.map(str::to_string),
                        };
                        list.push(json!({ "name": sub("name"), "hwaddr": sub("hwaddr"), "inet": inet }));
                    }
                    ok(Value::Array(list))
                }
                ("GET", ["snapshot"]) => {
                    let mut list: Vec<Value> = g
                        .snapshots
                        .iter()
                        .map(|(s, snap)| json!({ "name": s, "description": snap.config.get("description").cloned().unwrap_or_default() }))
                        .collect();
                    list.push(json!({ "name": "current", "description": "You are here!" }));
                    ok(Value::Array(list))
                }
                // What the task refuses was answered before (see `snapshot_refusal`).
                ("POST", ["snapshot"]) => {
                    let name = ps.get("snapname").cloned().unwrap_or_default();
                    let g = guests.get_mut(&n)?;
                    let mut config = snapshot_config(&g.config);
                    // The snapshot's own description: its comment, from the parameter.
                    if let Some(d) = ps.get("description").filter(|d| !d.is_empty()) {
                        config.insert("description".into(), d.clone());
                    }
                    let copy = Snapshot { config, raw: g.raw.clone() };
                    g.snapshots.insert(name.clone(), copy);
                    g.config.insert("parent".into(), name);
                    ok(json!(task(node, "vzsnapshot", vmid)))
                }
                // What the task refuses was answered before (see `snapshot_task_refusal`).
                ("POST", ["snapshot", snapname, "rollback"]) => {
                    let Some(snap) = g.snapshots.get(*snapname).cloned() else {
                        return Some(fail(format!("snapshot '{snapname}' does not exist")));
                    };
                    let g = guests.get_mut(&n)?;
                    g.config = rolled_back_config(&g.config, &snap.config, snapname);
                    g.raw = snap.raw;
                    // Stopped for the rollback; started again only when asked.
                    g.running = ps.get("start").is_some_and(|s| s == "1" || s == "true");
                    g.lock = Some(("rollback".into(), Instant::now() + busy));
                    ok(json!(task(node, "vzrollback", vmid)))
                }
                ("DELETE", ["snapshot", snapname]) => {
                    let g = guests.get_mut(&n)?;
                    let Some(snap) = g.snapshots.remove(*snapname) else {
                        return Some(fail(format!("snapshot '{snapname}' does not exist")));
                    };
                    let parent = snap.config.get("parent").cloned();
                    let configs = std::iter::once(&mut g.config).chain(g.snapshots.values_mut().map(|s| &mut s.config));
                    reparent(configs, snapname, parent.as_deref());
                    g.lock = Some(("snapshot-delete".into(), Instant::now() + busy));
                    ok(json!(task(node, "vzdelsnapshot", vmid)))
                }
                // pve-container's `template`: refused while locked, with snapshots, for a
                // template, and while running; the answer comes before the task is done.
                ("POST", ["template"]) => {
                    if let Some(kind) = g.locked() {
                        return Some(fail(format!("CT is locked ({kind})")));
                    }
                    if !g.snapshots.is_empty() {
                        return Some(fail("unable to create template, because CT contains snapshots".into()));
                    }
                    if g.is_template() || g.converting.is_some() {
                        return Some(fail("you can't convert a template to a template".into()));
                    }
                    if g.running {
                        return Some(fail("you can't convert a CT to template if the CT is running".into()));
                    }
                    guests.get_mut(&n)?.converting = Some(Instant::now() + busy);
                    let _ = task(node, "vztemplate", vmid);
                    ok(Value::Null)
                }
                ("POST", ["clone"]) => {
                    let newid = ps.get("newid").cloned().unwrap_or_default();
                    let Some(new) = id(&newid) else { return Some(fail(format!("invalid newid {newid}"))) };
                    if guests.contains_key(&new) {
                        return Some(fail(format!("CT {newid} already exists")));
                    }
                    // pve-container's clone_vm: the source gets the lock `disk` for the clone
                    // (`set_lock`, whose check refuses a source locked already).
                    if let Some(kind) = g.locked() {
                        return Some(fail(format!("CT is locked ({kind})")));
                    }
                    if g.converting.is_some() {
                        return Some(fail(format!("can't lock file '/run/lock/lxc/pve-config-{vmid}.lock' - got timeout")));
                    }
                    // pve-container's clone rules: a template is cloned linked unless `full`; a
                    // linked clone needs a template and takes no `storage`; a running container
                    // is copied in full only from a snapshot.
                    let template = g.is_template();
                    let full = ps.get("full").map_or(!template, |f| f == "1" || f == "true");
                    if !full && ps.contains_key("storage") {
                        return Some(fail("parameter 'storage' not allowed for linked clones".into()));
                    }
                    if !full && !template {
                        let volume = g.config.get("rootfs").and_then(|r| r.split(',').next()).unwrap_or_default();
                        return Some(fail(format!("Linked clone feature for '{volume}' is not available")));
                    }
                    if full && g.running && !ps.contains_key("snapname") {
                        return Some(fail("Cannot do full clones on a running container without snapshots".into()));
                    }
                    // A clone of a snapshot gets the snapshot's settings and raw lines, not the live ones.
                    let (source, raw) = match ps.get("snapname") {
                        Some(s) => match g.snapshots.get(s) {
                            Some(c) => (c.config.clone(), c.raw.clone()),
                            None => return Some(fail(format!("snapshot '{s}' does not exist"))),
                        },
                        None => (g.config.clone(), g.raw.clone()),
                    };
                    if let Some((k, _)) = source.iter().find(|(k, v)| k.starts_with("mp") && v.split(',').next().is_some_and(|vol| vol.starts_with('/'))) {
                        return Some(fail(format!("unable to clone mountpoint '{k}' (type bind)")));
                    }
                    // Everything but `unused[n]`; the description only from the parameter, or from
                    // the live configuration (a snapshot has none).
                    let mut config: BTreeMap<String, String> =
                        source.into_iter().filter(|(k, _)| k != "template" && k != "parent" && !numbered(k, "unused")).collect();
                    if let Some(d) = ps.get("description").filter(|d| !d.is_empty()) {
                        config.insert("description".into(), d.clone());
                    }
                    for (_, v) in config.iter_mut().filter(|(k, v)| (*k == "rootfs" || numbered(k, "mp")) && !v.starts_with('/')) {
                        *v = cloned_volume(v, n, new, full, ps.get("storage").map(String::as_str));
                    }
                    for (k, v) in config.iter_mut().filter(|(k, _)| k.starts_with("net")) {
                        let without: Vec<&str> = v.split(',').filter(|p| !p.starts_with("hwaddr=")).collect();
                        *seed += 1;
                        *v = format!("{},hwaddr={}", without.join(","), mac(*seed + u64::from(new)));
                        let _ = k;
                    }
                    if let Some(h) = ps.get("hostname") {
                        config.insert("hostname".into(), h.clone());
                    }
                    let firewall = g.firewall.clone();
                    let until = Instant::now() + busy;
                    if let Some(src) = guests.get_mut(&n) {
                        src.lock = Some(("disk".into(), until));
                    }
                    let target = ps.get("target").map_or(*node, String::as_str).to_string();
                    guests.insert(new, Guest { node: target, config, running: false, snapshots: BTreeMap::new(), lock: Some(("create".into(), until)), raw, firewall, converting: None, pending: BTreeMap::new() });
                    ok(json!(task(node, "vzclone", vmid)))
                }
                (_, ["firewall", sub @ ..]) => return crate::firewall::handle(crate::firewall::Scope::Guest, &mut guests.get_mut(&n)?.firewall, method, sub, ps),
                ("DELETE", []) => {
                    if let Some(kind) = g.locked() {
                        return Some(fail(format!("CT is locked ({kind})")));
                    }
                    if g.running {
                        return Some(fail(format!("CT {vmid} is running - destroy failed")));
                    }
                    // A template's base volumes stay while a linked clone uses them.
                    let base = format!("basevol-{vmid}-disk-");
                    if let Some(volume) = guests.iter().filter(|(id, _)| **id != n).flat_map(|(_, o)| o.config.values()).find_map(|v| v.split(',').next().filter(|v| v.contains(base.as_str()) && v.contains('/'))) {
                        let name = volume.split(':').nth(1).and_then(|v| v.split('/').next()).unwrap_or_default();
                        return Some(fail(format!("base volume '{name}' is still in use by linked cloned")));
                    }
                    guests.remove(&n);
                    ok(json!(task(node, "vzdestroy", vmid)))
                }
                _ => return None,
            }
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rollback_gives_back_the_raw_lines_and_keeps_the_description_and_unused_volumes() {
        let mut guests = BTreeMap::new();
        let mut task = |_: &str, _: &str, _: &str| "UPID:x".to_string();
        let ps = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect()
        };
        let mut run =
            |guests: &mut BTreeMap<u32, Guest>, method: &str, path: &str, params: &BTreeMap<String, String>| {
                let segs: Vec<&str> = path.split('/').collect();
                handle(guests, method, &segs, params, Duration::ZERO, true, &mut task).expect("modelled").0
            };
        let create = ps(&[("vmid", "200"), ("ostemplate", "local:vztmpl/x.tar.zst"), ("hostname", "a")]);
        assert_eq!(run(&mut guests, "POST", "/nodes/pve1/lxc", &create), 200);
        let g = guests.get_mut(&200).expect("200");
        g.raw = vec![("lxc.mount.auto".into(), "proc:rw".into())];
        g.running = true;
        assert_eq!(run(&mut guests, "POST", "/nodes/pve1/lxc/200/snapshot", &ps(&[("snapname", "s")])), 200);
        let g = guests.get_mut(&200).expect("200");
        g.raw = vec![("lxc.mount.auto".into(), "proc:mixed".into())];
        g.config.insert("description".into(), "mine".into());
        g.config.insert("unused0".into(), "local-zfs:subvol-200-disk-1".into());
        g.config.insert("memory".into(), "4096".into());
        assert_eq!(run(&mut guests, "POST", "/nodes/pve1/lxc/200/snapshot/s/rollback", &BTreeMap::new()), 200);
        let g = &guests[&200];
        assert_eq!(g.raw, [("lxc.mount.auto".to_string(), "proc:rw".to_string())]);
        assert_eq!(g.config.get("description").map(String::as_str), Some("mine"));
        assert_eq!(g.config.get("unused0").map(String::as_str), Some("local-zfs:subvol-200-disk-1"));
        assert_eq!(g.config.get("memory"), None);
        assert_eq!(g.config.get("parent").map(String::as_str), Some("s"));
        assert!(!g.running, "stopped by the rollback");
    }
}
