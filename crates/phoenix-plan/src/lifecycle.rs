//! The lifecycle state of a guest, derived from what the backend shows (never from a local
//! state file): `defined → created → configured → running → customizing → completed`.

use std::collections::BTreeMap;

use phoenix_backend::{ObservedGuest, PowerState};
use serde::Serialize;

use crate::desired::DesiredGuest;

/// Where a guest stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LifecycleState {
    /// In the configuration only.
    Defined,
    /// It exists, but its configuration differs.
    Created,
    /// Its configuration matches; it is stopped.
    Configured,
    /// It runs; features or the script have not all run with the current inputs, or it is a
    /// clone that does not have its own SSH host keys yet.
    Running,
    /// Features or the script are running (only during an apply).
    Customizing,
    /// Everything ran with the current inputs and, for templates, the snapshot exists or the
    /// guest is a template.
    Completed,
}

impl std::fmt::Display for LifecycleState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            LifecycleState::Defined => "defined",
            LifecycleState::Created => "created",
            LifecycleState::Configured => "configured",
            LifecycleState::Running => "running",
            LifecycleState::Customizing => "customizing",
            LifecycleState::Completed => "completed",
        };
        f.write_str(s)
    }
}

/// The state of a guest from the observation, the markers read inside it, and whether its
/// configuration differs from what the backend has ([`crate::plan::config_changes`], which the
/// planner computes once per guest).
pub fn derive(
    d: &DesiredGuest,
    o: Option<&ObservedGuest>,
    markers: Option<&BTreeMap<String, String>>,
    config_differs: bool,
) -> LifecycleState {
    let Some(o) = o else { return LifecycleState::Defined };
    if o.template {
        // Made a template once customized: it is finished, and never runs again.
        return LifecycleState::Completed;
    }
    if config_differs {
        return LifecycleState::Created;
    }
    if o.power == PowerState::Stopped {
        return LifecycleState::Configured;
    }
    let customized = d.customizations.iter().all(|c| markers.and_then(|m| m.get(&c.key)) == Some(&c.hash))
        && crate::plan::has_own_host_keys(d, markers);
    let snapshot = d.template_snapshot.as_ref().is_none_or(|s| o.snapshots.contains(s));
    // A guest that is to become a template is completed once it is one.
    if customized && snapshot && !d.template { LifecycleState::Completed } else { LifecycleState::Running }
}
