//! Checks of one guest: template or clone source, features, GPUs, ports, health check,
//! firewall, mounts, ID maps, options, scripts and services.

use std::collections::{BTreeMap, BTreeSet};

use super::Ctx;
use crate::diagnostic::{Code, Diagnostic};
use crate::estate::{Guest, GuestSpec};
use crate::model::{Backend, FirewallRule, GuestFirewall, HealthCheck, IdKind, LxcConfig, Service, VmConfig};
use crate::net::is_hostname;
use crate::path::JsonPath;
use crate::source::FileKind;
use crate::suggest::closest;

pub(super) fn check_guest(cx: &mut Ctx<'_>, guest: &Guest) {
    let (file, base) = (guest.origin.file, &guest.origin.path);
    if !is_hostname(guest.name()) {
        cx.push(
            Diagnostic::error(
                Code::InvalidValue,
                file,
                base.key("name"),
                format!("`name` \"{}\" is not a valid host name", guest.name()),
            )
            .hint("use letters, digits and `-` (not `_` or spaces), at most 63 per dot-separated label"),
        );
    }
    check_clone_source(cx, guest);
    check_dependencies(cx, guest);
    check_features(cx, guest);
    if let Some(hc) = match &guest.spec {
        GuestSpec::Lxc(c) => c.health_check.as_ref(),
        GuestSpec::Vm(v) => v.health_check.as_ref(),
    } {
        check_health_check(cx, file, &base.key("health_check"), hc);
    }
    if let Some(fw) = match &guest.spec {
        GuestSpec::Lxc(c) => c.firewall.as_ref(),
        GuestSpec::Vm(v) => v.firewall.as_ref(),
    } {
        check_guest_firewall(cx, file, &base.key("firewall"), fw);
    }
    let services = match &guest.spec {
        GuestSpec::Lxc(c) => &c.services,
        GuestSpec::Vm(v) => &v.services,
    };
    check_services(cx, file, &base.key("services"), services);
    match &guest.spec {
        GuestSpec::Lxc(c) => check_container(cx, guest, c),
        GuestSpec::Vm(v) => check_vm(cx, guest, v),
    }
}

fn check_clone_source(cx: &mut Ctx<'_>, guest: &Guest) {
    let (file, base) = (guest.origin.file, &guest.origin.path);
    let Some(source) = guest.clone_source() else { return };
    let key = guest.clone_key();
    let path = base.key(key);
    if source == guest.id.to_string() {
        cx.push(Diagnostic::error(
            Code::CloneSource,
            file,
            path,
            format!("{} {} is cloned from itself", guest.kind_name(), guest.id),
        ));
        return;
    }
    let Some(src) = cx.guest_by_ref(&source) else {
        if cx.is_incomplete(&source) {
            return;
        }
        let mut d = Diagnostic::error(
            Code::CloneSource,
            file,
            path,
            format!("`{key}` names {source}, which is not defined in any file"),
        );
        if let Some(h) = cx.id_suggestion(&source) {
            d = d.hint(h);
        }
        cx.push(d);
        return;
    };
    if src.kind_name() != guest.kind_name() {
        cx.push(Diagnostic::error(
            Code::CloneSource,
            file,
            path,
            format!("{} {} cannot be cloned from {} {}", guest.kind_name(), guest.id, src.kind_name(), src.id),
        ));
        return;
    }
    if !src.is_clone_source() {
        let (src_file, src_path) = (src.origin.file, src.origin.path.clone());
        cx.push(
            Diagnostic::error(
                Code::CloneSource,
                file,
                path,
                format!(
                    "{} {source} ({}) is not a template: it has neither a `template_snapshot_name` to clone \
                     from nor `is_template: true`",
                    src.kind_name(),
                    src.name()
                ),
            )
            .hint(format!(
                "add \"template_snapshot_name\" (or \"is_template\": true) to {source}, or create {} from an OS \
                 template instead",
                guest.id
            ))
            .note(src_file, src_path, format!("{source} is defined here")),
        );
    }
}

fn check_dependencies(cx: &mut Ctx<'_>, guest: &Guest) {
    let (file, base) = (guest.origin.file, &guest.origin.path);
    let mut seen = BTreeSet::new();
    for (i, dep) in guest.dependencies().iter().enumerate() {
        let text = dep.as_text();
        let path = base.key("dependencies").index(i);
        if !seen.insert(text.clone()) {
            cx.push(
                Diagnostic::warning(Code::Conflict, file, path, format!("dependency {text} is listed twice"))
                    .hint("list each dependency once"),
            );
            continue;
        }
        if text == guest.id.to_string() {
            cx.push(
                Diagnostic::error(
                    Code::DependencyCycle,
                    file,
                    path,
                    format!("{} {} depends on itself", guest.kind_name(), guest.id),
                )
                .hint("remove it from `dependencies`"),
            );
        } else if cx.guest_by_ref(&text).is_none() && !cx.is_incomplete(&text) {
            let mut d = Diagnostic::error(
                Code::UnknownDependency,
                file,
                path,
                format!("dependency {text} is not defined in any file"),
            );
            if let Some(h) = cx.id_suggestion(&text) {
                d = d.hint(h);
            }
            cx.push(d);
        }
    }
}

