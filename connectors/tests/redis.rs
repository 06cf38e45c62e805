//! Redis Streams source against the real Redis on 127.0.0.1:6379.
//!
//! Each test uses its own stream (random suffix) and deletes it at the end; every
//! wait is bounded so a broken server fails the test.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use redcloud_connectors::source::redis::{RedisConfig, RedisSource};
use redcloud_connectors::source::{Delivery, Source, SourceStats};
use redis::aio::MultiplexedConnection;
use redis::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

const URL: &str = "redis://127.0.0.1:6379/";

fn suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{}-{nanos:x}", std::process::id())
}

fn config(stream: &str, extra: serde_json::Value) -> RedisConfig {
    let mut v = serde_json::json!({
        "url": URL,
        "stream": stream,
        "group": "rc-test",
        "block": "200ms",
        "count": 20,
        "ack_batch": 10,
        "ack_interval": "20ms",
        "reconnect_initial": "50ms",
        "reconnect_max": "500ms",
        "drain_timeout": "5s",
        "lag_interval": "100ms",
    });
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    serde_json::from_value(v).unwrap()
}

async fn conn() -> Result<MultiplexedConnection> {
    let client = redis::Client::open(URL)?;
    Ok(timeout(
        Duration::from_secs(5),
        client.get_multiplexed_async_connection(),
    )
    .await
    .context("redis connect timed out")??)
}

async fn xadd(
    c: &mut MultiplexedConnection,
    stream: &str,
    fields: &[(&str, &str)],
) -> Result<String> {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(stream).arg("*");
    for (k, v) in fields {
        cmd.arg(*k).arg(*v);
    }
    Ok(cmd.query_async(c).await?)
}

