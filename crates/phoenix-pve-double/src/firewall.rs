//! The firewalls as Proxmox keeps them: a container's own (`/etc/pve/firewall/<vmid>.fw`, under
//! `/nodes/{node}/lxc/{vmid}/firewall/`) and the cluster's (`/etc/pve/firewall/cluster.fw`, under
//! `/cluster/firewall/`), each its options and its ordered rule list.
//!
//! As Proxmox does it: the rule list is returned with each rule's `pos` and fields (8.4.5's schema
//! documents only `pos`, but 8.x returns the fields too), `enable` and `pos` as integers and a
//! `digest` of the whole list in every rule; `POST rules` always inserts the new rule at the top
//! (position 0) — its `pos` parameter is accepted and ignored — and leaves it disabled unless
//! `enable` is given; `PUT rules/{pos}` changes the given fields, removes those named in `delete`,
//! or, with `moveto`, only moves the rule (before the rule that was at `moveto`, or to the end);
//! `DELETE rules/{pos}` removes it. Writes with a `digest` that is not the current one are
//! refused. The double also checks the `digest` of a `POST` when one is given, which Proxmox does
//! not. A guest's firewall goes away with its container; a clone gets a copy of its source's.
//! The cluster's rules may also be `forward` rules (`ACCEPT` or `DROP` only) and name any host
//! interface; a guest's are `in` or `out` only. Macro names are not checked.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::guests::Answer;

/// The fields a rule can have.
const RULE_FIELDS: &[&str] = &[
    "type",
    "action",
    "enable",
    "source",
    "dest",
    "proto",
    "dport",
    "sport",
    "comment",
    "macro",
    "iface",
    "log",
    "icmp-type",
];

/// Options that are booleans (answered as integers).
const BOOLEAN_OPTIONS: &[&str] = &["enable", "dhcp", "ipfilter", "macfilter", "ndp", "radv", "ebtables"];

/// Protocols whose rules may name ports.
const PORT_PROTOCOLS: &[&str] = &["tcp", "udp", "udplite", "sctp", "dccp"];

/// Whose firewall a request reaches: what its rules may be differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// A guest's (`/nodes/{node}/lxc/{vmid}/firewall`).
    Guest,
    /// The cluster's (`/cluster/firewall`).
    Cluster,
}

/// One guest's, or the cluster's, firewall.
#[derive(Debug, Clone, Default)]
pub(crate) struct Firewall {
    /// Options as stored (booleans as `0`/`1`).
    pub options: BTreeMap<String, String>,
    /// Rules, in order; each a map of its fields (`enable` as `0`/`1`).
    pub rules: Vec<BTreeMap<String, String>>,
}

fn digest_of<'a>(entries: impl IntoIterator<Item = &'a BTreeMap<String, String>>) -> String {
    let mut sha = Sha256::new();
    for entry in entries {
        for (k, v) in entry {
            sha.update(format!("{k}:{v}\n").as_bytes());
        }
        sha.update(b"\n");
    }
    sha.finalize().iter().take(20).map(|b| format!("{b:02x}")).collect()
}

impl Firewall {
    /// The digest of the rule list.
    pub fn rules_digest(&self) -> String {
        digest_of(&self.rules)
    }

    /// The digest of the options.
    pub fn options_digest(&self) -> String {
        digest_of([&self.options])
    }

    /// A rule as the API shows it.
    fn show(&self, pos: usize, digest: &str) -> Value {
        let mut out = serde_json::Map::new();
        for (k, v) in &self.rules[pos] {
            let value = match k.as_str() {
                "enable" => json!(v.parse::<u64>().unwrap_or(0)),
                _ => json!(v),
            };
            out.insert(k.clone(), value);
        }
        let ip =
            |k: &str| self.rules[pos].get(k).and_then(|a| a.split('/').next()).and_then(|a| a.parse::<IpAddr>().ok());
        if let Some(addr) = ip("source").or_else(|| ip("dest")) {
            out.insert("ipversion".into(), json!(if addr.is_ipv4() { 4 } else { 6 }));
        }
        out.insert("pos".into(), json!(pos));
        out.insert("digest".into(), json!(digest));
        Value::Object(out)
    }
}

fn ok(v: Value) -> Answer {
    (200, "OK".to_string(), json!({ "data": v }))
}

fn fail(message: impl Into<String>) -> Answer {
    (500, message.into(), json!({ "data": null }))
}

fn param_error(param: &str, message: &str) -> Answer {
    (400, "Parameter verification failed.".to_string(), json!({ "data": null, "errors": { param: message } }))
}

