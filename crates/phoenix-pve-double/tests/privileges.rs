//! What the double shows and allows by the caller's privileges, as Proxmox does: a node's
//! bridges and VNets only to those holding `SDN.Audit` or `SDN.Use` on them, VNets only with
//! `type=any_bridge`, its storages (and their content) only to those holding `Datastore.Audit`
//! or `Datastore.AllocateSpace`; a guest attached to a bridge without `SDN.Use` on it, or a
//! clone of a source whose bridges or storages the caller may not use, refused with 403 before
//! anything changes. `root@pam` sees and may everything.

mod support;

use support::run;

use std::time::Duration;

use phoenix_proxmox::transport::api::{ApiClient, Auth, TlsVerify};
use phoenix_pve_double::{ALL_PRIVILEGES, PveDouble, PveVersion};
use serde_json::Value;

/// The `iface` of each entry of a node's network listing (with `type` when given).
fn ifaces(api: &ApiClient, kind: Option<&str>) -> Vec<String> {
    let params: Vec<(&str, String)> = kind.map(|k| ("type", k.to_string())).into_iter().collect();
    let list = api.request("GET", "/nodes/pve1/network", &params).expect("network");
    list.as_array().into_iter().flatten().filter_map(|i| i["iface"].as_str().map(str::to_string)).collect()
}

/// The storages a node lists; the storage configuration (`GET /storage`) lists the same.
fn storages(api: &ApiClient) -> Vec<String> {
    let names = |path: &str| -> Vec<String> {
        let list = api.request("GET", path, &[]).expect("storages");
        list.as_array().into_iter().flatten().filter_map(|s| s["storage"].as_str().map(str::to_string)).collect()
    };
    let listed = names("/nodes/pve1/storage");
    assert_eq!(names("/storage"), listed);
    listed
}

/// A client of `double` logged in as `root@pam`.
fn root(double: &PveDouble) -> ApiClient {
    let auth = Auth::Password { user: "root@pam".into(), password: "root-pw".into() };
    ApiClient::new("127.0.0.1", double.addr.port(), auth, TlsVerify::fingerprint(&double.fingerprint).expect("pin"))
        .expect("root client")
}

/// Every privilege on `/` but those named.
fn all_but(without: &[&str]) -> Vec<&'static str> {
    ALL_PRIVILEGES.iter().copied().filter(|p| !without.contains(p)).collect()
}

#[test]
fn bridges_vnets_and_storages_are_listed_by_privilege() {
    for version in PveVersion::ALL {
        let (double, api) = support::start(version, None);
        double.add_vnet("blue", "zone1");
        assert_eq!(ifaces(&api, None), ["vmbr0"], "{version:?}: no VNets without a type");
        assert_eq!(ifaces(&api, Some("any_bridge")), ["vmbr0", "blue"], "{version:?}");
        assert_eq!(ifaces(&api, Some("any_local_bridge")), ["vmbr0"], "{version:?}");
        assert_eq!(ifaces(&api, Some("vnet")), ["blue"], "{version:?}");
        let all = storages(&api);
        assert!(all.contains(&"local-zfs".to_string()), "{version:?}: {all:?}");

        // Without SDN and Datastore privileges on `/`, only what is granted below it is seen.
        double.set_privileges("/", &all_but(&["SDN.Use", "SDN.Audit", "Datastore.Audit", "Datastore.AllocateSpace"]));
        assert!(ifaces(&api, Some("any_bridge")).is_empty(), "{version:?}");
        assert!(storages(&api).is_empty(), "{version:?}");
        let e = api.request("GET", "/nodes/pve1/storage/local/content", &[]).expect_err("403");
        assert!(
            e.message.contains("403 Permission check failed (/storage/local, Datastore.Audit|Datastore.AllocateSpace)"),
            "{version:?}: {e:?}"
        );
        double.set_privileges("/sdn/zones/localnetwork", &["SDN.Audit"]);
        double.set_privileges("/sdn/zones/zone1/blue", &["SDN.Use"]);
        double.set_privileges("/storage/local-zfs", &["Datastore.AllocateSpace"]);
        assert_eq!(ifaces(&api, Some("any_bridge")), ["vmbr0", "blue"], "{version:?}");
        assert_eq!(storages(&api), ["local-zfs"], "{version:?}");
        // A grant without propagation counts for its own path only.
        double.set_privileges_without_propagation("/sdn/zones/localnetwork", &["SDN.Audit"]);
        assert_eq!(ifaces(&api, Some("any_bridge")), ["blue"], "{version:?}");

        // root@pam sees everything, whatever the ACLs say.
        let root = root(&double);
        assert_eq!(ifaces(&root, Some("any_bridge")), ["vmbr0", "blue"], "{version:?}");
        assert_eq!(storages(&root), all, "{version:?}");
    }
}

