//! One module per command; each returns how it ended, mapped to the exit status in `lib.rs`.

pub mod adopt;
pub mod apply;
pub mod completions;
pub mod destroy;
pub mod features;
pub mod graph;
pub mod plan;
pub mod schema;
pub mod setup;
pub mod status;
pub mod upgrade;
pub mod validate;

use std::collections::BTreeMap;

use phoenix_backend::{Backend, GuestId};
use phoenix_config::Estate;
use phoenix_engine::customize::{FeatureLibrary, Job, customizations, prepare};
use phoenix_plan::Desired;

use crate::backends::{Connect, ConnectError};
use crate::cli::{GlobalArgs, WorkArgs};
use crate::printer::Printer;

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Success,
    /// Exit 1: invalid configuration, or the operation failed.
    Failure,
    /// Exit 2: the command or backend is not implemented yet.
    NotImplemented,
    /// Exit 2 with `plan --detailed-exitcode`: changes are pending.
    ChangesPending,
}

/// What every command gets.
pub struct Context<'a> {
    /// Output.
    pub printer: &'a Printer,
    /// The global options.
    pub global: &'a GlobalArgs,
    /// How to reach the backend.
    pub connect: &'a Connect,
}

/// What a command that changes what a user has asks before it does.
pub struct Confirmation<'a> {
    /// The error when nobody can answer (no terminal and no `--yes`).
    pub refusal: &'a str,
    /// Its hint.
    pub hint: &'a str,
    /// The question, answered by typing `yes`.
    pub question: &'a str,
    /// Said when the answer is not `yes`.
    pub declined: &'a str,
}

/// Whether to go on: at once with `--yes`; otherwise only when a person at a terminal types
/// `yes`. Says why not when it does not.
pub fn confirmed(cx: &Context<'_>, yes: bool, c: &Confirmation<'_>) -> bool {
    if yes {
        return true;
    }
    if !cx.printer.interactive {
        cx.printer.error(c.refusal, Some(c.hint));
        return false;
    }
    cx.printer.error_text(&format!("{} Type `yes` to confirm: ", c.question));
    let mut answer = String::new();
    let _ = std::io::BufRead::read_line(&mut std::io::stdin().lock(), &mut answer);
    if answer.trim() != "yes" {
        cx.printer.error_text(&format!("{}\n", c.declined));
        return false;
    }
    true
}

/// Everything the lifecycle commands start from: the validated configuration, its desired state
/// with the prepared customizations, and the backend.
pub struct Work {
    /// The configuration.
    pub estate: Estate,
    /// The desired state (restricted to the targets, when some are given).
    pub desired: Desired,
    /// Each guest's features and script, ready to run.
    pub jobs: BTreeMap<GuestId, Vec<Job>>,
    /// The backend.
    pub backend: Box<dyn Backend>,
    /// The gateway's rendered configuration and job, once the backend is observed (see
    /// [`observe_and_plan`]); `None` without a gateway.
    pub gateway: Option<phoenix_engine::gateway::Gateway>,
}

/// Validates the configuration, prepares features and scripts, and connects to the backend.
pub fn load_work(cx: &Context<'_>, args: &WorkArgs, targets: &[GuestId]) -> Result<Work, Outcome> {
    let dir = &cx.global.config_dir;
    let features_dir = validate::features_dir(cx, args);
    let (v, catalog) = validate::run_validation(dir, &features_dir);
    validate::print_diagnostics(cx.printer, &v);
    let Some(estate) = v.estate else {
        cx.printer.error(
            &format!("the configuration is invalid: {} error(s)", v.errors()),
            Some("`phoenix validate` lists every problem"),
        );
        return Err(Outcome::Failure);
    };
    let connected = (cx.connect)(&estate).map_err(|e| {
        let (hint, outcome) = match e {
            ConnectError::NotImplemented(_) => {
                (Some("`phoenix validate` and `phoenix graph` work with every backend today"), Outcome::NotImplemented)
            }
            ConnectError::Missing => (
                Some("add a `backend` section to phoenix_hypervisor_config.json (see docs/configuration.md)"),
                Outcome::Failure,
            ),
            ConnectError::Failed(_) => (None, Outcome::Failure),
        };
        cx.printer.error(&e.to_string(), hint);
        outcome
    })?;
    for note in &connected.notes {
        cx.printer.info_text(&format!("note: {note}\n"));
    }
    let backend = connected.backend;
    // The features validation checked against, with their scripts.
    let library = FeatureLibrary::from_catalog(catalog).map_err(|e| {
        cx.printer.error(&e.to_string(), None);
        Outcome::Failure
    })?;
    let jobs = prepare(&estate, &library, dir).map_err(|e| {
        cx.printer.error(&e.to_string(), Some(&format!("features are read from {} (one directory per feature, with feature.json and install.sh); set another with --features-dir", features_dir.display())));
        Outcome::Failure
    })?;
    let all = phoenix_plan::desired(&estate, &|g| customizations(&jobs, g));
    let desired = if targets.is_empty() {
        all
    } else {
        all.restrict(targets).map_err(|id| {
            cx.printer.error(&format!("--target {id}: no guest has this ID"), None);
            Outcome::Failure
        })?
    };
    Ok(Work { estate, desired, jobs, backend, gateway: None })
}

