//! The nodes of the double, as the node channel reaches them: the commands Phoenix's driver runs
//! on a node, played against the same containers the API shows.
//!
//! - `cat /etc/pve/lxc/<id>.conf` shows the container's file as Proxmox writes it: the
//!   description as `#` comments, settings sorted, raw `lxc.*` lines, then the changes pending
//!   until the next start (`[pve:pending]`, deletions as `delete:`) and one section per snapshot.
//! - The driver's compare-and-swap write (a shell script named `phoenix-conf` in `$0`) replaces
//!   the file when its SHA-256 is still the one given; the live section becomes the container's
//!   configuration and raw lines, `[pve:pending]` its pending changes, snapshot sections its
//!   snapshots — so a writer that touched a snapshot is seen.
//! - `cat /etc/subuid` and `cat /etc/subgid` show the node's (Proxmox's `root:100000:65536`
//!   unless set with [`crate::PveDouble::set_node_file`]); a container whose ID map maps host IDs
//!   no `root` line there allows fails to start, as LXC's `newuidmap`/`newgidmap` refuse it.
//! - The device listing (`phoenix-devices`) prints the device nodes set with
//!   [`crate::PveDouble::set_devices`].
//! - The host directories of bind mounts (`phoenix-mkdir`) are made where missing, with their
//!   owner; a container whose bind-mount source is not a directory of the node fails to start,
//!   as on Proxmox.
//! - `pct set` and `pct clone` act as `root@pam`: checked against the schema like the API, but
//!   without the checks Proxmox makes for tokens.
//! - `pct exec <id> [--keep-env 0] -- argv` runs in a running container only: the driver's read
//!   and push commands (`phoenix-read`, `phoenix-push`) read and write the container's files,
//!   anything else succeeds and is recorded. As on Proxmox, the caller's environment reaches the
//!   command unless `--keep-env 0` is given (`pct` keeps it by default, with the `PATH` the PVE
//!   command line forces); `/usr/bin/env NAME=VALUE... argv` sets variables for the command. Each
//!   command's environment is recorded ([`NodeDouble::exec_environments`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::guests::{Guest, Snapshot};
use crate::schema::{ApiSchema, PveVersion};
use crate::server::Model;

/// What a command on a node did: exit status, stdout, stderr.
pub type NodeOutput = (i32, Vec<u8>, Vec<u8>);

/// The double's nodes, reached as the node channel reaches real ones.
#[derive(Clone)]
pub struct NodeDouble {
    pub(crate) model: Arc<Mutex<Model>>,
    pub(crate) version: PveVersion,
}

/// The environment a command run with `pct exec` got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecEnvironment {
    /// The container.
    pub id: u32,
    /// The caller's environment (Phoenix's own, secrets included, when it runs on the node) was
    /// passed on: `pct exec` without `--keep-env 0`.
    pub caller_environment: bool,
    /// The command's `PATH`, if it has one.
    pub path: Option<String>,
}

/// The `PATH` the PVE command line sets for itself (and so for commands that keep its
/// environment).
pub const PVE_CLI_PATH: &str = "/sbin:/bin:/usr/sbin:/usr/bin";

/// A command run on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCommand {
    /// The node.
    pub node: String,
    /// The argument vector.
    pub argv: Vec<String>,
}

fn fail(status: i32, message: impl Into<String>) -> NodeOutput {
    (status, Vec::new(), message.into().into_bytes())
}

