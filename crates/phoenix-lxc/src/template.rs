//! A small offline OS template built from the host's statically linked busybox: enough for the
//! quickstart and the tests (a shell, core tools, `httpd`, `wget`), on a machine with no network.
//!
//! Its `/sbin/init` starts each executable in `/etc/boot.d/` (the template's services), keeps the
//! container running and stops cleanly on SIGTERM or SIGPWR.

use std::path::{Path, PathBuf};
use std::time::Duration;

use phoenix_backend::BackendError;

use crate::command::tool;

/// Why a template could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// A file or directory could not be made, written, moved or removed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done: `create`, `write`, `chmod`, ...
        action: &'static str,
        /// The path (inside the root filesystem where relative).
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A host tool failed (`busybox --list`, `tar`).
    #[error("{doing} failed: {}", with_detail(error))]
    Tool {
        /// What the tool was doing.
        doing: String,
        /// How it failed, with its output.
        error: BackendError,
    },
    /// debootstrap did not finish, or failed.
    #[error("`{command}` {outcome}")]
    Debootstrap {
        /// Its command line.
        command: String,
        /// How it ended: its status, standard error and the tail of its log.
        outcome: String,
    },
    /// The suite is not a name debootstrap takes.
    #[error("\"{0}\" is not a Debian suite name (e.g. bookworm)")]
    Suite(String),
    /// A package is not a Debian package name.
    #[error("\"{0}\" is not a Debian package name")]
    Package(String),
    /// The mirror is not a URL debootstrap takes.
    #[error("\"{0}\" is not a mirror URL (e.g. http://deb.debian.org/debian)")]
    Mirror(String),
    /// The tarball's name says no compression Proxmox knows.
    #[error("{} must end in .tar.gz, .tar.xz or .tar.zst", .0.display())]
    Compression(PathBuf),
    /// debootstrap is not on this machine.
    #[error("debootstrap is not installed (apt-get install debootstrap)")]
    NoDebootstrap,
    /// Not running as root.
    #[error("building a Debian template needs root (debootstrap installs packages as root)")]
    NotRoot,
    /// The build directory stays because something is still mounted inside it.
    #[error("{} is left behind: {} still mounted inside it", work.display(), mounts.join(", "))]
    StillMounted {
        /// The build directory.
        work: PathBuf,
        /// What is mounted inside it.
        mounts: Vec<String>,
    },
}

/// A tool's error with its output, when it has some.
fn with_detail(e: &BackendError) -> String {
    match &e.detail {
        Some(d) => format!("{e}: {d}"),
        None => e.to_string(),
    }
}

