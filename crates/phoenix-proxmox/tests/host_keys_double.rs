//! A clone's own SSH host keys on the Proxmox backend against the PVE test double, on both
//! versions: the step is planned and run (through `pct exec` on the node channel) for a clone,
//! once, and never for a container created from an OS template or for the template; without the
//! node channel the clone keeps its template's keys, the apply says so, and no plan asks again.

mod support;

use phoenix_backend::Backend;
use phoenix_engine::GuestOutcome;
use phoenix_plan::Action;
use phoenix_pve_double::{PveDouble, PveVersion};

/// The template 900 (at its snapshot `ready`), its clone 901, and 905 made from the OS template.
fn config(dir: &std::path::Path, double: &PveDouble) -> phoenix_config::Estate {
    let os = format!(r#", "template": "{}""#, support::OS_TEMPLATE);
    let lxc = [
        support::container(900, "tpl", &format!(r#"{os}, "template_snapshot_name": "ready""#)),
        support::container(901, "web", r#", "clone_from_ctid": "900""#),
        support::container(905, "own", &os),
    ];
    support::estate(dir, double, "", &lxc.join(","))
}

/// The guests whose plan has the step.
fn planned(plan: &phoenix_plan::Plan) -> Vec<u32> {
    plan.guests.iter().filter(|g| g.steps.iter().any(|s| s.action == Action::NewHostKeys)).map(|g| g.id).collect()
}

/// The containers `pct exec` ran the host keys' script in.
fn replaced_in(double: &PveDouble) -> Vec<String> {
    double
        .node_channel()
        .commands()
        .into_iter()
        .filter(|c| c.argv.get(1).is_some_and(|a| a == "exec") && c.argv.iter().any(|a| a.contains("ssh-keygen -q")))
        .map(|c| c.argv[2].clone())
        .collect()
}

/// The marker of a guest's own keys in its record, as the backend reads it.
fn marker(backend: &dyn Backend, id: u32) -> Option<String> {
    let record = backend.read_markers(id).expect("read").unwrap_or_default();
    let record = phoenix_engine::observe::parse_markers(&record);
    record.get(&phoenix_plan::host_keys_marker(id)).cloned()
}

#[test]
fn a_clone_gets_its_own_host_keys_once_through_pct_exec_and_a_container_from_a_template_never() {
    for version in PveVersion::ALL {
        let double = support::start(version);
        let backend = support::backend(&double, Some(support::channel(&double)));
        let dir = tempfile::tempdir().expect("tmp");
        let estate = config(dir.path(), &double);
        let plan = support::plan(&backend, &estate, dir.path());
        assert_eq!(planned(&plan), [901], "{version:?}");
        let steps: Vec<&Action> = plan.guest(901).expect("901").steps.iter().map(|s| &s.action).collect();
        assert_eq!(steps[1..], [&Action::Start, &Action::NewHostKeys], "{version:?}");

        let (_, report) = support::apply(&backend, &estate, dir.path());
        assert!(report.outcomes.values().all(|o| *o == GuestOutcome::Created), "{version:?}: {report:#?}");
        assert_eq!(replaced_in(&double), ["901"], "{version:?}");
        assert_eq!(marker(&backend, 901).as_deref(), Some("new"), "{version:?}");
        assert_eq!(marker(&backend, 905), None, "{version:?}");

        // Never again.
        let (plan, report) = support::apply(&backend, &estate, dir.path());
        assert!(plan.is_empty(), "{version:?}: {:#?}", plan.guests);
        assert!(!report.failed(), "{version:?}");
        assert_eq!(replaced_in(&double), ["901"], "{version:?}");
    }
}

#[test]
fn without_the_node_channel_a_clone_keeps_its_template_s_keys_said_once() {
    let double = support::start(PveVersion::V9);
    let backend = support::backend(&double, None);
    let dir = tempfile::tempdir().expect("tmp");
    let estate = config(dir.path(), &double);
    let (plan, report) = support::apply(&backend, &estate, dir.path());
    assert_eq!(planned(&plan), [901]);
    assert!(report.outcomes.values().all(|o| *o == GuestOutcome::Created), "{report:#?}");
    assert!(replaced_in(&double).is_empty());
    assert_eq!(marker(&backend, 901).as_deref(), Some(phoenix_engine::host_keys::NOT_REPLACED));
    assert!(support::plan(&backend, &estate, dir.path()).is_empty());
}
