//! Instants, local days and the configured timezone.
//!
//! The engine reads no clock: every instant is passed in. An instant is a [`Ts`]
//! (microseconds since the Unix epoch, UTC); a local calendar date is a [`Day`]
//! (days since 1970-01-01). [`Zone`] converts between them in the configured
//! timezone (default `Asia/Shanghai`); [`DayCache`] makes the conversion cheap
//! on the hot path, because events mostly arrive in time order.

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, Offset, SecondsFormat, TimeZone, Utc};
use chrono_tz::Tz;

/// Microseconds in one second.
pub const MICROS_PER_SEC: i64 = 1_000_000;
/// Microseconds in one minute.
pub const MICROS_PER_MIN: i64 = 60 * MICROS_PER_SEC;
/// Microseconds in one hour.
pub const MICROS_PER_HOUR: i64 = 60 * MICROS_PER_MIN;
/// Microseconds in one (24-hour) day.
pub const MICROS_PER_DAY: i64 = 24 * MICROS_PER_HOUR;

/// First local date the engine accepts (inclusive).
pub const MIN_DAY: Day = Day(10_957); // 2000-01-01
/// Last local date the engine accepts (inclusive): 2178-12-31, so that a day fits
/// in a `u16` offset from [`MIN_DAY`] (with `u16::MAX` left free as "no day").
pub const MAX_DAY: Day = Day(76_335);

/// An instant: microseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Ts(pub i64);

impl Ts {
    /// Parses an RFC 3339 timestamp with an offset (`2026-03-09T08:00:00+08:00`).
    /// Sub-microsecond digits are truncated towards the past.
    pub fn parse_rfc3339(s: &str) -> Result<Ts, String> {
        let dt = DateTime::parse_from_rfc3339(s).map_err(|e| e.to_string())?;
        let secs = dt.timestamp();
        let micros = i64::from(dt.timestamp_subsec_micros());
        secs.checked_mul(MICROS_PER_SEC)
            .and_then(|m| m.checked_add(micros))
            .map(Ts)
            .ok_or_else(|| "timestamp out of range".to_string())
    }

    /// Adds a (possibly negative) number of microseconds, saturating.
    pub fn plus(self, micros: i64) -> Ts {
        Ts(self.0.saturating_add(micros))
    }

    /// The instant as a UTC `DateTime`.
    pub fn to_utc(self) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp_micros(self.0).unwrap_or_default()
    }
}

/// A local calendar date: days since 1970-01-01.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Day(pub i32);

const UNIX_EPOCH_DAYS_FROM_CE: i32 = 719_163;

impl Day {
    /// The day of a `NaiveDate`.
    pub fn from_date(d: NaiveDate) -> Day {
        Day(d.num_days_from_ce() - UNIX_EPOCH_DAYS_FROM_CE)
    }

    /// The `NaiveDate` of this day.
    pub fn date(self) -> NaiveDate {
        NaiveDate::from_num_days_from_ce_opt(self.0 + UNIX_EPOCH_DAYS_FROM_CE)
            .unwrap_or(NaiveDate::MIN)
    }

    /// Parses `YYYY-MM-DD`.
    pub fn parse(s: &str) -> Result<Day, String> {
        NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map(Day::from_date)
            .map_err(|e| format!("`{s}` is not a date (YYYY-MM-DD): {e}"))
    }

    /// Day of the week, 0 = Monday .. 6 = Sunday.
    pub fn weekday(self) -> u32 {
        // 1970-01-01 was a Thursday (3).
        (i64::from(self.0) + 3).rem_euclid(7) as u32
    }

    /// Saturday or Sunday.
    pub fn is_weekend(self) -> bool {
        self.weekday() >= 5
    }

    /// The next calendar day.
    pub fn succ(self) -> Day {
        Day(self.0 + 1)
    }

    /// Compact form for per-member state: offset from [`MIN_DAY`]. Days outside
    /// the supported range saturate.
    pub fn to_u16(self) -> u16 {
        (self.0 - MIN_DAY.0).clamp(0, u16::MAX as i32) as u16
    }

    /// Inverse of [`Day::to_u16`].
    pub fn from_u16(v: u16) -> Day {
        Day(MIN_DAY.0 + i32::from(v))
    }

    /// Year of the date.
    pub fn year(self) -> i32 {
        self.date().year()
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.date().format("%Y-%m-%d"))
    }
}

/// Time of day at which something happens, in minutes after local midnight,
/// `1..=1440` (`1440` = `24:00`, the midnight that ends the day).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeOfDay(pub u16);

impl TimeOfDay {
    /// `24:00`.
    pub const END_OF_DAY: TimeOfDay = TimeOfDay(1440);

