//! The rendered gateway configuration, compared with the files in `tests/golden/`.
//!
//! After a deliberate change of the output, regenerate them with
//! `PHOENIX_BLESS=1 cargo test -p phoenix-gateway --test golden`, and read the difference.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use phoenix_config::{Estate, RealFilesystem, load, validate};
use phoenix_gateway::{Upstream, needs_observed_address, render, routes};

/// A configuration directory with these containers (`"ID": {...}` members, each given its
/// `services` and network settings) and this `gateway`; the certificate file it names exists.
fn estate(gateway: &str, containers: &[(u32, &str, &str)]) -> (tempfile::TempDir, Estate) {
    let tmp = tempfile::tempdir().expect("tmp");
    let cert = tmp.path().join("gw.pem");
    std::fs::write(&cert, "not read by rendering").expect("write");
    let gateway = gateway.replace("CERT", &cert.display().to_string());
    let hv = format!(
        r#"{{"backend": {{"type": "lxc", "bridges": {{"vmbr0": {{"address": "10.9.0.1/24"}}}}, "storage": {{"local": "/srv/local"}}}},
            "ip_pools": {{"lab": {{"cidr": "10.9.0.0/24", "range": "10.9.0.100-10.9.0.199", "gateway": "10.9.0.1"}}}},
            "gateway": {gateway}}}"#
    );
    let mut guests =
        vec![format!(r#""960": {}"#, container("gateway", r#""ip": "10.9.0.60/24", "gw": "10.9.0.1""#, "[]"))];
    for (id, net, services) in containers {
        guests.push(format!(r#""{id}": {}"#, container(&format!("g{id}"), net, services)));
    }
    let lxc = format!(r#"{{"lxc_configs": {{{}}}}}"#, guests.join(", "));
    std::fs::write(tmp.path().join("phoenix_hypervisor_config.json"), hv).expect("write");
    std::fs::write(tmp.path().join("phoenix_lxc_configs.json"), lxc).expect("write");
    let (sources, early) = load(tmp.path(), &RealFilesystem);
    let v = validate(&sources, early, &RealFilesystem);
    let estate = v.estate.clone().unwrap_or_else(|| panic!("invalid: {:#?}", v.reports));
    (tmp, estate)
}

fn container(name: &str, net: &str, services: &str) -> String {
    format!(
        r#"{{"name": "{name}", "memory_mb": 512, "cores": 1, "storage_pool": "local", "storage_size_gb": 4,
            "template": "local:vztmpl/debian.tar.zst", "unprivileged": true,
            "network_config": {{"name": "eth0", "bridge": "vmbr0", {net}}}, "services": {services}}}"#
    )
}

const STATIC_1: &str = r#""ip": "10.9.0.11/24", "gw": "10.9.0.1""#;
const STATIC_2: &str = r#""ip": "10.9.0.12/24", "gw": "10.9.0.1""#;

/// Renders and compares with (or, blessing, writes) `tests/golden/<name>.conf`.
fn golden(name: &str, estate: &Estate, observed: &BTreeMap<u32, IpAddr>) -> String {
    let rendered = render(estate, observed).expect("a gateway");
    assert_eq!(rendered.guest, 960);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(format!("{name}.conf"));
    if std::env::var_os("PHOENIX_BLESS").is_some() {
        std::fs::write(&path, &rendered.text).expect("bless");
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run with PHOENIX_BLESS=1 to write it", path.display()));
    assert_eq!(rendered.text, want, "{name}: the rendering changed; run with PHOENIX_BLESS=1 after checking it");
    // The same input gives the same text.
    assert_eq!(render(estate, observed).expect("a gateway").text, rendered.text);
    rendered.text
}

#[test]
fn path_routes_take_the_prefix_off_and_a_bare_prefix_redirects() {
    let (_tmp, e) = estate(
        r#"{"guest": "960"}"#,
        &[
            (
                950,
                STATIC_1,
                r#"[{"name": "qwen", "port": 8000, "path": "/v1/qwen/"}, {"name": "metrics", "port": 9100, "path": "/metrics"}]"#,
            ),
            (951, STATIC_2, r#"[{"name": "qdrant", "port": 6333, "path": "/qdrant/"}]"#),
        ],
    );
    let text = golden("path_routes", &e, &BTreeMap::new());
    assert!(text.contains("server 10.9.0.11:8000;") && text.contains("server 10.9.0.12:6333;"), "{text}");
    assert!(text.contains("location = /metrics {\n        return 301 /metrics/;"), "{text}");
    assert!(text.contains("server_name _;"), "no server_name: any host\n{text}");
}

#[test]
fn host_routes_get_a_server_each_and_a_host_with_a_path_shares_it() {
    let (_tmp, e) = estate(
        r#"{"guest": "960", "server_name": "ai.lab.example"}"#,
        &[
            (
                950,
                STATIC_1,
                r#"[{"name": "ollama", "port": 11434, "host": "ollama.lab.example"}, {"name": "api", "port": 8080, "host": "ollama.lab.example", "path": "/api/"}]"#,
            ),
            (
                951,
                STATIC_2,
                r#"[{"name": "qdrant", "port": 6333, "host": "qdrant.lab.example"}, {"name": "ui", "port": 3000, "path": "/ui/"}]"#,
            ),
        ],
    );
    let text = golden("host_routes", &e, &BTreeMap::new());
    assert_eq!(text.matches("server_name ollama.lab.example;").count(), 1, "{text}");
    assert!(text.contains("listen 80 default_server;\n    server_name ai.lab.example;"), "{text}");
}

#[test]
fn tls_routes_are_served_on_443_with_the_certificate_and_redirected_on_80() {
    let (_tmp, e) = estate(
        r#"{"guest": "960", "server_name": "ai.lab.example", "tls_certificate_file": "CERT", "tls_key": "env:GW_KEY"}"#,
        &[
            (
                950,
                STATIC_1,
                r#"[{"name": "qwen", "port": 8000, "path": "/v1/qwen/", "tls": true}, {"name": "plain", "port": 8001, "path": "/plain/"}]"#,
            ),
            (951, STATIC_2, r#"[{"name": "chat", "port": 3000, "host": "chat.lab.example", "tls": true}]"#),
        ],
    );
    let text = golden("tls", &e, &BTreeMap::new());
    assert!(text.contains("ssl_certificate /etc/phoenix/gateway/tls.crt;"), "{text}");
    assert!(text.contains("ssl_certificate_key /etc/phoenix/gateway/tls.key;"), "{text}");
    assert!(text.contains("return 301 https://$host$request_uri;"), "{text}");
    assert!(!text.contains("GW_KEY"), "the key's reference is not in the file");
    let rendered = render(&e, &BTreeMap::new()).expect("gateway");
    let tls = rendered.tls.expect("a service asks for TLS");
    assert_eq!(tls.key.0, "env:GW_KEY");
}

#[test]
fn websocket_routes_pass_upgrades() {
    let (_tmp, e) = estate(
        r#"{"guest": "960"}"#,
        &[(
            950,
            STATIC_1,
            r#"[{"name": "ollama", "port": 11434, "host": "ollama.lab.example", "websocket": true}, {"name": "api", "port": 8000, "path": "/api/"}]"#,
        )],
    );
    let text = golden("websocket", &e, &BTreeMap::new());
    assert_eq!(text.matches("proxy_set_header Upgrade $http_upgrade;").count(), 1, "{text}");
    assert_eq!(text.matches("proxy_set_header Connection $phoenix_connection_upgrade;").count(), 1, "{text}");
}

#[test]
fn upstream_tls_routes_speak_https_to_the_guest() {
    let (_tmp, e) = estate(
        r#"{"guest": "960"}"#,
        &[(950, STATIC_1, r#"[{"name": "vault", "port": 8200, "path": "/vault/", "upstream_tls": true}]"#)],
    );
    let text = golden("upstream_tls", &e, &BTreeMap::new());
    assert!(text.contains("proxy_pass https://phoenix_950_vault/;"), "{text}");
    assert!(text.contains("proxy_ssl_verify off;"), "{text}");
}

#[test]
fn guests_without_a_static_address_are_reached_where_they_report_and_answered_503_until_then() {
    let (_tmp, e) = estate(
        r#"{"guest": "960"}"#,
        &[
            (950, r#""ip": "dhcp""#, r#"[{"name": "web", "port": 80, "path": "/web/"}]"#),
            (951, r#""ip_pool": "lab""#, r#"[{"name": "api", "port": 8000, "path": "/api/"}]"#),
            (952, r#""ip": "dhcp""#, r#"[{"name": "late", "port": 80, "path": "/late/"}]"#),
        ],
    );
    assert_eq!(needs_observed_address(&e), vec![950, 951, 952]);
    let observed: BTreeMap<u32, IpAddr> =
        [(950, "10.9.0.150".parse().expect("ip")), (951, "10.9.0.101".parse().expect("ip"))].into();
    let text = golden("dhcp", &e, &observed);
    assert!(text.contains("server 10.9.0.150:80;") && text.contains("server 10.9.0.101:8000;"), "{text}");
    let rendered = render(&e, &observed).expect("gateway");
    assert_eq!(rendered.unresolved.len(), 1, "{:?}", rendered.unresolved);
    assert!(rendered.unresolved[0].contains("\"late\" of guest 952"), "{:?}", rendered.unresolved);
    let pool = routes(&e, &BTreeMap::new()).into_iter().find(|r| r.guest == 951).expect("route");
    assert!(matches!(&pool.upstream, Upstream::Unknown(why) if why.contains("from the pool \"lab\"")), "{pool:?}");
}

#[test]
fn a_change_of_one_service_changes_only_its_lines() {
    let services = |port: u32| format!(r#"[{{"name": "qwen", "port": {port}, "path": "/v1/qwen/"}}]"#);
    let (_a, before) = estate(
        r#"{"guest": "960"}"#,
        &[(950, STATIC_1, &services(8000)), (951, STATIC_2, r#"[{"name": "q", "port": 6333, "path": "/q/"}]"#)],
    );
    let (_b, after) = estate(
        r#"{"guest": "960"}"#,
        &[(950, STATIC_1, &services(8001)), (951, STATIC_2, r#"[{"name": "q", "port": 6333, "path": "/q/"}]"#)],
    );
    let before = render(&before, &BTreeMap::new()).expect("gateway").text;
    let after = render(&after, &BTreeMap::new()).expect("gateway").text;
    let changed: Vec<(&str, &str)> = before.lines().zip(after.lines()).filter(|(a, b)| a != b).collect();
    assert_eq!(changed, vec![("    server 10.9.0.11:8000;", "    server 10.9.0.11:8001;")]);
}

#[test]
fn without_a_gateway_nothing_is_rendered() {
    let (_tmp, mut e) = estate(r#"{"guest": "960"}"#, &[]);
    e.hypervisor.gateway = None;
    assert!(render(&e, &BTreeMap::new()).is_none());
}

#[test]
fn odd_characters_in_a_path_are_quoted() {
    let (_tmp, e) =
        estate(r#"{"guest": "960"}"#, &[(950, STATIC_1, r#"[{"name": "odd", "port": 80, "path": "/a b;\"c/"}]"#)]);
    let text = render(&e, &BTreeMap::new()).expect("gateway").text;
    assert!(text.contains(r#"location ^~ "/a b;\"c/" {"#), "{text}");
}
