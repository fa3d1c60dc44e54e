//! NVIDIA devices for containers with assigned GPUs: the device nodes of the assigned GPUs and the
//! driver's shared nodes, with their device numbers read on the host at run time (the
//! `nvidia-uvm` major in particular is assigned at boot and differs between hosts).

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// A character device to pass to a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Its path on the host (and in the container).
    pub path: PathBuf,
    /// Major number.
    pub major: u64,
    /// Minor number.
    pub minor: u64,
}

/// Reads a path's device number if it is a character device.
pub type Stat<'a> = &'a dyn Fn(&Path) -> Option<u64>;

/// The device number of a character device on this host.
pub fn stat_char_device(path: &Path) -> Option<u64> {
    let m = std::fs::metadata(path).ok()?;
    m.file_type().is_char_device().then(|| m.rdev())
}

fn split(rdev: u64) -> (u64, u64) {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    (major, minor)
}

/// A device node a GPU needs that this host does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{} does not exist on this host (is the NVIDIA driver loaded? `nvidia-smi` creates the device nodes)",
    .0.display()
)]
pub struct MissingDevice(pub PathBuf);

/// The devices for GPUs `indices`: `/dev/nvidia<N>` of each (required), `/dev/nvidiactl`
/// (required), and `/dev/nvidia-uvm`, `/dev/nvidia-uvm-tools` and `/dev/nvidia-caps/*` where the
/// host has them. `dev` is the host's `/dev`; `caps` lists `/dev/nvidia-caps`.
pub fn nvidia_devices(
    dev: &Path,
    indices: &[u32],
    stat: Stat<'_>,
    caps: &[PathBuf],
) -> Result<Vec<Device>, MissingDevice> {
    let mut out = Vec::new();
    let mut add = |path: PathBuf, required: bool| -> Result<(), MissingDevice> {
        match stat(&path) {
            Some(rdev) => {
                let (major, minor) = split(rdev);
                out.push(Device { path, major, minor });
                Ok(())
            }
            None if required => Err(MissingDevice(path)),
            None => Ok(()),
        }
    };
    for i in indices {
        add(dev.join(format!("nvidia{i}")), true)?;
    }
    add(dev.join("nvidiactl"), true)?;
    add(dev.join("nvidia-uvm"), false)?;
    add(dev.join("nvidia-uvm-tools"), false)?;
    for c in caps {
        add(c.clone(), false)?;
    }
    Ok(out)
}

/// The entries of `/dev/nvidia-caps` on this host.
pub fn caps(dev: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(dev.join("nvidia-caps")).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn rdev(major: u64, minor: u64) -> u64 {
        ((major & 0xfff) << 8) | ((major & !0xfff) << 32) | (minor & 0xff) | ((minor & !0xff) << 12)
    }

    #[test]
    fn device_numbers_come_from_the_host() {
        let host: BTreeMap<PathBuf, u64> = [
            ("/dev/nvidia0", rdev(195, 0)),
            ("/dev/nvidia1", rdev(195, 1)),
            ("/dev/nvidiactl", rdev(195, 255)),
            ("/dev/nvidia-uvm", rdev(508, 0)),
            ("/dev/nvidia-caps/nvidia-cap1", rdev(511, 1)),
        ]
        .into_iter()
        .map(|(p, d)| (PathBuf::from(p), d))
        .collect();
        let stat = |p: &Path| host.get(p).copied();
        let devices = nvidia_devices(Path::new("/dev"), &[1], &stat, &[PathBuf::from("/dev/nvidia-caps/nvidia-cap1")])
            .expect("devices");
        let listed: Vec<(String, u64, u64)> =
            devices.iter().map(|d| (d.path.display().to_string(), d.major, d.minor)).collect();
        assert_eq!(
            listed,
            vec![
                ("/dev/nvidia1".to_string(), 195, 1),
                ("/dev/nvidiactl".to_string(), 195, 255),
                ("/dev/nvidia-uvm".to_string(), 508, 0),
                ("/dev/nvidia-caps/nvidia-cap1".to_string(), 511, 1),
            ]
        );
        let missing = nvidia_devices(Path::new("/dev"), &[2], &stat, &[]).expect_err("no GPU 2");
        assert_eq!(missing, MissingDevice(PathBuf::from("/dev/nvidia2")));
        assert!(missing.to_string().starts_with("/dev/nvidia2 does not exist on this host"), "{missing}");
    }
}
