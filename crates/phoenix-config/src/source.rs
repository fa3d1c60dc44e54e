//! The configuration files as read: their kind, display path, text and line index.

use std::fmt;
use std::path::{Path, PathBuf};

/// The three configuration files Phoenix reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    /// `phoenix_hypervisor_config.json`
    Hypervisor,
    /// `phoenix_lxc_configs.json`
    Lxc,
    /// `phoenix_vm_configs.json`
    Vm,
}

impl FileKind {
    /// All kinds, in the order they are read and reported.
    pub const ALL: [FileKind; 3] = [FileKind::Hypervisor, FileKind::Lxc, FileKind::Vm];

    /// The file's name in the configuration directory.
    pub fn file_name(self) -> &'static str {
        match self {
            FileKind::Hypervisor => "phoenix_hypervisor_config.json",
            FileKind::Lxc => "phoenix_lxc_configs.json",
            FileKind::Vm => "phoenix_vm_configs.json",
        }
    }

    /// The short name used on the command line (`phoenix schema lxc`).
    pub fn short_name(self) -> &'static str {
        match self {
            FileKind::Hypervisor => "hypervisor",
            FileKind::Lxc => "lxc",
            FileKind::Vm => "vm",
        }
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.file_name())
    }
}

/// A byte range in a file's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// A span from `start` to `end`.
    pub fn new(start: usize, end: usize) -> Span {
        Span { start, end }
    }
}

/// One configuration file's text, with what is needed to turn byte offsets into lines and columns.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Which file this is.
    pub kind: FileKind,
    /// The path shown to the user.
    pub path: PathBuf,
    /// The file's text.
    pub text: String,
    line_starts: Vec<usize>,
}

impl SourceFile {
    /// A file of the given kind with its display path and text.
    pub fn new(kind: FileKind, path: impl Into<PathBuf>, text: impl Into<String>) -> SourceFile {
        let text = text.into();
        let line_starts = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
        SourceFile { kind, path: path.into(), text, line_starts }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset) - 1;
        let start = self.line_starts[line];
        let column = self.text.get(start..offset).map_or(offset - start, |s| s.chars().count());
        (line + 1, column + 1)
    }

    /// The text of a 1-based line, without its line break.
    pub fn line_text(&self, line: usize) -> &str {
        let Some(&start) = self.line_starts.get(line.wrapping_sub(1)) else { return "" };
        let end = self.line_starts.get(line).map_or(self.text.len(), |&e| e);
        self.text[start..end].trim_end_matches(['\n', '\r'])
    }
}

/// The configuration directory as read: the files found in it.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The configuration directory (relative paths in the files resolve against it).
    pub dir: PathBuf,
    /// The files present, at most one per kind.
    pub files: Vec<SourceFile>,
}

impl Sources {
    /// Sources for `dir` with the given files.
    pub fn new(dir: impl Into<PathBuf>, files: Vec<SourceFile>) -> Sources {
        Sources { dir: dir.into(), files }
    }

    /// The file of a kind, if present.
    pub fn get(&self, kind: FileKind) -> Option<&SourceFile> {
        self.files.iter().find(|f| f.kind == kind)
    }

    /// Resolves a path written in a file: absolute paths stay, relative ones join the directory.
    pub fn resolve(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        if p.is_absolute() { p.to_path_buf() } else { self.dir.join(p) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_count_characters() {
        let f = SourceFile::new(FileKind::Lxc, "x.json", "{\n  \"né\": 1\n}");
        assert_eq!(f.line_col(0), (1, 1));
        assert_eq!(f.line_col(2), (2, 1));
        // The `1` after the two-byte `é`.
        let one = f.text.find('1').unwrap_or_default();
        assert_eq!(f.line_col(one), (2, 9));
        assert_eq!(f.line_text(2), "  \"né\": 1");
        assert_eq!(f.line_text(9), "");
    }
}
