//! Running a host program for a backend: stdin fed or closed, stdout and stderr captured, killed
//! after a timeout.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::ExecOutput;

/// Why a program did not finish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessError {
    /// It could not be started.
    Spawn(String),
    /// Waiting for it failed.
    Wait(String),
    /// It ran past the timeout and was killed.
    Timeout,
}

/// Runs `command`, feeding `input` on stdin (or none: stdin closed), and kills it after `timeout`.
pub fn run_captured(mut command: Command, input: Option<&[u8]>, timeout: Duration) -> Result<ExecOutput, ProcessError> {
    let mut child = command
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| ProcessError::Spawn(e.to_string()))?;
    if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
        let data = data.to_vec();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
    }
    fn collect(stream: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut b = Vec::new();
            if let Some(mut s) = stream {
                let _ = s.read_to_end(&mut b);
            }
            b
        })
    }
    let out = collect(child.stdout.take());
    let err = collect(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status.code().unwrap_or(-1),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ProcessError::Timeout);
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(ProcessError::Wait(e.to_string())),
        }
    };
    Ok(ExecOutput { status, stdout: out.join().unwrap_or_default(), stderr: err.join().unwrap_or_default() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_feeds_and_times_out() {
        let mut c = Command::new("sh");
        c.args(["-c", "cat; echo oops >&2; exit 4"]);
        let out = run_captured(c, Some(b"in"), Duration::from_secs(10)).expect("runs");
        assert_eq!((out.status, out.stdout.as_slice(), out.stderr.as_slice()), (4, &b"in"[..], &b"oops\n"[..]));
        let mut slow = Command::new("sleep");
        slow.arg("10");
        assert_eq!(run_captured(slow, None, Duration::from_millis(50)), Err(ProcessError::Timeout));
        assert!(matches!(
            run_captured(Command::new("/nonexistent/program"), None, Duration::from_secs(1)),
            Err(ProcessError::Spawn(_))
        ));
    }
}
