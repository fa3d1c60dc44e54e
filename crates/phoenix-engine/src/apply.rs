//! Applying a plan over the dependency graph: a guest's steps start once everything it needs is
//! completed and healthy; independent guests run at once up to the limits; failures stop their
//! dependents; transient backend errors are retried.
//!
//! Safe updates: a guest whose plan takes a snapshot before its features or script run again
//! ([`Action::UpdateSnapshot`]) is rolled back to that snapshot when a later step of it fails,
//! and started again if it ran; once all its steps passed, the snapshot is deleted, with older
//! update snapshots beyond the number kept.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use phoenix_backend::{
    Backend, BackendError, CreateRequest, CreateSource, ErrorKind, ExecRequest, Field, FieldChange, FilePush, GuestId,
    PowerState,
};
use phoenix_plan::{
    Action, Desired, DesiredGuest, GuestPlan, HEALTH_MARKER, LifecycleState, Plan, Step, UPDATE_SNAPSHOT_PREFIX,
    host_keys_marker, is_update_snapshot,
};

use crate::customize::{CONTRACT_VERSION, Job};
use crate::health::{HealthError, Prober, wait_healthy};
use crate::host_keys;
use crate::observe::parse_markers;
use crate::reporter::{GuestOutcome, Reporter};
use crate::retry::RetryPolicy;

/// How an apply runs.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Guests worked on at once.
    pub jobs: usize,
    /// Guests worked on at once on one node.
    pub per_node: usize,
    /// Go on with independent guests after a failure.
    pub keep_going: bool,
    /// Destroy guests this run created when their steps fail.
    pub rollback: bool,
    /// Retrying transient backend errors.
    pub retry: RetryPolicy,
    /// How long a feature or script may run.
    pub exec_timeout: Duration,
    /// Factor on health-check intervals (tests shorten them).
    pub health_interval_scale: f64,
}

impl Default for ApplyOptions {
    fn default() -> ApplyOptions {
        ApplyOptions {
            jobs: 4,
            per_node: 4,
            keep_going: false,
            rollback: false,
            retry: RetryPolicy::default(),
            exec_timeout: Duration::from_secs(3600),
            health_interval_scale: 1.0,
        }
    }
}

/// What an apply did, guest by guest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Each configured guest's outcome.
    pub outcomes: BTreeMap<GuestId, GuestOutcome>,
    /// How long it took.
    pub took: Duration,
    /// The run was interrupted.
    pub interrupted: bool,
}

impl ApplyReport {
    /// Whether any guest failed (or was skipped, rolled back, or not started).
    pub fn failed(&self) -> bool {
        self.interrupted
            || self
                .outcomes
                .values()
                .any(|o| !matches!(o, GuestOutcome::Unchanged | GuestOutcome::Created | GuestOutcome::Changed))
    }
}

/// The engine: a backend, probes, a reporter, and the interruption flag (set on Ctrl-C).
pub struct Engine<'a> {
    /// Where guests live.
    pub backend: &'a dyn Backend,
    /// HTTP and TCP health probes.
    pub prober: &'a dyn Prober,
    /// Progress.
    pub reporter: &'a dyn Reporter,
    /// When set, no new step starts; running steps finish.
    pub cancel: &'a AtomicBool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Waiting,
    Running,
    Done,
    Failed,
}

/// What workers tell the scheduler.
enum Event {
    /// A clone of this source was created (or failed): the next clone of it may start.
    CloneDone(GuestId),
    /// A guest finished.
    Finished(GuestId, GuestOutcome, Duration),
}

/// A step that failed, with the guest, the step and the backend's or the command's words.
#[derive(Debug)]
struct StepFailure {
    step: String,
    message: String,
}

impl StepFailure {
    /// A backend's error at a step, with its detail (a task's log, say) on the lines after it.
    fn backend(step: String, e: &BackendError) -> StepFailure {
        let message = match &e.detail {
            Some(detail) => format!("{e}\n{detail}"),
            None => e.to_string(),
        };
        StepFailure { step, message }
    }
}

