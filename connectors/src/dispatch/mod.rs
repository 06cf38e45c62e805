//! The rate-limited dispatcher: turns the engine's [`Envelope`]s into
//! deliveries on the channels, within every limit, losing nothing.
//!
//! One task ([`Dispatcher::run`]) owns all scheduling state: digests, the
//! per-channel priority queues, deferred messages, limiter state keyed by a
//! hash of the address, breakers. Sends run as spawned tasks (at most
//! `concurrency` per channel) and report back to it. The path of a
//! notification:
//!
//! 1. **Dedupe** by notification id; **digest**: notifications to the same
//!    recipient for the same policy, kind and step within `digest.window`
//!    become one message listing the subjects.
//! 2. **Route**: the route of the policy and kind names channels in order of
//!    preference; the first with a usable address is used (member contacts,
//!    the subject org's robot, offices' contacts), the others are fallbacks
//!    after a final failure or exhausted retries. No address at all:
//!    `unroutable`, counted and kept as a dead letter.
//! 3. **Queue** on the channel, in lanes: escalations, then warnings, then
//!    reminders, FIFO within a lane.
//! 4. **Gate**, in order: quiet hours (the whole channel waits for their end),
//!    the channel's breaker and provider pause, the global rate (GCRA), then
//!    the recipient: one send in flight at a time, provider pause (45009),
//!    the exact sliding windows. A message that may not go yet is deferred to
//!    the instant it may: never dropped.
//! 5. **Send** and classify: delivered; retriable (backoff with jitter, at
//!    least `Retry-After`); final (next channel or dead letter).
//!
//! Windows count every attempt at the instant its answer came back, which is
//! after the provider saw it: so the provider never sees more than `limit` in
//! any window even when requests are slow. Failures that open (or hit an
//! open) breaker do not use up a message's attempts: an outage of any length
//! queues and drains, it does not dead-letter.
//!
//! What must not live here: protocol details (in [`crate::channel`]) and any
//! logging of addresses, names or texts.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redcloud_engine::notify::{Envelope, RenderedOwned};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use xxhash_rust::xxh3::{xxh3_128, xxh3_64};

use crate::channel::{
    self, BuildError, ChannelKind, Delivered, Outgoing, Scope, SendError, SharedChannel,
};

mod clock;
pub mod config;
mod dead;
pub mod limiter;
mod stats;
pub mod template;

pub use clock::{quiet_until, Clock};
pub use config::{ConfigError, DispatchConfig, NotifyKind};
pub use dead::{DeadLetterView, DeadLetters};
pub use stats::{Counter, DispatchStats};

use config::ChannelConfig;
use limiter::{Gcra, KeyMap, SendLog, Windows};

/// An office's addresses, from the config's `[offices.<id>.contacts]`.
/// `Debug` never prints them.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct OfficeAddresses {
    /// Phone number.
    pub sms: Option<String>,
    /// Push device token.
    pub push: Option<String>,
    /// Group robot webhook or key.
    pub group: Option<String>,
}

impl fmt::Debug for OfficeAddresses {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OfficeAddresses")
            .field("sms", &self.sms.is_some())
            .field("push", &self.push.is_some())
            .field("group", &self.group.is_some())
            .finish()
    }
}

/// What the dispatcher reports as it goes, for a durable outbox
/// ([`Dispatcher::with_journal`]): every attempt that came back and every
/// dead letter. Never logged (envelopes hold addresses).
#[derive(Clone, Debug)]
pub enum Journal {
    /// An attempt's answer came back: it counts in the recipient's windows.
    /// `delivered` holds the notification ids it delivered (empty when it
    /// failed).
    Attempt {
        /// The channel.
        channel: ChannelKind,
        /// The recipient's key on it (a hash of the address).
        recipient_key: u64,
        /// When the answer came back, wall-clock milliseconds.
        unix_ms: i64,
        /// Notification ids delivered by it.
        delivered: Vec<String>,
    },
    /// Dead-lettered: settled, not to be sent again.
    Dead {
        /// The admin view.
        view: DeadLetterView,
        /// What it carried.
        envs: Vec<Envelope>,
    },
}

/// A send remembered from before a restart ([`Dispatcher::with_history`]):
/// it still counts in its recipient's windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PastSend {
    /// The channel.
    pub channel: ChannelKind,
    /// The recipient's key on it.
    pub recipient_key: u64,
    /// When, wall-clock milliseconds.
    pub unix_ms: i64,
}

