//! Checks of the hypervisor file's sections and of what spans guests: shared volumes and mount
//! paths, NFS, Samba, ZFS, the host firewall, the backend, the gateway and driver versions.

use std::collections::BTreeMap;

use super::Ctx;
use super::guests::{check_rule, check_ssh_key};
use crate::diagnostic::{Code, Diagnostic};
use crate::estate::{GuestId, GuestSpec};
use crate::model::{ApiRoute, Backend, RaidLevel};
use crate::net::is_hostname;
use crate::path::JsonPath;
use crate::source::FileKind;

const HV: FileKind = FileKind::Hypervisor;

pub(super) fn check_host(cx: &mut Ctx<'_>) {
    let hv = &cx.estate.hypervisor;
    check_mount_paths(cx);
    if let Some(users) = &hv.users {
        let many = matches!(users, crate::model::OneOrMany::Many(_));
        for (i, u) in users.as_slice().iter().enumerate() {
            let base = if many { JsonPath::root().key("users").index(i) } else { JsonPath::root().key("users") };
            if let Some(key) = &u.ssh_public_key {
                check_ssh_key(cx, HV, base.key("ssh_public_key"), key);
            }
        }
    }
    if let Some(nfs) = &hv.nfs {
        for (i, e) in nfs.exports.iter().enumerate() {
            let base = JsonPath::root().key("nfs").key("exports").index(i);
            cx.require_absolute(HV, base.key("path"), "export path", &e.path);
            for (j, client) in e.clients.iter().enumerate() {
                let ok = client == "*"
                    || crate::net::Cidr::parse(client).is_ok()
                    || crate::net::parse_ipv4(client).is_ok()
                    || is_hostname(client.trim_start_matches("*."));
                if !ok {
                    cx.push(
                        Diagnostic::error(
                            Code::InvalidAddress,
                            HV,
                            base.key("clients").index(j),
                            format!("\"{client}\" is not an NFS client"),
                        )
                        .hint("an address, a CIDR, a host name, or \"*\""),
                    );
                }
            }
        }
    }
    if let Some(samba) = &hv.samba {
        let mut names = BTreeMap::new();
        for (i, s) in samba.shares.iter().enumerate() {
            let base = JsonPath::root().key("samba").key("shares").index(i);
            cx.require_absolute(HV, base.key("path"), "share path", &s.path);
            if let Some(first) = names.insert(s.name.to_ascii_lowercase(), i) {
                cx.push(
                    Diagnostic::error(
                        Code::Conflict,
                        HV,
                        base.key("name"),
                        format!("share name \"{}\" is used twice", s.name),
                    )
                    .note(
                        HV,
                        JsonPath::root().key("samba").key("shares").index(first),
                        "first used here",
                    ),
                );
            }
        }
        if !samba.shares.is_empty() && samba.user.is_some() && samba.password.is_none() {
            cx.push(
                Diagnostic::warning(
                    Code::Conflict,
                    HV,
                    JsonPath::root().key("samba"),
                    "the Samba user has no `password`; it will not be able to log in",
                )
                .at_key()
                .hint("give \"password\": a secret reference such as \"env:SAMBA_PASSWORD\""),
            );
        }
    }
    check_zfs(cx);
    check_proxmox_defaults(cx);
    if let Some(fw) = &hv.firewall {
        for (i, r) in fw.global_firewall_rules.iter().enumerate() {
            check_rule(cx, HV, &JsonPath::root().key("firewall").key("global_firewall_rules").index(i), r);
        }
    }
    check_backend(cx);
    check_gateway(cx);
    if let (Some(host), Some(guests)) = (
        hv.nvidia_driver.as_ref().and_then(|n| n.version.as_deref()),
        cx.estate.lxc_settings.nvidia_driver_version.as_deref(),
    ) && host != guests
    {
        cx.push(
                Diagnostic::error(Code::Conflict, FileKind::Lxc, JsonPath::root().key("nvidia_driver_version"), format!("containers expect NVIDIA driver {guests}, but the host installs {host}"))
                    .hint("the container libraries must match the host's kernel driver exactly: use the same version in both files")
                    .note(HV, JsonPath::root().key("nvidia_driver").key("version"), "the host's driver version"),
            );
    }
}

