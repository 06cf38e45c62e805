//! Streak rules (contract section 2 and 6) on hand-written traces, and a
//! property test of the engine against a plain day-by-day model.

mod common;

use common::{c, ts, Run};
use proptest::prelude::*;
use redcloud_engine::event::{Body, Event};
use redcloud_engine::policy::{EngineConfig, Kind, StreakRole, StreakStep};
use redcloud_engine::time::{Day, TimeOfDay};
use redcloud_engine::Outcome;

fn setup(run: &mut Run) {
    run.org("2026-01-05T08:00:00+08:00", "city", None, Some("boss"));
    run.org(
        "2026-01-05T08:00:00+08:00",
        "unit",
        Some("city"),
        Some("lead"),
    );
    run.member("2026-01-05T08:00:00+08:00", "m1", "unit", None);
}

#[test]
fn a_missed_day_reminds_and_five_escalate() {
    let mut r = Run::new(EngineConfig::contract_default());
    setup(&mut r);
    // Monday 2026-03-02: logs in and does the quiz; misses Tue..Mon.
    r.login("2026-03-02T09:00:00+08:00", "m1");
    r.quiz("2026-03-02T09:05:00+08:00", "m1");
    r.until("2026-03-10T00:00:00+08:00");
    let seen = r.seen();
    let days: Vec<_> = seen
        .iter()
        .map(|s| (s.0.as_str(), s.1, s.3.as_str(), s.4))
        .collect();
    assert_eq!(
        days,
        vec![
            (
                "2026-03-04T00:00:00+08:00",
                "reminder",
                "member:m1",
                Some(1)
            ),
            (
                "2026-03-05T00:00:00+08:00",
                "reminder",
                "member:m1",
                Some(2)
            ),
            (
                "2026-03-06T00:00:00+08:00",
                "reminder",
                "member:m1",
                Some(3)
            ),
            (
                "2026-03-07T00:00:00+08:00",
                "reminder",
                "member:m1",
                Some(4)
            ),
            // Weekend: nothing closes. Monday 2026-03-09 is the 5th miss.
            (
                "2026-03-10T00:00:00+08:00",
                "reminder",
                "member:m1",
                Some(5)
            ),
            (
                "2026-03-10T00:00:00+08:00",
                "escalation",
                "member:lead",
                Some(5)
            ),
            (
                "2026-03-10T00:00:00+08:00",
                "escalation",
                "office:city",
                Some(5)
            ),
        ]
    );
    assert_eq!(r.out[6].step, 2);
    assert_eq!(r.out[6].policy, "quiz");
    assert_eq!(r.out[6].subject, "member:m1");
}

#[test]
fn done_day_resets_and_weekend_activity_resets_nothing() {
    let mut r = Run::new(EngineConfig::contract_default());
    setup(&mut r);
    r.login("2026-03-02T09:00:00+08:00", "m1");
    // Misses Mon, Tue; Sat quiz does not count; Wed done resets.
    r.quiz("2026-03-04T23:59:59.999+08:00", "m1");
    r.until("2026-03-06T00:00:00+08:00");
    let missed: Vec<_> = r.seen().iter().map(|s| s.4).collect();
    // Mon and Tue missed (1, 2), Wed done, Thu missed -> 1 again.
    assert_eq!(missed, vec![Some(1), Some(2), Some(1)]);
    r.quiz("2026-03-07T10:00:00+08:00", "m1"); // Saturday: not a working day
    r.until("2026-03-10T00:00:00+08:00");
    let missed: Vec<_> = r.seen().iter().map(|s| s.4).collect();
    assert_eq!(missed, vec![Some(1), Some(2), Some(1), Some(2), Some(3)]);
}

