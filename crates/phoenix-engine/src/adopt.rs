//! Adopting guests Phoenix did not create (built by the shell version, or by hand) that the
//! configuration describes: they become Phoenix's as they are, never recreated, stopped or
//! restarted.
//!
//! Adoption has two halves. [`survey`] only reads: it picks the guests, asks the backend whether
//! and how it can adopt each ([`Backend::check_adopt`]), computes the plan the guest will have
//! once adopted (so the field differences are exactly those `phoenix plan` will show), reads the
//! guest's markers and runs the probes that decide which features and scripts are recorded as
//! done. [`Engine::adopt`] is the only part that changes anything: it writes the markers and
//! marks the guest as managed. A dry run stops after the survey.
//!
//! What is recorded as done, for each feature and the application script (first rule that
//! applies):
//!
//! 1. its marker is already there with this configuration's hash: kept as it is;
//! 2. the guest is stopped, or its markers cannot be read: not recorded (nothing can be checked
//!    or written inside it);
//! 3. `--assume-customized`: recorded;
//! 4. the feature `base_setup`: recorded (the guest runs);
//! 5. a feature with a probe in [`PROBES`]: recorded when the probe exits 0 inside the guest;
//! 6. anything else (a feature without a probe, the application script): not recorded.
//!
//! What is not recorded runs on the next apply, as for a guest Phoenix created that never ran it.

use std::collections::BTreeMap;
use std::time::Duration;

use phoenix_backend::{
    Backend, BackendError, ChangeEffect, ExecRequest, Field, GuestConfig, GuestId, GuestKind, Observation, PowerState,
};
use phoenix_plan::{Action, Desired, GuestPlan, Markers, PlanIssue, PlannedChange};
use serde::Serialize;

use crate::apply::{ApplyOptions, Engine};
use crate::observe::parse_markers;

/// A feature's probe: a command run inside the guest (`/bin/sh -c <command>`) that exits 0 when
/// the feature is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Probe {
    /// The feature's name, as in `features`.
    pub feature: &'static str,
    /// The shell command.
    pub command: &'static str,
}

/// The probes, one per feature that has one.
pub const PROBES: &[Probe] = &[
    Probe { feature: "docker", command: "command -v docker" },
    Probe { feature: "nvidia", command: "command -v nvidia-smi" },
    Probe { feature: "ollama", command: "command -v ollama" },
    Probe { feature: "vllm", command: "command -v vllm || python3 -c 'import vllm'" },
];

/// The feature recorded as done whenever the guest runs: it is what every guest has once it has
/// booted and been used.
pub const ALWAYS_DONE: &str = "base_setup";

/// The probe of a feature, if it has one.
pub fn probe(feature: &str) -> Option<&'static Probe> {
    PROBES.iter().find(|p| p.feature == feature)
}

/// The argument vector a probe runs as inside the guest.
pub fn probe_argv(probe: &Probe) -> Vec<String> {
    ["/bin/sh", "-c", probe.command, "phoenix-probe"].iter().map(|s| (*s).to_string()).collect()
}

/// How adoption decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdoptOptions {
    /// Record every feature and the application script as done, without evidence.
    pub assume_customized: bool,
    /// How long a probe may run.
    pub probe_timeout: Duration,
    /// `behavior.update_snapshots_kept`, for the plan each guest has once adopted (its features
    /// and script that run are guarded by a snapshot, as in every plan).
    pub update_snapshots_kept: u32,
}

impl Default for AdoptOptions {
    fn default() -> AdoptOptions {
        AdoptOptions { assume_customized: false, probe_timeout: Duration::from_secs(60), update_snapshots_kept: 0 }
    }
}

/// What adoption does with a feature's or the script's marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Recorded as done now.
    Recorded,
    /// Its marker was there already, with this configuration's hash.
    AlreadyRecorded,
    /// Not recorded: it runs on the next apply.
    NotRecorded,
}

/// What adoption decided for one feature or the script, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// `feature:<name>` or `script`.
    pub key: String,
    /// What happens to its marker.
    pub verdict: Verdict,
    /// How it was decided.
    pub why: String,
}

/// One guest to adopt: what it will look like to Phoenix, and what will be written.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Adoption {
    /// The guest.
    pub id: GuestId,
    /// Its name in the configuration.
    pub name: String,
    /// Container or VM.
    pub kind: GuestKind,
    /// Whether it runs (adoption leaves it so).
    pub power: PowerState,
    /// How it differs from its configuration: the changes the next plan will make.
    pub changes: Vec<PlannedChange>,
    /// Each feature and the application script, with what adoption decided.
    pub customizations: Vec<Decision>,
    /// The plan it will have once adopted (configure, restart, the features and script that
    /// were not recorded, ...).
    pub then: GuestPlan,
    /// The marker file to write inside it, when something is recorded (the markers it had, and
    /// those recorded now).
    #[serde(skip)]
    pub markers: Option<BTreeMap<String, String>>,
    /// Its configuration's fields, given to [`Backend::adopt`].
    #[serde(skip)]
    pub config: GuestConfig,
}

