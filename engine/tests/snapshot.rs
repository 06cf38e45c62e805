//! Snapshots: an engine restored from a snapshot continues exactly like the
//! engine it was taken from; damaged or foreign snapshots are refused, and no
//! bytes make `restore` panic.

mod common;

use std::sync::Arc;

use common::{c, ts, Run};
use proptest::prelude::*;
use proptest::sample::Index;
use redcloud_engine::calendar::Calendar;
use redcloud_engine::event::{Body, Event};
use redcloud_engine::policy::{
    EngineConfig, Kind, SlaDuration, SlaPolicy, SlaStep, StreakPolicy, StreakRole, StreakStep,
    TicketRole,
};
use redcloud_engine::snapshot::{SnapshotError, HEADER_LEN, TRAILER_LEN};
use redcloud_engine::time::{TimeOfDay, Ts, MICROS_PER_DAY, MICROS_PER_HOUR, MICROS_PER_MIN};
use redcloud_engine::{Engine, Outcome};

const DAY: i64 = MICROS_PER_DAY;

/// The contract's defaults (`quiz` closing at 24:00, `tickets` on calendar
/// time) plus a streak policy closing at 20:00 for one cohort and two
/// working-day SLA policies whose different warnings re-arm timers at the same
/// deadline in different orders.
fn cfg() -> EngineConfig {
    let mut c = EngineConfig::contract_default();
    c.streaks.push(StreakPolicy {
        name: "worklog".into(),
        activity: "worklog".into(),
        cohorts: vec!["cadre".into()],
        closes_at: TimeOfDay(20 * 60),
        steps: vec![
            StreakStep {
                after: 1,
                every: 2,
                kind: Kind::Reminder,
                notify: vec![StreakRole::Member],
            },
            StreakStep {
                after: 3,
                every: 3,
                kind: Kind::Escalation,
                notify: vec![StreakRole::Leader, StreakRole::Office(1)],
            },
        ],
    });
    c.slas.push(SlaPolicy {
        name: "complaints".into(),
        categories: vec!["complaint".into()],
        resolve_within: SlaDuration::WorkingDays(3),
        warn_before: vec![DAY],
        warn_notify: vec![TicketRole::AssigneeLeader],
        steps: vec![
            SlaStep {
                after: 0,
                notify: vec![TicketRole::AssigneeLeader],
            },
            SlaStep {
                after: DAY,
                notify: vec![TicketRole::ParentLeader, TicketRole::Office(0)],
            },
        ],
    });
    c.slas.push(SlaPolicy {
        name: "reports".into(),
        categories: vec!["report".into()],
        resolve_within: SlaDuration::WorkingDays(3),
        warn_before: vec![2 * DAY, 3 * MICROS_PER_HOUR],
        warn_notify: vec![TicketRole::ParentLeader],
        steps: vec![
            SlaStep {
                after: 0,
                notify: vec![TicketRole::AssigneeLeader],
            },
            SlaStep {
                after: 2 * DAY,
                notify: vec![TicketRole::Office(1)],
            },
        ],
    });
    c
}

#[derive(Clone, Debug)]
enum Op {
    Org(u8, Option<u8>, Option<u8>),
    Member(u8, u8, u8),
    Remove(u8),
    Login(u8),
    Act(u8, bool),
    Open(u8, u8, u8),
    Accept(u8),
    Reply(u8),
    Resolve(u8),
    Cancel(u8),
    Rate(u8, bool),
    Reassign(u8, u8),
    /// Re-uses the id of an earlier event (with another body).
    Dup(Index),
}

fn op() -> impl Strategy<Value = Op> {
    let m = 0..12u8;
    let t = 0..16u8;
    let o = 0..6u8;
    prop_oneof![
        2 => (o.clone(), proptest::option::of(o.clone()), proptest::option::of(m.clone()))
            .prop_map(|(a, b, c)| Op::Org(a, b, c)),
        3 => (m.clone(), o.clone(), 0..3u8).prop_map(|(a, b, c)| Op::Member(a, b, c)),
        1 => m.clone().prop_map(Op::Remove),
        3 => m.clone().prop_map(Op::Login),
        6 => (m.clone(), any::<bool>()).prop_map(|(a, b)| Op::Act(a, b)),
        4 => (t.clone(), o.clone(), 0..4u8).prop_map(|(a, b, c)| Op::Open(a, b, c)),
        1 => t.clone().prop_map(Op::Accept),
        1 => t.clone().prop_map(Op::Reply),
        2 => t.clone().prop_map(Op::Resolve),
        1 => t.clone().prop_map(Op::Cancel),
        1 => (t.clone(), any::<bool>()).prop_map(|(a, b)| Op::Rate(a, b)),
        1 => (t, o).prop_map(|(a, b)| Op::Reassign(a, b)),
        1 => any::<Index>().prop_map(Op::Dup),
    ]
}

