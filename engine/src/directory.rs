//! The directory: the org tree and the members, with leader resolution
//! (contract section 2.5 and 3.3).
//!
//! Members and orgs are interned to dense indices. A member's compact entry
//! (org, cohort, state) is on the hot path of every day close; names and
//! contacts are personal data kept in side tables, used only to address
//! deliveries and never logged.

use crate::intern::Interner;

/// "No index": a missing parent, leader or org.
pub const NONE: u32 = u32::MAX;

/// Most ancestors followed when resolving a leader (guards against cycles
/// that a bad feed could create).
const MAX_DEPTH: usize = 64;

/// A member's lifecycle state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberState {
    /// Known only as an id (e.g. a leader named by an org) or never upserted.
    Unknown,
    /// Upserted (or implicitly created by a login) and not removed.
    Active,
    /// Removed: not tracked until upserted again and logged in again.
    Removed,
}

/// A member's compact directory entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    /// Org index, or [`NONE`].
    pub org: u32,
    /// Cohort index in [`Directory::cohorts`].
    pub cohort: u16,
    /// Lifecycle.
    pub state: MemberState,
    /// Has logged in since becoming active (enrolled).
    pub logged_in: bool,
}

/// An org's entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Org {
    /// Upserted (an org can be known only as someone's parent or org).
    pub exists: bool,
    /// Parent org index or [`NONE`].
    pub parent: u32,
    /// Level index (0 = top).
    pub level: u8,
    /// Leader member index or [`NONE`].
    pub leader: u32,
}

/// Addresses of a member or an org (personal data: never log these), as
/// borrowed strings: given to [`Directory::upsert_member`] and returned by
/// [`Directory::member_contacts`] and [`Directory::org_contacts`], which read
/// them out of a [`ContactStore`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Contacts<'a> {
    /// Display name.
    pub name: Option<&'a str>,
    /// Phone number for SMS.
    pub sms: Option<&'a str>,
    /// Mobile push device token.
    pub push: Option<&'a str>,
    /// Group-chat robot webhook or key (orgs).
    pub group: Option<&'a str>,
}

impl Contacts<'_> {
    fn is_empty(&self) -> bool {
        self.name.is_none() && self.sms.is_none() && self.push.is_none() && self.group.is_none()
    }

    fn fields(&self) -> [Option<&str>; 4] {
        [self.name, self.sms, self.push, self.group]
    }
}

/// Contacts by dense index (member or org index): every entry's record lies
/// in one byte arena, so an entry costs its bytes, up to 7 bytes of padding
/// and a 4-byte slot per index, with no heap allocation per string (a hash
/// map of boxed strings took over 100 bytes per member and one allocation
/// per string to restore and to free).
///
/// A record is the snapshot's encoding of an entry (see
/// [`crate::snapshot`]): a `u8` mask (1 name, 2 sms, 4 push, 8 group), then
/// per set bit a varint length and the UTF-8 bytes. Records start at multiples
/// of 8 bytes, so a `u32` slot addresses 32 GiB. A replacement that fits in
/// its entry's old record is written in place, otherwise appended; the bytes
/// left behind are counted and the arena is compacted once they are more than
/// half of it.
#[derive(Clone, Default)]
pub struct ContactStore {
    /// Per index: the record's offset in 8-byte units, or [`NONE`].
    slots: Vec<u32>,
    arena: Vec<u8>,
    /// Indices with a record.
    len: usize,
    /// Arena bytes no record uses (padding of replaced records included).
    garbage: usize,
}

impl std::fmt::Debug for ContactStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Personal data: only the sizes.
        f.debug_struct("ContactStore")
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

/// Decodes the record at the start of `b`: the contacts and the record's
/// length. `None` if it is not a well-formed record.
fn decode(b: &[u8]) -> Option<(Contacts<'_>, usize)> {
    let mask = *b.first()?;
    if mask >= 16 {
        return None;
    }
    let mut pos = 1;
    let mut f: [Option<&str>; 4] = [None; 4];
    for (i, v) in f.iter_mut().enumerate() {
        if mask & (1 << i) != 0 {
            let (n, k) = read_varint(b.get(pos..)?)?;
            pos += k;
            let s = b.get(pos..pos.checked_add(n)?)?;
            *v = Some(std::str::from_utf8(s).ok()?);
            pos += n;
        }
    }
    let [name, sms, push, group] = f;
    Some((
        Contacts {
            name,
            sms,
            push,
            group,
        },
        pos,
    ))
}

