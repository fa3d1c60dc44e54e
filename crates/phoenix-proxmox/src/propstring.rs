//! Proxmox property strings (`name=eth0,bridge=vmbr0,ip=10.0.0.5/24`) as typed values, printed
//! in one canonical order and parsed back to the same value.

use std::collections::BTreeMap;
use std::str::FromStr;

/// Why a property string does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {message}")]
pub struct PropError {
    /// Which property (`net0`, `rootfs`, ...).
    pub what: &'static str,
    /// What is wrong.
    pub message: String,
}

/// Splits a property string into key/value pairs; a bare value belongs to `default_key`.
pub fn parse_pairs(
    text: &str,
    what: &'static str,
    default_key: Option<&str>,
) -> Result<Vec<(String, String)>, PropError> {
    let err = |message: String| PropError { what, message };
    let mut out: Vec<(String, String)> = Vec::new();
    for (i, item) in text.split(',').enumerate() {
        let (k, v) = match item.split_once('=') {
            Some((k, v)) => (k.trim().to_string(), v.to_string()),
            None => match default_key {
                Some(d) if i == 0 && !item.is_empty() => (d.to_string(), item.to_string()),
                _ => return Err(err(format!("{item:?} is not key=value"))),
            },
        };
        if k.is_empty() {
            return Err(err(format!("{item:?} has no key")));
        }
        if out.iter().any(|(x, _)| *x == k) {
            return Err(err(format!("`{k}` is given twice")));
        }
        out.push((k, v));
    }
    Ok(out)
}

/// Prints pairs, the default key's value first and bare.
pub fn print_pairs(pairs: &[(String, String)], default_key: Option<&str>) -> String {
    let mut parts = Vec::new();
    if let Some(d) = default_key {
        parts.extend(pairs.iter().filter(|(k, _)| k == d).map(|(_, v)| v.clone()));
    }
    parts.extend(pairs.iter().filter(|(k, _)| Some(k.as_str()) != default_key).map(|(k, v)| format!("{k}={v}")));
    parts.join(",")
}

/// Reads typed values out of parsed pairs; keys left over are an error.
pub struct Reader {
    what: &'static str,
    pairs: BTreeMap<String, String>,
}

impl Reader {
    fn err(&self, message: String) -> PropError {
        PropError { what: self.what, message }
    }

    /// A text value.
    pub fn text(&mut self, key: &str) -> Option<String> {
        self.pairs.remove(key)
    }

    /// A required text value.
    pub fn required(&mut self, key: &str) -> Result<String, PropError> {
        self.text(key).ok_or_else(|| self.err(format!("`{key}` is required")))
    }

    /// A boolean, in any spelling Proxmox takes for one (pve-common's `parse_boolean`: `1`, `on`,
    /// `yes`, `true` and `0`, `off`, `no`, `false`, in any case): a hand-written `firewall=on`
    /// is the same interface as `firewall=1`.
    pub fn flag(&mut self, key: &str) -> Result<Option<bool>, PropError> {
        match self.text(key).map(|v| v.to_ascii_lowercase()).as_deref() {
            None => Ok(None),
            Some("1" | "on" | "yes" | "true") => Ok(Some(true)),
            Some("0" | "off" | "no" | "false") => Ok(Some(false)),
            Some(v) => Err(self.err(format!("`{key}` is {v:?}, not a boolean (0 or 1)"))),
        }
    }

    /// A number.
    pub fn number<T: FromStr>(&mut self, key: &str) -> Result<Option<T>, PropError> {
        match self.text(key) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| self.err(format!("`{key}` is {v:?}, not a number"))),
        }
    }

    /// Fails on keys nobody read.
    pub fn finish(self) -> Result<(), PropError> {
        match self.pairs.keys().next() {
            Some(k) => Err(PropError { what: self.what, message: format!("unknown key `{k}`") }),
            None => Ok(()),
        }
    }
}

/// Collects typed values as pairs, in the order written.
#[derive(Default)]
pub struct Writer(Vec<(String, String)>);

