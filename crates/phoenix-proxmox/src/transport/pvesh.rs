//! The Proxmox VE API through `pvesh`, when Phoenix runs on the node itself: the same requests as
//! over HTTPS, made by the local `pvesh` program as `root@pam`, without a token or TLS.
//!
//! `pvesh get|create|set|delete <api path> --name=value ... --output-format json`: `create` is
//! POST, `set` PUT, `delete` DELETE. Each parameter is one argument (`--name=value`), so values
//! that start with `-` or hold spaces arrive intact; no shell is involved. The result is the last
//! line of stdout, as JSON (nothing for an answer without data). A call that starts a task runs
//! it before `pvesh` returns, printing the task's log first and then its UPID; `pvesh` exits 0
//! even when the task failed, so the task's status is read as over HTTPS. A failed call prints its
//! error on stderr and exits non-zero: those errors become the same [`BackendError`]s the HTTPS
//! client gives for the same answers.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use phoenix_backend::process::{ABORTED, ProcessError, run_captured};
use phoenix_backend::{BackendError, Delivery, ErrorKind};

use crate::transport::Transport;

/// The `pvesh` program a client runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pvesh {
    program: PathBuf,
}

/// The `pvesh` subcommand for an HTTP method.
pub fn subcommand(method: &str) -> Option<&'static str> {
    match method {
        "GET" => Some("get"),
        "POST" => Some("create"),
        "PUT" => Some("set"),
        "DELETE" => Some("delete"),
        _ => None,
    }
}

/// The arguments after the program: `get /path --name=value ... --output-format json`.
pub fn arguments(method: &str, path: &str, params: &[(&str, String)]) -> Option<Vec<String>> {
    let mut argv = vec![subcommand(method)?.to_string(), path.to_string()];
    argv.extend(params.iter().map(|(k, v)| format!("--{k}={v}")));
    argv.extend(["--output-format".to_string(), "json".to_string()]);
    Some(argv)
}

/// How long one call may take. A call that starts a task runs the whole task (a create or a
/// clone may take half an hour); a read does not.
fn timeout_for(method: &str) -> Duration {
    if method == "GET" { Duration::from_secs(120) } else { Duration::from_secs(35 * 60) }
}

/// What `pvesh` printed, as the answer's `data`, or the error it reported.
pub fn decode(
    method: &str,
    path: &str,
    status: i32,
    stdout: &[u8],
    stderr: &[u8],
) -> Result<serde_json::Value, BackendError> {
    let what = format!("{method} {path}");
    if status != 0 {
        return Err(failure(&what, status, &String::from_utf8_lossy(stderr)));
    }
    let out = String::from_utf8_lossy(stdout);
    let Some(last) = out.lines().rev().map(str::trim).find(|l| !l.is_empty()) else {
        // An answer without data (`null` results print nothing).
        return Ok(serde_json::Value::Null);
    };
    serde_json::from_str(last).map_err(|e| {
        let delivery = if method == "GET" { Delivery::NotSent } else { Delivery::MaybeApplied };
        BackendError::permanent(delivery, format!("{what}: pvesh printed no JSON result ({e})")).with_detail(
            out.lines().rev().take(10).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n"),
        )
    })
}

/// The error of a call `pvesh` reported: its stderr's first line, which starts with the HTTP
/// status when the API gave one (`400 Parameter verification failed.`, `403 Permission check
/// failed`), then for a 400 one `param: message` line per refused parameter.
fn failure(what: &str, status: i32, stderr: &str) -> BackendError {
    let mut lines = stderr.lines().map(str::trim_end).filter(|l| !l.trim().is_empty());
    let first = lines.next().unwrap_or_default().trim().to_string();
    let code: Option<u16> = first
        .split_once(' ')
        .filter(|(c, _)| c.len() == 3)
        .and_then(|(c, _)| c.parse().ok())
        .filter(|c| (100..600).contains(c));
    let reason = match code {
        Some(_) => first.split_once(' ').map_or("", |(_, r)| r).trim().to_string(),
        None if first.is_empty() => format!("pvesh exited with status {status} and said nothing"),
        None => first.clone(),
    };
    let maybe = |m: String| BackendError {
        kind: ErrorKind::Transient,
        delivery: Delivery::MaybeApplied,
        message: m,
        detail: None,
    };
    let rest: Vec<&str> = lines.collect();
    match code {
        Some(400) => {
            let errors = rest
                .iter()
                .filter_map(|l| l.split_once(": ").filter(|(k, _)| !k.is_empty() && !k.contains(char::is_whitespace)))
                .map(|(k, v)| format!("{k}: {}", v.trim()))
                .collect::<Vec<_>>()
                .join("; ");
            BackendError::permanent(Delivery::NotSent, format!("{what}: {reason}")).with_detail(errors)
        }
        Some(c @ (401 | 403)) => BackendError::permanent(Delivery::NotSent, format!("{what}: {c} {reason}")),
        // As over HTTPS: lock timeouts and proxy errors are worth retrying, the rest is not.
        _ if reason.contains("got timeout") || reason.contains("is locked") => maybe(format!("{what}: {reason}")),
        Some(c) if c > 500 => maybe(format!("{what}: {c} {reason}")),
        Some(c) if c != 500 => BackendError::permanent(Delivery::MaybeApplied, format!("{what}: {c} {reason}")),
        _ => {
            let error = BackendError::permanent(Delivery::MaybeApplied, format!("{what}: {reason}"));
            if rest.is_empty() { error } else { error.with_detail(rest.join("\n")) }
        }
    }
}

