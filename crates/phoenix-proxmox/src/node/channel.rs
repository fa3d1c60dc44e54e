//! The node channel: commands on a Proxmox node, over SSH with the system's OpenSSH client, one
//! multiplexed connection per node, host keys verified against a known-hosts file (an unknown
//! key is refused), and argument vectors that reach the remote program intact — each argument is
//! quoted once for the remote login shell, and `pct exec` passes them on without a shell. When
//! Phoenix runs on the node itself ([`LocalNode`]), that node's commands run here as child
//! processes, without a shell, and the cluster's other nodes are reached over SSH.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use phoenix_backend::process::{ABORTED, ProcessError, run_captured};

/// How to reach one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Remote user.
    pub user: String,
    /// Private key (else the agent and `~/.ssh`).
    pub identity: Option<PathBuf>,
    /// Known-hosts file the node's key must be in.
    pub known_hosts: PathBuf,
    /// Directory for the multiplexing socket.
    pub control_dir: PathBuf,
}

/// What a remote command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Exit status (255: SSH itself failed).
    pub status: i32,
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: Vec<u8>,
}

/// Why a remote command could not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// The node's host key is not the one in the known-hosts file (or is missing from it).
    #[error("the host key of {host} is not in {known_hosts}: refusing to connect")]
    HostKey {
        /// The node.
        host: String,
        /// The file.
        known_hosts: String,
    },
    /// SSH failed to connect or to log in.
    #[error("ssh to {host} failed: {message}")]
    Connect {
        /// The node.
        host: String,
        /// SSH's words.
        message: String,
    },
    /// The command ran longer than allowed.
    #[error("`{command}` on {host} timed out after {seconds}s")]
    Timeout {
        /// The node.
        host: String,
        /// The command.
        command: String,
        /// The limit.
        seconds: u64,
    },
    /// The program (ssh, or the command itself on the local node) could not be started.
    #[error("cannot run {0}")]
    Spawn(String),
}

/// Quotes one argument for a POSIX shell: `it's` becomes `'it'\''s'`.
pub fn shell_quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

/// The command line the remote shell runs for an argument vector.
pub fn remote_command(argv: &[String]) -> String {
    argv.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" ")
}

/// The `PATH` of commands Phoenix runs in containers: the usual one of a Debian or Ubuntu root
/// shell (the PVE command line's own leaves out `/usr/local`).
pub const GUEST_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `pct exec <id> --keep-env 0 -- /usr/bin/env PATH=<GUEST_PATH> argv...`: the command gets a
/// clean environment. `pct exec` passes the caller's on by default, and when Phoenix runs on the
/// node that is Phoenix's own, secrets read from `env:` references included. (`--keep-env` exists
/// since pve-container 5.0.9, in 8.4 and 9.x.)
pub fn pct_exec(id: u32, argv: &[String]) -> Vec<String> {
    let mut v: Vec<String> = ["pct", "exec", &id.to_string(), "--keep-env", "0", "--", "/usr/bin/env"]
        .iter()
        .map(|s| (*s).to_string())
        .collect();
    v.push(format!("PATH={GUEST_PATH}"));
    v.extend_from_slice(argv);
    v
}

/// `pct push <id> <file on the node> <path in the container> --perms MODE --user UID --group GID`
pub fn pct_push(id: u32, node_file: &str, path: &str, mode: u32, uid: u32, gid: u32) -> Vec<String> {
    [
        "pct",
        "push",
        &id.to_string(),
        node_file,
        path,
        "--perms",
        &format!("{mode:o}"),
        "--user",
        &uid.to_string(),
        "--group",
        &gid.to_string(),
    ]
    .iter()
    .map(|s| (*s).to_string())
    .collect()
}

/// Commands on the nodes of a cluster: SSH to each node, or this machine when Phoenix runs on the
/// node itself. Test doubles implement it too (any closure of the right shape does).
pub trait NodeChannel: Send + Sync {
    /// Runs an argument vector on `node`, feeding `input` on stdin (or none), with a timeout.
    fn run(&self, node: &str, argv: &[String], input: Option<&[u8]>, timeout: Duration)
    -> Result<Output, ChannelError>;
}

