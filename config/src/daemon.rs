//! `[daemon]` and `[admin]`: how `redcloud run` runs (shards, queues, the
//! processing-time tick, shutdown, logs) and where its HTTP listener and admin
//! API live.
//!
//! Raw serde structs (with `deny_unknown_fields`) and their validation into
//! [`DaemonConfig`] and [`AdminConfig`]. Nothing here starts anything: the
//! daemon (`src/daemon/` of the `redcloud` binary) reads these values.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::duration::DurationText;
use crate::error::ConfigError;
use crate::secret::Secret;
use crate::validate::calendar_duration;

/// Most shards.
pub const MAX_SHARDS: usize = 256;

/// `[daemon]` as read.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawDaemon {
    pub shards: Option<usize>,
    pub tick: DurationText,
    pub shutdown_timeout: DurationText,
    pub log_format: String,
    pub log_level: String,
    pub pipeline_capacity: usize,
    pub shard_capacity: usize,
    pub sink_capacity: usize,
    pub data_dir: String,
    pub durability: String,
    pub snapshot_interval: DurationText,
    pub snapshot_log_records: u64,
    pub commit_gap: DurationText,
    pub route_gap: DurationText,
    pub snapshot_mode: String,
    pub huge_pages: bool,
    pub fork_realtime: bool,
    pub state_url: Option<crate::Secret>,
    pub state_prefix: String,
}

impl Default for RawDaemon {
    fn default() -> Self {
        RawDaemon {
            shards: None,
            tick: DurationText::new("1s"),
            shutdown_timeout: DurationText::new("30s"),
            log_format: "human".into(),
            log_level: "info".into(),
            pipeline_capacity: 4096,
            shard_capacity: 64,
            sink_capacity: 4096,
            data_dir: "./redcloud-data".into(),
            durability: "wal".into(),
            snapshot_interval: DurationText::new("60s"),
            snapshot_log_records: 1_000_000,
            commit_gap: DurationText::new("2ms"),
            route_gap: DurationText::new("1ms"),
            snapshot_mode: "fork".into(),
            huge_pages: true,
            fork_realtime: true,
            state_url: None,
            state_prefix: "redcloud".into(),
        }
    }
}

/// `[admin]` as read.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawAdmin {
    pub listen: String,
    pub token: Option<Secret>,
}

impl Default for RawAdmin {
    fn default() -> Self {
        RawAdmin {
            listen: "127.0.0.1:8686".into(),
            token: None,
        }
    }
}

/// How logs are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per record.
    Human,
    /// One JSON object per record.
    Json,
}

/// Whether shard state survives a crash (`[daemon] durability`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// In memory only: a restart starts empty.
    None,
    /// A write-ahead log and snapshots per shard in `data_dir/shard-<n>/`;
    /// events are acknowledged once they are on disk.
    Wal,
    /// The same log and snapshots kept in Redis (`state_url`, keys under
    /// `state_prefix`), for hosts without a disk of their own and for the
    /// scale-out to come; the outbox too.
    Redis,
}

