//! Task IDs: `UPID:<node>:<pid>:<pstart>:<starttime>:<type>:<id>:<user>:`.

use std::fmt;

/// A parsed task ID. Always poll a task on the node it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upid {
    /// The node the task runs on.
    pub node: String,
    /// Worker process ID.
    pub pid: u32,
    /// Process start time (clock ticks).
    pub pstart: u64,
    /// Task start time (seconds since 1970).
    pub starttime: u64,
    /// Worker type, e.g. `vzcreate`.
    pub kind: String,
    /// Usually the guest ID.
    pub id: String,
    /// Who started it (`user@realm` or a token ID).
    pub user: String,
}

/// Why a string is not a UPID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a Proxmox task ID (UPID)")]
pub struct UpidError(pub String);

fn hex(s: &str, lens: std::ops::RangeInclusive<usize>) -> Option<u64> {
    (lens.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u64::from_str_radix(s, 16).ok())
        .flatten()
}

fn node_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn field(s: &str, allow_empty: bool) -> bool {
    (allow_empty || !s.is_empty()) && !s.contains(|c: char| c == ':' || c == '/' || c.is_whitespace())
}

impl std::str::FromStr for Upid {
    type Err = UpidError;

    fn from_str(s: &str) -> Result<Upid, UpidError> {
        let err = || UpidError(s.to_string());
        let parts: Vec<&str> = s.split(':').collect();
        let [tag, node, pid, pstart, start, kind, id, user, end] = parts.as_slice() else { return Err(err()) };
        if *tag != "UPID"
            || !end.is_empty()
            || !node_name(node)
            || !field(kind, false)
            || !field(id, true)
            || !field(user, false)
        {
            return Err(err());
        }
        Ok(Upid {
            node: (*node).to_string(),
            pid: hex(pid, 8..=8).and_then(|p| u32::try_from(p).ok()).ok_or_else(err)?,
            pstart: hex(pstart, 8..=9).ok_or_else(err)?,
            starttime: hex(start, 8..=8).ok_or_else(err)?,
            kind: (*kind).to_string(),
            id: (*id).to_string(),
            user: (*user).to_string(),
        })
    }
}

impl fmt::Display for Upid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pstart =
            if self.pstart > 0xffff_ffff { format!("{:09X}", self.pstart) } else { format!("{:08X}", self.pstart) };
        write!(
            f,
            "UPID:{}:{:08X}:{pstart}:{:08X}:{}:{}:{}:",
            self.node, self.pid, self.starttime, self.kind, self.id, self.user
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_task_ids() {
        let text = "UPID:pve1:0000A1B2:0012D687:6745F0A1:vzcreate:950:phoenix@pve!automation:";
        let u: Upid = text.parse().expect("valid");
        assert_eq!(
            (u.node.as_str(), u.pid, u.kind.as_str(), u.id.as_str(), u.user.as_str()),
            ("pve1", 0xA1B2, "vzcreate", "950", "phoenix@pve!automation")
        );
        assert_eq!(u.to_string(), text);
        let long: Upid =
            "UPID:n-2:00000001:1A2B3C4D5:6745F0A1:vzdump::root@pam:".parse().expect("9-digit pstart, empty id");
        assert_eq!(long.to_string(), "UPID:n-2:00000001:1A2B3C4D5:6745F0A1:vzdump::root@pam:");
        for bad in [
            "UPID:pve1:A1B2:0012D687:6745F0A1:vzcreate:950:root@pam:",
            "UPID:pve1:0000A1B2:0012D687:6745F0A1:vzcreate:950:root@pam",
            "upid:x",
            "UPID:-bad:0000A1B2:0012D687:6745F0A1:t:1:u:",
        ] {
            assert!(bad.parse::<Upid>().is_err(), "{bad}");
        }
    }
}