impl Writer {
    /// A text value.
    pub fn text(&mut self, key: &str, v: &Option<String>) {
        if let Some(v) = v {
            self.0.push((key.into(), v.clone()));
        }
    }
    /// A `0`/`1` value.
    pub fn flag(&mut self, key: &str, v: Option<bool>) {
        if let Some(b) = v {
            self.0.push((key.into(), if b { "1" } else { "0" }.into()));
        }
    }
    /// A number.
    pub fn number<T: ToString>(&mut self, key: &str, v: &Option<T>) {
        if let Some(n) = v {
            self.0.push((key.into(), n.to_string()));
        }
    }
}

/// A property string type.
pub trait Property: Sized {
    /// Its name in messages.
    const WHAT: &'static str;
    /// The key a bare first value belongs to.
    const DEFAULT_KEY: Option<&'static str> = None;
    /// Whether the default key's value is printed bare (as Proxmox shows it).
    const PRINT_DEFAULT_BARE: bool = true;
    /// Reads it from its pairs.
    fn read(r: &mut Reader) -> Result<Self, PropError>;
    /// Writes it as pairs, in canonical order.
    fn write(&self, w: &mut Writer);

    /// Parses a property string.
    fn parse(text: &str) -> Result<Self, PropError> {
        let pairs = parse_pairs(text, Self::WHAT, Self::DEFAULT_KEY)?;
        let mut r = Reader { what: Self::WHAT, pairs: pairs.into_iter().collect() };
        let v = Self::read(&mut r)?;
        r.finish()?;
        Ok(v)
    }

    /// Prints the property string.
    fn print(&self) -> String {
        let mut w = Writer::default();
        self.write(&mut w);
        print_pairs(&w.0, if Self::PRINT_DEFAULT_BARE { Self::DEFAULT_KEY } else { None })
    }
}

/// A container network interface, `net[n]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Net {
    /// Interface name inside the container (required).
    pub name: String,
    /// Bridge.
    pub bridge: Option<String>,
    /// Use the guest firewall on this interface.
    pub firewall: Option<bool>,
    /// IPv4 gateway.
    pub gw: Option<String>,
    /// IPv6 gateway.
    pub gw6: Option<String>,
    /// MAC address.
    pub hwaddr: Option<String>,
    /// IPv4/CIDR, `dhcp` or `manual`.
    pub ip: Option<String>,
    /// IPv6/CIDR, `auto`, `dhcp` or `manual`.
    pub ip6: Option<String>,
    /// Unplugged.
    pub link_down: Option<bool>,
    /// MTU.
    pub mtu: Option<u32>,
    /// Rate limit in MB/s.
    pub rate: Option<String>,
    /// VLAN tag.
    pub tag: Option<u32>,
    /// VLAN trunks, `;`-separated.
    pub trunks: Option<String>,
    /// Interface type (`veth`).
    pub kind: Option<String>,
    /// IP managed by the host (9.x).
    pub host_managed: Option<bool>,
}

impl Property for Net {
    const WHAT: &'static str = "net";

    fn read(r: &mut Reader) -> Result<Net, PropError> {
        let net = Net {
            name: r.required("name")?,
            bridge: r.text("bridge"),
            firewall: r.flag("firewall")?,
            gw: r.text("gw"),
            gw6: r.text("gw6"),
            hwaddr: r.text("hwaddr"),
            ip: r.text("ip"),
            ip6: r.text("ip6"),
            link_down: r.flag("link_down")?,
            mtu: r.number("mtu")?,
            rate: r.text("rate"),
            tag: r.number("tag")?,
            trunks: r.text("trunks"),
            kind: r.text("type"),
            host_managed: r.flag("host-managed")?,
        };
        if net.tag.is_some_and(|t| !(1..=4094).contains(&t)) {
            return Err(PropError { what: "net", message: "`tag` must be 1 to 4094".into() });
        }
        if net.mtu.is_some_and(|m| !(64..=65535).contains(&m)) {
            return Err(PropError { what: "net", message: "`mtu` must be 64 to 65535".into() });
        }
        Ok(net)
    }

