//! Red Cloud connectors: everything that talks to the outside world.
//!
//! Sources (`source::amqp`, `source::redis`, `source::http`, `source::file`) bring
//! events in and hand them to the daemon's pipeline as [`source::Delivery`] values,
//! each carrying an [`source::Acker`] that the pipeline consumes once the event is
//! applied (or rejected). Channels (SMS, push, group robot) will live next to them.
//!
//! What must not live here: rules. This crate never interprets an event beyond
//! validating it with the engine's decoder (HTTP answers per line); the engine owns
//! every decision.

#![warn(missing_docs)]

pub mod config;
pub mod source;
