//! The AI-host example (`examples/ai-stack`: 9 containers and 2 VMs) set up against a PVE test
//! double, shared by the driver's tests and its benchmark (which includes this file).

use std::path::Path;

use phoenix_engine::customize::{Feature, FeatureLibrary, FeatureManifest};
use phoenix_pve_double::PveDouble;

/// Copies the example into `dir` with its backend section pointing at `double` (token
/// `token_id`, secret from `PVE_TOKEN_SECRET`, its certificate pinned), and validates it.
pub fn write(dir: &Path, double: &PveDouble, token_id: &str) -> phoenix_config::Estate {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/ai-stack");
    let mut hv: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(source.join("phoenix_hypervisor_config.json")).expect("read"))
            .expect("json");
    hv["backend"] = serde_json::json!({
        "type": "proxmox", "api_url": format!("https://127.0.0.1:{}", double.addr.port()), "node": "pve1",
        "token": { "id": token_id, "secret": "env:PVE_TOKEN_SECRET" },
        "tls": { "fingerprint": double.fingerprint }, "ssh": {}
    });
    std::fs::write(dir.join("phoenix_hypervisor_config.json"), hv.to_string()).expect("write");
    for file in ["phoenix_lxc_configs.json", "phoenix_vm_configs.json"] {
        std::fs::copy(source.join(file), dir.join(file)).expect("copy");
    }
    std::fs::create_dir_all(dir.join("scripts")).expect("mkdir");
    for entry in std::fs::read_dir(source.join("scripts")).expect("scripts") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, dir.join("scripts").join(path.file_name().expect("name"))).expect("copy");
    }
    let fs = phoenix_config::RealFilesystem;
    let (sources, early) = phoenix_config::load(dir, &fs);
    let v = phoenix_config::validate(&sources, early, &fs);
    v.estate.unwrap_or_else(|| panic!("{:#?}", v.reports))
}

/// Stand-ins for the features the example uses (each script only says which it is).
pub fn library() -> FeatureLibrary {
    FeatureLibrary::new(["base_setup", "docker", "nvidia", "ollama", "vllm"].map(|n| Feature {
        manifest: FeatureManifest { name: n.into(), ..FeatureManifest::default() },
        script: format!("#!/bin/sh\n# {n}\n").into_bytes(),
    }))
}