    fn write(&self, w: &mut Writer) {
        w.text("name", &Some(self.name.clone()));
        w.text("bridge", &self.bridge);
        w.flag("firewall", self.firewall);
        w.text("gw", &self.gw);
        w.text("gw6", &self.gw6);
        w.flag("host-managed", self.host_managed);
        w.text("hwaddr", &self.hwaddr);
        w.text("ip", &self.ip);
        w.text("ip6", &self.ip6);
        w.flag("link_down", self.link_down);
        w.number("mtu", &self.mtu);
        w.text("rate", &self.rate);
        w.number("tag", &self.tag);
        w.text("trunks", &self.trunks);
        w.text("type", &self.kind);
    }
}

/// A root disk (`rootfs`, no `mp`) or a mount point (`mp[n]`, with `mp`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountPoint {
    /// Volume, `STORAGE:SIZE` to allocate, or a host directory (a bind mount).
    pub volume: String,
    /// Path inside the container (mount points only).
    pub mp: Option<String>,
    /// ACL support.
    pub acl: Option<bool>,
    /// Include in backups.
    pub backup: Option<bool>,
    /// Per-mount ID map (9.x).
    pub idmap: Option<String>,
    /// Keep the directory's ownership (9.x).
    pub keepattrs: Option<bool>,
    /// Mount options, `;`-separated.
    pub mountoptions: Option<String>,
    /// User quotas.
    pub quota: Option<bool>,
    /// Include in replication.
    pub replicate: Option<bool>,
    /// Read-only.
    pub ro: Option<bool>,
    /// Available on every node.
    pub shared: Option<bool>,
    /// Size, e.g. `8G`.
    pub size: Option<String>,
}

/// Whether a path is acceptable to Proxmox as a mount point string (no `.` or `..` components).
fn mp_string_ok(p: &str) -> bool {
    !p.contains("/./") && !p.contains("/../") && !p.ends_with("/.") && !p.ends_with("/..") && !p.starts_with("../")
}

impl Property for MountPoint {
    const WHAT: &'static str = "mount point";
    const DEFAULT_KEY: Option<&'static str> = Some("volume");

    fn read(r: &mut Reader) -> Result<MountPoint, PropError> {
        let m = MountPoint {
            volume: r.required("volume")?,
            mp: r.text("mp"),
            acl: r.flag("acl")?,
            backup: r.flag("backup")?,
            idmap: r.text("idmap"),
            keepattrs: r.flag("keepattrs")?,
            mountoptions: r.text("mountoptions"),
            quota: r.flag("quota")?,
            replicate: r.flag("replicate")?,
            ro: r.flag("ro")?,
            shared: r.flag("shared")?,
            size: r.text("size"),
        };
        for p in std::iter::once(&m.volume).chain(&m.mp) {
            if !mp_string_ok(p) {
                return Err(PropError { what: "mount point", message: format!("{p:?} has `.` or `..` components") });
            }
        }
        Ok(m)
    }

    fn write(&self, w: &mut Writer) {
        w.text("volume", &Some(self.volume.clone()));
        w.text("mp", &self.mp);
        w.flag("acl", self.acl);
        w.flag("backup", self.backup);
        w.text("idmap", &self.idmap);
        w.flag("keepattrs", self.keepattrs);
        w.text("mountoptions", &self.mountoptions);
        w.flag("quota", self.quota);
        w.flag("replicate", self.replicate);
        w.flag("ro", self.ro);
        w.flag("shared", self.shared);
        w.text("size", &self.size);
    }
}

impl MountPoint {
    /// Whether this is a bind mount of a host directory (which only `root@pam` may set).
    pub fn is_bind(&self) -> bool {
        self.volume.starts_with('/')
    }
}

/// Container feature flags, `features`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Features {
    /// Mount /sys read-write.
    pub force_rw_sys: Option<bool>,
    /// FUSE.
    pub fuse: Option<bool>,
    /// keyctl() (Docker in unprivileged containers).
    pub keyctl: Option<bool>,
    /// mknod().
    pub mknod: Option<bool>,
    /// File system types that may be mounted, `;`-separated.
    pub mount: Option<String>,
    /// Nesting.
    pub nesting: Option<bool>,
}

