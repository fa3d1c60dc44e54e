//! The zfs module against the recording double, whose `zpool`, `zfs`, `lsblk` and `wipefs` check
//! their argv against the real tools' syntax and keep pools and datasets in memory (this kernel
//! has no ZFS): pools on clean disks only, `--allow-wipe` for the others, existing pools left
//! alone, datasets created and their properties set, the ARC maximum; planning changes nothing
//! and a second apply does nothing.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use phoenix_config::model::{RaidLevel, Zfs as ZfsConfig, ZfsDataset, ZfsPool};
use phoenix_host::double::{RecordingHost, Tree};
use phoenix_host::host::{Invocation, Output};
use phoenix_host::modules::zfs::{self, Zfs};
use phoenix_host::{Planner, apply};
use support::{no_secrets, summaries};

#[derive(Default)]
struct State {
    /// Pool → disks.
    pools: BTreeMap<String, Vec<String>>,
    /// Dataset → properties.
    datasets: BTreeMap<String, BTreeMap<String, String>>,
    /// Disk → (partitions, signatures).
    disks: BTreeMap<String, (Vec<String>, Vec<String>)>,
}

fn ok(stdout: String) -> Output {
    Output { status: 0, stdout, stderr: String::new() }
}

fn fail(stderr: &str) -> Output {
    Output { status: 1, stdout: String::new(), stderr: stderr.into() }
}

fn args(inv: &Invocation) -> Vec<String> {
    inv.args.iter().map(ToString::to_string).collect()
}

fn valid_name(n: &str) -> bool {
    n.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && n.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
}

fn host(state: &Arc<Mutex<State>>) -> RecordingHost {
    let (s1, s2, s3, s4) = (state.clone(), state.clone(), state.clone(), state.clone());
    let mut h = RecordingHost::new().dirs(&["/etc/modprobe.d", "/sys/module/zfs/parameters"]);
    for d in state.lock().expect("state").disks.keys() {
        h = h.file(d, "");
    }
    h.file(zfs::ARC_MAX_PARAM, "0\n")
        .program("tee", |inv, tree: &mut Tree| {
            let a = args(inv);
            assert_eq!(a, [zfs::ARC_MAX_PARAM]);
            let data = inv.stdin.as_ref().map(|s| s.0.clone()).unwrap_or_default();
            tree.insert(
                a[0].clone().into(),
                phoenix_host::double::Node::File { data, mode: 0o644, ids: phoenix_host::host::Ids { uid: 0, gid: 0 } },
            );
            Output::default()
        })
        .program("zpool", move |inv, _| {
            let a = args(inv);
            let mut s = s1.lock().expect("state");
            match a.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
                ["list", "-H", "-o", "name"] => ok(s.pools.keys().map(|p| format!("{p}\n")).collect()),
                ["status", "-P", name] => match s.pools.get(*name) {
                    Some(disks) => ok(format!(
                        "  pool: {name}\n config:\n{}",
                        disks.iter().map(|d| format!("\t  {d}-part1  ONLINE\n")).collect::<String>()
                    )),
                    None => fail("no such pool"),
                },
                ["create", rest @ ..] => {
                    let rest: Vec<&str> = rest.iter().copied().skip_while(|x| *x == "-f").collect();
                    let force = a.get(1).is_some_and(|x| x == "-f");
                    let (name, rest) = rest.split_first().expect("name");
                    assert!(valid_name(name), "pool name {name}");
                    let disks: Vec<&str> = rest
                        .iter()
                        .copied()
                        .skip_while(|x| ["mirror", "raidz1", "raidz2", "raidz3"].contains(x))
                        .collect();
                    assert!(rest.len() - disks.len() <= 1 && !disks.is_empty(), "{a:?}");
                    assert!(disks.iter().all(|d| d.starts_with("/dev/")), "{a:?}");
                    for d in &disks {
                        let (parts, sigs) = s.disks.get(*d).cloned().unwrap_or_default();
                        if (!parts.is_empty() || !sigs.is_empty()) && !force {
                            return fail("invalid vdev specification; use '-f' to override");
                        }
                        s.disks.insert((*d).to_string(), (vec![], vec!["zfs_member".into()]));
                    }
                    s.pools.insert((*name).to_string(), disks.iter().map(|d| (*d).to_string()).collect());
                    s.datasets.insert((*name).to_string(), BTreeMap::new());
                    Output::default()
                }
                other => panic!("unexpected zpool {other:?}"),
            }
        })
        .program("zfs", move |inv, _| {
            let a = args(inv);
            let mut s = s2.lock().expect("state");
            match a.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
                ["list", "-H", "-o", "name", "-t", "filesystem,volume"] => {
                    ok(s.datasets.keys().map(|p| format!("{p}\n")).collect())
                }
                ["get", "-H", "-o", "property,value", keys, name] => {
                    let props = s.datasets.get(*name).cloned().unwrap_or_default();
                    ok(keys
                        .split(',')
                        .map(|k| format!("{k}\t{}\n", props.get(k).map_or("off", String::as_str)))
                        .collect())
                }
                ["create", rest @ ..] => {
                    let (name, opts) = rest.split_last().expect("name");
                    let mut props = BTreeMap::new();
                    let mut it = opts.iter().filter(|o| **o != "-p");
                    while let Some(o) = it.next() {
                        assert_eq!(*o, "-o", "{a:?}");
                        let (k, v) = it.next().and_then(|kv| kv.split_once('=')).expect("k=v");
                        props.insert(k.to_string(), v.to_string());
                    }
                    let pool = name.split('/').next().unwrap_or_default();
                    assert!(s.pools.contains_key(pool) && name.contains('/'), "{a:?}");
                    s.datasets.insert((*name).to_string(), props);
                    Output::default()
                }
                ["set", rest @ ..] => {
                    let (name, kvs) = rest.split_last().expect("name");
                    assert!(!kvs.is_empty());
                    for kv in kvs {
                        let (k, v) = kv.split_once('=').expect("k=v");
                        s.datasets.get_mut(*name).expect("dataset").insert(k.into(), v.into());
                    }
                    Output::default()
                }
                other => panic!("unexpected zfs {other:?}"),
            }
        })
        .program("lsblk", move |inv, _| {
            let a = args(inv);
            assert_eq!(a[..2], ["-nro", "NAME,TYPE"]);
            let s = s3.lock().expect("state");
            let (parts, _) = s.disks.get(&a[2]).cloned().unwrap_or_default();
            ok(std::iter::once("sdx disk\n".to_string()).chain(parts.iter().map(|p| format!("{p} part\n"))).collect())
        })
        .program("wipefs", move |inv, _| {
            let a = args(inv);
            let mut s = s4.lock().expect("state");
            match a.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
                ["--no-act", "--noheadings", "--output", "TYPE", disk] => ok(s
                    .disks
                    .get(*disk)
                    .map(|(_, sig)| sig.iter().map(|x| format!("{x}\n")).collect())
                    .unwrap_or_default()),
                ["--all", disk] => {
                    s.disks.insert((*disk).to_string(), (vec![], vec![]));
                    Output::default()
                }
                other => panic!("unexpected wipefs {other:?}"),
            }
        })
}

