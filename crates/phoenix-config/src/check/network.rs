//! Addresses: each guest's IP, gateway and DNS servers against its bridge's subnet, address
//! pools, and IPs, MACs and host names used twice.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::Ctx;
use crate::diagnostic::{Code, Diagnostic};
use crate::estate::{Guest, GuestSpec};
use crate::model::{Backend, OneOrMany};
use crate::net::{Cidr, parse_ipv4, parse_range};
use crate::path::JsonPath;
use crate::source::FileKind;

/// A subnet someone declared, and where.
struct Subnet {
    cidr: Cidr,
    file: FileKind,
    path: JsonPath,
}

/// The bridges with a known subnet: the host's interfaces and the local backend's bridges.
fn bridge_subnets(cx: &mut Ctx<'_>) -> BTreeMap<String, Subnet> {
    let mut out = BTreeMap::new();
    let hv = &cx.estate.hypervisor;
    let file = FileKind::Hypervisor;
    if let Some(ifaces) = hv.network.as_ref().and_then(|n| n.interfaces.as_ref()) {
        let many = matches!(ifaces, OneOrMany::Many(_));
        for (i, iface) in ifaces.as_slice().iter().enumerate() {
            let base = JsonPath::root().key("network").key("interfaces");
            let base = if many { base.index(i) } else { base };
            match Cidr::parse(&iface.address) {
                Ok(cidr) => {
                    if let Some(gw) = iface.gateway.as_deref() {
                        check_gateway(cx, file, base.key("gateway"), gw, cidr, &format!("bridge {}", iface.name));
                    }
                    out.insert(iface.name.clone(), Subnet { cidr, file, path: base.key("address") });
                }
                Err(e) => cx.push(Diagnostic::error(Code::InvalidAddress, file, base.key("address"), e.to_string())),
            }
            if let Some(dns) = &iface.dns_nameservers {
                let list: Vec<&str> =
                    dns.as_slice().iter().flat_map(|s| s.split([' ', ','])).filter(|s| !s.is_empty()).collect();
                for ns in list {
                    if let Err(e) = parse_ipv4(ns) {
                        cx.push(Diagnostic::error(
                            Code::InvalidAddress,
                            file,
                            base.key("dns_nameservers"),
                            e.to_string(),
                        ));
                    }
                }
            }
        }
    }
    if let Some(Backend::Lxc(lxc)) = &hv.backend {
        for (name, bridge) in &lxc.bridges {
            let path = JsonPath::root().key("backend").key("bridges").key(name).key("address");
            match Cidr::parse(&bridge.address) {
                Ok(cidr) if cidr.is_host_address() => {
                    out.insert(name.clone(), Subnet { cidr, file, path });
                }
                Ok(cidr) => cx.push(
                    Diagnostic::error(
                        Code::InvalidAddress,
                        file,
                        path,
                        format!("{cidr} is the subnet's network or broadcast address, not a host address"),
                    )
                    .hint(format!(
                        "give the host's own address on the bridge, e.g. \"{}/{}\"",
                        Ipv4Addr::from(u32::from(cidr.network()) + 1),
                        cidr.prefix
                    )),
                ),
                Err(e) => cx.push(Diagnostic::error(Code::InvalidAddress, file, path, e.to_string())),
            }
        }
    }
    out
}

fn check_gateway(cx: &mut Ctx<'_>, file: FileKind, path: JsonPath, gw: &str, subnet: Cidr, whose: &str) {
    match parse_ipv4(gw) {
        Ok(ip) if !subnet.contains(ip) => cx.push(
            Diagnostic::error(
                Code::OutsideSubnet,
                file,
                path,
                format!("gateway {ip} is outside {whose}'s subnet {}", subnet.subnet()),
            )
            .hint("a gateway must be reachable directly: pick an address inside the subnet"),
        ),
        Ok(ip) if ip == subnet.addr && !whose.starts_with("bridge") => {
            cx.push(
                Diagnostic::error(Code::Conflict, file, path, format!("gateway {ip} is {whose}'s own address"))
                    .hint("the gateway is the subnet's router, usually the host's address on the bridge"),
            );
        }
        Ok(_) => {}
        Err(e) => cx.push(
            Diagnostic::error(Code::InvalidAddress, file, path, e.to_string())
                .hint("write one IPv4 address, e.g. \"10.0.0.1\""),
        ),
    }
}

