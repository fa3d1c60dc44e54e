//! Test support for Phoenix: synthetic configurations of any size, for tests and benchmarks.

pub mod memory;

use serde_json::{Value, json};

/// The three files of a valid configuration with `guests` containers on the local LXC backend:
/// ten templates chained by clones, the rest cloned from them, each with a static address,
/// features, a health check, a service, and dependencies on earlier guests.
/// Returns `(file name, content)` pairs.
pub fn synthetic_estate(guests: usize) -> Vec<(&'static str, String)> {
    let hypervisor = json!({
        "backend": {
            "type": "lxc",
            "bridges": { "vmbr0": { "host_bridge": "phxbr0", "address": "10.100.0.1/16" } },
            "storage": { "local": "/var/lib/phoenix/storage/local", "fast": "/var/lib/phoenix/storage/fast" }
        },
        "shared_volumes": {
            "models": {
                "host_path": "/srv/models",
                "mounts": (0..guests.min(50)).map(|i| (id(i).to_string(), json!("/models"))).collect::<serde_json::Map<_, _>>()
            }
        },
        "gateway": { "guest": id(guests.saturating_sub(1)).to_string() }
    });
    let templates = guests.min(10);
    let mut lxc = serde_json::Map::new();
    for i in 0..guests {
        let mut c = json!({
            "name": format!("guest-{i}"),
            "memory_mb": 1024 + (i % 8) * 512,
            "cores": 1 + i % 4,
            "storage_pool": if i % 2 == 0 { "local" } else { "fast" },
            "storage_size_gb": 10 + i % 50,
            "network_config": {
                "name": "eth0",
                "bridge": "vmbr0",
                "ip": format!("10.100.{}.{}/16", 1 + i / 250, 1 + i % 250),
                "gw": "10.100.0.1",
                "nameservers": ["10.100.0.1"]
            },
            "mac_address": format!("02:00:00:{:02x}:{:02x}:{:02x}", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff),
            "unprivileged": true,
            "features": ["base_setup"],
            "health_check": { "tcp": { "port": 8000 + (i % 100) as u32 }, "retries": 5, "interval": 2 },
            "services": [{ "name": "web", "port": 8000, "path": format!("/g{i}/") }],
            "ports": ["8000:8000"],
            "tags": ["synthetic"]
        });
        let obj = c.as_object_mut().expect("object");
        if i == 0 {
            obj.insert("template".into(), json!("local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"));
        } else {
            let source = if i < templates { i - 1 } else { i % templates };
            obj.insert("clone_from_ctid".into(), json!(id(source).to_string()));
        }
        if i < templates {
            obj.insert("template_snapshot_name".into(), json!(format!("tpl{i}")));
        } else if i > templates + 1 {
            obj.insert(
                "dependencies".into(),
                json!([id(i - 1).to_string(), id(templates + (i % (i - templates))).to_string()]),
            );
        }
        lxc.insert(id(i).to_string(), c);
    }
    let lxc = json!({ "lxc_configs": Value::Object(lxc) });
    vec![
        ("phoenix_hypervisor_config.json", serde_json::to_string_pretty(&hypervisor).expect("json")),
        ("phoenix_lxc_configs.json", serde_json::to_string_pretty(&lxc).expect("json")),
    ]
}

fn id(i: usize) -> usize {
    1000 + i
}

/// Whether a test that needs a real component (root, LXC, sshd) can run here. `missing` says
/// what is missing, if anything. In CI (`CI=true`) a missing component fails the test: such tests
/// must run there. Elsewhere the test is skipped, saying why.
#[allow(clippy::print_stderr)] // Saying why a test is skipped is the point.
pub fn real_component(what: &str, missing: Option<String>) -> bool {
    match missing {
        None => true,
        Some(why) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!("{what} must run in CI, but {why}"),
        Some(why) => {
            eprintln!("skipping {what}: {why}");
            false
        }
    }
}

/// Copies a directory tree (a test's configuration directory, say) into `to`, creating it.
pub fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    std::process::Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A stream that tests read afterwards (for the command line's output).
#[derive(Clone, Default)]
pub struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    /// What was written, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)).into_owned()
    }
}
