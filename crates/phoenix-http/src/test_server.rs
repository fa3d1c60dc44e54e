//! An HTTPS server for test doubles: on a free loopback port, with a certificate made when it
//! starts (a CA, and a server certificate for `localhost` and `127.0.0.1` signed by it, as a
//! Proxmox cluster or a Vault installation has). Each connection is served on a thread of its own
//! and kept alive (HTTP/1.1): its requests, one after the other, are handed to the double's
//! handler, and the handler's reply is sent as JSON — or, when it returns none, the connection is
//! closed without an answer, as a dying proxy closes it. A connection ends when the client says
//! `Connection: close` (after its answer), closes it, or leaves it idle for [`IDLE_TIMEOUT`].

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

use crate::percent_decode;

/// How long a connection may stay idle between requests before the server closes it.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A CA and a server certificate signed by it, made for one test.
pub struct TestCert {
    /// The server's TLS configuration, with the certificate and its key.
    pub config: Arc<rustls::ServerConfig>,
    /// PEM of the CA (what a client's CA file would hold).
    pub ca_pem: String,
    /// SHA-256 fingerprint of the server certificate, `AB:CD:...`.
    pub fingerprint: String,
}

impl TestCert {
    /// Makes a CA and a certificate for `localhost` and `127.0.0.1`.
    pub fn new() -> TestCert {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA");
        let key = KeyPair::generate().expect("server key");
        let cert = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("params")
            .signed_by(&key, &ca)
            .expect("server certificate");
        let fingerprint =
            Sha256::digest(cert.der().as_ref()).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocols")
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .expect("server config");
        TestCert { config: Arc::new(config), ca_pem: ca.pem(), fingerprint }
    }
}

impl Default for TestCert {
    fn default() -> TestCert {
        TestCert::new()
    }
}

/// A request the server read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// HTTP method.
    pub method: String,
    /// The request target: path and query, still percent-encoded.
    pub target: String,
    /// Headers, by lower-case name.
    pub headers: BTreeMap<String, String>,
    /// The body.
    pub body: Vec<u8>,
}

impl Served {
    /// The target's path (percent-encoded) and query (empty when there is none).
    pub fn path_and_query(&self) -> (&str, &str) {
        self.target.split_once('?').unwrap_or((&self.target, ""))
    }

    /// A header's value, by name in any case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }
}

/// An answer: status, reason phrase, JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// Reason phrase.
    pub reason: String,
    /// The JSON body.
    pub body: String,
}

impl Reply {
    /// A reply with this status, reason phrase and JSON body (anything that displays as JSON,
    /// such as a `serde_json::Value`).
    pub fn new(status: u16, reason: &str, body: impl std::fmt::Display) -> Reply {
        Reply { status, reason: reason.to_string(), body: body.to_string() }
    }
}

/// A running server; it stops accepting connections when dropped.
pub struct TestServer {
    /// Its address.
    pub addr: SocketAddr,
    /// PEM of the CA that signed its certificate.
    pub ca_pem: String,
    /// SHA-256 fingerprint of its certificate, `AB:CD:...`.
    pub fingerprint: String,
    stop: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
    /// The per-connection delay, in microseconds.
    connection_delay: Arc<AtomicU64>,
}

