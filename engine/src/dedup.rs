//! Idempotency by event id: a bounded, time-based table of applied ids.
//!
//! Ids are kept as 128-bit hashes (collisions are negligible at any realistic
//! volume) together with the watermark at which they were applied; entries
//! older than the retention (in event time) are forgotten, oldest first.
//!
//! Memory: the keys in arrival order (16 bytes each) and their times as runs
//! of equal watermarks (16 bytes per run; a bulk load at one instant is one
//! run), besides the hash set: a `(Ts, u128)` per id would take 32 bytes
//! (the `u128`'s alignment pads the pair).

use std::collections::VecDeque;

use hashbrown::HashSet;
use xxhash_rust::xxh3::xxh3_128;

use crate::fasthash::{buckets_of, sorted_by_bucket};
use crate::time::Ts;

/// Applied event ids, remembered for a retention period of event time.
#[derive(Debug, Clone)]
pub struct Dedup {
    retention: i64,
    seen: HashSet<u128, IdentityBuild>,
    /// Remembered keys, oldest first.
    keys: VecDeque<u128>,
    /// Their watermarks: (time, how many consecutive keys have it).
    runs: VecDeque<(Ts, u32)>,
}

/// The keys are already uniform hashes: hash them by taking their low bits.
#[derive(Clone, Copy, Default, Debug)]
pub struct IdentityBuild;

/// Hasher for [`IdentityBuild`].
#[derive(Default, Debug)]
pub struct IdentityHasher(u64);

impl std::hash::BuildHasher for IdentityBuild {
    type Hasher = IdentityHasher;
    fn build_hasher(&self) -> IdentityHasher {
        IdentityHasher(0)
    }
}

impl std::hash::Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64;
    }
}

impl Dedup {
    /// A table remembering ids for `retention` microseconds of event time.
    pub fn new(retention: i64) -> Dedup {
        Dedup {
            retention,
            seen: HashSet::with_hasher(IdentityBuild),
            keys: VecDeque::new(),
            runs: VecDeque::new(),
        }
    }

    /// The key of an event id.
    #[inline]
    pub fn key(id: &str) -> u128 {
        xxh3_128(id.as_bytes())
    }

    /// True if the id was applied within the retention.
    #[inline]
    pub fn contains(&self, key: u128) -> bool {
        self.seen.contains(&key)
    }

    /// Records an applied id at watermark `now`, forgetting expired ones.
    /// Returns false (and changes nothing) if the id is already remembered.
    #[inline]
    pub fn insert(&mut self, key: u128, now: Ts) -> bool {
        if !self.seen.insert(key) {
            return false;
        }
        self.push(now, key);
        let horizon = now.0.saturating_sub(self.retention);
        while let Some(&(t, n)) = self.runs.front() {
            if t.0 >= horizon {
                break;
            }
            self.runs.pop_front();
            for _ in 0..n {
                if let Some(k) = self.keys.pop_front() {
                    self.seen.remove(&k);
                }
            }
        }
        true
    }

    fn push(&mut self, at: Ts, key: u128) {
        self.keys.push_back(key);
        match self.runs.back_mut() {
            Some((t, n)) if *t == at && *n < u32::MAX => *n += 1,
            _ => self.runs.push_back((at, 1)),
        }
    }

