//! The cluster firewall, through the Proxmox VE API (`pvesh` on the host): the options `enable`,
//! `policy_in` and `policy_out` (`/cluster/firewall/options`; other options kept), and the
//! `global_firewall_rules` first in the cluster's rule list (`/cluster/firewall/rules`).
//!
//! A rule is Phoenix's when its comment starts with `phoenix:`: Proxmox keeps a rule's comment
//! whoever edits the rules (the web interface, `pvesh`, the file), so Phoenix finds its rules
//! again without markers and never touches a rule it did not write. `pve-firewall` applies what
//! the API stores by itself.
//!
//! Positions shift as rules are added and removed, so the steps are planned in an order in which
//! each step's position is right when it runs. Of the block of Phoenix's rules at the top, the
//! window that makes the fewest steps is kept and updated in place; every other rule of Phoenix's
//! (no longer configured, beyond the window, or below a rule Phoenix did not write) is deleted
//! first, from the last position up, so that the positions above stay as they were. The
//! configured rules after the kept ones are then created and moved below them (`moveto`), and
//! those before them created last, the last first: Proxmox puts a new rule at the top whatever
//! `pos` says. The first step, when it names a position, carries the `digest` read while
//! planning, so Proxmox refuses it if someone changed the rules since ("detected modified
//! configuration"); setting the options carries the options' digest. The options are set after
//! the rules, so that the rules are in place before a policy that drops traffic applies.

use std::collections::BTreeMap;
use std::path::Path;

use phoenix_config::model::{Direction, FirewallAction, FirewallRule, HostFirewall};
use serde_json::Value;

use super::one_line;
use crate::host::{Host, HostError, Invocation, Output};
use crate::module::{Module, ModulePlan};
use crate::step::{Action, Command, Resolver, Step};

/// What a Phoenix rule's comment starts with.
pub const TAG: &str = "phoenix:";
/// The cluster firewall's options in the API.
pub const OPTIONS: &str = "/cluster/firewall/options";
/// The cluster firewall's rules in the API.
pub const RULES: &str = "/cluster/firewall/rules";

/// The fields of a rule Phoenix compares: those it writes, and those it removes from a rule of
/// its own that has them.
const FIELDS: &[&str] = &[
    "type",
    "action",
    "enable",
    "iface",
    "source",
    "dest",
    "proto",
    "dport",
    "sport",
    "macro",
    "log",
    "icmp-type",
    "comment",
];

/// A rule as the API shows it: the fields Phoenix compares, as text (`enable` as `0` or `1`).
pub type Rule = BTreeMap<String, String>;

/// The firewall module.
pub struct Firewall {
    /// The `firewall` section.
    pub config: HostFirewall,
}

/// What the host has.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// Whether `/etc/pve` exists (a Proxmox VE host); nothing else is read when it does not.
    pub pve: bool,
    /// The cluster firewall's options (booleans as `0`/`1`), without the digest.
    pub options: BTreeMap<String, String>,
    /// The options' digest.
    pub options_digest: Option<String>,
    /// The cluster's rules, in order (position 0 first).
    pub rules: Vec<Rule>,
    /// The rule list's digest.
    pub rules_digest: Option<String>,
}

fn action(a: FirewallAction) -> &'static str {
    match a {
        FirewallAction::Accept => "ACCEPT",
        FirewallAction::Drop => "DROP",
        FirewallAction::Reject => "REJECT",
    }
}

/// One configured rule as the API stores it, its comment tagged as Phoenix's.
pub fn desired_rule(i: usize, r: &FirewallRule) -> Result<Rule, HostError> {
    let bad = |what: String| HostError::new(format!("firewall rule {}: {what}", i + 1));
    let mut rule = Rule::new();
    let kind = match r.direction {
        Direction::In => "in",
        Direction::Out => "out",
    };
    rule.insert("type".into(), kind.into());
    rule.insert("action".into(), action(r.action).into());
    rule.insert("enable".into(), if r.enabled == Some(false) { "0" } else { "1" }.into());
    for (field, v) in [
        ("iface", &r.iface),
        ("source", &r.source),
        ("dest", &r.dest),
        ("proto", &r.proto),
        ("dport", &r.port),
        ("sport", &r.sport),
    ] {
        if let Some(v) = v {
            if v.is_empty() || !one_line(v) || v.contains(|c: char| c.is_whitespace() || c == '#') {
                return Err(bad(format!("`{v}` ({field}) is not one word")));
            }
            rule.insert(field.into(), v.clone());
        }
    }
    if (r.port.is_some() || r.sport.is_some())
        && !r.proto.as_deref().is_some_and(|p| ["tcp", "udp", "udplite", "sctp"].contains(&p))
    {
        return Err(bad("a port needs proto tcp, udp, udplite or sctp".to_string()));
    }
    let comment = r.comment.clone().unwrap_or_else(|| format!("global_firewall_rules[{i}]"));
    if !one_line(&comment) {
        return Err(bad("the comment must be on one line".to_string()));
    }
    rule.insert("comment".into(), format!("{TAG} {}", comment.trim()));
    Ok(rule)
}

