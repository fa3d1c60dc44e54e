//! The local LXC backend: real containers on the machine Phoenix runs on, through the `lxc-*`
//! tools. Each container lives in `<lxc_path>/<id>/` with its LXC `config`, its `rootfs/`, its
//! snapshots under `snapshots/<name>/`, and `phoenix.json`, which marks it as Phoenix's and records
//! the normalised configuration it was given. Directories without `phoenix.json` are shown (their
//! LXC configuration read back into fields, see [`foreign`]) and never touched, until adopted:
//! adoption writes `phoenix.json` and nothing else.
//!
//! Snapshots hold the root filesystem (the configuration stays the container's). A rollback
//! copies the snapshot beside `rootfs` and exchanges the two at once, so that a run killed at
//! any point leaves the container with a whole root filesystem, the old one or the restored one;
//! a deleted snapshot is renamed out of `snapshots/` at once, then removed.

mod command;
pub mod foreign;
mod fsutil;
pub mod gpu;
pub mod render;
pub mod template;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use phoenix_backend::{
    Backend, BackendError, Capabilities, ChangeEffect, CreateRequest, CreateSource, Delivery, ExecOutput, ExecRequest,
    Field, FieldChange, FilePush, GuestConfig, GuestId, GuestKind, Mount, MountSource, Observation, ObservedGuest,
    PowerState, Value,
};
use phoenix_config::model::LxcBackend as Settings;
use serde::{Deserialize, Serialize};

use crate::command::{run, tool};
use crate::render::{Cgroups, RenderContext, render};

/// How long the LXC tools may take.
const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

/// What Phoenix records next to a container it created.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    config: GuestConfig,
    snapshots: BTreeSet<String>,
    /// It is a template: stopped for good, never started again, cloned as it is.
    #[serde(default)]
    template: bool,
    /// Fields changed while the container ran that take effect only at start, with the values
    /// it still runs with (`None`: it had none). Cleared when it starts again.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", with = "phoenix_backend::fields::optional_values")]
    until_restart: BTreeMap<Field, Option<Value>>,
    /// The init process the container ran as when `until_restart` was recorded: once it runs as
    /// another (started again by hand, say), those values are what it started with no longer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    started_as: Option<u32>,
}

/// The local LXC backend.
pub struct LxcBackend {
    lxc_path: PathBuf,
    settings: Settings,
    id_base: (u32, u32),
    /// `/etc/subuid` or `/etc/subgid` where root has no range yet: one is added by
    /// [`LxcBackend::prepare_host`].
    missing_ranges: Vec<PathBuf>,
    /// Whether [`LxcBackend::prepare_host`] ran, and how it went.
    prepared: std::sync::OnceLock<Result<(), HostSetupError>>,
    cgroups: Cgroups,
    /// Serialises writes of one container's files.
    write: Mutex<()>,
    /// Time spent inside host tools, for the benchmark.
    tool_nanos: std::sync::atomic::AtomicU64,
}

/// Why the backend cannot be used; [`OpenError::hint`] says how to fix it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OpenError {
    /// The LXC tools are not installed.
    #[error("the LXC tools are not installed")]
    NoTools,
    /// A bridge of the configuration does not exist on this machine.
    #[error("bridge {host} (for {name}) does not exist on this machine")]
    NoBridge {
        /// The host's bridge.
        host: String,
        /// The bridge's name in the configuration.
        name: String,
        /// The address the configuration gives it.
        address: String,
    },
    /// Root's subordinate ID range cannot be read.
    #[error(transparent)]
    IdRange(#[from] HostSetupError),
    /// A directory above `lxc_path` is closed to the containers' mapped root.
    #[error(
        "unprivileged containers cannot reach {}: {} (mode {mode:o}) is closed to other users",
        lxc_path.display(),
        dir.display()
    )]
    ClosedDirectory {
        /// Where containers live.
        lxc_path: PathBuf,
        /// The directory above it that others cannot enter.
        dir: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

impl OpenError {
    /// How to fix it, when there is a way.
    pub fn hint(&self) -> Option<String> {
        match self {
            OpenError::NoTools => Some("install them: apt-get install lxc".into()),
            OpenError::NoBridge { host, address, .. } => Some(format!(
                "create it: ip link add {host} type bridge && ip addr add {address} dev {host} && ip link set {host} up"
            )),
            OpenError::IdRange(_) => None,
            OpenError::ClosedDirectory { dir, .. } => {
                Some(format!("chmod o+x {}, or choose another `lxc_path`", dir.display()))
            }
        }
    }
}

/// Why the host's subordinate ID ranges cannot be read, or the host made ready for containers.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HostSetupError {
    /// Root's line in `/etc/subuid` or `/etc/subgid` does not parse.
    #[error("{}: cannot read root's range {line:?}", file.display())]
    UnreadableRange {
        /// The file.
        file: PathBuf,
        /// Root's line.
        line: String,
    },
    /// Root's range could not be added.
    #[error("cannot add a subordinate ID range for root to {}: {source}", file.display())]
    AddRange {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::sync::Arc<std::io::Error>,
    },
    /// `lxc_path` could not be created.
    #[error("cannot create {}: {source}", path.display())]
    CreateDir {
        /// `lxc_path`.
        path: PathBuf,
        /// Why.
        source: std::sync::Arc<std::io::Error>,
    },
    /// `lxc_path` could not be opened to the containers' mapped root.
    #[error("cannot open {} to the containers: {source}", path.display())]
    OpenDir {
        /// `lxc_path`.
        path: PathBuf,
        /// Why.
        source: std::sync::Arc<std::io::Error>,
    },
}

impl LxcBackend {
    /// Checks the host (tools, bridges, ID ranges, the directories above `lxc_path`) and opens the
    /// backend, changing nothing: `plan` and `status` open it too. Returns what the first change
    /// will do to the host first, for the user to read (see [`LxcBackend::prepare_host`]).
    pub fn open(settings: &Settings) -> Result<(LxcBackend, Vec<String>), OpenError> {
        if command::run(&["lxc-start".into(), "--version".into()], None, Duration::from_secs(10)).is_err() {
            return Err(OpenError::NoTools);
        }
        for (name, bridge) in &settings.bridges {
            let host = bridge.host_bridge.as_deref().unwrap_or(name);
            if !Path::new("/sys/class/net").join(host).join("bridge").is_dir() {
                return Err(OpenError::NoBridge {
                    host: host.to_string(),
                    name: name.clone(),
                    address: bridge.address.clone(),
                });
            }
        }
        LxcBackend::open_with_id_files(settings, [PathBuf::from("/etc/subuid"), PathBuf::from("/etc/subgid")])
    }

