//! Health checks: a command inside the guest, or an HTTP or TCP probe from the host.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use phoenix_backend::{Backend, BackendError, ExecRequest, GuestId};
use phoenix_config::model::{HealthCheck, HttpScheme};

/// Why a probe from the host failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// The check's port does not fit in 16 bits.
    #[error("port {0} is out of range")]
    Port(u32),
    /// The address resolves to nothing.
    #[error("{0} has no address")]
    NoAddress(String),
    /// Resolving, connecting, sending or reading failed (`Connection refused`, a time-out).
    #[error("{0}")]
    Io(String),
    /// Something answered, but not with an HTTP status line.
    #[error("not an HTTP answer: {0:?}")]
    NotHttp(String),
}

impl From<std::io::Error> for ProbeError {
    fn from(e: std::io::Error) -> ProbeError {
        ProbeError::Io(e.to_string())
    }
}

/// Why a guest is not healthy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HealthError {
    /// The check's command ran inside the guest and failed.
    #[error("`{command}` exited with {status}: {stderr}")]
    Command {
        /// The command.
        command: String,
        /// Its exit status.
        status: i32,
        /// Its standard error, trimmed.
        stderr: String,
    },
    /// The backend could not run the command, or tell the guest's addresses.
    #[error("{0}")]
    Backend(#[from] BackendError),
    /// There is no address to probe.
    #[error(
        "the guest reports no address yet, and has no static one (give `network_config.ip`, or use a `command` check)"
    )]
    NoGuestAddress,
    /// The probe from the host failed.
    #[error("{0}")]
    Probe(#[from] ProbeError),
    /// The HTTP answer's status is not the one expected.
    #[error("HTTP status {0}")]
    Status(u16),
    /// Every attempt failed: the last one's failure.
    #[error("not healthy after {attempts} attempt(s): {last}")]
    NotHealthy {
        /// How many attempts were made.
        attempts: u32,
        /// Why the last one failed.
        last: Box<HealthError>,
    },
}

/// Probes made from the host, behind a trait so that tests can answer them.
pub trait Prober: Sync {
    /// Whether a TCP connection to the address opens within the timeout.
    fn tcp(&self, addr: &str, port: u32, timeout: Duration) -> Result<(), ProbeError>;
    /// The status code of `GET path` on the address.
    fn http(&self, addr: &str, port: u32, path: &str, timeout: Duration) -> Result<u16, ProbeError>;
}

/// Probes over the network.
#[derive(Debug, Default, Clone, Copy)]
pub struct NetProber;

fn socket(addr: &str, port: u32) -> Result<SocketAddr, ProbeError> {
    (addr, u16::try_from(port).map_err(|_| ProbeError::Port(port))?)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| ProbeError::NoAddress(addr.to_string()))
}

impl Prober for NetProber {
    fn tcp(&self, addr: &str, port: u32, timeout: Duration) -> Result<(), ProbeError> {
        TcpStream::connect_timeout(&socket(addr, port)?, timeout)?;
        Ok(())
    }

    fn http(&self, addr: &str, port: u32, path: &str, timeout: Duration) -> Result<u16, ProbeError> {
        let mut s = TcpStream::connect_timeout(&socket(addr, port)?, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: phoenix\r\nConnection: close\r\n\r\n")?;
        let mut head = [0u8; 64];
        let n = s.read(&mut head)?;
        let line = String::from_utf8_lossy(&head[..n]);
        line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| ProbeError::NotHttp(line.into()))
    }
}

/// Probes that always pass: for guests whose services cannot be reached from where the engine
/// runs, such as the in-memory backend's or a test double's guests (commands inside guests
/// still run).
#[derive(Debug, Default, Clone, Copy)]
pub struct AlwaysUp;

impl Prober for AlwaysUp {
    fn tcp(&self, _: &str, _: u32, _: Duration) -> Result<(), ProbeError> {
        Ok(())
    }

    fn http(&self, _: &str, _: u32, _: &str, _: Duration) -> Result<u16, ProbeError> {
        Ok(200)
    }
}

