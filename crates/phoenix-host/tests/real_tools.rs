//! Modules against a temporary root with this machine's real checkers: `visudo` (package sudo),
//! `testparm` (samba-common-bin) and `apparmor_parser` (apparmor), which `scripts/test-host.sh`
//! installs. In CI a missing tool fails the test; elsewhere it is skipped, saying why. Commands
//! that would change this machine itself (`smbcontrol`, `useradd`, ...) are answered by a stub.

use std::path::Path;

use phoenix_config::model::{AdminUser, PasswordHash, SambaShare};
use phoenix_host::host::{Attrs, Output, RealHost};
use phoenix_host::modules::{apparmor, samba, users};
use phoenix_host::step::{Action, Check, Command, Step, execute};
use phoenix_host::{Planner, apply};

fn no_secrets(r: &str) -> Result<String, phoenix_host::HostError> {
    Err(phoenix_host::HostError::new(format!("no secret {r} in this test")))
}

fn have(tool: &str) -> bool {
    let host = RealHost::system();
    let missing = (!phoenix_host::Host::has_program(&host, tool))
        .then(|| format!("{tool} is not installed (scripts/test-host.sh installs it)"));
    phoenix_testkit::real_component(&format!("the {tool} test"), missing)
}

/// This machine below a temporary root; only the checkers really run.
fn rooted(dir: &Path) -> RealHost {
    RealHost::rooted(dir).with_stub(|inv| {
        let real = ["visudo", "testparm", "apparmor_parser", "command"].contains(&inv.program.as_str());
        (!real).then(Output::default)
    })
}

fn write(root: &Path, path: &str, text: &str) {
    let at = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(at.parent().expect("parent")).expect("mkdir");
    std::fs::write(at, text).expect("write");
}

#[test]
fn the_sudoers_drop_in_passes_visudo_and_a_broken_one_never_replaces_the_old() {
    if !have("visudo") {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path();
    write(root, "/etc/passwd", "root:x:0:0:root:/root:/bin/bash\nops:x:1001:1001::/home/ops:/bin/bash\n");
    write(root, "/etc/group", "root:x:0:\nops:x:1001:\n");
    write(root, "/etc/shadow", "ops:!:19000:0:99999:7:::\n");
    std::fs::create_dir_all(root.join("etc/sudoers.d")).expect("mkdir");
    let host = rooted(root);
    let m = users::Users {
        users: vec![AdminUser {
            username: "ops".into(),
            password_hash: Some(PasswordHash("NOT_SET".into())),
            sudo_access: true,
            ssh_public_key: None,
        }],
    };
    let plan = m.plan_on(&host, &no_secrets).expect("plan");
    assert_eq!(plan.steps.len(), 1, "{:?}", plan.steps);
    apply(&host, &plan, &no_secrets).expect("visudo accepts the drop-in");
    let drop_in = root.join("etc/sudoers.d/phoenix-ops");
    let meta = std::fs::metadata(&drop_in).expect("written");
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777, 0o440);
    assert!(m.plan_on(&host, &no_secrets).expect("again").steps.is_empty());

    // A drop-in visudo refuses is never put in place, and the old one stays.
    let broken = Step::new(
        Action::WriteFile {
            path: "/etc/sudoers.d/phoenix-ops".into(),
            contents: "ops ALL=(ALL NOT SUDOERS SYNTAX\n".into(),
            attrs: Attrs::root(0o440),
            backup: None,
            check: Some(Check::new(Command::new("visudo", &["-cf"]))),
        },
        "test",
    );
    let e = execute(&host, &broken, &no_secrets).expect_err("visudo refuses it");
    assert!(
        e.message.contains("fails `visudo -cf`") && e.detail.as_deref().is_some_and(|d| d.contains("syntax error")),
        "{e:?}"
    );
    assert!(std::fs::read_to_string(&drop_in).expect("old").contains("NOPASSWD: ALL"));
    let left: Vec<_> = std::fs::read_dir(root.join("etc/sudoers.d")).expect("dir").collect();
    assert_eq!(left.len(), 1, "the candidate is removed");
}

#[test]
fn samba_files_pass_testparm_and_an_unknown_option_is_refused_before_it_lands() {
    if !have("testparm") {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path();
    let original = "[global]\n   workgroup = WORKGROUP\n   server role = standalone server\n";
    write(root, samba::SMB_CONF, original);
    let host = rooted(root);
    let share = |options: &[(&str, &str)]| SambaShare {
        name: "data".into(),
        path: "/srv/data".into(),
        options: options.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect(),
        valid_users: vec![],
    };
    let m = samba::Samba { shares: vec![share(&[("read only", "no"), ("browseable", "yes")])], user: None };
    let plan = m.plan_on(&host, &no_secrets).expect("plan");
    apply(&host, &plan, &no_secrets).expect("testparm accepts both files");
    let conf = std::fs::read_to_string(root.join("etc/samba/smb.conf")).expect("smb.conf");
    assert!(conf.starts_with(original) && conf.contains("include = /etc/samba/phoenix-shares.conf"), "{conf}");
    assert_eq!(std::fs::read_to_string(root.join("etc/samba/smb.conf.phoenix-orig")).expect("backup"), original);
    assert!(m.plan_on(&host, &no_secrets).expect("again").steps.is_empty());

    let bad = samba::Samba { shares: vec![share(&[("no such samba option", "1")])], user: None };
    let plan = bad.plan_on(&host, &no_secrets).expect("plan");
    let e = apply(&host, &plan, &no_secrets).expect_err("testparm warns of the unknown option");
    assert!(e.error.message.contains("fails `testparm -s`"), "{e}");
    let kept = std::fs::read_to_string(root.join("etc/samba/phoenix-shares.conf")).expect("shares");
    assert!(kept.contains("read only = no") && !kept.contains("no such"), "{kept}");
}

#[test]
fn the_apparmor_profile_parses_with_the_hosts_abstractions() {
    if !have("apparmor_parser") {
        return;
    }
    let system = Path::new("/etc/apparmor.d");
    let missing = (!system.join("abstractions/lxc/container-base").exists())
        .then(|| "/etc/apparmor.d/abstractions/lxc/container-base is missing (package lxc)".to_string());
    if !phoenix_testkit::real_component("the AppArmor profile test", missing) {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path();
    // The profile's includes, as the host has them; nothing else of the host's profiles.
    std::fs::create_dir_all(root.join("etc/apparmor.d")).expect("mkdir");
    for sub in ["tunables", "abstractions"] {
        let status =
            std::process::Command::new("cp").arg("-r").arg(system.join(sub)).arg(root.join("etc/apparmor.d")).status();
        assert!(status.is_ok_and(|s| s.success()), "copy {sub}");
    }
    let host = rooted(root);
    let plan = apparmor::AppArmor.plan_on(&host, &no_secrets).expect("plan");
    apply(&host, &plan, &no_secrets).expect("apparmor_parser -Q accepts the profile");
    assert!(root.join("etc/apparmor.d/lxc-phoenix-mounting").is_file());
    assert!(apparmor::AppArmor.plan_on(&host, &no_secrets).expect("again").steps.is_empty());
}
