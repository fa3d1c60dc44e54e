//! The opt-in suite against a real Proxmox VE host: the scenario of `support/scenario.rs` (which
//! CI runs against the test double) run on a real node, and the fidelity items the double was
//! taught (each checked against the double in CI) walked again on the real thing: clones keep
//! Phoenix's mark, a host-path template resolves, a grown volume mount keeps its volume, a
//! `nameserver` change waits for the restart the plan makes, raw `lxc.k = v` lines are read,
//! commands in a container get a clean environment, a stopped container leaves the plan whole,
//! the record follows a snapshot's rollback and clone, locks are waited out, a no-op re-apply
//! reads the cluster once and each guest's configuration once and runs no node command, and the
//! plan refuses what Proxmox would (an ID map root may not map, a snapshot the storage or a bind
//! mount cannot take, a clone to another node from local storage); a privileged container's
//! feature flags go through root; a token granted with propagate 0 passes the preflight; a
//! root@pam with two-factor authentication is explained.
//!
//! Each test takes IDs no guest has, from `PHOENIX_PVE_FIRST_ID` on, and destroys everything it
//! made at the end, whether it passed or not; the tests run one at a time (they share the
//! token, whose requests the no-op check counts in pveproxy's access log). It is built only with
//! the `real-pve` feature, so CI never builds it; without its settings a test is skipped with a
//! message saying which are missing (the tests that need something more, a second node, a
//! directory storage, another token, a TFA-enabled login, have their own settings).
//!
//! ```text
//! PHOENIX_PVE_API_URL=https://pve1.lab.example:8006 PHOENIX_PVE_NODE=pve1 \
//! PHOENIX_PVE_TOKEN_ID='phoenix@pve!test' PHOENIX_PVE_TOKEN_SECRET=... \
//! PHOENIX_PVE_FINGERPRINT=AB:CD:... PHOENIX_PVE_SSH_HOST=pve1.lab.example \
//! cargo test -p phoenix-proxmox --features real-pve --test real_host -- --nocapture
//! ```
//!
//! The README lists every setting and its default.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use phoenix_backend::{
    Backend, BackendError, ChangeEffect, CreateRequest, CreateSource, ErrorKind, ExecRequest, FieldChange, GuestConfig,
    GuestId, GuestKind, PowerState,
};
use phoenix_engine::GuestOutcome;
use phoenix_plan::Action;
use phoenix_proxmox::backend::ProxmoxBackend;
use phoenix_proxmox::node::channel::{ChannelError, GUEST_PATH, NodeChannel, Output, SshNodes, SshTarget};
use phoenix_proxmox::transport::api::{ApiClient, Auth, TlsVerify};
use support::scenario::{Site, VmSite, free_ids, lifecycle, vm_lifecycle};

/// A setting from the environment, or its default.
fn var(name: &str, default: &str) -> String {
    std::env::var(name).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_string())
}

/// One test at a time: they share the token (whose requests one of them counts) and the IDs
/// from `PHOENIX_PVE_FIRST_ID` on.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The node channel with every command it runs counted: the backend's commands go through it;
/// the test's own (locks, conf files, logs) go around it, through [`Host::sh`].
struct Counting {
    inner: Arc<dyn NodeChannel>,
    ran: Mutex<Vec<String>>,
}

