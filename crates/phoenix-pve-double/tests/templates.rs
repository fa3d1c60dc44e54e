//! Templates as the double plays them, as Proxmox does (pve-container's and qemu-server's
//! `template` and `clone`): only a stopped guest without snapshots becomes a template, and only
//! once; the answer comes before the conversion is done (a container's `template: 1` is written by
//! the task, a VM's disks become base volumes in a task); a template never starts and takes no
//! snapshot; it is cloned linked unless `full`, a linked clone keeps its base volume from being
//! destroyed, and only a template is cloned linked.

mod support;

use std::time::Duration;

use phoenix_proxmox::transport::api::ApiClient;
use phoenix_proxmox::transport::task::{Poll, wait};
use phoenix_pve_double::{PveDouble, PveVersion};
use serde_json::Value;

const POLL: Poll = Poll { first: Duration::from_millis(5), max: Duration::from_millis(20) };

/// How long the double's tasks run: long enough to see a conversion still going on.
const TASK: Duration = Duration::from_millis(150);

fn start(version: PveVersion) -> (PveDouble, ApiClient) {
    support::start(version, Some(TASK))
}

/// Makes a request that starts a task and waits for it; the task's failure is an error.
fn run(api: &ApiClient, method: &str, path: &str, params: &[(&str, String)]) -> Result<(), String> {
    let answer = api.request(method, path, params).map_err(|e| e.to_string())?;
    let upid = answer.as_str().expect("a UPID").parse().expect("valid UPID");
    wait(api, &upid, POLL, Duration::from_secs(10))
        .map(|_| ())
        .map_err(|e| format!("{e}\n{}", e.detail.clone().unwrap_or_default()))
}

fn refused(api: &ApiClient, method: &str, path: &str, params: &[(&str, String)]) -> String {
    match api.request(method, path, params) {
        Ok(v) => panic!("{method} {path} was not refused: {v}"),
        Err(e) => e.to_string(),
    }
}

fn config(api: &ApiClient, path: &str) -> Value {
    api.request("GET", &format!("{path}/config"), &[]).expect("config")
}

