//! The Proxmox VE REST API over HTTPS: certificate verification by a CA file or a pinned SHA-256
//! fingerprint (turning it off must be asked for), API-token or ticket authentication, form
//! bodies, the `{"data": ...}` envelope, and errors that say whether the request may have been
//! applied. On the node itself the same requests can go through `pvesh` instead
//! ([`ApiClient::pvesh`], see [`crate::pvesh`]).
//!
//! A ticket is asked for with the password when first needed (`POST /access/ticket`), sent as the
//! `PVEAuthCookie` cookie with its `CSRFPreventionToken` on every request that is not a `GET`, and
//! renewed with itself before it expires (Proxmox accepts a ticket for two hours).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use phoenix_backend::{BackendError, Delivery, ErrorKind};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::pvesh::Pvesh;

/// How the API's certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsVerify {
    /// Against these CA certificates (PEM).
    Ca(Vec<u8>),
    /// The certificate's SHA-256 fingerprint must be this one.
    Fingerprint([u8; 32]),
    /// Not at all (explicitly asked for; anyone on the path can read the token).
    Insecure,
}

impl TlsVerify {
    /// Parses a fingerprint as Proxmox shows it: `AB:CD:...`, 32 bytes.
    pub fn fingerprint(text: &str) -> Option<TlsVerify> {
        let bytes: Vec<u8> =
            text.split(':').map(|h| u8::from_str_radix(h, 16).ok().filter(|_| h.len() == 2)).collect::<Option<_>>()?;
        Some(TlsVerify::Fingerprint(bytes.try_into().ok()?))
    }
}

/// How requests are authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// An API token: `user@realm!name` and its secret.
    Token {
        /// Token ID.
        id: String,
        /// Token secret.
        secret: String,
    },
    /// A user's password, exchanged for a ticket (for what Proxmox reserves to `root@pam`).
    Password {
        /// The user, e.g. `root@pam`.
        user: String,
        /// The password.
        password: String,
    },
}

/// How long Proxmox accepts a ticket.
pub const TICKET_LIFETIME: Duration = Duration::from_secs(2 * 3600);

/// A ticket, its CSRF token, and when it was issued.
#[derive(Clone)]
struct Session {
    ticket: String,
    csrf: String,
    issued: Instant,
}

/// A Proxmox API endpoint.
#[derive(Clone)]
pub struct ApiClient {
    host: String,
    port: u16,
    auth: Auth,
    tls: Arc<ClientConfig>,
    timeout: Duration,
    /// The ticket of password authentication, shared by the client's clones.
    session: Arc<Mutex<Option<Session>>>,
    /// A ticket this old is renewed before it is used.
    renew_after: Duration,
    /// Requests go through this local `pvesh` instead of HTTPS (the fields above are then unused).
    pvesh: Option<Pvesh>,
}

/// An answer: the HTTP status, its reason, and the JSON body.
pub type Answer = (u16, String, serde_json::Value);

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

/// Percent-encodes a form value.
pub fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn pem_certs(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem).filter_map(Result::ok).collect()
}

