//! Tickets: citizens' requests with SLA deadlines, warnings and escalations
//! (contract section 3), and the monthly stats per org (section 3.4).
//!
//! Each open ticket has at most one pending timer in the shard's timing wheel:
//! the next entry of its policy's schedule (warnings before the deadline, then
//! the escalation ladder after it). When it fires, the next entry is armed.
//! Resolving or cancelling a ticket cancels that one timer in O(1).

use std::collections::HashMap;

use crate::calendar::Calendar;
use crate::directory::{Directory, NONE};
use crate::intern::Interner;
use crate::notify::{Notification, PolicyRef, Recipient, Subject};
use crate::policy::{Kind, SlaDuration, SlaPolicy, TicketRole};
use crate::time::{Day, Ts, Zone};
use crate::timer::TimerId;

/// No policy covers the ticket's category.
pub const NO_POLICY: u16 = u16::MAX;
/// No schedule entry is pending.
pub const NO_NEXT: u8 = u8::MAX;

/// One entry of a policy's schedule, relative to the deadline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleEntry {
    /// Microseconds relative to the deadline (negative: a warning).
    pub offset: i64,
    /// Warning or escalation.
    pub kind: Kind,
    /// 1-based number (warnings: place in `warn_before`; steps: in the ladder).
    pub step: u8,
    /// Recipient roles.
    pub notify: Vec<TicketRole>,
}

/// A policy's warnings and steps in firing order.
pub fn schedule_of(p: &SlaPolicy) -> Vec<ScheduleEntry> {
    let mut s: Vec<ScheduleEntry> = p
        .warn_before
        .iter()
        .enumerate()
        .map(|(i, &w)| ScheduleEntry {
            offset: -w,
            kind: Kind::Warning,
            step: (i + 1) as u8,
            notify: p.warn_notify.clone(),
        })
        .chain(p.steps.iter().enumerate().map(|(i, st)| ScheduleEntry {
            offset: st.after,
            kind: Kind::Escalation,
            step: (i + 1) as u8,
            notify: st.notify.clone(),
        }))
        .collect();
    // Stable: equal offsets keep warnings before steps, each in configured order.
    s.sort_by_key(|e| e.offset);
    s
}

/// The deadline of a ticket opened at `opened` (rule 3.1).
pub fn deadline(d: SlaDuration, opened: Ts, zone: &Zone, cal: &Calendar) -> Ts {
    match d {
        SlaDuration::Calendar(micros) => opened.plus(micros),
        SlaDuration::WorkingDays(n) => {
            let day = cal.nth_working_day_after(zone.local_day(opened), n);
            zone.day_start(day.succ())
        }
    }
}

/// A ticket's compact state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket {
    /// When it was opened.
    pub opened_at: Ts,
    /// Its deadline (`Ts(i64::MAX)` when no policy covers it).
    pub deadline: Ts,
    /// The pending timer in the wheel, if any.
    pub timer: Option<TimerId>,
    /// Org it was opened at (stats).
    pub opened_org: u32,
    /// Current assignee org.
    pub assignee: u32,
    /// Local month of opening, `year * 12 + month0`.
    pub month: u32,
    /// SLA policy index or [`NO_POLICY`].
    pub policy: u16,
    /// Index of the pending schedule entry or [`NO_NEXT`].
    pub next: u8,
    /// Lifecycle marks.
    pub flags: u8,
    /// Earliest resolve instant (`Ts(i64::MAX)` until resolved).
    pub resolved_at: Ts,
    /// Instant of the rating that counts (the latest in event time).
    pub rated_at: Ts,
}

/// The seven counts of contract 3.4.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StatCounts {
    /// Tickets opened.
    pub opened: u64,
    /// Accepted at least once.
    pub accepted: u64,
    /// Replied to at least once.
    pub replied: u64,
    /// Resolved.
    pub resolved: u64,
    /// Resolved at or before the deadline.
    pub resolved_on_time: u64,
    /// Rated at least once.
    pub rated: u64,
    /// Latest rating is a thumbs up.
    pub satisfied: u64,
}

