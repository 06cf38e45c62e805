//! The deterministic event generator: a case and a seed in, NDJSON events out,
//! in delivery order, streamed.
//!
//! Nothing is stored per member: a member's cohort, enrolment and every day's
//! answer are pure functions of `(seed, member, day)` ([`Generator::answer`]),
//! so a day's answers can be recomputed rather than kept. Each day is emitted in
//! time windows: one scan of the members collects the answers delivered in the
//! window as packed `u64` keys (delivery second, member), sorted, and merged with
//! the ticket events due in that window. A window holds at most
//! `max_buffer` answers (8 bytes each), so the `nation` case streams in a few
//! hundred MiB; smaller cases use one window per day. Ticket lifecycles are
//! drawn when a ticket opens and wait in a heap until due: the heap holds only
//! tickets in flight.
//!
//! Time inside the generator is *local* seconds since the epoch (the day's
//! wall clock); an event's `at` is written with the zone's UTC offset at noon of
//! its local day (exact for zones without DST, such as `Asia/Shanghai`).
//!
//! Late events: a share of answers is delivered after a delay, so the stream is
//! in delivery order and such an answer's `at` lies in the past (possibly in an
//! already-closed day), as with an app that syncs after being offline.
//!
//! What must not live here: the engine, pacing or any I/O.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::Write;
use std::sync::Arc;

use redcloud_engine::policy::EngineConfig;
use redcloud_engine::time::Day;

use crate::case::Case;
use crate::rng::Rng;

/// Seconds in a day.
const DAY: i64 = 86_400;
/// Orgs are upserted at 00:00, members at 00:05, logins from 00:10 to 05:00
/// of the first day; the first day's answers and tickets start at 05:00.
const MEMBERS_AT: i64 = 300;
const LOGIN_FROM: i64 = 600;
const SETUP_END: i64 = 5 * 3600;

const TAG_MEMBER: u64 = 1;
const TAG_ANSWER: u64 = 2;
const TAG_TICKETS: u64 = 3;

/// A batch of NDJSON lines: `buf` holds them back to back, `ends[i]` is the end
/// of line `i` (exclusive, after its `\n`).
#[derive(Clone, Debug, Default)]
pub struct Batch {
    /// The bytes.
    pub buf: Vec<u8>,
    /// End offsets.
    pub ends: Vec<usize>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Empties it, keeping the allocations.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.ends.clear();
    }

    /// Number of lines.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// No lines.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Line `i` without its `\n`.
    pub fn line(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.buf[start..self.ends[i] - 1]
    }

    /// The lines, without their `\n`.
    pub fn lines(&self) -> impl Iterator<Item = &[u8]> + '_ {
        (0..self.len()).map(|i| self.line(i))
    }
}

/// A member's fixed traits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Profile {
    /// Index into the case's cohorts.
    pub cohort: usize,
    /// Rarely answers.
    pub absentee: bool,
    /// Ever logs in.
    pub enrolled: bool,
}

/// One answer: local seconds of its `at` and of its delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    /// `at`, local seconds since the epoch.
    pub at: i64,
    /// Delivery, local seconds since the epoch (`>= at`).
    pub deliver: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TicketKind {
    Opened,
    Accepted,
    Replied,
    Reassigned,
    Resolved,
    Cancelled,
    Rated,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Pending {
    at: i64,
    seq: u64,
    kind: TicketKind,
    day: u32,
    n: u32,
    /// Opened / reassigned: the org; opened: category in the high 32 bits;
    /// rated: 1 when satisfied.
    arg: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Orgs(u64),
    Members(u64),
    Logins(u64),
    Days,
    Done,
}

/// Shape counts of what was generated, for tests and reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    /// `org.upserted`.
    pub orgs: u64,
    /// `member.upserted`.
    pub members: u64,
    /// `app.login`.
    pub logins: u64,
    /// `activity.recorded`.
    pub answers: u64,
    /// Of the answers, delivered late.
    pub late_answers: u64,
    /// `ticket.opened`.
    pub tickets: u64,
    /// Other `ticket.*` events.
    pub ticket_updates: u64,
}

