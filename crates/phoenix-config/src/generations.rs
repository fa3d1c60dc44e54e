//! The generations of the format. The shell version's files went through several shapes
//! (August 2025 to November 2025); Phoenix reads every one of them:
//!
//! - a key of an older generation that Phoenix does not act on is accepted with a warning that
//!   says what Phoenix does instead ([`legacy_key`], code `legacy-key`); a key nothing ever
//!   read is accepted with a warning that it is ignored;
//! - a value written the way an older generation wrote it is read as the current form, with a
//!   warning ([`upgrade`], code `legacy-form`); `phoenix config upgrade` rewrites the files so.
//!
//! Only a key that belongs to no generation is an error.

use crate::diagnostic::{Code, Diagnostic};
use crate::json::{Member, Node, Value};
use crate::path::{JsonPath, Segment};
use crate::source::{FileKind, Span};

/// A generation of the format, named by when it was in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Generation {
    /// August 2025 ("v0"): `features` is a container feature string, `static_ip`,
    /// `clone_from_template_ctid`.
    V0,
    /// September 2025: feature lists, templates chained by clones, `shared_volumes`, samba
    /// `options` as a string.
    September2025,
    /// October to November 2025: `apparmor_manages_nesting`, `enable_lifecycle_snapshots`,
    /// `traefik_service`, `docker_stacks`, VM `volumes`, `core_paths` markers, nested
    /// `proxmox_defaults`, the VM file.
    Late2025,
}

impl Generation {
    /// How the generation is named in messages and docs.
    pub fn label(self) -> &'static str {
        match self {
            Generation::V0 => "Aug 2025 (v0)",
            Generation::September2025 => "Sept 2025",
            Generation::Late2025 => "Oct–Nov 2025",
        }
    }
}

/// What Phoenix does with a key of an older generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// The shell version read it; Phoenix does not act on it. The text says what Phoenix does
    /// instead.
    NotUsed(&'static str),
    /// Nothing ever read it.
    Ignored,
}

/// A key of an older generation that the current format does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegacyKey {
    /// The files it may be in.
    pub files: &'static [FileKind],
    /// Where the object holding it is: keys separated by `.`, `*` for any key or index.
    pub parent: &'static str,
    /// The key.
    pub key: &'static str,
    /// The generation that had it.
    pub generation: Generation,
    /// What Phoenix does with it.
    pub fate: Fate,
}

const HV: &[FileKind] = &[FileKind::Hypervisor];
const LXC: &[FileKind] = &[FileKind::Lxc];
const VMS: &[FileKind] = &[FileKind::Hypervisor, FileKind::Vm];

const fn key(
    files: &'static [FileKind],
    parent: &'static str,
    key: &'static str,
    generation: Generation,
    fate: Fate,
) -> LegacyKey {
    LegacyKey { files, parent, key, generation, fate }
}

use Fate::{Ignored, NotUsed};
use Generation::{Late2025, September2025, V0};

const NO_PORTAINER: Fate =
    NotUsed("Phoenix does not drive Portainer; the `docker` feature deploys it per `portainer_role`");
const NO_VM_PORTAINER: Fate = NotUsed("Phoenix sets up no Portainer in VMs; a feature or script can");
const NO_TRAEFIK: Fate = NotUsed("Phoenix routes guests through its NGINX gateway: declare the guest's `services`");
const NO_SYNC: Fate = NotUsed("Phoenix has no sync step after a guest completes");
const NO_TESTS: Fate =
    NotUsed("the shell's test suites; Phoenix checks a guest with its `health_check`, and dependents wait for it");
const NO_DOCKER_STACKS: Fate = NotUsed("Phoenix deploys no Docker stacks itself; an application script or feature can");

