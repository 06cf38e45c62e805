//! End-to-end tests of `redcloud run` against the real RabbitMQ on
//! 127.0.0.1:5672 (guest/guest): the real binary consumes a queue of its own
//! (unique names per test), applies, acknowledges, dead-letters, reconnects.

mod daemon_support;

use std::time::Duration;

use anyhow::{bail, Context, Result};
use daemon_support::{ev, suffix, Daemon, Opts};
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeleteOptions,
    QueueDeleteOptions,
};
use lapin::types::AMQPValue;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use redcloud_connectors::source::amqp::REASON_HEADER;
use tokio::task::block_in_place;

const URI: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const AT: &str = "2026-03-02T09:00:00+08:00";

struct Names {
    source: String,
    exchange: String,
    queue: String,
    dlx: String,
    dlq: String,
}

impl Names {
    fn new(tag: &str) -> Names {
        let s = suffix();
        Names {
            source: format!("amqp-{tag}-{s}"),
            exchange: format!("rc-daemon-{tag}-{s}"),
            queue: format!("rc-daemon-{tag}-{s}"),
            dlx: format!("rc-daemon-{tag}-{s}.dlx"),
            dlq: format!("rc-daemon-{tag}-{s}.dlq"),
        }
    }

    fn toml(&self) -> String {
        format!(
            r#"[sources.amqp]
name = "{}"
uri = "{URI}"
exchange = "{}"
queue = "{}"
dead_letter_exchange = "{}"
dead_letter_queue = "{}"
prefetch = 200
ack_batch = 50
ack_interval = "20ms"
reconnect_initial = "100ms"
reconnect_max = "1s"
drain_timeout = "5s"
lag_interval = "200ms"
"#,
            self.source, self.exchange, self.queue, self.dlx, self.dlq
        )
    }

    fn series(&self, metric: &str) -> String {
        format!("{metric}{{source=\"{}\"}}", self.source)
    }
}

async fn publisher() -> Result<(Connection, Channel)> {
    let conn = tokio::time::timeout(
        Duration::from_secs(10),
        Connection::connect(URI, ConnectionProperties::default()),
    )
    .await
    .context("publisher connect timed out")??;
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    Ok((conn, ch))
}

async fn publish(ch: &Channel, exchange: &str, body: &str) -> Result<()> {
    ch.basic_publish(
        exchange.into(),
        "events.test".into(),
        BasicPublishOptions::default(),
        body.as_bytes(),
        BasicProperties::default().with_delivery_mode(2),
    )
    .await?
    .await?;
    Ok(())
}

async fn cleanup(ch: &Channel, n: &Names) {
    for q in [&n.queue, &n.dlq] {
        let _ = ch
            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    for x in [&n.exchange, &n.dlx] {
        let _ = ch
            .exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default())
            .await;
    }
}

/// `messages` (ready + unacknowledged) of a queue, from the broker.
fn queue_messages(queue: &str) -> Result<u64> {
    let out = std::process::Command::new("rabbitmqctl")
        .args(["list_queues", "name", "messages", "-q"])
        .output()
        .context("running rabbitmqctl")?;
    let text = String::from_utf8_lossy(&out.stdout);
    for line in text.lines() {
        let mut f = line.split('\t');
        if f.next() == Some(queue) {
            return Ok(f.next().unwrap_or("").trim().parse()?);
        }
    }
    bail!("queue {queue} not listed");
}

