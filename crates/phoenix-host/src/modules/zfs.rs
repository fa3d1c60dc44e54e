//! ZFS: pools, datasets with their properties, and the ARC maximum.
//!
//! A pool is created only on disks that hold no partitions and no signature (`lsblk`, `wipefs
//! --no-act`); a disk that does is refused unless `--allow-wipe DISK` names it. A pool that exists
//! is never recreated: where its disks differ from the configuration, the plan says so. Datasets
//! are created with their properties (`zfs create -o k=v`), and properties that differ are set
//! (`zfs set`). The ARC maximum goes in `/etc/modprobe.d/zfs.conf` (the file as it was kept
//! beside it) and, where the module is loaded, in `/sys/module/zfs/parameters/zfs_arc_max`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use phoenix_config::model::{RaidLevel, Zfs as ZfsConfig};

use super::backup_path;
use crate::host::{Arg, Attrs, Host, HostError, Invocation};
use crate::module::{Module, ModulePlan};
use crate::step::{Action, Command, Piece, Resolver, Step};

/// The module options file Phoenix writes.
pub const ZFS_CONF: &str = "/etc/modprobe.d/zfs.conf";
/// The running module's ARC maximum.
pub const ARC_MAX_PARAM: &str = "/sys/module/zfs/parameters/zfs_arc_max";

/// The ZFS module.
pub struct Zfs {
    /// The `zfs` section.
    pub config: ZfsConfig,
    /// Disks whose partitions and signatures may be destroyed (`--allow-wipe`).
    pub allow_wipe: Vec<String>,
}

/// What a disk holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Disk {
    /// Whether the path exists.
    pub exists: bool,
    /// Its partitions (`lsblk`).
    pub partitions: Vec<String>,
    /// The signatures on it (`wipefs --no-act`): a file system, a partition table, a pool.
    pub signatures: Vec<String>,
}

/// What the host has.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Observed {
    /// Whether the ZFS tools are installed.
    pub tools: bool,
    /// Pools that exist.
    pub pools: BTreeSet<String>,
    /// `zpool status -P` of configured pools that exist.
    pub status: BTreeMap<String, String>,
    /// The disks of configured pools that do not exist yet.
    pub disks: BTreeMap<String, Disk>,
    /// Datasets that exist.
    pub datasets: BTreeSet<String>,
    /// The configured properties' values of configured datasets that exist.
    pub properties: BTreeMap<String, BTreeMap<String, String>>,
    /// `/etc/modprobe.d/zfs.conf`.
    pub zfs_conf: Option<String>,
    /// The running module's ARC maximum.
    pub arc_max: Option<String>,
    /// Whether `update-initramfs` is installed.
    pub update_initramfs: bool,
}

/// `k=v,k=v` as pairs, checked: a property name, and a value without spaces or commas.
pub fn parse_properties(dataset: &str, text: Option<&str>) -> Result<Vec<(String, String)>, HostError> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else { return Ok(Vec::new()) };
    text.split(',')
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| HostError::new(format!("zfs dataset {dataset}: property `{kv}` is not key=value")))?;
            let (k, v) = (k.trim(), v.trim());
            let key_ok = !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || "_:.-".contains(c));
            if !key_ok || v.is_empty() || v.contains(|c: char| c.is_whitespace() || c.is_control()) {
                return Err(HostError::new(format!("zfs dataset {dataset}: property `{kv}` is not key=value")));
            }
            Ok((k.to_string(), v.to_string()))
        })
        .collect()
}

/// A dataset's full name.
pub fn full_name(pool: &str, name: &str) -> String {
    format!("{pool}/{name}")
}

fn probe(program: &str, args: &[&str], path: Option<&str>) -> Invocation {
    let mut inv = Invocation::probe(program, args);
    if let Some(p) = path {
        inv.args.push(Arg::Path(p.into()));
    }
    inv
}

fn run_probe(host: &dyn Host, inv: &Invocation) -> Result<String, HostError> {
    let out = host.run(inv)?;
    if out.success() {
        Ok(out.stdout)
    } else {
        Err(HostError::with_detail(format!("`{}` failed", inv.display()), out.stderr.trim().to_string()))
    }
}

/// Why a pool's disks do not suit its RAID level.
#[derive(Debug, thiserror::Error)]
enum LayoutError {
    /// Fewer disks than the level needs.
    #[error("needs at least {min} disks, {given} given")]
    TooFew { min: usize, given: usize },
    /// `single` with several disks.
    #[error("`single` takes one disk (several would be a stripe without redundancy)")]
    SingleStripe,
}

/// The vdev word of a RAID level (`None`: a single disk), when `disks` suit it.
fn vdev(level: RaidLevel, disks: usize) -> Result<Option<&'static str>, LayoutError> {
    let (word, min) = match level {
        RaidLevel::Single => (None, 1),
        RaidLevel::Mirror => (Some("mirror"), 2),
        RaidLevel::Raidz1 => (Some("raidz1"), 3),
        RaidLevel::Raidz2 => (Some("raidz2"), 4),
        RaidLevel::Raidz3 => (Some("raidz3"), 5),
    };
    if disks < min {
        return Err(LayoutError::TooFew { min, given: disks });
    }
    if level == RaidLevel::Single && disks > 1 {
        return Err(LayoutError::SingleStripe);
    }
    Ok(word)
}

