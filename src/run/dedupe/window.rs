//! The idempotency keys a run sent or queued last, in fixed memory: a ring of
//! entries, oldest evicted first, found through an open-addressing table of
//! `u32` slots. 20 bytes an entry and at most 1.5 slots of 4 bytes per entry:
//! 26 bytes a key, 24.8 MiB for a million keys, and both grow only as keys
//! come, so a small input keeps a small window.
//!
//! A slot holds an entry's index and 12 bits of its key: a probe passes over
//! other keys' slots without reading their entries, which are far apart in
//! memory (each read of one is a cache miss).
//!
//! An entry keeps the low half of its place; the high half (which input, and
//! the line's bits above 32) is the same for long runs of entries, and is kept
//! once a run, 16 bytes each: one run per input in the window, as a rule.

use std::collections::VecDeque;

/// A key's fingerprint. The 64 bits place it in the table and tell keys
/// apart; the 32 of `check` confirm a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct KeyPrint {
    pub key: u64,
    pub check: u32,
}

/// What the window keeps of the first event with a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct First {
    /// A fingerprint of its translated record.
    pub record: u32,
    /// Where it was read, packed (see `Places`).
    pub place: u64,
}

/// 20 bytes: its fields are `u32`s, so that none is padded out to 8.
#[derive(Debug, Clone, Copy)]
struct Entry {
    key: [u32; 2],
    check: u32,
    record: u32,
    /// The low half of the place; the high half is its run's.
    place: u32,
}

impl Entry {
    fn key(&self) -> u64 {
        u64::from(self.key[1]) << 32 | u64::from(self.key[0])
    }
}

/// From the entry inserted `start`-th (counting from 0) on, places' high half is `high`.
#[derive(Debug, Clone, Copy)]
struct Run {
    start: u64,
    high: u32,
}

/// Entries are kept in segments of this many: growing the ring never copies it.
const SEGMENT: usize = 1 << 14;
/// A slot: the entry's index + 1 in its low bits (0: empty), a tag of its key above.
const INDEX_BITS: u32 = 20;
const INDEX_MASK: u32 = (1 << INDEX_BITS) - 1;
/// The most entries a window holds: indexes + 1 must fit their bits.
pub(crate) const MAX_CAPACITY: usize = INDEX_MASK as usize;
/// The table's first size: 4 KiB.
const FIRST_SLOTS: usize = 1 << 10;

pub(crate) struct Window {
    /// The ring: entry `i` is `segments[i / SEGMENT][i % SEGMENT]`.
    segments: Vec<Vec<Entry>>,
    len: usize,
    capacity: usize,
    /// Once the ring is full, the entry to evict next.
    oldest: usize,
    /// 0 for an empty slot, else an entry's index + 1 and its key's tag.
    /// Linear probing from each key's home slot; never more than 2/3 full, so
    /// a probe ends.
    slots: Vec<u32>,
    /// The table's size once the ring is full.
    max_slots: usize,
    /// Entries inserted so far, evicted ones included.
    inserted: u64,
    /// The high halves of the places held, the run of the oldest entry first.
    runs: VecDeque<Run>,
}

impl Window {
    /// A window over the last `capacity` keys (at least one, at most `MAX_CAPACITY`).
    pub(crate) fn new(capacity: usize) -> Window {
        let capacity = capacity.clamp(1, MAX_CAPACITY);
        let max_slots = capacity + capacity / 2 + 1;
        Window {
            segments: Vec::new(),
            len: 0,
            capacity,
            oldest: 0,
            slots: vec![0; FIRST_SLOTS.min(max_slots)],
            max_slots,
            inserted: 0,
            runs: VecDeque::new(),
        }
    }

    /// The first event with this key, while the window holds it.
    pub(crate) fn find(&self, print: KeyPrint) -> Option<First> {
        let tag = tag(print.key);
        let mut at = self.home(print.key);
        loop {
            let slot = self.slots[at];
            if slot == 0 {
                return None;
            }
            if slot & !INDEX_MASK == tag {
                let index = index_of(slot);
                let entry = self.entry(index);
                if entry.key() == print.key && entry.check == print.check {
                    let high = self.run_of(self.inserted_as(index)).high;
                    return Some(First {
                        record: entry.record,
                        place: u64::from(high) << 32 | u64::from(entry.place),
                    });
                }
            }
            at = self.next(at);
        }
    }

