//! The whole path through the real `redcloud run` binary: HTTP ingest ->
//! shards -> contact directory -> dispatcher -> local provider servers that
//! behave like Aliyun SMS, a push gateway and WeCom group robots (limits with
//! their over-limit answers, an outage switch), started by the test on
//! 127.0.0.1:0.
//!
//! Time: `REDCLOUD_FAKE_NOW` puts the daemon's wall clock (and so the
//! dispatcher's quiet hours) where a test needs it; the five missed working
//! days are closed in event time by one broadcast event dated the Saturday
//! after, so escalations fire within a second. What the daemon must deliver is
//! what `redcloud replay` decides on the same events: every notification id is
//! checked to arrive exactly once (alone, or inside its digest, whose
//! idempotency key is the hash of its sorted ids).
//!
//! The tests run in parallel; the longest (the robot's 60-second window) takes
//! about 70 s. Every wait is bounded.

mod daemon_support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use daemon_support::{ev, suffix, Daemon, Opts, DEFAULT_TOML, TOKEN};
use serde_json::{json, Value};
use xxhash_rust::xxh3::{xxh3_128, xxh3_64};

// ------------------------------------------------------------ fake providers

/// One request a provider saw.
#[derive(Clone, Debug)]
struct Arrival {
    channel: &'static str,
    at: Instant,
    /// Phone, push token or robot key.
    to: String,
    /// The `Idempotency-Key` header.
    id: String,
    body: Value,
    /// `ok`, `503`, `over-limit`.
    answer: &'static str,
}

struct Providers {
    arrivals: Mutex<Vec<Arrival>>,
    sms_down: AtomicBool,
    /// Aliyun-style per-number limits the SMS provider enforces.
    sms_windows: Vec<(usize, Duration)>,
}

/// The local provider servers; they stop with the test.
struct Fake {
    state: Arc<Providers>,
    port: u16,
    _rt: tokio::runtime::Runtime,
}

/// Over `limit` within `period` before `now`, counting accepted arrivals.
fn over(prior: &[Instant], now: Instant, windows: &[(usize, Duration)]) -> bool {
    windows.iter().any(|&(limit, period)| {
        prior
            .iter()
            .filter(|&&t| now.duration_since(t) < period)
            .count()
            >= limit
    })
}

fn accepted_times(a: &[Arrival], channel: &str, to: &str) -> Vec<Instant> {
    a.iter()
        .filter(|x| x.channel == channel && x.to == to && x.answer == "ok")
        .map(|x| x.at)
        .collect()
}

fn idem(h: &HeaderMap) -> String {
    h.get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

async fn sms(State(p): State<Arc<Providers>>, h: HeaderMap, Json(body): Json<Value>) -> Response {
    let now = Instant::now();
    let to = body["PhoneNumbers"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut a = p.arrivals.lock().unwrap();
    let mut arrival = Arrival {
        channel: "sms",
        at: now,
        to: to.clone(),
        id: idem(&h),
        body,
        answer: "ok",
    };
    if p.sms_down.load(Ordering::SeqCst) {
        arrival.answer = "503";
        a.push(arrival);
        return (StatusCode::SERVICE_UNAVAILABLE, "down for maintenance").into_response();
    }
    if over(&accepted_times(&a, "sms", &to), now, &p.sms_windows) {
        arrival.answer = "over-limit";
        a.push(arrival);
        return Json(json!({"Code": "isv.BUSINESS_LIMIT_CONTROL", "Message": "触发号码天级流控"}))
            .into_response();
    }
    a.push(arrival);
    Json(json!({"Code": "OK", "Message": "OK", "RequestId": "r", "BizId": "b"})).into_response()
}

async fn push(State(p): State<Arc<Providers>>, h: HeaderMap, Json(body): Json<Value>) -> Response {
    let to = body["token"].as_str().unwrap_or_default().to_string();
    p.arrivals.lock().unwrap().push(Arrival {
        channel: "push",
        at: Instant::now(),
        to,
        id: idem(&h),
        body,
        answer: "ok",
    });
    Json(json!({"ok": true})).into_response()
}

/// A WeCom robot: more than 20 in any 60 s is answered 45009.
async fn robot(
    State(p): State<Arc<Providers>>,
    Query(q): Query<HashMap<String, String>>,
    h: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let now = Instant::now();
    let to = q.get("key").cloned().unwrap_or_default();
    let mut a = p.arrivals.lock().unwrap();
    let limited = over(
        &accepted_times(&a, "robot", &to),
        now,
        &[(20, Duration::from_secs(60))],
    );
    a.push(Arrival {
        channel: "robot",
        at: now,
        to,
        id: idem(&h),
        body,
        answer: if limited { "over-limit" } else { "ok" },
    });
    if limited {
        return Json(json!({"errcode": 45009, "errmsg": "api freq out of limit"})).into_response();
    }
    Json(json!({"errcode": 0, "errmsg": "ok"})).into_response()
}

impl Fake {
    fn start(sms_windows: Vec<(usize, Duration)>) -> Result<Fake> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let state = Arc::new(Providers {
            arrivals: Mutex::new(Vec::new()),
            sms_down: AtomicBool::new(false),
            sms_windows,
        });
        let app = Router::new()
            .route("/sms", post(sms))
            .route("/push", post(push))
            .route("/robot/send", post(robot))
            .with_state(state.clone());
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let port = listener.local_addr()?.port();
        rt.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Fake {
            state,
            port,
            _rt: rt,
        })
    }

    fn arrivals(&self) -> Vec<Arrival> {
        self.state.arrivals.lock().unwrap().clone()
    }

    fn ok(&self, channel: &str) -> Vec<Arrival> {
        self.arrivals()
            .into_iter()
            .filter(|a| a.channel == channel && a.answer == "ok")
            .collect()
    }

    fn set_sms_down(&self, down: bool) {
        self.state.sms_down.store(down, Ordering::SeqCst);
    }

    /// `[dispatch.channels.*]` pointing at this server.
    fn channels(&self, sms_extra: &str) -> String {
        let p = self.port;
        format!(
            "[dispatch.channels.sms]\nurl = \"http://127.0.0.1:{p}/sms\"\nsign_name = \"红云\"\n\
             template_code = \"SMS_0001\"\ntimeout = \"2s\"\n{sms_extra}\n\
             [dispatch.channels.push]\nurl = \"http://127.0.0.1:{p}/push\"\ntimeout = \"2s\"\n\n\
             [dispatch.channels.group]\nurl = \"http://127.0.0.1:{p}/robot/send?key={{key}}\"\ntimeout = \"2s\"\n"
        )
    }
}