/// What adoption would do: the guests to adopt, those already Phoenix's, and the refusals.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Survey {
    /// Guests to adopt, in start order.
    pub adopt: Vec<Adoption>,
    /// Guests asked for that are Phoenix's already (nothing to do).
    pub already_managed: Vec<GuestId>,
    /// Guests that cannot be adopted, and why. While there are some, nothing is adopted.
    pub refused: Vec<PlanIssue>,
}

/// The guests to consider: the IDs asked for (each must be configured and exist on the
/// backend; those Phoenix manages already are listed apart), or, without IDs, every configured
/// guest that exists on the backend and is not Phoenix's. Returns the candidates (in start
/// order), those already managed, and the refusals.
pub fn select(
    desired: &Desired,
    observed: &Observation,
    ids: &[GuestId],
) -> (Vec<GuestId>, Vec<GuestId>, Vec<PlanIssue>) {
    let foreign = |id: &GuestId| observed.guests.get(id).is_some_and(|g| !g.managed);
    if ids.is_empty() {
        return (desired.order.iter().copied().filter(foreign).collect(), Vec::new(), Vec::new());
    }
    let mut refused = Vec::new();
    let mut already = Vec::new();
    for id in ids {
        match (desired.guests.get(id), observed.guests.get(id)) {
            (None, _) => refused.push(PlanIssue {
                guest: *id,
                message: format!("{id} is not in the configuration"),
                hint: "adoption takes over guests the configuration describes: add it to phoenix_lxc_configs.json \
                       or phoenix_vm_configs.json first"
                    .into(),
            }),
            (Some(d), None) => refused.push(PlanIssue {
                guest: *id,
                message: format!("{id} ({}) does not exist on the backend", d.name),
                hint: "there is nothing to adopt: `phoenix apply` creates it".into(),
            }),
            (Some(_), Some(o)) if o.managed => {
                if !already.contains(id) {
                    already.push(*id);
                }
            }
            (Some(_), Some(_)) => {}
        }
    }
    let candidates = desired.order.iter().copied().filter(|id| ids.contains(id) && foreign(id)).collect();
    (candidates, already, refused)
}

/// Everything adoption needs to know, read without changing anything: for each guest of `ids`
/// (see [`select`]) whether the backend can adopt it, the plan it will have once adopted (a
/// guest whose plan would be refused — a field that cannot change in place, a disk larger than
/// configured, another kind of guest — is refused), and what is recorded of its features and
/// script (reading its markers and running the probes).
pub fn survey(
    backend: &dyn Backend,
    desired: &Desired,
    observed: &Observation,
    ids: &[GuestId],
    opts: &AdoptOptions,
) -> Survey {
    let (candidates, already_managed, mut refused) = select(desired, observed, ids);
    let effect = |kind: GuestKind, field: &Field| backend.change_effect_for(kind, field);
    let mut adopt = Vec::new();
    for id in candidates {
        let (Some(d), Some(o)) = (desired.guests.get(&id), observed.guests.get(&id)) else { continue };
        let config = match backend.check_adopt(o, &d.config) {
            Ok(c) => c,
            Err(e) => {
                refused.push(PlanIssue {
                    guest: id,
                    message: format!("{id} ({}) cannot be adopted: {e}", d.name),
                    hint: e
                        .detail
                        .clone()
                        .unwrap_or_else(|| "leave it as it is, or give the configuration's guest another ID".into()),
                });
                continue;
            }
        };
        // The guest as the next plan will see it: Phoenix's, with the configuration the backend
        // will show.
        let mut view = observed.clone();
        if let Some(g) = view.guests.get_mut(&id) {
            g.managed = true;
            g.config = config;
        }
        let planned = |markers: Markers| phoenix_plan::plan_with(desired, &view, &markers, &effect);
        let first = planned(Markers::new());
        let issues: Vec<PlanIssue> = first.issues.into_iter().filter(|i| i.guest == id).collect();
        if !issues.is_empty() {
            // What the guest has where the configuration says something that cannot change in place.
            let fixed: Vec<String> = view
                .guests
                .get(&id)
                .map(|g| phoenix_plan::plan::config_changes(d, g, &|f| effect(d.kind, f)))
                .unwrap_or_default()
                .into_iter()
                .filter(|c| c.effect == ChangeEffect::Recreate)
                .map(|c| {
                    format!(
                        "{}: {}",
                        c.field,
                        c.old.as_ref().map_or_else(|| "(unset)".to_string(), ToString::to_string)
                    )
                })
                .collect();
            refused.extend(issues.into_iter().map(|i| PlanIssue {
                message: format!("{id} ({}) cannot be adopted: {}", d.name, i.message),
                hint: if fixed.is_empty() || !i.message.contains("in place") {
                    format!("once adopted, no plan could be applied: {}", i.hint)
                } else {
                    format!(
                        "once adopted, no plan could be applied: make the configuration say what the guest has ({}), then adopt it",
                        fixed.join(", ")
                    )
                },
                ..i
            }));
            continue;
        }
        let recorded = record(backend, id, d, o.power, opts);
        let mut plan = planned([(id, recorded.after.clone())].into());
        phoenix_plan::guard_updates(&mut plan, desired, backend.capabilities().snapshots, opts.update_snapshots_kept);
        let Some(then) = plan.guest(id).cloned() else { continue };
        let changes = then
            .steps
            .iter()
            .find_map(|s| match &s.action {
                Action::Configure { changes } => Some(changes.clone()),
                _ => None,
            })
            .unwrap_or_default();
        adopt.push(Adoption {
            id,
            name: d.name.clone(),
            kind: d.kind,
            power: o.power,
            changes,
            customizations: recorded.decisions,
            then,
            markers: recorded.write.then_some(recorded.after).flatten(),
            config: d.config.clone(),
        });
    }
    Survey { adopt, already_managed, refused }
}

