//! Every call the driver can make names an endpoint of both Proxmox VE versions' schemas, with
//! the method the schema gives it. The list below is checked to hold every kind of call: a new
//! one must be added here (the match in `kind` does not compile otherwise).

use phoenix_proxmox::transport::endpoint::{Agent, Call, Guest, Power};
use phoenix_proxmox::transport::upid::Upid;
use phoenix_pve_double::{ApiSchema, PveVersion};

/// Which kind of call, as a number, for every variant.
fn kind(call: &Call<'_>) -> usize {
    match call {
        Call::Version => 0,
        Call::Permissions => 1,
        Call::Login => 2,
        Call::Resources => 3,
        Call::ClusterStatus => 4,
        Call::Nodes => 5,
        Call::Storages { .. } => 6,
        Call::StorageContent { .. } => 7,
        Call::Network { .. } => 8,
        Call::Appliances { .. } => 9,
        Call::DownloadAppliance { .. } => 10,
        Call::TaskStatus(_) => 11,
        Call::TaskLog(_) => 12,
        Call::Create { .. } => 13,
        Call::Config(_) => 14,
        Call::SetConfig(_) => 15,
        Call::Snapshots(_) => 16,
        Call::TakeSnapshot(_) => 17,
        Call::Clone(_) => 18,
        Call::Resize(_) => 19,
        Call::Power(..) => 20,
        Call::Destroy(_) => 21,
        Call::Interfaces(_) => 22,
        Call::Agent(..) => 23,
        Call::FirewallOptions(_) => 24,
        Call::SetFirewallOptions(_) => 25,
        Call::FirewallRules(_) => 26,
        Call::AddFirewallRule(_) => 27,
        Call::SetFirewallRule(..) => 28,
        Call::DeleteFirewallRule(..) => 29,
        Call::MakeTemplate(_) => 30,
        Call::DownloadUrl { .. } => 31,
        Call::StorageConfig => 32,
        Call::Tasks(_) => 33,
        Call::Rollback(..) => 34,
        Call::DeleteSnapshot(..) => 35,
        Call::Status(_) => 36,
    }
}

#[test]
fn every_call_names_an_endpoint_of_both_schemas() {
    let upid: Upid = "UPID:pve1:0012ABCD:01A2B3C4:6745F0A1:vzstart:950:phoenix@pve!ci:".parse().expect("upid");
    let (ct, vm) = (Guest::lxc("pve1", 950), Guest::qemu("pve1", 8001));
    let mut calls = vec![
        Call::Version,
        Call::Permissions,
        Call::Login,
        Call::Resources,
        Call::ClusterStatus,
        Call::Nodes,
        Call::StorageConfig,
        Call::Storages { node: "pve1" },
        Call::StorageContent { node: "pve1", storage: "local" },
        Call::Network { node: "pve1" },
        Call::Appliances { node: "pve1" },
        Call::DownloadAppliance { node: "pve1" },
        Call::DownloadUrl { node: "pve1", storage: "local" },
        Call::Tasks("pve1"),
        Call::TaskStatus(&upid),
        Call::TaskLog(&upid),
        Call::Interfaces(ct),
    ];
    for guest in [ct, vm] {
        calls.push(Call::Create { node: "pve1", kind: guest.kind });
        for power in [Power::Start, Power::Stop, Power::Shutdown] {
            calls.push(Call::Power(guest, power));
        }
        calls.extend([
            Call::Config(guest),
            Call::SetConfig(guest),
            Call::Status(guest),
            Call::Snapshots(guest),
            Call::TakeSnapshot(guest),
            Call::Rollback(guest, "phoenix-pre-20250131-235959"),
            Call::DeleteSnapshot(guest, "phoenix-pre-20250131-235959"),
            Call::Clone(guest),
            Call::MakeTemplate(guest),
            Call::Resize(guest),
            Call::Destroy(guest),
            Call::FirewallOptions(guest),
            Call::SetFirewallOptions(guest),
            Call::FirewallRules(guest),
            Call::AddFirewallRule(guest),
            Call::SetFirewallRule(guest, 2),
            Call::DeleteFirewallRule(guest, 0),
        ]);
    }
    for agent in [Agent::Ping, Agent::Exec, Agent::ExecStatus, Agent::FileWrite, Agent::FileRead, Agent::Interfaces] {
        calls.push(Call::Agent(vm, agent));
    }
    let covered: std::collections::BTreeSet<usize> = calls.iter().map(kind).collect();
    assert_eq!(covered, (0..37).collect(), "a kind of call is missing from the list");
    for version in PveVersion::ALL {
        let schema = ApiSchema::get(version);
        for call in &calls {
            assert!(
                schema.endpoint(call.method(), &call.path()).is_some(),
                "{} {} is not an endpoint of PVE {}",
                call.method(),
                call.path(),
                version.name()
            );
        }
    }
    // And one that is not: the check can fail.
    let wrong = Call::Interfaces(vm);
    assert!(ApiSchema::get(PveVersion::V9).endpoint(wrong.method(), &wrong.path()).is_none());
}