const D1: &str = "/dev/disk/by-id/nvme-one";
const D2: &str = "/dev/disk/by-id/nvme-two";

fn state(disks: &[(&str, &[&str], &[&str])]) -> Arc<Mutex<State>> {
    let mut s = State::default();
    for (d, parts, sigs) in disks {
        s.disks.insert(
            (*d).into(),
            (parts.iter().map(|x| (*x).to_string()).collect(), sigs.iter().map(|x| (*x).to_string()).collect()),
        );
    }
    Arc::new(Mutex::new(s))
}

fn config() -> ZfsConfig {
    ZfsConfig {
        arc_max_gb: Some(4),
        pools: vec![ZfsPool {
            name: "fastData".into(),
            raid_level: RaidLevel::Mirror,
            disks: vec![D1.into(), D2.into()],
        }],
        datasets: vec![ZfsDataset {
            name: "shared-models".into(),
            pool: "fastData".into(),
            properties: Some("compression=lz4,recordsize=1M".into()),
            proxmox_storage_type: None,
            proxmox_content_type: None,
        }],
    }
}

#[test]
fn a_pool_on_clean_disks_its_dataset_and_the_arc_maximum_then_nothing() {
    let st = state(&[(D1, &[], &[]), (D2, &[], &[])]);
    let host = host(&st);
    let m = Zfs { config: config(), allow_wipe: vec![] };
    host.clear_log();
    let plan = m.plan_on(&host, &no_secrets).expect("plan");
    assert_eq!(host.changes(), vec![], "planning changed the host");
    assert_eq!(
        summaries(&plan),
        [
            format!("run `zpool create fastData mirror {D1} {D2}`"),
            "run `zfs create -o compression=lz4 -o recordsize=1M fastData/shared-models`".to_string(),
            "write /etc/modprobe.d/zfs.conf (mode 0644), original kept as /etc/modprobe.d/zfs.conf.phoenix-orig"
                .to_string(),
            "run `tee /sys/module/zfs/parameters/zfs_arc_max`".to_string(),
        ]
    );
    assert!(plan.steps[0].reason.contains("no pool fastData"), "{}", plan.steps[0].reason);
    apply(&host, &plan, &no_secrets).expect("apply");
    assert_eq!(host.text(zfs::ARC_MAX_PARAM).as_deref(), Some("4294967296\n"));
    assert!(host.text(zfs::ZFS_CONF).expect("conf").contains("options zfs zfs_arc_max=4294967296\n"));
    host.clear_log();
    let again = m.plan_on(&host, &no_secrets).expect("again");
    assert!(again.steps.is_empty() && again.notes.is_empty(), "{again:#?}");
    assert_eq!(host.changes(), vec![]);
}

