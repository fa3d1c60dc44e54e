//! What goes wrong on a real cluster, played by the double and seen through the driver's client:
//! latency, injected faults (lock timeouts, proxy errors, connections dropped before or after the
//! request took effect), lock contention while tasks run, and several nodes.

mod support;

use std::time::{Duration, Instant};

use phoenix_backend::Delivery;
use phoenix_proxmox::transport::api::ApiClient;
use phoenix_proxmox::transport::task::{Poll, wait};
use phoenix_proxmox::transport::upid::Upid;
use phoenix_pve_double::{Fault, FaultKind, PveDouble, PveVersion};
use serde_json::Value;

fn start(version: PveVersion) -> (PveDouble, ApiClient) {
    support::start(version, None)
}

const POLL: Poll = Poll { first: Duration::from_millis(5), max: Duration::from_millis(20) };

fn upid(answer: Value) -> Upid {
    answer.as_str().expect("a UPID").parse().expect("valid UPID")
}

fn create(api: &ApiClient, node: &str, vmid: &str) -> Result<Value, phoenix_backend::BackendError> {
    api.request(
        "POST",
        &format!("/nodes/{node}/lxc"),
        &[
            ("vmid", vmid.into()),
            ("ostemplate", "local:vztmpl/debian.tar.zst".into()),
            ("hostname", format!("ct{vmid}")),
        ],
    )
}

fn create_and_wait(api: &ApiClient, node: &str, vmid: &str) {
    wait(api, &upid(create(api, node, vmid).expect("create")), POLL, Duration::from_secs(10)).expect("created");
}

fn hostname(api: &ApiClient, node: &str, vmid: &str) -> Option<String> {
    let config = api.request("GET", &format!("/nodes/{node}/lxc/{vmid}/config"), &[]).ok()?;
    config["hostname"].as_str().map(str::to_string)
}

#[test]
fn every_answer_comes_after_the_latency_and_concurrent_requests_overlap() {
    let (double, api) = start(PveVersion::V8);
    let t = Instant::now();
    api.request("GET", "/version", &[]).expect("version");
    let fast = t.elapsed();
    let latency = Duration::from_millis(400);
    double.set_latency(latency);
    let t = Instant::now();
    api.request("GET", "/version", &[]).expect("version");
    assert!(t.elapsed() >= latency, "answered in {:?} with a latency of {latency:?}", t.elapsed());

    // Four requests at once take about one latency, not four: the double's state is not held
    // while a request waits.
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| api.request("GET", "/nodes/pve1/storage", &[]).expect("storage"));
        }
    });
    let together = t.elapsed();
    assert!(together >= latency && together < latency * 2 + fast * 4, "four concurrent requests took {together:?}");

    double.set_latency(Duration::ZERO);
    let t = Instant::now();
    api.request("GET", "/version", &[]).expect("version");
    assert!(t.elapsed() < latency, "the latency stayed: {:?}", t.elapsed());
}

#[test]
fn an_injected_lock_timeout_refuses_the_matching_request_once() {
    let (double, api) = start(PveVersion::V9);
    create_and_wait(&api, "pve1", "950");
    double.inject(Fault::new(FaultKind::LockTimeout).on("PUT", "/nodes/pve1/lxc/950"));
    assert_eq!(double.pending_faults(), 1);
    // A request that does not match goes through, and leaves the fault pending.
    assert_eq!(hostname(&api, "pve1", "950").as_deref(), Some("ct950"));
    assert_eq!(double.pending_faults(), 1);
    let e = api.request("PUT", "/nodes/pve1/lxc/950/config", &[("hostname", "web".into())]).expect_err("lock timeout");
    assert!(e.message.contains("500 can't lock file '/run/lock/lxc/pve-config-950.lock' - got timeout"), "{e:?}");
    assert!(e.is_transient(), "{e:?}");
    assert_eq!(hostname(&api, "pve1", "950").as_deref(), Some("ct950"), "the refused update was applied");
    assert_eq!(double.pending_faults(), 0);
    api.request("PUT", "/nodes/pve1/lxc/950/config", &[("hostname", "web".into())]).expect("the retry");
    assert_eq!(hostname(&api, "pve1", "950").as_deref(), Some("web"));
    let statuses: Vec<u16> = double.requests().iter().map(|r| r.status).collect();
    assert!(statuses.ends_with(&[200, 500, 200, 200, 200]), "{statuses:?}");
}

#[test]
fn injected_proxy_errors_apply_as_many_times_as_asked_and_apply_nothing() {
    let (double, api) = start(PveVersion::V8);
    double.inject(Fault::new(FaultKind::Status(503)).on("POST", "/nodes/pve1/lxc").times(2));
    double.inject(Fault::new(FaultKind::Status(502)));
    for expected in ["503 Service Unavailable", "503 Service Unavailable", "502 Bad Gateway"] {
        let e = create(&api, "pve1", "950").expect_err("proxy error");
        assert!(e.message.contains(expected) && e.is_transient(), "{expected}: {e:?}");
        assert_eq!(e.delivery, Delivery::MaybeApplied);
    }
    assert!(hostname(&api, "pve1", "950").is_none(), "a refused create was applied");
    create_and_wait(&api, "pve1", "950");
    assert_eq!(double.pending_faults(), 0);
}

