//! All output goes through the printer: data to stdout, diagnostics, progress and messages to
//! stderr, colours only where wanted. The streams are given to it, so tests can read them. Every
//! secret value the process has resolved is scrubbed from all of it ([`crate::redact`]).

use std::io::Write;
use std::sync::{Mutex, PoisonError};

use anstyle::{AnsiColor, Style};

use crate::cli::{GlobalArgs, OutputFormat};

/// A stream of output.
pub type Stream = Box<dyn Write + Send>;

/// Where and how output is written.
pub struct Printer {
    /// Only errors.
    pub quiet: bool,
    /// Extra detail level.
    pub verbose: u8,
    /// Text or JSON.
    pub format: OutputFormat,
    /// Progress lines may be drawn (stderr is a terminal and `--no-progress` was not given).
    pub progress: bool,
    /// A person can answer questions (stdin and stderr are terminals).
    pub interactive: bool,
    out: Mutex<Stream>,
    err: Mutex<Stream>,
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
    /// Success, and things to create.
    pub const OK: Style = AnsiColor::Green.on_default().bold();
    /// Things to change.
    pub const CHANGE: Style = AnsiColor::Yellow.on_default();
    /// Less important text.
    pub const DIM: Style = Style::new().dimmed();
}

impl Printer {
    /// A printer writing to the given streams.
    pub fn new(args: &GlobalArgs, out: Stream, err: Stream, interactive: bool) -> Printer {
        Printer {
            quiet: args.quiet,
            verbose: args.verbose,
            format: args.output,
            progress: interactive && !args.no_progress && args.output == OutputFormat::Text,
            interactive,
            out: Mutex::new(out),
            err: Mutex::new(err),
        }
    }

    /// Writes data to stdout.
    pub fn data(&self, text: &str) {
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = out.write_all(crate::redact::scrub(text).as_bytes());
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
        let mut err = self.err.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = err.write_all(crate::redact::scrub(text).as_bytes());
        let _ = err.flush();
    }

    /// Writes a message to stderr unless quiet.
    pub fn info_text(&self, text: &str) {
        if !self.quiet {
            self.error_text(text);
        }
    }

    /// Reports an error: `error: ...` with an optional hint.
    pub fn error(&self, message: &str, hint: Option<&str>) {
        use styles::{BOLD, ERROR};
        let mut text = format!("{ERROR}error{ERROR:#}: {message}\n");
        if let Some(h) = hint {
            text.push_str(&format!("  {BOLD}hint{BOLD:#}: {h}\n"));
        }
        self.error_text(&text);
    }
}
