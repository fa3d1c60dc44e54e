//! The opt-in suite of host setup on a real Proxmox VE host: run as root on the node itself, with
//! a configuration directory written for that node. It is built only with the `real-host`
//! feature, so CI never builds it; without its settings it is skipped with a message saying
//! what is missing.
//!
//! ```text
//! PHOENIX_HOST_CONFIG_DIR=/usr/local/phoenix_hypervisor/etc \
//! cargo test -p phoenix-cli --features real-host --test real_host -- --nocapture --test-threads 1
//! ```
//!
//! Without more, it only reads the host: `phoenix setup-hypervisor plan` (text and JSON) and
//! `apply --dry-run` leave every file host setup writes, and the cluster firewall, as they were;
//! and each module's observation of the host agrees with the host's own tools (the APT release,
//! `zpool list` and `zfs list`, `exportfs -v`, `apparmor_parser -Q` of the profile, the firewall
//! read through `pvesh`, the loaded NVIDIA driver). With `PHOENIX_HOST_APPLY=yes` as well, it
//! runs `setup-hypervisor apply` (never with `--allow-wipe`) and checks that the plan is then
//! empty and a second apply changes nothing. The README lists the settings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use phoenix_config::model::{HostFirewall, RaidLevel, ZfsPool};
use phoenix_engine::planner::Validated;
use phoenix_host::Module;
use phoenix_host::host::{Host, ReadOnly, RealHost};
use phoenix_host::modules::{apparmor, firewall, nfs, nvidia, repositories, zfs};

/// The files host setup writes or edits, and the directories whose files it owns.
const WATCHED: &[&str] = &[
    "/etc/apt/sources.list.d",
    "/etc/timezone",
    "/etc/localtime",
    "/etc/chrony/sources.d",
    "/etc/passwd",
    "/etc/group",
    "/etc/shadow",
    "/etc/sudoers.d",
    "/etc/modprobe.d",
    "/etc/pve/storage.cfg",
    "/etc/exports.d",
    "/etc/samba/smb.conf",
    "/etc/samba/phoenix-shares.conf",
    "/etc/apparmor.d/lxc-phoenix-mounting",
    "/etc/subuid",
    "/etc/subgid",
];

/// The configuration directory, when the suite may run here; `None` (skipped, saying why)
/// otherwise.
fn config_dir() -> Option<PathBuf> {
    let dir = std::env::var("PHOENIX_HOST_CONFIG_DIR").ok().filter(|d| !d.is_empty());
    let host = RealHost::system();
    let why = if dir.is_none() {
        Some("PHOENIX_HOST_CONFIG_DIR is not set (see the README)".to_string())
    } else if !phoenix_testkit::is_root() {
        Some("it must run as root on the Proxmox VE node".to_string())
    } else if !Path::new("/etc/pve").is_dir() || !host.has_program("pvesh") {
        Some("this is not a Proxmox VE node (no /etc/pve or no pvesh)".to_string())
    } else {
        None
    };
    phoenix_testkit::real_component("the host-setup suite on a real Proxmox VE host", why)
        .then_some(dir)
        .flatten()
        .map(PathBuf::from)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `phoenix -c DIR <args>`; the environment (secret references) is passed on.
fn phoenix(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_phoenix"))
        .args(["--color", "never", "--no-progress", "-c"])
        .arg(dir)
        .args(args)
        .env_remove("PHOENIX_CONFIG_DIR")
        .output()
        .expect("run phoenix")
}

/// A tool of the host, its standard output; `None` when it is not installed or fails.
fn tool(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).env("LC_ALL", "C").output().ok()?;
    out.status.success().then(|| text(&out.stdout))
}

/// What host setup may change, as it is now: every watched file (content or link target) and
/// the cluster firewall as the API shows it. Compared, never printed: `/etc/shadow` is in it.
fn state() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut todo: Vec<PathBuf> = WATCHED.iter().map(PathBuf::from).collect();
    while let Some(p) = todo.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else { continue };
        let key = p.display().to_string();
        if meta.is_dir() {
            for e in std::fs::read_dir(&p).expect("read a watched directory").flatten() {
                todo.push(e.path());
            }
        } else if meta.file_type().is_symlink() {
            out.insert(key, format!("-> {}", std::fs::read_link(&p).expect("link").display()));
        } else {
            out.insert(key, text(&std::fs::read(&p).expect("read a watched file")));
        }
    }
    for path in [firewall::OPTIONS, firewall::RULES] {
        out.insert(
            format!("pvesh {path}"),
            tool("pvesh", &["get", path, "--output-format", "json"]).unwrap_or_default(),
        );
    }
    out
}

