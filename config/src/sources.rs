//! `[sources.http]`, `[sources.amqp]`, `[sources.redis]`, `[sources.file]`:
//! which sources `redcloud run` starts and their settings.
//!
//! This crate does not depend on the connectors: it checks the types, the
//! durations and the simple rules here, keeps every key that the file leaves
//! out as `None`, and the daemon fills those in with the connectors' own
//! defaults (docs/connectors.md lists them) and runs the connectors' checks
//! (`ack_batch <= prefetch` and the like) at start-up, naming the same keys.
//!
//! Presence turns a source on: `[sources.amqp]`, `[sources.redis]` and
//! `[sources.file]` are off unless their table is there; HTTP ingest is on
//! unless `[sources.http] enabled = false`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::duration::DurationText;
use crate::error::ConfigError;
use crate::secret::Secret;
use crate::validate::calendar_duration;

/// `[sources]` as read.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawSources {
    pub http: RawHttp,
    pub amqp: Option<RawAmqp>,
    pub redis: Option<RawRedis>,
    pub file: Option<RawFile>,
}

/// `[sources.http]` as read.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawHttp {
    pub enabled: bool,
    pub token: Option<Secret>,
    pub max_body_bytes: Option<usize>,
    pub enqueue_timeout: Option<DurationText>,
    pub apply_timeout: Option<DurationText>,
    pub retry_after: Option<DurationText>,
}

impl Default for RawHttp {
    fn default() -> Self {
        RawHttp {
            enabled: true,
            token: None,
            max_body_bytes: None,
            enqueue_timeout: None,
            apply_timeout: None,
            retry_after: None,
        }
    }
}

/// `[sources.amqp]` as read.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawAmqp {
    pub name: Option<String>,
    pub uri: Option<Secret>,
    pub exchange: Option<String>,
    pub queue: Option<String>,
    pub binding_keys: Option<Vec<String>>,
    pub prefetch: Option<u16>,
    pub dead_letter_exchange: Option<String>,
    pub dead_letter_queue: Option<String>,
    pub ack_batch: Option<usize>,
    pub ack_interval: Option<DurationText>,
    pub reconnect_initial: Option<DurationText>,
    pub reconnect_max: Option<DurationText>,
    pub connect_timeout: Option<DurationText>,
    pub drain_timeout: Option<DurationText>,
    pub lag_interval: Option<DurationText>,
}

/// `[sources.redis]` as read.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawRedis {
    pub name: Option<String>,
    pub url: Option<Secret>,
    pub stream: Option<String>,
    pub group: Option<String>,
    pub group_start: Option<String>,
    pub consumer: Option<String>,
    pub block: Option<DurationText>,
    pub count: Option<usize>,
    pub claim_idle: Option<DurationText>,
    pub claim_interval: Option<DurationText>,
    pub rejected_stream: Option<String>,
    pub ack_batch: Option<usize>,
    pub ack_interval: Option<DurationText>,
    pub connect_timeout: Option<DurationText>,
    pub response_timeout: Option<DurationText>,
    pub reconnect_initial: Option<DurationText>,
    pub reconnect_max: Option<DurationText>,
    pub drain_timeout: Option<DurationText>,
    pub lag_interval: Option<DurationText>,
}

/// `[sources.file]` as read.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFile {
    pub path: String,
    #[serde(default)]
    pub max_line_bytes: Option<usize>,
}

/// The sources of `redcloud run`, validated. `None` = off (HTTP) or not
/// configured (the others).
#[derive(Clone, Debug, Default)]
pub struct SourcesConfig {
    /// HTTP ingest (`POST /v1/events` on the admin listener).
    pub http: Option<HttpSource>,
    /// RabbitMQ.
    pub amqp: Option<AmqpSource>,
    /// Redis Streams.
    pub redis: Option<RedisSource>,
    /// An NDJSON file read once at start-up.
    pub file: Option<FileSource>,
}

/// `[sources.http]`: keys left out are `None` (connector defaults).
#[derive(Clone, Debug, Default)]
pub struct HttpSource {
    /// Bearer token `POST /v1/events` requires; none = open (the listener is
    /// on 127.0.0.1 by default).
    pub token: Option<Secret>,
    /// Largest body.
    pub max_body_bytes: Option<usize>,
    /// Wait for room in the pipeline before 429.
    pub enqueue_timeout: Option<Duration>,
    /// Wait for the verdicts before 503.
    pub apply_timeout: Option<Duration>,
    /// `Retry-After` of 429 / 503.
    pub retry_after: Option<Duration>,
}

/// `[sources.amqp]`: keys left out are `None` (connector defaults).
#[derive(Clone, Debug, Default)]
#[allow(missing_docs)]
pub struct AmqpSource {
    /// The source's name: metrics label, and the connection is named
    /// `redcloud:<name>` on the broker. Default `amqp`.
    pub name: Option<String>,
    /// Broker URI (a secret: it may hold a password).
    pub uri: Option<Secret>,
    pub exchange: Option<String>,
    pub queue: Option<String>,
    pub binding_keys: Option<Vec<String>>,
    pub prefetch: Option<u16>,
    pub dead_letter_exchange: Option<String>,
    pub dead_letter_queue: Option<String>,
    pub ack_batch: Option<usize>,
    pub ack_interval: Option<Duration>,
    pub reconnect_initial: Option<Duration>,
    pub reconnect_max: Option<Duration>,
    pub connect_timeout: Option<Duration>,
    pub drain_timeout: Option<Duration>,
    pub lag_interval: Option<Duration>,
}

