//! Durations written as strings: `"500ms"`, `"30s"`, `"15m"`, `"36h"`, `"10d"`,
//! compounds such as `"1h30m"` or `"1d12h"`, and working days `"10wd"`.
//!
//! This module only parses and formats; which keys accept which forms is decided
//! by the validation of each section (see [`ConfigDuration::calendar_micros`]).
//! It must stay free of any knowledge of particular keys so that later sections
//! (`[daemon]`, `[sources.*]`, `[channels.*]`) can reuse it.

use std::fmt;

use redcloud_engine::policy::SlaDuration;
use redcloud_engine::time::{MICROS_PER_DAY, MICROS_PER_HOUR, MICROS_PER_MIN, MICROS_PER_SEC};
use serde::de::{self, Deserialize, Deserializer, Visitor};

/// The units in the order they must appear in a compound, largest first.
const UNITS: [(&str, i64); 5] = [
    ("d", MICROS_PER_DAY),
    ("h", MICROS_PER_HOUR),
    ("m", MICROS_PER_MIN),
    ("s", MICROS_PER_SEC),
    ("ms", 1_000),
];

const UNIT_HINT: &str = "(use ms, s, m, h, d or wd)";

/// A parsed duration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConfigDuration {
    /// Calendar time, in microseconds (`"36h"`, `"10d"` = 240 hours, `"1h30m"`).
    Calendar(i64),
    /// Working days (`"10wd"`), counted on the configured calendar.
    WorkingDays(u32),
}

impl ConfigDuration {
    /// The length in microseconds, or `None` for working days (keys that take
    /// calendar time only use this to reject `"Nwd"`).
    pub fn calendar_micros(self) -> Option<i64> {
        match self {
            ConfigDuration::Calendar(us) => Some(us),
            ConfigDuration::WorkingDays(_) => None,
        }
    }

    /// The same length as a `std::time::Duration`, or `None` for working days.
    pub fn to_std(self) -> Option<std::time::Duration> {
        self.calendar_micros()
            .map(|us| std::time::Duration::from_micros(us.unsigned_abs()))
    }
}

impl From<ConfigDuration> for SlaDuration {
    fn from(d: ConfigDuration) -> SlaDuration {
        match d {
            ConfigDuration::Calendar(us) => SlaDuration::Calendar(us),
            ConfigDuration::WorkingDays(n) => SlaDuration::WorkingDays(n),
        }
    }
}

/// Formats in the canonical form that [`parse_duration`] reads back:
/// `"10wd"`, `"1d12h"`, `"1h30m"`, `"500ms"`, `"0s"`.
impl fmt::Display for ConfigDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ConfigDuration::WorkingDays(n) => write!(f, "{n}wd"),
            ConfigDuration::Calendar(0) => f.write_str("0s"),
            ConfigDuration::Calendar(us) => {
                let mut rest = us;
                for (unit, size) in UNITS {
                    let n = rest / size;
                    if n > 0 {
                        write!(f, "{n}{unit}")?;
                        rest -= n * size;
                    }
                }
                if rest > 0 {
                    // Sub-millisecond remainders cannot come from parsing; show
                    // them rather than hide them.
                    write!(f, "{rest}us")?;
                }
                Ok(())
            }
        }
    }
}

/// Parses a duration string.
///
/// Forms: a whole number followed by a unit, `ms`, `s`, `m`, `h` or `d`
/// (`d` = 24 hours), possibly several of them with the units from largest to
/// smallest, each at most once (`"1h30m"`, `"1d12h"`); or a whole number of
/// working days, `"10wd"`, which does not combine with other units. No signs,
/// fractions or spaces.
///
/// The error is a complete sentence fragment naming the text, e.g.
/// `"10x" is not a duration: unknown unit "x" (use ms, s, m, h, d or wd)`.
pub fn parse_duration(text: &str) -> Result<ConfigDuration, String> {
    let fail = |why: String| format!("\"{text}\" is not a duration: {why}");
    if text.is_empty() {
        return Err(fail(
            "it is empty (write e.g. \"30s\", \"36h\", \"1h30m\" or \"10wd\")".into(),
        ));
    }
    if text.starts_with('-') {
        return Err(fail("durations cannot be negative".into()));
    }
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut total: i64 = 0;
    let mut parts = 0usize;
    let mut working_days: Option<u32> = None;
    // Index in UNITS of the last unit seen; the next must be smaller.
    let mut last_rank: Option<usize> = None;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let number = &text[start..i];
        if number.is_empty() && text[start..].starts_with(char::is_whitespace) {
            return Err(fail("spaces are not allowed (write e.g. \"1h30m\")".into()));
        }
        if number.is_empty() {
            return Err(fail(format!(
                "expected a whole number at \"{}\" (write e.g. \"30s\", \"36h\", \"1h30m\" or \"10wd\")",
                &text[start..]
            )));
        }
        let unit_start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit = &text[unit_start..i];
        if unit.is_empty() {
            let why = match text[i..].chars().next() {
                None => format!("missing unit after \"{number}\" {UNIT_HINT}"),
                Some('.') | Some(',') => {
                    "fractions are not allowed (write e.g. \"1h30m\" instead of \"1.5h\")".into()
                }
                Some(c) if c.is_whitespace() => {
                    "spaces are not allowed (write e.g. \"1h30m\")".into()
                }
                Some(c) => format!("unexpected \"{c}\" after \"{number}\" {UNIT_HINT}"),
            };
            return Err(fail(why));
        }
        parts += 1;
        if unit == "wd" {
            if parts > 1 || i < bytes.len() {
                return Err(fail(
                    "working days (\"wd\") cannot be combined with other units".into(),
                ));
            }
            let n: u32 = number
                .parse()
                .map_err(|_| fail(format!("{number} working days is too many")))?;
            working_days = Some(n);
            continue;
        }
        let Some(rank) = UNITS.iter().position(|(u, _)| *u == unit) else {
            return Err(fail(format!("unknown unit \"{unit}\" {UNIT_HINT}")));
        };
        if last_rank.is_some_and(|last| rank <= last) {
            return Err(fail(
                "units must go from largest to smallest, each at most once (e.g. \"1d12h\", \"1h30m\")"
                    .into(),
            ));
        }
        last_rank = Some(rank);
        let n: i64 = number
            .parse()
            .map_err(|_| fail("it is too long".to_string()))?;
        total = n
            .checked_mul(UNITS[rank].1)
            .and_then(|us| total.checked_add(us))
            .ok_or_else(|| fail("it is too long".to_string()))?;
    }
    Ok(match working_days {
        Some(n) => ConfigDuration::WorkingDays(n),
        None => ConfigDuration::Calendar(total),
    })
}

