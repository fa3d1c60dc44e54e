//! The built-in features `base_setup` and `docker` end to end, on a real unprivileged Debian
//! container (the template `phoenix template debian` builds for the gateway's test): apt through
//! the test host's apt-cacher-ng, the time zone, locale and apt proxy as configured, the
//! distribution's Docker running a locally imported image, and re-runs that change nothing. Also:
//! the docker feature refuses an OS it does not support, clearly.
//!
//! Needs root, the `lxc` tools, `busybox-static`, `debootstrap` (and the Debian archive the first
//! time), apt-cacher-ng on 10.79.0.1:3142 and the bridge `phxtest0` with 10.79.0.1/24
//! (`scripts/test-host.sh` sets all of it up). In CI these tests must run; elsewhere they are
//! skipped with the reason when the host lacks what they need. The Debian template is built once
//! per machine, under [`debian::CACHE`].

#[path = "support/debian.rs"]
mod debian;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use debian::{APT_PROXY, Needs, Stack, available, both, debian_template, feed, serial, text};
use phoenix_config::RealFilesystem;
use phoenix_engine::customize::{FeatureLibrary, Job, prepare};

/// The Debian container.
const DEBIAN: u32 = 1201;

/// A container on the test bridge at 10.79.0.<id - 1000>.
fn container(id: u32, name: &str, extra: &str) -> String {
    format!(
        r#""{id}": {{"name": "{name}", "memory_mb": 1024, "cores": 2, "storage_pool": "local", "storage_size_gb": 10,
            "network_config": {{"name": "eth0", "bridge": "vmbr0", "ip": "10.79.0.{ip}/24", "gw": "10.79.0.1"}},
            "unprivileged": true, "pct_options": ["nesting=1"] {extra}}}"#,
        ip = id - 1000
    )
}

/// A configuration with the given containers; the hypervisor file sets the time zone (which
/// base_setup takes from it).
fn stack(containers: &[String]) -> Stack {
    let s = Stack::new("phoenix-features-e2e-");
    s.write_hypervisor(serde_json::json!({"timezone": "Europe/Berlin",
        "docker": {"portainer_server_image": "local/portainer-stand-in"}}));
    s.write_containers(containers);
    s
}

impl Stack {
    /// Runs a shell command in a container with `input` on its standard input.
    fn sh_with(&self, id: u32, script: &str, input: &[u8]) -> Output {
        feed(self.lxc_attach(id).args(["--", "sh", "-c", script]), input)
    }

    /// Runs a shell command in a container that must succeed; its standard output.
    fn sh(&self, id: u32, script: &str) -> String {
        let out = self.sh_with(id, script, b"");
        assert!(out.status.success(), "{script}: {}", both(&out));
        text(&out.stdout)
    }

    /// The feature jobs the engine prepares for a guest now.
    fn jobs(&self, id: u32) -> Vec<Job> {
        let fs = RealFilesystem;
        let (sources, early) = phoenix_config::load(&self.config(), &fs);
        let v = phoenix_config::validate(&sources, early, &fs);
        let estate = v.estate.clone().unwrap_or_else(|| panic!("invalid: {:#?}", v.reports));
        let mut jobs = prepare(&estate, &FeatureLibrary::default(), &self.config()).expect("prepare");
        jobs.remove(&id).expect("the guest's jobs")
    }

    /// Stages a feature's job in the container as the engine does and runs it: its output.
    fn run_job(&self, id: u32, job: &Job) -> Output {
        let script = job.script.as_deref().expect("a built-in script");
        let params = serde_json::to_vec(&job.params).expect("json");
        let env = &job.files.iter().find(|f| f.name == "params.env").expect("params.env").content;
        let dir = "/tmp/phoenix-features-e2e";
        let stage = |name: &str, content: &[u8], mode: &str| {
            self.sh_with(id, &format!("mkdir -p {dir} && cat > {dir}/{name} && chmod {mode} {dir}/{name}"), content)
        };
        for (name, content, mode) in
            [("run", script, "755"), ("params.json", &params, "600"), ("params.env", env, "600")]
        {
            let out = stage(name, content, mode);
            assert!(out.status.success(), "staging {name}: {}", both(&out));
        }
        let out = self.sh_with(id, &format!("{dir}/run --phoenix-contract 1 --params {dir}/params.json"), b"");
        self.sh(id, &format!("rm -rf {dir}"));
        out
    }
}