#[test]
fn a_disk_with_partitions_or_a_pool_signature_is_refused_unless_allow_wipe_names_it() {
    let st = state(&[(D1, &["nvme0n1p1"], &["gpt"]), (D2, &[], &["zfs_member"])]);
    let host = host(&st);
    let m = Zfs { config: config(), allow_wipe: vec![D1.into()] };
    let e = m.plan_on(&host, &no_secrets).expect_err("D2 is not allowed");
    assert_eq!(e.message, format!("zfs pool fastData: refusing to use {D2}: it holds signatures zfs_member"));
    assert!(e.detail.as_deref().is_some_and(|d| d.contains(&format!("--allow-wipe {D2}"))), "{e:?}");
    assert!(host.changes().is_empty());

    let m = Zfs { config: config(), allow_wipe: vec![D1.into(), D2.into()] };
    let plan = m.plan_on(&host, &no_secrets).expect("plan");
    assert_eq!(
        summaries(&plan)[..3],
        [
            format!("run `wipefs --all {D1}`"),
            format!("run `wipefs --all {D2}`"),
            format!("run `zpool create -f fastData mirror {D1} {D2}`")
        ]
    );
    assert_eq!(
        plan.steps[0].reason,
        format!("--allow-wipe names {D1}, which holds partitions nvme0n1p1 and signatures gpt")
    );
    apply(&host, &plan, &no_secrets).expect("apply");
    assert!(m.plan_on(&host, &no_secrets).expect("again").steps.is_empty());
}

#[test]
fn an_existing_pool_is_never_recreated_and_differing_properties_are_set() {
    let st = state(&[]);
    {
        let mut s = st.lock().expect("state");
        s.pools.insert("fastData".into(), vec!["/dev/disk/by-id/other".into()]);
        s.datasets.insert("fastData".into(), BTreeMap::new());
        s.datasets.insert(
            "fastData/shared-models".into(),
            BTreeMap::from([("compression".into(), "lz4".into()), ("recordsize".into(), "128K".into())]),
        );
    }
    let host = host(&st);
    let mut c = config();
    c.arc_max_gb = None;
    let m = Zfs { config: c, allow_wipe: vec![] };
    let plan = m.plan_on(&host, &no_secrets).expect("plan");
    assert_eq!(summaries(&plan), ["run `zfs set recordsize=1M fastData/shared-models`"]);
    assert_eq!(plan.steps[0].reason, "fastData/shared-models has recordsize=128K (`zfs get`)");
    assert!(
        plan.notes
            .iter()
            .any(|n| n.contains("pool fastData exists and does not hold") && n.contains("never recreated")),
        "{:?}",
        plan.notes
    );
    apply(&host, &plan, &no_secrets).expect("apply");
    assert!(m.plan_on(&host, &no_secrets).expect("again").steps.is_empty());
    // The pool was not touched.
    assert_eq!(st.lock().expect("state").pools["fastData"], ["/dev/disk/by-id/other"]);
}

#[test]
fn bad_layouts_missing_disks_and_unknown_pools_stop_the_plan() {
    let st = state(&[(D1, &[], &[])]);
    let host = host(&st);
    let mut c = config();
    c.pools[0].disks = vec![D1.into()];
    let e = Zfs { config: c.clone(), allow_wipe: vec![] }.plan_on(&host, &no_secrets).expect_err("mirror of one");
    assert!(e.message.contains("needs at least 2 disks"), "{e}");
    c.pools[0].raid_level = RaidLevel::Single;
    c.pools[0].disks = vec!["/dev/disk/by-id/missing".into()];
    let e = Zfs { config: c.clone(), allow_wipe: vec![] }.plan_on(&host, &no_secrets).expect_err("missing disk");
    assert!(e.message.contains("there is no disk /dev/disk/by-id/missing"), "{e}");
    c.pools.clear();
    let e = Zfs { config: c.clone(), allow_wipe: vec![] }.plan_on(&host, &no_secrets).expect_err("no pool");
    assert!(e.message.contains("there is no pool fastData"), "{e}");
    c.datasets[0].properties = Some("compression lz4".into());
    assert!(zfs::parse_properties("x", c.datasets[0].properties.as_deref()).is_err());
}
