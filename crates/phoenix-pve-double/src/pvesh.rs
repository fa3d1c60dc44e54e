//! A stand-in for `pvesh` on a node of the double: it reads `pvesh`'s command line and sends the
//! request to a running double over HTTPS as `root@pam`, and answers as `pvesh` does.
//!
//! Command line: `pvesh get|create|set|delete <api path> [--name=value | --name value]...
//! --output-format json` (`create` is POST, `set` PUT, `delete` DELETE; a parameter given twice
//! is sent twice). What it prints, as `pvesh` prints it:
//!
//! - a result: its JSON on one line of stdout (nothing for a null result), exit status 0;
//! - a call that starts a task: `pvesh` runs the task before it returns, so the stand-in waits
//!   until the task has stopped, prints the task's log lines, then the UPID as a JSON string —
//!   exit status 0 even when the task failed (its status says so);
//! - an error: its message on stderr (`400 Parameter verification failed.` followed by one
//!   `param: message` line per refused parameter; a plain message such as `can't lock file ...
//!   - got timeout` where Proxmox answers 500), exit status 255.
//!
//! Where the double is, and how it knows the caller is `root@pam`, comes from the environment
//! [`crate::PveDouble::pvesh_env`] gives: the URL ([`URL_ENV`]), the certificate's fingerprint
//! ([`FINGERPRINT_ENV`], pinned) and the double's local-root secret ([`ROOT_ENV`]), sent in the
//! [`ROOT_HEADER`] header. That header exists only in the double: it plays the node's own root
//! running `pvesh`, with all privileges. The requests are checked against the schema and
//! recorded (and logged) like any other.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The double's URL (`https://127.0.0.1:<port>`).
pub const URL_ENV: &str = "PHOENIX_PVE_DOUBLE_URL";
/// The double's certificate fingerprint, as Proxmox shows it; the stand-in accepts no other.
pub const FINGERPRINT_ENV: &str = "PHOENIX_PVE_DOUBLE_FINGERPRINT";
/// The double's local-root secret.
pub const ROOT_ENV: &str = "PHOENIX_PVE_DOUBLE_ROOT";
/// The header carrying the local-root secret (double only: the node's root running `pvesh`).
pub const ROOT_HEADER: &str = "X-Phoenix-Double-Root";

/// Exit status of a failed call (Perl's `die`).
const FAILED: u8 = 255;
/// Exit status of a command line the stand-in cannot read.
const USAGE: u8 = 2;

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// HTTP method.
    pub method: &'static str,
    /// API path, from `/`.
    pub path: String,
    /// Parameters in order (repeated ones repeated).
    pub params: Vec<(String, String)>,
}

/// Reads `pvesh`'s command line (without the program name).
pub fn parse(args: &[String]) -> Result<Call, String> {
    let mut it = args.iter();
    let method = match it.next().map(String::as_str) {
        Some("get") => "GET",
        Some("create") => "POST",
        Some("set") => "PUT",
        Some("delete") => "DELETE",
        Some(other) => {
            return Err(format!("unknown command 'pvesh {other}' (the stand-in knows get, create, set, delete)"));
        }
        None => return Err("no command".into()),
    };
    let path = it.next().ok_or("no API path")?;
    let path = if path.starts_with('/') { path.clone() } else { format!("/{path}") };
    let mut params = Vec::new();
    let mut format = None;
    while let Some(arg) = it.next() {
        let option =
            arg.strip_prefix("--").filter(|o| !o.is_empty()).ok_or_else(|| format!("unexpected argument '{arg}'"))?;
        let (name, value) = match option.split_once('=') {
            Some((n, v)) => (n.to_string(), v.to_string()),
            None => (option.to_string(), it.next().ok_or_else(|| format!("option --{option} has no value"))?.clone()),
        };
        if name == "output-format" {
            format = Some(value);
        } else {
            params.push((name, value));
        }
    }
    match format.as_deref() {
        Some("json") => Ok(Call { method, path, params }),
        other => Err(format!("the stand-in prints --output-format json only (asked: {})", other.unwrap_or("text"))),
    }
}

/// The double, as the environment names it: a client pinned to its certificate, and the
/// local-root secret it sends instead of credentials.
struct Double {
    api: phoenix_proxmox::transport::api::ApiClient,
    /// The local-root secret, sent in the [`ROOT_HEADER`] header.
    root_secret: String,
}