/// The file of a container as Proxmox writes it.
pub(crate) fn render(g: &Guest) -> String {
    let mut out = String::new();
    let live = |config: &BTreeMap<String, String>, raw: &[(String, String)], out: &mut String| {
        if let Some(d) = config.get("description") {
            for line in d.lines() {
                out.push_str(&format!("#{line}\n"));
            }
        }
        for (k, v) in config.iter().filter(|(k, _)| *k != "description") {
            out.push_str(&format!("{k}: {v}\n"));
        }
        for (k, v) in raw {
            out.push_str(&format!("{k}: {v}\n"));
        }
    };
    live(&g.config, &g.raw, &mut out);
    if !g.pending.is_empty() {
        out.push_str("\n[pve:pending]\n");
        let deleted: Vec<&str> = g.pending.iter().filter(|(_, v)| v.is_none()).map(|(k, _)| k.as_str()).collect();
        if !deleted.is_empty() {
            out.push_str(&format!("delete: {}\n", deleted.join(",")));
        }
        for (k, v) in g.pending.iter().filter_map(|(k, v)| Some((k, v.as_ref()?))) {
            out.push_str(&format!("{k}: {v}\n"));
        }
    }
    for (name, snap) in &g.snapshots {
        out.push_str(&format!("\n[{name}]\n"));
        live(&snap.config, &snap.raw, &mut out);
    }
    out
}

/// Takes a written file back into the container: live section, raw lines, snapshots.
fn absorb(g: &mut Guest, text: &str) -> Result<(), String> {
    let mut section: Option<String> = None;
    let mut config = BTreeMap::new();
    let mut raw = Vec::new();
    let mut descriptions: BTreeMap<Option<String>, Vec<String>> = BTreeMap::new();
    let mut snapshots: BTreeMap<String, Snapshot> = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        if let Some(name) = t.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            section = Some(name.to_string());
            snapshots.entry(name.to_string()).or_default();
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            descriptions.entry(section.clone()).or_default().push(comment.to_string());
            continue;
        }
        let (k, v) = line.split_once(':').ok_or_else(|| format!("line {}: {line:?} is not `key: value`", n + 1))?;
        let (k, v) = (k.trim().to_string(), v.trim().to_string());
        match &section {
            None if k.starts_with("lxc.") => raw.push((k, v)),
            None => {
                config.insert(k, v);
            }
            Some(s) if k.starts_with("lxc.") => snapshots.entry(s.clone()).or_default().raw.push((k, v)),
            Some(s) => {
                snapshots.entry(s.clone()).or_default().config.insert(k, v);
            }
        }
    }
    for (section, lines) in descriptions {
        let target = match section {
            None => &mut config,
            Some(s) => &mut snapshots.entry(s).or_default().config,
        };
        target.insert("description".into(), lines.join("\n"));
    }
    snapshots.remove("pending");
    g.pending = snapshots.remove("pve:pending").map_or_else(BTreeMap::new, |p| {
        let deleted = p.config.get("delete").map(|d| d.split(',').map(|k| (k.trim().to_string(), None)).collect());
        let set = p.config.into_iter().filter(|(k, _)| k != "delete").map(|(k, v)| (k, Some(v)));
        deleted.unwrap_or_else(Vec::new).into_iter().chain(set).collect()
    });
    g.config = config;
    g.raw = raw;
    g.snapshots = snapshots;
    Ok(())
}

/// `--key value` pairs and `--delete a,b` of a `pct` command line.
fn options(args: &[String]) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let key = a.strip_prefix("--").ok_or_else(|| format!("unexpected argument {a:?}"))?;
        let value = it.next().ok_or_else(|| format!("option --{key} has no value"))?;
        out.insert(key.to_string(), value.clone());
    }
    Ok(out)
}