impl<F> NodeChannel for F
where
    F: Fn(&str, &[String], Option<&[u8]>) -> Result<Output, ChannelError> + Send + Sync,
{
    fn run(&self, node: &str, argv: &[String], input: Option<&[u8]>, _: Duration) -> Result<Output, ChannelError> {
        self(node, argv, input)
    }
}

/// SSH to each node: the same settings for all, the address of each node from `hosts` (else the
/// node's name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshNodes {
    /// Settings shared by all nodes (its `host` is not used).
    pub settings: SshTarget,
    /// Address of each node whose name is not its address.
    pub hosts: std::collections::BTreeMap<String, String>,
}

impl SshNodes {
    /// How one node is reached.
    pub fn target(&self, node: &str) -> SshTarget {
        SshTarget { host: self.hosts.get(node).cloned().unwrap_or_else(|| node.to_string()), ..self.settings.clone() }
    }
}

impl NodeChannel for SshNodes {
    fn run(
        &self,
        node: &str,
        argv: &[String],
        input: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<Output, ChannelError> {
        self.target(node).run(argv, input, timeout)
    }
}

/// This machine, when Phoenix runs on the node itself: commands for it run here as child
/// processes, the argument vector passed as it is (no shell); commands for the cluster's other
/// nodes go to `others` (SSH, where configured) or are refused.
#[derive(Clone)]
pub struct LocalNode {
    /// This node's name.
    pub node: String,
    /// The channel to the other nodes.
    pub others: Option<std::sync::Arc<dyn NodeChannel>>,
}

impl std::fmt::Debug for LocalNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalNode").field("node", &self.node).field("others", &self.others.is_some()).finish()
    }
}

