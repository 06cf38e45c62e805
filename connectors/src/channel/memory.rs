//! An in-process channel for tests, benches and the load-test harness: it
//! records what it was given (with the arrival instant on tokio's clock, so
//! paused-time tests see simulated time) and answers as a script says.
//!
//! It holds personal data in memory by design (tests assert on it); it is
//! never built from a config.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::{BoxFuture, Channel, ChannelKind, Delivered, Outgoing, SendError};

/// A scripted answer: given the message and how many sends the channel has
/// seen before it (0-based), answer.
pub type Script = Box<dyn FnMut(&Outgoing, u64) -> Result<Delivered, SendError> + Send>;

/// One message the channel received.
#[derive(Clone, Debug)]
pub struct Record {
    /// Arrival on tokio's clock.
    pub at: Instant,
    /// Idempotency key.
    pub id: String,
    /// The address it was sent to.
    pub address: String,
    /// The notification ids it carried.
    pub ids: Vec<String>,
    /// The notifications' kind (of the first one).
    pub kind: String,
    /// The body text.
    pub body: String,
    /// Whether the script accepted it.
    pub ok: bool,
}

/// The in-process channel.
#[derive(Clone)]
pub struct MemoryChannel {
    kind: ChannelKind,
    inner: Arc<Inner>,
}

struct Inner {
    record: bool,
    latency: Duration,
    seen: AtomicU64,
    log: Mutex<Vec<Record>>,
    script: Mutex<Option<Script>>,
}

impl MemoryChannel {
    /// A channel of `kind` that accepts everything and records it.
    pub fn new(kind: ChannelKind) -> Self {
        MemoryChannel {
            kind,
            inner: Arc::new(Inner {
                record: true,
                latency: Duration::ZERO,
                seen: AtomicU64::new(0),
                log: Mutex::new(Vec::new()),
                script: Mutex::new(None),
            }),
        }
    }

    /// A channel that only counts (benches): no records, no script.
    pub fn counting(kind: ChannelKind) -> Self {
        let mut c = MemoryChannel::new(kind);
        Arc::get_mut(&mut c.inner).expect("fresh").record = false;
        c
    }

    /// Answers after `latency` (on tokio's clock).
    pub fn with_latency(mut self, latency: Duration) -> Self {
        Arc::get_mut(&mut self.inner)
            .expect("with_latency before the channel is shared")
            .latency = latency;
        self
    }

    /// Replaces the script (accept everything when none).
    pub fn set_script(&self, script: Script) {
        *self.inner.script.lock().expect("script lock") = Some(script);
    }

    /// Back to accepting everything.
    pub fn clear_script(&self) {
        *self.inner.script.lock().expect("script lock") = None;
    }

    /// Everything received so far, in arrival order.
    pub fn records(&self) -> Vec<Record> {
        self.inner.log.lock().expect("log lock").clone()
    }

    /// Messages received (accepted or not).
    pub fn seen(&self) -> u64 {
        self.inner.seen.load(Ordering::Relaxed)
    }
}

impl Channel for MemoryChannel {
    fn kind(&self) -> ChannelKind {
        self.kind
    }

    fn send(&self, msg: Arc<Outgoing>) -> BoxFuture<Result<Delivered, SendError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let at = Instant::now();
            let n = inner.seen.fetch_add(1, Ordering::Relaxed);
            if !inner.record {
                return Ok(Delivered::default());
            }
            if !inner.latency.is_zero() {
                tokio::time::sleep(inner.latency).await;
            }
            let answer = match inner.script.lock().expect("script lock").as_mut() {
                Some(f) => f(&msg, n),
                None => Ok(Delivered::default()),
            };
            inner.log.lock().expect("log lock").push(Record {
                at,
                id: msg.id.clone(),
                address: msg.address.clone(),
                ids: msg.notifications.iter().map(|n| n.id.clone()).collect(),
                kind: msg
                    .notifications
                    .first()
                    .map(|n| n.kind.clone())
                    .unwrap_or_default(),
                body: msg.body.clone(),
                ok: answer.is_ok(),
            });
            answer
        })
    }
}
