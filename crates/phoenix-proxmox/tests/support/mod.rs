//! What the driver's tests against the PVE test double share: a double with the storages the
//! configurations name, a backend pinned to its certificate, configurations written and
//! validated, a plan-and-apply round through the engine, and the scenario the opt-in suite runs
//! against a real Proxmox host (run here against the double).

#![allow(dead_code)]

pub mod ai_stack;
pub mod scenario;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use phoenix_backend::Backend;
use phoenix_engine::customize::FeatureLibrary;
use phoenix_engine::health::{NetProber, Prober};
use phoenix_engine::planner::{Planner, Validated};
use phoenix_engine::{ApplyOptions, ApplyReport, Engine, Silent};
use phoenix_proxmox::backend::ProxmoxBackend;
use phoenix_proxmox::node::channel::{ChannelError, NodeChannel, Output};
use phoenix_proxmox::transport::api::{ApiClient, Auth, TlsVerify};
use phoenix_proxmox::transport::task::Poll;
use phoenix_pve_double::{Credentials, PveDouble, PveVersion};

/// The token the doubles accept.
pub const TOKEN: (&str, &str) = ("phoenix@pve!ci", "s3cret");

/// The `root@pam` password the doubles accept.
pub const ROOT_PASSWORD: &str = "root-pw";

/// A double playing `version`, with short tasks and a directory storage for templates.
pub fn start(version: PveVersion) -> PveDouble {
    let double = PveDouble::start(
        version,
        Credentials { token: (TOKEN.0.into(), TOKEN.1.into()), root_password: ROOT_PASSWORD.into() },
    );
    double.set_task_duration(Duration::from_millis(20));
    double.add_dir_storage("fastData", "/fastData/shared-iso", "iso,vztmpl");
    double
}

/// An API client for the double, pinned to its certificate.
pub fn client(double: &PveDouble) -> ApiClient {
    ApiClient::new(
        "127.0.0.1",
        double.addr.port(),
        Auth::Token { id: TOKEN.0.into(), secret: TOKEN.1.into() },
        TlsVerify::fingerprint(&double.fingerprint).expect("pin"),
    )
    .expect("client")
}

/// A `root@pam` client for the double (a ticket asked for with the password), pinned.
pub fn root_client(double: &PveDouble) -> ApiClient {
    ApiClient::new(
        "127.0.0.1",
        double.addr.port(),
        Auth::Password { user: "root@pam".into(), password: ROOT_PASSWORD.into() },
        TlsVerify::fingerprint(&double.fingerprint).expect("pin"),
    )
    .expect("client")
}

/// The double's nodes as a node channel.
pub fn channel(double: &PveDouble) -> Arc<dyn NodeChannel> {
    let nodes = double.node_channel();
    Arc::new(move |node: &str, argv: &[String], input: Option<&[u8]>| -> Result<Output, ChannelError> {
        let (status, stdout, stderr) = nodes.run(node, argv, input);
        Ok(Output { status, stdout, stderr })
    })
}

/// A backend on the double's node `pve1`, polling fast.
pub fn backend(double: &PveDouble, channel: Option<Arc<dyn NodeChannel>>) -> ProxmoxBackend {
    ProxmoxBackend::new(client(double), "pve1", channel)
        .with_poll(Poll { first: Duration::from_millis(5), max: Duration::from_millis(20) })
}

/// Writes the configuration (the backend section pointing at the double, plus `hypervisor_extra`
/// fields of the hypervisor file, and the containers) and validates it.
pub fn estate(dir: &Path, double: &PveDouble, hypervisor_extra: &str, lxc_configs: &str) -> phoenix_config::Estate {
    let backend = format!(
        r#"{{"type": "proxmox", "api_url": "https://127.0.0.1:{}", "node": "pve1",
             "token": {{"id": "{}", "secret": "env:PVE_TOKEN_SECRET"}},
             "tls": {{"fingerprint": "{}"}}}}"#,
        double.addr.port(),
        TOKEN.0,
        double.fingerprint
    );
    estate_with(dir, &backend, hypervisor_extra, lxc_configs)
}

