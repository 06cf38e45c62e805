//! The router: decodes deliveries and sends each event to the shard that owns
//! its key.
//!
//! A malformed delivery is rejected through its Acker (the source dead-letters
//! it with the reason) and counted by reason class. `org.upserted` goes to
//! every shard (each keeps the whole org tree); every other event goes to the
//! shard `xxh3(routing key) % shards`: members by member id, tickets by ticket
//! id. Sends wait for room in the shard's bounded inbox, so a slow shard slows
//! the router, which slows the sources (backpressure).
//!
//! Batching under load: the router hands each shard one batch per wake-up,
//! and when the previous hand-off was less than `[daemon] route_gap` ago it
//! first waits out the rest of the gap, so that what arrives meanwhile goes in
//! the same batches. A busy daemon then wakes each shard (and syncs its log,
//! and acknowledges) about once per gap for all the events of that gap
//! instead of every few events; an event after a quiet spell is routed at once.

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

/// The most deliveries the router takes in one go.
const MAX_BATCH: usize = 1024;

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
    gap: Duration,
) {
    let n = shards.len();
    let mut max_at = i64::MIN;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut per_shard: Vec<Vec<RoutedEvent>> = (0..n).map(|_| Vec::new()).collect();
    // When the last batches were handed over: under load the next ones wait
    // until `gap` has passed since, taking what comes meanwhile.
    let mut handed = Instant::now().checked_sub(gap).unwrap_or_else(Instant::now);
    'outer: while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let since = handed.elapsed();
        if since < gap && batch.len() < MAX_BATCH {
            tokio::time::sleep(gap - since).await;
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(d) => batch.push(d),
                    Err(_) => break,
                }
            }
        }
        for d in batch.drain(..) {
            let source = sources
                .iter()
                .position(|s| Arc::ptr_eq(&s.name, &d.source) || s.name == d.source)
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
            // The next batch for this shard starts with room for as many
            // as this one: no vector grown (and moved) step by step per batch.
            let room = q.len();
            let events = std::mem::replace(q, Vec::with_capacity(room));
            if shards[i].send(ShardMsg::Events(events)).await.is_err() {
                warn!(shard = i, "shard has stopped; routing ends");
                break 'outer;
            }
        }
        event_time.publish(max_at);
        handed = Instant::now();
    }
    for tx in &shards {
        let _ = tx.send(ShardMsg::Stop).await;
    }
    debug!("router stopped");
}

#[cfg(test)]
mod tests {
    use redcloud_connectors::source::Acker;

    use super::*;

    fn delivery(i: usize) -> Delivery {
        let json = format!(
            r#"{{"id":"e{i}","type":"member.upserted","at":"2026-02-01T08:00:00+08:00","member":"m{i}","org":"unit"}}"#
        );
        Delivery {
            payload: bytes::Bytes::from(json),
            source: Arc::from("test"),
            ack: Acker::callback(|_| {}),
            decoded: None,
        }
    }

    /// The events of the next batch the shard gets.
    async fn next_batch(rx: &mut mpsc::Receiver<ShardMsg>) -> Vec<String> {
        match rx.recv().await {
            Some(ShardMsg::Events(v)) => v.iter().map(|e| e.ev.id.to_string()).collect(),
            _ => panic!("no batch"),
        }
    }

    #[tokio::test]
    async fn under_load_deliveries_wait_for_the_gap_and_go_in_one_batch() {
        let (tx, rx) = mpsc::channel(64);
        let (stx, mut srx) = mpsc::channel(64);
        let levels: Arc<[String]> = vec!["city".to_string(), "county".to_string()].into();
        let gap = Duration::from_millis(300);
        let router = tokio::spawn(run(
            rx,
            vec![stx],
            levels,
            Vec::new(),
            Arc::new(EventTime::new()),
            gap,
        ));
        // Idle: handed over at once.
        let t = Instant::now();
        tx.send(delivery(0)).await.unwrap();
        assert_eq!(next_batch(&mut srx).await, ["e0"]);
        assert!(t.elapsed() < gap, "an idle delivery waited");
        // Right after a hand-off: the router waits out the gap, and what comes
        // meanwhile goes in the same batch.
        tx.send(delivery(1)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        for i in 2..=10 {
            tx.send(delivery(i)).await.unwrap();
        }
        let want: Vec<String> = (1..=10).map(|i| format!("e{i}")).collect();
        assert_eq!(next_batch(&mut srx).await, want);
        assert!(t.elapsed() >= gap - Duration::from_millis(5));
        drop(tx);
        assert!(matches!(srx.recv().await, Some(ShardMsg::Stop)));
        router.await.unwrap();
    }

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
