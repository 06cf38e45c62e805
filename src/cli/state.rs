//! `redcloud state inspect` and `redcloud state verify`: look at a daemon's
//! state without starting it, in a data directory (`DIR`: `[daemon]
//! data_dir` with `durability = "wal"`: the shards' `shard-<n>/` and the
//! dispatcher's `outbox/`) or in Redis (`--redis URL [--prefix P]`:
//! `durability = "redis"`, the keys under `state_prefix`, see
//! [`crate::daemon::redis_store`]). Read-only: neither command repairs,
//! trims or claims anything, so the daemon may be running.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{ArgGroup, Args, Subcommand};
use redcloud_config::Secret;

use crate::daemon::outbox;
use crate::daemon::redis_store::{RedisPart, SnapshotFault, StateView};
use crate::daemon::wal::{scan_records, scan_segment, segments, snapshots, Record};

/// Arguments of `redcloud state`.
#[derive(Args, Debug)]
pub struct StateArgs {
    #[command(subcommand)]
    command: StateCommand,
}

#[derive(Subcommand, Debug)]
enum StateCommand {
    /// Per shard: snapshots (sequence, size), log segments or entries,
    /// records, last sequence; the outbox's contents.
    Inspect(Target),
    /// Check every record's checksum and sequence and every snapshot's
    /// envelope; exit 1 naming the first bad place (file and offset, or key
    /// and entry).
    Verify(Target),
}

/// Where the state is: exactly one of a directory or `--redis`.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("target").required(true).args(["dir", "redis"])))]
struct Target {
    /// The data directory (`durability = "wal"`).
    dir: Option<PathBuf>,
    /// The state in Redis instead (`durability = "redis"`): the
    /// `state_url`, e.g. redis://127.0.0.1:6379/ (its password is never
    /// printed).
    #[arg(long, value_name = "URL", value_parser = secret)]
    redis: Option<Secret>,
    /// The `state_prefix` of the state in Redis [default: redcloud].
    #[arg(long, requires = "redis", conflicts_with = "dir")]
    prefix: Option<String>,
}

fn secret(s: &str) -> Result<Secret, String> {
    Ok(Secret::new(s))
}

/// `redcloud state`.
pub fn run(args: StateArgs) -> Result<ExitCode> {
    let (verify_it, t) = match args.command {
        StateCommand::Inspect(t) => (false, t),
        StateCommand::Verify(t) => (true, t),
    };
    let ok = match (t.dir, t.redis) {
        (Some(dir), _) if verify_it => verify(&dir)?,
        (Some(dir), _) => inspect(&dir)?,
        (None, Some(url)) => {
            let prefix = t.prefix.as_deref().unwrap_or("redcloud");
            let out = &mut io::stdout().lock();
            if verify_it {
                verify_redis(url.expose(), prefix, out)?
            } else {
                inspect_redis(url.expose(), prefix, out)?
            }
        }
        (None, None) => anyhow::bail!("give a data directory or --redis URL"),
    };
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The logs of a data directory: every `shard-<n>` in order, then `outbox`
/// (numbered `usize::MAX`) if present.
fn shard_dirs(dir: &Path) -> Result<Vec<(usize, PathBuf)>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let e = e?;
        if let Some(n) = e
            .file_name()
            .to_str()
            .and_then(|n| n.strip_prefix("shard-"))
            .and_then(|n| n.parse::<usize>().ok())
        {
            v.push((n, e.path()));
        }
    }
    v.sort();
    if v.is_empty() {
        anyhow::bail!("{}: no shard-<n> directories here", dir.display());
    }
    let outbox = dir.join("outbox");
    if outbox.is_dir() {
        v.push((usize::MAX, outbox));
    }
    Ok(v)
}

/// Checks a snapshot's envelope: magic, declared length and the xxh3 trailer.
fn snapshot_ok(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() < 36 || &bytes[..8] != b"RCLDSNAP" {
        return Err("not a snapshot (bad magic or too short)".into());
    }
    let total = u64::from_le_bytes(bytes[12..20].try_into().unwrap_or_default());
    if total != bytes.len() as u64 {
        return Err(format!("{} bytes, header says {total}", bytes.len()));
    }
    let n = bytes.len() - 8;
    let sum = u64::from_le_bytes(bytes[n..].try_into().unwrap_or_default());
    if xxhash_rust::xxh3::xxh3_64(&bytes[..n]) != sum {
        return Err("checksum mismatch".into());
    }
    Ok(())
}

