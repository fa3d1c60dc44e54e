//! Settings taken out of a container's configuration are taken off the container, against the
//! PVE test double: mount points (a volume detached and kept as `unused[n]`, never deleted),
//! GPUs (their `dev[n]`, the shared NVIDIA nodes only with the last GPU), tags, DNS servers and
//! raw `lxc.*` lines. The plan shows each removal; the apply after it has nothing to do.

mod support;

use phoenix_engine::GuestOutcome;
use phoenix_plan::{Action, Plan};
use phoenix_pve_double::{PveDouble, PveVersion};
use support::{apply, backend, channel, client, estate, root_client, start};

/// Container 950 from an OS template, with the bind mount `/keep`, and, with `full`, a volume
/// mount, another bind mount, two GPUs (`gpus`), tags, a DNS server and a raw line.
fn config(full: bool, gpus: &str) -> String {
    let (binds, ns, extra) = if full {
        (
            r#", {"host_path": "/srv/data", "container_path": "/data"}"#,
            r#", "nameservers": ["10.0.0.1"]"#,
            format!(
                r#", "volumes": [{{"name": "models", "pool": "local-zfs", "size_gb": 8, "mount_point": "/models"}}],
                   "gpu_assignment": "{gpus}", "tags": ["gpu", "web"],
                   "lxc_options": ["lxc.cgroup2.devices.allow = c 195:* rwm"]"#
            ),
        )
    } else {
        ("", "", String::new())
    };
    format!(
        r#""950": {{"name": "vllm", "memory_mb": 1024, "cores": 2, "storage_pool": "local-zfs", "storage_size_gb": 16,
            "network_config": {{"name": "eth0", "bridge": "vmbr0", "ip": "10.0.0.160/24", "gw": "10.0.0.1" {ns}}},
            "unprivileged": true, "template": "local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst",
            "mount_points": [{{"host_path": "/srv/keep", "container_path": "/keep"}} {binds}] {extra}}}"#
    )
}

/// The configure step's changes of 950: field, old value, new value (`None`: removed).
fn changes(plan: &Plan) -> Vec<(String, Option<String>, Option<String>)> {
    plan.guest(950)
        .into_iter()
        .flat_map(|g| &g.steps)
        .filter_map(|s| match &s.action {
            Action::Configure { changes } => Some(changes),
            _ => None,
        })
        .flatten()
        .map(|c| {
            (c.field.to_string(), c.old.as_ref().map(ToString::to_string), c.new.as_ref().map(ToString::to_string))
        })
        .collect()
}

fn conf(double: &PveDouble) -> String {
    double.conf_file(950).expect("950 exists")
}

/// The live section of the conf file (what comes before the first snapshot section).
fn live(double: &PveDouble) -> String {
    let text = conf(double);
    text.split("\n[").next().unwrap_or_default().to_string()
}

