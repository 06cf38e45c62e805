//! How fast does `redcloud run` drain a RabbitMQ queue, compared with a bare
//! lapin consumer on the same broker and the same messages?
//!
//! ```text
//! cargo build --release --bin redcloud
//! cargo run --release --example amqp_throughput -- [N] [DAEMON_BINARY] [SHARDS]
//! ```
//!
//! N (default 200000) `activity.recorded` events for 10000 enrolled members
//! (after their `org.upserted`, `member.upserted` and `app.login`) are
//! published (persistent, confirmed) to two fresh queues. Then:
//!
//! (a) a bare lapin consumer, prefetch 1000, acks with `multiple` every 100
//!     messages, until it has seen every message;
//! (b) the daemon (`DAEMON_BINARY`, default `target/release/redcloud`) with
//!     `[sources.amqp] prefetch = 1000, ack_batch = 100`, timed from when it is
//!     ready until `redcloud_source_acked_total` reaches the message count.
//!
//! Prints messages per second of both and their ratio. Needs RabbitMQ on
//! 127.0.0.1:5672 (guest/guest); deletes its queues at the end.

#![allow(clippy::print_stdout)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

const URI: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const MEMBERS: usize = 10_000;
const AT: &str = "2026-03-02T09:00:00+08:00";

fn events(n: usize) -> Vec<String> {
    let mut v = vec![format!(
        r#"{{"id":"o1","type":"org.upserted","at":"{AT}","org":"c1","parent":null,"level":"city","leader":"boss"}}"#
    )];
    for m in 0..MEMBERS {
        v.push(format!(
            r#"{{"id":"u{m}","type":"member.upserted","at":"{AT}","member":"m{m}","org":"c1"}}"#
        ));
        v.push(format!(
            r#"{{"id":"l{m}","type":"app.login","at":"{AT}","member":"m{m}"}}"#
        ));
    }
    for i in 0..n {
        v.push(format!(
            r#"{{"id":"a{i}","type":"activity.recorded","at":"{AT}","member":"m{}","activity":"quiz"}}"#,
            i % MEMBERS
        ));
    }
    v
}

async fn publish_all(ch: &Channel, queue: &str, msgs: &[String]) -> Result<()> {
    ch.queue_declare(
        queue.into(),
        QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        },
        FieldTable::default(),
    )
    .await?;
    let mut confirms = Vec::with_capacity(1000);
    for m in msgs {
        let c = ch
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                m.as_bytes(),
                BasicProperties::default().with_delivery_mode(2),
            )
            .await?;
        confirms.push(c);
        if confirms.len() == 1000 {
            for c in confirms.drain(..) {
                c.await?;
            }
        }
    }
    for c in confirms {
        c.await?;
    }
    Ok(())
}

async fn bare_consumer(conn: &Connection, queue: &str, total: usize) -> Result<Duration> {
    let ch = conn.create_channel().await?;
    ch.basic_qos(1000, BasicQosOptions::default()).await?;
    let mut consumer = ch
        .basic_consume(
            queue.into(),
            "bare".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let start = Instant::now();
    let mut seen = 0usize;
    while let Some(d) = consumer.next().await {
        let d = d?;
        seen += 1;
        if seen.is_multiple_of(100) || seen == total {
            d.acker.ack(BasicAckOptions { multiple: true }).await?;
        }
        if seen == total {
            break;
        }
    }
    let took = start.elapsed();
    ch.close(200, "done".into()).await?;
    Ok(took)
}

fn http_get(port: u16, path: &str, token: &str) -> Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: l\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let status = buf
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = buf.split_once("\r\n\r\n").map_or("", |x| x.1).to_string();
    Ok((status, body))
}

fn acked(port: u16, source: &str) -> Result<u64> {
    let (_, text) = http_get(port, "/metrics", "bench")?;
    let series = format!("redcloud_source_acked_total{{source=\"{source}\"}} ");
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix(&series)?.parse().ok())
        .unwrap_or(0))
}

