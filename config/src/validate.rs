//! Stage two: `RawConfig` -> [`Config`].
//!
//! Checks the general sections here (`timezone`, `[calendar]`, `[org]`,
//! `[dedup]`), hands `[offices.*]` and the policies to their modules, and holds
//! the helpers they share. Every error names the key path and why. The only I/O
//! is reading the calendar files listed in `calendar.files`.

use std::collections::HashSet;
use std::path::Path;

use redcloud_engine::calendar::Calendar;
use redcloud_engine::policy::EngineConfig;
use redcloud_engine::time::{Zone, MICROS_PER_HOUR};

use crate::duration::{parse_duration, ConfigDuration, DurationText};
use crate::error::ConfigError;
use crate::offices::{validate_offices, OfficeTable};
use crate::policies::validate_policies;
use crate::raw::{RawCalendar, RawConfig, RawOrg};
use crate::Config;

/// Most org levels.
pub const MAX_LEVELS: usize = 32;

/// Shortest `dedup.retention`, in microseconds.
pub const MIN_DEDUP_RETENTION: i64 = MICROS_PER_HOUR;

/// Validates a raw config; relative calendar files are read from `base_dir`
/// (the current directory when `None`).
pub(crate) fn validate(raw: RawConfig, base_dir: Option<&Path>) -> Result<Config, ConfigError> {
    let zone = Zone::new(&raw.timezone).map_err(|e| ConfigError::invalid("timezone", e))?;
    let calendar = load_calendar(&raw.calendar, base_dir)?;
    let levels = validate_levels(raw.org)?;
    let dedup_retention = calendar_duration("dedup.retention", &raw.dedup.retention)?;
    if dedup_retention < MIN_DEDUP_RETENTION {
        return Err(ConfigError::invalid(
            "dedup.retention",
            format!(
                "\"{}\" is too short: it must be at least 1h",
                raw.dedup.retention.0
            ),
        ));
    }
    let (office_ids, offices) = validate_offices(raw.offices)?;
    let (streaks, slas) = validate_policies(
        raw.streak_policies,
        raw.sla_policies,
        &OfficeTable::new(&office_ids),
    )?;
    Ok(Config {
        engine: EngineConfig {
            zone,
            calendar,
            levels,
            offices: office_ids,
            streaks,
            slas,
            dedup_retention,
        },
        offices,
        source: None,
        daemon: crate::daemon::validate_daemon(raw.daemon)?,
        admin: crate::daemon::validate_admin(raw.admin)?,
        sources: crate::sources::validate_sources(raw.sources, base_dir)?,
        dispatch: raw.dispatch,
    })
}

fn load_calendar(raw: &RawCalendar, base_dir: Option<&Path>) -> Result<Calendar, ConfigError> {
    let mut calendar = Calendar::builtin(&raw.builtin)
        .map_err(|e| ConfigError::invalid("calendar.builtin", e.to_string()))?;

    for (i, file) in raw.files.iter().enumerate() {
        let path = format!("calendar.files[{i}]");
        if file.trim().is_empty() {
            return Err(ConfigError::invalid(path, "must not be empty"));
        }
        let full = match base_dir {
            Some(dir) => dir.join(file),
            None => Path::new(file).to_path_buf(),
        };
        let shown = full.display().to_string();
        let json = std::fs::read_to_string(&full)
            .map_err(|e| ConfigError::invalid(&path, format!("cannot read {shown}: {e}")))?;
        calendar
            .add_years_from_json(&shown, &json)
            .map_err(|e| ConfigError::invalid(&path, e.to_string()))?;
    }
    Ok(calendar)
}

fn validate_levels(raw: RawOrg) -> Result<Vec<String>, ConfigError> {
    let n = raw.levels.len();
    if n == 0 || n > MAX_LEVELS {
        return Err(ConfigError::invalid(
            "org.levels",
            format!("must list 1 to {MAX_LEVELS} levels (found {n})"),
        ));
    }
    check_names("org.levels", &raw.levels)?;
    Ok(raw.levels)
}

/// A list of names (levels, cohorts, categories): each non-empty, none twice.
pub(crate) fn check_names(path: &str, names: &[String]) -> Result<(), ConfigError> {
    let mut seen = HashSet::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        if name.trim().is_empty() {
            return Err(ConfigError::invalid(
                format!("{path}[{i}]"),
                "must not be empty",
            ));
        }
        if !seen.insert(name.as_str()) {
            return Err(ConfigError::invalid(
                format!("{path}[{i}]"),
                format!("\"{name}\" is listed twice"),
            ));
        }
    }
    Ok(())
}

/// A key that takes calendar time or working days.
pub(crate) fn any_duration(path: &str, text: &DurationText) -> Result<ConfigDuration, ConfigError> {
    parse_duration(&text.0).map_err(|e| ConfigError::invalid(path, e))
}

/// A key that takes calendar time only: `"Nwd"` is rejected.
pub(crate) fn calendar_duration(path: &str, text: &DurationText) -> Result<i64, ConfigError> {
    any_duration(path, text)?.calendar_micros().ok_or_else(|| {
        ConfigError::invalid(
            path,
            format!(
                "\"{}\" is in working days, but this key takes calendar time only (ms, s, m, h, d)",
                text.0
            ),
        )
    })
}
