//! Each module against the recording double: what it plans and why, that applying it gives a
//! host on which it plans nothing, that planning changes nothing, that files Phoenix does not own
//! change only inside its block and are backed up, and that secrets stay out of plans and logs.

mod support;

use std::collections::BTreeMap;

use phoenix_config::model::{AdminUser, NfsExport, PasswordHash, SambaShare};
use phoenix_host::double::RecordingHost;
use phoenix_host::host::{Host, Output};
use phoenix_host::modules::{apparmor, nfs, ntp, samba, subids, timezone, users};
use phoenix_host::{Action, Planner};
use support::{apply_twice, summaries};

const HASH: &str = "$6$salt$0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const SMB_PASSWORD: &str = "correct horse battery staple";

fn secrets(r: &str) -> Result<String, phoenix_host::HostError> {
    match r {
        "env:ADMIN_HASH" => Ok(HASH.to_string()),
        "env:SMB_PASSWORD" => Ok(SMB_PASSWORD.to_string()),
        other => Err(phoenix_host::HostError::new(format!("the secret reference {other} is not set"))),
    }
}

#[test]
fn timezone_links_localtime_and_names_the_zone_then_is_a_no_op() {
    let host = RecordingHost::new().file("/usr/share/zoneinfo/Europe/Berlin", "TZif").file("/etc/timezone", "UTC\n");
    let m = timezone::Timezone { zone: "Europe/Berlin".into() };
    let plan = apply_twice(&host, &m, &secrets);
    assert_eq!(
        summaries(&plan),
        ["link /etc/localtime → /usr/share/zoneinfo/Europe/Berlin", "write /etc/timezone (mode 0644)"]
    );
    assert_eq!(plan.steps[0].reason, "/etc/localtime is missing");
    assert_eq!(plan.steps[1].reason, "/etc/timezone says UTC");
    assert_eq!(host.text("/etc/timezone").as_deref(), Some("Europe/Berlin\n"));

    let unknown = timezone::Timezone { zone: "Mars/Olympus".into() };
    let e = unknown.plan_on(&host, &secrets).expect_err("unknown zone");
    assert!(e.message.contains("unknown time zone Mars/Olympus"), "{e}");
    let bad = timezone::Timezone { zone: "../../etc/passwd".into() };
    assert!(bad.plan_on(&host, &secrets).is_err());
}

/// A host where `useradd` and `chpasswd` change the user database as the real ones do.
fn user_host() -> RecordingHost {
    RecordingHost::new()
        .file("/etc/passwd", "root:x:0:0:root:/root:/bin/bash\nbob:x:1001:1001::/home/bob:/bin/bash\n")
        .file("/etc/group", "root:x:0:\nbob:x:1001:\n")
        .file("/etc/shadow", "root:*:19000:0:99999:7:::\nbob:!:19000:0:99999:7:::\n")
        .file("/home/bob/.ssh/authorized_keys", "ssh-ed25519 AAAAother bob@laptop\n")
        .dirs(&["/etc/sudoers.d"])
        .ok_program("visudo")
        .program("useradd", |inv, tree| {
            let name = inv.args.last().map(ToString::to_string).unwrap_or_default();
            let add = |tree: &mut phoenix_host::double::Tree, path: &str, line: String| {
                if let Some(phoenix_host::double::Node::File { data, .. }) = tree.get_mut(std::path::Path::new(path)) {
                    data.extend_from_slice(line.as_bytes());
                }
            };
            add(tree, "/etc/passwd", format!("{name}:x:1002:1002::/home/{name}:/bin/bash\n"));
            add(tree, "/etc/group", format!("{name}:x:1002:\n"));
            add(tree, "/etc/shadow", format!("{name}:!:19000:0:99999:7:::\n"));
            Output::default()
        })
        .program("chpasswd", |_, tree| {
            // The double cannot read stdin here; the test checks stdins() itself.
            let shadow = std::path::Path::new("/etc/shadow");
            if let Some(phoenix_host::double::Node::File { data, .. }) = tree.get_mut(shadow) {
                let text = String::from_utf8_lossy(data).replace("alice:!:", &format!("alice:{HASH}:"));
                *data = text.into_bytes();
            }
            Output::default()
        })
}

