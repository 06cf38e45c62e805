//! `[[streak_policies]]` and `[[sla_policies]]`: validation into the engine's
//! [`StreakPolicy`] and [`SlaPolicy`] (contract sections 2 and 3).
//!
//! Rules that span both kinds (unique policy names) and both lists (a category
//! covered by at most one SLA policy) are checked here too.

use std::collections::HashMap;

use redcloud_engine::policy::{
    Kind, SlaDuration, SlaPolicy, SlaStep, StreakPolicy, StreakRole, StreakStep, TicketRole,
};
use redcloud_engine::time::TimeOfDay;

use crate::duration::ConfigDuration;
use crate::error::ConfigError;
use crate::offices::OfficeTable;
use crate::raw::{RawSlaPolicy, RawStreakPolicy};
use crate::validate::{any_duration, calendar_duration, check_names};

/// Longest policy name, in characters.
pub const MAX_POLICY_NAME_CHARS: usize = 64;

/// Validates both lists of policies.
pub(crate) fn validate_policies(
    streaks: Vec<RawStreakPolicy>,
    slas: Vec<RawSlaPolicy>,
    offices: &OfficeTable<'_>,
) -> Result<(Vec<StreakPolicy>, Vec<SlaPolicy>), ConfigError> {
    check_policy_names(&streaks, &slas)?;
    let streaks = streaks
        .into_iter()
        .enumerate()
        .map(|(i, p)| validate_streak(&format!("streak_policies[{i}]"), p, offices))
        .collect::<Result<Vec<_>, _>>()?;
    let slas = slas
        .into_iter()
        .enumerate()
        .map(|(i, p)| validate_sla(&format!("sla_policies[{i}]"), p, offices))
        .collect::<Result<Vec<_>, _>>()?;
    check_category_overlap(&slas)?;
    Ok((streaks, slas))
}

