//! The desired state: each guest of the configuration as the backend should show it, with
//! configuration normalised to the same fields and forms an observation uses.

use std::collections::{BTreeMap, BTreeSet};

use phoenix_backend::fields::{IdRange, Startup, canonical};
use phoenix_backend::{CreateSource, Field, GuestConfig, GuestId, GuestKind, Mount, Value};
use phoenix_config::estate::{Estate, Guest, GuestSpec};
use phoenix_config::model::{Direction, FirewallAction, FirewallRule, HealthCheck, LxcConfig, OneOrMany, VmConfig};
use serde::Serialize;

/// A feature or the application script, with the hash of everything it depends on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Customization {
    /// Stable key of the marker inside the guest: `feature:<name>` or `script`.
    pub key: String,
    /// The hash of the script, its parameters and the calling-convention version.
    pub hash: String,
}

/// One guest as it should be.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DesiredGuest {
    /// Its ID.
    pub id: GuestId,
    /// Container or VM.
    pub kind: GuestKind,
    /// Host name.
    pub name: String,
    /// The node it belongs on.
    pub node: Option<String>,
    /// Where it is created from.
    pub source: CreateSource,
    /// Its configuration, normalised; only what the configuration says (never a backend default).
    pub config: GuestConfig,
    /// The snapshot taken last, for templates (never for a guest that becomes a template: see
    /// [`DesiredGuest::unused_snapshot`]).
    pub template_snapshot: Option<String>,
    /// It becomes a template once customized (`is_template`): stopped and converted, never
    /// started again; clones of it are made from it as it is, without a snapshot.
    pub template: bool,
    /// The `template_snapshot_name` of a guest that becomes a template, which is not taken:
    /// Proxmox makes templates only of guests without snapshots, and a template's disks do not
    /// change, so clones of it need none.
    pub unused_snapshot: Option<String>,
    /// Features then the application script, in order.
    pub customizations: Vec<Customization>,
    /// How to tell it is healthy.
    #[serde(skip)]
    pub health: Option<HealthCheck>,
    /// Guests it needs completed and healthy first: its clone source, then its dependencies.
    pub needs: Vec<GuestId>,
    /// Removable fields (see [`Field::removable`]) that its clone source, or theirs,
    /// configures: a clone has them from its template, so their absence from its own
    /// configuration removes nothing.
    pub inherits: BTreeSet<Field>,
}

/// Every guest as it should be, in an order where each comes after what it needs.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Desired {
    /// Guests by ID.
    pub guests: BTreeMap<GuestId, DesiredGuest>,
    /// A start order over the whole graph.
    pub order: Vec<GuestId>,
}

/// Builds the desired state of a validated estate. `customizations` gives each guest's features
/// and script with their input hashes (reading scripts is the caller's I/O, so this stays pure).
pub fn desired(estate: &Estate, customizations: &dyn Fn(&Guest) -> Vec<Customization>) -> Desired {
    let mut guests = BTreeMap::new();
    for g in estate.guests.values() {
        let needs = estate.edges(g).into_iter().map(|(_, id)| id).fold(Vec::new(), |mut v, id| {
            if !v.contains(&id) {
                v.push(id);
            }
            v
        });
        // A template is cloned as it is; another clone source at its snapshot.
        let source_snapshot = |id: GuestId| {
            estate
                .guests
                .get(&id)
                .filter(|s| !s.is_template())
                .and_then(Guest::template_snapshot)
                .unwrap_or_default()
                .to_string()
        };
        let (kind, config, source, node, health) = match &g.spec {
            GuestSpec::Lxc(c) => {
                let source = match c.clone_from_ctid.as_deref().and_then(|s| s.parse().ok()) {
                    Some(src) => CreateSource::Clone { source: src, snapshot: source_snapshot(src) },
                    None => CreateSource::Template(
                        c.template
                            .clone()
                            .or_else(|| estate.hypervisor.proxmox_defaults.as_ref().and_then(|d| d.template.clone()))
                            .unwrap_or_default(),
                    ),
                };
                (GuestKind::Lxc, lxc_config(estate, g.id, c), source, c.node.clone(), c.health_check.clone())
            }
            GuestSpec::Vm(v) => {
                let defaults = estate.vm_defaults.clone().unwrap_or_default();
                let source = match v.clone_from_vmid {
                    Some(src) => CreateSource::Clone { source: src, snapshot: source_snapshot(src) },
                    None => CreateSource::Template(cloud_image(
                        &v.template_image.clone().or(defaults.template.clone()).unwrap_or_default(),
                        defaults.ubuntu_release.as_deref(),
                    )),
                };
                (GuestKind::Vm, vm_config(estate, v), source, v.node.clone(), v.health_check.clone())
            }
        };
        guests.insert(
            g.id,
            DesiredGuest {
                id: g.id,
                kind,
                name: g.name().to_string(),
                node,
                source,
                config,
                template_snapshot: g.template_snapshot().filter(|_| !g.is_template()).map(str::to_string),
                template: g.is_template(),
                unused_snapshot: g.template_snapshot().filter(|_| g.is_template()).map(str::to_string),
                customizations: customizations(g),
                health,
                needs,
                inherits: BTreeSet::new(),
            },
        );
    }
    let inherited: BTreeMap<GuestId, BTreeSet<Field>> =
        guests.keys().map(|id| (*id, inherited_fields(&guests, *id))).collect();
    for (id, fields) in inherited {
        if let Some(g) = guests.get_mut(&id) {
            g.inherits = fields;
        }
    }
    let order = phoenix_config::graph::order(estate).unwrap_or_else(|| guests.keys().copied().collect());
    Desired { guests, order }
}

