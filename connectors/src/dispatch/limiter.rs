//! The limiters: an exact sliding-window log per recipient (stacked windows,
//! e.g. SMS 1/min + 5/h + 10/day, or a robot's 20 in any 60 s) and a GCRA for
//! a channel's provider-wide rate.
//!
//! Both work on a monotonic time in nanoseconds passed in by the caller (the
//! dispatcher's [`super::Clock`]), so tests run them on tokio's paused clock,
//! and both are owned by the single dispatcher task: no atomics, no locks.
//!
//! Why not a token bucket for the windows: a bucket of 20 refilled at 20/min
//! lets 20 through at once and 20 more over the next minute, about 40 in the
//! first 60 s. The log keeps the last `limit` send times and lets a send
//! through only when the `limit`-th most recent one is more than `period` ago,
//! so **no** closed window of length `period` ever holds more than `limit`
//! sends. `governor` implements GCRA with atomics for shared use; one owner
//! needs neither, and its clock is not tokio's, so the GCRA here is ten lines.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Duration;

use super::config::Window;

/// Hasher for keys that already are hashes (xxh3 of the address): passes
/// the `u64` through.
#[derive(Clone, Copy, Debug, Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) ^ u64::from(b) ^ (self.0 >> 56);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// A map keyed by recipient hash.
pub type KeyMap<V> = HashMap<u64, V, BuildHasherDefault<KeyHasher>>;

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Stacked exact windows, shared by every recipient of a channel.
#[derive(Clone, Debug)]
pub struct Windows {
    ws: Vec<(usize, u64)>,
    cap: usize,
    max_period: u64,
}

/// The send times of one recipient, oldest first, at most the largest limit.
#[derive(Clone, Debug, Default)]
pub struct SendLog {
    times: VecDeque<u64>,
}

impl SendLog {
    /// The most recent send, if any.
    pub fn last(&self) -> Option<u64> {
        self.times.back().copied()
    }

    /// Sends remembered.
    pub fn len(&self) -> usize {
        self.times.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }
}

impl Windows {
    /// Windows from the config (may be empty: no per-recipient limit).
    pub fn new(windows: &[Window]) -> Windows {
        let ws: Vec<(usize, u64)> = windows
            .iter()
            .map(|w| (w.limit as usize, ns(w.period)))
            .collect();
        Windows {
            cap: ws.iter().map(|w| w.0).max().unwrap_or(0),
            max_period: ws.iter().map(|w| w.1).max().unwrap_or(0),
            ws,
        }
    }

    /// Whether there is any window.
    pub fn is_empty(&self) -> bool {
        self.ws.is_empty()
    }

    /// The longest period: a log whose last send is older is forgettable.
    pub fn max_period(&self) -> u64 {
        self.max_period
    }

    /// `Ok` if a send at `now` keeps every window within its limit, else the
    /// earliest instant at which it would.
    #[inline]
    pub fn check(&self, log: &SendLog, now: u64) -> Result<(), u64> {
        let n = log.times.len();
        let mut earliest = 0u64;
        for &(limit, period) in &self.ws {
            if n >= limit {
                // The limit-th most recent send must be more than `period` ago.
                let t = log.times[n - limit];
                let free_at = t.saturating_add(period).saturating_add(1);
                if now < free_at {
                    earliest = earliest.max(free_at);
                }
            }
        }
        if earliest == 0 {
            Ok(())
        } else {
            Err(earliest)
        }
    }

    /// Remembers a send at `t` (call with non-decreasing `t` per recipient).
    #[inline]
    pub fn record(&self, log: &mut SendLog, t: u64) {
        if self.cap == 0 {
            return;
        }
        if log.times.len() == self.cap {
            log.times.pop_front();
        }
        log.times.push_back(t);
    }
}

/// Generic cell rate algorithm: sends spaced `period / limit` apart, with
/// `burst` allowed back to back.
#[derive(Clone, Debug)]
pub struct Gcra {
    interval: u64,
    tolerance: u64,
    tat: u64,
}

impl Gcra {
    /// `limit` sends per `period`, `burst` >= 1.
    pub fn new(w: Window, burst: u32) -> Gcra {
        let interval = ns(w.period).div_ceil(u64::from(w.limit.max(1)));
        Gcra {
            interval,
            tolerance: interval.saturating_mul(u64::from(burst.max(1)) - 1),
            tat: 0,
        }
    }

