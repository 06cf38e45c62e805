//! The pipelined AMQP publisher and the bare-broker baselines against the
//! real RabbitMQ on 127.0.0.1:5672 (guest/guest) and Redis on 127.0.0.1:6379.

use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use redcloud_loadtest::publish::{self, Item};
use tokio::sync::mpsc;

const URI: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

fn messages(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!(r#"{{"id":"e{i}","type":"app.login","member":"m{i}"}}"#).into_bytes())
        .collect()
}

/// Every message arrives once, in the order published, although up to
/// `window` confirms are outstanding; every item is reported done once, in
/// order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_publisher_keeps_order_and_confirms_all() {
    let conn = Connection::connect(URI, ConnectionProperties::default())
        .await
        .expect("RabbitMQ on 127.0.0.1:5672");
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let name = format!("redcloud.loadtest.test.{}", std::process::id());
    ch.exchange_declare(
        name.as_str().into(),
        ExchangeKind::Topic,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_declare(
        name.as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_bind(
        name.as_str().into(),
        name.as_str().into(),
        "#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();

    let msgs = messages(5000);
    let (tx, rx) = mpsc::channel(8);
    let (dtx, mut drx) = mpsc::unbounded_channel();
    let publisher = tokio::spawn(publish::amqp(ch.clone(), name.clone(), None, 300, rx, dtx));
    for (k, chunk) in msgs.chunks(70).enumerate() {
        tx.send(Item::from_messages((k * 70) as u64, chunk))
            .await
            .unwrap();
    }
    drop(tx);
    let mut next = 0u64;
    while let Some((first, n, _, r)) = drx.recv().await {
        r.expect("confirmed");
        assert_eq!(first, next, "items are reported in order");
        next += n;
    }
    assert_eq!(next, msgs.len() as u64);
    publisher.await.unwrap().unwrap();

    let cons = conn.create_channel().await.unwrap();
    let mut consumer = cons
        .basic_consume(
            name.as_str().into(),
            "t".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    for (i, want) in msgs.iter().enumerate() {
        let d = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .expect("a delivery within 10 s")
            .unwrap()
            .unwrap();
        assert_eq!(&d.data, want, "message {i} out of order");
        assert_eq!(d.routing_key.as_str(), "app.login");
        d.acker.ack(BasicAckOptions::default()).await.unwrap();
    }
    let _ = cons
        .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
        .await;
    let _ = ch
        .exchange_delete(name.as_str().into(), ExchangeDeleteOptions::default())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baselines_carry_every_message() {
    let msgs = messages(3000);
    let a = redcloud_loadtest::baseline::amqp(URI, &msgs, 100, 500)
        .await
        .unwrap();
    assert_eq!(a.messages, 3000);
    assert!(a.rate > 0.0 && a.publish_rate.is_some_and(|p| p > 0.0));
    assert_eq!(a.latency.as_ref().map(|l| l.count), Some(3000));
    let r = redcloud_loadtest::baseline::redis("redis://127.0.0.1:6379/", &msgs, 100)
        .await
        .unwrap();
    assert_eq!(r.messages, 3000);
    assert_eq!(r.latency.as_ref().map(|l| l.count), Some(3000));
}