/// `[sources.redis]`: keys left out are `None` (connector defaults).
#[derive(Clone, Debug, Default)]
#[allow(missing_docs)]
pub struct RedisSource {
    /// The source's name (metrics label). Default `redis`.
    pub name: Option<String>,
    /// Server URL (a secret: it may hold a password).
    pub url: Option<Secret>,
    pub stream: Option<String>,
    pub group: Option<String>,
    pub group_start: Option<String>,
    pub consumer: Option<String>,
    pub block: Option<Duration>,
    pub count: Option<usize>,
    pub claim_idle: Option<Duration>,
    pub claim_interval: Option<Duration>,
    pub rejected_stream: Option<String>,
    pub ack_batch: Option<usize>,
    pub ack_interval: Option<Duration>,
    pub connect_timeout: Option<Duration>,
    pub response_timeout: Option<Duration>,
    pub reconnect_initial: Option<Duration>,
    pub reconnect_max: Option<Duration>,
    pub drain_timeout: Option<Duration>,
    pub lag_interval: Option<Duration>,
}

/// `[sources.file]`.
#[derive(Clone, Debug)]
pub struct FileSource {
    /// The NDJSON file (relative paths: from the config file's folder).
    pub path: PathBuf,
    /// Longest line.
    pub max_line_bytes: Option<usize>,
}

fn dur(path: &str, text: Option<DurationText>) -> Result<Option<Duration>, ConfigError> {
    text.map(|t| calendar_duration(path, &t).map(|us| Duration::from_micros(us.unsigned_abs())))
        .transpose()
}

fn name(path: &str, n: Option<String>) -> Result<Option<String>, ConfigError> {
    if let Some(n) = &n {
        let ok = !n.is_empty()
            && n.len() <= 64
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !ok {
            return Err(ConfigError::invalid(
                path,
                "must be 1 to 64 characters: ASCII letters, digits, `_`, `-`, `.`",
            ));
        }
    }
    Ok(n)
}

pub(crate) fn validate_sources(
    raw: RawSources,
    base_dir: Option<&Path>,
) -> Result<SourcesConfig, ConfigError> {
    let h = raw.http;
    if matches!(&h.token, Some(t) if t.expose().trim().is_empty()) {
        return Err(ConfigError::invalid(
            "sources.http.token",
            "must not be empty (leave it out for no token)",
        ));
    }
    let http = if h.enabled {
        Some(HttpSource {
            token: h.token,
            max_body_bytes: h.max_body_bytes,
            enqueue_timeout: dur("sources.http.enqueue_timeout", h.enqueue_timeout)?,
            apply_timeout: dur("sources.http.apply_timeout", h.apply_timeout)?,
            retry_after: dur("sources.http.retry_after", h.retry_after)?,
        })
    } else {
        None
    };
    let amqp = match raw.amqp {
        None => None,
        Some(a) => {
            let p = |k: &str| format!("sources.amqp.{k}");
            Some(AmqpSource {
                name: name(&p("name"), a.name)?,
                uri: a.uri,
                exchange: a.exchange,
                queue: a.queue,
                binding_keys: a.binding_keys,
                prefetch: a.prefetch,
                dead_letter_exchange: a.dead_letter_exchange,
                dead_letter_queue: a.dead_letter_queue,
                ack_batch: a.ack_batch,
                ack_interval: dur(&p("ack_interval"), a.ack_interval)?,
                reconnect_initial: dur(&p("reconnect_initial"), a.reconnect_initial)?,
                reconnect_max: dur(&p("reconnect_max"), a.reconnect_max)?,
                connect_timeout: dur(&p("connect_timeout"), a.connect_timeout)?,
                drain_timeout: dur(&p("drain_timeout"), a.drain_timeout)?,
                lag_interval: dur(&p("lag_interval"), a.lag_interval)?,
            })
        }
    };
    let redis = match raw.redis {
        None => None,
        Some(r) => {
            let p = |k: &str| format!("sources.redis.{k}");
            Some(RedisSource {
                name: name(&p("name"), r.name)?,
                url: r.url,
                stream: r.stream,
                group: r.group,
                group_start: r.group_start,
                consumer: r.consumer,
                block: dur(&p("block"), r.block)?,
                count: r.count,
                claim_idle: dur(&p("claim_idle"), r.claim_idle)?,
                claim_interval: dur(&p("claim_interval"), r.claim_interval)?,
                rejected_stream: r.rejected_stream,
                ack_batch: r.ack_batch,
                ack_interval: dur(&p("ack_interval"), r.ack_interval)?,
                connect_timeout: dur(&p("connect_timeout"), r.connect_timeout)?,
                response_timeout: dur(&p("response_timeout"), r.response_timeout)?,
                reconnect_initial: dur(&p("reconnect_initial"), r.reconnect_initial)?,
                reconnect_max: dur(&p("reconnect_max"), r.reconnect_max)?,
                drain_timeout: dur(&p("drain_timeout"), r.drain_timeout)?,
                lag_interval: dur(&p("lag_interval"), r.lag_interval)?,
            })
        }
    };
    let file = match raw.file {
        None => None,
        Some(f) => {
            if f.path.trim().is_empty() {
                return Err(ConfigError::invalid(
                    "sources.file.path",
                    "must not be empty",
                ));
            }
            let path = match base_dir {
                Some(dir) => dir.join(&f.path),
                None => PathBuf::from(&f.path),
            };
            Some(FileSource {
                path,
                max_line_bytes: f.max_line_bytes,
            })
        }
    };
    Ok(SourcesConfig {
        http,
        amqp,
        redis,
        file,
    })
}
