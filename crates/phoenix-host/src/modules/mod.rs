//! The modules, in the order the shell version ran them.

pub mod apparmor;
pub mod firewall;
pub mod nfs;
pub mod ntp;
pub mod nvidia;
pub mod repositories;
pub mod samba;
pub mod storage;
pub mod subids;
pub mod timezone;
pub mod users;
pub mod zfs;

use std::path::Path;

/// `<file>.phoenix-orig`: where a file Phoenix does not own is kept as it was before Phoenix
/// first edited it.
pub fn backup_path(path: &Path) -> std::path::PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!("{name}.phoenix-orig"))
}

/// Whether text is safe on one line of a configuration file.
pub(crate) fn one_line(s: &str) -> bool {
    !s.chars().any(|c| c.is_control())
}