impl Counting {
    /// The commands run so far, as argument vectors joined by spaces.
    fn ran(&self) -> Vec<String> {
        self.ran.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl NodeChannel for Counting {
    fn run(
        &self,
        node: &str,
        argv: &[String],
        input: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<Output, ChannelError> {
        self.ran.lock().unwrap_or_else(PoisonError::into_inner).push(argv.join(" "));
        self.inner.run(node, argv, input, timeout)
    }
}

/// The real host the environment names.
struct Host {
    /// A backend for it, after its preflight, its node commands counted.
    backend: ProxmoxBackend,
    /// The configuration's backend section for it.
    backend_json: String,
    /// The first ID the tests may take.
    first: GuestId,
    /// The node.
    node: String,
    /// The API's host and port, and how its certificate is verified.
    api_at: (String, u16, TlsVerify),
    /// The token's client.
    api: ApiClient,
    /// The token's ID.
    token_id: String,
    /// The root@pam client, where `PHOENIX_PVE_ROOT_PASSWORD` gives one.
    root: Option<ApiClient>,
    /// The backend's node channel, counting.
    counting: Arc<Counting>,
    /// The node channel itself.
    ssh: Arc<dyn NodeChannel>,
    /// Held while the test runs.
    _one: MutexGuard<'static, ()>,
}

impl Host {
    /// Runs `script` with `sh -c` on the node, around the counted channel; its standard output,
    /// or a panic with what it said when it failed.
    fn sh(&self, script: &str) -> String {
        let argv = ["sh".to_string(), "-c".to_string(), script.to_string()];
        let out = self.ssh.run(&self.node, &argv, None, Duration::from_secs(120)).expect("the node channel");
        assert_eq!(out.status, 0, "{script}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The live section of a container's conf file (before its first snapshot section).
    fn live_conf(&self, id: GuestId) -> String {
        let conf = self.sh(&format!("cat /etc/pve/lxc/{id}.conf"));
        conf.split("\n[").next().unwrap_or_default().to_string()
    }

    /// Rewrites a container's conf file on the node as Phoenix does (a temporary file, then a
    /// rename, which pmxcfs supports), the new content made by `sed` from the old.
    fn rewrite_conf(&self, id: GuestId, sed: &str) {
        self.sh(&format!(
            "f=/etc/pve/lxc/{id}.conf; sed -e '{sed}' \"$f\" > \"$f.tmp.$$\" && mv -f \"$f.tmp.$$\" \"$f\""
        ));
    }

    /// A storage's entry in the storage configuration (`GET /storage`, which a token with
    /// `Datastore.Audit` may read; `GET /storage/{id}` needs `Datastore.Allocate`).
    fn storage(&self, id: &str) -> serde_json::Value {
        let all = self.get("/storage");
        let entry = all.as_array().into_iter().flatten().find(|s| s["storage"].as_str() == Some(id));
        entry.cloned().unwrap_or_else(|| panic!("no storage {id} in GET /storage: {all}"))
    }

    /// `GET` of an API path with the token, its `data`.
    fn get(&self, path: &str) -> serde_json::Value {
        self.api.request("GET", path, &[]).unwrap_or_else(|e| panic!("GET {path}: {e:?}"))
    }

    /// A new backend like [`Host::backend`], nothing of the host's seen yet.
    fn fresh_backend(&self) -> ProxmoxBackend {
        backend_of(&self.api, self.root.as_ref(), &self.node, self.counting.clone())
    }

    /// A backend for this node with another API client (and the node channel).
    fn backend_with(&self, api: ApiClient) -> ProxmoxBackend {
        ProxmoxBackend::new(api, &self.node, Some(self.ssh.clone()))
    }

    /// An API client for this host with other credentials.
    fn client(&self, auth: Auth) -> ApiClient {
        let (host, port, tls) = &self.api_at;
        ApiClient::new(host, *port, auth, tls.clone()).expect("API client")
    }

    /// Writes the configuration of these containers for this host into `dir` and validates it.
    fn estate(&self, dir: &Path, lxc: &str) -> phoenix_config::Estate {
        support::estate_with(dir, &self.backend_json, "", lxc)
    }

    /// `n` IDs no guest of the cluster has, from `first` on.
    fn free(&self, first: GuestId, n: usize) -> Vec<GuestId> {
        let taken: BTreeSet<GuestId> = self.backend.observe().expect("observe").guests.keys().copied().collect();
        (first..).filter(|id| !taken.contains(id)).take(n).collect()
    }
}

/// A backend on `node` with this client (and the root@pam one, if any), its node commands
/// counted by `counting`.
fn backend_of(api: &ApiClient, root: Option<&ApiClient>, node: &str, counting: Arc<Counting>) -> ProxmoxBackend {
    let backend = ProxmoxBackend::new(api.clone(), node, Some(counting as Arc<dyn NodeChannel>));
    match root {
        Some(root) => backend.with_root_api(root.clone()),
        None => backend,
    }
}

/// The real host the environment names (see [`Host`]); `None` (skipped, saying why) when
/// settings are missing outside CI.
#[allow(clippy::print_stderr, reason = "the person running the opt-in suite reads what it used")]
fn real_host(extra_required: &[&str]) -> Option<Host> {
    let mut required = vec![
        "PHOENIX_PVE_API_URL",
        "PHOENIX_PVE_NODE",
        "PHOENIX_PVE_TOKEN_ID",
        "PHOENIX_PVE_TOKEN_SECRET",
        "PHOENIX_PVE_SSH_HOST",
    ];
    required.extend_from_slice(extra_required);
    let missing: Vec<&str> = required.iter().copied().filter(|v| var(v, "").is_empty()).collect();
    let why = (!missing.is_empty()).then(|| format!("{} not set (see the README)", missing.join(", ")));
    if !phoenix_testkit::real_component("the suite against a real Proxmox host", why) {
        return None;
    }
    let one = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let url = var("PHOENIX_PVE_API_URL", "");
    let node = var("PHOENIX_PVE_NODE", "");
    let authority = url.trim_start_matches("https://").split('/').next().unwrap_or_default().to_string();
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().expect("PHOENIX_PVE_API_URL: a port number")),
        None => (authority.clone(), 8006),
    };
    let fingerprint = var("PHOENIX_PVE_FINGERPRINT", "");
    let ca_file = var("PHOENIX_PVE_CA_FILE", "");
    let tls = if !fingerprint.is_empty() {
        TlsVerify::fingerprint(&fingerprint).expect("PHOENIX_PVE_FINGERPRINT: AB:CD:... (32 bytes)")
    } else {
        let ca = if ca_file.is_empty() { "/etc/ssl/certs/ca-certificates.crt" } else { ca_file.as_str() };
        TlsVerify::Ca(std::fs::read(ca).expect("the CA file"))
    };
    let token_id = var("PHOENIX_PVE_TOKEN_ID", "");
    let token = Auth::Token { id: token_id.clone(), secret: var("PHOENIX_PVE_TOKEN_SECRET", "") };
    let api = ApiClient::new(&host, port, token, tls.clone()).expect("API client");
    let home = var("HOME", "/root");
    let ssh = SshTarget {
        host: var("PHOENIX_PVE_SSH_HOST", ""),
        port: var("PHOENIX_PVE_SSH_PORT", "22").parse().expect("PHOENIX_PVE_SSH_PORT"),
        user: var("PHOENIX_PVE_SSH_USER", "root"),
        identity: std::env::var("PHOENIX_PVE_SSH_IDENTITY").ok().map(Into::into),
        known_hosts: var("PHOENIX_PVE_SSH_KNOWN_HOSTS", &format!("{home}/.ssh/known_hosts")).into(),
        control_dir: std::env::temp_dir(),
    };
    let mut hosts: std::collections::BTreeMap<String, String> = [(node.clone(), ssh.host.clone())].into();
    let second = var("PHOENIX_PVE_SECOND_NODE", "");
    if !second.is_empty() {
        hosts.insert(second.clone(), var("PHOENIX_PVE_SECOND_SSH_HOST", &second));
    }
    let channel: Arc<dyn NodeChannel> = Arc::new(SshNodes { settings: ssh, hosts });
    let counting = Arc::new(Counting { inner: channel.clone(), ran: Mutex::new(Vec::new()) });
    let root_password = var("PHOENIX_PVE_ROOT_PASSWORD", "");
    let root = (!root_password.is_empty()).then(|| {
        let root = Auth::Password { user: "root@pam".into(), password: root_password };
        ApiClient::new(&host, port, root, tls.clone()).expect("root client")
    });
    let backend = backend_of(&api, root.as_ref(), &node, counting.clone());
    let version = backend.preflight().expect("preflight");
    eprintln!("Proxmox VE {version} at {url}, node {node}");
    let tls_json = if !fingerprint.is_empty() {
        format!(r#", "tls": {{"fingerprint": "{fingerprint}"}}"#)
    } else if !ca_file.is_empty() {
        format!(r#", "tls": {{"ca_file": "{ca_file}"}}"#)
    } else {
        String::new()
    };
    let backend_json = format!(
        r#"{{"type": "proxmox", "api_url": "{url}", "node": "{node}",
             "token": {{"id": "{token_id}", "secret": "env:PHOENIX_PVE_TOKEN_SECRET"}} {tls_json}}}"#
    );
    let first: u32 = var("PHOENIX_PVE_FIRST_ID", "99000").parse().expect("PHOENIX_PVE_FIRST_ID");
    Some(Host {
        backend,
        backend_json,
        first,
        node,
        api_at: (host, port, tls),
        api,
        token_id,
        root,
        counting,
        ssh: channel,
        _one: one,
    })
}

/// What the host offers the containers: storage, OS template, bridge, addresses.
fn site() -> Site {
    let ips = var("PHOENIX_PVE_IPS", "");
    let addresses = match ips.split(',').collect::<Vec<_>>().as_slice() {
        [a, b, gw] => Some((a.to_string(), b.to_string(), gw.to_string())),
        [""] => None,
        _ => panic!(
            "PHOENIX_PVE_IPS: two addresses with prefix and the gateway, e.g. 10.0.0.50/24,10.0.0.51/24,10.0.0.1"
        ),
    };
    Site {
        storage: var("PHOENIX_PVE_STORAGE", "local-lvm"),
        template: var("PHOENIX_PVE_TEMPLATE", "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"),
        bridge: var("PHOENIX_PVE_BRIDGE", "vmbr0"),
        addresses,
    }
}

/// The network interface of the `n`th container of a test, with `extra` fields: the first two
/// take the addresses of `PHOENIX_PVE_IPS` (if given), any other DHCP.
fn net(site: &Site, n: usize, extra: &str) -> String {
    let ip = match &site.addresses {
        Some((a, _, gw)) if n == 0 => format!(r#""ip": "{a}", "gw": "{gw}""#),
        Some((_, b, gw)) if n == 1 => format!(r#""ip": "{b}", "gw": "{gw}""#),
        _ => r#""ip": "dhcp""#.to_string(),
    };
    format!(r#"{{"name": "eth0", "bridge": "{}", {ip} {extra}}}"#, site.bridge)
}

/// A container of the tests: small, tagged `phoenix-test`, on the site's storage, the `n`th
/// interface of [`net`] (with `net_extra` fields), and `extra` fields (its source among them).
fn container(site: &Site, id: GuestId, name: &str, n: usize, net_extra: &str, extra: &str) -> String {
    format!(
        r#""{id}": {{"name": "{name}", "memory_mb": 512, "cores": 1, "storage_pool": "{storage}", "storage_size_gb": 8,
             "network_config": {net}, "unprivileged": true, "tags": ["phoenix-test"] {extra}}}"#,
        storage = site.storage,
        net = net(site, n, net_extra),
    )
}

/// Destroys the guests a test made (unlocked first) when it ends, whether it passed or not.
struct Cleanup<'a> {
    host: &'a Host,
    ids: Vec<GuestId>,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        // Clones first: their template cannot go while they exist on linked storage.
        for id in self.ids.iter().rev() {
            if let Ok(Some(g)) = self.host.backend.observe_guest(*id)
                && g.managed
            {
                let argv = ["pct".to_string(), "unlock".to_string(), id.to_string()];
                let _ = self.host.ssh.run(&self.host.node, &argv, None, Duration::from_secs(60));
                let _ = self.host.backend.destroy(*id);
            }
        }
    }
}

/// The changes the plan makes to `id`'s configuration: (field, effect).
fn changes(plan: &phoenix_plan::Plan, id: GuestId) -> Vec<(String, ChangeEffect)> {
    plan.guest(id)
        .into_iter()
        .flat_map(|g| &g.steps)
        .filter_map(|s| match &s.action {
            Action::Configure { changes } => Some(changes),
            _ => None,
        })
        .flatten()
        .map(|c| (c.field.to_string(), c.effect))
        .collect()
}

/// The requests pveproxy logged for `user` (`user@realm`, the token's user) in its access log
/// from line `from` on, as `METHOD /path` (without `/api2/json` and the query).
fn logged(host: &Host, user: &str, from: usize) -> Vec<String> {
    let log = host.sh(&format!("tail -n +{} /var/log/pveproxy/access.log", from + 1));
    log.lines()
        .filter(|l| l.contains(&format!(" - {user}")))
        .filter_map(|l| {
            let request = l.split('"').nth(1)?;
            let mut words = request.split_whitespace();
            let (method, path) = (words.next()?, words.next()?);
            let path = path.trim_start_matches("/api2/json").split('?').next().unwrap_or_default();
            Some(format!("{method} {path}"))
        })
        .collect()
}

/// The lines of pveproxy's access log so far.
fn log_lines(host: &Host) -> usize {
    host.sh("wc -l < /var/log/pveproxy/access.log").trim().parse().expect("a line count")
}

#[test]
#[allow(clippy::print_stderr, reason = "the person running the opt-in suite reads what it used")]
fn the_lifecycle_runs_on_a_real_proxmox_host() {
    let Some(host) = real_host(&[]) else { return };
    let ids = free_ids(&host.backend, host.first);
    eprintln!("containers: using IDs {} and {}", ids.0, ids.1);
    let dir = tempfile::tempdir().expect("tmp");
    lifecycle(&host.backend, &site(), ids, dir.path(), &|dir, lxc| host.estate(dir, lxc));
}

#[test]
#[allow(clippy::print_stderr, reason = "the person running the opt-in suite reads what it used")]
fn the_vm_lifecycle_runs_on_a_real_proxmox_host() {
    let Some(host) = real_host(&["PHOENIX_PVE_VM_IMAGE"]) else { return };
    let site = VmSite {
        storage: var("PHOENIX_PVE_STORAGE", "local-lvm"),
        bridge: var("PHOENIX_PVE_BRIDGE", "vmbr0"),
        image: var("PHOENIX_PVE_VM_IMAGE", ""),
    };
    // Apart from the containers' IDs.
    let ids = free_ids(&host.backend, host.first + 100);
    eprintln!("VMs: using IDs {} and {}", ids.0, ids.1);
    let dir = tempfile::tempdir().expect("tmp");
    vm_lifecycle(&host.backend, &site, ids, dir.path(), &|dir, lxc| host.estate(dir, lxc));
}

/// A template made from the OS template and its clone (with a volume mount, a nameserver, a raw
/// line and an application script) walk what a guest lives through on the real host:
///
/// * the clone keeps Phoenix's mark (its description is sent with the clone) and lands on its
///   configured storage;
/// * the OS template given as a host path (`…/template/cache/NAME`) resolves through
///   `GET /storage`: the plan has no issue for it;
/// * a no-op re-apply reads the cluster once and each guest's configuration once, only `GET`s,
///   counted in pveproxy's access log, and runs no command on the node (the record lives in the
///   description);
/// * a command in the container gets a clean environment (`--keep-env 0`, Phoenix's `PATH`);
/// * a raw line written `lxc.k = v` (by hand) is read: nothing to do, and an edit of it works;
/// * one apply grows the volume mount (its volume kept, none left `unused`), changes the raw
///   line, and changes the nameserver, which the plan restarts the container for, so the
///   container's `resolv.conf` has it;
/// * a snapshot carries the record: a rollback gives it back, a clone of the snapshot gets it;
/// * the stopped container leaves the plan whole (nothing read from inside it);
/// * start, stop, snapshot, resize and destroy wait while a backup's lock holds the container.
#[test]
#[allow(clippy::print_stderr, reason = "the person running the opt-in suite reads what it used")]
fn a_clone_lives_through_changes_snapshots_and_locks_on_a_real_proxmox_host() {
    let Some(host) = real_host(&[]) else { return };
    let site = site();
    let ids = host.free(host.first, 3);
    let (tpl, web, copy) = (ids[0], ids[1], ids[2]);
    eprintln!("a clone's life: using IDs {tpl}, {web} and {copy}");
    let _cleanup = Cleanup { host: &host, ids: vec![tpl, web, copy] };
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(
        dir.path().join("hello.sh"),
        "#!/bin/sh\nset -eu\necho \"phoenix was here\" > /root/phoenix-hello\n",
    )
    .expect("script");
    let storage = &site.storage;
    let config = |nameserver: &str, size: u32, nofile: u32| {
        let template = container(
            &site,
            tpl,
            "phoenix-test-life-tpl",
            0,
            "",
            &format!(r#", "template": "{}", "template_snapshot_name": "ready""#, site.template),
        );
        let clone = container(
            &site,
            web,
            "phoenix-test-life-web",
            1,
            &format!(r#", "nameservers": ["{nameserver}"]"#),
            &format!(
                r#", "clone_from_ctid": "{tpl}", "application_script": "hello.sh",
                   "volumes": [{{"name": "data", "pool": "{storage}", "size_gb": {size}, "mount_point": "/data"}}],
                   "lxc_options": ["lxc.prlimit.nofile = {nofile}"]"#
            ),
        );
        format!("{template},{clone}")
    };
    let first = config("192.0.2.53", 1, 4096);
    let estate = host.estate(dir.path(), &first);
    let (_, report) = support::apply(&host.backend, &estate, dir.path());
    assert!(
        report.outcomes.get(&tpl) == Some(&GuestOutcome::Created)
            && report.outcomes.get(&web) == Some(&GuestOutcome::Created),
        "{report:#?}"
    );

    // The clone is Phoenix's, on its own storage.
    let observed = host.backend.observe_guest(web).expect("observe").expect("the clone exists");
    assert!(observed.managed, "the clone lost the mark: {observed:#?}");
    assert_eq!(observed.config.spelled("storage").as_deref(), Some(storage.as_str()), "{observed:#?}");
    let description = host.get(&format!("/nodes/{}/lxc/{web}/config", host.node))["description"].clone();
    assert!(description.as_str().is_some_and(|d| d.starts_with("Managed by Phoenix.")), "{description}");

    // The clone has SSH host keys of its own (Proxmox's clone copies the template's): pct create
    // gave the template its keys, the clone's were made again once it started.
    let key = "/etc/ssh/ssh_host_ed25519_key.pub";
    if let Some(template_key) = host.backend.read_file(tpl, key).expect("read the template's host key") {
        let clone_key = host.backend.read_file(web, key).expect("read").expect("the clone has a host key");
        assert_ne!(clone_key, template_key, "the clone serves its template's SSH host key");
    }

    // The OS template as a host path: `GET /storage` says where the storage keeps templates.
    let (store, file) = site.template.split_once(":vztmpl/").expect("PHOENIX_PVE_TEMPLATE: STORAGE:vztmpl/NAME");
    let root = host.storage(store)["path"].as_str().expect("a storage with a directory").to_string();
    let by_path = container(
        &site,
        copy,
        "phoenix-test-life-path",
        2,
        "",
        &format!(r#", "template": "{root}/template/cache/{file}""#),
    );
    let plan = support::plan(&host.backend, &host.estate(dir.path(), &format!("{first},{by_path}")), dir.path());
    let about: Vec<_> = plan.issues.iter().filter(|i| i.guest == copy).collect();
    assert!(about.is_empty(), "{about:#?}");
    assert!(plan.guest(copy).is_some_and(|g| !g.steps.is_empty()), "{:#?}", plan.guest(copy));

    // A no-op re-apply, by a backend that has seen nothing yet: the cluster once, each guest's
    // configuration once (and the template's snapshots), nothing written, nothing on the node.
    let user = host.token_id.split('!').next().unwrap_or_default().to_string();
    let backend = host.fresh_backend();
    let (from, commands) = (log_lines(&host), host.counting.ran().len());
    let estate = host.estate(dir.path(), &first);
    let (plan, report) = support::apply(&backend, &estate, dir.path());
    assert!(plan.is_empty(), "{:#?}", plan.guests.iter().filter(|g| !g.steps.is_empty()).collect::<Vec<_>>());
    assert!(!report.failed(), "{report:#?}");
    std::thread::sleep(Duration::from_secs(2));
    let made = logged(&host, &user, from);
    let guests = plan.guests.len();
    assert_eq!(
        made.iter().filter(|r| r.as_str() == "GET /cluster/resources").count(),
        1,
        "one listing of the cluster (none logged: is pveproxy's access log buffered, or is the token used elsewhere?): {made:#?}"
    );
    assert!(made.iter().all(|r| r.starts_with("GET ")), "{made:#?}");
    assert_eq!(made.iter().filter(|r| r.ends_with("/config")).count(), guests, "{made:#?}");
    assert!(made.len() <= 2 * guests, "{} requests for {guests} guests: {made:#?}", made.len());
    let ran = &host.counting.ran()[commands..];
    assert!(ran.is_empty(), "node commands in a no-op: {ran:?}");

    // Commands in the container: no environment of the caller (`pct exec` keeps it by default),
    // and Phoenix's PATH.
    let env = host.backend.exec(web, &ExecRequest::new(["env"], Duration::from_secs(60))).expect("env");
    let env = String::from_utf8_lossy(&env.stdout).into_owned();
    assert!(env.lines().any(|l| l == format!("PATH={GUEST_PATH}")), "{env}");
    assert!(!env.lines().any(|l| l.starts_with("SSH_") || l.starts_with("PHOENIX_")), "{env}");

    // A raw line as someone wrote it by hand, `lxc.k = v`: read as the same line.
    host.rewrite_conf(web, r"s/^lxc\.prlimit\.nofile *[:=] */lxc.prlimit.nofile = /");
    assert!(host.live_conf(web).contains("lxc.prlimit.nofile = 4096"), "{}", host.live_conf(web));
    let plan = support::plan(&host.backend, &estate, dir.path());
    assert!(plan.is_empty(), "{:#?}", plan.guests.iter().filter(|g| !g.steps.is_empty()).collect::<Vec<_>>());

    // The volume grows, the raw line and the nameserver change, in one apply.
    let mount = |conf: &str| conf.lines().find(|l| l.contains("mp=/data")).map(str::to_string);
    let before = mount(&host.live_conf(web)).expect("the volume is mounted");
    let volume = before.split_once(": ").and_then(|(_, v)| v.split(',').next()).expect("volume").to_string();
    let second = host.estate(dir.path(), &config("192.0.2.54", 2, 8192));
    let (plan, report) = support::apply(&host.backend, &second, dir.path());
    assert!(!report.failed(), "{report:#?}");
    let changed = changes(&plan, web);
    let nameserver: Vec<_> = changed.iter().filter(|(f, _)| f.contains("nameserver")).collect();
    assert!(!nameserver.is_empty() && nameserver.iter().all(|(_, e)| *e == ChangeEffect::Restart), "{changed:?}");
    let live = host.live_conf(web);
    assert!(!live.contains("unused"), "the volume was replaced by a new one:\n{live}");
    let now = mount(&live).expect("still mounted");
    assert!(now.contains(&format!(": {volume},")) && now.contains("size=2G"), "{now}");
    let nofile: Vec<&str> = live.lines().filter(|l| l.starts_with("lxc.prlimit.nofile")).collect();
    assert!(nofile.len() == 1 && nofile[0].ends_with("8192"), "{live}");
    let resolv = host.backend.read_file(web, "/etc/resolv.conf").expect("read").expect("resolv.conf");
    assert!(String::from_utf8_lossy(&resolv).contains("192.0.2.54"), "{}", String::from_utf8_lossy(&resolv));
    let plan = support::plan(&host.backend, &second, dir.path());
    assert!(plan.is_empty(), "{:#?}", plan.guests.iter().filter(|g| !g.steps.is_empty()).collect::<Vec<_>>());

    // The record follows a snapshot: back with a rollback, given to a clone of the snapshot.
    let record = host.backend.read_markers(web).expect("read").expect("a record");
    host.backend.snapshot(web, "phoenix-before").expect("snapshot");
    host.backend.write_markers(web, br#"{"feature:elsewhere": "x"}"#).expect("write");
    host.backend.rollback(web, "phoenix-before").expect("rollback");
    assert_eq!(host.backend.read_markers(web).expect("read").as_ref(), Some(&record), "after the rollback");
    let mut config = GuestConfig::default();
    config.set(phoenix_backend::Field::Hostname, "phoenix-test-life-copy");
    let clone = CreateRequest {
        id: copy,
        kind: GuestKind::Lxc,
        node: None,
        source: CreateSource::Clone { source: web, snapshot: "phoenix-before".into() },
        config,
    };
    host.backend.create(&clone).expect("clone of the snapshot");
    assert_eq!(host.backend.read_markers(copy).expect("read").as_ref(), Some(&record), "the clone's record");
    assert!(host.backend.observe_guest(copy).expect("observe").expect("the copy").managed);
    host.backend.destroy(copy).expect("destroy the copy");

    // Locks: each call waits until the backup's lock goes.
    let held = Duration::from_secs(5);
    let locked = |what: &str, call: &dyn Fn() -> Result<(), BackendError>| {
        host.sh(&format!(
            "f=/etc/pve/lxc/{web}.conf; {{ echo 'lock: backup'; cat \"$f\"; }} > \"$f.tmp.$$\" && mv -f \"$f.tmp.$$\" \"$f\""
        ));
        let started = Instant::now();
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(held);
                host.sh(&format!("pct unlock {web}"));
            });
            call().unwrap_or_else(|e| panic!("{what} of a locked container: {e:?}"));
        });
        assert!(started.elapsed() >= held, "{what} did not wait for the lock");
    };
    if host.backend.observe_guest(web).expect("observe").expect("web").power != PowerState::Running {
        host.backend.start(web).expect("start");
    }
    locked("stop", &|| host.backend.stop(web));

    // Stopped, the container leaves the plan whole: nothing is read from inside it.
    let e = host.backend.read_file(web, "/etc/hostname").expect_err("nothing is read from a stopped container");
    assert_eq!(e.kind, ErrorKind::Unsupported, "{e:?}");
    let plan = support::plan(&host.backend, &second, dir.path());
    assert!(plan.guest(web).is_some() && plan.issues.is_empty(), "{:#?}", plan.issues);

    locked("start", &|| host.backend.start(web));
    locked("snapshot", &|| host.backend.snapshot(web, "phoenix-locked"));
    let grow = FieldChange { field: phoenix_backend::Field::DiskGb, old: Some(8u64.into()), new: Some(9u64.into()) };
    locked("resize", &|| host.backend.update_config(web, std::slice::from_ref(&grow)));
    locked("destroy", &|| host.backend.destroy(web));
    assert!(host.backend.observe_guest(web).expect("observe").is_none());
    host.backend.destroy(tpl).expect("destroy the template");
    assert!(host.backend.observe_guest(tpl).expect("observe").is_none());
}

/// What Proxmox would refuse only half-way, the plan refuses before anything is made: an ID map
/// with host IDs root may not map (no `/etc/subuid` and `/etc/subgid` lines for them), a
/// template snapshot a bind mount cannot take. And a privileged container's feature flags
/// (`nesting=1`), root@pam's alone, are set through root (the node channel, or the root
/// ticket): it is made with them.
#[test]
#[allow(clippy::print_stderr, reason = "the person running the opt-in suite reads what it used")]
fn the_plan_refuses_what_proxmox_would_and_root_sets_privileged_flags_on_a_real_proxmox_host() {
    let Some(host) = real_host(&[]) else { return };
    let site = site();
    let ids = host.free(host.first, 3);
    let (privileged, mapped, bound) = (ids[0], ids[1], ids[2]);
    eprintln!("refusals and root: using IDs {privileged}, {mapped} and {bound}");
    let _cleanup = Cleanup { host: &host, ids: vec![privileged] };
    let dir = tempfile::tempdir().expect("tmp");
    let os = format!(r#", "template": "{}""#, site.template);

    // Host ID 3999000 is no root's on a Proxmox host (`root:100000:65536` is).
    let id_map = container(
        &site,
        mapped,
        "phoenix-test-idmap",
        2,
        "",
        &format!(
            r#"{os}, "id_maps": [{{"type": "uid", "container_id": 1000, "host_id": 3999000, "size": 1}},
                               {{"type": "gid", "container_id": 1000, "host_id": 3999000, "size": 1}}]"#
        ),
    );
    let bind = container(
        &site,
        bound,
        "phoenix-test-bind",
        2,
        "",
        &format!(
            r#"{os}, "template_snapshot_name": "ready",
               "mount_points": [{{"host_path": "/tmp", "container_path": "/data"}}]"#
        ),
    );
    let plan = support::plan(&host.backend, &host.estate(dir.path(), &format!("{id_map},{bind}")), dir.path());
    let said =
        |id: GuestId| plan.issues.iter().filter(|i| i.guest == id).map(|i| i.message.clone()).collect::<Vec<_>>();
    assert!(
        said(mapped).iter().any(|m| m.contains("/etc/subuid lacks root:3999000:1") && m.contains("/etc/subgid")),
        "{:#?}",
        plan.issues
    );
    assert!(said(bound).iter().any(|m| m.contains("bind mount") && m.contains("/data")), "{:#?}", plan.issues);
    assert!(host.backend.observe_guest(mapped).expect("observe").is_none());
    assert!(host.backend.observe_guest(bound).expect("observe").is_none());

    // A privileged container with `nesting=1`: made, its flags set by root.
    let one = container(
        &site,
        privileged,
        "phoenix-test-privileged",
        0,
        "",
        &format!(r#"{os}, "pct_options": ["nesting=1"]"#),
    )
    .replace(r#""unprivileged": true"#, r#""unprivileged": false"#);
    let (plan, report) = support::apply(&host.backend, &host.estate(dir.path(), &one), dir.path());
    assert_eq!(report.outcomes.get(&privileged), Some(&GuestOutcome::Created), "{report:#?}");
    eprintln!("{}", plan.notes.join("\n"));
    let live = host.live_conf(privileged);
    assert!(live.lines().any(|l| l == "features: nesting=1"), "{live}");
    host.backend.destroy(privileged).expect("destroy");
}

/// A clone to another node from the template's node-local storage is an issue of the plan, which
/// says what to do instead (Proxmox refuses such a clone); with `PHOENIX_PVE_SHARED_STORAGE`, a
/// clone onto shared storage is made on the other node, on that storage (`storage` sent with the
/// clone). Needs `PHOENIX_PVE_SECOND_NODE`, and `PHOENIX_PVE_STORAGE` node-local.
#[test]
#[allow(clippy::print_stderr, reason = "the person running the opt-in suite reads what it used")]
fn a_clone_goes_to_another_node_only_onto_shared_storage_on_a_real_proxmox_host() {
    let Some(host) = real_host(&["PHOENIX_PVE_SECOND_NODE"]) else { return };
    let second = var("PHOENIX_PVE_SECOND_NODE", "");
    let site = site();
    let shared = host.storage(&site.storage)["shared"].as_u64() == Some(1);
    assert!(!shared, "PHOENIX_PVE_STORAGE ({}) is shared: this test needs a node-local one", site.storage);
    let ids = host.free(host.first, 3);
    let (tpl, local, remote) = (ids[0], ids[1], ids[2]);
    eprintln!("clones to {second}: using IDs {tpl}, {local} and {remote}");
    let _cleanup = Cleanup { host: &host, ids: vec![tpl, remote] };
    let dir = tempfile::tempdir().expect("tmp");
    let template = container(
        &site,
        tpl,
        "phoenix-test-nodes-tpl",
        0,
        "",
        &format!(r#", "template": "{}", "template_snapshot_name": "ready""#, site.template),
    );
    let (_, report) = support::apply(&host.backend, &host.estate(dir.path(), &template), dir.path());
    assert_eq!(report.outcomes.get(&tpl), Some(&GuestOutcome::Created), "{report:#?}");
    let clone = |id: GuestId, storage: &str| {
        container(
            &site,
            id,
            &format!("phoenix-test-nodes-{id}"),
            2,
            "",
            &format!(r#", "clone_from_ctid": "{tpl}", "node": "{second}""#),
        )
        .replace(&format!(r#""storage_pool": "{}""#, site.storage), &format!(r#""storage_pool": "{storage}""#))
    };

    let plan = support::plan(
        &host.backend,
        &host.estate(dir.path(), &format!("{template},{}", clone(local, &site.storage))),
        dir.path(),
    );
    let issue = plan.issues.iter().find(|i| i.guest == local && i.message.contains("cannot clone"));
    let issue = issue.unwrap_or_else(|| panic!("no issue for the clone to {second}: {:#?}", plan.issues));
    assert!(issue.message.contains(&format!("to node {second}")) && issue.message.contains(&site.storage), "{issue:?}");
    assert!(issue.hint.contains("migrate") && issue.hint.contains("shared storage"), "{issue:?}");

    let shared_storage = var("PHOENIX_PVE_SHARED_STORAGE", "");
    if shared_storage.is_empty() {
        eprintln!("PHOENIX_PVE_SHARED_STORAGE not set: no clone onto shared storage made on {second}");
    } else {
        let estate = host.estate(dir.path(), &format!("{template},{}", clone(remote, &shared_storage)));
        let (_, report) = support::apply(&host.backend, &estate, dir.path());
        assert_eq!(report.outcomes.get(&remote), Some(&GuestOutcome::Created), "{report:#?}");
        let made = host.backend.observe_guest(remote).expect("observe").expect("the clone");
        assert_eq!(made.node.as_deref(), Some(second.as_str()), "{made:#?}");
        assert_eq!(made.config.spelled("storage").as_deref(), Some(shared_storage.as_str()), "{made:#?}");
        assert!(made.managed, "{made:#?}");
        host.backend.destroy(remote).expect("destroy the clone");
    }
    host.backend.destroy(tpl).expect("destroy the template");
}

/// A template whose snapshot its storage cannot take (a directory storage) is an issue of the
/// plan, before anything is made; Proxmox would refuse the snapshot only after the template was
/// created and customized. Needs `PHOENIX_PVE_DIR_STORAGE`.
#[test]
fn a_snapshot_the_storage_cannot_take_is_an_issue_of_the_plan_on_a_real_proxmox_host() {
    let Some(host) = real_host(&["PHOENIX_PVE_DIR_STORAGE"]) else { return };
    let site = Site { storage: var("PHOENIX_PVE_DIR_STORAGE", ""), ..site() };
    let id = host.free(host.first, 1)[0];
    let dir = tempfile::tempdir().expect("tmp");
    let template = container(
        &site,
        id,
        "phoenix-test-dir-tpl",
        2,
        "",
        &format!(r#", "template": "{}", "template_snapshot_name": "ready""#, site.template),
    );
    let plan = support::plan(&host.backend, &host.estate(dir.path(), &template), dir.path());
    let said: Vec<&str> = plan.issues.iter().filter(|i| i.guest == id).map(|i| i.message.as_str()).collect();
    assert!(said.iter().any(|m| m.contains("cannot be taken") && m.contains(&site.storage)), "{:#?}", plan.issues);
    assert!(host.backend.observe_guest(id).expect("observe").is_none());
}

/// A token whose privileges are granted with propagate 0 (an ACL set with `--propagate 0`, or
/// through a pool: `/access/permissions` then shows `0`) has them: the preflight passes. The
/// ACLs must be on `/vms` and `/storage` themselves (below its path, a privilege granted without
/// propagation does not apply, and the preflight does not count it there). Needs
/// `PHOENIX_PVE_PROPAGATE0_TOKEN_ID` and `PHOENIX_PVE_PROPAGATE0_TOKEN_SECRET`.
#[test]
fn privileges_granted_without_propagation_count_on_a_real_proxmox_host() {
    let Some(host) = real_host(&["PHOENIX_PVE_PROPAGATE0_TOKEN_ID", "PHOENIX_PVE_PROPAGATE0_TOKEN_SECRET"]) else {
        return;
    };
    let token = Auth::Token {
        id: var("PHOENIX_PVE_PROPAGATE0_TOKEN_ID", ""),
        secret: var("PHOENIX_PVE_PROPAGATE0_TOKEN_SECRET", ""),
    };
    let api = host.client(token);
    let permissions = api.request("GET", "/access/permissions", &[]).expect("the token's permissions");
    let unpropagated = permissions
        .as_object()
        .into_iter()
        .flat_map(|paths| paths.values())
        .filter_map(serde_json::Value::as_object)
        .flat_map(|privileges| privileges.values())
        .any(|v| v.as_u64() == Some(0) || v.as_bool() == Some(false));
    assert!(unpropagated, "no privilege of this token is granted with propagate 0: {permissions}");
    host.backend_with(api).preflight().unwrap_or_else(|e| panic!("{e:?}"));
}

/// A root@pam login with two-factor authentication gives no ticket for a password alone: the
/// preflight says so, and how to do without (the node channel, or `pvesh` on the node). Needs
/// `PHOENIX_PVE_TFA_PASSWORD` (and `PHOENIX_PVE_TFA_USER`, `root@pam` by default).
#[test]
fn a_login_with_two_factors_is_explained_on_a_real_proxmox_host() {
    let Some(host) = real_host(&["PHOENIX_PVE_TFA_PASSWORD"]) else { return };
    let user = var("PHOENIX_PVE_TFA_USER", "root@pam");
    let login = host.client(Auth::Password { user: user.clone(), password: var("PHOENIX_PVE_TFA_PASSWORD", "") });
    let e = host.backend_with(host.api.clone()).with_root_api(login).preflight().expect_err("no ticket with TFA");
    assert!(e.message.contains(&format!("{user} has two-factor authentication")), "{e:?}");
    assert!(e.detail.as_deref().is_some_and(|d| d.contains("node channel")), "{e:?}");
}