/// The configured rules as the API stores them.
pub fn desired_rules(fw: &HostFirewall) -> Result<Vec<Rule>, HostError> {
    fw.global_firewall_rules.iter().enumerate().map(|(i, r)| desired_rule(i, r)).collect()
}

/// Whether a rule is Phoenix's: its comment starts with [`TAG`].
pub fn is_phoenix_rule(rule: &Rule) -> bool {
    rule.get("comment").is_some_and(|c| c.trim_start().starts_with(TAG))
}

fn comment(rule: &Rule) -> &str {
    rule.get("comment").map_or("", String::as_str)
}

/// A JSON value of the API as text (`enable: 1` → `1`).
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "1" } else { "0" }.to_string()),
        _ => None,
    }
}

fn pvesh_get(host: &dyn Host, path: &str) -> Result<Value, HostError> {
    let cmd = Invocation::probe("pvesh", &["get", path, "--output-format", "json"]);
    let out: Output = host.run(&cmd)?;
    if !out.success() {
        return Err(HostError::with_detail(
            format!(
                "cannot read the cluster firewall through the Proxmox API (`{}` exit status {})",
                cmd.display(),
                out.status
            ),
            out.stderr.trim().to_string(),
        ));
    }
    serde_json::from_str(out.stdout.trim()).map_err(|e| {
        HostError::with_detail(format!("`{}` did not print JSON: {e}", cmd.display()), out.stdout.trim().to_string())
    })
}

/// Reads the options' answer: an object of option values and its digest.
pub fn parse_options(v: &Value) -> Result<(BTreeMap<String, String>, Option<String>), HostError> {
    let obj = v.as_object().ok_or_else(|| {
        HostError::with_detail(format!("the cluster firewall options ({OPTIONS}) are not a JSON object"), v.to_string())
    })?;
    let mut options = BTreeMap::new();
    let mut digest = None;
    for (k, v) in obj {
        let value = text(v).ok_or_else(|| {
            HostError::with_detail(format!("the cluster firewall option `{k}` is not a value"), v.to_string())
        })?;
        if k == "digest" {
            digest = Some(value);
        } else {
            options.insert(k.clone(), value);
        }
    }
    Ok((options, digest))
}

/// Reads the rule list's answer: the rules in position order and the list's digest.
pub fn parse_rules(v: &Value) -> Result<(Vec<Rule>, Option<String>), HostError> {
    let invalid =
        |what: &str| HostError::with_detail(format!("the cluster firewall rules ({RULES}): {what}"), v.to_string());
    let list = v.as_array().ok_or_else(|| invalid("not a JSON list"))?;
    let mut rules: Vec<(u64, Rule)> = Vec::new();
    let mut digest = None;
    for item in list {
        let obj = item.as_object().ok_or_else(|| invalid("a rule is not a JSON object"))?;
        let pos = obj.get("pos").and_then(Value::as_u64).ok_or_else(|| invalid("a rule has no position"))?;
        if digest.is_none() {
            digest = obj.get("digest").and_then(text);
        }
        let rule: Rule = obj
            .iter()
            .filter(|(k, _)| FIELDS.contains(&k.as_str()))
            .filter_map(|(k, v)| text(v).map(|t| (k.clone(), t)))
            .collect();
        rules.push((pos, rule));
    }
    rules.sort_by_key(|(pos, _)| *pos);
    if rules.iter().enumerate().any(|(i, (pos, _))| *pos != i as u64) {
        return Err(invalid("the positions are not 0, 1, 2, ..."));
    }
    Ok((rules.into_iter().map(|(_, r)| r).collect(), digest))
}

/// A rule's `enable` (a rule without one is off, as Proxmox reads it).
fn enabled(rule: &Rule) -> &str {
    rule.get("enable").map_or("0", String::as_str)
}

