//! Redis Streams source built on the `redis` crate (tokio).
//!
//! Reads a stream through a consumer group. The blocking `XREADGROUP` runs on a
//! connection of its own whose response timeout is `block` plus
//! `response_timeout` (the crate's default of 500 ms would cut every blocking read
//! short); acknowledgements and dead-lettering use a second connection.
//!
//! - The event is the field `event` of an entry; an entry without it is rejected.
//! - Completed entries are acknowledged with `XACK`, batched (`ack_batch` or
//!   `ack_interval`). XACK works from any connection, so acks survive reconnects.
//! - `reject(reason)`: `XADD <rejected_stream> * event <original> reason <reason>
//!   id <entry id>`, then `XACK`.
//! - At every (re)connect and every `claim_interval`, `XAUTOCLAIM` takes over
//!   entries pending longer than `claim_idle` on any consumer (one that died) and
//!   delivers them again. An entry still in this daemon's pipeline for longer than
//!   `claim_idle` can thus be delivered twice; the engine ignores the second copy.
//! - Lag: `XINFO GROUPS` `lag` (Redis 7+), else the group's pending count.

mod config;

use std::sync::Arc;

use ::redis::aio::MultiplexedConnection;
use ::redis::streams::{StreamAutoClaimReply, StreamId, StreamInfoGroupsReply, StreamReadReply};
use ::redis::{AsyncConnectionConfig, Client, RedisError, Value};
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub use config::RedisConfig;

use super::{
    sleep_or_shutdown, AckInner, Acker, Backoff, BoxFuture, Delivery, Outcome, Source, SourceError,
    SourceStats,
};
use crate::config::ConfigError;

/// An acknowledgement travelling from an [`Acker`] back to the source.
#[derive(Debug)]
pub(crate) struct AckMsg {
    pub(crate) id: Box<str>,
    pub(crate) event: Option<Bytes>,
    pub(crate) outcome: Outcome,
}

/// The Redis Streams source. Build it with [`RedisSource::new`], start it with
/// [`Source::run`].
pub struct RedisSource {
    name: Arc<str>,
    config: RedisConfig,
    client: Client,
    stats: Arc<SourceStats>,
}

impl RedisSource {
    /// Validates `config` and builds a source named `redis`.
    pub fn new(config: RedisConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let client = Client::open(config.url.expose())
            .map_err(|_| ConfigError::new("redis", "url", "not a redis url"))?;
        Ok(RedisSource {
            name: Arc::from("redis"),
            config,
            client,
            stats: SourceStats::new_shared(),
        })
    }

    /// Renames the source (metrics label and `Delivery::source`).
    pub fn with_name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }
}

impl Source for RedisSource {
    fn name(&self) -> Arc<str> {
        self.name.clone()
    }

    fn stats(&self) -> Arc<SourceStats> {
        self.stats.clone()
    }

    fn run(
        self: Box<Self>,
        tx: mpsc::Sender<Delivery>,
        shutdown: CancellationToken,
    ) -> BoxFuture<Result<(), SourceError>> {
        Box::pin(async move {
            let me = Arc::new(Shared {
                name: self.name,
                consumer: self.config.consumer_name(),
                rejected_stream: self.config.rejected_stream(),
                config: self.config,
                client: self.client,
                stats: self.stats,
            });
            let (ack_tx, ack_rx) = mpsc::unbounded_channel();
            let acker = tokio::spawn(me.clone().ack_loop(ack_rx, shutdown.clone()));
            me.read_loop(tx, ack_tx, shutdown).await;
            if let Err(e) = acker.await {
                warn!(error = %e, "redis ack task failed");
            }
            me.stats.set_connected(false);
            info!(source = %me.name, "redis source stopped");
            Ok(())
        })
    }
}

struct Shared {
    name: Arc<str>,
    config: RedisConfig,
    consumer: String,
    rejected_stream: String,
    client: Client,
    stats: Arc<SourceStats>,
}

/// How the read loop stopped.
enum Stop {
    Shutdown,
    Failed(RedisError),
}

