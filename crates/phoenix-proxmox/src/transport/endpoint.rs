//! Every API call the driver makes, typed: which endpoint, with what in its path, and so which
//! method. The path is built from its parts, each percent-encoded as one segment, so a value
//! can never reach another endpoint than the one named. The parameters a call carries are built
//! where their values are known, from typed property strings ([`crate::propstring`]); every
//! request the test suite sends is checked against both schema versions.

use phoenix_backend::{GuestId, GuestKind};

use crate::transport::upid::Upid;

/// A guest's place in the API: its node, its tree (`lxc` or `qemu`) and its ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guest<'a> {
    /// The node it is on.
    pub node: &'a str,
    /// Container or VM.
    pub kind: GuestKind,
    /// Its ID.
    pub id: GuestId,
}

impl<'a> Guest<'a> {
    /// A container on `node`.
    pub fn lxc(node: &'a str, id: GuestId) -> Guest<'a> {
        Guest { node, kind: GuestKind::Lxc, id }
    }

    /// A VM on `node`.
    pub fn qemu(node: &'a str, id: GuestId) -> Guest<'a> {
        Guest { node, kind: GuestKind::Vm, id }
    }
}

/// The API tree of a kind of guest.
fn tree(kind: GuestKind) -> &'static str {
    match kind {
        GuestKind::Lxc => "lxc",
        GuestKind::Vm => "qemu",
    }
}

/// A power action (`POST .../status/<action>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Power {
    /// Start.
    Start,
    /// Stop at once.
    Stop,
    /// Shut down cleanly (with `forceStop` after its timeout).
    Shutdown,
}

/// A call to the QEMU guest agent (`.../agent/<command>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agent {
    /// Whether the agent answers (`POST ping`).
    Ping,
    /// Starts a command (`POST exec`).
    Exec,
    /// A started command's state (`GET exec-status`).
    ExecStatus,
    /// Writes a file (`POST file-write`).
    FileWrite,
    /// Reads a file (`GET file-read`).
    FileRead,
    /// The guest's interfaces and addresses (`GET network-get-interfaces`).
    Interfaces,
}

