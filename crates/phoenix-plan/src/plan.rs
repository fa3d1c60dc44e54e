//! The plan: per guest, the ordered steps that take what the backend shows to what the
//! configuration says, each with its reason. A pure function of the desired state, the
//! observation and the markers read from the guests.

use std::collections::BTreeMap;

use phoenix_backend::{
    ChangeEffect, CreateSource, Field, GuestId, GuestKind, Observation, ObservedGuest, PowerState, Value,
};
use serde::Serialize;

use crate::desired::{Desired, DesiredGuest};
use crate::lifecycle::LifecycleState;

/// One configuration field to change, or to remove.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedChange {
    /// The field.
    pub field: Field,
    /// What the backend shows (none when unset).
    pub old: Option<Value>,
    /// What the configuration says; `None` (`null` in JSON) when the configuration no longer
    /// has the setting and it is removed from the guest.
    pub new: Option<Value>,
    /// How it takes effect on a running guest.
    pub effect: ChangeEffect,
}

impl PlannedChange {
    /// Whether the change removes the setting.
    pub fn is_removal(&self) -> bool {
        self.new.is_none()
    }
}

/// What a step does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Create the guest (from an OS template, or as a clone), with its whole configuration.
    Create {
        /// Where it comes from.
        source: CreateSource,
    },
    /// Change configuration fields in place.
    Configure {
        /// The fields.
        changes: Vec<PlannedChange>,
    },
    /// Start the guest.
    Start,
    /// Stop and start the guest, for changes that only take effect at start.
    Restart,
    /// Give a clone its own SSH host keys (a clone has its template's): where it has
    /// `/etc/ssh/ssh_host_*_key`, each is replaced by a new one of its type (made by `ssh-keygen`)
    /// and a running sshd is restarted; then [`host_keys_marker`] is recorded, so that it happens
    /// once per clone.
    NewHostKeys,
    /// Run a feature or the application script inside the guest, and record its marker.
    Customize {
        /// `feature:<name>` or `script`.
        key: String,
        /// The hash recorded in the marker once it succeeds.
        hash: String,
    },
    /// Wait until the health check passes.
    HealthCheck,
    /// Take the template snapshot.
    Snapshot {
        /// Its name.
        name: String,
    },
    /// Take a snapshot of an existing guest before its features or application script run again
    /// (named [`UPDATE_SNAPSHOT_PREFIX`] and the time): the guest is rolled back to it when a
    /// later step of the guest fails, and once every step passed it is deleted, as are older
    /// ones of Phoenix's beyond the newest `keep` (see [`guard_updates`]).
    UpdateSnapshot {
        /// How many of Phoenix's update snapshots stay once the update passed
        /// (`behavior.update_snapshots_kept`).
        keep: u32,
    },
    /// Stop the guest if it runs and make it a template (`is_template`): it never runs again,
    /// and clones are made from it as it is.
    MakeTemplate,
}

impl Action {
    /// The step in a few words, as plans show it (`create`, `run feature:docker`, …).
    pub fn describe(&self) -> String {
        match self {
            Action::Create { .. } => "create".to_string(),
            Action::Configure { .. } => "configure".to_string(),
            Action::Start => "start".to_string(),
            Action::Restart => "restart".to_string(),
            Action::NewHostKeys => "new SSH host keys".to_string(),
            Action::Customize { key, .. } => format!("run {key}"),
            Action::HealthCheck => "health check".to_string(),
            Action::Snapshot { name } => format!("snapshot {name}"),
            Action::UpdateSnapshot { .. } => "snapshot before the update".to_string(),
            Action::MakeTemplate => "make a template".to_string(),
        }
    }

    /// Whether the step changes the guest (a health check only looks).
    pub fn is_mutating(&self) -> bool {
        !matches!(self, Action::HealthCheck)
    }
}

/// A step and why it is needed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// What it does.
    #[serde(flatten)]
    pub action: Action,
    /// Why.
    pub reason: String,
}

/// One guest's part of the plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuestPlan {
    /// The guest.
    pub id: GuestId,
    /// Its host name.
    pub name: String,
    /// Container or VM.
    pub kind: GuestKind,
    /// Where it stands now.
    pub state: LifecycleState,
    /// What to do, in order; empty when it is already right.
    pub steps: Vec<Step>,
    /// Guests that must be completed and healthy before its steps start.
    pub needs: Vec<GuestId>,
    /// Files its steps write, with what changes in them (the gateway's configuration).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileDiff>,
}

/// A file a step writes inside a guest, and how it changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileDiff {
    /// Its path inside the guest.
    pub path: String,
    /// The unified diff from what the guest has (nothing when it has none) to what is written.
    pub diff: String,
}

/// Something that keeps the plan from being applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanIssue {
    /// The guest concerned.
    pub guest: GuestId,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub hint: String,
}

/// The whole plan, guests in an order where each comes after what it needs.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    /// Every guest of the configuration.
    pub guests: Vec<GuestPlan>,
    /// Guests the backend shows that the configuration does not name (never touched).
    pub unmanaged: Vec<GuestId>,
    /// Problems that refuse the plan.
    pub issues: Vec<PlanIssue>,
    /// Things worth knowing that change nothing (a guest found on another node than configured).
    pub notes: Vec<String>,
}

impl Plan {
    /// Whether applying would change nothing.
    pub fn is_empty(&self) -> bool {
        self.guests.iter().all(|g| g.steps.is_empty())
    }

    /// Number of guests with steps.
    pub fn guests_to_change(&self) -> usize {
        self.guests.iter().filter(|g| !g.steps.is_empty()).count()
    }

    /// A guest's part.
    pub fn guest(&self, id: GuestId) -> Option<&GuestPlan> {
        self.guests.iter().find(|g| g.id == id)
    }
}

/// What was read from inside the guests: the markers of customizations that succeeded
/// (`None` where they could not be read, e.g. a stopped guest the backend cannot look into).
pub type Markers = BTreeMap<GuestId, Option<BTreeMap<String, String>>>;

/// Plans every guest. `effect` says how a change of a field takes effect (from the backend), the
/// same for every kind of guest.
pub fn plan(
    desired: &Desired,
    observed: &Observation,
    markers: &Markers,
    effect: &dyn Fn(&Field) -> ChangeEffect,
) -> Plan {
    plan_with(desired, observed, markers, &|_, field| effect(field))
}

