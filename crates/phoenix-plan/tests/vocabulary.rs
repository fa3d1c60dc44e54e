//! The desired state speaks only the field vocabulary backends know (`phoenix_backend::fields`).

use std::path::Path;

use phoenix_backend::GuestKind;
use phoenix_backend::fields::{CONTAINER, MOUNT_PREFIX, VM};

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
            let vocabulary = if g.kind == GuestKind::Lxc { CONTAINER } else { VM };
            for field in g.config.0.keys() {
                assert!(
                    field.starts_with(MOUNT_PREFIX) || vocabulary.contains(&field.as_str()),
                    "{example}: {} has field {field}",
                    g.id
                );
            }
        }
    }
}
