//! The shared, read-mostly directory of member contacts (name, phone, push
//! token), keyed by member id.
//!
//! Why: a member's contacts live in the shard that owns the member, but a
//! `leader` recipient is resolved in the *subject's* shard, which knows the
//! org tree (broadcast) but not the contacts of a leader it does not own. So
//! an escalation about member A to leader L, decided in A's shard, carries no
//! address for L when L hashes to another shard. The dispatcher feeder
//! ([`super::sink`]) fills the missing recipient addresses of `member:<id>`
//! recipients from this map before dispatch.
//!
//! Only leaders are kept: a recipient resolved in another shard than its own
//! is always an org's leader (a streak's `leader`, a ticket's
//! `assignee_leader` or `parent_leader`; `self` is resolved in the member's
//! own shard). Every shard applies every `org.upserted`, so each records the
//! leader it names ([`ContactDirectory::leader_named`]) and the shard that
//! owns that member copies its contacts in; the owner also copies them again
//! after each `member.upserted` / `member.removed` of a leader. At recovery a
//! shard copies its own leaders only (a few per thousand members), not every
//! member. A member who stops leading keeps its entry (harmless, and rare).
//!
//! Rules: only the owning shard writes an id (one writer per key); a reference
//! into the map is never held across an `.await` nor while writing to the map
//! (values are cloned out). Members with no name and no contact are not kept.
//! The values are personal data: `Debug` prints none of them.

use std::fmt;
use std::sync::Arc;

use dashmap::{DashMap, DashSet};
use redcloud_engine::fasthash::StrBuild;
use redcloud_engine::notify::Envelope;
use redcloud_engine::Engine;

/// The addresses of one member.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct MemberAddresses {
    /// Display name.
    pub name: Option<Box<str>>,
    /// Phone number.
    pub sms: Option<Box<str>>,
    /// Push device token.
    pub push: Option<Box<str>>,
}

impl fmt::Debug for MemberAddresses {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemberAddresses")
            .field("name", &self.name.is_some())
            .field("sms", &self.sms.is_some())
            .field("push", &self.push.is_some())
            .finish()
    }
}

/// What the directory keeps of a member's contacts (`None`: nothing to keep).
fn addresses(c: redcloud_engine::directory::Contacts<'_>) -> Option<MemberAddresses> {
    let a = MemberAddresses {
        name: c.name.map(Into::into),
        sms: c.sms.map(Into::into),
        push: c.push.map(Into::into),
    };
    (a.name.is_some() || a.sms.is_some() || a.push.is_some()).then_some(a)
}

/// The contacts `engine` holds for `member` (only its owner holds any).
fn own_addresses(engine: &Engine, member: &str) -> Option<MemberAddresses> {
    let dir = engine.directory();
    dir.member_ids
        .find(member)
        .and_then(|m| dir.member_contacts(m))
        .and_then(addresses)
}

/// The directory shared by the shards (writers) and the feeder (reader).
#[derive(Clone, Default)]
pub struct ContactDirectory {
    /// Keys hashed with xxh3 (`StrBuild`): SipHash dominated mirroring
    /// millions of members at recovery.
    map: Arc<DashMap<Box<str>, MemberAddresses, StrBuild>>,
    /// Ids that an org has named as its leader.
    leaders: Arc<DashSet<Box<str>, StrBuild>>,
}

impl fmt::Debug for ContactDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContactDirectory")
            .field("members", &self.map.len())
            .finish()
    }
}

impl ContactDirectory {
    /// An empty directory.
    pub fn new() -> ContactDirectory {
        ContactDirectory::default()
    }

    /// Leaders kept (the gauge `redcloud_contact_directory_members`).
    pub fn members(&self) -> usize {
        self.map.len()
    }

