//! `redcloud state inspect|verify --redis URL [--prefix P]` with the real
//! binary and the real Redis on 127.0.0.1:6379 (a prefix per test, its keys
//! deleted at the end): the arguments, a password in the URL that is never
//! printed, and the state of a running daemon (`durability = "redis"`) read
//! without disturbing it. (The record and snapshot checks themselves are
//! tested in `src/cli/state.rs`.)

mod daemon_support;

use std::process::{Command, Output};
use std::time::Duration;

use anyhow::Result;
use daemon_support::{ev, suffix, Daemon, Opts};

const URL: &str = "redis://127.0.0.1:6379/";
const AT: &str = "2026-03-02T09:00:00+08:00";

fn state(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_redcloud"))
        .arg("state")
        .args(args)
        .output()
        .expect("run redcloud");
    assert!(out.status.code().is_some(), "killed by a signal: {args:?}");
    out
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn conn() -> Result<redis::Connection> {
    Ok(redis::Client::open(URL)?.get_connection_with_timeout(Duration::from_secs(5))?)
}

/// Deletes the keys under its prefix when dropped, a failed test's too.
struct Keys(String);

impl Drop for Keys {
    fn drop(&mut self) {
        let Ok(mut c) = conn() else { return };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.0))
            .query(&mut c)
            .unwrap_or_default();
        for k in keys {
            let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(k).query(&mut c);
        }
    }
}

#[test]
fn state_commands_take_exactly_one_of_a_directory_or_redis() {
    for cmd in ["inspect", "verify"] {
        let o = state(&[cmd]);
        assert_eq!(o.status.code(), Some(2));
        let (_, err) = text(&o);
        assert!(err.contains("<DIR|--redis <URL>>"), "{err}");

        let o = state(&[
            cmd,
            "/tmp",
            "--redis",
            "redis://:hunter2-pw@127.0.0.1:6379/",
        ]);
        assert_eq!(o.status.code(), Some(2));
        let (_, err) = text(&o);
        assert!(err.contains("cannot be used with"), "{err}");
        assert!(!err.contains("hunter2-pw"), "{err}");

        let o = state(&[cmd, "/tmp", "--prefix", "p"]);
        assert_eq!(o.status.code(), Some(2));
        let (_, err) = text(&o);
        assert!(
            err.contains("cannot be used with") && err.contains("'--prefix <PREFIX>'"),
            "{err}"
        );
    }
}

#[test]
fn the_password_in_the_url_is_never_printed() {
    let prefix = format!("redcloud-test-state-cli-{}", suffix());
    // Redis refuses the credentials; then a port nothing listens on; then no
    // state under the prefix.
    for url in [
        "redis://someone:hunter2-pw@127.0.0.1:6379/".to_string(),
        "redis://:hunter2-pw@127.0.0.1:1/".to_string(),
        format!("{URL}?ignored=hunter2-pw"),
    ] {
        for cmd in ["inspect", "verify"] {
            let o = state(&[cmd, "--redis", &url, "--prefix", &prefix]);
            let (out, err) = text(&o);
            assert_eq!(o.status.code(), Some(2), "{out}{err}");
            assert!(err.starts_with("redcloud: "), "{err}");
            assert!(
                !out.contains("hunter2") && !err.contains("hunter2"),
                "{out}{err}"
            );
        }
    }
    let o = state(&["verify", "--redis", URL, "--prefix", &prefix]);
    let (_, err) = text(&o);
    assert!(
        err.contains(&format!("no redcloud state under prefix \"{prefix}\"")),
        "{err}"
    );
}

