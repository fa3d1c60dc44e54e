//! File-system work on container root filesystems: shifting ownership for ID maps, writing files
//! without following links that point out of the rootfs.

use std::io;
use std::os::unix::fs::{MetadataExt, lchown};
use std::path::{Component, Path, PathBuf};

use phoenix_backend::inside::READ_LIMIT;

/// Adds `base` to the owner and group of everything under `root` (links themselves, never their
/// targets), so that an unprivileged container's mapped root owns its files. Set-user-ID and
/// set-group-ID bits, which the kernel clears on a change of owner, are put back (`su`, `ping`
/// and the like keep working in the container).
pub fn shift_ownership(root: &Path, base: (u32, u32)) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p)?;
        let uid = if meta.uid() < 65536 { meta.uid() + base.0 } else { meta.uid() };
        let gid = if meta.gid() < 65536 { meta.gid() + base.1 } else { meta.gid() };
        if (uid, gid) != (meta.uid(), meta.gid()) {
            lchown(&p, Some(uid), Some(gid))?;
            let mode = meta.permissions().mode();
            if !meta.file_type().is_symlink() && mode & 0o6000 != 0 {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode & 0o7777))?;
            }
        }
        if meta.file_type().is_dir() {
            for e in std::fs::read_dir(&p)? {
                stack.push(e?.path());
            }
        }
    }
    Ok(())
}

/// The host path of `inside` (absolute, inside the container) under `root`, refusing `..` and any
/// existing link on the way: a container must not be able to make the host write elsewhere.
pub fn resolve_inside(root: &Path, inside: &str) -> io::Result<PathBuf> {
    let mut p = root.to_path_buf();
    for c in Path::new(inside).components() {
        match c {
            Component::RootDir => {}
            Component::Normal(part) => {
                p.push(part);
                if std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{inside} goes through a link inside the container"),
                    ));
                }
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{inside} is not a plain absolute path"),
                ));
            }
        }
    }
    Ok(p)
}

/// Writes a file inside a stopped container's rootfs, creating parents owned by the mapped root.
pub fn write_inside(root: &Path, inside: &str, content: &[u8], owner: (u32, u32)) -> io::Result<()> {
    let target = resolve_inside(root, inside)?;
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&target, content)?;
    lchown(&target, Some(owner.0), Some(owner.1))
}

/// Reads a file inside a container's rootfs; `None` when it does not exist. Only a regular file
/// of at most [`READ_LIMIT`] bytes is read: a FIFO, a device or a huge file put there by the
/// container is refused without blocking or filling memory.
pub fn read_inside(root: &Path, inside: &str) -> io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let target = resolve_inside(root, inside)?;
    let file =
        match std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(&target) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{inside} is not a regular file")));
    }
    if meta.len() > READ_LIMIT {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{inside} is {} bytes, more than the {READ_LIMIT} Phoenix reads", meta.len()),
        ));
    }
    let mut content = Vec::new();
    file.take(READ_LIMIT + 1).read_to_end(&mut content)?;
    Ok(Some(content))
}

/// Replaces a host file atomically: written beside it under a temporary name, flushed, then
/// renamed over it, so that a reader (or a run killed half-way) sees the old or the new content,
/// never a part.
pub fn replace_file(path: &Path, content: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let temp = path.with_file_name(format!(".{name}.phoenix-tmp"));
    let mut file = std::fs::File::create(&temp)?;
    file.write_all(content)?;
    file.sync_data()?;
    std::fs::rename(&temp, path)
}

