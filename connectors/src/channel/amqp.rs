//! AMQP: each message is published as JSON to a topic exchange, with
//! publisher confirms, for downstream gateways.
//!
//! Body: `{"id","title","body","notifications":[…]}`; properties:
//! `message_id` = the idempotency key, `content_type = application/json`,
//! persistent. Routing key: `<policy>.<kind>`. The connection is made on the
//! first send and remade after any failure; a publish that is not confirmed
//! (nack, closed channel, timeout) is retriable.

use std::sync::Arc;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Confirmation, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::Mutex;

use super::{BoxFuture, BuildError, Channel, ChannelKind, Delivered, Outgoing, SendError};
use crate::dispatch::config::ChannelConfig;

const KIND: ChannelKind = ChannelKind::Amqp;

/// The AMQP channel.
#[derive(Clone)]
pub struct AmqpChannel {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    exchange: String,
    timeout: std::time::Duration,
    session: Mutex<Option<(Connection, lapin::Channel)>>,
}

impl AmqpChannel {
    /// Builds the channel from `[dispatch.channels.amqp]` (connects lazily).
    pub fn new(cfg: &ChannelConfig) -> Result<Self, BuildError> {
        let url = cfg.url.clone().ok_or_else(|| BuildError {
            channel: KIND,
            reason: "`url` is required".into(),
        })?;
        Ok(AmqpChannel {
            inner: Arc::new(Inner {
                url,
                exchange: cfg.exchange.clone(),
                timeout: cfg.timeout,
                session: Mutex::new(None),
            }),
        })
    }

    /// The message body for `msg`.
    pub fn body(msg: &Outgoing) -> Vec<u8> {
        serde_json::json!({
            "id": msg.id,
            "title": msg.title,
            "body": msg.body,
            "notifications": &*msg.notifications,
        })
        .to_string()
        .into_bytes()
    }

    async fn channel(&self) -> Result<lapin::Channel, lapin::Error> {
        let mut guard = self.inner.session.lock().await;
        if let Some((conn, ch)) = guard.as_ref() {
            if conn.status().connected() && ch.status().connected() {
                return Ok(ch.clone());
            }
        }
        let conn = Connection::connect(
            &self.inner.url,
            ConnectionProperties::default().with_connection_name("redcloud:dispatch".into()),
        )
        .await?;
        let ch = conn.create_channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        ch.exchange_declare(
            self.inner.exchange.as_str().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
        *guard = Some((conn, ch.clone()));
        Ok(ch)
    }

    async fn publish(&self, msg: &Outgoing) -> Result<(), SendError> {
        let fail = |what: &str, e: lapin::Error| SendError::retriable(KIND, format!("{what}: {e}"));
        let ch = self.channel().await.map_err(|e| fail("connect", e))?;
        let first = msg.notifications.first();
        let routing_key = format!(
            "{}.{}",
            first.map_or("unknown", |n| n.policy.as_str()),
            first.map_or("unknown", |n| n.kind.as_str())
        );
        let props = BasicProperties::default()
            .with_message_id(msg.id.as_str().into())
            .with_content_type("application/json".into())
            .with_delivery_mode(2);
        let confirm = ch
            .basic_publish(
                self.inner.exchange.as_str().into(),
                routing_key.as_str().into(),
                BasicPublishOptions::default(),
                &AmqpChannel::body(msg),
                props,
            )
            .await
            .map_err(|e| fail("publish", e))?
            .await
            .map_err(|e| fail("confirm", e))?;
        if let Confirmation::Nack(_) = confirm {
            return Err(SendError::retriable(KIND, "publish nacked by the broker"));
        }
        Ok(())
    }
}

impl Channel for AmqpChannel {
    fn kind(&self) -> ChannelKind {
        KIND
    }

    fn send(&self, msg: Arc<Outgoing>) -> BoxFuture<Result<Delivered, SendError>> {
        let this = self.clone();
        Box::pin(async move {
            let timeout = this.inner.timeout;
            match tokio::time::timeout(timeout, this.publish(&msg)).await {
                Ok(r) => r.map(|()| Delivered::default()),
                Err(_) => {
                    // A hung connection: drop it so the next send reconnects.
                    *this.inner.session.lock().await = None;
                    Err(SendError::retriable(KIND, "timeout"))
                }
            }
        })
    }
}
