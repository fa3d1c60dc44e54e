//! Structural validation of a parsed file against its JSON Schema: types, required fields,
//! unknown keys, ranges, lengths, patterns and allowed values, with every problem reported.
//!
//! It interprets the subset of JSON Schema that the generated schemas use. Messages name the
//! field and quote the value, except for secrets, which are never quoted.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;
use std::sync::{Mutex, OnceLock};

use regex::Regex;
use serde_json::Value as Schema;

use crate::diagnostic::{Code, Diagnostic};
use crate::json::{Node, Value, is_integer};
use crate::model::{PASSWORD_HASH_FORMAT, SECRET_REF_FORMAT};
use crate::path::JsonPath;
use crate::secret;
use crate::source::FileKind;
use crate::suggest::closest;

/// Checks a parsed file against its schema, appending a diagnostic for every problem.
pub(crate) fn check_structure(kind: FileKind, root: &Node, out: &mut Vec<Diagnostic>) {
    let schema = super::schema(kind);
    let checker = Checker { kind, root_schema: schema, facts: RefCell::default() };
    checker.check(root, schema, &JsonPath::root(), None, out);
}

struct Checker<'s> {
    kind: FileKind,
    root_schema: &'s Schema,
    /// What was read of each schema node met so far, by the node's address.
    facts: RefCell<HashMap<usize, Rc<Facts<'s>>, BuildHasherDefault<AddressHasher>>>,
}

/// What the checker reads of one schema node (after `$ref`s), read once per node: the values of
/// a thousand guests are checked against the same nodes, and each lookup in a schema object
/// hashes its key.
struct Facts<'s> {
    schema: &'s Schema,
    description: Option<&'s str>,
    alternatives: Option<&'s [Schema]>,
    types: Option<&'s Schema>,
    format: Option<&'s str>,
    constant: Option<&'s Schema>,
    allowed: Option<Vec<&'s str>>,
    min_items: Option<f64>,
    items: Option<&'s Schema>,
    minimum: Option<f64>,
    maximum: Option<f64>,
    min_length: Option<f64>,
    max_length: Option<f64>,
    pattern: Option<&'s str>,
    properties: Option<&'s serde_json::Map<String, Schema>>,
    additional: Option<&'s Schema>,
    required: Vec<&'s str>,
}

/// Hashes the addresses that key [`Checker::facts`] (they need no protection against collisions
/// chosen by an attacker).
#[derive(Default)]
struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

