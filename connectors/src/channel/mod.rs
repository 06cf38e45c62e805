//! Channels: the outbound half of the connectors, one per way of reaching a
//! person (SMS, push, group chat robot) or a downstream system (AMQP, console).
//!
//! A [`Channel`] sends one [`Outgoing`] message and classifies the provider's
//! answer: delivered, [`SendError::Retriable`] (over a limit, 429, 5xx,
//! timeouts, robot errcode 45009) or [`SendError::Final`] (invalid number or
//! token, any other 4xx). It does nothing else: limits, quiet hours, digests,
//! retries, the circuit breaker and dead letters belong to the
//! [`crate::dispatch::Dispatcher`], which is the only caller.
//!
//! What must not live here: scheduling, and any logging of personal data. An
//! [`Outgoing`] carries phone numbers, tokens, names and message text; its
//! `Debug` prints none of them, and channels log only the channel, the
//! notification id and the outcome.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use redcloud_engine::notify::RenderedOwned;

pub mod amqp;
pub mod console;
pub mod group;
pub(crate) mod http;
pub mod memory;
pub mod push;
pub mod sms;

/// A boxed, sendable future, as returned by [`Channel::send`].
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The kinds of channel, as named in routes and metric labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChannelKind {
    /// Text message (Aliyun-style JSON over HTTP).
    Sms,
    /// Mobile push (JSON over HTTP).
    Push,
    /// Group chat robot (WeCom webhook).
    Group,
    /// Notification JSON published to an AMQP exchange.
    Amqp,
    /// One JSON line per message on stdout.
    Console,
}

impl ChannelKind {
    /// Every kind, in index order.
    pub const ALL: [ChannelKind; 5] = [
        ChannelKind::Sms,
        ChannelKind::Push,
        ChannelKind::Group,
        ChannelKind::Amqp,
        ChannelKind::Console,
    ];

    /// The name used in configs, routes and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Sms => "sms",
            ChannelKind::Push => "push",
            ChannelKind::Group => "group",
            ChannelKind::Amqp => "amqp",
            ChannelKind::Console => "console",
        }
    }

    /// Parses a channel name.
    pub fn parse(s: &str) -> Option<ChannelKind> {
        ChannelKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Dense index (0..5) for per-channel arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether the channel needs a per-recipient address (phone, token, robot).
    pub fn needs_address(self) -> bool {
        matches!(
            self,
            ChannelKind::Sms | ChannelKind::Push | ChannelKind::Group
        )
    }
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One message ready to leave: possibly a digest of several notifications.
///
/// Contains personal data: `Debug` prints only ids and counts.
#[derive(Clone)]
pub struct Outgoing {
    /// Idempotency key sent to the provider (`Idempotency-Key` header and a
    /// body field): the notification id, or for a digest a deterministic hash
    /// of all its notification ids.
    pub id: String,
    /// The channel it goes through.
    pub channel: ChannelKind,
    /// Phone number, device token, robot webhook or key; empty for AMQP and
    /// the console.
    pub address: String,
    /// Title (push, robot heading).
    pub title: String,
    /// Message text.
    pub body: String,
    /// SMS template code (Aliyun `TemplateCode`).
    pub template_code: Option<String>,
    /// Template variables, for providers that render themselves (Aliyun
    /// `TemplateParam`).
    pub params: Vec<(&'static str, String)>,
    /// The notifications it carries (one, or several for a digest).
    pub notifications: Arc<[RenderedOwned]>,
    /// 1-based attempt number on this channel.
    pub attempt: u32,
}

impl fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outgoing")
            .field("id", &self.id)
            .field("channel", &self.channel)
            .field("notifications", &self.notifications.len())
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

/// What a successful send reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delivered {
    /// Billed SMS segments (0 for other channels).
    pub segments: u32,
}

/// How far a retriable failure reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Only this message (a timeout, a 5xx).
    Message,
    /// This recipient (SMS per-number over-limit, robot errcode 45009): the
    /// recipient is paused for `retry_after`.
    Recipient,
    /// The whole channel (HTTP 429 with `Retry-After`, provider throttling):
    /// the channel is paused for `retry_after`.
    Channel,
}

/// A failed send, classified.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth trying again later.
    #[error("{channel} channel: retriable: {reason}")]
    Retriable {
        /// The channel.
        channel: ChannelKind,
        /// Short reason without personal data (`http 503`, `errcode 45009`).
        reason: String,
        /// The provider's `Retry-After`, or the channel's own pause for a
        /// known over-limit answer.
        retry_after: Option<Duration>,
        /// What to pause.
        scope: Scope,
    },
    /// Will never succeed (invalid number or token, bad request).
    #[error("{channel} channel: final: {reason}")]
    Final {
        /// The channel.
        channel: ChannelKind,
        /// Short reason without personal data.
        reason: String,
    },
}

impl SendError {
    /// A retriable failure of one message.
    pub fn retriable(channel: ChannelKind, reason: impl Into<String>) -> Self {
        SendError::Retriable {
            channel,
            reason: reason.into(),
            retry_after: None,
            scope: Scope::Message,
        }
    }

    /// A final failure.
    pub fn final_(channel: ChannelKind, reason: impl Into<String>) -> Self {
        SendError::Final {
            channel,
            reason: reason.into(),
        }
    }

    /// Whether the failure is retriable.
    pub fn is_retriable(&self) -> bool {
        matches!(self, SendError::Retriable { .. })
    }

    /// The short reason.
    pub fn reason(&self) -> &str {
        match self {
            SendError::Retriable { reason, .. } | SendError::Final { reason, .. } => reason,
        }
    }
}

/// One outbound channel.
pub trait Channel: Send + Sync + 'static {
    /// Which kind it is.
    fn kind(&self) -> ChannelKind;

    /// Sends one message. Must finish within the channel's own timeout
    /// (a timeout is a [`SendError::Retriable`]).
    fn send(&self, msg: Arc<Outgoing>) -> BoxFuture<Result<Delivered, SendError>>;
}

/// A channel behind an `Arc`, as the dispatcher holds it.
pub type SharedChannel = Arc<dyn Channel>;

/// Error building a channel from its configuration.
#[derive(Debug, thiserror::Error)]
#[error("{channel} channel: {reason}")]
pub struct BuildError {
    /// The channel.
    pub channel: ChannelKind,
    /// What is wrong.
    pub reason: String,
}

/// Billed segments of an SMS text of `chars` characters: one message holds
/// 70 characters; a longer text is split into segments of 67 (3 characters go
/// to the concatenation header), as Aliyun and Tencent Cloud bill it.
pub fn sms_segments(chars: usize) -> u32 {
    if chars == 0 {
        return 1;
    }
    if chars <= 70 {
        1
    } else {
        chars.div_ceil(67) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_follow_the_70_67_rule() {
        assert_eq!(sms_segments(1), 1);
        assert_eq!(sms_segments(70), 1);
        assert_eq!(sms_segments(71), 2);
        assert_eq!(sms_segments(134), 2);
        assert_eq!(sms_segments(135), 3);
    }

    #[test]
    fn kinds_round_trip() {
        for k in ChannelKind::ALL {
            assert_eq!(ChannelKind::parse(k.as_str()), Some(k));
            assert_eq!(ChannelKind::ALL[k.index()], k);
        }
        assert_eq!(ChannelKind::parse("fax"), None);
    }
}
