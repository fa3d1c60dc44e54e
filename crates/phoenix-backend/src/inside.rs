//! Reading and writing files inside a guest through a command run inside it, so that links in
//! the guest resolve inside the guest and can never make the host write elsewhere. Backends run
//! these argument vectors with their own exec (`lxc-attach`, `pct exec`, the guest agent).

use crate::FilePush;

/// Where a guest's customization record (its markers: JSON, customization key → hash) lives
/// inside it, where the backend keeps it there (see [`crate::Backend::read_markers`]).
pub const MARKERS_PATH: &str = "/var/lib/phoenix/markers.json";

/// The exit status of [`read_command`] when the file does not exist.
pub const MISSING: i32 = 3;

/// The exit status of [`read_command`] when the path is not a regular file (a FIFO, which `cat`
/// would wait on for ever; a directory; a device).
pub const NOT_A_FILE: i32 = 4;

/// The most [`read_command`] prints of a file: a guest's huge file does not fill Phoenix's memory.
pub const READ_LIMIT: u64 = 4 << 20;

/// Prints a file (at most [`READ_LIMIT`] bytes), or exits with [`MISSING`] when it does not exist
/// and [`NOT_A_FILE`] when it is not a regular file.
pub fn read_command(path: &str) -> Vec<String> {
    let script = format!(
        "test -e \"$1\" || test -L \"$1\" || exit {MISSING}; test -f \"$1\" || exit {NOT_A_FILE}; head -c {} -- \"$1\"",
        READ_LIMIT + 1
    );
    ["/bin/sh", "-c", script.as_str(), "phoenix-read", path].iter().map(|s| (*s).to_string()).collect()
}

/// Why [`read_command`] could not read a file that exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The file is larger than [`READ_LIMIT`].
    #[error("{path} is larger than the {READ_LIMIT} bytes read")]
    TooLarge {
        /// The file.
        path: String,
    },
    /// The path is not a regular file (a FIFO, a directory, a device).
    #[error("{path} is not a regular file")]
    NotAFile {
        /// The path.
        path: String,
    },
    /// The command failed: its exit status and standard error.
    #[error("reading {path} failed with status {status}: {stderr}")]
    Failed {
        /// The file.
        path: String,
        /// The command's exit status.
        status: i32,
        /// Its standard error, trimmed.
        stderr: String,
    },
}

/// What [`read_command`] read, from its output: the content, `None` when the file does not
/// exist, or why it could not be read (not a regular file, larger than [`READ_LIMIT`], a failed
/// command with its stderr).
pub fn read_result(path: &str, out: &crate::ExecOutput) -> Result<Option<Vec<u8>>, ReadError> {
    let path = path.to_string();
    match out.status {
        0 if out.stdout.len() as u64 > READ_LIMIT => Err(ReadError::TooLarge { path }),
        0 => Ok(Some(out.stdout.clone())),
        MISSING => Ok(None),
        NOT_A_FILE => Err(ReadError::NotAFile { path }),
        status => {
            Err(ReadError::Failed { path, status, stderr: String::from_utf8_lossy(&out.stderr).trim().to_string() })
        }
    }
}

/// Writes stdin to the file, creating its directory: into a temporary file beside it, given its
/// mode and owner, then renamed over it. A reader (or a run killed half-way) sees the old content
/// or the new, never a part; a link at the path is replaced, never followed.
pub fn push_command(file: &FilePush) -> Vec<String> {
    let script = "umask 077; d=\"${1%/*}\"; mkdir -p -- \"$d\" && t=\"$d/.phoenix-push.$$\"; \
                  if cat > \"$t\" && chmod \"$2\" \"$t\" && chown \"$3:$4\" \"$t\"; then \
                  if [ -L \"$1\" ]; then rm -f -- \"$1\"; fi; mv -f -- \"$t\" \"$1\" && exit 0; fi; \
                  rm -f -- \"$t\"; exit 1";
    vec![
        "/bin/sh".into(),
        "-c".into(),
        script.into(),
        "phoenix-push".into(),
        file.path.clone(),
        format!("{:o}", file.mode),
        file.uid.to_string(),
        file.gid.to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_refuse_what_is_not_a_regular_file_and_huge_files() {
        let dir = std::env::temp_dir().join(format!("phoenix-inside-read-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a-directory")).expect("mkdir");
        let fifo = dir.join("a-fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
        assert!(made.success());
        std::fs::write(dir.join("small"), "hello").expect("write");
        let run = |name: &str| {
            let path = dir.join(name).display().to_string();
            let argv = read_command(&path);
            let out = std::process::Command::new(&argv[0]).args(&argv[1..]).output().expect("sh");
            let out =
                crate::ExecOutput { status: out.status.code().unwrap_or(-1), stdout: out.stdout, stderr: out.stderr };
            read_result(&path, &out)
        };
        assert_eq!(run("small"), Ok(Some(b"hello".to_vec())));
        assert_eq!(run("nothing"), Ok(None));
        // A FIFO is refused at once, never opened (`cat` would wait on it for ever).
        assert!(matches!(run("a-fifo"), Err(ReadError::NotAFile { .. })));
        assert!(run("a-directory").expect_err("directory").to_string().contains("not a regular file"));
        let huge = std::fs::File::create(dir.join("huge")).expect("create");
        huge.set_len(READ_LIMIT + 10).expect("sparse");
        assert!(run("huge").expect_err("huge").to_string().contains("larger than"));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_commands_work_in_a_shell() {
        let dir = std::env::temp_dir().join(format!("phoenix-inside-{}", std::process::id()));
        let path = dir.join("sub/it's here.txt").display().to_string();
        let file = FilePush { path: path.clone(), content: Vec::new(), mode: 0o640, uid: 0, gid: 0 };
        let argv = push_command(&file);
        let uid = std::process::Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        let push = |argv: &[String], content: &[u8]| {
            let mut child = std::process::Command::new(&argv[0])
                .args(&argv[1..])
                .stdin(std::process::Stdio::piped())
                .spawn()
                .expect("sh");
            std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), content).expect("write");
            drop(child.stdin.take());
            assert!(child.wait().expect("wait").success());
        };
        if uid == "0" {
            push(&argv, b"hello");
            let read = read_command(&path);
            let out = std::process::Command::new(&read[0]).args(&read[1..]).output().expect("sh");
            assert_eq!(out.stdout, b"hello");
            // A link at the path is replaced, never followed; nothing is left beside the file.
            let outside = dir.join("outside.txt");
            std::fs::write(&outside, "kept").expect("write");
            let link = dir.join("sub/link.txt");
            std::os::unix::fs::symlink(&outside, &link).expect("symlink");
            let file = FilePush { path: link.display().to_string(), content: Vec::new(), mode: 0o644, uid: 0, gid: 0 };
            push(&push_command(&file), b"new");
            assert_eq!(std::fs::read_to_string(&outside).expect("read"), "kept");
            assert!(!std::fs::symlink_metadata(&link).expect("meta").file_type().is_symlink());
            assert_eq!(std::fs::read_to_string(&link).expect("read"), "new");
            let names: Vec<String> = std::fs::read_dir(dir.join("sub"))
                .expect("list")
                .flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .collect();
            assert_eq!(names.len(), 2, "{names:?}");
        }
        let missing = read_command(&dir.join("nothing").display().to_string());
        let out = std::process::Command::new(&missing[0]).args(&missing[1..]).output().expect("sh");
        assert_eq!(out.status.code(), Some(MISSING));
        let _ = std::fs::remove_dir_all(dir);
    }
}
