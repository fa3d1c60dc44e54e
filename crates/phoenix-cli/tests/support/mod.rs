//! What the command line's in-process tests share: running `phoenix` on a configuration
//! directory with a given backend connection, and a connection to the PVE test double.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use phoenix_cli::{Connect, ConnectError, Connected, Io, run};
use phoenix_proxmox::backend::ProxmoxBackend;
use phoenix_proxmox::node::channel::{ChannelError, NodeChannel, Output};
use phoenix_proxmox::transport::api::{ApiClient, Auth, TlsVerify};
use phoenix_proxmox::transport::task::Poll;
use phoenix_pve_double::PveDouble;
use phoenix_testkit::Capture;
use phoenix_testkit::memory::MemoryBackend;

/// Runs the command line in-process on the configuration directory `dir` (its apply lock kept
/// there too), connecting with `connect`: the exit code, stdout and stderr.
pub fn phoenix_in(dir: &Path, args: &[&str], connect: &Connect) -> (u8, String, String) {
    let (out, err) = (Capture::default(), Capture::default());
    let cfg = dir.to_str().expect("utf-8").to_string();
    let locks = dir.join("locks").to_str().expect("utf-8").to_string();
    let mut full = vec!["phoenix", "--color", "never", "-c", &cfg, "--lock-dir", &locks];
    full.extend_from_slice(args);
    let code =
        run(full, Io::Custom { out: Box::new(out.clone()), err: Box::new(err.clone()), interactive: false }, connect);
    let (out, err) = (out.text(), err.text());
    assert_no_known_secret(args, &out, &err);
    (code, out, err)
}

/// Every secret value the suite gives Phoenix (API token secrets, root passwords, Vault tokens,
/// a password written inline on purpose). No output of any run may hold one: each run through
/// [`phoenix_in`] is checked, and tests that run the binary themselves call
/// [`assert_no_known_secret`].
pub const KNOWN_SECRETS: &[&str] = &[
    "0f9e8d7c-6b5a-4321-9abc-def012345678",
    "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d",
    "0f9e8d7c-v1",
    "0f9e8d7c-v2",
    "s3cret",
    "root-pw",
    "rp-v2",
    "hvs.CAESIPq7Zt2vKx9",
    "hvs.CAESIJ3k9QzT7rXw2mVb8LpFhYt",
    "hvs.revoked",
    "NewKick@2025-secret",
    "TOKSECRET-7731-q9z-echoed",
];

/// Fails the test when the output of a run holds one of [`KNOWN_SECRETS`].
pub fn assert_no_known_secret(args: &[&str], stdout: &str, stderr: &str) {
    for secret in KNOWN_SECRETS {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "phoenix {args:?} printed the test secret {secret:?}:\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
        );
    }
}

/// A connection to the double's node `pve1`: its API with the token `(id, secret)`, pinned to
/// its certificate, and its nodes as the node channel (`pct` for GPUs, mounts, exec); polling
/// fast. The configuration's `backend` section is not read.
pub fn double_connect(
    double: &PveDouble,
    token: (&str, &str),
) -> impl Fn(&phoenix_config::Estate) -> Result<Connected, ConnectError> + use<> {
    let (port, fingerprint, nodes) = (double.addr.port(), double.fingerprint.clone(), double.node_channel());
    let (id, secret) = (token.0.to_string(), token.1.to_string());
    move |_| {
        let api = ApiClient::new(
            "127.0.0.1",
            port,
            Auth::Token { id: id.clone(), secret: secret.clone() },
            TlsVerify::fingerprint(&fingerprint).ok_or_else(|| ConnectError::failed("bad fingerprint"))?,
        )
        .map_err(ConnectError::failed)?;
        let nodes = nodes.clone();
        let channel: Arc<dyn NodeChannel> =
            Arc::new(move |node: &str, argv: &[String], input: Option<&[u8]>| -> Result<Output, ChannelError> {
                let (status, stdout, stderr) = nodes.run(node, argv, input);
                Ok(Output { status, stdout, stderr })
            });
        let backend = ProxmoxBackend::new(api, "pve1", Some(channel))
            .with_poll(Poll { first: Duration::from_millis(5), max: Duration::from_millis(20) });
        backend.preflight().map_err(|e| ConnectError::failed(e.to_string()))?;
        Ok(Connected { backend: Box::new(backend), notes: Vec::new() })
    }
}

/// Runs the command line in-process on `dir` against an in-memory backend (shared with the
/// caller, which inspects its calls).
pub fn phoenix_memory(dir: &Path, args: &[&str], backend: &Arc<MemoryBackend>) -> (u8, String, String) {
    let backend = backend.clone();
    let connect = move |_: &phoenix_config::Estate| {
        Ok(Connected { backend: Box::new(backend.clone()) as Box<dyn phoenix_backend::Backend>, notes: Vec::new() })
    };
    phoenix_in(dir, args, &connect)
}
