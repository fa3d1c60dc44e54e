//! Containers Phoenix did not create: their LXC configuration read back into Phoenix's fields —
//! the inverse of [`crate::render`] — so that `status` shows them and adoption knows how they
//! differ from their configuration.
//!
//! What `render` writes reads back as the fields it was written from. Lines `render` writes the
//! same for every container (the mounts of `/proc` and `/sys`, the TTYs, the veth's type) are
//! left out; any other `lxc.*` line becomes a raw line (`lxc.raw`), as the configuration's
//! `lxc_options` are.

use std::collections::BTreeMap;

use phoenix_backend::fields::{Startup, canonical};
use phoenix_backend::{Field, GuestConfig, Mount, Value};

/// Lines `render` writes into every container's configuration: not the container's own.
const COMMON: &[(&str, &str)] = &[
    ("lxc.mount.auto", "proc:mixed sys:ro cgroup:mixed"),
    ("lxc.autodev", "1"),
    ("lxc.tty.max", "0"),
    ("lxc.pty.max", "16"),
    ("lxc.net.0.type", "veth"),
    ("lxc.net.0.flags", "up"),
    ("lxc.cgroup.cpu.cfs_period_us", "100000"),
];

/// The nesting configuration `nesting=1` includes.
pub const NESTING: &str = "/usr/share/lxc/config/nesting.conf";

/// What a container's LXC configuration says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Read {
    /// Its fields, as the desired state writes them.
    pub fields: GuestConfig,
    /// Its root filesystem's directory (`lxc.rootfs.path`, without `dir:`).
    pub rootfs: Option<String>,
}

