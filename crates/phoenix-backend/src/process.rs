//! Running a host program for a backend: stdin fed or closed, stdout and stderr captured, killed
//! after a timeout.
//!
//! Every program runs in its own process group, so a Ctrl-C typed at the terminal reaches Phoenix
//! alone (which lets running steps finish); [`abort_running`] ends every program still running,
//! for a second Ctrl-C. (Backends whose tools must not outlive a Phoenix killed outright start
//! them through [`with_parent_death_signal`].)

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

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
    /// It was killed by [`abort_running`].
    Aborted,
}

/// How an aborted program's end is described.
pub const ABORTED: &str = "was killed: the run was aborted (a second Ctrl-C)";

/// Process groups of the programs running now.
static RUNNING: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());
/// Set by [`abort_running`]: programs started later are refused.
static ABORT: AtomicBool = AtomicBool::new(false);

/// Kills every program started through [`run_captured`] that still runs (its whole process
/// group), and refuses to start new ones. Returns how many were killed.
pub fn abort_running() -> usize {
    ABORT.store(true, Ordering::SeqCst);
    let groups = RUNNING.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    for &group in &groups {
        kill_group(group);
    }
    groups.len()
}

fn kill_group(group: i32) {
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(group), nix::sys::signal::Signal::SIGKILL);
}

/// Where `setpriv` (util-linux) is, which sets the parent-death signal before it runs a program.
const SETPRIV: &str = "/usr/bin/setpriv";

/// The argument vector that runs `argv` so that it is killed when the thread that started it
/// ends, Phoenix killed outright included: `setpriv --pdeathsig KILL -- argv…`. Unchanged where
/// `setpriv` is missing, or where the program cannot be found in `path` (so that spawning it still
/// fails as a missing program does).
pub fn with_parent_death_signal(argv: &[String], path: &str) -> Vec<String> {
    let found = |program: &str| {
        if program.contains('/') {
            std::path::Path::new(program).is_file()
        } else {
            path.split(':').any(|dir| std::path::Path::new(dir).join(program).is_file())
        }
    };
    match argv.first() {
        Some(program) if found(program) && std::path::Path::new(SETPRIV).is_file() => {
            [SETPRIV, "--pdeathsig", "KILL", "--"]
                .iter()
                .map(|s| (*s).to_string())
                .chain(argv.iter().cloned())
                .collect()
        }
        _ => argv.to_vec(),
    }
}

/// Starts `command`. A program that was just written (a wrapper script) may still be open for
/// writing in a child another thread is forking at that moment: `exec` then fails with
/// `ETXTBSY` until that child has run its own `exec`, so that start is tried again, briefly.
fn spawn(command: &mut Command) -> Result<std::process::Child, ProcessError> {
    let mut tries = 0;
    loop {
        match command.spawn() {
            Err(e) if e.raw_os_error() == Some(nix::libc::ETXTBSY) && tries < 20 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other.map_err(|e| ProcessError::Spawn(e.to_string())),
        }
    }
}

/// Runs `command`, feeding `input` on stdin (or none: stdin closed), and kills it (its process
/// group) after `timeout`. Waiting blocks in the kernel; nothing polls.
pub fn run_captured(mut command: Command, input: Option<&[u8]>, timeout: Duration) -> Result<ExecOutput, ProcessError> {
    if ABORT.load(Ordering::SeqCst) {
        return Err(ProcessError::Aborted);
    }
    command
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = spawn(&mut command)?;
    let group = child.id() as i32;
    RUNNING.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(group);
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
    // The watchdog kills the group at the deadline unless told that the program ended.
    let (done, ended) = mpsc::channel::<()>();
    let timed_out = std::sync::Arc::new(AtomicBool::new(false));
    let watchdog = {
        let timed_out = timed_out.clone();
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = ended.recv_timeout(timeout) {
                timed_out.store(true, Ordering::SeqCst);
                kill_group(group);
            }
        })
    };
    let waited = child.wait();
    let _ = done.send(());
    let _ = watchdog.join();
    RUNNING.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&group);
    let status = waited.map_err(|e| ProcessError::Wait(e.to_string()))?;
    if timed_out.load(Ordering::SeqCst) {
        return Err(ProcessError::Timeout);
    }
    if ABORT.load(Ordering::SeqCst) && status.code().is_none() {
        return Err(ProcessError::Aborted);
    }
    Ok(ExecOutput {
        status: status.code().unwrap_or(-1),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
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

    #[test]
    fn programs_run_in_their_own_process_group() {
        let mut c = Command::new("sh");
        c.args(["-c", "ps -o pgid= -p $$"]);
        let out = run_captured(c, None, Duration::from_secs(10)).expect("runs");
        let group: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().expect("a process group");
        let ours = std::fs::read_to_string("/proc/self/stat").expect("stat");
        let ours: u32 =
            ours[ours.rfind(')').expect("comm") + 1..].split_whitespace().nth(2).expect("pgrp").parse().expect("pgrp");
        assert_ne!(group, ours, "a Ctrl-C to Phoenix's group would reach the program");
    }

    #[test]
    fn a_parent_death_signal_is_set_only_for_programs_that_exist() {
        let argv = |a: &[&str]| a.iter().map(|s| (*s).to_string()).collect::<Vec<_>>();
        let wrapped = with_parent_death_signal(&argv(&["sleep", "1"]), "/usr/bin:/bin");
        if std::path::Path::new(SETPRIV).is_file() {
            assert_eq!(wrapped, argv(&[SETPRIV, "--pdeathsig", "KILL", "--", "sleep", "1"]));
        }
        let missing = with_parent_death_signal(&argv(&["no-such-program"]), "/usr/bin:/bin");
        assert_eq!(missing, argv(&["no-such-program"]));
    }
}
