//! Features and application scripts: where they come from, what they depend on (hashed into the
//! marker), and the contract with the scripts.
//!
//! Contract version 1: the engine stages the script and a JSON parameters file into a fresh
//! directory in the guest, runs `<dir>/run --phoenix-contract 1 --params <dir>/params.json` as an
//! argv (never through a shell string), removes the directory, and on success records the hash in
//! the guest's marker file.
//!
//! The parameters file of a feature is `{"guest": {"id", "name"}, "params": {...}}`: every
//! parameter its manifest names that something gives a value
//! ([`phoenix_config::feature_values`] says in which order), defaults included. Beside it,
//! `params.env` holds the same values as shell assignments (`PHX_<NAME>='…'`), for scripts that
//! have no JSON parser: the built-in ones read only that. That of the application script is the container's whole configuration block
//! as the typed model serialises it, with `guest` (`{"id", "name"}`) added, and `ports` and
//! `services` as before: the shell version's scripts read `.vllm_engine_config` or `.ports` from
//! it unchanged. The script itself is found by [`phoenix_config::scripts::find_script`], as
//! validation finds it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use phoenix_config::RealFilesystem;
use phoenix_config::estate::{Estate, Guest, GuestSpec};
use phoenix_config::feature_values::{FeatureValues, guest_block, shell_env};
pub use phoenix_config::features::FeatureManifest;
use phoenix_config::features::{Catalog, FeatureSource, builtin_script};
use phoenix_config::scripts::{ScriptNotFound, find_script};
use sha2::{Digest, Sha256};

/// The version of the calling convention between the engine and scripts; part of every hash, so
/// a new convention re-runs everything once.
pub const CONTRACT_VERSION: u32 = 1;

pub use phoenix_backend::inside::MARKERS_PATH;

/// A feature with its script, as given to [`FeatureLibrary::new`].
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
    /// A feature directory has problems (a manifest that is not valid, a missing script).
    #[error("the features in {dir} cannot be used: {problems}")]
    Features {
        /// The directory.
        dir: PathBuf,
        /// What is wrong, one problem per line.
        problems: String,
    },
    /// A guest's application script is in none of the places it is looked for.
    #[error("guest {guest}: {missing}")]
    ScriptNotFound {
        /// The guest.
        guest: u32,
        /// The script and every place looked.
        missing: ScriptNotFound,
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

/// The features available to the engine: the catalog's manifests (built-in ones, overridden by
/// the user's), and their scripts. A feature given without a script (a test's, an embedder's) has
/// its job prepared, and fails when it runs, saying so.
#[derive(Debug, Clone)]
pub struct FeatureLibrary {
    catalog: Catalog,
    scripts: BTreeMap<String, Script>,
}

/// A script, shared by the jobs that run it, with the start of their hash (the contract version
/// and the script) computed once: a feature run by a thousand guests is hashed once.
#[derive(Clone)]
pub struct Script {
    bytes: Arc<[u8]>,
    hashed: Sha256,
}

impl Script {
    /// A script from its bytes.
    pub fn new(bytes: Vec<u8>) -> Script {
        Script { hashed: hash_start(Some(&bytes)), bytes: bytes.into() }
    }
}

impl std::fmt::Debug for Script {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Script({} bytes)", self.bytes.len())
    }
}

/// A job's hash up to its parameters: the contract version, then the script (its length and
/// bytes) or, for none, a length no script has.
fn hash_start(script: Option<&[u8]>) -> Sha256 {
    let mut h = Sha256::new();
    h.update(CONTRACT_VERSION.to_le_bytes());
    match script {
        Some(script) => {
            h.update((script.len() as u64).to_le_bytes());
            h.update(script);
        }
        None => h.update(u64::MAX.to_le_bytes()),
    }
    h
}

impl Default for FeatureLibrary {
    /// The built-in features only.
    fn default() -> FeatureLibrary {
        let catalog = Catalog::builtin();
        let scripts = catalog.names().filter_map(|n| Some((n.to_string(), Script::new(builtin_script(n)?)))).collect();
        FeatureLibrary { catalog, scripts }
    }
}

