//! Inbound events (contract section 1): the typed model and the decoder.
//!
//! [`decode`] turns one JSON object (one AMQP body, one Redis `event` field, one
//! NDJSON line) into an [`Event`] or a [`Rejection`] with a one-line reason that
//! names the offending field. It never panics, whatever the bytes.
//!
//! Design: the JSON object is read in one pass by a hand-written serde visitor
//! into a flat table of *loose* values, one per known field. A loose value
//! accepts any JSON value and remembers its kind (a string is kept, borrowed
//! from the input when it has no escapes), so the per-field checks run after
//! parsing and can say exactly what is wrong ("field `member` must be a string,
//! got number"). Nothing goes through `serde_json::Value` and nothing is
//! buffered; an event whose strings have no escapes and that has no unknown
//! fields is decoded without allocating.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::time::{Ts, MICROS_PER_DAY, MIN_DAY};

/// Largest accepted event, in bytes (64 KiB).
pub const MAX_EVENT_BYTES: usize = 64 * 1024;

/// Largest accepted id (and `activity`, `category`, `cohort`), in bytes.
pub const MAX_ID_BYTES: usize = 128;

/// Earliest accepted `at`: 2000-01-01T00:00:00Z.
pub const MIN_AT: Ts = Ts(MIN_DAY.0 as i64 * MICROS_PER_DAY);

/// Latest accepted `at`: 2178-12-30T00:00:00Z (day 76 334 since the epoch), so
/// that the local date of `at` in any timezone stays within 2178-12-31.
pub const MAX_AT: Ts = Ts(76_334 * MICROS_PER_DAY);

/// Every event type, in the order of the contract's table.
pub const EVENT_TYPES: [&str; 12] = [
    "org.upserted",
    "member.upserted",
    "member.removed",
    "app.login",
    "activity.recorded",
    "ticket.opened",
    "ticket.accepted",
    "ticket.replied",
    "ticket.resolved",
    "ticket.cancelled",
    "ticket.rated",
    "ticket.reassigned",
];

/// A decoded, valid event. Strings borrow from the input where they can.
#[derive(Clone, Debug, PartialEq)]
pub struct Event<'a> {
    /// Producer-unique id (idempotency key).
    pub id: Cow<'a, str>,
    /// When it happened.
    pub at: Ts,
    /// Type and type-specific fields.
    pub body: Body<'a>,
}

/// Type-specific fields of an event.
#[derive(Clone, Debug, PartialEq)]
pub enum Body<'a> {
    /// `org.upserted`.
    OrgUpserted {
        /// Org id.
        org: Cow<'a, str>,
        /// Parent org id, `None` for a root.
        parent: Option<Cow<'a, str>>,
        /// Index of the level in the configured levels (0 = top).
        level: u8,
        /// Display name.
        name: Option<Cow<'a, str>>,
        /// Leader member id.
        leader: Option<Cow<'a, str>>,
        /// `contacts.group`: chat-robot webhook or key.
        group: Option<Cow<'a, str>>,
    },
    /// `member.upserted`.
    MemberUpserted {
        /// Member id.
        member: Cow<'a, str>,
        /// Org id.
        org: Cow<'a, str>,
        /// Display name.
        name: Option<Cow<'a, str>>,
        /// Cohort; `None` means the default `"member"`.
        cohort: Option<Cow<'a, str>>,
        /// `contacts.sms`: phone number.
        sms: Option<Cow<'a, str>>,
        /// `contacts.push`: device token.
        push: Option<Cow<'a, str>>,
    },
    /// `member.removed`.
    MemberRemoved {
        /// Member id.
        member: Cow<'a, str>,
    },
    /// `app.login`.
    AppLogin {
        /// Member id.
        member: Cow<'a, str>,
    },
    /// `activity.recorded`.
    ActivityRecorded {
        /// Member id.
        member: Cow<'a, str>,
        /// Activity name (`quiz`, `worklog`).
        activity: Cow<'a, str>,
    },
    /// `ticket.opened`.
    TicketOpened {
        /// Ticket id.
        ticket: Cow<'a, str>,
        /// Assignee org id.
        org: Cow<'a, str>,
        /// Category.
        category: Cow<'a, str>,
        /// Title.
        title: Option<Cow<'a, str>>,
    },
    /// `ticket.accepted`.
    TicketAccepted {
        /// Ticket id.
        ticket: Cow<'a, str>,
    },
    /// `ticket.replied`.
    TicketReplied {
        /// Ticket id.
        ticket: Cow<'a, str>,
    },
    /// `ticket.resolved`.
    TicketResolved {
        /// Ticket id.
        ticket: Cow<'a, str>,
    },
    /// `ticket.cancelled`.
    TicketCancelled {
        /// Ticket id.
        ticket: Cow<'a, str>,
    },
    /// `ticket.rated`.
    TicketRated {
        /// Ticket id.
        ticket: Cow<'a, str>,
        /// Thumbs up.
        satisfied: bool,
    },
    /// `ticket.reassigned`.
    TicketReassigned {
        /// Ticket id.
        ticket: Cow<'a, str>,
        /// New assignee org id.
        org: Cow<'a, str>,
    },
}

/// Why an event was rejected: one line, naming the field where there is one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Rejection {
    /// The event's `id` when it could be read.
    pub id: Option<String>,
    /// One-line reason.
    pub reason: String,
}

impl Rejection {
    /// A rejection with a reason (one line, lowercase, no final period).
    pub fn new(id: Option<String>, reason: impl Into<String>) -> Rejection {
        Rejection {
            id,
            reason: reason.into(),
        }
    }
}

fn own(s: Cow<'_, str>) -> Cow<'static, str> {
    Cow::Owned(s.into_owned())
}

fn own_opt(s: Option<Cow<'_, str>>) -> Option<Cow<'static, str>> {
    s.map(own)
}

impl Event<'_> {
    /// The same event with every string owned, to keep it past its input.
    pub fn into_owned(self) -> Event<'static> {
        Event {
            id: own(self.id),
            at: self.at,
            body: self.body.into_owned(),
        }
    }

    /// The event's `type` (`activity.recorded`).
    pub fn type_name(&self) -> &'static str {
        self.body.type_name()
    }

    /// The id that orders and partitions this event; see [`Body::routing_key`].
    pub fn routing_key(&self) -> &str {
        self.body.routing_key()
    }
}

impl Body<'_> {
    /// The event's `type` (`activity.recorded`), one of [`EVENT_TYPES`].
    pub fn type_name(&self) -> &'static str {
        match self {
            Body::OrgUpserted { .. } => "org.upserted",
            Body::MemberUpserted { .. } => "member.upserted",
            Body::MemberRemoved { .. } => "member.removed",
            Body::AppLogin { .. } => "app.login",
            Body::ActivityRecorded { .. } => "activity.recorded",
            Body::TicketOpened { .. } => "ticket.opened",
            Body::TicketAccepted { .. } => "ticket.accepted",
            Body::TicketReplied { .. } => "ticket.replied",
            Body::TicketResolved { .. } => "ticket.resolved",
            Body::TicketCancelled { .. } => "ticket.cancelled",
            Body::TicketRated { .. } => "ticket.rated",
            Body::TicketReassigned { .. } => "ticket.reassigned",
        }
    }

    /// The id of the entity the event is about: the `org` of `org.upserted`, the
    /// `member` of member, login and activity events, the `ticket` of ticket
    /// events. Events with the same routing key must be applied in order, so a
    /// connector that partitions work uses it as the partition key. Ids of
    /// different kinds may be equal; that only puts them in the same partition.
    pub fn routing_key(&self) -> &str {
        match self {
            Body::OrgUpserted { org, .. } => org,
            Body::MemberUpserted { member, .. }
            | Body::MemberRemoved { member }
            | Body::AppLogin { member }
            | Body::ActivityRecorded { member, .. } => member,
            Body::TicketOpened { ticket, .. }
            | Body::TicketAccepted { ticket }
            | Body::TicketReplied { ticket }
            | Body::TicketResolved { ticket }
            | Body::TicketCancelled { ticket }
            | Body::TicketRated { ticket, .. }
            | Body::TicketReassigned { ticket, .. } => ticket,
        }
    }

    /// The same body with every string owned.
    pub fn into_owned(self) -> Body<'static> {
        match self {
            Body::OrgUpserted {
                org,
                parent,
                level,
                name,
                leader,
                group,
            } => Body::OrgUpserted {
                org: own(org),
                parent: own_opt(parent),
                level,
                name: own_opt(name),
                leader: own_opt(leader),
                group: own_opt(group),
            },
            Body::MemberUpserted {
                member,
                org,
                name,
                cohort,
                sms,
                push,
            } => Body::MemberUpserted {
                member: own(member),
                org: own(org),
                name: own_opt(name),
                cohort: own_opt(cohort),
                sms: own_opt(sms),
                push: own_opt(push),
            },
            Body::MemberRemoved { member } => Body::MemberRemoved {
                member: own(member),
            },
            Body::AppLogin { member } => Body::AppLogin {
                member: own(member),
            },
            Body::ActivityRecorded { member, activity } => Body::ActivityRecorded {
                member: own(member),
                activity: own(activity),
            },
            Body::TicketOpened {
                ticket,
                org,
                category,
                title,
            } => Body::TicketOpened {
                ticket: own(ticket),
                org: own(org),
                category: own(category),
                title: own_opt(title),
            },
            Body::TicketAccepted { ticket } => Body::TicketAccepted {
                ticket: own(ticket),
            },
            Body::TicketReplied { ticket } => Body::TicketReplied {
                ticket: own(ticket),
            },
            Body::TicketResolved { ticket } => Body::TicketResolved {
                ticket: own(ticket),
            },
            Body::TicketCancelled { ticket } => Body::TicketCancelled {
                ticket: own(ticket),
            },
            Body::TicketRated { ticket, satisfied } => Body::TicketRated {
                ticket: own(ticket),
                satisfied,
            },
            Body::TicketReassigned { ticket, org } => Body::TicketReassigned {
                ticket: own(ticket),
                org: own(org),
            },
        }
    }
}