/// Observes the backend and plans, reporting a failure to observe. The gateway's configuration
/// is rendered once the backend is observed (a guest without a static address is reached where
/// it reports) and becomes part of the gateway guest's desired state and jobs.
pub fn observe_and_plan(
    cx: &Context<'_>,
    work: &mut Work,
) -> Result<(phoenix_engine::observe::Observed, phoenix_plan::Plan), Outcome> {
    let observed = phoenix_engine::observe::observe(work.backend.as_ref(), &work.desired, 8).map_err(|e| {
        cx.printer.error(&format!("cannot read the {} backend: {e}", work.backend.name()), e.detail.as_deref());
        Outcome::Failure
    })?;
    let backend = work.backend.as_ref();
    let addresses = phoenix_engine::gateway::observed_addresses(backend, &work.estate, &observed.observation);
    work.gateway = phoenix_engine::gateway::prepare(&work.estate, &addresses);
    if let Some(gw) = &work.gateway {
        gw.attach(&mut work.desired, &mut work.jobs);
    }
    let mut plan = phoenix_plan::plan_with(&work.desired, &observed.observation, &observed.markers, &|k, f| {
        backend.change_effect_for(k, f)
    });
    if let Some(gw) = &work.gateway {
        gw.describe(backend, &observed.observation, &mut plan);
    }
    let unhealthy = phoenix_engine::observe::failing_health(
        backend,
        &phoenix_engine::health::NetProber,
        &work.desired,
        &observed.observation,
    );
    phoenix_plan::repair_unhealthy(&mut plan, &work.desired, &unhealthy);
    // Features and scripts that run again on existing guests: a snapshot first, to roll back to.
    let keep = work.estate.hypervisor.behavior.as_ref().map_or(0, |b| b.update_snapshots_kept);
    phoenix_plan::guard_updates(&mut plan, &work.desired, backend.capabilities().snapshots, keep);
    for (id, why) in &observed.unreadable {
        plan.notes.push(format!("{id}: its markers could not be read ({why}); its customizations run again"));
    }
    plan.issues.extend(phoenix_plan::check_capabilities(&work.desired, &backend.capabilities()));
    plan.issues.extend(phoenix_plan::check_addresses(&work.desired, &observed.observation));
    let (issues, notes) = phoenix_plan::check_routes(&work.desired, &plan, &|f, v, g| backend.route(f, v, g));
    plan.issues.extend(issues);
    plan.notes.extend(notes);
    let can_snapshot = |k, c: &_| backend.check_snapshot(k, c).map_err(|e| e.to_string());
    let (issues, notes) = phoenix_plan::check_snapshots(&work.desired, &plan, &can_snapshot);
    plan.issues.extend(issues);
    plan.notes.extend(notes);
    // What the backend can tell before anything is created: missing templates, say.
    for g in &plan.guests {
        for step in &g.steps {
            if let phoenix_plan::Action::Create { source } = &step.action {
                let d = &work.desired.guests[&g.id];
                let request = phoenix_backend::CreateRequest {
                    id: d.id,
                    kind: d.kind,
                    node: d.node.clone(),
                    source: source.clone(),
                    config: d.config.clone(),
                };
                if let Err(e) = backend.check_create(&request) {
                    plan.issues.push(phoenix_plan::PlanIssue {
                        guest: d.id,
                        message: format!("{} ({}) cannot be created: {e}", d.id, d.name),
                        hint: e.detail.unwrap_or_else(|| "fix it, then plan again".into()),
                    });
                }
            }
        }
    }
    Ok((observed, plan))
}
