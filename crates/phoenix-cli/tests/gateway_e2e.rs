//! The NGINX gateway end to end, on real unprivileged containers: a gateway container from the
//! Debian template `phoenix template debian` builds (with `nginx-light`, so the container needs no
//! network), routing by path and by host name, over TLS with a test CA, passing a WebSocket
//! upgrade through, refusing a configuration NGINX refuses while it goes on serving the old one,
//! and a re-apply that changes nothing.
//!
//! Needs root, the `lxc` tools, `busybox-static`, `debootstrap` (and the Debian archive the first
//! time), `openssl`, `curl` and the bridge `phxtest0` with 10.79.0.1/24 (`scripts/test-host.sh`
//! sets all of it up). In CI this test must run; elsewhere it is skipped with the reason when the
//! host lacks what it needs. The Debian template is built once per machine, under
//! [`debian::CACHE`].

#[path = "support/debian.rs"]
mod debian;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use debian::{
    Needs, Stack, available, both, build_debian_template, curl, debian_template, make_ca, make_server_cert, serial,
    text,
};

/// The gateway's address.
const GATEWAY: &str = "10.79.0.152";

/// Answers one connection: a WebSocket upgrade with 101, then echoes each line it gets through
/// the upgraded connection (busybox has no WebSocket server; the handshake's accept key is not
/// computed, the test speaks no WebSocket frames, only checks the tunnel).
const WS_SCRIPT: &str = r#"#!/bin/sh
up=
while IFS= read -r line; do
    line=$(printf '%s' "$line" | tr -d '\r')
    [ -z "$line" ] && break
    case "$line" in [Uu]pgrade:*websocket*) up=1 ;; esac
done
if [ -n "$up" ]; then
    printf 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n'
    while IFS= read -r line; do printf 'echo: %s\n' "$line"; done
else
    printf 'HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'
fi
"#;

/// The backends' script: a page naming the container on port 80, and on web-a the WebSocket
/// echo on port 8080.
const WEB_SCRIPT: &str = r#"#!/bin/sh
set -eu
n=$(hostname)
mkdir -p /srv/www
echo "hello from $n" > /srv/www/index.html
pgrep -f 'httpd -f -p 80' >/dev/null || setsid httpd -f -p 80 -h /srv/www </dev/null >/dev/null 2>&1 &
if [ "$n" = web-a ]; then
    cat > /srv/ws.sh <<'EOF'
@WS@EOF
    chmod 755 /srv/ws.sh
    pgrep -f 'nc -ll -p 8080' >/dev/null || setsid nc -ll -p 8080 -e /srv/ws.sh </dev/null >/dev/null 2>&1 &
fi
"#;

fn container(id: u32, name: &str, ip: u32, extra: &str) -> String {
    format!(
        r#""{id}": {{"name": "{name}", "memory_mb": 512, "cores": 1, "storage_pool": "local", "storage_size_gb": 10,
            "network_config": {{"name": "eth0", "bridge": "vmbr0", "ip": "10.79.0.{ip}/24", "gw": "10.79.0.1"}},
            "unprivileged": true {extra}}}"#
    )
}

/// The services of web-b, as the test edits them.
const WEB_B_SERVICES: &str = r#"[{"name": "web", "port": 80, "host": "b.test"}, {"name": "secure", "port": 80, "host": "secure.test", "tls": true}]"#;

