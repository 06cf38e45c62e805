//! Where notifications go after the engine decided them: the dispatcher.
//!
//! The shards send [`Envelope`]s on one bounded channel; [`DispatchSink::run`]
//! reads it (the *feeder*), fills the recipient addresses a shard could not
//! know from the shared [`ContactDirectory`] (a leader owned by another
//! shard), and hands them on a second bounded channel to the
//! [`Dispatcher`] of `redcloud-connectors`: routes, limits, quiet hours,
//! digests, retries, dead letters (docs/dispatch.md).
//!
//! The dispatcher is built from the config's `[dispatch]` table and the
//! offices' contacts. Without a `[dispatch]` table (the embedded default),
//! every notification goes to the console as soon as it is decided: one JSON
//! line per notification on stdout, the object `redcloud replay` prints (the
//! daemon's own console channel, [`ConsoleLines`]; no address, name or text).
//!
//! With `[daemon] durability = "wal"` the feeder writes every notification to
//! the [`Outbox`] (synced) before the dispatcher sees it, hands the
//! dispatcher only those it has not seen (a shard replaying its log decides
//! some again), starts by sending again what the outbox held undelivered,
//! and gives the outbox the dispatcher's journal (delivered marks, sends,
//! dead letters).
//!
//! Stopping: the feeder runs until every shard has dropped its sender, and the
//! dispatcher until `stop` is cancelled (the daemon does that once the shards
//! are done, or when the drain runs out of time). `run` then returns every
//! notification not delivered: in the dispatcher, in its input, or still in
//! the shards' channel. Without an outbox the daemon writes them to
//! `[daemon] data_dir`; with one they are in it and are sent after a restart.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use redcloud_config::Config;
use redcloud_connectors::channel::{
    BoxFuture, BuildError, Channel, ChannelKind, Delivered, Outgoing, SendError,
};
use redcloud_connectors::dispatch::{
    self, DeadLetters, DispatchConfig, DispatchStats, Dispatcher, OfficeAddresses,
};
use redcloud_engine::notify::Envelope;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error};

use super::contacts::ContactDirectory;
use super::outbox::{self, Decided, Outbox, OutboxThread};

/// The `[dispatch]` table used when the config has none (or an empty one):
/// every notification to the console at once (routes default to the console;
/// no digest).
const CONSOLE_ONLY: &str = "[digest]\nwindow = \"0\"\n";

/// Validates the config's `[dispatch]` table; errors name the key path
/// (`dispatch.channels.sms.per_recipient[1].limit: must be at least 1`).
pub fn dispatch_config(config: &Config) -> Result<DispatchConfig, dispatch::ConfigError> {
    if config.dispatch.is_empty() {
        let table: toml::Table = CONSOLE_ONLY.parse().expect("a valid table");
        DispatchConfig::from_toml(&table)
    } else {
        DispatchConfig::from_toml(&config.dispatch)
    }
}

/// The offices' addresses, as the dispatcher takes them.
pub fn office_addresses(config: &Config) -> HashMap<String, OfficeAddresses> {
    let s = |v: &Option<redcloud_config::Secret>| v.as_ref().map(|s| s.expose().to_string());
    config
        .offices
        .iter()
        .map(|o| {
            (
                o.id.clone(),
                OfficeAddresses {
                    sms: s(&o.contacts.sms),
                    push: s(&o.contacts.push),
                    group: s(&o.contacts.group),
                },
            )
        })
        .collect()
}

/// Builds the dispatcher of `config` (HTTP clients; no connection is made),
/// with the daemon's console channel. `check-config` calls this too.
pub fn build_dispatcher(config: &Config) -> anyhow::Result<Dispatcher> {
    let cfg = dispatch_config(config)?;
    let d = Dispatcher::new(cfg, office_addresses(config)).map_err(|e: BuildError| {
        anyhow::anyhow!("dispatch.channels.{}: {}", e.channel, e.reason)
    })?;
    Ok(d.with_channel(Arc::new(ConsoleLines))?)
}

/// The dispatcher behind the shards' channel.
pub struct DispatchSink {
    dispatcher: Dispatcher,
    contacts: ContactDirectory,
    capacity: usize,
    outbox: Option<(Outbox, OutboxThread, Vec<Envelope>)>,
}

