//! Time synchronisation: the NTP servers the host's chrony uses (Proxmox VE's time daemon), in
//! Phoenix's own sources file `/etc/chrony/sources.d/phoenix.sources`, which Debian's
//! `chrony.conf` reads (`sourcedir /etc/chrony/sources.d`); then `chronyc reload sources`. The
//! servers of `chrony.conf` itself (its `pool` lines) are left as they are. Without servers in
//! the configuration, Phoenix's file (if any) is removed.

use std::path::Path;

use crate::host::{Attrs, Host, HostError};
use crate::module::{Module, ModulePlan};
use crate::step::{Action, Command, Resolver, Step};

/// Phoenix's sources file.
pub const SOURCES_FILE: &str = "/etc/chrony/sources.d/phoenix.sources";

/// The NTP module.
pub struct Ntp {
    /// The servers (host names or addresses), in order of preference.
    pub servers: Vec<String>,
}

/// What the host has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// Phoenix's sources file.
    pub current: Option<String>,
    /// Whether `/etc/chrony/sources.d` exists.
    pub dir_exists: bool,
    /// Whether `chronyc` is installed.
    pub chronyc: bool,
}

/// Whether a server is a host name or an address: letters, digits, `.`, `-`, `:` (IPv6), nothing
/// that could start another chrony directive.
pub fn valid_server(server: &str) -> bool {
    !server.is_empty()
        && !server.starts_with('-')
        && server.chars().all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c))
}

impl Ntp {
    fn contents(&self) -> String {
        let mut text =
            String::from("# Written by phoenix setup-hypervisor from `ntp_servers`; edits here are replaced.\n");
        for s in &self.servers {
            text.push_str(&format!("server {s} iburst\n"));
        }
        text
    }
}

impl Module for Ntp {
    type Observed = Observed;

    fn name(&self) -> &'static str {
        "ntp"
    }

    fn observe(&self, host: &dyn Host) -> Result<Observed, HostError> {
        if let Some(bad) = self.servers.iter().find(|s| !valid_server(s)) {
            return Err(HostError::with_detail(
                format!("`{bad}` is not an NTP server name or address"),
                "give host names (0.de.pool.ntp.org) or addresses (192.0.2.1, 2001:db8::1)",
            ));
        }
        Ok(Observed {
            current: host.read_text(Path::new(SOURCES_FILE))?,
            dir_exists: host.exists(Path::new("/etc/chrony/sources.d"))?,
            chronyc: host.has_program("chronyc"),
        })
    }

    fn plan(&self, o: &Observed, _: &Resolver<'_>) -> Result<ModulePlan, HostError> {
        let mut plan = ModulePlan::new("ntp");
        let reload = |plan: &mut ModulePlan, why: &str| {
            if o.chronyc {
                plan.step(Step::new(Action::Run { command: Command::new("chronyc", &["reload", "sources"]) }, why));
            } else {
                plan.note("chrony is not installed: the servers are used once it is (its package is installed first)");
            }
        };
        if self.servers.is_empty() {
            if o.current.is_some() {
                plan.step(Step::new(Action::RemoveFile { path: SOURCES_FILE.into() }, "no NTP servers are configured"));
                reload(&mut plan, "Phoenix's servers were removed");
            }
            return Ok(plan);
        }
        let want = self.contents();
        if o.current.as_deref() == Some(want.as_str()) {
            return Ok(plan);
        }
        if !o.dir_exists {
            plan.step(Step::new(
                Action::Mkdir { path: "/etc/chrony/sources.d".into(), attrs: Attrs::root(0o755) },
                "/etc/chrony/sources.d is missing",
            ));
        }
        let reason = match &o.current {
            Some(_) => "the configured servers changed",
            None => "the configured servers are not there yet",
        };
        plan.step(Step::new(
            Action::WriteFile {
                path: SOURCES_FILE.into(),
                contents: want,
                attrs: Attrs::root(0o644),
                backup: None,
                check: None,
            },
            reason,
        ));
        reload(&mut plan, "chrony reads its sources again");
        Ok(plan)
    }
}
