//! The repositories module against the recording double: the enterprise repository turned off
//! in both file formats (backed up, never deleted), the no-subscription repository added, and
//! missing packages installed; planning changes nothing and a second apply does nothing.

mod support;

use phoenix_host::Planner;
use phoenix_host::double::{Node, RecordingHost, Tree};
use phoenix_host::host::{Arg, Invocation, Output};
use phoenix_host::modules::repositories::{self, Repositories};
use support::{apply_twice, no_secrets, summaries};

const ENTERPRISE_822: &str = "Types: deb\nURIs: https://enterprise.proxmox.com/debian/pve\nSuites: trixie\nComponents: pve-enterprise\nSigned-By: /usr/share/keyrings/proxmox-archive-keyring.gpg\n";

/// dpkg-query answers from a list of installed packages kept in the tree (so apt-get can add to it).
fn dpkg(inv: &Invocation, tree: &mut Tree) -> Output {
    let args: Vec<String> = inv.args.iter().map(ToString::to_string).collect();
    assert_eq!(args[..4], ["--admindir", "/var/lib/dpkg", "-W", "-f=${Status}"], "{args:?}");
    let installed = match tree.get(std::path::Path::new("/var/lib/dpkg/status")) {
        Some(Node::File { data, .. }) => String::from_utf8_lossy(data).into_owned(),
        _ => String::new(),
    };
    if installed.lines().any(|l| l == format!("Package: {}", args[4])) {
        Output { status: 0, stdout: "install ok installed".into(), stderr: String::new() }
    } else {
        Output {
            status: 1,
            stdout: String::new(),
            stderr: format!("dpkg-query: no packages found matching {}", args[4]),
        }
    }
}

fn apt_get(inv: &Invocation, _: &mut Tree) -> Output {
    let args: Vec<String> = inv.args.iter().map(ToString::to_string).collect();
    if args == ["update"] {
        return Output::default();
    }
    panic!("unexpected apt-get {args:?}");
}

fn env(inv: &Invocation, tree: &mut Tree) -> Output {
    let args: Vec<String> = inv.args.iter().map(ToString::to_string).collect();
    assert_eq!(
        args[..7],
        [
            "DEBIAN_FRONTEND=noninteractive",
            "apt-get",
            "install",
            "-y",
            "--no-install-recommends",
            "-o",
            "Dpkg::Options::=--force-confold"
        ]
    );
    assert!(inv.args.iter().all(|a| matches!(a, Arg::Text(_))));
    if let Some(Node::File { data, .. }) = tree.get_mut(std::path::Path::new("/var/lib/dpkg/status")) {
        for p in &args[7..] {
            data.extend_from_slice(format!("Package: {p}\n").as_bytes());
        }
    }
    Output::default()
}

fn host(os: &str) -> RecordingHost {
    RecordingHost::new()
        .file("/etc/os-release", &format!("PRETTY_NAME=\"Debian\"\nVERSION_CODENAME={os}\n"))
        .file("/var/lib/dpkg/status", "Package: samba\n")
        .dirs(&["/etc/apt/sources.list.d"])
        .program("dpkg-query", dpkg)
        .program("apt-get", apt_get)
        .program("env", env)
}

#[test]
fn debian_13_enterprise_sources_get_enabled_no_and_missing_packages_are_installed() {
    let host = host("trixie").file(repositories::ENTERPRISE_SOURCES, ENTERPRISE_822);
    let m = Repositories { packages: vec![("samba".into(), "samba".into()), ("zfsutils-linux".into(), "zfs".into())] };
    let plan = apply_twice(&host, &m, &no_secrets);
    assert_eq!(
        summaries(&plan),
        [
            "write /etc/apt/sources.list.d/pve-enterprise.sources (mode 0644), original kept as /etc/apt/sources.list.d/pve-enterprise.sources.phoenix-orig",
            "write /etc/apt/sources.list.d/phoenix-pve-no-subscription.sources (mode 0644)",
            "run `apt-get update`",
            "run `env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends -o Dpkg::Options::=--force-confold zfsutils-linux`",
        ]
    );
    assert!(plan.steps[3].reason.contains("zfsutils-linux (zfs)"), "{}", plan.steps[3].reason);
    assert_eq!(host.text(repositories::ENTERPRISE_SOURCES).expect("kept"), format!("{ENTERPRISE_822}Enabled: no\n"));
    assert_eq!(
        host.text("/etc/apt/sources.list.d/pve-enterprise.sources.phoenix-orig").as_deref(),
        Some(ENTERPRISE_822)
    );
    let no_sub = host.text(repositories::NO_SUB_SOURCES).expect("written");
    assert!(no_sub.contains("Suites: trixie\nComponents: pve-no-subscription\n"), "{no_sub}");
}