/// The snapshot taken before an update, while the guest's later steps run.
#[derive(Debug)]
struct Guard {
    /// Its name.
    name: String,
    /// Whether the guest ran when it was taken (it runs again after a rollback).
    was_running: bool,
    /// How many update snapshots stay once the update passed.
    keep: u32,
}

/// The name of a snapshot taken before an update at `now`: [`UPDATE_SNAPSHOT_PREFIX`] and the
/// time in UTC (`phoenix-pre-20250131-235959`), with `-2`, `-3`, … when the guest has a
/// snapshot of that name already. Valid for Proxmox (`pve-configid`, at most 40 characters).
pub fn update_snapshot_name(now: SystemTime, taken: &BTreeSet<String>) -> String {
    let secs = now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let t = crate::utc::Utc::from_unix(secs);
    let base = format!(
        "{UPDATE_SNAPSHOT_PREFIX}{:04}{:02}{:02}-{:02}{:02}{:02}",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    );
    if !taken.contains(&base) {
        return base;
    }
    (2..).map(|n| format!("{base}-{n}")).find(|n| !taken.contains(n)).unwrap_or(base)
}

/// What failed, as the rollback message names it: the feature or script (`feature:docker`), the
/// health check, or the step.
fn what_failed(action: &Action) -> String {
    match action {
        Action::Customize { key, .. } => key.clone(),
        Action::HealthCheck => "the health check after the update".to_string(),
        other => format!("`{}`", other.describe()),
    }
}

