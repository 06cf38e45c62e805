//! The working-day calendar (contract section 4).
//!
//! A working day is Monday to Friday, minus the statutory holidays that fall on
//! weekdays, plus the make-up working days (调休) that fall on Saturdays or
//! Sundays. The data comes by calendar year: the built-in `cn-mainland`
//! calendar compiles in the State Council's notices for 2024 to 2026
//! (`engine/data/cn-mainland-2024-2026.json`), and operators can load further
//! years, or a calendar of their own, from files in the same JSON format with
//! [`Calendar::add_years_from_json`] (see `docs/calendar.md`).
//!
//! A date whose year no loaded data covers falls back to plain Monday to Friday;
//! [`Calendar::is_covered`] tells the two cases apart, and
//! [`Calendar::first_uncovered_day_on_or_after`] tells the daemon when the data
//! runs out so that it can warn in advance.
//!
//! Queries are answered from an index built when years are loaded: for every day
//! from [`MIN_DAY`] to the end of [`MAX_DAY`]'s year, the number of working days
//! before it (a `u32` per day, about 260 KB, shared between clones). Outside that
//! range every query uses closed-form Monday-to-Friday arithmetic. Every query
//! is O(1) or O(log n) and allocates nothing, except [`Calendar::covered_years`].

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use chrono::NaiveDate;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::time::{Day, MAX_DAY, MIN_DAY};

/// The names [`Calendar::builtin`] accepts.
pub const BUILTIN_NAMES: &[&str] = &["cn-mainland", "weekdays"];

/// The data of the built-in `cn-mainland` calendar.
const CN_MAINLAND_JSON: &str = include_str!("../data/cn-mainland-2024-2026.json");

/// 1969-12-29, a Monday: the anchor of the closed-form weekday arithmetic.
const MONDAY_ANCHOR: i64 = -3;

const WEEKDAY_NAMES: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// Why a calendar could not be built or a calendar file could not be loaded.
///
/// Messages are lowercase without a final period and name the file, the year
/// and the date at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    /// Unknown built-in name.
    #[error("unknown built-in calendar `{0}` (known: cn-mainland, weekdays)")]
    UnknownBuiltin(String),
    /// Bad data (not produced by this module's loader, which uses the more
    /// precise variants below; kept for callers that build their own).
    #[error("calendar `{name}`: {reason}")]
    Invalid {
        /// Calendar name or file.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The file is not JSON, or not a calendar file's shape (missing
    /// `years`, a field of the wrong type, an unknown field in a year).
    #[error("calendar file `{file}`: {message}")]
    Json {
        /// The file, as passed to [`Calendar::add_years_from_json`].
        file: String,
        /// What the JSON parser said, with line and column.
        message: String,
    },
    /// The file's `years` object is empty.
    #[error("calendar file `{file}`: `years` is empty")]
    NoYears {
        /// The file.
        file: String,
    },
    /// A key of `years` is wrong.
    #[error("calendar file `{file}`: year `{year}` {problem}")]
    BadYear {
        /// The file.
        file: String,
        /// The key as written.
        year: String,
        /// What is wrong, as a phrase after the year (`is listed twice`).
        problem: String,
    },
    /// A date in a year's list is wrong.
    #[error("calendar file `{file}`, year {year}: `{date}` in {list} {problem}")]
    BadDate {
        /// The file.
        file: String,
        /// The year whose list holds the date.
        year: i32,
        /// `holidays_on_weekdays` or `makeup_working_days`.
        list: &'static str,
        /// The date as written.
        date: String,
        /// What is wrong, as a phrase after the date (`is listed twice`).
        problem: String,
    },
    /// A year's `working_day_count` disagrees with its dates.
    #[error(
        "calendar file `{file}`, year {year}: working_day_count is {stated} but the dates give {computed}"
    )]
    CountMismatch {
        /// The file.
        file: String,
        /// The year.
        year: i32,
        /// `working_day_count` as written.
        stated: u32,
        /// Monday to Friday, minus the holidays, plus the make-up days.
        computed: u32,
    },
}

/// A working-day calendar: Monday to Friday, adjusted by per-year data.
///
/// Cloning is cheap (the index is shared).
#[derive(Clone)]
pub struct Calendar {
    name: String,
    inner: Arc<Inner>,
}

/// One loaded year.
#[derive(Clone, Debug)]
struct YearData {
    /// The file (or built-in calendar) the year came from.
    file: String,
    /// Holidays on Monday to Friday, sorted.
    holidays: Vec<Day>,
    /// Make-up working days on Saturday or Sunday, sorted.
    makeups: Vec<Day>,
}

#[derive(Debug)]
struct Inner {
    years: BTreeMap<i32, YearData>,
    index: Index,
}

/// Prefix counts over `start..=end` plus per-year coverage.
#[derive(Debug)]
struct Index {
    /// First indexed day ([`MIN_DAY`], a 1 January).
    start: i64,
    /// Last indexed day (31 December of [`MAX_DAY`]'s year).
    end: i64,
    /// Year of `start`.
    first_year: i32,
    /// `prefix[i]` = working days in `[start, start + i)`; `end - start + 2`
    /// entries.
    prefix: Vec<u32>,
    /// Per year from `first_year`: is the year loaded.
    covered: Vec<bool>,
    /// Per year from `first_year`: 1 January of the first year at or after it
    /// that is not loaded (`end + 1` if all are).
    first_uncovered: Vec<i32>,
}

