//! AMQP source against the real RabbitMQ on 127.0.0.1:5672 (guest/guest).
//!
//! Each test declares its own exchange and queues (random suffix) and deletes them
//! at the end; every wait is bounded so a broken broker fails the test.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeleteOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use redcloud_connectors::source::amqp::{
    AmqpConfig, AmqpSource, REASON_HEADER, ROUTING_KEY_HEADER,
};
use redcloud_connectors::source::{Delivery, Source, SourceStats};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

const URI: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

fn suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{}-{nanos:x}", std::process::id())
}

fn config(tag: &str) -> AmqpConfig {
    let s = suffix();
    let cfg: AmqpConfig = serde_json::from_value(serde_json::json!({
        "uri": URI,
        "exchange": format!("rc-test-{tag}-{s}"),
        "queue": format!("rc-test-{tag}-{s}"),
        "dead_letter_exchange": format!("rc-test-{tag}-{s}.dlx"),
        "dead_letter_queue": format!("rc-test-{tag}-{s}.dlq"),
        "binding_keys": ["events.#"],
        "prefetch": 50,
        "ack_batch": 10,
        "ack_interval": "20ms",
        "reconnect_initial": "50ms",
        "reconnect_max": "500ms",
        "drain_timeout": "5s",
        "lag_interval": "100ms",
    }))
    .unwrap();
    cfg
}

struct Running {
    rx: mpsc::Receiver<Delivery>,
    stats: Arc<SourceStats>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
    name: Arc<str>,
}

async fn start(cfg: &AmqpConfig, name: &str) -> Result<Running> {
    let src = AmqpSource::new(cfg.clone())?.with_name(name.to_string());
    let stats = src.stats();
    let name = src.name();
    let (tx, rx) = mpsc::channel(16);
    let shutdown = CancellationToken::new();
    let run = Box::new(src).run(tx, shutdown.clone());
    let task = tokio::spawn(async move {
        run.await.expect("source run");
    });
    wait_for(Duration::from_secs(10), || stats.is_connected())
        .await
        .context("source never connected")?;
    Ok(Running {
        rx,
        stats,
        shutdown,
        task,
        name,
    })
}

impl Running {
    /// Cancels the source and acks whatever is still on its way while it drains.
    async fn stop(mut self) -> Result<Arc<SourceStats>> {
        self.shutdown.cancel();
        let mut task = self.task;
        timeout(Duration::from_secs(10), async {
            loop {
                tokio::select! {
                    r = &mut task => return r,
                    Some(d) = self.rx.recv() => d.ack.ack(),
                }
            }
        })
        .await
        .context("source did not stop")??;
        Ok(self.stats)
    }

    async fn recv(&mut self) -> Result<Delivery> {
        timeout(Duration::from_secs(10), self.rx.recv())
            .await
            .context("no delivery within 10s")?
            .context("source closed")
    }
}

async fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> Result<()> {
    let deadline = tokio::time::Instant::now() + limit;
    while !cond() {
        if tokio::time::Instant::now() > deadline {
            bail!("condition not met within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

async fn publisher() -> Result<(Connection, Channel)> {
    let conn = timeout(
        Duration::from_secs(10),
        Connection::connect(URI, ConnectionProperties::default()),
    )
    .await
    .context("publisher connect timed out")??;
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    Ok((conn, ch))
}

async fn publish(ch: &Channel, cfg: &AmqpConfig, key: &str, body: &[u8]) -> Result<()> {
    ch.basic_publish(
        cfg.exchange.as_str().into(),
        key.into(),
        BasicPublishOptions::default(),
        body,
        BasicProperties::default().with_delivery_mode(2),
    )
    .await?
    .await?;
    Ok(())
}

fn event(i: usize) -> Vec<u8> {
    format!(
        r#"{{"id":"e{i}","type":"app.login","at":"2026-03-02T09:00:00+08:00","member":"m{i}"}}"#
    )
    .into_bytes()
}

fn id_of(d: &Delivery) -> String {
    let v: serde_json::Value = serde_json::from_slice(&d.payload).unwrap();
    v["id"].as_str().unwrap().to_string()
}

async fn ready_count(ch: &Channel, queue: &str) -> Result<u32> {
    let q = ch
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok(q.message_count())
}

async fn cleanup(ch: &Channel, cfg: &AmqpConfig) {
    for q in [&cfg.queue, &cfg.dead_letter_queue] {
        let _ = ch
            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    for x in [&cfg.exchange, &cfg.dead_letter_exchange] {
        let _ = ch
            .exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default())
            .await;
    }
}

/// N events published with a real client arrive; acked out of order, the queue drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_and_acks_out_of_order_until_the_queue_drains() -> Result<()> {
    let cfg = config("drain");
    let mut src = start(&cfg, "amqp-drain").await?;
    let (pconn, ch) = publisher().await?;
    const N: usize = 300;
    for i in 0..N {
        publish(&ch, &cfg, "events.member", &event(i)).await?;
    }
    let mut seen = BTreeSet::new();
    let mut held: Vec<Delivery> = Vec::new();
    while seen.len() < N {
        let d = src.recv().await?;
        assert_eq!(&*d.source, "amqp-drain");
        seen.insert(id_of(&d));
        held.push(d);
        // Complete in reverse order of arrival, several at a time, as shards do.
        if held.len() >= 7 {
            while let Some(d) = held.pop() {
                d.ack.ack();
            }
        }
    }
    while let Some(d) = held.pop() {
        d.ack.duplicate();
    }
    assert_eq!(seen.len(), N);
    // Every ack reaches the broker: nothing is ready or unacknowledged after shutdown.
    let stats = src.stop().await?;
    let snap = stats.snapshot();
    assert_eq!(snap.received, N as u64);
    assert_eq!(snap.acked, N as u64);
    assert!(!snap.connected);
    wait_for_ready(&ch, &cfg.queue, 0).await?;
    cleanup(&ch, &cfg).await;
    let _ = pconn.close(200, "done".into()).await;
    Ok(())
}

/// `take_gap`: a message after a quiet spell is taken at once; the ones
/// that come within the gap after a take wait for it and come together.
/// With the gap off, the second comes at once too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_load_messages_wait_for_the_take_gap_but_one_after_a_quiet_spell_does_not(
) -> Result<()> {
    let (pconn, ch) = publisher().await?;
    for gap in [Duration::from_millis(600), Duration::ZERO] {
        let mut cfg = config("gap");
        cfg.take_gap = gap;
        let mut src = start(&cfg, "amqp-gap").await?;
        // Quiet since the connect: the first message is taken at once.
        tokio::time::sleep(Duration::from_millis(700)).await;
        let t = tokio::time::Instant::now();
        publish(&ch, &cfg, "events.member", &event(0)).await?;
        let a = src.recv().await?;
        let first = t.elapsed();
        // Two more right behind it, within the gap.
        let t = tokio::time::Instant::now();
        publish(&ch, &cfg, "events.member", &event(1)).await?;
        publish(&ch, &cfg, "events.member", &event(2)).await?;
        let b = src.recv().await?;
        let second = t.elapsed();
        let c = src.recv().await?;
        let third = t.elapsed();
        assert_eq!(
            [id_of(&a), id_of(&b), id_of(&c)],
            ["e0", "e1", "e2"].map(String::from)
        );
        assert!(
            first < Duration::from_millis(400),
            "{gap:?}: first after {first:?}"
        );
        if gap.is_zero() {
            assert!(
                second < Duration::from_millis(400),
                "no gap: second after {second:?}"
            );
        } else {
            assert!(
                second >= Duration::from_millis(500),
                "the second waited for the gap: {second:?}"
            );
            assert!(
                third - second < Duration::from_millis(300),
                "the third came with it: {:?} later",
                third - second
            );
        }
        for d in [a, b, c] {
            d.ack.ack();
        }
        src.stop().await?;
        cleanup(&ch, &cfg).await;
    }
    let _ = pconn.close(200, "done".into()).await;
    Ok(())
}

async fn wait_for_ready(ch: &Channel, queue: &str, want: u32) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let n = ready_count(ch, queue).await?;
        if n == want {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("queue {queue} has {n} ready messages, want {want}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A rejected message lands in the dead-letter queue with its reason; consumption goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_messages_are_dead_lettered_with_a_reason() -> Result<()> {
    let cfg = config("dlq");
    let mut src = start(&cfg, "amqp-dlq").await?;
    let (pconn, ch) = publisher().await?;
    publish(&ch, &cfg, "events.a", &event(1)).await?;
    publish(&ch, &cfg, "events.bad", b"{not json").await?;
    publish(&ch, &cfg, "events.a", &event(2)).await?;
    for _ in 0..3 {
        let d = src.recv().await?;
        if &d.payload[..] == b"{not json" {
            d.ack.reject("invalid json at line 1 column 2".into());
        } else {
            d.ack.ack();
        }
    }
    let got = {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(m) = ch
                .basic_get(
                    cfg.dead_letter_queue.as_str().into(),
                    BasicGetOptions { no_ack: true },
                )
                .await?
            {
                break m;
            }
            if tokio::time::Instant::now() > deadline {
                bail!("nothing reached the dead-letter queue");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    assert_eq!(got.delivery.data, b"{not json");
    assert_eq!(got.delivery.routing_key.as_str(), "events.bad");
    let headers = got
        .delivery
        .properties
        .headers()
        .clone()
        .context("dead-lettered message has no headers")?;
    let header = |k: &str| match headers.inner().get(k) {
        Some(AMQPValue::LongString(s)) => Some(s.to_string()),
        _ => None,
    };
    assert_eq!(
        header(REASON_HEADER).as_deref(),
        Some("invalid json at line 1 column 2")
    );
    assert_eq!(header(ROUTING_KEY_HEADER).as_deref(), Some("events.bad"));

    // Consumption continues after the reject.
    publish(&ch, &cfg, "events.a", &event(3)).await?;
    let d = src.recv().await?;
    assert_eq!(id_of(&d), "e3");
    d.ack.ack();

    let stats = src.stop().await?;
    let snap = stats.snapshot();
    assert_eq!((snap.acked, snap.rejected), (3, 1));
    wait_for_ready(&ch, &cfg.queue, 0).await?;
    wait_for_ready(&ch, &cfg.dead_letter_queue, 0).await?;
    cleanup(&ch, &cfg).await;
    let _ = pconn.close(200, "done".into()).await;
    Ok(())
}

/// Closes, from the broker side, every connection whose name contains `needle`.
async fn close_connections_named(needle: &str) -> Result<usize> {
    let out = tokio::process::Command::new("rabbitmqctl")
        .args(["list_connections", "pid", "client_properties", "-q"])
        .output()
        .await
        .context("running rabbitmqctl")?;
    let listing = String::from_utf8_lossy(&out.stdout);
    let mut closed = 0;
    for line in listing.lines().filter(|l| l.contains(needle)) {
        let pid = line.split('\t').next().context("connection pid")?;
        let st = tokio::process::Command::new("rabbitmqctl")
            .args(["close_connection", pid, "test"])
            .status()
            .await?;
        if st.success() {
            closed += 1;
        }
    }
    Ok(closed)
}

/// The broker closes the connection mid-stream: the source reconnects and every
/// message is eventually delivered and acknowledged; none is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_the_broker_closes_the_connection() -> Result<()> {
    let cfg = config("reconnect");
    let name = format!("amqp-reconnect-{}", suffix());
    let mut src = start(&cfg, &name).await?;
    let (pconn, ch) = publisher().await?;
    const N: usize = 400;
    for i in 0..N {
        publish(&ch, &cfg, "events.member", &event(i)).await?;
    }
    let mut seen = HashSet::new();
    let mut closed = false;
    let mut received = 0usize;
    timeout(Duration::from_secs(40), async {
        while seen.len() < N {
            let d = src.recv().await?;
            received += 1;
            seen.insert(id_of(&d));
            if !closed && seen.len() == N / 4 {
                let conn_name = format!("redcloud:{}", src.name);
                let n = close_connections_named(&conn_name).await?;
                assert_eq!(n, 1, "exactly our connection is closed");
                closed = true;
            }
            // Acks of the closed connection's deliveries are dropped silently;
            // the broker redelivers those messages to the new connection.
            d.ack.ack();
        }
        anyhow::Ok(())
    })
    .await
    .context("not every message arrived within 40s")??;
    assert!(closed);
    wait_for(Duration::from_secs(10), || {
        src.stats.snapshot().reconnects >= 1
    })
    .await?;
    // Keep acking redeliveries until the queue is empty and nothing is in flight.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        while let Ok(d) = src.rx.try_recv() {
            received += 1;
            d.ack.ack();
        }
        if ready_count(&ch, &cfg.queue).await? == 0 {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("queue never drained after the reconnect");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = src.stop().await?;
    let snap = stats.snapshot();
    assert!(snap.reconnects >= 1);
    assert!(received >= N);
    // After a clean stop nothing comes back: every message was acknowledged.
    wait_for_ready(&ch, &cfg.queue, 0).await?;
    cleanup(&ch, &cfg).await;
    let _ = pconn.close(200, "done".into()).await;
    Ok(())
}
