//! The write-ahead log and the snapshot files of one shard.
//!
//! A shard's directory (`[daemon] data_dir/shard-<n>/`) holds:
//!
//! - `wal-<first seq, 20 digits>.log`: segments of the log. Each starts with
//!   the 8-byte magic [`SEGMENT_MAGIC`], then records, each framed as
//!
//!   | size | field |
//!   |---|---|
//!   | 8 | xxh3-64 of every byte of the record after this field, `u64` LE |
//!   | 4 | payload length, `u32` LE (at most [`MAX_PAYLOAD`]) |
//!   | 8 | sequence number, `u64` LE (1, 2, 3, … without gaps across segments) |
//!   | 1 | kind: 1 = event (payload: the event's JSON bytes as received), 2 = advance (payload: `i64` LE microseconds, the processing-time watermark the shard advanced to) |
//!   | n | payload |
//!
//! - `snapshot-<seq, 20 digits>.bin`: [`Engine::snapshot`] bytes covering
//!   every record up to and including `seq` (their own format has a checksum).
//!   Written as `.bin.tmp`, fsynced, renamed, directory fsynced.
//!
//! Group commit: [`Wal::append`] only buffers; [`Wal::commit`] writes the
//! buffer and calls `sync_data` once. Callers acknowledge nothing before
//! `commit` returned `Ok`. A shard instead detaches the [`LogWriter`]
//! ([`Wal::detach_writer`]) into a thread of its own and hands it each
//! batch ([`Wal::take_batch`]): the shard applies the next batch while the
//! previous one is being synced, and the thread acknowledges a batch after
//! its sync (several batches waiting are written with one sync).
//!
//! Reading ([`scan_segment`]): a record that is short or fails its checksum
//! ends the readable log. If no valid record with a later sequence number
//! follows it anywhere in the segment, and the segment is the last, it is a
//! *torn tail* (a write cut by a crash): the segment is truncated to the last
//! good record and the cut is reported. Otherwise it is *corruption*: reading
//! stops and the caller is told the file and the offset.
//!
//! [`Engine::snapshot`]: redcloud_engine::Engine::snapshot

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use xxhash_rust::xxh3::xxh3_64;

/// First bytes of every segment.
pub const SEGMENT_MAGIC: &[u8; 8] = b"RCLDWAL1";
/// Bytes of a record's frame before its payload.
pub const HEADER_LEN: usize = 21;
/// Largest payload (events are at most 64 KiB).
pub const MAX_PAYLOAD: usize = 1 << 20;
/// Record kind: an event's JSON bytes.
pub const KIND_EVENT: u8 = 1;
/// Record kind: a processing-time advance (`i64` LE microseconds).
pub const KIND_ADVANCE: u8 = 2;
/// Record kind (the outbox's log, [`super::outbox`]): notifications to send.
pub const KIND_INTENT: u8 = 3;
/// Record kind (the outbox's log): attempts, delivered marks, dead letters.
pub const KIND_SETTLED: u8 = 4;

/// One record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Sequence number.
    pub seq: u64,
    /// [`KIND_EVENT`] or [`KIND_ADVANCE`].
    pub kind: u8,
    /// Payload.
    pub payload: Vec<u8>,
}

/// Why reading a segment stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Byte offset of the first bad record in the segment.
    pub offset: u64,
    /// What is wrong there.
    pub reason: String,
    /// Whether a valid later record follows (corruption) or not (torn tail).
    pub followed: bool,
}

/// What [`scan_segment`] found.
#[derive(Debug, Clone, Default)]
pub struct SegmentScan {
    /// The good records, in order.
    pub records: Vec<Record>,
    /// Offset just after the last good record (or the magic).
    pub good_end: u64,
    /// The first bad record, if any.
    pub damage: Option<Damage>,
}

