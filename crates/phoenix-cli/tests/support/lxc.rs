//! A stack of real containers for the tests that need them (root, the `lxc` tools,
//! `busybox-static`, and the bridge `phxtest0` with 10.79.0.1/24, which `.ci/run` sets up): a
//! configuration directory, its backend's directories, and `phoenix` run on them.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The host bridge the stacks' containers are attached to.
pub const BRIDGE: &str = "phxtest0";

/// The tests share the bridge and check what is left on it: one runs at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Holds the host for one test.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether this host can run real containers; in CI a host that cannot is a failure.
pub fn lxc_available() -> bool {
    let missing = if !phoenix_testkit::is_root() {
        Some("they need root".to_string())
    } else if Command::new("lxc-start").arg("--version").output().is_err() {
        Some("the lxc tools are not installed (apt-get install lxc)".to_string())
    } else if !Path::new("/bin/busybox").is_file() {
        Some("busybox-static is not installed".to_string())
    } else if !Path::new("/sys/class/net").join(BRIDGE).join("bridge").is_dir() {
        Some(format!("bridge {BRIDGE} does not exist (scripts/lxc-host.sh {BRIDGE} 10.79.0.1/24 makes it)"))
    } else {
        None
    };
    phoenix_testkit::real_component("the LXC end-to-end tests", missing)
}

/// A configuration directory and everything the backend keeps, under one directory that
/// unprivileged containers can traverse.
pub struct Stack {
    _tmp: tempfile::TempDir,
    /// Everything of the stack is under this directory.
    pub root: PathBuf,
}

