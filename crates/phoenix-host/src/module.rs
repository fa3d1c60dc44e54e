//! The module contract: observe the host (read-only), plan typed steps with reasons from what was
//! observed, apply them through the host. A module whose plan is empty has nothing to do, and a
//! module applied once plans nothing the second time.

use serde::Serialize;

use crate::host::{Host, HostError, ReadOnly};
use crate::step::{Resolver, Step, execute};

/// A module's plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModulePlan {
    /// The module.
    pub module: &'static str,
    /// What it will do, in order.
    pub steps: Vec<Step>,
    /// What people should know (a step left to them, a kernel feature missing).
    pub notes: Vec<String>,
}

impl ModulePlan {
    /// An empty plan.
    pub fn new(module: &'static str) -> ModulePlan {
        ModulePlan { module, steps: Vec::new(), notes: Vec::new() }
    }

    /// Adds a step.
    pub fn step(&mut self, step: Step) {
        self.steps.push(step);
    }

    /// Adds a note.
    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }
}

/// A host-setup module.
pub trait Module {
    /// What it reads from the host.
    type Observed;
    /// Its name, as `--only` takes it.
    fn name(&self) -> &'static str;
    /// Reads the host: files and read-only commands only (the host given refuses changes).
    fn observe(&self, host: &dyn Host) -> Result<Self::Observed, HostError>;
    /// The steps that make the host match the configuration; none when it does. Secrets may be
    /// resolved to compare with what is there, never copied into the plan.
    fn plan(&self, observed: &Self::Observed, secrets: &Resolver<'_>) -> Result<ModulePlan, HostError>;
}

/// A module of any kind, as the setup runs it.
pub trait Planner {
    /// Its name.
    fn name(&self) -> &'static str;
    /// Observes through a read-only view of the host, then plans.
    fn plan_on(&self, host: &dyn Host, secrets: &Resolver<'_>) -> Result<ModulePlan, HostError>;
}

impl<M: Module> Planner for M {
    fn name(&self) -> &'static str {
        Module::name(self)
    }

    fn plan_on(&self, host: &dyn Host, secrets: &Resolver<'_>) -> Result<ModulePlan, HostError> {
        let observed = self.observe(&ReadOnly(host))?;
        self.plan(&observed, secrets)
    }
}

/// A step that failed while applying.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{module}: step {number} ({summary}) failed: {error}")]
pub struct ApplyError {
    /// The module.
    pub module: &'static str,
    /// The step's number, from 1.
    pub number: usize,
    /// What the step does.
    pub summary: String,
    /// Why it failed.
    pub error: HostError,
}

/// Applies a plan's steps in order, stopping at the first that fails; returns how many ran.
pub fn apply(host: &dyn Host, plan: &ModulePlan, secrets: &Resolver<'_>) -> Result<usize, ApplyError> {
    for (i, step) in plan.steps.iter().enumerate() {
        execute(host, step, secrets).map_err(|error| ApplyError {
            module: plan.module,
            number: i + 1,
            summary: step.summary(),
            error,
        })?;
    }
    Ok(plan.steps.len())
}