    /// [`LxcBackend::open`] after its checks of the tools and bridges, with root's subordinate
    /// ranges read from `id_files` (`/etc/subuid` and `/etc/subgid` on a real host).
    fn open_with_id_files(settings: &Settings, id_files: [PathBuf; 2]) -> Result<(LxcBackend, Vec<String>), OpenError> {
        let mut notes = Vec::new();
        let mut missing_ranges = Vec::new();
        let mut base = [0u32; 2];
        for (slot, file) in base.iter_mut().zip(&id_files) {
            match subordinate_range(file)? {
                Some(start) => *slot = start,
                None => {
                    *slot = DEFAULT_RANGE.0;
                    notes.push(format!(
                        "root has no subordinate ID range in {}: root:{}:{} is added there before the first \
                         container is created or started, so that unprivileged containers have IDs to map",
                        file.display(),
                        DEFAULT_RANGE.0,
                        DEFAULT_RANGE.1
                    ));
                    missing_ranges.push(file.clone());
                }
            }
        }
        // The LXC tools know a container by the path they are given: one spelling for one
        // directory, or a container started under one would look stopped under another.
        let lxc_path = canonical_path(Path::new(settings.lxc_path.as_deref().unwrap_or("/var/lib/lxc")));
        match lxc_path_mode(&lxc_path) {
            Some(mode) if mode != LXC_PATH_MODE => notes.push(format!(
                "{} has mode {mode:o}: it is set to {LXC_PATH_MODE:o} before the first container is created there, \
                 so that the mapped root of unprivileged containers can reach it",
                lxc_path.display()
            )),
            _ => {}
        }
        for dir in lxc_path.ancestors().skip(1) {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir).map(|m| m.permissions().mode()).unwrap_or(0o755);
            if mode & 0o001 == 0 {
                return Err(OpenError::ClosedDirectory {
                    lxc_path: lxc_path.clone(),
                    dir: dir.to_path_buf(),
                    mode: mode & 0o777,
                });
            }
        }
        Ok((
            LxcBackend {
                lxc_path,
                settings: settings.clone(),
                id_base: (base[0], base[1]),
                missing_ranges,
                prepared: std::sync::OnceLock::new(),
                cgroups: Cgroups::detect(),
                write: Mutex::new(()),
                tool_nanos: Default::default(),
            },
            notes,
        ))
    }

    /// Makes the host ready for containers, once, before the first one is created or started:
    /// root's subordinate ID ranges added where [`LxcBackend::open`] found none, and `lxc_path`
    /// created and opened to the containers' mapped root (mode 0755). Opening the backend does
    /// none of this, so that reading commands change nothing.
    fn prepare_host(&self) -> Result<(), BackendError> {
        self.prepared
            .get_or_init(|| {
                for file in &self.missing_ranges {
                    add_subordinate_range(file)?;
                }
                std::fs::create_dir_all(&self.lxc_path).map_err(|e| HostSetupError::CreateDir {
                    path: self.lxc_path.clone(),
                    source: std::sync::Arc::new(e),
                })?;
                if lxc_path_mode(&self.lxc_path) != Some(LXC_PATH_MODE) {
                    set_mode(&self.lxc_path, LXC_PATH_MODE).map_err(|e| HostSetupError::OpenDir {
                        path: self.lxc_path.clone(),
                        source: std::sync::Arc::new(e),
                    })?;
                }
                Ok(())
            })
            .clone()
            .map_err(|e| BackendError::permanent(Delivery::NotSent, e.to_string()))
    }

    /// Total time spent inside the `lxc-*` tools, `tar` and `cp` since the backend was opened.
    pub fn tool_time(&self) -> Duration {
        Duration::from_nanos(self.tool_nanos.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Runs a host tool, counting the time spent in it.
    fn tool(&self, argv: &[&str], timeout: Duration) -> Result<ExecOutput, BackendError> {
        let t = std::time::Instant::now();
        let r = tool(argv, timeout);
        self.tool_nanos.fetch_add(t.elapsed().as_nanos() as u64, std::sync::atomic::Ordering::Relaxed);
        r
    }

    /// Copies a root filesystem tree to `to` as it is (owners, modes, links, devices), sharing
    /// blocks where the filesystem can (`--reflink=auto`); `to` must not hold a tree yet.
    fn copy_tree(&self, from: &Path, to: &Path) -> Result<(), BackendError> {
        let (from, to) = (from.display().to_string(), to.display().to_string());
        self.tool(&["cp", "-a", "-T", "--reflink=auto", &from, &to], COPY_TIMEOUT).map(|_| ())
    }

    fn dir(&self, id: GuestId) -> PathBuf {
        self.lxc_path.join(id.to_string())
    }

    fn rootfs(&self, id: GuestId) -> PathBuf {
        self.dir(id).join("rootfs")
    }

    fn path_arg(&self) -> String {
        self.lxc_path.display().to_string()
    }

    fn state(&self, id: GuestId) -> Option<State> {
        let text = std::fs::read_to_string(self.dir(id).join("phoenix.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn save(&self, id: GuestId, state: &State) -> Result<(), BackendError> {
        save_state(&self.dir(id), state).map_err(|e| io_error(id, "record the container's state", e))
    }

    /// Whether `<lxc_path>/<id>` is what is left of a container of Phoenix's whose root
    /// filesystem was removed (by hand: Phoenix never does).
    fn remains(&self, id: GuestId) -> bool {
        self.state(id).is_some()
            && !self.rootfs(id).exists()
            && !self.dir(id).join(ROOTFS_ASIDE).exists()
            && self.snapshot_dirs(id).is_empty()
    }

    /// Where a container is built before it is renamed into place.
    fn staging(&self, id: GuestId) -> PathBuf {
        self.lxc_path.join(format!("{STAGING_PREFIX}{id}"))
    }

    /// A snapshot's directory, for a name that is one (no `/`, not hidden, not empty).
    fn snapshot_dir(&self, id: GuestId, name: &str) -> Result<PathBuf, BackendError> {
        if name.is_empty() || name.starts_with('.') || name.contains('/') {
            return Err(BackendError::permanent(
                Delivery::NotSent,
                format!("container {id}: {name:?} is not a snapshot name"),
            ));
        }
        Ok(self.dir(id).join("snapshots").join(name))
    }

    /// Puts back the root filesystem a rollback killed between its two renames left aside (on a
    /// filesystem that cannot exchange them at once): the container is as it was before it. One
    /// left aside after the restored one took its place is removed.
    fn recover_rootfs(&self, id: GuestId) -> Result<(), BackendError> {
        let (rootfs, aside) = (self.rootfs(id), self.dir(id).join(ROOTFS_ASIDE));
        if !rootfs.exists() && aside.is_dir() {
            std::fs::rename(&aside, &rootfs).map_err(|e| io_error(id, "put its root filesystem back", e))?;
        } else if aside.exists() {
            // Replaced already: what is left of the old one.
            let _ = std::fs::remove_dir_all(&aside);
        }
        Ok(())
    }

    /// Puts the tree at `dir/ROLLBACK_STAGING` in place of the root filesystem, which ends up at
    /// `dir/ROLLBACK_STAGING` (to be removed): exchanged at once where the filesystem can,
    /// otherwise moved aside and back by two renames that [`LxcBackend::recover_rootfs`] undoes
    /// if a run dies between them.
    fn swap_rootfs(&self, id: GuestId) -> Result<(), BackendError> {
        let dir = self.dir(id);
        let fail = |e| io_error(id, "put the snapshot's root filesystem in place", e);
        if fsutil::exchange(&dir, "rootfs", ROLLBACK_STAGING).map_err(fail)? {
            return Ok(());
        }
        let (rootfs, staging, aside) = (self.rootfs(id), dir.join(ROLLBACK_STAGING), dir.join(ROOTFS_ASIDE));
        remove_staging(&aside).map_err(fail)?;
        std::fs::rename(&rootfs, &aside).map_err(fail)?;
        if let Err(e) = std::fs::rename(&staging, &rootfs) {
            let _ = std::fs::rename(&aside, &rootfs);
            return Err(fail(e));
        }
        std::fs::rename(&aside, &staging).map_err(fail)
    }

    fn running(&self) -> Result<BTreeSet<GuestId>, BackendError> {
        let out = self.tool(&["lxc-ls", "-P", &self.path_arg(), "--running", "-1"], TOOL_TIMEOUT)?;
        Ok(String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.trim().parse().ok()).collect())
    }

    fn is_running(&self, id: GuestId) -> Result<bool, BackendError> {
        Ok(self.running()?.contains(&id))
    }

    fn host_bridge(&self, config: &GuestConfig) -> String {
        let name = config.text(&Field::NetBridge).unwrap_or_default();
        self.settings.bridges.get(name).and_then(|b| b.host_bridge.clone()).unwrap_or_else(|| name.to_string())
    }

    /// Host directories of the container's mounts; with `create`, a missing one is created and
    /// owned by the container's mapped root.
    fn mounts(
        &self,
        id: GuestId,
        config: &GuestConfig,
        create: bool,
    ) -> Result<Vec<(String, String, bool)>, BackendError> {
        let unprivileged = config.flag(&Field::Unprivileged) != Some(false);
        let mut out = Vec::new();
        for (inside, mount) in config.mounts() {
            let owner = match (&mount.host_owner, mount.owner) {
                (Some(o), _) => Some(host_owner(o)?),
                (None, Some(ids)) => Some(map_owner(ids, unprivileged, self.id_base)?),
                (None, None) => None,
            };
            let host = self.mount_dir(id, inside, mount)?;
            // A directory Phoenix creates is given to the container (its mapped root, or the owner
            // the configuration names); an existing one is left as it is.
            if create && !host.exists() {
                std::fs::create_dir_all(&host).map_err(|e| io_error(id, &format!("create {}", host.display()), e))?;
                let owner = owner.unwrap_or(if unprivileged { self.id_base } else { (0, 0) });
                std::os::unix::fs::chown(&host, Some(owner.0), Some(owner.1))
                    .map_err(|e| io_error(id, &format!("give {} to the container", host.display()), e))?;
            }
            out.push((inside.to_string(), host.display().to_string(), mount.read_only));
        }
        Ok(out)
    }

    /// The host directory of a mount at `inside`: a bind mount's own, or its volume's.
    fn mount_dir(&self, id: GuestId, inside: &str, mount: &Mount) -> Result<PathBuf, BackendError> {
        match &mount.source {
            MountSource::Bind(path) => Ok(PathBuf::from(path)),
            MountSource::Volume { storage, .. } => self
                .volume_dir(id, inside, storage)
                .ok_or_else(|| BackendError::permanent(Delivery::NotSent, format!("storage {storage} is not mapped"))),
        }
    }

    /// The host directory of a volume mounted at `inside`, on storage `pool`.
    fn volume_dir(&self, id: GuestId, inside: &str, pool: &str) -> Option<PathBuf> {
        let base = self.settings.storage.get(pool)?;
        let name: String =
            inside.trim_matches('/').chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
        Some(Path::new(base).join("volumes").join(format!("{id}-{name}")))
    }

    /// The running containers, with their init process and IPv4 addresses, from one `lxc-ls`.
    fn live(&self) -> Result<BTreeMap<GuestId, Live>, BackendError> {
        let out = self.tool(&["lxc-ls", "-P", &self.path_arg(), "-f", "-F", "NAME,STATE,PID,IPV4"], TOOL_TIMEOUT)?;
        Ok(parse_live(&String::from_utf8_lossy(&out.stdout)))
    }

    /// A managed container's configuration as it really is: its record, except where its LXC
    /// configuration file says otherwise (edited by hand), and, while it runs, where it still
    /// runs with values changed since it started, or with limits, an address or a host name set
    /// behind Phoenix's back. Whatever cannot be read is taken as recorded.
    fn actual_config(&self, id: GuestId, state: &State, live: Option<&Live>) -> GuestConfig {
        let mut c = state.config.clone();
        if let (Ok(text), Ok(ours)) =
            (std::fs::read_to_string(self.dir(id).join("config")), self.rendered(id, &state.config, false))
            && text != ours
        {
            let bridges = self.bridge_names();
            let file = foreign::read(&text, &bridges, self.id_base).fields;
            let ours = foreign::read(&ours, &bridges, self.id_base).fields;
            for field in file.fields().chain(ours.fields()).collect::<BTreeSet<_>>() {
                if file.get(field) != ours.get(field) {
                    match file.get(field) {
                        Some(v) => c.set(field.clone(), v.clone()),
                        None => {
                            c.remove(field);
                        }
                    }
                }
            }
        }
        // A mount whose host directory is gone is no mount the container has any more.
        let gone: Vec<Field> = c
            .mounts()
            .filter(|(inside, mount)| self.mount_dir(id, inside, mount).is_ok_and(|h| !h.is_dir()))
            .map(|(inside, _)| Field::mount(inside))
            .collect();
        for field in &gone {
            c.remove(field);
        }
        let Some(live) = live else { return c };
        for (field, had) in state.until_restart.iter().filter(|_| state.started_as == live.pid) {
            match had {
                Some(v) => c.set(field.clone(), v.clone()),
                None => {
                    c.remove(field);
                }
            }
        }
        if c.has(&Field::MemoryMb)
            && let Some(mb) = self.cgroups.memory_limit_mb(id)
        {
            c.set(Field::MemoryMb, mb);
        }
        if c.has(&Field::Cores)
            && let Some(cores) = self.cgroups.cores(id)
        {
            c.set(Field::Cores, cores);
        }
        if let Some(want) = c.text(&Field::NetIp).filter(|ip| *ip != "dhcp").map(str::to_string)
            && let Some(have) = live.ipv4.first()
            && !live.ipv4.iter().any(|a| want.split('/').next() == Some(a.as_str()))
        {
            let prefix = want.split_once('/').map(|(_, p)| format!("/{p}")).unwrap_or_default();
            c.set(Field::NetIp, format!("{have}{prefix}"));
        }
        if c.has(&Field::Hostname)
            && let Some(name) = live.pid.and_then(uts_name)
        {
            c.set(Field::Hostname, name);
        }
        c
    }

    /// The LXC configuration Phoenix writes for `config`. With `create`, mount directories that
    /// are missing are created (see [`LxcBackend::mounts`]); without, nothing is touched.
    fn rendered(&self, id: GuestId, config: &GuestConfig, create: bool) -> Result<String, BackendError> {
        let rootfs = self.rootfs(id).display().to_string();
        let cx = RenderContext {
            id,
            rootfs: &rootfs,
            host_bridge: &self.host_bridge(config),
            id_base: self.id_base,
            cgroups: self.cgroups,
            mounts: self.mounts(id, config, create)?,
            devices: self.devices(config)?,
            memsw: Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists(),
        };
        Ok(render(config, &cx))
    }

    /// Host bridge names to the configuration's names, for reading LXC configurations back.
    fn bridge_names(&self) -> BTreeMap<String, String> {
        self.settings
            .bridges
            .iter()
            .map(|(name, b)| (b.host_bridge.clone().unwrap_or_else(|| name.clone()), name.clone()))
            .collect()
    }

    /// What the LXC configuration of a container Phoenix did not create says, as fields (see
    /// [`foreign`]), with the DNS servers of its `/etc/resolv.conf`.
    fn read_foreign(&self, id: GuestId) -> Result<foreign::Read, BackendError> {
        let text = std::fs::read_to_string(self.dir(id).join("config"))
            .map_err(|e| io_error(id, "read its LXC configuration", e))?;
        let mut read = foreign::read(&text, &self.bridge_names(), self.id_base);
        let rootfs = read.rootfs.as_ref().map_or_else(|| self.rootfs(id), PathBuf::from);
        if let Some(ns) = fsutil::read_inside(&rootfs, "/etc/resolv.conf")
            .ok()
            .flatten()
            .and_then(|b| foreign::nameservers(&String::from_utf8_lossy(&b)))
        {
            read.fields.set(Field::NetNameservers, ns);
        }
        Ok(read)
    }

    /// The snapshots a container has in Phoenix's layout (`snapshots/<name>/rootfs`); hidden
    /// names are snapshots being taken or deleted, never snapshots.
    fn snapshot_dirs(&self, id: GuestId) -> BTreeSet<String> {
        std::fs::read_dir(self.dir(id).join("snapshots"))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().join("rootfs").is_dir())
                    .filter_map(|e| e.file_name().to_str().map(str::to_string))
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// What a container Phoenix did not create is recorded as once adopted: what its LXC
    /// configuration says, except what this backend keeps only in its record (see
    /// [`RECORDED_ONLY`]), and flags it does not write, which are the configuration's; DNS servers
    /// only where the configuration has some (the file the template came with is not Phoenix's
    /// to compare); a volume's size where the container mounts the volume's directory. Refused
    /// when its root filesystem is not where this backend keeps it.
    fn adopted_config(&self, id: GuestId, desired: &GuestConfig) -> Result<GuestConfig, BackendError> {
        let read = self.read_foreign(id)?;
        let rootfs = self.rootfs(id);
        if read.rootfs.as_deref().map(Path::new) != Some(rootfs.as_path()) {
            return Err(BackendError::permanent(
                Delivery::NotSent,
                format!(
                    "its root filesystem is {}; this backend keeps a container's in {}",
                    read.rootfs.as_deref().unwrap_or("not set (lxc.rootfs.path)"),
                    rootfs.display()
                ),
            )
            .with_detail(format!(
                "stop it, move its root filesystem to {} and set `lxc.rootfs.path = dir:{}`, then adopt it",
                rootfs.display(),
                rootfs.display()
            )));
        }
        let mut c = read.fields;
        for field in RECORDED_ONLY {
            match desired.get(field) {
                Some(v) => c.set(field.clone(), v.clone()),
                None => {
                    c.remove(field);
                }
            }
        }
        if !desired.has(&Field::NetNameservers) {
            c.remove(&Field::NetNameservers);
        }
        let nesting = |f: Option<&Value>| f.is_some_and(|f| f.items().iter().any(|x| x == "nesting=1"));
        if let Some(want) = desired.get(&Field::Flags)
            && nesting(Some(want)) == nesting(c.get(&Field::Flags))
        {
            c.set(Field::Flags, want.clone());
        }
        for (inside, want) in desired.mounts() {
            let MountSource::Volume { storage, .. } = &want.source else { continue };
            let field = Field::mount(inside);
            if let Some(dir) = self.volume_dir(id, inside, storage)
                && c.get(&field).and_then(Value::as_mount).and_then(Mount::host_path)
                    == Some(dir.display().to_string().as_str())
            {
                c.set(field, want.clone());
            }
        }
        Ok(c)
    }

    /// The NVIDIA devices of the container's GPUs, read on the host now.
    fn devices(&self, config: &GuestConfig) -> Result<Vec<gpu::Device>, BackendError> {
        let Some(list) = config.get(&Field::Gpus) else { return Ok(Vec::new()) };
        let indices: Vec<u32> = list.items().iter().filter_map(|i| i.trim().parse().ok()).collect();
        let dev = Path::new("/dev");
        gpu::nvidia_devices(dev, &indices, &gpu::stat_char_device, &gpu::caps(dev))
            .map_err(|e| BackendError::permanent(Delivery::NotSent, format!("GPUs {list}: {e}")))
    }

    /// Renders the container's LXC configuration into `dir` (its directory, or where it is being
    /// built), naming the root filesystem where it is once in place.
    fn write_config(&self, id: GuestId, dir: &Path, config: &GuestConfig) -> Result<(), BackendError> {
        let text = self.rendered(id, config, true)?;
        fsutil::replace_file(&dir.join("config"), text.as_bytes())
            .map_err(|e| io_error(id, "write the LXC configuration", e))
    }

    fn template_path(&self, template: &str) -> Result<PathBuf, BackendError> {
        if template.starts_with('/') {
            return Ok(PathBuf::from(template));
        }
        let (storage, volume) = template.split_once(':').ok_or_else(|| {
            BackendError::permanent(Delivery::NotSent, format!("template {template} is neither a path nor a volume ID"))
        })?;
        let base = self.settings.storage.get(storage).ok_or_else(|| {
            BackendError::permanent(
                Delivery::NotSent,
                format!("storage {storage} of template {template} is not mapped in the backend's `storage`"),
            )
        })?;
        let name = volume.strip_prefix("vztmpl/").unwrap_or(volume);
        Ok(Path::new(base).join("template/cache").join(name))
    }

    fn attach(
        &self,
        id: GuestId,
        argv: &[String],
        input: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<ExecOutput, BackendError> {
        let mut full: Vec<String> = [
            "lxc-attach",
            "-n",
            &id.to_string(),
            "-P",
            &self.path_arg(),
            "--clear-env",
            "--set-var",
            &format!("PATH={}", command::CLEAN_PATH),
            "--",
        ]
        .iter()
        .map(|s| (*s).to_string())
        .collect();
        full.extend_from_slice(argv);
        let t = std::time::Instant::now();
        let mut r = run(&full, input, timeout);
        // liblxc re-executes its tools from a memfd before anything else; when that fails under
        // load, lxc-attach can die of it (a signal) before attaching: the command never ran, so
        // running it again is safe.
        for _ in 0..ATTACH_RETRIES {
            match &r {
                Ok(out) if died_before_attaching(out) => {
                    std::thread::sleep(Duration::from_millis(100));
                    r = run(&full, input, timeout);
                }
                _ => break,
            }
        }
        self.tool_nanos.fetch_add(t.elapsed().as_nanos() as u64, std::sync::atomic::Ordering::Relaxed);
        r
    }
}

/// The time making a root filesystem may take: unpacking a template, or copying one (a clone, a
/// snapshot, a rollback).
const COPY_TIMEOUT: Duration = Duration::from_secs(1800);

/// How many times an `lxc-attach` that died before attaching is run again.
const ATTACH_RETRIES: usize = 3;

/// Whether `lxc-attach` died (of a signal) while liblxc re-executed it from a memfd, before it
/// attached to the container.
fn died_before_attaching(out: &ExecOutput) -> bool {
    out.status == -1 && String::from_utf8_lossy(&out.stderr).contains("Failed to rexec as memfd")
}

/// The range added for root when it has none: first ID and count.
const DEFAULT_RANGE: (u32, u32) = (100_000, 65_536);

/// The mode `lxc_path` needs: the mapped root of unprivileged containers traverses it.
const LXC_PATH_MODE: u32 = 0o755;

/// The permission bits of `lxc_path`, or `None` when it does not exist (yet).
fn lxc_path_mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).ok().map(|m| m.permissions().mode() & 0o7777)
}

/// The first ID of root's subordinate range in `/etc/subuid` or `/etc/subgid` (a missing file
/// holds none), or `None` when root has none of at least 65536 IDs.
fn subordinate_range(file: &Path) -> Result<Option<u32>, HostSetupError> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    for line in text.lines() {
        let p: Vec<&str> = line.trim().split(':').collect();
        if let [user, start, count] = p.as_slice()
            && *user == "root"
            && count.parse::<u32>().is_ok_and(|c| c >= DEFAULT_RANGE.1)
        {
            return start
                .parse()
                .map(Some)
                .map_err(|_| HostSetupError::UnreadableRange { file: file.to_path_buf(), line: line.to_string() });
        }
    }
    Ok(None)
}

