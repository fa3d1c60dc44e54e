//! Phoenix's engine: plans a configuration against a backend ([`planner`]: validation,
//! customizations, desired state, observation, plan), applies a plan over the dependency graph
//! with bounded concurrency, and destroys guests in reverse order. It knows backends only through
//! [`phoenix_backend::Backend`].

pub mod adopt;
pub mod apply;
pub mod customize;
pub mod destroy;
pub mod gateway;
pub mod health;
pub mod host_keys;
pub mod lock;
pub mod observe;
pub mod planner;
pub mod reporter;
pub mod retry;
pub mod utc;

pub use apply::{ApplyOptions, ApplyReport, Engine};
pub use reporter::{GuestOutcome, Reporter, Silent};
