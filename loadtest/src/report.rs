//! The report of a run: one serialisable [`Report`], written as text (for the
//! terminal), JSON (for comparing runs) and a self-contained HTML page with
//! inline SVG plots drawn here (throughput and latency percentiles over time,
//! the latency distribution, memory).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::gen::Counts;
use crate::measure::{Percentiles, Sample};

/// A bare-broker or decode-only baseline measured in the same run.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Baseline {
    /// `decode-only`, `amqp` (publish → consume) or `redis` (XADD → XREADGROUP).
    pub kind: String,
    /// Messages sent through it (the run's first events).
    pub messages: u64,
    /// Messages per second, end to end (first send to last receive).
    pub rate: f64,
    /// Send-to-receive latency, when measured.
    pub latency: Option<Percentiles>,
    /// Messages per second from the first send to the last publisher
    /// confirm / `XADD` reply (the producer side alone).
    #[serde(default)]
    pub publish_rate: Option<f64>,
}

/// Expected against received notifications.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Correctness {
    /// How `received` was counted: `direct` (in-process), `replay` (the
    /// `redcloud replay` binary over the written file), `file` (the written
    /// file read back through the engine), `provider` (arrivals at the
    /// harness's provider server), `metrics` (the daemon's counter) or `none`.
    pub method: String,
    /// Notifications the engine must produce.
    pub expected: u64,
    /// Notifications received.
    pub received: u64,
    /// Expected and not received.
    pub lost: u64,
    /// Received more often than expected (or not expected at all).
    pub duplicated: u64,
    /// Notifications by kind in the expected set: reminder, warning, escalation.
    pub expected_by_kind: [u64; 3],
    /// Lost and duplicated are both 0.
    pub ok: bool,
}

/// Memory readings.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Memory {
    /// Largest RSS of the harness, bytes.
    pub peak_rss: u64,
    /// Largest RSS of the daemon (`--daemon-pid`), bytes.
    pub daemon_peak_rss: Option<u64>,
    /// Heap of the engine's member state after the run (inprocess), bytes.
    pub engine_member_heap: Option<u64>,
}

/// A timed day close (the `scale` target).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct DayClose {
    /// The local date closed.
    pub day: String,
    /// Members tracked by the engine when it closed.
    pub members: u64,
    /// Seconds the close took (one `Engine::advance` call, or the `apply`
    /// of the first event past the close).
    pub seconds: f64,
    /// Notifications it emitted.
    pub notifications: u64,
    /// `explicit` (advance to the close after the last event) or `inline`
    /// (inside the apply of the first event past it).
    pub how: String,
}

/// Everything a run measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Report {
    /// Harness version.
    pub version: String,
    /// Case name.
    pub case: String,
    /// `inprocess`, `ndjson`, `http`, `amqp`, `redis` or `baseline`.
    pub target: String,
    /// Seed.
    pub seed: u64,
    /// Days generated.
    pub days: u32,
    /// Members in the case.
    pub members: u64,
    /// Orgs in the case.
    pub orgs: u64,
    /// Wall-clock start (RFC 3339, UTC).
    pub started: String,
    /// The command line.
    pub command: String,
    /// Machine: cores and memory.
    pub machine: String,
    /// What was generated.
    pub counts: Counts,
    /// Events sent to the target.
    pub events: u64,
    /// Bytes of NDJSON sent.
    pub bytes: u64,
    /// Offered rate (events/s), `None` for as fast as possible.
    pub offered_rate: Option<f64>,
    /// Achieved rate over the measured phase (events/s).
    pub achieved_rate: f64,
    /// Events per second of the system's busy time only (inprocess: the time
    /// spent decoding and applying, not waiting for the generator or the
    /// schedule).
    pub busy_rate: Option<f64>,
    /// Seconds of the measured phase.
    pub duration_s: f64,
    /// Per-event latency from the intended send time (corrected for
    /// coordinated omission); what completes an event depends on the target.
    pub latency: Percentiles,
    /// What `latency` measures for this target.
    pub latency_meaning: String,
    /// From an event's intended publish to the notification it causes
    /// arriving at the provider server.
    pub e2e_latency: Option<Percentiles>,
    /// Of those, the notifications that were the only one their event
    /// caused (ticket warnings and steps whose instant the event's time
    /// passed): one event's publish to one notification, no burst.
    #[serde(default)]
    pub e2e_alone: Option<Percentiles>,
    /// The others: one of a burst caused by one event (a day close emits a
    /// reminder for every member who missed the day, all at once).
    #[serde(default)]
    pub e2e_burst: Option<Percentiles>,
    /// End-to-end latency spectrum: `(percentile, µs)`.
    #[serde(default)]
    pub e2e_distribution: Vec<(f64, f64)>,
    /// The baseline measured in the same run.
    pub baseline: Option<Baseline>,
    /// `achieved_rate / baseline.rate` (or busy rate for inprocess).
    pub ratio: Option<f64>,
    /// Notifications: expected against received.
    pub correctness: Correctness,
    /// Memory.
    pub memory: Memory,
    /// Engine counters (inprocess and the expected pass).
    pub engine: serde_json::Value,
    /// Timeline.
    pub timeline: Vec<Sample>,
    /// Latency spectrum: `(percentile, µs)`.
    pub distribution: Vec<(f64, f64)>,
    /// Day closes timed (the `scale` target).
    #[serde(default)]
    pub day_closes: Vec<DayClose>,
    /// Notes and warnings.
    pub notes: Vec<String>,
}

