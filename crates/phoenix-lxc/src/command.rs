//! Running the host's tools: argv only, a clean environment, a timeout, output captured.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use phoenix_backend::{BackendError, Delivery, ExecOutput};

/// The PATH given to every command.
pub const CLEAN_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs a program with arguments, feeding `input` on stdin (or none: stdin closed), killing it
/// after `timeout`.
pub fn run(argv: &[String], input: Option<&[u8]>, timeout: Duration) -> Result<ExecOutput, BackendError> {
    let (program, args) =
        argv.split_first().ok_or_else(|| BackendError::permanent(Delivery::NotSent, "empty command"))?;
    let mut child = Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", CLEAN_PATH)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| BackendError::permanent(Delivery::NotSent, format!("cannot run {program}: {e}")))?;
    if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
        let data = data.to_vec();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
    }
    let mut out = child.stdout.take().map(|mut s| {
        std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = s.read_to_end(&mut b);
            b
        })
    });
    let mut err = child.stderr.take().map(|mut s| {
        std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = s.read_to_end(&mut b);
            b
        })
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status.code().unwrap_or(-1),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(BackendError::transient(
                    Delivery::MaybeApplied,
                    format!("`{}` timed out after {}s", argv.join(" "), timeout.as_secs()),
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => {
                return Err(BackendError::permanent(Delivery::MaybeApplied, format!("waiting for {program}: {e}")));
            }
        }
    };
    let take =
        |h: &mut Option<std::thread::JoinHandle<Vec<u8>>>| h.take().and_then(|h| h.join().ok()).unwrap_or_default();
    Ok(ExecOutput { status, stdout: take(&mut out), stderr: take(&mut err) })
}

/// Runs a host tool that must succeed; its stderr explains a failure.
pub fn tool(argv: &[&str], timeout: Duration) -> Result<ExecOutput, BackendError> {
    let argv: Vec<String> = argv.iter().map(|s| (*s).to_string()).collect();
    let out = run(&argv, None, timeout)?;
    if out.success() {
        Ok(out)
    } else {
        Err(BackendError::permanent(
            Delivery::MaybeApplied,
            format!("`{}` failed with status {}", argv.join(" "), out.status),
        )
        .with_detail(String::from_utf8_lossy(&out.stderr).trim().to_string()))
    }
}
