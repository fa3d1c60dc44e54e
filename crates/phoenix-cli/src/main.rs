//! The `phoenix` command.

mod cli;
mod commands;
mod printer;
mod render;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::commands::{Outcome, not_implemented};
use crate::printer::Printer;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let printer = Printer::new(&cli.global);
    let dir = cli.global.config_dir.as_path();
    let outcome = match &cli.command {
        Command::Validate => commands::validate::run(&printer, dir),
        Command::Graph(args) => commands::graph::run(&printer, dir, args),
        Command::Schema(args) => commands::schema::run(&printer, args),
        Command::Completions(args) => commands::completions::run(&printer, args),
        Command::Plan => not_implemented(&printer, "plan"),
        Command::Apply => not_implemented(&printer, "apply"),
        Command::Status => not_implemented(&printer, "status"),
        Command::Destroy => not_implemented(&printer, "destroy"),
        Command::SetupHypervisor => not_implemented(&printer, "setup-hypervisor"),
    };
    match outcome {
        Outcome::Success => ExitCode::SUCCESS,
        Outcome::Failure => ExitCode::from(1),
        Outcome::NotImplemented => ExitCode::from(2),
    }
}
