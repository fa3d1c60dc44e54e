//! The double served over HTTPS on loopback, with a certificate made when it starts (a CA and a
//! node certificate signed by it, as a Proxmox cluster has). Every request is recorded and checked
//! against the schema of the version played; requests are refused as Proxmox refuses them:
//! 401 without valid credentials, 400 with per-parameter errors, 403 for what Proxmox reserves to
//! `root@pam` when asked with a token, and for a bridge or a clone's source storage the token
//! lacks `SDN.Use` or `Datastore.AllocateSpace` on (or a storage whose content it may not see).
//! A token sees only the bridges and storages it holds privileges on.
//!
//! Containers are kept as Proxmox keeps them (see [`crate::guests`]), and QEMU VMs with their
//! guest agents (see [`crate::qemu`]); either can be made a template. Requests Proxmox runs as
//! tasks (create, clone, start/stop, snapshot, destroy, `download-url`) answer with a UPID; the
//! task runs for a set time and stops with `OK` or an injected failure, and its status and log
//! can be read.
//!
//! Beyond the happy path: every answer can be delayed ([`PveDouble::set_latency`]); faults can be
//! injected for the next matching requests ([`PveDouble::inject`]): a lock timeout, a proxy error,
//! a connection dropped before or after the request took effect; the cluster can have several
//! nodes ([`PveDouble::add_node`]). When `PHOENIX_PVE_REQUEST_LOG` names a directory, each request
//! is also appended there as one JSON line (see [`REQUEST_LOG_ENV`]), for the suite-wide check
//! against both schemas (`check-requests`).
//!
//! `pvesh` on a node is played by a stand-in ([`crate::pvesh`]) that sends its requests here
//! with the double's local-root secret ([`PveDouble::pvesh_env`]): they are served as
//! `root@pam`'s, with all privileges, and checked and recorded like any other.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::BuildHasher;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use phoenix_http::test_server::{Reply, Served, TestServer, form_decode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::schema::{ApiSchema, PveVersion};

/// A request the double received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// HTTP method.
    pub method: String,
    /// Path below `/api2/json`.
    pub path: String,
    /// Parameters, decoded.
    pub params: BTreeMap<String, String>,
    /// Asked with an API token (else a ticket).
    pub token: bool,
    /// The HTTP status it was answered with (or would have been, when the answer was dropped; 0
    /// when the connection was dropped before the request was handled).
    pub status: u16,
    /// Whether the answer reached the client (false for the injected dropped connections).
    pub answered: bool,
}

/// The environment variable naming a directory where every double appends the requests it
/// records, one JSON object a line (`version`, `method`, `path`, `params`, `status`), in a file of
/// its own (`<pid>-<port>.jsonl`). Doubles marked with [`PveDouble::expect_refusals`] write none.
pub const REQUEST_LOG_ENV: &str = "PHOENIX_PVE_REQUEST_LOG";

/// A file inside a VM: its content, and the mode (octal) and owner (`uid:gid`) the driver gave it
/// through the guest agent, if it did.
pub type VmFile = (Vec<u8>, Option<(String, String)>);

/// What an injected fault does to a request it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Answered 500 `can't lock file '/run/lock/lxc/pve-config-<id>.lock' - got timeout` (the
    /// guest of the path, or the `vmid` parameter); nothing is applied.
    LockTimeout,
    /// Answered with this status (502 and 503 as a proxy in front answers them, 595 as
    /// `pveproxy` answers when it cannot reach the node); nothing is applied.
    Status(u16),
    /// The connection is closed after the request was read, without an answer; nothing is
    /// applied. The client cannot know that, so it must treat the request as maybe applied.
    DropRequest,
    /// The request is applied, then the connection is closed without an answer: a retry finds
    /// its effect (e.g. "already exists").
    DropAnswer,
}

/// A fault for the next matching requests: a method (or any) and a path prefix below
/// `/api2/json` (empty for any path), applied to the next `times` requests that match and that
/// the double would otherwise serve (authenticated and valid for the schema).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// What it does.
    pub kind: FaultKind,
    /// The method it applies to; `None` for any.
    pub method: Option<String>,
    /// The path prefix it applies to, e.g. `/nodes/pve1/lxc`; empty for any path.
    pub path_prefix: String,
    /// How many matching requests it still applies to.
    pub times: u32,
}

impl Fault {
    /// A fault for the next request, whatever it is.
    pub fn new(kind: FaultKind) -> Fault {
        Fault { kind, method: None, path_prefix: String::new(), times: 1 }
    }

    /// Only for requests with this method and a path that starts with `path_prefix`.
    pub fn on(self, method: &str, path_prefix: &str) -> Fault {
        Fault { method: Some(method.to_string()), path_prefix: path_prefix.to_string(), ..self }
    }

    /// For the next `n` matching requests instead of one.
    pub fn times(self, n: u32) -> Fault {
        Fault { times: n, ..self }
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        self.method.as_deref().is_none_or(|m| m == method) && path.starts_with(&self.path_prefix)
    }
}

/// What becomes of the answer to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    /// Sent.
    Answer,
    /// Not sent; the request was not handled.
    DropRequest,
    /// Not sent; the request was handled.
    DropAnswer,
}

/// A task the double runs: it is running until its time is up, then stopped with its exit status.
#[derive(Debug, Clone)]
struct Task {
    started: std::time::Instant,
    duration: std::time::Duration,
    exitstatus: String,
    log: Vec<String>,
    /// When a status request first found it stopped.
    seen_stopped: Option<std::time::Instant>,
}

/// A storage of `storage.cfg` (on every node).
#[derive(Debug, Clone)]
struct Storage {
    /// Its type: `dir`, `zfspool`, `lvm`, `rbd`, ...
    kind: String,
    /// Its directory, for file-based storages.
    path: Option<String>,
    /// The content types it holds, comma-separated.
    content: String,
    /// The same volumes on every node (`shared 1`): what a clone to another node needs.
    shared: bool,
}

/// Storage types pve-storage always counts as shared (its `@SHARED_STORAGE`): network storages
/// whose volumes every node reaches. Any other storage is shared only when configured so.
const SHARED_TYPES: &[&str] = &["iscsi", "nfs", "cifs", "rbd", "cephfs", "iscsidirect", "zfs", "drbd", "pbs"];

impl Storage {
    fn new(kind: &str, path: Option<&str>, content: &str) -> Self {
        Storage {
            kind: kind.into(),
            path: path.map(str::to_string),
            content: content.into(),
            shared: SHARED_TYPES.contains(&kind),
        }
    }
}

/// What the double keeps between requests.
#[derive(Debug, Default)]
pub(crate) struct Model {
    pub(crate) guests: BTreeMap<u32, crate::guests::Guest>,
    /// QEMU VMs, their guest agents, and the disk images that can be imported.
    pub(crate) vms: crate::qemu::Vms,
    tasks: BTreeMap<String, Task>,
    next_pid: u32,
    pub(crate) task_duration: std::time::Duration,
    fail_next: Option<(String, Vec<String>)>,
    /// root@pam has two-factor authentication: a password login gives only a TFA challenge.
    root_tfa: bool,
    /// Storages of every node, by name.
    storages: BTreeMap<String, Storage>,
    /// The cluster's nodes, the first one the node the API is reached on.
    pub(crate) nodes: Vec<String>,
    /// Nodes that are down: listed `offline`, and unreachable over the node channel.
    pub(crate) offline: std::collections::BTreeSet<String>,
    /// The faults still to apply, in the order they were injected.
    faults: Vec<Fault>,
    /// Extra time before every answer.
    latency: Duration,
    /// The double's certificate fingerprint (shown for every node).
    fingerprint: String,
    /// Device nodes of each node (`/dev/nvidia0`, ...).
    pub(crate) devices: BTreeMap<String, Vec<String>>,
    /// Files inside containers, as the driver's push left them.
    pub(crate) files: BTreeMap<(u32, String), Vec<u8>>,
    /// The files of each container at each of its snapshots (container, snapshot): what a
    /// rollback restores.
    snapshot_files: BTreeMap<(u32, String), BTreeMap<String, Vec<u8>>>,
    /// The environment each `pct exec` gave its command, in order.
    pub(crate) exec_environments: Vec<crate::node::ExecEnvironment>,
    /// Commands run on the nodes.
    pub(crate) commands: Vec<crate::node::NodeCommand>,
    /// Privileges, bridges, templates and the appliance index.
    inventory: crate::inventory::Inventory,
    /// The `root@pam` tickets issued.
    tickets: crate::tickets::Tickets,
    /// Directories of the nodes' filesystems (bind-mount sources) and their owners.
    pub(crate) host_dirs: BTreeMap<String, String>,
    /// The secret of the node's own root (`pvesh` on the node), see [`PveDouble::pvesh_env`].
    local_root: String,
    /// What `download-url` can fetch: URL → size in bytes (any other URL is not found).
    downloads: BTreeMap<String, u64>,
    /// Files of the nodes (node, path) given with [`PveDouble::set_node_file`]; see
    /// [`Model::node_file`].
    node_files: BTreeMap<(String, String), String>,
    /// The cluster's firewall (`/cluster/firewall`: `cluster.fw`'s options and rules).
    cluster_firewall: crate::firewall::Firewall,
}

