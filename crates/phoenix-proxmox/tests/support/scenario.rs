//! The lifecycle every Proxmox target must go through, the same against the test double (in CI)
//! and against a real host (the opt-in suite): a template created from an OS template and
//! snapshotted, a clone of its snapshot configured, started and customized with an application
//! script; planning again finds nothing to do; one changed setting is the only change; both are
//! destroyed. IDs are chosen free on the target, and whatever the scenario created is destroyed
//! even when it fails half-way.

use std::collections::BTreeSet;
use std::path::Path;

use phoenix_backend::{Backend, GuestId};
use phoenix_engine::GuestOutcome;

/// What the target offers the scenario.
pub struct Site {
    /// The storage for container disks (`rootdir` content).
    pub storage: String,
    /// The OS template, as a volume ID.
    pub template: String,
    /// The bridge the containers are attached to.
    pub bridge: String,
    /// The `ip` of the containers' interface: `dhcp`, or two addresses with prefix for the
    /// template and the clone, and the gateway.
    pub addresses: Option<(String, String, String)>,
}

/// Destroys the guests the scenario created when it ends, whether it passed or not.
struct Cleanup<'a> {
    backend: &'a dyn Backend,
    ids: Vec<GuestId>,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        // Clones first: their template cannot go while they exist on linked storage.
        for id in self.ids.iter().rev() {
            if let Ok(Some(g)) = self.backend.observe_guest(*id)
                && g.managed
            {
                let _ = self.backend.destroy(*id);
            }
        }
    }
}

/// Two IDs no guest of the target has, from `first` on.
pub fn free_ids(backend: &dyn Backend, first: GuestId) -> (GuestId, GuestId) {
    let taken: BTreeSet<GuestId> = backend.observe().expect("observe").guests.keys().copied().collect();
    let mut free = (first..).filter(|id| !taken.contains(id));
    (free.next().expect("a free ID"), free.next().expect("a free ID"))
}

/// Runs the lifecycle; `estate` writes the configuration of these containers into `dir` for
/// this target and validates it.
pub fn lifecycle(
    backend: &dyn Backend,
    site: &Site,
    ids: (GuestId, GuestId),
    dir: &Path,
    estate: &dyn Fn(&Path, &str) -> phoenix_config::Estate,
) {
    let (template, clone) = ids;
    let _cleanup = Cleanup { backend, ids: vec![template, clone] };
    std::fs::write(dir.join("hello.sh"), "#!/bin/sh\nset -eu\necho \"phoenix was here\" > /root/phoenix-hello\n")
        .expect("script");
    let net = |n: usize| {
        let ip = match &site.addresses {
            Some((a, b, gw)) => format!(r#""ip": "{}", "gw": "{gw}""#, if n == 0 { a } else { b }),
            None => r#""ip": "dhcp""#.to_string(),
        };
        format!(r#"{{"name": "eth0", "bridge": "{}", {ip}}}"#, site.bridge)
    };
    let config = |memory: u32| {
        format!(
            r#""{template}": {{"name": "phoenix-test-tpl", "memory_mb": 512, "cores": 1, "storage_pool": "{storage}",
                 "storage_size_gb": 10, "network_config": {net0}, "unprivileged": true, "template": "{os}",
                 "template_snapshot_name": "ready", "tags": ["phoenix-test"]}},
               "{clone}": {{"name": "phoenix-test-web", "memory_mb": {memory}, "cores": 1, "storage_pool": "{storage}",
                 "storage_size_gb": 10, "network_config": {net1}, "unprivileged": true, "clone_from_ctid": "{template}",
                 "application_script": "hello.sh", "tags": ["phoenix-test"]}}"#,
            storage = site.storage,
            os = site.template,
            net0 = net(0),
            net1 = net(1),
        )
    };

    let first = estate(dir, &config(512));
    let (_, report) = super::apply(backend, &first, dir);
    assert!(
        report.outcomes.get(&template) == Some(&GuestOutcome::Created)
            && report.outcomes.get(&clone) == Some(&GuestOutcome::Created),
        "{report:#?}"
    );
    let observed = backend.observe_guest(template).expect("observe").expect("the template exists");
    assert!(observed.managed && observed.snapshots.contains("ready"), "{observed:#?}");
    let web = backend.observe_guest(clone).expect("observe").expect("the clone exists");
    assert_eq!(web.power, phoenix_backend::PowerState::Running);
    assert_eq!(web.config.spelled("tags").as_deref(), Some("phoenix-test"));

    // As configured: nothing to do.
    let (plan, _) = super::apply(backend, &first, dir);
    assert!(plan.is_empty(), "{:#?}", plan.guests.iter().filter(|g| !g.steps.is_empty()).collect::<Vec<_>>());

    // One setting changed: the only change, made in place.
    let (plan, report) = super::apply(backend, &estate(dir, &config(768)), dir);
    assert!(!report.failed(), "{report:#?}");
    let busy: Vec<_> = plan.guests.iter().filter(|g| !g.steps.is_empty()).map(|g| g.id).collect();
    assert_eq!(busy, vec![clone]);
    let web = backend.observe_guest(clone).expect("observe").expect("the clone exists");
    assert_eq!(web.config.spelled("memory_mb").as_deref(), Some("768"));

    backend.destroy(clone).expect("destroy the clone");
    backend.destroy(template).expect("destroy the template");
    assert!(backend.observe_guest(clone).expect("observe").is_none());
    assert!(backend.observe_guest(template).expect("observe").is_none());
}