/// Adds `root:100000:65536` to `/etc/subuid` or `/etc/subgid`, unless root has a range by now.
fn add_subordinate_range(file: &Path) -> Result<(), HostSetupError> {
    if subordinate_range(file)?.is_some() {
        return Ok(());
    }
    let mut text = std::fs::read_to_string(file).unwrap_or_default();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&format!("root:{}:{}\n", DEFAULT_RANGE.0, DEFAULT_RANGE.1));
    std::fs::write(file, text)
        .map_err(|e| HostSetupError::AddRange { file: file.to_path_buf(), source: std::sync::Arc::new(e) })
}

/// The host owner of the IDs `(uid, gid)` inside a container.
fn map_owner((u, g): (u32, u32), unprivileged: bool, base: (u32, u32)) -> Result<(u32, u32), BackendError> {
    let mapped = if unprivileged { base.0.checked_add(u).zip(base.1.checked_add(g)) } else { Some((u, g)) };
    mapped.ok_or_else(|| BackendError::permanent(Delivery::NotSent, format!("owner {u}:{g} is beyond the ID map")))
}

/// A host owner given as `UID:GID`, `UID`, or `user:group` names from /etc/passwd and /etc/group.
fn host_owner(owner: &str) -> Result<(u32, u32), BackendError> {
    let lookup = |file: &str, name: &str| -> Option<u32> {
        if let Ok(n) = name.parse() {
            return Some(n);
        }
        std::fs::read_to_string(file).ok()?.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&name)).then(|| f.get(2)?.parse().ok()).flatten()
        })
    };
    let (user, group) = owner.split_once(':').unwrap_or((owner, owner));
    match (lookup("/etc/passwd", user), lookup("/etc/group", group)) {
        (Some(u), Some(g)) => Ok((u, g)),
        _ => Err(BackendError::permanent(
            Delivery::NotSent,
            format!("owner {owner} names no user or group of this host"),
        )),
    }
}

