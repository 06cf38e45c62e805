//! Sources: the lifecycle every inbound connector shares.
//!
//! A [`Source`] is started once with a bounded [`mpsc::Sender`] of [`Delivery`]
//! values and a shutdown token. It runs until the token is cancelled, connecting
//! and reconnecting on its own (exponential backoff, capped, with jitter), and it
//! never drops an event it has taken responsibility for: an event leaves the source
//! only as a `Delivery` whose [`Acker`] the pipeline consumes exactly once.
//!
//! Backpressure: sources await capacity on the bounded channel, so a full pipeline
//! stops consumption (AMQP: the prefetch window bounds the unacknowledged messages;
//! Redis: no further `XREADGROUP`; HTTP: 429).
//!
//! State and counters are published through a shared [`SourceStats`] of atomics
//! that the daemon reads for `/readyz` and `/metrics`.
//!
//! What must not live here: decoding or applying events (the pipeline and the
//! engine do that), and anything specific to one protocol.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

pub mod amqp;
mod backoff;
pub mod file;
pub mod http;
pub mod redis;

pub use backoff::Backoff;

/// A boxed, sendable future, as returned by [`Source::run`].
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The lifecycle of an inbound connector.
///
/// `run` consumes the source: call it once, spawn the future, and cancel the token
/// to stop it. After cancellation a source stops taking new events, waits (up to its
/// drain timeout) for the Ackers of events already handed out, flushes their acks and
/// returns.
pub trait Source: Send + 'static {
    /// The source's name: the label of its metrics and the `source` of its deliveries.
    fn name(&self) -> Arc<str>;

    /// The shared state and counters of this source.
    fn stats(&self) -> Arc<SourceStats>;

    /// Runs the source until `shutdown` is cancelled. Errors only on a fault that
    /// retrying cannot fix (a missing file); connection failures are retried.
    fn run(
        self: Box<Self>,
        tx: mpsc::Sender<Delivery>,
        shutdown: CancellationToken,
    ) -> BoxFuture<Result<(), SourceError>>;
}

/// A fault a source cannot recover from by retrying.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Invalid configuration.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// An I/O failure on a file or socket the source cannot retry.
    #[error("{connector} source: {what}: {source}")]
    Io {
        /// Connector kind.
        connector: &'static str,
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// One event handed to the pipeline.
pub struct Delivery {
    /// The event's JSON bytes (one object, no trailing newline).
    pub payload: Bytes,
    /// The name of the source it came from.
    pub source: Arc<str>,
    /// Consume exactly once: [`Acker::ack`] after apply, [`Acker::reject`] if malformed.
    pub ack: Acker,
    /// The event, when the source already decoded and validated the payload
    /// (HTTP does, to answer per line): the pipeline then skips decoding it
    /// again.
    pub decoded: Option<Box<redcloud_engine::event::Event<'static>>>,
}

impl fmt::Debug for Delivery {
    // Never prints the payload: events carry phone numbers and tokens.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("source", &self.source)
            .field("payload_len", &self.payload.len())
            .field("ack", &self.ack)
            .finish()
    }
}

/// What became of a delivery, as reported through its [`Acker`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The event was applied.
    Applied,
    /// The event's id was already applied: acknowledged and ignored.
    Duplicate,
    /// The event is malformed; the one-line reason goes to the dead-letter place.
    Rejected(String),
}

/// The acknowledgement handle of one [`Delivery`].
///
/// Cheap to move, `Send`, and consumed by its first use. Dropping it without
/// calling any method leaves the event unacknowledged: sources that can redeliver
/// (AMQP, Redis) will deliver it again after a reconnect or claim.
pub struct Acker(AckInner);

pub(crate) enum AckInner {
    Noop,
    Amqp {
        tx: mpsc::UnboundedSender<amqp::AckMsg>,
        generation: u64,
        tag: u64,
    },
    Redis {
        tx: mpsc::UnboundedSender<redis::AckMsg>,
        id: Box<str>,
        event: Bytes,
    },
    Reply(oneshot::Sender<Outcome>),
    Callback(Box<dyn FnOnce(Outcome) + Send + Sync + 'static>),
}

impl Acker {
    /// An Acker that does nothing (tests, sources without acknowledgements).
    pub fn noop() -> Self {
        Acker(AckInner::Noop)
    }

    /// An Acker that sends its outcome on a oneshot channel (HTTP ingest, tests).
    pub fn reply(tx: oneshot::Sender<Outcome>) -> Self {
        Acker(AckInner::Reply(tx))
    }

    /// An Acker that calls `f` with its outcome.
    pub fn callback(f: impl FnOnce(Outcome) + Send + Sync + 'static) -> Self {
        Acker(AckInner::Callback(Box::new(f)))
    }

    pub(crate) fn from_inner(inner: AckInner) -> Self {
        Acker(inner)
    }

    /// The event was applied: acknowledge it.
    pub fn ack(self) {
        self.complete(Outcome::Applied);
    }

    /// The event's id was already applied: acknowledge it (counted as a duplicate).
    pub fn duplicate(self) {
        self.complete(Outcome::Duplicate);
    }

    /// The event is malformed: send it to the source's dead-letter place with
    /// `reason` (one line), then acknowledge the original.
    pub fn reject(self, reason: String) {
        self.complete(Outcome::Rejected(reason));
    }

