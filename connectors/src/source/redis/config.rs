//! Configuration of the Redis Streams source (raw serde struct plus `validate`).

use std::time::Duration;

use serde::Deserialize;

use crate::config::{de_duration, ConfigError, SecretUrl};

const KIND: &str = "redis";

/// `[sources.redis]`: which stream and group to read, how to claim and acknowledge.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// Server URL (`redis://[:password@]host:port/db`); the password never prints.
    pub url: SecretUrl,
    /// Stream key the producers `XADD` to.
    pub stream: String,
    /// Consumer group (created with `MKSTREAM` if missing).
    pub group: String,
    /// Where a newly created group starts: `"0"` (the whole stream) or `"$"` (new entries only).
    pub group_start: String,
    /// This consumer's name in the group; default `<hostname>-<pid>`.
    pub consumer: Option<String>,
    /// `XREADGROUP ... BLOCK`: how long one read waits for new entries.
    #[serde(deserialize_with = "de_duration")]
    pub block: Duration,
    /// `COUNT` of one read or claim.
    pub count: usize,
    /// Entries pending on any consumer for longer than this are claimed (`XAUTOCLAIM`).
    #[serde(deserialize_with = "de_duration")]
    pub claim_idle: Duration,
    /// How often to look for such entries (also done at every (re)connect).
    #[serde(deserialize_with = "de_duration")]
    pub claim_interval: Duration,
    /// Stream that receives rejected entries; default `<stream>:rejected`.
    pub rejected_stream: Option<String>,
    /// Send one `XACK` once this many entries are complete...
    pub ack_batch: usize,
    /// ... or after this long.
    #[serde(deserialize_with = "de_duration")]
    pub ack_interval: Duration,
    /// Timeout of a connection attempt.
    #[serde(deserialize_with = "de_duration")]
    pub connect_timeout: Duration,
    /// Timeout of a non-blocking command (the blocking read gets `block` plus this).
    #[serde(deserialize_with = "de_duration")]
    pub response_timeout: Duration,
    /// First reconnect delay.
    #[serde(deserialize_with = "de_duration")]
    pub reconnect_initial: Duration,
    /// Largest reconnect delay.
    #[serde(deserialize_with = "de_duration")]
    pub reconnect_max: Duration,
    /// On shutdown, wait this long for in-flight entries before the last `XACK`.
    #[serde(deserialize_with = "de_duration")]
    pub drain_timeout: Duration,
    /// How often to read the group's lag (`XINFO GROUPS`).
    #[serde(deserialize_with = "de_duration")]
    pub lag_interval: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: SecretUrl::new("redis://127.0.0.1:6379/"),
            stream: "redcloud:events".into(),
            group: "redcloud".into(),
            group_start: "0".into(),
            consumer: None,
            block: Duration::from_secs(2),
            count: 500,
            claim_idle: Duration::from_secs(60),
            claim_interval: Duration::from_secs(30),
            rejected_stream: None,
            ack_batch: 100,
            ack_interval: Duration::from_millis(50),
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(5),
            reconnect_initial: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(10),
            lag_interval: Duration::from_secs(5),
        }
    }
}

impl RedisConfig {
    /// Checks every key; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |key, reason: &str| Err(ConfigError::new(KIND, key, reason));
        if ::redis::Client::open(self.url.expose()).is_err() {
            return Err(ConfigError::new(
                KIND,
                "url",
                "not a redis url (use redis://, rediss:// or unix://)",
            ));
        }
        if self.stream.is_empty() {
            return err("stream", "must not be empty");
        }
        if self.group.is_empty() {
            return err("group", "must not be empty");
        }
        if self.group_start != "0" && self.group_start != "$" {
            return err("group_start", "must be \"0\" or \"$\"");
        }
        if matches!(&self.consumer, Some(c) if c.is_empty()) {
            return err("consumer", "must not be empty");
        }
        if matches!(&self.rejected_stream, Some(r) if r.is_empty() || *r == self.stream) {
            return err(
                "rejected_stream",
                "must be non-empty and differ from `stream`",
            );
        }
        if self.block.is_zero() || self.block.as_millis() > u128::from(u32::MAX) {
            // BLOCK 0 would wait forever and make shutdown and claims wait on it.
            return err("block", "must be positive");
        }
        if self.count == 0 {
            return err("count", "must be at least 1");
        }
        if self.claim_idle.is_zero() {
            return err("claim_idle", "must be positive");
        }
        if self.claim_interval.is_zero() {
            return err("claim_interval", "must be positive");
        }
        if self.ack_batch == 0 {
            return err("ack_batch", "must be at least 1");
        }
        for (key, d) in [
            ("ack_interval", self.ack_interval),
            ("connect_timeout", self.connect_timeout),
            ("response_timeout", self.response_timeout),
            ("reconnect_initial", self.reconnect_initial),
            ("lag_interval", self.lag_interval),
        ] {
            if d.is_zero() {
                return err(key, "must be positive");
            }
        }
        if self.reconnect_max < self.reconnect_initial {
            return err("reconnect_max", "must be at least `reconnect_initial`");
        }
        Ok(())
    }

    /// The rejected stream's key.
    pub fn rejected_stream(&self) -> String {
        self.rejected_stream
            .clone()
            .unwrap_or_else(|| format!("{}:rejected", self.stream))
    }

    /// The consumer name: configured, or `<hostname>-<pid>`.
    pub fn consumer_name(&self) -> String {
        if let Some(c) = &self.consumer {
            return c.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "redcloud".into());
        format!("{host}-{}", std::process::id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_errors_name_the_key() {
        let c = RedisConfig::default();
        c.validate().unwrap();
        assert_eq!(c.rejected_stream(), "redcloud:events:rejected");
        assert!(c
            .consumer_name()
            .ends_with(&format!("-{}", std::process::id())));
        let c = RedisConfig {
            group_start: "1".into(),
            ..RedisConfig::default()
        };
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "redis source: invalid `group_start`: must be \"0\" or \"$\""
        );
        let c = RedisConfig {
            url: SecretUrl::new("nope://x"),
            ..RedisConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "url");
    }

    #[test]
    fn parses_and_denies_unknown_keys() {
        let c: RedisConfig =
            serde_json::from_str(r#"{"stream":"s","block":"250ms","claim_idle":"1s"}"#).unwrap();
        assert_eq!(c.block, Duration::from_millis(250));
        assert!(serde_json::from_str::<RedisConfig>(r#"{"block_ms":100}"#).is_err());
    }
}
