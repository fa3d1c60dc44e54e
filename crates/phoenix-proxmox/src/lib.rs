//! The Proxmox VE backend, in layers, each using only those above it:
//!
//! - [`transport`]: how the driver's calls ([`transport::endpoint::Call`]) reach Proxmox, over
//!   one [`transport::Transport`]: HTTPS or `pvesh` on the node; tasks, UPIDs, lenient decoding.
//! - [`node`]: the node itself: the node channel (SSH, or local commands), the commands run
//!   there, and the section-aware `/etc/pve/lxc/<id>.conf` parser and writer.
//! - [`propstring`], [`record`], [`firewall`]: typed property strings, the customization record
//!   in a guest's description, a guest's own firewall.
//! - [`backend`]: the backend: what containers and VMs share, the [`phoenix_backend::Backend`]
//!   implementation, and the operations of [`backend::containers`] and [`backend::vms`], which
//!   never use each other.

pub mod backend;
pub mod firewall;
pub mod node;
pub mod propstring;
pub mod record;
pub mod transport;