/// Every key of an older generation, with what Phoenix does with it.
pub const LEGACY_KEYS: &[LegacyKey] = &[
    // The hypervisor file.
    key(
        HV,
        "core_paths",
        "docker_images_path",
        September2025,
        NotUsed("Phoenix reads its files from the configuration directory"),
    ),
    key(
        HV,
        "core_paths",
        "hypervisor_marker_dir",
        September2025,
        NotUsed("Phoenix keeps no marker files on the host: it observes what is there"),
    ),
    key(
        HV,
        "core_paths",
        "hypervisor_marker",
        September2025,
        NotUsed("Phoenix keeps no marker files on the host: it observes what is there"),
    ),
    key(HV, "proxmox_defaults", "zfs_lxc_pool", September2025, NotUsed("each container names its `storage_pool`")),
    key(
        HV,
        "proxmox_defaults",
        "lxc",
        September2025,
        NotUsed("the shell's container defaults; each container gives its own settings"),
    ),
    key(
        HV,
        "",
        "domain_name",
        Late2025,
        NotUsed("Phoenix sets up no DNS domain; name hosts in the guests' `services`"),
    ),
    key(HV, "", "dns_server", Late2025, NotUsed("Phoenix sets up no DNS server")),
    key(HV, "", "portainer_api", Late2025, NO_PORTAINER),
    key(HV, "", "step_ca", Late2025, Ignored),
    key(HV, "", "tests", September2025, Ignored),
    key(HV, "network", "fallback_dns", Late2025, NotUsed("guests use the DNS servers their `network_config` gives")),
    key(
        HV,
        "network",
        "public_bridge",
        Late2025,
        NotUsed("bridges come from `network.interfaces` and each guest's `network_config`"),
    ),
    key(
        HV,
        "network",
        "internal_bridge",
        Late2025,
        NotUsed("bridges come from `network.interfaces` and each guest's `network_config`"),
    ),
    key(HV, "network", "macvlan_vlan_tag", Late2025, NotUsed("Phoenix sets no VLAN tags")),
    key(HV, "network", "public_vlan_tag", Late2025, NotUsed("Phoenix sets no VLAN tags")),
    key(HV, "zfs", "arc_max", September2025, NotUsed("write the ARC maximum as `arc_max_gb`, in GiB")),
    key(
        HV,
        "zfs.datasets.*",
        "storage_class",
        Late2025,
        NotUsed("Phoenix registers a dataset by its `proxmox_storage_type`"),
    ),
    // The containers.
    key(
        LXC,
        "lxc_configs.*",
        "enable_lifecycle_snapshots",
        Late2025,
        NotUsed("Phoenix takes no lifecycle snapshots; a template's snapshot is `template_snapshot_name`"),
    ),
    key(LXC, "lxc_configs.*", "tests", Late2025, NO_TESTS),
    key(LXC, "lxc_configs.*", "traefik_service", Late2025, NO_TRAEFIK),
    key(LXC, "lxc_configs.*", "trigger_sync_on_completion", Late2025, NO_SYNC),
    key(
        LXC,
        "lxc_configs.*",
        "bootstrap_ca_url",
        Late2025,
        NotUsed("certificates come from a feature or the application script"),
    ),
    key(LXC, "lxc_configs.*", "vllm_model_type", Late2025, NotUsed("vLLM tells the model's type itself")),
    key(LXC, "lxc_configs.*", "run_integration_tests", Late2025, NO_TESTS),
    key(LXC, "lxc_configs.*", "template_file", Late2025, NotUsed("the OS template is `template`")),
    key(
        LXC,
        "lxc_configs.*",
        "public_interface",
        Late2025,
        NotUsed("Phoenix gives a container one interface: `network_config`"),
    ),
    key(
        LXC,
        "lxc_configs.*",
        "secondary_network_config",
        Late2025,
        NotUsed("Phoenix gives a container one interface: `network_config`"),
    ),
    // Left where the current form has the value already (otherwise read as it, see `upgrade`).
    key(LXC, "lxc_configs.*", "static_ip", V0, NotUsed("the address is `network_config.ip`")),
    key(LXC, "lxc_configs.*", "clone_from_template_ctid", V0, NotUsed("the clone source is `clone_from_ctid`")),
    key(LXC, "lxc_configs.*", "vllm_parameters", September2025, Ignored),
    key(LXC, "lxc_configs.*", "vllm_quantization", September2025, Ignored),
    key(LXC, "lxc_configs.*", "vllm_trust_remote_code", September2025, Ignored),
    key(LXC, "lxc_configs.*", "integration_tests", September2025, Ignored),
    key(LXC, "lxc_configs.*", "vllm", September2025, Ignored),
    key(LXC, "lxc_configs.*", "portainer_config", September2025, Ignored),
    key(LXC, "lxc_configs.*.network_config", "hwaddr", September2025, Ignored),
    // The VMs (in the VM file, or in older hypervisor files).
    key(VMS, "vms.*", "volumes", Late2025, NotUsed("Phoenix mounts no NFS volumes in VMs; a feature or script can")),
    key(VMS, "vms.*", "docker_stacks", Late2025, NO_DOCKER_STACKS),
    key(VMS, "vms.*", "docker_compose_files", Late2025, NO_DOCKER_STACKS),
    key(VMS, "vms.*", "docker_firewall_rules", Late2025, NotUsed("the VM's rules are its `firewall`")),
    key(VMS, "vms.*", "portainer_role", Late2025, NO_VM_PORTAINER),
    key(VMS, "vms.*", "portainer_environment_name", Late2025, NO_VM_PORTAINER),
    key(VMS, "vms.*", "portainer_agent_hostname", Late2025, NO_VM_PORTAINER),
    key(VMS, "vms.*", "portainer_admin_user", Late2025, NO_VM_PORTAINER),
    key(VMS, "vms.*", "portainer_admin_password", Late2025, NO_VM_PORTAINER),
    key(VMS, "vms.*", "traefik_service", Late2025, NO_TRAEFIK),
    key(VMS, "vms.*", "trigger_sync_on_completion", Late2025, NO_SYNC),
    key(VMS, "vms.*", "dns_records", Late2025, NotUsed("Phoenix sets up no DNS server")),
    key(
        VMS,
        "vms.*",
        "snapshots",
        Late2025,
        NotUsed("Phoenix takes no snapshots around features; a template's snapshot is `template_snapshot_name`"),
    ),
    key(VMS, "vms.*", "qm_options", Late2025, NotUsed("Phoenix sets the VM's hardware from its own keys only")),
    key(VMS, "vms.*", "swarm_role", Late2025, NotUsed("Phoenix sets up no Docker Swarm")),
    key(VMS, "vms.*", "node_labels", Late2025, NotUsed("Phoenix sets up no Docker Swarm")),
    key(VMS, "vms.*", "post_create_scripts", September2025, NotUsed("Phoenix runs the VM's `features`")),
    key(VMS, "vms.*", "mount_points", September2025, Ignored),
    key(VMS, "vms.*.network_config", "nameservers", September2025, Ignored),
    key(VMS, "vms.*.user_config", "gw", September2025, Ignored),
];