#[test]
fn spring_festival_2026_and_make_up_saturdays() {
    let mut r = Run::new(EngineConfig::contract_default());
    setup(&mut r);
    // Friday 2026-02-13 login, no activity afterwards.
    r.login("2026-02-13T10:00:00+08:00", "m1");
    r.until("2026-03-03T00:00:00+08:00");
    let at: Vec<_> = r
        .seen()
        .iter()
        .filter(|s| s.1 == "reminder")
        .map(|s| (s.0[..10].to_string(), s.4.unwrap()))
        .collect();
    // Closes at 24:00: 02-13 (Fri) closes 02-14; 02-14 (make-up Sat) closes
    // 02-15; holidays 02-16..02-23 close nothing; 02-24..02-27 and 02-28
    // (make-up Sat); then 03-02.
    assert_eq!(
        at,
        vec![
            ("2026-02-14".into(), 1),
            ("2026-02-15".into(), 2),
            ("2026-02-25".into(), 3),
            ("2026-02-26".into(), 4),
            ("2026-02-27".into(), 5),
            ("2026-02-28".into(), 6),
            ("2026-03-01".into(), 7),
            ("2026-03-03".into(), 8),
        ]
    );
    let esc: Vec<_> = r
        .seen()
        .iter()
        .filter(|s| s.1 == "escalation")
        .map(|s| s.0.clone())
        .collect();
    assert_eq!(
        esc,
        vec!["2026-02-27T00:00:00+08:00", "2026-02-27T00:00:00+08:00"]
    );
}

#[test]
fn national_day_2026_break() {
    let mut r = Run::new(EngineConfig::contract_default());
    setup(&mut r);
    r.login("2026-09-30T10:00:00+08:00", "m1");
    r.quiz("2026-09-30T10:00:00+08:00", "m1");
    r.until("2026-10-13T00:00:00+08:00");
    let at: Vec<_> = r
        .seen()
        .iter()
        .map(|s| (s.0[..10].to_string(), s.1, s.4.unwrap()))
        .collect();
    // 10-01..10-07 off (10-03, 10-04 weekend), 10-08 Thu, 10-09 Fri, 10-10
    // make-up Saturday, 10-12 Mon.
    assert_eq!(
        at,
        vec![
            ("2026-10-09".into(), "reminder", 1),
            ("2026-10-10".into(), "reminder", 2),
            ("2026-10-11".into(), "reminder", 3),
            ("2026-10-13".into(), "reminder", 4),
        ]
    );
}

#[test]
fn login_after_close_starts_next_working_day() {
    let mut cfg = EngineConfig::contract_default();
    cfg.streaks[0].closes_at = TimeOfDay::parse("20:00").unwrap();
    let mut r = Run::new(cfg);
    setup(&mut r);
    r.login("2026-03-02T21:00:00+08:00", "m1"); // after Monday's close
    r.quiz("2026-03-03T19:59:59+08:00", "m1"); // Tuesday, before close: done
    r.quiz("2026-03-04T20:00:00+08:00", "m1"); // Wednesday, at the close: too late
    r.until("2026-03-05T00:00:00+08:00");
    assert_eq!(
        r.seen(),
        vec![(
            "2026-03-04T20:00:00+08:00".into(),
            "reminder",
            1,
            "member:m1".into(),
            Some(1)
        )]
    );
}

#[test]
fn login_day_counts_when_working() {
    let mut r = Run::new(EngineConfig::contract_default());
    setup(&mut r);
    r.login("2026-03-02T23:00:00+08:00", "m1");
    r.until("2026-03-03T00:00:00+08:00");
    assert_eq!(r.seen().len(), 1, "the login day is missed");
}

#[test]
fn late_events_change_no_decision() {
    let mut r = Run::new(EngineConfig::contract_default());
    setup(&mut r);
    r.login("2026-03-02T09:00:00+08:00", "m1");
    r.until("2026-03-03T12:00:00+08:00"); // Monday closed as missed
    assert_eq!(r.seen().len(), 1);
    // A late quiz for Monday: kept, but the reminder stands and the run too.
    assert_eq!(r.quiz("2026-03-02T10:00:00+08:00", "m1"), Outcome::Late);
    // A late quiz for Tuesday (still open) counts.
    assert_eq!(r.quiz("2026-03-03T08:00:00+08:00", "m1"), Outcome::Late);
    r.until("2026-03-05T00:00:00+08:00");
    let missed: Vec<_> = r.seen().iter().map(|s| s.4.unwrap()).collect();
    assert_eq!(
        missed,
        vec![1, 1],
        "Monday missed, Tuesday done, Wednesday missed"
    );
}