/// The dispatcher. Build it, take its [`DispatchStats`] and [`DeadLetters`]
/// handles, then spawn [`Dispatcher::run`].
pub struct Dispatcher {
    cfg: Arc<DispatchConfig>,
    offices: HashMap<String, OfficeAddresses>,
    channels: [Option<SharedChannel>; 5],
    stats: Arc<DispatchStats>,
    dead: DeadLetters,
    clock: Option<Clock>,
    journal: Option<mpsc::UnboundedSender<Journal>>,
    history: Vec<PastSend>,
}

impl fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatcher")
            .field(
                "channels",
                &ChannelKind::ALL
                    .iter()
                    .filter(|k| self.channels[k.index()].is_some())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// Builds the dispatcher and every configured channel (HTTP clients; AMQP
    /// connects on its first send). `offices` maps office ids to addresses.
    pub fn new(
        cfg: DispatchConfig,
        offices: HashMap<String, OfficeAddresses>,
    ) -> Result<Dispatcher, BuildError> {
        let mut channels: [Option<SharedChannel>; 5] = Default::default();
        for kind in ChannelKind::ALL {
            let Some(c) = cfg.channel(kind) else { continue };
            let ch: SharedChannel = match kind {
                ChannelKind::Sms => Arc::new(channel::sms::SmsChannel::new(c)?),
                ChannelKind::Push => Arc::new(channel::push::PushChannel::new(c)?),
                ChannelKind::Group => Arc::new(channel::group::GroupChannel::new(c)?),
                ChannelKind::Amqp => Arc::new(channel::amqp::AmqpChannel::new(c)?),
                ChannelKind::Console => Arc::new(channel::console::ConsoleChannel),
            };
            channels[kind.index()] = Some(ch);
        }
        let dead = DeadLetters::new(cfg.dead_letters_kept);
        Ok(Dispatcher {
            cfg: Arc::new(cfg),
            offices,
            channels,
            stats: Arc::new(DispatchStats::default()),
            dead,
            clock: None,
            journal: None,
            history: Vec::new(),
        })
    }

    /// Reports every attempt's answer and every dead letter on `tx` (the
    /// daemon's outbox records them: delivered marks, windows, dead letters).
    pub fn with_journal(mut self, tx: mpsc::UnboundedSender<Journal>) -> Dispatcher {
        self.journal = Some(tx);
        self
    }

    /// Counts `sends` (from before a restart) in their recipients' windows, so
    /// that no window is exceeded across the restart.
    pub fn with_history(mut self, sends: Vec<PastSend>) -> Dispatcher {
        self.history = sends;
        self
    }

    /// Replaces the implementation of a configured channel (tests, benches,
    /// the load-test harness: [`channel::memory::MemoryChannel`]). The limits
    /// of `[dispatch.channels.<kind>]` still apply.
    pub fn with_channel(mut self, ch: SharedChannel) -> Result<Dispatcher, BuildError> {
        let kind = ch.kind();
        if self.cfg.channel(kind).is_none() {
            return Err(BuildError {
                channel: kind,
                reason: "not configured in [dispatch.channels]".into(),
            });
        }
        self.channels[kind.index()] = Some(ch);
        Ok(self)
    }

    /// Uses `clock` instead of [`Clock::system`] (tests that simulate a night).
    pub fn with_clock(mut self, clock: Clock) -> Dispatcher {
        self.clock = Some(clock);
        self
    }

    /// The shared counters, for `/metrics`.
    pub fn stats(&self) -> Arc<DispatchStats> {
        self.stats.clone()
    }

    /// The dead letters handle, for the admin API.
    pub fn dead_letters(&self) -> DeadLetters {
        self.dead.clone()
    }

    /// Runs until `rx` is closed and everything taken in is delivered or
    /// dead-lettered, or until `shutdown` is cancelled. On shutdown it stops
    /// taking in, waits up to `drain_timeout` for sends in flight and returns
    /// every notification not yet delivered, including those still unread in
    /// `rx` (for the daemon to keep; their ids make a later resend idempotent).
    pub async fn run(
        self,
        mut rx: mpsc::Receiver<Envelope>,
        shutdown: CancellationToken,
    ) -> Vec<Envelope> {
        let mut clock = self.clock.unwrap_or_else(Clock::system);
        if !self.history.is_empty() {
            // Give the remembered sends a monotonic time.
            clock = clock.with_past(self.cfg.history_horizon());
        }
        let mut core = Core::new(self, clock);
        let mut rx_open = true;
        loop {
            let now = core.clock.now();
            let wake = core.advance(now);
            if !rx_open && core.pending == 0 && core.tasks.is_empty() {
                break;
            }
            let can_take = rx_open && core.pending < core.cfg.max_pending;
            let sleep_at = wake.map(|t| core.clock.instant(t));
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                done = core.tasks.join_next_with_id(), if !core.tasks.is_empty() => {
                    core.on_join(done);
                    // Take every other completion that is ready.
                    while let Some(done) = core.tasks.try_join_next_with_id() {
                        core.on_join(Some(done));
                    }
                }
                env = rx.recv(), if can_take => match env {
                    None => rx_open = false,
                    Some(env) => {
                        let now = core.clock.now();
                        core.ingest(env, now);
                        let mut n = 0;
                        while n < 4096 && core.pending < core.cfg.max_pending {
                            match rx.try_recv() {
                                Ok(env) => core.ingest(env, now),
                                Err(_) => break,
                            }
                            n += 1;
                        }
                    }
                },
                _ = sleep_until_opt(sleep_at) => {}
            }
        }
        // What is still in `rx` was never taken in: hand it back too, or it
        // would be dropped with the receiver.
        rx.close();
        let mut unread = Vec::new();
        while let Ok(env) = rx.try_recv() {
            unread.push(env);
        }
        let mut left = core.shutdown().await;
        if !unread.is_empty() {
            info!(
                unread = unread.len(),
                "dispatcher stopped before reading its whole input"
            );
            left.extend(unread);
        }
        left
    }
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