pub(super) fn frame_at(bytes: &[u8], off: usize) -> Result<(Record, usize), String> {
    let rest = &bytes[off..];
    if rest.len() < HEADER_LEN {
        return Err(format!("short record header ({} bytes)", rest.len()));
    }
    let sum = u64::from_le_bytes(rest[0..8].try_into().unwrap_or_default());
    let len = u32::from_le_bytes(rest[8..12].try_into().unwrap_or_default()) as usize;
    if len > MAX_PAYLOAD {
        return Err(format!("record length {len} is over the limit"));
    }
    if rest.len() < HEADER_LEN + len {
        return Err(format!(
            "short record: {} of {} bytes",
            rest.len(),
            HEADER_LEN + len
        ));
    }
    if xxh3_64(&rest[8..HEADER_LEN + len]) != sum {
        return Err("checksum mismatch".into());
    }
    let seq = u64::from_le_bytes(rest[12..20].try_into().unwrap_or_default());
    let kind = rest[20];
    if !(KIND_EVENT..=KIND_SETTLED).contains(&kind) {
        return Err(format!("unknown record kind {kind}"));
    }
    Ok((
        Record {
            seq,
            kind,
            payload: rest[HEADER_LEN..HEADER_LEN + len].to_vec(),
        },
        HEADER_LEN + len,
    ))
}

/// Reads a segment's bytes; `first_seq` is the sequence its name announces.
pub fn scan_segment(bytes: &[u8], first_seq: u64) -> SegmentScan {
    let mut scan = SegmentScan::default();
    if bytes.len() < SEGMENT_MAGIC.len() || &bytes[..SEGMENT_MAGIC.len()] != SEGMENT_MAGIC {
        let full_magic = bytes.len() >= SEGMENT_MAGIC.len();
        scan.damage = Some(Damage {
            offset: 0,
            reason: "bad segment magic".into(),
            // A partly written magic is a torn creation; a wrong one is not.
            followed: full_magic && bytes.len() > SEGMENT_MAGIC.len(),
        });
        return scan;
    }
    scan_frames(bytes, SEGMENT_MAGIC.len(), first_seq)
}

/// Reads framed records without a segment's magic (an entry of a log kept
/// in Redis, [`super::redis_store`]); `first_seq` is the sequence the first
/// record must have. Offsets are from the start of `bytes`.
pub fn scan_records(bytes: &[u8], first_seq: u64) -> SegmentScan {
    scan_frames(bytes, 0, first_seq)
}

fn scan_frames(bytes: &[u8], mut off: usize, first_seq: u64) -> SegmentScan {
    let mut scan = SegmentScan::default();
    let mut expect = first_seq;
    scan.good_end = off as u64;
    while off < bytes.len() {
        match frame_at(bytes, off) {
            Ok((r, n)) if r.seq == expect => {
                off += n;
                expect += 1;
                scan.good_end = off as u64;
                scan.records.push(r);
            }
            other => {
                let reason = match other {
                    Ok((r, _)) => format!("sequence {} where {expect} was expected", r.seq),
                    Err(e) => e,
                };
                let followed = (off + 1..bytes.len())
                    .any(|o| matches!(frame_at(bytes, o), Ok((r, _)) if r.seq >= expect));
                scan.damage = Some(Damage {
                    offset: off as u64,
                    reason,
                    followed,
                });
                break;
            }
        }
    }
    scan
}

/// A segment file of a shard directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The sequence its name announces.
    pub first_seq: u64,
    /// Its path.
    pub path: PathBuf,
}

/// The segments of `dir`, oldest first.
pub fn segments(dir: &Path) -> io::Result<Vec<Segment>> {
    let mut v = Vec::new();
    for e in fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(n) = name
            .strip_prefix("wal-")
            .and_then(|s| s.strip_suffix(".log"))
            .and_then(|s| s.parse::<u64>().ok())
        {
            v.push(Segment {
                first_seq: n,
                path: e.path(),
            });
        }
    }
    v.sort_by_key(|s| s.first_seq);
    Ok(v)
}

