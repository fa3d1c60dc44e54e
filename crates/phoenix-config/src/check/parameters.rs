//! Features' parameters against the values the configuration gives them: each given value has
//! the type (and is one of the values) the parameter declares, a required parameter gets a value
//! from somewhere ([`crate::feature_values`] says where values come from), and every key of
//! `feature_settings`, the guests' and the hypervisor file's, names a feature and one of its
//! parameters.

use serde_json::Value;

use super::Ctx;
use crate::diagnostic::{Code, Diagnostic};
use crate::estate::Guest;
use crate::feature_values::misfit;
use crate::features::FeatureManifest;
use crate::model::FeatureSettings;
use crate::path::JsonPath;
use crate::source::FileKind;
use crate::suggest::closest;

/// Reports a guest value of the wrong type for a parameter `feature` declares, and a required
/// parameter nothing gives. `block` is the guest's as [`crate::feature_values::guest_block`]
/// writes it; `at` is where the guest names the feature.
pub(super) fn check_feature_parameters(
    cx: &mut Ctx<'_>,
    guest: &Guest,
    block: &Value,
    feature: &FeatureManifest,
    at: &JsonPath,
) {
    if feature.parameters.is_empty() {
        return;
    }
    let (file, base) = (guest.origin.file, &guest.origin.path);
    let name = &feature.name;
    for p in &feature.parameters {
        let key = &p.name;
        if let Some(v) = block.get(key)
            && let Some(wrong) = misfit(feature, key, v)
        {
            cx.push(
                Diagnostic::error(Code::WrongType, file, base.key(key), format!("`{key}` {wrong}"))
                    .hint(format!("feature `{name}` declares `{key}` as {} in its feature.json", p.kind)),
            );
        }
    }
    let resolved = cx.feature_values.resolve(feature, block);
    for p in feature.parameters.iter().filter(|p| p.required) {
        if resolved.iter().any(|r| r.name == p.name) {
            continue;
        }
        let key = &p.name;
        let (kind, what) = (p.kind.described(), guest.kind_name());
        let settings = format!("\"feature_settings\": {{\"{name}\": {{\"{key}\": …}}}}");
        let hint = if block.get(key).is_some() {
            format!(
                "add \"{key}\": {kind} to the {what}, or give it in {settings} of the {what} or of the hypervisor file"
            )
        } else {
            format!("give it ({kind}) in {settings} of the {what} or of the hypervisor file")
        };
        cx.push(
            Diagnostic::error(Code::MissingField, file, base.clone(), format!("feature `{name}` needs `{key}`"))
                .at_key()
                .hint(hint)
                .note(file, at.clone(), format!("`{name}` is named here")),
        );
    }
}

/// Checks one `feature_settings` object: each feature exists (and, for a guest, is one it runs)
/// and each setting is a parameter of it with a value that fits.
pub(super) fn check_settings(
    cx: &mut Ctx<'_>,
    file: FileKind,
    at: &JsonPath,
    settings: &FeatureSettings,
    used: Option<&[&str]>,
) {
    let catalog = cx.catalog;
    for (feature, params) in settings {
        let fpath = at.key(feature);
        let Some(manifest) = catalog.get(feature) else {
            let hint = match closest(feature, catalog.names()) {
                Some(c) => format!("did you mean `{c}`?"),
                None => format!("the known features are: {}", catalog.names().collect::<Vec<_>>().join(", ")),
            };
            cx.push(
                Diagnostic::error(
                    Code::UnknownFeature,
                    file,
                    fpath,
                    format!("`feature_settings` names `{feature}`, which no feature library provides"),
                )
                .at_key()
                .hint(hint),
            );
            continue;
        };
        if let Some(used) = used
            && !used.contains(&feature.as_str())
        {
            cx.push(
                Diagnostic::warning(
                    Code::Conflict,
                    file,
                    fpath.clone(),
                    format!("settings for feature `{feature}`, which this guest does not run: they are not used"),
                )
                .at_key()
                .hint(format!("add \"{feature}\" to `features`, or remove these settings")),
            );
        }
        let names = manifest.parameter_names();
        for (key, value) in params {
            let kpath = fpath.key(key);
            if !names.contains(&key.as_str()) {
                let hint = match closest(key, names.iter().copied()) {
                    Some(c) => format!("did you mean `{c}`?"),
                    None if names.is_empty() => format!("feature `{feature}` takes no parameters"),
                    None => format!("feature `{feature}` takes: {} (`phoenix features` lists them)", names.join(", ")),
                };
                cx.push(
                    Diagnostic::error(
                        Code::UnknownKey,
                        file,
                        kpath,
                        format!("feature `{feature}` has no parameter `{key}`"),
                    )
                    .at_key()
                    .hint(hint),
                );
            } else if let Some(wrong) = misfit(manifest, key, value) {
                cx.push(
                    Diagnostic::error(Code::WrongType, file, kpath, format!("`{key}` {wrong}")).hint(
                        describe_parameter(manifest, key).unwrap_or_else(|| "see `phoenix features`".to_string()),
                    ),
                );
            }
        }
    }
}

/// A parameter's type and description, for hints.
fn describe_parameter(feature: &FeatureManifest, key: &str) -> Option<String> {
    let p = feature.parameters.iter().find(|p| p.name == key)?;
    let values = if p.values.is_empty() {
        String::new()
    } else {
        format!(" (one of {})", p.values.iter().map(Value::to_string).collect::<Vec<_>>().join(", "))
    };
    Some(format!("`{key}` is {}{values}: {}", p.kind.described(), p.description))
}
