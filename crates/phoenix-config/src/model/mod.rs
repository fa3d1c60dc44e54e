//! The typed configuration model: the three files exactly as users write them.
//!
//! Doc comments here become the JSON Schema's descriptions and the configuration reference.

mod backend;
mod common;
mod hypervisor;
mod lxc;
mod vm;

pub use backend::*;
pub use common::*;
pub use hypervisor::*;
pub use lxc::*;
pub use vm::*;
