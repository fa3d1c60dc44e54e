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

/// Fields of VMs. `net.ip`, `net.gw` and `net.nameservers` are what cloud-init configures in
/// the guest; `ci.user` and `ci.sshkeys` (one key a line) its user; `ci.password` the
/// [`canonical::fingerprint`] of the password hash as the configuration gives it (a crypt hash or
/// a secret reference), so that neither the hash nor what a reference resolves to is ever part of
/// a plan.
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
    "ci.sshkeys",
    "ci.password",
    "onboot",
    "startup",
    "tags",
    "firewall",
    "firewall.rules",
];

/// The prefix of mount fields.
pub const MOUNT_PREFIX: &str = "mount:";

/// Fields whose absence from a guest's configuration means "none": mounts (`mount:<path>`),
/// `gpus`, `tags`, the raw `lxc.*` lines (`lxc.raw`), the AppArmor profile (`apparmor`, none
/// means the backend's own profile), the configured ID ranges (`idmap`, none means the default
/// mapping) and the DNS servers (`net.nameservers`, none means the host's settings). A managed
/// guest that shows one of these while its configuration has none has it removed; a volume
/// mount is only detached, its data kept.
///
/// Every other field is left alone when the configuration says nothing of it: its absence means
/// "the backend's default" (`swap_mb`, `onboot`, `startup`), "what the backend chose" (`net.mac`)
/// or, for `flags`, "what the guest was cloned with" (a clone of a template with `nesting=1`
/// needs it without restating it).
pub fn removable(field: &str) -> bool {
    field.starts_with(MOUNT_PREFIX)
        || matches!(field, "gpus" | "tags" | "lxc.raw" | "apparmor" | "idmap" | "net.nameservers")
}

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

    /// A short, stable stand-in for a secret's text (a password hash, or a reference to one): it
    /// tells whether the configured value changed without showing it. `sha256:` and the first 16
    /// hex digits of its SHA-256.
    pub fn fingerprint(secret: &str) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(secret.as_bytes());
        let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
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

    /// What a mount's value says about the guest as it runs: the source and `ro`, without
    /// `owner=` and `host-owner=` — instructions for a host directory Phoenix creates, which an
    /// existing directory keeps as it is, so backends cannot show them.
    pub fn mount_state(value: &str) -> String {
        value
            .split(';')
            .filter(|o| !o.starts_with("owner=") && !o.starts_with("host-owner="))
            .collect::<Vec<_>>()
            .join(";")
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

    fn is_true(b: &bool) -> bool {
        *b
    }

    fn yes() -> bool {
        true
    }

    /// One guest firewall rule in its canonical form: the value of the field `firewall.rules` is
    /// a JSON array of these, with only the keys that are present, `enabled` only when false, in
    /// this fixed key order. The last four keys are Proxmox settings Phoenix's configuration does
    /// not have; they only appear when observed, so that a rule changed by hand shows as a
    /// difference.
    #[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct FirewallRule {
        /// Direction: `in` or `out` (lowercase).
        #[serde(rename = "type")]
        pub direction: String,
        /// `ACCEPT`, `DROP` or `REJECT` (uppercase), or a security group's name as written.
        pub action: String,
        /// Source address, range, alias or IP set.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub source: Option<String>,
        /// Destination address, range, alias or IP set.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub dest: Option<String>,
        /// IP protocol.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub proto: Option<String>,
        /// Destination port(s) (Proxmox's `dport`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub port: Option<String>,
        /// Source port(s).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub sport: Option<String>,
        /// Free text.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub comment: Option<String>,
        /// Whether the rule is active.
        #[serde(default = "yes", skip_serializing_if = "is_true")]
        pub enabled: bool,
        /// A Proxmox macro (observed only).
        #[serde(default, rename = "macro", skip_serializing_if = "Option::is_none")]
        pub macro_name: Option<String>,
        /// A network interface the rule is limited to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub iface: Option<String>,
        /// A log level (observed only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub log: Option<String>,
        /// An ICMP type (observed only).
        #[serde(default, rename = "icmp-type", skip_serializing_if = "Option::is_none")]
        pub icmp_type: Option<String>,
    }

    impl FirewallRule {
        /// The same rule with each part in its canonical spelling: text trimmed, empty text
        /// absent, the direction lowercase, the built-in actions uppercase.
        pub fn canonical(&self) -> FirewallRule {
            let t = |v: &Option<String>| v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string);
            let action = self.action.trim();
            let builtin = ["ACCEPT", "DROP", "REJECT"].iter().find(|a| a.eq_ignore_ascii_case(action));
            FirewallRule {
                direction: self.direction.trim().to_ascii_lowercase(),
                action: builtin.map_or_else(|| action.to_string(), |a| (*a).to_string()),
                source: t(&self.source),
                dest: t(&self.dest),
                proto: t(&self.proto).map(|p| p.to_ascii_lowercase()),
                port: t(&self.port),
                sport: t(&self.sport),
                comment: t(&self.comment),
                enabled: self.enabled,
                macro_name: t(&self.macro_name),
                iface: t(&self.iface),
                log: t(&self.log),
                icmp_type: t(&self.icmp_type),
            }
        }
    }

    /// A guest's rules, in order, as the value of the field `firewall.rules`.
    pub fn firewall_rules(rules: &[FirewallRule]) -> String {
        let v: Vec<FirewallRule> = rules.iter().map(FirewallRule::canonical).collect();
        serde_json::to_string(&v).unwrap_or_default()
    }

    /// The rules of a `firewall.rules` value; `None` when it is not one.
    pub fn parse_firewall_rules(value: &str) -> Option<Vec<FirewallRule>> {
        serde_json::from_str::<Vec<FirewallRule>>(value).ok().map(|v| v.iter().map(FirewallRule::canonical).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::canonical::{FirewallRule, firewall_rules, parse_firewall_rules};

    #[test]
    fn firewall_rules_have_one_spelling() {
        let rule = FirewallRule {
            direction: "IN".into(),
            action: "accept".into(),
            proto: Some("TCP".into()),
            port: Some(" 22 ".into()),
            comment: Some(String::new()),
            enabled: true,
            ..FirewallRule::default()
        };
        let off = FirewallRule {
            direction: "out".into(),
            action: "my-group".into(),
            dest: Some("10.0.0.0/8".into()),
            enabled: false,
            ..FirewallRule::default()
        };
        let text = firewall_rules(&[rule, off]);
        assert_eq!(
            text,
            r#"[{"type":"in","action":"ACCEPT","proto":"tcp","port":"22"},{"type":"out","action":"my-group","dest":"10.0.0.0/8","enabled":false}]"#
        );
        let back = parse_firewall_rules(&text).expect("parses");
        assert_eq!(firewall_rules(&back), text);
        assert_eq!(firewall_rules(&[]), "[]");
        assert!(parse_firewall_rules("[{\"type\":\"in\"}]").is_none(), "an action is required");
    }
}
