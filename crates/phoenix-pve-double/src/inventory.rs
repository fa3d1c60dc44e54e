//! What the double's cluster has besides containers, as Proxmox lists it: the caller's
//! privileges (`/access/permissions`), each node's bridges and the SDN's VNets
//! (`/nodes/{node}/network`, only those the caller may see or use), the templates on each storage (`/nodes/{node}/storage/{storage}/content`) and the appliance index
//! that `POST /nodes/{node}/aplinfo` downloads from (a task that puts the template on the
//! storage).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::guests::Answer;

/// Every privilege the driver may need, granted on `/` unless a test says otherwise.
pub const ALL_PRIVILEGES: &[&str] = &[
    "Datastore.Allocate",
    "Datastore.AllocateSpace",
    "Datastore.AllocateTemplate",
    "Datastore.Audit",
    "SDN.Use",
    "Sys.Audit",
    "Sys.Modify",
    "VM.Allocate",
    "VM.Audit",
    "VM.Clone",
    "VM.Config.CPU",
    "VM.Config.Cloudinit",
    "VM.Config.Disk",
    "VM.Config.HWType",
    "VM.Config.Memory",
    "VM.Config.Network",
    "VM.Config.Options",
    "VM.GuestAgent.Unrestricted",
    "VM.Monitor",
    "VM.PowerMgmt",
    "VM.Snapshot",
];

/// The privileges, one of which lets a caller see a storage.
pub(crate) const STORAGE_SIGHT: [&str; 2] = ["Datastore.Audit", "Datastore.AllocateSpace"];

/// The cluster's inventory.
#[derive(Debug, Clone)]
pub(crate) struct Inventory {
    /// Privileges by ACL path.
    pub privileges: BTreeMap<String, BTreeSet<String>>,
    /// Paths whose privileges are granted without propagation (an ACL set with `--propagate 0`,
    /// or one that comes from a pool): `/access/permissions` shows them as `0`, not `1`.
    pub not_propagated: BTreeSet<String>,
    /// Bridges of every node.
    pub bridges: BTreeSet<String>,
    /// The SDN's VNets (name → zone), on every node.
    pub vnets: BTreeMap<String, String>,
    /// Volume IDs of templates on the storages (`local:vztmpl/NAME`).
    pub templates: BTreeSet<String>,
    /// Template names the appliance index offers.
    pub appliances: BTreeSet<String>,
}

impl Default for Inventory {
    fn default() -> Inventory {
        Inventory {
            privileges: BTreeMap::from([("/".to_string(), ALL_PRIVILEGES.iter().map(|p| (*p).to_string()).collect())]),
            not_propagated: BTreeSet::new(),
            bridges: BTreeSet::from(["vmbr0".to_string()]),
            vnets: BTreeMap::new(),
            templates: BTreeSet::from(["local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst".to_string()]),
            appliances: BTreeSet::from([
                "debian-12-standard_12.7-1_amd64.tar.zst".to_string(),
                "ubuntu-24.04-standard_24.04-2_amd64.tar.zst".to_string(),
            ]),
        }
    }
}

impl Inventory {
    /// Whether the caller holds one of `any` on `path`, as Proxmox's ACLs propagate down the
    /// tree: the privileges of the most specific path listed at or above it, where a path
    /// granted without propagation counts for itself only.
    pub fn grants(&self, path: &str, any: &[&str]) -> bool {
        let mut at = path;
        loop {
            if let Some(privs) = self.privileges.get(at)
                && (at == path || !self.not_propagated.contains(at))
            {
                return any.iter().any(|p| privs.contains(*p));
            }
            if at == "/" {
                return false;
            }
            at = match at.rsplit_once('/') {
                Some(("", _)) | None => "/",
                Some((parent, _)) => parent,
            };
        }
    }

    /// Whether the caller may see the storage `name` (its listing and its content):
    /// `Datastore.Audit` or `Datastore.AllocateSpace` on `/storage/<name>`.
    pub fn sees_storage(&self, name: &str) -> bool {
        self.grants(&format!("/storage/{name}"), &STORAGE_SIGHT)
    }

