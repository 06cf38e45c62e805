//! The engine side of a run: decode and apply NDJSON lines in one
//! [`redcloud_engine::Engine`], and log the notifications it decides.
//!
//! Used three ways: the `inprocess` target (the engine under load), the
//! *expected* pass that every run makes first (the notifications the engine
//! must produce for the generated events, with the same config), and the
//! check of an `ndjson` file. The log is compact: a 64-bit fingerprint per
//! notification for in-process comparison, or the 128-bit contract id plus
//! the index of the event that caused it, for comparing with what a daemon
//! delivers and for end-to-end latency.

use std::sync::Arc;

use redcloud_engine::event::decode;
use redcloud_engine::notify::{Notification, PolicyRef, Recipient, Subject};
use redcloud_engine::policy::EngineConfig;
use redcloud_engine::{Counters, Engine};
use xxhash_rust::xxh3::xxh3_64;

/// What to keep of each notification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogMode {
    /// Nothing (count only).
    Count,
    /// A fingerprint of the intent (comparable between engines fed the same
    /// events in the same order).
    Fingerprints,
    /// The contract id (as `redcloud replay` prints it) and the causing event.
    Ids,
}

/// A notification as the expected pass logs it for daemon targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Expected {
    /// The contract id, parsed from its 32 hex digits.
    pub id: u128,
    /// Index (0-based) of the event whose application emitted it.
    pub event: u64,
    /// The only notification that event caused (a ticket timer its time
    /// passed), rather than one of a burst (a day close emits a reminder for
    /// every member who missed the day). Set by the expected pass.
    pub alone: bool,
}

/// An engine plus the decoding and logging around it.
#[derive(Debug)]
pub struct Applier {
    engine: Engine,
    levels: Vec<String>,
    out: Vec<Notification>,
    mode: LogMode,
    /// Fingerprints ([`LogMode::Fingerprints`]).
    pub fingerprints: Vec<u64>,
    /// Ids ([`LogMode::Ids`]).
    pub ids: Vec<Expected>,
    /// Notifications emitted.
    pub notifications: u64,
    /// Lines the decoder rejected.
    pub rejected: u64,
    /// Lines seen.
    pub lines: u64,
    /// By kind: reminder, warning, escalation.
    pub by_kind: [u64; 3],
}

/// Parses a 32-hex-digit notification id.
pub fn parse_id(s: &str) -> Option<u128> {
    (s.len() == 32).then(|| u128::from_str_radix(s, 16).ok())?
}

impl Applier {
    /// A fresh engine on `cfg`.
    pub fn new(cfg: Arc<EngineConfig>, mode: LogMode) -> Applier {
        Applier {
            levels: cfg.levels.clone(),
            engine: Engine::new(cfg),
            out: Vec::new(),
            mode,
            fingerprints: Vec::new(),
            ids: Vec::new(),
            notifications: 0,
            rejected: 0,
            lines: 0,
            by_kind: [0; 3],
        }
    }

