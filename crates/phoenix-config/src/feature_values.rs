//! The values a feature's script gets. For each parameter its manifest declares, the first of:
//! the guest's `feature_settings.<feature>.<name>`, the guest's own key `<name>` (the users'
//! format: `vllm_model`, `portainer_role`, ...), the hypervisor file's
//! `feature_settings.<feature>.<name>`, the configuration keys the parameter's `from` names, and
//! its `default`. A `null` counts as not given. Validation checks these values against the
//! parameters' types; the engine writes them into the script's parameters file. One place, so
//! both agree.

use serde_json::Value;

use crate::estate::{Estate, Guest, GuestSpec};
use crate::features::FeatureManifest;

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueOrigin {
    /// The guest's `feature_settings`.
    GuestSetting,
    /// The guest's own key of the parameter's name.
    GuestKey,
    /// The hypervisor file's `feature_settings`.
    EstateSetting,
    /// A configuration key the parameter's `from` names (as written there).
    From(String),
    /// The parameter's `default`.
    Default,
}

/// One parameter's value and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedValue {
    /// The parameter.
    pub name: String,
    /// Its value.
    pub value: Value,
    /// Where it came from.
    pub origin: ValueOrigin,
}

/// The estate-wide sources of feature values, read once per estate.
#[derive(Debug, Clone)]
pub struct FeatureValues {
    hypervisor: Value,
    lxc: Value,
}

/// The prefixes a parameter's `from` may use.
pub const FROM_PREFIXES: [&str; 2] = ["hypervisor.", "lxc."];

impl FeatureValues {
    /// The sources of an estate.
    pub fn new(estate: &Estate) -> FeatureValues {
        FeatureValues {
            hypervisor: serde_json::to_value(&estate.hypervisor).unwrap_or_default(),
            lxc: serde_json::to_value(&estate.lxc_settings).unwrap_or_default(),
        }
    }

    /// The values of every parameter of `feature` that something gives, in the manifest's order
    /// (`params`, then the typed `parameters`). `guest` is the guest's block as
    /// [`guest_block`] writes it.
    pub fn resolve(&self, feature: &FeatureManifest, guest: &Value) -> Vec<ResolvedValue> {
        let name = feature.name.as_str();
        let given = |v: Option<&Value>| v.filter(|v| !v.is_null()).cloned();
        feature
            .parameter_names()
            .into_iter()
            .filter_map(|key| {
                let typed = feature.parameters.iter().find(|p| p.name == key);
                let found = given(guest.get("feature_settings").and_then(|s| s.get(name)).and_then(|s| s.get(key)))
                    .map(|v| (v, ValueOrigin::GuestSetting))
                    .or_else(|| given(guest.get(key)).map(|v| (v, ValueOrigin::GuestKey)))
                    .or_else(|| {
                        given(
                            self.hypervisor.get("feature_settings").and_then(|s| s.get(name)).and_then(|s| s.get(key)),
                        )
                        .map(|v| (v, ValueOrigin::EstateSetting))
                    })
                    .or_else(|| {
                        typed?.from.iter().find_map(|path| {
                            given(self.lookup(path).as_ref()).map(|v| (v, ValueOrigin::From(path.clone())))
                        })
                    })
                    .or_else(|| typed?.default.clone().map(|v| (v, ValueOrigin::Default)));
                found.map(|(value, origin)| ResolvedValue { name: key.to_string(), value, origin })
            })
            .collect()
    }

    /// The value at a `from` path: `hypervisor.a.b` or `lxc.a`.
    fn lookup(&self, path: &str) -> Option<Value> {
        let (root, rest) = if let Some(rest) = path.strip_prefix("hypervisor.") {
            (&self.hypervisor, rest)
        } else {
            (&self.lxc, path.strip_prefix("lxc.")?)
        };
        rest.split('.').try_fold(root, |v, k| v.get(k)).cloned()
    }
}

/// A guest's block as the typed model writes it: what feature values and the application
/// script's parameters are read from.
pub fn guest_block(guest: &Guest) -> Value {
    match &guest.spec {
        GuestSpec::Lxc(c) => serde_json::to_value(c),
        GuestSpec::Vm(v) => serde_json::to_value(v),
    }
    .unwrap_or_default()
}

