//! The console channel of the embedded default: one JSON line per message on
//! stdout, `{"channel":"console","id":…,"title":…,"notifications":[…]}`.
//!
//! It prints the notifications as `redcloud replay` does (ids, not names) and
//! the title, never the rendered body nor any address.

use std::io::Write;
use std::sync::Arc;

use super::{BoxFuture, Channel, ChannelKind, Delivered, Outgoing, SendError};

/// Writes one JSON line per message to stdout.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConsoleChannel;

impl ConsoleChannel {
    /// The line for `msg`, without the newline.
    pub fn line(msg: &Outgoing) -> String {
        serde_json::json!({
            "channel": "console",
            "id": msg.id,
            "title": msg.title,
            "notifications": &*msg.notifications,
        })
        .to_string()
    }
}

impl Channel for ConsoleChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Console
    }

    fn send(&self, msg: Arc<Outgoing>) -> BoxFuture<Result<Delivered, SendError>> {
        Box::pin(async move {
            let mut line = ConsoleChannel::line(&msg);
            line.push('\n');
            let mut out = std::io::stdout().lock();
            out.write_all(line.as_bytes())
                .and_then(|()| out.flush())
                .map_err(|e| SendError::retriable(ChannelKind::Console, format!("stdout: {e}")))?;
            Ok(Delivered::default())
        })
    }
}