/// What a node's `/etc/subuid` and `/etc/subgid` hold as Proxmox installs it: root may map the
/// 65536 IDs from 100000, which unprivileged containers use.
const DEFAULT_SUBIDS: &str = "root:100000:65536\n";

impl Model {
    /// A file of `node`: as set, else `/etc/subuid` and `/etc/subgid` as Proxmox installs them.
    pub(crate) fn node_file(&self, node: &str, path: &str) -> Option<String> {
        let given = self.node_files.get(&(node.to_string(), path.to_string())).cloned();
        given.or_else(|| matches!(path, "/etc/subuid" | "/etc/subgid").then(|| DEFAULT_SUBIDS.to_string()))
    }

    /// The first range of a container's ID map (`lxc.idmap` lines) that root may not map on its
    /// node, as `newuidmap` or `newgidmap` refuses it: every host range must lie in one of
    /// root's lines of `/etc/subuid` (`/etc/subgid` for groups), or LXC cannot start it.
    fn undelegated_id_range(&self, g: &crate::guests::Guest) -> Option<String> {
        g.raw.iter().filter(|(k, _)| k == "lxc.idmap").find_map(|(_, v)| {
            let p: Vec<&str> = v.split_whitespace().collect();
            let n = |i: usize| p.get(i).and_then(|x| x.parse::<u64>().ok());
            let (kind, inside, host, count) = (p.first()?, n(1)?, n(2)?, n(3)?);
            let (file, tool, what) =
                if *kind == "u" { ("/etc/subuid", "newuidmap", "uid") } else { ("/etc/subgid", "newgidmap", "gid") };
            let lines = self.node_file(&g.node, file).unwrap_or_default();
            let allowed = lines.lines().any(|l| {
                let f: Vec<&str> = l.trim().split(':').collect();
                let (start, size) =
                    (f.get(1).and_then(|x| x.parse::<u64>().ok()), f.get(2).and_then(|x| x.parse::<u64>().ok()));
                matches!(f.first(), Some(&"root" | &"0"))
                    && f.len() == 3
                    && start.zip(size).is_some_and(|(s, c)| s <= host && host + count <= s + c)
            });
            (!allowed).then(|| {
                format!("{tool}: {what} range [{inside}-{}) -> [{host}-{}) not allowed", inside + count, host + count)
            })
        })
    }

    /// Starts a task for a request that Proxmox answers with a UPID.
    fn start_task(&mut self, node: &str, kind: &str, id: &str, user: &str) -> String {
        self.next_pid += 1;
        let starttime = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let upid = format!(
            "UPID:{node}:{:08X}:{:08X}:{starttime:08X}:{kind}:{id}:{user}:",
            0x1000 + self.next_pid,
            0x0012_0000 + self.next_pid
        );
        let (exitstatus, log) = match self.fail_next.take() {
            Some((exit, log)) => (exit, log),
            None => ("OK".to_string(), vec![format!("{kind} {id}"), "TASK OK".to_string()]),
        };
        self.tasks.insert(
            upid.clone(),
            Task {
                started: std::time::Instant::now(),
                duration: self.task_duration,
                exitstatus,
                log,
                seen_stopped: None,
            },
        );
        upid
    }

    /// Runs a container request as `user` (`root`: with the rights of `root@pam`).
    pub(crate) fn handle(
        &mut self,
        method: &str,
        segs: &[&str],
        ps: &BTreeMap<String, String>,
        root: bool,
        user: &str,
    ) -> crate::guests::Answer {
        let busy = self.task_duration;
        // Conversions into templates whose tasks are done.
        for (id, g) in self.guests.iter_mut() {
            g.settle(*id);
        }
        self.vms.settle();
        let mut refused_start = None;
        // A template never starts: the start task fails (pve-container's `vm_start` worker).
        if let ("POST", ["", "nodes", _, "lxc", vmid, "status", "start"]) = (method, segs)
            && let Some(n) = vmid.parse::<u32>().ok()
            && self.guests.get(&n).is_some_and(crate::guests::Guest::is_template)
        {
            self.fail_next = Some((
                "you can't start a CT if it's a template".to_string(),
                vec![
                    "you can't start a CT if it's a template".to_string(),
                    "TASK ERROR: you can't start a CT if it's a template".to_string(),
                ],
            ));
            refused_start = Some(n);
        }
        // A bind mount's source must be a directory of the node, or the start fails
        // (pve-container's `mountpoint_mount`).
        if let ("POST", ["", "nodes", _, "lxc", vmid, "status", "start"]) = (method, segs)
            && let Some(n) = vmid.parse::<u32>().ok()
            && let Some(g) = self.guests.get(&n)
            && let Some(missing) = g
                .config
                .iter()
                .filter(|(k, _)| k.starts_with("mp") || *k == "rootfs")
                .filter_map(|(_, v)| v.split(',').next().filter(|p| p.starts_with('/')))
                .find(|p| !self.host_dirs.contains_key(*p))
        {
            self.fail_next = Some((
                format!("startup for container '{n}' failed"),
                vec![
                    format!("directory '{missing}' does not exist"),
                    format!("TASK ERROR: startup for container '{n}' failed"),
                ],
            ));
            refused_start = Some(n);
        }
        // An ID map that maps host IDs root may not map (`/etc/subuid`, `/etc/subgid` of the
        // node): LXC's `lxc_map_ids` fails, and so does the start.
        if let ("POST", ["", "nodes", _, "lxc", vmid, "status", "start"]) = (method, segs)
            && let Some(n) = vmid.parse::<u32>().ok()
            && let Some(refused) = self.guests.get(&n).and_then(|g| self.undelegated_id_range(g))
        {
            self.fail_next = Some((
                format!("startup for container '{n}' failed"),
                vec![
                    refused,
                    "lxc_map_ids: newuidmap or newgidmap failed to write the mapping".to_string(),
                    format!("TASK ERROR: startup for container '{n}' failed"),
                ],
            ));
            refused_start = Some(n);
        }
        // A rollback or a deletion of a snapshot checks the guest in its task: what it refuses
        // is a task that fails, with the guest left as it was.
        if let Some((node, kind, vmid, error)) = self.snapshot_task_refusal(method, segs) {
            self.fail_next = Some((error.clone(), vec![error.clone(), format!("TASK ERROR: {error}")]));
            let upid = self.start_task(&node, kind, &vmid, user);
            return (200, "OK".to_string(), json!({ "data": upid }));
        }
        // A container's start, stop, shutdown and snapshot check it in their task too.
        if let Some((node, kind, vmid, error)) = self.container_task_refusal(method, segs, ps) {
            self.fail_next = Some((error.clone(), vec![error.clone(), format!("TASK ERROR: {error}")]));
            let upid = self.start_task(&node, kind, &vmid, user);
            return (200, "OK".to_string(), json!({ "data": upid }));
        }
        if let ("POST", ["", "nodes", node, "qemu", vmid, "clone"]) = (method, segs)
            && let Some(vm) = vmid.parse::<u32>().ok().and_then(|id| self.vms.vms.get(&id)).filter(|v| v.node == *node)
        {
            let shared = |s: &str| self.storages.get(s).map(|st| st.shared);
            let snapshots = |s: &str| vm.snapshots.get(s);
            let placement = crate::guests::Placement {
                node: &vm.node,
                config: &vm.config,
                snapshots: &snapshots,
                volume: crate::qemu::is_disk,
                what: "VM",
            };
            if let Some(error) = crate::guests::clone_placement_refusal(&placement, ps, &shared) {
                return (500, error, json!({ "data": null }));
            }
        }
        let containers: std::collections::BTreeSet<u32> = self.guests.keys().copied().collect();
        let mut vms = std::mem::take(&mut self.vms);
        let vm_answer = vms.handle(method, segs, ps, busy, &|id| containers.contains(&id), &mut |node, kind, id| {
            self.start_task(node, kind, id, user)
        });
        self.vms = vms;
        if let Some(answer) = vm_answer {
            return answer;
        }
        if let ("POST", ["", "nodes", _, "lxc"]) = (method, segs)
            && let Some(id) =
                ps.get("vmid").and_then(|v| v.parse::<u32>().ok()).filter(|id| self.vms.vms.contains_key(id))
        {
            return (500, format!("CT {id} already exists (a VM has this ID)"), json!({ "data": null }));
        }
        if let ("POST", ["", "nodes", node, "lxc", vmid, "clone"]) = (method, segs)
            && let Some(g) = vmid.parse::<u32>().ok().and_then(|id| self.guests.get(&id)).filter(|g| g.node == *node)
        {
            let shared = |s: &str| self.storages.get(s).map(|st| st.shared);
            let snapshots = |s: &str| g.snapshots.get(s).map(|snap| &snap.config);
            let placement = crate::guests::Placement {
                node: &g.node,
                config: &g.config,
                snapshots: &snapshots,
                volume: crate::guests::container_volume,
                what: "CT",
            };
            if let Some(error) = crate::guests::clone_placement_refusal(&placement, ps, &shared) {
                return (500, error, json!({ "data": null }));
            }
        }
        let mut guests = std::mem::take(&mut self.guests);
        let answer = crate::guests::handle(&mut guests, method, segs, ps, busy, root, &mut |node, kind, id| {
            self.start_task(node, kind, id, user)
        });
        self.guests = guests;
        if let Some(g) = refused_start.and_then(|n| self.guests.get_mut(&n)) {
            g.running = false;
        }
        if answer.as_ref().is_some_and(|a| a.0 == 200) {
            self.keep_snapshot_files(method, segs, ps);
        }
        let mut answer = answer.unwrap_or_else(|| (200, "OK".to_string(), json!({ "data": null })));
        if let ("GET", ["", "cluster", "resources"], Some(rows)) = (method, segs, answer.2["data"].as_array_mut()) {
            rows.extend(self.vms.resources());
        }
        answer
    }

