//! A small offline OS template built from the host's statically linked busybox: enough for the
//! quickstart and the tests (a shell, core tools, `httpd`, `wget`), on a machine with no network.
//!
//! Its `/sbin/init` keeps the container running and stops cleanly on SIGTERM or SIGPWR.

use std::path::Path;
use std::time::Duration;

use crate::command::tool;

/// The busybox applets linked in the template.
const APPLETS: &[&str] = &[
    "sh",
    "ash",
    "ls",
    "cat",
    "echo",
    "mkdir",
    "rm",
    "rmdir",
    "cp",
    "mv",
    "ln",
    "chmod",
    "chown",
    "sleep",
    "httpd",
    "wget",
    "hostname",
    "ip",
    "ps",
    "pgrep",
    "pkill",
    "kill",
    "setsid",
    "id",
    "test",
    "[",
    "true",
    "false",
    "env",
    "grep",
    "sed",
    "awk",
    "head",
    "tail",
    "touch",
    "printf",
    "stat",
    "dirname",
    "basename",
    "sort",
    "uniq",
    "wc",
    "tr",
    "cut",
    "find",
    "xargs",
    "tar",
    "gzip",
    "date",
    "uname",
    "whoami",
    "nc",
    "nohup",
    "mount",
    "df",
    "free",
    "du",
    "sha256sum",
    "which",
];

/// Builds the template tarball at `out` from the busybox binary at `busybox` (usually
/// `/bin/busybox` from the `busybox-static` package).
pub fn build_busybox(busybox: &Path, out: &Path) -> Result<(), String> {
    let work = tempdir_near(out)?;
    let root = work.join("rootfs");
    let result = (|| {
        for d in [
            "bin",
            "sbin",
            "etc",
            "proc",
            "sys",
            "dev",
            "tmp",
            "root",
            "run",
            "var/lib/phoenix",
            "var/log",
            "usr/bin",
            "usr/sbin",
            "srv",
        ] {
            std::fs::create_dir_all(root.join(d)).map_err(|e| format!("cannot create {d}: {e}"))?;
        }
        std::fs::copy(busybox, root.join("bin/busybox"))
            .map_err(|e| format!("cannot copy {}: {e}", busybox.display()))?;
        for applet in APPLETS {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet))
                .map_err(|e| format!("cannot link {applet}: {e}"))?;
        }
        let files: &[(&str, &str, u32)] = &[
            (
                "etc/passwd",
                "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
                0o644,
            ),
            ("etc/group", "root:x:0:\nnogroup:x:65534:\n", 0o644),
            ("etc/hostname", "phoenix\n", 0o644),
            ("etc/os-release", "NAME=\"Phoenix busybox\"\nID=phoenix-busybox\n", 0o644),
            (
                "sbin/init",
                "#!/bin/sh\n# Keeps the container running; stops on SIGTERM or SIGPWR.\ntrap 'exit 0' TERM PWR INT\nwhile :; do sleep 3600 & wait $!; done\n",
                0o755,
            ),
        ];
        for (path, content, mode) in files {
            let p = root.join(path);
            std::fs::write(&p, content).map_err(|e| format!("cannot write {path}: {e}"))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode))
                .map_err(|e| format!("cannot chmod {path}: {e}"))?;
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777))
            .map_err(|e| format!("cannot chmod tmp: {e}"))?;
        let out_s = out.display().to_string();
        let root_s = root.display().to_string();
        tool(
            &["tar", "-czf", &out_s, "--numeric-owner", "--owner=0", "--group=0", "-C", &root_s, "."],
            Duration::from_secs(300),
        )
        .map_err(|e| match &e.detail {
            Some(d) => format!("{e}: {d}"),
            None => e.to_string(),
        })?;
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn tempdir_near(out: &Path) -> Result<std::path::PathBuf, String> {
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    let dir = parent.join(format!(".phoenix-template-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}
