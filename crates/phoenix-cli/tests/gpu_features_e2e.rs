//! The built-in `nvidia`, `vllm` and `ollama` features end to end, run by `phoenix apply` in a
//! real unprivileged Debian container (the template `phoenix template debian` builds for the
//! gateway's test), with local stand-ins for what this host cannot download or run: an NVIDIA
//! `.run` installer (a shell script that takes the installer's options, refuses to run without
//! `--no-kernel-module`, and installs a `libnvidia-ml.so.<version>` and an `nvidia-smi` printing
//! it), the host's driver version file (`nvidia_version_file`; this host has no NVIDIA driver), a
//! local apt repository with an `nvidia-container-toolkit` package, a wheel of a `vllm` whose
//! `vllm serve` answers `/v1/models`, and an Ollama archive whose `bin/ollama` serves, lists and
//! pulls. They reach the container through a read-only bind mount (`mount_points`).
//!
//! The built-in `nvidia` and `vllm` need a GPU: validation wants `gpu_assignment`, and the LXC
//! backend then refuses to create a container whose `/dev/nvidia<N>` the host lacks (this one has
//! none). So the test gives the three features as features of the configuration directory that
//! override the built-in ones: the built-in manifest without `needs_gpu`, and the built-in script
//! itself (`lib.sh`, then the feature's `install.sh`, byte for byte) with one line between them
//! that keeps a copy of the staged script and its parameters in the container. The engine runs
//! them as it runs the built-in ones; the copies let the test run a feature a second time by hand
//! and read what it says (`phoenix apply` shows a script's output only when it fails), which is
//! how it checks that a second run changes nothing. What a real GPU adds (the device nodes,
//! NVIDIA's real installer and toolkit, a real model) is for `scripts/gpu-check.sh`.
//!
//! Needs root, the `lxc` tools, `debootstrap` (and the Debian archive the first time), `curl`,
//! `python3`, `dpkg-deb`, `tar`, apt-cacher-ng on 10.79.0.1:3142 and the bridge `phxtest0` with
//! 10.79.0.1/24 (`scripts/test-host.sh` sets all of it up). In CI this test must run; elsewhere it
//! is skipped with the reason when the host lacks what it needs.

#[path = "support/debian.rs"]
mod debian;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use debian::{APT_PROXY, Needs, available, both, curl, debian_template, must, put, text};
use serde_json::{Value, json};

/// The container's ID and address.
const ID: u32 = 1211;
const ADDRESS: &str = "10.79.0.211";

/// Where the artifacts are mounted in the container.
const ARTIFACTS: &str = "/mnt/phoenix-artifacts";

/// The host's driver versions: before and after its "upgrade".
const DRIVER: &str = "550.54.14";
const DRIVER_NEW: &str = "550.54.16";

/// The shared shell functions and the three features' own files, as built into Phoenix.
const LIB_SH: &str = include_str!("../../phoenix-config/features/lib.sh");
const BUILT_IN: [(&str, &str, &str); 3] = [
    (
        "nvidia",
        include_str!("../../phoenix-config/features/nvidia/feature.json"),
        include_str!("../../phoenix-config/features/nvidia/install.sh"),
    ),
    (
        "vllm",
        include_str!("../../phoenix-config/features/vllm/feature.json"),
        include_str!("../../phoenix-config/features/vllm/install.sh"),
    ),
    (
        "ollama",
        include_str!("../../phoenix-config/features/ollama/feature.json"),
        include_str!("../../phoenix-config/features/ollama/install.sh"),
    ),
];

/// Put between `lib.sh` and a feature's script: keeps the staged script and parameters (the
/// engine removes its staging directory) so that the test can run it again.
const KEEP_STAGED: &str = r#"
keep=/var/lib/phoenix-test/$PHX_FEATURE
if [ "$PHX_DIR" != "$keep" ]; then
    mkdir -p "$keep" && cp "$0" "$PHX_DIR/params.json" "$PHX_DIR/params.env" "$keep/"
