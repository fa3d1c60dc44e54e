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

    /// A raw `lxc.*` line as `key: value` (users write it `key: value` or `key = value`).
    pub fn lxc_line(line: &str) -> String {
        let at = line.find([':', '=']).unwrap_or(line.len());
        let (key, value) = (line[..at].trim(), line.get(at + 1..).unwrap_or_default().trim());
        format!("{key}: {value}")
    }

    /// One range of an ID map: `u` or `g`, first ID inside, first ID on the host, count.
    pub type IdRange = (char, u64, u64, u64);

    /// The whole ID map of a container for its configured ranges (`u:1000:1000:1 g:...`): the
    /// configured ranges mapped as given, the rest of 0..65536 onto the host range starting at
    /// `base` (user, group), split around them.
    pub fn idmap_ranges(idmap: Option<&str>, base: (u32, u32)) -> Vec<IdRange> {
        let mut out = Vec::new();
        for (kind, host_base) in [('u', base.0), ('g', base.1)] {
            let mut fixed: Vec<(u64, u64, u64)> = idmap
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|m| {
                    let p: Vec<&str> = m.split(':').collect();
                    let ok = p.len() == 4 && p[0].len() == 1 && p[0].starts_with(kind);
                    ok.then(|| Some((p[1].parse().ok()?, p[2].parse().ok()?, p[3].parse().ok()?))).flatten()
                })
                .collect();
            fixed.sort_unstable();
            let mut next = 0u64;
            for (container, host, size) in fixed {
                if container > next {
                    out.push((kind, next, u64::from(host_base) + next, container - next));
                }
                out.push((kind, container, host, size));
                next = container + size;
            }
            if next < 65536 {
                out.push((kind, next, u64::from(host_base) + next, 65536 - next));
            }
        }
        out
    }

    /// The configured ranges of a whole ID map (those off the default shift by `base`), in the
    /// desired state's form: `u:1000:1000:1 g:1000:1000:1`, sorted.
    pub fn idmap_configured(ranges: &[IdRange], base: (u32, u32)) -> String {
        let mut v: Vec<String> = ranges
            .iter()
            .filter(|(kind, inside, host, _)| {
                let b = u64::from(if *kind == 'u' { base.0 } else { base.1 });
                *host != b + inside
            })
            .map(|(kind, inside, host, size)| format!("{kind}:{inside}:{host}:{size}"))
            .collect();
        v.sort();
        v.join(" ")
    }

    /// GPU indices as `0,1`, in numeric order, without spaces or repeats.
    pub fn gpus(s: &str) -> Option<String> {
        let mut v: Vec<&str> = s.split(',').map(str::trim).filter(|x| !x.is_empty()).collect();
        v.sort_by_key(|g| (g.parse::<u64>().unwrap_or(u64::MAX), g.to_string()));
        v.dedup();
        (s != "none" && !v.is_empty()).then(|| v.join(","))
    }
}
