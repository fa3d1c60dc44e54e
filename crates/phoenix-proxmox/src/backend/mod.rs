//! The Proxmox VE backend: the [`ProxmoxBackend`], what containers and VMs share (configuration
//! reads, tasks waited for, guests' locks waited out, the record and the managed mark in the
//! description, snapshots, templates, commands on the node), and the [`Backend`] implementation,
//! which finds a guest's kind once and hands the call to that kind's operations (`GuestOps`):
//! [`containers`] or [`vms`]. Those two use what is here and never each other; the checks made
//! before anything changes are in [`preflight`].

pub mod containers;
pub mod preflight;
pub mod vms;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use phoenix_backend::{
    Backend, BackendError, Capabilities, ChangeEffect, CreateRequest, Delivery, ExecOutput, ExecRequest, Field,
    FieldChange, FilePush, GuestConfig, GuestId, GuestKind, NoRoute, Observation, ObserveScope, ObservedGuest,
    PowerState, Value as PhoenixValue,
};
use serde_json::Value;

use self::containers::Containers;
use self::vms::Vms;
use crate::node::channel::NodeChannel;
use crate::node::commands;
use crate::record::{MANAGED_MARK, marked_description};
use crate::transport::api::ApiClient;
use crate::transport::decode::{text, truthy};
use crate::transport::endpoint::{Call, Guest};
use crate::transport::task::{Poll, timeout_for, wait};
use crate::transport::upid::Upid;

/// How many guests are observed at once (each is a few requests in a row).
const OBSERVE_THREADS: usize = 8;

/// How long an edit waits for a container's lock (a backup, say) to clear.
const LOCK_WAIT: Duration = Duration::from_secs(600);

/// Where unprivileged containers' IDs start on a Proxmox host (users and groups).
const ID_BASE: (u32, u32) = (100_000, 100_000);

/// The Proxmox backend.
pub struct ProxmoxBackend {
    api: ApiClient,
    node: String,
    channel: Option<Arc<dyn NodeChannel>>,
    /// A `root@pam` connection (a ticket), used only for what Proxmox reserves to root@pam;
    /// without it, those settings go through `pct` on the node channel.
    root: Option<ApiClient>,
    poll: Poll,
    /// Files of the nodes read over the node channel (node, path), read once per run.
    node_files: Mutex<BTreeMap<(String, String), String>>,
    /// What the cluster lists (storages, bridges, templates), read once per run.
    listings: Mutex<BTreeMap<String, Value>>,
    /// Nodes other than `node` found online and reached over the node channel in this run.
    reached: Mutex<BTreeSet<String>>,
    /// What containers need between calls (see [`containers`]).
    containers: containers::ContainerState,
    /// Each guest's kind, node and power as this run last saw them.
    seen: Mutex<BTreeMap<GuestId, Seen>>,
    /// Whether this run has listed the cluster: a guest the listing did not show, and this run
    /// has not created since, is no guest (of either kind) to it.
    listed: std::sync::atomic::AtomicBool,
    /// What VMs need between calls (see [`vms`]).
    vms: vms::VmState,
}

/// A guest as this run last saw it: its kind, node and power.
#[derive(Debug, Clone)]
struct Seen {
    kind: GuestKind,
    node: String,
    running: bool,
}

/// A snapshot refused because the guest's storage cannot take one (a directory storage holding a
/// raw disk, say: Proxmox's task dies with "snapshot feature is not available") is what the
/// backend cannot do for this guest, not a failure: [`phoenix_backend::ErrorKind::Unsupported`], so that an update
/// runs without its safety snapshot.
fn storage_without_snapshots(e: BackendError) -> BackendError {
    let said = |t: &str| t.contains("snapshot feature is not available");
    if said(&e.message) || e.detail.as_deref().is_some_and(said) {
        BackendError { kind: phoenix_backend::ErrorKind::Unsupported, ..e }
    } else {
        e
    }
}

/// Whether a key of a VM's configuration is a drive (`scsi0`, `virtio1`, `efidisk0`, ...), disks,
/// CD-ROMs and cloud-init drives alike.
fn is_drive(key: &str) -> bool {
    let bus = key.trim_end_matches(|c: char| c.is_ascii_digit());
    bus.len() < key.len() && ["scsi", "virtio", "sata", "ide", "efidisk", "tpmstate"].contains(&bus)
}