/// Plans every guest. `effect` says how a change of a field takes effect on a guest of a kind
/// (from the backend's [`phoenix_backend::Backend::change_effect_for`]).
pub fn plan_with(
    desired: &Desired,
    observed: &Observation,
    markers: &Markers,
    effect: &dyn Fn(GuestKind, &Field) -> ChangeEffect,
) -> Plan {
    let mut out = Plan::default();
    for id in &desired.order {
        let Some(d) = desired.guests.get(id) else { continue };
        let o = observed.guests.get(id);
        let m = markers.get(id).cloned().flatten();
        let effect = |field: &Field| effect(d.kind, field);
        // Computed once: the steps, the notes and the state all read it.
        let changes = o.map(|o| config_changes(d, o, &effect)).unwrap_or_default();
        let (steps, issues) = plan_guest(d, o, m.as_ref(), &changes);
        out.notes.extend(template_notes(d, o, &steps, &changes));
        out.issues.extend(issues);
        out.guests.push(GuestPlan {
            id: d.id,
            name: d.name.clone(),
            kind: d.kind,
            state: crate::lifecycle::derive(d, o, m.as_ref(), !changes.is_empty()),
            steps,
            needs: d.needs.clone(),
            files: Vec::new(),
        });
    }
    out.unmanaged = observed.guests.keys().filter(|id| !desired.guests.contains_key(id)).copied().collect();
    for d in desired.guests.values() {
        if let (Some(want), Some(have)) = (&d.node, observed.guests.get(&d.id).and_then(|o| o.node.as_ref()))
            && want != have
        {
            out.notes.push(format!(
                "{} ({}) is on node {have}, the configuration puts it on {want}; Phoenix works with it where it is",
                d.id, d.name
            ));
        }
    }
    out
}

/// The configuration fields that differ, normalised. Disks only grow: a smaller size is no change.
/// On a guest Phoenix manages, a removable field (see [`Field::removable`]) the
/// backend shows but the configuration does not have is removed — unless the guest may have it
/// from the template it was cloned from (see [`DesiredGuest::inherits`]).
pub fn config_changes(
    d: &DesiredGuest,
    o: &ObservedGuest,
    effect: &dyn Fn(&Field) -> ChangeEffect,
) -> Vec<PlannedChange> {
    let changed = d
        .config
        .iter()
        .filter(|(field, want)| match (field, want, o.config.get(field)) {
            (Field::DiskGb, Value::Number(want), Some(Value::Number(have))) => want > have,
            (Field::Mount(_), Value::Mount(want), Some(Value::Mount(have))) => want.state() != have.state(),
            (_, want, have) => have != Some(*want),
        })
        .map(|(field, want)| (field, Some(want.clone())));
    let removed = o
        .config
        .fields()
        .filter(|field| o.managed && field.removable())
        .filter(|field| !d.config.has(field) && !d.inherits.contains(*field))
        .map(|field| (field, None));
    let mut changes: Vec<PlannedChange> = changed
        .chain(removed)
        .map(|(field, new)| PlannedChange {
            field: field.clone(),
            old: o.config.get(field).cloned(),
            new,
            effect: effect(field),
        })
        .collect();
    changes.sort_by(|a, b| a.field.cmp(&b.field));
    changes
}

/// What is worth knowing of a guest that is, or becomes, a template: a `template_snapshot_name`
/// that is not taken, and configuration that differs from a template made already (a template
/// is never changed again).
fn template_notes(
    d: &DesiredGuest,
    o: Option<&ObservedGuest>,
    steps: &[Step],
    changes: &[PlannedChange],
) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(snapshot) = &d.unused_snapshot
        && steps.iter().any(|s| s.action == Action::MakeTemplate)
    {
        notes.push(format!(
            "{} ({}) becomes a template: its template_snapshot_name {snapshot} is not taken (Proxmox makes \
             templates only of guests without snapshots); clones are made from the template itself",
            d.id, d.name
        ));
    }
    if o.is_some_and(|o| o.template && o.managed && d.template) && !changes.is_empty() {
        let fields: Vec<String> = changes.iter().map(|c| c.field.to_string()).collect();
        notes.push(format!(
            "{} ({}) is a template, which Phoenix does not change: it differs from the configuration in \
             {}; clones made from it get their own settings as configured. To rebuild it, `phoenix \
             destroy {}` (and its clones) and apply again",
            d.id,
            d.name,
            fields.join(", "),
            d.id
        ));
    }
    notes
}

/// Why a guest is configured: the fields that differ, and those removed (saying that volumes
/// are detached, their data kept).
fn configure_reason(changes: &[PlannedChange]) -> String {
    let (removed, changed): (Vec<&PlannedChange>, Vec<&PlannedChange>) = changes.iter().partition(|c| c.is_removal());
    let names = |v: &[&PlannedChange]| v.iter().map(|c| c.field.to_string()).collect::<Vec<_>>().join(", ");
    let mut parts = Vec::new();
    if !changed.is_empty() {
        parts.push(format!("differs from the configuration: {}", names(&changed)));
    }
    if !removed.is_empty() {
        let volumes = removed.iter().any(|c| c.old.as_ref().and_then(Value::as_mount).is_some_and(|m| m.is_volume()));
        parts.push(format!(
            "no longer in the configuration, removed: {}{}",
            names(&removed),
            if volumes { " (a volume is detached and kept with its data, never deleted)" } else { "" }
        ));
    }
    parts.join("; ")
}

