//! A JSON parser that keeps the position of every value and key, so that every diagnostic can
//! say where it is. It accepts exactly RFC 8259 JSON and reports the first syntax error with a
//! hint for the usual mistakes (trailing commas, comments, single quotes).

use std::collections::HashMap;

use crate::source::Span;

/// Deepest nesting accepted; deeper input is rejected instead of exhausting the stack.
pub const MAX_DEPTH: usize = 128;

/// A JSON value with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Where the value is in the text.
    pub span: Span,
    /// The value.
    pub value: Value,
}

/// A JSON value whose children carry positions.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// A number, kept as written.
    Number(String),
    /// A string, unescaped.
    String(String),
    /// An array.
    Array(Vec<Node>),
    /// An object, members in the order written (duplicates kept, and reported by the parser).
    Object(Vec<Member>),
}

/// An object member.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// The key, unescaped.
    pub key: String,
    /// Where the key (with its quotes) is.
    pub key_span: Span,
    /// The value.
    pub value: Node,
}

impl Value {
    /// A word for the kind of value, as used in messages (`a string`, `an object`).
    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(n) if is_integer(n) => "an integer",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
        }
    }
}

impl Node {
    /// The member of an object with this key (the last one, as JSON readers do).
    pub fn get(&self, key: &str) -> Option<&Member> {
        match &self.value {
            Value::Object(members) => members.iter().rev().find(|m| m.key == key),
            _ => None,
        }
    }

    /// Converts to a `serde_json::Value` (a later duplicate key wins, as in every JSON reader).
    pub fn to_serde(&self) -> serde_json::Value {
        self.to_serde_filtered(&mut |_| true)
    }

    /// Converts to a `serde_json::Value`, leaving out the object members and array elements for
    /// which `keep` answers false. `keep` receives each child's index path from this node.
    pub fn to_serde_filtered(&self, keep: &mut dyn FnMut(&[PathStep<'_>]) -> bool) -> serde_json::Value {
        let mut trail = Vec::new();
        self.to_serde_inner(&mut trail, keep)
    }

    fn to_serde_inner<'a>(
        &'a self,
        trail: &mut Vec<PathStep<'a>>,
        keep: &mut dyn FnMut(&[PathStep<'_>]) -> bool,
    ) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Number(n) => n.parse::<serde_json::Number>().map_or(J::Null, J::Number),
            Value::String(s) => J::String(s.clone()),
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    trail.push(PathStep::Index(i));
                    if keep(trail) {
                        out.push(item.to_serde_inner(trail, keep));
                    }
                    trail.pop();
                }
                J::Array(out)
            }
            Value::Object(members) => {
                let mut out = serde_json::Map::with_capacity(members.len());
                for m in members {
                    trail.push(PathStep::Key(&m.key));
                    if keep(trail) {
                        out.insert(m.key.clone(), m.value.to_serde_inner(trail, keep));
                    }
                    trail.pop();
                }
                J::Object(out)
            }
        }
    }
}

/// One step from a value to a child, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathStep<'a> {
    /// An object member.
    Key(&'a str),
    /// An array element.
    Index(usize),
}

/// Whether a number as written is an integer (no fraction, no exponent).
pub fn is_integer(raw: &str) -> bool {
    !raw.contains(['.', 'e', 'E'])
}

/// A syntax error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// Byte offset where the error is.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
    /// How to fix it, where there is something specific to say.
    pub hint: Option<String>,
}

/// A duplicate key in one object: JSON readers silently keep the last one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateKey {
    /// The key.
    pub key: String,
    /// The first occurrence.
    pub first: Span,
    /// The repeated occurrence.
    pub again: Span,
}

/// The parsed document, and the duplicate keys found in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// The root value.
    pub root: Node,
    /// Keys given twice in one object.
    pub duplicate_keys: Vec<DuplicateKey>,
}

