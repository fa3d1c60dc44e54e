//! The firewall module against the PVE double, through its `pvesh` stand-in (every request checked
//! against the official schema of 8.4.5 and 9.2.3): options set and Phoenix's rules created first,
//! a rule Phoenix did not write kept as it is, a rule added at the end created and moved, a
//! changed rule updated and a removed one deleted with positions right in the order the steps
//! run, a second apply doing nothing, planning writing nothing, a change made behind Phoenix's
//! back between plan and apply refused by the digest, the errors of a host that is not a working
//! Proxmox VE host; and 60 generated cases of rules there and rules configured, after each of
//! which Phoenix's rules are first, in order, and every other rule is as it was, in its order.

mod support;

use std::collections::BTreeMap;

use phoenix_config::model::{Direction, FirewallAction, FirewallRule, HostFirewall};
use phoenix_host::Planner;
use phoenix_host::double::RecordingHost;
use phoenix_host::host::Output;
use phoenix_host::modules::firewall::Firewall;
use phoenix_pve_double::{Credentials, PveDouble, PveVersion};
use support::{apply_twice, no_secrets, summaries};

fn double(version: PveVersion) -> PveDouble {
    PveDouble::start(
        version,
        Credentials { token: ("root@pam!phoenix".into(), "token-secret".into()), root_password: "root-pw".into() },
    )
}

/// A Proxmox VE node whose `pvesh` is the double's stand-in, run in this process.
fn node(double: &PveDouble) -> RecordingHost {
    let env = double.pvesh_env();
    RecordingHost::new().dirs(&["/etc/pve/firewall"]).program("pvesh", move |inv, _| {
        let args: Vec<String> = inv.args.iter().map(ToString::to_string).collect();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let lookup = |k: &str| env.iter().find(|(name, _)| name == k).map(|(_, v)| v.clone());
        let status = phoenix_pve_double::pvesh::run(&args, &lookup, &mut out, &mut err);
        Output {
            status: i32::from(status),
            stdout: String::from_utf8_lossy(&out).into_owned(),
            stderr: String::from_utf8_lossy(&err).into_owned(),
        }
    })
}

/// Runs the stand-in as the administrator would, behind Phoenix's back.
fn admin(double: &PveDouble, args: &[&str]) {
    let env = double.pvesh_env();
    let lookup = |k: &str| env.iter().find(|(name, _)| name == k).map(|(_, v)| v.clone());
    let mut args: Vec<String> = args.iter().map(|a| (*a).to_string()).collect();
    args.extend(["--output-format".to_string(), "json".to_string()]);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let status = phoenix_pve_double::pvesh::run(&args, &lookup, &mut out, &mut err);
    assert_eq!(status, 0, "pvesh {args:?}: {}", String::from_utf8_lossy(&err));
}

fn rule(port: &str, comment: Option<&str>) -> FirewallRule {
    FirewallRule {
        direction: Direction::In,
        action: FirewallAction::Accept,
        source: Some("10.0.0.0/24".into()),
        dest: None,
        proto: Some("tcp".into()),
        port: Some(port.into()),
        sport: None,
        comment: comment.map(str::to_string),
        iface: Some("vmbr0".into()),
        enabled: None,
    }
}

fn comments(double: &PveDouble) -> Vec<String> {
    double.cluster_firewall_rules().iter().map(|r| r.get("comment").cloned().unwrap_or_default()).collect()
}

fn writes(double: &PveDouble) -> usize {
    double.requests().iter().filter(|r| r.method != "GET").count()
}

fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect()
}

const MINE: &[(&str, &str)] = &[
    ("type", "in"),
    ("action", "ACCEPT"),
    ("macro", "SSH"),
    ("source", "192.168.1.0/24"),
    ("enable", "1"),
    ("log", "info"),
    ("comment", "mine"),
];