/// Decodes and validates one event. `levels` are the configured org levels,
/// top-down; [`Body::OrgUpserted`] stores the index of its `level` in them.
///
/// The input must be one UTF-8 JSON object of at most [`MAX_EVENT_BYTES`];
/// surrounding JSON whitespace (including a trailing `\r\n`) is allowed.
pub fn decode<'a>(bytes: &'a [u8], levels: &[String]) -> Result<Event<'a>, Rejection> {
    if bytes.len() > MAX_EVENT_BYTES {
        return Err(Rejection::new(
            None,
            format!(
                "event is larger than 64 KiB ({} bytes, limit {MAX_EVENT_BYTES})",
                bytes.len()
            ),
        ));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        Rejection::new(
            None,
            format!("not utf-8: invalid byte at offset {}", e.valid_up_to()),
        )
    })?;
    let first = text
        .bytes()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    if first != Some(b'{') {
        return Err(Rejection::new(None, not_an_object(text, first)));
    }
    let mut raw = Raw::default();
    let mut de = serde_json::Deserializer::from_str(text);
    de::DeserializeSeed::deserialize(RawSeed(&mut raw), &mut de)
        .and_then(|()| de.end())
        .map_err(|e| Rejection::new(None, format!("not valid json: {e}")))?;
    raw.validate(levels)
}

/// The reason for an input that does not start with `{`.
fn not_an_object(text: &str, first: Option<u8>) -> String {
    let Some(first) = first else {
        return "not valid json: empty event".to_string();
    };
    match serde_json::from_str::<IgnoredAny>(text) {
        Err(e) => format!("not valid json: {e}"),
        Ok(_) => {
            let kind = match first {
                b'[' => Kind::Array,
                b'"' => Kind::String,
                b't' | b'f' => Kind::Bool,
                b'n' => Kind::Null,
                _ => Kind::Number,
            };
            format!("event must be a json object, got {kind}")
        }
    }
}

/// Shows a producer-supplied string inside a reason: escaped so the reason
/// stays on one line, and cut to 64 characters.
fn show(s: &str) -> String {
    const MAX_CHARS: usize = 64;
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == MAX_CHARS {
            out.push('…');
            break;
        }
        if c == '`' {
            out.push_str("\\u{60}");
        } else {
            out.extend(c.escape_debug());
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Loose values: any JSON value, remembered by kind.

/// The kind of a JSON value, as named in reasons.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Null,
    Bool,
    Number,
    String,
    Object,
    Array,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Null => "null",
            Kind::Bool => "bool",
            Kind::Number => "number",
            Kind::String => "string",
            Kind::Object => "object",
            Kind::Array => "array",
        })
    }
}

/// One field's value before validation.
#[derive(Debug, Default)]
enum Loose<'a> {
    /// The field was not in the object.
    #[default]
    Absent,
    /// A string, borrowed when it had no escapes.
    Str(Cow<'a, str>),
    /// A bool.
    Bool(bool),
    /// Any other value (null, number, object, array).
    Other(Kind),
}

impl Loose<'_> {
    fn kind(&self) -> Option<Kind> {
        match self {
            Loose::Absent => None,
            Loose::Str(_) => Some(Kind::String),
            Loose::Bool(_) => Some(Kind::Bool),
            Loose::Other(k) => Some(*k),
        }
    }
}

struct LooseVisitor;

impl<'de> Visitor<'de> for LooseVisitor {
    type Value = Loose<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any json value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Loose::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Loose::Other(Kind::Number))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Loose::Other(Kind::Number))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Loose::Other(Kind::Number))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Loose::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Loose::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Loose::Str(Cow::Owned(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Loose::Other(Kind::Null))
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Loose::Other(Kind::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Loose::Other(Kind::Array))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Loose::Other(Kind::Object))
    }
}

impl<'de> Deserialize<'de> for Loose<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LooseVisitor)
    }
}

// ---------------------------------------------------------------------------
// Keys.

/// Known top-level fields, by index into [`Raw::fields`].
const FIELDS: [&str; 15] = [
    "id",
    "type",
    "at",
    "org",
    "parent",
    "level",
    "name",
    "leader",
    "member",
    "cohort",
    "activity",
    "ticket",
    "category",
    "title",
    "satisfied",
];
const F_ID: usize = 0;
const F_TYPE: usize = 1;
const F_AT: usize = 2;
const F_ORG: usize = 3;
const F_PARENT: usize = 4;
const F_LEVEL: usize = 5;
const F_NAME: usize = 6;
const F_LEADER: usize = 7;
const F_MEMBER: usize = 8;
const F_COHORT: usize = 9;
const F_ACTIVITY: usize = 10;
const F_TICKET: usize = 11;
const F_CATEGORY: usize = 12;
const F_TITLE: usize = 13;
const F_SATISFIED: usize = 14;
/// `contacts`, kept apart from the loose fields.
const F_CONTACTS: usize = 15;

/// Known fields of `contacts`, by index into [`Contacts::Object`]'s values.
const CONTACT_FIELDS: [&str; 3] = ["sms", "push", "group"];
const C_SMS: usize = 0;
const C_PUSH: usize = 1;
const C_GROUP: usize = 2;

fn top_field(k: &str) -> Option<usize> {
    Some(match k {
        "id" => F_ID,
        "type" => F_TYPE,
        "at" => F_AT,
        "org" => F_ORG,
        "parent" => F_PARENT,
        "level" => F_LEVEL,
        "name" => F_NAME,
        "leader" => F_LEADER,
        "member" => F_MEMBER,
        "cohort" => F_COHORT,
        "activity" => F_ACTIVITY,
        "ticket" => F_TICKET,
        "category" => F_CATEGORY,
        "title" => F_TITLE,
        "satisfied" => F_SATISFIED,
        "contacts" => F_CONTACTS,
        _ => return None,
    })
}

fn contact_field(k: &str) -> Option<usize> {
    Some(match k {
        "sms" => C_SMS,
        "push" => C_PUSH,
        "group" => C_GROUP,
        _ => return None,
    })
}

/// An object key: a known field's index, or an unknown key (kept to detect
/// duplicates). Known keys never allocate, even when written with escapes.
enum Key<'a> {
    Known(usize),
    Unknown(Cow<'a, str>),
}

struct KeyVisitor(fn(&str) -> Option<usize>);

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(match (self.0)(v) {
            Some(i) => Key::Known(i),
            None => Key::Unknown(Cow::Borrowed(v)),
        })
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(match (self.0)(v) {
            Some(i) => Key::Known(i),
            None => Key::Unknown(Cow::Owned(v.to_owned())),
        })
    }
}