/// What is wrong with a manifest's typed parameter: a `default` not of its type, a `from` path
/// that names neither file. None when it is sound.
pub fn parameter_problem(feature: &FeatureManifest) -> Option<String> {
    for p in &feature.parameters {
        if let Some(d) = &p.default
            && !d.is_null()
            && !p.kind.matches(d)
        {
            return Some(format!("parameter `{}` is {} but its default is not", p.name, p.kind.described()));
        }
        if let Some(bad) =
            p.from.iter().find(|f| !FROM_PREFIXES.iter().any(|pre| f.len() > pre.len() && f.starts_with(pre)))
        {
            return Some(format!(
                "parameter `{}` takes its value from \"{bad}\", which starts with neither `hypervisor.` nor `lxc.`",
                p.name
            ));
        }
    }
    None
}

/// What is wrong with a value given for a feature's parameter: not of its type, or not one of
/// its `values`. None when it fits (untyped parameters take anything; `null` is not given).
pub fn misfit(feature: &FeatureManifest, name: &str, value: &Value) -> Option<String> {
    let p = feature.parameters.iter().find(|p| p.name == name)?;
    if value.is_null() {
        None
    } else if !p.kind.matches(value) {
        Some(format!("is {}, but feature `{}` takes {}", kind_of(value), feature.name, p.kind.described()))
    } else if !p.values.is_empty() && !p.values.contains(value) {
        let allowed: Vec<String> = p.values.iter().map(Value::to_string).collect();
        Some(format!("is {value}, but feature `{}` takes one of {}", feature.name, allowed.join(", ")))
    } else {
        None
    }
}

/// A JSON value's type with its article.
pub fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The parameters as the shell reads them (`params.env` beside `params.json`): `PHX_FEATURE`,
/// `PHX_GUEST_ID`, `PHX_GUEST_NAME`, then `PHX_<NAME>` for every parameter the feature declares
/// (empty when nothing gives it): a string as it is, a number or boolean as JSON writes it, a list
/// of strings, numbers or booleans as shell-quoted words (`eval "set -- $PHX_X"` splits them
/// back), anything else as JSON. A name that is not a shell name is left out.
pub fn shell_env(feature: &FeatureManifest, guest_id: u32, guest_name: &str, values: &[ResolvedValue]) -> String {
    let mut out = format!(
        "PHX_FEATURE={}\nPHX_GUEST_ID={}\nPHX_GUEST_NAME={}\n",
        shell_quote(&feature.name),
        shell_quote(&guest_id.to_string()),
        shell_quote(guest_name)
    );
    for name in feature.parameter_names() {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let text = match values.iter().find(|v| v.name == name).map(|v| &v.value) {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(items))
                if items.iter().all(|i| !matches!(i, Value::Array(_) | Value::Object(_) | Value::Null)) =>
            {
                items
                    .iter()
                    .map(|i| shell_quote(&i.as_str().map_or_else(|| i.to_string(), str::to_string)))
                    .collect::<Vec<_>>()
                    .join(" ")
            }
            Some(other) => other.to_string(),
        };
        out.push_str(&format!("PHX_{}={}\n", name.to_ascii_uppercase(), shell_quote(&text)));
    }
    out
}

