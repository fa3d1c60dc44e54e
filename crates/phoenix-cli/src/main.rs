//! The `phoenix` command.

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(phoenix_cli::run(std::env::args_os(), phoenix_cli::Io::Std, &phoenix_cli::backends::connect))
}
