//! Configuration of the AMQP source (raw serde struct plus `validate`).

use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{de_duration, ConfigError, SecretUrl};

const KIND: &str = "amqp";

/// `[sources.amqp]`: where to consume, what to declare, how to acknowledge.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AmqpConfig {
    /// Broker URI; the password never prints.
    pub uri: SecretUrl,
    /// Topic exchange the producers publish to (declared durable).
    pub exchange: String,
    /// Durable queue this source consumes.
    pub queue: String,
    /// Routing keys binding `queue` to `exchange` (topic patterns).
    pub binding_keys: Vec<String>,
    /// Unacknowledged messages the broker may push ahead (basic.qos).
    pub prefetch: u16,
    /// Exchange that receives rejected messages (declared durable, topic).
    pub dead_letter_exchange: String,
    /// Queue bound to `dead_letter_exchange` with `#` (declared durable).
    pub dead_letter_queue: String,
    /// Send a cumulative ack once this many more messages are complete.
    pub ack_batch: usize,
    /// ... or when this much time has passed since the first unsent completion.
    #[serde(deserialize_with = "de_duration")]
    pub ack_interval: Duration,
    /// First reconnect delay.
    #[serde(deserialize_with = "de_duration")]
    pub reconnect_initial: Duration,
    /// Largest reconnect delay.
    #[serde(deserialize_with = "de_duration")]
    pub reconnect_max: Duration,
    /// Give up a connection attempt (TCP plus handshake plus declarations) after this.
    #[serde(deserialize_with = "de_duration")]
    pub connect_timeout: Duration,
    /// On shutdown, wait this long for in-flight messages to complete before closing.
    #[serde(deserialize_with = "de_duration")]
    pub drain_timeout: Duration,
    /// How often to read the queue depth for the `lag` gauge.
    #[serde(deserialize_with = "de_duration")]
    pub lag_interval: Duration,
    /// Under load, least time between two takes from the consumer: what
    /// arrives meanwhile is taken in one go, with one wake-up of the source.
    /// A message after a quiet spell is taken at once; `0s` takes every
    /// message as it comes.
    #[serde(deserialize_with = "de_duration")]
    pub take_gap: Duration,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        AmqpConfig {
            uri: SecretUrl::new("amqp://guest:guest@127.0.0.1:5672/%2f"),
            exchange: "redcloud.events".into(),
            queue: "redcloud.events".into(),
            binding_keys: vec!["#".into()],
            prefetch: 1000,
            dead_letter_exchange: "redcloud.events.dlx".into(),
            dead_letter_queue: "redcloud.events.rejected".into(),
            ack_batch: 100,
            ack_interval: Duration::from_millis(50),
            reconnect_initial: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(10),
            lag_interval: Duration::from_secs(5),
            take_gap: Duration::from_millis(1),
        }
    }
}

impl AmqpConfig {
    /// Checks every key; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |key, reason: &str| Err(ConfigError::new(KIND, key, reason));
        if let Err(e) = lapin::uri::AMQPUri::from_str(self.uri.expose()) {
            return Err(ConfigError::new(
                KIND,
                "uri",
                format!("not an amqp uri ({e})"),
            ));
        }
        for (key, name) in [
            ("exchange", &self.exchange),
            ("queue", &self.queue),
            ("dead_letter_exchange", &self.dead_letter_exchange),
            ("dead_letter_queue", &self.dead_letter_queue),
        ] {
            if name.is_empty() || name.len() > 255 {
                return err(key, "must be 1 to 255 bytes");
            }
            if name.starts_with("amq.") {
                return err(key, "names starting with `amq.` are reserved by the broker");
            }
        }
        if self.dead_letter_exchange == self.exchange {
            return err("dead_letter_exchange", "must differ from `exchange`");
        }
        if self.dead_letter_queue == self.queue {
            return err("dead_letter_queue", "must differ from `queue`");
        }
        if self.binding_keys.is_empty() {
            return err(
                "binding_keys",
                "needs at least one key (`#` binds everything)",
            );
        }
        if self.prefetch == 0 {
            return err("prefetch", "must be at least 1");
        }
        if self.ack_batch == 0 || self.ack_batch > usize::from(self.prefetch) {
            return err("ack_batch", "must be between 1 and `prefetch`");
        }
        if self.ack_interval.is_zero() {
            return err("ack_interval", "must be positive");
        }
        if self.reconnect_initial.is_zero() {
            return err("reconnect_initial", "must be positive");
        }
        if self.reconnect_max < self.reconnect_initial {
            return err("reconnect_max", "must be at least `reconnect_initial`");
        }
        if self.connect_timeout.is_zero() {
            return err("connect_timeout", "must be positive");
        }
        if self.lag_interval.is_zero() {
            return err("lag_interval", "must be positive");
        }
        if self.take_gap > Duration::from_secs(1) {
            return err("take_gap", "must be at most 1s");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_errors_name_the_key() {
        AmqpConfig::default().validate().unwrap();
        let c = AmqpConfig {
            prefetch: 0,
            ..AmqpConfig::default()
        };
        let e = c.validate().unwrap_err();
        assert_eq!(e.key, "prefetch");
        assert_eq!(
            e.to_string(),
            "amqp source: invalid `prefetch`: must be at least 1"
        );
        let c = AmqpConfig {
            uri: SecretUrl::new("http://nope"),
            ..AmqpConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "uri");
        assert_eq!(AmqpConfig::default().take_gap, Duration::from_millis(1));
        let c = AmqpConfig {
            take_gap: Duration::from_millis(1500),
            ..AmqpConfig::default()
        };
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "amqp source: invalid `take_gap`: must be at most 1s"
        );
        let c = AmqpConfig {
            take_gap: Duration::ZERO,
            ..AmqpConfig::default()
        };
        c.validate().unwrap();
    }

    #[test]
    fn parses_from_json_and_denies_unknown_keys() {
        let c: AmqpConfig = serde_json::from_str(
            r#"{"queue":"q1","ack_interval":"20ms","prefetch":50,"ack_batch":10}"#,
        )
        .unwrap();
        assert_eq!(c.queue, "q1");
        assert_eq!(c.ack_interval, Duration::from_millis(20));
        c.validate().unwrap();
        assert!(serde_json::from_str::<AmqpConfig>(r#"{"queu":"q1"}"#).is_err());
    }
}