/// Deserializes a key with a given field table.
struct KeySeed(fn(&str) -> Option<usize>);

impl<'de> de::DeserializeSeed<'de> for KeySeed {
    type Value = Key<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(KeyVisitor(self.0))
    }
}

/// Tracks the keys seen in one object; remembers the first duplicate.
struct Seen<'a> {
    known: u32,
    unknown: Option<HashSet<Cow<'a, str>>>,
    dup: Option<Cow<'a, str>>,
}

impl<'a> Seen<'a> {
    fn new() -> Self {
        Seen {
            known: 0,
            unknown: None,
            dup: None,
        }
    }

    /// Marks a key as seen: the known field's index the first time it is seen,
    /// `None` for a repeat or an unknown key. `names` names the known keys.
    fn first(&mut self, key: Key<'a>, names: &[&'static str]) -> Option<usize> {
        match key {
            Key::Known(i) => {
                let bit = 1u32 << i;
                if self.known & bit == 0 {
                    self.known |= bit;
                    Some(i)
                } else {
                    self.note_dup(Cow::Borrowed(names.get(i).copied().unwrap_or("contacts")));
                    None
                }
            }
            Key::Unknown(k) => {
                let set = self.unknown.get_or_insert_with(HashSet::new);
                if set.contains(&k) {
                    self.note_dup(k);
                } else {
                    set.insert(k);
                }
                None
            }
        }
    }

    fn note_dup(&mut self, k: Cow<'a, str>) {
        if self.dup.is_none() {
            self.dup = Some(k);
        }
    }
}

// ---------------------------------------------------------------------------
// `contacts`.

/// The `contacts` field before validation.
#[derive(Debug, Default)]
enum Contacts<'a> {
    #[default]
    Absent,
    /// Not an object (null included).
    Other(Kind),
    /// An object: `sms`, `push`, `group`, and its first duplicate key.
    Object([Loose<'a>; 3], Option<Cow<'a, str>>),
}

struct ContactsVisitor;

impl<'de> Visitor<'de> for ContactsVisitor {
    type Value = Contacts<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any json value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut values: [Loose<'de>; 3] = Default::default();
        let mut seen = Seen::new();
        while let Some(key) = map.next_key_seed(KeySeed(contact_field))? {
            match seen.first(key, &CONTACT_FIELDS) {
                Some(i) => values[i] = map.next_value()?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Contacts::Object(values, seen.dup))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        LooseVisitor.visit_seq(seq).map(other)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Contacts::Other(Kind::Bool))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Contacts::Other(Kind::Number))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Contacts::Other(Kind::Number))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Contacts::Other(Kind::Number))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Contacts::Other(Kind::String))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Contacts::Other(Kind::Null))
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Contacts::Other(Kind::Null))
    }
}

fn other(l: Loose<'_>) -> Contacts<'_> {
    Contacts::Other(l.kind().unwrap_or(Kind::Null))
}

impl<'de> Deserialize<'de> for Contacts<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ContactsVisitor)
    }
}

// ---------------------------------------------------------------------------
// The whole object.

/// Every known field of an event, before validation.
#[derive(Debug, Default)]
struct Raw<'a> {
    fields: [Loose<'a>; 15],
    contacts: Contacts<'a>,
    /// The first duplicate key (`contacts.` prefixed inside `contacts`).
    dup: Option<Cow<'a, str>>,
}

/// Fills a [`Raw`] in place (it is large: returning it by value would copy it
/// several times per event).
struct RawSeed<'r, 'a>(&'r mut Raw<'a>);

impl<'de> Visitor<'de> for RawSeed<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a json object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let raw = self.0;
        let mut seen = Seen::new();
        while let Some(key) = map.next_key_seed(KeySeed(top_field))? {
            match seen.first(key, &FIELDS) {
                Some(F_CONTACTS) => raw.contacts = map.next_value()?,
                Some(i) => raw.fields[i] = map.next_value()?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        raw.dup = seen.dup;
        if raw.dup.is_none() {
            if let Contacts::Object(_, Some(d)) = &raw.contacts {
                raw.dup = Some(Cow::Owned(format!("contacts.{d}")));
            }
        }
        Ok(())
    }
}

impl<'de> de::DeserializeSeed<'de> for RawSeed<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

fn wrong_type(field: &str, want: &str, got: Kind) -> String {
    format!("field `{field}` must be {want}, got {got}")
}

fn missing(field: &str) -> String {
    format!("missing field `{field}`")
}

/// A required string of 1..=[`MAX_ID_BYTES`] bytes.
fn id_str<'a>(v: Loose<'a>, field: &str) -> Result<Cow<'a, str>, String> {
    match v {
        Loose::Str(s) if (1..=MAX_ID_BYTES).contains(&s.len()) => Ok(s),
        Loose::Str(s) => Err(format!(
            "field `{field}` must be 1..=128 bytes, got {} bytes",
            s.len()
        )),
        Loose::Absent => Err(missing(field)),
        v => Err(wrong_type(
            field,
            "a string",
            v.kind().unwrap_or(Kind::Null),
        )),
    }
}

/// An optional string (`null` = absent); `bounded` applies the id length rule.
fn opt_str<'a>(v: Loose<'a>, field: &str, bounded: bool) -> Result<Option<Cow<'a, str>>, String> {
    match v {
        Loose::Absent | Loose::Other(Kind::Null) => Ok(None),
        Loose::Str(s) if !bounded || (1..=MAX_ID_BYTES).contains(&s.len()) => Ok(Some(s)),
        Loose::Str(s) => Err(format!(
            "field `{field}` must be 1..=128 bytes, got {} bytes",
            s.len()
        )),
        v => Err(wrong_type(
            field,
            "a string",
            v.kind().unwrap_or(Kind::Null),
        )),
    }
}

/// A required id that may be `null`.
fn nullable_id<'a>(v: Loose<'a>, field: &str) -> Result<Option<Cow<'a, str>>, String> {
    match v {
        Loose::Absent => Err(format!("missing field `{field}` (use null for none)")),
        Loose::Other(Kind::Null) => Ok(None),
        Loose::Str(_) => id_str(v, field).map(Some),
        v => Err(wrong_type(
            field,
            "a string or null",
            v.kind().unwrap_or(Kind::Null),
        )),
    }
}