impl Property for Features {
    const WHAT: &'static str = "features";

    fn read(r: &mut Reader) -> Result<Features, PropError> {
        Ok(Features {
            force_rw_sys: r.flag("force_rw_sys")?,
            fuse: r.flag("fuse")?,
            keyctl: r.flag("keyctl")?,
            mknod: r.flag("mknod")?,
            mount: r.text("mount"),
            nesting: r.flag("nesting")?,
        })
    }

    fn write(&self, w: &mut Writer) {
        w.flag("force_rw_sys", self.force_rw_sys);
        w.flag("fuse", self.fuse);
        w.flag("keyctl", self.keyctl);
        w.flag("mknod", self.mknod);
        w.text("mount", &self.mount);
        w.flag("nesting", self.nesting);
    }
}

impl Features {
    /// Whether an API token may set these: only `nesting` is allowed to tokens.
    pub fn token_may_set(&self) -> bool {
        self.force_rw_sys.is_none()
            && self.fuse.is_none()
            && self.keyctl.is_none()
            && self.mknod.is_none()
            && self.mount.is_none()
    }
}

/// A passed-through device, `dev[n]` (root@pam only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Device {
    /// Device path under `/dev/`.
    pub path: String,
    /// Deny writes.
    pub deny_write: Option<bool>,
    /// Group of the node in the container.
    pub gid: Option<u32>,
    /// Octal mode, e.g. `0660`.
    pub mode: Option<String>,
    /// Owner of the node in the container.
    pub uid: Option<u32>,
}

impl Property for Device {
    const WHAT: &'static str = "dev";
    const DEFAULT_KEY: Option<&'static str> = Some("path");

    fn read(r: &mut Reader) -> Result<Device, PropError> {
        let d = Device {
            path: r.required("path")?,
            deny_write: r.flag("deny-write")?,
            gid: r.number("gid")?,
            mode: r.text("mode"),
            uid: r.number("uid")?,
        };
        let bad = |m: String| PropError { what: "dev", message: m };
        if !d.path.starts_with("/dev/") || d.path.split('/').any(|c| c == "." || c == "..") {
            return Err(bad(format!("{:?} is not a path under /dev/", d.path)));
        }
        if let Some(m) = &d.mode
            && !(m.len() == 4 && m.starts_with('0') && m.bytes().all(|b| (b'0'..=b'7').contains(&b)))
        {
            return Err(bad(format!("mode {m:?} is not an octal mode like 0660")));
        }
        Ok(d)
    }

    fn write(&self, w: &mut Writer) {
        w.text("path", &Some(self.path.clone()));
        w.flag("deny-write", self.deny_write);
        w.number("gid", &self.gid);
        w.text("mode", &self.mode);
        w.number("uid", &self.uid);
    }
}

/// Start-up order, `startup`: `order=N,up=S,down=S` (a bare number is the order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Startup {
    /// Position in the start order.
    pub order: Option<u32>,
    /// Seconds to wait after starting.
    pub up: Option<u32>,
    /// Seconds to wait after stopping.
    pub down: Option<u32>,
}

impl Property for Startup {
    const WHAT: &'static str = "startup";
    const DEFAULT_KEY: Option<&'static str> = Some("order");
    // Proxmox shows `order=2,up=30`.
    const PRINT_DEFAULT_BARE: bool = false;

    fn read(r: &mut Reader) -> Result<Startup, PropError> {
        Ok(Startup { order: r.number("order")?, up: r.number("up")?, down: r.number("down")? })
    }

