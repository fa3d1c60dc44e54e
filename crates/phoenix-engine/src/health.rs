//! Health checks: a command inside the guest, or an HTTP or TCP probe from the host.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use phoenix_backend::{Backend, ExecRequest, GuestId};
use phoenix_config::model::{HealthCheck, HttpScheme};

/// Probes made from the host, behind a trait so that tests can answer them.
pub trait Prober: Sync {
    /// Whether a TCP connection to the address opens within the timeout.
    fn tcp(&self, addr: &str, port: u32, timeout: Duration) -> Result<(), String>;
    /// The status code of `GET path` on the address.
    fn http(&self, addr: &str, port: u32, path: &str, timeout: Duration) -> Result<u16, String>;
}

/// Probes over the network.
#[derive(Debug, Default, Clone, Copy)]
pub struct NetProber;

fn socket(addr: &str, port: u32) -> Result<SocketAddr, String> {
    (addr, u16::try_from(port).map_err(|_| format!("port {port} is out of range"))?)
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or_else(|| format!("{addr} has no address"))
}

impl Prober for NetProber {
    fn tcp(&self, addr: &str, port: u32, timeout: Duration) -> Result<(), String> {
        TcpStream::connect_timeout(&socket(addr, port)?, timeout).map(|_| ()).map_err(|e| e.to_string())
    }

    fn http(&self, addr: &str, port: u32, path: &str, timeout: Duration) -> Result<u16, String> {
        let mut s = TcpStream::connect_timeout(&socket(addr, port)?, timeout).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
        s.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: phoenix\r\nConnection: close\r\n\r\n")
            .map_err(|e| e.to_string())?;
        let mut head = [0u8; 64];
        let n = s.read(&mut head).map_err(|e| e.to_string())?;
        let line = String::from_utf8_lossy(&head[..n]);
        line.split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("not an HTTP answer: {line:?}"))
    }
}

/// Probes that always pass: for guests whose services cannot be reached from where the engine
/// runs, such as the in-memory backend's or a test double's guests (commands inside guests
/// still run).
#[derive(Debug, Default, Clone, Copy)]
pub struct AlwaysUp;

impl Prober for AlwaysUp {
    fn tcp(&self, _: &str, _: u32, _: Duration) -> Result<(), String> {
        Ok(())
    }

    fn http(&self, _: &str, _: u32, _: &str, _: Duration) -> Result<u16, String> {
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
) -> Result<(), String> {
    let timeout = Duration::from_secs(u64::from(check.timeout.unwrap_or(10)));
    if let Some(cmd) = &check.command {
        let out =
            backend.exec(guest, &ExecRequest::new(["sh", "-c", cmd.as_str()], timeout)).map_err(|e| e.to_string())?;
        return if out.success() {
            Ok(())
        } else {
            Err(format!("`{cmd}` exited with {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()))
        };
    }
    let reported;
    let addr = match address {
        Some(a) => a,
        None => {
            // No static address (DHCP): the one the guest reports now, IPv4 first.
            let mut found = backend.addresses(guest).map_err(|e| e.to_string())?;
            found.sort_by_key(|a| !a.is_ipv4());
            reported = found.first().map(ToString::to_string).ok_or(
                "the guest reports no address yet, and has no static one (give `network_config.ip`, or use a `command` check)",
            )?;
            reported.as_str()
        }
    };
    if let Some(t) = &check.tcp {
        return prober.tcp(addr, t.port, timeout);
    }
    if let Some(h) = &check.http {
        if h.scheme == Some(HttpScheme::Https) {
            return prober.tcp(addr, h.port, timeout);
        }
        let status = prober.http(addr, h.port, h.path.as_deref().unwrap_or("/"), timeout)?;
        let ok = match h.expect_status {
            Some(want) => u32::from(status) == want,
            None => (200..300).contains(&status),
        };
        return if ok { Ok(()) } else { Err(format!("HTTP status {status}")) };
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
) -> Result<(), String> {
    let retries = check.retries.unwrap_or(5).max(1);
    let interval = Duration::from_secs(u64::from(check.interval.unwrap_or(5))).mul_f64(interval_scale);
    let mut last = String::new();
    for attempt in 1..=retries {
        match probe_once(backend, prober, guest, address, check) {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
        if attempt < retries {
            std::thread::sleep(interval);
        }
    }
    Err(format!("not healthy after {retries} attempt(s): {last}"))
}
