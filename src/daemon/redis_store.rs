//! `[daemon] durability = "redis"`: the shards' write-ahead logs, their
//! snapshots and the outbox kept in Redis instead of `data_dir`, for hosts
//! without a disk of their own, and laid out per partition for the scale-out
//! to come (several daemons, each owning some partitions).
//!
//! Keys, under `[daemon] state_prefix` (`P`), per partition `part`
//! (`shard-<n>` or `outbox`):
//!
//! | key | type | what |
//! |---|---|---|
//! | `P:meta` | hash | `format` = 1, `shards` = the partition count the state was written with |
//! | `P:owner` | string | the token of the daemon that owns the state, with a 30 s expiry it renews every 10 s |
//! | `P:part:log` | stream | one entry per group commit: id `<first seq>-0`, field `r` = the records, framed exactly as in a log segment file ([`super::wal`]) |
//! | `P:part:snaps` | sorted set | score = a snapshot's sequence, member = `<seq>:<chunks>:<xxh3-64 hex>`; only finished snapshots are listed |
//! | `P:part:snap:<seq>:<i>` | string | chunk `i` (4 MiB at most; earlier versions wrote 32 MiB ones, read the same) of that snapshot |
//!
//! A group commit is one `XADD`; it is acknowledged (and events are acked to
//! their sources) once Redis answered. How long that lasts is Redis's own
//! persistence: with `appendonly yes` and `appendfsync always` it is as
//! durable as the local log; with `everysec` a crash of the Redis host can
//! lose the last second (the daemon warns at start when `appendonly` is off).
//! A snapshot is written chunk by chunk and then listed in `snaps`; a crash
//! in between leaves unlisted chunks, removed at the next start. After a
//! snapshot the two newest are kept, and the log entries wholly covered by
//! the older one are trimmed (`XTRIM MINID`). A recovery reads the log from
//! the entry holding the first record after its snapshot (entry ids are
//! `<first seq>-0`), not the entries kept for the older snapshot's sake.
//!
//! `redcloud state inspect|verify --redis` read these keys through
//! [`StateView`] and the reading methods of [`RedisPart`] (the log a page of
//! [`PAGE`] entries at a time), without the owner key and writing nothing.
//!
//! Ownership: `P:owner` is taken with `SET NX PX` at start, so a second
//! daemon on the same prefix refuses to start (the data directory's lock);
//! a daemon that finds its token gone (it stalled past the expiry and
//! another took over) exits at once rather than write on.

use std::io;
use std::time::Duration;

use redis::{Commands, Connection, Value};
use tracing::{error, warn};
use xxhash_rust::xxh3::xxh3_64;

use super::wal::{frame_at, Record, Recovered, Store, Wal, WalError};

/// Largest snapshot chunk. Reading 600 MB took 0.42–0.44 s in 4 MiB
/// chunks and 0.87–0.90 s in 32 MiB ones (redis-rs, Redis on the same
/// host). Snapshots written with other chunk sizes read the same: the
/// listing gives the count.
pub const CHUNK: usize = 4 << 20;
/// Expiry of the owner key.
pub const OWNER_TTL: Duration = Duration::from_secs(30);

fn io(e: redis::RedisError) -> io::Error {
    io::Error::other(e.to_string())
}

fn connect(client: &redis::Client) -> redis::RedisResult<Connection> {
    let c = client.get_connection_with_timeout(Duration::from_secs(5))?;
    // Deliberate timeouts: nothing here blocks on the server side, and a
    // snapshot of a few hundred MB takes seconds to move.
    c.set_read_timeout(Some(Duration::from_secs(60)))?;
    c.set_write_timeout(Some(Duration::from_secs(60)))?;
    Ok(c)
}

/// One partition's keys.
#[derive(Clone)]
pub struct RedisPart {
    client: redis::Client,
    key: String,
}

impl std::fmt::Debug for RedisPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL: it may hold a password.
        f.debug_struct("RedisPart").field("key", &self.key).finish()
    }
}

/// The log of a partition, open for appending.
pub struct RedisLog {
    conn: Connection,
    stream: String,
}

impl RedisLog {
    /// Appends one group commit (framed records starting at `first_seq`).
    pub fn append(&mut self, first_seq: u64, bytes: &[u8]) -> Result<(), WalError> {
        let r: redis::RedisResult<String> = redis::cmd("XADD")
            .arg(&self.stream)
            .arg(format!("{first_seq}-0"))
            .arg("r")
            .arg(bytes)
            .query(&mut self.conn);
        r.map(|_| ()).map_err(|e| WalError::Io {
            path: self.stream.clone().into(),
            source: io(e),
        })
    }
}

