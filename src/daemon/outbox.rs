//! The dispatcher's durable outbox (with `[daemon] durability = "wal"`).
//!
//! Every notification a shard decides is written here, and synced, before
//! the dispatcher sees it; every attempt's answer (a delivered mark, a send
//! that counts in its recipient's windows) and every dead letter is written
//! as it happens. After a crash or a restart the outbox gives back:
//!
//! - the notifications not yet delivered or dead-lettered, which are sent
//!   again with the same ids (so a provider can de-duplicate the few that
//!   were in flight at the crash);
//! - the ids already settled, so that notifications re-decided by replaying
//!   a shard's log tail are not sent twice;
//! - the sends within the longest per-recipient window, which still count
//!   in the windows;
//! - the dead letters kept for the admin API.
//!
//! Storage: a [`Wal`] in `data_dir/outbox/` (the shards' record framing and
//! recovery, torn tails included) with two record kinds, [`KIND_INTENT`]
//! (a tagged envelope, JSON) and [`KIND_SETTLED`] (an attempt or a dead
//! letter, JSON), and a checkpoint written like a shard snapshot (the state
//! above, checksummed) every [`CHECKPOINT_RECORDS`] records and at a stop,
//! after which the covered segments are deleted.
//!
//! One thread owns it and commits in groups: everything queued is written,
//! then one `sync_data`, then the waiting feeder is answered.
//!
//! Ordering with the shards: a notification is tagged with the shard's log
//! sequence at the time it left the shard. [`OutboxShared::durable`] tells a
//! shard how far its notifications are in the outbox; a shard writes a
//! snapshot only once every notification it handed out is (otherwise a
//! notification decided before the snapshot could be lost). A settled id is
//! remembered until its shard's oldest kept snapshot covers its tag (until
//! then a recovery may decide it again).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redcloud_connectors::channel::ChannelKind;
use redcloud_connectors::dispatch::{DeadLetterView, Journal, PastSend};
use redcloud_engine::notify::Envelope;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};
use xxhash_rust::xxh3::{xxh3_128, xxh3_64};

use super::committer::SyncGap;
use super::wal::{Record, Store, Wal, KIND_INTENT, KIND_SETTLED};

/// Records after which the outbox writes a checkpoint.
pub const CHECKPOINT_RECORDS: u64 = 50_000;
/// Segment size of the outbox's log.
pub const SEGMENT_BYTES: u64 = 16 << 20;
const CHECKPOINT_MAGIC: &[u8; 8] = b"RCLDOBX1";

/// A notification decided by a shard, tagged with the shard's log sequence
/// when it left the shard (every record that decided it is at or below).
#[derive(Debug)]
pub struct Decided {
    /// The shard.
    pub shard: u32,
    /// Its log sequence (0 without a log).
    pub seq: u64,
    /// The notification and its addresses.
    pub env: Envelope,
}

/// What the shards and the outbox share.
#[derive(Debug)]
pub struct OutboxShared {
    durable: Vec<AtomicU64>,
    horizon: Vec<AtomicU64>,
    syncs: AtomicU64,
}

impl OutboxShared {
    /// For `shards` shards.
    pub fn new(shards: usize) -> Arc<OutboxShared> {
        Arc::new(OutboxShared {
            durable: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            horizon: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            syncs: AtomicU64::new(0),
        })
    }

    /// Syncs (group commits) of the outbox's log so far.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// The highest tag of `shard` whose notifications are on disk here.
    pub fn durable(&self, shard: usize) -> u64 {
        self.durable
            .get(shard)
            .map_or(u64::MAX, |a| a.load(Ordering::Acquire))
    }

    /// Records that `shard` may recover from no snapshot older than `seq`
    /// (settled ids with tags at or below can be forgotten).
    pub fn set_horizon(&self, shard: usize, seq: u64) {
        if let Some(a) = self.horizon.get(shard) {
            a.fetch_max(seq, Ordering::AcqRel);
        }
    }

