//! Features: what each one is, needs and takes, as its manifest (`feature.json`) says, and the
//! catalog of every feature a run knows — the built-in manifests, overridden by the user's feature
//! directories (`<config dir>/features/<name>/`). Validation checks `features` against the catalog;
//! the engine builds its feature library (manifests with their scripts) on the same catalog, so
//! `validate`, `plan` and `apply` agree on which features exist.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::check::Filesystem;
use crate::diagnostic::{Code, Diagnostic};

/// A feature's manifest, `feature.json` in its directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureManifest {
    /// The name used in `features`.
    pub name: String,
    /// One line about it.
    #[serde(default)]
    pub description: String,
    /// Keys of the guest's configuration passed to the script as parameters, untyped; a change of
    /// any of them re-runs the feature.
    #[serde(default)]
    pub params: Vec<String>,
    /// Keys of the guest's configuration passed to the script, with the type each must have;
    /// validation checks the guest's values against them. They re-run the feature as `params` do.
    #[serde(default)]
    pub parameters: Vec<Parameter>,
    /// It needs GPUs assigned to the container (`gpu_assignment`).
    #[serde(default)]
    pub needs_gpu: bool,
    /// It needs the container's `nesting` flag.
    #[serde(default)]
    pub needs_nesting: bool,
    /// Features that must run before it, in the guest itself or in the template it is cloned from.
    #[serde(default)]
    pub requires: Vec<String>,
}

impl FeatureManifest {
    /// Reads a manifest from its JSON text.
    pub fn parse(text: &str) -> Result<FeatureManifest, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Every key passed to the script: `params`, then the typed `parameters` not already named.
    pub fn parameter_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.params.iter().map(String::as_str).collect();
        for p in &self.parameters {
            if !names.contains(&p.name.as_str()) {
                names.push(&p.name);
            }
        }
        names
    }
}

/// One typed parameter of a feature: a key of the guest's configuration and its JSON type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Parameter {
    /// The guest's key.
    pub name: String,
    /// The JSON type its value must have.
    #[serde(rename = "type")]
    pub kind: ParamType,
    /// The guest must give it.
    #[serde(default)]
    pub required: bool,
    /// What it is for.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The value when nothing gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<serde_json::Value>,
    /// Keys of the configuration files the value is taken from when no `feature_settings` and no
    /// key of the guest gives it, first found wins: `hypervisor.<key>` (dotted, in
    /// `phoenix_hypervisor_config.json`, e.g. `hypervisor.nvidia_driver.version`) or
    /// `lxc.<key>` (the top of `phoenix_lxc_configs.json`, e.g. `lxc.nvidia_runfile_url`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<String>,
    /// The values it may take, when only some may (`["docker", "distribution"]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<serde_json::Value>,
}

/// The JSON type of a parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    /// A string.
    String,
    /// A whole number.
    Integer,
    /// Any number.
    Number,
    /// `true` or `false`.
    Boolean,
    /// A list.
    Array,
    /// An object.
    Object,
}

impl ParamType {
    /// Whether a (non-null) value has this type.
    pub fn matches(self, value: &serde_json::Value) -> bool {
        use serde_json::Value as V;
        match (self, value) {
            (ParamType::String, V::String(_))
            | (ParamType::Number, V::Number(_))
            | (ParamType::Boolean, V::Bool(_))
            | (ParamType::Array, V::Array(_))
            | (ParamType::Object, V::Object(_)) => true,
            (ParamType::Integer, V::Number(n)) => n.is_i64() || n.is_u64(),
            _ => false,
        }
    }

    /// The type with its article, for messages: `a string`, `an integer`.
    pub fn described(self) -> &'static str {
        match self {
            ParamType::String => "a string",
            ParamType::Integer => "an integer",
            ParamType::Number => "a number",
            ParamType::Boolean => "a boolean",
            ParamType::Array => "an array",
            ParamType::Object => "an object",
        }
    }
}

impl fmt::Display for ParamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParamType::String => "string",
            ParamType::Integer => "integer",
            ParamType::Number => "number",
            ParamType::Boolean => "boolean",
            ParamType::Array => "array",
            ParamType::Object => "object",
        })
    }
}

/// Where a feature of the catalog comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeatureSource {
    /// Built into Phoenix, with its script ([`builtin_script`]).
    BuiltIn,
    /// A feature directory holding `feature.json` and `install.sh`.
    Directory(PathBuf),
    /// Given by the program that builds the catalog (tests, embedders).
    Given,
}

/// A feature of the catalog: its manifest and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEntry {
    /// The manifest.
    pub manifest: FeatureManifest,
    /// Where it comes from.
    pub source: FeatureSource,
}

