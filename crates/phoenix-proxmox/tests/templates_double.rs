//! `is_template` on the Proxmox backend against the PVE test double, on both versions: a
//! container customized, then stopped and made a Proxmox template (`POST .../template`) instead
//! of snapshotted (Proxmox makes templates only of guests without snapshots), a clone of it made
//! from the template itself (no `snapname`, `full=1`), planning again finds nothing and never
//! starts the template; a later change to the template is only noted.

mod support;

use phoenix_backend::{Backend, PowerState};
use phoenix_engine::GuestOutcome;
use phoenix_plan::Action;
use phoenix_pve_double::{PveDouble, PveVersion};

const OS_TEMPLATE: &str = "local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst";

fn config(dir: &std::path::Path, double: &PveDouble, template_cores: u32) -> phoenix_config::Estate {
    std::fs::write(dir.join("tpl.sh"), "#!/bin/sh\necho ready > /etc/phoenix-template\n").expect("script");
    std::fs::write(dir.join("web.sh"), "#!/bin/sh\necho web > /etc/web\n").expect("script");
    let tpl = support::container(
        900,
        "tpl",
        &format!(
            r#", "template": "{OS_TEMPLATE}", "application_script": "tpl.sh", "is_template": true,
                "template_snapshot_name": "ready""#
        ),
    )
    .replace(r#""cores": 2"#, &format!(r#""cores": {template_cores}"#));
    let web = support::container(901, "web", r#", "clone_from_ctid": "900", "application_script": "web.sh""#);
    support::estate(dir, double, "", &[tpl, web].join(","))
}

#[test]
fn a_container_made_a_template_is_cloned_from_itself_and_never_started_again() {
    for version in PveVersion::ALL {
        let double = support::start(version);
        let backend = support::backend(&double, Some(support::channel(&double)));
        let dir = tempfile::tempdir().expect("tmp");
        let (plan, report) = support::apply(&backend, &config(dir.path(), &double, 2), dir.path());
        assert!(report.outcomes.values().all(|o| *o == GuestOutcome::Created), "{version:?}: {report:#?}");
        let steps: Vec<&Action> = plan.guest(900).expect("900").steps.iter().map(|s| &s.action).collect();
        assert_eq!(steps.last(), Some(&&Action::MakeTemplate), "{steps:?}");
        assert!(!steps.iter().any(|s| matches!(s, Action::Snapshot { .. })), "no snapshot is taken: {steps:?}");
        assert!(plan.notes.iter().any(|n| n.contains("template_snapshot_name ready is not taken")), "{:?}", plan.notes);

        // The template: customized, stopped, made a template; Proxmox shows it as one.
        let tpl = backend.observe_guest(900).expect("observe").expect("the template");
        assert!(tpl.template && tpl.snapshots.is_empty(), "{tpl:#?}");
        assert_eq!(tpl.power, PowerState::Stopped);
        let conf = double.conf_file(900).expect("conf");
        assert!(conf.contains("template: 1") && conf.contains("basevol-900-disk-0"), "{conf}");
        // The record of what ran is in the description, and a clone gets its source's.
        let markers = |id: u32| {
            let record = double.description(id).as_deref().and_then(phoenix_proxmox::record::read).unwrap_or_default();
            String::from_utf8_lossy(&record).into_owned()
        };
        assert!(markers(900).contains("\"script\""), "its script ran before: {}", markers(900));

        // The clone: of the template itself, in full, after the conversion finished.
        let requests = double.requests();
        let at = |path: &str| requests.iter().position(|r| r.method == "POST" && r.path == path);
        let made = at("/nodes/pve1/lxc/900/template").expect("made a template");
        let cloned = at("/nodes/pve1/lxc/900/clone").expect("cloned");
        assert!(made < cloned);
        let clone = &requests[cloned];
        assert!(!clone.params.contains_key("snapname"), "{:?}", clone.params);
        assert_eq!(clone.params.get("full").map(String::as_str), Some("1"));
        assert!(!double.conf_file(901).expect("clone").contains("basevol-900"), "a full copy, not a linked clone");
        let web = backend.observe_guest(901).expect("observe").expect("the clone");
        assert!(!web.template && web.power == PowerState::Running, "{web:#?}");
        assert!(markers(901).contains("\"script\""), "{}", markers(901));

        // Again: nothing to do, and the template is never started (it cannot be).
        let before = double.requests().len();
        let (plan, report) = support::apply(&backend, &config(dir.path(), &double, 2), dir.path());
        assert!(plan.is_empty() && plan.notes.is_empty(), "{:#?} {:?}", plan.guests, plan.notes);
        assert!(!report.failed());
        // The template's configuration changed: not changed on it, said in a note.
        let (plan, _) = support::apply(&backend, &config(dir.path(), &double, 4), dir.path());
        assert!(plan.is_empty(), "{:#?}", plan.guests);
        assert!(
            plan.notes.iter().any(|n| n.contains("900 (tpl) is a template") && n.contains("cores")),
            "{:?}",
            plan.notes
        );
        let writes: Vec<String> = double.requests()[before..]
            .iter()
            .filter(|r| r.method != "GET")
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        assert!(writes.is_empty(), "{writes:?}");

        backend.destroy(901).expect("destroy the clone");
        backend.destroy(900).expect("destroy the template");
        assert!(double.conf_file(900).is_none());
    }
}

#[test]
fn a_guest_with_snapshots_is_not_made_a_template_and_a_template_is_never_started() {
    let double = support::start(PveVersion::V9);
    let backend = support::backend(&double, Some(support::channel(&double)));
    let dir = tempfile::tempdir().expect("tmp");
    // Built earlier as a snapshot template (without `is_template`).
    let before = config(dir.path(), &double, 2);
    let snapshot_only = phoenix_config::Estate {
        guests: before
            .guests
            .iter()
            .map(|(id, g)| {
                let mut g = g.clone();
                if let phoenix_config::estate::GuestSpec::Lxc(c) = &mut g.spec {
                    c.is_template = false;
                }
                (*id, g)
            })
            .collect(),
        ..before.clone()
    };
    let (_, report) = support::apply(&backend, &snapshot_only, dir.path());
    assert!(!report.failed(), "{report:#?}");
    assert!(backend.observe_guest(900).expect("observe").is_some_and(|g| g.snapshots.contains("ready")));
    // Now `is_template`: refused in the plan, naming the snapshot, before anything runs.
    let plan = support::plan(&backend, &before, dir.path());
    assert_eq!(plan.issues.len(), 1, "{:?}", plan.issues);
    assert!(plan.issues[0].message.contains("has snapshots (ready)"), "{}", plan.issues[0].message);

    // The backend refuses to make a running guest a template, and Proxmox refuses to start one.
    let e = backend.make_template(901).expect_err("901 runs");
    assert!(e.message.contains("only a stopped container becomes a template"), "{}", e.message);
    backend.stop(901).expect("stop");
    backend.make_template(901).expect("a template");
    assert!(backend.observe_guest(901).expect("observe").is_some_and(|g| g.template));
    let e = backend.start(901).expect_err("a template never starts");
    assert!(e.detail.unwrap_or_default().contains("you can't start a CT if it's a template"), "{}", e.message);
}
