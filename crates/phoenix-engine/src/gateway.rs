//! The NGINX gateway as a customization of its guest: the configuration rendered by
//! [`phoenix_gateway`] once the backend is observed (guests without a static address are reached
//! where they report), run like a feature — staged with the install script, checked with
//! `nginx -t` and swapped in by it — and recorded under the marker key [`KEY`].
//!
//! Its hash is that of the contract version, the install script and the rendered text (with the
//! gateway guest's ID and name), so a change of any guest's services changes the gateway's step
//! (and, since an application script is given its guest's whole block, that guest's script). The certificate and the key are read only when applying
//! ([`Planner::add_gateway_tls`](crate::planner::Planner::add_gateway_tls)): the plan, its hash
//! and its diff never hold them.

use std::collections::BTreeMap;
use std::net::IpAddr;

use phoenix_backend::{Backend, GuestId, Observation, PowerState};
use phoenix_config::Estate;
use phoenix_gateway::{CONFIG_PATH, INSTALL_SCRIPT, Rendered};
use phoenix_plan::{Action, Customization, Desired, FileDiff, Plan};

use crate::customize::{Job, StagedFile};

/// The marker key of the gateway's customization.
pub const KEY: &str = "gateway";

/// The name the rendered configuration is staged under, beside the parameters file.
pub const STAGED_CONFIG: &str = "phoenix-gateway.conf";

/// The gateway of a configuration, rendered, with its job.
#[derive(Debug, Clone, PartialEq)]
pub struct Gateway {
    /// The rendered configuration.
    pub rendered: Rendered,
    /// The job that installs it in the gateway guest.
    pub job: Job,
}

/// The addresses the running guests without a static address report (DHCP, pools), as the
/// gateway reaches them: the first IPv4 address, else the first address. Guests that are not
/// running, or report none, are left out.
pub fn observed_addresses(
    backend: &dyn Backend,
    estate: &Estate,
    observation: &Observation,
) -> BTreeMap<GuestId, IpAddr> {
    let mut out = BTreeMap::new();
    for id in phoenix_gateway::needs_observed_address(estate) {
        if observation.guests.get(&id).is_none_or(|g| g.power != PowerState::Running) {
            continue;
        }
        let found = backend.addresses(id).unwrap_or_default();
        if let Some(ip) = found.iter().find(|a| a.is_ipv4()).or(found.first()) {
            out.insert(id, *ip);
        }
    }
    out
}

/// The gateway's configuration and job, when the configuration has a gateway. Pure.
pub fn prepare(estate: &Estate, addresses: &BTreeMap<GuestId, IpAddr>) -> Option<Gateway> {
    let rendered = phoenix_gateway::render(estate, addresses)?;
    let name = estate.guests.get(&rendered.guest).map(|g| g.name().to_string()).unwrap_or_default();
    let params = serde_json::json!({
        "guest": { "id": rendered.guest, "name": name },
        "config_path": CONFIG_PATH,
        "config": rendered.text,
    });
    let mut job = Job::new(KEY.to_string(), Some(INSTALL_SCRIPT.as_bytes().to_vec()), params);
    job.files.push(StagedFile {
        name: STAGED_CONFIG.to_string(),
        content: rendered.text.clone().into_bytes(),
        mode: 0o644,
    });
    Some(Gateway { rendered, job })
}

impl Gateway {
    /// Makes the gateway's job part of its guest's desired state (after its features and
    /// script), when the desired state has that guest (`--target` may leave it out).
    pub fn attach(&self, desired: &mut Desired, jobs: &mut BTreeMap<GuestId, Vec<Job>>) {
        let Some(g) = desired.guests.get_mut(&self.rendered.guest) else { return };
        g.customizations.retain(|c| c.key != KEY);
        g.customizations.push(Customization { key: KEY.to_string(), hash: self.job.hash.clone() });
        let guest_jobs = jobs.entry(self.rendered.guest).or_default();
        guest_jobs.retain(|j| j.key != KEY);
        guest_jobs.push(self.job.clone());
    }

    /// Adds to a plan whose gateway step runs what it changes: the unified diff of the live file
    /// (read from the guest when it exists) and the rendered one, and a note for each service not
    /// routed yet.
    pub fn describe(&self, backend: &dyn Backend, observation: &Observation, plan: &mut Plan) {
        let id = self.rendered.guest;
        let Some(g) = plan.guests.iter_mut().find(|g| g.id == id) else { return };
        for u in &self.rendered.unresolved {
            plan.notes.push(format!("gateway {id}: {u}"));
        }
        if !g.steps.iter().any(|s| matches!(&s.action, Action::Customize { key, .. } if key == KEY)) {
            return;
        }
        let running = observation.guests.get(&id).is_some_and(|o| o.power == PowerState::Running);
        let (old, old_name) = if running {
            match backend.read_file(id, CONFIG_PATH) {
                Ok(Some(bytes)) => {
                    (String::from_utf8_lossy(&bytes).into_owned(), format!("{CONFIG_PATH} (in guest {id})"))
                }
                Ok(None) => (String::new(), "/dev/null".to_string()),
                Err(e) => (String::new(), format!("{CONFIG_PATH} (in guest {id}: cannot be read: {e})")),
            }
        } else {
            (String::new(), "/dev/null".to_string())
        };
        let diff =
            phoenix_plan::diff::unified(&old, &self.rendered.text, &old_name, &format!("{CONFIG_PATH} (rendered)"));
        if !diff.is_empty() {
            g.files.push(FileDiff { path: CONFIG_PATH.to_string(), diff });
        }
    }

    /// Adds the certificate and the key to the job about to run (read by the caller only when
    /// applying); they are staged beside the configuration, never hashed or shown.
    pub(crate) fn add_tls(jobs: &mut BTreeMap<GuestId, Vec<Job>>, guest: GuestId, certificate: Vec<u8>, key: Vec<u8>) {
        for job in jobs.get_mut(&guest).into_iter().flatten().filter(|j| j.key == KEY) {
            job.files.retain(|f| f.name != "tls.crt" && f.name != "tls.key");
            job.files.push(StagedFile { name: "tls.crt".to_string(), content: certificate.clone(), mode: 0o644 });
            job.files.push(StagedFile { name: "tls.key".to_string(), content: key.clone(), mode: 0o600 });
        }
    }
}
