//! `redcloud state inspect DIR` and `redcloud state verify DIR`: look at a
//! daemon's data directory (`[daemon] data_dir` with `durability = "wal"`:
//! the shards' `shard-<n>/` and the dispatcher's `outbox/`) without starting
//! it. Read-only: neither command repairs anything.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use crate::daemon::wal::{scan_segment, segments, snapshots};

/// Arguments of `redcloud state`.
#[derive(Args, Debug)]
pub struct StateArgs {
    #[command(subcommand)]
    command: StateCommand,
}

#[derive(Subcommand, Debug)]
enum StateCommand {
    /// Per shard: snapshots (sequence, size), log segments, records, last sequence.
    Inspect {
        /// The data directory.
        dir: PathBuf,
    },
    /// Check every record's checksum and every snapshot's envelope; exit 1
    /// naming the file and offset of the first bad record.
    Verify {
        /// The data directory.
        dir: PathBuf,
    },
}

/// `redcloud state`.
pub fn run(args: StateArgs) -> Result<ExitCode> {
    match args.command {
        StateCommand::Inspect { dir } => inspect(&dir),
        StateCommand::Verify { dir } => verify(&dir),
    }
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

fn inspect(dir: &Path) -> Result<ExitCode> {
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
    Ok(ExitCode::SUCCESS)
}

fn verify(dir: &Path) -> Result<ExitCode> {
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
                return Ok(ExitCode::from(1));
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
                    return Ok(ExitCode::from(1));
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
                return Ok(ExitCode::from(1));
            }
            expect = Some(scan.records.last().map_or(s.first_seq, |r| r.seq + 1));
        }
    }
    println!(
        "ok: {}: {snaps} snapshots, {records} log records",
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}
