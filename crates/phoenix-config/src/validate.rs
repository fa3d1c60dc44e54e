//! The validation pipeline: read the directory, parse each file, check its structure against the
//! schema, build the typed estate from what is sound, run the semantic checks, find cycles, and
//! place every diagnostic on its line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::check::{Ctx, Filesystem, check_control_characters};
use crate::diagnostic::{Code, Diagnostic, LocatedNote, Location, Report, Severity};
use crate::estate::{EdgeKind, Estate, Guest, GuestId, GuestSpec, Origin};
use crate::features::Catalog;
use crate::json::{self, Document, Node, Value};
use crate::model::{HypervisorFile, LxcFile, VmConfig, VmDefaults, VmFile};
use crate::path::{JsonPath, Segment};
use crate::repair::{Reader, is_guest, repair};
use crate::schema::check_structure;
use crate::source::{FileKind, SourceFile, Sources, Span};

/// The result of validating a configuration directory.
#[derive(Debug, Clone)]
pub struct Validation {
    /// Every problem, in file and line order.
    pub reports: Vec<Report>,
    /// The validated configuration, when there is no error.
    pub estate: Option<Estate>,
    /// How many guests were read (also when there are errors).
    pub guest_count: usize,
}

impl Validation {
    /// Number of errors.
    pub fn errors(&self) -> usize {
        self.reports.iter().filter(|r| r.severity == Severity::Error).count()
    }

    /// Number of warnings.
    pub fn warnings(&self) -> usize {
        self.reports.iter().filter(|r| r.severity == Severity::Warning).count()
    }
}

/// Reads the configuration files of a directory. Missing optional files are simply absent; a
/// missing directory or hypervisor file, an unreadable file, or a file's name taken by something
/// that is not a regular file (a directory, a FIFO, a device, a link to nothing) is a diagnostic.
pub fn load(dir: &Path, fs: &dyn Filesystem) -> (Sources, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let mut files = Vec::new();
    if !fs.is_dir(dir) {
        diags.push(
            Diagnostic::directory_error(Code::Io, format!("configuration directory {} does not exist", dir.display()))
                .hint("point Phoenix at it with `-c DIR` or the PHOENIX_CONFIG_DIR environment variable"),
        );
        return (Sources::new(dir, files), diags);
    }
    for kind in FileKind::ALL {
        let path =
            if dir == Path::new(".") { Path::new(kind.file_name()).to_path_buf() } else { dir.join(kind.file_name()) };
        if !fs.is_file(&path) {
            // Something is there that is not a file: saying the file is absent (and so that
            // there are no containers) would hide the mistake. It is not opened: a FIFO blocks.
            if let Some(what) = fs.other_kind(&path) {
                diags.push(
                    Diagnostic::directory_error(Code::Io, format!("{} is {what}, not a regular file", path.display()))
                        .hint(format!(
                            "{} must be a JSON file (a link to one is fine); remove or replace what is there",
                            kind.file_name()
                        )),
                );
                continue;
            }
            if kind == FileKind::Hypervisor {
                diags.push(
                    Diagnostic::directory_error(
                        Code::Io,
                        format!("{} is missing from {}", kind.file_name(), dir.display()),
                    )
                    .hint("every configuration directory has a hypervisor file; `examples/` has complete ones"),
                );
            }
            continue;
        }
        match fs.read_to_string(&path) {
            Ok(text) => files.push(SourceFile::new(kind, path, text)),
            Err(e) => diags.push(Diagnostic::directory_error(Code::Io, format!("cannot read {}: {e}", path.display()))),
        }
    }
    (Sources::new(dir, files), diags)
}

/// Validates the files read from a directory, with the built-in features only. `early` holds
/// diagnostics from reading it.
pub fn validate(sources: &Sources, early: Vec<Diagnostic>, fs: &dyn Filesystem) -> Validation {
    validate_with(sources, early, fs, &Catalog::builtin())
}

