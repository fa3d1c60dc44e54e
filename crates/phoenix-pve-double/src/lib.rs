//! A Proxmox VE API test double for Phoenix's Proxmox driver. Its first part, here: every request
//! is checked against the official API schema of the PVE version the double plays (8.4.5 or
//! 9.2.3) — the endpoint, parameter names including numbered ones (`net0` for `net[n]`), types,
//! enums, ranges, lengths, patterns, named formats and the sub-keys of property strings — and
//! refused with per-parameter errors as Proxmox refuses it (HTTP 400).
//!
//! The double also keeps containers, QEMU VMs (with a guest agent), templates made of either,
//! files downloaded into storages (`download-url`) and tasks as Proxmox does, and plays what goes
//! wrong on a real cluster: latency ([`PveDouble::set_latency`]), injected faults ([`PveDouble::inject`]:
//! lock timeouts, proxy errors, connections dropped before or after the request took effect),
//! several nodes ([`PveDouble::add_node`]). With `PHOENIX_PVE_REQUEST_LOG` set, every double logs
//! its requests for the suite-wide check against both schemas ([`requestlog`], the binary
//! `check-requests`). A stand-in for `pvesh` on the node ([`pvesh`], the binary `pvesh-double`)
//! sends `pvesh`'s requests to a double as the node's root.

mod firewall;
mod guests;
mod inventory;
pub mod node;
pub mod pvesh;
mod qemu;
pub mod requestlog;
pub mod schema;
pub mod server;
mod tickets;

pub use inventory::ALL_PRIVILEGES;
pub use node::{ExecEnvironment, NodeCommand, NodeDouble, NodeOutput};
pub use schema::{ApiSchema, Endpoint, ParamError, PveVersion};
pub use server::{Credentials, Fault, FaultKind, PveDouble, REQUEST_LOG_ENV, Recorded, VmFile};
pub use tickets::TICKET_LIFETIME;