impl<'a> Raw<'a> {
    fn take(&mut self, i: usize) -> Loose<'a> {
        std::mem::take(&mut self.fields[i])
    }

    fn id(&mut self, i: usize) -> Result<Cow<'a, str>, String> {
        id_str(self.take(i), FIELDS[i])
    }

    fn ticket(&mut self) -> Result<Cow<'a, str>, String> {
        self.id(F_TICKET)
    }

    fn member(&mut self) -> Result<Cow<'a, str>, String> {
        self.id(F_MEMBER)
    }

    /// The `contacts` values at `wanted` (of `sms`, `push`, `group`).
    fn contacts<const N: usize>(
        &mut self,
        wanted: [usize; N],
    ) -> Result<[Option<Cow<'a, str>>; N], String> {
        let mut out: [Option<Cow<'a, str>>; N] = std::array::from_fn(|_| None);
        match std::mem::take(&mut self.contacts) {
            Contacts::Absent | Contacts::Other(Kind::Null) => {}
            Contacts::Other(k) => return Err(wrong_type("contacts", "an object", k)),
            Contacts::Object(mut values, _) => {
                for (slot, &c) in out.iter_mut().zip(wanted.iter()) {
                    *slot = match std::mem::take(&mut values[c]) {
                        Loose::Absent | Loose::Other(Kind::Null) => None,
                        Loose::Str(s) => Some(s),
                        v => {
                            let name = format!("contacts.{}", CONTACT_FIELDS[c]);
                            let got = v.kind().unwrap_or(Kind::Null);
                            return Err(wrong_type(&name, "a string", got));
                        }
                    };
                }
            }
        }
        Ok(out)
    }

    #[inline]
    fn validate(&mut self, levels: &[String]) -> Result<Event<'a>, Rejection> {
        let id = self.id(F_ID);
        let checked = match (&self.dup, &id) {
            (Some(d), _) => Err(format!("duplicate field `{}`", show(d))),
            (None, Err(reason)) => Err(reason.clone()),
            (None, Ok(_)) => self.checked(levels),
        };
        match (checked, id) {
            (Ok((at, body)), Ok(id)) => Ok(Event { id, at, body }),
            (Err(reason), id) => Err(Rejection::new(id.ok().map(Cow::into_owned), reason)),
            (Ok(_), Err(reason)) => Err(Rejection::new(None, reason)),
        }
    }

    /// Everything but `id` and duplicates: `type`, `at`, then the type's own
    /// fields in the contract's order.
    #[inline]
    fn checked(&mut self, levels: &[String]) -> Result<(Ts, Body<'a>), String> {
        let ty = match self.take(F_TYPE) {
            Loose::Str(s) => {
                Ty::parse(&s).ok_or_else(|| format!("unknown `type` `{}`", show(&s)))?
            }
            Loose::Absent => return Err(missing("type")),
            v => {
                return Err(wrong_type(
                    "type",
                    "a string",
                    v.kind().unwrap_or(Kind::Null),
                ))
            }
        };
        let at = match self.take(F_AT) {
            Loose::Str(s) => Ts::parse_rfc3339(&s).map_err(|e| {
                format!("field `at` must be an rfc 3339 timestamp with offset: {e}")
            })?,
            Loose::Absent => return Err(missing("at")),
            v => return Err(wrong_type("at", "a string", v.kind().unwrap_or(Kind::Null))),
        };
        if at < MIN_AT || at > MAX_AT {
            return Err("`at` out of the supported range".to_string());
        }
        let body = match ty {
            Ty::ActivityRecorded => Body::ActivityRecorded {
                member: self.member()?,
                activity: self.id(F_ACTIVITY)?,
            },
            Ty::AppLogin => Body::AppLogin {
                member: self.member()?,
            },
            Ty::OrgUpserted => {
                let org = self.id(F_ORG)?;
                let parent = nullable_id(self.take(F_PARENT), "parent")?;
                let level = self.level(levels)?;
                let name = opt_str(self.take(F_NAME), "name", false)?;
                let leader = nullable_id(self.take(F_LEADER), "leader")?;
                let [group] = self.contacts([C_GROUP])?;
                Body::OrgUpserted {
                    org,
                    parent,
                    level,
                    name,
                    leader,
                    group,
                }
            }
            Ty::MemberUpserted => {
                let member = self.member()?;
                let org = self.id(F_ORG)?;
                let name = opt_str(self.take(F_NAME), "name", false)?;
                let cohort = opt_str(self.take(F_COHORT), "cohort", true)?;
                let [sms, push] = self.contacts([C_SMS, C_PUSH])?;
                Body::MemberUpserted {
                    member,
                    org,
                    name,
                    cohort,
                    sms,
                    push,
                }
            }
            Ty::MemberRemoved => Body::MemberRemoved {
                member: self.member()?,
            },
            Ty::TicketOpened => {
                let ticket = self.ticket()?;
                let org = self.id(F_ORG)?;
                let category = self.id(F_CATEGORY)?;
                let title = opt_str(self.take(F_TITLE), "title", false)?;
                Body::TicketOpened {
                    ticket,
                    org,
                    category,
                    title,
                }
            }
            Ty::TicketAccepted => Body::TicketAccepted {
                ticket: self.ticket()?,
            },
            Ty::TicketReplied => Body::TicketReplied {
                ticket: self.ticket()?,
            },
            Ty::TicketResolved => Body::TicketResolved {
                ticket: self.ticket()?,
            },
            Ty::TicketCancelled => Body::TicketCancelled {
                ticket: self.ticket()?,
            },
            Ty::TicketRated => {
                let ticket = self.ticket()?;
                let satisfied = match self.take(F_SATISFIED) {
                    Loose::Bool(b) => b,
                    Loose::Absent => return Err(missing("satisfied")),
                    v => {
                        let got = v.kind().unwrap_or(Kind::Null);
                        return Err(wrong_type("satisfied", "a bool", got));
                    }
                };
                Body::TicketRated { ticket, satisfied }
            }
            Ty::TicketReassigned => Body::TicketReassigned {
                ticket: self.ticket()?,
                org: self.id(F_ORG)?,
            },
        };
        Ok((at, body))
    }

    fn level(&mut self, levels: &[String]) -> Result<u8, String> {
        match self.take(F_LEVEL) {
            Loose::Str(s) => levels
                .iter()
                .position(|l| *l == *s)
                .and_then(|i| u8::try_from(i).ok())
                .ok_or_else(|| {
                    format!(
                        "unknown `level` `{}` (configured: {})",
                        show(&s),
                        levels.join(", ")
                    )
                }),
            Loose::Absent => Err(missing("level")),
            v => Err(wrong_type(
                "level",
                "a string",
                v.kind().unwrap_or(Kind::Null),
            )),
        }
    }
}

/// The event types, as parsed from `type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ty {
    OrgUpserted,
    MemberUpserted,
    MemberRemoved,
    AppLogin,
    ActivityRecorded,
    TicketOpened,
    TicketAccepted,
    TicketReplied,
    TicketResolved,
    TicketCancelled,
    TicketRated,
    TicketReassigned,
}