/// Reads a container's LXC configuration. `bridges` maps host bridges to the names guests use
/// (a bridge not in it keeps its host name); `id_base` is the first host UID and GID of the ID
/// map of unprivileged containers, so that only ranges off the default shift are `idmap`.
pub fn read(text: &str, bridges: &BTreeMap<String, String>, id_base: (u32, u32)) -> Read {
    let mut out = Read::default();
    let f = &mut out.fields;
    let mut raw: Vec<String> = Vec::new();
    let mut ranges = Vec::new();
    let mut gpus: Vec<u64> = Vec::new();
    let mut flags: Vec<String> = Vec::new();
    let (mut order, mut delay) = (None, None);
    let (mut memory_v1, mut memsw_v1) = (None, None);
    let mut net = false;
    // The devices rule just read, which belongs to a GPU when its device's mount follows.
    let mut last_allow = false;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=').map(|(k, v)| (k.trim(), v.trim())) else {
            raw.push(canonical::lxc_line(line));
            continue;
        };
        let allow = last_allow;
        last_allow = false;
        if COMMON.contains(&(key, value)) {
            net |= key == "lxc.net.0.type";
            continue;
        }
        let mib = |bytes: &str| bytes.parse::<u64>().ok().map(|b| b / (1024 * 1024));
        match key {
            "lxc.uts.name" => f.set(Field::Hostname, value),
            "lxc.rootfs.path" => out.rootfs = Some(value.strip_prefix("dir:").unwrap_or(value).to_string()),
            "lxc.idmap" => match canonical::idmap_line(value) {
                Some(range) => ranges.push(range),
                None => raw.push(canonical::lxc_line(line)),
            },
            "lxc.net.0.link" => {
                net = true;
                f.set(Field::NetBridge, bridges.get(value).map_or(value, String::as_str));
            }
            "lxc.net.0.name" => f.set(Field::NetName, value),
            "lxc.net.0.hwaddr" => f.set(Field::NetMac, Value::mac(value)),
            "lxc.net.0.ipv4.address" => f.set(Field::NetIp, value),
            "lxc.net.0.ipv4.gateway" => f.set(Field::NetGw, value),
            "lxc.cgroup2.memory.max" if let Some(m) = mib(value) => f.set(Field::MemoryMb, m),
            "lxc.cgroup2.memory.swap.max" if let Some(s) = mib(value) => f.set(Field::SwapMb, s),
            "lxc.cgroup.memory.limit_in_bytes" if mib(value).is_some() => memory_v1 = mib(value),
            "lxc.cgroup.memory.memsw.limit_in_bytes" if mib(value).is_some() => memsw_v1 = mib(value),
            "lxc.cgroup2.cpu.max" | "lxc.cgroup.cpu.cfs_quota_us" => {
                let mut p = value.split_whitespace().map(|x| x.parse::<u64>().ok());
                match (p.next().flatten(), p.next().flatten().unwrap_or(100_000)) {
                    (Some(quota), period) if period > 0 && quota % period == 0 => {
                        f.set(Field::Cores, quota / period);
                    }
                    _ => raw.push(canonical::lxc_line(line)),
                }
            }
            "lxc.include" if value == NESTING => flags.push("nesting=1".into()),
            "lxc.apparmor.profile" => f.set(Field::Apparmor, value),
            "lxc.start.auto" => f.set(Field::Onboot, value == "1"),
            "lxc.start.order" => order = value.parse().ok(),
            "lxc.start.delay" => delay = value.parse().ok(),
            "lxc.cgroup.devices.allow" | "lxc.cgroup2.devices.allow" => {
                raw.push(canonical::lxc_line(line));
                last_allow = true;
            }
            "lxc.mount.entry" => {
                let p: Vec<&str> = value.split_whitespace().collect();
                let (Some(host), Some(inside), Some(opts)) = (p.first(), p.get(1), p.get(3)) else {
                    raw.push(canonical::lxc_line(line));
                    continue;
                };
                let opts: Vec<&str> = opts.split(',').collect();
                if let Some(n) = host.strip_prefix("/dev/nvidia").filter(|_| opts.contains(&"create=file")) {
                    // A GPU's device node (or the driver's), with the rule that allows it.
                    if allow {
                        raw.pop();
                    }
                    if let Ok(n) = n.parse::<u64>() {
                        gpus.push(n);
                    }
                } else if opts.contains(&"bind") {
                    let (host, inside) = (crate::render::fstab_unescape(host), crate::render::fstab_unescape(inside));
                    let mut mount = Mount::bind(host);
                    mount.read_only = opts.contains(&"ro");
                    f.set(Field::mount(&format!("/{}", inside.trim_matches('/'))), mount);
                } else {
                    raw.push(canonical::lxc_line(line));
                }
            }
            _ => raw.push(canonical::lxc_line(line)),
        }
    }
    if let Some(m) = memory_v1 {
        f.set(Field::MemoryMb, m);
        if let Some(s) = memsw_v1.and_then(|s| s.checked_sub(m)) {
            f.set(Field::SwapMb, s);
        }
    }
    if net {
        if !f.has(&Field::NetName) {
            f.set(Field::NetName, "eth0");
        }
        if !f.has(&Field::NetIp) {
            f.set(Field::NetIp, "dhcp");
        }
    }
    f.set(Field::Unprivileged, !ranges.is_empty());
    if let Some(idmap) = canonical::idmap_configured(&ranges, id_base) {
        f.set(Field::Idmap, idmap);
    }
    if !f.has(&Field::Onboot) {
        f.set(Field::Onboot, false);
    }
    if order.is_some() || delay.is_some() {
        f.set(Field::Startup, Startup { order, up: delay });
    }
    if !flags.is_empty() {
        f.set(Field::Flags, Value::flags(flags.iter().map(String::as_str)));
    }
    gpus.sort_unstable();
    gpus.dedup();
    if !gpus.is_empty() {
        f.set(Field::Gpus, Value::Gpus(gpus.iter().map(u64::to_string).collect()));
    }
    if !raw.is_empty() {
        f.set(Field::LxcRaw, Value::Lines(raw));
    }
    out
}