    /// Reports `outcome`. A source that has gone away (shut down, or an AMQP
    /// connection replaced since) drops it silently.
    pub fn complete(self, outcome: Outcome) {
        match self.0 {
            AckInner::Noop => {}
            AckInner::Amqp {
                tx,
                generation,
                tag,
            } => {
                let _ = tx.send(amqp::AckMsg {
                    generation,
                    tag,
                    outcome,
                });
            }
            AckInner::Redis { tx, id, event } => {
                let _ = tx.send(redis::AckMsg {
                    id,
                    event: Some(event),
                    outcome,
                });
            }
            AckInner::Reply(tx) => {
                let _ = tx.send(outcome);
            }
            AckInner::Callback(f) => f(outcome),
        }
    }
}

impl fmt::Debug for Acker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.0 {
            AckInner::Noop => "noop",
            AckInner::Amqp { .. } => "amqp",
            AckInner::Redis { .. } => "redis",
            AckInner::Reply(_) => "reply",
            AckInner::Callback(_) => "callback",
        };
        f.debug_tuple("Acker").field(&kind).finish()
    }
}

/// Live state and counters of one source, shared with the daemon for `/readyz`
/// and `/metrics`. All counters only grow.
#[derive(Debug)]
pub struct SourceStats {
    connected: AtomicBool,
    received: AtomicU64,
    rejected: AtomicU64,
    acked: AtomicU64,
    duplicates: AtomicU64,
    reconnects: AtomicU64,
    stale_acks: AtomicU64,
    lag: AtomicI64,
}

impl Default for SourceStats {
    fn default() -> Self {
        SourceStats {
            connected: AtomicBool::new(false),
            received: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            stale_acks: AtomicU64::new(0),
            lag: AtomicI64::new(-1),
        }
    }
}

/// A point-in-time copy of [`SourceStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    /// Connected to its broker / listening (for `/readyz`).
    pub connected: bool,
    /// Events handed to the pipeline (`redcloud_source_received_total`).
    pub received: u64,
    /// Events rejected and dead-lettered (`redcloud_source_rejected_total`).
    pub rejected: u64,
    /// Events acknowledged after apply, duplicates included (`redcloud_source_acked_total`).
    pub acked: u64,
    /// Of `acked`, events ignored as duplicates (`redcloud_source_duplicates_total`).
    pub duplicates: u64,
    /// Connections re-established after a failure (`redcloud_source_reconnects_total`).
    pub reconnects: u64,
    /// Acks dropped because their AMQP connection was replaced; the broker
    /// redelivers those events (`redcloud_source_stale_acks_total`).
    pub stale_acks: u64,
    /// Events waiting in the broker (AMQP: ready messages; Redis: group lag, or the
    /// pending count when the server does not report lag), when known
    /// (`redcloud_source_lag`).
    pub lag: Option<u64>,
}

impl SourceStats {
    /// A fresh, disconnected set of counters behind an `Arc`.
    pub fn new_shared() -> Arc<SourceStats> {
        Arc::new(SourceStats::default())
    }

    /// Copies every value.
    pub fn snapshot(&self) -> StatsSnapshot {
        let lag = self.lag.load(Ordering::Relaxed);
        StatsSnapshot {
            connected: self.is_connected(),
            received: self.received.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            acked: self.acked.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            stale_acks: self.stale_acks.load(Ordering::Relaxed),
            lag: u64::try_from(lag).ok(),
        }
    }

    /// Whether the source is connected (ready to receive).
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    pub(crate) fn set_connected(&self, up: bool) {
        self.connected.store(up, Ordering::Relaxed);
    }

    pub(crate) fn add_received(&self, n: u64) {
        self.received.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn add_reconnect(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_stale_ack(&self) {
        self.stale_acks.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one outcome.
    pub(crate) fn count(&self, outcome: &Outcome) {
        match outcome {
            Outcome::Applied => {
                self.acked.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Duplicate => {
                self.acked.fetch_add(1, Ordering::Relaxed);
                self.duplicates.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Rejected(_) => {
                self.rejected.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub(crate) fn add_rejected(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn set_lag(&self, lag: Option<u64>) {
        let v = lag.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
        self.lag.store(v, Ordering::Relaxed);
    }
}

/// Sleeps for `d`, returning `false` early if `shutdown` is cancelled first.
pub(crate) async fn sleep_or_shutdown(
    d: std::time::Duration,
    shutdown: &CancellationToken,
) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_counted() {
        let s = SourceStats::default();
        s.count(&Outcome::Applied);
        s.count(&Outcome::Duplicate);
        s.count(&Outcome::Rejected("bad".into()));
        s.set_lag(Some(7));
        let snap = s.snapshot();
        assert_eq!((snap.acked, snap.duplicates, snap.rejected), (2, 1, 1));
        assert_eq!(snap.lag, Some(7));
        s.set_lag(None);
        assert_eq!(s.snapshot().lag, None);
    }

    #[tokio::test]
    async fn reply_acker_reports_once() {
        let (tx, rx) = oneshot::channel();
        Acker::reply(tx).reject("no `id`".into());
        assert_eq!(rx.await.unwrap(), Outcome::Rejected("no `id`".into()));
    }
}