impl StatCounts {
    /// Adds another set of counts.
    pub fn add(&mut self, o: &StatCounts) {
        self.opened += o.opened;
        self.accepted += o.accepted;
        self.replied += o.replied;
        self.resolved += o.resolved;
        self.resolved_on_time += o.resolved_on_time;
        self.rated += o.rated;
        self.satisfied += o.satisfied;
    }
}

/// One line of `redcloud replay --stats` and of `GET /v1/stats`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct StatsRow {
    /// Org id.
    pub org: String,
    /// `YYYY-MM`.
    pub month: String,
    /// The counts, flattened.
    #[serde(flatten)]
    pub counts: StatCounts,
    /// accepted / opened.
    pub accept_rate: Option<f64>,
    /// replied / opened.
    pub reply_rate: Option<f64>,
    /// resolved / opened.
    pub resolve_rate: Option<f64>,
    /// satisfied / rated.
    pub satisfaction_rate: Option<f64>,
}

fn ratio(n: u64, d: u64) -> Option<f64> {
    (d > 0).then(|| n as f64 / d as f64)
}

impl StatsRow {
    /// A row with its rates computed.
    pub fn new(org: String, month: String, c: StatCounts) -> StatsRow {
        StatsRow {
            org,
            month,
            accept_rate: ratio(c.accepted, c.opened),
            reply_rate: ratio(c.replied, c.opened),
            resolve_rate: ratio(c.resolved, c.opened),
            satisfaction_rate: ratio(c.satisfied, c.rated),
            counts: c,
        }
    }
}

/// `YYYY-MM` of a month number.
pub fn month_string(m: u32) -> String {
    format!("{:04}-{:02}", m / 12, m % 12 + 1)
}

/// The month number of a local day.
pub fn month_of(d: Day) -> u32 {
    use chrono::Datelike;
    let date = d.date();
    date.year().max(0) as u32 * 12 + date.month0()
}

/// The tickets of one shard.
#[derive(Debug, Default, Clone)]
pub struct Tickets {
    /// Ticket ids.
    pub ids: Interner,
    /// Ticket states by index.
    pub tickets: Vec<Ticket>,
    /// Titles by ticket index (side table).
    pub titles: crate::records::TextStore,
    /// Own counts per `(opened org, month)`, not rolled up.
    pub stats: HashMap<(u32, u32), StatCounts>,
    /// Schedules per SLA policy.
    pub schedules: Vec<Vec<ScheduleEntry>>,
    /// Category → policy index.
    pub category_policy: HashMap<String, u16>,
}

impl Tickets {
    /// Tickets for the given SLA policies.
    pub fn new(slas: &[SlaPolicy]) -> Tickets {
        let mut category_policy = HashMap::new();
        for (i, p) in slas.iter().enumerate() {
            for c in &p.categories {
                category_policy.entry(c.clone()).or_insert(i as u16);
            }
        }
        Tickets {
            schedules: slas.iter().map(schedule_of).collect(),
            category_policy,
            ..Tickets::default()
        }
    }

    /// Counts of a ticket's `(org, month)`.
    pub fn counts_mut(&mut self, t: &Ticket) -> &mut StatCounts {
        self.stats.entry((t.opened_org, t.month)).or_default()
    }

    /// Resolves a role for a ticket whose current assignee is `assignee`.
    pub fn resolve_role(dir: &Directory, role: TicketRole, assignee: u32) -> Option<Recipient> {
        match role {
            TicketRole::AssigneeLeader => dir.leader_from(assignee, NONE).map(Recipient::Member),
            TicketRole::ParentLeader => dir
                .parent_of(assignee)
                .and_then(|p| dir.leader_from(p, NONE))
                .map(Recipient::Member),
            TicketRole::Office(o) => Some(Recipient::Office(o)),
        }
    }

