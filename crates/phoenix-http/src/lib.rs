//! A small HTTP/1.1 client for the APIs Phoenix calls (Proxmox VE, Vault): answers framed by
//! `Content-Length`, chunked transfer encoding, or the end of the connection.
//!
//! Connections are kept alive: an [`Endpoint`] (and its clones) keeps up to [`IDLE_CONNECTIONS`]
//! idle ones, so a run of API calls pays for one TLS handshake rather than one per request, and
//! concurrent callers each take their own. A connection goes back to the pool only when its
//! answer was framed (`Content-Length` or chunked) by an HTTP/1.1 server that did not say
//! `Connection: close`. An idle connection is checked before it is used again: one the server
//! has closed (or that holds unexpected bytes) is dropped, and a fresh one opened. When the server
//! closes a reused connection in the moment the request is sent, the request goes once more on a
//! fresh connection only where that cannot act twice: when writing the request failed (the server
//! has not got all of it), or when the connection ended before a byte of the answer and the
//! method is `GET` or `HEAD`. Any other failure is [`Error::NoAnswer`], as on a fresh connection:
//! a server that closes without answering may have acted on the request.
//!
//! Requests travel over TLS, with the server's certificate checked against CA certificates, by a
//! pinned SHA-256 fingerprint, or — only when asked for — not at all; or over plain TCP, and then
//! only to this machine (a loopback address or `localhost`), since anything else would carry
//! credentials in clear. The TLS handshake, and so the certificate check, completes before a byte
//! of the request is written: a refused certificate never sees a token.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
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

/// Why an [`Endpoint`] cannot be made as given. Nothing is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetupError {
    /// The host is not a name or an address a certificate can be issued for.
    NotAHostName {
        /// The host, as given (without brackets).
        host: String,
        /// Why not.
        reason: String,
    },
    /// No TLS client could be configured (no protocol version in common with the provider).
    Tls(String),
    /// The CA file holds no PEM certificate.
    NoCaCertificate,
    /// A CA certificate that cannot be trusted, with why.
    BadCaCertificate(String),
    /// Plain HTTP to a host that is not this machine.
    NotLocal(String),
}

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SetupError::NotAHostName { host, reason } => write!(f, "{host} is not a host name: {reason}"),
            SetupError::Tls(m) => f.write_str(m),
            SetupError::NoCaCertificate => f.write_str("the CA file holds no PEM certificate"),
            SetupError::BadCaCertificate(m) => write!(f, "bad CA certificate: {m}"),
            SetupError::NotLocal(host) => write!(
                f,
                "plain http goes only to this machine (127.0.0.1, ::1, localhost), not to {host}: anyone on the way could read what is sent"
            ),
        }
    }
}

impl std::error::Error for SetupError {}

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

/// The most idle connections an [`Endpoint`] keeps for later requests.
pub const IDLE_CONNECTIONS: usize = 4;

/// A connection to the server, plain or over TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => &tls.sock,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// A connection with the bytes read ahead of the answer being parsed.
type Connection = BufReader<Stream>;