impl<'a> Engine<'a> {
    /// Executes exactly the plan. `jobs` holds each guest's customizations as prepared for it.
    ///
    /// Scheduling: a guest is started once everything it needs is done, at most `jobs` at once and
    /// `per_node` per node, and — unless the backend can make several clones of one template at
    /// once — never while another clone of its clone source is being created (Proxmox locks the
    /// source). Among ready guests, those with the longest chain of work
    /// waiting on them go first.
    pub fn apply(
        &self,
        desired: &Desired,
        plan: &Plan,
        jobs: &BTreeMap<GuestId, Vec<Job>>,
        opts: &ApplyOptions,
    ) -> ApplyReport {
        let started = Instant::now();
        let by_id: BTreeMap<GuestId, &GuestPlan> = plan.guests.iter().map(|g| (g.id, g)).collect();
        // Guests with nothing to do are checked for health when a guest with work waits for them.
        let mut verify: BTreeSet<GuestId> = BTreeSet::new();
        for g in plan.guests.iter().filter(|g| !g.steps.is_empty()) {
            for n in &g.needs {
                // A template made already never runs: there is nothing to check.
                if by_id.get(n).is_some_and(|p| p.steps.is_empty())
                    && desired.guests.get(n).is_some_and(|d| d.health.is_some() && !d.template)
                {
                    verify.insert(*n);
                }
            }
        }
        let mut queue: Vec<&GuestPlan> = plan.guests.iter().collect();
        let heights = heights(plan);
        queue.sort_by_key(|g| std::cmp::Reverse(heights.get(&g.id).copied().unwrap_or(0)));
        let mut status: BTreeMap<GuestId, Status> = plan.guests.iter().map(|g| (g.id, Status::Waiting)).collect();
        let mut report = ApplyReport::default();
        let mut running_on: BTreeMap<String, usize> = BTreeMap::new();
        // Clone sources being cloned from, and by whom.
        let mut cloning: BTreeMap<GuestId, GuestId> = BTreeMap::new();
        let mut stop = false;
        let concurrent_clones = self.backend.capabilities().concurrent_clones;
        let (tx, rx) = mpsc::channel::<Event>();
        std::thread::scope(|scope| {
            loop {
                if self.cancel.load(Ordering::SeqCst) {
                    stop = true;
                    report.interrupted = true;
                }
                let mut progressed = true;
                while progressed {
                    progressed = false;
                    for g in &queue {
                        if status[&g.id] != Status::Waiting {
                            continue;
                        }
                        if let Some(bad) = g.needs.iter().find(|n| status.get(n) == Some(&Status::Failed)) {
                            status.insert(g.id, Status::Failed);
                            let outcome = GuestOutcome::Skipped(format!("{bad}, which it needs, did not complete"));
                            self.reporter.finished(g.id, &outcome, Duration::ZERO);
                            report.outcomes.insert(g.id, outcome);
                            progressed = true;
                            continue;
                        }
                        let ready = g.needs.iter().all(|n| status.get(n).is_none_or(|s| *s == Status::Done));
                        let running = status.values().filter(|s| **s == Status::Running).count();
                        let node = desired.guests.get(&g.id).and_then(|d| d.node.clone()).unwrap_or_default();
                        let node_busy = running_on.get(&node).copied().unwrap_or(0) >= opts.per_node.max(1);
                        let source = clone_source(g).filter(|_| !concurrent_clones);
                        let source_busy = source.is_some_and(|s| cloning.contains_key(&s));
                        if !ready || stop || running >= opts.jobs.max(1) || node_busy || source_busy {
                            continue;
                        }
                        let steps: Vec<Step> = if g.steps.is_empty() && verify.contains(&g.id) {
                            vec![Step {
                                action: Action::HealthCheck,
                                reason: "a guest that needs it has work to do".into(),
                            }]
                        } else {
                            g.steps.clone()
                        };
                        if steps.is_empty() {
                            status.insert(g.id, Status::Done);
                            report.outcomes.insert(g.id, GuestOutcome::Unchanged);
                            progressed = true;
                            continue;
                        }
                        status.insert(g.id, Status::Running);
                        *running_on.entry(node.clone()).or_default() += 1;
                        if let Some(s) = source {
                            cloning.insert(s, g.id);
                        }
                        let tx = tx.clone();
                        let d = &desired.guests[&g.id];
                        let guest_jobs = jobs.get(&g.id).map(Vec::as_slice).unwrap_or_default();
                        let verify_only = g.steps.is_empty();
                        scope.spawn(move || {
                            let t0 = Instant::now();
                            let outcome = self.run_guest(d, &steps, guest_jobs, opts, verify_only, &tx);
                            let _ = tx.send(Event::Finished(d.id, outcome, t0.elapsed()));
                        });
                        progressed = true;
                    }
                }
                if !status.values().any(|s| *s == Status::Running) {
                    break;
                }
                match rx.recv() {
                    Ok(Event::CloneDone(source)) => {
                        cloning.remove(&source);
                    }
                    Ok(Event::Finished(id, outcome, took)) => {
                        let node = desired.guests.get(&id).and_then(|d| d.node.clone()).unwrap_or_default();
                        if let Some(n) = running_on.get_mut(&node) {
                            *n = n.saturating_sub(1);
                        }
                        cloning.retain(|_, holder| *holder != id);
                        let ok =
                            matches!(outcome, GuestOutcome::Unchanged | GuestOutcome::Created | GuestOutcome::Changed);
                        status.insert(id, if ok { Status::Done } else { Status::Failed });
                        if !ok && !opts.keep_going {
                            stop = true;
                        }
                        self.reporter.finished(id, &outcome, took);
                        report.outcomes.insert(id, outcome);
                    }
                    Err(_) => break,
                }
            }
        });
        for g in &plan.guests {
            report.outcomes.entry(g.id).or_insert(GuestOutcome::NotStarted);
        }
        report.took = started.elapsed();
        report
    }

