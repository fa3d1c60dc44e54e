//! The NGINX gateway: its configuration rendered from every guest's `services` and the
//! hypervisor file's `gateway` section, and the script that installs it inside the gateway guest.
//!
//! Pure: no I/O. The caller gives the addresses it observed for guests without a static one
//! (DHCP, or an address pool), and reads the certificate and the key when it installs them: the
//! rendered file names only the paths the gateway guest keeps them at, never their content.
//!
//! Routing: a service with only a `path` is served by the default server under that prefix (the
//! prefix is taken off before the request reaches the service: `/qdrant/collections` reaches it
//! as `/collections`); one with a `host` by a server of that name, at its `path` or at `/`. A
//! service with `tls` is served on port 443 with the gateway's certificate, and its route on port
//! 80 redirects there. Every route is proxied with HTTP/1.1, long timeouts for slow model
//! answers, and no buffering in either direction (server-sent events stream as they come);
//! `websocket` passes upgrades through; `upstream_tls` speaks HTTPS to the guest.
//!
//! The output is deterministic: servers by host name (the default server first), locations by
//! path, upstreams by guest and service.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::IpAddr;

use phoenix_config::estate::{Estate, Guest, GuestId, GuestSpec};
use phoenix_config::model::{Gateway, SecretRef, Service};

/// Where the rendered configuration lives inside the gateway guest (Debian's NGINX includes
/// `conf.d/*.conf` inside its `http` block).
pub const CONFIG_PATH: &str = "/etc/nginx/conf.d/phoenix-gateway.conf";

/// Where the gateway guest keeps the certificate the rendered configuration names.
pub const CERTIFICATE_PATH: &str = "/etc/phoenix/gateway/tls.crt";

/// Where the gateway guest keeps the private key the rendered configuration names (mode 0600).
pub const KEY_PATH: &str = "/etc/phoenix/gateway/tls.key";

/// The script that installs a rendered configuration inside the gateway guest (contract version
/// 1, as features): NGINX installed when missing, the file written beside the live one, checked
/// with `nginx -t`, swapped in and NGINX reloaded; on a failed check the live file stays and
/// NGINX keeps serving it.
pub const INSTALL_SCRIPT: &str = include_str!("install.sh");

/// How a service's guest is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// At this address.
    Address(IpAddr),
    /// Not known yet: why (the guest takes its address by DHCP or from a pool, and does not
    /// report one yet).
    Unknown(String),
}

/// One service with its guest and how to reach it.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// The guest exposing it.
    pub guest: GuestId,
    /// Its host name.
    pub guest_name: String,
    /// The service as configured.
    pub service: Service,
    /// Where the gateway sends its requests.
    pub upstream: Upstream,
}

impl Route {
    /// The NGINX upstream name: `phoenix_<guest>_<service>`.
    pub fn upstream_name(&self) -> String {
        format!("phoenix_{}_{}", self.guest, self.service.name)
    }
}

/// The certificate and key a rendered configuration needs installed, as the configuration gives
/// them (a host path and a secret reference; read only when installing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSource {
    /// The PEM certificate file on the host.
    pub certificate_file: String,
    /// The private key, as a secret reference.
    pub key: SecretRef,
}

/// The gateway's configuration, rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The container that runs NGINX.
    pub guest: GuestId,
    /// The configuration file's text.
    pub text: String,
    /// The certificate and key to install beside it, when a service asks for TLS.
    pub tls: Option<TlsSource>,
    /// Services routed nowhere yet, one sentence each (their guest's address is not known).
    pub unresolved: Vec<String>,
}

/// The guests whose address the gateway needs observed: those with services and no static
/// address (DHCP, or an address pool).
pub fn needs_observed_address(estate: &Estate) -> Vec<GuestId> {
    estate.guests.values().filter(|g| !g.services().is_empty() && static_address(g).is_none()).map(|g| g.id).collect()
}

