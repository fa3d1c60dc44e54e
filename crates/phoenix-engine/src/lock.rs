//! One apply at a time per target: an exclusive lock on a file naming its holder.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Someone else holds it.
    #[error("another phoenix run holds the lock {path} ({holder})")]
    Held {
        /// The lock file.
        path: PathBuf,
        /// Who holds it, as it wrote itself into the file.
        holder: String,
    },
    /// The lock file cannot be used.
    #[error("cannot use the lock file {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A held lock; released when dropped (and by the kernel if the process dies).
#[derive(Debug)]
pub struct ApplyLock {
    file: File,
}

impl ApplyLock {
    /// Takes the lock at `path`, waiting up to `wait` for its holder to finish.
    pub fn acquire(path: &Path, wait: Duration) -> Result<ApplyLock, LockError> {
        let io = |source| LockError::Io { path: path.to_path_buf(), source };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).map_err(io)?;
        let deadline = Instant::now() + wait;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(LockError::Held { path: path.to_path_buf(), holder: holder_text(&mut file) });
                }
                Err(TryLockError::Error(e)) => return Err(io(e)),
            }
        }
        let since = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let me = format!("pid {} on {}, since {}", std::process::id(), hostname(), utc(since));
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(me.as_bytes()).map_err(io)?;
        Ok(ApplyLock { file })
    }
}

/// Who holds the lock at `path` now, if anyone (the lock is not taken).
pub fn holder(path: &Path) -> Option<String> {
    let mut file = OpenOptions::new().read(true).open(path).ok()?;
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            None
        }
        Err(TryLockError::WouldBlock) => Some(holder_text(&mut file)),
        Err(TryLockError::Error(_)) => None,
    }
}

/// What the holder of a lock wrote of itself into the lock file.
fn holder_text(file: &mut File) -> String {
    let mut holder = String::new();
    let _ = file.read_to_string(&mut holder);
    if holder.trim().is_empty() { "holder unknown".to_string() } else { holder.trim().to_string() }
}

/// A time as `YYYY-MM-DD hh:mm:ss UTC`.
fn utc(seconds: u64) -> String {
    let t = crate::utc::Utc::from_unix(seconds);
    format!("{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC", t.year, t.month, t.day, t.hour, t.minute, t.second)
}

impl Drop for ApplyLock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_or_else(|_| "this host".to_string(), |h| h.trim().to_string())
}