fn mib(b: u64) -> f64 {
    b as f64 / 1048576.0
}

impl Report {
    /// The terminal summary.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "redcloud-loadtest {}: case `{}` ({} members, {} orgs, {} days, seed {}) -> {}",
            self.version, self.case, self.members, self.orgs, self.days, self.seed, self.target
        );
        let c = &self.counts;
        let _ = writeln!(
            s,
            "events     {} ({} orgs, {} members, {} logins, {} answers ({} late), {} tickets, {} ticket updates), {:.1} MiB",
            self.events, c.orgs, c.members, c.logins, c.answers, c.late_answers, c.tickets,
            c.ticket_updates, mib(self.bytes)
        );
        let offered = self
            .offered_rate
            .map_or("max".to_string(), |r| format!("{r:.0}/s"));
        let _ = writeln!(
            s,
            "throughput {:.0} events/s achieved (offered {offered}) in {:.2} s{}",
            self.achieved_rate,
            self.duration_s,
            self.busy_rate
                .map_or(String::new(), |b| format!("; {b:.0} events/s of busy time"))
        );
        let l = &self.latency;
        let _ = writeln!(
            s,
            "latency    p50 {:.1} µs  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1} µs ({})",
            l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us, self.latency_meaning
        );
        for (what, e) in [
            ("end-to-end", &self.e2e_latency),
            ("    alone  ", &self.e2e_alone),
            ("    burst  ", &self.e2e_burst),
        ] {
            if let Some(e) = e {
                let _ = writeln!(
                    s,
                    "{what} p50 {:.1} µs  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1} µs ({} notifications)",
                    e.p50_us, e.p90_us, e.p99_us, e.p999_us, e.max_us, e.count
                );
            }
        }
        if let Some(b) = &self.baseline {
            let _ = writeln!(
                s,
                "baseline   {}: {} messages at {:.0}/s{}{}",
                b.kind,
                b.messages,
                b.rate,
                b.publish_rate
                    .map_or(String::new(), |p| format!(" (publishing alone {p:.0}/s)")),
                b.latency.as_ref().map_or(String::new(), |l| format!(
                    ", latency p50 {:.1} µs p99 {:.1} µs",
                    l.p50_us, l.p99_us
                ))
            );
        }
        if let Some(r) = self.ratio {
            let _ = writeln!(s, "ratio      {:.3} of the baseline", r);
        }
        let k = &self.correctness;
        let _ = writeln!(
            s,
            "correct    {} expected, {} received, {} lost, {} duplicated ({}) [{}] (reminders {}, warnings {}, escalations {})",
            k.expected,
            k.received,
            k.lost,
            k.duplicated,
            k.method,
            if k.ok { "ok" } else { "FAIL" },
            k.expected_by_kind[0],
            k.expected_by_kind[1],
            k.expected_by_kind[2]
        );
        let m = &self.memory;
        let _ = writeln!(
            s,
            "memory     harness peak RSS {:.1} MiB{}{}",
            mib(m.peak_rss),
            m.daemon_peak_rss.map_or(String::new(), |d| format!(
                ", daemon peak RSS {:.1} MiB",
                mib(d)
            )),
            m.engine_member_heap.map_or(String::new(), |d| format!(
                ", engine member heap {:.1} MiB",
                mib(d)
            ))
        );
        for c in &self.day_closes {
            let _ = writeln!(
                s,
                "day close  {} ({}): {} members in {:.3} s, {} notifications",
                c.day, c.how, c.members, c.seconds, c.notifications
            );
        }
        for n in &self.notes {
            let _ = writeln!(s, "note       {n}");
        }
        s
    }

    /// Writes `report.json`, `report.html` and `report.txt` into `dir`.
    pub fn write_all(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(self)?)
            .context("cannot write report.json")?;
        std::fs::write(dir.join("report.html"), self.html()).context("cannot write report.html")?;
        std::fs::write(dir.join("report.txt"), self.text()).context("cannot write report.txt")?;
        Ok(())
    }

    /// The HTML page.
    pub fn html(&self) -> String {
        let t: Vec<f64> = self.timeline.iter().map(|s| s.t).collect();
        let pts = |f: &dyn Fn(&Sample) -> f64| -> Vec<(f64, f64)> {
            t.iter()
                .zip(&self.timeline)
                .map(|(&x, s)| (x, f(s)))
                .collect()
        };
        let throughput = chart(
            "Throughput",
            "seconds",
            "events/s",
            &[Series::new("events/s", "#c0392b", pts(&|s| s.rate))],
            Axis::Linear,
        );
        let latency = chart(
            "Latency over time (per interval, from intended send time)",
            "seconds",
            "µs",
            &[
                Series::new("p50", "#2980b9", pts(&|s| s.p50_us)),
                Series::new("p99", "#e67e22", pts(&|s| s.p99_us)),
                Series::new("p99.9", "#8e44ad", pts(&|s| s.p999_us)),
                Series::new("max", "#7f8c8d", pts(&|s| s.max_us)),
            ],
            Axis::Linear,
        );
        let dist: Vec<(f64, f64)> = self
            .distribution
            .iter()
            .map(|&(p, v)| (1.0 / (1.0 - (p / 100.0)).max(1e-7), v))
            .collect();
        let distribution = chart(
            "Latency distribution (percentile spectrum; x = 1/(1-percentile))",
            "percentile",
            "µs",
            &[Series::new("latency", "#c0392b", dist)],
            Axis::Percentile,
        );
        let mut mem = vec![Series::new("harness RSS", "#27ae60", pts(&|s| s.rss_mib))];
        if self.timeline.iter().any(|s| s.daemon_rss_mib.is_some()) {
            mem.push(Series::new(
                "daemon RSS",
                "#c0392b",
                pts(&|s| s.daemon_rss_mib.unwrap_or(0.0)),
            ));
        }
        let memory = chart("Memory", "seconds", "MiB", &mem, Axis::Linear);
        let esc = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        };
        let verdict = if self.correctness.ok {
            "<span class=ok>0 lost, 0 duplicated</span>".to_string()
        } else {
            format!(
                "<span class=fail>{} lost, {} duplicated</span>",
                self.correctness.lost, self.correctness.duplicated
            )
        };
        format!(
            "<!doctype html>\n<html lang=en><head><meta charset=utf-8><title>redcloud-loadtest: {case} → {target}</title>\
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:70em}}pre{{background:#f6f6f6;padding:1em;overflow:auto}}\
.ok{{color:#1e8449;font-weight:bold}}.fail{{color:#c0392b;font-weight:bold}}svg{{display:block;margin:1em 0}}</style></head><body>\
<h1>redcloud-loadtest: case <code>{case}</code> → <code>{target}</code></h1>\
<p>Correctness: {verdict}. Started {started}. Machine: {machine}.</p><pre>{text}</pre>\
<p><code>{command}</code></p>{throughput}{latency}{distribution}{memory}</body></html>\n",
            case = esc(&self.case),
            target = esc(&self.target),
            started = esc(&self.started),
            machine = esc(&self.machine),
            text = esc(&self.text()),
            command = esc(&self.command),
        )
    }
}