/// Features of the guest and of the templates it is cloned from, nearest last.
fn inherited_features<'e>(cx: &Ctx<'e>, guest: &Guest) -> BTreeSet<&'e str> {
    let mut out = BTreeSet::new();
    let mut seen = BTreeSet::from([guest.id]);
    let mut current = guest.clone_source().and_then(|s| cx.guest_by_ref(&s));
    while let Some(g) = current {
        if !seen.insert(g.id) {
            break;
        }
        out.extend(g.features().iter().map(String::as_str));
        current = g.clone_source().and_then(|s| cx.guest_by_ref(&s));
    }
    out
}

fn check_features(cx: &mut Ctx<'_>, guest: &Guest) {
    let (file, base) = (guest.origin.file, &guest.origin.path);
    let catalog = cx.catalog;
    let inherited = inherited_features(cx, guest);
    let features = guest.features();
    let settings = match &guest.spec {
        crate::estate::GuestSpec::Lxc(c) => &c.feature_settings,
        crate::estate::GuestSpec::Vm(v) => &v.feature_settings,
    };
    if !settings.is_empty() {
        let used: Vec<&str> = features.iter().map(String::as_str).collect();
        super::parameters::check_settings(cx, file, &base.key("feature_settings"), settings, Some(&used));
    }
    let lxc = guest.as_lxc();
    // The guest's block, for the features' parameters: made once, only when one has any.
    let typed = features.iter().any(|f| catalog.get(f).is_some_and(|m| !m.parameters.is_empty()));
    let block = if typed { crate::feature_values::guest_block(guest) } else { serde_json::Value::Null };
    let gpus = lxc
        .and_then(|c| c.gpu_assignment.as_deref())
        .map(parse_gpus)
        .and_then(Result::ok)
        .map_or(0, |g| g.indices.len());
    for (i, name) in features.iter().enumerate() {
        let path = base.key("features").index(i);
        if features[..i].contains(name) {
            cx.push(
                Diagnostic::warning(
                    Code::Conflict,
                    file,
                    path,
                    format!("feature `{name}` is listed twice; it runs once"),
                )
                .hint("list each feature once"),
            );
            continue;
        }
        let Some(spec) = catalog.get(name) else {
            let hint = match closest(name, catalog.names()) {
                Some(c) => format!("did you mean `{c}`?"),
                None => format!(
                    "the known features are: {}; one of your own goes in features/{name}/ (feature.json and install.sh)",
                    catalog.names().collect::<Vec<_>>().join(", ")
                ),
            };
            cx.push(
                Diagnostic::error(Code::UnknownFeature, file, path, format!("no feature library provides `{name}`"))
                    .hint(hint),
            );
            continue;
        };
        super::parameters::check_feature_parameters(cx, guest, &block, spec, &path);
        for req in &spec.requires {
            if features[..i].iter().any(|f| f == req) || inherited.contains(req.as_str()) {
                continue;
            }
            let msg = if features[i..].iter().any(|f| f == req) {
                format!("feature `{name}` needs `{req}` to run before it, but `{req}` comes after it")
            } else {
                format!(
                    "feature `{name}` needs `{req}`, which neither this {} nor the template it is cloned from installs",
                    guest.kind_name()
                )
            };
            cx.push(
                Diagnostic::error(Code::FeatureRequirement, file, path.clone(), msg).hint(format!(
                    "put \"{req}\" before \"{name}\" in `features`, or clone from a template that has it"
                )),
            );
        }
        if lxc.is_none() {
            continue;
        }
        if spec.needs_gpu && gpus == 0 {
            cx.push(
                Diagnostic::error(
                    Code::FeatureRequirement,
                    file,
                    path.clone(),
                    format!("feature `{name}` needs a GPU, but the container has none assigned"),
                )
                .hint("assign GPUs with \"gpu_assignment\": \"0\" (host GPU indices), or remove the feature"),
            );
        }
        if spec.needs_nesting && cx.estate.nesting_setting(guest.id) == Some(false) {
            cx.push(
                Diagnostic::error(
                    Code::FeatureRequirement,
                    file,
                    path,
                    format!("feature `{name}` needs the container's `nesting` flag, which its configuration turns off"),
                )
                .hint(
                    "set \"nesting=1\" in `pct_options` (or \"apparmor_manages_nesting\": true), or remove the feature",
                ),
            );
        } else if spec.needs_nesting && cx.estate.nesting_turned_on.contains(&guest.id) {
            cx.push(
                Diagnostic::warning(
                    Code::FeatureRequirement,
                    file,
                    path,
                    format!(
                        "feature `{name}` needs the container's `nesting` flag, which neither the container nor \
                         the template it is cloned from sets: Phoenix turns it on (as the shell version did)"
                    ),
                )
                .hint("say so in the configuration: add \"nesting=1\" to `pct_options`, or \"apparmor_manages_nesting\": true"),
            );
        }
    }
    let Some(c) = lxc else { return };
    let has = |f: &str| features.iter().any(|x| x == f) || inherited.contains(f);
    if has("vllm") {
        // A template, or a container that gives no model, only installs vLLM: its clones, or
        // its application script, serve the model.
        if c.vllm_model().is_none() && !guest.is_clone_source() && features.iter().any(|f| f == "vllm") {
            cx.push(
                Diagnostic::warning(
                    Code::MissingField,
                    file,
                    base.clone(),
                    "feature `vllm` has no model to serve: it installs vLLM and serves nothing".to_string(),
                )
                .at_key()
                .hint(
                    "to serve one, add \"vllm_model\" (a Hugging Face model ID) or \
                     `vllm_engine_config.ModelConfig.model`",
                ),
            );
        }
        if let Some(tp) = c.vllm_tensor_parallel_size.filter(|&tp| tp as usize > gpus && gpus > 0) {
            cx.push(
                Diagnostic::error(
                    Code::FeatureRequirement,
                    file,
                    base.key("vllm_tensor_parallel_size"),
                    format!("`vllm_tensor_parallel_size` is {tp}, but only {gpus} GPU(s) are assigned"),
                )
                .hint("tensor parallelism splits the model across GPUs: use at most the number in `gpu_assignment`"),
            );
        }
        if c.vllm_gpu_memory_utilization.is_some_and(|u| u <= 0.0) {
            cx.push(
                Diagnostic::error(
                    Code::OutOfRange,
                    file,
                    base.key("vllm_gpu_memory_utilization"),
                    "`vllm_gpu_memory_utilization` must be above 0",
                )
                .hint("a fraction such as 0.9"),
            );
        }
    } else if let Some(key) = vllm_keys(c).first() {
        cx.push(
            Diagnostic::warning(
                Code::Conflict,
                file,
                base.key(*key),
                format!("`{key}` is ignored: the container does not run the `vllm` feature"),
            )
            .at_key()
            .hint("add \"vllm\" to `features`, or remove the vllm settings"),
        );
    }
    if c.portainer_role.is_some_and(|r| r != crate::model::PortainerRole::None) && !has("docker") {
        cx.push(
            Diagnostic::warning(
                Code::Conflict,
                file,
                base.key("portainer_role"),
                "`portainer_role` is ignored: the container does not run the `docker` feature",
            )
            .at_key()
            .hint("add \"docker\" to `features`, or remove `portainer_role`"),
        );
    }
}