// ---------------------------------------------------------------------------
// Closed-form Monday-to-Friday arithmetic.

/// Number of weekdays (Monday to Friday) in `[MONDAY_ANCHOR, x)`, negative for
/// `x` before the anchor: a non-decreasing function of `x`.
fn weekdays_before(x: i64) -> i64 {
    let n = x - MONDAY_ANCHOR;
    5 * n.div_euclid(7) + n.rem_euclid(7).min(5)
}

/// The weekday `d` with `weekdays_before(d) == m`.
fn nth_weekday(m: i64) -> i64 {
    MONDAY_ANCHOR + 7 * m.div_euclid(5) + m.rem_euclid(5)
}

/// Saturday or Sunday, without overflow at the ends of `i32`.
fn is_weekend(x: i64) -> bool {
    (x - MONDAY_ANCHOR).rem_euclid(7) >= 5
}

fn clamp_day(x: i64) -> Day {
    Day(x.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32)
}

fn jan1(year: i32) -> i64 {
    NaiveDate::from_ymd_opt(year, 1, 1).map_or(0, |d| i64::from(Day::from_date(d).0))
}

/// Years that can be loaded: those of the indexed range.
fn year_range() -> (i32, i32) {
    (MIN_DAY.year(), MAX_DAY.year())
}

impl Index {
    fn build(years: &BTreeMap<i32, YearData>) -> Index {
        let (first_year, last_year) = year_range();
        let start = jan1(first_year);
        let end = jan1(last_year + 1) - 1;
        let len = (end - start + 1) as usize;
        let mut working: Vec<bool> = (start..=end).map(|x| !Day(x as i32).is_weekend()).collect();
        for y in years.values() {
            for d in &y.holidays {
                working[(i64::from(d.0) - start) as usize] = false;
            }
            for d in &y.makeups {
                working[(i64::from(d.0) - start) as usize] = true;
            }
        }
        let mut prefix = Vec::with_capacity(len + 1);
        let mut acc = 0u32;
        prefix.push(acc);
        for w in working {
            acc += u32::from(w);
            prefix.push(acc);
        }
        let n_years = (last_year - first_year + 1) as usize;
        let covered: Vec<bool> = (first_year..=last_year)
            .map(|y| years.contains_key(&y))
            .collect();
        let mut first_uncovered = vec![0i32; n_years];
        let mut next = (end + 1) as i32;
        for i in (0..n_years).rev() {
            if !covered[i] {
                next = jan1(first_year + i as i32) as i32;
            }
            first_uncovered[i] = next;
        }
        Index {
            start,
            end,
            first_year,
            prefix,
            covered,
            first_uncovered,
        }
    }

    fn total(&self) -> i64 {
        i64::from(self.prefix[self.prefix.len() - 1])
    }

    /// Working days in `[start, x)` (negative: minus those in `[x, start)`).
    fn cum(&self, x: i64) -> i64 {
        if x <= self.start {
            weekdays_before(x) - weekdays_before(self.start)
        } else if x <= self.end + 1 {
            i64::from(self.prefix[(x - self.start) as usize])
        } else {
            self.total() + weekdays_before(x) - weekdays_before(self.end + 1)
        }
    }

    /// The working day `d` with `cum(d) == k`.
    fn day_at(&self, k: i64) -> i64 {
        if k < 0 {
            nth_weekday(k + weekdays_before(self.start))
        } else if k < self.total() {
            let k = k as u32; // 0 <= k < total <= u32::MAX
            let i = self.prefix[1..].partition_point(|&p| p <= k);
            self.start + i as i64
        } else {
            nth_weekday(k - self.total() + weekdays_before(self.end + 1))
        }
    }

    fn is_working(&self, x: i64) -> bool {
        if x < self.start || x > self.end {
            !is_weekend(x)
        } else {
            let i = (x - self.start) as usize;
            self.prefix[i + 1] != self.prefix[i]
        }
    }

    /// The year slot of an indexed day.
    fn slot(&self, d: Day) -> Option<usize> {
        let x = i64::from(d.0);
        if x < self.start || x > self.end {
            None
        } else {
            Some((d.year() - self.first_year) as usize)
        }
    }
}

// ---------------------------------------------------------------------------
// The file format.

/// The top-level object: `years`, plus any other keys (`source`, `timezone`,
/// ...), which are ignored.
struct FileJson {
    years: YearsJson,
}

impl<'de> Deserialize<'de> for FileJson {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FileJson;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object with a `years` key")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FileJson, A::Error> {
                let mut years = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key == "years" {
                        if years.is_some() {
                            return Err(serde::de::Error::duplicate_field("years"));
                        }
                        years = Some(map.next_value::<YearsJson>()?);
                    } else {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                let years = years.ok_or_else(|| serde::de::Error::missing_field("years"))?;
                Ok(FileJson { years })
            }
        }
        deserializer.deserialize_map(V)
    }
}

/// The `years` object, in file order, keeping duplicate keys.
struct YearsJson(Vec<(String, YearJson)>);

