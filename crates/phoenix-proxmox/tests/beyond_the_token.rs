//! What an API token may not do, done the way Proxmox allows, against the PVE test double and its
//! nodes: GPUs (`dev[n]`), bind mounts and feature flags with `pct set` on the node (a template
//! with device passthrough is cloned by the token, which may copy it); raw `lxc.*` lines, the AppArmor profile and
//! the ID map edited in `/etc/pve/lxc/<id>.conf`, only in its live section. The plan names the
//! route of each; without a node channel it refuses them. With a `root@pam` ticket, what Proxmox
//! reserves to root@pam goes through the API instead.

mod support;

use phoenix_backend::{Backend, GuestConfig};
use phoenix_engine::GuestOutcome;
use phoenix_pve_double::PveVersion;
use support::{apply, backend, channel, container, estate, root_client, route, start};

const SHARED: &str =
    r#", "shared_volumes": {"models": {"host_path": "/fastData/shared-models", "mounts": {"950": "/models"}}}"#;

fn containers(raw_900: &str, gpus_950: &str) -> String {
    [
        container(
            900,
            "gpu-template",
            &format!(
                r#", "template": "local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst", "template_snapshot_name": "ready",
                   "gpu_assignment": "0", "pct_options": ["nesting=1", "keyctl=1"], "lxc_options": ["{raw_900}"]"#
            ),
        ),
        container(
            950,
            "vllm",
            &format!(
                r#", "clone_from_ctid": "900", "gpu_assignment": "{gpus_950}", "apparmor_profile": "unconfined",
                   "id_maps": [{{"type": "uid", "container_id": 1000, "host_id": 1000, "size": 1}},
                               {{"type": "gid", "container_id": 1000, "host_id": 1000, "size": 1}}]"#
            ),
        ),
    ]
    .join(",")
}

/// Lets root map host ID 1000 on pve1 (`/etc/subuid`, `/etc/subgid`), as 950's ID map needs:
/// without it, LXC cannot start 950.
fn delegate_id_1000(double: &phoenix_pve_double::PveDouble) {
    for file in ["/etc/subuid", "/etc/subgid"] {
        double.set_node_file("pve1", file, "root:100000:65536\nroot:1000:1\n");
    }
}

