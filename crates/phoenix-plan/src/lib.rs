//! Phoenix planning. Pure: the desired state from a validated configuration, and the plan as a
//! diff of the desired state against an observation. No I/O.

pub mod desired;
pub mod diff;
pub mod lifecycle;
pub mod plan;

pub use desired::{Customization, Desired, DesiredGuest, desired, vm_passwords};
pub use lifecycle::LifecycleState;
pub use plan::{
    Action, FileDiff, GuestPlan, HEALTH_MARKER, Markers, Plan, PlanIssue, PlannedChange, Step, UPDATE_SNAPSHOT_PREFIX,
    check_addresses, check_capabilities, check_routes, check_snapshots, guard_updates, host_keys_marker,
    is_update_snapshot, plan, plan_with, repair_unhealthy,
};
