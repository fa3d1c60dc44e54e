//! `phoenix validate`, and the validation every other command starts with.

use std::path::PathBuf;

use phoenix_config::Validation;
use phoenix_engine::planner::Validated;
use serde::Serialize;

use super::Outcome;
use crate::cli::{OutputFormat, WorkArgs};
use crate::printer::Printer;
use crate::printer::styles::{ERROR, OK};
use crate::render;

/// The features directory: `--features-dir`, or `<config-dir>/features`.
pub fn features_dir(cx: &super::Context<'_>, args: &WorkArgs) -> PathBuf {
    args.features_dir.clone().unwrap_or_else(|| cx.global.config_dir.join("features"))
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
pub fn run(cx: &super::Context<'_>, args: &WorkArgs) -> Outcome {
    let printer = cx.printer;
    let v = Validated::read(&cx.global.config_dir, &features_dir(cx, args)).validation;
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
