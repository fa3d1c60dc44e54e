//! `phoenix destroy`: dependents first, templates only when nothing cloned from them remains.

use phoenix_engine::destroy::plan_destroy;
use phoenix_engine::{ApplyOptions, Engine, Silent};

use super::apply::{INTERRUPTED, lock};
use super::{Confirmation, Context, Outcome, confirmed, load_work};
use crate::cli::{DestroyArgs, OutputFormat};

/// Runs `phoenix destroy`.
pub fn run(cx: &Context<'_>, args: &DestroyArgs) -> Outcome {
    let work = match load_work(cx, &args.run.work, &[]) {
        Ok(w) => w,
        Err(o) => return o,
    };
    let desired = work.planner.desired();
    let observed = match work.planner.observe(work.backend.as_ref()) {
        Ok(o) => o,
        Err(e) => {
            cx.printer.error(&format!("cannot read the {} backend: {e}", work.backend.name()), None);
            return Outcome::Failure;
        }
    };
    let order = match plan_destroy(desired, &observed.observation, &args.ids, args.force) {
        Ok(o) => o,
        Err(e) => {
            cx.printer.error(&e.to_string(), None);
            return Outcome::Failure;
        }
    };
    let list: Vec<String> = order
        .iter()
        .map(|id| match desired.guests.get(id) {
            Some(g) => format!("{id} ({})", g.name),
            None => id.to_string(),
        })
        .collect();
    if cx.printer.format == OutputFormat::Json {
        cx.printer.json(&serde_json::json!({ "destroy": order, "dry_run": args.dry_run }));
    } else if order.is_empty() {
        cx.printer.data("Nothing to destroy.\n");
    } else {
        cx.printer.data(&format!("Destroy, in this order: {}\n", list.join(", ")));
    }
    if order.is_empty() {
        return Outcome::Success;
    }
    if args.dry_run {
        cx.printer.info_text("dry run: nothing was changed\n");
        return Outcome::Success;
    }
    let question = format!("Destroy {} guest(s) and their data?", order.len());
    let confirmation = Confirmation {
        refusal: "refusing to destroy guests without confirmation",
        hint: "nobody can answer here: pass --yes to confirm",
        question: &question,
        declined: "Not confirmed; nothing was destroyed.",
    };
    if !confirmed(cx, args.yes, &confirmation) {
        return Outcome::Failure;
    }
    let _lock = match lock(cx, work.planner.estate(), args.run.wait) {
        Ok(l) => l,
        Err(o) => return o,
    };
    let engine = Engine {
        backend: work.backend.as_ref(),
        prober: &phoenix_engine::health::NetProber,
        reporter: &Silent,
        cancel: &INTERRUPTED,
    };
    match engine.destroy(&order, &ApplyOptions::default()) {
        Ok(()) => {
            cx.printer.info_text(&format!("Destroyed {} guest(s).\n", order.len()));
            Outcome::Success
        }
        Err(e) => {
            cx.printer.error(&e.to_string(), None);
            Outcome::Failure
        }
    }
}
