//! The validated configuration: every guest by ID, with where it was defined.

use std::collections::BTreeMap;

use crate::model::{GuestRef, HypervisorFile, LxcConfig, LxcFile, VmConfig, VmDefaults};
use crate::path::JsonPath;
use crate::source::FileKind;

/// A guest's ID.
pub type GuestId = u32;

/// Where a guest is defined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The file.
    pub file: FileKind,
    /// The guest's object in it.
    pub path: JsonPath,
}

/// A container or a VM.
#[derive(Debug, Clone, PartialEq)]
pub enum GuestSpec {
    /// An LXC container.
    Lxc(Box<LxcConfig>),
    /// A VM.
    Vm(Box<VmConfig>),
}

/// One guest of the estate.
#[derive(Debug, Clone, PartialEq)]
pub struct Guest {
    /// Its ID.
    pub id: GuestId,
    /// Its definition.
    pub spec: GuestSpec,
    /// Where it is defined.
    pub origin: Origin,
}

impl Guest {
    /// `container` or `VM`.
    pub fn kind_name(&self) -> &'static str {
        match self.spec {
            GuestSpec::Lxc(_) => "container",
            GuestSpec::Vm(_) => "VM",
        }
    }

    /// Its host name.
    pub fn name(&self) -> &str {
        match &self.spec {
            GuestSpec::Lxc(c) => &c.name,
            GuestSpec::Vm(v) => &v.name,
        }
    }

    /// The guest it is cloned from, as written.
    pub fn clone_source(&self) -> Option<String> {
        match &self.spec {
            GuestSpec::Lxc(c) => c.clone_from_ctid.clone(),
            GuestSpec::Vm(v) => v.clone_from_vmid.map(|id| id.to_string()),
        }
    }

    /// The key holding the clone source (`clone_from_ctid` or `clone_from_vmid`).
    pub fn clone_key(&self) -> &'static str {
        match self.spec {
            GuestSpec::Lxc(_) => "clone_from_ctid",
            GuestSpec::Vm(_) => "clone_from_vmid",
        }
    }

    /// The snapshot clones of it use, if it is a template.
    pub fn template_snapshot(&self) -> Option<&str> {
        match &self.spec {
            GuestSpec::Lxc(c) => c.template_snapshot_name.as_deref(),
            GuestSpec::Vm(v) => v.template_snapshot_name.as_deref(),
        }
    }

    /// Whether it becomes a Proxmox template (`is_template`).
    pub fn is_template(&self) -> bool {
        match &self.spec {
            GuestSpec::Lxc(c) => c.is_template,
            GuestSpec::Vm(v) => v.is_template,
        }
    }

    /// Whether other guests may be cloned from it: it has a template snapshot, or it becomes a
    /// Proxmox template.
    pub fn is_clone_source(&self) -> bool {
        self.template_snapshot().is_some() || self.is_template()
    }

    /// Guests it depends on, as written.
    pub fn dependencies(&self) -> &[GuestRef] {
        match &self.spec {
            GuestSpec::Lxc(c) => &c.dependencies,
            GuestSpec::Vm(v) => &v.dependencies,
        }
    }

    /// The services it exposes through the gateway.
    pub fn services(&self) -> &[crate::model::Service] {
        match &self.spec {
            GuestSpec::Lxc(c) => &c.services,
            GuestSpec::Vm(v) => &v.services,
        }
    }

    /// Features it installs, in order.
    pub fn features(&self) -> &[String] {
        match &self.spec {
            GuestSpec::Lxc(c) => &c.features,
            GuestSpec::Vm(v) => &v.features,
        }
    }

    /// The container's definition, if it is one.
    pub fn as_lxc(&self) -> Option<&LxcConfig> {
        match &self.spec {
            GuestSpec::Lxc(c) => Some(c),
            GuestSpec::Vm(_) => None,
        }
    }
}

/// An edge of the guest graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EdgeKind {
    /// Cloned from the target's template snapshot.
    Clone,
    /// Waits for the target to be completed and healthy.
    Dependency,
    /// The gateway routes to the target's `services`: it waits for the target, so that the
    /// configuration it is given names guests that run.
    Gateway,
}

/// The whole validated configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Estate {
    /// The hypervisor file (its `vms` moved into `guests`).
    pub hypervisor: HypervisorFile,
    /// The container file's settings (its containers moved into `guests`).
    pub lxc_settings: LxcFile,
    /// VM defaults, from whichever file gives them.
    pub vm_defaults: Option<VmDefaults>,
    /// Every guest, by ID.
    pub guests: BTreeMap<GuestId, Guest>,
    /// Containers that run a feature needing nesting while neither they nor their templates
    /// say anything of nesting: Phoenix turns it on for them, as the shell version did.
    pub nesting_turned_on: std::collections::BTreeSet<GuestId>,
}

