//! QEMU VMs on the Proxmox backend against the PVE test double, on both versions: a template VM
//! built from a cloud image (disk imported, cloud-init, agent) and made a Proxmox template (its
//! `template_snapshot_name` not taken), a VM cloned in full from the template itself with its own
//! cloud-init settings, its own SSH host keys and a feature run through the guest agent; planning
//! again finds nothing, one change is the only change, destroy. The password hash is a secret
//! reference that no plan shows resolved; a VM whose agent never answers fails with its name.

mod support;

use std::path::Path;
use std::time::Duration;

use phoenix_backend::{Backend, ExecRequest, FilePush, GuestKind};
use phoenix_engine::GuestOutcome;
use phoenix_engine::customize::{Feature, FeatureLibrary, FeatureManifest};
use phoenix_plan::Action;
use phoenix_proxmox::backend::ProxmoxBackend;
use phoenix_pve_double::{PveDouble, PveVersion};

const IMAGE: &str = "/fastData/shared-iso/import/noble-server-cloudimg-amd64.img";
const IMAGE_VOLUME: &str = "fastData:import/noble-server-cloudimg-amd64.img";
const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBq3fSyYgOQn1lmDxqj0mDfvjXnGk0zQ8dfb0ZgqRkVp admin@workstation";
/// The hash the template's reference (`file:`) resolves to.
const REFERENCED_HASH: &str = "$6$rounds=5000$pepper$Referenced.Hash.Value.That.Must.Not.Show";
/// The clone's hash, given inline.
const INLINE_HASH: &str = "$6$salt$Inline.Hash.Value.Also.Kept.Out.Of.Plans";

/// A double with the cloud image on a storage of content `import`, and agents that answer
/// shortly after a start.
fn double(version: PveVersion) -> PveDouble {
    let double = support::start(version);
    double.add_dir_storage("fastData", "/fastData/shared-iso", "iso,vztmpl,import");
    double.add_image(IMAGE_VOLUME, 2_361_393_152);
    double.set_agent_delay(Duration::from_millis(60));
    double
}

fn library() -> FeatureLibrary {
    FeatureLibrary::new([Feature {
        manifest: FeatureManifest { name: "base_setup".into(), ..FeatureManifest::default() },
        script: b"#!/bin/sh\necho installing the application\n".to_vec(),
    }])
}

/// The template (8000) and its clone (8001); `clone_extra` is added to the clone.
fn vms(hash_file: &Path, clone_extra: &str) -> String {
    format!(
        r#"{{"vm_defaults": {{"cores": 2, "memory_mb": 2048, "disk_size_gb": 16, "storage_pool": "local-zfs", "network_bridge": "vmbr0"}},
            "vms": [
              {{"vmid": 8000, "name": "ubuntu-vm-template", "is_template": true, "template_image": "{IMAGE}",
                "template_snapshot_name": "cloud-ready", "network_config": {{"ip": "dhcp"}},
                "user_config": {{"username": "phoenix_admin", "password_hash": "file:{}", "ssh_public_key": "{KEY}"}}}},
              {{"vmid": 8001, "name": "app-vm", "clone_from_vmid": 8000, "memory_mb": 4096, "disk_size_gb": 32,
                "features": ["base_setup"],
                "network_config": {{"ip": "10.0.0.99/24", "gw": "10.0.0.1", "nameserver": "10.0.0.1"}},
                "user_config": {{"username": "app", "password_hash": "{INLINE_HASH}", "ssh_public_key": "{KEY}"}},
                "start_at_boot": true, "boot_order": 1, "boot_delay": 5, "tags": ["App", "web"],
                "firewall": {{"enabled": true, "rules": [{{"type": "in", "action": "ACCEPT", "proto": "tcp", "port": "22"}}]}}
                {clone_extra}}}
            ]}}"#,
        hash_file.display()
    )
}