/// One step of a trace: minutes forward, whether the event is late (and by
/// how many minutes before the current time), and the event.
type Step = (u32, bool, u32, Op);

fn step() -> impl Strategy<Value = Step> {
    (
        0..36 * 60u32,
        proptest::bool::weighted(0.1),
        0..48 * 60u32,
        op(),
    )
}

/// Turns steps into events; returns them and the largest instant.
fn events(start: Ts, steps: &[Step]) -> (Vec<Event<'static>>, Ts) {
    let mut now = start;
    let mut max = start;
    let mut out: Vec<Event<'static>> = Vec::new();
    let s = |p: &str, i: u8| c(&format!("{p}{i}"));
    for (i, (fwd, late, back, op)) in steps.iter().enumerate() {
        let at = if *late {
            now.plus(-i64::from(*back) * MICROS_PER_MIN)
        } else {
            now = now.plus(i64::from(*fwd) * MICROS_PER_MIN);
            now
        };
        max = max.max(at);
        let mut id = format!("e{i}");
        let body = match op {
            Op::Org(o, p, l) => Body::OrgUpserted {
                org: s("o", *o),
                parent: p.filter(|p| p != o).map(|p| s("o", p)),
                level: 0,
                name: Some(s("Org ", *o)),
                leader: l.map(|l| s("m", l)),
                group: (o % 2 == 0).then(|| s("robot-", *o)),
            },
            Op::Member(m, o, k) => Body::MemberUpserted {
                member: s("m", *m),
                org: s("o", *o),
                name: Some(s("Member ", *m)),
                cohort: [None, Some(c("cadre")), Some(c("retired"))][*k as usize % 3].clone(),
                sms: (m % 3 != 0).then(|| s("1380000", *m)),
                push: (m % 4 == 0).then(|| s("tok", *m)),
            },
            Op::Remove(m) => Body::MemberRemoved { member: s("m", *m) },
            Op::Login(m) => Body::AppLogin { member: s("m", *m) },
            Op::Act(m, w) => Body::ActivityRecorded {
                member: s("m", *m),
                activity: c(if *w { "worklog" } else { "quiz" }),
            },
            Op::Open(t, o, k) => Body::TicketOpened {
                ticket: s("t", *t),
                org: s("o", *o),
                category: c(["help", "complaint", "report", "other"][*k as usize % 4]),
                title: (t % 2 == 0).then(|| s("title ", *t)),
            },
            Op::Accept(t) => Body::TicketAccepted { ticket: s("t", *t) },
            Op::Reply(t) => Body::TicketReplied { ticket: s("t", *t) },
            Op::Resolve(t) => Body::TicketResolved { ticket: s("t", *t) },
            Op::Cancel(t) => Body::TicketCancelled { ticket: s("t", *t) },
            Op::Rate(t, y) => Body::TicketRated {
                ticket: s("t", *t),
                satisfied: *y,
            },
            Op::Reassign(t, o) => Body::TicketReassigned {
                ticket: s("t", *t),
                org: s("o", *o),
            },
            Op::Dup(j) => {
                if i > 0 {
                    id = format!("e{}", j.index(i));
                }
                Body::AppLogin {
                    member: s("m", (j.index(12)) as u8),
                }
            }
        };
        out.push(Event {
            id: c(&id),
            at,
            body,
        });
    }
    (out, max)
}

/// Everything observable about an engine's state.
fn views(e: &Engine) -> String {
    let mut v = format!(
        "wm {:?}\ncounters {:?}\nfallback {:?}\npending {}\nstats {:?}\n",
        e.watermark(),
        e.counters(),
        e.first_calendar_fallback(),
        e.pending_timers(),
        e.stats_rows(),
    );
    for m in 0..12 {
        v += &format!("{:?}\n", e.member_view(&format!("m{m}")));
    }
    for t in 0..16 {
        v += &format!("{:?}\n", e.ticket_view(&format!("t{t}")));
    }
    v
}

