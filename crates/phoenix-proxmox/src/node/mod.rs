//! The node layer: what the driver does on a Proxmox node itself, beside the API. The node
//! channel ([`channel`]: SSH, or local commands when Phoenix runs on the node), the commands it
//! runs there besides `pct exec` ([`commands`]: `pct set`, the compare-and-swap write of
//! `/etc/pve/lxc/<id>.conf`, the device listing, bind-mount directories), and the section-aware
//! parser and writer of that conf file ([`conf`]).

pub mod channel;
pub mod commands;
pub mod conf;