fn bulk(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        _ => None,
    }
}

/// A log entry: its id and its field `r` (`None` if it has none).
type Entry = (String, Option<Vec<u8>>);

/// A listed snapshot: sequence, chunks, xxh3-64 of their concatenation.
pub type Listed = (u64, usize, u64);

/// `XRANGE` entries.
fn parse_range(v: Value) -> Result<Vec<Entry>, String> {
    let Value::Array(entries) = v else {
        return Err("XRANGE: not an array".into());
    };
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let Value::Array(pair) = e else {
            return Err("XRANGE: bad entry".into());
        };
        let (Some(id), Some(Value::Array(fields))) = (pair.first(), pair.get(1)) else {
            return Err("XRANGE: bad entry".into());
        };
        let id = bulk(id)
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .ok_or("XRANGE: bad id")?;
        let mut data = None;
        for kv in fields.chunks(2) {
            if kv.len() == 2 && bulk(&kv[0]) == Some(b"r") {
                data = bulk(&kv[1]).map(<[u8]>::to_vec);
            }
        }
        out.push((id, data));
    }
    Ok(out)
}

/// A snapshot member, `<seq>:<chunks>:<xxh3-64 hex>`.
fn parse_member(m: &str) -> Option<Listed> {
    let mut it = m.split(':');
    let seq = it.next()?.parse().ok()?;
    let chunks = it.next()?.parse().ok()?;
    let sum = u64::from_str_radix(it.next()?, 16).ok()?;
    Some((seq, chunks, sum))
}

/// Log entries per `XRANGE` when reading a log.
pub const PAGE: usize = 512;

/// What is wrong with a listed snapshot ([`RedisPart::check_snapshot`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotFault {
    /// Chunk `chunk` (key `key`) does not exist.
    Missing {
        /// The chunk's key.
        key: String,
        /// Its index.
        chunk: usize,
    },
    /// The chunks' xxh3-64 is `got`, not the listed one.
    Checksum {
        /// What the chunks hash to.
        got: u64,
    },
}

impl RedisPart {
    /// Partition `part` under `prefix`.
    pub fn new(client: redis::Client, prefix: &str, part: &str) -> RedisPart {
        RedisPart {
            client,
            key: format!("{prefix}:{part}"),
        }
    }

    /// The partition's key prefix.
    pub fn key(&self) -> &str {
        &self.key
    }

    fn stream(&self) -> String {
        format!("{}:log", self.key)
    }

    fn snaps(&self) -> String {
        format!("{}:snaps", self.key)
    }

    fn chunk(&self, seq: u64, i: usize) -> String {
        format!("{}:snap:{seq}:{i}", self.key)
    }

    fn err(&self, e: impl std::fmt::Display) -> WalError {
        WalError::Io {
            path: self.stream().into(),
            source: io::Error::other(e.to_string()),
        }
    }

    /// Calls `f` with every entry of the log from entry `from` on (`"-"`:
    /// from the first), oldest first (its id and its field `r`, `None` if it
    /// has none), reading [`PAGE`] entries per `XRANGE`. `fail` turns a
    /// Redis error into the caller's error; `f`'s first error ends the read.
    /// Reads only.
    fn entries<E>(
        &self,
        conn: &mut Connection,
        from: &str,
        fail: impl Fn(io::Error) -> E,
        mut f: impl FnMut(&str, Option<Vec<u8>>) -> Result<(), E>,
    ) -> Result<(), E> {
        let stream = self.stream();
        let mut start = from.to_string();
        loop {
            let v: Value = redis::cmd("XRANGE")
                .arg(&stream)
                .arg(&start)
                .arg("+")
                .arg("COUNT")
                .arg(PAGE)
                .query(conn)
                .map_err(|e| fail(io(e)))?;
            let page = parse_range(v).map_err(|e| fail(io::Error::other(e)))?;
            let Some((last_id, _)) = page.last() else {
                return Ok(());
            };
            start = format!("({last_id}");
            for (id, bytes) in page {
                f(&id, bytes)?;
            }
        }
    }

    /// [`RedisPart::entries`] on a connection of its own, for `redcloud
    /// state` (read-only).
    pub fn each_log_entry<E>(
        &self,
        fail: impl Fn(io::Error) -> E,
        f: impl FnMut(&str, Option<Vec<u8>>) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut conn = connect(&self.client).map_err(|e| fail(io(e)))?;
        self.entries(&mut conn, "-", fail, f)
    }

