//! The desired state speaks only the field vocabulary backends know (`phoenix_backend::fields`).

use std::path::Path;

use phoenix_backend::{Field, GuestKind};

#[test]
fn every_desired_field_is_in_the_shared_vocabulary() {
    let fs = phoenix_config::RealFilesystem;
    for example in ["quickstart", "ai-stack"] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples").join(example);
        let (sources, early) = phoenix_config::load(&dir, &fs);
        let estate = phoenix_config::validate(&sources, early, &fs).estate.expect("valid example");
        let desired = phoenix_plan::desired(&estate, &|_| Vec::new());
        assert!(!desired.guests.is_empty());
        for g in desired.guests.values() {
            let vocabulary = if g.kind == GuestKind::Lxc { Field::CONTAINER } else { Field::VM };
            for field in g.config.fields() {
                assert!(
                    field.mount_path().is_some() || vocabulary.contains(field),
                    "{example}: {} has field {field}",
                    g.id
                );
            }
        }
    }
}
