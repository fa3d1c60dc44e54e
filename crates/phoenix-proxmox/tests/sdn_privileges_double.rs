//! The privileges on bridges and storages, against the PVE test double, which (as Proxmox does)
//! lists to a token only the bridges and storages it holds privileges on, and refuses a bridge
//! or a clone's source it may not use: a missing privilege is said as a missing privilege,
//! never as a bridge or storage the node lacks; a clone needs `SDN.Use` on its template's
//! bridges and `Datastore.AllocateSpace` on its template's storages too, checked before anything
//! is made; a guest on an SDN VNet finds it (listed with `type=any_bridge`) and needs `SDN.Use`
//! in the VNet's zone.

mod support;

use std::time::Duration;

use phoenix_backend::{Backend, CreateRequest, CreateSource, GuestConfig, GuestKind};
use phoenix_proxmox::transport::api::ApiClient;
use phoenix_proxmox::transport::task::{Poll, wait};
use phoenix_pve_double::{PveDouble, PveVersion};
use support::{backend, start};

const UBUNTU: &str = "local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst";

fn request(id: u32, kind: GuestKind, source: CreateSource, fields: &[(&str, &str)]) -> CreateRequest {
    let config = GuestConfig::parse(fields.iter().copied()).expect("config");
    CreateRequest { id, kind, node: None, source, config }
}

/// Makes a request that starts a task and waits until it succeeded.
fn run(api: &ApiClient, method: &str, path: &str, params: &[(&str, String)]) {
    let answer = api.request(method, path, params).expect("a task");
    let upid = answer.as_str().expect("a UPID").parse().expect("valid UPID");
    let poll = Poll { first: Duration::from_millis(5), max: Duration::from_millis(20) };
    wait(api, &upid, poll, Duration::from_secs(10)).expect("task");
}

/// The container template 900 and the VM template 8000, made by root: each on `vmbr0` (the VM
/// in VLAN 20), with its root disk on `local-zfs` and another disk on `slow`.
fn templates(double: &PveDouble) {
    let root = support::root_client(double);
    let container = [
        ("vmid", "900".to_string()),
        ("ostemplate", UBUNTU.to_string()),
        ("rootfs", "local-zfs:8".to_string()),
        ("mp0", "slow:4,mp=/data".to_string()),
        ("net0", "name=eth0,bridge=vmbr0".to_string()),
    ];
    run(&root, "POST", "/nodes/pve1/lxc", &container);
    root.request("POST", "/nodes/pve1/lxc/900/template", &[]).expect("template");
    let vm = [
        ("vmid", "8000".to_string()),
        ("scsi0", "local-zfs:8".to_string()),
        ("scsi1", "slow:4".to_string()),
        ("net0", "virtio,bridge=vmbr0,tag=20".to_string()),
    ];
    run(&root, "POST", "/nodes/pve1/qemu", &vm);
    root.request("POST", "/nodes/pve1/qemu/8000/template", &[]).expect("template");
}

#[test]
fn a_bridge_or_storage_the_token_may_not_use_is_a_missing_privilege() {
    for version in PveVersion::ALL {
        let double = start(version);
        let on_vmbr0 = [("storage", "local-zfs"), ("disk_gb", "8"), ("net.name", "eth0"), ("net.bridge", "vmbr0")];
        let container = request(960, GuestKind::Lxc, CreateSource::Template(UBUNTU.into()), &on_vmbr0);
        backend(&double, None).check_create(&container).expect("all granted");

        // Neither SDN.Use nor SDN.Audit: the node lists no vmbr0 to the token.
        double.set_privileges("/sdn/zones/localnetwork", &["VM.Audit"]);
        for kind in [GuestKind::Lxc, GuestKind::Vm] {
            let source = if kind == GuestKind::Lxc {
                container.source.clone()
            } else {
                CreateSource::Template("local:import/noble.qcow2".into())
            };
            let e =
                backend(&double, None).check_create(&request(960, kind, source, &on_vmbr0)).expect_err("no SDN.Use");
            assert!(
                e.message.contains("SDN.Use on /sdn/zones/localnetwork/vmbr0 (to attach 960 to vmbr0)"),
                "{version:?} {kind:?}: {e:?}"
            );
            assert!(e.detail.as_deref().is_some_and(|d| d.contains("pveum acl modify")), "{version:?}: {e:?}");
        }
        // Granted on the zone without propagation: not on its bridges, which it does not list;
        // what `/` grants still holds below it.
        let root = phoenix_pve_double::ALL_PRIVILEGES.to_vec();
        double.set_privileges("/", &root.iter().copied().filter(|p| !p.starts_with("SDN.")).collect::<Vec<_>>());
        double.set_privileges_without_propagation("/sdn/zones/localnetwork", &["SDN.Use"]);
        let e = backend(&double, None).check_create(&container).expect_err("not propagated");
        assert!(e.message.contains("SDN.Use on /sdn/zones/localnetwork/vmbr0"), "{version:?}: {e:?}");
        double.set_privileges("/", &root);
        backend(&double, None).check_create(&container).expect("SDN.Use from /");
        double.set_privileges("/sdn/zones/localnetwork", &[]);

        // Neither Datastore.Audit nor Datastore.AllocateSpace: the node lists no local-zfs.
        double.set_privileges("/storage/local-zfs", &["Datastore.AllocateTemplate"]);
        let e = backend(&double, None).check_create(&container).expect_err("no space");
        assert!(
            e.message.contains("Datastore.AllocateSpace on /storage/local-zfs (for the disks of 960)"),
            "{version:?}: {e:?}"
        );
        double.set_privileges("/storage/local-zfs", &[]);
        // Nor on the storage of the template (or cloud image) a guest is made from.
        double.set_privileges("/storage/local", &["Datastore.AllocateTemplate"]);
        let e = backend(&double, None).check_create(&container).expect_err("template unseen");
        assert!(
            e.message.contains(&format!("Datastore.Audit on /storage/local (to read {UBUNTU}")),
            "{version:?}: {e:?}"
        );
        let image = "local:import/noble.qcow2";
        let vm = request(8001, GuestKind::Vm, CreateSource::Template(image.into()), &[("storage", "local-zfs")]);
        let e = backend(&double, None).check_create(&vm).expect_err("image unseen");
        assert!(
            e.message.contains(&format!("Datastore.Audit on /storage/local (to read {image}")),
            "{version:?}: {e:?}"
        );
        double.set_privileges("/storage/local", &[]);
        // A bridge no privilege hides is still one the node lacks.
        let on_vmbr9 = request(960, GuestKind::Lxc, CreateSource::Template(UBUNTU.into()), &[("net.bridge", "vmbr9")]);
        let e = backend(&double, None).check_create(&on_vmbr9).expect_err("no bridge");
        assert_eq!(e.message, "node pve1 has no bridge vmbr9", "{version:?}");
    }
}

