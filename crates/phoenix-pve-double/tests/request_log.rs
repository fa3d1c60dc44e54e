//! The suite-wide request log: doubles write it when `PHOENIX_PVE_REQUEST_LOG` is set (except
//! those marked to expect refusals), and `check-requests` checks it against both schemas.

use std::path::{Path, PathBuf};
use std::process::Command;

use phoenix_proxmox::transport::api::{ApiClient, Auth, TlsVerify};
use phoenix_pve_double::{Credentials, PveDouble, PveVersion, REQUEST_LOG_ENV};

/// A fresh, empty directory for one test.
fn fresh_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("request-log-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir
}

/// Runs `check-requests` on a directory: its exit code and what it wrote.
fn check(dir: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_check-requests")).arg(dir).output().expect("check-requests runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

fn line(version: &str, method: &str, path: &str, params: &[(&str, &str)]) -> String {
    let params: serde_json::Map<String, serde_json::Value> =
        params.iter().map(|(k, v)| ((*k).to_string(), serde_json::Value::String((*v).to_string()))).collect();
    serde_json::json!({ "version": version, "method": method, "path": path, "params": params, "status": 200 })
        .to_string()
}

const CONFIG: &str = "/nodes/pve1/lxc/950/config";

#[test]
fn the_checker_passes_a_good_log_and_lists_what_fails() {
    let dir = fresh_dir("checker");
    let good = [
        line("8.4.5", "GET", "/version", &[]),
        line("9.2.3", "PUT", CONFIG, &[("net0", "name=eth0,bridge=vmbr0,host-managed=1"), ("cores", "2")]),
        line("8.4.5", "GET", "/cluster/resources", &[("type", "vm")]),
    ];
    std::fs::write(dir.join("1-1.jsonl"), good.join("\n") + "\n").expect("write");
    let (code, out) = check(&dir);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("3 requests from 1 doubles"), "{out}");

    std::fs::write(dir.join("1-2.jsonl"), line("9.2.3", "PUT", CONFIG, &[("lxc.idmap", "u 0 100000 65536")]) + "\n")
        .expect("write");
    let (code, out) = check(&dir);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("1-2.jsonl:1: PUT /nodes/pve1/lxc/950/config"), "{out}");
    assert!(out.contains("parameter 'lxc.idmap': property is not defined in schema"), "{out}");
    assert!(out.contains("1 of the 4 requests"), "{out}");

    std::fs::remove_file(dir.join("1-2.jsonl")).expect("rm");
    std::fs::write(dir.join("1-3.jsonl"), line("8.4.5", "PUT", CONFIG, &[("net0", "name=eth0,bridge=vmbr0,mtu=huge")]))
        .expect("write");
    let (code, out) = check(&dir);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("parameter 'net0': invalid format - mtu: type check ('integer') failed"), "{out}");

    // A parameter only 9.2.3 knows, sent to 8.4.5: the driver did not gate it.
    std::fs::remove_file(dir.join("1-3.jsonl")).expect("rm");
    std::fs::write(dir.join("1-4.jsonl"), line("8.4.5", "PUT", CONFIG, &[("net0", "name=eth0,host-managed=1")]))
        .expect("write");
    let (code, out) = check(&dir);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("sent to 8.4.5, checked against 8.4.5"), "{out}");
}

#[test]
fn the_checker_refuses_an_empty_log() {
    let dir = fresh_dir("empty");
    let (code, out) = check(&dir);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no request logged"), "{out}");
    std::fs::write(dir.join("1-1.jsonl"), "").expect("write");
    assert_eq!(check(&dir).0, 1);
    let (code, out) = check(&dir.join("missing"));
    assert_eq!(code, 2, "{out}");
}

/// Set in the child process [`doubles_log_their_requests_unless_marked`] runs.
const CHILD: &str = "PHOENIX_PVE_REQUEST_LOG_CHILD";

/// The child's part (it needs the variable set before the doubles start, and a process's
/// environment cannot be changed safely while other tests run): two doubles, one of them marked.
#[test]
fn request_log_child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let credentials = Credentials { token: ("phoenix@pve!ci".into(), "s".into()), root_password: "root-pw".into() };
    for (version, refusals) in [(PveVersion::V9, false), (PveVersion::V8, true)] {
        let double = PveDouble::start(version, credentials.clone());
        if refusals {
            double.expect_refusals();
        }
        let auth = Auth::Token { id: "phoenix@pve!ci".into(), secret: "s".into() };
        let verify = TlsVerify::fingerprint(&double.fingerprint).expect("fingerprint");
        let api = ApiClient::new("127.0.0.1", double.addr.port(), auth, verify).expect("client");
        api.request("GET", "/version", &[]).expect("version");
        api.request("GET", "/cluster/resources", &[("type", "vm".into())]).expect("resources");
        if refusals {
            assert!(api.request("PUT", CONFIG, &[("lxc.idmap", "u 0 100000 65536".into())]).is_err());
        }
    }
}

#[test]
fn doubles_log_their_requests_unless_marked() {
    let dir = fresh_dir("doubles");
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "request_log_child", "--test-threads", "1"])
        .env(REQUEST_LOG_ENV, &dir)
        .env(CHILD, "1")
        .output()
        .expect("child runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let files: Vec<PathBuf> = std::fs::read_dir(&dir).expect("dir").map(|e| e.expect("entry").path()).collect();
    assert_eq!(files.len(), 1, "only the unmarked double logs: {files:?}");
    let name = files[0].file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
    assert!(name.ends_with(".jsonl") && name.split('-').count() == 2, "{name}");
    let text = std::fs::read_to_string(&files[0]).expect("log");
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["version"], "9.2.3");
    assert_eq!((lines[0]["method"].as_str(), lines[0]["path"].as_str()), (Some("GET"), Some("/version")));
    assert_eq!(lines[1]["params"]["type"], "vm");
    assert_eq!(lines[1]["status"], 200);
    let (code, out) = check(&dir);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("2 requests from 1 doubles"), "{out}");
}
