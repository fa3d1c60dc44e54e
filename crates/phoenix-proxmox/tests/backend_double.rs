//! The Proxmox backend driven by the engine against the PVE test double: a template, its snapshot
//! and two clones are built; planning again finds nothing to do (Proxmox's way of showing things
//! normalises to the configuration); one changed field is the only change; every request was
//! valid for the schema.

use phoenix_backend::Backend;
use phoenix_engine::GuestOutcome;
use phoenix_pve_double::{PveDouble, PveVersion};

mod support;

fn config(dir: &std::path::Path, double: &PveDouble, memory_902: u32) -> phoenix_config::Estate {
    let c = |id: u32, name: &str, memory: u32, extra: &str| {
        format!(
            r#""{id}": {{"name": "{name}", "memory_mb": {memory}, "cores": 2, "storage_pool": "local-zfs", "storage_size_gb": 16,
                "network_config": {{"name": "eth0", "bridge": "vmbr0", "ip": "10.0.0.{}/24", "gw": "10.0.0.1"}},
                "unprivileged": true, "tags": ["Phoenix", "web"], "start_at_boot": true, "boot_order": 2 {extra}}}"#,
            id - 890
        )
    };
    let lxc = [
        c(
            900,
            "tpl",
            1024,
            r#", "template": "/fastData/shared-iso/template/cache/ubuntu-24.04-standard_24.04-2_amd64.tar.zst", "template_snapshot_name": "ready", "pct_options": ["nesting=1"]"#,
        ),
        c(901, "web-1", 2048, r#", "clone_from_ctid": "900", "mac_address": "02:00:00:00:09:01""#),
        c(902, "web-2", memory_902, r#", "clone_from_ctid": "900""#),
    ];
    support::estate(dir, double, "", &lxc.join(","))
}

#[test]
fn the_engine_builds_and_keeps_containers_on_the_double() {
    for version in PveVersion::ALL {
        let double = support::start(version);
        let backend = support::backend(&double, None);
        let dir = tempfile::tempdir().expect("tmp");
        let apply = |memory_902: u32| support::apply(&backend, &config(dir.path(), &double, memory_902), dir.path());
        let (plan, report) = apply(1024);
        assert_eq!(plan.guests_to_change(), 3);
        // The template's host path became its volume ID on the storage that holds it.
        let create = double
            .requests()
            .into_iter()
            .find(|r| r.method == "POST" && r.path == "/nodes/pve1/lxc")
            .expect("create request");
        assert_eq!(
            create.params.get("ostemplate").map(String::as_str),
            Some("fastData:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst")
        );
        assert!(report.outcomes.values().all(|o| *o == GuestOutcome::Created), "{version:?}: {report:#?}");
        // Proxmox's snapshots keep no description: the clones carry the mark because the clone
        // call passed it.
        for id in [901, 902] {
            let clone = backend.observe_guest(id).expect("observe").expect("the clone exists");
            assert!(clone.managed, "{version:?}: clone {id} lost the mark: {:?}", double.conf_file(id));
        }

        let (plan, _) = apply(1024);
        assert!(
            plan.is_empty(),
            "{version:?}: {:#?}",
            plan.guests.iter().filter(|g| !g.steps.is_empty()).collect::<Vec<_>>()
        );

        let before = double.requests().len();
        let (plan, report) = apply(4096);
        let busy: Vec<_> = plan.guests.iter().filter(|g| !g.steps.is_empty()).collect();
        assert_eq!(busy.len(), 1);
        assert_eq!(busy[0].id, 902);
        assert!(!report.failed());
        let writes: Vec<String> = double.requests()[before..]
            .iter()
            .filter(|r| r.method != "GET")
            .map(|r| format!("{} {} {:?}", r.method, r.path, r.params.keys().collect::<Vec<_>>()))
            .collect();
        assert_eq!(writes, vec![r#"PUT /nodes/pve1/lxc/902/config ["digest", "memory"]"#.to_string()]);

        let (plan, _) = apply(4096);
        assert!(plan.is_empty());

        // A template no storage holds is refused before anything is created.
        let request = phoenix_backend::CreateRequest {
            id: 950,
            kind: phoenix_backend::GuestKind::Lxc,
            node: None,
            source: phoenix_backend::CreateSource::Template("/srv/elsewhere/template/cache/x.tar.zst".into()),
            config: phoenix_backend::GuestConfig::default(),
        };
        let e = backend.check_create(&request).expect_err("no storage holds it");
        assert!(
            e.message.contains("no storage of node pve1 holds the template /srv/elsewhere/template/cache/x.tar.zst"),
            "{e:?}"
        );
        assert!(
            double.requests().iter().all(|r| r.status == 200),
            "{version:?}: a request was refused: {:?}",
            double.requests().iter().find(|r| r.status != 200)
        );
    }
}

/// Answers every probe, recording the address it was asked for.
#[derive(Default)]
struct Recording(std::sync::Mutex<Vec<String>>);

impl phoenix_engine::health::Prober for Recording {
    fn tcp(&self, addr: &str, _: u32, _: std::time::Duration) -> Result<(), phoenix_engine::health::ProbeError> {
        self.0.lock().expect("lock").push(addr.to_string());
        Ok(())
    }
    fn http(
        &self,
        addr: &str,
        _: u32,
        _: &str,
        _: std::time::Duration,
    ) -> Result<u16, phoenix_engine::health::ProbeError> {
        self.0.lock().expect("lock").push(addr.to_string());
        Ok(200)
    }
}

#[test]
fn a_dhcp_container_is_probed_at_the_address_it_reports() {
    let double = support::start(PveVersion::V9);
    let backend = support::backend(&double, None);
    let dir = tempfile::tempdir().expect("tmp");
    let lxc = r#""905": {"name": "dhcp", "memory_mb": 512, "cores": 1, "storage_pool": "local-zfs", "storage_size_gb": 10,
        "template": "local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst",
        "network_config": {"name": "eth0", "bridge": "vmbr0", "ip": "dhcp"}, "unprivileged": true}"#;
    let (_, report) = support::apply(&backend, &support::estate(dir.path(), &double, "", lxc), dir.path());
    assert!(!report.failed(), "{report:#?}");
    // The double's DHCP lease for 905, from GET .../interfaces (loopback left out).
    let lease: std::net::IpAddr = "10.99.3.137".parse().expect("ip");
    assert_eq!(backend.addresses(905).expect("interfaces"), vec![lease]);
    let check: phoenix_config::model::HealthCheck = serde_json::from_str(r#"{"tcp": {"port": 80}}"#).expect("check");
    let prober = Recording::default();
    phoenix_engine::health::probe_once(&backend, &prober, 905, None, &check).expect("probed");
    assert_eq!(*prober.0.lock().expect("lock"), vec![lease.to_string()]);

    // Stopped, it reports nothing: the probe says why instead of guessing.
    backend.stop(905).expect("stopped");
    let e = phoenix_engine::health::probe_once(&backend, &prober, 905, None, &check).expect_err("no address");
    assert!(e.to_string().contains("CT 905 not running"), "{e}");
}

#[test]
fn an_edit_waits_until_the_guests_lock_clears() {
    let double = support::start(PveVersion::V8);
    let backend = support::backend(&double, None);
    let dir = tempfile::tempdir().expect("tmp");
    let (_, report) = support::apply(&backend, &config(dir.path(), &double, 1024), dir.path());
    assert!(!report.failed(), "{report:#?}");
    // A backup holds 902 for a while: the edit waits for it instead of being refused.
    double.lock_guest(902, "backup", std::time::Duration::from_millis(300));
    let started = std::time::Instant::now();
    let change = phoenix_backend::FieldChange {
        field: phoenix_backend::Field::MemoryMb,
        old: Some(1024u64.into()),
        new: Some(1536u64.into()),
    };
    backend.update_config(902, &[change]).expect("applied once the lock cleared");
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    let puts: Vec<u16> = double
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" && r.path == "/nodes/pve1/lxc/902/config")
        .map(|r| r.status)
        .collect();
    assert_eq!(puts.last(), Some(&200));
    assert!(!puts.contains(&500), "an edit was sent while the guest was locked: {puts:?}");
    assert_eq!(
        backend.observe_guest(902).expect("observe").expect("902").config.spelled("memory_mb").as_deref(),
        Some("1536")
    );
}

/// Proxmox refuses to start, stop, resize, snapshot or destroy a guest another task holds (a
/// backup): each waits for the lock to clear instead, and nothing is refused.
#[test]
fn power_resize_snapshot_and_destroy_wait_until_the_guests_lock_clears() {
    let double = support::start(PveVersion::V9);
    let backend = support::backend(&double, None);
    let dir = tempfile::tempdir().expect("tmp");
    let (_, report) = support::apply(&backend, &config(dir.path(), &double, 1024), dir.path());
    assert!(!report.failed(), "{report:#?}");
    let before = double.requests().len();
    let held = std::time::Duration::from_millis(300);
    let locked = |what: &str, call: &dyn Fn() -> Result<(), phoenix_backend::BackendError>| {
        double.lock_guest(902, "backup", held);
        let started = std::time::Instant::now();
        call().unwrap_or_else(|e| panic!("{what} of a locked guest: {e:?}"));
        assert!(started.elapsed() >= held, "{what} did not wait for the lock");
    };
    if backend.observe_guest(902).expect("observe").expect("902").power == phoenix_backend::PowerState::Running {
        locked("stop", &|| backend.stop(902));
    }
    locked("start", &|| backend.start(902));
    locked("snapshot", &|| backend.snapshot(902, "before"));
    let grow = phoenix_backend::FieldChange {
        field: phoenix_backend::Field::DiskGb,
        old: Some(16u64.into()),
        new: Some(20u64.into()),
    };
    locked("resize", &|| backend.update_config(902, std::slice::from_ref(&grow)));
    locked("destroy", &|| backend.destroy(902));
    let refused: Vec<String> = double.requests()[before..]
        .iter()
        .filter(|r| r.status != 200)
        .map(|r| format!("{} {} {}", r.method, r.path, r.status))
        .collect();
    assert!(refused.is_empty(), "{refused:?}");
    assert!(backend.observe_guest(902).expect("observe").is_none());
}

/// A creation that died half-way (Proxmox keeps the guest locked `create`, and no task of it
/// runs) is named in the plan with what to do, for that guest alone and at once; while a task of
/// the guest runs, its lock is that task's (and a change waits for it, as for any lock).
#[test]
fn a_creation_that_died_half_way_is_named_not_waited_for() {
    let double = support::start(PveVersion::V9);
    let backend = support::backend(&double, None);
    let dir = tempfile::tempdir().expect("tmp");
    let estate = config(dir.path(), &double, 1024);
    let (_, report) = support::apply(&backend, &estate, dir.path());
    assert!(!report.failed(), "{report:#?}");
    double.lock_guest(902, "create", std::time::Duration::from_secs(3600));
    let started = std::time::Instant::now();
    let observed = backend.observe().expect("observe");
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "observation waited on the lock");
    let why = observed.guests[&902].half_made.clone().expect("902 is half-made");
    assert!(why.contains("902 was left half-made") && why.contains("locked `create`"), "{why}");
    assert_eq!(observed.guests[&901].half_made, None);
    let plan = support::plan(&backend, &estate, dir.path());
    let issue = plan.issues.iter().find(|i| i.guest == 902).expect("an issue for 902");
    assert!(issue.hint.contains("pct unlock 902 && pct destroy 902"), "{}", issue.hint);
    assert!(plan.issues.iter().all(|i| i.guest == 902), "{:#?}", plan.issues);
    // A lock of another kind (a backup) is no creation: nothing is said.
    double.lock_guest(902, "backup", std::time::Duration::from_secs(3600));
    assert_eq!(backend.observe_guest(902).expect("observe").expect("902").half_made, None);
    // While a task of the guest runs, its lock is that task's: nothing is said either.
    double.set_task_duration(std::time::Duration::from_secs(2));
    std::thread::scope(|s| {
        let stopping = s.spawn(|| backend.stop(901));
        std::thread::sleep(std::time::Duration::from_millis(300));
        double.lock_guest(901, "create", std::time::Duration::from_secs(3600));
        assert_eq!(backend.observe_guest(901).expect("observe").expect("901").half_made, None);
        double.lock_guest(901, "create", std::time::Duration::ZERO);
        stopping.join().expect("thread").expect("stopped");
    });
}

/// A stopped managed container does not break observation: its markers cannot be read (`pct
/// exec` dies with some status), so they are unknown, not an error and not "missing".
#[test]
fn a_stopped_container_leaves_its_markers_unknown() {
    let double = support::start(PveVersion::V9);
    let backend = support::backend(&double, Some(support::channel(&double)));
    let dir = tempfile::tempdir().expect("tmp");
    let lxc = r#""906": {"name": "quiet", "memory_mb": 512, "cores": 1, "storage_pool": "local-zfs", "storage_size_gb": 10,
        "template": "local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst",
        "network_config": {"name": "eth0", "bridge": "vmbr0", "ip": "10.0.0.66/24", "gw": "10.0.0.1"}, "unprivileged": true}"#;
    let estate = support::estate(dir.path(), &double, "", lxc);
    let (_, report) = support::apply(&backend, &estate, dir.path());
    assert!(!report.failed(), "{report:#?}");
    backend.stop(906).expect("stopped");
    let e = backend.read_file(906, "/etc/hostname").expect_err("nothing is read from a stopped container");
    assert_eq!(e.kind, phoenix_backend::ErrorKind::Unsupported, "{e:?}");
    let desired = phoenix_plan::desired(&estate, &|_| Vec::new());
    let observed = phoenix_engine::observe::observe(&backend, &desired, 2).expect("observation goes on");
    assert!(observed.observation.guests.contains_key(&906));
}

#[test]
fn commands_in_containers_get_a_clean_environment_not_phoenixs() {
    // Phoenix's own environment can hold secrets (`env:` references): `pct exec` keeps the
    // caller's environment unless told not to, so every command must say so.
    let double = support::start(PveVersion::V8);
    let backend = support::backend(&double, Some(support::channel(&double)));
    let dir = tempfile::tempdir().expect("tmp");
    let lxc = r#""907": {"name": "clean", "memory_mb": 512, "cores": 1, "storage_pool": "local-zfs", "storage_size_gb": 10,
        "template": "local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst",
        "network_config": {"name": "eth0", "bridge": "vmbr0", "ip": "10.0.0.67/24", "gw": "10.0.0.1"}, "unprivileged": true}"#;
    let estate = support::estate(dir.path(), &double, "", lxc);
    let (_, report) = support::apply(&backend, &estate, dir.path());
    assert!(!report.failed(), "{report:#?}");
    backend.read_file(907, "/etc/hostname").expect("read");
    let envs = double.node_channel().exec_environments();
    assert!(!envs.is_empty(), "commands ran in the container");
    for e in &envs {
        assert!(!e.caller_environment, "a command kept Phoenix's environment: {e:?}");
        assert_eq!(e.path.as_deref(), Some(phoenix_proxmox::node::channel::GUEST_PATH), "{e:?}");
    }
}

