//! `phoenix plan` with `via: "pvesh"` through the command line's backend connection: no URL, no
//! token, no TLS; and `phoenix setup-hypervisor` setting the cluster firewall with the `pvesh`
//! it finds in `PATH`. `pvesh` is a script that runs this test binary again as the PVE test
//! double's `pvesh` stand-in (so the test runs without libtest's harness, see
//! `phoenix_pve_double::pvesh::main_or_tests`).

use std::process::ExitCode;
use std::time::Duration;

use phoenix_cli::{Io, run};
use phoenix_pve_double::{Credentials, PveDouble, PveVersion};
use phoenix_testkit::Capture;

fn plan_through_pvesh() {
    let double = PveDouble::start(
        PveVersion::V8,
        Credentials { token: ("phoenix@pve!ci".into(), "unused".into()), root_password: "root-pw".into() },
    );
    double.set_task_duration(Duration::from_millis(10));
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path();
    let pvesh = phoenix_pve_double::pvesh::self_wrapper(&double, p).expect("pvesh");
    std::fs::write(
        p.join("phoenix_hypervisor_config.json"),
        r#"{"backend": {"type": "proxmox", "node": "pve1", "via": "pvesh"}}"#,
    )
    .expect("write");
    std::fs::write(
        p.join("phoenix_lxc_configs.json"),
        r#"{"lxc_configs": {"900": {"name": "gpu", "memory_mb": 1024, "cores": 1, "storage_pool": "local-zfs",
            "storage_size_gb": 10, "unprivileged": true, "pct_options": ["nesting=1", "keyctl=1"],
            "template": "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
            "network_config": {"name": "eth0", "bridge": "vmbr0", "ip": "10.0.0.10/24", "gw": "10.0.0.1"}}}}"#,
    )
    .expect("write");
    let (out, err) = (Capture::default(), Capture::default());
    let cfg = p.to_str().expect("utf-8").to_string();
    let locks = p.join("locks").to_str().expect("utf-8").to_string();
    let program = pvesh.to_str().expect("utf-8").to_string();
    let code = run(
        ["phoenix", "-c", &cfg, "--lock-dir", &locks, "plan", "--detailed-exitcode"],
        Io::Custom { out: Box::new(out.clone()), err: Box::new(err.clone()), interactive: false },
        &move |estate| phoenix_cli::backends::connect_with(estate, &program),
    );
    let (out, err) = (out.text(), err.text());
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("note: Proxmox VE 8.4.5 through pvesh on pve1"), "{err}");
    assert!(out.contains("Plan: 1 to create, 0 to change, 0 unchanged."), "{out}");
    // Feature flags other than nesting go through the API as root@pam, not `pct set`.
    assert!(format!("{out}{err}").contains("the API as root@pam"), "{out}{err}");
    let requests = double.requests();
    assert!(requests.iter().any(|r| r.path == "/access/permissions"), "preflight ran through pvesh");
    assert!(requests.iter().all(|r| !r.token && r.status == 200), "{requests:#?}");

    // Without a `pvesh` (Phoenix not on a node), the error says so before anything is planned.
    let (out, err) = (Capture::default(), Capture::default());
    let code = run(
        ["phoenix", "-c", &cfg, "--lock-dir", &locks, "plan"],
        Io::Custom { out: Box::new(out.clone()), err: Box::new(err.clone()), interactive: false },
        &|estate| phoenix_cli::backends::connect_with(estate, "/nonexistent/pvesh"),
    );
    let err = err.text();
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot run /nonexistent/pvesh") && err.contains("Proxmox VE node"), "{err}");
}

/// `phoenix setup-hypervisor` on a temporary root that has `/etc/pve`, with the stand-in as the
/// `pvesh` of `PATH`: the firewall planned (nothing written), applied, and planned again empty.
fn setup_hypervisor_sets_the_firewall_through_pvesh() {
    let double = PveDouble::start(
        PveVersion::V9,
        Credentials { token: ("phoenix@pve!ci".into(), "unused".into()), root_password: "root-pw".into() },
    );
    let dir = tempfile::tempdir().expect("tmp");
    let (config, bin, root) = (dir.path().join("config"), dir.path().join("bin"), dir.path().join("root"));
    for d in [&config, &bin, &root.join("etc/pve")] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    phoenix_pve_double::pvesh::self_wrapper(&double, &bin).expect("pvesh");
    std::fs::write(
        config.join("phoenix_hypervisor_config.json"),
        r#"{"firewall": {"enabled": true, "default_input_policy": "DROP", "global_firewall_rules": [
            {"type": "in", "action": "ACCEPT", "proto": "tcp", "port": "22", "source": "10.0.0.0/24", "comment": "SSH from the LAN"}]}}"#,
    )
    .expect("write");
    std::fs::write(config.join("phoenix_lxc_configs.json"), r#"{"lxc_configs": {}}"#).expect("write");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let phoenix = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_phoenix"))
            .args(["--color", "never", "--no-progress", "-c"])
            .arg(&config)
            .args(["setup-hypervisor"])
            .args(args)
            .args(["--only", "firewall", "--root"])
            .arg(&root)
            .env("PATH", &path)
            .output()
            .expect("run phoenix");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.code(), text)
    };
    let writes = || double.requests().iter().filter(|r| r.method != "GET").count();
    let (code, out) = phoenix(&["plan", "--detailed-exitcode"]);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("--dport 22 --comment 'phoenix: SSH from the LAN' --pos 0 --output-format json")
            && out.contains("pvesh set /cluster/firewall/options --enable 1 --policy_in DROP --digest"),
        "{out}"
    );
    let (code, out) = phoenix(&["apply", "--dry-run"]);
    assert_eq!((code, writes()), (Some(0), 0), "{out}");
    let (code, out) = phoenix(&["apply"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("firewall: 2 step(s) applied"), "{out}");
    let rules = double.cluster_firewall_rules();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].get("comment").map(String::as_str), Some("phoenix: SSH from the LAN"));
    assert_eq!(double.cluster_firewall_options().get("policy_in").map(String::as_str), Some("DROP"));
    let before = writes();
    let (code, out) = phoenix(&["plan", "--detailed-exitcode"]);
    assert_eq!((code, writes()), (Some(0), before), "{out}");
    assert!(out.contains("No changes"), "{out}");
}

fn main() -> ExitCode {
    phoenix_pve_double::pvesh::main_or_tests(&[
        ("plan_through_pvesh", plan_through_pvesh),
        ("setup_hypervisor_sets_the_firewall_through_pvesh", setup_hypervisor_sets_the_firewall_through_pvesh),
    ])
}
