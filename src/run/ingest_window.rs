//! Event times a destination's ordinary ingest refuses (older than its grace
//! period, or too far ahead) or may not keep (older than a guardrail), as its
//! [`IngestWindow`] says. A plain run counts them, says so at the first old
//! one that is refused, and warns with the counts at the end: they need a
//! backfill, a raised limit, or a look at the clock that stamped them. The
//! words of each message (the span's name, the remedy) are the destination's.

use jiff::{SignedDuration, Timestamp};

use crate::console::{Console, Verbosity};
use crate::destination::{Destination, IngestWindow, OldEvents};
use crate::event::Origin;
use crate::event::time::utc_millis_text;

/// The records of a plain run that ordinary ingest will refuse for their time,
/// as seen when the run began.
pub(crate) struct OutsideWindow {
    window: IngestWindow,
    display_name: &'static str,
    oldest: Timestamp,
    latest: Timestamp,
    too_old: u64,
    too_new: u64,
}

impl OutsideWindow {
    /// None when the destination's ingest takes any time.
    pub(crate) fn start(destination: &dyn Destination) -> Option<OutsideWindow> {
        let window = destination.ingest_window()?;
        let (oldest, latest) = window.bounds(Timestamp::now());
        Some(OutsideWindow {
            window,
            display_name: destination.kind().display_name(),
            oldest,
            latest,
            too_old: 0,
            too_new: 0,
        })
    }

    /// Counts a record about to be sent. The first one too old is said at
    /// once, so that no one waits on a long send to learn it.
    pub(crate) fn count(&mut self, time: Timestamp, origin: &Origin, console: &Console) {
        if time > self.latest {
            self.too_new += 1;
        }
        if time >= self.oldest {
            return;
        }
        self.too_old += 1;
        let OldEvents::Refused { remedy } = self.window.old else {
            return;
        };
        if self.too_old == 1 && console.verbosity() > Verbosity::Quiet {
            console.say(&format!(
                "segrelay: warning: {origin}: this event ({}) is older than {}: {}'s ingest refuses such events ({remedy}); how many there are comes at the end",
                utc_millis_text(time),
                self.grace_text(),
                self.display_name,
            ));
        }
    }

    fn grace_text(&self) -> String {
        format!(
            "{}'s {} ({})",
            self.display_name,
            self.window.grace_name,
            span_text(self.window.grace)
        )
    }

    /// What to say at the end of the run, one sentence each.
    pub(crate) fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.too_old > 0 {
            warnings.push(match self.window.old {
                OldEvents::Refused { remedy } => format!(
                    "{} older than {}: {}'s ingest refuses such events; {remedy}",
                    events_are(self.too_old),
                    self.grace_text(),
                    self.display_name,
                ),
                OldEvents::MayNeedRaising { remedy } => format!(
                    "{} older than {}: they are not held back, but the account may need the guardrail raised for {} to take them; {remedy}",
                    events_are(self.too_old),
                    self.grace_text(),
                    self.display_name,
                ),
            });
        }
        if self.too_new > 0 {
            warnings.push(format!(
                "{} more than {} in the future: {}'s ingest refuses such events (check the clock that stamped them)",
                events_are(self.too_new),
                span_text(self.window.ahead),
                self.display_name
            ));
        }
        warnings
    }
}

/// `1 event is`, `1,204 events are`.
fn events_are(n: u64) -> String {
    let digits = n.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    if n == 1 {
        format!("{grouped} event is")
    } else {
        format!("{grouped} events are")
    }
}

/// `60 days`, `12 hours`, `5 minutes`, `90 seconds`.
pub(crate) fn span_text(span: SignedDuration) -> String {
    let seconds = span.as_secs();
    let (n, unit) = if seconds % 86_400 == 0 && seconds >= 2 * 86_400 {
        (seconds / 86_400, "day")
    } else if seconds % 3600 == 0 {
        (seconds / 3600, "hour")
    } else if seconds % 60 == 0 {
        (seconds / 60, "minute")
    } else {
        (seconds, "second")
    };
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_spans_read_as_english() {
        assert_eq!(events_are(1), "1 event is");
        assert_eq!(events_are(999), "999 events are");
        assert_eq!(events_are(1_204), "1,204 events are");
        assert_eq!(events_are(12_345_678), "12,345,678 events are");
        assert_eq!(span_text(SignedDuration::from_hours(60 * 24)), "60 days");
        assert_eq!(span_text(SignedDuration::from_hours(24)), "24 hours");
        assert_eq!(span_text(SignedDuration::from_hours(12)), "12 hours");
        assert_eq!(span_text(SignedDuration::from_hours(1)), "1 hour");
        assert_eq!(span_text(SignedDuration::from_mins(5)), "5 minutes");
        assert_eq!(span_text(SignedDuration::from_secs(90)), "90 seconds");
    }
}
