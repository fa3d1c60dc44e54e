//! The typed value of a configuration field, and its one spelling.

use std::fmt;

use super::canonical::{self, FirewallRule};
use super::{Field, Shape};

/// One range of an ID map: `u` or `g`, first ID inside, first ID on the host, count.
pub type IdRange = (char, u64, u64, u64);

/// The value of a configuration field. Each field takes one shape ([`Field::shape`]); a value
/// prints in the spelling plans show, which [`Field::parse`] reads back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// Text as it is (a host name, a storage, an address, a lowercase MAC address).
    Text(String),
    /// A count or a size.
    Number(u64),
    /// On or off, spelled `1` or `0`.
    Flag(bool),
    /// DNS servers in order, spelled separated by spaces.
    Nameservers(Vec<String>),
    /// Container feature flags (`nesting=1`), sorted, spelled separated by `,`.
    Flags(Vec<String>),
    /// Start-up order and delay.
    Startup(Startup),
    /// Tags, lowercase, sorted, unique, spelled separated by `;`.
    Tags(Vec<String>),
    /// The configured ID ranges of a container, sorted by their spelling `u:1000:1000:1`,
    /// separated by spaces.
    IdMap(Vec<IdRange>),
    /// GPU indices in numeric order, spelled separated by `,`.
    Gpus(Vec<String>),
    /// Lines: raw `lxc.*` lines as `key: value`, SSH keys.
    Lines(Vec<String>),
    /// Firewall rules in order, spelled as a JSON array ([`canonical::firewall_rules`]).
    Rules(Vec<FirewallRule>),
    /// A mount point's source and options.
    Mount(Mount),
}

/// A guest's start-up order and delay (Proxmox's `startup`), spelled `order=N,up=S`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Startup {
    /// Its place in the start-up order.
    pub order: Option<u32>,
    /// Seconds to wait after starting it.
    pub up: Option<u32>,
}

/// A container's mount point: spelled `bind:<host path>` or `volume:<storage>:<GiB>`, followed by
/// options separated by `;`: `ro`, `owner=<uid>:<gid>` (IDs inside the guest),
/// `host-owner=<owner>` (`UID:GID` or `user:group` on the host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Where its data is.
    pub source: MountSource,
    /// Mounted read-only.
    pub read_only: bool,
    /// The owner inside the guest Phoenix gives a host directory it creates.
    pub owner: Option<(u32, u32)>,
    /// The owner on the host Phoenix gives a host directory it creates.
    pub host_owner: Option<String>,
}

/// Where a mount point's data is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSource {
    /// A directory of the host.
    Bind(String),
    /// A volume of a storage, of a size in GiB.
    Volume {
        /// The storage.
        storage: String,
        /// Its size in GiB.
        gib: u64,
    },
}

/// A field's text that is not a value of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {text:?} is not {expected}")]
pub struct ValueError {
    /// The field.
    pub field: String,
    /// The text.
    pub text: String,
    /// What the field takes.
    pub expected: &'static str,
}

impl Mount {
    /// A bind mount of a host directory, read-write, with no owner to give it.
    pub fn bind(host: impl Into<String>) -> Mount {
        Mount { source: MountSource::Bind(host.into()), read_only: false, owner: None, host_owner: None }
    }

    /// A volume of `gib` GiB on `storage`.
    pub fn volume(storage: impl Into<String>, gib: u64) -> Mount {
        Mount {
            source: MountSource::Volume { storage: storage.into(), gib },
            read_only: false,
            owner: None,
            host_owner: None,
        }
    }

    /// The host directory of a bind mount.
    pub fn host_path(&self) -> Option<&str> {
        match &self.source {
            MountSource::Bind(path) => Some(path),
            MountSource::Volume { .. } => None,
        }
    }

    /// Whether it is a volume of a storage.
    pub fn is_volume(&self) -> bool {
        matches!(self.source, MountSource::Volume { .. })
    }

    /// What the mount says about the guest as it runs: the source and `ro`, without `owner` and
    /// `host-owner` — instructions for a host directory Phoenix creates, which an existing
    /// directory keeps as it is, so backends cannot show them.
    pub fn state(&self) -> Mount {
        Mount { owner: None, host_owner: None, ..self.clone() }
    }

