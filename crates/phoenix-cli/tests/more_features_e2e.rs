//! The built-in features `trusted_ca`, `step_cli`, `traefik` and `python_api_service` end to end,
//! in one real unprivileged Debian container (the template `phoenix template debian` builds), from
//! local artifacts only: CA certificates made here (as PEM text, as a path, and as a step-ca style
//! `roots.pem` checked by fingerprint over TLS), a stand-in `step` in a .deb, a stand-in `traefik`
//! in a release-style tarball, and a wheel built here for the Python API. Then every feature run
//! again in the container says it has nothing to change, and a broken certificate stops the apply
//! with a clear error, changing nothing.
//!
//! Needs root, the `lxc` tools, `debootstrap`, `openssl`, `curl`, `dpkg-deb`, the bridge
//! `phxtest0` with 10.79.0.1/24 and apt-cacher-ng on 10.79.0.1:3142 (`scripts/test-host.sh` sets
//! all of it up). In CI this test must run; elsewhere it is skipped with the reason when the host
//! lacks what it needs.

#[path = "support/debian.rs"]
mod debian;

use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use debian::{
    APT_PROXY, Needs, available, both, curl, debian_template, feed, make_ca, make_server_cert, must, put, text,
};
use phoenix_config::RealFilesystem;
use phoenix_config::feature_values::{FeatureValues, guest_block, shell_env};
use phoenix_config::features::{Catalog, builtin_script};

/// The container and its address.
const ID: u32 = 1221;
const ADDRESS: &str = "10.79.0.221";

/// The host's TLS server (`openssl s_server`) giving `roots.pem` and a page, on the bridge.
const TLS_PORT: u16 = 29443;

/// CRC-32 (IEEE), for the wheel's zip entries.
fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 == 1 { (c >> 1) ^ 0xEDB8_8320 } else { c >> 1 };
        }
    }
    !c
}

/// A zip archive of stored (uncompressed) entries: what a wheel is.
fn zip_stored(files: &[(&str, &str)]) -> Vec<u8> {
    let (mut out, mut central) = (Vec::new(), Vec::new());
    let u16le = |v: usize| u16::try_from(v).expect("small").to_le_bytes();
    let u32le = |v: usize| u32::try_from(v).expect("small").to_le_bytes();
    for (name, data) in files {
        let offset = out.len();
        let fixed = |v: &mut Vec<u8>| {
            v.extend(u16le(20)); // version needed
            v.extend(u16le(0)); // flags
            v.extend(u16le(0)); // stored
            v.extend(u16le(0)); // time
            v.extend(u16le(33)); // 1980-01-01
            v.extend(crc32(data.as_bytes()).to_le_bytes());
            v.extend(u32le(data.len()));
            v.extend(u32le(data.len()));
            v.extend(u16le(name.len()));
            v.extend(u16le(0)); // extra
        };
        out.extend(0x0403_4b50u32.to_le_bytes());
        fixed(&mut out);
        out.extend(name.as_bytes());
        out.extend(data.as_bytes());
        central.extend(0x0201_4b50u32.to_le_bytes());
        central.extend(u16le(20)); // version made by
        fixed(&mut central);
        central.extend(u16le(0)); // comment
        central.extend(u16le(0)); // disk
        central.extend(u16le(0)); // internal attributes
        central.extend(u32le(0)); // external attributes
        central.extend(u32le(offset));
        central.extend(name.as_bytes());
    }
    let start = out.len();
    out.extend(&central);
    out.extend(0x0605_4b50u32.to_le_bytes());
    out.extend(u16le(0));
    out.extend(u16le(0));
    out.extend(u16le(files.len()));
    out.extend(u16le(files.len()));
    out.extend(u32le(central.len()));
    out.extend(u32le(start));
    out.extend(u16le(0));
    out
}

/// The test API: answers every GET with a greeting from its environment.
const PHXDEMO_MAIN: &str = r#"import http.server, os

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("hello " + os.environ.get("GREETING", "?") + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

http.server.HTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8000"))), Handler).serve_forever()
"#;

/// The stand-in `step`: reports its version, and a bootstrap writes the defaults and a log line.
const FAKE_STEP: &str = r#"#!/bin/sh
case "$1" in
version) echo "Smallstep CLI/0.28.7 (linux/amd64)" ;;
path) echo "${STEPPATH:-$HOME/.step}" ;;
ca)
    [ "$2" = bootstrap ] || exit 2
    shift 2
    while [ $# -gt 0 ]; do
        case "$1" in --ca-url) url=$2; shift ;; --fingerprint) fp=$2; shift ;; esac
        shift
    done
    d="${STEPPATH:-$HOME/.step}/config"
    mkdir -p "$d"
    printf '{\n  "ca-url": "%s",\n  "fingerprint": "%s",\n  "root": "%s/certs/root_ca.crt"\n}\n' "$url" "$fp" "${d%/config}" >"$d/defaults.json"
    echo "bootstrap $url $fp" >>/var/log/step-bootstrap.log
    ;;
