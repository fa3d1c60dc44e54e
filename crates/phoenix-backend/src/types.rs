//! What a backend shows and what the engine asks of it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;

use crate::fields::{Field, Mount, Value, ValueError};

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

/// A guest's configuration as normalised fields, each with its typed value. Desired and observed
/// configurations use the same fields and forms, so that equal things compare equal. It shows (in
/// plan JSON, say) as an object of field names and the values' spellings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestConfig(BTreeMap<Field, Value>);

impl GuestConfig {
    /// The value of a field.
    pub fn get(&self, field: &Field) -> Option<&Value> {
        self.0.get(field)
    }

    /// The text of a text field ([`Value::Text`]).
    pub fn text(&self, field: &Field) -> Option<&str> {
        self.get(field).and_then(Value::as_text)
    }

    /// The number of a numeric field ([`Value::Number`]).
    pub fn number(&self, field: &Field) -> Option<u64> {
        self.get(field).and_then(Value::as_number)
    }

    /// The setting of an on/off field ([`Value::Flag`]).
    pub fn flag(&self, field: &Field) -> Option<bool> {
        self.get(field).and_then(Value::as_flag)
    }

    /// The spelling of a field's value, the field given by name (as plans show both); `None`
    /// when the configuration has no such field.
    pub fn spelled(&self, name: &str) -> Option<String> {
        Field::from_name(name).and_then(|f| self.get(&f)).map(ToString::to_string)
    }

    /// How many fields it has.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it has no field.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether the configuration has the field.
    pub fn has(&self, field: &Field) -> bool {
        self.0.contains_key(field)
    }

    /// Sets a field. The value has the field's shape ([`Field::shape`]).
    pub fn set(&mut self, field: Field, value: impl Into<Value>) {
        let value = value.into();
        debug_assert_eq!(value.shape(), field.shape(), "{field} = {value}");
        self.0.insert(field, value);
    }

    /// Removes a field, returning its value.
    pub fn remove(&mut self, field: &Field) -> Option<Value> {
        self.0.remove(field)
    }

    /// Keeps only the fields `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(&Field, &Value) -> bool) {
        self.0.retain(|f, v| keep(f, v));
    }

    /// The fields and their values, in the order of the fields' names.
    pub fn iter(&self) -> impl Iterator<Item = (&Field, &Value)> {
        self.0.iter()
    }

    /// The fields, in the order of their names.
    pub fn fields(&self) -> impl Iterator<Item = &Field> {
        self.0.keys()
    }

    /// The mount points: path inside and mount.
    pub fn mounts(&self) -> impl Iterator<Item = (&str, &Mount)> {
        self.0.iter().filter_map(|(f, v)| Some((f.mount_path()?, v.as_mount()?)))
    }

    /// Reads a configuration from field names and their values' spellings (as plans show them).
    pub fn parse<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<GuestConfig, ValueError> {
        let mut config = GuestConfig::default();
        for (name, text) in fields {
            let field = Field::from_name(name).ok_or_else(|| ValueError {
                field: name.to_string(),
                text: text.to_string(),
                expected: "the value of a known field",
            })?;
            let value = field.parse(text)?;
            config.0.insert(field, value);
        }
        Ok(config)
    }
}

impl FromIterator<(Field, Value)> for GuestConfig {
    fn from_iter<I: IntoIterator<Item = (Field, Value)>>(iter: I) -> GuestConfig {
        let mut config = GuestConfig::default();
        config.extend(iter);
        config
    }
}

impl Extend<(Field, Value)> for GuestConfig {
    fn extend<I: IntoIterator<Item = (Field, Value)>>(&mut self, iter: I) {
        for (field, value) in iter {
            self.set(field, value);
        }
    }
}

impl Serialize for GuestConfig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter())
    }
}

/// Read back from what [`Serialize`] writes: field names and their values' spellings.
impl<'de> serde::Deserialize<'de> for GuestConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<GuestConfig, D::Error> {
        let text = BTreeMap::<String, String>::deserialize(d)?;
        GuestConfig::parse(text.iter().map(|(k, v)| (k.as_str(), v.as_str()))).map_err(serde::de::Error::custom)
    }
}

/// One field to change, or to remove.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    /// The field.
    pub field: Field,
    /// Its current value, if it has one.
    pub old: Option<Value>,
    /// Its new value; `None` removes the setting from the guest (see [`Field::removable`]).
    pub new: Option<Value>,
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
    /// Listed by the backend but out of its reach (on a cluster node that is down): why. Nothing
    /// else of it is known (its configuration shows empty); Phoenix neither changes it nor
    /// creates another guest in its place.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreachable: Option<String>,
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
    /// Fields of the normalised configuration it understands (mounts aside); a desired field
    /// outside this set is refused at plan time.
    pub fields: BTreeSet<Field>,
}
