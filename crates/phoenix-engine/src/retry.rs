//! Retrying transient backend failures with exponential backoff and jitter.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use phoenix_backend::{BackendError, Delivery};

/// How transient failures are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// Pause before the second attempt; doubled each time.
    pub base: Duration,
    /// Longest pause.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy { attempts: 6, base: Duration::from_millis(500), max: Duration::from_secs(10) }
    }
}

impl RetryPolicy {
    /// The pause before attempt `n` (1 = the second attempt), with ±50 % jitter so that clients
    /// fighting over one lock spread out.
    pub fn pause(&self, n: u32) -> Duration {
        let exp = self.base.saturating_mul(1u32 << n.saturating_sub(1).min(16)).min(self.max);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        // A cheap, well-mixed number from the clock: enough to spread retries.
        let mixed = (u64::from(nanos) ^ (u64::from(n) << 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 33;
        let factor = 0.5 + (mixed % 1000) as f64 / 1000.0;
        exp.mul_f64(factor)
    }

    /// Runs `op` until it succeeds, fails permanently, or attempts run out. After a failure that
    /// may have been applied, `applied` is asked first: when it answers yes, the call counts as
    /// done. `on_retry` hears about each retry.
    pub fn run<T>(
        &self,
        mut op: impl FnMut() -> Result<T, BackendError>,
        applied: impl Fn() -> Option<T>,
        mut on_retry: impl FnMut(&BackendError, u32),
    ) -> Result<T, BackendError> {
        let mut attempt = 1;
        loop {
            match op() {
                Ok(v) => return Ok(v),
                Err(e) => {
                    if e.delivery == Delivery::MaybeApplied
                        && let Some(v) = applied()
                    {
                        return Ok(v);
                    }
                    if !e.is_transient() || attempt >= self.attempts {
                        return Err(e);
                    }
                    on_retry(&e, attempt);
                    std::thread::sleep(self.pause(attempt));
                    attempt += 1;
                }
            }
        }
    }
}
