//! `phoenix completions`: shell completion scripts.

use clap::CommandFactory;

use super::Outcome;
use crate::cli::{Cli, CompletionsArgs};
use crate::printer::Printer;

/// Runs `phoenix completions`.
pub fn run(printer: &Printer, args: &CompletionsArgs) -> Outcome {
    let mut buf = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "phoenix", &mut buf);
    printer.data(&String::from_utf8_lossy(&buf));
    Outcome::Success
}