    /// The id of the entry that holds record `seq`: the newest whose first
    /// record (its id is `<first seq>-0`) is at most `seq`. `None` if every
    /// entry starts after it (or the log is empty).
    fn entry_holding(&self, conn: &mut Connection, seq: u64) -> io::Result<Option<String>> {
        let v: Value = redis::cmd("XREVRANGE")
            .arg(self.stream())
            .arg(seq)
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query(conn)
            .map_err(io)?;
        let page = parse_range(v).map_err(io::Error::other)?;
        Ok(page.into_iter().next().map(|e| e.0))
    }

    /// The id of the log's first entry now, if any.
    pub fn first_log_id(&self) -> io::Result<Option<String>> {
        let mut conn = connect(&self.client).map_err(io)?;
        let v: Value = redis::cmd("XRANGE")
            .arg(self.stream())
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(1)
            .query(&mut conn)
            .map_err(io)?;
        let page = parse_range(v).map_err(io::Error::other)?;
        Ok(page.into_iter().next().map(|e| e.0))
    }

    /// Reads the log, calls `replay` for every record after `after`, and
    /// opens it for appending after the last one.
    pub fn open_log(
        &self,
        after: u64,
        mut replay: impl FnMut(&Record),
    ) -> Result<(Wal, Recovered), WalError> {
        let mut conn = connect(&self.client).map_err(|e| self.err(e))?;
        let stream = self.stream();
        let mut rec = Recovered {
            last_seq: after,
            ..Recovered::default()
        };
        let mut expect: Option<u64> = None;
        // The entries a snapshot covers are kept for the older snapshot's
        // sake: read from the one holding the first record after it.
        let from = self
            .entry_holding(&mut conn, after.saturating_add(1))
            .map_err(|e| self.err(e))?
            .unwrap_or_else(|| "-".to_string());
        self.entries(
            &mut conn,
            &from,
            |e| self.err(e),
            |id, bytes| {
                let bytes = bytes
                    .ok_or_else(|| self.err(format!("entry {id}: log entry without field r")))?;
                rec.segments += 1;
                let mut off = 0;
                while off < bytes.len() {
                    let (r, n) = frame_at(&bytes, off).map_err(|reason| WalError::Corrupt {
                        path: format!("{stream} entry {id}").into(),
                        offset: off as u64,
                        reason,
                    })?;
                    let want = expect.unwrap_or(r.seq);
                    if expect.is_none() && r.seq > after + 1 {
                        return Err(WalError::Corrupt {
                            path: format!("{stream} entry {id}").into(),
                            offset: 0,
                            reason: format!(
                                "the log starts at sequence {} but the snapshot ends at {after}: records are missing",
                                r.seq
                            ),
                        });
                    }
                    if r.seq != want {
                        return Err(WalError::Corrupt {
                            path: format!("{stream} entry {id}").into(),
                            offset: off as u64,
                            reason: format!("sequence {} where {want} was expected", r.seq),
                        });
                    }
                    if r.seq > after {
                        replay(&r);
                        rec.replayed += 1;
                    }
                    expect = Some(r.seq + 1);
                    off += n;
                }
                Ok(())
            },
        )?;
        rec.last_seq = expect.map_or(after, |e| e - 1).max(after);
        let log = RedisLog { conn, stream };
        let last = rec.last_seq;
        Ok((Wal::redis(Store::Redis(self.clone()), log, last), rec))
    }

    fn members(&self, conn: &mut Connection) -> io::Result<Vec<String>> {
        redis::cmd("ZREVRANGE")
            .arg(self.snaps())
            .arg(0)
            .arg(-1)
            .query(conn)
            .map_err(io)
    }

    fn listed(&self, conn: &mut Connection) -> io::Result<Vec<Listed>> {
        Ok(self
            .members(conn)?
            .iter()
            .filter_map(|m| parse_member(m))
            .collect())
    }

    /// Every member of `snaps`, newest first, with what it says (`None` if
    /// it is not `<seq>:<chunks>:<xxh3 hex>`), for `redcloud state`.
    pub fn snapshot_members(&self) -> io::Result<Vec<(String, Option<Listed>)>> {
        let mut conn = connect(&self.client).map_err(io)?;
        Ok(self
            .members(&mut conn)?
            .into_iter()
            .map(|m| {
                let parsed = parse_member(&m);
                (m, parsed)
            })
            .collect())
    }

    /// The key of the sorted set listing the snapshots.
    pub fn snaps_key(&self) -> String {
        self.snaps()
    }

    /// The key of the log stream.
    pub fn log_key(&self) -> String {
        self.stream()
    }