/// What was decided for a guest's features and script.
struct Recorded {
    decisions: Vec<Decision>,
    /// Its markers once adopted (`None`: they cannot be read).
    after: Option<BTreeMap<String, String>>,
    /// Something was recorded: the markers are written.
    write: bool,
}

/// Decides, for each customization of the guest, whether it is recorded as done (see the
/// module's rules).
fn record(
    backend: &dyn Backend,
    id: GuestId,
    d: &phoenix_plan::DesiredGuest,
    power: PowerState,
    opts: &AdoptOptions,
) -> Recorded {
    if d.customizations.is_empty() {
        return Recorded { decisions: Vec::new(), after: Some(BTreeMap::new()), write: false };
    }
    let existing: Result<BTreeMap<String, String>, BackendError> =
        backend.read_markers(id).map(|b| b.map(|b| parse_markers(&b)).unwrap_or_default());
    let running = power == PowerState::Running;
    let decide = |verdict: Verdict, why: String| (verdict, why);
    let next = " it runs on the next apply";
    let mut decisions = Vec::new();
    let mut markers = existing.as_ref().ok().cloned();
    let mut write = false;
    for c in &d.customizations {
        let feature = c.key.strip_prefix("feature:");
        let (verdict, why) = match &existing {
            Ok(m) if m.get(&c.key) == Some(&c.hash) => {
                decide(Verdict::AlreadyRecorded, "its marker is already there, for this configuration".into())
            }
            _ if !running => decide(
                Verdict::NotRecorded,
                format!("the guest is stopped: nothing can be checked or written inside it;{next}"),
            ),
            Err(e) => decide(Verdict::NotRecorded, format!("its markers could not be read ({e});{next}")),
            Ok(_) if opts.assume_customized => decide(Verdict::Recorded, "assumed done (--assume-customized)".into()),
            Ok(_) if feature == Some(ALWAYS_DONE) => {
                decide(Verdict::Recorded, format!("{ALWAYS_DONE} is done in every guest that runs"))
            }
            Ok(_) => match feature.map(|f| (f, probe(f))) {
                Some((_, Some(p))) => match backend.exec(id, &ExecRequest::new(probe_argv(p), opts.probe_timeout)) {
                    Ok(out) if out.success() => {
                        decide(Verdict::Recorded, format!("`{}` succeeded inside the guest", p.command))
                    }
                    Ok(out) => decide(
                        Verdict::NotRecorded,
                        format!("`{}` exited with status {} inside the guest;{next}", p.command, out.status),
                    ),
                    Err(e) => decide(Verdict::NotRecorded, format!("`{}` could not run ({e});{next}", p.command)),
                },
                Some((f, None)) => decide(
                    Verdict::NotRecorded,
                    format!("no probe tells whether {f} ran;{next} (--assume-customized records it)"),
                ),
                None => decide(
                    Verdict::NotRecorded,
                    format!("an application script leaves nothing to check;{next} (--assume-customized records it)"),
                ),
            },
        };
        if let (Verdict::Recorded, Some(m)) = (verdict, markers.as_mut()) {
            m.insert(c.key.clone(), c.hash.clone());
            write = true;
        }
        decisions.push(Decision { key: c.key.clone(), verdict, why });
    }
    Recorded { decisions, after: markers, write }
}