/// Snapshots and restores the engine of a run; checks that the restored
/// engine's snapshot has the same bytes and that its views are equal.
fn cut(r: &mut Run, cfg: &Arc<EngineConfig>) {
    let snap = r.engine.snapshot();
    let restored = Engine::restore(Arc::clone(cfg), &snap).expect("a fresh snapshot restores");
    assert_eq!(
        restored.snapshot(),
        snap,
        "restore then snapshot gives the same bytes"
    );
    assert_eq!(views(&restored), views(&r.engine));
    r.engine = restored;
}

/// Runs the events uninterrupted and with snapshot-and-restore at `cuts`;
/// the notifications, outcomes, views and final state must be equal.
fn check(cfg: EngineConfig, evs: &[Event<'static>], cuts: &[usize], end: Ts) {
    let cfg = Arc::new(cfg);
    let mut full = Run::from_engine(Engine::new(Arc::clone(&cfg)));
    let mut cutr = Run::from_engine(Engine::new(Arc::clone(&cfg)));
    for (i, ev) in evs.iter().enumerate() {
        if cuts.contains(&i) {
            cut(&mut cutr, &cfg);
        }
        let a = full.apply(ev.clone());
        let b = cutr.apply(ev.clone());
        assert_eq!(a, b, "outcome of event {i}");
    }
    if cuts.contains(&evs.len()) {
        cut(&mut cutr, &cfg);
    }
    full.advance(end);
    cutr.advance(end);
    assert_eq!(full.out, cutr.out, "notifications");
    assert_eq!(full.engine.stats_rows(), cutr.engine.stats_rows());
    assert_eq!(views(&full.engine), views(&cutr.engine));
    assert_eq!(
        full.engine.snapshot(),
        cutr.engine.snapshot(),
        "final state"
    );
}

const STARTS: [&str; 3] = [
    // Before National Day (working-day deadlines skip a week).
    "2026-09-24T08:00:00+08:00",
    // Crosses into 2027, which no built-in calendar covers (the fallback).
    "2026-12-10T08:00:00+08:00",
    // Spring Festival 2026, with make-up working days.
    "2026-02-05T08:00:00+08:00",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn restored_engine_continues_exactly(
        start in 0..STARTS.len(),
        steps in proptest::collection::vec(step(), 1..120),
        cuts in proptest::collection::vec(any::<Index>(), 1..4),
        tail_hours in 0..20 * 24i64,
        retention in prop_oneof![Just(0), Just(2 * DAY), Just(35 * DAY)],
    ) {
        let mut cfg = cfg();
        cfg.dedup_retention = retention;
        let (evs, max) = events(ts(STARTS[start]), &steps);
        let cuts: Vec<usize> = cuts.iter().map(|c| c.index(evs.len() + 1)).collect();
        check(cfg, &evs, &cuts, max.plus(tail_hours * MICROS_PER_HOUR));
    }
}

/// Two working-day tickets with the same deadline whose warnings fire on
/// different days: the later-opened one re-arms its escalation first, so at
/// the deadline it fires first; a restore must keep that order (ticket index
/// order would not).
#[test]
fn timers_keep_their_arming_order() {
    let mut cfg = EngineConfig::contract_default();
    cfg.streaks.clear();
    let wd = |name: &str, cat: &str, warn: i64| SlaPolicy {
        name: name.into(),
        categories: vec![cat.into()],
        resolve_within: SlaDuration::WorkingDays(3),
        warn_before: vec![warn],
        warn_notify: vec![TicketRole::AssigneeLeader],
        steps: vec![SlaStep {
            after: 0,
            notify: vec![TicketRole::AssigneeLeader],
        }],
    };
    cfg.slas = vec![wd("one", "a", DAY), wd("two", "b", 2 * DAY)];
    let cfg = Arc::new(cfg);
    let mut r = Run::from_engine(Engine::new(Arc::clone(&cfg)));
    r.org("2026-03-02T08:00:00+08:00", "oa", None, Some("la"));
    r.org("2026-03-02T08:00:00+08:00", "ob", None, Some("lb"));
    r.open("2026-03-02T09:00:00+08:00", "A", "oa", "a");
    r.open("2026-03-02T10:00:00+08:00", "B", "ob", "b");
    // Deadline of both: the close of Thursday 03-05. B warns on 03-04, A on
    // 03-05; both escalate at 03-06 00:00.
    r.until("2026-03-05T12:00:00+08:00");
    let mut restored = Run::from_engine(
        Engine::restore(Arc::clone(&cfg), &r.engine.snapshot()).expect("restores"),
    );
    r.until("2026-03-07T00:00:00+08:00");
    restored.until("2026-03-07T00:00:00+08:00");
    let esc: Vec<&str> = r
        .out
        .iter()
        .filter(|n| n.kind == "escalation")
        .map(|n| n.recipient.as_str())
        .collect();
    assert_eq!(esc, ["member:lb", "member:la"]);
    let n = r.out.len() - 2;
    assert_eq!(restored.out, r.out[n..]);
}

/// A small engine with a bit of everything.
fn sample() -> (Arc<EngineConfig>, Vec<u8>) {
    let cfg = Arc::new(cfg());
    let mut r = Run::from_engine(Engine::new(Arc::clone(&cfg)));
    r.org("2026-03-02T08:00:00+08:00", "city", None, Some("boss"));
    r.org(
        "2026-03-02T08:00:00+08:00",
        "unit",
        Some("city"),
        Some("lead"),
    );
    r.member("2026-03-02T08:00:00+08:00", "m1", "unit", Some("cadre"));
    r.member("2026-03-02T08:00:00+08:00", "m2", "unit", None);
    r.login("2026-03-02T09:00:00+08:00", "m1");
    r.login("2026-03-02T09:00:00+08:00", "m2");
    r.quiz("2026-03-02T09:30:00+08:00", "m1");
    r.open("2026-03-02T10:00:00+08:00", "T1", "unit", "help");
    r.open("2026-03-02T10:00:00+08:00", "T2", "unit", "complaint");
    r.ticket(
        "2026-03-03T10:00:00+08:00",
        Body::TicketRated {
            ticket: c("T1"),
            satisfied: true,
        },
    );
    r.until("2026-03-04T12:00:00+08:00");
    let snap = r.engine.snapshot();
    (cfg, snap)
}

#[test]
fn every_flipped_byte_is_refused() {
    let (cfg, snap) = sample();
    assert!(Engine::restore(Arc::clone(&cfg), &snap).is_ok());
    for i in 0..snap.len() {
        let mut bad = snap.clone();
        bad[i] ^= 0x20;
        let err = Engine::restore(Arc::clone(&cfg), &bad).expect_err("a flipped byte is refused");
        match i {
            0..8 => assert!(matches!(err, SnapshotError::BadMagic { .. }), "{i}: {err}"),
            8..12 => assert!(
                matches!(err, SnapshotError::UnsupportedVersion { .. }),
                "{i}: {err}"
            ),
            12..20 => assert!(
                matches!(
                    err,
                    SnapshotError::Truncated { .. } | SnapshotError::Invalid { .. }
                ),
                "{i}: {err}"
            ),
            _ => assert!(matches!(err, SnapshotError::Checksum { .. }), "{i}: {err}"),
        }
    }
    let mut bad = snap.clone();
    bad[HEADER_LEN + 20] ^= 1;
    let msg = Engine::restore(Arc::clone(&cfg), &bad)
        .expect_err("refused")
        .to_string();
    assert!(
        msg.starts_with("snapshot checksum mismatch: stored"),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("at offset {}", snap.len() - TRAILER_LEN)),
        "{msg}"
    );
}