/// The snapshot files of `dir` as (seq, path), newest first.
pub fn snapshots(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut v = Vec::new();
    for e in fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(n) = name
            .strip_prefix("snapshot-")
            .and_then(|s| s.strip_suffix(".bin"))
            .and_then(|s| s.parse::<u64>().ok())
        {
            v.push((n, e.path()));
        }
    }
    v.sort_by_key(|s| std::cmp::Reverse(s.0));
    Ok(v)
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("wal-{first_seq:020}.log"))
}

/// Fsyncs a directory (so that creations, renames and deletions in it last).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Writes a snapshot covering records up to `seq`: `.tmp`, fsync, rename,
/// directory fsync. Then keeps only the two newest snapshots and deletes the
/// segments wholly covered by the older of the two (so a damaged newest
/// snapshot can still be recovered from with the one before it). Returns the
/// path written.
pub fn write_snapshot(dir: &Path, seq: u64, bytes: &[u8]) -> io::Result<PathBuf> {
    let path = put_snapshot(dir, seq, bytes)?;
    prune_snapshots(dir)?;
    Ok(path)
}

/// The first half of [`write_snapshot`]: `.tmp`, fsync, rename, directory
/// fsync (what a forked snapshot child does).
pub fn put_snapshot(dir: &Path, seq: u64, bytes: &[u8]) -> io::Result<PathBuf> {
    let path = dir.join(format!("snapshot-{seq:020}.bin"));
    let tmp = dir.join(format!("snapshot-{seq:020}.bin.tmp"));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, &path)?;
    sync_dir(dir)?;
    Ok(path)
}

/// The second half of [`write_snapshot`]: keeps the two newest snapshots and
/// deletes the segments the older one covers.
pub fn prune_snapshots(dir: &Path) -> io::Result<()> {
    let snaps = snapshots(dir)?;
    for (_, old) in snaps.iter().skip(2) {
        fs::remove_file(old)?;
    }
    if let Some(&(keep, _)) = snaps.get(1).or(snaps.first()) {
        remove_segments_through(dir, keep)?;
    }
    sync_dir(dir)
}

/// The oldest snapshot sequence a recovery of `dir` may start from (the
/// older of the two kept; 0 if none): what the log keeps segments for.
pub fn recovery_horizon(dir: &Path) -> u64 {
    snapshots(dir)
        .ok()
        .and_then(|s| s.get(1).or(s.first()).map(|x| x.0))
        .unwrap_or(0)
}

