//! `phoenix setup-hypervisor` end to end, for real, inside a privileged Debian container (the
//! template `phoenix template debian` builds) standing in for a Proxmox host: the `phoenix` binary
//! is bind-mounted into it read-only and runs `plan`, `apply --dry-run` (which changes no file
//! under /etc and /home), `apply`, and `apply` again (nothing to do, no file changed). Then, from
//! the test host: SSH key login as the admin user it created over the bridge, and `smbclient -L`
//! listing the Samba share it configured; inside: the sudoers drop-in passes `visudo -c`, and
//! the NFS exports file, the `/etc/subuid` and `/etc/subgid` block and the time zone are as
//! configured. The packages the modules need (openssh-server, samba, sudo, nfs-kernel-server,
//! apparmor, liblxc-common for the profile's `abstractions/lxc`, tzdata) are installed by the container's `base_setup` through the apt proxy.
//!
//! Not covered here, and why: the repositories module's own changes — Proxmox's no-subscription
//! repository is unreachable from the test host, so the container has it enabled already (in
//! `pve-no-subscription.list`, as an installed Proxmox host may) and all packages are installed,
//! and the module has nothing to do; the kernel NFS server (there is no nfsd in a container: the
//! exports file is written and `exportfs -ra` runs, no client mounts it); ZFS pools, datasets and
//! Proxmox storages (no ZFS module nor `/etc/pve`); loading the AppArmor profile (the kernel here
//! has no AppArmor: the profile is written and checked only); NTP and the firewall (no `chronyd`
//! or `pve-firewall` to apply them); the NVIDIA driver. The double-based tests of `phoenix-host`
//! cover those modules' plans.
//!
//! Needs root, the `lxc` tools, `debootstrap`, `ssh`, `ssh-keygen`, `smbclient`, the bridge
//! `phxtest0` with 10.79.0.1/24 and apt-cacher-ng on 10.79.0.1:3142 (`scripts/test-host.sh` sets
//! all of it up). In CI this test must run; elsewhere it is skipped with the reason when the host
//! lacks what it needs.

#[path = "support/debian.rs"]
mod debian;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use debian::{APT_PROXY, Needs, Stack, available, both, debian_template, feed, must, serial, text};

/// The container standing in for the host.
const ID: u32 = 1231;
/// Its address on the bridge.
const ADDRESS: &str = "10.79.0.231";
/// Where the directory holding the `phoenix` binary is mounted in it.
const BIN: &str = "/opt/phoenix-bin";
/// The configuration directory `phoenix setup-hypervisor` reads in it.
const CONFIG: &str = "/root/phoenix-config";
/// The admin user (and Samba user) the configuration asks for.
const USER: &str = "ops";
/// The Samba user's password, given to `phoenix` in the environment (`env:PHX_SMB_PASSWORD`).
const SMB_PASSWORD: &str = "e2e-samba-password-2718";

/// What must not change on a dry run or an apply with nothing to do: every file and link under
/// /etc and /home with its content, mode, owner and modification time.
const STATE: &str = "find /etc /home \\( -type f -o -type l \\) -printf '%p %l %m %u %g %T@\\n' | sort; \
    find /etc /home -type f -exec sha256sum {} + | sort";

impl Stack {
    /// Runs a command in the container with a clean environment (and `env`'s additions): its
    /// output (standard output, then standard error) and whether it succeeded.
    fn attach_with(&self, argv: &[&str], input: &[u8]) -> (String, bool) {
        let mut attach = self.lxc_attach(ID);
        attach.args(["--clear-env", "--set-var", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]);
        attach.args(["--set-var", &format!("PHX_SMB_PASSWORD={SMB_PASSWORD}")]);
        let out = feed(attach.arg("--").args(argv), input);
        (both(&out), out.status.success())
    }

    /// A shell command's output in the container; it must succeed.
    fn sh(&self, script: &str) -> String {
        let (out, ok) = self.attach_with(&["sh", "-c", script], b"");
        assert!(ok, "{script} failed in the container: {out}");
        out
    }

    /// `phoenix setup-hypervisor ARGS` in the container: its output and exit code.
    fn setup_hypervisor(&self, args: &[&str]) -> (String, Option<i32>) {
        let mut attach = self.lxc_attach(ID);
        attach.args(["--clear-env", "--set-var", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]);
        attach.args(["--set-var", &format!("PHX_SMB_PASSWORD={SMB_PASSWORD}"), "--"]);
        attach.arg(format!("{BIN}/phoenix")).args(["--color", "never", "-c", CONFIG, "setup-hypervisor"]).args(args);
        let out = attach.output().expect("lxc-attach");
        (both(&out), out.status.code())
    }
}