/// `path` with links resolved and `.`, `..` and repeated `/` taken out, as far as it exists; the
/// rest (not made yet) appended as written, without `.` and empty parts.
pub fn canonical_path(path: &Path) -> PathBuf {
    use std::path::Component;
    // `..` is taken out where it stands: after the real path of what precedes it, if that exists.
    let mut lexical = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                lexical = std::fs::canonicalize(&lexical).unwrap_or(lexical);
                lexical.pop();
            }
            other => lexical.push(other),
        }
    }
    let mut existing = lexical.clone();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(&existing) {
            return rest.iter().rev().fold(real, |out, part| out.join(part));
        }
        match (existing.file_name().map(std::ffi::OsStr::to_os_string), existing.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => return lexical,
        }
    }
}

/// What `lxc-ls` shows of a running container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Live {
    /// Its init process, as the host sees it.
    pid: Option<u32>,
    /// Its IPv4 addresses.
    ipv4: Vec<String>,
}

/// Reads `lxc-ls -f -F NAME,STATE,PID,IPV4`: the running containers (addresses last, as
/// `a, b`, or `-`).
fn parse_live(text: &str) -> BTreeMap<GuestId, Live> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let id = words.next()?.parse::<GuestId>().ok()?;
            (words.next()? == "RUNNING").then_some(())?;
            let pid = words.next()?.parse().ok();
            let ipv4 = words.map(|w| w.trim_end_matches(',')).filter(|w| *w != "-").map(str::to_string).collect();
            Some((id, Live { pid, ipv4 }))
        })
        .collect()
}

/// The host name a process's UTS namespace has (`hostname` run inside), read from a thread that
/// joins that namespace only for the reading.
fn uts_name(pid: u32) -> Option<String> {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/uts")).ok()?;
    std::thread::spawn(move || {
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWUTS).ok()?;
        nix::unistd::gethostname().ok()?.into_string().ok()
    })
    .join()
    .ok()
    .flatten()
}

/// Names under `lxc_path` and a container's `snapshots/` that are being built: never a
/// container's or a snapshot's own name, so half-made ones are never taken for real ones.
const STAGING_PREFIX: &str = ".phoenix-new-";

/// Where a rollback copies the snapshot's root filesystem, beside `rootfs`; after the exchange,
/// the replaced one, until it is removed.
const ROLLBACK_STAGING: &str = ".phoenix-new-rootfs";

/// Where the root filesystem waits between the two renames of a rollback on a filesystem that
/// cannot exchange them at once.
const ROOTFS_ASIDE: &str = ".phoenix-old-rootfs";

/// Names under a container's `snapshots/` of snapshots being deleted: renamed there at once,
/// then removed.
const DELETING_PREFIX: &str = ".phoenix-old-";

/// Removes a staging directory a run cut short left (nothing when there is none).
fn remove_staging(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Writes `phoenix.json` into a container's directory, atomically.
fn save_state(dir: &Path, state: &State) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(state).unwrap_or_default();
    fsutil::replace_file(&dir.join("phoenix.json"), text.as_bytes())
}

/// The files inside a container that its configuration decides, as Proxmox writes them:
/// `/etc/hostname` (an init system such as systemd names the container from it at boot) and
/// `/etc/resolv.conf` from its DNS servers.
fn guest_files(hostname: Option<&Value>, nameservers: Option<&Value>) -> Vec<(&'static str, String)> {
    let mut files = Vec::new();
    if let Some(name) = hostname {
        files.push(("/etc/hostname", format!("{name}\n")));
    }
    if let Some(ns) = nameservers {
        files.push(("/etc/resolv.conf", ns.items().iter().map(|n| format!("nameserver {n}\n")).collect()));
    }
    files
}