    fn horizon(&self, shard: u32) -> u64 {
        self.horizon
            .get(shard as usize)
            .map_or(0, |a| a.load(Ordering::Acquire))
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct IntentRec {
    shard: u32,
    seq: u64,
    env: Envelope,
}

/// A dead letter as stored (the admin view's `channel` is a static name).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct DeadRec {
    id: String,
    notification_ids: Vec<String>,
    policy: String,
    kind: String,
    step: u8,
    recipient: String,
    channel: Option<String>,
    reason: String,
    attempts: u32,
    at_unix_ms: i64,
}

impl DeadRec {
    fn of(v: &DeadLetterView) -> DeadRec {
        DeadRec {
            id: v.id.clone(),
            notification_ids: v.notification_ids.clone(),
            policy: v.policy.clone(),
            kind: v.kind.clone(),
            step: v.step,
            recipient: v.recipient.clone(),
            channel: v.channel.map(str::to_string),
            reason: v.reason.clone(),
            attempts: v.attempts,
            at_unix_ms: v.at_unix_ms,
        }
    }

    fn view(&self) -> DeadLetterView {
        DeadLetterView {
            id: self.id.clone(),
            notification_ids: self.notification_ids.clone(),
            policy: self.policy.clone(),
            kind: self.kind.clone(),
            step: self.step,
            recipient: self.recipient.clone(),
            channel: self
                .channel
                .as_deref()
                .and_then(ChannelKind::parse)
                .map(ChannelKind::as_str),
            reason: self.reason.clone(),
            attempts: self.attempts,
            at_unix_ms: self.at_unix_ms,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
enum SettledRec {
    Attempt {
        channel: String,
        key: u64,
        ms: i64,
        delivered: Vec<String>,
    },
    Dead {
        dead: DeadRec,
        envs: Vec<Envelope>,
    },
}

/// The checkpointed state.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Checkpoint {
    pending: Vec<IntentRec>,
    /// Settled ids (xxh3-128 as two halves) with their shard and tag.
    settled: Vec<(u64, u64, u32, u64)>,
    sends: Vec<(String, u64, i64)>,
    dead: Vec<(DeadRec, Vec<Envelope>)>,
}

/// What the outbox's log describes.
#[derive(Debug, Default)]
struct State {
    order: u64,
    pending: BTreeMap<u64, IntentRec>,
    index: HashMap<u128, u64>,
    settled: HashMap<u128, (u32, u64)>,
    sends: VecDeque<(ChannelKind, u64, i64)>,
    dead: VecDeque<(DeadRec, Vec<Envelope>)>,
    dead_kept: usize,
}

fn id_hash(id: &str) -> u128 {
    xxh3_128(id.as_bytes())
}

impl State {
    fn known(&self, h: u128) -> bool {
        self.index.contains_key(&h) || self.settled.contains_key(&h)
    }

    fn add_intent(&mut self, rec: IntentRec) {
        let h = id_hash(&rec.env.notification.id);
        if self.known(h) {
            return;
        }
        self.order += 1;
        self.index.insert(h, self.order);
        self.pending.insert(self.order, rec);
    }

    fn settle(&mut self, id: &str) {
        let h = id_hash(id);
        if let Some(o) = self.index.remove(&h) {
            if let Some(rec) = self.pending.remove(&o) {
                self.settled.insert(h, (rec.shard, rec.seq));
            }
        }
    }

    fn apply(&mut self, rec: SettledRec) {
        match rec {
            SettledRec::Attempt {
                channel,
                key,
                ms,
                delivered,
            } => {
                for id in &delivered {
                    self.settle(id);
                }
                if let Some(ch) = ChannelKind::parse(&channel) {
                    self.sends.push_back((ch, key, ms));
                }
            }
            SettledRec::Dead { dead, envs } => {
                for id in &dead.notification_ids {
                    self.settle(id);
                }
                if self.dead_kept > 0 {
                    if self.dead.len() >= self.dead_kept {
                        self.dead.pop_front();
                    }
                    self.dead.push_back((dead, envs));
                }
            }
        }
    }

    /// Applies one record of the outbox's log; `false` if it does not decode.
    fn replay(&mut self, r: &Record) -> bool {
        match r.kind {
            KIND_INTENT => serde_json::from_slice::<IntentRec>(&r.payload)
                .map(|i| self.add_intent(i))
                .is_ok(),
            KIND_SETTLED => serde_json::from_slice::<SettledRec>(&r.payload)
                .map(|x| self.apply(x))
                .is_ok(),
            _ => false,
        }
    }

    /// Forgets what no recovery can need any more.
    fn prune(&mut self, shared: &OutboxShared, now_ms: i64, horizon: Duration) {
        self.settled
            .retain(|_, (shard, seq)| *seq > shared.horizon(*shard));
        let oldest = now_ms - horizon.as_millis() as i64;
        while self.sends.front().is_some_and(|s| s.2 < oldest) {
            self.sends.pop_front();
        }
    }

    fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            pending: self.pending.values().cloned().collect(),
            settled: self
                .settled
                .iter()
                .map(|(h, (s, q))| ((*h >> 64) as u64, *h as u64, *s, *q))
                .collect(),
            sends: self
                .sends
                .iter()
                .map(|(c, k, m)| (c.as_str().to_string(), *k, *m))
                .collect(),
            dead: self.dead.iter().cloned().collect(),
        }
    }