#[test]
fn a_connection_dropped_before_handling_is_maybe_applied_but_was_not() {
    let (double, api) = start(PveVersion::V9);
    double.inject(Fault::new(FaultKind::DropRequest).on("POST", "/nodes/pve1/lxc"));
    let e = create(&api, "pve1", "950").expect_err("dropped");
    assert_eq!(e.delivery, Delivery::MaybeApplied, "{e:?}");
    let last = double.requests().pop().expect("recorded");
    assert_eq!((last.method.as_str(), last.status, last.answered), ("POST", 0, false));
    // Observing shows it was not applied; the retry creates it.
    assert!(
        api.request("GET", "/cluster/resources", &[("type", "vm".into())])
            .expect("list")
            .as_array()
            .is_some_and(Vec::is_empty)
    );
    create_and_wait(&api, "pve1", "950");
    assert_eq!(hostname(&api, "pve1", "950").as_deref(), Some("ct950"));
}

#[test]
fn an_answer_dropped_after_handling_leaves_the_effect_for_the_retry_to_find() {
    let (double, api) = start(PveVersion::V8);
    double.inject(Fault::new(FaultKind::DropAnswer).on("POST", "/nodes/pve1/lxc"));
    let e = create(&api, "pve1", "950").expect_err("answer dropped");
    assert_eq!(e.delivery, Delivery::MaybeApplied, "{e:?}");
    let last = double.requests().pop().expect("recorded");
    assert_eq!((last.status, last.answered), (200, false));
    let e = create(&api, "pve1", "950").expect_err("the blind retry");
    assert!(e.message.contains("CT 950 already exists on node 'pve1'"), "{e:?}");
    assert_eq!(hostname(&api, "pve1", "950").as_deref(), Some("ct950"), "observing finds it");
}

#[test]
fn api_calls_share_one_connection_and_a_dropped_answer_is_not_sent_twice() {
    let (double, api) = start(PveVersion::V9);
    for _ in 0..5 {
        api.request("GET", "/version", &[]).expect("version");
    }
    api.request("GET", "/nodes/pve1/storage", &[]).expect("storage");
    create_and_wait(&api, "pve1", "950");
    assert_eq!(double.connections(), 1, "one connection for all the calls");
    // Dropped on the kept connection after it was applied: the client must not send it again.
    double.inject(Fault::new(FaultKind::DropAnswer).on("POST", "/nodes/pve1/lxc"));
    let posts = || double.requests().iter().filter(|r| r.method == "POST").count();
    let before = posts();
    let e = create(&api, "pve1", "951").expect_err("answer dropped");
    assert_eq!(e.delivery, Delivery::MaybeApplied, "{e:?}");
    assert_eq!(posts(), before + 1, "sent once");
    assert_eq!(hostname(&api, "pve1", "951").as_deref(), Some("ct951"), "on a new connection");
    assert_eq!(double.connections(), 2);
}

#[test]
fn locks_held_by_running_tasks_refuse_edits_and_clones() {
    let (double, api) = start(PveVersion::V9);
    create_and_wait(&api, "pve1", "900");
    wait(
        &api,
        &upid(api.request("POST", "/nodes/pve1/lxc/900/snapshot", &[("snapname", "ready".into())]).expect("snap")),
        POLL,
        Duration::from_secs(10),
    )
    .expect("snapshot");
    double.set_task_duration(Duration::from_secs(30));
    let clone = |newid: &str| {
        api.request("POST", "/nodes/pve1/lxc/900/clone", &[("newid", newid.into()), ("snapname", "ready".into())])
    };
    clone("901").expect("the first clone");
    let e = clone("902").expect_err("source locked");
    assert!(e.message.contains("CT is locked (disk)"), "{e:?}");
    assert!(e.is_transient());
    let e = api.request("PUT", "/nodes/pve1/lxc/901/config", &[("cores", "2".into())]).expect_err("clone locked");
    assert!(e.message.contains("CT is locked (create)") && e.is_transient(), "{e:?}");
    let e = api.request("PUT", "/nodes/pve1/lxc/900/config", &[("cores", "2".into())]).expect_err("source locked");
    assert!(e.message.contains("CT is locked (disk)"), "{e:?}");
}

