//! Group chat robots: the WeCom group robot webhook.
//!
//! The robot address (an org's `contacts.group`, or an office's) is either a
//! full webhook URL (`http://` or `https://`) or a key substituted for `{key}`
//! in the configured `url`. Request: `POST` with header `Idempotency-Key` and
//! the body `{"msgtype":"markdown","markdown":{"content":"…"}}` (WeCom has no
//! idempotency field; the id is also the last line of the content as an HTML
//! comment, which WeCom does not display).
//!
//! Answer: `{"errcode":0,...}` is delivered; errcode 45009 (over the robot's
//! limit) pauses this robot for a minute; -1 (busy) and 5xx are retried; any
//! other errcode (93000 invalid webhook, 40008 invalid message type, ...) is
//! final.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::http::{classify_status, post_json};
use super::{BoxFuture, BuildError, Channel, ChannelKind, Delivered, Outgoing, Scope, SendError};
use crate::dispatch::config::ChannelConfig;

const KIND: ChannelKind = ChannelKind::Group;

/// The WeCom errcode for "over the robot's limit".
pub const ERRCODE_OVER_LIMIT: i64 = 45009;

/// The group robot channel.
#[derive(Clone)]
pub struct GroupChannel {
    inner: Arc<(super::http::Client, String)>,
}

impl GroupChannel {
    /// Builds the channel from `[dispatch.channels.group]`.
    pub fn new(cfg: &ChannelConfig) -> Result<Self, BuildError> {
        let url = cfg.url.clone().ok_or_else(|| BuildError {
            channel: KIND,
            reason: "`url` is required (with `{key}` where the robot key goes)".into(),
        })?;
        Ok(GroupChannel {
            inner: Arc::new((super::http::client(KIND, cfg.timeout)?, url)),
        })
    }

    /// The webhook URL of a robot address.
    pub fn webhook(&self, address: &str) -> String {
        if address.starts_with("http://") || address.starts_with("https://") {
            address.to_string()
        } else {
            self.inner.1.replace("{key}", address)
        }
    }

    /// The request body for `msg`.
    pub fn body(msg: &Outgoing) -> serde_json::Value {
        let content = format!("**{}**\n{}\n<!-- {} -->", msg.title, msg.body, msg.id);
        serde_json::json!({
            "msgtype": "markdown",
            "markdown": { "content": content },
        })
    }
}

#[derive(Deserialize)]
struct WecomAnswer {
    errcode: Option<i64>,
}

fn classify_errcode(code: i64) -> Result<(), SendError> {
    match code {
        0 => Ok(()),
        ERRCODE_OVER_LIMIT => Err(SendError::Retriable {
            channel: KIND,
            reason: "errcode 45009".into(),
            retry_after: Some(Duration::from_secs(60)),
            scope: Scope::Recipient,
        }),
        -1 => Err(SendError::retriable(KIND, "errcode -1")),
        c => Err(SendError::final_(KIND, format!("errcode {c}"))),
    }
}

impl Channel for GroupChannel {
    fn kind(&self) -> ChannelKind {
        KIND
    }

    fn send(&self, msg: Arc<Outgoing>) -> BoxFuture<Result<Delivered, SendError>> {
        let this = self.clone();
        Box::pin(async move {
            // The address completes the URL: one that makes it invalid is
            // a wrong address, not an outage (and is not quoted).
            let url = super::http::parse_uri(&this.webhook(&msg.address)).map_err(|e| {
                SendError::final_(
                    KIND,
                    format!("the robot's webhook is not a valid URL ({e})"),
                )
            })?;
            let body = GroupChannel::body(&msg);
            let answer = post_json(&this.inner.0, KIND, url, &msg.id, &body).await?;
            classify_status(KIND, &answer)?;
            let parsed: Option<WecomAnswer> = serde_json::from_slice(&answer.body).ok();
            match parsed.and_then(|a| a.errcode) {
                Some(code) => classify_errcode(code)?,
                None => return Err(SendError::retriable(KIND, "answer without errcode")),
            }
            Ok(Delivered::default())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errcodes_are_classified() {
        assert!(classify_errcode(0).is_ok());
        assert!(matches!(
            classify_errcode(45009),
            Err(SendError::Retriable {
                scope: Scope::Recipient,
                ..
            })
        ));
        assert!(!classify_errcode(93000).unwrap_err().is_retriable());
    }

    fn outgoing(address: &str) -> Arc<Outgoing> {
        Arc::new(Outgoing {
            id: "n-1".into(),
            channel: KIND,
            address: address.into(),
            title: "t".into(),
            body: "b".into(),
            template_code: None,
            params: Vec::new(),
            notifications: Arc::from(Vec::new()),
            attempt: 1,
        })
    }

    /// A robot key that cannot go into the webhook URL is a wrong address:
    /// final at once (not retried as an outage), and the reason quotes
    /// neither the key nor the URL.
    #[tokio::test]
    async fn a_key_that_breaks_the_webhook_url_is_final_and_not_quoted() {
        let t: toml::Table =
            toml::from_str("[channels.group]\nurl = \"http://127.0.0.1:9/robot?key={key}\"\n")
                .unwrap();
        let cfg = crate::dispatch::config::DispatchConfig::from_toml(&t).unwrap();
        let ch = GroupChannel::new(cfg.channels[KIND.index()].as_ref().unwrap()).unwrap();
        match ch.send(outgoing("secret key")).await {
            Err(SendError::Final { reason, .. }) => {
                assert!(
                    reason.starts_with("the robot's webhook is not a valid URL"),
                    "{reason}"
                );
                assert!(
                    !reason.contains("secret") && !reason.contains("127.0.0.1"),
                    "{reason}"
                );
            }
            other => panic!("expected a final error, got {other:?}"),
        }
    }
}
