//! Shards: the owners of the engine state.
//!
//! Each shard is a dedicated OS thread that owns one [`Engine`] (the members
//! and tickets whose routing key hashes to it, and a full copy of the org
//! tree) and serves one bounded channel of [`ShardMsg`]. Nothing else touches
//! the engine, so the hot path takes no lock. The thread runs a
//! single-threaded tokio runtime only to wait on its channel, its tick and the
//! sink's channel.
//!
//! Processing time: at least every `tick` the shard advances its engine to the
//! [`Clock`]'s now, so day closes and ticket timers fire when no events come.
//! The engine rules are the replay's: the same `Engine` code serves both.
//!
//! Acknowledgement: an event's [`Acker`] is consumed right after the engine has
//! applied it (`ack`, or `duplicate` for an id already applied). An
//! `org.upserted` goes to every shard; its [`Fanout`] acks once all have.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redcloud_connectors::source::Acker;
use redcloud_engine::event::{Body, Event};
use redcloud_engine::notify::{Envelope, Notification, PolicyRef};
use redcloud_engine::policy::EngineConfig;
use redcloud_engine::ticket::{StatCounts, StatsRow};
use redcloud_engine::{Engine, MemberView, Outcome, TicketView};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, warn};

use super::clock::Clock;
use super::contacts::ContactDirectory;
use super::metrics::{kind_index, ShardMetrics};

/// Own ticket counts by org id and month, as `Engine::own_stats` returns them.
pub type OwnStats = Vec<((String, u32), StatCounts)>;

/// Completion of an event sent to every shard: acknowledges once all applied it.
#[derive(Debug)]
pub struct Fanout {
    remaining: AtomicUsize,
    applied: AtomicBool,
    acker: Mutex<Option<Acker>>,
}

impl Fanout {
    /// A fan-out over `shards` shards completing `acker`.
    pub fn new(shards: usize, acker: Acker) -> Arc<Fanout> {
        Arc::new(Fanout {
            remaining: AtomicUsize::new(shards),
            applied: AtomicBool::new(false),
            acker: Mutex::new(Some(acker)),
        })
    }

    fn finish(&self, duplicate: bool) {
        if !duplicate {
            self.applied.store(true, Ordering::Relaxed);
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            let acker = self.acker.lock().ok().and_then(|mut a| a.take());
            if let Some(a) = acker {
                if self.applied.load(Ordering::Relaxed) {
                    a.ack();
                } else {
                    a.duplicate();
                }
            }
        }
    }
}

/// How an event's completion is reported.
#[derive(Debug)]
pub enum Done {
    /// The event went to this shard only.
    One(Acker),
    /// The event went to every shard.
    All(Arc<Fanout>),
}

/// What a shard is asked to do.
#[derive(Debug)]
pub enum ShardMsg {
    /// Apply these events, in order (the router batches what it has, so a
    /// shard wakes once per batch, not once per event).
    Events(Vec<RoutedEvent>),
    /// `GET /v1/members/{id}`.
    Member(String, oneshot::Sender<Option<MemberView>>),
    /// `GET /v1/tickets/{id}`.
    Ticket(String, oneshot::Sender<Option<TicketView>>),
    /// This shard's own ticket counts.
    Stats(oneshot::Sender<OwnStats>),
    /// Roll merged counts up the org tree (any shard has the whole tree).
    Rollup(OwnStats, oneshot::Sender<Vec<StatsRow>>),
    /// Finish what is queued before this, then stop.
    Stop,
}

/// One event of a [`ShardMsg::Events`] batch.
#[derive(Debug)]
pub struct RoutedEvent {
    /// The decoded event.
    pub ev: Event<'static>,
    /// Its completion.
    pub done: Done,
    /// Index of its source in the daemon's source list.
    pub source: usize,
}

/// A running shard.
#[derive(Debug)]
pub struct ShardHandle {
    /// Its inbox.
    pub tx: mpsc::Sender<ShardMsg>,
    /// Its thread.
    pub join: std::thread::JoinHandle<()>,
}

/// What a shard needs to start.
pub struct ShardSetup {
    /// Shard number.
    pub index: usize,
    /// Engine configuration.
    pub config: Arc<EngineConfig>,
    /// Wall clock.
    pub clock: Arc<dyn Clock>,
    /// Processing-time tick.
    pub tick: Duration,
    /// Where it publishes counters.
    pub metrics: Arc<ShardMetrics>,
    /// Where notifications go.
    pub sink: mpsc::Sender<Envelope>,
    /// Inbox capacity.
    pub capacity: usize,
    /// The shared directory of member contacts this shard mirrors its own
    /// members' contacts into.
    pub contacts: ContactDirectory,
}

/// Starts a shard thread.
pub fn spawn(setup: ShardSetup) -> std::io::Result<ShardHandle> {
    let (tx, rx) = mpsc::channel(setup.capacity);
    let join = std::thread::Builder::new()
        .name(format!("redcloud-shard-{}", setup.index))
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    error!(shard = setup.index, error = %e, "shard cannot start its runtime");
                    return;
                }
            };
            rt.block_on(run(setup, rx));
        })?;
    Ok(ShardHandle { tx, join })
}

