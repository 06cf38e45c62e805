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
//! Acknowledgement: an event's [`Acker`] is consumed once the engine has
//! applied it (`ack`, or `duplicate` for an id already applied) and, with
//! `[daemon] durability = "wal"`, once the batch it came in is on disk: the
//! shard appends every applied event (and every processing-time advance) to
//! its write-ahead log ([`super::wal`]) and hands the batch to its log writer
//! thread ([`super::committer`]), which writes and syncs it (with any other
//! batch waiting, one fsync) and only then acks; the shard applies the next
//! batch meanwhile and hands a batch's notifications to the sink once the
//! batch is on disk. An
//! `org.upserted` goes to every shard (and into every shard's log); its
//! [`Fanout`] acks once all have.
//!
//! Notifications leave the shard tagged with its log sequence
//! ([`Decided`]); the sink writes them to the durable outbox
//! ([`super::outbox`]) before the dispatcher sees them.
//!
//! Recovery (before the shard serves anything): the newest snapshot that
//! restores, then the log records after it, through the same `Engine::apply`
//! and `Engine::advance`. Every `[daemon] snapshot_interval`, and at a
//! graceful stop, the shard takes a snapshot: by default it forks the daemon
//! and the child writes its copy-on-write image ([`super::forksnap`]; the
//! shard waits only for the fork); otherwise (`snapshot_mode = "thread"`, at
//! a graceful stop, state in Redis) it serializes the engine on its own
//! thread and a background thread writes and syncs it. The hold is counted
//! in `redcloud_snapshot_stall_seconds`. A snapshot is taken only once every notification the shard
//! handed out is in the outbox (one decided before the snapshot and still in
//! flight to the outbox would otherwise be lost in a crash); until then it
//! waits for the next batch or tick.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use redcloud_connectors::source::Acker;
use redcloud_engine::event::{decode, Body, Event};
use redcloud_engine::notify::{Notification, PolicyRef};
use redcloud_engine::policy::EngineConfig;
use redcloud_engine::ticket::{StatCounts, StatsRow};
use redcloud_engine::time::Ts;
use redcloud_engine::{Engine, MemberView, Outcome, TicketView};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, warn};

use super::clock::Clock;
use super::committer::Committer;
use super::contacts::ContactDirectory;
use super::metrics::{kind_index, ShardMetrics};
use super::outbox::{Decided, OutboxShared};
use super::wal::{self, Wal, KIND_ADVANCE, KIND_EVENT};

/// Size after which a shard starts a new log segment.
pub const SEGMENT_BYTES: u64 = 64 << 20;

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
    /// The event's JSON bytes as received (what the write-ahead log keeps).
    pub raw: Bytes,
    /// The largest `at` routed before it (`i64::MIN`: none): the shard's
    /// watermark moves there before the event is applied.
    pub hint: i64,
}

/// A running shard.
#[derive(Debug)]
pub struct ShardHandle {
    /// Its inbox.
    pub tx: mpsc::Sender<ShardMsg>,
    /// Its thread.
    pub join: std::thread::JoinHandle<()>,
    /// One message once the shard has recovered (a summary) or failed to.
    pub ready: std::sync::mpsc::Receiver<Result<String, String>>,
}