#[test]
fn a_new_admin_user_gets_account_password_sudo_and_key_and_a_rerun_does_nothing() {
    let host = user_host();
    let m = users::Users {
        users: vec![AdminUser {
            username: "alice".into(),
            password_hash: Some(PasswordHash("env:ADMIN_HASH".into())),
            sudo_access: true,
            ssh_public_key: Some("ssh-ed25519 AAAAalice alice@desk".into()),
        }],
    };
    let plan = apply_twice(&host, &m, &secrets);
    assert_eq!(
        summaries(&plan),
        [
            "run `useradd --create-home --user-group --shell /bin/bash --home-dir /home/alice alice`",
            "run `chpasswd --encrypted (standard input: <secret env:ADMIN_HASH>)`",
            "write /etc/sudoers.d/phoenix-alice (mode 0440), checked with `visudo -cf <new file>`",
            "directory /home/alice/.ssh (mode 0700)",
            "write /home/alice/.ssh/authorized_keys (mode 0600, owner alice:alice)",
        ]
    );
    // The hash reached chpasswd's standard input, and nothing else.
    let json = serde_json::to_string(&plan).expect("json");
    assert!(!json.contains(HASH) && !format!("{:?}", host.log()).contains(HASH), "{json}");
    assert_eq!(host.stdins(), vec![format!("alice:{HASH}\n").into_bytes()]);
    assert_eq!(
        host.text("/etc/sudoers.d/phoenix-alice").as_deref(),
        Some("# Managed by phoenix setup-hypervisor (users[].sudo_access).\nalice ALL=(ALL:ALL) ALL\n")
    );
    // The sudoers file was checked under another name, then renamed into place.
    assert!(host.tree().keys().all(|p| !p.to_string_lossy().contains("phoenix-new")));
    assert!(
        host.text("/home/alice/.ssh/authorized_keys").expect("keys").contains("\nssh-ed25519 AAAAalice alice@desk\n")
    );
}

#[test]
fn an_existing_users_other_keys_are_kept_backed_up_and_not_set_means_no_password() {
    let host = user_host();
    let bob = |key: Option<&str>, sudo: bool| users::Users {
        users: vec![AdminUser {
            username: "bob".into(),
            password_hash: Some(PasswordHash("NOT_SET".into())),
            sudo_access: sudo,
            ssh_public_key: key.map(str::to_string),
        }],
    };
    let plan = apply_twice(&host, &bob(Some("ssh-rsa AAAAphoenix admin"), true), &secrets);
    // No password step: NOT_SET sets none, and sudo cannot ask for one.
    assert!(plan.steps.iter().all(|s| !s.summary().contains("chpasswd")), "{:?}", summaries(&plan));
    assert!(host.text("/etc/sudoers.d/phoenix-bob").expect("drop-in").contains("bob ALL=(ALL:ALL) NOPASSWD: ALL"));
    let keys = host.text("/home/bob/.ssh/authorized_keys").expect("keys");
    assert!(keys.starts_with("ssh-ed25519 AAAAother bob@laptop\n# BEGIN phoenix admin-key"), "{keys}");
    assert_eq!(
        host.text("/home/bob/.ssh/authorized_keys.phoenix-orig").as_deref(),
        Some("ssh-ed25519 AAAAother bob@laptop\n")
    );

    // An empty key means none: Phoenix's block goes, the user's own key stays; sudo taken away.
    let plan = apply_twice(&host, &bob(Some(""), false), &secrets);
    assert_eq!(
        summaries(&plan),
        [
            "remove /etc/sudoers.d/phoenix-bob",
            "write /home/bob/.ssh/authorized_keys (mode 0600, owner bob:bob), original kept as /home/bob/.ssh/authorized_keys.phoenix-orig"
        ]
    );
    assert_eq!(host.text("/home/bob/.ssh/authorized_keys").as_deref(), Some("ssh-ed25519 AAAAother bob@laptop\n"));
}

#[test]
fn a_password_reference_that_is_not_a_hash_or_cannot_be_read_is_refused_without_quoting_it() {
    let host = user_host();
    let m = |r: &str| users::Users {
        users: vec![AdminUser {
            username: "alice".into(),
            password_hash: Some(PasswordHash(r.into())),
            sudo_access: false,
            ssh_public_key: None,
        }],
    };
    let e = m("env:SMB_PASSWORD").plan_on(&host, &secrets).expect_err("plain password");
    assert!(e.message.contains("not a crypt(3) hash") && !e.message.contains(SMB_PASSWORD), "{e}");
    let e = m("env:NOPE").plan_on(&host, &secrets).expect_err("unset");
    assert!(e.message.contains("env:NOPE"), "{e}");
    // How to fix it stays the error's detail, for the CLI to show as the hint.
    let hinted = |r: &str| -> Result<String, phoenix_host::HostError> {
        Err(phoenix_host::HostError::with_detail(format!("the secret reference {r} is not set"), "export it"))
    };
    let e = m("env:NOPE").plan_on(&host, &hinted).expect_err("unset");
    assert_eq!(e.message, "user alice: the secret reference env:NOPE is not set");
    assert_eq!(e.detail.as_deref(), Some("export it"));
}