#[test]
fn settings_removed_from_the_configuration_are_removed_from_the_container_and_data_is_kept() {
    // Root-only settings through `pct` on the node, then through the root@pam ticket.
    for (version, ticket) in PveVersion::ALL.into_iter().flat_map(|v| [(v, false), (v, true)]) {
        let double = start(version);
        double.set_devices("pve1", &["/dev/nvidia0", "/dev/nvidia1", "/dev/nvidiactl", "/dev/nvidia-uvm"]);
        let backend = backend(&double, Some(channel(&double)));
        let backend = if ticket { backend.with_root_api(root_client(&double)) } else { backend };
        let dir = tempfile::tempdir().expect("tmp");

        // Built with everything.
        let (_, report) = apply(&backend, &estate(dir.path(), &double, "", &config(true, "0,1")), dir.path());
        assert_eq!(report.outcomes.get(&950), Some(&GuestOutcome::Created), "{version:?}: {report:#?}");
        let before = live(&double);
        for line in [
            "dev0: /dev/nvidia0,mode=0666",
            "dev1: /dev/nvidia1,mode=0666",
            "dev2: /dev/nvidiactl,mode=0666",
            "dev3: /dev/nvidia-uvm,mode=0666",
            "tags: gpu;web",
            "nameserver: 10.0.0.1",
            "lxc.cgroup2.devices.allow: c 195:* rwm",
        ] {
            assert!(before.lines().any(|l| l == line), "{version:?}: no {line:?} in\n{before}");
        }
        let mounts: Vec<&str> = before.lines().filter(|l| l.starts_with("mp")).collect();
        assert_eq!(mounts.len(), 3, "{before}");
        let volume = mounts
            .iter()
            .find(|l| l.contains("mp=/models"))
            .and_then(|l| l.split_once(": "))
            .and_then(|(_, v)| v.split(',').next())
            .expect("the volume mount")
            .to_string();
        assert!(volume.starts_with("local-zfs:subvol-950-disk-"), "{volume}");
        let keep = mounts.iter().find(|l| l.contains("mp=/keep")).expect("/keep").to_string();

        // One GPU fewer: only that GPU's device goes; the shared ones stay.
        let (plan, report) = apply(&backend, &estate(dir.path(), &double, "", &config(true, "1")), dir.path());
        assert!(!report.failed(), "{version:?}: {report:#?}");
        assert_eq!(changes(&plan), [("gpus".to_string(), Some("0,1".to_string()), Some("1".to_string()))]);
        let now = live(&double);
        let devices: Vec<&str> =
            now.lines().filter(|l| l.starts_with("dev")).map(|l| &l[l.find(' ').unwrap_or(0)..]).collect();
        assert_eq!(
            devices,
            [" /dev/nvidia1,mode=0666", " /dev/nvidiactl,mode=0666", " /dev/nvidia-uvm,mode=0666"],
            "{now}"
        );

        // Everything but `/keep` taken out of the configuration: the plan shows each removal.
        let bare = estate(dir.path(), &double, "", &config(false, ""));
        let (plan, report) = apply(&backend, &bare, dir.path());
        assert!(!report.failed(), "{version:?}: {report:#?}");
        let removed: Vec<(String, Option<String>)> = changes(&plan)
            .into_iter()
            .map(|(field, old, new)| (field, if new.is_none() { old } else { Some(format!("changed to {new:?}")) }))
            .collect();
        let expected = [
            ("gpus", "1"),
            ("lxc.raw", "lxc.cgroup2.devices.allow: c 195:* rwm"),
            ("mount:/data", "bind:/srv/data"),
            ("mount:/models", "volume:local-zfs:8"),
            ("net.nameservers", "10.0.0.1"),
            ("tags", "gpu;web"),
        ];
        assert_eq!(removed, expected.map(|(f, o)| (f.to_string(), Some(o.to_string()))), "{version:?}");
        let configure = &plan.guest(950).expect("950").steps[0];
        assert!(
            configure.reason.contains("removed: gpus, lxc.raw, mount:/data, mount:/models"),
            "{}",
            configure.reason
        );
        assert!(configure.reason.contains("detached and kept"), "{}", configure.reason);
        let steps: Vec<&Action> = plan.guest(950).expect("950").steps.iter().map(|s| &s.action).collect();
        assert!(steps.contains(&&Action::Restart), "{steps:?}");
        let notes = plan.notes.join("\n");
        let root_route = if ticket { "the root@pam ticket" } else { "`pct set` on the node" };
        assert!(notes.contains(root_route) && notes.contains("950 gpus"), "{notes}");
        assert!(notes.contains("/etc/pve/lxc/<id>.conf") && notes.contains("950 lxc.raw"), "{notes}");

        // The double's container no longer has them; the volume is kept, unused; `/keep` is where it was.
        let after = live(&double);
        assert!(!after.lines().any(|l| l.starts_with("dev")), "{version:?}:\n{after}");
        assert!(
            !after.contains("tags:") && !after.contains("nameserver:") && !after.contains("lxc.cgroup2"),
            "{after}"
        );
        assert!(!after.contains("mp=/models") && !after.contains("mp=/data"), "{after}");
        assert!(after.lines().any(|l| l == keep), "{after}");
        assert!(after.lines().any(|l| l == format!("unused0: {volume}")), "{version:?}: volume not kept:\n{after}");
        // The device slots went as root@pam; the token asked only for what a token may do.
        let refused: Vec<_> = double.requests().into_iter().filter(|r| r.status != 200).collect();
        assert!(refused.is_empty(), "{version:?}: {refused:#?}");
        let commands: Vec<String> = double.node_channel().commands().iter().map(|c| c.argv.join(" ")).collect();
        let by_pct = commands.iter().any(|c| c == "pct set 950 --delete dev0,dev1,dev2");
        let by_ticket = double
            .requests()
            .iter()
            .any(|r| !r.token && r.method == "PUT" && r.params.get("delete").is_some_and(|d| d == "dev0,dev1,dev2"));
        assert_eq!((by_pct, by_ticket), (!ticket, ticket), "{version:?}: {commands:#?}");
        let deletes: Vec<String> =
            double.requests().into_iter().filter(|r| r.token).filter_map(|r| r.params.get("delete").cloned()).collect();
        // One API request deletes the mount points, by the slots their paths had, and the rest.
        let slot = |path: &str| {
            let line = mounts.iter().find(|l| l.contains(&format!("mp={path}"))).expect("mounted");
            line.split(':').next().unwrap_or_default().to_string()
        };
        let mut want = [slot("/data"), slot("/models"), "nameserver".into(), "tags".into()];
        want.sort();
        assert_eq!(deletes, [want.join(",")], "{version:?}");

        // Nothing left to do.
        let (plan, _) = apply(&backend, &bare, dir.path());
        assert!(plan.is_empty(), "{version:?}: {:#?}", changes(&plan));
        assert!(live(&double).contains(&format!("unused0: {volume}")));
    }
}

