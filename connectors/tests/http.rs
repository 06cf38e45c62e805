//! HTTP ingest: the router driven in-process (no socket), with a stand-in pipeline.

use std::time::Duration;

use anyhow::Result;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use redcloud_connectors::source::http::{HttpConfig, HttpIngest};
use redcloud_connectors::source::{Acker, Delivery};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tower::ServiceExt;

fn levels() -> Vec<String> {
    ["city", "county", "town", "village", "group"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn login(id: &str) -> String {
    format!(r#"{{"id":"{id}","type":"app.login","at":"2026-03-02T09:00:00+08:00","member":"m1"}}"#)
}

fn ingest(cfg: serde_json::Value) -> HttpIngest {
    let cfg: HttpConfig = serde_json::from_value(cfg).unwrap();
    HttpIngest::new(cfg, levels()).unwrap()
}

async fn post(
    router: axum::Router,
    body: String,
) -> Result<(StatusCode, Option<String>, serde_json::Value)> {
    let req = Request::post("/v1/events")
        .header("content-type", "application/x-ndjson")
        .body(Body::from(body))?;
    let resp = timeout(Duration::from_secs(10), router.oneshot(req)).await??;
    let status = resp.status();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = resp.into_body().collect().await?.to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    Ok((status, retry, json))
}

/// A stand-in pipeline: the first delivery is applied, later ones with id `dup*` are duplicates.
fn pipeline(mut rx: mpsc::Receiver<Delivery>) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let mut got = Vec::new();
        while let Some(d) = rx.recv().await {
            let v: serde_json::Value = serde_json::from_slice(&d.payload).unwrap();
            let id = v["id"].as_str().unwrap().to_string();
            if id.starts_with("dup") {
                d.ack.duplicate();
            } else {
                d.ack.ack();
            }
            got.push(id);
        }
        got
    })
}

#[tokio::test]
async fn good_lines_are_applied_and_bad_lines_named() -> Result<()> {
    let src = ingest(serde_json::json!({}));
    let stats = src.stats();
    let (tx, rx) = mpsc::channel(16);
    let router = src.router(tx);
    let worker = pipeline(rx);
    let body = format!(
        "{}\n\n{{not json\r\n{}\n{}\n",
        login("e1"),
        login("dup-e1"),
        r#"{"id":"e5","type":"app.login","at":"2026-03-02T09:00:00+08:00"}"#
    );
    let (status, _, json) = post(router, body).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    assert_eq!(json["accepted"], 2);
    assert_eq!(json["duplicates"], 1);
    let rejected = json["rejected"].as_array().unwrap();
    let lines: Vec<u64> = rejected
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, vec![3, 5]);
    assert!(rejected
        .iter()
        .all(|r| !r["reason"].as_str().unwrap().is_empty()));
    assert_eq!(rejected[1]["id"], "e5");
    let got = timeout(Duration::from_secs(5), worker).await??;
    assert_eq!(got, vec!["e1".to_string(), "dup-e1".to_string()]);
    let snap = stats.snapshot();
    assert_eq!(
        (snap.received, snap.acked, snap.duplicates, snap.rejected),
        (2, 2, 1, 2)
    );
    Ok(())
}

#[tokio::test]
async fn all_good_is_200_and_pipeline_rejects_are_named() -> Result<()> {
    let src = ingest(serde_json::json!({}));
    let (tx, mut rx) = mpsc::channel(16);
    let router = src.router(tx);
    let worker = tokio::spawn(async move {
        let mut n = 0;
        while let Some(d) = rx.recv().await {
            n += 1;
            if n == 2 {
                d.ack.reject("unknown org `o9`".into());
            } else {
                d.ack.ack();
            }
        }
    });
    let (status, _, json) = post(router.clone(), format!("{}\n", login("a1"))).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json, serde_json::json!({"accepted": 1, "rejected": []}));
    let (status, _, json) = post(router, format!("{}\n{}", login("a2"), login("a3"))).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json["accepted"], 1);
    assert_eq!(json["rejected"][0]["line"], 1);
    assert_eq!(json["rejected"][0]["reason"], "unknown org `o9`");
    worker.abort();
    Ok(())
}

#[tokio::test]
async fn oversized_bodies_get_413() -> Result<()> {
    let src = ingest(serde_json::json!({"max_body_bytes": 100}));
    let (tx, _rx) = mpsc::channel(16);
    let body = format!("{}\n{}\n", login("e1"), login("e2"));
    assert!(body.len() > 100);
    let (status, _, _) = post(src.router(tx), body).await?;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    Ok(())
}

#[tokio::test]
async fn a_full_pipeline_gets_429_with_retry_after() -> Result<()> {
    let src = ingest(serde_json::json!({"enqueue_timeout": "50ms", "retry_after": "2s"}));
    let (tx, _rx) = mpsc::channel(1);
    // Fill the pipeline; nobody drains it.
    tx.send(Delivery {
        payload: login("x").into(),
        source: "test".into(),
        ack: Acker::noop(),
        decoded: None,
    })
    .await?;
    let (status, retry, json) = post(src.router(tx), format!("{}\n", login("e1"))).await?;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(retry.as_deref(), Some("2"));
    assert_eq!(json["accepted"], 0);
    assert!(json["error"].as_str().unwrap().contains("pipeline full"));
    Ok(())
}
