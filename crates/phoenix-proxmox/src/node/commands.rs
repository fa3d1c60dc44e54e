//! What the driver runs on a node through the node channel, besides `pct exec`: reading and
//! writing `/etc/pve/lxc/<id>.conf` (a compare-and-swap write, so a concurrent change is never
//! overwritten), listing the NVIDIA device nodes, and `pct set` for what Proxmox reserves to
//! `root@pam`, and creating the host directories of bind mounts. Each shell script names itself
//! in `$0` (`phoenix-conf`, `phoenix-devices`, `phoenix-mkdir`), so
//! a test double of the node can tell them apart.

use sha2::{Digest, Sha256};

/// The configuration file of a container, as the cluster filesystem shows it on every node.
pub fn conf_path(id: u32) -> String {
    format!("/etc/pve/lxc/{id}.conf")
}

/// Reads a container's configuration file.
pub fn read_conf(id: u32) -> Vec<String> {
    vec!["cat".into(), conf_path(id)]
}

/// The exit status of [`write_conf`] when the file changed since it was read.
pub const CHANGED: i32 = 4;

/// The lock Proxmox holds (`flock`) while it reads, changes and writes a container's
/// configuration file (pve-container's `lock_config`).
pub fn conf_lock(id: u32) -> String {
    format!("/run/lock/lxc/pve-config-{id}.lock")
}

/// Replaces a container's configuration file with stdin, only if its content still has the
/// SHA-256 `expected` (else exits with [`CHANGED`] and leaves it alone), holding Proxmox's own
/// lock on it ([`conf_lock`]) from the comparison to the swap, so that no `pct set` or API
/// change lands in between (a lock not free within 60 s: `<file> is locked`, status 5). The new content is written next to it and renamed over it, as
/// Proxmox itself writes these files.
pub fn write_conf(id: u32, expected: &str) -> Vec<String> {
    let script = "f=\"$1\"; mkdir -p \"${3%/*}\" && exec 9>>\"$3\" || exit 1; \
                  flock -w 60 9 || { echo \"$f is locked\" >&2; exit 5; }; \
                  t=\"$f.tmp.$$\"; cat > \"$t\" || exit 1; \
                  have=$(sha256sum < \"$f\") || { rm -f \"$t\"; exit 1; }; \
                  if [ \"${have%% *}\" != \"$2\" ]; then rm -f \"$t\"; echo \"$f changed since it was read\" >&2; exit 4; fi; \
                  mv -f \"$t\" \"$f\"";
    ["/bin/sh", "-c", script, "phoenix-conf", &conf_path(id), expected, &conf_lock(id)]
        .iter()
        .map(|s| (*s).to_string())
        .collect()
}

/// The SHA-256 of a file's content, as [`write_conf`] compares it.
pub fn content_hash(content: &[u8]) -> String {
    Sha256::digest(content).iter().map(|b| format!("{b:02x}")).collect()
}

/// Lists the NVIDIA device nodes of the node, one path a line.
pub fn list_nvidia_devices() -> Vec<String> {
    let script = "for f in /dev/nvidia[0-9]* /dev/nvidiactl /dev/nvidia-uvm /dev/nvidia-uvm-tools /dev/nvidia-caps/*; \
                  do [ -c \"$f\" ] && echo \"$f\"; done; exit 0";
    ["/bin/sh", "-c", script, "phoenix-devices"].iter().map(|s| (*s).to_string()).collect()
}

/// Creates the host directories of bind mounts that do not exist yet, each given to its owner
/// (`UID:GID`, or `user:group` of the node), and prints each one it created; existing ones are
/// left as they are.
pub fn make_host_dirs(dirs: &[(String, String)]) -> Vec<String> {
    let script = "while [ $# -ge 2 ]; do \
                  if [ ! -e \"$1\" ]; then mkdir -p -- \"$1\" && chown -- \"$2\" \"$1\" && echo \"$1\" || exit 1; fi; \
                  shift 2; done";
    let mut argv: Vec<String> = ["/bin/sh", "-c", script, "phoenix-mkdir"].iter().map(|s| (*s).to_string()).collect();
    for (path, owner) in dirs {
        argv.push(path.clone());
        argv.push(owner.clone());
    }
    argv
}

/// `pct set <id> --key value ... [--delete a,b]`: settings as `root@pam` on the node.
pub fn pct_set(id: u32, params: &[(String, String)], delete: &[String]) -> Vec<String> {
    let mut argv = vec!["pct".to_string(), "set".into(), id.to_string()];
    for (k, v) in params {
        argv.push(format!("--{k}"));
        argv.push(v.clone());
    }
    if !delete.is_empty() {
        argv.push("--delete".into());
        argv.push(delete.join(","));
    }
    argv
}