/// The removable fields the clone sources of `id` configure, up its chain of clone sources.
fn inherited_fields(guests: &BTreeMap<GuestId, DesiredGuest>, id: GuestId) -> BTreeSet<Field> {
    let mut out = BTreeSet::new();
    let mut seen = BTreeSet::from([id]);
    let mut at = guests.get(&id);
    while let Some(CreateSource::Clone { source, .. }) = at.map(|g| &g.source) {
        if !seen.insert(*source) {
            break;
        }
        at = guests.get(source);
        if let Some(g) = at {
            out.extend(g.config.fields().filter(|f| f.removable()).cloned());
        }
    }
    out
}

/// A VM's cloud image as the backend is given it: a bare image name the distribution's image
/// server has (`noble-server-cloudimg-amd64.img`, see [`phoenix_config::cloud_image`]) becomes
/// its download URL, for the backend to download; a path or volume ID stays as it is.
fn cloud_image(image: &str, ubuntu_release: Option<&str>) -> String {
    use phoenix_config::cloud_image::{download_url, is_bare_name};
    is_bare_name(image).then(|| download_url(image, ubuntu_release)).flatten().unwrap_or_else(|| image.to_string())
}

fn nameservers(ns: Option<&OneOrMany<String>>) -> Option<Value> {
    ns.map(|n| Value::Nameservers(n.as_slice().iter().flat_map(|s| s.split_whitespace()).map(str::to_string).collect()))
}

