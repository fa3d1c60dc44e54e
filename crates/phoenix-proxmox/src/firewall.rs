//! A guest's own firewall through the API (containers' and VMs' alike): whether it is on (the guest's `firewall/options`
//! `enable` together with `firewall=1` on its interface) and its rules, observed as the fields
//! `firewall` and `firewall.rules` and reconciled rule by rule.
//!
//! Phoenix owns a guest's rule list when the configuration gives `firewall.rules`: rules that
//! match stay where they are, rules that differ are changed in place, missing ones are added and
//! rules the configuration does not have (added by hand, say) are deleted. Every write carries the
//! rule list's current `digest`, so a concurrent edit makes it fail rather than be overwritten.
//!
//! Proxmox always inserts a new rule at the top (`POST …/rules` ignores `pos`), so a rule that
//! belongs further down is created and then moved (`PUT …/rules/0` with `moveto`): one request
//! for a rule at the top, two for one below.

use phoenix_backend::fields::canonical::FirewallRule;
use phoenix_backend::{BackendError, Delivery, Field, GuestConfig, Value as PhoenixValue};
use serde_json::Value;

use crate::transport::api::ApiClient;
use crate::transport::decode::{text, truthy};
use crate::transport::endpoint::{Call, Guest};

fn flag(b: bool) -> String {
    if b { "1" } else { "0" }.to_string()
}

/// A rule as the API lists it, in the canonical form. A rule without `enable` is disabled (that
/// is how Proxmox writes it).
pub fn rule_from_api(v: &Value) -> FirewallRule {
    let t = |k: &str| text(&v[k]);
    FirewallRule {
        direction: t("type").unwrap_or_default(),
        action: t("action").unwrap_or_default(),
        source: t("source"),
        dest: t("dest"),
        proto: t("proto"),
        port: t("dport"),
        sport: t("sport"),
        comment: t("comment"),
        enabled: truthy(&v["enable"]),
        macro_name: t("macro"),
        iface: t("iface"),
        log: t("log"),
        icmp_type: t("icmp-type"),
    }
    .canonical()
}

/// The API parameters of a rule's parts, and the names of those it does not have.
fn rule_params(r: &FirewallRule) -> (Vec<(&'static str, String)>, Vec<&'static str>) {
    let mut set = vec![("type", r.direction.clone()), ("action", r.action.clone())];
    let mut unset = Vec::new();
    for (param, value) in [
        ("source", &r.source),
        ("dest", &r.dest),
        ("proto", &r.proto),
        ("dport", &r.port),
        ("sport", &r.sport),
        ("comment", &r.comment),
        ("macro", &r.macro_name),
        ("iface", &r.iface),
        ("log", &r.log),
        ("icmp-type", &r.icmp_type),
    ] {
        match value {
            Some(v) => set.push((param, v.clone())),
            None => unset.push(param),
        }
    }
    set.push(("enable", flag(r.enabled)));
    (set, unset)
}

/// One write to a rule list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleWrite {
    /// Change the rule at `pos` into `to` (`PUT rules/{pos}` with what differs, `delete` for what
    /// it no longer has).
    Update {
        /// Its position.
        pos: usize,
        /// The rule there now.
        from: Box<FirewallRule>,
        /// What it becomes.
        to: Box<FirewallRule>,
    },
    /// Delete the rule at `pos`.
    Delete {
        /// Its position.
        pos: usize,
    },
    /// Create a rule (Proxmox puts it at position 0).
    Create {
        /// The rule.
        rule: Box<FirewallRule>,
    },
    /// Move the rule at position 0 before the rule now at `moveto` (or last).
    Move {
        /// Where it goes, as `PUT rules/0 moveto=…` counts.
        moveto: usize,
    },
}

