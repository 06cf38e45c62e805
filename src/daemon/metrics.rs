//! The daemon's counters and their Prometheus text rendering (`/metrics`).
//!
//! Every value is an atomic written by one owner (a shard, the router or a
//! source) and read by `/metrics`; nothing here takes a lock. Labels are
//! names the operator configured (sources, policies) or small fixed sets
//! (reason classes, kinds, shard numbers): never an id, a name or a payload.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use redcloud_connectors::source::SourceStats;

/// Classes of rejection reasons (the label `reason` of
/// `redcloud_events_rejected_total`): the decoder's free text is mapped to one
/// of these so that labels stay few.
pub const REASON_CLASSES: [&str; 9] = [
    "too_large",
    "not_utf8",
    "invalid_json",
    "missing_field",
    "wrong_type",
    "unknown_type",
    "bad_timestamp",
    "unknown_level",
    "other",
];

/// The class of a decoder rejection reason, as an index in [`REASON_CLASSES`].
pub fn reason_class(reason: &str) -> usize {
    let r = reason;
    if r.starts_with("event is larger") {
        0
    } else if r.starts_with("not utf-8") {
        1
    } else if r.starts_with("not valid json") || r.starts_with("event must be a json object") {
        2
    } else if r.starts_with("missing field") {
        3
    } else if r.contains("`at`") {
        6
    } else if r.starts_with("unknown `type`") {
        5
    } else if r.starts_with("unknown `level`") {
        7
    } else if r.starts_with("field ") || r.starts_with("duplicate field") {
        4
    } else {
        8
    }
}

/// Upper bounds (seconds) of the apply latency histogram's buckets.
pub const LATENCY_BUCKETS: [f64; 14] = [
    1e-6, 2.5e-6, 5e-6, 10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 5e-3, 25e-3, 100e-3, 1.0,
];

/// Upper bounds (seconds) of the snapshot hold histogram's buckets.
pub const HOLD_BUCKETS: [f64; 12] = [
    1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1.0, 2.5, 5.0,
];

/// A fixed-bucket histogram of durations, written by one thread.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// One more than `bounds`: the last is `+Inf`.
    buckets: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// An empty histogram with these bucket upper bounds (seconds).
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    /// Records one duration.
    pub fn record(&self, nanos: u64) {
        let secs = nanos as f64 * 1e-9;
        let i = self
            .bounds
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(self.bounds.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_nanos.fetch_add(nanos, Relaxed);
    }
}

/// Per-source counts kept by the pipeline (the sources keep their own
/// received / acked counts in [`SourceStats`]).
#[derive(Debug, Default)]
pub struct PipelineCounts {
    /// Applied (late ones included).
    pub applied: AtomicU64,
    /// Applied late.
    pub late: AtomicU64,
    /// Ignored duplicates.
    pub duplicates: AtomicU64,
}

/// One configured source, as the daemon sees it.
#[derive(Debug)]
pub struct SourceEntry {
    /// Its name (label `source`).
    pub name: Arc<str>,
    /// Its own stats.
    pub stats: Arc<SourceStats>,
    /// Set when a source that ends on its own (file) has finished cleanly.
    pub finished: std::sync::atomic::AtomicBool,
    /// Rejected by the router's decoder, by reason class.
    pub rejected: [AtomicU64; REASON_CLASSES.len()],
}

impl SourceEntry {
    /// A new entry.
    pub fn new(name: Arc<str>, stats: Arc<SourceStats>) -> SourceEntry {
        SourceEntry {
            name,
            stats,
            finished: Default::default(),
            rejected: Default::default(),
        }
    }

    /// Ready for `/readyz`: connected, or finished cleanly.
    pub fn ready(&self) -> bool {
        self.stats.is_connected() || self.finished.load(Relaxed)
    }
}