/// An I/O error of `action` on `path`, for `map_err`.
fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> TemplateError {
    let path = path.into();
    move |source| TemplateError::Io { action, path, source }
}

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
pub fn build_busybox(busybox: &Path, out: &Path) -> Result<(), TemplateError> {
    let work = tempdir_near(out)?;
    let root = work.join("rootfs");
    let result = (|| {
        for d in [
            "bin",
            "sbin",
            "etc",
            "etc/boot.d",
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
            std::fs::create_dir_all(root.join(d)).map_err(io("create", d))?;
        }
        std::fs::copy(busybox, root.join("bin/busybox")).map_err(io("copy", busybox))?;
        // Only the applets this busybox has: a link to a missing one fails when run, and a
        // script's guard built on it (`pgrep … || start`) would never hold.
        let listed = tool(&[&busybox.display().to_string(), "--list"], Duration::from_secs(10))
            .map(|o| String::from_utf8_lossy(&o.stdout).lines().map(str::to_string).collect::<Vec<_>>())
            .map_err(|error| TemplateError::Tool {
                doing: format!("listing the applets of {}", busybox.display()),
                error,
            })?;
        for applet in APPLETS.iter().filter(|a| listed.iter().any(|l| l == *a)) {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet))
                .map_err(io("link", Path::new("bin").join(applet)))?;
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
                "#!/bin/sh\n# Starts the services in /etc/boot.d (each executable there, in the background), then keeps\n# the container running; stops on SIGTERM or SIGPWR.\ntrap 'exit 0' TERM PWR INT\nfor s in /etc/boot.d/*; do [ -x \"$s\" ] && setsid \"$s\" </dev/null >/dev/null 2>&1 & done\nwhile :; do sleep 3600 & wait $!; done\n",
                0o755,
            ),
        ];
        for (path, content, mode) in files {
            let p = root.join(path);
            std::fs::write(&p, content).map_err(io("write", path))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).map_err(io("chmod", path))?;
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777))
            .map_err(io("chmod", "tmp"))?;
        let out_s = out.display().to_string();
        let root_s = root.display().to_string();
        tool(
            &["tar", "-czf", &out_s, "--numeric-owner", "--owner=0", "--group=0", "-C", &root_s, "."],
            Duration::from_secs(300),
        )
        .map_err(|error| TemplateError::Tool { doing: "packing the template".into(), error })?;
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn tempdir_near(out: &Path) -> Result<PathBuf, TemplateError> {
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io("create", parent))?;
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = parent.join(format!(".phoenix-template-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
    Ok(dir)
}

/// The `/sbin/init` of the Debian template: debootstrap's `minbase` has no init system, so this
/// minimal PID 1 mounts a fresh `/run` and `/dev/shm`, starts the System V scripts of runlevel 2
/// in order (Debian's packages install theirs, NGINX's included), and stops them on SIGPWR
/// (`lxc-stop`), SIGTERM or SIGINT.
pub const DEBIAN_INIT: &str = r#"#!/bin/sh
# Minimal PID 1 for a container from Phoenix's Debian template (debootstrap minbase, no systemd).
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
umask 022
# A fresh /run and /dev/shm on every boot: stale pid files would otherwise survive a restart.
mountpoint -q /run || mount -t tmpfs -o nosuid,nodev,mode=0755 tmpfs /run
mkdir -p /run/lock /var/log /dev/shm
mountpoint -q /dev/shm || mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs /dev/shm
for s in /etc/rc2.d/S*; do [ -x "$s" ] && "$s" start >>/var/log/init.log 2>&1; done
[ -x /etc/rc.local ] && /etc/rc.local >>/var/log/init.log 2>&1
stop_all() {
    for s in $(ls -r /etc/rc2.d/S* 2>/dev/null); do [ -x "$s" ] && "$s" stop >>/var/log/init.log 2>&1; done
    kill -TERM -1 2>/dev/null
    sleep 1
    kill -KILL -1 2>/dev/null
    exit 0
}
trap stop_all PWR TERM INT
while :; do sleep 3600 & wait $!; done
"#;

/// What a Debian template is built from: `debootstrap --variant=minbase SUITE ROOT MIRROR` with
/// extra packages. The same inputs make the same template, so a tarball built from them is reused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebianTemplate {
    /// The Debian suite, e.g. `bookworm`.
    pub suite: String,
    /// The archive debootstrap downloads from, e.g. `http://deb.debian.org/debian`.
    pub mirror: String,
    /// Extra packages (`--include`), e.g. `nginx-light`.
    pub include: Vec<String>,
}

/// What [`build_debian`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Built {
    /// The tarball was built and written.
    Written,
    /// A tarball built from the same inputs was there already, and is kept.
    Reused,
}

/// The version of the fix-ups applied after debootstrap; part of the stamp, so that a change to
/// them rebuilds cached templates.
const DEBIAN_FIXUPS_VERSION: u32 = 1;

impl DebianTemplate {
    /// The extra packages, each once, sorted (the order debootstrap is given them in does not
    /// matter, and must not defeat the cache).
    pub fn packages(&self) -> Vec<String> {
        let mut p: Vec<String> = self
            .include
            .iter()
            .flat_map(|i| i.split(','))
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        p.sort();
        p.dedup();
        p
    }

