//! Streak state: per policy and member, the first tracked day, the last done
//! day and the current run of missed working days (contract section 2).
//!
//! The state is kept as one dense array per policy, indexed by member index,
//! six bytes a member, so that closing a day for millions of members is a
//! linear scan.

use crate::directory::Directory;
use crate::policy::StreakPolicy;
use crate::time::{Day, Ts};

/// `tracked_from` of a member that is not enrolled.
pub const NOT_TRACKED: u16 = u16::MAX;
/// `last_done` of a member with no recorded activity.
pub const NO_DAY: u16 = u16::MAX;

/// One member's state under one policy (days in the compact `u16` form of
/// [`Day::to_u16`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreakState {
    /// First working day that counts; [`NOT_TRACKED`] before enrolment.
    pub tracked_from: u16,
    /// Local date of the last activity that counted for an open day.
    pub last_done: u16,
    /// Consecutive missed working days.
    pub missed: u16,
}

impl Default for StreakState {
    fn default() -> Self {
        StreakState {
            tracked_from: NOT_TRACKED,
            last_done: NO_DAY,
            missed: 0,
        }
    }
}

/// The state of one policy across the shard's members.
#[derive(Clone, Debug, Default)]
pub struct PolicyState {
    /// By member index; members beyond the end have the default state.
    pub states: Vec<StreakState>,
    /// By cohort index: does the policy apply to the cohort.
    pub cohort_match: Vec<bool>,
    /// The next working day to close and its close instant; `None` until the
    /// engine has seen its first instant.
    pub next_close: Option<(Day, Ts)>,
}

impl PolicyState {
    /// Mutable state of a member, growing the array as needed.
    #[inline]
    pub fn state_mut(&mut self, m: u32) -> &mut StreakState {
        let i = m as usize;
        if i >= self.states.len() {
            self.states.resize(i + 1, StreakState::default());
        }
        &mut self.states[i]
    }

    /// State of a member.
    pub fn state(&self, m: u32) -> StreakState {
        self.states.get(m as usize).copied().unwrap_or_default()
    }

    /// Brings `cohort_match` up to date with the directory's cohorts.
    pub fn sync_cohorts(&mut self, policy: &StreakPolicy, dir: &Directory) {
        for c in self.cohort_match.len()..dir.cohorts.len() {
            let name = dir.cohorts.get(c as u32);
            self.cohort_match
                .push(policy.cohorts.is_empty() || policy.cohorts.iter().any(|p| p == name));
        }
    }
}
