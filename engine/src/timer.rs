//! Timers: a hierarchical timing wheel (Varghese & Lauck, in the style of Kafka's
//! purgatory and the Linux/tokio timer wheels).
//!
//! A [`Wheel`] holds millions of pending deadlines (one wheel per shard, used for
//! ticket warnings, deadlines and escalation steps). It reads no clock: time only
//! moves when [`Wheel::advance`] is called with an instant.
//!
//! # Semantics
//!
//! * [`Wheel::insert`] and [`Wheel::cancel`] are O(1). A [`TimerId`] is a slab
//!   index plus a stamp, so a stale id (already fired or cancelled, even if its
//!   slab entry has been re-used since) is rejected.
//! * [`Wheel::advance`]`(to, out)` fires every pending timer whose instant is at or
//!   before `max(now, to)` and appends them to `out` in the order of
//!   `(instant, insertion sequence)`: firing is deterministic and ties fire in
//!   insertion order. Advancing backwards does not move `now`; it only fires
//!   timers that were inserted in the past (`at <= now`) since the last advance.
//! * Instants are kept exactly (microseconds); the tick only decides in which
//!   slot a timer waits. The whole `i64` range is covered, from before 1970 to
//!   the year 294 000, without any overflow list.
//!
//! # Design
//!
//! Entries live in a slab (`Vec`) with a free list. Each slot is a bucket: a
//! `Vec<u32>` of slab indices, and each entry records its bucket and its position
//! in it, so cancel is an O(1) `swap_remove`. There are 9 levels × 64 slots plus
//! one "due" bucket for timers inserted at or before `now`. The tick is 1024 µs
//! (≈ 1 ms; a shift instead of a division); level `k` has 64 slots of `64^k`
//! ticks, so 9 levels cover the 54 bits of an offset tick, i.e. all of `i64`
//! microseconds.
//!
//! A timer with tick `t` is placed, relative to the wheel's current tick `c`, at the
//! level of the highest 6-bit digit where `t` and `c` differ and in the slot of
//! `t`'s digit at that level (as in tokio). Each level has a `u64` occupancy
//! bitmap, so finding the next non-empty slot is a handful of `trailing_zeros`:
//! advancing over an idle year costs a few bitmap look-ups, not a loop over ticks.
//! When time reaches a slot of level `k > 0`, its timers cascade to lower levels;
//! when it reaches a level-0 slot, its timers fire, sorted by `(at, seq)`.
//!
//! Buckets are arrays rather than intrusive linked lists on purpose: cascading or
//! firing a bucket reads independent slab entries whose addresses are all known
//! up front, so the CPU overlaps the cache misses instead of chasing one `next`
//! pointer at a time (about 2.8× faster firing with 10 M pending timers).
//!
//! # Memory
//!
//! An entry is `at: i64`, `seq: u64`, `bucket: u32`, `pos: u32` and the payload:
//! 32 bytes for a `u32` or `u64` payload (the id's stamp is the low half of `seq`,
//! so no separate generation field is needed), plus 4 bytes of bucket index, plus
//! the spare capacity of the slab and bucket vectors. The fixed part of a wheel
//! (577 empty buckets and 9 bitmaps) is about 14 KiB. [`Wheel::with_capacity`]
//! avoids the slab's growth slack; [`Wheel::heap_bytes`] reports the total.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use crate::time::Ts;

/// Bits per level (64 slots).
const LEVEL_BITS: u32 = 6;
/// Slots per level.
const SLOTS: usize = 1 << LEVEL_BITS;
/// Levels: 9 × 6 = 54 bits cover every tick of an `i64` microsecond instant.
const LEVELS: usize = 9;
/// log2 of the tick in microseconds (1024 µs).
const TICK_SHIFT: u32 = 10;
/// Offset that maps the signed tick `at >> TICK_SHIFT` (in `[-2^53, 2^53)`) to
/// `[0, 2^54)`.
const TICK_OFFSET: u64 = 1 << (63 - TICK_SHIFT);
/// Index of the "due" bucket (timers inserted at or before `now`).
const DUE: u32 = (LEVELS * SLOTS) as u32;
/// Number of buckets.
const NBUCKETS: usize = DUE as usize + 1;
/// `bucket` of a free slab entry.
const FREE: u32 = u32::MAX;
/// End of the free list.
const NIL: u32 = u32::MAX;
/// Maximum slab size.
const MAX_ENTRIES: usize = (u32::MAX - 1) as usize;
/// A bucket whose capacity is above this is deallocated once emptied by a
/// cascade (big high-level buckets are emptied rarely).
const KEEP_CAPACITY: usize = 256;

