//! The customization record (the markers) of Proxmox guests, kept in their descriptions, against
//! the PVE test double on both versions: read with the configuration that observes a guest (no
//! command on the node, and none for a stopped guest either); carried by each snapshot Phoenix
//! takes, so that a rollback and a clone get the record of the snapshot's moment; a guest of an
//! older Phoenix, whose record is a file inside it, still read. And the economy this buys: a
//! no-op re-apply of the AI-host example reads the cluster once and each guest's configuration,
//! nothing else, and changes nothing; its cold apply lists the cluster only to observe it. Every
//! request is checked against the schema by the double.

mod support;

use std::collections::BTreeMap;

use phoenix_backend::{Backend, CreateRequest, CreateSource, FilePush, GuestConfig, GuestKind, ObserveScope};
use phoenix_engine::customize::MARKERS_PATH;
use phoenix_engine::health::AlwaysUp;
use phoenix_pve_double::{PveDouble, PveVersion};

fn record(double: &PveDouble, id: u32) -> Option<String> {
    let description = double.description(id)?;
    phoenix_proxmox::record::read(&description).map(|r| String::from_utf8_lossy(&r).into_owned())
}

fn markers(pairs: &[(&str, &str)]) -> Vec<u8> {
    let map: BTreeMap<&str, &str> = pairs.iter().copied().collect();
    serde_json::to_vec_pretty(&map).expect("json")
}

fn parsed(bytes: Option<Vec<u8>>) -> BTreeMap<String, String> {
    serde_json::from_slice(&bytes.expect("a record")).expect("json")
}

fn the_record_follows_snapshots_rollbacks_and_clones(version: PveVersion) {
    let (double, _dir, backend) = support::one_container(version, 950);
    assert_eq!(record(&double, 950).as_deref(), Some("{}"), "{version:?}: a new guest starts with an empty record");

    // Written and read through the description: no command on the node.
    let commands = double.node_channel().commands().len();
    backend.write_markers(950, &markers(&[("feature:docker", "h1")])).expect("write");
    assert_eq!(parsed(backend.read_markers(950).expect("read"))["feature:docker"], "h1", "{version:?}");
    let observed = backend.observe_scoped(&ObserveScope::default()).expect("observe");
    let shown = observed.guests[&950].markers.clone();
    assert_eq!(parsed(shown)["feature:docker"], "h1", "{version:?}: observe shows it");
    assert_eq!(double.node_channel().commands().len(), commands, "{version:?}: no node command");
    assert!(double.description(950).expect("description").starts_with("Managed by Phoenix.\n<!-- phoenix-markers "));

    // A snapshot keeps the record of its moment; a rollback gives it back.
    backend.snapshot(950, "before").expect("snapshot");
    backend.write_markers(950, &markers(&[("feature:docker", "h2"), ("script:app", "s1")])).expect("write");
    backend.rollback(950, "before").expect("rollback");
    let back = parsed(backend.read_markers(950).expect("read"));
    assert_eq!(back.get("feature:docker").map(String::as_str), Some("h1"), "{version:?}: {back:?}");
    assert!(!back.contains_key("script:app"), "{version:?}: {back:?}");

    // A clone of the snapshot gets its record, and the mark.
    backend.write_markers(950, &markers(&[("feature:docker", "h3")])).expect("write");
    let mut config = GuestConfig::default();
    config.set(phoenix_backend::Field::Hostname, "copy");
    let clone = CreateRequest {
        id: 951,
        kind: GuestKind::Lxc,
        node: None,
        source: CreateSource::Clone { source: 950, snapshot: "before".into() },
        config,
    };
    backend.create(&clone).expect("clone");
    assert_eq!(parsed(backend.read_markers(951).expect("read"))["feature:docker"], "h1", "{version:?}");
    assert!(backend.observe_guest(951).expect("observe").expect("951").managed, "{version:?}");

    // A snapshot Phoenix did not take has no record: after a rollback to it, the record is the
    // file inside the guest (rolled back with its files), as an older Phoenix kept it.
    let file = FilePush {
        path: MARKERS_PATH.into(),
        content: markers(&[("feature:docker", "old")]),
        mode: 0o600,
        uid: 0,
        gid: 0,
    };
    backend.push_file(950, &file).expect("push");
    let token = support::client(&double);
    let call = phoenix_proxmox::transport::endpoint::Call::TakeSnapshot(
        phoenix_proxmox::transport::endpoint::Guest::lxc("pve1", 950),
    );
    token.call(&call, &[("snapname", "by-hand".to_string())]).expect("snapshot by hand");
    backend.rollback(950, "by-hand").expect("rollback");
    assert_eq!(record(&double, 950), None, "{version:?}: {:?}", double.description(950));
    assert!(backend.observe_guest(950).expect("observe").expect("950").managed, "{version:?}: the mark stays");
    assert_eq!(parsed(backend.read_markers(950).expect("read"))["feature:docker"], "old", "{version:?}");
}

