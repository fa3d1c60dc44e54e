//! Reading the most of a file that has structural errors, so that one mistake does not hide the
//! others: each value with an error that would stop the typed model from being read is left out
//! (when optional) or replaced by a stand-in of the right type; what still cannot be read is left
//! out guest by guest, or section by section. Every place repaired is remembered, and checks of it
//! are not reported again.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::diagnostic::{Code, Diagnostic, Severity};
use crate::json::Node;
use crate::path::{JsonPath, Segment};
use crate::schema::{is_removable, placeholder, required_keys};
use crate::source::FileKind;

/// How one place is repaired.
#[derive(Debug, Clone, PartialEq)]
enum Fix {
    /// Leave it out.
    Drop,
    /// Put a stand-in there.
    Set(Value),
}

/// A file's repaired content, and the places that were repaired.
pub(crate) struct Repaired {
    /// The content as JSON, repaired.
    pub value: Value,
    /// Places repaired: checks of them, or of objects holding them, are not reported.
    pub places: Vec<JsonPath>,
}

/// Errors that keep a value from being read into the typed model.
fn blocks_reading(d: &Diagnostic) -> bool {
    d.severity == Severity::Error
        && matches!(
            d.code,
            Code::WrongType | Code::MissingField | Code::UnknownKey | Code::MisplacedSection | Code::InvalidValue
        )
}

/// Repairs a parsed file given its structural diagnostics.
pub(crate) fn repair(kind: FileKind, root: &Node, diags: &[Diagnostic]) -> Repaired {
    let mut fixes: Vec<(JsonPath, Fix)> = Vec::new();
    // Keys that are left out without changing what the rest means: a key of an older
    // generation, or one of no generation. Checks of what holds them still run.
    let mut dropped: Vec<JsonPath> = Vec::new();
    for d in diags.iter().filter(|d| matches!(d.code, Code::LegacyKey | Code::UnknownKey)) {
        dropped.push(d.path.clone());
    }
    for d in diags.iter().filter(|d| blocks_reading(d) && d.code != Code::UnknownKey) {
        if d.code == Code::MissingField {
            let present: Vec<String> = match &locate_node(root, &d.path).map(|n| &n.value) {
                Some(crate::json::Value::Object(members)) => members.iter().map(|m| m.key.clone()).collect(),
                _ => Vec::new(),
            };
            for k in required_keys(kind, &d.path).into_iter().filter(|k| !present.contains(k)) {
                fixes.push(fix_for(kind, &d.path.key(k), true));
            }
        } else {
            fixes.push(fix_for(kind, &d.path, false));
        }
    }
    let mut value = root.to_serde();
    // Deepest first, so that a stand-in inside a value that is left out does no harm.
    fixes.sort_by_key(|(p, _)| std::cmp::Reverse(p.0.len()));
    for (path, fix) in &fixes {
        apply(&mut value, &path.0, fix);
    }
    for path in &dropped {
        apply(&mut value, &path.0, &Fix::Drop);
    }
    Repaired { value, places: fixes.into_iter().map(|(p, _)| p).collect() }
}

/// The fix for an error at `path`: leave it out, stand in for it, or leave out what holds it.
fn fix_for(kind: FileKind, path: &JsonPath, missing: bool) -> (JsonPath, Fix) {
    if !missing && is_removable(kind, path) {
        return (path.clone(), Fix::Drop);
    }
    if let Some(v) = placeholder(kind, path) {
        return (path.clone(), Fix::Set(v));
    }
    let mut p = path.clone();
    while p.0.pop().is_some() {
        if is_guest(&p) || is_removable(kind, &p) {
            return (p, Fix::Drop);
        }
    }
    (JsonPath::root(), Fix::Drop)
}

/// Whether a path names a whole guest: `lxc_configs["ID"]` or `vms[i]`.
pub(crate) fn is_guest(p: &JsonPath) -> bool {
    matches!(p.0.as_slice(), [Segment::Key(k), Segment::Key(_)] if k == "lxc_configs")
        || matches!(p.0.as_slice(), [Segment::Key(k), Segment::Index(_)] if k == "vms")
}

