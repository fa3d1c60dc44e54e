//! Hostile input: hundreds of configurations made from the examples by deterministic mutations
//! (keys deleted, types changed, huge, negative and empty values, control characters, unusual
//! Unicode, deep nesting, repeated keys, cut and garbled files, bytes that are not UTF-8). Each
//! runs through `validate` and `plan`, as text and as JSON, on the in-memory backend: none may
//! panic, every exit status is 0, 1 or 2, and JSON output is always one JSON document.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use phoenix_testkit::memory::MemoryBackend;
use serde_json::Value;

/// How many configurations are made.
const CONFIGS: usize = 320;

/// A small deterministic generator (xorshift64*), so that a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// JSON pointers to every value of a document, the root excepted.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                out.push(p.clone());
                pointers(child, p, out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                let p = format!("{at}/{i}");
                out.push(p.clone());
                pointers(child, p, out);
            }
        }
        _ => {}
    }
}

/// Strings that values are replaced with or get inserted.
const HOSTILE_TEXT: &[&str] = &[
    "",
    " ",
    "line\nlxc.apparmor.profile = unconfined",
    "tab\there",
    "nul\u{0}byte",
    "cr\rlf",
    "del\u{7f}",
    "🚀💥",
    "\u{202e}evil\u{202c}",
    "e\u{301}\u{301}\u{301}",
    "\u{feff}bom",
    "../../../../etc/passwd",
    "/../../x",
    "local:vztmpl/../../x.tar.zst",
    "env:",
    "vault:#",
    "-1",
    "99999999999999999999999",
    "%s%n{}{0}",
];

/// Numbers that values are replaced with.
const HOSTILE_NUMBERS: &[&str] = &[
    "-1",
    "0",
    "-9223372036854775809",
    "18446744073709551616",
    "1e308",
    "-1e308",
    "1e999",
    "0.5",
    "4294967296",
    "99999999999999999999999999999999",
];

/// One mutation of a file's text; the name says which, for the report of a failure.
fn mutate(text: &str, rng: &mut Rng) -> (String, Vec<u8>) {
    let Ok(mut doc) = serde_json::from_str::<Value>(text) else {
        return ("unparsable source".into(), text.as_bytes().to_vec());
    };
    let mut all = Vec::new();
    pointers(&doc, String::new(), &mut all);
    let target = rng.pick(&all).clone();
    let kind = rng.below(14);
    let name = |what: &str| format!("{what} at {target}");
    let replace = |doc: &mut Value, with: Value| {
        if let Some(v) = doc.pointer_mut(&target) {
            *v = with;
        }
    };
    let with_number = |doc: &Value, n: &str| {
        // Numbers serde_json cannot hold are put in as text and unquoted afterwards.
        let marker = "\"@@NUMBER@@\"";
        let mut d = doc.clone();
        if let Some(v) = d.pointer_mut(&target) {
            *v = Value::String("@@NUMBER@@".into());
        }
        serde_json::to_string_pretty(&d).unwrap_or_default().replacen(marker, n, 1)
    };
    match kind {
        0 => {
            let (parent, key) = target.rsplit_once('/').unwrap_or(("", ""));
            match doc.pointer_mut(parent) {
                Some(Value::Object(m)) => {
                    m.shift_remove(&key.replace("~1", "/").replace("~0", "~"));
                }
                Some(Value::Array(items)) => {
                    if let Ok(i) = key.parse::<usize>() {
                        items.remove(i);
                    }
                }
                _ => {}
            }
            (name("key deleted"), pretty(&doc))
        }
        1 => {
            let with = match doc.pointer(&target) {
                Some(Value::String(_)) => Value::from(42),
                Some(Value::Number(_)) => Value::from("42"),
                Some(Value::Bool(b)) => Value::from(if *b { "true" } else { "false" }),
                Some(Value::Object(_)) => Value::Array(vec![Value::Null]),
                Some(Value::Array(_)) => serde_json::json!({"x": 1}),
                _ => Value::Bool(true),
            };
            replace(&mut doc, with);
            (name("type changed"), pretty(&doc))
        }
        2 => {
            let n = *rng.pick(HOSTILE_NUMBERS);
            (name(&format!("number {n}")), with_number(&doc, n).into_bytes())
        }
        3 => {
            let s = *rng.pick(HOSTILE_TEXT);
            replace(&mut doc, Value::from(s));
            (name(&format!("text {s:?}")), pretty(&doc))
        }
        4 => {
            // Control characters or Unicode put into a string that is there.
            let s = *rng.pick(HOSTILE_TEXT);
            if let Some(Value::String(v)) = doc.pointer_mut(&target) {
                let at = v.char_indices().map(|(i, _)| i).nth(rng.below(v.chars().count() + 1)).unwrap_or(v.len());
                v.insert_str(at, s);
            }
            (name(&format!("inserted {s:?}")), pretty(&doc))
        }
        5 => {
            let depth = *rng.pick(&[20usize, 127, 129, 400]);
            let open = if rng.below(2) == 0 { ("[", "]") } else { ("{\"a\":", "}") };
            let nested = format!("{}1{}", open.0.repeat(depth), open.1.repeat(depth));
            (name(&format!("nested {depth} deep")), with_number(&doc, &nested).into_bytes())
        }
        6 => {
            // A key written twice in its object: the first member repeated after itself.
            let text = pretty(&doc);
            let s = String::from_utf8_lossy(&text).into_owned();
            let lines: Vec<&str> = s.lines().collect();
            let candidates: Vec<usize> = (0..lines.len())
                .filter(|&i| lines[i].trim_start().starts_with('"') && lines[i].trim_end().ends_with(','))
                .collect();
            if candidates.is_empty() {
                return (name("no key to repeat"), text);
            }
            let i = *rng.pick(&candidates);
            let mut out: Vec<&str> = lines.clone();
            out.insert(i, lines[i]);
            ("key repeated".into(), out.join("\n").into_bytes())
        }
        7 => {
            let cut = rng.below(text.len());
            let cut = (0..=cut).rev().find(|&c| text.is_char_boundary(c)).unwrap_or(0);
            (format!("cut at byte {cut}"), text.as_bytes()[..cut].to_vec())
        }
        8 => {
            let mut bytes = text.as_bytes().to_vec();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(bytes.len());
                bytes[at] = (rng.next() & 0xff) as u8;
            }
            ("bytes garbled".into(), bytes)
        }
        9 => {
            let mut bytes = text.as_bytes().to_vec();
            let at = rng.below(bytes.len());
            bytes.splice(at..at, [0xff, 0xfe, 0xc3]);
            ("not UTF-8".into(), bytes)
        }
        10 => ("empty file".into(), Vec::new()),
        11 => ("another root".into(), rng.pick(&["[]", "null", "1", "\"x\"", "{}", "{\"\":{}}"]).as_bytes().to_vec()),
        12 => {
            replace(&mut doc, Value::Null);
            (name("null"), pretty(&doc))
        }
        _ => {
            // A large array or object where a value was.
            let n = 2000 + rng.below(3000);
            let with = if rng.below(2) == 0 {
                Value::Array((0..n).map(Value::from).collect())
            } else {
                Value::Object((0..n).map(|i| (format!("k{i}"), Value::from(i))).collect())
            };
            replace(&mut doc, with);
            (name(&format!("{n} members")), pretty(&doc))
        }
    }
}

