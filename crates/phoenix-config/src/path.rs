//! JSON paths: where in a file a value is, written `$.lxc_configs["950"].network_config.ip`.

use std::fmt;

use crate::json::{Node, PathStep, Value};
use crate::source::Span;

/// One step of a [`JsonPath`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Segment {
    /// An object member.
    Key(String),
    /// An array element.
    Index(usize),
}

/// A path from a file's root to a value.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JsonPath(pub Vec<Segment>);

impl JsonPath {
    /// The root of a file.
    pub fn root() -> JsonPath {
        JsonPath(Vec::new())
    }

    /// This path extended by an object member.
    pub fn key(&self, key: impl Into<String>) -> JsonPath {
        let mut p = self.clone();
        p.0.push(Segment::Key(key.into()));
        p
    }

    /// This path extended by an array element.
    pub fn index(&self, index: usize) -> JsonPath {
        let mut p = self.clone();
        p.0.push(Segment::Index(index));
        p
    }

    /// Whether `self` is `other` or lies inside it.
    pub fn starts_with(&self, other: &JsonPath) -> bool {
        self.0.starts_with(&other.0)
    }

    /// Whether this path equals a borrowed step list.
    pub fn matches(&self, steps: &[PathStep<'_>]) -> bool {
        self.0.len() == steps.len()
            && self.0.iter().zip(steps).all(|(a, b)| match (a, b) {
                (Segment::Key(a), PathStep::Key(b)) => a == b,
                (Segment::Index(a), PathStep::Index(b)) => a == b,
                _ => false,
            })
    }

    /// The last key of the path, if it ends in an object member.
    pub fn last_key(&self) -> Option<&str> {
        match self.0.last() {
            Some(Segment::Key(k)) => Some(k),
            _ => None,
        }
    }

    /// Finds the span the path points at in a parsed file: the key of a member when `key` is
    /// true, else the value. A path that leaves the document ends at the deepest value it reaches.
    pub fn locate(&self, root: &Node, key: bool) -> Span {
        let mut node = root;
        let mut key_span = None;
        for seg in &self.0 {
            let next = match (seg, &node.value) {
                (Segment::Key(k), Value::Object(members)) => {
                    members.iter().rev().find(|m| &m.key == k).map(|m| (m.key_span, &m.value))
                }
                (Segment::Index(i), Value::Array(items)) => items.get(*i).map(|n| (n.span, n)),
                _ => None,
            };
            match next {
                Some((k, n)) => {
                    key_span = Some(k);
                    node = n;
                }
                None => return node.span,
            }
        }
        match (key, key_span) {
            (true, Some(k)) => k,
            _ => node.span,
        }
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("$")?;
        for seg in &self.0 {
            match seg {
                Segment::Index(i) => write!(f, "[{i}]")?,
                Segment::Key(k) if is_identifier(k) => write!(f, ".{k}")?,
                Segment::Key(k) => write!(f, "[{}]", serde_json::Value::String(k.clone()))?,
            }
        }
        Ok(())
    }
}

fn is_identifier(k: &str) -> bool {
    let mut chars = k.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_identifiers_dotted_and_other_keys_quoted() {
        let p = JsonPath::root().key("lxc_configs").key("950").key("network_config").key("ip");
        assert_eq!(p.to_string(), r#"$.lxc_configs["950"].network_config.ip"#);
        assert_eq!(JsonPath::root().key("vms").index(2).key("a b").to_string(), r#"$.vms[2]["a b"]"#);
    }

    #[test]
    fn locates_keys_values_and_the_deepest_existing_node() {
        let doc = crate::json::parse(r#"{"a": {"b": [10, 20]}}"#).expect("valid");
        let p = JsonPath::root().key("a").key("b");
        assert_eq!(p.locate(&doc.root, true), Span::new(7, 10));
        assert_eq!(p.index(1).locate(&doc.root, false), Span::new(17, 19));
        assert_eq!(p.index(5).locate(&doc.root, false), Span::new(12, 20));
    }
}
