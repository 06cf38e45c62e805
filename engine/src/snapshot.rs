//! Snapshots of one engine's state: the base of crash recovery.
//!
//! [`Engine::snapshot`] writes everything that decides the engine's future
//! output into a `Vec<u8>`; [`Engine::restore`] rebuilds an engine from those
//! bytes under a config with the same policies. An engine restored from a
//! snapshot taken after events `0..k` and then given events `k..n` emits
//! exactly the notifications (same ids, same order) that an uninterrupted
//! engine emits after `k`, and ends in the same state: its own snapshot has
//! the same bytes. No I/O here: putting the bytes on disk (and the log of
//! events after them) is the durability layer's job.
//!
//! # What is captured
//!
//! The watermark; the counters; the first calendar fallback; the directory
//! (cohort, org and member ids in index order, org and member entries,
//! contacts); per streak policy its next close and every member's state; the
//! tickets (ids in index order, entries, titles), the pending ticket timers in
//! arming order, the stats table; the idempotency table (ids as 128-bit hashes
//! with the watermark they were applied at, oldest first).
//!
//! Not captured, because it is derived: everything computed from the config
//! (schedules, category and activity look-ups, cohort matches) and caches. The
//! timing wheel is rebuilt: each ticket with a pending schedule entry (`next`)
//! is armed at `deadline + offset` of that entry. The pending tickets are
//! re-armed in their original *arming order* rather than in ticket index
//! order, because ties between timers at the same instant fire in arming order
//! (docs/rules.md) and the two orders can differ (two working-day tickets of
//! different policies with the same deadline, whose warnings fired at
//! different times); this costs 4 bytes per pending timer.
//!
//! # Format (version 1)
//!
//! Integers are little-endian; a `varint` is unsigned LEB128 (at most 10
//! bytes); a `str` is a varint length and UTF-8 bytes; an `opt` is a `u8` 0
//! or 1, followed by the value when 1. Days are `i32` days since 1970-01-01,
//! instants `i64` microseconds since the epoch.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `RCLDSNAP` |
//! | 8 | 4 | format version, `u32` ([`VERSION`]) |
//! | 12 | 8 | total length in bytes, trailer included, `u64` |
//! | 20 | 8 | fingerprint of the config's policies, `u64` ([`config_fingerprint`]) |
//! | 28 | … | the sections, in the order below: each a 4-byte tag, a `u64` body length, the body |
//! | len − 8 | 8 | xxh3-64 of every byte before it |
//!
//! | tag | body |
//! |---|---|
//! | `META` | streak policy names (varint n, n × str); SLA policy names (same); watermark (opt `i64`); the eight [`Counters`] in declaration order (`u64` each); first calendar fallback (opt `i32` day) |
//! | `DIRY` | cohort, org and member ids, each as varint n and n × str in index order; per org: `u8` exists, `u32` parent, `u8` level, `u32` leader; per member: `u32` org, `u16` cohort, `u8` state (bits 0–1: 0 unknown, 1 active, 2 removed; bit 2: logged in); org contacts, then member contacts: varint n, then ascending by index: `u32` index, `u8` mask (1 name, 2 sms, 4 push, 8 group), one str per set bit |
//! | `STRK` | varint policy count; per policy: next close (opt `i32` day and `i64` instant), varint n, n × (`u16` tracked from, `u16` last done, `u16` missed) |
//! | `TKTS` | ticket ids (varint n, n × str); per ticket: `i64` opened at, `u32` opened org, `u32` assignee, `u32` month, `u16` policy, `u8` next, `u8` flags, `u8` mask (1 deadline, 2 resolved at, 4 rated at: the instants that differ from their defaults), one `i64` per set bit; titles: varint n, ascending by ticket: `u32` ticket, str |
//! | `TIMR` | varint n, n × `u32` ticket index: the tickets with a pending timer, in arming order |
//! | `STAT` | varint n, ascending by (org, month): `u32` org, `u32` month, the seven counts (`u64` each) |
//! | `DDUP` | varint n, oldest first: zigzag varint of the watermark's difference from the previous entry's (the first from 0), `u128` id hash |
//!
//! Absent indices (no org, parent or leader) are `u32::MAX`, as in memory.
//!
//! # Checks on restore
//!
//! In this order: length, magic, version, total length (a shorter input is
//! [`SnapshotError::Truncated`]), checksum, config fingerprint, then every
//! section's tag, length and structure, every index against the table it
//! points into, the invariants the engine relies on (the default cohort is
//! cohort 0; ids are unique; a pending entry exists in its ticket's schedule
//! and every ticket with one is armed exactly once; the stats count at least
//! what the tickets present account for; counts are below 2^63; days and
//! instants within a year of the engine's range). Arbitrary bytes give an
//! error naming the section and the offset, never a panic, nor an engine that
//! could panic later. The checksum detects damage, not tampering.
//!
//! The fingerprint covers the timezone, the org levels, the offices and the
//! policies, but not the calendar nor the idempotency retention: loading next
//! year's calendar or changing the retention keeps snapshots usable (closes
//! and deadlines already computed stay as they were).
//!
//! # Size
//!
//! Measured (by a unit test of this module) under the contract's
//! default policies plus a second streak policy: about 45 bytes per member
//! with an 8-byte id and a phone number (9 id, 7 entry, 12 the state under two
//! streak policies, 17 contacts), and about 62 bytes per open ticket with an
//! 8-byte id, a short title and a pending timer (9 id, 33 entry, 16 title, 4
//! timer). Orgs take about 20 bytes each plus contacts, stats rows 64 bytes
//! each. The idempotency table adds 17 bytes per remembered event id plus 1
//! to 5 for its time (a delta: 1 byte for ids applied at the same watermark, 4
//! for a minute apart); ids are remembered for the retention (35 days by
//! default), so at high event rates it dominates: plan for
//! `rate × retention × 18` bytes. In memory the
//! same state takes more (the interners' hash tables, the wheel's
//! 32-byte entries, the hash sets of the idempotency table).

use std::collections::HashMap;
use std::sync::Arc;

use xxhash_rust::xxh3::xxh3_64;