fn inspect(dir: &Path) -> Result<bool> {
    if let Ok(meta) = std::fs::read_to_string(dir.join("state.toml")) {
        println!("{}: {}", dir.display(), meta.trim().replace('\n', ", "));
    }
    for (n, sd) in shard_dirs(dir)? {
        if n == usize::MAX {
            let summary = crate::daemon::outbox::summarize(&sd).unwrap_or_else(|e| e);
            println!("outbox: {}: {summary}", sd.display());
        } else {
            println!("shard {n}: {}", sd.display());
        }
        for (seq, p) in snapshots(&sd)? {
            let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            println!("  snapshot seq {seq}: {len} bytes");
        }
        let mut last = None;
        for s in segments(&sd)? {
            let bytes = std::fs::read(&s.path)?;
            let scan = scan_segment(&bytes, s.first_seq);
            let damage = scan
                .damage
                .as_ref()
                .map(|d| format!(", DAMAGED at byte {}: {}", d.offset, d.reason))
                .unwrap_or_default();
            println!(
                "  segment {}: {} bytes, {} records, seq {}..{}{damage}",
                s.path.file_name().unwrap_or_default().to_string_lossy(),
                bytes.len(),
                scan.records.len(),
                s.first_seq,
                scan.records
                    .last()
                    .map_or(s.first_seq.saturating_sub(1), |r| r.seq)
            );
            if let Some(r) = scan.records.last() {
                last = Some(r.seq);
            }
        }
        match last {
            Some(s) => println!("  last seq {s}"),
            None => println!("  last seq: none in the log"),
        }
    }
    Ok(true)
}

fn verify(dir: &Path) -> Result<bool> {
    let mut records = 0u64;
    let mut snaps = 0usize;
    for (n, sd) in shard_dirs(dir)? {
        for (_, p) in snapshots(&sd)? {
            let bytes = std::fs::read(&p)?;
            let ok = if n == usize::MAX {
                crate::daemon::outbox::checkpoint_ok(&bytes)
            } else {
                snapshot_ok(&bytes)
            };
            if let Err(e) = ok {
                println!("bad: {} at byte 0: {e}", p.display());
                return Ok(false);
            }
            snaps += 1;
        }
        let mut expect = None;
        for s in segments(&sd)? {
            let bytes = std::fs::read(&s.path)?;
            if let Some(e) = expect {
                if s.first_seq != e {
                    println!(
                        "bad: {} at byte 0: starts at sequence {} where {e} was expected",
                        s.path.display(),
                        s.first_seq
                    );
                    return Ok(false);
                }
            }
            let scan = scan_segment(&bytes, s.first_seq);
            records += scan.records.len() as u64;
            if let Some(d) = scan.damage {
                let kind = if d.followed { "corrupt" } else { "torn tail" };
                println!(
                    "bad: {} at byte {}: {} ({kind})",
                    s.path.display(),
                    d.offset,
                    d.reason
                );
                return Ok(false);
            }
            expect = Some(scan.records.last().map_or(s.first_seq, |r| r.seq + 1));
        }
    }
    println!(
        "ok: {}: {snaps} snapshots, {records} log records",
        dir.display()
    );
    Ok(true)
}

/// The first sequence a log entry's id announces (`<first seq>-0`).
fn entry_seq(id: &str) -> Option<u64> {
    id.strip_suffix("-0")?.parse().ok()
}

/// `P:meta` `shards` as a count.
fn shard_count(view: &StateView) -> Result<usize, String> {
    let raw = view.shards.as_deref().ok_or("missing")?;
    raw.parse()
        .map_err(|_| format!("\"{raw}\" is not a partition count"))
}

/// What one pass over a log in Redis found (`state inspect --redis`).
#[derive(Debug, Default)]
struct LogStats {
    entries: u64,
    records: u64,
    first: Option<u64>,
    last: Option<u64>,
    damaged: u64,
    first_damage: Option<String>,
}