#[test]
fn the_double_deletes_as_proxmox_does() {
    let double = start(PveVersion::V9);
    // It is sent requests Proxmox refuses, on purpose.
    double.expect_refusals();
    let api = client(&double);
    let upid = api
        .request(
            "POST",
            "/nodes/pve1/lxc",
            &[
                ("vmid", "960".into()),
                ("ostemplate", "local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst".into()),
                ("mp0", "local-zfs:8,mp=/models".into()),
                ("mp1", "local-zfs:4,mp=/cache".into()),
            ],
        )
        .expect("create");
    assert!(upid.as_str().is_some());
    std::thread::sleep(std::time::Duration::from_millis(50));
    let root = root_client(&double);
    root.request("PUT", "/nodes/pve1/lxc/960/config", &[("dev0", "/dev/nvidia0".into())]).expect("root sets a device");
    let config = |k: &str| {
        api.request("GET", "/nodes/pve1/lxc/960/config", &[]).expect("config")[k].as_str().map(str::to_string)
    };

    // A token may not delete a device, even one it could see.
    let e = api.request("PUT", "/nodes/pve1/lxc/960/config", &[("delete", "dev0".into())]).expect_err("403");
    assert!(e.message.contains("only allowed for root@pam"), "{}", e.message);
    assert!(config("dev0").is_some());
    // A key is not set and deleted at once.
    let e = api
        .request(
            "PUT",
            "/nodes/pve1/lxc/960/config",
            &[("delete", "mp1".into()), ("mp1", "local-zfs:2,mp=/cache".into())],
        )
        .expect_err("400");
    assert!(e.detail.as_deref().unwrap_or_default().contains("at the same time"), "{e:?}");
    // Deleting volume mount points keeps their volumes, in the first free `unused[n]`.
    let models = config("mp0").expect("mp0");
    let cache = config("mp1").expect("mp1");
    api.request("PUT", "/nodes/pve1/lxc/960/config", &[("delete", "mp0".into())]).expect("delete mp0");
    api.request("PUT", "/nodes/pve1/lxc/960/config", &[("delete", "mp1".into())]).expect("delete mp1");
    assert_eq!(config("mp0"), None);
    assert_eq!(config("unused0").as_deref(), models.split(',').next());
    assert_eq!(config("unused1").as_deref(), cache.split(',').next());
}

/// A volume mount point that grows (or changes otherwise) keeps its volume and its data:
/// Proxmox would allocate a new, empty volume for `STORAGE:SIZE` in its slot, and detach the old.
#[test]
fn a_changed_volume_mount_keeps_its_volume() {
    let double = start(PveVersion::V9);
    let backend = backend(&double, None);
    let dir = tempfile::tempdir().expect("tmp");
    let ct = |size: u32| {
        format!(
            r#""950": {{"name": "vllm", "memory_mb": 1024, "cores": 2, "storage_pool": "local-zfs", "storage_size_gb": 16,
                "network_config": {{"name": "eth0", "bridge": "vmbr0", "ip": "10.0.0.160/24", "gw": "10.0.0.1"}},
                "unprivileged": true, "template": "local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst",
                "volumes": [{{"name": "models", "pool": "local-zfs", "size_gb": {size}, "mount_point": "/models"}}]}}"#
        )
    };
    let (_, report) = apply(&backend, &estate(dir.path(), &double, "", &ct(8)), dir.path());
    assert!(!report.failed(), "{report:#?}");
    let volume_line = |text: &str| text.lines().find(|l| l.contains("mp=/models")).map(str::to_string);
    let before = volume_line(&live(&double)).expect("the volume is mounted");
    let volume = before.split_once(": ").and_then(|(_, v)| v.split(',').next()).expect("volume").to_string();

    let (plan, report) = apply(&backend, &estate(dir.path(), &double, "", &ct(16)), dir.path());
    assert!(!report.failed(), "{report:#?}");
    assert_eq!(
        changes(&plan),
        [(
            "mount:/models".to_string(),
            Some("volume:local-zfs:8".to_string()),
            Some("volume:local-zfs:16".to_string())
        )]
    );
    let after = live(&double);
    assert!(!after.contains("unused"), "the volume was replaced by a new one:\n{after}");
    let now = volume_line(&after).expect("still mounted");
    assert!(now.contains(&format!(": {volume},")) && now.contains("size=16G"), "{now}");
    let (plan, _) = apply(&backend, &estate(dir.path(), &double, "", &ct(16)), dir.path());
    assert!(plan.is_empty(), "{:?}", changes(&plan));
}
