//! The double served over HTTPS on loopback, with a certificate made when it starts (a CA and a
//! node certificate signed by it, as a Proxmox cluster has). Every request is recorded and checked
//! against the schema of the version played; requests are refused as Proxmox refuses them:
//! 401 without valid credentials, 400 with per-parameter errors, 403 for what Proxmox reserves to
//! `root@pam` when asked with a token.
//!
//! Containers are kept as Proxmox keeps them (see [`crate::guests`]). Requests Proxmox runs as
//! tasks (create, clone, start/stop, snapshot, destroy) answer with a UPID; the task runs for a
//! set time and stops with `OK` or an injected failure, and its status and log can be read.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::schema::{ApiSchema, PveVersion};

/// A request the double received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// HTTP method.
    pub method: String,
    /// Path below `/api2/json`.
    pub path: String,
    /// Parameters, decoded.
    pub params: BTreeMap<String, String>,
    /// Asked with an API token (else a ticket).
    pub token: bool,
    /// The HTTP status it was answered with.
    pub status: u16,
}

/// A task the double runs: it is running until its time is up, then stopped with its exit status.
#[derive(Debug, Clone)]
struct Task {
    started: std::time::Instant,
    duration: std::time::Duration,
    exitstatus: String,
    log: Vec<String>,
}

/// What the double keeps between requests.
#[derive(Debug, Default)]
pub(crate) struct Model {
    pub(crate) guests: BTreeMap<u32, crate::guests::Guest>,
    tasks: BTreeMap<String, Task>,
    next_pid: u32,
    pub(crate) task_duration: std::time::Duration,
    fail_next: Option<(String, Vec<String>)>,
    /// Storages of every node: name → (type, path, content types).
    storages: BTreeMap<String, (String, Option<String>, String)>,
    /// The cluster's nodes.
    pub(crate) nodes: Vec<String>,
    /// Device nodes of each node (`/dev/nvidia0`, ...).
    pub(crate) devices: BTreeMap<String, Vec<String>>,
    /// Files inside containers, as the driver's push left them.
    pub(crate) files: BTreeMap<(u32, String), Vec<u8>>,
    /// Commands run on the nodes.
    pub(crate) commands: Vec<crate::node::NodeCommand>,
    /// Privileges, bridges, templates and the appliance index.
    inventory: crate::inventory::Inventory,
}

impl Model {
    /// Starts a task for a request that Proxmox answers with a UPID.
    fn start_task(&mut self, node: &str, kind: &str, id: &str, user: &str) -> String {
        self.next_pid += 1;
        let starttime = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let upid = format!(
            "UPID:{node}:{:08X}:{:08X}:{starttime:08X}:{kind}:{id}:{user}:",
            0x1000 + self.next_pid,
            0x0012_0000 + self.next_pid
        );
        let (exitstatus, log) = match self.fail_next.take() {
            Some((exit, log)) => (exit, log),
            None => ("OK".to_string(), vec![format!("{kind} {id}"), "TASK OK".to_string()]),
        };
        self.tasks.insert(
            upid.clone(),
            Task { started: std::time::Instant::now(), duration: self.task_duration, exitstatus, log },
        );
        upid
    }

    /// Runs a container request as `user` (`root`: with the rights of `root@pam`).
    pub(crate) fn handle(
        &mut self,
        method: &str,
        segs: &[&str],
        ps: &BTreeMap<String, String>,
        root: bool,
        user: &str,
    ) -> crate::guests::Answer {
        let busy = self.task_duration;
        let mut guests = std::mem::take(&mut self.guests);
        let answer = crate::guests::handle(&mut guests, method, segs, ps, busy, root, &mut |node, kind, id| {
            self.start_task(node, kind, id, user)
        });
        self.guests = guests;
        answer.unwrap_or_else(|| (200, "OK".to_string(), json!({ "data": null })))
    }
}

/// A running double.
pub struct PveDouble {
    /// Its address.
    pub addr: SocketAddr,
    /// PEM of the CA that signed its certificate (what `tls.ca_file` would hold).
    pub ca_pem: String,
    /// SHA-256 fingerprint of its certificate as Proxmox shows it (`AB:CD:...`).
    pub fingerprint: String,
    /// The version it plays.
    pub version: PveVersion,
    recorded: Arc<Mutex<Vec<Recorded>>>,
    model: Arc<Mutex<Model>>,
    stop: Arc<AtomicBool>,
}

/// Credentials the double accepts.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// API token ID and secret.
    pub token: (String, String),
    /// A `root@pam` ticket.
    pub root_ticket: String,
}

