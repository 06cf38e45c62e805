//! [`ConfigError`]: what went wrong, at which key, and why.
//!
//! Every message is lowercase without a final period and starts with (or names)
//! the key path in the form `streak_policies[0].steps[1].after`, so an operator
//! can find the line to fix. Errors of [`crate::load_file`] are wrapped in
//! [`ConfigError::InFile`] and so name the file too.

use std::fmt;
use std::path::PathBuf;

/// Why a configuration could not be loaded.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file itself could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// An error in the config file `file` (the inner error says where and why).
    InFile {
        /// The config file.
        file: PathBuf,
        /// What is wrong in it.
        error: Box<ConfigError>,
    },
    /// The text is not valid TOML.
    Syntax {
        /// 1-based line.
        line: usize,
        /// 1-based column (in characters).
        column: usize,
        /// The TOML parser's explanation.
        message: String,
    },
    /// A key that the schema does not have (usually a typo).
    UnknownKey {
        /// The unknown key.
        key: String,
        /// Path of the table it is in (`streak_policies[0]`, or `top level`).
        at: String,
        /// 1-based line, when known.
        line: Option<usize>,
        /// The keys that table takes, as the deserializer lists them.
        expected: String,
    },
    /// A value of the wrong type or a missing key, found while reading the TOML.
    Type {
        /// Key path (`streak_policies[0].steps[0].after`).
        path: String,
        /// What was expected.
        reason: String,
        /// 1-based line, when known.
        line: Option<usize>,
    },
    /// A value that has the right type but breaks a rule.
    Invalid {
        /// Key path (`sla_policies[0].resolve_within`).
        path: String,
        /// Why it is wrong.
        reason: String,
    },
}

impl ConfigError {
    /// An [`ConfigError::Invalid`] error.
    pub fn invalid(path: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// The error without the [`ConfigError::InFile`] wrapper.
    pub fn innermost(&self) -> &ConfigError {
        match self {
            ConfigError::InFile { error, .. } => error.innermost(),
            other => other,
        }
    }

    /// The key path the error is about, if it is about one.
    pub fn key_path(&self) -> Option<&str> {
        match self.innermost() {
            ConfigError::UnknownKey { at, .. } => Some(at),
            ConfigError::Type { path, .. } | ConfigError::Invalid { path, .. } => Some(path),
            _ => None,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, error } => {
                write!(f, "cannot read config file {}: {error}", path.display())
            }
            ConfigError::InFile { file, error } => write!(f, "{}: {error}", file.display()),
            ConfigError::Syntax {
                line,
                column,
                message,
            } => write!(f, "invalid TOML at line {line}, column {column}: {message}"),
            ConfigError::UnknownKey {
                key,
                at,
                line,
                expected,
            } => {
                write!(f, "unknown key `{key}` at {at}")?;
                match (line, expected.is_empty()) {
                    (Some(l), false) => write!(f, " (line {l}; {expected})"),
                    (Some(l), true) => write!(f, " (line {l})"),
                    (None, false) => write!(f, " ({expected})"),
                    (None, true) => Ok(()),
                }
            }
            ConfigError::Type { path, reason, line } => {
                write!(f, "{path}: {reason}")?;
                match line {
                    Some(l) => write!(f, " (line {l})"),
                    None => Ok(()),
                }
            }
            ConfigError::Invalid { path, reason } => write!(f, "{path}: {reason}"),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // The causes are part of each message already; a chain would repeat them.
        None
    }
}