/// A guest's network settings, whichever kind of guest it is.
struct GuestNet<'a> {
    path: JsonPath,
    bridge: Option<&'a str>,
    bridge_key: &'static str,
    ip: Option<&'a str>,
    ip_pool: Option<&'a str>,
    gw: Option<&'a str>,
    nameservers: Option<&'a OneOrMany<String>>,
    nameserver_key: &'static str,
    mac: Option<&'a str>,
}

fn guest_net<'a>(g: &'a Guest, estate: &'a crate::estate::Estate) -> Option<GuestNet<'a>> {
    let base = &g.origin.path;
    match &g.spec {
        GuestSpec::Lxc(c) => {
            let n = &c.network_config;
            Some(GuestNet {
                path: base.key("network_config"),
                bridge: Some(&n.bridge),
                bridge_key: "bridge",
                ip: n.ip.as_deref(),
                ip_pool: n.ip_pool.as_deref(),
                gw: n.gw.as_deref(),
                nameservers: n.nameservers.as_ref(),
                nameserver_key: "nameservers",
                mac: c.mac_address.as_deref(),
            })
        }
        GuestSpec::Vm(v) => {
            let n = v.network_config.as_ref()?;
            let default_bridge = estate.vm_defaults.as_ref().and_then(|d| d.network_bridge.as_deref());
            Some(GuestNet {
                path: base.key("network_config"),
                bridge: v.network_bridge.as_deref().or(default_bridge),
                bridge_key: "network_bridge",
                ip: n.ip.as_deref(),
                ip_pool: n.ip_pool.as_deref(),
                gw: n.gw.as_deref(),
                nameservers: n.nameserver.as_ref(),
                nameserver_key: "nameserver",
                mac: v.mac_address.as_deref(),
            })
        }
    }
}

/// First use of a value that must be unique.
struct FirstUse {
    file: FileKind,
    path: JsonPath,
    what: String,
}