/// Validates the files read from a directory against the features of `catalog` (the built-in
/// ones and the user's, see [`Catalog::load`]). `early` holds diagnostics from reading them.
pub fn validate_with(sources: &Sources, early: Vec<Diagnostic>, fs: &dyn Filesystem, catalog: &Catalog) -> Validation {
    let mut diags = early;
    let mut docs: BTreeMap<FileKind, Document> = BTreeMap::new();
    let mut hypervisor = HypervisorFile::default();
    let mut lxc_file = LxcFile::default();
    let mut vm_file = VmFile::default();
    let mut vm_sources: Vec<(FileKind, usize, VmConfig)> = Vec::new();
    let mut lxc_sources: Vec<(String, crate::model::LxcConfig)> = Vec::new();
    let mut sound = true;
    let mut incomplete = BTreeSet::new();
    let mut pruned_units: Vec<(FileKind, JsonPath)> = Vec::new();

    for file in &sources.files {
        let kind = file.kind;
        let mut doc = match json::parse(&file.text) {
            Ok(doc) => doc,
            Err(e) => {
                let mut d = Diagnostic::error(Code::Syntax, kind, JsonPath::root(), e.message)
                    .at_span(Span::new(e.offset, e.offset + 1));
                if let Some(h) = e.hint {
                    d = d.hint(h);
                }
                diags.push(d);
                sound = false;
                continue;
            }
        };
        let mut file_diags = Vec::new();
        for dup in &doc.duplicate_keys {
            let path = path_of_key(&doc.root, dup.again).unwrap_or_default();
            file_diags.push(
                Diagnostic::error(
                    Code::DuplicateKey,
                    kind,
                    path.clone(),
                    format!("key \"{}\" appears twice in this object; JSON readers keep only the last one", dup.key),
                )
                .at_span(dup.again)
                .hint("remove one of them, or give it another name (another ID for a guest)")
                .note_at(kind, path, dup.first, "first written here"),
            );
        }
        if !matches!(doc.root.value, Value::Object(_)) {
            file_diags.push(
                Diagnostic::error(
                    Code::WrongType,
                    kind,
                    JsonPath::root(),
                    format!("the file holds {}, not an object", doc.root.value.kind_name()),
                )
                .hint("a Phoenix configuration file holds one JSON object: `{ ... }`"),
            );
            diags.extend(file_diags);
            sound = false;
            continue;
        }
        file_diags.extend(crate::generations::upgrade(kind, &mut doc.root));
        check_structure(kind, &doc.root, &mut file_diags);
        check_control_characters(kind, &doc.root, &mut file_diags);
        let repaired = repair(kind, &doc.root, &file_diags);
        let mut places = repaired.places;
        let serde_json::Value::Object(mut object) = repaired.value else {
            diags.extend(file_diags);
            sound = false;
            continue;
        };
        let mut reader = Reader { kind, diags: &mut file_diags, places: &mut places };
        match kind {
            FileKind::Hypervisor => {
                let vms = reader.take_vms::<VmConfig>(&mut object);
                vm_sources.extend(vms.into_iter().map(|(i, v)| (kind, i, v)));
                hypervisor = reader.read_members(object);
            }
            FileKind::Lxc => {
                if let Some(serde_json::Value::Object(configs)) = object.remove("lxc_configs") {
                    for (id, value) in configs {
                        if let Some(c) = reader.read(JsonPath::root().key("lxc_configs").key(&id), value) {
                            lxc_sources.push((id, c));
                        }
                    }
                }
                lxc_file = reader.read_members(object);
            }
            FileKind::Vm => {
                let vms = reader.take_vms::<VmConfig>(&mut object);
                vm_sources.extend(vms.into_iter().map(|(i, v)| (kind, i, v)));
                vm_file = reader.read_members(object);
            }
        }
        incomplete.extend(places.iter().filter(|p| is_guest(p)).filter_map(|p| guest_id_at(&doc.root, p)));
        pruned_units.extend(places.into_iter().map(|p| (kind, p)));
        diags.extend(file_diags);
        docs.insert(kind, doc);
    }

    let mut estate = Estate {
        vm_defaults: merge_vm_defaults(vm_file.vm_defaults.as_ref(), hypervisor.vm_defaults.as_ref(), &mut diags),
        hypervisor,
        lxc_settings: lxc_file,
        guests: BTreeMap::new(),
        nesting_turned_on: BTreeSet::new(),
    };
    let mut shadowed = Vec::new();
    for (key, cfg) in lxc_sources {
        let path = JsonPath::root().key("lxc_configs").key(&key);
        let Some(id) = parse_id(&key, FileKind::Lxc, &path, &mut diags) else { continue };
        let guest = Guest { id, spec: GuestSpec::Lxc(Box::new(cfg)), origin: Origin { file: FileKind::Lxc, path } };
        shadowed.extend(add_guest(&mut estate, &mut diags, guest));
    }
    for (file, index, vm) in vm_sources {
        let path = JsonPath::root().key("vms").index(index);
        let guest = Guest { id: vm.vmid, spec: GuestSpec::Vm(Box::new(vm)), origin: Origin { file, path } };
        shadowed.extend(add_guest(&mut estate, &mut diags, guest));
    }

    let hypervisor_read = docs.contains_key(&FileKind::Hypervisor)
        && !pruned_units.iter().any(|(k, p)| *k == FileKind::Hypervisor && p.0.is_empty());
    // Containers running a feature that needs nesting, with nothing said of it: Phoenix turns it
    // on (the checks warn, the desired state writes it).
    let turned_on = estate
        .guests
        .values()
        .filter(|g| g.as_lxc().is_some() && estate.nesting_setting(g.id).is_none())
        .filter(|g| g.features().iter().any(|f| catalog.get(f).is_some_and(|m| m.needs_nesting)))
        .map(|g| g.id)
        .collect();
    estate.nesting_turned_on = turned_on;
    let feature_values = crate::feature_values::FeatureValues::new(&estate);
    let mut cx = Ctx {
        shadowed: &shadowed,
        estate: &estate,
        catalog,
        feature_values: &feature_values,
        sources,
        fs,
        incomplete,
        hypervisor_read,
        out: Vec::new(),
    };
    cx.run();
    // A check of a value that was left out, or of an object it was left out of, could only
    // report a consequence of the error already shown.
    diags.extend(cx.out.into_iter().filter(|d| {
        !pruned_units.iter().any(|(kind, unit)| {
            d.file == Some(*kind) && (d.path.starts_with(unit) || (unit.starts_with(&d.path) && !d.path.0.is_empty()))
        })
    }));
    for cycle in crate::graph::cycles(&estate) {
        let (first, _) = cycle.steps[0];
        let g = &estate.guests[&first];
        let mut d = Diagnostic::error(
            Code::DependencyCycle,
            g.origin.file,
            edge_path(g, cycle.steps[0].1, cycle.steps[1].0),
            format!("cycle: {}", cycle.describe()),
        )
        .hint("a guest cannot wait for itself: remove one of these clone or dependency edges");
        for (i, (id, kind)) in cycle.steps.iter().enumerate().skip(1) {
            let other = &estate.guests[id];
            let next = cycle.steps[(i + 1) % cycle.steps.len()].0;
            d = d.note(
                other.origin.file,
                edge_path(other, *kind, next),
                format!("{} {id} waits for {next} here", other.kind_name()),
            );
        }
        diags.push(d);
    }

    let guest_count = estate.guests.len();
    let has_error = !sound || diags.iter().any(|d| d.severity == Severity::Error);
    let reports = locate_all(diags, sources, &docs);
    Validation { reports, estate: (!has_error).then_some(estate), guest_count }
}