/// The entry for a key of an older generation at `parent` in a file of that kind.
pub fn legacy_key(file: FileKind, parent: &JsonPath, key: &str) -> Option<&'static LegacyKey> {
    LEGACY_KEYS.iter().find(|k| k.key == key && k.files.contains(&file) && pattern_matches(k.parent, parent))
}

/// The keys of older generations that may be written at `parent`, for did-you-mean hints.
pub fn legacy_keys_at(file: FileKind, parent: &JsonPath) -> impl Iterator<Item = &'static str> {
    LEGACY_KEYS.iter().filter(move |k| k.files.contains(&file) && pattern_matches(k.parent, parent)).map(|k| k.key)
}

fn pattern_matches(pattern: &str, path: &JsonPath) -> bool {
    let parts: Vec<&str> = if pattern.is_empty() { Vec::new() } else { pattern.split('.').collect() };
    parts.len() == path.0.len()
        && parts.iter().zip(&path.0).all(|(p, seg)| match seg {
            Segment::Key(k) => *p == "*" || p == k,
            Segment::Index(_) => *p == "*",
        })
}

/// The warning for a key of an older generation (and errors for secrets written inline in its
/// value: a password is a mistake in any generation).
pub(crate) fn legacy_key_diagnostics(
    file: FileKind,
    entry: &LegacyKey,
    path: &JsonPath,
    value: &Node,
    out: &mut Vec<Diagnostic>,
) {
    let key = entry.key;
    let (message, hint) = match entry.fate {
        NotUsed(instead) => (
            format!("`{key}` ({} format) is accepted, not used by Phoenix: {instead}", entry.generation.label()),
            "remove it to silence this warning; the shell version read it, Phoenix does not",
        ),
        Ignored => (
            format!("`{key}` ({} format) is ignored: no version of the shell read it", entry.generation.label()),
            "remove it: it has no effect",
        ),
    };
    out.push(Diagnostic::warning(Code::LegacyKey, file, path.clone(), message).at_key().hint(hint));
    inline_secrets(file, path, value, out);
}

