//! A clone's own SSH host keys. A clone is a copy of its template's disk, so it starts with the
//! template's `/etc/ssh/ssh_host_*_key` (Proxmox's clone only clears the machine ID), as does
//! every other clone of it. Once per clone ([`phoenix_plan::Action::NewHostKeys`]), before its
//! own customizations run, the engine runs [`SCRIPT`] in it through the backend's `exec`: for
//! each type of host key the guest has, `ssh-keygen` makes a new key in a staging directory
//! beside them, each new key then replaces the old one by a rename, and a running sshd (systemd
//! or System V) is restarted to serve them. There is never a moment without keys: an sshd that
//! the guest's init starts while this runs (a clone just booted) finds a whole key, old or new,
//! where `ssh-keygen -A` after removing the old keys could leave it none and failing to start.
//! A guest without host keys is left as it is. A guest with host keys and no `ssh-keygen` fails
//! the step: its keys are left as they are, and the apply says so rather than leave a clone that
//! impersonates its template.
//!
//! A backend with no way to run commands in the guest (a Proxmox container without the node
//! channel) cannot replace them: the apply warns, and records that they were kept
//! ([`NOT_REPLACED`]).
//!
//! A run killed half-way is finished by the next: the old keys are replaced only by whole new
//! ones, a staging directory left behind (`/etc/ssh/phoenix-new-host-keys`) is made again, and
//! keys already replaced are replaced once more (no one has pinned them: the marker is written
//! only once every key is new).

use std::time::Duration;

use phoenix_backend::{ExecOutput, ExecRequest};

/// The value of the guest's [`phoenix_plan::host_keys_marker`] where the backend has no way to
/// run commands in it (a Proxmox container without the node channel): its keys were not
/// replaced, the apply said so, and later plans do not ask again.
pub const NOT_REPLACED: &str = "not-replaced";

/// The exit status of [`SCRIPT`] when the guest has host keys but no `ssh-keygen`.
pub const NO_SSH_KEYGEN: i32 = 3;

/// The last line [`SCRIPT`] prints when the guest has no host keys.
const NONE_LINE: &str = "no SSH host keys: nothing to replace";

/// The script run with `/bin/sh -c` (POSIX `sh`: busybox's too). Its last line says what it did.
pub const SCRIPT: &str = r#"dir=/etc/ssh
new="$dir/phoenix-new-host-keys"
types=
for k in "$dir"/ssh_host_*_key; do
    [ -e "$k" ] || continue
    t=${k#"$dir"/ssh_host_}
    types="$types ${t%_key}"
done
if [ -z "$types" ]; then rm -rf "$new"; echo "no SSH host keys: nothing to replace"; exit 0; fi
if ! command -v ssh-keygen >/dev/null 2>&1; then
    echo "the guest has SSH host keys (its template's) but no ssh-keygen to make its own: they were left as they are; install ssh-keygen (openssh-client) in the template, or remove /etc/ssh/ssh_host_* from it" >&2
    exit 3
fi
rm -rf "$new" && mkdir -m 700 "$new" || exit 1
for t in $types; do
    if ! ssh-keygen -q -N '' -t "$t" -f "$new/ssh_host_${t}_key" </dev/null >/dev/null; then
        rm -rf "$new"
        echo "ssh-keygen could not make a new $t host key: the template's keys were left as they are" >&2
        exit 1
    fi
done
for t in $types; do
    mv -f "$new/ssh_host_${t}_key.pub" "$dir/" && mv -f "$new/ssh_host_${t}_key" "$dir/" || exit 1
done
rm -rf "$new"
restarted=
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    for s in ssh sshd; do
        # Also one still starting: it may have read the old keys. (`sshd` is `ssh`'s alias on
        # Debian: one restart.)
        case "$(systemctl is-active "$s.service" 2>/dev/null)" in
        active | activating | reloading)
            systemctl restart "$s.service" || { echo "sshd ($s.service) did not restart with the new keys" >&2; exit 1; }
            restarted=" ($s restarted)"
            break
            ;;
        esac
    done