fn modified() -> Answer {
    fail("detected modified configuration - file changed by other user? Try again.")
}

fn flag(v: &str) -> String {
    let on =
        matches!(v.to_ascii_lowercase().as_str(), "1" | "on" | "yes" | "true") || v.parse::<u64>().is_ok_and(|n| n > 0);
    if on { "1" } else { "0" }.to_string()
}

/// Copies the rule fields of a request into a rule (an empty value removes the field).
fn copy_rule_data(rule: &mut BTreeMap<String, String>, ps: &BTreeMap<String, String>) {
    for (k, v) in ps.iter().filter(|(k, _)| RULE_FIELDS.contains(&k.as_str())) {
        if v.is_empty() {
            rule.remove(k);
        } else if k == "enable" {
            rule.insert(k.clone(), flag(v));
        } else {
            rule.insert(k.clone(), v.clone());
        }
    }
}

/// What Proxmox checks of a rule beyond the schema, as far as the double plays it.
fn verify_rule(scope: Scope, rule: &BTreeMap<String, String>) -> Result<(), Answer> {
    let get = |k: &str| rule.get(k).map(String::as_str);
    match (get("type"), get("action")) {
        (None, _) => return Err(param_error("type", "property is missing and it is not optional")),
        (_, None) => return Err(param_error("action", "property is missing and it is not optional")),
        (Some("in" | "out"), Some("ACCEPT" | "DROP" | "REJECT")) => {}
        (Some("forward"), Some("ACCEPT" | "DROP")) if scope == Scope::Cluster => {}
        (Some("in" | "out" | "forward"), Some(_)) if scope == Scope::Cluster => {
            return Err(param_error("action", "value does not match the regex pattern"));
        }
        (Some("in" | "out"), Some(_)) => {
            return Err(param_error("action", "value does not match the regex pattern"));
        }
        (Some("group"), Some(group)) => {
            return Err(param_error("action", &format!("no such security group '{group}'")));
        }
        (Some(kind), _) => {
            let whose = if scope == Scope::Cluster { "the cluster" } else { "guests" };
            return Err(param_error("type", &format!("rule type '{kind}' is not allowed for {whose}")));
        }
    }
    let proto = get("proto");
    for port in ["dport", "sport"] {
        if get(port).is_some() {
            match proto {
                None => {
                    return Err(param_error("proto", &format!("missing property - '{port}' requires this property")));
                }
                Some(p) if !PORT_PROTOCOLS.contains(&p) => {
                    return Err(param_error(port, &format!("protocol '{p}' does not support ports")));
                }
                Some(_) => {}
            }
        }
    }
    if get("icmp-type").is_some() && !matches!(proto, Some("icmp" | "icmpv6" | "ipv6-icmp")) {
        return Err(param_error("icmp-type", "proto must be 'icmp', 'icmpv6' or 'ipv6-icmp'"));
    }
    Ok(())
}

