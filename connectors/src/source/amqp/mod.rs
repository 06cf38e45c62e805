//! AMQP 0-9-1 source (RabbitMQ) built on lapin.
//!
//! A supervisor loop owns the connection: it connects, declares the topology
//! (topic exchange, durable queue with `x-dead-letter-exchange`, bindings, the
//! dead-letter exchange and queue), consumes with manual acks under a prefetch
//! window, and on any connection error, channel error or end of the consumer
//! stream it reconnects with backoff and does it all again. lapin's own
//! auto-recovery is not used.
//!
//! Deliveries move in bursts: whatever the consumer has ready when the source
//! wakes (up to 256) is taken at once and handed to the pipeline together, and
//! completions are read the same way, so the source wakes once per burst
//! rather than once per message.
//!
//! Acknowledgements: deliveries complete out of order (several shards apply them),
//! so a [`tracker::Tracker`] keeps the outstanding delivery tags and the source
//! sends a cumulative `basic.ack(multiple = true)` for the highest contiguous
//! completed prefix, every `ack_batch` completions or `ack_interval`. A rejected
//! message is first published (with publisher confirms) to the dead-letter
//! exchange with the header `x-redcloud-reason`, then acknowledged like the rest.
//!
//! Every connection is a *generation*; an [`Acker`] carries the generation of its
//! delivery, and acks for an older generation are dropped (the broker has already
//! requeued those messages and will redeliver them; applying twice is harmless
//! because the engine ignores a known event id).

mod config;
mod tracker;

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions,
    BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub use config::AmqpConfig;
use tracker::Tracker;

use super::{
    sleep_or_shutdown, AckInner, Acker, Backoff, BoxFuture, Delivery, Outcome, Source, SourceError,
    SourceStats,
};
use crate::config::ConfigError;

/// Header carrying the one-line reason on a dead-lettered message.
pub const REASON_HEADER: &str = "x-redcloud-reason";
/// Header carrying the original routing key on a dead-lettered message.
pub const ROUTING_KEY_HEADER: &str = "x-redcloud-routing-key";
/// Header carrying the original exchange on a dead-lettered message.
pub const EXCHANGE_HEADER: &str = "x-redcloud-exchange";

/// The most deliveries (and acknowledgements) handled in one go.
const BURST: usize = 256;

/// An acknowledgement travelling from an [`Acker`] back to the source.
#[derive(Debug)]
pub(crate) struct AckMsg {
    pub(crate) generation: u64,
    pub(crate) tag: u64,
    pub(crate) outcome: Outcome,
}

/// The AMQP source. Build it with [`AmqpSource::new`], start it with [`Source::run`].
pub struct AmqpSource {
    name: Arc<str>,
    config: AmqpConfig,
    stats: Arc<SourceStats>,
}

impl AmqpSource {
    /// Validates `config` and builds a source named `amqp`.
    pub fn new(config: AmqpConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(AmqpSource {
            name: Arc::from("amqp"),
            config,
            stats: SourceStats::new_shared(),
        })
    }

    /// Renames the source (metrics label and `Delivery::source`).
    pub fn with_name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }
}

impl Source for AmqpSource {
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
            Supervisor::new(*self, tx, shutdown).run().await;
            Ok(())
        })
    }
}

/// Why a session ended.
enum End {
    /// Shutdown requested (or the pipeline went away): stop for good.
    Shutdown,
    /// The connection or channel failed: reconnect.
    Lost(String),
}

struct Supervisor {
    name: Arc<str>,
    config: AmqpConfig,
    stats: Arc<SourceStats>,
    tx: mpsc::Sender<Delivery>,
    shutdown: CancellationToken,
    ack_tx: mpsc::UnboundedSender<AckMsg>,
    ack_rx: mpsc::UnboundedReceiver<AckMsg>,
}

/// One connection generation: its connection, channels and consumer.
struct Session {
    generation: u64,
    conn: Connection,
    channel: Channel,
    publish: Channel,
    consumer: lapin::Consumer,
    consumer_tag: ShortString,
    tracker: Tracker,
}

impl Supervisor {
    fn new(src: AmqpSource, tx: mpsc::Sender<Delivery>, shutdown: CancellationToken) -> Self {
        let (ack_tx, ack_rx) = mpsc::unbounded_channel();
        Supervisor {
            name: src.name,
            config: src.config,
            stats: src.stats,
            tx,
            shutdown,
            ack_tx,
            ack_rx,
        }
    }

