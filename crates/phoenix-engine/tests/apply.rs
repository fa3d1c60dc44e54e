//! The engine against the in-memory backend: idempotency, exact changes, ordering and overlap,
//! failures, retries, rollback, locking, destroy.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use phoenix_backend::{BackendError, ChangeEffect, Delivery, PowerState};
use phoenix_engine::destroy::{DestroyError, plan_destroy};
use phoenix_engine::lock::{ApplyLock, LockError};
use phoenix_engine::{GuestOutcome, Silent, host_keys};
use phoenix_plan::Action;
use phoenix_testkit::memory::{FailRule, MemoryBackend, Method};
use support::*;

/// A template, three clones of it, and a guest that depends on the clones.
fn stack(extra_301: &str, script: &str) -> Config {
    let tcp = r#", "health_check": {"tcp": {"port": 80}, "retries": 2, "interval": 1}"#;
    let containers = format!(
        r#"{{
            "300": {t},
            "301": {a},
            "302": {b},
            "303": {c},
            "310": {d}
        }}"#,
        t = container(
            "tpl",
            "10.9.0.10/16",
            &format!(
                r#", "template": "local:vztmpl/x.tar.zst", "features": ["base_setup"], "template_snapshot_name": "ready"{tcp}"#
            )
        ),
        a = container(
            "web-1",
            "10.9.0.11/16",
            &format!(
                r#", "clone_from_ctid": "300", "features": ["ollama"], "application_script": "app.sh"{tcp}{extra_301}"#
            )
        ),
        b = container(
            "web-2",
            "10.9.0.12/16",
            &format!(r#", "clone_from_ctid": "300", "features": ["ollama"], "application_script": "app.sh"{tcp}"#)
        ),
        c = container(
            "web-3",
            "10.9.0.13/16",
            &format!(r#", "clone_from_ctid": "300", "application_script": "app.sh"{tcp}"#)
        ),
        d = container(
            "agg",
            "10.9.0.20/16",
            &format!(r#", "clone_from_ctid": "300", "dependencies": ["301", "302", "303"]{tcp}"#)
        ),
    );
    Config::new(&containers, &[("app.sh", script)])
}

fn v1() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::new()
}

#[test]
fn apply_builds_everything_then_a_second_apply_changes_nothing() {
    let backend = MemoryBackend::new();
    let cfg = stack("", "#!/bin/sh\necho app v1\n");
    let p = prepare_run(&cfg, &library(&v1()));
    let (plan, report) = run_apply(&backend, &p, &Silent, &options());
    assert_eq!(plan.guests_to_change(), 5);
    assert!(report.outcomes.values().all(|o| *o == GuestOutcome::Created), "{report:#?}");
    assert!(backend.guest(300).expect("template").observed.snapshots.contains("ready"));
    assert!(backend.guest(301).is_some_and(|g| g.observed.power == PowerState::Running));
    // Staged files are cleaned up; only the markers stay.
    let files: Vec<String> = backend.guest(301).expect("301").files.keys().cloned().collect();
    assert!(files.iter().all(|f| !f.starts_with("/tmp/phoenix-")), "{files:?}");

    let again = make_plan(&backend, &p);
    assert!(again.is_empty(), "{:#?}", again.guests.iter().filter(|g| !g.steps.is_empty()).collect::<Vec<_>>());
    let starts: Vec<usize> = (300..=310).filter_map(|id| backend.guest(id)).map(|g| g.starts).collect();
    backend.clear_calls();
    let (_, report) = run_apply(&backend, &p, &Silent, &options());
    assert_eq!(mutating(&backend), Vec::<String>::new());
    assert!(report.outcomes.values().all(|o| *o == GuestOutcome::Unchanged));
    let starts_after: Vec<usize> = (300..=310).filter_map(|id| backend.guest(id)).map(|g| g.starts).collect();
    assert_eq!(starts, starts_after, "a re-apply restarted something");
}