pub(super) fn check_addresses(cx: &mut Ctx<'_>) {
    let bridges = bridge_subnets(cx);
    let pools = check_pools(cx);
    let estate = cx.estate;
    let mut ips: BTreeMap<Ipv4Addr, FirstUse> = BTreeMap::new();
    for s in bridges.values() {
        ips.insert(
            s.cidr.addr,
            FirstUse { file: s.file, path: s.path.clone(), what: "the host's address on the bridge".to_string() },
        );
    }
    let mut macs: BTreeMap<String, FirstUse> = BTreeMap::new();
    let mut names: BTreeMap<String, FirstUse> = BTreeMap::new();
    let shadowed = cx.shadowed;
    for g in estate.guests.values().chain(shadowed) {
        let file = g.origin.file;
        let who = format!("{} {} ({})", g.kind_name(), g.id, g.name());
        let name_path = g.origin.path.key("name");
        if let Some(first) = names.get(&g.name().to_ascii_lowercase()) {
            cx.push(
                Diagnostic::error(
                    Code::DuplicateHostname,
                    file,
                    name_path,
                    format!("host name \"{}\" is also used by {}", g.name(), first.what),
                )
                .hint("give every guest its own host name")
                .note(first.file, first.path.clone(), "first used here"),
            );
        } else {
            names.insert(g.name().to_ascii_lowercase(), FirstUse { file, path: name_path, what: who.clone() });
        }
        let Some(net) = guest_net(g, estate) else { continue };
        if let Some(mac) = net.mac {
            let mac_path = g.origin.path.key("mac_address");
            let lower = mac.to_ascii_lowercase();
            if u8::from_str_radix(&lower[..2.min(lower.len())], 16).is_ok_and(|b| b & 1 == 1) {
                cx.push(
                    Diagnostic::error(Code::InvalidValue, file, mac_path.clone(), format!("{mac} is a multicast MAC address"))
                        .hint("use a unicast, locally administered address: second hex digit 2, 6, A or E, e.g. \"02:00:00:00:00:01\""),
                );
            }
            if let Some(first) = macs.get(&lower) {
                cx.push(
                    Diagnostic::error(
                        Code::DuplicateMac,
                        file,
                        mac_path,
                        format!("MAC address {mac} is also used by {}", first.what),
                    )
                    .hint("every interface needs its own MAC address; leave `mac_address` out to have one generated")
                    .note(first.file, first.path.clone(), "first used here"),
                );
            } else {
                macs.insert(lower, FirstUse { file, path: mac_path, what: who.clone() });
            }
        }
        for (i, ns) in net.nameservers.map(OneOrMany::as_slice).unwrap_or_default().iter().enumerate() {
            if let Err(e) = parse_ipv4(ns) {
                let p = net.path.key(net.nameserver_key);
                let p = if matches!(net.nameservers, Some(OneOrMany::Many(_))) { p.index(i) } else { p };
                cx.push(Diagnostic::error(Code::InvalidAddress, file, p, e.to_string()));
            }
        }
        let subnet = net.bridge.and_then(|b| bridges.get(b));
        if let (Some(bridge), Some(Backend::Lxc(lxc))) = (net.bridge, &estate.hypervisor.backend)
            && !lxc.bridges.contains_key(bridge)
        {
            let known: Vec<&str> = lxc.bridges.keys().map(String::as_str).collect();
            let bridge_path =
                if net.bridge_key == "bridge" { net.path.key("bridge") } else { g.origin.path.key(net.bridge_key) };
            cx.push(
                Diagnostic::error(
                    Code::UnknownReference,
                    file,
                    bridge_path,
                    format!("bridge \"{bridge}\" is not in the backend's `bridges`"),
                )
                .hint(format!("map it in `backend.bridges` (known: {})", known.join(", "))),
            );
        }
        match (net.ip, net.ip_pool) {
            (Some(_), Some(_)) => cx.push(
                Diagnostic::error(Code::Conflict, file, net.path.key("ip_pool"), "both `ip` and `ip_pool` are given")
                    .at_key()
                    .hint("give a static `ip`, or `ip_pool` to have one allocated, not both"),
            ),
            (None, None) if g.as_lxc().is_some() => cx.push(
                Diagnostic::error(Code::MissingField, file, net.path.clone(), "the network has no address")
                    .at_key()
                    .hint("give `ip` (\"10.0.0.50/24\" or \"dhcp\"), or `ip_pool` to take one from a pool"),
            ),
            (None, Some(pool)) if !pools.contains_key(pool) => {
                let known: Vec<&str> = pools.keys().map(String::as_str).collect();
                cx.push(
                    Diagnostic::error(
                        Code::UnknownReference,
                        file,
                        net.path.key("ip_pool"),
                        format!("address pool \"{pool}\" is not defined"),
                    )
                    .hint(if known.is_empty() {
                        "define it in `ip_pools` of the hypervisor file".to_string()
                    } else {
                        format!("defined pools: {}", known.join(", "))
                    }),
                );
            }
            _ => {}
        }
        let Some(ip_text) = net.ip.filter(|ip| *ip != "dhcp") else { continue };
        let ip_path = net.path.key("ip");
        let cidr = match Cidr::parse(ip_text) {
            Ok(c) => c,
            Err(e) => {
                cx.push(
                    Diagnostic::error(Code::InvalidAddress, file, ip_path, e.to_string())
                        .hint("write an IPv4 address with its prefix length, e.g. \"10.0.0.50/24\", or \"dhcp\""),
                );
                continue;
            }
        };
        if !cidr.is_host_address() {
            cx.push(
                Diagnostic::error(
                    Code::InvalidAddress,
                    file,
                    ip_path.clone(),
                    format!(
                        "{cidr} is the {} address of its subnet",
                        if cidr.addr == cidr.network() { "network" } else { "broadcast" }
                    ),
                )
                .hint("pick a host address inside the subnet"),
            );
        }
        if let Some(s) = subnet {
            if !s.cidr.contains(cidr.addr) {
                cx.push(
                    Diagnostic::error(
                        Code::OutsideSubnet,
                        file,
                        ip_path.clone(),
                        format!(
                            "{} is outside bridge {}'s subnet {}",
                            cidr.addr,
                            net.bridge.unwrap_or_default(),
                            s.cidr.subnet()
                        ),
                    )
                    .note(s.file, s.path.clone(), "the bridge's subnet is defined here"),
                );
            } else if s.cidr.prefix != cidr.prefix {
                cx.push(
                    Diagnostic::warning(
                        Code::OutsideSubnet,
                        file,
                        ip_path.clone(),
                        format!(
                            "prefix /{} differs from bridge {}'s /{}; the bridge's is assumed",
                            cidr.prefix,
                            net.bridge.unwrap_or_default(),
                            s.cidr.prefix
                        ),
                    )
                    .hint(format!("write \"{}/{}\"", cidr.addr, s.cidr.prefix)),
                );
            }
        }
        for (name, (range, pool_path)) in &pools {
            if (u32::from(range.0)..=u32::from(range.1)).contains(&u32::from(cidr.addr)) {
                cx.push(
                    Diagnostic::error(
                        Code::Conflict,
                        file,
                        ip_path.clone(),
                        format!(
                            "{} is inside the range of address pool \"{name}\", which may hand it to another guest",
                            cidr.addr
                        ),
                    )
                    .hint("pick a static address outside every pool's range")
                    .note(FileKind::Hypervisor, pool_path.clone(), "the pool's range"),
                );
            }
        }
        if let Some(gw) = net.gw {
            check_gateway(cx, file, net.path.key("gw"), gw, cidr, &format!("the {}", g.kind_name()));
        }
        if let Some(first) = ips.get(&cidr.addr) {
            cx.push(
                Diagnostic::error(
                    Code::DuplicateIp,
                    file,
                    ip_path,
                    format!("{} is also used by {}", cidr.addr, first.what),
                )
                .hint("every guest needs its own address")
                .note(first.file, first.path.clone(), "first used here"),
            );
        } else {
            ips.insert(cidr.addr, FirstUse { file, path: ip_path, what: who });
        }
    }
}