    /// The debootstrap command line that builds the root filesystem in `root`.
    pub fn debootstrap_argv(&self, root: &Path) -> Vec<String> {
        let mut argv = vec!["debootstrap".to_string(), "--variant=minbase".to_string()];
        let packages = self.packages();
        if !packages.is_empty() {
            argv.push(format!("--include={}", packages.join(",")));
        }
        argv.push(self.suite.clone());
        argv.push(root.display().to_string());
        argv.push(self.mirror.clone());
        argv
    }

    /// The stamp written beside the tarball: every input that shapes it. A tarball whose stamp
    /// reads the same is reused.
    pub fn stamp(&self) -> String {
        format!(
            "phoenix debian template\nfixups {DEBIAN_FIXUPS_VERSION}\nvariant minbase\nsuite {}\nmirror {}\ninclude {}\n",
            self.suite,
            self.mirror,
            self.packages().join(",")
        )
    }

    /// Checks the inputs before anything runs: names debootstrap accepts, a mirror URL.
    pub fn check(&self) -> Result<(), TemplateError> {
        let plain = |s: &str| {
            !s.is_empty() && !s.starts_with('-') && s.chars().all(|c| c.is_ascii_alphanumeric() || "+-._".contains(c))
        };
        if !plain(&self.suite) {
            return Err(TemplateError::Suite(self.suite.clone()));
        }
        if let Some(p) = self.packages().iter().find(|p| !plain(p)) {
            return Err(TemplateError::Package(p.clone()));
        }
        if !(self.mirror.starts_with("http://")
            || self.mirror.starts_with("https://")
            || self.mirror.starts_with("file:/"))
            || self.mirror.chars().any(char::is_whitespace)
        {
            return Err(TemplateError::Mirror(self.mirror.clone()));
        }
        Ok(())
    }
}

/// Where the stamp of the tarball at `out` is kept: beside it, `<out>.inputs`.
pub fn stamp_path(out: &Path) -> std::path::PathBuf {
    let mut name = out.file_name().map(std::ffi::OsStr::to_os_string).unwrap_or_default();
    name.push(".inputs");
    out.with_file_name(name)
}

/// Whether the tarball at `out` was built from `template`'s inputs (it exists, and its stamp
/// says so).
pub fn is_cached(template: &DebianTemplate, out: &Path) -> bool {
    out.is_file() && std::fs::read_to_string(stamp_path(out)).is_ok_and(|s| s == template.stamp())
}

/// The tar compression option for the tarball's name: `.tar.gz`, `.tar.xz` or `.tar.zst`, as
/// Proxmox's container templates.
pub fn compression_flag(out: &Path) -> Result<&'static str, TemplateError> {
    let name = out.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        Ok("--gzip")
    } else if name.ends_with(".tar.xz") {
        Ok("--xz")
    } else if name.ends_with(".tar.zst") {
        Ok("--zstd")
    } else {
        Err(TemplateError::Compression(out.to_path_buf()))
    }
}

/// The effective user ID of this process, read from `/proc/self/status`.
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Where a program is found on the clean `PATH` the tools run with.
fn find_program(name: &str) -> Option<std::path::PathBuf> {
    crate::command::CLEAN_PATH.split(':').map(|d| Path::new(d).join(name)).find(|p| p.is_file())
}

