//! Builds the connectors' sources from the validated `[sources.*]` config:
//! keys the file leaves out take the connectors' defaults
//! (docs/connectors.md), then each connector checks its own rules; an error
//! names the key as `sources.<kind>.<key>`.

use std::sync::Arc;

use redcloud_config::sources::{AmqpSource, FileSource, HttpSource, RedisSource};
use redcloud_config::SourcesConfig;
use redcloud_connectors::config::SecretUrl;
use redcloud_connectors::source::amqp::{AmqpConfig, AmqpSource as Amqp};
use redcloud_connectors::source::file::{FileConfig, FileSource as File};
use redcloud_connectors::source::http::{HttpConfig, HttpIngest};
use redcloud_connectors::source::redis::{RedisConfig, RedisSource as Redis};
use redcloud_connectors::source::Source;

/// A source the daemon cannot build.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A connector refused its configuration.
    #[error("sources.{}.{}: {}", .0.connector, .0.key, .0.reason)]
    Config(redcloud_connectors::config::ConfigError),
    /// The file of `[sources.file]` is missing or unreadable.
    #[error("sources.file.path: cannot read {path}: {error}")]
    File {
        /// The path.
        path: String,
        /// Why.
        error: std::io::Error,
    },
    /// Two sources with one name.
    #[error("sources: two sources are named {0:?}; give one of them another `name`")]
    DuplicateName(String),
}

impl From<redcloud_connectors::config::ConfigError> for BuildError {
    fn from(e: redcloud_connectors::config::ConfigError) -> Self {
        BuildError::Config(e)
    }
}

/// The sources to run: the HTTP ingest (mounted on the listener) and the
/// others (spawned as tasks).
pub struct Built {
    /// HTTP ingest and its optional token.
    pub http: Option<(HttpIngest, Option<redcloud_config::Secret>)>,
    /// AMQP, Redis, file.
    pub tasks: Vec<Box<dyn Source>>,
}

macro_rules! set {
    ($dst:expr, $src:expr, [$($k:ident),* $(,)?]) => {
        $( if let Some(v) = $src.$k.clone() { $dst.$k = v; } )*
    };
}

fn http(c: &HttpSource, levels: &[String]) -> Result<HttpIngest, BuildError> {
    let mut h = HttpConfig::default();
    set!(
        h,
        c,
        [max_body_bytes, enqueue_timeout, apply_timeout, retry_after]
    );
    Ok(HttpIngest::new(h, levels.to_vec())?)
}

fn amqp(c: &AmqpSource) -> Result<Amqp, BuildError> {
    let mut a = AmqpConfig::default();
    if let Some(u) = &c.uri {
        a.uri = SecretUrl::new(u.expose());
    }
    set!(
        a,
        c,
        [
            exchange,
            queue,
            binding_keys,
            prefetch,
            dead_letter_exchange,
            dead_letter_queue,
            ack_batch,
            ack_interval,
            reconnect_initial,
            reconnect_max,
            connect_timeout,
            drain_timeout,
            lag_interval,
        ]
    );
    let s = Amqp::new(a)?;
    Ok(match &c.name {
        Some(n) => s.with_name(n.as_str()),
        None => s,
    })
}

fn redis(c: &RedisSource) -> Result<Redis, BuildError> {
    let mut r = RedisConfig::default();
    if let Some(u) = &c.url {
        r.url = SecretUrl::new(u.expose());
    }
    set!(
        r,
        c,
        [
            stream,
            group,
            group_start,
            block,
            count,
            claim_idle,
            claim_interval,
            ack_batch,
            ack_interval,
            connect_timeout,
            response_timeout,
            reconnect_initial,
            reconnect_max,
            drain_timeout,
            lag_interval,
        ]
    );
    if c.consumer.is_some() {
        r.consumer = c.consumer.clone();
    }
    if c.rejected_stream.is_some() {
        r.rejected_stream = c.rejected_stream.clone();
    }
    let s = Redis::new(r)?;
    Ok(match &c.name {
        Some(n) => s.with_name(n.as_str()),
        None => s,
    })
}

fn file(c: &FileSource) -> Result<File, BuildError> {
    if let Err(error) = std::fs::metadata(&c.path) {
        return Err(BuildError::File {
            path: c.path.display().to_string(),
            error,
        });
    }
    let mut f = FileConfig::new(&c.path);
    if let Some(m) = c.max_line_bytes {
        f.max_line_bytes = m;
    }
    Ok(File::new(f)?)
}

/// Builds every configured source.
pub fn build(c: &SourcesConfig, levels: &[String]) -> Result<Built, BuildError> {
    let http = match &c.http {
        Some(h) => Some((http(h, levels)?, h.token.clone())),
        None => None,
    };
    let mut tasks: Vec<Box<dyn Source>> = Vec::new();
    if let Some(a) = &c.amqp {
        tasks.push(Box::new(amqp(a)?));
    }
    if let Some(r) = &c.redis {
        tasks.push(Box::new(redis(r)?));
    }
    if let Some(f) = &c.file {
        tasks.push(Box::new(file(f)?));
    }
    let mut names: Vec<Arc<str>> = tasks.iter().map(|t| t.name()).collect();
    if let Some((h, _)) = &http {
        names.push(h.name());
    }
    for (i, n) in names.iter().enumerate() {
        if names[..i].contains(n) {
            return Err(BuildError::DuplicateName(n.to_string()));
        }
    }
    Ok(Built { http, tasks })
}
