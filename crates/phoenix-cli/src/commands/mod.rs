//! One module per command; each returns how it ended, mapped to the exit status in `lib.rs`.

pub mod adopt;
pub mod apply;
pub mod completions;
pub mod destroy;
pub mod features;
pub mod graph;
pub mod plan;
pub mod schema;
pub mod setup;
pub mod status;
pub mod upgrade;
pub mod validate;

use std::path::Path;

use phoenix_backend::{Backend, GuestId};
use phoenix_engine::planner::{Planned, Planner, PrepareError, Validated};

use crate::backends::{Connect, ConnectError};
use crate::cli::{GlobalArgs, WorkArgs};
use crate::printer::Printer;

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Success,
    /// Exit 1: invalid configuration, or the operation failed.
    Failure,
    /// Exit 2: the command or backend is not implemented yet.
    NotImplemented,
    /// Exit 2 with `plan --detailed-exitcode`: changes are pending.
    ChangesPending,
}

/// What every command gets.
pub struct Context<'a> {
    /// Output.
    pub printer: &'a Printer,
    /// The global options.
    pub global: &'a GlobalArgs,
    /// How to reach the backend.
    pub connect: &'a Connect,
}

/// What a command that changes what a user has asks before it does.
pub struct Confirmation<'a> {
    /// The error when nobody can answer (no terminal and no `--yes`).
    pub refusal: &'a str,
    /// Its hint.
    pub hint: &'a str,
    /// The question, answered by typing `yes`.
    pub question: &'a str,
    /// Said when the answer is not `yes`.
    pub declined: &'a str,
}

/// Whether to go on: at once with `--yes`; otherwise only when a person at a terminal types
/// `yes`. Says why not when it does not.
pub fn confirmed(cx: &Context<'_>, yes: bool, c: &Confirmation<'_>) -> bool {
    if yes {
        return true;
    }
    if !cx.printer.interactive {
        cx.printer.error(c.refusal, Some(c.hint));
        return false;
    }
    cx.printer.error_text(&format!("{} Type `yes` to confirm: ", c.question));
    let mut answer = String::new();
    let _ = std::io::BufRead::read_line(&mut std::io::stdin().lock(), &mut answer);
    if answer.trim() != "yes" {
        cx.printer.error_text(&format!("{}\n", c.declined));
        return false;
    }
    true
}

/// Everything the lifecycle commands start from: the planner of the validated configuration
/// (its desired state with the prepared customizations) and the backend.
pub struct Work {
    /// The configuration, ready to plan (restricted to the targets, when some are given).
    pub planner: Planner,
    /// The backend.
    pub backend: Box<dyn Backend>,
}

/// Reports why the configuration cannot be planned.
pub fn unprepared(cx: &Context<'_>, e: &PrepareError, features_dir: &Path) -> Outcome {
    match e {
        PrepareError::Invalid(_) => cx.printer.error(&e.to_string(), Some("`phoenix validate` lists every problem")),
        PrepareError::Library(_) => cx.printer.error(&e.to_string(), None),
        PrepareError::Customize(_) => cx.printer.error(&e.to_string(), Some(&format!("features are read from {} (one directory per feature, with feature.json and install.sh); set another with --features-dir", features_dir.display()))),
        PrepareError::UnknownTarget(id) => cx.printer.error(&format!("--target {id}: no guest has this ID"), None),
    }
    Outcome::Failure
}

/// Validates the configuration, connects to the backend, and prepares features and scripts.
pub fn load_work(cx: &Context<'_>, args: &WorkArgs, targets: &[GuestId]) -> Result<Work, Outcome> {
    let features_dir = validate::features_dir(cx, args);
    let validated = Validated::read(&cx.global.config_dir, &features_dir);
    validate::print_diagnostics(cx.printer, &validated.validation);
    let estate = validated.estate().map_err(|e| unprepared(cx, &e, &features_dir))?;
    let connected = (cx.connect)(estate).map_err(|e| {
        cx.printer.error(&e.to_string(), e.hint());
        match e {
            ConnectError::NotImplemented(_) => Outcome::NotImplemented,
            ConnectError::Missing | ConnectError::Failed { .. } => Outcome::Failure,
        }
    })?;
    for note in &connected.notes {
        cx.printer.info_text(&format!("note: {note}\n"));
    }
    let planner = validated
        .feature_library()
        .and_then(|library| validated.prepare(&library, targets))
        .map_err(|e| unprepared(cx, &e, &features_dir))?;
    Ok(Work { planner, backend: connected.backend })
}

/// Observes the backend and plans (see [`Planner::plan`]), reporting a failure to observe.
pub fn observe_and_plan(cx: &Context<'_>, work: &mut Work) -> Result<Planned, Outcome> {
    let backend = work.backend.as_ref();
    work.planner.plan(backend, &phoenix_engine::health::NetProber).map_err(|e| {
        cx.printer.error(&format!("cannot read the {} backend: {e}", backend.name()), e.detail.as_deref());
        Outcome::Failure
    })
}
