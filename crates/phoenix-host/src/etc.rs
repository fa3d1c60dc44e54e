//! The host's user database as files: `/etc/passwd`, `/etc/group`, `/etc/shadow`.

use std::path::Path;

use crate::host::{Host, HostError, Ids};

/// A line of `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    /// Name.
    pub name: String,
    /// User ID.
    pub uid: u32,
    /// Primary group ID.
    pub gid: u32,
    /// Home directory.
    pub home: String,
}

/// Users of `/etc/passwd`.
pub fn users(host: &dyn Host) -> Result<Vec<PasswdEntry>, HostError> {
    let text = host.read_text(Path::new("/etc/passwd"))?.unwrap_or_default();
    Ok(text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 7).then_some(())?;
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5].to_string(),
            })
        })
        .collect())
}

/// A user by name.
pub fn user(host: &dyn Host, name: &str) -> Result<Option<PasswdEntry>, HostError> {
    Ok(users(host)?.into_iter().find(|u| u.name == name))
}

/// A group's ID by name.
pub fn group_id(host: &dyn Host, name: &str) -> Result<Option<u32>, HostError> {
    let text = host.read_text(Path::new("/etc/group"))?.unwrap_or_default();
    Ok(text.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then_some(())?;
        f.nth(1)?.parse().ok()
    }))
}

/// A user's password field in `/etc/shadow` (`None`: no such line).
pub fn shadow_hash(host: &dyn Host, name: &str) -> Result<Option<String>, HostError> {
    let text = host.read_text(Path::new("/etc/shadow"))?.unwrap_or_default();
    Ok(text.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then_some(())?;
        f.next().map(str::to_string)
    }))
}

/// Numeric IDs of a user and group by name.
pub fn ids_of(host: &dyn Host, user_name: &str, group: &str) -> Result<Ids, HostError> {
    let u = user(host, user_name)?.ok_or_else(|| HostError::new(format!("no user {user_name} in /etc/passwd")))?;
    let gid = group_id(host, group)?.ok_or_else(|| HostError::new(format!("no group {group} in /etc/group")))?;
    Ok(Ids { uid: u.uid, gid })
}

/// A group's name by ID.
pub fn group_name(host: &dyn Host, gid: u32) -> Result<Option<String>, HostError> {
    let text = host.read_text(Path::new("/etc/group"))?.unwrap_or_default();
    Ok(text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 3 && f[2].parse::<u32>().ok()? == gid).then(|| f[0].to_string())
    }))
}
