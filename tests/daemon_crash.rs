//! Crash tests (issue #6) with the real binary and the real brokers: a real
//! producer (lapin with publisher confirms; Redis `XADD`) sends a known event
//! set to the daemon's AMQP or Redis Streams source while the test `kill -9`s
//! the daemon at random moments (at least three times) and restarts it on the
//! same `data_dir` (`durability = "wal"`, `snapshot_interval = "1s"`). The
//! producer talks to the broker only, so it keeps going across the daemon's
//! death; the broker keeps what was not acknowledged and redelivers it.
//!
//! The event set: a city > county > town > four villages tree with leaders,
//! 40 enrolled members doing (or missing) the daily quiz over ten working
//! days, 30 tickets opened a day (default `help` SLA and a short `crash` SLA
//! of 2 days), accepted, replied, resolved, cancelled, reassigned and rated on
//! later days, and a last event dated the Saturday after that closes the
//! Friday. Event time runs ahead of the daemon's wall clock
//! (`REDCLOUD_FAKE_NOW` is before the first event), so what is due is decided
//! by the events alone: reminders, escalations, ticket warnings and steps.
//!
//! Order: each day's events are published after the previous day's were all
//! taken by the daemon (AMQP: nothing ready and a consumer attached; what the
//! daemon holds unacknowledged goes back to its place in the classic queue if
//! it dies, ahead of later messages. Redis: nothing pending and everything
//! delivered to the group), so a redelivery after a kill never comes after a
//! later day's events. Within a day the events are
//! independent of their order (ticket lifecycle events come on days after the
//! opening; ticket timers fire at 10:00, lifecycle events at 14:00, quizzes at
//! 15:00), so the daemon must decide exactly what `redcloud replay` decides
//! on the same events.
//!
//! Every notification goes to a local push provider (digest off, quiet hours
//! off, a provider rate of 100/s so that a queue builds up at bursts), which
//! records each delivery's `Idempotency-Key` and arrival time. Checked after
//! the last restart, once deliveries settle:
//!
//! - every event's effect is there exactly once: `/v1/stats` equals
//!   `redcloud replay --stats`, each member's enrolment and missed run and each
//!   ticket's state, assignee and rating are what the events say;
//! - every notification `redcloud replay` decides was delivered at least once,
//!   to the right address, and nothing else was delivered;
//! - an id delivered twice is allowed only across a kill, when its earlier
//!   delivery came after the newest snapshot on disk at that kill (its deciding
//!   event was in the log tail that the restart replays: "at least once across
//!   a crash", docs/operations.md) — this includes a delivery in flight at the
//!   kill;
//! - the last daemon dead-lettered nothing, stops gracefully, and `redcloud
//!   state verify` accepts the data directory (or, with the state in Redis,
//!   `state verify --redis` its keys).
//!
//! Every run prints its figures on stderr (`--nocapture`): the kills (uptime,
//! dispatcher pending, dead letters, age of the newest snapshot), the
//! recoveries, the deliveries and, for every due notification never
//! delivered, its likely cause (held only by the dispatcher at a kill and
//! decided before the snapshots; dead-lettered; or unexplained).
//!
//! Every wait is bounded; each test takes about 15-25 s.

mod daemon_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, ensure, Context, Result};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use daemon_support::{ev, suffix, Daemon, Opts, DEFAULT_TOML};
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeleteOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use serde_json::{json, Value};

const NOW: &str = "2026-03-02T06:00:00+08:00";
/// Ten working days (cn-mainland 2026 has no holiday in these weeks).
const DAYS: [&str; 10] = [
    "2026-03-02",
    "2026-03-03",
    "2026-03-04",
    "2026-03-05",
    "2026-03-06",
    "2026-03-09",
    "2026-03-10",
    "2026-03-11",
    "2026-03-12",
    "2026-03-13",
];
/// The Saturday after: closes Friday the 13th.
const FINAL_AT: &str = "2026-03-14T00:00:01+08:00";
const MEMBERS: usize = 40;
const VILLAGES: usize = 4;
const TICKETS_PER_DAY: usize = 30;
const MIN_KILLS: usize = 3;
const MAX_KILLS: usize = 7;
/// Pause between two published events: spreads the publishing over ~10 s.
const PACE: Duration = Duration::from_millis(8);
const AMQP_URI: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const REDIS_URL: &str = "redis://127.0.0.1:6379/";
const GROUP: &str = "rc-crash";

// ------------------------------------------------------------------ scenario

/// The event set, in phases (setup, ten days, the final tick), and what the
/// state must be at the end.
struct Scenario {
    phases: Vec<Vec<String>>,
    /// Member id and its missed run at the end.
    members: Vec<(String, u32)>,
    /// Ticket id and its expected view.
    tickets: BTreeMap<String, TicketWant>,
}

#[derive(Clone, Debug, PartialEq)]
struct TicketWant {
    state: &'static str,
    assignee: String,
    rated: bool,
    satisfied: Option<bool>,
}

impl Scenario {
    fn all(&self) -> Vec<String> {
        self.phases.concat()
    }
}

fn at(day: &str, hour: usize, secs: usize) -> String {
    let s = hour * 3600 + secs;
    format!(
        "{day}T{:02}:{:02}:{:02}+08:00",
        s / 3600,
        (s / 60) % 60,
        s % 60
    )
}

fn org(id: &str, at: &str, o: &str, parent: Option<&str>, level: &str, leader: &str) -> String {
    let parent = parent.map_or("null".to_string(), |p| format!("\"{p}\""));
    ev(
        id,
        "org.upserted",
        at,
        &format!(
            r#""org":"{o}","parent":{parent},"level":"{level}","leader":"{leader}","name":"{o}""#
        ),
    )
}

