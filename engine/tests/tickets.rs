//! Ticket SLA rules (contract section 3 and 6) and stats roll-up on
//! hand-written traces.

mod common;

use common::{c, Run};
use redcloud_engine::event::Body;
use redcloud_engine::policy::{EngineConfig, SlaDuration};
use redcloud_engine::Outcome;

fn tree(r: &mut Run) {
    let at = "2026-09-01T08:00:00+08:00";
    r.org(at, "county", None, Some("chief"));
    r.org(at, "town", Some("county"), None);
    r.org(at, "village", Some("town"), Some("vl"));
    r.org(at, "town2", Some("county"), Some("t2l"));
    r.org(at, "village2", Some("town2"), None);
}

/// Default policy, no streaks, so that only ticket notifications show.
fn cfg() -> EngineConfig {
    let mut c = EngineConfig::contract_default();
    c.streaks.clear();
    c
}

fn seen(r: &Run) -> Vec<(String, String, &'static str, u8, String)> {
    r.out
        .iter()
        .map(|n| {
            (
                n.at.clone(),
                n.subject.clone(),
                n.kind,
                n.step,
                n.recipient.clone(),
            )
        })
        .collect()
}

fn row(
    at: &str,
    t: &str,
    kind: &'static str,
    step: u8,
    to: &str,
) -> (String, String, &'static str, u8, String) {
    (at.into(), format!("ticket:{t}"), kind, step, to.into())
}

#[test]
fn calendar_deadline_warns_then_climbs_the_ladder() {
    let mut r = Run::new(cfg());
    tree(&mut r);
    r.open("2026-09-28T10:00:00+08:00", "T1", "village", "help");
    r.until("2026-10-20T00:00:00+08:00");
    assert_eq!(
        seen(&r),
        vec![
            row("2026-10-06T10:00:00+08:00", "T1", "warning", 1, "member:vl"),
            row(
                "2026-10-08T10:00:00+08:00",
                "T1",
                "escalation",
                1,
                "member:vl"
            ),
            // town has no leader: parent_leader climbs to the county.
            row(
                "2026-10-10T10:00:00+08:00",
                "T1",
                "escalation",
                2,
                "member:chief"
            ),
            row(
                "2026-10-13T10:00:00+08:00",
                "T1",
                "escalation",
                3,
                "office:county"
            ),
        ]
    );
    assert_eq!(r.out[0].policy, "tickets");
    assert_eq!(r.out[0].missed, None);
}

#[test]
fn working_day_deadline_skips_national_day() {
    let mut c = cfg();
    c.slas[0].resolve_within = SlaDuration::WorkingDays(10);
    let mut r = Run::new(c);
    tree(&mut r);
    // Monday 09-28: working days after it are 09-29, 09-30, (10-01..10-07 off),
    // 10-08, 10-09, 10-10 (make-up Saturday), 10-12 .. 10-16: the 10th is
    // 10-16, so the deadline is its close, 10-17 00:00.
    r.open("2026-09-28T10:00:00+08:00", "T1", "village", "wish");
    r.until("2026-10-30T00:00:00+08:00");
    assert_eq!(
        seen(&r),
        vec![
            row("2026-10-15T00:00:00+08:00", "T1", "warning", 1, "member:vl"),
            row(
                "2026-10-17T00:00:00+08:00",
                "T1",
                "escalation",
                1,
                "member:vl"
            ),
            row(
                "2026-10-19T00:00:00+08:00",
                "T1",
                "escalation",
                2,
                "member:chief"
            ),
            row(
                "2026-10-22T00:00:00+08:00",
                "T1",
                "escalation",
                3,
                "office:county"
            ),
        ]
    );
    let view = r.engine.ticket_view("T1").unwrap();
    assert_eq!(view.deadline.as_deref(), Some("2026-10-17T00:00:00+08:00"));
}