    /// The task a rollback to a snapshot or its deletion (of a container or a VM) would fail:
    /// (node, worker type, ID, error).
    fn snapshot_task_refusal(&self, method: &str, segs: &[&str]) -> Option<(String, &'static str, String, String)> {
        let (tree, node, vmid, snapname, rollback) = match (method, segs) {
            ("POST", ["", "nodes", node, tree, vmid, "snapshot", snap, "rollback"]) => {
                (*tree, *node, *vmid, *snap, true)
            }
            ("DELETE", ["", "nodes", node, tree, vmid, "snapshot", snap]) => (*tree, *node, *vmid, *snap, false),
            _ => return None,
        };
        let id = vmid.parse::<u32>().ok()?;
        let (refusal, kind) = match tree {
            "lxc" => {
                let g = self.guests.get(&id).filter(|g| g.node == node)?;
                let has = g.snapshots.contains_key(snapname);
                let refusal =
                    crate::guests::snapshot_task_refusal("CT", g.is_template(), has, g.locked(), snapname, rollback);
                (refusal, if rollback { "vzrollback" } else { "vzdelsnapshot" })
            }
            "qemu" => {
                let vm = self.vms.vms.get(&id).filter(|v| v.node == node)?;
                let has = vm.snapshots.contains_key(snapname);
                let refusal =
                    crate::guests::snapshot_task_refusal("VM", vm.is_template(), has, vm.locked(), snapname, rollback);
                (refusal, if rollback { "qmrollback" } else { "qmdelsnapshot" })
            }
            _ => return None,
        };
        Some((node.to_string(), kind, vmid.to_string(), refusal?))
    }

    /// The task of a container's start, stop or shutdown that fails because another task holds
    /// the container's lock (pve-container's workers call `check_lock`; a template's start is
    /// refused before), or of a snapshot that pve-guest-common's `__snapshot_prepare` refuses
    /// (see [`crate::guests::snapshot_refusal`]): (node, worker type, ID, error).
    fn container_task_refusal(
        &self,
        method: &str,
        segs: &[&str],
        ps: &BTreeMap<String, String>,
    ) -> Option<(String, &'static str, String, String)> {
        let (node, vmid, kind) = match (method, segs) {
            ("POST", ["", "nodes", node, "lxc", vmid, "status", "start"]) => (*node, *vmid, "vzstart"),
            ("POST", ["", "nodes", node, "lxc", vmid, "status", "stop"]) => (*node, *vmid, "vzstop"),
            ("POST", ["", "nodes", node, "lxc", vmid, "status", "shutdown"]) => (*node, *vmid, "vzshutdown"),
            ("POST", ["", "nodes", node, "lxc", vmid, "snapshot"]) => (*node, *vmid, "vzsnapshot"),
            _ => return None,
        };
        let g = self.guests.get(&vmid.parse::<u32>().ok()?).filter(|g| g.node == node)?;
        let error = match kind {
            "vzsnapshot" => {
                let storage_type = |s: &str| self.storages.get(s).map(|st| st.kind.clone());
                crate::guests::snapshot_refusal(g, ps.get("snapname").map_or("", String::as_str), &storage_type)
            }
            "vzstart" if g.is_template() => None,
            _ => g.locked().map(|lock| format!("CT is locked ({lock})")),
        }?;
        Some((node.to_string(), kind, vmid.to_string(), error))
    }

    /// Keeps the files of a container with its snapshot when one is taken, gives them back on a
    /// rollback, and forgets them with the snapshot or the container.
    fn keep_snapshot_files(&mut self, method: &str, segs: &[&str], ps: &BTreeMap<String, String>) {
        let files_of = |files: &BTreeMap<(u32, String), Vec<u8>>, id: u32| -> BTreeMap<String, Vec<u8>> {
            files.iter().filter(|((g, _), _)| *g == id).map(|((_, p), c)| (p.clone(), c.clone())).collect()
        };
        let id = |vmid: &str| vmid.parse::<u32>().ok();
        match (method, segs) {
            ("POST", ["", "nodes", _, "lxc", vmid, "snapshot"]) => {
                if let (Some(id), Some(name)) = (id(vmid), ps.get("snapname")) {
                    let files = files_of(&self.files, id);
                    self.snapshot_files.insert((id, name.clone()), files);
                }
            }
            ("POST", ["", "nodes", _, "lxc", vmid, "snapshot", snap, "rollback"]) => {
                if let Some(id) = id(vmid) {
                    let kept = self.snapshot_files.get(&(id, (*snap).to_string())).cloned().unwrap_or_default();
                    self.files.retain(|(g, _), _| *g != id);
                    self.files.extend(kept.into_iter().map(|(p, c)| ((id, p), c)));
                }
            }
            ("DELETE", ["", "nodes", _, "lxc", vmid, "snapshot", snap]) => {
                if let Some(id) = id(vmid) {
                    self.snapshot_files.remove(&(id, (*snap).to_string()));
                }
            }
            ("DELETE", ["", "nodes", _, "lxc", vmid]) => {
                if let Some(id) = id(vmid) {
                    self.snapshot_files.retain(|(g, _), _| *g != id);
                }
            }
            _ => {}
        }
    }