/// A guest's steps and issues; `changes` are its configuration's differences from what the
/// backend has ([`config_changes`]; none for a guest that does not exist).
fn plan_guest(
    d: &DesiredGuest,
    o: Option<&ObservedGuest>,
    markers: Option<&BTreeMap<String, String>>,
    changes: &[PlannedChange],
) -> (Vec<Step>, Vec<PlanIssue>) {
    let mut steps = Vec::new();
    let mut issues = Vec::new();
    let step = |action: Action, reason: String| Step { action, reason };
    let Some(o) = o else {
        let reason = match &d.source {
            CreateSource::Template(t) => format!("does not exist; created from {t}"),
            CreateSource::Clone { source, snapshot } if snapshot.is_empty() => {
                format!("does not exist; cloned from the template {source}")
            }
            CreateSource::Clone { source, snapshot } => {
                format!("does not exist; cloned from {source} at snapshot {snapshot}")
            }
        };
        steps.push(step(Action::Create { source: d.source.clone() }, reason));
        steps.push(step(Action::Start, "new guests are started after their configuration is written".into()));
        if is_clone(d) {
            steps.push(step(Action::NewHostKeys, CLONE_KEYS.into()));
        }
        for c in &d.customizations {
            steps.push(step(Action::Customize { key: c.key.clone(), hash: c.hash.clone() }, "never run".into()));
        }
        if d.health.is_some() {
            steps.push(step(Action::HealthCheck, "dependents wait until it is healthy".into()));
        }
        if let Some(s) = &d.template_snapshot {
            steps.push(step(
                Action::Snapshot { name: s.clone() },
                "template: clones are made from this snapshot".into(),
            ));
        }
        if d.template {
            steps.push(step(Action::MakeTemplate, MAKE_TEMPLATE.into()));
        }
        return (steps, issues);
    };
    if let Some(why) = &o.unreachable {
        issues.push(PlanIssue {
            guest: d.id,
            message: format!("{} ({}) cannot be read or changed: {why}", d.id, d.name),
            hint: "bring the node back, then plan again: Phoenix neither changes a guest it cannot see nor makes \
                   another in its place"
                .to_string(),
        });
        return (steps, issues);
    }
    if !o.managed {
        issues.push(PlanIssue {
            guest: d.id,
            message: format!("{} exists but was not created by Phoenix", d.id),
            hint: format!(
                "Phoenix never touches guests it did not create: `phoenix adopt {}` makes it Phoenix's as it is \
                 (see its differences first with `--dry-run`), or give this guest another ID",
                d.id
            ),
        });
        return (steps, issues);
    }
    if let Some(why) = &o.half_made {
        let tool = if o.kind == GuestKind::Vm { "qm" } else { "pct" };
        issues.push(PlanIssue {
            guest: d.id,
            message: why.clone(),
            hint: format!(
                "Phoenix never destroys a guest on its own: `{tool} unlock {id} && {tool} destroy {id}` on its node, \
                 then apply again to create it",
                id = d.id
            ),
        });
        return (steps, issues);
    }
    if o.kind != d.kind {
        issues.push(PlanIssue {
            guest: d.id,
            message: format!("{} is a {:?} on the backend but a {:?} in the configuration", d.id, o.kind, d.kind)
                .to_lowercase(),
            hint: "give the guest another ID".into(),
        });
        return (steps, issues);
    }
    if o.template {
        // A template never runs again: nothing is started, customized or changed on it.
        if !d.template {
            issues.push(PlanIssue {
                guest: d.id,
                message: format!(
                    "{} ({}) is a template on the backend, and the configuration does not make it one \
                     (`is_template`): a template cannot run, nor be turned back into a guest",
                    d.id, d.name
                ),
                hint: format!(
                    "set \"is_template\": true, or `phoenix destroy {}` and apply to build it again as a guest",
                    d.id
                ),
            });
        }
        return (steps, issues);
    }
    if d.template && !o.snapshots.is_empty() {
        let names: Vec<&str> = o.snapshots.iter().map(String::as_str).collect();
        issues.push(PlanIssue {
            guest: d.id,
            message: format!(
                "{} ({}) is to become a template (`is_template`) but has snapshots ({}): Proxmox makes \
                 templates only of guests without snapshots",
                d.id,
                d.name,
                names.join(", ")
            ),
            hint: format!(
                "delete them (`pct delsnapshot {id} NAME`, `qm delsnapshot {id} NAME`) once no clone needs \
                 them, or leave out `is_template` to keep cloning from the snapshot",
                id = d.id
            ),
        });
        return (steps, issues);
    }
    if let Some(have) = o.config.number(&Field::DiskGb)
        && let Some(want) = d.config.number(&Field::DiskGb).filter(|w| *w < have)
    {
        issues.push(PlanIssue {
            guest: d.id,
            message: format!("{}'s disk is {have} GiB, the configuration says {want} GiB", d.id),
            hint: format!("disks are never shrunk: set the size to {have} or more"),
        });
    }
    let replace: Vec<&PlannedChange> = changes.iter().filter(|c| c.effect == ChangeEffect::Recreate).collect();
    if !replace.is_empty() {
        let fields: Vec<String> = replace.iter().map(|c| c.field.to_string()).collect();
        issues.push(PlanIssue {
            guest: d.id,
            message: format!(
                "{} cannot change {} in place: the guest would have to be created again",
                d.id,
                fields.join(", ")
            ),
            hint: format!(
                "Phoenix never replaces a guest on its own: run `phoenix destroy {}` first if that is what you want",
                d.id
            ),
        });
        return (steps, issues);
    }
    let running = o.power == PowerState::Running;
    let needs_restart = running && changes.iter().any(|c| c.effect == ChangeEffect::Restart);
    if !changes.is_empty() {
        steps.push(step(Action::Configure { changes: changes.to_vec() }, configure_reason(changes)));
    }
    if needs_restart {
        let fields: Vec<String> =
            changes.iter().filter(|c| c.effect == ChangeEffect::Restart).map(|c| c.field.to_string()).collect();
        steps.push(step(Action::Restart, format!("{} only take(s) effect at start", fields.join(", "))));
    } else if !running {
        steps.push(step(Action::Start, "stopped".into()));
    }
    if let Some(reason) = host_keys_reason(d, markers) {
        steps.push(step(Action::NewHostKeys, reason));
    }
    for c in &d.customizations {
        let reason = match markers.map(|m| m.get(&c.key)) {
            None => Some(
                "its marker could not be read (the guest is stopped, or its markers are unreadable); run to be sure"
                    .to_string(),
            ),
            Some(None) => Some("never run".to_string()),
            Some(Some(h)) if *h != c.hash => Some("its script or inputs changed".to_string()),
            Some(Some(_)) => None,
        };
        if let Some(reason) = reason {
            steps.push(step(Action::Customize { key: c.key.clone(), hash: c.hash.clone() }, reason));
        }
    }
    if let Some(why) = markers.and_then(|m| m.get(HEALTH_MARKER)).filter(|_| d.health.is_some()) {
        repair_health(&mut steps, running, &format!("its last health check failed ({why})"));
    }
    let any_mutating = steps.iter().any(|s| s.action.is_mutating());
    if any_mutating && d.health.is_some() {
        steps.push(step(Action::HealthCheck, "verify after the changes".into()));
    }
    if let Some(s) = &d.template_snapshot
        && !o.snapshots.contains(s)
    {
        steps.push(step(Action::Snapshot { name: s.clone() }, "template snapshot missing".into()));
    }
    if d.template {
        steps.push(step(Action::MakeTemplate, MAKE_TEMPLATE.into()));
    }
    (steps, issues)
}

/// Why a clone this plan creates gets new SSH host keys.
const CLONE_KEYS: &str = "a clone has its template's SSH host keys: it gets its own once, before anything runs in it";

/// The marker a guest's record holds once it has its own SSH host keys (or had none to replace):
/// keyed by the guest's ID, because a clone inherits its template's record, and with it any
/// such marker of the template's own.
pub fn host_keys_marker(id: GuestId) -> String {
    format!("{HOST_KEYS_MARKER_PREFIX}{id}")
}

/// Whether a guest is (to be) made as a clone: it starts with its template's SSH host keys.
fn is_clone(d: &DesiredGuest) -> bool {
    matches!(d.source, CreateSource::Clone { .. })
}

/// Whether a guest has its own SSH host keys as far as its record (`markers`) shows: a guest
/// that is not a clone always has.
pub fn has_own_host_keys(d: &DesiredGuest, markers: Option<&BTreeMap<String, String>>) -> bool {
    !is_clone(d) || markers.is_some_and(|m| m.contains_key(&host_keys_marker(d.id)))
}

/// The start of [`host_keys_marker`]; the guest's ID follows.
const HOST_KEYS_MARKER_PREFIX: &str = "ssh-host-keys:";