#[test]
fn resolve_and_cancel_stop_everything_pending() {
    let mut r = Run::new(cfg());
    tree(&mut r);
    r.open("2026-09-28T10:00:00+08:00", "T1", "village", "help");
    r.open("2026-09-28T10:00:00+08:00", "T2", "village", "help");
    // Resolved exactly at step 1's instant: the step fires first (it is due at
    // or before the event), then nothing more.
    r.ticket(
        "2026-10-07T09:00:00+08:00",
        Body::TicketCancelled { ticket: c("T2") },
    );
    r.ticket(
        "2026-10-08T10:00:00+08:00",
        Body::TicketResolved { ticket: c("T1") },
    );
    r.until("2026-10-20T00:00:00+08:00");
    assert_eq!(
        seen(&r),
        vec![
            row("2026-10-06T10:00:00+08:00", "T1", "warning", 1, "member:vl"),
            row("2026-10-06T10:00:00+08:00", "T2", "warning", 1, "member:vl"),
            row(
                "2026-10-08T10:00:00+08:00",
                "T1",
                "escalation",
                1,
                "member:vl"
            ),
        ]
    );
    assert_eq!(r.engine.pending_timers(), 0);
    assert_eq!(r.engine.ticket_view("T2").unwrap().state, "cancelled");
}

#[test]
fn reassignment_moves_recipients_not_the_deadline() {
    let mut r = Run::new(cfg());
    tree(&mut r);
    r.open("2026-09-28T10:00:00+08:00", "T1", "village", "help");
    r.ticket(
        "2026-10-07T09:00:00+08:00",
        Body::TicketReassigned {
            ticket: c("T1"),
            org: c("village2"),
        },
    );
    r.until("2026-10-20T00:00:00+08:00");
    assert_eq!(
        seen(&r),
        vec![
            row("2026-10-06T10:00:00+08:00", "T1", "warning", 1, "member:vl"),
            // village2 has no leader: assignee_leader climbs to town2's.
            row(
                "2026-10-08T10:00:00+08:00",
                "T1",
                "escalation",
                1,
                "member:t2l"
            ),
            row(
                "2026-10-10T10:00:00+08:00",
                "T1",
                "escalation",
                2,
                "member:t2l"
            ),
            row(
                "2026-10-13T10:00:00+08:00",
                "T1",
                "escalation",
                3,
                "office:county"
            ),
        ]
    );
}

#[test]
fn late_open_never_fires_what_the_watermark_passed() {
    let mut r = Run::new(cfg());
    tree(&mut r);
    r.org("2026-10-07T12:00:00+08:00", "other", None, None);
    // Opened 09-28 but applied when the watermark is 10-07 12:00: the warning
    // (10-06 10:00) never fires; the steps do.
    assert_eq!(
        r.open("2026-09-28T10:00:00+08:00", "T1", "village", "help"),
        Outcome::Late
    );
    r.until("2026-10-20T00:00:00+08:00");
    let kinds: Vec<_> = seen(&r).into_iter().map(|s| (s.2, s.3)).collect();
    assert_eq!(
        kinds,
        vec![("escalation", 1), ("escalation", 2), ("escalation", 3)]
    );
}

#[test]
fn warnings_at_or_before_opening_never_fire() {
    let mut c = cfg();
    c.slas[0].resolve_within = SlaDuration::Calendar(36 * 3_600_000_000);
    c.slas[0].warn_before = vec![48 * 3_600_000_000, 12 * 3_600_000_000];
    let mut r = Run::new(c);
    tree(&mut r);
    r.open("2026-09-28T10:00:00+08:00", "T1", "village", "help");
    r.until("2026-09-30T00:00:00+08:00");
    // Deadline 09-29 22:00; the 48 h warning would be before opening; the 12 h
    // one is warning number 2.
    assert_eq!(
        seen(&r),
        vec![
            row("2026-09-29T10:00:00+08:00", "T1", "warning", 2, "member:vl"),
            row(
                "2026-09-29T22:00:00+08:00",
                "T1",
                "escalation",
                1,
                "member:vl"
            ),
        ]
    );
}

