//! `redcloud run`: the long-running daemon.
//!
//! The wiring, from left to right:
//!
//! ```text
//! sources (amqp, redis, file tasks; http ingest on the listener)
//!   -> one bounded mpsc of Delivery
//!   -> router task: decode (reject -> Acker::reject), route by key
//!   -> one bounded inbox per shard (a thread owning one Engine)
//!   -> one bounded mpsc of Envelope
//!   -> feeder: fill leader addresses from the shared contact directory
//!   -> one bounded mpsc of Envelope
//!   -> dispatcher (routes, limits, quiet hours, digests, retries; console
//!      only without a `[dispatch]` table)
//! ```
//!
//! Every channel is bounded, so a slow stage slows the ones before it, down to
//! the sources (AMQP stops reading within its prefetch, Redis stops reading,
//! HTTP answers 429). Shards advance their engines with the wall clock every
//! `[daemon] tick`. The admin API and `/metrics` share the listener with the
//! ingest.
//!
//! Shutdown (SIGTERM / SIGINT): cancel the sources (they stop taking events,
//! wait for the acks of events in flight and flush them), stop the listener,
//! let the router and the shards finish what they hold (all within
//! `[daemon] shutdown_timeout`, else exit 1), then stop the dispatcher (it
//! waits up to `[dispatch] drain_timeout` for sends in flight) and write what
//! it did not deliver to `[daemon] data_dir/undelivered-<unix>.ndjson`.
//!
//! What must not live here: rules (the engine), protocol code (the
//! connectors), config parsing (the config crate).

pub mod admin;
pub mod clock;
mod committer;
pub mod contacts;
pub mod forksnap;
pub mod logging;
pub mod metrics;
pub mod outbox;
pub mod redis_store;
pub mod router;
pub mod shard;
pub mod sink;
pub mod sources;
pub mod wal;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use redcloud_config::{Config, Secret};
use redcloud_engine::policy::EngineConfig;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use self::clock::Clock;
use self::contacts::ContactDirectory;
use self::metrics::{Registry, ShardMetrics, SourceEntry};
use self::sink::DispatchSink;

/// Arguments of `redcloud run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Config file; default: the embedded default (HTTP ingest on
    /// 127.0.0.1:8686, no RabbitMQ or Redis).
    #[arg(long)]
    config: Option<PathBuf>,
}

/// `redcloud run`.
pub fn run(args: RunArgs) -> Result<ExitCode> {
    let config = crate::cli::load_config(args.config.as_deref())?;
    logging::init(config.daemon.log_format, &config.daemon.log_level)
        .map_err(anyhow::Error::msg)?;
    let (clock, fake) = clock::from_env()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("redcloud-io")
        .build()
        .context("cannot start the async runtime")?;
    let result = rt.block_on(daemon(config, clock, fake));
    rt.shutdown_timeout(Duration::from_secs(1));
    result
}

