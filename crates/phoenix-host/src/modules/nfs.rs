//! NFS exports in a file Phoenix owns, `/etc/exports.d/phoenix.exports` (`/etc/exports` is never
//! touched); `exportfs -ra` runs only when that file changes.

use std::path::Path;

use phoenix_config::model::NfsExport;

use super::one_line;
use crate::host::{Attrs, Host, HostError};
use crate::module::{Module, ModulePlan};
use crate::step::{Action, Command, Resolver, Step};

/// Phoenix's exports file.
pub const EXPORTS_FILE: &str = "/etc/exports.d/phoenix.exports";

/// The NFS module.
pub struct Nfs {
    /// The exports (none: Phoenix's file is removed if it is there).
    pub exports: Vec<NfsExport>,
}

/// What the host has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// Phoenix's exports file.
    pub current: Option<String>,
    /// Whether `/etc/exports.d` exists.
    pub dir_exists: bool,
    /// Whether `exportfs` is installed.
    pub exportfs: bool,
}

/// The exports file Phoenix writes.
pub fn render(exports: &[NfsExport]) -> Result<String, HostError> {
    let mut s = String::from(
        "# Managed by phoenix setup-hypervisor from the `nfs` section of phoenix_hypervisor_config.json.\n\
         # Rewritten on every apply: change the configuration, not this file.\n",
    );
    for e in exports {
        let bad = |what: &str| HostError::new(format!("nfs export {}: {what}", e.path));
        if !e.path.starts_with('/') || !one_line(&e.path) || e.path.contains('"') {
            return Err(bad("the path must be absolute, on one line, without `\"`"));
        }
        let path = if e.path.contains(char::is_whitespace) { format!("\"{}\"", e.path) } else { e.path.clone() };
        let plain =
            |t: &str| !t.is_empty() && !t.contains(|c: char| c.is_whitespace() || c.is_control() || "()\"".contains(c));
        if let Some(c) = e.clients.iter().find(|c| !plain(c)) {
            return Err(bad(&format!("client `{c}` is not an address, network, host name or `*`")));
        }
        if let Some(o) = e.options.iter().find(|o| !plain(o) || o.contains(',')) {
            return Err(bad(&format!("option `{o}` is not one export option")));
        }
        let opts = e.options.join(",");
        let clients: Vec<String> = e.clients.iter().map(|c| format!("{c}({opts})")).collect();
        s.push_str(&format!("{path} {}\n", clients.join(" ")));
    }
    Ok(s)
}

impl Module for Nfs {
    type Observed = Observed;

    fn name(&self) -> &'static str {
        "nfs"
    }

    fn observe(&self, host: &dyn Host) -> Result<Observed, HostError> {
        Ok(Observed {
            current: host.read_text(Path::new(EXPORTS_FILE))?,
            dir_exists: host.exists(Path::new("/etc/exports.d"))?,
            exportfs: host.has_program("exportfs"),
        })
    }

    fn plan(&self, o: &Observed, _: &Resolver<'_>) -> Result<ModulePlan, HostError> {
        let mut plan = ModulePlan::new("nfs");
        let reexport = |plan: &mut ModulePlan, why: &str| {
            if o.exportfs {
                plan.step(Step::new(Action::Run { command: Command::new("exportfs", &["-ra"]) }, why));
            } else {
                plan.note("exportfs is not installed (package nfs-kernel-server): the exports take effect once it is");
            }
        };
        if self.exports.is_empty() {
            if o.current.is_some() {
                plan.step(Step::new(Action::RemoveFile { path: EXPORTS_FILE.into() }, "no exports are configured"));
                reexport(&mut plan, "Phoenix's exports were removed");
            }
            return Ok(plan);
        }
        let want = render(&self.exports)?;
        if o.current.as_deref() == Some(want.as_str()) {
            return Ok(plan);
        }
        if !o.dir_exists {
            plan.step(Step::new(
                Action::Mkdir { path: "/etc/exports.d".into(), attrs: Attrs::root(0o755) },
                "/etc/exports.d is missing",
            ));
        }
        let reason = if o.current.is_some() {
            "the exports differ from the configuration"
        } else {
            "no Phoenix exports file yet"
        };
        plan.step(Step::new(
            Action::WriteFile {
                path: EXPORTS_FILE.into(),
                contents: want,
                attrs: Attrs::root(0o644),
                backup: None,
                check: None,
            },
            reason,
        ));
        reexport(&mut plan, "the exports file changed");
        Ok(plan)
    }
}