impl<'s> Checker<'s> {
    /// The facts of a schema node, read the first time it is met.
    fn facts(&self, schema: &'s Schema) -> Rc<Facts<'s>> {
        let key = std::ptr::from_ref(schema) as usize;
        if let Some(f) = self.facts.borrow().get(&key) {
            return Rc::clone(f);
        }
        let schema = self.resolve(schema);
        let str_of = |k: &str| schema.get(k).and_then(Schema::as_str);
        let f = Rc::new(Facts {
            schema,
            description: str_of("description"),
            alternatives: schema
                .get("anyOf")
                .or_else(|| schema.get("oneOf"))
                .and_then(Schema::as_array)
                .map(Vec::as_slice),
            types: schema.get("type"),
            format: str_of("format"),
            constant: schema.get("const"),
            allowed: schema
                .get("enum")
                .and_then(Schema::as_array)
                .map(|v| v.iter().filter_map(Schema::as_str).collect()),
            min_items: schema.get("minItems").and_then(Schema::as_f64),
            items: schema.get("items"),
            minimum: schema.get("minimum").and_then(Schema::as_f64),
            maximum: schema.get("maximum").and_then(Schema::as_f64),
            min_length: schema.get("minLength").and_then(Schema::as_f64),
            max_length: schema.get("maxLength").and_then(Schema::as_f64),
            pattern: str_of("pattern"),
            properties: schema.get("properties").and_then(Schema::as_object),
            additional: schema.get("additionalProperties"),
            required: schema
                .get("required")
                .and_then(Schema::as_array)
                .map(|r| r.iter().filter_map(Schema::as_str).collect())
                .unwrap_or_default(),
        });
        self.facts.borrow_mut().insert(key, Rc::clone(&f));
        f
    }

    fn resolve(&self, schema: &'s Schema) -> &'s Schema {
        let mut s = schema;
        while let Some(r) = s.get("$ref").and_then(Schema::as_str) {
            let name = r.trim_start_matches("#/$defs/");
            match self.root_schema.get("$defs").and_then(|d| d.get(name)) {
                Some(def) => s = def,
                None => break,
            }
        }
        s
    }

    fn check(&self, node: &Node, schema: &'s Schema, path: &JsonPath, doc: Option<&'s str>, out: &mut Vec<Diagnostic>) {
        let facts = self.facts(schema);
        let doc = doc.or(facts.description);
        if let Some(branches) = facts.alternatives {
            self.check_alternatives(node, branches, path, doc, out);
            return;
        }
        if let Some(types) = facts.types
            && !admits(types, &node.value)
        {
            if matches!(facts.format, Some(SECRET_REF_FORMAT | PASSWORD_HASH_FORMAT)) {
                out.push(
                    Diagnostic::error(
                        Code::WrongType,
                        self.kind,
                        path.clone(),
                        format!("{} must be a secret reference, not {}", field_name(path), node.value.kind_name()),
                    )
                    .hint(secret::REFERENCE_HINT)
                    .conceal(),
                );
            } else {
                out.push(wrong_type(self.kind, path, &expected_types(types), node, doc));
            }
            return;
        }
        let name = Name(path);
        if let Some(format) = facts.format {
            if let Value::String(s) = &node.value
                && let Some(d) = self.check_secret_format(format, s, path, &name)
            {
                out.push(d);
                return;
            }
            if let Value::Number(n) = &node.value
                && let Some(max) = integer_format_max(format)
                && n.parse::<f64>().is_ok_and(|v| v > max)
            {
                out.push(Diagnostic::error(
                    Code::OutOfRange,
                    self.kind,
                    path.clone(),
                    format!("{name} is {n}, above the largest value allowed ({max})"),
                ));
                return;
            }
        }
        if let Some(c) = facts.constant
            && node.to_serde() != *c
        {
            out.push(Diagnostic::error(Code::InvalidValue, self.kind, path.clone(), format!("{name} must be {c}")));
        }
        if let Some(allowed) = &facts.allowed {
            self.check_enum(node, allowed, path, out);
        }
        match &node.value {
            Value::Number(n) => self.check_number(n, &facts, path, &name, out),
            Value::String(s) => self.check_string(s, &facts, path, &name, doc, out),
            Value::Array(items) => {
                let count = items.len() as f64;
                if let Some(min) = facts.min_items.filter(|&m| count < m) {
                    out.push(Diagnostic::error(
                        Code::OutOfRange,
                        self.kind,
                        path.clone(),
                        format!("{name} needs at least {min} element(s), it has {count}"),
                    ));
                }
                if let Some(items_schema) = facts.items {
                    for (i, item) in items.iter().enumerate() {
                        self.check(item, items_schema, &path.index(i), None, out);
                    }
                }
            }
            Value::Object(_) => self.check_object(node, &facts, path, out),
            Value::Null | Value::Bool(_) => {}
        }
    }

    fn check_alternatives(
        &self,
        node: &Node,
        branches: &'s [Schema],
        path: &JsonPath,
        doc: Option<&'s str>,
        out: &mut Vec<Diagnostic>,
    ) {
        let resolved: Vec<Rc<Facts<'s>>> = branches.iter().map(|b| self.facts(b)).collect();
        let is_null_type = |f: &Facts<'_>| f.types.and_then(Schema::as_str) == Some("null");
        if matches!(node.value, Value::Null) && resolved.iter().any(|f| is_null_type(f)) {
            return;
        }
        let real: Vec<Rc<Facts<'s>>> = resolved.into_iter().filter(|f| !is_null_type(f)).collect();
        if let [only] = real.as_slice() {
            self.check(node, only.schema, path, doc, out);
            return;
        }
        // Unit enums with documented variants: one `const` per branch.
        let consts: Option<Vec<&str>> = real.iter().map(|f| f.constant.and_then(Schema::as_str)).collect();
        if let Some(allowed) = consts {
            if !matches!(node.value, Value::String(_)) {
                out.push(wrong_type(self.kind, path, "a string", node, doc));
                return;
            }
            self.check_enum(node, &allowed, path, out);
            return;
        }
        // Internally tagged enums: pick the branch by its `type` tag.
        let tags: Option<Vec<&str>> =
            real.iter().map(|f| f.schema.pointer("/properties/type/const").and_then(Schema::as_str)).collect();
        if let Some(tags) = tags {
            if !matches!(node.value, Value::Object(_)) {
                out.push(wrong_type(self.kind, path, "an object", node, doc));
                return;
            }
            let Some(tag) = node.get("type") else {
                out.push(
                    Diagnostic::error(
                        Code::MissingField,
                        self.kind,
                        path.clone(),
                        format!("missing required field `type` in {}", field_name(path)),
                    )
                    .at_key()
                    .hint(format!("`type` is one of: {}", tags.join(", "))),
                );
                return;
            };
            match &tag.value.value {
                Value::String(t) if tags.contains(&t.as_str()) => {
                    let i = tags.iter().position(|x| x == t).unwrap_or_default();
                    self.check(node, real[i].schema, path, doc, out);
                }
                _ => self.check_enum(&tag.value, &tags, &path.key("type"), out),
            }
            return;
        }
        let mut attempts = Vec::new();
        for branch in &real {
            let mut errs = Vec::new();
            self.check(node, branch.schema, path, doc, &mut errs);
            if errs.is_empty() {
                return;
            }
            attempts.push((branch, errs));
        }
        let fitting: Vec<_> =
            attempts.into_iter().filter(|(b, _)| b.types.is_none_or(|t| admits(t, &node.value))).collect();
        match fitting.len() {
            1 => out.extend(fitting.into_iter().flat_map(|(_, e)| e)),
            _ => {
                let expected: Vec<String> = real.iter().filter_map(|f| f.types).map(expected_types).collect();
                out.push(wrong_type(self.kind, path, &expected.join(" or "), node, doc));
            }
        }
    }

    fn check_enum(&self, node: &Node, allowed: &[&str], path: &JsonPath, out: &mut Vec<Diagnostic>) {
        let Value::String(s) = &node.value else {
            out.push(wrong_type(self.kind, path, "a string", node, None));
            return;
        };
        if allowed.contains(&s.as_str()) {
            return;
        }
        let mut d = Diagnostic::error(
            Code::InvalidValue,
            self.kind,
            path.clone(),
            format!("{} {} is not one of: {}", field_name(path), quote(s), allowed.join(", ")),
        );
        if let Some(c) = closest(s, allowed.iter().copied()) {
            d = d.hint(format!("did you mean {}?", quote(c)));
        }
        out.push(d);
    }

    fn check_number(&self, raw: &str, facts: &Facts<'_>, path: &JsonPath, name: &Name<'_>, out: &mut Vec<Diagnostic>) {
        let Ok(v) = raw.parse::<f64>() else { return };
        if let Some(min) = facts.minimum.filter(|&m| v < m) {
            out.push(Diagnostic::error(
                Code::OutOfRange,
                self.kind,
                path.clone(),
                format!("{name} is {raw}, below the minimum of {min}"),
            ));
        }
        if let Some(max) = facts.maximum.filter(|&m| v > m) {
            out.push(Diagnostic::error(
                Code::OutOfRange,
                self.kind,
                path.clone(),
                format!("{name} is {raw}, above the maximum of {max}"),
            ));
        }
    }

    fn check_string(
        &self,
        s: &str,
        facts: &Facts<'_>,
        path: &JsonPath,
        name: &Name<'_>,
        doc: Option<&str>,
        out: &mut Vec<Diagnostic>,
    ) {
        let len = s.chars().count() as f64;
        if let Some(min) = facts.min_length.filter(|&m| len < m) {
            let what = if min <= 1.0 {
                "must not be empty".to_string()
            } else {
                format!("must be at least {min} characters long")
            };
            out.push(Diagnostic::error(Code::OutOfRange, self.kind, path.clone(), format!("{name} {what}")));
        }
        if let Some(max) = facts.max_length.filter(|&m| len > m) {
            out.push(Diagnostic::error(
                Code::OutOfRange,
                self.kind,
                path.clone(),
                format!("{name} is {len} characters long, at most {max} allowed"),
            ));
        }
        if let Some(pattern) = facts.pattern
            && !pattern_matches(pattern, s)
        {
            let mut d = Diagnostic::error(
                Code::InvalidValue,
                self.kind,
                path.clone(),
                format!("{name} {} is not in the expected form", quote(s)),
            );
            if let Some(doc) = doc {
                d = d.hint(one_line(doc));
            }
            out.push(d);
        }
    }

    fn check_object(&self, node: &Node, facts: &Facts<'s>, path: &JsonPath, out: &mut Vec<Diagnostic>) {
        let Value::Object(members) = &node.value else { return };
        let (properties, additional) = (facts.properties, facts.additional);
        let mut missing: Vec<&str> = facts.required.iter().copied().filter(|r| node.get(r).is_none()).collect();
        for m in members {
            let member_path = path.key(&m.key);
            if let Some(prop) = properties.and_then(|p| p.get(&m.key)) {
                let doc = prop.get("description").and_then(Schema::as_str);
                self.check(&m.value, prop, &member_path, doc, out);
                continue;
            }
            if let Some(entry) = crate::generations::legacy_key(self.kind, path, &m.key) {
                crate::generations::legacy_key_diagnostics(self.kind, entry, &member_path, &m.value, out);
                continue;
            }
            match additional {
                Some(Schema::Bool(false)) => {
                    let d = self.unknown_key(&m.key, properties, path, &member_path);
                    // A misspelt required key explains its own absence: report it once.
                    if let Some(i) =
                        missing.iter().position(|r| d.hint.as_deref() == Some(&format!("did you mean `{r}`?")))
                    {
                        missing.remove(i);
                    }
                    out.push(d);
                }
                Some(entry @ Schema::Object(_)) => {
                    let mut errs = Vec::new();
                    self.check(&m.value, entry, &member_path, None, &mut errs);
                    if !errs.is_empty() && !path.0.is_empty() && self.root_property(&m.key) {
                        out.push(self.misplaced(&m.key, path, &member_path));
                    } else {
                        out.extend(errs);
                    }
                }
                _ => {}
            }
        }
        {
            for r in missing {
                {
                    let mut d = Diagnostic::error(
                        Code::MissingField,
                        self.kind,
                        path.clone(),
                        format!("missing required field `{r}` in {}", field_name(path)),
                    )
                    .at_key();
                    if let Some(doc) =
                        properties.and_then(|p| p.get(r)).and_then(|p| p.get("description")).and_then(Schema::as_str)
                    {
                        d = d.hint(format!("`{r}`: {}", one_line(doc)));
                    }
                    out.push(d);
                }
            }
        }
    }

    fn root_property(&self, key: &str) -> bool {
        self.root_schema.pointer("/properties").and_then(|p| p.get(key)).is_some()
    }

    fn misplaced(&self, key: &str, parent: &JsonPath, member_path: &JsonPath) -> Diagnostic {
        Diagnostic::error(
            Code::MisplacedSection,
            self.kind,
            member_path.clone(),
            format!("`{key}` is inside {}, where it is read as an entry named {}", field_name(parent), quote(key)),
        )
        .at_key()
        .hint(format!("move `{key}` to the top level of {}", self.kind))
    }

    fn unknown_key(
        &self,
        key: &str,
        properties: Option<&serde_json::Map<String, Schema>>,
        parent: &JsonPath,
        member_path: &JsonPath,
    ) -> Diagnostic {
        if !parent.0.is_empty() && self.root_property(key) {
            return self.misplaced(key, parent, member_path);
        }
        let mut d = Diagnostic::error(
            Code::UnknownKey,
            self.kind,
            member_path.clone(),
            format!("unknown key `{key}` in {}", field_name(parent)),
        )
        .at_key();
        let known: Vec<&str> =
            properties.map(|p| p.keys().map(String::as_str).filter(|k| *k != "$schema").collect()).unwrap_or_default();
        let older: Vec<&str> = crate::generations::legacy_keys_at(self.kind, parent).collect();
        // The nearer of a current key and an older generation's (the current one on a tie).
        let current = closest(key, known.iter().copied());
        let legacy = closest(key, older.iter().copied())
            .filter(|o| current.is_none_or(|c| crate::suggest::distance(key, o) < crate::suggest::distance(key, c)));
        if let Some(c) = legacy {
            d = d.hint(format!("did you mean `{c}` (a key of an older generation, not used by Phoenix)?"));
        } else if let Some(c) = current {
            d = d.hint(format!("did you mean `{c}`?"));
        } else if known.len() <= 12 {
            d = d.hint(format!("no generation of the format has it here; the keys here are: {}", known.join(", ")));
        } else {
            d = d.hint(
                "no generation of the format (August 2025 on) has this key here; the keys are listed in \
                 docs/configuration.md and `phoenix schema`",
            );
        }
        d
    }

    fn check_secret_format(&self, format: &str, s: &str, path: &JsonPath, name: &Name<'_>) -> Option<Diagnostic> {
        let problem = match format {
            SECRET_REF_FORMAT => secret::check_reference(s).err()?,
            PASSWORD_HASH_FORMAT => secret::check_password_hash(s).err()?,
            _ => return None,
        };
        let code = if problem.inline { Code::InlineSecret } else { Code::InvalidValue };
        Some(
            Diagnostic::error(code, self.kind, path.clone(), format!("{name} {}", problem.message))
                .hint(problem.hint)
                .conceal(),
        )
    }
}

fn admits(types: &Schema, value: &Value) -> bool {
    let one = |t: &str| match (t, value) {
        ("null", Value::Null) | ("boolean", Value::Bool(_)) | ("string", Value::String(_)) => true,
        ("array", Value::Array(_)) | ("object", Value::Object(_)) | ("number", Value::Number(_)) => true,
        ("integer", Value::Number(n)) => is_integer(n),
        _ => false,
    };
    match types {
        Schema::String(t) => one(t),
        Schema::Array(ts) => ts.iter().filter_map(Schema::as_str).any(one),
        _ => true,
    }
}

fn expected_types(types: &Schema) -> String {
    let name = |t: &str| match t {
        "integer" => "an integer",
        "number" => "a number",
        "string" => "a string",
        "boolean" => "a boolean (true or false)",
        "array" => "a list",
        "object" => "an object",
        _ => "null",
    };
    match types {
        Schema::String(t) => name(t).to_string(),
        Schema::Array(ts) => {
            ts.iter().filter_map(Schema::as_str).filter(|t| *t != "null").map(name).collect::<Vec<_>>().join(" or ")
        }
        _ => "a value".to_string(),
    }
}

fn wrong_type(kind: FileKind, path: &JsonPath, expected: &str, node: &Node, doc: Option<&str>) -> Diagnostic {
    let name = field_name(path);
    let mut d = Diagnostic::error(
        Code::WrongType,
        kind,
        path.clone(),
        format!("{name} must be {expected}, not {}", node.value.kind_name()),
    );
    let specific = match &node.value {
        Value::String(s) if expected.contains("integer") || expected.contains("number") => {
            s.trim().parse::<f64>().is_ok().then(|| format!("write the number without quotes: {}", s.trim()))
        }
        Value::String(s) if expected.contains("boolean") => {
            matches!(s.as_str(), "true" | "false" | "yes" | "no" | "1" | "0")
                .then(|| "write true or false, without quotes".to_string())
        }
        Value::Number(n) if expected.contains("string") => Some(format!("put it in double quotes: \"{n}\"")),
        Value::Number(n) if expected.contains("boolean") && (n == "0" || n == "1") => {
            Some("write true or false".to_string())
        }
        Value::String(_) if expected.contains("list") => Some("write a list: [\"...\"]".to_string()),
        _ => None,
    };
    if let Some(h) = specific.or_else(|| doc.map(|d| format!("{}: {}", name.trim_matches('`'), one_line(d)))) {
        d = d.hint(h);
    }
    d
}

/// A field's name for messages ([`field_name`]), worked out only when a message is written: most
/// values checked need none.
struct Name<'p>(&'p JsonPath);

impl std::fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&field_name(self.0))
    }
}

