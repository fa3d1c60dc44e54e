//! The recording test double: an in-memory file tree, commands answered by handlers the test
//! gives (which may change the tree, as `useradd` changes `/etc/passwd`), and a log of every call.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use crate::host::{Host, HostError, Ids, Invocation, Meta, Output};

/// One thing at a path of the double's tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A file.
    File {
        /// Content.
        data: Vec<u8>,
        /// Permission bits.
        mode: u32,
        /// Owner.
        ids: Ids,
    },
    /// A directory.
    Dir {
        /// Permission bits.
        mode: u32,
        /// Owner.
        ids: Ids,
    },
    /// A symbolic link.
    Link(PathBuf),
}

/// The double's file tree.
pub type Tree = BTreeMap<PathBuf, Node>;

/// A call the double saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A read (file, link or metadata).
    Read(PathBuf),
    /// A look-up of a program.
    Which(String),
    /// A read-only command (its command line; standard input is never logged).
    Probe(String),
    /// A command that may change the host.
    Run(String),
    /// A file written.
    Write(PathBuf),
    /// A rename.
    Rename(PathBuf, PathBuf),
    /// A removal.
    Remove(PathBuf),
    /// A link made.
    Symlink(PathBuf),
    /// A directory made.
    Mkdir(PathBuf),
}

impl Event {
    /// Whether the call changed (or could have changed) the host.
    pub fn is_change(&self) -> bool {
        !matches!(self, Event::Read(_) | Event::Which(_) | Event::Probe(_))
    }
}

/// How the double answers a command: it may change the tree.
pub type Handler = dyn Fn(&Invocation, &mut Tree) -> Output + Send + Sync;

/// The recording host.
#[derive(Default)]
pub struct RecordingHost {
    tree: Mutex<Tree>,
    log: Mutex<Vec<Event>>,
    handlers: BTreeMap<String, Box<Handler>>,
    stdin: Mutex<Vec<Vec<u8>>>,
}

const ROOT: Ids = Ids { uid: 0, gid: 0 };

impl RecordingHost {
    /// An empty host.
    pub fn new() -> RecordingHost {
        RecordingHost::default()
    }

    /// With a file (root's, mode 0644).
    pub fn file(self, path: &str, data: &str) -> RecordingHost {
        let parent = Path::new(path).parent().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
        let this = if parent.len() > 1 { self.dirs(&[&parent]) } else { self };
        this.tree_mut().insert(path.into(), Node::File { data: data.as_bytes().to_vec(), mode: 0o644, ids: ROOT });
        this
    }

    /// With a program, answered by `handler`.
    pub fn program(
        mut self,
        name: &str,
        handler: impl Fn(&Invocation, &mut Tree) -> Output + Send + Sync + 'static,
    ) -> RecordingHost {
        self.handlers.insert(name.to_string(), Box::new(handler));
        self
    }

    /// With a program that always succeeds and prints nothing.
    pub fn ok_program(self, name: &str) -> RecordingHost {
        self.program(name, |_, _| Output::default())
    }

    fn tree_mut(&self) -> std::sync::MutexGuard<'_, Tree> {
        self.tree.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record(&self, e: Event) {
        self.log.lock().unwrap_or_else(PoisonError::into_inner).push(e);
    }

    /// Every call so far.
    pub fn log(&self) -> Vec<Event> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The calls so far that changed, or could have changed, the host.
    pub fn changes(&self) -> Vec<Event> {
        self.log().into_iter().filter(Event::is_change).collect()
    }

    /// Forgets the calls so far.
    pub fn clear_log(&self) {
        self.log.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }

    /// Standard inputs passed to commands (for tests that check a secret went only there).
    pub fn stdins(&self) -> Vec<Vec<u8>> {
        self.stdin.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// A copy of the tree.
    pub fn tree(&self) -> Tree {
        self.tree_mut().clone()
    }

    /// A file's content as text.
    pub fn text(&self, path: &str) -> Option<String> {
        match self.tree_mut().get(Path::new(path)) {
            Some(Node::File { data, .. }) => Some(String::from_utf8_lossy(data).into_owned()),
            _ => None,
        }
    }

    fn ensure_parent(tree: &mut Tree, path: &Path) -> Result<(), HostError> {
        match path.parent() {
            None => Ok(()),
            Some(p) if p == Path::new("/") => Ok(()),
            Some(p) => match tree.get(p) {
                Some(Node::Dir { .. }) => Ok(()),
                _ => Err(HostError::new(format!("cannot write {}: no directory {}", path.display(), p.display()))),
            },
        }
    }
}

impl Host for RecordingHost {
    fn read(&self, path: &Path) -> Result<Option<Vec<u8>>, HostError> {
        self.record(Event::Read(path.into()));
        let tree = self.tree_mut();
        let mut at = path.to_path_buf();
        for _ in 0..8 {
            match tree.get(&at) {
                Some(Node::File { data, .. }) => return Ok(Some(data.clone())),
                Some(Node::Link(t)) => at = t.clone(),
                Some(Node::Dir { .. }) => {
                    return Err(HostError::new(format!("cannot read {}: a directory", path.display())));
                }
                None => return Ok(None),
            }
        }
        Ok(None)
    }

