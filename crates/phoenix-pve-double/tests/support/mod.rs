//! What the double's own tests share: a double of one Proxmox version and an API client that
//! talks to it with the test token, its certificate pinned.

use std::time::Duration;

use phoenix_proxmox::transport::api::{ApiClient, Auth, TlsVerify};
use phoenix_proxmox::transport::task::{Poll, wait};
use phoenix_pve_double::{Credentials, PveDouble, PveVersion};

/// A double and a client of it; its tasks take `task` when given (the double's default when not).
pub fn start(version: PveVersion, task: Option<Duration>) -> (PveDouble, ApiClient) {
    let double = PveDouble::start(
        version,
        Credentials { token: ("phoenix@pve!ci".into(), "s3cret".into()), root_password: "root-pw".into() },
    );
    if let Some(task) = task {
        double.set_task_duration(task);
    }
    let auth = Auth::Token { id: "phoenix@pve!ci".into(), secret: "s3cret".into() };
    let verify = TlsVerify::fingerprint(&double.fingerprint).expect("fingerprint");
    let api = ApiClient::new("127.0.0.1", double.addr.port(), auth, verify).expect("client");
    (double, api)
}

/// Makes a request that starts a task and waits until it succeeded.
#[allow(dead_code)] // Not every test file runs tasks this way.
pub fn run(api: &ApiClient, method: &str, path: &str, params: &[(&str, String)]) {
    let answer = api.request(method, path, params).expect("a task");
    let upid = answer.as_str().expect("a UPID").parse().expect("valid UPID");
    let poll = Poll { first: Duration::from_millis(5), max: Duration::from_millis(20) };
    wait(api, &upid, poll, Duration::from_secs(10)).expect("task");
}