fn write_estate(dir: &Path, double: &PveDouble, vms: &str) -> phoenix_config::Estate {
    std::fs::write(dir.join("phoenix_vm_configs.json"), vms).expect("write");
    support::estate(dir, double, "", "")
}

fn backend(double: &PveDouble, estate: &phoenix_config::Estate) -> ProxmoxBackend {
    support::backend(double, None)
        .with_vm_passwords(phoenix_plan::vm_passwords(estate))
        .with_agent_wait(Duration::from_secs(5))
}

/// Plans without applying.
fn plan(backend: &dyn Backend, estate: &phoenix_config::Estate, dir: &Path) -> phoenix_plan::Plan {
    support::plan_with(backend, estate, dir, &library()).0
}

fn assert_no_secret(text: &str) {
    for secret in [REFERENCED_HASH, INLINE_HASH, "Referenced.Hash", "Inline.Hash"] {
        assert!(!text.contains(secret), "a password hash shows in: {text}");
    }
}

fn lifecycle(version: PveVersion) {
    let double = double(version);
    let dir = tempfile::tempdir().expect("tempdir");
    let hash_file = dir.path().join("admin.hash");
    std::fs::write(&hash_file, format!("{REFERENCED_HASH}\n")).expect("write");
    let estate = write_estate(dir.path(), &double, &vms(&hash_file, ""));
    let backend = backend(&double, &estate);
    assert!(backend.capabilities().kinds.contains(&GuestKind::Vm));

    // The first plan: created from the image and made a template, cloned from it; no hash in it.
    let first = plan(&backend, &estate, dir.path());
    assert!(first.issues.is_empty(), "{:?}", first.issues);
    let template_steps: Vec<&Action> = first.guests[0].steps.iter().map(|s| &s.action).collect();
    assert_eq!(template_steps.last(), Some(&&Action::MakeTemplate), "{template_steps:?}");
    assert!(first.notes.iter().any(|n| n.contains("cloud-ready is not taken")), "{:?}", first.notes);
    assert_no_secret(&serde_json::to_string(&first).expect("json"));
    assert_no_secret(&format!("{first:?}"));
    let desired = phoenix_plan::desired(&estate, &|_| Vec::new());
    assert_no_secret(&serde_json::to_string(&desired).expect("json"));

    let (_, report) = support::apply_with(&backend, &estate, dir.path(), &library());
    assert!(!report.failed(), "{:?}", report.outcomes);
    assert_eq!(report.outcomes.get(&8000), Some(&GuestOutcome::Created));
    assert_eq!(report.outcomes.get(&8001), Some(&GuestOutcome::Created));

    // The template: its disk imported from the image's volume and grown, cloud-init, the agent;
    // then made a template, its disk a base volume.
    let t = double.vm_config(8000).expect("template exists");
    assert_eq!(t["scsi0"], "local-zfs:base-8000-disk-0,size=16G", "{t:?}");
    assert_eq!(t["template"], "1");
    assert_eq!(double.vm_running(8000), Some(false));
    assert_eq!(t["ide2"], "local-zfs:vm-8000-cloudinit,media=cdrom");
    assert_eq!(t["agent"], "enabled=1");
    assert_eq!(t["serial0"], "socket");
    assert_eq!(t["boot"], "order=scsi0");
    assert_eq!(t["ipconfig0"], "ip=dhcp");
    assert_eq!(t["ciuser"], "phoenix_admin");
    assert_eq!(t["cipassword"], REFERENCED_HASH, "the reference is resolved when it is set");
    assert_eq!(
        t["sshkeys"],
        "ssh-ed25519%20AAAAC3NzaC1lZDI1NTE5AAAAIBq3fSyYgOQn1lmDxqj0mDfvjXnGk0zQ8dfb0ZgqRkVp%20admin%40workstation"
    );
    assert!(t["net0"].starts_with("virtio=BC:24:11:") && t["net0"].ends_with(",bridge=vmbr0"), "{}", t["net0"]);
    assert!(t["description"].starts_with("Managed by Phoenix."));
    assert!(double.vm_snapshots(8000).is_empty(), "Proxmox makes templates only of guests without snapshots");
    let create = double
        .requests()
        .into_iter()
        .find(|r| r.method == "POST" && r.path == "/nodes/pve1/qemu")
        .expect("created through the API");
    assert_eq!(create.params["scsi0"], format!("local-zfs:0,import-from={IMAGE_VOLUME}"), "a volume, never a path");

    // The clone: its own cloud-init settings, a new MAC, the disk grown, the firewall on.
    let c = double.vm_config(8001).expect("clone exists");
    assert_eq!(c["name"], "app-vm");
    assert_eq!(c["memory"], "4096");
    assert_eq!(c["ipconfig0"], "gw=10.0.0.1,ip=10.0.0.99/24");
    assert_eq!(c["nameserver"], "10.0.0.1");
    assert_eq!(c["ciuser"], "app");
    assert_eq!(c["cipassword"], INLINE_HASH);
    assert_eq!(c["scsi0"], "local-zfs:vm-8001-disk-0,size=32G");
    assert_eq!(c["onboot"], "1");
    assert_eq!(c["startup"], "order=1,up=5");
    assert_eq!(c["tags"], "app;web");
    assert!(c["net0"].contains("firewall=1"), "{}", c["net0"]);
    assert_ne!(c["net0"], t["net0"], "a clone gets a MAC of its own");
    let clone = double.requests().into_iter().find(|r| r.path.ends_with("/qemu/8000/clone")).expect("cloned");
    assert!(!clone.params.contains_key("snapname"), "a template is cloned as it is: {:?}", clone.params);
    assert_eq!(clone.params["full"], "1");

    // The feature ran through the guest agent, argv intact, and its marker was written.
    let commands = double.agent_commands(8001);
    let run = commands.iter().find(|c| c[0].ends_with("/run")).expect("the feature's script ran");
    assert_eq!(run[1..3], ["--phoenix-contract".to_string(), phoenix_engine::customize::CONTRACT_VERSION.to_string()]);
    assert!(commands.iter().any(|c| c[0] == "rm" && c[1] == "-rf"), "{commands:?}");
    let description = double.description(8001).expect("a description");
    let markers = phoenix_proxmox::record::read(&description).expect("the record, in the description");
    assert!(String::from_utf8_lossy(&markers).contains("feature:base_setup"), "{description}");
    assert_eq!(double.vm_running(8001), Some(true));
    // The clone got its own SSH host keys through the agent, before its feature, and recorded
    // it under its own ID; the template, made from the cloud image, never.
    let keys = commands.iter().position(|c| c[0] == "/bin/sh" && c.iter().any(|a| a.contains("ssh-keygen -q")));
    let feature = commands.iter().position(|c| c[0].ends_with("/run"));
    assert!(keys.is_some() && keys < feature, "{commands:?}");
    assert!(String::from_utf8_lossy(&markers).contains("ssh-host-keys:8001"), "{description}");
    assert!(!double.agent_commands(8000).iter().flatten().any(|a| a.contains("ssh-keygen")));

    // Planning again: nothing to do (the password compared by its fingerprint).
    let again = plan(&backend, &estate, dir.path());
    for g in &again.guests {
        assert!(g.steps.is_empty(), "{} plans {:?}", g.id, g.steps);
    }
    assert_no_secret(&serde_json::to_string(&again).expect("json"));

    // One change, and it is the only change: memory, which waits for the next boot.
    let changed = estate_in(dir.path(), &double, &vms(&hash_file, ""), r#""memory_mb": 4096"#, r#""memory_mb": 6144"#);
    let backend = self::backend(&double, &changed);
    let p = plan(&backend, &changed, dir.path());
    assert!(p.guests.iter().find(|g| g.id == 8000).is_some_and(|g| g.steps.is_empty()));
    let g = p.guests.iter().find(|g| g.id == 8001).expect("clone planned");
    let Some(Action::Configure { changes }) = g.steps.first().map(|s| &s.action) else { panic!("{:?}", g.steps) };
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(
        (&changes[0].field, changes[0].new.as_ref()),
        (&phoenix_backend::Field::MemoryMb, Some(&6144u64.into()))
    );
    assert!(matches!(g.steps.get(1).map(|s| &s.action), Some(Action::Restart)), "{:?}", g.steps);
    let (_, report) = support::apply_with(&backend, &changed, dir.path(), &library());
    assert!(!report.failed(), "{:?}", report.outcomes);
    assert_eq!(double.vm_config(8001).expect("clone")["memory"], "6144");
    assert!(plan(&backend, &changed, dir.path()).guests.iter().all(|g| g.steps.is_empty()));

    // A new password hash for the clone: only its fingerprint shows.
    let rehashed = vms(&hash_file, "").replace(INLINE_HASH, "$6$other$Second.Inline.Hash");
    let rehashed = write_estate(dir.path(), &double, &rehashed.replace(r#""memory_mb": 4096"#, r#""memory_mb": 6144"#));
    let backend = self::backend(&double, &rehashed);
    let p = plan(&backend, &rehashed, dir.path());
    let text = serde_json::to_string(&p).expect("json");
    assert!(text.contains("ci.password") && text.contains("sha256:"), "{text}");
    assert!(!text.contains("Second.Inline.Hash"), "{text}");
    let (_, report) = support::apply_with(&backend, &rehashed, dir.path(), &library());
    assert!(!report.failed(), "{:?}", report.outcomes);
    assert_eq!(double.vm_config(8001).expect("clone")["cipassword"], "$6$other$Second.Inline.Hash");

    // Destroy: the clone, then the template.
    backend.destroy(8001).expect("destroy the clone");
    backend.destroy(8000).expect("destroy the template");
    assert!(double.vm_config(8001).is_none() && double.vm_config(8000).is_none());
    let destroy = double.requests().into_iter().find(|r| r.method == "DELETE").expect("destroyed");
    assert_eq!(destroy.params.get("purge").map(String::as_str), Some("1"));
}

/// The configuration with one value replaced.
fn estate_in(dir: &Path, double: &PveDouble, vms: &str, from: &str, to: &str) -> phoenix_config::Estate {
    assert!(vms.contains(from));
    write_estate(dir, double, &vms.replace(from, to))
}

#[test]
fn a_vm_template_and_its_clone_on_8() {
    lifecycle(PveVersion::V8);
}

#[test]
fn a_vm_template_and_its_clone_on_9() {
    lifecycle(PveVersion::V9);
}

#[test]
fn commands_and_files_inside_a_vm_go_through_the_agent() {
    for version in PveVersion::ALL {
        let double = double(version);
        let dir = tempfile::tempdir().expect("tempdir");
        let hash_file = dir.path().join("admin.hash");
        std::fs::write(&hash_file, REFERENCED_HASH).expect("write");
        let one = vms(&hash_file, "");
        // Without `is_template`: the VM stays a VM that runs.
        let only_template = format!("{}]}}", &one[..one.find(",\n              {\"vmid\": 8001").expect("clone")])
            .replace(r#""is_template": true, "#, "");
        let estate = write_estate(dir.path(), &double, &only_template);
        let backend = backend(&double, &estate);
        let (_, report) = support::apply_with(&backend, &estate, dir.path(), &library());
        assert!(!report.failed(), "{:?}", report.outcomes);

        // argv reaches the agent as it is: no shell joins it.
        double.set_agent_output(8000, "printf", 0, "a b;c");
        let out = backend
            .exec(8000, &ExecRequest::new(["printf", "%s", "a b;c", "$(x)", ""], Duration::from_secs(10)))
            .expect("exec");
        assert_eq!((out.status, out.stdout.as_slice()), (0, &b"a b;c"[..]));
        assert_eq!(
            double.agent_commands(8000).last().expect("ran"),
            &["printf", "%s", "a b;c", "$(x)", ""].map(String::from).to_vec()
        );
        double.set_agent_output(8000, "false", 3, "");
        assert_eq!(backend.exec(8000, &ExecRequest::new(["false"], Duration::from_secs(10))).expect("exec").status, 3);

        // A file larger than one file-write: written in parts, joined, given its mode and owner.
        let content: Vec<u8> = (0..150_000u32).map(|i| b"abcdefghij"[(i % 10) as usize]).collect();
        let file =
            FilePush { path: "/opt/app/big.bin".into(), content: content.clone(), mode: 0o750, uid: 1000, gid: 100 };
        backend.push_file(8000, &file).expect("push");
        let (stored, mode) = double.vm_file(8000, "/opt/app/big.bin").expect("written");
        assert_eq!(stored, content);
        assert_eq!(mode, Some(("750".to_string(), "1000:100".to_string())));
        let writes = double.requests().into_iter().filter(|r| r.path.ends_with("/agent/file-write")).count();
        assert!(writes >= 4, "150 000 bytes take 4 writes of at most 46 080, {writes} were sent");
        assert_eq!(backend.read_file(8000, "/opt/app/big.bin").expect("read"), Some(content));
        assert_eq!(backend.read_file(8000, "/nowhere").expect("read"), None);

        // A stopped VM: its files cannot be read (the engine then runs customizations again).
        backend.stop(8000).expect("stop");
        let e = backend.read_file(8000, "/opt/app/big.bin").expect_err("stopped");
        assert_eq!(e.kind, phoenix_backend::ErrorKind::Unsupported);
        backend.destroy(8000).expect("destroy");
    }
}

#[test]
fn a_vm_whose_agent_never_answers_fails_naming_it() {
    let double = double(PveVersion::V9);
    double.silence_agent(8000);
    let dir = tempfile::tempdir().expect("tempdir");
    let hash_file = dir.path().join("admin.hash");
    std::fs::write(&hash_file, REFERENCED_HASH).expect("write");
    let one = vms(&hash_file, "");
    let only_template = format!("{}]}}", &one[..one.find(",\n              {\"vmid\": 8001").expect("clone")]);
    let with_feature =
        only_template.replace(r#""template_snapshot_name""#, r#""features": ["base_setup"], "template_snapshot_name""#);
    let estate = write_estate(dir.path(), &double, &with_feature);
    let backend = support::backend(&double, None)
        .with_vm_passwords(phoenix_plan::vm_passwords(&estate))
        .with_agent_wait(Duration::from_millis(300));
    let (_, report) = support::apply_with(&backend, &estate, dir.path(), &library());
    let Some(GuestOutcome::Failed(message)) = report.outcomes.get(&8000) else { panic!("{:?}", report.outcomes) };
    assert!(message.contains("VM 8000") && message.contains("guest agent did not answer"), "{message}");
    assert_eq!(double.vm_running(8000), Some(true), "the VM itself was started");
}

#[test]
fn a_cloud_image_outside_an_import_directory_is_refused_before_anything_is_created() {
    let double = double(PveVersion::V8);
    let dir = tempfile::tempdir().expect("tempdir");
    let hash_file = dir.path().join("admin.hash");
    std::fs::write(&hash_file, REFERENCED_HASH).expect("write");
    let one = vms(&hash_file, "").replace("/shared-iso/import/", "/shared-iso/");
    let estate = write_estate(dir.path(), &double, &one);
    let backend = backend(&double, &estate);
    let (plan, _, _) = support::plan_with(&backend, &estate, dir.path(), &library());
    let refused = plan.issues.iter().find(|i| i.guest == 8000).expect("an issue");
    assert!(refused.message.contains("no storage of node pve1 holds the cloud image"), "{}", refused.message);
    assert!(double.vm_config(8000).is_none());
    assert!(double.requests().iter().all(|r| !(r.method == "POST" && r.path == "/nodes/pve1/qemu")));
}

#[test]
fn tokens_may_not_import_from_a_path_and_sshkeys_must_be_encoded() {
    // What the double refuses as Proxmox does, asked directly.
    let double = double(PveVersion::V9);
    double.expect_refusals();
    let api = support::client(&double);
    let e = api
        .request(
            "POST",
            "/nodes/pve1/qemu",
            &[("vmid", "9000".into()), ("scsi0", format!("local-zfs:0,import-from={IMAGE}"))],
        )
        .expect_err("an absolute path is root@pam's");
    assert!(e.message.contains("403"), "{}", e.message);
    let e = api
        .request("POST", "/nodes/pve1/qemu", &[("vmid", "9000".into()), ("sshkeys", KEY.into())])
        .expect_err("sshkeys are percent-encoded");
    assert!(e.detail.unwrap_or_default().contains("sshkeys"));
    let e = api
        .request("POST", "/nodes/pve1/qemu", &[("vmid", "9000".into()), ("args", "-no-reboot".into())])
        .expect_err("args");
    assert!(e.message.contains("403"), "{}", e.message);
}

#[test]
fn the_vms_of_the_ai_stack_example_build_and_plan_again_as_nothing() {
    let double = double(PveVersion::V9);
    let dir = tempfile::tempdir().expect("tempdir");
    let estate = support::ai_stack::write(dir.path(), &double, support::TOKEN.0);
    let library = support::ai_stack::library();
    let backend = backend(&double, &estate);
    let planner = || {
        phoenix_engine::planner::Planner::new(estate.clone(), &library, dir.path(), &[8000, 8001])
            .expect("the example's VMs")
    };
    let round = |planner: &mut phoenix_engine::planner::Planner| {
        let plan = planner.plan(&backend, &phoenix_engine::health::AlwaysUp).expect("observe").plan;
        assert!(plan.issues.is_empty(), "{:?}", plan.issues);
        plan
    };
    let mut first = planner();
    let plan = round(&mut first);
    assert_eq!(plan.guests.len(), 2);
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let engine = phoenix_engine::Engine {
        backend: &backend,
        prober: &phoenix_engine::health::AlwaysUp,
        reporter: &phoenix_engine::Silent,
        cancel: &cancel,
    };
    let report = engine.apply(first.desired(), &plan, first.jobs(), &phoenix_engine::ApplyOptions::default());
    assert!(!report.failed(), "{:?}", report.outcomes);
    let portainer = double.vm_config(8001).expect("portainer-vm");
    assert_eq!(portainer["scsi0"], "local-zfs:vm-8001-disk-0,size=64G");
    assert_eq!(portainer["ipconfig0"], "gw=10.0.0.1,ip=10.0.0.99/24");
    assert!(
        double.agent_commands(8001).iter().any(|c| c[0].contains("feature-docker")),
        "{:?}",
        double.agent_commands(8001)
    );
    assert!(round(&mut planner()).guests.iter().all(|g| g.steps.is_empty()));
}

/// A VM cloned from a snapshot (its source not a Proxmox template) and given no password: the
/// snapshot keeps no description, so only the clone call's `description` marks the clone, and
/// the next plan still sees it as Phoenix's.
#[test]
fn a_clone_of_a_vm_snapshot_is_marked_as_phoenix_s() {
    let double = double(PveVersion::V9);
    let dir = tempfile::tempdir().expect("tempdir");
    let hash_file = dir.path().join("admin.hash");
    std::fs::write(&hash_file, REFERENCED_HASH).expect("write");
    let both = vms(&hash_file, "").replace(r#""is_template": true, "#, "");
    let from = format!(
        r#""user_config": {{"username": "app", "password_hash": "{INLINE_HASH}", "ssh_public_key": "{KEY}"}},"#
    );
    let clone_from_snapshot = both.replace(&from, "");
    assert_ne!(clone_from_snapshot, both);
    let estate = write_estate(dir.path(), &double, &clone_from_snapshot);
    let backend = backend(&double, &estate);
    let (_, report) = support::apply_with(&backend, &estate, dir.path(), &library());
    assert!(!report.failed(), "{:?}", report.outcomes);
    let clone = double.requests().into_iter().find(|r| r.path.ends_with("/qemu/8000/clone")).expect("cloned");
    assert_eq!(clone.params.get("snapname").map(String::as_str), Some("cloud-ready"), "{:?}", clone.params);
    let c = double.vm_config(8001).expect("clone exists");
    assert!(c.get("description").is_some_and(|d| d.starts_with("Managed by Phoenix.")), "{c:?}");
    assert!(backend.observe_guest(8001).expect("observe").expect("8001").managed);
    let again = plan(&backend, &estate, dir.path());
    assert!(again.issues.is_empty(), "{:?}", again.issues);
}

/// A VM is cloned to another node only onto shared storage, as qemu-server's `clone_vm` allows:
/// from the template's local storage the plan says what to do instead (and the double refuses
/// the call itself); onto shared storage the clone is made there.
#[test]
fn a_vm_is_cloned_to_another_node_only_onto_shared_storage() {
    let double = double(PveVersion::V9);
    double.add_node("pve2");
    double.add_storage("ceph", "rbd", "rootdir,images");
    let dir = tempfile::tempdir().expect("tempdir");
    let hash_file = dir.path().join("admin.hash");
    std::fs::write(&hash_file, REFERENCED_HASH).expect("write");

    // The template is made; its clone to pve2 from local-zfs is refused before it is asked for.
    let local = write_estate(dir.path(), &double, &vms(&hash_file, r#", "node": "pve2""#));
    let backend = backend(&double, &local);
    let (_, report) = support::apply_with(&backend, &local, dir.path(), &library());
    assert_eq!(report.outcomes.get(&8000), Some(&GuestOutcome::Created), "{report:#?}");
    let failed = format!("{:?}", report.outcomes.get(&8001));
    assert!(failed.contains("cannot clone 8000 to node pve2") && failed.contains("local-zfs"), "{failed}");
    assert!(!double.requests().iter().any(|r| r.path.ends_with("/qemu/8000/clone")), "asked for anyway");
    // Once the template exists, the plan says so.
    let issues = support::create_issues(&backend, &local, dir.path());
    assert_eq!(issues.iter().map(|i| i.0).collect::<Vec<_>>(), [8001], "{issues:#?}");
    assert!(issues[0].2.contains("qm migrate 8001 pve2") && issues[0].2.contains("shared storage"), "{issues:#?}");
    // What Proxmox answers such a call.
    let refused = support::client(&double)
        .request("POST", "/nodes/pve1/qemu/8000/clone", &[("newid", "8002".into()), ("target", "pve2".into())])
        .expect_err("refused");
    assert!(refused.message.contains("can't clone VM to node 'pve2' (VM uses local storage)"), "{refused:?}");

    // Onto shared storage: cloned there.
    let shared = write_estate(dir.path(), &double, &vms(&hash_file, r#", "node": "pve2", "storage_pool": "ceph""#));
    let backend = self::backend(&double, &shared);
    let (_, report) = support::apply_with(&backend, &shared, dir.path(), &library());
    assert_eq!(report.outcomes.get(&8001), Some(&GuestOutcome::Created), "{report:#?}");
    let clone = double
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/qemu/8000/clone") && r.params.get("newid").map(String::as_str) == Some("8001"))
        .expect("cloned");
    assert_eq!(
        (clone.params.get("target").map(String::as_str), clone.params.get("storage").map(String::as_str)),
        (Some("pve2"), Some("ceph"))
    );
}