    fn read_link(&self, path: &Path) -> Result<Option<PathBuf>, HostError> {
        self.record(Event::Read(path.into()));
        Ok(match self.tree_mut().get(path) {
            Some(Node::Link(t)) => Some(t.clone()),
            _ => None,
        })
    }

    fn stat(&self, path: &Path) -> Result<Option<Meta>, HostError> {
        self.record(Event::Read(path.into()));
        Ok(self.tree_mut().get(path).map(|n| match n {
            Node::File { mode, ids, .. } => {
                Meta { dir: false, symlink: false, mode: *mode, uid: ids.uid, gid: ids.gid }
            }
            Node::Dir { mode, ids } => Meta { dir: true, symlink: false, mode: *mode, uid: ids.uid, gid: ids.gid },
            Node::Link(_) => Meta { dir: false, symlink: true, mode: 0o777, uid: 0, gid: 0 },
        }))
    }

    fn has_program(&self, program: &str) -> bool {
        self.record(Event::Which(program.into()));
        self.handlers.contains_key(program)
    }

    fn run(&self, cmd: &Invocation) -> Result<Output, HostError> {
        self.record(if cmd.probe { Event::Probe(cmd.display()) } else { Event::Run(cmd.display()) });
        if let Some(input) = &cmd.stdin {
            self.stdin.lock().unwrap_or_else(PoisonError::into_inner).push(input.0.clone());
        }
        match self.handlers.get(&cmd.program) {
            Some(h) => Ok(h(cmd, &mut self.tree_mut())),
            None => Err(HostError::new(format!("cannot run {}: not found", cmd.program))),
        }
    }

    fn write(&self, path: &Path, contents: &[u8], mode: u32, ids: Option<Ids>) -> Result<(), HostError> {
        self.record(Event::Write(path.into()));
        let mut tree = self.tree_mut();
        Self::ensure_parent(&mut tree, path)?;
        tree.insert(path.into(), Node::File { data: contents.to_vec(), mode, ids: ids.unwrap_or(ROOT) });
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<(), HostError> {
        self.record(Event::Rename(from.into(), to.into()));
        let mut tree = self.tree_mut();
        let node =
            tree.remove(from).ok_or_else(|| HostError::new(format!("cannot rename {}: missing", from.display())))?;
        tree.insert(to.into(), node);
        Ok(())
    }

    fn remove(&self, path: &Path) -> Result<(), HostError> {
        self.record(Event::Remove(path.into()));
        self.tree_mut()
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| HostError::new(format!("cannot remove {}: missing", path.display())))
    }

    fn symlink(&self, target: &Path, link: &Path) -> Result<(), HostError> {
        self.record(Event::Symlink(link.into()));
        let mut tree = self.tree_mut();
        Self::ensure_parent(&mut tree, link)?;
        tree.insert(link.into(), Node::Link(target.into()));
        Ok(())
    }

    fn mkdir(&self, path: &Path, mode: u32, ids: Option<Ids>) -> Result<(), HostError> {
        self.record(Event::Mkdir(path.into()));
        let mut tree = self.tree_mut();
        for a in path.ancestors().filter(|a| *a != Path::new("/") && !a.as_os_str().is_empty()) {
            if !tree.contains_key(a) {
                tree.insert(a.into(), Node::Dir { mode: 0o755, ids: ROOT });
            }
        }
        tree.insert(path.into(), Node::Dir { mode, ids: ids.unwrap_or(ROOT) });
        Ok(())
    }
}

impl RecordingHost {
    /// With directories (root's, mode 0755), parents included.
    pub fn dirs(self, paths: &[&str]) -> RecordingHost {
        {
            let mut tree = self.tree_mut();
            for p in paths {
                for a in Path::new(p).ancestors().filter(|a| *a != Path::new("/") && !a.as_os_str().is_empty()) {
                    tree.entry(a.into()).or_insert(Node::Dir { mode: 0o755, ids: ROOT });
                }
            }
        }
        self
    }
}
