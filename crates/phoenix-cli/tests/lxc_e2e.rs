//! The local LXC backend end to end, on real unprivileged containers (root, the `lxc` tools,
//! `busybox-static`, and the bridge `phxtest0` with 10.79.0.1/24, which `.ci/run` sets up).
//! In CI these tests must run; elsewhere they are skipped with the reason when the host lacks
//! what they need.

#[path = "support/lxc.rs"]
mod lxc;

use std::path::{Path, PathBuf};
use std::process::Command;

use lxc::{BRIDGE, Stack, container, get, lxc_available, serial, text};

fn stack_json() -> String {
    let http = r#", "health_check": {"http": {"port": 80, "path": "/"}, "retries": 20, "interval": 1}"#;
    format!(
        "{{{}}}",
        [
            container(700, "tpl", r#", "template": "local:vztmpl/busybox.tar.gz", "features": ["base_setup"], "application_script": "tpl.sh", "template_snapshot_name": "ready""#),
            container(701, "web-1", &format!(r#", "clone_from_ctid": "700", "application_script": "web.sh", "mac_address": "02:79:00:00:07:01"{http}"#)),
            container(702, "web-2", &format!(r#", "clone_from_ctid": "700", "application_script": "web.sh"{http}"#)),
            container(703, "web-3", &format!(r#", "clone_from_ctid": "700", "application_script": "web.sh", "mount_points": [{{"host_path": "/var/tmp/phoenix-e2e-owned-{}", "container_path": "/srv/owned", "owner_uid": 1000, "owner_gid": 1000}}]{http}"#, std::process::id())),
            container(710, "agg", &format!(r#", "clone_from_ctid": "700", "application_script": "agg.sh", "dependencies": ["701", "702", "703"]{http}"#)).replace(r#""unprivileged": true"#, r#""unprivileged": false"#),
        ]
        .join(",\n")
    )
}

#[test]
fn a_stack_of_real_containers_is_built_kept_changed_and_removed() {
    if !lxc_available() {
        return;
    }
    let _host = serial();
    let s = Stack::new(&stack_json(), &[701, 702]);
    let out = s.phoenix(&["apply", "--jobs", "4"]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("Apply complete: 5 created"), "{}", text(&out.stdout));

    // Each clone serves its own page on its own address; the aggregator fetched all three.
    for (ip, name) in [(71, "web-1"), (72, "web-2"), (73, "web-3")] {
        assert_eq!(get(&format!("http://10.79.0.{ip}/")), format!("hello from {name}\n"));
    }
    assert_eq!(get("http://10.79.0.80/"), "hello from web-1\nhello from web-2\nhello from web-3\n");
    // The shared volume: written in each container, owned by the mapped root on the host, read
    // in the other.
    use std::os::unix::fs::MetadataExt;
    let shared = s.root.join("shared/web-1.txt");
    assert_eq!(std::fs::metadata(&shared).expect("shared file").uid(), 100_000);
    assert_eq!(s.attach(702, &["cat", "/srv/shared/web-1.txt"]), "web-1\n");
    // The template's feature and script ran in the template, and its clones inherited the result.
    assert_eq!(s.attach(703, &["cat", "/etc/phoenix-template", "/etc/motd"]), "from-template\nbase\n");
    // Unprivileged, with its address, MAC and memory limit.
    assert!(
        s.attach(701, &["cat", "/proc/self/uid_map"])
            .split_whitespace()
            .collect::<Vec<_>>()
            .starts_with(&["0", "100000", "65536"])
    );
    assert!(
        s.attach(710, &["cat", "/proc/self/uid_map"]).split_whitespace().collect::<Vec<_>>().starts_with(&[
            "0",
            "0",
            "4294967295"
        ]),
        "the privileged container is mapped"
    );
    // A mount point owned by the configured user of the container: 1000 inside, 101000 on the host.
    let owned = PathBuf::from(format!("/var/tmp/phoenix-e2e-owned-{}", std::process::id()));
    assert_eq!(std::fs::metadata(&owned).expect("owned dir").uid(), 101_000);
    assert_eq!(s.attach(703, &["stat", "-c", "%u", "/srv/owned"]).trim(), "1000");
    let addr = s.attach(701, &["ip", "addr", "show", "eth0"]);
    assert!(addr.contains("inet 10.79.0.71/24") && addr.contains("02:79:00:00:07:01"), "{addr}");
    let limit = Command::new("lxc-cgroup")
        .args(["-n", "701", "-P", &s.lxc_path(), "memory.limit_in_bytes"])
        .output()
        .expect("lxc-cgroup");
    let limit = if limit.status.success() {
        limit
    } else {
        Command::new("lxc-cgroup").args(["-n", "701", "-P", &s.lxc_path(), "memory.max"]).output().expect("lxc-cgroup")
    };
    assert_eq!(text(&limit.stdout).trim(), (512u64 * 1024 * 1024).to_string());

    // Again: nothing to do, nothing restarted.
    let pids: Vec<String> = [700, 701, 702, 703, 710].iter().map(|id| s.init_pid(*id)).collect();
    let out = s.phoenix(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let out = s.phoenix(&["apply"]);
    assert!(out.status.success() && text(&out.stdout).contains("No changes"), "{}", text(&out.stdout));
    assert_eq!(pids, [700, 701, 702, 703, 710].iter().map(|id| s.init_pid(*id)).collect::<Vec<_>>());

    // One container's memory: only that change, live.
    s.edit("phoenix_lxc_configs.json", r#""name": "web-2", "memory_mb": 512"#, r#""name": "web-2", "memory_mb": 768"#);
    let out = s.phoenix(&["--output", "json", "plan"]);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let busy: Vec<&serde_json::Value> = plan["guests"]
        .as_array()
        .expect("guests")
        .iter()
        .filter(|g| !g["steps"].as_array().is_some_and(Vec::is_empty))
        .collect();
    assert_eq!(busy.len(), 1, "{plan:#}");
    assert_eq!(busy[0]["id"], 702);
    assert_eq!(busy[0]["steps"][0]["changes"][0]["field"], "memory_mb");
    assert!(s.phoenix(&["apply"]).status.success());
    assert_eq!(s.init_pid(702), pids[2], "a live change restarted the container");

    // A changed application script runs again where it is used, and nothing else runs.
    s.edit("web.sh", "hello from", "hi from");
    let out = s.phoenix(&["--output", "json", "plan"]);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    for g in plan["guests"].as_array().expect("guests") {
        let steps: Vec<String> = g["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .map(|st| st["action"].as_str().unwrap_or_default().to_string())
            .collect();
        // Guarded by a snapshot taken first.
        let expected: &[&str] = if [701, 702, 703].contains(&g["id"].as_u64().unwrap_or(0)) {
            &["update_snapshot", "customize", "health_check"]
        } else {
            &[]
        };
        assert_eq!(steps, expected, "{g:#}");
    }
    assert!(s.phoenix(&["apply"]).status.success());
    assert_eq!(get("http://10.79.0.71/"), "hi from web-1\n");
    // The update passed: its snapshots are gone; the template's stays.
    for id in [701, 702, 703] {
        let left = std::fs::read_dir(s.root.join(format!("lxc/{id}/snapshots"))).map_or(0, |d| d.count());
        assert_eq!(left, 0, "{id} kept an update snapshot");
    }
    assert!(s.root.join("lxc/700/snapshots/ready/rootfs").is_dir());

    // Status shows what each running container reports on its interfaces.
    let out = s.phoenix(&["--output", "json", "status"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let web1 = rows.as_array().expect("rows").iter().find(|r| r["id"] == 701).expect("701");
    assert_eq!(web1["addresses"], serde_json::json!(["10.79.0.71"]), "{rows:#}");

    // Destroy: nothing is left of the containers; the shared data stays.
    let out = s.phoenix(&["destroy", "--yes"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ls = Command::new("lxc-ls").args(["-P", &s.lxc_path(), "-1"]).output().expect("lxc-ls");
    assert_eq!(text(&ls.stdout).trim(), "");
    assert_eq!(std::fs::read_dir(s.root.join("lxc")).expect("lxc dir").count(), 0);
    let veths = Command::new("ip").args(["-o", "link", "show", "master", BRIDGE]).output().expect("ip");
    assert_eq!(text(&veths.stdout).trim(), "", "veths left on {BRIDGE}");
    assert!(shared.is_file(), "destroy removed the shared data");
    assert!(owned.is_dir(), "destroy removed a mounted host directory");
    let _ = std::fs::remove_dir_all(&owned);
}

#[test]
fn settings_taken_out_of_the_configuration_are_taken_off_the_container_and_data_is_kept() {
    if !lxc_available() {
        return;
    }
    let _host = serial();
    let bind = PathBuf::from(format!("/var/tmp/phoenix-e2e-removal-{}", std::process::id()));
    std::fs::create_dir_all(&bind).expect("mkdir");
    std::fs::write(bind.join("host.txt"), "from the host\n").expect("write");
    let removable = format!(
        r#", "mount_points": [{{"host_path": "{}", "container_path": "/srv/bind"}}],
           "volumes": [{{"name": "vol", "pool": "local", "size_gb": 1, "mount_point": "/srv/vol"}}],
           "tags": ["web"], "lxc_options": ["lxc.environment = PHOENIX_REMOVAL=1"]"#,
        bind.display()
    );
    let with = container(740, "removals", &format!(r#", "template": "local:vztmpl/busybox.tar.gz"{removable}"#));
    let s = Stack::new(&format!("{{{with}}}"), &[]);
    let out = s.phoenix(&["apply"]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let lxc_config = || std::fs::read_to_string(s.root.join("lxc/740/config")).expect("LXC config");
    let before = lxc_config();
    assert!(before.contains(" srv/bind none bind") && before.contains(" srv/vol none bind"), "{before}");
    assert!(before.contains("lxc.environment = PHOENIX_REMOVAL=1"), "{before}");
    assert!(s.attach(740, &["cat", "/proc/1/environ"]).contains("PHOENIX_REMOVAL=1"));
    assert_eq!(s.attach(740, &["cat", "/srv/bind/host.txt"]), "from the host\n");
    s.attach(740, &["sh", "-c", "echo kept > /srv/vol/data.txt"]);
    let volume = s.root.join("storage/volumes/740-srv-vol");
    assert_eq!(std::fs::read_to_string(volume.join("data.txt")).expect("written through the mount"), "kept\n");

    // Taken out of the configuration: the plan says each one is removed.
    s.edit("phoenix_lxc_configs.json", &removable, "");
    let out = s.phoenix(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let plan = text(&out.stdout);
    for line in [
        "lxc.raw: lxc.environment: PHOENIX_REMOVAL=1 → (removed)".to_string(),
        format!("mount:/srv/bind: bind:{} → (removed)", bind.display()),
        "mount:/srv/vol: volume:local:1 → (removed)".to_string(),
        "tags: web → (removed)".to_string(),
    ] {
        assert!(plan.contains(&line), "no {line:?} in\n{plan}");
    }
    assert!(plan.contains("detached and kept"), "{plan}");
    let json = s.phoenix(&["--output", "json", "plan"]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    let changes = &json["guests"][0]["steps"][0]["changes"];
    assert_eq!(changes.as_array().map(Vec::len), Some(4), "{json:#}");
    assert!(changes.as_array().into_iter().flatten().all(|c| c["new"].is_null() && c["old"].is_string()), "{json:#}");

    let out = s.phoenix(&["apply"]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let after = lxc_config();
    assert!(!after.contains("srv/bind") && !after.contains("srv/vol") && !after.contains("lxc.environment"), "{after}");
    let recorded = std::fs::read_to_string(s.root.join("lxc/740/phoenix.json")).expect("record");
    assert!(!recorded.contains("mount:") && !recorded.contains("tags") && !recorded.contains("lxc.raw"), "{recorded}");
    // Restarted without them: no variable, nothing mounted where the mounts were.
    assert!(!s.attach(740, &["cat", "/proc/1/environ"]).contains("PHOENIX_REMOVAL"));
    assert_eq!(s.attach(740, &["sh", "-c", "cat /srv/vol/data.txt /srv/bind/host.txt 2>/dev/null; echo end"]), "end\n");
    // The data stays on the host: the volume's and the bind mount's.
    assert_eq!(std::fs::read_to_string(volume.join("data.txt")).expect("the volume's data is kept"), "kept\n");
    assert_eq!(std::fs::read_to_string(bind.join("host.txt")).expect("the host's data is kept"), "from the host\n");

    // Nothing left to do.
    let out = s.phoenix(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let _ = std::fs::remove_dir_all(&bind);
}

#[test]
fn bad_inputs_are_refused_before_anything_is_created() {
    if !lxc_available() {
        return;
    }
    let _host = serial();
    // A template that does not exist.
    let s =
        Stack::new(&format!("{{{}}}", container(720, "lost", r#", "template": "local:vztmpl/nothing.tar.gz""#)), &[]);
    let out = s.phoenix(&["apply"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("720 (lost) cannot be created: template")
            && text(&out.stderr).contains("nothing.tar.gz does not exist"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read_dir(s.root.join("lxc")).map(Iterator::count).unwrap_or(0), 0);

    // A GPU this host does not have (where it has none).
    if !Path::new("/dev/nvidia0").exists() {
        s.edit("phoenix_lxc_configs.json", r#""unprivileged": true"#, r#""unprivileged": true, "gpu_assignment": "0""#);
        s.edit("phoenix_lxc_configs.json", "local:vztmpl/nothing.tar.gz", "local:vztmpl/busybox.tar.gz");
        let out = s.phoenix(&["apply"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            text(&out.stderr).contains("GPUs 0: /dev/nvidia0 does not exist on this host"),
            "{}",
            text(&out.stderr)
        );
        assert!(!s.root.join("lxc/720").exists());
        s.edit("phoenix_lxc_configs.json", r#", "gpu_assignment": "0""#, "");
        s.edit("phoenix_lxc_configs.json", "local:vztmpl/busybox.tar.gz", "local:vztmpl/nothing.tar.gz");
    }

    // A bridge that does not exist.
    s.edit("phoenix_hypervisor_config.json", BRIDGE, "phxmissing0");
    let out = s.phoenix(&["apply"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("bridge phxmissing0 (for vmbr0) does not exist"), "{}", text(&out.stderr));
    s.edit("phoenix_hypervisor_config.json", "phxmissing0", BRIDGE);

    // An address another container already uses.
    let other = s.root.join("lxc/799");
    std::fs::create_dir_all(&other).expect("mkdir");
    std::fs::write(other.join("config"), "lxc.uts.name = squatter\nlxc.net.0.ipv4.address = 10.79.0.90/24\n")
        .expect("write");
    let ok_template = s.root.join("storage/template/cache/busybox.tar.gz");
    assert!(ok_template.is_file());
    s.edit("phoenix_lxc_configs.json", "local:vztmpl/nothing.tar.gz", "local:vztmpl/busybox.tar.gz");
    let out = s.phoenix(&["apply"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("720 (lost) is to have 10.79.0.90, which guest 799 on the backend already uses"),
        "{}",
        text(&out.stderr)
    );
    assert!(!s.root.join("lxc/720").exists());
    std::fs::remove_dir_all(&other).expect("cleanup");

    // A clone source without its snapshot.
    s.edit("phoenix_lxc_configs.json", r#""template": "local:vztmpl/busybox.tar.gz""#, r#""template": "local:vztmpl/busybox.tar.gz"}, "721": {"name": "c", "memory_mb": 512, "cores": 1, "storage_pool": "local", "storage_size_gb": 10, "network_config": {"name": "eth0", "bridge": "vmbr0", "ip": "10.79.0.91/24"}, "unprivileged": true, "clone_from_ctid": "720""#);
    let out = s.phoenix(&["apply"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("is not a template: it has neither a `template_snapshot_name`"),
        "{}",
        text(&out.stderr)
    );
    assert!(!s.root.join("lxc/720").exists());
}

/// Stops a container Phoenix does not manage (yet) when the test ends, however it ends:
/// `phoenix destroy` never touches it.
struct Foreign {
    id: u32,
    lxc_path: String,
}

impl Drop for Foreign {
    fn drop(&mut self) {
        let _ = Command::new("lxc-stop").args(["-n", &self.id.to_string(), "-P", &self.lxc_path, "-k"]).output();
    }
}

#[test]
fn a_container_made_by_hand_is_adopted_as_it_runs_and_then_planned_as_nothing() {
    if !lxc_available() {
        return;
    }
    let _host = serial();
    let s = Stack::new(
        &format!(
            "{{{}}}",
            container(750, "by-hand", r#", "template": "local:vztmpl/busybox.tar.gz", "features": ["base_setup"]"#)
        ),
        &[],
    );
    // Made as the shell version's containers were: a root filesystem from the template given to
    // the mapped root, an LXC configuration written by hand, started with lxc-start.
    let dir = s.root.join("lxc/750");
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(&rootfs).expect("mkdir");
    use std::os::unix::fs::PermissionsExt;
    for d in [s.root.join("lxc"), dir.clone()] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let template = s.root.join("storage/template/cache/busybox.tar.gz");
    let ok = |c: &mut Command| {
        let out = c.output().expect("run");
        assert!(out.status.success(), "{c:?}: {}", text(&out.stderr));
    };
    ok(Command::new("tar").arg("-xpzf").arg(&template).arg("-C").arg(&rootfs).arg("--numeric-owner"));
    ok(Command::new("chown").arg("-hR").arg("100000:100000").arg(&rootfs));
    let limits = if Path::new("/sys/fs/cgroup/memory").is_dir() {
        "lxc.cgroup.memory.limit_in_bytes = 536870912\nlxc.cgroup.cpu.cfs_period_us = 100000\nlxc.cgroup.cpu.cfs_quota_us = 100000\n"
    } else {
        "lxc.cgroup2.memory.max = 536870912\nlxc.cgroup2.cpu.max = 100000 100000\n"
    };
    let config = format!(
        "# made by hand\nlxc.uts.name = by-hand\nlxc.rootfs.path = dir:{}\n\
         lxc.mount.auto = proc:mixed sys:ro cgroup:mixed\nlxc.autodev = 1\nlxc.tty.max = 0\nlxc.pty.max = 16\n\
         lxc.idmap = u 0 100000 65536\nlxc.idmap = g 0 100000 65536\n\
         lxc.net.0.type = veth\nlxc.net.0.link = {BRIDGE}\nlxc.net.0.flags = up\nlxc.net.0.name = eth0\n\
         lxc.net.0.hwaddr = 02:79:00:00:07:50\nlxc.net.0.ipv4.address = 10.79.0.120/24\nlxc.net.0.ipv4.gateway = 10.79.0.1\n{limits}",
        rootfs.display()
    );
    std::fs::write(dir.join("config"), &config).expect("write");
    let _stop = Foreign { id: 750, lxc_path: s.lxc_path() };
    ok(Command::new("lxc-start").args(["-n", "750", "-P", &s.lxc_path(), "-d"]));
    ok(Command::new("lxc-wait").args(["-n", "750", "-P", &s.lxc_path(), "-s", "RUNNING", "-t", "30"]));
    let pid = s.init_pid(750);

    // Not Phoenix's: it blocks its ID, and the plan says how to adopt it.
    let out = s.phoenix(&["plan"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("`phoenix adopt 750`"), "{}", text(&out.stderr));

    // A dry run shows it matches its configuration, and writes nothing.
    let out = s.phoenix(&["adopt", "--dry-run"]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let shown = text(&out.stdout);
    for line in [
        "~ 750 by-hand (container, running): adopt",
        "> record feature:base_setup — base_setup is done in every guest that runs",
        "then: nothing to do, it matches its configuration",
    ] {
        assert!(shown.contains(line), "no {line:?} in\n{shown}");
    }
    assert!(!dir.join("phoenix.json").exists(), "a dry run marked it");
    assert_eq!(s.attach(750, &["sh", "-c", "cat /var/lib/phoenix/markers.json 2>/dev/null; echo end"]), "end\n");

    // Adopted: Phoenix's record and the marker; its LXC configuration and process as they were.
    let out = s.phoenix(&["adopt", "750"]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(dir.join("phoenix.json").is_file());
    assert_eq!(
        std::fs::read_to_string(dir.join("config")).expect("config"),
        config,
        "adoption rewrote the configuration"
    );
    assert_eq!(s.init_pid(750), pid, "adoption restarted the container");
    assert!(s.attach(750, &["cat", "/var/lib/phoenix/markers.json"]).contains("feature:base_setup"));
    let out = s.phoenix(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));

    // From now on it is Phoenix's like any other: a change is exactly that change, made live.
    s.edit("phoenix_lxc_configs.json", r#""memory_mb": 512"#, r#""memory_mb": 768"#);
    let out = s.phoenix(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(2));
    let changes: Vec<String> =
        text(&out.stdout).lines().filter(|l| l.starts_with("    ")).map(|l| l.trim().to_string()).collect();
    assert_eq!(changes, ["~ memory_mb: 512 → 768 (live)"], "{}", text(&out.stdout));
    let out = s.phoenix(&["apply"]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(s.init_pid(750), pid, "a live change restarted the container");
    let out = s.phoenix(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
}

#[test]
fn a_container_whose_root_filesystem_is_elsewhere_is_not_adopted() {
    if !lxc_available() {
        return;
    }
    let _host = serial();
    let s =
        Stack::new(&format!("{{{}}}", container(751, "moved", r#", "template": "local:vztmpl/busybox.tar.gz""#)), &[]);
    let dir = s.root.join("lxc/751");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let elsewhere = s.root.join("elsewhere");
    std::fs::write(
        dir.join("config"),
        format!("lxc.uts.name = moved\nlxc.rootfs.path = dir:{}\nlxc.net.0.type = veth\n", elsewhere.display()),
    )
    .expect("write");
    let out = s.phoenix(&["adopt", "751"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("751 (moved) cannot be adopted: its root filesystem is {}", elsewhere.display())),
        "{err}"
    );
    assert!(
        err.contains("hint: stop it, move its root filesystem to") && err.contains("Nothing was adopted."),
        "{err}"
    );
    assert!(!dir.join("phoenix.json").exists());
}

#[test]
fn a_container_made_a_template_is_cloned_as_it_is_and_never_started_again() {
    if !lxc_available() {
        return;
    }
    let _host = serial();
    let http = r#", "health_check": {"http": {"port": 80, "path": "/"}, "retries": 20, "interval": 1}"#;
    let containers = format!(
        "{{{}}}",
        [
            container(
                750,
                "tpl",
                r#", "template": "local:vztmpl/busybox.tar.gz", "features": ["base_setup"], "application_script": "tpl.sh", "is_template": true"#
            ),
            container(751, "web-t", &format!(r#", "clone_from_ctid": "750", "application_script": "web.sh"{http}"#)),
        ]
        .join(",\n")
    );
    let s = Stack::new(&containers, &[]);
    let out = s.phoenix(&["plan"]);
    let plan = text(&out.stdout);
    assert!(plan.contains("> make a template — is_template: made a template once customized"), "{plan}");
    assert!(plan.contains("> clone the template 750"), "{plan}");
    let out = s.phoenix(&["apply"]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("Apply complete: 2 created"), "{}", text(&out.stdout));

    // The template: customized, then stopped for good and marked; no snapshot was needed.
    let state = |id: u32| {
        let out = Command::new("lxc-info")
            .args(["-n", &id.to_string(), "-P", &s.lxc_path(), "-s", "-H"])
            .output()
            .expect("lxc-info");
        text(&out.stdout).trim().to_string()
    };
    assert_eq!(state(750), "STOPPED");
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(s.root.join("lxc/750/phoenix.json")).expect("record"))
            .expect("json");
    assert_eq!(record["template"], true, "{record:#}");
    assert!(!s.root.join("lxc/750/snapshots").exists(), "a template has no snapshot");
    // The clone: a copy of the template as it was made, serving its own page.
    assert_eq!(state(751), "RUNNING");
    assert_eq!(s.attach(751, &["cat", "/etc/phoenix-template", "/etc/motd"]), "from-template\nbase\n");
    assert_eq!(get("http://10.79.0.121/"), "hello from web-t\n");

    // Planned again: nothing to do; the template is not started to read it or check it.
    let out = s.phoenix(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    s.edit("web.sh", "hello from", "hi from");
    let out = s.phoenix(&["apply"]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(get("http://10.79.0.121/"), "hi from web-t\n");
    assert_eq!(state(750), "STOPPED", "the template was started again");

    // Status says which is the template.
    let out = s.phoenix(&["--output", "json", "status"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let power = |id: u32| rows.as_array().into_iter().flatten().find(|r| r["id"] == id).map(|r| r["power"].clone());
    assert_eq!((power(750), power(751)), (Some("template".into()), Some("running".into())), "{rows:#}");

    // Destroyed, the template with its clone.
    let out = s.phoenix(&["destroy", "--yes"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_dir(s.root.join("lxc")).expect("lxc dir").count(), 0);
}

#[test]
fn two_spellings_of_one_lxc_path_are_one_backend_with_one_lock() {
    if !lxc_available() {
        return;
    }
    let _host = serial();
    let s = Stack::new(
        &format!("{{{}}}", container(745, "spelled", r#", "template": "local:vztmpl/busybox.tar.gz""#)),
        &[],
    );
    let out = s.phoenix(&["apply"]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    // The same directory through a link, with a trailing `/.`.
    let link = s.root.join("lxc-link");
    std::os::unix::fs::symlink(s.root.join("lxc"), &link).expect("symlink");
    s.edit("phoenix_hypervisor_config.json", &format!("\"{}\"", s.lxc_path()), &format!("\"{}/.\"", link.display()));
    let out = s.phoenix(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "the running container looks stopped: {}", text(&out.stdout));

    // An apply holds the lock (here, `flock` on the one lock file there is): a plan says so, and
    // a second apply through the other spelling is refused.
    let locks: Vec<PathBuf> =
        std::fs::read_dir(s.root.join("locks")).expect("locks").flatten().map(|e| e.path()).collect();
    assert_eq!(locks.len(), 1, "{locks:?}");
    // `-o`: the lock is flock's own, released when it is killed (not inherited by `sleep`).
    let mut holder = Command::new("flock").arg("-o").arg(&locks[0]).args(["sleep", "30"]).spawn().expect("flock");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let plan = s.phoenix(&["plan"]);
    let apply = s.phoenix(&["apply"]);
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(
        text(&plan.stderr).contains("another phoenix run is applying to this backend now"),
        "{}",
        text(&plan.stderr)
    );
    assert_eq!(apply.status.code(), Some(1));
    assert!(text(&apply.stderr).contains("holds the lock"), "{}", text(&apply.stderr));
    // One instance of the container runs.
    let monitors = Command::new("pgrep").args(["-fc", "lxc monitor.*745"]).output().expect("pgrep");
    assert_eq!(text(&monitors.stdout).trim(), "1");
}

#[test]
fn a_failed_update_of_the_application_script_is_rolled_back_to_the_snapshot_taken_before_it() {
    if !lxc_available() {
        return;
    }
    let _host = serial();
    let s = Stack::new(
        &format!(
            "{{{}}}",
            container(760, "app", r#", "template": "local:vztmpl/busybox.tar.gz", "application_script": "app.sh""#)
        ),
        &[],
    );
    std::fs::write(s.config().join("app.sh"), "#!/bin/sh\nset -eu\necho v1 > /etc/app-version\n").expect("write");
    let out = s.phoenix(&["apply"]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let markers = s.attach(760, &["cat", "/var/lib/phoenix/markers.json"]);
    assert!(markers.contains("\"script\""), "{markers}");

    // A new version of the script writes a file, then fails.
    std::fs::write(
        s.config().join("app.sh"),
        "#!/bin/sh\necho v2 > /etc/app-version\necho half > /etc/written-by-the-update\nexit 3\n",
    )
    .expect("write");
    // The plan and the dry run say the update is guarded by a snapshot.
    for args in [&["plan"][..], &["apply", "--dry-run"][..]] {
        let out = s.phoenix(args);
        let shown = text(&out.stdout);
        assert!(
            shown.contains("> snapshot before the update — script run(s) on a guest that exists already: a snapshot phoenix-pre-<time> is taken first"),
            "{args:?}: {shown}"
        );
        assert!(shown.contains("> run script — its script or inputs changed"), "{args:?}: {shown}");
    }
    let pid = s.init_pid(760);
    let out = s.phoenix(&["apply"]);
    assert_eq!(out.status.code(), Some(1), "{}{}", text(&out.stdout), text(&out.stderr));
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    let snapshots: Vec<String> = std::fs::read_dir(s.root.join("lxc/760/snapshots"))
        .expect("snapshots")
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect();
    assert_eq!(snapshots.len(), 1, "the snapshot stays after the rollback: {snapshots:?}");
    assert!(snapshots[0].starts_with("phoenix-pre-"), "{snapshots:?}");
    assert!(
        said.contains(&format!(
            "guest 760 (app): script failed; the guest was rolled back to snapshot {} taken before the update",
            snapshots[0]
        )),
        "{said}"
    );
    assert!(said.contains("exited with status 3"), "the original error: {said}");
    assert!(said.contains("1 failed"), "{said}");
    // As it was: what the update wrote is gone, the marker still has the old hash, and it runs
    // again (started anew after the rollback).
    assert_eq!(s.attach(760, &["cat", "/etc/app-version"]), "v1\n");
    assert_eq!(s.attach(760, &["sh", "-c", "test -e /etc/written-by-the-update && echo there || echo gone"]), "gone\n");
    assert_eq!(s.attach(760, &["cat", "/var/lib/phoenix/markers.json"]), markers);
    let now = s.init_pid(760);
    assert!(!now.is_empty() && now != pid, "not started again: {pid} → {now:?}");
    assert!(!s.root.join("lxc/760/.phoenix-new-rootfs").exists(), "the replaced root filesystem was left");

    // Fixed: the update passes, and the snapshots of both runs are deleted.
    std::fs::write(s.config().join("app.sh"), "#!/bin/sh\nset -eu\necho v3 > /etc/app-version\n").expect("write");
    let out = s.phoenix(&["apply"]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(s.attach(760, &["cat", "/etc/app-version"]), "v3\n");
    assert_eq!(std::fs::read_dir(s.root.join("lxc/760/snapshots")).expect("snapshots").count(), 0);
}