impl Estate {
    /// The edges from a guest: to its clone source, then to its dependencies, then, for the
    /// gateway guest, to every other guest that declares `services` (in ID order) — except those
    /// that wait for the gateway themselves, through clone sources or dependencies: that edge
    /// would make a cycle, and the gateway can be configured before they exist. Only edges to
    /// guests that exist are returned.
    pub fn edges(&self, guest: &Guest) -> Vec<(EdgeKind, GuestId)> {
        let mut out = self.explicit_edges(guest);
        if self.gateway_guest() == Some(guest.id) {
            let waiting = self.waiting_for(guest.id);
            out.extend(
                self.guests
                    .values()
                    .filter(|g| g.id != guest.id && !g.services().is_empty() && !waiting.contains(&g.id))
                    .map(|g| (EdgeKind::Gateway, g.id)),
            );
        }
        out
    }

    /// The edges the configuration writes: to the clone source, then to the dependencies.
    fn explicit_edges(&self, guest: &Guest) -> Vec<(EdgeKind, GuestId)> {
        let clone = guest.clone_source().and_then(|s| s.parse().ok()).map(|id| (EdgeKind::Clone, id));
        let deps =
            guest.dependencies().iter().filter_map(|d| d.as_text().parse().ok()).map(|id| (EdgeKind::Dependency, id));
        clone.into_iter().chain(deps).filter(|(_, id)| self.guests.contains_key(id)).collect()
    }

    /// The guests that wait for `target` through written edges, directly or not.
    fn waiting_for(&self, target: GuestId) -> std::collections::BTreeSet<GuestId> {
        let mut waiting = std::collections::BTreeSet::from([target]);
        loop {
            let before = waiting.len();
            for g in self.guests.values() {
                if !waiting.contains(&g.id) && self.explicit_edges(g).iter().any(|(_, to)| waiting.contains(to)) {
                    waiting.insert(g.id);
                }
            }
            if waiting.len() == before {
                waiting.remove(&target);
                return waiting;
            }
        }
    }

    /// The ID of the guest that runs the gateway, when the hypervisor file names one that is
    /// defined.
    pub fn gateway_guest(&self) -> Option<GuestId> {
        let gw = self.hypervisor.gateway.as_ref()?;
        gw.guest.as_text().parse().ok().filter(|id| self.guests.contains_key(id))
    }

    /// The guest itself, then its clone source, then that one's, as far as they are defined
    /// (a cycle ends the chain).
    pub fn clone_chain(&self, id: GuestId) -> Vec<&Guest> {
        let mut out: Vec<&Guest> = Vec::new();
        let mut at = self.guests.get(&id);
        while let Some(g) = at {
            if out.iter().any(|seen| seen.id == g.id) {
                break;
            }
            out.push(g);
            at = g.clone_source().and_then(|s| s.parse::<GuestId>().ok()).and_then(|s| self.guests.get(&s));
        }
        out
    }

    /// Whether a container runs unprivileged: its own `unprivileged`, or, for a clone that gives
    /// none, its source's (`pct clone` keeps it), or `proxmox_defaults.unprivileged`. `None` when
    /// none of them says.
    pub fn unprivileged(&self, id: GuestId) -> Option<bool> {
        self.clone_chain(id)
            .iter()
            .filter_map(|g| g.as_lxc())
            .find_map(|c| c.unprivileged)
            .or_else(|| self.hypervisor.proxmox_defaults.as_ref().and_then(|d| d.unprivileged))
    }

    /// Whether a container may nest: `nesting=1` in its `pct_options` or
    /// `apparmor_manages_nesting`, its own or inherited from its clone sources (a clone keeps its
    /// template's feature flags). A setting of `nesting=0` or `apparmor_manages_nesting: false`
    /// nearer the container wins.
    pub fn nesting(&self, id: GuestId) -> bool {
        self.nesting_setting(id) == Some(true)
    }

    /// The nesting flag as the configuration sets it (see [`Estate::nesting`]), or `None` when
    /// neither the container nor its clone sources say.
    pub fn nesting_setting(&self, id: GuestId) -> Option<bool> {
        self.clone_chain(id)
            .iter()
            .filter_map(|g| g.as_lxc())
            .find_map(|c| c.pct_options.iter().rev().find_map(|o| nesting_option(o)).or(c.apparmor_manages_nesting))
    }
}

/// The value a container option gives the nesting flag, if it sets it: `nesting=1`,
/// `nesting=0`, or `nesting=1` inside a comma-separated list such as `nesting=1,keyctl=1`.
fn nesting_option(option: &str) -> Option<bool> {
    option.split(',').rev().find_map(|part| {
        let (key, value) = part.split_once('=')?;
        (key.trim() == "nesting").then(|| matches!(value.trim(), "1" | "true" | "yes" | "on"))
    })
}