impl FeatureLibrary {
    /// The built-in features, overridden by the given ones.
    pub fn new(features: impl IntoIterator<Item = Feature>) -> FeatureLibrary {
        let mut library = FeatureLibrary::default();
        for f in features {
            library.scripts.insert(f.manifest.name.clone(), Script::new(f.script));
            library.catalog.insert(f.manifest, FeatureSource::Given);
        }
        library
    }

    /// The features of a catalog, with their scripts: a built-in one's, or `install.sh` of a
    /// feature read from a directory.
    pub fn from_catalog(catalog: Catalog) -> Result<FeatureLibrary, CustomizeError> {
        let mut scripts = BTreeMap::new();
        for entry in catalog.entries() {
            let name = entry.manifest.name.clone();
            match &entry.source {
                FeatureSource::Directory(dir) => {
                    let path = dir.join("install.sh");
                    let script = std::fs::read(&path).map_err(|source| CustomizeError::Read { path, source })?;
                    scripts.insert(name, Script::new(script));
                }
                FeatureSource::BuiltIn => {
                    if let Some(script) = builtin_script(&name) {
                        scripts.insert(name, Script::new(script));
                    }
                }
                FeatureSource::Given => {}
            }
        }
        Ok(FeatureLibrary { catalog, scripts })
    }

    /// The built-in features, overridden by those of a directory holding one directory per
    /// feature, each with `feature.json` and `install.sh`.
    pub fn load(dir: &Path) -> Result<FeatureLibrary, CustomizeError> {
        if !dir.is_dir() {
            return Err(CustomizeError::Read {
                path: dir.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such directory"),
            });
        }
        let (catalog, problems) = Catalog::load(dir, &RealFilesystem);
        if !problems.is_empty() {
            let problems = problems.iter().map(|d| d.message.as_str()).collect::<Vec<_>>().join("\n");
            return Err(CustomizeError::Features { dir: dir.to_path_buf(), problems });
        }
        FeatureLibrary::from_catalog(catalog)
    }

    /// Every feature's manifest, for validation.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// A feature's manifest.
    pub fn manifest(&self, name: &str) -> Option<&FeatureManifest> {
        self.catalog.get(name)
    }

    /// A feature's script; none for a feature given without one.
    pub fn script(&self, name: &str) -> Option<&[u8]> {
        self.scripts.get(name).map(|s| &s.bytes[..])
    }
}

/// A file staged beside the parameters file (the gateway's configuration, its certificate and
/// key). Its content is never shown: its `Debug` gives its name, mode and size.
#[derive(Clone, PartialEq, Eq)]
pub struct StagedFile {
    /// Its name in the staging directory.
    pub name: String,
    /// Its content.
    pub content: Vec<u8>,
    /// Its mode.
    pub mode: u32,
}

impl std::fmt::Debug for StagedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StagedFile({}, {:o}, {} bytes)", self.name, self.mode, self.content.len())
    }
}

/// One customization ready to run: what to stage and the hash to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// `feature:<name>` or `script`.
    pub key: String,
    /// The script; none for a feature given without one (running it fails).
    pub script: Option<Arc<[u8]>>,
    /// The parameters file's content.
    pub params: serde_json::Value,
    /// Hash of contract version, script and parameters.
    pub hash: String,
    /// Files staged beside the parameters file; not part of the hash (what they hold that
    /// matters is in the parameters, or is a secret that must not be).
    pub files: Vec<StagedFile>,
}

impl Job {
    /// A job, with its hash.
    pub fn new(key: String, script: Option<Vec<u8>>, params: serde_json::Value) -> Job {
        Job::running(key, script.map(Script::new).as_ref(), params)
    }

    /// A job of a script many jobs share, with its hash: the same as [`Job::new`] gives.
    pub fn running(key: String, script: Option<&Script>, params: serde_json::Value) -> Job {
        let mut h = script.map_or_else(|| hash_start(None), |s| s.hashed.clone());
        h.update(serde_json::to_vec(&params).unwrap_or_default());
        let hash = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Job { key, script: script.map(|s| Arc::clone(&s.bytes)), params, hash, files: Vec::new() }
    }
}

