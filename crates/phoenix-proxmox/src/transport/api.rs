//! The Proxmox VE REST API over HTTPS: certificate verification by a CA file or a pinned SHA-256
//! fingerprint (turning it off must be asked for), API-token or ticket authentication, form
//! bodies, the `{"data": ...}` envelope, and errors that say whether the request may have been
//! applied. On the node itself the same requests can go through `pvesh` instead
//! ([`ApiClient::pvesh`], see [`crate::transport::pvesh`]).
//!
//! A ticket is asked for with the password when first needed (`POST /access/ticket`), sent as the
//! `PVEAuthCookie` cookie with its `CSRFPreventionToken` on every request that is not a `GET`, and
//! renewed with itself before it expires (Proxmox accepts a ticket for two hours).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use phoenix_backend::{BackendError, Delivery, ErrorKind};
use phoenix_http::{Endpoint, percent_encode as form_encode};
pub use phoenix_http::{SetupError, TlsVerify};

use crate::transport::Transport;
use crate::transport::endpoint::Call;
use crate::transport::pvesh::Pvesh;

/// How requests are authenticated.
#[derive(Clone, PartialEq, Eq)]
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

/// Shows who authenticates, never the secret or password.
impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Token { id, .. } => f.debug_struct("Token").field("id", id).field("secret", &"(hidden)").finish(),
            Auth::Password { user, .. } => {
                f.debug_struct("Password").field("user", user).field("password", &"(hidden)").finish()
            }
        }
    }
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

/// The REST API over HTTPS: the endpoint, its authentication, and the ticket of password
/// authentication (shared by the clones).
#[derive(Clone)]
pub struct Https {
    endpoint: Endpoint,
    auth: Auth,
    /// The ticket of password authentication, shared by the client's clones.
    session: Arc<Mutex<Option<Session>>>,
    /// A ticket this old is renewed before it is used.
    renew_after: Duration,
}

/// A Proxmox API endpoint: the driver's calls, sent over a [`Transport`] (HTTPS, or `pvesh` on
/// the node).
#[derive(Clone)]
pub struct ApiClient {
    https: Https,
    /// Requests go through this local `pvesh` instead of HTTPS (`https` is then unused).
    pvesh: Option<Pvesh>,
}

/// An answer: the HTTP status, its reason, and the JSON body.
pub type Answer = (u16, String, serde_json::Value);

impl Https {
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
        let (status, reason, json) = self.send(Call::Login.method(), &Call::Login.path(), &params, Vec::new())?;
        let data = &json["data"];
        let tfa = data.get("NeedTFA").is_some_and(|v| v.as_u64() == Some(1) || v.as_bool() == Some(true));
        if status == 200 && tfa {
            return Err(BackendError::permanent(
                Delivery::NotSent,
                format!("{user} has two-factor authentication: a password alone gives no ticket"),
            )
            .with_detail(
                "leave out `backend.root_ticket`: root-only settings then go through the node channel \
                 (`pct` over `backend.ssh`), or run Phoenix on the node with `via: \"pvesh\"`",
            ));
        }
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
    fn auth_headers(&self, method: &str) -> Result<Vec<(&'static str, String)>, BackendError> {
        Ok(match &self.auth {
            Auth::Token { id, secret } => vec![("Authorization", format!("PVEAPIToken={id}={secret}"))],
            Auth::Password { user, password } => {
                let s = self.ticket(user, password)?;
                let mut headers = vec![("Cookie", format!("PVEAuthCookie={}", s.ticket))];
                if method != "GET" {
                    headers.push(("CSRFPreventionToken", s.csrf));
                }
                headers
            }
        })
    }

    /// Sends one request with these headers in place of the client's authentication, and returns
    /// the answer as the server gave it: status, reason, JSON body. [`Transport::request`] is what
    /// the driver uses; this is for tools that must see the raw answer.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        params: &[(&str, String)],
        mut headers: Vec<(&str, String)>,
    ) -> Result<Answer, BackendError> {
        let form: String =
            params.iter().map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v))).collect::<Vec<_>>().join("&");
        let with_body = matches!(method, "POST" | "PUT");
        let target =
            if with_body || form.is_empty() { format!("/api2/json{path}") } else { format!("/api2/json{path}?{form}") };
        let body = if with_body { form } else { String::new() };
        headers.push(("Content-Type", "application/x-www-form-urlencoded".to_string()));
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let failed = |kind: ErrorKind, delivery: Delivery, message: String| BackendError {
            kind,
            delivery,
            message,
            detail: None,
        };
        // The handshake runs (and the certificate is checked) before any byte of the request,
        // so a refused certificate never sees the token.
        let response = self.endpoint.exchange(method, &target, &headers, body.as_bytes()).map_err(|e| match e {
            phoenix_http::Error::Unreachable(m) => failed(ErrorKind::Transient, Delivery::NotSent, m),
            phoenix_http::Error::Invalid(m) | phoenix_http::Error::Tls(m) => {
                BackendError::permanent(Delivery::NotSent, m)
            }
            phoenix_http::Error::NoAnswer(m) => {
                failed(ErrorKind::Transient, Delivery::MaybeApplied, format!("{method} {path}: {m}"))
            }
        })?;
        let json: serde_json::Value = serde_json::from_slice(&response.body).unwrap_or_default();
        Ok((response.status, response.reason, json))
    }
}