impl Pvesh {
    /// `program` (a path, or a name looked up on `PATH`, such as `pvesh`).
    pub fn new(program: impl Into<PathBuf>) -> Pvesh {
        Pvesh { program: program.into() }
    }

    /// The program run.
    pub fn program(&self) -> &Path {
        &self.program
    }
}

/// Each request is one run of the program, as `root@pam`.
impl Transport for Pvesh {
    fn acts_as_root(&self) -> bool {
        true
    }

    fn request(&self, method: &str, path: &str, params: &[(&str, String)]) -> Result<serde_json::Value, BackendError> {
        let argv = arguments(method, path, params).ok_or_else(|| {
            BackendError::permanent(Delivery::NotSent, format!("{method} {path}: pvesh has no command for {method}"))
        })?;
        let mut command = Command::new(&self.program);
        command.args(&argv);
        let timeout = timeout_for(method);
        let out = run_captured(command, None, timeout).map_err(|e| match e {
            ProcessError::Spawn(e) => {
                BackendError::permanent(Delivery::NotSent, format!("cannot run {}: {e}", self.program.display()))
                    .with_detail("`via: \"pvesh\"` needs Phoenix on a Proxmox VE node, where `pvesh` is installed")
            }
            ProcessError::Wait(e) => {
                BackendError::transient(Delivery::MaybeApplied, format!("{method} {path}: pvesh: {e}"))
            }
            ProcessError::Timeout => BackendError::transient(
                Delivery::MaybeApplied,
                format!("{method} {path}: pvesh still runs after {}s", timeout.as_secs()),
            ),
            ProcessError::Aborted => {
                BackendError::permanent(Delivery::MaybeApplied, format!("{method} {path}: pvesh {ABORTED}"))
            }
        })?;
        decode(method, path, out.status, &out.stdout, &out.stderr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_become_one_argument_per_parameter() {
        let argv = arguments(
            "PUT",
            "/nodes/pve1/lxc/950/config",
            &[("description", "-x y".into()), ("net0", "name=eth0,bridge=vmbr0".into()), ("net0", "again".into())],
        )
        .expect("PUT");
        assert_eq!(
            argv,
            [
                "set",
                "/nodes/pve1/lxc/950/config",
                "--description=-x y",
                "--net0=name=eth0,bridge=vmbr0",
                "--net0=again",
                "--output-format",
                "json"
            ]
        );
        assert_eq!(arguments("POST", "/x", &[]).expect("POST")[0], "create");
        assert_eq!(arguments("DELETE", "/x", &[]).expect("DELETE")[0], "delete");
        assert!(arguments("PATCH", "/x", &[]).is_none());
    }

    #[test]
    fn the_last_line_is_the_result_and_errors_map_as_over_https() {
        let upid = "UPID:pve1:00001001:00120001:65000000:vzcreate:950:root@pam:";
        let task = format!("extracting archive\nTotal bytes read: 1\n\"{upid}\"\n");
        assert_eq!(decode("POST", "/nodes/pve1/lxc", 0, task.as_bytes(), b""), Ok(serde_json::json!(upid)));
        assert_eq!(decode("PUT", "/x", 0, b"", b""), Ok(serde_json::Value::Null));
        assert_eq!(decode("GET", "/version", 0, b"{\"version\":\"8.4.5\"}\n", b"").expect("json")["version"], "8.4.5");
        assert!(decode("GET", "/version", 0, b"not json\n", b"").is_err());

        let e = decode(
            "PUT",
            "/nodes/pve1/lxc/950/config",
            255,
            b"",
            b"400 Parameter verification failed.\nmemory: value must have a minimum value of 16\ncores: invalid format\n",
        )
        .expect_err("400");
        assert_eq!((e.kind, e.delivery), (ErrorKind::Permanent, Delivery::NotSent));
        assert_eq!(e.message, "PUT /nodes/pve1/lxc/950/config: Parameter verification failed.");
        assert_eq!(e.detail.as_deref(), Some("memory: value must have a minimum value of 16; cores: invalid format"));

        let e = decode("PUT", "/x", 255, b"", b"can't lock file '/run/lock/lxc/pve-config-950.lock' - got timeout\n")
            .expect_err("lock");
        assert_eq!((e.kind, e.delivery), (ErrorKind::Transient, Delivery::MaybeApplied));
        assert!(e.message.contains("got timeout"), "{e}");

        let e = decode("GET", "/x", 2, b"", b"403 Permission check failed\n").expect_err("403");
        assert_eq!((e.kind, e.delivery), (ErrorKind::Permanent, Delivery::NotSent));
        let e = decode("GET", "/x", 2, b"", b"595 Errors during connection establishment\n").expect_err("595");
        assert!(e.is_transient());
        let e = decode("POST", "/x", 2, b"", b"CT 950 already exists on node 'pve1'\n").expect_err("500");
        assert_eq!((e.kind, e.delivery), (ErrorKind::Permanent, Delivery::MaybeApplied));
        assert_eq!(e.message, "POST /x: CT 950 already exists on node 'pve1'");
        let e = decode("GET", "/x", 9, b"", b"").expect_err("silent");
        assert!(e.message.contains("status 9"), "{e}");
    }

    #[test]
    fn a_missing_program_is_a_permanent_error_that_says_where_pvesh_lives() {
        let e = Pvesh::new("/nonexistent/pvesh").request("GET", "/version", &[]).expect_err("no program");
        assert_eq!((e.kind, e.delivery), (ErrorKind::Permanent, Delivery::NotSent));
        assert!(e.message.contains("cannot run /nonexistent/pvesh"), "{e}");
    }
}