/// Where and how a shard keeps its state on disk.
#[derive(Clone, Debug)]
pub struct Durable {
    /// `data_dir/shard-<n>`.
    pub store: wal::Store,
    /// Time between snapshots.
    pub snapshot_interval: Duration,
    /// Also a snapshot once this many records were logged since the last
    /// one (`0`: by time only).
    pub snapshot_log_records: u64,
    /// Least time between two syncs of the log under load
    /// (`[daemon] commit_gap`).
    pub commit_gap: Duration,
    /// Segment size.
    pub segment_bytes: u64,
    /// Snapshot in a forked child (a directory store on Linux) rather than
    /// serializing on the shard's thread.
    pub fork: bool,
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
    pub sink: mpsc::Sender<Decided>,
    /// Inbox capacity.
    pub capacity: usize,
    /// The shared directory of member contacts this shard mirrors its own
    /// members' contacts into.
    pub contacts: ContactDirectory,
    /// The write-ahead log and snapshots, if durable.
    pub durable: Option<Durable>,
    /// The durable outbox's progress (with `durable`).
    pub outbox: Option<Arc<OutboxShared>>,
    /// Turns `true` once every shard has recovered: only then does a shard
    /// hand out what its recovery decided (a leader owned by another shard
    /// has no address in the contact directory before that shard recovered).
    pub go: tokio::sync::watch::Receiver<bool>,
    /// The event time the router has handed out: once it has settled, a shard
    /// with nothing queued advances to it on its tick.
    pub event_time: Arc<super::router::EventTime>,
}

/// Starts a shard thread.
pub fn spawn(setup: ShardSetup) -> std::io::Result<ShardHandle> {
    let (tx, rx) = mpsc::channel(setup.capacity);
    let (ready_tx, ready) = std::sync::mpsc::sync_channel(1);
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
                    let _ = ready_tx.send(Err(format!("cannot start its runtime: {e}")));
                    return;
                }
            };
            rt.block_on(run(setup, rx, ready_tx));
        })?;
    Ok(ShardHandle { tx, join, ready })
}

struct Shard {
    index: usize,
    engine: Engine,
    metrics: Arc<ShardMetrics>,
    sink: mpsc::Sender<Decided>,
    sink_closed: bool,
    out: Vec<Notification>,
    streaks: usize,
    contacts: ContactDirectory,
    wal: Option<Wal>,
    acks: Vec<(Done, bool)>,
    outbox: Option<Arc<OutboxShared>>,
    /// Snapshots by fork.
    fork: bool,
    /// The highest tag handed to the sink.
    emitted: u64,
    /// A snapshot is due but waits for the outbox or the previous write.
    snapshot_due: bool,
    /// The background write of the previous snapshot.
    writing: Option<std::thread::JoinHandle<()>>,
    /// The log's writer thread (with a log).
    committer: Option<Committer>,
    /// Notifications decided, waiting for their batch to be on disk.
    held: std::collections::VecDeque<Decided>,
    /// `snapshot_log_records` (0: off).
    snap_records: u64,
    /// The log sequence the last snapshot covers (or recovery ended at).
    snapped: u64,
}

