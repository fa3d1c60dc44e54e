//! The `pvesh-double` binary: `pvesh`'s command line sent to a double as the node's root, with
//! `pvesh`'s output — a result as one JSON line, a task's log before its UPID (the task stopped
//! by then), errors on stderr with a non-zero exit — and the requests checked and recorded as
//! root@pam's.

use std::process::{Command, Output};
use std::time::Duration;

use phoenix_pve_double::{Credentials, PveDouble, PveVersion};

fn double(version: PveVersion) -> PveDouble {
    let double = PveDouble::start(
        version,
        Credentials { token: ("phoenix@pve!ci".into(), "s".into()), root_password: "root-pw".into() },
    );
    double.set_task_duration(Duration::from_millis(100));
    double
}

fn pvesh(env: &[(String, String)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pvesh-double")).args(args).envs(env.iter().cloned()).output().expect("runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn results_tasks_and_root_privileges_as_pvesh_shows_them() {
    let double = double(PveVersion::V9);
    let env = double.pvesh_env();
    let out = pvesh(&env, &["get", "/version", "--output-format", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let version: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!(version["version"], "9.2.3");

    // Root has every privilege, whatever the ACLs say.
    double.set_privileges("/", &[]);
    let out = pvesh(&env, &["get", "/access/permissions", "--output-format=json"]);
    let permissions: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(permissions["/"]["VM.Allocate"], 1, "{permissions}");

    let out = pvesh(
        &env,
        &[
            "create",
            "/nodes/pve1/lxc",
            "--vmid=950",
            "--ostemplate=local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst",
            "--hostname=ct950",
            "--features=nesting=1,keyctl=1",
            "--output-format",
            "json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[..lines.len() - 1], ["vzcreate 950", "TASK OK"], "{stdout}");
    let upid: String = serde_json::from_str(lines[lines.len() - 1]).expect("the UPID as a JSON string");
    assert!(upid.starts_with("UPID:pve1:") && upid.contains(":vzcreate:950:root@pam:"), "{upid}");
    // The task had stopped when it returned.
    let out = pvesh(&env, &["get", &format!("/nodes/pve1/tasks/{upid}/status"), "--output-format", "json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!((status["status"].as_str(), status["exitstatus"].as_str()), (Some("stopped"), Some("OK")));

    // A failed task: exit 0, its log printed, its status failed.
    double.fail_next_task("command 'lxc-start -n 950' failed: exit code 1", &["TASK ERROR: startup failed"]);
    let out = pvesh(&env, &["create", "/nodes/pve1/lxc/950/status/start", "--output-format", "json"]);
    assert!(out.status.success());
    assert!(text(&out.stdout).starts_with("TASK ERROR: startup failed\n\"UPID:"), "{}", text(&out.stdout));

    // Root may set what a token may not (device passthrough); a null result prints nothing.
    let out =
        pvesh(&env, &["set", "/nodes/pve1/lxc/950/config", "--dev0=/dev/nvidia0,mode=0666", "--output-format", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    assert!(double.conf_file(950).expect("950").contains("dev0: /dev/nvidia0,mode=0666\n"));
    let requests = double.requests();
    assert!(requests.iter().all(|r| !r.token && r.status == 200), "{requests:#?}");
    let create = requests.iter().find(|r| r.method == "POST" && r.path == "/nodes/pve1/lxc").expect("create");
    assert_eq!(create.params.get("features").map(String::as_str), Some("nesting=1,keyctl=1"));
}

#[test]
fn errors_go_to_stderr_with_a_non_zero_exit() {
    let double = double(PveVersion::V8);
    double.expect_refusals();
    let env = double.pvesh_env();
    let out = pvesh(&env, &["set", "/nodes/pve1/lxc/950/config", "--memory=1", "--output-format", "json"]);
    assert_eq!(out.status.code(), Some(255));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("400 Parameter verification failed.\nmemory: "), "{stderr}");
    assert!(out.stdout.is_empty());

    double.inject(phoenix_pve_double::Fault::new(phoenix_pve_double::FaultKind::LockTimeout));
    let out = pvesh(&env, &["set", "/nodes/pve1/lxc/950/config", "--memory=512", "--output-format", "json"]);
    assert_eq!(out.status.code(), Some(255));
    assert_eq!(text(&out.stderr), "can't lock file '/run/lock/lxc/pve-config-950.lock' - got timeout\n");

    // Without the double's local-root secret, nobody is root.
    let wrong: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| {
            if k == phoenix_pve_double::pvesh::ROOT_ENV { (k.clone(), "guess".into()) } else { (k.clone(), v.clone()) }
        })
        .collect();
    let out = pvesh(&wrong, &["get", "/version", "--output-format", "json"]);
    assert_eq!((out.status.code(), text(&out.stderr).as_str()), (Some(255), "401 authentication failure\n"));

    let out = pvesh(&env, &["get", "/version"]);
    assert_eq!(out.status.code(), Some(2), "only JSON output is played");
    let statuses: Vec<u16> = double.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [400, 500, 401]);
}