else
    for s in ssh sshd; do
        # Also one started so recently that it has no pid file yet: it may have read the old keys.
        if [ -x "/etc/init.d/$s" ] && { "/etc/init.d/$s" status >/dev/null 2>&1 || pidof sshd >/dev/null 2>&1; }; then
            "/etc/init.d/$s" restart >/dev/null || { echo "sshd (/etc/init.d/$s) did not restart with the new keys" >&2; exit 1; }
            restarted=" ($s restarted)"
            break
        fi
    done
fi
echo "new SSH host keys made$restarted"
"#;

/// The command that runs [`SCRIPT`] in a guest.
pub fn request() -> ExecRequest {
    ExecRequest::new(["/bin/sh", "-c", SCRIPT], Duration::from_secs(300))
}

/// What the script did, from its output: `Ok` with the value recorded in the guest's
/// [`phoenix_plan::host_keys_marker`] (`new`, or `none` where it had no keys) and its own words,
/// or `Err` with why it failed.
pub fn outcome(out: &ExecOutput) -> Result<(&'static str, String), String> {
    let last =
        |b: &[u8]| String::from_utf8_lossy(b).lines().map(str::trim).rfind(|l| !l.is_empty()).map(str::to_string);
    if out.success() {
        let said = last(&out.stdout).unwrap_or_else(|| "new SSH host keys made".to_string());
        return Ok((if said == NONE_LINE { "none" } else { "new" }, said));
    }
    let why = last(&out.stderr).unwrap_or_else(|| format!("it exited with status {}", out.status));
    Err(match out.status {
        NO_SSH_KEYGEN => why,
        status => format!("replacing its SSH host keys failed (status {status}): {why}"),
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;
    use std::process::Command;

    use super::*;

    /// Runs the script with its paths under `root` and `bin` first on the PATH.
    fn run(root: &Path, bin: &Path) -> ExecOutput {
        run_with(root, &format!("{}:/usr/bin:/bin", bin.display()))
    }

    /// Runs the script with its paths under `root` and the given PATH.
    fn run_with(root: &Path, path: &str) -> ExecOutput {
        let script = SCRIPT
            .replace("/etc/ssh", &root.join("etc/ssh").display().to_string())
            .replace("/run/systemd", &root.join("run/systemd").display().to_string());
        let script = script.replace("/etc/init.d", &root.join("etc/init.d").display().to_string());
        let out = Command::new("/bin/sh").args(["-c", &script]).env("PATH", path).output().expect("sh");
        ExecOutput { status: out.status.code().unwrap_or(-1), stdout: out.stdout, stderr: out.stderr }
    }

    fn put(path: &Path, text: &str, mode: u32) {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    /// A stand-in for `ssh-keygen -q -N '' -t TYPE -f FILE` that writes "new TYPE" into FILE
    /// and FILE.pub (failing for the type `dsa`), and an init script that logs what it is asked.
    fn host(root: &Path) -> std::path::PathBuf {
        let bin = root.join("bin");
        put(
            &bin.join("ssh-keygen"),
            "#!/bin/sh\n[ \"$1 $2 $3 $4\" = \"-q -N  -t\" ] && [ \"$6\" = -f ] || exit 9\n\
             [ \"$5\" = dsa ] && { echo 'unknown key type dsa' >&2; exit 1; }\n\
             echo \"new $5\" > \"$7\"; echo \"new $5\" > \"$7.pub\"\n",
            0o755,
        );
        put(
            &root.join("etc/init.d/ssh"),
            &format!("#!/bin/sh\necho \"$1\" >> {}\n", root.join("init.log").display()),
            0o755,
        );
        bin
    }

    fn read(root: &Path, name: &str) -> String {
        std::fs::read_to_string(root.join("etc/ssh").join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    #[test]
    fn each_of_the_template_s_keys_is_replaced_and_a_running_sshd_restarted() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path();
        let bin = host(root);
        for t in ["ed25519", "rsa"] {
            put(&root.join(format!("etc/ssh/ssh_host_{t}_key")), "template", 0o600);
            put(&root.join(format!("etc/ssh/ssh_host_{t}_key.pub")), "template", 0o644);
        }
        put(&root.join("etc/ssh/sshd_config"), "kept", 0o644);
        let out = run(root, &bin);
        assert_eq!(outcome(&out), Ok(("new", "new SSH host keys made (ssh restarted)".to_string())), "{out:?}");
        for t in ["ed25519", "rsa"] {
            assert_eq!(read(root, &format!("ssh_host_{t}_key")), format!("new {t}\n"));
            assert_eq!(read(root, &format!("ssh_host_{t}_key.pub")), format!("new {t}\n"));
        }
        // Only the types it had; nothing else touched, nothing left behind.
        assert!(!root.join("etc/ssh/ssh_host_ecdsa_key").exists());
        assert_eq!(read(root, "sshd_config"), "kept");
        assert!(!root.join("etc/ssh/phoenix-new-host-keys").exists());
        assert_eq!(std::fs::read_to_string(root.join("init.log")).expect("log"), "status\nrestart\n");
    }

    #[test]
    fn under_systemd_an_sshd_still_starting_is_restarted_once() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path();
        let bin = host(root);
        std::fs::create_dir_all(root.join("run/systemd/system")).expect("mkdir");
        let log = root.join("systemctl.log");
        put(
            &bin.join("systemctl"),
            &format!(
                "#!/bin/sh\necho \"$*\" >> {}\n[ \"$1\" = is-active ] && echo activating\nexit 0\n",
                log.display()
            ),
            0o755,
        );
        put(&root.join("etc/ssh/ssh_host_ed25519_key"), "template", 0o600);
        let out = run(root, &bin);
        assert_eq!(outcome(&out), Ok(("new", "new SSH host keys made (ssh restarted)".to_string())), "{out:?}");
        let asked = std::fs::read_to_string(&log).expect("log");
        assert_eq!(asked, "is-active ssh.service\nrestart ssh.service\n");
        assert!(!root.join("init.log").exists(), "the System V script was used under systemd");
    }

    #[test]
    fn a_run_killed_half_way_is_finished_by_the_next_and_a_failed_key_changes_nothing() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path();
        let bin = host(root);
        // Killed while making the new keys (one left staged) and swapping them (one swapped).
        put(&root.join("etc/ssh/phoenix-new-host-keys/ssh_host_rsa_key"), "half", 0o600);
        put(&root.join("etc/ssh/ssh_host_rsa_key"), "template", 0o600);
        put(&root.join("etc/ssh/ssh_host_ed25519_key"), "new ed25519, not pinned yet", 0o600);
        let out = run(root, &bin);
        assert_eq!(outcome(&out).map(|(v, _)| v), Ok("new"), "{out:?}");
        assert_eq!(read(root, "ssh_host_rsa_key"), "new rsa\n");
        assert_eq!(read(root, "ssh_host_ed25519_key"), "new ed25519\n");
        assert!(!root.join("etc/ssh/phoenix-new-host-keys").exists());

        // A type ssh-keygen cannot make: every key stays as it was.
        put(&root.join("etc/ssh/ssh_host_dsa_key"), "template", 0o600);
        let out = run(root, &bin);
        let why = outcome(&out).expect_err("fails");
        assert!(why.contains("could not make a new dsa host key: the template's keys were left as they are"), "{why}");
        assert_eq!(read(root, "ssh_host_dsa_key"), "template");
        assert_eq!(read(root, "ssh_host_rsa_key"), "new rsa\n");
        assert!(!root.join("etc/ssh/phoenix-new-host-keys").exists());
    }

    #[test]
    fn a_guest_without_keys_is_left_alone_and_one_without_ssh_keygen_fails_keeping_its_keys() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path();
        let bin = host(root);
        let out = run(root, &bin);
        assert_eq!(outcome(&out), Ok(("none", NONE_LINE.to_string())), "{out:?}");
        assert!(!root.join("etc/ssh").exists() && !root.join("init.log").exists());

        std::fs::remove_file(bin.join("ssh-keygen")).expect("rm");
        put(&root.join("etc/ssh/ssh_host_ed25519_key"), "template", 0o600);
        // Only the stand-ins on the PATH: the script stops before it needs any other program.
        let out = run_with(root, &bin.display().to_string());
        assert_eq!(out.status, NO_SSH_KEYGEN, "{out:?}");
        let why = outcome(&out).expect_err("fails");
        assert!(why.contains("no ssh-keygen to make its own: they were left as they are"), "{why}");
        assert_eq!(std::fs::read_to_string(root.join("etc/ssh/ssh_host_ed25519_key")).expect("key"), "template");
    }
}