    /// Runs one guest's steps in order.
    fn run_guest(
        &self,
        d: &DesiredGuest,
        steps: &[Step],
        jobs: &[Job],
        opts: &ApplyOptions,
        verify_only: bool,
        events: &mpsc::Sender<Event>,
    ) -> GuestOutcome {
        let mut created = false;
        let mut guard: Option<Guard> = None;
        for step in steps {
            if self.cancel.load(Ordering::SeqCst) {
                let message = format!("guest {} ({}): interrupted before `{}`", d.id, d.name, step.action.describe());
                // A guest this run created and did not finish is taken away again: the next run
                // makes it whole, from the start.
                if created {
                    self.reporter.note(d.id, "interrupted: destroying the guest this run created and did not finish");
                    return match self.call(d.id, opts, || self.backend.destroy(d.id), || None) {
                        Ok(()) => GuestOutcome::RolledBack(message),
                        Err(e) => GuestOutcome::Failed(format!("{message}; it could not be destroyed: {e}")),
                    };
                }
                // What ran of an update before the interruption passed, and stays; so does the
                // snapshot taken before it, until the next update that passes deletes it.
                if let Some(g) = &guard {
                    return GuestOutcome::Failed(format!(
                        "{message}; the steps before it passed, and snapshot {} taken before the update is kept",
                        g.name
                    ));
                }
                return GuestOutcome::Failed(format!("{message}; nothing was left half-done"));
            }
            self.reporter.state(d.id, state_during(&step.action), Some(step));
            if let Action::UpdateSnapshot { keep } = &step.action {
                match self.take_update_snapshot(d, *keep, opts) {
                    Ok(taken) => guard = taken,
                    Err(f) => {
                        return GuestOutcome::Failed(format!(
                            "guest {} ({}), step `{}`: {}; nothing of the update ran",
                            d.id, d.name, f.step, f.message
                        ));
                    }
                }
                continue;
            }
            let result = self.run_step(d, step, jobs, opts);
            if let Action::Create { source: CreateSource::Clone { source, .. } } = &step.action {
                let _ = events.send(Event::CloneDone(*source));
            }
            if let Err(f) = result {
                if let Some(g) = &guard {
                    return self.roll_back(d, g, step, &f, opts);
                }
                let message = format!("guest {} ({}), step `{}`: {}", d.id, d.name, f.step, f.message);
                if created && opts.rollback {
                    self.reporter.note(d.id, "rolling back: destroying the guest this run created");
                    return match self.call(d.id, opts, || self.backend.destroy(d.id), || None) {
                        Ok(()) => GuestOutcome::RolledBack(message),
                        Err(e) => GuestOutcome::Failed(format!("{message}; the rollback failed too: {e}")),
                    };
                }
                return GuestOutcome::Failed(message);
            }
            created |= matches!(step.action, Action::Create { .. });
        }
        if let Some(g) = &guard {
            self.prune_update_snapshots(d.id, g.keep, opts);
        }
        self.reporter.state(d.id, LifecycleState::Completed, None);
        if created {
            GuestOutcome::Created
        } else if verify_only {
            GuestOutcome::Unchanged
        } else {
            GuestOutcome::Changed
        }
    }

    /// Takes the snapshot before an update: the guard a failure rolls back to. `None` where the
    /// backend answers that it cannot take one (a Proxmox storage without snapshots, say): the
    /// update then runs without it, as noted. Any other failure stops the guest before its
    /// update runs.
    fn take_update_snapshot(
        &self,
        d: &DesiredGuest,
        keep: u32,
        opts: &ApplyOptions,
    ) -> Result<Option<Guard>, StepFailure> {
        let id = d.id;
        let step = "snapshot before the update";
        let fail = |e: BackendError| StepFailure { step: step.to_string(), message: e.to_string() };
        let guest = self
            .call(id, opts, || self.backend.observe_guest(id), || None)
            .map_err(fail)?
            .ok_or_else(|| StepFailure { step: step.to_string(), message: format!("guest {id} does not exist") })?;
        let name = update_snapshot_name(SystemTime::now(), &guest.snapshots);
        let taken =
            || self.backend.observe_guest(id).ok().flatten().filter(|g| g.snapshots.contains(&name)).map(|_| ());
        match self.call(id, opts, || self.backend.snapshot(id, &name), taken) {
            Ok(()) => {
                self.reporter.note(id, &format!("took snapshot {name} before the update"));
                Ok(Some(Guard { name, was_running: guest.power == PowerState::Running, keep }))
            }
            Err(e) if e.kind == ErrorKind::Unsupported => {
                self.reporter
                    .note(id, &format!("no snapshot could be taken before the update ({e}): it runs without one"));
                Ok(None)
            }
            Err(e) => Err(StepFailure::backend(format!("snapshot {name} before the update"), &e)),
        }
    }

