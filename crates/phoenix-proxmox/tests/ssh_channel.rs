//! The node channel against a real `sshd` on loopback, started by the test (root and
//! openssh-server, which `.ci/run` installs). In CI it must run; elsewhere it is skipped with the
//! reason when the host lacks what it needs.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use phoenix_proxmox::node::channel::{ChannelError, SshTarget};

fn sshd_available() -> bool {
    let missing = if !phoenix_testkit::is_root() {
        Some("it needs root".to_string())
    } else if !Path::new("/usr/sbin/sshd").is_file() {
        Some("openssh-server is not installed".to_string())
    } else {
        None
    };
    phoenix_testkit::real_component("the node-channel test", missing)
}

/// An sshd on a free loopback port, with its own host key and one authorized client key.
struct Sshd {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) {
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen")
        .success();
    assert!(ok);
}

impl Sshd {
    fn start() -> Sshd {
        let dir = tempfile::tempdir().expect("tmp");
        let d = dir.path();
        keygen(&d.join("host_key"));
        keygen(&d.join("client_key"));
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).expect("copy");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {h}\nAuthorizedKeysFile {a}\nPidFile {p}\nStrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n",
            h = d.join("host_key").display(),
            a = d.join("authorized_keys").display(),
            p = d.join("sshd.pid").display(),
        );
        std::fs::write(d.join("sshd_config"), config).expect("config");
        std::fs::create_dir_all("/run/sshd").expect("privilege separation directory");
        let log = std::fs::File::create(d.join("sshd.log")).expect("log");
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stderr(log)
            .spawn()
            .expect("sshd");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "sshd did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Sshd { child, dir, port }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A target that trusts `host_key_file`'s key for this server.
    fn target(&self, host_key_file: &str) -> SshTarget {
        let key = std::fs::read_to_string(self.path(host_key_file)).expect("host key");
        let known = self.path(&format!("known_hosts-{host_key_file}"));
        std::fs::write(&known, format!("[127.0.0.1]:{} {}", self.port, key)).expect("known_hosts");
        let control = self.path("control");
        std::fs::create_dir_all(&control).expect("control dir");
        SshTarget {
            host: "127.0.0.1".into(),
            port: self.port,
            user: "root".into(),
            identity: Some(self.path("client_key")),
            known_hosts: known,
            control_dir: control,
        }
    }
}

#[test]
fn arguments_arrive_intact_and_unknown_host_keys_are_refused() {
    if !sshd_available() {
        return;
    }
    let sshd = Sshd::start();
    let target = sshd.target("host_key.pub");
    let args = ["a b", "it's", "$(id -u)", "*", "line1\nline2", "--", "", "\\", "\"quoted\"", "; rm -rf /nonexistent"];
    let mut argv: Vec<String> = vec!["printf".into(), "%s|".into()];
    argv.extend(args.iter().map(|s| (*s).to_string()));
    let out = target.run(&argv, None, Duration::from_secs(30)).expect("run");
    assert_eq!(out.status, 0, "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{}|", args.join("|")));

    // stdin reaches the remote program; the exit status comes back.
    let out = target
        .run(&["sh".into(), "-c".into(), "cat; exit 7".into()], Some(b"pushed bytes"), Duration::from_secs(30))
        .expect("run");
    assert_eq!((out.status, out.stdout.as_slice()), (7, &b"pushed bytes"[..]));

    // One connection per node: the multiplexing socket stays for the next command.
    assert!(std::fs::read_dir(&target.control_dir).expect("control dir").count() >= 1, "no control socket");

    // A key that is not the server's is refused.
    keygen(&sshd.path("other_key"));
    let wrong = sshd.target("other_key.pub");
    let wrong = SshTarget { control_dir: sshd.path("control-wrong"), ..wrong };
    std::fs::create_dir_all(&wrong.control_dir).expect("dir");
    match wrong.run(&["true".into()], None, Duration::from_secs(30)) {
        Err(ChannelError::HostKey { .. }) => {}
        other => panic!("an unknown host key was not refused: {other:?}"),
    }
}