use crate::dedup::Dedup;
use crate::directory::{ContactStore, Directory, Member, MemberState, Org, DEFAULT_COHORT, NONE};
use crate::engine::{Counters, Engine};
use crate::intern::Interner;
use crate::policy::{EngineConfig, Kind, SlaDuration, StreakRole, TicketRole};
use crate::streak::StreakState;
use crate::ticket::{StatCounts, Ticket, NO_NEXT, NO_POLICY};
use crate::time::{Day, Ts, MAX_DAY, MICROS_PER_DAY, MIN_DAY};
use crate::timer::Wheel;

/// The first eight bytes of every snapshot.
pub const MAGIC: [u8; 8] = *b"RCLDSNAP";
/// The format version this build writes and reads.
pub const VERSION: u32 = 1;
/// Bytes before the first section.
pub const HEADER_LEN: usize = 28;
/// Bytes of the trailing checksum.
pub const TRAILER_LEN: usize = 8;

/// The sections, in order: tag and name (for error messages).
const SECTIONS: [(&[u8; 4], &str); 7] = [
    (b"META", "meta"),
    (b"DIRY", "directory"),
    (b"STRK", "streaks"),
    (b"TKTS", "tickets"),
    (b"TIMR", "timers"),
    (b"STAT", "stats"),
    (b"DDUP", "dedup"),
];

/// Days accepted for the watermark, next closes and the first fallback: the
/// engine's range with a year of margin on each side.
const DAY_LO: i32 = MIN_DAY.0 - 366;
const DAY_HI: i32 = MAX_DAY.0 + 366;
const TS_LO: i64 = DAY_LO as i64 * MICROS_PER_DAY;
const TS_HI: i64 = DAY_HI as i64 * MICROS_PER_DAY;

/// Why a snapshot was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// Fewer bytes than the header says the snapshot has (a torn write).
    #[error("truncated snapshot: the header says {expected} bytes, got {actual}")]
    Truncated {
        /// Length written in the header (or the header's own length).
        expected: u64,
        /// Bytes given.
        actual: usize,
    },
    /// A section's content ends before its structure does.
    #[error(
        "truncated snapshot: section {section} needs {needed} bytes at offset {offset}, \
         only {available} left in it"
    )]
    TruncatedSection {
        /// Section name.
        section: &'static str,
        /// Offset of the value that does not fit.
        offset: usize,
        /// Bytes it needs.
        needed: u64,
        /// Bytes left in the section.
        available: u64,
    },
    /// Not a snapshot at all.
    #[error("not a snapshot: bad magic \"{}\" at offset 0 (expected \"RCLDSNAP\")", .found.escape_ascii())]
    BadMagic {
        /// The first bytes found.
        found: Vec<u8>,
    },
    /// Written by a format version this build does not read.
    #[error("unsupported snapshot format version {found} at offset 8 (this build reads version {supported})")]
    UnsupportedVersion {
        /// Version in the snapshot.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },
    /// The bytes were damaged.
    #[error(
        "snapshot checksum mismatch: stored {stored:016x} at offset {offset}, \
         computed {computed:016x} over bytes 0..{offset}"
    )]
    Checksum {
        /// Checksum in the trailer.
        stored: u64,
        /// Checksum of the bytes.
        computed: u64,
        /// Offset of the trailer.
        offset: usize,
    },
    /// Taken under a config with other policies (or timezone, levels,
    /// offices): its state cannot be interpreted under this one.
    #[error(
        "snapshot was taken under other policies: its policy fingerprint is {snapshot:016x} \
         ({snapshot_policies}), the config's is {config:016x} ({config_policies}); \
         restore it with the config it was taken under, or start from events"
    )]
    ConfigMismatch {
        /// Fingerprint in the snapshot.
        snapshot: u64,
        /// Fingerprint of the config.
        config: u64,
        /// The snapshot's policy names.
        snapshot_policies: String,
        /// The config's policy names.
        config_policies: String,
    },
    /// An index points outside the table it refers to.
    #[error(
        "invalid index in section {section} at offset {offset}: {what} {index} is not below {len}"
    )]
    InvalidIndex {
        /// Section name.
        section: &'static str,
        /// Offset of the index.
        offset: usize,
        /// What the index is.
        what: &'static str,
        /// The index.
        index: u64,
        /// Length of the table.
        len: u64,
    },
    /// Any other inconsistency.
    #[error("invalid snapshot: section {section} at offset {offset}: {reason}")]
    Invalid {
        /// Section name (`header` for the header).
        section: &'static str,
        /// Offset of the bad value.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
}

type Result<T> = std::result::Result<T, SnapshotError>;

// ----- the config fingerprint -----

/// The fingerprint of everything in a config that a snapshot's state is
/// interpreted by: the timezone, the org levels, the offices, and every streak
/// and SLA policy (in configured order, since state refers to them by index).
///
/// The calendar and the idempotency retention are not part of it: loading the
/// next year's calendar or changing the retention must not invalidate
/// snapshots. (Closes and deadlines already computed stay as they were.)
pub fn config_fingerprint(cfg: &EngineConfig) -> u64 {
    let mut w = Writer::default();
    w.str("redcloud policies v1");
    w.str(cfg.zone.name());
    w.varint(cfg.levels.len() as u64);
    for l in &cfg.levels {
        w.str(l);
    }
    w.varint(cfg.offices.len() as u64);
    for o in &cfg.offices {
        w.str(o);
    }
    let kind = |k: Kind| match k {
        Kind::Reminder => 0u8,
        Kind::Warning => 1,
        Kind::Escalation => 2,
    };
    w.varint(cfg.streaks.len() as u64);
    for p in &cfg.streaks {
        w.str(&p.name);
        w.str(&p.activity);
        w.varint(p.cohorts.len() as u64);
        for c in &p.cohorts {
            w.str(c);
        }
        w.u16(p.closes_at.0);
        w.varint(p.steps.len() as u64);
        for s in &p.steps {
            w.u32(s.after);
            w.u32(s.every);
            w.u8(kind(s.kind));
            w.varint(s.notify.len() as u64);
            for r in &s.notify {
                match *r {
                    StreakRole::Member => w.u32(u32::MAX),
                    StreakRole::Leader => w.u32(u32::MAX - 1),
                    StreakRole::Office(o) => w.u32(u32::from(o)),
                }
            }
        }
    }
    let roles = |w: &mut Writer, roles: &[TicketRole]| {
        w.varint(roles.len() as u64);
        for r in roles {
            match *r {
                TicketRole::AssigneeLeader => w.u32(u32::MAX),
                TicketRole::ParentLeader => w.u32(u32::MAX - 1),
                TicketRole::Office(o) => w.u32(u32::from(o)),
            }
        }
    };
    w.varint(cfg.slas.len() as u64);
    for p in &cfg.slas {
        w.str(&p.name);
        w.varint(p.categories.len() as u64);
        for c in &p.categories {
            w.str(c);
        }
        match p.resolve_within {
            SlaDuration::Calendar(us) => {
                w.u8(0);
                w.i64(us);
            }
            SlaDuration::WorkingDays(n) => {
                w.u8(1);
                w.i64(i64::from(n));
            }
        }
        w.varint(p.warn_before.len() as u64);
        for &x in &p.warn_before {
            w.i64(x);
        }
        roles(&mut w, &p.warn_notify);
        w.varint(p.steps.len() as u64);
        for s in &p.steps {
            w.i64(s.after);
            roles(&mut w, &s.notify);
        }
    }
    xxh3_64(&w.buf)
}