    /// Keeps a key not in the window, evicting the oldest when it is full.
    pub(crate) fn insert(&mut self, print: KeyPrint, first: First) {
        debug_assert!(self.find(print).is_none(), "a key kept twice");
        let entry = Entry {
            key: [print.key as u32, (print.key >> 32) as u32],
            check: print.check,
            record: first.record,
            place: first.place as u32,
        };
        let high = (first.place >> 32) as u32;
        if self.runs.back().is_none_or(|run| run.high != high) {
            self.runs.push_back(Run {
                start: self.inserted,
                high,
            });
        }
        self.inserted += 1;
        let index = if self.len < self.capacity {
            let index = self.len;
            if index.is_multiple_of(SEGMENT) {
                self.segments.push(Vec::new());
            }
            self.segments.last_mut().expect("a segment").push(entry);
            self.len += 1;
            if self.len * 3 > self.slots.len() * 2 {
                self.grow();
            }
            index
        } else {
            let index = self.oldest;
            self.remove_slot(index);
            *self.entry_mut(index) = entry;
            self.oldest = (index + 1) % self.capacity;
            // Runs all of whose entries are evicted are dropped.
            let oldest = self.inserted - self.len as u64;
            while self.runs.get(1).is_some_and(|next| next.start <= oldest) {
                self.runs.pop_front();
            }
            index
        };
        self.place_slot(index);
    }

    /// When the entry at `index` was inserted (see `inserted`): entry `n` goes
    /// to index `n % capacity`, and the ring holds the last `len` inserted.
    fn inserted_as(&self, index: usize) -> u64 {
        let last = self.inserted - 1;
        let back = (last % self.capacity as u64 + self.capacity as u64 - index as u64)
            % self.capacity as u64;
        last - back
    }

    /// The run of the entry inserted `n`-th.
    fn run_of(&self, n: u64) -> Run {
        let after = self.runs.partition_point(|run| run.start <= n);
        self.runs[after - 1]
    }

    /// The slot a key's probe starts at: the high bits of a product, which
    /// spreads a uniform 64-bit hash over any table size.
    fn home(&self, key: u64) -> usize {
        ((u128::from(key) * self.slots.len() as u128) >> 64) as usize
    }

    fn next(&self, at: usize) -> usize {
        if at + 1 == self.slots.len() {
            0
        } else {
            at + 1
        }
    }

    fn entry(&self, index: usize) -> &Entry {
        &self.segments[index / SEGMENT][index % SEGMENT]
    }

    fn entry_mut(&mut self, index: usize) -> &mut Entry {
        &mut self.segments[index / SEGMENT][index % SEGMENT]
    }

    fn place_slot(&mut self, index: usize) {
        let key = self.entry(index).key();
        let mut at = self.home(key);
        while self.slots[at] != 0 {
            at = self.next(at);
        }
        self.slots[at] = tag(key) | (index as u32 + 1);
    }

    /// Empties the slot of entry `index`, moving later entries of its probe
    /// run back so that every probe still finds what it looks for.
    fn remove_slot(&mut self, index: usize) {
        let wanted = index as u32 + 1;
        let mut hole = self.home(self.entry(index).key());
        while self.slots[hole] & INDEX_MASK != wanted {
            hole = self.next(hole);
        }
        let mut at = hole;
        loop {
            at = self.next(at);
            let slot = self.slots[at];
            if slot == 0 {
                break;
            }
            let home = self.home(self.entry(index_of(slot)).key());
            // An entry may fill the hole unless its home lies after the hole,
            // up to where it sits (cyclically): it would then be found no more.
            let stays = if hole <= at {
                hole < home && home <= at
            } else {
                hole < home || home <= at
            };
            if !stays {
                self.slots[hole] = slot;
                hole = at;
            }
        }
        self.slots[hole] = 0;
    }

    fn grow(&mut self) {
        let size = (self.slots.len() * 2).min(self.max_slots);
        if size == self.slots.len() {
            return;
        }
        self.slots = vec![0; size];
        for index in 0..self.len {
            self.place_slot(index);
        }
    }

    /// The bytes the window holds now.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.segments.iter().map(Vec::capacity).sum::<usize>() * size_of::<Entry>()
            + self.slots.len() * size_of::<u32>()
            + self.runs.capacity() * size_of::<Run>()
    }
}

/// A key's tag in its slot: bits the table's position does not depend on
/// (the home comes from the key's high bits).
fn tag(key: u64) -> u32 {
    (key as u32) & !INDEX_MASK
}