/// Deletes the segments whose every record has a sequence at most `seq`
/// (never the newest segment).
pub fn remove_segments_through(dir: &Path, seq: u64) -> io::Result<usize> {
    let segs = segments(dir)?;
    let mut removed = 0;
    for w in segs.windows(2) {
        // Every record of w[0] is below w[1].first_seq.
        if w[1].first_seq <= seq + 1 {
            fs::remove_file(&w[0].path)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// A damaged log that recovery does not repair on its own.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// I/O.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A bad record with good records after it, or a gap in the sequence.
    #[error("{path}: corrupt write-ahead log at byte {offset}: {reason} (acknowledged events follow it; run `redcloud state verify` and see docs/operations.md, Durability)")]
    Corrupt {
        /// The segment.
        path: PathBuf,
        /// Byte offset in it.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What [`Wal::open`] recovered.
#[derive(Debug, Clone, Default)]
pub struct Recovered {
    /// Segments read.
    pub segments: usize,
    /// Records handed to the callback (after the snapshot's sequence).
    pub replayed: u64,
    /// The last sequence in the log (or the snapshot's if higher).
    pub last_seq: u64,
    /// A torn tail that was cut: file, offset, bytes dropped, reason.
    pub truncated: Option<(PathBuf, u64, u64, String)>,
}

/// Where a log and its snapshots live: a directory (`durability = "wal"`)
/// or keys in Redis (`durability = "redis"`, [`super::redis_store`]).
#[derive(Clone, Debug)]
pub enum Store {
    /// `data_dir/shard-<n>` or `data_dir/outbox`.
    Dir(PathBuf),
    /// `<prefix>:shard-<n>` or `<prefix>:outbox`.
    Redis(super::redis_store::RedisPart),
}

impl std::fmt::Display for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Store::Dir(d) => write!(f, "{}", d.display()),
            Store::Redis(r) => write!(f, "redis key {}", r.key()),
        }
    }
}

impl Store {
    /// Opens the log, replaying every record after `after` (see [`Wal::open`]).
    pub fn open_log(
        &self,
        after: u64,
        segment_bytes: u64,
        replay: impl FnMut(&Record),
    ) -> Result<(Wal, Recovered), WalError> {
        match self {
            Store::Dir(d) => Wal::open(d, after, segment_bytes, replay),
            Store::Redis(r) => r.open_log(after, replay),
        }
    }

    /// The snapshot sequences kept, newest first.
    pub fn snapshot_seqs(&self) -> io::Result<Vec<u64>> {
        match self {
            Store::Dir(d) => match snapshots(d) {
                Ok(v) => Ok(v.into_iter().map(|s| s.0).collect()),
                // A new directory: created when the log opens.
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
                Err(e) => Err(e),
            },
            Store::Redis(r) => r.snapshot_seqs(),
        }
    }

    /// The bytes of snapshot `seq`.
    pub fn read_snapshot(&self, seq: u64) -> io::Result<Vec<u8>> {
        match self {
            Store::Dir(d) => fs::read(d.join(format!("snapshot-{seq:020}.bin"))),
            Store::Redis(r) => r.read_snapshot(seq),
        }
    }

    /// Writes snapshot `seq` atomically, keeps the two newest and drops the
    /// log the older one covers. Returns where it went.
    pub fn write_snapshot(&self, seq: u64, bytes: &[u8]) -> io::Result<String> {
        match self {
            Store::Dir(d) => write_snapshot(d, seq, bytes).map(|p| p.display().to_string()),
            Store::Redis(r) => r.write_snapshot(seq, bytes),
        }
    }

    /// See [`recovery_horizon`].
    pub fn recovery_horizon(&self) -> u64 {
        match self {
            Store::Dir(d) => recovery_horizon(d),
            Store::Redis(r) => r.recovery_horizon(),
        }
    }

    /// Removes snapshots a crash left half-written; returns how many.
    pub fn remove_unfinished(&self) -> usize {
        match self {
            Store::Dir(d) => {
                let mut n = 0;
                if let Ok(rd) = fs::read_dir(d) {
                    for e in rd.flatten() {
                        if e.file_name().to_string_lossy().ends_with(".bin.tmp")
                            && fs::remove_file(e.path()).is_ok()
                        {
                            n += 1;
                        }
                    }
                }
                n
            }
            Store::Redis(r) => r.remove_unfinished(),
        }
    }
}

enum Backend {
    File {
        dir: PathBuf,
        file: File,
        seg_len: u64,
        segment_bytes: u64,
    },
    Redis(super::redis_store::RedisLog),
}

/// The writing end of a log: writes group commits and syncs them.
pub struct LogWriter(Backend);

impl LogWriter {
    /// Writes `bytes` (framed records, the first with sequence `first_seq`)
    /// and waits until they are on disk (one `sync_data`), rotating to a new
    /// segment first when the current one is over its size.
    pub fn write(&mut self, first_seq: u64, bytes: &[u8]) -> Result<(), WalError> {
        if bytes.is_empty() {
            return Ok(());
        }
        match &mut self.0 {
            Backend::File {
                dir,
                file,
                seg_len,
                segment_bytes,
            } => {
                if *seg_len >= *segment_bytes {
                    *file = new_segment(dir, first_seq)?;
                    *seg_len = SEGMENT_MAGIC.len() as u64;
                }
                file.write_all(bytes).map_err(io_err(dir))?;
                file.sync_data().map_err(io_err(dir))?;
                *seg_len += bytes.len() as u64;
            }
            Backend::Redis(log) => log.append(first_seq, bytes)?,
        }
        Ok(())
    }
}

/// One shard's log, open for appending.
pub struct Wal {
    store: Store,
    /// `None` once detached ([`Wal::detach_writer`]).
    writer: Option<LogWriter>,
    next_seq: u64,
    buf: Vec<u8>,
    buf_first: u64,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("store", &self.store.to_string())
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

impl Wal {
    /// Opens (creating if needed) the log in `dir`, calls `replay` with every
    /// record whose sequence is above `after` (the snapshot's), cuts a torn
    /// tail, and gets ready to append after the last record.
    pub fn open(
        dir: &Path,
        after: u64,
        segment_bytes: u64,
        mut replay: impl FnMut(&Record),
    ) -> Result<(Wal, Recovered), WalError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let segs = segments(dir).map_err(io_err(dir))?;
        let mut rec = Recovered {
            last_seq: after,
            ..Recovered::default()
        };
        let mut last: Option<u64> = None;
        let n = segs.len();
        // One buffer for every segment: a fresh 64 MiB block per segment
        // costs its page faults and zeroing each time.
        let mut bytes = Vec::new();
        for (i, seg) in segs.iter().enumerate() {
            if let Some(next) = segs.get(i + 1).map(|s| s.first_seq) {
                if next <= after.saturating_add(1) && seg.first_seq <= after.saturating_add(1) {
                    // Every record here is covered by the snapshot (kept for
                    // the older snapshot's sake): not read. `state verify`
                    // checks it; a fallback to the older snapshot reads it.
                    last = Some(next - 1);
                    continue;
                }
            }
            bytes.clear();
            {
                use std::io::Read as _;
                File::open(&seg.path)
                    .and_then(|mut f| f.read_to_end(&mut bytes))
                    .map_err(io_err(&seg.path))?;
            }
            if let Some(l) = last {
                if seg.first_seq != l + 1 {
                    return Err(WalError::Corrupt {
                        path: seg.path.clone(),
                        offset: 0,
                        reason: format!(
                            "segment starts at sequence {} but the previous one ends at {l}",
                            seg.first_seq
                        ),
                    });
                }
            } else if seg.first_seq > after + 1 {
                return Err(WalError::Corrupt {
                    path: seg.path.clone(),
                    offset: 0,
                    reason: format!(
                        "the log starts at sequence {} but the snapshot ends at {after}: records are missing",
                        seg.first_seq
                    ),
                });
            }
            let scan = scan_segment(&bytes, seg.first_seq);
            rec.segments += 1;
            for r in &scan.records {
                if r.seq > after {
                    replay(r);
                    rec.replayed += 1;
                }
            }
            last = Some(scan.records.last().map_or(seg.first_seq - 1, |r| r.seq));
            if let Some(d) = scan.damage {
                if d.followed || i + 1 != n {
                    return Err(WalError::Corrupt {
                        path: seg.path.clone(),
                        offset: d.offset,
                        reason: d.reason,
                    });
                }
                let dropped = bytes.len() as u64 - scan.good_end;
                let f = OpenOptions::new()
                    .write(true)
                    .open(&seg.path)
                    .map_err(io_err(&seg.path))?;
                if scan.good_end == 0 {
                    // A torn creation: write the magic again.
                    f.set_len(0).map_err(io_err(&seg.path))?;
                    (&f).write_all(SEGMENT_MAGIC).map_err(io_err(&seg.path))?;
                } else {
                    f.set_len(scan.good_end).map_err(io_err(&seg.path))?;
                }
                f.sync_all().map_err(io_err(&seg.path))?;
                rec.truncated = Some((seg.path.clone(), d.offset, dropped, d.reason));
            }
        }
        rec.last_seq = last.unwrap_or(after).max(after);
        let next_seq = rec.last_seq + 1;
        let (file, seg_len) = match segs.last() {
            Some(seg) => {
                let f = OpenOptions::new()
                    .append(true)
                    .open(&seg.path)
                    .map_err(io_err(&seg.path))?;
                let len = f.metadata().map_err(io_err(&seg.path))?.len();
                (f, len)
            }
            None => (new_segment(dir, next_seq)?, SEGMENT_MAGIC.len() as u64),
        };
        Ok((
            Wal {
                store: Store::Dir(dir.to_path_buf()),
                writer: Some(LogWriter(Backend::File {
                    dir: dir.to_path_buf(),
                    file,
                    seg_len,
                    segment_bytes,
                })),
                next_seq,
                buf: Vec::with_capacity(64 * 1024),
                buf_first: next_seq,
            },
            rec,
        ))
    }

    /// A log appending to Redis after `last_seq`.
    pub(super) fn redis(store: Store, log: super::redis_store::RedisLog, last_seq: u64) -> Wal {
        Wal {
            store,
            writer: Some(LogWriter(Backend::Redis(log))),
            next_seq: last_seq + 1,
            buf: Vec::with_capacity(64 * 1024),
            buf_first: last_seq + 1,
        }
    }

    /// Buffers one record; returns its sequence number.
    pub fn append(&mut self, kind: u8, payload: &[u8]) -> u64 {
        let seq = self.next_seq;
        if self.buf.is_empty() {
            self.buf_first = seq;
        }
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; 8]);
        self.buf
            .extend_from_slice(&(payload.len().min(MAX_PAYLOAD) as u32).to_le_bytes());
        self.buf.extend_from_slice(&seq.to_le_bytes());
        self.buf.push(kind);
        self.buf
            .extend_from_slice(&payload[..payload.len().min(MAX_PAYLOAD)]);
        let sum = xxh3_64(&self.buf[start + 8..]);
        self.buf[start..start + 8].copy_from_slice(&sum.to_le_bytes());
        self.next_seq += 1;
        seq
    }

    /// Where the buffer ends now (for [`Wal::unappend`]).
    pub fn mark(&self) -> (usize, u64) {
        (self.buf.len(), self.next_seq)
    }

    /// Drops what was buffered since `mark` (a record that turned out not to
    /// be needed, e.g. a duplicate event).
    pub fn unappend(&mut self, mark: (usize, u64)) {
        self.buf.truncate(mark.0);
        self.next_seq = mark.1;
    }

    /// The last sequence number given out.
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// Writes the buffered records and waits until they are on disk (one
    /// `sync_data`), rotating to a new segment first when the current one is
    /// over its size. An error once the writer is detached.
    pub fn commit(&mut self) -> Result<(), WalError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let Some(w) = self.writer.as_mut() else {
            return Err(WalError::Io {
                path: PathBuf::from(self.store.to_string()),
                source: io::Error::other("the log's writer was handed to its own thread"),
            });
        };
        w.write(self.buf_first, &self.buf)?;
        self.buf.clear();
        Ok(())
    }

    /// Hands out the writing end, to run in a thread of its own; from then
    /// on batches leave through [`Wal::take_batch`].
    pub fn detach_writer(&mut self) -> Option<LogWriter> {
        self.writer.take()
    }

    /// The records buffered since the last call: `(first seq, bytes)`, or
    /// `None` when nothing is buffered.
    pub fn take_batch(&mut self) -> Option<(u64, Vec<u8>)> {
        if self.buf.is_empty() {
            return None;
        }
        let cap = self.buf.capacity();
        let bytes = std::mem::replace(&mut self.buf, Vec::with_capacity(cap.min(1 << 20)));
        Some((self.buf_first, bytes))
    }

    /// Where the log lives.
    pub fn store(&self) -> &Store {
        &self.store
    }
}

