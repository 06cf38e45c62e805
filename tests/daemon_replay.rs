//! The sharded daemon decides exactly what `redcloud replay` decides for the
//! same events in the same order, even when the events run ahead of the wall
//! clock: the router hands every shard the event time of the events before
//! it, and idle shards catch up on their tick.

mod daemon_support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use daemon_support::{Daemon, Opts};

/// What `redcloud replay` prints for `trace`, a line per notification.
fn replay(trace: &Path) -> anyhow::Result<Vec<String>> {
    let out = Command::new(env!("CARGO_BIN_EXE_redcloud"))
        .args(["replay", "--events"])
        .arg(trace)
        .output()?;
    anyhow::ensure!(out.status.success(), "replay failed");
    Ok(String::from_utf8(out.stdout)?
        .lines()
        .map(str::to_string)
        .collect())
}

/// Waits for the daemon's console to print as many notifications as
/// `expected`, a little longer (nothing more may come), and compares them.
fn same_as_replay(d: &Daemon, mut expected: Vec<String>) -> anyhow::Result<()> {
    d.wait(Duration::from_secs(20), "all notifications", || {
        Ok(d.stdout_lines().len() >= expected.len())
    })?;
    std::thread::sleep(Duration::from_millis(500));
    let mut got = d.stdout_lines();
    got.sort();
    expected.sort();
    assert_eq!(got, expected);
    Ok(())
}

#[test]
fn two_shards_over_http_notify_exactly_what_replay_does() -> anyhow::Result<()> {
    let trace =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/replay/spring-festival-2026.ndjson");
    let expected = replay(&trace)?;
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
    same_as_replay(&d, expected)
}

/// Late answers, one ordered producer, two shards: an answer for Monday that
/// comes after a Tuesday event (of a member on the *other* shard) is late in
/// replay, so it does not save its member from Monday's miss. The shard that
/// gets it must judge it late too: it moves its watermark to the event time
/// routed before the answer, not only to its own events' times.
#[test]
fn late_answers_are_late_on_every_shard_as_in_replay() -> anyhow::Result<()> {
    let q = |id: &str, at: &str, m: &str| {
        format!(
            r#"{{"id":"{id}","type":"activity.recorded","at":"{at}","member":"{m}","activity":"quiz"}}"#
        )
    };
    let mut lines = vec![
        r#"{"id":"org-city","type":"org.upserted","at":"2026-03-02T08:00:00+08:00","org":"city","parent":null,"level":"city","leader":"boss"}"#.to_string(),
        r#"{"id":"org-unit","type":"org.upserted","at":"2026-03-02T08:00:00+08:00","org":"unit","parent":"city","level":"county","leader":"m00"}"#.to_string(),
    ];
    let n = 24;
    for i in 0..n {
        lines.push(format!(
            r#"{{"id":"mem-{i}","type":"member.upserted","at":"2026-03-02T08:00:00+08:00","member":"m{i:02}","org":"unit"}}"#
        ));
        lines.push(format!(
            r#"{{"id":"login-{i}","type":"app.login","at":"2026-03-02T08:30:00+08:00","member":"m{i:02}"}}"#
        ));
    }
    let days = ["02", "03", "04", "05", "06"];
    for (d, day) in days.iter().enumerate() {
        // Each day one member answers first (the day before is closed then),
        // then the late answers for the day before, then the others.
        lines.push(q(
            &format!("q-00-{day}"),
            &format!("2026-03-{day}T09:00:00+08:00"),
            "m00",
        ));
        if d > 0 {
            let prev = days[d - 1];
            for i in (1..n).filter(|i| (i + d) % 3 == 0) {
                lines.push(q(
                    &format!("late-{i:02}-{prev}"),
                    &format!("2026-03-{prev}T21:00:00+08:00"),
                    &format!("m{i:02}"),
                ));
            }
        }
        for i in (1..n).filter(|i| (i + d + 1) % 3 != 0) {
            lines.push(q(
                &format!("q-{i:02}-{day}"),
                &format!("2026-03-{day}T10:{i:02}:00+08:00"),
                &format!("m{i:02}"),
            ));
        }
    }
    // Saturday: closes Friday.
    lines.push(q("q-00-07", "2026-03-07T09:00:00+08:00", "m00"));
    let dir = std::env::temp_dir().join(format!("redcloud-late-{}", daemon_support::suffix()));
    std::fs::create_dir_all(&dir)?;
    let trace = dir.join("late.ndjson");
    std::fs::write(&trace, lines.join("\n") + "\n")?;
    let expected = replay(&trace)?;
    assert!(expected.len() >= 10, "the trace must produce notifications");

    let d = Daemon::start(Opts {
        env: vec![("REDCLOUD_FAKE_NOW", "2026-03-01T00:00:00+08:00".to_string())],
        ..Opts::default()
    })?;
    let (status, body) = d.post_events(&lines, None)?;
    assert_eq!(status, 200, "{body}");
    same_as_replay(&d, expected)?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
