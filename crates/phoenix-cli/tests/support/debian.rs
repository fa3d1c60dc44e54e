//! What the tests on a real container from the Debian template share (the gateway's and the
//! features' end-to-end tests): whether the host can run them, `phoenix` and host tools run from
//! them, the template itself (built once per machine, under [`CACHE`]), and a stack directory
//! with its configuration that leaves no container behind.

#![allow(dead_code)]

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The host bridge the containers are attached to.
pub const BRIDGE: &str = "phxtest0";

/// Where the Debian template is kept between runs (with its stamp: rebuilt when its inputs change).
pub const CACHE: &str = "/var/cache/phoenix-tests";

/// The apt proxy (apt-cacher-ng) on the bridge.
pub const APT_PROXY: &str = "http://10.79.0.1:3142";

/// The tests of a file share the bridge: one runs at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Holds the host for one test.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether `program` is in one of the usual directories of the PATH.
fn on_path(program: &str) -> bool {
    ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .any(|d| Path::new(d).join(program).is_file())
}

/// What a test needs of the host besides root, the `lxc` tools, `debootstrap` and the bridge.
#[derive(Default)]
pub struct Needs {
    /// The host's programs it runs.
    pub tools: &'static [&'static str],
    /// `busybox-static`, for the busybox template.
    pub busybox: bool,
    /// apt-cacher-ng on the bridge, for the packages its container installs.
    pub apt_proxy: bool,
}

/// Whether this host can run the test `what`; in CI a host that cannot is a failure.
pub fn available(what: &str, needs: &Needs) -> bool {
    let missing = if !phoenix_testkit::is_root() {
        Some("it needs root".to_string())
    } else if let Some(p) = ["lxc-start", "debootstrap"].iter().chain(needs.tools).find(|p| !on_path(p)) {
        Some(format!("{p} is not installed (scripts/test-host.sh installs it)"))
    } else if needs.busybox && !Path::new("/bin/busybox").is_file() {
        Some("busybox-static is not installed".to_string())
    } else if !Path::new("/sys/class/net").join(BRIDGE).join("bridge").is_dir() {
        Some(format!("bridge {BRIDGE} does not exist (scripts/lxc-host.sh {BRIDGE} 10.79.0.1/24 makes it)"))
    } else if needs.apt_proxy && !apt_proxy_answers() {
        Some(format!("no apt proxy answers at {APT_PROXY} (scripts/test-host.sh starts apt-cacher-ng)"))
    } else {
        None
    };
    phoenix_testkit::real_component(what, missing)
}

/// Whether the apt proxy accepts a connection.
fn apt_proxy_answers() -> bool {
    let address = APT_PROXY.trim_start_matches("http://").parse().expect("address");
    std::net::TcpStream::connect_timeout(&address, Duration::from_secs(2)).is_ok()
}

/// Bytes of a program's output as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A program's standard output, then its standard error.
pub fn both(out: &Output) -> String {
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}

/// Runs the `phoenix` binary without colours, and without a configuration directory from the
/// environment.
pub fn phoenix_bin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_phoenix"))
        .args(["--color", "never"])
        .args(args)
        .env_remove("PHOENIX_CONFIG_DIR")
        .output()
        .expect("run phoenix")
}

/// Runs a host tool that must succeed.
pub fn must(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", both(&out));
    out
}

/// Runs a command with `input` on its standard input: its output.
pub fn feed(cmd: &mut Command, input: &[u8]) -> Output {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    child.stdin.take().expect("stdin").write_all(input).expect("write to the standard input");
    child.wait_with_output().expect("wait")
}

/// `curl` from the host with a short timeout: (HTTP status, body); status 0 when no answer came.
pub fn curl(args: &[&str]) -> (u32, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl");
    let all = text(&out.stdout);
    let (body, code) = all.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// Writes a file with the given mode, creating its directory.
pub fn put(path: &Path, content: impl AsRef<[u8]>, mode: u32) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, content).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// The Debian template the tests share: Debian 12 with NGINX, curl and the CA certificates.
fn debian_template_path() -> PathBuf {
    Path::new(CACHE).join("debian-bookworm-gateway_amd64.tar.zst")
}

/// Runs `phoenix template debian` for the shared Debian template: a run with the inputs of the
/// one that built it keeps it.
pub fn build_debian_template() -> Output {
    let out = debian_template_path();
    phoenix_bin(&["template", "debian", out.to_str().expect("utf-8"), "--include", "nginx-light,curl,ca-certificates"])
}

/// The shared Debian template, built by `phoenix template debian` (or kept from an earlier run).
#[allow(clippy::print_stderr)] // The build's duration is worth seeing in the test's output.
pub fn debian_template() -> PathBuf {
    let started = Instant::now();
    let built = build_debian_template();
    assert!(built.status.success(), "{}", both(&built));
    eprintln!("phoenix template debian: {:.1}s ({})", started.elapsed().as_secs_f64(), both(&built).trim());
    debian_template_path()
}

