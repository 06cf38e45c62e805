//! Bare-broker baselines, measured in the same run as the daemon targets with
//! the same messages and the same publisher: AMQP publish (with confirms) →
//! consume on a temporary queue, and Redis `XADD` → `XREADGROUP` on a temporary stream, without the
//! daemon. The daemon's throughput is reported as a ratio of these.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};

use crate::measure::{histogram, Percentiles};
use crate::publish::Item;
use crate::report::Baseline;

/// AMQP publish → consume, through a durable queue bound to a temporary
/// exchange: the messages are published by the same pipelined publisher the
/// `amqp` target uses ([`crate::publish::amqp`]: one channel, confirms
/// outstanding up to `window`, items of `batch`, persistent), and consumed by
/// a bare lapin consumer acknowledging as the daemon's source does by default
/// (prefetch 1000, a `multiple` ack every 100). The rate is messages from the
/// first publish to the last delivery; latency is publish to delivery.
pub async fn amqp(
    uri: &str,
    messages: &[Vec<u8>],
    batch: usize,
    window: usize,
) -> Result<Baseline> {
    let conn = Connection::connect(
        uri,
        ConnectionProperties::default().with_connection_name("redcloud-loadtest:baseline".into()),
    )
    .await
    .context("baseline: cannot connect to the amqp broker")?;
    // The consumer has a connection of its own, as the daemon does: flow
    // control on the publisher's connection must not hold up its acks.
    let cons_conn = Connection::connect(
        uri,
        ConnectionProperties::default()
            .with_connection_name("redcloud-loadtest:baseline-consumer".into()),
    )
    .await
    .context("baseline: cannot connect to the amqp broker")?;
    let publ = conn.create_channel().await?;
    publ.confirm_select(ConfirmSelectOptions::default()).await?;
    let cons = cons_conn.create_channel().await?;
    cons.basic_qos(1000, BasicQosOptions::default()).await?;
    let exchange = format!("redcloud.loadtest.baseline.{}", std::process::id());
    let queue = exchange.clone();
    publ.exchange_declare(
        exchange.as_str().into(),
        ExchangeKind::Topic,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await?;
    // Durable like the daemon's queue, so persistent messages cost the same.
    cons.queue_declare(
        queue.as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        },
        FieldTable::default(),
    )
    .await?;
    cons.queue_bind(
        queue.as_str().into(),
        exchange.as_str().into(),
        "#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    let mut consumer = cons
        .basic_consume(
            queue.as_str().into(),
            "baseline".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let batch = batch.max(1);
    let n_items = messages.len().div_ceil(batch);
    // Publish instant of each item, set just before it is handed over.
    let sent: Arc<Mutex<Vec<Instant>>> = Arc::new(Mutex::new(Vec::with_capacity(n_items)));
    let total = messages.len();
    let sent2 = sent.clone();
    let reader = tokio::spawn(async move {
        let mut h = histogram();
        let mut got = 0usize;
        let mut last = Instant::now();
        while got < total {
            let Some(d) = consumer.next().await else {
                break;
            };
            let d = d?;
            let now = Instant::now();
            if let Some(t) = sent2.lock().ok().and_then(|s| s.get(got / batch).copied()) {
                h.saturating_record(now.duration_since(t).as_nanos().max(1) as u64);
            }
            got += 1;
            last = now;
            if got.is_multiple_of(100) || got == total {
                d.acker.ack(BasicAckOptions { multiple: true }).await?;
            }
        }
        Ok::<_, anyhow::Error>((got, last, h))
    });
    let (work_tx, work_rx) = tokio::sync::mpsc::channel::<Item>(16);
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let publisher = tokio::spawn(crate::publish::amqp(
        publ.clone(),
        exchange.clone(),
        Some("event".into()),
        window,
        work_rx,
        done_tx,
    ));
    let start = Instant::now();
    for (k, chunk) in messages.chunks(batch).enumerate() {
        let item = Item::from_messages((k * batch) as u64, chunk);
        if let Ok(mut s) = sent.lock() {
            s.push(Instant::now());
        }
        if work_tx.send(item).await.is_err() {
            break;
        }
    }
    drop(work_tx);
    let mut confirmed = start;
    while let Some((_, _, at, r)) = done_rx.recv().await {
        r?;
        confirmed = at;
    }
    publisher.await.context("baseline publisher panicked")??;
    let (got, last, h) = reader.await.context("baseline consumer panicked")??;
    let _ = cons
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;
    let _ = publ
        .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
        .await;
    let _ = conn.close(200, "done".into()).await;
    let _ = cons_conn.close(200, "done".into()).await;
    if got < total {
        bail!("baseline: consumed {got} of {total} messages");
    }
    Ok(Baseline {
        kind: "amqp".into(),
        messages: total as u64,
        rate: total as f64 / last.duration_since(start).as_secs_f64().max(1e-9),
        latency: Some(Percentiles::of(&h)),
        publish_rate: Some(total as f64 / confirmed.duration_since(start).as_secs_f64().max(1e-9)),
    })
}

/// Redis `XADD` (pipelined by `batch`, as the `redis` target sends) →
/// `XREADGROUP` (`COUNT 500`) + `XACK` on a temporary stream.
pub async fn redis(url: &str, messages: &[Vec<u8>], batch: usize) -> Result<Baseline> {
    let client = redis::Client::open(url).context("baseline: bad redis url")?;
    let mut p = client
        .get_multiplexed_async_connection()
        .await
        .context("baseline: cannot connect to redis")?;
    let mut c = client.get_multiplexed_async_connection().await?;
    let key = format!("redcloud:loadtest:baseline:{}", std::process::id());
    let _: () = redis::cmd("DEL").arg(&key).query_async(&mut p).await?;
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&key)
        .arg("baseline")
        .arg("$")
        .arg("MKSTREAM")
        .query_async(&mut p)
        .await?;
    let sent: Arc<Mutex<Vec<Instant>>> = Arc::new(Mutex::new(Vec::with_capacity(messages.len())));
    let total = messages.len();
    let (sent2, key2) = (sent.clone(), key.clone());
    let reader = tokio::spawn(async move {
        let mut h = histogram();
        let mut got = 0usize;
        let mut last = Instant::now();
        while got < total {
            let reply: redis::streams::StreamReadReply = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg("baseline")
                .arg("c1")
                .arg("COUNT")
                .arg(500)
                .arg("BLOCK")
                .arg(2000)
                .arg("STREAMS")
                .arg(&key2)
                .arg(">")
                .query_async(&mut c)
                .await?;
            let now = Instant::now();
            let mut ids = Vec::new();
            for k in reply.keys {
                for id in k.ids {
                    if let Some(t) = sent2.lock().ok().and_then(|s| s.get(got).copied()) {
                        h.saturating_record(now.duration_since(t).as_nanos().max(1) as u64);
                    }
                    got += 1;
                    ids.push(id.id);
                }
            }
            if ids.is_empty() {
                bail!("baseline: no entry read for 2 s ({got} of {total})");
            }
            last = now;
            let _: u64 = redis::cmd("XACK")
                .arg(&key2)
                .arg("baseline")
                .arg(&ids)
                .query_async(&mut c)
                .await?;
        }
        Ok::<_, anyhow::Error>((got, last, h))
    });
    let start = Instant::now();
    for chunk in messages.chunks(batch.max(1)) {
        let mut pipe = redis::pipe();
        for m in chunk {
            pipe.cmd("XADD").arg(&key).arg("*").arg("event").arg(&m[..]);
        }
        if let Ok(mut s) = sent.lock() {
            let now = Instant::now();
            s.extend(std::iter::repeat_n(now, chunk.len()));
        }
        let _: Vec<String> = pipe.query_async(&mut p).await?;
    }
    let published = start.elapsed();
    let (got, last, h) = reader.await.context("baseline reader panicked")??;
    let _: () = redis::cmd("DEL").arg(&key).query_async(&mut p).await?;
    Ok(Baseline {
        kind: "redis".into(),
        messages: got as u64,
        rate: got as f64 / last.duration_since(start).as_secs_f64().max(1e-9),
        latency: Some(Percentiles::of(&h)),
        publish_rate: Some(got as f64 / published.as_secs_f64().max(1e-9)),
    })
}