fn vllm_keys(c: &LxcConfig) -> Vec<&'static str> {
    let set = [
        ("vllm_model", c.vllm_model.is_some()),
        ("vllm_served_model_name", c.vllm_served_model_name.is_some()),
        ("vllm_port", c.vllm_port.is_some()),
        ("vllm_args", !c.vllm_args.is_empty()),
        ("vllm_tensor_parallel_size", c.vllm_tensor_parallel_size.is_some()),
        ("vllm_gpu_memory_utilization", c.vllm_gpu_memory_utilization.is_some()),
        ("vllm_max_model_len", c.vllm_max_model_len.is_some()),
        ("vllm_engine_config", c.vllm_engine_config.is_some()),
    ];
    set.into_iter().filter(|(_, on)| *on).map(|(k, _)| k).collect()
}

/// GPU indices parsed from `gpu_assignment`.
pub(crate) struct Gpus {
    pub indices: Vec<u32>,
    /// The text had spaces around the commas.
    pub spaced: bool,
}

/// Why a value of the guests' files does not parse: the message of its diagnostic, which
/// quotes the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SyntaxError {
    /// `gpu_assignment` is not `"none"` or a list of indices.
    #[error("\"{0}\" is not \"none\" or a list of GPU indices")]
    GpuList(String),
    /// An index listed twice in `gpu_assignment`.
    #[error("GPU {index} is listed twice in \"{list}\"")]
    GpuTwice { index: u32, list: String },
    /// A port of `"host:container"` that is not 1 to 65535.
    #[error("\"{port}\" in \"{pair}\" is not a port (1 to 65535)")]
    Port { port: String, pair: String },
    /// A port forward without `:`.
    #[error("\"{0}\" is not \"host:container\"")]
    PortPair(String),
    /// A firewall rule's `dport` or `sport`.
    #[error("\"{0}\" is not a port, port range or list of ports")]
    PortList(String),
    /// A firewall rule's `source` or `dest` that is not a name.
    #[error("\"{0}\" is not an address, CIDR, range, alias or IP set")]
    AddressName(String),
    /// A firewall rule's `source` or `dest` that looks numeric and does not parse.
    #[error("\"{0}\" is not a valid address, CIDR or range")]
    Address(String),
}