fn policy_names(streaks: &[&str], slas: &[&str]) -> String {
    format!(
        "streaks [{}], slas [{}]",
        streaks.join(", "),
        slas.join(", ")
    )
}

// ----- writing -----

#[derive(Default)]
struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn u128(&mut self, v: u128) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }
    fn str(&mut self, s: &str) {
        self.varint(s.len() as u64);
        self.buf.extend_from_slice(s.as_bytes());
    }
    fn interner(&mut self, i: &Interner) {
        self.varint(i.len() as u64);
        for k in 0..i.len() as u32 {
            self.str(i.get(k));
        }
    }
    /// A contact store: its records are the format's entries, verbatim.
    fn contacts(&mut self, store: &ContactStore) {
        self.varint(store.len() as u64);
        for (k, rec) in store.records() {
            self.u32(k);
            self.buf.extend_from_slice(rec);
        }
    }
    /// Starts a section; returns where its length goes.
    fn begin(&mut self, tag: &[u8; 4]) -> usize {
        self.buf.extend_from_slice(tag);
        let at = self.buf.len();
        self.u64(0);
        at
    }
    /// Ends the section whose length goes at `at`.
    fn end(&mut self, at: usize) {
        let len = (self.buf.len() - at - 8) as u64;
        self.buf[at..at + 8].copy_from_slice(&len.to_le_bytes());
    }
}

impl Engine {
    /// The engine's state as bytes (see the [format](crate::snapshot)): the
    /// same state always gives the same bytes. To be written by the
    /// durability layer and given back to [`Engine::restore`].
    pub fn snapshot(&self) -> Vec<u8> {
        let cfg = &self.cfg;
        let dir = &self.dir;
        let tk = &self.tickets;
        // Generous (the interners' capacities bound their strings): pages of
        // the buffer never written are never touched, whereas growing it
        // copies everything written so far.
        let estimate = 1024
            + dir.cohorts.heap_bytes()
            + dir.org_ids.heap_bytes()
            + dir.member_ids.heap_bytes()
            + tk.ids.heap_bytes()
            + dir.members.len() * (8 + 6 * self.streaks.len())
            + dir.orgs.len() * 16
            + dir.contact_heap_bytes()
            + tk.tickets.len() * 48
            + tk.titles.heap_bytes()
            + tk.stats.len() * 64
            + self.dedup.len() * 28;
        let mut w = Writer {
            buf: Vec::with_capacity(estimate),
        };
        w.buf.extend_from_slice(&MAGIC);
        w.u32(VERSION);
        w.u64(0); // total length, patched below
        w.u64(config_fingerprint(cfg));

        let s = w.begin(SECTIONS[0].0);
        w.varint(cfg.streaks.len() as u64);
        for p in &cfg.streaks {
            w.str(&p.name);
        }
        w.varint(cfg.slas.len() as u64);
        for p in &cfg.slas {
            w.str(&p.name);
        }
        match self.wm {
            Some(t) => {
                w.u8(1);
                w.i64(t.0);
            }
            None => w.u8(0),
        }
        let Counters {
            applied,
            late,
            duplicates,
            ignored,
            unresolved_recipients,
            notifications,
            day_closes,
            calendar_fallbacks,
        } = self.counters;
        for c in [
            applied,
            late,
            duplicates,
            ignored,
            unresolved_recipients,
            notifications,
            day_closes,
            calendar_fallbacks,
        ] {
            w.u64(c);
        }
        match self.first_fallback {
            Some(d) => {
                w.u8(1);
                w.i32(d.0);
            }
            None => w.u8(0),
        }
        w.end(s);

        let s = w.begin(SECTIONS[1].0);
        w.interner(&dir.cohorts);
        w.interner(&dir.org_ids);
        w.interner(&dir.member_ids);
        for o in &dir.orgs {
            w.u8(u8::from(o.exists));
            w.u32(o.parent);
            w.u8(o.level);
            w.u32(o.leader);
        }
        for m in &dir.members {
            w.u32(m.org);
            w.u16(m.cohort);
            let state = match m.state {
                MemberState::Unknown => 0,
                MemberState::Active => 1,
                MemberState::Removed => 2,
            };
            w.u8(state | (u8::from(m.logged_in) << 2));
        }
        w.contacts(&dir.org_contacts);
        w.contacts(&dir.member_contacts);
        w.end(s);

        let s = w.begin(SECTIONS[2].0);
        w.varint(self.streaks.len() as u64);
        for p in &self.streaks {
            match p.next_close {
                Some((d, t)) => {
                    w.u8(1);
                    w.i32(d.0);
                    w.i64(t.0);
                }
                None => w.u8(0),
            }
            w.varint(p.states.len() as u64);
            for st in &p.states {
                w.u16(st.tracked_from);
                w.u16(st.last_done);
                w.u16(st.missed);
            }
        }
        w.end(s);

        let s = w.begin(SECTIONS[3].0);
        w.interner(&tk.ids);
        for t in &tk.tickets {
            w.i64(t.opened_at.0);
            w.u32(t.opened_org);
            w.u32(t.assignee);
            w.u32(t.month);
            w.u16(t.policy);
            w.u8(t.next);
            w.u8(t.flags);
            let opt = [
                (t.deadline, Ts(i64::MAX)),
                (t.resolved_at, Ts(i64::MAX)),
                (t.rated_at, Ts(i64::MIN)),
            ];
            let mask = opt
                .iter()
                .enumerate()
                .fold(0u8, |m, (i, (v, d))| m | (u8::from(v != d) << i));
            w.u8(mask);
            for (v, d) in opt {
                if v != d {
                    w.i64(v.0);
                }
            }
        }
        w.varint(tk.titles.len() as u64);
        for (k, rec) in tk.titles.records() {
            // A title's record is its `str`.
            w.u32(k);
            w.buf.extend_from_slice(rec);
        }
        w.end(s);

        let s = w.begin(SECTIONS[4].0);
        let mut pending: Vec<(u64, u32)> = tk
            .tickets
            .iter()
            .enumerate()
            .filter(|(_, t)| t.next != NO_NEXT)
            .map(|(i, t)| {
                let seq = t.timer.and_then(|id| self.wheel.sequence(id));
                (seq.unwrap_or(u64::MAX), i as u32)
            })
            .collect();
        pending.sort_unstable();
        w.varint(pending.len() as u64);
        for (_, t) in pending {
            w.u32(t);
        }
        w.end(s);

        let s = w.begin(SECTIONS[5].0);
        let mut stats: Vec<(&(u32, u32), &StatCounts)> = tk.stats.iter().collect();
        stats.sort_unstable_by_key(|&(k, _)| *k);
        w.varint(stats.len() as u64);
        for (&(org, month), c) in stats {
            w.u32(org);
            w.u32(month);
            for v in [
                c.opened,
                c.accepted,
                c.replied,
                c.resolved,
                c.resolved_on_time,
                c.rated,
                c.satisfied,
            ] {
                w.u64(v);
            }
        }
        w.end(s);

        let s = w.begin(SECTIONS[6].0);
        w.varint(self.dedup.len() as u64);
        let mut prev = 0i64;
        for (t, key) in self.dedup.entries() {
            let d = t.0.wrapping_sub(prev);
            w.varint(((d << 1) ^ (d >> 63)) as u64);
            prev = t.0;
            w.u128(key);
        }
        w.end(s);

        let total = (w.buf.len() + TRAILER_LEN) as u64;
        w.buf[12..20].copy_from_slice(&total.to_le_bytes());
        let sum = xxh3_64(&w.buf);
        w.u64(sum);
        w.buf
    }

