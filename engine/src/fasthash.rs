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
}