#[test]
fn a_clone_needs_sdn_use_and_space_on_its_templates_bridges_and_storages() {
    for version in PveVersion::ALL {
        let double = start(version);
        double.add_storage("ceph", "rbd", "rootdir,images");
        double.add_storage("slow", "zfspool", "rootdir,images");
        templates(&double);
        // The clones themselves are on no bridge.
        let clone = |id: u32, kind: GuestKind, source: u32, fields: &[(&str, &str)]| {
            request(id, kind, CreateSource::Clone { source, snapshot: String::new() }, fields)
        };
        let on_ceph = [("storage", "ceph"), ("disk_gb", "8")];
        let lxc = clone(961, GuestKind::Lxc, 900, &on_ceph);
        let vm = clone(8001, GuestKind::Vm, 8000, &on_ceph);
        for clone in [&lxc, &vm] {
            backend(&double, None).check_create(clone).expect("all granted");
        }

        double.set_privileges("/sdn/zones/localnetwork/vmbr0", &["SDN.Audit"]);
        for (clone, source, path) in [(&lxc, 900, "vmbr0"), (&vm, 8000, "vmbr0/20")] {
            let e = backend(&double, None).check_create(clone).expect_err("no SDN.Use on the template's bridge");
            let why =
                format!("SDN.Use on /sdn/zones/localnetwork/{path} (to clone {source}, which is attached to vmbr0)");
            assert!(e.message.contains(&why), "{version:?}: {e:?}");
        }
        // SDN.Use on the VLAN alone is enough for a template in it, as for Proxmox.
        double.set_privileges("/sdn/zones/localnetwork/vmbr0/20", &["SDN.Use"]);
        backend(&double, None).check_create(&vm).expect("SDN.Use on VLAN 20");
        double.set_privileges("/sdn/zones/localnetwork/vmbr0/20", &[]);
        double.set_privileges("/sdn/zones/localnetwork/vmbr0", &[]);

        // Proxmox checks the template's storages unless the clone names its own (a container's
        // clone names it when it differs from its template's root disk's; a VM's whenever it
        // has one).
        double.set_privileges("/storage/slow", &["Datastore.Audit"]);
        for clone in [&lxc, &vm] {
            backend(&double, None).check_create(clone).expect("the clone names ceph");
        }
        let refused = [
            (clone(961, GuestKind::Lxc, 900, &[("storage", "local-zfs"), ("disk_gb", "8")]), 900),
            (clone(8001, GuestKind::Vm, 8000, &[]), 8000),
        ];
        for (clone, source) in refused {
            let e = backend(&double, None).check_create(&clone).expect_err("no space on the template's storage");
            let why = format!("Datastore.AllocateSpace on /storage/slow (to clone {source}, which has disks on slow)");
            assert!(e.message.contains(&why), "{version:?}: {e:?}");
        }
    }
}

#[test]
fn a_guest_on_an_sdn_vnet_finds_it_and_needs_sdn_use_in_its_zone() {
    for version in PveVersion::ALL {
        let double = start(version);
        double.add_vnet("blue", "zone1");
        let on_blue = [("storage", "local-zfs"), ("disk_gb", "8"), ("net.name", "eth0"), ("net.bridge", "blue")];
        let container = request(960, GuestKind::Lxc, CreateSource::Template(UBUNTU.into()), &on_blue);
        backend(&double, None).check_create(&container).expect("the VNet is a bridge");
        double.set_privileges("/sdn/zones/zone1", &["SDN.Audit"]);
        let e = backend(&double, None).check_create(&container).expect_err("seen, not usable");
        assert!(e.message.contains("SDN.Use on /sdn/zones/zone1/blue (to attach 960 to blue)"), "{version:?}: {e:?}");
    }
}
