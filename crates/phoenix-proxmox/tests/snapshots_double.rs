//! Rolling guests back to snapshots and deleting snapshots on the Proxmox backend, against the
//! PVE test double on both versions: each is a task the backend waits for; a rollback restores
//! the snapshot's configuration and files and starts a guest that ran again; what the task
//! refuses (a snapshot that does not exist, a lock) is an error with the task's words and
//! changes nothing; a deleted snapshot is gone, and so is the live configuration's `parent`.
//! Every request is checked against the schema by the double.

mod support;

use std::time::Duration;

use phoenix_backend::{Backend, ErrorKind, Field, FieldChange, FilePush, PowerState};
use phoenix_pve_double::{PveDouble, PveVersion};

const TEMPLATE: &str = support::OS_TEMPLATE;
const SNAPSHOT: &str = "phoenix-pre-20250131-235959";

fn push(path: &str, content: &str) -> FilePush {
    FilePush { path: path.into(), content: content.as_bytes().to_vec(), mode: 0o644, uid: 0, gid: 0 }
}

/// The live section of a container's conf file (before its first snapshot section).
fn live(double: &PveDouble, id: u32) -> String {
    let text = double.conf_file(id).expect("conf file");
    text.split("\n[").next().unwrap_or_default().to_string()
}

/// The requests since `from` that change something, as `METHOD path params`.
fn writes(double: &PveDouble, from: usize) -> Vec<String> {
    double.requests()[from..]
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {} {:?}", r.method, r.path, r.params))
        .collect()
}

