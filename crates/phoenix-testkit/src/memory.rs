//! An in-memory [`Backend`]: a test double for the engine.
//!
//! It keeps guests, their configuration, snapshots and files in memory, records every call with
//! its start and end instants, can sleep a fixed latency inside each call, and fails calls on
//! demand ([`FailRule`]). Like Proxmox, it refuses a second clone of a source while another clone
//! of that source is in progress, with a transient "can't lock file" error. A snapshot keeps the
//! guest's files and configuration, which a rollback restores; a backend made
//! [`MemoryBackend::without_snapshots`] takes none, as a backend without them.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use phoenix_backend::{
    Backend, BackendError, Capabilities, ChangeEffect, CreateRequest, CreateSource, Delivery, ExecOutput, ExecRequest,
    Field, FieldChange, FilePush, GuestConfig, GuestId, GuestKind, Observation, ObservedGuest, PowerState,
};

/// Which backend method a call was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// [`Backend::observe`].
    Observe,
    /// [`Backend::observe_guest`].
    ObserveGuest,
    /// [`Backend::create`].
    Create,
    /// [`Backend::update_config`].
    UpdateConfig,
    /// [`Backend::start`].
    Start,
    /// [`Backend::stop`].
    Stop,
    /// [`Backend::snapshot`].
    Snapshot,
    /// [`Backend::rollback`].
    Rollback,
    /// [`Backend::delete_snapshot`].
    DeleteSnapshot,
    /// [`Backend::exec`].
    Exec,
    /// [`Backend::read_file`].
    ReadFile,
    /// [`Backend::push_file`].
    PushFile,
    /// [`Backend::destroy`].
    Destroy,
    /// [`Backend::adopt`].
    Adopt,
    /// [`Backend::make_template`].
    MakeTemplate,
}

impl Method {
    /// Whether a call of this method may change a guest (everything but observing and reading).
    pub fn is_mutating(self) -> bool {
        !matches!(self, Method::Observe | Method::ObserveGuest | Method::ReadFile)
    }
}

/// One recorded call.
#[derive(Debug, Clone)]
pub struct CallRecord {
    /// The method called.
    pub method: Method,
    /// The guest it was about, if any (`None` for [`Method::Observe`]).
    pub guest: Option<GuestId>,
    /// What it asked: argv joined with spaces for [`Method::Exec`], the path for file calls, the
    /// changed field names joined with `,` for [`Method::UpdateConfig`], the snapshot name for
    /// [`Method::Snapshot`], [`Method::Rollback`] and [`Method::DeleteSnapshot`], `template
    /// <source>` or `clone <id>@<snapshot>` for [`Method::Create`], empty otherwise.
    pub detail: String,
    /// When the call began.
    pub start: Instant,
    /// When it returned (after the latency).
    pub end: Instant,
    /// Whether it succeeded.
    pub ok: bool,
}

/// A failure to inject: the next `times` calls matching it fail with `error`. `None` matches
/// anything.
#[derive(Debug, Clone)]
pub struct FailRule {
    /// The method to fail.
    pub method: Option<Method>,
    /// The guest to fail calls about.
    pub guest: Option<GuestId>,
    /// A text the call's [`CallRecord::detail`] must contain.
    pub detail_contains: Option<String>,
    /// How many more matching calls fail.
    pub times: usize,
    /// The error they fail with.
    pub error: BackendError,
}

impl FailRule {
    /// A rule failing the next call of `method` (any guest, any detail) with `error`.
    pub fn new(method: Method, error: BackendError) -> FailRule {
        FailRule { method: Some(method), guest: None, detail_contains: None, times: 1, error }
    }

    /// Restricts the rule to calls about `guest`.
    pub fn for_guest(mut self, guest: GuestId) -> FailRule {
        self.guest = Some(guest);
        self
    }

    /// Restricts the rule to calls whose detail contains `text`.
    pub fn containing(mut self, text: impl Into<String>) -> FailRule {
        self.detail_contains = Some(text.into());
        self
    }

    /// Sets how many matching calls fail.
    pub fn times(mut self, times: usize) -> FailRule {
        self.times = times;
        self
    }

    fn matches(&self, method: Method, guest: Option<GuestId>, detail: &str) -> bool {
        self.times > 0
            && self.method.is_none_or(|m| m == method)
            && self.guest.is_none_or(|g| Some(g) == guest)
            && self.detail_contains.as_deref().is_none_or(|d| detail.contains(d))
    }
}

/// A guest's state in memory (for assertions).
#[derive(Debug, Clone)]
pub struct MemGuest {
    /// What [`Backend::observe`] shows of it.
    pub observed: ObservedGuest,
    /// Files inside it, by absolute path.
    pub files: BTreeMap<String, Vec<u8>>,
    /// How many times it was started.
    pub starts: usize,
    /// How many times it was stopped.
    pub stops: usize,
}