async fn daemon(config: Config, clock: Arc<dyn Clock>, fake_clock: bool) -> Result<ExitCode> {
    let dc = config.daemon.clone();
    let engine_cfg = Arc::new(config.engine.clone());
    // A durable data directory is locked for this process and fixes the
    // shard count it was written with.
    // State in Redis is claimed the same way (an owner key).
    let mut _data_lock = None;
    let mut _redis_claim = None;
    let (shards_n, stores): (usize, Option<Stores>) = match dc.durability {
        redcloud_config::Durability::Wal => {
            let (n, lock) = open_data_dir(&dc.data_dir, dc.shards)?;
            _data_lock = Some(lock);
            let d = dc.data_dir.clone();
            (n, Some(Stores::Dir(d)))
        }
        redcloud_config::Durability::Redis => {
            let url = dc.state_url.expose().to_string();
            let prefix = dc.state_prefix.clone();
            let shards = dc.shards;
            let claim =
                tokio::task::spawn_blocking(move || redis_store::claim(&url, &prefix, shards))
                    .await
                    .context("claiming the state in Redis")??;
            let n = claim.shards;
            let client = claim.client.clone();
            _redis_claim = Some(claim);
            (n, Some(Stores::Redis(client, dc.state_prefix.clone())))
        }
        redcloud_config::Durability::None => (
            dc.shards.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
            }),
            None,
        ),
    };
    if fake_clock {
        warn!(
            env = clock::FAKE_NOW_ENV,
            "test clock in use: wall time is shifted; never set this in production"
        );
    }

    // Sources.
    let built = sources::build(&config.sources, &engine_cfg.levels)?;
    let mut entries: Vec<Arc<SourceEntry>> = built
        .tasks
        .iter()
        .map(|s| Arc::new(SourceEntry::new(s.name(), s.stats())))
        .collect();
    if let Some((h, _)) = &built.http {
        entries.push(Arc::new(SourceEntry::new(h.name(), h.stats())));
    }
    let policies: Vec<String> = engine_cfg
        .streaks
        .iter()
        .map(|p| p.name.clone())
        .chain(engine_cfg.slas.iter().map(|p| p.name.clone()))
        .collect();
    let shard_metrics: Vec<Arc<ShardMetrics>> = (0..shards_n)
        .map(|_| Arc::new(ShardMetrics::new(entries.len(), policies.len())))
        .collect();
    let registry = Arc::new(Registry {
        sources: entries.clone(),
        shards: shard_metrics.clone(),
        policies,
        calendar_fallback: AtomicU64::new(0),
        calendar_days_left: AtomicI64::new(-1),
        outbox: Default::default(),
    });

    // The dispatcher: its wall clock is the daemon's (so the test clock
    // moves quiet hours too).
    let shown = config.source.as_ref().map_or_else(
        || "embedded default".to_string(),
        |p| p.display().to_string(),
    );
    let dispatcher = sink::build_dispatcher(&config)
        .map_err(|e| anyhow::anyhow!("{shown}: {e:#}"))?
        .with_clock(redcloud_connectors::dispatch::Clock::starting_at(
            clock.now().0.div_euclid(1000),
        ));
    let sink_name = if config.dispatch.is_empty() {
        "console"
    } else {
        "dispatcher"
    };
    let contacts = ContactDirectory::new();
    let mut sink = DispatchSink::new(dispatcher, contacts.clone(), dc.sink_capacity);
    let dispatch_stats = sink.stats();
    let dead_letters = sink.dead_letters();
    let dispatch_stop = CancellationToken::new();

    // The outbox: what was not delivered before the stop goes out again.
    let outbox_shared = match &stores {
        Some(st) => {
            let shared = outbox::OutboxShared::new(shards_n);
            let dcfg = sink::dispatch_config(&config)?;
            let (ob, thread, rec) = {
                let (st, shared) = (st.clone(), shared.clone());
                let now_ms = clock.now().0.div_euclid(1000);
                let commit_gap = dc.commit_gap;
                tokio::task::spawn_blocking(move || {
                    for i in 0..shards_n {
                        shared.set_horizon(i, st.part(&format!("shard-{i}")).recovery_horizon());
                    }
                    outbox::Outbox::open(
                        st.part("outbox"),
                        shared,
                        dcfg.history_horizon(),
                        dcfg.dead_letters_kept,
                        now_ms,
                        commit_gap,
                    )
                })
                .await
                .context("recovering the outbox")?
            }
            .map_err(|e| anyhow::anyhow!("cannot recover the outbox: {e}"))?;
            info!("{}", rec.summary);
            sink = sink.with_outbox(ob, thread, rec);
            let _ = registry.outbox.set(shared.clone());
            Some(shared)
        }
        None => None,
    };
    let durable_sink = sink.is_durable();

    // Sink, shards, router.
    let (sink_tx, sink_rx) = mpsc::channel(dc.sink_capacity);
    let sink_task = tokio::spawn(sink.run(sink_rx, dispatch_stop.clone()));
    let mut shard_txs = Vec::with_capacity(shards_n);
    let mut shard_joins = Vec::with_capacity(shards_n);
    let mut shard_ready = Vec::with_capacity(shards_n);
    // The event time routed so far, shared by the router and the shards.
    let event_time = Arc::new(router::EventTime::new());
    let (go_tx, go_rx) = tokio::sync::watch::channel(false);
    for (index, m) in shard_metrics.iter().enumerate() {
        let h = shard::spawn(shard::ShardSetup {
            index,
            config: engine_cfg.clone(),
            clock: clock.clone(),
            tick: dc.tick,
            metrics: m.clone(),
            sink: sink_tx.clone(),
            capacity: dc.shard_capacity,
            contacts: contacts.clone(),
            event_time: event_time.clone(),
            outbox: outbox_shared.clone(),
            go: go_rx.clone(),
            durable: stores.as_ref().map(|st| shard::Durable {
                store: st.part(&format!("shard-{index}")),
                fork: dc.snapshot_fork,
                snapshot_interval: dc.snapshot_interval,
                snapshot_log_records: dc.snapshot_log_records,
                commit_gap: dc.commit_gap,
                segment_bytes: shard::SEGMENT_BYTES,
            }),
        })
        .with_context(|| format!("cannot start shard {index}"))?;
        shard_txs.push(h.tx);
        shard_joins.push(h.join);
        shard_ready.push(h.ready);
    }
    // Recovery runs on the shard threads, in parallel; nothing is served
    // before every shard has its state back.
    let recovered = tokio::task::spawn_blocking(move || {
        shard_ready
            .into_iter()
            .map(|r| {
                r.recv()
                    .unwrap_or_else(|_| Err("the shard thread ended".into()))
            })
            .collect::<Vec<_>>()
    })
    .await
    .context("shard recovery")?;
    for (index, r) in recovered.into_iter().enumerate() {
        match r {
            Ok(summary) => info!(shard = index, "state: {summary}"),
            Err(e) => anyhow::bail!("shard {index} cannot recover its state: {e}"),
        }
    }
    if dc.snapshot_fork && dc.fork_realtime {
        if let Err(why) = forksnap::allow_realtime() {
            info!("snapshot forks run at normal priority: {why}");
        }
    }
    if dc.huge_pages {
        if let Err(why) = forksnap::keep_huge_pages() {
            info!("huge pages: not used: {why}");
        }
    }
    // Every shard has published its members' contacts: go.
    let _ = go_tx.send(true);
    let sink_weak = sink_tx.downgrade();
    drop(sink_tx);
    let (tx, rx) = mpsc::channel(dc.pipeline_capacity);
    let levels: Arc<[String]> = engine_cfg.levels.clone().into();
    let router_task = tokio::spawn(router::run(
        rx,
        shard_txs.clone(),
        levels,
        entries.clone(),
        event_time,
        dc.route_gap,
    ));

    // The listener: admin API, health, metrics, ingest.
    let shutdown = CancellationToken::new();
    let admin_token = config.admin.token.clone().or_else(|| {
        std::env::var(admin::TOKEN_ENV)
            .ok()
            .filter(|t| !t.trim().is_empty())
            .map(Secret::new)
    });
    if admin_token.is_none() {
        warn!(
            env = admin::TOKEN_ENV,
            "no admin token configured: /metrics and /v1/* answer 401 until `[admin] token` or the environment variable is set"
        );
    }
    let state = Arc::new(admin::AdminState {
        shards: shard_txs,
        pipeline: tx.downgrade(),
        sink: sink_weak,
        registry: registry.clone(),
        token: admin_token,
        dispatch: dispatch_stats,
        dead_letters,
        contacts,
    });
    let mut app = admin::router(state);
    let mut ingest_token = false;
    if let Some((h, token)) = built.http {
        ingest_token = token.is_some();
        app = app.merge(admin::guard(h.router(tx.clone()), token));
    }
    let listener = tokio::net::TcpListener::bind(config.admin.listen)
        .await
        .with_context(|| format!("cannot listen on admin.listen {}", config.admin.listen))?;
    let local = listener.local_addr()?;
    let server = {
        let stop = shutdown.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
        })
    };

    // Sources that run on their own.
    let mut source_tasks = Vec::new();
    for (src, entry) in built.tasks.into_iter().zip(entries.iter().cloned()) {
        let fut = src.run(tx.clone(), shutdown.clone());
        source_tasks.push(tokio::spawn(async move {
            match fut.await {
                Ok(()) => entry.finished.store(true, Ordering::Relaxed),
                Err(e) => error!(source = %entry.name, error = %e, "source stopped"),
            }
        }));
    }
    drop(tx);

    let calendar = tokio::spawn(watch_calendar(
        engine_cfg.clone(),
        clock.clone(),
        registry.clone(),
        shutdown.clone(),
    ));

    info!(
        listen = %local,
        shards = shards_n,
        sources = %entries.iter().map(|e| &*e.name).collect::<Vec<_>>().join(","),
        ingest_token,
        sink = sink_name,
        config = %shown,
        timezone = engine_cfg.zone.name(),
        "redcloud running"
    );

    let signal = wait_for_signal().await;
    info!(
        signal,
        timeout_s = dc.shutdown_timeout.as_secs_f64(),
        "draining: intake stopped, finishing events in flight"
    );
    shutdown.cancel();
    let pipeline = async {
        for t in source_tasks {
            let _ = t.await;
        }
        match server.await {
            Ok(Err(e)) => error!(error = %e, "http listener failed"),
            Err(e) => error!(error = %e, "http listener task failed"),
            Ok(Ok(())) => {}
        }
        let _ = router_task.await;
        let joins = tokio::task::spawn_blocking(move || {
            for j in shard_joins {
                let _ = j.join();
            }
        });
        let _ = joins.await;
        let _ = calendar.await;
    };
    let drained = tokio::time::timeout(dc.shutdown_timeout, pipeline)
        .await
        .is_ok();
    // The shards are done (or out of time): stop the dispatcher. It waits up
    // to `[dispatch] drain_timeout` for sends in flight and returns the rest.
    dispatch_stop.cancel();
    let left = sink_task.await.unwrap_or_else(|e| {
        error!(error = %e, "the notification sink failed");
        Vec::new()
    });
    if durable_sink {
        if left.is_empty() {
            info!("every notification taken in was delivered or dead-lettered");
        } else {
            info!(
                undelivered = left.len(),
                "notifications not delivered yet stay in the outbox; they are sent after the restart"
            );
        }
    } else {
        keep_undelivered(&dc.data_dir, clock.as_ref(), &left);
    }
    if drained {
        info!("drained; bye");
        Ok(ExitCode::SUCCESS)
    } else {
        error!(
            timeout_s = dc.shutdown_timeout.as_secs_f64(),
            "shutdown timed out; events not acknowledged yet will be redelivered by their sources"
        );
        Ok(ExitCode::from(1))
    }
}