/// What one shard publishes. Written only by its thread.
#[derive(Debug)]
pub struct ShardMetrics {
    /// By source index.
    pub by_source: Vec<PipelineCounts>,
    /// Notifications by `policy index * 3 + kind index`.
    pub notifications: Vec<AtomicU64>,
    /// Apply latency.
    pub latency: Histogram,
    /// Engine counter `unresolved_recipients`.
    pub unresolved: AtomicU64,
    /// Engine counter `day_closes`.
    pub day_closes: AtomicU64,
    /// Engine watermark, microseconds (`-1` = none yet).
    pub watermark: AtomicI64,
    /// Pending ticket timers.
    pub pending_timers: AtomicU64,
    /// Snapshots taken.
    pub snapshots: AtomicU64,
    /// Time the last snapshot held the shard (serializing), nanoseconds.
    pub snapshot_stall_last: AtomicU64,
    /// The longest such hold, nanoseconds.
    pub snapshot_stall_max: AtomicU64,
    /// Every hold.
    pub snapshot_hold: Histogram,
    /// Syncs of the shard's write-ahead log.
    pub log_syncs: AtomicU64,
}

impl ShardMetrics {
    /// Counters for `sources` sources and `policies` policies.
    pub fn new(sources: usize, policies: usize) -> ShardMetrics {
        ShardMetrics {
            by_source: (0..sources).map(|_| PipelineCounts::default()).collect(),
            notifications: (0..policies * 3).map(|_| AtomicU64::new(0)).collect(),
            latency: Histogram::new(&LATENCY_BUCKETS),
            unresolved: AtomicU64::new(0),
            day_closes: AtomicU64::new(0),
            watermark: AtomicI64::new(-1),
            pending_timers: AtomicU64::new(0),
            snapshots: AtomicU64::new(0),
            snapshot_stall_last: AtomicU64::new(0),
            snapshot_stall_max: AtomicU64::new(0),
            snapshot_hold: Histogram::new(&HOLD_BUCKETS),
            log_syncs: AtomicU64::new(0),
        }
    }

    /// Counts a snapshot that held the shard for `nanos`.
    pub fn snapshot_held(&self, nanos: u64) {
        self.snapshots.fetch_add(1, Relaxed);
        self.snapshot_stall_last.store(nanos, Relaxed);
        self.snapshot_stall_max.fetch_max(nanos, Relaxed);
        self.snapshot_hold.record(nanos);
    }
}

/// The index of a kind in [`ShardMetrics::notifications`].
pub fn kind_index(kind: &str) -> usize {
    match kind {
        "reminder" => 0,
        "warning" => 1,
        _ => 2,
    }
}

const KINDS: [&str; 3] = ["reminder", "warning", "escalation"];

/// Queue depths, read when rendering.
#[derive(Debug, Default)]
pub struct Depths {
    /// Deliveries waiting for the router.
    pub pipeline: usize,
    /// Messages waiting per shard.
    pub shards: Vec<usize>,
    /// Notifications waiting for the sink.
    pub sink: usize,
}

/// Everything `/metrics` shows.
#[derive(Debug)]
pub struct Registry {
    /// Configured sources, in index order.
    pub sources: Vec<Arc<SourceEntry>>,
    /// Per shard.
    pub shards: Vec<Arc<ShardMetrics>>,
    /// Policy names, streak policies first (the order of the engine config).
    pub policies: Vec<String>,
    /// 1 while today's date is not covered by the loaded calendar data.
    pub calendar_fallback: AtomicU64,
    /// Days until the first uncovered day (-1 = more than 30 days away).
    pub calendar_days_left: AtomicI64,
    /// The durable outbox, once it is open (`durability` other than `none`).
    pub outbox: std::sync::OnceLock<Arc<super::outbox::OutboxShared>>,
}

fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