#[test]
fn uncovered_category_gets_no_timers_and_is_never_on_time() {
    let mut r = Run::new(cfg());
    tree(&mut r);
    r.open(
        "2026-09-28T10:00:00+08:00",
        "T1",
        "village",
        "poverty-project",
    );
    r.ticket(
        "2026-09-28T11:00:00+08:00",
        Body::TicketResolved { ticket: c("T1") },
    );
    r.until("2026-10-20T00:00:00+08:00");
    assert!(r.out.is_empty());
    let rows = r.engine.stats_rows();
    let village = rows.iter().find(|x| x.org == "village").unwrap();
    assert_eq!(village.counts.resolved, 1);
    assert_eq!(village.counts.resolved_on_time, 0);
}

#[test]
fn stats_roll_up_to_every_ancestor() {
    let mut r = Run::new(cfg());
    tree(&mut r);
    r.open("2026-09-28T10:00:00+08:00", "A", "village", "help");
    r.open("2026-09-28T11:00:00+08:00", "B", "village", "wish");
    r.open("2026-09-29T10:00:00+08:00", "C", "town", "help");
    r.open("2026-09-30T23:30:00+08:00", "D", "village2", "help");
    // 2026-09-30T16:30Z is 10-01 00:30 local: October.
    r.open("2026-09-30T16:30:00Z", "E", "village", "help");
    // A: accepted twice, replied, resolved on time, rated down then up.
    for _ in 0..2 {
        r.ticket(
            "2026-09-29T09:00:00+08:00",
            Body::TicketAccepted { ticket: c("A") },
        );
    }
    r.ticket(
        "2026-09-29T09:30:00+08:00",
        Body::TicketReplied { ticket: c("A") },
    );
    r.ticket(
        "2026-09-30T09:00:00+08:00",
        Body::TicketResolved { ticket: c("A") },
    );
    r.ticket(
        "2026-09-30T10:00:00+08:00",
        Body::TicketRated {
            ticket: c("A"),
            satisfied: false,
        },
    );
    r.ticket(
        "2026-09-30T11:00:00+08:00",
        Body::TicketRated {
            ticket: c("A"),
            satisfied: true,
        },
    );
    // B: reassigned to town2 (stats stay with village), resolved late, rated down.
    r.ticket(
        "2026-10-01T09:00:00+08:00",
        Body::TicketReassigned {
            ticket: c("B"),
            org: c("town2"),
        },
    );
    r.ticket(
        "2026-10-09T09:00:00+08:00",
        Body::TicketResolved { ticket: c("B") },
    );
    r.ticket(
        "2026-10-09T10:00:00+08:00",
        Body::TicketRated {
            ticket: c("B"),
            satisfied: false,
        },
    );
    // C: accepted only.
    r.ticket(
        "2026-10-09T11:00:00+08:00",
        Body::TicketAccepted { ticket: c("C") },
    );
    let rows = r.engine.stats_rows();
    let get = |org: &str, month: &str| {
        rows.iter()
            .find(|x| x.org == org && x.month == month)
            .unwrap_or_else(|| panic!("no row {org} {month}"))
            .clone()
    };
    let v = get("village", "2026-09");
    assert_eq!(
        (
            v.counts.opened,
            v.counts.accepted,
            v.counts.replied,
            v.counts.resolved
        ),
        (2, 1, 1, 2)
    );
    assert_eq!(
        (
            v.counts.resolved_on_time,
            v.counts.rated,
            v.counts.satisfied
        ),
        (1, 2, 1)
    );
    assert_eq!(v.accept_rate, Some(0.5));
    assert_eq!(v.satisfaction_rate, Some(0.5));
    let t = get("town", "2026-09");
    assert_eq!((t.counts.opened, t.counts.accepted), (3, 2));
    let county = get("county", "2026-09");
    assert_eq!(county.counts.opened, 4);
    assert_eq!(county.counts.resolved, 2);
    let t2 = get("town2", "2026-09");
    assert_eq!(t2.counts.opened, 1);
    assert_eq!(t2.satisfaction_rate, None);
    let oct = get("county", "2026-10");
    assert_eq!(oct.counts.opened, 1);
    assert_eq!(oct.reply_rate, Some(0.0));
    assert!(rows
        .iter()
        .all(|x| x.org != "town2" || x.month != "2026-10"));
    // Rows are sorted by org then month.
    let keys: Vec<_> = rows
        .iter()
        .map(|x| (x.org.clone(), x.month.clone()))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
}