/// Where the durable state lives: one [`wal::Store`] per partition.
#[derive(Clone, Debug)]
enum Stores {
    /// `data_dir/<part>/`.
    Dir(PathBuf),
    /// Keys `<prefix>:<part>:*`.
    Redis(redis::Client, String),
}

impl Stores {
    fn part(&self, part: &str) -> wal::Store {
        match self {
            Stores::Dir(d) => wal::Store::Dir(d.join(part)),
            Stores::Redis(c, prefix) => {
                wal::Store::Redis(redis_store::RedisPart::new(c.clone(), prefix, part))
            }
        }
    }
}

/// Opens a durable data directory: creates it, takes its lock (one daemon
/// per directory) and returns the shard count it was written with (events
/// are routed by `hash % shards`, so a directory is only valid for that
/// count); on first use records `configured` (or one per core).
fn open_data_dir(
    dir: &std::path::Path,
    configured: Option<usize>,
) -> Result<(usize, std::fs::File)> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create daemon.data_dir {}", dir.display()))?;
    let lock_path = dir.join("LOCK");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    match lock.try_lock() {
        Ok(()) => {
            #[cfg(unix)]
            forksnap::set_lock_fd(std::os::fd::AsRawFd::as_raw_fd(&lock));
        }
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "daemon.data_dir {}: another redcloud process is using it (it holds {}); stop it or give this one its own data_dir",
            dir.display(),
            lock_path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("cannot lock {}", lock_path.display()))
        }
    }
    let meta = dir.join("state.toml");
    match std::fs::read_to_string(&meta) {
        Ok(text) => {
            let recorded = text
                .lines()
                .filter_map(|l| l.trim().strip_prefix("shards = "))
                .find_map(|v| v.trim().parse::<usize>().ok())
                .filter(|n| *n >= 1)
                .with_context(|| format!("{}: no valid `shards = N` line", meta.display()))?;
            match configured {
                Some(n) if n != recorded => anyhow::bail!(
                    "daemon.shards: {n}, but the state in {} was written with {recorded} shards (recorded in {}); set shards = {recorded} or leave it out (re-sharding a data directory is not supported yet)",
                    dir.display(),
                    meta.display()
                ),
                _ => Ok((recorded, lock)),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let n = configured.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
            });
            let tmp = dir.join("state.toml.tmp");
            std::fs::write(&tmp, format!("format = 1\nshards = {n}\n"))
                .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
                .and_then(|()| std::fs::rename(&tmp, &meta))
                .and_then(|()| wal::sync_dir(dir))
                .with_context(|| format!("cannot write {}", meta.display()))?;
            Ok((n, lock))
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", meta.display())),
    }
}

