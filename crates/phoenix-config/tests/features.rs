//! Validation against the feature catalog: the built-in features, the user's feature directories
//! overriding and adding to them, did-you-mean over what the catalog has, and typed parameters.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use phoenix_config::diagnostic::Code;
use phoenix_config::features::Catalog;
use phoenix_config::{Filesystem, Report, Severity, Validation, load, validate, validate_with};

/// An in-memory configuration directory at `/cfg`, with its feature directories under
/// `/cfg/features`.
#[derive(Default)]
struct MemFs {
    files: BTreeMap<PathBuf, String>,
}

impl MemFs {
    fn new(lxc: &str) -> MemFs {
        let mut fs = MemFs::default();
        fs.add("phoenix_hypervisor_config.json", HV);
        fs.add("phoenix_lxc_configs.json", lxc);
        fs
    }

    fn add(&mut self, rel: &str, text: &str) -> &mut MemFs {
        self.files.insert(Path::new("/cfg").join(rel), text.to_string());
        self
    }

    /// A feature directory with its manifest and script.
    fn feature(&mut self, name: &str, manifest: &str) -> &mut MemFs {
        self.add(&format!("features/{name}/feature.json"), manifest);
        self.add(&format!("features/{name}/install.sh"), "#!/bin/sh\n")
    }
}

impl Filesystem for MemFs {
    fn read_to_string(&self, path: &Path) -> io::Result<String> {
        self.files.get(path).cloned().ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
    fn is_file(&self, path: &Path) -> bool {
        self.files.contains_key(path)
    }
    fn is_dir(&self, path: &Path) -> bool {
        self.files.keys().any(|f| f.starts_with(path) && f != path)
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        let mut children: Vec<PathBuf> = self
            .files
            .keys()
            .filter_map(|f| f.strip_prefix(path).ok()?.components().next().map(|c| path.join(c)))
            .collect();
        children.dedup();
        Ok(children)
    }
}

const HV: &str = r#"{"backend": {"type": "lxc", "bridges": {"vmbr0": {"address": "10.9.0.1/24"}}, "storage": {"local": "/srv/local"}}}"#;

fn lxc_950(extra: &str) -> String {
    format!(
        r#"{{"lxc_configs": {{"950": {{"name": "ca-client", "memory_mb": 1024, "cores": 1, "storage_pool": "local",
            "storage_size_gb": 10, "template": "local:vztmpl/x.tar.zst", "unprivileged": true,
            "network_config": {{"name": "eth0", "bridge": "vmbr0", "ip": "10.9.0.50/24", "gw": "10.9.0.1"}} {extra}}}}}}}"#
    )
}

/// Validates `/cfg` with the catalog the command line builds: built-ins and `/cfg/features`.
fn run(fs: &MemFs) -> Validation {
    let (sources, mut early) = load(Path::new("/cfg"), fs);
    let (catalog, problems) = Catalog::load(Path::new("/cfg/features"), fs);
    early.extend(problems);
    validate_with(&sources, early, fs, &catalog)
}

fn errors(v: &Validation) -> Vec<&Report> {
    v.reports.iter().filter(|r| r.severity == Severity::Error).collect()
}

