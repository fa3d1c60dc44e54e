//! Clones' own SSH host keys end to end, on real unprivileged Debian containers (the template
//! `phoenix template debian` builds for the gateway's test): a template with openssh-server
//! (installed through the test host's apt-cacher-ng) and two clones of its snapshot. Each clone
//! gets host keys of its own, which its running sshd serves; a second apply keeps them; a clone
//! without its marker (one cloned by an earlier Phoenix) shows the step in the plan, and neither
//! the plan nor a dry run changes anything, until an apply gives it new keys, finishing what a
//! killed run left (a key staged, one swapped in).
//!
//! Needs root, the `lxc` tools, `debootstrap` (and the Debian archive the first time), ssh-keyscan,
//! apt-cacher-ng on 10.79.0.1:3142 and the bridge `phxtest0` with 10.79.0.1/24
//! (`scripts/test-host.sh` sets all of it up). In CI this test must run; elsewhere it is skipped
//! with the reason when the host lacks what it needs.

#[path = "support/debian.rs"]
mod debian;

use std::collections::BTreeMap;
use std::process::Command;

use debian::{APT_PROXY, Needs, Stack, available, both, debian_template, feed, serial, text};

/// The template and its clones.
const TEMPLATE: u32 = 1231;
const CLONES: [u32; 2] = [1232, 1233];

/// A container on the test bridge at 10.79.0.<id - 1000>.
fn container(id: u32, name: &str, extra: &str) -> String {
    format!(
        r#""{id}": {{"name": "{name}", "memory_mb": 512, "cores": 1, "storage_pool": "local", "storage_size_gb": 4,
            "network_config": {{"name": "eth0", "bridge": "vmbr0", "ip": "10.79.0.{ip}/24", "gw": "10.79.0.1"}},
            "unprivileged": true {extra}}}"#,
        ip = id - 1000
    )
}

/// The template's application script: openssh-server through the apt proxy, its sshd started
/// at boot (as `lib.sh`'s `enable_service` does where the package left no start link) and now.
fn install_sshd() -> String {
    format!(
        "#!/bin/sh\nset -e\nexport DEBIAN_FRONTEND=noninteractive\n\
         echo 'Acquire::http::Proxy \"{APT_PROXY}\";' > /etc/apt/apt.conf.d/01proxy\n\
         apt-get update -q\napt-get install -y -q --no-install-recommends openssh-server\n\
         ls /etc/rc2.d/S*ssh >/dev/null 2>&1 || ln -sf ../init.d/ssh /etc/rc2.d/S02ssh\n\
         /etc/init.d/ssh status >/dev/null 2>&1 || /etc/init.d/ssh start\n"
    )
}

impl Stack {
    /// Runs a shell command in a container that must succeed; its standard output.
    fn sh(&self, id: u32, script: &str) -> String {
        let out = feed(self.lxc_attach(id).args(["--", "sh", "-c", script]), b"");
        assert!(out.status.success(), "{script}: {}", both(&out));
        text(&out.stdout)
    }

    /// The fingerprints of a container's host keys, by key file.
    fn fingerprints(&self, id: u32) -> BTreeMap<String, String> {
        self.sh(id, "for k in /etc/ssh/ssh_host_*_key.pub; do printf '%s ' \"$k\"; ssh-keygen -lf \"$k\"; done")
            .lines()
            .map(|l| {
                let mut w = l.split_whitespace();
                let file = w.next().expect("file").to_string();
                (file, w.nth(1).expect("fingerprint").to_string())
            })
            .collect()
    }

    /// The record of what ran in a container.
    fn markers(&self, id: u32) -> BTreeMap<String, String> {
        serde_json::from_str(&self.sh(id, "cat /var/lib/phoenix/markers.json")).expect("markers")
    }
}

/// The ED25519 key a container's sshd serves, as ssh-keyscan sees it from the host.
fn served_key(id: u32) -> String {
    let out = Command::new("ssh-keyscan")
        .args(["-T", "10", "-t", "ed25519", &format!("10.79.0.{}", id - 1000)])
        .output()
        .expect("ssh-keyscan");
    text(&out.stdout).split_whitespace().nth(2).unwrap_or_default().to_string()
}

