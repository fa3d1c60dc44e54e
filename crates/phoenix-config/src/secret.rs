//! Secret references (`env:`, `file:`, `vault:`) and password hashes: how they are written, and
//! the checks that refuse secrets written inline. Nothing here ever echoes a secret's text.

/// Where a secret is read from at run time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource<'a> {
    /// An environment variable.
    Env(&'a str),
    /// A file's content, without its trailing newline.
    File(&'a str),
    /// A Vault KV secret: the secret's path and the field in it.
    Vault {
        /// `<mount>/<path>`
        path: &'a str,
        /// The field of the secret.
        field: &'a str,
    },
}

/// Why a value is not an acceptable secret reference or password hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretProblem {
    /// The value looks like the secret itself, written inline.
    pub inline: bool,
    /// What is wrong (never quoting the value).
    pub message: String,
    /// How to write it.
    pub hint: String,
}

/// How to write a secret reference, for hints.
pub const REFERENCE_HINT: &str = "keep the secret out of the configuration and give a reference: \"env:NAME\", \"file:/absolute/path\" or \"vault:mount/path#field\"";

/// Parses a secret reference.
pub fn parse_reference(s: &str) -> Result<SecretSource<'_>, SecretProblem> {
    let malformed = |what: &str| SecretProblem {
        inline: false,
        message: format!("is a malformed secret reference: {what}"),
        hint: REFERENCE_HINT.to_string(),
    };
    if let Some(name) = s.strip_prefix("env:") {
        let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        return if valid {
            Ok(SecretSource::Env(name))
        } else {
            Err(malformed("`env:` needs a variable name (letters, digits, `_`)"))
        };
    }
    if let Some(path) = s.strip_prefix("file:") {
        return if path.starts_with('/') && path.len() > 1 {
            Ok(SecretSource::File(path))
        } else {
            Err(malformed("`file:` needs an absolute path"))
        };
    }
    if let Some(rest) = s.strip_prefix("vault:") {
        return match rest.split_once('#') {
            Some((path, field)) if !path.is_empty() && !field.is_empty() => Ok(SecretSource::Vault { path, field }),
            _ => Err(malformed("`vault:` needs `mount/path#field`")),
        };
    }
    Err(SecretProblem {
        inline: true,
        message: "holds a secret written inline".to_string(),
        hint: REFERENCE_HINT.to_string(),
    })
}

/// Checks a secret reference.
pub fn check_reference(s: &str) -> Result<(), SecretProblem> {
    parse_reference(s).map(|_| ())
}

/// Checks a password field: a crypt(3) hash, `NOT_SET`, or a secret reference.
pub fn check_password_hash(s: &str) -> Result<(), SecretProblem> {
    if s == "NOT_SET" || is_crypt_hash(s) {
        return Ok(());
    }
    match parse_reference(s) {
        Err(p) if p.inline => Err(SecretProblem {
            inline: true,
            message: "looks like a plain-text password".to_string(),
            hint: "give a crypt(3) hash (for example from `mkpasswd -m sha-512`), \"NOT_SET\", or a secret reference such as \"env:ADMIN_PASSWORD_HASH\"".to_string(),
        }),
        other => other.map(|_| ()),
    }
}

fn is_crypt_hash(s: &str) -> bool {
    // `$id$[params$]salt$hash`, e.g. `$6$salt$...`, `$y$j9T$salt$...`.
    let mut parts = s.split('$');
    parts.next() == Some("")
        && parts.next().is_some_and(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric()))
        && s.split('$').count() >= 4
        && s.chars().all(|c| c.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms() {
        assert_eq!(parse_reference("env:PVE_TOKEN"), Ok(SecretSource::Env("PVE_TOKEN")));
        assert_eq!(parse_reference("file:/etc/phoenix/token"), Ok(SecretSource::File("/etc/phoenix/token")));
        assert_eq!(
            parse_reference("vault:secret/pve#token"),
            Ok(SecretSource::Vault { path: "secret/pve", field: "token" })
        );
    }

    #[test]
    fn refuses_inline_and_malformed_without_quoting() {
        let inline = parse_reference("hunter2").expect_err("inline");
        assert!(inline.inline && !inline.message.contains("hunter2"));
        assert!(!parse_reference("env:").expect_err("malformed").inline);
        assert!(!parse_reference("file:relative").expect_err("malformed").inline);
        assert!(!parse_reference("vault:secret/pve").expect_err("malformed").inline);
    }

    #[test]
    fn password_hashes() {
        assert!(check_password_hash("NOT_SET").is_ok());
        assert!(check_password_hash("$6$rounds=5000$salt$abcdef").is_ok());
        assert!(check_password_hash("$y$j9T$salt$hash").is_ok());
        assert!(check_password_hash("env:ADMIN_HASH").is_ok());
        assert!(check_password_hash("Passw0rd!").expect_err("plain").inline);
    }
}
