//! The shared, read-mostly directory of member contacts (name, phone, push
//! token), keyed by member id.
//!
//! Why: a member's contacts live in the shard that owns the member, but a
//! `leader` recipient is resolved in the *subject's* shard, which knows the
//! org tree (broadcast) but not the contacts of a leader it does not own. So
//! an escalation about member A to leader L, decided in A's shard, carries no
//! address for L when L hashes to another shard. The owning shard mirrors
//! every `member.upserted` / `member.removed` it applies into this map, and the
//! dispatcher feeder ([`super::sink`]) fills the missing recipient addresses
//! of `member:<id>` recipients from it before dispatch.
//!
//! Rules: only the owning shard writes an id (one writer per key); a reference
//! into the map is never held across an `.await` nor while writing to the map
//! (values are cloned out). Members with no name and no contact are not kept.
//! The values are personal data: `Debug` prints none of them.

use std::fmt;
use std::sync::Arc;

use dashmap::DashMap;
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

/// The directory shared by the shards (writers) and the feeder (reader).
#[derive(Clone, Default)]
pub struct ContactDirectory {
    /// Keys hashed with xxh3 (`StrBuild`): SipHash dominated mirroring
    /// millions of members at recovery.
    map: Arc<DashMap<Box<str>, MemberAddresses, StrBuild>>,
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

    /// Members kept (the gauge `redcloud_contact_directory_members`).
    pub fn members(&self) -> usize {
        self.map.len()
    }

    /// Copies what `engine` (the owner of `member`) now knows of the member's
    /// contacts: called by the owning shard after it applied a
    /// `member.upserted` or `member.removed` for it.
    pub fn mirror(&self, engine: &Engine, member: &str) {
        let dir = engine.directory();
        let addr = dir
            .member_ids
            .find(member)
            .and_then(|m| dir.member_contacts(m))
            .and_then(addresses);
        match addr {
            Some(a) => {
                self.map.insert(member.into(), a);
            }
            None => {
                self.map.remove(member);
            }
        }
    }

    /// Copies every member's contacts `engine` holds (a shard after its
    /// recovery), without looking each member up again.
    pub fn mirror_all(&self, engine: &Engine) {
        let dir = engine.directory();
        // In member order (ids and entries are read sequentially); one
        // contacts lookup per member, no id lookup.
        for i in 0..dir.member_ids.len() {
            let m = u32::try_from(i).unwrap_or(u32::MAX);
            if let Some(a) = dir.member_contacts(m).and_then(addresses) {
                self.map.insert(dir.member_ids.get(m).into(), a);
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
    fn mirroring_everything_equals_mirroring_one_by_one() {
        use redcloud_engine::event::decode;
        let cfg = std::sync::Arc::new(redcloud_engine::policy::EngineConfig::contract_default());
        let mut e = Engine::new(cfg.clone());
        let mut out = Vec::new();
        let lines = [
            r#"{"id":"o","type":"org.upserted","at":"2026-03-02T08:00:00+08:00","org":"u","parent":null,"level":"city","leader":"a"}"#,
            r#"{"id":"1","type":"member.upserted","at":"2026-03-02T08:00:00+08:00","member":"a","org":"u","name":"甲","contacts":{"sms":"13800000001"}}"#,
            r#"{"id":"2","type":"member.upserted","at":"2026-03-02T08:00:00+08:00","member":"b","org":"u","contacts":{"push":"tok-b"}}"#,
            r#"{"id":"3","type":"member.upserted","at":"2026-03-02T08:00:00+08:00","member":"c","org":"u"}"#,
        ];
        for l in lines {
            let ev = decode(l.as_bytes(), &cfg.levels).unwrap();
            e.apply(&ev, &mut out);
        }
        let one = ContactDirectory::new();
        for m in ["a", "b", "c"] {
            one.mirror(&e, m);
        }
        let all = ContactDirectory::new();
        all.mirror_all(&e);
        assert_eq!(all.members(), 2, "c has nothing to keep");
        for m in ["a", "b", "c"] {
            assert_eq!(one.get(m), all.get(m), "{m}");
        }
        assert_eq!(all.get("b").unwrap().push.as_deref(), Some("tok-b"));
    }
}