impl DispatchSink {
    /// A sink over `dispatcher`, filling addresses from `contacts`; the
    /// dispatcher's input holds at most `capacity` envelopes.
    pub fn new(dispatcher: Dispatcher, contacts: ContactDirectory, capacity: usize) -> Self {
        DispatchSink {
            dispatcher,
            contacts,
            capacity,
            outbox: None,
        }
    }

    /// Makes the sink durable: notifications go through `outbox` (opened,
    /// recovered) first; what it recovered is sent again, counted in the
    /// windows and put back among the dead letters.
    pub fn with_outbox(self, ob: Outbox, thread: OutboxThread, rec: outbox::Recovered) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let dead = self.dispatcher.dead_letters();
        for (view, envs) in rec.dead {
            dead.push(view, envs);
        }
        tokio::spawn(ob.clone().journal(rx));
        DispatchSink {
            dispatcher: self.dispatcher.with_journal(tx).with_history(rec.history),
            contacts: self.contacts,
            capacity: self.capacity,
            outbox: Some((ob, thread, rec.pending)),
        }
    }

    /// Whether notifications go through a durable outbox.
    pub fn is_durable(&self) -> bool {
        self.outbox.is_some()
    }

    /// The dispatcher's counters, for `/metrics`.
    pub fn stats(&self) -> Arc<DispatchStats> {
        self.dispatcher.stats()
    }

    /// The dead letters, for `GET /v1/dead-letters`.
    pub fn dead_letters(&self) -> DeadLetters {
        self.dispatcher.dead_letters()
    }

    /// Feeds the dispatcher from `rx` until every shard is gone, and runs it
    /// until `stop`; returns what was not delivered.
    pub async fn run(
        self,
        mut rx: mpsc::Receiver<Decided>,
        stop: CancellationToken,
    ) -> Vec<Envelope> {
        let (dtx, drx) = mpsc::channel(self.capacity);
        let dispatcher = tokio::spawn(self.dispatcher.run(drx, stop.clone()));
        let (outbox, outbox_thread) = match self.outbox {
            Some((ob, th, again)) => {
                // What the outbox held undelivered goes first.
                for env in again {
                    if dtx.send(env).await.is_err() {
                        break;
                    }
                }
                (Some(ob), Some(th))
            }
            None => (None, None),
        };
        let mut unsent: Vec<Envelope> = Vec::new();
        let mut batch = Vec::with_capacity(256);
        let mut filled = 0u64;
        'feed: loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                n = rx.recv_many(&mut batch, 256) => {
                    if n == 0 {
                        break;
                    }
                    for d in batch.iter_mut() {
                        filled += u64::from(self.contacts.fill(&mut d.env));
                    }
                    let envs = match &outbox {
                        Some(ob) => match ob.persist(std::mem::take(&mut batch)).await {
                            Some(fresh) => fresh,
                            None => {
                                error!("the outbox has stopped; notifications are decided again from the shards' logs after a restart");
                                break 'feed;
                            }
                        },
                        None => batch.drain(..).map(|d| d.env).collect(),
                    };
                    let mut it = envs.into_iter();
                    while let Some(env) = it.next() {
                        // Wait for room in the dispatcher's input, but not past a stop.
                        let permit = tokio::select! {
                            biased;
                            p = dtx.reserve() => p.ok(),
                            _ = stop.cancelled() => None,
                        };
                        match permit {
                            Some(p) => p.send(env),
                            None => {
                                unsent.push(env);
                                unsent.extend(it);
                                break 'feed;
                            }
                        }
                    }
                }
            }
        }
        // Whatever the shards still queued was never handed over: into the
        // outbox with it, if there is one.
        rx.close();
        let mut rest = Vec::new();
        while let Ok(d) = rx.try_recv() {
            rest.push(d);
        }
        match &outbox {
            Some(ob) if !rest.is_empty() => {
                let _ = ob.persist(rest).await;
            }
            _ => unsent.extend(rest.into_iter().map(|d| d.env)),
        }
        drop(dtx);
        debug!(filled_from_directory = filled, "dispatcher feeder finished");
        let mut left = match dispatcher.await {
            Ok(left) => left,
            Err(e) => {
                error!(error = %e, "the dispatcher task failed; what it held is lost");
                Vec::new()
            }
        };
        left.extend(unsent);
        // The journal ends with the dispatcher; the outbox then writes its
        // last records and a checkpoint.
        drop(outbox);
        if let Some(th) = outbox_thread {
            let _ = tokio::task::spawn_blocking(move || th.join()).await;
        }
        left
    }
}