/// Loads the newest snapshot that restores and replays the log after it.
/// Returns the engine, the open log, the notifications the replay decided
/// and a summary for the log.
fn recover(
    setup: &ShardSetup,
    d: &Durable,
    out: &mut Vec<Notification>,
) -> Result<(Engine, Wal, String), String> {
    let start = Instant::now();
    let removed = d.store.remove_unfinished();
    if removed > 0 {
        warn!(shard = setup.index, store = %d.store, removed,
            "removed a snapshot that was not finished");
    }
    let mut restored = None;
    let snaps = d
        .store
        .snapshot_seqs()
        .map_err(|e| format!("{}: {e}", d.store))?;
    let mut read_ms = 0.0;
    let mut restore_ms = 0.0;
    for seq in snaps {
        let t = Instant::now();
        let bytes = match d.store.read_snapshot(seq) {
            Ok(b) => b,
            Err(e) => {
                warn!(shard = setup.index, store = %d.store, seq, error = %e,
                    "snapshot skipped: cannot read it");
                continue;
            }
        };
        read_ms += t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let r = Engine::restore(setup.config.clone(), &bytes);
        restore_ms += t.elapsed().as_secs_f64() * 1e3;
        match r {
            Ok(engine) => {
                restored = Some((engine, seq, bytes.len()));
                break;
            }
            Err(e) => warn!(shard = setup.index, store = %d.store, seq, error = %e,
                "snapshot skipped: it does not restore; trying an older one"),
        }
    }
    let (mut engine, base, size) =
        restored.unwrap_or_else(|| (Engine::new(setup.config.clone()), 0, 0));
    let mut undecodable = 0u64;
    let levels = setup.config.levels.clone();
    let t = Instant::now();
    let (log, rec) = d
        .store
        .open_log(base, d.segment_bytes, |r| match r.kind {
            KIND_EVENT => match decode(&r.payload, &levels) {
                Ok(ev) => {
                    engine.apply(&ev, out);
                }
                Err(_) => undecodable += 1,
            },
            KIND_ADVANCE => {
                let us = i64::from_le_bytes(r.payload.as_slice().try_into().unwrap_or_default());
                engine.advance(Ts(us), out);
            }
            _ => {}
        })
        .map_err(|e| e.to_string())?;
    let log_ms = t.elapsed().as_secs_f64() * 1e3;
    if let Some((path, offset, dropped, reason)) = &rec.truncated {
        warn!(shard = setup.index, file = %path.display(), offset, dropped_bytes = dropped,
            reason = %reason,
            "torn write-ahead log tail cut off (a write interrupted by a crash; nothing in it was acknowledged)");
    }
    if undecodable > 0 {
        warn!(
            shard = setup.index,
            undecodable, "log records that no longer decode were skipped"
        );
    }
    if let Some(o) = &setup.outbox {
        o.set_horizon(setup.index, d.store.recovery_horizon());
    }
    // Publish the recovered leaders' contacts for the other shards.
    let t = Instant::now();
    setup.contacts.mirror_all(&engine, setup.index == 0);
    let contacts_ms = t.elapsed().as_secs_f64() * 1e3;
    let summary = format!(
        "snapshot seq {base} ({size} bytes), {} log records replayed from {} segments, last seq {}, {} notifications re-decided, {:.1} ms (read {read_ms:.0}, restore {restore_ms:.0}, log {log_ms:.0}, contacts {contacts_ms:.0})",
        rec.replayed,
        rec.segments,
        rec.last_seq,
        out.len(),
        start.elapsed().as_secs_f64() * 1e3
    );
    Ok((engine, log, summary))
}

