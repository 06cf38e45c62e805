//! Driving a run: the generator thread, the expected pass, the `inprocess`
//! and `ndjson` targets and the decode-only baseline. The daemon targets live
//! in [`crate::net`]; both share [`Options`] and [`Expectation`].

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use redcloud_engine::event::decode;
use redcloud_engine::policy::EngineConfig;

use crate::apply::{compare_sorted, parse_id, Applier, Expected, LogMode};
use crate::case::Case;
use crate::gen::{Batch, Counts, Generator};
use crate::measure::{spectrum, Percentiles, Recorder, Schedule};
use crate::report::{Baseline, Correctness, Memory, Report};

/// Events per generated batch.
pub const BATCH_EVENTS: usize = 8192;

/// What every run needs.
#[derive(Clone, Debug)]
pub struct Options {
    /// The case.
    pub case: Arc<Case>,
    /// The engine config (the daemon must run with the same one).
    pub cfg: Arc<EngineConfig>,
    /// Days to generate (the case's own when `None`).
    pub days: Option<u32>,
    /// Seed (the case's own when `None`).
    pub seed: Option<u64>,
    /// Offered rate, events/s (`None`: as fast as possible).
    pub rate: Option<f64>,
    /// Largest number of answers the generator holds at once.
    pub max_buffer: usize,
    /// Timeline interval.
    pub sample: Duration,
    /// Show progress bars.
    pub progress: bool,
    /// The daemon's pid, for its memory.
    pub daemon_pid: Option<u32>,
    /// The command line, for the report.
    pub command: String,
}

impl Options {
    /// The generator for this run.
    pub fn generator(&self) -> Generator {
        Generator::new(
            self.case.clone(),
            self.cfg.clone(),
            self.days,
            self.seed,
            self.max_buffer,
        )
    }

    /// A progress bar over `len` events (hidden without `progress`).
    pub fn bar(&self, len: Option<u64>, what: &str) -> ProgressBar {
        if !self.progress {
            return ProgressBar::with_draw_target(len, ProgressDrawTarget::hidden());
        }
        let pb = match len {
            Some(n) => ProgressBar::new(n).with_style(
                ProgressStyle::with_template(
                    "{msg:>10} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} ({per_sec}, eta {eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{msg:>10} [{elapsed_precise}] {spinner} {human_pos} events ({per_sec})")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        };
        pb.set_message(what.to_string());
        pb
    }

    /// A report with the run's identity filled in.
    pub fn report(&self, target: &str) -> Report {
        let days = self.days.unwrap_or(self.case.raw.days);
        Report {
            version: env!("CARGO_PKG_VERSION").to_string(),
            case: self.case.raw.name.clone(),
            target: target.to_string(),
            seed: self.seed.unwrap_or(self.case.raw.seed),
            days,
            members: self.case.members(),
            orgs: self.case.orgs(),
            started: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            command: self.command.clone(),
            machine: machine(),
            offered_rate: self.rate,
            ..Report::default()
        }
    }
}

/// `N cores, M GiB` of this machine.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    format!("{cores} cores, {:.1} GiB", mem as f64 / 1048576.0)
}

/// The generator on its own thread, sending full batches; the consumer
/// returns emptied batches on `recycle` so buffers are reused.
#[derive(Debug)]
pub struct Feed {
    /// Full batches.
    pub rx: Receiver<Batch>,
    /// Return emptied batches here.
    pub recycle: SyncSender<Batch>,
    handle: JoinHandle<Counts>,
}

impl Feed {
    /// Starts generating; at most `limit` events when given.
    pub fn start(opts: &Options, limit: Option<u64>) -> Feed {
        let mut g = opts.generator();
        let (tx, rx) = sync_channel::<Batch>(16);
        let (recycle, back) = sync_channel::<Batch>(32);
        let handle = std::thread::spawn(move || {
            let mut left = limit.unwrap_or(u64::MAX);
            while left > 0 {
                let mut b = back.try_recv().unwrap_or_default();
                b.clear();
                let n = g.fill(&mut b, BATCH_EVENTS.min(left as usize));
                if n == 0 {
                    break;
                }
                left -= n as u64;
                if tx.send(b).is_err() {
                    break;
                }
            }
            g.counts()
        });
        Feed {
            rx,
            recycle,
            handle,
        }
    }

    /// Waits for the generator and returns what it generated.
    pub fn finish(self) -> Counts {
        drop(self.rx);
        self.handle.join().unwrap_or_default()
    }
}

