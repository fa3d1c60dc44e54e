//! The seam between the engine and a backend (Proxmox VE, local LXC, or a test double).
//!
//! The engine needs few things from a backend: observe everything in few calls, create a guest
//! from an OS template or clone it from a named snapshot or a template, update its configuration
//! field by field, start and stop it, take, roll back to and delete snapshots, make it a
//! template, run a command inside it, push a file into it, and destroy it.
//! A [`Capabilities`] value says what a backend supports, so that a plan can be refused before
//! anything runs. Every error says whether the request was never sent (safe to retry) or may have
//! been applied (observe again first).

mod error;
pub mod fields;
pub mod inside;
pub mod process;
mod types;

pub use error::{BackendError, Delivery, ErrorKind, NoRoute};
pub use fields::{Field, Mount, MountSource, Value};
pub use types::*;

/// What the engine needs from a backend. Implementations are shared between worker threads.
///
/// Every mutating call is idempotent in effect only through the engine: the engine decides what
/// to call from an observation, and after an error that may have been applied it observes the
/// guest again before retrying.
pub trait Backend: Send + Sync {
    /// A short name for messages (`proxmox`, `lxc`, `memory`).
    fn name(&self) -> &str;

    /// What this backend supports.
    fn capabilities(&self) -> Capabilities;

    /// Everything the engine needs to plan, in as few calls as the backend allows.
    fn observe(&self) -> Result<Observation, BackendError>;

    /// Every guest, with the parts that cost a backend more than the guest's configuration
    /// (snapshots, firewall) read only for the guests `scope` names; the others show none. By
    /// default everything, as [`Backend::observe`].
    fn observe_scoped(&self, scope: &ObserveScope) -> Result<Observation, BackendError> {
        let _ = scope;
        self.observe()
    }

    /// One guest, after an error that may have been applied.
    fn observe_guest(&self, id: GuestId) -> Result<Option<ObservedGuest>, BackendError>;

    /// Creates a guest, from an OS template or as a clone of a snapshot, with its configuration
    /// written before its first start. It is left stopped.
    fn create(&self, request: &CreateRequest) -> Result<(), BackendError>;

    /// Checks, before anything is created, that a create request can succeed as far as the
    /// backend can tell without doing it (the template exists, say).
    fn check_create(&self, request: &CreateRequest) -> Result<(), BackendError> {
        let _ = request;
        Ok(())
    }

    /// Changes configuration fields, and removes those whose change has no new value. Fields the
    /// backend cannot change while the guest runs take effect at the next start (see
    /// [`Backend::change_effect`]). Removing a volume mount detaches it: its data is never deleted.
    fn update_config(&self, id: GuestId, changes: &[FieldChange]) -> Result<(), BackendError>;

    /// Starts a stopped guest.
    fn start(&self, id: GuestId) -> Result<(), BackendError>;

    /// Stops a running guest.
    fn stop(&self, id: GuestId) -> Result<(), BackendError>;

    /// Takes a snapshot.
    fn snapshot(&self, id: GuestId, name: &str) -> Result<(), BackendError>;

    /// Rolls a guest back to one of its snapshots: what the snapshot holds (its disks or root
    /// filesystem, and on backends whose snapshots keep it, its configuration) becomes the
    /// guest's again; what was written since is gone. A running guest is stopped for it and
    /// started again afterwards; a stopped one stays stopped. The snapshot stays. Rolling back
    /// again to the same snapshot gives the same guest, so a retry is safe. Refused for a
    /// template and for a snapshot the guest does not have; an [`ErrorKind::Unsupported`] error
    /// says the backend cannot roll back at all.
    fn rollback(&self, id: GuestId, name: &str) -> Result<(), BackendError> {
        let _ = (id, name);
        Err(BackendError::unsupported(format!("the {} backend does not roll back to snapshots", self.name())))
    }

    /// Deletes one of a guest's snapshots; the guest itself (running or not, its disks and
    /// configuration) is not changed. Refused for a snapshot the guest does not have (a retry
    /// after an error that may have been applied observes first). An [`ErrorKind::Unsupported`]
    /// error says the backend cannot delete snapshots.
    fn delete_snapshot(&self, id: GuestId, name: &str) -> Result<(), BackendError> {
        let _ = (id, name);
        Err(BackendError::unsupported(format!("the {} backend does not delete snapshots", self.name())))
    }