/// A built-in feature: its name, manifest and install script, in their own files under
/// `features/<name>/` so that they read as a user's would (and a user can start from a copy).
struct BuiltIn {
    name: &'static str,
    manifest: &'static str,
    script: &'static str,
}

macro_rules! built_in {
    ($($name:literal),* $(,)?) => {
        &[$(BuiltIn {
            name: $name,
            manifest: include_str!(concat!("../features/", $name, "/feature.json")),
            script: include_str!(concat!("../features/", $name, "/install.sh")),
        }),*]
    };
}

/// The built-in features. One place: validation, the engine and `phoenix features` take them
/// from here.
const BUILT_IN: &[BuiltIn] = built_in![
    "base_setup",
    "docker",
    "nvidia",
    "vllm",
    "ollama",
    "trusted_ca",
    "step_cli",
    "traefik",
    "python_api_service",
];

/// The shell functions every built-in script starts with (`features/lib.sh`): logging, the OS
/// check, idempotent package installs and file writes, and the parameters' loading.
const BUILT_IN_LIBRARY: &str = include_str!("../features/lib.sh");

/// The script a built-in feature runs: the shared functions, then its own `install.sh`.
pub fn builtin_script(name: &str) -> Option<Vec<u8>> {
    BUILT_IN.iter().find(|b| b.name == name).map(|b| [BUILT_IN_LIBRARY, b.script].concat().into_bytes())
}

/// Every feature a run knows, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    entries: BTreeMap<String, CatalogEntry>,
}

impl Catalog {
    /// The built-in features.
    pub fn builtin() -> Catalog {
        let mut catalog = Catalog::default();
        // The manifests are checked by a test; one that does not parse is left out.
        for b in BUILT_IN {
            if let Ok(manifest) = FeatureManifest::parse(b.manifest) {
                catalog.insert(manifest, FeatureSource::BuiltIn);
            }
        }
        catalog
    }

    /// The built-in features, overridden by those of `dir` (one directory per feature with
    /// `feature.json` and `install.sh`; directories without `feature.json` are not features). A
    /// missing `dir` adds nothing. Problems with the directory are returned as diagnostics.
    pub fn load(dir: &Path, fs: &dyn Filesystem) -> (Catalog, Vec<Diagnostic>) {
        let mut catalog = Catalog::builtin();
        let diags = catalog.add_dir(dir, fs);
        (catalog, diags)
    }

    /// Adds the features of a directory, each overriding a feature of the same name.
    pub fn add_dir(&mut self, dir: &Path, fs: &dyn Filesystem) -> Vec<Diagnostic> {
        let mut diags = Vec::new();
        if !fs.is_dir(dir) {
            return diags;
        }
        let mut dirs = match fs.read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                diags.push(Diagnostic::directory_error(
                    Code::Io,
                    format!("cannot read the feature directory {}: {e}", dir.display()),
                ));
                return diags;
            }
        };
        dirs.sort();
        for d in dirs {
            let manifest_path = d.join("feature.json");
            if !fs.is_file(&manifest_path) {
                continue;
            }
            let text = match fs.read_to_string(&manifest_path) {
                Ok(text) => text,
                Err(e) => {
                    diags.push(Diagnostic::directory_error(
                        Code::Io,
                        format!("cannot read {}: {e}", manifest_path.display()),
                    ));
                    continue;
                }
            };
            let manifest = match FeatureManifest::parse(&text) {
                Ok(m) => m,
                Err(e) => {
                    diags.push(
                        Diagnostic::directory_error(
                            Code::InvalidValue,
                            format!("{} is not a valid feature manifest: {e}", manifest_path.display()),
                        )
                        .hint(MANIFEST_HINT),
                    );
                    continue;
                }
            };
            if let Some(problem) = crate::feature_values::parameter_problem(&manifest) {
                diags.push(
                    Diagnostic::directory_error(
                        Code::InvalidValue,
                        format!("{} is not a valid feature manifest: {problem}", manifest_path.display()),
                    )
                    .hint(MANIFEST_HINT),
                );
                continue;
            }
            if !fs.is_file(&d.join("install.sh")) {
                diags.push(
                    Diagnostic::directory_error(
                        Code::FileNotFound,
                        format!(
                            "feature `{}` has no install script: {} does not exist",
                            manifest.name,
                            d.join("install.sh").display()
                        ),
                    )
                    .hint("a feature directory holds feature.json and install.sh, the script run inside the guest"),
                );
            }
            self.insert(manifest, FeatureSource::Directory(d));
        }
        diags
    }

    /// Adds a feature, replacing one of the same name.
    pub fn insert(&mut self, manifest: FeatureManifest, source: FeatureSource) {
        self.entries.insert(manifest.name.clone(), CatalogEntry { manifest, source });
    }

    /// The manifest of a feature.
    pub fn get(&self, name: &str) -> Option<&FeatureManifest> {
        self.entries.get(name).map(|e| &e.manifest)
    }

    /// A feature with where it comes from.
    pub fn entry(&self, name: &str) -> Option<&CatalogEntry> {
        self.entries.get(name)
    }

    /// Every feature, by name.
    pub fn entries(&self) -> impl Iterator<Item = &CatalogEntry> {
        self.entries.values()
    }

    /// Every feature's name, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }
}