fn wait_metric(d: &Daemon, series: &str, want: f64, limit: Duration) -> Result<()> {
    d.wait(limit, series, || {
        Ok(d.metric(series)?.is_some_and(|v| v >= want))
    })?;
    let got = d.metric(series)?.unwrap_or(0.0);
    if got != want {
        bail!("{series} = {got}, want {want}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_events_are_applied_acked_and_bad_ones_dead_lettered() -> Result<()> {
    let n = Names::new("apply");
    let toml = n.toml();
    let d = block_in_place(|| {
        let d = Daemon::start(Opts {
            extra: &toml,
            ..Opts::default()
        })?;
        d.wait_ready(Duration::from_secs(20))?;
        anyhow::Ok(d)
    })?;
    let (conn, ch) = publisher().await?;
    let mut events = vec![
        ev(
            "o1",
            "org.upserted",
            AT,
            r#""org":"c1","parent":null,"level":"city","leader":null"#,
        ),
        ev("e1", "member.upserted", AT, r#""member":"m1","org":"c1""#),
        ev("e2", "app.login", AT, r#""member":"m1""#),
    ];
    for i in 0..200 {
        events.push(ev(
            &format!("a{i}"),
            "activity.recorded",
            AT,
            &format!(r#""member":"m{i}","activity":"quiz""#),
        ));
    }
    for (i, e) in events.iter().enumerate() {
        publish(&ch, &n.exchange, e).await?;
        if i == 10 {
            publish(&ch, &n.exchange, "{not json").await?;
        }
    }
    publish(&ch, &n.exchange, &ev("x1", "member.exploded", AT, "")).await?;

    block_in_place(|| {
        wait_metric(
            &d,
            &n.series("redcloud_source_acked_total"),
            203.0,
            Duration::from_secs(20),
        )?;
        wait_metric(
            &d,
            &n.series("redcloud_source_rejected_total"),
            2.0,
            Duration::from_secs(10),
        )?;
        assert_eq!(
            d.metric(&n.series("redcloud_events_applied_total"))?,
            Some(203.0)
        );
        assert_eq!(
            d.metric(&format!(
                "redcloud_events_rejected_total{{source=\"{}\",reason=\"invalid_json\"}}",
                n.source
            ))?,
            Some(1.0)
        );
        assert_eq!(
            d.metric(&format!(
                "redcloud_events_rejected_total{{source=\"{}\",reason=\"unknown_type\"}}",
                n.source
            ))?,
            Some(1.0)
        );
        let m = d.get_json("/v1/members/m1")?;
        assert_eq!(m["enrolled"], true, "{m}");
        anyhow::Ok(())
    })?;

    // Both bad messages are in the dead-letter queue with their reasons.
    let mut reasons = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while reasons.len() < 2 {
        if tokio::time::Instant::now() > deadline {
            bail!("dead-letter queue has {reasons:?}");
        }
        match ch
            .basic_get(n.dlq.as_str().into(), BasicGetOptions { no_ack: true })
            .await?
        {
            Some(m) => {
                let headers = m.delivery.properties.headers().clone().unwrap_or_default();
                let reason = match headers.inner().get(REASON_HEADER) {
                    Some(AMQPValue::LongString(s)) => s.to_string(),
                    other => format!("{other:?}"),
                };
                reasons.push(reason);
            }
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    reasons.sort();
    assert!(reasons[0].starts_with("not valid json"), "{reasons:?}");
    assert!(reasons[1].starts_with("unknown `type`"), "{reasons:?}");

    // The consumer keeps going after the rejects.
    publish(
        &ch,
        &n.exchange,
        &ev("e3", "member.upserted", AT, r#""member":"m2","org":"c1""#),
    )
    .await?;
    let mut d = d;
    block_in_place(|| {
        wait_metric(
            &d,
            &n.series("redcloud_source_acked_total"),
            204.0,
            Duration::from_secs(10),
        )?;
        let m = d.get_json("/v1/members/m2")?;
        assert_eq!(m["state"], "active");
        let st = d.terminate(Duration::from_secs(20))?;
        assert!(st.success(), "{st:?}");
        // Everything was acknowledged: nothing ready or unacknowledged is left.
        assert_eq!(queue_messages(&n.queue)?, 0);
        anyhow::Ok(())
    })?;
    cleanup(&ch, &n).await;
    let _ = conn.close(200, "done".into()).await;
    Ok(())
}

/// Closes, from the broker side, the connection named exactly `name`.
fn close_connection_named(name: &str) -> Result<usize> {
    let out = std::process::Command::new("rabbitmqctl")
        .args(["list_connections", "pid", "client_properties", "-q"])
        .output()
        .context("running rabbitmqctl")?;
    let listing = String::from_utf8_lossy(&out.stdout);
    let needle = format!("{{\"connection_name\",\"{name}\"}}");
    let mut closed = 0;
    for line in listing.lines().filter(|l| l.contains(&needle)) {
        let pid = line.split('\t').next().context("connection pid")?;
        let st = std::process::Command::new("rabbitmqctl")
            .args(["close_connection", pid, "redcloud daemon test"])
            .status()?;
        if st.success() {
            closed += 1;
        }
    }
    Ok(closed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_reconnects_after_the_broker_closes_the_connection() -> Result<()> {
    let n = Names::new("reconnect");
    let toml = n.toml();
    let mut d = block_in_place(|| {
        let d = Daemon::start(Opts {
            extra: &toml,
            ..Opts::default()
        })?;
        d.wait_ready(Duration::from_secs(20))?;
        anyhow::Ok(d)
    })?;
    let (conn, ch) = publisher().await?;
    let upsert = |i: usize| {
        ev(
            &format!("u{i}"),
            "member.upserted",
            AT,
            &format!(r#""member":"m{i}","org":"c1""#),
        )
    };
    for i in 0..300 {
        publish(&ch, &n.exchange, &upsert(i)).await?;
    }
    block_in_place(|| {
        d.wait(Duration::from_secs(20), "first acks", || {
            Ok(d.metric(&n.series("redcloud_source_acked_total"))?
                .is_some_and(|v| v >= 50.0))
        })?;
        let closed = close_connection_named(&format!("redcloud:{}", n.source))?;
        assert_eq!(closed, 1, "exactly the daemon's connection is closed");
        anyhow::Ok(())
    })?;
    for i in 300..600 {
        publish(&ch, &n.exchange, &upsert(i)).await?;
    }
    block_in_place(|| {
        // Every event applied once (redeliveries are ignored as duplicates).
        wait_metric(
            &d,
            &n.series("redcloud_events_applied_total"),
            600.0,
            Duration::from_secs(40),
        )?;
        assert!(
            d.metric(&n.series("redcloud_source_reconnects_total"))?
                .is_some_and(|v| v >= 1.0),
            "no reconnect counted"
        );
        d.wait_ready(Duration::from_secs(10))?;
        for i in [0, 299, 300, 599] {
            let m = d.get_json(&format!("/v1/members/m{i}"))?;
            assert_eq!(m["state"], "active", "m{i}");
        }
        let st = d.terminate(Duration::from_secs(20))?;
        assert!(st.success(), "{st:?}");
        assert_eq!(queue_messages(&n.queue)?, 0);
        anyhow::Ok(())
    })?;
    cleanup(&ch, &n).await;
    let _ = conn.close(200, "done".into()).await;
    Ok(())
}