/// The DNS servers of a `resolv.conf`, in order (`None` without any).
pub fn nameservers(resolv: &str) -> Option<Value> {
    let v: Vec<String> = resolv
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .collect();
    (!v.is_empty()).then_some(Value::Nameservers(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::Device;
    use crate::render::{Cgroups, RenderContext, render};

    fn fields(pairs: &[(&str, &str)]) -> GuestConfig {
        GuestConfig::parse(pairs.iter().copied()).expect("config")
    }

    fn bridges() -> BTreeMap<String, String> {
        [("phxbr0".to_string(), "vmbr0".to_string())].into()
    }

    #[test]
    fn what_render_writes_reads_back_as_the_fields_it_was_written_from() {
        let full = fields(&[
            ("hostname", "web-1"),
            ("memory_mb", "512"),
            ("swap_mb", "256"),
            ("cores", "2"),
            ("unprivileged", "1"),
            ("idmap", "g:1000:1000:1 u:1000:1000:1"),
            ("net.name", "eth0"),
            ("net.bridge", "vmbr0"),
            ("net.ip", "10.77.0.101/24"),
            ("net.gw", "10.77.0.1"),
            ("net.mac", "02:77:00:00:01:01"),
            ("flags", "nesting=1"),
            ("apparmor", "unconfined"),
            ("onboot", "1"),
            ("startup", "order=2,up=30"),
            ("gpus", "0,1"),
            ("mount:/srv/shared", "bind:/var/lib/phoenix/shared/web"),
            ("mount:/srv/ro", "bind:/srv/ro;ro"),
            ("mount:/srv/my files", "bind:/data/my files"),
            ("lxc.raw", "lxc.environment: A=1\nlxc.cgroup2.devices.allow: c 10:200 rwm"),
        ]);
        let devices = |n: u64| {
            vec![
                Device { path: "/dev/nvidia0".into(), major: 195, minor: 0 },
                Device { path: "/dev/nvidia1".into(), major: 195, minor: 1 },
                Device { path: "/dev/nvidiactl".into(), major: 195, minor: 255 },
                Device { path: "/dev/nvidia-uvm".into(), major: n, minor: 0 },
            ]
        };
        for (cgroups, memsw) in [(Cgroups::V2, false), (Cgroups::V1, true)] {
            let cx = RenderContext {
                id: 901,
                rootfs: "/var/lib/phoenix/lxc/901/rootfs",
                host_bridge: "phxbr0",
                id_base: (100000, 100000),
                cgroups,
                mounts: vec![
                    ("/srv/ro".into(), "/srv/ro".into(), true),
                    ("/srv/shared".into(), "/var/lib/phoenix/shared/web".into(), false),
                    ("/srv/my files".into(), "/data/my files".into(), false),
                ],
                devices: devices(509),
                memsw,
            };
            let text = render(&full, &cx);
            let back = read(&text, &bridges(), (100000, 100000));
            assert_eq!(back.fields, full, "{cgroups:?}:\n{text}");
            assert_eq!(back.rootfs.as_deref(), Some("/var/lib/phoenix/lxc/901/rootfs"));
        }
        // The least a container has: privileged, no limits, an address from DHCP.
        let least = fields(&[("hostname", "c"), ("unprivileged", "0"), ("net.bridge", "vmbr0"), ("net.name", "eth0")]);
        let cx = RenderContext {
            id: 1,
            rootfs: "/r",
            host_bridge: "phxbr0",
            id_base: (100000, 100000),
            cgroups: Cgroups::V2,
            mounts: Vec::new(),
            devices: Vec::new(),
            memsw: false,
        };
        let back = read(&render(&least, &cx), &bridges(), (100000, 100000)).fields;
        let mut want = least.clone();
        want.set(Field::NetIp, "dhcp");
        want.set(Field::Onboot, false);
        assert_eq!(back, want);
    }

    #[test]
    fn lines_phoenix_would_not_write_are_raw_lines() {
        let text = "# made by hand\nlxc.include = /usr/share/lxc/config/common.conf\nlxc.arch = linux64\n\
                    lxc.uts.name = old\nlxc.net.0.type = veth\nlxc.net.0.link = br9\n\
                    lxc.mount.entry = proc proc proc nodev,noexec,nosuid 0 0\n";
        let f = read(text, &bridges(), (100000, 100000)).fields;
        assert_eq!(
            f.get(&Field::LxcRaw).map(ToString::to_string).as_deref(),
            Some(
                "lxc.include: /usr/share/lxc/config/common.conf\nlxc.arch: linux64\nlxc.mount.entry: proc proc proc nodev,noexec,nosuid 0 0"
            )
        );
        assert_eq!(f.text(&Field::NetBridge), Some("br9"), "a bridge no guest names keeps its host name");
        assert_eq!(f.flag(&Field::Unprivileged), Some(false));
    }

    #[test]
    fn nameservers_come_from_resolv_conf() {
        assert_eq!(
            nameservers("# x\nnameserver 10.0.0.1\nsearch lan\nnameserver 1.1.1.1 \n")
                .map(|v| v.to_string())
                .as_deref(),
            Some("10.0.0.1 1.1.1.1")
        );
        assert_eq!(nameservers("search lan\n"), None);
    }
}
