//! Notification intents: what the engine decided, before any channel is
//! involved.
//!
//! An intent is compact (indices, not strings) so that a day close for
//! millions of members stays cheap; [`Rendered`] is its self-contained form
//! with ids as strings and the deterministic notification id, as printed by
//! `redcloud replay` and handed to the dispatcher.

use serde::Serialize;
use xxhash_rust::xxh3::xxh3_128;

use crate::policy::{Kind, OfficeIdx};
use crate::time::Ts;

/// Whom or what a notification is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    /// A member (index in the shard's directory).
    Member(u32),
    /// A ticket (index in the shard's ticket table).
    Ticket(u32),
}

/// Who receives a notification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Recipient {
    /// A member (index in the shard's directory).
    Member(u32),
    /// A configured office.
    Office(OfficeIdx),
}

/// Which policy fired: streak policies and SLA policies are numbered apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyRef {
    /// Index in `EngineConfig::streaks`.
    Streak(u16),
    /// Index in `EngineConfig::slas`.
    Sla(u16),
}

/// A notification intent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Notification {
    /// The instant the rule fired.
    pub at: Ts,
    /// The policy.
    pub policy: PolicyRef,
    /// Reminder, warning or escalation.
    pub kind: Kind,
    /// 1-based index in the policy's ladder (warnings: in `warn_before`).
    pub step: u8,
    /// The member or ticket.
    pub subject: Subject,
    /// The recipient.
    pub recipient: Recipient,
    /// The subject's org when it fired (member's org, ticket's assignee), or
    /// `directory::NONE`.
    pub org: u32,
    /// Streaks: the missed run; tickets: 0.
    pub missed: u32,
}

/// A notification with its strings resolved: the contract's output object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rendered {
    /// Deterministic id.
    pub id: String,
    /// RFC 3339 in the configured timezone.
    pub at: String,
    /// Policy name.
    pub policy: String,
    /// `reminder`, `warning` or `escalation`.
    pub kind: &'static str,
    /// 1-based step.
    pub step: u8,
    /// `member:<id>` or `ticket:<id>`.
    pub subject: String,
    /// `member:<id>` or `office:<id>`.
    pub recipient: String,
    /// Streak notifications: the missed run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missed: Option<u32>,
}

/// The deterministic id of a notification: a hash of everything that makes
/// it unique (policy, subject, kind, step, recipient, instant), so the same
/// inputs give the same id on every run and after any restart.
pub fn notification_id(
    policy: &str,
    subject: &str,
    kind: Kind,
    step: u8,
    recipient: &str,
    at: Ts,
) -> String {
    let mut buf = Vec::with_capacity(policy.len() + subject.len() + recipient.len() + 48);
    for part in [policy, subject, kind.as_str(), recipient] {
        buf.extend_from_slice(part.as_bytes());
        buf.push(0x1f);
    }
    buf.push(step);
    buf.extend_from_slice(&at.0.to_le_bytes());
    format!("{:032x}", xxh3_128(&buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinct() {
        let a = notification_id("quiz", "member:m1", Kind::Reminder, 1, "member:m1", Ts(5));
        assert_eq!(a.len(), 32);
        assert_eq!(
            a,
            notification_id("quiz", "member:m1", Kind::Reminder, 1, "member:m1", Ts(5))
        );
        assert_ne!(
            a,
            notification_id("quiz", "member:m1", Kind::Reminder, 1, "member:m1", Ts(6))
        );
        assert_ne!(
            a,
            notification_id("quiz", "member:m1", Kind::Reminder, 2, "member:m1", Ts(5))
        );
        // Field boundaries matter.
        assert_ne!(
            notification_id("q", "uizmember:m1", Kind::Reminder, 1, "x", Ts(5)),
            notification_id("quiz", "member:m1", Kind::Reminder, 1, "x", Ts(5))
        );
    }
}

/// Everything a dispatcher needs to deliver one notification: the rendered
/// notification and the addresses and names to fill templates with.
///
/// Contains personal data (names, phone numbers, device tokens): never log it
/// and never put it in metric labels.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Envelope {
    /// The notification, as `redcloud replay` prints it.
    pub notification: RenderedOwned,
    /// Recipient's display name, when known.
    pub recipient_name: Option<String>,
    /// Recipient's phone number (members: from `contacts.sms`; offices: from
    /// the config, filled in by the dispatcher).
    pub sms: Option<String>,
    /// Recipient's push device token.
    pub push: Option<String>,
    /// The subject's org (member's org, ticket's assignee) id.
    pub org: Option<String>,
    /// The subject's org name.
    pub org_name: Option<String>,
    /// The subject's org's group-chat robot (webhook or key).
    pub org_group: Option<String>,
    /// Member subjects: the member's name.
    pub subject_name: Option<String>,
    /// Ticket subjects: the title.
    pub ticket_title: Option<String>,
    /// Ticket subjects: the deadline, RFC 3339.
    pub deadline: Option<String>,
}

/// [`Rendered`] with an owned `kind`, so that it can be deserialized (for
/// queues and outboxes).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RenderedOwned {
    /// Deterministic id.
    pub id: String,
    /// RFC 3339 in the configured timezone.
    pub at: String,
    /// Policy name.
    pub policy: String,
    /// `reminder`, `warning` or `escalation`.
    pub kind: String,
    /// 1-based step.
    pub step: u8,
    /// `member:<id>` or `ticket:<id>`.
    pub subject: String,
    /// `member:<id>` or `office:<id>`.
    pub recipient: String,
    /// Streak notifications: the missed run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missed: Option<u32>,
}

impl From<Rendered> for RenderedOwned {
    fn from(r: Rendered) -> Self {
        RenderedOwned {
            id: r.id,
            at: r.at,
            policy: r.policy,
            kind: r.kind.to_string(),
            step: r.step,
            subject: r.subject,
            recipient: r.recipient,
            missed: r.missed,
        }
    }
}
