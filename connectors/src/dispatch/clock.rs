//! The dispatcher's clock: monotonic nanoseconds on tokio's clock (so tests
//! pause and advance it) tied to a wall-clock origin (for quiet hours).
//!
//! `Clock::system()` is the real thing; `Clock::starting_at(unix_ms)` pins the
//! wall clock at the current tokio instant, for tests that simulate a night.

use tokio::time::Instant;

/// Monotonic time with a wall-clock origin.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: Instant,
    origin_unix_ms: i64,
    /// Monotonic time of the origin (nanoseconds): instants up to this long
    /// before it still have a time ([`Clock::with_past`]).
    offset: u64,
}

impl Clock {
    /// Tokio's clock and the system wall clock.
    pub fn system() -> Clock {
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Clock::starting_at(unix)
    }

    /// Tokio's clock, with "now" being `unix_ms` on the wall clock.
    pub fn starting_at(unix_ms: i64) -> Clock {
        Clock {
            origin: Instant::now(),
            origin_unix_ms: unix_ms,
            offset: 0,
        }
    }

    /// The same clock, but starting `past` later, so that instants up to
    /// `past` before its origin have a monotonic time: sends remembered from
    /// before a restart.
    pub fn with_past(self, past: std::time::Duration) -> Clock {
        Clock {
            offset: u64::try_from(past.as_nanos()).unwrap_or(u64::MAX / 4),
            ..self
        }
    }

    /// Nanoseconds since the origin (plus the past it keeps).
    #[inline]
    pub fn now(&self) -> u64 {
        u64::try_from(Instant::now().duration_since(self.origin).as_nanos())
            .unwrap_or(u64::MAX / 2)
            .saturating_add(self.offset)
    }

    /// The tokio instant of `t` (the origin if earlier).
    pub fn instant(&self, t: u64) -> Instant {
        self.origin + std::time::Duration::from_nanos(t.saturating_sub(self.offset))
    }

    /// Wall-clock milliseconds of `t`.
    pub fn unix_ms(&self, t: u64) -> i64 {
        self.origin_unix_ms + (t as i128 - self.offset as i128).div_euclid(1_000_000) as i64
    }

    /// The monotonic time of wall-clock `unix_ms` (0 if earlier than the
    /// past the clock keeps).
    pub fn from_unix_ms(&self, unix_ms: i64) -> u64 {
        let ns = i128::from(unix_ms - self.origin_unix_ms) * 1_000_000 + self.offset as i128;
        u64::try_from(ns.max(0)).unwrap_or(u64::MAX / 2)
    }
}

/// The end of the quiet period that `unix_ms` falls in, or `None` if it is
/// not in one.
pub fn quiet_until(q: &super::config::QuietHours, tz: chrono_tz::Tz, unix_ms: i64) -> Option<i64> {
    use chrono::{Duration, NaiveTime, TimeZone, Timelike};
    let local = tz.timestamp_millis_opt(unix_ms).single()?;
    let m = local.hour() * 60 + local.minute();
    let quiet = if q.start_min < q.end_min {
        m >= q.start_min && m < q.end_min
    } else {
        m >= q.start_min || m < q.end_min
    };
    if !quiet {
        return None;
    }
    let mut date = local.date_naive();
    if m >= q.end_min {
        // Quiet since `start` today, it ends tomorrow.
        date += Duration::days(1);
    }
    let end = NaiveTime::from_hms_opt(q.end_min / 60, q.end_min % 60, 0)?;
    let end = tz.from_local_datetime(&date.and_time(end)).earliest()?;
    Some(end.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::config::QuietHours;
    use chrono::TimeZone;

    #[test]
    fn quiet_hours_end_at_eight_local() {
        let tz = chrono_tz::Asia::Shanghai;
        let q = QuietHours {
            start_min: 22 * 60,
            end_min: 8 * 60,
        };
        let at = |d, h, m| {
            tz.with_ymd_and_hms(2026, 3, d, h, m, 0)
                .unwrap()
                .timestamp_millis()
        };
        assert_eq!(quiet_until(&q, tz, at(10, 21, 59)), None);
        assert_eq!(quiet_until(&q, tz, at(10, 22, 0)), Some(at(11, 8, 0)));
        assert_eq!(quiet_until(&q, tz, at(11, 3, 0)), Some(at(11, 8, 0)));
        assert_eq!(quiet_until(&q, tz, at(11, 8, 0)), None);
        let day = QuietHours {
            start_min: 12 * 60,
            end_min: 14 * 60,
        };
        assert_eq!(quiet_until(&day, tz, at(11, 13, 0)), Some(at(11, 14, 0)));
        assert_eq!(quiet_until(&day, tz, at(11, 15, 0)), None);
    }
}
