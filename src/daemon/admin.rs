//! The HTTP surface of `redcloud run` on one listener: the health endpoints,
//! `/metrics`, the admin API and (when on) the HTTP ingest `POST /v1/events`.
//!
//! | path | auth |
//! |---|---|
//! | `GET /healthz`, `GET /readyz` | none |
//! | `GET /metrics`, `GET /v1/members/{id}`, `GET /v1/tickets/{id}`, `GET /v1/stats` | admin token |
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
    pub sink: mpsc::WeakSender<redcloud_engine::notify::Envelope>,
    /// Metrics.
    pub registry: Arc<Registry>,
    /// The admin bearer token, if any.
    pub token: Option<Secret>,
}

/// The admin and health routes.
pub fn router(state: Arc<AdminState>) -> Router {
    let protected = Router::new()
        .route("/metrics", get(metrics))
        .route("/v1/members/{id}", get(member))
        .route("/v1/tickets/{id}", get(ticket))
        .route("/v1/stats", get(stats))
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
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        st.registry.render(&depths),
    )
        .into_response()
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
