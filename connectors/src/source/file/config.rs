//! Configuration of the NDJSON file source.

use std::path::PathBuf;

use serde::Deserialize;

use crate::config::ConfigError;

/// `[sources.file]`: the NDJSON file to read once, start to end.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Path of the NDJSON file.
    pub path: PathBuf,
    /// Lines longer than this are rejected without being delivered (default 1 MiB).
    #[serde(default = "default_max_line")]
    pub max_line_bytes: usize,
}

fn default_max_line() -> usize {
    1024 * 1024
}

impl FileConfig {
    /// A config reading `path` with the default line limit.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileConfig {
            path: path.into(),
            max_line_bytes: default_max_line(),
        }
    }

    /// Checks every key; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.path.as_os_str().is_empty() {
            return Err(ConfigError::new("file", "path", "must not be empty"));
        }
        if self.max_line_bytes == 0 {
            return Err(ConfigError::new(
                "file",
                "max_line_bytes",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}
