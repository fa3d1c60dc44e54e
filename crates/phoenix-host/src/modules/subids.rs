//! `/etc/subuid` and `/etc/subgid`: root may map the host ID ranges the containers' ID maps use
//! (Proxmox's default `root:100000:65536` for every unprivileged container, and each `id_maps`
//! range). A range some line already allows is left alone; the others go into Phoenix's marked
//! block; lines Phoenix did not add are never changed or removed.

use std::path::Path;

use super::backup_path;
use crate::block;
use crate::host::{Attrs, Host, HostError};
use crate::module::{Module, ModulePlan};
use crate::step::{Action, Resolver, Step};

/// The name of Phoenix's block.
pub const BLOCK: &str = "container-id-ranges";

/// A range of host IDs: first ID and count.
pub type Range = (u32, u32);

/// The subordinate-ID module.
pub struct SubIds {
    /// User-ID ranges root must be allowed to map.
    pub uids: Vec<Range>,
    /// Group-ID ranges.
    pub gids: Vec<Range>,
}

/// What the host has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// `/etc/subuid`.
    pub subuid: Option<String>,
    /// `/etc/subgid`.
    pub subgid: Option<String>,
}

fn root_ranges(lines: &[&str]) -> Vec<(u64, u64)> {
    lines
        .iter()
        .filter_map(|l| {
            let f: Vec<&str> = l.trim().split(':').collect();
            if f.len() != 3 || (f[0] != "root" && f[0] != "0") {
                return None;
            }
            Some((f[1].parse().ok()?, f[2].parse().ok()?))
        })
        .collect()
}

/// The block's lines: the ranges no line outside the block allows yet.
fn needed(text: &str, want: &[Range]) -> Result<Vec<String>, block::BlockError> {
    let outside = block::replace(text, BLOCK, None)?;
    let lines: Vec<&str> = outside.lines().collect();
    let have = root_ranges(&lines);
    let mut wanted: Vec<Range> = want.to_vec();
    wanted.sort_unstable();
    wanted.dedup();
    Ok(wanted
        .into_iter()
        .filter(|(start, count)| {
            let (s, e) = (u64::from(*start), u64::from(*start) + u64::from(*count));
            !have.iter().any(|(hs, hc)| *hs <= s && e <= hs + hc)
        })
        .map(|(s, c)| format!("root:{s}:{c}"))
        .collect())
}

fn plan_file(plan: &mut ModulePlan, path: &str, text: Option<&str>, want: &[Range]) -> Result<(), HostError> {
    let old = text.unwrap_or("");
    let err = |e: block::BlockError| HostError::new(format!("{path}: {e}"));
    let lines = needed(old, want).map_err(err)?;
    let body = (!lines.is_empty()).then_some(lines);
    if block::body(old, BLOCK).map_err(err)? == body {
        return Ok(());
    }
    let contents = block::replace(old, BLOCK, body.as_deref()).map_err(err)?;
    let reason = match &body {
        Some(l) => format!("root may not yet map {} (ranges the containers' ID maps use)", l.join(", ")),
        None => "Phoenix's ranges are no longer needed or are allowed by other lines".to_string(),
    };
    plan.step(Step::new(
        Action::WriteFile {
            path: path.into(),
            contents,
            attrs: Attrs::root(0o644),
            backup: text.map(|_| backup_path(Path::new(path))),
            check: None,
        },
        reason,
    ));
    Ok(())
}

impl Module for SubIds {
    type Observed = Observed;

    fn name(&self) -> &'static str {
        "subids"
    }

    fn observe(&self, host: &dyn Host) -> Result<Observed, HostError> {
        Ok(Observed {
            subuid: host.read_text(Path::new("/etc/subuid"))?,
            subgid: host.read_text(Path::new("/etc/subgid"))?,
        })
    }

    fn plan(&self, o: &Observed, _: &Resolver<'_>) -> Result<ModulePlan, HostError> {
        let mut plan = ModulePlan::new("subids");
        plan_file(&mut plan, "/etc/subuid", o.subuid.as_deref(), &self.uids)?;
        plan_file(&mut plan, "/etc/subgid", o.subgid.as_deref(), &self.gids)?;
        Ok(plan)
    }
}
