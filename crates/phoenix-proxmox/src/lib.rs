//! The Proxmox VE backend's foundations: typed property strings with exact print/parse round
//! trips, the section-aware `/etc/pve/lxc/<id>.conf` parser and writer (which edits only the
//! live section, never a snapshot's), task IDs (UPIDs), and lenient decoding of API responses.
//!
//! The API client (HTTPS, or `pvesh` on the node), the node channel (SSH, or local commands on
//! the node) and the backend itself build on these.

pub mod backend;
pub mod firewall;
pub mod node;
pub mod propstring;
pub mod record;
pub mod transport;

// The transport's and the node channel's modules at the paths other crates name them by.
pub use node::channel;
pub use transport::{api, endpoint, task, upid};