impl Counts {
    /// All events.
    pub fn total(&self) -> u64 {
        self.orgs + self.members + self.logins + self.answers + self.tickets + self.ticket_updates
    }
}

/// Formats `at` values: the `YYYY-MM-DDT` prefix and the offset suffix of the
/// last two local days seen.
#[derive(Debug)]
struct AtFormat {
    cfg: Arc<EngineConfig>,
    cache: [(i64, [u8; 11], [u8; 6]); 2],
    flip: usize,
}

impl AtFormat {
    fn new(cfg: Arc<EngineConfig>) -> AtFormat {
        AtFormat {
            cfg,
            cache: [(i64::MIN, [0; 11], [0; 6]); 2],
            flip: 0,
        }
    }

    fn entry(&mut self, day: i64) -> usize {
        if let Some(i) = self.cache.iter().position(|c| c.0 == day) {
            return i;
        }
        let d = Day(day as i32);
        let noon = self.cfg.zone.local_instant(d, 720);
        let off = self.cfg.zone.offset_secs(noon);
        let mut prefix = [0u8; 11];
        let _ = write!(&mut prefix[..], "{}T", d);
        let mut suffix = [0u8; 6];
        let sign = if off < 0 { '-' } else { '+' };
        let a = off.unsigned_abs();
        let _ = write!(
            &mut suffix[..],
            "{sign}{:02}:{:02}",
            a / 3600,
            (a / 60) % 60
        );
        self.flip ^= 1;
        self.cache[self.flip] = (day, prefix, suffix);
        self.flip
    }

    /// Writes `"YYYY-MM-DDTHH:MM:SS+08:00"` (with quotes) for local seconds `ls`.
    fn write(&mut self, ls: i64, out: &mut Vec<u8>) {
        let day = ls.div_euclid(DAY);
        let s = ls.rem_euclid(DAY) as u32;
        let i = self.entry(day);
        let (_, prefix, suffix) = &self.cache[i];
        out.push(b'"');
        out.extend_from_slice(prefix);
        let two = |out: &mut Vec<u8>, v: u32| {
            out.push(b'0' + (v / 10) as u8);
            out.push(b'0' + (v % 10) as u8);
        };
        two(out, s / 3600);
        out.push(b':');
        two(out, (s / 60) % 60);
        out.push(b':');
        two(out, s % 60);
        out.extend_from_slice(suffix);
        out.push(b'"');
    }
}