/// Whether a key names a secret (a password, token or API key), not a file holding one.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    !k.ends_with("_file")
        && !k.ends_with("_hash")
        && (k.contains("password") || k.contains("secret") || k.contains("token") || k.contains("api_key"))
}

/// Reports every string under a secret-named key that is written inline rather than as a
/// reference.
fn inline_secrets(file: FileKind, path: &JsonPath, node: &Node, out: &mut Vec<Diagnostic>) {
    let name = path.last_key().unwrap_or_default();
    match &node.value {
        Value::String(s) if is_secret_key(name) && !s.is_empty() && crate::secret::check_reference(s).is_err() => {
            out.push(
                Diagnostic::error(
                    Code::InlineSecret,
                    file,
                    path.clone(),
                    format!("`{name}` holds a secret written inline"),
                )
                .hint(format!(
                    "remove it from the file (Phoenix does not use it) and change that password: it is in the \
                     file's history; where a secret is needed, write a reference: {}",
                    crate::secret::REFERENCE_HINT
                ))
                .conceal(),
            );
        }
        Value::Object(members) => {
            for m in members {
                inline_secrets(file, &path.key(&m.key), &m.value, out);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                inline_secrets(file, &path.index(i), item, out);
            }
        }
        _ => {}
    }
}

/// Rewrites the values an older generation wrote differently into the current form, in place,
/// with a warning for each (none where the old form means exactly what the new one says, such
/// as empty ZFS properties). What cannot be rewritten is left for the structural check.
pub fn upgrade(kind: FileKind, root: &mut Node) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    match kind {
        FileKind::Hypervisor => {
            upgrade_shared_firewall(root, &mut out);
            upgrade_samba(root, &mut out);
            upgrade_zfs(root, &mut out);
        }
        FileKind::Lxc => {
            let Some(configs) = member_mut(root, "lxc_configs") else { return out };
            if let Value::Object(guests) = &mut configs.value.value {
                for guest in guests.iter_mut() {
                    let base = JsonPath::root().key("lxc_configs").key(&guest.key);
                    upgrade_container(&base, &mut guest.value, &mut out);
                }
            }
        }
        FileKind::Vm => {}
    }
    out
}

/// A file rewritten in the current form.
#[derive(Debug, Clone, PartialEq)]
pub struct Upgraded {
    /// The new text: the original, changed only where an older form was.
    pub text: String,
    /// What changed, one line each.
    pub changes: Vec<String>,
}

/// Why a file cannot be rewritten in the current form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpgradeError {
    /// The file is not JSON.
    #[error("{}", .0.message)]
    Syntax(crate::json::SyntaxError),
    /// An older form contradicts the current one, so that one of them would be lost.
    #[error("{path}: {message}")]
    Contradiction {
        /// Where.
        path: JsonPath,
        /// How.
        message: String,
    },
}

/// Rewrites a file's text in the current form (what [`upgrade`] reads it as), keeping
/// everything else as written, keys of older generations included. `Ok(None)` when the file is
/// already in the current form; an error when it does not parse, or holds an older form that
/// contradicts the current one (nothing can be rewritten without losing one of them).
pub fn upgrade_text(kind: FileKind, text: &str) -> Result<Option<Upgraded>, UpgradeError> {
    let mut doc = crate::json::parse(text).map_err(UpgradeError::Syntax)?;
    let diags = upgrade(kind, &mut doc.root);
    if let Some(e) = diags.iter().find(|d| d.severity == crate::diagnostic::Severity::Error) {
        return Err(UpgradeError::Contradiction { path: e.path.clone(), message: e.message.clone() });
    }
    if diags.is_empty() {
        return Ok(None);
    }
    let text = crate::json::render_like(&doc.root, text);
    Ok(Some(Upgraded { text, changes: diags.into_iter().map(|d| format!("{}: {}", d.path, d.message)).collect() }))
}

fn legacy_form(file: FileKind, path: JsonPath, span: Span, message: String) -> Diagnostic {
    Diagnostic::warning(Code::LegacyForm, file, path, message)
        .at_span(span)
        .hint("`phoenix config upgrade` rewrites the files in the current form, losing nothing")
}