#[test]
fn nfs_exports_go_to_phoenixs_own_file_and_exportfs_runs_only_when_it_changes() {
    let host = RecordingHost::new().file("/etc/exports", "/srv/theirs 10.0.0.0/8(ro)\n").ok_program("exportfs");
    let export = |path: &str| NfsExport {
        path: path.into(),
        clients: vec!["10.0.0.0/24".into(), "backup.lab".into()],
        options: vec!["rw".into(), "sync".into(), "no_subtree_check".into()],
    };
    let m = nfs::Nfs { exports: vec![export("/srv/data"), export("/srv/media files")] };
    let plan = apply_twice(&host, &m, &secrets);
    assert_eq!(
        summaries(&plan),
        [
            "directory /etc/exports.d (mode 0755)",
            "write /etc/exports.d/phoenix.exports (mode 0644)",
            "run `exportfs -ra`"
        ]
    );
    let text = host.text(nfs::EXPORTS_FILE).expect("exports");
    assert!(
        text.contains("\n/srv/data 10.0.0.0/24(rw,sync,no_subtree_check) backup.lab(rw,sync,no_subtree_check)\n"),
        "{text}"
    );
    assert!(text.contains("\n\"/srv/media files\" 10.0.0.0/24("), "{text}");
    assert_eq!(
        host.text("/etc/exports").as_deref(),
        Some("/srv/theirs 10.0.0.0/8(ro)\n"),
        "/etc/exports is never touched"
    );

    // No exports configured: Phoenix's file goes, /etc/exports stays.
    let plan = apply_twice(&host, &nfs::Nfs { exports: vec![] }, &secrets);
    assert_eq!(summaries(&plan), ["remove /etc/exports.d/phoenix.exports", "run `exportfs -ra`"]);
    assert_eq!(host.text("/etc/exports").as_deref(), Some("/srv/theirs 10.0.0.0/8(ro)\n"));

    let bad =
        nfs::Nfs { exports: vec![NfsExport { path: "/srv".into(), clients: vec!["a b".into()], options: vec![] }] };
    assert!(bad.plan_on(&host, &secrets).is_err());
}

#[test]
fn ntp_servers_go_to_phoenixs_own_chrony_sources_and_chrony_reloads_only_when_they_change() {
    let chrony_conf = "pool 2.debian.pool.ntp.org iburst\nsourcedir /etc/chrony/sources.d\n";
    let host = RecordingHost::new().file("/etc/chrony/chrony.conf", chrony_conf).ok_program("chronyc");
    let m = ntp::Ntp { servers: vec!["0.de.pool.ntp.org".into(), "2001:db8::123".into()] };
    let plan = apply_twice(&host, &m, &secrets);
    assert_eq!(
        summaries(&plan),
        [
            "directory /etc/chrony/sources.d (mode 0755)",
            "write /etc/chrony/sources.d/phoenix.sources (mode 0644)",
            "run `chronyc reload sources`"
        ]
    );
    let text = host.text(ntp::SOURCES_FILE).expect("sources");
    assert!(text.ends_with("server 0.de.pool.ntp.org iburst\nserver 2001:db8::123 iburst\n"), "{text}");
    assert_eq!(host.text("/etc/chrony/chrony.conf").as_deref(), Some(chrony_conf), "chrony.conf is never touched");

    // Another server: the file is written again and chrony reloads; none: the file goes.
    let plan = apply_twice(&host, &ntp::Ntp { servers: vec!["192.0.2.1".into()] }, &secrets);
    assert_eq!(
        summaries(&plan),
        ["write /etc/chrony/sources.d/phoenix.sources (mode 0644)", "run `chronyc reload sources`"]
    );
    assert_eq!(plan.steps[0].reason, "the configured servers changed");
    let plan = apply_twice(&host, &ntp::Ntp { servers: vec![] }, &secrets);
    assert_eq!(summaries(&plan), ["remove /etc/chrony/sources.d/phoenix.sources", "run `chronyc reload sources`"]);

    // Without chrony: the file is written and the plan says when it takes effect.
    let bare = RecordingHost::new();
    let plan = m.plan_on(&bare, &secrets).expect("plan");
    assert!(plan.notes.iter().any(|n| n.contains("chrony is not installed")), "{:?}", plan.notes);
    // A server that would start another chrony directive is refused.
    let bad = ntp::Ntp { servers: vec!["pool.example iburst\nmakestep".into()] };
    assert!(bad.plan_on(&host, &secrets).is_err());
    assert!(ntp::Ntp { servers: vec!["-opt".into()] }.plan_on(&host, &secrets).is_err());
}