/// pve-container's `check_lock`: a container another task holds (a backup) is not resized or
/// destroyed (refused at once), and its start, stop, shutdown and snapshot fail in their task;
/// the container is left as it was.
#[test]
fn a_locked_container_is_not_started_stopped_resized_snapshotted_or_destroyed() {
    let (double, api) = start(PveVersion::V9);
    create_and_wait(&api, "pve1", "900");
    let task = |method: &str, path: &str, params: &[(&str, String)]| {
        let answer = api.request(method, &format!("/nodes/pve1/lxc/900{path}"), params)?;
        wait(&api, &upid(answer), POLL, Duration::from_secs(10)).map(|_| ())
    };
    double.lock_guest(900, "backup", Duration::from_secs(3600));
    for (method, path, params) in [
        ("POST", "/status/start", vec![]),
        ("POST", "/snapshot", vec![("snapname", "before".to_string())]),
        ("PUT", "/resize", vec![("disk", "rootfs".to_string()), ("size", "+1G".to_string())]),
        ("DELETE", "", vec![]),
    ] {
        let e = task(method, path, &params).expect_err("locked");
        assert!(e.message.ends_with("CT is locked (backup)"), "{method} {path}: {e:?}");
    }
    let names = api.request("GET", "/nodes/pve1/lxc/900/snapshot", &[]).expect("snapshots");
    assert_eq!(names.as_array().map(Vec::len), Some(1), "only `current`: {names}");
    let status = || api.request("GET", "/nodes/pve1/lxc/900/status/current", &[]).expect("status")["status"].clone();
    assert_eq!(status(), "stopped");
    double.lock_guest(900, "backup", Duration::ZERO);
    task("POST", "/status/start", &[]).expect("started once unlocked");
    double.lock_guest(900, "backup", Duration::from_secs(3600));
    for action in ["/status/shutdown", "/status/stop"] {
        let e = task("POST", action, &[]).expect_err("locked");
        assert!(e.message.ends_with("CT is locked (backup)"), "{action}: {e:?}");
    }
    assert_eq!(status(), "running");
}

#[test]
fn a_cluster_of_several_nodes() {
    let (double, api) = start(PveVersion::V8);
    let names = |v: Value, key: &str| -> Vec<String> {
        v.as_array().into_iter().flatten().filter_map(|n| n[key].as_str().map(str::to_string)).collect()
    };
    // A single node is not a cluster: /cluster/status shows the node alone.
    let status = api.request("GET", "/cluster/status", &[]).expect("status");
    assert_eq!(status.as_array().map(Vec::len), Some(1), "{status}");
    assert_eq!((status[0]["type"].as_str(), status[0]["nodeid"].as_u64()), (Some("node"), Some(0)));
    let e = create(&api, "pve2", "950").expect_err("unknown node");
    assert!(e.message.contains("hostname lookup 'pve2' failed - failed to get address info for: pve2"), "{e:?}");
    assert!(api.request("GET", "/nodes/pve2/storage", &[]).is_err());

    double.add_node("pve2");
    double.add_node("pve3");
    let nodes = api.request("GET", "/nodes", &[]).expect("nodes");
    assert_eq!(names(nodes.clone(), "node"), ["pve1", "pve2", "pve3"]);
    assert!(nodes.as_array().into_iter().flatten().all(|n| n["status"] == "online"), "{nodes}");
    let status = api.request("GET", "/cluster/status", &[]).expect("status");
    assert_eq!((status[0]["type"].as_str(), status[0]["nodes"].as_u64()), (Some("cluster"), Some(3)), "{status}");
    assert_eq!(names(status.clone(), "name")[1..], ["pve1", "pve2", "pve3"]);
    assert_eq!(status[1]["local"], 1);
    assert_eq!(status[2]["local"], 0);

    create_and_wait(&api, "pve2", "950");
    assert_eq!(hostname(&api, "pve2", "950").as_deref(), Some("ct950"));
    assert!(hostname(&api, "pve1", "950").is_none(), "found on another node");
    wait(
        &api,
        &upid(
            api.request("POST", "/nodes/pve2/lxc/950/clone", &[("newid", "951".into()), ("target", "pve3".into())])
                .expect("clone"),
        ),
        POLL,
        Duration::from_secs(10),
    )
    .expect("cloned");
    assert_eq!(hostname(&api, "pve3", "951").as_deref(), Some("ct950"));
    assert!(hostname(&api, "pve2", "951").is_none(), "the clone stayed on the source's node");
    let e = api
        .request("POST", "/nodes/pve2/lxc/950/clone", &[("newid", "952".into()), ("target", "pve9".into())])
        .expect_err("unknown target");
    assert!(e.message.contains("no such cluster node 'pve9'"), "{e:?}");

    let vms = api.request("GET", "/cluster/resources", &[("type", "vm".into())]).expect("resources");
    let on: Vec<(String, String)> = vms
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| (r["id"].as_str().unwrap_or_default().into(), r["node"].as_str().unwrap_or_default().into()))
        .collect();
    assert_eq!(on, [("lxc/950".to_string(), "pve2".to_string()), ("lxc/951".into(), "pve3".into())]);
    let all = api.request("GET", "/cluster/resources", &[]).expect("resources");
    assert_eq!(names(all, "id"), ["lxc/950", "lxc/951", "node/pve1", "node/pve2", "node/pve3"]);
}
