//! Typed, validated policies and engine settings.
//!
//! These are the values the engine runs on. The `redcloud-config` crate builds
//! them from TOML (raw serde structs, then validation that names the bad key);
//! tests and benches may build them directly.

use crate::calendar::Calendar;
use crate::time::{TimeOfDay, Zone, MICROS_PER_DAY};

/// What a notification is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// To the member, after a missed working day.
    Reminder,
    /// Before a ticket's deadline.
    Warning,
    /// To someone above, after a longer run of misses or past a deadline.
    Escalation,
}

impl Kind {
    /// The contract's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Reminder => "reminder",
            Kind::Warning => "warning",
            Kind::Escalation => "escalation",
        }
    }
}

/// Index of an office in [`EngineConfig::offices`].
pub type OfficeIdx = u16;

/// A recipient role of a streak step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StreakRole {
    /// `self`: the member.
    Member,
    /// `leader`: the leader of the member's org, with the fallback up the tree.
    Leader,
    /// `office:<id>`.
    Office(OfficeIdx),
}

/// One rung of a streak policy's ladder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreakStep {
    /// Consecutive missed working days at which the step first fires (>= 1).
    pub after: u32,
    /// Repeat every `every` further misses; 0 = once.
    pub every: u32,
    /// `reminder` or `escalation`.
    pub kind: Kind,
    /// Recipient roles, in order.
    pub notify: Vec<StreakRole>,
}

impl StreakStep {
    /// Rule 2.4: does this step fire at the close of a missed day that made the
    /// run `missed` long?
    #[inline]
    pub fn fires_at(&self, missed: u32) -> bool {
        missed == self.after
            || (self.every > 0
                && missed > self.after
                && (missed - self.after).is_multiple_of(self.every))
    }
}

/// A streak policy (contract section 2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreakPolicy {
    /// Name, as printed in `policy`.
    pub name: String,
    /// The activity that counts (`quiz`, `worklog`).
    pub activity: String,
    /// Cohorts the policy applies to; empty = all.
    pub cohorts: Vec<String>,
    /// Local time at which a working day closes.
    pub closes_at: TimeOfDay,
    /// The ladder.
    pub steps: Vec<StreakStep>,
}

/// A recipient role of a ticket warning or escalation step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TicketRole {
    /// The leader of the current assignee org, with the fallback up the tree.
    AssigneeLeader,
    /// The same search started at the assignee org's parent.
    ParentLeader,
    /// `office:<id>`.
    Office(OfficeIdx),
}

/// How long a ticket has before its deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlaDuration {
    /// Calendar time, in microseconds (`"10d"`, `"36h"`).
    Calendar(i64),
    /// Working days (`"10wd"`): the deadline is the close (24:00) of the N-th
    /// working day after the local date of opening.
    WorkingDays(u32),
}

/// One escalation step of an SLA policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlaStep {
    /// Time past the deadline, in microseconds (0 = at the deadline).
    pub after: i64,
    /// Recipient roles, in order.
    pub notify: Vec<TicketRole>,
}

/// A ticket SLA policy (contract section 3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlaPolicy {
    /// Name, as printed in `policy`.
    pub name: String,
    /// Categories covered.
    pub categories: Vec<String>,
    /// Deadline after opening.
    pub resolve_within: SlaDuration,
    /// Warnings, as microseconds before the deadline, in configured order
    /// (warnings are numbered by their place here).
    pub warn_before: Vec<i64>,
    /// Recipients of warnings.
    pub warn_notify: Vec<TicketRole>,
    /// The escalation ladder.
    pub steps: Vec<SlaStep>,
}

/// Everything the engine needs to run.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Timezone in which local dates are taken.
    pub zone: Zone,
    /// The working-day calendar.
    pub calendar: Calendar,
    /// Org levels, top-down.
    pub levels: Vec<String>,
    /// Office ids; roles refer to them by index.
    pub offices: Vec<String>,
    /// Streak policies, in configured order.
    pub streaks: Vec<StreakPolicy>,
    /// SLA policies, in configured order.
    pub slas: Vec<SlaPolicy>,
    /// How long (event time, microseconds) applied event ids are remembered
    /// for idempotency.
    pub dedup_retention: i64,
}

impl EngineConfig {
    /// The contract's default policies (section 2 and 3) on the built-in
    /// `cn-mainland` calendar in `Asia/Shanghai`. The embedded default config
    /// of `redcloud-config` says the same; a test keeps the two equal.
    pub fn contract_default() -> EngineConfig {
        let city = 0;
        let county = 1;
        EngineConfig {
            zone: Zone::new("Asia/Shanghai").expect("known zone"),
            calendar: Calendar::builtin("cn-mainland").expect("built-in calendar"),
            levels: ["city", "county", "town", "village", "group"]
                .map(String::from)
                .to_vec(),
            offices: vec!["city".into(), "county".into()],
            streaks: vec![StreakPolicy {
                name: "quiz".into(),
                activity: "quiz".into(),
                cohorts: vec![],
                closes_at: TimeOfDay::END_OF_DAY,
                steps: vec![
                    StreakStep {
                        after: 1,
                        every: 1,
                        kind: Kind::Reminder,
                        notify: vec![StreakRole::Member],
                    },
                    StreakStep {
                        after: 5,
                        every: 5,
                        kind: Kind::Escalation,
                        notify: vec![StreakRole::Leader, StreakRole::Office(city)],
                    },
                ],
            }],
            slas: vec![SlaPolicy {
                name: "tickets".into(),
                categories: vec!["wish".into(), "help".into(), "suggestion".into()],
                resolve_within: SlaDuration::Calendar(10 * MICROS_PER_DAY),
                warn_before: vec![2 * MICROS_PER_DAY],
                warn_notify: vec![TicketRole::AssigneeLeader],
                steps: vec![
                    SlaStep {
                        after: 0,
                        notify: vec![TicketRole::AssigneeLeader],
                    },
                    SlaStep {
                        after: 2 * MICROS_PER_DAY,
                        notify: vec![TicketRole::ParentLeader],
                    },
                    SlaStep {
                        after: 5 * MICROS_PER_DAY,
                        notify: vec![TicketRole::Office(county)],
                    },
                ],
            }],
            dedup_retention: 35 * MICROS_PER_DAY,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_firing_rule() {
        let s = StreakStep {
            after: 5,
            every: 5,
            kind: Kind::Escalation,
            notify: vec![],
        };
        let fired: Vec<u32> = (1..=21).filter(|&m| s.fires_at(m)).collect();
        assert_eq!(fired, vec![5, 10, 15, 20]);
        let once = StreakStep { every: 0, ..s };
        let fired: Vec<u32> = (1..=21).filter(|&m| once.fires_at(m)).collect();
        assert_eq!(fired, vec![5]);
    }
}