impl ContactStore {
    /// The contacts of index `i`, if it has any.
    pub fn get(&self, i: u32) -> Option<Contacts<'_>> {
        let at = *self.slots.get(i as usize)?;
        if at == NONE {
            return None;
        }
        decode(self.arena.get(at as usize * 8..)?).map(|(c, _)| c)
    }

    /// The record of index `i`, if it has one.
    fn record(&self, i: u32) -> Option<&[u8]> {
        let at = *self.slots.get(i as usize)?;
        if at == NONE {
            return None;
        }
        let b = self.arena.get(at as usize * 8..)?;
        decode(b).map(|(_, n)| &b[..n])
    }

    /// Number of indices with contacts.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no index has contacts.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sets the contacts of index `i`; empty contacts remove them.
    pub fn set(&mut self, i: u32, c: Contacts<'_>) {
        if c.is_empty() {
            self.remove(i);
            return;
        }
        let mut rec = Vec::with_capacity(64);
        let fields = c.fields();
        rec.push(
            fields
                .iter()
                .enumerate()
                .fold(0u8, |m, (k, f)| m | (u8::from(f.is_some()) << k)),
        );
        for f in fields.iter().flatten() {
            push_varint(&mut rec, f.len());
            rec.extend_from_slice(f.as_bytes());
        }
        let old = self.record(i).map(|r| padded(r.len()));
        match old {
            Some(room) if padded(rec.len()) <= room => {
                let at = self.slots[i as usize] as usize * 8;
                self.arena[at..at + rec.len()].copy_from_slice(&rec);
                self.garbage += room - padded(rec.len());
            }
            _ => {
                if let Some(room) = old {
                    self.garbage += room;
                    self.len -= 1;
                }
                self.append(i, &rec);
            }
        }
        self.maybe_compact();
    }

    /// Removes the contacts of index `i`, if any.
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
        // Beyond 32 GiB of contacts the slot cannot address the record:
        // far past any shard's memory, but never a wrong answer.
        self.slots[i] = u32::try_from(at / 8)
            .ok()
            .filter(|&u| u != NONE)
            .expect("contact store over 32 GiB");
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
            let n = decode(b).map_or(0, |(_, n)| n);
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
}

/// Orgs, members and cohorts of one shard.
#[derive(Debug, Default, Clone)]
pub struct Directory {
    /// Member ids.
    pub member_ids: Interner,
    /// Member entries, by member index.
    pub members: Vec<Member>,
    /// Org ids.
    pub org_ids: Interner,
    /// Org entries, by org index.
    pub orgs: Vec<Org>,
    /// Cohort names.
    pub cohorts: Interner,
    // Crate-visible for `snapshot`.
    pub(crate) member_contacts: ContactStore,
    pub(crate) org_contacts: ContactStore,
}

/// The default cohort of a member upserted without one.
pub const DEFAULT_COHORT: &str = "member";

impl Directory {
    /// An empty directory; cohort 0 is the default cohort.
    pub fn new() -> Directory {
        let mut d = Directory::default();
        d.cohorts.intern(DEFAULT_COHORT);
        d
    }

    /// The index of a member id, creating an `Unknown` entry if new.
    pub fn member_index(&mut self, id: &str) -> u32 {
        let (i, new) = self.member_ids.intern(id);
        if new {
            self.members.push(Member {
                org: NONE,
                cohort: 0,
                state: MemberState::Unknown,
                logged_in: false,
            });
        }
        i
    }

    /// The index of an org id, creating a non-existing entry if new.
    pub fn org_index(&mut self, id: &str) -> u32 {
        let (i, new) = self.org_ids.intern(id);
        if new {
            self.orgs.push(Org {
                exists: false,
                parent: NONE,
                level: 0,
                leader: NONE,
            });
        }
        i
    }

    /// The index of a cohort name, interning it.
    pub fn cohort_index(&mut self, name: &str) -> u16 {
        let (i, _) = self.cohorts.intern(name);
        u16::try_from(i).unwrap_or(u16::MAX)
    }

    /// Creates or replaces an org.
    #[allow(clippy::too_many_arguments)]
    pub fn upsert_org(
        &mut self,
        org: &str,
        parent: Option<&str>,
        level: u8,
        leader: Option<&str>,
        name: Option<&str>,
        group: Option<&str>,
    ) -> u32 {
        let o = self.org_index(org);
        let parent = parent.map_or(NONE, |p| self.org_index(p));
        let leader = leader.map_or(NONE, |l| self.member_index(l));
        self.orgs[o as usize] = Org {
            exists: true,
            parent,
            level,
            leader,
        };
        self.org_contacts.set(
            o,
            Contacts {
                name,
                group,
                ..Contacts::default()
            },
        );
        o
    }

