//! Validation through the library: the examples are valid, secrets are never shown, cycles are
//! named, order comes from the whole graph, and no input makes it panic.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use phoenix_config::diagnostic::Code;
use phoenix_config::estate::EdgeKind;
use phoenix_config::{FileKind, Filesystem, RealFilesystem, Severity, Validation, graph, load, validate};
use proptest::prelude::*;

/// An in-memory configuration directory at `/cfg`.
#[derive(Default)]
struct MemFs {
    files: BTreeMap<PathBuf, String>,
}

impl MemFs {
    fn with(files: &[(FileKind, &str)]) -> MemFs {
        let mut fs = MemFs::default();
        for (kind, text) in files {
            fs.files.insert(Path::new("/cfg").join(kind.file_name()), text.to_string());
        }
        fs
    }
}

impl Filesystem for MemFs {
    fn read_to_string(&self, path: &Path) -> io::Result<String> {
        self.files.get(path).cloned().ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
    fn is_file(&self, path: &Path) -> bool {
        self.files.contains_key(path)
    }
    fn is_dir(&self, path: &Path) -> bool {
        path == Path::new("/cfg")
    }
}

fn run(fs: &dyn Filesystem, dir: &Path) -> Validation {
    let (sources, early) = load(dir, fs);
    validate(&sources, early, fs)
}

fn run_mem(files: &[(FileKind, &str)]) -> Validation {
    run(&MemFs::with(files), Path::new("/cfg"))
}

const HV: &str = r#"{"backend": {"type": "lxc", "bridges": {"vmbr0": {"address": "10.9.0.1/24"}}, "storage": {"local": "/srv/local"}}}"#;

fn container(name: &str, ip: &str, extra: &str) -> String {
    format!(
        r#"{{"name": "{name}", "memory_mb": 1024, "cores": 1, "storage_pool": "local", "storage_size_gb": 10,
            "network_config": {{"name": "eth0", "bridge": "vmbr0", "ip": "{ip}", "gw": "10.9.0.1"}},
            "unprivileged": true {extra}}}"#
    )
}

fn codes(v: &Validation) -> Vec<Code> {
    v.reports.iter().filter(|r| r.severity == Severity::Error).map(|r| r.code).collect()
}

#[test]
fn the_examples_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    for example in ["quickstart", "ai-stack"] {
        let v = run(&RealFilesystem, &root.join(example));
        assert!(v.reports.is_empty(), "{example}: {:#?}", v.reports);
        assert!(v.estate.is_some());
    }
}

#[test]
fn a_valid_estate_has_every_guest_and_an_order_that_respects_edges() {
    let lxc = format!(
        r#"{{"lxc_configs": {{
            "300": {t},
            "301": {a},
            "302": {b}
        }}}}"#,
        t = container(
            "tpl",
            "10.9.0.10/24",
            r#", "template": "local:vztmpl/x.tar.zst", "template_snapshot_name": "snap""#
        ),
        a = container("a", "10.9.0.11/24", r#", "clone_from_ctid": "300", "dependencies": ["302"]"#),
        b = container("b", "10.9.0.12/24", r#", "clone_from_ctid": "300""#),
    );
    let v = run_mem(&[(FileKind::Hypervisor, HV), (FileKind::Lxc, &lxc)]);
    let estate = v.estate.expect("valid");
    assert_eq!(estate.guests.len(), 3);
    assert_eq!(graph::order(&estate), Some(vec![300, 302, 301]));
}

