//! The per-guest firewall driven by the engine against the PVE test double, for both versions:
//! a container is created with its firewall on and its rules; applying again writes nothing; one
//! changed rule is one `PUT`, one removed rule one `DELETE`, a rule added in the middle is created
//! and moved into place (Proxmox always creates rules at the top); a rule added by hand in
//! Proxmox shows in the plan and is deleted; turning the firewall off changes the guest's option
//! and its interface. Every request was valid for the schema and answered 200.

use phoenix_backend::Backend;

use phoenix_plan::{Action, Plan};
use phoenix_pve_double::{PveDouble, PveVersion, Recorded};
use serde_json::{Value, json};

mod support;

const RULES: &str = "/nodes/pve1/lxc/910/firewall/rules";

fn rule(comment: &str, port: &str) -> Value {
    json!({ "type": "in", "action": "ACCEPT", "proto": "tcp", "port": port, "comment": comment })
}

fn write_config(dir: &std::path::Path, double: &PveDouble, enabled: bool, rules: &[Value]) -> phoenix_config::Estate {
    let firewall = json!({ "enabled": enabled, "rules": rules });
    let lxc = format!(
        r#""910": {{"name": "fw-1", "memory_mb": 1024, "cores": 1, "storage_pool": "local-zfs",
            "storage_size_gb": 10, "template": "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
            "network_config": {{"name": "eth0", "bridge": "vmbr0", "ip": "10.0.0.10/24", "gw": "10.0.0.1"}},
            "unprivileged": true, "firewall": {firewall}}}"#
    );
    support::estate(dir, double, "", &lxc)
}

/// The writes among these requests, as `METHOD path params` (without the digest's value).
fn writes(requests: &[Recorded]) -> Vec<String> {
    requests
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| {
            let params: Vec<String> = r
                .params
                .iter()
                .map(|(k, v)| if k == "digest" { "digest".to_string() } else { format!("{k}={v}") })
                .collect();
            format!("{} {} {}", r.method, r.path, params.join(" "))
        })
        .collect()
}

/// The firewall changes a plan makes: (field, old, new).
fn firewall_changes(plan: &Plan) -> Vec<(String, Option<String>, String)> {
    plan.guests
        .iter()
        .flat_map(|g| &g.steps)
        .filter_map(|s| match &s.action {
            Action::Configure { changes } => Some(changes),
            _ => None,
        })
        .flatten()
        .filter(|c| matches!(c.field, phoenix_backend::Field::Firewall | phoenix_backend::Field::FirewallRules))
        .map(|c| {
            let new = c.new.as_ref().map_or_else(|| "(removed)".to_string(), ToString::to_string);
            (c.field.to_string(), c.old.as_ref().map(ToString::to_string), new)
        })
        .collect()
}

