//! Progress, as the engine tells it. The command line draws it; tests record it.

use std::time::Duration;

use phoenix_backend::GuestId;
use phoenix_plan::{LifecycleState, Step};

/// How a guest's apply ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestOutcome {
    /// Nothing to do.
    Unchanged,
    /// Created by this run, and completed.
    Created,
    /// Changed by this run, and completed.
    Changed,
    /// A step failed.
    Failed(String),
    /// Not started because something it needs failed.
    Skipped(String),
    /// Not started because the run was interrupted or stopped after a failure.
    NotStarted,
    /// Created by this run, failed, and destroyed again (rollback).
    RolledBack(String),
}

/// Receives progress from the engine; called from worker threads.
pub trait Reporter: Sync {
    /// A guest's state changed, with the step it is at.
    fn state(&self, guest: GuestId, state: LifecycleState, step: Option<&Step>);
    /// A guest finished.
    fn finished(&self, guest: GuestId, outcome: &GuestOutcome, took: Duration);
    /// A message about a guest (a retry, a rollback).
    fn note(&self, guest: GuestId, message: &str);
}

/// A reporter that says nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Reporter for Silent {
    fn state(&self, _: GuestId, _: LifecycleState, _: Option<&Step>) {}
    fn finished(&self, _: GuestId, _: &GuestOutcome, _: Duration) {}
    fn note(&self, _: GuestId, _: &str) {}
}
