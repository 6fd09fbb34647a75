//! When a moved checkpoint is written. A write costs a rename and fsyncs (of
//! the checkpoint, its folder, the rejects file and the files a destination's
//! gate keeps beside it), 2 ms or more: after every line that settles
//! without a request (filtered, skipped, rejected) it dominates the run, and
//! even after every request it is a sixth of a run against a fast API. So
//! the checkpoint is written once requests were made since the last write
//! and at least `AFTER_REQUESTS` has passed, else at most once per
//! `INTERVAL`, and always when a pass ends or the run stops (the caller's
//! `force`).
//!
//! What a crash between writes costs: the batches settled in the last fifth of
//! a second, which a resume sends again under the same idempotency keys (the
//! destination keeps one of each), and the lines settled without a request in
//! the last second, which it reads and settles again. Nothing is counted
//! twice: the counts are the checkpoint's, and the rejects file is cut back to
//! the length the checkpoint recorded with them.

use std::time::{Duration, Instant};

/// How often at most lines settled without requests are written.
pub(crate) const INTERVAL: Duration = Duration::from_secs(1);
/// How often at most the checkpoint is written after requests.
pub(crate) const AFTER_REQUESTS: Duration = Duration::from_millis(200);

#[derive(Debug, Clone)]
pub(crate) struct Saving {
    interval: Duration,
    /// When the checkpoint was last written.
    last: Instant,
    /// The run's request count when it was last written.
    requests: u64,
}

impl Saving {
    pub(crate) fn new(interval: Duration, now: Instant) -> Saving {
        Saving {
            interval,
            last: now,
            requests: 0,
        }
    }

    /// Whether a checkpoint that moved should be written now, `requests`
    /// having been made by the run so far.
    pub(crate) fn due(&self, now: Instant, requests: u64) -> bool {
        let since = now.saturating_duration_since(self.last);
        (requests != self.requests && since >= AFTER_REQUESTS) || since >= self.interval
    }

    pub(crate) fn written(&mut self, now: Instant, requests: u64) {
        self.last = now;
        self.requests = requests;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines settled without requests over `span`, one every `every`, with a
    /// request made on the lines in `requests`: the writes the policy makes,
    /// with the one forced at the end.
    fn writes(lines: u64, every: Duration, requests: &[u64]) -> u64 {
        let start = Instant::now();
        let mut saving = Saving::new(INTERVAL, start);
        let mut made = 0;
        let mut writes = 0;
        for line in 0..lines {
            let now = start + every * line as u32;
            if requests.contains(&line) {
                made += 1;
            }
            if saving.due(now, made) {
                saving.written(now, made);
                writes += 1;
            }
        }
        writes + 1
    }

    #[test]
    fn lines_without_requests_are_written_about_once_a_second() {
        // 5,000 filtered lines read in 0.05 s: the final write only.
        assert_eq!(writes(5_000, Duration::from_micros(10), &[]), 1);
        // ... in 2.5 s: two timed writes and the final one.
        assert_eq!(writes(5_000, Duration::from_micros(500), &[]), 3);
    }

    #[test]
    fn requests_are_written_within_a_fifth_of_a_second() {
        // A line a millisecond: the request at 0.25 s is written at once, the
        // one 10 ms later at 0.45 s, the one at 0.9 s at once; then the final write.
        assert_eq!(writes(1_000, Duration::from_millis(1), &[250, 260, 900]), 4);
        // Requests 5 ms apart for 2 s: a write every 0.2 s from 0.2 s to 1.8 s
        // and the final one, not 400.
        let requests: Vec<u64> = (0..400).map(|i| i * 5).collect();
        assert_eq!(writes(2_000, Duration::from_millis(1), &requests), 10);
    }

    #[test]
    fn a_write_restarts_the_interval() {
        let start = Instant::now();
        let mut saving = Saving::new(INTERVAL, start);
        assert!(!saving.due(start + Duration::from_millis(999), 0));
        assert!(saving.due(start + Duration::from_millis(1000), 0));
        saving.written(start + Duration::from_millis(1500), 0);
        assert!(!saving.due(start + Duration::from_millis(1600), 1));
        assert!(saving.due(start + Duration::from_millis(1700), 1));
        saving.written(start + Duration::from_millis(2000), 1);
        assert!(!saving.due(start + Duration::from_millis(2001), 1));
        // A clock that went back is no reason to write.
        assert!(!saving.due(start, 1));
    }
}