const SMB_CONF: &str = "[global]\n   workgroup = WORKGROUP\n\n[theirs]\n   path = /srv/theirs\n";

fn samba_host() -> RecordingHost {
    RecordingHost::new()
        .file(samba::SMB_CONF, SMB_CONF)
        .file(samba::SMBD_PID, "42\n")
        .ok_program("testparm")
        .ok_program("smbcontrol")
        .program("pdbedit", |_, tree| {
            let users = tree.contains_key(std::path::Path::new("/var/lib/samba/added"));
            Output { stdout: if users { "phoenix:1000:\n".into() } else { String::new() }, ..Output::default() }
        })
        .program("smbpasswd", |_, tree| {
            tree.insert(
                "/var/lib/samba/added".into(),
                phoenix_host::double::Node::File {
                    data: vec![],
                    mode: 0o600,
                    ids: phoenix_host::host::Ids { uid: 0, gid: 0 },
                },
            );
            Output::default()
        })
}

fn shares() -> Vec<SambaShare> {
    vec![SambaShare {
        name: "data".into(),
        path: "/srv/data".into(),
        options: BTreeMap::from([
            ("browseable".to_string(), "yes".to_string()),
            ("read only".to_string(), "no".to_string()),
        ]),
        valid_users: vec!["phoenix".into()],
    }]
}

#[test]
fn samba_shares_go_to_an_included_file_smb_conf_gets_one_marked_line_and_a_backup() {
    let host = samba_host();
    let m = samba::Samba { shares: shares(), user: Some(("phoenix".into(), Some("env:SMB_PASSWORD".into()))) };
    let plan = apply_twice(&host, &m, &secrets);
    assert_eq!(
        summaries(&plan),
        [
            "write /etc/samba/phoenix-shares.conf (mode 0644), checked with `testparm -s <new file>`",
            "write /etc/samba/smb.conf (mode 0644), checked with `testparm -s <new file>`, original kept as /etc/samba/smb.conf.phoenix-orig",
            "run `smbcontrol smbd reload-config`",
            "run `smbpasswd -a -s phoenix (standard input: <secret env:SMB_PASSWORD>)`",
        ]
    );
    let conf = host.text(samba::SMB_CONF).expect("smb.conf");
    assert!(conf.starts_with(SMB_CONF), "the rest of smb.conf is kept: {conf}");
    assert!(conf.ends_with("include = /etc/samba/phoenix-shares.conf\n# END phoenix samba-shares\n"), "{conf}");
    assert_eq!(host.text("/etc/samba/smb.conf.phoenix-orig").as_deref(), Some(SMB_CONF));
    let include = host.text(samba::SHARES_FILE).expect("shares");
    assert!(
        include.contains(
            "[data]\n   path = /srv/data\n   valid users = phoenix\n   browseable = yes\n   read only = no\n"
        ),
        "{include}"
    );
    // The password went only to smbpasswd's standard input.
    assert_eq!(host.stdins(), vec![format!("{SMB_PASSWORD}\n{SMB_PASSWORD}\n").into_bytes()]);
    assert!(!serde_json::to_string(&plan).expect("json").contains(SMB_PASSWORD));

    // Without shares, Phoenix's line and file go; the original backup is not overwritten.
    let plan = apply_twice(&host, &samba::Samba { shares: vec![], user: None }, &secrets);
    assert_eq!(plan.steps.len(), 3, "{:?}", summaries(&plan));
    assert_eq!(host.text(samba::SMB_CONF).as_deref(), Some(SMB_CONF));
}

