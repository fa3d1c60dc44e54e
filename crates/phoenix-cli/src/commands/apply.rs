//! `phoenix apply`: executes exactly the plan it shows.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use phoenix_engine::lock::ApplyLock;
use phoenix_engine::{ApplyOptions, ApplyReport, Engine, GuestOutcome};
use serde::Serialize;

use super::plan::report_issues;
use super::{Context, Outcome, load_work, observe_and_plan};
use crate::backends::lock_name;
use crate::cli::{ApplyArgs, OutputFormat};
use crate::printer::styles::{ERROR, OK};
use crate::progress::Progress;
use crate::render;

/// Set by Ctrl-C (or SIGTERM, SIGHUP): no new step starts, running steps finish.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// How many interrupting signals came.
static SIGNALS: AtomicUsize = AtomicUsize::new(0);

/// Routes Ctrl-C, SIGTERM and SIGHUP to [`INTERRUPTED`]: the first stops new steps and lets the
/// running ones finish; the second kills the commands the running steps wait for (their steps
/// fail, saying so). The commands run in their own process groups, so a Ctrl-C typed at the
/// terminal reaches Phoenix alone. Installing twice fails harmlessly: the first handler already
/// does the same.
pub fn catch_interrupt() {
    let _ = ctrlc::set_handler(|| {
        let mut stderr = std::io::stderr();
        if SIGNALS.fetch_add(1, Ordering::SeqCst) == 0 {
            INTERRUPTED.store(true, Ordering::SeqCst);
            let _ = writeln!(
                stderr,
                "interrupted: no new step starts; running steps finish (interrupt again to abort them)"
            );
        } else {
            let killed = phoenix_backend::process::abort_running();
            let _ = writeln!(stderr, "aborting: {killed} running command(s) killed; their steps fail");
        }
    });
}

/// Says so when an apply to the configuration's backend is running now: what a read-only
/// command shows is then a moment of that run.
pub fn note_running_apply(cx: &Context<'_>, estate: &phoenix_config::Estate) {
    if let Some(holder) = phoenix_engine::lock::holder(&cx.global.lock_dir.join(lock_name(estate))) {
        cx.printer.info_text(&format!(
            "note: another phoenix run is applying to this backend now ({holder}): what follows is a moment of \
             it; run again once it has finished\n"
        ));
    }
}

/// Takes the apply lock of the configuration's backend.
pub fn lock(cx: &Context<'_>, estate: &phoenix_config::Estate, wait: u64) -> Result<ApplyLock, Outcome> {
    let path = cx.global.lock_dir.join(lock_name(estate));
    ApplyLock::acquire(&path, Duration::from_secs(wait)).map_err(|e| {
        cx.printer.error(&e.to_string(), Some("wait for it to finish, or pass --wait SECONDS"));
        Outcome::Failure
    })
}

/// The apply lock for a run that changes something; none for a dry run, which only reads.
pub fn lock_unless_dry_run(
    cx: &Context<'_>,
    estate: &phoenix_config::Estate,
    wait: u64,
    dry_run: bool,
) -> Result<Option<ApplyLock>, Outcome> {
    if dry_run { Ok(None) } else { lock(cx, estate, wait).map(Some) }
}

