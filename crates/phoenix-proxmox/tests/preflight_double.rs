//! Checks before anything changes, against the PVE test double: the credentials' privileges
//! (the missing one named), the node channel, and for each guest to create its storages, its
//! bridge and its template — a template missing from its storage but in the appliance index is
//! downloaded through the API before the container is created.

mod support;

use phoenix_backend::{Backend, CreateRequest, CreateSource, GuestConfig, GuestKind};
use phoenix_proxmox::node::channel::{ChannelError, Output};
use phoenix_pve_double::{ALL_PRIVILEGES, PveVersion};
use support::{backend, channel, start};

fn request(template: &str, fields: &[(&str, &str)]) -> CreateRequest {
    let config = GuestConfig::parse(fields.iter().copied()).expect("config");
    CreateRequest { id: 960, kind: GuestKind::Lxc, node: None, source: CreateSource::Template(template.into()), config }
}

#[test]
fn privileges_and_the_node_channel_are_checked_first() {
    let double = start(PveVersion::V8);
    let with_channel = backend(&double, Some(channel(&double)));
    assert!(with_channel.preflight().expect("all granted").starts_with("8."));
    let without: Vec<&str> = ALL_PRIVILEGES.iter().copied().filter(|p| *p != "VM.Snapshot").collect();
    double.set_privileges("/", &without);
    let e = backend(&double, None).preflight().expect_err("VM.Snapshot is missing");
    assert_eq!(e.message, "the API credentials lack VM.Snapshot on /vms");
    // A more specific path's privileges replace those of `/`.
    double.set_privileges("/", ALL_PRIVILEGES);
    double.set_privileges("/storage", &["Datastore.Audit"]);
    let e = backend(&double, None).preflight().expect_err("no space on storages");
    assert!(e.message.contains("Datastore.AllocateSpace on /storage"), "{e:?}");
    double.set_privileges("/storage", &[]);
    // Privileges granted without propagation (or through a pool) are listed as `0`: granted all
    // the same on their own path, and not below it.
    double.set_privileges_without_propagation("/vms", ALL_PRIVILEGES);
    double.set_privileges_without_propagation("/storage", ALL_PRIVILEGES);
    assert!(backend(&double, None).preflight().is_ok(), "privileges listed as 0 are granted");
    double.set_privileges("/vms", &[]);
    double.set_privileges("/storage", &[]);
    double.set_privileges_without_propagation("/", ALL_PRIVILEGES);
    let e = backend(&double, None).preflight().expect_err("/ does not propagate");
    assert!(e.message.starts_with("the API credentials lack VM.Allocate on /vms"), "{e:?}");
    double.set_privileges("/", ALL_PRIVILEGES);

    let unreachable =
        phoenix_proxmox::backend::ProxmoxBackend::new(support::client(&double), "pve7", Some(channel(&double)));
    let e = unreachable.preflight().expect_err("no node pve7");
    assert!(e.message.contains("the node channel does not reach pve7"), "{e:?}");

    // A root@pam ticket is asked for before anything changes: a wrong password stops here.
    assert!(backend(&double, None).with_root_api(support::root_client(&double)).preflight().is_ok());
    let wrong = phoenix_proxmox::transport::api::ApiClient::new(
        "127.0.0.1",
        double.addr.port(),
        phoenix_proxmox::transport::api::Auth::Password { user: "root@pam".into(), password: "not-it".into() },
        phoenix_proxmox::transport::api::TlsVerify::fingerprint(&double.fingerprint).expect("pin"),
    )
    .expect("client");
    let e = backend(&double, None).with_root_api(wrong).preflight().expect_err("wrong password");
    assert!(e.message.starts_with("the root@pam ticket: logging in as root@pam failed: 401"), "{e:?}");
    // root@pam with two-factor authentication: a password gives no ticket, and the error says so.
    double.require_root_tfa();
    let e = backend(&double, None).with_root_api(support::root_client(&double)).preflight().expect_err("TFA");
    assert!(e.message.contains("root@pam has two-factor authentication"), "{e:?}");
    assert!(e.detail.as_deref().is_some_and(|d| d.contains("node channel")), "{e:?}");
}

#[test]
fn storages_bridges_and_templates_are_checked_and_missing_templates_downloaded() {
    for version in PveVersion::ALL {
        let double = start(version);
        let b = backend(&double, None);
        let ubuntu = "local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst";
        let disk = [("storage", "local-zfs"), ("disk_gb", "8"), ("net.name", "eth0"), ("net.bridge", "vmbr0")];
        b.check_create(&request(ubuntu, &disk)).expect("all there");

        let e = b.check_create(&request(ubuntu, &[("storage", "local"), ("disk_gb", "8")])).expect_err("no rootdir");
        assert!(e.message.contains("storage local on node pve1 does not hold container disks"), "{e:?}");
        let e = b.check_create(&request(ubuntu, &[("storage", "nvme"), ("disk_gb", "8")])).expect_err("no storage");
        assert_eq!(e.message, "node pve1 has no storage nvme");
        let e = b.check_create(&request(ubuntu, &[("net.bridge", "vmbr9")])).expect_err("no bridge");
        assert_eq!(e.message, "node pve1 has no bridge vmbr9");
        let e = b.check_create(&request("local:vztmpl/nosuch.tar.zst", &disk)).expect_err("nowhere");
        assert!(e.message.contains("neither on storage local nor in Proxmox's appliance index"), "{e:?}");

        // On the index, not on the storage: downloaded, then created.
        let debian = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst";
        assert!(!double.templates().contains(&debian.to_string()));
        b.check_create(&request(debian, &disk)).expect("downloadable");
        b.create(&request(debian, &disk)).expect("created");
        assert!(double.templates().contains(&debian.to_string()));
        let writes: Vec<String> = double
            .requests()
            .iter()
            .filter(|r| r.method == "POST")
            .map(|r| {
                format!(
                    "{} {}",
                    r.path,
                    r.params.get("template").or(r.params.get("ostemplate")).cloned().unwrap_or_default()
                )
            })
            .collect();
        assert_eq!(
            writes,
            vec![
                "/nodes/pve1/aplinfo debian-12-standard_12.7-1_amd64.tar.zst".to_string(),
                format!("/nodes/pve1/lxc {debian}"),
            ]
        );
        assert!(double.requests().iter().all(|r| r.status == 200));
    }
}

