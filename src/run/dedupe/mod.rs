//! Repeated idempotency keys. A usage record whose key the run already sent or
//! queued is skipped as a duplicate, whatever batch either falls in: one
//! destination refuses a batch holding one key twice with two bodies, another
//! takes both, and Segment itself archives some messages twice. When the records
//! differ, the run warns, naming both places.
//!
//! Exact over the last `WINDOW` keys, in fixed memory; past that, the
//! destination's own deduplication applies. Records of a destination's other
//! streams (customer writes) are not usage and are left alone: two of one
//! customer are two updates.

mod window;

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hasher};

use crate::console::plural;
use crate::event::Origin;
use crate::event::reason::Reason;
use window::{First, KeyPrint, Window};

/// Keys compared exactly: the last million sent or queued (about 25 MiB).
pub(crate) const WINDOW: usize = 1_000_000;
const _: () = assert!(WINDOW <= window::MAX_CAPACITY);
/// Repeated keys with another record named in the warning, each with both places.
const EXAMPLES: usize = 5;

/// What the window compares of a usage record: fingerprints of its key and of
/// its translated record, made where the record is translated.
///
/// A key is 96 bits of SipHash (two runs with different seeds): a different
/// key passes for a kept one with probability 2^-96 per entry, so at most
/// 10^6 × 2^-96 ≈ 1.3 × 10^-23 per event, about 10^-11 over a trillion
/// events: a false "duplicate" never happens in practice. Two different
/// records share a 32-bit fingerprint with probability 2^-32: that repeat is
/// still skipped, only left out of the warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Prints {
    key: KeyPrint,
    record: u32,
}

pub(crate) fn prints(key: &str, record: &str) -> Prints {
    Prints {
        key: KeyPrint {
            key: hash(0, key),
            check: hash(1, key) as u32,
        },
        record: hash(2, record) as u32,
    }
}

fn hash(seed: u64, text: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    hasher.write_u64(seed);
    hasher.write(text.as_bytes());
    hasher.finish()
}

/// The run's record of keys sent or queued, shared by all its passes.
pub(crate) struct Dedupe {
    window: Window,
    places: Places,
    /// Events skipped as duplicates whose record differs from the first's.
    differing: u64,
    /// The first few: the key, the first event's place and the repeat's.
    examples: Vec<(String, Option<Origin>, Origin)>,
}

impl Default for Dedupe {
    fn default() -> Dedupe {
        Dedupe::with_window(WINDOW)
    }
}

impl Dedupe {
    pub(crate) fn with_window(keys: usize) -> Dedupe {
        Dedupe {
            window: Window::new(keys),
            places: Places::default(),
            differing: 0,
            examples: Vec::new(),
        }
    }

    /// Why the usage record read at `origin` is not to be sent: an earlier one
    /// had its key. None when the key is new (then `remember` it once queued).
    pub(crate) fn duplicate(
        &mut self,
        key: &str,
        prints: Prints,
        origin: Origin,
    ) -> Option<Reason> {
        let first = self.window.find(prints.key)?;
        let place = self.places.origin(first.place);
        let at = place.map_or_else(|| "an earlier event".to_owned(), |o| o.to_string());
        let detail = if first.record == prints.record {
            format!("idempotency key {key:?} was already queued at {at}, with the same record")
        } else {
            self.differing += 1;
            if self.examples.len() < EXAMPLES {
                self.examples.push((key.to_owned(), place, origin));
            }
            format!(
                "idempotency key {key:?} was already queued at {at}, with a different record: only the first is sent"
            )
        };
        Some(Reason::new(DUPLICATE, detail))
    }

    /// A usage record with a new key is queued: later ones with its key are duplicates.
    pub(crate) fn remember(&mut self, prints: Prints, origin: Origin) {
        let place = self.places.pack(origin);
        self.window.insert(
            prints.key,
            First {
                record: prints.record,
                place,
            },
        );
    }

    /// What the run should warn of: duplicates whose record differed.
    pub(crate) fn warnings(&self) -> Vec<String> {
        if self.differing == 0 {
            return Vec::new();
        }
        let places: Vec<String> = self
            .examples
            .iter()
            .map(|(key, first, again)| match first {
                Some(first) => format!("{key:?} at {first} and {again}"),
                None => format!("{key:?} at {again}"),
            })
            .collect();
        let more = match self.differing - self.examples.len() as u64 {
            0 => String::new(),
            more => format!(" and {more} more"),
        };
        vec![format!(
            "{} repeated the idempotency key of an earlier event with a different record: skipped as duplicates, only the first record of each key is sent: {}{more}",
            plural(self.differing, "event"),
            places.join(", "),
        )]
    }
}

/// The skip reason of a usage record whose key an earlier one had.
pub(crate) const DUPLICATE: &str = "duplicate idempotency key";