*) exit 2 ;;
esac
"#;

/// The stand-in `traefik`: reports its version, and serves its configuration directory on 8081.
const FAKE_TRAEFIK: &str = r#"#!/bin/sh
if [ "$1" = version ]; then
    printf 'Version:      3.5.3\nCodename:     stand-in\n'
    exit 0
fi
echo "$@" >/tmp/traefik.args
exec python3 -m http.server 8081 --bind 127.0.0.1 --directory /etc/traefik
"#;

/// The artifacts the container reads from /srv/artifacts: the CAs, the .deb, the tarball, the
/// wheel. Returns (CA given as text, CA served as roots.pem with its SHA-256 fingerprint).
fn artifacts(art: &Path, work: &Path) -> (String, String) {
    let arch = text(&must(Command::new("dpkg").arg("--print-architecture")).stdout).trim().to_string();
    let ca = |name: &str| make_ca(work, name, &format!("/CN=Phoenix test {name}"));
    let (ca_text, ca_path, ca_url) = (ca("ca-text"), ca("ca-path"), ca("ca-url"));
    std::fs::copy(&ca_path.0, art.join("ca-path.pem")).expect("copy");
    std::fs::copy(&ca_url.0, art.join("roots.pem")).expect("copy");
    // Its key stays in `work`, which the container does not see.
    let (server, _) = make_server_cert(work, "server", &ca_url, "10.79.0.1", "IP:10.79.0.1");
    std::fs::copy(&server, art.join("server.pem")).expect("copy");
    put(&art.join("hello.txt"), "hello over TLS\n", 0o644);
    let fingerprint =
        must(Command::new("openssl").arg("x509").arg("-in").arg(&ca_url.0).args(["-noout", "-fingerprint", "-sha256"]));
    let fingerprint = text(&fingerprint.stdout).trim().rsplit('=').next().expect("fingerprint").to_string();

    let pkg = work.join("step-pkg");
    put(&pkg.join("usr/bin/step"), FAKE_STEP, 0o755);
    put(
        &pkg.join("DEBIAN/control"),
        format!(
            "Package: step-cli\nVersion: 0.28.7-1\nArchitecture: {arch}\nMaintainer: Phoenix tests <tests@phoenix.invalid>\nDescription: stand-in for the step CLI\n"
        ),
        0o644,
    );
    let deb = art.join(format!("step-cli_0.28.7_{arch}.deb"));
    must(Command::new("dpkg-deb").args(["--root-owner-group", "-b"]).arg(&pkg).arg(&deb));

    let tdir = work.join("traefik");
    put(&tdir.join("traefik"), FAKE_TRAEFIK, 0o755);
    put(&tdir.join("LICENSE.md"), "stand-in\n", 0o644);
    let tarball = art.join(format!("traefik_v3.5.3_linux_{arch}.tar.gz"));
    must(Command::new("tar").arg("-czf").arg(&tarball).arg("-C").arg(&tdir).args(["traefik", "LICENSE.md"]));

    let record = "phxdemo/__init__.py,,\nphxdemo/__main__.py,,\nphxdemo-1.0.dist-info/METADATA,,\n\
                  phxdemo-1.0.dist-info/WHEEL,,\nphxdemo-1.0.dist-info/RECORD,,\n";
    let wheel = zip_stored(&[
        ("phxdemo/__init__.py", ""),
        ("phxdemo/__main__.py", PHXDEMO_MAIN),
        ("phxdemo-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: phxdemo\nVersion: 1.0\n"),
        (
            "phxdemo-1.0.dist-info/WHEEL",
            "Wheel-Version: 1.0\nGenerator: phoenix-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        ),
        ("phxdemo-1.0.dist-info/RECORD", record),
    ]);
    put(&art.join("wheels/phxdemo-1.0-py3-none-any.whl"), wheel, 0o644);
    // Configuration values are one line: the PEM text with spaces for its line breaks.
    (std::fs::read_to_string(&ca_text.0).expect("read").trim().replace('\n', " "), fingerprint)
}

/// The dynamic configuration given to traefik (backquotes and all, as Traefik rules have them).
const DYNAMIC: &str = r#"{"http": {"routers": {"api": {"rule": "PathPrefix(`/`)", "service": "api"}},
    "services": {"api": {"loadBalancer": {"servers": [{"url": "http://127.0.0.1:8000"}]}}}}}"#;