/// Builds a Debian root filesystem template at `out` with debootstrap (`minbase`, on this
/// machine, as root: the container never needs network), applies the fix-ups an LXC system
/// container needs ([`DEBIAN_INIT`] as `/sbin/init` where there is none, `/etc/mtab`, a plain
/// `/etc/hosts`, an empty `/etc/resolv.conf`, no apt caches) and packs it without `./dev/*`
/// (LXC populates `/dev`). A tarball built from the same inputs is reused; a new one is written
/// under a temporary name and renamed, its stamp ([`stamp_path`]) written last.
pub fn build_debian(template: &DebianTemplate, out: &Path) -> Result<Built, TemplateError> {
    template.check()?;
    let compression = compression_flag(out)?;
    if is_cached(template, out) {
        return Ok(Built::Reused);
    }
    if find_program("debootstrap").is_none() {
        return Err(TemplateError::NoDebootstrap);
    }
    if effective_uid() != Some(0) {
        return Err(TemplateError::NotRoot);
    }
    let work = tempdir_near(out)?;
    let root = work.join("rootfs");
    let packed = work.join("template.tar");
    let result = (|| {
        debootstrap(template, &root)?;
        debian_fixups(&root)?;
        let root_s = root.display().to_string();
        let packed_s = packed.display().to_string();
        tool(
            &[
                "tar",
                "--create",
                compression,
                "--file",
                &packed_s,
                "--numeric-owner",
                "--xattrs",
                "--exclude=./dev/*",
                "-C",
                &root_s,
                ".",
            ],
            Duration::from_secs(1800),
        )
        .map_err(|error| TemplateError::Tool { doing: "packing the template".into(), error })?;
        // The stamp goes first, so that no stamp ever vouches for a tarball of other inputs.
        let stamp = stamp_path(out);
        match std::fs::remove_file(&stamp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io("remove", &stamp)(e)),
            _ => {}
        }
        std::fs::rename(&packed, out).map_err(io("move the tarball to", out))?;
        let stamp_tmp = work.join("stamp");
        std::fs::write(&stamp_tmp, template.stamp()).map_err(io("write", &stamp_tmp))?;
        std::fs::rename(&stamp_tmp, &stamp).map_err(io("write", &stamp))?;
        Ok(Built::Written)
    })();
    match remove_work_dir(&work) {
        Ok(()) => result,
        Err(e) => result.and(Err(e)),
    }
}

/// Runs debootstrap into `root`, with this process's proxy settings (and nothing else of its
/// environment).
fn debootstrap(template: &DebianTemplate, root: &Path) -> Result<(), TemplateError> {
    let argv = template.debootstrap_argv(root);
    let mut command = std::process::Command::new(&argv[0]);
    command.args(&argv[1..]).env_clear().env("PATH", crate::command::CLEAN_PATH);
    for var in ["http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"] {
        if let Ok(v) = std::env::var(var) {
            command.env(var, v);
        }
    }
    let out = phoenix_backend::process::run_captured(command, None, Duration::from_secs(3600)).map_err(|e| {
        TemplateError::Debootstrap { command: argv.join(" "), outcome: format!("did not finish: {e:?}") }
    })?;
    if out.success() {
        return Ok(());
    }
    // debootstrap says what went wrong on stderr, and in its log inside the target.
    let log = std::fs::read_to_string(root.join("debootstrap/debootstrap.log")).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect();
    Err(TemplateError::Debootstrap {
        command: argv.join(" "),
        outcome: format!(
            "failed with status {}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            if tail.is_empty() { String::new() } else { format!("\n{}", tail.join("\n")) }
        ),
    })
}

/// The changes a minbase root filesystem needs to boot as an LXC system container.
fn debian_fixups(root: &Path) -> Result<(), TemplateError> {
    use std::os::unix::fs::PermissionsExt;
    let write = |inside: &str, content: &str, mode: u32| -> Result<(), TemplateError> {
        let p = root.join(inside);
        // A link there (resolv.conf often is one) is replaced, never followed.
        if std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
            std::fs::remove_file(&p).map_err(io("replace", inside))?;
        }
        std::fs::write(&p, content).map_err(io("write", inside))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).map_err(io("chmod", inside))
    };
    // minbase has no init system; `sbin` is a relative link to `usr/sbin` (merged /usr), so the
    // path resolves inside the root filesystem.
    if std::fs::symlink_metadata(root.join("sbin/init")).is_err() {
        write("sbin/init", DEBIAN_INIT, 0o755)?;
    }
    if std::fs::symlink_metadata(root.join("etc/mtab")).is_err() {
        std::os::unix::fs::symlink("../proc/self/mounts", root.join("etc/mtab")).map_err(io("link", "etc/mtab"))?;
    }
    write("etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n", 0o644)?;
    // debootstrap copies the host's resolver, which containers cannot reach; Phoenix writes the
    // configured nameservers.
    write("etc/resolv.conf", "", 0o644)?;
    write("etc/hostname", "debian\n", 0o644)?;
    for dir in ["var/cache/apt/archives", "var/lib/apt/lists"] {
        clear_files(&root.join(dir), |_| true)?;
    }
    clear_files(&root.join("var/cache/apt"), |n| n.ends_with(".bin"))?;
    clear_files(&root.join("var/log"), |n| n.ends_with(".log"))?;
    Ok(())
}