fn locate_node<'a>(root: &'a Node, path: &JsonPath) -> Option<&'a Node> {
    let mut node = root;
    for seg in &path.0 {
        node = match (seg, &node.value) {
            (Segment::Key(k), crate::json::Value::Object(_)) => &node.get(k)?.value,
            (Segment::Index(i), crate::json::Value::Array(items)) => items.get(*i)?,
            _ => return None,
        };
    }
    Some(node)
}

/// Applies a fix. A guest of `vms` that is left out becomes `null`, so that the others keep their
/// indices; [`take_vms`] skips them.
fn apply(value: &mut Value, path: &[Segment], fix: &Fix) {
    let Some((last, parents)) = path.split_last() else {
        if *fix == Fix::Drop {
            *value = Value::Object(Map::new());
        }
        return;
    };
    let mut v = value;
    for seg in parents {
        v = match (seg, v) {
            (Segment::Key(k), Value::Object(m)) => match m.get_mut(k) {
                Some(x) => x,
                None => return,
            },
            (Segment::Index(i), Value::Array(a)) => match a.get_mut(*i) {
                Some(x) => x,
                None => return,
            },
            _ => return,
        };
    }
    match (last, v, fix) {
        (Segment::Key(k), Value::Object(m), Fix::Drop) => {
            m.remove(k);
        }
        (Segment::Key(k), Value::Object(m), Fix::Set(x)) => {
            m.insert(k.clone(), x.clone());
        }
        (Segment::Index(i), Value::Array(a), fix) => {
            if let Some(slot) = a.get_mut(*i) {
                *slot = match fix {
                    Fix::Drop => Value::Null,
                    Fix::Set(x) => x.clone(),
                };
            }
        }
        _ => {}
    }
}

/// What reading a repaired file gives, and what it had to leave out.
pub(crate) struct Reader<'a> {
    pub kind: FileKind,
    /// Diagnostics of the file so far; a diagnostic is added for what is left out unexplained.
    pub diags: &'a mut Vec<Diagnostic>,
    /// Places left out, added to the repaired places.
    pub places: &'a mut Vec<JsonPath>,
}

impl Reader<'_> {
    /// Reads one value; on failure leaves it out and explains why, unless an error there is
    /// already reported.
    pub fn read<T: DeserializeOwned>(&mut self, path: JsonPath, value: Value) -> Option<T> {
        match serde_json::from_value(value) {
            Ok(v) => Some(v),
            Err(e) => {
                let explained = self.diags.iter().any(|d| d.severity == Severity::Error && d.path.starts_with(&path));
                if !explained {
                    self.diags.push(Diagnostic::error(
                        Code::InvalidValue,
                        self.kind,
                        path.clone(),
                        format!("cannot be read: {e}"),
                    ));
                }
                self.places.push(path);
                None
            }
        }
    }

    /// Reads a file's object member by member: members that cannot be read are left out.
    pub fn read_members<T: DeserializeOwned + Default>(&mut self, value: Map<String, Value>) -> T {
        if let Ok(v) = serde_json::from_value(Value::Object(value.clone())) {
            return v;
        }
        let mut kept = Map::new();
        for (k, v) in value {
            let single = Map::from_iter([(k.clone(), v.clone())]);
            if self.read::<T>(JsonPath::root().key(&k), Value::Object(single)).is_some() {
                kept.insert(k, v);
            }
        }
        self.read(JsonPath::root(), Value::Object(kept)).unwrap_or_default()
    }

    /// Takes the guests of `vms` out of a file's object, each with its index; those that cannot be
    /// read are left out.
    pub fn take_vms<T: DeserializeOwned>(&mut self, object: &mut Map<String, Value>) -> Vec<(usize, T)> {
        let Some(Value::Array(items)) = object.remove("vms") else { return Vec::new() };
        let mut out = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            if item.is_null() {
                continue;
            }
            if let Some(vm) = self.read(JsonPath::root().key("vms").index(i), item) {
                out.push((i, vm));
            }
        }
        out
    }
}
