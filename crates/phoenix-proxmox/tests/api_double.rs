//! The API client against the PVE test double over HTTPS on loopback: certificate pinning and CA
//! verification, token and ticket authentication, and requests refused as Proxmox refuses them.

use phoenix_proxmox::transport::api::{ApiClient, Auth, TlsVerify};
use phoenix_pve_double::{Credentials, PveDouble, PveVersion};

fn credentials() -> Credentials {
    Credentials {
        token: ("phoenix@pve!ci".into(), "0f9e8d7c-6b5a-4321-9abc-def012345678".into()),
        root_password: "correct horse battery staple".into(),
    }
}

fn root() -> Auth {
    Auth::Password { user: "root@pam".into(), password: credentials().root_password }
}

fn token() -> Auth {
    let (id, secret) = credentials().token;
    Auth::Token { id, secret }
}

/// Creates a container through the API and waits for the task.
fn make_container(api: &ApiClient, vmid: &str) {
    let upid: phoenix_proxmox::transport::upid::Upid = api
        .request(
            "POST",
            "/nodes/pve1/lxc",
            &[
                ("vmid", vmid.into()),
                ("ostemplate", "local:vztmpl/debian.tar.zst".into()),
                ("hostname", format!("ct{vmid}")),
            ],
        )
        .expect("create")
        .as_str()
        .expect("UPID")
        .parse()
        .expect("UPID");
    let poll = phoenix_proxmox::transport::task::Poll {
        first: std::time::Duration::from_millis(5),
        max: std::time::Duration::from_millis(20),
    };
    phoenix_proxmox::transport::task::wait(api, &upid, poll, std::time::Duration::from_secs(10)).expect("created");
}

fn client(double: &PveDouble, auth: Auth, verify: TlsVerify) -> ApiClient {
    ApiClient::new("127.0.0.1", double.addr.port(), auth, verify).expect("client")
}

#[test]
fn a_pinned_fingerprint_or_the_ca_is_required_and_a_wrong_one_never_sees_the_token() {
    for version in PveVersion::ALL {
        let double = PveDouble::start(version, credentials());
        let pinned = client(&double, token(), TlsVerify::fingerprint(&double.fingerprint).expect("fingerprint"));
        let v = pinned.request("GET", "/version", &[]).expect("version");
        assert_eq!(v["version"], if version == PveVersion::V8 { "8.4.5" } else { "9.2.3" });
        let by_ca = client(&double, token(), TlsVerify::Ca(double.ca_pem.clone().into_bytes()));
        assert!(by_ca.request("GET", "/version", &[]).is_ok());

        let seen = double.requests().len();
        let wrong = "00:".repeat(31) + "00";
        let e = client(&double, token(), TlsVerify::fingerprint(&wrong).expect("fingerprint"))
            .request("GET", "/version", &[])
            .expect_err("wrong pin");
        assert!(e.message.contains("TLS with 127.0.0.1"), "{}", e.message);
        assert_eq!(e.delivery, phoenix_backend::Delivery::NotSent);
        let other_ca = PveDouble::start(version, credentials());
        assert!(
            client(&double, token(), TlsVerify::Ca(other_ca.ca_pem.clone().into_bytes()))
                .request("GET", "/version", &[])
                .is_err()
        );
        assert_eq!(double.requests().len(), seen, "a request went out over an unverified connection");
    }
}

