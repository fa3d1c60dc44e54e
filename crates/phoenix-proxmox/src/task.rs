//! Waiting for Proxmox tasks: polled on the node their UPID names, fast at first and backing off
//! to about a second, `OK` and `WARNINGS: n` as success, the log's tail attached to a failure,
//! and a timeout per kind of operation.

use std::time::{Duration, Instant};

use phoenix_backend::{BackendError, Delivery, ErrorKind};

use crate::api::ApiClient;
use crate::upid::Upid;

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

/// How long a task of this worker type may run.
pub fn timeout_for(kind: &str) -> Duration {
    let minutes = match kind {
        "vzcreate" | "vzclone" | "vzsnapshot" | "vzrestore" | "download" => 30,
        "vzstart" | "vzstop" | "vzshutdown" | "vzreboot" => 5,
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
    let status_path = format!("/nodes/{}/tasks/{upid}/status", upid.node);
    let mut pause = poll.first;
    let mut polls = 0;
    loop {
        polls += 1;
        let status = api.request("GET", &status_path, &[])?;
        if status["status"] == "stopped" {
            let exit = status["exitstatus"].as_str().unwrap_or_default();
            if exit == "OK" {
                return Ok(Finished { warnings: 0, polls });
            }
            if let Some(n) = exit.strip_prefix("WARNINGS: ").and_then(|n| n.trim().parse().ok()) {
                return Ok(Finished { warnings: n, polls });
            }
            let log = api
                .request("GET", &format!("/nodes/{}/tasks/{upid}/log", upid.node), &[("limit", "500".into())])
                .unwrap_or_default();
            let lines: Vec<&str> = log.as_array().into_iter().flatten().filter_map(|l| l["t"].as_str()).collect();
            let tail = lines[lines.len().saturating_sub(20)..].join("\n");
            return Err(BackendError::permanent(
                Delivery::MaybeApplied,
                format!("task {} {} on {} failed: {exit}", upid.kind, upid.id, upid.node),
            )
            .with_detail(tail));
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
        std::thread::sleep(pause);
        pause = (pause * 2).min(poll.max);
    }
}
