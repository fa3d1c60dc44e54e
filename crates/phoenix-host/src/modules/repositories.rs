//! Package sources and packages: the Proxmox no-subscription repository on (in a file Phoenix
//! owns), the enterprise repository off (its lines commented out in a `.list` file, or
//! `Enabled: no` in a deb822 `.sources` file, the original kept beside it; never deleted), then
//! the packages the configuration needs, installed only when `dpkg-query` says they are missing.

use std::path::Path;

use super::backup_path;
use crate::host::{Arg, Attrs, Host, HostError, Invocation};
use crate::module::{Module, ModulePlan};
use crate::step::{Action, Command, Resolver, Step};

/// The enterprise repository of Proxmox VE 8 (Debian 12), one-line format.
pub const ENTERPRISE_LIST: &str = "/etc/apt/sources.list.d/pve-enterprise.list";
/// The enterprise repository of Proxmox VE 9 (Debian 13), deb822 format.
pub const ENTERPRISE_SOURCES: &str = "/etc/apt/sources.list.d/pve-enterprise.sources";
/// Phoenix's no-subscription repository, one-line format (Debian 12).
pub const NO_SUB_LIST: &str = "/etc/apt/sources.list.d/phoenix-pve-no-subscription.list";
/// Phoenix's no-subscription repository, deb822 format (Debian 13).
pub const NO_SUB_SOURCES: &str = "/etc/apt/sources.list.d/phoenix-pve-no-subscription.sources";
/// dpkg's database: packages are checked only where it exists.
pub const DPKG_STATUS: &str = "/var/lib/dpkg/status";
/// The prefix Phoenix puts before an enterprise line it turns off.
pub const DISABLED_PREFIX: &str = "# disabled by phoenix setup-hypervisor: ";

/// Files where a no-subscription repository the administrator set up may already be.
const OTHER_SOURCES: &[&str] = &[
    "/etc/apt/sources.list",
    "/etc/apt/sources.list.d/pve-no-subscription.list",
    "/etc/apt/sources.list.d/pve-install-repo.list",
    "/etc/apt/sources.list.d/proxmox.sources",
    "/etc/apt/sources.list.d/pve-no-subscription.sources",
];

/// The repositories module.
pub struct Repositories {
    /// Packages the configuration needs, each with the section that needs it.
    pub packages: Vec<(String, String)>,
}

/// Which generation of APT source files the host uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Debian 12 (bookworm, Proxmox VE 8): `deb ...` lines in `.list` files.
    List,
    /// Debian 13 (trixie, Proxmox VE 9): deb822 stanzas in `.sources` files.
    Deb822,
}

/// What the host has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// `VERSION_CODENAME` of `/etc/os-release`.
    pub codename: Option<String>,
    /// The enterprise `.list` file.
    pub enterprise_list: Option<String>,
    /// The enterprise `.sources` file.
    pub enterprise_sources: Option<String>,
    /// Phoenix's no-subscription file (of the host's format).
    pub no_sub: Option<String>,
    /// Whether another file already has an enabled no-subscription repository.
    pub no_sub_elsewhere: Option<String>,
    /// Packages that are not installed; `None`: not checked (no dpkg database).
    pub missing: Option<Vec<String>>,
}

impl Observed {
    /// The format of the host's source files: the enterprise file there is, else the release.
    pub fn format(&self) -> Option<Format> {
        if self.enterprise_sources.is_some() {
            return Some(Format::Deb822);
        }
        if self.enterprise_list.is_some() {
            return Some(Format::List);
        }
        match self.codename.as_deref() {
            Some("bookworm") => Some(Format::List),
            Some("trixie") => Some(Format::Deb822),
            _ => None,
        }
    }
}

fn codename(os_release: &str) -> Option<String> {
    os_release.lines().find_map(|l| {
        let v = l.strip_prefix("VERSION_CODENAME=")?;
        Some(v.trim().trim_matches('"').to_string())
    })
}

/// Whether an enabled `deb` line names the enterprise repository.
fn active_enterprise_line(line: &str) -> bool {
    let t = line.trim_start();
    t.starts_with("deb") && t.contains("enterprise.proxmox.com")
}

/// A `.list` file with every enabled enterprise line commented out (`None`: none is enabled).
pub fn disable_list(text: &str) -> Option<String> {
    if !text.lines().any(active_enterprise_line) {
        return None;
    }
    let mut out: String = text
        .lines()
        .map(|l| if active_enterprise_line(l) { format!("{DISABLED_PREFIX}{l}") } else { l.to_string() })
        .collect::<Vec<_>>()
        .join("\n");
    out.push('\n');
    Some(out)
}

