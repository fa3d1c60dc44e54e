//! Diagnostics as text: `error[code]: message`, the place, the line with a marker, hints and notes.

use std::fmt::Write;

use phoenix_config::diagnostic::{Location, Report, Severity};

use crate::printer::styles::{BOLD, ERROR, GUTTER, WARNING};

/// Renders one diagnostic, ending with a blank line.
pub fn diagnostic(r: &Report, verbose: bool) -> String {
    let mut s = String::new();
    let (label, style) = match r.severity {
        Severity::Error => ("error", ERROR),
        Severity::Warning => ("warning", WARNING),
    };
    let _ = writeln!(s, "{style}{label}[{}]{style:#}{BOLD}: {}{BOLD:#}", r.code, r.message);
    let width = r.location.as_ref().map_or(1, |l| l.line.to_string().len());
    let pad = " ".repeat(width);
    if let Some(l) = &r.location {
        let _ = writeln!(s, "{pad}{GUTTER}-->{GUTTER:#} {}{}", place(l), at_path(&l.path));
        let _ = writeln!(s, "{pad} {GUTTER}|{GUTTER:#}");
        let _ = writeln!(s, "{GUTTER}{:>width$} |{GUTTER:#} {}", l.line, l.source_line);
        let marker = format!("{}{}", " ".repeat(l.marker_column - 1), "^".repeat(l.width.min(60)));
        let _ = writeln!(s, "{pad} {GUTTER}|{GUTTER:#} {style}{marker}{style:#}");
    }
    if let Some(h) = &r.hint {
        let _ = writeln!(s, "{pad} {GUTTER}={GUTTER:#} {BOLD}hint{BOLD:#}: {h}");
    }
    if verbose {
        let _ = writeln!(s, "{pad} {GUTTER}={GUTTER:#} {BOLD}{}{BOLD:#}: {}", r.code, r.code.description());
    }
    for n in &r.notes {
        let _ = writeln!(
            s,
            "{pad} {GUTTER}={GUTTER:#} {BOLD}note{BOLD:#}: {}: {}{}",
            n.message,
            place(&n.location),
            at_path(&n.location.path)
        );
    }
    s.push('\n');
    s
}

fn place(l: &Location) -> String {
    format!("{}:{}:{}", l.file.display(), l.line, l.column)
}

/// ` at $.path`, or nothing for the root of a file.
fn at_path(path: &str) -> String {
    if path == "$" { String::new() } else { format!(" at {path}") }
}
