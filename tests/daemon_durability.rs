//! Durability with the real binary: `kill -9` while pushing over HTTP,
//! restart on the same `data_dir`, and every accepted event's effect is there
//! exactly once; a torn log tail and a half-written snapshot are recovered
//! from. Every wait is bounded.

mod daemon_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use daemon_support::{ev, suffix, Daemon, Opts};

const AT: &str = "2026-03-02T09:00:00+08:00";
const NOW: &str = "2026-03-02T08:59:00+08:00";

fn data_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("redcloud-dur-{name}-{}", suffix()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn start(data: &Path) -> Result<Daemon> {
    let d = Daemon::start(Opts {
        daemon: &format!(
            "data_dir = \"{}\"\ndurability = \"wal\"\nsnapshot_interval = \"1s\"\n",
            data.display()
        ),
        env: vec![("REDCLOUD_FAKE_NOW", NOW.to_string())],
        ..Opts::default()
    })?;
    d.wait_ready(Duration::from_secs(20))?;
    Ok(d)
}

fn directory() -> Vec<String> {
    vec![
        ev(
            "o1",
            "org.upserted",
            AT,
            r#""org":"c1","parent":null,"level":"city","leader":"boss""#,
        ),
        ev(
            "o2",
            "org.upserted",
            AT,
            r#""org":"t1","parent":"c1","level":"town","leader":null"#,
        ),
    ]
}

/// Batch `k`: one member enrolled and five tickets opened (one accepted).
fn batch(k: usize) -> Vec<String> {
    let mut v = vec![
        ev(
            &format!("m{k}-up"),
            "member.upserted",
            AT,
            &format!(r#""member":"m{k}","org":"t1""#),
        ),
        ev(
            &format!("m{k}-in"),
            "app.login",
            AT,
            &format!(r#""member":"m{k}""#),
        ),
    ];
    for j in 0..5 {
        v.push(ev(
            &format!("t{k}-{j}"),
            "ticket.opened",
            AT,
            &format!(r#""ticket":"t-{k}-{j}","org":"t1","category":"help""#),
        ));
    }
    v.push(ev(
        &format!("t{k}-acc"),
        "ticket.accepted",
        AT,
        &format!(r#""ticket":"t-{k}-0""#),
    ));
    v
}

/// `POST /v1/events` from another thread (the daemon handle stays with the
/// thread that kills it).
fn post(port: u16, lines: &[String]) -> Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut body = lines.join("\n");
    body.push('\n');
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    write!(
        s,
        "POST /v1/events HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-ndjson\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let status = buf
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, buf))
}

fn stats(d: &Daemon) -> Result<(u64, u64)> {
    let rows = d.get_json("/v1/stats?org=c1&month=2026-03")?;
    let row = &rows[0];
    Ok((
        row["opened"].as_u64().unwrap_or(0),
        row["accepted"].as_u64().unwrap_or(0),
    ))
}

fn state(cmd: &str, dir: &Path) -> Result<(bool, String)> {
    let out = Command::new(env!("CARGO_BIN_EXE_redcloud"))
        .args(["state", cmd])
        .arg(dir)
        .output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
    ))
}

fn last_segment(dir: &Path) -> PathBuf {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".log"))
        .collect();
    v.sort();
    v.pop().expect("a segment")
}

#[test]
fn kill_9_while_pushing_loses_and_doubles_nothing() -> Result<()> {
    let data = data_dir("kill");
    const BATCHES: usize = 1500;
    let next = Arc::new(AtomicUsize::new(0));
    let mut seed = u64::from(std::process::id()) ^ 0x9E37_79B9_7F4A_7C15;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let started = Instant::now();
    let mut kills = 0;
    let mut round = 0;
    loop {
        round += 1;
        let d = start(&data)?;
        let (s, b) = d.post_events(&directory(), None)?;
        ensure!(s == 200, "{s} {b}");
        let port = d.port;
        let stop = Arc::new(AtomicBool::new(false));
        let pusher = {
            let next = next.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let k = next.load(Ordering::Relaxed);
                    if k >= BATCHES {
                        break;
                    }
                    // Only an answered batch counts as accepted; one cut by
                    // the kill is sent again after the restart (duplicates
                    // are ignored by id).
                    match post(port, &batch(k)) {
                        Ok((200, _)) => next.store(k + 1, Ordering::Relaxed),
                        _ => break,
                    }
                }
            })
        };
        let last = round > 6 || started.elapsed() > Duration::from_secs(40);
        if last {
            let deadline = Instant::now() + Duration::from_secs(30);
            while next.load(Ordering::Relaxed) < BATCHES && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            stop.store(true, Ordering::Relaxed);
            pusher.join().unwrap();
            ensure!(next.load(Ordering::Relaxed) == BATCHES, "pushing stalled");
            let n = BATCHES as u64;
            let (opened, accepted) = stats(&d)?;
            assert_eq!((opened, accepted), (5 * n, n), "after {kills} kills");
            for k in 0..BATCHES {
                let m = d.get_json(&format!("/v1/members/m{k}"))?;
                assert_eq!(m["enrolled"], true, "m{k}: {m}");
            }
            // Snapshots are taken by fork (the default) while it runs.
            d.wait(Duration::from_secs(10), "a forked snapshot", || {
                Ok(d.logs().contains("snapshot written (forked)"))
            })?;
            let mut d = d;
            d.terminate(Duration::from_secs(15))?;
            let (ok, out) = state("verify", &data)?;
            assert!(ok, "{out}");
            let (ok, out) = state("inspect", &data)?;
            assert!(ok && out.contains("snapshot seq"), "{out}");
            // The outbox is there too, with nothing left to send after a
            // clean stop (the console took every notification).
            assert!(
                out.contains("outbox: ") && out.contains(": 0 notifications to send"),
                "{out}"
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(30 + rand(200)));
        // Everything accepted before the kill must survive it.
        let before = next.load(Ordering::Relaxed) as u64;
        drop(d); // SIGKILL
        kills += 1;
        stop.store(true, Ordering::Relaxed);
        pusher.join().unwrap();
        let d = start(&data)?;
        let (opened, accepted) = stats(&d)?;
        let after = next.load(Ordering::Relaxed) as u64;
        // Between `before` and `after` batches were answered; one more may
        // have been applied without its answer reaching us.
        assert!(
            opened >= 5 * before && opened <= 5 * (after + 1) && accepted <= after + 1,
            "kill {kills}: opened {opened}, accepted {accepted}, answered {before}..{after}\n{}",
            d.logs()
        );
        drop(d);
    }
    ensure!(kills >= 3, "only {kills} kills");
    let _ = std::fs::remove_dir_all(&data);
    Ok(())
}