    /// Bytes of each chunk of snapshot `seq` (`None`: the key is missing),
    /// without reading them.
    pub fn chunk_sizes(&self, seq: u64, chunks: usize) -> io::Result<Vec<Option<u64>>> {
        let mut conn = connect(&self.client).map_err(io)?;
        let mut pipe = redis::pipe();
        for i in 0..chunks {
            pipe.cmd("EXISTS").arg(self.chunk(seq, i));
            pipe.cmd("STRLEN").arg(self.chunk(seq, i));
        }
        let v: Vec<u64> = pipe.query(&mut conn).map_err(io)?;
        Ok(v.chunks(2).map(|p| (p[0] == 1).then_some(p[1])).collect())
    }

    /// Reads the chunks of the listed snapshot (`seq`, `chunks`, `sum`) and
    /// checks their concatenation against `sum`. The outer error is Redis's,
    /// the inner one what is wrong with the snapshot.
    pub fn check_snapshot(
        &self,
        seq: u64,
        chunks: usize,
        sum: u64,
    ) -> io::Result<Result<Vec<u8>, SnapshotFault>> {
        let mut conn = connect(&self.client).map_err(io)?;
        self.read_chunks(&mut conn, seq, chunks, sum)
    }

    fn read_chunks(
        &self,
        conn: &mut Connection,
        seq: u64,
        chunks: usize,
        sum: u64,
    ) -> io::Result<Result<Vec<u8>, SnapshotFault>> {
        let mut out = Vec::new();
        for i in 0..chunks {
            let part: Option<Vec<u8>> = conn.get(self.chunk(seq, i)).map_err(io)?;
            let Some(part) = part else {
                return Ok(Err(SnapshotFault::Missing {
                    key: self.chunk(seq, i),
                    chunk: i,
                }));
            };
            out.extend_from_slice(&part);
        }
        let got = xxh3_64(&out);
        if got != sum {
            return Ok(Err(SnapshotFault::Checksum { got }));
        }
        Ok(Ok(out))
    }

    /// Snapshot sequences, newest first.
    pub fn snapshot_seqs(&self) -> io::Result<Vec<u64>> {
        let mut conn = connect(&self.client).map_err(io)?;
        Ok(self.listed(&mut conn)?.into_iter().map(|s| s.0).collect())
    }

    /// The bytes of snapshot `seq`, checked against the listed checksum.
    pub fn read_snapshot(&self, seq: u64) -> io::Result<Vec<u8>> {
        let mut conn = connect(&self.client).map_err(io)?;
        let Some((_, chunks, sum)) = self.listed(&mut conn)?.into_iter().find(|s| s.0 == seq)
        else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{}: no snapshot {seq}", self.snaps()),
            ));
        };
        match self.read_chunks(&mut conn, seq, chunks, sum)? {
            Ok(bytes) => Ok(bytes),
            Err(SnapshotFault::Missing { key, .. }) => {
                Err(io::Error::other(format!("{key}: chunk missing")))
            }
            Err(SnapshotFault::Checksum { .. }) => Err(io::Error::other(format!(
                "{}: snapshot {seq} fails its checksum",
                self.snaps()
            ))),
        }
    }

    /// Writes snapshot `seq` (chunks, then listed), keeps the two newest and
    /// trims the log the older one covers.
    pub fn write_snapshot(&self, seq: u64, bytes: &[u8]) -> io::Result<String> {
        let mut conn = connect(&self.client).map_err(io)?;
        let chunks = bytes.len().div_ceil(CHUNK).max(1);
        for i in 0..chunks {
            let part = &bytes[(i * CHUNK).min(bytes.len())..((i + 1) * CHUNK).min(bytes.len())];
            let () = conn.set(self.chunk(seq, i), part).map_err(io)?;
        }
        let member = format!("{seq}:{chunks}:{:016x}", xxh3_64(bytes));
        let () = redis::cmd("ZADD")
            .arg(self.snaps())
            .arg(seq)
            .arg(&member)
            .query(&mut conn)
            .map_err(io)?;
        let listed = self.listed(&mut conn)?;
        for &(old, n, _) in listed.iter().skip(2) {
            self.drop_snapshot(&mut conn, old, n)?;
        }
        if let Some(&(keep, _, _)) = listed.get(1).or(listed.first()) {
            self.trim(&mut conn, keep)?;
        }
        Ok(format!("{} ({chunks} chunks)", self.chunk(seq, 0)))
    }

    fn drop_snapshot(&self, conn: &mut Connection, seq: u64, chunks: usize) -> io::Result<()> {
        let snaps = self.snaps();
        let members: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(&snaps)
            .arg(seq)
            .arg(seq)
            .query(conn)
            .map_err(io)?;
        for m in members {
            let () = redis::cmd("ZREM")
                .arg(&snaps)
                .arg(m)
                .query(conn)
                .map_err(io)?;
        }
        for i in 0..chunks {
            let _: i64 = conn.del(self.chunk(seq, i)).map_err(io)?;
        }
        Ok(())
    }

    /// Drops the log entries whose every record is at most `seq`.
    fn trim(&self, conn: &mut Connection, seq: u64) -> io::Result<()> {
        // The entry holding `seq + 1` (the newest starting at or before it)
        // stays; every entry before it holds only records up to `seq`.
        if let Some(id) = self.entry_holding(conn, seq + 1)? {
            let _: i64 = redis::cmd("XTRIM")
                .arg(self.stream())
                .arg("MINID")
                .arg(&id)
                .query(conn)
                .map_err(io)?;
        }
        Ok(())
    }

    /// The older of the two snapshots kept (0 if none).
    pub fn recovery_horizon(&self) -> u64 {
        self.snapshot_seqs()
            .ok()
            .and_then(|s| s.get(1).or(s.first()).copied())
            .unwrap_or(0)
    }

    /// Deletes chunks of snapshots that were never listed (a crash while
    /// writing one); returns how many keys went.
    pub fn remove_unfinished(&self) -> usize {
        let Ok(mut conn) = connect(&self.client) else {
            return 0;
        };
        let Ok(listed) = self.listed(&mut conn) else {
            return 0;
        };
        let pattern = format!("{}:snap:*", self.key);
        let keys: Vec<String> = match conn.scan_match::<_, String>(&pattern) {
            Ok(it) => it.filter_map(Result::ok).collect(),
            Err(_) => return 0,
        };
        let mut n = 0;
        for k in keys {
            let seq = k.rsplit(':').nth(1).and_then(|s| s.parse::<u64>().ok());
            if seq.is_some_and(|s| !listed.iter().any(|l| l.0 == s))
                && conn.del::<_, i64>(&k).is_ok()
            {
                n += 1;
            }
        }
        n
    }
}