    fn restore(c: Checkpoint, dead_kept: usize) -> State {
        let mut s = State {
            dead_kept,
            ..State::default()
        };
        for rec in c.pending {
            s.add_intent(rec);
        }
        for (hi, lo, shard, seq) in c.settled {
            s.settled
                .insert((u128::from(hi) << 64) | u128::from(lo), (shard, seq));
        }
        s.sends = c
            .sends
            .into_iter()
            .filter_map(|(c, k, m)| Some((ChannelKind::parse(&c)?, k, m)))
            .collect();
        s.dead = c.dead.into_iter().collect();
        while s.dead.len() > dead_kept {
            s.dead.pop_front();
        }
        s
    }
}

fn encode_checkpoint(c: &Checkpoint) -> Vec<u8> {
    let json = serde_json::to_vec(c).unwrap_or_default();
    let mut out = Vec::with_capacity(json.len() + 16);
    out.extend_from_slice(CHECKPOINT_MAGIC);
    out.extend_from_slice(&xxh3_64(&json).to_le_bytes());
    out.extend_from_slice(&json);
    out
}

fn decode_checkpoint(bytes: &[u8]) -> Result<Checkpoint, String> {
    if bytes.len() < 16 || &bytes[..8] != CHECKPOINT_MAGIC {
        return Err("not an outbox checkpoint".into());
    }
    let sum = u64::from_le_bytes(bytes[8..16].try_into().unwrap_or_default());
    if xxh3_64(&bytes[16..]) != sum {
        return Err("checksum mismatch".into());
    }
    serde_json::from_slice(&bytes[16..]).map_err(|e| format!("does not decode: {e}"))
}

/// What the outbox gave back at start.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Notifications to send again, in the order they were decided.
    pub pending: Vec<Envelope>,
    /// Sends that still count in their recipients' windows.
    pub history: Vec<PastSend>,
    /// Dead letters kept.
    pub dead: Vec<(DeadLetterView, Vec<Envelope>)>,
    /// For the log.
    pub summary: String,
}

/// Checks an outbox checkpoint's envelope and that it decodes.
pub fn checkpoint_ok(bytes: &[u8]) -> Result<(), String> {
    decode_checkpoint(bytes).map(|_| ())
}

/// An outbox replayed read-only (`redcloud state inspect`, on a directory
/// or on Redis): the newest checkpoint that decodes plus every record after
/// it. Its `Display` is the one-line summary.
#[derive(Debug)]
pub struct Summary {
    state: State,
    base: u64,
}

impl Summary {
    /// Starts from the first of `checkpoints` (sequence and bytes, newest
    /// first, read lazily) that decodes, or from an empty outbox.
    pub fn start(checkpoints: impl IntoIterator<Item = (u64, Result<Vec<u8>, String>)>) -> Summary {
        for (seq, bytes) in checkpoints {
            if let Ok(c) = bytes.and_then(|b| decode_checkpoint(&b)) {
                return Summary {
                    state: State::restore(c, usize::MAX),
                    base: seq,
                };
            }
        }
        Summary {
            state: State {
                dead_kept: usize::MAX,
                ..State::default()
            },
            base: 0,
        }
    }

    /// Replays one record of the log (those the checkpoint covers are
    /// skipped).
    pub fn record(&mut self, r: &Record) {
        if r.seq > self.base {
            self.state.replay(r);
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} notifications to send, {} settled ids remembered, {} recent sends, {} dead letters",
            self.state.pending.len(),
            self.state.settled.len(),
            self.state.sends.len(),
            self.state.dead.len()
        )
    }
}