    /// `POST /nodes/{node}/storage/{storage}/download-url` as pve-storage answers it: the storage
    /// must exist, be file-based and hold the content type; the file name must have an extension
    /// the content type takes (`import`: `.ova`, `.qcow2`, `.raw`, `.vmdk`, of safe characters);
    /// the task then fails for a URL that cannot be fetched or a file that is there already, and
    /// otherwise puts the file on the storage.
    fn download_url(
        &mut self,
        node: &str,
        storage: &str,
        ps: &BTreeMap<String, String>,
        user: &str,
    ) -> (u16, String, Value) {
        let fail = |m: String| (500, m, json!({ "data": null }));
        let Some(Storage { kind, path, content: content_types, .. }) = self.storages.get(storage).cloned() else {
            return fail(format!("storage '{storage}' does not exist"));
        };
        let Some(path) = path else {
            return fail(format!("can't upload to storage type '{kind}', not a file based storage!"));
        };
        let field = |k: &str| ps.get(k).cloned().unwrap_or_default();
        let (content, filename, url) = (field("content"), field("filename"), field("url"));
        if !content_types.split(',').any(|c| c == content) {
            return fail(format!("storage '{storage}' is not configured for content-type '{content}'"));
        }
        let (pattern, dir) = match content.as_str() {
            "import" => (r"^[a-zA-Z0-9\-\.\+=_]+\.(ova|qcow2|raw|vmdk)$", "import"),
            "vztmpl" => (r"^[^/]+\.tar\.(gz|xz|zst|bz2)$", "template/cache"),
            _ => (r"^[^/]+\.(iso|img)$", "template/iso"),
        };
        if !regex::Regex::new(pattern).is_ok_and(|re| re.is_match(&filename)) {
            let what = if content == "import" { "invalid filename or wrong extension" } else { "wrong file extension" };
            return (
                400,
                "Parameter verification failed.".into(),
                json!({ "data": null, "errors": { "filename": what } }),
            );
        }
        let volume = match content.as_str() {
            "import" => format!("{storage}:import/{filename}"),
            "vztmpl" => format!("{storage}:vztmpl/{filename}"),
            _ => format!("{storage}:iso/{filename}"),
        };
        let present = self.vms.images.contains_key(&volume) || self.inventory.templates.contains(&volume);
        let dest = format!("{}/{dir}/{filename}", path.trim_end_matches('/'));
        match self.downloads.get(&url).copied() {
            _ if present => {
                let why = format!("refusing to override existing file '{dest}'");
                self.fail_next = Some((why.clone(), vec![why.clone(), format!("TASK ERROR: {why}")]));
            }
            None => {
                let why = format!("download failed: 404 Not Found ({url})");
                self.fail_next = Some((why.clone(), vec![why.clone(), format!("TASK ERROR: {why}")]));
            }
            Some(size) => match content.as_str() {
                "import" => {
                    self.vms.images.insert(volume, size);
                }
                "vztmpl" => {
                    self.inventory.templates.insert(volume);
                }
                _ => {}
            },
        }
        let id: String =
            filename.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '-' }).collect();
        (200, "OK".into(), json!({ "data": self.start_task(node, "download", &id, user) }))
    }

    /// Takes one use of the first pending fault that matches.
    fn take_fault(&mut self, method: &str, path: &str) -> Option<FaultKind> {
        let i = self.faults.iter().position(|f| f.times > 0 && f.matches(method, path))?;
        let kind = self.faults[i].kind;
        self.faults[i].times -= 1;
        if self.faults[i].times == 0 {
            self.faults.remove(i);
        }
        Some(kind)
    }
}

/// A running double.
pub struct PveDouble {
    /// Its address.
    pub addr: SocketAddr,
    /// PEM of the CA that signed its certificate (what `tls.ca_file` would hold).
    pub ca_pem: String,
    /// SHA-256 fingerprint of its certificate as Proxmox shows it (`AB:CD:...`).
    pub fingerprint: String,
    /// The version it plays.
    pub version: PveVersion,
    recorded: Arc<Mutex<Vec<Recorded>>>,
    model: Arc<Mutex<Model>>,
    log: Arc<Mutex<Option<PathBuf>>>,
    /// The HTTPS server; it stops when the double is dropped.
    server: TestServer,
}

/// Credentials the double accepts.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// API token ID and secret.
    pub token: (String, String),
    /// The `root@pam` password, for tickets (`POST /access/ticket`).
    pub root_password: String,
}

impl PveDouble {
    /// Starts a double playing `version` on a free loopback port.
    pub fn start(version: PveVersion, credentials: Credentials) -> PveDouble {
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let model = Arc::new(Mutex::new(Model::default()));
        let log = Arc::new(Mutex::new(None));
        let record = Recorder { version, recorded: recorded.clone(), log: log.clone() };
        let shared = model.clone();
        let server = TestServer::start(move |request| serve(request, version, &credentials, &record, &shared));
        let (addr, fingerprint) = (server.addr, server.fingerprint.clone());
        // The log file and the fingerprint the nodes show are known once the server listens; no
        // request reaches it before the double is returned.
        *log.lock().unwrap_or_else(PoisonError::into_inner) =
            std::env::var_os(REQUEST_LOG_ENV).filter(|d| !d.is_empty()).map(|d| {
                let dir = PathBuf::from(d);
                std::fs::create_dir_all(&dir)
                    .unwrap_or_else(|e| panic!("cannot make the request log directory {}: {e}", dir.display()));
                dir.join(format!("{}-{}.jsonl", std::process::id(), addr.port()))
            });
        // The node's own root secret: only this double (and the pvesh stand-in it is given to) knows it.
        let seed = std::collections::hash_map::RandomState::new().hash_one(addr.port());
        let local_root: String = Sha256::digest(format!("{seed}:{fingerprint}:{:?}", std::time::Instant::now()))
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut initial =
            Model { nodes: vec!["pve1".into()], fingerprint: fingerprint.clone(), local_root, ..Model::default() };
        initial.storages.insert("local".into(), Storage::new("dir", Some("/var/lib/vz"), "vztmpl,iso,backup"));
        initial.storages.insert("local-zfs".into(), Storage::new("zfspool", None, "rootdir,images"));
        *model.lock().unwrap_or_else(PoisonError::into_inner) = initial;
        PveDouble { addr, ca_pem: server.ca_pem.clone(), fingerprint, version, recorded, model, log, server }
    }

    /// The environment of the `pvesh` stand-in ([`crate::pvesh`]) for this double: its URL, its
    /// certificate's fingerprint and its local-root secret. Requests that carry the secret are
    /// the node's own root running `pvesh`: served as `root@pam`, with all privileges. Only the
    /// double has this; Proxmox's `pvesh` makes its calls inside the node, without HTTP.
    pub fn pvesh_env(&self) -> Vec<(String, String)> {
        let secret = self.model.lock().unwrap_or_else(PoisonError::into_inner).local_root.clone();
        vec![
            (crate::pvesh::URL_ENV.to_string(), format!("https://127.0.0.1:{}", self.addr.port())),
            (crate::pvesh::FINGERPRINT_ENV.to_string(), self.fingerprint.clone()),
            (crate::pvesh::ROOT_ENV.to_string(), secret),
        ]
    }

    /// Every answer comes this much later (the serving thread sleeps before it handles the request,
    /// without holding the double's state, so concurrent requests overlap as on a real server).
    pub fn set_latency(&self, latency: Duration) {
        self.model.lock().unwrap_or_else(PoisonError::into_inner).latency = latency;
    }

    /// Each new connection costs this much before its TLS handshake (none unless set), as TCP and
    /// TLS round trips cost on a real cluster, so that keeping connections alive shows.
    pub fn set_connection_delay(&self, delay: Duration) {
        self.server.set_connection_delay(delay);
    }

    /// How many connections clients have opened to the double.
    pub fn connections(&self) -> usize {
        self.server.connections()
    }

    /// Injects a fault for the next matching requests (after those injected before it).
    pub fn inject(&self, fault: Fault) {
        self.model.lock().unwrap_or_else(PoisonError::into_inner).faults.push(fault);
    }

    /// How many uses of injected faults are still to come.
    pub fn pending_faults(&self) -> u32 {
        self.model.lock().unwrap_or_else(PoisonError::into_inner).faults.iter().map(|f| f.times).sum()
    }

    /// Adds a node to the cluster (the double starts with one, `pve1`). Unknown nodes are refused
    /// as Proxmox refuses them: 500 `hostname lookup '<node>' failed - ...`.
    pub fn add_node(&self, name: &str) {
        let mut model = self.model.lock().unwrap_or_else(PoisonError::into_inner);
        if !model.nodes.iter().any(|n| n == name) {
            model.nodes.push(name.to_string());
        }
    }

    /// Takes a node down (it stays in the cluster, listed `offline`; the node channel cannot
    /// reach it).
    pub fn set_offline(&self, name: &str) {
        self.model.lock().unwrap_or_else(PoisonError::into_inner).offline.insert(name.to_string());
    }

    /// Marks a double that is sent invalid requests on purpose: its requests are kept out of the
    /// request log of `PHOENIX_PVE_REQUEST_LOG` (what it wrote already is removed).
    pub fn expect_refusals(&self) {
        if let Some(file) = self.log.lock().unwrap_or_else(PoisonError::into_inner).take() {
            let _ = std::fs::remove_file(file);
        }
    }

    /// How long each task runs before it stops.
    pub fn set_task_duration(&self, duration: std::time::Duration) {
        self.model.lock().unwrap_or_else(PoisonError::into_inner).task_duration = duration;
    }

    /// Locks a container as a task of `kind` would (`backup`, say) for `duration`: its
    /// configuration shows `lock: <kind>` and edits are refused with `CT is locked (<kind>)`.
    pub fn lock_guest(&self, id: u32, kind: &str, duration: std::time::Duration) {
        let mut model = self.model.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(g) = model.guests.get_mut(&id) {
            g.lock = Some((kind.to_string(), std::time::Instant::now() + duration));
        }
    }