// ------------------------------------------------------------------ internals

/// A message on its way: one notification or a digest.
struct Job {
    seq: u64,
    lane: NotifyKind,
    id: String,
    envs: Vec<Envelope>,
    notes: Arc<[RenderedOwned]>,
    /// Candidate channels with their addresses, in order of preference.
    route: Vec<(ChannelKind, String)>,
    pos: usize,
    /// Failed attempts counted on the current channel.
    failures: u32,
    attempts: u32,
    rkey: u64,
    msg: Option<Arc<Outgoing>>,
}

impl Job {
    fn channel(&self) -> ChannelKind {
        self.route[self.pos].0
    }
}

/// Queue entry ordered by (lane, seq): escalations first, FIFO within.
struct Queued(Job);

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> Ordering {
        // Max-heap: the smallest (lane, seq) is the greatest.
        (other.0.lane, other.0.seq).cmp(&(self.0.lane, self.0.seq))
    }
}

/// Deferred entry ordered by due time.
struct Deferred(u64, Job);

impl PartialEq for Deferred {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Deferred {}
impl PartialOrd for Deferred {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Deferred {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.0, other.1.seq).cmp(&(self.0, self.1.seq))
    }
}

#[derive(Default)]
struct Recipient {
    log: SendLog,
    busy: bool,
    paused_until: u64,
    parked: Vec<Job>,
}

#[derive(Default)]
struct Breaker {
    consecutive: u32,
    open_until: Option<u64>,
    opens: u32,
    probing: bool,
}

enum Gate {
    Go { probe: bool },
    Wait(Option<u64>),
}

impl Breaker {
    fn gate(&mut self, now: u64) -> Gate {
        match self.open_until {
            None => Gate::Go { probe: false },
            Some(_) if self.probing => Gate::Wait(None),
            Some(t) if now < t => Gate::Wait(Some(t)),
            Some(_) => Gate::Go { probe: true },
        }
    }

    fn success(&mut self) -> bool {
        let was_open = self.open_until.is_some();
        *self = Breaker::default();
        was_open
    }

    /// Returns (open now, just opened).
    fn failure(&mut self, now: u64, probe: bool, cfg: &config::BreakerConfig) -> (bool, bool) {
        let base = u64::try_from(cfg.open_for.as_nanos()).unwrap_or(u64::MAX);
        if probe {
            self.probing = false;
            self.opens = (self.opens + 1).min(16);
            let f = 1u64 << (self.opens - 1).min(4);
            self.open_until = Some(now.saturating_add(base.saturating_mul(f)));
            return (true, false);
        }
        if self.open_until.is_some() {
            return (true, false);
        }
        self.consecutive += 1;
        if self.consecutive >= cfg.failures {
            self.opens = 1;
            self.open_until = Some(now.saturating_add(base));
            return (true, true);
        }
        (false, false)
    }
}

struct Chan {
    kind: ChannelKind,
    cfg: ChannelConfig,
    imp: SharedChannel,
    queue: BinaryHeap<Queued>,
    deferred: BinaryHeap<Deferred>,
    parked: usize,
    gcra: Option<Gcra>,
    windows: Windows,
    recipients: KeyMap<Recipient>,
    paused_until: u64,
    breaker: Breaker,
    in_flight: usize,
    quiet_end: Option<u64>,
    last_sweep: u64,
}

