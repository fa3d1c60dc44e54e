//! A small HTTP/1.1 client for the APIs Phoenix calls (Proxmox VE, Vault): one request per
//! connection (`Connection: close`), answers framed by `Content-Length`, chunked transfer
//! encoding, or the end of the connection.
//!
//! Requests travel over TLS, with the server's certificate checked against CA certificates, by a
//! pinned SHA-256 fingerprint, or — only when asked for — not at all; or over plain TCP, and then
//! only to this machine (a loopback address or `localhost`), since anything else would carry
//! credentials in clear. The TLS handshake, and so the certificate check, completes before a byte
//! of the request is written: a refused certificate never sees a token.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

#[cfg(feature = "test-server")]
pub mod test_server;

/// How a server's certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsVerify {
    /// Against these CA certificates (PEM).
    Ca(Vec<u8>),
    /// The certificate's SHA-256 fingerprint must be this one.
    Fingerprint([u8; 32]),
    /// Not at all (explicitly asked for; anyone on the path can read what is sent).
    Insecure,
}

impl TlsVerify {
    /// Parses a fingerprint as Proxmox and OpenSSL show it: `AB:CD:...`, 32 bytes.
    pub fn fingerprint(text: &str) -> Option<TlsVerify> {
        let bytes: Vec<u8> =
            text.split(':').map(|h| u8::from_str_radix(h, 16).ok().filter(|_| h.len() == 2)).collect::<Option<_>>()?;
        Some(TlsVerify::Fingerprint(bytes.try_into().ok()?))
    }
}

/// Why an exchange failed, and so whether the request may have reached the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The request cannot be sent as given (a header value with a line break); nothing was sent.
    Invalid(String),
    /// The server was not reached: its name did not resolve, or no connection opened. Nothing was
    /// sent; trying again later may work.
    Unreachable(String),
    /// The TLS handshake failed (a certificate refused, no protocol in common). Nothing was sent.
    Tls(String),
    /// The request was sent, at least in part, but no complete answer came back: the server may
    /// have acted on it.
    NoAnswer(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Invalid(m) | Error::Unreachable(m) | Error::Tls(m) | Error::NoAnswer(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

/// An answer: the status, its reason phrase, and the body (decoded from chunks when chunked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// The reason phrase of the status line (Proxmox puts its error message there).
    pub reason: String,
    /// The body.
    pub body: Vec<u8>,
}

/// The largest body read; a longer one is an error rather than an allocation the server chooses.
pub const MAX_BODY: usize = 64 << 20;

/// A server: its host and port, and how the connection to it is protected.
#[derive(Clone)]
pub struct Endpoint {
    host: String,
    port: u16,
    /// `None`: plain TCP, to loopback addresses only.
    tls: Option<Arc<ClientConfig>>,
    timeout: Duration,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        write!(f, "Endpoint({scheme}://{}:{})", self.host, self.port)
    }
}

/// Accepts exactly one certificate, by its SHA-256 fingerprint, or — when verification was turned
/// off on purpose — any certificate. Handshake signatures are verified either way.
#[derive(Debug)]
struct Pinned {
    fingerprint: Option<[u8; 32]>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.fingerprint {
            Some(pin) if Sha256::digest(end.as_ref()).as_slice() != pin => {
                Err(rustls::Error::General("the certificate does not have the pinned fingerprint".into()))
            }
            _ => Ok(ServerCertVerified::assertion()),
        }
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.provider.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.provider.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The certificates of a PEM text.
pub fn pem_certs(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem).filter_map(Result::ok).collect()
}

/// A TLS client configuration that checks certificates as `verify` says.
fn client_config(verify: TlsVerify) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    Ok(match verify {
        TlsVerify::Ca(pem) => {
            let mut roots = RootCertStore::empty();
            let certs = pem_certs(&pem);
            if certs.is_empty() {
                return Err("the CA file holds no PEM certificate".into());
            }
            for c in certs {
                roots.add(c).map_err(|e| format!("bad CA certificate: {e}"))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        TlsVerify::Fingerprint(fingerprint) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned { fingerprint: Some(fingerprint), provider }))
            .with_no_client_auth(),
        TlsVerify::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned { fingerprint: None, provider }))
            .with_no_client_auth(),
    })
}