fn daemon_run(binary: &str, queue: &str, total: usize, shards: Option<usize>) -> Result<Duration> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let dir = std::env::temp_dir().join(format!("rc-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let cfg = format!(
        "{}\n[admin]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"bench\"\n[daemon]\nlog_level = \"warn\"\n{}\
         [sources.http]\nenabled = false\n[sources.amqp]\nname = \"bench\"\nuri = \"{URI}\"\n\
         exchange = \"{queue}.x\"\nqueue = \"{queue}\"\ndead_letter_exchange = \"{queue}.dlx\"\n\
         dead_letter_queue = \"{queue}.dlq\"\nprefetch = 1000\nack_batch = 100\n",
        include_str!("../config/default.toml"),
        shards.map_or(String::new(), |n| format!("shards = {n}\n"))
    );
    let path = dir.join("bench.toml");
    std::fs::write(&path, cfg)?;
    let mut child = Command::new(binary)
        .args(["run", "--config"])
        .arg(&path)
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {binary}"))?;
    let result = (|| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !http_get(port, "/readyz", "").is_ok_and(|(s, _)| s == 200) {
            if Instant::now() > deadline {
                bail!("daemon not ready within 30s");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let start = Instant::now();
        let deadline = start + Duration::from_secs(600);
        while acked(port, "bench")? < total as u64 {
            if Instant::now() > deadline {
                bail!("daemon did not drain the queue");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(start.elapsed())
    })();
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(Ok(200_000), |a| a.parse())?;
    let binary = args
        .next()
        .unwrap_or_else(|| "target/release/redcloud".to_string());
    let shards: Option<usize> = args.next().map(|a| a.parse()).transpose()?;
    let msgs = events(n);
    let total = msgs.len();
    let tag = format!("rc-bench-{}", std::process::id());
    let (q_bare, q_daemon) = (format!("{tag}-bare"), format!("{tag}-daemon"));

    let conn = Connection::connect(URI, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    println!("publishing {total} messages to two queues ...");
    publish_all(&ch, &q_bare, &msgs).await?;
    // The daemon's queue is declared by the daemon with its dead-letter
    // argument: publish through its exchange after a first declaration.
    ch.queue_declare(
        q_daemon.as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        },
        {
            let mut t = FieldTable::default();
            t.insert(
                "x-dead-letter-exchange".into(),
                lapin::types::AMQPValue::LongString(format!("{q_daemon}.dlx").into()),
            );
            t
        },
    )
    .await?;
    publish_all_existing(&ch, &q_daemon, &msgs).await?;

    let bare = bare_consumer(&conn, &q_bare, total).await?;
    let daemon = tokio::task::spawn_blocking({
        let q = q_daemon.clone();
        move || daemon_run(&binary, &q, total, shards)
    })
    .await??;

    let rate = |d: Duration| total as f64 / d.as_secs_f64();
    println!(
        "bare lapin consumer: {total} messages in {:.2}s = {:.0} msg/s",
        bare.as_secs_f64(),
        rate(bare)
    );
    println!(
        "redcloud run:        {total} messages in {:.2}s = {:.0} msg/s",
        daemon.as_secs_f64(),
        rate(daemon)
    );
    println!("ratio daemon / bare: {:.2}", rate(daemon) / rate(bare));

    for q in [&q_bare, &q_daemon, &format!("{q_daemon}.dlq")] {
        let _ = ch
            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    for x in [format!("{q_daemon}.x"), format!("{q_daemon}.dlx")] {
        let _ = ch
            .exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default())
            .await;
    }
    let _ = conn.close(200, "done".into()).await;
    Ok(())
}

async fn publish_all_existing(ch: &Channel, queue: &str, msgs: &[String]) -> Result<()> {
    let mut confirms = Vec::with_capacity(1000);
    for m in msgs {
        confirms.push(
            ch.basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                m.as_bytes(),
                BasicProperties::default().with_delivery_mode(2),
            )
            .await?,
        );
        if confirms.len() == 1000 {
            for c in confirms.drain(..) {
                c.await?;
            }
        }
    }
    for c in confirms {
        c.await?;
    }
    Ok(())
}