#[test]
fn options_and_rules_through_the_api_foreign_rules_kept_changes_and_removals_in_order() {
    for version in PveVersion::ALL {
        let double = double(version);
        let mut mine = vec!["create".to_string(), "/cluster/firewall/rules".to_string()];
        for (k, v) in MINE {
            mine.extend([format!("--{k}"), (*v).to_string()]);
        }
        admin(&double, &mine.iter().map(String::as_str).collect::<Vec<_>>());
        admin(&double, &["set", "/cluster/firewall/options", "--log_ratelimit", "enable=1,rate=1/second"]);
        let host = node(&double);
        let fw = HostFirewall {
            enabled: true,
            default_input_policy: Some(FirewallAction::Drop),
            default_output_policy: Some(FirewallAction::Accept),
            global_firewall_rules: vec![rule("22", Some("SSH from the LAN")), rule("8006", None)],
        };
        let before = writes(&double);
        let plan = Firewall { config: fw.clone() }.plan_on(&host, &no_secrets).expect("plan");
        assert_eq!(writes(&double), before, "planning wrote through the API");
        let plan2 = apply_twice(&host, &Firewall { config: fw.clone() }, &no_secrets);
        assert_eq!(summaries(&plan), summaries(&plan2));
        let s = summaries(&plan);
        assert_eq!(
            s[..2],
            [
                "run `pvesh create /cluster/firewall/rules --type in --action ACCEPT --enable 1 --iface vmbr0 --source 10.0.0.0/24 --proto tcp --dport 8006 --comment 'phoenix: global_firewall_rules[1]' --pos 0 --output-format json`",
                "run `pvesh create /cluster/firewall/rules --type in --action ACCEPT --enable 1 --iface vmbr0 --source 10.0.0.0/24 --proto tcp --dport 22 --comment 'phoenix: SSH from the LAN' --pos 0 --output-format json`",
            ],
            "{version:?}"
        );
        assert!(
            s[2].starts_with(
                "run `pvesh set /cluster/firewall/options --enable 1 --policy_in DROP --policy_out ACCEPT --digest "
            ),
            "{}",
            s[2]
        );
        assert_eq!(s.len(), 3);
        assert!(plan.steps[2].reason.contains("enable (unset) → 1"), "{}", plan.steps[2].reason);
        assert!(plan.notes.iter().any(|n| n.contains("dropped")), "{:?}", plan.notes);
        assert_eq!(comments(&double), ["phoenix: SSH from the LAN", "phoenix: global_firewall_rules[1]", "mine"]);
        let options = double.cluster_firewall_options();
        assert_eq!(options.get("enable").map(String::as_str), Some("1"));
        assert_eq!(options.get("policy_in").map(String::as_str), Some("DROP"));
        assert_eq!(options.get("log_ratelimit").map(String::as_str), Some("enable=1,rate=1/second"));
        let rules = double.cluster_firewall_rules();
        assert_eq!(rules[0].get("dport").map(String::as_str), Some("22"));
        assert_eq!(rules[0].get("enable").map(String::as_str), Some("1"));
        assert_eq!(rules[2], fields(MINE), "the administrator's rule is as it was");

        // A rule added at the end: created (Proxmox puts it first), then moved below Phoenix's
        // two; the rules already there are not touched.
        let more = HostFirewall {
            global_firewall_rules: vec![
                rule("22", Some("SSH from the LAN")),
                rule("8006", None),
                rule("443", Some("HTTPS")),
            ],
            ..fw.clone()
        };
        let plan = apply_twice(&host, &Firewall { config: more }, &no_secrets);
        let s = summaries(&plan);
        assert!(
            s[0].starts_with("run `pvesh create /cluster/firewall/rules ") && s[0].contains("--dport 443"),
            "{s:?}"
        );
        assert_eq!(s[1], "run `pvesh set /cluster/firewall/rules/0 --moveto 3 --output-format json`");
        assert_eq!(s.len(), 2, "{s:?}");
        assert_eq!(
            comments(&double),
            ["phoenix: SSH from the LAN", "phoenix: global_firewall_rules[1]", "phoenix: HTTPS", "mine"]
        );

        // The SSH rule changes and the other two go: the deletions run first, from the bottom,
        // the first with the digest; the update keeps its position.
        let mut ssh = rule("22", Some("SSH from the LAN"));
        ssh.source = Some("10.0.1.0/24".into());
        ssh.enabled = Some(false);
        let fewer = HostFirewall { global_firewall_rules: vec![ssh], ..fw.clone() };
        let plan = apply_twice(&host, &Firewall { config: fewer.clone() }, &no_secrets);
        let s = summaries(&plan);
        assert!(s[0].starts_with("run `pvesh delete /cluster/firewall/rules/2 --digest "), "{s:?}");
        assert_eq!(s[1], "run `pvesh delete /cluster/firewall/rules/1 --output-format json`");
        assert_eq!(
            s[2],
            "run `pvesh set /cluster/firewall/rules/0 --enable 0 --source 10.0.1.0/24 --output-format json`"
        );
        assert_eq!(s.len(), 3, "{s:?}");
        assert!(plan.steps[1].reason.contains("no longer has Phoenix's rule `phoenix: global_firewall_rules[1]`"));
        assert!(plan.steps[2].reason.contains("source 10.0.0.0/24 → 10.0.1.0/24"), "{}", plan.steps[2].reason);
        assert_eq!(comments(&double), ["phoenix: SSH from the LAN", "mine"]);
        let rules = double.cluster_firewall_rules();
        assert_eq!(rules[0].get("source").map(String::as_str), Some("10.0.1.0/24"));
        assert_eq!(rules[0].get("enable").map(String::as_str), Some("0"));
        assert_eq!(rules[1], fields(MINE));

        // Someone moves Phoenix's rule below theirs and gives it a macro: it is made again first.
        admin(&double, &["set", "/cluster/firewall/rules/0", "--moveto", "2"]);
        admin(&double, &["set", "/cluster/firewall/rules/1", "--macro", "HTTP"]);
        assert_eq!(comments(&double), ["mine", "phoenix: SSH from the LAN"]);
        let plan = apply_twice(&host, &Firewall { config: fewer.clone() }, &no_secrets);
        let s = summaries(&plan);
        assert!(s[0].starts_with("run `pvesh delete /cluster/firewall/rules/1 --digest "), "{s:?}");
        assert!(s[1].starts_with("run `pvesh create /cluster/firewall/rules "), "{s:?}");
        assert!(plan.steps[0].reason.contains("below a rule Phoenix did not write"), "{}", plan.steps[0].reason);
        assert_eq!(comments(&double), ["phoenix: SSH from the LAN", "mine"]);
        assert!(!double.cluster_firewall_rules()[0].contains_key("macro"));

        // A Phoenix rule of its own that has gained a field Phoenix does not write loses it.
        admin(&double, &["set", "/cluster/firewall/rules/0", "--log", "warning"]);
        let plan = apply_twice(&host, &Firewall { config: fewer.clone() }, &no_secrets);
        let s = summaries(&plan);
        assert!(s[0].starts_with("run `pvesh set /cluster/firewall/rules/0 --delete log --digest "), "{s:?}");
        assert_eq!(s.len(), 1, "{s:?}");
        assert!(!double.cluster_firewall_rules()[0].contains_key("log"));

        // No rules in the configuration: Phoenix's go, the administrator's stays; the firewall off.
        let none = HostFirewall {
            enabled: false,
            default_input_policy: None,
            default_output_policy: None,
            global_firewall_rules: vec![],
        };
        apply_twice(&host, &Firewall { config: none }, &no_secrets);
        assert_eq!(comments(&double), ["mine"]);
        assert_eq!(double.cluster_firewall_options().get("enable").map(String::as_str), Some("0"));
        assert_eq!(double.cluster_firewall_rules()[0], fields(MINE));
    }
}

