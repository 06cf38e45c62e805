//! Configuration of the HTTP ingest endpoint (raw serde struct plus `validate`).

use std::time::Duration;

use serde::Deserialize;

use crate::config::{de_duration, ConfigError};

const KIND: &str = "http";

/// `[sources.http]`: limits and timeouts of `POST /v1/events`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Largest accepted request body in bytes; larger bodies get 413.
    pub max_body_bytes: usize,
    /// How long one line may wait for room in the pipeline before the request gets 429.
    #[serde(deserialize_with = "de_duration")]
    pub enqueue_timeout: Duration,
    /// How long the answer waits for the events to be applied before giving up with 503.
    #[serde(deserialize_with = "de_duration")]
    pub apply_timeout: Duration,
    /// The `Retry-After` of a 429 or 503 answer (whole seconds, at least 1).
    #[serde(deserialize_with = "de_duration")]
    pub retry_after: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_body_bytes: 16 * 1024 * 1024,
            enqueue_timeout: Duration::from_millis(250),
            apply_timeout: Duration::from_secs(30),
            retry_after: Duration::from_secs(1),
        }
    }
}

impl HttpConfig {
    /// Checks every key; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_body_bytes == 0 {
            return Err(ConfigError::new(
                KIND,
                "max_body_bytes",
                "must be at least 1",
            ));
        }
        if self.apply_timeout.is_zero() {
            return Err(ConfigError::new(KIND, "apply_timeout", "must be positive"));
        }
        if self.retry_after < Duration::from_secs(1) {
            return Err(ConfigError::new(KIND, "retry_after", "must be at least 1s"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_errors_name_the_key() {
        HttpConfig::default().validate().unwrap();
        let c: HttpConfig = serde_json::from_str(r#"{"retry_after":"500ms"}"#).unwrap();
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "http source: invalid `retry_after`: must be at least 1s"
        );
        assert!(serde_json::from_str::<HttpConfig>(r#"{"max_body":1}"#).is_err());
    }
}