    /// Rolls a guest whose update failed back to the snapshot taken before it, and starts it
    /// again if it ran then (a backend may leave it stopped). The outcome says what failed, that
    /// the guest was rolled back and to what, then the original error.
    fn roll_back(
        &self,
        d: &DesiredGuest,
        guard: &Guard,
        step: &Step,
        failure: &StepFailure,
        opts: &ApplyOptions,
    ) -> GuestOutcome {
        let id = d.id;
        let what = what_failed(&step.action);
        let original = format!("step `{}`: {}", failure.step, failure.message);
        let head = format!("guest {id} ({}): {what} failed", d.name);
        self.reporter.note(id, &format!("{what} failed: rolling back to snapshot {}", guard.name));
        if let Err(e) = self.call(id, opts, || self.backend.rollback(id, &guard.name), || None) {
            return GuestOutcome::Failed(format!(
                "{head}, and rolling the guest back to snapshot {} taken before the update failed too: {e}; the \
                 snapshot is kept\n{original}",
                guard.name
            ));
        }
        let exists = || self.backend.observe_guest(id).ok().flatten();
        if guard.was_running && running(exists()).is_none() {
            let started = self.call(id, opts, || self.backend.start(id), || running(exists()));
            if let Err(e) = started {
                return GuestOutcome::Failed(format!(
                    "{head}; the guest was rolled back to snapshot {} taken before the update, but could not be \
                     started again: {e}\n{original}",
                    guard.name
                ));
            }
        }
        GuestOutcome::RolledBack(format!(
            "{head}; the guest was rolled back to snapshot {} taken before the update\n{original}",
            guard.name
        ))
    }

    /// After an update passed: deletes Phoenix's update snapshots of the guest but the newest
    /// `keep` (the one just taken among them, and any a run killed before this point left), and
    /// never a snapshot with another name. A snapshot that cannot be deleted is only noted: the
    /// next update that passes tries again.
    fn prune_update_snapshots(&self, id: GuestId, keep: u32, opts: &ApplyOptions) {
        let snapshots = match self.call(id, opts, || self.backend.observe_guest(id), || None) {
            Ok(Some(g)) => g.snapshots,
            Ok(None) => return,
            Err(e) => {
                self.reporter.note(id, &format!("could not list its snapshots to delete those of the update: {e}"));
                return;
            }
        };
        // Names in the order they were taken.
        let ours: Vec<&String> = snapshots.iter().filter(|n| is_update_snapshot(n)).collect();
        let excess = ours.len().saturating_sub(usize::try_from(keep).unwrap_or(usize::MAX));
        for name in &ours[..excess] {
            let gone =
                || self.backend.observe_guest(id).ok().flatten().filter(|g| !g.snapshots.contains(*name)).map(|_| ());
            if let Err(e) = self.call(id, opts, || self.backend.delete_snapshot(id, name), gone) {
                self.reporter.note(
                    id,
                    &format!("could not delete snapshot {name} (the next update that passes tries again): {e}"),
                );
            }
        }
    }

    /// A backend call with retries; `applied` says whether a call that may have been applied was.
    pub(crate) fn call<T>(
        &self,
        id: GuestId,
        opts: &ApplyOptions,
        op: impl FnMut() -> Result<T, BackendError>,
        applied: impl Fn() -> Option<T>,
    ) -> Result<T, BackendError> {
        opts.retry.run(op, applied, |e, n| {
            self.reporter.note(id, &format!("retrying after a transient failure (attempt {}): {e}", n + 1))
        })
    }

