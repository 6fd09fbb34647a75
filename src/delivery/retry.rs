//! When to try a request again: exponential backoff with full jitter, capped,
//! and the server's own `Retry-After`, capped by `--max-retry-wait`.

use std::time::Duration;

use crate::destination::Backoff;

#[derive(Debug, Clone)]
pub(crate) struct RetryPolicy {
    pub max_retries: u32,
    /// The first backoff ceiling; each retry doubles it, up to `cap`.
    pub base: Duration,
    pub cap: Duration,
    /// No single wait is longer, whatever the server asks.
    pub max_wait: Duration,
}

impl RetryPolicy {
    /// The backoff the destination advises (`Destination::backoff`), with the
    /// run's own bounds.
    pub(crate) fn new(backoff: Backoff, max_retries: u32, max_wait: Duration) -> RetryPolicy {
        RetryPolicy {
            max_retries,
            base: backoff.base,
            cap: backoff.cap,
            max_wait,
        }
    }

    /// The wait before retry number `retry` (1-based): the server's
    /// `Retry-After` when it gave one, else a random time up to the backoff ceiling.
    pub(crate) fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let wait = match retry_after {
            Some(asked) => asked,
            None => {
                let ceiling = self
                    .base
                    .saturating_mul(1u32 << retry.saturating_sub(1).min(20))
                    .min(self.cap);
                ceiling.mul_f64(fastrand::f64())
            }
        };
        wait.min(self.max_wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        let backoff = Backoff {
            base: Duration::from_secs(2),
            cap: Duration::from_secs(80),
        };
        RetryPolicy::new(backoff, 6, Duration::from_secs(300))
    }

    #[test]
    fn backoff_grows_within_its_ceiling() {
        let p = policy();
        for _ in 0..200 {
            assert!(p.delay(1, None) <= Duration::from_secs(2));
            assert!(p.delay(3, None) <= Duration::from_secs(8));
            assert!(p.delay(30, None) <= Duration::from_secs(80));
        }
        let waits: Vec<Duration> = (0..50).map(|_| p.delay(4, None)).collect();
        assert!(
            waits.iter().any(|w| *w != waits[0]),
            "jitter makes waits differ"
        );
    }

    #[test]
    fn retry_after_wins_but_is_capped() {
        let p = RetryPolicy {
            max_wait: Duration::from_secs(10),
            ..policy()
        };
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(3600))),
            Duration::from_secs(10)
        );
    }
}
