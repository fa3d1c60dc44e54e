//! Waiting for Proxmox tasks: polled on the node their UPID names, fast at first and backing off
//! to about a second (a quarter of the time the task has run), `OK` and `WARNINGS: n` as success,
//! the log's tail attached to a failure (one a lock refused is worth retrying), and a timeout per
//! kind of operation.

use std::time::{Duration, Instant};

use phoenix_backend::{BackendError, Delivery, ErrorKind};

use crate::transport::api::ApiClient;
use crate::transport::endpoint::Call;
use crate::transport::upid::Upid;

/// How a task is polled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Poll {
    /// The first pause.
    pub first: Duration,
    /// The longest pause.
    pub max: Duration,
}

impl Default for Poll {
    fn default() -> Poll {
        Poll { first: Duration::from_millis(50), max: Duration::from_secs(1) }
    }
}

/// The pause before the next status read of a task that has run for `elapsed`: a quarter of
/// that, between `poll.first` and `poll.max`. A task is then noticed at most a quarter of its
/// run time (plus one request) after it ends, and a long one costs about one read a second.
pub fn pause_after(elapsed: Duration, poll: Poll) -> Duration {
    (elapsed / 4).clamp(poll.first, poll.max)
}

/// How long a task of this worker type may run.
pub fn timeout_for(kind: &str) -> Duration {
    let minutes = match kind {
        // Creating and cloning copy disks (a VM's create imports its cloud image).
        "vzcreate" | "vzclone" | "vzsnapshot" | "vzrollback" | "vzrestore" | "qmcreate" | "qmclone" | "qmsnapshot"
        | "qmrollback" | "download" => 30,
        "vzstart" | "vzstop" | "vzshutdown" | "vzreboot" | "qmstart" | "qmstop" | "qmshutdown" | "qmreboot" => 5,
        _ => 10,
    };
    Duration::from_secs(60 * minutes)
}

/// A task that ended well, and how many warnings it logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    /// `WARNINGS: n`, or 0 for `OK`.
    pub warnings: u32,
    /// How many times the status was read.
    pub polls: u32,
}

/// Waits for a task to stop.
pub fn wait(api: &ApiClient, upid: &Upid, poll: Poll, timeout: Duration) -> Result<Finished, BackendError> {
    let started = Instant::now();
    let mut polls = 0;
    loop {
        polls += 1;
        let status = api.call(&Call::TaskStatus(upid), &[])?;
        if status["status"] == "stopped" {
            let exit = status["exitstatus"].as_str().unwrap_or_default();
            if exit == "OK" {
                return Ok(Finished { warnings: 0, polls });
            }
            if let Some(n) = exit.strip_prefix("WARNINGS: ").and_then(|n| n.trim().parse().ok()) {
                return Ok(Finished { warnings: n, polls });
            }
            let log = api.call(&Call::TaskLog(upid), &[("limit", "500".into())]).unwrap_or_default();
            let lines: Vec<&str> = log.as_array().into_iter().flatten().filter_map(|l| l["t"].as_str()).collect();
            let tail = lines[lines.len().saturating_sub(20)..].join("\n");
            // A lock another task took meanwhile (`CT is locked (backup)`, a flock that timed
            // out) is worth trying again, as when the API call itself answers so.
            let locked = exit.contains("is locked (") || exit.contains("got timeout");
            return Err(BackendError {
                kind: if locked { ErrorKind::Transient } else { ErrorKind::Permanent },
                delivery: Delivery::MaybeApplied,
                message: format!("task {} {} on {} failed: {exit}", upid.kind, upid.id, upid.node),
                detail: Some(tail),
            });
        }
        if started.elapsed() >= timeout {
            return Err(BackendError {
                kind: ErrorKind::Transient,
                delivery: Delivery::MaybeApplied,
                message: format!(
                    "task {} {} on {} still runs after {}s",
                    upid.kind,
                    upid.id,
                    upid.node,
                    timeout.as_secs()
                ),
                detail: None,
            });
        }
        std::thread::sleep(pause_after(started.elapsed(), poll));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_back_off_with_the_time_a_task_has_run() {
        let poll = Poll::default();
        let ms = Duration::from_millis;
        assert_eq!(pause_after(ms(0), poll), ms(50));
        assert_eq!(pause_after(ms(300), poll), ms(75));
        assert_eq!(pause_after(ms(2_000), poll), ms(500));
        assert_eq!(pause_after(Duration::from_secs(600), poll), Duration::from_secs(1));
    }

    #[test]
    fn disk_copies_may_take_longer_than_power_actions() {
        assert_eq!(timeout_for("qmclone"), timeout_for("vzclone"));
        assert!(timeout_for("qmcreate") > timeout_for("qmstart"));
        assert_eq!(timeout_for("qmshutdown"), Duration::from_secs(300));
        assert_eq!(timeout_for("resize"), Duration::from_secs(600));
    }
}
