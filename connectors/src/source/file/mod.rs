//! NDJSON file source: reads a file line by line, once, and delivers each
//! non-empty line (for `redcloud run` with a file input).
//!
//! Acks are no-ops beyond counting (a file cannot be acknowledged); a rejected line
//! goes to the reject hook, by default a `warn` log with the line number and reason
//! (never the line itself). The source returns at the end of the file or on
//! shutdown; it does not follow the file.

mod config;

use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use config::FileConfig;

use super::{Acker, BoxFuture, Delivery, Outcome, Source, SourceError, SourceStats};
use crate::config::ConfigError;

/// A rejected line of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRejection {
    /// 1-based line number.
    pub line: u64,
    /// One-line reason.
    pub reason: String,
}

/// Called with each rejected line.
pub type RejectHook = Arc<dyn Fn(FileRejection) + Send + Sync>;

/// The file source. Build it with [`FileSource::new`], start it with [`Source::run`].
pub struct FileSource {
    name: Arc<str>,
    config: FileConfig,
    stats: Arc<SourceStats>,
    on_reject: RejectHook,
}

impl FileSource {
    /// Validates `config` and builds a source named `file` that logs rejected lines.
    pub fn new(config: FileConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let name: Arc<str> = Arc::from("file");
        let log_name = name.clone();
        Ok(FileSource {
            name,
            config,
            stats: SourceStats::new_shared(),
            on_reject: Arc::new(move |r: FileRejection| {
                warn!(source = %log_name, line = r.line, reason = %r.reason, "event rejected");
            }),
        })
    }

    /// Renames the source (metrics label and `Delivery::source`).
    pub fn with_name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Sends rejected lines to `hook` instead of the log.
    pub fn with_reject_hook(mut self, hook: RejectHook) -> Self {
        self.on_reject = hook;
        self
    }
}

impl Source for FileSource {
    fn name(&self) -> Arc<str> {
        self.name.clone()
    }

    fn stats(&self) -> Arc<SourceStats> {
        self.stats.clone()
    }

    fn run(
        self: Box<Self>,
        tx: mpsc::Sender<Delivery>,
        shutdown: CancellationToken,
    ) -> BoxFuture<Result<(), SourceError>> {
        Box::pin(async move { self.read(tx, shutdown).await })
    }
}

impl FileSource {
    async fn read(
        self,
        tx: mpsc::Sender<Delivery>,
        shutdown: CancellationToken,
    ) -> Result<(), SourceError> {
        let io_err = |what: &str, source| SourceError::Io {
            connector: "file",
            what: format!("{what} {}", self.config.path.display()),
            source,
        };
        let file = tokio::fs::File::open(&self.config.path)
            .await
            .map_err(|e| io_err("cannot open", e))?;
        self.stats.set_connected(true);
        let mut reader = BufReader::with_capacity(256 * 1024, file);
        let mut line_no = 0u64;
        let mut sent = 0u64;
        loop {
            let mut buf = Vec::new();
            let n = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = reader.read_until(b'\n', &mut buf) => r.map_err(|e| io_err("cannot read", e))?,
            };
            if n == 0 {
                break;
            }
            line_no += 1;
            if buf.last() == Some(&b'\n') {
                buf.pop();
            }
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            if buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if buf.len() > self.config.max_line_bytes {
                self.stats.add_rejected();
                (self.on_reject)(FileRejection {
                    line: line_no,
                    reason: format!("line is longer than {} bytes", self.config.max_line_bytes),
                });
                continue;
            }
            let stats = self.stats.clone();
            let hook = self.on_reject.clone();
            let line = line_no;
            let ack = Acker::callback(move |outcome| {
                stats.count(&outcome);
                if let Outcome::Rejected(reason) = outcome {
                    hook(FileRejection { line, reason });
                }
            });
            let d = Delivery {
                payload: Bytes::from(buf),
                source: self.name.clone(),
                ack,
                decoded: None,
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                r = tx.send(d) => if r.is_err() { break },
            }
            self.stats.add_received(1);
            sent += 1;
        }
        self.stats.set_connected(false);
        info!(source = %self.name, lines = line_no, sent, "file source finished");
        Ok(())
    }
}