impl Double {
    fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Double, String> {
        use phoenix_proxmox::transport::api::{ApiClient, Auth, TlsVerify};
        let need = |k: &str| env(k).filter(|v| !v.is_empty()).ok_or_else(|| format!("{k} is not set"));
        let url = need(URL_ENV)?;
        let authority = url.strip_prefix("https://").ok_or_else(|| format!("{URL_ENV}: {url} is not https://"))?;
        let (host, port) =
            authority.trim_end_matches('/').rsplit_once(':').ok_or_else(|| format!("{URL_ENV}: no port"))?;
        let port = port.parse().map_err(|_| format!("{URL_ENV}: bad port {port}"))?;
        let pin = need(FINGERPRINT_ENV)?;
        let tls =
            TlsVerify::fingerprint(&pin).ok_or_else(|| format!("{FINGERPRINT_ENV}: {pin} is not a fingerprint"))?;
        // No credentials: the local-root header stands for them.
        let none = Auth::Token { id: String::new(), secret: String::new() };
        let api = ApiClient::new(host, port, none, tls).map_err(|e| e.to_string())?;
        Ok(Double { api, root_secret: need(ROOT_ENV)? })
    }

    /// One request; the status, the reason and the JSON body, as the double answered.
    fn request(&self, method: &str, path: &str, params: &[(String, String)]) -> Result<(u16, String, Value), String> {
        let params: Vec<(&str, String)> = params.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        self.api.send(method, path, &params, vec![(ROOT_HEADER, self.root_secret.clone())]).map_err(|e| e.to_string())
    }
}

/// Runs `pvesh` with `args` (without the program name) against the double the environment names;
/// returns the exit status.
pub fn run(args: &[String], env: &dyn Fn(&str) -> Option<String>, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let call = match parse(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(err, "{e}\nusage: pvesh get|create|set|delete <api_path> [OPTIONS] --output-format json");
            return USAGE;
        }
    };
    let double = match Double::from_env(env) {
        Ok(d) => d,
        Err(e) => {
            let _ = writeln!(err, "pvesh stand-in: {e}");
            return USAGE;
        }
    };
    let (status, reason, body) = match double.request(call.method, &call.path, &call.params) {
        Ok(a) => a,
        Err(e) => {
            let _ = writeln!(err, "{e}");
            return FAILED;
        }
    };
    if status != 200 {
        // `pvesh` prints the API's exception: the status where it has one (400, 403, ...) and the
        // per-parameter errors; a plain `die` of the handler (what HTTPS answers 500) as it is.
        let mut text = if status == 500 { reason } else { format!("{status} {reason}") };
        for (param, message) in body.get("errors").and_then(Value::as_object).into_iter().flatten() {
            text.push_str(&format!("\n{param}: {}", message.as_str().unwrap_or_default()));
        }
        let _ = writeln!(err, "{text}");
        return FAILED;
    }
    let data = body.get("data").cloned().unwrap_or_default();
    if let Some(upid) = data.as_str().filter(|d| d.starts_with("UPID:"))
        && let Err(e) = wait_for_task(&double, upid, out)
    {
        let _ = writeln!(err, "{e}");
        return FAILED;
    }
    if !data.is_null() {
        let _ = writeln!(out, "{data}");
    }
    0
}