    /// Rebuilds an engine from [`Engine::snapshot`]'s bytes, under `cfg`,
    /// which must have the same policies (see [`config_fingerprint`]).
    ///
    /// Never panics: damaged, truncated, foreign or inconsistent bytes give an
    /// error naming what is wrong and where.
    pub fn restore(
        cfg: Arc<EngineConfig>,
        bytes: &[u8],
    ) -> std::result::Result<Engine, SnapshotError> {
        let total = check_envelope(bytes)?;
        let mut r = Reader {
            buf: &bytes[..total - TRAILER_LEN],
            pos: HEADER_LEN,
            section: "header",
        };
        let mut e = Engine::new(Arc::clone(&cfg));

        // meta
        let mut s = r.section(0)?;
        let snap_fp = u64::from_le_bytes(bytes[20..28].try_into().unwrap_or_default());
        let cfg_fp = config_fingerprint(&cfg);
        let streak_names = s.names()?;
        let sla_names = s.names()?;
        if snap_fp != cfg_fp {
            return Err(SnapshotError::ConfigMismatch {
                snapshot: snap_fp,
                config: cfg_fp,
                snapshot_policies: policy_names(&streak_names, &sla_names),
                config_policies: policy_names(
                    &cfg.streaks
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>(),
                    &cfg.slas.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
                ),
            });
        }
        e.wm = s.opt_ts()?;
        let mut c = [0u64; 8];
        for v in &mut c {
            *v = s.count_value()?;
        }
        e.counters = Counters {
            applied: c[0],
            late: c[1],
            duplicates: c[2],
            ignored: c[3],
            unresolved_recipients: c[4],
            notifications: c[5],
            day_closes: c[6],
            calendar_fallbacks: c[7],
        };
        e.first_fallback = match s.u8()? {
            0 => None,
            1 => Some(s.day()?),
            v => return Err(s.invalid(s.pos - 1, format!("flag byte {v} is neither 0 nor 1"))),
        };
        s.finish()?;

        // directory
        let mut s = r.section(1)?;
        e.dir = read_directory(&mut s)?;
        s.finish()?;

        // streaks
        let mut s = r.section(2)?;
        let at = s.pos;
        let n = s.varint()?;
        if n != cfg.streaks.len() as u64 {
            return Err(s.invalid(
                at,
                format!("{n} streak policies, the config has {}", cfg.streaks.len()),
            ));
        }
        let members = e.dir.members.len();
        for p in &mut e.streaks {
            let at = s.pos;
            p.next_close = match s.u8()? {
                0 => None,
                1 => Some((s.day()?, s.ts()?)),
                v => return Err(s.invalid(at, format!("flag byte {v} is neither 0 nor 1"))),
            };
            if p.next_close.is_some() != e.wm.is_some() {
                return Err(s.invalid(
                    at,
                    "a policy's next close is set if and only if the watermark is".into(),
                ));
            }
            let at = s.pos;
            let n = s.count(6)?;
            if n > members {
                return Err(s.invalid(at, format!("{n} streak states for {members} members")));
            }
            p.states.reserve_exact(n);
            for _ in 0..n {
                p.states.push(StreakState {
                    tracked_from: s.u16()?,
                    last_done: s.u16()?,
                    missed: s.u16()?,
                });
            }
        }
        s.finish()?;

        // tickets
        let mut s = r.section(3)?;
        read_tickets(&mut s, &mut e)?;
        s.finish()?;

        // timers
        let mut s = r.section(4)?;
        e.wheel = Wheel::new(e.wm.unwrap_or(Ts(0)));
        let n = s.count(4)?;
        let pending = e
            .tickets
            .tickets
            .iter()
            .filter(|t| t.next != NO_NEXT)
            .count();
        if n != pending {
            return Err(s.invalid(
                s.pos,
                format!("{n} pending timers, but {pending} tickets have a pending entry"),
            ));
        }
        e.wheel.reserve(n);
        for _ in 0..n {
            let at = s.pos;
            let t = s.index("ticket", e.tickets.tickets.len())?;
            let tk = &mut e.tickets.tickets[t as usize];
            if tk.next == NO_NEXT {
                return Err(s.invalid(at, format!("ticket {t} has no pending entry")));
            }
            if tk.timer.is_some() {
                return Err(s.invalid(at, format!("ticket {t} is armed twice")));
            }
            let entry = &e.tickets.schedules[tk.policy as usize][tk.next as usize];
            tk.timer = Some(e.wheel.insert(tk.deadline.plus(entry.offset), t));
        }
        s.finish()?;

        // stats
        let mut s = r.section(5)?;
        let n = s.count(64)?;
        let orgs = e.dir.orgs.len();
        let mut prev: Option<(u32, u32)> = None;
        e.tickets.stats.reserve(n);
        let mut offsets = HashMap::with_capacity(n);
        for _ in 0..n {
            let at = s.pos;
            let org = s.index("org", orgs)?;
            let month = s.u32()?;
            if prev.is_some_and(|p| p >= (org, month)) {
                return Err(s.invalid(at, "stats rows are not in ascending order".into()));
            }
            prev = Some((org, month));
            offsets.insert((org, month), at);
            let mut v = [0u64; 7];
            for x in &mut v {
                *x = s.count_value()?;
            }
            let c = StatCounts {
                opened: v[0],
                accepted: v[1],
                replied: v[2],
                resolved: v[3],
                resolved_on_time: v[4],
                rated: v[5],
                satisfied: v[6],
            };
            e.tickets.stats.insert((org, month), c);
        }
        check_stats(&s, &e, &offsets)?;
        s.finish()?;

        // dedup
        let mut s = r.section(6)?;
        let start = s.pos;
        e.dedup = Dedup::new(cfg.dedup_retention);
        // In one pass the ids are listed, then indexed all at once; if
        // anything is wrong, a second pass one id at a time reports the
        // first error in order (a repeated id where it repeats).
        let read_all = |s: &mut Reader<'_>, dedup: &mut Dedup| -> Result<()> {
            let n = s.count(17)?;
            dedup.reserve(n);
            let mut prev = 0i64;
            for _ in 0..n {
                let at = s.pos;
                let z = s.varint()?;
                let d = ((z >> 1) as i64) ^ -((z & 1) as i64);
                prev = prev.wrapping_add(d);
                let key = s.u128()?;
                if !dedup.restore_entry(Ts(prev), key) {
                    return Err(s.invalid(at, format!("event id hash {key:032x} appears twice")));
                }
            }
            Ok(())
        };
        let listed = (|| -> Option<()> {
            let n = s.count(17).ok()?;
            e.dedup.reserve(n);
            let mut prev = 0i64;
            for _ in 0..n {
                let z = s.varint().ok()?;
                let d = ((z >> 1) as i64) ^ -((z & 1) as i64);
                prev = prev.wrapping_add(d);
                e.dedup.push_restored(Ts(prev), s.u128().ok()?);
            }
            e.dedup.index_restored().then_some(())
        })();
        if listed.is_none() {
            s.pos = start;
            e.dedup = Dedup::new(cfg.dedup_retention);
            read_all(&mut s, &mut e.dedup)?;
        }
        s.finish()?;