#[test]
fn each_guest_to_create_needs_privileges_on_its_storages_bridge_source_and_download() {
    let double = start(PveVersion::V9);
    let ubuntu = "local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst";
    let disk = [("storage", "local-zfs"), ("disk_gb", "8"), ("net.name", "eth0"), ("net.bridge", "vmbr0")];
    backend(&double, None).check_create(&request(ubuntu, &disk)).expect("all granted");

    // A more specific path's privileges replace those inherited from `/`.
    double.set_privileges("/sdn/zones/localnetwork/vmbr0", &["SDN.Audit"]);
    double.set_privileges("/storage/local-zfs", &["Datastore.Audit"]);
    let e = backend(&double, None).check_create(&request(ubuntu, &disk)).expect_err("no SDN.Use, no space");
    assert_eq!(
        e.message,
        "the API credentials lack Datastore.AllocateSpace on /storage/local-zfs (for the disks of 960), \
         SDN.Use on /sdn/zones/localnetwork/vmbr0 (to attach 960 to vmbr0)"
    );
    double.set_privileges("/sdn/zones/localnetwork/vmbr0", &[]);
    double.set_privileges("/storage/local-zfs", &[]);

    let debian = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst";
    double.set_privileges("/storage/local", &["Datastore.Audit", "Datastore.AllocateSpace"]);
    let e = backend(&double, None).check_create(&request(debian, &disk)).expect_err("may not download");
    assert!(
        e.message.contains(
            "Datastore.AllocateTemplate on /storage/local (to download {debian})".replace("{debian}", debian).as_str()
        ),
        "{e:?}"
    );
    double.set_privileges("/storage/local", &[]);

    let privileged = [("storage", "local-zfs"), ("disk_gb", "8"), ("unprivileged", "0")];
    double.set_privileges(
        "/",
        &phoenix_pve_double::ALL_PRIVILEGES.iter().copied().filter(|p| *p != "Sys.Modify").collect::<Vec<_>>(),
    );
    let e = backend(&double, None).check_create(&request(ubuntu, &privileged)).expect_err("privileged on 9.x");
    assert!(e.message.contains("Sys.Modify on / (to create the privileged container 960 (Proxmox VE 9))"), "{e:?}");
    // root@pam holds every privilege.
    let root = phoenix_proxmox::backend::ProxmoxBackend::new(support::root_client(&double), "pve1", None);
    root.check_create(&request(ubuntu, &privileged)).expect("root may");
}

#[test]
fn a_guest_on_another_node_needs_that_node_online_and_reached() {
    let double = start(PveVersion::V9);
    double.add_node("pve2");
    double.add_node("pve3");
    let b = backend(&double, Some(channel(&double)));
    let ubuntu = "local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst";
    let on = |node: &str| CreateRequest {
        node: Some(node.into()),
        ..request(ubuntu, &[("storage", "local-zfs"), ("disk_gb", "8")])
    };
    b.check_create(&on("pve2")).expect("pve2 is up");
    let e = b.check_create(&on("pve9")).expect_err("not in the cluster");
    assert_eq!(e.message, "node pve9 is not in the cluster (its nodes: pve1, pve2, pve3)");
    double.set_offline("pve3");
    let e = backend(&double, None).check_create(&on("pve3")).expect_err("down");
    assert_eq!(e.message, "node pve3 is offline");

    // Listed online, but the node channel does not get there.
    let double = start(PveVersion::V9);
    double.add_node("pve2");
    let nodes = double.node_channel();
    let only_pve1: std::sync::Arc<dyn phoenix_proxmox::node::channel::NodeChannel> =
        std::sync::Arc::new(move |node: &str, argv: &[String], input: Option<&[u8]>| -> Result<Output, ChannelError> {
            if node != "pve1" {
                return Ok(Output {
                    status: 255,
                    stdout: Vec::new(),
                    stderr: b"ssh: connect to host pve2: Connection refused".to_vec(),
                });
            }
            let (status, stdout, stderr) = nodes.run(node, argv, input);
            Ok(Output { status, stdout, stderr })
        });
    let e = backend(&double, Some(only_pve1)).check_create(&on("pve2")).expect_err("unreachable");
    assert!(e.message.starts_with("the node channel does not reach pve2"), "{e:?}");
}