    /// Checks, without changing anything, that a snapshot can be taken of a guest of this kind
    /// configured as `config` (its disks on storage that takes snapshots, say). An
    /// [`ErrorKind::Unsupported`] error says why not; by default every guest can be snapshotted.
    fn check_snapshot(&self, kind: GuestKind, config: &GuestConfig) -> Result<(), BackendError> {
        let _ = (kind, config);
        Ok(())
    }

    /// Makes a stopped guest a template: it never runs again, and clones are made from it as it
    /// is ([`CreateSource::Clone`] with an empty snapshot). Refused while it runs, and for a guest
    /// that is a template already. Observing shows it as [`ObservedGuest::template`].
    fn make_template(&self, id: GuestId) -> Result<(), BackendError> {
        let _ = id;
        Err(BackendError::unsupported(format!("the {} backend does not make templates", self.name())))
    }

    /// Runs a command inside a running guest: argv as given (never joined into a shell string),
    /// stdin closed, a clean environment, a timeout.
    fn exec(&self, id: GuestId, request: &ExecRequest) -> Result<ExecOutput, BackendError>;

    /// Reads a file inside a guest; `None` when it does not exist. A backend that cannot read a
    /// stopped guest's files answers with an [`ErrorKind::Unsupported`] error.
    fn read_file(&self, id: GuestId, path: &str) -> Result<Option<Vec<u8>>, BackendError>;

    /// Writes a file inside a guest with a mode and owner.
    fn push_file(&self, id: GuestId, file: &FilePush) -> Result<(), BackendError>;

    /// The guest's customization record (its markers: JSON, customization key → hash); `None`
    /// when it has none. By default the file [`inside::MARKERS_PATH`] inside the guest; a backend
    /// that keeps it with the guest's configuration shows it in [`ObservedGuest::markers`] too.
    fn read_markers(&self, id: GuestId) -> Result<Option<Vec<u8>>, BackendError> {
        self.read_file(id, inside::MARKERS_PATH)
    }

    /// Replaces the guest's customization record (see [`Backend::read_markers`]).
    fn write_markers(&self, id: GuestId, content: &[u8]) -> Result<(), BackendError> {
        let file =
            FilePush { path: inside::MARKERS_PATH.to_string(), content: content.to_vec(), mode: 0o600, uid: 0, gid: 0 };
        self.push_file(id, &file)
    }

    /// Stops the guest if needed and removes it with its snapshots.
    fn destroy(&self, id: GuestId) -> Result<(), BackendError>;

    /// How a change of this field takes effect on a running guest.
    fn change_effect(&self, field: &Field) -> ChangeEffect;

    /// How a change of this field takes effect on a running guest of this kind, where kinds
    /// differ (a VM's CPU count waits for its next start, a container's does not). By default
    /// the same for every kind: [`Backend::change_effect`].
    fn change_effect_for(&self, kind: GuestKind, field: &Field) -> ChangeEffect {
        let _ = kind;
        self.change_effect(field)
    }

    /// How setting `field` to `value` is delivered, where it is not the backend's usual way
    /// (Proxmox settings reserved to `root@pam` go through `pct set` on the node, say): decided
    /// before anything is applied and shown with the plan. `Err` says why no route can deliver it.
    /// A removal is asked with no `value`: how the setting is taken away. `guest` is the guest's
    /// whole desired configuration (a setting's route may depend on another, such as whether the
    /// container is privileged).
    fn route(&self, field: &Field, value: Option<&Value>, guest: &GuestConfig) -> Result<Option<String>, NoRoute> {
        let _ = (field, value, guest);
        Ok(None)
    }

    /// The addresses a running guest reports on its interfaces, loopback excluded: how a guest
    /// without a static address (DHCP) is reached from the host. Empty where the backend cannot
    /// tell, or the guest has none yet.
    fn addresses(&self, id: GuestId) -> Result<Vec<std::net::IpAddr>, BackendError> {
        let _ = id;
        Ok(Vec::new())
    }

    /// Checks, without changing anything, that a guest Phoenix did not create can be adopted
    /// (see [`Backend::adopt`]), and returns the configuration it will show once adopted: what
    /// the backend shows of it now, except fields the backend keeps only in its own records and
    /// never in the guest, which a guest it did not create cannot show; those are taken from
    /// `desired` (the configuration's fields for it). An [`ErrorKind::Unsupported`] error says
    /// the backend cannot adopt guests, any other why this guest cannot be adopted.
    fn check_adopt(&self, guest: &ObservedGuest, desired: &GuestConfig) -> Result<GuestConfig, BackendError> {
        let _ = (guest, desired);
        Err(BackendError::unsupported(format!("the {} backend cannot adopt guests", self.name())))
    }