#[test]
fn root_only_settings_and_raw_lines_go_through_the_node() {
    for version in PveVersion::ALL {
        let double = start(version);
        double.set_devices("pve1", &["/dev/nvidia0", "/dev/nvidia1", "/dev/nvidiactl", "/dev/nvidia-uvm"]);
        delegate_id_1000(&double);
        let backend = backend(&double, Some(channel(&double)));
        let dir = tempfile::tempdir().expect("tmp");
        let first = estate(dir.path(), &double, SHARED, &containers("lxc.cgroup2.devices.allow = c 195:* rwm", "1,0"));

        let (plan, report) = apply(&backend, &first, dir.path());
        assert!(report.outcomes.values().all(|o| *o == GuestOutcome::Created), "{version:?}: {report:#?}");
        let notes = plan.notes.join("\n");
        assert!(notes.contains("`pct set` on the node") && notes.contains("950 gpus"), "{notes}");
        assert!(notes.contains("950 mount:/models") && notes.contains("900 flags"), "{notes}");
        assert!(notes.contains("edit of /etc/pve/lxc/<id>.conf") && notes.contains("950 idmap"), "{notes}");
        // Every API request was one a token may make.
        let refused: Vec<_> = double.requests().into_iter().filter(|r| r.status != 200).collect();
        assert!(refused.is_empty(), "{version:?}: {refused:#?}");

        let conf = double.conf_file(950).expect("950 exists");
        for line in [
            "dev0: /dev/nvidia0,mode=0666",
            "dev1: /dev/nvidia1,mode=0666",
            "dev2: /dev/nvidiactl,mode=0666",
            "dev3: /dev/nvidia-uvm,mode=0666",
            "mp0: /fastData/shared-models,mp=/models",
            "lxc.idmap: u 0 100000 1000",
            "lxc.idmap: u 1000 1000 1",
            "lxc.idmap: u 1001 101001 64535",
            "lxc.idmap: g 1000 1000 1",
            "lxc.apparmor.profile: unconfined",
            // Raw lines survive the clone.
            "lxc.cgroup2.devices.allow: c 195:* rwm",
        ] {
            assert!(conf.lines().any(|l| l == line), "{version:?}: no {line:?} in\n{conf}");
        }
        let template = double.conf_file(900).expect("900 exists");
        assert!(template.contains("features: keyctl=1,nesting=1\n"), "{template}");
        // The bind mount's host directory was made on the node, for the container's root.
        assert_eq!(double.host_dir("/fastData/shared-models").as_deref(), Some("100000:100000"));
        let commands: Vec<String> = double.node_channel().commands().iter().map(|c| c.argv.join(" ")).collect();
        // The template's device passthrough is copied by the token's clone: Proxmox reserves
        // setting `dev[n]` to root@pam, not copying it.
        assert!(!commands.iter().any(|c| c.starts_with("pct clone")), "{commands:#?}");
        let cloned =
            double.requests().into_iter().find(|r| r.method == "POST" && r.path == "/nodes/pve1/lxc/900/clone");
        assert!(cloned.is_some_and(|r| r.token && r.params.get("snapname").map(String::as_str) == Some("ready")));

        // Applied as configured: nothing to do.
        let (plan, _) = apply(&backend, &first, dir.path());
        assert!(
            plan.is_empty(),
            "{version:?}: {:#?}",
            plan.guests.iter().filter(|g| !g.steps.is_empty()).collect::<Vec<_>>()
        );

        // A raw line of the template changes after its snapshot: only the live section changes.
        let snapshot = |text: &str| text[text.find("\n[ready]").expect("snapshot section")..].to_string();
        let before = snapshot(&double.conf_file(900).expect("900"));
        let second = estate(dir.path(), &double, SHARED, &containers("lxc.cgroup2.devices.allow: c 195:* rw", "0,1"));
        let (plan, report) = apply(&backend, &second, dir.path());
        assert!(!report.failed(), "{report:#?}");
        let busy: Vec<_> = plan.guests.iter().filter(|g| !g.steps.is_empty()).map(|g| g.id).collect();
        assert_eq!(busy, vec![900]);
        let after = double.conf_file(900).expect("900");
        assert!(after[..after.find("\n[ready]").expect("section")].contains("lxc.cgroup2.devices.allow: c 195:* rw\n"));
        assert_eq!(snapshot(&after), before, "the snapshot's section was touched");
    }
}

