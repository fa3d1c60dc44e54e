//! The planning pipeline, in one place: the configuration read and validated against the
//! features ([`Validated`]), its customizations prepared and its desired state computed
//! ([`Planner`]), then the backend observed and the plan made with every issue and note
//! ([`Planner::plan`]). The command line and the test suites plan through it alike.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use phoenix_backend::{Backend, BackendError, CreateRequest, GuestId};
use phoenix_config::features::Catalog;
use phoenix_config::{Estate, RealFilesystem, Validation};
use phoenix_plan::{Action, Desired, Plan, PlanIssue};

use crate::customize::{CustomizeError, FeatureLibrary, Job, customizations, prepare};
use crate::gateway::{self, Gateway};
use crate::health::Prober;
use crate::observe::{Observed, failing_health, observe};

/// How many guests' markers are read at once.
const MARKER_READERS: usize = 8;

/// Why a configuration cannot be planned.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// Validation found errors (its reports say which).
    #[error("the configuration is invalid: {0} error(s)")]
    Invalid(usize),
    /// The scripts of the features validation checked against cannot be read.
    #[error(transparent)]
    Library(CustomizeError),
    /// A guest's customizations cannot be prepared (a feature the library lacks, an application
    /// script that is nowhere).
    #[error(transparent)]
    Customize(CustomizeError),
    /// A target names no configured guest.
    #[error("no guest has the ID {0}")]
    UnknownTarget(GuestId),
}

/// A configuration directory read and validated against the built-in features and those of a
/// features directory.
#[derive(Debug, Clone)]
pub struct Validated {
    /// What validation found: every report, and the configuration when there is no error.
    pub validation: Validation,
    catalog: Catalog,
    config_dir: PathBuf,
}

impl Validated {
    /// Reads and validates `config_dir` against the built-in features, overridden by those of
    /// `features_dir` (its problems are reported with the configuration's).
    pub fn read(config_dir: &Path, features_dir: &Path) -> Validated {
        let fs = RealFilesystem;
        let (sources, mut early) = phoenix_config::load(config_dir, &fs);
        let (catalog, problems) = Catalog::load(features_dir, &fs);
        early.extend(problems);
        let validation = phoenix_config::validate_with(&sources, early, &fs, &catalog);
        Validated { validation, catalog, config_dir: config_dir.to_path_buf() }
    }

    /// The validated configuration, or how many errors stand in its way.
    pub fn estate(&self) -> Result<&Estate, PrepareError> {
        self.validation.estate.as_ref().ok_or_else(|| PrepareError::Invalid(self.validation.errors()))
    }

    /// The features validation checked against, with their scripts.
    pub fn feature_library(&self) -> Result<FeatureLibrary, PrepareError> {
        FeatureLibrary::from_catalog(self.catalog.clone()).map_err(PrepareError::Library)
    }

    /// The planner of the validated configuration, its features taken from `library` and its
    /// application scripts from the configuration directory; restricted to `targets` and what
    /// they need, unless there are none.
    pub fn prepare(self, library: &FeatureLibrary, targets: &[GuestId]) -> Result<Planner, PrepareError> {
        let errors = self.validation.errors();
        let estate = self.validation.estate.ok_or(PrepareError::Invalid(errors))?;
        Planner::new(estate, library, &self.config_dir, targets)
    }
}

/// A configuration ready to plan: its customizations prepared, its desired state computed, and,
/// once planned, its gateway rendered and made part of both.
#[derive(Debug, Clone)]
pub struct Planner {
    estate: Estate,
    desired: Desired,
    jobs: BTreeMap<GuestId, Vec<Job>>,
    gateway: Option<Gateway>,
}

/// What planning found: the backend's view and the plan, with its issues and notes.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The backend's view, with the markers read inside the guests.
    pub observed: Observed,
    /// The plan.
    pub plan: Plan,
}

impl Planner {
    /// Prepares the customizations of `estate` (features from `library`, application scripts
    /// from `config_dir`) and computes its desired state, restricted to `targets` and what they
    /// need unless there are none.
    pub fn new(
        estate: Estate,
        library: &FeatureLibrary,
        config_dir: &Path,
        targets: &[GuestId],
    ) -> Result<Planner, PrepareError> {
        let jobs = prepare(&estate, library, config_dir).map_err(PrepareError::Customize)?;
        let all = phoenix_plan::desired(&estate, &|g| customizations(&jobs, g));
        let desired =
            if targets.is_empty() { all } else { all.restrict(targets).map_err(PrepareError::UnknownTarget)? };
        Ok(Planner { estate, desired, jobs, gateway: None })
    }

    /// The configuration.
    pub fn estate(&self) -> &Estate {
        &self.estate
    }

