//! End-to-end tests of `redcloud run` against the real Redis on
//! 127.0.0.1:6379: the real binary reads a stream of its own (unique key per
//! test) through a consumer group, applies, acknowledges, rejects, claims.

mod daemon_support;

use std::time::Duration;

use anyhow::{bail, Context, Result};
use daemon_support::{ev, suffix, Daemon, Opts};
use redis::aio::MultiplexedConnection;
use redis::Value;
use tokio::task::block_in_place;

const URL: &str = "redis://127.0.0.1:6379/";
const AT: &str = "2026-03-02T09:00:00+08:00";
const GROUP: &str = "rc-daemon";

async fn conn() -> Result<MultiplexedConnection> {
    let client = redis::Client::open(URL)?;
    Ok(tokio::time::timeout(
        Duration::from_secs(5),
        client.get_multiplexed_async_connection(),
    )
    .await
    .context("redis connect timed out")??)
}

async fn xadd(c: &mut MultiplexedConnection, stream: &str, k: &str, v: &str) -> Result<String> {
    Ok(redis::cmd("XADD")
        .arg(stream)
        .arg("*")
        .arg(k)
        .arg(v)
        .query_async(c)
        .await?)
}

async fn pending(c: &mut MultiplexedConnection, stream: &str) -> Result<u64> {
    let v: Value = redis::cmd("XPENDING")
        .arg(stream)
        .arg(GROUP)
        .query_async(c)
        .await?;
    match v {
        Value::Array(items) => match items.first() {
            Some(Value::Int(n)) => Ok(*n as u64),
            other => bail!("unexpected XPENDING reply {other:?}"),
        },
        other => bail!("unexpected XPENDING reply {other:?}"),
    }
}

async fn cleanup(c: &mut MultiplexedConnection, stream: &str) {
    let _: Result<(), _> = redis::cmd("DEL")
        .arg(stream)
        .arg(format!("{stream}:rejected"))
        .query_async(c)
        .await;
}

fn toml(source: &str, stream: &str) -> String {
    format!(
        r#"[sources.redis]
name = "{source}"
url = "{URL}"
stream = "{stream}"
group = "{GROUP}"
consumer = "live"
block = "200ms"
claim_idle = "500ms"
claim_interval = "300ms"
ack_interval = "20ms"
reconnect_initial = "100ms"
reconnect_max = "1s"
drain_timeout = "5s"
lag_interval = "200ms"
"#
    )
}

fn wait_metric(d: &Daemon, series: &str, want: f64) -> Result<()> {
    d.wait(Duration::from_secs(20), series, || {
        Ok(d.metric(series)?.is_some_and(|v| v >= want))
    })?;
    let got = d.metric(series)?.unwrap_or(0.0);
    if got != want {
        bail!("{series} = {got}, want {want}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_entries_are_applied_acked_and_bad_ones_rejected() -> Result<()> {
    let s = suffix();
    let stream = format!("rc-daemon-apply-{s}");
    let source = format!("redis-{s}");
    let mut c = conn().await?;
    xadd(
        &mut c,
        &stream,
        "event",
        &ev(
            "o1",
            "org.upserted",
            AT,
            r#""org":"c1","parent":null,"level":"city","leader":null"#,
        ),
    )
    .await?;
    xadd(
        &mut c,
        &stream,
        "event",
        &ev("e1", "member.upserted", AT, r#""member":"m1","org":"c1""#),
    )
    .await?;
    xadd(&mut c, &stream, "event", "{not json").await?;
    xadd(&mut c, &stream, "payload", "no event field").await?;
    xadd(
        &mut c,
        &stream,
        "event",
        &ev("e2", "app.login", AT, r#""member":"m1""#),
    )
    .await?;
    let config = toml(&source, &stream);
    let mut d = block_in_place(|| {
        Daemon::start(Opts {
            extra: &config,
            ..Opts::default()
        })
    })?;
    let series = |m: &str| format!("{m}{{source=\"{source}\"}}");
    block_in_place(|| {
        d.wait_ready(Duration::from_secs(20))?;
        wait_metric(&d, &series("redcloud_source_acked_total"), 3.0)?;
        wait_metric(&d, &series("redcloud_source_rejected_total"), 2.0)?;
        let m = d.get_json("/v1/members/m1")?;
        assert_eq!(m["enrolled"], true, "{m}");
        anyhow::Ok(())
    })?;
    // New entries keep coming in.
    xadd(
        &mut c,
        &stream,
        "event",
        &ev("e3", "member.upserted", AT, r#""member":"m2","org":"c1""#),
    )
    .await?;
    block_in_place(|| wait_metric(&d, &series("redcloud_source_acked_total"), 4.0))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while pending(&mut c, &stream).await? > 0 {
        if tokio::time::Instant::now() > deadline {
            bail!("entries still pending");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rejected: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(format!("{stream}:rejected"))
        .arg("-")
        .arg("+")
        .query_async(&mut c)
        .await?;
    let reasons: Vec<String> = rejected
        .ids
        .iter()
        .map(|e| e.get::<String>("reason").unwrap_or_default())
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.starts_with("not valid json")),
        "{reasons:?}"
    );
    let st = block_in_place(|| d.terminate(Duration::from_secs(20)))?;
    assert!(st.success(), "{st:?}");
    cleanup(&mut c, &stream).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_entries_of_a_dead_consumer_are_claimed() -> Result<()> {
    let s = suffix();
    let stream = format!("rc-daemon-claim-{s}");
    let source = format!("redis-claim-{s}");
    let mut c = conn().await?;
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg(GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut c)
        .await?;
    for i in 0..5 {
        let e = ev(
            &format!("u{i}"),
            "member.upserted",
            AT,
            &format!(r#""member":"m{i}","org":"c1""#),
        );
        xadd(&mut c, &stream, "event", &e).await?;
    }
    // A consumer reads them and dies without acknowledging.
    let _: Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(GROUP)
        .arg("dead-consumer")
        .arg("COUNT")
        .arg(10)
        .arg("STREAMS")
        .arg(&stream)
        .arg(">")
        .query_async(&mut c)
        .await?;
    assert_eq!(pending(&mut c, &stream).await?, 5);
    let config = toml(&source, &stream);
    let mut d = block_in_place(|| {
        Daemon::start(Opts {
            extra: &config,
            ..Opts::default()
        })
    })?;
    block_in_place(|| {
        wait_metric(
            &d,
            &format!("redcloud_events_applied_total{{source=\"{source}\"}}"),
            5.0,
        )?;
        for i in 0..5 {
            let m = d.get_json(&format!("/v1/members/m{i}"))?;
            assert_eq!(m["state"], "active");
        }
        anyhow::Ok(())
    })?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while pending(&mut c, &stream).await? > 0 {
        if tokio::time::Instant::now() > deadline {
            bail!("claimed entries still pending");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let st = block_in_place(|| d.terminate(Duration::from_secs(20)))?;
    assert!(st.success(), "{st:?}");
    cleanup(&mut c, &stream).await;
    Ok(())
}
