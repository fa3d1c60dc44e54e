//! A container's custom ID map (`id_maps`, written as `lxc.idmap` lines) against the PVE test
//! double, whose nodes start a container only when root may map each of its host ranges
//! (`/etc/subuid`, `/etc/subgid`, as LXC's `newuidmap` insists): the backend reads both files
//! over the node channel before anything is created, and a range they lack is an issue of the
//! plan naming the lines to add, not a container that never starts; a changed ID map is checked
//! the same way before it is written.

mod support;

use phoenix_engine::GuestOutcome;
use phoenix_pve_double::PveVersion;

const OS_TEMPLATE: &str = "local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst";

#[test]
fn an_id_map_root_may_not_map_on_the_node_is_an_issue_of_the_plan() {
    for version in PveVersion::ALL {
        let double = support::start(version);
        let backend = support::backend(&double, Some(support::channel(&double)));
        let dir = tempfile::tempdir().expect("tmp");
        let one = support::container(
            950,
            "app",
            &format!(
                r#", "template": "{OS_TEMPLATE}",
                   "id_maps": [{{"type": "uid", "container_id": 1000, "host_id": 1000, "size": 1}},
                               {{"type": "gid", "container_id": 1000, "host_id": 2000, "size": 10}}]"#
            ),
        );
        let estate = support::estate(dir.path(), &double, "", &one);

        // Proxmox's files allow root only 100000..165535: both ranges are missing.
        let issues = support::create_issues(&backend, &estate, dir.path());
        assert_eq!(issues.iter().map(|i| i.0).collect::<Vec<_>>(), [950], "{version:?}: {issues:#?}");
        let (_, message, hint) = &issues[0];
        assert!(
            message.contains("/etc/subuid lacks root:1000:1") && message.contains("/etc/subgid lacks root:2000:10"),
            "{version:?}: {message}"
        );
        assert!(message.contains("on node pve1"), "{version:?}: {message}");
        assert!(hint.contains("phoenix setup-hypervisor apply --only subids"), "{version:?}: {hint}");
        let read: Vec<String> = double.node_channel().commands().iter().map(|c| c.argv.join(" ")).collect();
        assert!(
            read.contains(&"cat /etc/subuid".to_string()) && read.contains(&"cat /etc/subgid".to_string()),
            "{read:?}"
        );

        // One file allows its range, the other not yet: only that one is named.
        double.set_node_file("pve1", "/etc/subuid", "root:100000:65536\nroot:1000:1\n");
        let backend = support::backend(&double, Some(support::channel(&double)));
        let issues = support::create_issues(&backend, &estate, dir.path());
        let message = issues.first().map(|i| i.1.as_str()).unwrap_or_default();
        assert!(message.contains("root:2000:10") && !message.contains("subuid"), "{version:?}: {issues:#?}");

        // Both allowed: no issue, and the container starts with its ID map.
        double.set_node_file("pve1", "/etc/subgid", "root:100000:65536\nroot:2000:10\n");
        let backend = support::backend(&double, Some(support::channel(&double)));
        assert!(support::create_issues(&backend, &estate, dir.path()).is_empty(), "{version:?}");
        let (_, report) = support::apply(&backend, &estate, dir.path());
        assert_eq!(report.outcomes.get(&950), Some(&GuestOutcome::Created), "{version:?}: {report:#?}");

        // A changed ID map with a range root may not map is refused before it is written: the
        // container keeps the map it starts with.
        let before = double.conf_file(950).expect("950");
        let changed =
            support::estate(dir.path(), &double, "", &one.replace(r#""host_id": 1000"#, r#""host_id": 3000"#));
        let backend = support::backend(&double, Some(support::channel(&double)));
        let (_, report) = support::apply(&backend, &changed, dir.path());
        let outcome = format!("{:?}", report.outcomes.get(&950));
        assert!(
            outcome.contains("Failed") && outcome.contains("/etc/subuid lacks root:3000:1"),
            "{version:?}: {outcome}"
        );
        assert_eq!(double.conf_file(950).expect("950"), before, "{version:?}");
    }
}
