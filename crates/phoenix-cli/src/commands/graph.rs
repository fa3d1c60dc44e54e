//! `phoenix graph`: the clone and dependency graph, as Mermaid, DOT or JSON.

use phoenix_config::estate::EdgeKind;
use phoenix_config::graph;
use phoenix_engine::planner::Validated;
use serde::Serialize;

use super::Outcome;
use super::validate::print_diagnostics;
use crate::cli::{GraphArgs, GraphFormat, OutputFormat};

#[derive(Serialize)]
struct JsonGraph {
    nodes: Vec<JsonNode>,
    edges: Vec<JsonEdge>,
    order: Vec<u32>,
}

#[derive(Serialize)]
struct JsonNode {
    id: u32,
    name: String,
    kind: &'static str,
    template: bool,
}

#[derive(Serialize)]
struct JsonEdge {
    from: u32,
    to: u32,
    kind: &'static str,
}

/// Runs `phoenix graph`.
pub fn run(cx: &super::Context<'_>, args: &GraphArgs) -> Outcome {
    let printer = cx.printer;
    let v = Validated::read(&cx.global.config_dir, &cx.global.config_dir.join("features")).validation;
    print_diagnostics(printer, &v);
    let Some(estate) = &v.estate else {
        printer.error_text("error: the configuration is invalid; `phoenix validate` lists every problem\n");
        return Outcome::Failure;
    };
    if printer.format == OutputFormat::Json {
        let nodes = estate
            .guests
            .values()
            .map(|g| JsonNode {
                id: g.id,
                name: g.name().to_string(),
                kind: if g.as_lxc().is_some() { "lxc" } else { "vm" },
                template: g.template_snapshot().is_some(),
            })
            .collect();
        let edges = estate
            .guests
            .values()
            .flat_map(|g| estate.edges(g).into_iter().map(move |(k, to)| (g.id, k, to)))
            .map(|(from, k, to)| JsonEdge {
                from,
                to,
                kind: match k {
                    EdgeKind::Clone => "clone",
                    EdgeKind::Dependency => "dependency",
                    EdgeKind::Gateway => "gateway",
                },
            })
            .collect();
        printer.json(&JsonGraph { nodes, edges, order: graph::order(estate).unwrap_or_default() });
        return Outcome::Success;
    }
    printer.data(&match args.format {
        GraphFormat::Mermaid => graph::to_mermaid(estate),
        GraphFormat::Dot => graph::to_dot(estate),
    });
    Outcome::Success
}
