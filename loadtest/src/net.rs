//! The daemon targets: `http` (NDJSON batches to `POST /v1/events`), `amqp`
//! (publish with confirms to the daemon's exchange) and `redis` (`XADD` to
//! the daemon's stream, field `event`), plus reading the daemon's `/metrics`.
//!
//! Shape of a daemon run: a pacing thread cuts the generated events into work
//! items and hands each over when its last event is due (`start + i / rate`);
//! `--connections` workers send them; each completion (HTTP answer, publisher
//! confirms, `XADD` replies) records every event's latency from its intended
//! send time. Then the harness waits for the daemon to drain (its `/metrics`
//! applied counter, or the notifications) and checks correctness: arrivals at
//! the provider server ([`crate::provider`]) when the dispatcher is pointed at
//! it, else the daemon's notification counter.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use lapin::options::ConfirmSelectOptions;
use lapin::{Connection, ConnectionProperties};
use tokio::sync::mpsc;

use crate::apply::LogMode;
use crate::measure::{histogram, spectrum, Percentiles, Recorder, Schedule};
use crate::provider::Provider;
use crate::publish::{self, Item};
use crate::report::{Correctness, Memory, Report};
use crate::run::{correctness_ids, expected_pass, Feed, Options};

/// How events reach the daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// `POST /v1/events`.
    Http,
    /// AMQP exchange.
    Amqp,
    /// Redis stream.
    Redis,
}

impl Via {
    fn name(self) -> &'static str {
        match self {
            Via::Http => "http",
            Via::Amqp => "amqp",
            Via::Redis => "redis",
        }
    }
}

/// Flags of the daemon targets.
#[derive(clap::Args, Debug, Clone)]
pub struct DaemonArgs {
    /// http: the ingest endpoint.
    #[arg(long, default_value = "http://127.0.0.1:8686/v1/events")]
    pub http_url: String,
    /// http: bearer token, if the daemon requires one.
    #[arg(long)]
    pub token: Option<String>,
    /// amqp: broker URI.
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    pub amqp_uri: String,
    /// amqp: the daemon's exchange (routing key: the event's type).
    #[arg(long, default_value = "redcloud.events")]
    pub exchange: String,
    /// redis: server URL.
    #[arg(long, default_value = "redis://127.0.0.1:6379/")]
    pub redis_url: String,
    /// redis: the daemon's stream.
    #[arg(long, default_value = "redcloud:events")]
    pub stream: String,
    /// The daemon's admin API (for /metrics).
    #[arg(long, default_value = "http://127.0.0.1:8686")]
    pub admin_url: String,
    /// The daemon's pid, to sample its memory from /proc/<pid>/statm.
    #[arg(long)]
    pub daemon_pid: Option<u32>,
    /// Run the provider server on this address and count the notifications
    /// that arrive there (point the daemon's channels at it).
    #[arg(long)]
    pub provider_listen: Option<String>,
    /// Counter of notifications in the daemon's /metrics (summed over labels).
    #[arg(long, default_value = "redcloud_notifications_total")]
    pub notifications_metric: String,
    /// Counter of applied events in the daemon's /metrics (summed over labels).
    #[arg(long, default_value = "redcloud_events_applied_total")]
    pub applied_metric: String,
    /// Concurrent connections (http) or channels (amqp, redis).
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Events per work item: one HTTP body, one burst of publishes, one pipeline.
    #[arg(long, default_value_t = 200)]
    pub batch: usize,
    /// amqp: messages whose publisher confirms may be outstanding (one
    /// channel; the baseline uses the same publisher and window).
    #[arg(long, default_value_t = publish::DEFAULT_WINDOW)]
    pub confirm_window: usize,
    /// Seconds to wait for the daemon to drain without progress.
    #[arg(long, default_value_t = 30)]
    pub drain_timeout: u64,
    /// Messages in the bare-broker baseline (amqp, redis); 0 to skip.
    #[arg(long, default_value_t = 100_000)]
    pub baseline_messages: u64,
}

/// A plain HTTP/1.1 client connection.
struct Http {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    authority: String,
}

fn split_url(url: &str) -> Result<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("only http:// URLs are supported, got {url}"))?;
    let (auth, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    Ok((auth.to_string(), path.to_string()))
}