/// Percent-encodes everything but the unreserved characters of RFC 3986 (for form values, query
/// parameters and path segments).
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Decodes `%XX` escapes (an escape that is not one is kept as it is).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether plain HTTP may go to `host`: a loopback address, or `localhost`.
fn is_local(host: &str) -> bool {
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

impl Endpoint {
    /// `host:port` over TLS, its certificate checked as `verify` says. `host` is a name or an IP
    /// address (IPv6 without brackets); the certificate must be issued for it.
    pub fn https(host: &str, port: u16, verify: TlsVerify) -> Result<Endpoint, String> {
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        ServerName::try_from(host.clone()).map_err(|e| format!("{host} is not a host name: {e}"))?;
        Ok(Endpoint { host, port, tls: Some(Arc::new(client_config(verify)?)), timeout: Duration::from_secs(60) })
    }

    /// `host:port` over plain TCP: only to this machine (`127.0.0.1` and the rest of `127.0.0.0/8`,
    /// `::1`, `localhost`, whose addresses must then be loopback ones too). Any other host is
    /// refused here, before anything is resolved or connected.
    pub fn plain_local(host: &str, port: u16) -> Result<Endpoint, String> {
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        if !is_local(&host) {
            return Err(format!(
                "plain http goes only to this machine (127.0.0.1, ::1, localhost), not to {host}: anyone on the way could read what is sent"
            ));
        }
        Ok(Endpoint { host, port, tls: None, timeout: Duration::from_secs(60) })
    }

    /// The time allowed to connect, and for each read of the answer (60 s unless set).
    pub fn with_timeout(mut self, timeout: Duration) -> Endpoint {
        self.timeout = timeout;
        self
    }

    /// `host:port`, as shown in messages (IPv6 addresses in brackets).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Opens a TCP connection to one of the host's addresses (loopback ones only for plain TCP).
    fn connect(&self) -> Result<TcpStream, Error> {
        let addrs: Vec<SocketAddr> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| Error::Unreachable(format!("cannot resolve {}: {e}", self.host)))?
            .filter(|a| self.tls.is_some() || a.ip().is_loopback())
            .collect();
        let mut last = match self.tls {
            Some(_) => format!("{} has no address", self.host),
            None => format!("{} has no loopback address", self.host),
        };
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, self.timeout) {
                Ok(tcp) => {
                    let _ = tcp.set_read_timeout(Some(self.timeout));
                    let _ = tcp.set_write_timeout(Some(self.timeout));
                    return Ok(tcp);
                }
                Err(e) => last = format!("cannot connect to {}: {e}", self.authority()),
            }
        }
        Err(Error::Unreachable(last))
    }

    /// Sends one request and reads its answer. `target` is the path with its query; `headers`
    /// come after `Host` (`Content-Length` and `Connection: close` are added).
    pub fn exchange(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response, Error> {
        let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {}\r\n", self.authority());
        for (name, value) in headers {
            if [name, value].iter().any(|s| s.contains(['\r', '\n'])) {
                return Err(Error::Invalid(format!("the header {name} holds a line break")));
            }
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", body.len()));
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        let tcp = self.connect()?;
        match &self.tls {
            None => talk(tcp, &request),
            Some(config) => {
                let name = ServerName::try_from(self.host.clone()).map_err(|e| Error::Invalid(e.to_string()))?;
                let conn =
                    rustls::ClientConnection::new(config.clone(), name).map_err(|e| Error::Tls(e.to_string()))?;
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                while tls.conn.is_handshaking() {
                    tls.conn
                        .complete_io(&mut tls.sock)
                        .map_err(|e| Error::Tls(format!("TLS with {} failed: {e}", self.authority())))?;
                }
                talk(tls, &request)
            }
        }
    }
}

/// Writes the request and reads the answer.
fn talk<S: Read + Write>(mut stream: S, request: &[u8]) -> Result<Response, Error> {
    let no_answer = |what: &str, e: std::io::Error| Error::NoAnswer(format!("{what}: {e}"));
    stream.write_all(request).and_then(|()| stream.flush()).map_err(|e| no_answer("sending failed", e))?;
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).map_err(|e| no_answer("no answer", e))?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .filter(|_| status_line.starts_with("HTTP/"))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::NoAnswer(format!("not an HTTP answer: {status_line:?}")))?;
    let reason = status_line.splitn(3, ' ').nth(2).unwrap_or_default().trim().to_string();
    let (mut length, mut chunked) = (None, false);
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).map_err(|e| no_answer("the answer's headers", e))?;
        if line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse::<usize>().ok();
            } else if k.eq_ignore_ascii_case("transfer-encoding") {
                chunked = v.to_ascii_lowercase().contains("chunked");
            }
        }
    }
    let body = if chunked {
        read_chunked(&mut reader)
    } else {
        match length {
            Some(n) if n > MAX_BODY => return Err(Error::NoAnswer(format!("an answer of {n} bytes is too long"))),
            Some(n) => {
                let mut body = vec![0u8; n];
                reader.read_exact(&mut body).map(|()| body)
            }
            None => read_to_close(&mut reader),
        }
    }
    .map_err(|e| no_answer("the answer's body", e))?;
    Ok(Response { status, reason, body })
}

