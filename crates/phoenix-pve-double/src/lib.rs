//! A Proxmox VE API test double for Phoenix's Proxmox driver. Its first part, here: every request
//! is checked against the official API schema of the PVE version the double plays (8.4.5 or
//! 9.2.3) — the endpoint, parameter names including numbered ones (`net0` for `net[n]`), types,
//! enums, ranges, lengths, patterns, named formats and the sub-keys of property strings — and
//! refused with per-parameter errors as Proxmox refuses it (HTTP 400).

mod firewall;
mod guests;
pub mod schema;
pub mod server;

pub use schema::{ApiSchema, Endpoint, ParamError, PveVersion};
pub use server::{Credentials, PveDouble, Recorded};
