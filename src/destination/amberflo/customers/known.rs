//! The customers known to exist, as 128-bit fingerprints of their ids: 16
//! bytes each, and the set's own byte a bucket (17 to 34 bytes a customer in all, as it
//! fills and grows), where the ids themselves took about 100.
//!
//! A false "known" would skip the lookup and creation of a customer Amberflo
//! may lack, whose records would then not be billed: it takes a new id whose
//! two 64-bit SipHashes (different seeds) both equal those of an id already
//! known. With `n` customers known, a new one does so with probability at most
//! n × 2^-128: for ten million customers, about 3 × 10^-32 per customer, some
//! 10^-25 over a run of as many; it never happens in practice. The ids
//! themselves are kept beside a checkpoint, and read back into fingerprints.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hasher};

#[derive(Default)]
pub(super) struct Known(HashSet<u128>);

impl Known {
    pub(super) fn contains(&self, customer_id: &str) -> bool {
        self.0.contains(&fingerprint(customer_id))
    }

    /// Whether the customer was not known before.
    pub(super) fn insert(&mut self, customer_id: &str) -> bool {
        self.0.insert(fingerprint(customer_id))
    }
}

fn fingerprint(customer_id: &str) -> u128 {
    u128::from(hash(0, customer_id)) << 64 | u128::from(hash(1, customer_id))
}

fn hash(seed: u64, text: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    hasher.write_u64(seed);
    hasher.write(text.as_bytes());
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_known_once_inserted_and_only_then() {
        let mut known = Known::default();
        let ids: Vec<String> = (0..10_000).map(|n| format!("user-{n}")).collect();
        for id in ids.iter().step_by(2) {
            assert!(known.insert(id), "{id} new");
        }
        for (n, id) in ids.iter().enumerate() {
            assert_eq!(known.contains(id), n % 2 == 0, "{id}");
        }
        assert!(!known.insert("user-0"), "known already");
        // Ids that differ only where a seed or a length could hide it.
        assert!(!known.contains(""));
        assert!(known.insert(""));
        assert!(!known.contains("\0"));
        assert!(!known.contains("user-0\0"));
    }

    #[test]
    fn a_fingerprint_is_sixteen_bytes() {
        assert_eq!(size_of::<u128>(), 16);
        assert_ne!(
            fingerprint("a") >> 64,
            fingerprint("a") & u128::from(u64::MAX)
        );
    }
}