fn new_segment(dir: &Path, first_seq: u64) -> Result<File, WalError> {
    let path = segment_path(dir, first_seq);
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .map_err(io_err(&path))?;
    f.write_all(SEGMENT_MAGIC).map_err(io_err(&path))?;
    f.sync_all().map_err(io_err(&path))?;
    sync_dir(dir).map_err(io_err(dir))?;
    let f = OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(io_err(&path))?;
    Ok(f)
}

/// Tests: appends `n` events `{"n":i}` to `w`, committing every `batch`
/// and at the end.
#[cfg(test)]
pub(crate) fn test_events(w: &mut Wal, n: usize, batch: usize) {
    for i in 0..n {
        w.append(KIND_EVENT, format!("{{\"n\":{i}}}").as_bytes());
        if i % batch == batch - 1 {
            w.commit().unwrap();
        }
    }
    w.commit().unwrap();
}

/// A new empty directory for a test's log: `redcloud-<kind>-<name>-…` under
/// the temporary directory.
#[cfg(test)]
pub(crate) fn test_dir(kind: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "redcloud-{kind}-{name}-{}-{:?}",
        std::process::id(),
        std::time::SystemTime::now()
    ));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        test_dir("wal", name)
    }

    fn read_all(dir: &Path, after: u64) -> Result<(Vec<Record>, Recovered), WalError> {
        let mut v = Vec::new();
        let (_, r) = Wal::open(dir, after, 1 << 20, |r| v.push(r.clone()))?;
        Ok((v, r))
    }

    fn write(dir: &Path, n: usize, seg: u64, batch: usize) {
        let (mut w, _) = Wal::open(dir, 0, seg, |_| {}).unwrap();
        test_events(&mut w, n, batch);
    }

    #[test]
    fn round_trip_and_reopen_appends() {
        let d = tmp("rt");
        write(&d, 100, 1 << 20, 7);
        let (v, r) = read_all(&d, 0).unwrap();
        assert_eq!(v.len(), 100);
        assert_eq!(r.last_seq, 100);
        assert!(r.truncated.is_none());
        assert_eq!(v[41].payload, b"{\"n\":41}");
        assert!(v.iter().enumerate().all(|(i, r)| r.seq == i as u64 + 1));
        // Appending after a reopen continues the sequence.
        {
            let (mut w, _) = Wal::open(&d, 0, 1 << 20, |_| {}).unwrap();
            assert_eq!(w.append(KIND_ADVANCE, &5i64.to_le_bytes()), 101);
            let m = w.mark();
            w.append(KIND_EVENT, b"dup");
            w.unappend(m);
            w.commit().unwrap();
        }
        let (v, _) = read_all(&d, 95).unwrap();
        assert_eq!(v.len(), 6);
        assert_eq!(v[5].kind, KIND_ADVANCE);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn torn_tail_is_truncated_and_reported() {
        let d = tmp("torn");
        write(&d, 10, 1 << 20, 3);
        let seg = segments(&d).unwrap().pop().unwrap().path;
        let full = fs::read(&seg).unwrap();
        // Cut the last record in half.
        let cut = full.len() - 4;
        fs::write(&seg, &full[..cut]).unwrap();
        let (v, r) = read_all(&d, 0).unwrap();
        assert_eq!(v.len(), 9);
        let (p, _, dropped, _) = r.truncated.clone().unwrap();
        assert_eq!(p, seg);
        assert_eq!(dropped, (cut - (full.len() - HEADER_LEN - 7)) as u64);
        // The file was cut: a second open sees a clean log and appends at 10.
        let (mut w, r) = Wal::open(&d, 0, 1 << 20, |_| {}).unwrap();
        assert!(r.truncated.is_none());
        assert_eq!(w.append(KIND_EVENT, b"x"), 10);
        w.commit().unwrap();
        // Garbage appended after good records is a torn tail too.
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[0xAB; 37]).unwrap();
        drop(f);
        let (v, r) = read_all(&d, 0).unwrap();
        assert_eq!(v.len(), 10);
        assert!(r.truncated.is_some());
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn corruption_in_the_middle_stops_and_names_the_offset() {
        let d = tmp("mid");
        write(&d, 10, 1 << 20, 10);
        let seg = segments(&d).unwrap().pop().unwrap().path;
        let mut bytes = fs::read(&seg).unwrap();
        let rec = HEADER_LEN + 7; // `{"n":0}` .. `{"n":9}` are 7 bytes
        let third = SEGMENT_MAGIC.len() + 2 * rec;
        bytes[third + HEADER_LEN + 2] ^= 0x40;
        fs::write(&seg, &bytes).unwrap();
        match read_all(&d, 0) {
            Err(WalError::Corrupt { path, offset, .. }) => {
                assert_eq!(path, seg);
                assert_eq!(offset, third as u64);
            }
            other => panic!("{other:?}"),
        }
        let scan = scan_segment(&bytes, 1);
        assert_eq!(scan.records.len(), 2);
        assert!(scan.damage.unwrap().followed);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn segments_rotate_and_snapshots_remove_covered_ones() {
        let d = tmp("rot");
        write(&d, 200, 256, 5);
        let segs = segments(&d).unwrap();
        assert!(segs.len() > 5, "{}", segs.len());
        let (v, r) = read_all(&d, 0).unwrap();
        assert_eq!(v.len(), 200);
        assert_eq!(r.segments, segs.len());
        // Two snapshots: segments wholly before the older one go.
        write_snapshot(&d, 50, b"first").unwrap();
        write_snapshot(&d, 120, b"second").unwrap();
        let left = segments(&d).unwrap();
        assert!(left.len() < segs.len());
        assert!(left[0].first_seq <= 51, "{:?}", left[0]);
        let (v, _) = read_all(&d, 50).unwrap();
        assert_eq!(v.first().map(|r| r.seq), Some(51));
        assert_eq!(v.len(), 150);
        write_snapshot(&d, 190, b"third").unwrap();
        assert_eq!(snapshots(&d).unwrap().len(), 2);
        // Missing records between a snapshot and the log are corruption.
        assert!(matches!(read_all(&d, 10), Err(WalError::Corrupt { .. })));
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn segments_the_snapshot_covers_are_not_read() {
        let d = tmp("skip");
        write(&d, 200, 256, 5);
        let segs = segments(&d).unwrap();
        // Damage the middle of a segment wholly before seq 150.
        let covered = segs
            .windows(2)
            .find(|w| w[1].first_seq <= 151 && w[0].first_seq > 1)
            .map(|w| w[0].path.clone())
            .unwrap();
        let mut bytes = fs::read(&covered).unwrap();
        let at = SEGMENT_MAGIC.len() + HEADER_LEN + 2;
        bytes[at] ^= 0x40;
        fs::write(&covered, &bytes).unwrap();
        // From the snapshot at 150: only the segments holding 151.. are read,
        // and the records after 150 all come back.
        let (v, r) = read_all(&d, 150).unwrap();
        assert_eq!(v.len(), 50);
        assert_eq!(v.first().map(|r| r.seq), Some(151));
        let read = segs.iter().filter(|s| {
            let next = segs
                .iter()
                .find(|n| n.first_seq > s.first_seq)
                .map(|n| n.first_seq);
            next.is_none_or(|n| n > 151)
        });
        assert_eq!(r.segments, read.count());
        assert!(r.segments < segs.len());
        // From the start (an older snapshot), the damage is found.
        assert!(matches!(read_all(&d, 0), Err(WalError::Corrupt { .. })));
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for len in 0..300 {
            let mut b = SEGMENT_MAGIC.to_vec();
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b.push(x as u8);
            }
            let s = scan_segment(&b, 1);
            assert!(s.records.is_empty() || s.records[0].seq == 1);
        }
    }
}