#[test]
fn requests_are_checked_against_the_schema_and_root_only_settings_need_the_ticket() {
    let double = PveDouble::start(PveVersion::V8, credentials());
    // It is sent requests the schema refuses, on purpose: they stay out of the suite's request log.
    double.expect_refusals();
    let pin = || TlsVerify::fingerprint(&double.fingerprint).expect("fingerprint");
    let api = client(&double, token(), pin());

    make_container(&api, "950");
    let bad_secret = client(&double, Auth::Token { id: "phoenix@pve!ci".into(), secret: "wrong".into() }, pin());
    assert!(bad_secret.request("GET", "/version", &[]).expect_err("401").message.contains("401"));

    let e =
        api.request("PUT", "/nodes/pve1/lxc/950/config", &[("lxc.idmap", "u 0 100000 65536".into())]).expect_err("400");
    assert!(e.detail.as_deref().unwrap_or_default().contains("lxc.idmap: property is not defined in schema"), "{e:?}");

    let e = api
        .request("PUT", "/nodes/pve1/lxc/950/config", &[("dev0", "/dev/nvidia0,mode=0666".into())])
        .expect_err("403");
    assert!(e.message.contains("only allowed for root@pam"), "{}", e.message);
    let ticket = client(&double, root(), pin());
    assert!(ticket.request("PUT", "/nodes/pve1/lxc/950/config", &[("dev0", "/dev/nvidia0,mode=0666".into())]).is_ok());

    // Values with commas, slashes and spaces arrive as they were sent.
    api.request(
        "PUT",
        "/nodes/pve1/lxc/950/config",
        &[("net0", "name=eth0,bridge=vmbr0,ip=10.0.0.5/24".into()), ("description", "a b & c = d".into())],
    )
    .expect("ok");
    let last = double.requests().pop().expect("recorded");
    assert_eq!(last.params.get("net0").map(String::as_str), Some("name=eth0,bridge=vmbr0,ip=10.0.0.5/24"));
    assert_eq!(last.params.get("description").map(String::as_str), Some("a b & c = d"));
}

#[test]
fn tasks_are_polled_until_they_stop_and_failures_carry_the_log() {
    use std::time::Duration;

    use phoenix_proxmox::transport::task::{Poll, wait};
    use phoenix_proxmox::transport::upid::Upid;
    let double = PveDouble::start(PveVersion::V9, credentials());
    let api = client(&double, token(), TlsVerify::fingerprint(&double.fingerprint).expect("fingerprint"));
    for vmid in ["950", "951", "952", "953"] {
        make_container(&api, vmid);
    }
    double.set_task_duration(Duration::from_millis(300));
    let start = |vmid: &str| -> Upid {
        let upid = api.request("POST", &format!("/nodes/pve1/lxc/{vmid}/status/start"), &[]).expect("start");
        upid.as_str().expect("a UPID").parse().expect("valid UPID")
    };
    let upid = start("950");
    assert_eq!(
        (upid.node.as_str(), upid.kind.as_str(), upid.id.as_str(), upid.user.as_str()),
        ("pve1", "vzstart", "950", "phoenix@pve!ci")
    );
    let poll = Poll { first: Duration::from_millis(20), max: Duration::from_millis(200) };
    let done = wait(&api, &upid, poll, Duration::from_secs(10)).expect("ok");
    assert_eq!(done.warnings, 0);
    // Pauses of a quarter of the time run, 20 ms at least: about 11 reads for 300 ms, not 300/20.
    assert!((2..=12).contains(&done.polls), "polled {} times for a 300 ms task", done.polls);

    double.fail_next_task("WARNINGS: 2", &["WARN: something odd", "TASK WARNINGS: 2"]);
    assert_eq!(wait(&api, &start("951"), poll, Duration::from_secs(10)).expect("warnings are success").warnings, 2);

    double.fail_next_task(
        "command 'lxc-start -n 952' failed: exit code 1",
        &[
            "run_buffer: 571 Script exited with status 1",
            "lxc_init: 845 Failed to run lxc.hook.pre-start",
            "TASK ERROR: startup for container '952' failed",
        ],
    );
    let e = wait(&api, &start("952"), poll, Duration::from_secs(10)).expect_err("failed task");
    assert!(e.message.contains("task vzstart 952 on pve1 failed: command 'lxc-start -n 952' failed"), "{}", e.message);
    assert!(
        e.detail.as_deref().unwrap_or_default().contains("TASK ERROR: startup for container '952' failed"),
        "{e:?}"
    );

    double.set_task_duration(Duration::from_secs(60));
    let e = wait(&api, &start("953"), poll, Duration::from_millis(300)).expect_err("timeout");
    assert!(e.is_transient() && e.message.contains("still runs"), "{}", e.message);
    // Every request the client sent was valid for the schema.
    assert!(double.requests().iter().all(|r| r.status == 200), "{:?}", double.requests());
}