/// Why an existing guest gets new SSH host keys, if it does: a clone whose record lacks its
/// [`host_keys_marker`] (cloned by a Phoenix that did not replace them, or by a run stopped
/// before it did). Where its record cannot be read, the step is planned and the engine reads
/// the record again once the guest runs: keys are never replaced twice.
fn host_keys_reason(d: &DesiredGuest, markers: Option<&BTreeMap<String, String>>) -> Option<String> {
    if !is_clone(d) {
        return None;
    }
    match markers {
        None => Some(
            "a clone, and its record could not be read (the guest is stopped, or its markers are unreadable): it \
             gets its own SSH host keys unless its record then shows it has them"
                .to_string(),
        ),
        Some(m) if !m.contains_key(&host_keys_marker(d.id)) => Some(
            "a clone that still has its template's SSH host keys (cloned before Phoenix gave clones their own, or \
             by a run stopped before it did): it gets its own once"
                .to_string(),
        ),
        Some(_) => None,
    }
}

/// The marker that records a failed health check until one passes: a guest whose service was
/// left down is never "No changes".
pub const HEALTH_MARKER: &str = "health";

/// Steps for a running guest whose service is down: a restart (which starts its services again)
/// unless other steps change it already; the health check itself is added by the caller.
fn repair_health(steps: &mut Vec<Step>, running: bool, why: &str) {
    if running && !steps.iter().any(|s| s.action.is_mutating()) {
        steps.push(Step { action: Action::Restart, reason: format!("{why}: a restart starts its services again") });
    }
}

/// Plans the repair of running guests whose health checks fail now (probed at plan time, see
/// [`phoenix_backend::Capabilities::probe_at_plan`]): a restart and the health check, or only
/// the check after the steps they have already.
pub fn repair_unhealthy(plan: &mut Plan, desired: &Desired, failures: &BTreeMap<GuestId, String>) {
    for g in plan.guests.iter_mut() {
        let (Some(why), Some(d)) = (failures.get(&g.id), desired.guests.get(&g.id)) else { continue };
        if d.health.is_none() || d.template {
            continue;
        }
        repair_health(&mut g.steps, true, &format!("its health check fails now ({why})"));
        if !g.steps.iter().any(|s| s.action == Action::HealthCheck) {
            g.steps.push(Step { action: Action::HealthCheck, reason: "verify after the changes".into() });
        }
    }
}

/// The start of the names of the snapshots taken before an update ([`Action::UpdateSnapshot`]),
/// followed by the time (`phoenix-pre-20250131-235959`, UTC): names in that order are in the
/// order they were taken. Snapshots with other names are never Phoenix's to roll back to or
/// delete.
pub const UPDATE_SNAPSHOT_PREFIX: &str = "phoenix-pre-";

/// Whether a snapshot is one Phoenix took before an update: [`UPDATE_SNAPSHOT_PREFIX`], the
/// time as `YYYYMMDD-HHMMSS`, and maybe `-<n>` (a second one in the same second). Only those are
/// ever deleted by Phoenix.
pub fn is_update_snapshot(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(UPDATE_SNAPSHOT_PREFIX) else { return false };
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let mut parts = rest.split('-');
    let (Some(day), Some(time)) = (parts.next(), parts.next()) else { return false };
    let suffix = parts.next();
    digits(day, 8)
        && digits(time, 6)
        && suffix.is_none_or(|n| !n.is_empty() && n.len() <= 3 && n.bytes().all(|b| b.is_ascii_digit()))
        && parts.next().is_none()
}

/// Whether a customization is guarded by a snapshot when it runs again on an existing guest: a
/// feature or the application script (the gateway's configuration is checked and swapped in by
/// its own install script).
fn guarded(key: &str) -> bool {
    key == "script" || key.starts_with("feature:")
}

/// Guards the updates of existing guests: where a feature or the application script runs on a
/// guest that exists already (not one this plan creates), an [`Action::UpdateSnapshot`] step is
/// put before the first of them, so that a failed update rolls the guest back to where it was.
/// Templates and the guests clones are made from (`is_template`, `template_snapshot_name`) get
/// none: a template takes no snapshot, and a clone source's snapshots are its clones'. Where the
/// backend takes no snapshots (`snapshots` false), the first such step's reason says the update
/// runs without one. `keep` is `behavior.update_snapshots_kept`.
pub fn guard_updates(plan: &mut Plan, desired: &Desired, snapshots: bool, keep: u32) {
    for g in plan.guests.iter_mut() {
        let Some(d) = desired.guests.get(&g.id) else { continue };
        if d.template || d.template_snapshot.is_some() || d.unused_snapshot.is_some() {
            continue;
        }
        if g.steps.iter().any(|s| matches!(s.action, Action::Create { .. } | Action::UpdateSnapshot { .. })) {
            continue;
        }
        let is_guarded = |s: &Step| matches!(&s.action, Action::Customize { key, .. } if guarded(key));
        let Some(first) = g.steps.iter().position(is_guarded) else { continue };
        if !snapshots {
            g.steps[first].reason.push_str(" (runs without a safety snapshot: the backend takes no snapshots)");
            continue;
        }
        let keys: Vec<&str> = g.steps[first..]
            .iter()
            .filter_map(|s| match &s.action {
                Action::Customize { key, .. } if guarded(key) => Some(key.as_str()),
                _ => None,
            })
            .collect();
        let kept = match keep {
            0 => String::new(),
            1 => "; the newest of Phoenix's update snapshots is kept".to_string(),
            n => format!("; the newest {n} of Phoenix's update snapshots are kept"),
        };
        let reason = format!(
            "{} run(s) on a guest that exists already: a snapshot {UPDATE_SNAPSHOT_PREFIX}<time> is taken first; if a \
             later step fails (the health check included) the guest is rolled back to it, once they pass it is \
             deleted{kept}",
            keys.join(", ")
        );
        g.steps.insert(first, Step { action: Action::UpdateSnapshot { keep }, reason });
    }
}

/// Why a guest is made a template.
const MAKE_TEMPLATE: &str =
    "is_template: made a template once customized (stopped, never started again); clones are made from it as it is";