/// Parses a JSON text.
pub fn parse(text: &str) -> Result<Document, SyntaxError> {
    let mut p = Parser { text, bytes: text.as_bytes(), pos: 0, duplicates: Vec::new() };
    p.skip_ws()?;
    if p.pos == p.bytes.len() {
        return Err(p.error("the file is empty", Some("a Phoenix configuration file holds one JSON object: `{ ... }`")));
    }
    let root = p.value(0)?;
    p.skip_ws()?;
    if p.pos < p.bytes.len() {
        return Err(p.error(
            "unexpected text after the end of the JSON value",
            Some("a file holds exactly one JSON value; check for a stray `}` or a second object"),
        ));
    }
    Ok(Document { root, duplicate_keys: p.duplicates })
}

struct Parser<'t> {
    text: &'t str,
    bytes: &'t [u8],
    pos: usize,
    duplicates: Vec<DuplicateKey>,
}

impl Parser<'_> {
    fn error(&self, message: &str, hint: Option<&str>) -> SyntaxError {
        SyntaxError { offset: self.pos, message: message.to_string(), hint: hint.map(str::to_string) }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) -> Result<(), SyntaxError> {
        while let Some(b) = self.peek() {
            match b {
                b' ' | b'\t' | b'\n' | b'\r' => self.pos += 1,
                b'/' if matches!(self.bytes.get(self.pos + 1), Some(b'/' | b'*')) => {
                    return Err(self.error(
                        "comments are not allowed in JSON",
                        Some("remove the comment, or move the note into a `\"comment\"` field where one exists"),
                    ));
                }
                b'#' => return Err(self.error("comments are not allowed in JSON", Some("remove the comment"))),
                _ => break,
            }
        }
        Ok(())
    }

    fn unexpected(&self, expected: &str) -> SyntaxError {
        match self.peek() {
            None => self.error(
                &format!("unexpected end of file; expected {expected}"),
                Some("the file is cut short: close every `{` and `[`"),
            ),
            Some(b'\'') => self.error(
                &format!("expected {expected}, found a single quote"),
                Some("JSON strings use double quotes: \"like this\""),
            ),
            Some(_) => {
                let found: String = self.text[self.pos..].chars().next().map(String::from).unwrap_or_default();
                self.error(&format!("expected {expected}, found `{found}`"), None)
            }
        }
    }

    fn value(&mut self, depth: usize) -> Result<Node, SyntaxError> {
        if depth >= MAX_DEPTH {
            return Err(self.error(&format!("values are nested more than {MAX_DEPTH} levels deep"), None));
        }
        let start = self.pos;
        let value = match self.peek() {
            Some(b'{') => self.object(depth)?,
            Some(b'[') => self.array(depth)?,
            Some(b'"') => Value::String(self.string()?),
            Some(b't') => self.literal("true", Value::Bool(true))?,
            Some(b'f') => self.literal("false", Value::Bool(false))?,
            Some(b'n') => self.literal("null", Value::Null)?,
            Some(b'-' | b'0'..=b'9') => self.number()?,
            Some(b) if b.is_ascii_alphabetic() => return Err(self.bare_word()),
            _ => return Err(self.unexpected("a value")),
        };
        Ok(Node { span: Span::new(start, self.pos), value })
    }

    fn literal(&mut self, word: &str, value: Value) -> Result<Value, SyntaxError> {
        if self.text[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(value)
        } else {
            Err(self.bare_word())
        }
    }

    /// A word without quotes where a value belongs.
    fn bare_word(&self) -> SyntaxError {
        let rest = &self.text[self.pos..];
        let word: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        let hint = match word.as_str() {
            "True" | "False" | "TRUE" | "FALSE" => "JSON booleans are lowercase: true, false".to_string(),
            "None" | "NULL" | "Null" | "nil" => "JSON's empty value is null".to_string(),
            _ => format!("text values need double quotes: \"{word}\""),
        };
        SyntaxError { offset: self.pos, message: format!("`{word}` is not a JSON value"), hint: Some(hint) }
    }

    fn number(&mut self) -> Result<Value, SyntaxError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.unexpected("a digit")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.unexpected("a digit after the decimal point"));
            }
            self.digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.unexpected("a digit in the exponent"));
            }
            self.digits();
        }
        if matches!(self.peek(), Some(b'0'..=b'9')) {
            self.digits();
            let written = &self.text[start..self.pos];
            let hint =
                format!("write `{}`; IDs with leading zeros must be strings", written.trim_start_matches(['-', '0']));
            self.pos = start;
            return Err(self.error("numbers may not have leading zeros", Some(&hint)));
        }
        Ok(Value::Number(self.text[start..self.pos].to_string()))
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
    }

    fn string(&mut self) -> Result<String, SyntaxError> {
        let open = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            let run_start = self.pos;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            out.push_str(&self.text[run_start..self.pos]);
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    self.escape(&mut out)?;
                }
                Some(b'\n') => {
                    self.pos = open;
                    return Err(self.error(
                        "string is not closed on its line",
                        Some("add the closing `\"`, or write a line break as `\\n`"),
                    ));
                }
                Some(_) => {
                    return Err(self
                        .error("control character in a string", Some("write tabs as `\\t` and line breaks as `\\n`")));
                }
                None => {
                    self.pos = open;
                    return Err(self.error("string is not closed", Some("add the closing `\"`")));
                }
            }
        }
    }

    fn escape(&mut self, out: &mut String) -> Result<(), SyntaxError> {
        let c = match self.peek() {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                self.pos += 1;
                let high = self.hex4()?;
                let code = if (0xD800..0xDC00).contains(&high) {
                    if !self.text[self.pos..].starts_with("\\u") {
                        return Err(self.error("lone UTF-16 surrogate in a `\\u` escape", None));
                    }
                    self.pos += 2;
                    let low = self.hex4()?;
                    if !(0xDC00..0xE000).contains(&low) {
                        return Err(self.error("invalid UTF-16 surrogate pair in a `\\u` escape", None));
                    }
                    0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
                } else {
                    high
                };
                let c = char::from_u32(code).ok_or_else(|| self.error("invalid `\\u` escape", None))?;
                out.push(c);
                return Ok(());
            }
            _ => {
                return Err(self.error(
                    "invalid escape in a string",
                    Some("a backslash starts an escape (`\\n`, `\\\"`, `\\\\`); write a literal backslash as `\\\\`"),
                ));
            }
        };
        self.pos += 1;
        out.push(c);
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, SyntaxError> {
        let digits = self.text.get(self.pos..self.pos + 4).filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit()));
        let Some(d) = digits else { return Err(self.error("`\\u` needs four hexadecimal digits", None)) };
        self.pos += 4;
        u32::from_str_radix(d, 16).map_err(|_| self.error("`\\u` needs four hexadecimal digits", None))
    }

    fn array(&mut self, depth: usize) -> Result<Value, SyntaxError> {
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_ws()?;
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            self.skip_ws()?;
            items.push(self.value(depth + 1)?);
            if self.comma_or_close(b']', "element")? {
                return Ok(Value::Array(items));
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, SyntaxError> {
        self.pos += 1;
        let mut members: Vec<Member> = Vec::new();
        let mut seen: HashMap<String, Span> = HashMap::new();
        self.skip_ws()?;
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Object(members));
        }
        loop {
            self.skip_ws()?;
            if self.peek() != Some(b'"') {
                let hint = match self.peek() {
                    Some(b'\'') => "JSON keys use double quotes",
                    Some(b) if b.is_ascii_alphabetic() || b == b'_' => "JSON keys need double quotes: \"key\": value",
                    _ => "each member is \"key\": value",
                };
                let mut e = self.unexpected("a key in double quotes");
                if self.peek().is_some() {
                    e.hint = Some(hint.to_string());
                }
                return Err(e);
            }
            let key_start = self.pos;
            let key = self.string()?;
            let key_span = Span::new(key_start, self.pos);
            self.skip_ws()?;
            if self.peek() != Some(b':') {
                return Err(self.unexpected("`:` after the key"));
            }
            self.pos += 1;
            self.skip_ws()?;
            let value = self.value(depth + 1)?;
            if let Some(&first) = seen.get(&key) {
                self.duplicates.push(DuplicateKey { key: key.clone(), first, again: key_span });
            } else {
                seen.insert(key.clone(), key_span);
            }
            members.push(Member { key, key_span, value });
            if self.comma_or_close(b'}', "member")? {
                return Ok(Value::Object(members));
            }
        }
    }

    /// After an element or member: `true` when the array or object closes, `false` after a comma.
    fn comma_or_close(&mut self, close: u8, what: &str) -> Result<bool, SyntaxError> {
        self.skip_ws()?;
        match self.peek() {
            Some(b',') => {
                let comma = self.pos;
                self.pos += 1;
                self.skip_ws()?;
                if self.peek() == Some(close) {
                    self.pos = comma;
                    let message = format!("trailing comma before `{}`", close as char);
                    return Err(self.error(&message, Some(&format!("remove the comma after the last {what}"))));
                }
                Ok(false)
            }
            Some(b) if b == close => {
                self.pos += 1;
                Ok(true)
            }
            _ => Err(self.missing_separator(close as char)),
        }
    }

    fn missing_separator(&self, close: char) -> SyntaxError {
        let mut e = self.unexpected(&format!("`,` or `{close}`"));
        if matches!(self.peek(), Some(b'"' | b'{' | b'[' | b'0'..=b'9' | b't' | b'f' | b'n')) {
            e.hint = Some("a comma is missing between two members".to_string());
        }
        e
    }
}