/// Removes the plain files directly in `dir` whose name `keep_out` selects.
fn clear_files(dir: &Path, keep_out: impl Fn(&str) -> bool) -> Result<(), TemplateError> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if e.file_type().is_ok_and(|t| t.is_file()) && keep_out(&name) {
            std::fs::remove_file(e.path()).map_err(io("remove", e.path()))?;
        }
    }
    Ok(())
}

/// Removes the build directory, after unmounting what a failed debootstrap may have left
/// mounted inside it (`/proc`, `/sys`, a bind of `/dev` in a container): removing through such a
/// mount would remove the host's files. A directory something stays mounted in is left as it is.
fn remove_work_dir(work: &Path) -> Result<(), TemplateError> {
    let mounted = |work: &Path| -> Vec<String> {
        let prefix = work.display().to_string();
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let mut found: Vec<String> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .map(|m| m.replace("\\040", " "))
            .filter(|m| m == &prefix || m.starts_with(&format!("{prefix}/")))
            .collect();
        // Deepest first.
        found.sort_by_key(|m| std::cmp::Reverse(m.len()));
        found
    };
    for m in mounted(work) {
        let _ = tool(&["umount", "--lazy", &m], Duration::from_secs(60));
    }
    let left = mounted(work);
    if !left.is_empty() {
        return Err(TemplateError::StillMounted { work: work.to_path_buf(), mounts: left });
    }
    std::fs::remove_dir_all(work).map_err(io("remove", work))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bookworm(include: &[&str]) -> DebianTemplate {
        DebianTemplate {
            suite: "bookworm".into(),
            mirror: "http://deb.debian.org/debian".into(),
            include: include.iter().map(|s| (*s).to_string()).collect(),
        }
    }

    #[test]
    fn debootstrap_is_given_minbase_the_suite_the_target_and_the_mirror() {
        let t = bookworm(&["nginx-light,curl", "ca-certificates"]);
        assert_eq!(
            t.debootstrap_argv(Path::new("/tmp/x/rootfs")),
            [
                "debootstrap",
                "--variant=minbase",
                "--include=ca-certificates,curl,nginx-light",
                "bookworm",
                "/tmp/x/rootfs",
                "http://deb.debian.org/debian"
            ]
        );
        assert_eq!(
            bookworm(&[]).debootstrap_argv(Path::new("r")),
            ["debootstrap", "--variant=minbase", "bookworm", "r", "http://deb.debian.org/debian"]
        );
    }

    #[test]
    fn the_stamp_holds_every_input_and_ignores_the_order_of_packages() {
        let a = bookworm(&["nginx-light", "curl"]);
        assert_eq!(a.stamp(), bookworm(&["curl,nginx-light", "curl"]).stamp());
        assert!(a.stamp().contains("suite bookworm\n"));
        assert!(a.stamp().contains("include curl,nginx-light\n"));
        assert_ne!(a.stamp(), bookworm(&["curl"]).stamp());
        assert_ne!(a.stamp(), DebianTemplate { suite: "trixie".into(), ..a.clone() }.stamp());
        assert_ne!(a.stamp(), DebianTemplate { mirror: "http://mirror.example/debian".into(), ..a.clone() }.stamp());
    }

    #[test]
    fn a_tarball_is_reused_only_with_the_stamp_of_the_same_inputs() {
        let dir = tempfile::tempdir().expect("tmp");
        let out = dir.path().join("debian.tar.zst");
        let t = bookworm(&["nginx-light"]);
        assert_eq!(stamp_path(&out), dir.path().join("debian.tar.zst.inputs"));
        assert!(!is_cached(&t, &out), "no tarball");
        std::fs::write(&out, b"tarball").expect("write");
        assert!(!is_cached(&t, &out), "no stamp");
        std::fs::write(stamp_path(&out), bookworm(&["curl"]).stamp()).expect("write");
        assert!(!is_cached(&t, &out), "the stamp of other inputs");
        std::fs::write(stamp_path(&out), t.stamp()).expect("write");
        assert!(is_cached(&t, &out));
        // Reused without debootstrap or root: nothing runs.
        assert!(matches!(build_debian(&t, &out), Ok(Built::Reused)));
        assert_eq!(std::fs::read(&out).expect("read"), b"tarball");
    }

    #[test]
    fn inputs_that_are_not_names_or_urls_are_refused_before_anything_runs() {
        let dir = tempfile::tempdir().expect("tmp");
        let out = dir.path().join("debian.tar.gz");
        let bad_suite = DebianTemplate { suite: "--foreign".into(), ..bookworm(&[]) };
        let e = build_debian(&bad_suite, &out).expect_err("suite");
        assert!(matches!(&e, TemplateError::Suite(s) if s == "--foreign"), "{e:?}");
        assert_eq!(e.to_string(), "\"--foreign\" is not a Debian suite name (e.g. bookworm)");
        let e = build_debian(&bookworm(&["nginx light"]), &out).expect_err("package");
        assert!(matches!(&e, TemplateError::Package(p) if p == "nginx light"), "{e:?}");
        let bad_mirror = DebianTemplate { mirror: "deb.debian.org".into(), ..bookworm(&[]) };
        let e = build_debian(&bad_mirror, &out).expect_err("mirror");
        assert!(matches!(&e, TemplateError::Mirror(_)) && e.to_string().contains("not a mirror URL"), "{e:?}");
        let wrong_name = dir.path().join("debian.tar");
        let e = build_debian(&bookworm(&[]), &wrong_name).expect_err("name");
        assert!(matches!(&e, TemplateError::Compression(_)) && e.to_string().contains(".tar.zst"), "{e:?}");
        assert!(!out.exists());
    }

    #[test]
    fn a_missing_busybox_is_named_and_nothing_is_left_behind() {
        let dir = tempfile::tempdir().expect("tmp");
        let missing = dir.path().join("no-busybox");
        let e = build_busybox(&missing, &dir.path().join("busybox.tar.gz")).expect_err("no busybox");
        assert!(matches!(&e, TemplateError::Io { action: "copy", path, .. } if path == &missing), "{e:?}");
        assert!(e.to_string().starts_with(&format!("cannot copy {}: ", missing.display())), "{e}");
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0, "the build directory is removed");
    }

    #[test]
    fn the_compression_follows_the_name() {
        assert_eq!(compression_flag(Path::new("a/debian.tar.gz")).ok(), Some("--gzip"));
        assert_eq!(compression_flag(Path::new("debian.tar.xz")).ok(), Some("--xz"));
        assert_eq!(compression_flag(Path::new("debian.tar.zst")).ok(), Some("--zstd"));
    }

    #[test]
    fn the_init_is_a_shell_script_that_starts_runlevel_2_and_stops_on_sigpwr() {
        use std::io::Write as _;
        let mut sh =
            std::process::Command::new("sh").arg("-n").stdin(std::process::Stdio::piped()).spawn().expect("sh");
        sh.stdin.take().expect("stdin").write_all(DEBIAN_INIT.as_bytes()).expect("write");
        assert!(sh.wait().expect("wait").success(), "sh -n refuses the init");
        assert!(DEBIAN_INIT.starts_with("#!/bin/sh\n"));
        assert!(DEBIAN_INIT.contains("/etc/rc2.d/S*"));
        assert!(DEBIAN_INIT.contains("trap stop_all PWR TERM INT"));
    }
}
