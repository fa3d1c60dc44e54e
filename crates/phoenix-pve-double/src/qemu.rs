//! The QEMU VMs the double keeps, as Proxmox keeps them: created with a disk imported from a
//! volume (`scsi0=<storage>:0,import-from=<volume>`, the disk as large as the image), new disks
//! allocated, a cloud-init drive (`<storage>:cloudinit`), generated MACs shown as
//! `virtio=XX:..`, a `digest` that must match on updates, `cipassword` shown masked, locks while
//! tasks run, snapshots, full clones of a snapshot (which must exist), templates (as
//! qemu-server makes them: disks become base volumes after the answer; cloned linked unless
//! `full`), disks that only grow, start, shutdown and stop, destroy; and a guest agent that
//! answers only while the VM runs, after a boot delay: `exec` records the command (a few commands
//! the driver sends to place files are played: creating, joining, `chmod`/`chown`, `rm -rf`),
//! `exec-status`, `file-write` stores the file, `file-read` returns it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::guests::Answer;

/// A command run through the agent.
#[derive(Debug, Clone)]
struct Exec {
    exitcode: i64,
    stdout: String,
    /// Status reads that still answer `exited: 0`.
    pending: u32,
}

/// One VM.
#[derive(Debug, Clone)]
pub(crate) struct Vm {
    pub node: String,
    pub config: BTreeMap<String, String>,
    /// Since when it runs.
    pub started: Option<Instant>,
    pub snapshots: BTreeMap<String, BTreeMap<String, String>>,
    /// The files inside the VM at each snapshot: what a rollback restores.
    snapshot_files: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    pub lock: Option<(String, Instant)>,
    pub firewall: crate::firewall::Firewall,
    /// Files inside the VM, as the agent wrote them.
    pub files: BTreeMap<String, Vec<u8>>,
    /// Mode and owner the driver gave files (`chmod`, `chown` through the agent).
    pub modes: BTreeMap<String, (String, String)>,
    /// Commands run through the agent, in order.
    pub commands: Vec<Vec<String>>,
    execs: BTreeMap<i64, Exec>,
    /// When the conversion of its disks into base volumes finishes (`template: 1` is written
    /// at once, the disks are converted by a task after Proxmox answered).
    converting: Option<Instant>,
}

impl Vm {
    pub(crate) fn is_template(&self) -> bool {
        self.config.get("template").is_some_and(|t| t == "1")
    }

    pub(crate) fn locked(&self) -> Option<&str> {
        self.lock.as_ref().filter(|(_, until)| *until > Instant::now()).map(|(kind, _)| kind.as_str())
    }

    fn digest(&self) -> String {
        let text: String = self.config.iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
        Sha256::digest(text.as_bytes()).iter().take(20).map(|b| format!("{b:02x}")).collect()
    }
}

/// The VMs, the agent's behaviour, and the disk images on the storages.
#[derive(Debug, Default)]
pub(crate) struct Vms {
    pub vms: BTreeMap<u32, Vm>,
    /// Disk images that can be imported (`<storage>:import/<file>`), with their size in bytes.
    pub images: BTreeMap<String, u64>,
    /// How long after a start the agent answers.
    pub agent_delay: Duration,
    /// VMs whose agent never answers (not installed in the image).
    pub silent: BTreeSet<u32>,
    /// What a program run through the agent exits with and prints, by VM and program.
    pub outputs: BTreeMap<(u32, String), (i64, String)>,
    next_pid: i64,
}

/// Keys only `root@pam` may set on a VM (qemu-server's `check_vm_modify_config_perm`: keys of
/// no privilege class).
const ROOT_ONLY: &[&str] = &[
    "affinity",
    "amd-sev",
    "arch",
    "args",
    "hookscript",
    "hugepages",
    "ivshmem",
    "keephugepages",
    "lock",
    "spice_enhancements",
    "vmgenid",
    "intel-tdx",
    "skiplock",
];

