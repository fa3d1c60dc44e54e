//! `via: "pvesh"`: the backend's requests through a `pvesh` program on the node, against the PVE
//! test double. The `pvesh` each test gives the backend is a small script that runs this test
//! binary again as the double's `pvesh` stand-in (`phoenix_pve_double::pvesh`): it reads
//! `pvesh`'s command line, sends the request to the double as the node's root, and answers as
//! `pvesh` does (task logs then the UPID, errors on stderr with a non-zero exit). So this test
//! runs without the libtest harness: `main` is the stand-in when the script starts it, the test
//! runner otherwise (`phoenix_pve_double::pvesh::main_or_tests`).

mod support;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use phoenix_backend::{Backend, Delivery, ErrorKind, GuestConfig};
use phoenix_engine::GuestOutcome;
use phoenix_proxmox::backend::ProxmoxBackend;
use phoenix_proxmox::transport::api::ApiClient;
use phoenix_proxmox::transport::task::Poll;
use phoenix_pve_double::{Fault, FaultKind, PveDouble, PveVersion};
use support::{apply, channel, container, route, start};

/// A `pvesh` for the double in `dir`: this binary as the stand-in.
fn pvesh(double: &PveDouble, dir: &Path) -> PathBuf {
    phoenix_pve_double::pvesh::self_wrapper(double, dir).expect("pvesh script")
}

/// The backend as `via: "pvesh"` builds it, the double's nodes as the node channel.
fn backend(double: &PveDouble, dir: &Path) -> ProxmoxBackend {
    let api = ApiClient::pvesh(pvesh(double, dir)).expect("client");
    ProxmoxBackend::new(api, "pve1", Some(channel(double)))
        .with_poll(Poll { first: Duration::from_millis(5), max: Duration::from_millis(20) })
}

/// The configuration, with the backend section `via: "pvesh"` (no URL, token or TLS).
fn estate(dir: &Path, hypervisor_extra: &str, lxc_configs: &str) -> phoenix_config::Estate {
    let backend = r#"{"type": "proxmox", "node": "pve1", "via": "pvesh"}"#;
    support::estate_with(dir, backend, hypervisor_extra, lxc_configs)
}

const SHARED: &str =
    r#", "shared_volumes": {"models": {"host_path": "/fastData/shared-models", "mounts": {"950": "/models"}}}"#;
const TEMPLATE: &str = "local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst";

fn gpu_estate(dir: &Path) -> phoenix_config::Estate {
    let lxc = [
        container(
            900,
            "gpu-template",
            &format!(
                r#", "template": "{TEMPLATE}", "template_snapshot_name": "ready", "gpu_assignment": "0",
                   "pct_options": ["nesting=1", "keyctl=1"], "lxc_options": ["lxc.cgroup2.devices.allow = c 195:* rwm"]"#
            ),
        ),
        container(
            950,
            "vllm",
            r#", "clone_from_ctid": "900", "gpu_assignment": "1,0", "apparmor_profile": "unconfined""#,
        ),
    ];
    estate(dir, SHARED, &lxc.join(","))
}

