//! The LXC configuration file of a container, rendered from Phoenix's normalised fields.

use phoenix_backend::fields::{IdRange, canonical};
use phoenix_backend::{Field, GuestConfig, Value};

/// A value in the host's cgroup file system, trimmed.
fn read_cgroup(path: &str) -> Option<String> {
    std::fs::read_to_string(std::path::Path::new("/sys/fs/cgroup").join(path)).ok().map(|s| s.trim().to_string())
}

/// The cgroup layout of the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cgroups {
    /// cgroup v1 controllers (also the "hybrid" layout with v1 controllers).
    V1,
    /// The unified cgroup v2 hierarchy.
    V2,
}

impl Cgroups {
    /// The memory limit of a running container, in MiB, as its cgroup has it now.
    pub fn memory_limit_mb(self, id: u32) -> Option<u64> {
        let bytes = match self {
            Cgroups::V1 => read_cgroup(&format!("memory/lxc.payload.{id}/memory.limit_in_bytes"))?,
            Cgroups::V2 => read_cgroup(&format!("lxc.payload.{id}/memory.max"))?,
        };
        bytes.parse::<u64>().ok().map(|b| b / (1024 * 1024))
    }

    /// The CPU limit of a running container, in cores, as its cgroup has it now.
    pub fn cores(self, id: u32) -> Option<u64> {
        let quota = match self {
            Cgroups::V1 => read_cgroup(&format!("cpu/lxc.payload.{id}/cpu.cfs_quota_us"))?,
            Cgroups::V2 => read_cgroup(&format!("lxc.payload.{id}/cpu.max"))?.split_whitespace().next()?.to_string(),
        };
        quota.parse::<u64>().ok().filter(|q| *q > 0).map(|q| q.div_ceil(100_000))
    }

    /// Reads the layout from `/sys/fs/cgroup`.
    pub fn detect() -> Cgroups {
        if std::path::Path::new("/sys/fs/cgroup/memory").is_dir() { Cgroups::V1 } else { Cgroups::V2 }
    }
}

/// What rendering needs besides the fields.
pub struct RenderContext<'a> {
    /// The container's ID.
    pub id: u32,
    /// Its root filesystem directory.
    pub rootfs: &'a str,
    /// The host bridge its `net.bridge` maps to.
    pub host_bridge: &'a str,
    /// First host UID and GID of the ID map of unprivileged containers.
    pub id_base: (u32, u32),
    /// The cgroup layout.
    pub cgroups: Cgroups,
    /// Host directories for its mounts: container path, host path, read-only.
    pub mounts: Vec<(String, String, bool)>,
    /// Character devices passed through (GPUs).
    pub devices: Vec<crate::gpu::Device>,
    /// cgroup v1 accounts swap (`memory.memsw.*` exists).
    pub memsw: bool,
}