/// Whether an idle connection can carry another request: nothing buffered, and the server has
/// neither closed it nor sent anything since the last answer (a TLS alert, for one).
fn still_open(conn: &Connection) -> bool {
    let tcp = conn.get_ref().tcp();
    if !conn.buffer().is_empty() || tcp.set_nonblocking(true).is_err() {
        return false;
    }
    let quiet = matches!(tcp.peek(&mut [0u8; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    tcp.set_nonblocking(false).is_ok() && quiet
}

/// How an exchange on a connection failed.
enum Failure {
    /// Writing the request failed: the server has not got all of it.
    Unsent(Error),
    /// The connection ended before a byte of the answer.
    Unanswered(Error),
    /// Anything else: the server may have acted.
    Broken(Error),
}

impl Failure {
    fn error(self) -> Error {
        match self {
            Failure::Unsent(e) | Failure::Unanswered(e) | Failure::Broken(e) => e,
        }
    }
}

/// A server: its host and port, and how the connection to it is protected.
#[derive(Clone)]
pub struct Endpoint {
    host: String,
    port: u16,
    /// `None`: plain TCP, to loopback addresses only.
    tls: Option<Arc<ClientConfig>>,
    timeout: Duration,
    /// Idle connections, shared by the endpoint's clones.
    idle: Arc<Mutex<Vec<Connection>>>,
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
fn client_config(verify: TlsVerify) -> Result<ClientConfig, SetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| SetupError::Tls(e.to_string()))?;
    Ok(match verify {
        TlsVerify::Ca(pem) => {
            let mut roots = RootCertStore::empty();
            let certs = pem_certs(&pem);
            if certs.is_empty() {
                return Err(SetupError::NoCaCertificate);
            }
            for c in certs {
                roots.add(c).map_err(|e| SetupError::BadCaCertificate(e.to_string()))?;
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

/// What [`percent_encode`] encodes: every byte but RFC 3986's unreserved characters (ASCII
/// letters and digits, `-_.~`).
const NOT_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Percent-encodes everything but the unreserved characters of RFC 3986 (for form values, query
/// parameters and path segments).
pub fn percent_encode(s: &str) -> String {
    utf8_percent_encode(s, NOT_UNRESERVED).to_string()
}

/// Decodes `%XX` escapes (an escape that is not one is kept as it is; bytes that are not UTF-8
/// become U+FFFD).
pub fn percent_decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
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
    pub fn https(host: &str, port: u16, verify: TlsVerify) -> Result<Endpoint, SetupError> {
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        ServerName::try_from(host.clone())
            .map_err(|e| SetupError::NotAHostName { host: host.clone(), reason: e.to_string() })?;
        Ok(Endpoint {
            host,
            port,
            tls: Some(Arc::new(client_config(verify)?)),
            timeout: Duration::from_secs(60),
            idle: Arc::default(),
        })
    }

    /// `host:port` over plain TCP: only to this machine (`127.0.0.1` and the rest of `127.0.0.0/8`,
    /// `::1`, `localhost`, whose addresses must then be loopback ones too). Any other host is
    /// refused here, before anything is resolved or connected.
    pub fn plain_local(host: &str, port: u16) -> Result<Endpoint, SetupError> {
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        if !is_local(&host) {
            return Err(SetupError::NotLocal(host));
        }
        Ok(Endpoint { host, port, tls: None, timeout: Duration::from_secs(60), idle: Arc::default() })
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

    /// Opens a connection, the TLS handshake (and so the certificate check) completed.
    fn open(&self) -> Result<Connection, Error> {
        let tcp = self.connect()?;
        let stream = match &self.tls {
            None => Stream::Plain(tcp),
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
                Stream::Tls(Box::new(tls))
            }
        };
        Ok(BufReader::new(stream))
    }

    /// An idle connection the server has not closed, if there is one.
    fn reuse(&self) -> Option<Connection> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(conn) = idle.pop() {
            if still_open(&conn) {
                return Some(conn);
            }
        }
        None
    }

    /// Keeps a connection for a later request, unless enough are kept already.
    fn keep(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < IDLE_CONNECTIONS {
            idle.push(conn);
        }
    }

    /// Sends one request and reads its answer, on an idle connection when there is one (see the
    /// module's documentation for when a request is sent again). `target` is the path with its
    /// query; `headers` come after `Host` (`Content-Length` is added).
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
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        if let Some(mut conn) = self.reuse() {
            match talk(&mut conn, &request) {
                Ok((response, reusable)) => {
                    if reusable {
                        self.keep(conn);
                    }
                    return Ok(response);
                }
                Err(Failure::Unsent(_)) => {}
                Err(Failure::Unanswered(_)) if matches!(method, "GET" | "HEAD") => {}
                Err(failure) => return Err(failure.error()),
            }
        }
        let mut conn = self.open()?;
        let (response, reusable) = talk(&mut conn, &request).map_err(Failure::error)?;
        if reusable {
            self.keep(conn);
        }
        Ok(response)
    }
}

/// Writes the request and reads the answer; says too whether the connection can carry another
/// request (an HTTP/1.1 answer, framed, without `Connection: close`).
fn talk<S: Read + Write>(reader: &mut BufReader<S>, request: &[u8]) -> Result<(Response, bool), Failure> {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    let no_answer = |what: &str, e: std::io::Error| Failure::Broken(Error::NoAnswer(format!("{what}: {e}")));
    let stream = reader.get_mut();
    stream
        .write_all(request)
        .and_then(|()| stream.flush())
        .map_err(|e| Failure::Unsent(Error::NoAnswer(format!("sending failed: {e}"))))?;
    let mut status_line = String::new();
    match reader.read_line(&mut status_line) {
        Ok(0) => return Err(Failure::Unanswered(Error::NoAnswer("no answer: the connection was closed".into()))),
        Err(e)
            if status_line.is_empty()
                && matches!(e.kind(), UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe) =>
        {
            return Err(Failure::Unanswered(Error::NoAnswer(format!("no answer: {e}"))));
        }
        Err(e) => return Err(no_answer("no answer", e)),
        Ok(_) => {}
    }
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .filter(|_| status_line.starts_with("HTTP/"))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Failure::Broken(Error::NoAnswer(format!("not an HTTP answer: {status_line:?}"))))?;
    let reason = status_line.splitn(3, ' ').nth(2).unwrap_or_default().trim().to_string();
    let (mut length, mut chunked) = (None, false);
    let mut reusable = status_line.starts_with("HTTP/1.1 ");
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
            } else if k.eq_ignore_ascii_case("connection") {
                reusable &= !v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close"));
            }
        }
    }
    let body = if chunked {
        read_chunked(reader)
    } else {
        match length {
            Some(n) if n > MAX_BODY => {
                return Err(Failure::Broken(Error::NoAnswer(format!("an answer of {n} bytes is too long"))));
            }
            Some(n) => {
                let mut body = vec![0u8; n];
                reader.read_exact(&mut body).map(|()| body)
            }
            None => {
                reusable = false;
                read_to_close(reader)
            }
        }
    }
    .map_err(|e| no_answer("the answer's body", e))?;
    Ok((Response { status, reason, body }, reusable))
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

    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn fingerprints_and_percent_encoding() {
        let fp = "3A:1F:5C:9B:27:E4:80:6D:11:C2:4B:9F:03:7E:A8:52:66:D0:19:BC:4E:F3:72:A1:88:0B:DD:65:CE:29:94:17";
        assert!(matches!(TlsVerify::fingerprint(fp), Some(TlsVerify::Fingerprint(b)) if b[0] == 0x3A && b[31] == 0x17));
        assert!(TlsVerify::fingerprint("3A:1F").is_none());
        assert_eq!(percent_encode("name=eth0,ip=10.0.0.5/24 x"), "name%3Deth0%2Cip%3D10.0.0.5%2F24%20x");
        assert_eq!(percent_encode("a-b_c.d~e!*'()+%é"), "a-b_c.d~e%21%2A%27%28%29%2B%25%C3%A9");
        assert_eq!(percent_decode("a%2Fb%C3%A9%zz%4"), "a/bé%zz%4");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
    }

    #[test]
    fn plain_http_only_to_this_machine() {
        for host in ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LocalHost"] {
            assert!(Endpoint::plain_local(host, 8200).is_ok(), "{host}");
        }
        for host in ["10.0.0.5", "vault.example.com", "localhost.example.com", "0.0.0.0", "::"] {
            let e = Endpoint::plain_local(host, 8200).expect_err(host).to_string();
            assert!(e.contains("only to this machine") && e.contains(host.trim_matches(['[', ']'])), "{e}");
        }
    }

    #[test]
    fn answers_framed_every_way() {
        let talked = |raw: &str| {
            let mut reader = BufReader::new(Canned(std::io::Cursor::new(raw.as_bytes().to_vec())));
            talk(&mut reader, b"GET / HTTP/1.1\r\n\r\n").map_err(Failure::error)
        };
        let answer = |raw: &str| talked(raw).map(|(response, _)| response);
        let reusable = |raw: &str| talked(raw).is_ok_and(|(_, reusable)| reusable);
        assert!(reusable("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"));
        assert!(reusable("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"));
        assert!(!reusable("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: Close\r\n\r\n{}"));
        assert!(!reusable("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}"));
        assert!(!reusable("HTTP/1.1 200 OK\r\n\r\n{}"));
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

    /// What a [`plain_server`] does with the requests of a connection.
    #[derive(Clone, Copy)]
    enum Serving {
        /// Answers each with `Connection: close`, then closes.
        CloseAfterEach,
        /// Answers the first, then closes the connection at once, idle.
        CloseWhenIdle,
        /// Answers the first; takes the second and closes without answering.
        DropSecond,
    }

    /// A plain HTTP server on loopback that serves connections as `serving` says; returns its
    /// port, how many connections it accepted, and how many requests it read.
    fn plain_server(serving: Serving) -> (u16, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (connections, requests) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (accepted, read) = (connections.clone(), requests.clone());
        std::thread::spawn(move || {
            for tcp in listener.incoming().map_while(Result::ok) {
                accepted.fetch_add(1, Ordering::SeqCst);
                let read = read.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(tcp);
                    for n in 0.. {
                        // The requests here have no body: the head ends at the blank line.
                        let mut line = String::new();
                        while reader.read_line(&mut line).is_ok_and(|l| l > 2) {
                            line.clear();
                        }
                        if line.is_empty() {
                            return;
                        }
                        read.fetch_add(1, Ordering::SeqCst);
                        let close = match serving {
                            Serving::CloseAfterEach => true,
                            Serving::CloseWhenIdle => n == 0,
                            Serving::DropSecond if n == 1 => return,
                            Serving::DropSecond => false,
                        };
                        let extra = if close { "Connection: close\r\n" } else { "" };
                        let answer = format!("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n{extra}\r\n{{}}");
                        if reader.get_mut().write_all(answer.as_bytes()).is_err() || close {
                            return;
                        }
                    }
                });
            }
        });
        (port, connections, requests)
    }

    #[test]
    fn a_server_that_closes_after_each_answer_gets_a_connection_per_request() {
        let (port, connections, requests) = plain_server(Serving::CloseAfterEach);
        let e = Endpoint::plain_local("127.0.0.1", port).expect("local");
        for _ in 0..5 {
            assert_eq!(e.exchange("GET", "/", &[], b"").expect("answer").body, b"{}");
        }
        assert_eq!((connections.load(Ordering::SeqCst), requests.load(Ordering::SeqCst)), (5, 5));
    }

    #[test]
    fn an_idle_connection_the_server_closed_is_not_used() {
        // The server says nothing of closing: the client sees it closed before sending.
        let (port, connections, requests) = plain_server(Serving::CloseWhenIdle);
        let e = Endpoint::plain_local("127.0.0.1", port).expect("local");
        for _ in 0..3 {
            assert_eq!(e.exchange("POST", "/", &[], b"").expect("answer").body, b"{}");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!((connections.load(Ordering::SeqCst), requests.load(Ordering::SeqCst)), (3, 3));
    }

    #[test]
    fn a_reused_connection_closed_unanswered_is_retried_only_for_get() {
        let (port, connections, requests) = plain_server(Serving::DropSecond);
        let e = Endpoint::plain_local("127.0.0.1", port).expect("local");
        e.exchange("GET", "/", &[], b"").expect("first");
        // Closed before a byte of the answer: a GET goes again, on a new connection.
        assert_eq!(e.exchange("GET", "/", &[], b"").expect("retried").body, b"{}");
        assert_eq!((connections.load(Ordering::SeqCst), requests.load(Ordering::SeqCst)), (2, 3));
        // A POST may have been acted on: it is not sent twice.
        let r = e.exchange("POST", "/", &[], b"");
        assert!(matches!(r, Err(Error::NoAnswer(_))), "{r:?}");
        assert_eq!((connections.load(Ordering::SeqCst), requests.load(Ordering::SeqCst)), (2, 4));
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
