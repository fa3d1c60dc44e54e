//! The names of the normalised configuration fields: the vocabulary desired and observed states
//! share. Besides these, each mount is a field `mount:<path inside>`.

/// Fields of containers.
pub const CONTAINER: &[&str] = &[
    "hostname",
    "cores",
    "memory_mb",
    "swap_mb",
    "storage",
    "disk_gb",
    "unprivileged",
    "net.name",
    "net.bridge",
    "net.ip",
    "net.gw",
    "net.nameservers",
    "net.mac",
    "flags",
    "onboot",
    "startup",
    "tags",
    "idmap",
    "gpus",
    "lxc.raw",
    "apparmor",
    "firewall",
    "firewall.rules",
];

/// Fields of VMs.
pub const VM: &[&str] = &[
    "hostname",
    "cores",
    "memory_mb",
    "disk_gb",
    "storage",
    "net.bridge",
    "net.ip",
    "net.gw",
    "net.nameservers",
    "net.mac",
    "ci.user",
    "onboot",
    "tags",
];

/// The prefix of mount fields.
pub const MOUNT_PREFIX: &str = "mount:";

/// Canonical forms shared with backends, so that observed values normalise the same way.
///
/// Mounts are fields `mount:<path inside>` whose value is `bind:<host path>` or
/// `volume:<storage>:<GiB>`, followed by options separated by `;`: `ro`, `owner=<uid>:<gid>`
/// (IDs inside the guest), `host-owner=<owner>` (`UID:GID` or `user:group` on the host).
pub mod canonical {
    /// Tags as Proxmox stores them: lowercase, sorted, unique, `;`-separated.
    pub fn tags<'a>(tags: impl IntoIterator<Item = &'a str>) -> String {
        let mut v: Vec<String> = tags.into_iter().map(|t| t.trim().to_lowercase()).filter(|t| !t.is_empty()).collect();
        v.sort();
        v.dedup();
        v.join(";")
    }

    /// Container flags (`nesting=1`), sorted, `,`-separated, without spaces.
    pub fn flags<'a>(options: impl IntoIterator<Item = &'a str>) -> String {
        let mut v: Vec<String> = options.into_iter().map(|o| o.split_whitespace().collect::<String>()).collect();
        v.sort();
        v.dedup();
        v.join(",")
    }

    /// A MAC address in lowercase.
    pub fn mac(mac: &str) -> String {
        mac.to_ascii_lowercase()
    }

    /// Start-up order as `order=N,up=S` (each part only when given).
    pub fn startup(order: Option<u32>, up: Option<u32>) -> String {
        let mut parts = Vec::new();
        if let Some(o) = order {
            parts.push(format!("order={o}"));
        }
        if let Some(u) = up {
            parts.push(format!("up={u}"));
        }
        parts.join(",")
    }

    /// GPU indices as `0,1`, without spaces.
    pub fn gpus(s: &str) -> Option<String> {
        let v: Vec<&str> = s.split(',').map(str::trim).filter(|x| !x.is_empty()).collect();
        (s != "none" && !v.is_empty()).then(|| v.join(","))
    }
}