/// The VM defaults of both files, merged: later files give most of them in the VM file and only
/// `ubuntu_release` in the hypervisor file. A setting given in both with different values is an
/// error; the VM file's value is used.
fn merge_vm_defaults(
    vm_file: Option<&VmDefaults>,
    hypervisor: Option<&VmDefaults>,
    diags: &mut Vec<Diagnostic>,
) -> Option<VmDefaults> {
    let (vm_file, hypervisor) = match (vm_file, hypervisor) {
        (Some(v), Some(h)) => (v, h),
        (v, h) => return v.or(h).cloned(),
    };
    let as_map = |d: &VmDefaults| match serde_json::to_value(d) {
        Ok(serde_json::Value::Object(m)) => m.into_iter().filter(|(_, v)| !v.is_null()).collect(),
        _ => serde_json::Map::new(),
    };
    let mut merged = as_map(vm_file);
    for (key, value) in as_map(hypervisor) {
        match merged.get(&key) {
            Some(mine) if *mine != value => diags.push(
                Diagnostic::error(
                    Code::Conflict,
                    FileKind::Vm,
                    JsonPath::root().key("vm_defaults").key(&key),
                    format!("`vm_defaults.{key}` is {mine} here and {value} in the hypervisor file"),
                )
                .at_key()
                .hint("give each VM default in one file (phoenix_vm_configs.json)")
                .note(
                    FileKind::Hypervisor,
                    JsonPath::root().key("vm_defaults").key(&key),
                    "also given here",
                ),
            ),
            Some(_) => {}
            None => {
                merged.insert(key, value);
            }
        }
    }
    serde_json::from_value(serde_json::Value::Object(merged)).ok().or_else(|| Some(vm_file.clone()))
}