impl MemGuest {
    fn new(observed: ObservedGuest) -> MemGuest {
        MemGuest { observed, files: BTreeMap::new(), starts: 0, stops: 0 }
    }
}

#[derive(Debug, Default)]
struct State {
    guests: BTreeMap<GuestId, MemGuest>,
    /// Files of each guest at each snapshot, for clones and rollbacks.
    snapshot_files: HashMap<(GuestId, String), BTreeMap<String, Vec<u8>>>,
    /// The configuration of each guest at each snapshot, for rollbacks.
    snapshot_configs: HashMap<(GuestId, String), GuestConfig>,
    calls: Vec<CallRecord>,
    rules: Vec<FailRule>,
    effects: HashMap<Field, ChangeEffect>,
    exec_status: Vec<(String, i32, String)>,
    /// Exit statuses of commands by a text their whole argv (joined with spaces) contains.
    command_status: Vec<(String, i32)>,
    /// Sources with a clone in progress.
    cloning: HashSet<GuestId>,
}

impl State {
    /// Consumes the first matching rule, returning its error.
    fn take_rule(&mut self, method: Method, guest: Option<GuestId>, detail: &str) -> Option<BackendError> {
        let rule = self.rules.iter_mut().find(|r| r.matches(method, guest, detail))?;
        rule.times -= 1;
        Some(rule.error.clone())
    }

    fn guest_mut(&mut self, id: GuestId) -> Result<&mut MemGuest, BackendError> {
        self.guests.get_mut(&id).ok_or_else(|| BackendError::not_found(format!("guest {id} does not exist")))
    }

    fn create(&mut self, request: &CreateRequest) -> Result<(), BackendError> {
        let id = request.id;
        if self.guests.contains_key(&id) {
            return Err(BackendError::permanent(Delivery::NotSent, format!("guest {id} already exists")));
        }
        let files = match &request.source {
            CreateSource::Template(t) if t.is_empty() => {
                return Err(BackendError::permanent(Delivery::NotSent, format!("no OS template given for guest {id}")));
            }
            CreateSource::Template(_) => BTreeMap::new(),
            CreateSource::Clone { source, snapshot } => {
                let Some(src) = self.guests.get(source) else {
                    return Err(BackendError::permanent(
                        Delivery::NotSent,
                        format!("cannot clone {id} from {source}: guest {source} does not exist"),
                    ));
                };
                // Without a snapshot, only a template is cloned (as it is); like Proxmox.
                if snapshot.is_empty() && !src.observed.template {
                    return Err(BackendError::permanent(
                        Delivery::NotSent,
                        format!(
                            "cannot clone {id} from {source}: {source} is not a template and no snapshot was named"
                        ),
                    ));
                }
                if !snapshot.is_empty() && !src.observed.snapshots.contains(snapshot) {
                    return Err(BackendError::permanent(
                        Delivery::NotSent,
                        format!("cannot clone {id} from {source}: {source} has no snapshot '{snapshot}'"),
                    ));
                }
                self.snapshot_files.get(&(*source, snapshot.clone())).unwrap_or(&src.files).clone()
            }
        };
        let mut config = request.config.clone();
        if !config.has(&Field::NetMac) {
            config.set(Field::NetMac, generated_mac(id));
        }
        let observed = ObservedGuest {
            id,
            kind: request.kind,
            node: request.node.clone(),
            power: PowerState::Stopped,
            config,
            snapshots: BTreeSet::new(),
            managed: true,
            template: false,
            half_made: None,
            unreachable: None,
            markers: None,
        };
        self.guests.insert(id, MemGuest { files, ..MemGuest::new(observed) });
        Ok(())
    }

    fn exec(&mut self, id: GuestId, request: &ExecRequest) -> Result<ExecOutput, BackendError> {
        let joined = request.argv.join(" ");
        let status = self
            .command_status
            .iter()
            .find(|(pattern, _)| joined.contains(pattern.as_str()))
            .map(|(_, status)| (*status, String::new()))
            .or_else(|| {
                self.exec_status
                    .iter()
                    .find(|(pattern, _, _)| request.argv.first().is_some_and(|a| a.contains(pattern.as_str())))
                    .map(|(_, status, stderr)| (*status, stderr.clone()))
            });
        let guest = self.guest_mut(id)?;
        if guest.observed.power != PowerState::Running {
            return Err(BackendError::permanent(
                Delivery::NotSent,
                format!("cannot run '{}' in guest {id}: not running", request.argv.join(" ")),
            ));
        }
        let (status, stderr) = status.unwrap_or((0, String::new()));
        if let (0, [rm, rf, dir]) = (status, request.argv.as_slice())
            && rm == "rm"
            && rf == "-rf"
        {
            let prefix = format!("{}/", dir.trim_end_matches('/'));
            guest.files.retain(|path, _| path != dir && !path.starts_with(&prefix));
        }
        Ok(ExecOutput { status, stdout: Vec::new(), stderr: stderr.into_bytes() })
    }
}