/// A ticket refused (expired early, or the server restarted) is replaced by a new login once.
impl Transport for Https {
    fn request(&self, method: &str, path: &str, params: &[(&str, String)]) -> Result<serde_json::Value, BackendError> {
        let mut answer = self.send(method, path, params, self.auth_headers(method)?)?;
        if answer.0 == 401 && matches!(self.auth, Auth::Password { .. }) {
            *self.session.lock().unwrap_or_else(PoisonError::into_inner) = None;
            answer = self.send(method, path, params, self.auth_headers(method)?)?;
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

    fn acts_as_root(&self) -> bool {
        matches!(&self.auth, Auth::Password { user, .. } if user == "root@pam")
    }
}

impl ApiClient {
    /// A client for `host:port`.
    pub fn new(host: &str, port: u16, auth: Auth, verify: TlsVerify) -> Result<ApiClient, SetupError> {
        let https = Https {
            endpoint: Endpoint::https(host, port, verify)?,
            auth,
            session: Arc::default(),
            renew_after: TICKET_LIFETIME / 2,
        };
        Ok(ApiClient { https, pvesh: None })
    }

    /// Renews the ticket once it is this old (half its lifetime unless set).
    pub fn with_ticket_renewal(mut self, after: Duration) -> ApiClient {
        self.https.renew_after = after;
        self
    }

    /// A client that sends every request through `program` (`pvesh` on the node itself), as
    /// `root@pam`, without a token or TLS.
    pub fn pvesh(program: impl Into<std::path::PathBuf>) -> Result<ApiClient, SetupError> {
        let unused = Auth::Token { id: String::new(), secret: String::new() };
        let mut client = ApiClient::new("localhost", 0, unused, TlsVerify::Insecure)?;
        client.pvesh = Some(Pvesh::new(program));
        Ok(client)
    }

    /// The transport requests go over: `pvesh` where the client was made for it, else HTTPS.
    fn transport(&self) -> &dyn Transport {
        match &self.pvesh {
            Some(pvesh) => pvesh,
            None => &self.https,
        }
    }

    /// Whether requests act as `root@pam`, which may set what Proxmox reserves to it.
    pub fn is_root(&self) -> bool {
        self.transport().acts_as_root()
    }

    /// Whether requests go through `pvesh`, and so act as `root@pam`.
    pub fn via_pvesh(&self) -> bool {
        self.pvesh.is_some()
    }

    /// Makes one of the driver's calls ([`crate::transport::endpoint::Call`]) with these
    /// parameters; returns the response's `data`.
    pub fn call(&self, call: &Call<'_>, params: &[(&str, String)]) -> Result<serde_json::Value, BackendError> {
        self.request(call.method(), &call.path(), params)
    }

    /// Sends a request over the client's transport (see [`Transport::request`]); returns the
    /// response's `data`.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        params: &[(&str, String)],
    ) -> Result<serde_json::Value, BackendError> {
        self.transport().request(method, path, params)
    }

    /// Sends one request over HTTPS with these headers in place of the client's authentication,
    /// and returns the answer as the server gave it (see [`Https::send`]).
    pub fn send(
        &self,
        method: &str,
        path: &str,
        params: &[(&str, String)],
        headers: Vec<(&str, String)>,
    ) -> Result<Answer, BackendError> {
        self.https.send(method, path, params, headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_show_in_debug_output() {
        let token = format!("{:?}", Auth::Token { id: "phoenix@pve!ci".into(), secret: "s3cret-value".into() });
        let root = format!("{:?}", Auth::Password { user: "root@pam".into(), password: "pw-value".into() });
        assert!(token.contains("phoenix@pve!ci") && !token.contains("s3cret-value"), "{token}");
        assert!(root.contains("root@pam") && !root.contains("pw-value"), "{root}");
    }
}
