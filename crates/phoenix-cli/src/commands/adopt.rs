//! `phoenix adopt`: guests Phoenix did not create become Phoenix's as they are. Everything is
//! surveyed first (read only: the backend, the guests' markers, the probes); a dry run stops
//! there, and otherwise the engine's executor writes the markers and marks each guest.

use phoenix_engine::adopt::{AdoptOptions, survey};
use phoenix_engine::{ApplyOptions, Engine, Silent};

use super::apply::{INTERRUPTED, lock_unless_dry_run};
use super::{Context, Outcome, load_work};
use crate::cli::{AdoptArgs, OutputFormat};
use crate::render;

/// Runs `phoenix adopt`.
pub fn run(cx: &Context<'_>, args: &AdoptArgs) -> Outcome {
    let work = match load_work(cx, &args.run.work, &[]) {
        Ok(w) => w,
        Err(o) => return o,
    };
    let (estate, desired) = (work.planner.estate(), work.planner.desired());
    let _lock = match lock_unless_dry_run(cx, estate, args.run.wait, args.dry_run) {
        Ok(l) => l,
        Err(o) => return o,
    };
    let backend = work.backend.as_ref();
    let observed = match backend.observe() {
        Ok(o) => o,
        Err(e) => {
            cx.printer.error(&format!("cannot read the {} backend: {e}", backend.name()), e.detail.as_deref());
            return Outcome::Failure;
        }
    };
    let options = AdoptOptions {
        assume_customized: args.assume_customized,
        update_snapshots_kept: estate.hypervisor.behavior.as_ref().map_or(0, |b| b.update_snapshots_kept),
        ..AdoptOptions::default()
    };
    let survey = survey(backend, desired, &observed, &args.ids, &options);
    let name = |id: &u32| desired.guests.get(id).map_or_else(|| id.to_string(), |g| format!("{id} ({})", g.name));
    let json = cx.printer.format == OutputFormat::Json;
    if !json {
        cx.printer.data(&render::adoption_text(&survey));
        for id in &survey.already_managed {
            cx.printer.data(&format!("{} is Phoenix's already: nothing to adopt.\n", name(id)));
        }
    }
    for r in &survey.refused {
        cx.printer.error(&r.message, Some(&r.hint));
    }
    let report = |adopted: &[u32]| {
        if json {
            cx.printer.json(&serde_json::json!({
                "adopt": survey.adopt,
                "already_managed": survey.already_managed,
                "refused": survey.refused,
                "dry_run": args.dry_run,
                "adopted": adopted,
            }));
        }
    };
    if !survey.refused.is_empty() {
        report(&[]);
        cx.printer.error_text("Nothing was adopted.\n");
        return Outcome::Failure;
    }
    if survey.adopt.is_empty() {
        report(&[]);
        if survey.already_managed.is_empty() && !json {
            cx.printer.data("Nothing to adopt: every configured guest on the backend is Phoenix's.\n");
        }
        return Outcome::Success;
    }
    if args.dry_run {
        report(&[]);
        if !json {
            cx.printer.data(&format!("\nAdopt: {} guest(s).\n", survey.adopt.len()));
        }
        cx.printer.info_text("dry run: nothing was changed\n");
        return Outcome::Success;
    }
    let engine =
        Engine { backend, prober: &phoenix_engine::health::NetProber, reporter: &Silent, cancel: &INTERRUPTED };
    let mut adopted = Vec::new();
    for a in &survey.adopt {
        if let Err(e) = engine.adopt(a, &ApplyOptions::default()) {
            report(&adopted);
            cx.printer
                .error(&e.to_string(), Some("what was adopted before stays so; run `phoenix adopt` again to go on"));
            return Outcome::Failure;
        }
        adopted.push(a.id);
    }
    report(&adopted);
    if !json {
        let list: Vec<String> = adopted.iter().map(name).collect();
        cx.printer.data(&format!(
            "\nAdopted {} guest(s): {}. `phoenix plan` shows what still differs from the configuration.\n",
            adopted.len(),
            list.join(", ")
        ));
    }
    Outcome::Success
}