#[test]
#[allow(clippy::print_stderr)] // The figures are worth seeing in the test's output.
fn each_clone_gets_host_keys_of_its_own_once_and_a_plan_or_dry_run_changes_nothing() {
    let needs = Needs { tools: &["ssh-keyscan", "ssh-keygen"], apt_proxy: true, ..Needs::default() };
    if !available("the host keys' end-to-end test", &needs) {
        return;
    }
    let _host = serial();
    let debian = debian_template();
    let s = Stack::new("phoenix-host-keys-e2e-");
    s.write_hypervisor(serde_json::json!({}));
    std::fs::write(s.config().join("sshd.sh"), install_sshd()).expect("write");
    let mut containers = vec![container(
        TEMPLATE,
        "ssh-tpl",
        &format!(
            r#", "template": "{}", "application_script": "sshd.sh", "template_snapshot_name": "ready""#,
            debian.display()
        ),
    )];
    containers
        .extend(CLONES.map(|id| container(id, &format!("ssh-{id}"), &format!(r#", "clone_from_ctid": "{TEMPLATE}""#))));
    s.write_containers(&containers);

    // The plan shows the step for each clone, and only for them.
    let out = s.phoenix(&["--output", "json", "plan"]);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let with_step = |plan: &serde_json::Value| -> Vec<u64> {
        plan["guests"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|g| g["steps"].as_array().into_iter().flatten().any(|s| s["action"] == "new_host_keys"))
            .filter_map(|g| g["id"].as_u64())
            .collect()
    };
    assert_eq!(with_step(&plan), CLONES.map(u64::from), "{plan:#}");

    let started = std::time::Instant::now();
    let out = s.phoenix(&["-v", "apply"]);
    assert!(out.status.success(), "{}", both(&out));
    eprintln!("apply of a template with openssh-server and two clones: {:.1}s", started.elapsed().as_secs_f64());
    for id in CLONES {
        // Its sshd, started at boot, restarted with the new keys, or started by its init after
        // they were made: either way it serves them (checked below).
        assert!(both(&out).contains(&format!("{id}: new SSH host keys made")), "{}", both(&out));
    }

    let template = s.fingerprints(TEMPLATE);
    let ed25519 = s.sh(TEMPLATE, "cut -d' ' -f2 /etc/ssh/ssh_host_ed25519_key.pub");
    assert_eq!(served_key(TEMPLATE), ed25519.trim(), "the template's sshd does not serve its key");
    assert!(template.contains_key("/etc/ssh/ssh_host_ed25519_key.pub"), "{template:?}");
    let clones: Vec<BTreeMap<String, String>> = CLONES.iter().map(|id| s.fingerprints(*id)).collect();
    for (id, keys) in CLONES.iter().zip(&clones) {
        assert_eq!(keys.keys().collect::<Vec<_>>(), template.keys().collect::<Vec<_>>(), "{id}: other key types");
        for (file, fingerprint) in keys {
            assert_ne!(Some(fingerprint), template.get(file), "{id}: {file} is the template's");
        }
        // Its running sshd serves the new key, and its record says so, under its own ID only.
        let ed25519 = s.sh(*id, "cut -d' ' -f2 /etc/ssh/ssh_host_ed25519_key.pub");
        assert_eq!(served_key(*id), ed25519.trim(), "{id}: sshd serves another key");
        let markers = s.markers(*id);
        assert_eq!(markers.get(&format!("ssh-host-keys:{id}")).map(String::as_str), Some("new"), "{markers:?}");
    }
    assert!(clones[0].values().all(|f| !clones[1].values().any(|g| g == f)), "the clones share a key");
    assert!(!s.markers(TEMPLATE).keys().any(|k| k.starts_with("ssh-host-keys:")));

    // A second apply keeps them: no step.
    let out = s.phoenix(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    let out = s.phoenix(&["apply"]);
    assert!(out.status.success(), "{}", both(&out));
    assert_eq!(CLONES.map(|id| s.fingerprints(id)).to_vec(), clones, "a second apply changed keys");

    // A clone of an earlier Phoenix (its record without the marker): the plan shows the step,
    // and neither it nor a dry run changes anything.
    let legacy = CLONES[1];
    let mut markers = s.markers(legacy);
    assert!(markers.remove(&format!("ssh-host-keys:{legacy}")).is_some(), "{markers:?}");
    let written = feed(
        s.lxc_attach(legacy).args(["--", "sh", "-c", "cat > /var/lib/phoenix/markers.json"]),
        &serde_json::to_vec(&markers).expect("json"),
    );
    assert!(written.status.success(), "{}", both(&written));
    let out = s.phoenix(&["--output", "json", "plan"]);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(with_step(&plan), [u64::from(legacy)], "{plan:#}");
    let out = s.phoenix(&["plan"]);
    assert!(text(&out.stdout).contains("new SSH host keys"), "{}", both(&out));
    let out = s.phoenix(&["apply", "--dry-run"]);
    assert!(out.status.success(), "{}", both(&out));
    assert_eq!(s.fingerprints(legacy), clones[1], "a dry run changed keys");
    assert_eq!(s.markers(legacy), markers, "a dry run changed the record");

    // As a run killed half-way leaves it: one new key left staged, one already swapped in. The
    // next apply makes every key anew.
    s.sh(
        legacy,
        "mkdir -m 700 /etc/ssh/phoenix-new-host-keys && echo half > /etc/ssh/phoenix-new-host-keys/ssh_host_rsa_key \
         && ssh-keygen -q -N '' -t ed25519 -f /etc/ssh/phoenix-new-host-keys/ssh_host_ed25519_key \
         && mv -f /etc/ssh/phoenix-new-host-keys/ssh_host_ed25519_key* /etc/ssh/",
    );
    let out = s.phoenix(&["apply"]);
    assert!(out.status.success(), "{}", both(&out));
    let renewed = s.fingerprints(legacy);
    assert_eq!(renewed.keys().collect::<Vec<_>>(), template.keys().collect::<Vec<_>>());
    assert!(renewed.values().all(|f| !clones[1].values().any(|g| g == f) && !template.values().any(|g| g == f)));
    assert_eq!(s.sh(legacy, "ls -A /etc/ssh | grep -c phoenix || true"), "0\n", "the staging directory stayed");
    let ed25519 = s.sh(legacy, "cut -d' ' -f2 /etc/ssh/ssh_host_ed25519_key.pub");
    assert_eq!(served_key(legacy), ed25519.trim(), "sshd serves another key");
    markers.insert(format!("ssh-host-keys:{legacy}"), "new".into());
    assert_eq!(s.markers(legacy), markers);
    let out = s.phoenix(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
}
