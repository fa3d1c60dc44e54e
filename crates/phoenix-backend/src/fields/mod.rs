//! The normalised configuration's vocabulary, shared by desired and observed states: each
//! [`Field`] a guest can have, and its typed [`Value`]. Both print in the spellings plans have
//! always shown (`memory_mb`, `mount:/data`, `bind:/srv/data;ro`), and every field's text is read
//! back by one parser ([`Field::parse`]).

pub mod canonical;
mod value;

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;

pub use value::{IdRange, Mount, MountSource, Startup, Value, ValueError};

/// One field of a guest's normalised configuration. Every backend's table of how a change takes
/// effect is an exhaustive match over it, so that a new field cannot be forgotten there.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Field {
    /// `hostname`: the guest's host name.
    Hostname,
    /// `cores`: CPU cores.
    Cores,
    /// `memory_mb`: memory in MiB.
    MemoryMb,
    /// `swap_mb`: a container's swap in MiB.
    SwapMb,
    /// `storage`: the storage of the root disk.
    Storage,
    /// `disk_gb`: the root disk's size in GiB.
    DiskGb,
    /// `unprivileged`: a container runs in a user namespace.
    Unprivileged,
    /// `net.name`: a container's interface name inside.
    NetName,
    /// `net.bridge`: the bridge of the first interface.
    NetBridge,
    /// `net.ip`: the address with its prefix, or `dhcp`.
    NetIp,
    /// `net.gw`: the default gateway.
    NetGw,
    /// `net.nameservers`: DNS servers, in order.
    NetNameservers,
    /// `net.mac`: the first interface's MAC address.
    NetMac,
    /// `flags`: a container's feature flags (`nesting=1`).
    Flags,
    /// `onboot`: started when the host boots.
    Onboot,
    /// `startup`: start-up order and delay.
    Startup,
    /// `tags`: the guest's tags.
    Tags,
    /// `idmap`: a container's configured ID ranges.
    Idmap,
    /// `gpus`: the GPUs passed to a container.
    Gpus,
    /// `lxc.raw`: raw `lxc.*` lines of a container.
    LxcRaw,
    /// `apparmor`: a container's AppArmor profile.
    Apparmor,
    /// `firewall`: the guest's firewall is on.
    Firewall,
    /// `firewall.rules`: the guest's firewall rules, in order.
    FirewallRules,
    /// `ci.user`: the user cloud-init creates in a VM.
    CiUser,
    /// `ci.sshkeys`: that user's SSH keys, one a line.
    CiSshkeys,
    /// `ci.password`: the [`canonical::fingerprint`] of that user's password hash as the
    /// configuration gives it (a crypt hash or a secret reference), so that neither the hash nor
    /// what a reference resolves to is ever part of a plan.
    CiPassword,
    /// `mount:<path inside>`: a mount point of a container (its path inside, without a trailing
    /// `/`).
    Mount(String),
}

/// The prefix of mount fields' names.
pub const MOUNT_PREFIX: &str = "mount:";

/// The shape of a field's value: which [`Value`] it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// [`Value::Text`].
    Text,
    /// [`Value::Number`].
    Number,
    /// [`Value::Flag`].
    Flag,
    /// [`Value::Nameservers`].
    Nameservers,
    /// [`Value::Flags`].
    Flags,
    /// [`Value::Startup`].
    Startup,
    /// [`Value::Tags`].
    Tags,
    /// [`Value::IdMap`].
    IdMap,
    /// [`Value::Gpus`].
    Gpus,
    /// [`Value::Lines`].
    Lines,
    /// [`Value::Rules`].
    Rules,
    /// [`Value::Mount`].
    Mount,
}

