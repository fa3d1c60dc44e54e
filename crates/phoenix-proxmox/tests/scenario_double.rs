//! The lifecycle the opt-in suite runs against a real Proxmox host (`real_host.rs`), run against
//! the PVE test double so that the scenario itself is known to be right.

mod support;

use phoenix_pve_double::{Fault, FaultKind, PveVersion};
use support::scenario::{Site, VmSite, free_ids, lifecycle, vm_lifecycle};

#[test]
fn the_real_host_scenario_passes_against_the_double() {
    for version in PveVersion::ALL {
        let double = support::start(version);
        let backend = support::backend(&double, Some(support::channel(&double)));
        let dir = tempfile::tempdir().expect("tmp");
        // IDs 900 and 901 are taken: the scenario must find others.
        let site = Site {
            storage: "local-zfs".into(),
            template: "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst".into(),
            bridge: "vmbr0".into(),
            addresses: Some(("10.0.0.50/24".into(), "10.0.0.51/24".into(), "10.0.0.1".into())),
        };
        let taken = support::estate(
            dir.path(),
            &double,
            "",
            &[
                support::container(900, "a", &format!(r#", "template": "{}""#, site.template)),
                support::container(901, "b", &format!(r#", "template": "{}""#, site.template)),
            ]
            .join(","),
        );
        let (_, report) = support::apply(&backend, &taken, dir.path());
        assert!(!report.failed(), "{report:#?}");
        let ids = free_ids(&backend, 900);
        assert_eq!(ids, (902, 903));
        let scenario_dir = tempfile::tempdir().expect("tmp");
        lifecycle(&backend, &site, ids, scenario_dir.path(), &|dir, lxc| support::estate(dir, &double, "", lxc));
        // The guests that were there before are untouched.
        assert!(double.conf_file(900).is_some() && double.conf_file(901).is_some());
        assert!(double.conf_file(902).is_none() && double.conf_file(903).is_none());

        // A scenario that fails half-way (the clone refused) still leaves nothing behind.
        double.inject(Fault::new(FaultKind::Status(500)).on("POST", "/nodes/pve1/lxc/902/clone").times(20));
        let failing = tempfile::tempdir().expect("tmp");
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            lifecycle(&backend, &site, ids, failing.path(), &|dir, lxc| support::estate(dir, &double, "", lxc));
        }));
        assert!(run.is_err(), "the clone was refused, so the scenario fails");
        assert!(double.requests().iter().any(|r| r.path == "/nodes/pve1/lxc/902/clone" && r.status == 500));
        assert!(double.conf_file(902).is_none(), "the template made before the failure was destroyed");
    }
}

#[test]
fn the_real_host_vm_scenario_passes_against_the_double() {
    for version in PveVersion::ALL {
        let double = support::start(version);
        double.add_dir_storage("images", "/var/lib/images", "iso,vztmpl,import");
        double.add_image("images:import/debian-12-agent.qcow2", 2_147_483_648);
        double.set_agent_delay(std::time::Duration::from_millis(50));
        let backend = support::backend(&double, None).with_agent_wait(std::time::Duration::from_secs(5));
        let site = VmSite {
            storage: "local-zfs".into(),
            bridge: "vmbr0".into(),
            image: "/var/lib/images/import/debian-12-agent.qcow2".into(),
        };
        let ids = free_ids(&backend, 9100);
        let dir = tempfile::tempdir().expect("tmp");
        vm_lifecycle(&backend, &site, ids, dir.path(), &|dir, lxc| support::estate(dir, &double, "", lxc));
        // The feature ran inside the clone through the guest agent.
        assert!(double.vm_config(ids.1).is_none(), "destroyed");
        let ran = double.requests().iter().any(|r| r.path == format!("/nodes/pve1/qemu/{}/agent/exec", ids.1));
        assert!(ran, "no command ran through the agent");
    }
}
