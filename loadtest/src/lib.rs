//! `redcloud-loadtest`: the bundled load-test harness.
//!
//! A case ([`case`]) describes a population as data; the [`gen`] module turns
//! it into a deterministic, streamed NDJSON event sequence; [`run`] drives a
//! target with it (the engine in process, an NDJSON file, or a running daemon
//! over HTTP, AMQP or Redis Streams, see [`net`]) under an open-model load,
//! measures latency and memory ([`measure`]), checks the notifications against
//! an in-process replay ([`apply`]), measures a baseline in the same run
//! ([`baseline`]) and writes the [`report`].
//!
//! Nothing here is used by the daemon: the harness only talks to it from
//! outside, like a producer and a notification provider would.

pub mod apply;
pub mod baseline;
pub mod case;
pub mod gen;
pub mod measure;
pub mod net;
pub mod provider;
pub mod publish;
pub mod report;
pub mod rng;
pub mod run;

/// The built-in cases, by name: `(name, TOML)`.
pub const CASES: [(&str, &str); 3] = [
    ("county", include_str!("../cases/county.toml")),
    ("province", include_str!("../cases/province.toml")),
    ("nation", include_str!("../cases/nation.toml")),
];

/// A case by built-in name or by path to a TOML file.
pub fn load_case(name_or_path: &str) -> anyhow::Result<case::Case> {
    let p = std::path::Path::new(name_or_path);
    if p.exists() {
        return case::Case::load(p);
    }
    match CASES.iter().find(|(n, _)| *n == name_or_path) {
        Some((n, text)) => case::Case::parse(text).map_err(|e| e.context(format!("case `{n}`"))),
        None => anyhow::bail!(
            "no case `{name_or_path}`: give a file or one of county, province, nation"
        ),
    }
}