/// What must not change when a feature runs again: every package and its version, the Docker
/// daemon's process and start time, and the files the features wrote (with their times).
const STATE: &str = "dpkg-query -W -f '${Package} ${Version} ${Status}\\n'; \
    pid=$(cat /var/run/docker.pid); echo \"dockerd $pid started $(cut -d' ' -f22 /proc/$pid/stat)\"; \
    stat -c '%n %Y %a' /etc/apt/apt.conf.d/01phoenix-proxy /etc/default/locale /etc/timezone /etc/localtime \
        /etc/init.d/docker /etc/apt/apt.conf.d/20auto-upgrades";

#[test]
#[allow(clippy::print_stderr)] // The applies' durations are worth seeing in the test's output.
fn base_setup_and_docker_set_up_a_debian_container_that_runs_a_local_image_and_rerun_without_change() {
    if !available("the features' end-to-end test", &Needs { busybox: true, apt_proxy: true, ..Needs::default() }) {
        return;
    }
    let _host = serial();
    let debian = debian_template();
    let settings = format!(
        r#", "template": "{}", "features": ["base_setup", "docker"],
            "feature_settings": {{"base_setup": {{"apt_proxy": "{APT_PROXY}", "locale": "de_DE.UTF-8"}},
                                  "docker": {{"docker_source": "distribution"}}}}"#,
        debian.display()
    );
    let s = stack(&[container(DEBIAN, "docker-host", &settings)]);

    let started = Instant::now();
    let out = s.phoenix(&["apply"]);
    assert!(out.status.success(), "{}", both(&out));
    assert!(text(&out.stdout).contains("Apply complete: 1 created"), "{}", text(&out.stdout));
    eprintln!("apply of a Debian container with base_setup and docker: {:.1}s", started.elapsed().as_secs_f64());

    // base_setup: the apt proxy, the locale given, the time zone of the hypervisor file.
    assert_eq!(
        s.sh(DEBIAN, "cat /etc/apt/apt.conf.d/01phoenix-proxy"),
        format!("// Written by Phoenix (feature base_setup, apt_proxy).\nAcquire::http::Proxy \"{APT_PROXY}\";\n")
    );
    assert_eq!(s.sh(DEBIAN, "cat /etc/default/locale"), "LANG=de_DE.UTF-8\n");
    assert!(s.sh(DEBIAN, "locale -a").lines().any(|l| l == "de_DE.utf8"), "de_DE.UTF-8 was not generated");
    assert_eq!(s.sh(DEBIAN, "cat /etc/timezone"), "Europe/Berlin\n");
    assert_eq!(s.sh(DEBIAN, "readlink /etc/localtime"), "/usr/share/zoneinfo/Europe/Berlin\n");
    assert_eq!(s.sh(DEBIAN, "unset TZ; date -d @0 +%Z"), "CET\n", "the time zone is not in effect");

    // docker: the distribution's engine answers, and starts at boot.
    assert!(s.sh(DEBIAN, "dpkg-query -W -f '${Status}' docker.io").ends_with("install ok installed"));
    assert!(!s.sh(DEBIAN, "ls /etc/apt/sources.list.d").contains("docker.list"), "Docker's repository was added");
    assert_eq!(s.sh(DEBIAN, "docker info -f '{{.Driver}}'"), "overlay2\n");
    assert!(s.sh(DEBIAN, "ls /etc/rc2.d").lines().any(|l| l.starts_with('S') && l.ends_with("docker")), "not at boot");
    // A locally built image runs (no registry is reachable).
    let busybox = std::fs::read("/bin/busybox").expect("read /bin/busybox");
    let import = s.sh_with(
        DEBIAN,
        "set -e; rm -rf /tmp/bb; mkdir -p /tmp/bb/bin; cat > /tmp/bb/bin/busybox; chmod 755 /tmp/bb/bin/busybox; \
         for a in $(/tmp/bb/bin/busybox --list); do [ \"$a\" = busybox ] || ln -s busybox /tmp/bb/bin/$a; done; \
         tar -C /tmp/bb -c . | docker import - local/busybox; rm -rf /tmp/bb",
        &busybox,
    );
    assert!(import.status.success(), "{}", both(&import));
    assert_eq!(
        s.sh(DEBIAN, "docker run --rm local/busybox echo hello from a container in a container"),
        "hello from a container in a container\n"
    );

    // Again: nothing to do.
    let out = s.phoenix(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));

    // Both features re-run by the engine, with values that change their hashes but not what they
    // do (a package already installed; Docker's repository, which the distribution's engine does
    // not use): nothing changes in the container.
    let state = s.sh(DEBIAN, STATE);
    assert!(state.contains("docker.io ") && state.contains("dockerd "), "{state}");
    s.edit(r#""locale": "de_DE.UTF-8""#, r#""locale": "de_DE.UTF-8", "extra_packages": ["curl"]"#);
    s.edit(
        r#""docker_source": "distribution""#,
        r#""docker_source": "distribution", "docker_repo_url": "http://10.79.0.1:9/unused""#,
    );
    let out = s.phoenix(&["--output", "json", "plan"]);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let steps = plan["guests"].as_array().into_iter().flatten().find(|g| g["id"] == DEBIAN).expect("guest")["steps"]
        .to_string();
    assert!(steps.contains("feature:base_setup") && steps.contains("feature:docker"), "{plan:#}");
    let started = Instant::now();
    let out = s.phoenix(&["-v", "apply"]);
    assert!(out.status.success(), "{}", both(&out));
    eprintln!("apply re-running both features: {:.1}s", started.elapsed().as_secs_f64());
    assert_eq!(s.sh(DEBIAN, STATE), state, "the engine's re-run changed the container");
    // Apply says what each re-run feature found: nothing to change.
    for feature in ["base_setup", "docker"] {
        let said = format!("{DEBIAN}: feature:{feature} finished: {feature}: nothing to change");
        assert!(both(&out).contains(&said), "{said} missing from:\n{}", both(&out));
    }
    let out = s.phoenix(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));

    // The engine's jobs run once more, staged as the engine stages them: each says it has
    // nothing to change, and nothing did.
    let jobs = s.jobs(DEBIAN);
    assert_eq!(jobs.iter().map(|j| j.key.as_str()).collect::<Vec<_>>(), ["feature:base_setup", "feature:docker"]);
    for job in &jobs {
        let key = &job.key;
        let out = s.run_job(DEBIAN, job);
        assert!(out.status.success(), "{key}: {}", both(&out));
        let said = text(&out.stdout);
        let feature = key.trim_start_matches("feature:");
        assert_eq!(said.lines().last(), Some(format!("{feature}: nothing to change").as_str()), "{key}: {said}");
        assert!(!said.contains("changed:"), "{key}: {said}");
        if feature == "docker" {
            assert!(said.lines().any(|l| l.starts_with("docker: Docker ") && l.ends_with(" answers")), "{said}");
        }
    }
    assert_eq!(s.sh(DEBIAN, STATE), state, "a direct re-run changed the container");

    // daemon.json and the Portainer server, whose image the hypervisor file names (a local
    // stand-in here: no registry is reachable).
    s.sh(
        DEBIAN,
        "printf 'FROM local/busybox\\nCMD [\"sleep\", \"86400\"]\\n' | docker build -q -t local/portainer-stand-in -",
    );
    let dockerd = || s.sh(DEBIAN, "cat /var/run/docker.pid");
    let before = dockerd();
    s.edit(
        r#""features": ["base_setup", "docker"]"#,
        r#""features": ["base_setup", "docker"], "portainer_role": "server""#,
    );
    s.edit(
        r#""docker_source": "distribution""#,
        r#""docker_source": "distribution", "docker_daemon_config": {"log-driver": "local"}"#,
    );
    let started = Instant::now();
    let out = s.phoenix(&["apply"]);
    assert!(out.status.success(), "{}", both(&out));
    eprintln!("apply with daemon.json and the Portainer server: {:.1}s", started.elapsed().as_secs_f64());
    assert_eq!(s.sh(DEBIAN, "cat /etc/docker/daemon.json"), "{\"log-driver\":\"local\"}\n");
    assert_ne!(dockerd(), before, "docker was not restarted for its new daemon.json");
    assert_eq!(s.sh(DEBIAN, "docker info -f '{{.LoggingDriver}}'"), "local\n");
    let portainer =
        "docker inspect -f '{{.State.Running}} {{.Config.Image}} {{.HostConfig.RestartPolicy.Name}}' portainer";
    assert_eq!(s.sh(DEBIAN, portainer), "true local/portainer-stand-in always\n");
    let ports = s.sh(DEBIAN, "docker port portainer");
    assert!(ports.contains("9443/tcp -> 0.0.0.0:9443") && ports.contains("8000/tcp -> 0.0.0.0:8000"), "{ports}");
    let out = s.phoenix(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));

    // A restart of the container: Docker starts at boot, with Portainer, and runs images.
    let lxc_path = s.root.join("lxc").display().to_string();
    let id = DEBIAN.to_string();
    for action in ["lxc-stop", "lxc-start"] {
        let out = Command::new(action).args(["-n", &id, "-P", &lxc_path]).output().expect(action);
        assert!(out.status.success(), "{action}: {}", both(&out));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while !s.sh_with(DEBIAN, "docker info", b"").status.success() {
        assert!(
            Instant::now() < deadline,
            "docker did not come back after a restart: {}",
            s.sh(DEBIAN, "tail /var/log/docker.log")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(s.sh(DEBIAN, "docker run --rm local/busybox echo after a restart"), "after a restart\n");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !s.sh(DEBIAN, portainer).starts_with("true ") {
        assert!(Instant::now() < deadline, "Portainer did not come back after a restart");
        std::thread::sleep(Duration::from_millis(500));
    }

    // Neither any more: the file Phoenix wrote and the container it made are removed.
    s.edit(r#", "portainer_role": "server""#, r#", "portainer_role": "none""#);
    s.edit(r#", "docker_daemon_config": {"log-driver": "local"}"#, "");
    let out = s.phoenix(&["apply"]);
    assert!(out.status.success(), "{}", both(&out));
    assert_eq!(s.sh(DEBIAN, "test -e /etc/docker/daemon.json && echo kept || echo gone"), "gone\n");
    assert_eq!(s.sh(DEBIAN, "docker ps -a --format '{{.Names}}'"), "", "the Portainer container was kept");
    assert_eq!(s.sh(DEBIAN, "docker info -f '{{.LoggingDriver}}'"), "json-file\n");
}

#[test]
fn docker_refuses_an_os_it_does_not_support_before_touching_anything() {
    if !available("the features' end-to-end test", &Needs { busybox: true, ..Needs::default() }) {
        return;
    }
    let _host = serial();
    // The busybox template's OS is none the built-in features support.
    let s = stack(&[container(
        1202,
        "not-debian",
        r#", "template": "local:vztmpl/busybox.tar.gz", "features": ["docker"]"#,
    )]);
    s.busybox_template();

    let out = s.phoenix(&["apply"]);
    assert!(!out.status.success(), "{}", both(&out));
    let said = both(&out);
    assert!(said.contains("docker: error: phoenix-busybox"), "{said}");
    assert!(said.contains("is not supported: built-in features support Debian 12/13 and Ubuntu 22.04/24.04"), "{said}");
    // It stopped before anything else: no state of the feature, no marker.
    let rootfs = s.root.join("lxc/1202/rootfs");
    assert!(!rootfs.join("var/lib/phoenix/features/docker").exists());
    let markers = std::fs::read_to_string(rootfs.join("var/lib/phoenix/markers.json")).unwrap_or_default();
    assert!(!markers.contains("feature:docker"), "{markers}");
}
