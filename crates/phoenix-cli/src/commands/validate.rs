//! `phoenix validate`, and the validation every other command starts with.

use std::path::Path;

use phoenix_config::{RealFilesystem, Validation};
use serde::Serialize;

use super::Outcome;
use crate::cli::OutputFormat;
use crate::printer::Printer;
use crate::printer::styles::{ERROR, OK};
use crate::render;

/// Reads and validates the configuration directory.
pub fn run_validation(dir: &Path) -> Validation {
    let fs = RealFilesystem;
    let (sources, early) = phoenix_config::load(dir, &fs);
    phoenix_config::validate(&sources, early, &fs)
}

/// Prints the diagnostics as text on stderr (warnings only unless quiet).
pub fn print_diagnostics(printer: &Printer, v: &Validation) {
    for r in &v.reports {
        let text = render::diagnostic(r, printer.verbose > 0);
        match r.severity {
            phoenix_config::Severity::Error => printer.error_text(&text),
            phoenix_config::Severity::Warning => printer.info_text(&text),
        }
    }
}

#[derive(Serialize)]
struct JsonResult<'a> {
    valid: bool,
    errors: usize,
    warnings: usize,
    guests: usize,
    diagnostics: &'a [phoenix_config::Report],
}

/// Runs `phoenix validate`.
pub fn run(cx: &super::Context<'_>) -> Outcome {
    let printer = cx.printer;
    let v = run_validation(&cx.global.config_dir);
    let (errors, warnings) = (v.errors(), v.warnings());
    if printer.format == OutputFormat::Json {
        printer.json(&JsonResult {
            valid: errors == 0,
            errors,
            warnings,
            guests: v.guest_count,
            diagnostics: &v.reports,
        });
        return if errors == 0 { Outcome::Success } else { Outcome::Failure };
    }
    print_diagnostics(printer, &v);
    let warn_text = match warnings {
        0 => String::new(),
        1 => ", 1 warning".to_string(),
        n => format!(", {n} warnings"),
    };
    if errors > 0 {
        let plural = if errors == 1 { "" } else { "s" };
        printer.error_text(&format!(
            "{ERROR}error{ERROR:#}: the configuration is invalid: {errors} error{plural}{warn_text}\n"
        ));
        return Outcome::Failure;
    }
    let estate = v.estate.as_ref();
    let containers = estate.map_or(0, |e| e.guests.values().filter(|g| g.as_lxc().is_some()).count());
    let vms = v.guest_count - containers;
    if !printer.quiet {
        printer.data(&format!(
            "{OK}ok{OK:#}: the configuration is valid: {containers} container(s), {vms} VM(s){warn_text}\n"
        ));
    }
    Outcome::Success
}