/// `shared_volumes.firewall` is the host firewall (where the shell read it from October 2025),
/// unless the file also has a top-level `firewall`.
fn upgrade_shared_firewall(root: &mut Node, out: &mut Vec<Diagnostic>) {
    if root.get("firewall").is_some() {
        return;
    }
    let Some(shared) = member_mut(root, "shared_volumes") else { return };
    let Value::Object(volumes) = &mut shared.value.value else { return };
    let Some(i) = volumes.iter().rposition(|m| m.key == "firewall" && looks_like_firewall(&m.value)) else { return };
    let firewall = volumes.remove(i);
    out.push(legacy_form(
        FileKind::Hypervisor,
        JsonPath::root().key("firewall"),
        firewall.key_span,
        "`firewall` inside `shared_volumes` is read as the host firewall, as the shell version read it".to_string(),
    ));
    if let Value::Object(members) = &mut root.value {
        members.push(firewall);
    }
}

fn looks_like_firewall(node: &Node) -> bool {
    node.get("host_path").is_none() && node.get("mounts").is_none()
}

/// Samba shares: a `path` without a leading `/` is `/path` (the shell wrote `path = /$path`);
/// `options` written as a string of `key=value` words becomes an object.
fn upgrade_samba(root: &mut Node, out: &mut Vec<Diagnostic>) {
    let Some(samba) = member_mut(root, "samba") else { return };
    let Some(shares) = member_mut(&mut samba.value, "shares") else { return };
    let Value::Array(items) = &mut shares.value.value else { return };
    for (i, share) in items.iter_mut().enumerate() {
        let base = JsonPath::root().key("samba").key("shares").index(i);
        if let Some(path) = member_mut(share, "path")
            && let Value::String(p) = &mut path.value.value
            && !p.is_empty()
            && !p.starts_with('/')
        {
            let absolute = format!("/{p}");
            out.push(legacy_form(
                FileKind::Hypervisor,
                base.key("path"),
                path.value.span,
                format!("share path \"{p}\" is read as \"{absolute}\", as the shell version read it"),
            ));
            *p = absolute;
        }
        if let Some(options) = member_mut(share, "options")
            && let Value::String(text) = &options.value.value
        {
            let Some(pairs) = parse_options(text) else { continue };
            let span = options.value.span;
            let shown = pairs.iter().map(|(k, v)| format!("{k} = {v}")).collect::<Vec<_>>().join(", ");
            out.push(legacy_form(
                FileKind::Hypervisor,
                base.key("options"),
                span,
                format!("share options written as a string are read as smb.conf options: {shown}"),
            ));
            options.value.value = Value::Object(
                pairs
                    .into_iter()
                    .map(|(k, v)| Member { key: k, key_span: span, value: Node { span, value: Value::String(v) } })
                    .collect(),
            );
        }
    }
}

/// `"browseable=yes writable=yes"` (words, or comma-separated) as key/value pairs; `None` when a
/// word is not `key=value`.
fn parse_options(text: &str) -> Option<Vec<(String, String)>> {
    text.split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
        .map(|w| w.split_once('=').map(|(k, v)| (k.trim().to_string(), v.trim().to_string())))
        .collect::<Option<Vec<_>>>()
        .filter(|pairs| pairs.iter().all(|(k, _)| !k.is_empty()))
}

/// ZFS datasets: `properties: ""` means none; properties written as an object (September 2025)
/// become `key=value,key=value`.
fn upgrade_zfs(root: &mut Node, out: &mut Vec<Diagnostic>) {
    let Some(zfs) = member_mut(root, "zfs") else { return };
    let Some(datasets) = member_mut(&mut zfs.value, "datasets") else { return };
    let Value::Array(items) = &mut datasets.value.value else { return };
    for (i, dataset) in items.iter_mut().enumerate() {
        let Value::Object(members) = &mut dataset.value else { continue };
        let Some(at) = members.iter().rposition(|m| m.key == "properties") else { continue };
        let path = JsonPath::root().key("zfs").key("datasets").index(i).key("properties");
        match &members[at].value.value {
            Value::String(s) if s.trim().is_empty() => {
                members.remove(at);
            }
            Value::Object(props) => {
                let Some(pairs) = props
                    .iter()
                    .map(|m| scalar_text(&m.value).map(|v| format!("{}={v}", m.key)))
                    .collect::<Option<Vec<_>>>()
                else {
                    continue;
                };
                let text = pairs.join(",");
                let span = members[at].value.span;
                out.push(legacy_form(
                    FileKind::Hypervisor,
                    path,
                    span,
                    format!("ZFS properties written as an object are read as \"{text}\""),
                ));
                members[at].value.value = Value::String(text);
            }
            _ => {}
        }
    }
}