    /// Creates or replaces a member. Returns the index and whether the member
    /// starts anew (was unknown or removed), in which case its enrolment and
    /// runs must be reset by the caller.
    pub fn upsert_member(
        &mut self,
        member: &str,
        org: &str,
        cohort: Option<&str>,
        contacts: Contacts<'_>,
    ) -> (u32, bool) {
        let m = self.member_index(member);
        let org = self.org_index(org);
        let cohort = self.cohort_index(cohort.unwrap_or(DEFAULT_COHORT));
        let e = &mut self.members[m as usize];
        let fresh = e.state != MemberState::Active;
        e.org = org;
        e.cohort = cohort;
        if fresh {
            e.state = MemberState::Active;
            e.logged_in = false;
        }
        self.member_contacts.set(m, contacts);
        (m, fresh)
    }

    /// Removes a member: tracking stops; contacts are dropped.
    pub fn remove_member(&mut self, member: &str) -> Option<u32> {
        let m = self.member_ids.find(member)?;
        let e = &mut self.members[m as usize];
        if e.state != MemberState::Active {
            return None;
        }
        e.state = MemberState::Removed;
        e.logged_in = false;
        self.member_contacts.remove(m);
        Some(m)
    }

    /// The leader of `org` or of its nearest ancestor that has a leader other
    /// than `exclude` (contract 2.5; pass [`NONE`] to exclude nobody).
    pub fn leader_from(&self, mut org: u32, exclude: u32) -> Option<u32> {
        for _ in 0..MAX_DEPTH {
            let o = self.orgs.get(org as usize)?;
            if !o.exists {
                return None;
            }
            if o.leader != NONE && o.leader != exclude {
                return Some(o.leader);
            }
            org = o.parent;
        }
        None
    }

    /// The parent of an existing org.
    pub fn parent_of(&self, org: u32) -> Option<u32> {
        let o = self.orgs.get(org as usize)?;
        (o.exists && o.parent != NONE).then_some(o.parent)
    }