impl NodeChannel for LocalNode {
    fn run(
        &self,
        node: &str,
        argv: &[String],
        input: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<Output, ChannelError> {
        if node != self.node {
            return match &self.others {
                Some(others) => others.run(node, argv, input, timeout),
                None => Err(ChannelError::Connect {
                    host: node.to_string(),
                    message: format!(
                        "Phoenix runs on node {}, and no SSH channel (`backend.ssh`) reaches the others",
                        self.node
                    ),
                }),
            };
        }
        let (program, args) = argv.split_first().ok_or_else(|| ChannelError::Spawn("an empty command".into()))?;
        let mut command = Command::new(program);
        command.args(args);
        let out = run_captured(command, input, timeout).map_err(|e| match e {
            ProcessError::Spawn(e) | ProcessError::Wait(e) => ChannelError::Spawn(format!("{program}: {e}")),
            ProcessError::Aborted => ChannelError::Spawn(format!("{program}: {ABORTED}")),
            ProcessError::Timeout => {
                ChannelError::Timeout { host: node.to_string(), command: argv.join(" "), seconds: timeout.as_secs() }
            }
        })?;
        Ok(Output { status: out.status, stdout: out.stdout, stderr: out.stderr })
    }
}

impl SshTarget {
    fn base_args(&self) -> Vec<String> {
        let mut args = vec![
            "-p".to_string(),
            self.port.to_string(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
            "-o".into(),
            format!("UserKnownHostsFile={}", self.known_hosts.display()),
            "-o".into(),
            "GlobalKnownHostsFile=/dev/null".into(),
            "-o".into(),
            "ControlMaster=auto".into(),
            "-o".into(),
            format!("ControlPath={}/%C", self.control_dir.display()),
            "-o".into(),
            "ControlPersist=120".into(),
            "-o".into(),
            "ConnectTimeout=15".into(),
            "-o".into(),
            "LogLevel=ERROR".into(),
        ];
        if let Some(id) = &self.identity {
            args.extend(["-i".into(), id.display().to_string(), "-o".into(), "IdentitiesOnly=yes".into()]);
        }
        args.push(format!("{}@{}", self.user, self.host));
        args
    }

    /// Runs an argument vector on the node, feeding `input` on stdin (or none), with a timeout.
    pub fn run(&self, argv: &[String], input: Option<&[u8]>, timeout: Duration) -> Result<Output, ChannelError> {
        let mut args = self.base_args();
        args.push("--".into());
        args.push(remote_command(argv));
        let mut command = Command::new("ssh");
        command.args(&args);
        let out = run_captured(command, input, timeout).map_err(|e| match e {
            ProcessError::Spawn(e) | ProcessError::Wait(e) => ChannelError::Spawn(format!("ssh: {e}")),
            ProcessError::Aborted => ChannelError::Spawn(format!("ssh: {ABORTED}")),
            ProcessError::Timeout => {
                ChannelError::Timeout { host: self.host.clone(), command: argv.join(" "), seconds: timeout.as_secs() }
            }
        })?;
        let (status, stdout, stderr) = (out.status, out.stdout, out.stderr);
        if status == 255 {
            let message = String::from_utf8_lossy(&stderr).trim().to_string();
            if message.contains("Host key verification failed")
                || message.contains("No ED25519 host key is known")
                || message.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
            {
                return Err(ChannelError::HostKey {
                    host: self.host.clone(),
                    known_hosts: self.known_hosts.display().to_string(),
                });
            }
            return Err(ChannelError::Connect { host: self.host.clone(), message });
        }
        Ok(Output { status, stdout, stderr })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_a_posix_shell() {
        let argv: Vec<String> = ["printf", "%s|", "a b", "it's", "$(id)", "*", "line1\nline2", "--", "", "\\"]
            .iter()
            .map(|s| (*s).to_string())
            .collect();
        let out = Command::new("sh").arg("-c").arg(remote_command(&argv)).output().expect("sh");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "a b|it's|$(id)|*|line1\nline2|--||\\|");
        assert_eq!(
            pct_exec(950, &argv[..2])[..8],
            ["pct", "exec", "950", "--keep-env", "0", "--", "/usr/bin/env", &format!("PATH={GUEST_PATH}")]
        );
        assert_eq!(pct_push(950, "/tmp/x", "/etc/y", 0o600, 0, 0)[5..7], ["--perms", "600"]);
    }

    #[test]
    fn the_local_node_runs_argument_vectors_without_a_shell_and_hands_other_nodes_on() {
        let others: std::sync::Arc<dyn NodeChannel> =
            std::sync::Arc::new(|node: &str, argv: &[String], _: Option<&[u8]>| -> Result<Output, ChannelError> {
                Ok(Output { status: 0, stdout: format!("{node}:{}", argv.join(" ")).into_bytes(), stderr: Vec::new() })
            });
        let local = LocalNode { node: "pve1".into(), others: Some(others) };
        let argv: Vec<String> =
            ["printf", "%s|", "a b", "it's", "$(id)", "*", "--", ""].iter().map(|s| (*s).to_string()).collect();
        let out = local.run("pve1", &argv, None, Duration::from_secs(10)).expect("runs");
        assert_eq!((out.status, String::from_utf8_lossy(&out.stdout).as_ref()), (0, "a b|it's|$(id)|*|--||"));
        let cat = local.run("pve1", &["cat".to_string()], Some(b"stdin"), Duration::from_secs(10)).expect("cat");
        assert_eq!(cat.stdout, b"stdin");
        let status = local.run("pve1", &["false".to_string()], None, Duration::from_secs(10)).expect("false");
        assert_eq!(status.status, 1);
        let sleep = local.run("pve1", &["sleep".to_string(), "5".to_string()], None, Duration::from_millis(50));
        assert!(matches!(sleep, Err(ChannelError::Timeout { .. })), "{sleep:?}");
        let missing = local.run("pve1", &["/nonexistent/pct".to_string()], None, Duration::from_secs(1));
        assert!(matches!(missing, Err(ChannelError::Spawn(_))), "{missing:?}");
        let remote = local.run("pve2", &["pct".to_string(), "set".to_string()], None, Duration::from_secs(1));
        assert_eq!(remote.expect("handed on").stdout, b"pve2:pct set");
        let alone = LocalNode { node: "pve1".into(), others: None };
        let refused = alone.run("pve2", &["true".to_string()], None, Duration::from_secs(1)).expect_err("no SSH");
        assert!(refused.to_string().contains("Phoenix runs on node pve1"), "{refused}");
    }
}
