//! Reading and writing files inside a guest through a command run inside it, so that links in
//! the guest resolve inside the guest and can never make the host write elsewhere. Backends run
//! these argument vectors with their own exec (`lxc-attach`, `pct exec`, the guest agent).

use crate::FilePush;

/// The exit status of [`read_command`] when the file does not exist.
pub const MISSING: i32 = 3;

/// Prints a file, or exits with [`MISSING`] when it does not exist.
pub fn read_command(path: &str) -> Vec<String> {
    ["/bin/sh", "-c", "test -e \"$1\" || exit 3; cat -- \"$1\"", "phoenix-read", path]
        .iter()
        .map(|s| (*s).to_string())
        .collect()
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
        if uid == "0" {
            let mut child = std::process::Command::new(&argv[0])
                .args(&argv[1..])
                .stdin(std::process::Stdio::piped())
                .spawn()
                .expect("sh");
            std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), b"hello").expect("write");
            drop(child.stdin.take());
            assert!(child.wait().expect("wait").success());
            let read = read_command(&path);
            let out = std::process::Command::new(&read[0]).args(&read[1..]).output().expect("sh");
            assert_eq!(out.stdout, b"hello");
        }
        let missing = read_command(&dir.join("nothing").display().to_string());
        let out = std::process::Command::new(&missing[0]).args(&missing[1..]).output().expect("sh");
        assert_eq!(out.status.code(), Some(MISSING));
        let _ = std::fs::remove_dir_all(dir);
    }
}
