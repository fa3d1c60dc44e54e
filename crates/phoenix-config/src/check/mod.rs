//! Semantic checks over the typed configuration: what the schema alone cannot say.

mod control;
mod guests;
mod host;
mod network;
mod parameters;

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

use crate::diagnostic::{Code, Diagnostic};
use crate::estate::{Estate, Guest, GuestId};
use crate::features::Catalog;
use crate::model::Backend;
use crate::path::JsonPath;
use crate::source::{FileKind, Sources};
use crate::suggest::closest;

pub(crate) use control::check_control_characters;

/// The file reads validation needs: the configuration files, and whether paths they name exist.
/// Tests pass an in-memory implementation; the CLI passes [`RealFilesystem`].
pub trait Filesystem {
    /// Reads a file as UTF-8 text.
    fn read_to_string(&self, path: &Path) -> io::Result<String>;
    /// Whether a path is an existing regular file (following links).
    fn is_file(&self, path: &Path) -> bool;
    /// Whether a path is an existing directory.
    fn is_dir(&self, path: &Path) -> bool;
    /// What is at a path that is not an existing regular file, found without opening it (a FIFO
    /// would block the reader): `Some("a directory")`, `Some("a named pipe (FIFO)")`, `Some("a
    /// link to nothing")`, ...; `None` when nothing is there. By default a directory or nothing.
    fn other_kind(&self, path: &Path) -> Option<&'static str> {
        self.is_dir(path).then_some("a directory")
    }
    /// The entries of a directory (feature directories are found this way). A file system that
    /// holds no directories to list need not provide it: by default it is unsupported.
    fn read_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        Err(io::Error::new(io::ErrorKind::Unsupported, format!("cannot list {}", path.display())))
    }
}

/// The machine's file system, read-only.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealFilesystem;

impl Filesystem for RealFilesystem {
    fn read_to_string(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn is_file(&self, path: &Path) -> bool {
        path.is_file()
    }

    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }

    fn other_kind(&self, path: &Path) -> Option<&'static str> {
        use std::os::unix::fs::FileTypeExt;
        let link = std::fs::symlink_metadata(path).ok()?;
        let Ok(meta) = std::fs::metadata(path) else {
            return Some(if link.file_type().is_symlink() {
                "a link to nothing (or to a place it cannot reach)"
            } else {
                "unreadable"
            });
        };
        let t = meta.file_type();
        Some(if t.is_dir() {
            "a directory"
        } else if t.is_fifo() {
            "a named pipe (FIFO)"
        } else if t.is_socket() {
            "a socket"
        } else if t.is_char_device() || t.is_block_device() {
            "a device"
        } else if t.is_file() {
            return None;
        } else {
            "not a regular file"
        })
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        std::fs::read_dir(path)?.map(|e| e.map(|e| e.path())).collect()
    }
}

/// What the checks share: the estate, where files are, and the diagnostics found so far.
pub(crate) struct Ctx<'a> {
    pub estate: &'a Estate,
    /// The features guests may name.
    pub catalog: &'a Catalog,
    /// Where the features' parameter values come from.
    pub feature_values: &'a crate::feature_values::FeatureValues,
    pub sources: &'a Sources,
    pub fs: &'a dyn Filesystem,
    /// IDs of guests left out of the estate because their definitions have errors: references
    /// to them are not reported again.
    pub incomplete: BTreeSet<String>,
    /// Guests whose ID another guest already has: not in the estate, but still checked.
    pub shadowed: &'a [Guest],
    /// The hypervisor file was read, so an absent section really is absent.
    pub hypervisor_read: bool,
    pub out: Vec<Diagnostic>,
}

impl<'a> Ctx<'a> {
    /// Runs every semantic check.
    pub fn run(&mut self) {
        for guest in self.estate.guests.values().chain(self.shadowed) {
            guests::check_guest(self, guest);
        }
        network::check_addresses(self);
        host::check_host(self);
        let settings = &self.estate.hypervisor.feature_settings;
        parameters::check_settings(
            self,
            crate::source::FileKind::Hypervisor,
            &crate::path::JsonPath::root().key("feature_settings"),
            settings,
            None,
        );
    }