/// The greeting the Python API gets from `python_api_env`: quotes and a `$` stay as they are.
const GREETING: &str = r#"from Phoenix's "env" $HOME"#;

/// The stack, with the host's TLS server.
struct Stack {
    base: debian::Stack,
    tls: Child,
}

impl Stack {
    fn new(debian: &Path) -> Stack {
        let base = debian::Stack::new("phoenix-more-e2e-");
        let (art, work, cfg) = (base.root.join("art"), base.root.join("work"), base.config());
        for d in [&art, &work, &cfg] {
            std::fs::create_dir_all(d).expect("mkdir");
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let (ca_text, fingerprint) = artifacts(&art, &work);
        let tls = Command::new("openssl")
            .args(["s_server", "-quiet", "-WWW", "-accept", &format!("10.79.0.1:{TLS_PORT}")])
            .args(["-cert", "server.pem", "-key"])
            .arg(work.join("server.key"))
            .current_dir(&art)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_server");

        base.write_hypervisor(serde_json::json!({}));
        let settings = serde_json::json!({
            "base_setup": {"apt_proxy": APT_PROXY, "packages": ["ca-certificates"], "locale": "C.UTF-8"},
            "trusted_ca": {
                "ca_certificates": [ca_text, "/srv/artifacts/ca-path.pem"],
                "ca_url": format!("https://10.79.0.1:{TLS_PORT}/roots.pem"),
                "ca_fingerprint": fingerprint,
            },
            "step_cli": {
                "step_cli_source": "/srv/artifacts/step-cli_{version}_{arch}.deb",
                "step_ca_url": "https://ca.test:9000",
                "step_ca_fingerprint": "0d7d3834cf187726cf331c40a31aa7ef6b29ba4df601416c9788f6ee01058cf3",
            },
            "python_api_service": {
                "python_api_requirements": ["phxdemo==1.0"],
                "python_api_index_url": "/srv/artifacts/wheels",
                "python_api_command": "python3 -m phxdemo",
                "python_api_port": 8000,
                "python_api_env": {"GREETING": GREETING, "PORT": 8000},
            },
            "traefik": {
                "traefik_source": "/srv/artifacts/traefik_{version}_linux_{arch}.tar.gz",
                "traefik_static_config": {"entryPoints": {"web": {"address": ":8081"}}},
                "traefik_dynamic_config": serde_json::from_str::<serde_json::Value>(DYNAMIC).expect("json"),
                "traefik_ping_url": "http://127.0.0.1:8081/traefik.yml",
            },
        });
        let lxc = serde_json::json!({"lxc_configs": {ID.to_string(): {
            "name": "extras", "memory_mb": 1024, "cores": 1, "storage_pool": "local", "storage_size_gb": 10,
            "network_config": {"name": "eth0", "bridge": "vmbr0", "ip": format!("{ADDRESS}/24"), "gw": "10.79.0.1"},
            "unprivileged": true, "template": debian.display().to_string(),
            "mount_points": [{"host_path": art.display().to_string(), "container_path": "/srv/artifacts", "read_only": true}],
            "features": ["base_setup", "trusted_ca", "step_cli", "python_api_service", "traefik"],
            "feature_settings": settings,
        }}});
        std::fs::write(cfg.join("phoenix_lxc_configs.json"), serde_json::to_string_pretty(&lxc).expect("json"))
            .expect("write");
        Stack { base, tls }
    }

    /// Runs a command in the container, with the environment Phoenix gives scripts: its output
    /// (standard output, then standard error) and whether it succeeded.
    fn attach_with(&self, argv: &[&str], input: &[u8]) -> (String, bool) {
        let mut attach = self.base.lxc_attach(ID);
        attach.args(["--clear-env", "--set-var", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]);
        let out = feed(attach.arg("--").args(argv), input);
        (both(&out), out.status.success())
    }

    /// A command's standard output and error in the container; it must succeed.
    fn attach(&self, argv: &[&str]) -> String {
        let (out, ok) = self.attach_with(argv, b"");
        assert!(ok, "{argv:?} failed in the container: {out}");
        out
    }

    /// Runs a feature's script in the container again, with the parameters Phoenix gives it (the
    /// same library functions compute them): its output.
    fn rerun(&self, feature: &str) -> String {
        let (sources, early) = phoenix_config::load(&self.base.config(), &RealFilesystem);
        let estate = phoenix_config::validate(&sources, early, &RealFilesystem).estate.expect("a valid configuration");
        let guest = &estate.guests[&ID];
        let catalog = Catalog::builtin();
        let manifest = catalog.get(feature).expect("built in");
        let values = FeatureValues::new(&estate).resolve(manifest, &guest_block(guest));
        let env = shell_env(manifest, ID, guest.name(), &values);
        let dir = "/tmp/phoenix-rerun";
        self.attach_with(&["sh", "-c", &format!("mkdir -p {dir} && cat >{dir}/params.env")], env.as_bytes());
        let script = builtin_script(feature).expect("script");
        self.attach_with(&["sh", "-c", &format!("cat >{dir}/run && chmod 755 {dir}/run")], &script);
        let (out, ok) = self.attach_with(
            &[&format!("{dir}/run"), "--phoenix-contract", "1", "--params", "/tmp/phoenix-rerun/params.json"],
            b"",
        );
        assert!(ok, "{feature} failed when run again: {out}");
        out
    }

    fn edit(&self, change: impl FnOnce(&mut serde_json::Value)) {
        let p = self.base.config().join("phoenix_lxc_configs.json");
        let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).expect("read")).expect("json");
        change(&mut v["lxc_configs"][ID.to_string()]["feature_settings"]);
        std::fs::write(&p, serde_json::to_string_pretty(&v).expect("json")).expect("write");
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.tls.kill();
        let _ = self.tls.wait();
        // Then `base` destroys the containers.
    }
}