#[test]
fn containers_are_kept_as_proxmox_keeps_them() {
    use std::time::Duration;

    use phoenix_proxmox::propstring::{Net, Property};
    use phoenix_proxmox::transport::task::{Poll, wait};
    use phoenix_proxmox::transport::upid::Upid;
    let double = PveDouble::start(PveVersion::V8, credentials());
    double.set_task_duration(Duration::from_millis(150));
    let api = client(&double, token(), TlsVerify::fingerprint(&double.fingerprint).expect("fingerprint"));
    let poll = Poll { first: Duration::from_millis(10), max: Duration::from_millis(50) };
    let run = |method: &str, path: &str, params: &[(&str, String)]| {
        let upid: Upid =
            api.request(method, path, params).expect("request").as_str().expect("UPID").parse().expect("UPID");
        wait(&api, &upid, poll, Duration::from_secs(10)).expect("task")
    };
    run(
        "POST",
        "/nodes/pve1/lxc",
        &[
            ("vmid", "900".into()),
            ("ostemplate", "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst".into()),
            ("hostname", "tpl".into()),
            ("rootfs", "local-zfs:8".into()),
            ("net0", "name=eth0,bridge=vmbr0,ip=10.0.0.10/24".into()),
            ("tags", "Web;db".into()),
        ],
    );
    let config = api.request("GET", "/nodes/pve1/lxc/900/config", &[]).expect("config");
    assert_eq!(config["rootfs"], "local-zfs:subvol-900-disk-0,size=8G");
    assert_eq!(config["tags"], "db;web");
    let net = Net::parse(config["net0"].as_str().expect("net0")).expect("net0 parses");
    assert!(net.hwaddr.as_deref().is_some_and(|m| m.starts_with("BC:24:11:")), "{net:?}");

    // Updates carry the digest; a stale one is refused.
    let digest = config["digest"].as_str().expect("digest").to_string();
    api.request("PUT", "/nodes/pve1/lxc/900/config", &[("cores", "2".into()), ("digest", digest.clone())])
        .expect("update");
    let e = api
        .request("PUT", "/nodes/pve1/lxc/900/config", &[("cores", "4".into()), ("digest", digest)])
        .expect_err("stale digest");
    assert!(e.message.contains("detected modified configuration"), "{}", e.message);

    // Clones need the snapshot, get new MACs, and a second clone of a busy template times out.
    let e = api
        .request("POST", "/nodes/pve1/lxc/900/clone", &[("newid", "901".into()), ("snapname", "ready".into())])
        .expect_err("no snapshot");
    assert!(e.message.contains("snapshot 'ready' does not exist") && !e.is_transient(), "{e:?}");
    run("POST", "/nodes/pve1/lxc/900/snapshot", &[("snapname", "ready".into())]);
    double.set_task_duration(Duration::from_millis(400));
    let first: Upid = api
        .request(
            "POST",
            "/nodes/pve1/lxc/900/clone",
            &[("newid", "901".into()), ("snapname", "ready".into()), ("hostname", "web-1".into())],
        )
        .expect("clone")
        .as_str()
        .expect("UPID")
        .parse()
        .expect("UPID");
    let e = api
        .request("POST", "/nodes/pve1/lxc/900/clone", &[("newid", "902".into()), ("snapname", "ready".into())])
        .expect_err("locked");
    assert!(e.is_transient() && e.message.contains("CT is locked (disk)"), "{e:?}");
    wait(&api, &first, poll, Duration::from_secs(10)).expect("clone task");
    let clone = api.request("GET", "/nodes/pve1/lxc/901/config", &[]).expect("clone config");
    assert_eq!(clone["hostname"], "web-1");
    assert_ne!(
        Net::parse(clone["net0"].as_str().expect("net0")).expect("net0").hwaddr,
        net.hwaddr,
        "the clone kept the template's MAC"
    );

    // The whole cluster in one call; guests are found on their own node only, and a node that is
    // not in the cluster is not found at all.
    let resources = api.request("GET", "/cluster/resources", &[("type", "vm".into())]).expect("resources");
    assert_eq!(resources.as_array().map(Vec::len), Some(2));
    let e = api.request("GET", "/nodes/pve2/lxc/900/config", &[]).expect_err("unknown node");
    assert!(e.message.contains("hostname lookup 'pve2' failed"), "{}", e.message);
    double.add_node("pve2");
    assert!(
        api.request("GET", "/nodes/pve2/lxc/900/config", &[])
            .expect_err("wrong node")
            .message
            .contains("does not exist")
    );

    // A running container is not destroyed.
    double.set_task_duration(Duration::from_millis(10));
    run("POST", "/nodes/pve1/lxc/901/status/start", &[]);
    assert!(
        api.request("DELETE", "/nodes/pve1/lxc/901", &[("purge", "1".into())])
            .expect_err("running")
            .message
            .contains("is running")
    );
    run("POST", "/nodes/pve1/lxc/901/status/stop", &[]);
    run("DELETE", "/nodes/pve1/lxc/901", &[("purge", "1".into())]);
    let left = api.request("GET", "/cluster/resources", &[("type", "vm".into())]).expect("resources");
    assert_eq!(left.as_array().map(Vec::len), Some(1));
}