        if r.pos != r.buf.len() {
            return Err(SnapshotError::Invalid {
                section: "trailer",
                offset: r.pos,
                reason: format!(
                    "{} unread bytes after the last section",
                    r.buf.len() - r.pos
                ),
            });
        }
        Ok(e)
    }
}

/// Checks length, magic, version, total length and checksum; returns the
/// total length.
fn check_envelope(bytes: &[u8]) -> Result<usize> {
    let head = &bytes[..bytes.len().min(8)];
    if head != &MAGIC[..head.len()] {
        return Err(SnapshotError::BadMagic {
            found: head.to_vec(),
        });
    }
    if bytes.len() < HEADER_LEN + TRAILER_LEN {
        return Err(SnapshotError::Truncated {
            expected: (HEADER_LEN + TRAILER_LEN) as u64,
            actual: bytes.len(),
        });
    }
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or_default());
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap_or_default());
    if version != VERSION {
        return Err(SnapshotError::UnsupportedVersion {
            found: version,
            supported: VERSION,
        });
    }
    let total = word(12);
    if total < (HEADER_LEN + TRAILER_LEN) as u64 {
        return Err(SnapshotError::Invalid {
            section: "header",
            offset: 12,
            reason: format!("total length {total} is shorter than a header and a trailer"),
        });
    }
    if (bytes.len() as u64) < total {
        return Err(SnapshotError::Truncated {
            expected: total,
            actual: bytes.len(),
        });
    }
    if bytes.len() as u64 > total {
        return Err(SnapshotError::Invalid {
            section: "header",
            offset: total as usize,
            reason: format!(
                "{} bytes after the end of the snapshot (the header says {total} bytes)",
                bytes.len() as u64 - total
            ),
        });
    }
    let total = total as usize;
    let offset = total - TRAILER_LEN;
    let stored = word(offset);
    let computed = xxh3_64(&bytes[..offset]);
    if stored != computed {
        return Err(SnapshotError::Checksum {
            stored,
            computed,
            offset,
        });
    }
    Ok(total)
}