/// Writes the configuration with this `backend` section, `hypervisor_extra` fields of the
/// hypervisor file, and the containers, and validates it.
pub fn estate_with(dir: &Path, backend: &str, hypervisor_extra: &str, lxc_configs: &str) -> phoenix_config::Estate {
    let hv = format!(r#"{{"backend": {backend} {hypervisor_extra}}}"#);
    std::fs::write(dir.join("phoenix_hypervisor_config.json"), hv).expect("write");
    std::fs::write(dir.join("phoenix_lxc_configs.json"), format!(r#"{{"lxc_configs": {{ {lxc_configs} }}}}"#))
        .expect("write");
    let v = Validated::read(dir, &dir.join("features")).validation;
    v.estate.unwrap_or_else(|| panic!("{:#?}", v.reports))
}

/// Plans the estate against the backend, issues included, without applying it.
pub fn plan(backend: &dyn Backend, estate: &phoenix_config::Estate, dir: &Path) -> phoenix_plan::Plan {
    plan_with(backend, estate, dir, &FeatureLibrary::default()).0
}

/// The plan of the estate against the backend with features from `library`, made as `phoenix
/// plan` makes it, with the desired state and the prepared jobs it was made from.
pub fn plan_with(
    backend: &dyn Backend,
    estate: &phoenix_config::Estate,
    dir: &Path,
    library: &FeatureLibrary,
) -> (phoenix_plan::Plan, phoenix_plan::Desired, BTreeMap<u32, Vec<phoenix_engine::customize::Job>>) {
    plan_probed(backend, estate, dir, library, &NetProber)
}

/// [`plan_with`], with health checks probed by `prober`.
pub fn plan_probed(
    backend: &dyn Backend,
    estate: &phoenix_config::Estate,
    dir: &Path,
    library: &FeatureLibrary,
    prober: &dyn Prober,
) -> (phoenix_plan::Plan, phoenix_plan::Desired, BTreeMap<u32, Vec<phoenix_engine::customize::Job>>) {
    let mut planner = Planner::new(estate.clone(), library, dir, &[]).expect("prepare");
    let plan = planner.plan(backend, prober).expect("observe").plan;
    (plan, planner.desired().clone(), planner.jobs().clone())
}

/// The issues the backend's create check finds in the plan of `estate`, as `phoenix plan` shows
/// them: (guest, message, hint).
pub fn create_issues(backend: &dyn Backend, estate: &phoenix_config::Estate, dir: &Path) -> Vec<(u32, String, String)> {
    let (plan, _, _) = plan_with(backend, estate, dir, &FeatureLibrary::default());
    plan.issues
        .into_iter()
        .filter(|i| i.message.contains(" cannot be created: "))
        .map(|i| (i.guest, i.message, i.hint))
        .collect()
}

/// Plans the estate against the backend and applies the plan.
pub fn apply(backend: &dyn Backend, estate: &phoenix_config::Estate, dir: &Path) -> (phoenix_plan::Plan, ApplyReport) {
    apply_with(backend, estate, dir, &FeatureLibrary::default())
}

/// Plans the estate against the backend and applies the plan, with features from `library`.
pub fn apply_with(
    backend: &dyn Backend,
    estate: &phoenix_config::Estate,
    dir: &Path,
    library: &FeatureLibrary,
) -> (phoenix_plan::Plan, ApplyReport) {
    apply_probed(backend, estate, dir, library, &NetProber)
}

/// [`apply_with`], with health checks probed by `prober` (the example's addresses are not this
/// machine's to probe).
pub fn apply_probed(
    backend: &dyn Backend,
    estate: &phoenix_config::Estate,
    dir: &Path,
    library: &FeatureLibrary,
    prober: &dyn Prober,
) -> (phoenix_plan::Plan, ApplyReport) {
    let (plan, desired, jobs) = plan_probed(backend, estate, dir, library, prober);
    assert!(plan.issues.is_empty(), "{:#?}", plan.issues);
    let cancel = AtomicBool::new(false);
    let engine = Engine { backend, prober, reporter: &Silent, cancel: &cancel };
    let report = engine.apply(&desired, &plan, &jobs, &ApplyOptions { jobs: 4, ..ApplyOptions::default() });
    (plan, report)
}

/// The OS template the test containers are made from.
pub const OS_TEMPLATE: &str = "local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst";

/// A double playing `version` with the container `id` made on it from [`OS_TEMPLATE`] by a
/// backend with a channel to the node; the double, the configuration's directory and that backend.
pub fn one_container(version: PveVersion, id: u32) -> (PveDouble, tempfile::TempDir, ProxmoxBackend) {
    let double = start(version);
    let dir = tempfile::tempdir().expect("tmp");
    let backend = backend(&double, Some(channel(&double)));
    let one = container(id, "app", &format!(r#", "template": "{OS_TEMPLATE}""#));
    let (_, report) = apply(&backend, &estate(dir.path(), &double, "", &one), dir.path());
    assert!(!report.failed(), "{version:?}: {report:#?}");
    (double, dir, backend)
}

/// One container of a configuration: the fields every test container has, then `extra`.
pub fn container(id: u32, name: &str, extra: &str) -> String {
    format!(
        r#""{id}": {{"name": "{name}", "memory_mb": 1024, "cores": 2, "storage_pool": "local-zfs", "storage_size_gb": 16,
            "network_config": {{"name": "eth0", "bridge": "vmbr0", "ip": "10.0.0.{}/24", "gw": "10.0.0.1"}},
            "unprivileged": true {extra}}}"#,
        id % 200 + 10
    )
}

/// The backend's route of setting `field` (by name) to `value` (as plans spell it), its refusal
/// as text.
pub fn route(
    backend: &dyn Backend,
    field: &str,
    value: &str,
    guest: &phoenix_backend::GuestConfig,
) -> Result<Option<String>, String> {
    let field = phoenix_backend::Field::from_name(field).expect("a field");
    let value = field.parse(value).expect("a value");
    backend.route(&field, Some(&value), guest).map_err(|e| e.to_string())
}
