//! String interning: ids (members, orgs, tickets, cohorts) become dense `u32`
//! indices into per-shard arrays.
//!
//! The strings live back to back in one arena and the hash table holds only
//! `u32` indices, so an interned id costs its bytes plus about 12 bytes, not a
//! heap allocation and a fat `String` per id.

use hashbrown::hash_table::Entry;
use hashbrown::HashTable;
use xxhash_rust::xxh3::xxh3_64;

use crate::fasthash::{buckets_of, sorted_by_bucket};

/// Interns strings into dense indices `0..len()`, in order of first sight.
#[derive(Default, Clone)]
pub struct Interner {
    arena: Vec<u8>,
    /// `ends[i]` is the end offset of string `i` in `arena`.
    ends: Vec<u32>,
    table: HashTable<u32>,
}

impl std::fmt::Debug for Interner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interner")
            .field("len", &self.len())
            .finish()
    }
}

impl Interner {
    /// An empty interner.
    pub fn new() -> Interner {
        Interner::default()
    }

    /// Number of interned strings.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when nothing is interned.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The string of index `i`.
    pub fn get(&self, i: u32) -> &str {
        // Only whole `&str`s are ever pushed, so every range is valid UTF-8.
        std::str::from_utf8(self.bytes(i)).unwrap_or_default()
    }

    /// The bytes of index `i` (the hot-path comparison skips UTF-8 checks).
    #[inline]
    fn bytes(&self, i: u32) -> &[u8] {
        let i = i as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.arena[start..self.ends[i] as usize]
    }

    /// The index of `s`, if interned.
    #[inline]
    pub fn find(&self, s: &str) -> Option<u32> {
        let h = xxh3_64(s.as_bytes());
        self.table
            .find(h, |&i| self.bytes(i) == s.as_bytes())
            .copied()
    }

    /// The index of `s`, interning it if new. The second value is true when it
    /// was new.
    #[inline]
    pub fn intern(&mut self, s: &str) -> (u32, bool) {
        let h = xxh3_64(s.as_bytes());
        if let Some(&i) = self.table.find(h, |&i| self.bytes(i) == s.as_bytes()) {
            return (i, false);
        }
        let i = self.ends.len() as u32;
        self.arena.extend_from_slice(s.as_bytes());
        self.ends.push(self.arena.len() as u32);
        let (arena, ends) = (&self.arena, &self.ends);
        self.table.insert_unique(h, i, |&j| {
            let j = j as usize;
            let start = if j == 0 { 0 } else { ends[j - 1] as usize };
            xxh3_64(&arena[start..ends[j] as usize])
        });
        (i, true)
    }

    /// An interner of the strings `arena[ends[i - 1]..ends[i]]` (the first
    /// from 0), as read back from a snapshot: `None` if two are equal.
    ///
    /// The table is sized once and filled in bucket order (see
    /// [`sorted_by_bucket`]) rather than string by string, each insert of which
    /// waited on a cache miss somewhere in a table of tens of megabytes.
    /// The caller checks that `ends` ascends and stays within `arena` and
    /// that each string is UTF-8.
    pub(crate) fn from_parts(mut arena: Vec<u8>, ends: Vec<u32>) -> Option<Interner> {
        arena.shrink_to_fit();
        let n = ends.len();
        let mut table = HashTable::with_capacity(n);
        let bytes = |j: u32| {
            let j = j as usize;
            let start = if j == 0 { 0 } else { ends[j - 1] as usize };
            &arena[start..ends[j] as usize]
        };
        let mut items: Vec<(u64, u32)> = Vec::with_capacity(n);
        let mut start = 0usize;
        for (i, &end) in ends.iter().enumerate() {
            items.push((xxh3_64(&arena[start..end as usize]), i as u32));
            start = end as usize;
        }
        let bits = buckets_of(table.capacity()).trailing_zeros();
        for (h, i) in sorted_by_bucket(&[&items], bits, |&(h, _)| h) {
            // `items` is in index order: comparing full hashes first spares
            // most tag matches a look at the strings (two more cache misses).
            let same = |&j: &u32| items[j as usize].0 == h && bytes(j) == bytes(i);
            match table.entry(h, same, |&j| xxh3_64(bytes(j))) {
                Entry::Occupied(_) => return None,
                Entry::Vacant(v) => {
                    v.insert(i);
                }
            }
        }
        Some(Interner { arena, ends, table })
    }

    /// Reserves room for `n` more strings of about `avg_len` bytes.
    pub fn reserve(&mut self, n: usize, avg_len: usize) {
        self.arena.reserve(n * avg_len);
        self.ends.reserve(n);
        let (arena, ends) = (&self.arena, &self.ends);
        self.table.reserve(n, |&j| {
            let j = j as usize;
            let start = if j == 0 { 0 } else { ends[j - 1] as usize };
            xxh3_64(&arena[start..ends[j] as usize])
        });
    }

    /// Heap bytes in use (capacity), for memory accounting.
    pub fn heap_bytes(&self) -> usize {
        self.arena.capacity() + self.ends.capacity() * 4 + self.table.capacity() * 5
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interns_in_order_of_first_sight() {
        let mut i = Interner::new();
        assert_eq!(i.intern("m1"), (0, true));
        assert_eq!(i.intern("m2"), (1, true));
        assert_eq!(i.intern("m1"), (0, false));
        assert_eq!(i.intern("成员"), (2, true));
        assert_eq!(i.find("m2"), Some(1));
        assert_eq!(i.find("m3"), None);
        assert_eq!(i.get(2), "成员");
        assert_eq!(i.len(), 3);
    }

    #[test]
    fn from_parts_finds_all_refuses_repeats_and_grows() {
        let ids: Vec<String> = (0..50_000u32).map(|n| format!("m{n}")).collect();
        let parts = |ids: &[String]| {
            let mut arena = Vec::new();
            let mut ends = Vec::new();
            for s in ids {
                arena.extend_from_slice(s.as_bytes());
                ends.push(arena.len() as u32);
            }
            (arena, ends)
        };
        let (arena, ends) = parts(&ids);
        let mut i = Interner::from_parts(arena, ends).unwrap();
        assert_eq!(i.len(), ids.len());
        for (n, s) in ids.iter().enumerate() {
            assert_eq!(i.find(s), Some(n as u32));
            assert_eq!(i.get(n as u32), s);
        }
        assert_eq!(i.find("m50000"), None);
        // Full after loading: the next ids grow the table.
        for n in 50_000..60_000u32 {
            assert_eq!(i.intern(&format!("m{n}")), (n, true));
        }
        assert_eq!(i.find("m123"), Some(123));
        let mut dup = ids.clone();
        dup.push("m49999".into());
        let (arena, ends) = parts(&dup);
        assert!(Interner::from_parts(arena, ends).is_none());
        assert!(Interner::from_parts(Vec::new(), Vec::new()).is_some_and(|i| i.is_empty()));
    }

    #[test]
    fn survives_growth() {
        let mut i = Interner::new();
        for n in 0..10_000u32 {
            assert_eq!(i.intern(&format!("id-{n}")).0, n);
        }
        for n in 0..10_000u32 {
            assert_eq!(i.find(&format!("id-{n}")), Some(n));
        }
    }
}