fn events(k: usize) -> Vec<String> {
    let mut v = vec![
        ev(
            "o1",
            "org.upserted",
            AT,
            r#""org":"c1","parent":null,"level":"city","leader":"boss""#,
        ),
        ev(
            &format!("m{k}"),
            "member.upserted",
            AT,
            &format!(r#""member":"m{k}","org":"c1""#),
        ),
    ];
    for j in 0..5 {
        v.push(ev(
            &format!("t{k}-{j}"),
            "ticket.opened",
            AT,
            &format!(r#""ticket":"t-{k}-{j}","org":"c1","category":"help""#),
        ));
    }
    v
}

/// `ok: redis 127.0.0.1:6379/P: N snapshots, M log records` as (N, M).
fn counts(out: &str, prefix: &str) -> (u64, u64) {
    let rest = out
        .strip_prefix(&format!("ok: redis 127.0.0.1:6379/{prefix}: "))
        .unwrap_or_else(|| panic!("{out}"));
    let n: Vec<u64> = rest
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    (n[0], n[1])
}

#[test]
fn a_running_daemons_state_in_redis_is_read_without_disturbing_it() -> Result<()> {
    let prefix = format!("redcloud-test-state-run-{}", suffix());
    let _keys = Keys(prefix.clone());
    let mut d = Daemon::start(Opts {
        daemon: &format!(
            "durability = \"redis\"\nstate_url = \"{URL}\"\nstate_prefix = \"{prefix}\"\nsnapshot_interval = \"1s\"\n"
        ),
        ..Opts::default()
    })?;
    d.wait_ready(Duration::from_secs(20))?;
    for k in 0..4 {
        let (s, b) = d.post_events(&events(k), None)?;
        assert!(s == 200 || s == 202, "{s} {b}");
    }
    // A snapshot of either shard (every second while there is news).
    let mut c = conn()?;
    d.wait(Duration::from_secs(20), "a snapshot in Redis", || {
        let n: u64 = (0..2)
            .map(|i| {
                redis::cmd("ZCARD")
                    .arg(format!("{prefix}:shard-{i}:snaps"))
                    .query::<u64>(&mut c)
                    .unwrap_or(0)
            })
            .sum();
        Ok(n > 0)
    })?;
    let owner: Option<String> = redis::cmd("GET")
        .arg(format!("{prefix}:owner"))
        .query(&mut c)?;
    let owner = owner.expect("the daemon holds its state");

    let o = state(&["inspect", "--redis", URL, "--prefix", &prefix]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(
        out.starts_with(&format!(
            "redis 127.0.0.1:6379 prefix {prefix}: format 1, shards 2\nowner: {owner} (expires in "
        )),
        "{out}"
    );
    // (The outbox has no keys until its first notification or its
    // checkpoint at the stop.)
    for line in [
        format!("\nshard 0: {prefix}:shard-0\n"),
        format!("\nshard 1: {prefix}:shard-1\n"),
        format!("\n  log {prefix}:shard-0:log: "),
    ] {
        assert!(out.contains(&line), "{line:?} in {out}");
    }
    assert!(out.contains("  snapshot seq "), "{out}");
    let o = state(&["verify", "--redis", URL, "--prefix", &prefix]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    let (snaps, _) = counts(&out, &prefix);
    assert!(snaps >= 1, "{out}");
    // Still the daemon's, still running.
    let now: Option<String> = redis::cmd("GET")
        .arg(format!("{prefix}:owner"))
        .query(&mut c)?;
    assert_eq!(now.as_deref(), Some(owner.as_str()));
    let (s, b) = d.post_events(&events(9), None)?;
    assert!(s == 200 || s == 202, "{s} {b}");

    let status = d.terminate(Duration::from_secs(20))?;
    assert!(status.success(), "{status:?}\n{}", d.logs());
    let o = state(&["verify", "--redis", URL, "--prefix", &prefix]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    let o = state(&["inspect", "--redis", URL, "--prefix", &prefix]);
    let (out, _) = text(&o);
    assert!(
        out.contains("\nowner: none (no daemon holds this state)\n"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "\noutbox: {prefix}:outbox: 0 notifications to send"
        )),
        "{out}"
    );
    Ok(())
}
