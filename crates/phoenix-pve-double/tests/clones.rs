//! Where a container's clone goes, as pve-container's `clone_vm` decides it: a full clone lands
//! on the `storage` it names (else on its source's storages); a clone to another node (`target`)
//! needs every volume on shared storage, counted on `storage` when it names one, which must then
//! be shared itself; the storages say whether they are (`rbd` is, `zfspool` is not, unless
//! configured so). What is refused is refused before any task, with Proxmox's words.

mod support;

use support::run;

use std::time::Duration;

use phoenix_proxmox::transport::api::ApiClient;
use phoenix_proxmox::transport::task::{Poll, wait};
use phoenix_pve_double::{PveDouble, PveVersion};

const POLL: Poll = Poll { first: Duration::from_millis(5), max: Duration::from_millis(20) };

fn start(version: PveVersion) -> (PveDouble, ApiClient) {
    support::start(version, Some(Duration::from_millis(10)))
}

/// The storage of a container's root disk, as its configuration shows it.
fn rootfs_storage(api: &ApiClient, node: &str, id: u32) -> String {
    let config = api.request("GET", &format!("/nodes/{node}/lxc/{id}/config"), &[]).expect("config");
    config["rootfs"].as_str().and_then(|r| r.split(':').next()).unwrap_or_default().to_string()
}

#[test]
fn a_clone_to_another_node_needs_shared_storage_and_a_full_clone_lands_on_its_storage() {
    for version in PveVersion::ALL {
        let (double, api) = start(version);
        double.add_node("pve2");
        double.add_storage("ceph", "rbd", "rootdir,images");
        let storages = api.request("GET", "/nodes/pve1/storage", &[]).expect("storages");
        let shared = |name: &str| {
            storages.as_array().into_iter().flatten().find(|s| s["storage"] == name).map(|s| s["shared"].clone())
        };
        assert_eq!((shared("ceph"), shared("local-zfs")), (Some(1.into()), Some(0.into())), "{version:?}: {storages}");
        let params = [
            ("vmid", "900".to_string()),
            ("ostemplate", "local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst".to_string()),
            ("rootfs", "local-zfs:8".to_string()),
        ];
        run(&api, "POST", "/nodes/pve1/lxc", &params);
        let clone = |newid: u32, extra: &[(&str, &str)]| {
            let mut ps = vec![("newid", newid.to_string()), ("full", "1".to_string())];
            ps.extend(extra.iter().map(|(k, v)| (*k, (*v).to_string())));
            api.request("POST", "/nodes/pve1/lxc/900/clone", &ps)
        };
        let refused = |newid: u32, extra: &[(&str, &str)]| clone(newid, extra).expect_err("refused").message;

        // Another node, the volumes on local storage: refused, and nothing is made.
        assert!(refused(901, &[("target", "pve2")]).contains("can't clone CT to node 'pve2' (CT uses local storage)"));
        assert!(
            refused(901, &[("target", "pve2"), ("storage", "local-zfs")])
                .contains("can't clone to non-shared storage 'local-zfs'")
        );
        assert!(refused(901, &[("storage", "tank")]).contains("storage 'tank' does not exist"));
        assert!(api.request("GET", "/nodes/pve2/lxc/901/config", &[]).is_err(), "{version:?}: a refused clone exists");

        // The same node named as the target is no other node; a full clone lands on its storage.
        let wait_for = |answer: Result<serde_json::Value, _>| {
            let upid = answer.expect("cloned").as_str().expect("a UPID").parse().expect("valid UPID");
            wait(&api, &upid, POLL, Duration::from_secs(10)).expect("clone task");
        };
        wait_for(clone(901, &[("target", "pve1")]));
        assert_eq!(rootfs_storage(&api, "pve1", 901), "local-zfs", "{version:?}");
        wait_for(clone(902, &[("storage", "ceph")]));
        assert_eq!(rootfs_storage(&api, "pve1", 902), "ceph", "{version:?}");
        // Onto shared storage, to another node; and from shared storage without naming one.
        wait_for(clone(903, &[("storage", "ceph"), ("target", "pve2")]));
        assert_eq!(rootfs_storage(&api, "pve2", 903), "ceph", "{version:?}");
        let from_shared = [("newid", "904".to_string()), ("full", "1".to_string()), ("target", "pve2".to_string())];
        let upid = api.request("POST", "/nodes/pve1/lxc/902/clone", &from_shared).expect("cloned");
        wait(&api, &upid.as_str().expect("a UPID").parse().expect("valid UPID"), POLL, Duration::from_secs(10))
            .expect("clone task");
        assert_eq!(rootfs_storage(&api, "pve2", 904), "ceph", "{version:?}");

        // A storage configured shared (a volume group on a SAN, say) is shared like a network one.
        double.share_storage("local-zfs");
        wait_for(clone(905, &[("target", "pve2")]));
        assert_eq!(rootfs_storage(&api, "pve2", 905), "local-zfs", "{version:?}");
    }
}
