//! A cluster node that is down, against the PVE test double (which plays it as Proxmox does:
//! `/cluster/resources` still lists its guests, their status `unknown`, and every request for it
//! fails at the proxy with status 595). Phoenix plans the rest of the cluster as usual; a guest
//! of the configuration on the down node is an issue of the plan, never created again elsewhere
//! nor changed.

mod support;

use phoenix_backend::Backend;
use phoenix_pve_double::PveVersion;
use support::{OS_TEMPLATE, apply, backend, container, estate, plan, start};

#[test]
fn a_node_that_is_down_leaves_the_rest_of_the_cluster_planned_and_its_guests_untouched() {
    for version in PveVersion::ALL {
        let double = start(version);
        double.add_node("pve2");
        let backend = backend(&double, None);
        let dir = tempfile::tempdir().expect("tmp");
        let on = |id: u32, node: &str| {
            container(id, &format!("ct-{id}"), &format!(r#", "template": "{OS_TEMPLATE}", "node": "{node}""#))
        };
        let both = estate(dir.path(), &double, "", &[on(901, "pve1"), on(902, "pve2")].join(","));
        let (_, report) = apply(&backend, &both, dir.path());
        assert!(!report.failed(), "{version:?}: {report:#?}");

        double.set_offline("pve2");
        // Observation reads what it can reach, and shows what it cannot as such.
        let seen = backend.observe().expect("the nodes that are up are observed");
        assert_eq!(seen.guests[&901].unreachable, None, "{version:?}");
        assert!(seen.guests[&901].managed);
        let away = &seen.guests[&902];
        assert!(away.unreachable.as_deref().is_some_and(|w| w.contains("pve2")), "{version:?}: {away:#?}");
        assert!(away.config.is_empty() && !away.managed, "{version:?}: nothing of it is known");

        // A configuration with the guest on the down node: an issue for it alone, nothing planned
        // for it (no second 902 is created anywhere).
        let p = plan(&backend, &both, dir.path());
        let issues: Vec<(u32, &str)> = p.issues.iter().map(|i| (i.guest, i.message.as_str())).collect();
        assert_eq!(issues.len(), 1, "{version:?}: {issues:#?}");
        assert_eq!(issues[0].0, 902);
        assert!(issues[0].1.contains("902 (ct-902) cannot be read or changed") && issues[0].1.contains("pve2"));
        assert!(p.guests.iter().all(|g| g.steps.is_empty()), "{version:?}: {:#?}", p.guests);

        // Without it, the plan is as it would be with the node up: nothing to do.
        let alone = estate(dir.path(), &double, "", &on(901, "pve1"));
        let p = plan(&backend, &alone, dir.path());
        assert!(p.issues.is_empty() && p.is_empty(), "{version:?}: {:#?} {:#?}", p.issues, p.guests);
    }
}