/// A guest that could not be adopted: the step that failed, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("guest {id} ({name}), step `{step}`: {source}")]
pub struct AdoptError {
    /// The guest.
    pub id: GuestId,
    /// Its name.
    pub name: String,
    /// The step: `record the markers` or `mark as managed`.
    pub step: &'static str,
    /// The backend's error.
    pub source: BackendError,
}

impl Engine<'_> {
    /// Adopts one guest as surveyed: writes its markers (when something was recorded), then marks
    /// it as Phoenix's. The markers come first, so that a guest whose marking fails is still not
    /// Phoenix's and can be adopted again. Nothing else is changed.
    pub fn adopt(&self, adoption: &Adoption, opts: &ApplyOptions) -> Result<(), AdoptError> {
        let id = adoption.id;
        let what = |step: &'static str| {
            move |source: BackendError| AdoptError { id, name: adoption.name.clone(), step, source }
        };
        if let Some(markers) = &adoption.markers {
            let content = serde_json::to_vec_pretty(markers).unwrap_or_default();
            self.call(id, opts, || self.backend.write_markers(id, &content), || None)
                .map_err(what("record the markers"))?;
        }
        let marked = || self.backend.observe_guest(id).ok().flatten().filter(|g| g.managed).map(|_| ());
        self.call(id, opts, || self.backend.adopt(id, &adoption.config), marked).map_err(what("mark as managed"))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use phoenix_backend::{BackendError, CreateSource, Delivery, ObservedGuest};
    use phoenix_plan::{Customization, DesiredGuest};
    use phoenix_testkit::memory::{FailRule, MemoryBackend, Method};

    use super::*;

    fn guest(keys: &[&str]) -> DesiredGuest {
        DesiredGuest {
            id: 100,
            kind: GuestKind::Lxc,
            name: "g".into(),
            node: None,
            source: CreateSource::Template("t".into()),
            config: GuestConfig::default(),
            template_snapshot: None,
            template: false,
            unused_snapshot: None,
            customizations: keys.iter().map(|k| Customization { key: (*k).into(), hash: format!("h-{k}") }).collect(),
            health: None,
            needs: Vec::new(),
            inherits: BTreeSet::new(),
        }
    }

    fn backend() -> MemoryBackend {
        let b = MemoryBackend::new();
        b.insert(ObservedGuest {
            id: 100,
            kind: GuestKind::Lxc,
            node: None,
            power: PowerState::Running,
            config: GuestConfig::default(),
            snapshots: BTreeSet::new(),
            managed: false,
            template: false,
            half_made: None,
            unreachable: None,
            markers: None,
        });
        b
    }

    #[test]
    fn without_a_probe_or_with_unreadable_markers_nothing_is_recorded() {
        let b = backend();
        let d = guest(&["feature:hello", "script"]);
        let r = record(&b, 100, &d, PowerState::Running, &AdoptOptions::default());
        let got: Vec<(&str, Verdict, &str)> =
            r.decisions.iter().map(|x| (x.key.as_str(), x.verdict, x.why.as_str())).collect();
        assert_eq!(
            got,
            [
                (
                    "feature:hello",
                    Verdict::NotRecorded,
                    "no probe tells whether hello ran; it runs on the next apply (--assume-customized records it)"
                ),
                (
                    "script",
                    Verdict::NotRecorded,
                    "an application script leaves nothing to check; it runs on the next apply (--assume-customized records it)"
                ),
            ]
        );
        assert!(!r.write);
        assert_eq!(r.after, Some(BTreeMap::new()));

        let assumed = record(
            &b,
            100,
            &d,
            PowerState::Running,
            &AdoptOptions { assume_customized: true, ..AdoptOptions::default() },
        );
        assert!(assumed.write && assumed.decisions.iter().all(|x| x.verdict == Verdict::Recorded));
        assert_eq!(
            assumed.after.map(|m| m.into_keys().collect::<Vec<_>>()),
            Some(vec!["feature:hello".into(), "script".into()])
        );

        // Markers that cannot be read are never overwritten: nothing is recorded, even assumed.
        b.fail(FailRule::new(Method::ReadFile, BackendError::permanent(Delivery::NotSent, "agent gone")));
        let unread = record(
            &b,
            100,
            &d,
            PowerState::Running,
            &AdoptOptions { assume_customized: true, ..AdoptOptions::default() },
        );
        assert!(!unread.write && unread.after.is_none());
        assert_eq!(unread.decisions[0].why, "its markers could not be read (agent gone); it runs on the next apply");
    }
}
