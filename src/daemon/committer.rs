//! A shard's log writer thread: the shard hands it each batch's records and
//! acknowledgements ([`Committer::submit`]) and goes on applying the next
//! batch while this thread writes and syncs. Batches that wait while a sync
//! runs are written together with one sync (group commit across batches).
//! After the sync the thread acknowledges the batches' events, in order, and
//! publishes how far the log is durable ([`Committer::durable`]); the shard
//! hands a batch's notifications to the sink only from then on, so nothing
//! leaves the daemon for an event that a crash could still take back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::error;

use super::shard::{settle, Done};
use super::wal::LogWriter;

/// One batch: its records (if any) and the acknowledgements that wait for
/// them.
struct Job {
    records: Option<(u64, Vec<u8>)>,
    last: u64,
    acks: Vec<(Done, bool)>,
}

/// How far the log is on disk, shared by the writer and the shard.
pub(super) struct Durable {
    seq: Mutex<u64>,
    cv: Condvar,
    /// Syncs done (one per group of batches).
    syncs: AtomicU64,
    /// Wakes the shard's loop (notifications wait for their batch's sync).
    pub(super) changed: tokio::sync::Notify,
}

impl Durable {
    fn get(&self) -> u64 {
        *self.seq.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Syncs of the log so far (`redcloud_log_syncs_total`).
    pub(super) fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }
}

/// The shard's end of its log writer thread.
pub(super) struct Committer {
    tx: Option<mpsc::Sender<Job>>,
    durable: Arc<Durable>,
    join: Option<JoinHandle<()>>,
}

impl Committer {
    /// Starts the writer thread of shard `index`; everything up to `last` is
    /// already on disk. Under load, a sync starts no sooner than `gap` after
    /// the previous one ended (`[daemon] commit_gap`): the batches that come
    /// meanwhile share it, so a busy shard syncs at most about once per
    /// `gap` plus the sync's own time, while a batch after a quiet spell is
    /// synced at once.
    pub(super) fn start(
        index: usize,
        writer: LogWriter,
        last: u64,
        gap: Duration,
    ) -> std::io::Result<Committer> {
        let durable = Arc::new(Durable {
            seq: Mutex::new(last),
            cv: Condvar::new(),
            syncs: AtomicU64::new(0),
            changed: tokio::sync::Notify::new(),
        });
        let (tx, rx) = mpsc::channel::<Job>();
        let shared = durable.clone();
        let join = std::thread::Builder::new()
            .name(format!("redcloud-wal-{index}"))
            .spawn(move || write_loop(index, writer, gap, &rx, &shared))?;
        Ok(Committer {
            tx: Some(tx),
            durable,
            join: Some(join),
        })
    }

    /// Hands over a batch: its records (`None` when it logged nothing, e.g.
    /// only duplicates, whose acks still wait for the earlier batches), the
    /// last sequence given out so far and the acknowledgements.
    pub(super) fn submit(
        &self,
        records: Option<(u64, Vec<u8>)>,
        last: u64,
        acks: Vec<(Done, bool)>,
    ) {
        let job = Job {
            records,
            last,
            acks,
        };
        if let Some(tx) = &self.tx {
            if tx.send(job).is_err() {
                // The writer thread ends only by exiting the process.
                error!("the log writer thread has stopped: exiting");
                std::process::exit(70);
            }
        }
    }

    /// The highest sequence on disk.
    pub(super) fn durable(&self) -> u64 {
        self.durable.get()
    }

    /// Syncs of the log so far.
    pub(super) fn syncs(&self) -> u64 {
        self.durable.syncs()
    }

    /// The shared durability state (for the shard's loop to wait on).
    pub(super) fn shared(&self) -> Arc<Durable> {
        self.durable.clone()
    }