    /// Emits the notifications of schedule entry `k` of ticket `t` at `at`;
    /// returns the number of roles that resolved to nobody.
    pub fn emit(
        &self,
        dir: &Directory,
        t: u32,
        k: usize,
        at: Ts,
        out: &mut Vec<Notification>,
    ) -> u64 {
        let ticket = &self.tickets[t as usize];
        let entry = &self.schedules[ticket.policy as usize][k];
        let start = out.len();
        let mut unresolved = 0;
        for &role in &entry.notify {
            let Some(r) = Self::resolve_role(dir, role, ticket.assignee) else {
                unresolved += 1;
                continue;
            };
            if out[start..].iter().any(|n| n.recipient == r) {
                continue;
            }
            out.push(Notification {
                at,
                policy: PolicyRef::Sla(ticket.policy),
                kind: entry.kind,
                step: entry.step,
                subject: Subject::Ticket(t),
                recipient: r,
                org: ticket.assignee,
                missed: 0,
            });
        }
        unresolved
    }

    /// The first schedule entry of ticket `t` at or after index `from` whose
    /// instant is after `after`, with that instant.
    pub fn next_entry(&self, t: &Ticket, from: usize, after: Ts) -> Option<(usize, Ts)> {
        if t.policy == NO_POLICY {
            return None;
        }
        self.schedules[t.policy as usize]
            .iter()
            .enumerate()
            .skip(from)
            .map(|(k, e)| (k, t.deadline.plus(e.offset)))
            .find(|&(_, at)| at > after)
    }

    /// Marks a flag; true if it was not set before.
    pub fn mark(t: &mut Ticket, flag: u8) -> bool {
        let new = t.flags & flag == 0;
        t.flags |= flag;
        new
    }

    /// Stats rows rolled up to every ancestor org, sorted by org id then month.
    pub fn stats_rows(&self, dir: &Directory) -> Vec<StatsRow> {
        rollup(self.stats.iter().map(|(&k, v)| (k, *v)), dir)
    }
}

/// Rolls own counts per `(org, month)` up to every ancestor and renders the
/// rows, sorted by org id then month. Several shards' counts may be chained.
pub fn rollup(
    own: impl Iterator<Item = ((u32, u32), StatCounts)>,
    dir: &Directory,
) -> Vec<StatsRow> {
    let mut acc: HashMap<(u32, u32), StatCounts> = HashMap::new();
    for ((org, month), c) in own {
        for a in dir.ancestry(org) {
            acc.entry((a, month)).or_default().add(&c);
        }
    }
    let mut rows: Vec<StatsRow> = acc
        .into_iter()
        .map(|((o, m), c)| StatsRow::new(dir.org_ids.get(o).to_string(), month_string(m), c))
        .collect();
    rows.sort_by(|a, b| (&a.org, &a.month).cmp(&(&b.org, &b.month)));
    rows
}

/// Like [`rollup`], for own counts keyed by org id (several shards' counts
/// merged); orgs unknown to `dir` count for themselves only.
pub fn rollup_ids(
    own: impl Iterator<Item = ((String, u32), StatCounts)>,
    dir: &Directory,
) -> Vec<StatsRow> {
    let mut acc: HashMap<(String, u32), StatCounts> = HashMap::new();
    for ((org, month), c) in own {
        match dir.org_ids.find(&org) {
            Some(o) => {
                for a in dir.ancestry(o) {
                    let id = dir.org_ids.get(a).to_string();
                    acc.entry((id, month)).or_default().add(&c);
                }
            }
            None => acc.entry((org, month)).or_default().add(&c),
        }
    }
    let mut rows: Vec<StatsRow> = acc
        .into_iter()
        .map(|((o, m), c)| StatsRow::new(o, month_string(m), c))
        .collect();
    rows.sort_by(|a, b| (&a.org, &a.month).cmp(&(&b.org, &b.month)));
    rows
}

/// Lifecycle marks of [`Ticket::flags`].
pub mod flags {
    /// Accepted.
    pub const ACCEPTED: u8 = 1;
    /// Replied to.
    pub const REPLIED: u8 = 2;
    /// Resolved.
    pub const RESOLVED: u8 = 4;
    /// Cancelled.
    pub const CANCELLED: u8 = 8;
    /// Rated at least once.
    pub const RATED: u8 = 16;
    /// Latest rating is a thumbs up.
    pub const SATISFIED: u8 = 32;
}