#[test]
fn a_nameserver_change_takes_effect_at_the_next_start() {
    // Proxmox keeps a running container's new `nameserver` pending: its resolv.conf is written
    // at the next start. So the change is planned with a restart, not as live.
    let double = support::start(PveVersion::V9);
    let backend = support::backend(&double, Some(support::channel(&double)));
    let dir = tempfile::tempdir().expect("tmp");
    let lxc = |ns: &str| {
        format!(
            r#""908": {{"name": "dns", "memory_mb": 512, "cores": 1, "storage_pool": "local-zfs", "storage_size_gb": 10,
            "template": "local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst",
            "network_config": {{"name": "eth0", "bridge": "vmbr0", "ip": "10.0.0.68/24", "gw": "10.0.0.1", "nameservers": ["{ns}"]}},
            "unprivileged": true}}"#
        )
    };
    let estate = support::estate(dir.path(), &double, "", &lxc("10.0.0.1"));
    let (_, report) = support::apply(&backend, &estate, dir.path());
    assert!(!report.failed(), "{report:#?}");
    let estate = support::estate(dir.path(), &double, "", &lxc("10.0.0.2"));
    let (plan, report) = support::apply(&backend, &estate, dir.path());
    assert!(!report.failed(), "{report:#?}");
    // The restart the plan has applied it: nothing is left pending.
    let file = double.conf_file(908).expect("conf");
    assert!(!file.contains("[pve:pending]") && file.contains("nameserver: 10.0.0.2\n"), "{file}");
    let steps = &plan.guest(908).expect("908").steps;
    let effects: Vec<phoenix_backend::ChangeEffect> = steps
        .iter()
        .filter_map(|s| match &s.action {
            phoenix_plan::Action::Configure { changes } => Some(changes.iter().map(|c| c.effect)),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(effects, [phoenix_backend::ChangeEffect::Restart], "{steps:#?}");
    assert!(steps.iter().any(|s| s.action == phoenix_plan::Action::Restart), "{steps:#?}");
}
