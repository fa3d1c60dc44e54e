//! Safe updates against the in-memory backend: a feature or the application script that runs
//! again on an existing guest is guarded by a snapshot taken first; a failure of the update (or
//! of the health check after it) rolls the guest back to it; a passed update deletes it, and
//! older update snapshots beyond the number kept; guests created by the run, templates and
//! backends without snapshots get none.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use phoenix_backend::{Backend, BackendError, Delivery, PowerState};
use phoenix_engine::customize::MARKERS_PATH;
use phoenix_engine::{Engine, GuestOutcome, Silent};
use phoenix_plan::Action;
use phoenix_testkit::memory::{FailRule, MemoryBackend, Method};
use support::*;

/// One container with two features, an application script and a command health check.
fn app(extra: &str) -> Config {
    let health = r#", "health_check": {"command": "check-health", "retries": 1, "interval": 1}"#;
    let containers = format!(
        r#"{{"500": {}}}"#,
        container(
            "app",
            "10.9.0.50/16",
            &format!(
                r#", "template": "local:vztmpl/x.tar.zst", "features": ["base_setup", "docker"], "application_script": "app.sh"{health}{extra}"#
            )
        )
    );
    Config::new(&containers, &[("app.sh", "#!/bin/sh\necho v1\n")])
}

/// Gives the configuration a `behavior` section.
fn with_behavior(cfg: &Config, behavior: &str) {
    let hv = format!(
        r#"{{"backend": {{"type": "lxc", "bridges": {{"vmbr0": {{"address": "10.9.0.1/16"}}}}, "storage": {{"local": "/srv/local"}}}},
            "behavior": {behavior}}}"#
    );
    std::fs::write(cfg.path().join("phoenix_hypervisor_config.json"), hv).expect("write");
}

fn versions(base: &'static str, docker: &'static str) -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([("base_setup", base), ("docker", docker)])
}

/// The guest's snapshots' names.
fn snapshots(backend: &MemoryBackend, id: u32) -> Vec<String> {
    backend.guest(id).expect("guest").observed.snapshots.into_iter().collect()
}

fn markers(backend: &MemoryBackend, id: u32) -> Vec<u8> {
    backend.guest(id).expect("guest").files.get(MARKERS_PATH).cloned().unwrap_or_default()
}

/// The update snapshot calls, as `Method name`.
fn snapshot_calls(backend: &MemoryBackend) -> Vec<String> {
    backend
        .calls()
        .into_iter()
        .filter(|c| c.ok && matches!(c.method, Method::Snapshot | Method::Rollback | Method::DeleteSnapshot))
        .map(|c| format!("{:?} {}", c.method, c.detail))
        .collect()
}

#[test]
fn a_failed_update_rolls_the_guest_back_to_the_snapshot_taken_before_it() {
    let backend = MemoryBackend::new();
    let cfg = app("");
    let (_, report) = run_apply(&backend, &prepare_run(&cfg, &library(&versions("v1", "v1"))), &Silent, &options());
    assert!(!report.failed(), "{report:#?}");
    let before = markers(&backend, 500);
    let starts = backend.guest(500).expect("500").starts;

    // Both features change; base_setup passes (its marker is written), docker fails.
    let p = prepare_run(&cfg, &library(&versions("v2", "v2")));
    let plan = make_plan(&backend, &p);
    let steps: Vec<String> = plan.guests[0].steps.iter().map(|s| s.action.describe()).collect();
    assert_eq!(steps, ["snapshot before the update", "run feature:base_setup", "run feature:docker", "health check"]);
    backend.set_exec_status("phoenix-feature-docker-", 1, "E: Unable to locate package docker-ce");
    backend.clear_calls();
    let (_, report) = run_apply(&backend, &p, &Silent, &options());
    let GuestOutcome::RolledBack(message) = &report.outcomes[&500] else { panic!("{report:#?}") };
    let name = snapshots(&backend, 500).into_iter().next().expect("the snapshot stays after a rollback");
    assert!(name.starts_with("phoenix-pre-"), "{name}");
    assert!(
        message.starts_with(&format!(
            "guest 500 (app): feature:docker failed; the guest was rolled back to snapshot {name} taken before the update\n"
        )),
        "{message}"
    );
    // With the original error.
    assert!(message.contains("step `run feature:docker`") && message.contains("Unable to locate package"), "{message}");
    assert!(report.failed());
    assert_eq!(snapshot_calls(&backend), [format!("Snapshot {name}"), format!("Rollback {name}")]);
    // The snapshot came before anything of the update ran, the rollback after the failure.
    let calls = mutating(&backend);
    let taken = calls.iter().position(|c| c.starts_with("Snapshot")).expect("snapshot");
    let first_run = calls.iter().position(|c| c.contains("--phoenix-contract")).expect("run");
    assert!(taken < first_run, "{calls:?}");
    assert!(calls.last().is_some_and(|c| c.starts_with("Rollback")), "{calls:?}");
    assert!(calls.iter().all(|c| !c.starts_with("Destroy")), "{calls:?}");
    // base_setup's new marker is gone with the rollback: the guest is as it was, and runs.
    assert_eq!(markers(&backend, 500), before);
    let g = backend.guest(500).expect("500");
    assert_eq!(g.observed.power, PowerState::Running);
    assert!(g.starts > starts, "started again after the rollback");
    // Both run again next time, guarded again.
    backend.set_exec_status("phoenix-feature-docker-", 0, "");
    let again = make_plan(&backend, &p);
    assert!(matches!(again.guests[0].steps[0].action, Action::UpdateSnapshot { .. }), "{:#?}", again.guests);
    assert_eq!(again.guests[0].steps.len(), 4);
    let (_, report) = run_apply(&backend, &p, &Silent, &options());
    assert_eq!(report.outcomes[&500], GuestOutcome::Changed);
    // The one left by the rollback is deleted with the new one.
    assert!(snapshots(&backend, 500).is_empty(), "{:?}", snapshots(&backend, 500));
}

