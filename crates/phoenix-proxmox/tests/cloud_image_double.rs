//! VMs from a bare cloud-image name (`noble-server-cloudimg-amd64.img`) on the Proxmox backend
//! against the PVE test double, on both versions: the image is downloaded through the API into
//! the `import` directory of a directory storage (`download-url`, `content=import`, stored as
//! `.qcow2`), once for two VMs made from it at once, before they are created from it; planning
//! again downloads nothing, nor does a VM made again from the image on the storage. Preflight
//! names the privilege the download needs.

mod support;

use std::path::Path;

use phoenix_backend::{Backend, CreateRequest, CreateSource};
use phoenix_engine::GuestOutcome;
use phoenix_pve_double::{PveDouble, PveVersion};

const NAME: &str = "noble-server-cloudimg-amd64.img";
const URL: &str = "https://cloud-images.ubuntu.com/noble/current/noble-server-cloudimg-amd64.img";
const VOLUME: &str = "fastData:import/noble-server-cloudimg-amd64.qcow2";

fn double(version: PveVersion) -> PveDouble {
    let double = support::start(version);
    double.add_dir_storage("fastData", "/fastData/shared-iso", "iso,vztmpl,import");
    double.add_download(URL, 2_361_393_152);
    double
}

fn estate(dir: &Path, double: &PveDouble) -> phoenix_config::Estate {
    let vm = |id: u32, ip: u32| {
        format!(
            r#"{{"vmid": {id}, "name": "noble-{id}", "template_image": "{NAME}",
                 "network_config": {{"ip": "10.0.0.{ip}/24", "gw": "10.0.0.1"}}}}"#
        )
    };
    let vms = format!(
        r#"{{"vm_defaults": {{"cores": 2, "memory_mb": 2048, "disk_size_gb": 16, "storage_pool": "local-zfs",
                             "network_bridge": "vmbr0"}},
            "vms": [{}, {}]}}"#,
        vm(8100, 100),
        vm(8101, 101)
    );
    std::fs::write(dir.join("phoenix_vm_configs.json"), vms).expect("write");
    support::estate(dir, double, "", "")
}

fn downloads(double: &PveDouble) -> Vec<phoenix_pve_double::Recorded> {
    double.requests().into_iter().filter(|r| r.method == "POST" && r.path.ends_with("/download-url")).collect()
}

#[test]
fn a_vm_from_a_bare_image_name_is_built_after_one_download_and_planned_again_without_one() {
    for version in PveVersion::ALL {
        let double = double(version);
        let dir = tempfile::tempdir().expect("tmp");
        let estate = estate(dir.path(), &double);
        let backend = support::backend(&double, None);
        let (plan, report) = support::apply(&backend, &estate, dir.path());
        assert!(report.outcomes.values().all(|o| *o == GuestOutcome::Created), "{version:?}: {report:#?}");
        assert!(
            plan.guests.iter().all(|g| g.steps[0].reason.ends_with(&format!("created from {URL}"))),
            "{:?}",
            plan.guests[0].steps
        );

        // One download, into the import directory, as a .qcow2; waited for; before the creates.
        let sent = downloads(&double);
        assert_eq!(sent.len(), 1, "{sent:#?}");
        assert_eq!(sent[0].path, "/nodes/pve1/storage/fastData/download-url");
        let param = |k: &str| sent[0].params.get(k).map(String::as_str);
        assert_eq!(
            (param("content"), param("filename"), param("url")),
            (Some("import"), Some("noble-server-cloudimg-amd64.qcow2"), Some(URL))
        );
        assert!(double.images().contains(&VOLUME.to_string()));
        let requests = double.requests();
        let download = requests.iter().position(|r| r.path.ends_with("/download-url")).expect("download");
        assert!(
            requests[download..].iter().any(|r| r.path.contains(":download:") && r.path.ends_with("/status")),
            "the download task was waited for"
        );
        for id in [8100, 8101] {
            let create = requests
                .iter()
                .position(|r| r.method == "POST" && r.path == "/nodes/pve1/qemu" && r.params["vmid"] == id.to_string())
                .expect("created");
            assert!(download < create);
            assert_eq!(requests[create].params["scsi0"], format!("local-zfs:0,import-from={VOLUME}"));
            let config = double.vm_config(id).expect("the VM");
            assert_eq!(config["scsi0"], format!("local-zfs:vm-{id}-disk-0,size=16G"), "{config:?}");
        }

        // Again: nothing to do, nothing downloaded.
        let (plan, report) = support::apply(&backend, &estate, dir.path());
        assert!(plan.is_empty() && !report.failed(), "{:#?}", plan.guests);
        // A VM made again from the image: the storage has it, nothing is downloaded.
        backend.destroy(8100).expect("destroy");
        let (_, report) = support::apply(&backend, &estate, dir.path());
        assert_eq!(report.outcomes.get(&8100), Some(&GuestOutcome::Created), "{report:#?}");
        assert_eq!(downloads(&double).len(), 1, "downloaded again");
    }
}

#[test]
fn the_download_needs_its_privileges_and_a_storage_for_images() {
    let double = double(PveVersion::V9);
    let dir = tempfile::tempdir().expect("tmp");
    let estate = estate(dir.path(), &double);
    let desired = phoenix_plan::desired(&estate, &|_| Vec::new());
    let d = &desired.guests[&8100];
    assert_eq!(d.source, CreateSource::Template(URL.into()));
    let request =
        CreateRequest { id: d.id, kind: d.kind, node: None, source: d.source.clone(), config: d.config.clone() };
    let backend = support::backend(&double, None);
    backend.check_create(&request).expect("all privileges");

    // Without Datastore.AllocateTemplate on the storage: named, before anything is downloaded.
    double.set_privileges("/storage/fastData", &["Datastore.AllocateSpace", "Datastore.Audit"]);
    let backend = support::backend(&double, None);
    let e = backend.check_create(&request).expect_err("no AllocateTemplate");
    assert!(e.message.contains("Datastore.AllocateTemplate on /storage/fastData"), "{}", e.message);
    // Nor the network privilege: Sys.Audit and Sys.Modify on /, or Sys.AccessNetwork on the node.
    double.set_privileges("/storage/fastData", &[]);
    let mut root: Vec<&str> = phoenix_pve_double::ALL_PRIVILEGES.to_vec();
    root.retain(|p| *p != "Sys.Modify");
    double.set_privileges("/", &root);
    let backend = support::backend(&double, None);
    let e = backend.check_create(&request).expect_err("no network privilege");
    assert!(e.message.contains("Sys.AccessNetwork on /nodes/pve1"), "{}", e.message);
    double.set_privileges("/nodes/pve1", &["Sys.AccessNetwork"]);
    let backend = support::backend(&double, None);
    backend.check_create(&request).expect("Sys.AccessNetwork on the node is enough");
    assert!(downloads(&double).is_empty());

    // No directory storage takes images: said, with what to do.
    let double = support::start(PveVersion::V8);
    let estate = self::estate(dir.path(), &double);
    let backend = support::backend(&double, None);
    let plan = support::plan(&backend, &estate, dir.path());
    let refused = plan.issues.iter().find(|i| i.guest == 8100).expect("an issue");
    assert!(refused.message.contains("no storage of node pve1 takes downloaded cloud images"), "{}", refused.message);
    assert!(downloads(&double).is_empty() && double.vm_config(8100).is_none());
}