/// Checks the address pools; returns each valid pool's range and where it is written.
fn check_pools(cx: &mut Ctx<'_>) -> BTreeMap<String, ((Ipv4Addr, Ipv4Addr), JsonPath)> {
    let mut out: BTreeMap<String, ((Ipv4Addr, Ipv4Addr), JsonPath)> = BTreeMap::new();
    let file = FileKind::Hypervisor;
    for (name, pool) in &cx.estate.hypervisor.ip_pools {
        let base = JsonPath::root().key("ip_pools").key(name);
        let cidr = match Cidr::parse(&pool.cidr) {
            Ok(c) => c,
            Err(e) => {
                cx.push(Diagnostic::error(Code::InvalidAddress, file, base.key("cidr"), e.to_string()));
                continue;
            }
        };
        let range = match parse_range(&pool.range) {
            Ok(r) => r,
            Err(e) => {
                cx.push(Diagnostic::error(Code::InvalidAddress, file, base.key("range"), e.to_string()));
                continue;
            }
        };
        if !cidr.contains(range.0) || !cidr.contains(range.1) {
            cx.push(Diagnostic::error(
                Code::OutsideSubnet,
                file,
                base.key("range"),
                format!("range {} is not inside {}", pool.range, cidr.subnet()),
            ));
        }
        if let Some(gw) = &pool.gateway {
            check_gateway(cx, file, base.key("gateway"), gw, cidr.subnet(), &format!("pool {name}"));
            if let Ok(ip) = parse_ipv4(gw)
                && (u32::from(range.0)..=u32::from(range.1)).contains(&u32::from(ip))
            {
                cx.push(
                    Diagnostic::error(
                        Code::Conflict,
                        file,
                        base.key("gateway"),
                        format!("gateway {ip} is inside the pool's own range"),
                    )
                    .hint("shrink the range so the pool never hands out the gateway"),
                );
            }
        }
        for (other, (r, p)) in &out {
            if u32::from(range.0) <= u32::from(r.1) && u32::from(r.0) <= u32::from(range.1) {
                cx.push(
                    Diagnostic::error(
                        Code::Conflict,
                        file,
                        base.key("range"),
                        format!("range overlaps pool \"{other}\""),
                    )
                    .note(file, p.clone(), "the other range"),
                );
            }
        }
        out.insert(name.clone(), (range, base.key("range")));
    }
    out
}
