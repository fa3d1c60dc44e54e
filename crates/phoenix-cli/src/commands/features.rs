//! `phoenix features`: the features a run knows (built in, and the user's overriding them), with
//! their parameters; one feature's script, to read or to start an override from.

use phoenix_config::features::{Catalog, CatalogEntry, FeatureSource};
use phoenix_config::{RealFilesystem, Severity};
use serde::Serialize;

use super::Outcome;
use crate::cli::{FeaturesArgs, OutputFormat};
use crate::printer::styles::BOLD;

#[derive(Serialize)]
struct JsonFeature<'a> {
    /// `built-in`, or the directory it was read from.
    source: String,
    #[serde(flatten)]
    manifest: &'a phoenix_config::features::FeatureManifest,
}

/// Runs `phoenix features`.
pub fn run(cx: &super::Context<'_>, args: &FeaturesArgs) -> Outcome {
    let printer = cx.printer;
    let dir = super::validate::features_dir(cx, &args.work);
    let (catalog, problems) = Catalog::load(&dir, &RealFilesystem);
    for p in &problems {
        printer.error(&p.message, p.hint.as_deref());
    }
    if problems.iter().any(|p| p.severity == Severity::Error) {
        return Outcome::Failure;
    }
    let entries: Vec<&CatalogEntry> = match &args.name {
        None => catalog.entries().collect(),
        Some(name) => match catalog.entry(name) {
            Some(e) => vec![e],
            None => {
                let known = catalog.names().collect::<Vec<_>>().join(", ");
                printer.error(
                    &format!("no feature library provides `{name}`"),
                    Some(&format!("the known features are: {known}")),
                );
                return Outcome::Failure;
            }
        },
    };
    if args.script {
        let [entry] = entries.as_slice() else {
            printer.error("--script needs a feature's name", Some("phoenix features docker --script"));
            return Outcome::Failure;
        };
        return match script(entry) {
            Ok(text) => {
                printer.data(&text);
                Outcome::Success
            }
            Err(e) => {
                printer.error(&e.to_string(), None);
                Outcome::Failure
            }
        };
    }
    if printer.format == OutputFormat::Json {
        let list: Vec<JsonFeature<'_>> =
            entries.iter().map(|e| JsonFeature { source: source(e), manifest: &e.manifest }).collect();
        printer.json(&list);
    } else {
        let text: Vec<String> = entries.iter().map(|e| describe(e)).collect();
        printer.data(&text.join("\n"));
    }
    Outcome::Success
}

/// Where a feature comes from, in words.
fn source(e: &CatalogEntry) -> String {
    match &e.source {
        FeatureSource::BuiltIn => "built-in".to_string(),
        FeatureSource::Directory(d) => d.display().to_string(),
        FeatureSource::Given => "given".to_string(),
    }
}

/// Why a feature's script cannot be shown.
#[derive(Debug, thiserror::Error)]
enum ScriptError {
    /// A built-in feature without its script.
    #[error("feature `{0}` has no built-in script")]
    NoBuiltIn(String),
    /// The feature directory's `install.sh` cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Unreadable { path: std::path::PathBuf, source: std::io::Error },
    /// A feature given without a directory.
    #[error("feature `{0}` has no script to show")]
    NoScript(String),
}

/// The script a feature runs, as text.
fn script(e: &CatalogEntry) -> Result<String, ScriptError> {
    let name = &e.manifest.name;
    let bytes = match &e.source {
        FeatureSource::BuiltIn => {
            phoenix_config::features::builtin_script(name).ok_or_else(|| ScriptError::NoBuiltIn(name.clone()))?
        }
        FeatureSource::Directory(d) => {
            let path = d.join("install.sh");
            std::fs::read(&path).map_err(|source| ScriptError::Unreadable { path, source })?
        }
        FeatureSource::Given => return Err(ScriptError::NoScript(name.clone())),
    };
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// A feature for people: name, source, description, needs, then one line per parameter.
fn describe(e: &CatalogEntry) -> String {
    let m = &e.manifest;
    let mut out = format!("{BOLD}{}{BOLD:#} ({})\n  {}\n", m.name, source(e), m.description);
    let mut needs = Vec::new();
    if m.needs_gpu {
        needs.push("a GPU (gpu_assignment)".to_string());
    }
    if m.needs_nesting {
        needs.push("nesting".to_string());
    }
    if !m.requires.is_empty() {
        needs.push(format!("features before it: {}", m.requires.join(", ")));
    }
    if !needs.is_empty() {
        out.push_str(&format!("  needs: {}\n", needs.join("; ")));
    }
    let untyped: Vec<&String> = m.params.iter().filter(|p| !m.parameters.iter().any(|t| &t.name == *p)).collect();
    if m.parameters.is_empty() && untyped.is_empty() {
        out.push_str("  no parameters\n");
        return out;
    }
    out.push_str("  parameters (in feature_settings, or the guest's own key of that name):\n");
    for p in &m.parameters {
        let mut line = format!("    {} ({}{})", p.name, p.kind, if p.required { ", required" } else { "" });
        if !p.values.is_empty() {
            let values: Vec<String> = p.values.iter().map(ToString::to_string).collect();
            line.push_str(&format!(" one of {}", values.join(", ")));
        }
        if !p.from.is_empty() {
            line.push_str(&format!(" from {}", p.from.join(", ")));
        }
        if let Some(d) = &p.default {
            line.push_str(&format!(" default {d}"));
        }
        out.push_str(&format!("{line}\n      {}\n", p.description));
    }
    for p in untyped {
        out.push_str(&format!("    {p} (any)\n"));
    }
    out
}
