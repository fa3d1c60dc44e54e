//! Resolved secrets never reach the output, even when the server echoes them: an API that puts
//! the request's `Authorization` header (the token secret, resolved from `env:`) into its reason
//! phrase or its `errors` body, for every command that talks to it, in text and JSON, at every
//! verbosity. The real binary runs, with the real secret resolution.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use phoenix_http::test_server::{Reply, TestServer};

mod support;

/// The token secret, one of the suite's known secrets.
const SECRET: &str = "TOKSECRET-7731-q9z-echoed";

/// How the fake API answers.
#[derive(Debug, Clone, Copy)]
enum Echo {
    /// 401 to everything, the header in the reason phrase.
    Unauthorized,
    /// The version, then 400 to everything else, the header in the `errors` body.
    BadRequest,
    /// 500 to everything, the header in the reason phrase.
    ServerError,
}

fn server(echo: Echo) -> TestServer {
    TestServer::start(move |req| {
        let auth = req.header("authorization").unwrap_or_default().to_string();
        Some(match echo {
            Echo::Unauthorized => Reply::new(401, &format!("authentication failure ({auth})"), "{\"data\":null}"),
            Echo::BadRequest if req.target.ends_with("/version") => {
                Reply::new(200, "OK", serde_json::json!({"data": {"version": "8.4.5", "release": "8.4"}}))
            }
            Echo::BadRequest => Reply::new(
                400,
                "Parameter verification failed.",
                serde_json::json!({"data": null, "errors": {"token": format!("got {auth}")}}),
            ),
            Echo::ServerError => Reply::new(500, &format!("internal error with {auth}"), "{\"data\":null}"),
        })
    })
}

/// The ai-stack example pointed at the fake API, its token secret read from `PHOENIX_ECHO_TOKEN`.
fn config(dir: &Path, server: &TestServer) -> PathBuf {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/ai-stack");
    let cfg = dir.join("cfg");
    fs::create_dir_all(cfg.join("scripts")).expect("mkdir");
    for e in fs::read_dir(&examples).expect("read").chain(fs::read_dir(examples.join("scripts")).expect("read")) {
        let p = e.expect("entry").path();
        if p.is_file() {
            let to = if p.parent() == Some(examples.as_path()) { cfg.clone() } else { cfg.join("scripts") };
            fs::copy(&p, to.join(p.file_name().expect("name"))).expect("copy");
        }
    }
    let hv = cfg.join("phoenix_hypervisor_config.json");
    let mut doc: serde_json::Value = serde_json::from_str(&fs::read_to_string(&hv).expect("read")).expect("json");
    doc["backend"] = serde_json::json!({
        "type": "proxmox",
        "api_url": format!("https://127.0.0.1:{}", server.addr.port()),
        "node": "pve1",
        "token": {"id": "phoenix@pve!echo", "secret": "env:PHOENIX_ECHO_TOKEN"},
        "tls": {"fingerprint": server.fingerprint},
    });
    fs::write(&hv, serde_json::to_string_pretty(&doc).expect("json")).expect("write");
    cfg
}

#[test]
fn a_token_the_api_echoes_is_never_printed() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut runs = 0;
    for echo in [Echo::Unauthorized, Echo::BadRequest, Echo::ServerError] {
        let server = server(echo);
        let cfg = config(tmp.path(), &server);
        let locks = tmp.path().join("locks");
        for args in [
            &["plan"][..],
            &["-vv", "plan"],
            &["--output", "json", "plan"],
            &["status"],
            &["--output", "json", "status"],
            &["apply"],
            &["-vv", "apply"],
        ] {
            let out = Command::new(env!("CARGO_BIN_EXE_phoenix"))
                .args([
                    "--color",
                    "never",
                    "-c",
                    cfg.to_str().expect("utf-8"),
                    "--lock-dir",
                    locks.to_str().expect("utf-8"),
                ])
                .args(args)
                .env("PHOENIX_ECHO_TOKEN", SECRET)
                .env_remove("PHOENIX_CONFIG_DIR")
                .output()
                .expect("run phoenix");
            let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            runs += 1;
            assert_eq!(out.status.code(), Some(1), "{echo:?} {args:?}: {stderr}");
            support::assert_no_known_secret(args, &stdout, &stderr);
            // The echo did arrive, masked: what the server said is still shown.
            assert!(
                stdout.contains("PVEAPIToken=phoenix@pve!echo=*****")
                    || stderr.contains("PVEAPIToken=phoenix@pve!echo=*****"),
                "{echo:?} {args:?}: {stdout}\n{stderr}"
            );
        }
    }
    assert_eq!(runs, 21);
    assert!(support::KNOWN_SECRETS.contains(&SECRET), "the suite's scan must know this secret");
}
