//! The HTTP surface of `redcloud run` on one listener: the health endpoints,
//! `/metrics`, the admin API and (when on) the HTTP ingest `POST /v1/events`.
//!
//! | path | auth |
//! |---|---|
//! | `GET /healthz`, `GET /readyz` | none |
//! | `GET /metrics`, `GET /v1/members/{id}`, `GET /v1/tickets/{id}`, `GET /v1/stats`, `GET /v1/dead-letters` | admin token |
//! | `POST /v1/events` | `[sources.http] token` when set, else none |
//!
//! The admin token comes from `[admin] token` or `REDCLOUD_ADMIN_TOKEN`; with
//! neither, the protected endpoints answer 401 and say how to set one.
//! Queries about a member or a ticket go to the shard that owns it, over its
//! inbox with a oneshot reply: no state is shared with the HTTP tasks.

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use redcloud_config::Secret;
use redcloud_connectors::dispatch::{DeadLetterView, DeadLetters, DispatchStats};
use redcloud_engine::ticket::StatsRow;
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use super::metrics::{Depths, Registry};
use super::router::shard_of;
use super::shard::ShardMsg;

/// The environment variable that holds the admin token when the config has none.
pub const TOKEN_ENV: &str = "REDCLOUD_ADMIN_TOKEN";

/// Shared by the handlers.
pub struct AdminState {
    /// Shard inboxes.
    pub shards: Vec<mpsc::Sender<ShardMsg>>,
    /// The pipeline channel (for its depth).
    pub pipeline: mpsc::WeakSender<redcloud_connectors::source::Delivery>,
    /// The sink channel (for its depth).
    pub sink: mpsc::WeakSender<super::outbox::Decided>,
    /// Metrics.
    pub registry: Arc<Registry>,
    /// The admin bearer token, if any.
    pub token: Option<Secret>,
    /// The dispatcher's counters (rendered after the daemon's in `/metrics`).
    pub dispatch: Arc<DispatchStats>,
    /// The dispatcher's dead letters.
    pub dead_letters: DeadLetters,
    /// The shared member contacts (for its size in `/metrics`).
    pub contacts: super::contacts::ContactDirectory,
}

/// The admin and health routes.
pub fn router(state: Arc<AdminState>) -> Router {
    let protected = Router::new()
        .route("/metrics", get(metrics))
        .route("/v1/members/{id}", get(member))
        .route("/v1/tickets/{id}", get(ticket))
        .route("/v1/stats", get(stats))
        .route("/v1/dead-letters", get(dead_letters))
        .route_layer(middleware::from_fn_with_state(
            state.token.clone(),
            require_token,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .merge(protected)
        .with_state(state)
}

/// Puts `inner` (the ingest router) behind `token` when there is one.
pub fn guard(inner: Router, token: Option<Secret>) -> Router {
    match token {
        Some(t) => inner.route_layer(middleware::from_fn_with_state(Some(t), require_token)),
        None => inner,
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn require_token(State(token): State<Option<Secret>>, req: Request, next: Next) -> Response {
    let Some(token) = token else {
        return (
            StatusCode::UNAUTHORIZED,
            format!(
                "no admin token is configured: set `[admin] token` in the config file or the \
                 environment variable {TOKEN_ENV}, restart, and send `Authorization: Bearer <token>`\n"
            ),
        )
            .into_response();
    };
    match bearer(req.headers()) {
        Some(given) if same(given.as_bytes(), token.expose().as_bytes()) => next.run(req).await,
        _ => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "missing or wrong bearer token (send `Authorization: Bearer <token>`)\n",
        )
            .into_response(),
    }
}

async fn readyz(State(st): State<Arc<AdminState>>) -> Response {
    let waiting: Vec<&str> = st
        .registry
        .sources
        .iter()
        .filter(|s| !s.ready())
        .map(|s| &*s.name)
        .collect();
    if waiting.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: waiting for sources: {}\n", waiting.join(", ")),
        )
            .into_response()
    }
}

async fn metrics(State(st): State<Arc<AdminState>>) -> Response {
    let depth = |max: usize, cap: usize| max.saturating_sub(cap);
    let depths = Depths {
        pipeline: st
            .pipeline
            .upgrade()
            .map_or(0, |s| depth(s.max_capacity(), s.capacity())),
        shards: st
            .shards
            .iter()
            .map(|s| depth(s.max_capacity(), s.capacity()))
            .collect(),
        sink: st
            .sink
            .upgrade()
            .map_or(0, |s| depth(s.max_capacity(), s.capacity())),
    };
    let mut text = st.registry.render(&depths);
    text.push_str(
        "# HELP redcloud_contact_directory_members leaders whose name or contacts are in the directory shared by the shards\n\
         # TYPE redcloud_contact_directory_members gauge\n",
    );
    text.push_str(&format!(
        "redcloud_contact_directory_members {}\n",
        st.contacts.members()
    ));
    st.dispatch.render_prometheus(&mut text);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// `GET /v1/dead-letters`: the dead letters kept (newest `dead_letters_kept`),
/// oldest first. A view carries ids, policy, kind, step, the recipient as
/// `member:<id>` / `office:<id>`, the channel, a classified reason and the
/// attempts: no phone number, token, robot key, name or text.
///
/// The reason is a short classified text from the channel (`http 503`,
/// `code isv.MOBILE_NUMBER_ILLEGAL`, `errcode 93000`); as a second line of
/// defence it is masked here anyway: runs of 7 or more digits (a phone number
/// echoed by a provider) and the user part of a URL become `***`.
async fn dead_letters(State(st): State<Arc<AdminState>>) -> Response {
    let items: Vec<DeadLetterView> = st
        .dead_letters
        .list()
        .into_iter()
        .map(|mut v| {
            v.reason = mask(&v.reason);
            v
        })
        .collect();
    Json(serde_json::json!({ "kept": items.len(), "items": items })).into_response()
}

/// Masks digit runs of 7 or more and URL credentials (`scheme://user:pw@`).
pub fn mask(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut String| {
        if digits.len() >= 7 {
            out.push_str("***");
        } else {
            out.push_str(digits);
        }
        digits.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            flush(&mut digits, &mut out);
            out.push(c);
        }
    }
    flush(&mut digits, &mut out);
    // Credentials in a URL.
    let mut rest = out.as_str();
    let mut masked = String::with_capacity(out.len());
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        masked.push_str(head);
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace())
            .unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(at) => {
                masked.push_str("***");
                rest = &tail[at..];
            }
            None => rest = tail,
        }
    }
    masked.push_str(rest);
    masked
}

