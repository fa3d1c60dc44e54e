//! The official API schema, loaded from the extract under `schema/`, and the check of a request
//! against it.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock, PoisonError};

use regex::Regex;
use serde::Deserialize;
use serde_json::Value;

/// The PVE versions the double can play.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PveVersion {
    /// Proxmox VE 8.4.5.
    V8,
    /// Proxmox VE 9.2.3.
    V9,
}

impl PveVersion {
    /// Both versions.
    pub const ALL: [PveVersion; 2] = [PveVersion::V8, PveVersion::V9];

    /// The version number as Proxmox shows it (`8.4.5`, `9.2.3`).
    pub fn name(self) -> &'static str {
        match self {
            PveVersion::V8 => "8.4.5",
            PveVersion::V9 => "9.2.3",
        }
    }

    /// The version of a number as [`PveVersion::name`] shows it.
    pub fn from_name(name: &str) -> Option<PveVersion> {
        PveVersion::ALL.into_iter().find(|v| v.name() == name)
    }

    /// The other version.
    pub fn other(self) -> PveVersion {
        match self {
            PveVersion::V8 => PveVersion::V9,
            PveVersion::V9 => PveVersion::V8,
        }
    }
}

/// A parameter's definition.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Def {
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    optional: bool,
    #[serde(default, rename = "enum")]
    allowed: Vec<Value>,
    pattern: Option<String>,
    minimum: Option<f64>,
    maximum: Option<f64>,
    max_length: Option<f64>,
    format: Option<Format>,
    #[serde(default, rename = "default_key")]
    default_key: bool,
    requires: Option<String>,
    /// The definition of each item of an `array`.
    items: Option<Box<Def>>,
    /// A property-string sub-key that stands for another one (`volume` for `file`).
    alias: Option<String>,
    /// With `alias`: the sub-key this key's name is the value of (`virtio=<MAC>` sets `model`).
    #[serde(rename = "keyAlias")]
    key_alias: Option<String>,
}

/// A named format, or the sub-keys of a property string.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Format {
    Named(String),
    Properties(BTreeMap<String, Def>),
}

/// One method of one path.
#[derive(Debug, Clone, Deserialize)]
pub struct Endpoint {
    /// The path template, e.g. `/nodes/{node}/lxc/{vmid}/config`.
    pub path: String,
    /// `GET`, `POST`, `PUT` or `DELETE`.
    pub method: String,
    /// Whether API tokens may call it.
    pub allowtoken: bool,
    parameters: BTreeMap<String, Def>,
}

#[derive(Deserialize)]
struct File {
    endpoints: Vec<Endpoint>,
}

/// The schema of one PVE version.
pub struct ApiSchema {
    /// Which version.
    pub version: PveVersion,
    endpoints: Vec<Endpoint>,
}

/// A refused parameter (or, without a name, a refused request), as Proxmox words it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    /// The parameter, when the error is about one.
    pub param: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl ParamError {
    fn on(param: &str, message: impl Into<String>) -> ParamError {
        ParamError { param: Some(param.to_string()), message: message.into() }
    }
}