    fn parse(text: &str) -> Option<Mount> {
        let mut parts = text.split(';');
        let source = parts.next()?;
        let mut mount = if let Some(host) = source.strip_prefix("bind:") {
            Mount::bind(host)
        } else {
            let (storage, gib) = source.strip_prefix("volume:")?.rsplit_once(':')?;
            Mount::volume(storage, gib.parse().ok()?)
        };
        for option in parts {
            if option == "ro" {
                mount.read_only = true;
            } else if let Some(ids) = option.strip_prefix("owner=") {
                let (uid, gid) = ids.split_once(':')?;
                mount.owner = Some((uid.parse().ok()?, gid.parse().ok()?));
            } else if let Some(owner) = option.strip_prefix("host-owner=") {
                mount.host_owner = Some(owner.to_string());
            } else {
                return None;
            }
        }
        Some(mount)
    }
}

impl fmt::Display for Mount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            MountSource::Bind(path) => write!(f, "bind:{path}")?,
            MountSource::Volume { storage, gib } => write!(f, "volume:{storage}:{gib}")?,
        }
        if self.read_only {
            f.write_str(";ro")?;
        }
        if let Some((uid, gid)) = self.owner {
            write!(f, ";owner={uid}:{gid}")?;
        }
        if let Some(owner) = &self.host_owner {
            write!(f, ";host-owner={owner}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Startup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.order, self.up) {
            (Some(o), Some(u)) => write!(f, "order={o},up={u}"),
            (Some(o), None) => write!(f, "order={o}"),
            (None, Some(u)) => write!(f, "up={u}"),
            (None, None) => Ok(()),
        }
    }
}

impl Startup {
    /// Reads `order=N,up=S` (each part optional; Proxmox's `down=` is not Phoenix's and is left
    /// out).
    pub fn parse(text: &str) -> Option<Startup> {
        let mut startup = Startup::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once('=').unwrap_or(("order", part));
            match key.trim() {
                "order" => startup.order = Some(value.trim().parse().ok()?),
                "up" => startup.up = Some(value.trim().parse().ok()?),
                "down" => {}
                _ => return None,
            }
        }
        Some(startup)
    }
}

