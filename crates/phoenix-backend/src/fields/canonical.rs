//! Canonical forms shared with backends, so that observed values normalise the same way as
//! desired ones: what [`Value`] does not hold itself.

use super::{IdRange, Value};

/// A short, stable stand-in for a secret's text (a password hash, or a reference to one): it
/// tells whether the configured value changed without showing it. `sha256:` and the first 16
/// hex digits of its SHA-256.
pub fn fingerprint(secret: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(secret.as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// A raw `lxc.*` line as `key: value` (users write it `key: value` or `key = value`).
pub fn lxc_line(line: &str) -> String {
    let at = line.find([':', '=']).unwrap_or(line.len());
    let (key, value) = (line[..at].trim(), line.get(at + 1..).unwrap_or_default().trim());
    format!("{key}: {value}")
}

/// The whole ID map of a container for its configured ranges (`configured`, see
/// [`Value::IdMap`]): the configured ranges mapped as given, the rest of 0..65536 onto the host
/// range starting at `base` (user, group), split around them.
pub fn idmap_ranges(configured: &[IdRange], base: (u32, u32)) -> Vec<IdRange> {
    let mut out = Vec::new();
    for (kind, host_base) in [('u', base.0), ('g', base.1)] {
        let mut fixed: Vec<(u64, u64, u64)> =
            configured.iter().filter(|r| r.0 == kind).map(|&(_, inside, host, size)| (inside, host, size)).collect();
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

/// The range of an `lxc.idmap` line's value (`u 0 100000 65536`: kind, first ID inside, first ID
/// on the host, count); `None` when it is not one.
pub fn idmap_line(value: &str) -> Option<IdRange> {
    let p: Vec<&str> = value.split_whitespace().collect();
    let n = |i: usize| p.get(i).and_then(|x| x.parse::<u64>().ok());
    match (p.first().and_then(|k| k.chars().next()), n(1), n(2), n(3)) {
        (Some(kind @ ('u' | 'g')), Some(inside), Some(host), Some(size)) => Some((kind, inside, host, size)),
        _ => None,
    }
}

/// The configured ranges of a whole ID map (those off the default shift by `base`), as the
/// desired state has them; `None` when there are none.
pub fn idmap_configured(ranges: &[IdRange], base: (u32, u32)) -> Option<Value> {
    let configured: Vec<IdRange> = ranges
        .iter()
        .filter(|(kind, inside, host, _)| {
            let b = u64::from(if *kind == 'u' { base.0 } else { base.1 });
            *host != b + inside
        })
        .copied()
        .collect();
    (!configured.is_empty()).then(|| Value::idmap(configured))
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

#[cfg(test)]
mod tests {
    use super::{FirewallRule, firewall_rules, parse_firewall_rules};

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
