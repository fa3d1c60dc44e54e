//! `root@pam` tickets as Proxmox issues and checks them: `POST /access/ticket` with the password,
//! or with a ticket still valid to renew it; a ticket is good for a set lifetime (two hours on
//! Proxmox) and every request other than a `GET` must also carry the ticket's
//! `CSRFPreventionToken` header.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// How long Proxmox accepts a ticket (`$ticket_lifetime` in pve-access-control).
pub const TICKET_LIFETIME: Duration = Duration::from_secs(2 * 3600);

/// The tickets issued so far.
#[derive(Debug)]
pub(crate) struct Tickets {
    /// Ticket → its CSRF token and when it was issued.
    issued: BTreeMap<String, (String, Instant)>,
    /// How long a ticket is accepted.
    pub(crate) lifetime: Duration,
    /// Logins with the password.
    pub(crate) logins: u32,
    /// Renewals with a ticket still valid.
    pub(crate) renewals: u32,
}

impl Default for Tickets {
    fn default() -> Tickets {
        Tickets { issued: BTreeMap::new(), lifetime: TICKET_LIFETIME, logins: 0, renewals: 0 }
    }
}

/// Why a request with a ticket is refused: Proxmox answers 401 with this reason.
pub(crate) type Refusal = &'static str;

impl Tickets {
    /// `POST /access/ticket`: a new ticket and CSRF token for `root@pam` when `password` is the
    /// password or a ticket still valid; `None` (401 `authentication failure`) otherwise.
    pub(crate) fn login(
        &mut self,
        username: &str,
        realm: Option<&str>,
        password: &str,
        root_password: &str,
    ) -> Option<(String, String)> {
        let user = match realm {
            Some(r) if !username.contains('@') => format!("{username}@{r}"),
            _ => username.to_string(),
        };
        if user != "root@pam" {
            return None;
        }
        if password == root_password {
            self.logins += 1;
        } else if self.valid(password) {
            self.renewals += 1;
        } else {
            return None;
        }
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let n = self.issued.len();
        let sign = |what: &str| {
            let digest = Sha256::digest(format!("{what}:{now}:{n}:{root_password}").as_bytes());
            digest.iter().take(16).map(|b| format!("{b:02x}")).collect::<String>()
        };
        let ticket = format!("PVE:root@pam:{now:08X}::{}", sign("ticket"));
        let csrf = format!("{now:08X}:{}", sign("csrf"));
        self.issued.insert(ticket.clone(), (csrf.clone(), Instant::now()));
        Some((ticket, csrf))
    }

    /// Whether a ticket was issued here and is still within its lifetime.
    fn valid(&self, ticket: &str) -> bool {
        self.issued.get(ticket).is_some_and(|(_, at)| at.elapsed() < self.lifetime)
    }

    /// Checks a request's ticket, and its CSRF token unless it is a `GET`.
    pub(crate) fn check(&self, ticket: &str, method: &str, csrf: Option<&str>) -> Result<(), Refusal> {
        let Some((expected, at)) = self.issued.get(ticket) else { return Err("invalid PVE ticket") };
        if at.elapsed() >= self.lifetime {
            return Err("invalid PVE ticket");
        }
        if method != "GET" && csrf != Some(expected.as_str()) {
            return Err("Permission denied - invalid csrf token");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_need_the_password_or_a_valid_ticket_and_csrf_on_changes() {
        let mut t = Tickets::default();
        assert!(t.login("root@pam", None, "wrong", "pw").is_none());
        assert!(t.login("phoenix@pve", None, "pw", "pw").is_none());
        let (ticket, csrf) = t.login("root", Some("pam"), "pw", "pw").expect("login");
        assert_eq!(t.check(&ticket, "GET", None), Ok(()));
        assert_eq!(t.check(&ticket, "PUT", None), Err("Permission denied - invalid csrf token"));
        assert_eq!(t.check(&ticket, "PUT", Some("other")), Err("Permission denied - invalid csrf token"));
        assert_eq!(t.check(&ticket, "PUT", Some(&csrf)), Ok(()));
        let (renewed, _) = t.login("root@pam", None, &ticket, "pw").expect("renew");
        assert_ne!(renewed, ticket);
        assert_eq!((t.logins, t.renewals), (1, 1));
        t.lifetime = Duration::ZERO;
        assert_eq!(t.check(&renewed, "GET", None), Err("invalid PVE ticket"));
        assert!(t.login("root@pam", None, &renewed, "pw").is_none(), "an expired ticket does not renew");
    }
}