/// Parses `"none"` or `"0,1"`.
pub(crate) fn parse_gpus(s: &str) -> Result<Gpus, SyntaxError> {
    if s == "none" {
        return Ok(Gpus { indices: Vec::new(), spaced: false });
    }
    let mut indices = Vec::new();
    for part in s.split(',') {
        let t = part.trim();
        let n: u32 = match t.parse() {
            Ok(n) if t.len() <= 3 && t.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return Err(SyntaxError::GpuList(s.to_string())),
        };
        if indices.contains(&n) {
            return Err(SyntaxError::GpuTwice { index: n, list: s.to_string() });
        }
        indices.push(n);
    }
    Ok(Gpus { indices, spaced: s.contains(char::is_whitespace) })
}

const CONTAINER_FLAGS: &[&str] = &["nesting", "keyctl", "fuse", "mknod", "force_rw_sys", "mount"];

fn check_container(cx: &mut Ctx<'_>, guest: &Guest, c: &LxcConfig) {
    let (file, base) = (guest.origin.file, &guest.origin.path);
    let source_incomplete = c.clone_from_ctid.as_deref().is_some_and(|s| cx.is_incomplete(s));
    if unprivileged(cx, guest, c).is_none() && !source_incomplete {
        let hint = match &c.clone_from_ctid {
            Some(src) => format!(
                "a clone keeps its source's setting, but {src} gives none either: add \"unprivileged\": true (or false) to one of them"
            ),
            None => "add \"unprivileged\": true (the safe choice) or false; only clones may leave it out".to_string(),
        };
        cx.push(
            Diagnostic::error(
                Code::MissingField,
                file,
                base.clone(),
                format!("missing required field `unprivileged` in container {}", guest.id),
            )
            .at_key()
            .hint(hint),
        );
    }
    // Template or clone.
    let defaults_template = cx.estate.hypervisor.proxmox_defaults.as_ref().and_then(|d| d.template.clone());
    match (&c.template, &c.clone_from_ctid) {
        (Some(_), Some(src)) => cx.push(
            Diagnostic::warning(Code::Conflict, file, base.key("template"), format!("`template` is ignored: the container is cloned from {src}"))
                .at_key()
                .hint("remove `template`, or remove `clone_from_ctid` to create the container from the template"),
        ),
        (None, None) if defaults_template.is_none() => cx.push(
            Diagnostic::error(Code::MissingField, file, base.clone(), format!("container {} has neither `template` nor `clone_from_ctid`", guest.id))
                .at_key()
                .hint("give an OS template (\"template\": a tarball path or volume ID) or a template container to clone (\"clone_from_ctid\")"),
        ),
        (Some(t), None) => check_template(cx, file, base.key("template"), t),
        _ => {}
    }
    // GPUs.
    if let Some(g) = &c.gpu_assignment {
        let path = base.key("gpu_assignment");
        match parse_gpus(g) {
            Err(e) => cx.push(
                Diagnostic::error(Code::GpuAssignment, file, path, e.to_string())
                    .hint("write \"none\", or host GPU indices separated by commas: \"0\" or \"0,1\""),
            ),
            Ok(gpus) if gpus.spaced => {
                let canonical: Vec<String> = gpus.indices.iter().map(ToString::to_string).collect();
                cx.push(
                    Diagnostic::warning(
                        Code::GpuAssignment,
                        file,
                        path,
                        format!("\"{g}\" has spaces; read as \"{}\"", canonical.join(",")),
                    )
                    .hint(format!("write \"{}\"", canonical.join(","))),
                );
            }
            Ok(_) => {}
        }
    }
    // Ports.
    let mut host_ports = BTreeMap::new();
    for (i, p) in c.ports.iter().enumerate() {
        let path = base.key("ports").index(i);
        match parse_port_pair(p) {
            Ok((host, _)) => {
                if let Some(first) = host_ports.insert(host, i) {
                    cx.push(
                        Diagnostic::error(Code::PortSyntax, file, path, format!("host port {host} is used twice"))
                            .hint("a host port is forwarded to one container port only")
                            .note(file, base.key("ports").index(first), "first used here"),
                    );
                }
            }
            Err(e) => cx.push(
                Diagnostic::error(Code::PortSyntax, file, path, e.to_string())
                    .hint("write \"host:container\", e.g. \"8000:8000\""),
            ),
        }
    }
    // Container options.
    for (i, o) in c.pct_options.iter().enumerate() {
        let path = base.key("pct_options").index(i);
        let Some((k, v)) = o.split_once('=') else {
            cx.push(
                Diagnostic::error(
                    Code::InvalidValue,
                    file,
                    path,
                    format!("\"{o}\" is not a `flag=value` container option"),
                )
                .hint("write flags as \"nesting=1\""),
            );
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        if !CONTAINER_FLAGS.contains(&k) {
            let hint = closest(k, CONTAINER_FLAGS.iter().copied()).map_or_else(
                || format!("known flags: {}", CONTAINER_FLAGS.join(", ")),
                |s| format!("did you mean `{s}`?"),
            );
            cx.push(
                Diagnostic::error(Code::InvalidValue, file, path, format!("unknown container flag `{k}`")).hint(hint),
            );
        } else if k != "mount" && v != "0" && v != "1" {
            cx.push(Diagnostic::error(
                Code::InvalidValue,
                file,
                path,
                format!("flag `{k}` is \"{v}\"; it takes 0 or 1"),
            ));
        }
    }
    for (i, line) in c.lxc_options.iter().enumerate() {
        let key = line.split([':', '=']).next().unwrap_or_default().trim();
        if !key.starts_with("lxc.") || key.len() == line.len() || key.contains(char::is_whitespace) {
            cx.push(
                Diagnostic::error(
                    Code::InvalidValue,
                    file,
                    base.key("lxc_options").index(i),
                    format!("\"{line}\" is not a raw `lxc.*` line"),
                )
                .hint("raw lines look like \"lxc.cgroup2.devices.allow: c 195:* rwm\""),
            );
        }
    }
    check_id_maps(cx, guest, c);
    check_mounts_and_volumes(cx, file, base, c);
    if let Some(script) = &c.application_script {
        cx.require_script(file, base.key("application_script"), script);
    }
    if let Some(Backend::Lxc(lxc)) = &cx.estate.hypervisor.backend
        && !lxc.storage.contains_key(&c.storage_pool)
    {
        cx.push(unknown_storage(file, base.key("storage_pool"), &c.storage_pool, &lxc.storage));
    }
}

fn unknown_storage(file: FileKind, path: JsonPath, name: &str, storage: &BTreeMap<String, String>) -> Diagnostic {
    let known: Vec<&str> = storage.keys().map(String::as_str).collect();
    Diagnostic::error(
        Code::UnknownReference,
        file,
        path,
        format!("storage \"{name}\" is not mapped in the backend's `storage`"),
    )
    .hint(match closest(name, known.iter().copied()) {
        Some(c) => format!("did you mean \"{c}\"?"),
        None => format!("map it to a directory in `backend.storage` (known: {})", known.join(", ")),
    })
}

fn check_template(cx: &mut Ctx<'_>, file: FileKind, path: JsonPath, template: &str) {
    check_template_dot_dot(cx, file, path.clone(), template);
    let is_volume_id = !template.starts_with('/') && template.contains(':');
    if is_volume_id {
        if let Some(Backend::Lxc(lxc)) = &cx.estate.hypervisor.backend {
            let storage = template.split(':').next().unwrap_or_default();
            if !lxc.storage.contains_key(storage) {
                cx.push(unknown_storage(file, path, storage, &lxc.storage));
            }
        }
        return;
    }
    if ![".tar.gz", ".tgz", ".tar.xz", ".tar.zst"].iter().any(|ext| template.ends_with(ext)) {
        cx.push(
            Diagnostic::error(Code::InvalidValue, file, path, format!("template \"{template}\" is not a container template"))
                .hint("give a rootfs tarball (.tar.gz, .tar.xz, .tar.zst) or a volume ID such as \"local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst\""),
        );
        return;
    }
    if cx.backend_is_local() || !template.starts_with('/') {
        cx.require_file(file, path, "template", template);
    }
}

/// Parses `"host:container"`.
fn parse_port_pair(s: &str) -> Result<(u16, u16), SyntaxError> {
    let port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| SyntaxError::Port { port: p.to_string(), pair: s.to_string() })
    };
    match s.split_once(':') {
        Some((h, c)) => Ok((port(h)?, port(c)?)),
        None => Err(SyntaxError::PortPair(s.to_string())),
    }
}

