//! A guest's customization record (its markers: JSON, customization key → hash), kept in the
//! guest's description as an HTML comment (the web interface's notes render Markdown, so it is not
//! shown there). The configuration read that observes a guest therefore reads its record too, at
//! no request of its own, whether the guest runs or not, and with no command on the node.
//!
//! Each snapshot Phoenix takes keeps the record of its moment in the snapshot's own description,
//! as the guest's files keep theirs: a rollback to it, or a clone of it, gets that record back
//! (Proxmox itself keeps the live description through a rollback and gives a clone none).
//!
//! A description without a record is that of a guest of an older Phoenix, whose record is the file
//! [`phoenix_backend::inside::MARKERS_PATH`] inside it, or of a guest Phoenix did not create.

use std::collections::BTreeMap;

use phoenix_backend::{BackendError, Delivery};

/// The mark in a guest's description that says Phoenix created it.
pub const MANAGED_MARK: &str = "Managed by Phoenix.";

/// A guest's description with the managed mark (adoption): the mark first, what the description
/// said before kept below it.
pub fn marked_description(old: Option<&str>) -> String {
    match old.map(str::trim).filter(|d| !d.is_empty()) {
        Some(d) if d.contains(MANAGED_MARK) => d.to_string(),
        Some(d) => format!("{MANAGED_MARK}\n{d}"),
        None => MANAGED_MARK.to_string(),
    }
}

/// What opens the record in a description.
const OPEN: &str = "<!-- phoenix-markers ";
/// What closes it.
const CLOSE: &str = " -->";

/// The longest description Proxmox takes (`maxLength` of `description` in the API schema).
pub const DESCRIPTION_LIMIT: usize = 8192;

/// What the description of a snapshot Phoenix takes says above its record.
pub const SNAPSHOT_NOTE: &str = "Taken by Phoenix.";

/// The record a description holds, as JSON; `None` when it holds none.
pub fn read(description: &str) -> Option<Vec<u8>> {
    let start = description.find(OPEN)? + OPEN.len();
    let len = description[start..].find(CLOSE)?;
    Some(description.as_bytes()[start..start + len].to_vec())
}

/// The record as it is written in a description: compact JSON of the markers, `>` escaped
/// (`\u003e`, the same string to a JSON reader) so that no key can close the comment.
pub fn block(content: &[u8]) -> Result<String, BackendError> {
    let markers: BTreeMap<String, String> = serde_json::from_slice(content).map_err(|e| {
        BackendError::permanent(
            Delivery::NotSent,
            format!("the customization record is not a JSON object of strings: {e}"),
        )
    })?;
    let json = serde_json::to_string(&markers).unwrap_or_default().replace('>', "\\u003e");
    Ok(format!("{OPEN}{json}{CLOSE}"))
}

/// `description` with its record replaced by `block` (`None`: taken out). A new record goes
/// on the line after the managed mark's, or first; the rest of the description is kept as it was.
pub fn with(description: &str, block: Option<&str>) -> String {
    let mut lines: Vec<&str> = description.lines().filter(|l| !l.trim_start().starts_with(OPEN)).collect();
    if let Some(block) = block {
        let at = lines.iter().position(|l| l.contains(MANAGED_MARK)).map_or(0, |i| i + 1);
        lines.insert(at, block);
    }
    lines.join("\n")
}

/// `description` with an empty record where it has none: what a guest Phoenix creates starts
/// with, so that its record is never looked for inside it.
pub fn fresh(description: &str) -> String {
    if read(description).is_some() {
        description.to_string()
    } else {
        with(description, Some(&format!("{OPEN}{{}}{CLOSE}")))
    }
}

/// The description Phoenix gives a snapshot: a note, and the record of the guest's description
/// at that moment, if it has one.
pub fn snapshot_description(live: &str) -> String {
    match read(live) {
        Some(record) => format!("{SNAPSHOT_NOTE}\n{OPEN}{}{CLOSE}", String::from_utf8_lossy(&record)),
        None => SNAPSHOT_NOTE.to_string(),
    }
}

/// A description that does not fit in Proxmox's limit, refused before it is sent.
pub fn check_length(id: u32, description: &str) -> Result<(), BackendError> {
    if description.len() <= DESCRIPTION_LIMIT {
        return Ok(());
    }
    Err(BackendError::permanent(
        Delivery::NotSent,
        format!(
            "{id}: its description with Phoenix's customization record would be {} bytes, more than the {DESCRIPTION_LIMIT} Proxmox keeps",
            description.len()
        ),
    )
    .with_detail("shorten the guest's notes in Proxmox, or give it fewer features and application scripts"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adoption_puts_the_mark_first_and_keeps_the_description() {
        assert_eq!(marked_description(None), "Managed by Phoenix.");
        assert_eq!(marked_description(Some(" \n")), "Managed by Phoenix.");
        assert_eq!(marked_description(Some("web server\nowner: ops\n")), "Managed by Phoenix.\nweb server\nowner: ops");
        let marked = marked_description(Some("web server"));
        assert_eq!(marked_description(Some(&marked)), marked, "marked once");
    }

    #[test]
    fn a_record_goes_after_the_mark_and_is_read_back_whatever_the_keys_hold() {
        let markers = br#"{"script:/opt/a-->b.sh":"abc","feature:docker":"0123"}"#;
        let block = block(markers).expect("block");
        assert!(!block[OPEN.len()..block.len() - CLOSE.len()].contains("-->"), "{block}");
        let description = with("Managed by Phoenix.\nweb server", Some(&block));
        assert_eq!(description.lines().nth(1), Some(block.as_str()));
        assert_eq!(description.lines().nth(2), Some("web server"));
        let back: BTreeMap<String, String> = serde_json::from_slice(&read(&description).expect("read")).expect("json");
        assert_eq!(back["script:/opt/a-->b.sh"], "abc");
        // Replaced, not added; taken out when asked.
        let again = with(&description, Some(&super::block(b"{}").expect("block")));
        assert_eq!(read(&again).as_deref(), Some(&b"{}"[..]));
        assert_eq!(again.matches(OPEN).count(), 1);
        assert_eq!(with(&again, None), "Managed by Phoenix.\nweb server");
        assert!(super::block(b"not json").is_err());
    }

    #[test]
    fn a_new_guest_starts_with_an_empty_record_and_a_snapshot_keeps_the_guests() {
        assert_eq!(read(&fresh("Managed by Phoenix.")).as_deref(), Some(&b"{}"[..]));
        let live = with("Managed by Phoenix.", Some(&block(br#"{"a":"1"}"#).expect("block")));
        assert_eq!(fresh(&live), live);
        let snapshot = snapshot_description(&live);
        assert!(snapshot.starts_with(SNAPSHOT_NOTE));
        assert_eq!(read(&snapshot).as_deref(), Some(&br#"{"a":"1"}"#[..]));
        assert_eq!(read(&snapshot_description("Managed by Phoenix.")), None);
        assert!(check_length(100, &"x".repeat(DESCRIPTION_LIMIT)).is_ok());
        assert!(check_length(100, &"x".repeat(DESCRIPTION_LIMIT + 1)).is_err());
    }
}