    /// Copies what `engine` (the owner of `member`) now knows of the member's
    /// contacts, if the member leads an org: called by the owning shard after
    /// it applied a `member.upserted` or `member.removed` for it.
    pub fn mirror(&self, engine: &Engine, member: &str) {
        if !self.leaders.contains(member) {
            return;
        }
        match own_addresses(engine, member) {
            Some(a) => {
                self.map.insert(member.into(), a);
            }
            None => {
                self.map.remove(member);
            }
        }
    }

    /// Records that an org named `leader` as its leader: called by every
    /// shard after it applied an `org.upserted`. The shard that owns the
    /// member (the one that knows its contacts) copies them in.
    pub fn leader_named(&self, engine: &Engine, leader: &str) {
        if !self.leaders.contains(leader) {
            self.leaders.insert(leader.into());
        }
        if let Some(a) = own_addresses(engine, leader) {
            self.map.insert(leader.into(), a);
        }
    }

    /// Copies the contacts of the leaders `engine` owns and, with
    /// `record_leaders`, records every leader its org tree names (a shard
    /// after its recovery; every shard holds the whole tree, so one of them
    /// records the leaders).
    pub fn mirror_all(&self, engine: &Engine, record_leaders: bool) {
        let dir = engine.directory();
        for org in &dir.orgs {
            if org.leader == redcloud_engine::directory::NONE {
                continue;
            }
            let id = dir.member_ids.get(org.leader);
            if record_leaders && !self.leaders.contains(id) {
                self.leaders.insert(id.into());
            }
            if let Some(a) = dir.member_contacts(org.leader).and_then(addresses) {
                self.map.insert(id.into(), a);
            }
        }
    }

    /// The addresses of `member`, cloned out of the map.
    pub fn get(&self, member: &str) -> Option<MemberAddresses> {
        self.map.get(member).map(|r| r.value().clone())
    }