#[test]
fn a_bridge_or_a_clone_source_the_token_may_not_use_is_refused() {
    for version in PveVersion::ALL {
        let (double, api) = support::start(version, Some(Duration::from_millis(10)));
        let container = [
            ("vmid", "900".to_string()),
            ("ostemplate", "local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst".to_string()),
            ("rootfs", "local-zfs:8".to_string()),
            ("net0", "name=eth0,bridge=vmbr0".to_string()),
        ];
        run(&api, "POST", "/nodes/pve1/lxc", &container);
        let vm = [
            ("vmid", "8000".to_string()),
            ("scsi0", "local-zfs:8".to_string()),
            ("ide2", "local-zfs:cloudinit".to_string()),
            ("net0", "virtio,bridge=vmbr0,tag=20".to_string()),
        ];
        run(&api, "POST", "/nodes/pve1/qemu", &vm);
        let refusal = |method: &str, path: &str, params: &[(&str, String)]| {
            let e = api.request(method, path, params).expect_err("refused");
            assert!(e.message.contains(": 403 Permission check failed"), "{version:?}: {e:?}");
            e.message
        };
        let clone = [("newid", "901".to_string()), ("full", "1".to_string())];

        // Seen (SDN.Audit) is not usable: a create, a change, and a clone of a source on it.
        double.set_privileges("/sdn/zones/localnetwork/vmbr0", &["SDN.Audit"]);
        assert_eq!(ifaces(&api, None), ["vmbr0"], "{version:?}");
        let used = "Permission check failed (/sdn/zones/localnetwork/vmbr0, SDN.Use)";
        let mut create = container.to_vec();
        create[0].1 = "902".into();
        assert!(refusal("POST", "/nodes/pve1/lxc", &create).contains(used), "{version:?}");
        assert!(
            refusal("PUT", "/nodes/pve1/lxc/900/config", &[("net0", "name=eth0,bridge=vmbr0".into())]).contains(used),
            "{version:?}"
        );
        assert!(refusal("POST", "/nodes/pve1/lxc/900/clone", &clone).contains(used), "{version:?}");
        // A VLAN tag's path is below the bridge's.
        let tagged = "Permission check failed (/sdn/zones/localnetwork/vmbr0/20, SDN.Use)";
        let vm_clone = [("newid", "8001".to_string()), ("full", "1".to_string())];
        assert!(refusal("POST", "/nodes/pve1/qemu/8000/clone", &vm_clone).contains(tagged), "{version:?}");
        // Moving a container's interface off a bridge needs SDN.Use there too.
        double.add_vnet("blue", "zone1");
        let off = [("net0", "name=eth0,bridge=blue".to_string())];
        assert!(refusal("PUT", "/nodes/pve1/lxc/900/config", &off).contains(used), "{version:?}");
        double.set_privileges("/sdn/zones/localnetwork/vmbr0/20", &["SDN.Use"]);
        double.set_privileges("/sdn/zones/localnetwork/vmbr0", &[]);
        // A clone needs space on its source's storages (or on the one it names).
        double.set_privileges("/storage/local-zfs", &["Datastore.Audit"]);
        let space = "Permission check failed (/storage/local-zfs, Datastore.AllocateSpace)";
        assert!(refusal("POST", "/nodes/pve1/lxc/900/clone", &clone).contains(space), "{version:?}");
        assert!(refusal("POST", "/nodes/pve1/qemu/8000/clone", &vm_clone).contains(space), "{version:?}");
        let mut elsewhere = clone.to_vec();
        elsewhere.push(("storage", "local-lvm".into()));
        double.add_storage("local-lvm", "lvmthin", "rootdir,images");
        run(&api, "POST", "/nodes/pve1/lxc/900/clone", &elsewhere);
        // root@pam may, whatever the ACLs say.
        let root = root(&double);
        run(&root, "POST", "/nodes/pve1/qemu/8000/clone", &vm_clone);
        let made = root.request("GET", "/nodes/pve1/qemu/8001/config", &[]).expect("cloned");
        assert_ne!(made, Value::Null, "{version:?}");
    }
}