/// The notifications the engine must produce for the run's events.
#[derive(Debug, Default)]
pub struct Expectation {
    /// Events generated.
    pub events: u64,
    /// Bytes of NDJSON.
    pub bytes: u64,
    /// What was generated.
    pub counts: Counts,
    /// Fingerprints, sorted (when asked for).
    pub fingerprints: Vec<u64>,
    /// Ids with their causing event, sorted by id (when asked for).
    pub ids: Vec<Expected>,
    /// Notifications.
    pub notifications: u64,
    /// By kind.
    pub by_kind: [u64; 3],
    /// Events the decoder rejected (must be 0: the generator writes valid events).
    pub rejected: u64,
    /// Engine counters.
    pub engine: serde_json::Value,
    /// Seconds the pass took (generation included).
    pub seconds: f64,
}

/// Engine counters as JSON.
pub fn counters_json(a: &Applier) -> serde_json::Value {
    let c = a.counters();
    serde_json::json!({
        "applied": c.applied, "late": c.late, "duplicates": c.duplicates, "ignored": c.ignored,
        "unresolved_recipients": c.unresolved_recipients, "notifications": c.notifications,
        "day_closes": c.day_closes,
    })
}

/// Replays the generated events in process, unpaced.
pub fn expected_pass(opts: &Options, mode: LogMode) -> Expectation {
    let t0 = Instant::now();
    let pb = opts.bar(None, "expected");
    let feed = Feed::start(opts, None);
    let mut a = Applier::new(opts.cfg.clone(), mode);
    a.reserve_members(opts.case.members() as usize);
    let mut bytes = 0u64;
    for b in feed.rx.iter() {
        for line in b.lines() {
            a.apply_line(line);
        }
        bytes += b.buf.len() as u64;
        pb.inc(b.len() as u64);
        let _ = feed.recycle.try_send(b);
    }
    let counts = feed.finish();
    a.finish();
    pb.finish_and_clear();
    let mut fingerprints = std::mem::take(&mut a.fingerprints);
    fingerprints.sort_unstable();
    let mut ids = std::mem::take(&mut a.ids);
    // Ids are logged in event order: a run of one event's notifications.
    let mut k = 0;
    while k < ids.len() {
        let mut e = k + 1;
        while e < ids.len() && ids[e].event == ids[k].event {
            e += 1;
        }
        if e - k == 1 {
            ids[k].alone = true;
        }
        k = e;
    }
    ids.sort_unstable();
    Expectation {
        events: a.lines,
        bytes,
        counts,
        fingerprints,
        ids,
        notifications: a.notifications,
        by_kind: a.by_kind,
        rejected: a.rejected,
        engine: counters_json(&a),
        seconds: t0.elapsed().as_secs_f64(),
    }
}

/// Decode-only baseline: the same events, decoded and not applied.
pub fn decode_baseline(opts: &Options, limit: Option<u64>) -> Baseline {
    let feed = Feed::start(opts, limit);
    let levels = opts.cfg.levels.clone();
    let mut busy = Duration::ZERO;
    let mut n = 0u64;
    let mut ok = 0u64;
    for b in feed.rx.iter() {
        let t = Instant::now();
        for line in b.lines() {
            if decode(line, &levels).is_ok() {
                ok += 1;
            }
        }
        busy += t.elapsed();
        n += b.len() as u64;
        let _ = feed.recycle.try_send(b);
    }
    feed.finish();
    let _ = ok;
    Baseline {
        kind: "decode-only".into(),
        messages: n,
        rate: n as f64 / busy.as_secs_f64().max(1e-9),
        latency: None,
        publish_rate: None,
    }
}

fn correctness_fp(method: &str, exp: &Expectation, received: &mut [u64]) -> Correctness {
    received.sort_unstable();
    let (lost, duplicated) = compare_sorted(&exp.fingerprints, received);
    Correctness {
        method: method.into(),
        expected: exp.notifications,
        received: received.len() as u64,
        lost,
        duplicated,
        expected_by_kind: exp.by_kind,
        ok: lost == 0 && duplicated == 0,
    }
}

/// Compares received contract ids with the expected ones.
pub fn correctness_ids(method: &str, exp: &Expectation, received: &mut [u128]) -> Correctness {
    received.sort_unstable();
    let want: Vec<u128> = exp.ids.iter().map(|e| e.id).collect();
    let (lost, duplicated) = compare_sorted(&want, received);
    Correctness {
        method: method.into(),
        expected: exp.notifications,
        received: received.len() as u64,
        lost,
        duplicated,
        expected_by_kind: exp.by_kind,
        ok: lost == 0 && duplicated == 0,
    }
}

