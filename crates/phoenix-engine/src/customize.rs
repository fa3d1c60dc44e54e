//! Features and application scripts: where they come from, what they depend on (hashed into the
//! marker), and the contract with the scripts.
//!
//! Contract version 1: the engine stages the script and a JSON parameters file into a fresh
//! directory in the guest, runs `<dir>/run --phoenix-contract 1 --params <dir>/params.json` as an
//! argv (never through a shell string), removes the directory, and on success records the hash in
//! the guest's marker file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use phoenix_config::estate::{Estate, Guest, GuestSpec};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The version of the calling convention between the engine and scripts; part of every hash, so
/// a new convention re-runs everything once.
pub const CONTRACT_VERSION: u32 = 1;

/// Where the markers live inside a guest: JSON, customization key → hash.
pub const MARKERS_PATH: &str = "/var/lib/phoenix/markers.json";

/// A feature's manifest, `feature.json` in its directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureManifest {
    /// The name used in `features`.
    pub name: String,
    /// One line about it.
    #[serde(default)]
    pub description: String,
    /// Keys of the guest's configuration passed to the script as parameters; a change of any of
    /// them re-runs the feature.
    #[serde(default)]
    pub params: Vec<String>,
}

/// A feature: its manifest and its script (`install.sh`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feature {
    /// The manifest.
    pub manifest: FeatureManifest,
    /// The script's bytes.
    pub script: Vec<u8>,
}

/// Why a customization cannot be prepared.
#[derive(Debug, thiserror::Error)]
pub enum CustomizeError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A manifest is not valid.
    #[error("{path} is not a valid feature manifest: {source}")]
    Manifest {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// A guest names a feature the library does not have.
    #[error("guest {guest} uses feature `{name}`, which the feature library does not provide")]
    UnknownFeature {
        /// The guest.
        guest: u32,
        /// The feature.
        name: String,
    },
}

/// The features available to the engine.
#[derive(Debug, Clone, Default)]
pub struct FeatureLibrary {
    features: BTreeMap<String, Feature>,
}

impl FeatureLibrary {
    /// A library of the given features.
    pub fn new(features: impl IntoIterator<Item = Feature>) -> FeatureLibrary {
        FeatureLibrary { features: features.into_iter().map(|f| (f.manifest.name.clone(), f)).collect() }
    }

    /// Reads a directory holding one directory per feature, each with `feature.json` and
    /// `install.sh`.
    pub fn load(dir: &Path) -> Result<FeatureLibrary, CustomizeError> {
        let read_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CustomizeError::Read { path, source }
        };
        let mut features = Vec::new();
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(read_err(dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("feature.json").is_file())
            .collect();
        entries.sort();
        for d in entries {
            let manifest_path = d.join("feature.json");
            let text = std::fs::read_to_string(&manifest_path).map_err(read_err(&manifest_path))?;
            let manifest = serde_json::from_str(&text)
                .map_err(|source| CustomizeError::Manifest { path: manifest_path.clone(), source })?;
            let script_path = d.join("install.sh");
            let script = std::fs::read(&script_path).map_err(read_err(&script_path))?;
            features.push(Feature { manifest, script });
        }
        Ok(FeatureLibrary::new(features))
    }

    /// A feature by name.
    pub fn get(&self, name: &str) -> Option<&Feature> {
        self.features.get(name)
    }
}

/// One customization ready to run: what to stage and the hash to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// `feature:<name>` or `script`.
    pub key: String,
    /// The script.
    pub script: Vec<u8>,
    /// The parameters file's content.
    pub params: serde_json::Value,
    /// Hash of contract version, script and parameters.
    pub hash: String,
}

impl Job {
    fn new(key: String, script: Vec<u8>, params: serde_json::Value) -> Job {
        let mut h = Sha256::new();
        h.update(CONTRACT_VERSION.to_le_bytes());
        h.update((script.len() as u64).to_le_bytes());
        h.update(&script);
        h.update(serde_json::to_vec(&params).unwrap_or_default());
        let hash = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Job { key, script, params, hash }
    }
}

/// The customizations of every guest, prepared once per run: features from the library, the
/// application script from the configuration directory.
pub fn prepare(
    estate: &Estate,
    library: &FeatureLibrary,
    config_dir: &Path,
) -> Result<BTreeMap<u32, Vec<Job>>, CustomizeError> {
    estate.guests.values().map(|g| Ok((g.id, guest_jobs(g, library, config_dir)?))).collect()
}

fn guest_jobs(g: &Guest, library: &FeatureLibrary, config_dir: &Path) -> Result<Vec<Job>, CustomizeError> {
    let whole = match &g.spec {
        GuestSpec::Lxc(c) => serde_json::to_value(c),
        GuestSpec::Vm(v) => serde_json::to_value(v),
    }
    .unwrap_or_default();
    let guest = serde_json::json!({ "id": g.id, "name": g.name() });
    let mut jobs = Vec::new();
    for name in g.features() {
        let f = library.get(name).ok_or_else(|| CustomizeError::UnknownFeature { guest: g.id, name: name.clone() })?;
        let params: serde_json::Map<String, serde_json::Value> =
            f.manifest.params.iter().filter_map(|k| whole.get(k).map(|v| (k.clone(), v.clone()))).collect();
        jobs.push(Job::new(
            format!("feature:{name}"),
            f.script.clone(),
            serde_json::json!({ "guest": guest, "params": params }),
        ));
    }
    if let GuestSpec::Lxc(c) = &g.spec
        && let Some(script) = &c.application_script
    {
        let path = if Path::new(script).is_absolute() { PathBuf::from(script) } else { config_dir.join(script) };
        let bytes = std::fs::read(&path).map_err(|source| CustomizeError::Read { path: path.clone(), source })?;
        let params = serde_json::json!({ "guest": guest, "ports": c.ports, "services": c.services });
        jobs.push(Job::new("script".to_string(), bytes, params));
    }
    Ok(jobs)
}

/// The desired state's view of the jobs: keys and hashes.
pub fn customizations(jobs: &BTreeMap<u32, Vec<Job>>, guest: &Guest) -> Vec<phoenix_plan::Customization> {
    jobs.get(&guest.id)
        .into_iter()
        .flatten()
        .map(|j| phoenix_plan::Customization { key: j.key.clone(), hash: j.hash.clone() })
        .collect()
}