#[test]
fn the_guest_firewall_is_reconciled_rule_by_rule() {
    for version in PveVersion::ALL {
        let double = support::start(version);
        let backend = support::backend(&double, None);
        let by_hand = support::client(&double);
        let dir = tempfile::tempdir().expect("tmp");
        // Applies the configuration; returns the plan and the writes it made.
        let apply = |enabled: bool, rules: &[Value]| {
            let estate = write_config(dir.path(), &double, enabled, rules);
            let before = double.requests().len();
            let (plan, report) = support::apply(&backend, &estate, dir.path());
            assert!(!report.failed(), "{version:?}: {report:#?}");
            (plan, writes(&double.requests()[before..]))
        };
        let shown = || -> Vec<Value> {
            let list = by_hand.request("GET", RULES, &[]).expect("rules");
            list.as_array()
                .expect("a list")
                .iter()
                .map(|r| json!([r["comment"], r["dport"], r["enable"], r["pos"]]))
                .collect()
        };

        // Created with its firewall on: the interface filters, the option is on, three rules
        // created bottom up, each at the top, so none has to move.
        let (a, b, c) = (rule("ssh", "22"), rule("web", "443"), rule("metrics", "9100"));
        let (_, w) = apply(true, &[a.clone(), b.clone(), c.clone()]);
        let create = w.iter().find(|w| w.starts_with("POST /nodes/pve1/lxc ")).expect("create");
        assert!(create.contains("net0=name=eth0,bridge=vmbr0,firewall=1,"), "{create}");
        let fw: Vec<&String> = w.iter().filter(|w| w.contains("/firewall/")).collect();
        assert_eq!(
            fw,
            [
                "PUT /nodes/pve1/lxc/910/firewall/options digest enable=1",
                &format!("POST {RULES} action=ACCEPT comment=metrics dport=9100 enable=1 proto=tcp type=in"),
                &format!("POST {RULES} action=ACCEPT comment=web digest dport=443 enable=1 proto=tcp type=in"),
                &format!("POST {RULES} action=ACCEPT comment=ssh digest dport=22 enable=1 proto=tcp type=in"),
            ],
            "{version:?}"
        );
        let start = w.iter().position(|w| w.contains("/status/start")).expect("started");
        assert!(
            w.iter().rposition(|w| w.contains("/firewall/")).expect("firewall writes") < start,
            "rules before start: {w:#?}"
        );
        assert_eq!(
            shown(),
            [json!(["ssh", "22", 1, 0]), json!(["web", "443", 1, 1]), json!(["metrics", "9100", 1, 2])]
        );

        // Nothing to do again: no write at all.
        let (plan, w) = apply(true, &[a.clone(), b.clone(), c.clone()]);
        assert!(plan.is_empty(), "{version:?}: {:#?}", firewall_changes(&plan));
        assert!(w.is_empty(), "{version:?}: {w:#?}");

        // One changed rule: one PUT at its position, with only what changed.
        let b2 = rule("web", "8443");
        let (plan, w) = apply(true, &[a.clone(), b2.clone(), c.clone()]);
        assert_eq!(firewall_changes(&plan).len(), 1);
        assert_eq!(w, [format!("PUT {RULES}/1 digest dport=8443")], "{version:?}");
        assert_eq!(shown()[1], json!(["web", "8443", 1, 1]));

        // A rule in the middle: created (at the top, where Proxmox puts it) and moved before the
        // rule that follows it.
        let x = rule("dns", "53");
        let (_, w) = apply(true, &[a.clone(), x.clone(), b2.clone(), c.clone()]);
        assert_eq!(
            w,
            [
                format!("POST {RULES} action=ACCEPT comment=dns digest dport=53 enable=1 proto=tcp type=in"),
                format!("PUT {RULES}/0 digest moveto=2"),
            ],
            "{version:?}"
        );
        let comments: Vec<Value> = shown().iter().map(|r| r[0].clone()).collect();
        assert_eq!(comments, [json!("ssh"), json!("dns"), json!("web"), json!("metrics")]);

        // One removed rule: one DELETE.
        let (_, w) = apply(true, &[a.clone(), x.clone(), c.clone()]);
        assert_eq!(w, [format!("DELETE {RULES}/2 digest")], "{version:?}");

        // A rule added by hand in Proxmox: the plan shows it, and applying deletes it.
        by_hand
            .request(
                "POST",
                RULES,
                &[
                    ("type", "in".into()),
                    ("action", "ACCEPT".into()),
                    ("source", "192.0.2.7".into()),
                    ("enable", "1".into()),
                ],
            )
            .expect("added by hand");
        let (plan, w) = apply(true, &[a.clone(), x.clone(), c.clone()]);
        let changes = firewall_changes(&plan);
        assert_eq!(changes.len(), 1, "{changes:#?}");
        let (field, old, new) = &changes[0];
        assert_eq!(field, "firewall.rules");
        assert!(old.as_deref().is_some_and(|o| o.contains(r#""source":"192.0.2.7""#)), "{old:?}");
        assert!(!new.contains("192.0.2.7"));
        assert_eq!(w, [format!("DELETE {RULES}/0 digest")], "{version:?}");
        let (plan, w) = apply(true, &[a.clone(), x.clone(), c.clone()]);
        assert!(plan.is_empty() && w.is_empty(), "{version:?}: {w:#?}");

        // Off: the guest's option and the interface's flag; the rules stay as configured.
        let (plan, w) = apply(false, &[a.clone(), x.clone(), c.clone()]);
        assert_eq!(firewall_changes(&plan), [("firewall".to_string(), Some("1".to_string()), "0".to_string())]);
        assert_eq!(w.len(), 2, "{w:#?}");
        assert!(w[0].starts_with("PUT /nodes/pve1/lxc/910/config digest net0=") && !w[0].contains("firewall"), "{w:?}");
        assert_eq!(w[1], "PUT /nodes/pve1/lxc/910/firewall/options digest enable=0");
        let (plan, w) = apply(false, &[a.clone(), x.clone(), c.clone()]);
        assert!(plan.is_empty() && w.is_empty(), "{version:?}: {w:#?}");

        assert!(
            double.requests().iter().all(|r| r.status == 200),
            "{version:?}: a request was refused: {:?}",
            double.requests().iter().find(|r| r.status != 200)
        );
    }
}

#[test]
fn a_clone_starts_from_its_templates_rules_and_gets_its_own() {
    use phoenix_backend::fields::canonical::{FirewallRule, firewall_rules};
    use phoenix_backend::{CreateRequest, CreateSource, GuestConfig, GuestKind};
    for version in PveVersion::ALL {
        let double = support::start(version);
        let backend = support::backend(&double, None);
        let rule = |comment: &str, port: &str| FirewallRule {
            direction: "in".into(),
            action: "ACCEPT".into(),
            proto: Some("tcp".into()),
            port: Some(port.into()),
            comment: Some(comment.into()),
            enabled: true,
            ..FirewallRule::default()
        };
        let config = |rules: &[FirewallRule]| {
            let mut c = GuestConfig::default();
            for (k, v) in [
                ("hostname", "fw"),
                ("storage", "local-zfs"),
                ("disk_gb", "10"),
                ("net.name", "eth0"),
                ("net.bridge", "vmbr0"),
                ("net.ip", "dhcp"),
                ("firewall", "1"),
            ] {
                let field = phoenix_backend::Field::from_name(k).expect("a field");
                let value = field.parse(v).expect("a value");
                c.set(field, value);
            }
            c.set(phoenix_backend::Field::FirewallRules, phoenix_backend::Value::rules(rules));
            c
        };
        let (ssh, web) = (rule("ssh", "22"), rule("web", "443"));
        let template = CreateRequest {
            id: 920,
            kind: GuestKind::Lxc,
            node: None,
            source: CreateSource::Template("local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst".into()),
            config: config(std::slice::from_ref(&ssh)),
        };
        backend.create(&template).expect("template");
        backend.snapshot(920, "ready").expect("snapshot");
        let before = double.requests().len();
        let clone = CreateRequest {
            id: 921,
            source: CreateSource::Clone { source: 920, snapshot: "ready".into() },
            config: config(&[web.clone(), ssh.clone()]),
            ..template.clone()
        };
        backend.create(&clone).expect("clone");
        let w = writes(&double.requests()[before..]);
        let to_921: Vec<&str> = w.iter().map(String::as_str).filter(|w| w.contains("/lxc/921/")).collect();
        // The clone's interface already filters and its option is on (both copied); the
        // template's rule is kept, the clone's own rule is created above it.
        assert_eq!(
            to_921,
            [
                "POST /nodes/pve1/lxc/921/firewall/rules action=ACCEPT comment=web digest dport=443 enable=1 proto=tcp type=in"
            ],
            "{version:?}: {w:#?}"
        );
        let observed = backend.observe_guest(921).expect("observe").expect("exists");
        assert_eq!(observed.config.spelled("firewall").as_deref(), Some("1"));
        assert_eq!(
            observed.config.spelled("firewall.rules").as_deref(),
            Some(firewall_rules(&[web.clone(), ssh.clone()]).as_str())
        );
        let template_rules = backend.observe_guest(920).expect("observe").expect("exists");
        assert_eq!(template_rules.config.spelled("firewall.rules").as_deref(), Some(firewall_rules(&[ssh]).as_str()));
        assert!(
            double.requests().iter().all(|r| r.status == 200),
            "{:?}",
            double.requests().iter().find(|r| r.status != 200)
        );
    }
}