/// The writes that turn the rule list `have` into `want`, in the order they are to be sent, with
/// positions as they are when each is sent. Rules in both lists (their longest common
/// subsequence) are kept where they are; between two kept rules, rules that differ are changed in
/// place, and what is left over is deleted (from the highest position down) or created.
pub fn rule_writes(have: &[FirewallRule], want: &[FirewallRule]) -> Vec<RuleWrite> {
    let (n, m) = (have.len(), want.len());
    // lcs[i][j]: length of the longest common subsequence of have[i..] and want[j..].
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if have[i] == want[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let mut anchors = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n && j < m {
        if have[i] == want[j] {
            anchors.push((i, j));
            i += 1;
            j += 1;
        } else if lcs[i + 1][j] >= lcs[i][j + 1] {
            i += 1;
        } else {
            j += 1;
        }
    }
    anchors.push((n, m));
    let (mut updates, mut deletes, mut creates) = (Vec::new(), Vec::new(), Vec::new());
    let (mut hi, mut wj) = (0, 0);
    for (ai, aj) in anchors {
        let (old, new) = (hi..ai, wj..aj);
        let paired = old.len().min(new.len());
        for (o, w) in old.clone().zip(new.clone()).take(paired) {
            updates.push(RuleWrite::Update { pos: o, from: Box::new(have[o].clone()), to: Box::new(want[w].clone()) });
        }
        deletes.extend(old.skip(paired));
        creates.extend(new.skip(paired));
        (hi, wj) = (ai + 1, aj + 1);
    }
    let mut writes = updates;
    writes.extend(deletes.into_iter().rev().map(|pos| RuleWrite::Delete { pos }));
    // Created from the bottom up: a rule's place is after the rules above it that are already
    // there (kept, changed, or created before it).
    for (k, &w) in creates.iter().enumerate().rev() {
        writes.push(RuleWrite::Create { rule: Box::new(want[w].clone()) });
        let above = w - k;
        if above > 0 {
            writes.push(RuleWrite::Move { moveto: above + 1 });
        }
    }
    writes
}

/// The rule list as Proxmox shows it, canonical, with its digest (none for an empty list).
fn read_rules(api: &ApiClient, guest: Guest<'_>) -> Result<(Vec<FirewallRule>, Option<String>), BackendError> {
    let list = api.call(&Call::FirewallRules(guest), &[])?;
    let list = list.as_array().cloned().unwrap_or_default();
    let digest = list.first().and_then(|r| text(&r["digest"]));
    Ok((list.iter().map(rule_from_api).collect(), digest))
}

/// Completes an observation with the firewall (the API is the same for containers and VMs):
/// `firewall` is `1` when the guest's firewall is enabled and its interface (if it has one)
/// filters (`config`'s `firewall` says so, from `net0`), and `firewall.rules` is the rule list,
/// canonical.
pub fn observe(api: &ApiClient, guest: Guest<'_>, config: &mut GuestConfig) -> Result<(), BackendError> {
    let options = api.call(&Call::FirewallOptions(guest), &[])?;
    let nic = config.flag(&Field::Firewall).is_none_or(|on| on);
    config.set(Field::Firewall, truthy(&options["enable"]) && nic);
    let (rules, _) = read_rules(api, guest)?;
    config.set(Field::FirewallRules, PhoenixValue::rules(&rules));
    Ok(())
}

/// Makes the guest's firewall what `want` says, for the fields it has: `firewall` (the guest's
/// `enable` option; the interface's flag is part of `net0`) and `firewall.rules` (the rule list,
/// rule by rule). Writes nothing that is already so.
pub fn apply(api: &ApiClient, guest: Guest<'_>, want: &GuestConfig) -> Result<(), BackendError> {
    let id = guest.id;
    if let Some(on) = want.flag(&Field::Firewall) {
        let options = api.call(&Call::FirewallOptions(guest), &[])?;
        if truthy(&options["enable"]) != on {
            let mut params = vec![("enable", flag(on))];
            if let Some(d) = text(&options["digest"]) {
                params.push(("digest", d));
            }
            api.call(&Call::SetFirewallOptions(guest), &params)?;
        }
    }
    if let Some(value) = want.get(&Field::FirewallRules) {
        let PhoenixValue::Rules(rules) = value else {
            return Err(BackendError::permanent(
                Delivery::NotSent,
                format!("{id}: `firewall.rules` is not a list of rules"),
            ));
        };
        reconcile(api, guest, rules)?;
    }
    Ok(())
}

/// Turns the guest's rule list into `want` with the writes [`rule_writes`] gives, each with the
/// digest of the list as it is just before.
fn reconcile(api: &ApiClient, guest: Guest<'_>, want: &[FirewallRule]) -> Result<(), BackendError> {
    let (have, mut digest) = read_rules(api, guest)?;
    let writes = rule_writes(&have, want);
    for (n, write) in writes.iter().enumerate() {
        let (call, mut params) = match write {
            RuleWrite::Update { pos, from, to } => {
                let (old, _) = rule_params(from);
                let (new, unset) = rule_params(to);
                let mut params: Vec<(&str, String)> = new.into_iter().filter(|p| !old.contains(p)).collect();
                let gone: Vec<&str> = unset.into_iter().filter(|k| old.iter().any(|(o, _)| o == k)).collect();
                if !gone.is_empty() {
                    params.push(("delete", gone.join(",")));
                }
                (Call::SetFirewallRule(guest, *pos), params)
            }
            RuleWrite::Delete { pos } => (Call::DeleteFirewallRule(guest, *pos), Vec::new()),
            RuleWrite::Create { rule } => (Call::AddFirewallRule(guest), rule_params(rule).0),
            RuleWrite::Move { moveto } => (Call::SetFirewallRule(guest, 0), vec![("moveto", moveto.to_string())]),
        };
        if let Some(d) = &digest {
            params.push(("digest", d.clone()));
        }
        api.call(&call, &params)?;
        if n + 1 < writes.len() {
            digest = read_rules(api, guest)?.1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(comment: &str) -> FirewallRule {
        FirewallRule {
            direction: "in".into(),
            action: "ACCEPT".into(),
            proto: Some("tcp".into()),
            port: Some("22".into()),
            comment: Some(comment.into()),
            enabled: true,
            ..FirewallRule::default()
        }
    }

    /// Plays the writes on a list the way Proxmox does.
    fn play(have: &[FirewallRule], writes: &[RuleWrite]) -> Vec<FirewallRule> {
        let mut list = have.to_vec();
        for w in writes {
            match w {
                RuleWrite::Update { pos, from, to } => {
                    assert_eq!(&list[*pos], from.as_ref());
                    list[*pos] = to.as_ref().clone();
                }
                RuleWrite::Delete { pos } => {
                    list.remove(*pos);
                }
                RuleWrite::Create { rule } => list.insert(0, rule.as_ref().clone()),
                RuleWrite::Move { moveto } => {
                    let r = list.remove(0);
                    let at = (moveto - 1).min(list.len());
                    list.insert(at, r);
                }
            }
        }
        list
    }

    fn rules(names: &str) -> Vec<FirewallRule> {
        names.chars().map(|c| rule(&c.to_string())).collect()
    }

    #[test]
    fn the_writes_turn_one_list_into_the_other_keeping_what_matches() {
        for (have, want, count) in [
            ("", "", 0),
            ("abc", "abc", 0),
            ("", "abc", 3),
            ("abc", "", 3),
            ("abc", "aXc", 1),
            ("abc", "abXc", 2),
            ("abc", "Xabc", 1),
            ("abc", "abcX", 2),
            ("abc", "ac", 1),
            ("aHbc", "abc", 1),
            ("abc", "cab", 2),
            ("abcde", "XYabZde", 3),
        ] {
            let (have, want) = (rules(have), rules(want));
            let writes = rule_writes(&have, &want);
            assert_eq!(play(&have, &writes), want, "{writes:?}");
            assert_eq!(writes.len(), count, "{writes:?}");
        }
    }

    #[test]
    fn a_rule_as_the_api_lists_it_is_canonical() {
        let v: Value = serde_json::from_str(
            r#"{"type": "in", "action": "ACCEPT", "proto": "tcp", "dport": 22, "enable": 1, "pos": 0,
                "ipversion": 4, "source": "10.0.0.0/24", "digest": "abc"}"#,
        )
        .expect("json");
        assert_eq!(
            phoenix_backend::fields::canonical::firewall_rules(&[rule_from_api(&v)]),
            r#"[{"type":"in","action":"ACCEPT","source":"10.0.0.0/24","proto":"tcp","port":"22"}]"#
        );
        let off: Value = serde_json::from_str(r#"{"type": "out", "action": "DROP", "pos": 1}"#).expect("json");
        assert!(!rule_from_api(&off).enabled, "a rule without `enable` is disabled");
    }
}
