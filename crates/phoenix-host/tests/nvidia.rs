//! The nvidia module against the recording double: nouveau blacklisted in Phoenix's file, the
//! configured driver downloaded and installed with `--dkms --silent` when DKMS lacks it, and
//! "reboot required" reported instead of a reboot; planning changes nothing, a second apply does
//! nothing, and the nvidia driver itself is never blacklisted.

mod support;

use phoenix_host::double::{Node, RecordingHost};
use phoenix_host::host::{Ids, Output};
use phoenix_host::modules::nvidia::{self, Nvidia};
use phoenix_host::{Planner, apply};
use support::no_secrets;

const V: &str = "580.76.05";

fn host() -> RecordingHost {
    RecordingHost::new()
        .dirs(&["/etc/modprobe.d", "/proc/driver/nvidia"])
        .file(
            nvidia::PROC_VERSION,
            "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb 22 01:44:30 UTC 2024\n",
        )
        .ok_program("curl")
        .program("sh", |inv, tree| {
            let a: Vec<String> = inv.args.iter().map(ToString::to_string).collect();
            assert_eq!(
                a,
                [format!("/var/cache/phoenix/NVIDIA-Linux-x86_64-{V}.run"), "--dkms".into(), "--silent".into()]
            );
            tree.insert(
                format!("/var/lib/dkms/nvidia/{V}").into(),
                Node::Dir { mode: 0o755, ids: Ids { uid: 0, gid: 0 } },
            );
            Output::default()
        })
}

#[test]
fn the_driver_is_installed_once_nouveau_blacklisted_and_a_reboot_is_reported_not_done() {
    let host = host();
    let m = Nvidia { version: Some(V.into()), runfile_url: None };
    let plan = m.plan_on(&host, &no_secrets).expect("plan");
    assert!(host.changes().is_empty(), "planning changed the host");
    let s: Vec<String> = plan.steps.iter().map(|s| s.summary()).collect();
    assert_eq!(
        s,
        [
            "write /etc/modprobe.d/phoenix-blacklist-nouveau.conf (mode 0644)".to_string(),
            "directory /var/cache/phoenix (mode 0755)".to_string(),
            format!(
                "run `curl --fail --silent --show-error --location --output /var/cache/phoenix/NVIDIA-Linux-x86_64-{V}.run https://us.download.nvidia.com/XFree86/Linux-x86_64/{V}/NVIDIA-Linux-x86_64-{V}.run`"
            ),
            format!("run `sh /var/cache/phoenix/NVIDIA-Linux-x86_64-{V}.run --dkms --silent`"),
        ]
    );
    assert!(
        plan.notes.iter().any(|n| n.starts_with("reboot required") && n.contains("running: 550.54.14")),
        "{:?}",
        plan.notes
    );
    apply(&host, &plan, &no_secrets).expect("apply");
    let blacklist = host.text(nvidia::BLACKLIST).expect("blacklist");
    assert!(blacklist.contains("blacklist nouveau\n") && !blacklist.contains("blacklist nvidia"), "{blacklist}");
    // Installed, not yet running: nothing to do, and still "reboot required"; no reboot was run.
    host.clear_log();
    let again = m.plan_on(&host, &no_secrets).expect("again");
    assert!(again.steps.is_empty(), "{:#?}", again.steps);
    assert!(again.notes.iter().any(|n| n.starts_with("reboot required")));
    assert!(host.changes().is_empty());
    assert!(!format!("{:?}", host.log()).contains("reboot"));
}

#[test]
fn nouveau_loaded_means_reboot_first_and_bad_settings_stop_the_plan() {
    let host = host().dirs(&["/sys/module/nouveau"]);
    let m = Nvidia { version: Some(V.into()), runfile_url: None };
    let plan = m.plan_on(&host, &no_secrets).expect("plan");
    assert_eq!(plan.steps.len(), 1, "only the blacklist: {:#?}", plan.steps);
    assert!(plan.notes[0].contains("nouveau is loaded"), "{:?}", plan.notes);
    assert!(Nvidia { version: None, runfile_url: None }.plan_on(&host, &no_secrets).is_err());
    assert!(Nvidia { version: Some("latest".into()), runfile_url: None }.plan_on(&host, &no_secrets).is_err());
    assert!(
        Nvidia { version: Some(V.into()), runfile_url: Some("http://x/y.run".into()) }
            .plan_on(&host, &no_secrets)
            .is_err()
    );
}