/// Checks the rules on `tree` (`lxc` or `qemu`), with guests made by `create(id)`; `disk` is the
/// key of the guest's disk, `own`/`base` the volume names before and after conversion.
fn rules(api: &ApiClient, tree: &str, create: &dyn Fn(u32), disk: &str, name: &dyn Fn(&str, u32) -> String) {
    let ct = tree == "lxc";
    let at = |id: u32| format!("/nodes/pve1/{tree}/{id}");
    for id in [900, 901] {
        create(id);
    }
    // Running, or with snapshots: refused.
    run(api, "POST", &format!("{}/status/start", at(900)), &[]).expect("start");
    let e = refused(api, "POST", &format!("{}/template", at(900)), &[]);
    assert!(e.contains("to template if") && e.contains("is running"), "{e}");
    run(api, "POST", &format!("{}/status/stop", at(900)), &[]).expect("stop");
    run(api, "POST", &format!("{}/snapshot", at(901)), &[("snapname", "s1".into())]).expect("snapshot");
    let e = refused(api, "POST", &format!("{}/template", at(901)), &[]);
    assert!(e.contains("unable to create template, because") && e.contains("contains snapshots"), "{e}");
    // Only a template is cloned linked.
    let e = refused(api, "POST", &format!("{}/clone", at(901)), &[("newid", "950".into()), ("full", "0".into())]);
    assert!(e.contains("Linked clone feature"), "{e}");

    // Converted: the answer comes first, the conversion after it; a clone meanwhile waits.
    assert_eq!(api.request("POST", &format!("{}/template", at(900)), &[]).expect("template"), Value::Null);
    let e = refused(api, "POST", &format!("{}/clone", at(900)), &[("newid", "902".into())]);
    assert!(e.contains("got timeout"), "{e}");
    std::thread::sleep(TASK + Duration::from_millis(100));
    let c = config(api, &at(900));
    assert_eq!(c["template"], "1", "{c}");
    assert!(c[disk].as_str().is_some_and(|d| d.contains(&name("base", 900))), "{c}");
    let e = refused(api, "POST", &format!("{}/template", at(900)), &[]);
    assert!(e.contains("you can't convert a template to a template"), "{e}");

    // A template never starts and takes no snapshot.
    let e = if ct {
        run(api, "POST", &format!("{}/status/start", at(900)), &[]).expect_err("a template starts")
    } else {
        refused(api, "POST", &format!("{}/status/start", at(900)), &[])
    };
    assert!(e.contains("if it's a template"), "{e}");
    // A container's snapshot is refused in its task (pve-guest-common's `__snapshot_prepare`).
    let e = if ct {
        run(api, "POST", &format!("{}/snapshot", at(900)), &[("snapname", "s2".into())]).expect_err("snapshot")
    } else {
        refused(api, "POST", &format!("{}/snapshot", at(900)), &[("snapname", "s2".into())])
    };
    assert!(e.contains("you can't take a snapshot if it's a template"), "{e}");
    // It has no snapshot to clone from.
    let e = refused(api, "POST", &format!("{}/clone", at(900)), &[("newid", "902".into()), ("snapname", "s1".into())]);
    assert!(e.contains("snapshot 's1' does not exist"), "{e}");

    // Cloned linked by default, in full when asked; a linked clone keeps its base volume.
    run(api, "POST", &format!("{}/clone", at(900)), &[("newid", "902".into())]).expect("linked clone");
    let linked = config(api, &at(902));
    let volume = linked[disk].as_str().unwrap_or_default().split(',').next().unwrap_or_default().to_string();
    assert!(volume.ends_with(&format!("{}/{}", name("base", 900), name("own", 902))), "{volume}");
    assert!(linked.get("template").is_none(), "a clone is no template: {linked}");
    let e = refused(
        api,
        "POST",
        &format!("{}/clone", at(900)),
        &[("newid", "903".into()), ("full", "0".into()), ("storage", "local-zfs".into())],
    );
    assert!(e.contains("parameter 'storage' not allowed for linked clones"), "{e}");
    run(api, "POST", &format!("{}/clone", at(900)), &[("newid", "903".into()), ("full", "1".into())]).expect("clone");
    let full = config(api, &at(903));
    let volume = full[disk].as_str().unwrap_or_default().split(',').next().unwrap_or_default().to_string();
    assert_eq!(volume, format!("local-zfs:{}", name("own", 903)));
    let e = refused(api, "DELETE", &at(900), &[]);
    assert!(e.contains("is still in use by linked cloned"), "{e}");
    run(api, "DELETE", &at(902), &[]).expect("destroy the linked clone");
    run(api, "DELETE", &at(900), &[]).expect("destroy the template");
}

#[test]
fn containers_become_templates_as_proxmox_makes_them() {
    for version in PveVersion::ALL {
        let (_double, api) = start(version);
        let create = |id: u32| {
            let params = [
                ("vmid", id.to_string()),
                ("ostemplate", "local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst".to_string()),
                ("rootfs", "local-zfs:8".to_string()),
                ("hostname", format!("ct{id}")),
            ];
            run(&api, "POST", "/nodes/pve1/lxc", &params).expect("create");
        };
        let name = |kind: &str, id: u32| match kind {
            "base" => format!("basevol-{id}-disk-0"),
            _ => format!("subvol-{id}-disk-0"),
        };
        rules(&api, "lxc", &create, "rootfs", &name);
    }
}

#[test]
fn vms_become_templates_as_proxmox_makes_them() {
    for version in PveVersion::ALL {
        let (_double, api) = start(version);
        let create = |id: u32| {
            let params = [
                ("vmid", id.to_string()),
                ("scsi0", "local-zfs:8".to_string()),
                ("ide2", "local-zfs:cloudinit".to_string()),
                ("name", format!("vm{id}")),
            ];
            run(&api, "POST", "/nodes/pve1/qemu", &params).expect("create");
        };
        let name = |kind: &str, id: u32| match kind {
            "base" => format!("base-{id}-disk-0"),
            _ => format!("vm-{id}-disk-0"),
        };
        rules(&api, "qemu", &create, "scsi0", &name);
    }
}
