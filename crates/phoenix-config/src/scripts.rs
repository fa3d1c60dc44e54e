//! Where an `application_script` is found. Validation, plan and apply all look it up here, so
//! they agree on which file runs.
//!
//! The shell version kept its configuration in `<base>/etc/` and the scripts beside it in
//! `<base>/bin/` (later also `<base>/bin/lxc_setup/`). A script written as a relative path is
//! therefore tried, in order:
//!
//! 1. `<config dir>/<script>`
//! 2. `<config dir>/../bin/<script>`
//! 3. `<config dir>/../bin/lxc_setup/<script>`
//!
//! An absolute path is taken as given, and only there.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use crate::check::Filesystem;

/// The places an application script is looked for, in order: the path itself when it is
/// absolute; otherwise the configuration directory, then `../bin` and `../bin/lxc_setup` beside it.
pub fn script_candidates(config_dir: &Path, script: &str) -> Vec<PathBuf> {
    let written = Path::new(script);
    if written.is_absolute() {
        return vec![written.to_path_buf()];
    }
    let bin = base_of(config_dir).join("bin");
    vec![join(config_dir, written), bin.join(written), bin.join("lxc_setup").join(written)]
}

/// The first place that holds the script as a regular file, or every place looked.
pub fn find_script(config_dir: &Path, script: &str, fs: &dyn Filesystem) -> Result<PathBuf, ScriptNotFound> {
    let looked = script_candidates(config_dir, script);
    match looked.iter().find(|p| fs.is_file(p)) {
        Some(found) => Ok(found.clone()),
        None => Err(ScriptNotFound { script: script.to_string(), looked }),
    }
}

/// Where a script written with a `..` component was found, when that lies outside the
/// configuration directory and outside the shell layout's `bin` beside it (the places a script
/// is meant to be): the place, absolute and without `..`. `None` when the script is written
/// without `..`, or stays inside those places.
pub fn escapes(config_dir: &Path, script: &str, found: &Path) -> Option<PathBuf> {
    if !Path::new(script).components().any(|c| c == Component::ParentDir) {
        return None;
    }
    let found = lexical(found);
    let inside = [lexical(config_dir), lexical(&base_of(config_dir).join("bin"))];
    (!inside.iter().any(|dir| found.starts_with(dir))).then_some(found)
}

/// A path made absolute (against the working directory) with `.` and `..` folded away by name,
/// as a reader of the configuration understands it (links are not followed).
pub fn lexical(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = PathBuf::new();
    for c in absolute.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// An application script that is in none of the places it is looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptNotFound {
    /// The script as written in the configuration.
    pub script: String,
    /// Every place looked, in order.
    pub looked: Vec<PathBuf>,
}

impl ScriptNotFound {
    /// The places looked, separated by commas.
    pub fn places(&self) -> String {
        self.looked.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    }
}

impl fmt::Display for ScriptNotFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "application script \"{}\" does not exist (looked for {})", self.script, self.places())
    }
}

impl std::error::Error for ScriptNotFound {}

/// `dir/path`, without a leading `./` when the directory is the current one.
fn join(dir: &Path, path: &Path) -> PathBuf {
    if dir.as_os_str().is_empty() { path.to_path_buf() } else { dir.join(path) }
}

/// The directory holding the configuration directory (`<base>` of `<base>/etc`): its parent
/// when it ends in a name, otherwise `<dir>/..`.
fn base_of(config_dir: &Path) -> PathBuf {
    match config_dir.components().next_back() {
        Some(Component::Normal(_)) => config_dir.parent().map_or_else(PathBuf::new, Path::to_path_buf),
        Some(Component::CurDir) | None => PathBuf::from(".."),
        Some(_) => config_dir.join(".."),
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    struct Files(Vec<&'static str>);

    impl Filesystem for Files {
        fn read_to_string(&self, _: &Path) -> io::Result<String> {
            Err(io::ErrorKind::NotFound.into())
        }
        fn is_file(&self, path: &Path) -> bool {
            self.0.iter().any(|f| Path::new(f) == path)
        }
        fn is_dir(&self, _: &Path) -> bool {
            false
        }
    }

    #[test]
    fn relative_scripts_are_tried_beside_the_configuration_then_in_the_shell_layout() {
        let dir = Path::new("/usr/local/phoenix_hypervisor/etc");
        assert_eq!(
            script_candidates(dir, "app.sh"),
            [
                "/usr/local/phoenix_hypervisor/etc/app.sh",
                "/usr/local/phoenix_hypervisor/bin/app.sh",
                "/usr/local/phoenix_hypervisor/bin/lxc_setup/app.sh",
            ]
            .map(PathBuf::from)
        );
        assert_eq!(script_candidates(Path::new("."), "a/x.sh")[1], PathBuf::from("../bin/a/x.sh"));
        assert_eq!(script_candidates(Path::new("etc"), "x.sh")[1], PathBuf::from("bin/x.sh"));
        assert_eq!(script_candidates(Path::new("/srv/cfg/.."), "x.sh")[1], PathBuf::from("/srv/cfg/../../bin/x.sh"));
        assert_eq!(script_candidates(dir, "/opt/x.sh"), [PathBuf::from("/opt/x.sh")]);
    }

    #[test]
    fn the_first_place_that_has_it_wins() {
        let dir = Path::new("/base/etc");
        let both = Files(vec!["/base/bin/x.sh", "/base/bin/lxc_setup/x.sh"]);
        assert_eq!(find_script(dir, "x.sh", &both), Ok(PathBuf::from("/base/bin/x.sh")));
        let setup = Files(vec!["/base/bin/lxc_setup/x.sh"]);
        assert_eq!(find_script(dir, "x.sh", &setup), Ok(PathBuf::from("/base/bin/lxc_setup/x.sh")));
        let here = Files(vec!["/base/etc/x.sh", "/base/bin/x.sh"]);
        assert_eq!(find_script(dir, "x.sh", &here), Ok(PathBuf::from("/base/etc/x.sh")));
    }

    #[test]
    fn a_missing_script_names_every_place_looked() {
        let err = find_script(Path::new("/base/etc"), "x.sh", &Files(Vec::new())).expect_err("missing");
        assert_eq!(err.looked.len(), 3);
        assert_eq!(
            err.to_string(),
            "application script \"x.sh\" does not exist (looked for /base/etc/x.sh, /base/bin/x.sh, /base/bin/lxc_setup/x.sh)"
        );
    }

    #[test]
    fn a_script_written_with_dot_dot_escapes_when_it_leaves_the_configuration_and_its_bin() {
        let dir = Path::new("/base/etc");
        let escapes = |script: &str| escapes(dir, script, &script_candidates(dir, script)[0]);
        assert_eq!(escapes("../../../../etc/passwd"), Some(PathBuf::from("/etc/passwd")));
        assert_eq!(escapes("../other/x.sh"), Some(PathBuf::from("/base/other/x.sh")));
        assert_eq!(escapes("scripts/../x.sh"), None);
        assert_eq!(escapes("../bin/x.sh"), None);
        assert_eq!(escapes("../etc/x.sh"), None);
        assert_eq!(escapes("/opt/../etc/shadow"), Some(PathBuf::from("/etc/shadow")));
        // Absolute paths are documented: only `..` is remarked on.
        assert_eq!(escapes("/etc/shadow"), None);
        assert_eq!(lexical(Path::new("/a/./b/../../../c")), PathBuf::from("/c"));
    }
}