fn read_directory(s: &mut Reader<'_>) -> Result<Directory> {
    let mut d = Directory::default();
    let at = s.pos;
    d.cohorts = s.interner("cohort")?;
    if d.cohorts.is_empty() || d.cohorts.get(0) != DEFAULT_COHORT {
        return Err(s.invalid(
            at,
            format!("the first cohort must be the default cohort `{DEFAULT_COHORT}`"),
        ));
    }
    d.org_ids = s.interner("org")?;
    d.member_ids = s.interner("member")?;
    let (no, nm, nc) = (d.org_ids.len(), d.member_ids.len(), d.cohorts.len());
    s.need(no.saturating_mul(10))?;
    d.orgs.reserve_exact(no);
    for _ in 0..no {
        let exists = s.bool()?;
        let parent = s.opt_index("parent org", no)?;
        let level = s.u8()?;
        let leader = s.opt_index("leader member", nm)?;
        d.orgs.push(Org {
            exists,
            parent,
            level,
            leader,
        });
    }
    s.need(nm.saturating_mul(7))?;
    d.members.reserve_exact(nm);
    for _ in 0..nm {
        let org = s.opt_index("org", no)?;
        let at = s.pos;
        let cohort = s.u16()?;
        if usize::from(cohort) >= nc {
            return Err(s.bad_index(at, "cohort", u64::from(cohort), nc));
        }
        let at = s.pos;
        let b = s.u8()?;
        let state = match b & 3 {
            0 => MemberState::Unknown,
            1 => MemberState::Active,
            2 => MemberState::Removed,
            _ => return Err(s.invalid(at, format!("member state byte {b:#04x}"))),
        };
        if b & !7 != 0 {
            return Err(s.invalid(at, format!("member state byte {b:#04x}")));
        }
        d.members.push(Member {
            org,
            cohort,
            state,
            logged_in: b & 4 != 0,
        });
    }
    d.org_contacts = s.contacts("org", no)?;
    d.member_contacts = s.contacts("member", nm)?;
    Ok(d)
}

fn read_tickets(s: &mut Reader<'_>, e: &mut Engine) -> Result<()> {
    let tk = &mut e.tickets;
    tk.ids = s.interner("ticket")?;
    let n = tk.ids.len();
    let orgs = e.dir.orgs.len();
    s.need(n.saturating_mul(24))?;
    tk.tickets.reserve_exact(n);
    for i in 0..n {
        let opened_at = Ts(s.i64()?);
        let opened_org = s.index("opened org", orgs)?;
        let assignee = s.index("assignee org", orgs)?;
        let month = s.u32()?;
        let at = s.pos;
        let policy = s.u16()?;
        if policy != NO_POLICY && usize::from(policy) >= tk.schedules.len() {
            return Err(s.bad_index(at, "sla policy", u64::from(policy), tk.schedules.len()));
        }
        let at = s.pos;
        let next = s.u8()?;
        if next != NO_NEXT {
            let len = if policy == NO_POLICY {
                0
            } else {
                tk.schedules[policy as usize].len()
            };
            if usize::from(next) >= len {
                return Err(s.bad_index(at, "schedule entry", u64::from(next), len));
            }
        }
        let at = s.pos;
        let flags = s.u8()?;
        if flags >= 64 {
            return Err(s.invalid(at, format!("ticket {i} has unknown flags {flags:#04x}")));
        }
        let at = s.pos;
        let mask = s.u8()?;
        if mask >= 8 {
            return Err(s.invalid(
                at,
                format!("ticket {i} has an unknown field mask {mask:#04x}"),
            ));
        }
        let mut opt = [Ts(i64::MAX), Ts(i64::MAX), Ts(i64::MIN)];
        for (k, v) in opt.iter_mut().enumerate() {
            if mask & (1 << k) != 0 {
                *v = Ts(s.i64()?);
            }
        }
        tk.tickets.push(Ticket {
            opened_at,
            deadline: opt[0],
            timer: None,
            opened_org,
            assignee,
            month,
            policy,
            next,
            flags,
            resolved_at: opt[1],
            rated_at: opt[2],
        });
    }
    let count = s.count(5)?;
    let mut prev: Option<u32> = None;
    if count > 0 {
        // At most the bytes left less the indices, plus padding; what is not
        // used is given back below.
        let left = s.buf.len() - s.pos;
        tk.titles
            .reserve(n, (left - 4 * count).saturating_add(7 * count));
    }
    for _ in 0..count {
        let at = s.pos;
        let t = s.index("ticket", n)?;
        if prev.is_some_and(|p| p >= t) {
            return Err(s.invalid(at, "titles are not in ascending ticket order".into()));
        }
        prev = Some(t);
        let start = s.pos;
        s.text()?;
        tk.titles.push_record(t, &s.buf[start..s.pos]);
    }
    tk.titles.shrink_to_fit();
    Ok(())
}

/// The stats must count at least what the tickets present account for (the
/// engine later adjusts a ticket's own contribution, which must not go below
/// zero; counts of tickets no longer present may remain).
fn check_stats(s: &Reader<'_>, e: &Engine, offsets: &HashMap<(u32, u32), usize>) -> Result<()> {
    use crate::ticket::flags::*;
    let mut own: HashMap<(u32, u32), StatCounts> = HashMap::new();
    for t in &e.tickets.tickets {
        let c = own.entry((t.opened_org, t.month)).or_default();
        let has = |f: u8| u64::from(t.flags & f != 0);
        c.opened += 1;
        c.accepted += has(ACCEPTED);
        c.replied += has(REPLIED);
        c.resolved += has(RESOLVED);
        c.resolved_on_time += u64::from(
            t.flags & RESOLVED != 0 && t.policy != NO_POLICY && t.resolved_at <= t.deadline,
        );
        c.rated += has(RATED);
        c.satisfied += has(RATED) & has(SATISFIED);
    }
    let mut keys: Vec<&(u32, u32)> = own.keys().collect();
    keys.sort_unstable();
    for k in keys {
        let need = own[k];
        let have = e.tickets.stats.get(k).copied().unwrap_or_default();
        let f = |c: &StatCounts| {
            [
                c.opened,
                c.accepted,
                c.replied,
                c.resolved,
                c.resolved_on_time,
                c.rated,
                c.satisfied,
            ]
        };
        if f(&have).iter().zip(f(&need)).any(|(h, n)| *h < n) {
            let at = offsets.get(k).copied().unwrap_or(s.pos);
            return Err(s.invalid(
                at,
                format!(
                    "the counts of org {} month {} are below what its tickets account for",
                    k.0, k.1
                ),
            ));
        }
    }
    Ok(())
}

// ----- reading -----