/// A read-only look at an outbox directory (`redcloud state inspect`): the
/// newest checkpoint that decodes plus every readable record after it.
pub fn summarize(dir: &Path) -> Result<String, String> {
    let checkpoints = super::wal::snapshots(dir).map_err(|e| e.to_string())?;
    let mut summary = Summary::start(
        checkpoints
            .into_iter()
            .map(|(seq, path)| (seq, std::fs::read(&path).map_err(|e| e.to_string()))),
    );
    for seg in super::wal::segments(dir).map_err(|e| e.to_string())? {
        let bytes = std::fs::read(&seg.path).map_err(|e| e.to_string())?;
        for r in super::wal::scan_segment(&bytes, seg.first_seq).records {
            summary.record(&r);
        }
    }
    Ok(summary.to_string())
}

enum Msg {
    Intents(Vec<Decided>, oneshot::Sender<Vec<Envelope>>),
    Journal(Journal),
}

/// The running outbox: hand it notifications with [`Outbox::persist`] and
/// the dispatcher's journal with [`Outbox::journal`].
#[derive(Debug, Clone)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<Msg>,
}

/// Its thread, to join at the end.
#[derive(Debug)]
pub struct OutboxThread(std::thread::JoinHandle<()>);

impl OutboxThread {
    /// Waits until everything queued is on disk and the last checkpoint is
    /// written (every [`Outbox`] handle must be gone).
    pub fn join(self) {
        let _ = self.0.join();
    }
}

impl Outbox {
    /// Opens (or creates) the outbox in `dir`, recovers it, and starts its
    /// thread. `horizon` is the longest per-recipient window; `dead_kept`
    /// how many dead letters to keep; `now_ms` the wall clock; `gap` the
    /// least time between two syncs under load (`[daemon] commit_gap`).
    pub fn open(
        store: Store,
        shared: Arc<OutboxShared>,
        horizon: Duration,
        dead_kept: usize,
        now_ms: i64,
        gap: Duration,
    ) -> Result<(Outbox, OutboxThread, Recovered), String> {
        let start = Instant::now();
        store.remove_unfinished();
        let mut state = None;
        let mut base = 0;
        let seqs = store.snapshot_seqs().map_err(|e| format!("{store}: {e}"))?;
        for seq in seqs {
            match store
                .read_snapshot(seq)
                .map_err(|e| e.to_string())
                .and_then(|b| decode_checkpoint(&b))
            {
                Ok(c) => {
                    state = Some(State::restore(c, dead_kept));
                    base = seq;
                    break;
                }
                Err(e) => warn!(store = %store, seq, error = %e,
                    "outbox checkpoint skipped; trying an older one"),
            }
        }
        let mut state = state.unwrap_or_else(|| State {
            dead_kept,
            ..State::default()
        });
        let mut bad = 0u64;
        let (log, rec) = store
            .open_log(base, SEGMENT_BYTES, |r| {
                if !state.replay(r) {
                    bad += 1;
                }
            })
            .map_err(|e| e.to_string())?;
        if let Some((path, offset, dropped, reason)) = &rec.truncated {
            warn!(file = %path.display(), offset, dropped_bytes = dropped, reason = %reason,
                "torn outbox tail cut off (a write interrupted by a crash; nothing in it was handed to the dispatcher)");
        }
        if bad > 0 {
            warn!(
                records = bad,
                "outbox records that do not decode were skipped"
            );
        }
        state.prune(&shared, now_ms, horizon);
        let recovered = Recovered {
            pending: state.pending.values().map(|r| r.env.clone()).collect(),
            history: state
                .sends
                .iter()
                .map(|&(channel, recipient_key, unix_ms)| PastSend {
                    channel,
                    recipient_key,
                    unix_ms,
                })
                .collect(),
            dead: state.dead.iter().map(|(d, e)| (d.view(), e.clone())).collect(),
            summary: format!(
                "outbox: checkpoint seq {base}, {} records replayed, {} to send again, {} settled ids remembered, {} recent sends, {} dead letters, {:.1} ms",
                rec.replayed,
                state.pending.len(),
                state.settled.len(),
                state.sends.len(),
                state.dead.len(),
                start.elapsed().as_secs_f64() * 1e3
            ),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let mut w = Writer {
            log,
            state,
            shared,
            horizon,
            since_checkpoint: rec.replayed,
            gap,
        };
        let join = std::thread::Builder::new()
            .name("redcloud-outbox".into())
            .spawn(move || w.run(rx))
            .map_err(|e| format!("cannot start the outbox thread: {e}"))?;
        Ok((Outbox { tx }, OutboxThread(join), recovered))
    }

    /// Writes `items` (synced) and returns the envelopes the dispatcher has
    /// not seen yet (neither pending nor settled), in order. `None` if the
    /// outbox has stopped.
    pub async fn persist(&self, items: Vec<Decided>) -> Option<Vec<Envelope>> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Msg::Intents(items, tx)).ok()?;
        rx.await.ok()
    }

    /// Forwards the dispatcher's journal until it ends.
    pub async fn journal(self, mut rx: mpsc::UnboundedReceiver<Journal>) {
        while let Some(j) = rx.recv().await {
            if self.tx.send(Msg::Journal(j)).is_err() {
                break;
            }
        }
    }
}