    /// Adds a storage of another type than a directory (`lvm`, `lvmthin`, `rbd`; on every node):
    /// what it holds is `content`, and whether container volumes on it take snapshots, and
    /// whether it is shared between the nodes (`rbd`, `nfs`, ...), follow from its type.
    pub fn add_storage(&self, name: &str, kind: &str, content: &str) {
        self.model
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .storages
            .insert(name.into(), Storage::new(kind, None, content));
    }

    /// Adds a directory storage (on every node), not shared.
    pub fn add_dir_storage(&self, name: &str, path: &str, content: &str) {
        self.model
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .storages
            .insert(name.into(), Storage::new("dir", Some(path), content));
    }

    /// Configures a storage `shared 1` (an LVM volume group on a SAN, a directory every node
    /// mounts): its volumes are the same on every node.
    pub fn share_storage(&self, name: &str) {
        if let Some(s) = self.model.lock().unwrap_or_else(PoisonError::into_inner).storages.get_mut(name) {
            s.shared = true;
        }
    }

    /// Makes the next task fail with this exit status and log.
    pub fn fail_next_task(&self, exitstatus: &str, log: &[&str]) {
        self.model.lock().unwrap_or_else(PoisonError::into_inner).fail_next =
            Some((exitstatus.to_string(), log.iter().map(|l| (*l).to_string()).collect()));
    }

    /// Gives root@pam two-factor authentication: a password login answers with a TFA challenge
    /// (`NeedTFA`) and a ticket good for nothing else.
    pub fn require_root_tfa(&self) {
        self.model.lock().unwrap_or_else(PoisonError::into_inner).root_tfa = true;
    }

    /// Grants privileges on `path` as an ACL with `--propagate 0` (or one from a pool) does:
    /// `/access/permissions` lists them with the value `0`.
    pub fn set_privileges_without_propagation(&self, path: &str, privileges: &[&str]) {
        self.set_privileges(path, privileges);
        self.model.lock().unwrap_or_else(PoisonError::into_inner).inventory.not_propagated.insert(path.into());
    }

    /// Grants exactly these privileges on `path` (replacing what it had; none removes it).
    pub fn set_privileges(&self, path: &str, privileges: &[&str]) {
        let mut model = self.model.lock().unwrap_or_else(PoisonError::into_inner);
        model.inventory.not_propagated.remove(path);
        if privileges.is_empty() {
            model.inventory.privileges.remove(path);
        } else {
            model.inventory.privileges.insert(path.into(), privileges.iter().map(|p| (*p).to_string()).collect());
        }
    }

    /// Removes a bridge from every node.
    pub fn remove_bridge(&self, name: &str) {
        self.model.lock().unwrap_or_else(PoisonError::into_inner).inventory.bridges.remove(name);
    }

    /// Adds an SDN VNet in `zone` to every node: a bridge guests attach to, listed by
    /// `GET /nodes/{node}/network` only with `type=any_bridge` (and `vnet`, and on 9.x
    /// `include_sdn`), its ACL path `/sdn/zones/<zone>/<name>`.
    pub fn add_vnet(&self, name: &str, zone: &str) {
        self.model.lock().unwrap_or_else(PoisonError::into_inner).inventory.vnets.insert(name.into(), zone.into());
    }

    /// Volume IDs of the templates on the storages.
    pub fn templates(&self) -> Vec<String> {
        self.model.lock().unwrap_or_else(PoisonError::into_inner).inventory.templates.iter().cloned().collect()
    }

    /// Tickets are accepted this long after they are issued (two hours unless set).
    pub fn set_ticket_lifetime(&self, lifetime: Duration) {
        self.model.lock().unwrap_or_else(PoisonError::into_inner).tickets.lifetime = lifetime;
    }

    /// How many `root@pam` tickets were issued: (logins with the password, renewals with a ticket).
    pub fn ticket_logins(&self) -> (u32, u32) {
        let model = self.model.lock().unwrap_or_else(PoisonError::into_inner);
        (model.tickets.logins, model.tickets.renewals)
    }

    /// Makes a directory on the nodes (a bind-mount source that exists before Phoenix runs).
    pub fn add_host_dir(&self, path: &str) {
        self.model.lock().unwrap_or_else(PoisonError::into_inner).host_dirs.insert(path.into(), "0:0".into());
    }

    /// Gives a node's file (`/etc/subuid`, `/etc/subgid`) these contents, as `cat` on the node
    /// shows them; containers started there may map only the host IDs root's lines allow.
    pub fn set_node_file(&self, node: &str, path: &str, contents: &str) {
        self.model
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .node_files
            .insert((node.to_string(), path.to_string()), contents.to_string());
    }

    /// The owner of a directory of the nodes, if it exists.
    pub fn host_dir(&self, path: &str) -> Option<String> {
        self.model.lock().unwrap_or_else(PoisonError::into_inner).host_dirs.get(path).cloned()
    }

    /// The nodes as the node channel reaches them (commands, `pct`, the conf files).
    pub fn node_channel(&self) -> crate::node::NodeDouble {
        crate::node::NodeDouble { model: self.model.clone(), version: self.version }
    }

    /// Sets the device nodes a node has (`/dev/nvidia0`, `/dev/nvidiactl`, ...).
    pub fn set_devices(&self, node: &str, devices: &[&str]) {
        self.model
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .devices
            .insert(node.to_string(), devices.iter().map(|d| (*d).to_string()).collect());
    }

    /// A container's configuration file as the node shows it.
    pub fn conf_file(&self, id: u32) -> Option<String> {
        self.model.lock().unwrap_or_else(PoisonError::into_inner).guests.get(&id).map(crate::node::render)
    }

    /// The live description of a guest (container or VM): `None` when it has none, or the guest
    /// does not exist.
    pub fn description(&self, id: u32) -> Option<String> {
        let model = self.model.lock().unwrap_or_else(PoisonError::into_inner);
        let config = model.guests.get(&id).map(|g| &g.config).or_else(|| model.vms.vms.get(&id).map(|v| &v.config))?;
        config.get("description").cloned()
    }

    /// For each task a status request found stopped: how long after its end that was — how soon
    /// the client noticed it had finished.
    pub fn task_detection_delays(&self) -> Vec<std::time::Duration> {
        let model = self.model.lock().unwrap_or_else(PoisonError::into_inner);
        model
            .tasks
            .values()
            .filter_map(|t| t.seen_stopped.map(|seen| seen.saturating_duration_since(t.started + t.duration)))
            .collect()
    }

    /// Puts a disk image on a storage, as `download-url` with `content=import` would: a volume
    /// (`<storage>:import/<file>`) of `size` bytes that VMs can import their disk from.
    pub fn add_image(&self, volume: &str, size: u64) {
        self.model.lock().unwrap_or_else(PoisonError::into_inner).vms.images.insert(volume.into(), size);
    }

    /// Lets `download-url` fetch `url`: a file of `size` bytes (other URLs are not found).
    pub fn add_download(&self, url: &str, size: u64) {
        self.model.lock().unwrap_or_else(PoisonError::into_inner).downloads.insert(url.into(), size);
    }

    /// The disk images on the storages (`<storage>:import/<file>`).
    pub fn images(&self) -> Vec<String> {
        self.model.lock().unwrap_or_else(PoisonError::into_inner).vms.images.keys().cloned().collect()
    }

    /// The guest agent of a VM answers this long after the VM starts (boot time).
    pub fn set_agent_delay(&self, delay: Duration) {
        self.model.lock().unwrap_or_else(PoisonError::into_inner).vms.agent_delay = delay;
    }

    /// The guest agent of this VM never answers (it is not installed in the image).
    pub fn silence_agent(&self, id: u32) {
        self.model.lock().unwrap_or_else(PoisonError::into_inner).vms.silent.insert(id);
    }

    /// A program run through the guest agent of VM `id` exits with `exitcode` and prints `stdout`.
    pub fn set_agent_output(&self, id: u32, program: &str, exitcode: i64, stdout: &str) {
        self.model
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .vms
            .outputs
            .insert((id, program.to_string()), (exitcode, stdout.to_string()));
    }

    /// A VM's configuration as Proxmox stores it (`cipassword` unmasked).
    pub fn vm_config(&self, id: u32) -> Option<BTreeMap<String, String>> {
        self.model.lock().unwrap_or_else(PoisonError::into_inner).vms.vms.get(&id).map(|v| v.config.clone())
    }

    /// A VM's snapshots' names.
    pub fn vm_snapshots(&self, id: u32) -> Vec<String> {
        let model = self.model.lock().unwrap_or_else(PoisonError::into_inner);
        model.vms.vms.get(&id).map(|v| v.snapshots.keys().cloned().collect()).unwrap_or_default()
    }

