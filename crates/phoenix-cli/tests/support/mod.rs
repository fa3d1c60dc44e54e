//! What the command line's in-process tests share: running `phoenix` on a configuration
//! directory with a given backend connection, and a connection to the PVE test double.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use phoenix_cli::{Connect, ConnectError, Connected, Io, run};
use phoenix_proxmox::api::{ApiClient, Auth, TlsVerify};
use phoenix_proxmox::backend::ProxmoxBackend;
use phoenix_proxmox::channel::{ChannelError, NodeChannel, Output};
use phoenix_proxmox::task::Poll;
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
    (code, out.text(), err.text())
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
            TlsVerify::fingerprint(&fingerprint).ok_or_else(|| ConnectError::Failed("bad fingerprint".into()))?,
        )
        .map_err(ConnectError::Failed)?;
        let nodes = nodes.clone();
        let channel: Arc<dyn NodeChannel> =
            Arc::new(move |node: &str, argv: &[String], input: Option<&[u8]>| -> Result<Output, ChannelError> {
                let (status, stdout, stderr) = nodes.run(node, argv, input);
                Ok(Output { status, stdout, stderr })
            });
        let backend = ProxmoxBackend::new(api, "pve1", Some(channel))
            .with_poll(Poll { first: Duration::from_millis(5), max: Duration::from_millis(20) });
        backend.preflight().map_err(|e| ConnectError::Failed(e.to_string()))?;
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
