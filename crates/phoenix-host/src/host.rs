//! The execution layer: every read, write and command of host setup goes through a [`Host`].
//!
//! [`RealHost`] works on this machine, optionally rooted at a prefix directory (tests, images);
//! [`ReadOnly`] wraps any host and refuses every change, which is how planning and `--dry-run`
//! are kept from changing anything; [`crate::double::RecordingHost`] is the test double.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// What went wrong on the host: what, and where (path or command), never a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct HostError {
    /// What went wrong.
    pub message: String,
    /// More detail (a command's standard error, say).
    pub detail: Option<String>,
}

impl HostError {
    /// An error with a message only.
    pub fn new(message: impl Into<String>) -> HostError {
        HostError { message: message.into(), detail: None }
    }

    /// An error with detail.
    pub fn with_detail(message: impl Into<String>, detail: impl Into<String>) -> HostError {
        HostError { message: message.into(), detail: Some(detail.into()) }
    }

    fn io(what: &str, path: &Path, e: &std::io::Error) -> HostError {
        HostError::new(format!("cannot {what} {}: {e}", path.display()))
    }
}

/// One argument of a command: text, or a path on the host (which a rooted host maps).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Arg {
    /// Passed as it is.
    Text(String),
    /// A path on the host.
    Path(PathBuf),
}

impl std::fmt::Display for Arg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Arg::Text(t) => f.write_str(t),
            Arg::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Bytes that may hold a secret: passed to a command's standard input, never printed or logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Sensitive(pub Vec<u8>);

impl std::fmt::Debug for Sensitive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} hidden bytes>", self.0.len())
    }
}

/// A command as it is run: a program and its argv (never a shell string), standard input, and
/// whether it only reads (a probe) or may change the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// The program, looked up in `PATH`.
    pub program: String,
    /// Its arguments.
    pub args: Vec<Arg>,
    /// Standard input (may hold a secret).
    pub stdin: Option<Sensitive>,
    /// True when it only reads the host: allowed while planning and in a dry run.
    pub probe: bool,
}

impl Invocation {
    /// A read-only command.
    pub fn probe(program: &str, args: &[&str]) -> Invocation {
        Invocation {
            program: program.to_string(),
            args: args.iter().map(|a| Arg::Text((*a).to_string())).collect(),
            stdin: None,
            probe: true,
        }
    }

    /// The command line for people: `program arg arg` (standard input is never shown).
    pub fn display(&self) -> String {
        std::iter::once(self.program.clone())
            .chain(self.args.iter().map(ToString::to_string))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// What a command did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Output {
    /// Exit status (`-1` when killed by a signal).
    pub status: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Output {
    /// Whether it exited 0.
    pub fn success(&self) -> bool {
        self.status == 0
    }
}

/// Mode and owner of a file or directory Phoenix writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attrs {
    /// Permission bits, e.g. `0o644`.
    pub mode: u32,
    /// Owner by name, resolved from the host's `/etc/passwd` and `/etc/group` when written;
    /// `None` keeps the writer's (root).
    pub owner: Option<Owner>,
}

impl Attrs {
    /// Root's, with this mode.
    pub fn root(mode: u32) -> Attrs {
        Attrs { mode, owner: None }
    }
}

/// An owner by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Owner {
    /// User name.
    pub user: String,
    /// Group name.
    pub group: String,
}

/// Numeric owner, as a host applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ids {
    /// User ID.
    pub uid: u32,
    /// Group ID.
    pub gid: u32,
}

/// What is at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// A directory.
    pub dir: bool,
    /// A symbolic link (not followed).
    pub symlink: bool,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// The host as host setup sees it. Paths are absolute paths on the host.
pub trait Host {
    /// A file's content; `None` when there is nothing at the path.
    fn read(&self, path: &Path) -> Result<Option<Vec<u8>>, HostError>;
    /// A symbolic link's target; `None` when the path is not a link.
    fn read_link(&self, path: &Path) -> Result<Option<PathBuf>, HostError>;
    /// What is at a path (links not followed); `None` when nothing is.
    fn stat(&self, path: &Path) -> Result<Option<Meta>, HostError>;
    /// Whether a program is found in `PATH`.
    fn has_program(&self, program: &str) -> bool;
    /// Runs a command and captures its output (a non-zero exit is an `Ok` output).
    fn run(&self, cmd: &Invocation) -> Result<Output, HostError>;
    /// Writes a file atomically (a temporary file in the same directory, renamed into place)
    /// with this mode and owner.
    fn write(&self, path: &Path, contents: &[u8], mode: u32, ids: Option<Ids>) -> Result<(), HostError>;
    /// Renames a file (atomic on one file system).
    fn rename(&self, from: &Path, to: &Path) -> Result<(), HostError>;
    /// Removes a file or link.
    fn remove(&self, path: &Path) -> Result<(), HostError>;
    /// Makes (or atomically replaces) a symbolic link at `link` pointing to `target`.
    fn symlink(&self, target: &Path, link: &Path) -> Result<(), HostError>;
    /// Makes a directory (and its parents) with this mode and owner; an existing one gets them.
    fn mkdir(&self, path: &Path, mode: u32, ids: Option<Ids>) -> Result<(), HostError>;