    /// Parses `HH:MM` with `00:01..=24:00`.
    pub fn parse(s: &str) -> Result<TimeOfDay, String> {
        let (h, m) = s
            .split_once(':')
            .ok_or_else(|| format!("`{s}` is not a time of day (HH:MM)"))?;
        let h: u16 = h
            .parse()
            .map_err(|_| format!("`{s}` is not a time of day (HH:MM)"))?;
        let m: u16 = m
            .parse()
            .map_err(|_| format!("`{s}` is not a time of day (HH:MM)"))?;
        if m >= 60 || h > 24 || (h == 24 && m != 0) || (h == 0 && m == 0) {
            return Err(format!("`{s}` must be between 00:01 and 24:00"));
        }
        Ok(TimeOfDay(h * 60 + m))
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

/// The configured timezone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Zone {
    tz: Tz,
}

/// A cache of the last local day seen, for the hot path: events mostly arrive
/// in time order, so most conversions hit the cached `[start, end)` range.
/// One per engine (shard); [`Zone`] itself stays immutable and shareable.
#[derive(Debug, Clone, Copy, Default)]
pub struct DayCache {
    start: i64,
    end: i64,
    day: i32,
}

impl DayCache {
    /// The local date of `ts` in `zone`.
    #[inline]
    pub fn local_day(&mut self, zone: &Zone, ts: Ts) -> Day {
        if ts.0 >= self.start && ts.0 < self.end {
            return Day(self.day);
        }
        let d = zone.local_day(ts);
        self.start = zone.day_start(d).0;
        self.end = zone.day_start(d.succ()).0;
        self.day = d.0;
        d
    }
}

impl Zone {
    /// A zone by IANA name (`Asia/Shanghai`).
    pub fn new(name: &str) -> Result<Zone, String> {
        let tz: Tz = name
            .parse()
            .map_err(|_| format!("`{name}` is not a known IANA timezone"))?;
        Ok(Zone::from_tz(tz))
    }

    /// A zone from a `chrono_tz::Tz`.
    pub fn from_tz(tz: Tz) -> Zone {
        Zone { tz }
    }

    /// The IANA name.
    pub fn name(&self) -> &'static str {
        self.tz.name()
    }

    /// The underlying timezone.
    pub fn tz(&self) -> Tz {
        self.tz
    }

    /// The local date of an instant.
    pub fn local_day(&self, ts: Ts) -> Day {
        Day::from_date(ts.to_utc().with_timezone(&self.tz).date_naive())
    }

    /// The first instant of a local date (local midnight, or the first instant
    /// after it when midnight does not exist in a DST gap).
    pub fn day_start(&self, d: Day) -> Ts {
        self.local_instant(d, 0)
    }

    /// The instant of local time `minutes` after midnight on `d` (`1440` is the
    /// next day's midnight). A local time skipped by a DST gap maps to the first
    /// instant after the gap; an ambiguous one to its earlier instant.
    pub fn local_instant(&self, d: Day, minutes: u32) -> Ts {
        let (day, minutes) = if minutes >= 1440 {
            (Day(d.0 + (minutes / 1440) as i32), minutes % 1440)
        } else {
            (d, minutes)
        };
        let naive = day
            .date()
            .and_time(NaiveTime::from_hms_opt(minutes / 60, minutes % 60, 0).unwrap_or_default());
        let mut probe = naive;
        // Walk forward out of a DST gap (gaps are at most a few hours).
        for _ in 0..(24 * 4) {
            match self.tz.from_local_datetime(&probe) {
                chrono::LocalResult::Single(dt) => return ts_of(dt),
                chrono::LocalResult::Ambiguous(a, _) => return ts_of(a),
                chrono::LocalResult::None => probe += chrono::Duration::minutes(15),
            }
        }
        // Unreachable for real zones; fall back to the UTC reading.
        Ts(naive.and_utc().timestamp_micros())
    }

    /// Formats an instant as RFC 3339 in this zone (`2026-03-10T00:00:00+08:00`).
    pub fn format(&self, ts: Ts) -> String {
        ts.to_utc()
            .with_timezone(&self.tz)
            .to_rfc3339_opts(SecondsFormat::AutoSi, false)
    }

    /// The UTC offset at an instant, in seconds.
    pub fn offset_secs(&self, ts: Ts) -> i32 {
        self.tz
            .offset_from_utc_datetime(&ts.to_utc().naive_utc())
            .fix()
            .local_minus_utc()
    }
}

fn ts_of<T: TimeZone>(dt: DateTime<T>) -> Ts {
    Ts(dt.timestamp_micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_in_shanghai() {
        let z = Zone::new("Asia/Shanghai").unwrap();
        let t = Ts::parse_rfc3339("2026-03-09T23:59:59.5+08:00").unwrap();
        assert_eq!(z.local_day(t), Day::parse("2026-03-09").unwrap());
        let close = z.local_instant(Day::parse("2026-03-09").unwrap(), 1440);
        assert!(t < close);
        assert_eq!(z.format(close), "2026-03-10T00:00:00+08:00");
        let utc = Ts::parse_rfc3339("2026-03-09T16:00:00Z").unwrap();
        assert_eq!(utc, close);
        assert_eq!(z.local_day(utc), Day::parse("2026-03-10").unwrap());
    }

    #[test]
    fn weekday_and_compact_form() {
        let d = Day::parse("2026-11-26").unwrap();
        assert_eq!(d.weekday(), 3); // Thursday
        assert_eq!(Day::from_u16(d.to_u16()), d);
        assert_eq!(d.to_string(), "2026-11-26");
    }

    #[test]
    fn time_of_day_bounds() {
        assert_eq!(TimeOfDay::parse("24:00").unwrap(), TimeOfDay::END_OF_DAY);
        assert_eq!(TimeOfDay::parse("20:30").unwrap().0, 20 * 60 + 30);
        assert!(TimeOfDay::parse("00:00").is_err());
        assert!(TimeOfDay::parse("24:01").is_err());
        assert!(TimeOfDay::parse("7").is_err());
    }

    #[test]
    fn dst_gap_maps_forward() {
        let z = Zone::new("America/New_York").unwrap();
        // 2026-03-08 02:30 does not exist in New York.
        let d = Day::parse("2026-03-08").unwrap();
        let t = z.local_instant(d, 150);
        assert_eq!(z.format(t), "2026-03-08T03:00:00-04:00");
    }
}