impl Field {
    /// Fields of containers (besides mounts).
    pub const CONTAINER: &'static [Field] = &[
        Field::Hostname,
        Field::Cores,
        Field::MemoryMb,
        Field::SwapMb,
        Field::Storage,
        Field::DiskGb,
        Field::Unprivileged,
        Field::NetName,
        Field::NetBridge,
        Field::NetIp,
        Field::NetGw,
        Field::NetNameservers,
        Field::NetMac,
        Field::Flags,
        Field::Onboot,
        Field::Startup,
        Field::Tags,
        Field::Idmap,
        Field::Gpus,
        Field::LxcRaw,
        Field::Apparmor,
        Field::Firewall,
        Field::FirewallRules,
    ];

    /// Fields of VMs. `net.ip`, `net.gw` and `net.nameservers` are what cloud-init configures in
    /// the guest; `ci.*` its user.
    pub const VM: &'static [Field] = &[
        Field::Hostname,
        Field::Cores,
        Field::MemoryMb,
        Field::DiskGb,
        Field::Storage,
        Field::NetBridge,
        Field::NetIp,
        Field::NetGw,
        Field::NetNameservers,
        Field::NetMac,
        Field::CiUser,
        Field::CiSshkeys,
        Field::CiPassword,
        Field::Onboot,
        Field::Startup,
        Field::Tags,
        Field::Firewall,
        Field::FirewallRules,
    ];

    /// A mount field, for its path inside (a trailing `/` dropped).
    pub fn mount(inside: &str) -> Field {
        let trimmed = inside.trim_end_matches('/');
        Field::Mount(if trimmed.is_empty() { "/".to_string() } else { trimmed.to_string() })
    }

    /// The field's name, as plans show it.
    pub fn name(&self) -> Cow<'static, str> {
        let (name, path) = self.name_parts();
        if path.is_empty() { Cow::Borrowed(name) } else { Cow::Owned(format!("{name}{path}")) }
    }

    /// The field's name in two parts, so that it is compared without being built: the fixed
    /// name (and no path), or `mount:` and the path inside.
    fn name_parts(&self) -> (&'static str, &str) {
        let name = match self {
            Field::Hostname => "hostname",
            Field::Cores => "cores",
            Field::MemoryMb => "memory_mb",
            Field::SwapMb => "swap_mb",
            Field::Storage => "storage",
            Field::DiskGb => "disk_gb",
            Field::Unprivileged => "unprivileged",
            Field::NetName => "net.name",
            Field::NetBridge => "net.bridge",
            Field::NetIp => "net.ip",
            Field::NetGw => "net.gw",
            Field::NetNameservers => "net.nameservers",
            Field::NetMac => "net.mac",
            Field::Flags => "flags",
            Field::Onboot => "onboot",
            Field::Startup => "startup",
            Field::Tags => "tags",
            Field::Idmap => "idmap",
            Field::Gpus => "gpus",
            Field::LxcRaw => "lxc.raw",
            Field::Apparmor => "apparmor",
            Field::Firewall => "firewall",
            Field::FirewallRules => "firewall.rules",
            Field::CiUser => "ci.user",
            Field::CiSshkeys => "ci.sshkeys",
            Field::CiPassword => "ci.password",
            Field::Mount(path) => return (MOUNT_PREFIX, path),
        };
        (name, "")
    }

    /// The field a name names; `None` for a name that is none.
    pub fn from_name(name: &str) -> Option<Field> {
        if let Some(path) = name.strip_prefix(MOUNT_PREFIX) {
            return path.starts_with('/').then(|| Field::mount(path));
        }
        Field::CONTAINER.iter().chain(Field::VM).find(|f| f.name() == name).cloned()
    }

    /// The path inside of a mount field.
    pub fn mount_path(&self) -> Option<&str> {
        match self {
            Field::Mount(path) => Some(path),
            _ => None,
        }
    }

    /// The shape of the field's value.
    pub fn shape(&self) -> Shape {
        match self {
            Field::Hostname
            | Field::Storage
            | Field::NetName
            | Field::NetBridge
            | Field::NetIp
            | Field::NetGw
            | Field::NetMac
            | Field::Apparmor
            | Field::CiUser
            | Field::CiPassword => Shape::Text,
            Field::Cores | Field::MemoryMb | Field::SwapMb | Field::DiskGb => Shape::Number,
            Field::Unprivileged | Field::Onboot | Field::Firewall => Shape::Flag,
            Field::NetNameservers => Shape::Nameservers,
            Field::Flags => Shape::Flags,
            Field::Startup => Shape::Startup,
            Field::Tags => Shape::Tags,
            Field::Idmap => Shape::IdMap,
            Field::Gpus => Shape::Gpus,
            Field::LxcRaw | Field::CiSshkeys => Shape::Lines,
            Field::FirewallRules => Shape::Rules,
            Field::Mount(_) => Shape::Mount,
        }
    }

    /// Whether the field's absence from a guest's configuration means "none": mounts, `gpus`,
    /// `tags`, the raw `lxc.*` lines, the AppArmor profile (none means the backend's own), the
    /// configured ID ranges (none means the default mapping) and the DNS servers (none means the
    /// host's settings). A managed guest that shows one of these while its configuration has none
    /// has it removed; a volume mount is only detached, its data kept.
    ///
    /// Every other field is left alone when the configuration says nothing of it: its absence
    /// means "the backend's default" (`swap_mb`, `onboot`, `startup`), "what the backend chose"
    /// (`net.mac`) or, for `flags`, "what the guest was cloned with" (a clone of a template with
    /// `nesting=1` needs it without restating it).
    pub fn removable(&self) -> bool {
        match self {
            Field::Mount(_)
            | Field::Gpus
            | Field::Tags
            | Field::LxcRaw
            | Field::Apparmor
            | Field::Idmap
            | Field::NetNameservers => true,
            Field::Hostname
            | Field::Cores
            | Field::MemoryMb
            | Field::SwapMb
            | Field::Storage
            | Field::DiskGb
            | Field::Unprivileged
            | Field::NetName
            | Field::NetBridge
            | Field::NetIp
            | Field::NetGw
            | Field::NetMac
            | Field::Flags
            | Field::Onboot
            | Field::Startup
            | Field::Firewall
            | Field::FirewallRules
            | Field::CiUser
            | Field::CiSshkeys
            | Field::CiPassword => false,
        }
    }

    /// Reads this field's value from its text (the spelling [`Value`] prints): the one parser
    /// of every field's canonical form.
    pub fn parse(&self, text: &str) -> Result<Value, ValueError> {
        Value::parse(self, text)
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// Fields sort by name, as plans have always listed them.
impl Ord for Field {
    fn cmp(&self, other: &Field) -> Ordering {
        let ((a, a_path), (b, b_path)) = (self.name_parts(), other.name_parts());
        a.bytes().chain(a_path.bytes()).cmp(b.bytes().chain(b_path.bytes()))
    }
}

impl PartialOrd for Field {
    fn partial_cmp(&self, other: &Field) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl serde::Serialize for Field {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Field {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Field, D::Error> {
        let name = <String as serde::Deserialize>::deserialize(d)?;
        Field::from_name(&name).ok_or_else(|| serde::de::Error::custom(format!("no field is named {name:?}")))
    }
}

/// Serde for a map of fields to values that may be absent (`None`), as field names and the
/// values' spellings: `#[serde(with = "phoenix_backend::fields::optional_values")]`.
pub mod optional_values {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serializer};

    use super::{Field, Value};

    /// Writes field names and the values' spellings.
    pub fn serialize<S: Serializer>(map: &BTreeMap<Field, Option<Value>>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(map.iter().map(|(f, v)| (f.name(), v.as_ref().map(ToString::to_string))))
    }

    /// Reads them back.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<Field, Option<Value>>, D::Error> {
        let text = BTreeMap::<Field, Option<String>>::deserialize(d)?;
        text.into_iter()
            .map(|(field, value)| {
                let value = value.map(|v| field.parse(&v)).transpose().map_err(serde::de::Error::custom)?;
                Ok((field, value))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_has_one_name_read_back_as_itself() {
        let all: Vec<Field> =
            Field::CONTAINER.iter().chain(Field::VM).cloned().chain([Field::mount("/data/")]).collect();
        for field in &all {
            assert_eq!(Field::from_name(&field.name()).as_ref(), Some(field), "{field}");
        }
        assert_eq!(Field::mount("/data/").name(), "mount:/data");
        assert_eq!(Field::from_name("mount:data"), None, "a mount's path is absolute");
        assert_eq!(Field::from_name("memory"), None);
    }

    #[test]
    fn fields_sort_by_name() {
        let mut v = [Field::NetIp, Field::mount("/a"), Field::Cores, Field::MemoryMb, Field::NetBridge];
        v.sort();
        let names: Vec<String> = v.iter().map(Field::to_string).collect();
        assert_eq!(names, ["cores", "memory_mb", "mount:/a", "net.bridge", "net.ip"]);
    }
}