impl Value {
    /// Tags in their canonical form: lowercase, sorted, unique, empty ones dropped.
    pub fn tags<'a>(tags: impl IntoIterator<Item = &'a str>) -> Value {
        let mut v: Vec<String> = tags.into_iter().map(|t| t.trim().to_lowercase()).filter(|t| !t.is_empty()).collect();
        v.sort();
        v.dedup();
        Value::Tags(v)
    }

    /// Container flags (`nesting=1`) in their canonical form: without spaces, sorted, unique.
    pub fn flags<'a>(options: impl IntoIterator<Item = &'a str>) -> Value {
        let mut v: Vec<String> =
            options.into_iter().map(|o| o.split_whitespace().collect::<String>()).filter(|o| !o.is_empty()).collect();
        v.sort();
        v.dedup();
        Value::Flags(v)
    }

    /// Configured ID ranges, sorted by their spelling.
    pub fn idmap(mut ranges: Vec<IdRange>) -> Value {
        ranges.sort_by_key(|(k, i, h, n)| format!("{k}:{i}:{h}:{n}"));
        Value::IdMap(ranges)
    }

    /// GPU indices in numeric order without repeats; `None` for none (`none`, or empty).
    pub fn gpus(text: &str) -> Option<Value> {
        let mut v: Vec<&str> = text.split(',').map(str::trim).filter(|x| !x.is_empty()).collect();
        v.sort_by_key(|g| (g.parse::<u64>().unwrap_or(u64::MAX), g.to_string()));
        v.dedup();
        (text != "none" && !v.is_empty()).then(|| Value::Gpus(v.into_iter().map(str::to_string).collect()))
    }

    /// A MAC address, lowercase.
    pub fn mac(mac: &str) -> Value {
        Value::Text(mac.to_ascii_lowercase())
    }

    /// Raw `lxc.*` lines, each as `key: value` (users write `key: value` or `key = value`).
    pub fn lxc_lines<'a>(lines: impl IntoIterator<Item = &'a str>) -> Value {
        Value::Lines(lines.into_iter().map(canonical::lxc_line).collect())
    }

    /// Firewall rules, each in its canonical spelling.
    pub fn rules(rules: &[FirewallRule]) -> Value {
        Value::Rules(rules.iter().map(FirewallRule::canonical).collect())
    }

    /// The shape of this value.
    pub fn shape(&self) -> Shape {
        match self {
            Value::Text(_) => Shape::Text,
            Value::Number(_) => Shape::Number,
            Value::Flag(_) => Shape::Flag,
            Value::Nameservers(_) => Shape::Nameservers,
            Value::Flags(_) => Shape::Flags,
            Value::Startup(_) => Shape::Startup,
            Value::Tags(_) => Shape::Tags,
            Value::IdMap(_) => Shape::IdMap,
            Value::Gpus(_) => Shape::Gpus,
            Value::Lines(_) => Shape::Lines,
            Value::Rules(_) => Shape::Rules,
            Value::Mount(_) => Shape::Mount,
        }
    }

    /// The text of a [`Value::Text`].
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(t) => Some(t),
            _ => None,
        }
    }

    /// The number of a [`Value::Number`].
    pub fn as_number(&self) -> Option<u64> {
        match self {
            Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// The flag of a [`Value::Flag`].
    pub fn as_flag(&self) -> Option<bool> {
        match self {
            Value::Flag(b) => Some(*b),
            _ => None,
        }
    }

    /// The mount of a [`Value::Mount`].
    pub fn as_mount(&self) -> Option<&Mount> {
        match self {
            Value::Mount(m) => Some(m),
            _ => None,
        }
    }

    /// The configured ID ranges of a [`Value::IdMap`].
    pub fn as_idmap(&self) -> Option<&[IdRange]> {
        match self {
            Value::IdMap(ranges) => Some(ranges),
            _ => None,
        }
    }

    /// The items of a list value (nameservers, flags, tags, GPUs, lines); empty for others.
    pub fn items(&self) -> &[String] {
        match self {
            Value::Nameservers(v) | Value::Flags(v) | Value::Tags(v) | Value::Gpus(v) | Value::Lines(v) => v,
            _ => &[],
        }
    }

    /// Reads `field`'s value from its text.
    pub(super) fn parse(field: &Field, text: &str) -> Result<Value, ValueError> {
        let fail = |expected: &'static str| ValueError { field: field.to_string(), text: text.to_string(), expected };
        Ok(match field.shape() {
            Shape::Text if *field == Field::NetMac => Value::mac(text),
            Shape::Text => Value::Text(text.to_string()),
            Shape::Number => Value::Number(text.trim().parse().map_err(|_| fail("a whole number"))?),
            Shape::Flag => Value::Flag(match text.trim() {
                "1" | "on" | "yes" | "true" => true,
                "0" | "off" | "no" | "false" => false,
                _ => return Err(fail("1 or 0")),
            }),
            Shape::Nameservers => Value::Nameservers(text.split_whitespace().map(str::to_string).collect()),
            Shape::Flags => Value::flags(text.split(',')),
            Shape::Startup => Value::Startup(Startup::parse(text).ok_or_else(|| fail("order=N,up=S"))?),
            Shape::Tags => Value::tags(text.split([';', ',', ' '])),
            Shape::IdMap => Value::idmap(
                text.split_whitespace()
                    .map(|m| {
                        let p: Vec<&str> = m.split(':').collect();
                        let kind = match p.first() {
                            Some(&"u") => 'u',
                            Some(&"g") => 'g',
                            _ => return None,
                        };
                        (p.len() == 4).then_some(())?;
                        Some((kind, p[1].parse().ok()?, p[2].parse().ok()?, p[3].parse().ok()?))
                    })
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| fail("ranges u|g:INSIDE:HOST:COUNT separated by spaces"))?,
            ),
            Shape::Gpus => Value::gpus(text).ok_or_else(|| fail("GPU indices separated by ,"))?,
            Shape::Lines if *field == Field::LxcRaw => Value::lxc_lines(text.lines().filter(|l| !l.trim().is_empty())),
            Shape::Lines => {
                Value::Lines(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect())
            }
            Shape::Rules => Value::Rules(
                canonical::parse_firewall_rules(text).ok_or_else(|| fail("a JSON array of firewall rules"))?,
            ),
            Shape::Mount => Value::Mount(
                Mount::parse(text)
                    .ok_or_else(|| fail("bind:PATH or volume:STORAGE:GIB, then ;ro, ;owner=, ;host-owner="))?,
            ),
        })
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Text(t) => f.write_str(t),
            Value::Number(n) => write!(f, "{n}"),
            Value::Flag(b) => f.write_str(if *b { "1" } else { "0" }),
            Value::Nameservers(v) => f.write_str(&v.join(" ")),
            Value::Flags(v) | Value::Gpus(v) => f.write_str(&v.join(",")),
            Value::Startup(s) => write!(f, "{s}"),
            Value::Tags(v) => f.write_str(&v.join(";")),
            Value::IdMap(v) => {
                let spelled: Vec<String> = v.iter().map(|(k, i, h, n)| format!("{k}:{i}:{h}:{n}")).collect();
                f.write_str(&spelled.join(" "))
            }
            Value::Lines(v) => f.write_str(&v.join("\n")),
            Value::Rules(rules) => f.write_str(&canonical::firewall_rules(rules)),
            Value::Mount(m) => write!(f, "{m}"),
        }
    }
}

impl serde::Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl From<u64> for Value {
    fn from(n: u64) -> Value {
        Value::Number(n)
    }
}