/// Logs and writes the notifications the dispatcher did not deliver, so that
/// none is dropped silently. Re-sending them after a restart is the
/// durability work's job (docs/operations.md); their ids make it idempotent.
fn keep_undelivered(
    dir: &std::path::Path,
    clock: &dyn Clock,
    left: &[redcloud_engine::notify::Envelope],
) {
    if left.is_empty() {
        info!(
            undelivered = 0,
            "every notification taken in was delivered or dead-lettered"
        );
        return;
    }
    let unix = clock.now().0.div_euclid(1_000_000);
    match sink::write_undelivered(dir, unix, left) {
        Ok(path) => warn!(
            undelivered = left.len(),
            file = %path.display(),
            "notifications not delivered at shutdown were written to the data directory; they are not re-sent automatically yet"
        ),
        Err(e) => error!(
            undelivered = left.len(),
            dir = %dir.display(),
            error = %e,
            "NOTIFICATIONS LOST: cannot write the undelivered notifications to the data directory"
        ),
    }
}

/// Waits for SIGTERM or SIGINT; returns its name.
async fn wait_for_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = tokio::signal::ctrl_c() => "SIGINT",
            },
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the daemon");
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}

/// Announces the calendar fallback: at start-up and once a day, a warning while
/// today is outside the loaded data (and the gauge `redcloud_calendar_fallback`),
/// and a notice from 30 days before the data runs out.
async fn watch_calendar(
    cfg: Arc<EngineConfig>,
    clock: Arc<dyn Clock>,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
) {
    let mut last = None;
    loop {
        let today = cfg.zone.local_day(clock.now());
        if last != Some(today) {
            last = Some(today);
            let covered = cfg.calendar.is_covered(today);
            registry
                .calendar_fallback
                .store(u64::from(!covered), Ordering::Relaxed);
            let soon = cfg.calendar.first_uncovered_day_within(today, 30);
            registry.calendar_days_left.store(
                soon.map_or(-1, |d| i64::from(d.0 - today.0)),
                Ordering::Relaxed,
            );
            if !covered {
                warn!(
                    calendar = cfg.calendar.name(),
                    today = %today,
                    covered_years = ?cfg.calendar.covered_years(),
                    "CALENDAR FALLBACK IN USE: today is outside the loaded calendar data, so working days are taken as monday to friday (holidays and make-up days are ignored); add the year's calendar file to [calendar] files"
                );
            } else if let Some(d) = soon {
                warn!(
                    calendar = cfg.calendar.name(),
                    runs_out_on = %d,
                    days_left = d.0 - today.0,
                    "calendar data runs out soon: from that day working days fall back to monday to friday; add the next year's calendar file to [calendar] files"
                );
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::open_data_dir;

    fn tmp(name: &str) -> std::path::PathBuf {
        let d =
            std::env::temp_dir().join(format!("redcloud-datadir-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn a_data_dir_serves_one_daemon_at_a_time() {
        let d = tmp("lock");
        let (n, lock) = open_data_dir(&d, Some(3)).unwrap();
        assert_eq!(n, 3);
        let e = open_data_dir(&d, Some(3)).unwrap_err().to_string();
        assert!(e.contains("another redcloud process is using it"), "{e}");
        drop(lock);
        open_data_dir(&d, Some(3)).unwrap();
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn the_recorded_shard_count_wins_and_a_different_one_is_named() {
        let d = tmp("shards");
        drop(open_data_dir(&d, Some(2)).unwrap());
        // Left out: the recorded count, whatever the cores.
        assert_eq!(open_data_dir(&d, None).unwrap().0, 2);
        let e = open_data_dir(&d, Some(4)).unwrap_err().to_string();
        assert!(
            e.starts_with("daemon.shards: 4, but the state in") && e.contains("set shards = 2"),
            "{e}"
        );
        std::fs::write(d.join("state.toml"), "format = 1\n").unwrap();
        let e = format!("{:#}", open_data_dir(&d, None).unwrap_err());
        assert!(e.contains("no valid `shards = N` line"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
