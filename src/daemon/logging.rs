//! Structured logs for `redcloud run`: `tracing` to stderr, human-readable or
//! one JSON object per line (`[daemon] log_format`), filtered by `RUST_LOG` or
//! else `[daemon] log_level`. Stdout is left to the console sink.
//!
//! What must never be logged: event payloads, notification envelopes, phone
//! numbers, device tokens, names, the admin token, URLs with passwords.

use std::io::IsTerminal;

use redcloud_config::LogFormat;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Errors when the level is not a valid filter.
pub fn init(format: LogFormat, level: &str) -> Result<(), String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => {
            EnvFilter::try_new(&v).map_err(|e| format!("RUST_LOG: invalid filter: {e}"))?
        }
        _ => EnvFilter::try_new(level)
            .map_err(|e| format!("daemon.log_level: invalid filter {level:?}: {e}"))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Human => builder
            .with_target(false)
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
    result.map_err(|e| format!("cannot install the logger: {e}"))
}
