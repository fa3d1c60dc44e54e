//! The host and port of a URL's authority, for the Proxmox API and Vault addresses alike.

/// The host and port of `host`, `host:port`, `[v6]` or `[v6]:port` (an IPv6 address given
/// without its brackets); `default_port` when none is given. `None` when the form is broken: a
/// bad port, an unclosed bracket, no host.
pub fn host_and_port(authority: &str, default_port: u16) -> Option<(&str, u16)> {
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (address, rest) = v6.split_once(']')?;
            match rest {
                "" => (address, None),
                _ => (address, Some(rest.strip_prefix(':')?)),
            }
        }
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => default_port,
    };
    (!host.is_empty()).then_some((host, port))
}

#[cfg(test)]
mod tests {
    use super::host_and_port;

    #[test]
    fn names_the_host_and_port_ipv6_included() {
        fn hp(a: &str) -> Option<(&str, u16)> {
            host_and_port(a, 8006)
        }
        assert_eq!(hp("pve.example"), Some(("pve.example", 8006)));
        assert_eq!(hp("10.0.0.2:8443"), Some(("10.0.0.2", 8443)));
        assert_eq!(hp("[fd00::1]"), Some(("fd00::1", 8006)));
        assert_eq!(hp("[fd00::1]:8443"), Some(("fd00::1", 8443)));
        assert_eq!(hp("[fd00::1]8443"), None);
        assert_eq!(hp("pve:port"), None);
        assert_eq!(hp("[fd00::1"), None);
        assert_eq!(hp(""), None);
        assert_eq!(hp("[]:8006"), None);
    }
}