    /// The desired state; once planned, with the gateway's customization.
    pub fn desired(&self) -> &Desired {
        &self.desired
    }

    /// Each guest's customizations, ready to run; once planned, with the gateway's job.
    pub fn jobs(&self) -> &BTreeMap<GuestId, Vec<Job>> {
        &self.jobs
    }

    /// The gateway's rendered configuration and job, once planned; `None` without a gateway.
    pub fn gateway(&self) -> Option<&Gateway> {
        self.gateway.as_ref()
    }

    /// Adds the gateway's certificate and key to its job, to be staged when it runs (read by the
    /// caller only when applying; never hashed or shown).
    pub fn add_gateway_tls(&mut self, certificate: Vec<u8>, key: Vec<u8>) {
        if let Some(gw) = &self.gateway {
            Gateway::add_tls(&mut self.jobs, gw.rendered.guest, certificate, key);
        }
    }

    /// What the backend shows of the desired guests, with their markers.
    pub fn observe(&self, backend: &dyn Backend) -> Result<Observed, BackendError> {
        observe(backend, &self.desired, MARKER_READERS)
    }

    /// Observes the backend and plans. The gateway's configuration is rendered once the backend
    /// is observed (a guest without a static address is reached where it reports) and becomes
    /// part of the gateway guest's desired state and jobs. Running services failing their
    /// health check (probed with `prober` where the backend's guests are reachable) are
    /// repaired; customizations that run again on existing guests are guarded by a snapshot;
    /// what the backend cannot do or deliver, addresses already taken, template snapshots the
    /// storage cannot take and guests that cannot be created are the plan's issues.
    pub fn plan(&mut self, backend: &dyn Backend, prober: &dyn Prober) -> Result<Planned, BackendError> {
        let observed = self.observe(backend)?;
        let addresses = gateway::observed_addresses(backend, &self.estate, &observed.observation);
        self.gateway = gateway::prepare(&self.estate, &addresses);
        if let Some(gw) = &self.gateway {
            gw.attach(&mut self.desired, &mut self.jobs);
        }
        let desired = &self.desired;
        let mut plan = phoenix_plan::plan_with(desired, &observed.observation, &observed.markers, &|k, f| {
            backend.change_effect_for(k, f)
        });
        if let Some(gw) = &self.gateway {
            gw.describe(backend, &observed.observation, &mut plan);
        }
        let unhealthy = failing_health(backend, prober, desired, &observed.observation);
        phoenix_plan::repair_unhealthy(&mut plan, desired, &unhealthy);
        // Features and scripts that run again on existing guests: a snapshot first, to roll back to.
        let keep = self.estate.hypervisor.behavior.as_ref().map_or(0, |b| b.update_snapshots_kept);
        phoenix_plan::guard_updates(&mut plan, desired, backend.capabilities().snapshots, keep);
        for (id, why) in &observed.unreadable {
            plan.notes.push(format!("{id}: its markers could not be read ({why}); its customizations run again"));
        }
        plan.issues.extend(phoenix_plan::check_capabilities(desired, &backend.capabilities()));
        plan.issues.extend(phoenix_plan::check_addresses(desired, &observed.observation));
        let (issues, notes) = phoenix_plan::check_routes(desired, &plan, &|f, v, g| backend.route(f, v, g));
        plan.issues.extend(issues);
        plan.notes.extend(notes);
        // Snapshots the storage cannot take: a template's is an issue, an update's a note.
        let (issues, notes) = phoenix_plan::check_snapshots(desired, &plan, &|k, c| backend.check_snapshot(k, c));
        plan.issues.extend(issues);
        plan.notes.extend(notes);
        let uncreatable = creation_issues(backend, desired, &plan);
        plan.issues.extend(uncreatable);
        Ok(Planned { observed, plan })
    }
}

/// What the backend can tell before anything is created (missing templates, say): an issue for
/// each guest the plan creates that the backend refuses.
fn creation_issues(backend: &dyn Backend, desired: &Desired, plan: &Plan) -> Vec<PlanIssue> {
    let mut issues = Vec::new();
    for g in &plan.guests {
        for step in &g.steps {
            if let Action::Create { source } = &step.action {
                let d = &desired.guests[&g.id];
                let request = CreateRequest {
                    id: d.id,
                    kind: d.kind,
                    node: d.node.clone(),
                    source: source.clone(),
                    config: d.config.clone(),
                };
                if let Err(e) = backend.check_create(&request) {
                    issues.push(PlanIssue {
                        guest: d.id,
                        message: format!("{} ({}) cannot be created: {e}", d.id, d.name),
                        hint: e.detail.unwrap_or_else(|| "fix it, then plan again".into()),
                    });
                }
            }
        }
    }
    issues
}
