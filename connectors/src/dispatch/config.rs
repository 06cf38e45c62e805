//! `[dispatch]`: routes, channels, limits, quiet hours, digests, retries and
//! templates, as a raw serde layer (`deny_unknown_fields`) validated into
//! [`DispatchConfig`]. Every error names the full key path, e.g.
//! `dispatch.channels.sms.per_recipient[1].limit: must be at least 1`.
//!
//! docs/dispatch.md is the reference of every key and its default.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono_tz::Tz;
use serde::Deserialize;

use super::template::{Template, TemplateOverride, Templates};
use crate::channel::ChannelKind;

/// A bad `[dispatch]` key: the full path and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct ConfigError {
    /// Key path from the top of the config file (`dispatch.channels.sms.url`).
    pub path: String,
    /// What is wrong, lowercase.
    pub reason: String,
}

impl ConfigError {
    fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// The three kinds of notification, which are also the priority lanes
/// (escalations first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NotifyKind {
    /// To someone above.
    Escalation = 0,
    /// Before a deadline.
    Warning = 1,
    /// To the member.
    Reminder = 2,
}

impl NotifyKind {
    /// Every kind, in lane (priority) order.
    pub const ALL: [NotifyKind; 3] = [
        NotifyKind::Escalation,
        NotifyKind::Warning,
        NotifyKind::Reminder,
    ];

    /// Parses `reminder`, `warning` or `escalation`.
    pub fn parse(s: &str) -> Option<NotifyKind> {
        match s {
            "escalation" => Some(NotifyKind::Escalation),
            "warning" => Some(NotifyKind::Warning),
            "reminder" => Some(NotifyKind::Reminder),
            _ => None,
        }
    }

    /// The name.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyKind::Escalation => "escalation",
            NotifyKind::Warning => "warning",
            NotifyKind::Reminder => "reminder",
        }
    }

    /// Lane index: 0 is served first.
    pub fn lane(self) -> usize {
        self as usize
    }
}

/// At most `limit` sends in any window of `period`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Sends allowed in the window (>= 1).
    pub limit: u32,
    /// Window length (> 0).
    pub period: Duration,
}

/// Quiet hours in local time: `start` inclusive to `end` exclusive, wrapping
/// midnight when `start > end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuietHours {
    /// Minutes after local midnight when quiet starts.
    pub start_min: u32,
    /// Minutes after local midnight when quiet ends.
    pub end_min: u32,
}

/// The circuit breaker of one channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive retriable failures that open it.
    pub failures: u32,
    /// How long it stays open before a half-open probe (doubles after each
    /// failed probe, up to 16 times).
    pub open_for: Duration,
}

/// One channel's validated settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelConfig {
    /// Which channel.
    pub kind: ChannelKind,
    /// Provider endpoint (HTTP channels; AMQP: the broker URI). Never logged.
    pub url: Option<String>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// SMS `SignName`.
    pub sign_name: Option<String>,
    /// SMS default `TemplateCode`.
    pub template_code: Option<String>,
    /// AMQP exchange.
    pub exchange: String,
    /// Provider-wide rate (sends per `period`, spread evenly: GCRA).
    pub rate: Option<Window>,
    /// Sends the global rate lets through back to back.
    pub burst: u32,
    /// Per-recipient exact sliding windows, all enforced together.
    pub per_recipient: Vec<Window>,
    /// Quiet hours, if any.
    pub quiet_hours: Option<QuietHours>,
    /// Sends in flight at once.
    pub concurrency: usize,
    /// Circuit breaker.
    pub breaker: BreakerConfig,
}

/// Digest settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DigestConfig {
    /// How long the first notification of a (recipient, policy, kind, step)
    /// waits for others to merge with; zero disables digests.
    pub window: Duration,
    /// Most notifications in one digest (a full digest leaves at once).
    pub max_items: usize,
}

/// Route table: policy -> kind -> channels in order of preference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Routes {
    table: BTreeMap<String, RouteEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
struct RouteEntry {
    by_kind: [Option<Vec<ChannelKind>>; 3],
    default: Option<Vec<ChannelKind>>,
}

impl Routes {
    /// The channels for `policy` and `kind`: `routes.<policy>.<kind>`, then
    /// `routes.<policy>.default`, then `routes.default.<kind>`, then
    /// `routes.default.default`, then `["console"]`.
    pub fn lookup(&self, policy: &str, kind: NotifyKind) -> &[ChannelKind] {
        const CONSOLE: &[ChannelKind] = &[ChannelKind::Console];
        for name in [policy, "default"] {
            if let Some(e) = self.table.get(name) {
                if let Some(v) = &e.by_kind[kind.lane()] {
                    return v;
                }
                if let Some(v) = &e.default {
                    return v;
                }
            }
        }
        CONSOLE
    }
}