impl From<u32> for Value {
    fn from(n: u32) -> Value {
        Value::Number(u64::from(n))
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Flag(b)
    }
}

impl From<String> for Value {
    fn from(t: String) -> Value {
        Value::Text(t)
    }
}

impl From<&str> for Value {
    fn from(t: &str) -> Value {
        Value::Text(t.to_string())
    }
}

impl From<&String> for Value {
    fn from(t: &String) -> Value {
        Value::Text(t.clone())
    }
}

impl From<Mount> for Value {
    fn from(m: Mount) -> Value {
        Value::Mount(m)
    }
}

impl From<Startup> for Value {
    fn from(s: Startup) -> Value {
        Value::Startup(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shape_reads_back_what_it_prints() {
        let cases = [
            (Field::Hostname, "web-1"),
            (Field::MemoryMb, "2048"),
            (Field::Onboot, "1"),
            (Field::NetNameservers, "10.0.0.1 1.1.1.1"),
            (Field::Flags, "keyctl=1,nesting=1"),
            (Field::Startup, "order=2,up=30"),
            (Field::Startup, "up=5"),
            (Field::Tags, "ai;gpu"),
            (Field::Idmap, "g:1000:1000:1 u:1000:1000:1"),
            (Field::Gpus, "0,1"),
            (Field::LxcRaw, "lxc.cgroup2.devices.allow: c 195:* rwm\nlxc.mount.entry: /a b none bind 0 0"),
            (Field::CiSshkeys, "ssh-ed25519 AAAA a@b\nssh-rsa BBBB c@d"),
            (Field::FirewallRules, r#"[{"type":"in","action":"ACCEPT","proto":"tcp","port":"22"}]"#),
            (Field::mount("/data"), "bind:/srv/data;ro;owner=1000:1000"),
            (Field::mount("/web"), "bind:/srv/web;host-owner=www-data:www-data"),
            (Field::mount("/models"), "volume:local-zfs:100"),
        ];
        for (field, text) in cases {
            let value = field.parse(text).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(value.shape(), field.shape(), "{field}");
            assert_eq!(value.to_string(), text, "{field}");
        }
    }

    #[test]
    fn text_is_read_into_its_one_spelling() {
        let spelled = |f: Field, t: &str| f.parse(t).map(|v| v.to_string());
        assert_eq!(spelled(Field::Tags, "GPU; ai;gpu").as_deref(), Ok("ai;gpu"));
        assert_eq!(spelled(Field::Flags, "nesting=1, keyctl=1").as_deref(), Ok("keyctl=1,nesting=1"));
        assert_eq!(spelled(Field::Gpus, "1, 0,1").as_deref(), Ok("0,1"));
        assert_eq!(spelled(Field::NetMac, "BC:24:11:AA:BB:CC").as_deref(), Ok("bc:24:11:aa:bb:cc"));
        assert_eq!(
            spelled(Field::LxcRaw, "lxc.apparmor.profile = unconfined").as_deref(),
            Ok("lxc.apparmor.profile: unconfined")
        );
        assert_eq!(spelled(Field::Startup, "order=3,up=10,down=5").as_deref(), Ok("order=3,up=10"));
        assert_eq!(spelled(Field::Idmap, "u:1000:1000:1 g:1000:1000:1").as_deref(), Ok("g:1000:1000:1 u:1000:1000:1"));
    }

    #[test]
    fn text_that_is_no_value_of_its_field_is_refused_with_what_it_takes() {
        let e = Field::MemoryMb.parse("2G").expect_err("not a number");
        assert_eq!(e.to_string(), "memory_mb: \"2G\" is not a whole number");
        for (field, text) in [
            (Field::Onboot, "maybe"),
            (Field::Startup, "first"),
            (Field::Idmap, "x:1:2:3"),
            (Field::Gpus, "none"),
            (Field::FirewallRules, "[{}]"),
            (Field::mount("/a"), "nfs:/srv"),
            (Field::mount("/a"), "bind:/srv;rw"),
            (Field::mount("/a"), "volume:local:big"),
        ] {
            assert!(field.parse(text).is_err(), "{field} = {text}");
        }
    }

    #[test]
    fn a_mounts_state_leaves_out_what_only_a_new_directory_gets() {
        let m = Field::mount("/d").parse("bind:/srv/d;ro;owner=33:33;host-owner=www-data:www-data").expect("mount");
        let Value::Mount(m) = m else { panic!("a mount") };
        assert_eq!(m.state().to_string(), "bind:/srv/d;ro");
        assert_eq!(m.host_path(), Some("/srv/d"));
        assert!(!m.is_volume());
    }
}