async fn run(
    setup: ShardSetup,
    mut rx: mpsc::Receiver<ShardMsg>,
    ready: std::sync::mpsc::SyncSender<Result<String, String>>,
) {
    let mut out = Vec::new();
    let (engine, log, summary) = match &setup.durable {
        Some(d) => match recover(&setup, d, &mut out) {
            Ok((e, l, s)) => (e, Some(l), s),
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        },
        None => (
            Engine::new(setup.config.clone()),
            None,
            "in memory only".to_string(),
        ),
    };
    let mut shard = Shard {
        index: setup.index,
        streaks: setup.config.streaks.len(),
        engine,
        metrics: setup.metrics,
        sink: setup.sink,
        sink_closed: false,
        out,
        contacts: setup.contacts,
        wal: log,
        acks: Vec::new(),
        outbox: setup.outbox.clone(),
        fork: setup.durable.as_ref().is_some_and(|d| d.fork),
        emitted: 0,
        snapshot_due: false,
        writing: None,
        committer: None,
        held: std::collections::VecDeque::new(),
        snap_records: setup.durable.as_ref().map_or(0, |d| d.snapshot_log_records),
        snapped: 0,
    };
    shard.snapped = shard.wal.as_ref().map_or(0, Wal::last_seq);
    if let Some(w) = shard.wal.as_mut() {
        let last = w.last_seq();
        if let Some(lw) = w.detach_writer() {
            let gap = setup
                .durable
                .as_ref()
                .map_or(Duration::ZERO, |d| d.commit_gap);
            match Committer::start(shard.index, lw, last, gap) {
                Ok(c) => shard.committer = Some(c),
                Err(e) => {
                    // As when the log cannot be written: nothing unlogged
                    // was acknowledged; a restart recovers.
                    error!(shard = shard.index, error = %e,
                        "CANNOT START THE LOG WRITER THREAD: exiting");
                    std::process::exit(70);
                }
            }
        }
    }
    let durable = shard.committer.as_ref().map(Committer::shared);
    let _ = ready.send(Ok(summary));
    let mut go = setup.go.clone();
    if go.wait_for(|g| *g).await.is_err() {
        // The daemon gave up starting.
        return;
    }
    // The first advance only sets the watermark: nothing before now fires.
    shard.advance(setup.clock.now());
    shard.commit();
    shard.flush().await;
    shard.publish();
    let mut tick = tokio::time::interval(setup.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let every = setup
        .durable
        .as_ref()
        .map_or(Duration::from_secs(3600), |d| d.snapshot_interval);
    let mut snap = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    snap.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
                shard.commit();
                shard.flush().await;
                shard.publish();
                shard.check_log_size();
                if stop {
                    shard.final_snapshot().await;
                    break;
                }
                if shard.snapshot_due {
                    shard.snapshot_now(false).await;
                }
            }
            _ = tick.tick() => {
                // The router publishes event time only after handing the batch
                // to every shard, and it counts as settled only after a quiet
                // period: with nothing queued here, every event routed before
                // it has been applied, so advancing to it makes none late.
                let mut to = setup.clock.now();
                if rx.is_empty() {
                    if let Some(at) = setup.event_time.settled(2 * setup.tick) {
                        to = to.max(Ts(at));
                    }
                }
                shard.advance(to);
                shard.commit();
                shard.flush().await;
                shard.publish();
                if shard.snapshot_due {
                    shard.snapshot_now(false).await;
                }
            }
            _ = snap.tick(), if shard.wal.is_some() => {
                shard.snapshot_now(false).await;
            }
            _ = durable_changed(durable.as_deref()), if !shard.held.is_empty() => {
                shard.release().await;
            }
        }
    }
    // Whatever is still buffered goes to disk and is acknowledged; the
    // notifications waiting for it go to the sink.
    shard.commit();
    if let (Some(c), Some(w)) = (&shard.committer, &shard.wal) {
        c.wait_durable(w.last_seq());
    }
    shard.release().await;
    if let Some(c) = shard.committer.take() {
        c.finish();
    }
    if let Some(h) = shard.writing.take() {
        let _ = h.join();
    }
    debug!(shard = shard.index, "shard stopped");
}

/// Resolves when the log writer has put more on disk (never without one).
async fn durable_changed(d: Option<&super::committer::Durable>) {
    match d {
        Some(d) => d.changed.notified().await,
        None => std::future::pending().await,
    }
}

/// Acknowledges one applied (or duplicate) event to its source.
pub(super) fn settle(done: Done, duplicate: bool) {
    match done {
        Done::One(a) if duplicate => a.duplicate(),
        Done::One(a) => a.ack(),
        Done::All(f) => f.finish(duplicate),
    }
}

impl Shard {
    /// Advances the engine to `to`, logging the advance first when it moves
    /// the watermark (replay must see the same lateness decisions).
    fn advance(&mut self, to: Ts) {
        if let Some(w) = self.wal.as_mut() {
            if self.engine.watermark().is_none_or(|m| to > m) {
                w.append(KIND_ADVANCE, &to.0.to_le_bytes());
            }
        }
        self.engine.advance(to, &mut self.out);
    }

    /// Puts what the log buffered on disk, then acknowledges the events it
    /// holds. A log that cannot be written stops the process: the events not
    /// acknowledged are redelivered by their sources after a restart.
    fn commit(&mut self) {
        if let (Some(c), Some(w)) = (&self.committer, self.wal.as_mut()) {
            let records = w.take_batch();
            if records.is_some() || !self.acks.is_empty() {
                c.submit(records, w.last_seq(), std::mem::take(&mut self.acks));
            }
            return;
        }
        if let Some(w) = self.wal.as_mut() {
            if let Err(e) = w.commit() {
                error!(shard = self.index, error = %e,
                    "CANNOT WRITE THE WRITE-AHEAD LOG: exiting without acknowledging; unacknowledged events will be redelivered after a restart");
                std::process::exit(70);
            }
        }
        for (done, duplicate) in self.acks.drain(..) {
            settle(done, duplicate);
        }
    }

