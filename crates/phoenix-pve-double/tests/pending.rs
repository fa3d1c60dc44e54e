//! Changes a running container takes only at its next start, as pve-container keeps them
//! (`vmconfig_hotplug_pending`): `nameserver` and `searchdomain`, set or deleted, stay in
//! `[pve:pending]`; `GET config` shows them unless asked for the `current` configuration, and
//! the next start applies them. A stopped container takes them at once.

mod support;

use support::run;

use std::time::Duration;

use phoenix_proxmox::transport::api::ApiClient;
use phoenix_pve_double::{PveDouble, PveVersion};
use serde_json::Value;

fn start(version: PveVersion) -> (PveDouble, ApiClient) {
    support::start(version, Some(Duration::from_millis(10)))
}

#[test]
fn a_running_containers_nameserver_and_searchdomain_wait_for_its_next_start() {
    for version in PveVersion::ALL {
        let (double, api) = start(version);
        let at = "/nodes/pve1/lxc/900";
        let params = [
            ("vmid", "900".to_string()),
            ("ostemplate", "local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst".to_string()),
            ("nameserver", "10.0.0.1".to_string()),
            ("searchdomain", "lan".to_string()),
        ];
        run(&api, "POST", "/nodes/pve1/lxc", &params);
        let config = |current: bool| -> Value {
            let ps: Vec<(&str, String)> = if current { vec![("current", "1".into())] } else { Vec::new() };
            api.request("GET", &format!("{at}/config"), &ps).expect("config")
        };
        let set = |ps: &[(&str, String)]| api.request("PUT", &format!("{at}/config"), ps).expect("set");

        // Stopped: at once.
        set(&[("nameserver", "10.0.0.2".into())]);
        assert_eq!(config(true)["nameserver"], "10.0.0.2", "{version:?}");

        // Running: pending, shown unless `current` is asked for; the memory is live.
        run(&api, "POST", &format!("{at}/status/start"), &[]);
        set(&[("nameserver", "10.0.0.3".into()), ("memory", "1024".into()), ("delete", "searchdomain".into())]);
        let (shown, current) = (config(false), config(true));
        assert_eq!((shown["nameserver"].as_str(), shown.get("searchdomain")), (Some("10.0.0.3"), None), "{shown}");
        assert_eq!((current["nameserver"].as_str(), current["searchdomain"].as_str()), (Some("10.0.0.2"), Some("lan")));
        assert_eq!(current["memory"], "1024");
        let file = double.conf_file(900).expect("conf");
        let pending = &file[file.find("\n[pve:pending]\n").expect("a pending section")..];
        assert!(pending.contains("delete: searchdomain\n") && pending.contains("nameserver: 10.0.0.3\n"), "{file}");

        // The next start applies them.
        run(&api, "POST", &format!("{at}/status/shutdown"), &[]);
        assert_eq!(config(true)["nameserver"], "10.0.0.2", "a stop applies nothing");
        run(&api, "POST", &format!("{at}/status/start"), &[]);
        let current = config(true);
        assert_eq!(
            (current["nameserver"].as_str(), current.get("searchdomain")),
            (Some("10.0.0.3"), None),
            "{current}"
        );
        assert!(!double.conf_file(900).expect("conf").contains("[pve:pending]"));
    }
}