/// The MAC address given to a created guest whose configuration has none: `02:00:00:xx:xx:xx`
/// from the low 24 bits of its ID.
pub fn generated_mac(id: GuestId) -> String {
    format!("02:00:00:{:02x}:{:02x}:{:02x}", (id >> 16) & 0xff, (id >> 8) & 0xff, id & 0xff)
}

/// An in-memory backend for the engine's tests. Shared between threads; every call is recorded.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    state: Mutex<State>,
    latency: Duration,
    /// It takes no snapshots ([`MemoryBackend::without_snapshots`]).
    no_snapshots: bool,
}

impl MemoryBackend {
    /// An empty backend without latency.
    pub fn new() -> MemoryBackend {
        MemoryBackend::default()
    }

    /// Makes every call sleep `latency` (inside the call, between its recorded start and end).
    pub fn with_latency(mut self, latency: Duration) -> MemoryBackend {
        self.latency = latency;
        self
    }

    /// A backend that takes no snapshots: its capabilities say so, and snapshot calls are refused
    /// as unsupported.
    pub fn without_snapshots(mut self) -> MemoryBackend {
        self.no_snapshots = true;
        self
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn pause(&self) {
        if !self.latency.is_zero() {
            thread::sleep(self.latency);
        }
    }

    /// Injects a failure: the next `rule.times` matching calls fail. Rules are checked in the
    /// order they were added; the first matching one with calls left is consumed.
    pub fn fail(&self, rule: FailRule) {
        self.lock().rules.push(rule);
    }

    /// Every call so far, in the order they returned.
    pub fn calls(&self) -> Vec<CallRecord> {
        self.lock().calls.clone()
    }

    /// The calls of mutating methods (see [`Method::is_mutating`]), in the order they returned.
    pub fn mutating_calls(&self) -> Vec<CallRecord> {
        self.lock().calls.iter().filter(|c| c.method.is_mutating()).cloned().collect()
    }

    /// Forgets the calls recorded so far.
    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    /// A guest's state.
    pub fn guest(&self, id: GuestId) -> Option<MemGuest> {
        self.lock().guests.get(&id).cloned()
    }

    /// Adds (or replaces) a guest, without files, e.g. one Phoenix did not create
    /// (`managed: false`). Not recorded as a call.
    pub fn insert(&self, guest: ObservedGuest) {
        let mut st = self.lock();
        st.snapshot_files.retain(|(id, _), _| *id != guest.id);
        st.snapshot_configs.retain(|(id, _), _| *id != guest.id);
        st.guests.insert(guest.id, MemGuest::new(guest));
    }

    /// Sets how a change of `field` takes effect, overriding the default.
    pub fn set_change_effect(&self, field: &Field, effect: ChangeEffect) {
        self.lock().effects.insert(field.clone(), effect);
    }

    /// Makes every command whose `argv[0]` contains `argv0_contains` exit with `status` and write
    /// `stderr`, until changed (a status of 0 with empty stderr restores the default). The first
    /// pattern set that matches wins; setting a pattern again replaces it in place.
    pub fn set_exec_status(&self, argv0_contains: &str, status: i32, stderr: &str) {
        let mut st = self.lock();
        match st.exec_status.iter_mut().find(|(p, _, _)| p == argv0_contains) {
            Some(entry) => *entry = (argv0_contains.to_string(), status, stderr.to_string()),
            None => st.exec_status.push((argv0_contains.to_string(), status, stderr.to_string())),
        }
    }

    /// Makes every command whose whole argument vector (joined with spaces) contains `text` exit
    /// with `status` (checked before the patterns of [`MemoryBackend::set_exec_status`]); setting
    /// a text again replaces its status.
    pub fn set_command_status(&self, text: &str, status: i32) {
        let mut st = self.lock();
        match st.command_status.iter_mut().find(|(t, _)| t == text) {
            Some(entry) => entry.1 = status,
            None => st.command_status.push((text.to_string(), status)),
        }
    }

    /// Records a finished call, returning its result.
    fn finish<T>(
        st: &mut State,
        method: Method,
        guest: Option<GuestId>,
        detail: String,
        start: Instant,
        result: Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        st.calls.push(CallRecord { method, guest, detail, start, end: Instant::now(), ok: result.is_ok() });
        result
    }

    /// One call: sleep the latency, apply failure rules, then `body`, and record it.
    fn run<T>(
        &self,
        method: Method,
        guest: Option<GuestId>,
        detail: String,
        body: impl FnOnce(&mut State) -> Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        let start = Instant::now();
        self.pause();
        let mut st = self.lock();
        let result = match st.take_rule(method, guest, &detail) {
            Some(e) => Err(e),
            None => body(&mut st),
        };
        MemoryBackend::finish(&mut st, method, guest, detail, start, result)
    }
}

impl Backend for MemoryBackend {
    fn name(&self) -> &str {
        "memory"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            kinds: [GuestKind::Lxc, GuestKind::Vm].into_iter().collect(),
            clone: true,
            snapshots: !self.no_snapshots,
            templates: true,
            gpu: true,
            concurrent_clones: false,
            probe_at_plan: false,
            fields: Field::CONTAINER.iter().chain(Field::VM).cloned().collect(),
        }
    }