/// The keys whose values differ (never the values: they may hold password hashes).
fn changed(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> Vec<String> {
    before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .cloned()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[test]
#[allow(clippy::print_stderr, reason = "the person running the opt-in suite reads the plan")]
fn the_plan_and_a_dry_run_change_nothing_on_a_real_host() {
    let Some(dir) = config_dir() else { return };
    let before = state();
    let out = phoenix(&dir, &["setup-hypervisor", "plan", "--detailed-exitcode"]);
    eprintln!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(matches!(out.status.code(), Some(0 | 2)), "setup-hypervisor plan failed: {}", text(&out.stderr));
    let out = phoenix(&dir, &["--output", "json", "setup-hypervisor", "plan"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the plan as JSON");
    let modules: Vec<&str> =
        json["modules"].as_array().expect("modules").iter().filter_map(|m| m["module"].as_str()).collect();
    assert!(modules.contains(&"repositories") && modules.contains(&"subids"), "{modules:?}");
    assert!(modules.iter().all(|m| phoenix_host::MODULES.contains(m)), "{modules:?}");
    let out = phoenix(&dir, &["setup-hypervisor", "apply", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(changed(&before, &state()), Vec::<String>::new(), "planning or a dry run changed the host");
}

#[test]
#[allow(clippy::print_stderr, reason = "the person running the opt-in suite reads what was checked")]
fn each_module_sees_the_host_as_its_own_tools_do() {
    let Some(dir) = config_dir() else { return };
    let validated = Validated::read(&dir, &dir.join("features"));
    let estate = validated.estate().expect("the configuration is valid");
    let system = RealHost::system();
    let host = ReadOnly(&system);
    // Secret references resolved as `phoenix` resolves them (errors name the reference only).
    let secrets = phoenix_cli::secrets::Secrets::from_process_env();
    let resolve = |r: &str| secrets.resolve(r).map_err(phoenix_cli::secrets::SecretError::into_host_error);
    // Every module the configuration asks for observes and plans on the real host.
    for m in phoenix_host::modules(estate, None, &[]) {
        let plan = m.plan_on(&system, &resolve).unwrap_or_else(|e| panic!("{}: {e} {:?}", m.name(), e.detail));
        eprintln!("{}: {} step(s), notes {:?}", plan.module, plan.steps.len(), plan.notes);
    }

    // repositories: a Proxmox VE 8 or 9 release, and a dpkg database.
    let repos = repositories::Repositories { packages: phoenix_host::packages(estate) };
    let o = repos.observe(&host).expect("repositories");
    assert!(matches!(o.codename.as_deref(), Some("bookworm" | "trixie")), "release {:?}", o.codename);
    assert!(o.missing.is_some(), "no dpkg database seen");
    let release = std::fs::read_to_string("/etc/os-release").expect("os-release");
    assert!(release.contains(o.codename.as_deref().unwrap_or("?")), "{release}");

    // zfs: the pools and datasets it sees are those `zpool list` and `zfs list` show (asked
    // about every pool the host has, whatever the configuration names).
    match tool("zpool", &["list", "-H", "-o", "name"]) {
        Some(listed) => {
            let listed: std::collections::BTreeSet<String> = listed.lines().map(str::to_string).collect();
            let mut config = estate.hypervisor.zfs.clone().unwrap_or_default();
            config.pools = listed
                .iter()
                .map(|name| ZfsPool { name: name.clone(), raid_level: RaidLevel::Single, disks: Vec::new() })
                .collect();
            let o = zfs::Zfs { config, allow_wipe: Vec::new() }.observe(&host).expect("zfs");
            assert!(o.tools);
            if !listed.is_empty() {
                assert_eq!(o.pools, listed);
                for pool in &listed {
                    assert!(o.status.get(pool).is_some_and(|s| s.contains(pool.as_str())), "zpool status -P {pool}");
                }
                let datasets = tool("zfs", &["list", "-H", "-o", "name", "-t", "filesystem,volume"]).expect("zfs list");
                let datasets: std::collections::BTreeSet<String> = datasets.lines().map(str::to_string).collect();
                assert_eq!(o.datasets, datasets);
            }
            eprintln!("zfs: {} pool(s), {} dataset(s)", o.pools.len(), o.datasets.len());
        }
        None => eprintln!("zfs: no zpool here; the zfs module waits for zfsutils-linux"),
    }

    // nfs: Phoenix's exports file, and with it applied, its paths exported.
    let exports = estate.hypervisor.nfs.as_ref().map(|n| n.exports.clone()).unwrap_or_default();
    let n = nfs::Nfs { exports: exports.clone() };
    let o = n.observe(&host).expect("nfs");
    assert_eq!(o.current, std::fs::read_to_string(nfs::EXPORTS_FILE).ok());
    if o.exportfs && o.current.is_some() && o.current == nfs::render(&exports).ok() {
        let active = tool("exportfs", &["-v"]).expect("exportfs -v");
        for e in &exports {
            assert!(active.contains(&e.path), "{} is in {} but not exported", e.path, nfs::EXPORTS_FILE);
        }
    }

    // apparmor: the profile Phoenix writes passes the parser here (syntax only, not loaded).
    if system.has_program("apparmor_parser") && Path::new(apparmor::LXC_ABSTRACTION).exists() {
        let tmp = tempfile::tempdir().expect("tmp");
        let candidate = tmp.path().join(apparmor::PROFILE);
        std::fs::write(&candidate, apparmor::render()).expect("write the profile");
        let out = Command::new("apparmor_parser")
            .args(["-Q", "-K", "--base", "/etc/apparmor.d"])
            .arg(&candidate)
            .output()
            .expect("apparmor_parser");
        assert!(out.status.success(), "apparmor_parser -Q: {}", text(&out.stderr));
        if Path::new(apparmor::PROFILE_FILE).exists() {
            let out = Command::new("apparmor_parser")
                .args(["-Q", "-K", "--base", "/etc/apparmor.d", apparmor::PROFILE_FILE])
                .output()
                .expect("apparmor_parser");
            assert!(out.status.success(), "apparmor_parser -Q {}: {}", apparmor::PROFILE_FILE, text(&out.stderr));
        }
    } else {
        eprintln!("apparmor: no apparmor_parser or no LXC abstractions here; the profile is not checked");
    }

    // firewall: the options and rules read through the API, as `pvesh` shows them.
    let off = HostFirewall {
        enabled: false,
        default_input_policy: None,
        default_output_policy: None,
        global_firewall_rules: Vec::new(),
    };
    let fw = firewall::Firewall { config: estate.hypervisor.firewall.clone().unwrap_or(off) };
    let o = fw.observe(&host).expect("firewall");
    assert!(o.pve);
    let options = tool("pvesh", &["get", firewall::OPTIONS, "--output-format", "json"]).expect("pvesh options");
    let (options, digest) = firewall::parse_options(&serde_json::from_str(&options).expect("json")).expect("options");
    assert_eq!((o.options, o.options_digest), (options, digest));
    let rules = tool("pvesh", &["get", firewall::RULES, "--output-format", "json"]).expect("pvesh rules");
    let (rules, _) = firewall::parse_rules(&serde_json::from_str(&rules).expect("json")).expect("rules");
    assert_eq!(o.rules, rules);
    eprintln!(
        "firewall: {} rule(s), {} of them Phoenix's",
        rules.len(),
        rules.iter().filter(|r| firewall::is_phoenix_rule(r)).count()
    );

    // nvidia: the loaded driver it sees is the kernel's.
    let driver = estate.hypervisor.nvidia_driver.as_ref();
    let nv = nvidia::Nvidia {
        version: driver.and_then(|d| d.version.clone()),
        runfile_url: driver.and_then(|d| d.runfile_url.clone()),
    };
    let o = nv.observe(&host).expect("nvidia");
    match std::fs::read_to_string(nvidia::PROC_VERSION) {
        Ok(v) => assert_eq!(o.loaded, nvidia::proc_version(&v)),
        Err(_) => eprintln!("nvidia: no driver loaded (seen: {:?})", o.loaded),
    }
}

#[test]
fn after_apply_the_plan_is_empty_and_a_second_apply_changes_nothing() {
    let Some(dir) = config_dir() else { return };
    let allowed = std::env::var("PHOENIX_HOST_APPLY").is_ok_and(|v| v == "yes");
    let why = (!allowed).then(|| "PHOENIX_HOST_APPLY=yes is not set: apply changes the host".to_string());
    if !phoenix_testkit::real_component("applying host setup on a real Proxmox VE host", why) {
        return;
    }
    let out = phoenix(&dir, &["setup-hypervisor", "apply"]);
    assert_eq!(out.status.code(), Some(0), "apply: {}{}", text(&out.stdout), text(&out.stderr));
    let out = phoenix(&dir, &["setup-hypervisor", "plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "a plan after apply is not empty:\n{}", text(&out.stdout));
    let before = state();
    let out = phoenix(&dir, &["setup-hypervisor", "apply"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(changed(&before, &state()), Vec::<String>::new(), "a second apply changed the host");
}