// ------------------------------------------------------------ scenario helpers

fn org(
    id: &str,
    at: &str,
    o: &str,
    parent: Option<&str>,
    level: &str,
    leader: Option<&str>,
    robot: Option<&str>,
) -> String {
    let q = |v: Option<&str>| v.map_or("null".to_string(), |s| format!("\"{s}\""));
    let contacts = robot.map_or(String::new(), |r| {
        format!(r#","contacts":{{"group":"{r}"}}"#)
    });
    ev(
        id,
        "org.upserted",
        at,
        &format!(
            r#""org":"{o}","parent":{},"level":"{level}","leader":{},"name":"{o}名"{contacts}"#,
            q(parent),
            q(leader)
        ),
    )
}

fn member(
    id: &str,
    at: &str,
    m: &str,
    o: &str,
    name: &str,
    sms: Option<&str>,
    push: Option<&str>,
) -> String {
    let mut c = Vec::new();
    if let Some(s) = sms {
        c.push(format!(r#""sms":"{s}""#));
    }
    if let Some(p) = push {
        c.push(format!(r#""push":"{p}""#));
    }
    ev(
        id,
        "member.upserted",
        at,
        &format!(
            r#""member":"{m}","org":"{o}","name":"{name}","contacts":{{{}}}"#,
            c.join(",")
        ),
    )
}

fn login(id: &str, at: &str, m: &str) -> String {
    ev(id, "app.login", at, &format!(r#""member":"{m}""#))
}

/// The tree c (city) > k (county) > t (town), each without a leader.
fn tree(at: &str) -> Vec<String> {
    vec![
        org("o-c", at, "c", None, "city", None, None),
        org("o-k", at, "k", Some("c"), "county", None, None),
        org("o-t", at, "t", Some("k"), "town", None, None),
    ]
}

/// A broadcast event dated `at` (the city org again): moves every shard's
/// event time there, closing the days before it.
fn clock_event(at: &str) -> String {
    org("tick-c", at, "c", None, "city", None, None)
}

/// What `redcloud replay` decides on `events` with `config`.
fn replay(config: &str, events: &[String]) -> Result<Vec<Value>> {
    let dir = std::env::temp_dir().join(format!("redcloud-dd-replay-{}", suffix()));
    std::fs::create_dir_all(&dir)?;
    let cfg = dir.join("c.toml");
    let evs = dir.join("e.ndjson");
    std::fs::write(&cfg, config)?;
    std::fs::write(&evs, events.join("\n") + "\n")?;
    let out = Command::new(env!("CARGO_BIN_EXE_redcloud"))
        .args(["replay", "--events"])
        .arg(&evs)
        .arg("--config")
        .arg(&cfg)
        .output()?;
    let _ = std::fs::remove_dir_all(&dir);
    ensure!(
        out.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)?
        .lines()
        .map(|l| Ok(serde_json::from_str(l)?))
        .collect()
}

/// The idempotency key of a message carrying `ids` (a digest when several).
fn message_id(ids: &[String]) -> String {
    if ids.len() == 1 {
        return ids[0].clone();
    }
    let mut v: Vec<&str> = ids.iter().map(String::as_str).collect();
    v.sort_unstable();
    format!("{:032x}", xxh3_128(v.join("\u{1f}").as_bytes()))
}

/// Expected messages: notifications grouped as the digest groups them
/// (recipient, policy, kind, step), each group's message id -> its ids.
fn digests(notes: &[Value]) -> BTreeMap<String, Vec<String>> {
    let mut groups: BTreeMap<(String, String, String, u64), Vec<String>> = BTreeMap::new();
    for n in notes {
        groups
            .entry((
                n["recipient"].as_str().unwrap().to_string(),
                n["policy"].as_str().unwrap().to_string(),
                n["kind"].as_str().unwrap().to_string(),
                n["step"].as_u64().unwrap(),
            ))
            .or_default()
            .push(n["id"].as_str().unwrap().to_string());
    }
    groups
        .into_values()
        .map(|ids| (message_id(&ids), ids))
        .collect()
}

/// Every closed window of `period` over `times` holds at most `limit`.
fn windows_hold(times: &[Instant], limit: usize, period: Duration) -> bool {
    let mut t = times.to_vec();
    t.sort();
    (0..t.len()).all(|i| t[i..].iter().take_while(|&&x| x - t[i] <= period).count() <= limit)
}

fn tmp_dir(tag: &str) -> Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("redcloud-dd-{tag}-{}", suffix()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

fn ingest(d: &Daemon, lines: &[String]) -> Result<()> {
    let (s, body) = d.post_events(lines, None)?;
    ensure!(s == 200, "ingest answered {s}: {body}");
    Ok(())
}

fn metric(d: &Daemon, series: &str) -> Result<f64> {
    Ok(d.metric(series)?.unwrap_or(0.0))
}

const ROUTES: &str = "[dispatch.routes.quiz]\nreminder = [\"push\", \"sms\", \"group\"]\nescalation = [\"sms\", \"group\"]\n";

/// The tree, a village `unit` without a leader and `n` members with phones
/// (`<phone>00`, `<phone>01`, …) who logged in on Monday 2026-03-02 and
/// answer nothing; and the event that closes Monday.
fn unit_with_phones(unit: &str, prefix: &str, phone: &str, n: usize) -> (Vec<String>, String) {
    let at = "2026-03-02T09:00:30+08:00";
    let mut events = tree(at);
    events.push(org(
        &format!("o-{unit}"),
        at,
        unit,
        Some("t"),
        "village",
        None,
        None,
    ));
    for i in 0..n {
        let m = format!("{prefix}{i:02}");
        events.push(member(
            &format!("e-{m}"),
            at,
            &m,
            unit,
            &m,
            Some(&format!("{phone}{i:02}")),
            None,
        ));
        events.push(login(&format!("l-{m}"), at, &m));
    }
    (events, clock_event("2026-03-03T00:00:01+08:00"))
}

/// The notification ids `redcloud replay` decides for `events` then `tick`.
fn expected_ids(extra: &str, events: &[String], tick: &str) -> Result<BTreeSet<String>> {
    let mut all = events.to_vec();
    all.push(tick.to_string());
    Ok(replay(&format!("{DEFAULT_TOML}\n{extra}"), &all)?
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_string())
        .collect())
}

// ------------------------------------------------------------------- tests

/// (a) and (b): 30 members of one unit miss 5 working days. Reminders go by
/// push (5 members with a token), SMS (the leader, who also missed) or the
/// unit's robot (25); escalations to the leader's phone (one digest of 30)
/// and the city office's phone (one digest). The robot takes 20 in the first
/// 60 s and the rest after; the leader's second SMS waits out the per-number
/// minute; no provider ever answers over-limit.
#[test]
fn a_burst_of_escalations_reaches_every_provider_within_every_limit() -> Result<()> {
    let fake = Fake::start(vec![
        (1, Duration::from_secs(60)),
        (5, Duration::from_secs(3600)),
        (10, Duration::from_secs(86400)),
    ])?;
    let data = tmp_dir("burst")?;
    let extra = format!(
        "[offices.city.contacts]\nsms = \"13900000000\"\n\n[dispatch.digest]\nwindow = \"3s\"\n\n{ROUTES}\n{}",
        fake.channels("")
    );
    let at = "2026-03-02T09:00:30+08:00";
    let mut events = tree(at);
    events.push(org(
        "o-u1",
        at,
        "u1",
        Some("t"),
        "village",
        Some("L"),
        Some("robot-u1"),
    ));
    events.push(member(
        "e-L",
        at,
        "L",
        "u1",
        "李书记",
        Some("13800000001"),
        None,
    ));
    events.push(login("l-L", at, "L"));
    for i in 0..30 {
        let m = format!("m{i:02}");
        let token = format!("tok-{i:02}");
        let push = (i < 5).then_some(token.as_str());
        events.push(member(
            &format!("e-{m}"),
            at,
            &m,
            "u1",
            &format!("党员{i:02}"),
            None,
            push,
        ));
        events.push(login(&format!("l-{m}"), at, &m));
    }
    let tick = clock_event("2026-03-07T00:00:01+08:00");
    let mut all = events.clone();
    all.push(tick.clone());
    let expected = digests(&replay(&format!("{DEFAULT_TOML}\n{extra}"), &all)?);
    // 31 reminder digests (30 members and L), the leader's and the office's escalations.
    assert_eq!(expected.len(), 33, "{expected:?}");

    let d = Daemon::start(Opts {
        extra: &extra,
        daemon: &format!("data_dir = \"{}\"\n", data.display()),
        env: vec![("REDCLOUD_FAKE_NOW", "2026-03-02T09:00:00+08:00".into())],
        ..Opts::default()
    })?;
    ingest(&d, &events)?;
    ingest(&d, &[tick])?;

    // The first robot window fills at once; nothing more for a minute.
    d.wait(Duration::from_secs(20), "20 robot messages", || {
        Ok(fake.ok("robot").len() >= 20 && fake.ok("push").len() >= 5 && fake.ok("sms").len() >= 2)
    })?;
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(fake.ok("robot").len(), 20, "the robot's window holds 20");
    assert_eq!(
        fake.ok("sms").len(),
        2,
        "the leader's second SMS waits a minute"
    );
    d.wait(Duration::from_secs(90), "all 33 messages", || {
        Ok(fake.ok("robot").len() + fake.ok("push").len() + fake.ok("sms").len() >= 33)
    })?;

    let arrivals = fake.arrivals();
    let refused: Vec<&Arrival> = arrivals.iter().filter(|a| a.answer != "ok").collect();
    assert!(refused.is_empty(), "a provider limit was hit: {refused:?}");
    let mut by_id: BTreeMap<&str, usize> = BTreeMap::new();
    for a in &arrivals {
        *by_id.entry(a.id.as_str()).or_default() += 1;
    }
    assert!(
        by_id.values().all(|&n| n == 1),
        "a message was sent twice: {by_id:?}"
    );
    let got: BTreeSet<&str> = by_id.keys().copied().collect();
    let want: BTreeSet<&str> = expected.keys().map(String::as_str).collect();
    assert_eq!(got, want, "every notification arrives once, in its digest");

    // Windows from the arrival times.
    for key in arrivals
        .iter()
        .filter(|a| a.channel == "robot")
        .map(|a| &a.to)
        .collect::<BTreeSet<_>>()
    {
        let t = accepted_times(&arrivals, "robot", key);
        assert!(
            windows_hold(&t, 20, Duration::from_secs(60)),
            "robot {key}: a 60 s window over 20"
        );
    }
    for phone in arrivals
        .iter()
        .filter(|a| a.channel == "sms")
        .map(|a| &a.to)
        .collect::<BTreeSet<_>>()
    {
        let t = accepted_times(&arrivals, "sms", phone);
        assert!(
            windows_hold(&t, 1, Duration::from_secs(60)),
            "{phone}: 1/min broken"
        );
        assert!(
            windows_hold(&t, 5, Duration::from_secs(3600)),
            "{phone}: 5/h broken"
        );
        assert!(
            windows_hold(&t, 10, Duration::from_secs(86400)),
            "{phone}: 10/d broken"
        );
    }
    assert_eq!(fake.ok("robot").len(), 25);
    assert_eq!(fake.ok("push").len(), 5);

    // (b) The leader: one SMS about all 30 members, escalations before reminders.
    let to_l: Vec<&Arrival> = arrivals
        .iter()
        .filter(|a| a.channel == "sms" && a.to == "13800000001")
        .collect();
    assert_eq!(to_l.len(), 2);
    let esc = &expected[&to_l[0].id];
    assert_eq!(
        esc.len(),
        30,
        "the leader's first SMS is the digest of 30 escalations"
    );
    let params: Value = serde_json::from_str(
        to_l[0].body["TemplateParam"]
            .as_str()
            .context("TemplateParam")?,
    )?;
    assert_eq!(params["count"], "30", "{params}");
    assert_eq!(params["recipient_name"], "李书记", "{params}");
    assert_eq!(
        expected[&to_l[1].id].len(),
        5,
        "then L's own 5 reminders, digested"
    );
    let office = arrivals
        .iter()
        .find(|a| a.to == "13900000000")
        .context("office SMS")?;
    assert_eq!(
        expected[&office.id].len(),
        31,
        "the office: one digest of 31"
    );
    // A robot digest lists its subjects.
    let content = fake.ok("robot")[0].body["markdown"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        content.contains("1. ") && content.contains("5. ") && content.contains("党员"),
        "{content}"
    );

    assert_eq!(
        metric(
            &d,
            r#"redcloud_dispatch_delivered_total{channel="group",kind="reminder"}"#
        )?,
        125.0
    );
    assert_eq!(
        metric(
            &d,
            r#"redcloud_dispatch_delivered_total{channel="sms",kind="escalation"}"#
        )?,
        61.0
    );
    assert!(
        metric(
            &d,
            r#"redcloud_dispatch_deferred_limit_total{channel="group",kind="reminder"}"#
        )? >= 5.0
    );
    assert_eq!(metric(&d, "redcloud_dispatch_pending")?, 0.0);
    let mut d = d;
    assert!(d.terminate(Duration::from_secs(20))?.success());
    assert!(
        std::fs::read_dir(&data).map_or(true, |r| r
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().starts_with("undelivered-"))),
        "nothing left undelivered"
    );
    assert!(
        d.logs()
            .contains("every notification taken in was delivered or dead-lettered"),
        "{}",
        d.logs()
    );
    let _ = std::fs::remove_dir_all(&data);
    Ok(())
}

/// (c) Quiet hours: at 07:59:40 the SMS channel is quiet (22:00-08:00), the
/// robot is not. The robot speaks at once; the escalations by SMS wait for
/// 08:00 and then go.
#[test]
fn quiet_hours_defer_sms_while_the_robot_speaks() -> Result<()> {
    let fake = Fake::start(vec![(1, Duration::from_secs(60))])?;
    let extra = format!(
        "[offices.city.contacts]\nsms = \"13900000000\"\n\n[dispatch.digest]\nwindow = \"1s\"\n\n{ROUTES}\n{}",
        fake.channels("")
    );
    let at = "2026-03-02T07:59:52+08:00";
    let mut events = tree(at);
    events.push(org(
        "o-u2",
        at,
        "u2",
        Some("t"),
        "village",
        Some("L2"),
        Some("robot-u2"),
    ));
    events.push(member(
        "e-L2",
        at,
        "L2",
        "u2",
        "王书记",
        Some("13800000002"),
        None,
    ));
    for i in 0..3 {
        let m = format!("q{i}");
        events.push(member(
            &format!("e-{m}"),
            at,
            &m,
            "u2",
            &format!("党员{m}"),
            None,
            None,
        ));
        events.push(login(&format!("l-{m}"), at, &m));
    }
    let start = Instant::now();
    let d = Daemon::start(Opts {
        extra: &extra,
        env: vec![("REDCLOUD_FAKE_NOW", "2026-03-02T07:59:40+08:00".into())],
        ..Opts::default()
    })?;
    let quiet_end = start + Duration::from_secs(20);
    ingest(&d, &events)?;
    ingest(&d, &[clock_event("2026-03-07T00:00:01+08:00")])?;
    d.wait(Duration::from_secs(15), "3 robot reminders", || {
        Ok(fake.ok("robot").len() >= 3)
    })?;
    let robot_done = Instant::now();
    ensure!(
        robot_done < quiet_end,
        "the test ran too slowly to see the quiet period"
    );
    assert!(
        fake.arrivals().iter().all(|a| a.channel != "sms"),
        "an SMS during quiet hours"
    );
    assert!(
        metric(
            &d,
            r#"redcloud_dispatch_deferred_quiet_total{channel="sms",kind="escalation"}"#
        )? >= 2.0
    );
    d.wait(Duration::from_secs(40), "the SMS after 08:00", || {
        Ok(fake.ok("sms").len() >= 2)
    })?;
    for a in fake.ok("sms") {
        assert!(
            a.at + Duration::from_millis(200) >= quiet_end,
            "an SMS {:?} before the end of the quiet period",
            quiet_end - a.at
        );
    }
    assert_eq!(
        fake.ok("sms").len(),
        2,
        "the leader's and the office's digests"
    );
    assert_eq!(fake.ok("robot").len(), 3);
    Ok(())
}

/// (d) The SMS provider is down (503) when 20 reminders fall due: they queue,
/// the breaker opens, nothing is dead-lettered; after recovery every one
/// arrives exactly once.
#[test]
fn an_sms_outage_queues_and_after_recovery_nothing_is_lost_or_doubled() -> Result<()> {
    let fake = Fake::start(vec![(1, Duration::from_secs(2))])?;
    fake.set_sms_down(true);
    let extra = format!(
        "[dispatch]\nretry_initial = \"200ms\"\nretry_max = \"1s\"\n\n\
         [dispatch.digest]\nwindow = \"0\"\n\n\
         [dispatch.routes.quiz]\nreminder = [\"sms\"]\nescalation = [\"sms\"]\n\n{}",
        fake.channels(
            "per_recipient = [{ limit = 1, period = \"2s\" }]\ncircuit_breaker = { failures = 3, open_for = \"1s\" }\n"
        )
    );
    let (events, tick) = unit_with_phones("u3", "p", "137000000", 20);
    let want = expected_ids(&extra, &events, &tick)?;
    assert_eq!(want.len(), 20);

    let d = Daemon::start(Opts {
        extra: &extra,
        env: vec![("REDCLOUD_FAKE_NOW", "2026-03-02T09:00:00+08:00".into())],
        ..Opts::default()
    })?;
    ingest(&d, &events)?;
    ingest(&d, &[tick])?;
    d.wait(Duration::from_secs(15), "the breaker opens", || {
        Ok(metric(
            &d,
            r#"redcloud_dispatch_breaker_opens_total{channel="sms"}"#,
        )? >= 1.0)
    })?;
    std::thread::sleep(Duration::from_secs(3));
    assert!(fake.ok("sms").is_empty());
    let failed = fake.arrivals().iter().filter(|a| a.answer == "503").count();
    assert!(failed >= 3, "{failed} attempts during the outage");
    assert_eq!(metric(&d, "redcloud_dispatch_pending")?, 20.0);
    assert_eq!(d.get_json("/v1/dead-letters")?["kept"], 0);

    fake.set_sms_down(false);
    d.wait(Duration::from_secs(45), "20 SMS after recovery", || {
        Ok(fake.ok("sms").len() >= 20)
    })?;
    std::thread::sleep(Duration::from_millis(500));
    let ok = fake.ok("sms");
    let got: Vec<&str> = ok.iter().map(|a| a.id.as_str()).collect();
    let unique: BTreeSet<String> = got.iter().map(|s| s.to_string()).collect();
    assert_eq!(got.len(), unique.len(), "an SMS delivered twice");
    assert_eq!(unique, want, "every notification id arrives");
    for a in &ok {
        assert_eq!(
            a.body["OutId"],
            a.id.as_str(),
            "the id is the provider's idempotency key"
        );
    }
    assert!(fake.arrivals().iter().all(|a| a.answer != "over-limit"));
    assert_eq!(d.get_json("/v1/dead-letters")?["kept"], 0);
    assert_eq!(
        metric(
            &d,
            r#"redcloud_dispatch_delivered_total{channel="sms",kind="reminder"}"#
        )?,
        20.0
    );
    assert_eq!(metric(&d, "redcloud_dispatch_pending")?, 0.0);
    Ok(())
}

/// Durable outbox: reminders decided, covered by snapshots and stuck behind an
/// SMS outage when the daemon is killed with SIGKILL. After a restart (the
/// provider back up) every one arrives, exactly once: the snapshots alone
/// would have lost them, the log alone would not hold them (its segments
/// before the snapshot are gone).
#[test]
fn notifications_stuck_in_an_outage_survive_kill_9() -> Result<()> {
    let fake = Fake::start(vec![])?;
    fake.set_sms_down(true);
    let data = tmp_dir("outbox")?;
    let extra = format!(
        "[dispatch]\nretry_initial = \"200ms\"\nretry_max = \"1s\"\n\n\
         [dispatch.digest]\nwindow = \"0\"\n\n\
         [dispatch.routes.quiz]\nreminder = [\"sms\"]\nescalation = [\"sms\"]\n\n{}",
        fake.channels(
            "per_recipient = [{ limit = 1, period = \"2s\" }]\ncircuit_breaker = { failures = 3, open_for = \"1s\" }\n"
        )
    );
    let daemon = format!(
        "data_dir = \"{}\"\ndurability = \"wal\"\nsnapshot_interval = \"1s\"\n",
        data.display()
    );
    let (events, tick) = unit_with_phones("u5", "q", "136000000", 12);
    let want = expected_ids(&extra, &events, &tick)?;
    assert_eq!(want.len(), 12);
    let env = || vec![("REDCLOUD_FAKE_NOW", "2026-03-02T09:00:00+08:00".to_string())];

    let d = Daemon::start(Opts {
        extra: &extra,
        daemon: &daemon,
        env: env(),
        ..Opts::default()
    })?;
    ingest(&d, &events)?;
    ingest(&d, &[tick])?;
    d.wait(Duration::from_secs(15), "the breaker opens", || {
        Ok(metric(
            &d,
            r#"redcloud_dispatch_breaker_opens_total{channel="sms"}"#,
        )? >= 1.0)
    })?;
    // Snapshots taken after the reminders were decided cover the records
    // that decided them.
    let before = metric(&d, "redcloud_snapshots_total")?;
    d.wait(Duration::from_secs(15), "two more snapshots", || {
        Ok(metric(&d, "redcloud_snapshots_total")? >= before + 4.0)
    })?;
    assert!(fake.ok("sms").is_empty());
    assert_eq!(metric(&d, "redcloud_dispatch_pending")?, 12.0);
    drop(d); // SIGKILL

    fake.set_sms_down(false);
    let d = Daemon::start(Opts {
        extra: &extra,
        daemon: &daemon,
        env: env(),
        ..Opts::default()
    })?;
    d.wait(Duration::from_secs(30), "12 SMS after the restart", || {
        Ok(fake.ok("sms").len() >= 12)
    })?;
    std::thread::sleep(Duration::from_millis(500));
    let ok = fake.ok("sms");
    let got: Vec<&str> = ok.iter().map(|a| a.id.as_str()).collect();
    let unique: BTreeSet<String> = got.iter().map(|s| s.to_string()).collect();
    assert_eq!(got.len(), unique.len(), "an SMS delivered twice: {got:?}");
    assert_eq!(unique, want, "every notification id arrives");
    let logs = d.logs();
    assert!(logs.contains("12 to send again"), "{logs}");
    assert!(!logs.contains("13600000000"), "a phone number in the log");

    // A graceful restart now: everything is settled, nothing is sent again.
    let mut d = d;
    let status = d.terminate(Duration::from_secs(30))?;
    assert!(status.success(), "{status:?}\n{}", d.logs());
    let d = Daemon::start(Opts {
        extra: &extra,
        daemon: &daemon,
        env: env(),
        ..Opts::default()
    })?;
    d.wait_ready(Duration::from_secs(20))?;
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(fake.ok("sms").len(), 12, "sent again after a clean restart");
    assert!(d.logs().contains("0 to send again"), "{}", d.logs());
    drop(d);
    let _ = std::fs::remove_dir_all(&data);
    Ok(())
}

/// The shard that owns `key` among `n` (as the daemon's router computes it).
fn shard_of(key: &str, n: u64) -> u64 {
    xxh3_64(key.as_bytes()) % n
}

/// Item 2: the leader is owned by the other shard, yet the escalation reaches
/// the leader's phone (and name). A leader with no contact at all is a dead
/// letter, visible (with the token) at `/v1/dead-letters`, without personal data.
#[test]
fn a_leader_owned_by_another_shard_gets_the_escalation_on_their_phone() -> Result<()> {
    let fake = Fake::start(vec![(1, Duration::from_secs(60))])?;
    let lead = (0..100)
        .map(|i| format!("lead-{i}"))
        .find(|l| shard_of(l, 2) != shard_of("mem-a", 2))
        .context("no leader id on the other shard")?;
    let extra = format!(
        "[offices.city.contacts]\nsms = \"13900000000\"\n\n[dispatch.digest]\nwindow = \"1s\"\n\n\
         [dispatch.routes.quiz]\nreminder = [\"console\"]\nescalation = [\"sms\"]\n\n{}",
        fake.channels("")
    );
    let at = "2026-03-02T09:00:30+08:00";
    let mut events = tree(at);
    events.push(org(
        "o-ua",
        at,
        "ua",
        Some("t"),
        "village",
        Some(&lead),
        None,
    ));
    events.push(org(
        "o-ub",
        at,
        "ub",
        Some("t"),
        "village",
        Some("lead-b"),
        None,
    ));
    events.push(member(
        "e-lead",
        at,
        &lead,
        "t",
        "赵书记",
        Some("13600000001"),
        None,
    ));
    events.push(member("e-lead-b", at, "lead-b", "t", "", None, None).replace(r#","name":"""#, ""));
    for m in ["mem-a", "mem-b"] {
        let o = if m == "mem-a" { "ua" } else { "ub" };
        events.push(member(&format!("e-{m}"), at, m, o, m, None, None));
        events.push(login(&format!("l-{m}"), at, m));
    }
    let d = Daemon::start(Opts {
        extra: &extra,
        env: vec![("REDCLOUD_FAKE_NOW", "2026-03-02T09:00:00+08:00".into())],
        ..Opts::default()
    })?;
    ingest(&d, &events)?;
    ingest(&d, &[clock_event("2026-03-07T00:00:01+08:00")])?;
    d.wait(
        Duration::from_secs(20),
        "the leader's SMS and the office's",
        || Ok(fake.ok("sms").len() >= 2),
    )?;
    let to_lead: Vec<Arrival> = fake
        .ok("sms")
        .into_iter()
        .filter(|a| a.to == "13600000001")
        .collect();
    assert_eq!(
        to_lead.len(),
        1,
        "the escalation about mem-a reaches the leader's phone"
    );
    let params: Value =
        serde_json::from_str(to_lead[0].body["TemplateParam"].as_str().unwrap_or("{}"))?;
    assert_eq!(params["recipient_name"], "赵书记", "{params}");
    assert_eq!(params["member_name"], "mem-a", "{params}");
    // Only leaders are shared between shards: the one with contacts (the
    // other leader has none; mem-a and mem-b lead nothing).
    assert_eq!(metric(&d, "redcloud_contact_directory_members")?, 1.0);

    // The leader without contacts: unroutable, a dead letter, no personal data.
    d.wait(Duration::from_secs(10), "one dead letter", || {
        Ok(d.get_json("/v1/dead-letters")?["kept"] == 1)
    })?;
    let (s, _) = d.request("GET", "/v1/dead-letters", None, "")?;
    assert_eq!(s, 401, "the dead letters need the token");
    let (s, body) = d.request("GET", "/v1/dead-letters", Some(TOKEN), "")?;
    assert_eq!(s, 200);
    let v: Value = serde_json::from_str(&body)?;
    assert_eq!(v["items"][0]["recipient"], "member:lead-b");
    assert!(v["items"][0]["reason"]
        .as_str()
        .unwrap_or_default()
        .starts_with("unroutable"));
    for secret in ["1360000", "1390000", "赵书记"] {
        assert!(!body.contains(secret), "{body}");
    }
    assert_eq!(
        metric(
            &d,
            r#"redcloud_dispatch_unroutable_total{channel="none",kind="escalation"}"#
        )?,
        1.0
    );
    // Reminders went to the console: one notification object per line.
    d.wait(Duration::from_secs(10), "reminders on stdout", || {
        Ok(d.stdout_lines()
            .iter()
            .filter(|l| l.contains("\"kind\":\"reminder\""))
            .count()
            >= 10)
    })?;
    Ok(())
}

/// Shutdown during quiet hours: the deferred SMS are not delivered, so they
/// are written to `[daemon] data_dir/undelivered-<unix>.ndjson` and the
/// daemon exits 0.
#[test]
fn undelivered_notifications_are_kept_in_the_data_dir_at_shutdown() -> Result<()> {
    let fake = Fake::start(vec![(1, Duration::from_secs(60))])?;
    let data = tmp_dir("left")?.join("nested");
    let extra = format!(
        "[dispatch.digest]\nwindow = \"0\"\n\n[dispatch.routes.quiz]\nreminder = [\"sms\"]\nescalation = [\"sms\"]\n\n{}",
        fake.channels("")
    );
    let at = "2026-03-02T23:00:30+08:00";
    let mut events = tree(at);
    events.push(org("o-u4", at, "u4", Some("t"), "village", None, None));
    for i in 0..3 {
        let m = format!("n{i}");
        events.push(member(
            &format!("e-{m}"),
            at,
            &m,
            "u4",
            &m,
            Some(&format!("1350000000{i}")),
            None,
        ));
        events.push(login(&format!("l-{m}"), at, &m));
    }
    let tick = clock_event("2026-03-03T00:00:01+08:00");
    let mut all = events.clone();
    all.push(tick.clone());
    let want: BTreeSet<String> = replay(&format!("{DEFAULT_TOML}\n{extra}"), &all)?
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(want.len(), 3);
    let mut d = Daemon::start(Opts {
        extra: &extra,
        daemon: &format!("data_dir = \"{}\"\ndurability = \"none\"\n", data.display()),
        env: vec![("REDCLOUD_FAKE_NOW", "2026-03-02T23:00:00+08:00".into())],
        ..Opts::default()
    })?;
    ingest(&d, &events)?;
    ingest(&d, &[tick])?;
    d.wait(Duration::from_secs(10), "3 reminders taken in", || {
        Ok(metric(
            &d,
            r#"redcloud_dispatch_received_total{channel="none",kind="reminder"}"#,
        )? >= 3.0)
    })?;
    std::thread::sleep(Duration::from_millis(300));
    assert!(fake.arrivals().is_empty(), "an SMS in the night");
    let status = d.terminate(Duration::from_secs(30))?;
    assert!(status.success(), "{status:?}\n{}", d.logs());
    let files: Vec<PathBuf> = std::fs::read_dir(&data)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    ensure!(files.len() == 1, "{files:?}\n{}", d.logs());
    let name = files[0].file_name().unwrap().to_string_lossy().to_string();
    assert!(
        name.starts_with("undelivered-") && name.ends_with(".ndjson"),
        "{name}"
    );
    let text = std::fs::read_to_string(&files[0])?;
    let got: BTreeSet<String> = text
        .lines()
        .map(|l| -> Result<String> {
            let v: Value = serde_json::from_str(l)?;
            Ok(v["notification"]["id"].as_str().context("id")?.to_string())
        })
        .collect::<Result<_>>()?;
    assert_eq!(got, want);
    assert!(
        text.contains("13500000000"),
        "the envelopes keep their addresses"
    );
    let logs = d.logs();
    assert!(logs.contains("undelivered=3"), "{logs}");
    assert!(!logs.contains("13500000000"), "a phone number in the log");
    if let Some(top) = data.parent() {
        let _ = std::fs::remove_dir_all(top);
    }
    Ok(())
}
