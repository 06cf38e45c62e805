//! `redcloud-loadtest`: the command line of the bundled load-test harness.
//!
//! `redcloud-loadtest run --case county --target inprocess` generates the
//! case's events, drives the target under an open-model load, checks the
//! notifications and writes the report (text on stdout; JSON and HTML in
//! `--out`). See docs/loadtest.md.

// A command-line tool: printing the report and progress is its job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use redcloud_loadtest::run::{self, Options};
use redcloud_loadtest::{load_case, net};

#[derive(Parser, Debug)]
#[command(
    name = "redcloud-loadtest",
    version,
    about = "The bundled load-test harness of Red Cloud"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Target {
    /// The engine alone, in this process.
    Inprocess,
    /// Write an NDJSON file for `redcloud replay`.
    Ndjson,
    /// A running daemon: NDJSON batches to `POST /v1/events`.
    Http,
    /// A running daemon: publish to its AMQP exchange with confirms.
    Amqp,
    /// A running daemon: XADD to its Redis stream.
    Redis,
    /// The engine alone at scale: one pass, peak RSS (VmHWM) and a timed
    /// close of the last day for every member; no expected pass, no baseline.
    Scale,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Broker {
    /// RabbitMQ: publish with confirms -> consume.
    Amqp,
    /// Redis Streams: XADD -> XREADGROUP.
    Redis,
}

#[derive(clap::Args, Debug)]
struct Common {
    /// A built-in case (county, province, nation) or a case file.
    #[arg(long, default_value = "county")]
    case: String,
    /// Days to generate (default: the case's).
    #[arg(long)]
    days: Option<u32>,
    /// Seed (default: the case's).
    #[arg(long)]
    seed: Option<u64>,
    /// Engine config file (default: the embedded default; the daemon must use the same).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Largest number of answers the generator holds at once (8 bytes each).
    #[arg(long, default_value_t = 16_000_000)]
    max_buffer: usize,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs a case against a target and writes the report.
    Run(Box<RunArgs>),
    /// Measures the bare broker alone with the case's first events.
    Baseline(BaselineArgs),
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    common: Common,
    /// Where the events go.
    #[arg(long, value_enum)]
    target: Target,
    /// Offered rate in events/s (open model); default: as fast as possible.
    #[arg(long)]
    rate: Option<f64>,
    /// Report folder (report.txt, report.json, report.html).
    #[arg(long, default_value = "loadtest-report")]
    out: PathBuf,
    /// Timeline sample interval, milliseconds.
    #[arg(long, default_value_t = 500)]
    sample_ms: u64,
    /// inprocess: events in the decode-only baseline (default: all).
    #[arg(long)]
    baseline_events: Option<u64>,
    /// ndjson: the file to write.
    #[arg(long, default_value = "loadtest-events.ndjson")]
    file: PathBuf,
    /// ndjson: check the file with this `redcloud` binary's `replay` (default:
    /// the `redcloud` next to this binary, if any; else read it back in process).
    #[arg(long)]
    replay_bin: Option<PathBuf>,
    /// scale: generate the events and drop them (the harness's own memory
    /// and speed, to subtract from a run with the engine).
    #[arg(long)]
    generate_only: bool,
    #[command(flatten)]
    daemon: net::DaemonArgs,
}

#[derive(clap::Args, Debug)]
struct BaselineArgs {
    #[command(flatten)]
    common: Common,
    /// The broker.
    #[arg(long, value_enum)]
    broker: Broker,
    /// Messages (the case's first events).
    #[arg(long, default_value_t = 100_000)]
    messages: u64,
    /// AMQP broker URI.
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    amqp_uri: String,
    /// Redis URL.
    #[arg(long, default_value = "redis://127.0.0.1:6379/")]
    redis_url: String,
    /// Report folder.
    #[arg(long, default_value = "loadtest-report")]
    out: PathBuf,
    /// Messages per work item (as the daemon targets' `--batch`).
    #[arg(long, default_value_t = 200)]
    batch: usize,
    /// amqp: unconfirmed messages allowed (as the `amqp` target's `--confirm-window`).
    #[arg(long, default_value_t = redcloud_loadtest::publish::DEFAULT_WINDOW)]
    confirm_window: usize,
}

fn options(
    c: &Common,
    rate: Option<f64>,
    sample_ms: u64,
    daemon_pid: Option<u32>,
) -> Result<Options> {
    let case = load_case(&c.case)?;
    let cfg = match &c.config {
        Some(p) => {
            redcloud_config::load_file(p).with_context(|| format!("config {}", p.display()))?
        }
        None => redcloud_config::default_config(),
    };
    for l in &case.level_names {
        if !cfg.engine.levels.contains(l) {
            bail!(
                "case `{}` uses level `{l}`, which the config does not have (levels: {})",
                case.raw.name,
                cfg.engine.levels.join(", ")
            );
        }
    }
    if let Some(r) = rate {
        if !(r.is_finite() && r > 0.0) {
            bail!("--rate must be a positive number of events per second");
        }
    }
    Ok(Options {
        case: Arc::new(case),
        cfg: Arc::new(cfg.engine),
        days: c.days,
        seed: c.seed,
        rate,
        max_buffer: c.max_buffer,
        sample: Duration::from_millis(sample_ms.max(10)),
        progress: !c.quiet,
        daemon_pid,
        command: std::env::args().collect::<Vec<_>>().join(" "),
    })
}

fn default_replay_bin() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.join("redcloud");
    p.exists().then_some(p)
}

fn main() -> ExitCode {
    match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("redcloud-loadtest: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn real_main() -> Result<ExitCode> {
    let cli = Cli::parse();
    let report = match cli.command {
        Command::Run(a) => {
            let opts = options(&a.common, a.rate, a.sample_ms, a.daemon.daemon_pid)?;
            let r = match a.target {
                Target::Inprocess => run::run_inprocess(&opts, a.baseline_events)?,
                Target::Ndjson => run::run_ndjson(
                    &opts,
                    &a.file,
                    a.replay_bin.or_else(default_replay_bin),
                    a.common.config.as_deref(),
                )?,
                Target::Http => net::run_daemon(&opts, net::Via::Http, &a.daemon)?,
                Target::Amqp => net::run_daemon(&opts, net::Via::Amqp, &a.daemon)?,
                Target::Redis => net::run_daemon(&opts, net::Via::Redis, &a.daemon)?,
                Target::Scale => run::run_scale(&opts, !a.generate_only)?,
            };
            r.write_all(&a.out)?;
            r
        }
        Command::Baseline(a) => {
            let opts = options(&a.common, None, 500, None)?;
            let r = net::run_baseline(
                &opts,
                match a.broker {
                    Broker::Amqp => net::Via::Amqp,
                    Broker::Redis => net::Via::Redis,
                },
                a.messages,
                &a.amqp_uri,
                &a.redis_url,
                a.batch,
                a.confirm_window,
            )?;
            r.write_all(&a.out)?;
            r
        }
    };
    print!("{}", report.text());
    Ok(if report.correctness.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