fn pretty(v: &Value) -> Vec<u8> {
    serde_json::to_string_pretty(v).unwrap_or_default().into_bytes()
}

#[test]
#[allow(
    clippy::print_stderr,
    reason = "the figures (configurations, runs, panics, time) are worth seeing in the output"
)]
fn mutated_configurations_never_crash_validate_or_plan() {
    let started = std::time::Instant::now();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let tmp = tempfile::tempdir().expect("tmp");
    // Each example copied once; a mutated file replaces its original for one configuration.
    let sources: Vec<(PathBuf, Vec<(PathBuf, String)>)> = ["quickstart", "ai-stack"]
        .iter()
        .map(|name| {
            let dir = tmp.path().join(name);
            phoenix_testkit::copy_tree(&examples.join(name), &dir);
            let mut files: Vec<(PathBuf, String)> = fs::read_dir(&dir)
                .expect("read dir")
                .map(|e| e.expect("entry").path())
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .map(|p| {
                    let text = fs::read_to_string(&p).expect("read");
                    (p, text)
                })
                .collect();
            files.sort();
            (dir, files)
        })
        .collect();
    let mut rng = Rng(0x5eed_0f9b_adc0_de11);
    let (mut runs, mut panics, mut exits) = (0usize, Vec::new(), std::collections::BTreeMap::<u8, usize>::new());
    for n in 0..CONFIGS {
        let (dir, files) = rng.pick(&sources);
        let (file, original) = rng.pick(files);
        let (what, bytes) = mutate(original, &mut rng);
        fs::write(file, &bytes).expect("write the mutated file");
        let case = format!("#{n} {}: {what}", file.strip_prefix(tmp.path()).unwrap_or(file).display());
        for args in [&["validate"][..], &["--output", "json", "validate"], &["plan"], &["--output", "json", "plan"]] {
            let backend = Arc::new(MemoryBackend::new());
            runs += 1;
            let result = std::panic::catch_unwind(|| support::phoenix_memory(dir, args, &backend));
            let Ok((code, out, err)) = result else {
                panics.push(format!("{case}, {args:?}"));
                continue;
            };
            *exits.entry(code).or_default() += 1;
            assert!(matches!(code, 0..=2), "{case}, {args:?}: exit {code}\n{err}");
            assert!(!err.contains("panicked"), "{case}, {args:?}: {err}");
            // `plan` on an invalid configuration prints its diagnostics as text on stderr and
            // nothing on stdout, also with `--output json`; any stdout must be one document.
            if args[0] == "--output" && !(out.is_empty() && args[2] == "plan" && code == 1) {
                let parsed = serde_json::from_str::<Value>(&out);
                assert!(parsed.is_ok(), "{case}, {args:?}: stdout is not one JSON document:\n{out}\n--- stderr\n{err}");
            }
        }
        fs::write(file, original).expect("restore");
    }
    eprintln!(
        "mutated configurations: {CONFIGS}, runs: {runs}, panics: {}, exit statuses: {exits:?}, time: {:.1} s",
        panics.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(panics.is_empty(), "{} run(s) panicked:\n{}", panics.len(), panics.join("\n"));
    assert!(CONFIGS >= 300 && runs == CONFIGS * 4);
    // The mutations reach both outcomes: refused configurations and accepted ones.
    assert!(exits.get(&1).is_some_and(|&n| n > 100) && exits.get(&0).is_some_and(|&n| n > 100), "{exits:?}");
}