/// The gateway's configuration, when the hypervisor file has a `gateway` whose guest is
/// defined. `observed` gives the addresses guests without a static one report.
pub fn render(estate: &Estate, observed: &BTreeMap<GuestId, IpAddr>) -> Option<Rendered> {
    let gateway = estate.hypervisor.gateway.as_ref()?;
    let guest = estate.gateway_guest()?;
    let routes = routes(estate, observed);
    let unresolved = routes
        .iter()
        .filter_map(|r| match &r.upstream {
            Upstream::Unknown(why) => Some(format!(
                "service \"{}\" of guest {} ({}) is not routed yet: {why}",
                r.service.name, r.guest, r.guest_name
            )),
            Upstream::Address(_) => None,
        })
        .collect();
    let tls = match (&gateway.tls_certificate_file, &gateway.tls_key) {
        (Some(cert), Some(key)) if routes.iter().any(|r| r.service.tls) => {
            Some(TlsSource { certificate_file: cert.clone(), key: key.clone() })
        }
        _ => None,
    };
    Some(Rendered { guest, text: render_routes(gateway, &routes), tls, unresolved })
}

/// Every service of every guest, with where it is reached, by guest ID then service name.
pub fn routes(estate: &Estate, observed: &BTreeMap<GuestId, IpAddr>) -> Vec<Route> {
    let mut out = Vec::new();
    for g in estate.guests.values() {
        let upstream = match static_address(g) {
            Some(ip) => Upstream::Address(ip),
            None => match observed.get(&g.id) {
                Some(ip) => Upstream::Address(*ip),
                None => Upstream::Unknown(format!(
                    "it takes its address {}, and reports none yet; the next apply after it has one routes it",
                    dynamic_source(g)
                )),
            },
        };
        let mut services: Vec<&Service> = g.services().iter().collect();
        services.sort_by(|a, b| a.name.cmp(&b.name));
        for s in services {
            out.push(Route {
                guest: g.id,
                guest_name: g.name().to_string(),
                service: s.clone(),
                upstream: upstream.clone(),
            });
        }
    }
    out
}

/// The guest's `ip`, when it is a static address (with or without its prefix length).
fn static_address(g: &Guest) -> Option<IpAddr> {
    let ip = match &g.spec {
        GuestSpec::Lxc(c) => c.network_config.ip.as_deref(),
        GuestSpec::Vm(v) => v.network_config.as_ref().and_then(|n| n.ip.as_deref()),
    }?;
    ip.split('/').next()?.trim().parse().ok()
}

/// How a guest without a static address takes one, in words.
fn dynamic_source(g: &Guest) -> String {
    let pool = match &g.spec {
        GuestSpec::Lxc(c) => c.network_config.ip_pool.clone(),
        GuestSpec::Vm(v) => v.network_config.as_ref().and_then(|n| n.ip_pool.clone()),
    };
    match pool {
        Some(p) => format!("from the pool \"{p}\""),
        None => "by DHCP".to_string(),
    }
}

/// A route's path as a location prefix: ending with `/`.
fn prefix(path: &str) -> String {
    if path.ends_with('/') { path.to_string() } else { format!("{path}/") }
}

/// A string as an NGINX argument: bare when it holds only plain characters, quoted otherwise.
fn arg(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._~%-:".contains(c)) {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// Whether a string can be written into a `return` target, where NGINX expands `$` variables.
fn plain(s: &str) -> bool {
    s.chars().all(|c| c.is_ascii_alphanumeric() || "/._~%-".contains(c))
}

/// One location of a server.
struct Location<'a> {
    /// The prefix (ending with `/`).
    prefix: String,
    /// The route as configured, when it is not the prefix itself (`/qdrant` for `/qdrant/`).
    bare: Option<String>,
    route: &'a Route,
    /// Served here, or redirected to HTTPS.
    redirect: bool,
}

