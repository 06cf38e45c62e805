//! Where notifications go after the engine decided them: the consumer of the
//! shards' bounded `mpsc` channel of [`Envelope`]s.
//!
//! The consumer is pluggable ([`Sink`]): until the dispatcher lands it is the
//! [`ConsoleSink`], which prints `Envelope::notification` (the contract's
//! notification object, with no contact data) as one JSON line on stdout. The
//! dispatcher replaces it by implementing [`Sink`] over the same receiver.
//!
//! A sink runs until every sender is gone (all shards stopped), then flushes
//! and returns: that is the last step of a graceful shutdown.

use std::future::Future;
use std::io::Write;
use std::pin::Pin;

use redcloud_engine::notify::Envelope;
use tokio::sync::mpsc;
use tracing::{debug, error};

/// A boxed future, as returned by [`Sink::run`].
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A consumer of the notifications the shards emit.
pub trait Sink: Send + 'static {
    /// A short name for logs.
    fn name(&self) -> &'static str;

    /// Consumes `rx` until it is closed and empty, then flushes. Envelopes
    /// carry personal data: never log them.
    fn run(self: Box<Self>, rx: mpsc::Receiver<Envelope>) -> BoxFuture<()>;
}

/// Prints each notification as a JSON line on stdout.
#[derive(Debug, Default)]
pub struct ConsoleSink;

impl Sink for ConsoleSink {
    fn name(&self) -> &'static str {
        "console"
    }

    fn run(self: Box<Self>, mut rx: mpsc::Receiver<Envelope>) -> BoxFuture<()> {
        // Writing to stdout blocks: do it on a thread of its own.
        Box::pin(async move {
            let job = tokio::task::spawn_blocking(move || {
                let stdout = std::io::stdout();
                let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
                let mut n = 0u64;
                while let Some(env) = rx.blocking_recv() {
                    if let Err(e) = write_line(&mut out, &env) {
                        error!(error = %e, "console sink cannot write to stdout");
                    }
                    n += 1;
                    // Flush when nothing else is waiting, so lines appear promptly.
                    if rx.is_empty() {
                        let _ = out.flush();
                    }
                }
                let _ = out.flush();
                debug!(notifications = n, "console sink finished");
            });
            if let Err(e) = job.await {
                error!(error = %e, "console sink thread failed");
            }
        })
    }
}

fn write_line(out: &mut impl Write, env: &Envelope) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, &env.notification)?;
    out.write_all(b"\n")
}