    fn run_step(&self, d: &DesiredGuest, step: &Step, jobs: &[Job], opts: &ApplyOptions) -> Result<(), StepFailure> {
        let id = d.id;
        let fail = |what: &str| {
            let what = what.to_string();
            move |e: BackendError| StepFailure::backend(what.clone(), &e)
        };
        let exists = || self.backend.observe_guest(id).ok().flatten();
        match &step.action {
            Action::Create { source } => {
                let request = CreateRequest {
                    id,
                    kind: d.kind,
                    node: d.node.clone(),
                    source: source.clone(),
                    config: d.config.clone(),
                };
                self.call(id, opts, || self.backend.create(&request), || exists().map(|_| ())).map_err(fail("create"))
            }
            Action::Configure { changes } => {
                let changes: Vec<FieldChange> = changes
                    .iter()
                    .map(|c| FieldChange { field: c.field.clone(), old: c.old.clone(), new: c.new.clone() })
                    .collect();
                self.call(id, opts, || self.backend.update_config(id, &changes), || None).map_err(fail("configure"))
            }
            Action::Start => {
                self.call(id, opts, || self.backend.start(id), || running(exists())).map_err(fail("start"))
            }
            Action::Restart => {
                self.call(id, opts, || self.backend.stop(id), || stopped(exists())).map_err(fail("stop"))?;
                self.call(id, opts, || self.backend.start(id), || running(exists())).map_err(fail("start"))
            }
            Action::NewHostKeys => self.new_host_keys(id, opts),
            Action::Customize { key, .. } => {
                let job = jobs
                    .iter()
                    .find(|j| &j.key == key)
                    .ok_or_else(|| StepFailure { step: format!("run {key}"), message: "no prepared job".into() })?;
                self.run_job(id, job, opts)
            }
            Action::HealthCheck => {
                let Some(check) = &d.health else { return Ok(()) };
                let address = d
                    .config
                    .text(&Field::NetIp)
                    .filter(|ip| *ip != "dhcp")
                    .map(|ip| ip.split('/').next().unwrap_or(ip));
                let result = wait_healthy(self.backend, self.prober, id, address, check, opts.health_interval_scale);
                self.record_health(id, opts, result.as_ref().err());
                result.map_err(|e| StepFailure { step: "health check".into(), message: e.to_string() })
            }
            // Taken by `run_guest`, which keeps it for a rollback.
            Action::UpdateSnapshot { .. } => Ok(()),
            Action::Snapshot { name } => {
                let taken = || exists().filter(|g| g.snapshots.contains(name)).map(|_| ());
                self.call(id, opts, || self.backend.snapshot(id, name), taken)
                    .map_err(fail(&format!("snapshot {name}")))
            }
            Action::MakeTemplate => {
                // Only a stopped guest becomes a template.
                if running(exists()).is_some() {
                    self.call(id, opts, || self.backend.stop(id), || stopped(exists())).map_err(fail("stop"))?;
                }
                let made = || exists().filter(|g| g.template).map(|_| ());
                self.call(id, opts, || self.backend.make_template(id), made).map_err(fail("make template"))
            }
        }
    }

    /// Records a failed health check in the guest's markers (so that the next plan does not call
    /// the guest unchanged while its service is down), and takes the record away once a check
    /// passes. A guest whose markers cannot be written is only noted.
    fn record_health(&self, id: GuestId, opts: &ApplyOptions, failure: Option<&HealthError>) {
        let recorded = self.update_markers(id, opts, |markers| match failure {
            Some(why) => {
                let first: String = why.to_string().lines().next().unwrap_or_default().chars().take(200).collect();
                markers.insert(HEALTH_MARKER.to_string(), first);
            }
            None => {
                markers.remove(HEALTH_MARKER);
            }
        });
        if let Err(e) = recorded {
            self.reporter.note(id, &format!("could not record the health check's result: {e}"));
        }
    }

    /// Reads the guest's markers, changes them, and writes them back when they changed.
    fn update_markers(
        &self,
        id: GuestId,
        opts: &ApplyOptions,
        change: impl FnOnce(&mut BTreeMap<String, String>),
    ) -> Result<(), BackendError> {
        let markers = self
            .call(id, opts, || self.backend.read_markers(id), || None)?
            .map(|b| parse_markers(&b))
            .unwrap_or_default();
        let mut updated = markers.clone();
        change(&mut updated);
        if updated == markers {
            return Ok(());
        }
        let content = serde_json::to_vec_pretty(&updated).unwrap_or_default();
        self.call(id, opts, || self.backend.write_markers(id, &content), || None)
    }