struct Shard {
    index: usize,
    engine: Engine,
    metrics: Arc<ShardMetrics>,
    sink: mpsc::Sender<Envelope>,
    sink_closed: bool,
    out: Vec<Notification>,
    streaks: usize,
    contacts: ContactDirectory,
}

async fn run(setup: ShardSetup, mut rx: mpsc::Receiver<ShardMsg>) {
    let mut shard = Shard {
        index: setup.index,
        streaks: setup.config.streaks.len(),
        engine: Engine::new(setup.config),
        metrics: setup.metrics,
        sink: setup.sink,
        sink_closed: false,
        out: Vec::new(),
        contacts: setup.contacts,
    };
    // The first advance only sets the watermark: nothing before now fires.
    shard.engine.advance(setup.clock.now(), &mut shard.out);
    shard.publish();
    let mut tick = tokio::time::interval(setup.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::with_capacity(256);
    debug!(shard = shard.index, "shard started");
    loop {
        tokio::select! {
            n = rx.recv_many(&mut batch, 256) => {
                if n == 0 {
                    break;
                }
                let mut stop = false;
                for msg in batch.drain(..) {
                    stop |= shard.handle(msg);
                }
                shard.flush().await;
                shard.publish();
                if stop {
                    break;
                }
            }
            _ = tick.tick() => {
                shard.engine.advance(setup.clock.now(), &mut shard.out);
                shard.flush().await;
                shard.publish();
            }
        }
    }
    debug!(shard = shard.index, "shard stopped");
}

impl Shard {
    /// Handles one message; `true` on [`ShardMsg::Stop`].
    fn handle(&mut self, msg: ShardMsg) -> bool {
        match msg {
            ShardMsg::Events(batch) => {
                for e in batch {
                    self.apply(&e.ev, e.done, e.source);
                }
            }
            ShardMsg::Member(id, reply) => {
                let _ = reply.send(self.engine.member_view(&id));
            }
            ShardMsg::Ticket(id, reply) => {
                let _ = reply.send(self.engine.ticket_view(&id));
            }
            ShardMsg::Stats(reply) => {
                let _ = reply.send(self.engine.own_stats());
            }
            ShardMsg::Rollup(own, reply) => {
                let rows =
                    redcloud_engine::ticket::rollup_ids(own.into_iter(), self.engine.directory());
                let _ = reply.send(rows);
            }
            ShardMsg::Stop => return true,
        }
        false
    }

    /// Applies one event, counts it and consumes its Acker.
    fn apply(&mut self, ev: &Event<'static>, done: Done, source: usize) {
        let start = Instant::now();
        let outcome = self.engine.apply(ev, &mut self.out);
        self.metrics
            .latency
            .record(u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX));
        let duplicate = outcome == Outcome::Duplicate;
        if !duplicate {
            // This shard owns the member: publish its contacts for the
            // recipients resolved in other shards (a leader, contract 2.5).
            if let Body::MemberUpserted { member, .. } | Body::MemberRemoved { member } = &ev.body {
                self.contacts.mirror(&self.engine, member);
            }
        }
        // A fanned-out event is counted once, by shard 0.
        let count = !matches!(done, Done::All(_)) || self.index == 0;
        if count {
            if let Some(c) = self.metrics.by_source.get(source) {
                let n = match outcome {
                    Outcome::Duplicate => &c.duplicates,
                    Outcome::Applied => &c.applied,
                    Outcome::Late => {
                        c.late.fetch_add(1, Ordering::Relaxed);
                        &c.applied
                    }
                };
                n.fetch_add(1, Ordering::Relaxed);
            }
        }
        match done {
            Done::One(a) if duplicate => a.duplicate(),
            Done::One(a) => a.ack(),
            Done::All(f) => f.finish(duplicate),
        }
    }

    /// Hands the notifications decided so far to the sink (waiting for room).
    async fn flush(&mut self) {
        if self.out.is_empty() {
            return;
        }
        let out = std::mem::take(&mut self.out);
        debug!(
            shard = self.index,
            notifications = out.len(),
            "notifications decided"
        );
        for n in &out {
            let p = match n.policy {
                PolicyRef::Streak(i) => usize::from(i),
                PolicyRef::Sla(i) => self.streaks + usize::from(i),
            };
            if let Some(c) = self
                .metrics
                .notifications
                .get(p * 3 + kind_index(n.kind.as_str()))
            {
                c.fetch_add(1, Ordering::Relaxed);
            }
            if self.sink_closed {
                continue;
            }
            let env = self.engine.envelope(n);
            if self.sink.send(env).await.is_err() {
                self.sink_closed = true;
                warn!(
                    shard = self.index,
                    "the notification sink has stopped; notifications are dropped"
                );
            }
        }
        self.out = out;
        self.out.clear();
    }

    fn publish(&self) {
        let c = self.engine.counters();
        let m = &self.metrics;
        m.unresolved
            .store(c.unresolved_recipients, Ordering::Relaxed);
        m.day_closes.store(c.day_closes, Ordering::Relaxed);
        m.watermark.store(
            self.engine.watermark().map_or(-1, |w| w.0),
            Ordering::Relaxed,
        );
        m.pending_timers
            .store(self.engine.pending_timers() as u64, Ordering::Relaxed);
    }
}