/// A deb822 file with `Enabled: no` in each enabled stanza that names the enterprise repository
/// (`None`: none is enabled). Other stanzas and lines are kept as they are.
pub fn disable_deb822(text: &str) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out: Vec<String> = Vec::new();
    let mut changed = false;
    let mut start = 0;
    while start < lines.len() {
        let end = lines[start..].iter().position(|l| l.trim().is_empty()).map_or(lines.len(), |p| start + p);
        let stanza = &lines[start..end];
        let field = |name: &str| {
            stanza.iter().position(|l| {
                l.split_once(':').is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case(name)) && !l.starts_with('#')
            })
        };
        let enterprise = stanza.iter().any(|l| !l.starts_with('#') && l.contains("enterprise.proxmox.com"));
        let enabled_at = field("Enabled");
        let disabled = enabled_at.is_some_and(|i| {
            stanza[i]
                .split_once(':')
                .is_some_and(|(_, v)| matches!(v.trim().to_ascii_lowercase().as_str(), "no" | "false" | "0"))
        });
        for (i, l) in stanza.iter().enumerate() {
            if enterprise && !disabled && enabled_at == Some(i) {
                out.push("Enabled: no".to_string());
            } else {
                out.push((*l).to_string());
            }
        }
        if enterprise && !disabled {
            if enabled_at.is_none() {
                out.push("Enabled: no".to_string());
            }
            changed = true;
        }
        // The blank line(s) after the stanza.
        let mut next = end;
        while next < lines.len() && lines[next].trim().is_empty() {
            out.push(lines[next].to_string());
            next += 1;
        }
        start = next;
    }
    changed.then(|| {
        let mut s = out.join("\n");
        s.push('\n');
        s
    })
}

/// Phoenix's no-subscription repository file for a release.
pub fn no_sub_file(format: Format, codename: &str) -> String {
    let head = "# Managed by phoenix setup-hypervisor: the Proxmox VE no-subscription repository.\n";
    match format {
        Format::List => format!("{head}deb http://download.proxmox.com/debian/pve {codename} pve-no-subscription\n"),
        Format::Deb822 => format!(
            "{head}Types: deb\nURIs: http://download.proxmox.com/debian/pve\nSuites: {codename}\n\
             Components: pve-no-subscription\nSigned-By: /usr/share/keyrings/proxmox-archive-keyring.gpg\n"
        ),
    }
}

/// Whether a sources file (either format) has an enabled no-subscription repository.
fn has_no_sub(text: &str) -> bool {
    if text.lines().any(|l| l.trim_start().starts_with("deb") && l.contains("pve-no-subscription")) {
        return true;
    }
    text.split("\n\n").any(|stanza| {
        let live: Vec<&str> = stanza.lines().filter(|l| !l.trim_start().starts_with('#')).collect();
        live.iter().any(|l| l.contains("pve-no-subscription"))
            && !live.iter().any(|l| {
                l.split_once(':').is_some_and(|(k, v)| {
                    k.trim().eq_ignore_ascii_case("Enabled")
                        && matches!(v.trim().to_ascii_lowercase().as_str(), "no" | "false" | "0")
                })
            })
    })
}

/// `dpkg-query --admindir /var/lib/dpkg -W -f=${Status} <package>` (the admin directory is given
/// so that a host rooted elsewhere is asked about its own database).
pub fn dpkg_query(package: &str) -> Invocation {
    let mut inv = Invocation::probe("dpkg-query", &[]);
    inv.args = vec![
        Arg::Text("--admindir".into()),
        Arg::Path("/var/lib/dpkg".into()),
        Arg::Text("-W".into()),
        Arg::Text("-f=${Status}".into()),
        Arg::Text(package.into()),
    ];
    inv
}

impl Module for Repositories {
    type Observed = Observed;

