//! Steps of a host plan and their execution. A step names the file or command it touches and
//! says why; it never holds a secret, only a reference resolved when the step runs.

use std::path::{Path, PathBuf};

use serde::{Serialize, Serializer};

use crate::etc;
use crate::host::{Arg, Attrs, Host, HostError, Ids, Invocation, Sensitive};

/// A secret a command needs: resolved only when the step runs, and only into standard input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretValue {
    /// A secret reference (`env:`, `file:`, `vault:`).
    Reference(String),
    /// A value from the configuration that is not printed (a password hash).
    Inline(String),
}

impl std::fmt::Display for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretValue::Reference(r) => write!(f, "<secret {r}>"),
            SecretValue::Inline(_) => f.write_str("<password hash from the configuration>"),
        }
    }
}

/// A piece of a command's standard input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Text.
    Text(String),
    /// A secret.
    Secret(SecretValue),
}

/// A command a step runs: argv (never a shell string) and standard input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The program.
    pub program: String,
    /// Its arguments.
    pub args: Vec<Arg>,
    /// Standard input, the pieces joined; empty for none.
    pub stdin: Vec<Piece>,
}

impl Command {
    /// A command with text arguments.
    pub fn new(program: &str, args: &[&str]) -> Command {
        Command {
            program: program.to_string(),
            args: args.iter().map(|a| Arg::Text((*a).to_string())).collect(),
            stdin: Vec::new(),
        }
    }

    /// With a path argument appended.
    pub fn path(mut self, p: impl Into<PathBuf>) -> Command {
        self.args.push(Arg::Path(p.into()));
        self
    }

    /// With a text argument appended.
    pub fn arg(mut self, a: &str) -> Command {
        self.args.push(Arg::Text(a.to_string()));
        self
    }

    /// The command line for people, an argument with spaces or quotes quoted as a shell would
    /// need it (`--comment 'phoenix: SSH'`); standard input is described, never shown.
    pub fn display(&self) -> String {
        let mut s = std::iter::once(self.program.clone())
            .chain(self.args.iter().map(|a| quoted(&a.to_string())))
            .collect::<Vec<_>>()
            .join(" ");
        let mut secrets: Vec<String> = self
            .stdin
            .iter()
            .filter_map(|p| match p {
                Piece::Secret(v) => Some(v.to_string()),
                Piece::Text(_) => None,
            })
            .collect();
        secrets.dedup();
        if !secrets.is_empty() {
            s.push_str(&format!(" (standard input: {})", secrets.join(", ")));
        }
        s
    }

    /// The invocation, secrets resolved.
    fn invocation(&self, secrets: &Resolver<'_>) -> Result<Invocation, HostError> {
        let stdin = if self.stdin.is_empty() {
            None
        } else {
            let mut bytes = Vec::new();
            for p in &self.stdin {
                match p {
                    Piece::Text(t) => bytes.extend_from_slice(t.as_bytes()),
                    Piece::Secret(SecretValue::Inline(v)) => bytes.extend_from_slice(v.as_bytes()),
                    Piece::Secret(SecretValue::Reference(r)) => {
                        bytes.extend_from_slice(secrets(r)?.as_bytes());
                    }
                }
            }
            Some(Sensitive(bytes))
        };
        Ok(Invocation { program: self.program.clone(), args: self.args.clone(), stdin, probe: false })
    }
}

/// An argument as a shell would need it written: as it is when it is plain, else in single quotes.
fn quoted(arg: &str) -> String {
    let plain = !arg.is_empty() && !arg.chars().any(|c| c.is_whitespace() || "'\"\\$`;&|<>*?#(){}[]~!".contains(c));
    if plain { arg.to_string() } else { format!("'{}'", arg.replace('\'', r"'\''")) }
}

impl Serialize for Command {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.display())
    }
}

/// Resolves a secret reference to its value (errors name the reference, never a value, and
/// carry how to fix it as their detail).
pub type Resolver<'a> = dyn Fn(&str) -> Result<String, HostError> + 'a;

/// A check a file must pass before it replaces the old one: the program is given the candidate
/// file's path as its last argument.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// The command, without the candidate's path.
    pub command: Command,
    /// Output that fails the check even when the command exits 0 (`testparm` only warns about
    /// an unknown parameter).
    pub fail_on: Vec<String>,
}

impl Check {
    /// A check that trusts the command's exit status.
    pub fn new(command: Command) -> Check {
        Check { command, fail_on: Vec::new() }
    }
}

/// What a step does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Write a whole file (Phoenix's own, or one edited only in its marked block). With a check,
    /// the new content is written beside the file, checked, and only then renamed into place.
    WriteFile {
        /// The file.
        path: PathBuf,
        /// Its new content (never a secret).
        contents: String,
        /// Mode and owner.
        attrs: Attrs,
        /// Where the file as it was before Phoenix first changed it is kept (written once).
        backup: Option<PathBuf>,
        /// The check the new content must pass.
        check: Option<Check>,
    },
    /// Remove a file Phoenix owns.
    RemoveFile {
        /// The file.
        path: PathBuf,
    },
    /// Make (or replace) a symbolic link.
    Symlink {
        /// The link.
        link: PathBuf,
        /// What it points to.
        target: PathBuf,
    },
    /// Make a directory, or give an existing one this mode and owner.
    Mkdir {
        /// The directory.
        path: PathBuf,
        /// Mode and owner.
        attrs: Attrs,
    },
    /// Run a command.
    Run {
        /// The command.
        command: Command,
    },
}

