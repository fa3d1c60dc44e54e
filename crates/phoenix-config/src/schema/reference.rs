//! The configuration reference in Markdown, generated from the schemas (and so from the types'
//! doc comments), with the diagnostic codes. Committed as `docs/reference.md`.

use std::collections::BTreeSet;
use std::fmt::Write;

use serde_json::Value;

use crate::diagnostic::Code;
use crate::source::FileKind;

/// The whole reference.
pub fn reference_markdown() -> String {
    let mut s = String::from(
        "# Configuration reference\n\nGenerated from the types by `PHOENIX_BLESS=1 cargo test -p phoenix-config --test schema_files`; \
         do not edit by hand. The guide is [configuration.md](configuration.md).\n\n",
    );
    for kind in FileKind::ALL {
        let schema = super::schema(kind);
        let _ = writeln!(s, "## `{}`\n", kind.file_name());
        let mut defs_seen = BTreeSet::new();
        let mut queue = Vec::new();
        table(&mut s, schema, schema, &mut queue);
        while let Some(name) = queue.pop() {
            if !defs_seen.insert(name.clone()) {
                continue;
            }
            let Some(def) = schema.pointer(&format!("/$defs/{name}")) else { continue };
            let _ = writeln!(s, "### {name} <a id=\"{}-{}\"></a>\n", kind.short_name(), name.to_lowercase());
            if let Some(d) = def.get("description").and_then(Value::as_str) {
                let _ = writeln!(s, "{}\n", one_line(d));
            }
            table(&mut s, schema, def, &mut queue);
        }
    }
    legacy_keys(&mut s);
    s.push_str("## Diagnostic codes\n\n| code | meaning |\n| --- | --- |\n");
    for code in Code::ALL {
        let _ = writeln!(s, "| `{}` | {} |", code.as_str(), code.description());
    }
    s
}

/// The keys of older generations, with what Phoenix does with each.
fn legacy_keys(s: &mut String) {
    use crate::generations::{Fate, LEGACY_KEYS};
    s.push_str(
        "## Keys of older generations\n\nAccepted with a `legacy-key` warning that says what Phoenix does instead \
         (see [configuration.md](configuration.md#generations-of-the-format)).\n\n\
         | file | in | key | format | what Phoenix does |\n| --- | --- | --- | --- | --- |\n",
    );
    for k in LEGACY_KEYS {
        let files: Vec<&str> = k.files.iter().map(|f| f.file_name()).collect();
        let parent = if k.parent.is_empty() { "top level".to_string() } else { format!("`{}`", k.parent) };
        let fate = match k.fate {
            Fate::NotUsed(instead) => format!("not used: {instead}"),
            Fate::Ignored => "ignored: no version of the shell read it".to_string(),
        };
        let _ = writeln!(s, "| {} | {parent} | `{}` | {} | {fate} |", files.join(", "), k.key, k.generation.label());
    }
    s.push('\n');
}

/// A table of an object's keys, or the alternatives of an enum; names of referenced definitions
/// are queued.
fn table(s: &mut String, root: &Value, def: &Value, queue: &mut Vec<String>) {
    if let Some(props) = def.get("properties").and_then(Value::as_object) {
        let required: BTreeSet<&str> = def
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        s.push_str("| key | type | required | description |\n| --- | --- | --- | --- |\n");
        for (key, prop) in props {
            if key == "$schema" {
                continue;
            }
            let desc = prop.get("description").and_then(Value::as_str).map(one_line).unwrap_or_default();
            let _ = writeln!(
                s,
                "| `{key}` | {} | {} | {} |",
                type_of(root, prop, queue),
                if required.contains(key.as_str()) { "yes" } else { "" },
                desc.replace('|', "\\|")
            );
        }
        s.push('\n');
    } else if let Some(branches) = def.get("oneOf").or_else(|| def.get("anyOf")).and_then(Value::as_array) {
        s.push_str("One of:\n\n");
        for b in branches {
            let desc = b.get("description").and_then(Value::as_str).map(one_line).unwrap_or_default();
            let _ = writeln!(s, "- {}: {desc}", type_of(root, b, queue));
            if b.get("properties").is_some() {
                s.push('\n');
                table(s, root, b, queue);
            }
        }
        s.push('\n');
    } else if let Some(values) = def.get("enum").and_then(Value::as_array) {
        let list: Vec<String> = values.iter().map(|v| format!("`{v}`")).collect();
        let _ = writeln!(s, "One of: {}\n", list.join(", "));
    }
}

/// A short description of a schema's type, linking referenced definitions.
fn type_of(root: &Value, s: &Value, queue: &mut Vec<String>) -> String {
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        let name = r.trim_start_matches("#/$defs/").to_string();
        queue.push(name.clone());
        return format!("[{name}](#{}-{})", kind_prefix(root), name.to_lowercase());
    }
    if let Some(c) = s.get("const") {
        return format!("`{c}`");
    }
    if let Some(branches) = s.get("anyOf").or_else(|| s.get("oneOf")).and_then(Value::as_array) {
        let parts: Vec<String> = branches
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) != Some("null"))
            .map(|b| type_of(root, b, queue))
            .collect();
        return parts.join(" or ");
    }
    let base = match s.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => {
            ts.iter().filter_map(Value::as_str).filter(|t| *t != "null").collect::<Vec<_>>().join(" or ")
        }
        _ => "any".to_string(),
    };
    let mut out = match base.as_str() {
        "array" => format!("list of {}", s.get("items").map_or_else(|| "any".to_string(), |i| type_of(root, i, queue))),
        "object" => match s.get("additionalProperties") {
            Some(v) if v.is_object() => format!("map of {}", type_of(root, v, queue)),
            _ => "object".to_string(),
        },
        _ => base,
    };
    let mut limits = Vec::new();
    if let Some(min) = s.get("minimum") {
        limits.push(format!("≥ {min}"));
    }
    if let Some(max) = s.get("maximum") {
        limits.push(format!("≤ {max}"));
    }
    if let Some(values) = s.get("enum").and_then(Value::as_array) {
        limits.push(values.iter().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(", "));
    }
    if !limits.is_empty() {
        let _ = write!(out, " ({})", limits.join(", "));
    }
    out
}

fn kind_prefix(root: &Value) -> &'static str {
    let title = root.get("title").and_then(Value::as_str).unwrap_or_default();
    FileKind::ALL.into_iter().find(|k| title.contains(k.file_name())).map_or("x", FileKind::short_name)
}

fn one_line(d: &str) -> String {
    d.split_whitespace().collect::<Vec<_>>().join(" ")
}
