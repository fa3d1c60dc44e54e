//! What the double's cluster has besides containers, as Proxmox lists it: the caller's
//! privileges (`/access/permissions`), each node's bridges (`/nodes/{node}/network`), the
//! templates on each storage (`/nodes/{node}/storage/{storage}/content`) and the appliance index
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
            templates: BTreeSet::from(["local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst".to_string()]),
            appliances: BTreeSet::from([
                "debian-12-standard_12.7-1_amd64.tar.zst".to_string(),
                "ubuntu-24.04-standard_24.04-2_amd64.tar.zst".to_string(),
            ]),
        }
    }
}

impl Inventory {
    /// Answers an inventory request; `None` for others. `task` starts a task (node, kind, id).
    pub fn handle(
        &mut self,
        method: &str,
        segs: &[&str],
        ps: &BTreeMap<String, String>,
        task: &mut dyn FnMut(&str, &str, &str) -> String,
    ) -> Option<Answer> {
        let ok = |v: Value| (200, "OK".to_string(), json!({ "data": v }));
        Some(match (method, segs) {
            ("GET", ["", "access", "permissions"]) => ok(Value::Object(
                self.privileges
                    .iter()
                    .map(|(path, privs)| {
                        // The value is the propagate flag; a listed privilege is granted either way.
                        let flag = if self.not_propagated.contains(path) { 0 } else { 1 };
                        (path.clone(), json!(privs.iter().map(|p| (p.clone(), json!(flag))).collect::<serde_json::Map<_, _>>()))
                    })
                    .collect(),
            )),
            ("GET", ["", "nodes", _, "network"]) => ok(Value::Array(
                self.bridges
                    .iter()
                    .map(|b| json!({ "iface": b, "type": "bridge", "active": 1, "autostart": 1, "bridge_ports": "eno1" }))
                    .collect(),
            )),
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