/// The state under a prefix as `redcloud state inspect|verify --redis` sees
/// it: opened without claiming it (no owner key taken, nothing written), so
/// the daemon may be running.
pub struct StateView {
    client: redis::Client,
    prefix: String,
    /// `P:meta` `format`, if set.
    pub format: Option<String>,
    /// `P:meta` `shards` as written (it should be a number).
    pub shards: Option<String>,
    /// The owner's token and the milliseconds until it expires (`-1`: no
    /// expiry), if a daemon holds the state.
    pub owner: Option<(String, i64)>,
    /// Whether the outbox has a log or snapshots.
    pub has_outbox: bool,
}

impl std::fmt::Debug for StateView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL: it may hold a password.
        f.debug_struct("StateView")
            .field("prefix", &self.prefix)
            .field("shards", &self.shards)
            .finish_non_exhaustive()
    }
}

/// Where a client connects, for messages: `host:port` (or the socket's
/// path) and the database if not 0; never the user name or password.
fn describe(client: &redis::Client) -> String {
    let info = client.get_connection_info();
    match info.redis_settings().db() {
        0 => info.addr().to_string(),
        db => format!("{} db {db}", info.addr()),
    }
}

impl StateView {
    /// Connects and reads `P:meta`, `P:owner` and whether the outbox
    /// exists. An error if there is no `P:meta` (no state under `prefix`).
    /// Errors never show the URL.
    pub fn open(url: &str, prefix: &str) -> anyhow::Result<StateView> {
        let client = redis::Client::open(url).map_err(|e| anyhow::anyhow!("--redis: {e}"))?;
        let place = describe(&client);
        let mut conn = connect(&client)
            .map_err(|e| anyhow::anyhow!("cannot connect to Redis at {place}: {e}"))?;
        let meta = format!("{prefix}:meta");
        let fields: std::collections::HashMap<String, String> = conn
            .hgetall(&meta)
            .map_err(|e| anyhow::anyhow!("{place}: {meta}: {e}"))?;
        if fields.is_empty() {
            anyhow::bail!(
                "redis {place}: no redcloud state under prefix \"{prefix}\" ({meta} does not exist)"
            );
        }
        let owner_key = format!("{prefix}:owner");
        let (token, ttl): (Option<String>, i64) = redis::pipe()
            .get(&owner_key)
            .pttl(&owner_key)
            .query(&mut conn)
            .map_err(|e| anyhow::anyhow!("{place}: {owner_key}: {e}"))?;
        let outbox: i64 = redis::cmd("EXISTS")
            .arg(format!("{prefix}:outbox:log"))
            .arg(format!("{prefix}:outbox:snaps"))
            .query(&mut conn)
            .map_err(|e| anyhow::anyhow!("{place}: {e}"))?;
        Ok(StateView {
            format: fields.get("format").cloned(),
            shards: fields.get("shards").cloned(),
            owner: token.map(|t| (t, ttl)),
            has_outbox: outbox > 0,
            client,
            prefix: prefix.to_string(),
        })
    }

