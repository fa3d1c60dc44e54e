//! Samba shares in a file Phoenix owns, `/etc/samba/phoenix-shares.conf`, included from
//! `smb.conf` by one line in a marked block (the original `smb.conf` kept beside it); every new
//! file is checked with `testparm -s` before it replaces the old one; smbd reloads when running.
//! The Samba user is added with its password from a secret reference, given on standard input.

use std::collections::BTreeSet;
use std::path::Path;

use phoenix_config::model::SambaShare;

use super::{backup_path, one_line};
use crate::block;
use crate::host::{Attrs, Host, HostError, Invocation};
use crate::module::{Module, ModulePlan};
use crate::step::{Action, Check, Command, Piece, Resolver, SecretValue, Step};

/// `smb.conf`.
pub const SMB_CONF: &str = "/etc/samba/smb.conf";
/// Phoenix's shares.
pub const SHARES_FILE: &str = "/etc/samba/phoenix-shares.conf";
/// The name of Phoenix's block in `smb.conf`.
pub const BLOCK: &str = "samba-shares";
/// While smbd runs, this file exists.
pub const SMBD_PID: &str = "/run/samba/smbd.pid";

/// The Samba module.
pub struct Samba {
    /// The shares.
    pub shares: Vec<SambaShare>,
    /// The Samba user, and the reference to its password.
    pub user: Option<(String, Option<String>)>,
}

/// What the host has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// `smb.conf`.
    pub smb_conf: Option<String>,
    /// Its mode.
    pub smb_conf_mode: u32,
    /// Phoenix's shares file.
    pub shares_file: Option<String>,
    /// Samba users (`pdbedit -L`); `None` when pdbedit is not installed.
    pub samba_users: Option<BTreeSet<String>>,
    /// Whether smbd is running.
    pub smbd_running: bool,
}

/// The shares file Phoenix writes.
pub fn render(shares: &[SambaShare]) -> Result<String, HostError> {
    let mut s = String::from(
        "# Managed by phoenix setup-hypervisor from the `samba` section of phoenix_hypervisor_config.json.\n\
         # Rewritten on every apply: change the configuration, not this file.\n",
    );
    let mut names = BTreeSet::new();
    for sh in shares {
        let bad = |what: &str| HostError::new(format!("samba share `{}`: {what}", sh.name));
        if sh.name.is_empty() || !one_line(&sh.name) || sh.name.contains(['[', ']']) {
            return Err(bad("the name must be on one line, without `[` or `]`"));
        }
        if ["global", "homes", "printers"].contains(&sh.name.to_ascii_lowercase().as_str()) {
            return Err(bad("is a section Samba reserves; choose another name"));
        }
        if !names.insert(sh.name.to_ascii_lowercase()) {
            return Err(bad("is defined twice"));
        }
        if !sh.path.starts_with('/') || !one_line(&sh.path) {
            return Err(bad("the path must be absolute and on one line"));
        }
        s.push_str(&format!("\n[{}]\n   path = {}\n", sh.name, sh.path));
        if !sh.valid_users.is_empty() {
            if sh.valid_users.iter().any(|u| u.is_empty() || !one_line(u) || u.contains(char::is_whitespace)) {
                return Err(bad("a user name in valid_users is empty or holds a space"));
            }
            s.push_str(&format!("   valid users = {}\n", sh.valid_users.join(" ")));
        }
        for (k, v) in &sh.options {
            let key = k.trim().to_ascii_lowercase();
            let known = key.chars().all(|c| c.is_ascii_alphanumeric() || " _:-".contains(c)) && !key.is_empty();
            if !known || !one_line(v) {
                return Err(bad(&format!("option `{k}` is not an smb.conf option on one line")));
            }
            if key == "path" || key == "valid users" {
                return Err(bad(&format!("give `{key}` with the share's own key, not in options")));
            }
            s.push_str(&format!("   {} = {}\n", k.trim(), v.trim()));
        }
    }
    Ok(s)
}

fn testparm() -> Check {
    Check {
        command: Command::new("testparm", &["-s"]),
        fail_on: vec!["Unknown parameter encountered".to_string(), "Error loading services".to_string()],
    }
}

impl Module for Samba {
    type Observed = Observed;