    /// Whether a VM exists and runs: `None` when it does not exist.
    pub fn vm_running(&self, id: u32) -> Option<bool> {
        self.model.lock().unwrap_or_else(PoisonError::into_inner).vms.vms.get(&id).map(|v| v.started.is_some())
    }

    /// The commands run through a VM's guest agent, in order, each as its argument vector.
    pub fn agent_commands(&self, id: u32) -> Vec<Vec<String>> {
        let model = self.model.lock().unwrap_or_else(PoisonError::into_inner);
        model.vms.vms.get(&id).map(|v| v.commands.clone()).unwrap_or_default()
    }

    /// A file inside a VM as the guest agent wrote it, with the mode and owner (`uid:gid`) given
    /// to it.
    pub fn vm_file(&self, id: u32, path: &str) -> Option<VmFile> {
        let model = self.model.lock().unwrap_or_else(PoisonError::into_inner);
        let vm = model.vms.vms.get(&id)?;
        Some((vm.files.get(path)?.clone(), vm.modes.get(path).cloned()))
    }

    /// The cluster firewall's rules, in order: each rule's fields as stored (`enable` as `0`/`1`).
    pub fn cluster_firewall_rules(&self) -> Vec<BTreeMap<String, String>> {
        self.model.lock().unwrap_or_else(PoisonError::into_inner).cluster_firewall.rules.clone()
    }

    /// The cluster firewall's options as stored (booleans as `0`/`1`).
    pub fn cluster_firewall_options(&self) -> BTreeMap<String, String> {
        self.model.lock().unwrap_or_else(PoisonError::into_inner).cluster_firewall.options.clone()
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.recorded.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// Decoded form parameters; the values of a key given several times (an array) are joined with
/// [`crate::schema::REPEATED`].
fn params(s: &str) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for p in s.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        let (k, v) = (form_decode(k), form_decode(v));
        match out.get_mut(&k) {
            Some(values) => {
                values.push(crate::schema::REPEATED);
                values.push_str(&v);
            }
            None => {
                out.insert(k, v);
            }
        }
    }
    out
}

/// Where a served request is recorded: in memory, and in the request log when there is one.
struct Recorder {
    version: PveVersion,
    recorded: Arc<Mutex<Vec<Recorded>>>,
    log: Arc<Mutex<Option<PathBuf>>>,
}

impl Recorder {
    fn record(&self, request: Recorded) {
        let mut recorded = self.recorded.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(file) = self.log.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
            let line = json!({
                "version": self.version.name(),
                "method": request.method,
                "path": request.path,
                "params": request.params,
                "status": request.status,
            });
            let written = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(file)
                .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
            if let Err(e) = written {
                // The connection then closes unanswered: the test sees it, not only the check.
                panic!("cannot append to the request log {}: {e}", file.display());
            }
        }
        recorded.push(request);
    }
}

/// Answers one request (`None`: the connection is closed without an answer).
fn serve(
    served: Served,
    version: PveVersion,
    credentials: &Credentials,
    recorder: &Recorder,
    model: &Mutex<Model>,
) -> Option<Reply> {
    let headers = &served.headers;
    let (path, query) = served.path_and_query();
    let path = path.strip_prefix("/api2/json").unwrap_or(path).to_string();
    let mut ps = params(query);
    ps.extend(params(&String::from_utf8_lossy(&served.body)));
    let token = headers
        .get("authorization")
        .and_then(|a| a.strip_prefix("PVEAPIToken="))
        .and_then(|t| t.rsplit_once('='))
        .map(|(id, secret)| (id.to_string(), secret.to_string()));
    let ticket = headers
        .get("cookie")
        .and_then(|c| c.split(';').find_map(|c| c.trim().strip_prefix("PVEAuthCookie=")))
        .map(str::to_string);
    let method = served.method.clone();
    let request = Request {
        method: &method,
        path: &path,
        params: &ps,
        token: token.as_ref(),
        ticket: ticket.as_deref(),
        csrf: headers.get("csrfpreventiontoken").map(String::as_str),
        local_root: headers.get(&crate::pvesh::ROOT_HEADER.to_ascii_lowercase()).map(String::as_str),
    };
    let latency = model.lock().unwrap_or_else(PoisonError::into_inner).latency;
    if !latency.is_zero() {
        std::thread::sleep(latency);
    }
    let mut delivery = Delivery::Answer;
    let (status, reason, answer) = respond(version, credentials, model, &request, &mut delivery);
    let answered = delivery == Delivery::Answer;
    let status = if delivery == Delivery::DropRequest { 0 } else { status };
    recorder.record(Recorded { method, path, params: ps, token: token.is_some(), status, answered });
    answered.then(|| Reply::new(status, &reason, answer))
}

/// A decoded request.
struct Request<'a> {
    method: &'a str,
    path: &'a str,
    params: &'a BTreeMap<String, String>,
    token: Option<&'a (String, String)>,
    ticket: Option<&'a str>,
    csrf: Option<&'a str>,
    /// The local-root secret, sent by the `pvesh` stand-in.
    local_root: Option<&'a str>,
}

/// Whether the request comes from the node's own root through `pvesh` (the stand-in, with the
/// double's secret): `root@pam` without a token or a ticket.
fn local_root(model: &Mutex<Model>, req: &Request<'_>) -> bool {
    req.token.is_none()
        && req.local_root.is_some_and(|s| s == model.lock().unwrap_or_else(PoisonError::into_inner).local_root)
}

/// The reason `pveproxy` gives for a node it cannot resolve (a node that is not in the cluster):
/// `PVE::Tools::get_ip_from_hostname`'s error, answered 500.
/// Whether a request creates or changes a privileged container: a create's `unprivileged` (the
/// version's default when it is left out: 0 on 8.x, 1 on 9.x), or the container's own setting.
fn privileged_target(version: PveVersion, model: &Mutex<Model>, path: &str, ps: &BTreeMap<String, String>) -> bool {
    let segs: Vec<&str> = path.split('/').collect();
    match segs.as_slice() {
        ["", "nodes", _, "lxc"] => match ps.get("unprivileged").map(String::as_str) {
            Some(v) => v == "0",
            None => version == PveVersion::V8,
        },
        ["", "nodes", _, "lxc", id, "config"] => {
            let model = model.lock().unwrap_or_else(PoisonError::into_inner);
            id.parse::<u32>()
                .ok()
                .and_then(|id| model.guests.get(&id))
                .is_some_and(|g| g.config.get("unprivileged").map(String::as_str) != Some("1"))
        }
        _ => false,
    }
}