    /// Where the state is: `host:port` (database if not 0), never the
    /// password.
    pub fn place(&self) -> String {
        describe(&self.client)
    }

    /// The partitions: `shard-0` … `shard-<shards - 1>` (their keys may
    /// not exist yet), then `outbox` if it exists.
    pub fn parts(&self, shards: usize) -> Vec<(String, RedisPart)> {
        let mut v: Vec<String> = (0..shards).map(|n| format!("shard-{n}")).collect();
        if self.has_outbox {
            v.push("outbox".into());
        }
        v.into_iter()
            .map(|p| {
                let part = RedisPart::new(self.client.clone(), &self.prefix, &p);
                (p, part)
            })
            .collect()
    }
}

/// The state in Redis, claimed by this daemon: its partition count and the
/// owner key it keeps alive.
pub struct Claim {
    /// Partitions (shards) the state was written with.
    pub shards: usize,
    /// The Redis client.
    pub client: redis::Client,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    renew: Option<std::thread::JoinHandle<()>>,
    owner: String,
    token: String,
}

impl std::fmt::Debug for Claim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claim")
            .field("shards", &self.shards)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

const RENEW: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return -1 end";
const TAKE_OVER: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1 else return 0 end";
const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// Connects, takes `prefix:owner`, and reads (or, on first use, records) the
/// partition count. Errors name the config key.
pub fn claim(url: &str, prefix: &str, configured: Option<usize>) -> anyhow::Result<Claim> {
    let client = redis::Client::open(url).map_err(|e| anyhow::anyhow!("daemon.state_url: {e}"))?;
    let mut conn = connect(&client)
        .map_err(|e| anyhow::anyhow!("daemon.state_url: cannot connect to Redis: {e}"))?;
    let token = format!(
        "{}-{}-{:x}",
        hostname(),
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    let meta = format!("{prefix}:meta");
    let recorded: Option<usize> = conn.hget(&meta, "shards")?;
    if let (Some(r), Some(n)) = (recorded, configured) {
        if r != n {
            anyhow::bail!(
                "daemon.shards: {n}, but the state under \"{prefix}\" in Redis was written with {r} shards ({meta}); set shards = {r} or leave it out (re-sharding is not supported yet)"
            );
        }
    }
    let owner = format!("{prefix}:owner");
    let ok: Option<String> = redis::cmd("SET")
        .arg(&owner)
        .arg(&token)
        .arg("NX")
        .arg("PX")
        .arg(OWNER_TTL.as_millis() as u64)
        .query(&mut conn)?;
    if ok.is_none() {
        let holder: Option<String> = conn.get(&owner).unwrap_or(None);
        // A daemon of this host that is gone (killed, crashed) left its key:
        // take it over at once instead of waiting for the expiry.
        let stale = holder.as_deref().is_some_and(dead_here);
        let taken = stale
            && redis::Script::new(TAKE_OVER)
                .key(&owner)
                .arg(holder.as_deref().unwrap_or_default())
                .arg(&token)
                .arg(OWNER_TTL.as_millis() as u64)
                .invoke::<i64>(&mut conn)
                .is_ok_and(|r| r == 1);
        if taken {
            warn!(
                key = owner,
                "took over the state in Redis from a daemon of this host that is no longer running"
            );
        }
    }
    let held: Option<String> = conn.get(&owner)?;
    if held.as_deref() != Some(token.as_str()) {
        let holder = held;
        anyhow::bail!(
            "daemon.state_prefix \"{prefix}\": another redcloud daemon owns this state in Redis ({owner} = {}); stop it, wait {} s after it died, or use another prefix",
            holder.unwrap_or_default(),
            OWNER_TTL.as_secs()
        );
    }
    let shards = match recorded {
        Some(r) => r,
        None => {
            let n = configured.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
            });
            let () = redis::cmd("HSET")
                .arg(&meta)
                .arg("format")
                .arg(1)
                .arg("shards")
                .arg(n)
                .query(&mut conn)?;
            n
        }
    };
    let persistence: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("appendonly")
        .query(&mut conn)
        .unwrap_or_default();
    if persistence.get(1).is_some_and(|v| v == "no") {
        warn!(
            "Redis runs without appendonly: acknowledged events survive a crash of this daemon but not a crash of the Redis host (docs/operations.md, Durability)"
        );
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let renew = {
        let (client, owner, token, stop) =
            (client.clone(), owner.clone(), token.clone(), stop.clone());
        std::thread::Builder::new()
            .name("redcloud-owner".into())
            .spawn(move || renew_loop(&client, &owner, &token, &stop))?
    };
    Ok(Claim {
        shards,
        client,
        stop,
        renew: Some(renew),
        owner,
        token,
    })
}