    /// Makes a snapshot due once the log has grown by `snapshot_log_records`
    /// since the last one, so that a recovery never replays more than that
    /// (about 2 s per million records) whatever the ingest rate.
    fn check_log_size(&mut self) {
        if self.snap_records == 0 || self.snapshot_due {
            return;
        }
        if let Some(w) = &self.wal {
            if w.last_seq().saturating_sub(self.snapped) >= self.snap_records {
                self.snapshot_due = true;
            }
        }
    }

    /// Puts everything logged so far on disk and waits for it (one sync at
    /// most, by the writer thread when there is one).
    fn sync_log(&mut self) {
        self.commit();
        if let (Some(c), Some(w)) = (&self.committer, &self.wal) {
            c.wait_durable(w.last_seq());
        }
    }

    /// A snapshot as soon as the log is on disk and every notification
    /// decided so far is with the sink (see [`Shard::snapshot`]).
    async fn snapshot_now(&mut self, wait: bool) -> bool {
        if self.wal.is_some() {
            self.sync_log();
            self.release().await;
        }
        self.snapshot(wait)
    }

    /// Whether every notification handed out is in the outbox.
    fn outbox_caught_up(&self) -> bool {
        self.outbox
            .as_ref()
            .is_none_or(|o| o.durable(self.index) >= self.emitted)
    }

    /// Takes a snapshot of the engine covering the log so far: serializes it
    /// here, writes it in the background (or here, with `wait`). Returns
    /// `false` (and stays due) while the outbox or the previous write is
    /// behind.
    fn snapshot(&mut self, wait: bool) -> bool {
        if self.wal.is_none() {
            return true;
        }
        if !self.outbox_caught_up()
            || !self.held.is_empty()
            || (!wait && self.writing.as_ref().is_some_and(|h| !h.is_finished()))
            || (!wait && self.fork && super::forksnap::busy())
        {
            self.snapshot_due = true;
            return false;
        }
        if let Some(h) = self.writing.take() {
            let _ = h.join();
        }
        self.sync_log();
        let Some(w) = self.wal.as_ref() else {
            return true;
        };
        let seq = w.last_seq();
        self.snapped = seq;
        let store = w.store().clone();
        if !wait && self.fork {
            if let wal::Store::Dir(dir) = &store {
                if let Some(h) = super::forksnap::snapshot(
                    &self.engine,
                    dir,
                    seq,
                    self.index,
                    &self.metrics,
                    self.outbox.clone(),
                ) {
                    self.writing = Some(h);
                    self.snapshot_due = false;
                    return true;
                }
            }
        }
        let start = Instant::now();
        let bytes = self.engine.snapshot();
        let stall = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.metrics.snapshot_held(stall);
        self.snapshot_due = false;
        let index = self.index;
        let outbox = self.outbox.clone();
        let write = move || {
            let t = Instant::now();
            match store.write_snapshot(seq, &bytes) {
                Ok(place) => {
                    if let Some(o) = &outbox {
                        o.set_horizon(index, store.recovery_horizon());
                    }
                    info!(shard = index, seq, bytes = bytes.len(),
                        file = %place,
                        serialize_ms = stall as f64 * 1e-6,
                        write_ms = t.elapsed().as_secs_f64() * 1e3,
                        "snapshot written");
                }
                Err(e) => warn!(shard = index, seq, error = %e,
                    "cannot write a snapshot; the log keeps growing until one succeeds"),
            }
        };
        if wait {
            write();
        } else {
            match std::thread::Builder::new()
                .name(format!("redcloud-snap-{index}"))
                .spawn(write)
            {
                Ok(h) => self.writing = Some(h),
                Err(e) => warn!(shard = index, error = %e, "cannot start the snapshot writer"),
            }
        }
        true
    }

