//! All output goes through the printer: data to stdout, diagnostics and messages to stderr,
//! colours only where wanted.

use std::io::Write;

use anstyle::{AnsiColor, Style};

use crate::cli::{ColorMode, GlobalArgs, OutputFormat};

/// Where and how output is written.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    /// Only errors.
    pub quiet: bool,
    /// Extra detail level.
    pub verbose: u8,
    /// Text or JSON.
    pub format: OutputFormat,
}

/// Styles used in text output.
pub mod styles {
    use super::*;
    /// `error`
    pub const ERROR: Style = AnsiColor::Red.on_default().bold();
    /// `warning`
    pub const WARNING: Style = AnsiColor::Yellow.on_default().bold();
    /// Gutters and arrows.
    pub const GUTTER: Style = AnsiColor::Blue.on_default().bold();
    /// Emphasis.
    pub const BOLD: Style = Style::new().bold();
    /// Success.
    pub const OK: Style = AnsiColor::Green.on_default().bold();
}

impl Printer {
    /// A printer for the global options; sets the colour choice for the process.
    pub fn new(args: &GlobalArgs) -> Printer {
        let choice = match args.color {
            ColorMode::Auto => anstream::ColorChoice::Auto,
            ColorMode::Always => anstream::ColorChoice::Always,
            ColorMode::Never => anstream::ColorChoice::Never,
        };
        choice.write_global();
        Printer { quiet: args.quiet, verbose: args.verbose, format: args.output }
    }

    /// Writes data to stdout.
    pub fn data(&self, text: &str) {
        let mut out = anstream::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }

    /// Writes a JSON document to stdout.
    pub fn json(&self, value: &impl serde::Serialize) {
        let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
        text.push('\n');
        self.data(&text);
    }

    /// Writes a message to stderr (also when quiet: used for errors).
    pub fn error_text(&self, text: &str) {
        let mut err = anstream::stderr().lock();
        let _ = err.write_all(text.as_bytes());
        let _ = err.flush();
    }

    /// Writes a message to stderr unless quiet.
    pub fn info_text(&self, text: &str) {
        if !self.quiet {
            self.error_text(text);
        }
    }
}
