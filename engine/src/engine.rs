//! The engine of one shard: applies events in event time, closes working days
//! and fires timers, and emits notification intents.
//!
//! Order of work for each applied event at time X (contract section 6): move
//! the watermark to X and fire, in time order, every day close and timer whose
//! instant is at or before it; then apply the event. At equal instants, day
//! closes go before ticket timers and policies fire in configured order; within
//! one close, members fire in the order the shard first saw them.

use std::sync::Arc;

use crate::dedup::Dedup;
use crate::directory::{Contacts, Directory, MemberState, NONE};
use crate::event::{Body, Event};
use crate::notify::{
    notification_id, Envelope, Notification, PolicyRef, Recipient, Rendered, Subject,
};
use crate::policy::{EngineConfig, StreakRole};
use crate::streak::{PolicyState, StreakState, NOT_TRACKED};
use crate::ticket::{self, Ticket, Tickets, NO_NEXT, NO_POLICY};
use crate::time::{Day, DayCache, Ts};
use crate::timer::Wheel;

/// What happened to an event given to [`Engine::apply`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Applied.
    Applied,
    /// Applied, but its `at` is before the watermark: kept for the record, no
    /// decision already made changes.
    Late,
    /// Its id was already applied: acknowledged and ignored.
    Duplicate,
}

/// Counters of one engine, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Events applied (including late ones).
    pub applied: u64,
    /// Late events.
    pub late: u64,
    /// Duplicates ignored.
    pub duplicates: u64,
    /// Events about a member or ticket the engine does not track (e.g. an
    /// activity of a removed member): applied, with no effect.
    pub ignored: u64,
    /// Roles that resolved to nobody (contract 2.5: `unresolved_recipients`).
    pub unresolved_recipients: u64,
    /// Notification intents emitted.
    pub notifications: u64,
    /// Working days closed (per policy).
    pub day_closes: u64,
    /// Day closes and working-day deadlines computed on a date that no loaded
    /// calendar covers (the Monday-to-Friday fallback was used).
    pub calendar_fallbacks: u64,
}

/// One shard's engine.
#[derive(Debug)]
pub struct Engine {
    // Crate-visible for `snapshot` (save and restore); nothing else touches
    // them from outside this module.
    pub(crate) cfg: Arc<EngineConfig>,
    pub(crate) dir: Directory,
    pub(crate) streaks: Vec<PolicyState>,
    /// `(activity, policy indices)`: few activities, a linear scan is fastest.
    activity_policies: Vec<(String, Vec<usize>)>,
    pub(crate) dedup: Dedup,
    pub(crate) wm: Option<Ts>,
    pub(crate) counters: Counters,
    pub(crate) tickets: Tickets,
    pub(crate) wheel: Wheel<u32>,
    fired: Vec<(Ts, u32)>,
    days: DayCache,
    pub(crate) first_fallback: Option<Day>,
}

/// A member's state as the admin API shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MemberView {
    /// Member id.
    pub member: String,
    /// `active`, `removed` or `unknown`.
    pub state: &'static str,
    /// Org id, if any.
    pub org: Option<String>,
    /// Cohort.
    pub cohort: String,
    /// Logged in (enrolled).
    pub enrolled: bool,
    /// Per streak policy.
    pub policies: Vec<MemberPolicyView>,
}

/// A ticket's state as the admin API shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TicketView {
    /// Ticket id.
    pub ticket: String,
    /// `open`, `accepted`, `replied`, `resolved` or `cancelled`.
    pub state: &'static str,
    /// SLA policy, if one covers the category.
    pub policy: Option<String>,
    /// Opening instant.
    pub opened_at: String,
    /// Deadline.
    pub deadline: Option<String>,
    /// Org it was opened at.
    pub opened_org: String,
    /// Current assignee.
    pub assignee: String,
    /// Rated at least once.
    pub rated: bool,
    /// Latest rating.
    pub satisfied: Option<bool>,
    /// Warnings and steps still to fire, in order.
    pub pending: Vec<PendingTimer>,
}

/// A warning or step still to fire.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PendingTimer {
    /// When.
    pub at: String,
    /// `warning` or `escalation`.
    pub kind: &'static str,
    /// Its number.
    pub step: u8,
}