async fn pending(c: &mut MultiplexedConnection, stream: &str) -> Result<u64> {
    let v: Value = redis::cmd("XPENDING")
        .arg(stream)
        .arg("rc-test")
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

async fn wait_pending_zero(c: &mut MultiplexedConnection, stream: &str) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let n = pending(c, stream).await?;
        if n == 0 {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{n} entries still pending on {stream}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn cleanup(c: &mut MultiplexedConnection, stream: &str) {
    let _: Result<(), _> = redis::cmd("DEL")
        .arg(stream)
        .arg(format!("{stream}:rejected"))
        .query_async(c)
        .await;
}

struct Running {
    rx: mpsc::Receiver<Delivery>,
    stats: Arc<SourceStats>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

async fn start(cfg: RedisConfig) -> Result<Running> {
    let src = RedisSource::new(cfg)?;
    let stats = src.stats();
    let (tx, rx) = mpsc::channel(8);
    let shutdown = CancellationToken::new();
    let run = Box::new(src).run(tx, shutdown.clone());
    let task = tokio::spawn(async move {
        run.await.expect("source run");
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !stats.is_connected() {
        if tokio::time::Instant::now() > deadline {
            bail!("redis source never connected");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(Running {
        rx,
        stats,
        shutdown,
        task,
    })
}

impl Running {
    async fn recv(&mut self) -> Result<Delivery> {
        timeout(Duration::from_secs(5), self.rx.recv())
            .await
            .context("no delivery within 5s")?
            .context("source closed")
    }

    async fn stop(self) -> Result<Arc<SourceStats>> {
        self.shutdown.cancel();
        timeout(Duration::from_secs(10), self.task)
            .await
            .context("source did not stop")??;
        Ok(self.stats)
    }
}

fn event(i: usize) -> String {
    format!(
        r#"{{"id":"r{i}","type":"app.login","at":"2026-03-02T09:00:00+08:00","member":"m{i}"}}"#
    )
}

fn id_of(d: &Delivery) -> String {
    let v: serde_json::Value = serde_json::from_slice(&d.payload).unwrap();
    v["id"].as_str().unwrap().to_string()
}

/// XADD → delivered → acked (out of order, batched) → nothing left pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_and_acks_until_nothing_is_pending() -> Result<()> {
    let stream = format!("rc-test-ack-{}", suffix());
    let mut c = conn().await?;
    const N: usize = 100;
    for i in 0..N / 2 {
        xadd(&mut c, &stream, &[("event", &event(i))]).await?;
    }
    let mut src = start(config(&stream, serde_json::json!({}))).await?;
    for i in N / 2..N {
        xadd(&mut c, &stream, &[("event", &event(i))]).await?;
    }
    let mut seen = BTreeSet::new();
    let mut held = Vec::new();
    while seen.len() < N {
        let d = src.recv().await?;
        assert_eq!(&*d.source, "redis");
        seen.insert(id_of(&d));
        held.push(d);
        if held.len() >= 5 {
            while let Some(d) = held.pop() {
                d.ack.ack();
            }
        }
    }
    while let Some(d) = held.pop() {
        d.ack.ack();
    }
    wait_pending_zero(&mut c, &stream).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let snap = src.stats.snapshot();
    assert_eq!(snap.lag, Some(0), "group lag is read from XINFO GROUPS");
    let stats = src.stop().await?;
    let snap = stats.snapshot();
    assert_eq!(
        (snap.received, snap.acked, snap.rejected),
        (N as u64, N as u64, 0)
    );
    cleanup(&mut c, &stream).await;
    Ok(())
}

/// Entries left pending by a consumer that died are claimed and delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_entries_pending_on_a_dead_consumer() -> Result<()> {
    let stream = format!("rc-test-claim-{}", suffix());
    let mut c = conn().await?;
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg("rc-test")
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut c)
        .await?;
    for i in 0..5 {
        xadd(&mut c, &stream, &[("event", &event(i))]).await?;
    }
    // A consumer reads them and dies without acking.
    let _: Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("rc-test")
        .arg("dead-consumer")
        .arg("COUNT")
        .arg(10)
        .arg("STREAMS")
        .arg(&stream)
        .arg(">")
        .query_async(&mut c)
        .await?;
    assert_eq!(pending(&mut c, &stream).await?, 5);
    xadd(&mut c, &stream, &[("event", &event(5))]).await?;
    let cfg = config(
        &stream,
        serde_json::json!({"consumer": "live", "claim_idle": "300ms", "claim_interval": "200ms"}),
    );
    let mut src = start(cfg).await?;
    let mut seen = BTreeSet::new();
    while seen.len() < 6 {
        let d = src.recv().await?;
        seen.insert(id_of(&d));
        d.ack.ack();
    }
    let want: BTreeSet<String> = (0..6).map(|i| format!("r{i}")).collect();
    assert_eq!(seen, want);
    wait_pending_zero(&mut c, &stream).await?;
    src.stop().await?;
    cleanup(&mut c, &stream).await;
    Ok(())
}

async fn rejected_entries(
    c: &mut MultiplexedConnection,
    stream: &str,
) -> Result<Vec<HashMap<String, String>>> {
    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(format!("{stream}:rejected"))
        .arg("-")
        .arg("+")
        .query_async(c)
        .await?;
    Ok(reply
        .ids
        .into_iter()
        .map(|e| {
            e.map
                .into_iter()
                .map(|(k, v)| (k, redis::from_redis_value::<String>(v).unwrap()))
                .collect()
        })
        .collect())
}

/// Entries without `event`, and entries the pipeline rejects, land in the
/// rejected stream with their reason and id; nothing stays pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_entries_land_in_the_rejected_stream() -> Result<()> {
    let stream = format!("rc-test-rej-{}", suffix());
    let mut c = conn().await?;
    let no_event = xadd(&mut c, &stream, &[("payload", "x")]).await?;
    let bad = xadd(&mut c, &stream, &[("event", "{not json")]).await?;
    xadd(&mut c, &stream, &[("event", &event(1))]).await?;
    let mut src = start(config(&stream, serde_json::json!({}))).await?;
    for _ in 0..2 {
        let d = src.recv().await?;
        if &d.payload[..] == b"{not json" {
            d.ack.reject("invalid json at line 1 column 2".into());
        } else {
            assert_eq!(id_of(&d), "r1");
            d.ack.ack();
        }
    }
    wait_pending_zero(&mut c, &stream).await?;
    let rejected = rejected_entries(&mut c, &stream).await?;
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    let by_id: HashMap<&str, &HashMap<String, String>> =
        rejected.iter().map(|e| (e["id"].as_str(), e)).collect();
    let e = by_id[no_event.as_str()];
    assert_eq!(e["reason"], "entry has no `event` field");
    assert!(!e.contains_key("event"));
    let e = by_id[bad.as_str()];
    assert_eq!(e["reason"], "invalid json at line 1 column 2");
    assert_eq!(e["event"], "{not json");
    let stats = src.stop().await?;
    let snap = stats.snapshot();
    assert_eq!((snap.acked, snap.rejected), (1, 2));
    cleanup(&mut c, &stream).await;
    Ok(())
}
