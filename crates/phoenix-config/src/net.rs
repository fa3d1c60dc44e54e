//! IPv4 addresses, CIDRs and ranges as the configuration writes them.

use std::fmt;
use std::net::Ipv4Addr;

/// Why a text is not the address, CIDR or range it should be (the message quotes the text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// A CIDR without `/prefix`.
    #[error("\"{0}\" has no prefix length; write it as address/prefix, e.g. \"{0}/24\"")]
    NoPrefix(String),
    /// A prefix length that is not 0 to 32.
    #[error("\"{0}\" is not a prefix length (0 to 32)")]
    BadPrefix(String),
    /// A CIDR where a single address belongs.
    #[error("\"{0}\" is a CIDR, not a single address; leave out the prefix length")]
    CidrNotAddress(String),
    /// Not a dotted-quad IPv4 address.
    #[error("\"{0}\" is not an IPv4 address")]
    NotIpv4(String),
    /// A range without `-`.
    #[error("\"{0}\" is not a range; write it as first-last, e.g. \"10.0.0.100-10.0.0.199\"")]
    NotRange(String),
    /// A range whose first address comes after its last.
    #[error("the range \"{0}\" ends before it starts")]
    Backwards(String),
}

/// An address with a prefix length, e.g. `10.0.0.50/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// The address as written.
    pub addr: Ipv4Addr,
    /// The prefix length, 0 to 32.
    pub prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`.
    pub fn parse(s: &str) -> Result<Cidr, AddressError> {
        let Some((addr, prefix)) = s.split_once('/') else {
            return Err(AddressError::NoPrefix(s.to_string()));
        };
        let addr = parse_ipv4(addr)?;
        let prefix = prefix
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= 32 && !prefix.starts_with('+'))
            .ok_or_else(|| AddressError::BadPrefix(prefix.to_string()))?;
        Ok(Cidr { addr, prefix })
    }

    /// The network mask.
    pub fn mask(self) -> u32 {
        if self.prefix == 0 { 0 } else { u32::MAX << (32 - self.prefix) }
    }

    /// The network address.
    pub fn network(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    /// The broadcast address.
    pub fn broadcast(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }

    /// Whether an address lies in this subnet.
    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network())
    }

    /// Whether the address is usable by a host (not the network or broadcast address of a
    /// subnet with room for hosts).
    pub fn is_host_address(self) -> bool {
        self.prefix >= 31 || (self.addr != self.network() && self.addr != self.broadcast())
    }

    /// The subnet written as `network/prefix`.
    pub fn subnet(self) -> Cidr {
        Cidr { addr: self.network(), prefix: self.prefix }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Parses a dotted-quad IPv4 address, with a message saying what is wrong.
pub fn parse_ipv4(s: &str) -> Result<Ipv4Addr, AddressError> {
    s.parse::<Ipv4Addr>().map_err(|_| {
        if s.contains('/') { AddressError::CidrNotAddress(s.to_string()) } else { AddressError::NotIpv4(s.to_string()) }
    })
}

/// Parses `first-last` into two addresses, first not after last.
pub fn parse_range(s: &str) -> Result<(Ipv4Addr, Ipv4Addr), AddressError> {
    let Some((a, b)) = s.split_once('-') else {
        return Err(AddressError::NotRange(s.to_string()));
    };
    let (a, b) = (parse_ipv4(a.trim())?, parse_ipv4(b.trim())?);
    if u32::from(a) > u32::from(b) {
        return Err(AddressError::Backwards(s.to_string()));
    }
    Ok((a, b))
}

/// Whether a string is a valid host name: dot-separated labels of letters, digits and `-`, each
/// 1 to 63 characters, not starting or ending with `-`.
pub fn is_hostname(s: &str) -> bool {
    s.len() <= 253
        && !s.is_empty()
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        let c = Cidr::parse("10.0.0.50/24").expect("valid");
        assert_eq!(c.network(), Ipv4Addr::new(10, 0, 0, 0));
        assert_eq!(c.broadcast(), Ipv4Addr::new(10, 0, 0, 255));
        assert!(c.contains(Ipv4Addr::new(10, 0, 0, 1)));
        assert!(!c.contains(Ipv4Addr::new(10, 0, 1, 1)));
        assert!(c.is_host_address());
        assert!(!Cidr::parse("10.0.0.0/24").expect("valid").is_host_address());
        assert!(Cidr::parse("10.0.0.50").is_err());
        assert!(Cidr::parse("10.0.0.50/33").is_err());
        assert!(Cidr::parse("10.0.0.256/24").is_err());
        assert_eq!(Cidr::parse("0.0.0.0/0").expect("valid").mask(), 0);
    }

    #[test]
    fn ranges_and_hostnames() {
        assert!(parse_range("10.0.0.10-10.0.0.20").is_ok());
        assert_eq!(parse_range("10.0.0.20-10.0.0.10"), Err(AddressError::Backwards("10.0.0.20-10.0.0.10".into())));
        assert!(is_hostname("vllm-qwen.lab"));
        assert!(!is_hostname("vllm_qwen"));
        assert!(!is_hostname("-a"));
    }
}