impl Module for Zfs {
    type Observed = Observed;

    fn name(&self) -> &'static str {
        "zfs"
    }

    fn observe(&self, host: &dyn Host) -> Result<Observed, HostError> {
        let mut o = Observed {
            tools: host.has_program("zpool") && host.has_program("zfs"),
            zfs_conf: host.read_text(Path::new(ZFS_CONF))?,
            arc_max: host.read_text(Path::new(ARC_MAX_PARAM))?.map(|s| s.trim().to_string()),
            update_initramfs: host.has_program("update-initramfs"),
            ..Observed::default()
        };
        if !o.tools || (self.config.pools.is_empty() && self.config.datasets.is_empty()) {
            return Ok(o);
        }
        o.pools = run_probe(host, &probe("zpool", &["list", "-H", "-o", "name"], None))?
            .lines()
            .map(str::to_string)
            .collect();
        for p in &self.config.pools {
            if o.pools.contains(&p.name) {
                let status = run_probe(host, &probe("zpool", &["status", "-P", &p.name], None))?;
                o.status.insert(p.name.clone(), status);
                continue;
            }
            for d in &p.disks {
                let mut disk = Disk { exists: host.exists(Path::new(d))?, ..Disk::default() };
                if disk.exists {
                    let lsblk = run_probe(host, &probe("lsblk", &["-nro", "NAME,TYPE"], Some(d)))?;
                    disk.partitions = lsblk
                        .lines()
                        .filter_map(|l| {
                            l.split_once(' ').filter(|(_, t)| t.trim() == "part").map(|(n, _)| n.to_string())
                        })
                        .collect();
                    let wipefs =
                        run_probe(host, &probe("wipefs", &["--no-act", "--noheadings", "--output", "TYPE"], Some(d)))?;
                    disk.signatures =
                        wipefs.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect();
                }
                o.disks.insert(d.clone(), disk);
            }
        }
        o.datasets = run_probe(host, &probe("zfs", &["list", "-H", "-o", "name", "-t", "filesystem,volume"], None))?
            .lines()
            .map(str::to_string)
            .collect();
        for ds in &self.config.datasets {
            let name = full_name(&ds.pool, &ds.name);
            let props = parse_properties(&name, ds.properties.as_deref())?;
            if !o.datasets.contains(&name) || props.is_empty() {
                continue;
            }
            let keys: Vec<&str> = props.iter().map(|(k, _)| k.as_str()).collect();
            let out =
                run_probe(host, &probe("zfs", &["get", "-H", "-o", "property,value", &keys.join(","), &name], None))?;
            let values =
                out.lines().filter_map(|l| l.split_once('\t').map(|(k, v)| (k.to_string(), v.to_string()))).collect();
            o.properties.insert(name, values);
        }
        Ok(o)
    }

    fn plan(&self, o: &Observed, _: &Resolver<'_>) -> Result<ModulePlan, HostError> {
        let mut plan = ModulePlan::new("zfs");
        let wanted = !self.config.pools.is_empty() || !self.config.datasets.is_empty();
        if wanted && !o.tools {
            plan.note("the ZFS tools are not installed (package zfsutils-linux, added by the repositories module): pools and datasets are planned on the next run");
        }
        let mut pools = o.pools.clone();
        if o.tools {
            self.plan_pools(o, &mut plan, &mut pools)?;
            self.plan_datasets(o, &mut plan, &pools)?;
        }
        if let Some(gb) = self.config.arc_max_gb {
            let bytes = u64::from(gb) * 1024 * 1024 * 1024;
            let want = format!(
                "# Managed by phoenix setup-hypervisor (zfs.arc_max_gb = {gb}).\noptions zfs zfs_arc_max={bytes}\n"
            );
            if o.zfs_conf.as_deref() != Some(want.as_str()) {
                plan.step(Step::new(
                    Action::WriteFile {
                        path: ZFS_CONF.into(),
                        contents: want,
                        attrs: Attrs::root(0o644),
                        backup: Some(backup_path(Path::new(ZFS_CONF))),
                        check: None,
                    },
                    format!("the ARC maximum at boot is not {gb} GiB"),
                ));
                if o.update_initramfs {
                    plan.step(Step::new(
                        Action::Run { command: Command::new("update-initramfs", &["-u", "-k", "all"]) },
                        "the ZFS module's options are read from the initramfs when the root is on ZFS",
                    ));
                }
            }
            match &o.arc_max {
                Some(now) if *now != bytes.to_string() => {
                    let mut command = Command::new("tee", &[]).path(ARC_MAX_PARAM);
                    command.stdin = vec![Piece::Text(format!("{bytes}\n"))];
                    plan.step(Step::new(
                        Action::Run { command },
                        format!(
                            "the running ARC maximum is {now} bytes, not {bytes} (written to the module's parameter)"
                        ),
                    ));
                }
                Some(_) => {}
                None => plan.note("the ZFS module is not loaded: the ARC maximum takes effect when it is"),
            }
        }
        Ok(plan)
    }
}