/// The ID of the guest a pruned unit holds, if the unit is a guest: its key in `lxc_configs`,
/// or the `vmid` of an element of `vms`.
fn guest_id_at(root: &Node, unit: &JsonPath) -> Option<String> {
    match unit.0.as_slice() {
        [Segment::Key(list), Segment::Key(id)] if list == "lxc_configs" => Some(id.clone()),
        [Segment::Key(list), Segment::Index(i)] if list == "vms" => match &root.get(list)?.value.value {
            Value::Array(items) => match &items.get(*i)?.get("vmid")?.value.value {
                Value::Number(n) => Some(n.clone()),
                Value::String(s) => Some(s.clone()),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}

fn parse_id(text: &str, file: FileKind, path: &JsonPath, diags: &mut Vec<Diagnostic>) -> Option<GuestId> {
    let valid = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) && !text.starts_with('0');
    match text.parse::<GuestId>().ok().filter(|id| valid && (100..=999_999_999).contains(id)) {
        Some(id) => Some(id),
        None => {
            diags.push(
                Diagnostic::error(Code::InvalidId, file, path.clone(), format!("\"{text}\" is not a guest ID"))
                    .at_key()
                    .hint("guest IDs are numbers from 100 to 999999999, written without leading zeros"),
            );
            None
        }
    }
}

/// Adds a guest to the estate; a guest whose ID is taken is reported, and returned so that its
/// own definition can still be checked.
fn add_guest(estate: &mut Estate, diags: &mut Vec<Diagnostic>, guest: Guest) -> Option<Guest> {
    if let Some(first) = estate.guests.get(&guest.id) {
        let what = if first.kind_name() == guest.kind_name() && guest.kind_name() == "VM" {
            format!("VM {} is defined twice", guest.id)
        } else {
            format!("ID {} is already used by {} {} ({})", guest.id, first.kind_name(), first.id, first.name())
        };
        diags.push(
            Diagnostic::error(Code::DuplicateId, guest.origin.file, id_path(&guest), what)
                .at_key()
                .hint(
                    "containers and VMs share one ID space: give each guest its own ID, and define each VM in one file",
                )
                .note(first.origin.file, id_path(first), "first defined here"),
        );
        return Some(guest);
    }
    estate.guests.insert(guest.id, guest);
    None
}

/// Where a guest's ID is written: its key in `lxc_configs`, or its `vmid`.
fn id_path(guest: &Guest) -> JsonPath {
    match guest.spec {
        GuestSpec::Lxc(_) => guest.origin.path.clone(),
        GuestSpec::Vm(_) => guest.origin.path.key("vmid"),
    }
}

/// Where the edge from `guest` to `target` is written: its clone source, or the dependency.
fn edge_path(guest: &Guest, kind: EdgeKind, target: GuestId) -> JsonPath {
    match kind {
        EdgeKind::Clone => guest.origin.path.key(guest.clone_key()),
        EdgeKind::Dependency => {
            let i = guest.dependencies().iter().position(|d| d.as_text() == target.to_string()).unwrap_or_default();
            guest.origin.path.key("dependencies").index(i)
        }
        // The gateway's edges come from the hypervisor file's `gateway`; the gateway guest's own
        // definition is where it waits.
        EdgeKind::Gateway => guest.origin.path.clone(),
    }
}

/// The path of the member whose key is at `span`.
fn path_of_key(node: &Node, span: Span) -> Option<JsonPath> {
    match &node.value {
        Value::Object(members) => members.iter().find_map(|m| {
            if m.key_span == span {
                Some(JsonPath::root().key(&m.key))
            } else if m.value.span.start <= span.start && span.end <= m.value.span.end {
                path_of_key(&m.value, span).map(|p| prefixed(Segment::Key(m.key.clone()), p))
            } else {
                None
            }
        }),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, n)| {
            (n.span.start <= span.start && span.end <= n.span.end)
                .then(|| path_of_key(n, span).map(|p| prefixed(Segment::Index(i), p)))
                .flatten()
        }),
        _ => None,
    }
}

fn prefixed(first: Segment, rest: JsonPath) -> JsonPath {
    let mut v = vec![first];
    v.extend(rest.0);
    JsonPath(v)
}