impl From<RedisError> for Stop {
    fn from(e: RedisError) -> Self {
        Stop::Failed(e)
    }
}

impl Shared {
    /// Supervisor: connect, create the group, claim, read; reconnect with backoff.
    async fn read_loop(
        &self,
        tx: mpsc::Sender<Delivery>,
        ack_tx: mpsc::UnboundedSender<AckMsg>,
        shutdown: CancellationToken,
    ) {
        let c = &self.config;
        let mut backoff = Backoff::new(c.reconnect_initial, c.reconnect_max);
        let mut sessions = 0u64;
        while !shutdown.is_cancelled() {
            let conn_cfg = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(c.connect_timeout))
                .set_response_timeout(Some(c.block + c.response_timeout));
            let setup = async {
                let mut conn = self
                    .client
                    .get_multiplexed_async_connection_with_config(&conn_cfg)
                    .await?;
                self.create_group(&mut conn).await?;
                Ok::<_, RedisError>(conn)
            };
            let conn = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = setup => r,
            };
            let mut conn = match conn {
                Ok(conn) => conn,
                Err(e) => {
                    let delay = backoff.next_delay();
                    warn!(source = %self.name, url = %c.url, error = %e,
                        retry_in_ms = delay.as_millis() as u64, "redis connect failed");
                    if !sleep_or_shutdown(delay, &shutdown).await {
                        break;
                    }
                    continue;
                }
            };
            sessions += 1;
            if sessions > 1 {
                self.stats.add_reconnect();
            }
            backoff.reset();
            self.stats.set_connected(true);
            info!(source = %self.name, stream = %c.stream, group = %c.group,
                consumer = %self.consumer, "redis source connected");
            let stop = self.session(&mut conn, &tx, &ack_tx, &shutdown).await;
            self.stats.set_connected(false);
            match stop {
                Stop::Shutdown => break,
                Stop::Failed(e) => {
                    let delay = backoff.next_delay();
                    warn!(source = %self.name, error = %e,
                        retry_in_ms = delay.as_millis() as u64, "redis connection lost, reconnecting");
                    if !sleep_or_shutdown(delay, &shutdown).await {
                        break;
                    }
                }
            }
        }
    }

    async fn create_group(&self, conn: &mut MultiplexedConnection) -> Result<(), RedisError> {
        let r: Result<(), RedisError> = ::redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.config.stream)
            .arg(&self.config.group)
            .arg(&self.config.group_start)
            .arg("MKSTREAM")
            .query_async(conn)
            .await;
        match r {
            Ok(()) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// One connected session: claim when due, refresh the lag, read, deliver.
    async fn session(
        &self,
        conn: &mut MultiplexedConnection,
        tx: &mpsc::Sender<Delivery>,
        ack_tx: &mpsc::UnboundedSender<AckMsg>,
        shutdown: &CancellationToken,
    ) -> Stop {
        let c = &self.config;
        let mut next_claim = Instant::now();
        let mut next_lag = Instant::now();
        loop {
            if shutdown.is_cancelled() {
                return Stop::Shutdown;
            }
            let now = Instant::now();
            if now >= next_claim {
                if let Err(stop) = self.claim(conn, tx, ack_tx, shutdown).await {
                    return stop;
                }
                next_claim = Instant::now() + c.claim_interval;
            }
            if now >= next_lag {
                self.read_lag(conn).await;
                next_lag = Instant::now() + c.lag_interval;
            }
            // Never block past the next claim.
            let until_claim = next_claim.saturating_duration_since(Instant::now());
            let block = c
                .block
                .min(until_claim)
                .max(std::time::Duration::from_millis(1));
            let mut read_cmd = ::redis::cmd("XREADGROUP");
            read_cmd
                .arg("GROUP")
                .arg(&c.group)
                .arg(&self.consumer)
                .arg("COUNT")
                .arg(c.count)
                .arg("BLOCK")
                .arg(block.as_millis() as u64)
                .arg("STREAMS")
                .arg(&c.stream)
                .arg(">");
            let read = read_cmd.query_async::<Option<StreamReadReply>>(conn);
            // Cancelling a read mid-flight leaves its entries pending on this
            // consumer; only shutdown does that, and a claim recovers them.
            let reply = tokio::select! {
                _ = shutdown.cancelled() => return Stop::Shutdown,
                r = read => r,
            };
            let entries = match reply {
                Ok(Some(r)) => r.keys.into_iter().flat_map(|k| k.ids),
                Ok(None) => continue,
                Err(e) => return Stop::Failed(e),
            };
            for entry in entries {
                if let Err(stop) = self.deliver(entry, tx, ack_tx, shutdown).await {
                    return stop;
                }
            }
        }
    }

    /// `XAUTOCLAIM` every entry idle longer than `claim_idle`, and deliver them.
    async fn claim(
        &self,
        conn: &mut MultiplexedConnection,
        tx: &mpsc::Sender<Delivery>,
        ack_tx: &mpsc::UnboundedSender<AckMsg>,
        shutdown: &CancellationToken,
    ) -> Result<(), Stop> {
        let c = &self.config;
        let mut cursor = "0-0".to_string();
        let mut claimed = 0usize;
        loop {
            let reply: StreamAutoClaimReply = ::redis::cmd("XAUTOCLAIM")
                .arg(&c.stream)
                .arg(&c.group)
                .arg(&self.consumer)
                .arg(c.claim_idle.as_millis() as u64)
                .arg(&cursor)
                .arg("COUNT")
                .arg(c.count)
                .query_async(conn)
                .await?;
            claimed += reply.claimed.len();
            for entry in reply.claimed {
                self.deliver(entry, tx, ack_tx, shutdown).await?;
            }
            cursor = reply.next_stream_id;
            if cursor == "0-0" {
                break;
            }
        }
        if claimed > 0 {
            info!(source = %self.name, claimed, "redis entries claimed from idle consumers");
        }
        Ok(())
    }

    /// Hands one entry to the pipeline (or rejects it when it has no `event`).
    async fn deliver(
        &self,
        entry: StreamId,
        tx: &mpsc::Sender<Delivery>,
        ack_tx: &mpsc::UnboundedSender<AckMsg>,
        shutdown: &CancellationToken,
    ) -> Result<(), Stop> {
        let StreamId { id, mut map, .. } = entry;
        let event = match map.remove("event") {
            Some(Value::BulkString(b)) => Ok(Bytes::from(b)),
            Some(Value::SimpleString(s)) => Ok(Bytes::from(s.into_bytes())),
            Some(_) => Err("field `event` is not a string"),
            None => Err("entry has no `event` field"),
        };
        let event = match event {
            Ok(e) => e,
            Err(reason) => {
                debug!(source = %self.name, entry = %id, reason, "redis entry rejected at the source");
                let _ = ack_tx.send(AckMsg {
                    id: id.into_boxed_str(),
                    event: None,
                    outcome: Outcome::Rejected(reason.into()),
                });
                return Ok(());
            }
        };
        let d = Delivery {
            payload: event.clone(),
            source: self.name.clone(),
            ack: Acker::from_inner(AckInner::Redis {
                tx: ack_tx.clone(),
                id: id.into_boxed_str(),
                event,
            }),
            decoded: None,
        };
        tokio::select! {
            _ = shutdown.cancelled() => Err(Stop::Shutdown),
            r = tx.send(d) => match r {
                Ok(()) => {
                    self.stats.add_received(1);
                    Ok(())
                }
                Err(_) => Err(Stop::Shutdown),
            },
        }
    }

    async fn read_lag(&self, conn: &mut MultiplexedConnection) {
        let reply: Result<StreamInfoGroupsReply, _> = ::redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&self.config.stream)
            .query_async(conn)
            .await;
        match reply {
            Ok(r) => {
                if let Some(g) = r.groups.iter().find(|g| g.name == self.config.group) {
                    let lag = g.lag.unwrap_or(g.pending);
                    self.stats.set_lag(Some(lag as u64));
                }
            }
            Err(e) => debug!(source = %self.name, error = %e, "redis lag unavailable"),
        }
    }

    /// Batches XACKs and writes rejected entries; runs until every Acker is gone
    /// (or `drain_timeout` after shutdown), then flushes.
    async fn ack_loop(
        self: Arc<Self>,
        mut rx: mpsc::UnboundedReceiver<AckMsg>,
        shutdown: CancellationToken,
    ) {
        let mut acks = AckState {
            conn: None,
            ids: Vec::new(),
            rejects: Vec::new(),
        };
        let mut tick = tokio::time::interval(self.config.ack_interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut deadline: Option<Instant> = None;
        loop {
            let far = Instant::now() + std::time::Duration::from_secs(3600);
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(m) => {
                        self.stats.count(&m.outcome);
                        match m.outcome {
                            Outcome::Rejected(reason) => {
                                acks.rejects.push((m.id, m.event, reason));
                                self.flush(&mut acks).await;
                            }
                            Outcome::Applied | Outcome::Duplicate => {
                                acks.ids.push(m.id);
                                if acks.ids.len() >= self.config.ack_batch {
                                    self.flush(&mut acks).await;
                                }
                            }
                        }
                    }
                    None => break,
                },
                _ = tick.tick() => self.flush(&mut acks).await,
                _ = shutdown.cancelled(), if deadline.is_none() => {
                    deadline = Some(Instant::now() + self.config.drain_timeout);
                }
                _ = tokio::time::sleep_until(deadline.unwrap_or(far)), if deadline.is_some() => {
                    warn!(source = %self.name, "drain timeout: entries still in flight stay pending and will be claimed");
                    break;
                }
            }
        }
        self.flush(&mut acks).await;
        if !acks.ids.is_empty() || !acks.rejects.is_empty() {
            warn!(source = %self.name, unacked = acks.ids.len() + acks.rejects.len(),
                "final redis ack failed: the entries stay pending and will be claimed");
        }
    }

    /// Writes pending rejects, then XACKs everything complete. Keeps what failed.
    async fn flush(&self, st: &mut AckState) {
        if st.ids.is_empty() && st.rejects.is_empty() {
            return;
        }
        if st.conn.is_none() {
            let cfg = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(self.config.connect_timeout))
                .set_response_timeout(Some(self.config.response_timeout));
            match self
                .client
                .get_multiplexed_async_connection_with_config(&cfg)
                .await
            {
                Ok(c) => st.conn = Some(c),
                Err(e) => {
                    debug!(source = %self.name, error = %e, "redis ack connection unavailable");
                    return;
                }
            }
        }
        let Some(conn) = st.conn.as_mut() else { return };
        while let Some((id, event, reason)) = st.rejects.first() {
            let mut cmd = ::redis::cmd("XADD");
            cmd.arg(&self.rejected_stream).arg("*");
            if let Some(ev) = event {
                cmd.arg("event").arg(ev.as_ref());
            }
            cmd.arg("reason")
                .arg(reason.as_str())
                .arg("id")
                .arg(id.as_ref());
            match cmd.query_async::<String>(conn).await {
                Ok(_) => {
                    debug!(source = %self.name, entry = %id, %reason, "redis entry rejected");
                    let (id, _, _) = st.rejects.remove(0);
                    st.ids.push(id);
                }
                Err(e) => {
                    warn!(source = %self.name, error = %e, "writing to the rejected stream failed");
                    st.conn = None;
                    return;
                }
            }
        }
        if st.ids.is_empty() {
            return;
        }
        let r: Result<u64, _> = ::redis::cmd("XACK")
            .arg(&self.config.stream)
            .arg(&self.config.group)
            .arg(st.ids.iter().map(|s| s.as_ref()).collect::<Vec<&str>>())
            .query_async(conn)
            .await;
        match r {
            Ok(_) => st.ids.clear(),
            Err(e) => {
                warn!(source = %self.name, error = %e, pending = st.ids.len(), "redis XACK failed, will retry");
                st.conn = None;
            }
        }
    }
}

struct AckState {
    conn: Option<MultiplexedConnection>,
    ids: Vec<Box<str>>,
    rejects: Vec<(Box<str>, Option<Bytes>, String)>,
}
