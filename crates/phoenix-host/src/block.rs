//! Marked blocks: how Phoenix edits a file it does not own. Only the lines between its markers
//! are Phoenix's; everything else is kept byte for byte.

/// The first line of a block.
pub fn begin_marker(name: &str) -> String {
    format!("# BEGIN phoenix {name} (managed by phoenix setup-hypervisor; edits inside are replaced)")
}

/// The last line of a block.
pub fn end_marker(name: &str) -> String {
    format!("# END phoenix {name}")
}

/// Why a file's block cannot be edited safely.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BlockError(pub String);

/// Where the block is: the line range of the markers (inclusive).
fn find(lines: &[&str], name: &str) -> Result<Option<(usize, usize)>, BlockError> {
    let begin = begin_marker(name);
    let end = end_marker(name);
    let is_begin = |l: &str| l.trim_end() == begin || l.starts_with(&format!("# BEGIN phoenix {name} "));
    let begins: Vec<usize> = lines.iter().enumerate().filter(|(_, l)| is_begin(l)).map(|(i, _)| i).collect();
    let ends: Vec<usize> = lines.iter().enumerate().filter(|(_, l)| l.trim_end() == end).map(|(i, _)| i).collect();
    match (begins.as_slice(), ends.as_slice()) {
        ([], []) => Ok(None),
        ([b], [e]) if b < e => Ok(Some((*b, *e))),
        _ => Err(BlockError(format!(
            "its phoenix {name} block is damaged (expected one `{begin}` line followed by one `{end}` line); fix or remove the markers by hand"
        ))),
    }
}

/// The lines inside the block (`None`: no block).
pub fn body(text: &str, name: &str) -> Result<Option<Vec<String>>, BlockError> {
    let lines: Vec<&str> = text.lines().collect();
    Ok(find(&lines, name)?.map(|(b, e)| lines[b + 1..e].iter().map(|l| (*l).to_string()).collect()))
}

/// The text with the block's body replaced by `body` (appended at the end when there is no
/// block; removed, markers and all, when `body` is `None`).
pub fn replace(text: &str, name: &str, body: Option<&[String]>) -> Result<String, BlockError> {
    let lines: Vec<&str> = text.lines().collect();
    let block: Option<Vec<String>> = body.map(|b| {
        std::iter::once(begin_marker(name)).chain(b.iter().cloned()).chain(std::iter::once(end_marker(name))).collect()
    });
    let mut out: Vec<String> = Vec::new();
    match find(&lines, name)? {
        Some((b, e)) => {
            out.extend(lines[..b].iter().map(|l| (*l).to_string()));
            out.extend(block.unwrap_or_default());
            out.extend(lines[e + 1..].iter().map(|l| (*l).to_string()));
        }
        None => {
            out.extend(lines.iter().map(|l| (*l).to_string()));
            out.extend(block.unwrap_or_default());
        }
    }
    let mut s = out.join("\n");
    if !s.is_empty() {
        s.push('\n');
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_is_added_replaced_and_removed_and_nothing_else_changes() {
        let original = "# mine\nkeep = me\n";
        let one = replace(original, "x", Some(&["a".to_string()])).expect("add");
        assert!(one.starts_with(original), "{one}");
        assert_eq!(body(&one, "x").expect("ok"), Some(vec!["a".to_string()]));
        let two = replace(&one, "x", Some(&["b".to_string(), "c".to_string()])).expect("replace");
        assert!(two.starts_with(original) && two.contains("\nb\nc\n") && !two.contains("\na\n"), "{two}");
        assert_eq!(replace(&two, "x", Some(&["b".to_string(), "c".to_string()])).expect("same"), two);
        assert_eq!(replace(&two, "x", None).expect("remove"), original);
    }

    #[test]
    fn a_damaged_block_is_refused() {
        let text = format!("{}\nline\n", begin_marker("x"));
        assert!(replace(&text, "x", Some(&[])).is_err());
        let text = format!("{}\n{}\n", end_marker("x"), begin_marker("x"));
        assert!(body(&text, "x").is_err());
    }
}