#[test]
fn a_change_behind_phoenixs_back_after_planning_is_refused_by_the_digest() {
    let double = double(PveVersion::V9);
    let host = node(&double);
    let fw = HostFirewall {
        enabled: true,
        default_input_policy: None,
        default_output_policy: None,
        global_firewall_rules: vec![rule("22", None)],
    };
    apply_twice(&host, &Firewall { config: fw.clone() }, &no_secrets);
    let none = HostFirewall { global_firewall_rules: vec![], ..fw };
    let plan = Firewall { config: none.clone() }.plan_on(&host, &no_secrets).expect("plan");
    assert!(summaries(&plan)[0].starts_with("run `pvesh delete /cluster/firewall/rules/0 --digest "));
    // Meanwhile someone adds a rule: it is now at position 0, where the plan deletes.
    admin(&double, &["create", "/cluster/firewall/rules", "--type", "in", "--action", "DROP", "--comment", "theirs"]);
    let e = phoenix_host::apply(&host, &plan, &no_secrets).expect_err("stale plan");
    let detail = e.error.detail.clone().unwrap_or_default();
    assert!(detail.contains("detected modified configuration"), "{e}: {detail}");
    assert_eq!(comments(&double), ["theirs", "phoenix: global_firewall_rules[0]"]);
    // Planned again, the right rule goes.
    apply_twice(&host, &Firewall { config: none }, &no_secrets);
    assert_eq!(comments(&double), ["theirs"]);
}

