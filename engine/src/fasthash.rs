//! Hashers for tables whose keys need no protection against chosen
//! collisions (ids the engine gave out itself, or ids that are already
//! checked elsewhere): the standard library's SipHash costs more than the
//! table probe for such keys and showed up in recovery profiles.

use std::hash::{BuildHasher, Hasher};

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// For dense integer keys (member and org indexes): a multiplicative
/// (Fibonacci) hash, the high bits folded into the low ones.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdxBuild;

/// Hasher of [`IdxBuild`].
#[derive(Debug, Default)]
pub struct IdxHasher(u64);

impl BuildHasher for IdxBuild {
    type Hasher = IdxHasher;
    fn build_hasher(&self) -> IdxHasher {
        IdxHasher(0)
    }
}

impl Hasher for IdxHasher {
    fn finish(&self) -> u64 {
        let h = self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^ (h >> 29)
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxh3_64_with_seed(bytes, self.0);
    }
    fn write_u32(&mut self, v: u32) {
        self.0 = (self.0 << 32) ^ u64::from(v);
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = self.0.rotate_left(32) ^ v;
    }
}

/// For string keys: xxh3 of the bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct StrBuild;

/// Hasher of [`StrBuild`].
#[derive(Debug, Default)]
pub struct StrHasher(u64);

impl BuildHasher for StrBuild {
    type Hasher = StrHasher;
    fn build_hasher(&self) -> StrHasher {
        StrHasher(0)
    }
}

impl Hasher for StrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxh3_64_with_seed(bytes, self.0);
    }
    fn write_u8(&mut self, v: u8) {
        self.0 = (self.0 ^ u64::from(v)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A map keyed by a dense index.
pub type IdxMap<V> = std::collections::HashMap<u32, V, IdxBuild>;

/// Number of buckets of a `hashbrown` table of `capacity` (its `capacity()`
/// after reserving room): a power of two of which seven eighths are usable.
/// Only a hint for [`sort_by_bucket`]: a wrong value slows bulk loading down
/// but changes nothing else.
pub(crate) fn buckets_of(capacity: usize) -> usize {
    (capacity / 7 * 8).max(1).next_power_of_two()
}

/// The items of `parts` (in order) ordered by bits `bits - 12 .. bits` of
/// `key` (a stable counting sort, one pass): inserted in that order into a
/// pre-sized `hashbrown` table of `1 << bits` buckets (which probes from
/// `hash & (buckets - 1)`), the inserts walk the table's memory once, in 4,096
/// steps each within a few kilobytes, instead of each one waiting on a cache
/// miss at a random place (bulk loads of millions of entries at recovery).
pub(crate) fn sorted_by_bucket<T: Copy + Default>(
    parts: &[&[T]],
    bits: u32,
    key: impl Fn(&T) -> u64,
) -> Vec<T> {
    const DIGIT: u32 = 12;
    let shift = bits.saturating_sub(DIGIT);
    let mask = (1u64 << bits.min(DIGIT)) - 1;
    let digit = |x: &T| ((key(x) >> shift) & mask) as usize;
    let mut offs = vec![0usize; 1 << DIGIT];
    for x in parts.iter().flat_map(|p| p.iter()) {
        offs[digit(x)] += 1;
    }
    let mut sum = 0;
    for o in offs.iter_mut() {
        let c = *o;
        *o = sum;
        sum += c;
    }
    let mut out = vec![T::default(); sum];
    for x in parts.iter().flat_map(|p| p.iter()) {
        let d = digit(x);
        out[offs[d]] = *x;
        offs[d] += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn sequential_indexes_spread_and_strings_differ() {
        let b = IdxBuild;
        let low: HashSet<u64> = (0..100_000u32).map(|i| b.hash_one(i) & 0xffff).collect();
        // 100 k keys in 65,536 bins: about 51 k distinct if spread at random.
        assert!(low.len() > 45_000, "{}", low.len());
        let top: HashSet<u64> = (0..100_000u32).map(|i| b.hash_one(i) >> 57).collect();
        assert_eq!(top.len(), 128, "the control bytes see every value");
        let s = StrBuild;
        assert_ne!(s.hash_one("m1"), s.hash_one("m2"));
        assert_eq!(s.hash_one("m1"), s.hash_one("m1"));
        let mut m: IdxMap<u32> = IdxMap::default();
        for i in 0..1000 {
            m.insert(i, i * 2);
        }
        assert_eq!(m.get(&500), Some(&1000));
    }

    #[test]
    fn sorts_by_low_bits_stably() {
        let v: Vec<(u64, u32)> = (0..10_000u32)
            .map(|i| (IdxBuild.hash_one(i / 3), i))
            .collect();
        let mut want = v.clone();
        want.sort_by_key(|&(h, i)| ((h & 0x1ffff) >> 5, i));
        let got = sorted_by_bucket(&[&v[..4000], &v[4000..]], 17, |&(h, _)| h);
        assert!(got == want, "sorted by bits 5..17, stable");
        let small = &v[..100];
        let mut want = small.to_vec();
        want.sort_by_key(|&(h, i)| (h & 0x1f, i));
        let got = sorted_by_bucket(&[small], 5, |&(h, _)| h);
        assert!(got == want, "fewer bits than a digit: sorted by all");
        assert!(sorted_by_bucket::<u64>(&[], 0, |&h| h).is_empty());
        assert_eq!(buckets_of(7 << 20), 8 << 20);
        let t: hashbrown::HashTable<u32> = hashbrown::HashTable::with_capacity(5_000_000);
        assert_eq!(buckets_of(t.capacity()), 8 << 20);
    }
}