/// Writes a file into a stopped container's rootfs, replacing a link there (so that nothing
/// outside the rootfs is written).
fn write_guest_file(rootfs: &Path, path: &str, text: &str, owner: (u32, u32)) -> std::io::Result<()> {
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    let target = fsutil::resolve_inside(rootfs, if dir.is_empty() { "/" } else { dir })?.join(name);
    if std::fs::symlink_metadata(&target).is_ok_and(|m| m.file_type().is_symlink()) {
        let _ = std::fs::remove_file(&target);
    }
    fsutil::write_inside(rootfs, path, text.as_bytes(), owner)
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

fn io_error(id: GuestId, what: &str, e: std::io::Error) -> BackendError {
    BackendError::permanent(Delivery::MaybeApplied, format!("container {id}: cannot {what}: {e}"))
}

fn missing(id: GuestId) -> BackendError {
    BackendError::not_found(format!("container {id} does not exist"))
}

/// Container fields this backend does not implement (the per-guest firewall is Proxmox's).
const UNSUPPORTED_FIELDS: &[Field] = &[Field::Firewall, Field::FirewallRules];

/// Fields this backend keeps only in its record (`phoenix.json`), never in the container: the
/// root storage and disk size (a root filesystem here is a directory) and tags.
const RECORDED_ONLY: &[Field] = &[Field::Storage, Field::DiskGb, Field::Tags];

impl Backend for LxcBackend {
    fn name(&self) -> &str {
        "lxc"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            kinds: BTreeSet::from([GuestKind::Lxc]),
            clone: true,
            snapshots: true,
            templates: true,
            gpu: true,
            concurrent_clones: true,
            probe_at_plan: true,
            fields: Field::CONTAINER.iter().filter(|f| !UNSUPPORTED_FIELDS.contains(f)).cloned().collect(),
        }
    }

    fn observe(&self) -> Result<Observation, BackendError> {
        // No directory yet: no containers (it is made with the first one).
        if !self.lxc_path.exists() {
            return Ok(Observation { guests: BTreeMap::new() });
        }
        let live = self.live()?;
        let mut guests = BTreeMap::new();
        let entries = std::fs::read_dir(&self.lxc_path).map_err(|e| {
            BackendError::permanent(Delivery::NotSent, format!("cannot list {}: {e}", self.lxc_path.display()))
        })?;
        for e in entries.flatten() {
            // Directories being built (`.phoenix-new-<id>`) are no container yet.
            let Some(id) = e.file_name().to_str().and_then(|n| n.parse::<GuestId>().ok()) else { continue };
            if !e.path().join("config").is_file() {
                continue;
            }
            let state = self.state(id);
            // A container of Phoenix's whose root filesystem is gone is no container any more:
            // shown as absent, so that the plan creates it again (over what is left of it).
            if self.remains(id) {
                continue;
            }
            // A container Phoenix did not create: what its LXC configuration says.
            let foreign = || self.read_foreign(id).map(|r| r.fields).unwrap_or_default();
            let running = live.get(&id);
            let power = if running.is_some() { PowerState::Running } else { PowerState::Stopped };
            guests.insert(
                id,
                ObservedGuest {
                    id,
                    kind: GuestKind::Lxc,
                    node: None,
                    power,
                    managed: state.is_some(),
                    config: state.as_ref().map_or_else(foreign, |s| self.actual_config(id, s, running)),
                    template: state.as_ref().is_some_and(|s| s.template),
                    // The snapshots on disk: a recorded one removed by hand is missing, one
                    // renamed into place by a run killed before recording it is there.
                    snapshots: self.snapshot_dirs(id),
                    half_made: None,
                    unreachable: None,
                    markers: None,
                },
            );
        }
        Ok(Observation { guests })
    }

    fn observe_guest(&self, id: GuestId) -> Result<Option<ObservedGuest>, BackendError> {
        Ok(self.observe()?.guests.remove(&id))
    }

    fn create(&self, request: &CreateRequest) -> Result<(), BackendError> {
        let id = request.id;
        let dir = self.dir(id);
        if self.remains(id) {
            // What is left of a container of Phoenix's whose root filesystem was removed: its
            // configuration and record, which the new container replaces.
            let _ = std::fs::remove_dir_all(&dir);
        }
        if dir.exists() {
            return Err(BackendError::permanent(Delivery::NotSent, format!("{} already exists", dir.display())));
        }
        let source_rootfs = match &request.source {
            CreateSource::Template(t) => {
                let path = self.template_path(t)?;
                if !path.is_file() {
                    return Err(BackendError::permanent(
                        Delivery::NotSent,
                        format!("template {} does not exist", path.display()),
                    )
                    .with_detail(
                        "build one with `phoenix template busybox <file>`, or give an existing rootfs tarball",
                    ));
                }
                Err(path)
            }
            // A template is cloned as it is: a copy of its rootfs (it never runs again).
            CreateSource::Clone { source, snapshot } if snapshot.is_empty() => {
                if !self.state(*source).is_some_and(|s| s.template) {
                    return Err(BackendError::permanent(
                        Delivery::NotSent,
                        format!("container {source} is not a template, and no snapshot to clone from was named"),
                    ));
                }
                Ok(self.rootfs(*source))
            }
            CreateSource::Clone { source, snapshot } => {
                let snap = self.dir(*source).join("snapshots").join(snapshot).join("rootfs");
                if !snap.is_dir() {
                    return Err(BackendError::permanent(
                        Delivery::NotSent,
                        format!("container {source} has no snapshot {snapshot} to clone from"),
                    ));
                }
                Ok(snap)
            }
        };
        self.prepare_host()?;
        // Built under a staging name and renamed into place once complete: a run killed half-way
        // leaves only the staging directory, which observe never shows and the next create
        // removes (it was never a container, so nothing is lost).
        let staging = self.staging(id);
        remove_staging(&staging).map_err(|e| io_error(id, "remove what a run cut short left", e))?;
        std::fs::create_dir_all(&staging).map_err(|e| io_error(id, "create its directory", e))?;
        let _ = set_mode(&staging, 0o755);
        let rootfs = staging.join("rootfs");
        let built = match source_rootfs {
            Ok(snap) => self.copy_tree(&snap, &rootfs),
            Err(tarball) => std::fs::create_dir_all(&rootfs)
                .map_err(|e| io_error(id, "create its rootfs", e))
                .and_then(|()| {
                    self.tool(
                        &[
                            "tar",
                            "-xpf",
                            &tarball.display().to_string(),
                            "-C",
                            &rootfs.display().to_string(),
                            "--numeric-owner",
                        ],
                        COPY_TIMEOUT,
                    )
                    .map(|_| ())
                })
                .and_then(|()| {
                    if request.config.flag(&Field::Unprivileged) == Some(false) {
                        Ok(())
                    } else {
                        fsutil::shift_ownership(&rootfs, self.id_base)
                            .map_err(|e| io_error(id, "give its files to the mapped root", e))
                    }
                }),
        };
        let finish = built.and_then(|()| {
            let owner = if request.config.flag(&Field::Unprivileged) == Some(false) { (0, 0) } else { self.id_base };
            let files = guest_files(request.config.get(&Field::Hostname), request.config.get(&Field::NetNameservers));
            for (path, text) in files {
                write_guest_file(&rootfs, path, &text, owner).map_err(|e| io_error(id, &format!("write {path}"), e))?;
            }
            let mut config = request.config.clone();
            if !config.has(&Field::NetMac) {
                config.set(
                    Field::NetMac,
                    format!(
                        "02:00:{:02x}:{:02x}:{:02x}:{:02x}",
                        (id >> 24) & 0xff,
                        (id >> 16) & 0xff,
                        (id >> 8) & 0xff,
                        id & 0xff
                    ),
                );
            }
            self.write_config(id, &staging, &config)?;
            let state = State { config, ..State::default() };
            save_state(&staging, &state).map_err(|e| io_error(id, "record the container's state", e))?;
            let _guard = self.write.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if dir.exists() {
                return Err(BackendError::permanent(Delivery::NotSent, format!("{} already exists", dir.display())));
            }
            std::fs::rename(&staging, &dir).map_err(|e| io_error(id, "move its directory into place", e))
        });
        if let Err(e) = finish {
            // Leave nothing half-made behind.
            let _ = std::fs::remove_dir_all(&staging);
            return Err(BackendError { delivery: Delivery::NotSent, ..e });
        }
        Ok(())
    }

    fn check_create(&self, request: &CreateRequest) -> Result<(), BackendError> {
        if self.dir(request.id).exists() && !self.remains(request.id) {
            return Err(BackendError::permanent(
                Delivery::NotSent,
                format!("{} already exists", self.dir(request.id).display()),
            ));
        }
        self.devices(&request.config)?;
        if let CreateSource::Template(t) = &request.source {
            let path = self.template_path(t)?;
            if !path.is_file() {
                return Err(BackendError::permanent(
                    Delivery::NotSent,
                    format!("template {} does not exist", path.display()),
                )
                .with_detail("build one with `phoenix template busybox <file>`, or give an existing rootfs tarball"));
            }
        }
        Ok(())
    }

    fn update_config(&self, id: GuestId, changes: &[FieldChange]) -> Result<(), BackendError> {
        let _guard = self.write.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut state = self.state(id).ok_or_else(|| missing(id))?;
        let live = self.live()?.remove(&id);
        let running = live.is_some();
        // A running container keeps what it started with for fields that take effect at start:
        // recorded in the same write as the new values, so that a run killed before the restart
        // still shows them as to be applied (and the restart as owed).
        if let Some(live) =
            live.filter(|_| changes.iter().any(|c| self.change_effect(&c.field) == ChangeEffect::Restart))
        {
            if state.started_as != live.pid {
                state.until_restart.clear();
            }
            state.started_as = live.pid;
            for c in changes.iter().filter(|c| self.change_effect(&c.field) == ChangeEffect::Restart) {
                let had = state.config.get(&c.field).cloned();
                state.until_restart.entry(c.field.clone()).or_insert(had);
            }
        }
        // A removed setting leaves the configuration rendered from this record. A removed mount
        // is only unmounted: its host directory (a volume's included) stays with its data.
        for c in changes {
            match &c.new {
                Some(v) => state.config.set(c.field.clone(), v.clone()),
                None => {
                    state.config.remove(&c.field);
                }
            }
        }
        let config = state.config.clone();
        self.save(id, &state)?;
        self.write_config(id, &self.dir(id), &config)?;
        // Removed nameservers leave /etc/resolv.conf as it was last written: this host has no
        // settings of its own to give the container instead.
        let changed = |field: Field| changes.iter().find(|c| c.field == field).and_then(|c| c.new.as_ref());
        let files = guest_files(changed(Field::Hostname), changed(Field::NetNameservers));
        for (path, text) in files {
            if running {
                let file = FilePush { path: path.into(), content: text.into_bytes(), mode: 0o644, uid: 0, gid: 0 };
                self.push_file(id, &file)?;
            } else {
                let owner = if config.flag(&Field::Unprivileged) == Some(false) { (0, 0) } else { self.id_base };
                write_guest_file(&self.rootfs(id), path, &text, owner)
                    .map_err(|e| io_error(id, &format!("write {path}"), e))?;
            }
        }
        if running {
            for (c, new) in changes
                .iter()
                .filter(|c| self.change_effect(&c.field) == ChangeEffect::Live)
                .filter_map(|c| Some((c, c.new.as_ref()?)))
            {
                // A limit is a positive whole number: anything else is refused, never written as 0.
                let limit = |scale: u64| {
                    new.as_number().filter(|n| *n > 0).and_then(|n| n.checked_mul(scale)).ok_or_else(|| {
                        BackendError::permanent(
                            Delivery::NotSent,
                            format!("container {id}: {} \"{new}\" is not a positive whole number", c.field),
                        )
                    })
                };
                let settings: Vec<(String, String)> = match (&c.field, self.cgroups) {
                    (Field::MemoryMb, Cgroups::V1) => {
                        vec![("memory.limit_in_bytes".into(), limit(1024 * 1024)?.to_string())]
                    }
                    (Field::MemoryMb, Cgroups::V2) => vec![("memory.max".into(), limit(1024 * 1024)?.to_string())],
                    (Field::Cores, Cgroups::V1) => vec![("cpu.cfs_quota_us".into(), limit(100_000)?.to_string())],
                    (Field::Cores, Cgroups::V2) => vec![("cpu.max".into(), format!("{} 100000", limit(100_000)?))],
                    _ => Vec::new(),
                };
                for (key, value) in settings {
                    self.tool(
                        &["lxc-cgroup", "-n", &id.to_string(), "-P", &self.path_arg(), &key, &value],
                        TOOL_TIMEOUT,
                    )?;
                }
            }
        }
        Ok(())
    }

    fn start(&self, id: GuestId) -> Result<(), BackendError> {
        let state = self.state(id).ok_or_else(|| missing(id))?;
        if state.template {
            return Err(BackendError::permanent(
                Delivery::NotSent,
                format!("container {id} is a template: it is never started"),
            ));
        }
        self.prepare_host()?;
        self.recover_rootfs(id)?;
        // LXC's own account of a failed start goes to a log beside the container, and into the
        // error.
        let log = self.dir(id).join("lxc-start.log");
        let _ = std::fs::remove_file(&log);
        let log_arg = log.display().to_string();
        let argv = ["lxc-start", "-n", &id.to_string(), "-P", &self.path_arg(), "-d", "-o", &log_arg, "-l", "ERROR"];
        if let Err(e) = self.tool(&argv, TOOL_TIMEOUT) {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect();
            let detail = [e.detail.clone().unwrap_or_default(), tail.join("\n")].join("\n").trim().to_string();
            // A start LXC aborted half-way is cleaned up and worth one more try (the engine
            // retries transient errors); any other failure is the configuration's.
            if detail.contains("ABORTING") {
                let _ = self.tool(&["lxc-stop", "-n", &id.to_string(), "-P", &self.path_arg(), "-k"], TOOL_TIMEOUT);
                return Err(BackendError::transient(Delivery::MaybeApplied, e.message).with_detail(detail));
            }
            return Err(BackendError { detail: Some(detail), ..e });
        }
        self.tool(
            &["lxc-wait", "-n", &id.to_string(), "-P", &self.path_arg(), "-s", "RUNNING", "-t", "30"],
            Duration::from_secs(40),
        )?;
        // It runs with its whole configuration now.
        let _guard = self.write.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(mut state) = self.state(id).filter(|s| !s.until_restart.is_empty()) {
            state.until_restart.clear();
            state.started_as = None;
            self.save(id, &state)?;
        }
        Ok(())
    }

    fn stop(&self, id: GuestId) -> Result<(), BackendError> {
        self.tool(&["lxc-stop", "-n", &id.to_string(), "-P", &self.path_arg(), "-t", "30"], Duration::from_secs(60))
            .map(|_| ())
    }

    fn snapshot(&self, id: GuestId, name: &str) -> Result<(), BackendError> {
        let _guard = self.write.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut state = self.state(id).ok_or_else(|| missing(id))?;
        if state.template {
            return Err(BackendError::permanent(
                Delivery::NotSent,
                format!("container {id} is a template: it takes no snapshot"),
            ));
        }
        let snapshots = self.dir(id).join("snapshots");
        let target = self.snapshot_dir(id, name)?;
        if target.exists() {
            return Err(BackendError::permanent(
                Delivery::NotSent,
                format!("container {id} already has a snapshot {name}"),
            ));
        }
        // Copied under a staging name and renamed once complete, as containers are made.
        let staging = snapshots.join(format!("{STAGING_PREFIX}{name}"));
        remove_staging(&staging).map_err(|e| io_error(id, "remove what a run cut short left", e))?;
        std::fs::create_dir_all(&staging).map_err(|e| io_error(id, "create the snapshot directory", e))?;
        let copy = self.copy_tree(&self.rootfs(id), &staging.join("rootfs")).and_then(|()| {
            std::fs::rename(&staging, &target).map_err(|e| io_error(id, "move the snapshot into place", e))
        });
        if let Err(e) = copy {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
        state.snapshots.insert(name.to_string());
        self.save(id, &state)
    }

    /// Copies the snapshot's root filesystem beside the container's (while it still runs), stops
    /// it if it runs, exchanges the two at once, removes the old one, and starts the container
    /// again if it ran. A run killed at any point leaves a whole root filesystem in place: the
    /// old one until the exchange, the snapshot's after it; what it leaves beside it is removed by
    /// the next rollback. The configuration is not touched (the snapshot holds none).
    fn rollback(&self, id: GuestId, name: &str) -> Result<(), BackendError> {
        let state = self.state(id).ok_or_else(|| missing(id))?;
        if state.template {
            return Err(BackendError::permanent(
                Delivery::NotSent,
                format!("container {id} is a template: it has no snapshot to roll back to"),
            ));
        }
        let snap = self.snapshot_dir(id, name)?.join("rootfs");
        if !snap.is_dir() {
            return Err(BackendError::permanent(Delivery::NotSent, format!("container {id} has no snapshot {name}")));
        }
        self.recover_rootfs(id)?;
        let staging = self.dir(id).join(ROLLBACK_STAGING);
        remove_staging(&staging).map_err(|e| io_error(id, "remove what a run cut short left", e))?;
        if let Err(e) = self.copy_tree(&snap, &staging) {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(BackendError { delivery: Delivery::NotSent, ..e });
        }
        let ran = self.is_running(id)?;
        if ran {
            self.stop(id)?;
        }
        {
            let _guard = self.write.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            self.swap_rootfs(id)?;
        }
        // The replaced root filesystem: what is left of it if this fails goes with the next one.
        let _ = std::fs::remove_dir_all(&staging);
        if ran {
            self.start(id).map_err(|e| BackendError {
                message: format!(
                    "container {id} was rolled back to snapshot {name} but not started again: {}",
                    e.message
                ),
                ..e
            })?;
        }
        Ok(())
    }

    /// Renames the snapshot out of `snapshots/` at once (it is there or gone, never half there),
    /// then removes it; what a run killed before the removal left is removed by the next
    /// deletion.
    fn delete_snapshot(&self, id: GuestId, name: &str) -> Result<(), BackendError> {
        let _guard = self.write.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut state = self.state(id).ok_or_else(|| missing(id))?;
        let target = self.snapshot_dir(id, name)?;
        let snapshots = self.dir(id).join("snapshots");
        for e in std::fs::read_dir(&snapshots).into_iter().flatten().flatten() {
            if e.file_name().to_str().is_some_and(|n| n.starts_with(DELETING_PREFIX)) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        if !target.join("rootfs").is_dir() {
            return Err(BackendError::permanent(Delivery::NotSent, format!("container {id} has no snapshot {name}")));
        }
        let doomed = snapshots.join(format!("{DELETING_PREFIX}{name}"));
        std::fs::rename(&target, &doomed).map_err(|e| io_error(id, &format!("delete snapshot {name}"), e))?;
        state.snapshots.remove(name);
        self.save(id, &state)?;
        std::fs::remove_dir_all(&doomed).map_err(|e| io_error(id, &format!("remove snapshot {name}"), e))
    }

    /// Marks a stopped container without snapshots as a template in its `phoenix.json`: it is
    /// never started again, and clones copy its rootfs as it is.
    fn make_template(&self, id: GuestId) -> Result<(), BackendError> {
        let _guard = self.write.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut state = self.state(id).ok_or_else(|| missing(id))?;
        let refuse = |why: String| Err(BackendError::permanent(Delivery::NotSent, why));
        if state.template {
            return refuse(format!("container {id} is a template already"));
        }
        if self.is_running(id)? {
            return refuse(format!("container {id} runs: only a stopped container becomes a template"));
        }
        if !state.snapshots.is_empty() {
            return refuse(format!("container {id} has snapshots: a template has none"));
        }
        state.template = true;
        self.save(id, &state)
    }

    fn exec(&self, id: GuestId, request: &ExecRequest) -> Result<ExecOutput, BackendError> {
        self.attach(id, &request.argv, None, request.timeout)
    }

    fn read_file(&self, id: GuestId, path: &str) -> Result<Option<Vec<u8>>, BackendError> {
        // Any container's, Phoenix's or not (adoption reads the markers of one it did not create).
        if !self.dir(id).join("config").is_file() {
            return Err(missing(id));
        }
        // Read inside the container where it runs; where `lxc-attach` finds none to enter, from
        // its root filesystem. The list of running containers is asked for only then, so that
        // reading the markers of N running containers lists them none of N times.
        let argv = phoenix_backend::inside::read_command(path);
        let out = self.attach(id, &argv, None, Duration::from_secs(60))?;
        let answered = matches!(out.status, 0 | phoenix_backend::inside::MISSING | phoenix_backend::inside::NOT_A_FILE);
        if answered || self.is_running(id)? {
            return phoenix_backend::inside::read_result(path, &out)
                .map_err(|e| BackendError::permanent(Delivery::NotSent, format!("container {id}: {e}")));
        }
        fsutil::read_inside(&self.rootfs(id), path).map_err(|e| io_error(id, &format!("read {path}"), e))
    }

    fn push_file(&self, id: GuestId, file: &FilePush) -> Result<(), BackendError> {
        // Written by a shell inside the container, so that links in it resolve inside it.
        let argv = phoenix_backend::inside::push_command(file);
        let out = self.attach(id, &argv, Some(&file.content), Duration::from_secs(120))?;
        if out.success() {
            Ok(())
        } else {
            Err(BackendError::permanent(
                Delivery::MaybeApplied,
                format!("writing {} in {id} failed with status {}", file.path, out.status),
            )
            .with_detail(String::from_utf8_lossy(&out.stderr).to_string()))
        }
    }

    fn destroy(&self, id: GuestId) -> Result<(), BackendError> {
        if self.state(id).is_none() {
            return Err(missing(id));
        }
        if self.is_running(id)? {
            self.tool(&["lxc-stop", "-n", &id.to_string(), "-P", &self.path_arg(), "-k"], TOOL_TIMEOUT)?;
        }
        std::fs::remove_dir_all(self.dir(id)).map_err(|e| io_error(id, "remove its directory", e))
    }

    fn addresses(&self, id: GuestId) -> Result<Vec<std::net::IpAddr>, BackendError> {
        let out = self.tool(&["lxc-info", "-P", &self.path_arg(), "-n", &id.to_string(), "-iH"], TOOL_TIMEOUT)?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|a| a.parse::<std::net::IpAddr>().ok())
            .filter(|a| !a.is_loopback())
            .collect())
    }

    /// See [`LxcBackend::adopted_config`].
    fn check_adopt(&self, guest: &ObservedGuest, desired: &GuestConfig) -> Result<GuestConfig, BackendError> {
        self.adopted_config(guest.id, desired)
    }

    /// Writes `phoenix.json` next to the container, recording its configuration as
    /// [`Backend::check_adopt`] reads it; its LXC configuration, root filesystem and process are
    /// left as they are (the configuration is rendered again only when a later apply changes it).
    fn adopt(&self, id: GuestId, desired: &GuestConfig) -> Result<(), BackendError> {
        let _guard = self.write.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.state(id).is_some() {
            return Ok(());
        }
        if !self.dir(id).join("config").is_file() {
            return Err(missing(id));
        }
        let config = self.adopted_config(id, desired)?;
        self.save(id, &State { config, snapshots: self.snapshot_dirs(id), ..State::default() })
    }

    /// CPU and memory limits are set in the running container's cgroup, its DNS servers written
    /// into its `/etc/resolv.conf`; start-up settings are read when the host boots; tags and the
    /// disk size are records of this backend (a root filesystem here is a directory); everything
    /// else is in the LXC configuration, read at start.
    fn change_effect(&self, field: &Field) -> ChangeEffect {
        match field {
            Field::Cores
            | Field::MemoryMb
            | Field::Onboot
            | Field::Startup
            | Field::Tags
            | Field::DiskGb
            | Field::NetNameservers => ChangeEffect::Live,
            Field::Unprivileged | Field::Storage => ChangeEffect::Recreate,
            Field::Hostname
            | Field::SwapMb
            | Field::NetName
            | Field::NetBridge
            | Field::NetIp
            | Field::NetGw
            | Field::NetMac
            | Field::Flags
            | Field::Idmap
            | Field::Gpus
            | Field::LxcRaw
            | Field::Apparmor
            | Field::Firewall
            | Field::FirewallRules
            | Field::CiUser
            | Field::CiSshkeys
            | Field::CiPassword
            | Field::Mount(_) => ChangeEffect::Restart,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn an_open_error_says_what_is_wrong_and_keeps_how_to_fix_it_apart() {
        let e = OpenError::NoBridge { host: "br9".into(), name: "lan".into(), address: "10.9.0.1/24".into() };
        assert_eq!(e.to_string(), "bridge br9 (for lan) does not exist on this machine");
        assert_eq!(
            e.hint().as_deref(),
            Some("create it: ip link add br9 type bridge && ip addr add 10.9.0.1/24 dev br9 && ip link set br9 up")
        );
        let e = OpenError::from(HostSetupError::UnreadableRange {
            file: "/etc/subuid".into(),
            line: "root:x:65536".into(),
        });
        assert_eq!(e.to_string(), "/etc/subuid: cannot read root's range \"root:x:65536\"");
        assert_eq!(e.hint(), None);
    }

    fn settings(lxc_path: &Path) -> Settings {
        Settings { lxc_path: Some(lxc_path.display().to_string()), bridges: BTreeMap::new(), storage: BTreeMap::new() }
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).expect("stat").permissions().mode() & 0o7777
    }

    #[test]
    fn only_an_attach_that_died_re_executing_itself_is_run_again() {
        let out = |status, stderr: &str| ExecOutput { status, stdout: Vec::new(), stderr: stderr.as_bytes().to_vec() };
        let rexec = "Device or resource busy - Failed to rexec as memfd\nmunmap_chunk(): invalid pointer\n";
        assert!(died_before_attaching(&out(-1, rexec)));
        // The command ran and failed, or was killed itself: not run again.
        assert!(!died_before_attaching(&out(1, rexec)));
        assert!(!died_before_attaching(&out(-1, "Killed\n")));
        assert!(!died_before_attaching(&out(0, "")));
    }

    /// An ID file where root has no range, and one where it has.
    fn id_files(dir: &Path) -> [PathBuf; 2] {
        let (uid, gid) = (dir.join("subuid"), dir.join("subgid"));
        std::fs::write(&uid, "someone:100000:65536").expect("write");
        std::fs::write(&gid, "root:200000:65536\n").expect("write");
        [uid, gid]
    }

    #[test]
    fn opening_and_observing_change_nothing_and_say_what_the_first_change_will_do() {
        let tmp = tempfile::tempdir().expect("tmp");
        let files = id_files(tmp.path());
        let before: Vec<String> = files.iter().map(|f| std::fs::read_to_string(f).expect("read")).collect();

        // A missing `lxc_path` means no containers yet, and stays missing.
        let missing = tmp.path().join("lxc");
        let (backend, notes) = LxcBackend::open_with_id_files(&settings(&missing), files.clone()).expect("open");
        assert_eq!(backend.id_base, (DEFAULT_RANGE.0, 200_000));
        assert!(backend.observe().expect("observe").guests.is_empty());
        assert!(!missing.exists());
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("root has no subordinate ID range in") && notes[0].contains("subuid"), "{notes:?}");

        // A private `lxc_path` keeps its mode; the note says what apply will do.
        let private = tmp.path().join("private");
        std::fs::create_dir(&private).expect("mkdir");
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let (_, notes) = LxcBackend::open_with_id_files(&settings(&private), files.clone()).expect("open");
        assert_eq!(mode(&private), 0o700);
        assert!(notes.iter().any(|n| n.contains("has mode 700: it is set to 755")), "{notes:?}");

        let after: Vec<String> = files.iter().map(|f| std::fs::read_to_string(f).expect("read")).collect();
        assert_eq!(before, after, "opening must not write the ID files");
    }

    #[test]
    fn the_first_change_prepares_the_host_once() {
        let tmp = tempfile::tempdir().expect("tmp");
        let files = id_files(tmp.path());
        let lxc_path = tmp.path().join("a/lxc");
        let (backend, _) = LxcBackend::open_with_id_files(&settings(&lxc_path), files.clone()).expect("open");
        backend.prepare_host().expect("prepare");
        backend.prepare_host().expect("prepare again");
        assert_eq!(mode(&lxc_path), LXC_PATH_MODE);
        assert_eq!(std::fs::read_to_string(&files[0]).expect("read"), "someone:100000:65536\nroot:100000:65536\n");
        assert_eq!(std::fs::read_to_string(&files[1]).expect("read"), "root:200000:65536\n");
        // Opened again, the host is as it should be: nothing left to say.
        let (_, notes) = LxcBackend::open_with_id_files(&settings(&lxc_path), files).expect("open");
        assert!(notes.is_empty(), "{notes:?}");
    }

    #[test]
    fn one_directory_has_one_path_however_it_is_spelled() {
        let tmp = tempfile::tempdir().expect("tmp");
        let real = std::fs::canonicalize(tmp.path()).expect("real").join("lxc");
        std::fs::create_dir_all(&real).expect("mkdir");
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        for spelling in [
            format!("{}/", real.display()),
            format!("{}//", real.display()),
            format!("{}/.", real.display()),
            format!("{}/x/..", real.display()),
            link.display().to_string(),
        ] {
            assert_eq!(canonical_path(Path::new(&spelling)), real, "{spelling}");
        }
        // Not made yet: what exists is resolved, the rest kept without `.` and empty parts.
        assert_eq!(canonical_path(&link.join("./new//dir")), real.join("new/dir"));
    }

    /// A stopped container of Phoenix's made by hand (its record, an LXC file, a root filesystem
    /// with `/etc/app`), for what needs no running container.
    fn stopped_container(lxc_path: &Path, id: GuestId) {
        let dir = lxc_path.join(id.to_string());
        std::fs::create_dir_all(dir.join("rootfs/etc")).expect("mkdir");
        std::fs::write(dir.join("config"), "lxc.uts.name = app\n").expect("write");
        save_state(&dir, &State::default()).expect("state");
        std::fs::write(dir.join("rootfs/etc/app"), "v1").expect("write");
    }

    #[test]
    fn a_rollback_and_a_deletion_never_leave_a_container_without_its_root_filesystem() {
        let missing = std::process::Command::new("lxc-ls")
            .arg("--version")
            .output()
            .is_err()
            .then(|| "the lxc tools are not installed".to_string());
        if !phoenix_testkit::real_component("the LXC snapshot tests", missing) {
            return;
        }
        let tmp = tempfile::tempdir().expect("tmp");
        let lxc_path = tmp.path().join("lxc");
        stopped_container(&lxc_path, 500);
        let (backend, _) = LxcBackend::open_with_id_files(&settings(&lxc_path), id_files(tmp.path())).expect("open");
        let dir = lxc_path.join("500");
        let snapshots = |b: &LxcBackend| b.observe_guest(500).expect("observe").expect("500").snapshots;
        let name = "phoenix-pre-20250131-235959";
        backend.snapshot(500, name).expect("snapshot");
        std::fs::write(dir.join("rootfs/etc/app"), "v2").expect("write");
        std::fs::write(dir.join("rootfs/etc/new"), "x").expect("write");

        // What a rollback killed after its exchange left beside the root filesystem goes.
        std::fs::create_dir_all(dir.join(ROLLBACK_STAGING).join("junk")).expect("mkdir");
        backend.rollback(500, name).expect("rollback");
        assert_eq!(std::fs::read_to_string(dir.join("rootfs/etc/app")).expect("read"), "v1");
        assert!(!dir.join("rootfs/etc/new").exists());
        assert!(!dir.join(ROLLBACK_STAGING).exists() && !dir.join(ROOTFS_ASIDE).exists());
        assert!(snapshots(&backend).contains(name), "the snapshot stays");
        assert_eq!(backend.observe_guest(500).expect("observe").expect("500").power, PowerState::Stopped);
        for bad in ["missing", "../500", ".phoenix-new-x", ""] {
            assert!(backend.rollback(500, bad).is_err(), "{bad:?}");
        }

        // Killed between the two renames of a filesystem that cannot exchange: still a
        // container (never taken for remains), and whole again before anything else is done.
        std::fs::rename(dir.join("rootfs"), dir.join(ROOTFS_ASIDE)).expect("aside");
        assert!(backend.observe().expect("observe").guests.contains_key(&500));
        backend.recover_rootfs(500).expect("recover");
        assert_eq!(std::fs::read_to_string(dir.join("rootfs/etc/app")).expect("read"), "v1");
        assert!(!dir.join(ROOTFS_ASIDE).exists());

        // The two-rename way, as such a filesystem takes it.
        std::fs::write(dir.join("rootfs/etc/app"), "v3").expect("write");
        let snap = dir.join("snapshots").join(name).join("rootfs");
        backend.copy_tree(&snap, &dir.join(ROLLBACK_STAGING)).expect("copy");
        std::fs::rename(dir.join("rootfs"), dir.join(ROOTFS_ASIDE)).expect("aside");
        std::fs::rename(dir.join(ROLLBACK_STAGING), dir.join("rootfs")).expect("in place");
        backend.recover_rootfs(500).expect("recover");
        assert_eq!(std::fs::read_to_string(dir.join("rootfs/etc/app")).expect("read"), "v1");
        assert!(!dir.join(ROOTFS_ASIDE).exists(), "the old one left aside is removed");

        // Deleted: gone from the observation and the record; one a killed deletion left is no
        // snapshot, and goes with the next deletion.
        backend.snapshot(500, "other").expect("snapshot");
        std::fs::create_dir_all(dir.join("snapshots").join(format!("{DELETING_PREFIX}old/rootfs"))).expect("mkdir");
        assert_eq!(snapshots(&backend).into_iter().collect::<Vec<_>>(), ["other", name]);
        backend.delete_snapshot(500, name).expect("delete");
        assert_eq!(snapshots(&backend).into_iter().collect::<Vec<_>>(), ["other"]);
        assert_eq!(backend.state(500).expect("state").snapshots, BTreeSet::from(["other".to_string()]));
        let left: Vec<String> = std::fs::read_dir(dir.join("snapshots"))
            .expect("list")
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .collect();
        assert_eq!(left, ["other"]);
        assert!(backend.delete_snapshot(500, name).is_err(), "deleted already");
        assert_eq!(std::fs::read_to_string(dir.join("rootfs/etc/app")).expect("read"), "v1", "the container stays");
    }

    #[test]
    fn the_listing_of_running_containers_is_read_with_their_process_and_addresses() {
        let text = "NAME STATE   PID   IPV4\n\
                    700  RUNNING 4242  10.79.0.70, 172.17.0.1\n\
                    701  STOPPED -     -\n\
                    702  RUNNING 4343  -\n\
                    web  RUNNING 1     10.0.0.1\n";
        let live = parse_live(text);
        assert_eq!(live.keys().copied().collect::<Vec<_>>(), [700, 702]);
        assert_eq!(live[&700], Live { pid: Some(4242), ipv4: vec!["10.79.0.70".into(), "172.17.0.1".into()] });
        assert_eq!(live[&702], Live { pid: Some(4343), ipv4: Vec::new() });
    }
}