    /// Marks a guest Phoenix did not create as Phoenix's, changing nothing else: it is not
    /// recreated, stopped, restarted or reconfigured. Afterwards it is observed as managed, with
    /// the configuration [`Backend::check_adopt`] returned. Marking a guest that is already
    /// Phoenix's does nothing.
    fn adopt(&self, id: GuestId, desired: &GuestConfig) -> Result<(), BackendError> {
        let _ = (id, desired);
        Err(BackendError::unsupported(format!("the {} backend cannot adopt guests", self.name())))
    }
}

/// A shared backend is a backend (the engine's workers share one).
impl<B: Backend + ?Sized> Backend for std::sync::Arc<B> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }
    fn observe(&self) -> Result<Observation, BackendError> {
        (**self).observe()
    }
    fn observe_scoped(&self, scope: &ObserveScope) -> Result<Observation, BackendError> {
        (**self).observe_scoped(scope)
    }
    fn observe_guest(&self, id: GuestId) -> Result<Option<ObservedGuest>, BackendError> {
        (**self).observe_guest(id)
    }
    fn create(&self, request: &CreateRequest) -> Result<(), BackendError> {
        (**self).create(request)
    }
    fn check_create(&self, request: &CreateRequest) -> Result<(), BackendError> {
        (**self).check_create(request)
    }
    fn update_config(&self, id: GuestId, changes: &[FieldChange]) -> Result<(), BackendError> {
        (**self).update_config(id, changes)
    }
    fn start(&self, id: GuestId) -> Result<(), BackendError> {
        (**self).start(id)
    }
    fn stop(&self, id: GuestId) -> Result<(), BackendError> {
        (**self).stop(id)
    }
    fn snapshot(&self, id: GuestId, name: &str) -> Result<(), BackendError> {
        (**self).snapshot(id, name)
    }
    fn rollback(&self, id: GuestId, name: &str) -> Result<(), BackendError> {
        (**self).rollback(id, name)
    }
    fn delete_snapshot(&self, id: GuestId, name: &str) -> Result<(), BackendError> {
        (**self).delete_snapshot(id, name)
    }
    fn make_template(&self, id: GuestId) -> Result<(), BackendError> {
        (**self).make_template(id)
    }
    fn exec(&self, id: GuestId, request: &ExecRequest) -> Result<ExecOutput, BackendError> {
        (**self).exec(id, request)
    }
    fn read_file(&self, id: GuestId, path: &str) -> Result<Option<Vec<u8>>, BackendError> {
        (**self).read_file(id, path)
    }
    fn push_file(&self, id: GuestId, file: &FilePush) -> Result<(), BackendError> {
        (**self).push_file(id, file)
    }
    fn read_markers(&self, id: GuestId) -> Result<Option<Vec<u8>>, BackendError> {
        (**self).read_markers(id)
    }
    fn write_markers(&self, id: GuestId, content: &[u8]) -> Result<(), BackendError> {
        (**self).write_markers(id, content)
    }
    fn destroy(&self, id: GuestId) -> Result<(), BackendError> {
        (**self).destroy(id)
    }
    fn change_effect(&self, field: &Field) -> ChangeEffect {
        (**self).change_effect(field)
    }
    fn change_effect_for(&self, kind: GuestKind, field: &Field) -> ChangeEffect {
        (**self).change_effect_for(kind, field)
    }
    fn addresses(&self, id: GuestId) -> Result<Vec<std::net::IpAddr>, BackendError> {
        (**self).addresses(id)
    }
    fn route(&self, field: &Field, value: Option<&Value>, guest: &GuestConfig) -> Result<Option<String>, NoRoute> {
        (**self).route(field, value, guest)
    }
    fn check_adopt(&self, guest: &ObservedGuest, desired: &GuestConfig) -> Result<GuestConfig, BackendError> {
        (**self).check_adopt(guest, desired)
    }
    fn adopt(&self, id: GuestId, desired: &GuestConfig) -> Result<(), BackendError> {
        (**self).adopt(id, desired)
    }
    fn check_snapshot(&self, kind: GuestKind, config: &GuestConfig) -> Result<(), BackendError> {
        (**self).check_snapshot(kind, config)
    }
}