#[test]
fn duplicates_are_ignored_and_do_not_move_the_watermark() {
    let mut r = Run::new(EngineConfig::contract_default());
    setup(&mut r);
    let ev = Event {
        id: c("dup"),
        at: ts("2026-03-02T09:00:00+08:00"),
        body: Body::AppLogin { member: c("m1") },
    };
    assert_eq!(r.apply(ev.clone()), Outcome::Applied);
    let wm = r.engine.watermark();
    let later = Event {
        at: ts("2026-03-09T09:00:00+08:00"),
        ..ev
    };
    assert_eq!(r.apply(later), Outcome::Duplicate);
    assert_eq!(r.engine.watermark(), wm);
    assert!(r.out.is_empty());
}

#[test]
fn cohorts_are_checked_at_each_close() {
    let mut cfg = EngineConfig::contract_default();
    cfg.streaks[0].cohorts = vec!["county".into()];
    let mut r = Run::new(cfg);
    setup(&mut r);
    r.member("2026-03-01T08:00:00+08:00", "m1", "unit", Some("county"));
    r.login("2026-03-02T09:00:00+08:00", "m1");
    r.until("2026-03-04T00:00:00+08:00"); // Mon, Tue missed: 1, 2
    r.member("2026-03-04T08:00:00+08:00", "m1", "unit", Some("section"));
    r.until("2026-03-05T00:00:00+08:00"); // Wed skipped, run stays 2
    r.member("2026-03-05T08:00:00+08:00", "m1", "unit", Some("county"));
    r.until("2026-03-06T00:00:00+08:00"); // Thu missed: 3
    let missed: Vec<_> = r.seen().iter().map(|s| s.4.unwrap()).collect();
    assert_eq!(missed, vec![1, 2, 3]);
}

#[test]
fn removal_stops_tracking_and_return_needs_login() {
    let mut r = Run::new(EngineConfig::contract_default());
    setup(&mut r);
    r.login("2026-03-02T09:00:00+08:00", "m1");
    r.until("2026-03-03T00:00:00+08:00"); // 1
    r.ev(
        "2026-03-03T08:00:00+08:00",
        Body::MemberRemoved { member: c("m1") },
    );
    r.until("2026-03-05T00:00:00+08:00"); // nothing
    r.member("2026-03-05T08:00:00+08:00", "m1", "unit", None);
    r.until("2026-03-06T12:00:00+08:00"); // not logged in again: nothing
    r.login("2026-03-06T12:00:00+08:00", "m1");
    r.until("2026-03-07T00:00:00+08:00"); // new member: run starts at 1
    let missed: Vec<_> = r
        .seen()
        .iter()
        .map(|s| (s.0[..10].to_string(), s.4.unwrap()))
        .collect();
    assert_eq!(
        missed,
        vec![("2026-03-03".into(), 1), ("2026-03-07".into(), 1)]
    );
}

#[test]
fn leader_fallback_and_same_recipient_once_per_step() {
    let mut cfg = EngineConfig::contract_default();
    // One step notifying self and leader: when the member leads the unit and
    // the city has no leader either, `leader` resolves to nobody.
    cfg.streaks[0].steps = vec![StreakStep {
        after: 1,
        every: 0,
        kind: Kind::Escalation,
        notify: vec![
            StreakRole::Member,
            StreakRole::Leader,
            StreakRole::Office(0),
            StreakRole::Office(0),
        ],
    }];
    let mut r = Run::new(cfg);
    r.org("2026-03-01T08:00:00+08:00", "city", None, None);
    r.org(
        "2026-03-01T08:00:00+08:00",
        "unit",
        Some("city"),
        Some("m1"),
    );
    r.member("2026-03-01T08:00:00+08:00", "m1", "unit", None);
    r.member("2026-03-01T08:00:00+08:00", "m2", "unit", None);
    r.login("2026-03-02T09:00:00+08:00", "m1");
    r.login("2026-03-02T09:00:00+08:00", "m2");
    r.until("2026-03-03T00:00:00+08:00");
    let rec: Vec<_> = r.seen().iter().map(|s| s.3.clone()).collect();
    assert_eq!(
        rec,
        vec![
            "member:m1",
            "office:city",
            "member:m2",
            "member:m1",
            "office:city"
        ]
    );
    assert_eq!(r.engine.counters().unresolved_recipients, 1);
}