/// Writes a value back as JSON text in the style of `original`, the text it was parsed from:
/// every part that is unchanged (same value, at the same depth) is copied from `original` as it
/// was written, and only what changed is written anew, indented as the file is. Numbers keep
/// their spelling. So a rewritten file differs from its original only where its values do.
pub fn render_like(node: &Node, original: &str) -> String {
    let unit = indent_unit(original);
    let mut out = String::new();
    Renderer { text: original, unit: &unit }.value(node, 0, &mut out);
    if original.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// The indentation of one level in a text: that of its first indented line (4 spaces if none).
fn indent_unit(text: &str) -> String {
    text.lines().map(|l| &l[..l.len() - l.trim_start().len()]).find(|w| !w.is_empty()).unwrap_or("    ").to_string()
}

struct Renderer<'a> {
    text: &'a str,
    unit: &'a str,
}

impl Renderer<'_> {
    fn value(&self, node: &Node, depth: usize, out: &mut String) {
        if let Some(slice) = self.verbatim(node, depth) {
            out.push_str(slice);
            return;
        }
        let quote = |s: &str| serde_json::Value::String(s.to_string()).to_string();
        match &node.value {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) => out.push_str(n),
            Value::String(s) => out.push_str(&quote(s)),
            Value::Array(items) if items.is_empty() => out.push_str("[]"),
            Value::Object(members) if members.is_empty() => out.push_str("{}"),
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    out.push_str(if i == 0 { "\n" } else { ",\n" });
                    out.push_str(&self.unit.repeat(depth + 1));
                    self.value(item, depth + 1, out);
                }
                out.push('\n');
                out.push_str(&self.unit.repeat(depth));
                out.push(']');
            }
            Value::Object(members) => {
                out.push('{');
                for (i, m) in members.iter().enumerate() {
                    out.push_str(if i == 0 { "\n" } else { ",\n" });
                    out.push_str(&self.unit.repeat(depth + 1));
                    out.push_str(&quote(&m.key));
                    out.push_str(": ");
                    self.value(&m.value, depth + 1, out);
                }
                out.push('\n');
                out.push_str(&self.unit.repeat(depth));
                out.push('}');
            }
        }
    }

    /// The original text of a value, when it still holds the same value and sits at the same
    /// depth (so its inner lines are indented right).
    fn verbatim(&self, node: &Node, depth: usize) -> Option<&str> {
        let slice = self.text.get(node.span.start..node.span.end)?;
        if slice.contains('\n') {
            let line_start = self.text[..node.span.start].rfind('\n').map_or(0, |i| i + 1);
            let line = &self.text[line_start..];
            let indent = line.len() - line.trim_start().len();
            if indent != self.unit.len() * depth {
                return None;
            }
        }
        let parsed = parse(slice).ok()?;
        (parsed.root.to_serde() == node.to_serde() && same_numbers(&parsed.root, node)).then_some(slice)
    }
}

