//! The Proxmox backend against the PVE test double with a latency added to every request,
//! building the AI-host example (`examples/ai-stack`: its containers and its VMs, whose guest
//! agents answer a task's duration after they start). Prints (never fails on time):
//! - a cold apply: total time, requests, connections opened, node commands, against the lower bound — the longest
//!   chain of guests along clone and dependency edges, each counted with the duration it takes
//!   in a cold apply with one job (so without waiting for any other guest);
//! - task-completion detection: the delay between a task's end and the status request that
//!   found it stopped (median, 90th percentile, max);
//! - a no-op re-apply (observe, plan, apply of an empty plan): total time, requests and
//!   connections opened;
//! - for both, the requests and node commands by kind.
//!
//! `cargo bench -p phoenix-proxmox --bench apply_double [-- LATENCY_MS TASK_MS JOBS CONNECT_MS]`
//! (defaults 20, 300, 8, 10).

#![allow(clippy::print_stdout)] // A benchmark prints its figures.

#[path = "../tests/support/ai_stack.rs"]
mod ai_stack;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use phoenix_backend::GuestId;
use phoenix_engine::health::AlwaysUp;
use phoenix_engine::planner::Planner;
use phoenix_engine::{ApplyOptions, Engine, GuestOutcome, Reporter};
use phoenix_plan::{LifecycleState, Step};
use phoenix_proxmox::backend::ProxmoxBackend;
use phoenix_proxmox::node::channel::{ChannelError, NodeChannel, Output};
use phoenix_proxmox::transport::api::{ApiClient, Auth, TlsVerify};
use phoenix_pve_double::{Credentials, PveDouble, PveVersion};

/// Each guest's own duration in the run.
#[derive(Default)]
struct Durations(Mutex<BTreeMap<GuestId, Duration>>);

impl Reporter for Durations {
    fn state(&self, _: GuestId, _: LifecycleState, _: Option<&Step>) {}
    fn finished(&self, guest: GuestId, _: &GuestOutcome, took: Duration) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).insert(guest, took);
    }
    fn note(&self, _: GuestId, _: &str) {}
}

/// The longest chain of guests along `needs`, each counted with its duration.
fn longest_chain(plan: &phoenix_plan::Plan, took: &BTreeMap<GuestId, Duration>) -> Duration {
    let mut finish: BTreeMap<GuestId, Duration> = BTreeMap::new();
    for g in &plan.guests {
        let start = g.needs.iter().filter_map(|n| finish.get(n)).max().copied().unwrap_or_default();
        finish.insert(g.id, start + took.get(&g.id).copied().unwrap_or_default());
    }
    finish.values().max().copied().unwrap_or_default()
}