impl Zfs {
    fn plan_pools(&self, o: &Observed, plan: &mut ModulePlan, pools: &mut BTreeSet<String>) -> Result<(), HostError> {
        for p in &self.config.pools {
            if let Some(status) = o.status.get(&p.name) {
                let absent: Vec<&str> =
                    p.disks.iter().filter(|d| !status.contains(d.as_str())).map(String::as_str).collect();
                if !absent.is_empty() {
                    plan.note(format!(
                        "pool {} exists and does not hold {} (`zpool status -P`): it is left as it is, never recreated",
                        p.name,
                        absent.join(", ")
                    ));
                }
                continue;
            }
            let word = vdev(p.raid_level, p.disks.len())
                .map_err(|e| HostError::new(format!("zfs pool {}: {:?} {e}", p.name, p.raid_level)))?;
            let mut force = false;
            for d in &p.disks {
                let disk = o.disks.get(d).cloned().unwrap_or_default();
                if !disk.exists {
                    return Err(HostError::new(format!("zfs pool {}: there is no disk {d}", p.name)));
                }
                if disk.partitions.is_empty() && disk.signatures.is_empty() {
                    continue;
                }
                let mut holds = Vec::new();
                if !disk.partitions.is_empty() {
                    holds.push(format!("partitions {}", disk.partitions.join(", ")));
                }
                if !disk.signatures.is_empty() {
                    holds.push(format!("signatures {}", disk.signatures.join(", ")));
                }
                let holds = holds.join(" and ");
                if !self.allow_wipe.contains(d) {
                    return Err(HostError::with_detail(
                        format!("zfs pool {}: refusing to use {d}: it holds {holds}", p.name),
                        format!("its data would be destroyed; if that is meant, run apply again with --allow-wipe {d}"),
                    ));
                }
                plan.step(Step::new(
                    Action::Run { command: Command::new("wipefs", &["--all"]).path(d.as_str()) },
                    format!("--allow-wipe names {d}, which holds {holds}"),
                ));
                force = true;
            }
            let mut args: Vec<&str> = vec!["create"];
            if force {
                args.push("-f");
            }
            args.push(&p.name);
            args.extend(word);
            let mut command = Command::new("zpool", &args);
            for d in &p.disks {
                command = command.path(d.as_str());
            }
            plan.step(Step::new(
                Action::Run { command },
                format!("no pool {} (`zpool list`); its disks hold no partitions or signatures", p.name),
            ));
            pools.insert(p.name.clone());
        }
        Ok(())
    }

    fn plan_datasets(&self, o: &Observed, plan: &mut ModulePlan, pools: &BTreeSet<String>) -> Result<(), HostError> {
        for ds in &self.config.datasets {
            let name = full_name(&ds.pool, &ds.name);
            if ds.name.is_empty() || ds.name.starts_with('/') || ds.name.contains(char::is_whitespace) {
                return Err(HostError::new(format!("zfs dataset `{name}`: not a dataset name")));
            }
            let props = parse_properties(&name, ds.properties.as_deref())?;
            if !o.datasets.contains(&name) {
                if !pools.contains(&ds.pool) {
                    return Err(HostError::new(format!(
                        "zfs dataset {name}: there is no pool {} and the configuration does not create one",
                        ds.pool
                    )));
                }
                let mut args: Vec<String> = vec!["create".into()];
                if ds.name.contains('/') {
                    args.push("-p".into());
                }
                for (k, v) in &props {
                    args.push("-o".into());
                    args.push(format!("{k}={v}"));
                }
                args.push(name.clone());
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                plan.step(Step::new(
                    Action::Run { command: Command::new("zfs", &args) },
                    format!("no dataset {name} (`zfs list`)"),
                ));
                continue;
            }
            let now = o.properties.get(&name).cloned().unwrap_or_default();
            let differ: Vec<String> =
                props.iter().filter(|(k, v)| now.get(k) != Some(v)).map(|(k, v)| format!("{k}={v}")).collect();
            if !differ.is_empty() {
                let was: Vec<String> = props
                    .iter()
                    .filter(|(k, v)| now.get(k) != Some(v))
                    .map(|(k, _)| format!("{k}={}", now.get(k).map_or("-", String::as_str)))
                    .collect();
                let mut args: Vec<&str> = vec!["set"];
                args.extend(differ.iter().map(String::as_str));
                args.push(&name);
                plan.step(Step::new(
                    Action::Run { command: Command::new("zfs", &args) },
                    format!("{name} has {} (`zfs get`)", was.join(", ")),
                ));
            }
        }
        Ok(())
    }
}
