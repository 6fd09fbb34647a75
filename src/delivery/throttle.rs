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

    /// Books the next request of `events` events and returns how long to wait
    /// before sending it. The caller sleeps without holding the throttle, so
    /// other threads book their turns and a stop ends the wait at once.
    pub(crate) fn reserve(&mut self, events: usize) -> Duration {
        if self.per_request.is_none() && self.per_event.is_none() {
            return Duration::ZERO;
        }
        let now = Instant::now();
        let start = self.next.map_or(now, |next| next.max(now));
        let for_request = self.per_request.unwrap_or_default();
        let for_events = self
            .per_event
            .map_or(Duration::ZERO, |d| d.saturating_mul(events as u32));
        self.next = Some(start + for_request.max(for_events));
        start - now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spaces_requests_by_the_stricter_limit() {
        let mut t = Throttle::new(Some(1000.0), Some(60_000));
        assert_eq!(t.reserve(10), Duration::ZERO);
        // 10 events at 1000 events/s book 10 ms; the request rate alone would book 1 ms.
        assert!(t.reserve(1) >= Duration::from_millis(9));
    }

    #[test]
    fn no_limit_never_waits() {
        let mut t = Throttle::new(None, None);
        for _ in 0..1000 {
            assert_eq!(t.reserve(500), Duration::ZERO);
        }
    }
}