#[test]
fn a_users_feature_directory_makes_its_feature_known() {
    let mut fs = MemFs::new(&lxc_950(r#", "features": ["base_setup", "site_ca"]"#));
    // Without the directory, only the built-in features are known.
    let v = run(&fs);
    let e = errors(&v);
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_eq!(e[0].code, Code::UnknownFeature);
    assert_eq!(e[0].message, "no feature library provides `site_ca`");
    assert!(e[0].hint.as_deref().is_some_and(|h| h.contains("features/site_ca/")), "{:?}", e[0].hint);

    fs.feature("site_ca", r#"{"name": "site_ca", "description": "The lab CA.", "requires": ["base_setup"]}"#);
    let v = run(&fs);
    assert!(v.reports.is_empty(), "{:#?}", v.reports);
    assert!(v.estate.is_some());
}

#[test]
fn an_unknown_feature_is_matched_against_the_catalog_names() {
    let mut fs = MemFs::new(&lxc_950(r#", "features": ["site-ca"]"#));
    fs.feature("site_ca", r#"{"name": "site_ca"}"#);
    let v = run(&fs);
    let e = errors(&v);
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_eq!(e[0].code, Code::UnknownFeature);
    assert_eq!(e[0].hint.as_deref(), Some("did you mean `site_ca`?"));
    assert_eq!(e[0].location.as_ref().map(|l| l.path.as_str()), Some("$.lxc_configs[\"950\"].features[0]"));
}

#[test]
fn a_users_feature_overrides_the_built_in_one_of_that_name() {
    let fs = MemFs::new(&lxc_950(r#", "features": ["docker"]"#));
    let v = run(&fs);
    // The built-in docker needs nesting: nothing says, so Phoenix turns it on and warns.
    assert!(errors(&v).is_empty(), "{:#?}", v.reports);
    assert_eq!(v.reports.iter().map(|r| r.code).collect::<Vec<_>>(), [Code::FeatureRequirement]);
    // A docker of one's own that does not need nesting (a rootless build, say).
    let mut fs = fs;
    fs.feature("docker", r#"{"name": "docker", "needs_nesting": false}"#);
    assert!(run(&fs).reports.is_empty(), "{:#?}", run(&fs).reports);
}

#[test]
fn typed_parameters_are_checked_against_the_guests_values() {
    let manifest = r#"{"name": "vllm_tuned", "parameters": [
        {"name": "vllm_model", "type": "string", "required": true},
        {"name": "vllm_port", "type": "string"},
        {"name": "vllm_args", "type": "array"}]}"#;
    let mut fs = MemFs::new(&lxc_950(
        r#", "features": ["vllm_tuned"], "vllm_model": "Qwen/Qwen2.5-7B-Instruct", "vllm_port": 8000, "vllm_args": ["--x"]"#,
    ));
    fs.feature("vllm_tuned", manifest);
    let v = run(&fs);
    let e = errors(&v);
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_eq!(e[0].code, Code::WrongType);
    assert_eq!(e[0].location.as_ref().map(|l| l.path.as_str()), Some("$.lxc_configs[\"950\"].vllm_port"));
    assert_eq!(e[0].message, "`vllm_port` is an integer, but feature `vllm_tuned` takes a string");
    assert_eq!(e[0].hint.as_deref(), Some("feature `vllm_tuned` declares `vllm_port` as string in its feature.json"));
    // The line shown is the one with the value.
    assert!(e[0].location.as_ref().is_some_and(|l| l.source_line.contains("\"vllm_port\": 8000")));

    // A value of the declared type is accepted (the vLLM settings of a guest without the
    // built-in `vllm` are warned about, which is not this check's business).
    let ok = r#"{"name": "vllm_tuned", "parameters": [{"name": "vllm_port", "type": "integer"}]}"#;
    fs.feature("vllm_tuned", ok);
    let v = run(&fs);
    assert!(errors(&v).is_empty(), "{:#?}", v.reports);
    assert!(v.estate.is_some());
}

#[test]
fn a_required_parameter_the_guest_does_not_give_is_missing() {
    let manifest = r#"{"name": "vllm_tuned", "parameters": [{"name": "vllm_model", "type": "string", "required": true},
        {"name": "ca_url", "type": "string", "required": true}]}"#;
    let mut fs = MemFs::new(&lxc_950(r#", "features": ["vllm_tuned"]"#));
    fs.feature("vllm_tuned", manifest);
    let v = run(&fs);
    let e = errors(&v);
    assert_eq!(e.iter().map(|r| r.code).collect::<Vec<_>>(), [Code::MissingField, Code::MissingField], "{e:#?}");
    assert_eq!(e[0].message, "feature `vllm_tuned` needs `vllm_model`");
    assert_eq!(e[0].location.as_ref().map(|l| l.path.as_str()), Some("$.lxc_configs[\"950\"]"));
    assert!(e[0].hint.as_deref().is_some_and(|h| h.starts_with("add \"vllm_model\": a string")), "{:?}", e[0].hint);
    assert_eq!(e[0].notes[0].location.path, "$.lxc_configs[\"950\"].features[0]");
    // A key no container has is given in `feature_settings`: the hint says so.
    let hint = e[1].hint.as_deref().unwrap_or_default();
    assert!(
        hint.starts_with("give it (a string) in \"feature_settings\": {\"vllm_tuned\": {\"ca_url\": …}}"),
        "{hint}"
    );
    // And given there, or in the hypervisor file's, it is no longer missing.
    let mut fs = MemFs::new(&lxc_950(
        r#", "features": ["vllm_tuned"], "vllm_model": "m", "feature_settings": {"vllm_tuned": {"ca_url": "https://ca"}}"#,
    ));
    fs.feature("vllm_tuned", manifest);
    assert!(errors(&run(&fs)).is_empty());
}

#[test]
fn problems_with_a_feature_directory_are_reported() {
    let mut fs = MemFs::new(&lxc_950(""));
    fs.add("features/broken/feature.json", r#"{"name": "broken", "needs_gpus": true}"#);
    fs.add("features/broken/install.sh", "#!/bin/sh\n");
    fs.add("features/noscript/feature.json", r#"{"name": "noscript"}"#);
    fs.add("features/notes/README", "not a feature");
    let v = run(&fs);
    let e = errors(&v);
    assert_eq!(e.len(), 2, "{e:#?}");
    assert_eq!(e[0].code, Code::InvalidValue);
    assert!(
        e[0].message.starts_with(
            "/cfg/features/broken/feature.json is not a valid feature manifest: unknown field `needs_gpus`"
        ),
        "{}",
        e[0].message
    );
    assert_eq!(e[1].code, Code::FileNotFound);
    assert!(e[1].message.contains("feature `noscript` has no install script"), "{}", e[1].message);
    assert!(v.estate.is_none());
}

#[test]
fn validate_alone_knows_the_built_in_features() {
    let fs = MemFs::new(&lxc_950(r#", "features": ["base_setup", "ollama"]"#));
    let (sources, early) = load(Path::new("/cfg"), &fs);
    let v = validate(&sources, early, &fs);
    assert!(v.reports.is_empty(), "{:#?}", v.reports);
}

#[test]
fn feature_settings_name_features_and_parameters_with_values_that_fit() {
    let hv = r#"{"backend": {"type": "lxc", "bridges": {"vmbr0": {"address": "10.9.0.1/24"}}, "storage": {"local": "/srv/local"}},
        "feature_settings": {"base_setup": {"apt_proxy": 3142, "unattended_upgrades": true}, "dokcer": {}}}"#;
    let mut fs = MemFs::new(&lxc_950(
        r#", "features": ["base_setup"], "feature_settings": {"base_setup": {"loacle": "de_DE.UTF-8", "packages": ["curl"]},
            "ollama": {}}"#,
    ));
    fs.add("phoenix_hypervisor_config.json", hv);
    let v = run(&fs);
    let found: Vec<(Severity, Code, &str, &str)> = v
        .reports
        .iter()
        .filter(|r| r.location.as_ref().is_some_and(|l| l.path.contains("feature_settings")))
        .map(|r| (r.severity, r.code, r.location.as_ref().map_or("", |l| l.path.as_str()), r.message.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            (
                Severity::Error,
                Code::WrongType,
                "$.feature_settings.base_setup.apt_proxy",
                "`apt_proxy` is an integer, but feature `base_setup` takes a string"
            ),
            (
                Severity::Error,
                Code::UnknownFeature,
                "$.feature_settings.dokcer",
                "`feature_settings` names `dokcer`, which no feature library provides"
            ),
            (
                Severity::Error,
                Code::UnknownKey,
                "$.lxc_configs[\"950\"].feature_settings.base_setup.loacle",
                "feature `base_setup` has no parameter `loacle`"
            ),
            (
                Severity::Warning,
                Code::Conflict,
                "$.lxc_configs[\"950\"].feature_settings.ollama",
                "settings for feature `ollama`, which this guest does not run: they are not used"
            ),
        ],
        "{:#?}",
        v.reports
    );
    let hint = |path: &str| {
        v.reports
            .iter()
            .find(|r| r.location.as_ref().is_some_and(|l| l.path.ends_with(path)))
            .and_then(|r| r.hint.clone())
    };
    assert_eq!(hint(".loacle").as_deref(), Some("did you mean `locale`?"));
    assert_eq!(hint(".dokcer").as_deref(), Some("did you mean `docker`?"));
    assert!(
        hint(".apt_proxy").is_some_and(|h| h.starts_with("`apt_proxy` is a string: HTTP proxy")),
        "{:?}",
        hint(".apt_proxy")
    );
}

#[test]
fn a_value_outside_a_parameters_values_is_refused() {
    let manifest = r#"{"name": "engine", "parameters": [{"name": "source", "type": "string", "values": ["docker", "distribution"],
        "description": "where from"}]}"#;
    let mut fs =
        MemFs::new(&lxc_950(r#", "features": ["engine"], "feature_settings": {"engine": {"source": "debian"}}"#));
    fs.feature("engine", manifest);
    let e: Vec<String> = errors(&run(&fs)).iter().map(|r| r.message.clone()).collect();
    assert_eq!(e, ["`source` is \"debian\", but feature `engine` takes one of \"docker\", \"distribution\""]);
    let mut fs =
        MemFs::new(&lxc_950(r#", "features": ["engine"], "feature_settings": {"engine": {"source": "docker"}}"#));
    fs.feature("engine", manifest);
    assert!(errors(&run(&fs)).is_empty());
}

#[test]
fn the_built_in_service_and_certificate_features_check_their_settings() {
    // python_api_service cannot run without the command that serves the API.
    let fs = MemFs::new(&lxc_950(r#", "features": ["trusted_ca", "step_cli", "traefik", "python_api_service"]"#));
    let v = run(&fs);
    let e = errors(&v);
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_eq!(e[0].code, Code::MissingField);
    assert_eq!(e[0].message, "feature `python_api_service` needs `python_api_command`");

    // Given, with settings of the wrong type for the others: each is reported where it is written.
    let settings = r#", "features": ["trusted_ca", "step_cli", "traefik", "python_api_service"],
        "feature_settings": {
            "python_api_service": {"python_api_command": "uvicorn main:app", "python_api_port": "8000", "python_api_env": {"A": "1"}},
            "trusted_ca": {"ca_certificates": "-----BEGIN CERTIFICATE-----"},
            "traefik": {"traefik_static_config": "entryPoints: {}", "traefik_dynamic_config": {}},
            "step_cli": {"step_ca_url": "https://ca.internal:9000", "step_ca_fingerprint": "ab12"}}"#;
    let v = run(&MemFs::new(&lxc_950(settings)));
    let mut e: Vec<(String, String)> = errors(&v)
        .iter()
        .map(|r| (r.message.clone(), r.location.as_ref().map(|l| l.path.clone()).unwrap_or_default()))
        .collect();
    e.sort();
    let at = |key: &str| format!("$.lxc_configs[\"950\"].feature_settings.{key}");
    assert_eq!(
        e,
        [
            (
                "`ca_certificates` is a string, but feature `trusted_ca` takes an array".to_string(),
                at("trusted_ca.ca_certificates")
            ),
            (
                "`python_api_port` is a string, but feature `python_api_service` takes an integer".to_string(),
                at("python_api_service.python_api_port")
            ),
            (
                "`traefik_static_config` is a string, but feature `traefik` takes an object".to_string(),
                at("traefik.traefik_static_config")
            ),
        ],
        "{:#?}",
        v.reports
    );
}
