//! The daemon's wall clock, injectable so that tests can move time.
//!
//! The engine never reads a clock; the shards ask a [`Clock`] for "now" and
//! pass it to `Engine::advance`. In production that is [`SystemClock`]. For
//! tests only, `REDCLOUD_FAKE_NOW=<RFC 3339 instant>` starts the clock at that
//! instant and lets it run at real speed from there ([`OffsetClock`]), so a
//! day close can be made a few seconds away. The daemon logs a warning when it
//! is set; never set it in production.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use redcloud_engine::time::Ts;

/// The environment variable of the test-only fake start instant.
pub const FAKE_NOW_ENV: &str = "REDCLOUD_FAKE_NOW";

/// A source of "now".
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> Ts;
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Ts {
        system_now()
    }
}

fn system_now() -> Ts {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Ts(i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// The system clock shifted by a fixed offset (tests only).
#[derive(Clone, Copy, Debug)]
pub struct OffsetClock {
    offset_micros: i64,
}

impl OffsetClock {
    /// A clock that reads `start` now and runs at real speed.
    pub fn starting_at(start: Ts) -> OffsetClock {
        OffsetClock {
            offset_micros: start.0 - system_now().0,
        }
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> Ts {
        Ts(system_now().0.saturating_add(self.offset_micros))
    }
}

/// Why the clock could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("{FAKE_NOW_ENV}: {reason}")]
pub struct ClockError {
    reason: String,
}

/// The system clock, or the fake one when [`FAKE_NOW_ENV`] is set.
/// Returns the clock and whether it is fake.
pub fn from_env() -> Result<(Arc<dyn Clock>, bool), ClockError> {
    match std::env::var(FAKE_NOW_ENV) {
        Ok(v) if !v.trim().is_empty() => {
            let start = Ts::parse_rfc3339(v.trim()).map_err(|e| ClockError {
                reason: format!("not an rfc 3339 instant: {e}"),
            })?;
            Ok((Arc::new(OffsetClock::starting_at(start)), true))
        }
        _ => Ok((Arc::new(SystemClock), false)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_clock_starts_where_told_and_runs() {
        let start = Ts::parse_rfc3339("2026-03-02T23:59:58+08:00").unwrap();
        let c = OffsetClock::starting_at(start);
        let a = c.now();
        assert!((a.0 - start.0).abs() < 1_000_000, "{a:?} vs {start:?}");
        assert!(c.now() >= a);
        assert!(SystemClock.now().0 > 1_600_000_000_000_000);
    }
}