#[test]
fn a_second_open_of_the_same_ticket_is_ignored() {
    let mut r = Run::new(cfg());
    tree(&mut r);
    r.open("2026-09-28T10:00:00+08:00", "T1", "village", "help");
    r.open("2026-09-29T10:00:00+08:00", "T1", "town2", "help");
    r.until("2026-10-07T00:00:00+08:00");
    assert_eq!(r.out.len(), 1);
    assert_eq!(r.out[0].at, "2026-10-06T10:00:00+08:00");
    assert_eq!(r.engine.counters().ignored, 1);
}

#[test]
fn timers_fire_in_time_order_across_tickets_and_long_gaps() {
    let mut r = Run::new(cfg());
    tree(&mut r);
    for (i, h) in [15, 9, 12, 9].iter().enumerate() {
        r.open(
            &format!("2026-11-02T{h:02}:00:00+08:00"),
            &format!("T{i}"),
            "village",
            "help",
        );
    }
    // One advance over all of it: every ticket's four entries, in time order,
    // equal instants in the order the tickets were armed.
    r.until("2027-01-01T00:00:00+08:00");
    assert_eq!(r.out.len(), 16);
    let ats: Vec<_> = r.out.iter().map(|n| n.at.clone()).collect();
    let mut sorted = ats.clone();
    sorted.sort();
    assert_eq!(ats, sorted);
    let first: Vec<_> = r.out[..4].iter().map(|n| n.subject.as_str()).collect();
    assert_eq!(
        first,
        vec!["ticket:T1", "ticket:T3", "ticket:T2", "ticket:T0"]
    );
}

#[test]
fn the_latest_rating_and_the_earliest_resolve_count_in_event_time() {
    let mut r = Run::new(cfg());
    tree(&mut r);
    r.open("2026-03-02T10:00:00+08:00", "T1", "village", "wish");
    // Deadline 03-12 10:00. Resolved late at 12:00, then an earlier resolve at
    // 09:00 arrives: in event time the ticket was resolved on time.
    r.ticket(
        "2026-03-12T12:00:00+08:00",
        Body::TicketResolved { ticket: c("T1") },
    );
    r.ticket(
        "2026-03-12T09:00:00+08:00",
        Body::TicketResolved { ticket: c("T1") },
    );
    // A thumbs up at 13:00, then an older thumbs down arrives late: the
    // latest rating in event time (up) counts.
    r.ticket(
        "2026-03-13T13:00:00+08:00",
        Body::TicketRated {
            ticket: c("T1"),
            satisfied: true,
        },
    );
    r.ticket(
        "2026-03-13T12:00:00+08:00",
        Body::TicketRated {
            ticket: c("T1"),
            satisfied: false,
        },
    );
    let rows = r.engine.stats_rows();
    let v = rows.iter().find(|x| x.org == "village").unwrap();
    assert_eq!(v.counts.resolved, 1);
    assert_eq!(v.counts.resolved_on_time, 1);
    assert_eq!((v.counts.rated, v.counts.satisfied), (1, 1));
    // A later thumbs down replaces it.
    r.ticket(
        "2026-03-14T12:00:00+08:00",
        Body::TicketRated {
            ticket: c("T1"),
            satisfied: false,
        },
    );
    let rows = r.engine.stats_rows();
    let v = rows.iter().find(|x| x.org == "village").unwrap();
    assert_eq!((v.counts.rated, v.counts.satisfied), (1, 0));
}