/// `[daemon]`, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonConfig {
    /// Shards (engine owner threads); `None` = the available cores.
    pub shards: Option<usize>,
    /// How often every shard advances its engine to the wall clock.
    pub tick: Duration,
    /// Longest graceful drain after SIGTERM / SIGINT.
    pub shutdown_timeout: Duration,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter when `RUST_LOG` is not set (`info`, `redcloud=debug,info`).
    pub log_level: String,
    /// Deliveries waiting between the sources and the router.
    pub pipeline_capacity: usize,
    /// Messages (batches of up to 1024 events) waiting in front of each shard.
    pub shard_capacity: usize,
    /// Notifications waiting for the sink (console or dispatcher).
    pub sink_capacity: usize,
    /// Where the daemon writes its files (today: the notifications still
    /// undelivered at shutdown, `undelivered-<unix>.ndjson`). Relative to the
    /// working directory; created when needed.
    pub data_dir: PathBuf,
    /// Write-ahead log and snapshots, or memory only.
    pub durability: Durability,
    /// How often each shard writes a snapshot (with `durability = "wal"`).
    pub snapshot_interval: Duration,
    /// A shard also takes a snapshot once this many records were logged
    /// since its last one (`0`: by time only): bounds the log tail a
    /// recovery replays at high ingest rates.
    pub snapshot_log_records: u64,
    /// Under load, the least time between the end of one sync of a shard's
    /// log and the start of the next: batches that arrive meanwhile share
    /// the next sync (`"0s"`: each batch is synced as soon as it comes).
    pub commit_gap: Duration,
    /// Under load, the least time between two hand-offs of the router to
    /// the shards: deliveries that arrive meanwhile go in the same batches
    /// (`"0s"`: hand over whatever is there at once).
    pub route_gap: Duration,
    /// How a shard takes a snapshot: `true` = in a forked child process (the
    /// shard waits only for the fork; Linux, `durability = "wal"`), `false`
    /// = serialized on the shard's thread, written in the background.
    pub snapshot_fork: bool,
    /// Keep the daemon's large memory regions on transparent huge pages
    /// (Linux): a fork for a snapshot then copies 512 times fewer page-table
    /// entries, and random lookups miss the TLB less.
    pub huge_pages: bool,
    /// Run the fork of a snapshot at real-time priority (Linux, when the
    /// process may: `CAP_SYS_NICE` or `RLIMIT_RTPRIO`), so that no other
    /// thread preempts it while the shard waits.
    pub fork_realtime: bool,
    /// Redis of `durability = "redis"` (a secret: it may hold a password).
    pub state_url: crate::Secret,
    /// Key prefix of `durability = "redis"`.
    pub state_prefix: String,
}

/// `[admin]`, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminConfig {
    /// Address of the one HTTP listener (ingest and admin API).
    pub listen: SocketAddr,
    /// Bearer token of the admin API; `REDCLOUD_ADMIN_TOKEN` is used when absent.
    pub token: Option<Secret>,
}

fn std_duration(path: &str, text: &DurationText) -> Result<Duration, ConfigError> {
    let us = calendar_duration(path, text)?;
    Ok(Duration::from_micros(us.unsigned_abs()))
}

fn capacity(path: &str, n: usize) -> Result<usize, ConfigError> {
    if n == 0 || n > 1 << 20 {
        return Err(ConfigError::invalid(path, "must be between 1 and 1048576"));
    }
    Ok(n)
}

