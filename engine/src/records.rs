//! Byte records by dense index in one arena: the side tables of strings
//! (contacts of members and orgs, ticket titles) without a heap allocation
//! per string nor a hash map.

use std::marker::PhantomData;

use crate::directory::NONE;

/// How long a record is: its encoding is the snapshot's.
pub trait RecordFormat {
    /// The length of the well-formed record at the start of `b`, or `None`.
    fn len(b: &[u8]) -> Option<usize>;
}

/// A varint-length-prefixed UTF-8 string at the start of `b`: the string and
/// the bytes it takes.
pub(crate) fn read_str(b: &[u8]) -> Option<(&str, usize)> {
    let (n, k) = read_varint(b)?;
    let s = b.get(k..k.checked_add(n)?)?;
    Some((std::str::from_utf8(s).ok()?, k + n))
}

/// Appends `s` as a varint length and its bytes.
pub(crate) fn push_str(buf: &mut Vec<u8>, s: &str) {
    push_varint(buf, s.len());
    buf.extend_from_slice(s.as_bytes());
}

/// A record of one string (ticket titles).
#[derive(Clone, Copy, Debug, Default)]
pub struct TextRecord;

impl RecordFormat for TextRecord {
    fn len(b: &[u8]) -> Option<usize> {
        read_str(b).map(|(_, n)| n)
    }
}

/// One string by index (see [`RecordStore`]).
pub type TextStore = RecordStore<TextRecord>;

impl RecordStore<TextRecord> {
    /// The string of index `i`, if it has one.
    pub fn get(&self, i: u32) -> Option<&str> {
        self.record(i).and_then(read_str).map(|(s, _)| s)
    }

    /// Sets the string of index `i`.
    pub fn set(&mut self, i: u32, s: &str) {
        let mut rec = Vec::with_capacity(s.len() + 2);
        push_str(&mut rec, s);
        self.put(i, &rec);
    }
}

/// Byte records by dense index (member, org or ticket index): every entry's
/// record lies in one byte arena, so an entry costs its bytes, up to 7 bytes
/// of padding and a 4-byte slot per index, with no heap allocation per
/// string (hash maps of boxed strings took over 100 bytes per member and one
/// allocation per string to restore and to free).
///
/// A record is the snapshot's encoding of an entry (after its index), which
/// `F` knows how to measure, so snapshots copy records out and restores copy
/// them in. Records start at multiples of 8 bytes, so a `u32` slot addresses
/// 32 GiB. A replacement that fits in its entry's old record is written in
/// place, otherwise appended; the bytes left behind are counted and the arena
/// is compacted once they are more than half of it.
pub struct RecordStore<F> {
    /// Per index: the record's offset in 8-byte units, or [`NONE`].
    slots: Vec<u32>,
    arena: Vec<u8>,
    /// Indices with a record.
    len: usize,
    /// Arena bytes no record uses (padding of replaced records included).
    garbage: usize,
    format: PhantomData<F>,
}

// Derives would require `F: Default + Clone`.
impl<F> Default for RecordStore<F> {
    fn default() -> Self {
        RecordStore {
            slots: Vec::new(),
            arena: Vec::new(),
            len: 0,
            garbage: 0,
            format: PhantomData,
        }
    }
}

impl<F> Clone for RecordStore<F> {
    fn clone(&self) -> Self {
        RecordStore {
            slots: self.slots.clone(),
            arena: self.arena.clone(),
            len: self.len,
            garbage: self.garbage,
            format: PhantomData,
        }
    }
}

impl<F> std::fmt::Debug for RecordStore<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Personal data: only the sizes.
        f.debug_struct("RecordStore")
            .field("len", &self.len)
            .field("arena", &self.arena.len())
            .finish()
    }
}

/// Arena bytes below which replaced records are never compacted away.
const COMPACT_MIN: usize = 1 << 16;

/// `n` rounded up to a multiple of 8.
fn padded(n: usize) -> usize {
    (n + 7) & !7
}

