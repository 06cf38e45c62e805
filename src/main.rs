//! `redcloud`: the command line and the wiring of the running daemon.
//!
//! Subcommands: `replay` (contract section 5), `calendar` (section 5),
//! `check-config`, `state`, and `run` (the daemon, `src/daemon/`). Everything that decides is in `redcloud-engine`; this crate
//! only reads files, parses arguments and prints.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod cli;
mod daemon;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The system allocator, counting large blocks for the huge-page keeper
/// (`daemon::forksnap`).
#[global_allocator]
static ALLOCATOR: daemon::forksnap::Allocator = daemon::forksnap::Allocator;

/// Red Cloud: stream processor and notification engine.
#[derive(Parser, Debug)]
#[command(name = "redcloud", version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Apply an NDJSON event file in event time and print the notifications
    /// (one JSON object per line, ordered by `at`).
    Replay(cli::replay::ReplayArgs),
    /// Print each date of a range as `YYYY-MM-DD workday|restday`.
    Calendar(cli::calendar::CalendarArgs),
    /// Run the daemon: sources in, notifications out, admin API and metrics
    /// on one HTTP listener (default 127.0.0.1:8686). SIGTERM / SIGINT drain.
    Run(daemon::RunArgs),
    /// Inspect or verify a daemon's state, read-only: a data directory
    /// (`inspect DIR`, `verify DIR`) or the state in Redis (`inspect --redis
    /// URL [--prefix P]`, `verify --redis URL [--prefix P]`).
    State(cli::state::StateArgs),
    /// Validate a config file: prints `ok: FILE` or the bad key and why.
    CheckConfig {
        /// The TOML file.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.command {
        Command::Replay(a) => cli::replay::run(a),
        Command::Calendar(a) => cli::calendar::run(a),
        Command::CheckConfig { file } => cli::check_config(&file),
        Command::Run(a) => daemon::run(a),
        Command::State(a) => cli::state::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("redcloud: {e:#}");
            ExitCode::from(2)
        }
    }
}