#[test]
fn a_failed_health_check_after_the_update_rolls_it_back_too() {
    let backend = MemoryBackend::new();
    let cfg = app("");
    run_apply(&backend, &prepare_run(&cfg, &library(&versions("v1", "v1"))), &Silent, &options());
    let before = markers(&backend, 500);
    let p = prepare_run(&cfg, &library(&versions("v1", "v2")));
    backend.set_command_status("check-health", 1);
    backend.clear_calls();
    let (_, report) = run_apply(&backend, &p, &Silent, &options());
    let GuestOutcome::RolledBack(message) = &report.outcomes[&500] else { panic!("{report:#?}") };
    assert!(
        message.starts_with("guest 500 (app): the health check after the update failed; the guest was rolled back to snapshot phoenix-pre-"),
        "{message}"
    );
    assert!(message.contains("step `health check`: not healthy after 1 attempt(s)"), "{message}");
    assert_eq!(markers(&backend, 500), before, "docker's new marker and the health record went with the rollback");
    assert_eq!(snapshot_calls(&backend).len(), 2, "{:?}", snapshot_calls(&backend));
}

#[test]
fn a_passed_update_deletes_its_snapshot_and_those_a_killed_run_left_but_no_other() {
    let backend = MemoryBackend::new();
    let cfg = app("");
    run_apply(&backend, &prepare_run(&cfg, &library(&versions("v1", "v1"))), &Silent, &options());
    // Left by a run killed between its snapshot and their deletion, and snapshots of the user's.
    for name in ["phoenix-pre-20000101-000000", "manual", "phoenix-pre-mine"] {
        backend.snapshot(500, name).expect("snapshot");
    }
    let p = prepare_run(&cfg, &library(&versions("v1", "v2")));
    backend.clear_calls();
    let (plan, report) = run_apply(&backend, &p, &Silent, &options());
    assert_eq!(report.outcomes[&500], GuestOutcome::Changed, "{report:#?}");
    let reason = &plan.guests[0].steps[0].reason;
    assert!(reason.starts_with("feature:docker run(s) on a guest that exists already: a snapshot phoenix-pre-<time>"));
    let calls = snapshot_calls(&backend);
    let name = calls[0].strip_prefix("Snapshot ").expect("a snapshot first").to_string();
    assert_eq!(
        calls,
        [
            format!("Snapshot {name}"),
            "DeleteSnapshot phoenix-pre-20000101-000000".to_string(),
            format!("DeleteSnapshot {name}")
        ]
    );
    assert_eq!(snapshots(&backend, 500), ["manual", "phoenix-pre-mine"]);
    assert!(make_plan(&backend, &p).is_empty());
}

