//! The AppArmor profile for unprivileged containers that mount file systems, based on LXC's
//! `lxc-default-with-mounting`: written to `/etc/apparmor.d/lxc-phoenix-mounting` (a standalone
//! profile the AppArmor service loads at boot), checked with `apparmor_parser -Q` (syntax only)
//! before it replaces the old one, and loaded with `apparmor_parser -r` where the kernel has
//! AppArmor (where it has none, loading is skipped and the plan says so).

use std::path::Path;

use crate::host::{Attrs, Host, HostError};
use crate::module::{Module, ModulePlan};
use crate::step::{Action, Check, Command, Resolver, Step};

/// The profile's name, for a container's `apparmor_profile`.
pub const PROFILE: &str = "lxc-phoenix-mounting";
/// Its file.
pub const PROFILE_FILE: &str = "/etc/apparmor.d/lxc-phoenix-mounting";
/// Says whether the kernel has AppArmor on (`Y`).
pub const KERNEL_SWITCH: &str = "/sys/module/apparmor/parameters/enabled";
/// The profiles the kernel has loaded.
pub const LOADED: &str = "/sys/kernel/security/apparmor/profiles";

/// LXC's AppArmor abstraction the profile includes (packages `lxc-pve` on Proxmox,
/// `liblxc-common` on Debian).
pub const LXC_ABSTRACTION: &str = "/etc/apparmor.d/abstractions/lxc/container-base";

/// The profile Phoenix writes.
pub fn render() -> String {
    format!(
        "# Managed by phoenix setup-hypervisor; rewritten on every apply.\n\
         # Unprivileged containers that mount file systems: LXC's lxc-default-with-mounting, plus NFS,\n\
         # CIFS and FUSE. Give a container `\"apparmor_profile\": \"{PROFILE}\"` to use it.\n\
         #include <tunables/global>\n\
         \n\
         profile {PROFILE} flags=(attach_disconnected,mediate_deleted) {{\n\
         \x20 #include <abstractions/lxc/container-base>\n\
         \n\
         \x20 mount fstype=ext*,\n\
         \x20 mount fstype=xfs,\n\
         \x20 mount fstype=btrfs,\n\
         \x20 mount fstype=nfs,\n\
         \x20 mount fstype=nfs4,\n\
         \x20 mount fstype=cifs,\n\
         \x20 mount fstype=fuse,\n\
         \x20 mount fstype=fuse.*,\n\
         }}\n"
    )
}

/// The AppArmor module.
pub struct AppArmor;

/// What the host has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The profile file.
    pub current: Option<String>,
    /// Whether the kernel has AppArmor on.
    pub kernel: bool,
    /// Whether the kernel has the profile loaded.
    pub loaded: bool,
    /// Whether apparmor_parser is installed.
    pub parser: bool,
    /// Whether LXC's AppArmor abstractions, which the profile includes, are installed.
    pub lxc_abstractions: bool,
}

fn parser(args: &[&str]) -> Command {
    Command::new("apparmor_parser", args).path("/etc/apparmor.d")
}

impl Module for AppArmor {
    type Observed = Observed;

    fn name(&self) -> &'static str {
        "apparmor"
    }

    fn observe(&self, host: &dyn Host) -> Result<Observed, HostError> {
        let kernel = host.read_text(Path::new(KERNEL_SWITCH))?.is_some_and(|s| s.trim() == "Y");
        let loaded = kernel
            && host
                .read_text(Path::new(LOADED))?
                .is_some_and(|s| s.lines().any(|l| l.split(' ').next() == Some(PROFILE)));
        Ok(Observed {
            current: host.read_text(Path::new(PROFILE_FILE))?,
            kernel,
            loaded,
            parser: host.has_program("apparmor_parser"),
            lxc_abstractions: host.read_text(Path::new(LXC_ABSTRACTION))?.is_some(),
        })
    }

    fn plan(&self, o: &Observed, _: &Resolver<'_>) -> Result<ModulePlan, HostError> {
        let mut plan = ModulePlan::new("apparmor");
        if !o.parser {
            plan.note("apparmor_parser is not installed (package apparmor): the profile is not written");
            return Ok(plan);
        }
        if !o.lxc_abstractions {
            plan.note(format!(
                "LXC's AppArmor abstractions are not installed ({LXC_ABSTRACTION}: package lxc-pve on Proxmox, \
                 liblxc-common on Debian): {PROFILE}, which includes them, is not written"
            ));
            return Ok(plan);
        }
        let want = render();
        let changed = o.current.as_deref() != Some(want.as_str());
        if changed {
            plan.step(Step::new(
                Action::WriteFile {
                    path: PROFILE_FILE.into(),
                    contents: want,
                    attrs: Attrs::root(0o644),
                    backup: None,
                    check: Some(Check::new(parser(&["-Q", "-K", "--base"]))),
                },
                if o.current.is_some() { "the profile differs from Phoenix's" } else { "no Phoenix profile yet" },
            ));
        }
        if !o.kernel {
            plan.note(format!(
                "the kernel has no AppArmor ({KERNEL_SWITCH} is not `Y`): {PROFILE} is written and checked, not loaded"
            ));
        } else if changed || !o.loaded {
            let mut load = parser(&["-r", "-W", "--base"]);
            load = load.path(PROFILE_FILE);
            plan.step(Step::new(
                Action::Run { command: load },
                if changed { "the profile changed" } else { "the kernel has not loaded the profile" },
            ));
        }
        Ok(plan)
    }
}