/// The fields that differ between a rule and what it should be: those to set (`--field value`),
/// and those to remove.
fn difference(current: &Rule, want: &Rule) -> (Vec<(String, String)>, Vec<String>) {
    let differs = |f: &str, v: &String| if f == "enable" { enabled(current) != v } else { current.get(f) != Some(v) };
    let set = FIELDS
        .iter()
        .filter_map(|f| want.get(*f).filter(|v| differs(f, v)).map(|v| ((*f).to_string(), v.clone())))
        .collect();
    let delete = FIELDS
        .iter()
        .filter(|f| current.contains_key(**f) && !want.contains_key(**f))
        .map(|f| (*f).to_string())
        .collect();
    (set, delete)
}

fn pvesh(verb: &str, path: &str) -> Command {
    Command::new("pvesh", &[verb, path])
}

fn with_fields(mut cmd: Command, fields: &[(String, String)]) -> Command {
    for (k, v) in fields {
        cmd = cmd.arg(&format!("--{k}")).arg(v);
    }
    cmd
}

fn finish(mut cmd: Command, digest: Option<String>) -> Command {
    if let Some(d) = digest {
        cmd = cmd.arg("--digest").arg(&d);
    }
    cmd.arg("--output-format").arg("json")
}

fn describe(fields: &[(String, String)], delete: &[String], current: &Rule) -> String {
    let shown = |v: Option<&String>| v.map_or_else(|| "(unset)".to_string(), Clone::clone);
    fields
        .iter()
        .map(|(k, v)| format!("{k} {} → {v}", shown(current.get(k))))
        .chain(delete.iter().map(|k| format!("{k} {} removed", shown(current.get(k)))))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The cheapest arrangement of Phoenix's rules: the window of Phoenix's block at the top that is
/// kept (`w`, of length `k`) and where in the configuration's list it goes (`s`).
struct Layout {
    /// The first kept rule of the block.
    w: usize,
    /// How many are kept.
    k: usize,
    /// The configured rule the first kept one becomes.
    s: usize,
}

/// Chooses the layout with the fewest steps (then the fewest fields changed): the rules kept are
/// updated in place, the configured rules before them are created (each lands first), those
/// after them are created and moved below them.
fn layout(rules: &[Rule], want: &[Rule]) -> Layout {
    let block = rules.iter().take_while(|r| is_phoenix_rule(r)).count();
    let (n, k) = (want.len(), block.min(want.len()));
    let mut best: Option<((usize, usize), Layout)> = None;
    for w in 0..=block - k {
        for s in 0..=n - k {
            let (mut updates, mut fields) = (0, 0);
            for i in 0..k {
                let (set, delete) = difference(&rules[w + i], &want[s + i]);
                updates += usize::from(!set.is_empty() || !delete.is_empty());
                fields += set.len() + delete.len();
            }
            // Each rule after the kept ones is created, then moved.
            let cost = (updates + s + 2 * (n - k - s), fields);
            if best.as_ref().is_none_or(|(c, _)| cost < *c) {
                best = Some((cost, Layout { w, k, s }));
            }
        }
    }
    best.map_or(Layout { w: 0, k: 0, s: n }, |(_, l)| l)
}

/// The steps that make the cluster's rule list start with `want`, each right at the position it
/// names when it runs (see the module's documentation), with their reasons.
fn rule_steps(o: &Observed, want: &[Rule]) -> Vec<(Action, String)> {
    let mut steps = Vec::new();
    let Layout { w, k, s } = layout(&o.rules, want);
    // The digest read while planning, for the first step when it names a position (deletions
    // and updates come before any creation).
    let mut guard = o.rules_digest.clone();
    let run = |cmd: Command| Action::Run { command: cmd };
    // Phoenix's rules outside the kept window, the last first: the positions above stay right.
    for pos in (0..o.rules.len()).rev().filter(|p| is_phoenix_rule(&o.rules[*p]) && !(w..w + k).contains(p)) {
        let rule = &o.rules[pos];
        let reason = if !want.iter().any(|r| comment(r) == comment(rule)) {
            format!("the configuration no longer has Phoenix's rule `{}` (position {pos})", comment(rule))
        } else if o.rules[..pos].iter().all(is_phoenix_rule) {
            format!("Phoenix's rule `{}` at position {pos} is not needed where it is", comment(rule))
        } else {
            format!(
                "Phoenix's rule `{}` at position {pos} is below a rule Phoenix did not write: it is made again at the top",
                comment(rule)
            )
        };
        steps.push((run(finish(pvesh("delete", &format!("{RULES}/{pos}")), guard.take())), reason));
    }
    // The kept window, now at the top, becomes the configured rules from `s`.
    for i in 0..k {
        let (current, target) = (&o.rules[w + i], &want[s + i]);
        let (set, delete) = difference(current, target);
        if set.is_empty() && delete.is_empty() {
            continue;
        }
        let mut cmd = with_fields(pvesh("set", &format!("{RULES}/{i}")), &set);
        if !delete.is_empty() {
            cmd = cmd.arg("--delete").arg(&delete.join(","));
        }
        let reason = format!(
            "Phoenix's rule at position {i} (`{}`) becomes `{}`: {}",
            comment(current),
            comment(target),
            describe(&set, &delete, current)
        );
        steps.push((run(finish(cmd, guard.take())), reason));
    }
    let create = |target: &Rule| {
        let fields: Vec<(String, String)> =
            FIELDS.iter().filter_map(|f| target.get(*f).map(|v| ((*f).to_string(), v.clone()))).collect();
        run(finish(with_fields(pvesh("create", RULES), &fields).arg("--pos").arg("0"), None))
    };
    // The configured rules after the kept ones: each created (first), then moved below the
    // kept ones and those created before it.
    for (j, target) in want[s + k..].iter().enumerate() {
        let reason = format!("there is no rule `{}` yet (Proxmox puts a new rule first)", comment(target));
        steps.push((create(target), reason));
        let moveto = (k + j + 1).to_string();
        let cmd = finish(pvesh("set", &format!("{RULES}/0")).arg("--moveto").arg(&moveto), None);
        let reason = format!("`{}` goes to position {}, after Phoenix's rules before it", comment(target), k + j);
        steps.push((run(cmd), reason));
    }
    // The configured rules before the kept ones, the last first: each lands first.
    for target in want[..s].iter().rev() {
        let reason = format!("there is no rule `{}` yet (Proxmox puts a new rule first)", comment(target));
        steps.push((create(target), reason));
    }
    steps
}

impl Module for Firewall {
    type Observed = Observed;

    fn name(&self) -> &'static str {
        "firewall"
    }

    fn observe(&self, host: &dyn Host) -> Result<Observed, HostError> {
        if !host.exists(Path::new("/etc/pve"))? {
            return Ok(Observed::default());
        }
        if !host.has_program("pvesh") {
            return Err(HostError::new(
                "there is /etc/pve but no pvesh: the cluster firewall is set through the Proxmox VE API, which this host does not offer",
            ));
        }
        let (options, options_digest) = parse_options(&pvesh_get(host, OPTIONS)?)?;
        let (rules, rules_digest) = parse_rules(&pvesh_get(host, RULES)?)?;
        Ok(Observed { pve: true, options, options_digest, rules, rules_digest })
    }

    fn plan(&self, o: &Observed, _: &Resolver<'_>) -> Result<ModulePlan, HostError> {
        let mut plan = ModulePlan::new("firewall");
        let want = desired_rules(&self.config)?;
        if !o.pve {
            plan.note("there is no /etc/pve (not a Proxmox VE host): the firewall is not set up");
            return Ok(plan);
        }
        for (action, reason) in rule_steps(o, &want) {
            plan.step(Step::new(action, reason));
        }
        let mut options = vec![("enable".to_string(), if self.config.enabled { "1" } else { "0" }.to_string())];
        if let Some(p) = self.config.default_input_policy {
            options.push(("policy_in".into(), action(p).into()));
        }
        if let Some(p) = self.config.default_output_policy {
            options.push(("policy_out".into(), action(p).into()));
        }
        // `enable` not set is off; a policy not set is Proxmox's default, made explicit here.
        let changed: Vec<(String, String)> = options
            .into_iter()
            .filter(|(k, v)| match o.options.get(k) {
                Some(current) => current != v,
                None => !(k == "enable" && v == "0"),
            })
            .collect();
        if !changed.is_empty() {
            let reason = format!("the cluster firewall's options differ: {}", describe(&changed, &[], &o.options));
            let cmd = finish(with_fields(pvesh("set", OPTIONS), &changed), o.options_digest.clone());
            plan.step(Step::new(Action::Run { command: cmd }, reason));
        }
        if self.config.enabled && self.config.default_input_policy.is_some_and(|p| p != FirewallAction::Accept) {
            plan.note("incoming traffic no rule accepts is dropped; Proxmox's management IP set still lets the local network reach SSH (22) and the web interface (8006)");
        }
        Ok(plan)
    }
}