fn member(at: &str, m: &str, o: &str) -> String {
    ev(
        &format!("mem-{m}"),
        "member.upserted",
        at,
        &format!(r#""member":"{m}","org":"{o}","name":"{m}","contacts":{{"push":"tok-{m}"}}"#),
    )
}

/// Member `i` misses day `d`: m00-m03 every day, m04-m07 days 2-8, the
/// others about one day in five.
fn misses(i: usize, d: usize) -> bool {
    i < 4 || ((4..8).contains(&i) && (2..=8).contains(&d)) || (i * 7 + d * 3).is_multiple_of(5)
}

fn scenario() -> Scenario {
    let mut phases = Vec::new();
    let t0 = at(DAYS[0], 7, 0);
    let mut setup = vec![
        org("org-c", &t0, "c", None, "city", "Lc"),
        org("org-k", &t0, "k", Some("c"), "county", "Lk"),
        org("org-t", &t0, "t", Some("k"), "town", "Lt"),
    ];
    for v in 0..VILLAGES {
        setup.push(org(
            &format!("org-v{v}"),
            &t0,
            &format!("v{v}"),
            Some("t"),
            "village",
            &format!("Lv{v}"),
        ));
    }
    for (l, o) in [("Lc", "c"), ("Lk", "k"), ("Lt", "t")] {
        setup.push(member(&t0, l, o));
    }
    for v in 0..VILLAGES {
        setup.push(member(&t0, &format!("Lv{v}"), &format!("v{v}")));
    }
    for i in 0..MEMBERS {
        setup.push(member(
            &t0,
            &format!("m{i:02}"),
            &format!("v{}", i % VILLAGES),
        ));
    }
    for i in 0..MEMBERS {
        setup.push(ev(
            &format!("login-m{i:02}"),
            "app.login",
            &at(DAYS[0], 8, i),
            &format!(r#""member":"m{i:02}""#),
        ));
    }
    phases.push(setup);

    let mut tickets = BTreeMap::new();
    for (d, day) in DAYS.iter().enumerate() {
        let mut p = Vec::new();
        for j in 0..TICKETS_PER_DAY {
            let tk = format!("t-{d}-{j}");
            let cat = if j % 3 == 0 { "help" } else { "crash" };
            let v = format!("v{}", j % VILLAGES);
            p.push(ev(
                &format!("open-{tk}"),
                "ticket.opened",
                &at(day, 10, j),
                &format!(r#""ticket":"{tk}","org":"{v}","category":"{cat}""#),
            ));
            tickets.insert(
                tk,
                TicketWant {
                    state: "open",
                    assignee: v,
                    rated: false,
                    satisfied: None,
                },
            );
        }
        let mut s = 0;
        for e in 0..d {
            for j in 0..TICKETS_PER_DAY {
                let tk = format!("t-{e}-{j}");
                let o = d - e;
                let other = format!("v{}", (j + 1) % VILLAGES);
                let acts: Vec<(&str, String)> = match (j % 6, o) {
                    (1, 1) | (3, 1) => vec![("ticket.accepted", String::new())],
                    (1, 3) | (2, 1) | (3, 3) => vec![("ticket.resolved", String::new())],
                    (3, 2) => vec![("ticket.replied", String::new())],
                    (3, 4) => vec![("ticket.rated", r#","satisfied":true"#.to_string())],
                    (4, 2) => vec![("ticket.cancelled", String::new())],
                    (5, 1) => vec![("ticket.reassigned", format!(r#","org":"{other}""#))],
                    (5, 2) => vec![("ticket.rated", r#","satisfied":false"#.to_string())],
                    _ => vec![],
                };
                for (ty, extra) in acts {
                    s += 1;
                    p.push(ev(
                        &format!("{ty}-{tk}"),
                        ty,
                        &at(day, 14, s),
                        &format!(r#""ticket":"{tk}"{extra}"#),
                    ));
                    let want = tickets.get_mut(&tk).expect("opened before");
                    match ty {
                        "ticket.accepted" => want.state = "accepted",
                        "ticket.replied" => want.state = "replied",
                        "ticket.resolved" => want.state = "resolved",
                        "ticket.cancelled" => want.state = "cancelled",
                        "ticket.reassigned" => want.assignee = other.clone(),
                        "ticket.rated" => {
                            want.rated = true;
                            want.satisfied = Some(extra.contains("true"));
                        }
                        _ => {}
                    }
                }
            }
        }
        for i in 0..MEMBERS {
            if !misses(i, d) {
                p.push(ev(
                    &format!("quiz-m{i:02}-{d}"),
                    "activity.recorded",
                    &at(day, 15, i),
                    &format!(r#""member":"m{i:02}","activity":"quiz""#),
                ));
            }
        }
        phases.push(p);
    }
    phases.push(vec![org("tick-final", FINAL_AT, "c", None, "city", "Lc")]);

    let members = (0..MEMBERS)
        .map(|i| {
            let run = (0..DAYS.len()).rev().take_while(|&d| misses(i, d)).count();
            (format!("m{i:02}"), run as u32)
        })
        .collect();
    Scenario {
        phases,
        members,
        tickets,
    }
}

/// Policies, offices and the dispatcher, shared by the daemon and the replay.
fn scenario_toml(provider_port: u16) -> String {
    format!(
        r#"
[offices.city.contacts]
push = "tok-office-city"

[offices.county.contacts]
push = "tok-office-county"

[[sla_policies]]
name = "crash"
categories = ["crash"]
resolve_within = "2d"
warn_before = ["1d"]
steps = [
  {{ after = "0h", notify = ["assignee_leader"] }},
  {{ after = "1d", notify = ["parent_leader"] }},
  {{ after = "2d", notify = ["office:county"] }},
]

[dispatch]
retry_initial = "100ms"
retry_max = "500ms"

[dispatch.digest]
window = "0"

[dispatch.routes.default]
default = ["push"]

[dispatch.channels.push]
url = "http://127.0.0.1:{provider_port}/push"
timeout = "2s"
quiet_hours = "none"
rate = {{ limit = 100, period = "1s" }}
burst = 10
"#
    )
}

/// The push token the provider must see for a recipient.
fn token_of(recipient: &str) -> String {
    match recipient.split_once(':') {
        Some(("member", m)) => format!("tok-{m}"),
        Some(("office", o)) => format!("tok-office-{o}"),
        _ => format!("?{recipient}"),
    }
}

/// `redcloud replay` over `events` with `config`, with extra arguments.
fn replay(config: &str, events: &[String], args: &[&str]) -> Result<Vec<Value>> {
    let dir = std::env::temp_dir().join(format!("redcloud-crash-replay-{}", suffix()));
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
        .args(args)
        .output()?;
    let _ = std::fs::remove_dir_all(&dir);
    ensure!(
        out.status.success() && out.stderr.is_empty(),
        "replay failed or rejected lines: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)?
        .lines()
        .map(|l| Ok(serde_json::from_str(l)?))
        .collect()
}

// ------------------------------------------------------------------ provider

/// One delivery the push provider saw.
#[derive(Clone, Debug)]
struct Arrival {
    id: String,
    token: String,
    at: Instant,
    wall: SystemTime,
}

type Arrivals = Arc<Mutex<Vec<Arrival>>>;

/// A local push gateway answering 200 to everything; it outlives every daemon
/// of a test (same port across restarts).
struct Provider {
    arrivals: Arrivals,
    port: u16,
    _rt: tokio::runtime::Runtime,
}

async fn push(
    State(a): State<Arrivals>,
    h: HeaderMap,
    Json(body): Json<Value>,
) -> impl IntoResponse {
    let id = h
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    a.lock().unwrap().push(Arrival {
        id,
        token: body["token"].as_str().unwrap_or_default().to_string(),
        at: Instant::now(),
        wall: SystemTime::now(),
    });
    Json(json!({"ok": true}))
}

impl Provider {
    fn start() -> Result<Provider> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let arrivals: Arrivals = Arc::default();
        let app = Router::new()
            .route("/push", post(push))
            .with_state(arrivals.clone());
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let port = listener.local_addr()?.port();
        rt.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Provider {
            arrivals,
            port,
            _rt: rt,
        })
    }

    fn arrivals(&self) -> Vec<Arrival> {
        self.arrivals.lock().unwrap().clone()
    }
}

// ------------------------------------------------------------------ sources

#[derive(Clone)]
enum Src {
    Amqp {
        source: String,
        exchange: String,
        queue: String,
        dlx: String,
        dlq: String,
    },
    Redis {
        source: String,
        stream: String,
    },
}

impl Src {
    fn amqp() -> Src {
        let s = suffix();
        Src::Amqp {
            source: format!("amqp-crash-{s}"),
            exchange: format!("rc-crash-{s}"),
            queue: format!("rc-crash-{s}"),
            dlx: format!("rc-crash-{s}.dlx"),
            dlq: format!("rc-crash-{s}.dlq"),
        }
    }

    fn redis() -> Src {
        let s = suffix();
        Src::Redis {
            source: format!("redis-crash-{s}"),
            stream: format!("rc-crash-{s}"),
        }
    }

    fn toml(&self) -> String {
        match self {
            Src::Amqp {
                source,
                exchange,
                queue,
                dlx,
                dlq,
            } => format!(
                r#"[sources.amqp]
name = "{source}"
uri = "{AMQP_URI}"
exchange = "{exchange}"
queue = "{queue}"
dead_letter_exchange = "{dlx}"
dead_letter_queue = "{dlq}"
prefetch = 200
ack_batch = 50
ack_interval = "20ms"
reconnect_initial = "100ms"
reconnect_max = "1s"
drain_timeout = "5s"
lag_interval = "200ms"
"#
            ),
            Src::Redis { source, stream } => format!(
                r#"[sources.redis]
name = "{source}"
url = "{REDIS_URL}"
stream = "{stream}"
group = "{GROUP}"
consumer = "live"
block = "200ms"
claim_idle = "500ms"
claim_interval = "300ms"
ack_interval = "20ms"
reconnect_initial = "100ms"
reconnect_max = "1s"
drain_timeout = "5s"
lag_interval = "200ms"
"#
            ),
        }
    }

    /// Deletes the broker objects of the test.
    async fn cleanup(&self) {
        match self {
            Src::Amqp {
                exchange,
                queue,
                dlx,
                dlq,
                ..
            } => {
                let Ok(Ok(conn)) = tokio::time::timeout(
                    Duration::from_secs(5),
                    Connection::connect(AMQP_URI, ConnectionProperties::default()),
                )
                .await
                else {
                    return;
                };
                if let Ok(ch) = conn.create_channel().await {
                    for q in [queue, dlq] {
                        let _ = ch
                            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                            .await;
                    }
                    for x in [exchange, dlx] {
                        let _ = ch
                            .exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default())
                            .await;
                    }
                }
                let _ = conn.close(200, "done".into()).await;
            }
            Src::Redis { stream, .. } => {
                if let Ok(client) = redis::Client::open(REDIS_URL) {
                    if let Ok(Ok(mut c)) = tokio::time::timeout(
                        Duration::from_secs(5),
                        client.get_multiplexed_async_connection(),
                    )
                    .await
                    {
                        let _: Result<(), _> = redis::cmd("DEL")
                            .arg(stream)
                            .arg(format!("{stream}:rejected"))
                            .query_async(&mut c)
                            .await;
                    }
                }
            }
        }
    }
}

/// What the producer did.
#[derive(Debug, Default)]
struct Published {
    events: usize,
    /// Sends that failed (no confirm, broken connection) and were retried.
    retries: usize,
    /// Time spent waiting at the day barriers (includes the daemon's downtime).
    barrier_wait: Duration,
    /// When each event (in publishing order) started to be sent.
    sent_at: Vec<Instant>,
}

/// A producer that retries until the broker confirms.
struct Producer {
    src: Src,
    amqp: Option<(Connection, Channel)>,
    redis: Option<redis::aio::MultiplexedConnection>,
    last_id: String,
    deadline: Instant,
    done: Published,
}

impl Producer {
    async fn try_send(&mut self, body: &str) -> Result<()> {
        match &self.src {
            Src::Amqp { exchange, .. } => {
                if self.amqp.is_none() {
                    let conn =
                        Connection::connect(AMQP_URI, ConnectionProperties::default()).await?;
                    let ch = conn.create_channel().await?;
                    ch.confirm_select(ConfirmSelectOptions::default()).await?;
                    self.amqp = Some((conn, ch));
                }
                let (_, ch) = self.amqp.as_ref().context("channel")?;
                let confirm = ch
                    .basic_publish(
                        exchange.as_str().into(),
                        "events.crash".into(),
                        BasicPublishOptions::default(),
                        body.as_bytes(),
                        BasicProperties::default().with_delivery_mode(2),
                    )
                    .await?
                    .await?;
                ensure!(confirm.is_ack(), "not confirmed: {confirm:?}");
            }
            Src::Redis { stream, .. } => {
                if self.redis.is_none() {
                    let client = redis::Client::open(REDIS_URL)?;
                    self.redis = Some(client.get_multiplexed_async_connection().await?);
                }
                let c = self.redis.as_mut().context("connection")?;
                self.last_id = redis::cmd("XADD")
                    .arg(stream)
                    .arg("*")
                    .arg("event")
                    .arg(body)
                    .query_async(c)
                    .await?;
            }
        }
        Ok(())
    }

    /// Sends until confirmed (same event again after a failure: its id makes
    /// a second copy harmless).
    async fn send(&mut self, body: &str) -> Result<()> {
        loop {
            ensure!(Instant::now() < self.deadline, "producer: out of time");
            let r = tokio::time::timeout(Duration::from_secs(5), self.try_send(body)).await;
            match r {
                Ok(Ok(())) => {
                    self.done.events += 1;
                    return Ok(());
                }
                _ => {
                    self.amqp = None;
                    self.redis = None;
                    self.done.retries += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Whether everything sent so far was taken by a live daemon.
    async fn drained(&mut self) -> Result<bool> {
        match &self.src {
            Src::Amqp { queue, .. } => {
                let (_, ch) = self.amqp.as_ref().context("channel")?;
                let q = ch
                    .queue_declare(
                        queue.as_str().into(),
                        QueueDeclareOptions {
                            passive: true,
                            ..QueueDeclareOptions::default()
                        },
                        FieldTable::default(),
                    )
                    .await?;
                // Messages the daemon holds unacknowledged go back to their
                // place in the (classic) queue if it dies, before later ones.
                Ok(q.message_count() == 0 && q.consumer_count() >= 1)
            }
            Src::Redis { stream, .. } => {
                let c = self.redis.as_mut().context("connection")?;
                let info: redis::streams::StreamInfoGroupsReply = redis::cmd("XINFO")
                    .arg("GROUPS")
                    .arg(stream)
                    .query_async(c)
                    .await?;
                Ok(info.groups.iter().any(|g| {
                    g.name == GROUP && g.pending == 0 && g.last_delivered_id == self.last_id
                }))
            }
        }
    }

    /// Waits until the daemon has taken everything sent so far.
    async fn barrier(&mut self) -> Result<()> {
        let start = Instant::now();
        loop {
            ensure!(
                Instant::now() < self.deadline,
                "producer: barrier not reached"
            );
            let r = tokio::time::timeout(Duration::from_secs(5), self.drained()).await;
            match r {
                Ok(Ok(true)) => break,
                Ok(Ok(false)) => {}
                _ => {
                    self.amqp = None;
                    self.redis = None;
                    // Reconnect for the next probe.
                    let _ = tokio::time::timeout(Duration::from_secs(5), self.reconnect()).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.done.barrier_wait += start.elapsed();
        Ok(())
    }

    async fn reconnect(&mut self) -> Result<()> {
        match &self.src {
            Src::Amqp { .. } => {
                let conn = Connection::connect(AMQP_URI, ConnectionProperties::default()).await?;
                let ch = conn.create_channel().await?;
                ch.confirm_select(ConfirmSelectOptions::default()).await?;
                self.amqp = Some((conn, ch));
            }
            Src::Redis { .. } => {
                let client = redis::Client::open(REDIS_URL)?;
                self.redis = Some(client.get_multiplexed_async_connection().await?);
            }
        }
        Ok(())
    }
}

/// Publishes every phase, each after the previous one was taken.
fn produce(src: Src, phases: Vec<Vec<String>>, deadline: Instant) -> Result<Published> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut p = Producer {
            src,
            amqp: None,
            redis: None,
            last_id: String::new(),
            deadline,
            done: Published::default(),
        };
        for phase in &phases {
            for e in phase {
                p.done.sent_at.push(Instant::now());
                p.send(e).await?;
                tokio::time::sleep(PACE).await;
            }
            p.barrier().await?;
        }
        if let Some((conn, _)) = p.amqp.take() {
            let _ = conn.close(200, "done".into()).await;
        }
        Ok(p.done)
    })
}

// ------------------------------------------------------------------ daemon

/// Where the daemon keeps its state: `data_dir` on disk, or Redis under a
/// key prefix of the test's own (`durability = "redis"`).
fn start(data: &Path, extra: &str, state_prefix: Option<&str>) -> Result<Daemon> {
    let durability = match state_prefix {
        None => "durability = \"wal\"\n".to_string(),
        Some(p) => format!("durability = \"redis\"\nstate_prefix = \"{p}\"\n"),
    };
    let d = Daemon::start(Opts {
        extra,
        daemon: &format!(
            "data_dir = \"{}\"\n{durability}snapshot_interval = \"1s\"\n",
            data.display()
        ),
        env: vec![("REDCLOUD_FAKE_NOW", NOW.to_string())],
        ..Opts::default()
    })?;
    d.wait_ready(Duration::from_secs(20))?;
    Ok(d)
}

/// Each shard's newest snapshot file time, the oldest and the newest of
/// them: everything a shard decided after its newest snapshot is in the log
/// tail a restart replays.
fn newest_snapshots(data: &Path) -> (Option<SystemTime>, Option<SystemTime>) {
    let mut newest = Vec::new();
    for n in 0..2 {
        let t = std::fs::read_dir(data.join(format!("shard-{n}")))
            .ok()
            .and_then(|r| {
                r.flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".bin"))
                    .filter_map(|e| e.metadata().ok()?.modified().ok())
                    .max()
            });
        match t {
            Some(t) => newest.push(t),
            None => return (None, None),
        }
    }
    (newest.iter().min().copied(), newest.iter().max().copied())
}

/// One `kill -9`.
struct Kill {
    at: Instant,
    /// When the killed process had been reaped: a request it sent before
    /// dying may reach the provider until then.
    dead_at: Instant,
    wall: SystemTime,
    /// The newest snapshot every shard had on disk just before (the oldest
    /// of the shards' newest).
    snapshot: Option<SystemTime>,
    /// The newest of the shards' newest snapshots.
    snapshot_max: Option<SystemTime>,
    /// Deliveries seen by then.
    delivered_before: usize,
    /// `redcloud_dispatch_pending` just before.
    pending: f64,
    /// When the daemon that was killed had become ready.
    ready: Instant,
    /// Notification ids the killed daemon had dead-lettered, with reasons.
    dead: Vec<(String, String)>,
}

/// The notification ids in `/v1/dead-letters`, with their reasons.
fn dead_letters(d: &Daemon) -> Vec<(String, String)> {
    let Ok(v) = d.get_json("/v1/dead-letters") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in v["items"].as_array().into_iter().flatten() {
        for id in item["notification_ids"].as_array().into_iter().flatten() {
            out.push((
                id.as_str().unwrap_or_default().to_string(),
                format!(
                    "{} {} {}",
                    item["at_unix_ms"], item["recipient"], item["reason"]
                ),
            ));
        }
    }
    out
}

fn state_cmd(cmd: &str, dir: &Path) -> Result<(bool, String)> {
    let out = Command::new(env!("CARGO_BIN_EXE_redcloud"))
        .args(["state", cmd])
        .arg(dir)
        .output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
    ))
}

/// `redcloud state CMD --redis … --prefix PREFIX`.
fn state_cmd_redis(cmd: &str, prefix: &str) -> Result<(bool, String)> {
    let out = Command::new(env!("CARGO_BIN_EXE_redcloud"))
        .args([
            "state",
            cmd,
            "--redis",
            "redis://127.0.0.1:6379/",
            "--prefix",
            prefix,
        ])
        .output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
    ))
}

fn recovery_lines(logs: &str) -> Vec<String> {
    logs.lines()
        .filter_map(|l| {
            let i = l
                .find("log records replayed")
                .and_then(|_| l.find("snapshot seq"))
                .or_else(|| l.find("torn write-ahead"))
                .or_else(|| l.find("snapshot skipped"))?;
            Some(l[i..].to_string())
        })
        .collect()
}

// ------------------------------------------------------------------ checks

/// Compares the state the admin API shows with what the events say.
fn check_state(
    d: &Daemon,
    sc: &Scenario,
    want_stats: &[Value],
    failures: &mut Vec<String>,
) -> Result<()> {
    let key = |v: &Value| format!("{}|{}", v["org"], v["month"]);
    let got: Value = d.get_json("/v1/stats")?;
    let mut got: Vec<Value> = got.as_array().context("stats array")?.clone();
    got.sort_by_key(key);
    let mut want = want_stats.to_vec();
    want.sort_by_key(key);
    if got != want {
        failures.push(format!(
            "/v1/stats differs from replay --stats:\n got {}\nwant {}",
            Value::Array(got),
            Value::Array(want)
        ));
    }
    let mut bad_members = Vec::new();
    for (m, missed) in &sc.members {
        let v = d.get_json(&format!("/v1/members/{m}"))?;
        let ok = v["state"] == "active"
            && v["enrolled"] == true
            && v["policies"][0]["policy"] == "quiz"
            && v["policies"][0]["missed"] == *missed;
        if !ok {
            bad_members.push(format!("{m}: want missed {missed}, got {v}"));
        }
    }
    if !bad_members.is_empty() {
        failures.push(format!(
            "{} members differ: {:?}",
            bad_members.len(),
            &bad_members[..bad_members.len().min(5)]
        ));
    }
    let mut bad_tickets = Vec::new();
    for (t, want) in &sc.tickets {
        let v = d.get_json(&format!("/v1/tickets/{t}"))?;
        let got = TicketWant {
            state: match v["state"].as_str() {
                Some("open") => "open",
                Some("accepted") => "accepted",
                Some("replied") => "replied",
                Some("resolved") => "resolved",
                Some("cancelled") => "cancelled",
                _ => "?",
            },
            assignee: v["assignee"].as_str().unwrap_or_default().to_string(),
            rated: v["rated"] == true,
            satisfied: v["satisfied"].as_bool(),
        };
        if &got != want {
            bad_tickets.push(format!("{t}: want {want:?}, got {v}"));
        }
    }
    if !bad_tickets.is_empty() {
        failures.push(format!(
            "{} tickets differ: {:?}",
            bad_tickets.len(),
            &bad_tickets[..bad_tickets.len().min(5)]
        ));
    }
    Ok(())
}

/// Compares the deliveries with what replay decided; returns a summary.
fn check_deliveries(
    expected: &BTreeMap<String, Value>,
    arrivals: &[Arrival],
    kills: &[Kill],
    failures: &mut Vec<String>,
) -> String {
    let mut by_id: BTreeMap<&str, Vec<&Arrival>> = BTreeMap::new();
    for a in arrivals {
        by_id.entry(a.id.as_str()).or_default().push(a);
    }
    let missing: Vec<&String> = expected
        .keys()
        .filter(|id| !by_id.contains_key(id.as_str()))
        .collect();
    let unexpected: Vec<&str> = by_id
        .keys()
        .copied()
        .filter(|id| !expected.contains_key(*id))
        .collect();
    let wrong_address: Vec<&Arrival> = arrivals
        .iter()
        .filter(|a| {
            expected
                .get(&a.id)
                .is_some_and(|n| token_of(n["recipient"].as_str().unwrap_or_default()) != a.token)
        })
        .collect();
    // Duplicates: every later delivery of an id must follow a kill that came
    // after the previous delivery, and that previous delivery must be after
    // the newest snapshot on disk at that kill (its decision was in the log
    // tail the restart replayed); within 50 ms of the kill counts as "in
    // flight".
    let (mut dup_ids, mut in_flight, mut from_tail) = (0, 0, 0);
    let mut unexplained = Vec::new();
    for (id, v) in &by_id {
        if v.len() < 2 {
            continue;
        }
        dup_ids += 1;
        for w in v.windows(2) {
            let (a, b) = (w[0], w[1]);
            let kill = kills.iter().find(|k| a.at <= k.dead_at && k.at <= b.at);
            match kill {
                Some(k) if a.at + Duration::from_millis(50) >= k.at => in_flight += 1,
                Some(k) if k.snapshot.is_none_or(|s| a.wall + Duration::from_millis(20) >= s) => {
                    from_tail += 1
                }
                Some(k) => unexplained.push(format!(
                    "{id}: delivered {:?} before a kill, {:?} after the newest snapshot",
                    k.at.saturating_duration_since(a.at),
                    k.snapshot
                        .and_then(|s| s.duration_since(a.wall).ok())
                        .map(|x| format!("-{x:?}"))
                        .unwrap_or_default()
                )),
                None => unexplained.push(format!(
                    "{id}: delivered twice {:?} apart with no kill in between (first {:?} after the \
                     previous kill was reaped)",
                    b.at.duration_since(a.at),
                    kills
                        .iter()
                        .rev()
                        .find(|k| k.dead_at <= a.at)
                        .map(|k| a.at.duration_since(k.dead_at))
                )),
            }
        }
    }
    let delivered_expected = expected.len() - missing.len();
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    for id in &missing {
        let n = &expected[*id];
        *by_kind
            .entry(format!(
                "{}/{}",
                n["policy"].as_str().unwrap_or("?"),
                n["kind"].as_str().unwrap_or("?")
            ))
            .or_default() += 1;
    }
    let summary = format!(
        "notifications: replay decides {}, delivered {} of them ({} deliveries in all), \
         missing {} {by_kind:?}, unexpected {}, wrong address {}, ids delivered more than once {} \
         (repeat deliveries: {} in flight at a kill, {} re-decided from the log tail, {} unexplained)",
        expected.len(),
        delivered_expected,
        arrivals.len(),
        missing.len(),
        unexpected.len(),
        wrong_address.len(),
        dup_ids,
        in_flight,
        from_tail,
        unexplained.len()
    );
    if !missing.is_empty() {
        failures.push(format!(
            "{} due notifications never delivered (at least once violated), e.g. {:?}",
            missing.len(),
            missing
                .iter()
                .take(5)
                .map(|id| expected[*id].to_string())
                .collect::<Vec<_>>()
        ));
    }
    if !unexpected.is_empty() {
        failures.push(format!(
            "{} delivered ids replay does not decide, e.g. {:?}",
            unexpected.len(),
            &unexpected[..unexpected.len().min(5)]
        ));
    }
    if !wrong_address.is_empty() {
        failures.push(format!(
            "{} deliveries to the wrong address, e.g. {:?}",
            wrong_address.len(),
            &wrong_address[..wrong_address.len().min(3)]
        ));
    }
    if !unexplained.is_empty() {
        failures.push(format!(
            "{} repeat deliveries not explained by a kill, e.g. {:?}",
            unexplained.len(),
            &unexplained[..unexplained.len().min(5)]
        ));
    }
    summary
}

/// Why each never-delivered notification was lost, as far as the test can
/// tell. It was dead-lettered (seen in `/v1/dead-letters` before a kill or at
/// the end), or: its decision came no earlier than the start of sending the
/// first event at or after its instant (and no earlier than the start of the
/// daemon that took that event). If the next kill's shards all had their
/// newest snapshot before that, the deciding record was only in memory and the
/// log: a restart decides it again (at once, during recovery), so the walk
/// goes on from the next start; if they all had one after it, it was held only
/// in the dispatcher's memory (the documented limit). Notifications decided
/// in the last run (first or again) and never delivered are unexplained.
fn attribute_missing(
    expected: &BTreeMap<String, Value>,
    arrivals: &[Arrival],
    kills: &[Kill],
    final_dead: &[(String, String)],
    events: &[String],
    sent_at: &[Instant],
) -> String {
    let delivered: BTreeSet<&str> = arrivals.iter().map(|a| a.id.as_str()).collect();
    // Dead letters: reason, and when after the start of their daemon (its
    // clock starts at REDCLOUD_FAKE_NOW, and dead letters carry its time).
    let fake_now_ms = chrono::DateTime::parse_from_rfc3339(NOW).map_or(0, |t| t.timestamp_millis());
    let dead: BTreeMap<&str, (&str, i64)> = kills
        .iter()
        .flat_map(|k| k.dead.iter())
        .chain(final_dead)
        .map(|(id, why)| {
            let (at, why) = why.split_once(' ').unwrap_or(("0", why));
            let after = at.parse::<i64>().unwrap_or(0) - fake_now_ms;
            (id.as_str(), (why, after))
        })
        .collect();
    let shard = |key: &str| xxhash_rust::xxh3::xxh3_64(key.as_bytes()) % 2;
    let ats: Vec<String> = events
        .iter()
        .map(|e| {
            serde_json::from_str::<Value>(e).map_or(String::new(), |v| {
                v["at"].as_str().unwrap_or_default().to_string()
            })
        })
        .collect();
    let mut verdicts: BTreeMap<String, usize> = BTreeMap::new();
    let mut unexplained = Vec::new();
    let mut dead_after_ready = Vec::new();
    for (id, n) in expected {
        if delivered.contains(id.as_str()) {
            continue;
        }
        if let Some((why, after)) = dead.get(id.as_str()) {
            let (recipient, reason) = why.split_once(' ').unwrap_or(("", why));
            let key = |v: &str| {
                v.trim_matches('"')
                    .split_once(':')
                    .map_or(String::new(), |(_, k)| k.to_string())
            };
            let subject = key(n["subject"].as_str().unwrap_or_default());
            let other = shard(&subject) != shard(&key(recipient));
            *verdicts
                .entry(format!(
                    "dead-lettered {reason} (recipient owned by {} shard than the subject)",
                    if other { "another" } else { "the same" }
                ))
                .or_default() += 1;
            dead_after_ready.push(*after);
            continue;
        }
        let at = n["at"].as_str().unwrap_or_default();
        let Some(&sent) = ats
            .iter()
            .position(|a| a.as_str() >= at)
            .and_then(|i| sent_at.get(i))
        else {
            unexplained.push(format!("{id}: no event reaches its instant"));
            continue;
        };
        // The daemon alive when it was sent, or the next one.
        let mut decided = kills
            .iter()
            .find(|k| k.at >= sent)
            .map_or(sent, |k| sent.max(k.ready));
        let mut redecided = 0;
        let verdict = loop {
            let Some(i) = kills.iter().position(|k| k.at >= decided) else {
                break None;
            };
            let k = &kills[i];
            let decided_wall = k.wall - k.at.duration_since(decided);
            match (k.snapshot, k.snapshot_max) {
                (Some(lo), _) if decided_wall < lo => {
                    break Some(format!(
                        "held by the dispatcher at a kill, decided before the snapshots ({redecided} times decided again)"
                    ))
                }
                (_, Some(hi)) if decided_wall < hi => {
                    break Some(format!(
                        "held by the dispatcher at a kill, decided between the two shards' snapshots ({redecided} times decided again)"
                    ))
                }
                _ => {
                    // In the log tail: decided again when the next daemon recovers.
                    redecided += 1;
                    decided = kills.get(i + 1).map_or(k.at, |n| n.ready);
                    if i + 1 == kills.len() {
                        break None;
                    }
                }
            }
        };
        match verdict {
            Some(v) => *verdicts.entry(v).or_default() += 1,
            None => unexplained.push(format!(
                "{id}: decided (again: {redecided} times) by the last daemon and never delivered"
            )),
        }
    }
    format!(
        "missing notifications by cause: {verdicts:?} (dead letters made at ms after their \
         daemon started: {dead_after_ready:?}); unexplained {}: {:?}",
        unexplained.len(),
        &unexplained[..unexplained.len().min(5)]
    )
}

// ------------------------------------------------------------------ the test

#[allow(clippy::print_stderr)] // the run's figures (kills, deliveries, causes) on stderr, pass or fail
fn crash_test(src: Src, tag: &str, state_prefix: Option<&str>) -> Result<()> {
    let began = Instant::now();
    let sc = scenario();
    let provider = Provider::start()?;
    let policies = scenario_toml(provider.port);
    let replay_config = format!("{DEFAULT_TOML}\n{policies}");
    let all = sc.all();
    let expected: BTreeMap<String, Value> = replay(&replay_config, &all, &[])?
        .into_iter()
        .map(|n| (n["id"].as_str().unwrap_or_default().to_string(), n))
        .collect();
    let want_stats = replay(&replay_config, &all, &["--stats"])?;
    ensure!(!want_stats.is_empty(), "replay --stats printed nothing");
    ensure!(
        expected.len() >= 300,
        "the scenario makes only {} notifications due",
        expected.len()
    );

    let data = std::env::temp_dir().join(format!("redcloud-crash-{tag}-{}", suffix()));
    std::fs::create_dir_all(&data)?;
    let extra = format!("{}\n{policies}", src.toml());

    let mut seed =
        u64::from(std::process::id()) ^ 0x9E37_79B9_7F4A_7C15 ^ began.elapsed().as_nanos() as u64;
    let seed0 = seed;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };

    // The first start declares the exchange and queue (or the group).
    let mut d = start(&data, &extra, state_prefix)?;
    let mut ready = Instant::now();
    let finished = Arc::new(AtomicBool::new(false));
    let producer = {
        let (src, phases, finished) = (src.clone(), sc.phases.clone(), finished.clone());
        let deadline = Instant::now() + Duration::from_secs(50);
        std::thread::spawn(move || {
            let r = produce(src, phases, deadline);
            finished.store(true, Ordering::SeqCst);
            r
        })
    };

    let mut kills: Vec<Kill> = Vec::new();
    let mut recoveries = Vec::new();
    loop {
        let pause = Duration::from_millis(800 + rand(2200));
        let until = Instant::now() + pause;
        while Instant::now() < until
            && !(finished.load(Ordering::SeqCst) && kills.len() >= MIN_KILLS)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let done = finished.load(Ordering::SeqCst);
        if (done && kills.len() >= MIN_KILLS)
            || kills.len() >= MAX_KILLS
            || began.elapsed() > Duration::from_secs(45)
        {
            break;
        }
        let pending = d.metric("redcloud_dispatch_pending")?.unwrap_or(-1.0);
        let dead = dead_letters(&d);
        // (Snapshot times are known for files only; with the state in
        // Redis every repeat across a kill is accepted as in flight.)
        let (snapshot, snapshot_max) = if state_prefix.is_none() {
            newest_snapshots(&data)
        } else {
            (None, None)
        };
        let delivered_before = provider.arrivals().len();
        let mut k = Kill {
            at: Instant::now(),
            dead_at: Instant::now(),
            wall: SystemTime::now(),
            snapshot,
            snapshot_max,
            delivered_before,
            pending,
            ready,
            dead,
        };
        recoveries.push(recovery_lines(&d.logs()));
        drop(d); // SIGKILL, and wait for the exit
        k.dead_at = Instant::now();
        kills.push(k);
        d = start(&data, &extra, state_prefix)?;
        ready = Instant::now();
    }
    let published = match producer.join() {
        Ok(r) => r?,
        Err(_) => bail!("producer panicked"),
    };

    // Settle: every expected id delivered, or nothing new for 3 s with
    // nothing pending in the dispatcher (bounded).
    let settle_start = Instant::now();
    let mut last_count = 0;
    let mut last_change = Instant::now();
    loop {
        let arrivals = provider.arrivals();
        let ids: BTreeSet<&str> = arrivals.iter().map(|a| a.id.as_str()).collect();
        if expected.keys().all(|id| ids.contains(id.as_str())) {
            break;
        }
        if arrivals.len() != last_count {
            last_count = arrivals.len();
            last_change = Instant::now();
        }
        let pending = d.metric("redcloud_dispatch_pending")?.unwrap_or(0.0);
        if (last_change.elapsed() > Duration::from_secs(3) && pending == 0.0)
            || settle_start.elapsed() > Duration::from_secs(25)
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Late repeats, if any, show up now.
    std::thread::sleep(Duration::from_millis(500));

    let mut failures = Vec::new();
    if kills.len() < MIN_KILLS {
        failures.push(format!("only {} kills", kills.len()));
    }
    check_state(&d, &sc, &want_stats, &mut failures)?;
    let final_dead = dead_letters(&d);
    if !final_dead.is_empty() {
        failures.push(format!(
            "{} notifications dead-lettered in the last run, e.g. {:?}",
            final_dead.len(),
            &final_dead[..final_dead.len().min(5)]
        ));
    }
    let arrivals = provider.arrivals();
    let deliveries = check_deliveries(&expected, &arrivals, &kills, &mut failures);
    let attribution = attribute_missing(
        &expected,
        &arrivals,
        &kills,
        &final_dead,
        &all,
        &published.sent_at,
    );
    recoveries.push(recovery_lines(&d.logs()));
    let late = d
        .metric(&format!(
            "redcloud_events_late_total{{source=\"{}\"}}",
            match &src {
                Src::Amqp { source, .. } | Src::Redis { source, .. } => source,
            }
        ))?
        .unwrap_or(0.0);
    let status = d.terminate(Duration::from_secs(20))?;
    if !status.success() {
        failures.push(format!("graceful stop: {status:?}"));
    }
    if let Some(prefix) = state_prefix {
        let (ok, out) = state_cmd_redis("verify", prefix)?;
        if !ok {
            failures.push(format!("state verify --redis: {out}"));
        }
        drop_redis_state(prefix)?;
    } else {
        let (ok, out) = state_cmd("verify", &data)?;
        if !ok {
            failures.push(format!("state verify: {out}"));
        }
    }
    let undelivered: Vec<PathBuf> = std::fs::read_dir(&data)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains("undelivered-"))
        .collect();

    let kill_report: Vec<String> = kills
        .iter()
        .map(|k| {
            format!(
                "{:.1}s (up {:.1}s, deliveries so far {}, dispatcher pending {}, dead letters {:?}, newest snapshot {} ms before)",
                k.at.duration_since(began).as_secs_f64(),
                k.at.duration_since(k.ready).as_secs_f64(),
                k.delivered_before,
                k.pending,
                k.dead,
                k.snapshot
                    .and_then(|s| k.wall.duration_since(s).ok())
                    .map_or("-".to_string(), |x| x.as_millis().to_string())
            )
        })
        .collect();
    eprintln!(
        "[{tag}] seed {seed0:#x}; {} events in {} phases, published {} sends ({} retries, {:?} at barriers); \
         {} kills at {kill_report:?}; late events in the last run {late}; undelivered files {}; \
         recoveries {recoveries:?}\n[{tag}] {deliveries}\n[{tag}] {attribution}\n[{tag}] took {:.1}s",
        all.len(),
        sc.phases.len(),
        published.events,
        published.retries,
        published.barrier_wait,
        kills.len(),
        undelivered.len(),
        began.elapsed().as_secs_f64()
    );
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(src.cleanup());
    }
    if failures.is_empty() {
        let _ = std::fs::remove_dir_all(&data);
        return Ok(());
    }
    bail!(
        "[{tag}] {} failed checks (data dir kept: {}):\n- {}",
        failures.len(),
        data.display(),
        failures.join("\n- ")
    )
}

/// Test A: the AMQP source, a lapin producer with publisher confirms.
#[test]
fn amqp_kill_9_loses_and_doubles_nothing_and_every_due_notification_arrives() -> Result<()> {
    crash_test(Src::amqp(), "amqp", None)
}

/// Test B: the Redis Streams source, `XADD` into a stream of its own.
#[test]
fn redis_kill_9_loses_and_doubles_nothing_and_every_due_notification_arrives() -> Result<()> {
    crash_test(Src::redis(), "redis", None)
}

/// Test C: the state itself in Redis (`durability = "redis"`: the shards'
/// logs, snapshots and the outbox under a prefix of this test's own), events
/// over AMQP.
#[test]
fn state_in_redis_survives_kill_9_like_state_on_disk() -> Result<()> {
    let prefix = format!("redcloud-crash-state-{}", suffix());
    crash_test(Src::amqp(), "state-in-redis", Some(&prefix))
}

/// Deletes every key of a test's state in Redis (after checking it is there).
fn drop_redis_state(prefix: &str) -> Result<()> {
    let client = redis::Client::open("redis://127.0.0.1:6379")?;
    let mut c = client.get_connection()?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query(&mut c)?;
    ensure!(
        keys.iter().any(|k| k.ends_with(":shard-0:log"))
            && keys.iter().any(|k| k.ends_with(":outbox:log"))
            && keys.iter().any(|k| k.ends_with(":shard-1:snaps")),
        "the state is not in Redis: {keys:?}"
    );
    for k in keys {
        let _: i64 = redis::cmd("DEL").arg(k).query(&mut c)?;
    }
    Ok(())
}