/// Reads a part's log entry by entry (one page at a time), counting and
/// handing each good record to `each`.
fn log_stats(part: &RedisPart, mut each: impl FnMut(&Record)) -> Result<LogStats> {
    let mut st = LogStats::default();
    part.each_log_entry(anyhow::Error::from, |id, data| {
        st.entries += 1;
        let damage = match (data, entry_seq(id)) {
            (None, _) => Some("no field r".to_string()),
            (Some(_), None) => Some("the id is not <first seq>-0".to_string()),
            (Some(bytes), Some(first)) => {
                let scan = scan_records(&bytes, first);
                for r in &scan.records {
                    each(r);
                }
                st.records += scan.records.len() as u64;
                if let Some(r) = scan.records.first() {
                    st.first.get_or_insert(r.seq);
                }
                if let Some(r) = scan.records.last() {
                    st.last = Some(r.seq);
                }
                scan.damage
                    .map(|d| format!("byte {}: {}", d.offset, d.reason))
            }
        };
        if let Some(d) = damage {
            st.damaged += 1;
            st.first_damage
                .get_or_insert_with(|| format!("entry {id} {d}"));
        }
        Ok(())
    })?;
    Ok(st)
}

/// `redcloud state inspect --redis URL --prefix P`; like the directory's,
/// with a log entry count instead of segments.
fn inspect_redis(url: &str, prefix: &str, out: &mut impl Write) -> Result<bool> {
    let view = StateView::open(url, prefix)?;
    writeln!(
        out,
        "redis {} prefix {prefix}: format {}, shards {}",
        view.place(),
        view.format.as_deref().unwrap_or("(missing)"),
        view.shards.as_deref().unwrap_or("(missing)")
    )?;
    match &view.owner {
        Some((token, ms)) if *ms >= 0 => {
            writeln!(out, "owner: {token} (expires in {:.1} s)", *ms as f64 / 1e3)?
        }
        Some((token, _)) => writeln!(out, "owner: {token} (no expiry)")?,
        None => writeln!(out, "owner: none (no daemon holds this state)")?,
    }
    let shards = match shard_count(&view) {
        Ok(n) => n,
        Err(e) => {
            writeln!(out, "{prefix}:meta shards: {e}; showing the outbox only")?;
            0
        }
    };
    for (name, part) in view.parts(shards) {
        let mut summary = if name == "outbox" {
            let seqs = part.snapshot_seqs()?;
            Some(outbox::Summary::start(seqs.into_iter().map(|seq| {
                (seq, part.read_snapshot(seq).map_err(|e| e.to_string()))
            })))
        } else {
            None
        };
        let st = log_stats(&part, |r| {
            if let Some(s) = summary.as_mut() {
                s.record(r);
            }
        })?;
        match &summary {
            Some(s) => writeln!(out, "outbox: {}: {s}", part.key())?,
            None => writeln!(out, "{}: {}", name.replacen('-', " ", 1), part.key())?,
        }
        for (member, listed) in part.snapshot_members()? {
            let Some((seq, chunks, _)) = listed else {
                writeln!(
                    out,
                    "  snapshot member {member:?}: not <seq>:<chunks>:<xxh3 hex>"
                )?;
                continue;
            };
            let sizes = part.chunk_sizes(seq, chunks)?;
            let bytes: u64 = sizes.iter().flatten().sum();
            let missing: Vec<String> = sizes
                .iter()
                .enumerate()
                .filter(|(_, s)| s.is_none())
                .map(|(i, _)| i.to_string())
                .collect();
            let missing = if missing.is_empty() {
                String::new()
            } else {
                format!(", MISSING chunk {}", missing.join(", "))
            };
            writeln!(
                out,
                "  snapshot seq {seq}: {bytes} bytes, {chunks} chunks{missing}"
            )?;
        }
        let range = match (st.first, st.last) {
            (Some(a), Some(b)) => format!(", seq {a}..{b}"),
            _ => String::new(),
        };
        let damage = match &st.first_damage {
            Some(d) => format!(", {} DAMAGED, the first at {d}", st.damaged),
            None => String::new(),
        };
        writeln!(
            out,
            "  log {}: {} entries, {} records{range}{damage}",
            part.log_key(),
            st.entries,
            st.records
        )?;
        match st.last {
            Some(s) => writeln!(out, "  last seq {s}")?,
            None => writeln!(out, "  last seq: none in the log")?,
        }
    }
    Ok(true)
}