/// Whether two values with the same content also spell their numbers the same way.
fn same_numbers(a: &Node, b: &Node) -> bool {
    match (&a.value, &b.value) {
        (Value::Number(x), Value::Number(y)) => x == y,
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_numbers(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| a.key == b.key && same_numbers(&a.value, &b.value))
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> SyntaxError {
        match parse(text) {
            Err(e) => e,
            Ok(d) => panic!("parsed {text:?} as {d:?}"),
        }
    }

    #[test]
    fn keeps_spans_of_keys_and_values() {
        let doc = parse(r#"{"a": [1, "x"], "b": {"c": null}}"#).expect("valid");
        let a = doc.root.get("a").expect("a");
        assert_eq!(a.key_span, Span::new(1, 4));
        assert_eq!(a.value.span, Span::new(6, 14));
        let b = doc.root.get("b").expect("b");
        assert_eq!(b.value.get("c").map(|m| m.value.value.clone()), Some(Value::Null));
    }

    #[test]
    fn agrees_with_serde_json_on_values() {
        let text = r#"{"s": "a\"b\\c\u00e9\ud83d\ude00", "n": -1.5e3, "i": 42, "t": true, "l": [false, null]}"#;
        let ours = parse(text).expect("valid").root.to_serde();
        let theirs: serde_json::Value = serde_json::from_str(text).expect("valid");
        assert_eq!(ours, theirs);
    }

    #[test]
    fn reports_duplicate_keys() {
        let doc = parse(r#"{"950": {}, "951": {}, "950": {"x": 1}}"#).expect("valid");
        assert_eq!(doc.duplicate_keys.len(), 1);
        assert_eq!(doc.duplicate_keys[0].key, "950");
        assert_eq!(doc.duplicate_keys[0].first, Span::new(1, 6));
    }

    #[test]
    fn explains_common_mistakes() {
        assert_eq!(err("{\"a\": 1,}").message, "trailing comma before `}`");
        assert_eq!(err("[1,]").message, "trailing comma before `]`");
        assert_eq!(err("{\"a\": 1 // no\n}").message, "comments are not allowed in JSON");
        assert!(err("{'a': 1}").hint.unwrap_or_default().contains("double quotes"));
        assert!(err("{\"a\": 1 \"b\": 2}").hint.unwrap_or_default().contains("comma is missing"));
        assert_eq!(err("{\"a\": True}").hint.as_deref(), Some("JSON booleans are lowercase: true, false"));
        assert_eq!(err("").message, "the file is empty");
        assert_eq!(err("{\"a\": 07}").message, "numbers may not have leading zeros");
        assert_eq!(err("{\"a\": 010}").offset, 6);
        assert_eq!(err("{\"a\": 010}").hint.as_deref(), Some("write `10`; IDs with leading zeros must be strings"));
        assert_eq!(err("{\"a\": 1}}").message, "unexpected text after the end of the JSON value");
        assert_eq!(err("{\"a\": \"x").offset, 6);
    }

    #[test]
    fn refuses_deep_nesting_without_overflowing() {
        let text = "[".repeat(100_000);
        assert!(err(&text).message.contains("nested more than"));
    }
}