/// The device nodes to pass to a container for these NVIDIA GPU indices: each GPU's
/// `/dev/nvidia<N>`, then the shared control, UVM and capability nodes — only those the node
/// has, in a fixed order.
pub fn gpu_devices(gpus: &[u32], present: &[String]) -> Vec<String> {
    let has = |p: &str| present.iter().any(|d| d == p);
    let mut out: Vec<String> = gpus.iter().map(|g| format!("/dev/nvidia{g}")).filter(|p| has(p)).collect();
    for shared in ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"] {
        if has(shared) {
            out.push(shared.to_string());
        }
    }
    let mut caps: Vec<&String> = present.iter().filter(|d| d.starts_with("/dev/nvidia-caps/")).collect();
    caps.sort();
    out.extend(caps.into_iter().cloned());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};

    fn run(argv: &[String], input: &[u8], path: &str) -> i32 {
        // The script with the file's path in place of the conf path, its lock beside it.
        let mut argv = argv.to_vec();
        argv[4] = path.to_string();
        argv[6] = format!("{path}.lock");
        let mut child = Command::new(&argv[0]).args(&argv[1..]).stdin(Stdio::piped()).spawn().expect("sh");
        child.stdin.as_mut().expect("stdin").write_all(input).expect("write");
        drop(child.stdin.take());
        child.wait().expect("wait").code().unwrap_or(-1)
    }

    #[test]
    fn the_conf_write_swaps_only_an_unchanged_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("950.conf");
        std::fs::write(&path, "cores: 2\n").expect("write");
        let good = content_hash(b"cores: 2\n");
        assert_eq!(run(&write_conf(950, &good), b"cores: 4\n", &path.display().to_string()), 0);
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "cores: 4\n");
        // Read before the change above: refused, the file kept, no temporary file left.
        assert_eq!(run(&write_conf(950, &good), b"cores: 8\n", &path.display().to_string()), CHANGED);
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "cores: 4\n");
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 2, "the file and its lock");
    }

    #[test]
    fn the_conf_write_waits_for_proxmoxs_lock() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("951.conf");
        let lock = format!("{}.lock", path.display());
        std::fs::write(&path, "cores: 2\n").expect("write");
        // Proxmox holds the lock: what it reads at the end of its hold is still its own file.
        let seen = dir.path().join("seen");
        let holder = Command::new("flock")
            .args([&lock, "-c", &format!("sleep 1; cat '{}' > '{}'", path.display(), seen.display())])
            .spawn()
            .expect("flock");
        std::thread::sleep(std::time::Duration::from_millis(200));
        let good = content_hash(b"cores: 2\n");
        assert_eq!(run(&write_conf(951, &good), b"cores: 4\n", &path.display().to_string()), 0);
        let mut holder = holder;
        assert!(holder.wait().expect("wait").success());
        assert_eq!(std::fs::read_to_string(&seen).expect("seen"), "cores: 2\n", "written while Proxmox held the lock");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "cores: 4\n");
        assert_eq!(conf_lock(951), "/run/lock/lxc/pve-config-951.lock");
    }

    #[test]
    fn host_directories_are_made_only_where_missing() {
        let dir = tempfile::tempdir().expect("tmp");
        let existing = dir.path().join("kept");
        std::fs::create_dir(&existing).expect("mkdir");
        let made = dir.path().join("deep/models with space");
        let me = Command::new("id").arg("-u").output().expect("id");
        let uid = String::from_utf8_lossy(&me.stdout).trim().to_string();
        let owner = format!("{uid}:{uid}");
        let argv = make_host_dirs(&[
            (existing.display().to_string(), owner.clone()),
            (made.display().to_string(), owner.clone()),
        ]);
        let out = Command::new(&argv[0]).args(&argv[1..]).output().expect("sh");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{}\n", made.display()), "only the new one");
        assert!(made.is_dir());
        // An owner the node does not know fails the command.
        let argv = make_host_dirs(&[(dir.path().join("other").display().to_string(), "no-such-user:x".into())]);
        assert!(!Command::new(&argv[0]).args(&argv[1..]).output().expect("sh").status.success());
    }

    #[test]
    fn device_listing_runs_in_a_shell_and_gpus_map_to_present_devices() {
        let argv = list_nvidia_devices();
        let out = Command::new(&argv[0]).args(&argv[1..]).output().expect("sh");
        assert!(out.status.success());
        let listed = String::from_utf8_lossy(&out.stdout);
        assert!(listed.lines().all(|l| l.starts_with("/dev/nvidia")), "{listed}");
        let present: Vec<String> =
            ["/dev/nvidia0", "/dev/nvidia1", "/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-caps/nvidia-cap2"]
                .iter()
                .map(|s| (*s).to_string())
                .collect();
        assert_eq!(
            gpu_devices(&[1, 3], &present),
            vec!["/dev/nvidia1", "/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-caps/nvidia-cap2"]
        );
        assert_eq!(
            pct_set(950, &[("dev0".into(), "/dev/nvidia0".into())], &["dev1".into()]),
            vec!["pct", "set", "950", "--dev0", "/dev/nvidia0", "--delete", "dev1"]
        );
    }
}
