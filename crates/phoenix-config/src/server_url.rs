//! A server's address as a URL (the Proxmox API's `api_url`, Vault's `VAULT_ADDR`), parsed in one
//! place by the `url` crate: host names, IPv4 addresses and IPv6 addresses in brackets, with or
//! without a port.

use url::{Host, Url};

/// An `http://` or `https://` address of a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    /// `https` (`true`) or plain `http`.
    pub https: bool,
    /// The host: a name (lower case), or an IP address (an IPv6 one without its brackets).
    pub host: String,
    /// The port the URL gives, if it gives one (its scheme's own included: `https://pve:443`).
    pub port: Option<u16>,
    /// The path, without its trailing `/` (empty when there is none).
    pub path: String,
}

/// Why a text is not a server's address. Each message reads after the value it is about
/// (`api_url "…" is not an https:// URL`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not a URL at all, or a broken one (a bad port, an unclosed bracket, no host).
    #[error("is not a URL: {0}")]
    Syntax(url::ParseError),
    /// A scheme other than `https` (or `http`, where that is allowed).
    #[error("is not an https:// URL")]
    Scheme,
    /// A user name or password in the address.
    #[error("has a user name or password in it, which a server's address does not take")]
    Credentials,
    /// A query (`?…`) or fragment (`#…`).
    #[error("has a query (`?`) or fragment (`#`), which a server's address does not take")]
    QueryOrFragment,
}

impl ServerUrl {
    /// Parses `text`: `https://host[:port][/path]`, or `http://…` when `allow_http`.
    pub fn parse(text: &str, allow_http: bool) -> Result<ServerUrl, UrlError> {
        let url = Url::parse(text).map_err(|e| match e {
            url::ParseError::RelativeUrlWithoutBase => UrlError::Scheme,
            e => UrlError::Syntax(e),
        })?;
        let https = match url.scheme() {
            "https" => true,
            "http" if allow_http => false,
            _ => return Err(UrlError::Scheme),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(UrlError::Credentials);
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(UrlError::QueryOrFragment);
        }
        let host = match url.host() {
            Some(Host::Domain(name)) => name.to_string(),
            Some(Host::Ipv4(ip)) => ip.to_string(),
            Some(Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(UrlError::Syntax(url::ParseError::EmptyHost)),
        };
        Ok(ServerUrl { https, host, port: given_port(text, &url), path: url.path().trim_end_matches('/').to_string() })
    }
}

/// `text` to quote in a message: a password in it, which [`ServerUrl::parse`] refuses, shown as
/// `***`.
pub fn quoted(text: &str) -> String {
    match Url::parse(text) {
        Ok(mut url) if url.password().is_some() => match url.set_password(Some("***")) {
            Ok(()) => url.to_string(),
            Err(()) => "(a URL with a password in it)".to_string(),
        },
        _ => text.to_string(),
    }
}

/// The port `text` gives. The `url` crate drops a port that is its scheme's own
/// (`https://pve:443` reads as no port), while Phoenix's default may differ (the Proxmox API's is
/// 8006): whether one was written is read from the text's authority.
fn given_port(text: &str, url: &Url) -> Option<u16> {
    url.port().or_else(|| {
        let authority = text.split_once("://")?.1.split(['/', '\\', '?', '#']).next()?;
        let (_, port) = authority.rsplit_once(':')?;
        (!port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())).then(|| url.port_or_known_default()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<(bool, String, Option<u16>, String), UrlError> {
        ServerUrl::parse(text, true).map(|u| (u.https, u.host, u.port, u.path))
    }

    #[test]
    fn host_port_and_path_ipv6_included() {
        let ok = |https, host: &str, port, path: &str| Ok((https, host.to_string(), port, path.to_string()));
        assert_eq!(parsed("https://pve1.lab.example"), ok(true, "pve1.lab.example", None, ""));
        assert_eq!(parsed("https://PVE1:8006/"), ok(true, "pve1", Some(8006), ""));
        assert_eq!(parsed("https://10.0.0.2:8443/api2/json"), ok(true, "10.0.0.2", Some(8443), "/api2/json"));
        assert_eq!(parsed("https://[fd00::1]"), ok(true, "fd00::1", None, ""));
        assert_eq!(parsed("https://[fd00::1]:8443/vault/"), ok(true, "fd00::1", Some(8443), "/vault"));
        assert_eq!(parsed("http://[::1]:8200"), ok(false, "::1", Some(8200), ""));
        assert_eq!(parsed("https://pve:443"), ok(true, "pve", Some(443), ""), "the scheme's own port, written");
        assert_eq!(parsed("https://[fd00::1]:443"), ok(true, "fd00::1", Some(443), ""));
        assert_eq!(parsed("http://127.0.0.1:80/x"), ok(false, "127.0.0.1", Some(80), "/x"));
    }

    #[test]
    fn broken_addresses_say_what_is_wrong() {
        let error = |text: &str| parsed(text).expect_err(text).to_string();
        assert_eq!(error("https://pve:port"), "is not a URL: invalid port number");
        assert_eq!(error("https://[fd00::1"), "is not a URL: invalid IPv6 address");
        assert_eq!(error("https://[fd00::1]8443"), "is not a URL: invalid IPv6 address");
        assert_eq!(error("https://"), "is not a URL: empty host");
        assert_eq!(error("ftp://vault:8200"), "is not an https:// URL");
        assert_eq!(error("pve1.lab.example:8006"), "is not an https:// URL");
        assert_eq!(error("pve1.lab.example"), "is not an https:// URL");
        assert!(error("https://root:secret@pve").contains("user name or password"));
        assert!(error("https://pve/?x=1").contains("query"));
        assert_eq!(ServerUrl::parse("http://127.0.0.1", false), Err(UrlError::Scheme), "http only where allowed");
        assert_eq!(quoted("https://root:s3cret@pve:8006"), "https://root:***@pve:8006/");
        assert_eq!(quoted("https://pve:8006"), "https://pve:8006", "quoted as given");
    }
}