/// The hypervisor file `phoenix setup-hypervisor` reads in the container: an admin user with sudo
/// and the test's SSH key, a Samba share of /srv/data for that user, an NFS export of it, a time
/// zone; the container file beside it has one unprivileged container, so that `subids` allows
/// Proxmox's default range to root.
fn host_config(public_key: &str) -> (String, String) {
    let hv = serde_json::json!({
        "backend": {"type": "lxc", "lxc_path": "/var/lib/phoenix/lxc",
            "bridges": {"vmbr0": {"host_bridge": "vmbr0", "address": "10.80.0.1/24"}},
            "storage": {"local": "/var/lib/phoenix/storage/local"}},
        "timezone": "America/New_York",
        "users": [{"username": USER, "sudo_access": true, "ssh_public_key": public_key}],
        "samba": {"user": USER, "password": "env:PHX_SMB_PASSWORD",
            "shares": [{"name": "data", "path": "/srv/data", "valid_users": [USER], "options": {"read only": "no"}}]},
        "nfs": {"exports": [{"path": "/srv/data", "clients": ["10.79.0.0/24"], "options": ["rw", "sync", "no_subtree_check"]}]},
    });
    let lxc = serde_json::json!({"lxc_configs": {"300": {
        "name": "app", "memory_mb": 512, "cores": 1, "storage_pool": "local", "storage_size_gb": 4,
        "template": "local:vztmpl/debian.tar.zst", "unprivileged": true,
        "network_config": {"name": "eth0", "bridge": "vmbr0", "ip": "10.80.0.30/24", "gw": "10.80.0.1"}}}});
    (hv.to_string(), lxc.to_string())
}