/// A word in single quotes, for a POSIX shell.
fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::{ParamType, Parameter};
    use serde_json::json;

    fn feature() -> FeatureManifest {
        let p = |name: &str, kind, default: Option<Value>, from: &[&str]| Parameter {
            name: name.into(),
            kind,
            required: false,
            description: String::new(),
            default,
            from: from.iter().map(|s| s.to_string()).collect(),
            values: vec![],
        };
        FeatureManifest {
            name: "base_setup".into(),
            params: vec!["ports".into()],
            parameters: vec![
                p("timezone", ParamType::String, Some(json!("Etc/UTC")), &["hypervisor.timezone"]),
                p("apt_proxy", ParamType::String, None, &[]),
                p(
                    "runfile",
                    ParamType::String,
                    None,
                    &["hypervisor.nvidia_driver.runfile_url", "lxc.nvidia_runfile_url"],
                ),
                p("packages", ParamType::Array, Some(json!([])), &[]),
            ],
            ..FeatureManifest::default()
        }
    }

    fn values(hv: Value, lxc: Value) -> FeatureValues {
        FeatureValues { hypervisor: hv, lxc }
    }

    fn as_map(v: Vec<ResolvedValue>) -> Vec<(String, Value, ValueOrigin)> {
        v.into_iter().map(|r| (r.name, r.value, r.origin)).collect()
    }

    #[test]
    fn the_most_specific_source_wins_and_null_is_not_given() {
        let f = feature();
        let hv =
            json!({"timezone": "Europe/Berlin", "feature_settings": {"base_setup": {"apt_proxy": "http://h:3142"}}});
        let lxc = json!({"nvidia_runfile_url": "http://mirror/x.run"});
        let guest = json!({"ports": ["80:80"], "apt_proxy": null,
            "feature_settings": {"base_setup": {"packages": ["curl"]}, "docker": {"timezone": "x"}}});
        let got = as_map(values(hv, lxc).resolve(&f, &guest));
        assert_eq!(
            got,
            vec![
                ("ports".into(), json!(["80:80"]), ValueOrigin::GuestKey),
                ("timezone".into(), json!("Europe/Berlin"), ValueOrigin::From("hypervisor.timezone".into())),
                ("apt_proxy".into(), json!("http://h:3142"), ValueOrigin::EstateSetting),
                ("runfile".into(), json!("http://mirror/x.run"), ValueOrigin::From("lxc.nvidia_runfile_url".into())),
                ("packages".into(), json!(["curl"]), ValueOrigin::GuestSetting),
            ]
        );
        // Nothing given: defaults only, and a parameter without one is left out.
        let got = as_map(values(json!({}), json!({})).resolve(&f, &json!({})));
        assert_eq!(
            got,
            vec![
                ("timezone".into(), json!("Etc/UTC"), ValueOrigin::Default),
                ("packages".into(), json!([]), ValueOrigin::Default),
            ]
        );
        // The guest's own key beats the estate's setting.
        let got = as_map(
            values(json!({"feature_settings": {"base_setup": {"timezone": "A/B"}}}), json!({}))
                .resolve(&f, &json!({"timezone": "C/D"})),
        );
        assert_eq!(got[0], ("timezone".into(), json!("C/D"), ValueOrigin::GuestKey));
    }

    #[test]
    fn unsound_parameters_are_named() {
        let mut f = feature();
        assert_eq!(parameter_problem(&f), None);
        f.parameters[3].default = Some(json!("curl"));
        assert!(parameter_problem(&f).is_some_and(|p| p.contains("`packages`")));
        let mut f = feature();
        f.parameters[1].from = vec!["timezone".into()];
        assert!(parameter_problem(&f).is_some_and(|p| p.contains("\"timezone\"")));
        let f = feature();
        assert_eq!(
            misfit(&f, "packages", &json!("x")).as_deref(),
            Some("is a string, but feature `base_setup` takes an array")
        );
        assert_eq!(misfit(&f, "packages", &json!(["x"])), None);
        assert_eq!(misfit(&f, "ports", &json!(1)), None);
        let mut f = feature();
        f.parameters[1].values = vec![json!("a"), json!("b")];
        assert_eq!(misfit(&f, "apt_proxy", &json!("b")), None);
        assert!(misfit(&f, "apt_proxy", &json!("c")).is_some_and(|m| m.contains("one of \"a\", \"b\"")));
    }

    #[test]
    fn the_shell_reads_back_every_value_as_given() {
        let f = feature();
        let values = vec![
            ResolvedValue { name: "ports".into(), value: json!(["80:80", "it's", 3]), origin: ValueOrigin::GuestKey },
            ResolvedValue { name: "timezone".into(), value: json!("Europe/Berlin"), origin: ValueOrigin::Default },
            ResolvedValue { name: "packages".into(), value: json!([{"a": 1}]), origin: ValueOrigin::Default },
        ];
        let env = shell_env(&f, 950, "o'brien", &values);
        let script = format!(
            "{env}eval \"set -- $PHX_PORTS\"; printf '%s|' \"$PHX_FEATURE\" \"$PHX_GUEST_ID\" \"$PHX_GUEST_NAME\" \
             \"$PHX_TIMEZONE\" \"[$PHX_APT_PROXY]\" \"$PHX_RUNFILE\" \"$PHX_PACKAGES\" \"$#\" \"$@\""
        );
        let out = std::process::Command::new("sh").args(["-euc", &script]).output().expect("sh");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "base_setup|950|o'brien|Europe/Berlin|[]||[{\"a\":1}]|3|80:80|it's|3|"
        );
    }
}
