//! Host setup (`phoenix setup-hypervisor`): modules that observe the hypervisor, plan typed steps
//! with reasons, and apply them, in the order the shell version ran them. Every read, write and
//! command goes through one [`Host`]; planning runs on a [`host::ReadOnly`] view of it, so a plan
//! and a dry run cannot change the host. Files Phoenix does not own are edited only inside its
//! marked blocks ([`block`]), after a backup of the original.

pub mod block;
pub mod double;
pub mod etc;
pub mod host;
pub mod module;
pub mod modules;
pub mod step;

use phoenix_config::Estate;
use phoenix_config::model::{IdKind, StorageIds};

pub use host::{Host, HostError, ReadOnly, RealHost};
pub use module::{ApplyError, Module, ModulePlan, Planner, apply};
pub use step::{Action, Resolver, Step};

/// Every module of host setup, in the order they run.
pub const MODULES: &[&str] = &[
    "repositories",
    "timezone",
    "ntp",
    "users",
    "zfs",
    "storage",
    "nfs",
    "samba",
    "firewall",
    "nvidia",
    "apparmor",
    "subids",
];

/// Proxmox's ID range for unprivileged containers without their own `id_maps`.
pub const DEFAULT_RANGE: (u32, u32) = (100_000, 65_536);

/// The modules the configuration asks for, in order (`only`: just that one). `allow_wipe`: disks
/// whose partitions and signatures the zfs module may destroy (`--allow-wipe`).
pub fn modules(estate: &Estate, only: Option<&str>, allow_wipe: &[String]) -> Vec<Box<dyn Planner>> {
    let h = &estate.hypervisor;
    let mut out: Vec<Box<dyn Planner>> = Vec::new();
    out.push(Box::new(modules::repositories::Repositories { packages: packages(estate) }));
    if let Some(zone) = &h.timezone {
        out.push(Box::new(modules::timezone::Timezone { zone: zone.clone() }));
    }
    // Without `ntp_servers`, Phoenix's sources file (if any) is removed.
    out.push(Box::new(modules::ntp::Ntp { servers: h.ntp_servers.clone().unwrap_or_default() }));
    if let Some(users) = &h.users {
        out.push(Box::new(modules::users::Users { users: users.as_slice().to_vec() }));
    }
    if let Some(z) = &h.zfs
        && (!z.pools.is_empty() || !z.datasets.is_empty() || z.arc_max_gb.is_some())
    {
        out.push(Box::new(modules::zfs::Zfs { config: z.clone(), allow_wipe: allow_wipe.to_vec() }));
    }
    let datasets = h.zfs.as_ref().map(|z| z.datasets.clone()).unwrap_or_default();
    let ids = match &h.proxmox_storage_ids {
        Some(StorageIds::List(l)) => l.clone(),
        Some(StorageIds::Map(m)) => m.values().cloned().collect(),
        None => Vec::new(),
    };
    if datasets.iter().any(|d| d.proxmox_storage_type.is_some()) || !ids.is_empty() {
        out.push(Box::new(modules::storage::Storage { datasets, ids }));
    }
    // Without an `nfs` or `samba` section, Phoenix's files (if any) are removed: the sections
    // are what they hold.
    out.push(Box::new(modules::nfs::Nfs { exports: h.nfs.as_ref().map(|n| n.exports.clone()).unwrap_or_default() }));
    let samba = h.samba.as_ref();
    out.push(Box::new(modules::samba::Samba {
        shares: samba.map(|s| s.shares.clone()).unwrap_or_default(),
        user: samba.and_then(|s| s.user.clone().map(|u| (u, s.password.as_ref().map(|p| p.0.clone())))),
    }));
    if let Some(fw) = &h.firewall {
        out.push(Box::new(modules::firewall::Firewall { config: fw.clone() }));
    }
    if let Some(n) = h.nvidia_driver.as_ref().filter(|n| n.install) {
        out.push(Box::new(modules::nvidia::Nvidia { version: n.version.clone(), runfile_url: n.runfile_url.clone() }));
    }
    let (uids, gids) = id_ranges(estate);
    if !uids.is_empty() || !gids.is_empty() {
        out.push(Box::new(modules::apparmor::AppArmor));
    }
    out.push(Box::new(modules::subids::SubIds { uids, gids }));
    out.retain(|m| only.is_none_or(|o| o == m.name()));
    out
}

/// The packages the configuration needs, each with the section that needs it.
pub fn packages(estate: &Estate) -> Vec<(String, String)> {
    let h = &estate.hypervisor;
    let mut out = Vec::new();
    let mut add = |p: &str, section: &str| out.push((p.to_string(), section.to_string()));
    if h.nfs.as_ref().is_some_and(|n| !n.exports.is_empty()) {
        add("nfs-kernel-server", "nfs");
    }
    if h.samba.as_ref().is_some_and(|s| !s.shares.is_empty() || s.user.is_some()) {
        add("samba", "samba");
    }
    if h.ntp_servers.as_ref().is_some_and(|s| !s.is_empty()) {
        add("chrony", "ntp_servers");
    }
    if h.zfs.as_ref().is_some_and(|z| !z.pools.is_empty() || !z.datasets.is_empty()) {
        add("zfsutils-linux", "zfs");
    }
    if h.nvidia_driver.as_ref().is_some_and(|n| n.install) {
        add("dkms", "nvidia_driver");
        add("proxmox-default-headers", "nvidia_driver");
    }
    out
}

/// Host ID ranges root must be allowed to map: Proxmox's default for each unprivileged
/// container without `id_maps`, and every range of those with some.
pub fn id_ranges(estate: &Estate) -> (Vec<modules::subids::Range>, Vec<modules::subids::Range>) {
    let (mut uids, mut gids) = (Vec::new(), Vec::new());
    for (id, g) in &estate.guests {
        let Some(c) = g.as_lxc() else { continue };
        if estate.unprivileged(*id) != Some(true) {
            continue;
        }
        if c.id_maps.is_empty() {
            uids.push(DEFAULT_RANGE);
            gids.push(DEFAULT_RANGE);
        }
        for m in &c.id_maps {
            let r = (m.host_id, m.size);
            match m.kind {
                IdKind::Uid => uids.push(r),
                IdKind::Gid => gids.push(r),
            }
        }
    }
    uids.sort_unstable();
    uids.dedup();
    gids.sort_unstable();
    gids.dedup();
    (uids, gids)
}
