//! `phoenix config upgrade`: files of an older generation of the format rewritten in the current
//! form, the diff shown first, the originals kept.

use std::path::{Path, PathBuf};

use phoenix_config::FileKind;
use phoenix_config::generations::upgrade_text;

use super::{Confirmation, Context, Outcome, confirmed};
use crate::cli::{OutputFormat, UpgradeArgs};
use phoenix_plan::diff::unified;

/// One file to rewrite.
struct Change {
    path: PathBuf,
    old: String,
    new: String,
    changes: Vec<String>,
}

/// Runs `phoenix config upgrade`.
pub fn run(cx: &Context<'_>, args: &UpgradeArgs) -> Outcome {
    let dir = &cx.global.config_dir;
    if !dir.is_dir() {
        cx.printer.error(
            &format!("configuration directory {} does not exist", dir.display()),
            Some("point Phoenix at it with `-c DIR` or the PHOENIX_CONFIG_DIR environment variable"),
        );
        return Outcome::Failure;
    }
    let mut pending = Vec::new();
    for kind in FileKind::ALL {
        let path = dir.join(kind.file_name());
        if !path.is_file() {
            continue;
        }
        let old = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                cx.printer.error(&format!("cannot read {}: {e}", path.display()), None);
                return Outcome::Failure;
            }
        };
        match upgrade_text(kind, &old) {
            Ok(Some(up)) => pending.push(Change { path, old, new: up.text, changes: up.changes }),
            Ok(None) => {}
            Err(e) => {
                cx.printer.error(
                    &format!("cannot upgrade {}: {e}", path.display()),
                    Some("fix this first (`phoenix validate` shows where); nothing was changed"),
                );
                return Outcome::Failure;
            }
        }
    }
    if cx.printer.format == OutputFormat::Json {
        let files: Vec<serde_json::Value> = pending
            .iter()
            .map(|c| serde_json::json!({ "file": c.path, "changes": c.changes, "diff": diff(c) }))
            .collect();
        cx.printer.json(&serde_json::json!({ "files": files, "dry_run": args.dry_run }));
    } else if pending.is_empty() {
        cx.printer.data("Every file is in the current form; nothing to upgrade.\n");
    } else {
        for c in &pending {
            cx.printer.data(&diff(c));
        }
    }
    if pending.is_empty() {
        return Outcome::Success;
    }
    if args.dry_run {
        cx.printer.info_text("dry run: nothing was changed\n");
        return Outcome::Success;
    }
    let question = format!("Rewrite {} file(s) as shown?", pending.len());
    let confirmation = Confirmation {
        refusal: "refusing to rewrite the configuration without confirmation",
        hint: "nobody can answer here: read the diff (--dry-run), then pass --yes",
        question: &question,
        declined: "Not confirmed; nothing was changed.",
    };
    if !confirmed(cx, args.yes, &confirmation) {
        return Outcome::Failure;
    }
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    for c in &pending {
        match write(&c.path, &c.old, &c.new, stamp) {
            Ok(backup) => cx.printer.info_text(&format!(
                "upgraded {} ({} change(s)); the original is {}\n",
                c.path.display(),
                c.changes.len(),
                backup.display()
            )),
            Err(e) => {
                cx.printer.error(&format!("cannot write {}: {e}", c.path.display()), None);
                return Outcome::Failure;
            }
        }
    }
    Outcome::Success
}

fn diff(c: &Change) -> String {
    let name = c.path.display().to_string();
    unified(&c.old, &c.new, &format!("{name} (now)"), &format!("{name} (upgraded)"))
}

/// Keeps the original as `<file>.<stamp>.bak` (never over an existing file), then writes the new
/// text beside the file and renames it over, so the file is never half written.
fn write(path: &Path, old: &str, new: &str, stamp: u64) -> std::io::Result<PathBuf> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let backup = path.with_file_name(format!("{name}.{stamp}.bak"));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    std::io::Write::write_all(&mut options.open(&backup)?, old.as_bytes())?;
    let temporary = path.with_file_name(format!(".{name}.upgrade"));
    std::fs::write(&temporary, new)?;
    if let Ok(meta) = std::fs::metadata(path) {
        std::fs::set_permissions(&temporary, meta.permissions())?;
    }
    std::fs::rename(&temporary, path)?;
    Ok(backup)
}