/// A self-signed test CA with the subject `subject`, as `<name>.pem` and `<name>.key` in `dir`:
/// (certificate, key).
pub fn make_ca(dir: &Path, name: &str, subject: &str) -> (PathBuf, PathBuf) {
    let (pem, key) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
    must(
        Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&pem)
            .args(["-days", "2", "-subj", subject])
            .args(["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]),
    );
    (pem, key)
}

/// A server certificate for the common name `cn` and the subject alternative name `san` (as
/// `DNS:name` or `IP:address`), signed by the CA `ca` (certificate, key), as `<name>.pem` and
/// `<name>.key` in `dir`: (certificate, key).
pub fn make_server_cert(dir: &Path, name: &str, ca: &(PathBuf, PathBuf), cn: &str, san: &str) -> (PathBuf, PathBuf) {
    let file = |ext: &str| dir.join(format!("{name}.{ext}"));
    let (pem, key, csr, ext) = (file("pem"), file("key"), file("csr"), file("ext"));
    must(
        Command::new("openssl")
            .args(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&csr)
            .args(["-subj", &format!("/CN={cn}")]),
    );
    std::fs::write(&ext, format!("subjectAltName={san}\nextendedKeyUsage=serverAuth\n")).expect("write");
    must(
        Command::new("openssl")
            .args(["x509", "-req", "-in"])
            .arg(&csr)
            .arg("-CA")
            .arg(&ca.0)
            .arg("-CAkey")
            .arg(&ca.1)
            .arg("-CAserial")
            .arg(file("srl"))
            .args(["-CAcreateserial", "-out"])
            .arg(&pem)
            .args(["-days", "2", "-extfile"])
            .arg(&ext),
    );
    (pem, key)
}

/// A configuration directory and everything the LXC backend keeps, under one directory that
/// unprivileged containers can traverse. Dropped, it destroys what it made.
pub struct Stack {
    _tmp: tempfile::TempDir,
    /// Everything of the stack is under this directory.
    pub root: PathBuf,
}

impl Stack {
    /// A new stack in a directory under /var/tmp named after `prefix`, with an empty
    /// configuration directory.
    pub fn new(prefix: &str) -> Stack {
        let tmp = tempfile::Builder::new().prefix(prefix).tempdir_in("/var/tmp").expect("tmp");
        let root = tmp.path().to_path_buf();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::create_dir_all(root.join("config")).expect("mkdir");
        Stack { _tmp: tmp, root }
    }

    /// The configuration directory.
    pub fn config(&self) -> PathBuf {
        self.root.join("config")
    }

    /// Writes the hypervisor file: the LXC backend with the stack's directories and the bridge
    /// as `vmbr0`, and the top-level keys of `extra`.
    pub fn write_hypervisor(&self, extra: serde_json::Value) {
        let mut hv = serde_json::json!({"backend": {"type": "lxc", "lxc_path": self.root.join("lxc"),
            "bridges": {"vmbr0": {"host_bridge": BRIDGE, "address": "10.79.0.1/24"}},
            "storage": {"local": self.root.join("storage")}}});
        for (k, v) in extra.as_object().into_iter().flatten() {
            hv[k] = v.clone();
        }
        std::fs::write(self.config().join("phoenix_hypervisor_config.json"), hv.to_string()).expect("write");
    }

    /// Writes the container file with the given containers (`"<id>": {...}` each).
    pub fn write_containers(&self, containers: &[String]) {
        std::fs::write(
            self.config().join("phoenix_lxc_configs.json"),
            format!(r#"{{"lxc_configs": {{{}}}}}"#, containers.join(",\n")),
        )
        .expect("write");
    }

    /// Replaces the first `from` in the container file with `to`.
    pub fn edit(&self, from: &str, to: &str) {
        let p = self.config().join("phoenix_lxc_configs.json");
        let t = std::fs::read_to_string(&p).expect("read");
        assert!(t.contains(from), "{from} not in the configuration");
        std::fs::write(&p, t.replacen(from, to, 1)).expect("write");
    }

    /// Builds the busybox template (`local:vztmpl/busybox.tar.gz`) into the stack's storage.
    pub fn busybox_template(&self) {
        let template = self.root.join("storage/template/cache/busybox.tar.gz");
        let out = phoenix_bin(&["template", "busybox", template.to_str().expect("utf-8")]);
        assert!(out.status.success(), "{}", both(&out));
    }

    /// Runs `phoenix` on the stack's configuration, with its lock directory.
    pub fn phoenix(&self, args: &[&str]) -> Output {
        let cfg = self.config();
        let locks = self.root.join("locks");
        let mut full = vec!["-c", cfg.to_str().expect("utf-8"), "--lock-dir", locks.to_str().expect("utf-8")];
        full.extend_from_slice(args);
        phoenix_bin(&full)
    }

    /// `lxc-attach` to the stack's container `id`, for the caller to add its options, `--` and
    /// the command.
    pub fn lxc_attach(&self, id: u32) -> Command {
        let mut cmd = Command::new("lxc-attach");
        cmd.args(["-n", &id.to_string(), "-P"]).arg(self.root.join("lxc"));
        cmd
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // Whatever happened, leave no container running.
        let _ = self.phoenix(&["destroy", "--yes", "--force"]);
    }
}
