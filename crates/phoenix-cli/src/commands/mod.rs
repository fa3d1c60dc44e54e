//! One module per command; each returns the process's exit status.

pub mod completions;
pub mod graph;
pub mod schema;
pub mod validate;

use crate::printer::Printer;

/// How a command ended, mapped to the documented exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Success,
    /// Exit 1: invalid configuration, or the operation failed.
    Failure,
    /// Exit 2: the command is not implemented yet (or the command line was wrong).
    NotImplemented,
}

/// Says that a command is not implemented yet, and does nothing else.
pub fn not_implemented(printer: &Printer, command: &str) -> Outcome {
    printer.error_text(&format!(
        "error: `phoenix {command}` is not implemented yet; nothing was done\n  = hint: `phoenix validate` and `phoenix graph` work today\n"
    ));
    Outcome::NotImplemented
}