fn index_of(slot: u32) -> usize {
    (slot & INDEX_MASK) as usize - 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashSet, VecDeque};

    fn print(key: u64, check: u32) -> KeyPrint {
        KeyPrint { key, check }
    }

    fn first(place: u64) -> First {
        First { record: 7, place }
    }

    #[test]
    fn the_oldest_key_is_evicted_and_the_others_are_still_found() {
        let mut window = Window::new(4);
        for n in 0..4 {
            window.insert(print(n << 40, 1), first(n));
        }
        for n in 0..4 {
            assert_eq!(window.find(print(n << 40, 1)), Some(first(n)));
        }
        window.insert(print(4 << 40, 1), first(4));
        assert_eq!(window.find(print(0, 1)), None, "the oldest is gone");
        for n in 1..5 {
            assert_eq!(window.find(print(n << 40, 1)), Some(first(n)), "{n}");
        }
        // An evicted key comes back as new, and pushes the next oldest out.
        window.insert(print(0, 1), first(10));
        assert_eq!(window.find(print(0, 1)), Some(first(10)));
        assert_eq!(window.find(print(1 << 40, 1)), None);
    }

    #[test]
    fn both_halves_of_the_print_must_match() {
        let mut window = Window::new(8);
        window.insert(print(42, 1), first(1));
        assert_eq!(window.find(print(42, 2)), None);
        assert_eq!(window.find(print(43, 1)), None);
        window.insert(print(42, 2), first(2));
        assert_eq!(window.find(print(42, 1)), Some(first(1)));
        assert_eq!(window.find(print(42, 2)), Some(first(2)));
    }

    #[test]
    fn keys_sharing_a_home_slot_are_found_through_evictions() {
        // Every key below has home slot 0 (the top bits are zero): one long
        // probe run that wraps around the table as entries are removed.
        let mut window = Window::new(5);
        for n in 0..40u64 {
            window.insert(print(n, n as u32), first(n));
            for back in 0..=n.min(4) {
                let k = n - back;
                assert_eq!(
                    window.find(print(k, k as u32)),
                    Some(first(k)),
                    "{k} after {n}"
                );
            }
            if n >= 5 {
                assert_eq!(window.find(print(n - 5, (n - 5) as u32)), None);
            }
        }
        // And keys whose home is the table's last slot, so their run wraps to slot 0.
        let mut window = Window::new(5);
        let last = |n: u64| print(u64::MAX - n, n as u32);
        for n in 0..20 {
            window.insert(last(n), first(n));
            window.insert(print(n, 100), first(100 + n));
            for back in 0..=n.min(1) {
                assert_eq!(window.find(last(n - back)), Some(first(n - back)));
            }
        }
    }

    /// The window against a plain list of the last keys kept, over many
    /// insertions of keys from a small set (many repeats, many shared homes).
    #[test]
    fn the_window_is_exact_over_its_last_keys() {
        let mut rng = fastrand::Rng::with_seed(7);
        for capacity in [1, 2, 3, 10, 300] {
            let mut window = Window::new(capacity);
            let mut order: VecDeque<KeyPrint> = VecDeque::new();
            let mut kept: HashSet<KeyPrint> = HashSet::new();
            for step in 0..10_000u64 {
                // Few distinct top bits: homes collide; few tags (bits 20 to 31):
                // slots of other keys match; checks tell some keys apart.
                let key = print(
                    rng.u64(0..8) << 61 | rng.u64(0..3) << 20 | rng.u64(0..400),
                    rng.u32(0..3),
                );
                let expected = kept.contains(&key);
                let found = window.find(key);
                assert_eq!(
                    found.is_some(),
                    expected,
                    "capacity {capacity}, step {step}"
                );
                if !expected {
                    window.insert(key, first(step));
                    order.push_back(key);
                    kept.insert(key);
                    if order.len() > capacity {
                        kept.remove(&order.pop_front().expect("a key"));
                    }
                }
            }
        }
    }

    #[test]
    fn places_come_back_whole_as_their_runs_are_evicted() {
        let mut window = Window::new(3);
        // Places whose high halves change now and then, and the largest.
        let places: Vec<u64> = (0..40u64)
            .map(|n| match n % 7 {
                6 => u64::MAX,
                _ => (n / 3) << 32 | (n * 1_000_003) & 0xFFFF_FFFF,
            })
            .collect();
        for (n, &place) in places.iter().enumerate() {
            window.insert(print((n as u64 * 7919) << 40, 1), first(place));
            for back in 0..=n.min(2) {
                let k = n - back;
                assert_eq!(
                    window.find(print((k as u64 * 7919) << 40, 1)),
                    Some(first(places[k])),
                    "{k} after {n}"
                );
            }
            assert!(
                window.runs.len() <= 3,
                "{} runs for 3 entries",
                window.runs.len()
            );
        }
        // One input's places are one run, however many entries.
        let mut window = Window::new(1000);
        for n in 0..5000u64 {
            window.insert(print(n << 40, 1), first(5 << 40 | n));
        }
        assert_eq!(window.runs.len(), 1);
        assert_eq!(
            window.find(print(4500 << 40, 1)),
            Some(first(5 << 40 | 4500))
        );
    }

    #[test]
    fn memory_stays_within_twenty_six_bytes_a_key_and_small_for_few_keys() {
        let mut window = Window::new(100_000);
        window.insert(print(1, 1), first(1));
        assert!(
            window.bytes() < 10_000,
            "{} bytes for one key",
            window.bytes()
        );
        let mut rng = fastrand::Rng::with_seed(1);
        for n in 0..150_000u64 {
            window.insert(print(rng.u64(..), rng.u32(..)), first(n));
        }
        let per_key = window.bytes() as f64 / 100_000.0;
        assert!(per_key <= 26.5, "{per_key} bytes a key");
        assert_eq!(window.len, 100_000);
    }
}