pub(crate) fn validate_daemon(raw: RawDaemon) -> Result<DaemonConfig, ConfigError> {
    if let Some(n) = raw.shards {
        if n == 0 || n > MAX_SHARDS {
            return Err(ConfigError::invalid(
                "daemon.shards",
                format!("must be between 1 and {MAX_SHARDS} (leave it out for one per core)"),
            ));
        }
    }
    let tick = std_duration("daemon.tick", &raw.tick)?;
    if tick < Duration::from_millis(10) || tick > Duration::from_secs(60) {
        return Err(ConfigError::invalid(
            "daemon.tick",
            "must be between 10ms and 1m",
        ));
    }
    let shutdown_timeout = std_duration("daemon.shutdown_timeout", &raw.shutdown_timeout)?;
    if shutdown_timeout.is_zero() {
        return Err(ConfigError::invalid(
            "daemon.shutdown_timeout",
            "must be longer than 0",
        ));
    }
    let log_format = match raw.log_format.as_str() {
        "human" => LogFormat::Human,
        "json" => LogFormat::Json,
        other => {
            return Err(ConfigError::invalid(
                "daemon.log_format",
                format!("\"{other}\" is not a log format (use \"human\" or \"json\")"),
            ))
        }
    };
    if raw.log_level.trim().is_empty() {
        return Err(ConfigError::invalid(
            "daemon.log_level",
            "must not be empty (e.g. \"info\" or \"redcloud=debug,info\")",
        ));
    }
    if raw.data_dir.trim().is_empty() {
        return Err(ConfigError::invalid(
            "daemon.data_dir",
            "must not be empty (leave it out for \"./redcloud-data\")",
        ));
    }
    let durability = match raw.durability.as_str() {
        "none" => Durability::None,
        "wal" => Durability::Wal,
        "redis" => Durability::Redis,
        other => {
            return Err(ConfigError::invalid(
                "daemon.durability",
                format!(
                    "\"{other}\" is not a durability mode (use \"wal\", \"redis\" or \"none\")"
                ),
            ))
        }
    };
    let state_url = raw
        .state_url
        .unwrap_or_else(|| crate::Secret::new("redis://127.0.0.1:6379".to_string()));
    if !(state_url.expose().starts_with("redis://")
        || state_url.expose().starts_with("rediss://")
        || state_url.expose().starts_with("redis+unix://")
        || state_url.expose().starts_with("unix://"))
    {
        return Err(ConfigError::invalid(
            "daemon.state_url",
            "must be a redis:// (or rediss://, unix://) URL",
        ));
    }
    let state_prefix = raw.state_prefix.trim().to_string();
    if state_prefix.is_empty() || state_prefix.contains(char::is_whitespace) {
        return Err(ConfigError::invalid(
            "daemon.state_prefix",
            "must be a non-empty key prefix without spaces (e.g. \"redcloud\")",
        ));
    }
    let snapshot_interval = std_duration("daemon.snapshot_interval", &raw.snapshot_interval)?;
    if snapshot_interval < Duration::from_secs(1) || snapshot_interval > Duration::from_secs(86_400)
    {
        return Err(ConfigError::invalid(
            "daemon.snapshot_interval",
            "must be between 1s and 24h",
        ));
    }
    let commit_gap = std_duration("daemon.commit_gap", &raw.commit_gap)?;
    if commit_gap > Duration::from_millis(100) {
        return Err(ConfigError::invalid(
            "daemon.commit_gap",
            "must be between 0 and 100ms (acknowledgements and notifications wait for it)",
        ));
    }
    let route_gap = std_duration("daemon.route_gap", &raw.route_gap)?;
    if route_gap > Duration::from_millis(100) {
        return Err(ConfigError::invalid(
            "daemon.route_gap",
            "must be between 0 and 100ms (every event waits for it)",
        ));
    }
    let snapshot_fork = match raw.snapshot_mode.as_str() {
        "fork" => true,
        "thread" => false,
        other => {
            return Err(ConfigError::invalid(
                "daemon.snapshot_mode",
                format!("\"{other}\" is not a snapshot mode (use \"fork\" or \"thread\")"),
            ))
        }
    };
    Ok(DaemonConfig {
        snapshot_fork,
        huge_pages: raw.huge_pages,
        fork_realtime: raw.fork_realtime,
        data_dir: PathBuf::from(raw.data_dir),
        durability,
        snapshot_interval,
        snapshot_log_records: raw.snapshot_log_records,
        commit_gap,
        route_gap,
        state_url,
        state_prefix,
        shards: raw.shards,
        tick,
        shutdown_timeout,
        log_format,
        log_level: raw.log_level,
        pipeline_capacity: capacity("daemon.pipeline_capacity", raw.pipeline_capacity)?,
        shard_capacity: capacity("daemon.shard_capacity", raw.shard_capacity)?,
        sink_capacity: capacity("daemon.sink_capacity", raw.sink_capacity)?,
    })
}

