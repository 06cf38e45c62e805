//! `redcloud replay --events FILE [--config FILE] [--until RFC3339]
//! [--summary | --stats]`: the engine over an NDJSON file, in event time
//! (contract section 5).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use redcloud_engine::event::decode;
use redcloud_engine::notify::Notification;
use redcloud_engine::time::Ts;
use redcloud_engine::Engine;

/// Arguments of `redcloud replay`.
#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// NDJSON file of events, applied in the order given.
    #[arg(long)]
    events: PathBuf,
    /// Config file; default: the embedded default.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Close days and fire timers up to this instant (RFC 3339); events after
    /// it are not applied. Default: the largest applied `at`.
    #[arg(long)]
    until: Option<String>,
    /// Print counts per policy, step, kind and org instead of notifications.
    #[arg(long, conflicts_with = "stats")]
    summary: bool,
    /// Print the ticket stats per org and month instead of notifications.
    #[arg(long)]
    stats: bool,
}

/// One line of `--summary`: how many notifications a policy's step of a kind
/// produced for subjects of an org.
#[derive(serde::Serialize)]
struct SummaryRow<'a> {
    policy: &'a str,
    step: u8,
    kind: &'a str,
    org: Option<&'a str>,
    count: u64,
}

/// What the run prints.
enum Sink<W: Write> {
    Notifications(W),
    Summary(BTreeMap<(String, u8, &'static str, Option<String>), u64>),
    Stats,
}

impl<W: Write> Sink<W> {
    fn take(&mut self, engine: &Engine, batch: &mut Vec<Notification>) -> Result<()> {
        match self {
            Sink::Notifications(w) => {
                for n in batch.iter() {
                    serde_json::to_writer(&mut *w, &engine.render(n))?;
                    w.write_all(b"\n")?;
                }
            }
            Sink::Summary(counts) => {
                for n in batch.iter() {
                    let key = (
                        engine.policy_name(n.policy).to_string(),
                        n.step,
                        n.kind.as_str(),
                        engine.org_string(n).map(str::to_string),
                    );
                    *counts.entry(key).or_default() += 1;
                }
            }
            Sink::Stats => {}
        }
        batch.clear();
        Ok(())
    }
}

/// Runs the command.
pub fn run(a: ReplayArgs) -> Result<ExitCode> {
    let cfg = super::load_config(a.config.as_deref())?;
    let until = a
        .until
        .as_deref()
        .map(|u| Ts::parse_rfc3339(u).map_err(|e| anyhow::anyhow!("--until `{u}`: {e}")))
        .transpose()?;
    let file =
        File::open(&a.events).with_context(|| format!("cannot open {}", a.events.display()))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let levels = cfg.engine.levels.clone();
    let mut engine = Engine::new(std::sync::Arc::new(cfg.engine));

    let stdout = std::io::stdout();
    let mut sink = if a.summary {
        Sink::Summary(BTreeMap::new())
    } else if a.stats {
        Sink::Stats
    } else {
        Sink::Notifications(BufWriter::with_capacity(1 << 16, stdout.lock()))
    };
    let stderr = std::io::stderr();
    let mut err = BufWriter::new(stderr.lock());

    let mut line = Vec::with_capacity(1024);
    let mut out = Vec::new();
    let mut line_no = 0u64;
    let mut after_until = 0u64;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        line_no += 1;
        let mut bytes = line.as_slice();
        while let Some((&last, rest)) = bytes.split_last() {
            if last == b'\n' || last == b'\r' {
                bytes = rest;
            } else {
                break;
            }
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match decode(bytes, &levels) {
            Ok(ev) => {
                if until.is_some_and(|u| ev.at > u) {
                    after_until += 1;
                    continue;
                }
                engine.apply(&ev, &mut out);
                if !out.is_empty() {
                    sink.take(&engine, &mut out)?;
                }
            }
            Err(r) => match &r.id {
                Some(id) => writeln!(err, "line {line_no}: rejected event `{id}`: {}", r.reason)?,
                None => writeln!(err, "line {line_no}: rejected: {}", r.reason)?,
            },
        }
    }
    if let Some(end) = until.or(engine.watermark()) {
        engine.advance(end, &mut out);
        sink.take(&engine, &mut out)?;
    }
    if let Some(day) = engine.first_calendar_fallback() {
        writeln!(
            err,
            "warning: no loaded calendar covers {day} (and {} closes or deadlines in all): \
             the Monday-to-Friday fallback was used; load the year with [calendar] files",
            engine.counters().calendar_fallbacks
        )?;
    }
    if after_until > 0 {
        writeln!(err, "{after_until} events after --until were not applied")?;
    }
    err.flush()?;
    match sink {
        Sink::Notifications(mut w) => w.flush()?,
        Sink::Summary(counts) => {
            let mut w = BufWriter::new(stdout.lock());
            for ((policy, step, kind, org), count) in counts {
                let row = SummaryRow {
                    policy: &policy,
                    step,
                    kind,
                    org: org.as_deref(),
                    count,
                };
                serde_json::to_writer(&mut w, &row)?;
                w.write_all(b"\n")?;
            }
            w.flush()?;
        }
        Sink::Stats => {
            let mut w = BufWriter::new(stdout.lock());
            for row in engine.stats_rows() {
                serde_json::to_writer(&mut w, &row)?;
                w.write_all(b"\n")?;
            }
            w.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
