//! The subcommands that read files and print.

pub mod calendar;
pub mod replay;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use redcloud_config::Config;

/// Loads the config file, or the embedded default.
pub fn load_config(path: Option<&Path>) -> Result<Config> {
    Ok(match path {
        Some(p) => redcloud_config::load_file(p)?,
        None => redcloud_config::default_config(),
    })
}

/// `redcloud check-config FILE`.
pub fn check_config(file: &Path) -> Result<ExitCode> {
    match redcloud_config::load_file(file) {
        Ok(_) => {
            println!("ok: {}", file.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            Ok(ExitCode::from(1))
        }
    }
}
