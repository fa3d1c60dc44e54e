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