#[cfg(test)]
mod tests {
    use super::mask;

    #[test]
    fn masks_numbers_and_credentials_only() {
        assert_eq!(mask("http 503"), "http 503");
        assert_eq!(mask("errcode 45009"), "errcode 45009");
        assert_eq!(mask("code isv.X for 13800000000"), "code isv.X for ***");
        assert_eq!(
            mask("io: amqp://user:pw@mq:5672/%2f refused"),
            "io: amqp://***@mq:5672/%2f refused"
        );
        assert_eq!(mask("see http://host/x"), "see http://host/x");
    }
}

fn unavailable() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "the daemon is stopping\n").into_response()
}

fn not_found(what: &str, id: &str) -> Response {
    let body = serde_json::json!({ "error": format!("no {what} with id {id:?}") });
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

async fn ask<T>(
    tx: &mpsc::Sender<ShardMsg>,
    msg: impl FnOnce(oneshot::Sender<T>) -> ShardMsg,
) -> Option<T> {
    let (otx, orx) = oneshot::channel();
    tx.send(msg(otx)).await.ok()?;
    orx.await.ok()
}

async fn member(State(st): State<Arc<AdminState>>, Path(id): Path<String>) -> Response {
    let tx = &st.shards[shard_of(&id, st.shards.len())];
    match ask(tx, |r| ShardMsg::Member(id.clone(), r)).await {
        None => unavailable(),
        Some(None) => not_found("member", &id),
        Some(Some(v)) => Json(v).into_response(),
    }
}

async fn ticket(State(st): State<Arc<AdminState>>, Path(id): Path<String>) -> Response {
    let tx = &st.shards[shard_of(&id, st.shards.len())];
    match ask(tx, |r| ShardMsg::Ticket(id.clone(), r)).await {
        None => unavailable(),
        Some(None) => not_found("ticket", &id),
        Some(Some(v)) => Json(v).into_response(),
    }
}

/// `?org=&month=`: both optional filters.
#[derive(Debug, Deserialize)]
struct StatsQuery {
    org: Option<String>,
    month: Option<String>,
}

async fn stats(State(st): State<Arc<AdminState>>, Query(q): Query<StatsQuery>) -> Response {
    if let Some(m) = &q.month {
        let ok = m.len() == 7
            && m.as_bytes()[4] == b'-'
            && m.bytes()
                .enumerate()
                .all(|(i, b)| i == 4 || b.is_ascii_digit());
        if !ok {
            let body = serde_json::json!({ "error": "month must be YYYY-MM" });
            return (StatusCode::BAD_REQUEST, Json(body)).into_response();
        }
    }
    let mut own = Vec::new();
    for tx in &st.shards {
        match ask(tx, ShardMsg::Stats).await {
            Some(v) => own.extend(v),
            None => return unavailable(),
        }
    }
    let Some(rows) = ask(&st.shards[0], |r| ShardMsg::Rollup(own, r)).await else {
        return unavailable();
    };
    let rows: Vec<StatsRow> = rows
        .into_iter()
        .filter(|r| q.org.as_ref().is_none_or(|o| *o == r.org))
        .filter(|r| q.month.as_ref().is_none_or(|m| *m == r.month))
        .collect();
    Json(rows).into_response()
}