/// The offset tick of an instant.
#[inline]
fn tick(at: i64) -> u64 {
    ((at >> TICK_SHIFT) as u64).wrapping_add(TICK_OFFSET)
}

/// The bucket in which a timer of tick `t` waits while the wheel is at tick `c`
/// (`t >= c`): the level of the highest differing digit, `t`'s digit there.
#[inline]
fn bucket_of(t: u64, c: u64) -> u32 {
    let x = (t ^ c) | 1;
    let level = (63 - x.leading_zeros()) / LEVEL_BITS;
    let slot = (t >> (level * LEVEL_BITS)) as u32 & (SLOTS as u32 - 1);
    level * SLOTS as u32 + slot
}

/// Handle of a pending timer, returned by [`Wheel::insert`] and accepted by
/// [`Wheel::cancel`]: a slab index and a stamp (8 bytes).
///
/// Once the timer has fired or been cancelled, the id is stale and is rejected,
/// even after its slab entry is re-used by another timer. (The stamp is the low 32
/// bits of the insertion sequence: a stale id could only be confused with a timer
/// stored in the same entry exactly a multiple of 2^32 insertions later.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerId {
    index: u32,
    stamp: u32,
}

/// One slab entry (32 bytes for a `u32`/`u64` payload).
#[derive(Clone, Copy)]
struct Entry<T> {
    /// The instant (microseconds), kept exactly.
    at: i64,
    /// Insertion sequence: orders ties and stamps the [`TimerId`].
    seq: u64,
    /// The bucket holding this entry, or [`FREE`].
    bucket: u32,
    /// Position in the bucket, or the next free entry (or [`NIL`]) when free.
    pos: u32,
    /// The caller's payload (stale for a free entry).
    payload: T,
}

/// A hierarchical timing wheel of pending timers carrying a `T` payload.
///
/// See the [module documentation](self) for semantics and design. The wheel is
/// `Send` and `Sync` when `T` is.
pub struct Wheel<T: Copy> {
    /// Instant up to which the wheel has advanced.
    now: Ts,
    /// Tick (offset) relative to which timers are placed; `tick(now)` outside
    /// [`Wheel::advance`].
    cur: u64,
    /// The slab.
    entries: Vec<Entry<T>>,
    /// Buckets of slab indices: `level * 64 + slot`, then [`DUE`].
    buckets: Box<[Vec<u32>]>,
    /// Occupancy bitmap per level.
    occ: [u64; LEVELS],
    /// Head of the free list, or [`NIL`].
    free: u32,
    /// Pending timers.
    len: usize,
    /// Next insertion sequence.
    seq: u64,
    /// Cached earliest pending instant, valid when `min_ok`. Atomics (relaxed)
    /// only so that `next_deadline(&self)` can fill the cache while the wheel
    /// stays `Sync`; every value stored is exact for the current state, which
    /// cannot change while `&self` is borrowed.
    min_at: AtomicI64,
    /// Whether `min_at` is valid (and the wheel non-empty).
    min_ok: AtomicBool,
    /// Scratch buffer for sorting the timers fired from one bucket.
    scratch: Vec<(i64, u64, T)>,
}

impl<T: Copy> Clone for Wheel<T> {
    fn clone(&self) -> Self {
        Wheel {
            now: self.now,
            cur: self.cur,
            entries: self.entries.clone(),
            buckets: self.buckets.clone(),
            occ: self.occ,
            free: self.free,
            len: self.len,
            seq: self.seq,
            min_at: AtomicI64::new(self.min_at.load(Ordering::Relaxed)),
            min_ok: AtomicBool::new(self.min_ok.load(Ordering::Relaxed)),
            scratch: Vec::new(),
        }
    }
}