/// Whether a container runs unprivileged: its own setting, or its clone source's.
fn unprivileged(cx: &Ctx<'_>, guest: &Guest, c: &LxcConfig) -> Option<bool> {
    c.unprivileged
        .or_else(|| guest.clone_source().and_then(|s| s.parse().ok()).and_then(|s| cx.estate.unprivileged(s)))
        .or_else(|| cx.estate.hypervisor.proxmox_defaults.as_ref().and_then(|d| d.unprivileged))
}

fn check_id_maps(cx: &mut Ctx<'_>, guest: &Guest, c: &LxcConfig) {
    let (file, base) = (guest.origin.file, &guest.origin.path);
    if c.id_maps.is_empty() {
        return;
    }
    if unprivileged(cx, guest, c) == Some(false) {
        cx.push(
            Diagnostic::error(
                Code::Conflict,
                file,
                base.key("id_maps"),
                "`id_maps` only apply to unprivileged containers",
            )
            .at_key()
            .hint("set \"unprivileged\": true, or remove `id_maps`"),
        );
    }
    let mut ranges: Vec<(IdKind, u64, u64, usize)> = Vec::new();
    for (i, m) in c.id_maps.iter().enumerate() {
        let path = base.key("id_maps").index(i);
        let end = u64::from(m.container_id) + u64::from(m.size);
        if end > 65536 {
            cx.push(
                Diagnostic::error(
                    Code::OutOfRange,
                    file,
                    path.clone(),
                    format!("maps container IDs {} to {}, beyond 65535", m.container_id, end - 1),
                )
                .hint("container IDs run from 0 to 65535"),
            );
        }
        for &(kind, start, stop, j) in &ranges {
            if kind == m.kind && u64::from(m.container_id) < stop && start < end {
                cx.push(
                    Diagnostic::error(
                        Code::Conflict,
                        file,
                        path.clone(),
                        format!("{:?} range overlaps another", m.kind).to_lowercase(),
                    )
                    .note(file, base.key("id_maps").index(j), "the other range"),
                );
            }
        }
        ranges.push((m.kind, u64::from(m.container_id), end, i));
    }
}