#[test]
fn a_share_that_would_break_smb_conf_is_refused_at_plan_time() {
    let host = samba_host();
    let mut bad = shares();
    bad[0].options.insert("path".into(), "/elsewhere".into());
    let e = samba::Samba { shares: bad, user: None }.plan_on(&host, &secrets).expect_err("path in options");
    assert!(e.message.contains("give `path`"), "{e}");
    let mut bad = shares();
    bad[0].name = "global".into();
    assert!(samba::Samba { shares: bad, user: None }.plan_on(&host, &secrets).is_err());
    let mut bad = shares();
    bad[0].options.insert("comment".into(), "two\nlines".into());
    assert!(samba::Samba { shares: bad, user: None }.plan_on(&host, &secrets).is_err());
}

#[test]
fn subids_add_only_missing_ranges_in_a_block_and_never_touch_other_lines() {
    let original = "root:100000:65536\nalice:165536:65536\n";
    let host = RecordingHost::new().file("/etc/subuid", original).file("/etc/subgid", original);
    let m = subids::SubIds { uids: vec![(100_000, 65_536), (200_000, 65_536)], gids: vec![(100_000, 1000)] };
    let plan = apply_twice(&host, &m, &secrets);
    assert_eq!(summaries(&plan), ["write /etc/subuid (mode 0644), original kept as /etc/subuid.phoenix-orig"]);
    let text = host.text("/etc/subuid").expect("subuid");
    assert!(text.starts_with(original) && text.contains("\nroot:200000:65536\n# END"), "{text}");
    assert_eq!(host.text("/etc/subgid").as_deref(), Some(original), "covered by an existing line");
    // No longer needed: Phoenix's block goes, every other line stays.
    apply_twice(&host, &subids::SubIds { uids: vec![], gids: vec![] }, &secrets);
    assert_eq!(host.text("/etc/subuid").as_deref(), Some(original));
}

#[test]
fn apparmor_profile_is_checked_and_loaded_only_where_the_kernel_has_apparmor() {
    // Without LXC's abstractions, which the profile includes, nothing is written: the plan says so.
    let host = RecordingHost::new().dirs(&["/etc/apparmor.d"]).ok_program("apparmor_parser");
    let plan = apparmor::AppArmor.plan_on(&host, &secrets).expect("plan");
    assert!(plan.steps.is_empty(), "{:?}", summaries(&plan));
    assert!(plan.notes[0].contains("LXC's AppArmor abstractions are not installed"), "{:?}", plan.notes);

    let host = host.file(apparmor::LXC_ABSTRACTION, "# LXC's container-base\n");
    let plan = apply_twice(&host, &apparmor::AppArmor, &secrets);
    assert_eq!(
        summaries(&plan),
        [
            "write /etc/apparmor.d/lxc-phoenix-mounting (mode 0644), checked with `apparmor_parser -Q -K --base /etc/apparmor.d <new file>`"
        ]
    );
    assert!(plan.notes[0].contains("the kernel has no AppArmor"), "{:?}", plan.notes);

    let host = host.file(apparmor::KERNEL_SWITCH, "Y\n").file(apparmor::LOADED, "lxc-container-default (enforce)\n");
    let plan = apparmor::AppArmor.plan_on(&host, &secrets).expect("plan");
    assert!(
        matches!(&plan.steps[..], [s] if matches!(&s.action, Action::Run { command } if command.display() == "apparmor_parser -r -W --base /etc/apparmor.d /etc/apparmor.d/lxc-phoenix-mounting")),
        "{:?}",
        summaries(&plan)
    );
    let host = host.file(apparmor::LOADED, "lxc-phoenix-mounting (enforce)\n");
    assert!(apparmor::AppArmor.plan_on(&host, &secrets).expect("plan").steps.is_empty());
}

#[test]
fn planning_cannot_change_the_host_even_if_a_module_tried() {
    let host = RecordingHost::new().file("/etc/x", "x");
    let ro = phoenix_host::ReadOnly(&host);
    assert!(ro.write(std::path::Path::new("/etc/x"), b"y", 0o644, None).is_err());
    assert!(ro.remove(std::path::Path::new("/etc/x")).is_err());
    let change =
        phoenix_host::host::Invocation { probe: false, ..phoenix_host::host::Invocation::probe("rm", &["/etc/x"]) };
    assert!(ro.run(&change).expect_err("refused").message.contains("change nothing"));
    assert_eq!(host.changes(), vec![]);
    assert_eq!(host.text("/etc/x").as_deref(), Some("x"));
}
