//! What the double's own tests share: a double of one Proxmox version and an API client that
//! talks to it with the test token, its certificate pinned.

use std::time::Duration;

use phoenix_proxmox::api::{ApiClient, Auth, TlsVerify};
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