#[test]
fn debian_12_enterprise_lines_are_commented_out_and_other_lines_kept() {
    let list = "# my note\ndeb https://enterprise.proxmox.com/debian/pve bookworm pve-enterprise\n";
    let host = host("bookworm").file(repositories::ENTERPRISE_LIST, list);
    let m = Repositories { packages: vec![("samba".into(), "samba".into())] };
    let plan = apply_twice(&host, &m, &no_secrets);
    assert_eq!(plan.steps.len(), 3, "{:#?}", plan.steps);
    assert_eq!(
        host.text(repositories::ENTERPRISE_LIST).as_deref(),
        Some(
            "# my note\n# disabled by phoenix setup-hypervisor: deb https://enterprise.proxmox.com/debian/pve bookworm pve-enterprise\n"
        )
    );
    assert_eq!(
        host.text(repositories::NO_SUB_LIST).as_deref(),
        Some(
            "# Managed by phoenix setup-hypervisor: the Proxmox VE no-subscription repository.\ndeb http://download.proxmox.com/debian/pve bookworm pve-no-subscription\n"
        )
    );
    // samba is installed: no apt-get install.
    assert!(!summaries(&plan).iter().any(|s| s.contains("install")), "{:?}", summaries(&plan));
}

#[test]
fn a_no_subscription_repository_elsewhere_and_a_disabled_enterprise_stanza_are_left_alone() {
    let disabled = format!("{ENTERPRISE_822}Enabled: false\n");
    let host = host("trixie").file(repositories::ENTERPRISE_SOURCES, &disabled).file(
        "/etc/apt/sources.list.d/proxmox.sources",
        "Types: deb\nURIs: http://download.proxmox.com/debian/pve\nSuites: trixie\nComponents: pve-no-subscription\n",
    );
    let m = Repositories { packages: vec![] };
    let plan = m.plan_on(&host, &no_secrets).expect("plan");
    assert!(plan.steps.is_empty(), "{:#?}", plan.steps);
    assert!(
        plan.notes.iter().any(|n| n.contains("already enabled in /etc/apt/sources.list.d/proxmox.sources")),
        "{:?}",
        plan.notes
    );
}

#[test]
fn a_host_that_is_not_debian_12_or_13_is_not_touched_and_says_so() {
    let host = RecordingHost::new().file("/etc/os-release", "ID=alpine\n");
    let m = Repositories { packages: vec![("samba".into(), "samba".into())] };
    let plan = m.plan_on(&host, &no_secrets).expect("plan");
    assert!(plan.steps.is_empty());
    assert_eq!(plan.notes.len(), 2, "{:?}", plan.notes);
    assert!(host.changes().is_empty());
}

#[test]
fn deb822_disable_keeps_other_stanzas_and_replaces_an_enabled_yes() {
    let text =
        format!("Types: deb\nURIs: http://deb.debian.org/debian\nSuites: trixie\n\n{ENTERPRISE_822}Enabled: yes\n");
    let out = repositories::disable_deb822(&text).expect("changed");
    assert!(out.starts_with("Types: deb\nURIs: http://deb.debian.org/debian\nSuites: trixie\n\n"), "{out}");
    assert!(out.ends_with("keyring.gpg\nEnabled: no\n") && !out.contains("Enabled: yes"), "{out}");
    assert_eq!(repositories::disable_deb822(&out), None);
}