    /// Blocks until everything up to `seq` is on disk (one sync at most).
    pub(super) fn wait_durable(&self, seq: u64) {
        let mut g = self.durable.seq.lock().unwrap_or_else(|p| p.into_inner());
        while *g < seq {
            g = self.durable.cv.wait(g).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Waits until every batch handed over is written and acknowledged.
    pub(super) fn finish(mut self) {
        self.tx = None;
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

/// Group commit's pace under load: the next sync starts no sooner than
/// `gap` after the last one ended, so what comes meanwhile shares it; the
/// first sync after a quiet spell is not held back. (The shards' log
/// writers and the outbox.)
pub(super) struct SyncGap {
    gap: Duration,
    synced: Instant,
}

impl SyncGap {
    /// No sync yet: the first is not held back.
    pub(super) fn new(gap: Duration) -> SyncGap {
        SyncGap {
            gap,
            synced: Instant::now().checked_sub(gap).unwrap_or_else(Instant::now),
        }
    }

    /// Sleeps out the rest of the gap since the last sync ended.
    pub(super) fn wait(&self) {
        let since = self.synced.elapsed();
        if since < self.gap {
            std::thread::sleep(self.gap - since);
        }
    }

    /// A sync has just ended.
    pub(super) fn synced(&mut self) {
        self.synced = Instant::now();
    }
}

fn write_loop(
    index: usize,
    mut w: LogWriter,
    gap: Duration,
    rx: &mpsc::Receiver<Job>,
    d: &Durable,
) {
    let mut group = Vec::new();
    let mut bytes = Vec::new();
    let mut pace = SyncGap::new(gap);
    while let Ok(job) = rx.recv() {
        group.push(job);
        pace.wait();
        // Whatever arrived meanwhile goes out with the same sync.
        while let Ok(j) = rx.try_recv() {
            group.push(j);
        }
        bytes.clear();
        let mut first = None;
        let mut last = 0;
        for j in &mut group {
            last = last.max(j.last);
            if let Some((f, b)) = j.records.take() {
                first.get_or_insert(f);
                if bytes.is_empty() {
                    bytes = b;
                } else {
                    bytes.extend_from_slice(&b);
                }
            }
        }
        if let Some(f) = first {
            if let Err(e) = w.write(f, &bytes) {
                error!(shard = index, error = %e,
                    "CANNOT WRITE THE WRITE-AHEAD LOG: exiting without acknowledging; unacknowledged events will be redelivered after a restart");
                std::process::exit(70);
            }
            d.syncs.fetch_add(1, Ordering::Relaxed);
        }
        pace.synced();
        for j in group.drain(..) {
            for (done, duplicate) in j.acks {
                settle(done, duplicate);
            }
        }
        {
            let mut g = d.seq.lock().unwrap_or_else(|p| p.into_inner());
            *g = (*g).max(last);
        }
        d.cv.notify_all();
        d.changed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use redcloud_connectors::source::Acker;

    use super::*;
    use crate::daemon::wal::{test_dir, Wal, KIND_EVENT};

    /// A new log in a directory of its own, its writer handed to a started
    /// committer of shard `index` with `gap`.
    fn started(name: &str, index: usize, gap: Duration) -> (PathBuf, Wal, Committer) {
        let dir = test_dir("committer", name);
        let (mut wal, _) = Wal::open(&dir, 0, 1 << 20, |_| {}).unwrap();
        let c = Committer::start(index, wal.detach_writer().unwrap(), wal.last_seq(), gap).unwrap();
        (dir, wal, c)
    }

    /// The payloads of the records on disk, in order.
    fn on_disk(dir: &Path) -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        Wal::open(dir, 0, 1 << 20, |r| v.push(r.payload.clone())).unwrap();
        v
    }

    #[test]
    fn acks_come_after_their_batch_is_on_disk_and_in_order() {
        let (dir, mut wal, c) = started("order", 0, Duration::ZERO);
        // Each ack reads the log back: its own event must be there.
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut last = 0;
        for batch in 0..20u32 {
            let mut acks = Vec::new();
            for i in 0..5u32 {
                let payload = format!("event-{batch}-{i}");
                last = wal.append(KIND_EVENT, payload.as_bytes());
                let (seen, dir) = (seen.clone(), dir.clone());
                acks.push((
                    Done::One(Acker::callback(move |_| {
                        let there = on_disk(&dir).iter().any(|p| p == payload.as_bytes());
                        seen.lock().unwrap().push((payload, there));
                    })),
                    false,
                ));
            }
            c.submit(wal.take_batch(), wal.last_seq(), acks);
        }
        // A batch that logged nothing (duplicates only) is acknowledged after
        // the ones before it.
        let seen2 = seen.clone();
        c.submit(
            None,
            wal.last_seq(),
            vec![(
                Done::One(Acker::callback(move |_| {
                    seen2.lock().unwrap().push(("duplicate".into(), true));
                })),
                true,
            )],
        );
        c.wait_durable(last);
        assert_eq!(c.durable(), last);
        c.finish();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 101);
        let want: Vec<String> = (0..20)
            .flat_map(|b| (0..5).map(move |i| format!("event-{b}-{i}")))
            .chain(["duplicate".to_string()])
            .collect();
        assert_eq!(
            seen.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(),
            want
        );
        assert!(
            seen.iter().all(|(_, there)| *there),
            "an ack came before its record was on disk"
        );
        assert_eq!(on_disk(&dir).len(), 100);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn under_load_batches_share_a_sync_but_a_batch_after_a_quiet_spell_goes_at_once() {
        let gap = Duration::from_millis(300);
        let (dir, mut wal, c) = started("gap", 2, gap);
        let submit = |wal: &mut Wal, i: u32| {
            wal.append(KIND_EVENT, &i.to_le_bytes());
            c.submit(wal.take_batch(), wal.last_seq(), Vec::new());
            wal.last_seq()
        };
        // Idle: synced at once.
        let t = Instant::now();
        let s = submit(&mut wal, 0);
        c.wait_durable(s);
        let first = t.elapsed();
        // Right after a sync: the next one waits out the gap, and the batches
        // that come meanwhile share it.
        let t = Instant::now();
        let mut s = 0;
        for i in 1..=20 {
            s = submit(&mut wal, i);
            std::thread::sleep(Duration::from_millis(2));
        }
        c.wait_durable(s);
        let busy = t.elapsed();
        assert!(busy >= gap - Duration::from_millis(5), "{busy:?}");
        assert!(
            c.syncs() <= 3,
            "20 batches within the gap took {} syncs",
            c.syncs()
        );
        // After a quiet spell longer than the gap: at once again.
        std::thread::sleep(gap + Duration::from_millis(50));
        let t = Instant::now();
        let s = submit(&mut wal, 21);
        c.wait_durable(s);
        let after_quiet = t.elapsed();
        assert!(
            first < gap && after_quiet < gap,
            "idle batches waited: {first:?}, {after_quiet:?}"
        );
        c.finish();
        assert_eq!(on_disk(&dir).len(), 22);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn many_small_batches_reach_the_disk_whole_and_in_order() {
        let (dir, mut wal, c) = started("group", 1, Duration::from_millis(2));
        for i in 0..2000u32 {
            wal.append(KIND_EVENT, &i.to_le_bytes());
            c.submit(wal.take_batch(), wal.last_seq(), Vec::new());
        }
        c.wait_durable(2000);
        c.finish();
        let got = on_disk(&dir);
        assert_eq!(got.len(), 2000);
        for (i, p) in got.iter().enumerate() {
            assert_eq!(p.as_slice(), (i as u32).to_le_bytes());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