impl<T: Copy> fmt::Debug for Wheel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wheel")
            .field("now", &self.now)
            .field("len", &self.len)
            .field("slab", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl<T: Copy> Wheel<T> {
    /// An empty wheel whose clock starts at `now`.
    pub fn new(now: Ts) -> Self {
        Self::with_capacity(now, 0)
    }

    /// An empty wheel with room for `capacity` timers in its slab without
    /// reallocating.
    pub fn with_capacity(now: Ts, capacity: usize) -> Self {
        Wheel {
            now,
            cur: tick(now.0),
            entries: Vec::with_capacity(capacity),
            buckets: (0..NBUCKETS).map(|_| Vec::new()).collect(),
            occ: [0; LEVELS],
            free: NIL,
            len: 0,
            seq: 0,
            min_at: AtomicI64::new(0),
            min_ok: AtomicBool::new(false),
            scratch: Vec::new(),
        }
    }

    /// Reserves slab room for at least `additional` more timers.
    pub fn reserve(&mut self, additional: usize) {
        let free = self.entries.len() - self.len;
        self.entries.reserve(additional.saturating_sub(free));
    }

    /// The instant up to which the wheel has advanced.
    pub fn now(&self) -> Ts {
        self.now
    }

    /// Number of pending timers.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no timer is pending.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Heap bytes held by the wheel (slab and bucket capacities, scratch), for
    /// memory accounting. Divide by [`len`](Self::len) for bytes per timer.
    pub fn heap_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<Entry<T>>()
            + self.buckets.len() * std::mem::size_of::<Vec<u32>>()
            + self.buckets.iter().map(Vec::capacity).sum::<usize>() * 4
            + self.scratch.capacity() * std::mem::size_of::<(i64, u64, T)>()
    }

    /// Size in bytes of one slab entry for this payload type (each pending timer
    /// also takes 4 bytes in its bucket).
    pub const fn entry_bytes() -> usize {
        std::mem::size_of::<Entry<T>>()
    }

    /// Schedules `payload` at the instant `at`, in O(1) (amortized). An instant at
    /// or before [`now`](Self::now) fires on the next [`advance`](Self::advance).
    ///
    /// # Panics
    ///
    /// If about 4.29 billion timers are pending at once.
    pub fn insert(&mut self, at: Ts, payload: T) -> TimerId {
        let seq = self.seq;
        self.seq += 1;
        let entry = Entry {
            at: at.0,
            seq,
            bucket: FREE,
            pos: NIL,
            payload,
        };
        let index = if self.free != NIL {
            let i = self.free;
            self.free = self.entries[i as usize].pos;
            self.entries[i as usize] = entry;
            i
        } else {
            let i = self.entries.len();
            assert!(i < MAX_ENTRIES, "timer wheel: too many pending timers");
            self.entries.push(entry);
            i as u32
        };
        if self.len == 0 {
            *self.min_at.get_mut() = at.0;
            *self.min_ok.get_mut() = true;
        } else if *self.min_ok.get_mut() && at.0 < *self.min_at.get_mut() {
            *self.min_at.get_mut() = at.0;
        }
        self.len += 1;
        self.place(index, at.0);
        TimerId {
            index,
            stamp: seq as u32,
        }
    }

    /// Cancels a pending timer in O(1) and returns its payload; a stale id
    /// (fired or cancelled) returns `None` and does nothing.
    pub fn cancel(&mut self, id: TimerId) -> Option<T> {
        let e = self.entries.get(id.index as usize)?;
        if e.bucket == FREE || e.seq as u32 != id.stamp {
            return None;
        }
        let (at, payload, b, pos) = (e.at, e.payload, e.bucket, e.pos);
        let bucket = &mut self.buckets[b as usize];
        bucket.swap_remove(pos as usize);
        if let Some(&moved) = bucket.get(pos as usize) {
            self.entries[moved as usize].pos = pos;
        } else if bucket.is_empty() && b < DUE {
            self.occ[b as usize / SLOTS] &= !(1 << (b as usize % SLOTS));
        }
        self.release(id.index);
        self.len -= 1;
        if self.len == 0 || *self.min_at.get_mut() == at {
            *self.min_ok.get_mut() = false;
        }
        Some(payload)
    }

    /// The instant of a pending timer, or `None` if the id is stale.
    pub fn deadline(&self, id: TimerId) -> Option<Ts> {
        let e = self.entries.get(id.index as usize)?;
        (e.bucket != FREE && e.seq as u32 == id.stamp).then_some(Ts(e.at))
    }

    /// The insertion sequence of a pending timer (its place in the order of
    /// arming, which breaks ties), or `None` if the id is stale. Snapshots use
    /// it to re-arm timers in the same relative order.
    pub(crate) fn sequence(&self, id: TimerId) -> Option<u64> {
        let e = self.entries.get(id.index as usize)?;
        (e.bucket != FREE && e.seq as u32 == id.stamp).then_some(e.seq)
    }

    /// Fires every pending timer with an instant at or before `max(now, to)`,
    /// appending `(instant, payload)` to `out` in the order of
    /// `(instant, insertion sequence)`. Afterwards `now() == max(now, to)`.
    ///
    /// The cost is proportional to the timers fired and cascaded plus the number
    /// of non-empty slots crossed, never to the length of the interval.
    pub fn advance(&mut self, to: Ts, out: &mut Vec<(Ts, T)>) {
        let target = self.now.max(to);
        let tt = tick(target.0);
        let before = self.len;
        if !self.buckets[DUE as usize].is_empty() {
            self.fire_bucket(DUE, i64::MAX, out);
        }
        while let Some((b, start)) = self.first_slot() {
            if start > tt {
                break;
            }
            self.cur = start;
            if (b as usize) < SLOTS {
                self.fire_bucket(b, target.0, out);
                if start == tt {
                    break;
                }
            } else {
                self.cascade(b);
            }
        }
        self.cur = tt;
        self.now = target;
        if self.len != before {
            *self.min_ok.get_mut() = false;
        }
    }

    /// Is any pending timer due at or before `limit`? Cheap and never scans a
    /// slot of a higher level: when the first occupied slot starts after
    /// `limit` the answer is no in O(1); otherwise it is exact for level-0
    /// slots and may say yes early for a higher-level slot that starts at or
    /// before `limit` (an [`advance`](Self::advance) then cascades it and
    /// fires nothing that is not due).
    pub fn may_have_due(&self, limit: Ts) -> bool {
        if self.len == 0 {
            return false;
        }
        if self.min_ok.load(Ordering::Relaxed) {
            return self.min_at.load(Ordering::Relaxed) <= limit.0;
        }
        if !self.buckets[DUE as usize].is_empty() {
            return true;
        }
        match self.first_slot() {
            None => false,
            Some((_, start)) if start > tick(limit.0) => false,
            Some((b, _)) if (b as usize) < SLOTS => self.buckets[b as usize]
                .iter()
                .any(|&i| self.entries[i as usize].at <= limit.0),
            Some(_) => true,
        }
    }

    /// The earliest pending instant, exactly, or `None` if the wheel is empty.
    ///
    /// Cached: O(1) after inserts, after cancels of timers other than the
    /// earliest and after advances that fire nothing; otherwise it scans the
    /// first non-empty slot once (or the timers inserted in the past).
    pub fn next_deadline(&self) -> Option<Ts> {
        if self.len == 0 {
            return None;
        }
        if self.min_ok.load(Ordering::Relaxed) {
            return Some(Ts(self.min_at.load(Ordering::Relaxed)));
        }
        let b = if self.buckets[DUE as usize].is_empty() {
            self.first_slot()?.0
        } else {
            DUE
        };
        let min = self.buckets[b as usize]
            .iter()
            .map(|&i| self.entries[i as usize].at)
            .min()?;
        self.min_at.store(min, Ordering::Relaxed);
        self.min_ok.store(true, Ordering::Relaxed);
        Some(Ts(min))
    }

    // ----- internals -----

    /// The first non-empty slot at or after the current tick: `(bucket, start
    /// tick)`. Timers at a lower level always expire before those at a higher
    /// level, so the first level with an occupied slot wins.
    #[inline]
    fn first_slot(&self) -> Option<(u32, u64)> {
        for level in 0..LEVELS {
            let shift = level as u32 * LEVEL_BITS;
            let digit = (self.cur >> shift) as u32 & (SLOTS as u32 - 1);
            let mask = self.occ[level] & (u64::MAX << digit);
            if mask != 0 {
                let slot = mask.trailing_zeros();
                let block = !((1u64 << (shift + LEVEL_BITS)) - 1);
                let start = (self.cur & block) | (u64::from(slot) << shift);
                return Some(((level * SLOTS) as u32 + slot, start));
            }
        }
        None
    }

    /// Puts entry `i` (in no bucket) in the bucket where it waits.
    #[inline]
    fn place(&mut self, i: u32, at: i64) {
        let b = if at <= self.now.0 {
            DUE
        } else {
            let b = bucket_of(tick(at), self.cur);
            self.occ[b as usize / SLOTS] |= 1 << (b as usize % SLOTS);
            b
        };
        let bucket = &mut self.buckets[b as usize];
        let e = &mut self.entries[i as usize];
        e.bucket = b;
        e.pos = bucket.len() as u32;
        bucket.push(i);
    }

    /// Returns entry `i` (in no bucket) to the free list.
    #[inline]
    fn release(&mut self, i: u32) {
        let e = &mut self.entries[i as usize];
        e.bucket = FREE;
        e.pos = self.free;
        self.free = i;
    }

    /// Empties bucket `b`, clearing its occupancy bit, and returns its contents.
    #[inline]
    fn take_bucket(&mut self, b: u32) -> Vec<u32> {
        if b < DUE {
            self.occ[b as usize / SLOTS] &= !(1 << (b as usize % SLOTS));
        }
        std::mem::take(&mut self.buckets[b as usize])
    }

    /// Moves every timer of slot bucket `b` to its place relative to the current
    /// tick (a lower level).
    fn cascade(&mut self, b: u32) {
        let mut list = self.take_bucket(b);
        for &i in &list {
            let at = self.entries[i as usize].at;
            self.place(i, at);
        }
        if list.capacity() <= KEEP_CAPACITY {
            list.clear();
            self.buckets[b as usize] = list;
        }
    }

    /// Fires the timers of bucket `b` with an instant at or before `limit`, in
    /// `(at, seq)` order; the others stay in the bucket.
    fn fire_bucket(&mut self, b: u32, limit: i64, out: &mut Vec<(Ts, T)>) {
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut list = self.take_bucket(b);
        let mut kept = 0;
        for k in 0..list.len() {
            let i = list[k];
            let e = &mut self.entries[i as usize];
            if e.at <= limit {
                scratch.push((e.at, e.seq, e.payload));
                e.bucket = FREE;
                e.pos = self.free;
                self.free = i;
            } else {
                e.pos = kept as u32;
                list[kept] = i;
                kept += 1;
            }
        }
        self.len -= list.len() - kept;
        list.truncate(kept);
        if kept > 0 && b < DUE {
            self.occ[b as usize / SLOTS] |= 1 << (b as usize % SLOTS);
        }
        if list.capacity() <= KEEP_CAPACITY || kept > 0 {
            self.buckets[b as usize] = list;
        }
        if scratch.len() > 1 {
            scratch.sort_unstable_by_key(|&(at, seq, _)| (at, seq));
        }
        out.extend(scratch.drain(..).map(|(at, _, p)| (Ts(at), p)));
        self.scratch = scratch;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{MICROS_PER_DAY, MICROS_PER_SEC};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    const T0: i64 = 1_767_225_600 * MICROS_PER_SEC; // 2026-01-01T00:00:00Z
    const YEAR: i64 = 365 * MICROS_PER_DAY;

    fn fire(w: &mut Wheel<u64>, to: i64) -> Vec<(i64, u64)> {
        let mut out = Vec::new();
        w.advance(Ts(to), &mut out);
        out.into_iter().map(|(t, p)| (t.0, p)).collect()
    }

    #[test]
    fn entry_is_32_bytes() {
        assert_eq!(Wheel::<u64>::entry_bytes(), 32);
        assert_eq!(Wheel::<u32>::entry_bytes(), 32);
        assert_eq!(std::mem::size_of::<TimerId>(), 8);
    }

    #[test]
    fn fires_in_order_with_ties_in_insertion_order() {
        let mut w = Wheel::new(Ts(T0));
        // Same tick, different microseconds, inserted out of order.
        w.insert(Ts(T0 + 5_000_500), 1);
        w.insert(Ts(T0 + 5_000_100), 2);
        w.insert(Ts(T0 + 5_000_500), 3);
        w.insert(Ts(T0 + 3_600 * MICROS_PER_SEC), 4);
        w.insert(Ts(T0 + 1), 5);
        w.insert(Ts(T0 + 5_000_100), 6);
        assert_eq!(w.len(), 6);
        assert_eq!(w.next_deadline(), Some(Ts(T0 + 1)));
        let got = fire(&mut w, T0 + 5_000_400);
        assert_eq!(
            got,
            vec![(T0 + 1, 5), (T0 + 5_000_100, 2), (T0 + 5_000_100, 6)]
        );
        assert_eq!(w.now(), Ts(T0 + 5_000_400));
        assert_eq!(w.next_deadline(), Some(Ts(T0 + 5_000_500)));
        let got = fire(&mut w, T0 + 3_600 * MICROS_PER_SEC);
        assert_eq!(
            got,
            vec![
                (T0 + 5_000_500, 1),
                (T0 + 5_000_500, 3),
                (T0 + 3_600 * MICROS_PER_SEC, 4)
            ]
        );
        assert!(w.is_empty());
        assert_eq!(w.next_deadline(), None);
    }

    #[test]
    fn exact_instant_fires_not_one_before() {
        let mut w = Wheel::new(Ts(T0));
        w.insert(Ts(T0 + 1_234_567), 7);
        assert!(fire(&mut w, T0 + 1_234_566).is_empty());
        assert_eq!(fire(&mut w, T0 + 1_234_567), vec![(T0 + 1_234_567, 7)]);
    }

    #[test]
    fn cancel_and_stale_ids() {
        let mut w = Wheel::new(Ts(T0));
        let a = w.insert(Ts(T0 + 10), 1);
        let b = w.insert(Ts(T0 + 20), 2);
        assert_eq!(w.deadline(a), Some(Ts(T0 + 10)));
        assert_eq!(w.cancel(a), Some(1));
        assert_eq!(w.cancel(a), None, "cancel twice");
        assert_eq!(w.deadline(a), None);
        assert_eq!(w.len(), 1);
        assert_eq!(w.next_deadline(), Some(Ts(T0 + 20)));
        assert_eq!(fire(&mut w, T0 + 100), vec![(T0 + 20, 2)]);
        assert_eq!(w.cancel(b), None, "cancel after firing");
        // Re-use of the freed slots: old ids stay stale.
        let c = w.insert(Ts(T0 + 200), 3);
        let d = w.insert(Ts(T0 + 300), 4);
        assert!(c.index == a.index || c.index == b.index);
        assert!(d.index == a.index || d.index == b.index);
        assert_eq!(w.cancel(a), None);
        assert_eq!(w.cancel(b), None);
        assert_eq!(w.len(), 2);
        assert_eq!(w.cancel(d), Some(4));
        assert_eq!(fire(&mut w, T0 + 1_000), vec![(T0 + 200, 3)]);
        // An id that was never issued.
        assert_eq!(
            w.cancel(TimerId {
                index: 999,
                stamp: 0
            }),
            None
        );
    }

    #[test]
    fn far_future_and_extremes() {
        let mut w = Wheel::new(Ts(T0));
        w.insert(Ts(i64::MAX), 1);
        w.insert(Ts(T0 + 100 * YEAR), 2);
        w.insert(Ts(T0 + 2 * YEAR + 3), 3);
        w.insert(Ts(T0 + 30 * MICROS_PER_DAY), 4);
        assert_eq!(w.next_deadline(), Some(Ts(T0 + 30 * MICROS_PER_DAY)));
        assert!(fire(&mut w, T0 + 2 * YEAR + 2).len() == 1);
        assert_eq!(w.next_deadline(), Some(Ts(T0 + 2 * YEAR + 3)));
        assert_eq!(fire(&mut w, T0 + 50 * YEAR), vec![(T0 + 2 * YEAR + 3, 3)]);
        assert_eq!(
            fire(&mut w, i64::MAX),
            vec![(T0 + 100 * YEAR, 2), (i64::MAX, 1)]
        );
        assert!(w.is_empty());
        assert_eq!(w.now(), Ts(i64::MAX));
    }

    #[test]
    fn before_the_epoch() {
        let mut w = Wheel::new(Ts(i64::MIN));
        w.insert(Ts(-5), 1);
        w.insert(Ts(i64::MIN + 1), 2);
        w.insert(Ts(-YEAR), 3);
        assert_eq!(
            fire(&mut w, -1),
            vec![(i64::MIN + 1, 2), (-YEAR, 3), (-5, 1)]
        );
    }

    #[test]
    fn past_instants_fire_on_next_advance() {
        let mut w = Wheel::new(Ts(T0));
        w.insert(Ts(T0 + 50), 1);
        assert_eq!(fire(&mut w, T0 + 100), vec![(T0 + 50, 1)]);
        w.insert(Ts(T0 + 100), 2); // == now
        w.insert(Ts(T0 - YEAR), 3);
        w.insert(Ts(T0 + 150), 4);
        assert_eq!(w.next_deadline(), Some(Ts(T0 - YEAR)));
        // Even an advance to the same instant fires them, in (at, seq) order.
        assert_eq!(fire(&mut w, T0 + 100), vec![(T0 - YEAR, 3), (T0 + 100, 2)]);
        assert_eq!(w.len(), 1);
        w.insert(Ts(T0), 5);
        // A backward advance does not move time but fires past inserts.
        assert_eq!(fire(&mut w, T0 - 10), vec![(T0, 5)]);
        assert_eq!(w.now(), Ts(T0 + 100));
        assert_eq!(fire(&mut w, T0 + 150), vec![(T0 + 150, 4)]);
    }

    #[test]
    fn advance_same_instant_twice_and_backwards() {
        let mut w = Wheel::new(Ts(T0));
        w.insert(Ts(T0 + 1_000_000), 1);
        w.insert(Ts(T0 + 1_000_001), 2);
        assert_eq!(fire(&mut w, T0 + 1_000_000), vec![(T0 + 1_000_000, 1)]);
        assert!(fire(&mut w, T0 + 1_000_000).is_empty());
        assert!(fire(&mut w, T0).is_empty(), "backwards is a no-op");
        assert_eq!(w.now(), Ts(T0 + 1_000_000));
        assert_eq!(w.len(), 1);
        assert_eq!(w.next_deadline(), Some(Ts(T0 + 1_000_001)));
        assert_eq!(fire(&mut w, T0 + 1_000_001), vec![(T0 + 1_000_001, 2)]);
    }

    #[test]
    fn idle_year_is_cheap_and_cascades_are_exact() {
        let mut w = Wheel::new(Ts(T0));
        let mut expect = Vec::new();
        for i in 0..1000u64 {
            // Spread over a year, many sharing a tick.
            let at = T0 + YEAR / 7 + (i as i64 * 7919 % 1000) * 37_000_013;
            w.insert(Ts(at), i);
            expect.push((at, i));
        }
        expect.sort();
        let mut got = Vec::new();
        let mut t = T0;
        while t < T0 + YEAR {
            t += 3_600 * MICROS_PER_SEC;
            got.extend(fire(&mut w, t));
        }
        assert_eq!(got, expect);
        // A single timer a year away: a one-step advance.
        w.insert(Ts(t + YEAR), 9);
        assert_eq!(fire(&mut w, t + YEAR), vec![(t + YEAR, 9)]);
    }

    #[test]
    fn clone_is_independent() {
        let mut w = Wheel::new(Ts(T0));
        w.insert(Ts(T0 + 5), 1);
        let mut c = w.clone();
        assert_eq!(fire(&mut c, T0 + 5), vec![(T0 + 5, 1)]);
        assert_eq!(w.len(), 1);
        assert_eq!(w.next_deadline(), Some(Ts(T0 + 5)));
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(i64),
        Cancel(usize),
        Advance(i64),
        Peek,
    }

    fn op() -> impl Strategy<Value = Op> {
        let instant = prop_oneof![
            // A few fixed offsets: many exact ties.
            4 => prop::sample::select(vec![-3_000i64, 0, 1, 1_023, 1_024, 65_536, 4_000_000]),
            4 => -2_000_000i64..200_000_000,
            2 => 0i64..(40 * MICROS_PER_DAY),
            1 => 0i64..(10 * YEAR),
            1 => Just(i64::MAX / 4),
        ];
        prop_oneof![
            6 => instant.prop_map(Op::Insert),
            3 => any::<prop::sample::Index>().prop_map(|i| Op::Cancel(i.index(1 << 20))),
            3 => prop_oneof![
                -1_000_000i64..1_000_000,
                0i64..300_000_000,
                0i64..(30 * MICROS_PER_DAY),
                0i64..(3 * YEAR),
                Just(0i64),
            ].prop_map(Op::Advance),
            2 => Just(Op::Peek),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn matches_btreemap_model(start in -YEAR..YEAR, ops in prop::collection::vec(op(), 1..300)) {
            let start = T0 + start;
            let mut w: Wheel<u64> = Wheel::new(Ts(start));
            let mut model: BTreeMap<(i64, u64), u64> = BTreeMap::new();
            let mut ids: Vec<(TimerId, (i64, u64))> = Vec::new();
            let mut now = start;
            let mut seq = 0u64;
            for op in ops {
                match op {
                    Op::Insert(off) => {
                        let at = now.saturating_add(off);
                        let id = w.insert(Ts(at), seq);
                        model.insert((at, seq), seq);
                        ids.push((id, (at, seq)));
                        seq += 1;
                    }
                    Op::Cancel(i) => {
                        if !ids.is_empty() {
                            let (id, key) = ids[i % ids.len()];
                            prop_assert_eq!(w.cancel(id), model.remove(&key));
                        }
                    }
                    Op::Advance(d) => {
                        let to = now.saturating_add(d);
                        let limit = now.max(to);
                        // `may_have_due` never says no when something is due.
                        if model.keys().next().is_some_and(|k| k.0 <= limit) {
                            prop_assert!(w.may_have_due(Ts(limit)));
                        }
                        if model.is_empty() {
                            prop_assert!(!w.may_have_due(Ts(limit)));
                        }
                        let mut expect = Vec::new();
                        while let Some(e) = model.first_entry() {
                            if e.key().0 > limit { break; }
                            let ((at, _), p) = e.remove_entry();
                            expect.push((Ts(at), p));
                        }
                        let mut got = Vec::new();
                        w.advance(Ts(to), &mut got);
                        prop_assert_eq!(got, expect);
                        now = limit;
                        prop_assert_eq!(w.now(), Ts(now));
                    }
                    Op::Peek => {
                        prop_assert_eq!(w.next_deadline(), model.keys().next().map(|k| Ts(k.0)));
                    }
                }
                prop_assert_eq!(w.len(), model.len());
            }
            let mut got = Vec::new();
            w.advance(Ts(i64::MAX), &mut got);
            let expect: Vec<_> = model.into_iter().map(|((at, _), p)| (Ts(at), p)).collect();
            prop_assert_eq!(got, expect);
            prop_assert!(w.is_empty());
        }
    }
}