    /// `Ok` if a send may go at `now`, else the earliest instant it may.
    #[inline]
    pub fn check(&self, now: u64) -> Result<(), u64> {
        let allowed_at = self.tat.saturating_sub(self.tolerance);
        if now >= allowed_at {
            Ok(())
        } else {
            Err(allowed_at)
        }
    }

    /// Takes the slot at `now` (after a successful [`Gcra::check`]).
    #[inline]
    pub fn take(&mut self, now: u64) {
        self.tat = self.tat.max(now).saturating_add(self.interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: u64 = 1_000_000_000;

    fn w(limit: u32, secs: u64) -> Window {
        Window {
            limit,
            period: Duration::from_secs(secs),
        }
    }

    /// Drives a log with arrivals: each send goes at max(arrival, earliest
    /// allowed), as the dispatcher defers it; returns the send times.
    fn drive(ws: &Windows, arrivals: &[u64]) -> Vec<u64> {
        let mut log = SendLog::default();
        let mut sent = Vec::new();
        let mut now = 0;
        for &a in arrivals {
            now = now.max(a);
            loop {
                match ws.check(&log, now) {
                    Ok(()) => break,
                    Err(t) => {
                        assert!(t > now, "earliest must be in the future");
                        now = t;
                    }
                }
            }
            ws.record(&mut log, now);
            sent.push(now);
        }
        sent
    }

    /// Max sends in any closed window [t - period, t].
    fn max_in_window(sent: &[u64], period: u64) -> usize {
        let mut best = 0;
        let mut lo = 0;
        for hi in 0..sent.len() {
            while sent[hi] - sent[lo] > period {
                lo += 1;
            }
            best = best.max(hi - lo + 1);
        }
        best
    }

    #[test]
    fn a_burst_of_40_takes_two_windows() {
        let ws = Windows::new(&[w(20, 60)]);
        let sent = drive(&ws, &[0; 40]);
        assert_eq!(max_in_window(&sent, 60 * S), 20);
        assert!(sent[20] > 60 * S);
        assert_eq!(sent[19], 0);
    }

    #[test]
    fn gcra_spaces_sends() {
        let mut g = Gcra::new(w(10, 1), 1);
        assert!(g.check(0).is_ok());
        g.take(0);
        assert_eq!(g.check(1), Err(S / 10));
        g.take(S / 10);
        assert!(g.check(2 * S / 10).is_ok());
        let mut b = Gcra::new(w(10, 1), 3);
        for _ in 0..3 {
            assert!(b.check(0).is_ok());
            b.take(0);
        }
        assert!(b.check(0).is_err());
    }

    proptest! {
        #[test]
        fn no_window_ever_exceeds_its_limit(
            gaps in proptest::collection::vec(
                prop_oneof![Just(0u64), 0u64..2 * S, 0u64..120 * S], 1..300),
            limit in 1u32..25,
        ) {
            let mut t = 0;
            let arrivals: Vec<u64> = gaps.iter().map(|g| { t += g; t }).collect();
            let ws = Windows::new(&[w(limit, 60)]);
            let sent = drive(&ws, &arrivals);
            prop_assert!(max_in_window(&sent, 60 * S) <= limit as usize);
            // Never earlier than the arrival, nothing dropped.
            prop_assert_eq!(sent.len(), arrivals.len());
            for (s, a) in sent.iter().zip(&arrivals) {
                prop_assert!(s >= a);
            }
        }

        #[test]
        fn stacked_windows_all_hold(
            gaps in proptest::collection::vec(
                prop_oneof![Just(0u64), 0u64..90 * S, 0u64..7200 * S], 1..120),
        ) {
            let mut t = 0;
            let arrivals: Vec<u64> = gaps.iter().map(|g| { t += g; t }).collect();
            let ws = Windows::new(&[w(1, 60), w(5, 3600), w(10, 86_400)]);
            let sent = drive(&ws, &arrivals);
            prop_assert!(max_in_window(&sent, 60 * S) <= 1);
            prop_assert!(max_in_window(&sent, 3600 * S) <= 5);
            prop_assert!(max_in_window(&sent, 86_400 * S) <= 10);
        }
    }
}