/// Whether a key is `prefix` followed by a number (`dev0`, `mp12`).
fn numbered(key: &str, prefix: &str) -> bool {
    key.strip_prefix(prefix).is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

impl ProxmoxBackend {
    /// A backend on `node` through `api`, with the node channel where one is configured.
    pub fn new(api: ApiClient, node: &str, channel: Option<Arc<dyn NodeChannel>>) -> ProxmoxBackend {
        ProxmoxBackend {
            api,
            node: node.to_string(),
            channel,
            root: None,
            poll: Poll::default(),
            node_files: Mutex::default(),
            listings: Mutex::default(),
            reached: Mutex::default(),
            containers: containers::ContainerState::default(),
            seen: Mutex::default(),
            listed: std::sync::atomic::AtomicBool::default(),
            vms: vms::VmState::default(),
        }
    }

    /// Sends what Proxmox reserves to `root@pam` (device passthrough, bind mounts, feature flags
    /// other than nesting, clones of such containers) through `root`, a `root@pam` ticket,
    /// instead of `pct` on the node channel.
    pub fn with_root_api(mut self, root: ApiClient) -> ProxmoxBackend {
        self.root = Some(root);
        self
    }

    /// Whether the API connection acts as `root@pam` (`pvesh` on the node): then what Proxmox
    /// reserves to `root@pam` goes through the API like everything else, not through `pct` on
    /// the node.
    pub fn api_is_root(&self) -> bool {
        self.api.is_root()
    }

    /// Polls tasks this way (tests poll fast).
    pub fn with_poll(mut self, poll: Poll) -> ProxmoxBackend {
        self.poll = poll;
        self
    }

    /// Records what `/cluster/resources` (`type=vm`) shows of every guest.
    fn remember(&self, list: &Value) {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        self.listed.store(true, std::sync::atomic::Ordering::Relaxed);
        for r in list.as_array().into_iter().flatten() {
            let kind = match r["type"].as_str() {
                Some("qemu") => GuestKind::Vm,
                Some("lxc") => GuestKind::Lxc,
                _ => continue,
            };
            let (Some(id), Some(node)) = (r["vmid"].as_u64().and_then(|i| u32::try_from(i).ok()), r["node"].as_str())
            else {
                continue;
            };
            seen.insert(id, Seen { kind, node: node.to_string(), running: r["status"] == "running" });
        }
    }

    /// Records a guest this run creates.
    fn remember_created(&self, id: GuestId, kind: GuestKind, node: &str) {
        let seen = Seen { kind, node: node.to_string(), running: false };
        self.seen.lock().unwrap_or_else(PoisonError::into_inner).insert(id, seen);
    }

    /// A guest as this run last saw it.
    fn last_seen(&self, id: GuestId) -> Option<Seen> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner).get(&id).cloned()
    }

    /// A guest's kind: as this run saw it (a guest its listing did not show is none, and taken
    /// for a container, whose operations say it does not exist), else as the cluster lists it now.
    fn kind(&self, id: GuestId) -> Result<GuestKind, BackendError> {
        if let Some(s) = self.last_seen(id) {
            return Ok(s.kind);
        }
        if self.listed.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(GuestKind::Lxc);
        }
        let list = self.api.call(&Call::Resources, &[("type", "vm".into())])?;
        self.remember(&list);
        Ok(self.last_seen(id).map_or(GuestKind::Lxc, |s| s.kind))
    }

    /// The operations of guests of `kind`.
    fn guests(&self, kind: GuestKind) -> Box<dyn GuestOps + '_> {
        match kind {
            GuestKind::Lxc => Box::new(Containers(self)),
            GuestKind::Vm => Box::new(Vms(self)),
        }
    }

    /// The operations of the guest `id`, by its kind (see [`ProxmoxBackend::kind`]).
    fn ops(&self, id: GuestId) -> Result<Box<dyn GuestOps + '_>, BackendError> {
        Ok(self.guests(self.kind(id)?))
    }

    /// The node a guest of `kind` is on and whether it runs. A guest this run has seen is asked
    /// on its node (`status/current`, a few bytes, however large the cluster); one its listing of
    /// the cluster did not show, and that it has not created since, is none; one it has not
    /// listed, or that is no longer where it was (migrated, destroyed), is looked for in the
    /// cluster's resources, which are listed then.
    fn locate(&self, id: GuestId, kind: GuestKind) -> Result<Option<(String, bool)>, BackendError> {
        if let Some(seen) = self.last_seen(id).filter(|s| s.kind == kind)
            && let Ok(status) = self.api.call(&Call::Status(Guest { node: &seen.node, kind, id }), &[])
        {
            let running = status["status"] == "running";
            if let Some(s) = self.seen.lock().unwrap_or_else(PoisonError::into_inner).get_mut(&id) {
                s.running = running;
            }
            return Ok(Some((seen.node, running)));
        }
        if self.last_seen(id).is_none() && self.listed.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(None);
        }
        let list = self.api.call(&Call::Resources, &[("type", "vm".into())])?;
        self.remember(&list);
        let tree = if kind == GuestKind::Vm { "qemu" } else { "lxc" };
        Ok(list
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["vmid"].as_u64() == Some(u64::from(id)) && r["type"] == tree)
            .map(|r| (r["node"].as_str().unwrap_or_default().to_string(), r["status"] == "running")))
    }

    /// A listing of the cluster (`GET` without parameters), read once per run.
    fn cached_get(&self, call: Call<'_>) -> Result<Value, BackendError> {
        self.cached_query(call, &[])
    }

    /// [`ProxmoxBackend::cached_get`] with query parameters, the answer kept for them.
    fn cached_query(&self, call: Call<'_>, params: &[(&str, String)]) -> Result<Value, BackendError> {
        let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let key = if query.is_empty() { call.path() } else { format!("{}?{}", call.path(), query.join("&")) };
        if let Some(v) = self.listings.lock().unwrap_or_else(PoisonError::into_inner).get(&key) {
            return Ok(v.clone());
        }
        let v = self.api.call(&call, params)?;
        self.listings.lock().unwrap_or_else(PoisonError::into_inner).insert(key, v.clone());
        Ok(v)
    }

    /// Forgets a listing that changed.
    fn forget(&self, call: Call<'_>) {
        self.listings.lock().unwrap_or_else(PoisonError::into_inner).remove(&call.path());
    }

    /// Makes a call that starts a task, and waits for it.
    fn task(&self, call: Call<'_>, params: &[(&str, String)]) -> Result<(), BackendError> {
        self.task_through(&self.api, call, params)
    }

    /// Makes a call about `guest` that starts a task once no other task holds the guest's lock
    /// (see [`ProxmoxBackend::unlocked_config_of`]), and waits for it: Proxmox refuses to start,
    /// stop, resize, snapshot or destroy a locked guest (`CT is locked (backup)`) instead of
    /// waiting.
    fn unlocked_task(&self, guest: Guest<'_>, call: Call<'_>, params: &[(&str, String)]) -> Result<(), BackendError> {
        self.unlocked_config_of(guest)?;
        self.task(call, params)
    }

    /// Makes a call that starts a task through `api`, and waits for it.
    fn task_through(&self, api: &ApiClient, call: Call<'_>, params: &[(&str, String)]) -> Result<(), BackendError> {
        let data = api.call(&call, params)?;
        let upid: Upid = data.as_str().and_then(|u| u.parse().ok()).ok_or_else(|| {
            BackendError::permanent(
                Delivery::MaybeApplied,
                format!("{} {}: no task ID in the answer", call.method(), call.path()),
            )
        })?;
        let timeout = timeout_for(&upid.kind);
        wait(api, &upid, self.poll, timeout).map(|_| ())
    }

    /// A guest's configuration once no task holds its lock (a backup, a migration, a snapshot:
    /// Proxmox shows it as `lock`), polled as tasks are, for at most [`LOCK_WAIT`].
    fn unlocked_config_of(&self, guest: Guest<'_>) -> Result<serde_json::Map<String, Value>, BackendError> {
        let started = std::time::Instant::now();
        let mut pause = self.poll.first;
        loop {
            let config = self.config_of(guest)?;
            let Some(lock) = config.get("lock").and_then(text) else { return Ok(config) };
            if started.elapsed() >= LOCK_WAIT {
                let what = if guest.kind == GuestKind::Vm { "VM" } else { "container" };
                return Err(BackendError::transient(
                    Delivery::NotSent,
                    format!("{what} {} is still locked ({lock}) after {} s", guest.id, LOCK_WAIT.as_secs()),
                ));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(self.poll.max);
        }
    }

    /// A guest's configuration as Proxmox shows it.
    fn config_of(&self, guest: Guest<'_>) -> Result<serde_json::Map<String, Value>, BackendError> {
        Ok(self.api.call(&Call::Config(guest), &[])?.as_object().cloned().unwrap_or_default())
    }

    /// The volume ID of a file given as a host path on `node`: `<storage>:<content>/<file>` for
    /// the directory storage with content type `content` whose `<path>/<dir>` holds it. Paths
    /// are in the storage configuration (`GET /storage`; a node's storage list has none), where
    /// a storage restricted to other nodes (`nodes`) or disabled does not count.
    fn volume_of_path(&self, node: &str, path: &str, dir: &str, content: &str) -> Result<Option<String>, BackendError> {
        let Some((parent, file)) = path.rsplit_once('/') else { return Ok(None) };
        Ok(self
            .storage_paths(node)?
            .into_iter()
            .find(|(_, (p, types))| {
                format!("{}/{dir}", p.trim_end_matches('/')) == parent && types.iter().any(|c| c == content)
            })
            .map(|(storage, _)| format!("{storage}:{content}/{file}")))
    }

    /// The file-based storages `node` may use, each with its directory and content types, from
    /// the storage configuration (`GET /storage`: a node's own list shows no paths); those
    /// restricted to other nodes (`nodes`) or disabled are left out.
    fn storage_paths(&self, node: &str) -> Result<BTreeMap<String, (String, Vec<String>)>, BackendError> {
        let storages = self.cached_get(Call::StorageConfig)?;
        Ok(storages
            .as_array()
            .into_iter()
            .flatten()
            .filter(|st| st["nodes"].as_str().is_none_or(|n| n.split(',').any(|n| n.trim() == node)))
            .filter(|st| !st.get("disable").is_some_and(truthy))
            .filter_map(|st| {
                let path = st["path"].as_str().filter(|p| !p.is_empty())?;
                let types = st["content"].as_str().unwrap_or_default().split(',').map(str::to_string).collect();
                Some((st["storage"].as_str()?.to_string(), (path.to_string(), types)))
            })
            .collect())
    }

    /// The volume ID of a template given as a host path: `<storage>:vztmpl/<file>` for the
    /// directory storage of the node whose `template/cache` holds it.
    fn template_volume(&self, node: &str, path: &str) -> Result<String, BackendError> {
        self.volume_of_path(node, path, "template/cache", "vztmpl")?.ok_or_else(|| {
                BackendError::permanent(Delivery::NotSent, format!("no storage of node {node} holds the template {path}"))
                    .with_detail("register its directory as a storage with content `vztmpl`, or give the template's volume ID (storage:vztmpl/NAME)")
            })
    }

    /// The snapshots of a guest: each one's name and description.
    fn snapshots(&self, guest: Guest<'_>) -> Result<Vec<(String, String)>, BackendError> {
        Ok(self
            .api
            .call(&Call::Snapshots(guest), &[])?
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| {
                let name = s["name"].as_str().filter(|n| *n != "current")?;
                Some((name.to_string(), text(&s["description"]).unwrap_or_default()))
            })
            .collect())
    }

    /// A guest as observed, from its configuration as Proxmox shows it (`config`) and as Phoenix's
    /// fields (`fields`): whether Phoenix made it, its customization record, and where `scope`
    /// asks for them its snapshots and its firewall.
    fn observed(
        &self,
        guest: Guest<'_>,
        config: &serde_json::Map<String, Value>,
        mut fields: GuestConfig,
        running: bool,
        scope: &ObserveScope,
    ) -> Result<ObservedGuest, BackendError> {
        let description = config.get("description").and_then(text).unwrap_or_default();
        let managed = description.contains(MANAGED_MARK);
        let snapshots: BTreeSet<String> = if scope.snapshots_of(guest.id) {
            self.snapshots(guest)?.into_iter().map(|(name, _)| name).collect()
        } else {
            BTreeSet::new()
        };
        if scope.firewall_of(guest.id) {
            crate::firewall::observe(&self.api, guest, &mut fields)?;
        }
        let half_made = match config.get("lock").and_then(text) {
            Some(lock) if managed && matches!(lock.as_str(), "create" | "clone") => self.creation_died(guest, &lock)?,
            _ => None,
        };
        Ok(ObservedGuest {
            id: guest.id,
            kind: guest.kind,
            node: Some(guest.node.to_string()),
            power: if running { PowerState::Running } else { PowerState::Stopped },
            config: fields,
            snapshots,
            managed,
            template: config.get("template").is_some_and(truthy),
            half_made,
            unreachable: None,
            markers: crate::record::read(&description),
        })
    }

    /// Whether the creation of a guest of Phoenix's that Proxmox still shows locked `create` (or
    /// `clone`) died: no task of it runs on its node any more (a run killed while its task ran
    /// finds the task still running, and the next step waits for it). What to say, if so.
    fn creation_died(&self, guest: Guest<'_>, lock: &str) -> Result<Option<String>, BackendError> {
        let tasks =
            self.api.call(&Call::Tasks(guest.node), &[("vmid", guest.id.to_string()), ("source", "active".into())])?;
        if tasks.as_array().is_some_and(|t| !t.is_empty()) {
            return Ok(None);
        }
        Ok(Some(format!(
            "{} was left half-made: its creation died (Proxmox shows it locked `{lock}`, and no task of it runs on {})",
            guest.id, guest.node
        )))
    }

    /// Adds the managed mark to a guest's description (see [`marked_description`]), with the
    /// configuration's `digest`, once no task holds its lock; nothing else of it changes.
    fn mark_managed(&self, guest: Guest<'_>) -> Result<(), BackendError> {
        let old = self.unlocked_config_of(guest)?.get("description").and_then(text);
        if old.as_deref().is_some_and(|d| d.contains(MANAGED_MARK)) {
            return Ok(());
        }
        self.put_config(&self.api, guest, &[("description".into(), marked_description(old.as_deref()))], &[])
    }

    /// Where a guest is and what it is, from this run's record or the cluster's resources.
    fn whereabouts(&self, id: GuestId) -> Result<(String, GuestKind), BackendError> {
        let kind = self.kind(id)?;
        let what = if kind == GuestKind::Vm { "VM" } else { "container" };
        let (node, _) =
            self.locate(id, kind)?.ok_or_else(|| BackendError::not_found(format!("{what} {id} does not exist")))?;
        Ok((node, kind))
    }

    /// The node of a guest of `kind` as this run last saw it (listed, observed or created), with
    /// no request; else where the cluster shows it now (`None`: nowhere).
    fn node_seen(&self, id: GuestId, kind: GuestKind) -> Result<Option<String>, BackendError> {
        match self.last_seen(id).filter(|s| s.kind == kind) {
            Some(s) => Ok(Some(s.node)),
            None => Ok(self.locate(id, kind)?.map(|(node, _)| node)),
        }
    }

    /// Puts `block` as the record of the guest's description (`None`: takes it out), once no
    /// task holds its lock, with the configuration's `digest`; nothing when it is already so.
    fn set_record(&self, guest: Guest<'_>, block: Option<&str>) -> Result<(), BackendError> {
        let config = self.unlocked_config_of(guest)?;
        let old = config.get("description").and_then(text).unwrap_or_default();
        let new = crate::record::with(&old, block);
        if new == old {
            return Ok(());
        }
        crate::record::check_length(guest.id, &new)?;
        let digest = config.get("digest").and_then(text).unwrap_or_default();
        self.api.call(&Call::SetConfig(guest), &[("description", new), ("digest", digest)]).map(|_| ())
    }

    /// Takes a snapshot, once no task holds the guest's lock, with the guest's record at this
    /// moment in the snapshot's description (see [`crate::record`]).
    fn take_snapshot(&self, guest: Guest<'_>, name: &str) -> Result<(), BackendError> {
        let live = self.unlocked_config_of(guest)?.get("description").and_then(text).unwrap_or_default();
        let params = [("snapname", name.to_string()), ("description", crate::record::snapshot_description(&live))];
        self.task(Call::TakeSnapshot(guest), &params)
    }

    /// After a rollback to `snapshot`: the guest's record is the snapshot's (Proxmox keeps the
    /// live description through a rollback); none where the snapshot has none (one Phoenix did
    /// not take, or an older Phoenix did), so that the record inside the guest, rolled back with
    /// its files, counts.
    fn restore_record(&self, guest: Guest<'_>, snapshot: &str) -> Result<(), BackendError> {
        let block = self.snapshot_record(guest, snapshot)?;
        self.set_record(guest, block.as_deref())
    }

    /// The record a snapshot's description keeps, as a block for a guest's description; `None`
    /// where it keeps none.
    fn snapshot_record(&self, guest: Guest<'_>, snapshot: &str) -> Result<Option<String>, BackendError> {
        let record = self
            .snapshots(guest)?
            .into_iter()
            .find(|(name, _)| name == snapshot)
            .and_then(|(_, description)| crate::record::read(&description));
        record.map(|r| crate::record::block(&r)).transpose()
    }

    /// The description a clone of `source` gets: the mark below what the source's says (`old`),
    /// with the record of the snapshot it is cloned from (none where that snapshot has none: the
    /// record inside the clone, copied with its files, counts), or the source's own.
    fn clone_description(&self, source: Guest<'_>, old: Option<&str>, snapshot: &str) -> Result<String, BackendError> {
        let marked = marked_description(old);
        if snapshot.is_empty() {
            return Ok(marked);
        }
        let block = self.snapshot_record(source, snapshot)?;
        let description = crate::record::with(&marked, block.as_deref());
        crate::record::check_length(source.id, &description)?;
        Ok(description)
    }

    /// Makes a stopped guest a template (`POST .../template`) and waits until Proxmox shows it
    /// as one: `template: 1`, no lock, and for a VM no disk left under its own `vm-<id>-disk-`
    /// name. Proxmox answers before the conversion is done (a container's `template: 1` is
    /// written by the task that converts its volumes, a VM's disks become `base-` volumes in a
    /// task of their own), and a clone made meanwhile would copy a guest half converted.
    /// `disks_left`: whether the configuration still shows disks to convert (a VM's).
    fn convert_to_template(
        &self,
        guest: Guest<'_>,
        disks_left: impl Fn(&serde_json::Map<String, Value>) -> bool,
    ) -> Result<(), BackendError> {
        let data = self.api.call(&Call::MakeTemplate(guest), &[])?;
        if let Some(upid) = data.as_str().and_then(|u| u.parse::<Upid>().ok()) {
            wait(&self.api, &upid, self.poll, timeout_for(&upid.kind))?;
        }
        let what = if guest.kind == GuestKind::Vm { "VM" } else { "container" };
        let started = std::time::Instant::now();
        let mut pause = self.poll.first;
        loop {
            let config = self.config_of(guest)?;
            if config.get("template").is_some_and(truthy) && config.get("lock").is_none() && !disks_left(&config) {
                return Ok(());
            }
            if started.elapsed() >= LOCK_WAIT {
                return Err(BackendError::transient(
                    Delivery::MaybeApplied,
                    format!(
                        "{what} {} is not a template yet, {} s after it was made one",
                        guest.id,
                        LOCK_WAIT.as_secs()
                    ),
                ));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(self.poll.max);
        }
    }

    fn channel(&self) -> Result<&dyn NodeChannel, BackendError> {
        self.channel.as_deref().ok_or_else(|| {
            BackendError::unsupported("this needs the node channel (`backend.ssh`, or Phoenix on the node)")
        })
    }

    /// Runs a command on a node; a non-zero exit is an error carrying its stderr, transient where
    /// it met a lock (`CT is locked (disk)`, a lock file that timed out) or a file that changed
    /// since it was read, as the same refusals are over the API.
    fn on_node(&self, node: &str, argv: &[String], input: Option<&[u8]>) -> Result<Vec<u8>, BackendError> {
        let out = self
            .channel()?
            .run(node, argv, input, Duration::from_secs(300))
            .map_err(|e| BackendError::transient(Delivery::MaybeApplied, e.to_string()))?;
        if out.status == 0 {
            return Ok(out.stdout);
        }
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        let what = argv.iter().take(3).cloned().collect::<Vec<_>>().join(" ");
        let error = if stderr.contains("got timeout") || stderr.contains("is locked") || out.status == commands::CHANGED
        {
            BackendError::transient(Delivery::MaybeApplied, format!("`{what}` on {node}: {stderr}"))
        } else {
            BackendError::permanent(
                Delivery::MaybeApplied,
                format!("`{what}` on {node} failed ({}): {stderr}", out.status),
            )
        };
        Err(error)
    }

    /// `PUT config` through `api` with the configuration's current `digest` (nothing when there
    /// is nothing to change).
    fn put_config(
        &self,
        api: &ApiClient,
        guest: Guest<'_>,
        params: &[(String, String)],
        delete: &[String],
    ) -> Result<(), BackendError> {
        if params.is_empty() && delete.is_empty() {
            return Ok(());
        }
        let digest = self.unlocked_config_of(guest)?.get("digest").and_then(text).unwrap_or_default();
        let mut all: Vec<(&str, String)> = params.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        if !delete.is_empty() {
            all.push(("delete", delete.join(",")));
        }
        all.push(("digest", digest));
        api.call(&Call::SetConfig(guest), &all).map(|_| ())
    }
}