/// Runs the check once: `Ok` when healthy, else what was seen.
pub fn probe_once(
    backend: &dyn Backend,
    prober: &dyn Prober,
    guest: GuestId,
    address: Option<&str>,
    check: &HealthCheck,
) -> Result<(), HealthError> {
    let timeout = Duration::from_secs(u64::from(check.timeout.unwrap_or(10)));
    if let Some(cmd) = &check.command {
        let out = backend.exec(guest, &ExecRequest::new(["sh", "-c", cmd.as_str()], timeout))?;
        return if out.success() {
            Ok(())
        } else {
            Err(HealthError::Command {
                command: cmd.clone(),
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        };
    }
    let reported;
    let addr = match address {
        Some(a) => a,
        None => {
            // No static address (DHCP): the one the guest reports now, IPv4 first.
            let mut found = backend.addresses(guest)?;
            found.sort_by_key(|a| !a.is_ipv4());
            reported = found.first().map(ToString::to_string).ok_or(HealthError::NoGuestAddress)?;
            reported.as_str()
        }
    };
    if let Some(t) = &check.tcp {
        return Ok(prober.tcp(addr, t.port, timeout)?);
    }
    if let Some(h) = &check.http {
        if h.scheme == Some(HttpScheme::Https) {
            return Ok(prober.tcp(addr, h.port, timeout)?);
        }
        let status = prober.http(addr, h.port, h.path.as_deref().unwrap_or("/"), timeout)?;
        let ok = match h.expect_status {
            Some(want) => u32::from(status) == want,
            None => (200..300).contains(&status),
        };
        return if ok { Ok(()) } else { Err(HealthError::Status(status)) };
    }
    Ok(())
}

/// Runs the check until it passes or its retries are spent.
pub fn wait_healthy(
    backend: &dyn Backend,
    prober: &dyn Prober,
    guest: GuestId,
    address: Option<&str>,
    check: &HealthCheck,
    interval_scale: f64,
) -> Result<(), HealthError> {
    let retries = check.retries.unwrap_or(5).max(1);
    let interval = Duration::from_secs(u64::from(check.interval.unwrap_or(5))).mul_f64(interval_scale);
    let mut attempt = 1;
    loop {
        match probe_once(backend, prober, guest, address, check) {
            Ok(()) => return Ok(()),
            Err(last) if attempt >= retries => {
                return Err(HealthError::NotHealthy { attempts: retries, last: Box::new(last) });
            }
            Err(_) => {}
        }
        std::thread::sleep(interval);
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use phoenix_testkit::memory::MemoryBackend;

    /// Answers probes as it is told: a refused connection, or this HTTP status.
    struct Answers(Option<u16>);

    impl Prober for Answers {
        fn tcp(&self, _: &str, _: u32, _: Duration) -> Result<(), ProbeError> {
            self.0.map(|_| ()).ok_or_else(|| ProbeError::Io("Connection refused".into()))
        }
        fn http(&self, _: &str, _: u32, _: &str, _: Duration) -> Result<u16, ProbeError> {
            self.0.ok_or_else(|| ProbeError::Io("Connection refused".into()))
        }
    }

    fn check(json: &str) -> HealthCheck {
        serde_json::from_str(json).expect("check")
    }

    #[test]
    fn failures_are_typed_and_read_as_before() {
        let backend = MemoryBackend::new();
        let http = check(r#"{"http": {"port": 80, "path": "/health"}, "retries": 2, "interval": 0}"#);
        let probe = |answer, address| probe_once(&backend, &Answers(answer), 300, address, &http);
        assert_eq!(probe(Some(204), Some("10.0.0.5")), Ok(()));
        assert_eq!(probe(Some(503), Some("10.0.0.5")), Err(HealthError::Status(503)));
        assert_eq!(probe(Some(503), Some("10.0.0.5")).expect_err("503").to_string(), "HTTP status 503");
        let refused = HealthError::Probe(ProbeError::Io("Connection refused".into()));
        assert_eq!(probe(None, Some("10.0.0.5")), Err(refused.clone()));

        let waited = wait_healthy(&backend, &Answers(None), 300, Some("10.0.0.5"), &http, 0.0);
        assert_eq!(waited, Err(HealthError::NotHealthy { attempts: 2, last: Box::new(refused) }));
        assert_eq!(
            waited.expect_err("down").to_string(),
            "not healthy after 2 attempt(s): Connection refused",
            "the message reads as the strings it replaces did"
        );
        assert_eq!(ProbeError::Port(70_000).to_string(), "port 70000 is out of range");
        assert_eq!(ProbeError::NotHttp("SSH-2.0".into()).to_string(), r#"not an HTTP answer: "SSH-2.0""#);
    }
}
