//! The subcommands that read files and print.

pub mod calendar;
pub mod replay;
pub mod state;

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

/// `redcloud check-config FILE`: the whole file, `[dispatch]` included
/// (validated by the dispatcher, which also builds its channels).
pub fn check_config(file: &Path) -> Result<ExitCode> {
    let checked = redcloud_config::load_file(file)
        .map_err(anyhow::Error::from)
        .and_then(|c| crate::daemon::sink::build_dispatcher(&c).map(drop));
    match checked {
        Ok(()) => {
            println!("ok: {}", file.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let e = format!("{e:#}");
            // Config errors already name the file.
            let shown = file.display().to_string();
            if e.starts_with(&shown) {
                eprintln!("{e}");
            } else {
                eprintln!("{shown}: {e}");
            }
            Ok(ExitCode::from(1))
        }
    }
}