/// A member's state under one streak policy.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MemberPolicyView {
    /// Policy name.
    pub policy: String,
    /// First working day that counts.
    pub tracked_from: Option<String>,
    /// Current missed run.
    pub missed: u32,
    /// Last day with a counted activity.
    pub last_done: Option<String>,
}

impl Engine {
    /// A new, empty engine.
    pub fn new(cfg: Arc<EngineConfig>) -> Engine {
        let mut activity_policies: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, p) in cfg.streaks.iter().enumerate() {
            match activity_policies.iter_mut().find(|(a, _)| *a == p.activity) {
                Some((_, v)) => v.push(i),
                None => activity_policies.push((p.activity.clone(), vec![i])),
            }
        }
        Engine {
            streaks: vec![PolicyState::default(); cfg.streaks.len()],
            dedup: Dedup::new(cfg.dedup_retention),
            dir: Directory::new(),
            activity_policies,
            wm: None,
            counters: Counters::default(),
            tickets: Tickets::new(&cfg.slas),
            wheel: Wheel::new(Ts(0)),
            fired: Vec::new(),
            days: DayCache::default(),
            first_fallback: None,
            cfg,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Arc<EngineConfig> {
        &self.cfg
    }

    /// The directory.
    pub fn directory(&self) -> &Directory {
        &self.dir
    }

    /// The watermark: the largest instant reached so far.
    pub fn watermark(&self) -> Option<Ts> {
        self.wm
    }

    /// Counters.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Reserves room for `n` members (benchmarks, snapshot loading).
    pub fn reserve_members(&mut self, n: usize) {
        self.dir.member_ids.reserve(n, 10);
        self.dir.members.reserve(n);
        for p in &mut self.streaks {
            p.states.reserve(n);
        }
    }

    /// Applies one valid event. Intents that become due (day closes and timers
    /// up to the event's instant) are appended to `out`.
    pub fn apply(&mut self, ev: &Event<'_>, out: &mut Vec<Notification>) -> Outcome {
        let wm = self.wm.map_or(ev.at, |w| w.max(ev.at));
        if !self.dedup.insert(Dedup::key(&ev.id), wm) {
            self.counters.duplicates += 1;
            return Outcome::Duplicate;
        }
        let late = self.wm.is_some_and(|w| ev.at < w);
        self.advance(ev.at, out);
        self.counters.applied += 1;
        if late {
            self.counters.late += 1;
        }
        match &ev.body {
            Body::OrgUpserted {
                org,
                parent,
                level,
                name,
                leader,
                group,
            } => {
                self.dir.upsert_org(
                    org,
                    parent.as_deref(),
                    *level,
                    leader.as_deref(),
                    name.as_deref(),
                    group.as_deref(),
                );
            }
            Body::MemberUpserted {
                member,
                org,
                name,
                cohort,
                sms,
                push,
            } => {
                let contacts = Contacts {
                    name: name.as_deref(),
                    sms: sms.as_deref(),
                    push: push.as_deref(),
                    group: None,
                };
                let (m, fresh) = self
                    .dir
                    .upsert_member(member, org, cohort.as_deref(), contacts);
                if fresh {
                    self.reset_streaks(m);
                }
            }
            Body::MemberRemoved { member } => match self.dir.remove_member(member) {
                Some(m) => self.reset_streaks(m),
                None => self.counters.ignored += 1,
            },
            Body::AppLogin { member } => self.login(member, ev.at),
            Body::ActivityRecorded { member, activity } => self.activity(member, activity, ev.at),
            Body::TicketOpened {
                ticket,
                org,
                category,
                title,
            } => self.open_ticket(ticket, org, category, title.as_deref(), ev.at),
            Body::TicketAccepted { ticket } => self.mark_ticket(ticket, ticket::flags::ACCEPTED),
            Body::TicketReplied { ticket } => self.mark_ticket(ticket, ticket::flags::REPLIED),
            Body::TicketResolved { ticket } => self.close_ticket(ticket, ev.at, true),
            Body::TicketCancelled { ticket } => self.close_ticket(ticket, ev.at, false),
            Body::TicketRated { ticket, satisfied } => self.rate_ticket(ticket, *satisfied, ev.at),
            Body::TicketReassigned { ticket, org } => match self.tickets.ids.find(ticket) {
                Some(t) => {
                    let o = self.dir.org_index(org);
                    self.tickets.tickets[t as usize].assignee = o;
                }
                None => self.counters.ignored += 1,
            },
        }
        if late {
            Outcome::Late
        } else {
            Outcome::Applied
        }
    }

    fn reset_streaks(&mut self, m: u32) {
        for p in &mut self.streaks {
            if (m as usize) < p.states.len() {
                p.states[m as usize] = StreakState::default();
            }
        }
    }

    fn login(&mut self, member: &str, at: Ts) {
        let m = self.dir.member_index(member);
        let e = &mut self.dir.members[m as usize];
        match e.state {
            MemberState::Removed => {
                self.counters.ignored += 1;
                return;
            }
            MemberState::Unknown => {
                // A login before the member's upsert creates them in the default
                // cohort with no org; a later upsert fills them in and keeps the
                // enrolment.
                e.state = MemberState::Active;
            }
            MemberState::Active => {}
        }
        if e.logged_in {
            return;
        }
        e.logged_in = true;
        let cfg = &self.cfg;
        let day = cfg.zone.local_day(at);
        for (p, policy) in self.streaks.iter_mut().zip(&cfg.streaks) {
            let close = cfg.zone.local_instant(day, u32::from(policy.closes_at.0));
            let from = if at < close { day } else { day.succ() };
            p.state_mut(m).tracked_from = from.to_u16();
        }
    }

    fn activity(&mut self, member: &str, activity: &str, at: Ts) {
        let Some(m) = self.dir.member_ids.find(member) else {
            self.counters.ignored += 1;
            return;
        };
        if self.dir.members[m as usize].state != MemberState::Active {
            self.counters.ignored += 1;
            return;
        }
        let Some((_, policies)) = self.activity_policies.iter().find(|(a, _)| a == activity) else {
            return;
        };
        let day = self.days.local_day(&self.cfg.zone, at);
        if !self.cfg.calendar.is_working(day) {
            return;
        }
        for &p in policies {
            let ps = &mut self.streaks[p];
            // Open iff not closed yet: the policy's next close is this day or
            // an earlier one.
            if ps.next_close.is_some_and(|(next, _)| day >= next) {
                ps.state_mut(m).last_done = day.to_u16();
            }
        }
    }

    /// Moves the watermark to `to` (if later) and fires every day close and
    /// timer whose instant is at or before it, in time order.
    pub fn advance(&mut self, to: Ts, out: &mut Vec<Notification>) {
        let Some(wm) = self.wm else {
            for p in 0..self.streaks.len() {
                let first = self.first_close_after(p, to);
                self.streaks[p].next_close = Some(first);
            }
            self.wm = Some(to);
            return;
        };
        if to <= wm {
            return;
        }
        loop {
            let mut best: Option<(Ts, usize)> = None;
            for (p, ps) in self.streaks.iter().enumerate() {
                if let Some((_, c)) = ps.next_close {
                    if c <= to && best.is_none_or(|(b, _)| c < b) {
                        best = Some((c, p));
                    }
                }
            }
            // Timers strictly before the next close (or up to `to`) go first:
            // at equal instants, day closes fire before timers.
            let limit = best.map_or(to, |(c, _)| Ts(c.0 - 1));
            self.fire_timers(limit, out);
            let Some((at, p)) = best else { break };
            let (day, _) = self.streaks[p].next_close.unwrap_or((Day(0), at));
            self.close_day(p, day, at, out);
            let next = self.close_of(
                p,
                self.cfg.calendar.next_working_day_on_or_after(day.succ()),
            );
            self.streaks[p].next_close = Some(next);
        }
        self.wm = Some(to);
    }

    /// Fires every ticket timer at or before `limit`, in time order, arming
    /// each ticket's next schedule entry as its current one fires.
    fn fire_timers(&mut self, limit: Ts, out: &mut Vec<Notification>) {
        // Nothing due: leave the wheel alone, so events that only move the
        // watermark cost an O(1) check here. Every so often (a second of event
        // time) it is moved along anyway, so that new timers are placed in
        // slots near their instants, not all in one far slot.
        if !self.wheel.may_have_due(limit) {
            if limit.0 - self.wheel.now().0 > crate::time::MICROS_PER_SEC {
                self.wheel.advance(limit, &mut self.fired);
            }
            return;
        }
        let mut batch = std::mem::take(&mut self.fired);
        batch.clear();
        self.wheel.advance(limit, &mut batch);
        // Entries re-armed at or before `limit` fire in this same pass, merged
        // in time order with the batch (no event is applied in between, so they
        // need no cancellable wheel slot). Ties: earlier-armed first.
        let mut again: std::collections::BinaryHeap<std::cmp::Reverse<(Ts, u64, u32)>> =
            std::collections::BinaryHeap::new();
        let mut seq = 0u64;
        let mut i = 0;
        let before = out.len();
        loop {
            let from_batch = match (batch.get(i), again.peek()) {
                (Some(&(a, _)), Some(std::cmp::Reverse((b, _, _)))) => a <= *b,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let (at, t) = if from_batch {
                i += 1;
                batch[i - 1]
            } else {
                let std::cmp::Reverse((at, _, t)) = again.pop().unwrap_or_default();
                (at, t)
            };
            let ticket = self.tickets.tickets[t as usize];
            let k = ticket.next as usize;
            self.counters.unresolved_recipients += self.tickets.emit(&self.dir, t, k, at, out);
            match self.tickets.next_entry(&ticket, k + 1, at) {
                Some((k2, at2)) => {
                    self.tickets.tickets[t as usize].next = k2 as u8;
                    if at2 <= limit {
                        seq += 1;
                        again.push(std::cmp::Reverse((at2, seq, t)));
                    } else {
                        self.tickets.tickets[t as usize].timer = Some(self.wheel.insert(at2, t));
                    }
                }
                None => {
                    let tk = &mut self.tickets.tickets[t as usize];
                    tk.next = NO_NEXT;
                    tk.timer = None;
                }
            }
        }
        self.counters.notifications += (out.len() - before) as u64;
        self.fired = batch;
    }

    fn open_ticket(&mut self, id: &str, org: &str, category: &str, title: Option<&str>, at: Ts) {
        let (t, new) = self.tickets.ids.intern(id);
        if !new {
            // The SLA clock started at the first open.
            self.counters.ignored += 1;
            return;
        }
        let o = self.dir.org_index(org);
        let policy = self
            .tickets
            .category_policy
            .get(category)
            .copied()
            .unwrap_or(NO_POLICY);
        let deadline = if policy == NO_POLICY {
            Ts(i64::MAX)
        } else {
            let p = &self.cfg.slas[policy as usize];
            let d = ticket::deadline(p.resolve_within, at, &self.cfg.zone, &self.cfg.calendar);
            if matches!(p.resolve_within, crate::policy::SlaDuration::WorkingDays(_)) {
                let last = self.cfg.zone.local_day(Ts(d.0 - 1));
                if !self.cfg.calendar.is_covered(last) {
                    self.note_fallback(last);
                }
            }
            d
        };
        let mut tk = Ticket {
            opened_at: at,
            deadline,
            timer: None,
            opened_org: o,
            assignee: o,
            month: ticket::month_of(self.days.local_day(&self.cfg.zone, at)),
            policy,
            next: NO_NEXT,
            flags: 0,
            resolved_at: Ts(i64::MAX),
            rated_at: Ts(i64::MIN),
        };
        // Entries whose instant the watermark has reached never fire (a late
        // open), nor do warnings at or before the opening.
        let wm = self.wm.unwrap_or(at).max(at);
        if let Some((k, when)) = self.tickets.next_entry(&tk, 0, wm) {
            tk.next = k as u8;
            tk.timer = Some(self.wheel.insert(when, t));
        }
        if let Some(title) = title {
            self.tickets.titles.set(t, title);
        }
        self.tickets.counts_mut(&tk).opened += 1;
        self.tickets.tickets.push(tk);
    }

    fn ticket_index(&mut self, id: &str) -> Option<u32> {
        let t = self.tickets.ids.find(id);
        if t.is_none() {
            self.counters.ignored += 1;
        }
        t
    }

    fn mark_ticket(&mut self, id: &str, flag: u8) {
        let Some(t) = self.ticket_index(id) else {
            return;
        };
        let mut tk = self.tickets.tickets[t as usize];
        if Tickets::mark(&mut tk, flag) {
            let c = self.tickets.counts_mut(&tk);
            if flag == ticket::flags::ACCEPTED {
                c.accepted += 1;
            } else {
                c.replied += 1;
            }
        }
        self.tickets.tickets[t as usize] = tk;
    }

    fn close_ticket(&mut self, id: &str, at: Ts, resolved: bool) {
        let Some(t) = self.ticket_index(id) else {
            return;
        };
        let mut tk = self.tickets.tickets[t as usize];
        if let Some(timer) = tk.timer.take() {
            self.wheel.cancel(timer);
        }
        tk.next = NO_NEXT;
        let flag = if resolved {
            ticket::flags::RESOLVED
        } else {
            ticket::flags::CANCELLED
        };
        let first = Tickets::mark(&mut tk, flag);
        // In event time the ticket was resolved at its earliest resolve: a
        // late, earlier resolve can make it on time.
        if resolved && (first || at < tk.resolved_at) {
            let on_time = |when: Ts| tk.policy != NO_POLICY && when <= tk.deadline;
            let was_on_time = !first && on_time(tk.resolved_at);
            let now_on_time = on_time(at);
            tk.resolved_at = at;
            let c = self.tickets.counts_mut(&tk);
            if first {
                c.resolved += 1;
            }
            match (was_on_time, now_on_time) {
                (false, true) => c.resolved_on_time += 1,
                (true, false) => c.resolved_on_time -= 1,
                _ => {}
            }
        }
        self.tickets.tickets[t as usize] = tk;
    }

    fn rate_ticket(&mut self, id: &str, satisfied: bool, at: Ts) {
        let Some(t) = self.ticket_index(id) else {
            return;
        };
        let mut tk = self.tickets.tickets[t as usize];
        // Only the latest rating in event time counts: a late, older rating
        // changes nothing (at equal instants the later arrival wins).
        if tk.flags & ticket::flags::RATED != 0 && at < tk.rated_at {
            return;
        }
        tk.rated_at = at;
        let was_rated = !Tickets::mark(&mut tk, ticket::flags::RATED);
        let was_satisfied = tk.flags & ticket::flags::SATISFIED != 0;
        if satisfied {
            tk.flags |= ticket::flags::SATISFIED;
        } else {
            tk.flags &= !ticket::flags::SATISFIED;
        }
        let c = self.tickets.counts_mut(&tk);
        if !was_rated {
            c.rated += 1;
        }
        match (was_satisfied, satisfied) {
            (false, true) => c.satisfied += 1,
            (true, false) => c.satisfied -= 1,
            _ => {}
        }
        self.tickets.tickets[t as usize] = tk;
    }

    /// Ticket stats per org and local month of opening, rolled up to every
    /// ancestor (contract 3.4).
    pub fn stats_rows(&self) -> Vec<ticket::StatsRow> {
        self.tickets.stats_rows(&self.dir)
    }

    /// The tickets of this shard.
    pub fn tickets(&self) -> &Tickets {
        &self.tickets
    }

    /// Pending ticket timers.
    pub fn pending_timers(&self) -> usize {
        self.wheel.len()
    }

    fn close_of(&self, p: usize, day: Day) -> (Day, Ts) {
        let minutes = u32::from(self.cfg.streaks[p].closes_at.0);
        (day, self.cfg.zone.local_instant(day, minutes))
    }

    /// The first working day of policy `p` whose close is after `t`.
    fn first_close_after(&self, p: usize, t: Ts) -> (Day, Ts) {
        let mut day = Day(self.cfg.zone.local_day(t).0 - 1);
        loop {
            day = self.cfg.calendar.next_working_day_on_or_after(day);
            let (d, c) = self.close_of(p, day);
            if c > t {
                return (d, c);
            }
            day = day.succ();
        }
    }

    /// Closes working day `day` of policy `p` at instant `at` (rules 2.3–2.5).
    fn close_day(&mut self, p: usize, day: Day, at: Ts, out: &mut Vec<Notification>) {
        self.counters.day_closes += 1;
        if !self.cfg.calendar.is_covered(day) {
            self.note_fallback(day);
        }
        let policy = &self.cfg.streaks[p];
        let ps = &mut self.streaks[p];
        ps.sync_cohorts(policy, &self.dir);
        let d = day.to_u16();
        let members = &self.dir.members;
        let n = ps.states.len().min(members.len());
        let mut unresolved = 0u64;
        let before = out.len();
        for (m, (s, e)) in ps.states[..n].iter_mut().zip(&members[..n]).enumerate() {
            if s.tracked_from == NOT_TRACKED || s.tracked_from > d {
                continue;
            }
            if e.state != MemberState::Active || !e.logged_in {
                continue;
            }
            if !ps.cohort_match[e.cohort as usize] {
                continue;
            }
            if s.last_done == d {
                s.missed = 0;
                continue;
            }
            s.missed = s.missed.saturating_add(1);
            let missed = u32::from(s.missed);
            for (i, step) in policy.steps.iter().enumerate() {
                if !step.fires_at(missed) {
                    continue;
                }
                let start = out.len();
                for role in &step.notify {
                    let r = match *role {
                        StreakRole::Member => Some(Recipient::Member(m as u32)),
                        StreakRole::Leader => {
                            if e.org == NONE {
                                None
                            } else {
                                self.dir.leader_from(e.org, m as u32).map(Recipient::Member)
                            }
                        }
                        StreakRole::Office(o) => Some(Recipient::Office(o)),
                    };
                    let Some(r) = r else {
                        unresolved += 1;
                        continue;
                    };
                    if out[start..].iter().any(|n| n.recipient == r) {
                        continue;
                    }
                    out.push(Notification {
                        at,
                        policy: PolicyRef::Streak(p as u16),
                        kind: step.kind,
                        step: (i + 1) as u8,
                        subject: Subject::Member(m as u32),
                        recipient: r,
                        org: e.org,
                        missed,
                    });
                }
            }
        }
        self.counters.unresolved_recipients += unresolved;
        self.counters.notifications += (out.len() - before) as u64;
    }

    fn note_fallback(&mut self, day: Day) {
        self.counters.calendar_fallbacks += 1;
        if self.first_fallback.is_none() {
            self.first_fallback = Some(day);
        }
    }

    /// The first date for which the Monday-to-Friday fallback was used, if any
    /// (the calendar data does not cover its year): to be announced loudly.
    pub fn first_calendar_fallback(&self) -> Option<Day> {
        self.first_fallback
    }

    /// The policy name of an intent.
    pub fn policy_name(&self, p: PolicyRef) -> &str {
        match p {
            PolicyRef::Streak(i) => &self.cfg.streaks[i as usize].name,
            PolicyRef::Sla(i) => &self.cfg.slas[i as usize].name,
        }
    }

    /// `member:<id>` / `ticket:<id>`.
    pub fn subject_string(&self, s: Subject) -> String {
        match s {
            Subject::Member(m) => format!("member:{}", self.dir.member_ids.get(m)),
            Subject::Ticket(t) => format!("ticket:{}", self.tickets.ids.get(t)),
        }
    }

    /// `member:<id>` / `office:<id>`.
    pub fn recipient_string(&self, r: Recipient) -> String {
        match r {
            Recipient::Member(m) => format!("member:{}", self.dir.member_ids.get(m)),
            Recipient::Office(o) => format!("office:{}", self.cfg.offices[o as usize]),
        }
    }

    /// The org id of an intent's subject, if any.
    pub fn org_string(&self, n: &Notification) -> Option<&str> {
        (n.org != NONE).then(|| self.dir.org_ids.get(n.org))
    }

    /// The self-contained form of an intent, with its deterministic id.
    pub fn render(&self, n: &Notification) -> Rendered {
        let policy = self.policy_name(n.policy).to_string();
        let subject = self.subject_string(n.subject);
        let recipient = self.recipient_string(n.recipient);
        let id = notification_id(&policy, &subject, n.kind, n.step, &recipient, n.at);
        Rendered {
            id,
            at: self.cfg.zone.format(n.at),
            policy,
            kind: n.kind.as_str(),
            step: n.step,
            subject,
            recipient,
            missed: matches!(n.policy, PolicyRef::Streak(_)).then_some(n.missed),
        }
    }

    /// The notification with the names and addresses a dispatcher needs.
    /// Offices' addresses come from the config, not from the engine.
    pub fn envelope(&self, n: &Notification) -> Envelope {
        let rendered = self.render(n);
        let rc = match n.recipient {
            Recipient::Member(m) => self.dir.member_contacts(m),
            Recipient::Office(_) => None,
        };
        let org = (n.org != NONE).then_some(n.org);
        let oc = org.and_then(|o| self.dir.org_contacts(o));
        let s = |v: Option<&str>| v.map(str::to_string);
        let (subject_name, ticket_title, deadline) = match n.subject {
            Subject::Member(m) => (
                self.dir.member_contacts(m).and_then(|c| s(c.name)),
                None,
                None,
            ),
            Subject::Ticket(t) => {
                let tk = &self.tickets.tickets[t as usize];
                (
                    None,
                    self.tickets.titles.get(t).map(str::to_string),
                    (tk.policy != NO_POLICY).then(|| self.cfg.zone.format(tk.deadline)),
                )
            }
        };
        Envelope {
            notification: rendered.into(),
            recipient_name: rc.and_then(|c| s(c.name)),
            sms: rc.and_then(|c| s(c.sms)),
            push: rc.and_then(|c| s(c.push)),
            org: org.map(|o| self.dir.org_ids.get(o).to_string()),
            org_name: oc.and_then(|c| s(c.name)),
            org_group: oc.and_then(|c| s(c.group)),
            subject_name,
            ticket_title,
            deadline,
        }
    }

    /// Own ticket counts (not rolled up) by org id and month number, for
    /// merging several shards before [`crate::ticket::rollup_ids`].
    pub fn own_stats(&self) -> Vec<((String, u32), ticket::StatCounts)> {
        self.tickets
            .stats
            .iter()
            .map(|(&(o, m), c)| ((self.dir.org_ids.get(o).to_string(), m), *c))
            .collect()
    }

    /// A ticket's state, for the admin API.
    pub fn ticket_view(&self, id: &str) -> Option<TicketView> {
        use ticket::flags::*;
        let t = self.tickets.ids.find(id)?;
        let tk = &self.tickets.tickets[t as usize];
        let state = if tk.flags & RESOLVED != 0 {
            "resolved"
        } else if tk.flags & CANCELLED != 0 {
            "cancelled"
        } else if tk.flags & REPLIED != 0 {
            "replied"
        } else if tk.flags & ACCEPTED != 0 {
            "accepted"
        } else {
            "open"
        };
        let mut pending = Vec::new();
        if tk.next != NO_NEXT && tk.policy != NO_POLICY {
            for e in &self.tickets.schedules[tk.policy as usize][tk.next as usize..] {
                pending.push(PendingTimer {
                    at: self.cfg.zone.format(tk.deadline.plus(e.offset)),
                    kind: e.kind.as_str(),
                    step: e.step,
                });
            }
        }
        Some(TicketView {
            ticket: id.to_string(),
            state,
            policy: (tk.policy != NO_POLICY)
                .then(|| self.cfg.slas[tk.policy as usize].name.clone()),
            opened_at: self.cfg.zone.format(tk.opened_at),
            deadline: (tk.policy != NO_POLICY).then(|| self.cfg.zone.format(tk.deadline)),
            opened_org: self.dir.org_ids.get(tk.opened_org).to_string(),
            assignee: self.dir.org_ids.get(tk.assignee).to_string(),
            rated: tk.flags & RATED != 0,
            satisfied: (tk.flags & RATED != 0).then_some(tk.flags & SATISFIED != 0),
            pending,
        })
    }

    /// A member's state, for the admin API.
    pub fn member_view(&self, id: &str) -> Option<MemberView> {
        let m = self.dir.member_ids.find(id)?;
        let e = self.dir.members[m as usize];
        let day = |v: u16| (v != u16::MAX).then(|| Day::from_u16(v).to_string());
        Some(MemberView {
            member: id.to_string(),
            state: match e.state {
                MemberState::Active => "active",
                MemberState::Removed => "removed",
                MemberState::Unknown => "unknown",
            },
            org: (e.org != NONE).then(|| self.dir.org_ids.get(e.org).to_string()),
            cohort: self.dir.cohorts.get(u32::from(e.cohort)).to_string(),
            enrolled: e.logged_in,
            policies: self
                .cfg
                .streaks
                .iter()
                .zip(&self.streaks)
                .map(|(p, ps)| {
                    let s = ps.state(m);
                    MemberPolicyView {
                        policy: p.name.clone(),
                        tracked_from: day(s.tracked_from),
                        missed: u32::from(s.missed),
                        last_done: day(s.last_done),
                    }
                })
                .collect(),
        })
    }

    /// Heap bytes of tracked member state (directory entries, ids and streak
    /// state; contacts excluded).
    pub fn member_heap_bytes(&self) -> usize {
        self.dir.member_heap_bytes()
            + self
                .streaks
                .iter()
                .map(|p| p.states.capacity() * std::mem::size_of::<StreakState>())
                .sum::<usize>()
    }
}