/// Every path mounted inside each container, from its mount points, volumes and the shared
/// volumes: two at one path is an error.
fn check_mount_paths(cx: &mut Ctx<'_>) {
    let mut mounts: BTreeMap<(GuestId, String), (FileKind, JsonPath)> = BTreeMap::new();
    let mut add = |cx: &mut Ctx<'_>, id: GuestId, inside: &str, file: FileKind, path: JsonPath| {
        let key = (id, inside.trim_end_matches('/').to_string());
        if inside == "/" {
            cx.push(Diagnostic::error(Code::Mount, file, path, "nothing may be mounted over the container's root `/`"));
        } else if let Some((f, p)) = mounts.get(&key) {
            cx.push(
                Diagnostic::error(
                    Code::Mount,
                    file,
                    path,
                    format!("container {id} already has something mounted at {inside}"),
                )
                .hint("two mounts at one path hide each other: pick another path")
                .note(*f, p.clone(), "the other mount"),
            );
        } else {
            mounts.insert(key, (file, path));
        }
    };
    for g in cx.estate.guests.values() {
        let GuestSpec::Lxc(c) = &g.spec else { continue };
        let base = &g.origin.path;
        for (i, m) in c.mount_points.iter().enumerate() {
            add(cx, g.id, &m.container_path, g.origin.file, base.key("mount_points").index(i).key("container_path"));
        }
        for (key, list) in [("volumes", &c.volumes), ("zfs_volumes", &c.zfs_volumes)] {
            for (i, v) in list.iter().enumerate() {
                add(cx, g.id, &v.mount_point, g.origin.file, base.key(key).index(i).key("mount_point"));
            }
        }
    }
    for (name, vol) in &cx.estate.hypervisor.shared_volumes {
        let base = JsonPath::root().key("shared_volumes").key(name);
        cx.require_absolute(HV, base.key("host_path"), "host_path", &vol.host_path);
        if let Some(owner) = &vol.owner {
            let valid = owner.split(':').count() <= 2
                && owner
                    .split(':')
                    .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
            if !valid {
                cx.push(
                    Diagnostic::error(
                        Code::InvalidValue,
                        HV,
                        base.key("owner"),
                        format!("owner \"{owner}\" is not `UID:GID` or `user:group`"),
                    )
                    .hint("e.g. \"100000:100000\" or \"phoenix:phoenix\""),
                );
            }
        }
        if vol.mounts.is_empty() {
            cx.push(
                Diagnostic::warning(
                    Code::Mount,
                    HV,
                    base.key("mounts"),
                    format!("shared volume \"{name}\" is mounted nowhere"),
                )
                .hint("add container IDs to `mounts`, or remove the volume"),
            );
        }
        for (ct, inside) in &vol.mounts {
            let path = base.key("mounts").key(ct);
            match cx.guest_by_ref(ct).map(|g| (g.id, g.as_lxc().is_some())) {
                None if cx.is_incomplete(ct) => {}
                None => {
                    let mut d = Diagnostic::error(
                        Code::Mount,
                        HV,
                        path,
                        format!("shared volume \"{name}\" is mounted into container {ct}, which is not defined"),
                    )
                    .at_key();
                    let containers: Vec<String> =
                        cx.estate.guests.values().filter(|g| g.as_lxc().is_some()).map(|g| g.id.to_string()).collect();
                    d = d.hint(
                        cx.id_suggestion(ct)
                            .unwrap_or_else(|| format!("defined containers: {}", containers.join(", "))),
                    );
                    cx.push(d);
                }
                Some((id, false)) => cx.push(
                    Diagnostic::error(
                        Code::Mount,
                        HV,
                        path,
                        format!("{id} is a VM; shared volumes are bind-mounted into containers only"),
                    )
                    .at_key()
                    .hint("share with VMs over NFS (`nfs.exports`)"),
                ),
                Some((id, true)) => {
                    if cx.require_absolute(HV, path.clone(), "mount path", inside) {
                        add(cx, id, inside, HV, path);
                    }
                }
            }
        }
    }
}

