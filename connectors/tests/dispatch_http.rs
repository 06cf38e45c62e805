//! The HTTP channels against local provider servers (axum on 127.0.0.1:0)
//! that behave like the real ones: Aliyun-style SMS codes, push 410/429,
//! a WeCom robot that enforces its own window with errcode 45009, outages
//! (503) and slowness. Real time, with windows scaled down to seconds.

#[path = "dispatch_common/mod.rs"]
mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use common::*;
use redcloud_connectors::channel::ChannelKind;
use redcloud_connectors::dispatch::{Counter, Dispatcher};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Provider {
    /// (arrival, path kind, idempotency header, body)
    hits: Mutex<Vec<(Instant, &'static str, String, Value)>>,
    down: AtomicBool,
    slow_first: AtomicU32,
    limited_once: AtomicBool,
    robot_violations: AtomicU32,
    robot_window: Mutex<HashMap<String, Vec<Instant>>>,
}

type P = Arc<Provider>;

fn idem(h: &HeaderMap) -> String {
    h.get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

async fn sms(State(p): State<P>, h: HeaderMap, Json(body): Json<Value>) -> Response {
    p.hits
        .lock()
        .unwrap()
        .push((Instant::now(), "sms", idem(&h), body.clone()));
    if p.down.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
    }
    if body["PhoneNumbers"] == "000" {
        return Json(json!({"Code":"isv.MOBILE_NUMBER_ILLEGAL","Message":"invalid"}))
            .into_response();
    }
    Json(json!({"Code":"OK","Message":"OK","BizId":"1"})).into_response()
}

async fn push(State(p): State<P>, h: HeaderMap, Json(body): Json<Value>) -> Response {
    p.hits
        .lock()
        .unwrap()
        .push((Instant::now(), "push", idem(&h), body.clone()));
    if p.slow_first.load(Ordering::Relaxed) > 0 {
        p.slow_first.fetch_sub(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    if body["token"] == "expired" {
        return (StatusCode::GONE, "gone").into_response();
    }
    if body["token"] == "limited" && !p.limited_once.swap(true, Ordering::Relaxed) {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            "slow down",
        )
            .into_response();
    }
    (StatusCode::OK, "{}").into_response()
}

/// Enforces at most 5 messages in any 2 s per robot key, like WeCom's 20/min.
async fn robot(
    State(p): State<P>,
    Query(q): Query<HashMap<String, String>>,
    h: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let now = Instant::now();
    p.hits
        .lock()
        .unwrap()
        .push((now, "robot", idem(&h), body.clone()));
    let key = q.get("key").cloned().unwrap_or_default();
    let mut w = p.robot_window.lock().unwrap();
    let log = w.entry(key).or_default();
    log.retain(|t| now.duration_since(*t) <= Duration::from_secs(2));
    if log.len() >= 5 {
        p.robot_violations.fetch_add(1, Ordering::Relaxed);
        return Json(json!({"errcode":45009,"errmsg":"api freq out of limit"})).into_response();
    }
    log.push(now);
    Json(json!({"errcode":0,"errmsg":"ok"})).into_response()
}

async fn serve() -> (P, String) {
    let p: P = Arc::default();
    let app = Router::new()
        .route("/sms", post(sms))
        .route("/push", post(push))
        .route("/robot", post(robot))
        .with_state(p.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (p, base)
}

fn http_config(
    base: &str,
    top: &str,
    extra: &str,
) -> redcloud_connectors::dispatch::DispatchConfig {
    config(&format!(
        r#"{top}
[digest]
window = "0"
[channels.sms]
url = "{base}/sms"
sign_name = "红云"
template_code = "SMS_100"
per_recipient = []
quiet_hours = "none"
timeout = "1s"
[channels.push]
url = "{base}/push"
quiet_hours = "none"
timeout = "500ms"
[channels.group]
url = "{base}/robot?key={{key}}"
per_recipient = [{{ limit = 5, period = "2s" }}]
{extra}"#
    ))
}

async fn run(d: Dispatcher, envs: Vec<redcloud_engine::notify::Envelope>) {
    let (tx, rx) = mpsc::channel(256);
    let task = tokio::spawn(d.run(rx, CancellationToken::new()));
    for e in envs {
        tx.send(e).await.unwrap();
    }
    drop(tx);
    let left = tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .unwrap()
        .unwrap();
    assert!(left.is_empty());
}

fn start() -> i64 {
    local_ms(10, 12, 0, 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn formats_and_idempotency_keys_reach_the_providers() {
    let (p, base) = serve().await;
    let cfg = http_config(&base, "", "[routes.default]\nreminder = [\"push\", \"sms\"]\nescalation = [\"sms\", \"group\"]\nwarning = [\"group\"]\n");
    let d = Dispatcher::new(cfg, offices())
        .unwrap()
        .with_clock(redcloud_connectors::dispatch::Clock::starting_at(start()));
    let stats = d.stats();
    let mut r = env("n-push", "reminder", 1, "member:a", "member:a");
    r.push = Some("tok-a".into());
    let e = env("n-sms", "escalation", 2, "member:a", "office:city");
    let mut w = env("n-robot", "warning", 1, "ticket:t1", "member:lead");
    w.org_group = Some("k1".into());
    w.ticket_title = Some("路灯不亮".into());
    w.deadline = Some("2026-03-20T00:00:00+08:00".into());
    run(d, vec![r, e, w]).await;
    let hits = p.hits.lock().unwrap().clone();
    assert_eq!(hits.len(), 3);
    let by = |k: &str| hits.iter().find(|h| h.1 == k).unwrap().clone();
    let (_, _, key, sms) = by("sms");
    assert_eq!(key, "n-sms");
    assert_eq!(sms["PhoneNumbers"], "13900000000");
    assert_eq!(sms["SignName"], "红云");
    assert_eq!(sms["TemplateCode"], "SMS_100");
    assert_eq!(sms["OutId"], "n-sms");
    let params: Value = serde_json::from_str(sms["TemplateParam"].as_str().unwrap()).unwrap();
    assert_eq!(params["missed"], "5");
    assert_eq!(params["member_name"], "张三");
    let (_, _, key, push) = by("push");
    assert_eq!(key, "n-push");
    assert_eq!(push["token"], "tok-a");
    assert_eq!(push["id"], "n-push");
    assert!(push["body"].as_str().unwrap().contains("未完成每日学习"));
    let (_, _, key, robot) = by("robot");
    assert_eq!(key, "n-robot");
    assert_eq!(robot["msgtype"], "markdown");
    let content = robot["markdown"]["content"].as_str().unwrap();
    assert!(
        content.contains("路灯不亮") && content.contains("2026-03-20 00:00"),
        "{content}"
    );
    assert_eq!(stats.total(Counter::Delivered), 3);
    assert!(stats.sms_segments() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strict_robot_never_sees_its_limit_exceeded() {
    let (p, base) = serve().await;
    let cfg = http_config(&base, "", "[routes.default]\ndefault = [\"group\"]\n");
    let d = Dispatcher::new(cfg, offices()).unwrap();
    let stats = d.stats();
    let mut envs = Vec::new();
    for i in 0..16 {
        let mut e = env(
            &format!("g{i}"),
            "escalation",
            1,
            &format!("member:m{i}"),
            &format!("member:l{i}"),
        );
        e.org_group = Some("k1".into());
        envs.push(e);
    }
    run(d, envs).await;
    assert_eq!(p.robot_violations.load(Ordering::Relaxed), 0, "no 45009");
    let hits = p.hits.lock().unwrap().clone();
    assert_eq!(hits.len(), 16);
    let ids: HashSet<_> = hits.iter().map(|h| h.2.clone()).collect();
    assert_eq!(ids.len(), 16);
    assert_eq!(stats.total(Counter::Delivered), 16);
    assert_eq!(stats.total(Counter::ProviderLimited), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sms_outage_queues_and_drains_without_loss_or_duplicates() {
    let (p, base) = serve().await;
    p.down.store(true, Ordering::Relaxed);
    let cfg = http_config(
        &base,
        "retry_initial = \"100ms\"\nretry_max = \"400ms\"\nmax_attempts = 4",
        "[channels.sms.circuit_breaker]\nfailures = 3\nopen_for = \"300ms\"\n[routes.default]\ndefault = [\"sms\"]\n",
    );
    let d = Dispatcher::new(cfg, offices()).unwrap();
    let stats = d.stats();
    let dead = d.dead_letters();
    let mut envs = Vec::new();
    for (i, kind) in ["reminder", "warning", "escalation"]
        .iter()
        .cycle()
        .take(30)
        .enumerate()
    {
        let mut e = env(
            &format!("s{i}"),
            kind,
            1,
            &format!("member:m{i}"),
            &format!("member:m{i}"),
        );
        e.sms = Some(format!("1380000{i:04}"));
        envs.push(e);
    }
    let p2 = p.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        p2.down.store(false, Ordering::Relaxed);
    });
    run(d, envs).await;
    assert!(dead.is_empty(), "{:?}", dead.list());
    assert_eq!(stats.total(Counter::Delivered), 30);
    assert!(stats.breaker_opens(ChannelKind::Sms) >= 1);
    assert!(stats.total(Counter::Retried) > 0);
    let hits = p.hits.lock().unwrap().clone();
    // Each id was accepted once: the accepted requests are the last one per id.
    let ids: HashSet<_> = hits.iter().map(|h| h.2.clone()).collect();
    assert_eq!(ids.len(), 30);
    assert!(
        hits.len() < 30 + 40,
        "the breaker kept the outage traffic low: {}",
        hits.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn final_answers_fail_fast_and_retry_after_and_timeouts_are_honoured() {
    let (p, base) = serve().await;
    p.slow_first.store(1, Ordering::Relaxed);
    let cfg = http_config(
        &base,
        "retry_initial = \"100ms\"\nretry_max = \"200ms\"",
        "[routes.default]\ndefault = [\"push\", \"sms\"]\n",
    );
    let d = Dispatcher::new(cfg, offices()).unwrap();
    let stats = d.stats();
    let dead = d.dead_letters();
    // Slow first answer (timeout, retried), then fine.
    let mut slow = env("slow", "reminder", 1, "member:s", "member:s");
    slow.push = Some("tok-s".into());
    // Expired token: final, falls back to an invalid number: final, dead.
    let mut bad = env("bad", "reminder", 1, "member:b", "member:b");
    bad.push = Some("expired".into());
    bad.sms = Some("000".into());
    run(d, vec![slow, bad]).await;
    let dl = dead.list();
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0].id, "bad");
    assert_eq!(dl[0].channel, Some("sms"));
    assert!(
        dl[0].reason.contains("isv.MOBILE_NUMBER_ILLEGAL"),
        "{}",
        dl[0].reason
    );
    assert_eq!(stats.total(Counter::Fallback), 1);
    assert_eq!(stats.total(Counter::Delivered), 1);

    // 429 with Retry-After: 1 pauses the push channel for a second.
    let (p, base) = serve().await;
    let cfg = http_config(
        &base,
        "retry_initial = \"100ms\"",
        "[routes.default]\ndefault = [\"push\"]\n",
    );
    let d = Dispatcher::new(cfg, offices()).unwrap();
    let stats = d.stats();
    let mut l = env("lim", "reminder", 1, "member:l", "member:l");
    l.push = Some("limited".into());
    run(d, vec![l]).await;
    let hits = p.hits.lock().unwrap().clone();
    assert_eq!(hits.len(), 2);
    assert!(hits[1].0.duration_since(hits[0].0) >= Duration::from_millis(950));
    assert_eq!(stats.total(Counter::ProviderLimited), 1);
    drop(p);
}
