//! `download-url` as the double plays it, as pve-storage answers it: the content types the
//! schema names only, a file-based storage that holds the content type, a file name with an
//! extension the content type takes; then a task that puts the file on the storage, or fails for
//! a URL it cannot fetch and for a file that is there already.

mod support;

use std::time::Duration;

use phoenix_proxmox::transport::api::ApiClient;
use phoenix_proxmox::transport::task::{Poll, wait};
use phoenix_pve_double::{PveDouble, PveVersion};

const URL: &str = "https://cloud-images.ubuntu.com/noble/current/noble-server-cloudimg-amd64.img";

fn start(version: PveVersion) -> (PveDouble, ApiClient) {
    support::start(version, Some(Duration::from_millis(20)))
}

fn params(content: &str, filename: &str, url: &str) -> Vec<(&'static str, String)> {
    vec![("content", content.into()), ("filename", filename.into()), ("url", url.into())]
}

/// Downloads, waiting for the task; its failure is an error with the task's log.
fn download(api: &ApiClient, storage: &str, params: &[(&str, String)]) -> Result<(), String> {
    let answer = api
        .request("POST", &format!("/nodes/pve1/storage/{storage}/download-url"), params)
        .map_err(|e| format!("{e} {}", e.detail.clone().unwrap_or_default()))?;
    let upid = answer.as_str().expect("a UPID").parse().expect("valid UPID");
    let poll = Poll { first: Duration::from_millis(5), max: Duration::from_millis(20) };
    wait(api, &upid, poll, Duration::from_secs(10))
        .map(|_| ())
        .map_err(|e| format!("{e} {}", e.detail.clone().unwrap_or_default()))
}

#[test]
fn images_are_downloaded_into_import_directories_as_proxmox_takes_them() {
    for version in PveVersion::ALL {
        let (double, api) = start(version);
        // Refusals on purpose, one of them invalid for the schema: kept out of the request log.
        double.expect_refusals();
        double.add_dir_storage("images", "/var/lib/images", "iso,import");
        double.add_download(URL, 2_361_393_152);
        let name = "noble-server-cloudimg-amd64.qcow2";

        let e = download(&api, "images", &params("images", name, URL)).expect_err("not a content type it takes");
        assert!(e.contains("Parameter verification failed") && e.contains("enumeration"), "{e}");
        let e = download(&api, "local", &params("import", name, URL)).expect_err("local holds no import");
        assert!(e.contains("storage 'local' is not configured for content-type 'import'"), "{e}");
        let e = download(&api, "local-zfs", &params("import", name, URL)).expect_err("not file-based");
        assert!(e.contains("not a file based storage"), "{e}");
        let e = download(&api, "images", &params("import", "noble-server-cloudimg-amd64.img", URL))
            .expect_err(".img is no import extension");
        assert!(e.contains("invalid filename or wrong extension"), "{e}");
        let e = download(&api, "images", &params("import", name, "https://cloud-images.ubuntu.com/nowhere.img"))
            .expect_err("not found");
        assert!(e.contains("404"), "{e}");
        assert!(double.images().is_empty());

        download(&api, "images", &params("import", name, URL)).expect("downloaded");
        let listed =
            api.request("GET", "/nodes/pve1/storage/images/content", &[("content", "import".into())]).expect("content");
        let volumes: Vec<&str> = listed.as_array().into_iter().flatten().filter_map(|v| v["volid"].as_str()).collect();
        assert_eq!(volumes, [format!("images:import/{name}")]);
        let e = download(&api, "images", &params("import", name, URL)).expect_err("there already");
        assert!(e.contains("refusing to override existing file '/var/lib/images/import/"), "{e}");
    }
}