impl Chan {
    fn waiting(&self) -> usize {
        self.queue.len() + self.deferred.len() + self.parked
    }
}

struct Completion {
    seq: u64,
    channel: ChannelKind,
    probe: bool,
    started: u64,
    result: Result<Delivered, SendError>,
}

struct DigestBuf {
    envs: Vec<Envelope>,
}

struct Core {
    cfg: Arc<DispatchConfig>,
    offices: HashMap<String, OfficeAddresses>,
    stats: Arc<DispatchStats>,
    dead: DeadLetters,
    clock: Clock,
    chans: Vec<Option<Chan>>,
    digests: HashMap<u128, DigestBuf>,
    digest_due: BinaryHeap<Reverse<(u64, u128)>>,
    in_flight: HashMap<u64, Job>,
    tasks: JoinSet<Completion>,
    task_ids: HashMap<tokio::task::Id, (u64, ChannelKind)>,
    seen: HashSet<u64>,
    seen_order: VecDeque<u64>,
    seq: u64,
    /// Notifications held (not yet delivered or dead-lettered).
    pending: usize,
    rng: u64,
    journal: Option<mpsc::UnboundedSender<Journal>>,
}

const SEEN_CAP: usize = 1 << 20;

impl Core {
    fn new(d: Dispatcher, clock: Clock) -> Core {
        let Dispatcher {
            cfg,
            offices,
            channels,
            stats,
            dead,
            journal,
            mut history,
            ..
        } = d;
        let mut chans: Vec<Option<Chan>> = ChannelKind::ALL
            .iter()
            .zip(channels)
            .map(|(kind, imp)| {
                let imp = imp?;
                let c = cfg.channel(*kind)?.clone();
                Some(Chan {
                    kind: *kind,
                    gcra: c.rate.map(|w| Gcra::new(w, c.burst)),
                    windows: Windows::new(&c.per_recipient),
                    cfg: c,
                    imp,
                    queue: BinaryHeap::new(),
                    deferred: BinaryHeap::new(),
                    parked: 0,
                    recipients: KeyMap::default(),
                    paused_until: 0,
                    breaker: Breaker::default(),
                    in_flight: 0,
                    quiet_end: None,
                    last_sweep: 0,
                })
            })
            .collect();
        history.sort_by_key(|p| p.unix_ms);
        for p in history {
            if let Some(chan) = chans[p.channel.index()].as_mut() {
                let t = clock.from_unix_ms(p.unix_ms);
                let rec = chan.recipients.entry(p.recipient_key).or_default();
                chan.windows.record(&mut rec.log, t);
            }
        }
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(7);
        Core {
            cfg,
            offices,
            stats,
            dead,
            clock,
            chans,
            digests: HashMap::new(),
            digest_due: BinaryHeap::new(),
            in_flight: HashMap::new(),
            tasks: JoinSet::new(),
            task_ids: HashMap::new(),
            seen: HashSet::new(),
            seen_order: VecDeque::new(),
            seq: 0,
            pending: 0,
            rng: seed | 1,
            journal,
        }
    }