#[test]
fn changing_one_field_plans_and_applies_exactly_that_change() {
    let backend = MemoryBackend::new();
    let lib = library(&v1());
    run_apply(&backend, &prepare_run(&stack("", "#!/bin/sh\n"), &lib), &Silent, &options());

    // A live change: memory of 310 only (a guest without an application script, which would
    // run again: its parameters are the whole block).
    let cfg = stack("", "#!/bin/sh\n");
    let text = std::fs::read_to_string(cfg.path().join("phoenix_lxc_configs.json")).expect("read");
    let needle = r#""name": "agg", "memory_mb": 1024"#;
    assert!(text.contains(needle));
    std::fs::write(
        cfg.path().join("phoenix_lxc_configs.json"),
        text.replace(needle, r#""name": "agg", "memory_mb": 2048"#),
    )
    .expect("write");
    let p = prepare_run(&cfg, &lib);
    let plan = make_plan(&backend, &p);
    let changed: Vec<_> = plan.guests.iter().filter(|g| !g.steps.is_empty()).collect();
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].id, 310);
    match &changed[0].steps[0].action {
        Action::Configure { changes } => {
            assert_eq!(changes.len(), 1);
            assert_eq!(
                (&changes[0].field, changes[0].old.as_ref(), changes[0].new.as_ref()),
                (&phoenix_backend::Field::MemoryMb, Some(&1024u64.into()), Some(&2048u64.into()))
            );
            assert_eq!(changes[0].effect, ChangeEffect::Live);
        }
        other => panic!("expected a configure step, got {other:?}"),
    }
    assert!(changed[0].steps.iter().all(|s| !matches!(s.action, Action::Restart | Action::Start)));
    backend.clear_calls();
    run_apply(&backend, &p, &Silent, &options());
    assert_eq!(mutating(&backend), vec!["UpdateConfig Some(310) memory_mb".to_string()]);
    assert!(make_plan(&backend, &p).is_empty());

    // A change that needs a restart restarts that guest only.
    let cfg = stack(r#", "apparmor_profile": "lxc-phoenix""#, "#!/bin/sh\n");
    let text = std::fs::read_to_string(cfg.path().join("phoenix_lxc_configs.json")).expect("read");
    std::fs::write(
        cfg.path().join("phoenix_lxc_configs.json"),
        text.replace(needle, r#""name": "agg", "memory_mb": 2048"#),
    )
    .expect("write");
    let p = prepare_run(&cfg, &lib);
    backend.clear_calls();
    run_apply(&backend, &p, &Silent, &options());
    // 301's block changed, so its application script runs again, guarded by a snapshot deleted
    // once it passed; nothing else of it does.
    let (script, rest): (Vec<String>, Vec<String>) = mutating(&backend)
        .into_iter()
        .partition(|c| c.contains("/tmp/phoenix-script-") || c.contains(phoenix_engine::customize::MARKERS_PATH));
    let (snapshots, rest): (Vec<String>, Vec<String>) = rest.into_iter().partition(|c| c.contains("phoenix-pre-"));
    let name = snapshots[0].strip_prefix("Snapshot Some(301) ").expect("a snapshot first");
    assert_eq!(snapshots, [format!("Snapshot Some(301) {name}"), format!("DeleteSnapshot Some(301) {name}")]);
    assert_eq!(
        rest,
        vec![
            "UpdateConfig Some(301) apparmor".to_string(),
            "Stop Some(301) ".to_string(),
            "Start Some(301) ".to_string()
        ]
    );
    assert!(script.iter().all(|c| c.contains("Some(301)")), "{script:?}");
    assert_eq!(script.iter().filter(|c| c.starts_with("Exec") && c.contains("--phoenix-contract")).count(), 1);
}

#[test]
fn changing_a_feature_script_or_the_app_script_reruns_only_that() {
    let backend = MemoryBackend::new();
    let cfg = stack("", "#!/bin/sh\necho v1\n");
    run_apply(&backend, &prepare_run(&cfg, &library(&v1())), &Silent, &options());

    // A new version of the ollama feature: 301 and 302 run it again, nothing else runs.
    let lib2 = library(&BTreeMap::from([("ollama", "v2")]));
    let p = prepare_run(&cfg, &lib2);
    let plan = make_plan(&backend, &p);
    let work: BTreeMap<u32, Vec<String>> = plan
        .guests
        .iter()
        .filter(|g| !g.steps.is_empty())
        .map(|g| {
            (
                g.id,
                g.steps
                    .iter()
                    .filter_map(
                        |s| if let Action::Customize { key, .. } = &s.action { Some(key.clone()) } else { None },
                    )
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        work,
        BTreeMap::from([(301, vec!["feature:ollama".to_string()]), (302, vec!["feature:ollama".to_string()])])
    );
    backend.clear_calls();
    run_apply(&backend, &p, &Silent, &options());
    let execs: Vec<String> =
        mutating(&backend).into_iter().filter(|c| c.starts_with("Exec") && c.contains("--phoenix-contract")).collect();
    assert_eq!(execs.len(), 2, "{execs:?}");
    assert!(execs.iter().all(|e| e.contains("feature-ollama")), "{execs:?}");
    assert!(make_plan(&backend, &p).is_empty());

    // A new application script: the three guests running it, and only the script.
    std::fs::write(cfg.path().join("app.sh"), "#!/bin/sh\necho v2\n").expect("write");
    let p = prepare_run(&cfg, &lib2);
    backend.clear_calls();
    run_apply(&backend, &p, &Silent, &options());
    let execs: Vec<String> =
        mutating(&backend).into_iter().filter(|c| c.starts_with("Exec") && c.contains("--phoenix-contract")).collect();
    assert_eq!(execs.len(), 3, "{execs:?}");
    assert!(execs.iter().all(|e| e.contains("phoenix-script-")), "{execs:?}");
}

#[test]
fn changing_a_feature_parameter_reruns_that_feature() {
    let gpu = |model: &str| {
        container(
            "llm",
            "10.9.0.30/16",
            &format!(
                r#", "template": "local:vztmpl/x.tar.zst", "features": ["base_setup", "nvidia", "vllm"], "gpu_assignment": "0", "vllm_model": "{model}""#
            ),
        )
    };
    let backend = MemoryBackend::new();
    let lib = library(&v1());
    let a = Config::new(&format!(r#"{{"400": {}}}"#, gpu("Qwen/Qwen2.5-7B")), &[]);
    run_apply(&backend, &prepare_run(&a, &lib), &Silent, &options());
    let b = Config::new(&format!(r#"{{"400": {}}}"#, gpu("Qwen/Qwen2.5-14B")), &[]);
    let plan = make_plan(&backend, &prepare_run(&b, &lib));
    let steps: Vec<String> = plan.guests[0].steps.iter().map(|s| format!("{:?}", s.action)).collect();
    assert_eq!(steps.len(), 2, "{steps:?}");
    assert_eq!(steps[0], "UpdateSnapshot { keep: 0 }");
    assert!(steps[1].contains("feature:vllm"), "{steps:?}");
}

#[test]
fn guests_wait_for_their_template_snapshot_and_dependencies_and_independent_ones_overlap() {
    let backend = MemoryBackend::new().with_latency(Duration::from_millis(15));
    let cfg = stack("", "#!/bin/sh\n");
    let p = prepare_run(&cfg, &library(&v1()));
    let mut opts = options();
    opts.jobs = 4;
    run_apply(&backend, &p, &Silent, &opts);
    let calls = backend.calls();
    let of = |id: u32| calls.iter().filter(move |c| c.guest == Some(id));
    let snapshot_end = of(300).filter(|c| c.method == Method::Snapshot).map(|c| c.end).max().expect("snapshot");
    for id in [301, 302, 303, 310] {
        let first = of(id).filter(|c| c.method.is_mutating()).map(|c| c.start).min().expect("calls");
        assert!(first >= snapshot_end, "{id} started before the template snapshot");
    }
    let last_of_deps = [301, 302, 303].iter().flat_map(|&id| of(id)).map(|c| c.end).max().expect("deps");
    let agg_first = of(310).filter(|c| c.method.is_mutating()).map(|c| c.start).min().expect("agg");
    assert!(agg_first >= last_of_deps, "310 started before its dependencies were done");
    // Never two clones of one template at once.
    let creates: Vec<_> = calls.iter().filter(|c| c.method == Method::Create && c.guest != Some(300)).collect();
    for (i, a) in creates.iter().enumerate() {
        for b in &creates[i + 1..] {
            assert!(a.end <= b.start || b.end <= a.start, "two clones of 300 overlapped");
        }
    }
    // Independent guests work at the same time.
    let window = |id: u32| {
        let v: Vec<_> = of(id).filter(|c| c.method.is_mutating()).collect();
        (v.iter().map(|c| c.start).min().expect("start"), v.iter().map(|c| c.end).max().expect("end"))
    };
    let (a, b, c) = (window(301), window(302), window(303));
    let overlap = |x: (std::time::Instant, std::time::Instant), y: (std::time::Instant, std::time::Instant)| {
        x.0 < y.1 && y.0 < x.1
    };
    assert!(overlap(a, b) && overlap(b, c) && overlap(a, c), "independent guests did not overlap");
}

#[test]
fn a_failure_stops_dependents_and_keep_going_finishes_the_others() {
    for keep_going in [false, true] {
        let backend = MemoryBackend::new();
        backend.set_exec_status("phoenix-feature-ollama", 3, "ollama: no space left on device");
        backend.fail(FailRule {
            method: Some(Method::Exec),
            guest: Some(301),
            detail_contains: Some("phoenix-feature-ollama".into()),
            times: 1,
            error: BackendError::permanent(Delivery::MaybeApplied, "exec failed"),
        });
        let cfg = stack("", "#!/bin/sh\n");
        let p = prepare_run(&cfg, &library(&v1()));
        let mut opts = options();
        opts.keep_going = keep_going;
        opts.jobs = 1;
        let (_, report) = run_apply(&backend, &p, &Silent, &opts);
        assert!(
            matches!(&report.outcomes[&301], GuestOutcome::Failed(m) if m.contains("guest 301 (web-1), step `run feature:ollama`")),
            "{report:#?}"
        );
        assert!(matches!(&report.outcomes[&310], GuestOutcome::Skipped(m) if m.contains("301")), "{report:#?}");
        assert_eq!(report.outcomes[&300], GuestOutcome::Created);
        if keep_going {
            assert_eq!(report.outcomes[&303], GuestOutcome::Created, "{report:#?}");
        } else {
            assert_eq!(report.outcomes[&303], GuestOutcome::NotStarted, "{report:#?}");
        }
    }
}

#[test]
fn a_failing_script_reports_its_output() {
    let backend = MemoryBackend::new();
    backend.set_exec_status("phoenix-script-", 7, "line 3: docker: command not found");
    let cfg = stack("", "#!/bin/sh\n");
    let (_, report) = run_apply(&backend, &prepare_run(&cfg, &library(&v1())), &Silent, &options());
    let GuestOutcome::Failed(message) = &report.outcomes[&301] else { panic!("{report:#?}") };
    assert!(
        message.contains("step `run script`")
            && message.contains("exited with status 7")
            && message.contains("docker: command not found"),
        "{message}"
    );
    // The staged directory is removed even when the script fails.
    assert!(backend.guest(301).expect("301").files.keys().all(|f| !f.starts_with("/tmp/phoenix-")));
}

#[test]
fn rollback_destroys_only_what_this_run_created() {
    let backend = MemoryBackend::new();
    backend.set_exec_status("phoenix-script-", 1, "boom");
    let cfg = stack("", "#!/bin/sh\n");
    let mut opts = options();
    opts.rollback = true;
    opts.keep_going = true;
    let (_, report) = run_apply(&backend, &prepare_run(&cfg, &library(&v1())), &Silent, &opts);
    for id in [301, 302, 303] {
        assert!(matches!(report.outcomes[&id], GuestOutcome::RolledBack(_)), "{report:#?}");
        assert!(backend.guest(id).is_none(), "{id} was not rolled back");
    }
    assert!(backend.guest(300).is_some(), "the template succeeded and must stay");
}

#[test]
fn rollback_never_destroys_a_guest_that_existed_before() {
    let backend = MemoryBackend::new();
    let cfg = stack("", "#!/bin/sh\n");
    run_apply(&backend, &prepare_run(&cfg, &library(&v1())), &Silent, &options());
    std::fs::write(cfg.path().join("app.sh"), "#!/bin/sh\necho v2\n").expect("write");
    backend.set_exec_status("phoenix-script-", 1, "boom");
    let mut opts = options();
    opts.rollback = true;
    opts.keep_going = true;
    let (_, report) = run_apply(&backend, &prepare_run(&cfg, &library(&v1())), &Silent, &opts);
    // Rolled back to the snapshot taken before the update, not destroyed.
    let GuestOutcome::RolledBack(message) = &report.outcomes[&301] else { panic!("{report:#?}") };
    assert!(message.contains("the guest was rolled back to snapshot phoenix-pre-"), "{message}");
    assert!(backend.guest(301).is_some());
    assert!(backend.calls().iter().all(|c| c.method != Method::Destroy));
}

#[test]
fn transient_failures_are_retried() {
    let backend = MemoryBackend::new();
    backend.fail(FailRule {
        method: Some(Method::Create),
        guest: Some(302),
        detail_contains: None,
        times: 2,
        error: BackendError::transient(
            Delivery::NotSent,
            "can't lock file '/var/lock/pve-manager/pve-config-302.lock' - got timeout",
        ),
    });
    let recorder = Recorder::default();
    let (_, report) =
        run_apply(&backend, &prepare_run(&stack("", "#!/bin/sh\n"), &library(&v1())), &recorder, &options());
    assert_eq!(report.outcomes[&302], GuestOutcome::Created);
    let creates = backend.calls().iter().filter(|c| c.method == Method::Create && c.guest == Some(302)).count();
    assert_eq!(creates, 3);
    let notes = recorder
        .events
        .lock()
        .expect("lock")
        .iter()
        .filter(|(_, id, e)| *id == 302 && e.starts_with("note: retrying"))
        .count();
    assert_eq!(notes, 2);
}

#[test]
fn observing_and_planning_make_no_mutating_call() {
    let backend = MemoryBackend::new();
    let cfg = stack("", "#!/bin/sh\n");
    let p = prepare_run(&cfg, &library(&v1()));
    run_apply(&backend, &p, &Silent, &options());
    std::fs::write(cfg.path().join("app.sh"), "#!/bin/sh\necho changed\n").expect("write");
    backend.clear_calls();
    let plan = make_plan(&backend, &prepare_run(&cfg, &library(&v1())));
    assert!(!plan.is_empty());
    assert_eq!(mutating(&backend), Vec::<String>::new());
}

#[test]
fn guests_phoenix_did_not_create_are_never_touched() {
    let backend = MemoryBackend::new();
    let cfg = stack("", "#!/bin/sh\n");
    let p = prepare_run(&cfg, &library(&v1()));
    run_apply(&backend, &p, &Silent, &options());
    let mut foreign = backend.guest(301).expect("301").observed;
    foreign.id = 999;
    foreign.managed = false;
    backend.insert(foreign);
    let plan = make_plan(&backend, &p);
    assert_eq!(plan.unmanaged, vec![999]);
    let observed = phoenix_engine::observe::observe(&backend, p.desired(), 2).expect("observe");
    assert_eq!(plan_destroy(p.desired(), &observed.observation, &[999], true), Err(DestroyError::NotManaged(999)));
}

#[test]
fn destroy_goes_in_reverse_order_and_keeps_templates_with_clones() {
    let backend = MemoryBackend::new();
    let cfg = stack("", "#!/bin/sh\n");
    let p = prepare_run(&cfg, &library(&v1()));
    run_apply(&backend, &p, &Silent, &options());
    let observed = phoenix_engine::observe::observe(&backend, p.desired(), 2).expect("observe");
    let refused = plan_destroy(p.desired(), &observed.observation, &[300], false);
    assert_eq!(refused, Err(DestroyError::TemplateInUse { template: 300, clones: vec![301, 302, 303, 310] }));
    let order = plan_destroy(p.desired(), &observed.observation, &[], false).expect("all");
    assert_eq!(order.last(), Some(&300));
    assert_eq!(order.first(), Some(&310));
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let engine = phoenix_engine::Engine { backend: &backend, prober: &AlwaysUp, reporter: &Silent, cancel: &cancel };
    engine.destroy(&order, &options()).expect("destroy");
    assert!((300..=310).all(|id| backend.guest(id).is_none()));
}

#[test]
fn two_applies_never_interleave() {
    let dir = tempfile::tempdir().expect("tmp");
    let lock_path = dir.path().join("apply.lock");
    let held = ApplyLock::acquire(&lock_path, Duration::ZERO).expect("first");
    match ApplyLock::acquire(&lock_path, Duration::from_millis(100)) {
        Err(LockError::Held { holder, .. }) => {
            assert!(holder.contains(&format!("pid {}", std::process::id())), "{holder}")
        }
        other => panic!("second lock: {other:?}"),
    }
    drop(held);

    let backend = Arc::new(MemoryBackend::new().with_latency(Duration::from_millis(2)));
    let cfg = Arc::new(stack("", "#!/bin/sh\n"));
    let spans: Vec<(std::time::Instant, std::time::Instant)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let (backend, cfg, lock_path) = (backend.clone(), cfg.clone(), lock_path.clone());
                s.spawn(move || {
                    let _lock = ApplyLock::acquire(&lock_path, Duration::from_secs(30)).expect("lock");
                    let start = std::time::Instant::now();
                    run_apply(backend.as_ref(), &prepare_run(&cfg, &library(&v1())), &Silent, &options());
                    (start, std::time::Instant::now())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    assert!(spans[0].1 <= spans[1].0 || spans[1].1 <= spans[0].0, "two applies ran at once");
    assert!(make_plan(backend.as_ref(), &prepare_run(&cfg, &library(&v1()))).is_empty());
}

/// Sets the interruption flag when a given guest finishes, as Ctrl-C would.
struct InterruptAfter<'a> {
    guest: u32,
    flag: &'a std::sync::atomic::AtomicBool,
}

impl phoenix_engine::Reporter for InterruptAfter<'_> {
    fn state(&self, _: u32, _: phoenix_plan::LifecycleState, _: Option<&phoenix_plan::Step>) {}
    fn finished(&self, guest: u32, _: &GuestOutcome, _: Duration) {
        if guest == self.guest {
            self.flag.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
    fn note(&self, _: u32, _: &str) {}
}

#[test]
fn an_interruption_starts_no_new_step_and_leaves_nothing_half_done() {
    let backend = MemoryBackend::new();
    let p = prepare_run(&stack("", "#!/bin/sh\n"), &library(&v1()));
    let plan = make_plan(&backend, &p);
    let flag = std::sync::atomic::AtomicBool::new(false);
    let reporter = InterruptAfter { guest: 300, flag: &flag };
    let engine = phoenix_engine::Engine { backend: &backend, prober: &AlwaysUp, reporter: &reporter, cancel: &flag };
    let report = engine.apply(p.desired(), &plan, p.jobs(), &options());
    assert!(report.interrupted && report.failed());
    assert_eq!(report.outcomes[&300], GuestOutcome::Created);
    for id in [301, 302, 303, 310] {
        assert_eq!(report.outcomes[&id], GuestOutcome::NotStarted, "{report:#?}");
        assert!(backend.guest(id).is_none(), "{id} was started after the interruption");
    }
    // The next apply finishes the work.
    let (_, report) = run_apply(&backend, &p, &Silent, &options());
    assert!(!report.failed(), "{report:#?}");
}

#[test]
fn a_built_in_feature_runs_its_shipped_script_with_its_parameters_for_the_shell() {
    let cfg = Config::new(
        &format!(
            r#"{{"300": {}}}"#,
            container(
                "docker-host",
                "10.9.0.10/16",
                r#", "template": "local:vztmpl/x.tar.zst", "features": ["base_setup", "docker"], "pct_options": ["nesting=1"]"#
            )
        ),
        &[],
    );
    // base_setup is the user's own; docker is the built-in one.
    use phoenix_engine::customize::{Feature, FeatureLibrary, FeatureManifest};
    let base_setup = FeatureManifest { name: "base_setup".into(), ..FeatureManifest::default() };
    let lib = FeatureLibrary::new([Feature { manifest: base_setup, script: b"#!/bin/sh\n".to_vec() }]);
    let p = prepare_run(&cfg, &lib);
    let docker = p.jobs()[&300].iter().find(|j| j.key == "feature:docker").expect("a job for docker");
    assert_eq!(docker.script.as_deref(), phoenix_config::features::builtin_script("docker").as_deref());
    let backend = MemoryBackend::new();
    let (_, report) = run_apply(&backend, &p, &Silent, &options());
    assert!(matches!(report.outcomes[&300], GuestOutcome::Created), "{:?}", report.outcomes[&300]);
    // Both ran; docker's parameters were staged for the shell beside params.json.
    let calls = mutating(&backend);
    let execs: Vec<&String> =
        calls.iter().filter(|c| c.starts_with("Exec") && c.contains("--phoenix-contract")).collect();
    assert_eq!(execs.len(), 2, "{execs:?}");
    assert!(execs[1].contains("feature-docker"), "{execs:?}");
    assert!(calls.iter().any(|c| c.contains("phoenix-feature-docker") && c.contains("params.env")), "{calls:#?}");
}

#[test]
fn a_template_is_made_once_customized_cloned_as_it_is_and_left_alone_afterwards() {
    let backend = MemoryBackend::new();
    let tcp = r#", "health_check": {"tcp": {"port": 80}, "retries": 2, "interval": 1}"#;
    let containers = format!(
        r#"{{"400": {t}, "401": {a}}}"#,
        t = container(
            "tpl",
            "10.9.0.40/16",
            &format!(
                r#", "template": "local:vztmpl/x.tar.zst", "features": ["base_setup"], "is_template": true, "template_snapshot_name": "ready"{tcp}"#
            )
        ),
        a = container("web", "10.9.0.41/16", &format!(r#", "clone_from_ctid": "400", "features": ["docker"]{tcp}"#)),
    );
    let cfg = Config::new(&containers, &[]);
    let p = prepare_run(&cfg, &library(&v1()));
    let (plan, report) = run_apply(&backend, &p, &Silent, &options());
    assert!(report.outcomes.values().all(|o| *o == GuestOutcome::Created), "{report:#?}");
    let steps: Vec<&Action> = plan.guest(400).expect("400").steps.iter().map(|s| &s.action).collect();
    assert_eq!(steps.last(), Some(&&Action::MakeTemplate), "{steps:?}");
    let tpl = backend.guest(400).expect("template");
    assert!(tpl.observed.template && tpl.observed.power == PowerState::Stopped);
    assert!(tpl.observed.snapshots.is_empty(), "no snapshot is taken of a guest that becomes a template");
    // The clone was made from the template as it is, after it became one.
    let calls = mutating(&backend);
    let made = calls.iter().position(|c| c.starts_with("MakeTemplate Some(400)")).expect("made a template");
    let cloned = calls.iter().position(|c| c == "Create Some(401) clone 400@").expect("cloned");
    assert!(made < cloned, "{calls:?}");
    assert!(calls.iter().any(|c| c == "Stop Some(400) "), "stopped before it became a template: {calls:?}");
    assert_eq!(backend.guest(401).expect("clone").observed.power, PowerState::Running);

    // Again: nothing to do, the template is neither started nor health-checked for its clone.
    backend.clear_calls();
    let again = make_plan(&backend, &p);
    assert!(again.is_empty() && again.issues.is_empty(), "{:#?}", again.guests);
    // A change to the clone: the template it needs is not checked (it cannot run).
    let cfg2 = Config::new(
        &containers.replace(
            r#""memory_mb": 1024, "cores": 1, "storage_pool": "local", "storage_size_gb": 10,
            "network_config": {"name": "eth0", "bridge": "vmbr0", "ip": "10.9.0.41/16""#,
            r#""memory_mb": 2048, "cores": 1, "storage_pool": "local", "storage_size_gb": 10,
            "network_config": {"name": "eth0", "bridge": "vmbr0", "ip": "10.9.0.41/16""#,
        ),
        &[],
    );
    let p2 = prepare_run(&cfg2, &library(&v1()));
    let (plan, report) = run_apply(&backend, &p2, &Silent, &options());
    assert_eq!(plan.guests_to_change(), 1, "{:#?}", plan.guests);
    assert!(!report.failed(), "{report:#?}");
    assert_eq!(backend.guest(400).expect("template").starts, 1, "the template was started again");
}

/// Sets the interruption flag when a given guest is about to start a given kind of step.
struct InterruptBefore<'a> {
    guest: u32,
    step: &'a str,
    flag: &'a std::sync::atomic::AtomicBool,
}

impl phoenix_engine::Reporter for InterruptBefore<'_> {
    fn state(&self, guest: u32, _: phoenix_plan::LifecycleState, step: Option<&phoenix_plan::Step>) {
        if guest == self.guest && step.is_some_and(|s| s.action.describe() == self.step) {
            self.flag.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
    fn finished(&self, _: u32, _: &GuestOutcome, _: Duration) {}
    fn note(&self, _: u32, _: &str) {}
}

#[test]
fn an_interruption_takes_away_a_guest_this_run_created_and_did_not_finish() {
    let backend = MemoryBackend::new();
    let p = prepare_run(&stack("", "#!/bin/sh\n"), &library(&v1()));
    let plan = make_plan(&backend, &p);
    let flag = std::sync::atomic::AtomicBool::new(false);
    // Interrupted while the template is created: its creation finishes, then it is destroyed.
    let reporter = InterruptBefore { guest: 300, step: "create", flag: &flag };
    let engine = phoenix_engine::Engine { backend: &backend, prober: &AlwaysUp, reporter: &reporter, cancel: &flag };
    let report = engine.apply(p.desired(), &plan, p.jobs(), &options());
    assert!(report.interrupted && report.failed());
    match &report.outcomes[&300] {
        GuestOutcome::RolledBack(message) => assert!(message.contains("interrupted before `start`"), "{message}"),
        other => panic!("{other:?}"),
    }
    assert!(backend.guest(300).is_none(), "the half-made template was left");
    let (_, report) = run_apply(&backend, &p, &Silent, &options());
    assert!(!report.failed(), "{report:#?}");
    assert!(make_plan(&backend, &p).is_empty());
}

#[test]
fn a_guest_whose_markers_cannot_be_read_concerns_itself_alone() {
    let backend = MemoryBackend::new();
    let p = prepare_run(&stack("", "#!/bin/sh\n"), &library(&v1()));
    run_apply(&backend, &p, &Silent, &options());
    // What 302 did to its markers file (a link, a FIFO) makes reading it fail for good.
    backend.fail(
        FailRule::new(
            Method::ReadFile,
            BackendError::permanent(Delivery::NotSent, "/var/lib/phoenix/markers.json is not a regular file"),
        )
        .for_guest(302),
    );
    let observed = phoenix_engine::observe::observe(&backend, p.desired(), 4).expect("observe");
    assert_eq!(observed.markers.get(&302), Some(&None));
    assert!(observed.unreadable[&302].message.contains("not a regular file"));
    assert!(observed.markers.get(&301).is_some_and(Option::is_some));
    // A transient failure still fails the observation: it is retried, not taken for unreadable.
    backend.fail(FailRule::new(Method::ReadFile, BackendError::transient(Delivery::NotSent, "timeout")).for_guest(302));
    assert!(phoenix_engine::observe::observe(&backend, p.desired(), 4).is_err());
}

/// Answers every probe with a refusal.
struct Down;

use phoenix_engine::health::ProbeError;

impl phoenix_engine::health::Prober for Down {
    fn tcp(&self, _: &str, _: u32, _: Duration) -> Result<(), ProbeError> {
        Err(ProbeError::Io("Connection refused".into()))
    }
    fn http(&self, _: &str, _: u32, _: &str, _: Duration) -> Result<u16, ProbeError> {
        Err(ProbeError::Io("Connection refused".into()))
    }
}

#[test]
fn a_failed_health_check_is_remembered_until_one_passes() {
    let backend = MemoryBackend::new();
    let p = prepare_run(&stack("", "#!/bin/sh\n"), &library(&v1()));
    let plan = make_plan(&backend, &p);
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let engine = phoenix_engine::Engine { backend: &backend, prober: &Down, reporter: &Silent, cancel: &cancel };
    let report = engine.apply(p.desired(), &plan, p.jobs(), &options());
    assert!(matches!(&report.outcomes[&300], GuestOutcome::Failed(m) if m.contains("health check")), "{report:#?}");
    let markers = backend.guest(300).expect("300").files[phoenix_engine::customize::MARKERS_PATH].clone();
    assert!(String::from_utf8_lossy(&markers).contains("Connection refused"));
    // The next plan does not call it unchanged: a restart and a check (then the snapshot the
    // failure held back).
    let again = make_plan(&backend, &p);
    let steps: Vec<&Action> = again.guest(300).expect("300").steps.iter().map(|s| &s.action).collect();
    assert_eq!(steps, [&Action::Restart, &Action::HealthCheck, &Action::Snapshot { name: "ready".into() }]);
    // Once a check passes, the record goes, and so does the step.
    let (_, report) = run_apply(&backend, &p, &Silent, &options());
    assert!(!report.failed(), "{report:#?}");
    assert!(make_plan(&backend, &p).is_empty());
}

#[test]
fn a_lock_says_who_holds_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("apply.lock");
    assert_eq!(phoenix_engine::lock::holder(&path), None);
    let held = ApplyLock::acquire(&path, Duration::ZERO).expect("lock");
    let holder = phoenix_engine::lock::holder(&path).expect("held");
    assert!(holder.contains(&format!("pid {}", std::process::id())) && holder.ends_with(" UTC"), "{holder}");
    drop(held);
    assert_eq!(phoenix_engine::lock::holder(&path), None);
}

/// The guests whose SSH host keys the engine replaced in the calls recorded.
fn new_host_keys(backend: &MemoryBackend) -> Vec<u32> {
    backend
        .calls()
        .iter()
        .filter(|c| c.method == Method::Exec && c.detail.contains("ssh-keygen -q"))
        .filter_map(|c| c.guest)
        .collect()
}

#[test]
fn each_clone_gets_its_own_ssh_host_keys_once_and_a_failure_says_why() {
    use phoenix_backend::Backend;

    let backend = MemoryBackend::new();
    let p = prepare_run(&stack("", "#!/bin/sh\n"), &library(&v1()));
    let plan = make_plan(&backend, &p);
    for id in [301, 302, 303, 310] {
        let steps: Vec<&Action> = plan.guest(id).expect("clone").steps.iter().map(|s| &s.action).collect();
        assert_eq!(steps[1..3], [&Action::Start, &Action::NewHostKeys], "{id}: {steps:?}");
    }
    assert!(plan.guest(300).expect("template").steps.iter().all(|s| s.action != Action::NewHostKeys));
    let (_, report) = run_apply(&backend, &p, &Silent, &options());
    assert!(report.outcomes.values().all(|o| *o == GuestOutcome::Created), "{report:#?}");
    let mut done = new_host_keys(&backend);
    done.sort_unstable();
    assert_eq!(done, [301, 302, 303, 310]);
    // Each clone's record holds its own marker, before its customizations ran.
    let record = |id: u32| -> BTreeMap<String, String> {
        serde_json::from_slice(&backend.read_markers(id).expect("read").expect("markers")).expect("json")
    };
    let m = record(301);
    assert_eq!(m.get("ssh-host-keys:301").map(String::as_str), Some("new"));
    assert!(!m.keys().any(|k| k.starts_with("ssh-host-keys:") && k != "ssh-host-keys:301"), "{m:?}");
    let order: Vec<&str> = backend
        .calls()
        .iter()
        .filter(|c| c.guest == Some(301) && c.method == Method::Exec)
        .map(|c| if c.detail.contains("ssh-keygen -q") { "keys" } else { "other" })
        .collect();
    assert_eq!(order.first(), Some(&"keys"), "{order:?}");
    // Never again.
    backend.clear_calls();
    assert!(make_plan(&backend, &p).is_empty());
    run_apply(&backend, &p, &Silent, &options());
    assert!(new_host_keys(&backend).is_empty());

    // A clone made by an earlier Phoenix (no marker): new keys on its next apply, shown first.
    let mut legacy = record(302);
    legacy.remove("ssh-host-keys:302");
    backend.write_markers(302, &serde_json::to_vec(&legacy).expect("json")).expect("write");
    let plan = make_plan(&backend, &p);
    let steps: Vec<&Action> = plan.guests.iter().flat_map(|g| g.steps.iter().map(|s| &s.action)).collect();
    assert_eq!(steps, [&Action::NewHostKeys, &Action::HealthCheck]);
    assert_eq!(plan.guests_to_change(), 1);
    // A plan made before the record showed the marker (one that could not be read then): the
    // engine reads the record again and replaces nothing.
    let mut planner = p.clone();
    let planned = planner.plan(&backend, &AlwaysUp).expect("observe").plan;
    let mut marked = legacy.clone();
    marked.insert("ssh-host-keys:302".into(), "new".into());
    backend.write_markers(302, &serde_json::to_vec(&marked).expect("json")).expect("write");
    backend.clear_calls();
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let engine = phoenix_engine::Engine { backend: &backend, prober: &AlwaysUp, reporter: &Silent, cancel: &cancel };
    let report = engine.apply(planner.desired(), &planned, planner.jobs(), &options());
    assert!(!report.failed(), "{report:#?}");
    assert!(new_host_keys(&backend).is_empty());
    backend.write_markers(302, &serde_json::to_vec(&legacy).expect("json")).expect("write");
    // A guest with host keys and no ssh-keygen: the step fails, saying so, and nothing is recorded.
    backend.set_command_status("ssh-keygen -q", host_keys::NO_SSH_KEYGEN);
    let (_, report) = run_apply(&backend, &p, &Silent, &options());
    let GuestOutcome::Failed(why) = &report.outcomes[&302] else { panic!("{report:#?}") };
    assert!(why.contains("step `new SSH host keys`"), "{why}");
    assert!(!record(302).contains_key("ssh-host-keys:302"));
    backend.set_command_status("ssh-keygen -q", 0);
    run_apply(&backend, &p, &Silent, &options());
    assert_eq!(record(302).get("ssh-host-keys:302").map(String::as_str), Some("new"));
    assert!(make_plan(&backend, &p).is_empty());
}