/// Waits until something accepts connections on the container's `port`.
fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let addr = format!("{ADDRESS}:{port}").parse().expect("address");
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {ADDRESS}:{port}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
#[allow(clippy::print_stderr)] // The steps' durations are worth seeing in the test's output.
fn setup_hypervisor_sets_up_users_samba_nfs_subids_and_timezone_in_a_privileged_debian_container_and_reruns_idle() {
    let needs = Needs { tools: &["ssh", "ssh-keygen", "smbclient"], apt_proxy: true, ..Needs::default() };
    if !available("the host setup end-to-end test", &needs) {
        return;
    }
    let _host = serial();
    let debian = debian_template();
    let s = Stack::new("phoenix-host-setup-e2e-");
    s.write_hypervisor(serde_json::json!({}));
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_phoenix")).parent().expect("the binary's directory");
    let settings = serde_json::json!({"base_setup": {"apt_proxy": APT_PROXY, "locale": "C.UTF-8",
        "extra_packages": ["openssh-server", "samba", "sudo", "nfs-kernel-server", "apparmor", "liblxc-common"]}});
    let lxc = serde_json::json!({"lxc_configs": {ID.to_string(): {
        "name": "pve-standin", "memory_mb": 1024, "cores": 2, "storage_pool": "local", "storage_size_gb": 10,
        "network_config": {"name": "eth0", "bridge": "vmbr0", "ip": format!("{ADDRESS}/24"), "gw": "10.79.0.1"},
        "unprivileged": false, "template": debian.display().to_string(),
        "mount_points": [{"host_path": bin_dir.display().to_string(), "container_path": BIN, "read_only": true}],
        "features": ["base_setup"], "feature_settings": settings,
    }}});
    std::fs::write(s.config().join("phoenix_lxc_configs.json"), lxc.to_string()).expect("write");

    let started = Instant::now();
    let out = s.phoenix(&["apply"]);
    assert!(out.status.success(), "{}", both(&out));
    eprintln!("apply of the privileged container with base_setup: {:.1}s", started.elapsed().as_secs_f64());

    // The test's key pair, and the host configuration in the container.
    let key = s.root.join("id_ed25519");
    must(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "phoenix-e2e", "-f"]).arg(&key));
    let public_key = std::fs::read_to_string(key.with_extension("pub")).expect("public key");
    let (hv, containers) = host_config(public_key.trim());
    s.sh(&format!("mkdir -p {CONFIG} /srv/data"));
    for (name, content) in [("phoenix_hypervisor_config.json", hv), ("phoenix_lxc_configs.json", containers)] {
        let (out, ok) = s.attach_with(&["sh", "-c", &format!("cat > {CONFIG}/{name}")], content.as_bytes());
        assert!(ok, "{out}");
    }
    // An installed Proxmox VE 8 may have the no-subscription repository already; here it stands in
    // for the unreachable one Phoenix would add (apt never reads it: every package is installed).
    s.sh("echo 'deb http://download.proxmox.com/debian/pve bookworm pve-no-subscription' \
          > /etc/apt/sources.list.d/pve-no-subscription.list");
    s.sh("mkdir -p /run/sshd; pgrep -x sshd >/dev/null || /usr/sbin/sshd; pgrep -x smbd >/dev/null || smbd -D");

    // plan and a dry run: the plan, no file changed.
    let before = s.sh(STATE);
    let (plan, code) = s.setup_hypervisor(&["plan", "--detailed-exitcode"]);
    assert_eq!(code, Some(2), "{plan}");
    for expected in [
        "the no-subscription repository is already enabled in /etc/apt/sources.list.d/pve-no-subscription.list",
        "/etc/sudoers.d/phoenix-ops",
        "/etc/exports.d/phoenix.exports",
        "/etc/samba/phoenix-shares.conf",
        "/etc/subuid",
        "/usr/share/zoneinfo/America/New_York",
    ] {
        assert!(plan.contains(expected), "{expected} is not in the plan:\n{plan}");
    }
    assert!(!plan.contains(SMB_PASSWORD), "{plan}");
    let (dry, code) = s.setup_hypervisor(&["apply", "--dry-run"]);
    assert_eq!(code, Some(0), "{dry}");
    assert_eq!(s.sh(STATE), before, "the dry run changed files:\n{dry}");

    let started = Instant::now();
    let (applied, code) = s.setup_hypervisor(&["apply"]);
    assert_eq!(code, Some(0), "{applied}");
    assert!(!applied.contains(SMB_PASSWORD), "{applied}");
    eprintln!("phoenix setup-hypervisor apply: {:.1}s\n{applied}", started.elapsed().as_secs_f64());

    // Again: nothing to do, and no file changed.
    let after = s.sh(STATE);
    let (again, code) = s.setup_hypervisor(&["apply"]);
    assert_eq!(code, Some(0), "{again}");
    assert!(
        again.contains("No changes: the host matches the configuration"),
        "the second apply did something:\n{again}"
    );
    assert_eq!(s.sh(STATE), after, "the second apply changed files:\n{again}");

    // users: the account, sudo through a drop-in visudo accepts, SSH key login from the host.
    assert!(s.sh(&format!("getent passwd {USER}")).contains(&format!(":/home/{USER}:/bin/bash")));
    s.sh("visudo -c");
    assert!(s.sh("cat /etc/sudoers.d/phoenix-ops").contains("ops ALL=(ALL:ALL) NOPASSWD: ALL"));
    assert_eq!(s.sh("su - ops -c 'sudo -n id -u' 2>/dev/null").trim(), "0", "ops has no sudo");
    wait_listening(22);
    let login = must(
        Command::new("ssh")
            .arg("-i")
            .arg(&key)
            .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes"])
            .args(["-o", "ConnectTimeout=10", &format!("{USER}@{ADDRESS}"), "id"]),
    );
    assert!(text(&login.stdout).contains(&format!("({USER})")), "{}", both(&login));

    // samba: the share is listed from the host.
    wait_listening(445);
    let shares = must(Command::new("smbclient").args(["-L", &format!("//{ADDRESS}"), "-N"]));
    assert!(text(&shares.stdout).lines().any(|l| l.trim_start().starts_with("data ")), "{}", both(&shares));
    assert!(s.sh("pdbedit -L 2>/dev/null").starts_with(&format!("{USER}:")));

    // nfs, subids, timezone.
    assert_eq!(
        s.sh("cat /etc/exports.d/phoenix.exports"),
        "# Managed by phoenix setup-hypervisor from the `nfs` section of phoenix_hypervisor_config.json.\n\
         # Rewritten on every apply: change the configuration, not this file.\n\
         /srv/data 10.79.0.0/24(rw,sync,no_subtree_check)\n"
    );
    for file in ["/etc/subuid", "/etc/subgid"] {
        let ids = s.sh(&format!("cat {file}"));
        let block = ids.split("# BEGIN phoenix").nth(1).unwrap_or_else(|| panic!("no Phoenix block in {file}:\n{ids}"));
        assert!(block.lines().any(|l| l == "root:100000:65536"), "{file}:\n{ids}");
    }
    assert_eq!(s.sh("cat /etc/timezone"), "America/New_York\n");
    assert_eq!(s.sh("readlink /etc/localtime"), "/usr/share/zoneinfo/America/New_York\n");
}
