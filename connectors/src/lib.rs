//! Red Cloud connectors: everything that talks to the outside world.
//!
//! Sources (`source::amqp`, `source::redis`, `source::http`, `source::file`) bring
//! events in and hand them to the daemon's pipeline as [`source::Delivery`] values,
//! each carrying an [`source::Acker`] that the pipeline consumes once the event is
//! applied (or rejected). Channels (`channel::sms`, `channel::push`, `channel::group`,
//! `channel::amqp`, `channel::console`) send messages out, and the `dispatch` module
//! turns the engine's notification envelopes into deliveries on them, within every
//! provider limit (routing, limits, quiet hours, digests, retries, dead letters).
//!
//! What must not live here: rules. This crate never interprets an event beyond
//! validating it with the engine's decoder (HTTP answers per line); the engine owns
//! every decision.

#![warn(missing_docs)]

pub mod channel;
pub mod config;
pub mod dispatch;
pub mod source;