fn scalar_text(node: &Node) -> Option<String> {
    match &node.value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.clone()),
        Value::Bool(b) => Some(if *b { "on" } else { "off" }.to_string()),
        _ => None,
    }
}

/// A container of an older generation: `features` as a feature-flag string (v0),
/// `clone_from_template_ctid` (v0), `static_ip` (v0), `network_config.nameserver`.
fn upgrade_container(base: &JsonPath, guest: &mut Node, out: &mut Vec<Diagnostic>) {
    let file = FileKind::Lxc;
    let Value::Object(members) = &mut guest.value else { return };
    // v0: `"features": "nesting=1,keyctl=1"` were the container's feature flags.
    if let Some(at) = members.iter().rposition(|m| m.key == "features")
        && let Value::String(flags) = &members[at].value.value
        && flags.split(',').all(|f| f.contains('='))
    {
        let span = members[at].value.span;
        let flags: Vec<String> =
            flags.split(',').map(str::trim).filter(|f| !f.is_empty()).map(str::to_string).collect();
        out.push(legacy_form(
            file,
            base.key("pct_options"),
            span,
            format!(
                "`features` written as a string (the v0 format) holds container feature flags: read as \
                 `pct_options` {}",
                serde_json::to_string(&flags).unwrap_or_default()
            ),
        ));
        members.remove(at);
        let strings = |flags: Vec<String>| flags.into_iter().map(|f| Node { span, value: Value::String(f) });
        match members.iter_mut().rfind(|m| m.key == "pct_options") {
            Some(existing) => {
                if let Value::Array(items) = &mut existing.value.value {
                    items.extend(strings(flags));
                }
            }
            None => members.push(Member {
                key: "pct_options".to_string(),
                key_span: span,
                value: Node { span, value: Value::Array(strings(flags).collect()) },
            }),
        }
    }
    rename(members, "clone_from_template_ctid", "clone_from_ctid", base, file, out);
    if let Some(at) = members.iter().rposition(|m| m.key == "static_ip") {
        let ip = members[at].value.clone();
        let span = members[at].key_span;
        if let Some(net) = members.iter_mut().rfind(|m| m.key == "network_config")
            && let Value::Object(net_members) = &mut net.value.value
        {
            match net_members.iter().rfind(|m| m.key == "ip").map(|m| m.value.value.clone()) {
                None => {
                    net_members.push(Member { key: "ip".to_string(), key_span: span, value: ip });
                    out.push(legacy_form(
                        file,
                        base.key("static_ip"),
                        span,
                        "`static_ip` (the v0 format) is read as `network_config.ip`".to_string(),
                    ));
                    members.remove(at);
                }
                Some(same) if same == ip.value => {
                    out.push(legacy_form(
                        file,
                        base.key("static_ip"),
                        span,
                        "`static_ip` (the v0 format) repeats `network_config.ip`: it is left out".to_string(),
                    ));
                    members.remove(at);
                }
                Some(_) => {
                    out.push(
                        Diagnostic::error(
                            Code::Conflict,
                            file,
                            base.key("static_ip"),
                            "`static_ip` (the v0 format) differs from `network_config.ip`",
                        )
                        .at_key()
                        .hint("keep the address in `network_config.ip` and remove `static_ip`"),
                    );
                    members.remove(at);
                }
            }
        }
    }
    if let Some(net) = members.iter_mut().rfind(|m| m.key == "network_config")
        && let Value::Object(net_members) = &mut net.value.value
    {
        rename(net_members, "nameserver", "nameservers", &base.key("network_config"), file, out);
    }
}