impl PveDouble {
    /// Starts a double playing `version` on a free loopback port.
    pub fn start(version: PveVersion, credentials: Credentials) -> PveDouble {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA");
        let node_key = KeyPair::generate().expect("node key");
        let node_cert = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("params")
            .signed_by(&node_key, &ca)
            .expect("node cert");
        let fingerprint =
            Sha256::digest(node_cert.der().as_ref()).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocols")
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(node_cert.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(node_key.serialize_der())),
            )
            .expect("server config");
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let mut initial = Model { nodes: vec!["pve1".to_string()], ..Model::default() };
        initial.storages.insert("local".into(), ("dir".into(), Some("/var/lib/vz".into()), "vztmpl,iso,backup".into()));
        initial.storages.insert("local-zfs".into(), ("zfspool".into(), None, "rootdir,images".into()));
        let model = Arc::new(Mutex::new(initial));
        let stop = Arc::new(AtomicBool::new(false));
        let (rec, halt, shared) = (recorded.clone(), stop.clone(), model.clone());
        std::thread::spawn(move || {
            while !halt.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((tcp, _)) => {
                        let (config, rec, credentials, model) =
                            (config.clone(), rec.clone(), credentials.clone(), shared.clone());
                        std::thread::spawn(move || serve(tcp, config, version, &credentials, &rec, &model));
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
                }
            }
        });
        PveDouble { addr, ca_pem: ca.pem(), fingerprint, version, recorded, model, stop }
    }

    /// How long each task runs before it stops.
    pub fn set_task_duration(&self, duration: std::time::Duration) {
        self.model.lock().unwrap_or_else(PoisonError::into_inner).task_duration = duration;
    }

    /// Adds a directory storage (on every node).
    pub fn add_dir_storage(&self, name: &str, path: &str, content: &str) {
        self.model
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .storages
            .insert(name.into(), ("dir".into(), Some(path.into()), content.into()));
    }

    /// Makes the next task fail with this exit status and log.
    pub fn fail_next_task(&self, exitstatus: &str, log: &[&str]) {
        self.model.lock().unwrap_or_else(PoisonError::into_inner).fail_next =
            Some((exitstatus.to_string(), log.iter().map(|l| (*l).to_string()).collect()));
    }

    /// Grants exactly these privileges on `path` (replacing what it had; none removes it).
    pub fn set_privileges(&self, path: &str, privileges: &[&str]) {
        let mut model = self.model.lock().unwrap_or_else(PoisonError::into_inner);
        if privileges.is_empty() {
            model.inventory.privileges.remove(path);
        } else {
            model.inventory.privileges.insert(path.into(), privileges.iter().map(|p| (*p).to_string()).collect());
        }
    }

    /// Removes a bridge from every node.
    pub fn remove_bridge(&self, name: &str) {
        self.model.lock().unwrap_or_else(PoisonError::into_inner).inventory.bridges.remove(name);
    }

    /// Volume IDs of the templates on the storages.
    pub fn templates(&self) -> Vec<String> {
        self.model.lock().unwrap_or_else(PoisonError::into_inner).inventory.templates.iter().cloned().collect()
    }

    /// The nodes as the node channel reaches them (commands, `pct`, the conf files).
    pub fn node_channel(&self) -> crate::node::NodeDouble {
        crate::node::NodeDouble { model: self.model.clone(), version: self.version }
    }

    /// Sets the device nodes a node has (`/dev/nvidia0`, `/dev/nvidiactl`, ...).
    pub fn set_devices(&self, node: &str, devices: &[&str]) {
        self.model
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .devices
            .insert(node.to_string(), devices.iter().map(|d| (*d).to_string()).collect());
    }

    /// A container's configuration file as the node shows it.
    pub fn conf_file(&self, id: u32) -> Option<String> {
        self.model.lock().unwrap_or_else(PoisonError::into_inner).guests.get(&id).map(crate::node::render)
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.recorded.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl Drop for PveDouble {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn params(s: &str) -> BTreeMap<String, String> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn serve(
    tcp: std::net::TcpStream,
    config: Arc<rustls::ServerConfig>,
    version: PveVersion,
    credentials: &Credentials,
    recorded: &Mutex<Vec<Recorded>>,
    model: &Mutex<Model>,
) {
    let _ = tcp.set_nonblocking(false);
    let Ok(conn) = rustls::ServerConnection::new(config) else { return };
    let mut reader = BufReader::new(rustls::StreamOwned::new(conn, tcp));
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() || line.is_empty() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or_default().to_string(), parts.next().unwrap_or_default().to_string());
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let length: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
    let mut body = vec![0u8; length];
    let _ = reader.read_exact(&mut body);
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let path = path.strip_prefix("/api2/json").unwrap_or(path).to_string();
    let mut ps = params(query);
    ps.extend(params(&String::from_utf8_lossy(&body)));
    let token = headers
        .get("authorization")
        .and_then(|a| a.strip_prefix("PVEAPIToken="))
        .and_then(|t| t.rsplit_once('='))
        .map(|(id, secret)| (id.to_string(), secret.to_string()));
    let ticket = headers
        .get("cookie")
        .and_then(|c| c.split(';').find_map(|c| c.trim().strip_prefix("PVEAuthCookie=")))
        .map(str::to_string);
    let request = Request {
        method: &method,
        path: &path,
        params: &ps,
        token: token.as_ref(),
        ticket: ticket.as_deref(),
        csrf: headers.contains_key("csrfpreventiontoken"),
    };
    let (status, reason, answer) = respond(version, credentials, model, &request);
    recorded.lock().unwrap_or_else(PoisonError::into_inner).push(Recorded {
        method,
        path,
        params: ps,
        token: token.is_some(),
        status,
    });
    let body = answer.to_string();
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let stream = reader.get_mut();
    let _ = stream.write_all(response.as_bytes());
    let _ = stream.flush();
    stream.conn.send_close_notify();
    let _ = stream.conn.complete_io(&mut stream.sock);
}

/// A decoded request.
struct Request<'a> {
    method: &'a str,
    path: &'a str,
    params: &'a BTreeMap<String, String>,
    token: Option<&'a (String, String)>,
    ticket: Option<&'a str>,
    csrf: bool,
}