/// Appends the decimal digits of `v`.
fn num(out: &mut Vec<u8>, v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    let mut v = v;
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

/// The streaming generator.
#[derive(Debug)]
pub struct Generator {
    case: Arc<Case>,
    cfg: Arc<EngineConfig>,
    seed: u64,
    days: u32,
    max_buffer: usize,
    phase: Phase,
    fmt: AtFormat,
    heap: BinaryHeap<Reverse<Pending>>,
    seq: u64,
    /// Current day (0-based from the case's start).
    day: u32,
    /// Windows of the current day as `[from, to)` day-relative seconds.
    windows: Vec<(i64, i64)>,
    window: usize,
    entries: Vec<u64>,
    pos: usize,
    counts: Counts,
    start_ls: i64,
}

impl Generator {
    /// A generator over `days` days (the case's own when `None`), with the
    /// case's seed unless `seed` is given. `max_buffer` bounds the answers held
    /// at once.
    pub fn new(
        case: Arc<Case>,
        cfg: Arc<EngineConfig>,
        days: Option<u32>,
        seed: Option<u64>,
        max_buffer: usize,
    ) -> Generator {
        let start_ls = i64::from(case.start.0) * DAY;
        Generator {
            seed: seed.unwrap_or(case.raw.seed),
            days: days.unwrap_or(case.raw.days),
            max_buffer: max_buffer.max(16),
            phase: Phase::Orgs(0),
            fmt: AtFormat::new(cfg.clone()),
            heap: BinaryHeap::new(),
            seq: 0,
            day: 0,
            windows: Vec::new(),
            window: 0,
            entries: Vec::new(),
            pos: 0,
            counts: Counts::default(),
            start_ls,
            case,
            cfg,
        }
    }

    /// What was generated so far.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// A member's fixed traits.
    pub fn profile(&self, m: u64) -> Profile {
        let mut r = Rng::keyed(&[self.seed, TAG_MEMBER, m]);
        let cohort = r.pick(&self.case.cohort_cum);
        let c = &self.case.cohorts[cohort].raw;
        let absentee = r.chance(c.absentee_share);
        let enrolled = r.chance(c.login_chance);
        Profile {
            cohort,
            absentee,
            enrolled,
        }
    }

    /// Member `m`'s answer on day `k` (0-based), if any.
    pub fn answer(&self, m: u64, k: u32) -> Option<Answer> {
        let p = self.profile(m);
        if !p.enrolled {
            return None;
        }
        let c = &self.case.cohorts[p.cohort];
        let day = Day(self.case.start.0 + k as i32);
        let chance = if self.cfg.calendar.is_working(day) {
            if p.absentee {
                c.raw.absentee_answer_chance
            } else {
                c.raw.answer_chance
            }
        } else if p.absentee {
            0.0
        } else {
            c.raw.rest_day_chance
        };
        let mut r = Rng::keyed(&[self.seed, TAG_ANSWER, m, u64::from(k)]);
        if !r.chance(chance) {
            return None;
        }
        let hour = r.pick(&c.hourly_cum) as i64;
        let mut secs = hour * 3600 + r.below(3600) as i64;
        if k == 0 {
            secs = secs.max(SETUP_END + (m % 600) as i64);
        }
        let at = self.start_ls + i64::from(k) * DAY + secs;
        let mut deliver = at;
        if c.raw.late_fraction > 0.0 && r.chance(c.raw.late_fraction) {
            let delay = r.lognormal(c.raw.late_median_minutes * 60.0, 1.0);
            deliver += delay.clamp(1.0, 20.0 * 3600.0) as i64;
        }
        Some(Answer { at, deliver })
    }

    /// Appends up to `max` events to `batch`; returns how many (0 at the end).
    pub fn fill(&mut self, batch: &mut Batch, max: usize) -> usize {
        let mut n = 0;
        while n < max && self.next_into(&mut batch.buf) {
            batch.ends.push(batch.buf.len());
            n += 1;
        }
        n
    }

    /// Appends the next event as one line (with `\n`); false at the end.
    pub fn next_into(&mut self, out: &mut Vec<u8>) -> bool {
        loop {
            match self.phase {
                Phase::Orgs(o) => {
                    if o == self.case.orgs() {
                        self.phase = Phase::Members(0);
                        continue;
                    }
                    self.write_org(o, out);
                    self.phase = Phase::Orgs(o + 1);
                    return true;
                }
                Phase::Members(m) => {
                    if m == self.case.members() {
                        self.phase = Phase::Logins(0);
                        continue;
                    }
                    self.write_member(m, out);
                    self.phase = Phase::Members(m + 1);
                    return true;
                }
                Phase::Logins(m) => {
                    if m == self.case.members() {
                        self.phase = Phase::Days;
                        if self.days == 0 {
                            self.phase = Phase::Done;
                        } else {
                            self.prepare_day(0);
                        }
                        continue;
                    }
                    self.phase = Phase::Logins(m + 1);
                    if self.profile(m).enrolled {
                        self.write_login(m, out);
                        return true;
                    }
                }
                Phase::Days => {
                    if self.next_in_day(out) {
                        return true;
                    }
                }
                Phase::Done => return false,
            }
        }
    }

    fn day_ls(&self, k: u32) -> i64 {
        self.start_ls + i64::from(k) * DAY
    }

    fn next_in_day(&mut self, out: &mut Vec<u8>) -> bool {
        loop {
            let base = self.day_ls(self.day);
            let (_, wend) = self.windows[self.window];
            let mem = self.entries.get(self.pos).map(|&e| base + (e >> 33) as i64);
            let tick = self
                .heap
                .peek()
                .map(|Reverse(p)| p.at)
                .filter(|&t| t < base + wend);
            match (mem, tick) {
                (Some(a), Some(b)) if b < a => return self.emit_ticket(out),
                (Some(_), _) => {
                    let e = self.entries[self.pos];
                    self.pos += 1;
                    self.write_answer(e, out);
                    return true;
                }
                (None, Some(_)) => return self.emit_ticket(out),
                (None, None) => {
                    if self.window + 1 < self.windows.len() {
                        self.window += 1;
                        self.fill_window();
                        continue;
                    }
                    if self.day + 1 >= self.days {
                        self.phase = Phase::Done;
                        return false;
                    }
                    self.prepare_day(self.day + 1);
                }
            }
        }
    }

    /// Delivery (day-relative seconds) of member `m`'s answers delivered on day
    /// `k`: from day `k` itself and late ones from day `k - 1`.
    fn deliveries(&self, m: u64, k: u32, mut f: impl FnMut(i64, bool)) {
        let base = self.day_ls(k);
        if k > 0 {
            if let Some(a) = self.answer(m, k - 1) {
                let rel = a.deliver - base;
                if (0..DAY).contains(&rel) {
                    f(rel, true);
                }
            }
        }
        if let Some(a) = self.answer(m, k) {
            let rel = a.deliver - base;
            if rel < DAY {
                f(rel, false);
            }
        }
    }

    fn prepare_day(&mut self, k: u32) {
        self.day = k;
        self.open_tickets(k);
        self.windows.clear();
        // One window when the whole population fits; else split the day by a
        // per-minute histogram of deliveries so each window fits the buffer.
        if (self.case.members() as usize).saturating_mul(2) <= self.max_buffer {
            self.windows.push((0, DAY));
        } else {
            let mut hist = vec![0usize; 1440];
            for m in 0..self.case.members() {
                self.deliveries(m, k, |rel, _| hist[(rel / 60) as usize] += 1);
            }
            let mut from = 0usize;
            let mut acc = 0usize;
            for (minute, &c) in hist.iter().enumerate() {
                if acc > 0 && acc + c > self.max_buffer {
                    self.windows.push((from as i64 * 60, minute as i64 * 60));
                    from = minute;
                    acc = 0;
                }
                acc += c;
            }
            self.windows.push((from as i64 * 60, DAY));
        }
        self.window = 0;
        self.fill_window();
    }

    fn fill_window(&mut self) {
        let (from, to) = self.windows[self.window];
        let k = self.day;
        let mut entries = std::mem::take(&mut self.entries);
        entries.clear();
        for m in 0..self.case.members() {
            self.deliveries(m, k, |rel, prev| {
                if rel >= from && rel < to {
                    entries.push(((rel as u64) << 33) | (u64::from(prev) << 32) | m);
                }
            });
        }
        entries.sort_unstable();
        self.entries = entries;
        self.pos = 0;
    }

    fn push(&mut self, at: i64, kind: TicketKind, day: u32, n: u32, arg: u64) {
        self.seq += 1;
        self.heap.push(Reverse(Pending {
            at,
            seq: self.seq,
            kind,
            day,
            n,
            arg,
        }));
    }

    fn open_tickets(&mut self, k: u32) {
        let case = self.case.clone();
        let t = &case.raw.tickets;
        let day = Day(self.case.start.0 + k as i32);
        // Scale so that a year of 250 working days and 115 rest days gives
        // `per_year` tickets.
        let per_working = t.per_year / (250.0 + 115.0 * t.rest_day_factor);
        let mean = if self.cfg.calendar.is_working(day) {
            per_working
        } else {
            per_working * t.rest_day_factor
        };
        let mut r = Rng::keyed(&[self.seed, TAG_TICKETS, u64::from(k)]);
        let count = r.poisson(mean);
        let base = self.day_ls(k);
        let total_assignees: u64 = case.assignee_ranges.iter().map(|r| r.1).sum();
        let hour = 3600.0;
        for n in 0..count as u32 {
            let mut secs = r.pick(&case.ticket_hourly_cum) as i64 * 3600 + r.below(3600) as i64;
            if k == 0 {
                secs = secs.max(SETUP_END + i64::from(n % 600));
            }
            let open = base + secs;
            let mut pick = r.below(total_assignees);
            let mut org = 0;
            for &(first, c) in &case.assignee_ranges {
                if pick < c {
                    org = first + pick;
                    break;
                }
                pick -= c;
            }
            let category = r.pick(&case.category_cum) as u64;
            self.push(open, TicketKind::Opened, k, n, org | (category << 32));
            if r.chance(t.accept_chance) {
                let d = r.exp(t.accept_mean_hours * hour) as i64;
                self.push(open + 1 + d, TicketKind::Accepted, k, n, 0);
            }
            if r.chance(t.reply_chance) {
                let d = r.exp(t.reply_mean_hours * hour) as i64;
                self.push(open + 2 + d, TicketKind::Replied, k, n, 0);
            }
            if r.chance(t.reassign_chance) {
                let level = case.level_of(org);
                let first = case.level_start[level];
                let other = first + r.below(case.raw.levels[level].count);
                let d = r.below(24 * 3600) as i64;
                self.push(open + 3 + d, TicketKind::Reassigned, k, n, other);
            }
            if r.chance(t.resolve_chance) {
                let d = r.lognormal(t.resolve_median_days * 24.0 * hour, t.resolve_sigma) as i64;
                let resolved = open + 4 + d;
                self.push(resolved, TicketKind::Resolved, k, n, 0);
                if r.chance(t.rate_chance) {
                    let sat = u64::from(r.chance(t.satisfied_chance));
                    let d = r.exp(6.0 * hour) as i64;
                    self.push(resolved + 1 + d, TicketKind::Rated, k, n, sat);
                }
            } else if r.chance(t.cancel_chance) {
                let d = (1.0 + r.f64() * 4.0) * 24.0 * hour;
                self.push(open + d as i64, TicketKind::Cancelled, k, n, 0);
            }
        }
    }

    fn head(&mut self, id_prefix: u8, id: u64, ty: &str, at: i64, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"id\":\"");
        out.push(id_prefix);
        num(out, id);
        out.extend_from_slice(b"\",\"type\":\"");
        out.extend_from_slice(ty.as_bytes());
        out.extend_from_slice(b"\",\"at\":");
        self.fmt.write(at, out);
    }

    fn write_org(&mut self, o: u64, out: &mut Vec<u8>) {
        self.counts.orgs += 1;
        let case = self.case.clone();
        self.head(b'o', o, "org.upserted", self.start_ls, out);
        out.extend_from_slice(b",\"org\":\"o");
        num(out, o);
        out.extend_from_slice(b"\",\"parent\":");
        match case.parent_of(o) {
            Some(p) => {
                out.extend_from_slice(b"\"o");
                num(out, p);
                out.push(b'"');
            }
            None => out.extend_from_slice(b"null"),
        }
        let level = case.level_of(o);
        out.extend_from_slice(b",\"level\":\"");
        out.extend_from_slice(case.level_names[level].as_bytes());
        out.extend_from_slice(b"\",\"leader\":");
        match case.leader_of(o) {
            Some(m) => {
                out.extend_from_slice(b"\"m");
                num(out, m);
                out.push(b'"');
            }
            None => out.extend_from_slice(b"null"),
        }
        if case.raw.contacts && level + 1 == case.level_names.len() {
            out.extend_from_slice(b",\"contacts\":{\"group\":\"robot-o");
            num(out, o);
            out.extend_from_slice(b"\"}");
        }
        out.extend_from_slice(b"}\n");
    }

    fn write_member(&mut self, m: u64, out: &mut Vec<u8>) {
        self.counts.members += 1;
        let p = self.profile(m);
        let case = self.case.clone();
        self.head(b'm', m, "member.upserted", self.start_ls + MEMBERS_AT, out);
        out.extend_from_slice(b",\"member\":\"m");
        num(out, m);
        out.extend_from_slice(b"\",\"org\":\"o");
        num(out, case.org_of(m));
        out.extend_from_slice(b"\",\"cohort\":\"");
        out.extend_from_slice(case.cohorts[p.cohort].raw.name.as_bytes());
        out.push(b'"');
        if case.raw.contacts {
            out.extend_from_slice(b",\"contacts\":{\"sms\":\"+86138");
            let digits = format!("{:08}", m % 100_000_000);
            out.extend_from_slice(digits.as_bytes());
            out.extend_from_slice(b"\",\"push\":\"dev-m");
            num(out, m);
            out.extend_from_slice(b"\"}");
        }
        out.extend_from_slice(b"}\n");
    }

    fn write_login(&mut self, m: u64, out: &mut Vec<u8>) {
        self.counts.logins += 1;
        let span = (SETUP_END - LOGIN_FROM) as u128;
        let at = self.start_ls
            + LOGIN_FROM
            + (u128::from(m) * span / u128::from(self.case.members())) as i64;
        self.head(b'l', m, "app.login", at, out);
        out.extend_from_slice(b",\"member\":\"m");
        num(out, m);
        out.extend_from_slice(b"\"}\n");
    }

    fn write_answer(&mut self, e: u64, out: &mut Vec<u8>) {
        let m = e & 0xffff_ffff;
        let prev = (e >> 32) & 1 == 1;
        let k = if prev { self.day - 1 } else { self.day };
        let Some(a) = self.answer(m, k) else {
            return;
        };
        self.counts.answers += 1;
        if a.deliver != a.at {
            self.counts.late_answers += 1;
        }
        out.extend_from_slice(b"{\"id\":\"a");
        num(out, u64::from(k));
        out.push(b'.');
        num(out, m);
        out.extend_from_slice(b"\",\"type\":\"activity.recorded\",\"at\":");
        self.fmt.write(a.at, out);
        out.extend_from_slice(b",\"member\":\"m");
        num(out, m);
        out.extend_from_slice(b"\",\"activity\":\"quiz\"}\n");
    }

    fn emit_ticket(&mut self, out: &mut Vec<u8>) -> bool {
        let Some(Reverse(p)) = self.heap.pop() else {
            return false;
        };
        let ty = match p.kind {
            TicketKind::Opened => "ticket.opened",
            TicketKind::Accepted => "ticket.accepted",
            TicketKind::Replied => "ticket.replied",
            TicketKind::Reassigned => "ticket.reassigned",
            TicketKind::Resolved => "ticket.resolved",
            TicketKind::Cancelled => "ticket.cancelled",
            TicketKind::Rated => "ticket.rated",
        };
        if p.kind == TicketKind::Opened {
            self.counts.tickets += 1;
        } else {
            self.counts.ticket_updates += 1;
        }
        out.extend_from_slice(b"{\"id\":\"t");
        num(out, u64::from(p.day));
        out.push(b'-');
        num(out, u64::from(p.n));
        out.push(b'.');
        out.extend_from_slice(&ty.as_bytes()[7..10]);
        out.extend_from_slice(b"\",\"type\":\"");
        out.extend_from_slice(ty.as_bytes());
        out.extend_from_slice(b"\",\"at\":");
        self.fmt.write(p.at, out);
        out.extend_from_slice(b",\"ticket\":\"t");
        num(out, u64::from(p.day));
        out.push(b'-');
        num(out, u64::from(p.n));
        out.push(b'"');
        match p.kind {
            TicketKind::Opened => {
                let case = self.case.clone();
                out.extend_from_slice(b",\"org\":\"o");
                num(out, p.arg & 0xffff_ffff);
                out.extend_from_slice(b"\",\"category\":\"");
                let cat = &case.raw.tickets.categories[(p.arg >> 32) as usize].0;
                out.extend_from_slice(cat.as_bytes());
                out.extend_from_slice(b"\",\"title\":\"request t");
                num(out, u64::from(p.day));
                out.push(b'-');
                num(out, u64::from(p.n));
                out.push(b'"');
            }
            TicketKind::Reassigned => {
                out.extend_from_slice(b",\"org\":\"o");
                num(out, p.arg);
                out.push(b'"');
            }
            TicketKind::Rated => {
                out.extend_from_slice(if p.arg == 1 {
                    b",\"satisfied\":true"
                } else {
                    b",\"satisfied\":false"
                });
            }
            _ => {}
        }
        out.extend_from_slice(b"}\n");
        true
    }
}