fn locate_all(diags: Vec<Diagnostic>, sources: &Sources, docs: &BTreeMap<FileKind, Document>) -> Vec<Report> {
    // Secrets written inline are masked wherever a line is shown.
    let concealed: Vec<(FileKind, Span)> = diags
        .iter()
        .filter(|d| d.conceal)
        .filter_map(|d| {
            let file = d.file?;
            let span = match d.span {
                Some(s) => s,
                None => d.path.locate(&docs.get(&file)?.root, false),
            };
            Some((file, span))
        })
        .collect();
    let place = |file: FileKind, path: &JsonPath, at_key: bool, span: Option<Span>| -> Option<Location> {
        let source = sources.get(file)?;
        let span = span.or_else(|| docs.get(&file).map(|d| path.locate(&d.root, at_key))).unwrap_or_default();
        Some(locate(source, path, span, &concealed))
    };
    let mut reports: Vec<Report> = diags
        .into_iter()
        .map(|d| {
            let location = d.file.and_then(|f| place(f, &d.path, d.at_key, d.span));
            let notes = d
                .notes
                .iter()
                .filter_map(|n| {
                    Some(LocatedNote { location: place(n.file, &n.path, true, n.span)?, message: n.message.clone() })
                })
                .collect();
            Report { severity: d.severity, code: d.code, location, message: d.message, hint: d.hint, notes }
        })
        .collect();
    let order = |r: &Report| {
        r.location
            .as_ref()
            .map(|l| (sources.files.iter().position(|f| f.path == l.file).unwrap_or(usize::MAX), l.line, l.column))
    };
    reports.sort_by_key(|r| order(r));
    reports
}

fn locate(source: &SourceFile, path: &JsonPath, span: Span, concealed: &[(FileKind, Span)]) -> Location {
    let (line, column) = source.line_col(span.start);
    let (end_line, end_column) = source.line_col(span.end.max(span.start + 1));
    let text = source.line_text(line);
    let width = if end_line == line {
        end_column.saturating_sub(column).max(1)
    } else {
        text.chars().count().saturating_sub(column - 1).max(1)
    };
    // Character ranges of the line to hide: values flagged as secrets, and any value of a key
    // that holds secrets (also in a file that does not parse).
    let mut hidden: Vec<(usize, usize)> = concealed
        .iter()
        .filter(|(k, _)| *k == source.kind)
        .filter_map(|(_, s)| {
            let (l, c) = source.line_col(s.start);
            let (el, ec) = source.line_col(s.end);
            (l == line).then(|| (c - 1, if el == line { ec - 1 } else { text.chars().count() }))
        })
        .collect();
    hidden.extend(secret_values(text));
    let (source_line, marker_column, width) = mask(text, column, width, hidden);
    Location { file: source.path.clone(), line, column, path: path.to_string(), source_line, marker_column, width }
}

/// Character ranges of the values of keys that hold secrets, unless the value is a reference.
fn secret_values(line: &str) -> Vec<(usize, usize)> {
    static KEYS: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = KEYS.get_or_init(|| {
        regex::Regex::new(r#""([A-Za-z0-9_]+)"\s*:\s*("(?:[^"\\]|\\.)*"?|[^,}\]\s]+)"#).expect("valid regex")
    });
    re.captures_iter(line)
        .filter(|c| {
            let key = c.get(1).map_or("", |k| k.as_str());
            crate::generations::is_secret_key(key) || matches!(key, "password_hash" | "tls_key")
        })
        .filter_map(|c| c.get(2))
        .filter(|m| {
            let inner = m.as_str().trim_matches('"');
            !(crate::secret::check_reference(inner).is_ok() || inner == "NOT_SET" || m.as_str().starts_with('{'))
        })
        .map(|m| (line[..m.start()].chars().count(), line[..m.end()].chars().count()))
        .collect()
}

/// Replaces each hidden range by `"********"` (so that not even the length shows), and moves the
/// marker's column and width to match.
fn mask(text: &str, column: usize, width: usize, mut hidden: Vec<(usize, usize)>) -> (String, usize, usize) {
    const MASK: &str = "\"********\"";
    hidden.sort_unstable();
    let chars: Vec<char> = text.chars().collect();
    let (mut out, mut pos) = (String::new(), 0);
    let (mut new_column, mut new_width) = (column, width);
    for (start, end) in hidden {
        if start < pos || end > chars.len() || start >= end {
            continue;
        }
        out.extend(&chars[pos..start]);
        out.push_str(MASK);
        let shift = MASK.len() as isize - (end - start) as isize;
        if column > end {
            new_column = (new_column as isize + shift) as usize;
        } else if column > start {
            new_column = out.chars().count() - MASK.len() + 1;
            new_width = MASK.len();
        }
        pos = end;
    }
    out.extend(&chars[pos.min(chars.len())..]);
    (out, new_column, new_width)
}