    /// The org and its ancestors, nearest first (bounded, cycle-safe).
    pub fn ancestry(&self, org: u32) -> impl Iterator<Item = u32> + '_ {
        let mut cur = org;
        let mut left = MAX_DEPTH;
        let mut seen_self = false;
        std::iter::from_fn(move || {
            if left == 0 || cur == NONE || (cur == org && seen_self) {
                return None;
            }
            left -= 1;
            seen_self = true;
            let this = cur;
            cur = self.orgs.get(this as usize).map_or(NONE, |o| o.parent);
            Some(this)
        })
    }

    /// Contacts of a member.
    pub fn member_contacts(&self, m: u32) -> Option<Contacts<'_>> {
        self.member_contacts.get(m)
    }

    /// Contacts of an org.
    pub fn org_contacts(&self, o: u32) -> Option<Contacts<'_>> {
        self.org_contacts.get(o)
    }

    /// Heap bytes of the compact member data (ids, entries), excluding
    /// contacts, for memory accounting.
    pub fn member_heap_bytes(&self) -> usize {
        self.member_ids.heap_bytes() + self.members.capacity() * std::mem::size_of::<Member>()
    }

    /// Heap bytes of the member and org contacts, for memory accounting.
    pub fn contact_heap_bytes(&self) -> usize {
        self.member_contacts.heap_bytes() + self.org_contacts.heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> Directory {
        let mut d = Directory::new();
        d.upsert_org("city", None, 0, Some("boss"), None, None);
        d.upsert_org("county", Some("city"), 1, None, None, None);
        d.upsert_org("town", Some("county"), 2, Some("m1"), None, None);
        d
    }

    #[test]
    fn leader_falls_back_up_the_tree() {
        let mut d = tree();
        let (m1, _) = d.upsert_member("m1", "town", None, Contacts::default());
        let (m2, _) = d.upsert_member("m2", "town", None, Contacts::default());
        let town = d.org_ids.find("town").unwrap();
        let county = d.org_ids.find("county").unwrap();
        let boss = d.member_ids.find("boss").unwrap();
        // m2's leader is m1; m1 leads their own org, so their leader is the boss.
        assert_eq!(d.leader_from(town, m2), Some(m1));
        assert_eq!(d.leader_from(town, m1), Some(boss));
        // An org without a leader defers to its parent.
        assert_eq!(d.leader_from(county, NONE), Some(boss));
        let ghost = d.org_index("ghost");
        assert_eq!(d.leader_from(ghost, NONE), None);
    }

    #[test]
    fn cycles_terminate() {
        let mut d = Directory::new();
        d.upsert_org("a", Some("b"), 0, None, None, None);
        d.upsert_org("b", Some("a"), 0, None, None, None);
        let a = d.org_ids.find("a").unwrap();
        assert_eq!(d.leader_from(a, NONE), None);
        assert_eq!(d.ancestry(a).count(), 2);
    }

    #[test]
    fn removal_and_return() {
        let mut d = tree();
        let (m, fresh) = d.upsert_member("m9", "town", Some("cadre"), Contacts::default());
        assert!(fresh);
        d.members[m as usize].logged_in = true;
        let (_, fresh) = d.upsert_member("m9", "county", None, Contacts::default());
        assert!(!fresh);
        assert!(d.members[m as usize].logged_in);
        assert_eq!(d.remove_member("m9"), Some(m));
        assert!(!d.members[m as usize].logged_in);
        let (_, fresh) = d.upsert_member("m9", "town", None, Contacts::default());
        assert!(fresh);
    }

    fn sms(s: &str) -> Contacts<'_> {
        Contacts {
            sms: Some(s),
            ..Contacts::default()
        }
    }

    /// The store against a plain map of the same operations, then its records
    /// read back through `push_record` as a snapshot does.
    #[test]
    fn contact_store_set_replace_remove_restore() {
        use std::collections::BTreeMap;
        let mut st = ContactStore::default();
        let mut model: BTreeMap<u32, [Option<String>; 4]> = BTreeMap::new();
        let own = |c: Contacts<'_>| c.fields().map(|f| f.map(str::to_string));
        let check = |st: &ContactStore, model: &BTreeMap<u32, [Option<String>; 4]>| {
            assert_eq!(st.len(), model.len());
            for i in 0..300u32 {
                assert_eq!(st.get(i).map(own), model.get(&i).cloned(), "index {i}");
            }
            let listed: Vec<u32> = st.records().map(|(i, _)| i).collect();
            assert_eq!(listed, model.keys().copied().collect::<Vec<_>>());
        };
        assert_eq!(st.get(0), None);
        st.set(7, sms("+8613800000000"));
        model.insert(7, own(sms("+8613800000000")));
        check(&st, &model);
        // Shorter (in place), longer (appended), empty (removed), removed.
        st.set(7, sms("110"));
        model.insert(7, own(sms("110")));
        let full = Contacts {
            name: Some("张三"),
            sms: Some("13800000000"),
            push: Some(&"p".repeat(200)),
            group: Some(""),
        };
        st.set(3, full);
        model.insert(3, own(full));
        st.set(7, full);
        model.insert(7, own(full));
        check(&st, &model);
        st.set(3, Contacts::default());
        model.remove(&3);
        st.remove(7);
        st.remove(250);
        model.remove(&7);
        check(&st, &model);
        // Many replacements: the garbage is compacted away and nothing else
        // changes.
        for round in 0..200u32 {
            for i in 0..300u32 {
                let v = "x".repeat(((i + round) % 40) as usize);
                let c = match (i + round) % 5 {
                    0 => Contacts::default(),
                    1 => sms(&v),
                    2 => Contacts {
                        name: Some(&v),
                        group: Some("g"),
                        ..Contacts::default()
                    },
                    _ => Contacts {
                        push: Some(&v),
                        ..full
                    },
                };
                st.set(i, c);
                if c.is_empty() {
                    model.remove(&i);
                } else {
                    model.insert(i, own(c));
                }
            }
        }
        check(&st, &model);
        assert!(st.garbage * 2 <= st.arena.len() || st.garbage < COMPACT_MIN);
        let live: usize = st.records().map(|(_, r)| padded(r.len())).sum();
        assert_eq!(live + st.garbage, st.arena.len());
        assert!(st.heap_bytes() >= st.arena.len() + st.slots.len() * 4);
        // Restored record by record: same contacts, no garbage.
        let mut back = ContactStore::default();
        for (i, r) in st.records() {
            back.push_record(i, r);
        }
        check(&back, &model);
        assert_eq!(back.garbage, 0);
        assert_eq!(back.arena.len(), live);
        assert!(format!("{back:?}").starts_with("ContactStore { len: "));
    }
}