#[test]
fn cycles_are_named_once_with_every_guest() {
    let lxc = format!(
        r#"{{"lxc_configs": {{"300": {a}, "301": {b}, "302": {c}}}}}"#,
        a = container("a", "10.9.0.10/24", r#", "template": "local:vztmpl/x.tar.zst", "dependencies": ["302"]"#),
        b = container("b", "10.9.0.11/24", r#", "template": "local:vztmpl/x.tar.zst", "dependencies": ["300"]"#),
        c = container("c", "10.9.0.12/24", r#", "template": "local:vztmpl/x.tar.zst", "dependencies": ["301"]"#),
    );
    let v = run_mem(&[(FileKind::Hypervisor, HV), (FileKind::Lxc, &lxc)]);
    let cycles: Vec<_> = v.reports.iter().filter(|r| r.code == Code::DependencyCycle).collect();
    assert_eq!(cycles.len(), 1, "{:#?}", v.reports);
    assert_eq!(cycles[0].message, "cycle: 300 depends on 302 depends on 301 depends on 300");
    assert_eq!(cycles[0].notes.len(), 2);
    assert!(v.estate.is_none());
}

#[test]
fn the_gateway_waits_for_the_guests_it_routes_to_unless_they_wait_for_it() {
    let hv = r#"{"backend": {"type": "lxc", "bridges": {"vmbr0": {"address": "10.9.0.1/24"}}, "storage": {"local": "/srv/local"}},
                 "gateway": {"guest": "300"}}"#;
    let svc = |path: &str, extra: &str| {
        format!(
            r#", "template": "local:vztmpl/x.tar.zst", "services": [{{"name": "web", "port": 80, "path": "{path}"}}]{extra}"#
        )
    };
    let lxc = format!(
        r#"{{"lxc_configs": {{"300": {gw}, "301": {a}, "302": {b}}}}}"#,
        gw = container("gw", "10.9.0.10/24", r#", "template": "local:vztmpl/x.tar.zst""#),
        a = container("a", "10.9.0.11/24", &svc("/a/", "")),
        b = container("b", "10.9.0.12/24", r#", "template": "local:vztmpl/x.tar.zst""#),
    );
    let v = run_mem(&[(FileKind::Hypervisor, hv), (FileKind::Lxc, &lxc)]);
    let estate = v.estate.expect("valid");
    assert_eq!(estate.edges(&estate.guests[&300]), vec![(EdgeKind::Gateway, 301)], "only guests with services");
    assert_eq!(graph::order(&estate), Some(vec![301, 300, 302]));

    // 302 waits for the gateway through 301: the gateway waits for neither (no cycle), only for 303.
    let lxc = format!(
        r#"{{"lxc_configs": {{"300": {gw}, "301": {a}, "302": {b}, "303": {c}}}}}"#,
        gw = container("gw", "10.9.0.10/24", r#", "template": "local:vztmpl/x.tar.zst""#),
        a = container("a", "10.9.0.11/24", &svc("/a/", r#", "dependencies": ["300"]"#)),
        b = container("b", "10.9.0.12/24", &svc("/b/", r#", "dependencies": ["301"]"#)),
        c = container("c", "10.9.0.13/24", &svc("/c/", "")),
    );
    let v = run_mem(&[(FileKind::Hypervisor, hv), (FileKind::Lxc, &lxc)]);
    assert!(!v.reports.iter().any(|r| r.code == Code::DependencyCycle), "{:#?}", v.reports);
    let estate = v.estate.expect("valid");
    assert_eq!(estate.edges(&estate.guests[&300]), vec![(EdgeKind::Gateway, 303)]);
    assert_eq!(graph::order(&estate), Some(vec![303, 300, 301, 302]));
}

#[test]
fn inline_secrets_are_refused_and_never_shown() {
    let secret = "s3cr3t-t0ken-value";
    let hv = format!(
        r#"{{"backend": {{"type": "proxmox", "api_url": "https://pve:8006", "node": "pve",
            "token": {{"id": "phoenix@pve!ci", "secret": "{secret}"}}}}}}"#
    );
    let v = run_mem(&[(FileKind::Hypervisor, &hv)]);
    assert_eq!(codes(&v), vec![Code::InlineSecret]);
    let rendered = format!("{:?}", v.reports);
    assert!(!rendered.contains(secret), "the secret leaked: {rendered}");
    let line = &v.reports[0].location.as_ref().expect("located").source_line;
    assert!(line.contains("\"secret\": \"********\""), "{line}");
    let json = serde_json::to_string(&v.reports).expect("json");
    assert!(!json.contains(secret));
}

#[test]
fn every_problem_is_reported_in_one_run() {
    let lxc = format!(
        r#"{{"lxc_configs": {{"300": {a}, "301": {b}}}}}"#,
        a = container(
            "a",
            "10.9.0.10/24",
            r#", "template": "local:vztmpl/x.tar.zst", "features": ["dokcer"], "vllm_port": 70000"#
        ),
        b = container("a", "10.9.0.10/24", r#", "clone_from_ctid": "300", "gpu_assignment": "0;1""#),
    );
    let v = run_mem(&[(FileKind::Hypervisor, HV), (FileKind::Lxc, &lxc)]);
    let found = codes(&v);
    for expected in [
        Code::OutOfRange,
        Code::UnknownFeature,
        Code::CloneSource,
        Code::GpuAssignment,
        Code::DuplicateHostname,
        Code::DuplicateIp,
    ] {
        assert!(found.contains(&expected), "{expected:?} missing from {found:?}");
    }
}

#[test]
fn paths_that_leave_their_base_with_dot_dot_are_named() {
    let lxc = format!(
        r#"{{"lxc_configs": {{"300": {a}, "301": {b}}}}}"#,
        a = container(
            "a",
            "10.9.0.10/24",
            r#", "template": "local:vztmpl/../../../etc/x.tar.zst", "application_script": "../../../../etc/passwd",
               "mount_points": [{"host_path": "/srv/a", "container_path": "/../../x"}, {"host_path": "/srv/b", "container_path": "/srv/../etc/b"}]"#
        ),
        b = container(
            "b",
            "10.9.0.11/24",
            r#", "template": "local:vztmpl/x.tar.zst", "application_script": "scripts/../app.sh""#
        ),
    );
    let mut fs = MemFs::with(&[(FileKind::Hypervisor, HV), (FileKind::Lxc, &lxc)]);
    for script in ["/cfg/../../../../etc/passwd", "/cfg/scripts/../app.sh"] {
        fs.files.insert(PathBuf::from(script), "#!/bin/sh\n".into());
    }
    let v = run(&fs, Path::new("/cfg"));
    let escapes: Vec<(Severity, String, String)> = v
        .reports
        .iter()
        .filter(|r| r.code == Code::PathEscape)
        .map(|r| (r.severity, r.location.as_ref().map(|l| l.path.clone()).unwrap_or_default(), r.message.clone()))
        .collect();
    assert_eq!(
        escapes,
        vec![
            (
                Severity::Warning,
                r#"$.lxc_configs["300"].template"#.to_string(),
                r#"template "local:vztmpl/../../../etc/x.tar.zst" has `..`: it names a file outside the storage's template directory"#.to_string()
            ),
            (
                Severity::Warning,
                r#"$.lxc_configs["300"].application_script"#.to_string(),
                r#"application script "../../../../etc/passwd" is /etc/passwd, outside the configuration directory: apply copies it into the guest and runs it as root"#.to_string()
            ),
            (
                Severity::Error,
                r#"$.lxc_configs["300"].mount_points[0].container_path"#.to_string(),
                r#"container_path "/../../x" climbs above the container's `/` with `..`"#.to_string()
            ),
            (
                Severity::Warning,
                r#"$.lxc_configs["300"].mount_points[1].container_path"#.to_string(),
                r#"container_path "/srv/../etc/b" has `..`: it is /etc/b"#.to_string()
            ),
        ],
        "{:?}",
        v.reports
    );
}

#[test]
fn a_wrong_container_does_not_hide_problems_of_the_others() {
    // 300 is structurally broken; 301 and 302 still get their semantic checks.
    let lxc = format!(
        r#"{{"lxc_configs": {{"300": {{"name": 5}}, "301": {b}, "302": {c}}}}}"#,
        b = container("b", "10.9.0.11/24", r#", "template": "local:vztmpl/x.tar.zst""#),
        c = container("c", "10.9.0.11/24", r#", "template": "local:vztmpl/x.tar.zst""#),
    );
    let v = run_mem(&[(FileKind::Hypervisor, HV), (FileKind::Lxc, &lxc)]);
    let found = codes(&v);
    assert!(found.contains(&Code::WrongType) && found.contains(&Code::DuplicateIp), "{found:?}");
    // A clone of the broken container is not told its source is missing.
    let lxc = format!(
        r#"{{"lxc_configs": {{"300": {{"name": 5}}, "301": {b}}}}}"#,
        b = container("b", "10.9.0.11/24", r#", "clone_from_ctid": "300", "dependencies": ["300"]"#),
    );
    let v = run_mem(&[(FileKind::Hypervisor, HV), (FileKind::Lxc, &lxc)]);
    assert!(
        !codes(&v).contains(&Code::CloneSource) && !codes(&v).contains(&Code::UnknownDependency),
        "{:#?}",
        v.reports
    );
}

#[test]
fn a_missing_directory_and_a_missing_hypervisor_file_are_errors() {
    let v = run(&MemFs::default(), Path::new("/elsewhere"));
    assert_eq!(codes(&v), vec![Code::Io]);
    let v = run_mem(&[(FileKind::Lxc, r#"{"lxc_configs": {}}"#)]);
    assert_eq!(codes(&v), vec![Code::Io]);
    assert!(v.reports[0].message.contains("phoenix_hypervisor_config.json is missing"));
}

/// A fresh directory under the system's temporary directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("phoenix-config-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a scratch directory");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_configuration_file_that_is_not_a_regular_file_is_an_error_naming_it_and_is_never_opened() {
    let lxc = FileKind::Lxc.file_name();
    for what in ["a named pipe (FIFO)", "a directory", "a link to nothing"] {
        let scratch = Scratch::new(&what.replace(' ', "-").replace(['(', ')'], ""));
        let dir = scratch.0.clone();
        std::fs::write(dir.join(FileKind::Hypervisor.file_name()), HV).expect("write");
        let target = dir.join(lxc);
        match what {
            "a named pipe (FIFO)" => {
                let made = std::process::Command::new("mkfifo").arg(&target).status().expect("run mkfifo");
                assert!(made.success());
            }
            "a directory" => std::fs::create_dir(&target).expect("mkdir"),
            _ => std::os::unix::fs::symlink("nowhere.json", &target).expect("symlink"),
        }
        // Opening a FIFO would block until a writer comes: the check must finish on its own.
        let (tx, rx) = std::sync::mpsc::channel();
        let d = dir.clone();
        std::thread::spawn(move || tx.send(Box::new(run(&RealFilesystem, &d))));
        let v = rx.recv_timeout(std::time::Duration::from_secs(20)).expect("validation finishes");
        assert_eq!(codes(&v), vec![Code::Io], "{what}: {:?}", v.reports);
        assert!(v.estate.is_none(), "{what}: a file that cannot be read must not count as absent");
        let message = &v.reports[0].message;
        assert!(message.contains(&format!("{lxc} is {what}")), "{what}: {message}");
        assert!(message.ends_with("not a regular file"), "{what}: {message}");
        assert!(v.reports[0].hint.as_deref().is_some_and(|h| h.contains("must be a JSON file")));
    }
    // The hypervisor file too: it is not "missing" when a dangling link has its name.
    let scratch = Scratch::new("hypervisor-link");
    std::os::unix::fs::symlink("elsewhere.json", scratch.0.join(FileKind::Hypervisor.file_name())).expect("symlink");
    let v = run(&RealFilesystem, &scratch.0);
    assert_eq!(codes(&v), vec![Code::Io]);
    assert!(v.reports[0].message.contains("is a link to nothing"), "{}", v.reports[0].message);
    // A link to a regular file is read as the file.
    let scratch = Scratch::new("good-link");
    std::fs::write(scratch.0.join("real.json"), HV).expect("write");
    std::os::unix::fs::symlink("real.json", scratch.0.join(FileKind::Hypervisor.file_name())).expect("symlink");
    let v = run(&RealFilesystem, &scratch.0);
    assert_eq!(codes(&v), Vec::<Code>::new(), "{:?}", v.reports);
}

/// Arbitrary JSON values, with keys drawn partly from the real format so that deep paths are
/// reached.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let keys = prop::sample::select(vec![
        "lxc_configs",
        "100",
        "950",
        "name",
        "memory_mb",
        "cores",
        "network_config",
        "ip",
        "gw",
        "bridge",
        "features",
        "clone_from_ctid",
        "dependencies",
        "template_snapshot_name",
        "backend",
        "type",
        "lxc",
        "proxmox",
        "bridges",
        "shared_volumes",
        "mounts",
        "firewall",
        "rules",
        "vms",
        "vmid",
        "health_check",
        "services",
        "x",
    ]);
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(serde_json::Value::from),
        "[a-z0-9./:, -]{0,12}".prop_map(serde_json::Value::from),
        Just(serde_json::Value::from("10.9.0.5/24")),
        Just(serde_json::Value::from("950")),
    ];
    leaf.prop_recursive(5, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::from),
            prop::collection::btree_map(keys.clone(), inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn no_json_value_makes_validation_panic(hv in json_value(), lxc in json_value(), vm in json_value()) {
        let (hv, lxc, vm) = (hv.to_string(), lxc.to_string(), vm.to_string());
        let v = run_mem(&[(FileKind::Hypervisor, &hv), (FileKind::Lxc, &lxc), (FileKind::Vm, &vm)]);
        for r in &v.reports {
            if let Some(l) = &r.location {
                prop_assert!(l.line >= 1 && l.column >= 1);
            }
        }
        prop_assert_eq!(v.estate.is_some(), v.errors() == 0);
    }

    #[test]
    fn no_text_makes_validation_panic(text in "\\PC{0,200}") {
        let v = run_mem(&[(FileKind::Hypervisor, HV), (FileKind::Lxc, &text)]);
        prop_assert!(v.reports.iter().all(|r| r.location.as_ref().is_none_or(|l| l.line >= 1)));
    }

    #[test]
    fn cutting_a_valid_file_anywhere_gives_a_located_syntax_error(cut in 1usize..400) {
        let lxc = format!(r#"{{"lxc_configs": {{"300": {}}}}}"#, container("a", "10.9.0.10/24", r#", "template": "local:vztmpl/x.tar.zst""#));
        let cut = cut.min(lxc.len() - 1);
        prop_assume!(lxc.is_char_boundary(cut));
        let v = run_mem(&[(FileKind::Hypervisor, HV), (FileKind::Lxc, &lxc[..cut])]);
        prop_assert!(v.reports.iter().any(|r| r.code == Code::Syntax), "{:?}", v.reports);
    }
}

#[test]
fn a_synthetic_estate_of_a_thousand_guests_is_valid() {
    let files = phoenix_testkit::synthetic_estate(1000);
    let mut fs = MemFs::default();
    for (name, text) in files {
        fs.files.insert(Path::new("/cfg").join(name), text);
    }
    let v = run(&fs, Path::new("/cfg"));
    assert_eq!(v.errors(), 0, "{:#?}", v.reports.first());
    let estate = v.estate.expect("valid");
    assert_eq!(estate.guests.len(), 1000);
    assert_eq!(graph::order(&estate).map(|o| o.len()), Some(1000));
}

#[test]
fn secrets_are_masked_even_in_a_file_that_does_not_parse() {
    let secret = "0f9e8d7c-6b5a-4321-9abc-def012345678";
    let hv = format!(
        "{{\"backend\": {{\"type\": \"proxmox\", \"api_url\": \"https://pve:8006\", \"node\": \"pve\",\n  \"token\": {{\"id\": \"phoenix@pve!ci\", \"secret\": \"{secret}\"}},}}}}"
    );
    let v = run_mem(&[(FileKind::Hypervisor, &hv)]);
    assert_eq!(codes(&v), vec![Code::Syntax]);
    let location = v.reports[0].location.as_ref().expect("located");
    assert!(!location.source_line.contains(secret), "{}", location.source_line);
    assert!(location.source_line.contains("\"secret\": \"********\""), "{}", location.source_line);
    // The marker still points at the stray comma, and the column is the file's own.
    let comma = location.source_line.find("},}").expect("comma") + 2;
    assert_eq!(location.marker_column, comma);
    assert_eq!(location.column, hv.lines().nth(1).and_then(|l| l.find("},}")).expect("comma") + 2);
}

#[test]
fn pvesh_needs_neither_url_nor_token_and_the_api_needs_both() {
    let pvesh =
        run_mem(&[(FileKind::Hypervisor, r#"{"backend": {"type": "proxmox", "node": "pve1", "via": "pvesh"}}"#)]);
    assert!(pvesh.reports.is_empty(), "{:#?}", pvesh.reports);
    assert!(pvesh.estate.is_some());

    let unused = run_mem(&[(
        FileKind::Hypervisor,
        r#"{"backend": {"type": "proxmox", "node": "pve1", "via": "pvesh",
            "token": {"id": "phoenix@pve!ci", "secret": "env:PVE_TOKEN_SECRET"}}}"#,
    )]);
    let warnings: Vec<_> = unused.reports.iter().filter(|r| r.severity == Severity::Warning).collect();
    assert_eq!(warnings.len(), 1, "{:#?}", unused.reports);
    assert!(warnings[0].message.contains("`token` is not used"), "{}", warnings[0].message);
    assert!(unused.estate.is_some());

    let api = run_mem(&[(FileKind::Hypervisor, r#"{"backend": {"type": "proxmox", "node": "pve1"}}"#)]);
    let messages: Vec<&str> = api.reports.iter().map(|r| r.message.as_str()).collect();
    assert_eq!(messages, ["the Proxmox backend has no `api_url`", "the Proxmox backend has no credentials"]);
    assert!(api.estate.is_none());

    let ticket_only = run_mem(&[(
        FileKind::Hypervisor,
        r#"{"backend": {"type": "proxmox", "node": "pve1", "api_url": "https://pve1:8006",
            "root_ticket": {"password": "env:PVE_ROOT_PASSWORD"}}}"#,
    )]);
    assert_eq!(codes(&ticket_only), vec![Code::Backend]);
    assert!(ticket_only.reports[0].message.contains("no API token"), "{:#?}", ticket_only.reports);

    // api_url is checked by the parser the CLI connects with: IPv6 in brackets, with or without a
    // port, is taken; a broken one is named with what is wrong.
    let api_url = |url: &str| {
        let text = format!(
            r#"{{"backend": {{"type": "proxmox", "node": "pve1", "api_url": "{url}",
                "token": {{"id": "phoenix@pve!ci", "secret": "env:PVE_TOKEN_SECRET"}}}}}}"#
        );
        run_mem(&[(FileKind::Hypervisor, &text)]).reports.iter().map(|r| r.message.clone()).collect::<Vec<_>>()
    };
    assert_eq!(api_url("https://[fd00::1]"), Vec::<String>::new());
    assert_eq!(api_url("https://[fd00::1]:8006"), Vec::<String>::new());
    assert_eq!(api_url("https://[fd00::1"), ["\"https://[fd00::1\" is not a URL: invalid IPv6 address"]);
    assert_eq!(api_url("https://pve1:port"), ["\"https://pve1:port\" is not a URL: invalid port number"]);
    assert_eq!(api_url("pve1:8006"), ["\"pve1:8006\" is not an https:// URL"]);
    assert_eq!(
        api_url("https://root:s3cret@pve1"),
        ["\"https://root:***@pve1/\" has a user name or password in it, which a server's address does not take"]
    );
}