    async fn run(mut self) {
        let mut backoff = Backoff::new(self.config.reconnect_initial, self.config.reconnect_max);
        let mut generation = 0u64;
        let mut failures_in_a_row = 0u32;
        while !self.shutdown.is_cancelled() {
            generation += 1;
            let connect = tokio::select! {
                _ = self.shutdown.cancelled() => break,
                r = tokio::time::timeout(self.config.connect_timeout, self.connect(generation)) => r,
            };
            let session = match connect {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    failures_in_a_row += 1;
                    let delay = backoff.next_delay();
                    warn!(source = %self.name, uri = %self.config.uri, error = %e, attempt = failures_in_a_row,
                        retry_in_ms = delay.as_millis() as u64, "amqp connect failed");
                    if !sleep_or_shutdown(delay, &self.shutdown).await {
                        break;
                    }
                    continue;
                }
                Err(_) => {
                    failures_in_a_row += 1;
                    let delay = backoff.next_delay();
                    warn!(source = %self.name, uri = %self.config.uri, attempt = failures_in_a_row,
                        retry_in_ms = delay.as_millis() as u64, "amqp connect timed out");
                    if !sleep_or_shutdown(delay, &self.shutdown).await {
                        break;
                    }
                    continue;
                }
            };
            if generation > 1 {
                self.stats.add_reconnect();
            }
            failures_in_a_row = 0;
            backoff.reset();
            self.stats.set_connected(true);
            info!(source = %self.name, generation, queue = %self.config.queue, "amqp source connected");
            let end = self.consume(session).await;
            self.stats.set_connected(false);
            match end {
                End::Shutdown => break,
                End::Lost(reason) => {
                    let delay = backoff.next_delay();
                    warn!(source = %self.name, generation, error = %reason,
                        retry_in_ms = delay.as_millis() as u64, "amqp connection lost, reconnecting");
                    if !sleep_or_shutdown(delay, &self.shutdown).await {
                        break;
                    }
                }
            }
        }
        self.stats.set_connected(false);
        info!(source = %self.name, "amqp source stopped");
    }

    /// Connects, declares the topology and starts consuming.
    async fn connect(&self, generation: u64) -> Result<Session, lapin::Error> {
        let c = &self.config;
        let props = ConnectionProperties::default()
            .with_connection_name(format!("redcloud:{}", self.name).into());
        let conn = Connection::connect(c.uri.expose(), props).await?;
        let channel = conn.create_channel().await?;
        channel
            .basic_qos(c.prefetch, BasicQosOptions::default())
            .await?;
        let durable_exchange = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        let durable_queue = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        channel
            .exchange_declare(
                c.exchange.as_str().into(),
                ExchangeKind::Topic,
                durable_exchange,
                FieldTable::default(),
            )
            .await?;
        channel
            .exchange_declare(
                c.dead_letter_exchange.as_str().into(),
                ExchangeKind::Topic,
                durable_exchange,
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_declare(
                c.dead_letter_queue.as_str().into(),
                durable_queue,
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_bind(
                c.dead_letter_queue.as_str().into(),
                c.dead_letter_exchange.as_str().into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let mut args = FieldTable::default();
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(c.dead_letter_exchange.as_str().into()),
        );
        channel
            .queue_declare(c.queue.as_str().into(), durable_queue, args)
            .await?;
        for key in &c.binding_keys {
            channel
                .queue_bind(
                    c.queue.as_str().into(),
                    c.exchange.as_str().into(),
                    key.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        let publish = conn.create_channel().await?;
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let consumer_tag: ShortString = format!(
            "redcloud-{}-{}-{}",
            self.name,
            std::process::id(),
            generation
        )
        .into();
        let consumer = channel
            .basic_consume(
                c.queue.as_str().into(),
                consumer_tag.clone(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(Session {
            generation,
            conn,
            channel,
            publish,
            consumer,
            consumer_tag,
            tracker: Tracker::default(),
        })
    }

    /// Runs one connected session until shutdown or failure.
    async fn consume(&mut self, mut s: Session) -> End {
        let mut events = s.conn.events_listener();
        let mut ack_tick = tokio::time::interval(self.config.ack_interval);
        ack_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut lag_tick = tokio::time::interval(self.config.lag_interval);
        lag_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Deliveries taken from the consumer and not yet handed to the
        // pipeline. Whatever the consumer has ready is taken at once and
        // handed over together: one wake-up of this task and of the pipeline
        // per burst rather than per message.
        let mut pending: VecDeque<Delivery> = VecDeque::new();
        let mut acks: Vec<AckMsg> = Vec::with_capacity(BURST);
        let tx = self.tx.clone();
        let gap = self.config.take_gap;
        let gate = tokio::time::sleep(std::time::Duration::ZERO);
        tokio::pin!(gate);
        let mut open = true;
        let end = loop {
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break None,
                n = self.ack_rx.recv_many(&mut acks, BURST) => {
                    if n == 0 {
                        // The sender lives in `self`: never closed.
                        continue;
                    }
                    let mut failed = None;
                    for msg in acks.drain(..) {
                        if failed.is_none() {
                            failed = self.on_ack(&mut s, msg).await.err();
                        }
                    }
                    // One cumulative ack for the whole burst of completions.
                    if failed.is_none() && s.tracker.unsent() >= self.config.ack_batch as u64 {
                        failed = flush(&mut s).err();
                    }
                    if let Some(e) = failed {
                        break Some(e);
                    }
                }
                _ = ack_tick.tick() => {
                    if let Err(e) = flush(&mut s) {
                        break Some(e);
                    }
                }
                _ = lag_tick.tick() => self.read_lag(&s).await,
                ev = events.next() => match ev {
                    Some(lapin::Event::Error(e)) => break Some(format!("connection error: {e}")),
                    Some(lapin::Event::ConnectionBlocked(reason)) => {
                        warn!(source = %self.name, %reason, "amqp broker blocked the connection");
                    }
                    Some(_) => {}
                    None => break Some("connection event stream ended".into()),
                },
                permit = tx.reserve(), if !pending.is_empty() => match permit {
                    Ok(permit) => {
                        let mut sent = 0;
                        if let Some(d) = pending.pop_front() {
                            permit.send(d);
                            sent += 1;
                        }
                        // The rest of the burst, as far as there is room.
                        while !pending.is_empty() {
                            let Ok(permit) = tx.try_reserve() else { break };
                            if let Some(d) = pending.pop_front() {
                                permit.send(d);
                                sent += 1;
                            }
                        }
                        self.stats.add_received(sent);
                    }
                    Err(_) => {
                        debug!(source = %self.name, "pipeline closed, stopping");
                        break None;
                    }
                },
                () = &mut gate, if !open => open = true,
                next = s.consumer.next(), if pending.is_empty() && open => {
                    let mut next = next;
                    let mut failed = None;
                    loop {
                        match next {
                            Some(Ok(d)) => pending.push_back(self.delivery(&mut s, d)),
                            Some(Err(e)) => {
                                failed = Some(format!("consumer error: {e}"));
                                break;
                            }
                            None => {
                                failed = Some("consumer stream ended (cancelled by the broker?)".into());
                                break;
                            }
                        }
                        if pending.len() >= BURST {
                            break;
                        }
                        // Only what is already there: never wait here.
                        match s.consumer.next().now_or_never() {
                            Some(n) => next = n,
                            None => break,
                        }
                    }
                    if let Some(e) = failed {
                        break Some(e);
                    }
                    // The consumer had no more ready: under load, what comes
                    // next is taken in one go after `gap`, with one wake-up.
                    if pending.len() < BURST && !gap.is_zero() {
                        gate.as_mut().reset(tokio::time::Instant::now() + gap);
                        open = false;
                    }
                }
            }
        };
        match end {
            Some(reason) => {
                // The broker requeues every unacknowledged message of this connection.
                let _ = s.conn.close(320, "redcloud: reconnecting".into()).await;
                End::Lost(reason)
            }
            None => {
                for d in pending.drain(..) {
                    self.release(&mut s, d).await;
                }
                self.drain(s).await;
                End::Shutdown
            }
        }
    }

    /// Tracks a message from the broker and wraps it for the pipeline.
    fn delivery(&self, s: &mut Session, d: lapin::message::Delivery) -> Delivery {
        let tag = d.delivery_tag;
        let payload = Bytes::from(d.data);
        s.tracker
            .delivered(tag, payload.clone(), d.routing_key, d.exchange);
        Delivery {
            payload,
            source: self.name.clone(),
            ack: Acker::from_inner(AckInner::Amqp {
                tx: self.ack_tx.clone(),
                generation: s.generation,
                tag,
            }),
            decoded: None,
        }
    }

    /// Handles one completion: dead-letters a rejected message and marks the
    /// tag complete (the caller sends the cumulative ack once per burst).
    async fn on_ack(&self, s: &mut Session, msg: AckMsg) -> Result<(), String> {
        if msg.generation != s.generation {
            self.stats.add_stale_ack();
            debug!(source = %self.name, generation = msg.generation, tag = msg.tag, "dropping ack of an older connection");
            return Ok(());
        }
        if let Outcome::Rejected(reason) = &msg.outcome {
            if let Some(original) = s.tracker.original(msg.tag) {
                let mut headers = FieldTable::default();
                headers.insert(
                    REASON_HEADER.into(),
                    AMQPValue::LongString(one_line(reason).into()),
                );
                headers.insert(
                    ROUTING_KEY_HEADER.into(),
                    AMQPValue::LongString(original.routing_key.as_str().into()),
                );
                headers.insert(
                    EXCHANGE_HEADER.into(),
                    AMQPValue::LongString(original.exchange.as_str().into()),
                );
                let props = BasicProperties::default()
                    .with_headers(headers)
                    .with_delivery_mode(2);
                let confirm = s
                    .publish
                    .basic_publish(
                        self.config.dead_letter_exchange.as_str().into(),
                        original.routing_key.clone(),
                        BasicPublishOptions::default(),
                        &original.body,
                        props,
                    )
                    .await
                    .map_err(|e| format!("dead-letter publish failed: {e}"))?
                    .await
                    .map_err(|e| format!("dead-letter publish failed: {e}"))?;
                if let Confirmation::Nack(_) = confirm {
                    return Err("dead-letter publish was nacked by the broker".into());
                }
                debug!(source = %self.name, tag = msg.tag, reason = %one_line(reason), "message dead-lettered");
            }
        }
        if s.tracker.complete(msg.tag) {
            self.stats.count(&msg.outcome);
        }
        Ok(())
    }

    /// Gives a delivery that never reached the pipeline back to the broker.
    async fn release(&self, s: &mut Session, d: Delivery) {
        let tag = match d.ack.0 {
            AckInner::Amqp { tag, .. } => tag,
            _ => return,
        };
        let requeue = BasicNackOptions {
            multiple: false,
            requeue: true,
        };
        if s.channel.basic_nack(tag, requeue).await.is_ok() {
            s.tracker.release(tag);
        }
    }

    /// Shutdown: stop intake, wait for in-flight completions, flush, close.
    async fn drain(&mut self, mut s: Session) {
        let _ = s
            .channel
            .basic_cancel(s.consumer_tag.clone(), BasicCancelOptions::default())
            .await;
        let deadline = Instant::now() + self.config.drain_timeout;
        info!(source = %self.name, in_flight = s.tracker.in_flight(), "amqp source draining");
        while s.tracker.in_flight() > 0 {
            let msg = tokio::select! {
                m = self.ack_rx.recv() => m,
                _ = tokio::time::sleep_until(deadline) => None,
            };
            let Some(msg) = msg else { break };
            if let Err(e) = self.on_ack(&mut s, msg).await {
                warn!(source = %self.name, error = %e, "amqp connection failed while draining");
                return;
            }
        }
        if let Err(e) = flush_written(&mut s).await {
            warn!(source = %self.name, error = %e, "final ack failed");
        }
        let left = s.tracker.in_flight();
        if left > 0 {
            warn!(source = %self.name, in_flight = left, "drain timeout: unacknowledged messages will be redelivered");
        }
        let _ = s.conn.close(200, "redcloud: shutdown".into()).await;
    }

    async fn read_lag(&self, s: &Session) {
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        match s
            .publish
            .queue_declare(
                self.config.queue.as_str().into(),
                passive,
                FieldTable::default(),
            )
            .await
        {
            Ok(q) => self.stats.set_lag(Some(u64::from(q.message_count()))),
            Err(e) => debug!(source = %self.name, error = %e, "queue depth unavailable"),
        }
    }
}

/// The cumulative ack for the completed prefix, if it grew. lapin queues the
/// frame on the channel when the future is first polled.
fn ack_prefix(
    s: &mut Session,
) -> Option<impl std::future::Future<Output = lapin::Result<()>> + '_> {
    let upto = s.tracker.take_ackable()?;
    Some(
        s.channel
            .basic_ack(upto, lapin::options::BasicAckOptions { multiple: true }),
    )
}

/// Sends the cumulative ack without waiting for lapin's I/O thread to write
/// it: the frame is queued in order on the channel, and a connection that
/// fails before writing it shows up on the connection's events (the broker
/// then redelivers, and applying again is harmless). Waiting would put the
/// source to sleep and wake it again for every ack.
fn flush(s: &mut Session) -> Result<(), String> {
    match ack_prefix(s).and_then(FutureExt::now_or_never) {
        Some(Err(e)) => Err(format!("ack failed: {e}")),
        _ => Ok(()),
    }
}

/// The same, waiting until the ack is written (at shutdown, before closing).
async fn flush_written(s: &mut Session) -> Result<(), String> {
    if let Some(ack) = ack_prefix(s) {
        ack.await.map_err(|e| format!("ack failed: {e}"))?;
    }
    Ok(())
}

/// The reason as one line of at most 1000 bytes.
fn one_line(reason: &str) -> String {
    let mut s: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if s.len() > 1000 {
        let mut cut = 1000;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}