/// One step of a module's plan, with its reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// What it does.
    #[serde(flatten)]
    pub action: Action,
    /// Why.
    pub reason: String,
}

impl Step {
    /// A step.
    pub fn new(action: Action, reason: impl Into<String>) -> Step {
        Step { action, reason: reason.into() }
    }

    /// One line for people: what it touches.
    pub fn summary(&self) -> String {
        match &self.action {
            Action::WriteFile { path, attrs, backup, check, .. } => {
                let mut s = format!("write {} (mode {:04o}", path.display(), attrs.mode);
                if let Some(o) = &attrs.owner {
                    s.push_str(&format!(", owner {}:{}", o.user, o.group));
                }
                s.push(')');
                if let Some(c) = check {
                    s.push_str(&format!(", checked with `{} <new file>`", c.command.display()));
                }
                if let Some(b) = backup {
                    s.push_str(&format!(", original kept as {}", b.display()));
                }
                s
            }
            Action::RemoveFile { path } => format!("remove {}", path.display()),
            Action::Symlink { link, target } => format!("link {} → {}", link.display(), target.display()),
            Action::Mkdir { path, attrs } => format!("directory {} (mode {:04o})", path.display(), attrs.mode),
            Action::Run { command } => format!("run `{}`", command.display()),
        }
    }
}

/// Where a checked file's new content is written while it is checked: beside it, with a name
/// that contains a dot, so that directories read whole (`sudoers.d`) ignore it.
pub fn candidate_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.phoenix-new"))
}

fn owner_ids(host: &dyn Host, attrs: &Attrs) -> Result<Option<Ids>, HostError> {
    match &attrs.owner {
        None => Ok(None),
        Some(o) => etc::ids_of(host, &o.user, &o.group).map(Some),
    }
}

/// Runs one step.
pub fn execute(host: &dyn Host, step: &Step, secrets: &Resolver<'_>) -> Result<(), HostError> {
    match &step.action {
        Action::WriteFile { path, contents, attrs, backup, check } => {
            let ids = owner_ids(host, attrs)?;
            if let Some(b) = backup
                && !host.exists(b)?
                && let Some(old) = host.read(path)?
            {
                let mode = host.stat(path)?.map_or(0o600, |m| m.mode);
                host.write(b, &old, mode, None)?;
            }
            match check {
                None => host.write(path, contents.as_bytes(), attrs.mode, ids),
                Some(c) => {
                    let candidate = candidate_path(path);
                    host.write(&candidate, contents.as_bytes(), attrs.mode, ids)?;
                    let mut inv = c.command.invocation(secrets)?;
                    inv.args.push(Arg::Path(candidate.clone()));
                    let checked = host.run(&inv);
                    match checked {
                        Ok(out)
                            if out.success()
                                && !c.fail_on.iter().any(|f| out.stdout.contains(f) || out.stderr.contains(f)) =>
                        {
                            host.rename(&candidate, path)
                        }
                        Ok(out) => {
                            let _ = host.remove(&candidate);
                            Err(HostError::with_detail(
                                format!(
                                    "the new {} fails `{}`; the old file is kept",
                                    path.display(),
                                    c.command.display()
                                ),
                                format!("{}{}", out.stdout, out.stderr).trim().to_string(),
                            ))
                        }
                        Err(e) => {
                            let _ = host.remove(&candidate);
                            Err(e)
                        }
                    }
                }
            }
        }
        Action::RemoveFile { path } => host.remove(path),
        Action::Symlink { link, target } => host.symlink(target, link),
        Action::Mkdir { path, attrs } => {
            let ids = owner_ids(host, attrs)?;
            host.mkdir(path, attrs.mode, ids)
        }
        Action::Run { command } => {
            let out = host.run(&command.invocation(secrets)?)?;
            if out.success() {
                Ok(())
            } else {
                Err(HostError::with_detail(
                    format!("`{}` failed (exit status {})", command.display(), out.status),
                    out.stderr.trim().to_string(),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_shown_quoted_where_a_shell_would_need_it() {
        let c =
            Command::new("pvesh", &["set", "/cluster/firewall/rules/0", "--comment", "phoenix: it's mine", "--x", ""])
                .path("/srv/a b");
        assert_eq!(
            c.display(),
            r"pvesh set /cluster/firewall/rules/0 --comment 'phoenix: it'\''s mine' --x '' '/srv/a b'"
        );
        let mut c = Command::new("smbpasswd", &["-a", "-s", "phoenix"]);
        c.stdin.push(Piece::Secret(SecretValue::Reference("env:SMB".into())));
        assert_eq!(c.display(), "smbpasswd -a -s phoenix (standard input: <secret env:SMB>)");
    }
}