#[test]
fn notification_ids_are_deterministic() {
    let trace = |r: &mut Run| {
        setup(r);
        r.login("2026-03-02T09:00:00+08:00", "m1");
        r.until("2026-03-10T00:00:00+08:00");
    };
    let mut a = Run::new(EngineConfig::contract_default());
    let mut b = Run::new(EngineConfig::contract_default());
    trace(&mut a);
    trace(&mut b);
    assert_eq!(a.out, b.out);
    let ids: std::collections::HashSet<_> = a.out.iter().map(|r| r.id.clone()).collect();
    assert_eq!(ids.len(), a.out.len());
}

/// The plain model: walk day by day from the login day and apply rules 2.1–2.4
/// to one member with one policy.
fn model(cfg: &EngineConfig, login: Day, done: &[bool], horizon: usize) -> Vec<(Day, u8, u32)> {
    let policy = &cfg.streaks[0];
    let mut missed = 0u32;
    let mut fired = vec![];
    for (k, &done_k) in done.iter().enumerate().take(horizon) {
        let d = Day(login.0 + k as i32);
        if !cfg.calendar.is_working(d) {
            continue;
        }
        if done_k {
            missed = 0;
            continue;
        }
        missed += 1;
        for (i, s) in policy.steps.iter().enumerate() {
            let fires = missed == s.after
                || (s.every > 0 && missed > s.after && (missed - s.after).is_multiple_of(s.every));
            if fires {
                fired.push((d, (i + 1) as u8, missed));
            }
        }
    }
    fired
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn engine_matches_the_plain_model(
        start in 0i32..900,
        done in proptest::collection::vec(any::<bool>(), 60),
        after in 1u32..4,
        every in 0u32..3,
        after2 in 1u32..8,
        every2 in 0u32..4,
    ) {
        let mut cfg = EngineConfig::contract_default();
        cfg.streaks[0].steps = vec![
            StreakStep { after, every, kind: Kind::Reminder, notify: vec![StreakRole::Member] },
            StreakStep { after: after2, every: every2, kind: Kind::Escalation, notify: vec![StreakRole::Member] },
        ];
        let login = Day(Day::parse("2024-01-01").unwrap().0 + start);
        let cfg2 = cfg.clone();
        let mut r = Run::new(cfg);
        let login_at = r.engine.config().zone.local_instant(login, 9 * 60);
        r.member(&r.engine.config().zone.format(login_at), "m1", "unit", None);
        r.login(&r.engine.config().zone.format(login_at), "m1");
        for (k, &d) in done.iter().enumerate() {
            if d {
                let at = r.engine.config().zone.local_instant(Day(login.0 + k as i32), 10 * 60);
                let at = r.engine.config().zone.format(at);
                r.quiz(&at, "m1");
            }
        }
        let end = r.engine.config().zone.local_instant(Day(login.0 + done.len() as i32), 0);
        let end = r.engine.config().zone.format(end);
        r.until(&end);
        let got: Vec<(Day, u8, u32)> = r.out.iter().map(|n| {
            let close = Day::parse(&n.at[..10]).unwrap();
            (Day(close.0 - 1), n.step, n.missed.unwrap())
        }).collect();
        prop_assert_eq!(got, model(&cfg2, login, &done, done.len()));
    }
}