/// Renders the configuration file.
pub fn render(cfg: &GuestConfig, cx: &RenderContext<'_>) -> String {
    let mut lines = vec![
        "# Written by Phoenix; changes here are overwritten on the next apply.".to_string(),
        format!("lxc.uts.name = {}", cfg.text(&Field::Hostname).unwrap_or("container")),
        format!("lxc.rootfs.path = dir:{}", cx.rootfs),
        "lxc.mount.auto = proc:mixed sys:ro cgroup:mixed".to_string(),
        "lxc.autodev = 1".to_string(),
        "lxc.tty.max = 0".to_string(),
        "lxc.pty.max = 16".to_string(),
    ];
    let unprivileged = cfg.flag(&Field::Unprivileged) != Some(false);
    if unprivileged {
        let configured = match cfg.get(&Field::Idmap) {
            Some(Value::IdMap(ranges)) => ranges.as_slice(),
            _ => &[],
        };
        lines.extend(id_maps(configured, cx.id_base));
    }
    lines.push("lxc.net.0.type = veth".into());
    lines.push(format!("lxc.net.0.link = {}", cx.host_bridge));
    lines.push("lxc.net.0.flags = up".into());
    lines.push(format!("lxc.net.0.name = {}", cfg.text(&Field::NetName).unwrap_or("eth0")));
    if let Some(mac) = cfg.text(&Field::NetMac) {
        lines.push(format!("lxc.net.0.hwaddr = {mac}"));
    }
    if let Some(ip) = cfg.text(&Field::NetIp).filter(|ip| *ip != "dhcp") {
        lines.push(format!("lxc.net.0.ipv4.address = {ip}"));
    }
    if let Some(gw) = cfg.text(&Field::NetGw) {
        lines.push(format!("lxc.net.0.ipv4.gateway = {gw}"));
    }
    let memory = cfg.number(&Field::MemoryMb);
    let cores = cfg.number(&Field::Cores);
    match cx.cgroups {
        Cgroups::V1 => {
            if let Some(m) = memory {
                lines.push(format!("lxc.cgroup.memory.limit_in_bytes = {}", m * 1024 * 1024));
                if let Some(s) = cfg.number(&Field::SwapMb).filter(|_| cx.memsw) {
                    lines.push(format!("lxc.cgroup.memory.memsw.limit_in_bytes = {}", (m + s) * 1024 * 1024));
                }
            }
            if let Some(c) = cores {
                lines.push("lxc.cgroup.cpu.cfs_period_us = 100000".into());
                lines.push(format!("lxc.cgroup.cpu.cfs_quota_us = {}", c * 100_000));
            }
        }
        Cgroups::V2 => {
            if let Some(m) = memory {
                lines.push(format!("lxc.cgroup2.memory.max = {}", m * 1024 * 1024));
            }
            if let Some(s) = cfg.number(&Field::SwapMb) {
                lines.push(format!("lxc.cgroup2.memory.swap.max = {}", s * 1024 * 1024));
            }
            if let Some(c) = cores {
                lines.push(format!("lxc.cgroup2.cpu.max = {} 100000", c * 100_000));
            }
        }
    }
    let flags = cfg.get(&Field::Flags).map(Value::items).unwrap_or_default();
    if flags.iter().any(|f| f == "nesting=1") {
        lines.push("lxc.include = /usr/share/lxc/config/nesting.conf".into());
    }
    if let Some(profile) = cfg.text(&Field::Apparmor) {
        lines.push(format!("lxc.apparmor.profile = {profile}"));
    }
    if cfg.flag(&Field::Onboot) == Some(true) {
        lines.push("lxc.start.auto = 1".into());
    }
    if let Some(Value::Startup(startup)) = cfg.get(&Field::Startup) {
        if let Some(o) = startup.order {
            lines.push(format!("lxc.start.order = {o}"));
        }
        if let Some(d) = startup.up {
            lines.push(format!("lxc.start.delay = {d}"));
        }
    }
    for (inside, host, read_only) in &cx.mounts {
        let opts = if *read_only { "bind,ro,create=dir" } else { "bind,create=dir" };
        lines.push(format!(
            "lxc.mount.entry = {} {} none {opts} 0 0",
            fstab_escape(host),
            fstab_escape(inside.trim_start_matches('/'))
        ));
    }
    for d in &cx.devices {
        let key = match cx.cgroups {
            Cgroups::V1 => "lxc.cgroup.devices.allow",
            Cgroups::V2 => "lxc.cgroup2.devices.allow",
        };
        lines.push(format!("{key} = c {}:{} rwm", d.major, d.minor));
        let inside = d.path.display().to_string();
        lines.push(format!(
            "lxc.mount.entry = {inside} {} none bind,optional,create=file 0 0",
            inside.trim_start_matches('/')
        ));
    }
    if let Some(raw) = cfg.get(&Field::LxcRaw) {
        lines.extend(raw.items().iter().map(|l| l.replacen(':', " =", 1)));
    }
    lines.push(String::new());
    lines.join("\n")
}