#[test]
fn refused_rules_and_hosts_that_are_not_working_proxmox_hosts() {
    let fw = HostFirewall {
        enabled: true,
        default_input_policy: None,
        default_output_policy: None,
        global_firewall_rules: vec![rule("22", None)],
    };
    let double = double(PveVersion::V8);
    let host = node(&double);
    let mut bad = rule("22", None);
    bad.proto = None;
    let e = Firewall { config: HostFirewall { global_firewall_rules: vec![bad], ..fw.clone() } }
        .plan_on(&host, &no_secrets)
        .expect_err("port without proto");
    assert!(e.message.contains("a port needs proto"), "{e}");
    let mut bad = rule("22", None);
    bad.source = Some("10.0.0.1 # x".into());
    let e = Firewall { config: HostFirewall { global_firewall_rules: vec![bad], ..fw.clone() } }
        .plan_on(&host, &no_secrets)
        .expect_err("two words");
    assert!(e.message.contains("is not one word"), "{e}");
    assert_eq!(writes(&double), 0);
    // Not a Proxmox host: nothing, and a note.
    let plan = Firewall { config: fw.clone() }.plan_on(&RecordingHost::new(), &no_secrets).expect("plan");
    assert!(plan.steps.is_empty() && plan.notes[0].contains("not a Proxmox VE host"), "{plan:?}");
    // /etc/pve without pvesh.
    let e = Firewall { config: fw.clone() }
        .plan_on(&RecordingHost::new().dirs(&["/etc/pve"]), &no_secrets)
        .expect_err("no pvesh");
    assert!(e.message.contains("no pvesh"), "{e}");
    // The API cannot read the firewall (a broken cluster.fw, pmxcfs not running).
    let broken = RecordingHost::new().dirs(&["/etc/pve"]).program("pvesh", |_, _| Output {
        status: 255,
        stdout: String::new(),
        stderr: "ipcc_send_rec[1] failed: Connection refused\n".into(),
    });
    let e = Firewall { config: fw.clone() }.plan_on(&broken, &no_secrets).expect_err("pvesh fails");
    assert!(e.message.contains("pvesh get /cluster/firewall/options"), "{e}");
    assert_eq!(e.detail.as_deref(), Some("ipcc_send_rec[1] failed: Connection refused"));
    let odd = RecordingHost::new().dirs(&["/etc/pve"]).program("pvesh", |_, _| Output {
        status: 0,
        stdout: "[1]\n".into(),
        stderr: String::new(),
    });
    let e = Firewall { config: fw }.plan_on(&odd, &no_secrets).expect_err("not an object");
    assert!(e.message.contains("are not a JSON object"), "{e}");
}

/// A small deterministic generator (no dependency needed for a few dozen cases).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        usize::try_from((self.0 >> 33) % n as u64).unwrap_or(0)
    }
}