fn root_only_settings_go_through_the_api_as_root() {
    for version in PveVersion::ALL {
        let double = start(version);
        double.set_devices("pve1", &["/dev/nvidia0", "/dev/nvidia1", "/dev/nvidiactl", "/dev/nvidia-uvm"]);
        // Whatever the ACLs say, root@pam has every privilege.
        double.set_privileges("/", &[]);
        let dir = tempfile::tempdir().expect("tmp");
        let backend = backend(&double, dir.path());
        assert!(backend.api_is_root());
        assert_eq!(backend.preflight().expect("preflight through pvesh"), version.name());

        let (plan, report) = apply(&backend, &gpu_estate(dir.path()), dir.path());
        assert!(report.outcomes.values().all(|o| *o == GuestOutcome::Created), "{version:?}: {report:#?}");
        let notes = plan.notes.join("\n");
        assert!(notes.contains("the API as root@pam (`pvesh` on the node"), "{notes}");
        for routed in ["950 gpus", "950 mount:/models", "900 flags"] {
            assert!(notes.contains(routed), "{routed}: {notes}");
        }
        assert!(!notes.contains("`pct set`"), "{notes}");
        // Raw lines still have no API key: they are edited in the conf file on the node.
        assert!(notes.contains("edit of /etc/pve/lxc/<id>.conf") && notes.contains("900 lxc.raw"), "{notes}");

        let requests = double.requests();
        let failed: Vec<_> = requests.iter().filter(|r| r.status != 200).collect();
        assert!(failed.is_empty(), "{version:?}: {failed:#?}");
        assert!(requests.iter().all(|r| !r.token), "every request is root's, none a token's");
        // The template is created with its feature flags and configured with its GPU through
        // the API; the clone is the API's, with the device passthrough it copies.
        let create = requests.iter().find(|r| r.method == "POST" && r.path == "/nodes/pve1/lxc").expect("create");
        assert_eq!(create.params.get("features").map(String::as_str), Some("keyctl=1,nesting=1"));
        let put_950: Vec<_> =
            requests.iter().filter(|r| r.method == "PUT" && r.path == "/nodes/pve1/lxc/950/config").collect();
        assert!(
            put_950.iter().any(|r| r.params.get("dev0").map(String::as_str) == Some("/dev/nvidia0,mode=0666")
                && r.params.contains_key("digest")),
            "{put_950:#?}"
        );
        assert!(
            put_950
                .iter()
                .any(|r| r.params.get("mp0").map(String::as_str) == Some("/fastData/shared-models,mp=/models")),
            "{put_950:#?}"
        );
        assert!(requests.iter().any(|r| r.method == "POST" && r.path == "/nodes/pve1/lxc/900/clone"));
        let commands: Vec<String> = double.node_channel().commands().iter().map(|c| c.argv.join(" ")).collect();
        assert!(!commands.iter().any(|c| c.starts_with("pct set") || c.starts_with("pct clone")), "{commands:#?}");

        let conf = double.conf_file(950).expect("950 exists");
        for line in [
            "dev0: /dev/nvidia0,mode=0666",
            "dev1: /dev/nvidia1,mode=0666",
            "dev2: /dev/nvidiactl,mode=0666",
            "mp0: /fastData/shared-models,mp=/models",
            "lxc.apparmor.profile: unconfined",
        ] {
            assert!(conf.lines().any(|l| l == line), "{version:?}: no {line:?} in\n{conf}");
        }

        // Without a node channel, only the GPUs (listed on the node) cannot be planned.
        let alone = ProxmoxBackend::new(ApiClient::pvesh(pvesh(&double, dir.path())).expect("client"), "pve1", None);
        let note =
            route(&alone, "mount:/models", "bind:/fastData/shared-models", &GuestConfig::default()).expect("routed");
        assert!(note.is_some_and(|n| n.starts_with("the API as root@pam")));
        assert!(route(&alone, "flags", "keyctl=1,nesting=1", &GuestConfig::default()).expect("routed").is_some());
        let e = route(&alone, "gpus", "0", &GuestConfig::default()).expect_err("GPUs need the node");
        assert!(e.contains("no node channel"), "{e}");

        let (plan, _) = apply(&backend, &gpu_estate(dir.path()), dir.path());
        assert!(
            plan.is_empty(),
            "{version:?}: {:#?}",
            plan.guests.iter().filter(|g| !g.steps.is_empty()).collect::<Vec<_>>()
        );
    }
}

