//! Measurement: latency histograms (hdrhistogram, nanoseconds), the timeline
//! of throughput, latency percentiles and memory sampled during a run, and
//! resident memory read from `/proc/<pid>/statm`.
//!
//! Latency is measured from each event's *intended* send time in the open
//! model (`start + i / rate`), not from when it was actually sent, so a stall
//! of the system under test counts against every event that should have gone
//! out during it (coordinated-omission correction, as wrk2 does).

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest recordable latency: one hour, in nanoseconds.
const MAX_NS: u64 = 3_600_000_000_000;

/// A new latency histogram (1 ns to 1 h, 3 significant digits).
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_NS, 3).expect("valid histogram bounds")
}

/// Resident set size of process `pid` (`None`: this process), in bytes.
pub fn rss_bytes(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/statm"),
        None => "/proc/self/statm".to_string(),
    };
    let s = std::fs::read_to_string(path).ok()?;
    let pages: u64 = s.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// One point of the timeline.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Sample {
    /// Seconds since the start of the measured phase.
    pub t: f64,
    /// Events completed per second in the interval.
    pub rate: f64,
    /// Latency percentiles of the interval, microseconds.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest.
    pub max_us: f64,
    /// Resident memory of this process, MiB.
    pub rss_mib: f64,
    /// Resident memory of the daemon (`--daemon-pid`), MiB.
    pub daemon_rss_mib: Option<f64>,
}

/// Latency percentiles, microseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    /// Values recorded.
    pub count: u64,
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// 99.99th percentile.
    pub p9999_us: f64,
    /// Largest.
    pub max_us: f64,
}

impl Percentiles {
    /// Summarises a nanosecond histogram.
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        let us = |v: u64| v as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            mean_us: h.mean() / 1000.0,
            p50_us: us(h.value_at_quantile(0.5)),
            p90_us: us(h.value_at_quantile(0.9)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            p9999_us: us(h.value_at_quantile(0.9999)),
            max_us: us(h.max()),
        }
    }
}

/// The percentile spectrum of a histogram: `(percentile, microseconds)` at
/// 0, 50, 75, 87.5 ... (halving the distance to 100 each step), then 100.
pub fn spectrum(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    if h.is_empty() {
        return out;
    }
    let mut rest = 1.0f64;
    for _ in 0..20 {
        let q = 1.0 - rest;
        out.push((q * 100.0, h.value_at_quantile(q) as f64 / 1000.0));
        rest /= 2.0;
        if rest * (h.len() as f64) < 1.0 {
            break;
        }
    }
    out.push((100.0, h.max() as f64 / 1000.0));
    out
}

/// Records latencies and the timeline of one measured phase.
#[derive(Debug)]
pub struct Recorder {
    /// Every latency of the run (ns).
    pub total: Histogram<u64>,
    interval: Histogram<u64>,
    /// Samples taken so far.
    pub timeline: Vec<Sample>,
    start: Instant,
    last: Instant,
    every: Duration,
    done: u64,
    done_at_last: u64,
    daemon_pid: Option<u32>,
    /// Largest RSS of this process seen, bytes.
    pub peak_rss: u64,
    /// Largest RSS of the daemon seen, bytes.
    pub daemon_peak_rss: u64,
}

impl Recorder {
    /// A recorder sampling every `every`, starting now.
    pub fn new(every: Duration, daemon_pid: Option<u32>) -> Recorder {
        let now = Instant::now();
        Recorder {
            total: histogram(),
            interval: histogram(),
            timeline: Vec::new(),
            start: now,
            last: now,
            every,
            done: 0,
            done_at_last: 0,
            daemon_pid,
            peak_rss: rss_bytes(None).unwrap_or(0),
            daemon_peak_rss: 0,
        }
    }

    /// Restarts the clock (when the measured phase begins).
    pub fn restart(&mut self) {
        self.start = Instant::now();
        self.last = self.start;
    }

    /// When the measured phase began.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Records one latency, in nanoseconds.
    #[inline]
    pub fn record(&mut self, ns: u64) {
        let ns = ns.max(1);
        self.total.saturating_record(ns);
        self.interval.saturating_record(ns);
    }

    /// Counts `n` completed events (throughput), without latency.
    #[inline]
    pub fn completed(&mut self, n: u64) {
        self.done += n;
    }

    /// Events completed.
    pub fn done(&self) -> u64 {
        self.done
    }

    /// Takes a sample if the interval has passed; true if it did.
    pub fn tick(&mut self, now: Instant) -> bool {
        if now.duration_since(self.last) < self.every {
            return false;
        }
        self.sample(now);
        true
    }

    /// Takes a sample now.
    pub fn sample(&mut self, now: Instant) {
        let dt = now.duration_since(self.last).as_secs_f64().max(1e-9);
        let rss = rss_bytes(None).unwrap_or(0);
        self.peak_rss = self.peak_rss.max(rss);
        let daemon = self.daemon_pid.and_then(|p| rss_bytes(Some(p)));
        if let Some(d) = daemon {
            self.daemon_peak_rss = self.daemon_peak_rss.max(d);
        }
        let p = Percentiles::of(&self.interval);
        self.timeline.push(Sample {
            t: now.duration_since(self.start).as_secs_f64(),
            rate: (self.done - self.done_at_last) as f64 / dt,
            p50_us: p.p50_us,
            p99_us: p.p99_us,
            p999_us: p.p999_us,
            max_us: p.max_us,
            rss_mib: rss as f64 / 1048576.0,
            daemon_rss_mib: daemon.map(|d| d as f64 / 1048576.0),
        });
        self.interval.reset();
        self.done_at_last = self.done;
        self.last = now;
    }

    /// Seconds since the start.
    pub fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
}

/// The open-model schedule: event `i` is due at `start + i / rate`.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    /// Start of the schedule.
    pub start: Instant,
    /// Events per second; `None`: as fast as possible (closed model).
    pub rate: Option<f64>,
}

impl Schedule {
    /// When event `i` is due (`start` for the closed model).
    #[inline]
    pub fn due(&self, i: u64) -> Instant {
        match self.rate {
            Some(r) => self.start + Duration::from_secs_f64(i as f64 / r),
            None => self.start,
        }
    }

    /// Waits (sleeping, then spinning for the last 100 µs) until `t`.
    pub fn wait_until(t: Instant) {
        loop {
            let now = Instant::now();
            if now >= t {
                return;
            }
            let left = t - now;
            if left > Duration::from_micros(300) {
                std::thread::sleep(left - Duration::from_micros(200));
            } else {
                std::hint::spin_loop();
            }
        }
    }
}

/// Peak resident set size of this process (`VmHWM` in `/proc/self/status`),
/// in bytes: the high-water mark the kernel keeps, so a short peak between
/// two samples is not missed.
pub fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = s
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb * 1024)
}