/// What the target offers the VM scenario.
pub struct VmSite {
    /// The storage for VM disks (`images` content).
    pub storage: String,
    /// The bridge the VMs are attached to.
    pub bridge: String,
    /// A cloud image with the QEMU guest agent installed, as a path on the node inside the
    /// `import` directory of a storage (e.g. `/var/lib/vz/import/debian-12-agent.qcow2`).
    pub image: String,
}

/// The VM lifecycle: a template VM made from a cloud image and made a Proxmox template (its
/// `template_snapshot_name` not taken), a full clone of the template configured by cloud-init,
/// started, and customized with a feature run through the guest agent; planning again finds
/// nothing; one change; both destroyed (also when it fails).
pub fn vm_lifecycle(
    backend: &dyn Backend,
    site: &VmSite,
    ids: (GuestId, GuestId),
    dir: &Path,
    estate: &dyn Fn(&Path, &str) -> phoenix_config::Estate,
) {
    use phoenix_engine::customize::{Feature, FeatureLibrary, FeatureManifest};
    let (template, clone) = ids;
    let _cleanup = Cleanup { backend, ids: vec![template, clone] };
    let library = FeatureLibrary::new([Feature {
        manifest: FeatureManifest { name: "base_setup".into(), ..FeatureManifest::default() },
        script: b"#!/bin/sh\nset -eu\necho 'phoenix was here' > /root/phoenix-hello\n".to_vec(),
    }]);
    let vms = |memory: u32| {
        format!(
            r#"{{"vm_defaults": {{"cores": 1, "memory_mb": 1024, "disk_size_gb": 10, "storage_pool": "{storage}", "network_bridge": "{bridge}"}},
                "vms": [
                  {{"vmid": {template}, "name": "phoenix-test-vm-tpl", "is_template": true, "template_image": "{image}",
                    "template_snapshot_name": "ready", "network_config": {{"ip": "dhcp"}}, "tags": ["phoenix-test"]}},
                  {{"vmid": {clone}, "name": "phoenix-test-vm", "clone_from_vmid": {template}, "memory_mb": {memory},
                    "features": ["base_setup"], "network_config": {{"ip": "dhcp"}}, "tags": ["phoenix-test"]}}
                ]}}"#,
            storage = site.storage,
            bridge = site.bridge,
            image = site.image,
        )
    };
    let write = |memory: u32| {
        std::fs::write(dir.join("phoenix_vm_configs.json"), vms(memory)).expect("write");
        estate(dir, "")
    };

    let first = write(1024);
    let (_, report) = super::apply_with(backend, &first, dir, &library);
    assert!(
        report.outcomes.get(&template) == Some(&GuestOutcome::Created)
            && report.outcomes.get(&clone) == Some(&GuestOutcome::Created),
        "{report:#?}"
    );
    let vm = backend.observe_guest(clone).expect("observe").expect("the clone exists");
    assert_eq!((vm.kind, vm.power), (phoenix_backend::GuestKind::Vm, phoenix_backend::PowerState::Running));
    let made = backend.observe_guest(template).expect("observe").expect("the template exists");
    assert!(made.template && made.snapshots.is_empty(), "{made:#?}");
    assert_eq!(made.power, phoenix_backend::PowerState::Stopped);

    let (plan, _) = super::apply_with(backend, &first, dir, &library);
    assert!(plan.is_empty(), "{:#?}", plan.guests.iter().filter(|g| !g.steps.is_empty()).collect::<Vec<_>>());

    let (plan, report) = super::apply_with(backend, &write(1536), dir, &library);
    assert!(!report.failed(), "{report:#?}");
    let busy: Vec<_> = plan.guests.iter().filter(|g| !g.steps.is_empty()).map(|g| g.id).collect();
    assert_eq!(busy, vec![clone]);
    let vm = backend.observe_guest(clone).expect("observe").expect("the clone exists");
    assert_eq!(vm.config.spelled("memory_mb").as_deref(), Some("1536"));

    backend.destroy(clone).expect("destroy the clone");
    backend.destroy(template).expect("destroy the template");
    assert!(backend.observe_guest(clone).expect("observe").is_none());
    assert!(backend.observe_guest(template).expect("observe").is_none());
}