/// A container's feature flags, when its own configuration says anything of them: those of its
/// clone sources (a clone keeps its template's), overridden flag by flag by its own
/// `pct_options`; `apparmor_manages_nesting` is the nesting flag; a feature that needs nesting
/// turns it on when nothing says, as the shell version did. `None` leaves the flags the
/// container was created or cloned with.
fn container_flags(estate: &Estate, id: GuestId, c: &LxcConfig) -> Option<Value> {
    let auto_nesting = estate.nesting_turned_on.contains(&id);
    if c.pct_options.is_empty() && c.apparmor_manages_nesting.is_none() && !auto_nesting {
        return None;
    }
    let mut flags: BTreeMap<String, String> = BTreeMap::new();
    let chain = estate.clone_chain(id);
    for level in chain.iter().rev().filter_map(|g| g.as_lxc()) {
        let own: Vec<(String, String)> = level
            .pct_options
            .iter()
            .flat_map(|o| o.split(','))
            .filter_map(|f| f.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        if let Some(on) = level.apparmor_manages_nesting
            && !own.iter().any(|(k, _)| k == "nesting")
        {
            flags.insert("nesting".into(), if on { "1" } else { "0" }.into());
        }
        flags.extend(own);
    }
    if auto_nesting {
        flags.insert("nesting".into(), "1".into());
    }
    Some(Value::flags(flags.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().iter().map(String::as_str)))
}

fn lxc_config(estate: &Estate, id: GuestId, c: &LxcConfig) -> GuestConfig {
    let mut cfg = GuestConfig::default();
    // What `proxmox_defaults` gives a container that leaves it out.
    let defaults = estate.hypervisor.proxmox_defaults.clone().unwrap_or_default();
    cfg.set(Field::Hostname, &c.name);
    cfg.set(Field::Cores, c.cores);
    cfg.set(Field::MemoryMb, c.memory_mb);
    if let Some(s) = c.swap_mb.or(defaults.swap_mb) {
        cfg.set(Field::SwapMb, s);
    }
    cfg.set(Field::Storage, &c.storage_pool);
    cfg.set(Field::DiskGb, c.storage_size_gb);
    // Validation makes sure the container or its clone source says.
    cfg.set(Field::Unprivileged, estate.unprivileged(id).unwrap_or(true));
    let n = &c.network_config;
    cfg.set(Field::NetName, &n.name);
    cfg.set(Field::NetBridge, &n.bridge);
    if let Some(ip) = &n.ip {
        cfg.set(Field::NetIp, ip);
    }
    if let Some(gw) = &n.gw {
        cfg.set(Field::NetGw, gw);
    }
    if let Some(ns) = nameservers(n.nameservers.as_ref().or(defaults.nameservers.as_ref())) {
        cfg.set(Field::NetNameservers, ns);
    }
    if let Some(mac) = &c.mac_address {
        cfg.set(Field::NetMac, Value::mac(mac));
    }
    if let Some(flags) = container_flags(estate, id, c) {
        cfg.set(Field::Flags, flags);
    }
    if let Some(b) = c.start_at_boot.or(defaults.start_at_boot) {
        cfg.set(Field::Onboot, b);
    }
    if c.boot_order.is_some() || c.boot_delay.is_some() {
        cfg.set(Field::Startup, Startup { order: c.boot_order, up: c.boot_delay });
    }
    if !c.tags.is_empty() {
        cfg.set(Field::Tags, Value::tags(c.tags.iter().map(String::as_str)));
    }
    for m in &c.mount_points {
        let mut mount = Mount::bind(&m.host_path);
        mount.read_only = m.read_only;
        if m.owner_uid.is_some() || m.owner_gid.is_some() {
            mount.owner = Some((m.owner_uid.unwrap_or(0), m.owner_gid.unwrap_or(0)));
        }
        cfg.set(Field::mount(&m.container_path), mount);
    }
    for v in c.volumes.iter().chain(&c.zfs_volumes) {
        cfg.set(Field::mount(&v.mount_point), Mount::volume(&v.pool, u64::from(v.size_gb)));
    }
    for vol in estate.hypervisor.shared_volumes.values() {
        if let Some(inside) = vol.mounts.get(&id.to_string()) {
            let mut mount = Mount::bind(&vol.host_path);
            mount.host_owner.clone_from(&vol.owner);
            cfg.set(Field::mount(inside), mount);
        }
    }
    if !c.id_maps.is_empty() {
        let ranges: Vec<IdRange> = c
            .id_maps
            .iter()
            .map(|m| {
                let kind = if m.kind == phoenix_config::model::IdKind::Uid { 'u' } else { 'g' };
                (kind, u64::from(m.container_id), u64::from(m.host_id), u64::from(m.size))
            })
            .collect();
        cfg.set(Field::Idmap, Value::idmap(ranges));
    }
    if let Some(g) = c.gpu_assignment.as_deref().and_then(Value::gpus) {
        cfg.set(Field::Gpus, g);
    }
    if !c.lxc_options.is_empty() {
        cfg.set(Field::LxcRaw, Value::lxc_lines(c.lxc_options.iter().map(String::as_str)));
    }
    if let Some(a) = &c.apparmor_profile {
        cfg.set(Field::Apparmor, a);
    }
    if let Some(fw) = &c.firewall {
        cfg.set(Field::Firewall, fw.enabled);
        if let Some(rules) = &fw.rules {
            cfg.set(Field::FirewallRules, Value::rules(&rules.iter().map(firewall_rule).collect::<Vec<_>>()));
        }
    }
    cfg
}

/// A rule of the configuration in the canonical form observations use.
fn firewall_rule(r: &FirewallRule) -> canonical::FirewallRule {
    let direction = match r.direction {
        Direction::In => "in",
        Direction::Out => "out",
    };
    let action = match r.action {
        FirewallAction::Accept => "ACCEPT",
        FirewallAction::Drop => "DROP",
        FirewallAction::Reject => "REJECT",
    };
    canonical::FirewallRule {
        direction: direction.to_string(),
        action: action.to_string(),
        source: r.source.clone(),
        dest: r.dest.clone(),
        proto: r.proto.clone(),
        port: r.port.clone(),
        sport: r.sport.clone(),
        iface: r.iface.clone(),
        comment: r.comment.clone(),
        enabled: r.enabled.unwrap_or(true),
        ..canonical::FirewallRule::default()
    }
}

fn vm_config(estate: &Estate, v: &VmConfig) -> GuestConfig {
    let d = estate.vm_defaults.clone().unwrap_or_default();
    let mut cfg = GuestConfig::default();
    cfg.set(Field::Hostname, &v.name);
    if let Some(c) = v.cores.or(d.cores) {
        cfg.set(Field::Cores, c);
    }
    if let Some(m) = v.memory_mb.or(d.memory_mb) {
        cfg.set(Field::MemoryMb, m);
    }
    if let Some(s) = v.disk_size_gb.or(d.disk_size_gb) {
        cfg.set(Field::DiskGb, s);
    }
    if let Some(s) = v.storage_pool.clone().or(d.storage_pool) {
        cfg.set(Field::Storage, s);
    }
    if let Some(b) = v.network_bridge.clone().or(d.network_bridge) {
        cfg.set(Field::NetBridge, b);
    }
    if let Some(n) = &v.network_config {
        if let Some(ip) = &n.ip {
            cfg.set(Field::NetIp, ip);
        }
        if let Some(gw) = &n.gw {
            cfg.set(Field::NetGw, gw);
        }
        if let Some(ns) = nameservers(n.nameserver.as_ref()) {
            cfg.set(Field::NetNameservers, ns);
        }
    }
    if let Some(mac) = &v.mac_address {
        cfg.set(Field::NetMac, Value::mac(mac));
    }
    if let Some(u) = &v.user_config {
        cfg.set(Field::CiUser, &u.username);
        if let Some(key) = u.ssh_public_key.as_deref().map(str::trim).filter(|k| !k.is_empty()) {
            cfg.set(
                Field::CiSshkeys,
                Value::Lines(key.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect()),
            );
        }
        if let Some(hash) = password_source(v) {
            cfg.set(Field::CiPassword, canonical::fingerprint(hash));
        }
    }
    if let Some(b) = v.start_at_boot {
        cfg.set(Field::Onboot, b);
    }
    if v.boot_order.is_some() || v.boot_delay.is_some() {
        cfg.set(Field::Startup, Startup { order: v.boot_order, up: v.boot_delay });
    }
    if !v.tags.is_empty() {
        cfg.set(Field::Tags, Value::tags(v.tags.iter().map(String::as_str)));
    }
    if let Some(fw) = &v.firewall {
        cfg.set(Field::Firewall, fw.enabled);
        if let Some(rules) = &fw.rules {
            cfg.set(Field::FirewallRules, Value::rules(&rules.iter().map(firewall_rule).collect::<Vec<_>>()));
        }
    }
    cfg
}

/// A VM's password hash as the configuration gives it (a crypt hash or a secret reference);
/// `None` for none or `NOT_SET`.
fn password_source(v: &VmConfig) -> Option<&str> {
    let hash = v.user_config.as_ref()?.password_hash.as_ref()?.0.as_str();
    (hash != "NOT_SET" && !hash.is_empty()).then_some(hash)
}

/// The password hash of each VM that has one, as the configuration gives it (a crypt hash or a
/// secret reference, resolved only by the backend when it sets the password). The desired state
/// carries only its [`canonical::fingerprint`] (the field `ci.password`), so that a plan never
/// holds it; the backend is given these to set what the fingerprint stands for.
pub fn vm_passwords(estate: &Estate) -> BTreeMap<GuestId, String> {
    estate
        .guests
        .values()
        .filter_map(|g| match &g.spec {
            GuestSpec::Vm(v) => password_source(v).map(|h| (g.id, h.to_string())),
            GuestSpec::Lxc(_) => None,
        })
        .collect()
}

impl Desired {
    /// Only the given guests and everything they need, transitively. Errs with the first ID that
    /// is not configured.
    pub fn restrict(&self, targets: &[GuestId]) -> Result<Desired, GuestId> {
        let mut keep = std::collections::BTreeSet::new();
        let mut stack = targets.to_vec();
        while let Some(id) = stack.pop() {
            let g = self.guests.get(&id).ok_or(id)?;
            if keep.insert(id) {
                stack.extend(g.needs.iter().copied());
            }
        }
        Ok(Desired {
            guests: self.guests.iter().filter(|(id, _)| keep.contains(id)).map(|(id, g)| (*id, g.clone())).collect(),
            order: self.order.iter().copied().filter(|id| keep.contains(id)).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firewall_rules_are_written_in_the_canonical_form_observations_use() {
        let rule = |enabled, port: Option<&str>| FirewallRule {
            direction: Direction::In,
            action: FirewallAction::Accept,
            source: Some("10.0.0.0/24".into()),
            dest: None,
            proto: Some("tcp".into()),
            port: port.map(str::to_string),
            sport: None,
            iface: None,
            comment: Some("ssh".into()),
            enabled,
        };
        let rules: Vec<canonical::FirewallRule> =
            [rule(None, Some("22")), rule(Some(false), None)].iter().map(firewall_rule).collect();
        assert_eq!(
            canonical::firewall_rules(&rules),
            concat!(
                r#"[{"type":"in","action":"ACCEPT","source":"10.0.0.0/24","proto":"tcp","port":"22","comment":"ssh"},"#,
                r#"{"type":"in","action":"ACCEPT","source":"10.0.0.0/24","proto":"tcp","comment":"ssh","enabled":false}]"#
            )
        );
    }

    #[test]
    fn a_clone_inherits_the_removable_fields_of_its_chain_of_templates() {
        let g = |id: GuestId, source: Option<GuestId>, fields: &[(&str, &str)]| DesiredGuest {
            id,
            kind: GuestKind::Lxc,
            name: format!("g{id}"),
            node: None,
            source: source.map_or(CreateSource::Template("t".into()), |s| CreateSource::Clone {
                source: s,
                snapshot: "s".into(),
            }),
            config: GuestConfig::parse(fields.iter().copied()).expect("config"),
            template_snapshot: None,
            template: false,
            unused_snapshot: None,
            customizations: Vec::new(),
            health: None,
            needs: Vec::new(),
            inherits: BTreeSet::new(),
        };
        let guests: BTreeMap<GuestId, DesiredGuest> = [
            (900, g(900, None, &[("cores", "1"), ("tags", "template"), ("mount:/models", "bind:/m")])),
            (901, g(901, Some(900), &[("cores", "1"), ("gpus", "0"), ("flags", "nesting=1")])),
            (950, g(950, Some(901), &[("cores", "2"), ("lxc.raw", "lxc.a: b")])),
        ]
        .into();
        assert!(inherited_fields(&guests, 900).is_empty());
        let want = |f: &[&str]| f.iter().map(|s| Field::from_name(s).expect("field")).collect::<BTreeSet<Field>>();
        assert_eq!(inherited_fields(&guests, 901), want(&["mount:/models", "tags"]));
        assert_eq!(inherited_fields(&guests, 950), want(&["gpus", "mount:/models", "tags"]));
    }

    #[test]
    fn a_template_is_cloned_as_it_is_its_snapshot_name_not_taken_and_a_bare_image_name_is_its_url() {
        use phoenix_config::estate::Origin;
        use phoenix_config::path::JsonPath;
        use phoenix_config::source::FileKind;
        let vm = |json: serde_json::Value| -> Guest {
            let v: VmConfig = serde_json::from_value(json).expect("a VM");
            Guest {
                id: v.vmid,
                spec: GuestSpec::Vm(Box::new(v)),
                origin: Origin { file: FileKind::Vm, path: JsonPath::root() },
            }
        };
        let mut estate = Estate::default();
        for g in [
            vm(serde_json::json!({"vmid": 8000, "name": "tpl", "is_template": true, "template_image": "img",
                                  "template_snapshot_name": "cloud-ready"})),
            vm(serde_json::json!({"vmid": 8001, "name": "app", "clone_from_vmid": 8000})),
            vm(
                serde_json::json!({"vmid": 8002, "name": "snap", "template_image": "img", "template_snapshot_name": "s1"}),
            ),
            vm(serde_json::json!({"vmid": 8003, "name": "of-snap", "clone_from_vmid": 8002})),
            vm(serde_json::json!({"vmid": 8004, "name": "bare", "template_image": "noble-server-cloudimg-amd64.img"})),
            vm(serde_json::json!({"vmid": 8005, "name": "volume", "template_image": "local:import/noble.qcow2"})),
        ] {
            estate.guests.insert(g.id, g);
        }
        let d = desired(&estate, &|_| Vec::new());
        let template = &d.guests[&8000];
        assert!(template.template);
        assert_eq!(template.template_snapshot, None, "a guest that becomes a template has no snapshot taken");
        assert_eq!(template.unused_snapshot.as_deref(), Some("cloud-ready"));
        assert_eq!(d.guests[&8001].source, CreateSource::Clone { source: 8000, snapshot: String::new() });
        assert_eq!(d.guests[&8002].template_snapshot.as_deref(), Some("s1"));
        assert!(!d.guests[&8002].template && d.guests[&8002].unused_snapshot.is_none());
        assert_eq!(d.guests[&8003].source, CreateSource::Clone { source: 8002, snapshot: "s1".into() });
        // A bare cloud-image name is given to the backend as its download URL; a volume as it is.
        assert_eq!(
            d.guests[&8004].source,
            CreateSource::Template(
                "https://cloud-images.ubuntu.com/noble/current/noble-server-cloudimg-amd64.img".into()
            )
        );
        assert_eq!(d.guests[&8005].source, CreateSource::Template("local:import/noble.qcow2".into()));
    }
}