/// A guest `/cluster/resources` lists on `node` with its status unknown: the node is down (or
/// out of the cluster's quorum), so nothing of the guest can be read or changed.
fn unreachable(id: GuestId, kind: GuestKind, node: &str) -> ObservedGuest {
    ObservedGuest {
        id,
        kind,
        node: Some(node.to_string()),
        power: PowerState::Stopped,
        config: GuestConfig::default(),
        snapshots: BTreeSet::new(),
        managed: false,
        template: false,
        half_made: None,
        unreachable: Some(format!("it is on node {node}, which Proxmox lists as unreachable (its status unknown)")),
        markers: None,
    }
}

/// What containers and VMs each do their own way. The [`Backend`] methods find a guest's kind
/// once and hand the call to that kind's operations: [`containers::Containers`] or [`vms::Vms`].
trait GuestOps {
    /// One guest on `node` as the backend shows it, with what `scope` asks of it.
    fn observe(
        &self,
        node: &str,
        id: GuestId,
        running: bool,
        scope: &ObserveScope,
    ) -> Result<ObservedGuest, BackendError>;
    /// Creates the guest (see [`Backend::create`]).
    fn create(&self, request: &CreateRequest) -> Result<(), BackendError>;
    /// What creating the guest needs from the cluster (see [`Backend::check_create`]).
    fn check_create(&self, request: &CreateRequest) -> Result<(), BackendError>;
    /// Changes the guest's fields (see [`Backend::update_config`]).
    fn update(&self, id: GuestId, changes: &[FieldChange]) -> Result<(), BackendError>;
    /// Starts the guest.
    fn start(&self, id: GuestId) -> Result<(), BackendError>;
    /// Shuts the guest down.
    fn stop(&self, id: GuestId) -> Result<(), BackendError>;
    /// Takes a snapshot.
    fn snapshot(&self, id: GuestId, name: &str) -> Result<(), BackendError>;
    /// Rolls the guest back to a snapshot.
    fn rollback(&self, id: GuestId, name: &str) -> Result<(), BackendError>;
    /// Deletes a snapshot.
    fn delete_snapshot(&self, id: GuestId, name: &str) -> Result<(), BackendError>;
    /// Whether guests configured so can take snapshots (see [`Backend::check_snapshot`]).
    fn check_snapshot(&self, config: &GuestConfig) -> Result<(), BackendError>;
    /// Makes the stopped guest a template.
    fn make_template(&self, id: GuestId) -> Result<(), BackendError>;
    /// Runs a command inside the guest.
    fn exec(&self, id: GuestId, request: &ExecRequest) -> Result<ExecOutput, BackendError>;
    /// Reads a file inside the guest; `None` where it is missing.
    fn read_file(&self, id: GuestId, path: &str) -> Result<Option<Vec<u8>>, BackendError>;
    /// Writes a file inside the guest.
    fn push_file(&self, id: GuestId, file: &FilePush) -> Result<(), BackendError>;
    /// Destroys the guest.
    fn destroy(&self, id: GuestId) -> Result<(), BackendError>;
    /// The guest's addresses.
    fn addresses(&self, id: GuestId) -> Result<Vec<std::net::IpAddr>, BackendError>;
    /// Marks a guest Phoenix did not create as Phoenix's.
    fn adopt(&self, id: GuestId) -> Result<(), BackendError>;
    /// When a change of a field takes effect.
    fn change_effect(&self, field: &Field) -> ChangeEffect;
}