fn container_rollback_and_delete(version: PveVersion) {
    let (double, _dir, backend) = support::one_container(version, 950);

    backend.push_file(950, &push("/etc/app.conf", "v1")).expect("push");
    backend.snapshot(950, SNAPSHOT).expect("snapshot");
    assert!(live(&double, 950).contains(&format!("parent: {SNAPSHOT}\n")), "{version:?}: {}", live(&double, 950));
    // The update: a file changed, one added, the memory changed.
    backend.push_file(950, &push("/etc/app.conf", "v2")).expect("push");
    backend.push_file(950, &push("/etc/new", "x")).expect("push");
    let memory = FieldChange { field: Field::MemoryMb, old: Some(1024u64.into()), new: Some(2048u64.into()) };
    backend.update_config(950, &[memory]).expect("configure");
    assert!(live(&double, 950).contains("memory: 2048\n"));

    let before = double.requests().len();
    backend.rollback(950, SNAPSHOT).expect("rollback");
    // One task, asked to start the container again since it ran, and waited for.
    let asked = writes(&double, before);
    assert_eq!(
        asked,
        [format!(r#"POST /nodes/pve1/lxc/950/snapshot/{SNAPSHOT}/rollback {{"start": "1"}}"#)],
        "{version:?}"
    );
    let polled =
        double.requests()[before..].iter().any(|r| r.path.contains("vzrollback") && r.path.ends_with("/status"));
    assert!(polled, "{version:?}: the task was not waited for");
    let g = backend.observe_guest(950).expect("observe").expect("950");
    assert_eq!(g.power, PowerState::Running, "{version:?}");
    assert_eq!(g.config.spelled("memory_mb").as_deref(), Some("1024"), "{version:?}");
    assert!(g.managed, "{version:?}: the description (the mark) stays");
    let nodes = double.node_channel();
    assert_eq!(nodes.file(950, "/etc/app.conf"), Some(b"v1".to_vec()), "{version:?}");
    assert_eq!(nodes.file(950, "/etc/new"), None, "{version:?}");
    assert!(live(&double, 950).contains(&format!("parent: {SNAPSHOT}\n")), "{version:?}");
    assert!(g.snapshots.contains(SNAPSHOT), "{version:?}: the snapshot stays");

    // A stopped container stays stopped.
    backend.stop(950).expect("stop");
    let before = double.requests().len();
    backend.rollback(950, SNAPSHOT).expect("rollback");
    assert_eq!(writes(&double, before), [format!("POST /nodes/pve1/lxc/950/snapshot/{SNAPSHOT}/rollback {{}}")]);
    assert_eq!(backend.observe_guest(950).expect("observe").expect("950").power, PowerState::Stopped);
    backend.start(950).expect("start");

    // What the task refuses is an error with its words, and changes nothing.
    let e = backend.rollback(950, "phoenix-pre-20000101-000000").expect_err("no such snapshot");
    assert_eq!(
        e.message, "task vzrollback 950 on pve1 failed: snapshot 'phoenix-pre-20000101-000000' does not exist",
        "{version:?}"
    );
    assert_ne!(e.kind, ErrorKind::Transient);
    double.lock_guest(950, "backup", Duration::from_millis(300));
    let e = backend.rollback(950, SNAPSHOT).expect_err("locked");
    assert!(e.message.ends_with("CT is locked (backup)"), "{version:?}: {e:?}");
    let e = backend.delete_snapshot(950, SNAPSHOT).expect_err("locked");
    assert!(e.message.ends_with("CT is locked (backup)"), "{version:?}: {e:?}");
    assert!(backend.observe_guest(950).expect("observe").expect("950").snapshots.contains(SNAPSHOT));
    std::thread::sleep(Duration::from_millis(300));

    // Deleted: gone, and the live configuration no longer names it as its parent.
    let before = double.requests().len();
    backend.delete_snapshot(950, SNAPSHOT).expect("delete");
    assert_eq!(writes(&double, before), [format!("DELETE /nodes/pve1/lxc/950/snapshot/{SNAPSHOT} {{}}")]);
    let g = backend.observe_guest(950).expect("observe").expect("950");
    assert!(g.snapshots.is_empty(), "{version:?}: {:?}", g.snapshots);
    assert!(!live(&double, 950).contains("parent:"), "{version:?}: {}", live(&double, 950));
    assert_eq!(g.power, PowerState::Running, "{version:?}: deleting a snapshot leaves the guest as it is");
    let e = backend.delete_snapshot(950, SNAPSHOT).expect_err("deleted already");
    assert!(e.message.ends_with(&format!("snapshot '{SNAPSHOT}' does not exist")), "{version:?}: {e:?}");
}

#[test]
fn a_container_is_rolled_back_to_its_snapshot_and_a_deleted_snapshot_is_gone() {
    for version in PveVersion::ALL {
        container_rollback_and_delete(version);
    }
}

#[test]
fn deleting_a_snapshot_between_two_gives_the_later_one_its_parent() {
    let double = support::start(PveVersion::V9);
    let dir = tempfile::tempdir().expect("tmp");
    let backend = support::backend(&double, None);
    let one = support::container(951, "app", &format!(r#", "template": "{TEMPLATE}""#));
    support::apply(&backend, &support::estate(dir.path(), &double, "", &one), dir.path());
    for name in ["first", "second", "third"] {
        backend.snapshot(951, name).expect("snapshot");
    }
    backend.delete_snapshot(951, "second").expect("delete");
    let text = double.conf_file(951).expect("conf");
    let third = &text[text.find("\n[third]").expect("third")..];
    assert!(third.contains("parent: first\n"), "{text}");
    assert!(live(&double, 951).contains("parent: third\n"), "{text}");
    // Rolled back to the first: the live configuration names it.
    backend.rollback(951, "first").expect("rollback");
    assert!(live(&double, 951).contains("parent: first\n"), "{}", live(&double, 951));
}

#[test]
fn a_storage_without_snapshots_is_unsupported_not_a_failure() {
    let double = support::start(PveVersion::V8);
    let dir = tempfile::tempdir().expect("tmp");
    let backend = support::backend(&double, None);
    let one = support::container(952, "app", &format!(r#", "template": "{TEMPLATE}""#));
    support::apply(&backend, &support::estate(dir.path(), &double, "", &one), dir.path());
    double.fail_next_task(
        "snapshot feature is not available",
        &["create snapshot 'phoenix-pre-20250131-235959'", "TASK ERROR: snapshot feature is not available"],
    );
    let e = backend.snapshot(952, SNAPSHOT).expect_err("the task failed");
    assert_eq!(e.kind, ErrorKind::Unsupported, "{e:?}");
    // Any other failure of the task is one.
    double.fail_next_task("out of space", &["TASK ERROR: out of space"]);
    assert_eq!(backend.snapshot(952, SNAPSHOT).expect_err("failed").kind, ErrorKind::Permanent);
}

const IMAGE: &str = "/fastData/shared-iso/import/noble-server-cloudimg-amd64.img";
const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBq3fSyYgOQn1lmDxqj0mDfvjXnGk0zQ8dfb0ZgqRkVp admin@workstation";

fn vm_rollback_and_delete(version: PveVersion) {
    let double = support::start(version);
    double.add_dir_storage("fastData", "/fastData/shared-iso", "iso,vztmpl,import");
    double.add_image("fastData:import/noble-server-cloudimg-amd64.img", 2_361_393_152);
    double.set_agent_delay(Duration::from_millis(60));
    let dir = tempfile::tempdir().expect("tmp");
    let vms = format!(
        r#"{{"vm_defaults": {{"cores": 2, "memory_mb": 2048, "disk_size_gb": 16, "storage_pool": "local-zfs", "network_bridge": "vmbr0"}},
            "vms": [{{"vmid": 8100, "name": "app-vm", "template_image": "{IMAGE}", "network_config": {{"ip": "dhcp"}},
                      "user_config": {{"username": "app", "password_hash": "$6$salt$Hash", "ssh_public_key": "{KEY}"}}}}]}}"#
    );
    std::fs::write(dir.path().join("phoenix_vm_configs.json"), vms).expect("write");
    let estate = support::estate(dir.path(), &double, "", "");
    let backend = support::backend(&double, None)
        .with_vm_passwords(phoenix_plan::vm_passwords(&estate))
        .with_agent_wait(Duration::from_secs(5));
    let (_, report) = support::apply(&backend, &estate, dir.path());
    assert!(!report.failed(), "{version:?}: {report:#?}");

    backend.push_file(8100, &push("/etc/app.conf", "v1")).expect("push");
    backend.snapshot(8100, SNAPSHOT).expect("snapshot");
    backend.push_file(8100, &push("/etc/app.conf", "v2")).expect("push");
    let memory = FieldChange { field: Field::MemoryMb, old: Some(2048u64.into()), new: Some(4096u64.into()) };
    backend.update_config(8100, &[memory]).expect("configure");
    let before = double.requests().len();
    backend.rollback(8100, SNAPSHOT).expect("rollback");
    assert_eq!(
        writes(&double, before),
        [format!(r#"POST /nodes/pve1/qemu/8100/snapshot/{SNAPSHOT}/rollback {{"start": "1"}}"#)],
        "{version:?}"
    );
    let config = double.vm_config(8100).expect("8100");
    assert_eq!(config["memory"], "2048", "{version:?}");
    assert_eq!(config["parent"], SNAPSHOT, "{version:?}");
    assert!(config["description"].starts_with("Managed by Phoenix."), "{version:?}");
    assert_eq!(double.vm_file(8100, "/etc/app.conf").map(|f| f.0), Some(b"v1".to_vec()), "{version:?}");
    assert_eq!(double.vm_running(8100), Some(true), "{version:?}");

    let e = backend.rollback(8100, "missing").expect_err("no such snapshot");
    assert_eq!(e.message, "task qmrollback 8100 on pve1 failed: snapshot 'missing' does not exist", "{version:?}");
    backend.delete_snapshot(8100, SNAPSHOT).expect("delete");
    assert!(double.vm_snapshots(8100).is_empty(), "{version:?}");
    assert!(!double.vm_config(8100).expect("8100").contains_key("parent"), "{version:?}");
    assert_eq!(double.vm_running(8100), Some(true), "{version:?}");
}

#[test]
fn a_vm_is_rolled_back_to_its_snapshot_and_a_deleted_snapshot_is_gone() {
    for version in PveVersion::ALL {
        vm_rollback_and_delete(version);
    }
}

/// The engine on the Proxmox backend: a feature that fails when it runs again on a VM rolls
/// the VM back to the snapshot taken before it (its markers as they were, kept in the snapshot's
/// description and given back to the VM's, running again); once
/// it passes, the snapshots are deleted.
#[test]
fn a_failed_update_of_a_vm_is_rolled_back_by_the_engine() {
    use phoenix_engine::GuestOutcome;
    use phoenix_engine::customize::{Feature, FeatureLibrary, FeatureManifest};

    let library = |version: &str| {
        FeatureLibrary::new([Feature {
            manifest: FeatureManifest { name: "base_setup".into(), ..FeatureManifest::default() },
            script: format!("#!/bin/sh\necho {version}\n").into_bytes(),
        }])
    };
    let double = support::start(PveVersion::V9);
    double.add_dir_storage("fastData", "/fastData/shared-iso", "iso,vztmpl,import");
    double.add_image("fastData:import/noble-server-cloudimg-amd64.img", 2_361_393_152);
    double.set_agent_delay(Duration::from_millis(60));
    let dir = tempfile::tempdir().expect("tmp");
    let vms = format!(
        r#"{{"vm_defaults": {{"cores": 2, "memory_mb": 2048, "disk_size_gb": 16, "storage_pool": "local-zfs", "network_bridge": "vmbr0"}},
            "vms": [{{"vmid": 8100, "name": "app-vm", "template_image": "{IMAGE}", "network_config": {{"ip": "dhcp"}},
                      "features": ["base_setup"],
                      "user_config": {{"username": "app", "password_hash": "$6$salt$Hash", "ssh_public_key": "{KEY}"}}}}]}}"#
    );
    std::fs::write(dir.path().join("phoenix_vm_configs.json"), vms).expect("write");
    let estate = support::estate(dir.path(), &double, "", "");
    let backend = support::backend(&double, None)
        .with_vm_passwords(phoenix_plan::vm_passwords(&estate))
        .with_agent_wait(Duration::from_secs(5));
    let (_, report) = support::apply_with(&backend, &estate, dir.path(), &library("v1"));
    assert!(!report.failed(), "{report:#?}");
    // The record is in the VM's description (see `phoenix_proxmox::record`), which Proxmox keeps
    // as it is through a rollback.
    let record = || {
        let config = double.vm_config(8100).expect("8100");
        phoenix_proxmox::record::read(config.get("description").map_or("", String::as_str))
    };
    let markers = record().expect("markers");
    assert!(String::from_utf8_lossy(&markers).contains("feature:base_setup"), "{markers:?}");

    // The new version of the feature fails in the VM.
    let (plan, _, jobs) = support::plan_with(&backend, &estate, dir.path(), &library("v2"));
    let steps: Vec<String> = plan.guests[0].steps.iter().map(|s| s.action.describe()).collect();
    assert_eq!(steps, ["snapshot before the update", "run feature:base_setup"]);
    let hash = &jobs[&8100][0].hash;
    double.set_agent_output(8100, &format!("/tmp/phoenix-feature-base_setup-{}/run", &hash[..12]), 3, "");
    let (_, report) = support::apply_with(&backend, &estate, dir.path(), &library("v2"));
    let GuestOutcome::RolledBack(message) = &report.outcomes[&8100] else { panic!("{report:#?}") };
    let snapshots = double.vm_snapshots(8100);
    assert_eq!(snapshots.len(), 1, "{snapshots:?}");
    assert!(
        message.contains(&format!(
            "feature:base_setup failed; the guest was rolled back to snapshot {} taken before the update",
            snapshots[0]
        )),
        "{message}"
    );
    assert_eq!(record().expect("markers"), markers, "the markers as they were");
    assert_eq!(double.vm_running(8100), Some(true));

    // Once it passes: the update's snapshot and the one kept by the rollback are deleted.
    double.set_agent_output(8100, &format!("/tmp/phoenix-feature-base_setup-{}/run", &hash[..12]), 0, "");
    let (_, report) = support::apply_with(&backend, &estate, dir.path(), &library("v2"));
    assert_eq!(report.outcomes[&8100], GuestOutcome::Changed, "{report:#?}");
    assert!(double.vm_snapshots(8100).is_empty(), "{:?}", double.vm_snapshots(8100));
}

/// Proxmox snapshots a container only when every mount point takes snapshots: not a host
/// directory (a bind mount), not a volume on a directory or plain LVM storage. A template's
/// snapshot that cannot be taken is an issue of the plan, before anything is built; Proxmox
/// itself would refuse it only once the template was created and customized.
#[test]
fn a_template_snapshot_that_cannot_be_taken_is_an_issue_of_the_plan() {
    let double = support::start(PveVersion::V9);
    double.add_dir_storage("slow", "/srv/slow", "rootdir,vztmpl");
    double.add_storage("thick", "lvm", "rootdir,images");
    double.add_host_dir("/srv/data");
    let dir = tempfile::tempdir().expect("tmp");
    let backend = support::backend(&double, Some(support::channel(&double)));
    let template = |id: u32, storage: &str, extra: &str| {
        format!(
            r#""{id}": {{"name": "tpl-{id}", "memory_mb": 512, "cores": 1, "storage_pool": "{storage}", "storage_size_gb": 8,
                "template": "{TEMPLATE}", "template_snapshot_name": "ready", "unprivileged": true,
                "network_config": {{"name": "eth0", "bridge": "vmbr0", "ip": "10.0.0.{}/24", "gw": "10.0.0.1"}} {extra}}}"#,
            id % 200 + 10
        )
    };
    let lxc = [
        template(960, "slow", ""),
        template(961, "thick", ""),
        template(962, "local-zfs", r#", "mount_points": [{"host_path": "/srv/data", "container_path": "/data"}]"#),
        template(963, "local-zfs", ""),
    ];
    let estate = support::estate(dir.path(), &double, "", &lxc.join(","));
    let plan = support::plan(&backend, &estate, dir.path());
    let said: Vec<(u32, &str)> = plan.issues.iter().map(|i| (i.guest, i.message.as_str())).collect();
    assert_eq!(said.iter().map(|(g, _)| *g).collect::<Vec<_>>(), [960, 961, 962], "{said:#?}");
    assert!(said[0].1.contains("its snapshot ready cannot be taken") && said[0].1.contains("slow (dir)"), "{said:?}");
    assert!(said[1].1.contains("thick (lvm)"), "{said:?}");
    assert!(said[2].1.contains("bind mount") && said[2].1.contains("/data"), "{said:?}");
    assert!(plan.issues[0].hint.contains("is_template"), "{:?}", plan.issues[0]);

    // Proxmox's own refusal, which the plan spares: the snapshot's task dies, and the backend
    // says the storage cannot take one.
    let one = template(964, "slow", "").replace(r#", "template_snapshot_name": "ready""#, "");
    let (_, report) = support::apply(&backend, &support::estate(dir.path(), &double, "", &one), dir.path());
    assert!(!report.failed(), "{report:#?}");
    let e = backend.snapshot(964, SNAPSHOT).expect_err("a directory storage takes no snapshot");
    assert_eq!(e.kind, ErrorKind::Unsupported, "{e:?}");
    assert!(e.message.ends_with("snapshot feature is not available"), "{e:?}");
}