/// Waits until the host's TLS server listens.
fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let addr = format!("10.79.0.1:{port}").parse().expect("address");
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "openssl s_server does not listen on port {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[allow(clippy::print_stderr)] // The apply's duration is worth seeing in the test's output.
fn trusted_ca_step_cli_traefik_and_python_api_service_install_from_local_artifacts_and_rerun_idle() {
    let needs = Needs { tools: &["openssl", "curl", "dpkg-deb"], apt_proxy: true, ..Needs::default() };
    if !available("the trusted_ca, step_cli, traefik and python_api_service test", &needs) {
        return;
    }
    let debian = debian_template();
    let s = Stack::new(&debian);
    wait_listening(TLS_PORT);

    let started = Instant::now();
    let out = s.base.phoenix(&["apply"]);
    assert!(out.status.success(), "{}", both(&out));
    eprintln!("apply of the container with the four features: {:.1}s", started.elapsed().as_secs_f64());

    // trusted_ca: three certificates in the store and the bundle; the one from roots.pem lets
    // curl and openssl in the guest trust the host's server without being told about the CA.
    let listed = s.attach(&["sh", "-c", "ls /usr/local/share/ca-certificates/ /etc/ssl/certs/ | grep phoenix-"]);
    for n in 1..=3 {
        assert!(listed.contains(&format!("phoenix-{n}.crt")), "{listed}");
        assert!(listed.contains(&format!("phoenix-{n}.pem")), "{listed}");
    }
    assert!(!listed.contains("phoenix-4"), "{listed}");
    let bundle = s.attach(&["cat", "/etc/ssl/certs/ca-certificates.crt"]);
    for ca in ["ca-text", "ca-path", "ca-url"] {
        let pem = std::fs::read_to_string(s.base.root.join(format!("work/{ca}.pem"))).expect("read");
        assert!(bundle.contains(pem.trim()), "{ca} is not in the bundle");
    }
    let page = s.attach(&["curl", "-fsS", &format!("https://10.79.0.1:{TLS_PORT}/hello.txt")]);
    assert_eq!(page, "hello over TLS\n");
    assert_eq!(s.attach(&["openssl", "verify", "/srv/artifacts/server.pem"]), "/srv/artifacts/server.pem: OK\n");

    // step_cli: the package is installed, and bootstrapped once.
    assert!(s.attach(&["dpkg-query", "-W", "step-cli"]).starts_with("step-cli\t0.28.7-1"));
    let defaults = s.attach(&["cat", "/root/.step/config/defaults.json"]);
    assert!(defaults.contains(r#""ca-url": "https://ca.test:9000""#), "{defaults}");

    // python_api_service: the API answers from its virtual environment with the environment file's
    // greeting; the file is root's only.
    let (code, body) = curl(&[&format!("http://{ADDRESS}:8000/")]);
    assert_eq!((code, body.as_str()), (200, format!("hello {GREETING}\n").as_str()));
    assert_eq!(s.attach(&["stat", "-c", "%a %U", "/etc/phoenix/python-api.env"]), "600 root\n");
    let pid = s.attach(&["cat", "/run/python-api.pid"]);
    assert_eq!(s.attach(&["stat", "-c", "%U", &format!("/proc/{}", pid.trim())]), "python-api\n");

    // traefik: the configuration files, the file provider added to the static one, the service
    // running as traefik with its configuration file.
    let static_config = s.attach(&["cat", "/etc/traefik/traefik.yml"]);
    assert_eq!(
        static_config,
        "{\"providers\":{\"file\":{\"directory\":\"/etc/traefik/dynamic\",\"watch\":true}},\"entryPoints\":{\"web\":{\"address\":\":8081\"}}}\n"
    );
    let dynamic: serde_json::Value = serde_json::from_str(&s.attach(&["cat", "/etc/traefik/dynamic/phoenix.yml"]))
        .expect("the dynamic file is JSON");
    assert_eq!(dynamic, serde_json::from_str::<serde_json::Value>(DYNAMIC).expect("json"));
    assert_eq!(s.attach(&["cat", "/tmp/traefik.args"]), "--configfile=/etc/traefik/traefik.yml\n");
    let pid = s.attach(&["cat", "/run/traefik.pid"]);
    assert_eq!(s.attach(&["stat", "-c", "%U", &format!("/proc/{}", pid.trim())]), "traefik\n");
    assert!(s.attach(&["cat", "/etc/systemd/system/traefik.service"]).contains("User=traefik\n"));

    eprintln!("checks after the apply: {:.1}s", started.elapsed().as_secs_f64());
    // Every feature again, as Phoenix runs it: nothing to change, the services not restarted.
    let pids = s.attach(&["cat", "/run/traefik.pid", "/run/python-api.pid"]);
    for feature in ["trusted_ca", "step_cli", "python_api_service", "traefik"] {
        let said = s.rerun(feature);
        assert_eq!(said.lines().last(), Some(format!("{feature}: nothing to change").as_str()), "{said}");
        assert!(!said.contains("changed:"), "{said}");
    }
    assert_eq!(s.attach(&["cat", "/run/traefik.pid", "/run/python-api.pid"]), pids);
    assert_eq!(s.attach(&["wc", "-l", "/var/log/step-bootstrap.log"]), "1 /var/log/step-bootstrap.log\n");
    let out = s.base.phoenix(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));

    eprintln!("the features run again: {:.1}s", started.elapsed().as_secs_f64());
    // A certificate that is not one: the apply stops naming it, and the store is as it was.
    let store = s.attach(&["sh", "-c", "cat /usr/local/share/ca-certificates/phoenix-*.crt"]);
    s.edit(|settings| {
        settings["trusted_ca"]["ca_certificates"][1] =
            "-----BEGIN CERTIFICATE----- bm90IGEgY2VydGlmaWNhdGU= -----END CERTIFICATE-----".into();
    });
    let out = s.base.phoenix(&["apply"]);
    assert!(!out.status.success(), "{}", both(&out));
    assert!(
        both(&out).contains("trusted_ca: error: ca_certificates[1] (PEM text) holds a certificate openssl cannot read"),
        "{}",
        both(&out)
    );
    assert_eq!(s.attach(&["sh", "-c", "cat /usr/local/share/ca-certificates/phoenix-*.crt"]), store);

    eprintln!("the refused certificate: {:.1}s", started.elapsed().as_secs_f64());
    // Without the path's CA: two certificates, the third file removed from the store.
    s.edit(|settings| {
        let list = settings["trusted_ca"]["ca_certificates"].as_array_mut().expect("list");
        list.truncate(1);
    });
    let out = s.base.phoenix(&["apply"]);
    assert!(out.status.success(), "{}", both(&out));
    let listed = s.attach(&["sh", "-c", "ls /usr/local/share/ca-certificates/ /etc/ssl/certs/ | grep phoenix- | sort"]);
    assert_eq!(listed, "phoenix-1.crt\nphoenix-1.pem\nphoenix-2.crt\nphoenix-2.pem\n");
    let bundle = s.attach(&["cat", "/etc/ssl/certs/ca-certificates.crt"]);
    let dropped = std::fs::read_to_string(s.base.root.join("work/ca-path.pem")).expect("read");
    assert!(!bundle.contains(dropped.trim()), "the dropped CA is still trusted");
    assert_eq!(s.attach(&["curl", "-fsS", &format!("https://10.79.0.1:{TLS_PORT}/hello.txt")]), "hello over TLS\n");
}