/// What the backend cannot do for this desired state, found before anything runs: kinds of guest
/// it does not run, clones or snapshots it cannot make, configuration fields it does not know.
pub fn check_capabilities(desired: &Desired, caps: &phoenix_backend::Capabilities) -> Vec<PlanIssue> {
    let mut issues = Vec::new();
    for d in desired.guests.values() {
        let mut problems = Vec::new();
        if !caps.kinds.contains(&d.kind) {
            problems.push(format!("it runs no {}", if d.kind == GuestKind::Lxc { "containers" } else { "VMs" }));
        }
        if matches!(d.source, CreateSource::Clone { .. }) && !caps.clone {
            problems.push("it cannot clone".to_string());
        }
        if d.template_snapshot.is_some() && !caps.snapshots {
            problems.push("it cannot take snapshots".to_string());
        }
        if d.template && !caps.templates {
            problems.push("it cannot make templates".to_string());
        }
        if d.config.has(&Field::Gpus) && !caps.gpu {
            problems.push("it cannot pass GPUs to containers".to_string());
        }
        let unknown: Vec<String> = d
            .config
            .fields()
            .filter(|f| f.mount_path().is_none() && !caps.fields.contains(*f))
            .map(Field::to_string)
            .collect();
        if !unknown.is_empty() {
            problems.push(format!("it does not support {}", unknown.join(", ")));
        }
        if !problems.is_empty() {
            issues.push(PlanIssue {
                guest: d.id,
                message: format!("{} ({}) cannot be built by this backend: {}", d.id, d.name, problems.join("; ")),
                hint: "change the guest's configuration, or use a backend that supports it".to_string(),
            });
        }
    }
    issues
}

/// How a backend delivers a field's value, where not its usual way (see `Backend::route`).
pub type Route<'a> = &'a dyn Fn(
    &Field,
    Option<&Value>,
    &phoenix_backend::GuestConfig,
) -> Result<Option<String>, phoenix_backend::NoRoute>;

/// The route of each change the backend delivers another way than usual (from the backend's
/// `route`): notes, one per route, naming the guests and fields; a change that no route can
/// deliver is an issue that refuses the plan.
pub fn check_routes(desired: &Desired, plan: &Plan, route: Route<'_>) -> (Vec<PlanIssue>, Vec<String>) {
    let mut by_route: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut issues = Vec::new();
    for g in &plan.guests {
        let Some(d) = desired.guests.get(&g.id) else { continue };
        let mut fields: Vec<(&Field, Option<&Value>)> = Vec::new();
        for step in &g.steps {
            match &step.action {
                Action::Create { .. } => fields.extend(d.config.iter().map(|(k, v)| (k, Some(v)))),
                Action::Configure { changes } => fields.extend(changes.iter().map(|c| (&c.field, c.new.as_ref()))),
                _ => {}
            }
        }
        for (field, value) in fields {
            // A removal is routed with no value: how the setting is taken away.
            match route(field, value, &d.config) {
                Ok(Some(how)) => by_route.entry(how).or_default().push(format!("{} {field}", g.id)),
                Ok(None) => {}
                Err(why) => issues.push(PlanIssue {
                    guest: g.id,
                    message: format!(
                        "{} ({}): {field} cannot be {}: {why}",
                        g.id,
                        g.name,
                        if value.is_some() { "set" } else { "removed" }
                    ),
                    hint: "configure the route it needs, or leave the setting out".to_string(),
                }),
            }
        }
    }
    let notes = by_route.into_iter().map(|(how, what)| format!("{how}: {}", what.join(", "))).collect();
    (issues, notes)
}

/// Whether the backend can take a snapshot of a guest of this kind with this configuration:
/// `Err` says why not.
pub type CanSnapshot<'a> =
    &'a dyn Fn(GuestKind, &phoenix_backend::GuestConfig) -> Result<(), phoenix_backend::BackendError>;

/// The snapshots the plan takes that the backend says cannot be taken (`can`): a template's
/// snapshot is an issue, since its clones are made from it and it would fail once the template
/// is built; a snapshot before an update is a note, since the update then runs without one.
pub fn check_snapshots(desired: &Desired, plan: &Plan, can: CanSnapshot<'_>) -> (Vec<PlanIssue>, Vec<String>) {
    let (mut issues, mut notes) = (Vec::new(), Vec::new());
    for g in &plan.guests {
        let Some(d) = desired.guests.get(&g.id) else { continue };
        for step in &g.steps {
            let why = || can(d.kind, &d.config).err();
            match &step.action {
                Action::Snapshot { name } => {
                    if let Some(why) = why() {
                        issues.push(PlanIssue {
                            guest: g.id,
                            message: format!("{} ({}): its snapshot {name} cannot be taken: {why}", g.id, g.name),
                            hint: "put its disks on storage that takes snapshots, or leave `template_snapshot_name` \
                                   out and make it a template (`is_template`)"
                                .to_string(),
                        });
                    }
                }
                Action::UpdateSnapshot { .. } => {
                    if let Some(why) = why() {
                        notes.push(format!(
                            "{}: no snapshot can be taken before its update ({why}): it runs without one",
                            g.id
                        ));
                    }
                }
                _ => {}
            }
        }
    }
    (issues, notes)
}