/// The requests and node commands made since the counts given, by kind (method and path with the
/// guest IDs and names left out), most frequent first.
fn by_kind_line(double: &PveDouble, requests: usize, commands: usize) -> String {
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for r in &double.requests()[requests..] {
        let path: Vec<&str> = r
            .path
            .split('/')
            .enumerate()
            .map(|(i, part)| match i {
                2 if r.path.starts_with("/nodes/") => "{node}",
                _ if part.starts_with("UPID:") => "{upid}",
                _ if part.parse::<u32>().is_ok() => "{id}",
                _ => part,
            })
            .collect();
        *kinds.entry(format!("{} {}", r.method, path.join("/"))).or_default() += 1;
    }
    for c in &double.node_channel().commands()[commands..] {
        *kinds
            .entry(format!("node `{}`", c.argv.iter().take(2).cloned().collect::<Vec<_>>().join(" ")))
            .or_default() += 1;
    }
    let mut sorted: Vec<(String, usize)> = kinds.into_iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    sorted.iter().map(|(k, n)| format!("{n} × {k}")).collect::<Vec<_>>().join(", ")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted.get(((sorted.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or_default()
}

/// One cold apply and one no-op re-apply on a fresh double; returns the cold apply's plan, each
/// guest's duration and the total, and prints the figures when `print`.
fn run(
    latency: u64,
    task: u64,
    jobs: usize,
    connect: u64,
    print: bool,
) -> (phoenix_plan::Plan, BTreeMap<GuestId, Duration>, Duration) {
    let double = PveDouble::start(
        PveVersion::V9,
        Credentials { token: ("phoenix@pve!bench".into(), "s3cret".into()), root_password: "root-pw".into() },
    );
    double.set_latency(Duration::from_millis(latency));
    double.set_connection_delay(Duration::from_millis(connect));
    double.set_task_duration(Duration::from_millis(task));
    // The example's container storage: a ZFS dataset (`proxmox_storage_type` zfspool), which takes
    // the templates' snapshots.
    double.add_storage("fastData-lxc-disks", "zfspool", "rootdir,images");
    // The VMs' cloud image, where a token may import it from.
    double.add_dir_storage("fastData", "/fastData/shared-iso", "iso,vztmpl,import");
    double.add_image("fastData:import/noble-server-cloudimg-amd64.img", 2_361_393_152);
    double.set_agent_delay(Duration::from_millis(task));
    double.set_devices(
        "pve1",
        &["/dev/nvidia0", "/dev/nvidia1", "/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"],
    );
    let nodes = double.node_channel();
    let channel: Arc<dyn NodeChannel> =
        Arc::new(move |node: &str, argv: &[String], input: Option<&[u8]>| -> Result<Output, ChannelError> {
            let (status, stdout, stderr) = nodes.run(node, argv, input);
            Ok(Output { status, stdout, stderr })
        });
    let api = ApiClient::new(
        "127.0.0.1",
        double.addr.port(),
        Auth::Token { id: "phoenix@pve!bench".into(), secret: "s3cret".into() },
        TlsVerify::fingerprint(&double.fingerprint).expect("pin"),
    )
    .expect("client");
    let dir = tempfile::tempdir().expect("tmp");
    let estate = ai_stack::write(dir.path(), &double, "phoenix@pve!bench");
    let lib = ai_stack::library();
    let options = ApplyOptions { jobs, per_node: jobs, ..ApplyOptions::default() };

    let round = |label: &str| {
        // A new backend per run, as each `phoenix apply` is a new process.
        let backend = ProxmoxBackend::new(api.clone(), "pve1", Some(channel.clone()))
            .with_vm_passwords(phoenix_plan::vm_passwords(&estate));
        let (requests, connections, commands) =
            (double.requests().len(), double.connections(), double.node_channel().commands().len());
        let started = Instant::now();
        // Planned as `phoenix apply` plans: observation, the plan and every check of it.
        let mut planner = Planner::new(estate.clone(), &lib, dir.path(), &[]).expect("prepare");
        let plan = planner.plan(&backend, &AlwaysUp).expect("observe").plan;
        assert!(plan.issues.is_empty(), "{:#?}", plan.issues);
        let cancel = AtomicBool::new(false);
        let durations = Durations::default();
        let engine = Engine { backend: &backend, prober: &AlwaysUp, reporter: &durations, cancel: &cancel };
        let report = engine.apply(planner.desired(), &plan, planner.jobs(), &options);
        let total = started.elapsed();
        assert!(!report.failed(), "{report:#?}");
        let took = durations.0.lock().unwrap_or_else(PoisonError::into_inner).clone();
        if print {
            println!(
                "{label}: {:>7.3} s, {} guests changed, {} API requests over {} connections, {} node commands",
                total.as_secs_f64(),
                plan.guests_to_change(),
                double.requests().len() - requests,
                double.connections() - connections,
                double.node_channel().commands().len() - commands,
            );
        }
        if print {
            println!("  by kind: {}", by_kind_line(&double, requests, commands));
        }
        (plan, took, total)
    };
    let cold = round("cold apply  ");
    if print {
        let mut delays = double.task_detection_delays();
        delays.sort();
        println!(
            "  task-completion detection over {} tasks: median {:.0} ms, p90 {:.0} ms, max {:.0} ms (includes the {latency} ms request latency)",
            delays.len(),
            percentile(&delays, 0.5).as_secs_f64() * 1000.0,
            percentile(&delays, 0.9).as_secs_f64() * 1000.0,
            delays.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
        );
    }
    let (plan, _, _) = round("no-op apply ");
    assert!(plan.is_empty(), "{:#?}", plan.guests.iter().filter(|g| !g.steps.is_empty()).collect::<Vec<_>>());
    cold
}

fn main() {
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let latency = args.first().copied().unwrap_or(20);
    let task = args.get(1).copied().unwrap_or(300);
    let jobs = args.get(2).copied().unwrap_or(8) as usize;
    let connect = args.get(3).copied().unwrap_or(10);
    println!(
        "Proxmox backend vs the PVE 9.2.3 double: {latency} ms per request, {connect} ms per new connection, tasks of {task} ms, {jobs} jobs"
    );
    let (plan, _, total) = run(latency, task, jobs, connect, true);
    let (_, alone, _) = run(latency, task, 1, connect, false);
    let bound = longest_chain(&plan, &alone);
    println!(
        "  cold apply against the lower bound (longest chain of guests, each with its duration in a one-job apply): {:.3} s vs {:.3} s, {:.1} % above",
        total.as_secs_f64(),
        bound.as_secs_f64(),
        (total.as_secs_f64() / bound.as_secs_f64() - 1.0) * 100.0
    );
}
