//! The guest graph: clone and dependency edges, cycles, order, and drawings (Mermaid, DOT).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use crate::estate::{EdgeKind, Estate, GuestId};

/// A cycle of guests: each one waits for the next, and the last for the first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle {
    /// The guests with the kind of edge leaving each one, starting at the smallest ID.
    pub steps: Vec<(GuestId, EdgeKind)>,
}

impl Cycle {
    /// `950 → 951 (dependency) → 950`
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for (id, edge) in &self.steps {
            let kind = match edge {
                EdgeKind::Clone => "clones",
                EdgeKind::Dependency => "depends on",
                EdgeKind::Gateway => "routes to",
            };
            let _ = write!(s, "{id} {kind} ");
        }
        let first = self.steps.first().map_or(0, |(id, _)| *id);
        let _ = write!(s, "{first}");
        s
    }
}

/// Every distinct cycle, each reported once, in order of their smallest guest ID.
pub fn cycles(estate: &Estate) -> Vec<Cycle> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut marks: BTreeMap<GuestId, Mark> = estate.guests.keys().map(|&id| (id, Mark::New)).collect();
    let mut found: Vec<Vec<(GuestId, EdgeKind)>> = Vec::new();
    for &start in estate.guests.keys() {
        if marks[&start] != Mark::New {
            continue;
        }
        // Iterative depth-first search: (guest, its edges, next edge index).
        type Frame = (GuestId, Vec<(EdgeKind, GuestId)>, usize);
        let mut stack: Vec<Frame> = Vec::new();
        marks.insert(start, Mark::Open);
        stack.push((start, estate.edges(&estate.guests[&start]), 0));
        while let Some((id, edges, next)) = stack.last_mut() {
            let id = *id;
            if *next == edges.len() {
                marks.insert(id, Mark::Done);
                stack.pop();
                continue;
            }
            let (kind, target) = edges[*next];
            *next += 1;
            match marks[&target] {
                Mark::New => {
                    marks.insert(target, Mark::Open);
                    let target_edges = estate.edges(&estate.guests[&target]);
                    stack.push((target, target_edges, 0));
                }
                Mark::Open => {
                    let from = stack.iter().position(|(g, _, _)| *g == target).unwrap_or_default();
                    let mut steps: Vec<(GuestId, EdgeKind)> =
                        stack[from..].iter().map(|(g, e, n)| (*g, e[n - 1].0)).collect();
                    if let Some(last) = steps.last_mut() {
                        last.1 = kind;
                    }
                    let min = steps.iter().enumerate().min_by_key(|(_, (g, _))| *g).map_or(0, |(i, _)| i);
                    steps.rotate_left(min);
                    // A guest waiting for itself is reported where the edge is written; a cycle
                    // through two edges between the same guests is one cycle.
                    let ids: Vec<GuestId> = steps.iter().map(|(g, _)| *g).collect();
                    if steps.len() > 1
                        && !found
                            .iter()
                            .any(|f: &Vec<(GuestId, EdgeKind)>| f.iter().map(|(g, _)| *g).eq(ids.iter().copied()))
                    {
                        found.push(steps);
                    }
                }
                Mark::Done => {}
            }
        }
    }
    found.sort();
    found.into_iter().map(|steps| Cycle { steps }).collect()
}

/// Guests in an order where each comes after everything it clones from or depends on, computed
/// over the whole graph. `None` when there is a cycle.
pub fn order(estate: &Estate) -> Option<Vec<GuestId>> {
    let mut waiting: BTreeMap<GuestId, usize> = BTreeMap::new();
    let mut dependents: BTreeMap<GuestId, Vec<GuestId>> = BTreeMap::new();
    for (id, g) in &estate.guests {
        let targets: BTreeSet<GuestId> = estate.edges(g).into_iter().map(|(_, t)| t).collect();
        waiting.insert(*id, targets.len());
        for t in targets {
            dependents.entry(t).or_default().push(*id);
        }
    }
    let mut ready: BTreeSet<GuestId> = waiting.iter().filter(|(_, n)| **n == 0).map(|(id, _)| *id).collect();
    let mut out = Vec::with_capacity(waiting.len());
    while let Some(id) = ready.pop_first() {
        out.push(id);
        for d in dependents.get(&id).into_iter().flatten() {
            let n = waiting.get_mut(d)?;
            *n -= 1;
            if *n == 0 {
                ready.insert(*d);
            }
        }
    }
    (out.len() == estate.guests.len()).then_some(out)
}

/// The graph as a Mermaid flowchart: an arrow from each guest to what it needs first.
pub fn to_mermaid(estate: &Estate) -> String {
    let mut s = String::from("flowchart BT\n");
    for (id, g) in &estate.guests {
        let shape = if g.template_snapshot().is_some() { ("[[", "]]") } else { ("[", "]") };
        let _ = writeln!(s, "    g{id}{}\"{id} {}<br/>{}\"{}", shape.0, escape(g.name()), g.kind_name(), shape.1);
    }
    for (id, g) in &estate.guests {
        for (kind, target) in estate.edges(g) {
            let arrow = match kind {
                EdgeKind::Clone => "-- clone -->",
                EdgeKind::Dependency => "-. depends on .->",
                EdgeKind::Gateway => "-. routes to .->",
            };
            let _ = writeln!(s, "    g{id} {arrow} g{target}");
        }
    }
    s
}

/// The graph in Graphviz DOT: an arrow from each guest to what it needs first.
pub fn to_dot(estate: &Estate) -> String {
    let mut s = String::from("digraph phoenix {\n    rankdir=BT;\n    node [shape=box];\n");
    for (id, g) in &estate.guests {
        let style = if g.template_snapshot().is_some() { ", style=\"rounded,bold\"" } else { "" };
        let _ = writeln!(s, "    g{id} [label=\"{id} {}\\n{}\"{style}];", escape(g.name()), g.kind_name());
    }
    for (id, g) in &estate.guests {
        for (kind, target) in estate.edges(g) {
            let attrs = match kind {
                EdgeKind::Clone => "label=\"clone\"",
                EdgeKind::Dependency => "label=\"depends on\", style=dashed",
                EdgeKind::Gateway => "label=\"routes to\", style=dotted",
            };
            let _ = writeln!(s, "    g{id} -> g{target} [{attrs}];");
        }
    }
    s.push_str("}\n");
    s
}

fn escape(s: &str) -> String {
    s.replace('"', "'")
}
