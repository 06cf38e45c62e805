//! Counters and gauges of the dispatcher, shared with the daemon's `/metrics`.
//!
//! Every counter is kept per channel (or none, for notifications that never
//! reached one) and per kind; labels are only `channel`, `kind` and the
//! counter's own name, never a recipient. [`DispatchStats::render_prometheus`]
//! writes the Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use super::config::NotifyKind;
use crate::channel::ChannelKind;

/// What is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Notifications taken in.
    Received,
    /// Notifications whose id was already taken in (ignored).
    Duplicate,
    /// Notifications whose recipient had no usable address on any channel of
    /// their route (kept as dead letters).
    Unroutable,
    /// Notifications merged into another one's digest.
    Digested,
    /// Messages delivered (a digest is one message).
    Sent,
    /// Notifications delivered (a digest counts each).
    Delivered,
    /// Attempts that failed retriably and will be retried.
    Retried,
    /// Final answers from a provider.
    FailedFinal,
    /// Messages moved to the next channel of their route.
    Fallback,
    /// Notifications dead-lettered.
    DeadLettered,
    /// Messages queued while their channel was in quiet hours.
    DeferredQuiet,
    /// Messages held back by a per-recipient window.
    DeferredLimit,
    /// Provider over-limit answers that paused a recipient or the channel.
    ProviderLimited,
}

impl Counter {
    /// Every counter.
    pub const ALL: [Counter; 13] = [
        Counter::Received,
        Counter::Duplicate,
        Counter::Unroutable,
        Counter::Digested,
        Counter::Sent,
        Counter::Delivered,
        Counter::Retried,
        Counter::FailedFinal,
        Counter::Fallback,
        Counter::DeadLettered,
        Counter::DeferredQuiet,
        Counter::DeferredLimit,
        Counter::ProviderLimited,
    ];

    /// The Prometheus metric name.
    pub fn metric(self) -> &'static str {
        match self {
            Counter::Received => "redcloud_dispatch_received_total",
            Counter::Duplicate => "redcloud_dispatch_duplicates_total",
            Counter::Unroutable => "redcloud_dispatch_unroutable_total",
            Counter::Digested => "redcloud_dispatch_digested_total",
            Counter::Sent => "redcloud_dispatch_messages_sent_total",
            Counter::Delivered => "redcloud_dispatch_delivered_total",
            Counter::Retried => "redcloud_dispatch_retries_total",
            Counter::FailedFinal => "redcloud_dispatch_final_failures_total",
            Counter::Fallback => "redcloud_dispatch_fallbacks_total",
            Counter::DeadLettered => "redcloud_dispatch_dead_letters_total",
            Counter::DeferredQuiet => "redcloud_dispatch_deferred_quiet_total",
            Counter::DeferredLimit => "redcloud_dispatch_deferred_limit_total",
            Counter::ProviderLimited => "redcloud_dispatch_provider_limited_total",
        }
    }
}

const CH: usize = 6; // five channels + "none"
const LAT_BUCKETS_MS: [u64; 11] = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000];

/// Shared counters and gauges.
#[derive(Debug)]
pub struct DispatchStats {
    counters: Vec<AtomicU64>,
    sms_segments: AtomicU64,
    breaker_opens: [AtomicU64; 5],
    breaker_open: [AtomicBool; 5],
    queued: [AtomicI64; 5],
    in_flight: [AtomicI64; 5],
    pending: AtomicI64,
    latency: Vec<AtomicU64>,
    latency_sum_us: [AtomicU64; 5],
}

impl Default for DispatchStats {
    fn default() -> Self {
        DispatchStats {
            counters: (0..Counter::ALL.len() * CH * 3)
                .map(|_| AtomicU64::new(0))
                .collect(),
            sms_segments: AtomicU64::new(0),
            breaker_opens: Default::default(),
            breaker_open: Default::default(),
            queued: Default::default(),
            in_flight: Default::default(),
            pending: AtomicI64::new(0),
            latency: (0..5 * (LAT_BUCKETS_MS.len() + 1))
                .map(|_| AtomicU64::new(0))
                .collect(),
            latency_sum_us: Default::default(),
        }
    }
}

fn slot(c: Counter, ch: Option<ChannelKind>, kind: NotifyKind) -> usize {
    ((c as usize) * CH + ch.map_or(5, ChannelKind::index)) * 3 + kind.lane()
}

impl DispatchStats {
    /// Adds `n` to a counter.
    #[inline]
    pub fn add(&self, c: Counter, ch: Option<ChannelKind>, kind: NotifyKind, n: u64) {
        self.counters[slot(c, ch, kind)].fetch_add(n, Ordering::Relaxed);
    }

    /// A counter's value; `None` for channel or kind sums over them (for a
    /// channel: including notifications that reached none).
    pub fn get(&self, c: Counter, ch: Option<ChannelKind>, kind: Option<NotifyKind>) -> u64 {
        let chans: Vec<Option<ChannelKind>> = match ch {
            Some(k) => vec![Some(k)],
            None => ChannelKind::ALL
                .iter()
                .copied()
                .map(Some)
                .chain([None])
                .collect(),
        };
        let kinds: Vec<NotifyKind> = kind.map_or(NotifyKind::ALL.to_vec(), |k| vec![k]);
        let mut sum = 0;
        for c2 in &chans {
            for k in &kinds {
                sum += self.counters[slot(c, *c2, *k)].load(Ordering::Relaxed);
            }
        }
        sum
    }