/// Renders the configuration of a gateway routing these services.
pub fn render_routes(gateway: &Gateway, routes: &[Route]) -> String {
    let mut s = String::new();
    s.push_str("# Generated by Phoenix from the guests' `services` and the hypervisor file's `gateway`.\n");
    s.push_str("# Changes made here are replaced at the next apply.\n\n");
    s.push_str("map $http_upgrade $phoenix_connection_upgrade {\n    default upgrade;\n    \"\" close;\n}\n");

    let mut upstreams: Vec<&Route> = routes.iter().filter(|r| matches!(r.upstream, Upstream::Address(_))).collect();
    upstreams.sort_by_key(|r| (r.guest, r.service.name.clone()));
    for r in &upstreams {
        let Upstream::Address(ip) = &r.upstream else { continue };
        let addr = match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        let _ = write!(
            s,
            "\n# guest {} ({}), service \"{}\"\nupstream {} {{\n    server {addr}:{};\n    keepalive 8;\n}}\n",
            r.guest,
            r.guest_name,
            r.service.name,
            r.upstream_name(),
            r.service.port
        );
    }

    // Servers by host name; `None` is the default server.
    let mut hosts: BTreeMap<Option<String>, Vec<&Route>> = BTreeMap::new();
    hosts.entry(None).or_default();
    for r in routes {
        hosts.entry(r.service.host.clone()).or_default().push(r);
    }
    for tls in [false, true] {
        for (host, rs) in &hosts {
            if tls && !rs.iter().any(|r| r.service.tls) {
                continue;
            }
            let mut locations: Vec<Location<'_>> = rs
                .iter()
                .filter(|r| !tls || r.service.tls)
                .map(|r| {
                    let path = r.service.path.clone().unwrap_or_else(|| "/".to_string());
                    let p = prefix(&path);
                    Location { bare: (p != path).then_some(path), prefix: p, route: r, redirect: !tls && r.service.tls }
                })
                .collect();
            locations.sort_by(|a, b| a.prefix.cmp(&b.prefix));
            server(&mut s, gateway, host.as_deref(), tls, &locations);
        }
    }
    s
}

/// One `server` block.
fn server(s: &mut String, gateway: &Gateway, host: Option<&str>, tls: bool, locations: &[Location<'_>]) {
    let port = if tls { "443 ssl" } else { "80" };
    let default = if host.is_none() { " default_server" } else { "" };
    let name = match host {
        Some(h) => h.to_string(),
        None => gateway.server_name.as_deref().map_or_else(|| "_".to_string(), arg),
    };
    let _ = write!(s, "\nserver {{\n    listen {port}{default};\n    server_name {name};\n");
    if tls {
        let _ = write!(s, "    ssl_certificate {CERTIFICATE_PATH};\n    ssl_certificate_key {KEY_PATH};\n");
    }
    for l in locations {
        s.push('\n');
        let r = l.route;
        if let Some(bare) = l.bare.as_deref().filter(|b| plain(b)) {
            let _ = writeln!(s, "    location = {bare} {{\n        return 301 {bare}/;\n    }}");
        }
        let _ = writeln!(s, "    # guest {} ({}), service \"{}\"", r.guest, r.guest_name, r.service.name);
        let _ = writeln!(s, "    location ^~ {} {{", arg(&l.prefix));
        if l.redirect {
            s.push_str("        return 301 https://$host$request_uri;\n    }\n");
            continue;
        }
        match &r.upstream {
            Upstream::Unknown(why) => {
                let _ = writeln!(s, "        # not routed yet: {why}");
                s.push_str("        return 503;\n    }\n");
            }
            Upstream::Address(_) => proxy(s, r),
        }
    }
    if !locations.iter().any(|l| l.prefix == "/") {
        s.push_str("\n    location / {\n        return 404;\n    }\n");
    }
    s.push_str("}\n");
}

/// The body of a proxied location.
fn proxy(s: &mut String, r: &Route) {
    let scheme = if r.service.upstream_tls { "https" } else { "http" };
    let _ = writeln!(s, "        proxy_pass {scheme}://{}/;", r.upstream_name());
    s.push_str("        proxy_http_version 1.1;\n");
    s.push_str("        proxy_set_header Host $host;\n");
    s.push_str("        proxy_set_header X-Real-IP $remote_addr;\n");
    s.push_str("        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n");
    s.push_str("        proxy_set_header X-Forwarded-Proto $scheme;\n");
    if r.service.websocket {
        s.push_str("        proxy_set_header Upgrade $http_upgrade;\n");
        s.push_str("        proxy_set_header Connection $phoenix_connection_upgrade;\n");
    } else {
        s.push_str("        proxy_set_header Connection \"\";\n");
    }
    if r.service.upstream_tls {
        s.push_str("        proxy_ssl_verify off;\n");
    }
    s.push_str("        proxy_buffering off;\n");
    s.push_str("        proxy_request_buffering off;\n");
    s.push_str("        client_max_body_size 0;\n");
    s.push_str("        proxy_connect_timeout 10s;\n");
    s.push_str("        proxy_send_timeout 3600s;\n");
    s.push_str("        proxy_read_timeout 3600s;\n");
    s.push_str("    }\n");
}
