//! The JSON Schema of each file, generated from the model's types, and the structural check
//! that validates a parsed file against it.

mod check;
mod reference;

use std::sync::OnceLock;

use schemars::generate::SchemaSettings;

use crate::model::{HypervisorFile, LxcFile, VmFile};
use crate::source::FileKind;

pub(crate) use check::check_structure;
pub use reference::reference_markdown;

/// The JSON Schema of a file, as committed under `schema/` and used by the validator.
pub fn schema(kind: FileKind) -> &'static serde_json::Value {
    static SCHEMAS: OnceLock<[serde_json::Value; 3]> = OnceLock::new();
    let all = SCHEMAS.get_or_init(|| FileKind::ALL.map(generate));
    &all[kind as usize]
}

/// The schema's file name under `schema/`.
pub fn schema_file_name(kind: FileKind) -> String {
    kind.file_name().replace(".json", ".schema.json")
}

/// The schema as pretty-printed JSON with a final newline, exactly as committed.
pub fn schema_text(kind: FileKind) -> String {
    let mut text = serde_json::to_string_pretty(schema(kind)).unwrap_or_default();
    text.push('\n');
    text
}

fn generate(kind: FileKind) -> serde_json::Value {
    let generator = SchemaSettings::draft2020_12().into_generator();
    let schema = match kind {
        FileKind::Hypervisor => generator.into_root_schema_for::<HypervisorFile>(),
        FileKind::Lxc => generator.into_root_schema_for::<LxcFile>(),
        FileKind::Vm => generator.into_root_schema_for::<VmFile>(),
    };
    schema.to_value()
}

/// The object schemas a value may follow: its schema with references resolved, or each of its
/// alternatives (`anyOf`, `oneOf`).
fn alternatives(kind: FileKind, s: &'static serde_json::Value) -> Vec<&'static serde_json::Value> {
    let root = schema(kind);
    let resolve = |s: &'static serde_json::Value| -> &'static serde_json::Value {
        let mut s = s;
        while let Some(name) = s.get("$ref").and_then(|r| r.as_str()).map(|r| r.trim_start_matches("#/$defs/")) {
            match root.get("$defs").and_then(|d| d.get(name)) {
                Some(d) => s = d,
                None => break,
            }
        }
        s
    };
    let s = resolve(s);
    match s.get("anyOf").or_else(|| s.get("oneOf")).and_then(|b| b.as_array()) {
        Some(branches) => branches.iter().map(resolve).collect(),
        None => vec![s],
    }
}

/// The schemas of the objects that may hold the value at `path` (the parent's alternatives).
/// Empty when the path leaves the schema.
fn parent_schemas(kind: FileKind, path: &[crate::path::Segment]) -> Vec<&'static serde_json::Value> {
    use crate::path::Segment;
    let mut current: Vec<&'static serde_json::Value> = vec![schema(kind)];
    for seg in path {
        let next: Vec<&'static serde_json::Value> = current
            .iter()
            .flat_map(|s| alternatives(kind, s))
            .filter_map(|o| match seg {
                Segment::Key(k) => o
                    .get("properties")
                    .and_then(|p| p.get(k.as_str()))
                    .or_else(|| o.get("additionalProperties").filter(|a| a.is_object())),
                Segment::Index(_) => o.get("items"),
            })
            .collect();
        if next.is_empty() {
            return Vec::new();
        }
        current = next;
    }
    current.iter().flat_map(|s| alternatives(kind, s)).collect()
}

/// Whether the value at `path` can be left out of its file without making the file unreadable:
/// an optional property, a map entry, or a key the schema does not know.
pub(crate) fn is_removable(kind: FileKind, path: &crate::path::JsonPath) -> bool {
    use crate::path::Segment;
    let Some((Segment::Key(k), parents)) = path.0.split_last() else { return false };
    let objects = parent_schemas(kind, parents);
    if objects.is_empty() {
        return false;
    }
    let has = |o: &&serde_json::Value| o.get("properties").and_then(|p| p.get(k.as_str())).is_some();
    let known = objects.iter().any(has);
    let is_map = objects.iter().any(|o| o.get("additionalProperties").is_some_and(|a| a.is_object()));
    let closed = objects.iter().all(|o| o.get("additionalProperties") == Some(&serde_json::Value::Bool(false)));
    let required = objects
        .iter()
        .any(|o| o.get("required").and_then(|r| r.as_array()).is_some_and(|r| r.iter().any(|x| x == k.as_str())));
    (known || is_map || closed) && !required
}

/// The names of the required properties of the object at `path`.
pub(crate) fn required_keys(kind: FileKind, path: &crate::path::JsonPath) -> Vec<String> {
    parent_schemas(kind, &path.0)
        .iter()
        .filter_map(|o| o.get("required").and_then(|r| r.as_array()))
        .flatten()
        .filter_map(|k| k.as_str().map(str::to_string))
        .collect()
}

/// A stand-in of the right type for the value at `path`, so that the rest of its object can be
/// read: the minimum or 0 for numbers, the first allowed value or `""` for text, `false`, `[]`,
/// or `{}` for an object without required keys. `None` when nothing simple fits.
pub(crate) fn placeholder(kind: FileKind, path: &crate::path::JsonPath) -> Option<serde_json::Value> {
    use crate::path::Segment;
    use serde_json::{Value as J, json};
    let (last, parents) = path.0.split_last()?;
    let holders = parent_schemas(kind, parents);
    let schemas: Vec<&'static J> = holders
        .iter()
        .filter_map(|o| match last {
            Segment::Key(k) => o.get("properties").and_then(|p| p.get(k.as_str())),
            Segment::Index(_) => o.get("items"),
        })
        .flat_map(|s| alternatives(kind, s))
        .filter(|s| s.get("type").and_then(J::as_str) != Some("null"))
        .collect();
    if let Some(c) = schemas.iter().find_map(|s| s.get("const").or_else(|| s.get("enum").and_then(|e| e.get(0)))) {
        return Some(c.clone());
    }
    let s = schemas.first()?;
    let ty = match s.get("type") {
        Some(J::String(t)) => t.as_str(),
        Some(J::Array(ts)) => ts.iter().filter_map(J::as_str).find(|t| *t != "null")?,
        _ => return None,
    };
    match ty {
        "integer" | "number" => Some(s.get("minimum").cloned().unwrap_or(json!(0))),
        "string" => Some(json!("")),
        "boolean" => Some(json!(false)),
        "array" => Some(json!([])),
        "object" if s.get("required").and_then(J::as_array).is_none_or(Vec::is_empty) => Some(json!({})),
        _ => None,
    }
}
