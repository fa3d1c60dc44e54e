//! `phoenix setup-hypervisor plan|apply`: the host modules' plans, with reasons, then their steps.

use std::fmt::Write as _;

use phoenix_engine::planner::Validated;
use phoenix_host::{Host, ModulePlan, RealHost};

use super::{Context, Outcome, unprepared, validate};
use crate::cli::{OutputFormat, SetupCommand, WorkArgs};
use crate::printer::styles::{BOLD, CHANGE, DIM, OK};
use crate::secrets::{SecretError, Secrets};

/// The plans for people: each module with work, its steps and their reasons, then notes.
pub fn plans_text(plans: &[ModulePlan]) -> String {
    let mut s = String::new();
    for p in plans.iter().filter(|p| !p.steps.is_empty()) {
        let _ = writeln!(s, "{CHANGE}~{CHANGE:#} {BOLD}{}{BOLD:#}", p.module);
        for st in &p.steps {
            let _ = writeln!(s, "    {CHANGE}>{CHANGE:#} {} {DIM}— {}{DIM:#}", st.summary(), st.reason);
        }
    }
    let steps: usize = plans.iter().map(|p| p.steps.len()).sum();
    let same = plans.iter().filter(|p| p.steps.is_empty()).count();
    if steps == 0 {
        let _ = writeln!(s, "No changes: the host matches the configuration ({same} module(s) checked).");
    } else {
        let with = plans.len() - same;
        let _ = writeln!(s, "\nPlan: {steps} step(s) in {with} module(s); {same} module(s) unchanged.");
    }
    for p in plans {
        for n in &p.notes {
            let _ = writeln!(s, "note: {}: {n}", p.module);
        }
    }
    s
}

/// Runs `phoenix setup-hypervisor`.
pub fn run(cx: &Context<'_>, cmd: &SetupCommand) -> Outcome {
    let (only, root, dry_run, detailed, allow_wipe) = match cmd {
        SetupCommand::Plan(a) => (a.only.as_deref(), &a.root, true, a.detailed_exitcode, &a.allow_wipe),
        SetupCommand::Apply(a) => (a.only.as_deref(), &a.root, a.dry_run, false, &a.allow_wipe),
    };
    let features = validate::features_dir(cx, &WorkArgs { features_dir: None });
    let validated = Validated::read(&cx.global.config_dir, &features);
    validate::print_diagnostics(cx.printer, &validated.validation);
    let estate = match validated.estate() {
        Ok(estate) => estate,
        Err(e) => return unprepared(cx, &e, &features),
    };
    let host = RealHost::rooted(root);
    let secrets = Secrets::from_process_env();
    // Errors name the reference, never a value.
    let resolve = |r: &str| secrets.resolve(r).map_err(SecretError::into_host_error);
    let modules = phoenix_host::modules(estate, only, allow_wipe);
    let mut plans = Vec::new();
    for m in &modules {
        match m.plan_on(&host, &resolve) {
            Ok(p) => plans.push(p),
            Err(e) => {
                cx.printer.error(&format!("{}: {}", m.name(), e.message), e.detail.as_deref());
                return Outcome::Failure;
            }
        }
    }
    match cx.printer.format {
        OutputFormat::Json => cx.printer.json(&serde_json::json!({ "modules": plans })),
        OutputFormat::Text => cx.printer.data(&plans_text(&plans)),
    }
    let pending = plans.iter().any(|p| !p.steps.is_empty());
    if dry_run {
        return if detailed && pending { Outcome::ChangesPending } else { Outcome::Success };
    }
    apply_plans(cx, &host, &plans, &resolve)
}

fn apply_plans(
    cx: &Context<'_>,
    host: &dyn Host,
    plans: &[ModulePlan],
    resolve: &phoenix_host::Resolver<'_>,
) -> Outcome {
    for p in plans.iter().filter(|p| !p.steps.is_empty()) {
        match phoenix_host::apply(host, p, resolve) {
            Ok(n) => cx.printer.info_text(&format!("{OK}✓{OK:#} {}: {n} step(s) applied\n", p.module)),
            Err(e) => {
                cx.printer.error(
                    &e.to_string(),
                    Some(&match &e.error.detail {
                        Some(d) if !d.is_empty() => {
                            format!("{d}\n  the steps before it stay applied; fix the cause and apply again")
                        }
                        _ => "the steps before it stay applied; fix the cause and apply again".to_string(),
                    }),
                );
                return Outcome::Failure;
            }
        }
    }
    Outcome::Success
}