/// A varint at the start of `b`: its value and length.
fn read_varint(b: &[u8]) -> Option<(usize, usize)> {
    let mut v = 0usize;
    for (i, &x) in b.iter().enumerate().take(10) {
        v |= usize::from(x & 0x7f).checked_shl(7 * i as u32)?;
        if x & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

fn push_varint(buf: &mut Vec<u8>, mut v: usize) {
    while v >= 0x80 {
        buf.push(v as u8 | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

impl<F: RecordFormat> RecordStore<F> {
    /// The record of index `i`, if it has one.
    pub(crate) fn record(&self, i: u32) -> Option<&[u8]> {
        let at = *self.slots.get(i as usize)?;
        if at == NONE {
            return None;
        }
        let b = self.arena.get(at as usize * 8..)?;
        F::len(b).and_then(|n| b.get(..n))
    }

    /// Number of indices with a record.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no index has a record.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sets the record of index `i` (a well-formed record of `F`).
    pub(crate) fn put(&mut self, i: u32, rec: &[u8]) {
        let old = self.record(i).map(|r| padded(r.len()));
        match old {
            Some(room) if padded(rec.len()) <= room => {
                let at = self.slots[i as usize] as usize * 8;
                self.arena[at..at + rec.len()].copy_from_slice(rec);
                self.garbage += room - padded(rec.len());
            }
            _ => {
                if let Some(room) = old {
                    self.garbage += room;
                    self.len -= 1;
                }
                self.append(i, rec);
            }
        }
        self.maybe_compact();
    }

    /// Removes the record of index `i`, if any.
    pub fn remove(&mut self, i: u32) {
        if let Some(r) = self.record(i) {
            self.garbage += padded(r.len());
            self.slots[i as usize] = NONE;
            self.len -= 1;
            self.maybe_compact();
        }
    }

    /// Appends `rec` as the record of index `i`, which has none. The caller
    /// has checked that `rec` is one well-formed record (snapshot loading
    /// appends in ascending index order).
    pub(crate) fn push_record(&mut self, i: u32, rec: &[u8]) {
        self.append(i, rec);
    }

    fn append(&mut self, i: u32, rec: &[u8]) {
        let i = i as usize;
        if self.slots.len() <= i {
            self.slots.resize(i + 1, NONE);
        }
        let at = self.arena.len();
        self.arena.extend_from_slice(rec);
        self.arena.resize(padded(self.arena.len()), 0);
        // Beyond 32 GiB of records the slot cannot address the record:
        // far past any shard's memory, but never a wrong answer.
        self.slots[i] = u32::try_from(at / 8)
            .ok()
            .filter(|&u| u != NONE)
            .expect("record store over 32 GiB");
        self.len += 1;
    }

    /// Reserves room for `n` more indices and `bytes` more record bytes.
    pub(crate) fn reserve(&mut self, n: usize, bytes: usize) {
        self.slots.reserve(n);
        self.arena.reserve(bytes);
    }

    /// Gives back unused reserved room.
    pub(crate) fn shrink_to_fit(&mut self) {
        self.slots.shrink_to_fit();
        self.arena.shrink_to_fit();
    }

    fn maybe_compact(&mut self) {
        if self.garbage >= COMPACT_MIN && self.garbage * 2 > self.arena.len() {
            self.compact();
        }
    }

    /// Rewrites the arena with only the live records, in index order.
    fn compact(&mut self) {
        let mut arena = Vec::with_capacity(self.arena.len() - self.garbage);
        for slot in &mut self.slots {
            if *slot == NONE {
                continue;
            }
            let b = &self.arena[*slot as usize * 8..];
            let n = F::len(b).unwrap_or(0);
            *slot = (arena.len() / 8) as u32;
            arena.extend_from_slice(&b[..n]);
            arena.resize(padded(arena.len()), 0);
        }
        self.arena = arena;
        self.garbage = 0;
    }

    /// The records, ascending by index (for snapshots).
    pub(crate) fn records(&self) -> impl Iterator<Item = (u32, &[u8])> + '_ {
        (0..self.slots.len() as u32).filter_map(|i| self.record(i).map(|r| (i, r)))
    }

    /// Heap bytes in use (capacity), for memory accounting.
    pub fn heap_bytes(&self) -> usize {
        self.slots.capacity() * 4 + self.arena.capacity()
    }

    /// Checks the bookkeeping: every arena byte is a live record (padded) or
    /// counted as garbage, and the garbage is bounded.
    #[cfg(test)]
    pub(crate) fn check_accounting(&self) {
        let live: usize = self.records().map(|(_, r)| padded(r.len())).sum();
        assert_eq!(live + self.garbage, self.arena.len());
        assert!(self.garbage < COMPACT_MIN || self.garbage * 2 <= self.arena.len());
        assert_eq!(self.records().count(), self.len);
        assert!(self.heap_bytes() >= self.arena.len() + self.slots.len() * 4);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_store_set_replace_remove_restore() {
        let mut st = TextStore::default();
        assert_eq!(st.get(0), None);
        st.set(5, "printer broken");
        st.set(2, "");
        assert_eq!(
            (st.get(5), st.get(2), st.get(3)),
            (Some("printer broken"), Some(""), None)
        );
        st.set(5, "short");
        st.set(2, &"long ".repeat(100));
        assert_eq!(st.get(5), Some("short"));
        assert_eq!(st.get(2).map(str::len), Some(500));
        st.remove(5);
        st.remove(9);
        assert_eq!(st.get(5), None);
        assert_eq!(st.len(), 1);
        for round in 0..300u32 {
            for i in 0..200u32 {
                st.set(i, &"t".repeat(((i * 7 + round) % 90) as usize));
            }
        }
        st.check_accounting();
        let mut back = TextStore::default();
        for (i, r) in st.records() {
            back.push_record(i, r);
        }
        back.check_accounting();
        for i in 0..200u32 {
            assert_eq!(back.get(i), st.get(i));
            assert_eq!(
                back.get(i).map(str::len),
                Some(((i * 7 + 299) % 90) as usize)
            );
        }
        assert_eq!(read_varint(&[0x80, 0x01]), Some((128, 2)));
        assert_eq!(read_varint(&[0x80]), None);
        assert_eq!(read_str(&[3, b'a']), None);
        assert_eq!(read_str(&[1, 0xff]), None);
    }
}
