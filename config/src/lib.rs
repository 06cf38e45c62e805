//! Red Cloud configuration: TOML in, validated typed values out.
//!
//! Two stages (see the house style, "Config in two stages"): `raw` holds serde
//! structs that mirror the file with `deny_unknown_fields` and the documented
//! defaults; [`validate`] turns them into the engine's typed values
//! ([`EngineConfig`]) and the offices, naming the bad key and why in every
//! [`ConfigError`]. Durations are strings (`"10d"`, `"1h30m"`, `"10wd"`), parsed
//! by [`parse_duration`].
//!
//! With no config file at all, the daemon and the CLI run on
//! [`default_config`], the embedded `default.toml` ([`DEFAULT_TOML`]), which
//! equals the contract's default policies.
//!
//! This crate reads files (the config and the calendar files it lists) and
//! nothing else: no network, no clock, no environment.

#![warn(missing_docs)]

use std::path::{Path, PathBuf};

pub use redcloud_engine::policy::EngineConfig;

pub mod daemon;
pub mod duration;
pub mod error;
pub mod offices;
pub mod policies;
mod raw;
pub mod secret;
pub mod sources;
pub mod validate;

pub use daemon::{AdminConfig, DaemonConfig, Durability, LogFormat};
pub use duration::{parse_duration, ConfigDuration};
pub use error::ConfigError;
pub use offices::{Office, OfficeContacts};
pub use secret::Secret;
pub use sources::SourcesConfig;

/// The embedded default configuration (`config/default.toml`): what
/// [`default_config`] parses, and what Red Cloud runs with when no config file
/// is given.
pub const DEFAULT_TOML: &str = include_str!("../default.toml");

/// A validated configuration.
///
/// `Debug` does not print the `[dispatch]` table (its URLs may hold keys or
/// passwords), only how many keys it has.
#[derive(Clone)]
pub struct Config {
    /// What the engine runs on.
    pub engine: EngineConfig,
    /// The offices, sorted by id: `offices[i]` is `engine.offices[i]`.
    pub offices: Vec<Office>,
    /// The file this came from, if any.
    pub source: Option<PathBuf>,
    /// `[daemon]`: how `redcloud run` runs.
    pub daemon: DaemonConfig,
    /// `[admin]`: the HTTP listener and the admin API's token.
    pub admin: AdminConfig,
    /// `[sources.*]`: what `redcloud run` consumes.
    pub sources: SourcesConfig,
    /// `[dispatch]` as written (empty when absent): routes, channels, limits
    /// and templates of the dispatcher. This crate does not look inside; the
    /// binary validates it with `redcloud_connectors::dispatch::DispatchConfig::from_toml`
    /// when it loads the file, so errors still name the key path
    /// (`dispatch.channels.sms.per_recipient[1].limit: must be at least 1`).
    pub dispatch: toml::Table,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("engine", &self.engine)
            .field("offices", &self.offices)
            .field("source", &self.source)
            .field("daemon", &self.daemon)
            .field("admin", &self.admin)
            .field("sources", &self.sources)
            .field(
                "dispatch",
                &format_args!("<{} keys, not shown>", self.dispatch.len()),
            )
            .finish()
    }
}

impl Config {
    /// The office with this id.
    pub fn office(&self, id: &str) -> Option<&Office> {
        self.offices.iter().find(|o| o.id == id)
    }
}

/// Reads and validates a config file. Calendar files it lists are read
/// relative to the file's folder. Every error names the file.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    let base = path.parent().unwrap_or(Path::new(""));
    let mut config = from_toml_str(&text, Some(base)).map_err(|error| ConfigError::InFile {
        file: path.to_path_buf(),
        error: Box::new(error),
    })?;
    config.source = Some(path.to_path_buf());
    Ok(config)
}

/// Parses and validates config text. Relative calendar files are read from
/// `base_dir`, or from the current directory when it is `None`.
pub fn from_toml_str(text: &str, base_dir: Option<&Path>) -> Result<Config, ConfigError> {
    let de = toml::Deserializer::parse(text).map_err(|e| syntax_error(text, &e))?;
    let raw: raw::RawConfig =
        serde_path_to_error::deserialize(de).map_err(|e| deserialize_error(text, e))?;
    validate::validate(raw, base_dir)
}

/// The embedded default configuration, validated.
///
/// # Panics
///
/// Never in a released build: a test checks that [`DEFAULT_TOML`] is valid and
/// equals the contract's defaults.
pub fn default_config() -> Config {
    from_toml_str(DEFAULT_TOML, None).expect("the embedded default config is valid")
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..text.floor_char_boundary_compat(offset)];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

trait FloorCharBoundary {
    fn floor_char_boundary_compat(&self, i: usize) -> usize;
}

impl FloorCharBoundary for str {
    fn floor_char_boundary_compat(&self, i: usize) -> usize {
        let mut i = i.min(self.len());
        while !self.is_char_boundary(i) {
            i -= 1;
        }
        i
    }
}

fn syntax_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let (line, column) = e.span().map_or((1, 1), |s| line_col(text, s.start));
    ConfigError::Syntax {
        line,
        column,
        message: e.message().trim_end_matches('.').to_string(),
    }
}

fn deserialize_error(text: &str, e: serde_path_to_error::Error<toml::de::Error>) -> ConfigError {
    let path = e.path().to_string();
    let inner = e.inner();
    let line = inner.span().map(|s| line_col(text, s.start).0);
    let message = inner.message().trim_end_matches('.');
    let at = if path == "." || path.is_empty() {
        "top level".to_string()
    } else {
        path
    };
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some((key, expected)) = rest.split_once('`') {
            let expected = expected.trim_start_matches(',').trim();
            let expected = if expected == "there are no fields" {
                String::new()
            } else {
                expected.to_string()
            };
            // serde_path_to_error's path ends with the unknown key itself;
            // report the table that holds it.
            let table = at
                .strip_suffix(key)
                .and_then(|t| t.strip_suffix('.'))
                .filter(|t| !t.is_empty())
                .map_or_else(|| "top level".to_string(), str::to_string);
            return ConfigError::UnknownKey {
                key: key.to_string(),
                at: table,
                line,
                expected,
            };
        }
    }
    let reason = match message.strip_prefix("missing field ") {
        Some(rest) => format!("missing key {rest}"),
        None => message
            .replace("expected u32", "expected a whole number >= 0")
            .replace("expected a sequence", "expected an array")
            .replace("invalid type: sequence", "invalid type: array")
            .replace("expected a map", "expected a table")
            .replace("invalid type: map", "invalid type: table"),
    };
    ConfigError::Type {
        path: at,
        reason,
        line,
    }
}