fn respond(
    version: PveVersion,
    credentials: &Credentials,
    model: &Mutex<Model>,
    req: &Request<'_>,
) -> (u16, String, Value) {
    let (method, path, ps, token, ticket, csrf) = (req.method, req.path, req.params, req.token, req.ticket, req.csrf);
    let token_ok = token.is_some_and(|t| *t == credentials.token);
    let ticket_ok = ticket == Some(credentials.root_ticket.as_str()) && (method == "GET" || csrf);
    if !token_ok && !ticket_ok {
        return (401, "authentication failure".to_string(), json!({ "data": null }));
    }
    let values: BTreeMap<String, Value> = ps.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
    let endpoint = match ApiSchema::get(version).check(method, path, &values) {
        Ok(e) => e,
        Err(errors) => {
            let map: serde_json::Map<String, Value> = errors
                .into_iter()
                .map(|e| (e.param.unwrap_or_else(|| "request".into()), Value::String(e.message)))
                .collect();
            return (400, "Parameter verification failed.".to_string(), json!({ "data": null, "errors": map }));
        }
    };
    if token_ok && !endpoint.allowtoken {
        return (403, "Permission check failed (API tokens may not call this)".to_string(), json!({ "data": null }));
    }
    if token_ok && path.contains("/lxc") {
        if ps.keys().any(|k| k.starts_with("dev") && k[3..].bytes().all(|b| b.is_ascii_digit())) {
            return (
                403,
                "Permission check failed (configuring device passthrough is only allowed for root@pam)".to_string(),
                json!({ "data": null }),
            );
        }
        if ps.iter().any(|(k, v)| k.starts_with("mp") && v.split(',').next().is_some_and(|vol| vol.starts_with('/'))) {
            return (
                403,
                "Permission check failed (only root can set bind or device mount points)".to_string(),
                json!({ "data": null }),
            );
        }
        if ps.get("features").is_some_and(|f| f.split(',').any(|kv| !kv.starts_with("nesting="))) {
            return (
                403,
                "Permission check failed (changing feature flags (except nesting) is only allowed for root@pam)"
                    .to_string(),
                json!({ "data": null }),
            );
        }
    }
    if method == "GET" && path == "/version" {
        let v = match version {
            PveVersion::V8 => "8.4.5",
            PveVersion::V9 => "9.2.3",
        };
        return (200, "OK".to_string(), json!({ "data": { "version": v, "release": &v[..3], "repoid": "double" } }));
    }
    let user = token.map_or("root@pam".to_string(), |t| t.0.clone());
    let segs: Vec<&str> = path.split('/').collect();
    let mut model = model.lock().unwrap_or_else(PoisonError::into_inner);
    let mut inventory = std::mem::take(&mut model.inventory);
    let answer = inventory.handle(method, &segs, ps, &mut |node, kind, id| model.start_task(node, kind, id, &user));
    model.inventory = inventory;
    if let Some(answer) = answer {
        return answer;
    }
    if let ["", "nodes", _, "tasks", upid, what] = segs.as_slice() {
        let Some(task) = model.tasks.get(*upid) else {
            return (500, "no such task".to_string(), json!({ "data": null }));
        };
        let done = task.started.elapsed() >= task.duration;
        return match *what {
            "status" if done => (
                200,
                "OK".to_string(),
                json!({ "data": { "status": "stopped", "exitstatus": task.exitstatus, "upid": upid } }),
            ),
            "status" => (200, "OK".to_string(), json!({ "data": { "status": "running", "upid": upid } })),
            _ => {
                let lines: Vec<Value> =
                    task.log.iter().enumerate().map(|(n, t)| json!({ "n": n + 1, "t": t })).collect();
                (200, "OK".to_string(), json!({ "data": lines }))
            }
        };
    }
    if let ("GET", ["", "nodes", _, "storage"]) = (method, segs.as_slice()) {
        let list: Vec<Value> = model
            .storages
            .iter()
            .map(|(name, (kind, path, content))| json!({ "storage": name, "type": kind, "path": path, "content": content, "active": 1, "enabled": 1 }))
            .collect();
        return (200, "OK".to_string(), json!({ "data": list }));
    }
    model.handle(method, &segs, ps, ticket_ok && !token_ok, &user)
}