#[test]
fn the_root_ticket_is_asked_for_once_renewed_before_it_expires_and_a_wrong_password_is_named() {
    let double = PveDouble::start(PveVersion::V9, credentials());
    let pin = || TlsVerify::fingerprint(&double.fingerprint).expect("fingerprint");
    double.set_ticket_lifetime(std::time::Duration::from_millis(900));
    let api = client(&double, token(), pin());
    make_container(&api, "951");
    let root = client(&double, root(), pin()).with_ticket_renewal(std::time::Duration::from_millis(300));
    assert!(root.is_root() && !api.is_root());

    // Requests over two ticket lifetimes: renewed with itself, never refused, one login.
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_millis(2000) {
        root.request("PUT", "/nodes/pve1/lxc/951/config", &[("features", "nesting=1,keyctl=1".into())])
            .expect("a root-only setting through the ticket");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (logins, renewals) = double.ticket_logins();
    assert_eq!(logins, 1, "the password is used once");
    assert!(renewals >= 4, "renewed {renewals} times in 2 s with renewal after 300 ms");
    let sent: Vec<_> = double.requests().into_iter().filter(|r| r.path == "/nodes/pve1/lxc/951/config").collect();
    assert!(sent.iter().all(|r| r.status == 200), "a request was refused: {sent:?}");

    // A ticket the server no longer accepts is replaced by a new login, once.
    double.set_ticket_lifetime(std::time::Duration::ZERO);
    let fresh = client(&double, self::root(), pin());
    let e = fresh.request("GET", "/nodes/pve1/lxc/951/config", &[]).expect_err("every ticket refused");
    assert!(e.message.contains("401 invalid PVE ticket"), "{}", e.message);
    assert_eq!(double.ticket_logins().0, logins + 2, "one login for the refused request, one for its retry");

    let wrong = client(&double, Auth::Password { user: "root@pam".into(), password: "guess".into() }, pin());
    let e = wrong.request("GET", "/version", &[]).expect_err("refused");
    assert!(e.message.contains("logging in as root@pam failed: 401"), "{}", e.message);
    assert!(!format!("{e:?}").contains("guess"), "the password is never shown");
}