fn renew_loop(
    client: &redis::Client,
    owner: &str,
    token: &str,
    stop: &std::sync::atomic::AtomicBool,
) {
    let script = redis::Script::new(RENEW);
    let mut conn = None;
    let mut last_ok = std::time::Instant::now();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(500));
        if last_ok.elapsed() < OWNER_TTL / 3 {
            continue;
        }
        if conn.is_none() {
            conn = connect(client).ok();
        }
        let Some(c) = conn.as_mut() else { continue };
        match script
            .key(owner)
            .arg(token)
            .arg(OWNER_TTL.as_millis() as u64)
            .invoke::<i64>(c)
        {
            Ok(-1) => {
                error!(
                    key = owner,
                    "LOST OWNERSHIP of the state in Redis (another daemon took it): exiting without writing more; unacknowledged events will be redelivered to the owner"
                );
                std::process::exit(70);
            }
            Ok(_) => last_ok = std::time::Instant::now(),
            Err(e) => {
                warn!(error = %e, "cannot renew the ownership of the state in Redis; retrying");
                conn = None;
                if last_ok.elapsed() >= OWNER_TTL {
                    error!(key = owner,
                        "ownership of the state in Redis expired while Redis was unreachable: exiting");
                    std::process::exit(70);
                }
            }
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(h) = self.renew.take() {
            let _ = h.join();
        }
        if let Ok(mut c) = connect(&self.client) {
            let _: redis::RedisResult<i64> = redis::Script::new(RELEASE)
                .key(&self.owner)
                .arg(&self.token)
                .invoke(&mut c);
        }
    }
}

/// Whether an owner token names a process of this host that no longer runs.
fn dead_here(holder: &str) -> bool {
    let mut parts = holder.rsplitn(3, '-');
    let (Some(_nanos), Some(pid), Some(host)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    host == hostname()
        && pid.parse::<u32>().is_ok_and(|p| {
            p != std::process::id() && !std::path::Path::new(&format!("/proc/{p}")).exists()
        })
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "host".into())
}

#[cfg(test)]
mod tests {
    use super::super::wal::KIND_EVENT;
    use super::*;