fn fill_common(r: &mut Report, exp: &Expectation) {
    r.counts = exp.counts;
    r.events = exp.events;
    r.bytes = exp.bytes;
    r.engine = exp.engine.clone();
    if exp.rejected > 0 {
        r.notes.push(format!(
            "{} generated events were rejected by the decoder (a generator bug)",
            exp.rejected
        ));
    }
}

/// The `inprocess` target: the engine alone, under the open-model schedule.
pub fn run_inprocess(opts: &Options, baseline_limit: Option<u64>) -> Result<Report> {
    let exp = expected_pass(opts, LogMode::Fingerprints);
    let base = decode_baseline(opts, baseline_limit);
    let mut report = opts.report("inprocess");
    fill_common(&mut report, &exp);

    let pb = opts.bar(Some(exp.events), "inprocess");
    let feed = Feed::start(opts, None);
    let mut a = Applier::new(opts.cfg.clone(), LogMode::Fingerprints);
    a.reserve_members(opts.case.members() as usize);
    // Chunks short enough that no event waits more than ~10 µs for the
    // others of its chunk to become due.
    let chunk = opts
        .rate
        .map_or(64, |r| ((r * 10e-6) as usize).clamp(1, 64));
    let mut rec = Recorder::new(opts.sample, opts.daemon_pid);
    // Let the generator get ahead before the clock starts.
    std::thread::sleep(Duration::from_millis(50));
    rec.restart();
    let sched = Schedule {
        start: rec.start(),
        rate: opts.rate,
    };
    let mut i = 0u64;
    let mut busy = Duration::ZERO;
    let mut stalled = Duration::ZERO;
    loop {
        let w = Instant::now();
        let Ok(b) = feed.rx.recv() else { break };
        let waited = w.elapsed();
        if i > 0 {
            stalled += waited;
        }
        let n = b.len();
        let mut k = 0;
        while k < n {
            let end = (k + chunk).min(n);
            if opts.rate.is_some() {
                Schedule::wait_until(sched.due(i));
            }
            let t = Instant::now();
            for j in k..end {
                a.apply_line(b.line(j));
            }
            let done = Instant::now();
            busy += done - t;
            let m = (end - k) as u64;
            if opts.rate.is_some() {
                for j in 0..m {
                    rec.record(done.saturating_duration_since(sched.due(i + j)).as_nanos() as u64);
                }
            } else {
                let per = (done - t).as_nanos() as u64 / m.max(1);
                for _ in 0..m {
                    rec.record(per);
                }
            }
            rec.completed(m);
            i += m;
            k = end;
            rec.tick(done);
        }
        pb.inc(n as u64);
        let _ = feed.recycle.try_send(b);
    }
    let elapsed = rec.elapsed();
    feed.finish();
    a.finish();
    rec.sample(Instant::now());
    pb.finish_and_clear();

    report.achieved_rate = i as f64 / elapsed.max(1e-9);
    report.busy_rate = Some(i as f64 / busy.as_secs_f64().max(1e-9));
    report.duration_s = elapsed;
    report.latency = Percentiles::of(&rec.total);
    report.latency_meaning = if opts.rate.is_some() {
        "intended send time to applied, coordinated-omission corrected".into()
    } else {
        "decode + apply time per event (closed model, no --rate)".into()
    };
    report.distribution = spectrum(&rec.total);
    report.ratio = Some(report.busy_rate.unwrap_or(0.0) / base.rate.max(1e-9));
    report.baseline = Some(base);
    let mut fp = std::mem::take(&mut a.fingerprints);
    report.correctness = correctness_fp("direct", &exp, &mut fp);
    report.engine = counters_json(&a);
    report.memory = Memory {
        peak_rss: rec.peak_rss,
        daemon_peak_rss: None,
        engine_member_heap: Some(a.engine().member_heap_bytes() as u64),
    };
    if let Some(r) = opts.rate {
        if report.achieved_rate < r * 0.95 {
            report.notes.push(format!(
                "achieved {:.0}/s is below the offered {r:.0}/s: the engine or the generator could not keep up",
                report.achieved_rate
            ));
        }
    }
    if stalled.as_secs_f64() > elapsed * 0.05 {
        report.notes.push(format!(
            "waited {:.2} s for the generator: the achieved rate is bounded by generation; busy_rate is the engine's own",
            stalled.as_secs_f64()
        ));
    }
    report.timeline = rec.timeline;
    Ok(report)
}