impl ApiClient {
    /// A client for `host:port`.
    pub fn new(host: &str, port: u16, auth: Auth, verify: TlsVerify) -> Result<ApiClient, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let config = match verify {
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
        };
        Ok(ApiClient {
            host: host.to_string(),
            port,
            auth,
            tls: Arc::new(config),
            timeout: Duration::from_secs(60),
            session: Arc::default(),
            renew_after: TICKET_LIFETIME / 2,
            pvesh: None,
        })
    }

    /// Renews the ticket once it is this old (half its lifetime unless set).
    pub fn with_ticket_renewal(mut self, after: Duration) -> ApiClient {
        self.renew_after = after;
        self
    }

    /// Whether requests act as `root@pam`, which may set what Proxmox reserves to it.
    pub fn is_root(&self) -> bool {
        self.pvesh.is_some() || matches!(&self.auth, Auth::Password { user, .. } if user == "root@pam")
    }

    /// A ticket for password authentication: the one held while it is young enough, else a
    /// renewal with it, else a login with the password.
    fn ticket(&self, user: &str, password: &str) -> Result<Session, BackendError> {
        let mut held = self.session.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = held.as_ref().filter(|s| s.issued.elapsed() < self.renew_after) {
            return Ok(s.clone());
        }
        let renewal = held
            .as_ref()
            .filter(|s| s.issued.elapsed() < TICKET_LIFETIME)
            .and_then(|s| self.login(user, &s.ticket).ok());
        let session = match renewal {
            Some(s) => s,
            None => self.login(user, password)?,
        };
        *held = Some(session.clone());
        Ok(session)
    }

    /// `POST /access/ticket` with a password or a ticket still valid.
    fn login(&self, user: &str, password: &str) -> Result<Session, BackendError> {
        let params = [("username", user.to_string()), ("password", password.to_string())];
        let issued = Instant::now();
        let (status, reason, json) = self.send("POST", "/access/ticket", &params, "")?;
        let data = &json["data"];
        match (status, data["ticket"].as_str(), data["CSRFPreventionToken"].as_str()) {
            (200, Some(ticket), Some(csrf)) => Ok(Session { ticket: ticket.into(), csrf: csrf.into(), issued }),
            _ => Err(BackendError::permanent(
                Delivery::NotSent,
                format!("logging in as {user} failed: {status} {reason}"),
            )
            .with_detail("check the password reference of `backend.root_ticket`")),
        }
    }

    /// The authentication headers of a request.
    fn auth_headers(&self, method: &str) -> Result<String, BackendError> {
        Ok(match &self.auth {
            Auth::Token { id, secret } => format!("Authorization: PVEAPIToken={id}={secret}\r\n"),
            Auth::Password { user, password } => {
                let s = self.ticket(user, password)?;
                let csrf = if method == "GET" { String::new() } else { format!("CSRFPreventionToken: {}\r\n", s.csrf) };
                format!("Cookie: PVEAuthCookie={}\r\n{csrf}", s.ticket)
            }
        })
    }

    /// A client that sends every request through `program` (`pvesh` on the node itself), as
    /// `root@pam`, without a token or TLS.
    pub fn pvesh(program: impl Into<std::path::PathBuf>) -> Result<ApiClient, String> {
        let unused = Auth::Token { id: String::new(), secret: String::new() };
        let mut client = ApiClient::new("localhost", 0, unused, TlsVerify::Insecure)?;
        client.pvesh = Some(Pvesh::new(program));
        Ok(client)
    }

    /// Whether requests go through `pvesh`, and so act as `root@pam`.
    pub fn via_pvesh(&self) -> bool {
        self.pvesh.is_some()
    }

    /// Sends a request; `params` go in the query (GET, DELETE) or a form body (POST, PUT).
    /// Returns the response's `data`. A ticket refused (expired early, or the server restarted)
    /// is replaced by a new login once.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        params: &[(&str, String)],
    ) -> Result<serde_json::Value, BackendError> {
        if let Some(pvesh) = &self.pvesh {
            return pvesh.request(method, path, params);
        }
        let mut answer = self.send(method, path, params, &self.auth_headers(method)?)?;
        if answer.0 == 401 && matches!(self.auth, Auth::Password { .. }) {
            *self.session.lock().unwrap_or_else(PoisonError::into_inner) = None;
            answer = self.send(method, path, params, &self.auth_headers(method)?)?;
        }
        let (status, reason, json) = answer;
        let maybe = |m: String| BackendError {
            kind: ErrorKind::Transient,
            delivery: Delivery::MaybeApplied,
            message: m,
            detail: None,
        };
        match status {
            200..=299 => Ok(json.get("data").cloned().unwrap_or_default()),
            400 => {
                let errors = json
                    .get("errors")
                    .and_then(|e| e.as_object())
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| format!("{k}: {}", v.as_str().unwrap_or_default()))
                            .collect::<Vec<_>>()
                            .join("; ")
                    })
                    .unwrap_or_default();
                Err(BackendError::permanent(Delivery::NotSent, format!("{method} {path}: {reason}"))
                    .with_detail(errors))
            }
            401 | 403 => Err(BackendError::permanent(Delivery::NotSent, format!("{method} {path}: {status} {reason}"))),
            // Proxmox answers 500 for both: lock timeouts are worth retrying, the rest is not.
            500..=599 if reason.contains("got timeout") || reason.contains("is locked") || status != 500 => {
                Err(maybe(format!("{method} {path}: {status} {reason}")))
            }
            500 => Err(BackendError::permanent(Delivery::MaybeApplied, format!("{method} {path}: {reason}"))),
            _ => Err(BackendError::permanent(Delivery::MaybeApplied, format!("{method} {path}: {status} {reason}"))),
        }
    }

    /// Sends one request with these header lines in place of the client's authentication (each
    /// line ends in `\r\n`), and returns the answer as the server gave it: status, reason, JSON
    /// body. [`ApiClient::request`] is what the driver uses; this is for tools that must see the
    /// raw answer.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        params: &[(&str, String)],
        auth: &str,
    ) -> Result<Answer, BackendError> {
        let not_sent = |m: String| BackendError {
            kind: ErrorKind::Transient,
            delivery: Delivery::NotSent,
            message: m,
            detail: None,
        };
        let form: String =
            params.iter().map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v))).collect::<Vec<_>>().join("&");
        let with_body = matches!(method, "POST" | "PUT");
        let target =
            if with_body || form.is_empty() { format!("/api2/json{path}") } else { format!("/api2/json{path}?{form}") };
        let addr = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| not_sent(format!("cannot resolve {}: {e}", self.host)))?
            .next()
            .ok_or_else(|| not_sent(format!("{} has no address", self.host)))?;
        let tcp = TcpStream::connect_timeout(&addr, self.timeout)
            .map_err(|e| not_sent(format!("cannot connect to {}:{}: {e}", self.host, self.port)))?;
        let _ = tcp.set_read_timeout(Some(self.timeout));
        let name = ServerName::try_from(self.host.clone()).map_err(|e| not_sent(e.to_string()))?;
        let conn = rustls::ClientConnection::new(self.tls.clone(), name).map_err(|e| not_sent(e.to_string()))?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        // The handshake runs (and the certificate is checked) before any byte of the request,
        // so a refused certificate never sees the token.
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock).map_err(|e| {
                BackendError::permanent(Delivery::NotSent, format!("TLS with {}:{} failed: {e}", self.host, self.port))
            })?;
        }
        let body = if with_body { form } else { String::new() };
        let request = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}:{}\r\n{auth}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.host,
            self.port,
            body.len()
        );
        let maybe = |m: String| BackendError {
            kind: ErrorKind::Transient,
            delivery: Delivery::MaybeApplied,
            message: m,
            detail: None,
        };
        tls.write_all(request.as_bytes()).map_err(|e| maybe(format!("{method} {path}: {e}")))?;
        let mut reader = BufReader::new(tls);
        let mut status_line = String::new();
        reader.read_line(&mut status_line).map_err(|e| maybe(format!("{method} {path}: no answer: {e}")))?;
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| maybe(format!("{method} {path}: not an HTTP answer: {status_line:?}")))?;
        let reason = status_line.splitn(3, ' ').nth(2).unwrap_or_default().trim().to_string();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).map_err(|e| maybe(e.to_string()))?;
            if line.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).map_err(|e| maybe(e.to_string()))?;
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        Ok((status, reason, json))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_and_form_encoding() {
        let fp = "3A:1F:5C:9B:27:E4:80:6D:11:C2:4B:9F:03:7E:A8:52:66:D0:19:BC:4E:F3:72:A1:88:0B:DD:65:CE:29:94:17";
        assert!(matches!(TlsVerify::fingerprint(fp), Some(TlsVerify::Fingerprint(b)) if b[0] == 0x3A && b[31] == 0x17));
        assert!(TlsVerify::fingerprint("3A:1F").is_none());
        assert_eq!(form_encode("name=eth0,ip=10.0.0.5/24 x"), "name%3Deth0%2Cip%3D10.0.0.5%2F24%20x");
    }
}