    /// Gives a clone its own SSH host keys (see [`crate::host_keys`]) and records its
    /// [`host_keys_marker`], unless its record shows it has them already (a plan made while the
    /// record could not be read): keys users may have pinned are never replaced twice.
    fn new_host_keys(&self, id: GuestId, opts: &ApplyOptions) -> Result<(), StepFailure> {
        let step = Action::NewHostKeys.describe();
        let fail = |e: BackendError| StepFailure::backend(step.clone(), &e);
        let marker = host_keys_marker(id);
        let record = self.call(id, opts, || self.backend.read_markers(id), || None).map_err(fail)?;
        if record.is_some_and(|b| parse_markers(&b).contains_key(&marker)) {
            self.reporter.note(id, "it has its own SSH host keys already: nothing replaced");
            return Ok(());
        }
        // Not retried: a command that may have run is not run again blindly.
        let (value, said) = match self.backend.exec(id, &host_keys::request()) {
            Ok(out) => host_keys::outcome(&out).map_err(|message| StepFailure { step: step.clone(), message })?,
            // A backend with no way into the guest (a Proxmox container without the node
            // channel) cannot replace them: said, and recorded, so that plans do not ask again.
            Err(e) if e.kind == ErrorKind::Unsupported => (
                host_keys::NOT_REPLACED,
                format!("WARNING: it keeps its template's SSH host keys: Phoenix cannot run commands in it ({e})"),
            ),
            Err(e) => return Err(fail(e)),
        };
        self.reporter.note(id, &said);
        self.update_markers(id, opts, |markers| {
            markers.insert(marker.clone(), value.to_string());
        })
        .map_err(fail)
    }

    /// Stages a job into a fresh directory of the guest, runs it with argv, removes the directory,
    /// and records its marker once it succeeded.
    fn run_job(&self, id: GuestId, job: &Job, opts: &ApplyOptions) -> Result<(), StepFailure> {
        let step = format!("run {}", job.key);
        let fail = |e: BackendError| StepFailure { step: step.clone(), message: e.to_string() };
        let dir = format!("/tmp/phoenix-{}-{}", job.key.replace(':', "-"), &job.hash[..12.min(job.hash.len())]);
        let push = |path: String, content: Vec<u8>, mode: u32| {
            let file = FilePush { path, content, mode, uid: 0, gid: 0 };
            self.call(id, opts, || self.backend.push_file(id, &file), || None)
        };
        let Some(script) = &job.script else {
            let name = job.key.strip_prefix("feature:").unwrap_or(&job.key);
            return Err(StepFailure {
                step,
                message: format!(
                    "feature `{name}` was given without an install script; give one in the features \
                     directory ({name}/feature.json and {name}/install.sh, see --features-dir)"
                ),
            });
        };
        let staged = push(format!("{dir}/run"), script.to_vec(), 0o755)
            .and_then(|()| {
                push(format!("{dir}/params.json"), serde_json::to_vec_pretty(&job.params).unwrap_or_default(), 0o600)
            })
            .and_then(|()| {
                job.files.iter().try_for_each(|f| push(format!("{dir}/{}", f.name), f.content.clone(), f.mode))
            });
        if let Err(e) = staged {
            // What was staged (a key, say) does not stay behind.
            let _ = self.backend.exec(id, &ExecRequest::new(["rm", "-rf", dir.as_str()], Duration::from_secs(60)));
            return Err(fail(e));
        }
        let argv = [
            format!("{dir}/run"),
            "--phoenix-contract".into(),
            CONTRACT_VERSION.to_string(),
            "--params".into(),
            format!("{dir}/params.json"),
        ];
        let command = argv.join(" ");
        let ran = self.backend.exec(id, &ExecRequest::new(argv, opts.exec_timeout));
        let cleanup = self.call(
            id,
            opts,
            || self.backend.exec(id, &ExecRequest::new(["rm", "-rf", dir.as_str()], Duration::from_secs(60))),
            || None,
        );
        let out = ran.map_err(fail)?;
        if !out.success() {
            let tail = |b: &[u8]| {
                let s = String::from_utf8_lossy(b);
                let lines: Vec<&str> = s.lines().collect();
                lines[lines.len().saturating_sub(20)..].join("\n")
            };
            return Err(StepFailure {
                step,
                message: format!(
                    "`{command}` exited with status {}\n--- stderr\n{}\n--- stdout\n{}",
                    out.status,
                    tail(&out.stderr),
                    tail(&out.stdout)
                ),
            });
        }
        if let Err(e) = cleanup {
            self.reporter.note(id, &format!("could not remove {dir}: {e}"));
        }
        // What it says last is its summary (the built-in features end with "<name>: nothing to
        // change" or "<name>: done").
        let said = String::from_utf8_lossy(&out.stdout);
        if let Some(last) = said.lines().map(str::trim).rfind(|l| !l.is_empty()) {
            let last: String = last.chars().take(200).collect();
            self.reporter.note(id, &format!("{} finished: {last}", job.key));
        }
        self.update_markers(id, opts, |markers| {
            markers.insert(job.key.clone(), job.hash.clone());
        })
        .map_err(fail)
    }
}