#[test]
fn with_a_root_ticket_root_only_settings_go_through_the_api() {
    for version in PveVersion::ALL {
        let double = start(version);
        double.set_devices("pve1", &["/dev/nvidia0", "/dev/nvidia1", "/dev/nvidiactl", "/dev/nvidia-uvm"]);
        delegate_id_1000(&double);
        let backend = backend(&double, Some(channel(&double))).with_root_api(root_client(&double));
        let dir = tempfile::tempdir().expect("tmp");
        let first = estate(dir.path(), &double, SHARED, &containers("lxc.cgroup2.devices.allow = c 195:* rwm", "1"));

        let (plan, report) = apply(&backend, &first, dir.path());
        assert!(report.outcomes.values().all(|o| *o == GuestOutcome::Created), "{version:?}: {report:#?}");
        let notes = plan.notes.join("\n");
        assert!(notes.contains("the root@pam ticket") && notes.contains("950 mount:/models"), "{notes}");
        assert!(notes.contains("900 flags") && notes.contains("950 gpus"), "{notes}");
        assert!(!notes.contains("pct set"), "{notes}");

        let commands: Vec<String> = double.node_channel().commands().iter().map(|c| c.argv.join(" ")).collect();
        assert!(!commands.iter().any(|c| c.starts_with("pct set") || c.starts_with("pct clone")), "{commands:#?}");
        let as_root: Vec<_> =
            double.requests().into_iter().filter(|r| !r.token && r.path != "/access/ticket").collect();
        assert!(as_root.iter().all(|r| r.status == 200), "{as_root:#?}");
        let root_put = |key: &str| {
            as_root.iter().any(|r| r.method == "PUT" && r.params.contains_key(key) && r.params.contains_key("digest"))
        };
        assert!(root_put("dev0") && root_put("mp0") && root_put("features"), "{as_root:#?}");
        // The ticket is only for that: everything else goes with the token, the clone included.
        assert!(as_root.iter().all(|r| r.method != "POST"), "{as_root:#?}");
        assert!(!as_root.iter().any(|r| r.params.contains_key("memory")), "{as_root:#?}");

        let conf = double.conf_file(950).expect("950 exists");
        for line in ["dev0: /dev/nvidia1,mode=0666", "mp0: /fastData/shared-models,mp=/models"] {
            assert!(conf.lines().any(|l| l == line), "{version:?}: no {line:?} in\n{conf}");
        }
        assert!(double.conf_file(900).expect("900").contains("features: keyctl=1,nesting=1\n"));
        let (plan, _) = apply(&backend, &first, dir.path());
        assert!(
            plan.is_empty(),
            "{version:?}: {:#?}",
            plan.guests.iter().filter(|g| !g.steps.is_empty()).collect::<Vec<_>>()
        );
    }
    // Bind mounts and flags need only the ticket; GPUs still need the node to list its devices.
    let double = start(PveVersion::V9);
    let ticket_only = backend(&double, None).with_root_api(root_client(&double));
    let how = route(&ticket_only, "mount:/models", "bind:/srv/models", &GuestConfig::default())
        .expect("by ticket")
        .expect("a route");
    assert!(how.contains("without a node channel the host directory must exist on the node"), "{how}");
    assert!(
        route(&ticket_only, "gpus", "0", &GuestConfig::default())
            .expect_err("devices are listed on the node")
            .contains("node channel")
    );

    // Without the node channel nobody makes the directory: the start fails as on Proxmox, and says why.
    let dir = tempfile::tempdir().expect("tmp");
    let lone = container(970, "bound", r#", "template": "local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst""#);
    let shared = r#", "shared_volumes": {"data": {"host_path": "/srv/nowhere", "mounts": {"970": "/data"}}}"#;
    let (_, report) = apply(&ticket_only, &estate(dir.path(), &double, shared, &lone), dir.path());
    let failure = format!("{report:?}");
    assert!(report.failed() && failure.contains("directory '/srv/nowhere' does not exist"), "{failure}");
    double.add_host_dir("/srv/nowhere");
    let (_, report) = apply(&ticket_only, &estate(dir.path(), &double, shared, &lone), dir.path());
    assert!(!report.failed(), "{report:#?}");
}

#[test]
fn without_a_node_channel_the_plan_refuses_what_needs_it_and_missing_gpus_are_named() {
    let double = start(PveVersion::V9);
    let no_channel = backend(&double, None);
    assert_eq!(route(&no_channel, "cores", "2", &GuestConfig::default()), Ok(None));
    let e = route(&no_channel, "gpus", "0", &GuestConfig::default()).expect_err("needs the node");
    assert!(e.contains("no node channel is configured"), "{e}");
    assert!(route(&no_channel, "mount:/models", "bind:/srv/models", &GuestConfig::default()).is_err());
    assert!(
        route(&no_channel, "mount:/data", "volume:local-zfs:8", &GuestConfig::default())
            .expect("a volume is fine")
            .is_none()
    );
    assert!(route(&no_channel, "flags", "nesting=1", &GuestConfig::default()).expect("nesting is fine").is_none());
    assert!(!no_channel.capabilities().gpu);

    double.set_devices("pve1", &["/dev/nvidia0", "/dev/nvidiactl"]);
    let backend = backend(&double, Some(channel(&double)));
    let dir = tempfile::tempdir().expect("tmp");
    let one = container(
        960,
        "gpu",
        r#", "template": "local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst", "gpu_assignment": "0,3""#,
    );
    let gpu = estate(dir.path(), &double, "", &one);
    let (_, report) = apply(&backend, &gpu, dir.path());
    assert!(report.failed());
    let text = format!("{report:?}");
    assert!(text.contains("GPU 3 is not on node pve1"), "{text}");
}

#[test]
fn a_clone_of_a_snapshot_gets_the_raw_lines_of_the_snapshot() {
    let double = start(PveVersion::V9);
    let backend = backend(&double, Some(channel(&double)));
    let dir = tempfile::tempdir().expect("tmp");
    let template = |raw: &str| {
        container(
            900,
            "tpl",
            &format!(
                r#", "template": "local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst", "template_snapshot_name": "ready",
                   "lxc_options": ["{raw}"]"#
            ),
        )
    };
    let clone = container(951, "web", r#", "clone_from_ctid": "900""#);
    let (_, report) =
        apply(&backend, &estate(dir.path(), &double, "", &template("lxc.mount.auto = proc:rw")), dir.path());
    assert!(!report.failed(), "{report:#?}");
    // The template's live raw line changes after its snapshot was taken.
    let (_, report) =
        apply(&backend, &estate(dir.path(), &double, "", &template("lxc.mount.auto = proc:mixed")), dir.path());
    assert!(!report.failed(), "{report:#?}");
    let both = [template("lxc.mount.auto = proc:mixed"), clone].join(",");
    let (_, report) = apply(&backend, &estate(dir.path(), &double, "", &both), dir.path());
    assert!(!report.failed(), "{report:#?}");
    let conf = double.conf_file(951).expect("cloned");
    assert!(conf.contains("lxc.mount.auto: proc:rw\n") && !conf.contains("proc:mixed"), "{conf}");
    let source = double.conf_file(900).expect("template");
    let (live, snapshot) = source.split_once("\n[ready]").expect("a snapshot section");
    assert!(
        live.contains("lxc.mount.auto: proc:mixed\n") && snapshot.contains("lxc.mount.auto: proc:rw\n"),
        "{source}"
    );
}

/// A privileged container's feature flags, `nesting=1` included, are root@pam's alone
/// (`check_ct_modify_config_perm`): created with a token, its flags go through `pct set` on the
/// node; without a node channel or a root ticket the plan refuses them before anything is made.
#[test]
fn a_privileged_containers_feature_flags_go_through_the_node() {
    for version in PveVersion::ALL {
        let double = start(version);
        let backend = backend(&double, Some(channel(&double)));
        let dir = tempfile::tempdir().expect("tmp");
        let privileged = container(
            960,
            "docker-host",
            r#", "template": "local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst", "pct_options": ["nesting=1"]"#,
        )
        .replace(r#""unprivileged": true"#, r#""unprivileged": false"#);
        let config = estate(dir.path(), &double, "", &privileged);
        let (plan, report) = apply(&backend, &config, dir.path());
        assert!(!report.failed(), "{version:?}: {report:#?}");
        let notes = plan.notes.join("\n");
        assert!(notes.contains("`pct set` on the node") && notes.contains("960 flags"), "{notes}");
        let refused: Vec<_> = double.requests().into_iter().filter(|r| r.status != 200).collect();
        assert!(refused.is_empty(), "{version:?}: {refused:#?}");
        let create = double
            .requests()
            .into_iter()
            .find(|r| r.method == "POST" && r.path == "/nodes/pve1/lxc")
            .expect("create request");
        assert!(!create.params.contains_key("features"), "{:?}", create.params);
        let conf = double.conf_file(960).expect("960 exists");
        assert!(conf.contains("features: nesting=1\n") && conf.contains("unprivileged: 0\n"), "{conf}");
        // The same flag on an unprivileged container is the token's to set.
        assert_eq!(route(&backend, "flags", "nesting=1", &GuestConfig::default()).expect("route"), None);

        let no_channel = support::backend(&double, None);
        let e = route(&no_channel, "flags", "nesting=1", &config_of(&[("unprivileged", "0")]))
            .expect_err("no way to deliver it");
        assert!(e.contains("privileged container") && e.contains("node channel"), "{e}");
    }
}

fn config_of(fields: &[(&str, &str)]) -> GuestConfig {
    GuestConfig::parse(fields.iter().copied()).expect("config")
}
