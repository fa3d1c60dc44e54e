//! Proxmox storages for the ZFS datasets that ask for one (`proxmox_storage_type`), added with
//! `pvesm add` when `/etc/pve/storage.cfg` does not have them. A storage is never changed or
//! removed: one that exists with another type or pool is reported, and storages the
//! configuration does not name are left alone.
//!
//! The storage ID of a dataset is `<pool>-<dataset>` (a `/` inside the dataset's name becomes
//! `-`), as the shell version named them: dataset `lxc-disks` of pool `fastData` is the storage
//! `fastData-lxc-disks`.

use std::collections::BTreeMap;
use std::path::Path;

use phoenix_config::model::{StorageType, ZfsDataset};

use super::zfs::{full_name, parse_properties};
use crate::host::{Host, HostError};
use crate::module::{Module, ModulePlan};
use crate::step::{Action, Command, Resolver, Step};

/// Proxmox's storage configuration.
pub const STORAGE_CFG: &str = "/etc/pve/storage.cfg";

/// Content types Proxmox storages take.
const CONTENT: &[&str] = &["images", "rootdir", "vztmpl", "iso", "backup", "snippets", "import"];

/// The storage module.
pub struct Storage {
    /// The ZFS datasets (those without `proxmox_storage_type` are skipped).
    pub datasets: Vec<ZfsDataset>,
    /// `proxmox_storage_ids`: IDs the configuration uses elsewhere, checked against the host.
    pub ids: Vec<String>,
}

/// A storage of `storage.cfg`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Entry {
    /// Its type (`dir`, `zfspool`, ...).
    pub kind: String,
    /// Its properties (`pool`, `path`, `content`, ...).
    pub props: BTreeMap<String, String>,
}

/// What the host has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The storages, by ID; `None`: no `storage.cfg` (not a Proxmox host).
    pub storages: Option<BTreeMap<String, Entry>>,
    /// Whether `pvesm` is installed.
    pub pvesm: bool,
}

/// Parses `storage.cfg`: `type: id` lines, each followed by indented `key value` lines.
pub fn parse(text: &str) -> BTreeMap<String, Entry> {
    let mut out = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        if !line.starts_with(char::is_whitespace)
            && let Some((kind, id)) = line.split_once(':')
        {
            let id = id.trim().to_string();
            out.insert(id.clone(), Entry { kind: kind.trim().to_string(), props: BTreeMap::new() });
            current = Some(id);
        } else if let Some(id) = &current
            && let Some(e) = out.get_mut(id)
        {
            let t = line.trim();
            let (k, v) = t.split_once(char::is_whitespace).unwrap_or((t, ""));
            e.props.insert(k.to_string(), v.trim().to_string());
        }
    }
    out
}

/// The storage ID of a dataset: `<pool>-<dataset>`, `/` replaced by `-`.
pub fn storage_id(ds: &ZfsDataset) -> String {
    format!("{}-{}", ds.pool, ds.name.replace('/', "-"))
}

/// Where a dataset is mounted: its `mountpoint` property, else `/<pool>/<dataset>`.
pub fn mountpoint(ds: &ZfsDataset) -> Result<String, HostError> {
    let name = full_name(&ds.pool, &ds.name);
    Ok(parse_properties(&name, ds.properties.as_deref())?
        .into_iter()
        .find(|(k, _)| k == "mountpoint")
        .map_or_else(|| format!("/{name}"), |(_, v)| v))
}

impl Module for Storage {
    type Observed = Observed;

    fn name(&self) -> &'static str {
        "storage"
    }

    fn observe(&self, host: &dyn Host) -> Result<Observed, HostError> {
        Ok(Observed {
            storages: host.read_text(Path::new(STORAGE_CFG))?.as_deref().map(parse),
            pvesm: host.has_program("pvesm"),
        })
    }

    fn plan(&self, o: &Observed, _: &Resolver<'_>) -> Result<ModulePlan, HostError> {
        let mut plan = ModulePlan::new("storage");
        let Some(storages) = &o.storages else {
            plan.note(format!("there is no {STORAGE_CFG} (not a Proxmox VE host): storages are not checked"));
            return Ok(plan);
        };
        let mut derived = Vec::new();
        for ds in &self.datasets {
            let Some(kind) = ds.proxmox_storage_type else { continue };
            let id = storage_id(ds);
            let name = full_name(&ds.pool, &ds.name);
            if !id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
                return Err(HostError::new(format!(
                    "zfs dataset {name}: storage ID {id} has characters Proxmox refuses"
                )));
            }
            let content = ds.proxmox_content_type.clone().unwrap_or_else(|| "images,rootdir".to_string());
            if let Some(c) = content.split(',').find(|c| !CONTENT.contains(&c.trim())) {
                return Err(HostError::new(format!(
                    "zfs dataset {name}: content type `{c}` is not one of {}",
                    CONTENT.join(", ")
                )));
            }
            derived.push(id.clone());
            let (type_word, key, value) = match kind {
                StorageType::Zfspool => ("zfspool", "pool", name.clone()),
                StorageType::Dir => ("dir", "path", mountpoint(ds)?),
            };
            if let Some(e) = storages.get(&id) {
                if e.kind != type_word || e.props.get(key) != Some(&value) {
                    plan.note(format!(
                        "storage {id} exists as `{}` with {key} {}, not `{type_word}` with {key} {value}: it is left as it is",
                        e.kind,
                        e.props.get(key).map_or("(none)", String::as_str)
                    ));
                }
                continue;
            }
            if !o.pvesm {
                plan.note(format!("pvesm is not installed: storage {id} is not added"));
                continue;
            }
            let mut args = vec!["add", type_word, id.as_str(), if key == "pool" { "--pool" } else { "--path" }];
            args.push(&value);
            args.extend(["--content", content.as_str()]);
            if kind == StorageType::Dir {
                // Offline while the dataset is not mounted, instead of filling the directory below.
                args.extend(["--is_mountpoint", "yes"]);
            }
            plan.step(Step::new(
                Action::Run { command: Command::new("pvesm", &args) },
                format!("no storage {id} in {STORAGE_CFG} (dataset {name}, proxmox_storage_type {type_word})"),
            ));
        }
        for id in &self.ids {
            if !storages.contains_key(id) && !derived.contains(id) {
                plan.note(format!(
                    "proxmox_storage_ids names {id}, which is not in {STORAGE_CFG} and no dataset defines"
                ));
            }
        }
        Ok(plan)
    }
}