    fn part(name: &str) -> RedisPart {
        let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
        let prefix = format!(
            "redcloud-test-{name}-{}-{:x}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        RedisPart::new(client, &prefix, "shard-0")
    }

    fn cleanup(p: &RedisPart) {
        let mut c = connect(&p.client).unwrap();
        let keys: Vec<String> = c
            .scan_match::<_, String>(format!("{}*", p.key))
            .unwrap()
            .filter_map(Result::ok)
            .collect();
        for k in keys {
            let _: i64 = c.del(k).unwrap();
        }
    }

    fn read(p: &RedisPart, after: u64) -> (Vec<Record>, Recovered) {
        let mut v = Vec::new();
        let (_, r) = p.open_log(after, |r| v.push(r.clone())).unwrap();
        (v, r)
    }

    #[test]
    fn log_round_trip_snapshots_and_trim() {
        let p = part("rt");
        let (mut w, r) = p.open_log(0, |_| {}).unwrap();
        assert_eq!(r.last_seq, 0);
        crate::daemon::wal::test_events(&mut w, 100, 7);
        drop(w);
        let (v, r) = read(&p, 0);
        assert_eq!(v.len(), 100);
        assert_eq!(r.last_seq, 100);
        assert_eq!(v[41].payload, b"{\"n\":41}");
        // Reopen continues the sequence.
        let (mut w, _) = p.open_log(100, |_| {}).unwrap();
        assert_eq!(w.append(KIND_EVENT, b"x"), 101);
        w.commit().unwrap();
        let (v, r) = read(&p, 95);
        assert_eq!(v.len(), 6);
        assert_eq!(v[0].seq, 96);
        // Only the entries from the one holding record 96 on were read
        // (groups of 7: 92..=98, 99..=100, 101).
        assert_eq!(r.segments, 3, "the entries the snapshot covers are skipped");
        let (v, r) = read(&p, 0);
        assert_eq!((v.len(), r.segments), (101, 16));

        // Snapshots: big enough for several chunks; two kept; the log before
        // the older one trimmed.
        let big: Vec<u8> = (0..(CHUNK * 2 + 5)).map(|i| (i % 251) as u8).collect();
        p.write_snapshot(30, b"thirty").unwrap();
        p.write_snapshot(60, &big).unwrap();
        p.write_snapshot(90, b"ninety").unwrap();
        assert_eq!(p.snapshot_seqs().unwrap(), vec![90, 60]);
        assert_eq!(p.read_snapshot(60).unwrap(), big);
        // One written with chunks of another size (earlier versions wrote
        // 32 MiB ones) reads the same: the listing gives the count.
        {
            let mut c = connect(&p.client).unwrap();
            let old = b"written in chunks of seven bytes";
            for (i, part) in old.chunks(7).enumerate() {
                let () = c.set(p.chunk(95, i), part).unwrap();
            }
            let member = format!("95:{}:{:016x}", old.len().div_ceil(7), xxh3_64(old));
            let () = redis::cmd("ZADD")
                .arg(p.snaps())
                .arg(95)
                .arg(&member)
                .query(&mut c)
                .unwrap();
            assert_eq!(p.read_snapshot(95).unwrap(), old);
            let _: i64 = c.zrem(p.snaps(), &member).unwrap();
            for i in 0..old.len().div_ceil(7) {
                let _: i64 = c.del(p.chunk(95, i)).unwrap();
            }
        }
        assert_eq!(p.recovery_horizon(), 60);
        let (v, r) = read(&p, 60);
        assert_eq!(v.first().map(|r| r.seq), Some(61));
        assert_eq!(r.last_seq, 101);
        // Records up to 60 may be gone (reading from 0 says so), none after.
        let e = p.open_log(0, |_| {}).unwrap_err().to_string();
        assert!(e.contains("records are missing"), "{e}");
        cleanup(&p);
    }

    #[test]
    fn half_written_and_corrupt_snapshots_are_never_used() {
        let p = part("half");
        p.write_snapshot(10, b"ten").unwrap();
        // Chunks of a snapshot that was never listed (a crash mid-write).
        let mut c = connect(&p.client).unwrap();
        let () = c.set(p.chunk(20, 0), b"half").unwrap();
        assert_eq!(p.snapshot_seqs().unwrap(), vec![10]);
        assert_eq!(p.remove_unfinished(), 1);
        // A listed snapshot whose bytes changed fails its checksum.
        let () = c.set(p.chunk(10, 0), b"tex").unwrap();
        let e = p.read_snapshot(10).unwrap_err().to_string();
        assert!(e.contains("checksum"), "{e}");
        cleanup(&p);
    }

    #[test]
    fn a_second_daemon_on_the_same_prefix_is_refused() {
        let p = part("own");
        let prefix = p.key.trim_end_matches(":shard-0").to_string();
        let a = claim("redis://127.0.0.1:6379", &prefix, Some(3)).unwrap();
        assert_eq!(a.shards, 3);
        let e = claim("redis://127.0.0.1:6379", &prefix, Some(3))
            .unwrap_err()
            .to_string();
        assert!(e.contains("another redcloud daemon owns this state"), "{e}");
        drop(a);
        let b = claim("redis://127.0.0.1:6379", &prefix, None).unwrap();
        assert_eq!(b.shards, 3, "the recorded count wins");
        drop(b);
        let e = claim("redis://127.0.0.1:6379", &prefix, Some(2))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("daemon.shards: 2, but the state"), "{e}");
        // A key left by a process of this host that is gone is taken over.
        let mut c = connect(&p.client).unwrap();
        let () = c
            .set(
                format!("{prefix}:owner"),
                format!("{}-4194303-1", hostname()),
            )
            .unwrap();
        let b = claim("redis://127.0.0.1:6379", &prefix, None).unwrap();
        drop(b);
        // One of another host is not.
        let () = c
            .set(format!("{prefix}:owner"), "elsewhere-1-1".to_string())
            .unwrap();
        assert!(claim("redis://127.0.0.1:6379", &prefix, None).is_err());
        let _: i64 = c.del(format!("{prefix}:meta")).unwrap();
        let _: i64 = c.del(format!("{prefix}:owner")).unwrap();
    }
}