    /// Fills what a `member:<id>` recipient's envelope lacks (name, phone,
    /// push token) from the directory. Returns whether anything was filled.
    pub fn fill(&self, env: &mut Envelope) -> bool {
        if env.recipient_name.is_some() && env.sms.is_some() && env.push.is_some() {
            return false;
        }
        let Some(id) = env.notification.recipient.strip_prefix("member:") else {
            return false;
        };
        // Cloned out: no reference into the map outlives this line.
        let Some(a) = self.get(id) else {
            return false;
        };
        let mut filled = false;
        let mut take = |slot: &mut Option<String>, v: Option<Box<str>>| {
            if slot.is_none() {
                if let Some(v) = v {
                    *slot = Some(v.into());
                    filled = true;
                }
            }
        };
        take(&mut env.recipient_name, a.name);
        take(&mut env.sms, a.sms);
        take(&mut env.push, a.push);
        filled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redcloud_engine::notify::RenderedOwned;

    fn envelope(recipient: &str) -> Envelope {
        Envelope {
            notification: RenderedOwned {
                id: "n1".into(),
                at: "2026-03-07T00:00:00+08:00".into(),
                policy: "quiz".into(),
                kind: "escalation".into(),
                step: 2,
                subject: "member:a".into(),
                recipient: recipient.into(),
                missed: Some(5),
            },
            recipient_name: None,
            sms: None,
            push: None,
            org: None,
            org_name: None,
            org_group: None,
            subject_name: None,
            ticket_title: None,
            deadline: None,
        }
    }

    #[test]
    fn fills_only_what_is_missing_and_never_prints_values() {
        let d = ContactDirectory::new();
        d.map.insert(
            "L".into(),
            MemberAddresses {
                name: Some("张三".into()),
                sms: Some("13800000000".into()),
                push: None,
            },
        );
        let mut e = envelope("member:L");
        assert!(d.fill(&mut e));
        assert_eq!(e.sms.as_deref(), Some("13800000000"));
        assert_eq!(e.recipient_name.as_deref(), Some("张三"));
        assert_eq!(e.push, None);

        let mut e = envelope("member:L");
        e.sms = Some("13900000000".into());
        d.fill(&mut e);
        assert_eq!(e.sms.as_deref(), Some("13900000000"), "own data wins");

        let mut e = envelope("office:city");
        assert!(!d.fill(&mut e));
        let mut e = envelope("member:nobody");
        assert!(!d.fill(&mut e));

        let shown = format!("{:?} {:?}", d, d.get("L"));
        assert!(!shown.contains("138") && !shown.contains("张三"), "{shown}");
    }

    #[test]
    fn leaders_are_mirrored_as_events_come_and_all_at_once_after_recovery() {
        use redcloud_engine::event::{decode, Body};
        let cfg = std::sync::Arc::new(redcloud_engine::policy::EngineConfig::contract_default());
        let mut e = Engine::new(cfg.clone());
        let mut out = Vec::new();
        // `a` is named leader before its upsert, `b` after it; `c` leads
        // nothing; `z` leads an org but is never upserted here.
        let lines = [
            r#"{"id":"o","type":"org.upserted","at":"2026-03-02T08:00:00+08:00","org":"u","parent":null,"level":"city","leader":"a"}"#,
            r#"{"id":"1","type":"member.upserted","at":"2026-03-02T08:00:00+08:00","member":"a","org":"u","name":"甲","contacts":{"sms":"13800000001"}}"#,
            r#"{"id":"2","type":"member.upserted","at":"2026-03-02T08:00:00+08:00","member":"b","org":"u","contacts":{"push":"tok-b"}}"#,
            r#"{"id":"3","type":"member.upserted","at":"2026-03-02T08:00:00+08:00","member":"c","org":"u","contacts":{"sms":"13800000003"}}"#,
            r#"{"id":"p","type":"org.upserted","at":"2026-03-02T08:00:00+08:00","org":"v","parent":"u","level":"county","leader":"b"}"#,
            r#"{"id":"q","type":"org.upserted","at":"2026-03-02T08:00:00+08:00","org":"w","parent":"u","level":"county","leader":"z"}"#,
        ];
        // What a shard does as it applies them.
        let live = ContactDirectory::new();
        for l in lines {
            let ev = decode(l.as_bytes(), &cfg.levels).unwrap();
            e.apply(&ev, &mut out);
            match &ev.body {
                Body::MemberUpserted { member, .. } | Body::MemberRemoved { member } => {
                    live.mirror(&e, member)
                }
                Body::OrgUpserted {
                    leader: Some(l), ..
                } => live.leader_named(&e, l),
                _ => {}
            }
        }
        let all = ContactDirectory::new();
        all.mirror_all(&e, true);
        assert_eq!(all.members(), 2, "the leaders with contacts: a and b");
        assert_eq!(live.members(), 2);
        for m in ["a", "b", "c", "z"] {
            assert_eq!(live.get(m), all.get(m), "{m}");
        }
        assert_eq!(all.get("a").unwrap().sms.as_deref(), Some("13800000001"));
        assert_eq!(all.get("b").unwrap().push.as_deref(), Some("tok-b"));
        assert_eq!(all.get("c"), None, "not a leader");

        // A leader removed is forgotten; re-upserted, it is back.
        let ev = decode(
            br#"{"id":"4","type":"member.removed","at":"2026-03-02T09:00:00+08:00","member":"a"}"#,
            &cfg.levels,
        )
        .unwrap();
        e.apply(&ev, &mut out);
        live.mirror(&e, "a");
        assert_eq!(live.get("a"), None);
        let ev = decode(
            br#"{"id":"5","type":"member.upserted","at":"2026-03-02T10:00:00+08:00","member":"a","org":"u","contacts":{"sms":"13800000009"}}"#,
            &cfg.levels,
        )
        .unwrap();
        e.apply(&ev, &mut out);
        live.mirror(&e, "a");
        assert_eq!(live.get("a").unwrap().sms.as_deref(), Some("13800000009"));
    }
}