#[test]
fn torn_log_tail_and_half_written_snapshot_are_recovered_from() -> Result<()> {
    let data = data_dir("torn");
    let mut d = start(&data)?;
    let mut lines = directory();
    lines.extend(batch(0));
    let (s, b) = d.post_events(&lines, None)?;
    ensure!(s == 200, "{s} {b}");
    // A graceful stop writes a snapshot.
    d.terminate(Duration::from_secs(15))?;
    let shard0 = data.join("shard-0");
    let snaps: Vec<PathBuf> = std::fs::read_dir(&shard0)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".bin"))
        .collect();
    ensure!(!snaps.is_empty(), "no snapshot after a graceful stop");
    let good = std::fs::read(&snaps[0])?;

    // More events, then a kill: they are only in the log.
    let d = start(&data)?;
    let (s, b) = d.post_events(&batch(1), None)?;
    ensure!(s == 200, "{s} {b}");
    drop(d);

    // Damage: garbage after the last record of every shard's log, a newer
    // snapshot cut in half, and an unfinished `.tmp`.
    for n in 0..2 {
        let seg = last_segment(&data.join(format!("shard-{n}")));
        let mut bytes = std::fs::read(&seg)?;
        bytes.extend_from_slice(&[0x5A; 45]);
        std::fs::write(&seg, bytes)?;
    }
    std::fs::write(
        shard0.join(format!("snapshot-{:020}.bin", 1_000_000)),
        &good[..good.len() / 2],
    )?;
    std::fs::write(
        shard0.join(format!("snapshot-{:020}.bin.tmp", 1_000_001)),
        &good[..10],
    )?;
    let (ok, out) = state("verify", &data)?;
    assert!(!ok && out.starts_with("bad: "), "{out}");

    let d = start(&data)?;
    assert_eq!(stats(&d)?, (10, 2), "{}", d.logs());
    assert_eq!(d.get_json("/v1/members/m1")?["enrolled"], true);
    let logs = d.logs();
    assert!(logs.contains("torn write-ahead log tail"), "{logs}");
    assert!(logs.contains("snapshot skipped"), "{logs}");
    // Resending is ignored by id, from the recovered state.
    let (s, b) = d.post_events(&batch(1), None)?;
    assert!(s == 200 && b.contains(r#""duplicates":8"#), "{s} {b}");
    drop(d);
    std::fs::remove_file(shard0.join(format!("snapshot-{:020}.bin", 1_000_000)))?;
    let (ok, out) = state("verify", &data)?;
    assert!(ok, "{out}");
    let _ = std::fs::remove_dir_all(&data);
    Ok(())
}

/// `snapshot_log_records`: a shard whose log grows by that many records
/// takes a snapshot without waiting for its interval, so a recovery replays
/// at most about that much; the state survives a `kill -9` after it.
#[test]
fn a_shard_snapshots_when_its_log_grows_past_the_record_limit() -> Result<()> {
    let data = data_dir("records");
    let d = Daemon::start(Opts {
        daemon: &format!(
            "data_dir = \"{}\"\ndurability = \"wal\"\nsnapshot_interval = \"1h\"\nsnapshot_log_records = 40\n",
            data.display()
        ),
        env: vec![("REDCLOUD_FAKE_NOW", NOW.to_string())],
        ..Opts::default()
    })?;
    d.wait_ready(Duration::from_secs(20))?;
    let (s, body) = post(d.port, &directory())?;
    ensure!(s == 200, "{body}");
    // 40 batches of 8 events over the 2 shards: about 160 records each, so
    // at least 4 snapshots by size in all (the hour-long interval takes
    // none).
    for k in 0..40 {
        let (s, body) = post(d.port, &batch(k))?;
        ensure!(s == 200, "{body}");
    }
    d.wait(
        Duration::from_secs(20),
        "three snapshots by log size",
        || Ok(d.metric("redcloud_snapshots_total")?.unwrap_or(0.0) >= 3.0),
    )?;
    // The count moves at the fork; the child writes the file just after.
    d.wait(Duration::from_secs(20), "a snapshot file", || {
        Ok(std::fs::read_dir(data.join("shard-0"))?.flatten().any(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            n.starts_with("snapshot-") && n.ends_with(".bin")
        }))
    })?;
    drop(d); // kill -9
    let d = start(&data)?;
    ensure!(stats(&d)? == (200, 40), "{:?}", stats(&d)?);
    let _ = std::fs::remove_dir_all(&data);
    Ok(())
}
