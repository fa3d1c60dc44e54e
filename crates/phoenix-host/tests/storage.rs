//! The storage module against the recording double: `pvesm add` argv for missing storages only,
//! existing and foreign storages left alone; planning changes nothing and a second apply does
//! nothing. (The firewall module is tested against the PVE double, in `firewall.rs`.)

mod support;

use phoenix_config::model::{StorageType, ZfsDataset};
use phoenix_host::Planner;
use phoenix_host::double::{Node, RecordingHost, Tree};
use phoenix_host::host::{Invocation, Output};
use phoenix_host::modules::storage::{self, Storage};
use support::{apply_twice, no_secrets, summaries};

/// `pvesm add <type> <id> (--pool P | --path P) --content C [--is_mountpoint yes]`, appended to storage.cfg.
fn pvesm(inv: &Invocation, tree: &mut Tree) -> Output {
    let a: Vec<String> = inv.args.iter().map(ToString::to_string).collect();
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let entry = match a.as_slice() {
        ["add", "zfspool", id, "--pool", pool, "--content", content] => {
            format!("\nzfspool: {id}\n\tpool {pool}\n\tcontent {content}\n")
        }
        ["add", "dir", id, "--path", path, "--content", content, "--is_mountpoint", "yes"] => {
            format!("\ndir: {id}\n\tpath {path}\n\tcontent {content}\n\tis_mountpoint yes\n")
        }
        other => panic!("unexpected pvesm {other:?}"),
    };
    if let Some(Node::File { data, .. }) = tree.get_mut(std::path::Path::new(storage::STORAGE_CFG)) {
        data.extend_from_slice(entry.as_bytes());
    }
    Output::default()
}

const CFG: &str = "dir: local\n\tpath /var/lib/vz\n\tcontent iso,vztmpl,backup\n\nzfspool: local-zfs\n\tpool rpool/data\n\tcontent images,rootdir\n\tsparse 1\n";

fn dataset(name: &str, kind: Option<StorageType>, props: Option<&str>) -> ZfsDataset {
    ZfsDataset {
        name: name.into(),
        pool: "fastData".into(),
        properties: props.map(str::to_string),
        proxmox_storage_type: kind,
        proxmox_content_type: Some("rootdir,images".into()),
    }
}

#[test]
fn missing_storages_are_added_with_pvesm_and_nothing_else_changes() {
    let host = RecordingHost::new().file(storage::STORAGE_CFG, CFG).program("pvesm", pvesm);
    let m = Storage {
        datasets: vec![
            dataset("lxc-disks", Some(StorageType::Zfspool), Some("compression=lz4")),
            dataset("shared-models", Some(StorageType::Dir), None),
            dataset("plain", None, None),
        ],
        ids: vec!["local".into(), "local-zfs".into(), "fastData-lxc-disks".into(), "elsewhere".into()],
    };
    let plan = apply_twice(&host, &m, &no_secrets);
    assert_eq!(
        summaries(&plan),
        [
            "run `pvesm add zfspool fastData-lxc-disks --pool fastData/lxc-disks --content rootdir,images`",
            "run `pvesm add dir fastData-shared-models --path /fastData/shared-models --content rootdir,images --is_mountpoint yes`",
        ]
    );
    assert!(
        plan.steps[0].reason.starts_with("no storage fastData-lxc-disks in /etc/pve/storage.cfg"),
        "{}",
        plan.steps[0].reason
    );
    assert!(plan.notes.iter().any(|n| n.contains("elsewhere")), "{:?}", plan.notes);
    // The storages that were there are still there, as they were.
    assert!(host.text(storage::STORAGE_CFG).expect("cfg").starts_with(CFG));
}

#[test]
fn a_storage_with_the_same_id_but_another_pool_is_reported_not_changed_and_bad_content_stops() {
    let cfg = format!("{CFG}\nzfspool: fastData-lxc-disks\n\tpool otherpool/x\n\tcontent images\n");
    let host = RecordingHost::new().file(storage::STORAGE_CFG, &cfg).program("pvesm", pvesm);
    let m = Storage { datasets: vec![dataset("lxc-disks", Some(StorageType::Zfspool), None)], ids: vec![] };
    let plan = m.plan_on(&host, &no_secrets).expect("plan");
    assert!(plan.steps.is_empty());
    assert!(plan.notes[0].contains("pool otherpool/x") && plan.notes[0].contains("left as it is"), "{:?}", plan.notes);
    let mut bad = dataset("x", Some(StorageType::Dir), Some("mountpoint=/srv/x"));
    assert_eq!(storage::mountpoint(&bad).expect("mp"), "/srv/x");
    bad.proxmox_content_type = Some("images,everything".into());
    let e = Storage { datasets: vec![bad], ids: vec![] }.plan_on(&host, &no_secrets).expect_err("bad content");
    assert!(e.message.contains("content type `everything`"), "{e}");
    // Not a Proxmox host: nothing, and a note.
    let plan = m.plan_on(&RecordingHost::new(), &no_secrets).expect("plan");
    assert!(plan.steps.is_empty() && plan.notes[0].contains("not a Proxmox VE host"));
}