fn check_zfs(cx: &mut Ctx<'_>) {
    let Some(zfs) = &cx.estate.hypervisor.zfs else { return };
    let mut pools = BTreeMap::new();
    for (i, p) in zfs.pools.iter().enumerate() {
        let base = JsonPath::root().key("zfs").key("pools").index(i);
        if pools.insert(p.name.clone(), i).is_some() {
            cx.push(Diagnostic::error(
                Code::Conflict,
                HV,
                base.key("name"),
                format!("pool \"{}\" is defined twice", p.name),
            ));
        }
        let (min, level) = match p.raid_level {
            RaidLevel::Single => (1, "single"),
            RaidLevel::Mirror => (2, "mirror"),
            RaidLevel::Raidz1 => (3, "RAIDZ1"),
            RaidLevel::Raidz2 => (4, "RAIDZ2"),
            RaidLevel::Raidz3 => (5, "RAIDZ3"),
        };
        if p.disks.len() < min {
            cx.push(Diagnostic::error(
                Code::InvalidValue,
                HV,
                base.key("disks"),
                format!("a {level} pool needs at least {min} disk(s), \"{}\" has {}", p.name, p.disks.len()),
            ));
        }
        if p.raid_level == RaidLevel::Single && p.disks.len() > 1 {
            cx.push(
                Diagnostic::warning(
                    Code::Conflict,
                    HV,
                    base.key("raid_level"),
                    format!("a single pool over {} disks stripes them: losing one loses the pool", p.disks.len()),
                )
                .hint("use \"mirror\" or \"RAIDZ1\" for redundancy"),
            );
        }
        for (j, d) in p.disks.iter().enumerate() {
            if !d.starts_with("/dev/disk/by-") {
                cx.push(
                    Diagnostic::warning(
                        Code::InvalidValue,
                        HV,
                        base.key("disks").index(j),
                        format!("\"{d}\" can name another disk after a reboot"),
                    )
                    .hint("use a stable path from /dev/disk/by-id/"),
                );
            }
        }
    }
    for (i, ds) in zfs.datasets.iter().enumerate() {
        let base = JsonPath::root().key("zfs").key("datasets").index(i);
        if !pools.contains_key(&ds.pool) {
            let known: Vec<&str> = pools.keys().map(String::as_str).collect();
            cx.push(
                Diagnostic::error(
                    Code::UnknownReference,
                    HV,
                    base.key("pool"),
                    format!("pool \"{}\" is not in `zfs.pools`", ds.pool),
                )
                .hint(format!("defined pools: {}", known.join(", "))),
            );
        }
        if let Some(props) = &ds.properties
            && props
                .split(',')
                .any(|kv| kv.split_once('=').is_none_or(|(k, v)| k.trim().is_empty() || v.trim().is_empty()))
        {
            cx.push(
                Diagnostic::error(
                    Code::InvalidValue,
                    HV,
                    base.key("properties"),
                    format!("\"{props}\" is not `key=value,key=value`"),
                )
                .hint("e.g. \"compression=lz4,recordsize=1M\""),
            );
        }
    }
}