struct Writer {
    log: Wal,
    state: State,
    shared: Arc<OutboxShared>,
    horizon: Duration,
    since_checkpoint: u64,
    /// Under load, the least time from the end of one sync to the start of
    /// the next: what comes meanwhile shares the next one.
    gap: Duration,
}

fn unix_ms_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Writer {
    fn run(&mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        let mut msgs = Vec::new();
        let mut tags: HashMap<u32, u64> = HashMap::new();
        let mut replies = Vec::new();
        let mut pace = SyncGap::new(self.gap);
        while let Some(first) = rx.blocking_recv() {
            msgs.push(first);
            // Under load, the notifications and delivered marks that come
            // within the gap share the next sync (each costs a device flush).
            pace.wait();
            while msgs.len() < 4096 {
                match rx.try_recv() {
                    Ok(m) => msgs.push(m),
                    Err(_) => break,
                }
            }
            for m in msgs.drain(..) {
                match m {
                    Msg::Intents(items, reply) => {
                        let mut fresh = Vec::with_capacity(items.len());
                        for d in items {
                            let t = tags.entry(d.shard).or_default();
                            *t = (*t).max(d.seq);
                            let h = id_hash(&d.env.notification.id);
                            if self.state.known(h) {
                                continue;
                            }
                            let rec = IntentRec {
                                shard: d.shard,
                                seq: d.seq,
                                env: d.env,
                            };
                            match serde_json::to_vec(&rec) {
                                Ok(bytes) => {
                                    self.log.append(KIND_INTENT, &bytes);
                                    self.since_checkpoint += 1;
                                }
                                Err(e) => {
                                    error!(error = %e, "cannot encode a notification for the outbox")
                                }
                            }
                            fresh.push(rec.env.clone());
                            self.state.add_intent(rec);
                        }
                        replies.push((reply, fresh));
                    }
                    Msg::Journal(j) => {
                        let rec = match j {
                            Journal::Attempt {
                                channel,
                                recipient_key,
                                unix_ms,
                                delivered,
                            } => SettledRec::Attempt {
                                channel: channel.as_str().to_string(),
                                key: recipient_key,
                                ms: unix_ms,
                                delivered,
                            },
                            Journal::Dead { view, envs } => SettledRec::Dead {
                                dead: DeadRec::of(&view),
                                envs,
                            },
                        };
                        if let Ok(bytes) = serde_json::to_vec(&rec) {
                            self.log.append(KIND_SETTLED, &bytes);
                            self.since_checkpoint += 1;
                        }
                        self.state.apply(rec);
                    }
                }
            }
            self.commit();
            self.shared.syncs.fetch_add(1, Ordering::Relaxed);
            pace.synced();
            for (shard, seq) in tags.drain() {
                if let Some(a) = self.shared.durable.get(shard as usize) {
                    a.fetch_max(seq, Ordering::AcqRel);
                }
            }
            for (reply, fresh) in replies.drain(..) {
                let _ = reply.send(fresh);
            }
            if self.since_checkpoint >= CHECKPOINT_RECORDS {
                self.checkpoint();
            }
        }
        self.commit();
        self.checkpoint();
    }

    fn commit(&mut self) {
        if let Err(e) = self.log.commit() {
            error!(error = %e,
                "CANNOT WRITE THE OUTBOX: exiting; notifications not in it are decided again from the shards' logs after a restart");
            std::process::exit(70);
        }
    }

    fn checkpoint(&mut self) {
        let start = Instant::now();
        self.state.prune(&self.shared, unix_ms_now(), self.horizon);
        let bytes = encode_checkpoint(&self.state.checkpoint());
        let seq = self.log.last_seq();
        match self.log.store().write_snapshot(seq, &bytes) {
            Ok(_) => {
                self.since_checkpoint = 0;
                info!(
                    seq,
                    bytes = bytes.len(),
                    pending = self.state.pending.len(),
                    settled = self.state.settled.len(),
                    ms = start.elapsed().as_secs_f64() * 1e3,
                    "outbox checkpoint written"
                );
            }
            Err(e) => warn!(seq, error = %e,
                "cannot write an outbox checkpoint; its log keeps growing until one succeeds"),
        }
    }
}

