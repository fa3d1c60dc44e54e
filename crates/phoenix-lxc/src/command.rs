//! Running the host's tools: argv only, a clean environment, a timeout, output captured.

use std::process::Command;
use std::time::Duration;

use phoenix_backend::process::{ABORTED, ProcessError, run_captured, with_parent_death_signal};
use phoenix_backend::{BackendError, Delivery, ExecOutput};

/// The PATH given to every command.
pub const CLEAN_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs a program with arguments, feeding `input` on stdin (or none: stdin closed), killing it
/// after `timeout`.
pub fn run(argv: &[String], input: Option<&[u8]>, timeout: Duration) -> Result<ExecOutput, BackendError> {
    let (program, _) = argv.split_first().ok_or_else(|| BackendError::permanent(Delivery::NotSent, "empty command"))?;
    // A tool Phoenix started never outlives it: a `tar` or `cp` left running after Phoenix was
    // killed would go on filling a directory the next run cleans up.
    let wrapped = with_parent_death_signal(argv, CLEAN_PATH);
    let (first, args) = wrapped.split_first().unwrap_or((program, &[]));
    let mut command = Command::new(first);
    command.args(args).env_clear().env("PATH", CLEAN_PATH);
    run_captured(command, input, timeout).map_err(|e| match e {
        ProcessError::Spawn(e) => BackendError::permanent(Delivery::NotSent, format!("cannot run {program}: {e}")),
        ProcessError::Wait(e) => BackendError::permanent(Delivery::MaybeApplied, format!("waiting for {program}: {e}")),
        ProcessError::Aborted => BackendError::permanent(Delivery::MaybeApplied, format!("{program} {ABORTED}")),
        ProcessError::Timeout => BackendError::transient(
            Delivery::MaybeApplied,
            format!("`{}` timed out after {}s", argv.join(" "), timeout.as_secs()),
        ),
    })
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