    fn push(&mut self, d: Diagnostic) {
        self.out.push(d);
    }

    /// Whether the backend runs on this machine, so host paths in the files are local paths.
    fn backend_is_local(&self) -> bool {
        match &self.estate.hypervisor.backend {
            Some(Backend::Lxc(_)) => true,
            Some(Backend::Proxmox(p)) => p.via == crate::model::ApiRoute::Pvesh,
            None => false,
        }
    }

    /// Parses a guest reference, reporting an unknown one with a suggestion.
    fn guest_by_ref(&self, text: &str) -> Option<&'a Guest> {
        text.parse::<GuestId>().ok().and_then(|id| self.estate.guests.get(&id))
    }

    /// Whether a reference names a guest whose definition has errors of its own.
    fn is_incomplete(&self, text: &str) -> bool {
        self.incomplete.contains(text)
    }

    /// A hint naming the closest existing guest ID, if one is close.
    fn id_suggestion(&self, text: &str) -> Option<String> {
        let ids: Vec<String> = self.estate.guests.keys().map(ToString::to_string).collect();
        closest(text, ids.iter().map(String::as_str)).map(|c| {
            format!("did you mean {c} ({})?", self.estate.guests[&c.parse::<GuestId>().unwrap_or_default()].name())
        })
    }

    /// Reports a path that must be absolute.
    fn require_absolute(&mut self, file: FileKind, path: JsonPath, what: &str, value: &str) -> bool {
        if value.starts_with('/') {
            return true;
        }
        self.push(
            Diagnostic::error(Code::Mount, file, path, format!("{what} \"{value}\" is not an absolute path"))
                .hint(format!("write the full path, starting with `/`, e.g. \"/{}\"", value.trim_start_matches("./"))),
        );
        false
    }

    /// Reports an application script found in none of the places it is looked for
    /// ([`crate::scripts::find_script`]), naming each of them. A script written with `..` that leaves the configuration directory (and the shell layout's
    /// `bin`) is run all the same, with a warning that says which file it is.
    fn require_script(&mut self, file: FileKind, path: JsonPath, script: &str) {
        let dir = &self.sources.dir;
        match crate::scripts::find_script(dir, script, self.fs) {
            Ok(found) => {
                if let Some(outside) = crate::scripts::escapes(dir, script, &found) {
                    self.push(
                        Diagnostic::warning(
                            Code::PathEscape,
                            file,
                            path,
                            format!(
                                "application script \"{script}\" is {}, outside the configuration directory: \
                                 apply copies it into the guest and runs it as root",
                                outside.display()
                            ),
                        )
                        .hint("keep scripts in the configuration directory, or write the path you mean without `..`"),
                    );
                }
            }
            Err(missing) => self.push(Diagnostic::error(Code::FileNotFound, file, path, missing.to_string()).hint(
                if script.starts_with('/') {
                    "check the path, or create the file"
                } else {
                    "relative scripts are looked for in the configuration directory, then in `../bin` and \
                         `../bin/lxc_setup` beside it; check the name, or create the file"
                },
            )),
        }
    }

    /// Reports a local file that does not exist.
    fn require_file(&mut self, file: FileKind, path: JsonPath, what: &str, value: &str) {
        let resolved = self.sources.resolve(value);
        if !self.fs.is_file(&resolved) {
            let looked = if resolved.as_os_str() == value {
                String::new()
            } else {
                format!(" (looked for {})", resolved.display())
            };
            self.push(
                Diagnostic::error(Code::FileNotFound, file, path, format!("{what} \"{value}\" does not exist{looked}"))
                    .hint(if value.starts_with('/') {
                        "check the path, or create the file"
                    } else {
                        "relative paths are read from the configuration directory; check the name, or create the file"
                    }),
            );
        }
    }
}
