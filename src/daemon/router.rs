//! The router: decodes deliveries and sends each event to the shard that owns
//! its key.
//!
//! A malformed delivery is rejected through its Acker (the source dead-letters
//! it with the reason) and counted by reason class. `org.upserted` goes to
//! every shard (each keeps the whole org tree); every other event goes to the
//! shard `xxh3(routing key) % shards`: members by member id, tickets by ticket
//! id. Sends wait for room in the shard's bounded inbox, so a slow shard slows
//! the router, which slows the sources (backpressure).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redcloud_connectors::source::Delivery;
use redcloud_engine::event::{decode, Body};
use tokio::sync::mpsc;
use tracing::{debug, warn};
use xxhash_rust::xxh3::xxh3_64;

use super::metrics::{reason_class, SourceEntry, REASON_CLASSES};
use super::shard::{Done, Fanout, RoutedEvent, ShardMsg};

/// The event time the router has handed out, for shards that fall behind.
///
/// Each shard's watermark moves with its own events and the wall clock, so
/// producers slightly out of step with each other make events late only within
/// a shard. But when events run ahead of the wall clock (a backlog or a replay
/// pushed into the daemon), a shard that got few of them would close its days
/// only when the wall clock gets there. So once the router has been idle for a
/// quiet period (no more events in flight from any producer), shards with
/// nothing queued advance to the largest `at` routed: the daemon then ends in
/// the state `redcloud replay` reaches for the same events.
#[derive(Debug)]
pub struct EventTime {
    max_at: AtomicI64,
    last_routed_ms: AtomicU64,
    base: Instant,
}

impl EventTime {
    /// Nothing routed yet.
    pub fn new() -> EventTime {
        EventTime {
            max_at: AtomicI64::new(i64::MIN),
            last_routed_ms: AtomicU64::new(0),
            base: Instant::now(),
        }
    }

    fn publish(&self, max_at: i64) {
        self.max_at.store(max_at, Ordering::Release);
        let now = self.base.elapsed().as_millis() as u64;
        self.last_routed_ms.store(now, Ordering::Release);
    }

    /// The largest `at` routed, once the router has been idle for `quiet`.
    pub fn settled(&self, quiet: Duration) -> Option<i64> {
        let last = self.last_routed_ms.load(Ordering::Acquire);
        let now = self.base.elapsed().as_millis() as u64;
        let max = self.max_at.load(Ordering::Acquire);
        (max != i64::MIN && now.saturating_sub(last) >= quiet.as_millis() as u64).then_some(max)
    }
}

impl Default for EventTime {
    fn default() -> Self {
        EventTime::new()
    }
}

/// The shard that owns `key` among `shards`.
pub fn shard_of(key: &str, shards: usize) -> usize {
    (xxh3_64(key.as_bytes()) % shards as u64) as usize
}

/// Routes deliveries until `rx` is closed and empty, then asks every shard to
/// stop once it has finished what it was sent.
///
/// Event time across shards: each routed event carries the largest `at` of
/// the events routed before it (its `hint`); the shard advances to it before
/// applying the event, so the sharded daemon closes days, fires timers and
/// judges lateness exactly as one engine applying the events in routing order
/// (`redcloud replay` of that order). After each batch has been handed to
/// every shard, the router also publishes the largest `at` routed so far in
/// `event_time`, for shards that get no events (see [`EventTime`]).
pub async fn run(
    mut rx: mpsc::Receiver<Delivery>,
    shards: Vec<mpsc::Sender<ShardMsg>>,
    levels: Arc<[String]>,
    sources: Vec<Arc<SourceEntry>>,
    event_time: Arc<EventTime>,
) {
    let n = shards.len();
    let mut max_at = i64::MIN;
    let mut batch = Vec::with_capacity(256);
    let mut per_shard: Vec<Vec<RoutedEvent>> = (0..n).map(|_| Vec::new()).collect();
    'outer: while rx.recv_many(&mut batch, 256).await > 0 {
        for d in batch.drain(..) {
            let source = sources
                .iter()
                .position(|s| s.name == d.source)
                .unwrap_or(usize::MAX);
            let decoded = match d.decoded {
                Some(ev) => Ok(*ev),
                None => decode(&d.payload, &levels).map(|ev| ev.into_owned()),
            };
            let ev = match decoded {
                Ok(ev) => ev,
                Err(r) => {
                    let class = reason_class(&r.reason);
                    if let Some(s) = sources.get(source) {
                        s.rejected[class].fetch_add(1, Ordering::Relaxed);
                    }
                    debug!(source = %d.source, reason_class = REASON_CLASSES[class],
                        reason = %r.reason, "event rejected");
                    d.ack.reject(r.reason);
                    continue;
                }
            };
            // The largest `at` routed before this event: the shard moves its
            // watermark there first, so that the shards together decide as
            // one engine applying the events in routing order.
            let hint = max_at;
            max_at = max_at.max(ev.at.0);
            if matches!(ev.body, Body::OrgUpserted { .. }) {
                let fan = Fanout::new(n, d.ack);
                for q in per_shard.iter_mut() {
                    q.push(RoutedEvent {
                        ev: ev.clone(),
                        done: Done::All(fan.clone()),
                        source,
                        raw: d.payload.clone(),
                        hint,
                    });
                }
            } else {
                let i = shard_of(ev.routing_key(), n);
                per_shard[i].push(RoutedEvent {
                    ev,
                    done: Done::One(d.ack),
                    source,
                    raw: d.payload,
                    hint,
                });
            }
        }
        // One message per shard and batch: one wake-up instead of one per event.
        for (i, q) in per_shard.iter_mut().enumerate() {
            if q.is_empty() {
                continue;
            }
            let events = std::mem::take(q);
            if shards[i].send(ShardMsg::Events(events)).await.is_err() {
                warn!(shard = i, "shard has stopped; routing ends");
                break 'outer;
            }
        }
        event_time.publish(max_at);
    }
    for tx in &shards {
        let _ = tx.send(ShardMsg::Stop).await;
    }
    debug!("router stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_spread_and_stay_put() {
        assert_eq!(shard_of("m1", 4), shard_of("m1", 4));
        let mut seen = [0usize; 4];
        for i in 0..1000 {
            seen[shard_of(&format!("m{i}"), 4)] += 1;
        }
        assert!(seen.iter().all(|&c| c > 150), "{seen:?}");
        assert_eq!(shard_of("anything", 1), 0);
    }
}
