//! Re-applying is a no-op, over generated valid configurations: after an apply the plan is empty,
//! and a second apply makes no mutating call and restarts nothing.

mod support;

use proptest::prelude::*;
use support::*;

use phoenix_engine::{GuestOutcome, Silent};
use phoenix_testkit::memory::MemoryBackend;

/// One generated guest: whether it is a template, which earlier template it clones (if any),
/// which earlier guests it depends on, and a few settings.
#[derive(Debug, Clone)]
struct GenGuest {
    template: bool,
    clone_of: Option<usize>,
    deps: Vec<usize>,
    features: Vec<&'static str>,
    script: Option<u8>,
    memory: u32,
    tags: Vec<&'static str>,
    health: bool,
    boot_order: Option<u32>,
    mac: bool,
}

fn gen_guest() -> impl Strategy<Value = GenGuest> {
    (
        any::<bool>(),
        prop::option::of(0usize..8),
        prop::collection::vec(0usize..8, 0..3),
        prop::sample::subsequence(vec!["base_setup", "ollama"], 0..=2),
        prop::option::of(0u8..3),
        prop::sample::select(vec![512u32, 1024, 2048]),
        prop::sample::subsequence(vec!["Web", "db", "GPU"], 0..=3),
        any::<bool>(),
        prop::option::of(1u32..5),
        any::<bool>(),
    )
        .prop_map(|(template, clone_of, deps, features, script, memory, tags, health, boot_order, mac)| GenGuest {
            template,
            clone_of,
            deps,
            features,
            script,
            memory,
            tags,
            health,
            boot_order,
            mac,
        })
}

/// Writes a valid configuration for the generated guests (references only point backwards, and
/// only at templates for clones).
fn render(guests: &[GenGuest]) -> Config {
    let mut entries = Vec::new();
    for (i, g) in guests.iter().enumerate() {
        let mut extra = String::new();
        let source = g.clone_of.filter(|s| *s < i && guests[*s].template);
        match source {
            Some(s) => extra.push_str(&format!(r#", "clone_from_ctid": "{}""#, 500 + s)),
            None => extra.push_str(r#", "template": "local:vztmpl/debian.tar.zst""#),
        }
        if g.template {
            extra.push_str(&format!(r#", "template_snapshot_name": "snap{i}""#));
        }
        let mut deps: Vec<usize> = g.deps.iter().copied().filter(|d| *d < i).collect();
        deps.sort_unstable();
        deps.dedup();
        if !deps.is_empty() {
            let list: Vec<String> = deps.iter().map(|d| format!("\"{}\"", 500 + d)).collect();
            extra.push_str(&format!(r#", "dependencies": [{}]"#, list.join(", ")));
        }
        if !g.features.is_empty() {
            let list: Vec<String> = g.features.iter().map(|f| format!("\"{f}\"")).collect();
            extra.push_str(&format!(r#", "features": [{}]"#, list.join(", ")));
        }
        if let Some(s) = g.script {
            extra.push_str(&format!(r#", "application_script": "app{s}.sh""#));
        }
        if !g.tags.is_empty() {
            let list: Vec<String> = g.tags.iter().map(|t| format!("\"{t}\"")).collect();
            extra.push_str(&format!(r#", "tags": [{}]"#, list.join(", ")));
        }
        if g.health {
            extra.push_str(r#", "health_check": {"tcp": {"port": 22}, "retries": 1, "interval": 1}"#);
        }
        if let Some(o) = g.boot_order {
            extra.push_str(&format!(r#", "start_at_boot": true, "boot_order": {o}"#));
        }
        if g.mac {
            extra.push_str(&format!(r#", "mac_address": "02:AB:00:00:00:{i:02X}""#));
        }
        let c = container(&format!("guest-{i}"), &format!("10.9.1.{}/16", 10 + i), &extra)
            .replace(r#""memory_mb": 1024"#, &format!(r#""memory_mb": {}"#, g.memory));
        entries.push(format!("\"{}\": {c}", 500 + i));
    }
    let scripts: Vec<(String, String)> =
        (0..3).map(|s| (format!("app{s}.sh"), format!("#!/bin/sh\necho {s}\n"))).collect();
    let refs: Vec<(&str, &str)> = scripts.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    Config::new(&format!("{{{}}}", entries.join(",\n")), &refs)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn reapplying_changes_nothing(guests in prop::collection::vec(gen_guest(), 1..8)) {
        let cfg = render(&guests);
        let lib = library(&Default::default());
        let p = prepare_run(&cfg, &lib);
        let backend = MemoryBackend::new();
        let mut opts = options();
        opts.jobs = 3;
        let (_, first) = run_apply(&backend, &p, &Silent, &opts);
        prop_assert!(first.outcomes.values().all(|o| *o == GuestOutcome::Created), "{:#?}", first);
        let plan = make_plan(&backend, &p);
        prop_assert!(plan.is_empty(), "{:#?}", plan.guests.iter().filter(|g| !g.steps.is_empty()).collect::<Vec<_>>());
        let starts: Vec<usize> = (500..500 + guests.len() as u32).map(|id| backend.guest(id).map_or(0, |g| g.starts)).collect();
        backend.clear_calls();
        let (_, second) = run_apply(&backend, &p, &Silent, &opts);
        prop_assert_eq!(mutating(&backend), Vec::<String>::new());
        prop_assert!(second.outcomes.values().all(|o| *o == GuestOutcome::Unchanged));
        let again: Vec<usize> = (500..500 + guests.len() as u32).map(|id| backend.guest(id).map_or(0, |g| g.starts)).collect();
        prop_assert_eq!(starts, again);
    }
}