struct Reader<'a> {
    /// The bytes up to the end of the current section (offsets are absolute).
    buf: &'a [u8],
    pos: usize,
    section: &'static str,
}

impl<'a> Reader<'a> {
    fn invalid(&self, offset: usize, reason: String) -> SnapshotError {
        SnapshotError::Invalid {
            section: self.section,
            offset,
            reason,
        }
    }

    fn bad_index(
        &self,
        offset: usize,
        what: &'static str,
        index: u64,
        len: usize,
    ) -> SnapshotError {
        SnapshotError::InvalidIndex {
            section: self.section,
            offset,
            what,
            index,
            len: len as u64,
        }
    }

    /// Errors unless `n` more bytes are left.
    fn need(&self, n: usize) -> Result<()> {
        let left = self.buf.len() - self.pos;
        if n > left {
            return Err(SnapshotError::TruncatedSection {
                section: self.section,
                offset: self.pos,
                needed: n as u64,
                available: left as u64,
            });
        }
        Ok(())
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        self.need(n)?;
        let b = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(b)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.bytes(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        self.array().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Result<u32> {
        self.array().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Result<u64> {
        self.array().map(u64::from_le_bytes)
    }
    fn i32(&mut self) -> Result<i32> {
        self.array().map(i32::from_le_bytes)
    }
    fn i64(&mut self) -> Result<i64> {
        self.array().map(i64::from_le_bytes)
    }
    fn u128(&mut self) -> Result<u128> {
        self.array().map(u128::from_le_bytes)
    }

    /// A counter: below 2^63, so that the engine's increments cannot
    /// overflow.
    fn count_value(&mut self) -> Result<u64> {
        let at = self.pos;
        let v = self.u64()?;
        if v >= 1 << 63 {
            return Err(self.invalid(at, format!("count {v} is implausibly large")));
        }
        Ok(v)
    }

    fn bool(&mut self) -> Result<bool> {
        let at = self.pos;
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(self.invalid(at, format!("flag byte {v} is neither 0 nor 1"))),
        }
    }

    fn varint(&mut self) -> Result<u64> {
        let at = self.pos;
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.u8()?;
            if i == 9 && b > 1 {
                break;
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.invalid(at, "varint longer than 64 bits".into()))
    }

    /// A count of entries of at least `min` bytes each, checked against the
    /// bytes left (so that no absurd count allocates).
    fn count(&mut self, min: usize) -> Result<usize> {
        let at = self.pos;
        let n = self.varint()?;
        let left = (self.buf.len() - self.pos) as u64;
        let needed = n.saturating_mul(min as u64);
        if needed > left {
            return Err(SnapshotError::TruncatedSection {
                section: self.section,
                offset: at,
                needed,
                available: left,
            });
        }
        Ok(n as usize)
    }

    fn str(&mut self) -> Result<&'a str> {
        let at = self.pos;
        let n = self.varint()?;
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        let b = self.bytes(n)?;
        std::str::from_utf8(b).map_err(|_| self.invalid(at, "string is not valid UTF-8".into()))
    }

    /// The bytes of a `str`, checked to be UTF-8 (the common all-ASCII case
    /// without a call per string).
    fn text(&mut self) -> Result<&'a [u8]> {
        let at = self.pos;
        let n = self.varint()?;
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        let b = self.bytes(n)?;
        if b.is_ascii() || std::str::from_utf8(b).is_ok() {
            Ok(b)
        } else {
            Err(self.invalid(at, "string is not valid UTF-8".into()))
        }
    }

