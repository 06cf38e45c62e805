//! Shared helpers of the criterion benchmarks: synthetic populations and
//! event streams, and resident-memory readings.

use std::borrow::Cow;
use std::sync::Arc;

use redcloud_engine::event::{Body, Event};
use redcloud_engine::policy::EngineConfig;
use redcloud_engine::time::{Day, Ts};
use redcloud_engine::Engine;

/// The member id of number `i`.
pub fn member_id(i: usize) -> String {
    format!("m{i:08}")
}

/// A Monday in 2026 with a normal working week around it.
pub fn monday() -> Day {
    Day::parse("2026-03-02").expect("date")
}

/// An engine on the contract's default config with `n` members in 1,000
/// orgs (leaders set), all logged in on `monday()` at 09:00.
pub fn populated_engine(n: usize) -> Engine {
    populated_engine_with(n, EngineConfig::contract_default())
}

/// Like [`populated_engine`] with a given config. Setup events are 1 µs apart,
/// so a short `dedup_retention` keeps the idempotency table from growing
/// (memory measurements of member state use 1 µs).
pub fn populated_engine_with(n: usize, cfg: EngineConfig) -> Engine {
    let cfg = Arc::new(cfg);
    let zone = cfg.zone;
    let mut e = Engine::new(cfg);
    e.reserve_members(n);
    let mut t0 = zone.local_instant(monday(), 8 * 60);
    let mut t1 = zone.local_instant(monday(), 9 * 60);
    let mut out = Vec::new();
    let mut seq = 0u64;
    let mut next_id = || {
        seq += 1;
        Cow::Owned(format!("setup-{seq}"))
    };
    e.apply(
        &Event {
            id: next_id(),
            at: t0,
            body: Body::OrgUpserted {
                org: "root".into(),
                parent: None,
                level: 0,
                name: None,
                leader: Some("leader-root".into()),
                group: None,
            },
        },
        &mut out,
    );
    for o in 0..1000 {
        e.apply(
            &Event {
                id: next_id(),
                at: t0,
                body: Body::OrgUpserted {
                    org: format!("o{o}").into(),
                    parent: Some("root".into()),
                    level: 1,
                    name: None,
                    leader: Some(format!("leader-{o}").into()),
                    group: None,
                },
            },
            &mut out,
        );
    }
    for i in 0..n {
        let m = member_id(i);
        t0 = t0.plus(1);
        e.apply(
            &Event {
                id: next_id(),
                at: t0,
                body: Body::MemberUpserted {
                    member: Cow::Borrowed(&m),
                    org: format!("o{}", i % 1000).into(),
                    name: None,
                    cohort: None,
                    sms: None,
                    push: None,
                },
            },
            &mut out,
        );
        t1 = t1.plus(1);
        e.apply(
            &Event {
                id: next_id(),
                at: t1,
                body: Body::AppLogin {
                    member: Cow::Borrowed(&m),
                },
            },
            &mut out,
        );
    }
    e
}

/// `activity.recorded` NDJSON lines for members `0..members`, spread over
/// `monday()` from 10:00, ids starting at `first_id`.
pub fn activity_lines(first_id: u64, count: usize, members: usize, zone_offset: &str) -> Vec<u8> {
    let mut buf = Vec::with_capacity(count * 120);
    for k in 0..count {
        let m = (k.wrapping_mul(2_654_435_761)) % members;
        let secs = 36_000 + (k % 36_000);
        let (h, mi, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
        buf.extend_from_slice(
            format!(
                "{{\"id\":\"e{}\",\"type\":\"activity.recorded\",\"at\":\"2026-03-02T{h:02}:{mi:02}:{s:02}{zone_offset}\",\"member\":\"{}\",\"activity\":\"quiz\"}}\n",
                first_id + k as u64,
                member_id(m)
            )
            .as_bytes(),
        );
    }
    buf
}

/// Resident set size of this process, in bytes (Linux `/proc/self/statm`).
pub fn rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = s.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// The instant of local time `minutes` after midnight of `day` in the
/// engine's zone.
pub fn local(e: &Engine, day: Day, minutes: u32) -> Ts {
    e.config().zone.local_instant(day, minutes)
}
