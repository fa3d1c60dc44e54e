//! A second Ctrl-C: the programs running now are killed, and no new one starts (its own test
//! binary, since the switch is for the whole process).

use std::process::Command;
use std::time::{Duration, Instant};

use phoenix_backend::process::{ProcessError, abort_running, run_captured};

#[test]
fn aborting_kills_what_runs_and_refuses_what_comes() {
    let started = Instant::now();
    let running = std::thread::spawn(|| {
        let mut c = Command::new("sleep");
        c.arg("30");
        run_captured(c, None, Duration::from_secs(60))
    });
    // Once the program runs (a child of this process).
    let me = std::process::id().to_string();
    while !Command::new("pgrep").args(["-P", &me, "sleep"]).output().is_ok_and(|o| o.status.success()) {
        assert!(started.elapsed() < Duration::from_secs(10), "sleep never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(abort_running(), 1);
    assert_eq!(running.join().expect("thread"), Err(ProcessError::Aborted));
    assert!(started.elapsed() < Duration::from_secs(10), "the program was not killed");
    assert_eq!(run_captured(Command::new("true"), None, Duration::from_secs(10)), Err(ProcessError::Aborted));
}
