//! What a backend shows and what the engine asks of it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;

/// A guest's ID: container and VM IDs share one space.
pub type GuestId = u32;

/// A container or a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestKind {
    /// An LXC container.
    Lxc,
    /// A virtual machine.
    Vm,
}

/// Whether a guest runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerState {
    /// Started.
    Running,
    /// Stopped.
    Stopped,
}

/// A guest's configuration as normalised fields: field name → canonical text. Desired and observed
/// configurations use the same names and forms, so that equal things compare equal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct GuestConfig(pub BTreeMap<String, String>);

impl GuestConfig {
    /// The value of a field.
    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.get(field).map(String::as_str)
    }

    /// Sets a field.
    pub fn set(&mut self, field: impl Into<String>, value: impl Into<String>) {
        self.0.insert(field.into(), value.into());
    }
}

/// One field to change, or to remove.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    /// The field.
    pub field: String,
    /// Its current value, if it has one.
    pub old: Option<String>,
    /// Its new value; `None` removes the setting from the guest (see
    /// [`fields::removable`](crate::fields::removable)).
    pub new: Option<String>,
}

/// How a change of a field takes effect on a running guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeEffect {
    /// At once.
    Live,
    /// At the next start: the guest must be restarted.
    Restart,
    /// Never: the guest would have to be created again.
    Recreate,
}

/// A guest as the backend shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObservedGuest {
    /// Its ID.
    pub id: GuestId,
    /// Container or VM.
    pub kind: GuestKind,
    /// The node it is on, in a cluster.
    pub node: Option<String>,
    /// Running or stopped.
    pub power: PowerState,
    /// Its configuration, normalised.
    pub config: GuestConfig,
    /// Its snapshots' names.
    pub snapshots: BTreeSet<String>,
    /// Created by Phoenix (guests it did not create are shown, never touched).
    pub managed: bool,
    /// It is a template (Proxmox's `template: 1`, the local backend's marker): it never runs
    /// again, and clones are made from it as it is.
    pub template: bool,
    /// Left half-made by a run that died (a creation whose task is gone, its lock still there),
    /// and not something Phoenix finishes or removes on its own: why, and what to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub half_made: Option<String>,
    /// The customization record (see [`crate::Backend::read_markers`]), where the backend read it
    /// with the configuration, at no cost of its own; `None`: not read (read it with
    /// [`crate::Backend::read_markers`]).
    #[serde(skip)]
    pub markers: Option<Vec<u8>>,
}

/// What [`crate::Backend::observe_scoped`] reads beyond each guest's configuration, by guest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObserveScope {
    /// Every guest's snapshots and firewall (what [`crate::Backend::observe`] reads).
    pub everything: bool,
    /// The guests whose snapshots are read (the plan compares them for templates and template
    /// snapshots).
    pub snapshots: BTreeSet<GuestId>,
    /// The guests whose firewall (its options and rules) is read: those whose configuration sets it.
    pub firewall: BTreeSet<GuestId>,
}

impl ObserveScope {
    /// Everything of every guest.
    pub fn everything() -> ObserveScope {
        ObserveScope { everything: true, ..ObserveScope::default() }
    }

    /// Whether the snapshots of `id` are read.
    pub fn snapshots_of(&self, id: GuestId) -> bool {
        self.everything || self.snapshots.contains(&id)
    }

    /// Whether the firewall of `id` is read.
    pub fn firewall_of(&self, id: GuestId) -> bool {
        self.everything || self.firewall.contains(&id)
    }
}

/// Everything a backend shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Observation {
    /// Guests by ID.
    pub guests: BTreeMap<GuestId, ObservedGuest>,
}

/// Where a new guest comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CreateSource {
    /// An OS template: a rootfs tarball path or a storage volume ID.
    Template(String),
    /// A clone of another guest: of its snapshot, or of the guest itself when it is a template.
    Clone {
        /// The template guest.
        source: GuestId,
        /// Its snapshot; empty for a clone of the template itself (a guest made a template with
        /// [`crate::Backend::make_template`]).
        snapshot: String,
    },
}

/// A request to create a guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreateRequest {
    /// The new guest's ID.
    pub id: GuestId,
    /// Container or VM.
    pub kind: GuestKind,
    /// The node to create it on.
    pub node: Option<String>,
    /// Where it comes from.
    pub source: CreateSource,
    /// Its configuration, written before the first start.
    pub config: GuestConfig,
}

/// A command to run inside a guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExecRequest {
    /// Program and arguments, passed as they are.
    pub argv: Vec<String>,
    /// How long it may run.
    pub timeout: Duration,
}

impl ExecRequest {
    /// A command with a timeout.
    pub fn new(argv: impl IntoIterator<Item = impl Into<String>>, timeout: Duration) -> ExecRequest {
        ExecRequest { argv: argv.into_iter().map(Into::into).collect(), timeout }
    }
}

/// What a command did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    /// Exit status (`-1` when killed by a signal or the timeout).
    pub status: i32,
    /// Its standard output.
    pub stdout: Vec<u8>,
    /// Its standard error.
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    /// Whether it exited with 0.
    pub fn success(&self) -> bool {
        self.status == 0
    }
}

/// A file to write inside a guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePush {
    /// Absolute path inside the guest.
    pub path: String,
    /// Content.
    pub content: Vec<u8>,
    /// Permission bits.
    pub mode: u32,
    /// Owner inside the guest.
    pub uid: u32,
    /// Group inside the guest.
    pub gid: u32,
}

/// What a backend supports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// Kinds of guest it runs.
    pub kinds: BTreeSet<GuestKind>,
    /// It clones from snapshots.
    pub clone: bool,
    /// It takes snapshots, rolls guests back to them ([`crate::Backend::rollback`]) and deletes
    /// them ([`crate::Backend::delete_snapshot`]).
    pub snapshots: bool,
    /// It makes templates of guests ([`crate::Backend::make_template`]) and clones them.
    pub templates: bool,
    /// It passes GPUs to containers.
    pub gpu: bool,
    /// Several clones of one template can be made at once (Proxmox locks the template: it cannot).
    pub concurrent_clones: bool,
    /// Its guests' addresses are reachable from where Phoenix runs, so that a plan probes their
    /// HTTP and TCP health checks (a service that stopped answering is planned for repair).
    pub probe_at_plan: bool,
    /// Fields of the normalised configuration it understands; a desired field outside this set is
    /// refused at plan time.
    pub fields: BTreeSet<String>,
}
