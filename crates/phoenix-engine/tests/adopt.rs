//! Adopting guests Phoenix did not create, against the in-memory backend: which guests are
//! taken, how each feature and script is decided, that a survey writes nothing, and that an
//! adopted guest plans as only its real differences.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicBool;

use phoenix_backend::{Backend, ChangeEffect, Field, GuestId, GuestKind, ObservedGuest, PowerState, Value};
use phoenix_engine::adopt::{AdoptOptions, PROBES, Survey, Verdict, probe, survey};
use phoenix_engine::customize::MARKERS_PATH;
use phoenix_engine::planner::Planner;
use phoenix_engine::{Engine, Silent};
use phoenix_plan::Action;
use phoenix_testkit::memory::{MemoryBackend, Method};
use support::*;

fn config() -> Config {
    let gpu = r#", "gpu_assignment": "0""#;
    let containers = format!(
        r#"{{
            "400": {},
            "401": {},
            "402": {},
            "403": {},
            "404": {},
            "405": {}
        }}"#,
        container(
            "busy",
            "10.9.0.40/16",
            &format!(
                r#", "template": "local:vztmpl/x.tar.zst", "features": ["base_setup", "nvidia", "ollama"], "application_script": "app.sh"{gpu}"#
            )
        ),
        container("asleep", "10.9.0.41/16", r#", "template": "local:vztmpl/x.tar.zst", "features": ["base_setup"]"#),
        container("mine", "10.9.0.42/16", r#", "template": "local:vztmpl/x.tar.zst""#),
        container("elsewhere", "10.9.0.43/16", r#", "template": "local:vztmpl/x.tar.zst""#),
        container("missing", "10.9.0.44/16", r#", "template": "local:vztmpl/x.tar.zst""#),
        container(
            "same",
            "10.9.0.45/16",
            r#", "template": "local:vztmpl/x.tar.zst", "features": ["base_setup", "ollama"]"#
        ),
    );
    Config::new(&containers, &[("app.sh", "#!/bin/sh\necho app\n")])
}

/// The backend with every configured guest but 404, as configured, except: 400 has less memory,
/// 401 is stopped, 402 is Phoenix's, 403 is on another storage.
fn backend(p: &Planner) -> MemoryBackend {
    let b = MemoryBackend::new();
    for (id, d) in &p.desired().guests {
        if *id == 404 {
            continue;
        }
        let mut config = d.config.clone();
        match id {
            400 => config.set(Field::MemoryMb, 512u64),
            403 => config.set(Field::Storage, "fast"),
            _ => {}
        }
        b.insert(ObservedGuest {
            id: *id,
            kind: GuestKind::Lxc,
            node: None,
            power: if *id == 401 { PowerState::Stopped } else { PowerState::Running },
            config,
            snapshots: BTreeSet::new(),
            managed: *id == 402,
            template: false,
            half_made: None,
            unreachable: None,
            markers: None,
        });
    }
    // `nvidia-smi` is not in 400; `ollama` is.
    b.set_command_status("nvidia-smi", 1);
    b
}

fn surveyed(b: &MemoryBackend, p: &Planner, ids: &[GuestId], assume: bool) -> Survey {
    let observation = b.observe().expect("observe");
    survey(b, p.desired(), &observation, ids, &AdoptOptions { assume_customized: assume, ..AdoptOptions::default() })
}

fn verdicts(s: &Survey, id: GuestId) -> Vec<(String, Verdict)> {
    let a = s.adopt.iter().find(|a| a.id == id).unwrap_or_else(|| panic!("{id} not adopted: {s:#?}"));
    a.customizations.iter().map(|d| (d.key.clone(), d.verdict)).collect()
}

#[test]
fn a_survey_decides_from_evidence_and_changes_nothing() {
    let c = config();
    let p = prepare_run(&c, &library(&BTreeMap::new()));
    let b = backend(&p);
    b.clear_calls();
    let s = surveyed(&b, &p, &[400], false);
    assert!(s.refused.is_empty(), "{:#?}", s.refused);
    assert_eq!(
        verdicts(&s, 400),
        [
            ("feature:base_setup".to_string(), Verdict::Recorded),
            ("feature:nvidia".to_string(), Verdict::NotRecorded),
            ("feature:ollama".to_string(), Verdict::Recorded),
            ("script".to_string(), Verdict::NotRecorded),
        ]
    );
    let a = &s.adopt[0];
    let why: Vec<&str> = a.customizations.iter().map(|d| d.why.as_str()).collect();
    assert_eq!(why[0], "base_setup is done in every guest that runs");
    assert_eq!(why[1], "`command -v nvidia-smi` exited with status 1 inside the guest; it runs on the next apply");
    assert_eq!(why[2], "`command -v ollama` succeeded inside the guest");
    assert!(why[3].contains("(--assume-customized records it)"), "{}", why[3]);
    // The difference the next plan shows, as plan shows it.
    let changes: Vec<(Field, Option<Value>, Option<Value>, ChangeEffect)> =
        a.changes.iter().map(|c| (c.field.clone(), c.old.clone(), c.new.clone(), c.effect)).collect();
    assert_eq!(changes, [(Field::MemoryMb, Some(Value::Number(512)), Some(Value::Number(1024)), ChangeEffect::Live)]);
    let then: Vec<String> = a.then.steps.iter().map(|s| format!("{:?}", s.action)).collect();
    assert!(then.iter().any(|s| s.contains("feature:nvidia")) && then.iter().any(|s| s.contains("\"script\"")));
    assert!(!then.iter().any(|s| s.contains("feature:ollama") || s.contains("base_setup")), "{then:?}");
    // Only reads and the probes ran: nothing was written, marked, started or stopped.
    let writes: Vec<String> =
        b.mutating_calls().iter().filter(|c| c.method != Method::Exec).map(|c| format!("{:?}", c.method)).collect();
    assert!(writes.is_empty(), "{writes:?}");
    let probes: Vec<String> = b.calls().iter().filter(|c| c.method == Method::Exec).map(|c| c.detail.clone()).collect();
    assert_eq!(
        probes,
        ["/bin/sh -c command -v nvidia-smi phoenix-probe", "/bin/sh -c command -v ollama phoenix-probe"]
    );
    assert!(!b.guest(400).expect("400").observed.managed);
}

#[test]
fn adoption_marks_and_records_without_restarting_and_the_next_plan_shows_only_real_differences() {
    let c = config();
    let p = prepare_run(&c, &library(&BTreeMap::new()));
    let b = backend(&p);
    let s = surveyed(&b, &p, &[], false);
    // Without IDs: every configured guest that exists and is not Phoenix's — 403 cannot be.
    assert_eq!(s.adopt.iter().map(|a| a.id).collect::<Vec<_>>(), [400, 401, 405]);
    assert_eq!(s.refused.len(), 1, "{:#?}", s.refused);
    assert!(
        s.refused[0].message.contains("403 (elsewhere) cannot be adopted") && s.refused[0].message.contains("storage")
    );
    b.clear_calls();
    let cancel = AtomicBool::new(false);
    let engine = Engine { backend: &b, prober: &AlwaysUp, reporter: &Silent, cancel: &cancel };
    for a in &s.adopt {
        engine.adopt(a, &options()).expect("adopted");
    }
    let calls: Vec<String> = b.mutating_calls().iter().map(|c| format!("{:?} {:?}", c.method, c.guest)).collect();
    assert_eq!(
        calls,
        ["PushFile Some(400)", "Adopt Some(400)", "Adopt Some(401)", "PushFile Some(405)", "Adopt Some(405)",],
        "only markers and marks: nothing restarted, reconfigured or recreated"
    );
    let markers = b.guest(400).expect("400").files.get(MARKERS_PATH).cloned().expect("markers");
    let markers: BTreeMap<String, String> = serde_json::from_slice(&markers).expect("json");
    assert_eq!(markers.keys().collect::<Vec<_>>(), ["feature:base_setup", "feature:ollama"]);

    let plan = make_plan(&b, &p);
    let steps = |id: GuestId| -> Vec<String> {
        plan.guest(id)
            .expect("planned")
            .steps
            .iter()
            .map(|s| match &s.action {
                Action::Configure { changes } => {
                    format!("configure {}", changes.iter().map(|c| c.field.to_string()).collect::<Vec<_>>().join(","))
                }
                Action::Customize { key, .. } => format!("run {key}"),
                other => format!("{other:?}"),
            })
            .collect()
    };
    // What runs on an adopted guest is an update like any other: a snapshot is taken first.
    assert_eq!(steps(400), ["configure memory_mb", "UpdateSnapshot { keep: 0 }", "run feature:nvidia", "run script"]);
    // A stopped guest's features cannot be checked: it is started and they run.
    assert_eq!(steps(401), ["Start", "UpdateSnapshot { keep: 0 }", "run feature:base_setup"]);
    // A guest as configured, whose features the probes found: nothing to do.
    assert!(steps(405).is_empty(), "{:?}", steps(405));
    assert!(plan.issues.iter().all(|i| i.guest == 403), "{:#?}", plan.issues);
    assert_eq!(b.guest(400).expect("400").starts, 0);
}

#[test]
fn assumed_customizations_are_recorded_but_not_in_a_stopped_guest() {
    let c = config();
    let p = prepare_run(&c, &library(&BTreeMap::new()));
    let b = backend(&p);
    let s = surveyed(&b, &p, &[400, 401], true);
    assert!(verdicts(&s, 400).iter().all(|(_, v)| *v == Verdict::Recorded), "{:?}", verdicts(&s, 400));
    assert_eq!(verdicts(&s, 401), [("feature:base_setup".to_string(), Verdict::NotRecorded)]);
    assert!(s.adopt[1].customizations[0].why.starts_with("the guest is stopped"));
    assert!(s.adopt[1].markers.is_none(), "nothing is written into a stopped guest");
    // No probe runs when everything is assumed.
    assert!(b.calls().iter().all(|c| c.method != Method::Exec));
    // A marker already there with this configuration's hash is kept as it is.
    let cancel = AtomicBool::new(false);
    let engine = Engine { backend: &b, prober: &AlwaysUp, reporter: &Silent, cancel: &cancel };
    engine.adopt(&s.adopt[0], &options()).expect("adopted");
    let hash = p.desired().guests[&400].customizations[0].hash.clone();
    let mut m = b.guest(400).expect("400").observed;
    m.managed = false;
    b.insert(m);
    b.push_file(
        400,
        &phoenix_backend::FilePush {
            path: MARKERS_PATH.into(),
            content: format!(r#"{{"feature:base_setup": "{hash}"}}"#).into_bytes(),
            mode: 0o600,
            uid: 0,
            gid: 0,
        },
    )
    .expect("push");
    let again = surveyed(&b, &p, &[400], false);
    assert_eq!(verdicts(&again, 400)[0], ("feature:base_setup".to_string(), Verdict::AlreadyRecorded));
}

#[test]
fn guests_that_cannot_be_adopted_are_refused_with_a_reason() {
    let c = config();
    let p = prepare_run(&c, &library(&BTreeMap::new()));
    let b = backend(&p);
    let s = surveyed(&b, &p, &[402, 404, 999, 403], false);
    assert!(s.adopt.is_empty());
    assert_eq!(s.already_managed, [402]);
    let messages: Vec<&str> = s.refused.iter().map(|r| r.message.as_str()).collect();
    assert_eq!(messages[0], "404 (missing) does not exist on the backend");
    assert_eq!(messages[1], "999 is not in the configuration");
    assert!(
        messages[2].starts_with("403 (elsewhere) cannot be adopted: 403 cannot change storage in place"),
        "{}",
        messages[2]
    );
    assert_eq!(
        s.refused[2].hint,
        "once adopted, no plan could be applied: make the configuration say what the guest has (storage: fast), then adopt it"
    );
    assert!(s.refused.iter().all(|r| !r.hint.is_empty()));
    // A guest of another kind than configured.
    let mut vm = b.guest(400).expect("400").observed;
    vm.kind = GuestKind::Vm;
    b.insert(vm);
    let s = surveyed(&b, &p, &[400], false);
    assert!(s.refused[0].message.contains("is a vm on the backend but a lxc in the configuration"), "{:#?}", s.refused);
    assert!(b.mutating_calls().is_empty());
}

#[test]
fn every_probe_names_a_known_feature() {
    for p in PROBES {
        assert!(phoenix_config::features::Catalog::builtin().get(p.feature).is_some(), "{}", p.feature);
        assert_eq!(probe(p.feature), Some(p));
    }
    assert!(probe("base_setup").is_none(), "base_setup needs no probe: a guest that runs has it");
}
