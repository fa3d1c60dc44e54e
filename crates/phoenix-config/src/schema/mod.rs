//! The JSON Schema of each file, generated from the model's types, and the structural check
//! that validates a parsed file against it.

mod check;

use std::sync::OnceLock;

use schemars::generate::SchemaSettings;

use crate::model::{HypervisorFile, LxcFile, VmFile};
use crate::source::FileKind;

pub(crate) use check::check_structure;

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
