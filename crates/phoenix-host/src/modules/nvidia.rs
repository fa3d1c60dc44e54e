//! The host's NVIDIA driver: nouveau blacklisted in a file Phoenix owns, and the configured
//! version installed from NVIDIA's `.run` file with `--dkms --silent` when DKMS does not have it.
//! The host is never rebooted: when the running driver is not the installed one, the plan says
//! "reboot required". The nvidia modules themselves are never blacklisted.

use std::path::Path;

use crate::host::{Attrs, Host, HostError, Invocation};
use crate::module::{Module, ModulePlan};
use crate::step::{Action, Command, Resolver, Step};

/// Phoenix's nouveau blacklist.
pub const BLACKLIST: &str = "/etc/modprobe.d/phoenix-blacklist-nouveau.conf";
/// The loaded driver's version.
pub const PROC_VERSION: &str = "/proc/driver/nvidia/version";
/// Where the runfile is downloaded.
pub const CACHE: &str = "/var/cache/phoenix";
/// What Phoenix's blacklist holds.
pub const BLACKLIST_TEXT: &str = "# Managed by phoenix setup-hypervisor (nvidia_driver): the NVIDIA driver needs nouveau off.\n\
     blacklist nouveau\noptions nouveau modeset=0\n";

/// The NVIDIA module.
pub struct Nvidia {
    /// Driver version, dot-separated numbers.
    pub version: Option<String>,
    /// The `.run` file's URL (default: NVIDIA's download server).
    pub runfile_url: Option<String>,
}

/// What the host has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The running driver's version (`/proc/driver/nvidia/version`, else `nvidia-smi`).
    pub loaded: Option<String>,
    /// Whether DKMS has the configured version (`/var/lib/dkms/nvidia/<version>`).
    pub installed: bool,
    /// Phoenix's blacklist file.
    pub blacklist: Option<String>,
    /// Whether `update-initramfs` is installed.
    pub update_initramfs: bool,
    /// Whether nouveau is loaded (`/sys/module/nouveau`): the installer refuses to run beside it.
    pub nouveau_loaded: bool,
}

/// The version in `/proc/driver/nvidia/version`: `NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.76.05  ...`.
pub fn proc_version(text: &str) -> Option<String> {
    let line = text.lines().find(|l| l.starts_with("NVRM version:"))?;
    line.split_whitespace()
        .find(|w| w.contains('.') && w.chars().all(|c| c.is_ascii_digit() || c == '.'))
        .map(str::to_string)
}

fn valid_version(v: &str) -> bool {
    let parts: Vec<&str> = v.split('.').collect();
    (2..=3).contains(&parts.len()) && parts.iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

impl Nvidia {
    fn runfile(&self, v: &str) -> String {
        format!("{CACHE}/NVIDIA-Linux-x86_64-{v}.run")
    }

    fn url(&self, v: &str) -> String {
        self.runfile_url.clone().unwrap_or_else(|| {
            format!("https://us.download.nvidia.com/XFree86/Linux-x86_64/{v}/NVIDIA-Linux-x86_64-{v}.run")
        })
    }
}

impl Module for Nvidia {
    type Observed = Observed;

    fn name(&self) -> &'static str {
        "nvidia"
    }

    fn observe(&self, host: &dyn Host) -> Result<Observed, HostError> {
        let mut loaded = host.read_text(Path::new(PROC_VERSION))?.as_deref().and_then(proc_version);
        if loaded.is_none() && host.has_program("nvidia-smi") {
            let out =
                host.run(&Invocation::probe("nvidia-smi", &["--query-gpu=driver_version", "--format=csv,noheader"]))?;
            if out.success() {
                loaded = out.stdout.lines().next().map(|l| l.trim().to_string()).filter(|v| valid_version(v));
            }
        }
        let installed = match &self.version {
            Some(v) if valid_version(v) => host.exists(&Path::new("/var/lib/dkms/nvidia").join(v))?,
            _ => false,
        };
        Ok(Observed {
            loaded,
            installed,
            blacklist: host.read_text(Path::new(BLACKLIST))?,
            update_initramfs: host.has_program("update-initramfs"),
            nouveau_loaded: host.exists(Path::new("/sys/module/nouveau"))?,
        })
    }

    fn plan(&self, o: &Observed, _: &Resolver<'_>) -> Result<ModulePlan, HostError> {
        let mut plan = ModulePlan::new("nvidia");
        let Some(v) = self.version.as_deref() else {
            return Err(HostError::new("nvidia_driver.install is set without a version"));
        };
        if !valid_version(v) {
            return Err(HostError::new(format!("nvidia_driver.version `{v}` is not dot-separated numbers")));
        }
        let url = self.url(v);
        if !url.starts_with("https://") || url.contains(char::is_whitespace) {
            return Err(HostError::new("nvidia_driver.runfile_url must be an https:// URL"));
        }
        if o.blacklist.as_deref() != Some(BLACKLIST_TEXT) {
            plan.step(Step::new(
                Action::WriteFile {
                    path: BLACKLIST.into(),
                    contents: BLACKLIST_TEXT.to_string(),
                    attrs: Attrs::root(0o644),
                    backup: None,
                    check: None,
                },
                "nouveau is not blacklisted by Phoenix (the NVIDIA driver cannot load beside it)",
            ));
            if o.update_initramfs {
                plan.step(Step::new(
                    Action::Run { command: Command::new("update-initramfs", &["-u", "-k", "all"]) },
                    "the initramfs must not load nouveau at boot",
                ));
            }
        }
        let running = o.loaded.as_deref().unwrap_or("none");
        if !o.installed && o.nouveau_loaded {
            plan.note(format!(
                "reboot required: nouveau is loaded and the NVIDIA installer refuses to run beside it; reboot (the blacklist keeps nouveau off), then apply again to install driver {v}; Phoenix does not reboot the host"
            ));
            return Ok(plan);
        }
        if !o.installed {
            let runfile = self.runfile(v);
            plan.step(Step::new(
                Action::Mkdir { path: CACHE.into(), attrs: Attrs::root(0o755) },
                "where the runfile is kept",
            ));
            plan.step(Step::new(
                Action::Run {
                    command: Command::new("curl", &["--fail", "--silent", "--show-error", "--location", "--output"])
                        .path(runfile.as_str())
                        .arg(&url),
                },
                format!("driver {v} is not installed (no /var/lib/dkms/nvidia/{v}); its runfile is downloaded"),
            ));
            plan.step(Step::new(
                Action::Run { command: Command::new("sh", &[]).path(runfile.as_str()).arg("--dkms").arg("--silent") },
                format!("installs driver {v} with DKMS (rebuilt for new kernels); running: {running}"),
            ));
        }
        if o.loaded.as_deref() != Some(v) {
            plan.note(format!(
                "reboot required: driver {v} is used after the next boot (running: {running}); Phoenix does not reboot the host"
            ));
        }
        Ok(plan)
    }
}