fn numbered(key: &str, prefix: &str) -> bool {
    key.strip_prefix(prefix).is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

pub(crate) fn is_disk(key: &str) -> bool {
    ["scsi", "virtio", "sata", "ide", "efidisk", "tpmstate"].iter().any(|p| numbered(key, p))
}

/// Why Proxmox refuses these parameters of a VM request to an API token, if it does.
pub(crate) fn refused_to_token(ps: &BTreeMap<String, String>) -> Option<String> {
    for (k, v) in ps {
        if ROOT_ONLY.contains(&k.as_str()) || numbered(k, "parallel") || numbered(k, "hostpci") {
            return Some(format!("only root can set '{k}' config"));
        }
        if numbered(k, "usb") && !v.contains("mapping=") {
            return Some(format!("only root can set '{k}' config for real devices"));
        }
        if numbered(k, "serial") && v.starts_with("/dev/") {
            return Some(format!("only root can set '{k}' config for real devices"));
        }
        if is_disk(k) {
            let file = v.split(',').next().unwrap_or_default();
            let import = v.split(',').find_map(|p| p.strip_prefix("import-from="));
            if file.starts_with('/') || import.is_some_and(|i| i.starts_with('/')) {
                return Some("Only root can pass arbitrary filesystem paths.".to_string());
            }
            if v.split(',').any(|p| p.starts_with("romfile=")) {
                return Some(format!("only root can set 'romfile' of '{k}'"));
            }
        }
    }
    None
}

fn fail(message: String) -> Answer {
    (500, message, json!({ "data": null }))
}

fn missing(node: &str, vmid: &str) -> Answer {
    fail(format!("Configuration file 'nodes/{node}/qemu-server/{vmid}.conf' does not exist"))
}

fn mac(seed: u64) -> String {
    format!("BC:24:11:{:02X}:{:02X}:{:02X}", (seed >> 16) & 0xff, (seed >> 8) & 0xff, seed & 0xff)
}

/// Proxmox's size text: whole GiB as `NG`, else MiB as `NM`.
fn size_text(bytes: u64) -> String {
    let mib = bytes.div_ceil(1024 * 1024);
    if mib.is_multiple_of(1024) { format!("{}G", mib / 1024) } else { format!("{mib}M") }
}

/// A size in bytes (`8G`, `2252M`, `1T`, bytes without a unit).
fn bytes_of(size: &str) -> Option<u64> {
    let digits = size.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let n: f64 = digits.parse().ok()?;
    let factor = match &size[digits.len()..] {
        "" => 1.0,
        "K" => 1024.0,
        "M" => 1024.0 * 1024.0,
        "G" => 1024.0 * 1024.0 * 1024.0,
        "T" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some((n * factor) as u64)
}

/// The network models of `net[n]` (each also an alias for `macaddr`).
const MODELS: &[&str] = &[
    "virtio",
    "e1000",
    "e1000e",
    "vmxnet3",
    "rtl8139",
    "e1000-82540em",
    "e1000-82544gc",
    "e1000-82545em",
    "i82551",
    "i82557b",
    "i82559er",
    "ne2k_isa",
    "ne2k_pci",
    "pcnet",
];

/// `net[n]` as Proxmox stores it: `<model>=<MAC>` first (generated when not given), then the rest.
fn stored_net(value: &str, seed: &mut u64) -> String {
    let mut model = None;
    let mut rest = Vec::new();
    for part in value.split(',') {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        if MODELS.contains(&k) {
            model = Some((k.to_string(), (!v.is_empty()).then(|| v.to_string())));
        } else if k == "model" {
            model = Some((v.to_string(), model.and_then(|(_, m)| m)));
        } else if k == "macaddr" {
            let name = model.as_ref().map_or("virtio".to_string(), |(m, _)| m.clone());
            model = Some((name, Some(v.to_string())));
        } else {
            rest.push(part.to_string());
        }
    }
    let (name, given) = model.unwrap_or(("virtio".into(), None));
    let mac = given.unwrap_or_else(|| {
        *seed += 1;
        mac(*seed)
    });
    let mut out = vec![format!("{name}={}", mac.to_ascii_uppercase())];
    out.extend(rest);
    out.join(",")
}

/// A VM's disk as a clone of `source` has it: a copy (`full`, on `storage` when given), or a
/// linked clone of a template's base volume (`<base>/vm-<new>-disk-<n>`).
fn cloned_disk(value: &str, source: u32, new: u32, n: u32, full: bool, storage: Option<&str>) -> String {
    let (file, rest) = value.split_once(',').unwrap_or((value, ""));
    let (from, volname) = file.split_once(':').unwrap_or((file, ""));
    let rest = if rest.is_empty() { String::new() } else { format!(",{rest}") };
    if volname.ends_with("-cloudinit") {
        return format!("{}:vm-{new}-cloudinit{rest}", storage.unwrap_or(from));
    }
    if full {
        format!("{}:vm-{new}-disk-{n}{rest}", storage.unwrap_or(from))
    } else {
        let base =
            volname.split('/').next().unwrap_or(volname).replace(&format!("vm-{source}-"), &format!("base-{source}-"));
        format!("{from}:{base}/vm-{new}-disk-{n}{rest}")
    }
}

impl Vms {
    /// Finishes the conversions into templates whose tasks are done: each disk becomes a base
    /// volume (`base-<id>-disk-<n>`).
    pub(crate) fn settle(&mut self) {
        let now = Instant::now();
        for (id, vm) in self.vms.iter_mut().filter(|(_, v)| v.converting.is_some_and(|at| at <= now)) {
            vm.converting = None;
            let own = format!("vm-{id}-disk-");
            for (_, v) in vm.config.iter_mut().filter(|(k, v)| is_disk(k) && !v.contains("media=cdrom")) {
                *v = v.replacen(&own, &format!("base-{id}-disk-"), 1);
            }
        }
    }

    /// `/cluster/resources` rows of the VMs.
    pub(crate) fn resources(&self) -> Vec<Value> {
        self.vms
            .iter()
            .map(|(vmid, vm)| {
                json!({ "id": format!("qemu/{vmid}"), "vmid": vmid, "type": "qemu", "node": vm.node,
                        "name": vm.config.get("name"), "status": if vm.started.is_some() { "running" } else { "stopped" },
                        "template": u8::from(vm.config.get("template").is_some_and(|t| t == "1")) })
            })
            .collect()
    }

    /// `import` content of a storage.
    pub(crate) fn content(&self, storage: &str) -> Vec<Value> {
        self.images
            .iter()
            .filter(|(v, _)| v.split(':').next() == Some(storage))
            .map(|(v, size)| {
                let format = if v.ends_with(".qcow2") || v.ends_with(".img") { "qcow2" } else { "raw" };
                json!({ "volid": v, "content": "import", "format": format, "size": size })
            })
            .collect()
    }

    /// A disk as Proxmox stores it once allocated: `<storage>:<N>` allocates N GiB, and
    /// `<storage>:0,import-from=<volume>` a disk holding the image; `<storage>:cloudinit` the
    /// cloud-init drive. Errors as Proxmox gives them.
    fn stored_disk(&self, vmid: u32, key: &str, value: &str, disks: &mut u32) -> Result<String, String> {
        let mut parts = value.split(',');
        let file = parts.next().unwrap_or_default();
        let mut rest: Vec<String> = Vec::new();
        let mut import = None;
        for p in parts {
            match p.strip_prefix("import-from=") {
                Some(i) => import = Some(i.to_string()),
                None => rest.push(p.to_string()),
            }
        }
        let Some((storage, amount)) = file.split_once(':') else { return Ok(value.to_string()) };
        if amount == "cloudinit" {
            return Ok(format!("{storage}:vm-{vmid}-cloudinit,media=cdrom"));
        }
        let Ok(gib) = amount.parse::<u64>() else {
            if import.is_some() {
                return Err(format!(
                    "{key}: 'import-from' requires special syntax - use <storage ID>:0,import-from=<source>"
                ));
            }
            return Ok(value.to_string());
        };
        let bytes = match &import {
            Some(_) if gib != 0 => {
                return Err(format!(
                    "{key}: 'import-from' requires special syntax - use <storage ID>:0,import-from=<source>"
                ));
            }
            Some(source) => *self.images.get(source).ok_or_else(|| format!("volume '{source}' does not exist"))?,
            None => gib * 1024 * 1024 * 1024,
        };
        let n = *disks;
        *disks += 1;
        rest.retain(|p| !p.starts_with("size="));
        let rest: String = rest.iter().map(|p| format!(",{p}")).collect();
        Ok(format!("{storage}:vm-{vmid}-disk-{n}{rest},size={}", size_text(bytes)))
    }

    fn store(&self, vmid: u32, key: &str, value: &str, seed: &mut u64, disks: &mut u32) -> Result<String, String> {
        if numbered(key, "net") {
            return Ok(stored_net(value, seed));
        }
        if is_disk(key) {
            return self.stored_disk(vmid, key, value, disks);
        }
        if key == "tags" {
            let mut t: Vec<String> =
                value.split([';', ',', ' ']).filter(|t| !t.is_empty()).map(str::to_lowercase).collect();
            t.sort();
            t.dedup();
            return Ok(t.join(";"));
        }
        Ok(value.to_string())
    }

    /// Handles the VM endpoints; `None` for a request it does not model. `taken` says whether a
    /// container holds an ID; `task` starts a task (node, worker type, ID) and gives its UPID.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn handle(
        &mut self,
        method: &str,
        segs: &[&str],
        ps: &BTreeMap<String, String>,
        busy: Duration,
        taken: &dyn Fn(u32) -> bool,
        task: &mut dyn FnMut(&str, &str, &str) -> String,
    ) -> Option<Answer> {
        let seed = &mut (self.vms.len() as u64 * 104_729 + 31);
        let ok = |v: Value| (200, "OK".to_string(), json!({ "data": v }));
        let control = |k: &str| matches!(k, "delete" | "digest" | "node" | "vmid" | "background_delay" | "revert");
        Some(match (method, segs) {
            ("POST", ["", "nodes", node, "qemu"]) => {
                let vmid = ps.get("vmid").cloned().unwrap_or_default();
                let Ok(n) = vmid.parse::<u32>() else { return Some(fail(format!("invalid vmid {vmid}"))) };
                if self.vms.contains_key(&n) || taken(n) {
                    return Some(fail(format!("unable to create VM {vmid} - VM {vmid} already exists")));
                }
                let create_only = ["vmid", "start", "storage", "pool", "unique", "live-restore", "archive", "force"];
                let mut config = BTreeMap::new();
                let mut disks = 0;
                for (k, v) in ps.iter().filter(|(k, _)| !create_only.contains(&k.as_str()) && !control(k)) {
                    match self.store(n, k, v, seed, &mut disks) {
                        Ok(stored) => {
                            config.insert(k.clone(), stored);
                        }
                        Err(e) => return Some(fail(e)),
                    }
                }
                let vm = Vm {
                    node: (*node).to_string(),
                    config,
                    started: None,
                    snapshots: BTreeMap::new(),
                    snapshot_files: BTreeMap::new(),
                    lock: Some(("create".into(), Instant::now() + busy)),
                    firewall: Default::default(),
                    files: BTreeMap::new(),
                    modes: BTreeMap::new(),
                    commands: Vec::new(),
                    execs: BTreeMap::new(),
                    converting: None,
                };
                self.vms.insert(n, vm);
                ok(json!(task(node, "qmcreate", &vmid)))
            }
            (_, ["", "nodes", node, "qemu", vmid, rest @ ..]) => {
                let Some(n) = vmid.parse::<u32>().ok() else { return Some(missing(node, vmid)) };
                let Some(vm) = self.vms.get(&n).filter(|v| v.node == *node) else { return Some(missing(node, vmid)) };
                let running = vm.started.is_some();
                match (method, rest) {
                    ("GET", ["config"]) => {
                        let mut c: serde_json::Map<String, Value> = vm
                            .config
                            .iter()
                            .map(|(k, v)| (k.clone(), json!(if k == "cipassword" { "**********" } else { v.as_str() })))
                            .collect();
                        c.insert("digest".into(), json!(vm.digest()));
                        if let Some(kind) = vm.locked() {
                            c.insert("lock".into(), json!(kind));
                        }
                        ok(Value::Object(c))
                    }
                    (m @ ("PUT" | "POST"), ["config"]) => {
                        if let Some(kind) = vm.locked() {
                            return Some(fail(format!("VM is locked ({kind})")));
                        }
                        if ps.get("digest").is_some_and(|d| *d != vm.digest()) {
                            return Some(fail(
                                "detected modified configuration - file changed by other user? Try again.".into(),
                            ));
                        }
                        let delete: Vec<String> = ps
                            .get("delete")
                            .map(|d| d.split([',', ';', ' ']).filter(|k| !k.is_empty()).map(str::to_string).collect())
                            .unwrap_or_default();
                        if let Some(both) = delete.iter().find(|k| ps.contains_key(*k)) {
                            return Some((
                                400,
                                "Parameter verification failed.".into(),
                                json!({ "data": null, "errors": { "delete": format!("you can't use '-{both}' and '-delete {both}' at the same time") } }),
                            ));
                        }
                        let mut disks = vm.config.keys().filter(|k| is_disk(k)).count() as u32 + 1;
                        let mut updates = Vec::new();
                        for (k, v) in ps.iter().filter(|(k, _)| !control(k)) {
                            match self.store(n, k, v, seed, &mut disks) {
                                Ok(stored) => updates.push((k.clone(), stored)),
                                Err(e) => return Some(fail(e)),
                            }
                        }
                        let vm = self.vms.get_mut(&n)?;
                        for k in &delete {
                            vm.config.remove(k);
                        }
                        vm.config.extend(updates);
                        if m == "PUT" { ok(Value::Null) } else { ok(json!(task(node, "qmconfig", vmid))) }
                    }
                    ("PUT", ["resize"]) => {
                        let disk = ps.get("disk").cloned().unwrap_or_default();
                        let size = ps.get("size").cloned().unwrap_or_default();
                        let Some(current) = vm.config.get(&disk).cloned() else {
                            return Some(fail(format!("disk '{disk}' does not exist")));
                        };
                        let old =
                            current.split(',').find_map(|p| p.strip_prefix("size=")).and_then(bytes_of).unwrap_or(0);
                        let new = match bytes_of(size.trim_start_matches('+')) {
                            Some(b) if size.starts_with('+') => old + b,
                            Some(b) => b,
                            None => return Some(fail(format!("invalid size '{size}'"))),
                        };
                        if new < old {
                            return Some(fail(format!(
                                "shrinking disks is not supported (from {} to {})",
                                size_text(old),
                                size_text(new)
                            )));
                        }
                        let resized: Vec<String> = current
                            .split(',')
                            .map(|p| {
                                if p.starts_with("size=") { format!("size={}", size_text(new)) } else { p.to_string() }
                            })
                            .collect();
                        self.vms.get_mut(&n)?.config.insert(disk, resized.join(","));
                        ok(json!(task(node, "resize", vmid)))
                    }
                    ("GET", ["status", "current"]) => ok(json!({
                        "vmid": n, "status": if running { "running" } else { "stopped" }, "name": vm.config.get("name"),
                        "agent": u8::from(vm.config.get("agent").is_some_and(|a| a.starts_with('1') || a.contains("enabled=1"))),
                        "ha": { "managed": 0 }
                    })),
                    ("POST", ["status", action]) => {
                        if *action == "start" && vm.config.get("template").is_some_and(|t| t == "1") {
                            return Some(fail("you can't start a vm if it's a template".into()));
                        }
                        if *action == "start" && running {
                            return Some(fail(format!("VM {vmid} already running")));
                        }
                        let vm = self.vms.get_mut(&n)?;
                        vm.started = match *action {
                            "start" | "resume" => Some(Instant::now()),
                            "reboot" | "reset" => vm.started.map(|_| Instant::now()),
                            _ => None,
                        };
                        ok(json!(task(node, &format!("qm{action}"), vmid)))
                    }
                    ("GET", ["snapshot"]) => {
                        let mut list: Vec<Value> = vm
                            .snapshots
                            .iter()
                            .map(|(s, c)| json!({ "name": s, "description": c.get("description").cloned().unwrap_or_default() }))
                            .collect();
                        list.push(
                            json!({ "name": "current", "description": "You are here!", "running": u8::from(running) }),
                        );
                        ok(Value::Array(list))
                    }
                    // qemu-server's `template`: refused while locked, with snapshots, for a
                    // template (but for one more `disk`), and while running; `template: 1` is
                    // written at once, the disks are converted by a task after the answer.
                    ("POST", ["template"]) => {
                        if let Some(kind) = vm.locked() {
                            return Some(fail(format!("VM is locked ({kind})")));
                        }
                        if !vm.snapshots.is_empty() {
                            return Some(fail("unable to create template, because VM contains snapshots".into()));
                        }
                        if vm.is_template() && !ps.contains_key("disk") {
                            return Some(fail("you can't convert a template to a template".into()));
                        }
                        if running {
                            return Some(fail("you can't convert a VM to template if VM is running".into()));
                        }
                        let vm = self.vms.get_mut(&n)?;
                        vm.config.insert("template".into(), "1".into());
                        vm.converting = Some(Instant::now() + busy);
                        let _ = task(node, "qmtemplate", vmid);
                        ok(Value::Null)
                    }
                    ("POST", ["snapshot"]) => {
                        let name = ps.get("snapname").cloned().unwrap_or_default();
                        if vm.is_template() {
                            return Some(fail("you can't take a snapshot if it's a template".into()));
                        }
                        if vm.snapshots.contains_key(&name) {
                            return Some(fail(format!("snapshot name '{name}' already used")));
                        }
                        if let Some(kind) = vm.locked() {
                            return Some(fail(format!("VM is locked ({kind})")));
                        }
                        let vm = self.vms.get_mut(&n)?;
                        let mut copy = crate::guests::snapshot_config(&vm.config);
                        // The snapshot's own description: its comment, from the parameter.
                        if let Some(d) = ps.get("description").filter(|d| !d.is_empty()) {
                            copy.insert("description".into(), d.clone());
                        }
                        vm.snapshots.insert(name.clone(), copy);
                        vm.snapshot_files.insert(name.clone(), vm.files.clone());
                        vm.config.insert("parent".into(), name);
                        vm.lock = Some(("snapshot".into(), Instant::now() + busy));
                        ok(json!(task(node, "qmsnapshot", vmid)))
                    }
                    // qemu-server's rollback (pve-guest-common's `snapshot_rollback`): what its
                    // task refuses was answered before; the VM is stopped (the snapshot has no
                    // RAM state), gets the snapshot's configuration and disks, and is started
                    // again only with `start`.
                    ("POST", ["snapshot", snapname, "rollback"]) => {
                        let Some(snap) = vm.snapshots.get(*snapname).cloned() else {
                            return Some(fail(format!("snapshot '{snapname}' does not exist")));
                        };
                        let vm = self.vms.get_mut(&n)?;
                        vm.config = crate::guests::rolled_back_config(&vm.config, &snap, snapname);
                        vm.files = vm.snapshot_files.get(*snapname).cloned().unwrap_or_default();
                        vm.started = ps.get("start").filter(|s| *s == "1" || *s == "true").map(|_| Instant::now());
                        vm.lock = Some(("rollback".into(), Instant::now() + busy));
                        ok(json!(task(node, "qmrollback", vmid)))
                    }
                    ("DELETE", ["snapshot", snapname]) => {
                        let vm = self.vms.get_mut(&n)?;
                        let Some(snap) = vm.snapshots.remove(*snapname) else {
                            return Some(fail(format!("snapshot '{snapname}' does not exist")));
                        };
                        vm.snapshot_files.remove(*snapname);
                        let configs = std::iter::once(&mut vm.config).chain(vm.snapshots.values_mut());
                        crate::guests::reparent(configs, snapname, snap.get("parent").map(String::as_str));
                        vm.lock = Some(("snapshot-delete".into(), Instant::now() + busy));
                        ok(json!(task(node, "qmdelsnapshot", vmid)))
                    }
                    ("POST", ["clone"]) => {
                        let newid = ps.get("newid").cloned().unwrap_or_default();
                        let Ok(new) = newid.parse::<u32>() else { return Some(fail(format!("invalid newid {newid}"))) };
                        if self.vms.contains_key(&new) || taken(new) {
                            return Some(fail(format!("unable to create VM {newid}: config file already exists")));
                        }
                        if vm.locked().is_some() || vm.converting.is_some() {
                            return Some(fail(format!(
                                "can't lock file '/var/lock/qemu-server/lock-{vmid}.conf' - got timeout"
                            )));
                        }
                        // qemu-server's clone rules: a template is cloned linked unless `full`; a
                        // linked clone needs a template and takes no `storage`.
                        let template = vm.is_template();
                        let full = ps.get("full").map_or(!template, |f| f == "1" || f == "true");
                        if !full && ps.contains_key("storage") {
                            return Some(fail("parameter 'storage' not allowed for linked clones".into()));
                        }
                        if !full && !template {
                            return Some(fail("Linked clone feature is not supported for drive 'scsi0'".into()));
                        }
                        let source = match ps.get("snapname") {
                            Some(s) => match vm.snapshots.get(s) {
                                Some(c) => c.clone(),
                                None => return Some(fail(format!("snapshot '{s}' does not exist"))),
                            },
                            None => vm.config.clone(),
                        };
                        // A VM that is not a Proxmox template is always copied in full.
                        let storage = ps.get("storage").cloned();
                        let mut config = BTreeMap::new();
                        let mut disks = 0;
                        for (k, v) in source
                            .into_iter()
                            .filter(|(k, _)| k != "template" && k != "parent" && !numbered(k, "unused"))
                        {
                            let value = if numbered(&k, "net") {
                                let without: Vec<&str> = v.split(',').skip(1).collect();
                                let model = v.split(',').next().and_then(|m| m.split('=').next()).unwrap_or("virtio");
                                *seed += 1;
                                let mut parts = vec![format!("{model}={}", mac(*seed + u64::from(new)))];
                                parts.extend(without.iter().map(|s| (*s).to_string()));
                                parts.join(",")
                            } else if is_disk(&k) {
                                let d = disks;
                                if !v.contains("-cloudinit") {
                                    disks += 1;
                                }
                                cloned_disk(&v, n, new, d, full, storage.as_deref())
                            } else {
                                v
                            };
                            config.insert(k, value);
                        }
                        if let Some(name) = ps.get("name") {
                            config.insert("name".into(), name.clone());
                        }
                        if let Some(d) = ps.get("description").filter(|d| !d.is_empty()) {
                            config.insert("description".into(), d.clone());
                        }
                        let firewall = vm.firewall.clone();
                        let until = Instant::now() + busy;
                        let target = ps.get("target").map_or(*node, String::as_str).to_string();
                        if let Some(src) = self.vms.get_mut(&n) {
                            src.lock = Some(("clone".into(), until));
                        }
                        let clone = Vm {
                            node: target,
                            config,
                            started: None,
                            snapshots: BTreeMap::new(),
                            snapshot_files: BTreeMap::new(),
                            lock: Some(("create".into(), until)),
                            firewall,
                            files: BTreeMap::new(),
                            modes: BTreeMap::new(),
                            commands: Vec::new(),
                            execs: BTreeMap::new(),
                            converting: None,
                        };
                        self.vms.insert(new, clone);
                        ok(json!(task(node, "qmclone", vmid)))
                    }
                    (_, ["firewall", sub @ ..]) => {
                        return crate::firewall::handle(
                            crate::firewall::Scope::Guest,
                            &mut self.vms.get_mut(&n)?.firewall,
                            method,
                            sub,
                            ps,
                        );
                    }
                    (_, ["agent", call]) => {
                        let answering =
                            vm.started.is_some_and(|t| t.elapsed() >= self.agent_delay) && !self.silent.contains(&n);
                        if !running {
                            return Some(fail(format!("VM {vmid} is not running")));
                        }
                        if !answering {
                            return Some(fail("QEMU guest agent is not running".into()));
                        }
                        self.agent(n, method, call, ps)
                    }
                    ("DELETE", []) => {
                        if running {
                            return Some(fail(format!("VM {vmid} is running - destroy failed")));
                        }
                        if let Some(kind) = vm.locked() {
                            return Some(fail(format!("VM is locked ({kind})")));
                        }
                        // A template's base volumes stay while a linked clone uses them.
                        let base = format!(":base-{vmid}-disk-");
                        if let Some(v) = self
                            .vms
                            .iter()
                            .filter(|(id, _)| **id != n)
                            .flat_map(|(_, o)| o.config.values())
                            .find(|v| v.contains(&base) && v.split(',').next().is_some_and(|f| f.contains('/')))
                        {
                            let name = v.split(':').nth(1).and_then(|f| f.split('/').next()).unwrap_or_default();
                            return Some(fail(format!("base volume '{name}' is still in use by linked cloned")));
                        }
                        self.vms.remove(&n);
                        ok(json!(task(node, "qmdestroy", vmid)))
                    }
                    _ => return None,
                }
            }
            _ => return None,
        })
    }

    /// A guest-agent call to a running VM whose agent answers.
    fn agent(&mut self, n: u32, method: &str, call: &str, ps: &BTreeMap<String, String>) -> Answer {
        let ok = |v: Value| (200, "OK".to_string(), json!({ "data": v }));
        let next_pid = self.next_pid + 1;
        let outputs = &self.outputs;
        let Some(vm) = self.vms.get_mut(&n) else { return fail(format!("VM {n} does not exist")) };
        match (method, call) {
            ("POST", "ping") => ok(json!({ "result": {} })),
            ("POST", "exec") => {
                let argv: Vec<String> = ps
                    .get("command")
                    .map(|c| c.split(crate::schema::REPEATED).map(str::to_string).collect())
                    .unwrap_or_default();
                let (exitcode, stdout) = play(vm, &argv)
                    .or_else(|| argv.first().and_then(|p| outputs.get(&(n, p.clone())).cloned()))
                    .unwrap_or((0, String::new()));
                vm.commands.push(argv);
                vm.execs.insert(next_pid, Exec { exitcode, stdout, pending: 1 });
                self.next_pid = next_pid;
                ok(json!({ "pid": next_pid }))
            }
            ("GET", "exec-status") => {
                let pid: i64 = ps.get("pid").and_then(|p| p.parse().ok()).unwrap_or(-1);
                let Some(e) = vm.execs.get_mut(&pid) else {
                    return fail(format!("Agent error: Invalid parameter 'pid' ({pid})"));
                };
                if e.pending > 0 {
                    e.pending -= 1;
                    return ok(json!({ "exited": 0 }));
                }
                ok(json!({ "exited": 1, "exitcode": e.exitcode, "out-data": e.stdout }))
            }
            ("POST", "file-write") => {
                let file = ps.get("file").cloned().unwrap_or_default();
                let content = ps.get("content").cloned().unwrap_or_default();
                let encoded = ps.get("encode").is_none_or(|e| e == "1" || e == "true");
                let bytes = if encoded {
                    content.into_bytes()
                } else {
                    let clean: String = content.chars().filter(|c| !c.is_ascii_whitespace()).collect();
                    match BASE64.decode(clean) {
                        Ok(b) => b,
                        Err(_) => return fail("Agent error: Base64 data is invalid".into()),
                    }
                };
                vm.files.insert(file, bytes);
                ok(Value::Null)
            }
            ("GET", "file-read") => {
                let file = ps.get("file").cloned().unwrap_or_default();
                match vm.files.get(&file) {
                    Some(b) => ok(json!({ "content": String::from_utf8_lossy(b) })),
                    None => fail(format!("Agent error: Failed to open file '{file}': No such file or directory")),
                }
            }
            ("GET", "network-get-interfaces") => {
                let ip = vm.config.get("ipconfig0").and_then(|c| c.split(',').find_map(|p| p.strip_prefix("ip=")));
                let addr = match ip {
                    Some("dhcp") | None => format!("10.98.{}.{}", (n >> 8) & 0xff, n & 0xff),
                    Some(cidr) => cidr.split('/').next().unwrap_or(cidr).to_string(),
                };
                ok(json!({ "result": [
                    { "name": "lo", "ip-addresses": [{ "ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8 }] },
                    { "name": "eth0", "ip-addresses": [{ "ip-address": addr, "ip-address-type": "ipv4", "prefix": 24 }] }
                ] }))
            }
            _ => fail(format!("the double does not play agent/{call}")),
        }
    }
}

/// Plays the commands the driver sends to place files (`$0` names them), and `rm -rf`, on the
/// VM's files. Returns their exit status and output; `None` for a command it does not play.
fn play(vm: &mut Vm, argv: &[String]) -> Option<(i64, String)> {
    let arg = |i: usize| argv.get(i).cloned().unwrap_or_default();
    match (argv.first().map(String::as_str), argv.get(3).map(String::as_str)) {
        (Some("/bin/sh"), Some("phoenix-prepare")) => {
            vm.files.insert(arg(4), Vec::new());
            vm.modes.insert(arg(4), ("600".into(), "0:0".into()));
            Some((0, String::new()))
        }
        (Some("/bin/sh"), Some("phoenix-join")) => {
            let out = arg(4);
            let mut joined = Vec::new();
            for part in &argv[5..] {
                match vm.files.remove(part) {
                    Some(b) => joined.extend(b),
                    None => return Some((1, String::new())),
                }
            }
            vm.files.insert(out, joined);
            Some((0, String::new()))
        }
        (Some("/bin/sh"), Some("phoenix-own")) => {
            vm.modes.insert(arg(4), (arg(5), format!("{}:{}", arg(6), arg(7))));
            Some((0, String::new()))
        }
        (Some("rm"), _) if arg(1) == "-rf" => {
            let dir = arg(2);
            vm.files.retain(|p, _| !(p == &dir || p.starts_with(&format!("{}/", dir.trim_end_matches('/')))));
            Some((0, String::new()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nets_and_disks_are_stored_as_proxmox_shows_them() {
        let mut seed = 1;
        assert_eq!(
            stored_net("virtio,bridge=vmbr0,firewall=1", &mut seed),
            "virtio=BC:24:11:00:00:02,bridge=vmbr0,firewall=1"
        );
        assert_eq!(
            stored_net("virtio=bc:24:11:aa:bb:cc,bridge=vmbr0", &mut seed),
            "virtio=BC:24:11:AA:BB:CC,bridge=vmbr0"
        );
        let mut vms = Vms::default();
        vms.images.insert("iso:import/noble.img".into(), 2_361_393_152);
        let mut disks = 0;
        assert_eq!(
            vms.stored_disk(8000, "scsi0", "local-zfs:0,import-from=iso:import/noble.img,discard=on", &mut disks),
            Ok("local-zfs:vm-8000-disk-0,discard=on,size=2252M".to_string())
        );
        assert!(vms.stored_disk(8000, "scsi1", "local-zfs:8,import-from=iso:import/noble.img", &mut disks).is_err());
        assert!(vms.stored_disk(8000, "scsi1", "local-zfs:0,import-from=iso:import/none.img", &mut disks).is_err());
        assert_eq!(
            vms.stored_disk(8000, "ide2", "local-zfs:cloudinit", &mut disks),
            Ok("local-zfs:vm-8000-cloudinit,media=cdrom".into())
        );
    }
}