/// How a field is named in messages: its key in backquotes, or the list and index for elements.
fn field_name(path: &JsonPath) -> String {
    use crate::path::Segment;
    match path.0.as_slice() {
        [] => "the file".to_string(),
        [Segment::Key(list), Segment::Key(id)] if list == "lxc_configs" => format!("container {id}"),
        [.., Segment::Key(k)] => format!("`{k}`"),
        [.., Segment::Key(k), Segment::Index(i)] => format!("`{k}[{i}]`"),
        _ => format!("`{path}`"),
    }
}

fn quote(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

fn one_line(doc: &str) -> String {
    doc.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn integer_format_max(format: &str) -> Option<f64> {
    match format {
        "uint8" => Some(u8::MAX.into()),
        "uint16" => Some(u16::MAX.into()),
        "uint32" => Some(u32::MAX.into()),
        "int32" => Some(i32::MAX.into()),
        _ => None,
    }
}

fn pattern_matches(pattern: &str, s: &str) -> bool {
    static CACHE: OnceLock<Mutex<HashMap<String, Option<Regex>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    // Looked up before inserting, so the hot path allocates nothing.
    if !cache.contains_key(pattern) {
        cache.insert(pattern.to_string(), Regex::new(pattern).ok());
    }
    cache.get(pattern).and_then(Option::as_ref).is_none_or(|re| re.is_match(s))
}
