//! `phoenix status`: each guest's lifecycle state, derived from what the backend shows.

use serde::Serialize;

use super::{Context, Outcome, load_work, observe_and_plan};
use crate::cli::{OutputFormat, WorkArgs};
use crate::render;

#[derive(Serialize)]
struct Row {
    id: u32,
    name: String,
    kind: &'static str,
    state: String,
    power: String,
    node: String,
    /// What a running guest reports on its interfaces (how a DHCP guest is reached).
    addresses: Vec<String>,
    pending_steps: usize,
}

/// The addresses a running guest reports; none for a stopped one, or where the backend cannot
/// tell (status is read-only: a failure to ask shows as none).
fn addresses(backend: &dyn phoenix_backend::Backend, o: Option<&phoenix_backend::ObservedGuest>) -> Vec<String> {
    match o {
        Some(o) if o.power == phoenix_backend::PowerState::Running => {
            backend.addresses(o.id).unwrap_or_default().iter().map(ToString::to_string).collect()
        }
        _ => Vec::new(),
    }
}

/// `running` or `stopped`; `template` for a template (stopped for good).
fn power(o: &phoenix_backend::ObservedGuest) -> String {
    if o.template { "template".into() } else { format!("{:?}", o.power).to_lowercase() }
}

/// Runs `phoenix status`.
pub fn run(cx: &Context<'_>, args: &WorkArgs) -> Outcome {
    let mut work = match load_work(cx, args, &[]) {
        Ok(w) => w,
        Err(o) => return o,
    };
    let (observed, plan) = match observe_and_plan(cx, &mut work) {
        Ok(planned) => (planned.observed, planned.plan),
        Err(o) => return o,
    };
    let mut rows: Vec<Row> = plan
        .guests
        .iter()
        .map(|g| {
            let o = observed.observation.guests.get(&g.id);
            Row {
                id: g.id,
                name: g.name.clone(),
                kind: if g.kind == phoenix_backend::GuestKind::Lxc { "container" } else { "VM" },
                state: g.state.to_string(),
                power: o.map_or("-".into(), power),
                node: o.and_then(|o| o.node.clone()).unwrap_or_else(|| "-".into()),
                addresses: addresses(work.backend.as_ref(), o),
                pending_steps: g.steps.len(),
            }
        })
        .collect();
    for id in &plan.unmanaged {
        let o = &observed.observation.guests[id];
        rows.push(Row {
            id: *id,
            name: o.config.text(&phoenix_backend::Field::Hostname).unwrap_or("-").to_string(),
            kind: if o.kind == phoenix_backend::GuestKind::Lxc { "container" } else { "VM" },
            state: if o.managed { "not configured".into() } else { "unmanaged".into() },
            power: power(o),
            node: o.node.clone().unwrap_or_else(|| "-".into()),
            addresses: addresses(work.backend.as_ref(), Some(o)),
            pending_steps: 0,
        });
    }
    match cx.printer.format {
        OutputFormat::Json => cx.printer.json(&rows),
        OutputFormat::Text => {
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.id.to_string(),
                        r.name.clone(),
                        r.kind.into(),
                        r.state.clone(),
                        r.power.clone(),
                        r.node.clone(),
                        if r.addresses.is_empty() { "-".into() } else { r.addresses.join(",") },
                        r.pending_steps.to_string(),
                    ]
                })
                .collect();
            cx.printer.data(&render::table(
                &["ID", "NAME", "KIND", "STATE", "POWER", "NODE", "ADDRESSES", "PENDING"],
                &cells,
            ));
        }
    }
    Outcome::Success
}