    /// A file's content as text; `None` when there is nothing at the path.
    fn read_text(&self, path: &Path) -> Result<Option<String>, HostError> {
        Ok(self.read(path)?.map(|b| String::from_utf8_lossy(&b).into_owned()))
    }
    /// Whether anything is at a path.
    fn exists(&self, path: &Path) -> Result<bool, HostError> {
        Ok(self.stat(path)?.is_some())
    }
}

/// A command that may change the host refused by a [`ReadOnly`] host.
pub const READ_ONLY_REFUSAL: &str = "refused: planning and --dry-run change nothing";

/// A host that reads and probes, and refuses every change: planning runs on it, so a plan (and
/// `--dry-run`) cannot change the host even through a bug in a module.
pub struct ReadOnly<'a>(pub &'a dyn Host);

impl ReadOnly<'_> {
    fn refuse<T>(what: &str, path: &Path) -> Result<T, HostError> {
        Err(HostError::new(format!("{READ_ONLY_REFUSAL}: {what} {}", path.display())))
    }
}

impl Host for ReadOnly<'_> {
    fn read(&self, path: &Path) -> Result<Option<Vec<u8>>, HostError> {
        self.0.read(path)
    }
    fn read_link(&self, path: &Path) -> Result<Option<PathBuf>, HostError> {
        self.0.read_link(path)
    }
    fn stat(&self, path: &Path) -> Result<Option<Meta>, HostError> {
        self.0.stat(path)
    }
    fn has_program(&self, program: &str) -> bool {
        self.0.has_program(program)
    }
    fn run(&self, cmd: &Invocation) -> Result<Output, HostError> {
        if cmd.probe { self.0.run(cmd) } else { Err(HostError::new(format!("{READ_ONLY_REFUSAL}: {}", cmd.display()))) }
    }
    fn write(&self, path: &Path, _: &[u8], _: u32, _: Option<Ids>) -> Result<(), HostError> {
        Self::refuse("write", path)
    }
    fn rename(&self, from: &Path, _: &Path) -> Result<(), HostError> {
        Self::refuse("rename", from)
    }
    fn remove(&self, path: &Path) -> Result<(), HostError> {
        Self::refuse("remove", path)
    }
    fn symlink(&self, _: &Path, link: &Path) -> Result<(), HostError> {
        Self::refuse("link", link)
    }
    fn mkdir(&self, path: &Path, _: u32, _: Option<Ids>) -> Result<(), HostError> {
        Self::refuse("make directory", path)
    }
}

/// Answers a command instead of running it (`None`: run it for real). For tests on a rooted host.
pub type Stub = dyn Fn(&Invocation) -> Option<Output> + Send + Sync;

/// This machine, seen from a root directory (`/` for the host itself): every path, including
/// [`Arg::Path`] arguments of commands, is taken below the root. Programs are those of this
/// machine.
pub struct RealHost {
    root: PathBuf,
    stub: Option<Box<Stub>>,
}

impl RealHost {
    /// The host itself.
    pub fn system() -> RealHost {
        RealHost { root: PathBuf::from("/"), stub: None }
    }

    /// The tree below `root`, as if it were `/`.
    pub fn rooted(root: impl Into<PathBuf>) -> RealHost {
        RealHost { root: root.into(), stub: None }
    }

    /// Commands this function answers are not run.
    pub fn with_stub(mut self, stub: impl Fn(&Invocation) -> Option<Output> + Send + Sync + 'static) -> RealHost {
        self.stub = Some(Box::new(stub));
        self
    }

    /// Where a host path is on this machine.
    pub fn map(&self, path: &Path) -> PathBuf {
        match path.strip_prefix("/") {
            Ok(rel) => self.root.join(rel),
            Err(_) => self.root.join(path),
        }
    }