/// Tests: a reminder to `member:a` with id `id` and a phone number.
#[cfg(test)]
pub(crate) fn test_envelope(id: &str) -> Envelope {
    serde_json::from_value(serde_json::json!({
        "notification": {"id": id, "at": "2026-03-07T00:00:00+08:00", "policy": "quiz",
            "kind": "reminder", "step": 1, "subject": "member:a", "recipient": "member:a", "missed": 1},
        "recipient_name": null, "sms": "13800000000", "push": null, "org": null, "org_name": null,
        "org_group": null, "subject_name": null, "ticket_title": null, "deadline": null
    }))
    .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn env(id: &str) -> Envelope {
        test_envelope(id)
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "redcloud-outbox-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn decided(shard: u32, seq: u64, id: &str) -> Decided {
        Decided {
            shard,
            seq,
            env: env(id),
        }
    }

    fn open(dir: &Path, shared: &Arc<OutboxShared>) -> (Outbox, OutboxThread, Recovered) {
        Outbox::open(
            Store::Dir(dir.to_path_buf()),
            shared.clone(),
            Duration::from_secs(3600),
            10,
            unix_ms_now(),
            Duration::ZERO,
        )
        .unwrap()
    }

    fn ids(v: &[Envelope]) -> Vec<&str> {
        v.iter().map(|e| e.notification.id.as_str()).collect()
    }

    /// Hands `entries` to the outbox as the dispatcher's journal and waits
    /// until they are taken.
    async fn journal(ob: &Outbox, entries: Vec<Journal>) {
        let (jtx, jrx) = mpsc::unbounded_channel();
        let fwd = tokio::spawn(ob.clone().journal(jrx));
        for j in entries {
            jtx.send(j).unwrap();
        }
        drop(jtx);
        fwd.await.unwrap();
    }

    /// Stops the outbox: its last records and checkpoint are on disk after.
    async fn close(ob: Outbox, th: OutboxThread) {
        drop(ob);
        tokio::task::spawn_blocking(move || th.join())
            .await
            .unwrap();
    }

    fn delivered(key: u64, ids: &[&str]) -> Journal {
        Journal::Attempt {
            channel: ChannelKind::Sms,
            recipient_key: key,
            unix_ms: unix_ms_now(),
            delivered: ids.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Under load the outbox syncs at most once per gap: what comes while
    /// it waits shares one sync; nothing is answered before it is on disk.
    #[tokio::test]
    async fn notifications_that_come_within_the_gap_share_one_sync() {
        let dir = tmp("gap");
        let shared = OutboxShared::new(1);
        let (ob, th, _) = Outbox::open(
            Store::Dir(dir.clone()),
            shared.clone(),
            Duration::from_secs(3600),
            10,
            unix_ms_now(),
            Duration::from_millis(300),
        )
        .unwrap();
        // After a quiet spell: synced at once.
        ob.persist(vec![decided(0, 1, "first")]).await.unwrap();
        assert_eq!(shared.syncs(), 1);
        // Twenty at once, right after: one more sync (two if the first of
        // them came in just before the writer went to wait), not twenty.
        let all = futures_util::future::join_all(
            (0..20u64).map(|i| ob.persist(vec![decided(0, 2 + i, &format!("n{i}"))])),
        )
        .await;
        assert!(all.iter().all(|f| f.as_ref().is_some_and(|v| v.len() == 1)));
        assert_eq!(shared.durable(0), 21, "every one is on disk when answered");
        assert!(
            (2..=3).contains(&shared.syncs()),
            "{} syncs for 21 notifications",
            shared.syncs()
        );
        close(ob, th).await;
        let (ob, th, rec) = open(&dir, &shared);
        assert_eq!(rec.pending.len(), 21, "{}", rec.summary);
        close(ob, th).await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn pending_survive_settled_do_not_and_duplicates_are_filtered() {
        let dir = tmp("cycle");
        let shared = OutboxShared::new(2);
        let (ob, th, rec) = open(&dir, &shared);
        assert!(rec.pending.is_empty());
        let fresh = ob
            .persist(vec![
                decided(0, 5, "a"),
                decided(1, 3, "b"),
                decided(0, 6, "c"),
            ])
            .await
            .unwrap();
        assert_eq!(ids(&fresh), ["a", "b", "c"]);
        assert_eq!(shared.durable(0), 6);
        assert_eq!(shared.durable(1), 3);
        // The same ids again (a shard replaying its log): nothing new.
        let again = ob.persist(vec![decided(0, 7, "a")]).await.unwrap();
        assert!(again.is_empty());
        assert_eq!(shared.durable(0), 7, "a known id still counts as durable");
        journal(&ob, vec![delivered(42, &["b"]), delivered(43, &[])]).await;
        close(ob, th).await;

        let (ob, th, rec) = open(&dir, &shared);
        assert_eq!(ids(&rec.pending), ["a", "c"], "{}", rec.summary);
        assert_eq!(rec.history.len(), 2, "failed attempts count in windows too");
        // A settled id decided again (a log replay) is not sent again; a new one is.
        let fresh = ob
            .persist(vec![decided(1, 3, "b"), decided(1, 9, "d")])
            .await
            .unwrap();
        assert_eq!(ids(&fresh), ["d"]);
        close(ob, th).await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn settled_ids_are_forgotten_once_the_shard_snapshot_covers_them() {
        let dir = tmp("prune");
        let shared = OutboxShared::new(1);
        let (ob, th, _) = open(&dir, &shared);
        ob.persist(vec![decided(0, 5, "a"), decided(0, 9, "b")])
            .await
            .unwrap();
        journal(&ob, vec![delivered(1, &["a"]), delivered(1, &["b"])]).await;
        shared.set_horizon(0, 5);
        close(ob, th).await;
        let (ob, th, rec) = open(&dir, &shared);
        assert!(
            rec.summary.contains("1 settled ids remembered"),
            "{}",
            rec.summary
        );
        // "a" (tag 5) is covered by the shard's snapshot: it cannot be decided
        // again, so forgetting it is safe; "b" (tag 9) is still remembered.
        assert!(ob
            .persist(vec![decided(0, 9, "b")])
            .await
            .unwrap()
            .is_empty());
        close(ob, th).await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn dead_letters_come_back_and_a_torn_tail_is_cut() {
        let dir = tmp("dead");
        let shared = OutboxShared::new(1);
        let (ob, th, _) = open(&dir, &shared);
        ob.persist(vec![decided(0, 1, "x"), decided(0, 2, "y")])
            .await
            .unwrap();
        journal(
            &ob,
            vec![Journal::Dead {
                view: DeadLetterView {
                    id: "x".into(),
                    notification_ids: vec!["x".into()],
                    policy: "quiz".into(),
                    kind: "reminder".into(),
                    step: 1,
                    recipient: "member:a".into(),
                    channel: Some("sms"),
                    reason: "http 400".into(),
                    attempts: 1,
                    at_unix_ms: 1,
                },
                envs: vec![env("x")],
            }],
        )
        .await;
        close(ob, th).await;
        // Append a torn record to the newest segment.
        let seg = super::super::wal::segments(&dir).unwrap().pop().unwrap();
        let mut bytes = std::fs::read(&seg.path).unwrap();
        bytes.extend_from_slice(&[7u8; 30]);
        std::fs::write(&seg.path, bytes).unwrap();
        let (ob, th, rec) = open(&dir, &shared);
        assert_eq!(ids(&rec.pending), ["y"]);
        assert_eq!(rec.dead.len(), 1);
        assert_eq!(rec.dead[0].0.channel, Some("sms"));
        assert_eq!(rec.dead[0].0.reason, "http 400");
        close(ob, th).await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
