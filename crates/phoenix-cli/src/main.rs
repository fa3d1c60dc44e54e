//! The `phoenix` command.

use std::process::ExitCode;

/// mimalloc instead of the C library's allocator: a plan of a large estate makes and frees many
/// small values, and spent about a third of its instructions in malloc and free.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    ExitCode::from(phoenix_cli::run(std::env::args_os(), phoenix_cli::Io::Std, &phoenix_cli::backends::connect))
}
