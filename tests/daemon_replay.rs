//! The sharded daemon decides exactly what `redcloud replay` decides for the
//! same events in the same order, even when the events run ahead of the wall
//! clock: the router hands every shard the event time of the events before
//! it, and idle shards catch up on their tick.

mod daemon_support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use daemon_support::{Daemon, Opts};

#[test]
fn two_shards_over_http_notify_exactly_what_replay_does() -> anyhow::Result<()> {
    let trace =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/replay/spring-festival-2026.ndjson");
    let replay = Command::new(env!("CARGO_BIN_EXE_redcloud"))
        .args(["replay", "--events"])
        .arg(&trace)
        .output()?;
    assert!(replay.status.success());
    let mut expected: Vec<String> = String::from_utf8(replay.stdout)?
        .lines()
        .map(str::to_string)
        .collect();
    assert!(expected.len() >= 15, "the trace must produce notifications");

    // The wall clock starts before the trace: every event is ahead of it.
    let d = Daemon::start(Opts {
        env: vec![("REDCLOUD_FAKE_NOW", "2026-02-01T00:00:00+08:00".to_string())],
        ..Opts::default()
    })?;
    let lines: Vec<String> = std::fs::read_to_string(&trace)?
        .lines()
        .map(str::to_string)
        .collect();
    let (status, body) = d.post_events(&lines, None)?;
    assert_eq!(status, 400, "the trace has three bad lines: {body}");
    d.wait(Duration::from_secs(20), "all notifications", || {
        Ok(d.stdout_lines().len() >= expected.len())
    })?;
    // A little longer: nothing more may come.
    std::thread::sleep(Duration::from_millis(500));
    let mut got = d.stdout_lines();
    got.sort();
    expected.sort();
    assert_eq!(got, expected);
    Ok(())
}
