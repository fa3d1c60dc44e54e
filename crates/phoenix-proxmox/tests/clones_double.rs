//! Where the Proxmox backend puts a container's clone, against the PVE test double (which
//! decides it as pve-container's `clone_vm` does): on the clone's own storage when it differs
//! from its template's (`storage` sent with the clone, so the next plan finds nothing to
//! change), and on another node only from shared storage — a clone to another node from
//! storage local to the template's node is an issue of the plan, with the ways around it.

mod support;

use phoenix_backend::Backend;
use phoenix_engine::GuestOutcome;
use phoenix_pve_double::{PveDouble, PveVersion};

const OS_TEMPLATE: &str = "local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst";

/// The template 900 (on `local-zfs`, on pve1) and its clones: (ID, storage, node).
fn config(dir: &std::path::Path, double: &PveDouble, clones: &[(u32, &str, &str)]) -> phoenix_config::Estate {
    let template =
        support::container(900, "tpl", &format!(r#", "template": "{OS_TEMPLATE}", "template_snapshot_name": "ready""#));
    let mut lxc = vec![template];
    lxc.extend(clones.iter().map(|(id, storage, node)| {
        support::container(*id, &format!("web-{id}"), &format!(r#", "clone_from_ctid": "900", "node": "{node}""#))
            .replace(r#""storage_pool": "local-zfs""#, &format!(r#""storage_pool": "{storage}""#))
    }));
    support::estate(dir, double, "", &lxc.join(","))
}

#[test]
fn a_clone_lands_on_its_own_storage_and_goes_to_another_node_only_from_shared_storage() {
    for version in PveVersion::ALL {
        let double = support::start(version);
        double.add_node("pve2");
        double.add_storage("ceph", "rbd", "rootdir,images");
        let backend = support::backend(&double, None);
        let dir = tempfile::tempdir().expect("tmp");

        // On the template's node, on another storage than the template's: the clone is copied
        // there, and planning again finds nothing to change.
        let estate = config(dir.path(), &double, &[(901, "ceph", "pve1")]);
        let (_, report) = support::apply(&backend, &estate, dir.path());
        assert!(report.outcomes.values().all(|o| *o == GuestOutcome::Created), "{version:?}: {report:#?}");
        let clone = double.requests().into_iter().find(|r| r.path == "/nodes/pve1/lxc/900/clone").expect("cloned");
        assert_eq!(clone.params.get("storage").map(String::as_str), Some("ceph"), "{version:?}: {:?}", clone.params);
        assert!(double.conf_file(901).expect("clone").contains("rootfs: ceph:"), "{version:?}");
        let (plan, _) = support::apply(&backend, &estate, dir.path());
        assert!(plan.is_empty(), "{version:?}: {:#?}", plan.guests);

        // To another node: from the template's local storage, an issue of the plan that says
        // what to do instead; onto shared storage, made there.
        let estate =
            config(dir.path(), &double, &[(901, "ceph", "pve1"), (902, "local-zfs", "pve2"), (903, "ceph", "pve2")]);
        let issues = support::create_issues(&backend, &estate, dir.path());
        assert_eq!(issues.iter().map(|i| i.0).collect::<Vec<_>>(), [902], "{version:?}: {issues:#?}");
        let (_, message, hint) = &issues[0];
        assert!(
            message.contains("cannot clone 900 to node pve2") && message.contains("local-zfs"),
            "{version:?}: {message}"
        );
        assert!(hint.contains("migrate") && hint.contains("shared storage"), "{version:?}: {hint}");
        let estate = config(dir.path(), &double, &[(901, "ceph", "pve1"), (903, "ceph", "pve2")]);
        let (_, report) = support::apply(&backend, &estate, dir.path());
        assert_eq!(report.outcomes.get(&903), Some(&GuestOutcome::Created), "{version:?}: {report:#?}");
        let web = backend.observe_guest(903).expect("observe").expect("the clone");
        assert_eq!(web.config.spelled("storage").as_deref(), Some("ceph"), "{version:?}");
        let on: Vec<String> = double
            .requests()
            .into_iter()
            .filter(|r| {
                r.path == "/nodes/pve1/lxc/900/clone" && r.params.get("newid").map(String::as_str) == Some("903")
            })
            .map(|r| format!("{:?} {:?}", r.params.get("target"), r.params.get("storage")))
            .collect();
        assert_eq!(on, [r#"Some("pve2") Some("ceph")"#], "{version:?}");
    }
}