/// Addresses the configuration gives a guest that another guest on the backend already has
/// (one Phoenix does not manage, or one no longer in the configuration).
pub fn check_addresses(desired: &Desired, observed: &Observation) -> Vec<PlanIssue> {
    let ip = |v: &str| v.split('/').next().unwrap_or(v).to_string();
    let taken: BTreeMap<String, GuestId> = observed
        .guests
        .values()
        .filter(|o| !desired.guests.contains_key(&o.id))
        .filter_map(|o| o.config.text(&Field::NetIp).filter(|v| *v != "dhcp").map(|v| (ip(v), o.id)))
        .collect();
    desired
        .guests
        .values()
        .filter_map(|d| {
            let want = ip(d.config.text(&Field::NetIp).filter(|v| *v != "dhcp")?);
            let other = taken.get(&want)?;
            Some(PlanIssue {
                guest: d.id,
                message: format!(
                    "{} ({}) is to have {want}, which guest {other} on the backend already uses",
                    d.id, d.name
                ),
                hint: format!("give {} another address, or remove guest {other}", d.id),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use phoenix_backend::{Capabilities, GuestConfig};

    use super::*;

    fn guest(id: GuestId, kind: GuestKind, source: CreateSource, fields: &[(&str, &str)]) -> DesiredGuest {
        let config = GuestConfig::parse(fields.iter().copied()).expect("config");
        DesiredGuest {
            id,
            kind,
            name: format!("g{id}"),
            node: None,
            source,
            config,
            template_snapshot: None,
            template: false,
            unused_snapshot: None,
            customizations: Vec::new(),
            health: None,
            needs: Vec::new(),
            inherits: BTreeSet::new(),
        }
    }

    #[test]
    fn a_guest_on_another_node_than_configured_is_reported() {
        let mut d = guest(100, GuestKind::Lxc, CreateSource::Template("t".into()), &[("cores", "1")]);
        d.node = Some("pve1".into());
        let desired = Desired { guests: [(100, d)].into(), order: vec![100] };
        let observed = ObservedGuest {
            id: 100,
            kind: GuestKind::Lxc,
            node: Some("pve2".into()),
            power: PowerState::Running,
            config: GuestConfig::parse([("cores", "1")]).expect("config"),
            snapshots: BTreeSet::new(),
            managed: true,
            template: false,
            half_made: None,
            unreachable: None,
            markers: None,
        };
        let observation = Observation { guests: [(100, observed)].into() };
        let p = plan(&desired, &observation, &Markers::new(), &|_| ChangeEffect::Live);
        assert!(p.is_empty());
        assert_eq!(
            p.notes,
            vec![
                "100 (g100) is on node pve2, the configuration puts it on pve1; Phoenix works with it where it is"
                    .to_string()
            ]
        );
    }

    #[test]
    fn a_backend_that_cannot_build_a_guest_is_refused_before_anything_runs() {
        let mut desired = Desired::default();
        desired.guests.insert(
            100,
            guest(100, GuestKind::Lxc, CreateSource::Template("t".into()), &[("cores", "1"), ("gpus", "0")]),
        );
        desired.guests.insert(
            200,
            guest(200, GuestKind::Vm, CreateSource::Clone { source: 100, snapshot: "s".into() }, &[("ci.user", "x")]),
        );
        let caps = Capabilities {
            kinds: BTreeSet::from([GuestKind::Lxc]),
            clone: false,
            snapshots: true,
            templates: false,
            gpu: false,
            concurrent_clones: false,
            probe_at_plan: false,
            fields: BTreeSet::from([Field::Cores]),
        };
        let issues = check_capabilities(&desired, &caps);
        assert_eq!(issues.len(), 2);
        assert_eq!(
            issues[0].message,
            "100 (g100) cannot be built by this backend: it cannot pass GPUs to containers; it does not support gpus"
        );
        assert!(
            issues[1].message.contains("it runs no VMs; it cannot clone; it does not support ci.user"),
            "{}",
            issues[1].message
        );
        let all = Capabilities {
            kinds: BTreeSet::from([GuestKind::Lxc, GuestKind::Vm]),
            clone: true,
            snapshots: true,
            templates: true,
            gpu: true,
            concurrent_clones: false,
            probe_at_plan: false,
            fields: [Field::Cores, Field::Gpus, Field::CiUser].into(),
        };
        assert!(check_capabilities(&desired, &all).is_empty());
    }

    fn observed(fields: &[(&str, &str)], managed: bool) -> ObservedGuest {
        ObservedGuest {
            id: 100,
            kind: GuestKind::Lxc,
            node: None,
            power: PowerState::Running,
            config: GuestConfig::parse(fields.iter().copied()).expect("config"),
            snapshots: BTreeSet::new(),
            managed,
            template: false,
            half_made: None,
            unreachable: None,
            markers: None,
        }
    }

    fn effect(field: &Field) -> ChangeEffect {
        if *field == Field::Tags { ChangeEffect::Live } else { ChangeEffect::Restart }
    }

    #[test]
    fn settings_no_longer_configured_are_removed_only_where_absence_means_none() {
        let d = guest(
            100,
            GuestKind::Lxc,
            CreateSource::Template("t".into()),
            &[("cores", "2"), ("mount:/data", "bind:/srv/data;owner=1000:1000")],
        );
        let shown = [
            ("cores", "2"),
            ("memory_mb", "2048"),
            ("swap_mb", "512"),
            ("flags", "nesting=1"),
            ("onboot", "1"),
            ("net.mac", "bc:24:11:00:00:01"),
            ("mount:/data", "bind:/srv/data"),
            ("mount:/models", "volume:local-zfs:100"),
            ("mount:/srv/shared", "bind:/srv/shared;ro"),
            ("gpus", "0,1"),
            ("tags", "gpu;web"),
            ("lxc.raw", "lxc.cgroup2.devices.allow: c 195:* rwm"),
            ("apparmor", "unconfined"),
            ("idmap", "u:1000:1000:1"),
            ("net.nameservers", "10.0.0.1"),
        ];
        let changes = config_changes(&d, &observed(&shown, true), &effect);
        let spelled = |v: &Option<Value>| v.as_ref().map(ToString::to_string);
        let removed: Vec<(String, Option<String>, Option<String>, ChangeEffect)> =
            changes.iter().map(|c| (c.field.to_string(), spelled(&c.old), spelled(&c.new), c.effect)).collect();
        let expected: Vec<(&str, Option<&str>, Option<&str>, ChangeEffect)> = vec![
            ("apparmor", Some("unconfined"), None, ChangeEffect::Restart),
            ("gpus", Some("0,1"), None, ChangeEffect::Restart),
            ("idmap", Some("u:1000:1000:1"), None, ChangeEffect::Restart),
            ("lxc.raw", Some("lxc.cgroup2.devices.allow: c 195:* rwm"), None, ChangeEffect::Restart),
            ("mount:/models", Some("volume:local-zfs:100"), None, ChangeEffect::Restart),
            ("mount:/srv/shared", Some("bind:/srv/shared;ro"), None, ChangeEffect::Restart),
            ("net.nameservers", Some("10.0.0.1"), None, ChangeEffect::Restart),
            ("tags", Some("gpu;web"), None, ChangeEffect::Live),
        ];
        let expected: Vec<(String, Option<String>, Option<String>, ChangeEffect)> = expected
            .into_iter()
            .map(|(f, o, n, e)| (f.to_string(), o.map(String::from), n.map(String::from), e))
            .collect();
        assert_eq!(removed, expected);
        assert!(changes.iter().all(PlannedChange::is_removal));
        // What is not the guest's to lose, or not Phoenix's to touch, stays.
        assert!(config_changes(&d, &observed(&shown, false), &effect).iter().all(|c| !c.is_removal()));
        let mut clone = d.clone();
        clone.source = CreateSource::Clone { source: 900, snapshot: "s".into() };
        clone.inherits = [Field::Tags, Field::LxcRaw, Field::mount("/models")].into();
        let left: Vec<String> =
            config_changes(&clone, &observed(&shown, true), &effect).into_iter().map(|c| c.field.to_string()).collect();
        assert_eq!(left, ["apparmor", "gpus", "idmap", "mount:/srv/shared", "net.nameservers"]);
        // A guest as configured plans nothing.
        let same = observed(&[("cores", "2"), ("mount:/data", "bind:/srv/data"), ("memory_mb", "2048")], true);
        assert!(config_changes(&d, &same, &effect).is_empty());
    }

    #[test]
    fn a_removal_is_planned_with_its_reason_restart_and_route() {
        let d = guest(100, GuestKind::Lxc, CreateSource::Template("t".into()), &[("cores", "2")]);
        let desired = Desired { guests: [(100, d)].into(), order: vec![100] };
        let shown = [("cores", "1"), ("mount:/models", "volume:local-zfs:8"), ("gpus", "0")];
        let observation = Observation { guests: [(100, observed(&shown, true))].into() };
        let p = plan(&desired, &observation, &Markers::new(), &effect);
        let steps = &p.guests[0].steps;
        let Action::Configure { changes } = &steps[0].action else { panic!("{steps:#?}") };
        assert_eq!(changes.len(), 3);
        assert_eq!(
            steps[0].reason,
            "differs from the configuration: cores; no longer in the configuration, removed: gpus, mount:/models \
             (a volume is detached and kept with its data, never deleted)"
        );
        assert_eq!(steps[1].action, Action::Restart);
        let asked = std::sync::Mutex::new(Vec::new());
        let route = |f: &Field, v: Option<&Value>, _: &GuestConfig| {
            asked.lock().expect("lock").push(format!("{f}={}", v.map(ToString::to_string).unwrap_or_default()));
            if *f == Field::Gpus {
                Err(phoenix_backend::NoRoute::NoNodeChannel { how: "the node".into(), setting: "`backend.ssh`" })
            } else {
                Ok(None)
            }
        };
        let (issues, _) = check_routes(&desired, &p, &route);
        assert_eq!(asked.into_inner().expect("lock"), ["cores=2", "gpus=", "mount:/models="]);
        assert_eq!(issues.len(), 1);
        assert_eq!(
            issues[0].message,
            "100 (g100): gpus cannot be removed: it goes through the node, and no node channel is configured (`backend.ssh`)"
        );
    }

    fn markers(pairs: &[(&str, &str)]) -> Markers {
        let m: BTreeMap<String, String> = pairs.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect();
        [(900, Some(m))].into()
    }

    fn template_guest() -> DesiredGuest {
        let mut d = guest(900, GuestKind::Vm, CreateSource::Template("img".into()), &[("cores", "2")]);
        d.template = true;
        d.unused_snapshot = Some("cloud-ready".into());
        d.customizations = vec![crate::desired::Customization { key: "feature:base".into(), hash: "h1".into() }];
        d
    }

    fn shown(power: PowerState, template: bool, fields: &[(&str, &str)]) -> Observation {
        let mut o = observed(fields, true);
        o.id = 900;
        o.kind = GuestKind::Vm;
        o.power = power;
        o.template = template;
        Observation { guests: [(900, o)].into() }
    }

    fn actions(p: &Plan) -> Vec<Action> {
        p.guests[0].steps.iter().map(|s| s.action.clone()).collect()
    }

    #[test]
    fn a_guest_becomes_a_template_last_and_is_never_started_customized_or_changed_again() {
        let desired = Desired { guests: [(900, template_guest())].into(), order: vec![900] };
        let live = |_: &Field| ChangeEffect::Live;
        // New: built, customized, then made a template (no snapshot), saying why.
        let p = plan(&desired, &Observation::default(), &Markers::new(), &live);
        assert_eq!(
            actions(&p),
            [
                Action::Create { source: CreateSource::Template("img".into()) },
                Action::Start,
                Action::Customize { key: "feature:base".into(), hash: "h1".into() },
                Action::MakeTemplate
            ]
        );
        assert!(p.guests[0].steps[3].reason.starts_with("is_template: made a template"), "{:?}", p.guests[0].steps);
        assert!(p.notes.iter().any(|n| n.contains("template_snapshot_name cloud-ready is not taken")), "{:?}", p.notes);
        // Customized and running, not yet a template: only the conversion.
        let p = plan(
            &desired,
            &shown(PowerState::Running, false, &[("cores", "2")]),
            &markers(&[("feature:base", "h1")]),
            &live,
        );
        assert_eq!(actions(&p), [Action::MakeTemplate]);
        assert_eq!(p.guests[0].state, LifecycleState::Running, "not completed until it is a template");
        // A template: stopped, its markers unreadable, its configuration changed since; nothing to
        // do and nothing to start or run again, the difference only noted.
        let p = plan(&desired, &shown(PowerState::Stopped, true, &[("cores", "1")]), &[(900, None)].into(), &live);
        assert!(p.is_empty(), "{:?}", p.guests);
        assert!(p.issues.is_empty(), "{:?}", p.issues);
        assert_eq!(p.guests[0].state, LifecycleState::Completed);
        assert_eq!(p.notes.len(), 1, "{:?}", p.notes);
        assert!(
            p.notes[0].contains("900 (g900) is a template, which Phoenix does not change")
                && p.notes[0].contains("in cores"),
            "{}",
            p.notes[0]
        );
        // The same template as configured: not even a note.
        let p = plan(&desired, &shown(PowerState::Stopped, true, &[("cores", "2")]), &[(900, None)].into(), &live);
        assert!(p.is_empty() && p.notes.is_empty(), "{:?}", p.notes);
    }

    #[test]
    fn a_template_the_configuration_does_not_make_one_and_a_guest_with_snapshots_are_refused() {
        let mut plain = template_guest();
        plain.template = false;
        let desired = Desired { guests: [(900, plain)].into(), order: vec![900] };
        let live = |_: &Field| ChangeEffect::Live;
        let p = plan(&desired, &shown(PowerState::Stopped, true, &[("cores", "2")]), &Markers::new(), &live);
        assert!(p.is_empty());
        assert_eq!(p.issues.len(), 1);
        assert!(p.issues[0].message.contains("is a template on the backend"), "{}", p.issues[0].message);

        let desired = Desired { guests: [(900, template_guest())].into(), order: vec![900] };
        let mut with_snapshot = shown(PowerState::Running, false, &[("cores", "2")]);
        with_snapshot.guests.get_mut(&900).expect("900").snapshots.insert("cloud-ready".into());
        let p = plan(&desired, &with_snapshot, &markers(&[("feature:base", "h1")]), &live);
        assert!(p.is_empty(), "nothing runs: {:?}", p.guests);
        assert_eq!(p.issues.len(), 1);
        assert!(
            p.issues[0]
                .message
                .contains("has snapshots (cloud-ready): Proxmox makes templates only of guests without snapshots"),
            "{}",
            p.issues[0].message
        );
    }

    #[test]
    fn only_names_phoenix_gives_its_update_snapshots_are_its_own() {
        for name in ["phoenix-pre-20250131-235959", "phoenix-pre-20250131-235959-2"] {
            assert!(is_update_snapshot(name), "{name}");
        }
        for name in [
            "phoenix-pre-mine",
            "phoenix-pre-20250131",
            "phoenix-pre-2025013-235959",
            "phoenix-pre-20250131-235959-x",
            "phoenix-pre-20250131-235959-2-3",
            "before-update",
            "ready",
        ] {
            assert!(!is_update_snapshot(name), "{name}");
        }
    }

    #[test]
    fn an_update_of_an_existing_guest_is_guarded_by_a_snapshot_where_the_backend_takes_them() {
        let mut d = guest(100, GuestKind::Lxc, CreateSource::Template("t".into()), &[("cores", "2")]);
        d.customizations = ["feature:docker", "script"]
            .map(|k| crate::desired::Customization { key: k.into(), hash: "new".into() })
            .to_vec();
        d.health = Some(phoenix_config::model::HealthCheck {
            command: Some("true".into()),
            http: None,
            tcp: None,
            retries: None,
            interval: None,
            timeout: None,
        });
        let desired = Desired { guests: [(100, d.clone())].into(), order: vec![100] };
        let shown = Observation { guests: [(100, observed(&[("cores", "2")], true))].into() };
        let ran: BTreeMap<String, String> =
            [("feature:docker", "old"), ("script", "new")].map(|(k, v)| (k.to_string(), v.to_string())).into();
        let live = |_: &Field| ChangeEffect::Live;
        let planned = || plan(&desired, &shown, &[(100, Some(ran.clone()))].into(), &live);

        let mut p = planned();
        guard_updates(&mut p, &desired, true, 2);
        assert_eq!(
            actions(&p),
            [
                Action::UpdateSnapshot { keep: 2 },
                Action::Customize { key: "feature:docker".into(), hash: "new".into() },
                Action::HealthCheck
            ]
        );
        let reason = &p.guests[0].steps[0].reason;
        assert!(
            reason.starts_with("feature:docker run(s) on a guest that exists already: a snapshot phoenix-pre-<time>")
        );
        assert!(reason.ends_with("the newest 2 of Phoenix's update snapshots are kept"), "{reason}");
        assert_eq!(p.guests[0].steps[0].action.describe(), "snapshot before the update");
        // Guarding twice adds nothing.
        guard_updates(&mut p, &desired, true, 2);
        assert_eq!(p.guests[0].steps.len(), 3);

        // A backend without snapshots: the update runs as it is, and the plan says so.
        let mut p = planned();
        guard_updates(&mut p, &desired, false, 2);
        assert!(matches!(actions(&p)[0], Action::Customize { .. }), "{:?}", actions(&p));
        assert_eq!(
            p.guests[0].steps[0].reason,
            "its script or inputs changed (runs without a safety snapshot: the backend takes no snapshots)"
        );

        // A guest this plan creates has nothing to roll back to.
        let mut p = plan(&desired, &Observation::default(), &Markers::new(), &live);
        guard_updates(&mut p, &desired, true, 0);
        assert!(!actions(&p).contains(&Action::UpdateSnapshot { keep: 0 }), "{:?}", actions(&p));

        // Neither has a template, nor a guest clones are made from at its snapshot.
        for make in [
            |d: &mut DesiredGuest| d.template = true,
            |d: &mut DesiredGuest| d.template_snapshot = Some("ready".into()),
        ] {
            let mut special = d.clone();
            make(&mut special);
            let desired = Desired { guests: [(100, special)].into(), order: vec![100] };
            let mut p = plan(&desired, &shown, &[(100, Some(ran.clone()))].into(), &live);
            guard_updates(&mut p, &desired, true, 0);
            assert!(!actions(&p).iter().any(|a| matches!(a, Action::UpdateSnapshot { .. })), "{:?}", actions(&p));
        }

        // Only the gateway's configuration runs again: it guards itself.
        let mut gw = d.clone();
        gw.customizations = vec![crate::desired::Customization { key: "gateway".into(), hash: "new".into() }];
        let desired = Desired { guests: [(100, gw)].into(), order: vec![100] };
        let mut p = plan(&desired, &shown, &[(100, Some(BTreeMap::new()))].into(), &live);
        guard_updates(&mut p, &desired, true, 0);
        assert_eq!(actions(&p).len(), 2, "{:?}", actions(&p));
    }

    #[test]
    fn a_clone_gets_its_own_ssh_host_keys_once_before_anything_runs_in_it() {
        let mut d = guest(100, GuestKind::Lxc, CreateSource::Clone { source: 900, snapshot: "ready".into() }, &[]);
        d.customizations = vec![crate::desired::Customization { key: "script".into(), hash: "h".into() }];
        let desired = Desired { guests: [(100, d.clone())].into(), order: vec![100] };
        let live = |_: &Field| ChangeEffect::Live;
        // A new clone: right after it starts, before its own customizations.
        let p = plan(&desired, &Observation::default(), &Markers::new(), &live);
        assert_eq!(
            actions(&p),
            [
                Action::Create { source: d.source.clone() },
                Action::Start,
                Action::NewHostKeys,
                Action::Customize { key: "script".into(), hash: "h".into() }
            ]
        );
        assert_eq!(p.guests[0].steps[2].action.describe(), "new SSH host keys");
        let json = serde_json::to_value(&p.guests[0].steps[2]).expect("json");
        assert_eq!(json["action"], "new_host_keys");

        let shown = Observation { guests: [(100, observed(&[], true))].into() };
        let record = |pairs: &[(&str, &str)]| -> Markers {
            [(100, Some(pairs.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect()))].into()
        };
        // Its template's record, inherited with the disk (the template's own marker among it),
        // or a run stopped before the keys were replaced: they are replaced, saying why.
        for inherited in [record(&[("script", "h")]), record(&[("script", "h"), ("ssh-host-keys:900", "new")])] {
            let p = plan(&desired, &shown, &inherited, &live);
            assert_eq!(actions(&p), [Action::NewHostKeys]);
            assert!(p.guests[0].steps[0].reason.contains("still has its template's SSH host keys"));
            assert_eq!(p.guests[0].state, LifecycleState::Running);
        }
        // Its own marker: never again.
        let done = record(&[("script", "h"), (&host_keys_marker(100), "new")]);
        let p = plan(&desired, &shown, &done, &live);
        assert!(p.is_empty(), "{:?}", actions(&p));
        assert_eq!(p.guests[0].state, LifecycleState::Completed);
        // A record that cannot be read: planned, and decided by the record once the guest runs.
        let p = plan(&desired, &shown, &[(100, None)].into(), &live);
        assert!(actions(&p).contains(&Action::NewHostKeys));
        // A guest created from an OS template has keys of its own.
        let mut own = d.clone();
        own.source = CreateSource::Template("t".into());
        let desired = Desired { guests: [(100, own)].into(), order: vec![100] };
        for markers in [Markers::new(), record(&[]), [(100, None)].into()] {
            let p = plan(&desired, &Observation::default(), &markers, &live);
            assert!(!actions(&p).contains(&Action::NewHostKeys));
            let p = plan(&desired, &shown, &markers, &live);
            assert!(!actions(&p).contains(&Action::NewHostKeys));
        }
    }

    #[test]
    fn a_backend_that_cannot_make_templates_is_refused() {
        let desired = Desired { guests: [(900, template_guest())].into(), order: vec![900] };
        let caps = Capabilities {
            kinds: BTreeSet::from([GuestKind::Vm]),
            clone: true,
            snapshots: true,
            templates: false,
            gpu: false,
            concurrent_clones: false,
            probe_at_plan: false,
            fields: BTreeSet::from([Field::Cores]),
        };
        let issues = check_capabilities(&desired, &caps);
        assert_eq!(issues.len(), 1);
        assert!(issues[0].message.ends_with("it cannot make templates"), "{}", issues[0].message);
        assert!(check_capabilities(&desired, &Capabilities { templates: true, ..caps }).is_empty());
    }
}