    fn names(&mut self) -> Result<Vec<&'a str>> {
        let n = self.count(1)?;
        (0..n).map(|_| self.str()).collect()
    }

    /// Reads the strings into the interner's arena, then builds its table
    /// in one go ([`Interner::from_parts`]); if two ids are equal, reads
    /// them again one by one to name the first repeat.
    /// Reads the strings into the interner's arena, then builds its table
    /// in one go ([`Interner::from_parts`]). If anything is wrong, reads them
    /// again one by one to report the first error in order (a repeated id
    /// names the first repeat).
    fn interner(&mut self, what: &str) -> Result<Interner> {
        let n = self.count(1)?;
        let start = self.pos;
        if let Some(i) = self.interner_bulk(n) {
            return Ok(i);
        }
        self.pos = start;
        let mut i = Interner::new();
        i.reserve(n, 12);
        let mut total = 0usize;
        for k in 0..n {
            let at = self.pos;
            let s = self.str()?;
            total += s.len();
            if u32::try_from(total).is_err() {
                return Err(self.invalid(at, format!("{what} ids take over 4 GiB")));
            }
            let (j, new) = i.intern(s);
            if !new {
                return Err(self.invalid(at, format!("{what} id {k} repeats id {j}")));
            }
        }
        Ok(i)
    }

    /// The interner of the next `n` strings, or `None` if they cannot be
    /// read, take over 4 GiB or repeat.
    fn interner_bulk(&mut self, n: usize) -> Option<Interner> {
        let mut arena: Vec<u8> = Vec::with_capacity((self.buf.len() - self.pos).min(n * 16));
        let mut ends: Vec<u32> = Vec::with_capacity(n);
        for _ in 0..n {
            arena.extend_from_slice(self.text().ok()?);
            ends.push(u32::try_from(arena.len()).ok()?);
        }
        Interner::from_parts(arena, ends)
    }

    fn index(&mut self, what: &'static str, len: usize) -> Result<u32> {
        let at = self.pos;
        let v = self.u32()?;
        if v as usize >= len {
            return Err(self.bad_index(at, what, u64::from(v), len));
        }
        Ok(v)
    }

    /// An index or [`NONE`].
    fn opt_index(&mut self, what: &'static str, len: usize) -> Result<u32> {
        let at = self.pos;
        let v = self.u32()?;
        if v != NONE && v as usize >= len {
            return Err(self.bad_index(at, what, u64::from(v), len));
        }
        Ok(v)
    }

    fn day(&mut self) -> Result<Day> {
        let at = self.pos;
        let d = self.i32()?;
        if !(DAY_LO..=DAY_HI).contains(&d) {
            return Err(self.invalid(at, format!("day {d} is out of the supported range")));
        }
        Ok(Day(d))
    }

    fn ts(&mut self) -> Result<Ts> {
        let at = self.pos;
        let t = self.i64()?;
        if !(TS_LO..=TS_HI).contains(&t) {
            return Err(self.invalid(at, format!("instant {t} is out of the supported range")));
        }
        Ok(Ts(t))
    }

    fn opt_ts(&mut self) -> Result<Option<Ts>> {
        Ok(if self.bool()? { Some(self.ts()?) } else { None })
    }

    /// A contact store: each entry is checked (index, order, mask, UTF-8)
    /// and its bytes after the index kept as the store's record.
    fn contacts(&mut self, what: &'static str, len: usize) -> Result<ContactStore> {
        let n = self.count(5)?;
        let mut m = ContactStore::default();
        if n > 0 {
            // The records are at most the bytes left less their indices,
            // plus padding; what is not used is given back below.
            let left = self.buf.len() - self.pos;
            m.reserve(len, (left - 4 * n).saturating_add(7 * n));
        }
        let mut prev: Option<u32> = None;
        for _ in 0..n {
            let at = self.pos;
            let k = self.index(what, len)?;
            if prev.is_some_and(|p| p >= k) {
                return Err(self.invalid(at, format!("{what} contacts are not in ascending order")));
            }
            prev = Some(k);
            let start = self.pos;
            let mask = self.u8()?;
            if mask >= 16 {
                return Err(self.invalid(start, format!("contacts mask {mask:#04x}")));
            }
            for i in 0..4 {
                if mask & (1 << i) != 0 {
                    self.text()?;
                }
            }
            m.push_record(k, &self.buf[start..self.pos]);
        }
        m.shrink_to_fit();
        Ok(m)
    }

    /// The body of section `i`, checking its tag; moves past it.
    fn section(&mut self, i: usize) -> Result<Reader<'a>> {
        let (tag, name) = SECTIONS[i];
        self.section = name;
        let at = self.pos;
        let found: [u8; 4] = self.array()?;
        if &found != tag {
            return Err(self.invalid(
                at,
                format!(
                    "expected section tag {}, found \"{}\"",
                    tag.escape_ascii(),
                    found.escape_ascii()
                ),
            ));
        }
        let len = self.u64()?;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        self.need(len)?;
        let body = Reader {
            buf: &self.buf[..self.pos + len],
            pos: self.pos,
            section: name,
        };
        self.pos += len;
        Ok(body)
    }

    /// Errors unless the whole section was read.
    fn finish(&self) -> Result<()> {
        if self.pos != self.buf.len() {
            let n = self.buf.len() - self.pos;
            return Err(self.invalid(
                self.pos,
                format!("{n} unread bytes at the end of the section"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Body, Event};
    use std::borrow::Cow;

    fn ev(id: String, at: Ts, body: Body<'static>) -> Event<'static> {
        Event {
            id: Cow::Owned(id),
            at,
            body,
        }
    }

    /// A synthetic population: `members` members with two streak policies and
    /// small contacts, logged in; `tickets` open tickets with titles. The
    /// idempotency table is kept small (retention 0) and measured apart.
    fn population(members: usize, tickets: usize) -> Engine {
        let mut cfg = EngineConfig::contract_default();
        let mut second = cfg.streaks[0].clone();
        second.name = "worklog".into();
        second.activity = "worklog".into();
        cfg.streaks.push(second);
        cfg.dedup_retention = 0;
        let mut e = Engine::new(Arc::new(cfg));
        let at = Ts::parse_rfc3339("2026-03-02T09:00:00+08:00").unwrap_or_default();
        let mut out = Vec::new();
        let mut n = 0u64;
        let mut apply = |e: &mut Engine, body: Body<'static>| {
            n += 1;
            // One microsecond apart, so that retention 0 forgets older ids.
            e.apply(&ev(format!("e{n}"), at.plus(n as i64), body), &mut out);
        };
        let s = |v: String| Cow::Owned(v);
        for o in 0..100 {
            apply(
                &mut e,
                Body::OrgUpserted {
                    org: s(format!("org{o:04}")),
                    parent: None,
                    level: 0,
                    name: None,
                    leader: Some(s(format!("m{o:07}"))),
                    group: None,
                },
            );
        }
        for m in 0..members {
            apply(
                &mut e,
                Body::MemberUpserted {
                    member: s(format!("m{m:07}")),
                    org: s(format!("org{:04}", m % 100)),
                    name: None,
                    cohort: None,
                    sms: Some(s(format!("13{m:09}"))),
                    push: None,
                },
            );
            apply(
                &mut e,
                Body::AppLogin {
                    member: s(format!("m{m:07}")),
                },
            );
        }
        for t in 0..tickets {
            apply(
                &mut e,
                Body::TicketOpened {
                    ticket: s(format!("t{t:07}")),
                    org: s(format!("org{:04}", t % 100)),
                    category: s("help".into()),
                    title: Some(s(format!("ticket {t}"))),
                },
            );
        }
        e
    }

    #[test]
    fn size_per_member_and_ticket() {
        let base = population(0, 0).snapshot().len();
        let members = population(100_000, 0).snapshot().len() - base;
        let tickets = population(0, 10_000).snapshot().len() - base;
        let per_member = members as f64 / 100_000.0;
        let per_ticket = tickets as f64 / 10_000.0;
        assert!(per_member < 64.0, "{per_member} bytes per member");
        assert!(per_ticket < 128.0, "{per_ticket} bytes per ticket");
        // The module docs quote these figures; keep them honest.
        assert!((43.0..47.0).contains(&per_member), "{per_member}");
        assert!((58.0..66.0).contains(&per_ticket), "{per_ticket}");
    }

    #[test]
    fn varints_round_trip() {
        for v in [0u64, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut w = Writer::default();
            w.varint(v);
            let mut r = Reader {
                buf: &w.buf,
                pos: 0,
                section: "test",
            };
            assert_eq!(r.varint(), Ok(v));
            assert_eq!(r.pos, w.buf.len());
        }
        let long = [0xffu8; 11];
        let mut r = Reader {
            buf: &long,
            pos: 0,
            section: "test",
        };
        assert!(r.varint().is_err());
    }
}