/// The daemon's console channel: one JSON line per notification on stdout,
/// the object `redcloud replay` prints (a digest prints one line per
/// notification it carries). Never an address, a name or a text.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConsoleLines;

impl Channel for ConsoleLines {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Console
    }

    fn send(&self, msg: Arc<Outgoing>) -> BoxFuture<Result<Delivered, SendError>> {
        Box::pin(async move {
            let mut buf = Vec::with_capacity(256 * msg.notifications.len());
            for n in msg.notifications.iter() {
                serde_json::to_writer(&mut buf, n).map_err(|e| {
                    SendError::final_(ChannelKind::Console, format!("cannot encode: {e}"))
                })?;
                buf.push(b'\n');
            }
            let mut out = std::io::stdout().lock();
            out.write_all(&buf)
                .and_then(|()| out.flush())
                .map_err(|e| SendError::retriable(ChannelKind::Console, format!("stdout: {e}")))?;
            Ok(Delivered::default())
        })
    }
}

/// Writes `left` as JSON lines to `<dir>/undelivered-<unix>.ndjson` (created,
/// mode 0600: envelopes hold phone numbers and names). Returns the path.
pub fn write_undelivered(
    dir: &std::path::Path,
    unix_secs: i64,
    left: &[Envelope],
) -> std::io::Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir)?;
    let mut path = dir.join(format!("undelivered-{unix_secs}.ndjson"));
    let mut n = 1;
    while path.exists() {
        path = dir.join(format!("undelivered-{unix_secs}-{n}.ndjson"));
        n += 1;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let file = opts.open(&path)?;
    let mut w = std::io::BufWriter::new(file);
    for env in left {
        serde_json::to_writer(&mut w, env)?;
        w.write_all(b"\n")?;
    }
    w.flush()?;
    w.get_ref().sync_all()?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_and_every_example_dispatch_table_validate() {
        let c = redcloud_config::default_config();
        let d = dispatch_config(&c).unwrap();
        assert!(d.digest.window.is_zero(), "console-only: no digest");
        build_dispatcher(&c).unwrap();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples");
        let mut seen = 0;
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                let c = redcloud_config::load_file(&p).unwrap();
                build_dispatcher(&c).unwrap_or_else(|e| panic!("{}: {e:#}", p.display()));
                seen += 1;
            }
        }
        assert!(seen >= 4, "{seen}");
    }

    #[test]
    fn errors_name_the_key_path() {
        let c = redcloud_config::from_toml_str(
            "[dispatch.channels.sms]\nurl = \"http://127.0.0.1:1/sms\"\nsign_name = \"s\"\n\
             template_code = \"t\"\nper_recipient = [{ limit = 1, period = \"1m\" }, { limit = 0, period = \"1h\" }]\n",
            None,
        )
        .unwrap();
        let e = dispatch_config(&c).unwrap_err().to_string();
        assert_eq!(
            e,
            "dispatch.channels.sms.per_recipient[1].limit: must be at least 1"
        );
        assert!(
            !format!("{c:?}").contains("127.0.0.1:1"),
            "dispatch table printed"
        );
    }

    #[test]
    fn undelivered_file_is_json_lines_and_private() {
        let dir = std::env::temp_dir().join(format!("redcloud-undelivered-{}", std::process::id()));
        let env: Envelope = serde_json::from_str(
            r#"{"notification":{"id":"n1","at":"2026-03-07T00:00:00+08:00","policy":"quiz","kind":"reminder","step":1,"subject":"member:a","recipient":"member:a","missed":1},"recipient_name":null,"sms":"13800000000","push":null,"org":null,"org_name":null,"org_group":null,"subject_name":null,"ticket_title":null,"deadline":null}"#,
        )
        .unwrap();
        let p = write_undelivered(&dir, 1_700_000_000, &[env.clone(), env.clone()]).unwrap();
        let p2 = write_undelivered(&dir, 1_700_000_000, std::slice::from_ref(&env)).unwrap();
        assert_ne!(p, p2);
        let text = std::fs::read_to_string(&p).unwrap();
        let back: Vec<Envelope> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(back, vec![env.clone(), env]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{mode:o}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