impl Stack {
    /// `shared` lists the containers the shared volume `data` is mounted into.
    pub fn new(containers: &str, shared: &[u32]) -> Stack {
        let tmp = tempfile::Builder::new().prefix("phoenix-e2e-").tempdir_in("/var/tmp").expect("tmp");
        let root = tmp.path().to_path_buf();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let cfg = root.join("config");
        std::fs::create_dir_all(cfg.join("features/base_setup")).expect("mkdir");
        let hv = format!(
            r#"{{"backend": {{"type": "lxc", "lxc_path": "{lxc}", "bridges": {{"vmbr0": {{"host_bridge": "{BRIDGE}", "address": "10.79.0.1/24"}}}},
                 "storage": {{"local": "{storage}"}}}},
              "shared_volumes": {{"data": {{"host_path": "{shared}", "mounts": {{{mounts}}}}}}}}}"#,
            lxc = root.join("lxc").display(),
            storage = root.join("storage").display(),
            shared = root.join("shared").display(),
            mounts = shared.iter().map(|id| format!(r#""{id}": "/srv/shared""#)).collect::<Vec<_>>().join(", "),
        );
        std::fs::write(cfg.join("phoenix_hypervisor_config.json"), hv).expect("write");
        std::fs::write(cfg.join("phoenix_lxc_configs.json"), format!(r#"{{"lxc_configs": {containers}}}"#))
            .expect("write");
        std::fs::write(cfg.join("features/base_setup/feature.json"), r#"{"name": "base_setup", "params": []}"#)
            .expect("write");
        std::fs::write(cfg.join("features/base_setup/install.sh"), "#!/bin/sh\nset -eu\n[ \"$1\" = --phoenix-contract ] && [ \"$2\" = 1 ]\nmkdir -p /srv\necho base > /etc/motd\n").expect("write");
        let web = "#!/bin/sh\nset -eu\nn=$(hostname)\nmkdir -p /srv/www\necho \"hello from $n\" > /srv/www/index.html\n[ -d /srv/shared ] && echo \"$n\" > \"/srv/shared/$n.txt\"\npgrep -f 'httpd -f -p 80' >/dev/null || setsid httpd -f -p 80 -h /srv/www </dev/null >/dev/null 2>&1 &\n";
        std::fs::write(cfg.join("web.sh"), web).expect("write");
        let agg = "#!/bin/sh\nset -eu\nmkdir -p /srv/www\n: > /srv/www/index.html\nfor ip in 10.79.0.71 10.79.0.72 10.79.0.73; do wget -q -O - http://$ip/ >> /srv/www/index.html; done\npgrep -f 'httpd -f -p 80' >/dev/null || setsid httpd -f -p 80 -h /srv/www </dev/null >/dev/null 2>&1 &\n";
        std::fs::write(cfg.join("agg.sh"), agg).expect("write");
        std::fs::write(cfg.join("tpl.sh"), "#!/bin/sh\nset -eu\necho from-template > /etc/phoenix-template\n")
            .expect("write");
        let stack = Stack { _tmp: tmp, root };
        let template = stack.root.join("storage/template/cache/busybox.tar.gz");
        let out = stack.phoenix(&["template", "busybox", template.to_str().expect("utf-8")]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        stack
    }

    pub fn config(&self) -> PathBuf {
        self.root.join("config")
    }

    pub fn lxc_path(&self) -> String {
        self.root.join("lxc").display().to_string()
    }

    pub fn phoenix(&self, args: &[&str]) -> Output {
        let cfg = self.config();
        let locks = self.root.join("locks");
        let mut full =
            vec!["--color", "never", "-c", cfg.to_str().expect("utf-8"), "--lock-dir", locks.to_str().expect("utf-8")];
        full.extend_from_slice(args);
        Command::new(env!("CARGO_BIN_EXE_phoenix"))
            .args(full)
            .env_remove("PHOENIX_CONFIG_DIR")
            .output()
            .expect("run phoenix")
    }

    pub fn attach(&self, id: u32, argv: &[&str]) -> String {
        let path = self.lxc_path();
        let mut full = vec!["-n".to_string(), id.to_string(), "-P".into(), path, "--".into()];
        full.extend(argv.iter().map(|s| (*s).to_string()));
        // liblxc re-executes lxc-attach from a memfd first; under load that can fail and kill it
        // (a signal) before it attached: nothing ran, so it runs again, as the backend does.
        let mut tries = 0;
        loop {
            let out = Command::new("lxc-attach").args(&full).output().expect("lxc-attach");
            let died = out.status.code().is_none() || text(&out.stderr).contains("Failed to rexec as memfd");
            if !died || tries == 3 {
                return text(&out.stdout);
            }
            tries += 1;
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    pub fn init_pid(&self, id: u32) -> String {
        let out = Command::new("lxc-info")
            .args(["-n", &id.to_string(), "-P", &self.lxc_path(), "-p", "-H"])
            .output()
            .expect("lxc-info");
        text(&out.stdout).trim().to_string()
    }

    pub fn edit(&self, file: &str, from: &str, to: &str) {
        let p = self.config().join(file);
        let t = std::fs::read_to_string(&p).expect("read");
        assert!(t.contains(from), "{from} not in {file}");
        std::fs::write(&p, t.replacen(from, to, 1)).expect("write");
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // Whatever happened, leave no container running: what `destroy` could not take away
        // (a lock still held, say) is stopped by hand.
        let _ = self.phoenix(&["destroy", "--yes", "--force"]);
        let path = self.lxc_path();
        if let Ok(out) = Command::new("lxc-ls").args(["-P", &path, "--running", "-1"]).output() {
            for name in text(&out.stdout).split_whitespace() {
                let _ = Command::new("lxc-stop").args(["-k", "-n", name, "-P", &path]).output();
            }
        }
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn get(url: &str) -> String {
    let out = Command::new("curl").args(["-fsS", "--max-time", "5", url]).output().expect("curl");
    text(&out.stdout)
}

/// A container of a stack: unprivileged, 512 MiB, one core, on the bridge at 10.79.0.(id - 630).
pub fn container(id: u32, name: &str, extra: &str) -> String {
    format!(
        r#""{id}": {{"name": "{name}", "memory_mb": 512, "cores": 1, "storage_pool": "local", "storage_size_gb": 10,
            "network_config": {{"name": "eth0", "bridge": "vmbr0", "ip": "10.79.0.{ip}/24", "gw": "10.79.0.1"}},
            "unprivileged": true {extra}}}"#,
        ip = id - 630
    )
}
