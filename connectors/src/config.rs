//! Shared configuration helpers for connectors: durations written as strings
//! (`"500ms"`, `"2s"`, `"5m"`), URLs whose credentials never print, and the
//! error type that names the connector and the bad key.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A configuration value that failed validation, naming the connector and key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{connector} source: invalid `{key}`: {reason}")]
pub struct ConfigError {
    /// Connector kind (`amqp`, `redis`, `http`, `file`).
    pub connector: &'static str,
    /// The configuration key at fault.
    pub key: &'static str,
    /// Why it is wrong.
    pub reason: String,
}

impl ConfigError {
    /// Builds an error for `connector`'s `key`.
    pub fn new(connector: &'static str, key: &'static str, reason: impl Into<String>) -> Self {
        ConfigError {
            connector,
            key,
            reason: reason.into(),
        }
    }
}

/// Parses a duration such as `"250ms"`, `"2s"`, `"5m"`, `"1h"` (also `"0"`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("duration `{s}` has no unit (use ms, s, m or h)"))?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("duration `{s}` does not start with a number"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => {
            return Err(format!(
                "duration `{s}` has an unknown unit (use ms, s, m or h)"
            ))
        }
    };
    Ok(d)
}

/// Serde helper: deserializes a [`Duration`] from a string such as `"500ms"`.
pub fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

/// A connection URL that may carry a password: `Debug` and `Display` hide it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        SecretUrl(url.into())
    }

    /// The URL itself, credentials included: pass it to the client, never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `***`, safe to log.
    pub fn redacted(&self) -> String {
        let s = &self.0;
        let Some(scheme_end) = s.find("://") else {
            return s.clone();
        };
        let rest = &s[scheme_end + 3..];
        let authority_end = rest.find('/').unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                let user = userinfo.split(':').next().unwrap_or("");
                let masked = if userinfo.contains(':') {
                    format!("{user}:***")
                } else {
                    user.to_string()
                };
                format!("{}://{}@{}", &s[..scheme_end], masked, &rest[at + 1..])
            }
            None => s.clone(),
        }
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("5d").is_err());
    }

    #[test]
    fn urls_hide_passwords() {
        let u = SecretUrl::new("amqp://guest:secret@127.0.0.1:5672/%2f");
        assert_eq!(u.redacted(), "amqp://guest:***@127.0.0.1:5672/%2f");
        assert!(!format!("{u:?}").contains("secret"));
        let r = SecretUrl::new("redis://127.0.0.1:6379/");
        assert_eq!(r.redacted(), "redis://127.0.0.1:6379/");
        let p = SecretUrl::new("redis://:pw@host:6379/0");
        assert_eq!(p.redacted(), "redis://:***@host:6379/0");
    }
}