/// One line of a chart.
#[derive(Clone, Debug)]
struct Series {
    name: String,
    color: &'static str,
    points: Vec<(f64, f64)>,
}

impl Series {
    fn new(name: &str, color: &'static str, points: Vec<(f64, f64)>) -> Series {
        Series {
            name: name.to_string(),
            color,
            points,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Axis {
    Linear,
    /// x is `1/(1-q)`, drawn on a log scale and labelled as a percentile.
    Percentile,
}

fn nice(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 || a == 0.0 {
        format!("{v:.1}")
    } else {
        // Short runs have sub-second axes: two digits keep ticks distinct.
        format!("{v:.2}")
    }
}

/// An SVG line chart, 760×280, with axes, five y ticks and a legend.
fn chart(title: &str, xlabel: &str, ylabel: &str, series: &[Series], axis: Axis) -> String {
    let (w, h) = (760.0, 280.0);
    let (l, r, t, b) = (70.0, 20.0, 30.0, 40.0);
    let xs = |x: f64| {
        if axis == Axis::Percentile {
            x.max(1.0).log10()
        } else {
            x
        }
    };
    let all: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .collect();
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"11\">\
<text x=\"{l}\" y=\"18\" font-size=\"13\" font-weight=\"bold\">{title}</text>"
    );
    if all.is_empty() {
        let _ = write!(
            svg,
            "<text x=\"{l}\" y=\"{}\">no data</text></svg>",
            h / 2.0
        );
        return svg;
    }
    let (mut x0, mut x1) = (f64::INFINITY, f64::NEG_INFINITY);
    let mut y1 = 0.0f64;
    for &(x, y) in &all {
        x0 = x0.min(xs(x));
        x1 = x1.max(xs(x));
        if y.is_finite() {
            y1 = y1.max(y);
        }
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= 0.0 {
        y1 = 1.0;
    }
    y1 *= 1.05;
    let px = |x: f64| l + (xs(x) - x0) / (x1 - x0) * (w - l - r);
    let py = |y: f64| t + (1.0 - y / y1) * (h - t - b);
    let _ = write!(
        svg,
        "<line x1=\"{l}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#333\"/><line x1=\"{l}\" y1=\"{t}\" x2=\"{l}\" y2=\"{}\" stroke=\"#333\"/>",
        h - b,
        w - r,
        h - b,
        h - b
    );
    for i in 0..=4 {
        let v = y1 * f64::from(i) / 4.0;
        let y = py(v);
        let _ = write!(
            svg,
            "<line x1=\"{l}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            w - r,
            l - 5.0,
            y + 4.0,
            nice(v)
        );
    }
    for i in 0..=4 {
        let xv = x0 + (x1 - x0) * f64::from(i) / 4.0;
        let xpix = l + (xv - x0) / (x1 - x0) * (w - l - r);
        let label = if axis == Axis::Percentile {
            let q = 1.0 - 1.0 / 10f64.powf(xv);
            format!("{:.3}%", q * 100.0)
        } else {
            nice(xv)
        };
        let _ = write!(
            svg,
            "<text x=\"{xpix:.1}\" y=\"{}\" text-anchor=\"middle\">{label}</text>",
            h - b + 15.0
        );
    }
    let _ = write!(
        svg,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{xlabel}</text><text x=\"14\" y=\"{}\" transform=\"rotate(-90 14 {})\" text-anchor=\"middle\">{ylabel}</text>",
        l + (w - l - r) / 2.0,
        h - 5.0,
        t + (h - t - b) / 2.0,
        t + (h - t - b) / 2.0
    );
    for (i, s) in series.iter().enumerate() {
        let mut d = String::new();
        for (j, &(x, y)) in s.points.iter().enumerate() {
            let y = if y.is_finite() { y } else { 0.0 };
            let _ = write!(
                d,
                "{}{:.1},{:.1}",
                if j == 0 { "M" } else { " L" },
                px(x),
                py(y)
            );
        }
        let _ = write!(
            svg,
            "<path d=\"{d}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\"/>",
            s.color
        );
        if s.points.len() == 1 {
            let (x, y) = s.points[0];
            let _ = write!(
                svg,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{}\"/>",
                px(x),
                py(y),
                s.color
            );
        }
        let lx = w - r - 120.0;
        let ly = t + 12.0 + 14.0 * i as f64;
        let _ = write!(
            svg,
            "<rect x=\"{lx}\" y=\"{}\" width=\"10\" height=\"3\" fill=\"{}\"/><text x=\"{}\" y=\"{ly}\">{}</text>",
            ly - 4.0,
            s.color,
            lx + 14.0,
            s.name
        );
    }
    svg.push_str("</svg>");
    svg
}