    fn observe(&self) -> Result<Observation, BackendError> {
        self.run(Method::Observe, None, String::new(), |st| {
            Ok(Observation { guests: st.guests.iter().map(|(id, g)| (*id, g.observed.clone())).collect() })
        })
    }

    fn observe_guest(&self, id: GuestId) -> Result<Option<ObservedGuest>, BackendError> {
        self.run(Method::ObserveGuest, Some(id), String::new(), |st| Ok(st.guests.get(&id).map(|g| g.observed.clone())))
    }

    fn create(&self, request: &CreateRequest) -> Result<(), BackendError> {
        let start = Instant::now();
        let detail = match &request.source {
            CreateSource::Template(t) => format!("template {t}"),
            CreateSource::Clone { source, snapshot } => format!("clone {source}@{snapshot}"),
        };
        // A clone holds its source's lock for the whole call, latency included.
        let clone_source = match &request.source {
            CreateSource::Clone { source, .. } => Some(*source),
            CreateSource::Template(_) => None,
        };
        let held = clone_source.map(|src| self.lock().cloning.insert(src));
        self.pause();
        let mut st = self.lock();
        if let (Some(src), Some(true)) = (clone_source, held) {
            st.cloning.remove(&src);
        }
        let result = match st.take_rule(Method::Create, Some(request.id), &detail) {
            Some(e) => Err(e),
            None => match (clone_source, held) {
                (Some(src), Some(false)) => Err(BackendError::transient(
                    Delivery::NotSent,
                    format!("can't lock file '/var/lock/qemu-server/lock-{src}.conf' - got timeout"),
                )),
                _ => st.create(request),
            },
        };
        MemoryBackend::finish(&mut st, Method::Create, Some(request.id), detail, start, result)
    }

    fn update_config(&self, id: GuestId, changes: &[FieldChange]) -> Result<(), BackendError> {
        let detail = changes.iter().map(|c| c.field.to_string()).collect::<Vec<_>>().join(",");
        self.run(Method::UpdateConfig, Some(id), detail, |st| {
            let guest = st.guest_mut(id)?;
            for c in changes {
                match &c.new {
                    Some(v) => guest.observed.config.set(c.field.clone(), v.clone()),
                    None => {
                        guest.observed.config.remove(&c.field);
                    }
                }
            }
            Ok(())
        })
    }

    fn start(&self, id: GuestId) -> Result<(), BackendError> {
        self.run(Method::Start, Some(id), String::new(), |st| {
            let guest = st.guest_mut(id)?;
            if guest.observed.power == PowerState::Running {
                return Err(BackendError::permanent(Delivery::NotSent, format!("guest {id} is already running")));
            }
            if guest.observed.template {
                return Err(BackendError::permanent(Delivery::NotSent, format!("guest {id} is a template")));
            }
            guest.observed.power = PowerState::Running;
            guest.starts += 1;
            Ok(())
        })
    }

    fn stop(&self, id: GuestId) -> Result<(), BackendError> {
        self.run(Method::Stop, Some(id), String::new(), |st| {
            let guest = st.guest_mut(id)?;
            if guest.observed.power == PowerState::Stopped {
                return Err(BackendError::permanent(Delivery::NotSent, format!("guest {id} is not running")));
            }
            guest.observed.power = PowerState::Stopped;
            guest.stops += 1;
            Ok(())
        })
    }

    fn snapshot(&self, id: GuestId, name: &str) -> Result<(), BackendError> {
        let unsupported = self.no_snapshots;
        self.run(Method::Snapshot, Some(id), name.to_string(), |st| {
            if unsupported {
                return Err(BackendError::unsupported("the memory backend takes no snapshots here"));
            }
            let guest = st.guest_mut(id)?;
            if guest.observed.template {
                return Err(BackendError::permanent(Delivery::NotSent, format!("guest {id} is a template")));
            }
            if !guest.observed.snapshots.insert(name.to_string()) {
                return Err(BackendError::permanent(
                    Delivery::NotSent,
                    format!("snapshot '{name}' of guest {id} already exists"),
                ));
            }
            let (files, config) = (guest.files.clone(), guest.observed.config.clone());
            st.snapshot_files.insert((id, name.to_string()), files);
            st.snapshot_configs.insert((id, name.to_string()), config);
            Ok(())
        })
    }

