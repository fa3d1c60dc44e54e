//! The corpus of broken configurations under `tests/broken/`: each `NAME.case` holds one mistake
//! (or several), written as the configuration files it changes from `tests/broken/_base/`; each
//! `NAME.expected` holds the real binary's exit code, stdout and stderr for `phoenix validate`.
//!
//! Run with `PHOENIX_BLESS=1` to write the expected files after a deliberate change of output, and
//! read the diff before committing it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

mod support;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/broken")
}

/// Lays out a case in a fresh directory: the base, then the case's files (`--- NAME` replaces or
/// adds a file, `--- !NAME` removes one). Lines before the first `---` are a comment.
fn materialize(case: &str, dir: &Path) {
    phoenix_testkit::copy_tree(&corpus_dir().join("_base"), dir);
    let mut current: Option<(String, String)> = None;
    let flush = |cur: Option<(String, String)>| {
        if let Some((name, text)) = cur {
            let path = dir.join(&name);
            fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            fs::write(path, text).expect("write case file");
        }
    };
    for line in case.lines() {
        if let Some(name) = line.strip_prefix("--- ") {
            flush(current.take());
            if let Some(removed) = name.strip_prefix('!') {
                fs::remove_file(dir.join(removed.trim())).expect("remove base file");
            } else {
                current = Some((name.trim().to_string(), String::new()));
            }
        } else if let Some((_, text)) = current.as_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    flush(current);
}

fn run(dir: &Path, extra: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_phoenix"))
        .args(["--color", "never", "-c", ".", "validate"])
        .args(extra)
        .current_dir(dir)
        .env_remove("PHOENIX_CONFIG_DIR")
        .env_remove("NO_COLOR")
        .output()
        .expect("run phoenix");
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    support::assert_no_known_secret(extra, &stdout, &stderr);
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

fn cases() -> Vec<(String, PathBuf)> {
    let mut v: Vec<(String, PathBuf)> = fs::read_dir(corpus_dir())
        .expect("corpus dir")
        .filter_map(|e| {
            let p = e.ok()?.path();
            let stem = p.file_stem()?.to_string_lossy().into_owned();
            (p.extension()? == "case").then_some((stem, p))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn every_broken_configuration_gives_its_expected_diagnostics() {
    let bless = std::env::var_os("PHOENIX_BLESS").is_some();
    let cases = cases();
    let mut failures = Vec::new();
    for (name, path) in &cases {
        let case = fs::read_to_string(path).expect("read case");
        let tmp = tempfile::tempdir().expect("tempdir");
        materialize(&case, tmp.path());
        let (code, stdout, stderr) = run(tmp.path(), &[]);
        let actual = format!("exit: {code}\n--- stdout\n{stdout}--- stderr\n{stderr}");
        let expected_path = path.with_extension("expected");
        if bless {
            fs::write(&expected_path, &actual).expect("write expected");
        } else {
            let expected = fs::read_to_string(&expected_path).unwrap_or_default();
            if expected != actual {
                failures.push(format!(
                    "== {name}: expected ({})\n{expected}\n== actual\n{actual}",
                    expected_path.display()
                ));
            }
        }
        // Every case is a broken configuration: it must fail, and say so in JSON too.
        if code != 1 {
            failures.push(format!("== {name}: exit code {code}, expected 1"));
        }
        let (json_code, json_out, _) = run(tmp.path(), &["--output", "json"]);
        let parsed: serde_json::Value = serde_json::from_str(&json_out).expect("JSON output");
        let errors = parsed["errors"].as_u64().unwrap_or_default();
        if json_code != 1 || errors == 0 || parsed["valid"] != false {
            failures.push(format!("== {name}: JSON output disagrees: exit {json_code}, {json_out}"));
        }
        for d in parsed["diagnostics"].as_array().into_iter().flatten() {
            if d.get("file").is_some() && (d["line"].as_u64().unwrap_or(0) == 0 || d["path"].as_str().is_none()) {
                failures.push(format!("== {name}: a diagnostic without line or path: {d}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} problem(s); run with PHOENIX_BLESS=1 to update after checking:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(cases.len() >= 60, "the corpus should hold at least 60 cases, it has {}", cases.len());
}

#[test]
fn the_base_of_the_corpus_is_valid() {
    let tmp = tempfile::tempdir().expect("tempdir");
    materialize("", tmp.path());
    let (code, stdout, stderr) = run(tmp.path(), &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
}