fn check_mounts_and_volumes(cx: &mut Ctx<'_>, file: FileKind, base: &JsonPath, c: &LxcConfig) {
    for (i, m) in c.mount_points.iter().enumerate() {
        let path = base.key("mount_points").index(i);
        cx.require_absolute(file, path.key("host_path"), "host_path", &m.host_path);
        if cx.require_absolute(file, path.key("container_path"), "container_path", &m.container_path) {
            check_inside_path(cx, file, path.key("container_path"), "container_path", &m.container_path);
        }
    }
    for key in ["volumes", "zfs_volumes"] {
        let list = if key == "volumes" { &c.volumes } else { &c.zfs_volumes };
        for (i, v) in list.iter().enumerate() {
            let path = base.key(key).index(i);
            if cx.require_absolute(file, path.key("mount_point"), "mount_point", &v.mount_point) {
                check_inside_path(cx, file, path.key("mount_point"), "mount_point", &v.mount_point);
            }
            if let Some(Backend::Lxc(lxc)) = &cx.estate.hypervisor.backend
                && !lxc.storage.contains_key(&v.pool)
            {
                cx.push(unknown_storage(file, path.key("pool"), &v.pool, &lxc.storage));
            }
        }
    }
}

/// A path inside the container written with `..`: where it leads, or `None` when it climbs
/// above the container's `/` (LXC refuses to mount there).
fn inside_path(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            name => parts.push(name),
        }
    }
    Some(format!("/{}", parts.join("/")))
}

/// A path inside the container with a `..` component: an error when it climbs above `/`, a
/// warning naming the place it leads to otherwise.
fn check_inside_path(cx: &mut Ctx<'_>, file: FileKind, path: JsonPath, what: &str, value: &str) {
    if !value.split('/').any(|p| p == "..") {
        return;
    }
    cx.push(match inside_path(value) {
        None => Diagnostic::error(
            Code::PathEscape,
            file,
            path,
            format!("{what} \"{value}\" climbs above the container's `/` with `..`"),
        )
        .hint("write the path inside the container without `..`; LXC refuses to mount above its root"),
        Some(leads) => {
            Diagnostic::warning(Code::PathEscape, file, path, format!("{what} \"{value}\" has `..`: it is {leads}"))
                .hint(format!("write \"{leads}\""))
        }
    });
}

/// A template written with a `..` component: a volume ID whose file name leaves its storage's
/// template directory, or a tarball path, resolved, that the reader should see.
fn check_template_dot_dot(cx: &mut Ctx<'_>, file: FileKind, path: JsonPath, template: &str) {
    let is_volume_id = !template.starts_with('/') && template.contains(':');
    let name = if is_volume_id { template.split_once(':').map_or("", |(_, n)| n) } else { template };
    if !name.split('/').any(|p| p == "..") {
        return;
    }
    let d = if is_volume_id {
        Diagnostic::warning(
            Code::PathEscape,
            file,
            path,
            format!("template \"{template}\" has `..`: it names a file outside the storage's template directory"),
        )
        .hint(
            "name the template as the storage lists it, e.g. \"local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst\"",
        )
    } else {
        let resolved = crate::scripts::lexical(&cx.sources.resolve(template));
        Diagnostic::warning(
            Code::PathEscape,
            file,
            path,
            format!("template \"{template}\" has `..`: it is {}", resolved.display()),
        )
        .hint(format!("write \"{}\"", resolved.display()))
    };
    cx.push(d);
}