    /// Restores the files and configuration the snapshot kept; a running guest is stopped and
    /// started again (counted in [`MemGuest::stops`] and [`MemGuest::starts`]).
    fn rollback(&self, id: GuestId, name: &str) -> Result<(), BackendError> {
        let unsupported = self.no_snapshots;
        self.run(Method::Rollback, Some(id), name.to_string(), |st| {
            if unsupported {
                return Err(BackendError::unsupported("the memory backend does not roll back here"));
            }
            let key = (id, name.to_string());
            let (files, config) = (st.snapshot_files.get(&key).cloned(), st.snapshot_configs.get(&key).cloned());
            let guest = st.guest_mut(id)?;
            if guest.observed.template {
                return Err(BackendError::permanent(Delivery::NotSent, format!("guest {id} is a template")));
            }
            let (Some(files), Some(config)) = (files, config) else {
                return Err(BackendError::permanent(Delivery::NotSent, format!("guest {id} has no snapshot '{name}'")));
            };
            guest.files = files;
            guest.observed.config = config;
            if guest.observed.power == PowerState::Running {
                guest.stops += 1;
                guest.starts += 1;
            }
            Ok(())
        })
    }

    fn delete_snapshot(&self, id: GuestId, name: &str) -> Result<(), BackendError> {
        let unsupported = self.no_snapshots;
        self.run(Method::DeleteSnapshot, Some(id), name.to_string(), |st| {
            if unsupported {
                return Err(BackendError::unsupported("the memory backend does not delete snapshots here"));
            }
            let guest = st.guest_mut(id)?;
            if !guest.observed.snapshots.remove(name) {
                return Err(BackendError::permanent(Delivery::NotSent, format!("guest {id} has no snapshot '{name}'")));
            }
            st.snapshot_files.remove(&(id, name.to_string()));
            st.snapshot_configs.remove(&(id, name.to_string()));
            Ok(())
        })
    }

    fn make_template(&self, id: GuestId) -> Result<(), BackendError> {
        self.run(Method::MakeTemplate, Some(id), String::new(), |st| {
            let guest = st.guest_mut(id)?;
            let refuse = |why: &str| Err(BackendError::permanent(Delivery::NotSent, format!("guest {id} {why}")));
            if guest.observed.template {
                return refuse("is a template already");
            }
            if guest.observed.power == PowerState::Running {
                return refuse("runs: only a stopped guest becomes a template");
            }
            if !guest.observed.snapshots.is_empty() {
                return refuse("has snapshots");
            }
            guest.observed.template = true;
            Ok(())
        })
    }

    fn exec(&self, id: GuestId, request: &ExecRequest) -> Result<ExecOutput, BackendError> {
        self.run(Method::Exec, Some(id), request.argv.join(" "), |st| st.exec(id, request))
    }

    fn read_file(&self, id: GuestId, path: &str) -> Result<Option<Vec<u8>>, BackendError> {
        self.run(Method::ReadFile, Some(id), path.to_string(), |st| Ok(st.guest_mut(id)?.files.get(path).cloned()))
    }

    fn push_file(&self, id: GuestId, file: &FilePush) -> Result<(), BackendError> {
        self.run(Method::PushFile, Some(id), file.path.clone(), |st| {
            st.guest_mut(id)?.files.insert(file.path.clone(), file.content.clone());
            Ok(())
        })
    }

    fn destroy(&self, id: GuestId) -> Result<(), BackendError> {
        self.run(Method::Destroy, Some(id), String::new(), |st| {
            st.guest_mut(id)?;
            st.guests.remove(&id);
            st.snapshot_files.retain(|(g, _), _| *g != id);
            st.snapshot_configs.retain(|(g, _), _| *g != id);
            Ok(())
        })
    }

    /// A guest Phoenix did not create is adopted as it is: it shows the same configuration.
    fn check_adopt(&self, guest: &ObservedGuest, _desired: &GuestConfig) -> Result<GuestConfig, BackendError> {
        Ok(guest.config.clone())
    }

    fn adopt(&self, id: GuestId, _desired: &GuestConfig) -> Result<(), BackendError> {
        self.run(Method::Adopt, Some(id), String::new(), |st| {
            st.guest_mut(id)?.observed.managed = true;
            Ok(())
        })
    }

