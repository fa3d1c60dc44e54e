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

/// Whether the value at `path` can be left out of its file without making the file unreadable:
/// an optional property, a map entry, or a key the schema does not know.
pub(crate) fn is_removable(kind: FileKind, path: &crate::path::JsonPath) -> bool {
    use crate::path::Segment;
    use serde_json::Value as J;
    let root = schema(kind);
    let resolve = |s: &'static J| -> &'static J {
        let mut s = s;
        while let Some(name) = s.get("$ref").and_then(J::as_str).map(|r| r.trim_start_matches("#/$defs/")) {
            match root.get("$defs").and_then(|d| d.get(name)) {
                Some(d) => s = d,
                None => break,
            }
        }
        s
    };
    // The object schemas a value may follow: the schema itself, or its alternatives.
    let objects = |s: &'static J| -> Vec<&'static J> {
        let s = resolve(s);
        match s.get("anyOf").or_else(|| s.get("oneOf")).and_then(J::as_array) {
            Some(branches) => branches.iter().map(resolve).collect(),
            None => vec![s],
        }
    };
    let Some((last, parents)) = path.0.split_last() else { return false };
    let mut current: Vec<&'static J> = vec![root];
    for seg in parents {
        let next: Vec<&'static J> = current
            .iter()
            .flat_map(|s| objects(s))
            .filter_map(|o| match seg {
                Segment::Key(k) => o
                    .get("properties")
                    .and_then(|p| p.get(k.as_str()))
                    .or_else(|| o.get("additionalProperties").filter(|a| a.is_object())),
                Segment::Index(_) => o.get("items"),
            })
            .collect();
        if next.is_empty() {
            return false;
        }
        current = next;
    }
    let Segment::Key(k) = last else { return false };
    let parents: Vec<&'static J> = current.iter().flat_map(|s| objects(s)).collect();
    let known = parents.iter().any(|o| o.get("properties").and_then(|p| p.get(k.as_str())).is_some());
    let is_map = parents.iter().any(|o| o.get("additionalProperties").is_some_and(J::is_object));
    let required = parents
        .iter()
        .any(|o| o.get("required").and_then(J::as_array).is_some_and(|r| r.iter().any(|x| x == k.as_str())));
    (known || is_map || parents.iter().all(|o| o.get("additionalProperties") == Some(&J::Bool(false)))) && !required
}
