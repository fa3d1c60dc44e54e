//! The cluster firewall, in `/etc/pve/firewall/cluster.fw`: the options `enable`, `policy_in`
//! and `policy_out` set in `[OPTIONS]` (other options kept), and the `global_firewall_rules` at
//! the top of `[RULES]`. A rule is Phoenix's when its comment starts with `phoenix:`; Proxmox keeps
//! a rule's comment when it rewrites the file (the web interface does), so Phoenix finds its
//! rules again without markers, and never touches a rule it did not write. The file as it was is
//! kept as `cluster.fw.phoenix-orig`; `pve-firewall` picks the file up by itself.

use std::path::Path;

use phoenix_config::model::{Direction, FirewallAction, FirewallRule, HostFirewall};

use super::{backup_path, one_line};
use crate::host::{Attrs, Host, HostError};
use crate::module::{Module, ModulePlan};
use crate::step::{Action, Resolver, Step};

/// The cluster's firewall configuration.
pub const CLUSTER_FW: &str = "/etc/pve/firewall/cluster.fw";
/// What a Phoenix rule's comment starts with.
pub const TAG: &str = "# phoenix:";

/// The firewall module.
pub struct Firewall {
    /// The `firewall` section.
    pub config: HostFirewall,
}

/// What the host has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// Whether `/etc/pve` exists (a Proxmox VE host).
    pub pve: bool,
    /// Whether `/etc/pve/firewall` exists.
    pub dir: bool,
    /// `cluster.fw`.
    pub current: Option<String>,
}

fn action(a: FirewallAction) -> &'static str {
    match a {
        FirewallAction::Accept => "ACCEPT",
        FirewallAction::Drop => "DROP",
        FirewallAction::Reject => "REJECT",
    }
}

/// One rule as a `cluster.fw` line, its comment tagged as Phoenix's.
pub fn render_rule(i: usize, r: &FirewallRule) -> Result<String, HostError> {
    let bad = |what: String| HostError::new(format!("firewall rule {}: {what}", i + 1));
    let dir = match r.direction {
        Direction::In => "IN",
        Direction::Out => "OUT",
    };
    let mut s = format!("{}{dir} {}", if r.enabled == Some(false) { "|" } else { "" }, action(r.action));
    for (flag, v) in [
        ("-i", &r.iface),
        ("-source", &r.source),
        ("-dest", &r.dest),
        ("-p", &r.proto),
        ("-dport", &r.port),
        ("-sport", &r.sport),
    ] {
        if let Some(v) = v {
            if v.is_empty() || !one_line(v) || v.contains(|c: char| c.is_whitespace() || c == '#') {
                return Err(bad(format!("`{v}` ({flag}) is not one word")));
            }
            s.push_str(&format!(" {flag} {v}"));
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
    s.push_str(&format!(" {TAG} {}", comment.trim()));
    Ok(s)
}

fn is_phoenix_rule(line: &str) -> bool {
    line.contains(TAG)
}

/// `cluster.fw` with Phoenix's options and rules (every other line kept as it is).
pub fn render(current: Option<&str>, fw: &HostFirewall) -> Result<String, HostError> {
    let rules: Vec<String> =
        fw.global_firewall_rules.iter().enumerate().map(|(i, r)| render_rule(i, r)).collect::<Result<_, _>>()?;
    let mut options = vec![("enable", if fw.enabled { "1" } else { "0" }.to_string())];
    if let Some(p) = fw.default_input_policy {
        options.push(("policy_in", action(p).to_string()));
    }
    if let Some(p) = fw.default_output_policy {
        options.push(("policy_out", action(p).to_string()));
    }
    let mut lines: Vec<String> = current.unwrap_or("").lines().map(str::to_string).collect();
    // Options: replace each key's line in [OPTIONS], or add it after the header.
    let header = |lines: &[String], name: &str| lines.iter().position(|l| l.trim().eq_ignore_ascii_case(name));
    if header(&lines, "[OPTIONS]").is_none() {
        let mut head = vec!["[OPTIONS]".to_string(), String::new()];
        if !lines.is_empty() {
            head.push(String::new());
        }
        head.extend(lines);
        lines = head;
    }
    let start = header(&lines, "[OPTIONS]").unwrap_or(0);
    let end =
        lines[start + 1..].iter().position(|l| l.trim_start().starts_with('[')).map_or(lines.len(), |p| start + 1 + p);
    let mut insert_at = start + 1;
    while insert_at < end && lines[insert_at].trim().is_empty() {
        insert_at += 1;
    }
    for (k, v) in options.iter().rev() {
        let want = format!("{k}: {v}");
        let found = (start + 1..end).find(|&i| lines[i].split_once(':').is_some_and(|(key, _)| key.trim() == *k));
        match found {
            Some(i) => lines[i] = want,
            None => lines.insert(insert_at, want),
        }
    }
    // Rules: Phoenix's lines removed wherever they are, then put first in [RULES].
    lines.retain(|l| !is_phoenix_rule(l));
    if !rules.is_empty() {
        let at = match header(&lines, "[RULES]") {
            Some(h) => {
                let mut at = h + 1;
                while at < lines.len() && lines[at].trim().is_empty() {
                    at += 1;
                }
                at
            }
            None => {
                while lines.last().is_some_and(|l| l.trim().is_empty()) {
                    lines.pop();
                }
                lines.extend([String::new(), "[RULES]".to_string(), String::new()]);
                lines.len()
            }
        };
        for (n, r) in rules.into_iter().enumerate() {
            lines.insert(at + n, r);
        }
    }
    let mut s = lines.join("\n");
    s.push('\n');
    Ok(s)
}

impl Module for Firewall {
    type Observed = Observed;

    fn name(&self) -> &'static str {
        "firewall"
    }

    fn observe(&self, host: &dyn Host) -> Result<Observed, HostError> {
        Ok(Observed {
            pve: host.exists(Path::new("/etc/pve"))?,
            dir: host.exists(Path::new("/etc/pve/firewall"))?,
            current: host.read_text(Path::new(CLUSTER_FW))?,
        })
    }

    fn plan(&self, o: &Observed, _: &Resolver<'_>) -> Result<ModulePlan, HostError> {
        let mut plan = ModulePlan::new("firewall");
        let want = render(o.current.as_deref(), &self.config)?;
        if !o.pve {
            plan.note("there is no /etc/pve (not a Proxmox VE host): the firewall is not set up");
            return Ok(plan);
        }
        if o.current.as_deref() == Some(want.as_str()) {
            return Ok(plan);
        }
        if !o.dir {
            plan.step(Step::new(
                Action::Mkdir { path: "/etc/pve/firewall".into(), attrs: Attrs::root(0o755) },
                "/etc/pve/firewall is missing",
            ));
        }
        let n = self.config.global_firewall_rules.len();
        plan.step(Step::new(
            Action::WriteFile {
                path: CLUSTER_FW.into(),
                contents: want,
                // pmxcfs shows every file as 0640.
                attrs: Attrs::root(0o640),
                backup: Some(backup_path(Path::new(CLUSTER_FW))),
                check: None,
            },
            if o.current.is_some() {
                format!("the firewall options or Phoenix's {n} rule(s) differ; rules Phoenix did not write are kept")
            } else {
                format!("no {CLUSTER_FW} yet ({n} rule(s))")
            },
        ));
        if self.config.enabled && self.config.default_input_policy.is_some_and(|p| p != FirewallAction::Accept) {
            plan.note("incoming traffic no rule accepts is dropped; Proxmox's management IP set still lets the local network reach SSH (22) and the web interface (8006)");
        }
        Ok(plan)
    }
}