#[test]
fn whatever_the_rules_were_phoenixs_end_first_in_order_and_the_others_stay_in_theirs() {
    let double = double(PveVersion::V8);
    let host = node(&double);
    let mut rng = Lcg(15);
    let (mut moves, mut updates, mut deletions) = (0, 0, 0);
    for case in 0..60 {
        // What is there: Phoenix's rules (some stale: another port) and the administrator's, mixed.
        for _ in 0..double.cluster_firewall_rules().len() {
            admin(&double, &["delete", "/cluster/firewall/rules/0"]);
        }
        let mut there: Vec<(String, String)> = Vec::new();
        for _ in 0..rng.below(7) {
            let r = rng.below(8);
            let (comment, port) = if r < 6 {
                (format!("phoenix: r{r}"), (8000 + r + 10 * usize::from(rng.below(4) == 0)).to_string())
            } else {
                (format!("f{r}"), "22".into())
            };
            there.push((comment, port));
        }
        for (comment, port) in there.iter().rev() {
            admin(
                &double,
                &[
                    "create",
                    "/cluster/firewall/rules",
                    "--type",
                    "in",
                    "--action",
                    "ACCEPT",
                    "--iface",
                    "vmbr0",
                    "--source",
                    "10.0.0.0/24",
                    "--proto",
                    "tcp",
                    "--dport",
                    port,
                    "--enable",
                    "1",
                    "--comment",
                    comment,
                ],
            );
        }
        let foreign_before: Vec<BTreeMap<String, String>> =
            double.cluster_firewall_rules().into_iter().filter(|r| !r["comment"].starts_with("phoenix:")).collect();
        // What the configuration asks for: some of r0..r5, in any order; every other case, the
        // rules of Phoenix's that are there, in their order, with others added anywhere.
        let mut pool: Vec<usize> = (0..6).collect();
        let mut wanted = Vec::new();
        if case % 2 == 1 {
            for (comment, _) in &there {
                if let Some(r) = comment.strip_prefix("phoenix: r").and_then(|r| r.parse::<usize>().ok())
                    && let Some(at) = pool.iter().position(|p| *p == r)
                {
                    wanted.push(pool.remove(at));
                }
            }
        }
        for _ in 0..rng.below(4).min(pool.len()) {
            let r = pool.remove(rng.below(pool.len()));
            wanted.insert(rng.below(wanted.len() + 1), r);
        }

        let fw = HostFirewall {
            enabled: true,
            default_input_policy: None,
            default_output_policy: None,
            global_firewall_rules: wanted
                .iter()
                .map(|r| rule(&(8000 + r).to_string(), Some(&format!("r{r}"))))
                .collect(),
        };
        let plan = apply_twice(&host, &Firewall { config: fw }, &no_secrets);
        let s = summaries(&plan);
        moves += s.iter().filter(|s| s.contains("--moveto")).count();
        updates += s
            .iter()
            .filter(|s| s.starts_with("run `pvesh set /cluster/firewall/rules/") && !s.contains("--moveto"))
            .count();
        deletions += s.iter().filter(|s| s.starts_with("run `pvesh delete")).count();
        let after = double.cluster_firewall_rules();
        let expected: Vec<String> = wanted
            .iter()
            .map(|r| format!("phoenix: r{r}"))
            .chain(foreign_before.iter().map(|r| r["comment"].clone()))
            .collect();
        assert_eq!(comments(&double), expected, "case {case}: {there:?} → {wanted:?}, plan {:#?}", summaries(&plan));
        for (r, w) in after.iter().zip(&wanted) {
            assert_eq!(r.get("dport"), Some(&(8000 + w).to_string()), "case {case}");
        }
        assert_eq!(after[wanted.len()..], foreign_before[..], "case {case}: the administrator's rules changed");
    }
    assert!(
        moves > 5 && updates > 5 && deletions > 5,
        "the cases do not try every kind of step: {moves} {updates} {deletions}"
    );
}