/// Exchanges the entries `a` and `b` of the directory `dir` at once (`renameat2` with
/// `RENAME_EXCHANGE`): at every moment each name holds one of the two trees. `Ok(false)` where
/// the filesystem (or the C library Phoenix is built with) cannot exchange, and nothing moved.
pub fn exchange(dir: &Path, a: &str, b: &str) -> io::Result<bool> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use nix::errno::Errno;
        use nix::fcntl::{RenameFlags, renameat2};
        let fd = std::fs::File::open(dir)?;
        match renameat2(&fd, a, &fd, b, RenameFlags::RENAME_EXCHANGE) {
            Ok(()) => Ok(true),
            Err(Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        let _ = (dir, a, b);
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exchange_swaps_two_trees_at_once() {
        let tmp = tempfile::tempdir().expect("tmp");
        for (name, file) in [("rootfs", "old"), ("new", "restored")] {
            std::fs::create_dir_all(tmp.path().join(name)).expect("mkdir");
            std::fs::write(tmp.path().join(name).join(file), "x").expect("write");
        }
        if !exchange(tmp.path(), "rootfs", "new").expect("exchange") {
            return; // This filesystem cannot: the backend renames one after the other.
        }
        assert!(tmp.path().join("rootfs/restored").is_file());
        assert!(tmp.path().join("new/old").is_file());
        assert!(exchange(tmp.path(), "rootfs", "missing").is_err());
    }

    #[test]
    fn shifted_files_keep_their_set_id_bits() {
        use std::os::unix::fs::PermissionsExt;
        let missing = (!phoenix_testkit::is_root()).then(|| "changing owners needs root".to_string());
        if !phoenix_testkit::real_component("shifting ownership", missing) {
            return;
        }
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path().join("rootfs");
        std::fs::create_dir_all(root.join("bin")).expect("mkdir");
        let su = root.join("bin/su");
        std::fs::write(&su, b"#!/bin/sh\n").expect("write");
        std::fs::set_permissions(&su, std::fs::Permissions::from_mode(0o4755)).expect("chmod");
        let wall = root.join("bin/wall");
        std::fs::write(&wall, b"#!/bin/sh\n").expect("write");
        std::fs::set_permissions(&wall, std::fs::Permissions::from_mode(0o2755)).expect("chmod");
        std::os::unix::fs::symlink("su", root.join("bin/link")).expect("link");
        shift_ownership(&root, (100_000, 100_000)).expect("shift");
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o7777;
        assert_eq!(mode(&su), 0o4755);
        assert_eq!(mode(&wall), 0o2755);
        assert_eq!(std::fs::metadata(&su).expect("meta").uid(), 100_000);
        assert_eq!(std::fs::symlink_metadata(root.join("bin/link")).expect("meta").uid(), 100_000);
    }

    #[test]
    fn refuses_links_on_the_way() {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path().join("rootfs");
        std::fs::create_dir_all(root.join("etc")).expect("mkdir");
        std::os::unix::fs::symlink("/etc", root.join("evil")).expect("link");
        assert!(resolve_inside(&root, "/evil/passwd").is_err());
        assert!(resolve_inside(&root, "/etc/../../x").is_err());
        write_inside(&root, "/etc/hostname", b"web\n", (0, 0)).expect("write");
        assert_eq!(read_inside(&root, "/etc/hostname").expect("read").as_deref(), Some(&b"web\n"[..]));
        assert_eq!(read_inside(&root, "/etc/none").expect("read"), None);
        std::os::unix::fs::symlink("/etc/shadow", root.join("etc/resolv.conf")).expect("link");
        assert!(write_inside(&root, "/etc/resolv.conf", b"x", (0, 0)).is_err());
    }

    #[test]
    fn reads_take_regular_files_only_and_never_block() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path();
        std::fs::create_dir_all(root.join("var/lib/phoenix")).expect("mkdir");
        let made =
            std::process::Command::new("mkfifo").arg(root.join("var/lib/phoenix/fifo")).status().expect("mkfifo");
        assert!(made.success());
        let e = read_inside(root, "/var/lib/phoenix/fifo").expect_err("a FIFO is refused, not waited on");
        assert!(e.to_string().contains("not a regular file"), "{e}");
        assert!(read_inside(root, "/var/lib/phoenix").is_err(), "a directory is refused");
        let huge = std::fs::File::create(root.join("var/lib/phoenix/huge")).expect("create");
        huge.set_len(READ_LIMIT + 1).expect("sparse");
        assert!(read_inside(root, "/var/lib/phoenix/huge").expect_err("huge").to_string().contains("more than"));
        std::os::unix::fs::symlink("/etc/hostname", root.join("var/lib/phoenix/link")).expect("symlink");
        assert!(read_inside(root, "/var/lib/phoenix/link").is_err(), "a link is not followed");
        assert_eq!(read_inside(root, "/var/lib/phoenix/none").expect("missing"), None);
    }

    #[test]
    fn a_replaced_file_leaves_nothing_beside_it() {
        let tmp = tempfile::tempdir().expect("tmp");
        let path = tmp.path().join("phoenix.json");
        std::fs::write(&path, "old").expect("write");
        replace_file(&path, b"new").expect("replace");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "new");
        assert_eq!(std::fs::read_dir(tmp.path()).expect("list").count(), 1);
    }
}