    /// Total of a counter over channels and kinds.
    pub fn total(&self, c: Counter) -> u64 {
        self.get(c, None, None)
    }

    /// SMS segments billed (`redcloud_dispatch_sms_segments_total`).
    pub fn sms_segments(&self) -> u64 {
        self.sms_segments.load(Ordering::Relaxed)
    }

    /// Times the channel's breaker opened.
    pub fn breaker_opens(&self, ch: ChannelKind) -> u64 {
        self.breaker_opens[ch.index()].load(Ordering::Relaxed)
    }

    /// Whether the channel's breaker is open now.
    pub fn breaker_is_open(&self, ch: ChannelKind) -> bool {
        self.breaker_open[ch.index()].load(Ordering::Relaxed)
    }

    /// Messages waiting on a channel (queued, deferred, parked).
    pub fn queued(&self, ch: ChannelKind) -> i64 {
        self.queued[ch.index()].load(Ordering::Relaxed)
    }

    /// Notifications held by the dispatcher (digests, queues, in flight).
    pub fn pending(&self) -> i64 {
        self.pending.load(Ordering::Relaxed)
    }

    pub(crate) fn add_segments(&self, n: u64) {
        self.sms_segments.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn set_breaker(&self, ch: ChannelKind, open: bool, opened: bool) {
        self.breaker_open[ch.index()].store(open, Ordering::Relaxed);
        if opened {
            self.breaker_opens[ch.index()].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn set_queued(&self, ch: ChannelKind, n: usize) {
        self.queued[ch.index()].store(n as i64, Ordering::Relaxed);
    }

    pub(crate) fn set_in_flight(&self, ch: ChannelKind, n: usize) {
        self.in_flight[ch.index()].store(n as i64, Ordering::Relaxed);
    }

    pub(crate) fn set_pending(&self, n: usize) {
        self.pending.store(n as i64, Ordering::Relaxed);
    }

    pub(crate) fn observe_latency(&self, ch: ChannelKind, d: Duration) {
        let ms = d.as_millis() as u64;
        let b = LAT_BUCKETS_MS
            .iter()
            .position(|&x| ms <= x)
            .unwrap_or(LAT_BUCKETS_MS.len());
        self.latency[ch.index() * (LAT_BUCKETS_MS.len() + 1) + b].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us[ch.index()].fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// Appends every metric in the Prometheus text format.
    pub fn render_prometheus(&self, out: &mut String) {
        for c in Counter::ALL {
            let name = c.metric();
            let _ = writeln!(out, "# TYPE {name} counter");
            for ch in ChannelKind::ALL.iter().copied().map(Some).chain([None]) {
                for k in NotifyKind::ALL {
                    let v = self.counters[slot(c, ch, k)].load(Ordering::Relaxed);
                    if v == 0 {
                        continue;
                    }
                    let chan = ch.map_or("none", ChannelKind::as_str);
                    let _ = writeln!(
                        out,
                        "{name}{{channel=\"{chan}\",kind=\"{}\"}} {v}",
                        k.as_str()
                    );
                }
            }
        }
        let _ = writeln!(
            out,
            "# TYPE redcloud_dispatch_sms_segments_total counter\nredcloud_dispatch_sms_segments_total {}",
            self.sms_segments()
        );
        let _ = writeln!(
            out,
            "# TYPE redcloud_dispatch_pending gauge\nredcloud_dispatch_pending {}",
            self.pending()
        );
        for (name, kind) in [
            ("redcloud_dispatch_breaker_opens_total", "counter"),
            ("redcloud_dispatch_breaker_open", "gauge"),
            ("redcloud_dispatch_queued", "gauge"),
            ("redcloud_dispatch_in_flight", "gauge"),
        ] {
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for ch in ChannelKind::ALL {
                let i = ch.index();
                let v = match name {
                    "redcloud_dispatch_breaker_opens_total" => {
                        self.breaker_opens[i].load(Ordering::Relaxed) as i64
                    }
                    "redcloud_dispatch_breaker_open" => {
                        i64::from(self.breaker_open[i].load(Ordering::Relaxed))
                    }
                    "redcloud_dispatch_queued" => self.queued[i].load(Ordering::Relaxed),
                    _ => self.in_flight[i].load(Ordering::Relaxed),
                };
                let _ = writeln!(out, "{name}{{channel=\"{ch}\"}} {v}");
            }
        }
        let name = "redcloud_dispatch_send_seconds";
        let _ = writeln!(out, "# TYPE {name} histogram");
        for ch in ChannelKind::ALL {
            let base = ch.index() * (LAT_BUCKETS_MS.len() + 1);
            let mut cum = 0;
            for (j, le) in LAT_BUCKETS_MS.iter().enumerate() {
                cum += self.latency[base + j].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "{name}_bucket{{channel=\"{ch}\",le=\"{}\"}} {cum}",
                    *le as f64 / 1000.0
                );
            }
            cum += self.latency[base + LAT_BUCKETS_MS.len()].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{channel=\"{ch}\",le=\"+Inf\"}} {cum}");
            let sum = self.latency_sum_us[ch.index()].load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(out, "{name}_sum{{channel=\"{ch}\"}} {sum}");
            let _ = writeln!(out, "{name}_count{{channel=\"{ch}\"}} {cum}");
        }
    }
}