impl TestServer {
    /// Starts a server with a new certificate; `handler` answers each request (`None`: the
    /// connection is closed without an answer).
    pub fn start(handler: impl Fn(Served) -> Option<Reply> + Send + Sync + 'static) -> TestServer {
        let cert = TestCert::new();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let (connections, connection_delay) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicU64::new(0)));
        let (halt, config, handler) = (stop.clone(), cert.config.clone(), Arc::new(handler));
        let (count, delay) = (connections.clone(), connection_delay.clone());
        std::thread::spawn(move || {
            while !halt.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((tcp, _)) => {
                        count.fetch_add(1, Ordering::SeqCst);
                        let (config, handler, halt) = (config.clone(), handler.clone(), halt.clone());
                        let delay = Duration::from_micros(delay.load(Ordering::SeqCst));
                        std::thread::spawn(move || {
                            std::thread::sleep(delay);
                            serve(tcp, config, handler.as_ref(), &halt)
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        TestServer { addr, ca_pem: cert.ca_pem, fingerprint: cert.fingerprint, stop, connections, connection_delay }
    }

    /// How many connections it has accepted.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Each new connection waits this long before its TLS handshake (none unless set): the cost
    /// of a connection on a real server (TCP and TLS round trips, the handshake's work), which
    /// keeping connections alive saves.
    pub fn set_connection_delay(&self, delay: Duration) {
        self.connection_delay.store(u64::try_from(delay.as_micros()).unwrap_or(u64::MAX), Ordering::SeqCst);
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Serves the requests of a connection, one after the other, until the client closes it or asks
/// for that, it stays idle too long, the handler gives no reply, or the server stops.
fn serve(
    tcp: TcpStream,
    config: Arc<rustls::ServerConfig>,
    handler: &(dyn Fn(Served) -> Option<Reply> + Send + Sync),
    halt: &AtomicBool,
) {
    let _ = tcp.set_nonblocking(false);
    let _ = tcp.set_read_timeout(Some(IDLE_TIMEOUT));
    let Ok(conn) = rustls::ServerConnection::new(config) else { return };
    let mut reader = BufReader::new(rustls::StreamOwned::new(conn, tcp));
    while !halt.load(Ordering::SeqCst) {
        // The client closed the connection, or it stayed idle too long, or was not TLS.
        let Some(request) = read_request(&mut reader) else { return };
        let close = request.header("connection").is_some_and(|c| c.eq_ignore_ascii_case("close"));
        let stream = reader.get_mut();
        let Some(reply) = handler(request) else {
            // Closed without a byte of answer (and without TLS close_notify).
            let _ = stream.sock.shutdown(std::net::Shutdown::Both);
            return;
        };
        let response = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n{}",
            reply.status,
            reply.reason,
            reply.body.len(),
            if close { "Connection: close\r\n" } else { "" },
            reply.body
        );
        if stream.write_all(response.as_bytes()).and_then(|()| stream.flush()).is_err() {
            return;
        }
        if close {
            break;
        }
    }
    let stream = reader.get_mut();
    stream.conn.send_close_notify();
    let _ = stream.conn.complete_io(&mut stream.sock);
}

/// Reads a request: request line, headers, and a body of `Content-Length` bytes.
fn read_request<R: BufRead>(reader: &mut R) -> Option<Served> {
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() || line.is_empty() {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let length: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
    let mut body = vec![0u8; length];
    let _ = reader.read_exact(&mut body);
    Some(Served { method, target, headers, body })
}

/// Decodes a form value or query parameter: `+` is a space, then `%XX` escapes.
pub fn form_decode(s: &str) -> String {
    percent_decode(&s.replace('+', " "))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::{Endpoint, Error, TlsVerify};
    use std::sync::Mutex;

    #[test]
    fn a_round_trip_and_a_refused_certificate() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let server = TestServer::start(move |r: Served| {
            let answer = format!("{{\"got\":\"{} {} {}\"}}", r.method, r.target, r.header("x-thing").unwrap_or("-"));
            log.lock().expect("log").push(r);
            Some(Reply::new(201, "Created", answer))
        });
        let port = server.addr.port();
        let ca = Endpoint::https("127.0.0.1", port, TlsVerify::Ca(server.ca_pem.clone().into_bytes())).expect("ca");
        let r = ca.exchange("POST", "/a?b=c", &[("X-Thing", "yes")], b"body").expect("answer");
        assert_eq!((r.status, r.reason.as_str()), (201, "Created"));
        assert_eq!(String::from_utf8_lossy(&r.body), r#"{"got":"POST /a?b=c yes"}"#);
        assert_eq!(seen.lock().expect("log")[0].body, b"body");

        let pinned = TlsVerify::fingerprint(&server.fingerprint).expect("fingerprint");
        let r =
            Endpoint::https("localhost", port, pinned).expect("pin").exchange("GET", "/", &[], b"").expect("pinned");
        assert_eq!(r.status, 201);

        let other = TestCert::new();
        let wrong = Endpoint::https("127.0.0.1", port, TlsVerify::Ca(other.ca_pem.into_bytes())).expect("other ca");
        let e = wrong.exchange("GET", "/secret", &[("X-Thing", "token")], b"").expect_err("refused");
        assert!(
            matches!(&e, Error::Tls(m) if m.contains("TLS with 127.0.0.1") && m.contains("invalid peer certificate")),
            "{e}"
        );
        assert_eq!(seen.lock().expect("log").len(), 2, "the refused client sent nothing");

        let plain = Endpoint::plain_local("127.0.0.1", port).expect("local");
        assert!(matches!(plain.exchange("GET", "/", &[], b""), Err(Error::NoAnswer(_))));
    }

    #[test]
    fn connections_are_kept_alive_and_shared_by_concurrent_callers() {
        let server = TestServer::start(|r: Served| Some(Reply::new(200, "OK", format!("\"{}\"", r.target))));
        let e = Endpoint::https("127.0.0.1", server.addr.port(), TlsVerify::Ca(server.ca_pem.clone().into_bytes()))
            .expect("ca");
        for n in 0..10 {
            let r = e.exchange("GET", &format!("/{n}"), &[], b"").expect("answer");
            assert_eq!(r.body, format!("\"/{n}\"").into_bytes());
        }
        assert_eq!(server.connections(), 1, "ten requests, one connection");
        std::thread::scope(|s| {
            for _ in 0..3 {
                let e = e.clone();
                s.spawn(move || {
                    (0..5).for_each(|_| assert_eq!(e.exchange("GET", "/", &[], b"").expect("ok").status, 200))
                });
            }
        });
        let opened = server.connections();
        assert!((1..=3).contains(&opened), "three callers at once take at most three connections: {opened}");
        // A client that asks for the connection to be closed gets that.
        let fresh = Endpoint::https("localhost", server.addr.port(), TlsVerify::Ca(server.ca_pem.clone().into_bytes()))
            .expect("ca");
        fresh.exchange("GET", "/", &[("Connection", "close")], b"").expect("answer");
        fresh.exchange("GET", "/", &[], b"").expect("answer on a new connection");
        assert_eq!(server.connections(), opened + 2);
    }

    #[test]
    fn decoding() {
        assert_eq!(form_decode("a+b%2Bc%3D%zz%4"), "a b+c=%zz%4");
        assert_eq!(percent_decode("kv/team%20a+x"), "kv/team a+x");
    }
}