    fn temp_beside(path: &Path) -> PathBuf {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        path.with_file_name(format!(".{name}.phoenix-tmp-{}", std::process::id()))
    }
}

fn chown(path: &Path, ids: Option<Ids>) -> Result<(), HostError> {
    if let Some(ids) = ids {
        std::os::unix::fs::lchown(path, Some(ids.uid), Some(ids.gid)).map_err(|e| HostError::io("chown", path, &e))?;
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<(), HostError> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| HostError::io("chmod", path, &e))
}

impl Host for RealHost {
    fn read(&self, path: &Path) -> Result<Option<Vec<u8>>, HostError> {
        match std::fs::read(self.map(path)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(HostError::io("read", path, &e)),
        }
    }

    fn read_link(&self, path: &Path) -> Result<Option<PathBuf>, HostError> {
        match std::fs::read_link(self.map(path)) {
            Ok(t) => Ok(Some(t)),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::InvalidInput) => Ok(None),
            Err(e) => Err(HostError::io("read the link", path, &e)),
        }
    }

    fn stat(&self, path: &Path) -> Result<Option<Meta>, HostError> {
        use std::os::unix::fs::MetadataExt as _;
        match std::fs::symlink_metadata(self.map(path)) {
            Ok(m) => Ok(Some(Meta {
                dir: m.is_dir(),
                symlink: m.file_type().is_symlink(),
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(HostError::io("stat", path, &e)),
        }
    }

    fn has_program(&self, program: &str) -> bool {
        if let Some(stub) = &self.stub
            && let Some(out) = stub(&Invocation::probe("command", &["-v", program]))
        {
            return out.success();
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path).chain(["/usr/sbin".into(), "/sbin".into()]).any(|d| d.join(program).is_file())
    }

    fn run(&self, cmd: &Invocation) -> Result<Output, HostError> {
        if let Some(stub) = &self.stub
            && let Some(out) = stub(cmd)
        {
            return Ok(out);
        }
        let mut c = std::process::Command::new(&cmd.program);
        for a in &cmd.args {
            match a {
                Arg::Text(t) => c.arg(t),
                Arg::Path(p) => c.arg(self.map(p)),
            };
        }
        // Output is parsed: keep it in one language.
        c.env("LC_ALL", "C").stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        c.stdin(if cmd.stdin.is_some() { std::process::Stdio::piped() } else { std::process::Stdio::null() });
        let mut child = c.spawn().map_err(|e| HostError::new(format!("cannot run {}: {e}", cmd.program)))?;
        if let (Some(input), Some(mut pipe)) = (&cmd.stdin, child.stdin.take()) {
            pipe.write_all(&input.0).map_err(|e| HostError::new(format!("cannot write to {}: {e}", cmd.program)))?;
        }
        let out = child.wait_with_output().map_err(|e| HostError::new(format!("cannot run {}: {e}", cmd.program)))?;
        Ok(Output {
            status: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    fn write(&self, path: &Path, contents: &[u8], mode: u32, ids: Option<Ids>) -> Result<(), HostError> {
        let target = self.map(path);
        let tmp = Self::temp_beside(&target);
        let result = (|| {
            let mut f = std::fs::File::create(&tmp).map_err(|e| HostError::io("write", path, &e))?;
            f.write_all(contents).map_err(|e| HostError::io("write", path, &e))?;
            f.sync_all().map_err(|e| HostError::io("write", path, &e))?;
            set_mode(&tmp, mode)?;
            chown(&tmp, ids)?;
            std::fs::rename(&tmp, &target).map_err(|e| HostError::io("write", path, &e))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<(), HostError> {
        std::fs::rename(self.map(from), self.map(to)).map_err(|e| HostError::io("rename", from, &e))
    }

    fn remove(&self, path: &Path) -> Result<(), HostError> {
        std::fs::remove_file(self.map(path)).map_err(|e| HostError::io("remove", path, &e))
    }

    fn symlink(&self, target: &Path, link: &Path) -> Result<(), HostError> {
        let at = self.map(link);
        let tmp = Self::temp_beside(&at);
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(target, &tmp).map_err(|e| HostError::io("link", link, &e))?;
        std::fs::rename(&tmp, &at).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            HostError::io("link", link, &e)
        })
    }

    fn mkdir(&self, path: &Path, mode: u32, ids: Option<Ids>) -> Result<(), HostError> {
        let at = self.map(path);
        std::fs::create_dir_all(&at).map_err(|e| HostError::io("make the directory", path, &e))?;
        set_mode(&at, mode)?;
        chown(&at, ids)
    }
}
