//! The host's time zone: `/etc/localtime` a link into `/usr/share/zoneinfo` and `/etc/timezone`
//! naming the zone (what `timedatectl set-timezone` and Debian's tzdata write; done with files so
//! that it works without a running systemd).

use std::path::{Path, PathBuf};

use crate::host::{Attrs, Host, HostError};
use crate::module::{Module, ModulePlan};
use crate::step::{Action, Resolver, Step};

/// The time zone module.
pub struct Timezone {
    /// The zone, e.g. `Europe/Berlin`.
    pub zone: String,
}

/// What the host has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// `/etc/timezone`.
    pub etc_timezone: Option<String>,
    /// Where `/etc/localtime` points, when it is a link.
    pub localtime_link: Option<PathBuf>,
    /// Whether `/etc/localtime` exists at all.
    pub localtime_exists: bool,
    /// Whether the zone's file exists.
    pub zone_known: bool,
}

const ZONEINFO: &str = "/usr/share/zoneinfo";

impl Timezone {
    fn zone_file(&self) -> PathBuf {
        Path::new(ZONEINFO).join(&self.zone)
    }
}

/// Whether a zone name has the form of one (`Area/City`, `UTC`): no `..`, no leading `/`.
pub fn valid_zone(zone: &str) -> bool {
    !zone.is_empty()
        && !zone.starts_with('/')
        && zone.split('/').all(|p| !p.is_empty() && p != "." && p != "..")
        && zone.chars().all(|c| c.is_ascii_alphanumeric() || "/_+-".contains(c))
}

impl Module for Timezone {
    type Observed = Observed;

    fn name(&self) -> &'static str {
        "timezone"
    }

    fn observe(&self, host: &dyn Host) -> Result<Observed, HostError> {
        if !valid_zone(&self.zone) {
            return Err(HostError::new(format!("`{}` is not a time zone name (like Europe/Berlin or UTC)", self.zone)));
        }
        let localtime = Path::new("/etc/localtime");
        Ok(Observed {
            etc_timezone: host.read_text(Path::new("/etc/timezone"))?,
            localtime_link: host.read_link(localtime)?,
            localtime_exists: host.exists(localtime)?,
            zone_known: host.exists(&self.zone_file())?,
        })
    }

    fn plan(&self, o: &Observed, _: &Resolver<'_>) -> Result<ModulePlan, HostError> {
        let mut plan = ModulePlan::new("timezone");
        let target = self.zone_file();
        if !o.zone_known {
            return Err(HostError::with_detail(
                format!("unknown time zone {}: there is no {}", self.zone, target.display()),
                "check the name (`timedatectl list-timezones`), or install tzdata",
            ));
        }
        if o.localtime_link.as_deref() != Some(target.as_path()) {
            let reason = match (&o.localtime_link, o.localtime_exists) {
                (Some(old), _) => format!("/etc/localtime points to {}", old.display()),
                (None, true) => "/etc/localtime is a file, not a link to the zone".to_string(),
                (None, false) => "/etc/localtime is missing".to_string(),
            };
            plan.step(Step::new(Action::Symlink { link: "/etc/localtime".into(), target }, reason));
        }
        let want = format!("{}\n", self.zone);
        if o.etc_timezone.as_deref() != Some(want.as_str()) {
            let reason = match &o.etc_timezone {
                Some(old) => format!("/etc/timezone says {}", old.trim()),
                None => "/etc/timezone is missing".to_string(),
            };
            plan.step(Step::new(
                Action::WriteFile {
                    path: "/etc/timezone".into(),
                    contents: want,
                    attrs: Attrs::root(0o644),
                    backup: None,
                    check: None,
                },
                reason,
            ));
        }
        Ok(plan)
    }
}