fn check_backend(cx: &mut Ctx<'_>) {
    let base = JsonPath::root().key("backend");
    match &cx.estate.hypervisor.backend {
        None => {
            if cx.hypervisor_read && !cx.estate.guests.is_empty() {
                cx.push(
                    Diagnostic::warning(Code::Backend, HV, base.clone(), "there is no `backend` section: `plan` and `apply` will not know where to create guests")
                        .hint("add \"backend\": {\"type\": \"proxmox\", ...} or {\"type\": \"lxc\", ...}; see the configuration reference"),
                );
            }
        }
        Some(Backend::Proxmox(p)) => {
            if let Some(url) = &p.api_url {
                if let Err(e) = crate::server_url::ServerUrl::parse(url, false) {
                    let url = crate::server_url::quoted(url);
                    cx.push(
                        Diagnostic::error(Code::Backend, HV, base.key("api_url"), format!("\"{url}\" {e}"))
                            .hint("the Proxmox API speaks HTTPS only, e.g. \"https://pve1.lab.example:8006\""),
                    );
                }
            } else if p.via == ApiRoute::Api {
                cx.push(
                    Diagnostic::error(Code::Backend, HV, base.clone(), "the Proxmox backend has no `api_url`")
                        .at_key()
                        .hint("give \"api_url\": \"https://pve1.lab.example:8006\", or \"via\": \"pvesh\" when Phoenix runs on the node"),
                );
            }
            if p.via == ApiRoute::Api && p.token.is_none() {
                let message = if p.root_ticket.is_some() {
                    "the Proxmox backend has no API token (`root_ticket` is only for what Proxmox reserves to root@pam)"
                } else {
                    "the Proxmox backend has no credentials"
                };
                cx.push(
                    Diagnostic::error(Code::Backend, HV, base.clone(), message)
                        .at_key()
                        .hint("give `token` ({\"id\": \"phoenix@pve!automation\", \"secret\": \"env:PVE_TOKEN_SECRET\"}), or \"via\": \"pvesh\" when Phoenix runs on the node"),
                );
            }
            if p.via == ApiRoute::Pvesh {
                for (key, given) in
                    [("token", p.token.is_some()), ("root_ticket", p.root_ticket.is_some()), ("tls", p.tls.is_some())]
                {
                    if given {
                        cx.push(
                            Diagnostic::warning(
                                Code::Backend,
                                HV,
                                base.key(key),
                                format!("`{key}` is not used: through `pvesh` Phoenix acts as root@pam on the node, without HTTPS"),
                            )
                            .at_key()
                            .hint("remove it, or use \"via\": \"api\""),
                        );
                    }
                }
            }
            if let Some(tls) = &p.tls {
                let tls_path = base.key("tls");
                if tls.ca_file.is_some() && tls.fingerprint.is_some() {
                    cx.push(
                        Diagnostic::error(
                            Code::Conflict,
                            HV,
                            tls_path.clone(),
                            "give `ca_file` or `fingerprint`, not both",
                        )
                        .at_key(),
                    );
                }
                if tls.insecure {
                    if tls.ca_file.is_some() || tls.fingerprint.is_some() {
                        cx.push(
                            Diagnostic::error(
                                Code::Conflict,
                                HV,
                                tls_path.key("insecure"),
                                "`insecure` turns off the verification `ca_file` or `fingerprint` asks for",
                            )
                            .at_key(),
                        );
                    } else {
                        cx.push(
                            Diagnostic::warning(Code::Backend, HV, tls_path.key("insecure"), "TLS certificate verification is off: anyone on the network path can read the API token")
                                .at_key()
                                .hint("pin the certificate instead: \"fingerprint\" from `pvenode cert info` (SHA-256)"),
                        );
                    }
                }
                if let Some(ca) = &tls.ca_file {
                    cx.require_file(HV, tls_path.key("ca_file"), "CA file", ca);
                }
            }
            if let Some(ssh) = &p.ssh {
                let ssh_path = base.key("ssh");
                for (key, value) in [("identity_file", &ssh.identity_file), ("known_hosts_file", &ssh.known_hosts_file)]
                {
                    if let Some(v) = value {
                        cx.require_file(HV, ssh_path.key(key), key, v);
                    }
                }
            }
        }
        Some(Backend::Lxc(lxc)) => {
            if let Some(dir) = &lxc.lxc_path {
                cx.require_absolute(HV, base.key("lxc_path"), "lxc_path", dir);
            }
            for (name, dir) in &lxc.storage {
                cx.require_absolute(HV, base.key("storage").key(name), "storage directory", dir);
            }
            if lxc.bridges.is_empty() {
                cx.push(Diagnostic::error(Code::Backend, HV, base.key("bridges"), "the local LXC backend has no bridges").at_key().hint("add one: \"bridges\": {\"vmbr0\": {\"host_bridge\": \"phxbr0\", \"address\": \"10.77.0.1/24\"}}"));
            }
        }
    }
}