fn a_failed_task_is_an_error_with_its_log() {
    let double = start(PveVersion::V9);
    let dir = tempfile::tempdir().expect("tmp");
    let backend = backend(&double, dir.path());
    let one = container(960, "web", &format!(r#", "template": "{TEMPLATE}""#));
    let (_, report) = apply(&backend, &estate(dir.path(), "", &one), dir.path());
    assert!(!report.failed(), "{report:#?}");
    // `pvesh` runs the task, prints its log and exits 0 although the task failed: the task's
    // status says so, and the error carries the log's tail.
    double.fail_next_task(
        "snapshot feature is not available",
        &["create snapshot 'before'", "TASK ERROR: snapshot feature is not available"],
    );
    let e = backend.snapshot(960, "before").expect_err("the task failed");
    assert_eq!(e.message, "task vzsnapshot 960 on pve1 failed: snapshot feature is not available");
    assert!(
        e.detail.as_deref().unwrap_or_default().ends_with("TASK ERROR: snapshot feature is not available"),
        "{e:?}"
    );
    backend.snapshot(960, "after").expect("the next task succeeds");
}

fn a_refused_parameter_is_a_clear_permanent_error() {
    let double = start(PveVersion::V8);
    double.expect_refusals();
    let dir = tempfile::tempdir().expect("tmp");
    let api = ApiClient::pvesh(pvesh(&double, dir.path())).expect("client");
    let e = api
        .request("PUT", "/nodes/pve1/lxc/950/config", &[("memory", "1".into()), ("cores", "-2".into())])
        .expect_err("refused");
    assert_eq!((e.kind, e.delivery), (ErrorKind::Permanent, Delivery::NotSent), "{e:?}");
    assert_eq!(e.message, "PUT /nodes/pve1/lxc/950/config: Parameter verification failed.");
    let detail = e.detail.unwrap_or_default();
    assert!(detail.contains("memory: ") && detail.contains("cores: "), "{detail}");
    let last = double.requests().pop().expect("recorded");
    // The value that starts with '-' arrived as it was given.
    assert_eq!((last.status, last.params.get("cores").map(String::as_str)), (400, Some("-2")));
    assert!(!last.token);
}

fn a_lock_timeout_is_retried() {
    let double = start(PveVersion::V9);
    let dir = tempfile::tempdir().expect("tmp");
    let backend = backend(&double, dir.path());
    let with = |memory: u32| {
        let one = container(970, "db", &format!(r#", "template": "{TEMPLATE}""#)).replace("1024", &memory.to_string());
        estate(dir.path(), "", &one)
    };
    let (_, report) = apply(&backend, &with(1024), dir.path());
    assert!(!report.failed(), "{report:#?}");

    // Through pvesh directly: the lock timeout is a transient error.
    double.inject(Fault::new(FaultKind::LockTimeout).on("PUT", "/nodes/pve1/lxc/970/config"));
    let e = ApiClient::pvesh(pvesh(&double, dir.path()))
        .expect("client")
        .request("PUT", "/nodes/pve1/lxc/970/config", &[("memory", "1024".into())])
        .expect_err("lock timeout");
    assert!(e.is_transient() && e.message.contains("can't lock file"), "{e:?}");

    // In an apply: retried, and the change is made.
    double.inject(Fault::new(FaultKind::LockTimeout).on("PUT", "/nodes/pve1/lxc/970/config"));
    let (plan, report) = apply(&backend, &with(2048), dir.path());
    assert_eq!(plan.guests_to_change(), 1);
    assert!(!report.failed(), "{report:#?}");
    assert_eq!(double.pending_faults(), 0);
    let puts: Vec<u16> = double
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" && r.path == "/nodes/pve1/lxc/970/config")
        .map(|r| r.status)
        .collect();
    assert!(puts.ends_with(&[500, 500, 200]), "{puts:?}");
    assert!(double.conf_file(970).expect("970").contains("memory: 2048\n"));
}

const TESTS: &[(&str, fn())] = &[
    ("root_only_settings_go_through_the_api_as_root", root_only_settings_go_through_the_api_as_root),
    ("a_failed_task_is_an_error_with_its_log", a_failed_task_is_an_error_with_its_log),
    ("a_refused_parameter_is_a_clear_permanent_error", a_refused_parameter_is_a_clear_permanent_error),
    ("a_lock_timeout_is_retried", a_lock_timeout_is_retried),
];

fn main() -> ExitCode {
    phoenix_pve_double::pvesh::main_or_tests(TESTS)
}