fn check_vm(cx: &mut Ctx<'_>, guest: &Guest, v: &VmConfig) {
    let (file, base) = (guest.origin.file, &guest.origin.path);
    if matches!(cx.estate.hypervisor.backend, Some(Backend::Lxc(_))) {
        cx.push(
            Diagnostic::error(
                Code::Backend,
                file,
                base.clone(),
                format!("VM {} cannot run on the local LXC backend", v.vmid),
            )
            .at_key()
            .hint("the local LXC backend runs containers only; use the Proxmox backend for VMs"),
        );
        return;
    }
    let defaults = cx.estate.vm_defaults.clone().unwrap_or_default();
    let missing: Vec<&str> = [
        ("cores", v.cores.or(defaults.cores).is_none()),
        ("memory_mb", v.memory_mb.or(defaults.memory_mb).is_none()),
        ("storage_pool", v.storage_pool.is_none() && defaults.storage_pool.is_none()),
        ("network_bridge", v.network_bridge.is_none() && defaults.network_bridge.is_none()),
    ]
    .into_iter()
    .filter(|(_, m)| *m)
    .map(|(k, _)| k)
    .collect();
    if !missing.is_empty() {
        cx.push(
            Diagnostic::error(
                Code::MissingField,
                file,
                base.clone(),
                format!("VM {} has no {} (neither its own nor in `vm_defaults`)", v.vmid, missing.join(", ")),
            )
            .at_key()
            .hint("give them in the VM or in `vm_defaults`"),
        );
    }
    if v.clone_from_vmid.is_none() && v.template_image.is_none() && defaults.template.is_none() {
        cx.push(
            Diagnostic::error(Code::MissingField, file, base.clone(), format!("VM {} has neither `template_image` nor `clone_from_vmid`", v.vmid))
                .at_key()
                .hint("give a cloud image (\"template_image\"), a template VM to clone (\"clone_from_vmid\"), or `vm_defaults.template`"),
        );
    }
    if let Some(image) = &v.template_image
        && (cx.backend_is_local() || !image.starts_with('/'))
    {
        let release = defaults.ubuntu_release.as_deref();
        let downloaded = crate::cloud_image::is_bare_name(image)
            && !cx.fs.is_file(&cx.sources.resolve(image))
            && crate::cloud_image::download_url(image, release).is_some();
        if !downloaded {
            cx.require_file(file, base.key("template_image"), "cloud image", image);
        }
    }
    if let Some(key) = v.user_config.as_ref().and_then(|u| u.ssh_public_key.as_deref()) {
        check_ssh_key(cx, file, base.key("user_config").key("ssh_public_key"), key);
    }
}

/// Checks an SSH public key; an empty one means none, as the shell version read it.
pub(super) fn check_ssh_key(cx: &mut Ctx<'_>, file: FileKind, path: JsonPath, key: &str) {
    if key.trim().is_empty() {
        return;
    }
    let kind = key.split_whitespace().next().unwrap_or_default();
    let known = kind.starts_with("ssh-") || kind.starts_with("ecdsa-sha2-") || kind.starts_with("sk-");
    if !known || key.split_whitespace().count() < 2 {
        cx.push(
            Diagnostic::error(Code::InvalidValue, file, path, "not an SSH public key")
                .hint("paste one line of a `.pub` file: \"ssh-ed25519 AAAA... user@host\" (never the private key)")
                .conceal(),
        );
    }
}

fn check_health_check(cx: &mut Ctx<'_>, file: FileKind, path: &JsonPath, hc: &HealthCheck) {
    let probes = [hc.command.is_some(), hc.http.is_some(), hc.tcp.is_some()].iter().filter(|p| **p).count();
    if probes != 1 {
        let msg = if probes == 0 { "the health check has no probe" } else { "the health check gives several probes" };
        cx.push(
            Diagnostic::error(Code::HealthCheck, file, path.clone(), msg)
                .at_key()
                .hint("give exactly one of `command`, `http` or `tcp`"),
        );
    }
    if hc.command.as_deref().is_some_and(|c| c.trim().is_empty()) {
        cx.push(
            Diagnostic::error(Code::HealthCheck, file, path.key("command"), "the health check's `command` is empty")
                .hint("a command run inside the guest, e.g. \"curl -fsS http://localhost:8000/health\""),
        );
    }
    if let Some(p) = hc.http.as_ref().and_then(|h| h.path.as_deref()).filter(|p| !p.starts_with('/')) {
        cx.push(
            Diagnostic::error(
                Code::HealthCheck,
                file,
                path.key("http").key("path"),
                format!("HTTP path \"{p}\" does not start with `/`"),
            )
            .hint(format!("write \"/{p}\"")),
        );
    }
}

fn check_guest_firewall(cx: &mut Ctx<'_>, file: FileKind, path: &JsonPath, fw: &GuestFirewall) {
    let rules = fw.rules.as_deref().unwrap_or_default();
    if fw.enabled && rules.is_empty() {
        cx.push(
            Diagnostic::error(Code::Firewall, file, path.clone(), "the firewall is enabled but has no rules")
                .at_key()
                .hint("add `rules` (e.g. {\"type\": \"in\", \"action\": \"ACCEPT\", \"proto\": \"tcp\", \"port\": \"22\"}), or set \"enabled\": false; to block everything on purpose, add an explicit DROP rule"),
        );
    }
    for (i, r) in rules.iter().enumerate() {
        check_rule(cx, file, &path.key("rules").index(i), r);
    }
}

const PROTOCOLS: &[&str] = &[
    "tcp",
    "udp",
    "udplite",
    "sctp",
    "icmp",
    "icmpv6",
    "ipv6-icmp",
    "igmp",
    "gre",
    "esp",
    "ah",
    "ospf",
    "vrrp",
    "ipip",
];
const PORT_PROTOCOLS: &[&str] = &["tcp", "udp", "udplite", "sctp"];

