//! Exponential reconnect backoff, capped, with jitter.
//!
//! Each delay is drawn uniformly from `[d/2, d]` where `d` doubles after every
//! failure from `initial` up to `max` ("equal jitter"), so many daemons restarted
//! together do not hammer a broker in lockstep. A connection that stayed up
//! resets it.

use std::time::Duration;

/// Reconnect delays: exponential, capped, jittered.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
    rng: u64,
}

impl Backoff {
    /// A backoff starting at `initial` and never exceeding `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        let initial = initial.max(Duration::from_millis(1));
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ (u64::from(std::process::id()) << 32);
        Backoff {
            initial,
            max: max.max(initial),
            current: initial,
            rng: seed | 1,
        }
    }

    /// The delay before the next attempt; doubles the base for the one after.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.current;
        self.current = (self.current * 2).min(self.max);
        let half = d / 2;
        let span = (d - half).as_micros() as u64;
        let jitter = if span == 0 {
            0
        } else {
            self.next_rand() % (span + 1)
        };
        half + Duration::from_micros(jitter)
    }

    /// Back to `initial` (after a connection that worked).
    pub fn reset(&mut self) {
        self.current = self.initial;
    }

    fn next_rand(&mut self) -> u64 {
        // xorshift64*: plenty for jitter, no dependency.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let mut prev_cap = Duration::ZERO;
        for i in 0..10 {
            let d = b.next_delay();
            let cap = Duration::from_millis(100 * (1 << i)).min(Duration::from_secs(1));
            assert!(
                d <= cap && d >= cap / 2,
                "attempt {i}: {d:?} outside [{:?}, {cap:?}]",
                cap / 2
            );
            assert!(cap >= prev_cap);
            prev_cap = cap;
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