impl<'de> Deserialize<'de> for YearsJson {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = YearsJson;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object mapping \"YYYY\" to a year's lists")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<YearsJson, A::Error> {
                let mut v = Vec::new();
                while let Some(entry) = map.next_entry::<String, YearJson>()? {
                    v.push(entry);
                }
                Ok(YearsJson(v))
            }
        }
        deserializer.deserialize_map(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YearJson {
    holidays_on_weekdays: Vec<String>,
    makeup_working_days: Vec<String>,
    #[serde(default)]
    working_day_count: Option<u32>,
}

/// Parses and validates a calendar file into years.
fn parse_file(file: &str, json: &str) -> Result<Vec<(i32, YearData)>, CalendarError> {
    let parsed: FileJson = serde_json::from_str(json).map_err(|e| {
        let message = match e.classify() {
            serde_json::error::Category::Data => format!("not a calendar file: {e}"),
            _ => format!("invalid json: {e}"),
        };
        CalendarError::Json {
            file: file.to_string(),
            message,
        }
    })?;
    if parsed.years.0.is_empty() {
        return Err(CalendarError::NoYears {
            file: file.to_string(),
        });
    }
    let (min_year, max_year) = year_range();
    let mut out: Vec<(i32, YearData)> = Vec::with_capacity(parsed.years.0.len());
    for (key, y) in parsed.years.0 {
        let bad_year = |problem: String| CalendarError::BadYear {
            file: file.to_string(),
            year: key.clone(),
            problem,
        };
        if key.len() != 4 || !key.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad_year("is not a four-digit year".into()));
        }
        let year: i32 = key
            .parse()
            .map_err(|_| bad_year("is not a four-digit year".into()))?;
        if year < min_year || year > max_year {
            return Err(bad_year(format!(
                "is outside the supported range {min_year} to {max_year}"
            )));
        }
        if out.iter().any(|(y2, _)| *y2 == year) {
            return Err(bad_year("is listed twice".into()));
        }
        let holidays = parse_list(
            file,
            year,
            "holidays_on_weekdays",
            &y.holidays_on_weekdays,
            false,
        )?;
        let makeups = parse_list(
            file,
            year,
            "makeup_working_days",
            &y.makeup_working_days,
            true,
        )?;
        let weekdays = weekdays_before(jan1(year + 1)) - weekdays_before(jan1(year));
        let computed = (weekdays - holidays.len() as i64 + makeups.len() as i64) as u32;
        if let Some(stated) = y.working_day_count {
            if stated != computed {
                return Err(CalendarError::CountMismatch {
                    file: file.to_string(),
                    year,
                    stated,
                    computed,
                });
            }
        }
        out.push((
            year,
            YearData {
                file: file.to_string(),
                holidays,
                makeups,
            },
        ));
    }
    Ok(out)
}

/// Parses one list of a year: strict `YYYY-MM-DD`, in the year, on a weekday
/// (holidays) or a weekend day (make-up days), no duplicates. Returns the days
/// sorted.
fn parse_list(
    file: &str,
    year: i32,
    list: &'static str,
    dates: &[String],
    weekend: bool,
) -> Result<Vec<Day>, CalendarError> {
    let mut days = Vec::with_capacity(dates.len());
    for s in dates {
        let bad = |problem: String| CalendarError::BadDate {
            file: file.to_string(),
            year,
            list,
            date: s.clone(),
            problem,
        };
        let shape_ok = s.len() == 10
            && s.bytes().enumerate().all(|(i, b)| {
                if i == 4 || i == 7 {
                    b == b'-'
                } else {
                    b.is_ascii_digit()
                }
            });
        let d = match shape_ok.then(|| Day::parse(s)) {
            Some(Ok(d)) => d,
            _ => return Err(bad("is not a date (YYYY-MM-DD)".into())),
        };
        if d.year() != year {
            return Err(bad(format!("is not in {year}")));
        }
        let wd = WEEKDAY_NAMES[d.weekday() as usize];
        if d.is_weekend() != weekend {
            return Err(bad(if weekend {
                format!("is a {wd}: make-up working days must be saturdays or sundays")
            } else {
                format!("is a {wd}: holidays listed must be mondays to fridays")
            }));
        }
        if days.contains(&d) {
            return Err(bad("is listed twice".into()));
        }
        days.push(d);
    }
    days.sort_unstable();
    Ok(days)
}

// ---------------------------------------------------------------------------
// The calendar.

impl Calendar {
    /// A built-in calendar by name: `cn-mainland` (the compiled-in State Council
    /// data, 2024 to 2026) or `weekdays` (no data, see [`Calendar::weekdays`]).
    /// Any other name is [`CalendarError::UnknownBuiltin`].
    pub fn builtin(name: &str) -> Result<Calendar, CalendarError> {
        match name {
            "cn-mainland" => {
                let mut cal = Calendar::empty("cn-mainland");
                cal.add_years_from_json("built-in cn-mainland", CN_MAINLAND_JSON)?;
                Ok(cal)
            }
            "weekdays" => Ok(Calendar::weekdays()),
            _ => Err(CalendarError::UnknownBuiltin(name.to_string())),
        }
    }

