//! The `phoenix` command line as a library: [`run`] takes the arguments, the output streams and
//! the function that connects to a backend, so that tests can pass their own.

pub mod backends;
pub mod cli;
mod commands;
mod printer;
mod progress;
pub mod redact;
mod render;
pub mod secrets;
pub mod vault;

use std::ffi::OsString;

use clap::Parser;

pub use backends::{Connect, ConnectError, Connected};
pub use printer::Stream;

use crate::cli::{Cli, Command};
use crate::commands::{Context, Outcome};
use crate::printer::Printer;

/// Where output goes.
pub enum Io {
    /// The process's own streams, with colours as `--color` and `NO_COLOR` say.
    Std,
    /// Given streams (colours are stripped).
    Custom {
        /// Standard output.
        out: Stream,
        /// Standard error.
        err: Stream,
        /// A person is at a terminal (progress lines, confirmation prompts).
        interactive: bool,
    },
}

impl Io {
    /// The streams, once the colour choice is known.
    fn open(self) -> (Stream, Stream, bool) {
        use std::io::IsTerminal;
        match self {
            Io::Std => (
                buffered(std::io::stdout()),
                buffered(std::io::stderr()),
                std::io::stderr().is_terminal() && std::io::stdin().is_terminal(),
            ),
            Io::Custom { out, err, interactive } => {
                (Box::new(anstream::StripStream::new(out)), Box::new(anstream::StripStream::new(err)), interactive)
            }
        }
    }
}

/// A standard stream, buffered (the printer flushes after each message, so a long plan is a few
/// large writes rather than one per styled piece), with colours kept or stripped as the global
/// colour choice and the stream decide.
fn buffered<S: anstream::stream::RawStream + Send + 'static>(raw: S) -> Stream {
    let colour = anstream::AutoStream::choice(&raw) != anstream::ColorChoice::Never;
    let buffered: Stream = Box::new(std::io::BufWriter::with_capacity(1 << 16, raw));
    if colour { buffered } else { Box::new(anstream::StripStream::new(buffered)) }
}

/// Runs the command line and returns the exit status (documented in `--help` and the README).
pub fn run(args: impl IntoIterator<Item = impl Into<OsString> + Clone>, io: Io, connect: &Connect) -> u8 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let (mut out, mut err, _) = io.open();
            let text = e.render().ansi().to_string();
            let stream = if e.use_stderr() { &mut err } else { &mut out };
            let _ = stream.write_all(text.as_bytes());
            return u8::try_from(e.exit_code()).unwrap_or(2);
        }
    };
    let choice = match cli.global.color {
        cli::ColorMode::Auto => anstream::ColorChoice::Auto,
        cli::ColorMode::Always => anstream::ColorChoice::Always,
        cli::ColorMode::Never => anstream::ColorChoice::Never,
    };
    choice.write_global();
    let (out, err, interactive) = io.open();
    let printer = Printer::new(&cli.global, out, err, interactive);
    let cx = Context { printer: &printer, global: &cli.global, connect };
    let outcome = match &cli.command {
        Command::Validate(args) => commands::validate::run(&cx, args),
        Command::Graph(args) => commands::graph::run(&cx, args),
        Command::Features(args) => commands::features::run(&cx, args),
        Command::Plan(args) => commands::plan::run(&cx, args),
        Command::Apply(args) => commands::apply::run(&cx, args),
        Command::Status(args) => commands::status::run(&cx, args),
        Command::Destroy(args) => commands::destroy::run(&cx, args),
        Command::Adopt(args) => commands::adopt::run(&cx, args),
        Command::Schema(args) => commands::schema::run(&printer, args),
        Command::Completions(args) => commands::completions::run(&printer, args),
        Command::Config(cli::ConfigCommand::Upgrade(args)) => commands::upgrade::run(&cx, args),
        Command::SetupHypervisor(cmd) => commands::setup::run(&cx, cmd),
        Command::Template(cli::TemplateCommand::Busybox { out, busybox }) => {
            match phoenix_lxc::template::build_busybox(busybox, out) {
                Ok(()) => {
                    printer.info_text(&format!("wrote {}\n", out.display()));
                    Outcome::Success
                }
                Err(e) => {
                    printer.error(
                        &e.to_string(),
                        Some("install busybox-static (apt-get install busybox-static), or pass --busybox PATH"),
                    );
                    Outcome::Failure
                }
            }
        }
        Command::Template(cli::TemplateCommand::Debian { out, suite, mirror, include }) => {
            let template = phoenix_lxc::template::DebianTemplate {
                suite: suite.clone(),
                mirror: mirror.clone(),
                include: include.clone(),
            };
            match phoenix_lxc::template::build_debian(&template, out) {
                Ok(phoenix_lxc::template::Built::Written) => {
                    printer.info_text(&format!("wrote {}\n", out.display()));
                    Outcome::Success
                }
                Ok(phoenix_lxc::template::Built::Reused) => {
                    printer.info_text(&format!("{} was built from the same inputs already; kept\n", out.display()));
                    Outcome::Success
                }
                Err(e) => {
                    printer.error(&e.to_string(), None);
                    Outcome::Failure
                }
            }
        }
    };
    match outcome {
        Outcome::Success => 0,
        Outcome::Failure => 1,
        Outcome::NotImplemented | Outcome::ChangesPending => 2,
    }
}

use std::io::Write as _;