fi
"#;

/// The stand-in for NVIDIA's `.run` installer of version `@V@`.
const FAKE_RUNFILE: &str = r#"#!/bin/sh
# A stand-in for NVIDIA-Linux-x86_64-@V@.run: the installer's options, no kernel module.
set -eu
kernel=yes
for a in "$@"; do
    case "$a" in
    --no-kernel-module) kernel=no ;;
    --silent | --no-questions | --ui=none | --no-kernel-module-source | --no-nouveau-check | --no-nvidia-modprobe | --no-x-check | --tmpdir=*) ;;
    *) echo "ERROR: unknown option $a" >&2 && exit 2 ;;
    esac
done
if [ "$kernel" = yes ]; then
    echo "ERROR: Unable to load the kernel module 'nvidia.ko' (this stand-in needs --no-kernel-module)" >&2
    exit 1
fi
echo "install @V@ $*" >>/var/log/fake-nvidia-installer.log
lib=/usr/lib/x86_64-linux-gnu
mkdir -p "$lib"
echo "libnvidia-ml @V@" >"$lib/libnvidia-ml.so.@V@"
ln -sf "libnvidia-ml.so.@V@" "$lib/libnvidia-ml.so.1"
cat >/usr/bin/nvidia-smi <<'EOF'
#!/bin/sh
if [ "${1:-}" = -L ]; then echo "GPU 0: Stand-in GPU (driver @V@)"; else echo "NVIDIA-SMI @V@  Driver Version: @V@"; fi
EOF
cat >/usr/bin/nvidia-installer <<'EOF'
#!/bin/sh
[ "${1:-}" = --uninstall ] || exit 2
echo "uninstall @V@" >>/var/log/fake-nvidia-installer.log
rm -f /usr/lib/x86_64-linux-gnu/libnvidia-ml.so.* /usr/bin/nvidia-smi /usr/bin/nvidia-installer
EOF
chmod 755 /usr/bin/nvidia-smi /usr/bin/nvidia-installer
"#;

/// The host's `/proc/driver/nvidia/version` of version `@V@` (the open kernel module's form,
/// with "x86_64" between "Kernel Module" and the version).
const VERSION_FILE: &str = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  @V@  Release Build  (dvs-builder@U16-I3-B03-4-3)  Thu Feb 22 01:25:25 UTC 2024\nGCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n";