/// The validated `[dispatch]` table.
#[derive(Clone, Debug)]
pub struct DispatchConfig {
    /// Timezone of quiet hours (default `Asia/Shanghai`).
    pub timezone: Tz,
    /// Attempts on one channel before falling back or dead-lettering.
    pub max_attempts: u32,
    /// First retry delay (doubles, with jitter).
    pub retry_initial: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Notifications held (queued, deferred, in digests) before the dispatcher
    /// stops reading its input (backpressure to the engine).
    pub max_pending: usize,
    /// Dead letters kept for the admin view (all are counted).
    pub dead_letters_kept: usize,
    /// How long shutdown waits for sends in flight.
    pub drain_timeout: Duration,
    /// Digests.
    pub digest: DigestConfig,
    /// Routes.
    pub routes: Routes,
    /// Configured channels by [`ChannelKind::index`]; the console is always
    /// configured.
    pub channels: [Option<ChannelConfig>; 5],
    /// Templates.
    pub templates: Templates,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig::from_toml(&toml::Table::new()).expect("the empty [dispatch] is valid")
    }
}

// ---------------------------------------------------------------- raw layer

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDispatch {
    timezone: Option<String>,
    max_attempts: Option<u32>,
    retry_initial: Option<String>,
    retry_max: Option<String>,
    max_pending: Option<usize>,
    dead_letters_kept: Option<usize>,
    drain_timeout: Option<String>,
    digest: Option<RawDigest>,
    routes: Option<BTreeMap<String, BTreeMap<String, Vec<String>>>>,
    channels: Option<BTreeMap<String, RawChannel>>,
    templates: Option<BTreeMap<String, BTreeMap<String, RawTemplate>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDigest {
    window: Option<String>,
    max_items: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    limit: i64,
    period: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBreaker {
    failures: Option<i64>,
    open_for: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawChannel {
    url: Option<String>,
    timeout: Option<String>,
    sign_name: Option<String>,
    template_code: Option<String>,
    exchange: Option<String>,
    rate: Option<RawWindow>,
    burst: Option<i64>,
    per_recipient: Option<Vec<RawWindow>>,
    quiet_hours: Option<String>,
    concurrency: Option<i64>,
    circuit_breaker: Option<RawBreaker>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTemplate {
    title: Option<String>,
    body: Option<String>,
    item: Option<String>,
    digest: Option<String>,
    sms_template: Option<String>,
}

// ---------------------------------------------------------------- validation

/// Parses a duration: `"500ms"`, `"30s"`, `"5m"`, `"1h"`, `"1d"`, `"0"`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if let Some(days) = t.strip_suffix('d') {
        let n: u64 = days
            .parse()
            .map_err(|_| format!("duration `{t}` does not start with a number"))?;
        return Ok(Duration::from_secs(n.saturating_mul(86_400)));
    }
    crate::config::parse_duration(t).map_err(|e| e.replace("ms, s, m or h", "ms, s, m, h or d"))
}

fn duration(path: &str, v: Option<&String>, default: Duration) -> Result<Duration, ConfigError> {
    match v {
        None => Ok(default),
        Some(s) => parse_duration(s).map_err(|e| ConfigError::new(path, e)),
    }
}

fn positive_duration(
    path: &str,
    v: Option<&String>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let d = duration(path, v, default)?;
    if d.is_zero() {
        return Err(ConfigError::new(path, "must be positive"));
    }
    Ok(d)
}

fn at_least_one(path: &str, v: i64) -> Result<u32, ConfigError> {
    if v < 1 {
        return Err(ConfigError::new(path, "must be at least 1"));
    }
    u32::try_from(v).map_err(|_| ConfigError::new(path, "is too large"))
}

/// Parses `"22:00-08:00"`; `"none"` means no quiet hours.
pub fn parse_quiet_hours(s: &str) -> Result<Option<QuietHours>, String> {
    let t = s.trim();
    if t == "none" || t.is_empty() {
        return Ok(None);
    }
    let (a, b) = t
        .split_once('-')
        .ok_or_else(|| format!("`{t}` is not of the form \"22:00-08:00\" (or \"none\")"))?;
    let hm = |x: &str| -> Result<u32, String> {
        let (h, m) = x
            .trim()
            .split_once(':')
            .ok_or_else(|| format!("`{x}` is not a time of the form HH:MM"))?;
        let h: u32 = h.parse().map_err(|_| format!("`{x}` has a bad hour"))?;
        let m: u32 = m.parse().map_err(|_| format!("`{x}` has a bad minute"))?;
        if h > 24 || m > 59 || (h == 24 && m != 0) {
            return Err(format!("`{x}` is not a time of day"));
        }
        Ok(h * 60 + m)
    };
    let (start_min, end_min) = (hm(a)? % 1440, hm(b)? % 1440);
    if start_min == end_min {
        return Err("start and end are equal (use \"none\" for no quiet hours)".into());
    }
    Ok(Some(QuietHours { start_min, end_min }))
}

fn window(path: &str, w: &RawWindow) -> Result<Window, ConfigError> {
    Ok(Window {
        limit: at_least_one(&format!("{path}.limit"), w.limit)?,
        period: positive_duration(&format!("{path}.period"), Some(&w.period), Duration::ZERO)?,
    })
}

fn defaults_for(kind: ChannelKind) -> ChannelConfig {
    let quiet = Some(QuietHours {
        start_min: 22 * 60,
        end_min: 8 * 60,
    });
    let mut c = ChannelConfig {
        kind,
        url: None,
        timeout: Duration::from_secs(5),
        sign_name: None,
        template_code: None,
        exchange: "redcloud.notifications".into(),
        rate: None,
        burst: 1,
        per_recipient: Vec::new(),
        quiet_hours: None,
        concurrency: 16,
        breaker: BreakerConfig {
            failures: 5,
            open_for: Duration::from_secs(30),
        },
    };
    match kind {
        ChannelKind::Sms => {
            c.rate = Some(Window {
                limit: 50,
                period: Duration::from_secs(1),
            });
            c.per_recipient = vec![
                Window {
                    limit: 1,
                    period: Duration::from_secs(60),
                },
                Window {
                    limit: 5,
                    period: Duration::from_secs(3600),
                },
                Window {
                    limit: 10,
                    period: Duration::from_secs(86_400),
                },
            ];
            c.quiet_hours = quiet;
        }
        ChannelKind::Push => {
            c.rate = Some(Window {
                limit: 600,
                period: Duration::from_secs(60),
            });
            c.quiet_hours = quiet;
        }
        ChannelKind::Group => {
            c.per_recipient = vec![Window {
                limit: 20,
                period: Duration::from_secs(60),
            }];
        }
        ChannelKind::Amqp => {}
        ChannelKind::Console => {
            c.concurrency = 1;
        }
    }
    c
}

fn validate_channel(name: &str, raw: RawChannel) -> Result<ChannelConfig, ConfigError> {
    let path = format!("dispatch.channels.{name}");
    let kind = ChannelKind::parse(name).ok_or_else(|| {
        ConfigError::new(
            &path,
            "unknown channel (known: sms, push, group, amqp, console)",
        )
    })?;
    let mut c = defaults_for(kind);
    let only = |key: &str, set: bool, allowed: &[ChannelKind]| -> Result<(), ConfigError> {
        if set && !allowed.contains(&kind) {
            return Err(ConfigError::new(
                format!("{path}.{key}"),
                format!("is not a key of the {name} channel"),
            ));
        }
        Ok(())
    };
    use ChannelKind::*;
    only("url", raw.url.is_some(), &[Sms, Push, Group, Amqp])?;
    only("sign_name", raw.sign_name.is_some(), &[Sms])?;
    only("template_code", raw.template_code.is_some(), &[Sms])?;
    only("exchange", raw.exchange.is_some(), &[Amqp])?;
    if let Some(url) = raw.url {
        let ok = match kind {
            Amqp => url.starts_with("amqp://") || url.starts_with("amqps://"),
            _ => url.starts_with("http://") || url.starts_with("https://"),
        };
        if !ok {
            let want = if kind == Amqp {
                "amqp:// or amqps://"
            } else {
                "http:// or https://"
            };
            return Err(ConfigError::new(
                format!("{path}.url"),
                format!("must start with {want}"),
            ));
        }
        if kind != Amqp {
            // Caught here, not as a failed send retried until it is dead.
            if let Err(e) = crate::channel::http::parse_uri(&url.replace("{key}", "key")) {
                return Err(ConfigError::new(
                    format!("{path}.url"),
                    format!("is not a valid URL ({e})"),
                ));
            }
        }
        c.url = Some(url);
    } else if kind != Console {
        return Err(ConfigError::new(
            format!("{path}.url"),
            "is required for this channel",
        ));
    }
    if kind == Group {
        let url = c.url.as_deref().unwrap_or_default();
        if !url.contains("{key}") {
            return Err(ConfigError::new(
                format!("{path}.url"),
                "must contain `{key}` where the robot key goes",
            ));
        }
    }
    if kind == Sms {
        for (key, v) in [
            ("sign_name", &raw.sign_name),
            ("template_code", &raw.template_code),
        ] {
            match v {
                Some(s) if !s.trim().is_empty() => {}
                _ => {
                    return Err(ConfigError::new(
                        format!("{path}.{key}"),
                        "is required for sms and must not be empty",
                    ))
                }
            }
        }
        c.sign_name = raw.sign_name;
        c.template_code = raw.template_code;
    }
    if let Some(x) = raw.exchange {
        if x.trim().is_empty() {
            return Err(ConfigError::new(
                format!("{path}.exchange"),
                "must not be empty",
            ));
        }
        c.exchange = x;
    }
    c.timeout = positive_duration(&format!("{path}.timeout"), raw.timeout.as_ref(), c.timeout)?;
    if let Some(r) = &raw.rate {
        c.rate = Some(window(&format!("{path}.rate"), r)?);
    }
    if let Some(b) = raw.burst {
        c.burst = at_least_one(&format!("{path}.burst"), b)?;
    }
    if let Some(ws) = &raw.per_recipient {
        c.per_recipient = ws
            .iter()
            .enumerate()
            .map(|(i, w)| window(&format!("{path}.per_recipient[{i}]"), w))
            .collect::<Result<_, _>>()?;
        if c.per_recipient.iter().any(|w| w.limit > 10_000) {
            return Err(ConfigError::new(
                format!("{path}.per_recipient"),
                "a per-recipient limit may be at most 10000 (it is an exact log)",
            ));
        }
    }
    if let Some(q) = &raw.quiet_hours {
        c.quiet_hours =
            parse_quiet_hours(q).map_err(|e| ConfigError::new(format!("{path}.quiet_hours"), e))?;
    }
    if let Some(n) = raw.concurrency {
        c.concurrency = at_least_one(&format!("{path}.concurrency"), n)? as usize;
    }
    if let Some(b) = &raw.circuit_breaker {
        let bp = format!("{path}.circuit_breaker");
        if let Some(f) = b.failures {
            c.breaker.failures = at_least_one(&format!("{bp}.failures"), f)?;
        }
        c.breaker.open_for = positive_duration(
            &format!("{bp}.open_for"),
            b.open_for.as_ref(),
            c.breaker.open_for,
        )?;
    }
    Ok(c)
}

impl DispatchConfig {
    /// Validates the raw `[dispatch]` table (the daemon hands it over as is).
    pub fn from_toml(table: &toml::Table) -> Result<DispatchConfig, ConfigError> {
        let raw: RawDispatch = serde_path_to_error::deserialize(toml::Value::Table(table.clone()))
            .map_err(|e| {
                let p = e.path().to_string();
                let path = if p == "." || p.is_empty() {
                    "dispatch".to_string()
                } else {
                    format!("dispatch.{p}")
                };
                let msg = e.into_inner().to_string();
                ConfigError::new(path, msg.lines().next().unwrap_or_default().trim())
            })?;
        let timezone = match &raw.timezone {
            None => chrono_tz::Asia::Shanghai,
            Some(s) => s.parse::<Tz>().map_err(|_| {
                ConfigError::new("dispatch.timezone", format!("unknown timezone `{s}`"))
            })?,
        };
        let max_attempts = match raw.max_attempts {
            None => 8,
            Some(n) => at_least_one("dispatch.max_attempts", i64::from(n))?,
        };
        let retry_initial = positive_duration(
            "dispatch.retry_initial",
            raw.retry_initial.as_ref(),
            Duration::from_secs(1),
        )?;
        let retry_max = positive_duration(
            "dispatch.retry_max",
            raw.retry_max.as_ref(),
            Duration::from_secs(300),
        )?;
        if retry_max < retry_initial {
            return Err(ConfigError::new(
                "dispatch.retry_max",
                "must be at least `retry_initial`",
            ));
        }
        let max_pending = raw.max_pending.unwrap_or(1_000_000);
        if max_pending == 0 {
            return Err(ConfigError::new(
                "dispatch.max_pending",
                "must be at least 1",
            ));
        }
        let drain_timeout = duration(
            "dispatch.drain_timeout",
            raw.drain_timeout.as_ref(),
            Duration::from_secs(10),
        )?;
        let rd = raw.digest.unwrap_or_default();
        let digest = DigestConfig {
            window: duration(
                "dispatch.digest.window",
                rd.window.as_ref(),
                Duration::from_secs(60),
            )?,
            max_items: match rd.max_items {
                None => 50,
                Some(0) => {
                    return Err(ConfigError::new(
                        "dispatch.digest.max_items",
                        "must be at least 1",
                    ))
                }
                Some(n) => n,
            },
        };

        let mut channels: [Option<ChannelConfig>; 5] = Default::default();
        channels[ChannelKind::Console.index()] = Some(defaults_for(ChannelKind::Console));
        for (name, rc) in raw.channels.unwrap_or_default() {
            let c = validate_channel(&name, rc)?;
            let i = c.kind.index();
            channels[i] = Some(c);
        }

        let mut table = BTreeMap::new();
        for (policy, kinds) in raw.routes.unwrap_or_default() {
            let mut entry = RouteEntry::default();
            for (kind, list) in kinds {
                let path = format!("dispatch.routes.{policy}.{kind}");
                if list.is_empty() {
                    return Err(ConfigError::new(path, "must name at least one channel"));
                }
                let mut chans = Vec::with_capacity(list.len());
                for (i, name) in list.iter().enumerate() {
                    let p = format!("{path}[{i}]");
                    let ch = ChannelKind::parse(name).ok_or_else(|| {
                        ConfigError::new(
                            &p,
                            format!(
                                "unknown channel \"{name}\" (known: sms, push, group, amqp, console)"
                            ),
                        )
                    })?;
                    if channels[ch.index()].is_none() {
                        return Err(ConfigError::new(
                            &p,
                            format!(
                                "channel \"{name}\" is not configured (add [dispatch.channels.{name}])"
                            ),
                        ));
                    }
                    if chans.contains(&ch) {
                        return Err(ConfigError::new(&p, format!("\"{name}\" is listed twice")));
                    }
                    chans.push(ch);
                }
                if kind == "default" {
                    entry.default = Some(chans);
                } else {
                    let k = NotifyKind::parse(&kind).ok_or_else(|| {
                        ConfigError::new(
                            &path,
                            "unknown kind (known: reminder, warning, escalation, default)",
                        )
                    })?;
                    entry.by_kind[k.lane()] = Some(chans);
                }
            }
            table.insert(policy, entry);
        }

        let mut templates = Templates::builtin();
        for (policy, kinds) in raw.templates.unwrap_or_default() {
            for (kind, t) in kinds {
                let path = format!("dispatch.templates.{policy}.{kind}");
                let k = NotifyKind::parse(&kind).ok_or_else(|| {
                    ConfigError::new(&path, "unknown kind (known: reminder, warning, escalation)")
                })?;
                let parse = |key: &str, v: &Option<String>, digest: bool| {
                    v.as_deref()
                        .map(|s| Template::parse(s, digest))
                        .transpose()
                        .map_err(|e| ConfigError::new(format!("{path}.{key}"), e))
                };
                let o = TemplateOverride {
                    title: parse("title", &t.title, false)?,
                    body: parse("body", &t.body, false)?,
                    item: parse("item", &t.item, false)?,
                    digest: parse("digest", &t.digest, true)?,
                    sms_template: t.sms_template,
                };
                templates.set_override(policy.clone(), k, o);
            }
        }

        Ok(DispatchConfig {
            timezone,
            max_attempts,
            retry_initial,
            retry_max,
            max_pending,
            dead_letters_kept: raw.dead_letters_kept.unwrap_or(10_000),
            drain_timeout,
            digest,
            routes: Routes { table },
            channels,
            templates,
        })
    }

    /// The settings of `kind`, if configured.
    pub fn channel(&self, kind: ChannelKind) -> Option<&ChannelConfig> {
        self.channels[kind.index()].as_ref()
    }

    /// The longest per-recipient window of any channel: how far back sends
    /// must be remembered (across a restart too) to keep every window.
    pub fn history_horizon(&self) -> Duration {
        self.channels
            .iter()
            .flatten()
            .flat_map(|c| c.per_recipient.iter().map(|w| w.period))
            .max()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<DispatchConfig, ConfigError> {
        let t: toml::Table = toml::from_str(s).unwrap();
        DispatchConfig::from_toml(&t)
    }

    #[test]
    fn empty_is_console_only() {
        let c = parse("").unwrap();
        assert_eq!(
            c.routes.lookup("quiz", NotifyKind::Reminder),
            &[ChannelKind::Console]
        );
        assert!(c.channel(ChannelKind::Console).is_some());
        assert!(c.channel(ChannelKind::Sms).is_none());
        assert_eq!(c.timezone, chrono_tz::Asia::Shanghai);
    }

    #[test]
    fn full_config_parses() {
        let c = parse(
            r#"
            max_attempts = 4
            [digest]
            window = "30s"
            [routes.default]
            default = ["console"]
            escalation = ["sms", "group"]
            [routes.quiz]
            reminder = ["push", "sms"]
            [channels.sms]
            url = "http://127.0.0.1:1/sms"
            sign_name = "红云"
            template_code = "SMS_1"
            per_recipient = [{ limit = 1, period = "1m" }, { limit = 10, period = "1d" }]
            [channels.push]
            url = "http://127.0.0.1:1/push"
            quiet_hours = "none"
            [channels.group]
            url = "http://127.0.0.1:1/robot?key={key}"
            [templates.quiz.reminder]
            body = "{member_name}：请完成学习（{missed}天）"
            "#,
        )
        .unwrap();
        assert_eq!(
            c.routes.lookup("quiz", NotifyKind::Reminder),
            &[ChannelKind::Push, ChannelKind::Sms]
        );
        assert_eq!(
            c.routes.lookup("quiz", NotifyKind::Escalation),
            &[ChannelKind::Sms, ChannelKind::Group]
        );
        assert_eq!(
            c.routes.lookup("tickets", NotifyKind::Warning),
            &[ChannelKind::Console]
        );
        let sms = c.channel(ChannelKind::Sms).unwrap();
        assert_eq!(sms.per_recipient[1].period, Duration::from_secs(86_400));
        assert!(sms.quiet_hours.is_some());
        assert!(c.channel(ChannelKind::Push).unwrap().quiet_hours.is_none());
        assert_eq!(c.digest.window, Duration::from_secs(30));
    }

    #[test]
    fn errors_name_the_key_path() {
        let e = parse(
            r#"
            [channels.sms]
            url = "http://x/"
            sign_name = "a"
            template_code = "b"
            per_recipient = [{ limit = 1, period = "1m" }, { limit = 0, period = "1h" }]
            "#,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "dispatch.channels.sms.per_recipient[1].limit: must be at least 1"
        );
        let e = parse("[channels.push]\nurl = \"http://exa mple.com/push\"\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "dispatch.channels.push.url: is not a valid URL (invalid uri character)"
        );
        let e = parse("[channels.group]\nurl = \"https://[::1/robot?key={key}\"\n").unwrap_err();
        assert_eq!(e.path, "dispatch.channels.group.url");
        assert!(!e.to_string().contains("::1"), "the URL is not quoted: {e}");
        let e = parse("[channels.sms]\nurl = \"http://x/\"\nbogus = 1\n").unwrap_err();
        assert!(e.path.starts_with("dispatch.channels"), "{e}");
        assert!(e.reason.contains("bogus"), "{e}");
        let e = parse("[routes.quiz]\nreminder = [\"sms\"]\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "dispatch.routes.quiz.reminder[0]: channel \"sms\" is not configured (add [dispatch.channels.sms])"
        );
        let e = parse("[templates.quiz.reminder]\nbody = \"{nope}\"\n").unwrap_err();
        assert_eq!(e.path, "dispatch.templates.quiz.reminder.body");
        let e =
            parse("[channels.push]\nurl = \"http://x\"\nquiet_hours = \"22:00\"\n").unwrap_err();
        assert_eq!(e.path, "dispatch.channels.push.quiet_hours");
        let e = parse("timezone = \"Mars/Base\"").unwrap_err();
        assert_eq!(e.path, "dispatch.timezone");
    }

    #[test]
    fn quiet_hours_parse() {
        assert_eq!(
            parse_quiet_hours("22:00-08:00").unwrap(),
            Some(QuietHours {
                start_min: 1320,
                end_min: 480
            })
        );
        assert_eq!(parse_quiet_hours("none").unwrap(), None);
        assert!(parse_quiet_hours("08:00-08:00").is_err());
        assert!(parse_quiet_hours("25:00-08:00").is_err());
    }
}
