//! `redcloud calendar --from YYYY-MM-DD --to YYYY-MM-DD [--config FILE]`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args;
use redcloud_engine::time::Day;

/// Arguments of `redcloud calendar`.
#[derive(Args, Debug)]
pub struct CalendarArgs {
    /// First date (inclusive), YYYY-MM-DD.
    #[arg(long)]
    from: String,
    /// Last date (inclusive), YYYY-MM-DD.
    #[arg(long)]
    to: String,
    /// Config file (its `[calendar]` section); default: the embedded default.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print dates that no loaded calendar covers, using the Monday-to-Friday
    /// fallback, instead of refusing them.
    #[arg(long)]
    allow_fallback: bool,
}

/// Runs the command.
pub fn run(a: CalendarArgs) -> Result<ExitCode> {
    let from = Day::parse(&a.from).map_err(|e| anyhow::anyhow!("--from: {e}"))?;
    let to = Day::parse(&a.to).map_err(|e| anyhow::anyhow!("--to: {e}"))?;
    if to < from {
        bail!("--to {to} is before --from {from}");
    }
    let cfg = super::load_config(a.config.as_deref())?;
    let cal = &cfg.engine.calendar;
    if !a.allow_fallback {
        let mut d = from;
        while d <= to {
            if !cal.is_covered(d) {
                eprintln!(
                    "redcloud: {d} is in a year no loaded calendar covers ({}); the Monday-to-Friday \
                     fallback would be a guess. Load the year with [calendar] files, or pass \
                     --allow-fallback",
                    cal.name()
                );
                return Ok(ExitCode::from(1));
            }
            d = d.succ();
        }
    }
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::new(stdout.lock());
    let mut d = from;
    while d <= to {
        let kind = if cal.is_working(d) {
            "workday"
        } else {
            "restday"
        };
        writeln!(w, "{d} {kind}")?;
        d = d.succ();
    }
    w.flush()?;
    Ok(ExitCode::SUCCESS)
}
