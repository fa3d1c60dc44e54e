//! Lenient decoding of API responses: Proxmox answers numbers as strings and booleans as 0/1
//! depending on the endpoint and version. Use with `#[serde(deserialize_with = ...)]`.

use serde::{Deserialize, Deserializer, de};
use serde_json::Value;

#[derive(Deserialize)]
#[serde(untagged)]
enum Loose {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

/// A boolean written as `true`/`false`, `1`/`0`, or those as text.
pub fn bool_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match Loose::deserialize(d)? {
        Loose::Bool(b) => Ok(b),
        Loose::Int(0) => Ok(false),
        Loose::Int(1) => Ok(true),
        Loose::Text(t) => match t.trim() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" | "" => Ok(false),
            other => Err(de::Error::custom(format!("{other:?} is not a boolean"))),
        },
        Loose::Int(n) => Err(de::Error::custom(format!("{n} is not a boolean"))),
        Loose::Float(f) => Err(de::Error::custom(format!("{f} is not a boolean"))),
    }
}

/// An unsigned integer written as a number or as text.
pub fn u64_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match Loose::deserialize(d)? {
        Loose::Int(n) => u64::try_from(n).map_err(|_| de::Error::custom(format!("{n} is negative"))),
        Loose::Float(f) if f >= 0.0 && f.fract() == 0.0 => Ok(f as u64),
        Loose::Text(t) => t.trim().parse().map_err(|_| de::Error::custom(format!("{t:?} is not a number"))),
        _ => Err(de::Error::custom("expected a number")),
    }
}

/// An optional unsigned integer written as a number or as text.
pub fn opt_u64_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Option::<serde_json::Value>::deserialize(d)?.map(|v| u64_lenient(v).map_err(de::Error::custom)).transpose()
}

/// A value answered as text or as a number, as text.
pub fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A boolean as Proxmox answers it: `1`, `"1"` (any positive number) or `true`.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_u64().is_some_and(|n| n > 0),
        Value::String(s) => s.parse::<u64>().is_ok_and(|n| n > 0) || s == "true",
        _ => false,
    }
}

/// A size as Proxmox writes it (`8G`, `512M`, `1T`, `2252K`) in GiB, rounded; a bare number is
/// in bytes, for disks of containers and VMs alike (pve-common's `parse_size`: Proxmox writes a
/// size without a unit where it is not a whole number of KiB).
pub fn gib(size: &str) -> Option<u64> {
    let digits = size.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let n: f64 = digits.parse().ok()?;
    let factor = match &size[digits.len()..] {
        "T" => 1024.0,
        "G" => 1.0,
        "M" => 1.0 / 1024.0,
        "K" => 1.0 / 1024.0 / 1024.0,
        "" => 1.0 / 1024.0 / 1024.0 / 1024.0,
        _ => return None,
    };
    Some((n * factor).round() as u64)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Status {
        #[serde(deserialize_with = "super::bool_lenient")]
        template: bool,
        #[serde(deserialize_with = "super::u64_lenient")]
        maxmem: u64,
        #[serde(default, deserialize_with = "super::opt_u64_lenient")]
        uptime: Option<u64>,
    }

    #[test]
    fn sizes_are_read_in_their_unit_and_a_bare_number_in_bytes() {
        assert_eq!(super::gib("8G"), Some(8));
        assert_eq!(super::gib("1T"), Some(1024));
        assert_eq!(super::gib("4096M"), Some(4));
        assert_eq!(super::gib("17179869184"), Some(16));
        assert_eq!(super::gib("16"), Some(0), "16 bytes, not 16 GiB");
        assert_eq!(super::gib("8GiB"), None);
    }

    #[test]
    fn numbers_as_text_and_booleans_as_numbers() {
        let s: Status =
            serde_json::from_str(r#"{"template": 1, "maxmem": "536870912", "uptime": "42"}"#).expect("lenient");
        assert!(s.template && s.maxmem == 536_870_912 && s.uptime == Some(42));
        let s: Status = serde_json::from_str(r#"{"template": "0", "maxmem": 1024}"#).expect("lenient");
        assert!(!s.template && s.maxmem == 1024 && s.uptime.is_none());
        assert!(serde_json::from_str::<Status>(r#"{"template": 2, "maxmem": 1}"#).is_err());
        assert!(serde_json::from_str::<Status>(r#"{"template": 1, "maxmem": "lots"}"#).is_err());
    }
}