fn check_gateway(cx: &mut Ctx<'_>) {
    // Routes must be unique across guests.
    // (host, path) of each route → the first service that has it.
    type Route = (Option<String>, Option<String>);
    let mut routes: BTreeMap<Route, (FileKind, JsonPath, GuestId)> = BTreeMap::new();
    let mut wants_tls = None;
    for g in cx.estate.guests.values() {
        let services = match &g.spec {
            GuestSpec::Lxc(c) => &c.services,
            GuestSpec::Vm(v) => &v.services,
        };
        for (i, s) in services.iter().enumerate() {
            let path = g.origin.path.key("services").index(i);
            if s.tls && wants_tls.is_none() {
                wants_tls = Some((g.origin.file, path.key("tls")));
            }
            let key = (s.host.clone(), s.path.clone());
            if let Some((f, p, other)) = routes.get(&key) {
                cx.push(
                    Diagnostic::error(
                        Code::Gateway,
                        g.origin.file,
                        path,
                        format!("service \"{}\" has the same route as a service of guest {other}", s.name),
                    )
                    .hint("give each service its own `path` or `host`")
                    .note(*f, p.clone(), "the other service"),
                );
            } else {
                routes.insert(key, (g.origin.file, path, g.id));
            }
        }
    }
    let Some(gw) = &cx.estate.hypervisor.gateway else {
        if let Some((_, (f, p, _))) = routes.iter().next() {
            cx.push(
                Diagnostic::warning(
                    Code::Gateway,
                    *f,
                    p.clone(),
                    "guests declare services, but there is no `gateway` to route them",
                )
                .hint("add \"gateway\": {\"guest\": \"<container ID running NGINX>\"} to the hypervisor file"),
            );
        }
        return;
    };
    let base = JsonPath::root().key("gateway");
    let id = gw.guest.as_text();
    match cx.guest_by_ref(&id) {
        None if cx.is_incomplete(&id) => {}
        None => cx.push(
            Diagnostic::error(Code::Gateway, HV, base.key("guest"), format!("gateway guest {id} is not defined"))
                .hint(cx.id_suggestion(&id).unwrap_or_else(|| "name the container that runs NGINX".to_string())),
        ),
        Some(g) if g.as_lxc().is_none() => cx.push(Diagnostic::error(
            Code::Gateway,
            HV,
            base.key("guest"),
            format!("gateway guest {id} is a VM; the gateway runs in a container"),
        )),
        Some(_) => {}
    }
    if let Some(cert) = &gw.tls_certificate_file {
        cx.require_file(HV, base.key("tls_certificate_file"), "certificate", cert);
    }
    if let Some((f, p)) = wants_tls.filter(|_| gw.tls_certificate_file.is_none() || gw.tls_key.is_none()) {
        cx.push(
            Diagnostic::error(
                Code::Gateway,
                f,
                p,
                "a service asks for TLS, but the gateway has no certificate and key",
            )
            .hint("give `gateway.tls_certificate_file` and `gateway.tls_key` (a secret reference)"),
        );
    }
}

/// `proxmox_defaults` that no container can take: every container must give its own cores,
/// memory, root storage and size, and bridge, so these defaults would never be used. Said, so
/// that no one believes they apply. (Swap, DNS servers, `unprivileged` and `start_at_boot` are
/// used for the containers that leave them out.)
fn check_proxmox_defaults(cx: &mut Ctx<'_>) {
    let Some(d) = cx.estate.hypervisor.proxmox_defaults.clone() else { return };
    let unused = [
        ("cores", d.cores.is_some()),
        ("memory_mb", d.memory_mb.is_some()),
        ("storage_pool", d.storage_pool.is_some()),
        ("storage_size_gb", d.storage_size_gb.is_some()),
        ("network_bridge", d.network_bridge.is_some()),
    ];
    for (key, _) in unused.iter().filter(|(_, set)| *set) {
        let own = if *key == "network_bridge" { "`network_config.bridge`".to_string() } else { format!("`{key}`") };
        cx.push(
            Diagnostic::warning(
                Code::Conflict,
                HV,
                JsonPath::root().key("proxmox_defaults").key(*key),
                format!("not used: every container gives its own {own}"),
            )
            .at_key()
            .hint("take it out, or set it in each container"),
        );
    }
}