impl Http {
    async fn connect(authority: &str) -> Result<Http> {
        let stream = tokio::net::TcpStream::connect(authority)
            .await
            .with_context(|| format!("cannot connect to {authority}"))?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Http {
            sender,
            authority: authority.to_string(),
        })
    }

    async fn send(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Bytes,
    ) -> Result<(u16, Bytes)> {
        if self.sender.ready().await.is_err() {
            *self = Http::connect(&self.authority.clone()).await?;
        }
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.authority)
            .header("content-type", "application/x-ndjson");
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let resp = self.sender.send_request(req.body(Full::new(body))?).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

/// Sums the values of `name` (all label sets) in a Prometheus text page.
pub fn metric_sum(page: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in page.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        let value = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
        if let Some(v) = value {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// Reads the daemon's `/metrics`.
pub async fn metrics(admin_url: &str, token: Option<&str>) -> Result<String> {
    let (auth, base) = split_url(admin_url)?;
    let mut c = Http::connect(&auth).await?;
    let path = format!("{}/metrics", base.trim_end_matches('/'));
    let (status, body) = c.send("GET", &path, token, Bytes::new()).await?;
    if status != 200 {
        bail!("GET {admin_url}/metrics answered {status}");
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

enum Sender {
    Http(Http, String, Option<String>),
    Redis(redis::aio::MultiplexedConnection, String),
}

impl Sender {
    async fn connect(via: Via, a: &DaemonArgs) -> Result<Sender> {
        Ok(match via {
            Via::Http => {
                let (auth, path) = split_url(&a.http_url)?;
                Sender::Http(Http::connect(&auth).await?, path, a.token.clone())
            }
            Via::Amqp => bail!("amqp is sent by the pipelined publisher"),
            Via::Redis => {
                let client = redis::Client::open(a.redis_url.as_str())?;
                Sender::Redis(
                    client.get_multiplexed_async_connection().await?,
                    a.stream.clone(),
                )
            }
        })
    }

    /// Sends one item; returns when the target has acknowledged all of it.
    async fn send(&mut self, item: &Item) -> Result<u64> {
        match self {
            Sender::Http(c, path, token) => {
                let mut retries = 0;
                loop {
                    let (status, body) = c
                        .send("POST", path, token.as_deref(), item.body.clone())
                        .await?;
                    match status {
                        200 => return Ok(retries),
                        429 | 503 => {
                            retries += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        _ => bail!(
                            "POST answered {status}: {}",
                            String::from_utf8_lossy(&body)
                                .chars()
                                .take(300)
                                .collect::<String>()
                        ),
                    }
                }
            }
            Sender::Redis(c, stream) => {
                let mut pipe = redis::pipe();
                for i in 0..item.ends.len() {
                    pipe.cmd("XADD")
                        .arg(stream.as_str())
                        .arg("*")
                        .arg("event")
                        .arg(&item.line(i)[..]);
                }
                let _: Vec<String> = pipe.query_async(c).await?;
                Ok(0)
            }
        }
    }
}

/// The first `n` events of the run, as messages (for the baselines).
pub fn first_messages(opts: &Options, n: u64) -> Vec<Vec<u8>> {
    let feed = Feed::start(opts, Some(n));
    let mut out = Vec::with_capacity(n as usize);
    for b in feed.rx.iter() {
        out.extend(b.lines().map(<[u8]>::to_vec));
    }
    feed.finish();
    out
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// `redcloud-loadtest baseline`: the bare broker alone.
pub fn run_baseline(
    opts: &Options,
    via: Via,
    n: u64,
    amqp_uri: &str,
    redis_url: &str,
    batch: usize,
    window: usize,
) -> Result<Report> {
    let msgs = first_messages(opts, n);
    let rt = runtime()?;
    let b = rt.block_on(async {
        match via {
            Via::Amqp => crate::baseline::amqp(amqp_uri, &msgs, batch, window).await,
            _ => crate::baseline::redis(redis_url, &msgs, batch).await,
        }
    })?;
    let mut r = opts.report("baseline");
    r.events = b.messages;
    r.bytes = msgs.iter().map(|m| m.len() as u64 + 1).sum();
    r.achieved_rate = b.rate;
    r.duration_s = b.messages as f64 / b.rate.max(1e-9);
    r.latency = b.latency.clone().unwrap_or_default();
    r.latency_meaning = format!("{} send to receive, closed model", b.kind);
    r.correctness = Correctness {
        method: "none".into(),
        ok: true,
        ..Correctness::default()
    };
    r.memory.peak_rss = crate::measure::rss_bytes(None).unwrap_or(0);
    r.baseline = Some(b);
    r.notes
        .push("bare broker only: no daemon, no notifications to check".into());
    Ok(r)
}

/// Runs a case against a running daemon.
pub fn run_daemon(opts: &Options, via: Via, a: &DaemonArgs) -> Result<Report> {
    let exp = expected_pass(opts, LogMode::Ids);
    let mut report = opts.report(via.name());
    report.counts = exp.counts;
    report.events = exp.events;
    report.bytes = exp.bytes;
    report.engine = exp.engine.clone();
    let rt = runtime()?;
    let base = if a.baseline_messages > 0 && via != Via::Http {
        let msgs = first_messages(opts, a.baseline_messages.min(exp.events));
        Some(rt.block_on(async {
            match via {
                Via::Amqp => {
                    crate::baseline::amqp(&a.amqp_uri, &msgs, a.batch, a.confirm_window).await
                }
                _ => crate::baseline::redis(&a.redis_url, &msgs, a.batch).await,
            }
        })?)
    } else {
        if via == Via::Http {
            report.notes.push(
                "http has no broker: no bare baseline (compare with the inprocess target)".into(),
            );
        }
        None
    };
    rt.block_on(drive(opts, via, a, &exp, &mut report))?;
    if let Some(b) = base {
        report.ratio = Some(report.achieved_rate / b.rate.max(1e-9));
        report.baseline = Some(b);
    }
    Ok(report)
}

/// Tells the operator where the provider server listens: with `:0` they need
/// the port to point the daemon's channels at it.
#[allow(clippy::print_stderr)]
fn announce(msg: &str, addr: std::net::SocketAddr) {
    eprintln!("{}", msg.replace("{}", &addr.to_string()));
}

async fn drive(
    opts: &Options,
    via: Via,
    a: &DaemonArgs,
    exp: &crate::run::Expectation,
    report: &mut Report,
) -> Result<()> {
    let token = a.token.as_deref();
    let provider = match &a.provider_listen {
        Some(l) => Some(Provider::start(l).await?),
        None => None,
    };
    if let Some(p) = &provider {
        announce(
            "provider server listening on http://{}/ (point the daemon's channels here)",
            p.addr,
        );
    }
    let before = metrics(&a.admin_url, token).await.ok();
    let n_before = before
        .as_deref()
        .and_then(|m| metric_sum(m, &a.notifications_metric));
    let applied_before = before
        .as_deref()
        .and_then(|m| metric_sum(m, &a.applied_metric));
    if before.is_none() {
        report.notes.push(format!(
            "could not read {}/metrics: no drain wait or counter check",
            a.admin_url
        ));
    }
    let amqp_conn = if via == Via::Amqp {
        Some(
            Connection::connect(
                &a.amqp_uri,
                ConnectionProperties::default().with_connection_name("redcloud-loadtest".into()),
            )
            .await
            .context("cannot connect to the amqp broker")?,
        )
    } else {
        None
    };

    let (work_tx, work_rx) = mpsc::channel::<Item>(1024);
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<publish::Done>();
    let mut workers = Vec::new();
    if let Some(conn) = &amqp_conn {
        // One channel, confirms pipelined: the daemon gets the events in the
        // generated order (the expected pass's order).
        let ch = conn.create_channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        let (ex, window, tx) = (a.exchange.clone(), a.confirm_window, done_tx.clone());
        workers.push(tokio::spawn(async move {
            if let Err(e) = publish::amqp(ch, ex, None, window, work_rx, tx.clone()).await {
                let _ = tx.send((0, 0, Instant::now(), Err(e)));
            }
        }));
    } else {
        let work_rx = Arc::new(tokio::sync::Mutex::new(work_rx));
        for _ in 0..a.connections.max(1) {
            let mut s = Sender::connect(via, a).await?;
            let rx = work_rx.clone();
            let tx = done_tx.clone();
            workers.push(tokio::spawn(async move {
                loop {
                    let item = { rx.lock().await.recv().await };
                    let Some(item) = item else { break };
                    let r = s.send(&item).await;
                    let _ = tx.send((item.first, item.ends.len() as u64, Instant::now(), r));
                }
            }));
        }
    }
    drop(done_tx);

    let mut rec = Recorder::new(opts.sample, opts.daemon_pid);
    let sched = Schedule {
        start: Instant::now() + Duration::from_millis(50),
        rate: opts.rate,
    };
    rec.restart();
    let batch = a.batch.max(1);
    let feed_opts = opts.clone();
    // The pacing thread: exact sleeps outside the runtime.
    let pacer = std::thread::spawn(move || {
        let feed = Feed::start(&feed_opts, None);
        let mut i = 0u64;
        for b in feed.rx.iter() {
            let mut k = 0;
            while k < b.len() {
                let end = (k + batch).min(b.len());
                let from = if k == 0 { 0 } else { b.ends[k - 1] };
                let ends: Vec<usize> = b.ends[k..end].iter().map(|e| e - from).collect();
                let body = Bytes::copy_from_slice(&b.buf[from..b.ends[end - 1]]);
                let last = i + (end - k) as u64 - 1;
                if feed_opts.rate.is_some() {
                    Schedule::wait_until(sched.due(last));
                }
                if work_tx
                    .blocking_send(Item {
                        first: i,
                        body,
                        ends,
                    })
                    .is_err()
                {
                    return;
                }
                i = last + 1;
                k = end;
            }
        }
        feed.finish();
    });

    let pb = opts.bar(Some(exp.events), via.name());
    let mut sent = 0u64;
    let mut retries = 0u64;
    let mut first_error = None;
    while let Some((first, n, done, r)) = done_rx.recv().await {
        match r {
            Ok(rt) => retries += rt,
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
        for j in 0..n {
            let due = if opts.rate.is_some() {
                sched.due(first + j)
            } else {
                sched.start
            };
            rec.record(done.saturating_duration_since(due).as_nanos() as u64);
        }
        rec.completed(n);
        sent += n;
        pb.inc(n);
        rec.tick(done);
        if first_error.is_some() {
            break;
        }
    }
    drop(done_rx);
    let _ = tokio::task::spawn_blocking(move || pacer.join()).await;
    for w in workers {
        w.abort();
    }
    if let Some(e) = first_error {
        return Err(e.context(format!("{} target failed after {sent} events", via.name())));
    }
    let acked = rec.elapsed();
    pb.finish_and_clear();

    // Drain: wait until the daemon has applied every event (or sent every
    // notification), with no progress for `drain_timeout` ending the wait.
    let mut drained_at = acked;
    let mut n_after = None;
    if before.is_some() {
        let mut last_progress = Instant::now();
        let mut last_seen = (None, None);
        loop {
            let page = metrics(&a.admin_url, token).await.ok();
            let applied = page
                .as_deref()
                .and_then(|m| metric_sum(m, &a.applied_metric));
            let notes = page
                .as_deref()
                .and_then(|m| metric_sum(m, &a.notifications_metric));
            let applied_d = applied.map(|v| v - applied_before.unwrap_or(0.0));
            let notes_d = notes.map(|v| v - n_before.unwrap_or(0.0));
            let arrived = provider.as_ref().map_or(0, Provider::count) as u64;
            n_after = notes_d;
            let all_applied = applied_d.is_some_and(|v| v >= exp.events as f64);
            // With a provider server, "done" is every notification arrived
            // there: the daemon's counter only says they were decided, and the
            // dispatcher may still be sending.
            let all_notes = if provider.is_some() {
                arrived >= exp.notifications
            } else {
                notes_d.is_some_and(|v| v >= exp.notifications as f64)
            };
            if all_applied && (all_notes || exp.notifications == 0) {
                drained_at = rec.elapsed();
                break;
            }
            let seen = (
                applied_d.map(|v| v as u64),
                Some(arrived + notes_d.unwrap_or(0.0) as u64),
            );
            if seen != last_seen {
                last_seen = seen;
                last_progress = Instant::now();
                drained_at = rec.elapsed();
            } else if last_progress.elapsed() > Duration::from_secs(a.drain_timeout) {
                report.notes.push(format!(
                    "the daemon made no progress for {} s: applied {:?} of {} events",
                    a.drain_timeout, applied_d, exp.events
                ));
                break;
            }
            rec.sample(Instant::now());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    rec.sample(Instant::now());

    report.duration_s = drained_at;
    report.achieved_rate = sent as f64 / drained_at.max(1e-9);
    report.busy_rate = None;
    report.latency = Percentiles::of(&rec.total);
    report.latency_meaning = match via {
        Via::Http => "intended send time to the HTTP answer (events applied), CO-corrected",
        Via::Amqp => "intended send time to the publisher confirm, CO-corrected",
        Via::Redis => "intended send time to the XADD reply, CO-corrected",
    }
    .into();
    report.distribution = spectrum(&rec.total);
    if retries > 0 {
        report
            .notes
            .push(format!("{retries} bodies resent after 429/503"));
    }
    report.correctness = match provider {
        Some(p) => {
            let arrivals = p.stop();
            // End-to-end latency: arrival minus the intended send time of the
            // event that caused the notification.
            let mut e2e = histogram();
            let mut e2e_now = histogram();
            let mut e2e_close = histogram();
            if opts.rate.is_some() {
                for (id, at) in &arrivals.got {
                    if let Ok(k) = exp.ids.binary_search_by(|e| e.id.cmp(id)) {
                        let due = sched.due(exp.ids[k].event);
                        let v = at.saturating_duration_since(due).as_nanos().max(1) as u64;
                        e2e.saturating_record(v);
                        if exp.ids[k].alone {
                            e2e_now.saturating_record(v);
                        } else {
                            e2e_close.saturating_record(v);
                        }
                    }
                }
                report.e2e_latency = Some(Percentiles::of(&e2e));
                report.e2e_alone = Some(Percentiles::of(&e2e_now));
                report.e2e_burst = Some(Percentiles::of(&e2e_close));
                report.e2e_distribution = spectrum(&e2e);
            } else {
                report
                    .notes
                    .push("end-to-end latency needs --rate (the intended send times)".into());
            }
            if arrivals.unreadable > 0 {
                report.notes.push(format!(
                    "{} provider requests named no notification id",
                    arrivals.unreadable
                ));
            }
            let mut got: Vec<u128> = arrivals.got.iter().map(|g| g.0).collect();
            let c = correctness_ids("provider", exp, &mut got);
            for e in crate::run::lost_examples(exp, &got, 5) {
                report.notes.push(format!(
                    "lost {:032x}, caused by event #{} ({})",
                    e.id,
                    e.event,
                    if e.alone { "alone" } else { "one of a burst" }
                ));
            }
            c
        }
        None => match n_after {
            Some(d) => {
                let d = d.max(0.0) as u64;
                let lost = exp.notifications.saturating_sub(d);
                let duplicated = d.saturating_sub(exp.notifications);
                Correctness {
                    method: "metrics".into(),
                    expected: exp.notifications,
                    received: d,
                    lost,
                    duplicated,
                    expected_by_kind: exp.by_kind,
                    ok: lost == 0 && duplicated == 0,
                }
            }
            None => {
                report.notes.push(format!(
                    "no provider server and no `{}` in /metrics: notifications not checked",
                    a.notifications_metric
                ));
                Correctness {
                    method: "none".into(),
                    expected: exp.notifications,
                    expected_by_kind: exp.by_kind,
                    ..Correctness::default()
                }
            }
        },
    };
    report.memory = Memory {
        peak_rss: rec.peak_rss,
        daemon_peak_rss: opts.daemon_pid.map(|_| rec.daemon_peak_rss),
        engine_member_heap: None,
    };
    report.timeline = rec.timeline;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sums_over_labels() {
        let page = "# HELP x\nredcloud_notifications_total{kind=\"reminder\"} 3\nredcloud_notifications_total{kind=\"warning\"} 2\nredcloud_notifications_total_other 9\n";
        assert_eq!(metric_sum(page, "redcloud_notifications_total"), Some(5.0));
        assert_eq!(metric_sum(page, "nope"), None);
    }

    #[test]
    fn urls_split() {
        assert_eq!(
            split_url("http://127.0.0.1:8686/v1/events").unwrap(),
            ("127.0.0.1:8686".to_string(), "/v1/events".to_string())
        );
        assert!(split_url("https://x").is_err());
    }
}