pub(crate) fn validate_admin(raw: RawAdmin) -> Result<AdminConfig, ConfigError> {
    let listen: SocketAddr = raw.listen.parse().map_err(|_| {
        ConfigError::invalid(
            "admin.listen",
            format!(
                "\"{}\" is not an address with a port (e.g. \"127.0.0.1:8686\")",
                raw.listen
            ),
        )
    })?;
    if matches!(&raw.token, Some(t) if t.expose().trim().is_empty()) {
        return Err(ConfigError::invalid(
            "admin.token",
            "must not be empty (leave it out to use REDCLOUD_ADMIN_TOKEN)",
        ));
    }
    Ok(AdminConfig {
        listen,
        token: raw.token,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::{default_config, from_toml_str, LogFormat};

    fn err(text: &str) -> String {
        from_toml_str(text, None).unwrap_err().to_string()
    }

    #[test]
    fn defaults_run_http_only_on_localhost() {
        let c = default_config();
        assert_eq!(c.daemon.shards, None);
        assert_eq!(c.daemon.tick, Duration::from_secs(1));
        assert_eq!(c.daemon.shutdown_timeout, Duration::from_secs(30));
        assert_eq!(c.daemon.log_format, LogFormat::Human);
        assert_eq!(c.admin.listen.to_string(), "127.0.0.1:8686");
        assert!(c.admin.token.is_none());
        assert_eq!(c.daemon.data_dir, std::path::Path::new("./redcloud-data"));
        assert_eq!(
            c.daemon.durability,
            crate::Durability::Wal,
            "durable by default"
        );
        assert!(
            c.dispatch.is_empty(),
            "the embedded default is console only"
        );
        assert!(c.sources.http.is_some());
        assert!(c.sources.amqp.is_none() && c.sources.redis.is_none() && c.sources.file.is_none());
    }

    #[test]
    fn sections_parse_and_errors_name_the_key() {
        let c = from_toml_str(
            "[daemon]\nshards = 3\nlog_format = \"json\"\ntick = \"250ms\"\n\
             [admin]\nlisten = \"0.0.0.0:9000\"\ntoken = \"t\"\n\
             [sources.http]\nenabled = false\n\
             [sources.amqp]\nqueue = \"q\"\nprefetch = 10\nack_interval = \"1h30m\"\n\
             [sources.redis]\nstream = \"s\"\n",
            None,
        )
        .unwrap();
        assert_eq!(c.daemon.shards, Some(3));
        assert_eq!(c.daemon.log_format, LogFormat::Json);
        assert!(c.sources.http.is_none());
        let a = c.sources.amqp.unwrap();
        assert_eq!(a.queue.as_deref(), Some("q"));
        assert_eq!(a.ack_interval, Some(Duration::from_secs(5400)));
        assert!(!format!("{:?}", c.admin).contains("\"t\""), "token printed");
        assert_eq!(
            err("[daemon]\nshards = 0\n"),
            "daemon.shards: must be between 1 and 256 (leave it out for one per core)"
        );
        assert!(err("[daemon]\nlog_format = \"xml\"\n").starts_with("daemon.log_format:"));
        assert!(err("[admin]\nlisten = \"nowhere\"\n").starts_with("admin.listen:"));
        assert!(err("[sources.amqp]\nack_interval = \"2wd\"\n")
            .starts_with("sources.amqp.ack_interval:"));
        assert!(err("[sources.redis]\nstreem = \"x\"\n").contains("unknown key `streem`"));
        assert!(err("[sources.file]\n").contains("missing key `path`"));
        assert!(err("[daemon]\ndata_dir = \" \"\n").starts_with("daemon.data_dir:"));
        assert!(err("[daemon]\ndurability = \"disk\"\n").starts_with("daemon.durability:"));
        assert!(err("[daemon]\nsnapshot_mode = \"magic\"\n").starts_with("daemon.snapshot_mode:"));
        assert!(default_config().daemon.snapshot_fork);
        assert!(err("[daemon]\nsnapshot_interval = \"10ms\"\n")
            .starts_with("daemon.snapshot_interval:"));
        let c = from_toml_str(
            "[daemon]\ndurability = \"wal\"\nsnapshot_interval = \"5s\"\n",
            None,
        )
        .unwrap();
        assert_eq!(c.daemon.durability, crate::Durability::Wal);
        assert_eq!(c.daemon.snapshot_interval, Duration::from_secs(5));
        assert_eq!(default_config().daemon.durability, crate::Durability::Wal);
        assert_eq!(default_config().daemon.commit_gap, Duration::from_millis(2));
        assert_eq!(default_config().daemon.route_gap, Duration::from_millis(1));
        let c =
            from_toml_str("[daemon]\ncommit_gap = \"0s\"\nroute_gap = \"3ms\"\n", None).unwrap();
        assert_eq!(c.daemon.commit_gap, Duration::ZERO);
        assert_eq!(c.daemon.route_gap, Duration::from_millis(3));
        assert_eq!(
            err("[daemon]\ncommit_gap = \"1s\"\n"),
            "daemon.commit_gap: must be between 0 and 100ms (acknowledgements and notifications wait for it)"
        );
        assert!(err("[daemon]\nroute_gap = \"2wd\"\n").starts_with("daemon.route_gap:"));
        let c = from_toml_str(
            "[daemon]\ndata_dir = \"/var/lib/redcloud\"\n[dispatch.routes.quiz]\nreminder = [\"console\"]\n",
            None,
        )
        .unwrap();
        assert_eq!(c.daemon.data_dir, std::path::Path::new("/var/lib/redcloud"));
        assert!(
            c.dispatch.contains_key("routes"),
            "[dispatch] is carried as is"
        );
    }
}