/// What a token lacks for a storage's content, a create, a configuration change or a clone, as
/// Proxmox checks it before anything changes (`PATH, PRIVILEGE`, the words of `Permission check
/// failed (…)`): `Datastore.Audit` or `Datastore.AllocateSpace` on a storage whose content is
/// listed (`API2/Storage/Content.pm::index`), `SDN.Use` on the bridge of each `net[n]` the
/// request sets (`check_vnet_access`; for a container's change also on the bridge it replaces),
/// and for a clone (pve-container's and qemu-server's `clone_vm`) `Datastore.AllocateSpace` on
/// each storage of the source's volumes (or on the `storage` asked for) and `SDN.Use` on each of
/// the source's bridges.
fn acl_refusal(model: &Model, method: &str, segs: &[&str], ps: &BTreeMap<String, String>) -> Option<String> {
    let inventory = &model.inventory;
    if let ("GET", ["", "nodes", _, "storage", storage, "content"]) = (method, segs) {
        let sight = crate::inventory::STORAGE_SIGHT.join("|");
        return (!inventory.sees_storage(storage)).then(|| format!("/storage/{storage}, {sight}"));
    }
    let bridges = |config: &BTreeMap<String, String>| -> Vec<String> {
        config
            .iter()
            .filter(|(k, _)| {
                k.strip_prefix("net").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
            .filter_map(|(_, net)| {
                let field = |key: &str| net.split(',').find_map(|kv| kv.strip_prefix(key));
                Some(inventory.bridge_path(field("bridge=")?, field("tag=")))
            })
            .collect()
    };
    let (storages, bridges) = match (method, segs) {
        ("POST", ["", "nodes", _, "lxc" | "qemu"]) | ("POST" | "PUT", ["", "nodes", _, "qemu", _, "config"]) => {
            (Vec::new(), bridges(ps))
        }
        // A container's interface changed needs `SDN.Use` on its old bridge too
        // (`check_ct_modify_config_perm`).
        ("PUT", ["", "nodes", _, "lxc", vmid, "config"]) => {
            let old: BTreeMap<String, String> = match model.guests.get(&vmid.parse::<u32>().ok()?) {
                Some(guest) => guest
                    .config
                    .iter()
                    .filter(|(k, _)| ps.contains_key(*k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                None => BTreeMap::new(),
            };
            (Vec::new(), bridges(&old).into_iter().chain(bridges(ps)).collect())
        }
        ("POST", ["", "nodes", _, kind, vmid, "clone"]) => {
            let source = vmid.parse::<u32>().ok()?;
            let lxc = *kind == "lxc";
            let config = if lxc { &model.guests.get(&source)?.config } else { &model.vms.vms.get(&source)?.config };
            let volume = |k: &str| if lxc { crate::guests::container_volume(k) } else { crate::qemu::is_disk(k) };
            let storages = match ps.get("storage") {
                Some(storage) => vec![storage.clone()],
                None => config
                    .iter()
                    .filter(|(k, v)| volume(k) && !v.contains("media=cdrom"))
                    .filter_map(|(_, v)| v.split(',').next()?.split_once(':').map(|(sid, _)| sid.to_string()))
                    .collect(),
            };
            (storages, bridges(config))
        }
        _ => return None,
    };
    let space = storages
        .into_iter()
        .map(|sid| format!("/storage/{sid}"))
        .find(|path| !inventory.grants(path, &["Datastore.AllocateSpace"]))
        .map(|path| format!("{path}, Datastore.AllocateSpace"));
    space.or_else(|| {
        bridges.into_iter().find(|path| !inventory.grants(path, &["SDN.Use"])).map(|p| format!("{p}, SDN.Use"))
    })
}

fn unknown_node(node: &str) -> (u16, String, Value) {
    (
        500,
        format!("hostname lookup '{node}' failed - failed to get address info for: {node}: Name or service not known"),
        json!({ "data": null }),
    )
}

fn respond(
    version: PveVersion,
    credentials: &Credentials,
    model: &Mutex<Model>,
    req: &Request<'_>,
    delivery: &mut Delivery,
) -> (u16, String, Value) {
    let (method, path, ps, token, ticket, csrf) = (req.method, req.path, req.params, req.token, req.ticket, req.csrf);
    let token_ok = token.is_some_and(|t| *t == credentials.token);
    let login = method == "POST" && path == "/access/ticket";
    let ticket_check =
        ticket.map(|t| model.lock().unwrap_or_else(PoisonError::into_inner).tickets.check(t, method, csrf));
    let ticket_ok = ticket_check == Some(Ok(()));
    let local_root = local_root(model, req);
    if !token_ok && !ticket_ok && !login && !local_root {
        let reason = match ticket_check {
            Some(Err(refusal)) => refusal,
            _ => "authentication failure",
        };
        return (401, reason.to_string(), json!({ "data": null }));
    }
    let as_root = !token_ok && (ticket_ok || local_root);
    let values: BTreeMap<String, Value> = crate::schema::form_values(ps);
    let endpoint = match ApiSchema::get(version).check(method, path, &values) {
        Ok(e) => e,
        Err(errors) => {
            let map: serde_json::Map<String, Value> = errors
                .into_iter()
                .map(|e| (e.param.unwrap_or_else(|| "request".into()), Value::String(e.message)))
                .collect();
            return (400, "Parameter verification failed.".to_string(), json!({ "data": null, "errors": map }));
        }
    };
    if login {
        let mut model = model.lock().unwrap_or_else(PoisonError::into_inner);
        let field = |k: &str| ps.get(k).map(String::as_str).unwrap_or_default();
        let tfa = model.root_tfa;
        return match model.tickets.login(
            field("username"),
            ps.get("realm").map(String::as_str),
            field("password"),
            &credentials.root_password,
        ) {
            // As Proxmox answers a user with TFA: a half ticket, good only for the second factor.
            Some((_, csrf)) if tfa => (
                200,
                "OK".to_string(),
                json!({ "data": { "username": "root@pam", "ticket": "PVE:root@pam:00000000::!tfa!challenge", "CSRFPreventionToken": csrf, "NeedTFA": 1 } }),
            ),
            Some((ticket, csrf)) => (
                200,
                "OK".to_string(),
                json!({ "data": { "username": "root@pam", "ticket": ticket, "CSRFPreventionToken": csrf, "clustername": "phoenix" } }),
            ),
            None => (401, "authentication failure".to_string(), json!({ "data": null })),
        };
    }
    if token_ok && !endpoint.allowtoken {
        return (403, "Permission check failed (API tokens may not call this)".to_string(), json!({ "data": null }));
    }
    if token_ok && path.contains("/lxc") {
        if ps.keys().any(|k| k.starts_with("dev") && k[3..].bytes().all(|b| b.is_ascii_digit())) {
            return (
                403,
                "Permission check failed (configuring device passthrough is only allowed for root@pam)".to_string(),
                json!({ "data": null }),
            );
        }
        if ps.iter().any(|(k, v)| k.starts_with("mp") && v.split(',').next().is_some_and(|vol| vol.starts_with('/'))) {
            return (
                403,
                "Permission check failed (only root can set bind or device mount points)".to_string(),
                json!({ "data": null }),
            );
        }
        if ps.get("features").is_some_and(|f| f.split(',').any(|kv| !kv.starts_with("nesting="))) {
            return (
                403,
                "Permission check failed (changing feature flags (except nesting) is only allowed for root@pam)"
                    .to_string(),
                json!({ "data": null }),
            );
        }
        // Any feature flag of a privileged container, nesting included (`check_ct_modify_config_perm`).
        if ps.contains_key("features") && privileged_target(version, model, path, ps) {
            return (
                403,
                "Permission check failed (changing feature flags for privileged container is only allowed for root@pam)"
                    .to_string(),
                json!({ "data": null }),
            );
        }
    }
    if token_ok
        && path.contains("/qemu")
        && let Some(reason) = crate::qemu::refused_to_token(ps)
    {
        return (403, format!("Permission check failed ({reason})"), json!({ "data": null }));
    }
    let segs: Vec<&str> = path.split('/').collect();
    let mut model = model.lock().unwrap_or_else(PoisonError::into_inner);
    if let ["", "nodes", node, ..] = segs.as_slice()
        && !model.nodes.iter().any(|n| n == node)
    {
        return unknown_node(node);
    }
    // pveproxy hands a request for another node to that node's proxy: a node that is down never
    // answers, and the proxy says so with its own status.
    if let ["", "nodes", node, _, ..] = segs.as_slice()
        && model.offline.contains(*node)
    {
        return (
            595,
            "Errors during connection establishment, proxy handler: No route to host".to_string(),
            json!({ "data": null }),
        );
    }
    match model.take_fault(method, path) {
        Some(FaultKind::LockTimeout) => {
            let id = match segs.as_slice() {
                ["", "nodes", _, "lxc" | "qemu", vmid, ..] => (*vmid).to_string(),
                _ => ps.get("vmid").cloned().unwrap_or_default(),
            };
            return (
                500,
                format!("can't lock file '/run/lock/lxc/pve-config-{id}.lock' - got timeout"),
                json!({ "data": null }),
            );
        }
        Some(FaultKind::Status(status)) => {
            let reason = match status {
                502 => "Bad Gateway",
                503 => "Service Unavailable",
                595 => "Errors during connection establishment, proxy handshake: Connection refused",
                _ => "Injected fault",
            };
            return (status, reason.to_string(), json!({ "data": null }));
        }
        Some(FaultKind::DropRequest) => {
            *delivery = Delivery::DropRequest;
            return (0, String::new(), Value::Null);
        }
        Some(FaultKind::DropAnswer) => *delivery = Delivery::DropAnswer,
        None => {}
    }
    if method == "GET" && path == "/version" {
        let v = version.name();
        return (200, "OK".to_string(), json!({ "data": { "version": v, "release": &v[..3], "repoid": "double" } }));
    }
    if as_root && method == "GET" && path == "/access/permissions" {
        // root@pam has every privilege, whatever the ACLs say.
        let all: serde_json::Map<String, Value> =
            crate::inventory::ALL_PRIVILEGES.iter().map(|p| ((*p).to_string(), json!(1))).collect();
        return (200, "OK".to_string(), json!({ "data": { "/": all } }));
    }
    if !as_root && let Some(refusal) = acl_refusal(&model, method, &segs, ps) {
        return (403, format!("Permission check failed ({refusal})"), json!({ "data": null }));
    }
    let user = token.map_or("root@pam".to_string(), |t| t.0.clone());
    if let ("GET", ["", "nodes", _, "storage", storage, "content"]) = (method, segs.as_slice())
        && ps.get("content").is_some_and(|c| c == "import")
    {
        return (200, "OK".to_string(), json!({ "data": model.vms.content(storage) }));
    }
    if let ("POST", ["", "nodes", node, "storage", storage, "download-url"]) = (method, segs.as_slice()) {
        return model.download_url(node, storage, ps, &user);
    }
    let mut inventory = std::mem::take(&mut model.inventory);
    let answer =
        inventory.handle(method, &segs, ps, as_root, &mut |node, kind, id| model.start_task(node, kind, id, &user));
    model.inventory = inventory;
    if let Some(answer) = answer {
        return answer;
    }
    // A node's tasks, newest first: those still running with `source=active`, those of one guest
    // with `vmid`.
    if let ("GET", ["", "nodes", node, "tasks"]) = (method, segs.as_slice()) {
        let active = ps.get("source").is_some_and(|s| s == "active");
        let vmid = ps.get("vmid");
        let mut rows: Vec<(std::time::Instant, Value)> = model
            .tasks
            .iter()
            .filter(|(upid, _)| upid.split(':').nth(1) == Some(*node))
            .filter(|(upid, _)| vmid.is_none_or(|v| upid.split(':').nth(6) == Some(v.as_str())))
            .filter(|(_, t)| !active || t.started.elapsed() < t.duration)
            .map(|(upid, t)| {
                let parts: Vec<&str> = upid.split(':').collect();
                let running = t.started.elapsed() < t.duration;
                let mut row = json!({
                    "upid": upid, "node": node, "type": parts.get(5), "id": parts.get(6), "user": parts.get(7),
                    "pid": u64::from_str_radix(parts.get(2).unwrap_or(&"0"), 16).unwrap_or(0),
                    "pstart": u64::from_str_radix(parts.get(3).unwrap_or(&"0"), 16).unwrap_or(0),
                    "starttime": u64::from_str_radix(parts.get(4).unwrap_or(&"0"), 16).unwrap_or(0),
                });
                if !running {
                    row["status"] = json!(t.exitstatus);
                }
                (t.started, row)
            })
            .collect();
        rows.sort_by_key(|(started, _)| std::cmp::Reverse(*started));
        return (200, "OK".to_string(), json!({ "data": rows.into_iter().map(|(_, r)| r).collect::<Vec<_>>() }));
    }
    if let ["", "nodes", _, "tasks", upid, what] = segs.as_slice() {
        let Some(task) = model.tasks.get(*upid) else {
            return (500, "no such task".to_string(), json!({ "data": null }));
        };
        let done = task.started.elapsed() >= task.duration;
        let task = task.clone();
        if done && what == &"status" {
            let now = std::time::Instant::now();
            if let Some(t) = model.tasks.get_mut(*upid) {
                t.seen_stopped.get_or_insert(now);
            }
        }
        return match *what {
            "status" if done => (
                200,
                "OK".to_string(),
                json!({ "data": { "status": "stopped", "exitstatus": task.exitstatus, "upid": upid } }),
            ),
            "status" => (200, "OK".to_string(), json!({ "data": { "status": "running", "upid": upid } })),
            _ => {
                let lines: Vec<Value> =
                    task.log.iter().enumerate().map(|(n, t)| json!({ "n": n + 1, "t": t })).collect();
                (200, "OK".to_string(), json!({ "data": lines }))
            }
        };
    }
    // A node's storages with their status: no `path` (pve-storage's `storage_info` has none);
    // the storage configuration (`GET /storage`) has it. Both list only the storages the caller
    // holds `Datastore.Audit` or `Datastore.AllocateSpace` on (`API2/Storage/Status.pm::index`,
    // `API2/Storage/Config.pm::index`).
    if let ("GET", ["", "nodes", _, "storage"]) = (method, segs.as_slice()) {
        let list: Vec<Value> = model
            .storages
            .iter()
            .filter(|(name, _)| as_root || model.inventory.sees_storage(name))
            .map(|(name, s)| json!({ "storage": name, "type": s.kind, "content": s.content, "active": 1, "enabled": 1, "shared": u8::from(s.shared) }))
            .collect();
        return (200, "OK".to_string(), json!({ "data": list }));
    }
    if let ("GET", ["", "storage"]) = (method, segs.as_slice()) {
        let list: Vec<Value> = model
            .storages
            .iter()
            .filter(|(name, _)| as_root || model.inventory.sees_storage(name))
            .map(|(name, s)| {
                let mut entry =
                    json!({ "storage": name, "type": s.kind, "content": s.content, "digest": "0".repeat(40) });
                if let Some(path) = &s.path {
                    entry["path"] = json!(path);
                }
                if s.shared {
                    entry["shared"] = json!(1);
                }
                entry
            })
            .collect();
        return (200, "OK".to_string(), json!({ "data": list }));
    }
    if let ("GET", ["", "nodes"]) = (method, segs.as_slice()) {
        let list: Vec<Value> = model
            .nodes
            .iter()
            .map(|n| {
                let status = if model.offline.contains(n) { "offline" } else { "online" };
                json!({ "node": n, "id": format!("node/{n}"), "type": "node", "status": status, "level": "",
                        "ssl_fingerprint": model.fingerprint, "cpu": 0.02, "maxcpu": 16, "mem": 4_294_967_296_u64,
                        "maxmem": 68_719_476_736_u64, "uptime": 86_400 })
            })
            .collect();
        return (200, "OK".to_string(), json!({ "data": list }));
    }
    if let ("GET", ["", "cluster", "status"]) = (method, segs.as_slice()) {
        return (200, "OK".to_string(), json!({ "data": cluster_status(&model.nodes) }));
    }
    if let ["", "cluster", "firewall", rest @ ..] = segs.as_slice()
        && let Some(answer) =
            crate::firewall::handle(crate::firewall::Scope::Cluster, &mut model.cluster_firewall, method, rest, ps)
    {
        return answer;
    }
    if let Some(target) = ps.get("target")
        && !model.nodes.contains(target)
    {
        return (500, format!("no such cluster node '{target}'"), json!({ "data": null }));
    }
    let answer = model.handle(method, &segs, ps, as_root, &user);
    if let ("GET", ["", "cluster", "resources"], (200, reason, body)) = (method, segs.as_slice(), &answer) {
        return (
            200,
            reason.clone(),
            json!({ "data": resources(&model.nodes, &model.offline, ps.get("type"), &body["data"]) }),
        );
    }
    answer
}

/// `GET /cluster/status` as Proxmox answers it: a node that is not in a cluster shows itself
/// only (`nodeid` 0); a cluster adds its own entry first, and every node has its `nodeid`.
fn cluster_status(nodes: &[String]) -> Value {
    let clustered = nodes.len() > 1;
    let mut list = Vec::new();
    if clustered {
        list.push(json!({ "type": "cluster", "id": "cluster", "name": "phoenix", "nodes": nodes.len(),
                          "quorate": 1, "version": nodes.len() }));
    }
    for (i, n) in nodes.iter().enumerate() {
        list.push(json!({ "type": "node", "id": format!("node/{n}"), "name": n, "ip": format!("10.0.0.{}", i + 1),
                          "local": u8::from(i == 0), "nodeid": if clustered { i + 1 } else { 0 },
                          "online": 1, "level": "" }));
    }
    Value::Array(list)
}

/// `GET /cluster/resources`: the guests (`guests`, a list) for `type=vm`, the nodes for
/// `type=node`, both without a type (the double keeps no other kind of resource).
fn resources(nodes: &[String], offline: &BTreeSet<String>, kind: Option<&String>, guests: &Value) -> Value {
    let node_rows = || {
        nodes.iter().map(|n| {
            let status = if offline.contains(n) { "offline" } else { "online" };
            json!({ "id": format!("node/{n}"), "type": "node", "node": n, "status": status })
        })
    };
    // The guests of a node that is down are still in the cluster's list (pmxcfs keeps it), with
    // nothing known of their state.
    let guest_rows = || {
        guests.as_array().into_iter().flatten().cloned().map(|mut g| {
            if g["node"].as_str().is_some_and(|n| offline.contains(n)) {
                g["status"] = json!("unknown");
            }
            g
        })
    };
    match kind.map(String::as_str) {
        Some("vm") => Value::Array(guest_rows().collect()),
        Some("node") => Value::Array(node_rows().collect()),
        Some(_) => Value::Array(Vec::new()),
        None => Value::Array(guest_rows().chain(node_rows()).collect()),
    }
}