    fn name(&self) -> &'static str {
        "repositories"
    }

    fn observe(&self, host: &dyn Host) -> Result<Observed, HostError> {
        let codename = host.read_text(Path::new("/etc/os-release"))?.as_deref().and_then(codename);
        let enterprise_list = host.read_text(Path::new(ENTERPRISE_LIST))?;
        let enterprise_sources = host.read_text(Path::new(ENTERPRISE_SOURCES))?;
        let mut o = Observed {
            codename,
            enterprise_list,
            enterprise_sources,
            no_sub: None,
            no_sub_elsewhere: None,
            missing: None,
        };
        o.no_sub = match o.format() {
            Some(Format::List) => host.read_text(Path::new(NO_SUB_LIST))?,
            Some(Format::Deb822) => host.read_text(Path::new(NO_SUB_SOURCES))?,
            None => None,
        };
        for f in OTHER_SOURCES {
            if host.read_text(Path::new(f))?.as_deref().is_some_and(has_no_sub) {
                o.no_sub_elsewhere = Some((*f).to_string());
                break;
            }
        }
        if !self.packages.is_empty() && host.exists(Path::new(DPKG_STATUS))? && host.has_program("dpkg-query") {
            let mut missing = Vec::new();
            for (p, _) in &self.packages {
                let out = host.run(&dpkg_query(p))?;
                if !(out.success() && out.stdout.trim() == "install ok installed") {
                    missing.push(p.clone());
                }
            }
            o.missing = Some(missing);
        }
        Ok(o)
    }

    fn plan(&self, o: &Observed, _: &Resolver<'_>) -> Result<ModulePlan, HostError> {
        let mut plan = ModulePlan::new("repositories");
        let mut sources_changed = false;
        match (o.format(), o.codename.as_deref()) {
            (Some(format), codename) => {
                if let Some(text) = &o.enterprise_list
                    && let Some(contents) = disable_list(text)
                {
                    plan.step(Step::new(
                        Action::WriteFile {
                            path: ENTERPRISE_LIST.into(),
                            contents,
                            attrs: Attrs::root(0o644),
                            backup: Some(backup_path(Path::new(ENTERPRISE_LIST))),
                            check: None,
                        },
                        "the enterprise repository is enabled (it needs a subscription): its lines are commented out",
                    ));
                    sources_changed = true;
                }
                if let Some(text) = &o.enterprise_sources
                    && let Some(contents) = disable_deb822(text)
                {
                    plan.step(Step::new(
                        Action::WriteFile {
                            path: ENTERPRISE_SOURCES.into(),
                            contents,
                            attrs: Attrs::root(0o644),
                            backup: Some(backup_path(Path::new(ENTERPRISE_SOURCES))),
                            check: None,
                        },
                        "the enterprise repository is enabled (it needs a subscription): `Enabled: no` is set",
                    ));
                    sources_changed = true;
                }
                let path = match format {
                    Format::List => NO_SUB_LIST,
                    Format::Deb822 => NO_SUB_SOURCES,
                };
                match (codename, &o.no_sub_elsewhere) {
                    (_, Some(f)) if o.no_sub.is_none() => {
                        plan.note(format!("the no-subscription repository is already enabled in {f}"));
                    }
                    (Some(c @ ("bookworm" | "trixie")), _) => {
                        let want = no_sub_file(format, c);
                        if o.no_sub.as_deref() != Some(want.as_str()) {
                            plan.step(Step::new(
                                Action::WriteFile {
                                    path: path.into(),
                                    contents: want,
                                    attrs: Attrs::root(0o644),
                                    backup: None,
                                    check: None,
                                },
                                if o.no_sub.is_some() {
                                    "Phoenix's no-subscription repository file differs".to_string()
                                } else {
                                    "the Proxmox no-subscription repository is not enabled".to_string()
                                },
                            ));
                            sources_changed = true;
                        }
                    }
                    (other, _) => plan.note(format!(
                        "release {} is not Debian 12 (bookworm) or 13 (trixie): the no-subscription repository is not added",
                        other.unwrap_or("unknown")
                    )),
                }
            }
            (None, _) => plan.note(
                "neither a Proxmox enterprise repository nor Debian 12 or 13 in /etc/os-release: repositories are not checked",
            ),
        }
        let missing = match &o.missing {
            Some(m) => m.clone(),
            None => {
                if !self.packages.is_empty() {
                    plan.note(
                        "no dpkg database (or no dpkg-query): the packages the configuration needs are not checked",
                    );
                }
                Vec::new()
            }
        };
        if sources_changed || !missing.is_empty() {
            plan.step(Step::new(
                Action::Run { command: Command::new("apt-get", &["update"]) },
                if sources_changed { "the package sources changed" } else { "packages are installed next" },
            ));
        }
        if !missing.is_empty() {
            let why: Vec<String> = self
                .packages
                .iter()
                .filter(|(p, _)| missing.contains(p))
                .map(|(p, section)| format!("{p} ({section})"))
                .collect();
            let mut args = vec![
                "DEBIAN_FRONTEND=noninteractive",
                "apt-get",
                "install",
                "-y",
                "--no-install-recommends",
                "-o",
                "Dpkg::Options::=--force-confold",
            ];
            args.extend(missing.iter().map(String::as_str));
            plan.step(Step::new(
                Action::Run { command: Command::new("env", &args) },
                format!("not installed (dpkg-query): {}; configuration files already there are kept", why.join(", ")),
            ));
        }
        Ok(plan)
    }
}