/// The stack: web-a and web-b from the busybox template, the gateway from the Debian one, and a
/// test CA's certificate for `secure.test` (the CA's in `tls/ca.pem`).
fn stack(debian: &Path) -> Stack {
    let s = Stack::new("phoenix-gw-e2e-");
    let tls = s.root.join("tls");
    std::fs::create_dir_all(&tls).expect("mkdir");
    let ca = make_ca(&tls, "ca", "/CN=Phoenix test CA");
    let (cert, key) = make_server_cert(&tls, "gateway", &ca, "secure.test", "DNS:secure.test");
    s.write_hypervisor(serde_json::json!({"gateway": {"guest": "752", "tls_certificate_file": cert,
        "tls_key": format!("file:{}", key.display())}}));
    let http = r#", "health_check": {"http": {"port": 80, "path": "/"}, "retries": 30, "interval": 1}"#;
    let busybox = r#", "template": "local:vztmpl/busybox.tar.gz", "application_script": "web.sh""#;
    s.write_containers(&[
        container(
            750,
            "web-a",
            150,
            &format!(
                r#"{busybox}{http}, "services": [{{"name": "web", "port": 80, "path": "/a/"}}, {{"name": "ws", "port": 8080, "path": "/ws/", "websocket": true}}]"#
            ),
        ),
        container(751, "web-b", 151, &format!(r#"{busybox}{http}, "services": {WEB_B_SERVICES}"#)),
        container(752, "gateway", 152, &format!(r#", "template": "{}""#, debian.display())),
    ]);
    std::fs::write(s.config().join("web.sh"), WEB_SCRIPT.replace("@WS@", WS_SCRIPT)).expect("write");
    s.busybox_template();
    s
}

impl Stack {
    /// Runs a command in a container; its standard output.
    fn attach(&self, id: u32, argv: &[&str]) -> String {
        text(&self.lxc_attach(id).arg("--").args(argv).output().expect("lxc-attach").stdout)
    }
}

/// Reads from the connection until `done` says the text so far is complete (or 10 seconds pass).
fn read_until(conn: &mut TcpStream, got: &mut String, done: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    while !done(got) && Instant::now() < deadline {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => panic!("reading from the gateway: {e}"),
        }
    }
}

/// A WebSocket upgrade through the gateway to web-a's echo: the backend's 101 comes back, and
/// lines go both ways through the upgraded connection.
fn websocket_through_the_gateway() {
    let mut conn = TcpStream::connect((GATEWAY, 80)).expect("connect to the gateway");
    conn.set_read_timeout(Some(Duration::from_millis(500))).expect("timeout");
    conn.write_all(
        b"GET /ws/ HTTP/1.1\r\nHost: gateway.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .expect("write");
    let mut got = String::new();
    read_until(&mut conn, &mut got, |g| g.contains("\r\n\r\n"));
    assert!(got.starts_with("HTTP/1.1 101 "), "no upgrade: {got:?}");
    assert!(got.to_ascii_lowercase().contains("upgrade: websocket"), "{got:?}");
    conn.write_all(b"ping through the gateway\n").expect("write");
    let mut echoed = String::new();
    read_until(&mut conn, &mut echoed, |g| g.contains('\n'));
    assert_eq!(echoed, "echo: ping through the gateway\n");
}

#[test]
#[allow(clippy::print_stderr)] // The apply's duration is worth seeing in the test's output.
fn the_gateway_routes_by_path_host_tls_and_websocket_and_keeps_serving_when_nginx_refuses_a_change() {
    let needs = Needs { tools: &["openssl", "curl"], busybox: true, ..Needs::default() };
    if !available("the gateway end-to-end test", &needs) {
        return;
    }
    let _host = serial();
    let debian = debian_template();
    // A second build with the same inputs keeps the first.
    let again = build_debian_template();
    assert!(again.status.success() && both(&again).contains("the same inputs already; kept"), "{}", both(&again));
    let s = stack(&debian);

    let started = Instant::now();
    let out = s.phoenix(&["apply", "--jobs", "3"]);
    assert!(out.status.success(), "{}", both(&out));
    assert!(text(&out.stdout).contains("Apply complete: 3 created"), "{}", text(&out.stdout));
    eprintln!("apply of the 3 containers with the gateway: {:.1}s", started.elapsed().as_secs_f64());
    // The gateway runs NGINX from the template (the container has no network to install it).
    assert!(s.attach(752, &["nginx", "-v"]).is_empty(), "nginx -v writes to stderr only");
    assert!(s.attach(752, &["sh", "-c", "nginx -v 2>&1"]).starts_with("nginx version: nginx/"));

    // By path (the prefix is taken off), by host name (a Host header, and a name resolved to the
    // gateway), nothing elsewhere.
    let base = format!("http://{GATEWAY}");
    assert_eq!(curl(&[&format!("{base}/a/")]), (200, "hello from web-a\n".to_string()));
    assert_eq!(curl(&[&format!("{base}/a")]).0, 301, "the bare prefix redirects to the prefix");
    assert_eq!(curl(&["-H", "Host: b.test", &format!("{base}/")]), (200, "hello from web-b\n".to_string()));
    let resolve_b = format!("b.test:80:{GATEWAY}");
    assert_eq!(curl(&["--resolve", &resolve_b, "http://b.test/"]), (200, "hello from web-b\n".to_string()));
    assert_eq!(curl(&[&format!("{base}/nothing/")]).0, 404);

    // TLS with the test CA's certificate; plain HTTP to that name is redirected to HTTPS, and a
    // client without the CA refuses the certificate.
    let ca = s.root.join("tls/ca.pem");
    let ca = ca.to_str().expect("utf-8");
    let resolve_tls = format!("secure.test:443:{GATEWAY}");
    assert_eq!(
        curl(&["--cacert", ca, "--resolve", &resolve_tls, "https://secure.test/"]),
        (200, "hello from web-b\n".to_string())
    );
    assert_eq!(curl(&["--resolve", &resolve_tls, "https://secure.test/"]).0, 0, "trusted without the CA");
    let resolve_plain = format!("secure.test:80:{GATEWAY}");
    let redirect = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}"])
        .args(["--resolve", &resolve_plain, "http://secure.test/x"])
        .output()
        .expect("curl");
    assert_eq!(text(&redirect.stdout), "301 https://secure.test/x");
    // The key was installed readable by root only.
    assert_eq!(s.attach(752, &["stat", "-c", "%a", "/etc/phoenix/gateway/tls.key"]).trim(), "600");

    websocket_through_the_gateway();

    // Again: nothing to do.
    let out = s.phoenix(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));

    // A service the validator accepts but NGINX refuses: "/a" on web-b and "/a/" on web-a are
    // different routes to the validator, but both become `location ^~ /a/` in the default server.
    let live = || s.attach(752, &["cat", "/etc/nginx/conf.d/phoenix-gateway.conf"]);
    let before = live();
    assert!(before.contains("upstream phoenix_750_web"), "{before}");
    let broken =
        WEB_B_SERVICES.replace(r#"[{"name": "web""#, r#"[{"name": "dup", "port": 80, "path": "/a"}, {"name": "web""#);
    s.edit(WEB_B_SERVICES, &broken);
    let out = s.phoenix(&["validate"]);
    assert!(out.status.success(), "the validator refuses it now; pick another change NGINX refuses: {}", both(&out));
    let out = s.phoenix(&["apply"]);
    assert!(!out.status.success(), "{}", both(&out));
    let said = both(&out);
    assert!(said.contains("duplicate location"), "{said}");
    assert!(said.contains("the previous one is kept"), "{said}");
    assert_eq!(live(), before, "the refused file replaced the live one");
    assert_eq!(curl(&[&format!("{base}/a/")]), (200, "hello from web-a\n".to_string()));
    assert_eq!(curl(&["-H", "Host: b.test", &format!("{base}/")]), (200, "hello from web-b\n".to_string()));

    // Put back. web-b's script is given its services, so it runs again with them; the gateway
    // has nothing to do: the file NGINX serves is the one the configuration renders.
    s.edit(&broken, WEB_B_SERVICES);
    let out = s.phoenix(&["--output", "json", "plan"]);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let gateway = plan["guests"].as_array().into_iter().flatten().find(|g| g["id"] == 752).expect("752");
    assert_eq!(gateway["steps"], serde_json::json!([]), "{plan:#}");
    let out = s.phoenix(&["apply"]);
    assert!(out.status.success(), "{}", both(&out));
    let out = s.phoenix(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    assert_eq!(live(), before);
}