/// Renames a key whose new name is not also written.
fn rename(members: &mut [Member], old: &str, new: &str, base: &JsonPath, file: FileKind, out: &mut Vec<Diagnostic>) {
    if members.iter().any(|m| m.key == new) {
        return;
    }
    if let Some(m) = members.iter_mut().rfind(|m| m.key == old) {
        out.push(legacy_form(file, base.key(new), m.key_span, format!("`{old}` (an older name) is read as `{new}`")));
        m.key = new.to_string();
    }
}

fn member_mut<'a>(node: &'a mut Node, key: &str) -> Option<&'a mut Member> {
    match &mut node.value {
        Value::Object(members) => members.iter_mut().rfind(|m| m.key == key),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_matches_keys_indices_and_wildcards() {
        let guest = JsonPath::root().key("lxc_configs").key("950");
        assert!(pattern_matches("lxc_configs.*", &guest));
        assert!(!pattern_matches("lxc_configs", &guest));
        assert!(pattern_matches("vms.*", &JsonPath::root().key("vms").index(3)));
        assert!(pattern_matches("", &JsonPath::root()));
        assert!(!pattern_matches("", &guest));
    }

    #[test]
    fn legacy_keys_are_found_only_where_their_generation_wrote_them() {
        let guest = JsonPath::root().key("lxc_configs").key("950");
        assert!(legacy_key(FileKind::Lxc, &guest, "enable_lifecycle_snapshots").is_some());
        assert!(legacy_key(FileKind::Lxc, &JsonPath::root(), "enable_lifecycle_snapshots").is_none());
        assert!(legacy_key(FileKind::Hypervisor, &guest, "enable_lifecycle_snapshots").is_none());
        let vm = JsonPath::root().key("vms").index(0);
        assert!(legacy_key(FileKind::Vm, &vm, "docker_stacks").is_some());
        assert!(legacy_key(FileKind::Hypervisor, &vm, "docker_stacks").is_some());
        assert!(legacy_key(FileKind::Vm, &vm, "no_such_key").is_none());
    }

    #[test]
    fn every_legacy_key_is_listed_once() {
        for (i, a) in LEGACY_KEYS.iter().enumerate() {
            for b in &LEGACY_KEYS[i + 1..] {
                assert!(
                    !(a.key == b.key && a.parent == b.parent && a.files.iter().any(|f| b.files.contains(f))),
                    "{} at {} is listed twice",
                    a.key,
                    a.parent
                );
            }
        }
    }

    #[test]
    fn secret_keys_are_told_from_files_and_hashes() {
        assert!(is_secret_key("admin_password"));
        assert!(is_secret_key("portainer_admin_password"));
        assert!(is_secret_key("api_key"));
        assert!(!is_secret_key("hf_token_file"));
        assert!(!is_secret_key("password_hash"));
        assert!(!is_secret_key("admin_user"));
    }

    #[test]
    fn samba_options_parse_as_words_of_key_and_value() {
        assert_eq!(
            parse_options("browseable=yes writable=yes"),
            Some(vec![("browseable".into(), "yes".into()), ("writable".into(), "yes".into())])
        );
        assert_eq!(parse_options("read only=no"), None);
        assert_eq!(parse_options(""), Some(vec![]));
    }

    fn upgraded(kind: FileKind, text: &str) -> (serde_json::Value, Vec<Diagnostic>) {
        let mut doc = crate::json::parse(text).expect("valid JSON");
        let diags = upgrade(kind, &mut doc.root);
        (doc.root.to_serde(), diags)
    }

    #[test]
    fn a_v0_container_is_read_in_the_current_form() {
        let (value, diags) = upgraded(
            FileKind::Lxc,
            r#"{"lxc_configs": {"900": {"features": "nesting=1,keyctl=1", "clone_from_template_ctid": "800",
                "static_ip": "10.0.0.5/24", "network_config": {"ip": "10.0.0.5/24", "nameserver": "10.0.0.1"}}}}"#,
        );
        let c = &value["lxc_configs"]["900"];
        assert_eq!(c["pct_options"], serde_json::json!(["nesting=1", "keyctl=1"]));
        assert!(c.get("features").is_none() && c.get("static_ip").is_none());
        assert_eq!(c["clone_from_ctid"], "800");
        assert_eq!(c["network_config"]["nameservers"], "10.0.0.1");
        assert_eq!(diags.len(), 4, "{diags:#?}");
        assert!(diags.iter().all(|d| d.code == Code::LegacyForm));
    }

    #[test]
    fn a_static_ip_that_differs_from_the_interface_is_an_error() {
        let (_, diags) = upgraded(
            FileKind::Lxc,
            r#"{"lxc_configs": {"900": {"static_ip": "10.0.0.6/24", "network_config": {"ip": "10.0.0.5/24"}}}}"#,
        );
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].code, Code::Conflict);
        assert_eq!(diags[0].severity, crate::diagnostic::Severity::Error);
    }

    #[test]
    fn host_sections_of_older_generations_are_read_in_the_current_form() {
        let (value, diags) = upgraded(
            FileKind::Hypervisor,
            r#"{"samba": {"shares": [{"name": "a", "path": "tank/a", "options": "browseable=yes writable=yes"}]},
                "zfs": {"datasets": [{"name": "a", "pool": "p", "properties": ""},
                                     {"name": "b", "pool": "p", "properties": {"compression": "lz4", "atime": false}}]},
                "shared_volumes": {"firewall": {"enabled": true}}}"#,
        );
        assert_eq!(value["samba"]["shares"][0]["path"], "/tank/a");
        assert_eq!(value["samba"]["shares"][0]["options"], serde_json::json!({"browseable": "yes", "writable": "yes"}));
        assert!(value["zfs"]["datasets"][0].get("properties").is_none());
        assert_eq!(value["zfs"]["datasets"][1]["properties"], "compression=lz4,atime=off");
        assert_eq!(value["firewall"], serde_json::json!({"enabled": true}));
        assert!(value["shared_volumes"].get("firewall").is_none());
        // Empty properties say what the current form says: no warning for them.
        assert_eq!(diags.len(), 4, "{diags:#?}");
    }

    #[test]
    fn an_upgraded_file_differs_from_its_original_only_where_an_older_form_was() {
        let original = "{\n    \"lxc_configs\": {\n        \"900\": {\n            \"name\": \"base\",\n            \"memory_mb\": 2048,\n            \"ratio\": 0.90,\n            \"features\": \"nesting=1,keyctl=1\",\n            \"network_config\": { \"ip\": \"10.0.0.5/24\" },\n            \"enable_lifecycle_snapshots\": true\n        }\n    }\n}\n";
        let up = upgrade_text(FileKind::Lxc, original).expect("parses").expect("changed");
        let expected = original.replace(
            "\"features\": \"nesting=1,keyctl=1\",\n            \"network_config\": { \"ip\": \"10.0.0.5/24\" },\n            \"enable_lifecycle_snapshots\": true",
            "\"network_config\": { \"ip\": \"10.0.0.5/24\" },\n            \"enable_lifecycle_snapshots\": true,\n            \"pct_options\": [\n                \"nesting=1\",\n                \"keyctl=1\"\n            ]",
        );
        assert_eq!(up.text, expected);
        assert_eq!(up.changes.len(), 1);
        // The key of an older generation is kept; the number keeps its spelling.
        assert!(up.text.contains("enable_lifecycle_snapshots") && up.text.contains("0.90"));
        // Upgrading again changes nothing.
        assert_eq!(upgrade_text(FileKind::Lxc, &up.text), Ok(None));
    }

    #[test]
    fn a_file_whose_older_form_contradicts_the_current_one_is_not_rewritten() {
        let text = r#"{"lxc_configs": {"900": {"static_ip": "10.0.0.6/24", "network_config": {"ip": "10.0.0.5/24"}}}}"#;
        let err = upgrade_text(FileKind::Lxc, text).expect_err("refused").to_string();
        assert!(err.contains("differs from `network_config.ip`"), "{err}");
    }

    #[test]
    fn a_top_level_firewall_keeps_the_nested_one_where_it_is() {
        let (value, diags) = upgraded(
            FileKind::Hypervisor,
            r#"{"firewall": {"enabled": false}, "shared_volumes": {"firewall": {"enabled": true}}}"#,
        );
        assert_eq!(value["firewall"]["enabled"], false);
        assert!(value["shared_volumes"].get("firewall").is_some());
        assert!(diags.is_empty());
    }
}
