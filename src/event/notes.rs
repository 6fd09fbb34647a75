//! What reading an event's time found that the run says at its end: a time
//! taken from the sender's clock, or one without an offset, read as
//! UTC. Noted on the preparing threads, where the time is parsed anyway, and
//! counted on the thread that settles events, in input order: the counts are
//! exact and the first place is the first in the input.

use super::Origin;

/// What reading one event's time found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Notes(u8);

impl Notes {
    /// The time is the client's clock: the event has no `receivedAt`, so
    /// Segment never corrected it for the device's clock skew.
    pub const CLIENT_CLOCK: Notes = Notes(1);
    /// The time has no offset (`2026-12-05T22:30:00`): read as UTC.
    pub const NO_OFFSET: Notes = Notes(2);

    pub fn contains(self, other: Notes) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }

    pub fn with(self, other: Notes) -> Notes {
        Notes(self.0 | other.0)
    }
}

/// The run's counts of noted events, and where the first of each was.
#[derive(Debug, Default)]
pub struct Tally {
    client_clock: Count,
    no_offset: Count,
}

#[derive(Debug, Default)]
struct Count {
    events: u64,
    first: Option<Origin>,
}

impl Count {
    fn add(&mut self, origin: &Origin) {
        self.events += 1;
        self.first.get_or_insert(*origin);
    }
}

impl Tally {
    /// Counts one settled event's notes.
    pub fn count(&mut self, notes: Notes, origin: &Origin) {
        if notes == Notes::default() {
            return;
        }
        if notes.contains(Notes::CLIENT_CLOCK) {
            self.client_clock.add(origin);
        }
        if notes.contains(Notes::NO_OFFSET) {
            self.no_offset.add(origin);
        }
    }

    /// What to say at the end of the run, one sentence each.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if let (events, Some(first)) = (self.client_clock.events, self.client_clock.first) {
            warnings.push(format!(
                "{} no receivedAt (the first at {first}): {} the sender's clock, not corrected for its skew. Segment corrects a time when it receives the event (timestamp = receivedAt - (sentAt - originalTimestamp)); lines without receivedAt (request bodies logged before Segment received them) were never corrected, and a device with a wrong clock puts them hours or days off",
                events_have(events),
                if events == 1 { "its time is" } else { "their times are" }
            ));
        }
        if let (events, Some(first)) = (self.no_offset.events, self.no_offset.first) {
            warnings.push(format!(
                "{} a time without an offset (the first at {first}), read as UTC: if {} written in local time, {} off by the local offset",
                events_have(events),
                if events == 1 { "it was" } else { "they were" },
                if events == 1 { "it is" } else { "they are" }
            ));
        }
        warnings
    }
}

/// `1 event has`, `1204 events have`.
fn events_have(n: u64) -> String {
    match n {
        1 => "1 event has".to_owned(),
        n => format!("{n} events have"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: u64) -> Origin {
        Origin {
            source: "in.ndjson",
            line,
        }
    }

    #[test]
    fn counts_each_note_and_keeps_the_first_place() {
        let mut tally = Tally::default();
        assert!(tally.warnings().is_empty());
        tally.count(Notes::default(), &at(1));
        tally.count(Notes::NO_OFFSET, &at(2));
        tally.count(Notes::CLIENT_CLOCK.with(Notes::NO_OFFSET), &at(3));
        tally.count(Notes::CLIENT_CLOCK, &at(4));
        let warnings = tally.warnings();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].starts_with("2 events have no receivedAt (the first at in.ndjson:3): their times are the sender's clock"),
            "{}",
            warnings[0]
        );
        assert!(
            warnings[1].starts_with(
                "2 events have a time without an offset (the first at in.ndjson:2), read as UTC"
            ),
            "{}",
            warnings[1]
        );
        assert!(!Notes::default().contains(Notes::default()));
    }
}