    /// A calendar with no data: Monday to Friday everywhere (every date is
    /// "not covered").
    pub fn weekdays() -> Calendar {
        Calendar::empty("weekdays")
    }

    fn empty(name: &str) -> Calendar {
        let years = BTreeMap::new();
        let index = Index::build(&years);
        Calendar {
            name: name.to_string(),
            inner: Arc::new(Inner { years, index }),
        }
    }

    /// Adds (or replaces) years from a calendar file's JSON text, in the format
    /// of the built-in data (`docs/calendar.md`). `source` names the file in
    /// errors. A year present in the file replaces that year entirely; other
    /// years are kept. The file is validated as a whole first: on error the
    /// calendar is unchanged.
    pub fn add_years_from_json(&mut self, source: &str, json: &str) -> Result<(), CalendarError> {
        let loaded = parse_file(source, json)?;
        let mut years = self.inner.years.clone();
        years.extend(loaded);
        let index = Index::build(&years);
        self.inner = Arc::new(Inner { years, index });
        Ok(())
    }

    /// The calendar's name (the built-in it started from).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Is `d` a working day. Dates in uncovered years are working days when
    /// they are Monday to Friday.
    pub fn is_working(&self, d: Day) -> bool {
        self.inner.index.is_working(i64::from(d.0))
    }

    /// Is `d`'s year in the loaded data. When it is not, the calendar falls
    /// back to Monday to Friday for `d`.
    pub fn is_covered(&self, d: Day) -> bool {
        let ix = &self.inner.index;
        ix.slot(d).is_some_and(|i| ix.covered[i])
    }

    /// The first working day `D >= d` (`d` itself if it is one). Saturates at
    /// the end of `Day`'s range.
    pub fn next_working_day_on_or_after(&self, d: Day) -> Day {
        let ix = &self.inner.index;
        clamp_day(ix.day_at(ix.cum(i64::from(d.0))))
    }

    /// The `n`-th working day strictly after `d` (`n = 1`: the next working day
    /// after `d`, whether or not `d` is one); `n = 0` returns `d`. Saturates at
    /// the end of `Day`'s range.
    pub fn nth_working_day_after(&self, d: Day, n: u32) -> Day {
        if n == 0 {
            return d;
        }
        let ix = &self.inner.index;
        clamp_day(ix.day_at(ix.cum(i64::from(d.0) + 1) + i64::from(n) - 1))
    }

    /// The number of working days `D` with `a <= D < b` (0 if `b <= a`).
    pub fn working_days_between(&self, a: Day, b: Day) -> u32 {
        if b <= a {
            return 0;
        }
        let ix = &self.inner.index;
        (ix.cum(i64::from(b.0)) - ix.cum(i64::from(a.0))) as u32
    }

    /// The loaded years, ascending.
    pub fn covered_years(&self) -> Vec<i32> {
        self.inner.years.keys().copied().collect()
    }

    /// The file (as passed to [`Calendar::add_years_from_json`], or
    /// `built-in cn-mainland`) that the loaded `year` came from.
    pub fn year_source(&self, year: i32) -> Option<&str> {
        self.inner.years.get(&year).map(|y| y.file.as_str())
    }

    /// 31 December of the last loaded year, or `None` when nothing is loaded.
    /// Earlier years may be uncovered: see
    /// [`Calendar::first_uncovered_day_on_or_after`].
    pub fn last_covered_day(&self) -> Option<Day> {
        let (&y, _) = self.inner.years.last_key_value()?;
        Some(Day((jan1(y + 1) - 1) as i32))
    }

    /// The first day `D >= d` whose year is not loaded: `d` itself when `d` is
    /// not covered, else 1 January of the first unloaded year after `d`'s.
    pub fn first_uncovered_day_on_or_after(&self, d: Day) -> Day {
        let ix = &self.inner.index;
        match ix.slot(d) {
            Some(i) if ix.covered[i] => Day(ix.first_uncovered[i]),
            _ => d,
        }
    }

    /// The first uncovered day in `[d, d + days]`, if any: for the daemon's
    /// notice that the data runs out soon (`days = 30`), or that it has run out
    /// already (the result is `d`).
    pub fn first_uncovered_day_within(&self, d: Day, days: u32) -> Option<Day> {
        let u = self.first_uncovered_day_on_or_after(d);
        (i64::from(u.0) <= i64::from(d.0) + i64::from(days)).then_some(u)
    }
}

