//! Secret values this process has resolved, scrubbed from everything it prints. Every value is
//! registered where it is read ([`crate::secrets::Secrets::resolve`], the Vault token), and the
//! printer passes every line through [`scrub`], human and JSON, stdout and stderr: a server that
//! echoes a request header in its reason phrase or its error body cannot make Phoenix print the
//! token it was sent.
//!
//! The registry is the process's, not a run's: a secret read in one run stays hidden in every
//! later output of the process (in-process tests run many).

use std::borrow::Cow;
use std::sync::{Mutex, PoisonError};

/// What a scrubbed value is replaced by.
pub const MASK: &str = "*****";

/// Values shorter than this are not scrubbed: they would mask ordinary words in every message,
/// and no token, key or password Phoenix reads is this short.
const SHORTEST: usize = 4;

/// The forms to scrub, longest first (so that a secret holding another one is hidden whole).
static VALUES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Registers a secret value: from now on it is never printed. Its JSON-escaped form is
/// registered too, for values that JSON output writes differently (quotes, backslashes,
/// control characters).
pub fn register(value: &str) {
    let mut forms = vec![value.to_string()];
    if let Ok(json) = serde_json::to_string(value) {
        forms.push(json[1..json.len() - 1].to_string());
    }
    let mut values = VALUES.lock().unwrap_or_else(PoisonError::into_inner);
    for form in forms {
        if form.chars().count() >= SHORTEST && !values.contains(&form) {
            values.push(form);
        }
    }
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
}

/// `text` with every registered value replaced by [`MASK`].
pub fn scrub(text: &str) -> Cow<'_, str> {
    let values = VALUES.lock().unwrap_or_else(PoisonError::into_inner);
    let mut out = Cow::Borrowed(text);
    for value in values.iter() {
        if out.contains(value.as_str()) {
            out = Cow::Owned(out.replace(value.as_str(), MASK));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_values_are_masked_in_every_form_and_short_ones_are_left() {
        let secret = "tok-7731-\"q9z\\x";
        assert_eq!(
            scrub(&format!("401 auth failure (PVEAPIToken=a@pve!b={secret})")),
            format!("401 auth failure (PVEAPIToken=a@pve!b={secret})")
        );
        register(secret);
        register("abc");
        register("");
        assert_eq!(
            scrub(&format!("401 auth failure (PVEAPIToken=a@pve!b={secret})")),
            "401 auth failure (PVEAPIToken=a@pve!b=*****)"
        );
        let json = serde_json::to_string(&serde_json::json!({ "message": format!("x {secret} y") })).expect("json");
        assert_eq!(scrub(&json), r#"{"message":"x ***** y"}"#);
        assert_eq!(scrub("abc and abcd"), "abc and abcd");
        // A secret inside a longer one: the longer is hidden whole.
        register("outer-tok-7731-\"q9z\\x-tail");
        assert_eq!(scrub("outer-tok-7731-\"q9z\\x-tail"), MASK);
    }
}
