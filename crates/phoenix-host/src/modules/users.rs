//! Admin users: the account (`useradd`), its password (a crypt(3) hash, from the configuration
//! or a secret reference, given to `chpasswd -e` on standard input; `NOT_SET`: none), sudo (a
//! drop-in `/etc/sudoers.d/phoenix-<user>` checked with `visudo -cf`), and its SSH key (a marked
//! block of `~/.ssh/authorized_keys`; other keys are kept, the file is backed up first).

use std::path::{Path, PathBuf};

use phoenix_config::model::AdminUser;

use super::{backup_path, one_line};
use crate::block;
use crate::etc;
use crate::host::{Attrs, Host, HostError, Owner};
use crate::module::{Module, ModulePlan};
use crate::step::{Action, Check, Command, Piece, Resolver, SecretValue, Step};

/// The name of Phoenix's block in `authorized_keys`.
pub const KEY_BLOCK: &str = "admin-key";

/// The users module.
pub struct Users {
    /// The admin users.
    pub users: Vec<AdminUser>,
}

/// What the host has for one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserObserved {
    /// Its line in `/etc/passwd`.
    pub entry: Option<etc::PasswdEntry>,
    /// Its primary group's name.
    pub group: Option<String>,
    /// Its password field in `/etc/shadow`.
    pub shadow: Option<String>,
    /// Phoenix's sudoers drop-in.
    pub sudoers: Option<String>,
    /// `~/.ssh`: whether it exists, and its mode.
    pub ssh_dir_mode: Option<u32>,
    /// `~/.ssh/authorized_keys`.
    pub authorized_keys: Option<String>,
}

/// What the host has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// Per user, in the configuration's order.
    pub users: Vec<UserObserved>,
    /// Whether `/etc/sudoers.d` exists.
    pub sudoers_dir: bool,
    /// Whether `visudo` is installed.
    pub visudo: bool,
}

/// Phoenix's sudoers drop-in for a user.
pub fn sudoers_path(user: &str) -> PathBuf {
    PathBuf::from(format!("/etc/sudoers.d/phoenix-{user}"))
}

fn home_of(u: &AdminUser, o: &UserObserved) -> PathBuf {
    o.entry.as_ref().map_or_else(|| PathBuf::from(format!("/home/{}", u.username)), |e| PathBuf::from(&e.home))
}

/// Whether a user name is one Phoenix creates (the schema's rule; checked again before it is
/// passed to a command).
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name.len() <= 32
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// The password a user should have.
enum Password {
    None,
    Hash(SecretValue),
}

fn password(u: &AdminUser) -> Password {
    match u.password_hash.as_ref().map(|p| p.0.as_str()) {
        None | Some("NOT_SET") | Some("") => Password::None,
        Some(h) if h.starts_with('$') => Password::Hash(SecretValue::Inline(h.to_string())),
        Some(r) => Password::Hash(SecretValue::Reference(r.to_string())),
    }
}

impl Module for Users {
    type Observed = Observed;

