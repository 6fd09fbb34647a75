//! The problem lines on standard error: each distinct problem once, with the
//! place of its first event, and a count for the events that repeat it. A 401
//! or Ctrl-C fails every event in flight for one reason: one line says so,
//! not one line per event (`-v` lists each).

use crate::console::{Verbosity, plural};

/// Distinct problems printed one by one before the rest are only counted.
pub(crate) const SHOWN: usize = 20;

/// A problem printed, and the events since that had exactly the same one.
struct Shown {
    outcome: &'static str,
    /// `run aborted: ...`: why, the same for each of its events.
    reason: String,
    /// Where its first event was.
    first: String,
    repeats: u64,
}

#[derive(Default)]
pub(crate) struct Problems {
    shown: Vec<Shown>,
    /// Problems neither printed nor counted as the repeat of one printed.
    hidden: u64,
}

impl Problems {
    /// What to print now for a problem (`outcome`: `rejected` or `failed`) of
    /// the event at `place`, if anything.
    pub(crate) fn line(
        &mut self,
        verbosity: Verbosity,
        outcome: &'static str,
        place: &str,
        reason: &dyn std::fmt::Display,
    ) -> Option<String> {
        match verbosity {
            Verbosity::Quiet => return None,
            Verbosity::Verbose => return Some(format!("segrelay: {place}: {outcome}: {reason}")),
            Verbosity::Normal => {}
        }
        let reason = reason.to_string();
        if let Some(shown) = self
            .shown
            .iter_mut()
            .find(|s| s.outcome == outcome && s.reason == reason)
        {
            shown.repeats += 1;
            return None;
        }
        if self.shown.len() >= SHOWN {
            self.hidden += 1;
            return None;
        }
        let line = format!("segrelay: {place}: {outcome}: {reason}");
        self.shown.push(Shown {
            outcome,
            reason,
            first: place.to_owned(),
            repeats: 0,
        });
        Some(line)
    }

    /// For each problem printed that later events repeated: how many events
    /// had it in all. Said once, at the end of the run.
    pub(crate) fn repeated(&self) -> Vec<String> {
        self.shown
            .iter()
            .filter(|s| s.repeats > 0)
            .map(|s| {
                format!(
                    "segrelay: {} {}: {} (the first at {}; -v lists each)",
                    plural(s.repeats + 1, "event"),
                    s.outcome,
                    s.reason,
                    s.first
                )
            })
            .collect()
    }

    /// Problems not said at all (past the first [`SHOWN`] distinct ones).
    pub(crate) fn hidden(&self) -> u64 {
        self.hidden
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_problem_is_said_once_then_counted() {
        let mut problems = Problems::default();
        let first = problems.line(
            Verbosity::Normal,
            "failed",
            "a.ndjson:9",
            &"run aborted: 401",
        );
        assert_eq!(
            first.as_deref(),
            Some("segrelay: a.ndjson:9: failed: run aborted: 401")
        );
        for line in 10..66 {
            let place = format!("a.ndjson:{line}");
            assert_eq!(
                problems.line(Verbosity::Normal, "failed", &place, &"run aborted: 401"),
                None
            );
        }
        // Another reason, or the same reason as another outcome, is another problem.
        assert!(
            problems
                .line(
                    Verbosity::Normal,
                    "rejected",
                    "a.ndjson:70",
                    &"run aborted: 401"
                )
                .is_some()
        );
        assert_eq!(
            problems.repeated(),
            [
                "segrelay: 57 events failed: run aborted: 401 (the first at a.ndjson:9; -v lists each)"
            ]
        );
        assert_eq!(problems.hidden(), 0);
    }

    #[test]
    fn distinct_problems_past_the_first_twenty_are_hidden() {
        let mut problems = Problems::default();
        let said = (0..25)
            .filter_map(|i| {
                problems.line(Verbosity::Normal, "rejected", "a:1", &format!("bad {i}"))
            })
            .count();
        assert_eq!(said, SHOWN);
        assert_eq!(problems.hidden(), 5);
        // A repeat of one shown is not hidden: it is counted with it.
        assert_eq!(
            problems.line(Verbosity::Normal, "rejected", "a:2", &"bad 3"),
            None
        );
        assert_eq!(problems.hidden(), 5);
        assert_eq!(problems.repeated().len(), 1);
    }

    #[test]
    fn verbose_lists_each_and_quiet_none() {
        let mut problems = Problems::default();
        for _ in 0..3 {
            assert!(
                problems
                    .line(Verbosity::Verbose, "failed", "a:1", &"x")
                    .is_some()
            );
            assert!(
                problems
                    .line(Verbosity::Quiet, "failed", "a:1", &"x")
                    .is_none()
            );
        }
        assert!(problems.repeated().is_empty());
        assert_eq!(problems.hidden(), 0);
    }
}
