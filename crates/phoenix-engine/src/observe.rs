//! Observing the backend: one call for every guest (scoped to what the plan compares), then the
//! markers of the guests Phoenix manages that the backend did not show with them, read in parallel.

use std::collections::BTreeMap;

use phoenix_backend::{Backend, BackendError, ErrorKind, Field, GuestId, Observation, ObserveScope, PowerState};
use phoenix_config::model::HealthCheck;
use phoenix_plan::{Desired, DesiredGuest, Markers};

use crate::health::{Prober, probe_once};

/// What the backend shows, with the markers read inside the guests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// The backend's view.
    pub observation: Observation,
    /// Markers of each configured guest that exists (`None`: could not be read, because the
    /// guest is stopped on a backend that reads only running guests, or because of what the guest
    /// did to its files), templates aside.
    pub markers: Markers,
    /// Why the markers of a guest could not be read, where a reason is known.
    pub unreadable: BTreeMap<GuestId, BackendError>,
}

/// Parses a marker file; an unreadable file counts as no markers (everything runs again).
pub fn parse_markers(bytes: &[u8]) -> BTreeMap<String, String> {
    serde_json::from_slice(bytes).unwrap_or_default()
}

/// Probes the HTTP and TCP health checks of the configured guests that run, once each, where
/// the backend's guests can be reached from here: the failures, by guest. Command checks are
/// left to apply (a plan runs nothing inside guests).
pub fn failing_health(
    backend: &dyn Backend,
    prober: &dyn Prober,
    desired: &Desired,
    observation: &Observation,
) -> BTreeMap<GuestId, String> {
    if !backend.capabilities().probe_at_plan {
        return BTreeMap::new();
    }
    let probed: Vec<(&DesiredGuest, &HealthCheck)> = desired
        .guests
        .values()
        .filter(|d| {
            observation.guests.get(&d.id).is_some_and(|o| o.managed && !o.template && o.power == PowerState::Running)
        })
        .filter_map(|d| Some((d, d.health.as_ref().filter(|h| h.command.is_none())?)))
        .collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = probed
            .iter()
            .map(|(d, check)| {
                s.spawn(move || {
                    let address = d
                        .config
                        .text(&Field::NetIp)
                        .filter(|ip| *ip != "dhcp")
                        .map(|ip| ip.split('/').next().unwrap_or(ip));
                    let once = HealthCheck { timeout: Some(check.timeout.unwrap_or(10).min(2)), ..(*check).clone() };
                    (d.id, probe_once(backend, prober, d.id, address, &once))
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().ok())
            .filter_map(|(id, r)| Some((id, r.err()?.to_string())))
            .collect()
    })
}

/// A guest's markers as read, or why not (`None`: no reason known).
type MarkerRead = Result<BTreeMap<String, String>, Option<BackendError>>;

/// What the plan compares beyond each guest's configuration: the snapshots of guests that are,
/// or are to keep a snapshot as, templates, and the firewall of guests whose configuration sets it.
pub fn scope(desired: &Desired) -> ObserveScope {
    let guests = desired.guests.values();
    ObserveScope {
        everything: false,
        snapshots: guests.clone().filter(|d| d.template || d.template_snapshot.is_some()).map(|d| d.id).collect(),
        firewall: guests
            .filter(|d| d.config.has(&Field::Firewall) || d.config.has(&Field::FirewallRules))
            .map(|d| d.id)
            .collect(),
    }
}

/// Observes everything the plan needs, reading markers the backend did not show with the
/// configuration with up to `jobs` calls at once.
pub fn observe(backend: &dyn Backend, desired: &Desired, jobs: usize) -> Result<Observed, BackendError> {
    let observation = backend.observe_scoped(&scope(desired))?;
    // A template never runs again, and nothing runs in it: its markers are not read.
    let managed = |id: &GuestId| observation.guests.get(id).filter(|g| g.managed && !g.template);
    let shown: Vec<(GuestId, MarkerRead)> = desired
        .guests
        .keys()
        .filter_map(|id| Some((*id, Ok(parse_markers(managed(id)?.markers.as_deref()?)))))
        .collect();
    let ids: Vec<GuestId> =
        desired.guests.keys().filter(|id| managed(id).is_some_and(|g| g.markers.is_none())).copied().collect();
    let chunk = ids.len().div_ceil(jobs.max(1)).max(1);
    type Read = Result<Vec<(GuestId, MarkerRead)>, BackendError>;
    let results: Vec<Read> = std::thread::scope(|s| {
        let handles: Vec<_> = ids
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|&id| match backend.read_markers(id) {
                            Ok(bytes) => Ok((id, Ok(bytes.map(|b| parse_markers(&b)).unwrap_or_default()))),
                            Err(e) if e.kind == ErrorKind::Unsupported => Ok((id, Err(None))),
                            // What one guest did to its own files (a link, a FIFO, a huge file
                            // where its markers were) concerns that guest alone: its markers
                            // are unknown, so its customizations run again.
                            Err(e) if e.kind != ErrorKind::Transient => Ok((id, Err(Some(e)))),
                            Err(e) => Err(e),
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(BackendError::permanent(phoenix_backend::Delivery::NotSent, "a marker reader panicked"))
                })
            })
            .collect()
    });
    let mut markers = Markers::new();
    let mut unreadable = BTreeMap::new();
    for (id, read) in results.into_iter().collect::<Result<Vec<_>, _>>()?.into_iter().flatten().chain(shown) {
        match read {
            Ok(m) => {
                markers.insert(id, Some(m));
            }
            Err(why) => {
                markers.insert(id, None);
                if let Some(why) = why {
                    unreadable.insert(id, why);
                }
            }
        }
    }
    Ok(Observed { observation, markers, unreadable })
}