#[derive(Serialize)]
struct JsonOutcome {
    id: u32,
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

fn outcome_name(o: &GuestOutcome) -> (&'static str, Option<String>) {
    match o {
        GuestOutcome::Unchanged => ("unchanged", None),
        GuestOutcome::Created => ("created", None),
        GuestOutcome::Changed => ("changed", None),
        GuestOutcome::Failed(m) => ("failed", Some(m.clone())),
        GuestOutcome::Skipped(m) => ("skipped", Some(m.clone())),
        GuestOutcome::NotStarted => ("not-started", None),
        GuestOutcome::RolledBack(m) => ("rolled-back", Some(m.clone())),
    }
}

/// The summary: counts and duration, then every failure with its message.
fn summary(cx: &Context<'_>, report: &ApplyReport) {
    if cx.printer.format == OutputFormat::Json {
        let rows: Vec<JsonOutcome> = report
            .outcomes
            .iter()
            .map(|(id, o)| {
                let (outcome, message) = outcome_name(o);
                JsonOutcome { id: *id, outcome, message }
            })
            .collect();
        cx.printer.json(&serde_json::json!({ "guests": rows, "seconds": report.took.as_secs_f64(), "interrupted": report.interrupted }));
        return;
    }
    let count = |name: &str| report.outcomes.values().filter(|o| outcome_name(o).0 == name).count();
    let failed = count("failed") + count("rolled-back");
    let style = if report.failed() { ERROR } else { OK };
    cx.printer.data(&format!(
        "{style}Apply {}{style:#}: {} created, {} changed, {} unchanged, {failed} failed, {} skipped, {} not started, in {:.1}s.\n",
        if report.interrupted { "interrupted" } else if report.failed() { "failed" } else { "complete" },
        count("created"),
        count("changed"),
        count("unchanged"),
        count("skipped"),
        count("not-started"),
        report.took.as_secs_f64()
    ));
    for o in report.outcomes.values() {
        if let GuestOutcome::Failed(m) | GuestOutcome::RolledBack(m) = o {
            cx.printer.error(m, None);
        }
    }
}

/// When the plan installs the gateway's configuration and a service asks for TLS: reads the
/// certificate file and resolves the key's reference, and stages both with the gateway's job.
/// Neither is printed; an error names the file or the reference only.
fn gateway_tls(cx: &Context<'_>, plan: &phoenix_plan::Plan, work: &mut super::Work) -> Result<(), Outcome> {
    let Some(gw) = work.planner.gateway() else { return Ok(()) };
    let Some(tls) = &gw.rendered.tls else { return Ok(()) };
    let id = gw.rendered.guest;
    let runs = plan.guest(id).is_some_and(|g| {
        g.steps.iter().any(
            |s| matches!(&s.action, phoenix_plan::Action::Customize { key, .. } if key == phoenix_engine::gateway::KEY),
        )
    });
    if !runs {
        return Ok(());
    }
    let certificate = std::fs::read(&tls.certificate_file).map_err(|e| {
        cx.printer.error(&format!("cannot read the gateway's certificate {}: {e}", tls.certificate_file), None);
        Outcome::Failure
    })?;
    let key = crate::secrets::Secrets::from_process_env().resolve(&tls.key.0).map_err(|e| {
        cx.printer.error(&format!("the gateway's TLS key: {}", e.message), e.hint.as_deref());
        Outcome::Failure
    })?;
    let mut key = key.into_bytes();
    key.push(b'\n');
    work.planner.add_gateway_tls(certificate, key);
    Ok(())
}

/// Runs `phoenix apply`.
pub fn run(cx: &Context<'_>, args: &ApplyArgs) -> Outcome {
    // From the start: an interrupt while the plan is made means nothing is applied.
    catch_interrupt();
    let mut work = match load_work(cx, &args.run.work, &args.targets) {
        Ok(w) => w,
        Err(o) => return o,
    };
    let _lock = match lock_unless_dry_run(cx, work.planner.estate(), args.run.wait, args.dry_run) {
        Ok(l) => l,
        Err(o) => return o,
    };
    let plan = match observe_and_plan(cx, &mut work) {
        Ok(planned) => planned.plan,
        Err(o) => return o,
    };
    if cx.printer.format == OutputFormat::Text {
        cx.printer.data(&render::plan_text(&plan));
    }
    if report_issues(cx, &plan) {
        return Outcome::Failure;
    }
    if args.dry_run {
        if cx.printer.format == OutputFormat::Json {
            cx.printer.json(&plan);
        }
        cx.printer.info_text("dry run: nothing was changed\n");
        return Outcome::Success;
    }
    if plan.is_empty() {
        if cx.printer.format == OutputFormat::Json {
            summary(
                cx,
                &ApplyReport {
                    outcomes: plan.guests.iter().map(|g| (g.id, GuestOutcome::Unchanged)).collect(),
                    ..ApplyReport::default()
                },
            );
        }
        return Outcome::Success;
    }
    if let Err(o) = gateway_tls(cx, &plan, &mut work) {
        return o;
    }
    let progress = Progress::new(cx.printer, &plan);
    let engine = Engine {
        backend: work.backend.as_ref(),
        prober: &phoenix_engine::health::NetProber,
        reporter: &progress,
        cancel: &INTERRUPTED,
    };
    let options = ApplyOptions {
        jobs: usize::from(args.jobs),
        per_node: usize::from(args.per_node),
        keep_going: args.keep_going,
        rollback: work.planner.estate().hypervisor.behavior.as_ref().is_some_and(|b| b.rollback_on_failure),
        ..ApplyOptions::default()
    };
    let report = engine.apply(work.planner.desired(), &plan, work.planner.jobs(), &options);
    summary(cx, &report);
    if report.failed() { Outcome::Failure } else { Outcome::Success }
}