/// A path as a field of an fstab line, which `lxc.mount.entry` is: space, tab, newline and
/// backslash as the octal escapes `getmntent` reads back (`\040`, `\011`, `\012`, `\134`), and
/// any other control character escaped the same way, so that a path can neither split the entry
/// into more fields nor end the line and start another setting. Validation refuses control
/// characters; this keeps the file sound whatever reaches it.
fn fstab_escape(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if c == ' ' || c == '\\' || (c as u32) < 0x20 || c == '\u{7f}' {
            out.push_str(&format!("\\{:03o}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// The path [`fstab_escape`] wrote (an octal escape is read as the character it names; any other
/// backslash is kept, as `getmntent` keeps it).
pub(crate) fn fstab_unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let digits = rest.get(i + 1..i + 4).filter(|d| d.bytes().all(|b| (b'0'..=b'7').contains(&b)));
        match digits.and_then(|d| u32::from_str_radix(d, 8).ok()).and_then(char::from_u32) {
            Some(c) => {
                out.push(c);
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The ID map as `lxc.idmap` lines: the configured ranges mapped one-to-one, the rest of
/// 0..65536 onto the host range starting at `base`, split around them.
pub fn id_maps(configured: &[IdRange], base: (u32, u32)) -> Vec<String> {
    canonical::idmap_ranges(configured, base)
        .into_iter()
        .map(|(kind, inside, host, size)| format!("lxc.idmap = {kind} {inside} {host} {size}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_maps_split_around_configured_ranges() {
        assert_eq!(
            id_maps(&[], (100000, 100000)),
            vec!["lxc.idmap = u 0 100000 65536", "lxc.idmap = g 0 100000 65536"]
        );
        assert_eq!(
            id_maps(&[('u', 1000, 1000, 1), ('g', 1000, 1000, 1)], (100000, 200000)),
            vec![
                "lxc.idmap = u 0 100000 1000",
                "lxc.idmap = u 1000 1000 1",
                "lxc.idmap = u 1001 101001 64535",
                "lxc.idmap = g 0 200000 1000",
                "lxc.idmap = g 1000 1000 1",
                "lxc.idmap = g 1001 201001 64535",
            ]
        );
    }

    #[test]
    fn renders_network_limits_and_mounts() {
        let cfg = GuestConfig::parse([
            ("hostname", "web-1"),
            ("memory_mb", "512"),
            ("cores", "2"),
            ("net.ip", "10.77.0.101/24"),
            ("net.gw", "10.77.0.1"),
            ("net.mac", "02:77:00:00:01:01"),
            ("unprivileged", "1"),
            ("flags", "keyctl=1,nesting=1"),
        ])
        .expect("config");
        let cx = RenderContext {
            id: 901,
            rootfs: "/var/lib/phoenix/lxc/901/rootfs",
            host_bridge: "phxbr0",
            id_base: (100000, 100000),
            cgroups: Cgroups::V2,
            mounts: vec![("/srv/shared".into(), "/var/lib/phoenix/shared/web".into(), false)],
            devices: vec![crate::gpu::Device { path: "/dev/nvidia0".into(), major: 195, minor: 0 }],
            memsw: false,
        };
        let text = render(&cfg, &cx);
        for line in [
            "lxc.uts.name = web-1",
            "lxc.net.0.link = phxbr0",
            "lxc.net.0.ipv4.address = 10.77.0.101/24",
            "lxc.net.0.ipv4.gateway = 10.77.0.1",
            "lxc.net.0.hwaddr = 02:77:00:00:01:01",
            "lxc.cgroup2.memory.max = 536870912",
            "lxc.cgroup2.cpu.max = 200000 100000",
            "lxc.idmap = u 0 100000 65536",
            "lxc.include = /usr/share/lxc/config/nesting.conf",
            "lxc.mount.entry = /var/lib/phoenix/shared/web srv/shared none bind,create=dir 0 0",
            "lxc.cgroup2.devices.allow = c 195:0 rwm",
            "lxc.mount.entry = /dev/nvidia0 dev/nvidia0 none bind,optional,create=file 0 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn a_mount_path_stays_one_entry_on_one_line_whatever_it_holds() {
        let hostile = "/srv/src mnt/y none bind,create=dir 0 0\nlxc.environment = PHOENIX_INJECTED=yes\r\tx\\y\0";
        let cx = RenderContext {
            id: 901,
            rootfs: "/var/lib/phoenix/lxc/901/rootfs",
            host_bridge: "phxbr0",
            id_base: (100000, 100000),
            cgroups: Cgroups::V2,
            mounts: vec![
                ("/mnt/x y".into(), hostile.into(), false),
                ("/srv/plain".into(), "/var/lib/data dir".into(), true),
            ],
            devices: Vec::new(),
            memsw: false,
        };
        let text = render(&GuestConfig::default(), &cx);
        let entries: Vec<&str> = text.lines().filter(|l| l.starts_with("lxc.mount.entry")).collect();
        assert_eq!(
            entries,
            vec![
                "lxc.mount.entry = /srv/src\\040mnt/y\\040none\\040bind,create=dir\\0400\\0400\\012lxc.environment\\040=\\040PHOENIX_INJECTED=yes\\015\\011x\\134y\\000 mnt/x\\040y none bind,create=dir 0 0",
                "lxc.mount.entry = /var/lib/data\\040dir srv/plain none bind,ro,create=dir 0 0",
            ]
        );
        assert!(!text.contains("PHOENIX_INJECTED=yes\n"), "{text}");
        assert!(text.lines().all(|l| !l.starts_with("lxc.environment")), "{text}");
        // Six fields, as fstab has: a path adds none; and each reads back as written.
        for e in &entries {
            let fields: Vec<&str> = e.trim_start_matches("lxc.mount.entry = ").split(' ').collect();
            assert_eq!(fields.len(), 6, "{e}");
        }
        assert_eq!(fstab_unescape(&fstab_escape(hostile)), hostile);
        assert_eq!(fstab_unescape(r"C:\temp \04"), r"C:\temp \04");
    }
}
