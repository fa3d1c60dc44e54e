//! Rollbacks and deletions of snapshots as the double plays them, as Proxmox does
//! (pve-guest-common's `snapshot_rollback` and `snapshot_delete`, run in tasks): what the task
//! refuses (a snapshot that does not exist, a guest locked by another task) fails the task and
//! leaves the guest as it was; a rollback holds the guest's lock while its task runs, stops a
//! running guest, gives it the snapshot's configuration (its description and unused volumes
//! stay) and names the snapshot its `parent`, and starts it again only with `start`; a deletion
//! gives what had the snapshot as `parent` the snapshot's own parent.

mod support;

use std::time::Duration;

use phoenix_proxmox::transport::api::ApiClient;
use phoenix_proxmox::transport::task::{Poll, wait};
use phoenix_pve_double::{PveDouble, PveVersion};
use serde_json::Value;

const POLL: Poll = Poll { first: Duration::from_millis(5), max: Duration::from_millis(20) };

/// How long the double's tasks run: long enough to see a lock held while one runs.
const TASK: Duration = Duration::from_millis(150);

fn start(version: PveVersion) -> (PveDouble, ApiClient) {
    support::start(version, Some(TASK))
}

/// Starts a task and gives its UPID.
fn begin(
    api: &ApiClient,
    method: &str,
    path: &str,
    params: &[(&str, String)],
) -> phoenix_proxmox::transport::upid::Upid {
    let answer = api.request(method, path, params).expect("a task");
    answer.as_str().expect("a UPID").parse().expect("valid UPID")
}

/// Makes a request that starts a task and waits for it; the task's failure is an error.
fn run(api: &ApiClient, method: &str, path: &str, params: &[(&str, String)]) -> Result<(), String> {
    let upid = begin(api, method, path, params);
    wait(api, &upid, POLL, Duration::from_secs(10)).map(|_| ()).map_err(|e| e.to_string())
}

fn config(api: &ApiClient, path: &str) -> Value {
    api.request("GET", &format!("{path}/config"), &[]).expect("config")
}

fn status(api: &ApiClient, path: &str) -> String {
    let s = api.request("GET", &format!("{path}/status/current"), &[]).expect("status");
    s["status"].as_str().unwrap_or_default().to_string()
}

fn names(api: &ApiClient, path: &str) -> Vec<String> {
    let list = api.request("GET", &format!("{path}/snapshot"), &[]).expect("snapshots");
    list.as_array().into_iter().flatten().filter_map(|s| s["name"].as_str().map(str::to_string)).collect()
}

/// The rules on `tree` (`lxc` or `qemu`) for the stopped guest at `at`.
fn rules(api: &ApiClient, tree: &str, at: &str) {
    let what = if tree == "lxc" { "CT" } else { "VM" };
    let set = |memory: &str| api.request("PUT", &format!("{at}/config"), &[("memory", memory.into())]).map(|_| ());
    set("1024").expect("memory");
    run(api, "POST", &format!("{at}/status/start"), &[]).expect("start");
    run(api, "POST", &format!("{at}/snapshot"), &[("snapname", "before".into())]).expect("snapshot");
    assert_eq!(config(api, at)["parent"], "before");
    set("4096").expect("memory");
    api.request("PUT", &format!("{at}/config"), &[("description", "kept".into())]).expect("description");

    // Refused in the task: the task fails, and the guest is as it was.
    let e = run(api, "POST", &format!("{at}/snapshot/missing/rollback"), &[]).expect_err("no such snapshot");
    assert!(e.ends_with("failed: snapshot 'missing' does not exist"), "{e}");
    let e = run(api, "DELETE", &format!("{at}/snapshot/missing"), &[]).expect_err("no such snapshot");
    assert!(e.ends_with("failed: snapshot 'missing' does not exist"), "{e}");
    assert_eq!(config(api, at)["memory"], "4096");

    // The rollback: the lock is held while its task runs, and the guest is stopped.
    let upid = begin(api, "POST", &format!("{at}/snapshot/before/rollback"), &[]);
    assert_eq!(config(api, at)["lock"], "rollback");
    let e = set("2048").expect_err("locked");
    assert!(e.to_string().contains(&format!("{what} is locked (rollback)")), "{e}");
    let e = run(api, "DELETE", &format!("{at}/snapshot/before"), &[]).expect_err("locked");
    assert!(e.ends_with(&format!("failed: {what} is locked (rollback)")), "{e}");
    wait(api, &upid, POLL, Duration::from_secs(10)).expect("rolled back");
    let c = config(api, at);
    assert_eq!(
        (c["memory"].as_str(), c["description"].as_str(), c["parent"].as_str()),
        (Some("1024"), Some("kept"), Some("before"))
    );
    assert!(c.get("lock").is_none(), "{c}");
    assert_eq!(status(api, at), "stopped", "a rollback without `start` leaves the guest stopped");
    // With `start`, it runs again.
    run(api, "POST", &format!("{at}/snapshot/before/rollback"), &[("start", "1".into())]).expect("rollback");
    assert_eq!(status(api, at), "running");

    // Deleting the middle one of three: the later one and the live configuration get its parent.
    run(api, "POST", &format!("{at}/snapshot"), &[("snapname", "middle".into())]).expect("snapshot");
    run(api, "POST", &format!("{at}/snapshot"), &[("snapname", "last".into())]).expect("snapshot");
    run(api, "DELETE", &format!("{at}/snapshot/middle"), &[]).expect("delete");
    assert_eq!(names(api, at), ["before", "last", "current"]);
    assert_eq!(config(api, at)["parent"], "last");
    run(api, "DELETE", &format!("{at}/snapshot/last"), &[]).expect("delete");
    assert_eq!(config(api, at)["parent"], "before");
    run(api, "DELETE", &format!("{at}/snapshot/before"), &[]).expect("delete");
    assert!(config(api, at).get("parent").is_none());
    assert_eq!(status(api, at), "running", "deleting snapshots leaves the guest as it is");
}

#[test]
fn containers_are_rolled_back_and_their_snapshots_deleted_as_proxmox_does() {
    for version in PveVersion::ALL {
        let (_double, api) = start(version);
        let params = [
            ("vmid", "900".to_string()),
            ("ostemplate", "local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst".to_string()),
            ("rootfs", "local-zfs:8".to_string()),
            ("hostname", "ct900".to_string()),
        ];
        run(&api, "POST", "/nodes/pve1/lxc", &params).expect("create");
        rules(&api, "lxc", "/nodes/pve1/lxc/900");
    }
}

#[test]
fn vms_are_rolled_back_and_their_snapshots_deleted_as_proxmox_does() {
    for version in PveVersion::ALL {
        let (_double, api) = start(version);
        let params = [
            ("vmid", "8000".to_string()),
            ("scsi0", "local-zfs:8".to_string()),
            ("ide2", "local-zfs:cloudinit".to_string()),
            ("name", "vm8000".to_string()),
        ];
        run(&api, "POST", "/nodes/pve1/qemu", &params).expect("create");
        rules(&api, "qemu", "/nodes/pve1/qemu/8000");
    }
}
