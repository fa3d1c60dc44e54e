//! Bare cloud-image names, as the shell version accepted them in `template_image`: a file name
//! that is downloaded from the distribution's image server rather than a file on the host.

/// Where a bare cloud-image name is downloaded from, or `None` when the name is not one Phoenix
/// knows how to fetch.
///
/// - `noble-server-cloudimg-amd64.img` (Ubuntu, release code name first):
///   `https://cloud-images.ubuntu.com/noble/current/<name>`;
/// - `ubuntu-24.04-server-cloudimg-amd64.img` (Ubuntu, version first):
///   `https://cloud-images.ubuntu.com/releases/24.04/release/<name>`;
/// - `debian-12-genericcloud-amd64.qcow2` (Debian 11 to 13):
///   `https://cloud.debian.org/images/cloud/<codename>/latest/<name>`;
/// - any other Ubuntu cloud-image name (`…cloudimg…`) when `ubuntu_release` (from `vm_defaults`)
///   names the release, as the shell version did: `https://cloud-images.ubuntu.com/<release>/current/<name>`.
pub fn download_url(name: &str, ubuntu_release: Option<&str>) -> Option<String> {
    let simple = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !simple(name) || !(name.ends_with(".img") || name.ends_with(".qcow2")) {
        return None;
    }
    let parts: Vec<&str> = name.split('-').collect();
    match parts.as_slice() {
        ["ubuntu", version, "server", "cloudimg", ..] if version.contains('.') => {
            Some(format!("https://cloud-images.ubuntu.com/releases/{version}/release/{name}"))
        }
        [release, "server", "cloudimg", ..] if release.bytes().all(|b| b.is_ascii_lowercase()) => {
            Some(format!("https://cloud-images.ubuntu.com/{release}/current/{name}"))
        }
        ["debian", version, kind, ..] if kind.ends_with("cloud") => {
            let codename = match *version {
                "11" => "bullseye",
                "12" => "bookworm",
                "13" => "trixie",
                _ => return None,
            };
            Some(format!("https://cloud.debian.org/images/cloud/{codename}/latest/{name}"))
        }
        _ => match ubuntu_release.filter(|r| simple(r)) {
            Some(release) if name.contains("cloudimg") => {
                Some(format!("https://cloud-images.ubuntu.com/{release}/current/{name}"))
            }
            _ => None,
        },
    }
}

/// Whether a `template_image` is a bare file name (no directory, no storage volume ID).
pub fn is_bare_name(image: &str) -> bool {
    !image.contains('/') && !image.contains(':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ubuntu_names_resolve_to_the_release_they_name() {
        assert_eq!(
            download_url("noble-server-cloudimg-amd64.img", None).as_deref(),
            Some("https://cloud-images.ubuntu.com/noble/current/noble-server-cloudimg-amd64.img")
        );
        assert_eq!(
            download_url("ubuntu-24.04-server-cloudimg-arm64.img", None).as_deref(),
            Some("https://cloud-images.ubuntu.com/releases/24.04/release/ubuntu-24.04-server-cloudimg-arm64.img")
        );
    }

    #[test]
    fn debian_names_resolve_through_their_code_name() {
        assert_eq!(
            download_url("debian-12-genericcloud-amd64.qcow2", None).as_deref(),
            Some("https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2")
        );
        assert_eq!(download_url("debian-9-genericcloud-amd64.qcow2", None), None);
    }

    #[test]
    fn other_cloudimg_names_need_the_release_from_vm_defaults() {
        assert_eq!(download_url("server-cloudimg-amd64-disk-kvm.img", None), None);
        assert_eq!(
            download_url("server-cloudimg-amd64-disk-kvm.img", Some("jammy")).as_deref(),
            Some("https://cloud-images.ubuntu.com/jammy/current/server-cloudimg-amd64-disk-kvm.img")
        );
    }

    #[test]
    fn names_that_are_not_images_or_not_plain_are_not_fetched() {
        assert_eq!(download_url("my-disk.raw", Some("noble")), None);
        assert_eq!(download_url("noble-server-cloudimg-amd64.img?x=1", None), None);
        assert_eq!(download_url("../noble-server-cloudimg-amd64.img", None), None);
        assert!(is_bare_name("noble-server-cloudimg-amd64.img"));
        assert!(!is_bare_name("local:import/noble.img"));
        assert!(!is_bare_name("/var/lib/vz/import/noble.img"));
    }
}