impl Registry {
    /// One histogram summed over the shards.
    fn histogram(
        &self,
        o: &mut String,
        name: &str,
        help: &str,
        pick: impl Fn(&ShardMetrics) -> &Histogram,
    ) {
        head(o, name, "histogram", help);
        let (mut cum, mut sum) = (0u64, 0u64);
        let Some(first) = self.shards.first() else {
            return;
        };
        let bounds = pick(first).bounds;
        for s in &self.shards {
            sum += pick(s).sum_nanos.load(Relaxed);
        }
        for i in 0..=bounds.len() {
            cum += self
                .shards
                .iter()
                .map(|s| pick(s).buckets.get(i).map_or(0, |b| b.load(Relaxed)))
                .sum::<u64>();
            let le = bounds
                .get(i)
                .map_or_else(|| "+Inf".to_string(), |b| format!("{b}"));
            let _ = writeln!(o, "{name}_bucket{{le=\"{le}\"}} {cum}");
        }
        let _ = writeln!(o, "{name}_sum {}", sum as f64 * 1e-9);
        let _ = writeln!(o, "{name}_count {cum}");
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self, depths: &Depths) -> String {
        let mut o = String::with_capacity(8 * 1024);
        let snaps: Vec<_> = self
            .sources
            .iter()
            .map(|s| (esc(&s.name), s.stats.snapshot()))
            .collect();
        macro_rules! per_source {
            ($name:expr, $kind:expr, $help:expr, $f:expr) => {{
                head(&mut o, $name, $kind, $help);
                for (n, s) in &snaps {
                    let v: u64 = $f(s);
                    let _ = writeln!(o, "{}{{source=\"{n}\"}} {v}", $name);
                }
            }};
        }
        per_source!(
            "redcloud_source_connected",
            "gauge",
            "1 while the source is connected (http: while served)",
            |s: &redcloud_connectors::source::StatsSnapshot| u64::from(s.connected)
        );
        per_source!(
            "redcloud_source_received_total",
            "counter",
            "events the source handed to the pipeline",
            |s: &redcloud_connectors::source::StatsSnapshot| s.received
        );
        per_source!(
            "redcloud_source_acked_total",
            "counter",
            "events acknowledged after apply, duplicates included",
            |s: &redcloud_connectors::source::StatsSnapshot| s.acked
        );
        per_source!(
            "redcloud_source_rejected_total",
            "counter",
            "events rejected and dead-lettered (http: bad lines answered 400)",
            |s: &redcloud_connectors::source::StatsSnapshot| s.rejected
        );
        per_source!(
            "redcloud_source_reconnects_total",
            "counter",
            "connections re-established after a failure",
            |s: &redcloud_connectors::source::StatsSnapshot| s.reconnects
        );
        per_source!(
            "redcloud_source_stale_acks_total",
            "counter",
            "amqp acks dropped because their connection was replaced",
            |s: &redcloud_connectors::source::StatsSnapshot| s.stale_acks
        );
        head(
            &mut o,
            "redcloud_source_lag",
            "gauge",
            "events waiting in the broker (consumer lag), where the source knows it",
        );
        for (n, s) in &snaps {
            if let Some(l) = s.lag {
                let _ = writeln!(o, "redcloud_source_lag{{source=\"{n}\"}} {l}");
            }
        }

        head(
            &mut o,
            "redcloud_events_rejected_total",
            "counter",
            "events the pipeline's decoder rejected, by reason class",
        );
        for (src, (n, _)) in self.sources.iter().zip(&snaps) {
            for (i, class) in REASON_CLASSES.iter().enumerate() {
                let v = src.rejected[i].load(Relaxed);
                if v > 0 {
                    let _ = writeln!(
                        o,
                        "redcloud_events_rejected_total{{source=\"{n}\",reason=\"{class}\"}} {v}"
                    );
                }
            }
        }
        let sum_src = |f: &dyn Fn(&PipelineCounts) -> u64, i: usize| -> u64 {
            self.shards.iter().map(|s| f(&s.by_source[i])).sum()
        };
        for (name, help, f) in [
            (
                "redcloud_events_applied_total",
                "events applied by the engine, late ones included",
                (&|c: &PipelineCounts| c.applied.load(Relaxed)) as &dyn Fn(&PipelineCounts) -> u64,
            ),
            (
                "redcloud_events_late_total",
                "events applied after the watermark had passed their instant",
                &|c: &PipelineCounts| c.late.load(Relaxed),
            ),
            (
                "redcloud_events_duplicates_total",
                "events ignored because their id was already applied",
                &|c: &PipelineCounts| c.duplicates.load(Relaxed),
            ),
        ] {
            head(&mut o, name, "counter", help);
            for (i, (n, _)) in snaps.iter().enumerate() {
                let _ = writeln!(o, "{name}{{source=\"{n}\"}} {}", sum_src(f, i));
            }
        }

        head(
            &mut o,
            "redcloud_pipeline_queue_depth",
            "gauge",
            "deliveries waiting between the sources and the router",
        );
        let _ = writeln!(o, "redcloud_pipeline_queue_depth {}", depths.pipeline);
        head(
            &mut o,
            "redcloud_shard_queue_depth",
            "gauge",
            "messages waiting in front of each shard",
        );
        for (i, d) in depths.shards.iter().enumerate() {
            let _ = writeln!(o, "redcloud_shard_queue_depth{{shard=\"{i}\"}} {d}");
        }
        head(
            &mut o,
            "redcloud_sink_queue_depth",
            "gauge",
            "notifications waiting for the sink",
        );
        let _ = writeln!(o, "redcloud_sink_queue_depth {}", depths.sink);
        head(
            &mut o,
            "redcloud_shard_watermark_seconds",
            "gauge",
            "each shard's engine watermark (unix seconds)",
        );
        for (i, s) in self.shards.iter().enumerate() {
            let w = s.watermark.load(Relaxed);
            if w >= 0 {
                let _ = writeln!(
                    o,
                    "redcloud_shard_watermark_seconds{{shard=\"{i}\"}} {}",
                    w as f64 / 1e6
                );
            }
        }
        head(
            &mut o,
            "redcloud_shard_pending_timers",
            "gauge",
            "ticket timers waiting in each shard",
        );
        for (i, s) in self.shards.iter().enumerate() {
            let _ = writeln!(
                o,
                "redcloud_shard_pending_timers{{shard=\"{i}\"}} {}",
                s.pending_timers.load(Relaxed)
            );
        }

        head(
            &mut o,
            "redcloud_notifications_total",
            "counter",
            "notification intents emitted, by policy and kind",
        );
        for (p, name) in self.policies.iter().enumerate() {
            for (k, kind) in KINDS.iter().enumerate() {
                let v: u64 = self
                    .shards
                    .iter()
                    .map(|s| s.notifications[p * 3 + k].load(Relaxed))
                    .sum();
                if v > 0 {
                    let _ = writeln!(
                        o,
                        "redcloud_notifications_total{{policy=\"{}\",kind=\"{kind}\"}} {v}",
                        esc(name)
                    );
                }
            }
        }
        // A counter summed over the shards.
        let summed = |o: &mut String, name: &str, help: &str, f: &dyn Fn(&ShardMetrics) -> u64| {
            head(o, name, "counter", help);
            let total: u64 = self.shards.iter().map(|s| f(s)).sum();
            let _ = writeln!(o, "{name} {total}");
        };
        summed(
            &mut o,
            "redcloud_unresolved_recipients_total",
            "notification roles that resolved to nobody (contract 2.5)",
            &|s| s.unresolved.load(Relaxed),
        );
        summed(
            &mut o,
            "redcloud_day_closes_total",
            "working days closed, per policy and shard, summed",
            &|s| s.day_closes.load(Relaxed),
        );

        self.histogram(
            &mut o,
            "redcloud_apply_latency_seconds",
            "time the engine took to apply one event",
            |s| &s.latency,
        );

        summed(
            &mut o,
            "redcloud_log_syncs_total",
            "syncs of the shards' write-ahead logs (each covers one or more batches of events: group commit, [daemon] commit_gap), summed over shards",
            &|s| s.log_syncs.load(Relaxed),
        );
        if let Some(ob) = self.outbox.get() {
            head(
                &mut o,
                "redcloud_outbox_syncs_total",
                "counter",
                "syncs of the outbox's log (each covers the notifications and delivered marks that came meanwhile: group commit, [daemon] commit_gap)",
            );
            let _ = writeln!(o, "redcloud_outbox_syncs_total {}", ob.syncs());
        }
        summed(
            &mut o,
            "redcloud_snapshots_total",
            "shard snapshots taken, summed over shards",
            &|s| s.snapshots.load(Relaxed),
        );
        head(
            &mut o,
            "redcloud_snapshot_stall_seconds",
            "gauge",
            "time a snapshot held its shard (the fork, or serializing in thread mode; writing is in the background): the last one and the longest, over shards",
        );
        let last = self
            .shards
            .iter()
            .map(|s| s.snapshot_stall_last.load(Relaxed))
            .max()
            .unwrap_or(0);
        let max = self
            .shards
            .iter()
            .map(|s| s.snapshot_stall_max.load(Relaxed))
            .max()
            .unwrap_or(0);
        let _ = writeln!(
            o,
            "redcloud_snapshot_stall_seconds{{stat=\"last\"}} {}",
            last as f64 * 1e-9
        );
        let _ = writeln!(
            o,
            "redcloud_snapshot_stall_seconds{{stat=\"max\"}} {}",
            max as f64 * 1e-9
        );
        self.histogram(
            &mut o,
            "redcloud_snapshot_hold_seconds",
            "every time a snapshot held its shard (as redcloud_snapshot_stall_seconds), over shards",
            |s| &s.snapshot_hold,
        );

        head(
            &mut o,
            "redcloud_calendar_fallback",
            "gauge",
            "1 while today is outside the loaded calendar data (monday to friday fallback in use)",
        );
        let _ = writeln!(
            o,
            "redcloud_calendar_fallback {}",
            self.calendar_fallback.load(Relaxed)
        );
        head(
            &mut o,
            "redcloud_calendar_days_until_fallback",
            "gauge",
            "days until the loaded calendar data runs out, when 30 or fewer (else absent)",
        );
        let d = self.calendar_days_left.load(Relaxed);
        if d >= 0 {
            let _ = writeln!(o, "redcloud_calendar_days_until_fallback {d}");
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_fall_into_classes() {
        let c = |r: &str| REASON_CLASSES[reason_class(r)];
        assert_eq!(
            c("not valid json: expected value at line 1"),
            "invalid_json"
        );
        assert_eq!(c("missing field `member`"), "missing_field");
        assert_eq!(c("unknown `type` `x.y`"), "unknown_type");
        assert_eq!(
            c("field `at` must be an rfc 3339 timestamp with offset: x"),
            "bad_timestamp"
        );
        assert_eq!(
            c("field `member` must be a string, got number"),
            "wrong_type"
        );
        assert_eq!(c("event is larger than 64 KiB (70000 bytes)"), "too_large");
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let r = Registry {
            sources: vec![],
            shards: vec![Arc::new(ShardMetrics::new(0, 1))],
            policies: vec!["quiz".into()],
            calendar_fallback: AtomicU64::new(0),
            calendar_days_left: AtomicI64::new(-1),
            outbox: Default::default(),
        };
        r.shards[0].latency.record(3_000);
        r.shards[0].latency.record(2_000_000_000);
        let text = r.render(&Depths::default());
        assert!(text.contains("redcloud_apply_latency_seconds_bucket{le=\"0.000005\"} 1"));
        assert!(text.contains("redcloud_apply_latency_seconds_bucket{le=\"+Inf\"} 2"));
        assert!(text.contains("redcloud_apply_latency_seconds_count 2"));
    }

    #[test]
    fn snapshot_holds_are_counted_in_gauges_and_a_histogram() {
        let r = Registry {
            sources: vec![],
            shards: vec![
                Arc::new(ShardMetrics::new(0, 1)),
                Arc::new(ShardMetrics::new(0, 1)),
            ],
            policies: vec!["quiz".into()],
            calendar_fallback: AtomicU64::new(0),
            calendar_days_left: AtomicI64::new(-1),
            outbox: Default::default(),
        };
        r.shards[0].snapshot_held(4_000_000);
        r.shards[1].snapshot_held(30_000_000);
        r.shards[0].snapshot_held(2_000_000);
        r.shards[0].log_syncs.store(5, Relaxed);
        r.shards[1].log_syncs.store(7, Relaxed);
        let text = r.render(&Depths::default());
        assert!(text.contains("redcloud_log_syncs_total 12"), "{text}");
        // The outbox's syncs only where there is an outbox.
        assert!(!text.contains("redcloud_outbox_syncs_total"), "{text}");
        r.outbox
            .set(crate::daemon::outbox::OutboxShared::new(2))
            .unwrap();
        let text = r.render(&Depths::default());
        assert!(text.contains("\nredcloud_outbox_syncs_total 0\n"), "{text}");
        assert!(text.contains("redcloud_snapshots_total 3"), "{text}");
        assert!(text.contains("redcloud_snapshot_stall_seconds{stat=\"max\"} 0.03"));
        assert!(text.contains("redcloud_snapshot_hold_seconds_bucket{le=\"0.0025\"} 1"));
        assert!(text.contains("redcloud_snapshot_hold_seconds_bucket{le=\"0.01\"} 2"));
        assert!(text.contains("redcloud_snapshot_hold_seconds_bucket{le=\"0.05\"} 3"));
        assert!(text.contains("redcloud_snapshot_hold_seconds_count 3"));
    }
}