/// Handles `<firewall>/<rest>` of a guest's (`/nodes/{node}/lxc/{vmid}/firewall`, for an
/// existing guest) or the cluster's (`/cluster/firewall`) firewall; `None` for a request it does
/// not model.
pub(crate) fn handle(
    scope: Scope,
    fw: &mut Firewall,
    method: &str,
    rest: &[&str],
    ps: &BTreeMap<String, String>,
) -> Option<Answer> {
    let digest_ok = |current: String| ps.get("digest").is_none_or(|d| *d == current);
    let pos = |s: &str| s.parse::<usize>().ok();
    Some(match (method, rest) {
        ("GET", ["options"]) => {
            let mut out: serde_json::Map<String, Value> = fw
                .options
                .iter()
                .map(|(k, v)| {
                    let value = if BOOLEAN_OPTIONS.contains(&k.as_str()) {
                        json!(v.parse::<u8>().unwrap_or(0))
                    } else {
                        json!(v)
                    };
                    (k.clone(), value)
                })
                .collect();
            out.insert("digest".into(), json!(fw.options_digest()));
            ok(Value::Object(out))
        }
        ("PUT", ["options"]) => {
            if !digest_ok(fw.options_digest()) {
                return Some(modified());
            }
            for key in ps
                .get("delete")
                .map(|d| d.split([',', ';', ' ']).filter(|k| !k.is_empty()).collect::<Vec<_>>())
                .unwrap_or_default()
            {
                fw.options.remove(key);
            }
            for (k, v) in ps.iter().filter(|(k, _)| !matches!(k.as_str(), "delete" | "digest" | "node" | "vmid")) {
                let value = if BOOLEAN_OPTIONS.contains(&k.as_str()) { flag(v) } else { v.clone() };
                fw.options.insert(k.clone(), value);
            }
            ok(Value::Null)
        }
        ("GET", ["rules"]) => {
            let digest = fw.rules_digest();
            ok(Value::Array((0..fw.rules.len()).map(|p| fw.show(p, &digest)).collect()))
        }
        ("GET", ["rules", p]) => match pos(p).filter(|p| *p < fw.rules.len()) {
            Some(p) => ok(fw.show(p, &fw.rules_digest())),
            None => fail(format!("no rule at position {p}")),
        },
        ("POST", ["rules"]) => {
            if !digest_ok(fw.rules_digest()) {
                return Some(modified());
            }
            let mut rule = BTreeMap::new();
            copy_rule_data(&mut rule, ps);
            if let Err(e) = verify_rule(scope, &rule) {
                return Some(e);
            }
            rule.entry("enable".to_string()).or_insert_with(|| "0".to_string());
            fw.rules.insert(0, rule);
            ok(Value::Null)
        }
        ("PUT", ["rules", p]) => {
            if !digest_ok(fw.rules_digest()) {
                return Some(modified());
            }
            let Some(p) = pos(p).filter(|p| *p < fw.rules.len()) else {
                return Some(fail(format!("no rule at position {p}")));
            };
            match ps.get("moveto").and_then(|m| m.parse::<usize>().ok()).filter(|m| *m != p) {
                Some(to) => {
                    let rule = fw.rules.remove(p);
                    // Before the rule that was at `to`, or last.
                    let at = if to > p { to - 1 } else { to };
                    let at = at.min(fw.rules.len());
                    fw.rules.insert(at, rule);
                }
                None => {
                    let mut rule = fw.rules[p].clone();
                    copy_rule_data(&mut rule, ps);
                    for key in ps
                        .get("delete")
                        .map(|d| d.split([',', ';', ' ']).filter(|k| !k.is_empty()).collect::<Vec<_>>())
                        .unwrap_or_default()
                    {
                        rule.remove(key);
                    }
                    if let Err(e) = verify_rule(scope, &rule) {
                        return Some(e);
                    }
                    fw.rules[p] = rule;
                }
            }
            ok(Value::Null)
        }
        ("DELETE", ["rules", p]) => {
            if !digest_ok(fw.rules_digest()) {
                return Some(modified());
            }
            let Some(p) = pos(p).filter(|p| *p < fw.rules.len()) else {
                return Some(fail(format!("no rule at position {p}")));
            };
            fw.rules.remove(p);
            ok(Value::Null)
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect()
    }

    fn rules(fw: &mut Firewall) -> Vec<Value> {
        let (status, _, body) = handle(Scope::Guest, fw, "GET", &["rules"], &BTreeMap::new()).expect("modelled");
        assert_eq!(status, 200);
        body["data"].as_array().cloned().expect("a list")
    }

    fn comments(fw: &mut Firewall) -> Vec<String> {
        rules(fw).iter().map(|r| r["comment"].as_str().unwrap_or_default().to_string()).collect()
    }

    fn post(fw: &mut Firewall, comment: &str) -> u16 {
        let ps = params(&[
            ("type", "in"),
            ("action", "ACCEPT"),
            ("proto", "tcp"),
            ("dport", "22"),
            ("comment", comment),
            ("enable", "1"),
            ("pos", "5"),
        ]);
        handle(Scope::Guest, fw, "POST", &["rules"], &ps).expect("modelled").0
    }

    #[test]
    fn new_rules_go_to_the_top_whatever_pos_says_and_are_disabled_unless_enabled() {
        let mut fw = Firewall::default();
        for c in ["a", "b", "c"] {
            assert_eq!(post(&mut fw, c), 200);
        }
        assert_eq!(comments(&mut fw), ["c", "b", "a"]);
        let (status, _, _) = handle(
            Scope::Guest,
            &mut fw,
            "POST",
            &["rules"],
            &params(&[("type", "out"), ("action", "DROP"), ("dest", "10.1.0.0/16")]),
        )
        .expect("modelled");
        assert_eq!(status, 200);
        let list = rules(&mut fw);
        assert_eq!(list[0]["enable"], json!(0), "{list:?}");
        assert_eq!(list[0]["ipversion"], json!(4));
        assert_eq!(list[1]["enable"], json!(1));
        assert_eq!(list[1]["dport"], json!("22"));
        assert_eq!(list.iter().map(|r| r["pos"].clone()).collect::<Vec<_>>(), [json!(0), json!(1), json!(2), json!(3)]);
        let digest = list[0]["digest"].as_str().expect("digest").to_string();
        assert!(list.iter().all(|r| r["digest"] == json!(digest)));
        assert_eq!(digest, fw.rules_digest());
    }

    #[test]
    fn writes_need_the_current_digest() {
        let mut fw = Firewall::default();
        post(&mut fw, "a");
        let old = fw.rules_digest();
        post(&mut fw, "b");
        assert_ne!(fw.rules_digest(), old);
        for (method, rest) in [("PUT", &["rules", "0"][..]), ("DELETE", &["rules", "0"][..]), ("POST", &["rules"][..])]
        {
            let ps = params(&[("digest", &old), ("type", "in"), ("action", "DROP"), ("comment", "x")]);
            let (status, reason, _) = handle(Scope::Guest, &mut fw, method, rest, &ps).expect("modelled");
            assert_eq!(status, 500, "{method}");
            assert!(reason.contains("detected modified configuration"), "{reason}");
        }
        assert_eq!(comments(&mut fw), ["b", "a"]);
        let ps = params(&[("digest", &fw.rules_digest()), ("comment", "B"), ("delete", "dport,proto")]);
        assert_eq!(handle(Scope::Guest, &mut fw, "PUT", &["rules", "0"], &ps).expect("modelled").0, 200);
        let list = rules(&mut fw);
        assert_eq!(list[0]["comment"], json!("B"));
        assert!(list[0].get("dport").is_none() && list[0].get("proto").is_none(), "{list:?}");
        let ps = params(&[("digest", &fw.rules_digest())]);
        assert_eq!(handle(Scope::Guest, &mut fw, "DELETE", &["rules", "1"], &ps).expect("modelled").0, 200);
        assert_eq!(comments(&mut fw), ["B"]);
        assert_eq!(
            handle(Scope::Guest, &mut fw, "DELETE", &["rules", "1"], &BTreeMap::new()).expect("modelled").0,
            500
        );
    }

    #[test]
    fn moveto_puts_a_rule_before_the_one_that_was_there_or_last() {
        let mut fw = Firewall::default();
        for c in ["d", "c", "b", "a"] {
            post(&mut fw, c);
        }
        assert_eq!(comments(&mut fw), ["a", "b", "c", "d"]);
        let mv = |fw: &mut Firewall, from: &str, to: &str| {
            handle(Scope::Guest, fw, "PUT", &["rules", from], &params(&[("moveto", to), ("comment", "ignored")]))
                .expect("modelled")
                .0
        };
        assert_eq!(mv(&mut fw, "0", "2"), 200);
        assert_eq!(comments(&mut fw), ["b", "a", "c", "d"]);
        assert_eq!(mv(&mut fw, "3", "0"), 200);
        assert_eq!(comments(&mut fw), ["d", "b", "a", "c"]);
        assert_eq!(mv(&mut fw, "0", "9"), 200);
        assert_eq!(comments(&mut fw), ["b", "a", "c", "d"]);
    }

    #[test]
    fn rules_proxmox_refuses_are_refused() {
        let mut fw = Firewall::default();
        for ps in [
            params(&[("type", "in"), ("action", "ACCEPT"), ("dport", "22")]),
            params(&[("type", "in"), ("action", "ACCEPT"), ("proto", "icmp"), ("dport", "22")]),
            params(&[("type", "in"), ("action", "web-servers")]),
            params(&[("type", "out"), ("action", "DROP"), ("icmp-type", "echo-request")]),
        ] {
            let (status, _, body) = handle(Scope::Guest, &mut fw, "POST", &["rules"], &ps).expect("modelled");
            assert_eq!(status, 400, "{ps:?}: {body}");
        }
        assert!(fw.rules.is_empty());
    }

    #[test]
    fn the_cluster_takes_forward_rules_and_macros_and_refuses_what_proxmox_refuses() {
        let mut fw = Firewall::default();
        for ps in [
            params(&[("type", "forward"), ("action", "ACCEPT"), ("iface", "vmbr0")]),
            params(&[
                ("type", "in"),
                ("action", "ACCEPT"),
                ("macro", "SSH"),
                ("source", "10.0.0.0/8"),
                ("log", "info"),
            ]),
        ] {
            let (status, _, body) = handle(Scope::Cluster, &mut fw, "POST", &["rules"], &ps).expect("modelled");
            assert_eq!(status, 200, "{ps:?}: {body}");
        }
        assert_eq!(fw.rules.len(), 2);
        for ps in [
            params(&[("type", "forward"), ("action", "REJECT")]),
            params(&[("type", "group"), ("action", "webservers")]),
            params(&[("type", "in"), ("action", "ACCEPT"), ("dport", "22")]),
            // A macro does not stand for the protocol a port needs (pve-firewall's `verify_rule`).
            params(&[("type", "in"), ("action", "ACCEPT"), ("macro", "SSH"), ("dport", "2222")]),
        ] {
            let (status, _, body) = handle(Scope::Cluster, &mut fw, "POST", &["rules"], &ps).expect("modelled");
            assert_eq!(status, 400, "{ps:?}: {body}");
        }
        let ps = params(&[("type", "forward"), ("action", "ACCEPT")]);
        assert_eq!(handle(Scope::Guest, &mut fw, "POST", &["rules"], &ps).expect("modelled").0, 400);
        assert_eq!(fw.rules.len(), 2);
    }

    #[test]
    fn options_are_kept_with_a_digest_and_booleans_as_integers() {
        let mut fw = Firewall::default();
        let (_, _, body) = handle(Scope::Guest, &mut fw, "GET", &["options"], &BTreeMap::new()).expect("modelled");
        assert!(body["data"].get("enable").is_none());
        let digest = body["data"]["digest"].as_str().expect("digest").to_string();
        let ps = params(&[("enable", "1"), ("policy_in", "DROP"), ("digest", &digest)]);
        assert_eq!(handle(Scope::Guest, &mut fw, "PUT", &["options"], &ps).expect("modelled").0, 200);
        let (_, _, body) = handle(Scope::Guest, &mut fw, "GET", &["options"], &BTreeMap::new()).expect("modelled");
        assert_eq!(body["data"]["enable"], json!(1));
        assert_eq!(body["data"]["policy_in"], json!("DROP"));
        assert_eq!(handle(Scope::Guest, &mut fw, "PUT", &["options"], &ps).expect("modelled").0, 500, "stale digest");
        let ps = params(&[("delete", "policy_in"), ("enable", "0")]);
        assert_eq!(handle(Scope::Guest, &mut fw, "PUT", &["options"], &ps).expect("modelled").0, 200);
        let (_, _, body) = handle(Scope::Guest, &mut fw, "GET", &["options"], &BTreeMap::new()).expect("modelled");
        assert_eq!(body["data"]["enable"], json!(0));
        assert!(body["data"].get("policy_in").is_none());
    }

    #[test]
    fn a_destroyed_guest_takes_its_rules_with_it_and_a_clone_gets_a_copy() {
        use crate::guests::handle as guests;
        let mut all = BTreeMap::new();
        let mut task = |_: &str, _: &str, _: &str| "UPID:x".to_string();
        let busy = std::time::Duration::ZERO;
        let create = params(&[("vmid", "200"), ("ostemplate", "local:vztmpl/x.tar.zst"), ("hostname", "a")]);
        let run = |all: &mut BTreeMap<u32, crate::guests::Guest>,
                   task: &mut dyn FnMut(&str, &str, &str) -> String,
                   method: &str,
                   path: &str,
                   ps: &BTreeMap<String, String>| {
            let segs: Vec<&str> = path.split('/').collect();
            guests(all, method, &segs, ps, busy, false, task).expect("modelled")
        };
        assert_eq!(run(&mut all, &mut task, "POST", "/nodes/pve1/lxc", &create).0, 200);
        let rule = params(&[("type", "in"), ("action", "ACCEPT"), ("comment", "mine")]);
        assert_eq!(run(&mut all, &mut task, "POST", "/nodes/pve1/lxc/200/firewall/rules", &rule).0, 200);
        assert_eq!(run(&mut all, &mut task, "POST", "/nodes/pve1/lxc/200/clone", &params(&[("newid", "201")])).0, 200);
        let (_, _, body) = run(&mut all, &mut task, "GET", "/nodes/pve1/lxc/201/firewall/rules", &BTreeMap::new());
        assert_eq!(body["data"][0]["comment"], json!("mine"), "the clone has its source's rules");
        assert_eq!(run(&mut all, &mut task, "DELETE", "/nodes/pve1/lxc/200", &BTreeMap::new()).0, 200);
        assert_eq!(run(&mut all, &mut task, "GET", "/nodes/pve1/lxc/200/firewall/rules", &BTreeMap::new()).0, 500);
        assert_eq!(run(&mut all, &mut task, "POST", "/nodes/pve1/lxc", &create).0, 200);
        let (_, _, body) = run(&mut all, &mut task, "GET", "/nodes/pve1/lxc/200/firewall/rules", &BTreeMap::new());
        assert_eq!(body["data"], json!([]), "a new guest with the same ID starts without rules");
    }
}