    /// The ACL path of a bridge or VNet with an optional VLAN tag, as pve-guest-common's
    /// `check_vnet_access` checks it: `/sdn/zones/<zone>/<name>[/<tag>]`, a plain bridge's zone
    /// being `localnetwork`.
    pub fn bridge_path(&self, bridge: &str, tag: Option<&str>) -> String {
        let zone = self.vnets.get(bridge).map_or("localnetwork", String::as_str);
        match tag {
            Some(tag) => format!("/sdn/zones/{zone}/{bridge}/{tag}"),
            None => format!("/sdn/zones/{zone}/{bridge}"),
        }
    }

    /// Answers an inventory request; `None` for others. `task` starts a task (node, kind, id);
    /// `root`: the caller is `root@pam`, who sees everything.
    pub fn handle(
        &mut self,
        method: &str,
        segs: &[&str],
        ps: &BTreeMap<String, String>,
        root: bool,
        task: &mut dyn FnMut(&str, &str, &str) -> String,
    ) -> Option<Answer> {
        let ok = |v: Value| (200, "OK".to_string(), json!({ "data": v }));
        Some(match (method, segs) {
            ("GET", ["", "access", "permissions"]) => ok(Value::Object(
                self.privileges
                    .iter()
                    .map(|(path, privs)| {
                        // The value is the propagate flag; a listed privilege is granted on its path either way.
                        let flag = if self.not_propagated.contains(path) { 0 } else { 1 };
                        (path.clone(), json!(privs.iter().map(|p| (p.clone(), json!(flag))).collect::<serde_json::Map<_, _>>()))
                    })
                    .collect(),
            )),
            // pve-manager's `Network.pm::index`: VNets only with `type` `any_bridge`, `vnet` or
            // (9.x) `include_sdn`; and, always, only the bridges and VNets the caller holds
            // `SDN.Audit` or `SDN.Use` on.
            ("GET", ["", "nodes", _, "network"]) => {
                let kind = ps.get("type").map(String::as_str);
                let visible = |name: &String| root || self.grants(&self.bridge_path(name, None), &["SDN.Audit", "SDN.Use"]);
                let bridges = matches!(kind, None | Some("bridge" | "any_bridge" | "any_local_bridge" | "include_sdn"));
                let vnets = matches!(kind, Some("any_bridge" | "vnet" | "include_sdn"));
                let mut list: Vec<Value> = self
                    .bridges
                    .iter()
                    .filter(|b| bridges && visible(b))
                    .map(|b| json!({ "iface": b, "type": "bridge", "active": 1, "autostart": 1, "bridge_ports": "eno1" }))
                    .collect();
                list.extend(
                    self.vnets
                        .iter()
                        .filter(|(v, _)| vnets && visible(v))
                        .map(|(v, zone)| json!({ "iface": v, "type": "vnet", "active": 1, "zone": zone })),
                );
                ok(Value::Array(list))
            }
            ("GET", ["", "nodes", _, "storage", storage, "content"]) => ok(Value::Array(
                self.templates
                    .iter()
                    .filter(|v| v.split(':').next() == Some(*storage))
                    .filter(|_| ps.get("content").is_none_or(|c| c == "vztmpl"))
                    .map(|v| json!({ "volid": v, "content": "vztmpl", "format": "tzst", "size": 129_000_000 }))
                    .collect(),
            )),
            ("GET", ["", "nodes", _, "aplinfo"]) => ok(Value::Array(
                self.appliances
                    .iter()
                    .map(|t| json!({ "template": t, "package": t.split('_').next(), "type": "lxc", "section": "system", "os": "ubuntu" }))
                    .collect(),
            )),
            ("POST", ["", "nodes", node, "aplinfo"]) => {
                let (storage, template) = (ps.get("storage")?, ps.get("template")?);
                if !self.appliances.contains(template) {
                    return Some((500, format!("no such template '{template}'"), json!({ "data": null })));
                }
                self.templates.insert(format!("{storage}:vztmpl/{template}"));
                ok(json!(task(node, "download", storage)))
            }
            _ => return None,
        })
    }
}