impl ApiSchema {
    /// The schema of a version (parsed once).
    pub fn get(version: PveVersion) -> &'static ApiSchema {
        static SCHEMAS: OnceLock<[ApiSchema; 2]> = OnceLock::new();
        let all = SCHEMAS.get_or_init(|| {
            let load = |version, text: &str| {
                let f: File =
                    serde_json::from_str(text).unwrap_or_else(|e| panic!("the bundled schema extract is broken: {e}"));
                ApiSchema { version, endpoints: f.endpoints }
            };
            [
                load(PveVersion::V8, include_str!("../schema/pve-8.4.5.json")),
                load(PveVersion::V9, include_str!("../schema/pve-9.2.3.json")),
            ]
        });
        &all[version as usize]
    }

    /// The endpoint a concrete path and method reach, with the path's parameters.
    pub fn endpoint(&self, method: &str, path: &str) -> Option<(&Endpoint, BTreeMap<String, String>)> {
        let segs: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        self.endpoints.iter().filter(|e| e.method == method).find_map(|e| {
            let tpl: Vec<&str> = e.path.split('/').collect();
            if tpl.len() != segs.len() {
                return None;
            }
            let mut params = BTreeMap::new();
            for (t, s) in tpl.iter().zip(&segs) {
                match t.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
                    Some(name) if !s.is_empty() => {
                        params.insert(name.to_string(), (*s).to_string());
                    }
                    _ if t == s => {}
                    _ => return None,
                }
            }
            Some((e, params))
        })
    }

    /// Whether the endpoint `method path` reaches defines the parameter `name` (a numbered name
    /// through its `xxx[n]` form) and, with `key`, that sub-key of its property string.
    pub fn defines(&self, method: &str, path: &str, name: &str, key: Option<&str>) -> bool {
        let Some((endpoint, path_params)) = self.endpoint(method, path) else { return false };
        let Some(def) = definition(&endpoint.parameters, name) else {
            return key.is_none() && path_params.contains_key(name);
        };
        match (key, &def.format) {
            (None, _) => true,
            (Some(k), Some(Format::Properties(keys))) => keys.contains_key(k),
            (Some(_), _) => false,
        }
    }

    /// Checks a request; on success returns its endpoint.
    pub fn check(
        &self,
        method: &str,
        path: &str,
        params: &BTreeMap<String, Value>,
    ) -> Result<&Endpoint, Vec<ParamError>> {
        let Some((endpoint, path_params)) = self.endpoint(method, path) else {
            return Err(vec![ParamError { param: None, message: format!("Method '{method} {path}' not implemented") }]);
        };
        let mut all: BTreeMap<String, Value> = path_params.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
        all.extend(params.iter().map(|(k, v)| (k.clone(), v.clone())));
        let mut errors = Vec::new();
        for (name, value) in &all {
            match definition(&endpoint.parameters, name) {
                Some(def) => check_value(name, def, value, &mut errors),
                None => errors.push(ParamError::on(
                    name,
                    "property is not defined in schema and the schema does not allow additional properties",
                )),
            }
        }
        for (name, def) in &endpoint.parameters {
            if !def.optional && !name.ends_with("[n]") && !all.contains_key(name) {
                errors.push(ParamError::on(name, "property is missing and it is not optional"));
            }
            if let (Some(required), true) = (&def.requires, all.contains_key(name))
                && !all.contains_key(required)
            {
                errors.push(ParamError::on(required, format!("property is missing and it is required by '{name}'")));
            }
        }
        if errors.is_empty() { Ok(endpoint) } else { Err(errors) }
    }
}

/// The definition of a parameter name: itself, or `xxx[n]` for `xxx0`, `xxx1`, ...
fn definition<'d>(params: &'d BTreeMap<String, Def>, name: &str) -> Option<&'d Def> {
    params.get(name).or_else(|| {
        let base = name.trim_end_matches(|c: char| c.is_ascii_digit());
        (base.len() < name.len()).then(|| params.get(&format!("{base}[n]"))).flatten()
    })
}

/// The value as text, as it travels in a form-encoded body.
/// The values of decoded form parameters as the schema check takes them: a key given several
/// times (its values joined with [`REPEATED`]) is an array.
pub fn form_values(params: &BTreeMap<String, String>) -> BTreeMap<String, Value> {
    params
        .iter()
        .map(|(k, v)| {
            let value = if v.contains(REPEATED) {
                Value::Array(v.split(REPEATED).map(|s| Value::String(s.to_string())).collect())
            } else {
                Value::String(v.clone())
            };
            (k.clone(), value)
        })
        .collect()
}

/// How the double keeps the values of a form key given several times (an array parameter such as
/// `agent/exec`'s `command`): joined with this character, which no form value the driver sends
/// holds.
pub const REPEATED: char = '\u{1f}';

fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "1" } else { "0" }.to_string()),
        _ => None,
    }
}