impl Backend for ProxmoxBackend {
    fn name(&self) -> &str {
        "proxmox"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            kinds: BTreeSet::from([GuestKind::Lxc, GuestKind::Vm]),
            clone: true,
            snapshots: true,
            templates: true,
            gpu: self.channel.is_some(),
            concurrent_clones: false,
            probe_at_plan: false,
            fields: Field::CONTAINER.iter().chain(Field::VM).cloned().collect(),
        }
    }

    fn observe(&self) -> Result<Observation, BackendError> {
        self.observe_scoped(&ObserveScope::everything())
    }

    fn observe_scoped(&self, scope: &ObserveScope) -> Result<Observation, BackendError> {
        let list = self.api.call(&Call::Resources, &[("type", "vm".into())])?;
        self.remember(&list);
        let mut guests = BTreeMap::new();
        let mut rows: Vec<(GuestId, String, bool, bool)> = Vec::new();
        for r in list.as_array().into_iter().flatten().filter(|r| r["type"] == "lxc" || r["type"] == "qemu") {
            let (Some(id), Some(node)) = (r["vmid"].as_u64().and_then(|i| u32::try_from(i).ok()), r["node"].as_str())
            else {
                continue;
            };
            let kind = if r["type"] == "qemu" { GuestKind::Vm } else { GuestKind::Lxc };
            // A guest of a node that is down is listed with its status unknown, and every request
            // for it fails: it is shown as out of reach, and the others are read as usual.
            if r["status"] == "unknown" {
                guests.insert(id, unreachable(id, kind, node));
                continue;
            }
            rows.push((id, node.to_string(), r["status"] == "running", kind == GuestKind::Vm));
        }
        // Each guest is one request or a few in a row: read them for several guests at once.
        let next = std::sync::atomic::AtomicUsize::new(0);
        let found: Mutex<Vec<Result<(GuestId, ObservedGuest), BackendError>>> = Mutex::default();
        std::thread::scope(|threads| {
            for _ in 0..OBSERVE_THREADS.min(rows.len()) {
                threads.spawn(|| {
                    while let Some((id, node, running, vm)) =
                        rows.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
                    {
                        let kind = if *vm { GuestKind::Vm } else { GuestKind::Lxc };
                        let guest = self.guests(kind).observe(node, *id, *running, scope);
                        found.lock().unwrap_or_else(PoisonError::into_inner).push(guest.map(|g| (*id, g)));
                    }
                });
            }
        });
        for guest in found.into_inner().unwrap_or_else(PoisonError::into_inner) {
            let (id, guest) = guest?;
            guests.insert(id, guest);
        }
        Ok(Observation { guests })
    }

    fn observe_guest(&self, id: GuestId) -> Result<Option<ObservedGuest>, BackendError> {
        let kind = self.kind(id)?;
        match self.locate(id, kind)? {
            Some((node, running)) => {
                self.guests(kind).observe(&node, id, running, &ObserveScope::everything()).map(Some)
            }
            None => Ok(None),
        }
    }

    fn create(&self, request: &CreateRequest) -> Result<(), BackendError> {
        self.guests(request.kind).create(request)
    }

    fn check_create(&self, request: &CreateRequest) -> Result<(), BackendError> {
        if let Some(node) = request.node.as_deref().filter(|n| *n != self.node) {
            self.check_node(node)?;
        }
        self.guests(request.kind).check_create(request)
    }

    fn update_config(&self, id: GuestId, changes: &[FieldChange]) -> Result<(), BackendError> {
        self.ops(id)?.update(id, changes)
    }

    fn start(&self, id: GuestId) -> Result<(), BackendError> {
        self.ops(id)?.start(id)
    }

    fn stop(&self, id: GuestId) -> Result<(), BackendError> {
        self.ops(id)?.stop(id)
    }

    fn snapshot(&self, id: GuestId, name: &str) -> Result<(), BackendError> {
        self.ops(id)?.snapshot(id, name).map_err(storage_without_snapshots)
    }

    /// `POST .../snapshot/{snapname}/rollback`, its task waited for. Proxmox stops a running
    /// guest for it; `start` has the task start it again.
    fn rollback(&self, id: GuestId, name: &str) -> Result<(), BackendError> {
        self.ops(id)?.rollback(id, name)
    }

    /// `DELETE .../snapshot/{snapname}`, its task waited for.
    fn delete_snapshot(&self, id: GuestId, name: &str) -> Result<(), BackendError> {
        self.ops(id)?.delete_snapshot(id, name)
    }

    /// A container's mount points must all take snapshots (see
    /// `ProxmoxBackend::check_container_snapshot`); VMs are not checked.
    fn check_snapshot(&self, kind: GuestKind, config: &GuestConfig) -> Result<(), BackendError> {
        self.guests(kind).check_snapshot(config)
    }

    fn make_template(&self, id: GuestId) -> Result<(), BackendError> {
        self.ops(id)?.make_template(id)
    }

    fn exec(&self, id: GuestId, request: &ExecRequest) -> Result<ExecOutput, BackendError> {
        self.ops(id)?.exec(id, request)
    }

    fn read_file(&self, id: GuestId, path: &str) -> Result<Option<Vec<u8>>, BackendError> {
        self.ops(id)?.read_file(id, path)
    }

    fn push_file(&self, id: GuestId, file: &FilePush) -> Result<(), BackendError> {
        self.ops(id)?.push_file(id, file)
    }

    /// The record in the guest's description (see [`crate::record`]); for a guest of an older
    /// Phoenix, whose description has none, the file inside it.
    fn read_markers(&self, id: GuestId) -> Result<Option<Vec<u8>>, BackendError> {
        let (node, kind) = self.whereabouts(id)?;
        let config = self.config_of(Guest { node: &node, kind, id })?;
        match config.get("description").and_then(text).as_deref().and_then(crate::record::read) {
            Some(record) => Ok(Some(record)),
            None => self.read_file(id, phoenix_backend::inside::MARKERS_PATH),
        }
    }

    /// Writes the record into the guest's description (see [`crate::record`]), with the
    /// configuration's `digest`.
    fn write_markers(&self, id: GuestId, content: &[u8]) -> Result<(), BackendError> {
        let (node, kind) = self.whereabouts(id)?;
        self.set_record(Guest { node: &node, kind, id }, Some(&crate::record::block(content)?))
    }

    fn destroy(&self, id: GuestId) -> Result<(), BackendError> {
        self.ops(id)?.destroy(id)
    }

    fn addresses(&self, id: GuestId) -> Result<Vec<std::net::IpAddr>, BackendError> {
        self.ops(id)?.addresses(id)
    }

    fn change_effect_for(&self, kind: GuestKind, field: &Field) -> ChangeEffect {
        self.guests(kind).change_effect(field)
    }

    fn change_effect(&self, field: &Field) -> ChangeEffect {
        containers::change_effect(field)
    }

    /// Proxmox shows a guest's whole configuration, whoever made it: adopted, it is what it
    /// shows now.
    fn check_adopt(&self, guest: &ObservedGuest, _desired: &GuestConfig) -> Result<GuestConfig, BackendError> {
        Ok(guest.config.clone())
    }

    /// The `Managed by Phoenix.` mark in the guest's description: the only change.
    fn adopt(&self, id: GuestId, _desired: &GuestConfig) -> Result<(), BackendError> {
        self.ops(id)?.adopt(id)
    }

    fn route(
        &self,
        field: &Field,
        value: Option<&PhoenixValue>,
        guest: &GuestConfig,
    ) -> Result<Option<String>, NoRoute> {
        self.container_route(field, value, guest)
    }
}
