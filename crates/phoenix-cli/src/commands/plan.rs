//! `phoenix plan`: what apply would change, guest by guest, and why.

use super::{Context, Outcome, load_work, observe_and_plan};
use crate::cli::{OutputFormat, PlanArgs};
use crate::render;

/// Prints the plan's issues; true when there are some.
pub fn report_issues(cx: &Context<'_>, plan: &phoenix_plan::Plan) -> bool {
    for issue in &plan.issues {
        cx.printer.error(&issue.message, Some(&issue.hint));
    }
    !plan.issues.is_empty()
}

/// Runs `phoenix plan`.
pub fn run(cx: &Context<'_>, args: &PlanArgs) -> Outcome {
    let mut work = match load_work(cx, &args.work, &args.targets) {
        Ok(w) => w,
        Err(o) => return o,
    };
    super::apply::note_running_apply(cx, work.planner.estate());
    let plan = match observe_and_plan(cx, &mut work) {
        Ok(planned) => planned.plan,
        Err(o) => return o,
    };
    match cx.printer.format {
        OutputFormat::Json => cx.printer.json(&plan),
        OutputFormat::Text => cx.printer.data(&render::plan_text(&plan)),
    }
    if report_issues(cx, &plan) {
        return Outcome::Failure;
    }
    if args.detailed_exitcode && !plan.is_empty() { Outcome::ChangesPending } else { Outcome::Success }
}