#[test]
fn every_truncation_is_refused_as_truncated() {
    let (cfg, snap) = sample();
    for n in 0..snap.len() {
        let err = Engine::restore(Arc::clone(&cfg), &snap[..n]).expect_err("truncated");
        assert!(
            matches!(err, SnapshotError::Truncated { actual, .. } if actual == n),
            "{n}: {err}"
        );
    }
    let msg = Engine::restore(Arc::clone(&cfg), &snap[..100])
        .expect_err("truncated")
        .to_string();
    assert_eq!(
        msg,
        format!(
            "truncated snapshot: the header says {} bytes, got 100",
            snap.len()
        )
    );
    let mut long = snap.clone();
    long.push(0);
    let err = Engine::restore(Arc::clone(&cfg), &long).expect_err("trailing bytes");
    assert!(
        err.to_string()
            .contains("1 bytes after the end of the snapshot"),
        "{err}"
    );
}

#[test]
fn other_policies_are_refused_other_calendars_are_not() {
    let (_, snap) = sample();
    let mut other = cfg();
    other.streaks[1].closes_at = TimeOfDay(21 * 60);
    let err = Engine::restore(Arc::new(other), &snap).expect_err("other policies");
    assert!(matches!(err, SnapshotError::ConfigMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.starts_with("snapshot was taken under other policies"),
        "{msg}"
    );
    assert!(
        msg.contains("streaks [quiz, worklog], slas [tickets, complaints, reports]"),
        "{msg}"
    );

    let err = Engine::restore(Arc::new(EngineConfig::contract_default()), &snap)
        .expect_err("fewer policies");
    assert!(
        err.to_string()
            .contains("(streaks [quiz], slas [tickets]); restore it with the config"),
        "{err}"
    );

    // The calendar and the retention may change between runs.
    let mut ok = cfg();
    ok.calendar = Calendar::weekdays();
    ok.dedup_retention = DAY;
    assert!(Engine::restore(Arc::new(ok), &snap).is_ok());
}

#[test]
fn foreign_and_future_bytes_are_refused() {
    let cfg = Arc::new(cfg());
    let err = Engine::restore(Arc::clone(&cfg), b"{\"not\":\"a snapshot\"}").expect_err("json");
    assert_eq!(
        err.to_string(),
        "not a snapshot: bad magic \"{\\\"not\\\":\\\"\" at offset 0 (expected \"RCLDSNAP\")"
    );
    let (_, mut snap) = sample();
    snap[8] = 2;
    reseal(&mut snap);
    let err = Engine::restore(cfg, &snap).expect_err("future version");
    assert_eq!(
        err.to_string(),
        "unsupported snapshot format version 2 at offset 8 (this build reads version 1)"
    );
}

#[test]
fn bad_indices_name_section_and_offset() {
    let (cfg, snap) = sample();
    // The first org entry follows the three id lists of the directory; find
    // the `unit` org's parent index (0 = city) by searching for its bytes:
    // exists = 1, parent = 0u32, level = 0, leader = the index of `lead`.
    let dir = find(&snap, b"DIRY").expect("directory section");
    let unit = find(&snap[dir..], &[1, 0, 0, 0, 0, 0]).expect("unit's entry") + dir;
    let mut bad = snap.clone();
    bad[unit + 1] = 9; // parent org 9 of 2
    reseal(&mut bad);
    let msg = Engine::restore(cfg, &bad)
        .expect_err("bad index")
        .to_string();
    assert_eq!(
        msg,
        format!(
            "invalid index in section directory at offset {}: parent org 9 is not below 2",
            unit + 1
        )
    );
}

#[test]
fn repeated_ids_are_refused_naming_the_first_repeat() {
    let (cfg, snap) = sample();
    for (tag, section, what, id, first) in [
        (b"DIRY", "directory", "member", b"m2", "2"),
        (b"TKTS", "tickets", "ticket", b"T2", "0"),
    ] {
        let s = find(&snap, tag).expect("section");
        let at = find(&snap[s..], &[2, id[0], id[1]]).expect("the id") + s;
        let mut bad = snap.clone();
        bad[at + 2] = b'1'; // m2 → m1, T2 → T1
        reseal(&mut bad);
        let msg = Engine::restore(Arc::clone(&cfg), &bad)
            .expect_err("repeated id")
            .to_string();
        let k = if what == "member" { "3" } else { "1" };
        assert_eq!(
            msg,
            format!(
                "invalid snapshot: section {section} at offset {at}: {what} id {k} repeats id {first}"
            )
        );
    }
}

#[test]
fn a_string_that_is_not_utf8_is_refused_where_it_is() {
    let (cfg, snap) = sample();
    let dir = find(&snap, b"DIRY").expect("directory section");
    for id in [&b"m2"[..], b"T2"] {
        let at = find(&snap[dir..], &[2, id[0], id[1]]).expect("the id") + dir;
        let mut bad = snap.clone();
        bad[at + 1] = 0xff;
        reseal(&mut bad);
        let msg = Engine::restore(Arc::clone(&cfg), &bad)
            .expect_err("not UTF-8")
            .to_string();
        assert!(
            msg.ends_with(&format!("at offset {at}: string is not valid UTF-8")),
            "{msg}"
        );
    }
}

#[test]
fn a_repeated_event_id_is_refused_where_it_repeats() {
    let (cfg, snap) = sample();
    let varint = |b: &[u8], at: &mut usize| {
        let mut v = 0u64;
        for i in 0.. {
            let x = b[*at];
            *at += 1;
            v |= u64::from(x & 0x7f) << (7 * i);
            if x & 0x80 == 0 {
                break;
            }
        }
        v
    };
    let mut at = find(&snap, b"DDUP").expect("dedup section") + 12;
    let n = varint(&snap, &mut at);
    assert!(n >= 3, "{n} remembered ids");
    let mut entries = Vec::new();
    for _ in 0..n {
        let start = at;
        varint(&snap, &mut at);
        entries.push((start, at));
        at += 16;
    }
    // The third id becomes the first's.
    let first = entries[0].1;
    let key: [u8; 16] = snap[first..first + 16].try_into().expect("16 bytes");
    let mut bad = snap.clone();
    bad[entries[2].1..entries[2].1 + 16].copy_from_slice(&key);
    reseal(&mut bad);
    let msg = Engine::restore(cfg, &bad)
        .expect_err("repeated id")
        .to_string();
    assert_eq!(
        msg,
        format!(
            "invalid snapshot: section dedup at offset {}: event id hash {:032x} appears twice",
            entries[2].0,
            u128::from_le_bytes(key)
        )
    );
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Rewrites the total length and the checksum after an edit (to reach the
/// checks behind the checksum).
fn reseal(b: &mut [u8]) {
    if b.len() < HEADER_LEN + TRAILER_LEN {
        return;
    }
    let total = b.len() as u64;
    b[12..20].copy_from_slice(&total.to_le_bytes());
    let n = b.len() - TRAILER_LEN;
    let sum = xxhash_rust::xxh3::xxh3_64(&b[..n]);
    b[n..].copy_from_slice(&sum.to_le_bytes());
}

/// Uses an engine that `restore` accepted: nothing may panic.
fn exercise(mut e: Engine) {
    let mut out = Vec::new();
    let wm = e.watermark().unwrap_or(ts("2026-03-02T00:00:00+08:00"));
    let evs = events(
        wm,
        &[(60, false, 0, Op::Login(1)), (60, false, 0, Op::Resolve(1))],
    )
    .0;
    for ev in &evs {
        e.apply(ev, &mut out);
    }
    e.advance(wm.plus(40 * DAY), &mut out);
    for n in &out {
        let _ = e.envelope(n);
    }
    let _ = views(&e);
    let _ = e.own_stats();
    let _ = e.snapshot();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let cfg = Arc::new(cfg());
        prop_assert!(Engine::restore(Arc::clone(&cfg), &bytes).is_err());
        // With a valid header and checksum, the sections' parser sees them.
        let mut b = b"RCLDSNAP\x01\0\0\0".to_vec();
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&sample().1[20..28]);
        b.extend_from_slice(&bytes);
        b.extend_from_slice(&[0; 8]);
        reseal(&mut b);
        if let Ok(e) = Engine::restore(cfg, &b) {
            exercise(e);
        }
    }

    #[test]
    fn mutated_snapshots_never_panic(
        edits in proptest::collection::vec((any::<Index>(), any::<u8>()), 1..6),
        cut_at in proptest::option::of(any::<Index>()),
        seal in any::<bool>(),
    ) {
        let (cfg, snap) = sample();
        let mut b = snap.clone();
        for (i, v) in &edits {
            let i = i.index(b.len());
            b[i] = *v;
        }
        if let Some(c) = cut_at {
            // Cut the body short and keep a trailer.
            let n = HEADER_LEN + c.index(b.len() - HEADER_LEN - TRAILER_LEN);
            b.truncate(n);
            b.extend_from_slice(&[0; TRAILER_LEN]);
        }
        if seal {
            reseal(&mut b);
        }
        match Engine::restore(Arc::clone(&cfg), &b) {
            Ok(e) => {
                // Without a new checksum, any change is caught.
                prop_assert!(seal || b == snap, "an unsealed edit was accepted");
                exercise(e);
            }
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(msg.chars().next().is_some_and(|c| c.is_lowercase()), "{}", msg);
            }
        }
    }
}

#[test]
fn an_empty_engine_round_trips() {
    let cfg = Arc::new(cfg());
    let e = Engine::new(Arc::clone(&cfg));
    let snap = e.snapshot();
    let r = Engine::restore(Arc::clone(&cfg), &snap).expect("restores");
    assert_eq!(r.snapshot(), snap);
    assert_eq!(r.watermark(), None);
    let mut run = Run::from_engine(r);
    let o = run.ev(
        "2026-03-02T09:00:00+08:00",
        Body::AppLogin { member: c("m1") },
    );
    assert_eq!(o, Outcome::Applied);
}
