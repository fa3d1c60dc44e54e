//! A feature's typed parameters against the guest's values: each parameter is the guest's key of
//! the same name, read as the typed model writes it (which is what the feature's script gets).

use super::Ctx;
use crate::diagnostic::{Code, Diagnostic};
use crate::estate::{Guest, GuestSpec};
use crate::features::FeatureManifest;
use crate::path::JsonPath;

/// Reports a guest value of the wrong type for a parameter `feature` declares, and a required
/// parameter the guest does not give. `at` is where the guest names the feature.
pub(super) fn check_feature_parameters(cx: &mut Ctx<'_>, guest: &Guest, feature: &FeatureManifest, at: &JsonPath) {
    if feature.parameters.is_empty() {
        return;
    }
    let (file, base) = (guest.origin.file, &guest.origin.path);
    let values = match &guest.spec {
        GuestSpec::Lxc(c) => serde_json::to_value(c),
        GuestSpec::Vm(v) => serde_json::to_value(v),
    }
    .unwrap_or_default();
    let name = &feature.name;
    for p in &feature.parameters {
        let key = &p.name;
        match values.get(key).filter(|v| !v.is_null()) {
            Some(v) if !p.kind.matches(v) => cx.push(
                Diagnostic::error(
                    Code::WrongType,
                    file,
                    base.key(key),
                    format!("`{key}` is {}, but feature `{name}` takes {}", kind_of(v), p.kind.described()),
                )
                .hint(format!("feature `{name}` declares `{key}` as {} in its feature.json", p.kind)),
            ),
            Some(_) => {}
            None if p.required => {
                let hint = if values.get(key).is_some() {
                    format!("add \"{key}\": {} (feature `{name}` requires it)", p.kind.described())
                } else {
                    format!(
                        "a {} has no setting `{key}`, so it can never be given: feature `{name}` declares it in its \
                         feature.json; name one of the guest's own keys there (see docs/reference.md)",
                        guest.kind_name()
                    )
                };
                cx.push(
                    Diagnostic::error(
                        Code::MissingField,
                        file,
                        base.clone(),
                        format!("feature `{name}` needs `{key}`"),
                    )
                    .at_key()
                    .hint(hint)
                    .note(file, at.clone(), format!("`{name}` is named here")),
                );
            }
            None => {}
        }
    }
}

/// A JSON value's type with its article.
fn kind_of(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(n) if n.is_f64() => "a number",
        serde_json::Value::Number(_) => "an integer",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}
