//! The schemas committed under `schema/`, and the reference in `docs/reference.md`, are exactly
//! what the types generate.
//! After changing the model, regenerate them with `PHOENIX_BLESS=1 cargo test -p phoenix-config --test schema_files`.

use std::path::Path;

use phoenix_config::FileKind;
use phoenix_config::schema::{schema_file_name, schema_text};

#[test]
fn committed_schemas_and_reference_are_up_to_date() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schema");
    let bless = std::env::var_os("PHOENIX_BLESS").is_some();
    let mut stale = Vec::new();
    for kind in FileKind::ALL {
        let path = dir.join(schema_file_name(kind));
        let generated = schema_text(kind);
        if bless {
            std::fs::write(&path, &generated).expect("write schema");
            continue;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed != generated {
            stale.push(path.display().to_string());
        }
    }
    let reference = dir.join("../docs/reference.md");
    let generated = phoenix_config::schema::reference_markdown();
    if bless {
        std::fs::write(&reference, &generated).expect("write reference");
    } else if std::fs::read_to_string(&reference).unwrap_or_default() != generated {
        stale.push(reference.display().to_string());
    }
    assert!(
        stale.is_empty(),
        "stale schema file(s): {}; regenerate with PHOENIX_BLESS=1 cargo test -p phoenix-config --test schema_files",
        stale.join(", ")
    );
}

#[test]
fn every_schema_is_a_draft_2020_12_document_with_descriptions() {
    for kind in FileKind::ALL {
        let schema = phoenix_config::schema::schema(kind);
        assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
        assert_eq!(schema["additionalProperties"], false, "{kind}: unknown top-level keys must be refused");
        let props = schema["properties"].as_object().expect("properties");
        for (key, prop) in props {
            assert!(prop.get("description").is_some(), "{kind}: `{key}` has no description");
        }
    }
}
