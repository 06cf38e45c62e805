//! HTTP ingest: `POST /v1/events` with an NDJSON body.
//!
//! Each non-empty line is decoded and validated with the engine's decoder; valid
//! lines go to the pipeline as [`Delivery`] values (payload = the line) and the
//! answer waits for their [`Acker`]s. The answer is JSON:
//!
//! ```json
//! {"accepted": 2, "duplicates": 1, "rejected": [{"line": 3, "reason": "...", "id": "e3"}]}
//! ```
//!
//! `accepted` counts lines acknowledged (applied or ignored duplicates),
//! `duplicates` (present when non-zero) the duplicates among them, `rejected` names
//! every bad line (1-based). Status: 200 when every line is good, 400 when some
//! are bad (the good ones are still applied), 413 when the body is over
//! `max_body_bytes`, 429 with `Retry-After` when the pipeline has no room within
//! `enqueue_timeout` (lines already enqueued are applied; resending the whole body
//! is safe because the engine ignores known ids), 503 when the pipeline did not
//! confirm every line within `apply_timeout`.
//!
//! The router carries no authentication: the daemon merges it behind its bearer
//! token layer.

mod config;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{timeout, Instant};
use tracing::{debug, warn};

pub use config::HttpConfig;

use super::{Acker, Delivery, Outcome, SourceStats};
use crate::config::ConfigError;

/// The path of the ingest endpoint.
pub const PATH: &str = "/v1/events";

/// The HTTP ingest source: build it, then mount [`HttpIngest::router`].
pub struct HttpIngest {
    name: Arc<str>,
    config: HttpConfig,
    levels: Arc<[String]>,
    stats: Arc<SourceStats>,
}

/// One bad line in the answer.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BadLine {
    /// 1-based line number in the body.
    pub line: usize,
    /// One-line reason.
    pub reason: String,
    /// The event's id, when it could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// The JSON answer of `POST /v1/events`.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Answer {
    /// Lines acknowledged (applied, or ignored as duplicates).
    pub accepted: usize,
    /// Of `accepted`, the duplicates.
    #[serde(skip_serializing_if = "is_zero")]
    pub duplicates: usize,
    /// Every bad line, in order.
    pub rejected: Vec<BadLine>,
    /// Set on 429 and 503: what went wrong and that resending is safe.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

struct Shared {
    name: Arc<str>,
    config: HttpConfig,
    levels: Arc<[String]>,
    stats: Arc<SourceStats>,
    tx: mpsc::Sender<Delivery>,
}

impl HttpIngest {
    /// Validates `config`; `levels` are the configured org levels (for the decoder).
    pub fn new(config: HttpConfig, levels: Vec<String>) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(HttpIngest {
            name: Arc::from("http"),
            config,
            levels: levels.into(),
            stats: SourceStats::new_shared(),
        })
    }

    /// Renames the source (metrics label and `Delivery::source`).
    pub fn with_name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// The source's name.
    pub fn name(&self) -> Arc<str> {
        self.name.clone()
    }

    /// The shared counters (`connected` is set once the router exists).
    pub fn stats(&self) -> Arc<SourceStats> {
        self.stats.clone()
    }

    /// The router serving `POST /v1/events`, sending into `tx`.
    pub fn router(&self, tx: mpsc::Sender<Delivery>) -> Router {
        self.stats.set_connected(true);
        let shared = Arc::new(Shared {
            name: self.name.clone(),
            config: self.config.clone(),
            levels: self.levels.clone(),
            stats: self.stats.clone(),
            tx,
        });
        Router::new()
            .route(PATH, post(ingest))
            .layer(DefaultBodyLimit::max(self.config.max_body_bytes))
            .with_state(shared)
    }
}

async fn ingest(State(st): State<Arc<Shared>>, body: Bytes) -> Response {
    let mut answer = Answer::default();
    let mut good: Vec<(usize, Bytes, Box<redcloud_engine::event::Event<'static>>)> = Vec::new();
    let mut start = 0usize;
    for (i, raw) in body.split(|&b| b == b'\n').enumerate() {
        let begin = start;
        start += raw.len() + 1;
        let mut line = raw;
        if let Some(stripped) = line.strip_suffix(b"\r") {
            line = stripped;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match redcloud_engine::event::decode(line, &st.levels) {
            Ok(ev) => good.push((
                i + 1,
                body.slice(begin..begin + line.len()),
                Box::new(ev.into_owned()),
            )),
            Err(r) => answer.rejected.push(BadLine {
                line: i + 1,
                reason: r.reason,
                id: r.id,
            }),
        }
    }
    for _ in &answer.rejected {
        st.stats.add_rejected();
    }

    // Enqueue: wait a bounded time for room, line by line.
    let mut waiting: Vec<(usize, oneshot::Receiver<Outcome>)> = Vec::with_capacity(good.len());
    let mut full = false;
    for (line, payload, decoded) in good {
        let permit = match timeout(st.config.enqueue_timeout, st.tx.reserve()).await {
            Ok(Ok(p)) => p,
            Ok(Err(_)) => {
                full = true;
                warn!(source = %st.name, "pipeline closed, refusing events");
                break;
            }
            Err(_) => {
                full = true;
                break;
            }
        };
        let (otx, orx) = oneshot::channel();
        permit.send(Delivery {
            payload,
            source: st.name.clone(),
            ack: Acker::reply(otx),
            decoded: Some(decoded),
        });
        st.stats.add_received(1);
        waiting.push((line, orx));
    }

    // Wait for the pipeline's verdicts.
    let deadline = Instant::now() + st.config.apply_timeout;
    let mut unconfirmed = 0usize;
    for (line, rx) in waiting {
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(outcome)) => {
                st.stats.count(&outcome);
                match outcome {
                    Outcome::Applied => answer.accepted += 1,
                    Outcome::Duplicate => {
                        answer.accepted += 1;
                        answer.duplicates += 1;
                    }
                    Outcome::Rejected(reason) => answer.rejected.push(BadLine {
                        line,
                        reason,
                        id: None,
                    }),
                }
            }
            Ok(Err(_)) | Err(_) => unconfirmed += 1,
        }
    }
    answer.rejected.sort_by_key(|b| b.line);

    let retry_after = st.config.retry_after.as_secs().max(1).to_string();
    let status = if full {
        answer.error = Some(
            "pipeline full: some lines were not taken; resend the body later (known ids are ignored)"
                .into(),
        );
        StatusCode::TOO_MANY_REQUESTS
    } else if unconfirmed > 0 {
        answer.error = Some(format!(
            "{unconfirmed} lines were not confirmed in time; resending the body is safe"
        ));
        StatusCode::SERVICE_UNAVAILABLE
    } else if !answer.rejected.is_empty() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    debug!(source = %st.name, status = status.as_u16(), accepted = answer.accepted,
        rejected = answer.rejected.len(), "http ingest answered");
    if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
        (status, [(header::RETRY_AFTER, retry_after)], Json(answer)).into_response()
    } else {
        (status, Json(answer)).into_response()
    }
}