    fn write(&self, w: &mut Writer) {
        w.number("order", &self.order);
        w.number("up", &self.up);
        w.number("down", &self.down);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn parses_what_proxmox_shows() {
        let n = Net::parse(
            "name=eth0,bridge=vmbr0,firewall=1,gw=10.0.0.1,hwaddr=BC:24:11:2E:5A:01,ip=10.0.0.5/24,tag=20,type=veth",
        )
        .expect("net");
        assert_eq!(
            (n.name.as_str(), n.bridge.as_deref(), n.firewall, n.tag),
            ("eth0", Some("vmbr0"), Some(true), Some(20))
        );
        assert_eq!(
            n.print(),
            "name=eth0,bridge=vmbr0,firewall=1,gw=10.0.0.1,hwaddr=BC:24:11:2E:5A:01,ip=10.0.0.5/24,tag=20,type=veth"
        );
        let r = MountPoint::parse("local-zfs:subvol-950-disk-0,size=32G").expect("rootfs");
        assert_eq!(
            (r.volume.as_str(), r.size.as_deref(), r.mp.as_deref()),
            ("local-zfs:subvol-950-disk-0", Some("32G"), None)
        );
        let m = MountPoint::parse("/fastData/shared-models,mp=/models,ro=1").expect("mp");
        assert!(m.is_bind() && m.ro == Some(true));
        assert_eq!(m.print(), "/fastData/shared-models,mp=/models,ro=1");
        assert_eq!(
            Device::parse("/dev/dri/renderD128,gid=44,mode=0660").expect("dev").print(),
            "/dev/dri/renderD128,gid=44,mode=0660"
        );
        assert_eq!(Startup::parse("2,up=30").expect("startup").print(), "order=2,up=30");
        assert!(Features::parse("nesting=1").expect("features").token_may_set());
        assert!(!Features::parse("keyctl=1,nesting=1").expect("features").token_may_set());
        // Booleans as a person may write them in the conf file: read as Proxmox reads them,
        // written back as 0 and 1.
        for (written, on) in [("on", true), ("True", true), ("yes", true), ("off", false), ("no", false)] {
            let n = Net::parse(&format!("name=eth0,bridge=vmbr0,firewall={written}")).expect("net");
            assert_eq!(n.firewall, Some(on), "{written}");
            assert_eq!(n.print(), format!("name=eth0,bridge=vmbr0,firewall={}", u8::from(on)));
        }
    }

    #[test]
    fn refuses_what_proxmox_refuses() {
        assert!(Net::parse("bridge=vmbr0").is_err(), "name is required");
        assert!(Net::parse("name=eth0,tag=5000").is_err());
        assert!(Net::parse("name=eth0,firewall=2").is_err());
        assert!(Net::parse("name=eth0,bogus=1").is_err());
        assert!(Net::parse("name=eth0,name=eth1").is_err());
        assert!(MountPoint::parse("/srv/../etc,mp=/x").is_err());
        assert!(Device::parse("/etc/passwd").is_err());
        assert!(Device::parse("/dev/nvidia0,mode=660").is_err());
    }

    fn opt_text() -> impl Strategy<Value = Option<String>> {
        prop::option::of("[a-z0-9][a-z0-9./:-]{0,12}")
    }

    proptest! {
        #[test]
        fn net_round_trips(name in "[a-z][a-z0-9]{0,8}", bridge in opt_text(), ip in opt_text(), gw in opt_text(), hwaddr in opt_text(),
                           firewall in any::<Option<bool>>(), link_down in any::<Option<bool>>(), mtu in prop::option::of(64u32..=65535),
                           tag in prop::option::of(1u32..=4094), kind in opt_text(), host_managed in any::<Option<bool>>()) {
            let n = Net { name, bridge, ip, gw, hwaddr, firewall, link_down, mtu, tag, kind, host_managed, ..Net::default() };
            prop_assert_eq!(Net::parse(&n.print()), Ok(n));
        }

        #[test]
        fn mount_points_round_trip(volume in "[a-z][a-z0-9-]{0,8}:[a-z0-9-]{1,12}", mp in prop::option::of("/[a-z]{1,8}(/[a-z]{1,8})?"),
                                   ro in any::<Option<bool>>(), backup in any::<Option<bool>>(), size in prop::option::of("[1-9][0-9]{0,3}G")) {
            let m = MountPoint { volume, mp, ro, backup, size, ..MountPoint::default() };
            prop_assert_eq!(MountPoint::parse(&m.print()), Ok(m));
        }
    }
}