const MANIFEST_HINT: &str = "a manifest holds `name`, and optionally `description`, `params` (a list of the guest's keys), \
`parameters` (a list of {\"name\", \"type\": string|integer|number|boolean|array|object, \"required\", \"default\", \
\"from\": [\"hypervisor.<key>\" or \"lxc.<key>\"], \"description\"}), \
`needs_gpu`, `needs_nesting` and `requires` (a list of features)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_manifest_parses_under_its_own_name_and_is_sound() {
        for b in BUILT_IN {
            let m = FeatureManifest::parse(b.manifest).unwrap_or_else(|e| panic!("{}: {e}", b.name));
            assert_eq!(m.name, b.name);
            assert!(!m.description.is_empty(), "{} has no description", b.name);
            assert_eq!(crate::feature_values::parameter_problem(&m), None, "{}", b.name);
            for p in &m.parameters {
                assert!(!p.description.is_empty(), "{}: parameter {} has no description", b.name, p.name);
            }
            let script = builtin_script(b.name).expect("script");
            assert!(script.starts_with(b"#!/bin/sh\n"), "{}", b.name);
        }
        let catalog = Catalog::builtin();
        let names: Vec<&str> = catalog.names().collect();
        assert_eq!(
            names,
            [
                "base_setup",
                "docker",
                "nvidia",
                "ollama",
                "python_api_service",
                "step_cli",
                "traefik",
                "trusted_ca",
                "vllm"
            ]
        );
        assert_eq!(builtin_script("nope"), None);
    }

    #[test]
    fn the_built_in_needs_are_those_validation_always_checked() {
        let c = Catalog::builtin();
        let needs = |n: &str| c.get(n).map(|m| (m.needs_gpu, m.needs_nesting, m.requires.clone()));
        assert_eq!(needs("base_setup"), Some((false, false, vec![])));
        assert_eq!(needs("docker"), Some((false, true, vec![])));
        assert_eq!(needs("nvidia"), Some((true, false, vec![])));
        assert_eq!(needs("vllm"), Some((true, false, vec!["nvidia".to_string()])));
        assert_eq!(needs("ollama"), Some((false, false, vec![])));
        assert!(c.entries().all(|e| e.source == FeatureSource::BuiltIn));
    }

    #[test]
    fn both_parameter_forms_are_read_and_typed_ones_checked() {
        let m = FeatureManifest::parse(
            r#"{"name": "x", "params": ["ports", "vllm_model"],
                "parameters": [{"name": "vllm_model", "type": "string", "required": true},
                               {"name": "vllm_port", "type": "integer"}]}"#,
        )
        .expect("manifest");
        assert_eq!(m.parameter_names(), ["ports", "vllm_model", "vllm_port"]);
        assert!(m.parameters[0].required && !m.parameters[1].required);
        let int = ParamType::Integer;
        assert!(int.matches(&serde_json::json!(8000)) && !int.matches(&serde_json::json!(1.5)));
        assert!(!int.matches(&serde_json::json!("8000")));
        assert!(ParamType::Number.matches(&serde_json::json!(1.5)));
        assert!(ParamType::Object.matches(&serde_json::json!({})) && !ParamType::Array.matches(&serde_json::json!({})));
        let bad = FeatureManifest::parse(r#"{"name": "x", "parameters": [{"name": "p", "type": "text"}]}"#);
        assert!(bad.is_err());
        assert!(FeatureManifest::parse(r#"{"name": "x", "needs_gpus": true}"#).is_err());
    }

    #[test]
    fn a_user_feature_overrides_the_built_in_one() {
        let mut c = Catalog::builtin();
        c.insert(FeatureManifest { name: "docker".into(), ..FeatureManifest::default() }, FeatureSource::Given);
        assert_eq!(c.get("docker").map(|m| m.needs_nesting), Some(false));
        assert_eq!(c.entry("docker").map(|e| &e.source), Some(&FeatureSource::Given));
        assert_eq!(c.names().count(), BUILT_IN.len());
    }
}