    fn name(&self) -> &'static str {
        "users"
    }

    fn observe(&self, host: &dyn Host) -> Result<Observed, HostError> {
        let mut users = Vec::new();
        for u in &self.users {
            if !valid_name(&u.username) {
                return Err(HostError::new(format!("`{}` is not a user name Phoenix creates", u.username)));
            }
            let entry = etc::user(host, &u.username)?;
            let group = match &entry {
                Some(e) => etc::group_name(host, e.gid)?,
                None => None,
            };
            let mut o = UserObserved {
                entry,
                group,
                shadow: etc::shadow_hash(host, &u.username)?,
                sudoers: host.read_text(&sudoers_path(&u.username))?,
                ssh_dir_mode: None,
                authorized_keys: None,
            };
            let home = home_of(u, &o);
            o.ssh_dir_mode = host.stat(&home.join(".ssh"))?.map(|m| m.mode);
            o.authorized_keys = host.read_text(&home.join(".ssh/authorized_keys"))?;
            users.push(o);
        }
        Ok(Observed {
            users,
            sudoers_dir: host.exists(Path::new("/etc/sudoers.d"))?,
            visudo: host.has_program("visudo"),
        })
    }

    fn plan(&self, o: &Observed, secrets: &Resolver<'_>) -> Result<ModulePlan, HostError> {
        let mut plan = ModulePlan::new("users");
        let mut sudoers_dir = o.sudoers_dir;
        for (u, uo) in self.users.iter().zip(&o.users) {
            let name = u.username.as_str();
            let home = home_of(u, uo);
            if uo.entry.is_none() {
                let mut command =
                    Command::new("useradd", &["--create-home", "--user-group", "--shell", "/bin/bash", "--home-dir"]);
                command = command.path(&home);
                command.args.push(crate::host::Arg::Text(name.to_string()));
                plan.step(Step::new(Action::Run { command }, format!("no user {name} in /etc/passwd")));
            }
            let pw = password(u);
            if let Password::Hash(value) = &pw {
                let hash = match value {
                    SecretValue::Inline(h) => h.clone(),
                    SecretValue::Reference(r) => {
                        secrets(r).map_err(|e| HostError { message: format!("user {name}: {}", e.message), ..e })?
                    }
                };
                if !hash.starts_with('$') || !one_line(&hash) || hash.contains(':') {
                    return Err(HostError::new(format!(
                        "user {name}: the password_hash {value} is not a crypt(3) hash (`$6$...`, `$y$...`)"
                    )));
                }
                if uo.shadow.as_deref() != Some(hash.as_str()) {
                    let mut command = Command::new("chpasswd", &["--encrypted"]);
                    command.stdin =
                        vec![Piece::Text(format!("{name}:")), Piece::Secret(value.clone()), Piece::Text("\n".into())];
                    let why = if uo.entry.is_none() {
                        "the new user gets its password hash"
                    } else {
                        "its password hash in /etc/shadow differs"
                    };
                    plan.step(Step::new(Action::Run { command }, format!("{name}: {why} (given on standard input)")));
                }
            }
            let drop_in = sudoers_path(name);
            if u.sudo_access {
                // Without a password, sudo could never ask for one: the SSH key is the credential.
                let rule = match pw {
                    Password::None => format!("{name} ALL=(ALL:ALL) NOPASSWD: ALL"),
                    Password::Hash(_) => format!("{name} ALL=(ALL:ALL) ALL"),
                };
                let want = format!("# Managed by phoenix setup-hypervisor (users[].sudo_access).\n{rule}\n");
                if uo.sudoers.as_deref() != Some(want.as_str()) {
                    if !sudoers_dir {
                        plan.step(Step::new(
                            Action::Mkdir { path: "/etc/sudoers.d".into(), attrs: Attrs::root(0o750) },
                            "/etc/sudoers.d is missing",
                        ));
                        sudoers_dir = true;
                    }
                    if !o.visudo {
                        plan.note(
                            "visudo is not installed (package sudo): the sudoers check, and so the step, will fail",
                        );
                    }
                    plan.step(Step::new(
                        Action::WriteFile {
                            path: drop_in,
                            contents: want,
                            attrs: Attrs::root(0o440),
                            backup: None,
                            check: Some(Check::new(Command::new("visudo", &["-cf"]))),
                        },
                        format!("{name} has sudo_access"),
                    ));
                }
            } else if uo.sudoers.is_some() {
                plan.step(Step::new(Action::RemoveFile { path: drop_in }, format!("{name} no longer has sudo_access")));
            }
            let key = u.ssh_public_key.as_deref().map(str::trim).filter(|k| !k.is_empty());
            if let Some(k) = key
                && (!one_line(k) || !k.contains(' '))
            {
                return Err(HostError::new(format!(
                    "user {name}: ssh_public_key is not one `type base64 [comment]` line"
                )));
            }
            let old = uo.authorized_keys.clone().unwrap_or_default();
            let body = key.map(|k| vec![k.to_string()]);
            let has_block =
                block::body(&old, KEY_BLOCK).map_err(|e| HostError::new(format!("{name}'s authorized_keys: {e}")))?;
            if has_block == body {
                continue;
            }
            let contents = block::replace(&old, KEY_BLOCK, body.as_deref())
                .map_err(|e| HostError::new(format!("{name}'s authorized_keys: {e}")))?;
            let owner = Owner { user: name.to_string(), group: uo.group.clone().unwrap_or_else(|| name.to_string()) };
            let ssh_dir = home.join(".ssh");
            if uo.ssh_dir_mode != Some(0o700) {
                plan.step(Step::new(
                    Action::Mkdir { path: ssh_dir.clone(), attrs: Attrs { mode: 0o700, owner: Some(owner.clone()) } },
                    format!("{name}'s ~/.ssh is missing or not private"),
                ));
            }
            let keys = ssh_dir.join("authorized_keys");
            let backup = uo.authorized_keys.as_ref().map(|_| backup_path(&keys));
            let reason = if key.is_some() {
                format!("{name}'s key is not in its authorized_keys (Phoenix's marked block; other keys are kept)")
            } else {
                format!("{name} has no ssh_public_key: Phoenix's block is removed (other keys are kept)")
            };
            plan.step(Step::new(
                Action::WriteFile {
                    path: keys,
                    contents,
                    attrs: Attrs { mode: 0o600, owner: Some(owner) },
                    backup,
                    check: None,
                },
                reason,
            ));
        }
        Ok(plan)
    }
}