/// One API call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call<'a> {
    /// `GET /version`.
    Version,
    /// `GET /access/permissions`: the credentials' privileges by path.
    Permissions,
    /// `POST /access/ticket`: a ticket for a password (or a ticket to renew).
    Login,
    /// `GET /cluster/resources`: every guest (with `type=vm`) and node of the cluster.
    Resources,
    /// `GET /cluster/status`.
    ClusterStatus,
    /// `GET /nodes`.
    Nodes,
    /// `GET /storage`: the storage configuration of the cluster (each storage's `path`, `content`
    /// and the `nodes` it is restricted to), which the node's list below does not show.
    StorageConfig,
    /// `GET /nodes/{node}/storage`: a node's storages with their status (no `path`).
    Storages {
        /// The node.
        node: &'a str,
    },
    /// `GET /nodes/{node}/storage/{storage}/content`.
    StorageContent {
        /// The node.
        node: &'a str,
        /// The storage.
        storage: &'a str,
    },
    /// `GET /nodes/{node}/network`: the node's interfaces and bridges (with `type=any_bridge`,
    /// its bridges and the SDN's VNets).
    Network {
        /// The node.
        node: &'a str,
    },
    /// `GET /nodes/{node}/aplinfo`: the appliance index.
    Appliances {
        /// The node.
        node: &'a str,
    },
    /// `POST /nodes/{node}/aplinfo`: downloads a template from the index (a task).
    DownloadAppliance {
        /// The node.
        node: &'a str,
    },
    /// `POST /nodes/{node}/storage/{storage}/download-url`: downloads a file from a URL onto a
    /// file-based storage (a task).
    DownloadUrl {
        /// The node.
        node: &'a str,
        /// The storage.
        storage: &'a str,
    },
    /// `GET /nodes/{node}/tasks`: a node's tasks (`vmid`, `source=active` narrow the list).
    Tasks(&'a str),
    /// `GET /nodes/{node}/tasks/{upid}/status`.
    TaskStatus(&'a Upid),
    /// `GET /nodes/{node}/tasks/{upid}/log`.
    TaskLog(&'a Upid),
    /// `POST /nodes/{node}/{lxc|qemu}`: creates a guest (a task).
    Create {
        /// The node.
        node: &'a str,
        /// Container or VM.
        kind: GuestKind,
    },
    /// `GET .../config`.
    Config(Guest<'a>),
    /// `PUT .../config`.
    SetConfig(Guest<'a>),
    /// `GET .../snapshot`.
    Snapshots(Guest<'a>),
    /// `POST .../snapshot` (a task).
    TakeSnapshot(Guest<'a>),
    /// `POST .../snapshot/{snapname}/rollback` (a task): back to the snapshot; `start` starts the
    /// guest again afterwards.
    Rollback(Guest<'a>, &'a str),
    /// `DELETE .../snapshot/{snapname}` (a task).
    DeleteSnapshot(Guest<'a>, &'a str),
    /// `POST .../clone` (a task).
    Clone(Guest<'a>),
    /// `POST .../template`: makes a stopped guest a template (answers null; the conversion may
    /// go on in a task of its own).
    MakeTemplate(Guest<'a>),
    /// `PUT .../resize` (a task).
    Resize(Guest<'a>),
    /// `POST .../status/<action>` (a task).
    Power(Guest<'a>, Power),
    /// `GET .../status/current`: whether the guest runs (an error where it does not exist there).
    Status(Guest<'a>),
    /// `DELETE` the guest (a task).
    Destroy(Guest<'a>),
    /// `GET .../interfaces` (containers).
    Interfaces(Guest<'a>),
    /// A guest-agent call (VMs).
    Agent(Guest<'a>, Agent),
    /// `GET .../firewall/options`.
    FirewallOptions(Guest<'a>),
    /// `PUT .../firewall/options`.
    SetFirewallOptions(Guest<'a>),
    /// `GET .../firewall/rules`.
    FirewallRules(Guest<'a>),
    /// `POST .../firewall/rules`: a new rule, at the top.
    AddFirewallRule(Guest<'a>),
    /// `PUT .../firewall/rules/{pos}`: changes or moves a rule.
    SetFirewallRule(Guest<'a>, usize),
    /// `DELETE .../firewall/rules/{pos}`.
    DeleteFirewallRule(Guest<'a>, usize),
}

/// Percent-encodes one path segment: everything but unreserved characters and those a segment
/// may hold as they are (`:`, `@`, `!`, as in UPIDs and token IDs).
fn segment(s: &str) -> String {
    // `.` and `..` alone would move along the path.
    if s == "." || s == ".." {
        return s.replace('.', "%2E");
    }
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' | b'@' | b'!' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Call<'_> {
    /// The HTTP method.
    pub fn method(&self) -> &'static str {
        match self {
            Call::Login
            | Call::DownloadAppliance { .. }
            | Call::DownloadUrl { .. }
            | Call::Create { .. }
            | Call::TakeSnapshot(_)
            | Call::Rollback(..)
            | Call::Clone(_)
            | Call::MakeTemplate(_)
            | Call::Power(..)
            | Call::AddFirewallRule(_)
            | Call::Agent(_, Agent::Ping | Agent::Exec | Agent::FileWrite) => "POST",
            Call::SetConfig(_) | Call::Resize(_) | Call::SetFirewallOptions(_) | Call::SetFirewallRule(..) => "PUT",
            Call::Destroy(_) | Call::DeleteSnapshot(..) | Call::DeleteFirewallRule(..) => "DELETE",
            _ => "GET",
        }
    }

    /// The path below `/api2/json`, each part percent-encoded.
    pub fn path(&self) -> String {
        let guest = |g: &Guest<'_>, rest: &[&str]| -> Vec<String> {
            let mut parts = vec!["nodes".to_string(), g.node.to_string(), tree(g.kind).to_string(), g.id.to_string()];
            parts.extend(rest.iter().map(|s| (*s).to_string()));
            parts
        };
        let owned = |parts: &[&str]| parts.iter().map(|s| (*s).to_string()).collect::<Vec<_>>();
        let parts: Vec<String> = match self {
            Call::Version => owned(&["version"]),
            Call::Permissions => owned(&["access", "permissions"]),
            Call::Login => owned(&["access", "ticket"]),
            Call::Resources => owned(&["cluster", "resources"]),
            Call::ClusterStatus => owned(&["cluster", "status"]),
            Call::Nodes => owned(&["nodes"]),
            Call::StorageConfig => owned(&["storage"]),
            Call::Storages { node } => owned(&["nodes", node, "storage"]),
            Call::StorageContent { node, storage } => owned(&["nodes", node, "storage", storage, "content"]),
            Call::DownloadUrl { node, storage } => owned(&["nodes", node, "storage", storage, "download-url"]),
            Call::Network { node } => owned(&["nodes", node, "network"]),
            Call::Appliances { node } | Call::DownloadAppliance { node } => owned(&["nodes", node, "aplinfo"]),
            Call::Tasks(node) => owned(&["nodes", node, "tasks"]),
            Call::TaskStatus(upid) => owned(&["nodes", &upid.node, "tasks", &upid.to_string(), "status"]),
            Call::TaskLog(upid) => owned(&["nodes", &upid.node, "tasks", &upid.to_string(), "log"]),
            Call::Create { node, kind } => owned(&["nodes", node, tree(*kind)]),
            Call::Config(g) | Call::SetConfig(g) => guest(g, &["config"]),
            Call::Snapshots(g) | Call::TakeSnapshot(g) => guest(g, &["snapshot"]),
            Call::Rollback(g, name) => guest(g, &["snapshot", name, "rollback"]),
            Call::DeleteSnapshot(g, name) => guest(g, &["snapshot", name]),
            Call::Clone(g) => guest(g, &["clone"]),
            Call::MakeTemplate(g) => guest(g, &["template"]),
            Call::Resize(g) => guest(g, &["resize"]),
            Call::Power(g, action) => guest(
                g,
                &[
                    "status",
                    match action {
                        Power::Start => "start",
                        Power::Stop => "stop",
                        Power::Shutdown => "shutdown",
                    },
                ],
            ),
            Call::Status(g) => guest(g, &["status", "current"]),
            Call::Destroy(g) => guest(g, &[]),
            Call::Interfaces(g) => guest(g, &["interfaces"]),
            Call::Agent(g, call) => guest(
                g,
                &[
                    "agent",
                    match call {
                        Agent::Ping => "ping",
                        Agent::Exec => "exec",
                        Agent::ExecStatus => "exec-status",
                        Agent::FileWrite => "file-write",
                        Agent::FileRead => "file-read",
                        Agent::Interfaces => "network-get-interfaces",
                    },
                ],
            ),
            Call::FirewallOptions(g) | Call::SetFirewallOptions(g) => guest(g, &["firewall", "options"]),
            Call::FirewallRules(g) | Call::AddFirewallRule(g) => guest(g, &["firewall", "rules"]),
            Call::SetFirewallRule(g, pos) | Call::DeleteFirewallRule(g, pos) => {
                guest(g, &["firewall", "rules", &pos.to_string()])
            }
        };
        parts.iter().map(|p| format!("/{}", segment(p))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_built_from_encoded_segments() {
        let ct = Guest::lxc("pve1", 950);
        assert_eq!(Call::SetConfig(ct).path(), "/nodes/pve1/lxc/950/config");
        assert_eq!(Call::SetConfig(ct).method(), "PUT");
        assert_eq!(Call::Destroy(Guest::qemu("pve2", 8001)).path(), "/nodes/pve2/qemu/8001");
        assert_eq!(Call::Destroy(ct).method(), "DELETE");
        assert_eq!(Call::Power(ct, Power::Shutdown).path(), "/nodes/pve1/lxc/950/status/shutdown");
        assert_eq!(Call::Agent(Guest::qemu("pve1", 8001), Agent::ExecStatus).method(), "GET");
        let rollback = Call::Rollback(ct, "phoenix-pre-20250131-235959");
        assert_eq!(
            (rollback.method(), rollback.path().as_str()),
            ("POST", "/nodes/pve1/lxc/950/snapshot/phoenix-pre-20250131-235959/rollback")
        );
        let delete = Call::DeleteSnapshot(Guest::qemu("pve1", 8001), "before");
        assert_eq!((delete.method(), delete.path().as_str()), ("DELETE", "/nodes/pve1/qemu/8001/snapshot/before"));
        assert_eq!(Call::DeleteSnapshot(ct, "../config").path(), "/nodes/pve1/lxc/950/snapshot/..%2Fconfig");
        // A value that is not a segment stays one segment.
        let odd = Call::StorageContent { node: "pve1", storage: "../../access/ticket?x" };
        assert_eq!(odd.path(), "/nodes/pve1/storage/..%2F..%2Faccess%2Fticket%3Fx/content");
        assert_eq!(Call::Storages { node: ".." }.path(), "/nodes/%2E%2E/storage");
        let upid: Upid = "UPID:pve1:0012ABCD:01A2B3C4:6745F0A1:vzstart:950:phoenix@pve!ci:".parse().expect("upid");
        assert_eq!(
            Call::TaskStatus(&upid).path(),
            "/nodes/pve1/tasks/UPID:pve1:0012ABCD:01A2B3C4:6745F0A1:vzstart:950:phoenix@pve!ci:/status"
        );
    }
}