impl fmt::Debug for Calendar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Calendar")
            .field("name", &self.name)
            .field("covered_years", &self.covered_years())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeSet, HashMap};

    fn day(s: &str) -> Day {
        Day::parse(s).unwrap()
    }

    fn cn() -> Calendar {
        Calendar::builtin("cn-mainland").unwrap()
    }

    fn year_days(y: i32) -> (Day, Day) {
        (Day(jan1(y) as i32), Day(jan1(y + 1) as i32))
    }

    fn err(cal: &mut Calendar, json: &str) -> String {
        cal.add_years_from_json("extra.json", json)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn builtin_counts_match_the_data() {
        let cal = cn();
        let data: serde_json::Value = serde_json::from_str(CN_MAINLAND_JSON).unwrap();
        let years = data["years"].as_object().unwrap();
        assert_eq!(years.len(), 3);
        for (y, v) in years {
            let (a, b) = year_days(y.parse().unwrap());
            let stated = v["working_day_count"].as_u64().unwrap() as u32;
            assert_eq!(cal.working_days_between(a, b), stated, "{y}");
        }
        for (y, n) in [(2024, 251), (2025, 248), (2026, 248)] {
            let (a, b) = year_days(y);
            assert_eq!(cal.working_days_between(a, b), n, "{y}");
            let by_day = (a.0..b.0).filter(|&x| cal.is_working(Day(x))).count();
            assert_eq!(by_day as u32, n, "{y}");
        }
    }

    #[test]
    fn spring_festival_and_national_day_2026() {
        let cal = cn();
        for s in ["2026-02-14", "2026-02-28", "2026-10-10"] {
            assert_eq!(day(s).weekday(), 5, "{s} is a saturday");
            assert!(cal.is_working(day(s)), "{s} is a make-up day");
        }
        for x in day("2026-02-16").0..=day("2026-02-23").0 {
            assert!(!cal.is_working(Day(x)), "{}", Day(x));
        }
        for x in day("2026-10-01").0..=day("2026-10-07").0 {
            assert!(!cal.is_working(Day(x)), "{}", Day(x));
        }
        assert!(cal.is_working(day("2026-10-08")));
        assert!(cal.is_working(day("2026-02-13")));
        assert!(cal.is_working(day("2026-02-24")));
        assert!(!cal.is_working(day("2026-02-15")));
        assert_eq!(
            cal.nth_working_day_after(day("2026-09-30"), 1),
            day("2026-10-08")
        );
        assert_eq!(
            cal.nth_working_day_after(day("2026-09-30"), 3),
            day("2026-10-10")
        );
        assert_eq!(
            cal.nth_working_day_after(day("2026-09-30"), 4),
            day("2026-10-12")
        );
        assert_eq!(
            cal.nth_working_day_after(day("2026-02-13"), 1),
            day("2026-02-14")
        );
        assert_eq!(
            cal.nth_working_day_after(day("2026-02-14"), 1),
            day("2026-02-24")
        );
        assert_eq!(
            cal.nth_working_day_after(day("2026-10-03"), 0),
            day("2026-10-03")
        );
        assert_eq!(
            cal.next_working_day_on_or_after(day("2026-10-01")),
            day("2026-10-08")
        );
        assert_eq!(
            cal.next_working_day_on_or_after(day("2026-10-08")),
            day("2026-10-08")
        );
        assert_eq!(
            cal.working_days_between(day("2026-10-01"), day("2026-10-12")),
            3
        );
        assert_eq!(
            cal.working_days_between(day("2026-10-12"), day("2026-10-01")),
            0
        );
        // Across the end of the data: 2026-12-31 is a Thursday, 2027 falls back.
        assert_eq!(
            cal.nth_working_day_after(day("2026-12-31"), 1),
            day("2027-01-01")
        );
        assert_eq!(
            cal.working_days_between(day("2026-12-31"), day("2027-01-05")),
            3
        );
    }

    #[test]
    fn coverage_and_fallback() {
        let cal = cn();
        assert_eq!(cal.name(), "cn-mainland");
        assert_eq!(cal.covered_years(), vec![2024, 2025, 2026]);
        assert_eq!(cal.year_source(2025), Some("built-in cn-mainland"));
        assert_eq!(cal.year_source(2027), None);
        assert_eq!(cal.last_covered_day(), Some(day("2026-12-31")));
        assert!(cal.is_covered(day("2024-01-01")));
        assert!(cal.is_covered(day("2026-12-31")));
        assert!(!cal.is_covered(day("2023-12-31")));
        assert!(!cal.is_covered(day("2027-01-01")));
        assert!(!cal.is_covered(Day(i32::MIN)));
        assert!(!cal.is_covered(Day(i32::MAX)));
        // 2027-01-01 is a Friday: working under the fallback.
        assert!(cal.is_working(day("2027-01-01")));
        assert!(!cal.is_working(day("2027-01-02")));
        let d = day("2026-06-01");
        assert_eq!(cal.first_uncovered_day_on_or_after(d), day("2027-01-01"));
        assert_eq!(
            cal.first_uncovered_day_on_or_after(day("2023-05-05")),
            day("2023-05-05")
        );
        assert_eq!(cal.first_uncovered_day_within(d, 30), None);
        let dec = day("2026-12-02");
        assert_eq!(cal.first_uncovered_day_within(dec, 29), None);
        assert_eq!(
            cal.first_uncovered_day_within(dec, 30),
            Some(day("2027-01-01"))
        );
        let late = day("2027-03-01");
        assert_eq!(cal.first_uncovered_day_within(late, 0), Some(late));

        let w = Calendar::weekdays();
        assert_eq!(w.name(), "weekdays");
        assert!(w.covered_years().is_empty());
        assert_eq!(w.last_covered_day(), None);
        assert!(!w.is_covered(day("2026-10-01")));
        assert!(w.is_working(day("2026-10-01")));
        let (a, b) = year_days(2026);
        assert_eq!(w.working_days_between(a, b), 261);
        assert_eq!(Calendar::builtin("weekdays").unwrap().name(), "weekdays");
        assert!(format!("{cal:?}").len() < 100);
    }

    #[test]
    fn unknown_builtin_lists_the_known_ones() {
        let e = Calendar::builtin("cn").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown built-in calendar `cn` (known: cn-mainland, weekdays)"
        );
        for n in BUILTIN_NAMES {
            assert!(e.to_string().contains(n));
            assert!(Calendar::builtin(n).is_ok());
        }
    }

    #[test]
    fn added_years_extend_and_replace() {
        let mut cal = cn();
        let json = r#"{"years": {
            "2027": {"holidays_on_weekdays": ["2027-01-01"],
                     "makeup_working_days": ["2027-01-02"], "working_day_count": 261},
            "2026": {"holidays_on_weekdays": [], "makeup_working_days": []}
        }}"#;
        cal.add_years_from_json("extra.json", json).unwrap();
        assert_eq!(cal.covered_years(), vec![2024, 2025, 2026, 2027]);
        assert_eq!(cal.year_source(2026), Some("extra.json"));
        assert_eq!(cal.year_source(2024), Some("built-in cn-mainland"));
        // 2026 replaced: plain Monday to Friday.
        assert!(cal.is_working(day("2026-10-01")));
        assert!(!cal.is_working(day("2026-10-10")));
        let (a, b) = year_days(2026);
        assert_eq!(cal.working_days_between(a, b), 261);
        // 2025 kept.
        assert!(!cal.is_working(day("2025-10-01")));
        assert!(!cal.is_working(day("2027-01-01")));
        assert!(cal.is_working(day("2027-01-02")));
        assert_eq!(cal.last_covered_day(), Some(day("2027-12-31")));
        assert_eq!(
            cal.first_uncovered_day_on_or_after(day("2024-03-03")),
            day("2028-01-01")
        );
        // Clones made before are unaffected.
        let before = cn();
        let clone = before.clone();
        assert!(!clone.is_working(day("2026-10-01")));
    }

    #[test]
    fn uncovered_gap_between_years() {
        let mut cal = cn();
        let json =
            r#"{"years": {"2028": {"holidays_on_weekdays": [], "makeup_working_days": []}}}"#;
        cal.add_years_from_json("y2028.json", json).unwrap();
        assert_eq!(
            cal.first_uncovered_day_on_or_after(day("2025-01-01")),
            day("2027-01-01")
        );
        assert_eq!(
            cal.first_uncovered_day_on_or_after(day("2028-02-01")),
            day("2029-01-01")
        );
        assert_eq!(cal.last_covered_day(), Some(day("2028-12-31")));
    }

    #[test]
    fn the_last_loadable_year() {
        let mut cal = Calendar::weekdays();
        let (_, max) = year_range();
        assert!(max >= MAX_DAY.year());
        let json = format!(
            r#"{{"years": {{"{max}": {{"holidays_on_weekdays": [], "makeup_working_days": []}}}}}}"#
        );
        cal.add_years_from_json("last.json", &json).unwrap();
        let (a, b) = year_days(max);
        assert!(cal.is_covered(a) && cal.is_covered(Day(b.0 - 1)) && !cal.is_covered(b));
        assert_eq!(cal.first_uncovered_day_on_or_after(a), b);
        assert_eq!(cal.last_covered_day(), Some(Day(b.0 - 1)));
    }

    #[test]
    fn bad_files_are_named_precisely() {
        let mut cal = cn();
        let y = |body: &str| format!(r#"{{"years": {{"2027": {body}}}}}"#);
        let lists = |h: &str, m: &str| {
            y(&format!(
                r#"{{"holidays_on_weekdays": [{h}], "makeup_working_days": [{m}]}}"#
            ))
        };
        let cases: Vec<(String, &str)> = vec![
            (
                "{".into(),
                "calendar file `extra.json`: invalid json: EOF while parsing an object at line 1 column 1",
            ),
            (
                "[]".into(),
                "calendar file `extra.json`: not a calendar file: invalid type: sequence, expected an object with a `years` key at line 1 column 0",
            ),
            (
                "{}".into(),
                "calendar file `extra.json`: not a calendar file: missing field `years` at line 1 column 2",
            ),
            (
                r#"{"years": {}}"#.into(),
                "calendar file `extra.json`: `years` is empty",
            ),
            (
                y(r#"{"holidays_on_weekdays": []}"#),
                "calendar file `extra.json`: not a calendar file: missing field `makeup_working_days` at line 1 column 47",
            ),
            (
                y(r#"{"holidays": [], "holidays_on_weekdays": [], "makeup_working_days": []}"#),
                "calendar file `extra.json`: not a calendar file: unknown field `holidays`, expected one of `holidays_on_weekdays`, `makeup_working_days`, `working_day_count` at line 1 column 30",
            ),
            (
                r#"{"years": {"27": {"holidays_on_weekdays": [], "makeup_working_days": []}}}"#.into(),
                "calendar file `extra.json`: year `27` is not a four-digit year",
            ),
            (
                r#"{"years": {"1999": {"holidays_on_weekdays": [], "makeup_working_days": []}}}"#.into(),
                "calendar file `extra.json`: year `1999` is outside the supported range 2000 to 2178",
            ),
            (
                r#"{"years": {"2027": {"holidays_on_weekdays": [], "makeup_working_days": []},
                              "2027": {"holidays_on_weekdays": [], "makeup_working_days": []}}}"#.into(),
                "calendar file `extra.json`: year `2027` is listed twice",
            ),
            (
                lists(r#""2027-1-1""#, ""),
                "calendar file `extra.json`, year 2027: `2027-1-1` in holidays_on_weekdays is not a date (YYYY-MM-DD)",
            ),
            (
                lists(r#""2027-02-30""#, ""),
                "calendar file `extra.json`, year 2027: `2027-02-30` in holidays_on_weekdays is not a date (YYYY-MM-DD)",
            ),
            (
                lists(r#""2026-12-31""#, ""),
                "calendar file `extra.json`, year 2027: `2026-12-31` in holidays_on_weekdays is not in 2027",
            ),
            (
                lists("", r#""2028-01-01""#),
                "calendar file `extra.json`, year 2027: `2028-01-01` in makeup_working_days is not in 2027",
            ),
            (
                lists(r#""2027-01-02""#, ""),
                "calendar file `extra.json`, year 2027: `2027-01-02` in holidays_on_weekdays is a saturday: holidays listed must be mondays to fridays",
            ),
            (
                lists("", r#""2027-01-04""#),
                "calendar file `extra.json`, year 2027: `2027-01-04` in makeup_working_days is a monday: make-up working days must be saturdays or sundays",
            ),
            (
                lists(r#""2027-01-01", "2027-01-04", "2027-01-01""#, ""),
                "calendar file `extra.json`, year 2027: `2027-01-01` in holidays_on_weekdays is listed twice",
            ),
            (
                lists("", r#""2027-01-03", "2027-01-03""#),
                "calendar file `extra.json`, year 2027: `2027-01-03` in makeup_working_days is listed twice",
            ),
            (
                y(r#"{"holidays_on_weekdays": ["2027-01-01"], "makeup_working_days": [], "working_day_count": 261}"#),
                "calendar file `extra.json`, year 2027: working_day_count is 261 but the dates give 260",
            ),
        ];
        for (json, want) in cases {
            assert_eq!(err(&mut cal, &json), want, "{json}");
        }
    }

    #[test]
    fn the_documented_example_loads() {
        let doc = include_str!("../../docs/calendar.md");
        let start = doc.find("```json\n").unwrap() + "```json\n".len();
        let len = doc[start..].find("```").unwrap();
        let mut cal = cn();
        cal.add_years_from_json("example.json", &doc[start..start + len])
            .unwrap();
        assert!(cal.is_covered(day("2027-06-01")));
        assert!(cal.is_working(day("2027-02-06")));
        assert!(!cal.is_working(day("2027-02-08")));
    }

    #[test]
    fn a_bad_file_changes_nothing() {
        let mut cal = cn();
        let json = r#"{"years": {
            "2026": {"holidays_on_weekdays": [], "makeup_working_days": []},
            "2027": {"holidays_on_weekdays": ["2027-01-02"], "makeup_working_days": []}
        }}"#;
        assert!(cal.add_years_from_json("bad.json", json).is_err());
        assert_eq!(cal.covered_years(), vec![2024, 2025, 2026]);
        assert!(!cal.is_working(day("2026-10-01")));
        assert_eq!(cal.year_source(2026), Some("built-in cn-mainland"));
    }

    #[test]
    fn extremes_do_not_panic() {
        let cal = cn();
        for x in [i32::MIN, i32::MIN + 1, -1, 0, i32::MAX - 1, i32::MAX] {
            let d = Day(x);
            let _ = cal.is_working(d);
            let _ = cal.is_covered(d);
            let _ = cal.next_working_day_on_or_after(d);
            let _ = cal.nth_working_day_after(d, u32::MAX);
            let _ = cal.working_days_between(Day(i32::MIN), d);
            let _ = cal.first_uncovered_day_within(d, u32::MAX);
        }
        assert_eq!(
            cal.nth_working_day_after(Day(i32::MAX - 10), 100),
            Day(i32::MAX)
        );
        let all = cal.working_days_between(Day(i32::MIN), Day(i32::MAX));
        assert!(all > 3_000_000_000);
    }

    #[test]
    fn closed_form_weekday_arithmetic() {
        for x in -30i64..30 {
            let by_day = (MONDAY_ANCHOR..x)
                .filter(|&d| !Day(d as i32).is_weekend())
                .count() as i64;
            let back = (x..MONDAY_ANCHOR)
                .filter(|&d| !Day(d as i32).is_weekend())
                .count() as i64;
            assert_eq!(weekdays_before(x), by_day - back, "{x}");
            assert_eq!(is_weekend(x), Day(x as i32).is_weekend());
            if !Day(x as i32).is_weekend() {
                assert_eq!(nth_weekday(weekdays_before(x)), x);
            }
        }
    }

    // ---- property test against a day-by-day model ----

    /// Day-by-day model: overrides of Monday to Friday, and the covered years.
    #[derive(Clone, Debug, Default)]
    struct Model {
        over: HashMap<i32, bool>,
        covered: BTreeSet<i32>,
    }

    impl Model {
        fn load(&mut self, json: &serde_json::Value) {
            for (y, v) in json["years"].as_object().unwrap() {
                let y: i32 = y.parse().unwrap();
                let (a, b) = year_days(y);
                for x in a.0..b.0 {
                    self.over.remove(&x);
                }
                for (list, working) in [
                    ("holidays_on_weekdays", false),
                    ("makeup_working_days", true),
                ] {
                    for s in v[list].as_array().unwrap() {
                        self.over.insert(day(s.as_str().unwrap()).0, working);
                    }
                }
                self.covered.insert(y);
            }
        }
        fn working(&self, x: i32) -> bool {
            self.over.get(&x).copied().unwrap_or(!Day(x).is_weekend())
        }
        fn covered(&self, x: i32) -> bool {
            self.covered.contains(&Day(x).year())
        }
    }

    /// A random, valid calendar file for some of the years 2023 to 2028.
    fn random_file() -> impl Strategy<Value = serde_json::Value> {
        let year = (
            2023i32..=2028,
            proptest::collection::vec(0i32..366, 0..25),
            proptest::collection::vec(0i32..366, 0..10),
            any::<bool>(),
        );
        proptest::collection::vec(year, 1..4).prop_map(|years| {
            let mut map = serde_json::Map::new();
            for (y, hs, ms, with_count) in years {
                let (a, b) = year_days(y);
                let pick = |offs: &[i32], weekend: bool| {
                    let mut v: Vec<i32> = offs
                        .iter()
                        .map(|o| a.0 + o)
                        .filter(|&x| x < b.0 && Day(x).is_weekend() == weekend)
                        .collect();
                    v.sort_unstable();
                    v.dedup();
                    v
                };
                let h = pick(&hs, false);
                let m = pick(&ms, true);
                let weekdays = (a.0..b.0).filter(|&x| !Day(x).is_weekend()).count();
                let strs =
                    |v: &[i32]| -> Vec<String> { v.iter().map(|&x| Day(x).to_string()).collect() };
                let mut entry = serde_json::json!({
                    "holidays_on_weekdays": strs(&h),
                    "makeup_working_days": strs(&m),
                });
                if with_count {
                    entry["working_day_count"] = (weekdays - h.len() + m.len()).into();
                }
                map.insert(y.to_string(), entry);
            }
            serde_json::json!({ "source": "proptest", "years": map })
        })
    }

    fn around() -> impl Strategy<Value = i32> {
        let (_, max) = year_range();
        let end = jan1(max + 1) as i32;
        prop_oneof![
            8 => day("2022-12-01").0..day("2029-02-01").0,
            1 => (MIN_DAY.0 - 400)..(MIN_DAY.0 + 400),
            1 => (end - 400)..(end + 400),
        ]
    }

    proptest! {
        #[test]
        fn queries_match_a_day_by_day_model(
            base_cn in any::<bool>(),
            files in proptest::collection::vec(random_file(), 0..3),
            a in around(),
            span in 0i32..500,
            n in 0u32..400,
        ) {
            let mut cal = if base_cn { cn() } else { Calendar::weekdays() };
            let mut model = Model::default();
            if base_cn {
                model.load(&serde_json::from_str(CN_MAINLAND_JSON).unwrap());
            }
            for (i, f) in files.iter().enumerate() {
                cal.add_years_from_json(&format!("f{i}.json"), &f.to_string()).unwrap();
                model.load(f);
            }
            prop_assert_eq!(cal.covered_years(), model.covered.iter().copied().collect::<Vec<_>>());
            prop_assert_eq!(
                cal.last_covered_day(),
                model.covered.last().map(|&y| Day(year_days(y).1 .0 - 1))
            );
            let b = a + span;
            let mut count = 0u32;
            for x in a..b {
                prop_assert_eq!(cal.is_working(Day(x)), model.working(x), "{}", Day(x));
                prop_assert_eq!(cal.is_covered(Day(x)), model.covered(x), "{}", Day(x));
                prop_assert_eq!(cal.working_days_between(Day(a), Day(x)), count);
                prop_assert_eq!(cal.working_days_between(Day(x), Day(a)), 0);
                count += u32::from(model.working(x));
            }
            prop_assert_eq!(cal.working_days_between(Day(a), Day(b)), count);

            // next working day on or after a
            let mut x = a;
            while !model.working(x) { x += 1; }
            prop_assert_eq!(cal.next_working_day_on_or_after(Day(a)), Day(x));

            // n-th working day after a
            let mut x = a;
            let mut left = n;
            while left > 0 {
                x += 1;
                if model.working(x) { left -= 1; }
            }
            prop_assert_eq!(cal.nth_working_day_after(Day(a), n), Day(x));
            if n > 0 {
                prop_assert_eq!(cal.working_days_between(Day(a + 1), Day(x + 1)), n);
            }

            // first uncovered day on or after a
            let mut x = a;
            while model.covered(x) { x += 1; }
            prop_assert_eq!(cal.first_uncovered_day_on_or_after(Day(a)), Day(x));
            let within = cal.first_uncovered_day_within(Day(a), span as u32);
            prop_assert_eq!(within, (x <= b).then_some(Day(x)));
        }
    }
}