impl Ty {
    fn parse(s: &str) -> Option<Ty> {
        Some(match s {
            "activity.recorded" => Ty::ActivityRecorded,
            "app.login" => Ty::AppLogin,
            "org.upserted" => Ty::OrgUpserted,
            "member.upserted" => Ty::MemberUpserted,
            "member.removed" => Ty::MemberRemoved,
            "ticket.opened" => Ty::TicketOpened,
            "ticket.accepted" => Ty::TicketAccepted,
            "ticket.replied" => Ty::TicketReplied,
            "ticket.resolved" => Ty::TicketResolved,
            "ticket.cancelled" => Ty::TicketCancelled,
            "ticket.rated" => Ty::TicketRated,
            "ticket.reassigned" => Ty::TicketReassigned,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn levels() -> Vec<String> {
        ["city", "county", "town", "village", "group"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    fn ok(line: &str) -> Event<'_> {
        match decode(line.as_bytes(), &levels()) {
            Ok(e) => e,
            Err(r) => panic!("{line}: rejected: {}", r.reason),
        }
    }

    fn reason(line: &str) -> Rejection {
        match decode(line.as_bytes(), &levels()) {
            Ok(e) => panic!("{line}: accepted: {e:?}"),
            Err(r) => {
                assert!(!r.reason.contains('\n'), "multi-line reason: {r:?}");
                assert!(!r.reason.ends_with('.'), "final period: {r:?}");
                r
            }
        }
    }

    /// Asserts the rejection's reason contains every needle.
    fn rejects(line: &str, needles: &[&str]) -> Rejection {
        let r = reason(line);
        for n in needles {
            assert!(
                r.reason.contains(n),
                "{line}: reason {:?} lacks {n:?}",
                r.reason
            );
        }
        r
    }

    const AT: &str = "2026-03-09T08:15:00+08:00";

    fn at() -> Ts {
        Ts::parse_rfc3339(AT).unwrap()
    }

    fn b(s: &str) -> Cow<'_, str> {
        Cow::Borrowed(s)
    }

    #[test]
    fn every_type_decodes() {
        let cases: Vec<(String, Body<'static>)> = vec![
            (
                r#""type":"org.upserted","org":"o1","parent":null,"level":"county","name":"East","leader":"m1","contacts":{"group":"hook"}"#.into(),
                Body::OrgUpserted {
                    org: b("o1"),
                    parent: None,
                    level: 1,
                    name: Some(b("East")),
                    leader: Some(b("m1")),
                    group: Some(b("hook")),
                },
            ),
            (
                r#""type":"org.upserted","org":"o2","parent":"o1","level":"group","leader":null"#.into(),
                Body::OrgUpserted {
                    org: b("o2"),
                    parent: Some(b("o1")),
                    level: 4,
                    name: None,
                    leader: None,
                    group: None,
                },
            ),
            (
                r#""type":"member.upserted","member":"m1","org":"o1","name":"Li","cohort":"cadre","contacts":{"sms":"+86 138","push":"tok"}"#.into(),
                Body::MemberUpserted {
                    member: b("m1"),
                    org: b("o1"),
                    name: Some(b("Li")),
                    cohort: Some(b("cadre")),
                    sms: Some(b("+86 138")),
                    push: Some(b("tok")),
                },
            ),
            (
                r#""type":"member.upserted","member":"m1","org":"o1""#.into(),
                Body::MemberUpserted {
                    member: b("m1"),
                    org: b("o1"),
                    name: None,
                    cohort: None,
                    sms: None,
                    push: None,
                },
            ),
            (
                r#""type":"member.removed","member":"m1""#.into(),
                Body::MemberRemoved { member: b("m1") },
            ),
            (
                r#""type":"app.login","member":"m1""#.into(),
                Body::AppLogin { member: b("m1") },
            ),
            (
                r#""type":"activity.recorded","member":"m1","activity":"quiz""#.into(),
                Body::ActivityRecorded {
                    member: b("m1"),
                    activity: b("quiz"),
                },
            ),
            (
                r#""type":"ticket.opened","ticket":"t1","org":"o1","category":"wish","title":"road""#.into(),
                Body::TicketOpened {
                    ticket: b("t1"),
                    org: b("o1"),
                    category: b("wish"),
                    title: Some(b("road")),
                },
            ),
            (
                r#""type":"ticket.accepted","ticket":"t1""#.into(),
                Body::TicketAccepted { ticket: b("t1") },
            ),
            (
                r#""type":"ticket.replied","ticket":"t1""#.into(),
                Body::TicketReplied { ticket: b("t1") },
            ),
            (
                r#""type":"ticket.resolved","ticket":"t1""#.into(),
                Body::TicketResolved { ticket: b("t1") },
            ),
            (
                r#""type":"ticket.cancelled","ticket":"t1""#.into(),
                Body::TicketCancelled { ticket: b("t1") },
            ),
            (
                r#""type":"ticket.rated","ticket":"t1","satisfied":false"#.into(),
                Body::TicketRated {
                    ticket: b("t1"),
                    satisfied: false,
                },
            ),
            (
                r#""type":"ticket.reassigned","ticket":"t1","org":"o2""#.into(),
                Body::TicketReassigned {
                    ticket: b("t1"),
                    org: b("o2"),
                },
            ),
        ];
        let mut seen = HashSet::new();
        for (fields, body) in cases {
            let line = format!(r#"{{"id":"e1","at":"{AT}",{fields}}}"#);
            let e = ok(&line);
            assert_eq!(e.id, "e1");
            assert_eq!(e.at, at());
            assert_eq!(e.body, body, "{line}");
            // Unescaped strings borrow from the input.
            assert!(matches!(e.id, Cow::Borrowed(_)));
            assert!(matches!(e.routing_key(), "o1" | "o2" | "m1" | "t1"));
            assert!(EVENT_TYPES.contains(&e.type_name()));
            assert!(line.contains(e.type_name()));
            seen.insert(e.type_name());
            let owned: Event<'static> = e.clone().into_owned();
            assert_eq!(owned, e);
        }
        assert_eq!(seen.len(), EVENT_TYPES.len());
    }

    #[test]
    fn routing_keys() {
        let e = ok(
            r#"{"id":"e","type":"ticket.rated","at":"2026-03-09T08:15:00Z","ticket":"t9","satisfied":true}"#,
        );
        assert_eq!(e.routing_key(), "t9");
        let e = ok(
            r#"{"id":"e","type":"org.upserted","at":"2026-03-09T08:15:00Z","org":"o9","parent":null,"level":"city","leader":null}"#,
        );
        assert_eq!(e.routing_key(), "o9");
        let e = ok(
            r#"{"id":"e","type":"activity.recorded","at":"2026-03-09T08:15:00Z","member":"m9","activity":"quiz"}"#,
        );
        assert_eq!(e.routing_key(), "m9");
    }

    #[test]
    fn escapes_give_owned_strings() {
        let line = r#"{"id":"e\"1","type":"activity.recorded","at":"2026-03-09T08:15:00+08:00","member":"m\u00e9\n","activity":"\u5b66\u4e60\ud83d\ude00"}"#;
        let e = ok(line);
        assert_eq!(e.id, "e\"1");
        assert!(matches!(e.id, Cow::Owned(_)));
        assert_eq!(
            e.body,
            Body::ActivityRecorded {
                member: Cow::Owned("mé\n".into()),
                activity: Cow::Owned("学习😀".into()),
            }
        );
        // Escaped keys name the same fields.
        let e = ok(
            r#"{"\u0069d":"e1","type":"app.login","at":"2026-03-09T08:15:00+08:00","mem\u0062er":"m1"}"#,
        );
        assert_eq!(e.body, Body::AppLogin { member: b("m1") });
        // Raw UTF-8 stays borrowed.
        let e = ok(
            r#"{"id":"事件","type":"app.login","at":"2026-03-09T08:15:00+08:00","member":"党员"}"#,
        );
        assert!(matches!(e.id, Cow::Borrowed("事件")));
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let e = ok(
            r#"{"source":{"a":[1,2,{"b":null}]},"id":"e1","type":"app.login","x":1.5e3,"at":"2026-03-09T08:15:00+08:00","member":"m1","y":[],"z":true,"name":7,"contacts":"not used by app.login"}"#,
        );
        assert_eq!(e.body, Body::AppLogin { member: b("m1") });
        // Unknown keys inside contacts too.
        let e = ok(
            r#"{"id":"e1","type":"member.upserted","at":"2026-03-09T08:15:00+08:00","member":"m1","org":"o1","contacts":{"email":"x@y","sms":"1","group":5}}"#,
        );
        assert!(
            matches!(e.body, Body::MemberUpserted { sms: Some(ref s), push: None, .. } if s == "1")
        );
        // Surrounding whitespace and a trailing CRLF.
        ok(" \t{\"id\":\"e1\",\"type\":\"app.login\",\"at\":\"2026-03-09T08:15:00+08:00\",\"member\":\"m1\"}\r\n");
    }

    #[test]
    fn null_optional_fields_are_absent() {
        let e = ok(
            r#"{"id":"e1","type":"member.upserted","at":"2026-03-09T08:15:00+08:00","member":"m1","org":"o1","name":null,"cohort":null,"contacts":null}"#,
        );
        assert_eq!(
            e.body,
            Body::MemberUpserted {
                member: b("m1"),
                org: b("o1"),
                name: None,
                cohort: None,
                sms: None,
                push: None,
            }
        );
        let e = ok(
            r#"{"id":"e1","type":"member.upserted","at":"2026-03-09T08:15:00+08:00","member":"m1","org":"o1","contacts":{"sms":null,"push":null}}"#,
        );
        assert!(matches!(
            e.body,
            Body::MemberUpserted {
                sms: None,
                push: None,
                ..
            }
        ));
        let e = ok(
            r#"{"id":"e1","type":"ticket.opened","at":"2026-03-09T08:15:00+08:00","ticket":"t1","org":"o1","category":"help","title":null}"#,
        );
        assert!(matches!(e.body, Body::TicketOpened { title: None, .. }));
        let e = ok(
            r#"{"id":"e1","type":"org.upserted","at":"2026-03-09T08:15:00+08:00","org":"o1","parent":null,"level":"city","leader":null,"name":null,"contacts":{"group":null}}"#,
        );
        assert!(matches!(
            e.body,
            Body::OrgUpserted {
                group: None,
                name: None,
                ..
            }
        ));
    }

    #[test]
    fn size_encoding_and_syntax_rejections() {
        let big = format!(
            r#"{{"id":"e1","type":"app.login","at":"{AT}","member":"m1","pad":"{}"}}"#,
            "x".repeat(MAX_EVENT_BYTES)
        );
        let r = rejects(&big, &["larger than 64 KiB"]);
        assert_eq!(r.id, None);
        // Exactly at the limit is fine.
        let head = format!(r#"{{"id":"e1","type":"app.login","at":"{AT}","member":"m1","pad":""#);
        let exact = format!("{head}{}\"}}", "x".repeat(MAX_EVENT_BYTES - head.len() - 2));
        assert_eq!(exact.len(), MAX_EVENT_BYTES);
        ok(&exact);

        let mut bad =
            br#"{"id":"e1","type":"app.login","at":"2026-03-09T08:15:00+08:00","member":"m"#
                .to_vec();
        bad.extend_from_slice(&[0xff, b'"', b'}']);
        let r = decode(&bad, &levels()).unwrap_err();
        assert!(r.reason.starts_with("not utf-8"), "{r:?}");

        rejects("", &["not valid json"]);
        rejects("   ", &["not valid json"]);
        rejects("{", &["not valid json"]);
        rejects(r#"{"id":"e1",}"#, &["not valid json"]);
        rejects(
            r#"{"id":"e1"} {"id":"e2"}"#,
            &["not valid json", "trailing"],
        );
        rejects("nope", &["not valid json"]);
        rejects("[1,2]", &["json object", "got array"]);
        rejects(r#""str""#, &["json object", "got string"]);
        rejects("42", &["json object", "got number"]);
        rejects("null", &["json object", "got null"]);
        rejects("true", &["json object", "got bool"]);
        let deep = format!(
            "{{\"id\":\"e1\",\"x\":{}{}}}",
            "[".repeat(5000),
            "]".repeat(5000)
        );
        reason(&deep);
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        let r = rejects(
            r#"{"id":"e1","type":"app.login","at":"2026-03-09T08:15:00+08:00","member":"m1","member":"m2"}"#,
            &["duplicate field `member`"],
        );
        assert_eq!(r.id.as_deref(), Some("e1"));
        rejects(
            r#"{"id":"e1","type":"app.login","at":"2026-03-09T08:15:00+08:00","member":"m1","x":1,"x":2}"#,
            &["duplicate field `x`"],
        );
        rejects(
            r#"{"id":"e1","type":"app.login","at":"2026-03-09T08:15:00+08:00","member":"m1","i\u0064":"e2"}"#,
            &["duplicate field `id`"],
        );
        rejects(
            r#"{"id":"e1","type":"member.upserted","at":"2026-03-09T08:15:00+08:00","member":"m1","org":"o1","contacts":{"sms":"1","sms":"2"}}"#,
            &["duplicate field `contacts.sms`"],
        );
        rejects(
            r#"{"id":"e1","type":"member.upserted","at":"2026-03-09T08:15:00+08:00","member":"m1","org":"o1","contacts":{},"contacts":{}}"#,
            &["duplicate field `contacts`"],
        );
        // A key with a newline stays on one line in the reason.
        rejects(
            r#"{"id":"e1","type":"app.login","at":"2026-03-09T08:15:00+08:00","member":"m1","a\nb":1,"a\nb":2}"#,
            &["duplicate field `a\\nb`"],
        );
    }

    #[test]
    fn id_rejections() {
        let r = rejects(
            r#"{"type":"app.login","at":"2026-03-09T08:15:00+08:00","member":"m1"}"#,
            &["missing field `id`"],
        );
        assert_eq!(r.id, None);
        rejects(
            r#"{"id":7,"type":"app.login","at":"2026-03-09T08:15:00+08:00","member":"m1"}"#,
            &["field `id` must be a string, got number"],
        );
        rejects(
            r#"{"id":null,"type":"app.login","at":"2026-03-09T08:15:00+08:00","member":"m1"}"#,
            &["field `id` must be a string, got null"],
        );
        let r = rejects(
            r#"{"id":"","type":"app.login","at":"2026-03-09T08:15:00+08:00","member":"m1"}"#,
            &["field `id` must be 1..=128 bytes"],
        );
        assert_eq!(r.id, None);
        let long = "i".repeat(129);
        rejects(
            &format!(r#"{{"id":"{long}","type":"app.login","at":"{AT}","member":"m1"}}"#),
            &["field `id` must be 1..=128 bytes, got 129"],
        );
        let max = "i".repeat(128);
        ok(&format!(
            r#"{{"id":"{max}","type":"app.login","at":"{AT}","member":"m1"}}"#
        ));
        // Bytes, not characters: 43 three-byte characters are 129 bytes.
        let wide = "学".repeat(43);
        rejects(
            &format!(r#"{{"id":"{wide}","type":"app.login","at":"{AT}","member":"m1"}}"#),
            &["`id`", "129 bytes"],
        );
    }

    #[test]
    fn type_and_at_rejections() {
        let r = rejects(
            r#"{"id":"e1","at":"2026-03-09T08:15:00+08:00","member":"m1"}"#,
            &["missing field `type`"],
        );
        assert_eq!(r.id.as_deref(), Some("e1"));
        rejects(
            r#"{"id":"e1","type":["app.login"],"at":"2026-03-09T08:15:00+08:00","member":"m1"}"#,
            &["field `type` must be a string, got array"],
        );
        let r = rejects(
            r#"{"id":"e1","type":"app.logout","at":"2026-03-09T08:15:00+08:00","member":"m1"}"#,
            &["unknown `type` `app.logout`"],
        );
        assert_eq!(r.id.as_deref(), Some("e1"));
        rejects(
            r#"{"id":"e1","type":"app.login","member":"m1"}"#,
            &["missing field `at`"],
        );
        rejects(
            r#"{"id":"e1","type":"app.login","at":1741479300,"member":"m1"}"#,
            &["field `at` must be a string, got number"],
        );
        for bad in [
            "2026-03-09T08:15:00",
            "2026-03-09 08:15",
            "2026-03-09",
            "2026-02-30T08:15:00+08:00",
            "2026-03-09T25:15:00+08:00",
            "yesterday",
            "",
        ] {
            rejects(
                &format!(r#"{{"id":"e1","type":"app.login","at":"{bad}","member":"m1"}}"#),
                &["field `at` must be an rfc 3339 timestamp with offset"],
            );
        }
        for out in [
            "1999-12-31T23:59:59Z",
            "2000-01-01T07:59:59+08:00",
            "2178-12-30T00:00:00.000001Z",
            "2178-12-31T12:00:00+08:00",
            "9999-12-31T23:59:59Z",
            "0001-01-01T00:00:00Z",
        ] {
            rejects(
                &format!(r#"{{"id":"e1","type":"app.login","at":"{out}","member":"m1"}}"#),
                &["`at` out of the supported range"],
            );
        }
        for edge in [
            "2000-01-01T00:00:00Z",
            "2000-01-01T08:00:00+08:00",
            "2178-12-30T00:00:00Z",
            "2178-12-30T08:00:00+08:00",
        ] {
            let line = format!(r#"{{"id":"e1","type":"app.login","at":"{edge}","member":"m1"}}"#);
            assert_eq!(ok(&line).at, Ts::parse_rfc3339(edge).unwrap());
        }
        assert_eq!(MIN_AT, Ts::parse_rfc3339("2000-01-01T00:00:00Z").unwrap());
        assert_eq!(MAX_AT, Ts::parse_rfc3339("2178-12-30T00:00:00Z").unwrap());
    }

    #[test]
    fn field_rejections() {
        let pre = format!(r#"{{"id":"e1","at":"{AT}","#);
        let cases: &[(&str, &[&str])] = &[
            (r#""type":"app.login"}"#, &["missing field `member`"]),
            (
                r#""type":"app.login","member":12}"#,
                &["field `member` must be a string, got number"],
            ),
            (
                r#""type":"app.login","member":null}"#,
                &["field `member` must be a string, got null"],
            ),
            (
                r#""type":"member.removed","member":""}"#,
                &["field `member` must be 1..=128 bytes"],
            ),
            (
                r#""type":"activity.recorded","member":"m1"}"#,
                &["missing field `activity`"],
            ),
            (
                r#""type":"activity.recorded","member":"m1","activity":""}"#,
                &["field `activity` must be 1..=128 bytes"],
            ),
            (
                r#""type":"activity.recorded","member":"m1","activity":{"q":1}}"#,
                &["field `activity` must be a string, got object"],
            ),
            // org.upserted
            (
                r#""type":"org.upserted","parent":null,"level":"city","leader":null}"#,
                &["missing field `org`"],
            ),
            (
                r#""type":"org.upserted","org":"o1","level":"city","leader":null}"#,
                &["missing field `parent`"],
            ),
            (
                r#""type":"org.upserted","org":"o1","parent":null,"level":"city"}"#,
                &["missing field `leader`"],
            ),
            (
                r#""type":"org.upserted","org":"o1","parent":3,"level":"city","leader":null}"#,
                &["field `parent` must be a string or null, got number"],
            ),
            (
                r#""type":"org.upserted","org":"o1","parent":"","level":"city","leader":null}"#,
                &["field `parent` must be 1..=128 bytes"],
            ),
            (
                r#""type":"org.upserted","org":"o1","parent":null,"level":"city","leader":false}"#,
                &["field `leader` must be a string or null, got bool"],
            ),
            (
                r#""type":"org.upserted","org":"o1","parent":null,"leader":null}"#,
                &["missing field `level`"],
            ),
            (
                r#""type":"org.upserted","org":"o1","parent":null,"level":"province","leader":null}"#,
                &["unknown `level` `province`", "city, county"],
            ),
            (
                r#""type":"org.upserted","org":"o1","parent":null,"level":1,"leader":null}"#,
                &["field `level` must be a string, got number"],
            ),
            (
                r#""type":"org.upserted","org":"o1","parent":null,"level":"city","leader":null,"name":5}"#,
                &["field `name` must be a string, got number"],
            ),
            (
                r#""type":"org.upserted","org":"o1","parent":null,"level":"city","leader":null,"contacts":"hook"}"#,
                &["field `contacts` must be an object, got string"],
            ),
            (
                r#""type":"org.upserted","org":"o1","parent":null,"level":"city","leader":null,"contacts":[]}"#,
                &["field `contacts` must be an object, got array"],
            ),
            (
                r#""type":"org.upserted","org":"o1","parent":null,"level":"city","leader":null,"contacts":{"group":1}}"#,
                &["field `contacts.group` must be a string, got number"],
            ),
            // member.upserted
            (
                r#""type":"member.upserted","member":"m1"}"#,
                &["missing field `org`"],
            ),
            (
                r#""type":"member.upserted","member":"m1","org":"o1","name":["a"]}"#,
                &["field `name` must be a string, got array"],
            ),
            (
                r#""type":"member.upserted","member":"m1","org":"o1","cohort":true}"#,
                &["field `cohort` must be a string, got bool"],
            ),
            (
                r#""type":"member.upserted","member":"m1","org":"o1","cohort":""}"#,
                &["field `cohort` must be 1..=128 bytes"],
            ),
            (
                r#""type":"member.upserted","member":"m1","org":"o1","contacts":5}"#,
                &["field `contacts` must be an object, got number"],
            ),
            (
                r#""type":"member.upserted","member":"m1","org":"o1","contacts":true}"#,
                &["field `contacts` must be an object, got bool"],
            ),
            (
                r#""type":"member.upserted","member":"m1","org":"o1","contacts":{"sms":13800000000}}"#,
                &["field `contacts.sms` must be a string, got number"],
            ),
            (
                r#""type":"member.upserted","member":"m1","org":"o1","contacts":{"push":{}}}"#,
                &["field `contacts.push` must be a string, got object"],
            ),
            // tickets
            (
                r#""type":"ticket.opened","org":"o1","category":"wish"}"#,
                &["missing field `ticket`"],
            ),
            (
                r#""type":"ticket.opened","ticket":"t1","category":"wish"}"#,
                &["missing field `org`"],
            ),
            (
                r#""type":"ticket.opened","ticket":"t1","org":"o1"}"#,
                &["missing field `category`"],
            ),
            (
                r#""type":"ticket.opened","ticket":"t1","org":"o1","category":""}"#,
                &["field `category` must be 1..=128 bytes"],
            ),
            (
                r#""type":"ticket.opened","ticket":"t1","org":"o1","category":"wish","title":1}"#,
                &["field `title` must be a string, got number"],
            ),
            (
                r#""type":"ticket.accepted","ticket":5}"#,
                &["field `ticket` must be a string, got number"],
            ),
            (r#""type":"ticket.replied"}"#, &["missing field `ticket`"]),
            (
                r#""type":"ticket.resolved","ticket":""}"#,
                &["field `ticket` must be 1..=128 bytes"],
            ),
            (
                r#""type":"ticket.cancelled","ticket":[]}"#,
                &["field `ticket` must be a string, got array"],
            ),
            (
                r#""type":"ticket.rated","ticket":"t1"}"#,
                &["missing field `satisfied`"],
            ),
            (
                r#""type":"ticket.rated","ticket":"t1","satisfied":"yes"}"#,
                &["field `satisfied` must be a bool, got string"],
            ),
            (
                r#""type":"ticket.rated","ticket":"t1","satisfied":1}"#,
                &["field `satisfied` must be a bool, got number"],
            ),
            (
                r#""type":"ticket.rated","ticket":"t1","satisfied":null}"#,
                &["field `satisfied` must be a bool, got null"],
            ),
            (
                r#""type":"ticket.reassigned","ticket":"t1"}"#,
                &["missing field `org`"],
            ),
            (
                r#""type":"ticket.reassigned","ticket":"t1","org":0.5}"#,
                &["field `org` must be a string, got number"],
            ),
        ];
        for (rest, needles) in cases {
            let r = rejects(&format!("{pre}{rest}"), needles);
            assert_eq!(r.id.as_deref(), Some("e1"), "{rest}");
        }
        let long = "x".repeat(129);
        for f in ["member", "activity"] {
            let line = format!(
                r#"{pre}"type":"activity.recorded","member":"m1","activity":"quiz","{f}":"{long}"}}"#
            );
            // The later duplicate is reported first.
            rejects(&line, &["duplicate field"]);
        }
        rejects(
            &format!(r#"{pre}"type":"member.upserted","member":"m1","org":"{long}"}}"#),
            &["field `org` must be 1..=128 bytes, got 129"],
        );
        rejects(
            &format!(
                r#"{pre}"type":"member.upserted","member":"m1","org":"o1","cohort":"{long}"}}"#
            ),
            &["field `cohort` must be 1..=128 bytes"],
        );
        rejects(
            &format!(
                r#"{pre}"type":"org.upserted","org":"o1","parent":null,"level":"city","leader":"{long}"}}"#
            ),
            &["field `leader` must be 1..=128 bytes"],
        );
        // Names and titles have no length rule of their own.
        ok(&format!(
            r#"{pre}"type":"ticket.opened","ticket":"t1","org":"o1","category":"wish","title":"{long}"}}"#
        ));
    }

    #[test]
    fn levels_are_configurable() {
        let line = br#"{"id":"e1","type":"org.upserted","at":"2026-03-09T08:15:00+08:00","org":"o1","parent":null,"level":"province","leader":null}"#;
        let custom = vec!["province".to_string(), "city".to_string()];
        let e = decode(line, &custom).unwrap();
        assert!(matches!(e.body, Body::OrgUpserted { level: 0, .. }));
        let r = decode(line, &[]).unwrap_err();
        assert!(r.reason.contains("unknown `level` `province`"), "{r:?}");
    }

    #[test]
    fn reasons_quote_producer_strings_safely() {
        let t = "x\n`".repeat(40);
        let line = serde_json::json!({"id": "e1", "type": t, "at": AT}).to_string();
        let r = reason(&line);
        assert!(r.reason.starts_with("unknown `type` `x\\n\\u{60}"), "{r:?}");
        assert!(r.reason.ends_with("…`"), "{r:?}");
    }

    // --- properties ----------------------------------------------------------

    fn id_strategy() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9]{1,12}",
            "[a-zA-Z0-9\"\\\\/\u{0}-\u{1f}é学😀 ]{1,30}",
            proptest::string::string_regex(".{1,40}").unwrap(),
        ]
        .prop_filter("1..=128 bytes", |s| (1..=MAX_ID_BYTES).contains(&s.len()))
    }

    fn opt_id() -> impl Strategy<Value = Option<String>> {
        proptest::option::of(id_strategy())
    }

    fn body_strategy() -> impl Strategy<Value = Body<'static>> {
        let s = || id_strategy().prop_map(Cow::Owned);
        let o = || opt_id().prop_map(|v| v.map(Cow::Owned));
        prop_oneof![
            (s(), o(), 0u8..5, o(), o(), o()).prop_map(
                |(org, parent, level, name, leader, group)| {
                    Body::OrgUpserted {
                        org,
                        parent,
                        level,
                        name,
                        leader,
                        group,
                    }
                }
            ),
            (s(), s(), o(), o(), o(), o()).prop_map(|(member, org, name, cohort, sms, push)| {
                Body::MemberUpserted {
                    member,
                    org,
                    name,
                    cohort,
                    sms,
                    push,
                }
            }),
            s().prop_map(|member| Body::MemberRemoved { member }),
            s().prop_map(|member| Body::AppLogin { member }),
            (s(), s()).prop_map(|(member, activity)| Body::ActivityRecorded { member, activity }),
            (s(), s(), s(), o()).prop_map(|(ticket, org, category, title)| Body::TicketOpened {
                ticket,
                org,
                category,
                title
            }),
            s().prop_map(|ticket| Body::TicketAccepted { ticket }),
            s().prop_map(|ticket| Body::TicketReplied { ticket }),
            s().prop_map(|ticket| Body::TicketResolved { ticket }),
            s().prop_map(|ticket| Body::TicketCancelled { ticket }),
            (s(), any::<bool>())
                .prop_map(|(ticket, satisfied)| Body::TicketRated { ticket, satisfied }),
            (s(), s()).prop_map(|(ticket, org)| Body::TicketReassigned { ticket, org }),
        ]
    }

    /// Encodes an event as the contract's JSON, with optional fields written
    /// as `null` or left out, and an unknown field.
    fn encode(id: &str, at: &str, body: &Body<'_>, nulls: bool) -> String {
        use serde_json::{json, Map, Value};
        let mut m = Map::new();
        m.insert("id".into(), json!(id));
        m.insert("type".into(), json!(body.type_name()));
        m.insert("at".into(), json!(at));
        m.insert("extra".into(), json!({"nested": [1, "two", null]}));
        let opt = |m: &mut Map<String, Value>, k: &str, v: &Option<Cow<'_, str>>| match v {
            Some(v) => {
                m.insert(k.into(), json!(v));
            }
            None if nulls => {
                m.insert(k.into(), Value::Null);
            }
            None => {}
        };
        let names = levels();
        match body {
            Body::OrgUpserted {
                org,
                parent,
                level,
                name,
                leader,
                group,
            } => {
                m.insert("org".into(), json!(org));
                m.insert("parent".into(), json!(parent));
                m.insert("level".into(), json!(names[*level as usize]));
                m.insert("leader".into(), json!(leader));
                opt(&mut m, "name", name);
                let mut c = Map::new();
                opt(&mut c, "group", group);
                m.insert("contacts".into(), Value::Object(c));
            }
            Body::MemberUpserted {
                member,
                org,
                name,
                cohort,
                sms,
                push,
            } => {
                m.insert("member".into(), json!(member));
                m.insert("org".into(), json!(org));
                opt(&mut m, "name", name);
                opt(&mut m, "cohort", cohort);
                let mut c = Map::new();
                opt(&mut c, "sms", sms);
                opt(&mut c, "push", push);
                if !c.is_empty() || nulls {
                    m.insert("contacts".into(), Value::Object(c));
                }
            }
            Body::MemberRemoved { member } | Body::AppLogin { member } => {
                m.insert("member".into(), json!(member));
            }
            Body::ActivityRecorded { member, activity } => {
                m.insert("member".into(), json!(member));
                m.insert("activity".into(), json!(activity));
            }
            Body::TicketOpened {
                ticket,
                org,
                category,
                title,
            } => {
                m.insert("ticket".into(), json!(ticket));
                m.insert("org".into(), json!(org));
                m.insert("category".into(), json!(category));
                opt(&mut m, "title", title);
            }
            Body::TicketAccepted { ticket }
            | Body::TicketReplied { ticket }
            | Body::TicketResolved { ticket }
            | Body::TicketCancelled { ticket } => {
                m.insert("ticket".into(), json!(ticket));
            }
            Body::TicketRated { ticket, satisfied } => {
                m.insert("ticket".into(), json!(ticket));
                m.insert("satisfied".into(), json!(satisfied));
            }
            Body::TicketReassigned { ticket, org } => {
                m.insert("ticket".into(), json!(ticket));
                m.insert("org".into(), json!(org));
            }
        }
        Value::Object(m).to_string()
    }

    fn at_strategy() -> impl Strategy<Value = (Ts, String)> {
        (
            MIN_AT.0 / 1_000_000..=MAX_AT.0 / 1_000_000,
            0u32..1_000_000,
            -14 * 4..=14 * 4i32,
        )
            .prop_map(|(secs, micros, quarter_hours)| {
                let off = chrono::FixedOffset::east_opt(quarter_hours * 900).unwrap();
                let dt = chrono::DateTime::from_timestamp(secs, micros * 1000)
                    .unwrap()
                    .with_timezone(&off);
                let ts = Ts(secs * 1_000_000 + i64::from(micros));
                (ts, dt.to_rfc3339())
            })
    }

    fn valid_event() -> impl Strategy<Value = (String, Event<'static>)> {
        (id_strategy(), at_strategy(), body_strategy(), any::<bool>()).prop_map(
            |(id, (ts, at), body, nulls)| {
                let line = encode(&id, &at, &body, nulls);
                (
                    line,
                    Event {
                        id: Cow::Owned(id),
                        at: ts,
                        body,
                    },
                )
            },
        )
    }

    #[derive(Clone, Debug)]
    enum Mutation {
        Flip(usize, u8),
        Delete(usize, usize),
        Insert(usize, Vec<u8>),
        Truncate(usize),
        Splice(usize, &'static str),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
            (any::<usize>(), 1usize..8).prop_map(|(i, n)| Mutation::Delete(i, n)),
            (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..8))
                .prop_map(|(i, v)| Mutation::Insert(i, v)),
            any::<usize>().prop_map(Mutation::Truncate),
            (
                any::<usize>(),
                prop::sample::select(vec![
                    "\"",
                    "\\",
                    "{",
                    "}",
                    "[",
                    "]",
                    ",",
                    ":",
                    "null",
                    "true",
                    "1e999",
                    "-0",
                    "\"id\":\"x\",",
                    "\\u0000",
                    "\\ud800",
                    "\u{7f}",
                    "\u{ff}",
                    "学",
                ])
            )
                .prop_map(|(i, s)| Mutation::Splice(i, s)),
        ]
    }

    fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
        let len = bytes.len().max(1);
        match m {
            Mutation::Flip(i, b) => {
                if !bytes.is_empty() {
                    let i = i % bytes.len();
                    bytes[i] ^= b | 1;
                }
            }
            Mutation::Delete(i, n) => {
                if !bytes.is_empty() {
                    let i = i % bytes.len();
                    let end = (i + n).min(bytes.len());
                    bytes.drain(i..end);
                }
            }
            Mutation::Insert(i, v) => {
                let i = i % len;
                let i = i.min(bytes.len());
                bytes.splice(i..i, v.iter().copied());
            }
            Mutation::Truncate(i) => bytes.truncate(i % len),
            Mutation::Splice(i, s) => {
                let i = (i % len).min(bytes.len());
                bytes.splice(i..i, s.bytes());
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes, &levels());
        }

        #[test]
        fn arbitrary_text_never_panics(text in proptest::string::string_regex("[{}\\[\\]\":,a-z0-9\\\\ .tnulfe+-]{0,200}").unwrap()) {
            if let Err(r) = decode(text.as_bytes(), &levels()) {
                prop_assert!(!r.reason.contains('\n'));
            }
        }

        #[test]
        fn valid_events_round_trip((line, want) in valid_event()) {
            let got = decode(line.as_bytes(), &levels());
            prop_assert_eq!(got.as_ref().map_err(|r| r.reason.as_str()), Ok(&want), "{}", line);
            let got = got.unwrap();
            prop_assert_eq!(got.routing_key(), want.routing_key());
            prop_assert_eq!(got.into_owned(), want);
        }

        #[test]
        fn mutated_events_never_panic(
            (line, _) in valid_event(),
            muts in proptest::collection::vec(mutation(), 1..4),
        ) {
            let mut bytes = line.into_bytes();
            for m in &muts {
                apply(&mut bytes, m);
            }
            match decode(&bytes, &levels()) {
                Ok(e) => {
                    // Whatever survived is a well-formed event.
                    prop_assert!((1..=MAX_ID_BYTES).contains(&e.id.len()));
                    prop_assert!(e.at >= MIN_AT && e.at <= MAX_AT);
                }
                Err(r) => {
                    prop_assert!(!r.reason.is_empty());
                    prop_assert!(!r.reason.contains('\n'), "{:?}", r);
                    if let Some(id) = &r.id {
                        prop_assert!((1..=MAX_ID_BYTES).contains(&id.len()));
                    }
                }
            }
        }
    }
}
