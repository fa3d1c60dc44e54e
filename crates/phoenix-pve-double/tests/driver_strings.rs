//! What the driver prints is what both Proxmox versions accept: property strings from
//! `phoenix-proxmox` checked against the official schema.

use std::collections::BTreeMap;

use phoenix_proxmox::propstring::{Device, Features, MountPoint, Net, Property, Startup};
use phoenix_pve_double::{ApiSchema, PveVersion};
use proptest::prelude::*;
use serde_json::Value;

fn check(version: PveVersion, params: &[(&str, String)]) -> Result<(), String> {
    let params: BTreeMap<String, Value> =
        params.iter().map(|(k, v)| ((*k).to_string(), Value::String(v.clone()))).collect();
    ApiSchema::get(version)
        .check("PUT", "/nodes/pve1/lxc/950/config", &params)
        .map(|_| ())
        .map_err(|e| format!("{e:?}"))
}

#[test]
fn the_driver_property_strings_pass_both_schemas() {
    let net = Net {
        name: "eth0".into(),
        bridge: Some("vmbr0".into()),
        firewall: Some(true),
        gw: Some("10.0.0.1".into()),
        hwaddr: Some("BC:24:11:2E:5A:01".into()),
        ip: Some("10.0.0.50/24".into()),
        tag: Some(20),
        kind: Some("veth".into()),
        ..Net::default()
    };
    let rootfs =
        MountPoint { volume: "local-zfs:subvol-950-disk-0".into(), size: Some("32G".into()), ..MountPoint::default() };
    let mp = MountPoint {
        volume: "/fastData/shared-models".into(),
        mp: Some("/models".into()),
        ro: Some(true),
        backup: Some(false),
        ..MountPoint::default()
    };
    let features = Features { nesting: Some(true), keyctl: Some(true), ..Features::default() };
    let dev = Device { path: "/dev/nvidia0".into(), mode: Some("0666".into()), ..Device::default() };
    let startup = Startup { order: Some(2), up: Some(30), down: None };
    for v in PveVersion::ALL {
        let params = [
            ("net0", net.print()),
            ("rootfs", rootfs.print()),
            ("mp0", mp.print()),
            ("features", features.print()),
            ("dev0", dev.print()),
            ("startup", startup.print()),
        ];
        assert_eq!(check(v, &params), Ok(()), "{v:?}");
    }
}

proptest! {
    #[test]
    fn generated_interfaces_pass_both_schemas(
        name in "eth[0-9]",
        bridge in "vmbr[0-9]{1,2}",
        octet in 2u8..250,
        prefix in 8u8..=30,
        tag in prop::option::of(1u32..=4094),
        mtu in prop::option::of(576u32..=9000),
        firewall in any::<Option<bool>>(),
        mac in prop::option::of(prop::array::uniform6(any::<u8>())),
    ) {
        let net = Net {
            name,
            bridge: Some(bridge),
            ip: Some(format!("10.0.0.{octet}/{prefix}")),
            gw: Some("10.0.0.1".into()),
            hwaddr: mac.map(|m| m.iter().map(|b| format!("{:02X}", b & 0xfe | 0x02)).collect::<Vec<_>>().join(":")),
            tag,
            mtu,
            firewall,
            ..Net::default()
        };
        for v in PveVersion::ALL {
            prop_assert_eq!(check(v, &[("net0", net.print())]), Ok(()));
        }
    }
}