pub(super) fn check_rule(cx: &mut Ctx<'_>, file: FileKind, path: &JsonPath, r: &FirewallRule) {
    if let Some(proto) = &r.proto {
        let numeric = proto.parse::<u8>().is_ok();
        if !numeric && !PROTOCOLS.contains(&proto.as_str()) {
            let hint = closest(proto, PROTOCOLS.iter().copied()).map_or_else(
                || format!("allowed: {}, or a protocol number", PROTOCOLS.join(", ")),
                |c| format!("did you mean \"{c}\"?"),
            );
            cx.push(
                Diagnostic::error(
                    Code::Firewall,
                    file,
                    path.key("proto"),
                    format!("`proto` \"{proto}\" is not a protocol the firewall knows"),
                )
                .hint(hint),
            );
        }
    }
    for key in ["port", "sport"] {
        let value = if key == "port" { &r.port } else { &r.sport };
        let Some(value) = value else { continue };
        if r.proto.is_none()
            || r.proto.as_deref().is_some_and(|p| PROTOCOLS.contains(&p) && !PORT_PROTOCOLS.contains(&p))
        {
            cx.push(
                Diagnostic::error(
                    Code::Firewall,
                    file,
                    path.key(key),
                    format!("`{key}` needs `proto` tcp, udp, udplite or sctp"),
                )
                .hint("add \"proto\": \"tcp\""),
            );
        }
        if let Err(e) = parse_port_list(value) {
            cx.push(
                Diagnostic::error(Code::Firewall, file, path.key(key), e.to_string())
                    .hint("write \"22\", \"8000:8010\" or \"80,443\""),
            );
        }
    }
    for key in ["source", "dest"] {
        let value = if key == "source" { &r.source } else { &r.dest };
        if let Some(Err(e)) = value.as_deref().map(check_address_spec) {
            cx.push(
                Diagnostic::error(Code::InvalidAddress, file, path.key(key), e.to_string())
                    .hint("an address, CIDR, range \"a-b\", alias name or IP set \"+name\""),
            );
        }
    }
}

fn parse_port_list(s: &str) -> Result<(), SyntaxError> {
    for part in s.split(',') {
        let (a, b) = part.split_once(':').unwrap_or((part, part));
        let (a, b) = (a.trim().parse::<u16>(), b.trim().parse::<u16>());
        match (a, b) {
            (Ok(a), Ok(b)) if a > 0 && a <= b => {}
            _ => return Err(SyntaxError::PortList(s.to_string())),
        }
    }
    Ok(())
}

/// Source or destination of a rule: address, CIDR, range, alias, or IP set.
fn check_address_spec(s: &str) -> Result<(), SyntaxError> {
    for part in s.split(',') {
        let part = part.trim();
        let looks_numeric = part.chars().next().is_some_and(|c| c.is_ascii_digit());
        if !looks_numeric {
            let name = part.strip_prefix('+').unwrap_or(part);
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '/') {
                return Err(SyntaxError::AddressName(part.to_string()));
            }
            continue;
        }
        let ok = if part.contains('/') {
            crate::net::Cidr::parse(part).is_ok()
        } else if part.contains('-') {
            crate::net::parse_range(part).is_ok()
        } else {
            crate::net::parse_ipv4(part).is_ok()
        };
        if !ok {
            return Err(SyntaxError::Address(part.to_string()));
        }
    }
    Ok(())
}

fn check_services(cx: &mut Ctx<'_>, file: FileKind, path: &JsonPath, services: &[Service]) {
    let mut names = BTreeMap::new();
    for (i, s) in services.iter().enumerate() {
        let p = path.index(i);
        if let Some(first) = names.insert(s.name.as_str(), i) {
            cx.push(
                Diagnostic::error(
                    Code::Gateway,
                    file,
                    p.key("name"),
                    format!("service name \"{}\" is used twice in this guest", s.name),
                )
                .note(file, path.index(first), "first used here"),
            );
        }
        if s.path.is_none() && s.host.is_none() {
            cx.push(
                Diagnostic::error(Code::Gateway, file, p.clone(), format!("service \"{}\" has no route", s.name))
                    .hint("give a `path` prefix (\"/qdrant/\"), a `host` name, or both"),
            );
        }
        if let Some(route) = s.path.as_deref().filter(|r| !r.starts_with('/')) {
            cx.push(
                Diagnostic::error(
                    Code::Gateway,
                    file,
                    p.key("path"),
                    format!("path \"{route}\" does not start with `/`"),
                )
                .hint(format!("write \"/{route}\"")),
            );
        }
        if let Some(host) = s.host.as_deref().filter(|h| !is_hostname(h)) {
            cx.push(Diagnostic::error(
                Code::Gateway,
                file,
                p.key("host"),
                format!("\"{host}\" is not a valid host name"),
            ));
        }
    }
}
