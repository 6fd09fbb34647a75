//! `check`: idempotency keys that stand for two different records. The
//! destination keeps one of them and drops the other without a word, so a
//! send cannot see it; only a look over the whole input can.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use crate::destination::Kind;
use crate::event::Origin;

/// Keys compared exactly; past them, new keys are not tracked, so memory stays
/// near 150 MB whatever the input's size.
pub(crate) const TRACKED_KEYS: usize = 1_000_000;
/// Repeated keys named in the warning, each with both places.
const EXAMPLES: usize = 5;

pub(crate) struct RepeatedKeys {
    /// Each tracked key's first record (a hash of its JSON) and where it was read.
    first: HashMap<Box<str>, (u64, Origin)>,
    limit: usize,
    /// Events whose key a different record had before.
    conflicts: u64,
    examples: Vec<(String, Origin, Origin)>,
    /// Events with a new key after `limit` keys were tracked.
    untracked: u64,
}

impl RepeatedKeys {
    pub(crate) fn new(limit: usize) -> RepeatedKeys {
        RepeatedKeys {
            first: HashMap::new(),
            limit,
            conflicts: 0,
            examples: Vec::new(),
            untracked: 0,
        }
    }

    /// A usage record as translated (`json`), under its idempotency key.
    pub(crate) fn see(&mut self, key: &str, json: &str, origin: Origin) {
        let mut hasher = DefaultHasher::new();
        json.hash(&mut hasher);
        let hash = hasher.finish();
        match self.first.get(key) {
            // The same record again: a replay the destination dedupes, as meant.
            Some(&(first_hash, _)) if first_hash == hash => {}
            Some(&(_, first_origin)) => {
                self.conflicts += 1;
                if self.examples.len() < EXAMPLES {
                    self.examples.push((key.to_owned(), first_origin, origin));
                }
            }
            None if self.first.len() < self.limit => {
                self.first.insert(key.into(), (hash, origin));
            }
            None => self.untracked += 1,
        }
    }

    /// What the run should warn of: the repeated keys, and the keys not compared.
    pub(crate) fn warnings(&self, kind: Kind) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.conflicts > 0 {
            let places: Vec<String> = self
                .examples
                .iter()
                .map(|(key, first, again)| format!("{key:?} at {first} and {again}"))
                .collect();
            let more = match self.conflicts - self.examples.len() as u64 {
                0 => String::new(),
                more => format!(" and {more} more"),
            };
            warnings.push(format!(
                "{} event(s) repeat the idempotency key of an earlier event with a different record: {} keeps one and drops the other without a word: {}{more}",
                self.conflicts,
                kind.display_name(),
                places.join(", "),
            ));
        }
        if self.untracked > 0 {
            warnings.push(format!(
                "repeated idempotency keys were looked for among the first {} keys only: {} later event(s) with other keys were not compared",
                self.limit, self.untracked
            ));
        }
        warnings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: u64) -> Origin {
        Origin {
            source: "events.ndjson",
            line,
        }
    }

    #[test]
    fn past_the_limit_new_keys_are_counted_not_kept() {
        let mut keys = RepeatedKeys::new(2);
        keys.see("a", "{1}", at(1));
        keys.see("b", "{2}", at(2));
        keys.see("c", "{3}", at(3));
        keys.see("c", "{4}", at(4));
        // A tracked key is still compared.
        keys.see("a", "{5}", at(5));
        assert_eq!(keys.first.len(), 2);
        assert_eq!((keys.conflicts, keys.untracked), (1, 2));
        let warnings = keys.warnings(Kind::Orb);
        assert!(
            warnings[0].contains("\"a\" at events.ndjson:1 and events.ndjson:5"),
            "{warnings:?}"
        );
        assert!(warnings[1].contains("first 2 keys"), "{warnings:?}");
    }
}