/// Waits for a task to stop, then prints its log, as `pvesh` does with the worker it runs.
fn wait_for_task(double: &Double, upid: &str, out: &mut dyn Write) -> Result<(), String> {
    let node = upid.split(':').nth(1).unwrap_or_default();
    let started = Instant::now();
    loop {
        let (status, reason, body) = double.request("GET", &format!("/nodes/{node}/tasks/{upid}/status"), &[])?;
        if status != 200 {
            return Err(format!("{status} {reason}"));
        }
        if body["data"]["status"] == "stopped" {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            return Err(format!("task {upid} still runs"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let (_, _, log) = double.request("GET", &format!("/nodes/{node}/tasks/{upid}/log"), &[])?;
    for line in log["data"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "{}", line["t"].as_str().unwrap_or_default());
    }
    Ok(())
}

/// Writes an executable `pvesh` into `dir` that runs `emulator` (a program that calls [`run`],
/// such as the `pvesh-double` binary) with the arguments it gets, intact, and the environment
/// `env` ([`crate::PveDouble::pvesh_env`]). Returns its path.
pub fn write_wrapper(dir: &Path, emulator: &Path, env: &[(String, String)]) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let assignments: String = env.iter().map(|(k, v)| format!("{k}={} ", quote(v))).collect();
    let script = format!("#!/bin/sh\n{assignments}exec {} \"$@\"\n", quote(&emulator.display().to_string()));
    let path = dir.join("pvesh");
    std::fs::write(&path, script)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

/// Set in the environment by [`self_wrapper`]'s script: the process is the stand-in.
pub const STAND_IN_ENV: &str = "PHOENIX_PVESH_STAND_IN";

/// A `pvesh` in `dir` that runs the current executable as the stand-in for `double`: for a test
/// binary whose `main` is [`main_or_tests`], so that the stand-in is always the code the test was
/// built with.
pub fn self_wrapper(double: &crate::PveDouble, dir: &Path) -> std::io::Result<PathBuf> {
    let mut env = double.pvesh_env();
    env.push((STAND_IN_ENV.to_string(), "1".to_string()));
    write_wrapper(dir, &std::env::current_exe()?, &env)
}

/// The `main` of a test binary built without libtest's harness that is also its own `pvesh`
/// ([`self_wrapper`]): the stand-in when its script started it, else a runner of `tests`, each
/// on its own thread (names on the command line choose those whose name contains one; options
/// are ignored). A test fails by panicking.
pub fn main_or_tests(tests: &[(&str, fn())]) -> std::process::ExitCode {
    let args: Vec<String> = std::env::args_os().skip(1).map(|a| a.to_string_lossy().into_owned()).collect();
    if std::env::var_os(STAND_IN_ENV).is_some() {
        let code = run(&args, &|k| std::env::var(k).ok(), &mut std::io::stdout().lock(), &mut std::io::stderr().lock());
        return std::process::ExitCode::from(code);
    }
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let chosen: Vec<&(&str, fn())> = tests
        .iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())))
        .collect();
    let runs: Vec<_> = chosen
        .iter()
        .map(|(name, test)| (*name, std::thread::Builder::new().name((*name).into()).spawn(*test)))
        .collect();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "\nrunning {} tests", runs.len());
    let mut failed = 0;
    for (name, started) in runs {
        let ok = started.is_ok_and(|handle| handle.join().is_ok());
        failed += usize::from(!ok);
        let _ = writeln!(out, "test {name} ... {}", if ok { "ok" } else { "FAILED" });
    }
    let verdict = if failed == 0 { "ok" } else { "FAILED" };
    let _ = writeln!(out, "\ntest result: {verdict}. {} passed; {failed} failed\n", chosen.len() - failed);
    if failed == 0 { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::FAILURE }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn the_command_line_is_read_as_pvesh_reads_it() {
        let call = parse(&args(&[
            "set",
            "/nodes/pve1/lxc/950/config",
            "--description=-x y",
            "--net0=name=eth0,ip=10.0.0.5/24",
            "--cores",
            "2",
            "--delete=dev1",
            "--output-format",
            "json",
        ]))
        .expect("parses");
        assert_eq!(call.method, "PUT");
        assert_eq!(call.path, "/nodes/pve1/lxc/950/config");
        assert_eq!(
            call.params,
            vec![
                ("description".to_string(), "-x y".to_string()),
                ("net0".into(), "name=eth0,ip=10.0.0.5/24".into()),
                ("cores".into(), "2".into()),
                ("delete".into(), "dev1".into()),
            ]
        );
        assert_eq!(
            parse(&args(&["create", "nodes/pve1/lxc", "--output-format=json"])).expect("ok").path,
            "/nodes/pve1/lxc"
        );
        assert!(parse(&args(&["get", "/version"])).is_err(), "text output is not played");
        assert!(parse(&args(&["ls", "/"])).is_err());
        assert!(parse(&args(&["get", "/version", "stray", "--output-format", "json"])).is_err());
        assert!(parse(&args(&["get", "/version", "--output-format"])).is_err());
    }

    #[test]
    fn the_wrapper_passes_arguments_intact() {
        let dir = tempdir();
        let env = vec![("A_VAR".to_string(), "it's here".to_string())];
        let wrapper = write_wrapper(&dir, Path::new("/bin/sh"), &env).expect("wrapper");
        let out = std::process::Command::new(&wrapper)
            .args(["-c", "printf '%s|' \"$A_VAR\" \"$@\"", "sh", "a b", "--x=-y", ""])
            .output()
            .expect("runs");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "it's here|a b|--x=-y||");
        let _ = std::fs::remove_dir_all(dir);
    }

    fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pvesh-wrapper-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }
}
