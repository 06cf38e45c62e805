//! The AMQP publisher shared by the bare-broker baseline and the `amqp`
//! daemon target, so that their ratio compares the same publishing.
//!
//! One channel in confirm mode publishes work items in order (one AMQP
//! channel keeps the order of its publishes, so the daemon sees the events
//! in the generated order, as the expected pass does) and keeps up to
//! `window` messages whose publisher confirms are still outstanding:
//! publishing never waits for a confirm unless the window is full. A second
//! task awaits the confirms of each item in order and reports the item done
//! when all of its messages are confirmed.
//!
//! lapin's `basic_publish` queues a message's frames on its first poll and
//! then waits for its I/O loop to write them; the publisher polls each
//! publish once, in order, and only then awaits the writes of the whole
//! item, so the I/O loop writes many messages per system call.

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use anyhow::{anyhow, Result};
use bytes::Bytes;
use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Channel, Confirmation, PublisherConfirm};
use tokio::sync::{mpsc, Semaphore};

/// Default number of messages whose confirms may be outstanding.
pub const DEFAULT_WINDOW: usize = 1000;

/// One work item: lines `first..first + ends.len()` of the run, as one
/// buffer of NDJSON (`ends[i]` is the end of line `i`, its `\n` included).
#[derive(Clone, Debug)]
pub struct Item {
    /// Index of the first event.
    pub first: u64,
    /// The lines, each ending with `\n`.
    pub body: Bytes,
    /// End offsets.
    pub ends: Vec<usize>,
}

impl Item {
    /// Builds an item from messages (without their `\n`).
    pub fn from_messages(first: u64, msgs: &[Vec<u8>]) -> Item {
        let mut body = Vec::with_capacity(msgs.iter().map(|m| m.len() + 1).sum());
        let mut ends = Vec::with_capacity(msgs.len());
        for m in msgs {
            body.extend_from_slice(m);
            body.push(b'\n');
            ends.push(body.len());
        }
        Item {
            first,
            body: Bytes::from(body),
            ends,
        }
    }

    /// Events in the item.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether it holds no event.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Line `i`, without its `\n`.
    pub fn line(&self, i: usize) -> Bytes {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        self.body.slice(start..self.ends[i] - 1)
    }

    /// The event's `type` (the routing key the daemon's queue binds).
    pub fn routing_key(&self, i: usize) -> String {
        let l = self.line(i);
        let s = std::str::from_utf8(&l).unwrap_or("");
        s.split("\"type\":\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("event")
            .to_string()
    }
}

/// An item whose messages are all confirmed (or failed): `(first, events,
/// when, result)`.
pub type Done = (u64, u64, Instant, Result<u64>);

/// Publishes every item from `rx` on `ch` (in confirm mode) to `exchange`,
/// routing key = the event type (`fixed_key` instead when given), persistent
/// JSON, with at most `window` unconfirmed messages; reports each item on
/// `done` once all its confirms arrived, in order. Returns when `rx` is
/// closed and every confirm has arrived, or at the first error.
pub async fn amqp(
    ch: Channel,
    exchange: String,
    fixed_key: Option<String>,
    window: usize,
    mut rx: mpsc::Receiver<Item>,
    done: mpsc::UnboundedSender<Done>,
) -> Result<()> {
    let window = window.max(1);
    let permits = Arc::new(Semaphore::new(window));
    // Items whose confirms are outstanding, in publish order.
    let (ptx, mut prx) = mpsc::unbounded_channel::<(Item, u32, Vec<PublisherConfirm>)>();
    let sem = permits.clone();
    let waiter = tokio::spawn(async move {
        while let Some((item, n_permits, confirms)) = prx.recv().await {
            let mut r = Ok(0);
            for c in confirms {
                match c.await {
                    Ok(Confirmation::Nack(_)) => {
                        r = Err(anyhow!("the broker nacked a publish"));
                    }
                    Ok(_) => {}
                    Err(e) => r = Err(anyhow!(e).context("publisher confirm")),
                }
            }
            sem.add_permits(n_permits as usize);
            let failed = r.is_err();
            let _ = done.send((item.first, item.len() as u64, Instant::now(), r));
            if failed {
                break;
            }
        }
    });
    let props = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(2);
    while let Some(item) = rx.recv().await {
        let n = item.len();
        let n_permits = n.min(window) as u32;
        permits
            .acquire_many(n_permits)
            .await
            .map_err(|_| anyhow!("publisher window closed"))?
            .forget();
        let lines: Vec<Bytes> = (0..n).map(|i| item.line(i)).collect();
        let keys: Vec<String> = (0..n)
            .map(|i| fixed_key.clone().unwrap_or_else(|| item.routing_key(i)))
            .collect();
        let mut confirms = Vec::with_capacity(n);
        {
            let mut writes = Vec::with_capacity(n);
            for i in 0..n {
                let mut f = Box::pin(ch.basic_publish(
                    exchange.as_str().into(),
                    keys[i].as_str().into(),
                    BasicPublishOptions::default(),
                    &lines[i],
                    props.clone(),
                ));
                // The first poll queues the frames (in order); the write
                // completes later.
                match std::future::poll_fn(|cx| Poll::Ready(f.as_mut().poll(cx))).await {
                    Poll::Ready(r) => confirms.push(r?),
                    Poll::Pending => writes.push(f),
                }
            }
            for w in writes {
                confirms.push(w.await?);
            }
        }
        if ptx.send((item, n_permits, confirms)).is_err() {
            break;
        }
    }
    drop(ptx);
    waiter
        .await
        .map_err(|e| anyhow!("confirm waiter panicked: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_split_lines_and_keys() {
        let msgs = vec![
            br#"{"id":"a","type":"app.login"}"#.to_vec(),
            br#"{"id":"b","type":"ticket.opened"}"#.to_vec(),
            b"x".to_vec(),
        ];
        let it = Item::from_messages(10, &msgs);
        assert_eq!(it.len(), 3);
        assert_eq!(&it.line(1)[..], &msgs[1][..]);
        assert_eq!(&it.line(2)[..], b"x");
        assert_eq!(it.routing_key(0), "app.login");
        assert_eq!(it.routing_key(1), "ticket.opened");
        assert_eq!(it.routing_key(2), "event");
    }
}