/// The customizations of every guest, prepared once per run: features from the library, the
/// application script from the configuration directory.
pub fn prepare(
    estate: &Estate,
    library: &FeatureLibrary,
    config_dir: &Path,
) -> Result<BTreeMap<u32, Vec<Job>>, CustomizeError> {
    let values = FeatureValues::new(estate);
    estate.guests.values().map(|g| Ok((g.id, guest_jobs(g, library, &values, config_dir)?))).collect()
}

fn guest_jobs(
    g: &Guest,
    library: &FeatureLibrary,
    values: &FeatureValues,
    config_dir: &Path,
) -> Result<Vec<Job>, CustomizeError> {
    let whole = guest_block(g);
    let guest = serde_json::json!({ "id": g.id, "name": g.name() });
    let mut jobs = Vec::new();
    for name in g.features() {
        let manifest =
            library.manifest(name).ok_or_else(|| CustomizeError::UnknownFeature { guest: g.id, name: name.clone() })?;
        let resolved = values.resolve(manifest, &whole);
        let params: serde_json::Map<String, serde_json::Value> =
            resolved.iter().map(|r| (r.name.clone(), r.value.clone())).collect();
        let mut job = Job::running(
            format!("feature:{name}"),
            library.scripts.get(name.as_str()),
            serde_json::json!({ "guest": guest, "params": params }),
        );
        job.files.push(StagedFile {
            name: "params.env".into(),
            content: shell_env(manifest, g.id, g.name(), &resolved).into_bytes(),
            mode: 0o600,
        });
        jobs.push(job);
    }
    if let GuestSpec::Lxc(c) = &g.spec
        && let Some(script) = &c.application_script
    {
        let path = find_script(config_dir, script, &RealFilesystem)
            .map_err(|missing| CustomizeError::ScriptNotFound { guest: g.id, missing })?;
        let bytes = std::fs::read(&path).map_err(|source| CustomizeError::Read { path: path.clone(), source })?;
        let mut params = serde_json::Map::new();
        params.insert("guest".into(), guest);
        params.insert("ports".into(), serde_json::json!(c.ports));
        params.insert("services".into(), serde_json::json!(c.services));
        // The whole block, as the shell's scripts read it (`.vllm_engine_config`, `.ports`, ...).
        if let serde_json::Value::Object(block) = whole {
            for (k, v) in block {
                params.entry(k).or_insert(v);
            }
        }
        jobs.push(Job::new("script".to_string(), Some(bytes), serde_json::Value::Object(params)));
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

#[cfg(test)]
mod tests {
    use super::*;

    const HV: &str = r#"{"backend": {"type": "lxc", "bridges": {"vmbr0": {"address": "10.9.0.1/24"}}, "storage": {"local": "/srv/local"}}}"#;

    /// A directory laid out as the shell version's: `etc/` with the files, the script in `script_dir`.
    fn shell_layout(script_dir: &str) -> (tempfile::TempDir, Estate) {
        let tmp = tempfile::tempdir().expect("tmp");
        let etc = tmp.path().join("etc");
        let scripts = tmp.path().join(script_dir);
        std::fs::create_dir_all(&etc).expect("mkdir");
        std::fs::create_dir_all(&scripts).expect("mkdir");
        std::fs::write(scripts.join("phoenix_hypervisor_lxc_950.sh"), "#!/bin/sh\necho 950\n").expect("write");
        std::fs::write(etc.join("phoenix_hypervisor_config.json"), HV).expect("write");
        std::fs::write(
            etc.join("phoenix_lxc_configs.json"),
            r#"{"lxc_configs": {"950": {"name": "vllm-qwen", "memory_mb": 2048, "cores": 2, "storage_pool": "local",
                "storage_size_gb": 10, "template": "local:vztmpl/x.tar.zst", "unprivileged": true,
                "network_config": {"name": "eth0", "bridge": "vmbr0", "ip": "10.9.0.50/24", "gw": "10.9.0.1"},
                "ports": ["8000:8000"], "services": [{"name": "qwen", "port": 8000, "path": "/v1/qwen/"}],
                "tags": ["ai"], "application_script": "phoenix_hypervisor_lxc_950.sh"}}}"#,
        )
        .expect("write");
        let fs = RealFilesystem;
        let (sources, early) = phoenix_config::load(&etc, &fs);
        let v = phoenix_config::validate(&sources, early, &fs);
        let estate = v.estate.clone().unwrap_or_else(|| panic!("invalid: {:#?}", v.reports));
        (tmp, estate)
    }

    #[test]
    fn the_application_script_is_found_in_the_shell_layout_and_gets_the_whole_block() {
        for dir in ["bin", "bin/lxc_setup", "etc"] {
            let (tmp, estate) = shell_layout(dir);
            let jobs = prepare(&estate, &FeatureLibrary::default(), &tmp.path().join("etc")).expect("prepare");
            let job = jobs[&950].iter().find(|j| j.key == "script").expect("script job");
            assert_eq!(job.script.as_deref(), Some(&b"#!/bin/sh\necho 950\n"[..]), "from {dir}");
            let p = &job.params;
            // What scripts got before, unchanged.
            assert_eq!(p["guest"], serde_json::json!({"id": 950, "name": "vllm-qwen"}));
            assert_eq!(p["ports"], serde_json::json!(["8000:8000"]));
            assert_eq!(p["services"][0]["path"], "/v1/qwen/");
            // And the container's whole block, as the model writes it.
            assert_eq!(p["memory_mb"], 2048);
            assert_eq!(p["network_config"]["ip"], "10.9.0.50/24");
            assert_eq!(p["tags"], serde_json::json!(["ai"]));
            assert_eq!(p["application_script"], "phoenix_hypervisor_lxc_950.sh");
            let whole = serde_json::to_value(estate.guests[&950].as_lxc().expect("container")).expect("json");
            for (k, v) in whole.as_object().expect("object") {
                assert_eq!(&p[k], v, "key {k}");
            }
        }
    }

    #[test]
    fn a_shared_script_hashes_as_a_job_of_its_own_and_as_the_markers_of_earlier_versions_do() {
        let params = serde_json::json!({"guest": {"id": 950, "name": "x"}, "params": {"a": 1}});
        let script = Script::new(b"#!/bin/sh\necho hi\n".to_vec());
        let shared = Job::running("feature:x".into(), Some(&script), params.clone());
        let own = Job::new("feature:x".into(), Some(b"#!/bin/sh\necho hi\n".to_vec()), params.clone());
        assert_eq!(shared.hash, own.hash);
        // The hash is what guests' markers hold (SHA-256 of the contract version, the script's
        // length and bytes, and the parameters' JSON): a new one would run every customization again.
        assert_eq!(own.hash, "6d154d09e2e5d38f6da891b7aea170043bbb0c229db3faa83040e2eab58bdb9e");
        assert_ne!(Job::new("feature:x".into(), None, params).hash, own.hash);
    }

    #[test]
    fn a_change_anywhere_in_the_block_changes_the_script_hash() {
        let (tmp, estate) = shell_layout("bin");
        let etc = tmp.path().join("etc");
        let before = prepare(&estate, &FeatureLibrary::default(), &etc).expect("prepare")[&950][0].hash.clone();
        let mut changed = estate.clone();
        if let Some(GuestSpec::Lxc(c)) = changed.guests.get_mut(&950).map(|g| &mut g.spec) {
            c.memory_mb = 4096;
        }
        let after = prepare(&changed, &FeatureLibrary::default(), &etc).expect("prepare")[&950][0].hash.clone();
        assert_ne!(before, after);
    }

    #[test]
    fn a_missing_script_names_every_place_looked() {
        let (tmp, estate) = shell_layout("bin");
        let etc = tmp.path().join("etc");
        std::fs::remove_file(tmp.path().join("bin/phoenix_hypervisor_lxc_950.sh")).expect("rm");
        let err = prepare(&estate, &FeatureLibrary::default(), &etc).expect_err("missing script");
        let text = err.to_string();
        for place in [
            "etc/phoenix_hypervisor_lxc_950.sh",
            "bin/phoenix_hypervisor_lxc_950.sh",
            "bin/lxc_setup/phoenix_hypervisor_lxc_950.sh",
        ] {
            let full = tmp.path().join(place);
            assert!(text.contains(&full.display().to_string()), "{place} missing from: {text}");
        }
        assert!(
            text.starts_with("guest 950: application script \"phoenix_hypervisor_lxc_950.sh\" does not exist"),
            "{text}"
        );
    }

    #[test]
    fn a_feature_gets_its_untyped_and_typed_parameters() {
        let (tmp, estate) = shell_layout("bin");
        let manifest = FeatureManifest::parse(
            r#"{"name": "trusted_ca", "params": ["ports"],
                "parameters": [{"name": "tags", "type": "array"}, {"name": "memory_mb", "type": "integer"}]}"#,
        )
        .expect("manifest");
        let lib = FeatureLibrary::new([Feature { manifest, script: b"#!/bin/sh\n".to_vec() }]);
        let mut estate = estate;
        if let Some(GuestSpec::Lxc(c)) = estate.guests.get_mut(&950).map(|g| &mut g.spec) {
            c.features = vec!["trusted_ca".into()];
        }
        let jobs = prepare(&estate, &lib, &tmp.path().join("etc")).expect("prepare");
        let job = jobs[&950].iter().find(|j| j.key == "feature:trusted_ca").expect("feature job");
        assert_eq!(
            job.params["params"],
            serde_json::json!({"ports": ["8000:8000"], "tags": ["ai"], "memory_mb": 2048})
        );
        // The same values for the shell, beside the parameters file.
        let env = job.files.iter().find(|f| f.name == "params.env").expect("params.env");
        let expected = [
            "PHX_FEATURE='trusted_ca'",
            "PHX_GUEST_ID='950'",
            "PHX_GUEST_NAME='vllm-qwen'",
            r"PHX_PORTS=''\''8000:8000'\'''",
            r"PHX_TAGS=''\''ai'\'''",
            "PHX_MEMORY_MB='2048'",
        ];
        assert_eq!(String::from_utf8_lossy(&env.content).lines().collect::<Vec<_>>(), expected);
    }

    #[test]
    fn a_feature_directory_overrides_and_adds_to_the_built_in_features() {
        let tmp = tempfile::tempdir().expect("tmp");
        let write = |rel: &str, text: &str| {
            let p = tmp.path().join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, text).expect("write");
        };
        write("docker/feature.json", r#"{"name": "docker", "description": "mine"}"#);
        write("docker/install.sh", "#!/bin/sh\n# my docker\n");
        write("trusted_ca/feature.json", r#"{"name": "trusted_ca"}"#);
        write("trusted_ca/install.sh", "#!/bin/sh\n# ca\n");
        let lib = FeatureLibrary::load(tmp.path()).expect("load");
        assert_eq!(lib.script("docker"), Some(&b"#!/bin/sh\n# my docker\n"[..]));
        assert_eq!(lib.manifest("docker").map(|m| m.needs_nesting), Some(false));
        assert!(lib.script("trusted_ca").is_some());
        // A built-in feature comes with its script: the shared functions, then its own.
        let builtin = lib.script("base_setup").expect("built-in script");
        assert!(builtin.starts_with(b"#!/bin/sh\n") && String::from_utf8_lossy(builtin).contains("require_os"));

        std::fs::remove_file(tmp.path().join("trusted_ca/install.sh")).expect("rm");
        let err = FeatureLibrary::load(tmp.path()).expect_err("no install.sh");
        assert!(err.to_string().contains("feature `trusted_ca` has no install script"), "{err}");
    }
}
