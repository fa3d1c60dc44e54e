//! The gateway as a customization of its guest, against the in-memory backend: it waits for the
//! guests it routes to, its plan shows the rendered file as a diff, a service change changes
//! only the gateway, and a refused configuration is reported with NGINX's words.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;

use phoenix_backend::{Backend, FilePush};
use phoenix_engine::customize::FeatureLibrary;
use phoenix_engine::gateway::{Gateway, KEY};
use phoenix_engine::planner::{Planner, Validated};
use phoenix_engine::{Engine, GuestOutcome, Silent};
use phoenix_gateway::CONFIG_PATH;
use phoenix_plan::Plan;
use phoenix_testkit::memory::{MemoryBackend, Method};
use support::{AlwaysUp, container, options};

/// A configuration directory: gateway 960, guest 950 (static address) and guest 951 (DHCP),
/// with these services for 950.
fn config(services_950: &str, gateway_extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = dir.path().join("gw.pem");
    std::fs::write(&cert, "CERTIFICATE-BYTES\n").expect("write");
    let hv = format!(
        r#"{{"backend": {{"type": "lxc", "bridges": {{"vmbr0": {{"address": "10.9.0.1/16"}}}}, "storage": {{"local": "/srv/local"}}}},
            "gateway": {{"guest": "960", "server_name": "ai.lab.example" {}}}}}"#,
        gateway_extra.replace("CERT", &cert.display().to_string())
    );
    let lxc = format!(
        r#"{{"lxc_configs": {{"950": {}, "951": {}, "960": {}}}}}"#,
        container("api", "10.9.0.50/16", &format!(r#", "template": "local:vztmpl/d.tar.zst", "services": {services_950}"#)),
        container("web", "dhcp", r#", "template": "local:vztmpl/d.tar.zst", "services": [{"name": "web", "port": 80, "host": "web.lab.example"}]"#)
            .replace(r#", "gw": "10.9.0.1""#, ""),
        container("gw", "10.9.0.60/16", r#", "template": "local:vztmpl/d.tar.zst""#),
    );
    std::fs::write(dir.path().join("phoenix_hypervisor_config.json"), hv).expect("write");
    std::fs::write(dir.path().join("phoenix_lxc_configs.json"), lxc).expect("write");
    dir
}

/// What the CLI does: the configuration validated and prepared, the backend observed, the
/// gateway rendered and attached, the plan with its diff.
fn plan_run(backend: &dyn Backend, dir: &tempfile::TempDir) -> (Planner, Plan) {
    let validated = Validated::read(dir.path(), &dir.path().join("features"));
    let mut planner = validated.prepare(&FeatureLibrary::default(), &[]).expect("valid");
    let p = planner.plan(backend, &AlwaysUp).expect("observe").plan;
    (planner, p)
}

fn gateway(planner: &Planner) -> &Gateway {
    planner.gateway().expect("a gateway")
}

fn apply(backend: &dyn Backend, planner: &Planner, p: &Plan) -> BTreeMap<u32, GuestOutcome> {
    let cancel = AtomicBool::new(false);
    let engine = Engine { backend, prober: &AlwaysUp, reporter: &Silent, cancel: &cancel };
    engine.apply(planner.desired(), p, planner.jobs(), &options()).outcomes
}

/// What the install script does when NGINX accepts the file (the in-memory backend runs no
/// scripts): the staged configuration becomes the live one.
fn install_as_the_script_would(backend: &MemoryBackend, gw: &Gateway) {
    let file = FilePush {
        path: CONFIG_PATH.into(),
        content: gw.rendered.text.clone().into_bytes(),
        mode: 0o644,
        uid: 0,
        gid: 0,
    };
    backend.push_file(960, &file).expect("push");
}

fn gateway_steps(p: &Plan, id: u32) -> Vec<String> {
    p.guest(id).expect("guest").steps.iter().map(|s| format!("{:?}", s.action)).collect()
}

#[test]
fn the_gateway_waits_for_its_guests_and_only_it_changes_when_a_service_does() {
    let dir = config(r#"[{"name": "qwen", "port": 8000, "path": "/v1/qwen/"}]"#, "");
    let backend = MemoryBackend::new();
    let (planner, p) = plan_run(&backend, &dir);
    let gw = gateway(&planner);
    // The implicit edge: the gateway waits for both guests it routes to.
    assert_eq!(planner.desired().guests[&960].needs, vec![950, 951]);
    assert_eq!(p.guest(960).expect("gw").needs, vec![950, 951]);
    let order: Vec<u32> = p.guests.iter().map(|g| g.id).collect();
    assert_eq!(order.last(), Some(&960), "{order:?}");
    // The gateway's customization runs after it is created; its diff is the whole new file.
    assert!(gateway_steps(&p, 960).iter().any(|s| s.contains(r#"key: "gateway""#)), "{:?}", gateway_steps(&p, 960));
    let files = &p.guest(960).expect("gw").files;
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].path, CONFIG_PATH);
    assert!(files[0].diff.starts_with("--- /dev/null\n+++ /etc/nginx/conf.d/phoenix-gateway.conf (rendered)\n"));
    assert!(files[0].diff.contains("\n+    server 10.9.0.50:8000;\n"), "{}", files[0].diff);
    // 951 takes its address by DHCP and reports none in memory: said, and answered 503 meanwhile.
    assert!(p.notes.iter().any(|n| n.contains("\"web\" of guest 951") && n.contains("DHCP")), "{:?}", p.notes);

    let outcomes = apply(&backend, &planner, &p);
    assert!(outcomes.values().all(|o| *o == GuestOutcome::Created), "{outcomes:?}");
    // Staged beside its parameters and run as a contract-1 script; its marker recorded.
    let calls: Vec<String> = backend
        .calls()
        .iter()
        .filter(|c| c.guest == Some(960))
        .map(|c| format!("{:?} {}", c.method, c.detail))
        .collect();
    let staged =
        calls.iter().find(|c| c.starts_with("PushFile /tmp/phoenix-gateway-") && c.ends_with("/phoenix-gateway.conf"));
    assert!(staged.is_some(), "{calls:#?}");
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with("Exec /tmp/phoenix-gateway-") && c.contains("/run --phoenix-contract 1 --params")),
        "{calls:#?}"
    );
    let markers = backend.guest(960).expect("gw").files["/var/lib/phoenix/markers.json"].clone();
    assert!(String::from_utf8_lossy(&markers).contains(&format!("\"{KEY}\": \"{}\"", gw.job.hash)));
    install_as_the_script_would(&backend, gw);

    // Nothing changed: nothing to do.
    let (_, again) = plan_run(&backend, &dir);
    assert!(again.is_empty(), "{:#?}", again.guests.iter().filter(|g| !g.steps.is_empty()).collect::<Vec<_>>());

    // A service's port changes: only the gateway's file, and only that line.
    let changed = config(r#"[{"name": "qwen", "port": 8001, "path": "/v1/qwen/"}]"#, "");
    let (planner2, p2) = plan_run(&backend, &changed);
    let gw2 = gateway(&planner2);
    let with_steps: Vec<u32> = p2.guests.iter().filter(|g| !g.steps.is_empty()).map(|g| g.id).collect();
    assert_eq!(with_steps, vec![960]);
    assert_eq!(p2.guest(960).expect("gw").steps.len(), 1, "{:?}", gateway_steps(&p2, 960));
    assert_ne!(gw2.job.hash, gw.job.hash);
    let diff = &p2.guest(960).expect("gw").files[0].diff;
    let changes: Vec<&str> = diff
        .lines()
        .filter(|l| (l.starts_with('+') || l.starts_with('-')) && !l.starts_with("+++") && !l.starts_with("---"))
        .collect();
    assert_eq!(changes, vec!["-    server 10.9.0.50:8000;", "+    server 10.9.0.50:8001;"], "{diff}");
    assert!(diff.starts_with("--- /etc/nginx/conf.d/phoenix-gateway.conf (in guest 960)\n"), "{diff}");
}

#[test]
fn a_configuration_nginx_refuses_fails_the_gateway_with_its_words_and_is_tried_again() {
    let dir = config(r#"[{"name": "qwen", "port": 8000, "path": "/v1/qwen/"}]"#, "");
    let backend = MemoryBackend::new();
    let (planner, p) = plan_run(&backend, &dir);
    backend.set_exec_status(
        "/tmp/phoenix-gateway-",
        1,
        "nginx: [emerg] unexpected \"}\" in /etc/nginx/conf.d/phoenix-gateway.conf:12",
    );
    let outcomes = apply(&backend, &planner, &p);
    match &outcomes[&960] {
        GuestOutcome::Failed(m) => {
            assert!(m.contains("step `run gateway`") && m.contains("nginx: [emerg] unexpected"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(outcomes[&950], GuestOutcome::Created);
    // Nothing staged is left behind, and no marker says it was installed: the next plan runs it again.
    let files = backend.guest(960).expect("gw").files;
    assert!(files.keys().all(|f| !f.starts_with("/tmp/phoenix-gateway-")), "{:?}", files.keys());
    backend.set_exec_status("/tmp/phoenix-gateway-", 0, "");
    let (_, again) = plan_run(&backend, &dir);
    assert!(gateway_steps(&again, 960).iter().any(|s| s.contains(r#"key: "gateway""#)));
}

#[test]
fn the_certificate_and_key_are_staged_only_when_applying_and_never_in_the_plan() {
    let dir = config(
        r#"[{"name": "qwen", "port": 8000, "path": "/v1/qwen/", "tls": true}]"#,
        r#", "tls_certificate_file": "CERT", "tls_key": "env:GATEWAY_TEST_KEY""#,
    );
    let backend = MemoryBackend::new();
    let (mut planner, p) = plan_run(&backend, &dir);
    let gw = gateway(&planner).clone();
    let tls = gw.rendered.tls.clone().expect("tls");
    assert_eq!(tls.key.0, "env:GATEWAY_TEST_KEY");
    planner.add_gateway_tls(b"CERTIFICATE-BYTES\n".to_vec(), b"PRIVATE-KEY-BYTES\n".to_vec());
    let job = planner.jobs()[&960].iter().find(|j| j.key == KEY).expect("job");
    assert_eq!(job.hash, gw.job.hash, "the key is not hashed");
    assert!(!format!("{job:?}").contains("PRIVATE-KEY-BYTES"), "a job's Debug never shows staged files");
    let plan_json = serde_json::to_string(&p).expect("json");
    assert!(!plan_json.contains("PRIVATE-KEY-BYTES") && !plan_json.contains("GATEWAY_TEST_KEY"));
    assert!(plan_json.contains("ssl_certificate_key /etc/phoenix/gateway/tls.key;"), "the diff names the path");

    let outcomes = apply(&backend, &planner, &p);
    assert_eq!(outcomes[&960], GuestOutcome::Created);
    let pushed: Vec<String> = backend
        .calls()
        .iter()
        .filter(|c| c.method == Method::PushFile && c.guest == Some(960) && c.detail.contains("/tmp/phoenix-gateway-"))
        .map(|c| c.detail.rsplit('/').next().unwrap_or_default().to_string())
        .collect();
    assert_eq!(pushed, vec!["run", "params.json", "phoenix-gateway.conf", "tls.crt", "tls.key"]);
    let files = backend.guest(960).expect("gw").files;
    assert!(files.values().all(|c| !String::from_utf8_lossy(c).contains("PRIVATE-KEY-BYTES")), "removed after the run");
}