impl NodeDouble {
    /// Runs a command on `node` as the node channel would, feeding `input` on stdin.
    pub fn run(&self, node: &str, argv: &[String], input: Option<&[u8]>) -> NodeOutput {
        let mut model = self.model.lock().unwrap_or_else(PoisonError::into_inner);
        if !model.nodes.iter().any(|n| n == node) {
            return fail(255, format!("ssh: Could not resolve hostname {node}"));
        }
        if model.offline.contains(node) {
            return fail(255, format!("ssh: connect to host {node} port 22: No route to host"));
        }
        model.commands.push(NodeCommand { node: node.to_string(), argv: argv.to_vec() });
        let label = argv.get(3).map(String::as_str);
        let conf_id = |path: &str| {
            path.strip_prefix("/etc/pve/lxc/").and_then(|p| p.strip_suffix(".conf")).and_then(|i| i.parse::<u32>().ok())
        };
        // `pct clone` returns once its task has ended.
        let blocking = argv.get(1).is_some_and(|a| a == "clone");
        let wait = if blocking { model.task_duration } else { std::time::Duration::ZERO };
        let out = match (argv.first().map(String::as_str), argv.get(1).map(String::as_str)) {
            (Some("true"), _) => (0, Vec::new(), Vec::new()),
            (Some("cat"), Some(path)) => match conf_id(path).and_then(|id| model.guests.get(&id)) {
                Some(g) => (0, render(g).into_bytes(), Vec::new()),
                None => match model.node_file(node, path) {
                    Some(text) => (0, text.into_bytes(), Vec::new()),
                    None => fail(1, format!("cat: {path}: No such file or directory")),
                },
            },
            (Some("/bin/sh"), Some("-c")) if label == Some("phoenix-conf") => {
                let (Some(path), Some(expected)) = (argv.get(4), argv.get(5)) else { return fail(2, "usage") };
                let Some(g) = conf_id(path).and_then(|id| model.guests.get_mut(&id)) else {
                    return fail(1, format!("sh: {path}: No such file or directory"));
                };
                let have: String = Sha256::digest(render(g).as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
                if have != *expected {
                    return fail(4, format!("{path} changed since it was read"));
                }
                let text = String::from_utf8_lossy(input.unwrap_or_default()).into_owned();
                match absorb(g, &text) {
                    Ok(()) => (0, Vec::new(), Vec::new()),
                    Err(e) => fail(1, format!("parse error in {path}: {e}")),
                }
            }
            (Some("/bin/sh"), Some("-c")) if label == Some("phoenix-mkdir") => {
                let mut made = String::new();
                for pair in argv[4..].chunks(2) {
                    if let [path, owner] = pair
                        && !model.host_dirs.contains_key(path)
                    {
                        model.host_dirs.insert(path.clone(), owner.clone());
                        made.push_str(&format!("{path}\n"));
                    }
                }
                (0, made.into_bytes(), Vec::new())
            }
            (Some("/bin/sh"), Some("-c")) if label == Some("phoenix-devices") => {
                let list = model.devices.get(node).cloned().unwrap_or_default();
                (0, list.iter().map(|d| format!("{d}\n")).collect::<String>().into_bytes(), Vec::new())
            }
            (Some("pct"), Some("set")) => self.pct_set(&mut model, node, &argv[2..]),
            (Some("pct"), Some("clone")) => self.pct_clone(&mut model, node, &argv[2..]),
            (Some("pct"), Some("exec")) => exec(&mut model, node, &argv[2..], input),
            (Some(program), _) => fail(127, format!("sh: 1: {program}: not found")),
            (None, _) => fail(2, "empty command"),
        };
        drop(model);
        std::thread::sleep(wait);
        out
    }

    /// Every command run on the nodes so far.
    pub fn commands(&self) -> Vec<NodeCommand> {
        self.model.lock().unwrap_or_else(PoisonError::into_inner).commands.clone()
    }

    /// The environment each `pct exec` gave its command, in order.
    pub fn exec_environments(&self) -> Vec<ExecEnvironment> {
        self.model.lock().unwrap_or_else(PoisonError::into_inner).exec_environments.clone()
    }

    /// A file inside a container, as the driver's push left it.
    pub fn file(&self, id: u32, path: &str) -> Option<Vec<u8>> {
        self.model.lock().unwrap_or_else(PoisonError::into_inner).files.get(&(id, path.to_string())).cloned()
    }

    /// Checks a `pct` command's options against the API schema, as `pct` does.
    fn check(&self, method: &str, path: &str, opts: &BTreeMap<String, String>) -> Result<(), NodeOutput> {
        let values: BTreeMap<String, Value> = opts.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
        ApiSchema::get(self.version).check(method, path, &values).map(|_| ()).map_err(|errors| {
            let text: Vec<String> =
                errors.iter().map(|e| format!("{}: {}", e.param.as_deref().unwrap_or("-"), e.message)).collect();
            fail(255, format!("400 Parameter verification failed.\n{}", text.join("\n")))
        })
    }

    fn pct_set(&self, model: &mut Model, node: &str, args: &[String]) -> NodeOutput {
        let Some(id) = args.first() else { return fail(2, "pct set: no vmid") };
        let opts = match options(&args[1..]) {
            Ok(o) => o,
            Err(e) => return fail(2, e),
        };
        let path = format!("/nodes/{node}/lxc/{id}/config");
        if let Err(refused) = self.check("PUT", &path, &opts) {
            return refused;
        }
        let segs: Vec<&str> = path.split('/').collect();
        answer(model.handle("PUT", &segs, &opts, true, "root@pam"))
    }

    fn pct_clone(&self, model: &mut Model, node: &str, args: &[String]) -> NodeOutput {
        let (Some(source), Some(newid)) = (args.first(), args.get(1)) else { return fail(2, "pct clone: usage") };
        let mut opts = match options(&args[2..]) {
            Ok(o) => o,
            Err(e) => return fail(2, e),
        };
        opts.insert("newid".into(), newid.clone());
        let src_node = source.parse::<u32>().ok().and_then(|s| model.guests.get(&s)).map(|g| g.node.clone());
        let path = format!("/nodes/{}/lxc/{source}/clone", src_node.as_deref().unwrap_or(node));
        if let Err(refused) = self.check("POST", &path, &opts) {
            return refused;
        }
        let segs: Vec<&str> = path.split('/').collect();
        answer(model.handle("POST", &segs, &opts, true, "root@pam"))
    }
}

fn answer((status, reason, body): crate::guests::Answer) -> NodeOutput {
    if status == 200 {
        let upid = body["data"].as_str().map(|u| format!("{u}\n")).unwrap_or_default();
        (0, upid.into_bytes(), Vec::new())
    } else {
        fail(255, reason)
    }
}

fn exec(model: &mut Model, node: &str, args: &[String], input: Option<&[u8]>) -> NodeOutput {
    let Some(id) = args.first().and_then(|i| i.parse::<u32>().ok()) else { return fail(2, "pct exec: no vmid") };
    let Some(g) = model.guests.get(&id).filter(|g| g.node == node) else {
        return fail(2, format!("Configuration file 'nodes/{node}/lxc/{id}.conf' does not exist"));
    };
    // pct dies here; Perl's `die` status comes from errno, not a fixed code (25 is one it takes).
    if !g.running {
        return fail(25, format!("container '{id}' not running!"));
    }
    let options: Vec<&String> = args.iter().skip(1).take_while(|a| *a != "--").collect();
    let caller_environment = !options.windows(2).any(|w| w[0] == "--keep-env" && w[1] == "0");
    let mut inner = args.iter().skip_while(|a| *a != "--").skip(1).cloned().collect::<Vec<_>>();
    let mut path = caller_environment.then(|| PVE_CLI_PATH.to_string());
    if inner.first().is_some_and(|p| p == "/usr/bin/env") {
        inner.remove(0);
        while inner.first().is_some_and(|a| a.contains('=') && !a.starts_with('/')) {
            let assignment = inner.remove(0);
            if let Some(p) = assignment.strip_prefix("PATH=") {
                path = Some(p.to_string());
            }
        }
    }
    model.exec_environments.push(ExecEnvironment { id, caller_environment, path });
    match inner.get(3).map(String::as_str) {
        Some("phoenix-read") => match inner.get(4).and_then(|p| model.files.get(&(id, p.clone()))) {
            Some(content) => (0, content.clone(), Vec::new()),
            None => (3, Vec::new(), Vec::new()),
        },
        Some("phoenix-push") => {
            let Some(path) = inner.get(4) else { return fail(2, "usage") };
            model.files.insert((id, path.clone()), input.unwrap_or_default().to_vec());
            (0, Vec::new(), Vec::new())
        }
        _ => (0, Vec::new(), Vec::new()),
    }
}
