//! Checks the requests every PVE test double of a test run logged (`PHOENIX_PVE_REQUEST_LOG`)
//! against the schema of the version each was sent to and against the other version's.
//!
//! Usage: `check-requests <dir>`. Exits 0 when requests were checked and none failed; 1 when one
//! failed, or when the directory holds no request at all (the recording is broken); 2 when the
//! directory cannot be read.

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(dir), None) = (args.next(), args.next()) else {
        let _ = writeln!(std::io::stderr(), "usage: check-requests <request-log-directory>");
        return ExitCode::from(2);
    };
    let dir = std::path::PathBuf::from(dir);
    let report = match phoenix_pve_double::requestlog::check_dir(&dir) {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "check-requests: {e}");
            return ExitCode::from(2);
        }
    };
    let mut err = std::io::stderr().lock();
    for failure in &report.failures {
        let _ = writeln!(err, "{failure}");
    }
    if report.checked == 0 {
        let _ = writeln!(
            err,
            "check-requests: no request logged in {} ({} files): the doubles' request logging is broken",
            dir.display(),
            report.files
        );
        return ExitCode::FAILURE;
    }
    if !report.failures.is_empty() {
        let _ = writeln!(
            err,
            "check-requests: {} of the {} requests logged in {} files failed the schema check",
            report.failures.len(),
            report.checked,
            report.files
        );
        return ExitCode::FAILURE;
    }
    let _ = writeln!(
        std::io::stdout(),
        "check-requests: {} requests from {} doubles valid for the schemas of PVE 8.4.5 and 9.2.3",
        report.checked,
        report.files
    );
    ExitCode::SUCCESS
}
