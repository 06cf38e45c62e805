//! The directory: the org tree and the members, with leader resolution
//! (contract section 2.5 and 3.3).
//!
//! Members and orgs are interned to dense indices. A member's compact entry
//! (org, cohort, state) is on the hot path of every day close; names and
//! contacts are personal data kept in side tables, used only to address
//! deliveries and never logged.

use crate::intern::Interner;
use crate::records::{push_str, read_str, RecordFormat, RecordStore};

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

/// The contact record: a `u8` mask (1 name, 2 sms, 4 push, 8 group), then
/// per set bit a varint length and the UTF-8 bytes (the snapshot's encoding
/// of an entry after its index, see [`crate::snapshot`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct ContactRecord;

impl RecordFormat for ContactRecord {
    fn len(b: &[u8]) -> Option<usize> {
        decode(b).map(|(_, n)| n)
    }
}

/// Contacts by member or org index, in one byte arena (see [`RecordStore`]).
pub type ContactStore = RecordStore<ContactRecord>;

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
            let (s, n) = read_str(b.get(pos..)?)?;
            *v = Some(s);
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

impl RecordStore<ContactRecord> {
    /// The contacts of index `i`, if it has any.
    pub fn get(&self, i: u32) -> Option<Contacts<'_>> {
        self.record(i).and_then(decode).map(|(c, _)| c)
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
            push_str(&mut rec, f);
        }
        self.put(i, &rec);
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
        st.check_accounting();
        // Restored record by record: same contacts, no garbage.
        let mut back = ContactStore::default();
        for (i, r) in st.records() {
            back.push_record(i, r);
        }
        check(&back, &model);
        back.check_accounting();
        assert!(back.heap_bytes() <= st.heap_bytes());
        assert!(format!("{back:?}").starts_with("RecordStore { len: "));
    }
}
