//! Destroying guests: dependents before what they need, templates only when nothing cloned from
//! them remains (or with force), and only guests Phoenix created.

use std::collections::BTreeMap;

use phoenix_backend::{BackendError, CreateSource, GuestId, Observation};
use phoenix_plan::Desired;

use crate::apply::{ApplyOptions, Engine};

/// Why guests cannot be destroyed as asked, or why destroying one failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DestroyError {
    /// A template that existing guests were cloned from.
    #[error("{template} is a template that {} were cloned from; destroy them too, or pass --force", list(.clones))]
    TemplateInUse {
        /// The template.
        template: GuestId,
        /// Its clones that would remain.
        clones: Vec<GuestId>,
    },
    /// A guest Phoenix did not create.
    #[error("{0} was not created by Phoenix; it is never touched")]
    NotManaged(GuestId),
    /// A guest that neither the configuration nor the backend knows.
    #[error("{0} is neither in the configuration nor on the backend")]
    Unknown(GuestId),
    /// The backend failed to destroy a guest (those before it in the order are gone).
    #[error("destroying {id}: {source}")]
    Failed {
        /// The guest.
        id: GuestId,
        /// The backend's error.
        source: BackendError,
    },
}

fn list(ids: &[GuestId]) -> String {
    ids.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// The order to destroy `targets` in (all configured guests that exist when empty): dependents
/// first. Refuses templates with remaining clones unless `force`.
pub fn plan_destroy(
    desired: &Desired,
    observed: &Observation,
    targets: &[GuestId],
    force: bool,
) -> Result<Vec<GuestId>, DestroyError> {
    let chosen: Vec<GuestId> = if targets.is_empty() {
        desired.order.iter().copied().filter(|id| observed.guests.contains_key(id)).collect()
    } else {
        targets.to_vec()
    };
    for id in &chosen {
        match observed.guests.get(id) {
            Some(g) if !g.managed => return Err(DestroyError::NotManaged(*id)),
            None if !desired.guests.contains_key(id) => return Err(DestroyError::Unknown(*id)),
            _ => {}
        }
    }
    if !force {
        for t in &chosen {
            let clones: Vec<GuestId> = desired
                .guests
                .values()
                .filter(|g| matches!(g.source, CreateSource::Clone { source, .. } if source == *t))
                .map(|g| g.id)
                .filter(|c| observed.guests.contains_key(c) && !chosen.contains(c))
                .collect();
            if !clones.is_empty() {
                return Err(DestroyError::TemplateInUse { template: *t, clones });
            }
        }
    }
    // Reverse start order; guests outside the configuration first.
    let rank: BTreeMap<GuestId, usize> = desired.order.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let mut order: Vec<GuestId> = chosen.into_iter().filter(|id| observed.guests.contains_key(id)).collect();
    order.sort_by_key(|id| std::cmp::Reverse(rank.get(id).map_or(usize::MAX, |r| *r)));
    order.dedup();
    Ok(order)
}

impl Engine<'_> {
    /// Destroys guests one after another in the given order; stops at the first failure.
    pub fn destroy(&self, order: &[GuestId], opts: &ApplyOptions) -> Result<(), DestroyError> {
        for &id in order {
            self.reporter.note(id, "destroying");
            opts.retry
                .run(
                    || self.backend.destroy(id),
                    || self.backend.observe_guest(id).ok().filter(Option::is_none).map(|_| ()),
                    |e, n| {
                        self.reporter.note(id, &format!("retrying after a transient failure (attempt {}): {e}", n + 1))
                    },
                )
                .map_err(|source| DestroyError::Failed { id, source })?;
        }
        Ok(())
    }
}