/// Runs `redcloud replay --events FILE` and returns the ids it printed.
pub fn replay_ids(bin: &Path, file: &Path, config: Option<&Path>) -> Result<Vec<u128>> {
    let mut cmd = std::process::Command::new(bin);
    cmd.arg("replay").arg("--events").arg(file);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    let out = child.stdout.take().context("no stdout from replay")?;
    let mut ids = Vec::new();
    for line in BufReader::new(out).lines() {
        let line = line?;
        let v: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("replay printed a line that is not JSON: {line}"))?;
        let id = v.get("id").and_then(|i| i.as_str()).unwrap_or("");
        ids.push(parse_id(id).with_context(|| format!("replay printed a bad id `{id}`"))?);
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("{} replay exited with {status}", bin.display());
    }
    Ok(ids)
}

/// Reads an NDJSON file back through the engine and returns the ids of the
/// notifications (what `redcloud replay` would print).
pub fn file_ids(cfg: Arc<EngineConfig>, file: &Path) -> Result<Vec<u128>> {
    let f = File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let mut r = BufReader::with_capacity(1 << 20, f);
    let mut a = Applier::new(cfg, LogMode::Ids);
    let mut line = Vec::new();
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        let l = line.strip_suffix(b"\n").unwrap_or(&line);
        if !l.is_empty() {
            a.apply_line(l);
        }
    }
    a.finish();
    Ok(a.ids.iter().map(|e| e.id).collect())
}

/// The `ndjson` target: writes the events to `path` for `redcloud replay`,
/// then checks the file: with the `redcloud` binary when `replay_bin` is
/// given, else by reading it back through the engine.
pub fn run_ndjson(
    opts: &Options,
    path: &Path,
    replay_bin: Option<PathBuf>,
    config_file: Option<&Path>,
) -> Result<Report> {
    let exp = expected_pass(opts, LogMode::Ids);
    let mut report = opts.report("ndjson");
    fill_common(&mut report, &exp);
    let pb = opts.bar(Some(exp.events), "ndjson");
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let feed = Feed::start(opts, None);
    let mut rec = Recorder::new(opts.sample, opts.daemon_pid);
    let mut n = 0u64;
    for b in feed.rx.iter() {
        let t = Instant::now();
        w.write_all(&b.buf)?;
        let per = t.elapsed().as_nanos() as u64 / (b.len() as u64).max(1);
        for _ in 0..b.len() {
            rec.record(per);
        }
        rec.completed(b.len() as u64);
        n += b.len() as u64;
        pb.inc(b.len() as u64);
        rec.tick(Instant::now());
        let _ = feed.recycle.try_send(b);
    }
    w.flush()?;
    drop(w);
    let elapsed = rec.elapsed();
    feed.finish();
    rec.sample(Instant::now());
    pb.finish_and_clear();
    report.achieved_rate = n as f64 / elapsed.max(1e-9);
    report.duration_s = elapsed;
    report.latency = Percentiles::of(&rec.total);
    report.latency_meaning = "generate and write time per event".into();
    report.distribution = spectrum(&rec.total);
    report
        .notes
        .push(format!("events written to {}", path.display()));
    let (method, mut ids) = match replay_bin {
        Some(bin) => ("replay", replay_ids(&bin, path, config_file)?),
        None => ("file", file_ids(opts.cfg.clone(), path)?),
    };
    report.correctness = correctness_ids(method, &exp, &mut ids);
    report.memory = Memory {
        peak_rss: rec.peak_rss,
        ..Memory::default()
    };
    report.timeline = rec.timeline;
    Ok(report)
}

/// Applies slower than this are reported as inline day closes (`scale`).
const SLOW_APPLY: Duration = Duration::from_millis(50);