/// A body framed by the end of the connection. A TLS peer that closes without `close_notify`
/// ends it too (many servers do).
fn read_to_close<R: Read>(reader: &mut R) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    match reader.take(MAX_BODY as u64 + 1).read_to_end(&mut body) {
        Err(e) if e.kind() != std::io::ErrorKind::UnexpectedEof => return Err(e),
        _ if body.len() > MAX_BODY => return Err(std::io::Error::other("the answer is too long")),
        _ => {}
    }
    Ok(body)
}

/// A body in chunked transfer encoding: `<hex size>[;ext]\r\n<data>\r\n` ..., `0\r\n`, trailers.
fn read_chunked<R: BufRead>(reader: &mut R) -> std::io::Result<Vec<u8>> {
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "bad chunk size");
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let size = line.split(';').next().map(str::trim).ok_or_else(bad)?;
        let size = usize::from_str_radix(size, 16).map_err(|_| bad())?;
        if size == 0 {
            loop {
                let mut trailer = String::new();
                if reader.read_line(&mut trailer)? == 0 || trailer.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        if body.len() + size > MAX_BODY {
            return Err(std::io::Error::other("the answer is too long"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut end = [0u8; 2];
        reader.read_exact(&mut end)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_and_percent_encoding() {
        let fp = "3A:1F:5C:9B:27:E4:80:6D:11:C2:4B:9F:03:7E:A8:52:66:D0:19:BC:4E:F3:72:A1:88:0B:DD:65:CE:29:94:17";
        assert!(matches!(TlsVerify::fingerprint(fp), Some(TlsVerify::Fingerprint(b)) if b[0] == 0x3A && b[31] == 0x17));
        assert!(TlsVerify::fingerprint("3A:1F").is_none());
        assert_eq!(percent_encode("name=eth0,ip=10.0.0.5/24 x"), "name%3Deth0%2Cip%3D10.0.0.5%2F24%20x");
    }

    #[test]
    fn plain_http_only_to_this_machine() {
        for host in ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LocalHost"] {
            assert!(Endpoint::plain_local(host, 8200).is_ok(), "{host}");
        }
        for host in ["10.0.0.5", "vault.example.com", "localhost.example.com", "0.0.0.0", "::"] {
            let e = Endpoint::plain_local(host, 8200).expect_err(host);
            assert!(e.contains("only to this machine") && e.contains(host.trim_matches(['[', ']'])), "{e}");
        }
    }

    #[test]
    fn answers_framed_every_way() {
        let answer = |raw: &str| talk(Canned(std::io::Cursor::new(raw.as_bytes().to_vec())), b"GET / HTTP/1.1\r\n\r\n");
        let r = answer("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello").expect("length");
        assert_eq!((r.status, r.reason.as_str(), r.body.as_slice()), (200, "OK", b"hello".as_slice()));
        let r = answer("HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\n{\"er\r\n7\r\nrors\":[\r\n2\r\n]}\r\n0\r\nX-T: 1\r\n\r\n")
            .expect("chunked");
        assert_eq!((r.status, r.body.as_slice()), (404, br#"{"errors":[]}"#.as_slice()));
        let r = answer("HTTP/1.0 200 OK\r\n\r\n{}").expect("to the end");
        assert_eq!(r.body, b"{}");
        assert!(
            matches!(answer("SSH-2.0-OpenSSH_9.6\r\n"), Err(Error::NoAnswer(m)) if m.contains("not an HTTP answer"))
        );
        assert!(matches!(answer("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort"), Err(Error::NoAnswer(_))));
        assert!(matches!(
            answer("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
            Err(Error::NoAnswer(_))
        ));
    }

    #[test]
    fn header_injection_is_refused_before_connecting() {
        // Port 9 on loopback: nothing listens, so reaching the connection would fail otherwise.
        let e = Endpoint::plain_local("127.0.0.1", 9).expect("local");
        let r = e.exchange("GET", "/", &[("X-Token", "a\r\nInjected: yes")], b"");
        assert!(matches!(r, Err(Error::Invalid(m)) if m.contains("X-Token") && !m.contains("a\r\n")));
    }

    /// A reader that also accepts writes (and forgets them), for feeding canned answers.
    struct Canned(std::io::Cursor<Vec<u8>>);
    impl Read for Canned {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.0.read(buf)
        }
    }
    impl Write for Canned {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