/// The clone source a guest's plan creates it from.
fn clone_source(g: &GuestPlan) -> Option<GuestId> {
    g.steps.iter().find_map(|s| match &s.action {
        Action::Create { source: CreateSource::Clone { source, .. } } => Some(*source),
        _ => None,
    })
}

/// For each guest, the length of the longest chain of guests with work that wait on it (itself
/// included): a measure of how much finishing it early shortens the run.
fn heights(plan: &Plan) -> BTreeMap<GuestId, usize> {
    let mut dependents: BTreeMap<GuestId, Vec<GuestId>> = BTreeMap::new();
    for g in &plan.guests {
        for n in &g.needs {
            dependents.entry(*n).or_default().push(g.id);
        }
    }
    let mut heights = BTreeMap::new();
    // Plan order puts each guest after what it needs; walk it backwards.
    for g in plan.guests.iter().rev() {
        let below =
            dependents.get(&g.id).into_iter().flatten().filter_map(|d| heights.get(d)).max().copied().unwrap_or(0);
        heights.insert(g.id, below + usize::from(!g.steps.is_empty()) * g.steps.len().max(1));
    }
    heights
}

fn running(g: Option<phoenix_backend::ObservedGuest>) -> Option<()> {
    g.filter(|g| g.power == phoenix_backend::PowerState::Running).map(|_| ())
}

fn stopped(g: Option<phoenix_backend::ObservedGuest>) -> Option<()> {
    g.filter(|g| g.power == phoenix_backend::PowerState::Stopped).map(|_| ())
}

/// The lifecycle state a guest is in while a step runs.
fn state_during(action: &Action) -> LifecycleState {
    match action {
        Action::Create { .. } => LifecycleState::Defined,
        Action::Configure { .. } => LifecycleState::Created,
        Action::Start | Action::Restart => LifecycleState::Configured,
        Action::NewHostKeys
        | Action::Customize { .. }
        | Action::UpdateSnapshot { .. }
        | Action::Snapshot { .. }
        | Action::MakeTemplate => LifecycleState::Customizing,
        Action::HealthCheck => LifecycleState::Running,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_snapshot_is_named_after_the_time_in_utc_and_never_twice() {
        let at = |secs: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        let none = BTreeSet::new();
        assert_eq!(update_snapshot_name(at(1_738_367_999), &none), "phoenix-pre-20250131-235959");
        assert_eq!(update_snapshot_name(at(1_709_208_000), &none), "phoenix-pre-20240229-120000");
        assert_eq!(update_snapshot_name(at(0), &none), "phoenix-pre-19700101-000000");
        assert_eq!(update_snapshot_name(at(4_102_444_800), &none), "phoenix-pre-21000101-000000");
        let taken: BTreeSet<String> =
            ["phoenix-pre-20250131-235959", "phoenix-pre-20250131-235959-2"].map(String::from).into();
        let name = update_snapshot_name(at(1_738_367_999), &taken);
        assert_eq!(name, "phoenix-pre-20250131-235959-3");
        assert!(is_update_snapshot(&name) && name.len() <= 40);
        // Names sort in the order they were taken.
        assert!(update_snapshot_name(at(1_738_368_000), &none) > name);
    }
}