    fn change_effect(&self, field: &Field) -> ChangeEffect {
        if let Some(effect) = self.lock().effects.get(field) {
            return *effect;
        }
        match field {
            Field::Cores
            | Field::MemoryMb
            | Field::SwapMb
            | Field::Tags
            | Field::Onboot
            | Field::Startup
            | Field::Firewall
            | Field::FirewallRules
            | Field::NetIp
            | Field::NetGw
            | Field::NetNameservers
            | Field::DiskGb => ChangeEffect::Live,
            Field::Unprivileged | Field::Storage => ChangeEffect::Recreate,
            Field::Hostname
            | Field::NetName
            | Field::NetBridge
            | Field::NetMac
            | Field::Flags
            | Field::Idmap
            | Field::Gpus
            | Field::LxcRaw
            | Field::Apparmor
            | Field::CiUser
            | Field::CiSshkeys
            | Field::CiPassword
            | Field::Mount(_) => ChangeEffect::Restart,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier};

    use phoenix_backend::{ErrorKind, GuestConfig};

    use super::*;

    fn template(id: GuestId) -> CreateRequest {
        CreateRequest {
            id,
            kind: GuestKind::Lxc,
            node: None,
            source: CreateSource::Template("local:vztmpl/debian.tar.zst".into()),
            config: GuestConfig::default(),
        }
    }

    fn clone_of(id: GuestId, source: GuestId, snapshot: &str) -> CreateRequest {
        CreateRequest { source: CreateSource::Clone { source, snapshot: snapshot.into() }, ..template(id) }
    }

    fn push(path: &str, content: &str) -> FilePush {
        FilePush { path: path.into(), content: content.as_bytes().to_vec(), mode: 0o644, uid: 0, gid: 0 }
    }

    fn exec(argv: &[&str]) -> ExecRequest {
        ExecRequest::new(argv.iter().copied(), Duration::from_secs(5))
    }

    #[test]
    fn records_calls_with_latency() {
        let latency = Duration::from_millis(20);
        let b = MemoryBackend::new().with_latency(latency);
        b.create(&template(100)).expect("create");
        b.observe().expect("observe");
        assert!(b.start(200).is_err());
        let calls = b.calls();
        assert_eq!(
            calls.iter().map(|c| c.method).collect::<Vec<_>>(),
            [Method::Create, Method::Observe, Method::Start]
        );
        assert!(calls.iter().all(|c| c.end.duration_since(c.start) >= latency));
        assert_eq!(calls[0].detail, "template local:vztmpl/debian.tar.zst");
        assert_eq!(calls[0].guest, Some(100));
        assert!(calls[0].ok && calls[1].ok && !calls[2].ok);
        assert_eq!(b.mutating_calls().len(), 2);
        b.clear_calls();
        assert!(b.calls().is_empty());
    }

    #[test]
    fn fail_rules_are_consumed() {
        let b = MemoryBackend::new();
        b.create(&template(100)).expect("create");
        b.start(100).expect("start");
        b.fail(FailRule {
            method: Some(Method::Exec),
            guest: Some(100),
            detail_contains: Some("apt".into()),
            times: 2,
            error: BackendError::transient(Delivery::MaybeApplied, "boom"),
        });
        b.exec(100, &exec(&["true"])).expect("other commands pass");
        for _ in 0..2 {
            let e = b.exec(100, &exec(&["apt-get", "update"])).expect_err("injected");
            assert_eq!(e.message, "boom");
            assert_eq!(e.delivery, Delivery::MaybeApplied);
        }
        b.exec(100, &exec(&["apt-get", "update"])).expect("rule used up");
        let oks: Vec<bool> = b.calls().iter().filter(|c| c.method == Method::Exec).map(|c| c.ok).collect();
        assert_eq!(oks, [true, false, false, true]);

        // A failed call changes nothing.
        b.fail(FailRule::new(Method::PushFile, BackendError::transient(Delivery::NotSent, "no")));
        assert!(b.push_file(100, &push("/a", "x")).is_err());
        assert!(b.guest(100).expect("guest").files.is_empty());
        b.push_file(100, &push("/a", "x")).expect("push");
    }

    #[test]
    fn clone_requires_the_snapshot() {
        let b = MemoryBackend::new();
        let e = b.create(&clone_of(101, 100, "tpl")).expect_err("no source");
        assert_eq!(e.kind, ErrorKind::Permanent);
        b.create(&template(100)).expect("create");
        let e = b.create(&clone_of(101, 100, "tpl")).expect_err("no snapshot");
        assert_eq!(e.kind, ErrorKind::Permanent);
        assert!(e.message.contains("no snapshot 'tpl'"), "{}", e.message);
        b.snapshot(100, "tpl").expect("snapshot");
        assert!(b.snapshot(100, "tpl").is_err());
        b.create(&clone_of(101, 100, "tpl")).expect("clone");
        let g = b.guest(101).expect("clone exists");
        assert!(g.observed.managed && g.observed.snapshots.is_empty());
        assert_eq!(g.observed.power, PowerState::Stopped);
        assert_eq!(b.create(&template(101)).expect_err("exists").kind, ErrorKind::Permanent);
        let empty = CreateRequest { source: CreateSource::Template(String::new()), ..template(102) };
        assert_eq!(b.create(&empty).expect_err("empty template").kind, ErrorKind::Permanent);
    }

    #[test]
    fn clone_copies_files() {
        let b = MemoryBackend::new();
        b.create(&template(100)).expect("create");
        b.push_file(100, &push("/etc/phoenix/marker", "v1")).expect("push");
        b.snapshot(100, "tpl").expect("snapshot");
        b.push_file(100, &push("/after-snapshot", "x")).expect("push");
        let mut config = GuestConfig::default();
        config.set(Field::Hostname, "web");
        b.create(&CreateRequest { config, ..clone_of(101, 100, "tpl") }).expect("clone");
        let g = b.guest(101).expect("clone exists");
        assert_eq!(g.files.get("/etc/phoenix/marker").map(Vec::as_slice), Some(&b"v1"[..]));
        assert!(!g.files.contains_key("/after-snapshot"), "a clone has the files as of the snapshot");
        assert_eq!(g.observed.config.text(&Field::Hostname), Some("web"));
        assert_eq!(b.read_file(101, "/etc/phoenix/marker").expect("read"), Some(b"v1".to_vec()));
        assert_eq!(b.read_file(101, "/missing").expect("read"), None);
    }

    #[test]
    fn concurrent_clones_of_one_source_hit_the_lock() {
        let b = Arc::new(MemoryBackend::new().with_latency(Duration::from_millis(50)));
        b.create(&template(100)).expect("create");
        b.snapshot(100, "tpl").expect("snapshot");
        let barrier = Arc::new(Barrier::new(2));
        let threads: Vec<_> = [101, 102]
            .into_iter()
            .map(|id| {
                let (b, barrier) = (Arc::clone(&b), Arc::clone(&barrier));
                thread::spawn(move || {
                    barrier.wait();
                    b.create(&clone_of(id, 100, "tpl"))
                })
            })
            .collect();
        let results: Vec<_> = threads.into_iter().map(|t| t.join().expect("thread")).collect();
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
        let e = results.iter().find_map(|r| r.as_ref().err()).expect("one failed");
        assert!(e.is_transient());
        assert_eq!(e.delivery, Delivery::NotSent);
        assert_eq!(e.message, "can't lock file '/var/lock/qemu-server/lock-100.conf' - got timeout");
        // Once the first clone is done, the source is free again.
        let failed = if b.guest(101).is_some() { 102 } else { 101 };
        b.create(&clone_of(failed, 100, "tpl")).expect("clone after the lock is released");
    }

    #[test]
    fn exec_rm_rf_removes_staged_files() {
        let b = MemoryBackend::new();
        b.create(&template(100)).expect("create");
        b.push_file(100, &push("/tmp/phoenix/run.sh", "#!/bin/sh")).expect("push");
        b.push_file(100, &push("/tmp/phoenix/lib/x", "x")).expect("push");
        b.push_file(100, &push("/tmp/phoenix2/keep", "k")).expect("push");
        b.push_file(100, &push("/etc/keep", "k")).expect("push");
        let e = b.exec(100, &exec(&["rm", "-rf", "/tmp/phoenix"])).expect_err("stopped");
        assert!(e.message.contains("not running"));
        b.start(100).expect("start");
        assert!(b.start(100).is_err());
        let out = b.exec(100, &exec(&["rm", "-rf", "/tmp/phoenix"])).expect("exec");
        assert!(out.success());
        let files: Vec<String> = b.guest(100).expect("guest").files.into_keys().collect();
        assert_eq!(files, ["/etc/keep", "/tmp/phoenix2/keep"]);
        assert_eq!(b.calls().last().map(|c| c.detail.clone()), Some("rm -rf /tmp/phoenix".into()));

        b.set_exec_status("run.sh", 3, "failed");
        let out = b.exec(100, &exec(&["/tmp/x/run.sh", "--go"])).expect("exec");
        assert_eq!((out.status, out.stderr), (3, b"failed".to_vec()));
        b.stop(100).expect("stop");
        assert!(b.stop(100).is_err());
        let g = b.guest(100).expect("guest");
        assert_eq!((g.starts, g.stops), (1, 1));
    }

    #[test]
    fn a_rollback_restores_the_snapshot_and_a_deleted_snapshot_is_gone() {
        let b = MemoryBackend::new();
        b.create(&template(100)).expect("create");
        b.start(100).expect("start");
        b.push_file(100, &push("/etc/app", "v1")).expect("push");
        b.snapshot(100, "before").expect("snapshot");
        b.push_file(100, &push("/etc/app", "v2")).expect("push");
        b.push_file(100, &push("/etc/new", "x")).expect("push");
        b.update_config(100, &[FieldChange { field: Field::Cores, old: None, new: Some(4u64.into()) }])
            .expect("configure");
        assert!(b.rollback(100, "missing").is_err(), "no such snapshot");
        b.rollback(100, "before").expect("rollback");
        let g = b.guest(100).expect("guest");
        assert_eq!(g.files.get("/etc/app").map(Vec::as_slice), Some(&b"v1"[..]));
        assert!(!g.files.contains_key("/etc/new"));
        assert_eq!(g.observed.config.get(&Field::Cores), None);
        assert_eq!((g.observed.power, g.starts, g.stops), (PowerState::Running, 2, 1), "stopped and started again");
        assert!(g.observed.snapshots.contains("before"), "the snapshot stays");
        b.delete_snapshot(100, "before").expect("delete");
        assert!(b.guest(100).expect("guest").observed.snapshots.is_empty());
        assert!(b.delete_snapshot(100, "before").is_err(), "deleted already");
        assert!(b.rollback(100, "before").is_err(), "deleted snapshots are not rolled back to");
        let details: Vec<(Method, String)> = b
            .calls()
            .into_iter()
            .filter(|c| matches!(c.method, Method::Rollback | Method::DeleteSnapshot))
            .map(|c| (c.method, c.detail))
            .collect();
        assert_eq!(details[1], (Method::Rollback, "before".to_string()));
        assert_eq!(details[2], (Method::DeleteSnapshot, "before".to_string()));

        let none = MemoryBackend::new().without_snapshots();
        none.create(&template(100)).expect("create");
        assert!(!none.capabilities().snapshots);
        assert_eq!(none.snapshot(100, "s").expect_err("unsupported").kind, phoenix_backend::ErrorKind::Unsupported);
    }

    #[test]
    fn generates_a_mac_when_none_is_given() {
        let b = MemoryBackend::new();
        b.create(&template(0x01_02_03)).expect("create");
        let g = b.guest(0x01_02_03).expect("guest");
        assert_eq!(g.observed.config.text(&Field::NetMac), Some("02:00:00:01:02:03"));
        let mut config = GuestConfig::default();
        config.set(Field::NetMac, "bc:24:11:00:00:01");
        b.create(&CreateRequest { config, ..template(100) }).expect("create");
        assert_eq!(b.guest(100).expect("guest").observed.config.text(&Field::NetMac), Some("bc:24:11:00:00:01"));
        assert_eq!(generated_mac(1000), "02:00:00:00:03:e8");
    }

    #[test]
    fn change_effects_and_capabilities() {
        let b = MemoryBackend::new();
        assert_eq!(b.change_effect(&Field::Cores), ChangeEffect::Live);
        assert_eq!(b.change_effect(&Field::DiskGb), ChangeEffect::Live);
        assert_eq!(b.change_effect(&Field::Storage), ChangeEffect::Recreate);
        assert_eq!(b.change_effect(&Field::mount("/data")), ChangeEffect::Restart);
        b.set_change_effect(&Field::Cores, ChangeEffect::Restart);
        assert_eq!(b.change_effect(&Field::Cores), ChangeEffect::Restart);
        let caps = b.capabilities();
        assert!(caps.fields.contains(&Field::NetMac) && caps.clone && caps.gpu && caps.templates);
        assert_eq!(b.name(), "memory");
    }

    #[test]
    fn a_template_is_made_of_a_stopped_guest_never_starts_and_is_cloned_as_it_is() {
        let b = MemoryBackend::new();
        b.create(&template(100)).expect("create");
        b.push_file(100, &push("/etc/built", "yes")).expect("push");
        let e = b.create(&clone_of(101, 100, "")).expect_err("not a template yet");
        assert!(e.message.contains("100 is not a template"), "{}", e.message);
        b.start(100).expect("start");
        assert!(b.make_template(100).is_err(), "a running guest");
        b.stop(100).expect("stop");
        b.make_template(100).expect("template");
        assert!(b.guest(100).expect("100").observed.template);
        assert!(b.make_template(100).is_err(), "a template already");
        assert!(b.start(100).is_err(), "a template never starts");
        assert!(b.snapshot(100, "s").is_err(), "a template takes no snapshot");
        b.create(&clone_of(101, 100, "")).expect("clone of the template");
        let clone = b.guest(101).expect("101");
        assert!(!clone.observed.template);
        assert_eq!(clone.files.get("/etc/built").map(Vec::as_slice), Some(&b"yes"[..]));
    }
}
