//! Mobile push over HTTP: `POST <url>` with header `Idempotency-Key: <id>` and
//! the body `{"token","title","body","id"}`.
//!
//! Answer: 2xx is delivered; 404 and 410 (unknown or expired token) and any
//! other 4xx are final; 429 pauses the channel for its `Retry-After`; 408,
//! 5xx and transport failures are retried.

use std::sync::Arc;

use super::http::{classify_status, post_json};
use super::{BoxFuture, BuildError, Channel, ChannelKind, Delivered, Outgoing, SendError};
use crate::dispatch::config::ChannelConfig;

const KIND: ChannelKind = ChannelKind::Push;

/// The push channel.
#[derive(Clone)]
pub struct PushChannel {
    inner: Arc<(super::http::Client, http::Uri)>,
}

impl PushChannel {
    /// Builds the channel from `[dispatch.channels.push]`.
    pub fn new(cfg: &ChannelConfig) -> Result<Self, BuildError> {
        let url = super::http::parse_url(KIND, cfg.url.as_deref())?;
        Ok(PushChannel {
            inner: Arc::new((super::http::client(KIND, cfg.timeout)?, url)),
        })
    }

    /// The request body for `msg`, serialized as it is sent.
    pub fn body(msg: &Outgoing) -> impl serde::Serialize + '_ {
        PushBody {
            token: &msg.address,
            title: &msg.title,
            body: &msg.body,
            id: &msg.id,
        }
    }
}

/// `{"token","title","body","id"}`, borrowed from the message.
#[derive(serde::Serialize)]
struct PushBody<'a> {
    token: &'a str,
    title: &'a str,
    body: &'a str,
    id: &'a str,
}

impl Channel for PushChannel {
    fn kind(&self) -> ChannelKind {
        KIND
    }

    fn send(&self, msg: Arc<Outgoing>) -> BoxFuture<Result<Delivered, SendError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let body = PushChannel::body(&msg);
            let answer = post_json(&inner.0, KIND, inner.1.clone(), &msg.id, &body).await?;
            classify_status(KIND, &answer)?;
            Ok(Delivered::default())
        })
    }
}
