//! Control characters in values. Almost every text of the files ends up on one line of a
//! configuration file (an `lxc.mount.entry`, a Proxmox property string, `smb.conf`, an NGINX
//! site) or names a path: a newline there starts a line the author never wrote (a mount path
//! that smuggles `lxc.apparmor.profile = unconfined` past a review), and a tab or NUL names a
//! file no one can type. They are refused wherever they appear, keys included.

use crate::diagnostic::{Code, Diagnostic, Severity};
use crate::json::{Node, Value};
use crate::path::{JsonPath, Segment};
use crate::source::FileKind;

/// Reports every key and string value of a parsed file that holds a control character (below
/// U+0020, or U+007F), except where the structural check already reported an error for the
/// same place and the values that are not written anywhere (a health check's shell command,
/// which may span lines).
pub(crate) fn check_control_characters(kind: FileKind, root: &Node, out: &mut Vec<Diagnostic>) {
    // Most files have none: found without building a path for every value.
    if !holds_control(root) {
        return;
    }
    let mut found = Vec::new();
    walk(kind, root, &JsonPath::root(), &mut found);
    let reported = |d: &Diagnostic| {
        out.iter()
            .any(|o| o.severity == Severity::Error && o.file == d.file && o.path == d.path && o.at_key == d.at_key)
    };
    let fresh: Vec<Diagnostic> = found.into_iter().filter(|d| !reported(d)).collect();
    out.extend(fresh);
}

/// Whether any key or string value below `node` holds a control character.
fn holds_control(node: &Node) -> bool {
    let text = |t: &str| t.chars().any(is_control);
    match &node.value {
        Value::String(s) => text(s),
        Value::Array(items) => items.iter().any(holds_control),
        Value::Object(members) => members.iter().any(|m| text(&m.key) || holds_control(&m.value)),
        _ => false,
    }
}

fn walk(kind: FileKind, node: &Node, path: &JsonPath, out: &mut Vec<Diagnostic>) {
    match &node.value {
        Value::String(s) if !may_span_lines(path) => {
            if let Some(d) = control_character(kind, path, s, false) {
                out.push(d);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(kind, item, &path.index(i), out);
            }
        }
        Value::Object(members) => {
            for m in members {
                let inner = path.key(&m.key);
                if let Some(d) = control_character(kind, &inner, &m.key, true) {
                    out.push(d);
                }
                walk(kind, &m.value, &inner, out);
            }
        }
        _ => {}
    }
}

/// A health check's `command` runs as a shell script inside the guest and is written nowhere.
fn may_span_lines(path: &JsonPath) -> bool {
    matches!(path.0.as_slice(), [.., Segment::Key(parent), Segment::Key(key)] if parent == "health_check" && key == "command")
}

/// The diagnostic for the first control character of `text`, if it has one. The text itself is
/// not quoted: it may be a secret, and a newline in it would break the message's own line.
fn control_character(kind: FileKind, path: &JsonPath, text: &str, is_key: bool) -> Option<Diagnostic> {
    let (at, c) = text.chars().enumerate().find(|(_, c)| is_control(*c))?;
    let what = if is_key { "this key" } else { "this value" };
    let d = Diagnostic::error(
        Code::ControlCharacter,
        kind,
        path.clone(),
        format!("{what} holds {} at character {}", describe(c), at + 1),
    )
    .hint(
        "values are written on one line of a configuration file or used as paths: remove the character \
         (in JSON, escapes such as `\\n`, `\\t` and `\\u0000` write one)",
    );
    Some(if is_key { d.at_key() } else { d })
}

/// Whether a character is an ASCII control character (C0 or DEL).
fn is_control(c: char) -> bool {
    (c as u32) < 0x20 || c == '\u{7f}'
}

fn describe(c: char) -> String {
    let name = match c {
        '\n' => " (a newline)",
        '\r' => " (a carriage return)",
        '\t' => " (a tab)",
        '\0' => " (NUL)",
        '\u{7f}' => " (DEL)",
        _ => "",
    };
    format!("the control character U+{:04X}{name}", c as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Vec<(String, bool, String)> {
        let doc = crate::json::parse(text).expect("valid JSON");
        let mut out = Vec::new();
        check_control_characters(FileKind::Lxc, &doc.root, &mut out);
        out.into_iter().map(|d| (d.path.to_string(), d.at_key, d.message)).collect()
    }

    #[test]
    fn finds_control_characters_in_values_and_keys_at_any_depth() {
        let found = check(
            r#"{"lxc_configs": {"950": {"mount_points": [{"host_path": "/srv/a\nlxc.environment = X=1", "container_path": "/mnt/x"}],
                 "tags": ["ok", "t\tab"], "lxc_options": ["lxc.cap.drop = sys_admin\u0000"], "hostname\r": "h", "template": "del\u007f"}}}"#,
        );
        assert_eq!(
            found,
            vec![
                (
                    r#"$.lxc_configs["950"].mount_points[0].host_path"#.to_string(),
                    false,
                    "this value holds the control character U+000A (a newline) at character 7".to_string()
                ),
                (
                    r#"$.lxc_configs["950"].tags[1]"#.to_string(),
                    false,
                    "this value holds the control character U+0009 (a tab) at character 2".to_string()
                ),
                (
                    r#"$.lxc_configs["950"].lxc_options[0]"#.to_string(),
                    false,
                    "this value holds the control character U+0000 (NUL) at character 25".to_string()
                ),
                (
                    r#"$.lxc_configs["950"]["hostname\r"]"#.to_string(),
                    true,
                    "this key holds the control character U+000D (a carriage return) at character 9".to_string()
                ),
                (
                    r#"$.lxc_configs["950"].template"#.to_string(),
                    false,
                    "this value holds the control character U+007F (DEL) at character 4".to_string()
                ),
            ]
        );
    }

    #[test]
    fn accepts_printable_text_unicode_and_multi_line_health_commands() {
        assert!(
            check(
                r#"{"lxc_configs": {"950": {"name": "wéb 🚀", "health_check": {"command": "set -e\n\ttest -f /x"}}}}"#
            )
            .is_empty()
        );
    }

    #[test]
    fn a_place_the_schema_already_refused_is_not_reported_twice() {
        let doc = crate::json::parse(r#"{"a": "x\ny"}"#).expect("valid JSON");
        let mut out = vec![Diagnostic::error(Code::InvalidValue, FileKind::Lxc, JsonPath::root().key("a"), "bad")];
        check_control_characters(FileKind::Lxc, &doc.root, &mut out);
        assert_eq!(out.len(), 1);
    }
}