/// The raw form of a duration key: a TOML string, parsed during validation so
/// that errors carry the key's path. A non-string value is a type error that
/// says a duration string is expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DurationText(pub String);

impl DurationText {
    pub(crate) fn new(s: &str) -> DurationText {
        DurationText(s.to_string())
    }
}

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = DurationText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"30s\", \"36h\", \"1h30m\" or \"10wd\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationText, E> {
                Ok(DurationText(v.to_string()))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cal(s: &str) -> i64 {
        match parse_duration(s) {
            Ok(ConfigDuration::Calendar(us)) => us,
            other => panic!("{s}: {other:?}"),
        }
    }

    fn err(s: &str) -> String {
        parse_duration(s).expect_err(s)
    }

    #[test]
    fn single_units() {
        assert_eq!(cal("500ms"), 500_000);
        assert_eq!(cal("30s"), 30 * MICROS_PER_SEC);
        assert_eq!(cal("15m"), 15 * MICROS_PER_MIN);
        assert_eq!(cal("36h"), 36 * MICROS_PER_HOUR);
        assert_eq!(cal("10d"), 10 * MICROS_PER_DAY);
        assert_eq!(cal("0h"), 0);
    }

    #[test]
    fn compounds() {
        assert_eq!(cal("1h30m"), 90 * MICROS_PER_MIN);
        assert_eq!(cal("1d12h"), 36 * MICROS_PER_HOUR);
        assert_eq!(cal("2m30s500ms"), 150_500_000);
        assert!(err("30m1h").contains("largest to smallest"));
        assert!(err("1h1h").contains("largest to smallest"));
    }

    #[test]
    fn working_days() {
        assert_eq!(parse_duration("10wd"), Ok(ConfigDuration::WorkingDays(10)));
        assert_eq!(parse_duration("0wd"), Ok(ConfigDuration::WorkingDays(0)));
        let e = err("1wd2h");
        assert!(e.contains("cannot be combined"), "{e}");
        assert!(err("2h1wd").contains("cannot be combined"));
        assert!(err("99999999999wd").contains("too many"));
    }

    #[test]
    fn error_texts() {
        assert_eq!(
            err("10x"),
            "\"10x\" is not a duration: unknown unit \"x\" (use ms, s, m, h, d or wd)"
        );
        assert_eq!(
            err("10"),
            "\"10\" is not a duration: missing unit after \"10\" (use ms, s, m, h, d or wd)"
        );
        assert!(err("").contains("is empty"));
        assert!(err("-1h").contains("negative"));
        assert!(err("1.5h").contains("fractions"));
        assert!(err("1h 30m").contains("spaces"));
        assert!(err("h").contains("expected a whole number at \"h\""));
        assert!(err("10天").contains("unexpected \"天\""));
        assert!(err("10D").contains("unknown unit \"D\""));
        assert!(err("9999999999999999d").contains("too long"));
    }

    #[test]
    fn display_round_trips() {
        for s in ["10wd", "1d12h", "1h30m", "500ms", "0s", "2m30s500ms", "35d"] {
            let d = parse_duration(s).unwrap();
            assert_eq!(d.to_string(), s);
            assert_eq!(parse_duration(&d.to_string()), Ok(d));
        }
        assert_eq!(parse_duration("36h").unwrap().to_string(), "1d12h");
    }

    #[test]
    fn conversions() {
        let d = parse_duration("1h").unwrap();
        assert_eq!(d.calendar_micros(), Some(MICROS_PER_HOUR));
        assert_eq!(d.to_std(), Some(std::time::Duration::from_secs(3600)));
        assert_eq!(ConfigDuration::WorkingDays(3).calendar_micros(), None);
        assert_eq!(
            SlaDuration::from(ConfigDuration::WorkingDays(3)),
            SlaDuration::WorkingDays(3)
        );
    }
}