/// The `vllm` package: `vllm serve MODEL [--host H] [--port P] [--served-model-name N] ...`
/// answers `/v1/models` with the served name and the arguments it was given.
const FAKE_VLLM: &str = r#"import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    argv = sys.argv[1:]
    if argv[:1] == ["--version"]:
        print("0.10.2")
        return
    if argv[:1] != ["serve"] or len(argv) < 2:
        sys.exit("usage: vllm serve MODEL [options]")
    model, opts = argv[1], argv[2:]

    def opt(name, default):
        return opts[opts.index(name) + 1] if name in opts else default

    name = opt("--served-model-name", model)
    body = json.dumps({"object": "list", "data": [{"id": name, "object": "model", "root": model}], "argv": argv}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path != "/v1/models":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    print("serving", model, "as", name, flush=True)
    ThreadingHTTPServer((opt("--host", "127.0.0.1"), int(opt("--port", "8000"))), Handler).serve_forever()
"#;

/// Writes the wheel `vllm-0.10.2-py3-none-any.whl` of [`FAKE_VLLM`] into the directory argv[1].
const BUILD_WHEEL: &str = r#"import sys, zipfile
files = {
    "vllm/__init__.py": "__version__ = '0.10.2'\n",
    "vllm/cli.py": sys.stdin.read(),
    "vllm-0.10.2.dist-info/METADATA": "Metadata-Version: 2.1\nName: vllm\nVersion: 0.10.2\n",
    "vllm-0.10.2.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: phoenix-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    "vllm-0.10.2.dist-info/entry_points.txt": "[console_scripts]\nvllm = vllm.cli:main\n",
}
files["vllm-0.10.2.dist-info/RECORD"] = "".join(f"{n},,\n" for n in files) + "vllm-0.10.2.dist-info/RECORD,,\n"
with zipfile.ZipFile(sys.argv[1] + "/vllm-0.10.2-py3-none-any.whl", "w") as z:
    for name, text in files.items():
        z.writestr(name, text)
"#;

/// Ollama's `bin/ollama`: `serve` (on OLLAMA_HOST; /api/version, /api/tags, /api/pull), and
/// `list`, `pull` and `--version` as clients of the server.
const FAKE_OLLAMA: &str = r#"#!/usr/bin/env python3
import json, os, pwd, sys, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = "0.6.5"
addr, _, port = os.environ.get("OLLAMA_HOST", "127.0.0.1:11434").rpartition(":")
store = os.path.join(pwd.getpwuid(os.getuid()).pw_dir, "models.json")


def models():
    try:
        with open(store) as f:
            return json.load(f)
    except OSError:
        return []


def call(path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    url = "http://127.0.0.1:" + port + path
    with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=10) as r:
        return json.load(r)


class Handler(BaseHTTPRequestHandler):
    def reply(self, obj):
        body = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/api/version":
            self.reply({"version": VERSION})
        elif self.path == "/api/tags":
            self.reply({"models": [{"name": m} for m in models()]})
        else:
            self.send_error(404)

    def do_POST(self):
        if self.path != "/api/pull":
            self.send_error(404)
            return
        name = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["model"]
        name = name if ":" in name else name + ":latest"
        have = models()
        with open(store, "w") as f:
            json.dump(have + [name], f)
        with open(store + ".pulls", "a") as f:
            f.write(name + "\n")
        self.reply({"status": "success"})


cmd = sys.argv[1:]
if cmd == ["--version"]:
    print("ollama version is " + VERSION)
elif cmd == ["serve"]:
    ThreadingHTTPServer((addr or "127.0.0.1", int(port)), Handler).serve_forever()
elif cmd == ["list"]:
    print("NAME\tID\tSIZE\tMODIFIED")
    for m in call("/api/tags")["models"]:
        print(m["name"] + "\t0123456789ab\t1 MB\tnow")
elif len(cmd) == 2 and cmd[0] == "pull":
    print(call("/api/pull", {"model": cmd[1]})["status"])
else:
    sys.exit("usage: ollama serve|list|pull MODEL|--version")
"#;

/// The stand-ins, in `dir` (mounted at [`ARTIFACTS`]).
fn artifacts(dir: &Path) {
    for v in [DRIVER, DRIVER_NEW] {
        put(&dir.join(format!("NVIDIA-Linux-x86_64-{v}.run")), FAKE_RUNFILE.replace("@V@", v), 0o755);
    }
    put(&dir.join("nvidia-version"), VERSION_FILE.replace("@V@", DRIVER), 0o644);

    // A flat apt repository with the toolkit: a package with nvidia-ctk and the runtime's
    // configuration as NVIDIA ships it (no-cgroups commented out).
    let pkg = dir.join("build/toolkit");
    let control = "Package: nvidia-container-toolkit\nVersion: 1.17.0-1\nArchitecture: amd64\nMaintainer: Phoenix tests <tests@phoenix.invalid>\nDescription: stand-in for the NVIDIA Container Toolkit\n";
    put(&pkg.join("DEBIAN/control"), control, 0o644);
    put(&pkg.join("usr/bin/nvidia-ctk"), "#!/bin/sh\necho \"nvidia-ctk $*\" >>/var/log/fake-nvidia-ctk.log\n", 0o755);
    put(
        &pkg.join("etc/nvidia-container-runtime/config.toml"),
        "[nvidia-container-cli]\nenvironment = []\nldconfig = \"@/sbin/ldconfig.real\"\nload-kmods = true\n#no-cgroups = false\n",
        0o644,
    );
    let deb = dir.join("apt/nvidia-container-toolkit_1.17.0-1_amd64.deb");
    std::fs::create_dir_all(dir.join("apt")).expect("mkdir");
    must(Command::new("dpkg-deb").args(["--root-owner-group", "-Zgzip", "--build"]).arg(&pkg).arg(&deb));
    let sum = text(&must(Command::new("sha256sum").arg(&deb)).stdout);
    let size = std::fs::metadata(&deb).expect("deb").len();
    let entry = format!(
        "{control}Filename: ./{}\nSize: {size}\nSHA256: {}\n",
        deb.file_name().and_then(|n| n.to_str()).expect("name"),
        sum.split_whitespace().next().expect("sum")
    );
    put(&dir.join("apt/Packages"), &entry, 0o644);

    // The vllm wheel, in a directory used as the package index.
    std::fs::create_dir_all(dir.join("pypi")).expect("mkdir");
    let mut py = Command::new("python3")
        .args(["-c", BUILD_WHEEL])
        .arg(dir.join("pypi"))
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    std::io::Write::write_all(&mut py.stdin.take().expect("stdin"), FAKE_VLLM.as_bytes()).expect("write");
    assert!(py.wait().expect("python3").success(), "the wheel was not built");

    // Ollama's archive: bin/ollama and a library directory, as the release has.
    let tree = dir.join("build/ollama");
    put(&tree.join("bin/ollama"), FAKE_OLLAMA, 0o755);
    put(&tree.join("lib/ollama/libggml-base.so"), "stand-in\n", 0o644);
    must(
        Command::new("tar")
            .args(["--owner=0", "--group=0", "-czf"])
            .arg(dir.join("ollama-linux-amd64.tgz"))
            .arg("-C")
            .arg(&tree)
            .args(["bin", "lib"]),
    );
    std::fs::remove_dir_all(dir.join("build")).expect("rm");
}

/// The stack, with the container from `template`.
struct Stack {
    base: debian::Stack,
    template: PathBuf,
}

impl Stack {
    fn new(template: PathBuf) -> Stack {
        let base = debian::Stack::new("phoenix-gpu-e2e-");
        base.write_hypervisor(json!({}));
        let cfg = base.config();
        for (name, manifest, script) in BUILT_IN {
            let mut m: Value = serde_json::from_str(manifest).expect("manifest");
            m["needs_gpu"] = json!(false);
            let dir = cfg.join("features").join(name);
            put(&dir.join("feature.json"), m.to_string(), 0o644);
            put(&dir.join("install.sh"), format!("{LIB_SH}{KEEP_STAGED}{script}"), 0o755);
        }
        artifacts(&base.root.join("artifacts"));
        Stack { base, template }
    }

    /// Writes the container file: the container with `settings` as its `feature_settings` (over
    /// the test's own), `keys` added to its block and `top` to the file's top level.
    fn configure(&self, settings: Value, keys: Value, top: Value) {
        let mut fs = json!({
            "base_setup": {"apt_proxy": APT_PROXY, "extra_packages": ["python3", "python3-venv"]},
            "nvidia": {
                "nvidia_version_file": format!("{ARTIFACTS}/nvidia-version"),
                "nvidia_runfile": format!("{ARTIFACTS}/NVIDIA-Linux-x86_64-{{version}}.run"),
                "nvidia_toolkit_apt_source": format!("deb [trusted=yes] file:{ARTIFACTS}/apt ./"),
                "nvidia_toolkit_key_url": ""
            },
            "vllm": {"vllm_index_url": format!("{ARTIFACTS}/pypi"), "vllm_start_timeout": 60},
            "ollama": {"ollama_source": format!("{ARTIFACTS}/ollama-linux-amd64.tgz"), "ollama_version": "0.6.5",
                       "ollama_models": ["tinyllama"]}
        });
        for (feature, values) in settings.as_object().into_iter().flatten() {
            for (k, v) in values.as_object().into_iter().flatten() {
                fs[feature][k] = v.clone();
            }
        }
        let mut guest = json!({
            "name": "gpu", "memory_mb": 1024, "cores": 2, "storage_pool": "local", "storage_size_gb": 10,
            "network_config": {"name": "eth0", "bridge": "vmbr0", "ip": format!("{ADDRESS}/24"), "gw": "10.79.0.1"},
            "unprivileged": true, "template": self.template,
            "features": ["base_setup", "nvidia", "vllm", "ollama"],
            "mount_points": [{"host_path": self.base.root.join("artifacts"), "container_path": ARTIFACTS, "read_only": true}],
            "feature_settings": fs
        });
        for (k, v) in keys.as_object().into_iter().flatten() {
            guest[k] = v.clone();
        }
        let mut file = json!({"lxc_configs": {ID.to_string(): guest}});
        for (k, v) in top.as_object().into_iter().flatten() {
            file[k] = v.clone();
        }
        put(&self.base.config().join("phoenix_lxc_configs.json"), file.to_string(), 0o644);
    }

    /// Runs a command in the container: (success, stdout and stderr).
    fn attach(&self, argv: &[&str]) -> (bool, String) {
        let out = self.base.lxc_attach(ID).arg("--").args(argv).output().expect("lxc-attach");
        (out.status.success(), both(&out))
    }

    /// A shell command in the container that must succeed: its output.
    fn sh(&self, command: &str) -> String {
        let (ok, out) = self.attach(&["sh", "-c", command]);
        assert!(ok, "{command}: {out}");
        out
    }

    /// Runs a feature's script again, as the engine last ran it: its output, which must end
    /// with "<feature>: nothing to change".
    fn rerun_changes_nothing(&self, feature: &str) -> String {
        let dir = format!("/var/lib/phoenix-test/{feature}");
        let (ok, out) =
            self.attach(&[&format!("{dir}/run"), "--phoenix-contract", "1", "--params", &format!("{dir}/params.json")]);
        assert!(ok, "{feature} again: {out}");
        assert_eq!(out.lines().last(), Some(format!("{feature}: nothing to change").as_str()), "{out}");
        assert!(!out.contains(": changed:"), "{out}");
        out
    }

    /// Applies; the run must fail with `message` in what it says.
    fn apply_fails_with(&self, message: &str) {
        let out = self.base.phoenix(&["apply"]);
        assert!(!out.status.success(), "{}", both(&out));
        assert!(both(&out).contains(message), "{}", both(&out));
    }

    fn apply(&self) {
        let started = Instant::now();
        let out = self.base.phoenix(&["apply"]);
        assert!(out.status.success(), "{}", both(&out));
        #[allow(clippy::print_stderr)] // The apply's duration is worth seeing in the test's output.
        {
            eprintln!("apply: {:.1}s", started.elapsed().as_secs_f64());
        }
    }
}

fn models(port: u16) -> Value {
    let (code, body) = curl(&[&format!("http://{ADDRESS}:{port}/v1/models")]);
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("json")
}

#[test]
fn nvidia_vllm_and_ollama_install_serve_and_change_nothing_the_second_time() {
    let needs =
        Needs { tools: &["curl", "python3", "dpkg-deb", "tar", "sha256sum"], apt_proxy: true, ..Needs::default() };
    if !available("the GPU features' end-to-end test", &needs) {
        return;
    }
    let s = Stack::new(debian_template());
    let none = || json!({});

    // No version given and none to read: a clear error.
    s.configure(json!({"nvidia": {"nvidia_version_file": format!("{ARTIFACTS}/no-such-file")}}), none(), none());
    s.apply_fails_with("no driver version: nvidia_driver_version is not set and neither");

    // A version given that is not the host's kernel module's: refused, nothing installed.
    s.configure(json!({"nvidia": {"nvidia_driver_version": "550.54.15"}}), none(), none());
    s.apply_fails_with(&format!(
        "nvidia_driver_version is 550.54.15, but the host's kernel module is {DRIVER} ({ARTIFACTS}/nvidia-version): the container's libraries must match"
    ));
    assert!(!s.attach(&["test", "-e", "/var/log/fake-nvidia-installer.log"]).0, "the installer ran");

    // The version read from the host's file; vLLM without a model: installed, no service.
    s.configure(none(), none(), none());
    s.apply();
    let log = s.sh("cat /var/log/fake-nvidia-installer.log");
    let flags = "--silent --no-questions --ui=none --no-kernel-module --no-kernel-module-source --no-nouveau-check \
                 --no-nvidia-modprobe --no-x-check --tmpdir=/tmp/";
    assert!(log.starts_with(&format!("install {DRIVER} {flags}")) && log.lines().count() == 1, "{log}");
    assert_eq!(s.sh("nvidia-smi").trim(), format!("NVIDIA-SMI {DRIVER}  Driver Version: {DRIVER}"));
    assert!(s.attach(&["test", "-f", &format!("/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.{DRIVER}")]).0);
    // The toolkit from the local repository, told not to use cgroups (the container is unprivileged).
    assert!(s.sh("dpkg-query -W -f='${Status}' nvidia-container-toolkit").contains("install ok installed"));
    let toolkit = s.sh("cat /etc/nvidia-container-runtime/config.toml");
    assert!(toolkit.lines().any(|l| l == "no-cgroups = true") && !toolkit.contains("#no-cgroups"), "{toolkit}");
    assert_eq!(s.sh("/opt/vllm/bin/vllm --version").trim(), "0.10.2");
    assert!(!s.attach(&["test", "-e", "/etc/systemd/system/vllm.service"]).0, "a service without a model");
    // Ollama serves (as the user ollama, the System V script of a container without systemd)
    // and has pulled its model.
    let (code, body) = curl(&[&format!("http://{ADDRESS}:11434/api/version")]);
    assert_eq!((code, body.as_str()), (200, r#"{"version": "0.6.5"}"#));
    assert!(s.sh("OLLAMA_HOST=127.0.0.1:11434 ollama list").contains("tinyllama:latest\t"));
    assert!(s.sh("cat /etc/systemd/system/ollama.service").contains("\nUser=ollama\n"));
    assert!(s.sh("cat /etc/systemd/system/ollama.service").contains("\nExecStart='/usr/local/bin/ollama' 'serve'\n"));
    assert_eq!(s.sh("cat /etc/default/ollama").lines().last(), Some("OLLAMA_HOST=0.0.0.0:11434"));
    assert_eq!(s.sh("stat -c %U /proc/$(cat /run/ollama.pid)").trim(), "ollama");

    // A second run of each changes nothing: no installer, no pip, no pull.
    s.rerun_changes_nothing("nvidia");
    let vllm = s.rerun_changes_nothing("vllm");
    assert!(vllm.contains("vllm: no model given"), "{vllm}");
    s.rerun_changes_nothing("ollama");
    assert_eq!(s.sh("wc -l < /var/log/fake-nvidia-installer.log").trim(), "1");
    assert_eq!(s.sh("cat /usr/share/ollama/models.json.pulls"), "tinyllama:latest\n");

    // The host's driver is upgraded (the version the file says, and the file's `nvidia_driver_version`,
    // which the feature takes from `lxc.nvidia_driver_version`); vLLM gets a model in the
    // engine settings' form, a name, a port and arguments.
    put(&s.base.root.join("artifacts/nvidia-version"), VERSION_FILE.replace("@V@", DRIVER_NEW), 0o644);
    let engine = json!({"ModelConfig": {"model": "/srv/models/tiny", "max_model_len": 2048, "enforce_eager": true},
                        "CacheConfig": {"gpu_memory_utilization": 0.5}});
    s.configure(
        none(),
        json!({"vllm_engine_config": engine, "vllm_served_model_name": "tiny", "vllm_port": 8001,
               "vllm_args": ["--max-num-seqs", "4"]}),
        json!({"nvidia_driver_version": DRIVER_NEW}),
    );
    s.apply();
    let log = s.sh("cat /var/log/fake-nvidia-installer.log");
    let steps: Vec<&str> = log.lines().map(|l| l.split(" --").next().unwrap_or(l)).collect();
    assert_eq!(steps, [format!("install {DRIVER}"), format!("uninstall {DRIVER}"), format!("install {DRIVER_NEW}")]);
    assert_eq!(
        s.sh("ls /usr/lib/x86_64-linux-gnu/ | grep libnvidia-ml").trim(),
        format!("libnvidia-ml.so.1\nlibnvidia-ml.so.{DRIVER_NEW}")
    );
    let unit = s.sh("cat /etc/systemd/system/vllm.service");
    let exec = "ExecStart='/opt/vllm/bin/vllm' 'serve' '/srv/models/tiny' '--host' '0.0.0.0' '--port' '8001' \
                '--served-model-name' 'tiny' '--gpu-memory-utilization' '0.5' '--max-model-len' '2048' \
                '--enforce-eager' '--max-num-seqs' '4'";
    assert!(unit.lines().any(|l| l == exec), "{unit}");
    assert!(unit.contains("\nUser=vllm\n") && unit.contains("\nEnvironmentFile=-/etc/default/vllm\n"), "{unit}");
    let sysv = s.sh("cat /etc/init.d/vllm");
    assert!(
        sysv.contains("--chuid vllm") && sysv.contains("'/opt/vllm/bin/vllm' 'serve' '/srv/models/tiny'"),
        "{sysv}"
    );
    let served = models(8001);
    assert_eq!(served["data"][0]["id"], "tiny", "{served}");
    assert_eq!(served["data"][0]["root"], "/srv/models/tiny", "{served}");
    let argv = [
        "serve",
        "/srv/models/tiny",
        "--host",
        "0.0.0.0",
        "--port",
        "8001",
        "--served-model-name",
        "tiny",
        "--gpu-memory-utilization",
        "0.5",
        "--max-model-len",
        "2048",
        "--enforce-eager",
        "--max-num-seqs",
        "4",
    ];
    assert_eq!(served["argv"], json!(argv), "{served}");
    assert_eq!(s.sh("stat -c %U /proc/$(cat /run/vllm.pid)").trim(), "vllm");

    let pid = s.sh("cat /run/vllm.pid");
    s.rerun_changes_nothing("nvidia");
    let vllm = s.rerun_changes_nothing("vllm");
    assert!(vllm.contains("vllm: serving /srv/models/tiny on port 8001"), "{vllm}");
    assert_eq!(s.sh("cat /run/vllm.pid"), pid, "vllm was restarted");
    assert_eq!(s.sh("wc -l < /var/log/fake-nvidia-installer.log").trim(), "3");

    // Another port: the service is redefined and restarted on it.
    s.configure(
        none(),
        json!({"vllm_engine_config": engine, "vllm_served_model_name": "tiny", "vllm_port": 8002,
               "vllm_args": ["--max-num-seqs", "4"]}),
        json!({"nvidia_driver_version": DRIVER_NEW}),
    );
    s.apply();
    assert_ne!(s.sh("cat /run/vllm.pid"), pid, "vllm was not restarted");
    assert_eq!(models(8002)["data"][0]["id"], "tiny");
    assert_eq!(curl(&[&format!("http://{ADDRESS}:8001/v1/models")]).0, 0, "the old port still answers");

    let out = s.base.phoenix(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
}