    fn name(&self) -> &'static str {
        "samba"
    }

    fn observe(&self, host: &dyn Host) -> Result<Observed, HostError> {
        let samba_users = if self.user.is_some() && host.has_program("pdbedit") {
            let out = host.run(&Invocation::probe("pdbedit", &["-L"]))?;
            if !out.success() {
                return Err(HostError::with_detail("`pdbedit -L` failed", out.stderr));
            }
            Some(out.stdout.lines().filter_map(|l| l.split(':').next()).map(str::to_string).collect())
        } else {
            None
        };
        Ok(Observed {
            smb_conf: host.read_text(Path::new(SMB_CONF))?,
            smb_conf_mode: host.stat(Path::new(SMB_CONF))?.map_or(0o644, |m| m.mode),
            shares_file: host.read_text(Path::new(SHARES_FILE))?,
            samba_users,
            smbd_running: host.exists(Path::new(SMBD_PID))?,
        })
    }

    fn plan(&self, o: &Observed, _: &Resolver<'_>) -> Result<ModulePlan, HostError> {
        let mut plan = ModulePlan::new("samba");
        let smb_conf = match &o.smb_conf {
            Some(t) => t,
            None if self.shares.is_empty() && self.user.is_none() => return Ok(plan),
            None => {
                return Err(HostError::with_detail(
                    format!("Samba is not installed: there is no {SMB_CONF}"),
                    "install samba (apt-get install samba), then run setup-hypervisor again",
                ));
            }
        };
        let block_err = |e: block::BlockError| HostError::new(format!("{SMB_CONF}: {e}"));
        // smb.conf is not Phoenix's: written with its mode kept, a backup, and testparm first.
        let smb_conf_step = |contents: String, reason: String| {
            Step::new(
                Action::WriteFile {
                    path: SMB_CONF.into(),
                    contents,
                    attrs: Attrs::root(o.smb_conf_mode),
                    backup: Some(backup_path(Path::new(SMB_CONF))),
                    check: Some(testparm()),
                },
                reason,
            )
        };
        let mut changed = false;
        if self.shares.is_empty() {
            if block::body(smb_conf, BLOCK).map_err(block_err)?.is_some() {
                let contents = block::replace(smb_conf, BLOCK, None).map_err(block_err)?;
                plan.step(smb_conf_step(
                    contents,
                    "no shares are configured: Phoenix's include line is removed".to_string(),
                ));
                changed = true;
            }
            if o.shares_file.is_some() {
                plan.step(Step::new(Action::RemoveFile { path: SHARES_FILE.into() }, "no shares are configured"));
                changed = true;
            }
        } else {
            let want = render(&self.shares)?;
            if o.shares_file.as_deref() != Some(want.as_str()) {
                let reason = if o.shares_file.is_some() {
                    "the shares differ from the configuration"
                } else {
                    "no Phoenix shares file yet"
                };
                plan.step(Step::new(
                    Action::WriteFile {
                        path: SHARES_FILE.into(),
                        contents: want,
                        attrs: Attrs::root(0o644),
                        backup: None,
                        check: Some(testparm()),
                    },
                    reason,
                ));
                changed = true;
            }
            let line = vec![format!("include = {SHARES_FILE}")];
            if block::body(smb_conf, BLOCK).map_err(block_err)?.as_ref() != Some(&line) {
                let contents = block::replace(smb_conf, BLOCK, Some(&line)).map_err(block_err)?;
                plan.step(smb_conf_step(
                    contents,
                    format!(
                        "{SMB_CONF} does not include Phoenix's shares (one line in a marked block; the rest is kept)"
                    ),
                ));
                changed = true;
            }
        }
        if changed {
            if o.smbd_running {
                plan.step(Step::new(
                    Action::Run { command: Command::new("smbcontrol", &["smbd", "reload-config"]) },
                    "smbd is running and its configuration changed",
                ));
            } else {
                plan.note("smbd is not running: it reads the new configuration when it starts");
            }
        }
        if let Some((user, password)) = &self.user {
            match (&o.samba_users, password) {
                (_, None) => plan.note(format!("no password is configured for the Samba user {user}: it is not added")),
                (None, Some(_)) => {
                    plan.note(format!(
                        "pdbedit is not installed (package samba): the Samba user {user} is not checked or added"
                    ));
                }
                (Some(users), Some(_)) if users.contains(user) => {}
                (Some(_), Some(reference)) => {
                    let secret = || Piece::Secret(SecretValue::Reference(reference.clone()));
                    let mut command = Command::new("smbpasswd", &["-a", "-s", user]);
                    command.stdin = vec![secret(), Piece::Text("\n".into()), secret(), Piece::Text("\n".into())];
                    plan.step(Step::new(
                        Action::Run { command },
                        format!("no Samba user {user} (`pdbedit -L`); the password goes on standard input"),
                    ));
                }
            }
        }
        Ok(plan)
    }
}