fn check_value(name: &str, def: &Def, value: &Value, errors: &mut Vec<ParamError>) {
    if def.kind.as_deref() == Some("array") {
        // A form sends an array as the same key repeated (one value is an array of one).
        let items: Vec<&Value> = match value {
            Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        let item = def.items.as_deref().cloned().unwrap_or_default();
        for v in items {
            check_value(name, &item, v, errors);
        }
        return;
    }
    let Some(v) = text(value) else {
        errors.push(ParamError::on(name, "type check ('scalar') failed"));
        return;
    };
    check_text(name, def, &v, errors);
}

fn check_text(name: &str, def: &Def, v: &str, errors: &mut Vec<ParamError>) {
    let before = errors.len();
    match def.kind.as_deref() {
        Some("integer") if v.parse::<i64>().is_err() => {
            errors.push(ParamError::on(name, format!("type check ('integer') failed - got '{v}'")))
        }
        Some("number") if v.parse::<f64>().is_err() => {
            errors.push(ParamError::on(name, format!("type check ('number') failed - got '{v}'")))
        }
        Some("boolean") if !matches!(v, "0" | "1" | "true" | "false" | "yes" | "no" | "on" | "off") => {
            errors.push(ParamError::on(name, format!("type check ('boolean') failed - got '{v}'")));
        }
        _ => {}
    }
    if errors.len() > before {
        return;
    }
    if !def.allowed.is_empty() && !def.allowed.iter().any(|a| text(a).as_deref() == Some(v)) {
        errors.push(ParamError::on(
            name,
            format!(
                "value '{v}' does not have a value in the enumeration '{}'",
                def.allowed.iter().filter_map(text).collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    if let Ok(n) = v.parse::<f64>() {
        if def.minimum.is_some_and(|m| n < m) {
            errors.push(ParamError::on(
                name,
                format!("value must have a minimum value of {}", def.minimum.unwrap_or_default()),
            ));
        }
        if def.maximum.is_some_and(|m| n > m) {
            errors.push(ParamError::on(
                name,
                format!("value must have a maximum value of {}", def.maximum.unwrap_or_default()),
            ));
        }
    }
    if def.max_length.is_some_and(|m| v.chars().count() as f64 > m) {
        errors.push(ParamError::on(
            name,
            format!("value may only be {} characters long", def.max_length.unwrap_or_default()),
        ));
    }
    if let Some(p) = &def.pattern
        && !pattern_matches(p, v)
    {
        errors.push(ParamError::on(name, format!("value does not match the regex pattern {p}")));
    }
    match &def.format {
        Some(Format::Named(f)) => {
            if let Some(problem) = named_format(f, v) {
                errors.push(ParamError::on(name, problem));
            }
        }
        Some(Format::Properties(keys)) => check_property_string(name, keys, v, errors),
        None => {}
    }
}

fn check_property_string(name: &str, keys: &BTreeMap<String, Def>, v: &str, errors: &mut Vec<ParamError>) {
    let default_key = keys.iter().find(|(_, d)| d.default_key).map(|(k, _)| k.as_str());
    let mut seen = Vec::new();
    for (i, item) in v.split(',').enumerate() {
        let (k, val) = match item.split_once('=') {
            Some((k, val)) => (k.trim(), val),
            None => match default_key {
                Some(d) if i == 0 => (d, item),
                _ => {
                    errors.push(ParamError::on(
                        name,
                        format!(
                            "invalid format - value without key, but schema does not define a default key: '{item}'"
                        ),
                    ));
                    continue;
                }
            },
        };
        let Some(mut sub) = keys.get(k) else {
            errors.push(ParamError::on(name, format!("invalid format - property '{k}' is not defined in the format")));
            continue;
        };
        let mut k = k;
        if let Some(target) = sub.alias.as_deref()
            && let Some((real, def)) = keys.get_key_value(target)
        {
            if let Some(key_alias) = sub.key_alias.as_deref()
                && let Some((alias_key, _)) = keys.get_key_value(key_alias)
            {
                if seen.contains(&alias_key.as_str()) {
                    errors.push(ParamError::on(
                        name,
                        format!("invalid format - duplicate key in comma-separated list property: {alias_key}"),
                    ));
                }
                seen.push(alias_key.as_str());
            }
            k = real.as_str();
            sub = def;
        }
        if seen.contains(&k) {
            errors.push(ParamError::on(
                name,
                format!("invalid format - duplicate key in comma-separated list property: {k}"),
            ));
        }
        seen.push(k);
        let mut sub_errors = Vec::new();
        check_text(k, sub, val, &mut sub_errors);
        errors.extend(
            sub_errors.into_iter().map(|e| ParamError::on(name, format!("invalid format - {}: {}", k, e.message))),
        );
    }
    for (k, d) in keys {
        if !d.optional && d.alias.is_none() && !seen.contains(&k.as_str()) {
            errors.push(ParamError::on(name, format!("invalid format - property '{k}' is missing")));
        }
    }
}

/// Perl's `(?^:...)` and `(?^i:...)` in Rust's syntax, matched against the whole value.
fn pattern_matches(pattern: &str, v: &str) -> bool {
    static CACHE: OnceLock<Mutex<BTreeMap<String, Option<Regex>>>> = OnceLock::new();
    let mut cache = CACHE.get_or_init(Default::default).lock().unwrap_or_else(PoisonError::into_inner);
    let re = cache.entry(pattern.to_string()).or_insert_with(|| {
        let rust = pattern.replace("(?^i:", "(?i:").replace("(?^:", "(?:");
        Regex::new(&format!("^(?:{rust})$")).ok()
    });
    re.as_ref().is_none_or(|re| re.is_match(v))
}

fn label_ok(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 63
        && !l.starts_with('-')
        && !l.ends_with('-')
        && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Checks a named format Proxmox verifies on the server; `None` when fine (or not checked here).
fn named_format(format: &str, v: &str) -> Option<String> {
    if let Some(base) = format.strip_suffix("-list") {
        return v.split([',', ';', ' ']).filter(|s| !s.is_empty()).find_map(|item| named_format(base, item));
    }
    let ok = match format {
        "pve-vmid" => v.len() >= 3 && v.len() <= 9 && !v.starts_with('0') && v.bytes().all(|b| b.is_ascii_digit()),
        "pve-node" | "dns-name" => v.split('.').all(label_ok),
        "pve-configid" => {
            let mut c = v.chars();
            c.next().is_some_and(|f| f.is_ascii_alphabetic())
                && v.len() >= 2
                && c.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        }
        "pve-storage-id" => {
            v.len() >= 2
                && v.starts_with(|c: char| c.is_ascii_alphabetic())
                && v.ends_with(|c: char| c.is_ascii_alphanumeric())
                && v.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        }
        "pve-tag" => {
            v.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
                && v.chars().all(|c| c.is_ascii_alphanumeric() || "_-+.".contains(c))
        }
        "mac-addr" => v.len() == 17 && v.split(':').all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit())),
        "ipv4" => v.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => v.parse::<std::net::Ipv6Addr>().is_ok(),
        "pve-ipv4-config" => {
            matches!(v, "dhcp" | "manual")
                || v.split_once('/').is_some_and(|(a, p)| {
                    a.parse::<std::net::Ipv4Addr>().is_ok() && p.parse::<u8>().is_ok_and(|p| p <= 32)
                })
        }
        "pve-ipv6-config" => {
            matches!(v, "auto" | "dhcp" | "manual")
                || v.split_once('/').is_some_and(|(a, p)| {
                    a.parse::<std::net::Ipv6Addr>().is_ok() && p.parse::<u8>().is_ok_and(|p| p <= 128)
                })
        }
        "disk-size" => {
            let digits = v.trim_end_matches(|c: char| c.is_ascii_alphabetic());
            digits.parse::<f64>().is_ok()
                && matches!(&v[digits.len()..], "" | "K" | "M" | "G" | "T" | "KiB" | "MiB" | "GiB" | "TiB")
        }
        "pve-lxc-mp-string" => {
            !v.contains("/./")
                && !v.contains("/../")
                && !v.ends_with("/.")
                && !v.ends_with("/..")
                && !v.starts_with("../")
        }
        // pve-common's `pve_verify_iface`.
        "pve-iface" => {
            let (name, vlan) = match v.find([':', '.']) {
                Some(i) => (&v[..i], Some(&v[i + 1..])),
                None => (v, None),
            };
            name.len() >= 2
                && name.len() <= 21
                && name.starts_with(|c: char| c.is_ascii_alphabetic())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && vlan.is_none_or(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        }
        "pve-lxc-dev-string" => v.starts_with("/dev/") && !v.split('/').any(|c| c == "." || c == ".."),
        "pve-volume-id" => v.split_once(':').is_some_and(|(s, n)| !s.is_empty() && !n.is_empty()),
        // pve-common's `pve_verify_urlencoded`: the client percent-encodes everything else.
        "urlencoded" => v.chars().all(|c| c.is_ascii_alphanumeric() || "-%_.!~*'()".contains(c)),
        _ => true,
    };
    (!ok).then(|| format!("value does not look like a valid {format}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, Value> {
        pairs.iter().map(|(k, v)| ((*k).to_string(), Value::String((*v).to_string()))).collect()
    }

    #[test]
    fn both_versions_load_the_driver_endpoints() {
        for v in PveVersion::ALL {
            let s = ApiSchema::get(v);
            let (e, path) = s.endpoint("PUT", "/nodes/pve1/lxc/950/config").expect("config endpoint");
            assert_eq!(e.path, "/nodes/{node}/lxc/{vmid}/config");
            assert_eq!(path.get("vmid").map(String::as_str), Some("950"));
            assert!(s.endpoint("POST", "/nodes/pve1/lxc/950/clone").is_some());
            assert!(s.endpoint("GET", "/cluster/resources").is_some());
            assert!(s.endpoint("GET", "/nodes/pve1/lxc/950/nonsense").is_none());
        }
    }

    #[test]
    fn refuses_what_proxmox_refuses() {
        let s = ApiSchema::get(PveVersion::V8);
        let errs = |m: &str, p: &str, ps: &[(&str, &str)]| s.check(m, p, &params(ps)).err().unwrap_or_default();
        let create = "/nodes/pve1/lxc";
        let e = errs("POST", create, &[("vmid", "950"), ("hostname", "web")]);
        assert!(e.iter().any(|e| e.param.as_deref() == Some("ostemplate") && e.message.contains("missing")), "{e:?}");
        let e = errs("PUT", "/nodes/pve1/lxc/950/config", &[("lxc.idmap", "u 0 100000 65536")]);
        assert!(
            e.iter().any(|e| e.param.as_deref() == Some("lxc.idmap") && e.message.contains("not defined in schema")),
            "{e:?}"
        );
        let e = errs("PUT", "/nodes/pve1/lxc/950/config", &[("net0", "name=eth0,bridge=vmbr0,colour=blue")]);
        assert!(e.iter().any(|e| e.message.contains("property 'colour' is not defined")), "{e:?}");
        let e = errs("PUT", "/nodes/pve1/lxc/950/config", &[("net0", "bridge=vmbr0")]);
        assert!(e.iter().any(|e| e.message.contains("property 'name' is missing")), "{e:?}");
        let e = errs("PUT", "/nodes/pve1/lxc/950/config", &[("hostname", "web_1")]);
        assert!(e.iter().any(|e| e.param.as_deref() == Some("hostname")), "{e:?}");
        let e = errs("PUT", "/nodes/pve1/lxc/99/config", &[("cores", "2")]);
        assert!(e.iter().any(|e| e.param.as_deref() == Some("vmid")), "{e:?}");
        let e = errs("PUT", "/nodes/pve1/lxc/950/config", &[("cores", "two")]);
        assert!(e.iter().any(|e| e.message.contains("type check ('integer') failed")), "{e:?}");
        let e = errs("POST", "/nodes/pve1/lxc/950/status/start", &[("nonsense", "1")]);
        assert!(!e.is_empty());
        let rule = |iface: &str| {
            errs("POST", "/cluster/firewall/rules", &[("type", "in"), ("action", "ACCEPT"), ("iface", iface)])
        };
        for good in ["vmbr0", "eno1.100", "bond0:1"] {
            assert_eq!(rule(good), vec![], "{good}");
        }
        for bad in ["0eth", "vmbr 0", "eth0.x"] {
            assert!(rule(bad).iter().any(|e| e.param.as_deref() == Some("iface")), "{bad}");
        }
        let e = errs("PUT", "/cluster/firewall/options", &[("policy_in", "REJECT"), ("policy_forward", "REJECT")]);
        assert!(e.iter().all(|e| e.param.as_deref() == Some("policy_forward")) && e.len() == 1, "{e:?}");
    }

    #[test]
    fn version_differences_are_enforced() {
        let net = params(&[("net0", "name=eth0,bridge=vmbr0,host-managed=1")]);
        assert!(ApiSchema::get(PveVersion::V8).check("PUT", "/nodes/pve1/lxc/950/config", &net).is_err());
        assert!(ApiSchema::get(PveVersion::V9).check("PUT", "/nodes/pve1/lxc/950/config", &net).is_ok());
    }
}