#[test]
fn the_newest_update_snapshots_are_kept_as_configured_and_older_ones_deleted() {
    let backend = MemoryBackend::new();
    let cfg = app("");
    with_behavior(&cfg, r#"{"update_snapshots_kept": 2}"#);
    run_apply(&backend, &prepare_run(&cfg, &library(&versions("v1", "v1"))), &Silent, &options());
    for name in ["phoenix-pre-20000101-000000", "phoenix-pre-20000102-000000", "phoenix-pre-20000103-000000", "manual"]
    {
        backend.snapshot(500, name).expect("snapshot");
    }
    let p = prepare_run(&cfg, &library(&versions("v1", "v2")));
    assert_eq!(p.estate().hypervisor.behavior.as_ref().map(|b| b.update_snapshots_kept), Some(2));
    let plan = make_plan(&backend, &p);
    assert_eq!(plan.guests[0].steps[0].action, Action::UpdateSnapshot { keep: 2 });
    assert!(plan.guests[0].steps[0].reason.ends_with("the newest 2 of Phoenix's update snapshots are kept"));
    backend.clear_calls();
    let (_, report) = run_apply(&backend, &p, &Silent, &options());
    assert_eq!(report.outcomes[&500], GuestOutcome::Changed, "{report:#?}");
    let left = snapshots(&backend, 500);
    assert_eq!(left.len(), 3, "{left:?}");
    assert_eq!(left[0], "manual");
    assert_eq!(left[1], "phoenix-pre-20000103-000000");
    assert!(left[2].starts_with("phoenix-pre-2") && left[2] > left[1], "the new one: {left:?}");
    let deleted: Vec<String> = snapshot_calls(&backend).into_iter().filter(|c| c.starts_with("Delete")).collect();
    assert_eq!(
        deleted,
        ["DeleteSnapshot phoenix-pre-20000101-000000", "DeleteSnapshot phoenix-pre-20000102-000000"],
        "oldest first"
    );
}

#[test]
fn guests_created_by_the_run_and_templates_get_no_update_snapshot() {
    // A template made of a guest (`is_template`) whose conversion failed once, the source of
    // snapshot clones, and a clone.
    let containers = format!(
        r#"{{"600": {}, "601": {}, "602": {}}}"#,
        container(
            "golden",
            "10.9.0.60/16",
            r#", "template": "local:vztmpl/x.tar.zst", "features": ["base_setup"], "is_template": true"#
        ),
        container(
            "tpl",
            "10.9.0.61/16",
            r#", "template": "local:vztmpl/x.tar.zst", "features": ["base_setup"], "template_snapshot_name": "ready""#
        ),
        container("web", "10.9.0.62/16", r#", "clone_from_ctid": "601", "features": ["docker"]"#),
    );
    let cfg = Config::new(&containers, &[]);
    let backend = MemoryBackend::new();
    backend.fail(FailRule::new(Method::MakeTemplate, BackendError::permanent(Delivery::NotSent, "busy")));
    let mut opts = options();
    opts.keep_going = true;
    let (plan, _) = run_apply(&backend, &prepare_run(&cfg, &library(&versions("v1", "v1"))), &Silent, &opts);
    // Everything was created by this run: nothing to guard.
    assert!(plan.guests.iter().flat_map(|g| &g.steps).all(|s| !matches!(s.action, Action::UpdateSnapshot { .. })));
    assert!(snapshot_calls(&backend).iter().all(|c| c == "Snapshot ready"), "{:?}", snapshot_calls(&backend));
    assert!(!backend.guest(600).expect("600").observed.template, "its conversion failed");

    // Every feature changes: only the clone is guarded.
    let p = prepare_run(&cfg, &library(&versions("v2", "v2")));
    let plan = make_plan(&backend, &p);
    let guarded: Vec<u32> = plan
        .guests
        .iter()
        .filter(|g| g.steps.iter().any(|s| matches!(s.action, Action::UpdateSnapshot { .. })))
        .map(|g| g.id)
        .collect();
    assert_eq!(guarded, [602], "{:#?}", plan.guests);
    assert!(plan.guest(600).expect("600").steps.iter().any(|s| s.action == Action::MakeTemplate));
    assert!(plan.guest(601).expect("601").steps.iter().any(|s| matches!(s.action, Action::Customize { .. })));
    backend.clear_calls();
    let (_, report) = run_apply(&backend, &p, &Silent, &options());
    assert!(!report.failed(), "{report:#?}");
    let taken: Vec<(Option<u32>, String)> =
        backend.calls().into_iter().filter(|c| c.method == Method::Snapshot).map(|c| (c.guest, c.detail)).collect();
    assert_eq!(taken.len(), 1, "{taken:?}");
    assert_eq!(taken[0].0, Some(602));
    assert!(backend.guest(600).expect("600").observed.template);
    assert_eq!(snapshots(&backend, 601), ["ready"]);
}

#[test]
fn without_snapshots_the_update_runs_unguarded_and_the_plan_says_so() {
    let backend = MemoryBackend::new().without_snapshots();
    let cfg = app("");
    run_apply(&backend, &prepare_run(&cfg, &library(&versions("v1", "v1"))), &Silent, &options());
    let p = prepare_run(&cfg, &library(&versions("v1", "v2")));
    let plan = make_plan(&backend, &p);
    let steps = &plan.guests[0].steps;
    assert!(matches!(&steps[0].action, Action::Customize { key, .. } if key == "feature:docker"), "{steps:#?}");
    assert_eq!(
        steps[0].reason,
        "its script or inputs changed (runs without a safety snapshot: the backend takes no snapshots)"
    );
    backend.set_exec_status("phoenix-feature-docker-", 1, "boom");
    backend.clear_calls();
    let (_, report) = run_apply(&backend, &p, &Silent, &options());
    assert!(matches!(&report.outcomes[&500], GuestOutcome::Failed(m) if m.contains("boom")), "{report:#?}");
    assert!(snapshot_calls(&backend).is_empty());
}

#[test]
fn a_snapshot_the_backend_cannot_take_lets_the_update_run_and_any_other_failure_stops_it() {
    let backend = MemoryBackend::new();
    let cfg = app("");
    run_apply(&backend, &prepare_run(&cfg, &library(&versions("v1", "v1"))), &Silent, &options());
    let p = prepare_run(&cfg, &library(&versions("v1", "v2")));

    // A storage without snapshots, say: the update runs, as noted.
    backend.fail(FailRule::new(Method::Snapshot, BackendError::unsupported("snapshot feature is not available")));
    let recorder = Recorder::default();
    let (_, report) = run_apply(&backend, &p, &recorder, &options());
    assert_eq!(report.outcomes[&500], GuestOutcome::Changed, "{report:#?}");
    let notes = recorder.events.lock().expect("lock").iter().map(|e| e.2.clone()).collect::<Vec<_>>();
    assert!(
        notes.iter().any(|n| n.contains("snapshot feature is not available") && n.contains("runs without one")),
        "{notes:?}"
    );

    // Any other failure: nothing of the update runs.
    let p = prepare_run(&cfg, &library(&versions("v1", "v3")));
    backend.fail(FailRule::new(Method::Snapshot, BackendError::permanent(Delivery::NotSent, "storage full")));
    backend.clear_calls();
    let (_, report) = run_apply(&backend, &p, &Silent, &options());
    let GuestOutcome::Failed(message) = &report.outcomes[&500] else { panic!("{report:#?}") };
    assert!(message.contains("before the update`: storage full; nothing of the update ran"), "{message}");
    assert!(mutating(&backend).iter().all(|c| !c.contains("--phoenix-contract")), "{:?}", mutating(&backend));
}

/// Sets the interruption flag when a given step starts (it runs; the next one does not start).
struct InterruptBefore<'a> {
    step: &'a str,
    flag: &'a AtomicBool,
}

impl phoenix_engine::Reporter for InterruptBefore<'_> {
    fn state(&self, _: u32, _: phoenix_plan::LifecycleState, step: Option<&phoenix_plan::Step>) {
        if step.is_some_and(|s| s.action.describe() == self.step) {
            self.flag.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
    fn finished(&self, _: u32, _: &GuestOutcome, _: Duration) {}
    fn note(&self, _: u32, _: &str) {}
}

#[test]
fn a_snapshot_an_interrupted_update_left_is_deleted_by_the_next_update_that_passes() {
    let backend = MemoryBackend::new();
    let cfg = app("");
    run_apply(&backend, &prepare_run(&cfg, &library(&versions("v1", "v1"))), &Silent, &options());
    let p = prepare_run(&cfg, &library(&versions("v2", "v2")));
    let plan = make_plan(&backend, &p);
    let flag = AtomicBool::new(false);
    // Interrupted once base_setup started: it finishes, docker does not start.
    let reporter = InterruptBefore { step: "run feature:base_setup", flag: &flag };
    let engine = Engine { backend: &backend, prober: &AlwaysUp, reporter: &reporter, cancel: &flag };
    let report = engine.apply(p.desired(), &plan, p.jobs(), &options());
    let GuestOutcome::Failed(message) = &report.outcomes[&500] else { panic!("{report:#?}") };
    let left = snapshots(&backend, 500);
    assert_eq!(left.len(), 1);
    assert!(message.contains("interrupted before `run feature:docker`"), "{message}");
    assert!(message.contains(&format!("snapshot {} taken before the update is kept", left[0])), "{message}");
    // The next run: docker runs, guarded by a new snapshot; both are deleted once it passed.
    let (plan, report) = run_apply(&backend, &p, &Silent, &options());
    assert_eq!(plan.guests[0].steps[0].action, Action::UpdateSnapshot { keep: 0 });
    assert_eq!(report.outcomes[&500], GuestOutcome::Changed, "{report:#?}");
    assert!(snapshots(&backend, 500).is_empty(), "{:?}", snapshots(&backend, 500));
}