/// Places packed in 64 bits: the input's index among those seen (24 bits)
/// and the line (40 bits). A place beyond that is kept as unknown.
#[derive(Default)]
struct Places {
    sources: Vec<&'static str>,
    index: HashMap<&'static str, u32>,
    /// The last source packed: nearly every event comes from the one before's.
    last: Option<(&'static str, u32)>,
}

const LINE_BITS: u32 = 40;
const UNKNOWN: u64 = u64::MAX;

impl Places {
    fn pack(&mut self, origin: Origin) -> u64 {
        let source = match self.last {
            Some((source, index)) if std::ptr::eq(source, origin.source) => index,
            _ => {
                let next = self.sources.len() as u32;
                let index = *self.index.entry(origin.source).or_insert(next);
                if index == next {
                    self.sources.push(origin.source);
                }
                self.last = Some((origin.source, index));
                index
            }
        };
        if u64::from(source) >= 1 << (64 - LINE_BITS) || origin.line >= 1 << LINE_BITS {
            return UNKNOWN;
        }
        u64::from(source) << LINE_BITS | origin.line
    }

    fn origin(&self, place: u64) -> Option<Origin> {
        if place == UNKNOWN {
            return None;
        }
        Some(Origin {
            source: self.sources[(place >> LINE_BITS) as usize],
            line: place & ((1 << LINE_BITS) - 1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(source: &'static str, line: u64) -> Origin {
        Origin { source, line }
    }

    /// `see` as the pipeline does it: a duplicate is skipped, a new key remembered.
    fn see(dedupe: &mut Dedupe, key: &str, record: &str, origin: Origin) -> Option<Reason> {
        let prints = prints(key, record);
        let reason = dedupe.duplicate(key, prints, origin);
        if reason.is_none() {
            dedupe.remember(prints, origin);
        }
        reason
    }

    #[test]
    fn a_repeat_is_a_duplicate_naming_the_first_place() {
        let mut dedupe = Dedupe::default();
        assert_eq!(see(&mut dedupe, "a", "{1}", at("x.ndjson", 1)), None);
        assert_eq!(see(&mut dedupe, "b", "{1}", at("y.ndjson", 4)), None);
        let same = see(&mut dedupe, "a", "{1}", at("y.ndjson", 9)).unwrap();
        assert_eq!(same.kind, DUPLICATE);
        assert!(
            same.detail.contains("x.ndjson:1, with the same record"),
            "{same}"
        );
        assert!(
            dedupe.warnings().is_empty(),
            "the same record is no warning"
        );
        let other = see(&mut dedupe, "b", "{2}", at("x.ndjson", 12)).unwrap();
        assert!(
            other
                .detail
                .contains("\"b\" was already queued at y.ndjson:4, with a different record"),
            "{other}"
        );
        assert_eq!(
            dedupe.warnings(),
            [
                "1 event repeated the idempotency key of an earlier event with a different record: skipped as duplicates, only the first record of each key is sent: \"b\" at y.ndjson:4 and x.ndjson:12"
            ]
        );
    }

    #[test]
    fn the_warning_names_five_and_counts_the_rest() {
        let mut dedupe = Dedupe::default();
        for n in 0..8u64 {
            let key = format!("k{n}");
            see(&mut dedupe, &key, "{1}", at("a", n + 1));
            assert!(see(&mut dedupe, &key, "{2}", at("b", n + 1)).is_some());
        }
        let warnings = dedupe.warnings();
        assert!(warnings[0].starts_with("8 events repeated"), "{warnings:?}");
        assert!(
            warnings[0].contains("\"k4\" at a:5 and b:5 and 3 more"),
            "{warnings:?}"
        );
        assert!(!warnings[0].contains("k5"), "{warnings:?}");
    }

    #[test]
    fn past_the_window_a_key_is_new_again() {
        let mut dedupe = Dedupe::with_window(2);
        for key in ["a", "b", "c"] {
            assert_eq!(see(&mut dedupe, key, "{}", at("f", 1)), None);
        }
        assert_eq!(see(&mut dedupe, "a", "{}", at("f", 2)), None, "evicted");
        assert!(see(&mut dedupe, "c", "{}", at("f", 3)).is_some());
        assert!(see(&mut dedupe, "a", "{}", at("f", 4)).is_some());
        assert_eq!(see(&mut dedupe, "b", "{}", at("f", 5)), None, "evicted");
    }

    #[test]
    fn places_keep_their_source_and_line_or_say_unknown() {
        let mut places = Places::default();
        let a = places.pack(at("a.ndjson", 3));
        let b = places.pack(at("b.ndjson", (1 << LINE_BITS) - 1));
        assert_eq!(places.origin(a), Some(at("a.ndjson", 3)));
        assert_eq!(places.origin(b), Some(at("b.ndjson", (1 << LINE_BITS) - 1)));
        assert_eq!(places.pack(at("a.ndjson", 1 << LINE_BITS)), UNKNOWN);
        assert_eq!(places.origin(UNKNOWN), None);
        assert_eq!(
            places.pack(at("a.ndjson", 4)),
            a + 1,
            "one index per source"
        );
    }
}