    /// Reserves room for `n` members.
    pub fn reserve_members(&mut self, n: usize) {
        self.engine.reserve_members(n);
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Engine counters.
    pub fn counters(&self) -> Counters {
        self.engine.counters()
    }

    /// Decodes and applies one line (without its `\n`).
    #[inline]
    pub fn apply_line(&mut self, line: &[u8]) {
        let index = self.lines;
        self.lines += 1;
        match decode(line, &self.levels) {
            Ok(ev) => {
                self.engine.apply(&ev, &mut self.out);
                if !self.out.is_empty() {
                    self.take(index);
                }
            }
            Err(_) => self.rejected += 1,
        }
    }

    fn take(&mut self, event: u64) {
        let out = std::mem::take(&mut self.out);
        self.notifications += out.len() as u64;
        for n in &out {
            let k = match n.kind.as_str() {
                "reminder" => 0,
                "warning" => 1,
                _ => 2,
            };
            self.by_kind[k] += 1;
            match self.mode {
                LogMode::Count => {}
                LogMode::Fingerprints => self.fingerprints.push(fingerprint(n)),
                LogMode::Ids => {
                    let id = parse_id(&self.engine.render(n).id).unwrap_or_default();
                    self.ids.push(Expected {
                        id,
                        event,
                        alone: false,
                    });
                }
            }
        }
        self.out = out;
        self.out.clear();
    }

    /// Members the engine knows.
    pub fn members(&self) -> u64 {
        self.engine.directory().members.len() as u64
    }

    /// Moves the engine's time to `to` (closing the days and firing the
    /// timers up to it) and logs what it emits as caused by the last event.
    /// Returns the notifications emitted.
    pub fn advance_to(&mut self, to: redcloud_engine::time::Ts) -> u64 {
        let before = self.notifications;
        self.engine.advance(to, &mut self.out);
        if !self.out.is_empty() {
            let i = self.lines.saturating_sub(1);
            self.take(i);
        }
        self.notifications - before
    }

    /// Closes days and fires timers up to the watermark (as `redcloud replay`
    /// does at the end of its input).
    pub fn finish(&mut self) {
        if let Some(w) = self.engine.watermark() {
            self.engine.advance(w, &mut self.out);
            if !self.out.is_empty() {
                let i = self.lines.saturating_sub(1);
                self.take(i);
            }
        }
    }
}

/// A fingerprint of an intent: its raw fields, hashed.
pub fn fingerprint(n: &Notification) -> u64 {
    let mut b = [0u8; 40];
    b[..8].copy_from_slice(&n.at.0.to_le_bytes());
    let (pk, pi) = match n.policy {
        PolicyRef::Streak(i) => (0u8, i),
        PolicyRef::Sla(i) => (1, i),
    };
    b[8] = pk;
    b[9..11].copy_from_slice(&pi.to_le_bytes());
    b[11] = n.kind.as_str().as_bytes()[0];
    b[12] = n.step;
    let (sk, si) = match n.subject {
        Subject::Member(i) => (0u8, i),
        Subject::Ticket(i) => (1, i),
    };
    b[13] = sk;
    b[14..18].copy_from_slice(&si.to_le_bytes());
    let (rk, ri) = match n.recipient {
        Recipient::Member(i) => (0u8, i),
        Recipient::Office(i) => (1, u32::from(i)),
    };
    b[18] = rk;
    b[19..23].copy_from_slice(&ri.to_le_bytes());
    b[23..27].copy_from_slice(&n.missed.to_le_bytes());
    xxh3_64(&b)
}

/// Lost and duplicated counts of `received` against `expected` (both sorted).
/// Lost: expected occurrences not received; duplicated: received beyond the
/// expected count (including unexpected ones).
pub fn compare_sorted<T: Ord>(expected: &[T], received: &[T]) -> (u64, u64) {
    let (mut i, mut j) = (0, 0);
    let (mut lost, mut dup) = (0u64, 0u64);
    while i < expected.len() || j < received.len() {
        match (expected.get(i), received.get(j)) {
            (Some(a), Some(b)) if a == b => {
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) if a < b => {
                lost += 1;
                i += 1;
            }
            (Some(_), None) => {
                lost += 1;
                i += 1;
            }
            _ => {
                dup += 1;
                j += 1;
            }
        }
    }
    (lost, dup)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_counts_lost_and_duplicates() {
        assert_eq!(compare_sorted(&[1, 2, 3], &[1, 2, 3]), (0, 0));
        assert_eq!(compare_sorted(&[1, 2, 3], &[1, 3]), (1, 0));
        assert_eq!(compare_sorted(&[1, 2, 3], &[1, 2, 2, 3, 4]), (0, 2));
        assert_eq!(compare_sorted::<u8>(&[], &[]), (0, 0));
    }

    #[test]
    fn ids_parse() {
        assert_eq!(parse_id(&format!("{:032x}", 5u128)), Some(5));
        assert_eq!(parse_id("xyz"), None);
    }
}
