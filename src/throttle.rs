//! Rate limits: `--rate` requests per second and a destination's
//! `max_events_per_minute`, by spacing requests out rather than by bursts.

use std::time::{Duration, Instant};

#[derive(Debug)]
pub(crate) struct Throttle {
    per_request: Option<Duration>,
    per_event: Option<Duration>,
    next: Option<Instant>,
}

impl Throttle {
    pub(crate) fn new(
        requests_per_second: Option<f64>,
        events_per_minute: Option<u64>,
    ) -> Throttle {
        Throttle {
            per_request: requests_per_second.map(|r| Duration::from_secs_f64(1.0 / r)),
            per_event: events_per_minute.map(|e| Duration::from_secs_f64(60.0 / e as f64)),
            next: None,
        }
    }

    /// Sleeps until a request of `events` events may go, and books its share.
    /// Returns how long it slept.
    pub(crate) fn wait(&mut self, events: usize) -> Duration {
        if self.per_request.is_none() && self.per_event.is_none() {
            return Duration::ZERO;
        }
        let now = Instant::now();
        let start = self.next.map_or(now, |next| next.max(now));
        let slept = start - now;
        if !slept.is_zero() {
            std::thread::sleep(slept);
        }
        let for_request = self.per_request.unwrap_or_default();
        let for_events = self
            .per_event
            .map_or(Duration::ZERO, |d| d.saturating_mul(events as u32));
        self.next = Some(start + for_request.max(for_events));
        slept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spaces_requests_by_the_stricter_limit() {
        let mut t = Throttle::new(Some(1000.0), Some(60_000));
        assert_eq!(t.wait(10), Duration::ZERO);
        // 10 events at 1000 events/s book 10 ms; the request rate alone would book 1 ms.
        let start = Instant::now();
        t.wait(1);
        assert!(start.elapsed() >= Duration::from_millis(9));
    }

    #[test]
    fn no_limit_never_waits() {
        let mut t = Throttle::new(None, None);
        for _ in 0..1000 {
            assert_eq!(t.wait(500), Duration::ZERO);
        }
    }
}
