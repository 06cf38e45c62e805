//! Stage one: the TOML file as serde reads it, with `deny_unknown_fields`
//! everywhere and the documented defaults for absent keys.
//!
//! Nothing here checks a rule beyond the types; that is [`crate::validate`]'s
//! job, which turns these structs into typed values and names the bad key.
//!
//! To add a section (`[daemon]`, `[sources.*]`, `[admin]`, `[channels.*]`): put
//! its raw struct and its validation in a module of its own, add one
//! `#[serde(default)]` field for it to [`RawConfig`], and call its validation
//! from [`crate::validate::validate`].

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::duration::DurationText;
use crate::secret::Secret;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    /// IANA timezone name.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    #[serde(default)]
    pub calendar: RawCalendar,
    #[serde(default)]
    pub org: RawOrg,
    #[serde(default)]
    pub dedup: RawDedup,
    /// Offices by id; a `BTreeMap` so that they come out sorted by id.
    #[serde(default)]
    pub offices: BTreeMap<String, RawOffice>,
    #[serde(default)]
    pub streak_policies: Vec<RawStreakPolicy>,
    #[serde(default)]
    pub sla_policies: Vec<RawSlaPolicy>,
    #[serde(default)]
    pub daemon: crate::daemon::RawDaemon,
    #[serde(default)]
    pub admin: crate::daemon::RawAdmin,
    #[serde(default)]
    pub sources: crate::sources::RawSources,
    /// `[dispatch]`, carried as is: the dispatcher (crate
    /// `redcloud-connectors`) validates it, the binary calls that validation
    /// at load time (`redcloud run`, `redcloud check-config`).
    #[serde(default)]
    pub dispatch: toml::Table,
}

fn default_timezone() -> String {
    "Asia/Shanghai".into()
}

/// `[calendar]`.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawCalendar {
    pub builtin: String,
    pub files: Vec<String>,
}

impl Default for RawCalendar {
    fn default() -> Self {
        RawCalendar {
            builtin: "cn-mainland".into(),
            files: Vec::new(),
        }
    }
}

/// `[org]`.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawOrg {
    pub levels: Vec<String>,
}

impl Default for RawOrg {
    fn default() -> Self {
        RawOrg {
            levels: ["city", "county", "town", "village", "group"]
                .map(String::from)
                .to_vec(),
        }
    }
}

/// `[dedup]`.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawDedup {
    pub retention: DurationText,
}

impl Default for RawDedup {
    fn default() -> Self {
        RawDedup {
            retention: DurationText::new("35d"),
        }
    }
}

/// `[offices.<id>]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOffice {
    pub name: Option<String>,
    #[serde(default)]
    pub contacts: RawContacts,
}

/// `contacts = { sms = "...", push = "...", group = "..." }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawContacts {
    pub sms: Option<Secret>,
    pub push: Option<Secret>,
    pub group: Option<Secret>,
}

/// `[[streak_policies]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStreakPolicy {
    pub name: String,
    pub activity: String,
    #[serde(default)]
    pub cohorts: Vec<String>,
    #[serde(default = "default_closes_at")]
    pub closes_at: String,
    pub steps: Vec<RawStreakStep>,
}

fn default_closes_at() -> String {
    "24:00".into()
}

/// One entry of a streak policy's `steps`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStreakStep {
    pub after: u32,
    #[serde(default)]
    pub every: u32,
    pub kind: String,
    pub notify: Vec<String>,
}

/// `[[sla_policies]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSlaPolicy {
    pub name: String,
    pub categories: Vec<String>,
    pub resolve_within: DurationText,
    #[serde(default)]
    pub warn_before: Vec<DurationText>,
    #[serde(default = "default_warn_notify")]
    pub warn_notify: Vec<String>,
    #[serde(default)]
    pub steps: Vec<RawSlaStep>,
}

fn default_warn_notify() -> Vec<String> {
    vec!["assignee_leader".into()]
}

/// One entry of an SLA policy's `steps`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSlaStep {
    pub after: DurationText,
    pub notify: Vec<String>,
}