/// Names are 1..=64 characters and unique across streak and SLA policies
/// (they are what `policy` prints).
fn check_policy_names(
    streaks: &[RawStreakPolicy],
    slas: &[RawSlaPolicy],
) -> Result<(), ConfigError> {
    let all = streaks
        .iter()
        .enumerate()
        .map(|(i, p)| (format!("streak_policies[{i}]"), &p.name))
        .chain(
            slas.iter()
                .enumerate()
                .map(|(i, p)| (format!("sla_policies[{i}]"), &p.name)),
        );
    let mut seen: HashMap<&str, String> = HashMap::new();
    for (at, name) in all {
        let path = format!("{at}.name");
        let chars = name.chars().count();
        if name.trim().is_empty() {
            return Err(ConfigError::invalid(path, "must not be empty"));
        }
        if chars > MAX_POLICY_NAME_CHARS {
            return Err(ConfigError::invalid(
                path,
                format!("must be at most {MAX_POLICY_NAME_CHARS} characters long (found {chars})"),
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(ConfigError::invalid(
                path,
                "must not contain control characters",
            ));
        }
        if let Some(first) = seen.get(name.as_str()) {
            return Err(ConfigError::invalid(
                path,
                format!("\"{name}\" is already the name of {first}; policy names must be unique"),
            ));
        }
        seen.insert(name, at);
    }
    Ok(())
}

fn validate_streak(
    at: &str,
    raw: RawStreakPolicy,
    offices: &OfficeTable<'_>,
) -> Result<StreakPolicy, ConfigError> {
    if raw.activity.trim().is_empty() {
        return Err(ConfigError::invalid(
            format!("{at}.activity"),
            "must not be empty",
        ));
    }
    check_names(&format!("{at}.cohorts"), &raw.cohorts)?;
    let closes_at = TimeOfDay::parse(&raw.closes_at)
        .map_err(|e| ConfigError::invalid(format!("{at}.closes_at"), e))?;
    if raw.steps.is_empty() {
        return Err(ConfigError::invalid(
            format!("{at}.steps"),
            "must have at least one step",
        ));
    }
    let mut steps = Vec::with_capacity(raw.steps.len());
    for (i, step) in raw.steps.into_iter().enumerate() {
        let sp = format!("{at}.steps[{i}]");
        if step.after < 1 {
            return Err(ConfigError::invalid(
                format!("{sp}.after"),
                "must be at least 1",
            ));
        }
        let kind = match step.kind.as_str() {
            "reminder" => Kind::Reminder,
            "escalation" => Kind::Escalation,
            "warning" => {
                return Err(ConfigError::invalid(
                    format!("{sp}.kind"),
                    "\"warning\" is for ticket deadlines only; a streak step is \"reminder\" or \"escalation\"",
                ))
            }
            other => {
                return Err(ConfigError::invalid(
                    format!("{sp}.kind"),
                    format!("unknown kind \"{other}\" (use reminder or escalation)"),
                ))
            }
        };
        let notify = parse_roles(&format!("{sp}.notify"), &step.notify, |s| match s {
            "self" => Ok(StreakRole::Member),
            "leader" => Ok(StreakRole::Leader),
            _ => match s.strip_prefix("office:") {
                Some(id) => offices.lookup(id).map(StreakRole::Office),
                None => Err(format!(
                    "unknown role \"{s}\" (use self, leader or office:<id>)"
                )),
            },
        })?;
        steps.push(StreakStep {
            after: step.after,
            every: step.every,
            kind,
            notify,
        });
    }
    Ok(StreakPolicy {
        name: raw.name,
        activity: raw.activity,
        cohorts: raw.cohorts,
        closes_at,
        steps,
    })
}

fn validate_sla(
    at: &str,
    raw: RawSlaPolicy,
    offices: &OfficeTable<'_>,
) -> Result<SlaPolicy, ConfigError> {
    if raw.categories.is_empty() {
        return Err(ConfigError::invalid(
            format!("{at}.categories"),
            "must list at least one category",
        ));
    }
    check_names(&format!("{at}.categories"), &raw.categories)?;

    let rw_path = format!("{at}.resolve_within");
    let resolve_within = any_duration(&rw_path, &raw.resolve_within)?;
    if matches!(
        resolve_within,
        ConfigDuration::Calendar(0) | ConfigDuration::WorkingDays(0)
    ) {
        return Err(ConfigError::invalid(rw_path, "must be longer than 0"));
    }

    let mut warn_before = Vec::with_capacity(raw.warn_before.len());
    for (i, w) in raw.warn_before.iter().enumerate() {
        let path = format!("{at}.warn_before[{i}]");
        let us = calendar_duration(&path, w)?;
        if us <= 0 {
            return Err(ConfigError::invalid(path, "must be longer than 0"));
        }
        if let ConfigDuration::Calendar(limit) = resolve_within {
            if us >= limit {
                return Err(ConfigError::invalid(
                    path,
                    format!(
                        "\"{}\" is not shorter than resolve_within \"{}\", so the warning would never fire",
                        w.0, raw.resolve_within.0
                    ),
                ));
            }
        }
        if warn_before.contains(&us) {
            return Err(ConfigError::invalid(
                path,
                format!("\"{}\" is listed twice", w.0),
            ));
        }
        warn_before.push(us);
    }

    let ticket_role = |s: &str| match s {
        "assignee_leader" => Ok(TicketRole::AssigneeLeader),
        "parent_leader" => Ok(TicketRole::ParentLeader),
        _ => match s.strip_prefix("office:") {
            Some(id) => offices.lookup(id).map(TicketRole::Office),
            None => Err(format!(
                "unknown role \"{s}\" (use assignee_leader, parent_leader or office:<id>)"
            )),
        },
    };
    let warn_notify = parse_roles(&format!("{at}.warn_notify"), &raw.warn_notify, ticket_role)?;

    let mut steps: Vec<SlaStep> = Vec::with_capacity(raw.steps.len());
    for (i, step) in raw.steps.iter().enumerate() {
        let sp = format!("{at}.steps[{i}]");
        let after = calendar_duration(&format!("{sp}.after"), &step.after)?;
        if let Some(prev) = steps.last() {
            if after <= prev.after {
                return Err(ConfigError::invalid(
                    format!("{sp}.after"),
                    format!(
                        "\"{}\" must be later than the previous step's \"{}\" (steps go in strictly increasing `after`)",
                        step.after.0,
                        raw.steps[i - 1].after.0
                    ),
                ));
            }
        }
        let notify = parse_roles(&format!("{sp}.notify"), &step.notify, ticket_role)?;
        steps.push(SlaStep { after, notify });
    }

    Ok(SlaPolicy {
        name: raw.name,
        categories: raw.categories,
        resolve_within: SlaDuration::from(resolve_within),
        warn_before,
        warn_notify,
        steps,
    })
}

/// A notify list: non-empty, every entry a known role, no role twice.
fn parse_roles<R: PartialEq>(
    path: &str,
    list: &[String],
    parse: impl Fn(&str) -> Result<R, String>,
) -> Result<Vec<R>, ConfigError> {
    if list.is_empty() {
        return Err(ConfigError::invalid(
            path,
            "must name at least one recipient role",
        ));
    }
    let mut roles = Vec::with_capacity(list.len());
    for (i, text) in list.iter().enumerate() {
        let role = parse(text).map_err(|why| ConfigError::invalid(format!("{path}[{i}]"), why))?;
        if roles.contains(&role) {
            return Err(ConfigError::invalid(
                format!("{path}[{i}]"),
                format!("\"{text}\" is listed twice"),
            ));
        }
        roles.push(role);
    }
    Ok(roles)
}

/// Every category is covered by at most one SLA policy.
fn check_category_overlap(slas: &[SlaPolicy]) -> Result<(), ConfigError> {
    let mut owner: HashMap<&str, &str> = HashMap::new();
    for (i, policy) in slas.iter().enumerate() {
        for (j, category) in policy.categories.iter().enumerate() {
            if let Some(first) = owner.insert(category, &policy.name) {
                return Err(ConfigError::invalid(
                    format!("sla_policies[{i}].categories[{j}]"),
                    format!(
                        "category \"{category}\" is covered by both SLA policies \"{first}\" and \"{}\"; a category may have one policy only",
                        policy.name
                    ),
                ));
            }
        }
    }
    Ok(())
}
