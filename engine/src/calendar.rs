//! The working-day calendar (contract section 4). PLACEHOLDER: being written.

use crate::time::Day;

/// A working-day calendar.
#[derive(Clone, Debug)]
pub struct Calendar {
    name: String,
}

/// Why a calendar could not be built.
#[derive(Debug, thiserror::Error)]
pub enum CalendarError {
    /// Unknown built-in name.
    #[error("unknown built-in calendar `{0}` (known: cn-mainland, weekdays)")]
    UnknownBuiltin(String),
    /// Bad data.
    #[error("calendar `{name}`: {reason}")]
    Invalid {
        /// Calendar name or file.
        name: String,
        /// What is wrong.
        reason: String,
    },
}

impl Calendar {
    /// A built-in calendar by name.
    pub fn builtin(name: &str) -> Result<Calendar, CalendarError> {
        Ok(Calendar { name: name.into() })
    }
    /// A calendar with no data: Monday to Friday everywhere (every date is
    /// "not covered").
    pub fn weekdays() -> Calendar {
        Calendar { name: "weekdays".into() }
    }
    /// Adds (or replaces) years from a calendar file's JSON text, in the format
    /// of the built-in data. `source` names the file in errors.
    pub fn add_years_from_json(&mut self, source: &str, json: &str) -> Result<(), CalendarError> {
        let _ = (source, json);
        Ok(())
    }
    /// Name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Is `d` a working day.
    pub fn is_working(&self, d: Day) -> bool {
        !d.is_weekend()
    }
}