/// Why `verify_redis` stopped reading a log.
enum Stop {
    Bad(String),
    Redis(anyhow::Error),
}

/// `redcloud state verify --redis URL --prefix P`: every listed snapshot
/// (chunks present, their xxh3, the envelope), then every log entry (its
/// records' checksums and sequences, and the sequence carried on from the
/// entry before; the first entry may start anywhere up to the newest
/// snapshot's sequence + 1, as the daemon accepts after a trim). Prints `ok:
/// …` and returns true, or `bad: KEY WHAT: reason` for the first bad place.
fn verify_redis(url: &str, prefix: &str, out: &mut impl Write) -> Result<bool> {
    let view = StateView::open(url, prefix)?;
    let shards = match shard_count(&view) {
        Ok(n) => n,
        Err(e) => {
            writeln!(out, "bad: {prefix}:meta shards: {e}")?;
            return Ok(false);
        }
    };
    let mut snaps = 0usize;
    let mut records = 0u64;
    for (name, part) in view.parts(shards) {
        let mut newest: Option<u64> = None;
        for (member, listed) in part.snapshot_members()? {
            let Some((seq, chunks, sum)) = listed else {
                writeln!(
                    out,
                    "bad: {} {member}: not <seq>:<chunks>:<xxh3 hex>",
                    part.snaps_key()
                )?;
                return Ok(false);
            };
            let bytes = match part.check_snapshot(seq, chunks, sum)? {
                Ok(b) => b,
                // Dropped by the daemon (a newer snapshot) while we read it.
                Err(SnapshotFault::Missing { .. })
                    if !part.snapshot_members()?.iter().any(|m| m.0 == member) =>
                {
                    continue
                }
                Err(SnapshotFault::Missing { key, chunk }) => {
                    writeln!(
                        out,
                        "bad: {key} chunk {chunk} of {chunks}: missing (snapshot {member})"
                    )?;
                    return Ok(false);
                }
                Err(SnapshotFault::Checksum { got }) => {
                    writeln!(
                        out,
                        "bad: {} {member}: the chunks' xxh3 is {got:016x}, not the listed one",
                        part.snaps_key()
                    )?;
                    return Ok(false);
                }
            };
            let envelope = if name == "outbox" {
                outbox::checkpoint_ok(&bytes)
            } else {
                snapshot_ok(&bytes)
            };
            if let Err(e) = envelope {
                writeln!(out, "bad: {} {member}: {e}", part.snaps_key())?;
                return Ok(false);
            }
            snaps += 1;
            newest = newest.max(Some(seq));
        }
        let base = newest.unwrap_or(0);
        let stream = part.log_key();
        let mut expect: Option<u64> = None;
        let read = part.each_log_entry(
            |e| Stop::Redis(e.into()),
            |id, data| {
                let bad = |why: String| Err(Stop::Bad(format!("{stream} {id}: {why}")));
                let Some(bytes) = data else {
                    return bad("no field r".into());
                };
                let Some(first) = entry_seq(id) else {
                    return bad("the id is not <first seq>-0".into());
                };
                match expect {
                    None if first > base + 1 => {
                        return bad(format!(
                            "the log starts at sequence {first} but the newest snapshot ends at {base}: records are missing"
                        ));
                    }
                    Some(e) if first != e => {
                        // A snapshot written meanwhile trims the log from its
                        // start: then this entry is the first one now.
                        let now_first = part
                            .first_log_id()
                            .map_err(|e| Stop::Redis(e.into()))?
                            .as_deref()
                            .and_then(entry_seq);
                        if now_first.is_none_or(|f| f < first) {
                            return bad(format!("starts at sequence {first} where {e} was expected"));
                        }
                    }
                    _ => {}
                }
                let scan = scan_records(&bytes, first);
                records += scan.records.len() as u64;
                if let Some(d) = scan.damage {
                    return bad(format!("at byte {}: {}", d.offset, d.reason));
                }
                expect = Some(scan.records.last().map_or(first, |r| r.seq + 1));
                Ok(())
            },
        );
        match read {
            Ok(()) => {}
            Err(Stop::Bad(line)) => {
                writeln!(out, "bad: {line}")?;
                return Ok(false);
            }
            Err(Stop::Redis(e)) => return Err(e),
        }
    }
    writeln!(
        out,
        "ok: redis {}/{prefix}: {snaps} snapshots, {records} log records",
        view.place()
    )?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    //! Against the real Redis on 127.0.0.1:6379, each test under a prefix of
    //! its own, the state written by the daemon's own code.

    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;

    use redcloud_connectors::channel::ChannelKind;
    use redcloud_connectors::dispatch::Journal;
    use redcloud_engine::policy::EngineConfig;
    use redcloud_engine::Engine;
    use redis::Commands;

    use super::*;
    use crate::daemon::outbox::{Decided, Outbox, OutboxShared};
    use crate::daemon::redis_store::claim;
    use crate::daemon::wal::{Store, KIND_ADVANCE, KIND_EVENT};

    const URL: &str = "redis://127.0.0.1:6379/";

    fn prefix(name: &str) -> String {
        format!(
            "redcloud-test-state-{name}-{}-{:x}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        )
    }

    fn conn() -> redis::Connection {
        redis::Client::open(URL).unwrap().get_connection().unwrap()
    }

    fn part(prefix: &str, name: &str) -> RedisPart {
        RedisPart::new(redis::Client::open(URL).unwrap(), prefix, name)
    }

    fn keys(prefix: &str) -> Vec<String> {
        let mut c = conn();
        let v: Vec<String> = c
            .scan_match::<_, String>(format!("{prefix}:*"))
            .unwrap()
            .filter_map(Result::ok)
            .collect();
        v
    }

    /// Every key under `prefix` with its `DUMP` (the value, stream ids and
    /// metadata included): what a read-only command must leave as it was.
    fn dump(prefix: &str) -> BTreeMap<String, Vec<u8>> {
        let mut c = conn();
        keys(prefix)
            .into_iter()
            .map(|k| {
                let d: Vec<u8> = redis::cmd("DUMP").arg(&k).query(&mut c).unwrap();
                (k, d)
            })
            .collect()
    }

    /// Deletes every key under its prefix when dropped (a failed test's
    /// too).
    struct Cleanup(String);

    impl Drop for Cleanup {
        fn drop(&mut self) {
            let mut c = conn();
            for k in keys(&self.0) {
                let _: redis::RedisResult<i64> = c.del(k);
            }
        }
    }

    fn inspect_out(prefix: &str) -> String {
        let before = dump(prefix);
        let mut out = Vec::new();
        assert!(inspect_redis(URL, prefix, &mut out).unwrap());
        assert_eq!(dump(prefix), before, "inspect changed the state");
        String::from_utf8(out).unwrap()
    }

    fn verify_out(prefix: &str) -> (bool, String) {
        let before = dump(prefix);
        let mut out = Vec::new();
        let ok = verify_redis(URL, prefix, &mut out).unwrap();
        assert_eq!(dump(prefix), before, "verify changed the state");
        (ok, String::from_utf8(out).unwrap())
    }

    /// The outbox's own code: three notifications, one delivered, stopped
    /// (which writes its checkpoint).
    fn write_outbox(prefix: &str) {
        let shared = OutboxShared::new(2);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let (ob, th, _) = Outbox::open(
            Store::Redis(part(prefix, "outbox")),
            shared,
            Duration::from_secs(3600),
            10,
            now,
            Duration::ZERO,
        )
        .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let decided = ["a", "b", "c"].map(|id| Decided {
                shard: 0,
                seq: 5,
                env: crate::daemon::outbox::test_envelope(id),
            });
            let fresh = ob.persist(decided.into()).await.unwrap();
            assert_eq!(fresh.len(), 3);
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let fwd = tokio::spawn(ob.clone().journal(rx));
            tx.send(Journal::Attempt {
                channel: ChannelKind::Sms,
                recipient_key: 42,
                unix_ms: now,
                delivered: vec!["b".into()],
            })
            .unwrap();
            drop(tx);
            fwd.await.unwrap();
        });
        drop(ob);
        th.join();
    }

    #[test]
    fn inspect_and_verify_count_what_the_daemon_code_wrote_and_change_nothing() {
        let p = prefix("rw");
        let _cleanup = Cleanup(p.clone());
        // Held as a running daemon holds it: meta written, owner key set.
        let owner = claim(URL, &p, Some(2)).unwrap();
        // Shard 0: 100 events in 15 group commits, then a real engine
        // snapshot at 50, which trims the entries wholly below 51.
        let s0 = Store::Redis(part(&p, "shard-0"));
        let (mut w, _) = s0.open_log(0, 0, |_| {}).unwrap();
        crate::daemon::wal::test_events(&mut w, 100, 7);
        drop(w);
        let snap = Engine::new(Arc::new(EngineConfig::contract_default())).snapshot();
        s0.write_snapshot(50, &snap).unwrap();
        // Shard 1: more entries than one XRANGE page.
        let s1 = Store::Redis(part(&p, "shard-1"));
        let (mut w, _) = s1.open_log(0, 0, |_| {}).unwrap();
        for i in 0..600i64 {
            w.append(KIND_ADVANCE, &(i * 1000).to_le_bytes());
            w.commit().unwrap();
        }
        drop(w);
        const { assert!(600 > crate::daemon::redis_store::PAGE) };
        write_outbox(&p);

        let out = inspect_out(&p);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            format!("redis 127.0.0.1:6379 prefix {p}: format 1, shards 2"),
            "{out}"
        );
        assert!(
            lines[1].starts_with("owner: ") && lines[1].contains("expires in"),
            "{out}"
        );
        let expected = [
            format!("shard 0: {p}:shard-0"),
            format!("  snapshot seq 50: {} bytes, 1 chunks", snap.len()),
            format!("  log {p}:shard-0:log: 8 entries, 51 records, seq 50..100"),
            "  last seq 100".to_string(),
            format!("shard 1: {p}:shard-1"),
            format!("  log {p}:shard-1:log: 600 entries, 600 records, seq 1..600"),
            "  last seq 600".to_string(),
            format!("outbox: {p}:outbox: 2 notifications to send, 1 settled ids remembered, 1 recent sends, 0 dead letters"),
        ];
        assert_eq!(lines[2..10], expected, "{out}");
        assert!(lines[10].starts_with("  snapshot seq 4: "), "{out}");
        assert_eq!(
            lines[11],
            format!("  log {p}:outbox:log: 1 entries, 1 records, seq 4..4"),
            "{out}"
        );
        assert_eq!(lines[12], "  last seq 4", "{out}");
        assert_eq!(lines.len(), 13, "{out}");

        let (ok, out) = verify_out(&p);
        assert!(ok, "{out}");
        assert_eq!(
            out,
            format!("ok: redis 127.0.0.1:6379/{p}: 2 snapshots, 652 log records\n")
        );
        // The daemon reads the same state.
        part(&p, "shard-0").open_log(50, |_| {}).unwrap();

        drop(owner);
        assert!(inspect_out(&p).contains("\nowner: none (no daemon holds this state)\n"));
    }

    /// A record framed by the log's own code, sequence `seq`, not written.
    fn framed(p: &str, seq: u64) -> Vec<u8> {
        let (mut w, _) = part(p, "scratch").open_log(seq - 1, |_| {}).unwrap();
        assert_eq!(w.append(KIND_EVENT, b"{}"), seq);
        w.take_batch().unwrap().1
    }

    fn xadd(p: &str, id: &str, r: &[u8]) {
        let _: String = redis::cmd("XADD")
            .arg(format!("{p}:shard-0:log"))
            .arg(id)
            .arg("r")
            .arg(r)
            .query(&mut conn())
            .unwrap();
    }

    fn xdel(p: &str, id: &str) {
        let n: i64 = redis::cmd("XDEL")
            .arg(format!("{p}:shard-0:log"))
            .arg(id)
            .query(&mut conn())
            .unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn verify_names_the_first_bad_entry_or_chunk_where_the_daemon_fails_too() {
        let p = prefix("bad");
        let _cleanup = Cleanup(p.clone());
        drop(claim(URL, &p, Some(1)).unwrap());
        let s0 = part(&p, "shard-0");
        let (mut w, _) = s0.open_log(0, |_| {}).unwrap();
        for i in 0..20 {
            w.append(KIND_EVENT, format!("{{\"n\":{i}}}").as_bytes());
            if i % 5 == 4 {
                w.commit().unwrap();
            }
        }
        drop(w);
        let snap = Engine::new(Arc::new(EngineConfig::contract_default())).snapshot();
        s0.write_snapshot(10, &snap).unwrap();
        let (ok, out) = verify_out(&p);
        assert!(ok, "{out}");
        assert!(out.ends_with(": 1 snapshots, 10 log records\n"), "{out}");
        let daemon_err = || s0.open_log(10, |_| {}).unwrap_err().to_string();

        // Garbage in an entry of its own.
        xadd(&p, "21-0", &[7u8; 30]);
        let (ok, out) = verify_out(&p);
        assert!(!ok);
        assert!(
            out.starts_with(&format!("bad: {p}:shard-0:log 21-0: at byte 0: ")),
            "{out}"
        );
        assert!(daemon_err().contains("entry 21-0"));
        let shown = inspect_out(&p);
        assert!(
            shown.contains(&format!(
                "  log {p}:shard-0:log: 3 entries, 10 records, seq 11..20, 1 DAMAGED, the first at entry 21-0 byte 0: "
            )),
            "{shown}"
        );
        xdel(&p, "21-0");

        // An entry without the records' field.
        let _: String = redis::cmd("XADD")
            .arg(format!("{p}:shard-0:log"))
            .arg("22-0")
            .arg("x")
            .arg("y")
            .query(&mut conn())
            .unwrap();
        let (ok, out) = verify_out(&p);
        assert!(!ok);
        assert_eq!(out, format!("bad: {p}:shard-0:log 22-0: no field r\n"));
        assert!(daemon_err().contains("entry 22-0: log entry without field r"));
        xdel(&p, "22-0");

        // Good records after a gap.
        xadd(&p, "23-0", &framed(&p, 23));
        let (ok, out) = verify_out(&p);
        assert!(!ok);
        assert_eq!(
            out,
            format!("bad: {p}:shard-0:log 23-0: starts at sequence 23 where 21 was expected\n")
        );
        assert!(daemon_err().contains("sequence 23 where 21 was expected"));
        xdel(&p, "23-0");

        let (ok, out) = verify_out(&p);
        assert!(ok, "{out}");

        // A chunk overwritten, then gone.
        let chunk = format!("{p}:shard-0:snap:10:0");
        let () = conn().set(&chunk, b"not the snapshot").unwrap();
        let (ok, out) = verify_out(&p);
        assert!(!ok);
        assert!(
            out.starts_with(&format!("bad: {p}:shard-0:snaps 10:1:")),
            "{out}"
        );
        assert!(out.contains("the chunks' xxh3 is"), "{out}");
        let _: i64 = conn().del(&chunk).unwrap();
        let (ok, out) = verify_out(&p);
        assert!(!ok);
        assert!(
            out.starts_with(&format!("bad: {chunk} chunk 0 of 1: missing")),
            "{out}"
        );
        let () = conn().set(&chunk, &snap).unwrap();
        assert!(verify_out(&p).0);

        // The first entry gone: records between the snapshot and the log.
        xdel(&p, "11-0");
        let (ok, out) = verify_out(&p);
        assert!(!ok);
        assert_eq!(
            out,
            format!("bad: {p}:shard-0:log 16-0: the log starts at sequence 16 but the newest snapshot ends at 10: records are missing\n")
        );
        assert!(daemon_err().contains("records are missing"));

        // A listed snapshot whose bytes are whole but not a snapshot.
        s0.write_snapshot(20, b"not an engine snapshot").unwrap();
        let (ok, out) = verify_out(&p);
        assert!(!ok);
        assert!(
            out.starts_with(&format!("bad: {p}:shard-0:snaps 20:1:")),
            "{out}"
        );
        assert!(
            out.ends_with(": not a snapshot (bad magic or too short)\n"),
            "{out}"
        );
    }
}
