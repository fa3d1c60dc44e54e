//! What the modules' tests against the recording double share.

#![allow(dead_code)]

use phoenix_host::double::RecordingHost;
use phoenix_host::{HostError, ModulePlan, Planner, Resolver, apply};

/// A resolver that knows no secret.
pub fn no_secrets(r: &str) -> Result<String, HostError> {
    Err(HostError::new(format!("no secret {r}")))
}

/// Plans (through the read-only view), checks that planning changed nothing, applies, and
/// checks that a second plan is empty and changes nothing either. Returns the first plan.
pub fn apply_twice(host: &RecordingHost, module: &dyn Planner, secrets: &Resolver<'_>) -> ModulePlan {
    host.clear_log();
    let plan = module.plan_on(host, secrets).expect("plan");
    assert_eq!(host.changes(), vec![], "planning {} changed the host", plan.module);
    apply(host, &plan, secrets).expect("apply");
    host.clear_log();
    let again = module.plan_on(host, secrets).expect("plan again");
    assert!(again.steps.is_empty(), "second plan of {} is not empty: {:#?}", plan.module, again.steps);
    assert_eq!(host.changes(), vec![]);
    plan
}

/// The one-line summaries of a plan's steps.
pub fn summaries(plan: &ModulePlan) -> Vec<String> {
    plan.steps.iter().map(|s| s.summary()).collect()
}
