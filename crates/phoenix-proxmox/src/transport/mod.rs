//! The transport: how the driver's calls reach Proxmox VE. Every call is a typed value
//! ([`endpoint::Call`]); the [`ApiClient`](api::ApiClient) sends it over one [`Transport`]: the
//! REST API over HTTPS ([`api::Https`]) or `pvesh` on the node itself ([`pvesh::Pvesh`]). Tasks
//! the calls start are waited for by their UPID ([`task`], [`upid`]); answers are decoded
//! leniently ([`decode`]).

pub mod api;
pub mod decode;
pub mod endpoint;
pub mod pvesh;
pub mod task;
pub mod upid;

use phoenix_backend::BackendError;

/// A way to send a request to the Proxmox VE API and get the `data` of its answer, with errors
/// that say whether the request may have been applied.
pub trait Transport: Send + Sync {
    /// Sends a request; `params` go in the query (GET, DELETE) or the body (POST, PUT). Returns
    /// the answer's `data`.
    fn request(&self, method: &str, path: &str, params: &[(&str, String)]) -> Result<serde_json::Value, BackendError>;

    /// Whether requests act as `root@pam`, which may set what Proxmox reserves to it.
    fn acts_as_root(&self) -> bool;
}