#[test]
fn the_record_follows_snapshots_rollbacks_and_clones_on_8() {
    the_record_follows_snapshots_rollbacks_and_clones(PveVersion::V8);
}

#[test]
fn the_record_follows_snapshots_rollbacks_and_clones_on_9() {
    the_record_follows_snapshots_rollbacks_and_clones(PveVersion::V9);
}

/// A no-op re-apply of the AI-host example (containers, VMs, a template, GPUs, a firewall):
/// the cluster listing, each guest's configuration, and the snapshots and firewall only of the
/// guests whose configuration needs them; no command on the node; nothing written.
#[test]
fn a_no_op_reads_each_guest_once_and_runs_nothing_on_the_node() {
    let double = support::start(PveVersion::V9);
    double.add_storage("fastData-lxc-disks", "zfspool", "rootdir,images");
    double.add_dir_storage("fastData", "/fastData/shared-iso", "iso,vztmpl,import");
    double.add_image("fastData:import/noble-server-cloudimg-amd64.img", 2_361_393_152);
    double.set_agent_delay(std::time::Duration::from_millis(50));
    double.set_devices(
        "pve1",
        &["/dev/nvidia0", "/dev/nvidia1", "/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"],
    );
    let dir = tempfile::tempdir().expect("tmp");
    let estate = support::ai_stack::write(dir.path(), &double, support::TOKEN.0);
    let library = support::ai_stack::library();
    let backend = support::backend(&double, Some(support::channel(&double)))
        .with_vm_passwords(phoenix_plan::vm_passwords(&estate))
        .with_agent_wait(std::time::Duration::from_secs(10));
    let (_, report) = support::apply_probed(&backend, &estate, dir.path(), &library, &AlwaysUp);
    assert!(!report.failed(), "{report:#?}");
    // The cold apply lists the cluster when it observes, not for every step (a guest it has seen
    // is asked about on its node: a few bytes, however large the cluster).
    let listings = double.requests().iter().filter(|r| r.path == "/cluster/resources").count();
    assert!(listings <= 2, "{listings} listings of the cluster");

    let backend = support::backend(&double, Some(support::channel(&double)))
        .with_vm_passwords(phoenix_plan::vm_passwords(&estate));
    let (requests, commands) = (double.requests().len(), double.node_channel().commands().len());
    let (plan, report) = support::apply_probed(&backend, &estate, dir.path(), &library, &AlwaysUp);
    assert!(plan.is_empty(), "{:#?}", plan.guests.iter().filter(|g| !g.steps.is_empty()).collect::<Vec<_>>());
    assert!(!report.failed(), "{report:#?}");
    let made: Vec<String> = double.requests()[requests..].iter().map(|r| format!("{} {}", r.method, r.path)).collect();
    let guests = plan.guests.len();
    assert!(made.iter().all(|r| r.starts_with("GET ")), "{made:#?}");
    assert_eq!(made.iter().filter(|r| r.ends_with("/cluster/resources")).count(), 1, "{made:#?}");
    assert_eq!(made.iter().filter(|r| r.ends_with("/config")).count(), guests, "{made:#?}");
    // Snapshots only of the templates (and guests that keep a template snapshot).
    let desired = phoenix_plan::desired(&estate, &|_| Vec::new());
    let templates = desired.guests.values().filter(|d| d.template || d.template_snapshot.is_some()).count();
    assert!(templates > 0);
    assert_eq!(made.iter().filter(|r| r.ends_with("/snapshot")).count(), templates, "{made:#?}");
    assert!(made.len() <= 2 * guests, "{} requests for {guests} guests: {made:#?}", made.len());
    let ran = &double.node_channel().commands()[commands..];
    assert!(ran.is_empty(), "{ran:?}");
}