/// The `scale` target: the case's events through one engine in process, as
/// fast as possible, without the expected pass or a baseline (at `nation`
/// scale each pass takes minutes). Reports the peak resident memory of the
/// process (`VmHWM`), the engine's member heap, every `apply` slower than
/// 50 ms (the first event past a day close closes that day inside its
/// `apply`) and then times one explicit close: after the last event, the
/// engine is advanced to the close of the last generated day, which closes
/// that working day for every member it tracks.
///
/// With `apply = false` the events are generated and dropped: the harness's
/// own memory and speed, to subtract from a run with the engine.
pub fn run_scale(opts: &Options, apply: bool) -> Result<Report> {
    let mut report = opts.report(if apply {
        "scale"
    } else {
        "scale-generate-only"
    });
    let pb = opts.bar(None, "scale");
    let feed = Feed::start(opts, None);
    let mut a = Applier::new(opts.cfg.clone(), LogMode::Count);
    if apply {
        a.reserve_members(opts.case.members() as usize);
    }
    let mut rec = Recorder::new(opts.sample, None);
    rec.restart();
    let mut busy = Duration::ZERO;
    let mut n = 0u64;
    let mut bytes = 0u64;
    // Applies slower than SLOW_APPLY without a day close: (count, longest, at).
    let mut slow = (0u64, Duration::ZERO, 0u64);
    for b in feed.rx.iter() {
        let t0 = Instant::now();
        for line in b.lines().filter(|_| apply) {
            let t = Instant::now();
            let closes = a.counters().day_closes;
            let before = a.notifications;
            a.apply_line(line);
            let took = t.elapsed();
            if took > SLOW_APPLY {
                let closed = a.counters().day_closes - closes;
                if closed > 0 {
                    report.day_closes.push(crate::report::DayClose {
                        day: format!("{closed} close(s) at event {}", a.lines - 1),
                        members: a.members(),
                        seconds: took.as_secs_f64(),
                        notifications: a.notifications - before,
                        how: "inline".into(),
                    });
                } else {
                    slow.0 += 1;
                    if took > slow.1 {
                        slow = (slow.0, took, a.lines - 1);
                    }
                }
            }
        }
        let done = Instant::now();
        busy += done - t0;
        n += b.len() as u64;
        bytes += b.buf.len() as u64;
        rec.completed(b.len() as u64);
        rec.record((done - t0).as_nanos() as u64 / (b.len() as u64).max(1));
        rec.tick(done);
        pb.inc(b.len() as u64);
        let _ = feed.recycle.try_send(b);
    }
    let elapsed = rec.elapsed();
    report.counts = feed.finish();
    pb.finish_and_clear();
    let rss_before_close = crate::measure::peak_rss_bytes().unwrap_or(0);

    // The explicit close: the last generated day's close instant.
    let days = opts.days.unwrap_or(opts.case.raw.days);
    let last = redcloud_engine::time::Day(opts.case.start.0 + days as i32 - 1);
    let to = opts.cfg.zone.day_start(last.succ());
    let closes = a.counters().day_closes;
    let t = Instant::now();
    let emitted = a.advance_to(to);
    let took = t.elapsed();
    report.day_closes.push(crate::report::DayClose {
        day: format!(
            "{} ({} close(s))",
            last.date(),
            a.counters().day_closes - closes
        ),
        members: a.members(),
        seconds: took.as_secs_f64(),
        notifications: emitted,
        how: "explicit".into(),
    });
    rec.sample(Instant::now());

    report.events = n;
    report.bytes = bytes;
    report.achieved_rate = n as f64 / elapsed.max(1e-9);
    report.busy_rate = Some(n as f64 / busy.as_secs_f64().max(1e-9));
    report.duration_s = elapsed;
    report.latency = Percentiles::of(&rec.total);
    report.latency_meaning = "mean decode + apply time per event of each generated batch".into();
    report.correctness = Correctness {
        method: "none".into(),
        expected: a.notifications,
        ok: true,
        ..Correctness::default()
    };
    report.engine = counters_json(&a);
    report.memory = Memory {
        peak_rss: crate::measure::peak_rss_bytes().unwrap_or(rec.peak_rss),
        daemon_peak_rss: None,
        engine_member_heap: apply.then(|| a.engine().member_heap_bytes() as u64),
    };
    report.notes.push(format!(
        "peak RSS (VmHWM) {:.2} GiB before the explicit close, {:.2} GiB after; the generator's buffers (--max-buffer) are included",
        rss_before_close as f64 / (1u64 << 30) as f64,
        report.memory.peak_rss as f64 / (1u64 << 30) as f64
    ));
    if slow.0 > 0 {
        report.notes.push(format!(
            "{} applies took over {} ms without closing a day (longest {:.3} s, event #{})",
            slow.0,
            SLOW_APPLY.as_millis(),
            slow.1.as_secs_f64(),
            slow.2
        ));
    }
    report.notes.push(
        "scale run: no expected pass and no baseline (notifications are counted, not checked); correctness is checked by the inprocess target on smaller cases"
            .into(),
    );
    report.timeline = rec.timeline;
    Ok(report)
}

/// Up to `k` expected notifications missing from `received` (sorted), with
/// the index of the event that caused each: to find the cause of a loss
/// (notification ids and event indexes carry no personal data).
pub fn lost_examples(exp: &Expectation, received: &[u128], k: usize) -> Vec<Expected> {
    let mut out = Vec::new();
    let mut j = 0;
    for e in &exp.ids {
        while j < received.len() && received[j] < e.id {
            j += 1;
        }
        if j < received.len() && received[j] == e.id {
            j += 1;
        } else {
            out.push(*e);
            if out.len() == k {
                break;
            }
        }
    }
    out
}