    /// Number of remembered ids.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// True when no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// The remembered ids with their times, oldest first (for snapshots).
    pub fn entries(&self) -> impl Iterator<Item = (Ts, u128)> + '_ {
        self.runs
            .iter()
            .flat_map(|&(t, n)| std::iter::repeat_n(t, n as usize))
            .zip(self.keys.iter().copied())
    }

    /// Appends a remembered id as read from a snapshot (oldest first), without
    /// expiring anything. Returns false if the id is already remembered.
    pub(crate) fn restore_entry(&mut self, at: Ts, key: u128) -> bool {
        if !self.seen.insert(key) {
            return false;
        }
        self.push(at, key);
        true
    }

    /// Appends a remembered id as read from a snapshot (oldest first) to the
    /// list only: [`Dedup::index_restored`] then indexes them all at once.
    pub(crate) fn push_restored(&mut self, at: Ts, key: u128) {
        self.push(at, key);
    }

    /// Indexes the ids appended by [`Dedup::push_restored`] into an empty
    /// set, in bucket order (see [`sorted_by_bucket`]): millions of inserts
    /// at random places of a table of hundreds of megabytes each waited on
    /// a cache miss. Returns false if an id repeats.
    pub(crate) fn index_restored(&mut self) -> bool {
        self.seen.clear();
        self.seen.reserve(self.keys.len());
        let bits = buckets_of(self.seen.capacity()).trailing_zeros();
        let (a, b) = self.keys.as_slices();
        // `IdentityBuild` hashes a key to its low 64 bits.
        for k in sorted_by_bucket(&[a, b], bits, |&k| k as u64) {
            if !self.seen.insert(k) {
                return false;
            }
        }
        true
    }

    /// Reserves room for `n` more ids (snapshot loading).
    pub(crate) fn reserve(&mut self, n: usize) {
        self.seen.reserve(n);
        self.keys.reserve(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::MICROS_PER_DAY;

    #[test]
    fn remembers_within_retention_only() {
        let mut d = Dedup::new(MICROS_PER_DAY);
        let a = Dedup::key("a");
        assert!(d.insert(a, Ts(0)));
        assert!(!d.insert(a, Ts(5)), "a second insert is refused");
        assert!(d.contains(a));
        d.insert(Dedup::key("b"), Ts(MICROS_PER_DAY));
        assert!(d.contains(a), "exactly at the horizon is still remembered");
        d.insert(Dedup::key("c"), Ts(MICROS_PER_DAY + 1));
        assert!(!d.contains(a));
        assert!(d.contains(Dedup::key("b")));
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn indexed_in_bulk_like_one_by_one() {
        let mut one = Dedup::new(1000);
        let mut bulk = Dedup::new(1000);
        for i in 0..20_000i64 {
            let k = Dedup::key(&format!("e{i}"));
            assert!(one.restore_entry(Ts(i / 7), k));
            bulk.push_restored(Ts(i / 7), k);
        }
        assert!(bulk.index_restored());
        assert_eq!(bulk.len(), one.len());
        assert!(bulk.entries().eq(one.entries()));
        assert!(bulk.contains(Dedup::key("e19999")) && !bulk.contains(Dedup::key("x")));
        assert!(!bulk.insert(Dedup::key("e5"), Ts(3000)), "still refused");
        assert!(bulk.insert(Dedup::key("new"), Ts(3000)));
        assert!(!bulk.contains(Dedup::key("e5")), "expired as usual");
        bulk.push_restored(Ts(3000), Dedup::key("new"));
        assert!(!bulk.index_restored(), "a repeated id is found");
    }

    #[test]
    fn runs_of_equal_times_expire_together_and_list_in_order() {
        let mut d = Dedup::new(10);
        for i in 0..5 {
            assert!(d.insert(Dedup::key(&format!("x{i}")), Ts(100)));
        }
        assert!(d.insert(Dedup::key("y"), Ts(105)));
        assert_eq!(d.runs.len(), 2, "five ids at one instant are one run");
        let listed: Vec<(Ts, u128)> = d.entries().collect();
        assert_eq!(listed.len(), 6);
        assert_eq!(listed[4], (Ts(100), Dedup::key("x4")));
        assert_eq!(listed[5], (Ts(105), Dedup::key("y")));
        // 111: the run at 100 is past the horizon (101), the one at 105 not.
        assert!(d.insert(Dedup::key("z"), Ts(111)));
        assert!(!d.contains(Dedup::key("x0")) && !d.contains(Dedup::key("x4")));
        assert!(d.contains(Dedup::key("y")));
        assert_eq!(d.len(), 2);
        assert_eq!(d.entries().count(), 2);
    }
}