    /// The snapshot at a graceful stop: waits (a bounded time) for the outbox
    /// to hold every notification handed out. Without it the next start
    /// replays the log tail instead, which is just slower.
    async fn final_snapshot(&mut self) {
        self.sync_log();
        self.release().await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.sink_closed && !self.outbox_caught_up() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if !self.snapshot(true) {
            warn!(shard = self.index,
                "no snapshot at stop: the outbox did not catch up; the next start replays the log tail");
        }
    }

    /// Handles one message; `true` on [`ShardMsg::Stop`].
    fn handle(&mut self, msg: ShardMsg) -> bool {
        match msg {
            ShardMsg::Events(batch) => {
                for e in batch {
                    if e.hint != i64::MIN && self.engine.watermark().is_none_or(|w| Ts(e.hint) > w)
                    {
                        self.advance(Ts(e.hint));
                    }
                    self.apply(&e.ev, &e.raw, e.done, e.source);
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

    /// Logs and applies one event, counts it and queues its Acker for the
    /// batch's [`Shard::commit`].
    fn apply(&mut self, ev: &Event<'static>, raw: &[u8], done: Done, source: usize) {
        let start = Instant::now();
        let mark = self.wal.as_mut().map(|w| {
            let m = w.mark();
            w.append(KIND_EVENT, raw);
            m
        });
        let outcome = self.engine.apply(ev, &mut self.out);
        if let (Some(w), Some(m)) = (self.wal.as_mut(), mark) {
            if outcome == Outcome::Duplicate {
                // Changed nothing: the log need not keep it.
                w.unappend(m);
            }
        }
        self.metrics
            .latency
            .record(u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX));
        let duplicate = outcome == Outcome::Duplicate;
        if !duplicate {
            // This shard owns the member: publish its contacts for the
            // recipients resolved in other shards (a leader, contract 2.5).
            match &ev.body {
                Body::MemberUpserted { member, .. } | Body::MemberRemoved { member } => {
                    self.contacts.mirror(&self.engine, member);
                }
                Body::OrgUpserted {
                    leader: Some(l), ..
                } => self.contacts.leader_named(&self.engine, l),
                _ => {}
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
        self.acks.push((done, duplicate));
    }

    /// Hands the notifications decided so far to the sink (waiting for
    /// room) once their batch is on disk; until then they are held.
    async fn flush(&mut self) {
        if self.out.is_empty() {
            self.release().await;
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
            // The envelope now: the engine may change the recipient's
            // contacts before the batch is on disk.
            let env = self.engine.envelope(n);
            let seq = self.wal.as_ref().map_or(0, Wal::last_seq);
            self.held.push_back(Decided {
                shard: u32::try_from(self.index).unwrap_or(u32::MAX),
                seq,
                env,
            });
        }
        self.out = out;
        self.out.clear();
        self.release().await;
    }

    /// Hands the sink the held notifications whose batch is on disk (all of
    /// them without a log writer thread), in order, waiting for room.
    async fn release(&mut self) {
        let durable = self.committer.as_ref().map_or(u64::MAX, Committer::durable);
        while self.held.front().is_some_and(|d| d.seq <= durable) {
            let Some(d) = self.held.pop_front() else {
                break;
            };
            if self.sink_closed {
                continue;
            }
            self.emitted = self.emitted.max(d.seq);
            if self.sink.send(d).await.is_err() {
                self.sink_closed = true;
                warn!(
                    shard = self.index,
                    "the notification sink has stopped; notifications are dropped"
                );
            }
        }
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
        if let Some(c) = &self.committer {
            m.log_syncs.store(c.syncs(), Ordering::Relaxed);
        }
    }
}