    fn rand(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn ingest(&mut self, env: Envelope, now: u64) {
        let kind = NotifyKind::parse(&env.notification.kind).unwrap_or(NotifyKind::Reminder);
        let h = xxh3_64(env.notification.id.as_bytes());
        if !self.seen.insert(h) {
            self.stats.add(Counter::Duplicate, None, kind, 1);
            return;
        }
        self.seen_order.push_back(h);
        if self.seen_order.len() > SEEN_CAP {
            if let Some(old) = self.seen_order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.stats.add(Counter::Received, None, kind, 1);
        self.pending += 1;
        let window = self.cfg.digest.window;
        if window.is_zero() {
            self.make_job(vec![env], kind, now);
            return;
        }
        let n = &env.notification;
        let mut key_src = Vec::with_capacity(n.recipient.len() + n.policy.len() + 24);
        for part in [n.recipient.as_str(), n.policy.as_str(), n.kind.as_str()] {
            key_src.extend_from_slice(part.as_bytes());
            key_src.push(0x1f);
        }
        key_src.push(n.step);
        let key = xxh3_128(&key_src);
        let max = self.cfg.digest.max_items;
        match self.digests.get_mut(&key) {
            Some(buf) => {
                buf.envs.push(env);
                self.stats.add(Counter::Digested, None, kind, 1);
                if buf.envs.len() >= max {
                    let buf = self.digests.remove(&key).expect("present");
                    self.make_job(buf.envs, kind, now);
                }
            }
            None => {
                if max <= 1 {
                    self.make_job(vec![env], kind, now);
                    return;
                }
                // Digests that come due within the same second flush
                // together, so that the lanes order them (an escalation
                // digest goes before a reminder digest opened a moment
                // earlier for the same recipient).
                let mut due = now.saturating_add(window.as_nanos() as u64);
                if window >= Duration::from_secs(1) {
                    due = due.div_ceil(1_000_000_000).saturating_mul(1_000_000_000);
                }
                self.digests.insert(key, DigestBuf { envs: vec![env] });
                self.digest_due.push(Reverse((due, key)));
            }
        }
    }

    fn address(&self, ch: ChannelKind, env: &Envelope) -> Option<String> {
        let office = env
            .notification
            .recipient
            .strip_prefix("office:")
            .and_then(|id| self.offices.get(id));
        let pick = |own: &Option<String>, off: Option<&Option<String>>| -> Option<String> {
            own.as_ref()
                .or(off.and_then(|o| o.as_ref()))
                .filter(|s| !s.trim().is_empty())
                .cloned()
        };
        match ch {
            ChannelKind::Sms => pick(&env.sms, office.map(|o| &o.sms)),
            ChannelKind::Push => pick(&env.push, office.map(|o| &o.push)),
            ChannelKind::Group => match office {
                // An office is reached on its own robot, a member on the
                // subject org's robot.
                Some(o) => pick(&None, Some(&o.group)),
                None if env.notification.recipient.starts_with("office:") => None,
                None => pick(&env.org_group, None),
            },
            ChannelKind::Amqp | ChannelKind::Console => Some(String::new()),
        }
    }

    fn make_job(&mut self, envs: Vec<Envelope>, lane: NotifyKind, now: u64) {
        let first = &envs[0];
        let route: Vec<(ChannelKind, String)> = self
            .cfg
            .routes
            .lookup(&first.notification.policy, lane)
            .iter()
            .filter(|k| self.chans[k.index()].is_some())
            .filter_map(|k| self.address(*k, first).map(|a| (*k, a)))
            .collect();
        let notes: Arc<[RenderedOwned]> = envs.iter().map(|e| e.notification.clone()).collect();
        let id = if envs.len() == 1 {
            first.notification.id.clone()
        } else {
            let mut ids: Vec<&str> = notes.iter().map(|n| n.id.as_str()).collect();
            ids.sort_unstable();
            format!("{:032x}", xxh3_128(ids.join("\u{1f}").as_bytes()))
        };
        self.seq += 1;
        let job = Job {
            seq: self.seq,
            lane,
            id,
            envs,
            notes,
            route,
            pos: 0,
            failures: 0,
            attempts: 0,
            rkey: 0,
            msg: None,
        };
        if job.route.is_empty() {
            let n = job.envs.len() as u64;
            self.stats.add(Counter::Unroutable, None, lane, n);
            debug!(id = %job.id, policy = %job.notes[0].policy, "notification unroutable");
            self.dead_letter(
                job,
                None,
                "unroutable: no usable address on any channel of the route".into(),
                now,
            );
            return;
        }
        self.enqueue(job, now);
    }

    /// Renders the job for its current channel and queues it there.
    fn enqueue(&mut self, mut job: Job, now: u64) {
        let (kind, addr) = job.route[job.pos].clone();
        job.rkey = xxh3_64(addr.as_bytes());
        job.msg = Some(Arc::new(self.render(&job, kind, addr)));
        let chan = self.chans[kind.index()]
            .as_mut()
            .expect("routed channels exist");
        if let Some(q) = &chan.cfg.quiet_hours {
            if quiet_until(q, self.cfg.timezone, self.clock.unix_ms(now)).is_some() {
                self.stats
                    .add(Counter::DeferredQuiet, Some(kind), job.lane, 1);
            }
        }
        chan.queue.push(Queued(job));
    }

    fn render(&self, job: &Job, kind: ChannelKind, address: String) -> Outgoing {
        let first = &job.envs[0];
        let ticket = first.notification.subject.starts_with("ticket:");
        let t = self
            .cfg
            .templates
            .resolve(&first.notification.policy, job.lane, ticket);
        let title = t.title.to_string(first, None);
        let body = if job.envs.len() == 1 {
            t.body.to_string(first, None)
        } else {
            let mut items = String::new();
            for (i, e) in job.envs.iter().enumerate() {
                if i > 0 {
                    items.push('\n');
                }
                items.push_str(&(i + 1).to_string());
                items.push_str(". ");
                t.item.render(e, None, &mut items);
            }
            t.digest.to_string(first, Some((job.envs.len(), &items)))
        };
        let (template_code, params) = if kind == ChannelKind::Sms {
            (
                t.sms_template.map(str::to_string),
                template::sms_params(first, job.envs.len()),
            )
        } else {
            (None, Vec::new())
        };
        Outgoing {
            id: job.id.clone(),
            channel: kind,
            address,
            title,
            body,
            template_code,
            params,
            notifications: job.notes.clone(),
            attempt: job.attempts + 1,
        }
    }

    fn dead_letter(&mut self, job: Job, channel: Option<ChannelKind>, reason: String, now: u64) {
        let n = job.envs.len();
        self.stats
            .add(Counter::DeadLettered, channel, job.lane, n as u64);
        self.pending = self.pending.saturating_sub(n);
        let first = &job.notes[0];
        warn!(
            id = %job.id,
            policy = %first.policy,
            kind = %first.kind,
            channel = channel.map_or("none", ChannelKind::as_str),
            reason = %reason,
            "notification dead-lettered"
        );
        let view = DeadLetterView {
            id: job.id.clone(),
            notification_ids: job.notes.iter().map(|n| n.id.clone()).collect(),
            policy: first.policy.clone(),
            kind: first.kind.clone(),
            step: first.step,
            recipient: first.recipient.clone(),
            channel: channel.map(ChannelKind::as_str),
            reason,
            attempts: job.attempts,
            at_unix_ms: self.clock.unix_ms(now),
        };
        if let Some(j) = &self.journal {
            let _ = j.send(Journal::Dead {
                view: view.clone(),
                envs: job.envs.clone(),
            });
        }
        self.dead.push(view, job.envs);
    }

    /// Flushes due digests, releases due deferred messages, starts every send
    /// that may go now; returns the next instant something becomes due.
    fn advance(&mut self, now: u64) -> Option<u64> {
        while let Some(Reverse((due, key))) = self.digest_due.peek().copied() {
            if due > now {
                break;
            }
            self.digest_due.pop();
            if let Some(buf) = self.digests.remove(&key) {
                let lane = NotifyKind::parse(&buf.envs[0].notification.kind)
                    .unwrap_or(NotifyKind::Reminder);
                self.make_job(buf.envs, lane, now);
            }
        }
        let mut wake = self.digest_due.peek().map(|r| r.0 .0);
        for i in 0..self.chans.len() {
            if self.chans[i].is_none() {
                continue;
            }
            if let Some(t) = self.pump(i, now) {
                wake = Some(wake.map_or(t, |w: u64| w.min(t)));
            }
        }
        self.stats.set_pending(self.pending);
        wake
    }

    fn pump(&mut self, i: usize, now: u64) -> Option<u64> {
        let tz = self.cfg.timezone;
        let clock = self.clock;
        let chan = self.chans[i].as_mut().expect("checked");
        while let Some(Deferred(due, _)) = chan.deferred.peek() {
            if *due > now {
                break;
            }
            let Deferred(_, job) = chan.deferred.pop().expect("peeked");
            chan.queue.push(Queued(job));
        }
        // Forget recipients idle for longer than every window.
        if now.saturating_sub(chan.last_sweep) > 60_000_000_000 && chan.recipients.len() > 1024 {
            chan.last_sweep = now;
            let horizon = chan.windows.max_period();
            chan.recipients.retain(|_, r| {
                r.busy
                    || !r.parked.is_empty()
                    || r.paused_until > now
                    || r.log
                        .last()
                        .is_some_and(|t| t.saturating_add(horizon) > now)
            });
        }
        let mut wake = chan.deferred.peek().map(|d| d.0);
        let mut wake_min = |t: u64| {
            wake = Some(wake.map_or(t, |w: u64| w.min(t)));
        };
        loop {
            if chan.queue.is_empty() || chan.in_flight >= chan.cfg.concurrency {
                break;
            }
            if now < chan.paused_until {
                wake_min(chan.paused_until);
                break;
            }
            if let Some(q) = &chan.cfg.quiet_hours {
                if chan.quiet_end.is_some_and(|e| now >= e) {
                    chan.quiet_end = None;
                }
                if chan.quiet_end.is_none() {
                    if let Some(end) = quiet_until(q, tz, clock.unix_ms(now)) {
                        chan.quiet_end = Some(clock.from_unix_ms(end).max(now + 1));
                    }
                }
                if let Some(end) = chan.quiet_end {
                    wake_min(end);
                    break;
                }
            }
            let probe = match chan.breaker.gate(now) {
                Gate::Go { probe } => probe,
                Gate::Wait(t) => {
                    if let Some(t) = t {
                        wake_min(t);
                    }
                    break;
                }
            };
            if let Some(g) = &chan.gcra {
                if let Err(t) = g.check(now) {
                    wake_min(t);
                    break;
                }
            }
            let Queued(mut job) = chan.queue.pop().expect("not empty");
            let rec = chan.recipients.entry(job.rkey).or_default();
            if rec.busy {
                rec.parked.push(job);
                chan.parked += 1;
                continue;
            }
            if now < rec.paused_until {
                let t = rec.paused_until;
                chan.deferred.push(Deferred(t, job));
                wake_min(t);
                continue;
            }
            if let Err(t) = chan.windows.check(&rec.log, now) {
                self.stats
                    .add(Counter::DeferredLimit, Some(chan.kind), job.lane, 1);
                chan.deferred.push(Deferred(t, job));
                wake_min(t);
                continue;
            }
            // Go.
            if let Some(g) = &mut chan.gcra {
                g.take(now);
            }
            rec.busy = true;
            if probe {
                chan.breaker.probing = true;
            }
            chan.in_flight += 1;
            job.attempts += 1;
            let mut msg = job.msg.take().expect("rendered at enqueue");
            Arc::make_mut(&mut msg).attempt = job.attempts;
            let fut = chan.imp.send(msg.clone());
            job.msg = Some(msg);
            let (seq, kind) = (job.seq, chan.kind);
            self.in_flight.insert(seq, job);
            let handle = self.tasks.spawn(async move {
                let result = fut.await;
                Completion {
                    seq,
                    channel: kind,
                    probe,
                    started: now,
                    result,
                }
            });
            self.task_ids.insert(handle.id(), (seq, kind));
        }
        self.stats.set_queued(chan.kind, chan.waiting());
        self.stats.set_in_flight(chan.kind, chan.in_flight);
        wake
    }

    fn on_join(
        &mut self,
        done: Option<Result<(tokio::task::Id, Completion), tokio::task::JoinError>>,
    ) {
        let Some(done) = done else { return };
        let c = match done {
            Ok((id, c)) => {
                self.task_ids.remove(&id);
                c
            }
            Err(e) => {
                let Some((seq, channel)) = self.task_ids.remove(&e.id()) else {
                    return;
                };
                Completion {
                    seq,
                    channel,
                    probe: false,
                    started: self.clock.now(),
                    result: Err(SendError::retriable(channel, "send task failed")),
                }
            }
        };
        let now = self.clock.now();
        self.complete(c, now);
    }

    fn complete(&mut self, c: Completion, now: u64) {
        let Some(mut job) = self.in_flight.remove(&c.seq) else {
            return;
        };
        let lane = job.lane;
        let kind = c.channel;
        let cfg = self.cfg.clone();
        let chan = self.chans[kind.index()]
            .as_mut()
            .expect("in-flight channel");
        chan.in_flight -= 1;
        let rec = chan.recipients.entry(job.rkey).or_default();
        rec.busy = false;
        // Count the attempt when its answer came back: the provider saw it
        // before that, so no window it keeps can be exceeded.
        chan.windows.record(&mut rec.log, now);
        if let Some(j) = &self.journal {
            let delivered = if c.result.is_ok() {
                job.notes.iter().map(|n| n.id.clone()).collect()
            } else {
                Vec::new()
            };
            let _ = j.send(Journal::Attempt {
                channel: kind,
                recipient_key: job.rkey,
                unix_ms: self.clock.unix_ms(now),
                delivered,
            });
        }
        let parked = std::mem::take(&mut rec.parked);
        chan.parked -= parked.len();
        for j in parked {
            chan.queue.push(Queued(j));
        }
        self.stats
            .observe_latency(kind, Duration::from_nanos(now.saturating_sub(c.started)));
        match c.result {
            Ok(d) => {
                if chan.breaker.success() {
                    self.stats.set_breaker(kind, false, false);
                    info!(channel = %kind, "channel recovered: breaker closed");
                }
                let n = job.envs.len();
                self.stats.add(Counter::Sent, Some(kind), lane, 1);
                self.stats
                    .add(Counter::Delivered, Some(kind), lane, n as u64);
                if d.segments > 0 {
                    self.stats.add_segments(u64::from(d.segments));
                }
                self.pending = self.pending.saturating_sub(n);
            }
            Err(SendError::Final { reason, .. }) => {
                // The provider answered: the channel is up.
                if chan.breaker.success() {
                    self.stats.set_breaker(kind, false, false);
                }
                self.stats.add(Counter::FailedFinal, Some(kind), lane, 1);
                debug!(id = %job.id, channel = %kind, reason = %reason, "final failure");
                self.next_channel(job, kind, reason, now);
            }
            Err(SendError::Retriable {
                reason,
                retry_after,
                scope,
                ..
            }) => {
                let (open, opened) = chan.breaker.failure(now, c.probe, &chan.cfg.breaker);
                if opened {
                    self.stats.set_breaker(kind, true, true);
                    warn!(channel = %kind, reason = %reason, "channel failing: breaker open");
                }
                let pause = |d: Option<Duration>, default: Duration| {
                    now.saturating_add(d.unwrap_or(default).as_nanos() as u64)
                };
                match scope {
                    Scope::Message => {}
                    Scope::Recipient => {
                        rec_pause(chan, job.rkey, pause(retry_after, Duration::from_secs(60)));
                        self.stats
                            .add(Counter::ProviderLimited, Some(kind), lane, 1);
                    }
                    Scope::Channel => {
                        chan.paused_until = chan
                            .paused_until
                            .max(pause(retry_after, Duration::from_secs(1)));
                        self.stats
                            .add(Counter::ProviderLimited, Some(kind), lane, 1);
                    }
                }
                // Over-limit answers and outages seen by the breaker do not
                // use up the message's attempts.
                if !open && scope == Scope::Message {
                    job.failures += 1;
                }
                if job.failures >= cfg.max_attempts {
                    self.next_channel(job, kind, format!("retries exhausted: {reason}"), now);
                    return;
                }
                self.stats.add(Counter::Retried, Some(kind), lane, 1);
                let backoff = {
                    let exp = cfg
                        .retry_initial
                        .saturating_mul(1u32 << job.attempts.saturating_sub(1).min(20))
                        .min(cfg.retry_max);
                    let half = exp / 2;
                    let span = (exp - half).as_nanos() as u64;
                    let j = if span == 0 {
                        0
                    } else {
                        self.rand() % (span + 1)
                    };
                    half + Duration::from_nanos(j)
                };
                let delay = backoff.max(retry_after.unwrap_or_default());
                let due = now.saturating_add(delay.as_nanos() as u64);
                let chan = self.chans[kind.index()]
                    .as_mut()
                    .expect("in-flight channel");
                chan.deferred.push(Deferred(due, job));
            }
        }
    }

    /// Moves a failed job to the next channel of its route, or dead-letters it.
    fn next_channel(&mut self, mut job: Job, kind: ChannelKind, reason: String, now: u64) {
        if job.pos + 1 < job.route.len() {
            job.pos += 1;
            job.failures = 0;
            job.attempts = 0;
            self.stats.add(Counter::Fallback, Some(kind), job.lane, 1);
            debug!(id = %job.id, from = %kind, to = %job.channel(), "falling back");
            self.enqueue(job, now);
        } else {
            self.dead_letter(job, Some(kind), reason, now);
        }
    }

    async fn shutdown(mut self) -> Vec<Envelope> {
        let deadline = tokio::time::Instant::now() + self.cfg.drain_timeout;
        while !self.tasks.is_empty() {
            match tokio::time::timeout_at(deadline, self.tasks.join_next_with_id()).await {
                Ok(done) => {
                    let now = self.clock.now();
                    // Completions still count; retries are not started.
                    if let Some(Ok((id, c))) = done {
                        self.task_ids.remove(&id);
                        self.complete(c, now);
                    } else if let Some(Err(e)) = done {
                        self.task_ids.remove(&e.id());
                    }
                }
                Err(_) => {
                    self.tasks.abort_all();
                    break;
                }
            }
        }
        let mut left: Vec<Envelope> = Vec::new();
        for (_, buf) in self.digests.drain() {
            left.extend(buf.envs);
        }
        for (_, job) in self.in_flight.drain() {
            left.extend(job.envs);
        }
        for chan in self.chans.iter_mut().flatten() {
            for Queued(job) in chan.queue.drain() {
                left.extend(job.envs);
            }
            for Deferred(_, job) in chan.deferred.drain() {
                left.extend(job.envs);
            }
            for (_, r) in chan.recipients.drain() {
                for job in r.parked {
                    left.extend(job.envs);
                }
            }
        }
        if !left.is_empty() {
            info!(
                undelivered = left.len(),
                "dispatcher stopped with undelivered notifications"
            );
        }
        self.stats.set_pending(left.len());
        left
    }
}

fn rec_pause(chan: &mut Chan, rkey: u64, until: u64) {
    let r = chan.recipients.entry(rkey).or_default();
    r.paused_until = r.paused_until.max(until);
}
