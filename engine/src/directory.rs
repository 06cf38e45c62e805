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

/// Addresses of a member or an org (personal data: never log these).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Contacts {
    /// Display name.
    pub name: Option<Box<str>>,
    /// Phone number for SMS.
    pub sms: Option<Box<str>>,
    /// Mobile push device token.
    pub push: Option<Box<str>>,
    /// Group-chat robot webhook or key (orgs).
    pub group: Option<Box<str>>,
}

impl Contacts {
    fn is_empty(&self) -> bool {
        self.name.is_none() && self.sms.is_none() && self.push.is_none() && self.group.is_none()
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
    pub(crate) member_contacts: crate::fasthash::IdxMap<Contacts>,
    pub(crate) org_contacts: crate::fasthash::IdxMap<Contacts>,
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
        let c = Contacts {
            name: name.map(Into::into),
            group: group.map(Into::into),
            ..Contacts::default()
        };
        if c.is_empty() {
            self.org_contacts.remove(&o);
        } else {
            self.org_contacts.insert(o, c);
        }
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
        contacts: Contacts,
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
        if contacts.is_empty() {
            self.member_contacts.remove(&m);
        } else {
            self.member_contacts.insert(m, contacts);
        }
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
        self.member_contacts.remove(&m);
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
    pub fn member_contacts(&self, m: u32) -> Option<&Contacts> {
        self.member_contacts.get(&m)
    }

    /// Contacts of an org.
    pub fn org_contacts(&self, o: u32) -> Option<&Contacts> {
        self.org_contacts.get(&o)
    }

    /// Heap bytes of the compact member data (ids, entries), excluding
    /// contacts, for memory accounting.
    pub fn member_heap_bytes(&self) -> usize {
        self.member_ids.heap_bytes() + self.members.capacity() * std::mem::size_of::<Member>()
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
}
